//! Whether libcni can decode a plugin config, judged the way Go does it.
//!
//! libcni decodes each plugin config into its `NetConf` struct with Go's
//! encoding/json: object keys match the struct's fields without regard to
//! case, every member is decoded in order (so the last one wins, and an
//! earlier duplicate of the wrong type still fails), JSON null leaves a
//! field alone, and a value of the wrong type for a known field fails the
//! whole file. A file the installer judges loadable must load in the
//! runtime, or the node ends up with no usable network config.

use crate::json::kind as json_kind;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use std::fmt;

/// A JSON object's members in order, duplicates kept.
pub struct Members(pub Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    members.push((k, v));
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(V)
    }
}

impl Members {
    /// The members of a decoded object as libcni hands a conflist's plugin
    /// to its NetConf decoder: it decoded the list into Go maps and encodes
    /// each plugin again, so duplicates are merged (last wins) and the keys
    /// come in sorted order (Go sorts map keys), which decides which of
    /// `Type` and `type` wins.
    pub fn of(value: &Value) -> Option<Self> {
        let mut members: Vec<(String, Value)> = value
            .as_object()?
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        members.sort_by(|a, b| a.0.cmp(&b.0));
        Some(Members(members))
    }

    /// The value Go would end up with in string field `field`.
    pub fn string_field(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .filter(|(k, _)| fold(k) == field)
            .find_map(|(_, v)| v.as_str())
    }
}

/// Go's case folding for field names: ASCII case, plus the two non-ASCII
/// runes that fold to ASCII letters (U+017F long s, U+212A Kelvin sign).
fn fold(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '\u{017F}' => 's',
            '\u{212A}' => 'k',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Checks one member's value; the first argument names it for messages.
type FieldCheck = fn(&str, &Value) -> Result<(), String>;

fn string(key: &str, v: &Value) -> Result<(), String> {
    match v {
        Value::Null | Value::String(_) => Ok(()),
        other => Err(format!("{key} must be a string, got {}", json_kind(other))),
    }
}

fn strings(key: &str, v: &Value) -> Result<(), String> {
    match v {
        Value::Null => Ok(()),
        Value::Array(items) => items.iter().try_for_each(|i| string(key, i)),
        other => Err(format!(
            "{key} must be a list of strings, got {}",
            json_kind(other)
        )),
    }
}

/// Checks each member whose key names a struct field; `fields` maps a
/// folded field name to its check.
fn object(key: &str, v: &Value, fields: &[(&str, FieldCheck)]) -> Result<(), String> {
    let members = match v {
        Value::Null => return Ok(()),
        Value::Object(_) => Members::of(v).unwrap_or(Members(Vec::new())),
        other => return Err(format!("{key} must be an object, got {}", json_kind(other))),
    };
    for (k, v) in &members.0 {
        if let Some((_, check)) = fields.iter().find(|(f, _)| *f == fold(k)) {
            check(&format!("{key}.{k}"), v)?;
        }
    }
    Ok(())
}

fn capabilities(key: &str, v: &Value) -> Result<(), String> {
    match v {
        Value::Null => Ok(()),
        Value::Object(m) => m.iter().try_for_each(|(k, b)| match b {
            Value::Null | Value::Bool(_) => Ok(()),
            other => Err(format!(
                "{key}.{k} must be true or false, got {}",
                json_kind(other)
            )),
        }),
        other => Err(format!("{key} must be an object, got {}", json_kind(other))),
    }
}

fn ipam(key: &str, v: &Value) -> Result<(), String> {
    object(key, v, &[("type", string)])
}

fn dns(key: &str, v: &Value) -> Result<(), String> {
    object(
        key,
        v,
        &[
            ("nameservers", strings),
            ("domain", string),
            ("search", strings),
            ("options", strings),
        ],
    )
}

fn any_object(key: &str, v: &Value) -> Result<(), String> {
    object(key, v, &[])
}

fn attachments(key: &str, v: &Value) -> Result<(), String> {
    match v {
        Value::Null => Ok(()),
        Value::Array(items) => items
            .iter()
            .try_for_each(|i| object(key, i, &[("containerid", string), ("ifname", string)])),
        other => Err(format!("{key} must be a list, got {}", json_kind(other))),
    }
}

/// libcni's NetConf fields, folded, with the check for each.
const NETCONF: &[(&str, FieldCheck)] = &[
    ("cniversion", string),
    ("name", string),
    ("type", string),
    ("capabilities", capabilities),
    ("ipam", ipam),
    ("dns", dns),
    ("prevresult", any_object),
    ("cni.dev/valid-attachments", attachments),
];

/// Why libcni would fail to decode a plugin config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undecodable {
    /// A known field has a value of the wrong type.
    Invalid(String),
    /// No plugin type (libcni: "missing 'type'").
    NoType,
}

