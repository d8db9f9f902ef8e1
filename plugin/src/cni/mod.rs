//! The CNI protocol, a front end over the core: one invocation in, one
//! result or error object out.
//!
//! - `env`: CNI_COMMAND and the attachment variables.
//! - `input`: stdin read within a bound, and what cannot be a config.
//! - `netconf`: the network configuration on stdin around our entry.
//! - `version`: supported versions, verb gating, result conversion.
//! - `verbs`: what ADD, CHECK, DEL, GC, STATUS and VERSION do.
//! - `error`: every failure, mapped once to a code.

pub(crate) mod env;
pub mod error;
mod input;
pub mod netconf;
mod verbs;
pub mod version;

use env::Command;
use std::ffi::{OsStr, OsString};

pub use error::CniError as Error;
pub use netconf::NetConf;

/// What the process prints on stdout and exits with.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    pub stdout: String,
    pub exit_code: i32,
}

/// Runs one CNI invocation with stdin read from `input` (bounded; see
/// `input::read_input`).
pub fn run_reader(
    command: &OsStr,
    input: impl std::io::Read,
    getenv: impl Fn(&str) -> Option<OsString>,
) -> Reply {
    match input::read_input(input) {
        Ok(stdin) => run(command, &stdin, getenv),
        Err(e) => fail(command, Error::from(e), version::CURRENT),
    }
}

/// Runs one CNI invocation. `getenv` reads CNI_* variables; stdout is the
/// reply's only channel, diagnostics go to the log.
pub fn run(command: &OsStr, stdin: &[u8], getenv: impl Fn(&str) -> Option<OsString>) -> Reply {
    let mut reported_version = version::CURRENT.to_string();
    let result = Command::parse(command)
        .map_err(Error::from)
        .and_then(|command| verbs::dispatch(command, stdin, &getenv, &mut reported_version));
    match result {
        Ok(stdout) => Reply {
            stdout,
            exit_code: 0,
        },
        Err(err) => fail(command, err, &reported_version),
    }
}

/// The reply to a failed invocation. The error is logged: errors found
/// before the config named a log file reach stderr (a no-op when the
/// logger is already set up).
fn fail(command: &OsStr, err: Error, reported_version: &str) -> Reply {
    let context = match Command::parse(command) {
        Ok(verb) => verb.as_str().to_string(),
        Err(_) => format!(
            "CNI_COMMAND {:?}",
            crate::json::clip(&command.to_string_lossy())
        ),
    };
    crate::logger::init(log::LevelFilter::Info, None, context);
    log::error!("{err}");
    Reply {
        stdout: err.to_json(reported_version),
        exit_code: 1,
    }
}

impl From<Error> for Reply {
    fn from(err: Error) -> Self {
        Reply {
            stdout: err.to_json(version::CURRENT),
            exit_code: 1,
        }
    }
}
