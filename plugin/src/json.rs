//! Small JSON helpers shared by every parser in the crate.

use serde_json::Value;

/// A JSON value's kind, as messages name it ("got a number").
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// How much of a string from the input an error message repeats.
const CLIP: usize = 64;

/// `s` as an error message repeats it: whole if short, else its start
/// and its length, so a message stays small whatever the input holds.
pub fn clip(s: &str) -> String {
    if s.len() <= CLIP {
        return s.to_string();
    }
    let mut end = CLIP;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &s[..end], s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_strings_are_clipped() {
        assert_eq!(clip("tx"), "tx");
        let long = "é".repeat(100);
        let c = clip(&long);
        assert!(c.ends_with("... (200 bytes)") && c.len() < 90, "{c}");
    }
}
