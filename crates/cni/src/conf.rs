//! The network configuration a runtime hands the plugin on stdin: one entry of a
//! `.conflist` with `cniVersion` and `name` copied in, `runtimeConfig` for the
//! capabilities the entry declares, `prevResult` in a chain, and GC's valid attachments.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Deserialize;

use crate::env::parse_ip;
use crate::error::{code, CniError};
use crate::result::CniResult;
use crate::version::CniVersion;

/// The most bytes of stdin read: a configuration is a few KiB; more is refused (code 6).
pub const MAX_STDIN: usize = 1 << 20;
/// The most addresses asked for in one ADD.
const MAX_IPS: usize = 16;

/// A port published by a runtime (`portMappings` capability); portmap, chained after
/// weft, carries it out.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    /// Port on the host.
    pub host_port: u16,
    /// Port in the container.
    pub container_port: u16,
    /// `tcp` or `udp`.
    #[serde(default = "tcp")]
    pub protocol: String,
    /// Host address to bind, if any.
    #[serde(default, rename = "hostIP")]
    pub host_ip: Option<String>,
}

fn tcp() -> String {
    "tcp".into()
}

/// One attachment GC must keep.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ValidAttachment {
    /// The container.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// Its interface.
    pub ifname: String,
}

#[derive(Debug, Default, Deserialize)]
struct RawRuntimeConfig {
    #[serde(default)]
    ips: Vec<String>,
    #[serde(default, rename = "portMappings")]
    port_mappings: Vec<PortMapping>,
}

