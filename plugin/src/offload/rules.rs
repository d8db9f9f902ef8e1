//! Policy by evidence: rules that match a NIC's driver, driver version,
//! firmware, the running kernel and the PCI id, checked in order before the
//! driver table. A broken offload is usually a combination of kernel,
//! driver and firmware, so a node whose driver or firmware is fixed need
//! not pay the software-checksum cost.

use super::detection::NicFacts;
use super::settings::{FeatureSettings, SettingsError};
use crate::glob::{Glob, GlobError};
use crate::json;
use serde_json::Value;
use std::cmp::Ordering;
use std::fmt;

/// The fields a rule matches on, as config names them.
const MATCH_FIELDS: &[&str] = &[
    "driver",
    "driverVersion",
    "firmwareVersion",
    "kernel",
    "pciId",
    "busInfo",
];

impl NicFacts {
    /// The fact a rule field matches on.
    fn get(&self, field: &str) -> &str {
        match field {
            "driver" => &self.driver,
            "driverVersion" => &self.driver_version,
            "firmwareVersion" => &self.firmware_version,
            "kernel" => &self.kernel,
            "pciId" => &self.pci_id,
            "busInfo" => &self.bus_info,
            _ => "",
        }
    }
}

/// How one value is matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    /// The crate's one glob syntax (`glob.rs`); a value without `*`, `?`,
    /// `[`, `]` or `\` is matched exactly.
    Glob(Glob),
    /// A comparison on dotted version numbers: the fact's leading dotted
    /// numbers ("6.18.44-fc" is 6.18.44) against these.
    Compare(Ordering, bool, Vec<u64>, String),
}

/// Why a match value is not one. The value is clipped, since it comes
/// from the config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatchError {
    #[error(
        "{0:?} is not a comparison with a dotted version number (e.g. \">=6.15\", \"<1.2.0\")"
    )]
    NotAComparison(String),
    #[error("{0:?} is not a valid glob: {1}")]
    BadGlob(String, #[source] GlobError),
}

impl Matcher {
    /// Parses a match value.
    pub fn parse(text: &str) -> Result<Self, MatchError> {
        for (op, ord, or_equal) in [
            (">=", Ordering::Greater, true),
            ("<=", Ordering::Less, true),
            (">", Ordering::Greater, false),
            ("<", Ordering::Less, false),
            ("=", Ordering::Equal, true),
        ] {
            if let Some(rest) = text.strip_prefix(op) {
                let version = rest.trim();
                let numbers = dotted(version)
                    .filter(|(n, used)| !n.is_empty() && *used == version.len())
                    .map(|(n, _)| n)
                    .ok_or_else(|| MatchError::NotAComparison(json::clip(text)))?;
                return Ok(Self::Compare(ord, or_equal, numbers, text.to_string()));
            }
        }
        Glob::parse(text)
            .map(Self::Glob)
            .map_err(|why| MatchError::BadGlob(json::clip(text), why))
    }

    pub fn matches(&self, fact: &str) -> bool {
        match self {
            Self::Glob(pattern) => pattern.matches(fact),
            Self::Compare(ord, or_equal, want, _) => match dotted(fact) {
                // The fact must be a version: its numbers end it or are
                // followed by a separator ("6.18.44-fc", "5.15.2-k"), not
                // by more of a word ("0x00020004" is not 0).
                Some((have, used))
                    if !have.is_empty()
                        && fact[used..]
                            .chars()
                            .next()
                            .is_none_or(|c| !c.is_ascii_alphanumeric()) =>
                {
                    let cmp = compare(&have, want);
                    cmp == *ord || (*or_equal && cmp == Ordering::Equal)
                }
                _ => false,
            },
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Glob(g) => write!(f, "{:?}", g.as_str()),
            Self::Compare(_, _, _, s) => write!(f, "{s:?}"),
        }
    }
}

/// The leading dotted numbers of `s` and how many bytes they take.
fn dotted(s: &str) -> Option<(Vec<u64>, usize)> {
    let mut numbers = Vec::new();
    let mut used = 0;
    let bytes = s.as_bytes();
    loop {
        let start = used;
        while used < bytes.len() && bytes[used].is_ascii_digit() {
            used += 1;
        }
        if used == start {
            // "6." then no digit: the dot is not part of the version.
            return (!numbers.is_empty()).then(|| (numbers, start.saturating_sub(1)));
        }
        numbers.push(s[start..used].parse().ok()?);
        if used < bytes.len() && bytes[used] == b'.' {
            used += 1;
        } else {
            return Some((numbers, used));
        }
    }
}

