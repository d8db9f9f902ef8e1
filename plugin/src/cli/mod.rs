//! Operator commands on the same binary, front ends over the core:
//! `detect` (what this node's pods would get), `inspect` (what a pod
//! got) and `probe` (whether this node's path needs the fix).

mod detect;
mod inspect;
mod probe;

pub use detect::detect_command;
pub use inspect::inspect_command;
pub use probe::probe_command;

use crate::args::ArgsError;
use crate::config::LoadError;
use crate::offload::detection::DetectError;
use crate::offload::pod::PodError;
use crate::offload::probe::ProbeError;
use crate::offload::KernelError;

/// Why an operator command failed; printed after "csum-offload: ".
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Args(#[from] ArgsError),
    #[error(transparent)]
    Config(#[from] LoadError),
    #[error(transparent)]
    Detect(#[from] DetectError),
    #[error(transparent)]
    Pod(#[from] PodError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error("{ifname} does not exist in {netns}")]
    NoInterface { ifname: String, netns: String },
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error("{0}: {1}")]
    Invalid(&'static str, String),
    #[error("cannot print JSON: {0}")]
    Json(#[from] serde_json::Error),
}
