//! Services (`weft service ...`): the API's request and answer types, and the parsers of
//! the string forms a user types (`80/tcp`, `8000:80`, `http:/health`, `5s`). The CLI
//! parses with them to fail early with one line; the router parses the same strings again
//! (any API client may send them) into the services core's types.

use serde::{Deserialize, Serialize};
pub use weft_types::Proto;

/// Ports weft itself uses on every host (control and sleeve 6783, VXLAN and the status API
/// 6784): a service can publish neither.
pub const WEFT_PORTS: [u16; 2] = [6783, 6784];

/// Body of `POST /services`: `weft service create`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceCreateRequest {
    /// The service's name (a DNS label).
    pub name: String,
    /// `PORT[/tcp|/udp]`: VIP:PORT goes to a task's PORT.
    #[serde(default)]
    pub ports: Vec<String>,
    /// `HOSTPORT:PORT[/tcp|/udp]`: HOSTPORT on every host goes to a task's PORT.
    #[serde(default)]
    pub publish: Vec<String>,
    /// `vip` (default) or `dnsrr`.
    #[serde(default)]
    pub endpoint_mode: Option<String>,
    /// The subnet the VIP comes from (default: the router's default subnet).
    #[serde(default)]
    pub subnet: Option<String>,
    /// `tcp` or `http:PATH`; none: no health check.
    #[serde(default)]
    pub health: Option<String>,
    /// How often the health check runs (`5s`, `500ms`, `1m`); default 5s.
    #[serde(default)]
    pub health_interval: Option<String>,
}

/// One service, as `weft service inspect` prints it (and `weft report` lists them).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceInfo {
    /// The name.
    pub name: String,
    /// `vip` or `dnsrr`.
    pub mode: String,
    /// The virtual IP (none in `dnsrr` mode).
    #[serde(default)]
    pub vip: Option<String>,
    /// The subnet of the VIP and the tasks, as a CIDR.
    pub subnet: String,
    /// Ports as `PORT/PROTO`.
    pub ports: Vec<String>,
    /// Published ports as `HOSTPORT:PORT/PROTO`.
    pub published: Vec<String>,
    /// The health check (`tcp every 5s`, `http:/health every 5s`), if any.
    #[serde(default)]
    pub health: Option<String>,
    /// The peer that created it.
    pub origin: String,
    /// Set on a host whose own create of this name lost to `origin`'s, made at the same
    /// time elsewhere: what that host's user is told (the definition shown is the winner's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_race: Option<String>,
    /// Every task on every host.
    pub tasks: Vec<ServiceTask>,
}

impl ServiceInfo {
    /// `healthy/total` as `weft service ls` shows it.
    pub fn tasks_column(&self) -> String {
        let healthy = self.tasks.iter().filter(|t| t.healthy).count();
        format!("{healthy}/{}", self.tasks.len())
    }
}

/// One task of a service.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceTask {
    /// The task's address.
    pub addr: String,
    /// The peer whose container it is.
    pub host: String,
    /// The container's id on that host.
    pub container: String,
    /// Whether it is in rotation (healthy and its host reachable).
    pub healthy: bool,
}

/// A port form that is not valid; the text says what, why and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FormError(pub String);

fn bad(msg: String) -> FormError {
    FormError(msg)
}

/// `PORT[/tcp|/udp]`, for the named flag (in errors).
fn port_and_proto(text: &str, flag: &str) -> Result<(u16, Proto), FormError> {
    let (num, proto) = match text.split_once('/') {
        Some((n, p)) => (n, p),
        None => (text, "tcp"),
    };
    let proto = match proto {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        other => {
            return Err(bad(format!(
                "{flag} {text:?}: protocol {other:?} is not supported; use tcp or udp"
            )))
        }
    };
    Ok((port_number(num, text, flag)?, proto))
}

/// A port number 1..=65535.
fn port_number(num: &str, whole: &str, flag: &str) -> Result<u16, FormError> {
    if num.is_empty() || num.len() > 5 || !num.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(format!(
            "{flag} {whole:?}: {num:?} is not a port number; give one from 1 to 65535"
        )));
    }
    match num.parse::<u32>() {
        Ok(p @ 1..=65535) => Ok(p as u16),
        _ => Err(bad(format!(
            "{flag} {whole:?}: port {num} is out of range; give one from 1 to 65535"
        ))),
    }
}

