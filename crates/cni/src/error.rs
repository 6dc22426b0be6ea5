//! CNI errors: a code from the spec (or weft's own, 100 and up), a message and details,
//! printed as JSON on stdout with a non-zero exit.

use serde::Serialize;

/// The spec's error codes, and weft's own (100 and up).
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in the network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables (CNI_COMMAND, CNI_CONTAINERID, ...).
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure (reading stdin).
    pub const IO: u32 = 5;
    /// Failed to decode content (stdin is not a network configuration).
    pub const DECODE: u32 = 6;
    /// Invalid network configuration.
    pub const INVALID_CONF: u32 = 7;
    /// Try again later (the router is down or stopped mid-way).
    pub const TRY_AGAIN: u32 = 11;
    /// The plugin is not available (STATUS: router down or IPAM not ready).
    pub const NOT_AVAILABLE: u32 = 50;
    /// weft's router refused the operation (its message says why).
    pub const ROUTER_REFUSED: u32 = 100;
    /// CHECK found the attachment not as the result says.
    pub const CHECK_FAILED: u32 = 101;
}

/// A CNI error, as the spec's error JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("{msg}: {details}")]
pub struct CniError {
    /// The code ([`code`]).
    pub code: u32,
    /// A short message.
    pub msg: String,
    /// What failed, why and what to do.
    pub details: String,
}

impl CniError {
    /// An error with this code, message and details.
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// The error JSON for `cni_version` (the conf's version, or the newest when unknown).
    pub fn to_json(&self, cni_version: &str) -> String {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(rename = "cniVersion")]
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            details: &'a str,
        }
        let out = Out {
            cni_version,
            code: self.code,
            msg: &self.msg,
            details: &self.details,
        };
        serde_json::to_string(&out).unwrap_or_else(|_| {
            format!(
                "{{\"cniVersion\":\"1.1.0\",\"code\":{},\"msg\":\"error\"}}",
                self.code
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_spec_shape() {
        let e = CniError::new(code::TRY_AGAIN, "router down", "start it");
        let v: serde_json::Value = serde_json::from_str(&e.to_json("1.1.0")).unwrap();
        assert_eq!(v["cniVersion"], "1.1.0");
        assert_eq!(v["code"], 11);
        assert_eq!(v["msg"], "router down");
        assert_eq!(v["details"], "start it");
    }
}
