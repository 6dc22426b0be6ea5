//! The CNI versions weft speaks, and how a result's shape changes between them.

use crate::error::{code, CniError};

/// Every version weft answers in, oldest first.
pub const SUPPORTED: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// A supported CNI version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CniVersion {
    /// 0.3.0.
    V030,
    /// 0.3.1.
    V031,
    /// 0.4.0 (adds CHECK).
    V040,
    /// 1.0.0 (drops `version` from ips).
    V100,
    /// 1.1.0 (adds STATUS and GC).
    V110,
}

impl CniVersion {
    /// Parses a `cniVersion`; an unsupported one is error code 1.
    pub fn parse(s: &str) -> Result<CniVersion, CniError> {
        Ok(match s {
            "0.3.0" => CniVersion::V030,
            "0.3.1" => CniVersion::V031,
            "0.4.0" => CniVersion::V040,
            "1.0.0" => CniVersion::V100,
            "1.1.0" => CniVersion::V110,
            other => {
                return Err(CniError::new(
                    code::INCOMPATIBLE_VERSION,
                    "incompatible CNI version",
                    format!(
                        "cniVersion {other:?} is not one weft speaks ({}); set one of those in the network configuration",
                        SUPPORTED.join(", ")
                    ),
                ))
            }
        })
    }

    /// The version as written in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            CniVersion::V030 => "0.3.0",
            CniVersion::V031 => "0.3.1",
            CniVersion::V040 => "0.4.0",
            CniVersion::V100 => "1.0.0",
            CniVersion::V110 => "1.1.0",
        }
    }

    /// Whether result ips carry `"version": "4"` (before 1.0.0).
    pub fn ips_have_version(self) -> bool {
        self < CniVersion::V100
    }
}

/// The answer to VERSION.
pub fn supported_versions_json() -> String {
    serde_json::json!({
        "cniVersion": "1.1.0",
        "supportedVersions": SUPPORTED,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_version_parses_back() {
        for v in SUPPORTED {
            assert_eq!(CniVersion::parse(v).unwrap().as_str(), *v);
        }
        let e = CniVersion::parse("0.2.0").unwrap_err();
        assert_eq!(e.code, code::INCOMPATIBLE_VERSION);
        assert!(e.details.contains("1.1.0"), "{}", e.details);
    }

    #[test]
    fn version_answer_lists_all() {
        let v: serde_json::Value = serde_json::from_str(&supported_versions_json()).unwrap();
        assert_eq!(v["supportedVersions"].as_array().unwrap().len(), 5);
    }
}
