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
