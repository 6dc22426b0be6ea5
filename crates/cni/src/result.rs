//! The ADD result (and the prevResult a chain hands on): interfaces, ips, routes and dns,
//! rendered in the shape of the version the configuration asks for.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::version::CniVersion;

/// The most interfaces, ips or routes read from a prevResult.
const MAX_ITEMS: usize = 256;

/// An interface the chain made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// Its MAC, `aa:bb:..`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// The namespace path (CNI_NETNS) when it is inside the container; empty on the host.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
}

/// An address given to an interface.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// The address with its prefix, `10.32.0.5/12`.
    pub address: String,
    /// The gateway, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Index into the result's interfaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// A route in the container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination CIDR.
    pub dst: String,
    /// Next hop, if not on-link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
}

/// DNS settings for the container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// Name servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// The domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Search domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
}

impl Dns {
    fn is_empty(&self) -> bool {
        self.nameservers.is_empty() && self.domain.is_none() && self.search.is_empty()
    }
}

/// A result, independent of the version it is written in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniResult {
    /// Interfaces.
    pub interfaces: Vec<Interface>,
    /// Addresses.
    pub ips: Vec<IpConfig>,
    /// Routes.
    pub routes: Vec<Route>,
    /// DNS.
    pub dns: Dns,
}

#[derive(Deserialize)]
struct RawIp {
    address: String,
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    interface: Option<usize>,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    interfaces: Vec<Interface>,
    #[serde(default)]
    ips: Vec<RawIp>,
    #[serde(default)]
    routes: Vec<Route>,
    #[serde(default)]
    dns: Dns,
}

impl CniResult {
    /// Reads a result of any supported version (ips with or without `version`).
    pub fn from_value(v: &Value) -> Result<CniResult, String> {
        let raw: Raw = serde_json::from_value(v.clone())
            .map_err(|e| format!("prevResult is not a CNI result ({e})"))?;
        if raw.interfaces.len() > MAX_ITEMS
            || raw.ips.len() > MAX_ITEMS
            || raw.routes.len() > MAX_ITEMS
        {
            return Err(format!("prevResult lists more than {MAX_ITEMS} items"));
        }
        if let Some(bad) = raw
            .ips
            .iter()
            .find(|i| i.interface.is_some_and(|n| n >= raw.interfaces.len()))
        {
            return Err(format!(
                "prevResult: ip {} names interface {:?}, which is not in its interfaces",
                bad.address, bad.interface
            ));
        }
        Ok(CniResult {
            interfaces: raw.interfaces,
            ips: raw
                .ips
                .into_iter()
                .map(|i| IpConfig {
                    address: i.address,
                    gateway: i.gateway,
                    interface: i.interface,
                })
                .collect(),
            routes: raw.routes,
            dns: raw.dns,
        })
    }

    /// `prev` with this result's interfaces, ips and routes after its own (interface
    /// indices shifted); its DNS unless `prev` had one.
    pub fn appended_to(self, prev: Option<CniResult>) -> CniResult {
        let Some(mut out) = prev else {
            return self;
        };
        let shift = out.interfaces.len();
        out.interfaces.extend(self.interfaces);
        out.ips.extend(self.ips.into_iter().map(|mut i| {
            i.interface = i.interface.map(|n| n + shift);
            i
        }));
        out.routes.extend(self.routes);
        if out.dns.is_empty() {
            out.dns = self.dns;
        }
        out
    }

    /// The first interface inside a container (Nomad registers its address in Consul).
    pub fn first_sandbox(&self) -> Option<(usize, &Interface)> {
        self.interfaces
            .iter()
            .enumerate()
            .find(|(_, i)| !i.sandbox.is_empty())
    }

    /// The addresses given to interface `index`.
    pub fn addresses_of(&self, index: usize) -> Vec<&str> {
        self.ips
            .iter()
            .filter(|i| i.interface == Some(index))
            .map(|i| i.address.as_str())
            .collect()
    }

    /// The result as JSON in `version`'s shape.
    pub fn render(&self, version: CniVersion) -> Value {
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|i| {
                let mut v = serde_json::to_value(i).unwrap_or(Value::Null);
                if version.ips_have_version() {
                    v["version"] = json!("4");
                }
                v
            })
            .collect();
        let mut out = json!({
            "cniVersion": version.as_str(),
            "interfaces": self.interfaces,
            "ips": ips,
        });
        if !self.routes.is_empty() {
            out["routes"] = json!(self.routes);
        }
        out["dns"] = json!(self.dns);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "vethwe1".into(),
                    mac: "02:00:00:00:00:01".into(),
                    sandbox: String::new(),
                },
                Interface {
                    name: "eth0".into(),
                    mac: "02:00:00:00:00:02".into(),
                    sandbox: "/run/netns/c1".into(),
                },
            ],
            ips: vec![IpConfig {
                address: "10.32.0.5/12".into(),
                gateway: Some("10.32.0.1".into()),
                interface: Some(1),
            }],
            routes: vec![Route {
                dst: "0.0.0.0/0".into(),
                gw: Some("10.32.0.1".into()),
            }],
            dns: Dns {
                nameservers: vec!["127.0.0.11".into()],
                domain: Some("weft.local".into()),
                search: vec!["weft.local".into()],
            },
        }
    }

    #[test]
    fn shape_per_version() {
        for v in [CniVersion::V030, CniVersion::V031, CniVersion::V040] {
            let j = ours().render(v);
            assert_eq!(j["ips"][0]["version"], "4", "{v:?}");
            assert_eq!(j["cniVersion"], v.as_str());
        }
        for v in [CniVersion::V100, CniVersion::V110] {
            let j = ours().render(v);
            assert!(j["ips"][0].get("version").is_none(), "{v:?}");
            assert_eq!(j["interfaces"][1]["sandbox"], "/run/netns/c1");
            assert_eq!(j["ips"][0]["interface"], 1);
            assert_eq!(j["routes"][0]["dst"], "0.0.0.0/0");
            assert_eq!(j["dns"]["nameservers"][0], "127.0.0.11");
            assert!(j["interfaces"][0].get("sandbox").is_none());
        }
    }

    #[test]
    fn round_trips_through_any_version() {
        for v in [CniVersion::V030, CniVersion::V110] {
            let back = CniResult::from_value(&ours().render(v)).unwrap();
            assert_eq!(back, ours());
        }
    }

    #[test]
    fn appended_after_a_previous_plugin() {
        let prev = CniResult {
            interfaces: vec![Interface {
                name: "lo".into(),
                mac: String::new(),
                sandbox: "/run/netns/c1".into(),
            }],
            ips: vec![IpConfig {
                address: "127.0.0.1/8".into(),
                gateway: None,
                interface: Some(0),
            }],
            routes: vec![],
            dns: Dns::default(),
        };
        let all = ours().appended_to(Some(prev));
        assert_eq!(all.interfaces.len(), 3);
        assert_eq!(all.ips[1].interface, Some(2));
        assert_eq!(all.dns.nameservers, vec!["127.0.0.11".to_string()]);
        assert_eq!(all.first_sandbox().unwrap().1.name, "lo");
        assert_eq!(all.addresses_of(2), vec!["10.32.0.5/12"]);
    }

    #[test]
    fn a_bad_interface_index_is_refused() {
        let v = json!({"ips":[{"address":"10.0.0.1/8","interface":3}]});
        assert!(CniResult::from_value(&v).unwrap_err().contains("interface"));
    }
}
