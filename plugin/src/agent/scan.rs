//! Which host interfaces are containers' veths, which of them the agent
//! may touch, and where their peers' network namespaces are.

use crate::glob::Glob;
use crate::kernel::link::Link;
use crate::kernel::netlink::RouteSocket;
use crate::kernel::netns::{self, Found};
use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsFd;
use std::path::PathBuf;

/// A host veth whose peer lives in another netns: a container's interface
/// (a pair with both ends in the host netns has no link-netnsid; a
/// host-network container has no veth at all).
pub fn is_container_veth(link: &Link) -> bool {
    link.is_veth() && link.link_netnsid.is_some() && link.link.is_some_and(|l| l != 0)
}

/// Why the agent leaves a host interface alone, whatever asks it to (a
/// pass, an event, a journal record).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Untouchable {
    #[error("{0} is not a veth")]
    NotVeth(String),
    #[error("{0} is a veth whose peer is in the host netns too (a host-only pair)")]
    HostOnly(String),
    #[error("{0} is a device of the node's uplink")]
    Uplink(String),
}

/// The one check of which host interfaces the agent may change: the host
/// end of a container veth pair that is not a device of the uplink
/// (`uplink`: what detection walks, a kind node's veth `eth0` among
/// them). The daemon and `--once` apply it before recording or changing
/// a pair, `restore` before putting one back.
pub fn may_touch(link: &Link, uplink: &[String]) -> Result<(), Untouchable> {
    if !link.is_veth() {
        return Err(Untouchable::NotVeth(link.describe()));
    }
    if !is_container_veth(link) {
        return Err(Untouchable::HostOnly(link.name.clone()));
    }
    if uplink.contains(&link.name) {
        return Err(Untouchable::Uplink(link.name.clone()));
    }
    Ok(())
}

/// The uplink's devices, never touched: `walked` (what the decision's
/// detection walked), else what detection walks now (with `hostDriver`
/// the decision walks nothing, yet a node whose uplink is a veth must
/// still know it), and `host_interface` itself.
pub fn uplink_devices(
    host: &mut RouteSocket,
    walked: &[String],
    host_interface: Option<&str>,
) -> Vec<String> {
    let mut devices = if walked.is_empty() {
        crate::offload::detection::find_uplink(host, host_interface)
            .map(|u| u.devices)
            .unwrap_or_default()
    } else {
        walked.to_vec()
    };
    if let Some(name) = host_interface {
        if !devices.iter().any(|d| d == name) {
            devices.push(name.to_string());
        }
    }
    devices
}

/// Which pairs the operator lets the agent touch, by their host end.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Only host ends attached to one of these bridges (empty: any).
    pub bridges: Vec<String>,
    /// Only host ends whose name matches one of these globs (empty: any).
    pub names: Vec<Glob>,
    /// Never host ends whose name matches one of these globs.
    pub exclude: Vec<Glob>,
}

impl Scope {
    /// Whether the pair of `host_end`, attached to `master` (its name),
    /// is in scope.
    pub fn admits(&self, host_end: &Link, master: Option<&str>) -> bool {
        let name = host_end.name.as_str();
        (self.bridges.is_empty() || master.is_some_and(|m| self.bridges.iter().any(|b| b == m)))
            && (self.names.is_empty() || self.names.iter().any(|g| g.matches(name)))
            && !self.exclude.iter().any(|g| g.matches(name))
    }
}

/// Where netns files are looked for, besides /proc/*/ns/net.
pub const DEFAULT_NETNS_DIRS: &[&str] = &[
    // iproute2, CNI runtimes (containerd's CRI, CRI-O), Podman/netavark.
    "/run/netns",
    // Docker (its exec-root's netns directory).
    "/run/docker/netns",
];

/// The network namespaces of this node by the id the host has for them,
/// kept as an index of the files that reach them. Ids are reused once a
/// netns is gone, so an entry is only a hint: every answer is opened
/// afresh and asked its id again before it is used. Files already indexed
/// are not opened again, so finding a new container's netns costs a
/// directory listing and one open, however many containers there are.
pub struct NetnsIndex {
    dirs: Vec<PathBuf>,
    processes: bool,
    /// File -> (its identity when indexed, the id then).
    entries: BTreeMap<PathBuf, (u64, Option<i32>)>,
}

impl NetnsIndex {
    pub fn new(dirs: &[PathBuf], processes: bool) -> Self {
        Self {
            dirs: dirs.to_vec(),
            processes,
            entries: BTreeMap::new(),
        }
    }

    /// The netns the host numbers `nsid`, opened now: through an indexed
    /// file that still answers with that id, else after indexing what is
    /// new in the netns directories, then (if allowed) under /proc.
    pub fn find(&mut self, host: &mut RouteSocket, nsid: i32) -> Option<Found> {
        if let Some(found) = self.verified(host, nsid) {
            return Some(found);
        }
        self.index_dirs(host);
        if let Some(found) = self.verified(host, nsid) {
            return Some(found);
        }
        if self.processes {
            self.index_processes(host);
            return self.verified(host, nsid);
        }
        None
    }

