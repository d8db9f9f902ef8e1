//! csum-offload: a CNI chained plugin that sets checksum offload on a pod's
//! veth pair according to the host NIC's driver.

pub mod apply;
pub mod cli;
pub mod cni;
pub mod config;
pub mod detect;
pub mod ethtool;
pub mod features;
pub mod install;
pub mod link;
pub mod logger;
pub mod netlink;
pub mod netns;
pub mod offload;
pub mod policy;
pub mod veth;

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
            None => crate::netlink::RouteSocket::open()?,
            Some(path) => {
                let target = crate::netns::open(path)?;
                crate::netns::run_in(
                    &target,
                    &crate::netns::current()?,
                    crate::netlink::RouteSocket::open,
                )??
            }
        };
        let names = crate::ethtool::feature_names(socket.fd(), ifname)?;
        let state = crate::ethtool::features(socket.fd(), ifname, names.len())?;
        Ok(names
            .into_iter()
            .enumerate()
            .map(|(i, n)| (n, state.active(i), state.changeable(i)))
            .collect())
    }
}