#[derive(Debug, Default, Deserialize)]
struct RawIpam {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    subnet: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawArgsCni {
    #[serde(default)]
    ips: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawArgs {
    #[serde(default)]
    cni: RawArgsCni,
}

#[derive(Debug, Deserialize)]
struct Raw {
    #[serde(rename = "cniVersion")]
    cni_version: String,
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    subnet: Option<String>,
    #[serde(default)]
    ipam: Option<RawIpam>,
    #[serde(default)]
    socket: Option<String>,
    #[serde(default, rename = "runtimeConfig")]
    runtime_config: RawRuntimeConfig,
    #[serde(default)]
    args: RawArgs,
    #[serde(default, rename = "prevResult")]
    prev_result: Option<serde_json::Value>,
    #[serde(default, rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Vec<ValidAttachment>>,
}

/// A parsed, checked network configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    /// The version results must follow.
    pub cni_version: CniVersion,
    /// The network's name.
    pub name: String,
    /// The tenant subnet (`subnet`, or `ipam.subnet`); none = the router's default.
    pub subnet: Option<Ipv4Net>,
    /// The router's API socket (written by `weft cni install`).
    pub socket: Option<String>,
    /// Fixed addresses: the `ips` capability, else `args.cni.ips`.
    pub ips: Vec<(Ipv4Addr, Option<u8>)>,
    /// Ports the runtime publishes (for portmap).
    pub port_mappings: Vec<PortMapping>,
    /// The result of the plugins before weft in the chain.
    pub prev_result: Option<CniResult>,
    /// GC: the attachments to keep (none = GC keeps everything... of nothing: see GC).
    pub valid_attachments: Option<Vec<ValidAttachment>>,
}

impl NetConf {
    /// Parses stdin. Not JSON (or not a configuration) is code 6; a bad value code 7; an
    /// unsupported version code 1; a delegated IPAM plugin code 2.
    pub fn parse(bytes: &[u8]) -> Result<NetConf, CniError> {
        if bytes.len() > MAX_STDIN {
            return Err(CniError::new(
                code::DECODE,
                "network configuration too large",
                format!("stdin holds more than {MAX_STDIN} bytes; a configuration is a few KiB"),
            ));
        }
        let raw: Raw = serde_json::from_slice(bytes).map_err(|e| {
            CniError::new(
                code::DECODE,
                "cannot decode the network configuration",
                format!("stdin is not a CNI network configuration ({e}); it needs cniVersion, name and type"),
            )
        })?;
        let cni_version = CniVersion::parse(&raw.cni_version)?;
        let invalid =
            |why: String| CniError::new(code::INVALID_CONF, "invalid network configuration", why);
        if raw.kind != crate::PLUGIN_TYPE {
            return Err(invalid(format!(
                "type is {:?}; this plugin is type \"weft\"",
                raw.kind
            )));
        }
        if raw.name.trim().is_empty() {
            return Err(invalid("name is empty; name the network".into()));
        }
        let mut subnet_text = raw.subnet.clone();
        if let Some(ipam) = &raw.ipam {
            if let Some(k) = ipam.kind.as_deref().filter(|k| *k != crate::PLUGIN_TYPE) {
                return Err(CniError::new(
                    code::UNSUPPORTED_FIELD,
                    "unsupported field ipam.type",
                    format!("ipam.type {k:?}: weft gives addresses from its own IPAM; remove the ipam section or use \"subnet\""),
                ));
            }
            if subnet_text.is_none() {
                subnet_text = ipam.subnet.clone();
            }
        }
        let subnet = match subnet_text {
            None => None,
            Some(s) => Some(s.parse::<Ipv4Net>().map(|n| n.trunc()).map_err(|_| {
                invalid(format!(
                    "subnet {s:?} is not an IPv4 CIDR such as 10.40.0.0/24"
                ))
            })?),
        };
        let ip_texts = if raw.runtime_config.ips.is_empty() {
            raw.args.cni.ips
        } else {
            raw.runtime_config.ips
        };
        if ip_texts.len() > MAX_IPS {
            return Err(invalid(format!("more than {MAX_IPS} ips asked for")));
        }
        let mut ips = Vec::new();
        for t in &ip_texts {
            ips.push(parse_ip(t).map_err(|e| invalid(format!("ips: {e}")))?);
        }
        let prev_result = match raw.prev_result {
            None => None,
            Some(v) => Some(
                CniResult::from_value(&v)
                    .map_err(|e| CniError::new(code::DECODE, "cannot decode prevResult", e))?,
            ),
        };
        Ok(NetConf {
            cni_version,
            name: raw.name,
            subnet,
            socket: raw.socket.filter(|s| !s.is_empty()),
            ips,
            port_mappings: raw.runtime_config.port_mappings,
            prev_result,
            valid_attachments: raw.valid_attachments,
        })
    }
}

/// The `cniVersion` of stdin as far as it can be read (for an error's JSON), else 1.1.0.
pub fn version_of(bytes: &[u8]) -> String {
    #[derive(Deserialize)]
    struct V {
        #[serde(rename = "cniVersion")]
        v: String,
    }
    serde_json::from_slice::<V>(bytes)
        .ok()
        .map(|v| v.v)
        .filter(|v| crate::SUPPORTED.contains(&v.as_str()))
        .unwrap_or_else(|| "1.1.0".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conflist_entry_with_capabilities() {
        let c = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"weft","type":"weft","subnet":"10.40.0.7/24",
                 "socket":"/run/weft/weft.sock","capabilities":{"ips":true,"portMappings":true},
                 "runtimeConfig":{"ips":["10.40.0.9"],"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}}"#,
        )
        .unwrap();
        assert_eq!(c.cni_version, CniVersion::V100);
        assert_eq!(c.subnet, Some("10.40.0.0/24".parse().unwrap()));
        assert_eq!(c.ips, vec![("10.40.0.9".parse().unwrap(), None)]);
        assert_eq!(c.port_mappings[0].host_port, 8080);
        assert_eq!(c.socket.as_deref(), Some("/run/weft/weft.sock"));
    }

    #[test]
    fn codes_for_bad_input() {
        assert_eq!(NetConf::parse(b"{").unwrap_err().code, code::DECODE);
        assert_eq!(NetConf::parse(b"[]").unwrap_err().code, code::DECODE);
        let big = vec![b' '; MAX_STDIN + 1];
        assert_eq!(NetConf::parse(&big).unwrap_err().code, code::DECODE);
        let v = br#"{"cniVersion":"0.2.0","name":"n","type":"weft"}"#;
        assert_eq!(
            NetConf::parse(v).unwrap_err().code,
            code::INCOMPATIBLE_VERSION
        );
        let t = br#"{"cniVersion":"1.1.0","name":"n","type":"bridge"}"#;
        assert_eq!(NetConf::parse(t).unwrap_err().code, code::INVALID_CONF);
        let s = br#"{"cniVersion":"1.1.0","name":"n","type":"weft","subnet":"10.1/99"}"#;
        assert_eq!(NetConf::parse(s).unwrap_err().code, code::INVALID_CONF);
        let i = br#"{"cniVersion":"1.1.0","name":"n","type":"weft","ipam":{"type":"host-local"}}"#;
        assert_eq!(NetConf::parse(i).unwrap_err().code, code::UNSUPPORTED_FIELD);
    }

    #[test]
    fn ipam_subnet_and_args_ips() {
        let c = NetConf::parse(
            br#"{"cniVersion":"0.4.0","name":"n","type":"weft","ipam":{"subnet":"10.44.0.0/16"},
                 "args":{"cni":{"ips":["10.44.0.5/16"]}}}"#,
        )
        .unwrap();
        assert_eq!(c.subnet, Some("10.44.0.0/16".parse().unwrap()));
        assert_eq!(c.ips, vec![("10.44.0.5".parse().unwrap(), Some(16))]);
    }

    #[test]
    fn gc_attachments() {
        let c = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"n","type":"weft",
                 "cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]}"#,
        )
        .unwrap();
        assert_eq!(c.valid_attachments.unwrap()[0].container_id, "a");
        assert_eq!(version_of(b"{\"cniVersion\":\"0.3.1\"}"), "0.3.1");
        assert_eq!(version_of(b"junk"), "1.1.0");
    }
}
