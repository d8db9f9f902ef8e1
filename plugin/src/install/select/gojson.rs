//! JSON as the runtime reads it: Go's encoding/json, which libcni uses.
//!
//! Go and serde_json disagree on some inputs, and where they do the
//! installer must see what the runtime sees, or it judges a file the
//! runtime uses as invalid and edits the next one (the node then runs
//! without the entry while readiness passes):
//! - a string holding invalid UTF-8: Go replaces each bad byte with
//!   U+FFFD, serde fails;
//! - a `\u` escape of a lone surrogate: Go decodes it as U+FFFD, serde
//!   fails;
//! - nesting: Go accepts 10000 levels, serde 127.
//!
//! `scan` checks a document with Go's grammar and limits and returns it
//! rewritten so that serde reads exactly the values Go reads (invalid bytes
//! and lone surrogates replaced by U+FFFD, everything else byte for byte).
//! A document deeper than serde can go is reported as such: the installer
//! cannot judge or edit it, and says so instead of skipping it.

use serde_json::Value;
use std::borrow::Cow;

/// Go's `maxNestingDepth`: one level more fails the decode.
pub const GO_MAX_DEPTH: usize = 10_000;
/// The deepest document serde_json parses (its recursion limit is 128).
pub const SERDE_MAX_DEPTH: usize = 127;

/// Why Go's decoder fails on a document, or why we cannot follow it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GoJsonError {
    /// Go fails too: the runtime cannot load it.
    #[error("{what} at byte {offset}")]
    Syntax { offset: usize, what: &'static str },
    #[error("a number out of float64 range at byte {0} (Go cannot decode it)")]
    NumberRange(usize),
    #[error("nests deeper than Go's limit of {GO_MAX_DEPTH} levels")]
    GoTooDeep,
    /// Go loads it, serde cannot: the installer cannot judge or edit it.
    #[error("nests {0} levels deep; the runtime reads up to {GO_MAX_DEPTH}, csum-offload only up to {SERDE_MAX_DEPTH}")]
    TooDeepForUs(usize),
    /// Our scan accepted it and serde did not: a bug on our side, never
    /// a reason to skip a file the runtime may use.
    #[error("csum-offload cannot parse it although Go would: {0}")]
    Unfollowed(String),
}

impl GoJsonError {
    /// Whether the runtime fails on the document too (as opposed to only
    /// csum-offload being unable to follow it).
    pub fn runtime_fails(&self) -> bool {
        matches!(
            self,
            Self::Syntax { .. } | Self::NumberRange(_) | Self::GoTooDeep
        )
    }
}

/// A document Go accepts, as serde should read it.
#[derive(Debug)]
pub struct Scanned<'a> {
    /// The document with what Go replaces already replaced.
    pub text: Cow<'a, [u8]>,
    /// How deep arrays and objects nest (0 for a scalar).
    pub depth: usize,
    /// How many bytes or escapes were replaced by U+FFFD.
    pub replaced: usize,
}

/// Parses `bytes` into a value exactly as Go decodes it into `interface{}`.
pub fn parse(bytes: &[u8]) -> Result<Value, GoJsonError> {
    let scanned = scan(bytes)?;
    serde_json::from_slice(&scanned.text).map_err(|e| GoJsonError::Unfollowed(e.to_string()))
}

/// Deserializes `bytes` as Go reads them into `T` (e.g. `Members`).
pub fn parse_as<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, GoJsonError> {
    let scanned = scan(bytes)?;
    serde_json::from_slice(&scanned.text).map_err(|e| GoJsonError::Unfollowed(e.to_string()))
}

/// Checks `bytes` with Go's grammar and limits; see the module doc.
pub fn scan(bytes: &[u8]) -> Result<Scanned<'_>, GoJsonError> {
    let mut s = Scanner {
        b: bytes,
        pos: 0,
        out: None,
        copied: 0,
        replaced: 0,
    };
    let depth = s.document()?;
    if depth > SERDE_MAX_DEPTH {
        return Err(GoJsonError::TooDeepForUs(depth));
    }
    let text = match s.out.take() {
        None => Cow::Borrowed(bytes),
        Some(mut out) => {
            out.extend_from_slice(&bytes[s.copied..]);
            Cow::Owned(out)
        }
    };
    Ok(Scanned {
        text,
        depth,
        replaced: s.replaced,
    })
}

