//! What a service is: its specification as `weft service create` gives it, and the
//! definition the mesh agrees on (the specification, who created it and when).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use weft_types::port::Proto;

use crate::error::ServiceError;
use crate::limits::{
    MAX_INTERVAL_MS, MAX_NAME_LEN, MAX_PATH_LEN, MAX_PORTS, MAX_PUBLISHED, MIN_INTERVAL_MS,
};

/// A port of the service: VIP:port balances to task:port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortSpec {
    /// Transport protocol.
    pub proto: Proto,
    /// The port, the same on the VIP and on the tasks.
    pub port: u16,
}

/// A published port: host_port on every host balances to task:port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Publish {
    /// Transport protocol.
    pub proto: Proto,
    /// The port on every host.
    pub host_port: u16,
    /// The port on the tasks.
    pub port: u16,
}

/// How clients reach the tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointMode {
    /// One virtual address balanced over the tasks.
    Vip,
    /// No VIP: the name answers with the task addresses.
    Dnsrr,
}

/// What a health check of a task does.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthKind {
    /// A TCP connect to the task's first port.
    Tcp,
    /// An HTTP GET of `path` expecting a 2xx or 3xx status.
    Http {
        /// Absolute path, e.g. `/healthz`.
        path: String,
    },
}

/// How the tasks of a service are health-checked (by the router of each task's host).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HealthCheck {
    /// What a check does.
    pub kind: HealthKind,
    /// Milliseconds between checks.
    pub interval_ms: u64,
}

/// What `weft service create` asks for, already parsed into types.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// Service name (a DNS label).
    pub name: String,
    /// How clients reach the tasks.
    pub mode: EndpointMode,
    /// The subnet the tasks (and the VIP) are in.
    pub subnet: Ipv4Net,
    /// The virtual address (mode vip), allocated by the creating router.
    pub vip: Option<Ipv4Addr>,
    /// Ports balanced from the VIP.
    pub ports: Vec<PortSpec>,
    /// Ports published on every host.
    pub published: Vec<Publish>,
    /// Health check of the tasks, if any.
    pub health: Option<HealthCheck>,
}

/// A service as the mesh knows it: one per name once gossip has settled.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Definition {
    /// The specification.
    pub spec: ServiceSpec,
    /// The peer that created it.
    pub origin: String,
    /// Lamport time of its creation: of two concurrent creates of one name, the lower
    /// `(version, origin)` wins.
    pub version: u64,
}

impl ServiceSpec {
    /// The specification checked and in its one canonical form (what definitions hold
    /// and the wire carries): subnet truncated, ports sorted without repeats, every
    /// published target port also a port of the VIP.
    pub fn normalized(&self) -> Result<ServiceSpec, ServiceError> {
        self.normal_form(false)
    }

    /// [`ServiceSpec::normalized`], with `vip_pending`: mode vip without a VIP passes
    /// (checked before the VIP is allocated).
    pub(crate) fn normal_form(&self, vip_pending: bool) -> Result<ServiceSpec, ServiceError> {
        check_name(&self.name)?;
        let bad = |why: String| ServiceError::Invalid {
            name: self.name.clone(),
            why,
        };
        let subnet = self.subnet.trunc();
        match (self.mode, self.vip) {
            (EndpointMode::Vip, None) if vip_pending => {}
            (EndpointMode::Vip, None) => {
                return Err(bad(
                    "endpoint mode vip needs a VIP (allocate one in the subnet)".into(),
                ))
            }
            (EndpointMode::Dnsrr, Some(vip)) => {
                return Err(bad(format!(
                    "endpoint mode dnsrr has no VIP, {vip} was given"
                )))
            }
            (EndpointMode::Vip, Some(vip)) => {
                let edge = subnet.prefix_len() < 31
                    && (vip == subnet.network() || vip == subnet.broadcast());
                if !subnet.contains(&vip) || edge {
                    return Err(bad(format!(
                        "VIP {vip} is not a host address of subnet {subnet}"
                    )));
                }
            }
            (EndpointMode::Dnsrr, None) => {}
        }
        let zero = self.ports.iter().any(|p| p.port == 0)
            || self
                .published
                .iter()
                .any(|p| p.port == 0 || p.host_port == 0);
        if zero {
            return Err(bad(
                "port 0 is not a port: give ports from 1 to 65535".into()
            ));
        }
        let mut published = self.published.clone();
        published.sort();
        published.dedup();
        if let Some(w) = published
            .windows(2)
            .find(|w| (w[0].proto, w[0].host_port) == (w[1].proto, w[1].host_port))
        {
            return Err(bad(format!(
                "host port {}/{} is published twice (to {} and {})",
                w[0].proto.name(),
                w[0].host_port,
                w[0].port,
                w[1].port
            )));
        }
        let mut ports = self.ports.clone();
        ports.extend(published.iter().map(|p| PortSpec {
            proto: p.proto,
            port: p.port,
        }));
        ports.sort();
        ports.dedup();
        if ports.len() > MAX_PORTS {
            return Err(too_many("ports of one service", MAX_PORTS));
        }
        if published.len() > MAX_PUBLISHED {
            return Err(too_many("published ports of one service", MAX_PUBLISHED));
        }
        if let Some(h) = &self.health {
            if !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&h.interval_ms) {
                return Err(bad(format!(
                    "health check interval {} ms is outside {MIN_INTERVAL_MS} ms to {MAX_INTERVAL_MS} ms",
                    h.interval_ms
                )));
            }
            if ports.is_empty() {
                return Err(bad(
                    "a health check needs a port to check: give --port".into()
                ));
            }
            if let HealthKind::Http { path } = &h.kind {
                let printable = path.bytes().all(|b| (0x21..=0x7e).contains(&b));
                if !path.starts_with('/') || !printable || path.len() > MAX_PATH_LEN {
                    return Err(bad(format!(
                        "health check path {path:?} must start with / and be at most \
                         {MAX_PATH_LEN} printable characters without spaces"
                    )));
                }
            }
        }
        Ok(ServiceSpec {
            name: self.name.clone(),
            mode: self.mode,
            subnet,
            vip: self.vip,
            ports,
            published,
            health: self.health.clone(),
        })
    }
}

