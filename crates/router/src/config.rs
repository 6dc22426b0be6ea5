//! The router's configuration, checked before anything starts.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use weft_api::Paths;

/// Default control/sleeve port.
pub const DEFAULT_PORT: u16 = 6783;

/// Everything the router needs to start; built by `weft launch` from its flags.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where state and sockets live.
    pub paths: Paths,
    /// Unique peer name, if forced with `--name`.
    pub name: Option<String>,
    /// Nickname (default: hostname).
    pub nickname: String,
    /// Mesh password.
    pub password: Option<String>,
    /// Subnets trusted with unencrypted data.
    pub trusted_subnets: Vec<String>,
    /// Control/sleeve port.
    pub port: u16,
    /// Fixed overlay MTU.
    pub mtu: Option<u32>,
    /// Never use fastdp.
    pub no_fastdp: bool,
    /// IPAM range.
    pub ipalloc_range: Option<String>,
    /// IPAM default subnet.
    pub ipalloc_default_subnet: Option<String>,
    /// IPAM initialisation mode.
    pub ipalloc_init: Option<String>,
    /// DNS disabled.
    pub no_dns: bool,
    /// DNS domain, with trailing dot.
    pub dns_domain: String,
    /// Do not dial gossiped addresses.
    pub no_discovery: bool,
    /// Connection limit.
    pub conn_limit: u32,
    /// Initial peers, `HOST[:PORT]`.
    pub peers: Vec<String>,
    /// Also log to stderr (foreground).
    pub log_to_stderr: bool,
}

impl Config {
    /// A configuration with the defaults of `weft launch`.
    pub fn new(paths: Paths) -> Self {
        Config {
            paths,
            name: None,
            nickname: default_nickname(),
            password: None,
            trusted_subnets: Vec::new(),
            port: DEFAULT_PORT,
            mtu: None,
            no_fastdp: false,
            ipalloc_range: None,
            ipalloc_default_subnet: None,
            ipalloc_init: None,
            no_dns: false,
            dns_domain: "weft.local.".to_string(),
            no_discovery: false,
            conn_limit: 200,
            peers: Vec::new(),
            log_to_stderr: false,
        }
    }

    /// Checks every value; the error says which flag is wrong and why.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(name) = &self.name {
            crate::identity::validate_name(name)
                .map_err(|why| ConfigError::new("--name", name, &why))?;
        }
        if self.nickname.is_empty() || self.nickname.len() > 64 {
            return Err(ConfigError::new(
                "--nickname",
                &self.nickname,
                "must be 1 to 64 characters",
            ));
        }
        if matches!(&self.password, Some(p) if p.is_empty()) {
            return Err(ConfigError::new(
                "--password",
                "",
                "is empty; give a password or leave the flag out",
            ));
        }
        for s in &self.trusted_subnets {
            parse_cidr(s).map_err(|why| ConfigError::new("--trusted-subnets", s, &why))?;
        }
        if self.port == 0 {
            return Err(ConfigError::new("--port", "0", "must be 1 to 65535"));
        }
        if let Some(mtu) = self.mtu {
            if !(576..=65_000).contains(&mtu) {
                return Err(ConfigError::new(
                    "--mtu",
                    &mtu.to_string(),
                    "must be between 576 and 65000",
                ));
            }
        }
        for (flag, value) in [
            ("--ipalloc-range", &self.ipalloc_range),
            ("--ipalloc-default-subnet", &self.ipalloc_default_subnet),
        ] {
            if let Some(v) = value {
                parse_cidr(v).map_err(|why| ConfigError::new(flag, v, &why))?;
            }
        }
        if let Some(init) = &self.ipalloc_init {
            validate_ipalloc_init(init)
                .map_err(|why| ConfigError::new("--ipalloc-init", init, &why))?;
        }
        if !self.dns_domain.ends_with('.') || self.dns_domain.len() < 2 {
            return Err(ConfigError::new(
                "--dns-domain",
                &self.dns_domain,
                "must be a domain ending in a dot, like weft.local.",
            ));
        }
        if self.conn_limit == 0 {
            return Err(ConfigError::new("--conn-limit", "0", "must be at least 1"));
        }
        for p in &self.peers {
            parse_peer(p, self.port).map_err(|why| ConfigError::new("peer", p, &why))?;
        }
        Ok(())
    }
}