/// What the scanner expects next.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    Value,
    /// Just after `[`: a value or `]`.
    ValueOrClose,
    /// Just after `{`: a key or `}`.
    KeyOrClose,
    /// After `,` in an object.
    Key,
    Colon,
    /// After a value inside a container.
    CommaOrClose,
}

struct Scanner<'a> {
    b: &'a [u8],
    pos: usize,
    /// The rewritten document, once something had to be replaced.
    out: Option<Vec<u8>>,
    /// How much of `b` is already in `out`.
    copied: usize,
    replaced: usize,
}

const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();

impl Scanner<'_> {
    fn err(&self, what: &'static str) -> GoJsonError {
        GoJsonError::Syntax {
            offset: self.pos,
            what,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Replaces `b[from..to]` with `with` in the output.
    fn replace(&mut self, from: usize, to: usize, with: &[u8]) {
        let out = self.out.get_or_insert_with(Vec::new);
        out.extend_from_slice(&self.b[self.copied..from]);
        out.extend_from_slice(with);
        self.copied = to;
        self.replaced += 1;
    }

    /// The whole document; returns its depth. Iterative, so 10000 levels
    /// cost a Vec, not the stack.
    fn document(&mut self) -> Result<usize, GoJsonError> {
        let mut stack: Vec<u8> = Vec::new();
        let mut depth = 0;
        let mut want = Want::Value;
        loop {
            self.skip_ws();
            let Some(c) = self.peek() else {
                return Err(self.err("unexpected end of JSON input"));
            };
            match want {
                Want::Value | Want::ValueOrClose => {
                    if want == Want::ValueOrClose && c == b']' {
                        self.pos += 1;
                        stack.pop();
                    } else {
                        match c {
                            b'{' | b'[' => {
                                stack.push(c);
                                if stack.len() > GO_MAX_DEPTH {
                                    return Err(GoJsonError::GoTooDeep);
                                }
                                depth = depth.max(stack.len());
                                self.pos += 1;
                                want = if c == b'{' {
                                    Want::KeyOrClose
                                } else {
                                    Want::ValueOrClose
                                };
                                continue;
                            }
                            b'"' => self.string()?,
                            b'-' | b'0'..=b'9' => self.number()?,
                            b't' => self.literal(b"true")?,
                            b'f' => self.literal(b"false")?,
                            b'n' => self.literal(b"null")?,
                            _ => return Err(self.err("invalid character looking for a value")),
                        }
                    }
                }
                Want::KeyOrClose | Want::Key => {
                    if want == Want::KeyOrClose && c == b'}' {
                        self.pos += 1;
                        stack.pop();
                    } else if c == b'"' {
                        self.string()?;
                        want = Want::Colon;
                        continue;
                    } else {
                        return Err(self.err("invalid character looking for an object key"));
                    }
                }
                Want::Colon => {
                    if c != b':' {
                        return Err(self.err("invalid character after an object key"));
                    }
                    self.pos += 1;
                    want = Want::Value;
                    continue;
                }
                Want::CommaOrClose => {
                    let top = *stack.last().unwrap_or(&b'[');
                    match (c, top) {
                        (b',', b'{') => {
                            self.pos += 1;
                            want = Want::Key;
                            continue;
                        }
                        (b',', _) => {
                            self.pos += 1;
                            want = Want::Value;
                            continue;
                        }
                        (b'}', b'{') | (b']', b'[') => {
                            self.pos += 1;
                            stack.pop();
                        }
                        _ => return Err(self.err("invalid character after a value")),
                    }
                }
            }
            // A value (or a container) just ended.
            if stack.is_empty() {
                self.skip_ws();
                if self.pos != self.b.len() {
                    return Err(self.err("invalid character after the top-level value"));
                }
                return Ok(depth);
            }
            want = Want::CommaOrClose;
        }
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), GoJsonError> {
        if self.b[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.err("invalid literal"))
        }
    }

    /// A number by JSON's grammar; Go then decodes it as a float64, which
    /// fails when it rounds to infinity (underflow gives 0, silently).
    fn number(&mut self) -> Result<(), GoJsonError> {
        let start = self.pos;
        let digits = |s: &mut Self| {
            let from = s.pos;
            while matches!(s.peek(), Some(b'0'..=b'9')) {
                s.pos += 1;
            }
            s.pos - from
        };
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(self.err("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if digits(self) == 0 {
                return Err(self.err("invalid number"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if digits(self) == 0 {
                return Err(self.err("invalid number"));
            }
        }
        let text = std::str::from_utf8(&self.b[start..self.pos]).unwrap_or("0");
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(()),
            _ => Err(GoJsonError::NumberRange(start)),
        }
    }

    /// A string at `"`: escapes checked, control characters refused, and
    /// what Go's unquote turns into U+FFFD replaced.
    fn string(&mut self) -> Result<(), GoJsonError> {
        self.pos += 1;
        loop {
            let Some(c) = self.peek() else {
                return Err(self.err("unexpected end of JSON input in a string"));
            };
            match c {
                b'"' => {
                    self.pos += 1;
                    return Ok(());
                }
                0..=0x1f => return Err(self.err("invalid control character in a string")),
                b'\\' => self.escape()?,
                0x80.. => {
                    let len = utf8_len(&self.b[self.pos..]);
                    if len == 0 {
                        // Go's DecodeRune: (RuneError, 1) for each bad byte.
                        self.replace(self.pos, self.pos + 1, REPLACEMENT);
                        self.pos += 1;
                    } else {
                        self.pos += len;
                    }
                }
                _ => self.pos += 1,
            }
        }
    }

    fn escape(&mut self) -> Result<(), GoJsonError> {
        let start = self.pos;
        match self.b.get(self.pos + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.pos += 2;
                Ok(())
            }
            Some(b'u') => {
                let Some(unit) = hex4(&self.b[self.pos + 2..]) else {
                    return Err(self.err("invalid \\u escape in a string"));
                };
                self.pos += 6;
                if !(0xD800..=0xDFFF).contains(&unit) {
                    return Ok(());
                }
                // A surrogate: a pair only if a high one is followed by an
                // escaped low one; anything else Go decodes as U+FFFD (and
                // reads the next escape on its own).
                let low = (self.b.get(self.pos) == Some(&b'\\')
                    && self.b.get(self.pos + 1) == Some(&b'u'))
                .then(|| hex4(&self.b[self.pos + 2..]))
                .flatten();
                match low {
                    Some(low) if unit < 0xDC00 && (0xDC00..=0xDFFF).contains(&low) => {
                        self.pos += 6;
                    }
                    _ => self.replace(start, self.pos, b"\\ufffd"),
                }
                Ok(())
            }
            _ => Err(self.err("invalid escape in a string")),
        }
    }
}

fn hex4(b: &[u8]) -> Option<u32> {
    let digits = b.get(..4)?;
    let text = std::str::from_utf8(digits).ok()?;
    if !text.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(text, 16).ok()
}

/// The length of the valid UTF-8 sequence at the start of `b`, or 0 if it
/// is not one (Go's utf8.DecodeRune acceptance ranges).
fn utf8_len(b: &[u8]) -> usize {
    let cont = |i: usize, lo: u8, hi: u8| b.get(i).is_some_and(|c| (lo..=hi).contains(c));
    let (len, second) = match b[0] {
        0x00..=0x7f => return 1,
        0xc2..=0xdf => (2, (0x80, 0xbf)),
        0xe0 => (3, (0xa0, 0xbf)),
        0xe1..=0xec | 0xee..=0xef => (3, (0x80, 0xbf)),
        0xed => (3, (0x80, 0x9f)),
        0xf0 => (4, (0x90, 0xbf)),
        0xf1..=0xf3 => (4, (0x80, 0xbf)),
        0xf4 => (4, (0x80, 0x8f)),
        _ => return 0,
    };
    if !cont(1, second.0, second.1) {
        return 0;
    }
    if (2..len).all(|i| cont(i, 0x80, 0xbf)) {
        len
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> Vec<u8> {
        let mut v = b"{\"a\":".to_vec();
        v.extend(std::iter::repeat_n(b'[', depth - 1));
        v.extend(std::iter::repeat_n(b']', depth - 1));
        v.push(b'}');
        v
    }

    #[test]
    fn what_go_replaces_serde_reads_the_same_way() {
        // (input, the string Go decodes)
        let cases: &[(&[u8], &str)] = &[
            (b"\"plain\"", "plain"),
            (b"\"caf\xc3\xa9\"", "caf\u{e9}"),
            (b"\"a\xffb\"", "a\u{FFFD}b"),
            // A truncated 3-byte sequence: one U+FFFD per byte, as Go.
            (b"\"\xe2\x82x\"", "\u{FFFD}\u{FFFD}x"),
            // Overlong and surrogate encodings are invalid UTF-8.
            (b"\"\xc0\xaf\"", "\u{FFFD}\u{FFFD}"),
            (b"\"\xed\xa0\x80\"", "\u{FFFD}\u{FFFD}\u{FFFD}"),
            (b"\"\\ud83d\\ude00\"", "\u{1F600}"),
            (b"\"\\ud800\"", "\u{FFFD}"),
            (b"\"\\udc00x\"", "\u{FFFD}x"),
            (b"\"\\ud800\\u0041\"", "\u{FFFD}A"),
            (b"\"\\ud800\\ud800\\udc00\"", "\u{FFFD}\u{10000}"),
        ];
        for (input, want) in cases {
            let v = parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(v, Value::String(want.to_string()), "{input:?}");
        }
        // Keys too; the rest of the document is kept byte for byte.
        let s = scan(b"{\"k\xff\": [1, 2.5e3, true, null]}").unwrap();
        assert_eq!(s.replaced, 1);
        assert_eq!(
            &*s.text,
            "{\"k\u{FFFD}\": [1, 2.5e3, true, null]}".as_bytes()
        );
        assert!(matches!(
            scan(b"{\"a\": 1}").unwrap().text,
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn go_grammar_and_limits() {
        for ok in [
            &b" {\"a\" : [1, -0, 0.5, 1e-400, 1E+2, \"x\", {}, []]} \n"[..],
            b"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"",
            b"123456789012345678901234567890",
            b"[]",
        ] {
            assert!(scan(ok).is_ok(), "{:?}", String::from_utf8_lossy(ok));
            assert_eq!(
                parse(ok).is_ok(),
                serde_json::from_slice::<Value>(ok).is_ok(),
                "{:?}",
                String::from_utf8_lossy(ok)
            );
        }
        for bad in [
            &b""[..],
            b"   ",
            b"{",
            b"{\"a\" 1}",
            b"{\"a\":1,}",
            b"[1,]",
            b"[1 2]",
            b"01",
            b"1.",
            b"-",
            b"1e",
            b".5",
            b"+1",
            b"tru",
            b"nul",
            b"\"\x01\"",
            b"\"\\x\"",
            b"\"\\u12g4\"",
            b"\"open",
            b"{} x",
            b"{}{}",
            b"\xef\xbb\xbf{}",
            b"{'a':1}",
            b"[1e400]",
            b"{\"a\":-1e309}",
        ] {
            let e = scan(bad).unwrap_err();
            assert!(e.runtime_fails(), "{:?}: {e}", String::from_utf8_lossy(bad));
        }
        assert!(scan(&nested(SERDE_MAX_DEPTH)).is_ok());
        assert!(parse(&nested(SERDE_MAX_DEPTH)).is_ok());
        let e = scan(&nested(SERDE_MAX_DEPTH + 1)).unwrap_err();
        assert_eq!(e, GoJsonError::TooDeepForUs(SERDE_MAX_DEPTH + 1));
        assert!(!e.runtime_fails());
        assert_eq!(
            scan(&nested(GO_MAX_DEPTH)).unwrap_err(),
            GoJsonError::TooDeepForUs(GO_MAX_DEPTH)
        );
        assert_eq!(
            scan(&nested(GO_MAX_DEPTH + 1)).unwrap_err(),
            GoJsonError::GoTooDeep
        );
    }
}
