//! Every way a CNI call can fail, mapped once to the spec's error codes:
//! the lower layers' errors come in through the `From` impls below, and
//! `code` is the only place a number is chosen.

use super::env::EnvError;
use super::input::{DecodeError, PrevResultError};
use super::version::{ConvertError, VersionError};
use crate::config::ConfigError;
use crate::offload::detection::DetectError;
use crate::offload::pod::{PodError, Problems};
use crate::offload::KernelError;
use serde::Serialize;

/// Errors a CNI invocation reports to the runtime. The variant decides the
/// code; the text is the `msg` the operator reads in the runtime's error.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("incompatible CNI version: {0}")]
    Version(#[from] VersionError),
    #[error("invalid environment: {0}")]
    Env(#[from] EnvError),
    #[error("cannot decode network configuration on stdin: {0}")]
    Decode(#[from] DecodeError),
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("invalid configuration: {0}")]
    PrevResult(#[from] PrevResultError),
    #[error("try again later: {0}")]
    TryAgain(KernelError),
    /// STATUS: the plugin cannot serve ADD on this node.
    #[error("plugin not available: {0}")]
    NotAvailable(Box<CniError>),
    /// A feature the policy requires could not be set or did not stick, or
    /// an end the placement covers could not be reached.
    #[error("offload settings not applied: {0}")]
    NotApplied(Problems),
    /// The pod's interface is not a veth and `nonVeth` is "fail".
    #[error("offload settings not applied: {0} is not a veth and nonVeth is \"fail\"")]
    NotVeth(String),
    /// CHECK found a feature that no longer matches the policy.
    #[error("offload settings drifted: {0}")]
    Drifted(Problems),
    /// The host NIC or its driver could not be determined.
    #[error("host NIC detection failed: {0}")]
    Detection(DetectError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Every code `CniError::code` can return, for the docs test (each page
/// that lists codes must list exactly these).
pub const CODES: &[u32] = &[1, 4, 6, 7, 11, 50, 100, 101, 102, 999];

impl CniError {
    /// Codes 1-99 are the spec's; 100+ are this plugin's own.
    pub fn code(&self) -> u32 {
        match self {
            Self::Version(_) => 1,
            Self::Env(_) => 4,
            Self::Decode(_) => 6,
            Self::Config(_) | Self::PrevResult(_) => 7,
            Self::TryAgain(_) => 11,
            Self::NotAvailable(_) => 50,
            Self::NotApplied(_) | Self::NotVeth(_) => 100,
            Self::Drifted(_) => 101,
            Self::Detection(_) => 102,
            Self::Internal(_) => 999,
        }
    }

    /// The spec's error object. `details` carries the longer context when
    /// the short message has a cause chain.
    pub fn to_json(&self, cni_version: &str) -> String {
        #[derive(Serialize)]
        struct ErrorObject<'a> {
            #[serde(rename = "cniVersion")]
            cni_version: &'a str,
            code: u32,
            msg: String,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        let msg = self.to_string();
        let details = match self {
            Self::NotApplied(_) | Self::NotVeth(_) | Self::Drifted(_) | Self::Detection(_) => {
                "see the plugin log (logFile) and docs/troubleshooting.md"
            }
            _ => "",
        };
        serde_json::to_string(&ErrorObject {
            cni_version,
            code: self.code(),
            msg,
            details,
        })
        .unwrap_or_else(|_| format!(r#"{{"code":{},"msg":"internal error"}}"#, self.code()))
    }
}

impl From<KernelError> for CniError {
    /// Transient errnos ask the runtime to retry.
    fn from(e: KernelError) -> Self {
        if e.is_transient() {
            Self::TryAgain(e)
        } else {
            Self::Internal(e.to_string())
        }
    }
}

impl From<DetectError> for CniError {
    fn from(e: DetectError) -> Self {
        Self::Detection(e)
    }
}

impl From<ConvertError> for CniError {
    fn from(e: ConvertError) -> Self {
        match e {
            ConvertError::Version(v) => Self::Version(v),
            ConvertError::VersionNotString(got) => PrevResultError::VersionNotString(got).into(),
        }
    }
}

impl From<PodError> for CniError {
    /// The pod job's failures, in the words of the CNI variables that
    /// named the pod.
    fn from(e: PodError) -> Self {
        match e {
            PodError::Netns { path, source } => EnvError::Netns { path, source }.into(),
            PodError::SameAsHost(path) => EnvError::OwnNetns(path).into(),
            PodError::IfnameMissing { ifname, netns } => {
                EnvError::IfnameMissing { ifname, netns }.into()
            }
            PodError::NotVeth(what) => Self::NotVeth(what),
            PodError::Kernel(e) => e.into(),
            // Another process kept the record locked: the runtime retries.
            PodError::Record(e) if e.is_busy() => Self::TryAgain(KernelError {
                what: e.to_string(),
                source: std::io::Error::from_raw_os_error(libc::EAGAIN),
            }),
            PodError::Record(e) => Self::Internal(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::pair::Problem;

    #[test]
    fn error_object_has_spec_fields() {
        let e = CniError::from(ConfigError::UnknownField("txx".into()));
        let v: serde_json::Value = serde_json::from_str(&e.to_json("1.0.0")).unwrap();
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["code"], 7);
        assert!(v["msg"]
            .as_str()
            .unwrap()
            .starts_with("invalid configuration: unknown field \"txx\""));
        assert!(v.get("details").is_none());
        let problems = Problems(vec![Problem::HostEndUnreachable(
            crate::offload::veth::PeerError::NoPeer("x".into()),
        )]);
        let v: serde_json::Value =
            serde_json::from_str(&CniError::NotApplied(problems).to_json("0.4.0")).unwrap();
        assert_eq!(v["code"], 100);
        assert_eq!(
            v["msg"],
            "offload settings not applied: host end: x reports no peer interface"
        );
        assert!(v["details"].as_str().unwrap().contains("troubleshooting"));
    }

    #[test]
    fn codes_follow_the_spec() {
        let kernel = |errno| KernelError::new("x", std::io::Error::from_raw_os_error(errno));
        assert_eq!(CniError::from(VersionError::Missing).code(), 1);
        assert_eq!(
            CniError::from(EnvError::UnknownCommand(String::new())).code(),
            4
        );
        assert_eq!(CniError::from(DecodeError::Empty).code(), 6);
        assert_eq!(CniError::from(kernel(libc::EAGAIN)).code(), 11);
        assert_eq!(CniError::from(kernel(libc::EPERM)).code(), 999);
        assert_eq!(
            CniError::NotAvailable(Box::new(CniError::Internal(String::new()))).code(),
            50
        );
        assert_eq!(CniError::from(DetectError::NoDefaultRoute).code(), 102);
        assert_eq!(CniError::Internal(String::new()).code(), 999);
        assert_eq!(
            CniError::from(PodError::SameAsHost("/proc/self/ns/net".into())).code(),
            4
        );
        // One of every variant: CODES is exactly what code() returns.
        let one_of_each = [
            CniError::from(VersionError::Missing),
            CniError::from(EnvError::UnknownCommand(String::new())),
            CniError::from(DecodeError::Empty),
            CniError::from(ConfigError::UnknownField(String::new())),
            CniError::from(PrevResultError::NotAnObject(String::new())),
            CniError::TryAgain(kernel(libc::EBUSY)),
            CniError::NotAvailable(Box::new(CniError::Internal(String::new()))),
            CniError::NotApplied(Problems::default()),
            CniError::NotVeth(String::new()),
            CniError::Drifted(Problems::default()),
            CniError::Detection(DetectError::NoDefaultRoute),
            CniError::Internal(String::new()),
        ];
        let mut codes: Vec<u32> = one_of_each.iter().map(CniError::code).collect();
        codes.dedup();
        assert_eq!(codes, CODES);
    }
}