/// `--port PORT[/tcp|/udp]` → (proto, port).
pub fn parse_port(text: &str) -> Result<(Proto, u16), FormError> {
    let (port, proto) = port_and_proto(text.trim(), "--port")?;
    Ok((proto, port))
}

/// `--publish HOSTPORT:PORT[/tcp|/udp]` → (proto, host port, target port). A port weft
/// itself uses ([`WEFT_PORTS`]) is refused.
pub fn parse_publish(text: &str) -> Result<(Proto, u16, u16), FormError> {
    let text = text.trim();
    let Some((host, rest)) = text.split_once(':') else {
        return Err(bad(format!(
            "--publish {text:?}: give HOSTPORT:PORT[/tcp|/udp], e.g. 8000:80"
        )));
    };
    let host = port_number(host, text, "--publish")?;
    let (port, proto) = port_and_proto(rest, "--publish")?;
    if WEFT_PORTS.contains(&host) {
        return Err(bad(format!(
            "--publish {text:?}: host port {host} is weft's own (6783 control and sleeve, \
             6784 VXLAN and the status API); publish on another port"
        )));
    }
    Ok((proto, host, port))
}

/// A health check as given: `tcp` or `http:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthForm {
    /// A TCP connect to each of the service's ports.
    Tcp,
    /// An HTTP GET of the path, expecting 2xx or 3xx.
    Http(String),
}

/// Longest HTTP health path accepted.
pub const MAX_HEALTH_PATH: usize = 256;

/// `--health tcp | http:PATH`.
pub fn parse_health(text: &str) -> Result<HealthForm, FormError> {
    let text = text.trim();
    if text == "tcp" {
        return Ok(HealthForm::Tcp);
    }
    let Some(path) = text.strip_prefix("http:") else {
        return Err(bad(format!(
            "--health {text:?}: give tcp or http:PATH (e.g. http:/health)"
        )));
    };
    if !path.starts_with('/')
        || path.len() > MAX_HEALTH_PATH
        || !path.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(bad(format!(
            "--health {text:?}: the path must start with / and hold at most \
             {MAX_HEALTH_PATH} printable characters without spaces"
        )));
    }
    Ok(HealthForm::Http(path.to_string()))
}

/// Shortest and longest health-check interval, in milliseconds.
pub const HEALTH_INTERVAL_MS: (u64, u64) = (100, 3_600_000);
/// The health-check interval when none is given.
pub const DEFAULT_HEALTH_INTERVAL_MS: u64 = 5_000;

/// `--health-interval DUR`: `500ms`, `5s`, `1m` (a bare number is seconds) → milliseconds,
/// from 100ms to 1h.
pub fn parse_duration(text: &str) -> Result<u64, FormError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let scale = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => 0,
    };
    let value = if num.is_empty() || num.len() > 9 || scale == 0 {
        None
    } else {
        num.parse::<u64>().ok().map(|n| n * scale)
    };
    match value {
        Some(ms) if (HEALTH_INTERVAL_MS.0..=HEALTH_INTERVAL_MS.1).contains(&ms) => Ok(ms),
        Some(_) => Err(bad(format!(
            "--health-interval {text:?} is out of range; give one from 100ms to 1h"
        ))),
        None => Err(bad(format!(
            "--health-interval {text:?}: give a duration such as 500ms, 5s or 1m"
        ))),
    }
}

/// `--endpoint-mode vip|dnsrr` → whether it is `dnsrr`.
pub fn parse_dnsrr(text: &str) -> Result<bool, FormError> {
    match text.trim() {
        "vip" => Ok(false),
        "dnsrr" => Ok(true),
        other => Err(bad(format!(
            "--endpoint-mode {other:?}: give vip (one virtual IP, balanced) or dnsrr \
             (names answer with the tasks' addresses)"
        ))),
    }
}

/// Writes a duration in milliseconds the way [`parse_duration`] reads it.
pub fn format_duration(ms: u64) -> String {
    match ms {
        m if m % 3_600_000 == 0 => format!("{}h", m / 3_600_000),
        m if m % 60_000 == 0 => format!("{}m", m / 60_000),
        m if m % 1_000 == 0 => format!("{}s", m / 1_000),
        m => format!("{m}ms"),
    }
}

