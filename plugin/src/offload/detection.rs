//! Node facts: the host NIC(s) behind the default route, and their drivers.
//! What those facts mean for the pods is `decision`'s job, not this one's.

use crate::kernel::ethtool;
use crate::kernel::link::Link;
use crate::kernel::netlink::RouteSocket;
use crate::kernel::system;
use netlink_packet_route::AddressFamily;
use std::collections::BTreeSet;
use std::io;

/// How deep stacked devices are followed (vlan on bond on bridge...).
const MAX_DEPTH: usize = 8;

/// Why the host NIC(s) could not be found.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("netlink socket: {0}")]
    Socket(#[source] io::Error),
    #[error("cannot read hostInterface {name:?}: {source}")]
    ReadHostInterface { name: String, source: io::Error },
    #[error("hostInterface {0:?} does not exist on this host")]
    NoHostInterface(String),
    #[error("cannot read {family} routes: {source}")]
    Routes {
        family: &'static str,
        source: io::Error,
    },
    #[error(
        "the host has no default route; set hostInterface or hostDriver in the csum-offload config"
    )]
    NoDefaultRoute,
    #[error("cannot read nexthop {id}: {source}")]
    Nexthop { id: u32, source: io::Error },
    #[error("cannot read interface #{index}: {source}")]
    ReadLink { index: u32, source: io::Error },
    #[error("cannot list host interfaces: {0}")]
    ListLinks(#[source] io::Error),
    #[error("no interface with index {0}")]
    NoSuchIndex(u32),
    #[error("{name} names lower device #{lower}, which does not exist")]
    MissingLower { name: String, lower: u32 },
    #[error("device stack under {0} is deeper than {MAX_DEPTH}")]
    TooDeep(String),
    #[error("cannot read the driver of {name}: {source}")]
    Driver { name: String, source: io::Error },
    #[error("no device with a driver found under the host interface (a loop of stacked devices?); set hostInterface or hostDriver")]
    NoDriver,
}

/// Where the walk reads links from: the kernel (live) or a fixed table
/// (unit tests).
pub trait LinkSource {
    fn link(&mut self, index: u32) -> Result<Option<Link>, DetectError>;
    /// The devices enslaved to `master` (bond/team slaves, bridge ports).
    fn ports(&mut self, master: u32) -> Result<Vec<Link>, DetectError>;
}

/// The host's links, asked for one at a time: a node with hundreds of pod
/// veths need not be dumped unless a bond or bridge needs its ports.
impl LinkSource for RouteSocket {
    fn link(&mut self, index: u32) -> Result<Option<Link>, DetectError> {
        self.link_by_index(index)
            .map_err(|source| DetectError::ReadLink { index, source })
    }
    fn ports(&mut self, master: u32) -> Result<Vec<Link>, DetectError> {
        self.ports_of(master).map_err(DetectError::ListLinks)
    }
}

/// The devices between a start interface and the NICs that carry it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resolution {
    /// Every device visited, in walk order.
    pub visited: Vec<Link>,
    /// "upper -> lower" edges, for display, in the order they were followed.
    pub edges: Vec<(u32, u32)>,
    /// The devices with a real driver at the bottom of the stack.
    pub leaves: Vec<u32>,
}

impl Resolution {
    pub fn name(&self, index: u32) -> String {
        self.visited
            .iter()
            .find(|l| l.index == index)
            .map_or_else(|| format!("#{index}"), Link::describe)
    }
}

/// Follows `start` down to the devices that have a real driver:
/// vlan/macvlan/ipvlan/macsec -> their lower device; vxlan -> the device it
/// is bound to; bond/team -> their ports; bridge/vrf -> their ports that
/// are not veths (veth ports are pods). Anything else (a device without a
/// kind, or a kind with no lower device, a vxlan bound to none) is a leaf.
/// An Open vSwitch bridge is a leaf too: its ports hang off `ovs-system`,
/// not off the bridge, so they cannot be told from here.
pub fn resolve(source: &mut impl LinkSource, start: u32) -> Result<Resolution, DetectError> {
    let link = source.link(start)?.ok_or(DetectError::NoSuchIndex(start))?;
    let mut res = Resolution::default();
    walk(source, link, 0, &mut BTreeSet::new(), &mut res)?;
    Ok(res)
}

