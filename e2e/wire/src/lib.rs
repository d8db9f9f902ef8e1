//! Test tools for the csum-offload end-to-end suite: checking TCP
//! checksums on the wire (`wirecheck`) and a NIC that forwards frames
//! without completing offloaded checksums (`brokennic`).

pub mod checksum;
pub mod frame;
pub mod packet;
pub mod pcap;
pub mod run;
pub mod stats;