impl ServiceCreateRequest {
    /// Checks every form of the request (not the name, nor what only the router knows:
    /// names and ports in use, the range), so the CLI fails before it asks; a published
    /// host port given twice is refused too.
    pub fn check_forms(&self) -> Result<(), FormError> {
        for p in &self.ports {
            parse_port(p)?;
        }
        let mut hosts = Vec::new();
        for p in &self.publish {
            let (proto, host, _) = parse_publish(p)?;
            if hosts.contains(&(proto, host)) {
                return Err(bad(format!(
                    "--publish {p:?}: host port {host}/{proto} is given twice; publish it once"
                )));
            }
            hosts.push((proto, host));
        }
        if let Some(m) = &self.endpoint_mode {
            parse_dnsrr(m)?;
        }
        if let Some(h) = &self.health {
            parse_health(h)?;
        }
        if let Some(i) = &self.health_interval {
            if self.health.is_none() {
                return Err(bad(
                    "--health-interval without --health: give --health tcp or --health http:PATH too"
                        .to_string(),
                ));
            }
            parse_duration(i)?;
        }
        if let Some(s) = &self.subnet {
            if s.trim().parse::<std::net::Ipv4Addr>().is_ok() || !s.contains('/') {
                return Err(bad(format!(
                    "--subnet {s:?}: give a CIDR such as 10.32.5.0/24"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse_with_tcp_by_default() {
        assert_eq!(parse_port("80"), Ok((Proto::Tcp, 80)));
        assert_eq!(parse_port("53/udp"), Ok((Proto::Udp, 53)));
        assert_eq!(parse_port("65535/tcp"), Ok((Proto::Tcp, 65535)));
        for bad in [
            "0", "65536", "99999999", "-1", "", "80/sctp", "80/", "x", "8 0",
        ] {
            let e = parse_port(bad).unwrap_err().0;
            assert!(e.starts_with("--port"), "{bad}: {e}");
        }
        assert!(parse_port("0").unwrap_err().0.contains("out of range"));
        assert!(parse_port("65536").unwrap_err().0.contains("out of range"));
    }

    #[test]
    fn published_ports_parse_and_weft_ports_are_refused() {
        assert_eq!(parse_publish("8000:80"), Ok((Proto::Tcp, 8000, 80)));
        assert_eq!(parse_publish("5353:53/udp"), Ok((Proto::Udp, 5353, 53)));
        for bad in ["8000", ":80", "8000:", "0:80", "8000:0", "70000:80", "a:b"] {
            assert!(parse_publish(bad).is_err(), "{bad}");
        }
        for ours in ["6783:80", "6784:80/udp"] {
            let e = parse_publish(ours).unwrap_err().0;
            assert!(e.contains("weft's own"), "{e}");
        }
    }

    #[test]
    fn durations_and_health_checks_parse() {
        assert_eq!(parse_duration("500ms"), Ok(500));
        assert_eq!(parse_duration("5s"), Ok(5_000));
        assert_eq!(parse_duration("2"), Ok(2_000));
        assert_eq!(parse_duration("1m"), Ok(60_000));
        assert_eq!(parse_duration("1h"), Ok(3_600_000));
        for bad in ["", "s", "5x", "10ms", "2h", "1.5s", "99999999999s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        for ms in [500, 5_000, 60_000, 3_600_000, 1_500] {
            assert_eq!(parse_duration(&format_duration(ms)), Ok(ms));
        }
        assert_eq!(parse_health("tcp"), Ok(HealthForm::Tcp));
        assert_eq!(
            parse_health("http:/health"),
            Ok(HealthForm::Http("/health".into()))
        );
        for bad in ["udp", "http:", "http:health", "http:/a b", "http"] {
            assert!(parse_health(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_dnsrr("dnsrr"), Ok(true));
        assert!(parse_dnsrr("ipvs").is_err());
    }

    #[test]
    fn a_request_is_checked_whole() {
        let ok = ServiceCreateRequest {
            name: "whoami".into(),
            ports: vec!["80".into()],
            publish: vec!["8000:80".into()],
            health: Some("http:/".into()),
            health_interval: Some("1s".into()),
            ..Default::default()
        };
        assert_eq!(ok.check_forms(), Ok(()));
        let twice = ServiceCreateRequest {
            publish: vec!["8000:80".into(), "8000:81".into()],
            ..ok.clone()
        };
        assert!(twice.check_forms().unwrap_err().0.contains("twice"));
        let interval_alone = ServiceCreateRequest {
            health: None,
            ..ok.clone()
        };
        assert!(interval_alone.check_forms().is_err());
        let subnet = ServiceCreateRequest {
            subnet: Some("10.32.0.1".into()),
            ..ok
        };
        assert!(subnet.check_forms().is_err());
    }
}