fn walk(
    source: &mut impl LinkSource,
    link: Link,
    depth: usize,
    seen: &mut BTreeSet<u32>,
    res: &mut Resolution,
) -> Result<(), DetectError> {
    if !seen.insert(link.index) {
        return Ok(());
    }
    if depth >= MAX_DEPTH {
        return Err(DetectError::TooDeep(link.name));
    }
    let index = link.index;
    let lower = match link.kind.as_deref() {
        Some("vlan" | "macvlan" | "macvtap" | "ipvlan" | "ipvtap" | "macsec") => {
            link.lower_in_same_netns()
        }
        Some("vxlan") => link.underlay_in_same_netns(),
        _ => None,
    };
    let lowers: Vec<Link> = match (lower, link.kind.as_deref()) {
        (Some(lower), _) => vec![source
            .link(lower)?
            .ok_or_else(|| DetectError::MissingLower {
                name: link.name.clone(),
                lower,
            })?],
        (None, Some("bond" | "team")) => source.ports(index)?,
        (None, Some("bridge" | "vrf")) => source
            .ports(index)?
            .into_iter()
            .filter(|l| !l.is_veth())
            .collect(),
        _ => Vec::new(),
    };
    res.visited.push(link);
    if lowers.is_empty() {
        res.leaves.push(index);
        return Ok(());
    }
    for lower in lowers {
        res.edges.push((index, lower.index));
        walk(source, lower, depth + 1, seen, res)?;
    }
    Ok(())
}

/// What a NIC is, as far as a policy can tell. Empty strings are facts
/// the driver or the node does not report (the in-kernel txgbe has no
/// driver version; a NIC named by `hostDriver` has only its driver).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NicFacts {
    pub driver: String,
    pub driver_version: String,
    pub firmware_version: String,
    pub bus_info: String,
    /// `vendor:device` of the PCI function, as `lspci -n` prints it.
    pub pci_id: String,
    /// The running kernel's release.
    pub kernel: String,
}

impl NicFacts {
    /// Only a driver name (`hostDriver`), on this kernel.
    pub fn of_driver(driver: &str) -> Self {
        Self {
            driver: driver.to_string(),
            kernel: system::kernel_release(),
            ..Self::default()
        }
    }
}

/// One NIC at the bottom of the uplink, and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    pub name: String,
    pub facts: NicFacts,
}

/// What detection found on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uplink {
    /// Where the walk started: the default route's device(s) or the
    /// configured hostInterface, described ("bond0 (bond)").
    pub start: Vec<String>,
    /// How the start was chosen ("IPv4 default route (metric 100)").
    pub how: String,
    /// Human-readable edges, e.g. "bond0 (bond) -> enp1s0f0".
    pub chain: Vec<String>,
    /// The leaves, each once, in walk order.
    pub nics: Vec<Nic>,
    /// Every device the walk went through, leaves included: what an agent
    /// must never take for a container's interface (a kind node's uplink
    /// is a veth whose peer is in another netns).
    pub devices: Vec<String>,
}

/// Detects the host NIC(s) in the netns of `socket` (the host's):
/// `host_interface` if given, else the devices of every default route, of
/// both families, in every table but `local` (policy routing and VRFs
/// keep theirs elsewhere than `main`).
pub fn find_uplink(
    socket: &mut RouteSocket,
    host_interface: Option<&str>,
) -> Result<Uplink, DetectError> {
    let (starts, how) = match host_interface {
        Some(name) => {
            let link = socket
                .link_by_name(name)
                .map_err(|source| DetectError::ReadHostInterface {
                    name: name.to_string(),
                    source,
                })?
                .ok_or_else(|| DetectError::NoHostInterface(name.to_string()))?;
            (vec![link.index], "hostInterface from config".to_string())
        }
        None => default_route_devices(socket)?,
    };
    let mut start = Vec::new();
    let mut chain = Vec::new();
    let mut leaves: Vec<String> = Vec::new();
    let mut devices: Vec<String> = Vec::new();
    for index in starts {
        let res = resolve(socket, index)?;
        for link in &res.visited {
            if !devices.contains(&link.name) {
                devices.push(link.name.clone());
            }
        }
        start.push(res.name(index));
        chain.extend(
            res.edges
                .iter()
                .map(|(u, l)| format!("{} -> {}", res.name(*u), res.name(*l))),
        );
        for leaf in &res.leaves {
            let name = res
                .visited
                .iter()
                .find(|l| l.index == *leaf)
                .map(|l| l.name.clone())
                .unwrap_or_default();
            if !leaves.contains(&name) {
                leaves.push(name);
            }
        }
    }
    let mut nics = Vec::new();
    let kernel = system::kernel_release();
    for name in leaves {
        let info =
            ethtool::driver_info(socket.fd(), &name).map_err(|source| DetectError::Driver {
                name: name.clone(),
                source,
            })?;
        let facts = NicFacts {
            pci_id: system::pci_id(&info.bus).unwrap_or_default(),
            driver: info.driver,
            driver_version: info.version,
            firmware_version: info.firmware,
            bus_info: info.bus,
            kernel: kernel.clone(),
        };
        nics.push(Nic { name, facts });
    }
    if nics.is_empty() {
        return Err(DetectError::NoDriver);
    }
    Ok(Uplink {
        start,
        how,
        chain,
        nics,
        devices,
    })
}