/// Checks a plugin config as libcni decodes it.
pub fn check(members: &Members) -> Result<(), Undecodable> {
    for (k, v) in &members.0 {
        if let Some((_, check)) = NETCONF.iter().find(|(f, _)| *f == fold(k)) {
            check(k, v).map_err(Undecodable::Invalid)?;
        }
    }
    match members.string_field("type") {
        Some(t) if !t.is_empty() => Ok(()),
        _ => Err(Undecodable::NoType),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_text(text: &str) -> Result<(), Undecodable> {
        let members: Members = serde_json::from_str(text).unwrap();
        check(&members)
    }

    #[test]
    fn go_decoding_rules() {
        let ok = [
            r#"{"type":"bridge"}"#,
            r#"{"Type":"bridge"}"#,
            r#"{"TYPE":"x","type":"bridge","name":null,"cniVersion":"1.0.0"}"#,
            r#"{"type":"bridge","type":null}"#,
            r#"{"type":"bridge","capabilities":{"portMappings":true,"x":null}}"#,
            r#"{"type":"bridge","ipam":{"type":"host-local","subnet":"10.1.0.0/16","IPAM":1}}"#,
            r#"{"type":"bridge","dns":{"nameservers":["10.0.0.1"],"domain":"x","search":null}}"#,
            r#"{"type":"bridge","unknownField":[1,{"a":2}],"args":5}"#,
            r#"{"type":"bridge","prevResult":{"cniVersion":"1.0.0"}}"#,
        ];
        for text in ok {
            assert_eq!(check_text(text), Ok(()), "{text}");
        }
        let no_type = [
            r#"{}"#,
            r#"{"type":""}"#,
            r#"{"type":null}"#,
            r#"{"type":"bridge","Type":""}"#,
        ];
        for text in no_type {
            assert_eq!(check_text(text), Err(Undecodable::NoType), "{text}");
        }
        let invalid = [
            (
                r#"{"type":"bridge","name":{"a":1}}"#,
                "name must be a string",
            ),
            (
                r#"{"type":"bridge","name":{},"name":"x"}"#,
                "name must be a string",
            ),
            (r#"{"type":"bridge","NAME":5}"#, "NAME must be a string"),
            (
                r#"{"type":"bridge","cniVersion":1}"#,
                "cniVersion must be a string",
            ),
            (r#"{"type":7}"#, "type must be a string"),
            (
                r#"{"type":"bridge","capabilities":[]}"#,
                "capabilities must be an object",
            ),
            (
                r#"{"type":"bridge","capabilities":{"a":1}}"#,
                "capabilities.a must be true or false",
            ),
            (
                r#"{"type":"bridge","ipam":"host-local"}"#,
                "ipam must be an object",
            ),
            (
                r#"{"type":"bridge","ipam":{"Type":1}}"#,
                "ipam.Type must be a string",
            ),
            (
                r#"{"type":"bridge","dns":{"nameservers":"10.0.0.1"}}"#,
                "must be a list of strings",
            ),
            (
                r#"{"type":"bridge","dns":{"search":[1]}}"#,
                "dns.search must be a string",
            ),
            (
                r#"{"type":"bridge","prevResult":[]}"#,
                "prevResult must be an object",
            ),
            (
                r#"{"type":"bridge","cni.dev/valid-attachments":{}}"#,
                "must be a list",
            ),
            (
                "{\"type\":\"bridge\",\"dns\":{\"\u{017F}earch\":1}}",
                "must be a list of strings",
            ),
        ];
        for (text, want) in invalid {
            match check_text(text) {
                Err(Undecodable::Invalid(msg)) => assert!(msg.contains(want), "{text}: {msg}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_conflists_plugin_is_decoded_with_sorted_keys() {
        // Go encodes the plugin's map with "Type" before "type": the last
        // one decoded, "type", wins, whatever order the file has.
        for text in [
            r#"{"type":"bridge","Type":""}"#,
            r#"{"Type":"","type":"bridge"}"#,
        ] {
            let v: Value = serde_json::from_str(text).unwrap();
            let m = Members::of(&v).unwrap();
            assert_eq!(m.string_field("type"), Some("bridge"), "{text}");
            assert_eq!(check(&m), Ok(()), "{text}");
        }
        let v: Value = serde_json::from_str(r#"{"type":"","Type":"bridge"}"#).unwrap();
        assert_eq!(check(&Members::of(&v).unwrap()), Err(Undecodable::NoType));
    }

    #[test]
    fn effective_string_fields() {
        let m: Members = serde_json::from_str(r#"{"name":"a","Name":"b","NAME":null}"#).unwrap();
        assert_eq!(m.string_field("name"), Some("b"));
        assert_eq!(m.string_field("type"), None);
    }
}
