//! csum-offload: a CNI chained plugin that sets checksum offload on a pod's
//! veth pair according to the host NIC's driver, with its DaemonSet
//! installer and operator commands.
//!
//! Layers, dependencies pointing down (docs/design.md has the module map):
//! - front ends: `cni` (the protocol), `cli` (`detect`, `inspect`),
//!   `install` (the DaemonSet's installer), `agent` (the node agent);
//! - `service`: the long-running front ends' loop machinery;
//! - the core: `config` (the entry) and `offload` (facts -> decision ->
//!   tune -> read back);
//! - `kernel`: netlink, ethtool, netns;
//! - support: `logger` (with `logfile`; both below `log_line`, the line
//!   format), `args`, `json`, `fsread`, `glob`
//!   (the one pattern syntax), `spec_versions` (the CNI versions the plugin
//!   speaks).

pub mod agent;
pub mod args;
pub mod cli;
pub mod cni;
pub mod config;
pub(crate) mod fsread;
pub(crate) mod glob;
pub mod install;
pub(crate) mod json;
pub(crate) mod kernel;
pub(crate) mod log_line;
pub(crate) mod logfile;
pub(crate) mod logger;
pub(crate) mod offload;
pub(crate) mod service;
pub(crate) mod spec_versions;
#[cfg(test)]
pub(crate) mod unit_dirs;
/// What the integration tests read through the library rather than through
/// the binary: kept out of the documented surface.
#[doc(hidden)]
pub mod test_support {
    use std::io;
    use std::path::Path;

    /// (name, active, changeable) of every offload feature of `ifname` in
    /// `netns` (None: the calling thread's netns), via ETHTOOL_GFEATURES.
    pub fn feature_table(
        netns: Option<&Path>,
        ifname: &str,
    ) -> io::Result<Vec<(String, bool, bool)>> {
        let socket = match netns {
            None => crate::kernel::netlink::RouteSocket::open()?,
            Some(path) => {
                let target = crate::kernel::netns::open(path)?;
                crate::kernel::netns::run_in(
                    &target,
                    &crate::kernel::netns::current()?,
                    crate::kernel::netlink::RouteSocket::open,
                )??
            }
        };
        let names = crate::kernel::ethtool::feature_names(socket.fd(), ifname)?;
        let state = crate::kernel::ethtool::features(socket.fd(), ifname, names.len())?;
        Ok(names
            .into_iter()
            .enumerate()
            .map(|(i, n)| (n, state.active(i), state.changeable(i)))
            .collect())
    }
}