fn default_route_devices(socket: &mut RouteSocket) -> Result<(Vec<u32>, String), DetectError> {
    let mut devices: Vec<u32> = Vec::new();
    let mut hows = Vec::new();
    for (family, label) in [
        (AddressFamily::Inet, "IPv4"),
        (AddressFamily::Inet6, "IPv6"),
    ] {
        let routes = socket
            .default_routes(family)
            .map_err(|source| DetectError::Routes {
                family: label,
                source,
            })?;
        for route in routes {
            let mut found = route.interfaces.clone();
            if let Some(id) = route.nexthop {
                found.extend(
                    socket
                        .nexthop_devices(id)
                        .map_err(|source| DetectError::Nexthop { id, source })?,
                );
            }
            if found.is_empty() {
                continue;
            }
            let table = if route.table == u32::from(libc::RT_TABLE_MAIN) {
                String::new()
            } else {
                format!("table {}, ", route.table)
            };
            hows.push(format!(
                "{label} default route ({table}metric {})",
                route.metric
            ));
            for d in found {
                if !devices.contains(&d) {
                    devices.push(d);
                }
            }
        }
    }
    if devices.is_empty() {
        return Err(DetectError::NoDefaultRoute);
    }
    Ok((devices, hows.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed link table, for the kernel's device kinds this machine's
    /// kernel cannot create (vlan, bond, team).
    struct LinkTable<'a>(&'a [Link]);

    impl LinkSource for LinkTable<'_> {
        fn link(&mut self, index: u32) -> Result<Option<Link>, DetectError> {
            Ok(self.0.iter().find(|l| l.index == index).cloned())
        }
        fn ports(&mut self, master: u32) -> Result<Vec<Link>, DetectError> {
            Ok(self
                .0
                .iter()
                .filter(|l| l.master == Some(master))
                .cloned()
                .collect())
        }
    }

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
            underlay: None,
        }
    }

    fn resolve(links: &[Link], start: u32) -> Result<Resolution, String> {
        super::resolve(&mut LinkTable(links), start).map_err(|e| e.to_string())
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
    fn vrf_and_macsec_are_stacked_devices() {
        // Neither kind exists on the CI kernel: a fake table stands in.
        let t = [
            link(2, "eno1", None, None, Some(6)),
            link(6, "vrf-blue", Some("vrf"), None, None),
            link(7, "veth1", Some("veth"), Some(3), Some(6)),
            link(8, "macsec0", Some("macsec"), Some(2), None),
        ];
        assert_eq!(leaves(&t, 6), ["eno1"], "vrf: its ports but pods");
        assert_eq!(leaves(&t, 8), ["eno1"], "macsec: its lower device");
        let mut vx = link(9, "vx0", Some("vxlan"), None, None);
        vx.underlay = Some(2);
        let t = [link(2, "eno1", None, None, None), vx.clone()];
        assert_eq!(leaves(&t, 9), ["eno1"], "vxlan: the device it is bound to");
        vx.underlay = None;
        assert_eq!(leaves(&[vx], 9), ["vx0"], "an unbound vxlan is a leaf");
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
        assert!(resolve(&t, 2)
            .unwrap_err()
            .contains("a names lower device #7"));
    }

    #[test]
    fn visited_devices_name_the_chain() {
        let t = [
            link(2, "eno1", None, None, Some(4)),
            link(4, "bond0", Some("bond"), None, None),
        ];
        let r = resolve(&t, 4).unwrap();
        assert_eq!(r.name(4), "bond0 (bond)");
        assert_eq!(r.name(2), "eno1");
        assert_eq!(r.name(99), "#99");
    }

    #[test]
    fn too_deep_stacks_are_an_error() {
        let t: Vec<Link> = (1..=12)
            .map(|i| link(i, &format!("v{i}"), Some("vlan"), Some(i + 1), None))
            .collect();
        assert!(resolve(&t, 1).unwrap_err().contains("deeper than"));
    }
}
