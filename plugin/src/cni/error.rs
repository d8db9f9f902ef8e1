//! Every way a CNI call can fail, mapped once to the spec's error codes.

use serde::Serialize;

/// Errors a CNI invocation reports to the runtime. The variant decides the
/// code; the text is the `msg` the operator reads in the runtime's error.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("incompatible CNI version: {0}")]
    IncompatibleVersion(String),
    #[error("invalid environment: {0}")]
    InvalidEnv(String),
    #[error("cannot decode network configuration on stdin: {0}")]
    Decode(String),
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error("try again later: {0}")]
    TryAgain(String),
    #[error("plugin not available: {0}")]
    NotAvailable(String),
    /// A feature the policy requires could not be set or did not stick.
    #[error("offload settings not applied: {0}")]
    NotApplied(String),
    /// CHECK found a feature that no longer matches the policy.
    #[error("offload settings drifted: {0}")]
    Drifted(String),
    /// The host NIC or its driver could not be determined.
    #[error("host NIC detection failed: {0}")]
    Detection(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl CniError {
    /// Codes 1-99 are the spec's; 100+ are this plugin's own.
    pub fn code(&self) -> u32 {
        match self {
            Self::IncompatibleVersion(_) => 1,
            Self::InvalidEnv(_) => 4,
            Self::Decode(_) => 6,
            Self::InvalidConfig(_) => 7,
            Self::TryAgain(_) => 11,
            Self::NotAvailable(_) => 50,
            Self::NotApplied(_) => 100,
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
            Self::NotApplied(_) | Self::Drifted(_) | Self::Detection(_) => {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_object_has_spec_fields() {
        let json = CniError::InvalidConfig("unknown feature \"txx\"".into()).to_json("1.0.0");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["code"], 7);
        assert_eq!(v["msg"], "invalid configuration: unknown feature \"txx\"");
        assert!(v.get("details").is_none());
        let v: serde_json::Value =
            serde_json::from_str(&CniError::NotApplied("x".into()).to_json("0.4.0")).unwrap();
        assert_eq!(v["code"], 100);
        assert!(v["details"].as_str().unwrap().contains("troubleshooting"));
    }

    #[test]
    fn codes_follow_the_spec() {
        assert_eq!(CniError::IncompatibleVersion(String::new()).code(), 1);
        assert_eq!(CniError::InvalidEnv(String::new()).code(), 4);
        assert_eq!(CniError::Decode(String::new()).code(), 6);
        assert_eq!(CniError::TryAgain(String::new()).code(), 11);
        assert_eq!(CniError::NotAvailable(String::new()).code(), 50);
        assert_eq!(CniError::Internal(String::new()).code(), 999);
    }
}
