//! The kernel interfaces, at the bottom of the crate: thin, synchronous,
//! one job each, and knowing nothing of the layers above them.
//!
//! - `netlink`: the few rtnetlink requests (links, default routes, nsid).
//! - `link`: one interface as a link dump shows it, and interface names.
//! - `ethtool`: the SIOCETHTOOL ioctl (driver, feature names and bits).
//! - `netns`: network namespace handles and a thread's move into one.
//! - `system`: the kernel release, a PCI function's id from sysfs.
//! - `lock`: flock(2), with a bounded wait.
//! - `private`: root-only state files (0700 directory, 0600 files, no
//!   link followed, replaced whole).
//! - `signals`: SIGTERM and SIGINT through a signalfd.
//! - `presence`: "am I the last one out", for the installer and the agent.
//! - `monitor`: link and route events of the host and of every netns with
//!   an id in it.
//! - `plumb`: the rtnetlink changes that wire the probe's throwaway pod
//!   (veth into a netns, link up/delete, address, host route, neighbour).
//! - `tcp`: one bounded TCP client transfer, acknowledged byte count
//!   (SIOCOUTQ), for the probe.

pub mod ethtool;
pub mod link;
pub mod lock;
pub mod monitor;
pub mod netlink;
pub mod netns;
pub mod plumb;
pub mod presence;
pub mod private;
pub mod signals;
pub mod system;
pub mod tcp;