    fn verified(&mut self, host: &mut RouteSocket, nsid: i32) -> Option<Found> {
        let candidates: Vec<PathBuf> = self
            .entries
            .iter()
            .filter(|(_, (_, id))| *id == Some(nsid))
            .map(|(p, _)| p.clone())
            .collect();
        for path in candidates {
            match netns::open(&path) {
                Ok(fd) if host.nsid_of(fd.as_fd()).ok().flatten() == Some(nsid) => {
                    return Some(Found { path, fd });
                }
                // Gone, or another netns now: forget the hint.
                _ => {
                    self.entries.remove(&path);
                }
            }
        }
        None
    }

    fn add(&mut self, host: &mut RouteSocket, path: PathBuf, identity: u64) {
        // A netns without an id here has no veth peer of ours (yet: its
        // id is asked again when the file is listed next with another
        // identity, or on a miss); one that vanished meanwhile fails to
        // open (a restarted container's old file is a plain file).
        let id = netns::open(&path)
            .ok()
            .and_then(|fd| host.nsid_of(fd.as_fd()).ok().flatten());
        self.entries.insert(path, (identity, id));
    }

    fn index_dirs(&mut self, host: &mut RouteSocket) {
        use std::os::unix::fs::DirEntryExt;
        let mut listed = BTreeSet::new();
        for dir in self.dirs.clone() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let (path, ino) = (entry.path(), entry.ino());
                listed.insert(path.clone());
                // Unchanged files are known; an id is asked again of files
                // that had none (a netns whose veth arrived since).
                if self
                    .entries
                    .get(&path)
                    .is_some_and(|(i, id)| *i == ino && id.is_some())
                {
                    continue;
                }
                self.add(host, path, ino);
            }
        }
        self.entries
            .retain(|p, _| p.starts_with("/proc") || listed.contains(p));
    }

    fn index_processes(&mut self, host: &mut RouteSocket) {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        let mut listed = BTreeSet::new();
        // Most processes share a handful of netns (the host's above all,
        // which has no id): each netns is opened and asked once per pass,
        // known by the inode its link names, so a miss costs one readlink
        // per process, not an open and a netlink round trip.
        let mut asked: BTreeMap<u64, Option<i32>> = BTreeMap::new();
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
            listed.insert(path.clone());
            if self.entries.get(&path).is_some_and(|(_, id)| id.is_some()) {
                continue;
            }
            let inode = std::fs::read_link(&path)
                .ok()
                .and_then(|l| netns_inode(&l.to_string_lossy()));
            match inode.and_then(|i| asked.get(&i).copied()) {
                Some(id) => {
                    self.entries.insert(path, (u64::from(pid), id));
                }
                None => {
                    self.add(host, path.clone(), u64::from(pid));
                    if let Some(i) = inode {
                        asked.insert(i, self.entries.get(&path).and_then(|(_, id)| *id));
                    }
                }
            }
        }
        self.entries
            .retain(|p, _| !p.starts_with("/proc") || listed.contains(p));
    }
}

/// The inode in a `/proc/PID/ns/net` link's text, `net:[4026531840]`.
fn netns_inode(link: &str) -> Option<u64> {
    link.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
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
    fn netns_links_name_their_inode() {
        assert_eq!(netns_inode("net:[4026531840]"), Some(4026531840));
        assert_eq!(netns_inode("mnt:[4026531840]"), None);
        assert_eq!(netns_inode("net:[x]"), None);
        assert_eq!(netns_inode("net:4026531840"), None);
    }

    #[test]
    fn container_veths_and_scope() {
        assert!(is_container_veth(&veth("veth1", Some(0))));
        assert!(
            !is_container_veth(&veth("veth1", None)),
            "both ends in the host"
        );
        let glob = |p: &str| Glob::parse(p).unwrap();
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
            names: vec![glob("cali*")],
            exclude: vec![glob("calitest*")],
            ..Scope::default()
        };
        assert!(named.admits(&veth("cali12ab", Some(0)), None));
        assert!(!named.admits(&veth("calitest1", Some(0)), None));
        assert!(!named.admits(&veth("veth1", Some(0)), None));
        // The whole syntax, not only `*` (the agent once read `?` and
        // `[...]` as themselves, and excluded nothing).
        let classes = Scope {
            names: vec![glob("hx??")],
            exclude: vec![glob("hxa?"), glob("hx[0-9]*")],
            ..Scope::default()
        };
        assert!(classes.admits(&veth("hxb1", Some(0)), None));
        assert!(!classes.admits(&veth("hxa1", Some(0)), None));
        assert!(!classes.admits(&veth("hx12", Some(0)), None));
        assert!(!classes.admits(&veth("hxb12", Some(0)), None));
    }
}
