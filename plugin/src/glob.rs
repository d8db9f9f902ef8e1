//! Glob patterns: the one syntax and the one matcher for every pattern the
//! crate takes: rule values (`rules[i].driverVersion`, ...), the agent's
//! `--ifname` and `--exclude-ifname`, and the feature-name patterns of
//! ethtool's aliases (`tx-checksum-*`). docs/configuration.md#globs is the
//! one page that documents the syntax; the others link to it.
//!
//! - `*` any run of characters, the empty one included;
//! - `?` exactly one character;
//! - `[abc]` one of the characters, `[a-z]` one in the range (both ends
//!   included), `[!abc]` or `[^abc]` any one character but these; a `-`
//!   first or last in a class is itself;
//! - `\c` the character `c` itself, inside a class or outside it (`\*`,
//!   `\?`, `\[`, `\]`, `\\`, `[\]\-]`);
//! - every other character matches itself, case included.
//!
//! A pattern is parsed once into a [`Glob`], and what this syntax cannot
//! express is refused then, with the reason ([`GlobError`]), instead of
//! silently matching nothing: an empty pattern, a `[` without its `]` or
//! the reverse, an empty class (`[]`, `[!]`), a reversed range (`[9-0]`),
//! POSIX classes (`[[:digit:]]`), a `\` that ends the pattern.
//!
//! Matching never recurses and never backtracks more than once per text
//! position: the two-pointer algorithm with one resumption point (the last
//! `*` seen), so its worst case is O(pattern length × text length). A
//! matcher that tries every split at every `*` takes time exponential in
//! the number of stars, and one rule in a ConfigMap then stalls every ADD
//! on every node.

use std::fmt;

/// Why a pattern is refused. The pattern itself is named by the caller,
/// who knows where it came from (a flag, a config field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    #[error("an empty pattern matches no name")]
    Empty,
    #[error("a '[' without its ']'")]
    UnclosedClass,
    #[error("a ']' without its '['")]
    StrayClose,
    #[error("an empty class '[]' matches nothing (a literal ']' is written '\\]')")]
    EmptyClass,
    #[error("the range '{0}-{1}' is reversed (write '{1}-{0}')")]
    ReversedRange(char, char),
    #[error("POSIX classes such as '[:digit:]' are not supported (write '[0-9]')")]
    PosixClass,
    #[error("a '\\' at the end escapes nothing (a literal '\\' is written '\\\\')")]
    TrailingEscape,
}

/// One character class: inclusive ranges (a single character is a range
/// of one), negated or not.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Class {
    negated: bool,
    ranges: Vec<(char, char)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `?`
    One,
    /// `*` (consecutive stars are one: they match the same runs).
    Star,
    Class(Class),
}

impl Token {
    /// Whether this single-character token takes `c`; a star never gets
    /// here (the matcher handles it).
    fn takes(&self, c: char) -> bool {
        match self {
            Self::Char(x) => *x == c,
            Self::One => true,
            Self::Class(class) => {
                class.ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != class.negated
            }
            Self::Star => false,
        }
    }
}

/// A parsed pattern, ready to match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    source: String,
    tokens: Vec<Token>,
}

