//! Offload feature names and ethtool's short aliases.
//!
//! Config keys are validated against the kernel's feature string table
//! (`netdev_features_strings`, what `ethtool -k` prints) at parse time, so a
//! typo is a config error before any device is touched. At apply time the
//! same patterns are matched against the strings the running kernel reports
//! (ETH_SS_FEATURES), so a feature this list does not know yet still works
//! once it is named by pattern (the crate's one glob syntax, `glob.rs`).

use crate::glob::Glob;

/// A feature state as ethtool writes it: "on" or "off".
pub fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

/// Feature states as ethtool writes them, comma-separated:
/// `tx-checksum-ip-generic on, tx-checksum-sctp off`.
pub fn describe_states<'a>(states: impl IntoIterator<Item = (&'a String, &'a bool)>) -> String {
    states
        .into_iter()
        .map(|(name, on)| format!("{name} {}", on_off(*on)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every netdev feature name Linux has had up to 6.18, in kernel bit order.
/// Some (`tx-lockless`, `netns-local`) exist only on older kernels: asking
/// for them on where they are gone is reported as unsupported.
pub const KERNEL_FEATURES: &[&str] = &[
    "tx-scatter-gather",
    "tx-checksum-ipv4",
    "tx-checksum-ip-generic",
    "tx-checksum-ipv6",
    "highdma",
    "tx-scatter-gather-fraglist",
    "tx-vlan-hw-insert",
    "rx-vlan-hw-parse",
    "rx-vlan-filter",
    "vlan-challenged",
    "tx-generic-segmentation",
    "tx-lockless",
    "netns-local",
    "rx-gro",
    "rx-lro",
    "tx-tcp-segmentation",
    "tx-gso-robust",
    "tx-tcp-ecn-segmentation",
    "tx-tcp-mangleid-segmentation",
    "tx-tcp6-segmentation",
    "tx-tcp-accecn-segmentation",
    "tx-fcoe-segmentation",
    "tx-gre-segmentation",
    "tx-gre-csum-segmentation",
    "tx-ipxip4-segmentation",
    "tx-ipxip6-segmentation",
    "tx-udp_tnl-segmentation",
    "tx-udp_tnl-csum-segmentation",
    "tx-gso-partial",
    "tx-tunnel-remcsum-segmentation",
    "tx-sctp-segmentation",
    "tx-esp-segmentation",
    "tx-udp-segmentation",
    "tx-gso-list",
    "tx-checksum-fcoe-crc",
    "tx-checksum-sctp",
    "fcoe-mtu",
    "rx-ntuple-filter",
    "rx-hashing",
    "rx-checksum",
    "tx-nocache-copy",
    "loopback",
    "rx-fcs",
    "rx-all",
    "tx-vlan-stag-hw-insert",
    "rx-vlan-stag-hw-parse",
    "rx-vlan-stag-filter",
    "l2-fwd-offload",
    "hw-tc-offload",
    "esp-hw-offload",
    "esp-tx-csum-hw-offload",
    "rx-udp_tunnel-port-offload",
    "tls-hw-tx-offload",
    "tls-hw-rx-offload",
    "rx-gro-hw",
    "tls-hw-record",
    "rx-gro-list",
    "macsec-hw-offload",
    "rx-udp-gro-forwarding",
    "hsr-tag-ins-offload",
    "hsr-tag-rm-offload",
    "hsr-fwd-offload",
    "hsr-dup-offload",
];

/// ethtool's legacy offload flags: short name (`ethtool -K dev tx off`),
/// long name (`ethtool -k` summary line) and the feature-name pattern it
/// expands to (ethtool's `off_flag_def` table).
pub const ALIASES: &[(&str, &str, &str)] = &[
    ("rx", "rx-checksumming", "rx-checksum"),
    ("tx", "tx-checksumming", "tx-checksum-*"),
    ("sg", "scatter-gather", "tx-scatter-gather*"),
    ("tso", "tcp-segmentation-offload", "tx-tcp*-segmentation"),
    ("ufo", "udp-fragmentation-offload", "tx-udp-fragmentation"),
    (
        "gso",
        "generic-segmentation-offload",
        "tx-generic-segmentation",
    ),
    ("gro", "generic-receive-offload", "rx-gro"),
    ("lro", "large-receive-offload", "rx-lro"),
    ("rxvlan", "rx-vlan-offload", "rx-vlan-hw-parse"),
    ("txvlan", "tx-vlan-offload", "tx-vlan-hw-insert"),
    ("ntuple", "ntuple-filters", "rx-ntuple-filter"),
    ("rxhash", "receive-hashing", "rx-hashing"),
];

/// A config key resolved to what it selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureSelector {
    /// The key as the user wrote it, for messages.
    pub key: String,
    /// Matched against kernel feature names: the alias's pattern
    /// (`tx-checksum-*`) or the exact name.
    pub pattern: Glob,
    /// True for an ethtool alias: it selects a group, and members the
    /// device cannot change are tolerated the way `ethtool -K` tolerates them.
    pub is_alias: bool,
}

impl FeatureSelector {
    /// Resolves a config key: an alias (short or long) or an exact kernel
    /// feature name. `None` means the name is unknown.
    ///
    /// The patterns are this file's constants, all valid (a unit test
    /// parses every one), so `None` from a pattern cannot happen; it would
    /// refuse the key rather than panic.
    pub fn parse(key: &str) -> Option<Self> {
        let (pattern, is_alias) = match ALIASES.iter().find(|(s, l, _)| *s == key || *l == key) {
            Some((_, _, pattern)) => (*pattern, true),
            None => (*KERNEL_FEATURES.iter().find(|name| **name == key)?, false),
        };
        Some(Self {
            key: key.to_string(),
            pattern: Glob::parse(pattern).ok()?,
            is_alias,
        })
    }

    pub fn matches(&self, feature: &str) -> bool {
        self.pattern.matches(feature)
    }

    /// Members of this selector among the given feature names.
    pub fn members<'a>(
        &'a self,
        names: &'a [String],
    ) -> impl Iterator<Item = (usize, &'a str)> + 'a {
        names
            .iter()
            .enumerate()
            .filter(move |(_, n)| self.matches(n))
            .map(|(i, n)| (i, n.as_str()))
    }
}

/// Keys longer than this are never within a suggestion's edit distance
/// of any name (the longest is 30 bytes, the distance allowed at most 7),
/// so they are not compared: the comparison costs the product of lengths.
const SUGGEST_MAX_KEY: usize = 40;

/// Suggests the closest known name for an unknown key (for error messages).
pub fn suggest(key: &str) -> Option<&'static str> {
    if key.len() > SUGGEST_MAX_KEY {
        return None;
    }
    let candidates = KERNEL_FEATURES
        .iter()
        .copied()
        .chain(ALIASES.iter().flat_map(|(s, l, _)| [*s, *l]));
    candidates
        .map(|c| (edit_distance(key, c), c))
        .filter(|(d, c)| *d <= 3.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(pattern_key: &str) -> Vec<&'static str> {
        let sel = FeatureSelector::parse(pattern_key).unwrap();
        KERNEL_FEATURES
            .iter()
            .copied()
            .filter(|n| sel.matches(n))
            .collect()
    }

    #[test]
    fn tx_alias_expands_to_every_tx_checksum_feature() {
        assert_eq!(
            names("tx"),
            [
                "tx-checksum-ipv4",
                "tx-checksum-ip-generic",
                "tx-checksum-ipv6",
                "tx-checksum-fcoe-crc",
                "tx-checksum-sctp"
            ]
        );
        assert_eq!(names("tx-checksumming"), names("tx"));
    }

    #[test]
    fn tso_alias_expands_like_ethtool() {
        assert_eq!(
            names("tso"),
            [
                "tx-tcp-segmentation",
                "tx-tcp-ecn-segmentation",
                "tx-tcp-mangleid-segmentation",
                "tx-tcp6-segmentation",
                "tx-tcp-accecn-segmentation"
            ]
        );
    }

    #[test]
    fn other_aliases() {
        assert_eq!(names("rx"), ["rx-checksum"]);
        assert_eq!(
            names("sg"),
            ["tx-scatter-gather", "tx-scatter-gather-fraglist"]
        );
        assert_eq!(names("gso"), ["tx-generic-segmentation"]);
        assert_eq!(names("gro"), ["rx-gro"]);
        assert_eq!(names("generic-receive-offload"), ["rx-gro"]);
        assert!(FeatureSelector::parse("gro").unwrap().is_alias);
    }

    #[test]
    fn exact_names_are_not_aliases() {
        let sel = FeatureSelector::parse("tx-checksum-ip-generic").unwrap();
        assert!(!sel.is_alias);
        assert_eq!(names("tx-checksum-ip-generic"), ["tx-checksum-ip-generic"]);
    }

    #[test]
    fn unknown_names_are_rejected_with_a_suggestion() {
        assert!(FeatureSelector::parse("tx-checksum-ip-generc").is_none());
        assert_eq!(
            suggest("tx-checksum-ip-generc"),
            Some("tx-checksum-ip-generic")
        );
        assert!(FeatureSelector::parse("TX").is_none());
        assert!(FeatureSelector::parse("").is_none());
        assert!(
            FeatureSelector::parse("tx-checksum-*").is_none(),
            "raw patterns are not config keys"
        );
        assert_eq!(suggest("zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"), None);
        // Every name is within the length a suggestion is computed for.
        for name in KERNEL_FEATURES
            .iter()
            .chain(ALIASES.iter().flat_map(|(s, l, _)| [s, l]))
        {
            assert!(
                name.len() + 3.max(name.len() / 4) <= SUGGEST_MAX_KEY,
                "{name}"
            );
        }
    }

    #[test]
    fn every_name_and_alias_is_a_valid_pattern_and_a_name_matches_only_itself() {
        for (short, long, _) in ALIASES {
            assert!(FeatureSelector::parse(short).is_some(), "{short}");
            assert!(FeatureSelector::parse(long).is_some(), "{long}");
        }
        for name in KERNEL_FEATURES {
            assert_eq!(names(name), [*name]);
        }
    }
}
