//! Finding the host NIC(s) behind the default route, and their drivers.

use crate::ethtool;
use crate::link::Link;
use crate::netlink::RouteSocket;
use crate::policy::{FeatureSettings, Policy};
use netlink_packet_route::AddressFamily;
use serde::Serialize;
use std::collections::BTreeSet;

/// How deep stacked devices are followed (vlan on bond on bridge...).
const MAX_DEPTH: usize = 8;

/// The devices between a start interface and the NICs that carry it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resolution {
    /// "upper -> lower" edges, for display, in the order they were followed.
    pub edges: Vec<(u32, u32)>,
    /// The devices with a real driver at the bottom of the stack.
    pub leaves: Vec<u32>,
}

/// Follows `start` down to the devices that have a real driver:
/// vlan/macvlan/ipvlan -> their lower device; bond/team -> their ports;
/// bridge -> its ports that are not veths (veth ports are pods). Anything
/// else (a device without a kind, or a kind with no lower device) is a leaf.
pub fn resolve(links: &[Link], start: u32) -> Result<Resolution, String> {
    let mut res = Resolution::default();
    let mut seen = BTreeSet::new();
    walk(links, start, 0, &mut seen, &mut res)?;
    Ok(res)
}

fn walk(
    links: &[Link],
    index: u32,
    depth: usize,
    seen: &mut BTreeSet<u32>,
    res: &mut Resolution,
) -> Result<(), String> {
    let link = links
        .iter()
        .find(|l| l.index == index)
        .ok_or_else(|| format!("no interface with index {index}"))?;
    if !seen.insert(index) {
        return Ok(());
    }
    if depth >= MAX_DEPTH {
        return Err(format!(
            "device stack under {} is deeper than {MAX_DEPTH}",
            link.name
        ));
    }
    let lowers: Vec<u32> = match link.kind.as_deref() {
        Some("vlan" | "macvlan" | "macvtap" | "ipvlan" | "ipvtap") => {
            link.lower_in_same_netns().into_iter().collect()
        }
        Some("bond" | "team") => ports(links, index).map(|l| l.index).collect(),
        Some("bridge" | "openvswitch") => ports(links, index)
            .filter(|l| !l.is_veth())
            .map(|l| l.index)
            .collect(),
        _ => Vec::new(),
    };
    if lowers.is_empty() {
        if !res.leaves.contains(&index) {
            res.leaves.push(index);
        }
        return Ok(());
    }
    for lower in lowers {
        res.edges.push((index, lower));
        walk(links, lower, depth + 1, seen, res)?;
    }
    Ok(())
}

fn ports(links: &[Link], master: u32) -> impl Iterator<Item = &Link> {
    links.iter().filter(move |l| l.master == Some(master))
}

/// One NIC found, its driver and what the policy says for it.
#[derive(Debug, Clone, Serialize)]
pub struct Nic {
    pub name: String,
    pub driver: String,
    pub settings: String,
    pub source: String,
}

/// What detection found on this host, and the merged settings.
#[derive(Debug, Clone, Serialize)]
pub struct Detection {
    /// Where the walk started: the default route's device(s) or the
    /// configured hostInterface.
    pub start: Vec<String>,
    pub how: String,
    /// Human-readable edges, e.g. "bond0 (bond) -> enp1s0f0".
    pub chain: Vec<String>,
    pub nics: Vec<Nic>,
    #[serde(skip)]
    pub settings: FeatureSettings,
    #[serde(rename = "settings")]
    pub settings_text: String,
}

impl Detection {
    /// The settings for a configured driver name (no detection).
    pub fn from_driver(policy: &Policy, driver: &str) -> Self {
        Self::build(
            Vec::new(),
            "hostDriver from config".into(),
            Vec::new(),
            vec![(String::new(), driver.to_string())],
            policy,
        )
    }

