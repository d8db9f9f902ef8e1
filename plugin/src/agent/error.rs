//! Why an agent command failed: one error type for the agent's front end,
//! below every part of it (options, daemon, restore), turned into text
//! and an exit code only by `main`.

use super::state::StateError;
use crate::args::ArgsError;
use crate::config::LoadError;
use crate::glob::GlobError;
use crate::logger::LevelError;

/// Why an agent command failed; printed after "csum-offload: ".
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Args(#[from] ArgsError),
    #[error(transparent)]
    Config(#[from] LoadError),
    #[error("--log-level {0}")]
    LogLevel(#[from] LevelError),
    #[error("--node-name or NODE_NAME: {0}")]
    NodeName(#[from] crate::config::NodeNameError),
    #[error(
        "--resync must be a whole number of seconds from 0 (events only) to {max}, got {value:?}"
    )]
    Resync { value: String, max: u64 },
    #[error("--metrics-address must be an IP address and port (\"127.0.0.1:9981\", \"[::1]:9981\"), got {0:?}")]
    MetricsAddress(String),
    #[error("{flag} {pattern:?}: {source}; see docs/configuration.md#globs")]
    Glob {
        flag: &'static str,
        pattern: String,
        #[source]
        source: GlobError,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{0}")]
    Locked(String),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    System {
        what: &'static str,
        source: nix::errno::Errno,
    },
    #[error("host NIC detection failed: {0} (detectionFailure \"fail\")")]
    Detection(String),
    /// `--once` or `restore` ran, and something is not as it should be:
    /// the summary, for stdout, and exit code 1.
    #[error("{0}")]
    Unmet(String),
}

impl AgentError {
    /// The process's exit code: 1 when the work ran and something could
    /// not be done, 2 when the command could not run.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Unmet(_) => 1,
            _ => 2,
        }
    }
}

pub(super) fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> AgentError {
    move |source| AgentError::Io { what, source }
}