/// A flag with a bad value.
#[derive(Debug, thiserror::Error)]
#[error("invalid {flag} {value:?}: {why}")]
pub struct ConfigError {
    /// The flag.
    pub flag: String,
    /// Its value.
    pub value: String,
    /// What is wrong and what to do.
    pub why: String,
}

impl ConfigError {
    fn new(flag: &str, value: &str, why: &str) -> Self {
        ConfigError {
            flag: flag.to_string(),
            value: value.to_string(),
            why: why.to_string(),
        }
    }
}

/// The machine's hostname, or "weft" when it has none.
pub fn default_nickname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "weft".to_string())
}

/// Parses `ADDR/LEN` (IPv4 or IPv6), checking the prefix length.
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (addr, len) = s
        .split_once('/')
        .ok_or_else(|| "expected ADDRESS/PREFIX, like 10.32.0.0/12".to_string())?;
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len: u8 = len
        .parse()
        .ok()
        .filter(|l| *l <= max)
        .ok_or_else(|| format!("prefix length must be 0 to {max}"))?;
    Ok((addr, len))
}

/// Splits `HOST[:PORT]` into host and port (default `default_port`). IPv6 as `[ADDR]:PORT`.
pub fn parse_peer(s: &str, default_port: u16) -> Result<(String, u16), String> {
    if s.is_empty() {
        return Err("empty peer; give HOST or HOST:PORT".to_string());
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| "missing ] in IPv6 address".to_string())?;
        match after.strip_prefix(':') {
            Some(p) => (host.to_string(), Some(p)),
            None if after.is_empty() => (host.to_string(), None),
            None => return Err("expected [IPv6]:PORT".to_string()),
        }
    } else if s.matches(':').count() > 1 {
        (s.to_string(), None)
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (s.to_string(), None),
        }
    };
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c))
    {
        return Err("host must be a hostname or an IP address".to_string());
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("port {p:?} must be 1 to 65535"))?,
        None => default_port,
    };
    Ok((host, port))
}

/// Resolves a peer `HOST[:PORT]` to socket addresses (through /etc/hosts and DNS).
pub fn resolve_peer(s: &str, default_port: u16) -> Result<Vec<SocketAddr>, String> {
    let (host, port) = parse_peer(s, default_port)?;
    (host.as_str(), port)
        .to_socket_addrs()
        .map(|a| a.collect())
        .map_err(|e| format!("cannot resolve {host}: {e}"))
}

fn validate_ipalloc_init(s: &str) -> Result<(), String> {
    match s.split_once('=') {
        None if s == "consensus" || s == "observer" => Ok(()),
        Some(("consensus", n)) => n
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0)
            .map(|_| ())
            .ok_or_else(|| "consensus=N needs a positive number of peers".to_string()),
        Some(("seed", names)) if !names.is_empty() => {
            for n in names.split(',') {
                crate::identity::validate_name(n)?;
            }
            Ok(())
        }
        _ => Err("expected consensus, consensus=N, seed=NAME,.. or observer".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config::new(Paths::from_env())
    }

    #[test]
    fn defaults_are_valid() {
        cfg().validate().unwrap();
    }

    #[test]
    fn peers_parse() {
        assert_eq!(parse_peer("h2", 6783).unwrap(), ("h2".into(), 6783));
        assert_eq!(parse_peer("h2:7000", 6783).unwrap(), ("h2".into(), 7000));
        assert_eq!(
            parse_peer("[fe80::1]:7000", 6783).unwrap(),
            ("fe80::1".into(), 7000)
        );
        assert_eq!(
            parse_peer("fe80::1", 6783).unwrap(),
            ("fe80::1".into(), 6783)
        );
        assert!(parse_peer("h2:0", 6783).is_err());
        assert!(parse_peer("h2:x", 6783).is_err());
        assert!(parse_peer("", 6783).is_err());
        assert!(parse_peer("a b", 6783).is_err());
    }

    #[test]
    fn bad_values_name_their_flag() {
        let mut c = cfg();
        c.ipalloc_range = Some("10.32.0.0/33".into());
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("--ipalloc-range"), "{e}");
        let mut c = cfg();
        c.ipalloc_init = Some("seed=".into());
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.ipalloc_init = Some("consensus=3".into());
        c.validate().unwrap();
        let mut c = cfg();
        c.mtu = Some(10);
        assert!(c.validate().unwrap_err().to_string().contains("--mtu"));
        let mut c = cfg();
        c.dns_domain = "weft.local".into();
        assert!(c.validate().is_err());
    }
}