    fn build(
        start: Vec<String>,
        how: String,
        chain: Vec<String>,
        nics: Vec<(String, String)>,
        policy: &Policy,
    ) -> Self {
        let nics: Vec<Nic> = nics
            .into_iter()
            .map(|(name, driver)| {
                let (s, source) = policy.settings_for(&driver);
                Nic {
                    name,
                    settings: s.to_string(),
                    source: source.to_string(),
                    driver,
                }
            })
            .collect();
        let settings =
            FeatureSettings::merge(nics.iter().map(|n| policy.settings_for(&n.driver).0));
        let settings_text = settings.to_string();
        Self {
            start,
            how,
            chain,
            nics,
            settings,
            settings_text,
        }
    }
}

/// Detects the host NIC(s) in the netns of `socket` (the host's):
/// `host_interface` if given, else the device(s) of the IPv4 default route
/// with the lowest metric (IPv6 if there is no IPv4 default route).
pub fn detect(
    socket: &mut RouteSocket,
    host_interface: Option<&str>,
    policy: &Policy,
) -> Result<Detection, String> {
    let links = socket
        .links()
        .map_err(|e| format!("cannot list host interfaces: {e}"))?;
    let (starts, how) = match host_interface {
        Some(name) => {
            let link = links
                .iter()
                .find(|l| l.name == name)
                .ok_or_else(|| format!("hostInterface {name:?} does not exist on this host"))?;
            (vec![link.index], "hostInterface from config".to_string())
        }
        None => default_route_devices(socket)?,
    };
    let name_of = |i: u32| {
        links
            .iter()
            .find(|l| l.index == i)
            .map_or_else(|| format!("#{i}"), Link::describe)
    };
    let mut chain = Vec::new();
    let mut leaves = Vec::new();
    for start in &starts {
        let res = resolve(&links, *start)?;
        chain.extend(
            res.edges
                .iter()
                .map(|(u, l)| format!("{} -> {}", name_of(*u), name_of(*l))),
        );
        leaves.extend(
            res.leaves
                .into_iter()
                .filter(|l| !leaves.contains(l))
                .collect::<Vec<_>>(),
        );
    }
    let mut nics = Vec::new();
    for leaf in leaves {
        let name = links
            .iter()
            .find(|l| l.index == leaf)
            .map(|l| l.name.clone())
            .unwrap_or_default();
        let driver = ethtool::driver(socket.fd(), &name)
            .map_err(|e| format!("cannot read the driver of {name}: {e}"))?;
        nics.push((name, driver));
    }
    let start = starts.iter().map(|i| name_of(*i)).collect();
    if nics.is_empty() {
        return Err("no device with a driver found under the host interface (a loop of stacked devices?); set hostInterface or hostDriver".into());
    }
    Ok(Detection::build(start, how, chain, nics, policy))
}

