//! A network interface as seen in a link dump: just what detection needs.

/// One interface from RTM_GETLINK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// IFLA_INFO_KIND: "veth", "vlan", "bond", ...; `None` for a device
    /// with a hardware driver.
    pub kind: Option<String>,
    /// IFLA_LINK: the lower device (vlan, macvlan) or the veth peer.
    pub link: Option<u32>,
    /// IFLA_LINK_NETNSID: set when `link` lives in another netns.
    pub link_netnsid: Option<i32>,
    /// IFLA_MASTER: the bond, team or bridge this device is enslaved to.
    pub master: Option<u32>,
    /// The device a tunnel sends through, where its kind keeps it in
    /// IFLA_INFO_DATA rather than IFLA_LINK (IFLA_VXLAN_LINK for vxlan).
    pub underlay: Option<u32>,
}

impl Link {
    pub fn is_veth(&self) -> bool {
        self.kind.as_deref() == Some("veth")
    }

    /// The lower device in the same netns, if IFLA_LINK names one.
    pub fn lower_in_same_netns(&self) -> Option<u32> {
        self.link
            .filter(|&l| l != 0 && l != self.index && self.link_netnsid.is_none())
    }

    /// The tunnel's underlay device in the same netns, if it is bound to one.
    pub fn underlay_in_same_netns(&self) -> Option<u32> {
        self.underlay
            .filter(|&l| l != 0 && l != self.index && self.link_netnsid.is_none())
    }

    pub fn describe(&self) -> String {
        match &self.kind {
            Some(kind) => format!("{} ({kind})", self.name),
            None => self.name.clone(),
        }
    }
}

/// Why a string cannot be a Linux interface name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IfnameError {
    #[error("interface name {0:?} must be 1 to 15 bytes long")]
    Length(String),
    #[error("interface name {0:?} is not a valid Linux interface name")]
    Invalid(String),
}

/// Linux interface names (the kernel's dev_valid_name): 1-15 bytes, no
/// '/', ':', whitespace or NUL, not "." or "..".
pub fn check_ifname(name: &str) -> Result<(), IfnameError> {
    if name.is_empty() || name.len() > 15 {
        return Err(IfnameError::Length(crate::json::clip(name)));
    }
    if name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c == '\0')
    {
        return Err(IfnameError::Invalid(crate::json::clip(name)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifname_rules() {
        assert!(check_ifname("eth0").is_ok());
        assert!(check_ifname("123456789012345").is_ok());
        for bad in ["", "1234567890123456", ".", "..", "a b", "a/b", "a:b"] {
            assert!(check_ifname(bad).is_err(), "{bad}");
        }
    }
}
