//! Diagnostics through the `log` facade, to the `logFile` or stderr: never
//! stdout, which belongs to the CNI result. Every line is one write, and
//! control characters in it are escaped: values from a config (a driver
//! name with a newline) cannot forge a line of their own.

use crate::log_line::format_line;
pub use crate::log_line::LEVELS;
use crate::logfile::LogFile;
use log::{LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;

struct Logger {
    /// None: stderr.
    file: Option<LogFile>,
    /// Prefix naming the invocation, e.g. "ADD 3f2a9c1b eth0".
    context: String,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// A level name that is not one of `LEVELS`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be one of off, error, warn, info, debug, trace; got {0:?}")]
pub struct LevelError(pub String);

/// Parses a level name; `None` (not given) is `info`.
pub fn parse_level(name: Option<&str>) -> Result<LevelFilter, LevelError> {
    let Some(name) = name else {
        return Ok(LevelFilter::Info);
    };
    LEVELS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, l)| *l)
        .ok_or_else(|| LevelError(crate::json::clip(name)))
}

/// Installs the logger once per process. A log file that cannot be opened
/// falls back to stderr with a warning rather than failing the CNI call.
pub fn init(level: LevelFilter, file: Option<&Path>, context: String) {
    let mut warning = None;
    let file = file.and_then(|path| {
        LogFile::open(path)
            .map_err(|e| {
                warning = Some(format!(
                    "cannot open log file {}: {e}; logging to stderr",
                    path.display()
                ))
            })
            .ok()
    });
    if LOGGER.set(Logger { file, context }).is_ok() {
        if let Some(logger) = LOGGER.get() {
            if log::set_logger(logger).is_ok() {
                log::set_max_level(level);
            }
        }
    }
    if let Some(w) = warning {
        log::warn!("{w}");
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // One write per line: O_APPEND keeps lines of concurrent plugin
        // runs whole in a shared log file.
        let message = record.args().to_string();
        let line = format_line(record.level(), &self.context, &message);
        let diverted = match &self.file {
            Some(f) => f.write_line(line.as_bytes()),
            None => Err(crate::logfile::Diverted { notice: None }),
        };
        // A log file that cannot take the line (not ours, or full and not
        // rotatable): the line goes to stderr, after the reason, once.
        if let Err(d) = diverted {
            let mut err = std::io::stderr();
            if let Some(notice) = d.notice {
                let _ =
                    err.write_all(format_line(log::Level::Warn, &self.context, &notice).as_bytes());
            }
            let _ = err.write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(parse_level(None), Ok(LevelFilter::Info));
        assert_eq!(parse_level(Some("trace")), Ok(LevelFilter::Trace));
        assert_eq!(parse_level(Some("off")), Ok(LevelFilter::Off));
        assert_eq!(
            parse_level(Some("verbose")).unwrap_err().to_string(),
            "must be one of off, error, warn, info, debug, trace; got \"verbose\""
        );
    }
}