/// Component by component; missing components count as 0 (6.15 = 6.15.0).
fn compare(a: &[u64], b: &[u64]) -> Ordering {
    let len = a.len().max(b.len());
    (0..len)
        .map(|i| {
            a.get(i)
                .copied()
                .unwrap_or(0)
                .cmp(&b.get(i).copied().unwrap_or(0))
        })
        .find(|o| *o != Ordering::Equal)
        .unwrap_or(Ordering::Equal)
}

/// One rule: what it matches, and the settings it gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Its place in `rules`, for messages ("rules[0]").
    pub index: usize,
    /// (config field, matcher); `driver` always among them.
    pub when: Vec<(&'static str, Matcher)>,
    pub settings: FeatureSettings,
}

/// Why a `rules` entry is not valid; names the rule and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("rules must be a list of rules, got {0}")]
    NotAList(&'static str),
    #[error("rules[{0}] must be an object, got {1}")]
    NotAnObject(usize, &'static str),
    #[error("rules[{0}]: unknown field {1:?}; a rule has driver, driverVersion, firmwareVersion, kernel, pciId, busInfo and settings")]
    UnknownField(usize, String),
    #[error("rules[{0}].driver is required")]
    NoDriver(usize),
    #[error("rules[{0}].settings is required (use {{}} for \"change nothing\")")]
    NoSettings(usize),
    #[error("rules[{0}].{1} must be a string, got {2}")]
    NotAString(usize, &'static str, &'static str),
    #[error("rules[{0}].{1}: must not be empty")]
    Empty(usize, &'static str),
    #[error("rules[{0}].{1}: {2}")]
    BadMatch(usize, &'static str, #[source] MatchError),
    #[error(transparent)]
    Settings(#[from] SettingsError),
}

/// Parses `rules`.
pub fn parse(value: &Value) -> Result<Vec<Rule>, RuleError> {
    let list = value
        .as_array()
        .ok_or_else(|| RuleError::NotAList(json::kind(value)))?;
    list.iter()
        .enumerate()
        .map(|(i, v)| parse_rule(i, v))
        .collect()
}

fn parse_rule(index: usize, value: &Value) -> Result<Rule, RuleError> {
    let obj = value
        .as_object()
        .ok_or_else(|| RuleError::NotAnObject(index, json::kind(value)))?;
    if let Some(key) = obj
        .keys()
        .find(|k| k.as_str() != "settings" && !MATCH_FIELDS.contains(&k.as_str()))
    {
        return Err(RuleError::UnknownField(index, json::clip(key)));
    }
    let mut when = Vec::new();
    for field in MATCH_FIELDS {
        let Some(v) = obj.get(*field) else { continue };
        let text = v
            .as_str()
            .ok_or_else(|| RuleError::NotAString(index, field, json::kind(v)))?;
        if text.is_empty() {
            return Err(RuleError::Empty(index, field));
        }
        let matcher = Matcher::parse(text).map_err(|e| RuleError::BadMatch(index, field, e))?;
        when.push((*field, matcher));
    }
    if !when.iter().any(|(f, _)| *f == "driver") {
        return Err(RuleError::NoDriver(index));
    }
    let settings = obj.get("settings").ok_or(RuleError::NoSettings(index))?;
    let settings = FeatureSettings::from_json(settings, &format!("rules[{index}].settings"))?;
    Ok(Rule {
        index,
        when,
        settings,
    })
}

impl Rule {
    /// Whether every field of the rule matches; if so, the reason, e.g.
    /// `driver "txgbe" matches "txgbe", firmwareVersion "0x00020004" matches "0x0002000*"`.
    pub fn matches(&self, facts: &NicFacts) -> Option<String> {
        let mut why = Vec::new();
        for (field, matcher) in &self.when {
            let fact = facts.get(field);
            if !matcher.matches(fact) {
                return None;
            }
            why.push(format!("{field} {fact:?} matches {matcher}"));
        }
        Some(why.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn facts() -> NicFacts {
        NicFacts {
            driver: "txgbe".into(),
            driver_version: "1.1.12".into(),
            firmware_version: "0x00020004".into(),
            bus_info: "0000:01:00.0".into(),
            pci_id: "8088:1001".into(),
            kernel: "6.18.44-fc-v1045".into(),
        }
    }

    fn m(text: &str) -> Matcher {
        Matcher::parse(text).unwrap()
    }

    #[test]
    fn exact_glob_and_comparisons() {
        assert!(m("txgbe").matches("txgbe") && !m("txgbe").matches("txgbe2"));
        assert!(m("1.1.*").matches("1.1.12") && !m("1.1.*").matches("1.2.0"));
        assert!(m("0x0002000*").matches("0x00020004"));
        assert!(m("8088:10[0-9]?").matches("8088:1001"));
        assert!(m("[!i]*").matches("txgbe") && !m("[!i]*").matches("i40e"));
        assert!(m(">=6.15").matches("6.18.44-fc-v1045"));
        assert!(!m("<6.15").matches("6.18.44-fc-v1045"));
        assert!(m(">=6.18.44").matches("6.18.44") && !m(">6.18.44").matches("6.18.44"));
        assert!(m("=6.18").matches("6.18.0") && m("=6.18").matches("6.18"));
        assert!(m("<1.2.0").matches("1.1.12") && m("<=1.1.12").matches("1.1.12"));
        assert!(
            m(">=5.15").matches("5.15.2-k"),
            "a suffix after a separator"
        );
        assert!(
            !m(">=0").matches("0x00020004"),
            "hex is not a dotted version"
        );
        assert!(!m(">=1").matches(""), "a fact the driver does not report");
        assert!(!m("1.1.*").matches(""));
        // One syntax with the agent's flags: escapes, `^` negation.
        assert!(m("0x\\*").matches("0x*") && !m("0x\\*").matches("0x1"));
        assert!(m("[^i]*").matches("txgbe") && !m("[^i]*").matches("i40e"));
    }

    #[test]
    fn bad_values_say_why() {
        for (text, want) in [
            (">=abc", "not a comparison with a dotted version"),
            ("<1.", "not a comparison"),
            ("=", "not a comparison"),
            ("1.[0-9", "a '[' without its ']'"),
            ("1.]", "a ']' without its '['"),
            // Globs the old matcher took and then matched nothing with.
            ("1.[9-0]*", "the range '9-0' is reversed"),
            ("1.\\", "a '\\' at the end escapes nothing"),
            ("[[:digit:]].*", "POSIX classes"),
        ] {
            let e = Matcher::parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn rules_parse_from_the_documented_example_and_match_in_order() {
        let rules = parse(&json!([
            { "driver": "txgbe", "firmwareVersion": "0x0002000*", "settings": { "tx": false } },
            { "driver": "txgbe", "kernel": ">=6.15", "settings": {} }
        ]))
        .unwrap();
        assert_eq!(rules.len(), 2);
        let why = rules[0].matches(&facts()).unwrap();
        assert_eq!(
            why,
            "driver \"txgbe\" matches \"txgbe\", firmwareVersion \"0x00020004\" matches \"0x0002000*\""
        );
        let fixed_firmware = NicFacts {
            firmware_version: "0x00030001".into(),
            ..facts()
        };
        assert!(rules[0].matches(&fixed_firmware).is_none());
        assert!(rules[1].matches(&fixed_firmware).is_some());
        assert!(rules[1].settings.is_empty());
    }

    #[test]
    fn invalid_rules_name_the_rule_and_the_field() {
        let cases = [
            (json!({}), "rules must be a list"),
            (json!([1]), "rules[0] must be an object"),
            (json!([{"settings": {}}]), "rules[0].driver is required"),
            (json!([{"driver": "x"}]), "rules[0].settings is required"),
            (
                json!([{"driver": "x", "settings": {}, "firmware": "1"}]),
                "rules[0]: unknown field \"firmware\"",
            ),
            (
                json!([{"driver": "x", "settings": {}}, {"driver": "y", "kernel": ">=six", "settings": {}}]),
                // Whole: the value is clipped, not the message.
                "rules[1].kernel: \">=six\" is not a comparison with a dotted version number (e.g. \">=6.15\", \"<1.2.0\")",
            ),
            (
                json!([{"driver": "x", "pciId": "8088:[0", "settings": {}}]),
                "rules[0].pciId: \"8088:[0\" is not a valid glob",
            ),
            (
                json!([{"driver": 7, "settings": {}}]),
                "rules[0].driver must be a string, got a number",
            ),
            (
                json!([{"driver": "", "settings": {}}]),
                "rules[0].driver: must not be empty",
            ),
            (
                json!([{"driver": "x", "settings": {"txx": false}}]),
                "rules[0].settings: unknown offload feature \"txx\"",
            ),
        ];
        for (v, want) in cases {
            let e = parse(&v).unwrap_err().to_string();
            assert!(e.contains(want), "{v}: {e}");
        }
    }
}
