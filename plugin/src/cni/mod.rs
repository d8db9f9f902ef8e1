//! The CNI protocol: one invocation in, one result or error object out.

mod commands;
pub mod env;
pub mod error;
pub mod version;

use env::Command;
use error::CniError;

/// What the process prints on stdout and exits with.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    pub stdout: String,
    pub exit_code: i32,
}

/// Runs one CNI invocation. `getenv` reads CNI_* variables; stdout is the
/// reply's only channel, diagnostics go to the log.
pub fn run(command: &str, stdin: &[u8], getenv: impl Fn(&str) -> Option<String>) -> Reply {
    let mut reported_version = version::CURRENT.to_string();
    let result = Command::parse(command)
        .and_then(|command| commands::dispatch(command, stdin, &getenv, &mut reported_version));
    match result {
        Ok(stdout) => Reply {
            stdout,
            exit_code: 0,
        },
        Err(err) => {
            // Errors found before the config named a log file still reach
            // stderr (a no-op when the logger is already set up).
            crate::logger::init(log::LevelFilter::Info, None, command.to_string());
            log::error!("{err}");
            Reply {
                stdout: err.to_json(&reported_version),
                exit_code: 1,
            }
        }
    }
}

/// Codes and messages a caller may match on, re-exported for tests.
pub use error::CniError as Error;

impl From<CniError> for Reply {
    fn from(err: CniError) -> Self {
        Reply {
            stdout: err.to_json(version::CURRENT),
            exit_code: 1,
        }
    }
}