/// Checks that `name` is a service name: a lowercase DNS label, and not `tasks` (which
/// names the task list of a service in DNS).
pub fn check_name(name: &str) -> Result<(), ServiceError> {
    let why = if name.is_empty() || name.len() > MAX_NAME_LEN {
        Some(format!("it must be 1 to {MAX_NAME_LEN} characters long"))
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Some("use lowercase letters, digits and '-' only".to_string())
    } else if name.starts_with('-') || name.ends_with('-') {
        Some("it may not start or end with '-'".to_string())
    } else if name == "tasks" {
        Some("'tasks' is reserved (DNS tasks.NAME lists a service's tasks)".to_string())
    } else {
        None
    };
    match why {
        Some(why) => Err(ServiceError::InvalidName {
            name: name.chars().take(MAX_NAME_LEN + 1).collect(),
            why,
        }),
        None => Ok(()),
    }
}

fn too_many(what: &str, limit: usize) -> ServiceError {
    ServiceError::TooMany {
        what: what.to_string(),
        limit,
    }
}

/// The services of the tests: `name`, VIP `10.32.0.vip` in 10.32.0.0/24, tcp/80, nothing
/// published, no health check.
#[cfg(test)]
pub(crate) fn sample(name: &str, vip: u8) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        mode: EndpointMode::Vip,
        subnet: "10.32.0.0/24".parse().unwrap(),
        vip: Some(Ipv4Addr::new(10, 32, 0, vip)),
        ports: vec![PortSpec {
            proto: Proto::Tcp,
            port: 80,
        }],
        published: vec![],
        health: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn web() -> ServiceSpec {
        sample("web", 200)
    }

    #[test]
    fn normal_form_adds_published_targets_and_sorts() {
        let mut s = web();
        s.subnet = "10.32.0.9/24".parse().unwrap();
        s.ports.insert(
            0,
            PortSpec {
                proto: Proto::Udp,
                port: 53,
            },
        );
        s.published = vec![Publish {
            proto: Proto::Tcp,
            host_port: 8000,
            port: 8080,
        }];
        let n = s.normalized().unwrap();
        assert_eq!(n.subnet.to_string(), "10.32.0.0/24");
        let ports: Vec<(Proto, u16)> = n.ports.iter().map(|p| (p.proto, p.port)).collect();
        assert_eq!(
            ports,
            [(Proto::Tcp, 80), (Proto::Tcp, 8080), (Proto::Udp, 53)]
        );
        assert_eq!(
            n.normalized().unwrap(),
            n,
            "the normal form is a fixed point"
        );
    }

    #[test]
    fn bad_specs_are_refused_with_the_reason() {
        type Case = (fn(&mut ServiceSpec), &'static str);
        let cases: Vec<Case> = vec![
            (|s| s.name = "Web".into(), "lowercase"),
            (|s| s.name = "-web".into(), "start or end"),
            (|s| s.name = "x".repeat(64), "1 to 63"),
            (|s| s.name = "tasks".into(), "reserved"),
            (|s| s.vip = None, "needs a VIP"),
            (
                |s| s.vip = Some(Ipv4Addr::new(10, 33, 0, 1)),
                "not a host address",
            ),
            (
                |s| s.vip = Some(Ipv4Addr::new(10, 32, 0, 255)),
                "not a host address",
            ),
            (|s| s.mode = EndpointMode::Dnsrr, "has no VIP"),
            (|s| s.ports[0].port = 0, "port 0"),
            (
                |s| {
                    s.published = vec![
                        Publish {
                            proto: Proto::Tcp,
                            host_port: 80,
                            port: 1,
                        },
                        Publish {
                            proto: Proto::Tcp,
                            host_port: 80,
                            port: 2,
                        },
                    ]
                },
                "published twice",
            ),
            (
                |s| {
                    s.ports = (1..=65)
                        .map(|port| PortSpec {
                            proto: Proto::Tcp,
                            port,
                        })
                        .collect()
                },
                "too many ports",
            ),
            (
                |s| {
                    s.health = Some(HealthCheck {
                        kind: HealthKind::Tcp,
                        interval_ms: 5,
                    })
                },
                "interval",
            ),
            (
                |s| {
                    s.health = Some(HealthCheck {
                        kind: HealthKind::Http {
                            path: "no slash".into(),
                        },
                        interval_ms: 1000,
                    })
                },
                "must start with /",
            ),
            (
                |s| {
                    s.ports.clear();
                    s.health = Some(HealthCheck {
                        kind: HealthKind::Tcp,
                        interval_ms: 1000,
                    })
                },
                "needs a port",
            ),
        ];
        for (change, want) in cases {
            let mut s = web();
            change(&mut s);
            let err = s.normalized().unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} lacks {want:?}");
        }
    }
}