fn default_route_devices(socket: &mut RouteSocket) -> Result<(Vec<u32>, String), String> {
    for (family, label) in [
        (AddressFamily::Inet, "IPv4"),
        (AddressFamily::Inet6, "IPv6"),
    ] {
        let routes = socket
            .default_routes(family)
            .map_err(|e| format!("cannot read {label} routes: {e}"))?;
        if let Some(best) = routes.into_iter().next() {
            return Ok((
                best.interfaces,
                format!("{label} default route (metric {})", best.metric),
            ));
        }
    }
    Err(
        "the host has no default route; set hostInterface or hostDriver in the csum-offload config"
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(
        index: u32,
        name: &str,
        kind: Option<&str>,
        lower: Option<u32>,
        master: Option<u32>,
    ) -> Link {
        Link {
            index,
            name: name.into(),
            kind: kind.map(String::from),
            link: lower,
            link_netnsid: None,
            master,
        }
    }

    fn leaves(links: &[Link], start: u32) -> Vec<&str> {
        resolve(links, start)
            .unwrap()
            .leaves
            .iter()
            .map(|i| links.iter().find(|l| l.index == *i).unwrap().name.as_str())
            .collect()
    }

    #[test]
    fn physical_nic_is_its_own_leaf() {
        let t = [link(2, "enp1s0", None, None, None)];
        assert_eq!(leaves(&t, 2), ["enp1s0"]);
        assert!(resolve(&t, 2).unwrap().edges.is_empty());
    }

    #[test]
    fn vlan_follows_its_lower_device() {
        let t = [
            link(2, "enp1s0", None, None, None),
            link(3, "enp1s0.100", Some("vlan"), Some(2), None),
        ];
        assert_eq!(leaves(&t, 3), ["enp1s0"]);
        assert_eq!(resolve(&t, 3).unwrap().edges, [(3, 2)]);
    }

    #[test]
    fn bond_follows_every_slave() {
        let t = [
            link(2, "eno1", None, None, Some(4)),
            link(3, "eno2", None, None, Some(4)),
            link(4, "bond0", Some("bond"), None, None),
            link(5, "eno3", None, None, None),
        ];
        assert_eq!(leaves(&t, 4), ["eno1", "eno2"]);
    }

    #[test]
    fn bridge_skips_veth_ports() {
        let t = [
            link(2, "eno1", None, None, Some(6)),
            link(6, "br0", Some("bridge"), None, None),
            link(7, "veth1", Some("veth"), Some(3), Some(6)),
        ];
        assert_eq!(leaves(&t, 6), ["eno1"]);
    }

    #[test]
    fn bridge_with_only_pods_is_the_leaf() {
        let t = [
            link(6, "cni0", Some("bridge"), None, None),
            link(7, "veth1", Some("veth"), Some(3), Some(6)),
        ];
        assert_eq!(leaves(&t, 6), ["cni0"]);
    }

    #[test]
    fn macvlan_on_vlan_on_bond_on_two_nics() {
        let t = [
            link(2, "ens1f0", None, None, Some(4)),
            link(3, "ens1f1", None, None, Some(4)),
            link(4, "bond0", Some("bond"), None, Some(5)),
            link(5, "br-ex", Some("bridge"), None, None),
            link(8, "br-ex.20", Some("vlan"), Some(5), None),
            link(9, "mv0", Some("macvlan"), Some(8), None),
        ];
        assert_eq!(leaves(&t, 9), ["ens1f0", "ens1f1"]);
        assert_eq!(
            resolve(&t, 9).unwrap().edges,
            [(9, 8), (8, 5), (5, 4), (4, 2), (4, 3)]
        );
    }

    #[test]
    fn lower_device_in_another_netns_stops_the_walk() {
        let mut vlan = link(3, "eth0.5", Some("vlan"), Some(2), None);
        vlan.link_netnsid = Some(0);
        let t = [link(2, "other", None, None, None), vlan];
        assert_eq!(leaves(&t, 3), ["eth0.5"]);
    }

    #[test]
    fn veth_uplink_is_a_leaf() {
        // A kind node: eth0 is a veth whose peer sits in the docker host.
        let mut eth0 = link(5, "eth0", Some("veth"), Some(12), None);
        eth0.link_netnsid = Some(0);
        assert_eq!(leaves(&[eth0], 5), ["eth0"]);
    }

    #[test]
    fn cycles_and_missing_devices() {
        let t = [
            link(2, "a", Some("vlan"), Some(3), None),
            link(3, "b", Some("vlan"), Some(2), None),
        ];
        assert!(resolve(&t, 2).unwrap().leaves.is_empty());
        assert!(resolve(&t, 9)
            .unwrap_err()
            .contains("no interface with index 9"));
        let t = [link(2, "a", Some("vlan"), Some(7), None)];
        assert!(resolve(&t, 2).is_err());
    }

    #[test]
    fn too_deep_stacks_are_an_error() {
        let t: Vec<Link> = (1..=12)
            .map(|i| link(i, &format!("v{i}"), Some("vlan"), Some(i + 1), None))
            .collect();
        assert!(resolve(&t, 1).unwrap_err().contains("deeper than"));
    }

    #[test]
    fn settings_of_several_nics_merge() {
        let policy = Policy::built_in();
        let d = Detection::build(
            vec![],
            String::new(),
            vec![],
            vec![("a".into(), "i40e".into()), ("b".into(), "txgbe".into())],
            &policy,
        );
        assert_eq!(d.settings_text, "tx off");
        assert_eq!(d.nics[0].settings, "(no change)");
    }
}