impl Glob {
    /// Parses `pattern`, refusing what the syntax above does not cover.
    pub fn parse(pattern: &str) -> Result<Self, GlobError> {
        if pattern.is_empty() {
            return Err(GlobError::Empty);
        }
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            let token = match c {
                '*' if tokens.last() == Some(&Token::Star) => continue,
                '*' => Token::Star,
                '?' => Token::One,
                ']' => return Err(GlobError::StrayClose),
                '\\' => Token::Char(chars.next().ok_or(GlobError::TrailingEscape)?),
                '[' => Token::Class(class(&mut chars)?),
                c => Token::Char(c),
            };
            tokens.push(token);
        }
        Ok(Self {
            source: pattern.to_string(),
            tokens,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the whole of `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        self.run(text, &mut 0)
    }

    /// The matcher; `steps` counts its iterations, so the unit tests can
    /// hold it to its bound without timing anything.
    ///
    /// Tokens other than `*` take one character each. On a mismatch, the
    /// last `*` seen takes one more character and matching resumes after
    /// it; earlier stars never need to be revisited, because whatever
    /// they could take instead, the last star's run can take as well. That
    /// resumption point only moves forward, so there are at most as many
    /// resumptions as characters, each followed by at most one pass over
    /// the tokens.
    fn run(&self, text: &str, steps: &mut usize) -> bool {
        let tokens = &self.tokens;
        // Token index, and byte offset in `text`.
        let (mut p, mut t) = (0, 0);
        // After the last star: (the token that follows it, where in the
        // text its run ends for now).
        let mut resume: Option<(usize, usize)> = None;
        loop {
            *steps += 1;
            let next = text[t..].chars().next();
            match (tokens.get(p), next) {
                (Some(Token::Star), _) => {
                    p += 1;
                    resume = Some((p, t));
                    continue;
                }
                (Some(token), Some(c)) if token.takes(c) => {
                    p += 1;
                    t += c.len_utf8();
                    continue;
                }
                (None, None) => return true,
                _ => {}
            }
            // A mismatch: give the last star one more character.
            let Some((after_star, star_end)) = resume else {
                return false;
            };
            let Some(c) = text[star_end..].chars().next() else {
                return false;
            };
            let star_end = star_end + c.len_utf8();
            resume = Some((after_star, star_end));
            p = after_star;
            t = star_end;
        }
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// A class, after its `[`, up to and including its `]`.
fn class(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<Class, GlobError> {
    let negated = chars.next_if(|c| matches!(c, '!' | '^')).is_some();
    // `[:`, `[=` and `[.` open POSIX bracket expressions, which mean
    // something else elsewhere; refused rather than read as characters.
    let mut ranges = Vec::new();
    loop {
        let c = chars.next().ok_or(GlobError::UnclosedClass)?;
        let lo = match c {
            ']' if ranges.is_empty() => return Err(GlobError::EmptyClass),
            ']' => return Ok(Class { negated, ranges }),
            '[' if chars.peek().is_some_and(|n| matches!(n, ':' | '=' | '.')) => {
                return Err(GlobError::PosixClass)
            }
            '\\' => chars.next().ok_or(GlobError::UnclosedClass)?,
            c => c,
        };
        // `a-z`; a `-` before the closing `]` is itself.
        let mut ahead = chars.clone();
        if ahead.next() == Some('-') && ahead.peek().is_some_and(|n| *n != ']') {
            chars.next();
            let hi = match chars.next() {
                Some('\\') => chars.next().ok_or(GlobError::UnclosedClass)?,
                Some(c) => c,
                None => return Err(GlobError::UnclosedClass),
            };
            if hi < lo {
                return Err(GlobError::ReversedRange(lo, hi));
            }
            ranges.push((lo, hi));
        } else {
            ranges.push((lo, lo));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(pattern: &str) -> Glob {
        Glob::parse(pattern).unwrap_or_else(|e| panic!("{pattern:?}: {e}"))
    }

    #[test]
    fn the_documented_syntax() {
        // (pattern, matches, does not match)
        let table: &[(&str, &[&str], &[&str])] = &[
            ("eth0", &["eth0"], &["eth", "eth00", "Eth0", ""]),
            ("veth*", &["veth", "veth1a2b", "veth*"], &["vet", "xveth"]),
            ("*", &["", "a", "anything"], &[]),
            (
                "a*b*c",
                &["abc", "aXbYc", "abbbc", "acbc"],
                &["ab", "acb", "abcd"],
            ),
            (
                "*-segmentation",
                &["tx-tcp-segmentation"],
                &["tx-gso-robust"],
            ),
            (
                "tx-tcp*-segmentation",
                &["tx-tcp-segmentation", "tx-tcp6-segmentation"],
                &["tx-udp-segmentation"],
            ),
            ("hxa?", &["hxa0", "hxab", "hxa?"], &["hxa", "hxa10"]),
            ("??", &["ab", "é1"], &["a", "abc"]),
            ("hxa[0-9]", &["hxa0", "hxa9"], &["hxaa", "hxa", "hxa10"]),
            ("[abc]", &["a", "b", "c"], &["d", "", "ab"]),
            ("[a-cx-z]", &["b", "y"], &["d", "w"]),
            ("[!i]*", &["txgbe", "x"], &["i40e", ""]),
            ("[^i]*", &["txgbe"], &["i40e"]),
            ("[!0-9]", &["a", "-"], &["5"]),
            ("[-a]", &["-", "a"], &["b"]),
            ("[a-]", &["-", "a"], &["b"]),
            ("[!-]", &["a"], &["-"]),
            ("8088:10[0-9]?", &["8088:1001"], &["8088:1101", "8088:100"]),
            ("0x0002000*", &["0x00020004"], &["0x00030001"]),
            // Escapes: the character itself, inside a class and outside.
            ("a\\*", &["a*"], &["a", "ab"]),
            ("\\?", &["?"], &["a"]),
            ("\\[x\\]", &["[x]"], &["x"]),
            ("\\\\", &["\\"], &["\\\\"]),
            ("\\a", &["a"], &["\\a"]),
            ("[\\]\\-]", &["]", "-"], &["\\", "a"]),
            ("[a\\-z]", &["a", "-", "z"], &["b"]),
            ("[*?[]", &["*", "?", "["], &["a"]),
            // Non-ASCII characters are characters, not bytes.
            ("ü?", &["üx"], &["ü"]),
            ("[ä-ö]", &["é"], &["a"]),
        ];
        for (pattern, yes, no) in table {
            let glob = g(pattern);
            for text in *yes {
                assert!(glob.matches(text), "{pattern:?} must match {text:?}");
            }
            for text in *no {
                assert!(!glob.matches(text), "{pattern:?} must not match {text:?}");
            }
        }
    }

    #[test]
    fn what_the_syntax_does_not_cover_is_refused_with_the_reason() {
        for (pattern, want) in [
            ("", GlobError::Empty),
            ("hxa[0-9", GlobError::UnclosedClass),
            ("[", GlobError::UnclosedClass),
            ("[!", GlobError::UnclosedClass),
            ("[a-", GlobError::UnclosedClass),
            ("[a\\", GlobError::UnclosedClass),
            ("hxa]", GlobError::StrayClose),
            ("[a]]", GlobError::StrayClose),
            ("[]", GlobError::EmptyClass),
            ("[!]", GlobError::EmptyClass),
            ("[^]x]", GlobError::EmptyClass),
            ("[9-0]", GlobError::ReversedRange('9', '0')),
            ("[[:digit:]]", GlobError::PosixClass),
            ("[[=a=]]", GlobError::PosixClass),
            ("[[.a.]]", GlobError::PosixClass),
            ("a\\", GlobError::TrailingEscape),
        ] {
            assert_eq!(Glob::parse(pattern), Err(want), "{pattern:?}");
        }
        // The messages say how to write what was meant.
        assert_eq!(
            GlobError::ReversedRange('9', '0').to_string(),
            "the range '9-0' is reversed (write '0-9')"
        );
        assert_eq!(
            GlobError::EmptyClass.to_string(),
            "an empty class '[]' matches nothing (a literal ']' is written '\\]')"
        );
    }

    #[test]
    fn stars_collapse_and_the_source_is_kept() {
        let glob = g("a**b***");
        assert_eq!(glob.tokens.len(), 4);
        assert_eq!(glob.as_str(), "a**b***");
        assert_eq!(glob.to_string(), "a**b***");
        assert!(glob.matches("ab") && glob.matches("aXbY") && !glob.matches("ba"));
    }

    /// The pattern that made the old matchers exponential: 30 `a*` groups
    /// and a `b`, against 60 `a`s (no `b`, so every split is tried). The
    /// old recursive matchers never finished this; here it is correct and
    /// stays within the matcher's bound, counted in steps, not timed.
    #[test]
    fn pathological_patterns_stay_within_the_linear_bound() {
        let text = "a".repeat(60);
        let cases = [
            ("a*".repeat(30) + "b", false),
            ("a*".repeat(30) + "a", true),
            ("*a".repeat(30) + "*b", false),
            ("?*".repeat(30) + "[!a]", false),
            ("*[a]".repeat(59) + "*", true),
        ];
        for (pattern, want) in cases {
            let glob = g(&pattern);
            let mut steps = 0;
            assert_eq!(glob.run(&text, &mut steps), want, "{pattern}");
            let bound = (glob.tokens.len() + 1) * (text.chars().count() + 1);
            assert!(steps <= bound, "{pattern}: {steps} steps > {bound}");
        }
        // A long text, too: the bound is in the product, not a power.
        let text = "a".repeat(4000);
        let glob = g(&("*a".repeat(100) + "*b"));
        let mut steps = 0;
        assert!(!glob.run(&text, &mut steps));
        assert!(
            steps <= (glob.tokens.len() + 1) * (text.len() + 1),
            "{steps}"
        );
    }
}
