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

    pub fn describe(&self) -> String {
        match &self.kind {
            Some(kind) => format!("{} ({kind})", self.name),
            None => self.name.clone(),
        }
    }
}
