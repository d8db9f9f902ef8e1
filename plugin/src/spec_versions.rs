//! The CNI spec versions csum-offload speaks. One list, below the front
//! ends: the protocol (`cni::version`, which re-exports it) answers VERSION
//! and refuses other versions with it, and the installer refuses to put
//! the entry into a chain the runtime would run at a version outside it
//! (every pod on the node would fail). Neither front end imports the other.

use std::fmt;

/// Versions listed in VERSION's `supportedVersions`, oldest first.
pub const SUPPORTED: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// A parsed `major.minor.patch` version, ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

impl Version {
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.split('.').map(|p| p.parse::<u32>().ok());
        let v = Version(parts.next()??, parts.next()??, parts.next()??);
        parts.next().is_none().then_some(v)
    }
}

/// `cni_version` parsed, if it is one of `SUPPORTED` (exactly as written:
/// "1.0" is not "1.0.0").
pub fn supported(cni_version: &str) -> Option<Version> {
    SUPPORTED
        .contains(&cni_version)
        .then(|| Version::parse(cni_version))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_versions_are_supported() {
        for v in SUPPORTED {
            assert_eq!(supported(v).map(|p| p.to_string()).as_deref(), Some(*v));
        }
        for v in ["0.1.0", "0.2.0", "1.2.0", "2.0.0", "", "1.0", "1.0.0.0"] {
            assert_eq!(supported(v), None, "{v}");
        }
    }
}
