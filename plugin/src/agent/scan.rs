//! Which host interfaces are containers' veths, which of them the agent
//! may touch, and where their peers' network namespaces are.

use crate::kernel::link::Link;
use crate::kernel::netlink::RouteSocket;
use crate::kernel::netns::{self, Found};
use crate::offload::features::glob_match;
use std::path::PathBuf;

/// A host veth whose peer lives in another netns: a container's interface
/// (a pair with both ends in the host netns has no link-netnsid; a
/// host-network container has no veth at all).
pub fn is_container_veth(link: &Link) -> bool {
    link.is_veth() && link.link_netnsid.is_some() && link.link.is_some_and(|l| l != 0)
}

/// Which pairs the operator lets the agent touch, by their host end.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Only host ends attached to one of these bridges (empty: any).
    pub bridges: Vec<String>,
    /// Only host ends whose name matches one of these globs (empty: any).
    pub names: Vec<String>,
    /// Never host ends whose name matches one of these globs.
    pub exclude: Vec<String>,
}

impl Scope {
    /// Whether the pair of `host_end`, attached to `master` (its name),
    /// is in scope.
    pub fn admits(&self, host_end: &Link, master: Option<&str>) -> bool {
        let name = host_end.name.as_str();
        (self.bridges.is_empty() || master.is_some_and(|m| self.bridges.iter().any(|b| b == m)))
            && (self.names.is_empty() || self.names.iter().any(|g| glob_match(g, name)))
            && !self.exclude.iter().any(|g| glob_match(g, name))
    }
}

/// Where netns files are looked for, besides /proc/*/ns/net.
pub const DEFAULT_NETNS_DIRS: &[&str] = &[
    // iproute2, CNI runtimes (containerd's CRI, CRI-O), Podman/netavark.
    "/run/netns",
    // Docker (its exec-root's netns directory).
    "/run/docker/netns",
];

/// The network namespaces of this node, found when first needed and asked
/// for their id in the host netns. Built afresh for each batch of work and
/// never kept: ids are reused once a netns is gone.
pub struct Namespaces {
    dirs: Vec<PathBuf>,
    processes: bool,
    scanned_dirs: bool,
    scanned_processes: bool,
    found: Vec<(i32, Found)>,
}

impl Namespaces {
    pub fn new(dirs: &[PathBuf], processes: bool) -> Self {
        Self {
            dirs: dirs.to_vec(),
            processes,
            scanned_dirs: false,
            scanned_processes: false,
            found: Vec::new(),
        }
    }

    /// The netns the host numbers `nsid`: the netns directories first,
    /// then (if allowed) every process's.
    pub fn find(&mut self, host: &mut RouteSocket, nsid: i32) -> Option<&Found> {
        if !self.found.iter().any(|(id, _)| *id == nsid) && !self.scanned_dirs {
            self.scanned_dirs = true;
            let found = netns::find_all(&self.dirs, false);
            self.add(host, found);
        }
        if !self.found.iter().any(|(id, _)| *id == nsid)
            && self.processes
            && !self.scanned_processes
        {
            self.scanned_processes = true;
            let found = netns::find_all(&[], true);
            self.add(host, found);
        }
        self.found
            .iter()
            .find(|(id, _)| *id == nsid)
            .map(|(_, f)| f)
    }

    fn add(&mut self, host: &mut RouteSocket, found: Vec<Found>) {
        for f in found {
            // A netns without an id here has no veth peer of ours; one that
            // vanished meanwhile answers with an error: both are skipped.
            if let Ok(Some(id)) = host.nsid_of(std::os::fd::AsFd::as_fd(&f.fd)) {
                if !self.found.iter().any(|(known, _)| *known == id) {
                    self.found.push((id, f));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn veth(name: &str, nsid: Option<i32>) -> Link {
        Link {
            index: 9,
            name: name.into(),
            kind: Some("veth".into()),
            link: Some(2),
            link_netnsid: nsid,
            master: Some(3),
            underlay: None,
        }
    }

    #[test]
    fn container_veths_and_scope() {
        assert!(is_container_veth(&veth("veth1", Some(0))));
        assert!(
            !is_container_veth(&veth("veth1", None)),
            "both ends in the host"
        );
        let mut bridge = veth("br0", Some(0));
        bridge.kind = Some("bridge".into());
        assert!(!is_container_veth(&bridge));
        let all = Scope::default();
        assert!(all.admits(&veth("veth1", Some(0)), None));
        let docker = Scope {
            bridges: vec!["docker0".into()],
            ..Scope::default()
        };
        assert!(docker.admits(&veth("veth1", Some(0)), Some("docker0")));
        assert!(!docker.admits(&veth("veth1", Some(0)), Some("cni0")));
        assert!(!docker.admits(&veth("veth1", Some(0)), None));
        let named = Scope {
            names: vec!["cali*".into()],
            exclude: vec!["calitest*".into()],
            ..Scope::default()
        };
        assert!(named.admits(&veth("cali12ab", Some(0)), None));
        assert!(!named.admits(&veth("calitest1", Some(0)), None));
        assert!(!named.admits(&veth("veth1", Some(0)), None));
    }
}
