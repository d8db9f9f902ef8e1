//! The CNI_* environment of one invocation.

use crate::kernel::link::{check_ifname, IfnameError};
use std::ffi::{OsStr, OsString};

/// A CNI_* variable that is missing or malformed.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("unknown CNI_COMMAND {0:?}; expected ADD, DEL, CHECK, VERSION, STATUS or GC")]
    UnknownCommand(String),
    #[error("{0} is not valid UTF-8")]
    NotUtf8(&'static str),
    #[error("{name} is required for {verb}")]
    Required {
        name: &'static str,
        verb: &'static str,
    },
    #[error("CNI_CONTAINERID {0:?} must start with a letter or digit and contain only letters, digits, '_', '.' and '-'")]
    ContainerId(String),
    #[error("CNI_NETNS must be an absolute path, got {0:?}")]
    RelativeNetns(String),
    #[error("CNI_IFNAME: {0}")]
    Ifname(#[from] IfnameError),
    #[error("cannot open network namespace {path}: {source}")]
    Netns {
        path: String,
        source: std::io::Error,
    },
    #[error("CNI_NETNS {0} is the plugin's own network namespace, not a pod's")]
    OwnNetns(String),
    #[error("CNI_IFNAME {ifname} does not exist in {netns}")]
    IfnameMissing { ifname: String, netns: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Command {
    pub fn parse(raw: &OsStr) -> Result<Self, EnvError> {
        let s = raw.to_str().ok_or(EnvError::NotUtf8("CNI_COMMAND"))?;
        Ok(match s {
            "ADD" => Self::Add,
            "DEL" => Self::Del,
            "CHECK" => Self::Check,
            "VERSION" => Self::Version,
            "STATUS" => Self::Status,
            "GC" => Self::Gc,
            other => return Err(EnvError::UnknownCommand(crate::json::clip(other))),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Del => "DEL",
            Self::Check => "CHECK",
            Self::Version => "VERSION",
            Self::Status => "STATUS",
            Self::Gc => "GC",
        }
    }
}

/// The attachment an ADD, DEL or CHECK is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub container_id: String,
    /// Empty on a DEL whose netns is already gone.
    pub netns: String,
    pub ifname: String,
}

impl Attachment {
    /// Reads the attachment variables through `get` (the process
    /// environment in production, a table in tests).
    pub fn from_env(
        command: Command,
        get: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Self, EnvError> {
        // A value that is not UTF-8 is named as such, never mistaken for a
        // missing one.
        let get = |name: &'static str| -> Result<Option<String>, EnvError> {
            get(name)
                .map(|v| v.into_string().map_err(|_| EnvError::NotUtf8(name)))
                .transpose()
        };
        let required = |name: &'static str| -> Result<String, EnvError> {
            get(name)?
                .filter(|v| !v.is_empty())
                .ok_or(EnvError::Required {
                    name,
                    verb: command.as_str(),
                })
        };
        let container_id = required("CNI_CONTAINERID")?;
        if !valid_container_id(&container_id) {
            return Err(EnvError::ContainerId(crate::json::clip(&container_id)));
        }
        let netns = match command {
            Command::Del => get("CNI_NETNS")?.unwrap_or_default(),
            _ => required("CNI_NETNS")?,
        };
        if !netns.is_empty() && !netns.starts_with('/') {
            return Err(EnvError::RelativeNetns(crate::json::clip(&netns)));
        }
        let ifname = required("CNI_IFNAME")?;
        check_ifname(&ifname)?;
        Ok(Self {
            container_id,
            netns,
            ifname,
        })
    }

    /// A short id for log lines.
    pub fn short_id(&self) -> &str {
        &self.container_id[..self.container_id.len().min(12)]
    }
}

/// The spec's container id rule (as libcni validates it).
fn valid_container_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The code the runtime sees for an environment error.
    fn code(e: EnvError) -> u32 {
        crate::cni::Error::from(e).code()
    }

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn commands() {
        for c in ["ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC"] {
            assert_eq!(Command::parse(OsStr::new(c)).unwrap().as_str(), c);
        }
        assert_eq!(code(Command::parse(OsStr::new("add")).unwrap_err()), 4);
        assert_eq!(code(Command::parse(OsStr::new("")).unwrap_err()), 4);
        use std::os::unix::ffi::OsStrExt;
        let e = Command::parse(OsStr::from_bytes(b"AD\xffD")).unwrap_err();
        assert_eq!(e.to_string(), "CNI_COMMAND is not valid UTF-8");
        assert_eq!(code(e), 4);
    }

    #[test]
    fn add_needs_everything() {
        let full = [
            ("CNI_CONTAINERID", "abc"),
            ("CNI_NETNS", "/var/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
        ];
        let a = Attachment::from_env(Command::Add, env(&full)).unwrap();
        assert_eq!(a.ifname, "eth0");
        for missing in 0..3 {
            let partial: Vec<_> = full
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != missing)
                .map(|(_, p)| *p)
                .collect();
            let e = Attachment::from_env(Command::Add, env(&partial)).unwrap_err();
            assert!(e.to_string().contains(full[missing].0), "{e}");
            assert_eq!(code(e), 4);
        }
    }

    #[test]
    fn values_that_are_not_utf8_are_named() {
        use std::os::unix::ffi::OsStrExt;
        let get = |k: &str| match k {
            "CNI_NETNS" => Some(OsStr::from_bytes(b"/run/netns/\xff").to_os_string()),
            other => Some(OsString::from(format!("{}0", other.len()))),
        };
        let e = Attachment::from_env(Command::Add, get).unwrap_err();
        assert_eq!(e.to_string(), "CNI_NETNS is not valid UTF-8");
    }

    #[test]
    fn del_tolerates_a_missing_netns() {
        let a = Attachment::from_env(
            Command::Del,
            env(&[("CNI_CONTAINERID", "abc"), ("CNI_IFNAME", "eth0")]),
        )
        .unwrap();
        assert_eq!(a.netns, "");
    }

    #[test]
    fn bad_values() {
        let cases: [&[(&str, &str)]; 5] = [
            &[
                ("CNI_CONTAINERID", "-abc"),
                ("CNI_NETNS", "/n"),
                ("CNI_IFNAME", "eth0"),
            ],
            &[
                ("CNI_CONTAINERID", "a b"),
                ("CNI_NETNS", "/n"),
                ("CNI_IFNAME", "eth0"),
            ],
            &[
                ("CNI_CONTAINERID", "abc"),
                ("CNI_NETNS", "rel/path"),
                ("CNI_IFNAME", "eth0"),
            ],
            &[
                ("CNI_CONTAINERID", "abc"),
                ("CNI_NETNS", "/n"),
                ("CNI_IFNAME", "eth0-is-far-too-long"),
            ],
            &[
                ("CNI_CONTAINERID", "abc"),
                ("CNI_NETNS", "/n"),
                ("CNI_IFNAME", "a/b"),
            ],
        ];
        for case in cases {
            assert_eq!(
                code(Attachment::from_env(Command::Add, env(case)).unwrap_err()),
                4,
                "{case:?}"
            );
        }
    }
}
