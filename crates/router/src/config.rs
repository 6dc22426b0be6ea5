//! The router's configuration: the flags of `weft launch` as given ([`LaunchFlags`]),
//! parsed once into typed values ([`Config`]). A bad value stops the launch with one line
//! that names the flag, says why and what to do; nothing later parses these strings again.

use std::fmt;
use std::net::IpAddr;

use ipnet::Ipv4Net;
use weft_api::Paths;
use weft_ipam::InitMode;

/// Default control/sleeve port.
pub const DEFAULT_PORT: u16 = 6783;
/// The default allocation range (`--ipalloc-range`).
pub const DEFAULT_RANGE: Ipv4Net = Ipv4Net::new_assert(std::net::Ipv4Addr::new(10, 32, 0, 0), 12);
/// Default DNS domain.
pub const DEFAULT_DNS_DOMAIN: &str = "weft.local.";
/// Default connection limit.
pub const DEFAULT_CONN_LIMIT: u32 = 200;
/// Default seconds between two reads of the Kubernetes node list (`--kube-poll`).
pub const DEFAULT_KUBE_POLL: u64 = 10;
/// Default seconds a deleted node's peer must stay gone before its space is reclaimed
/// (`--kube-reclaim-after`).
pub const DEFAULT_KUBE_RECLAIM_AFTER: u64 = 60;

/// The flags of `weft launch` as the user typed them (defaults filled in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchFlags {
    /// `--name`.
    pub name: Option<String>,
    /// `--nickname` (default: the hostname).
    pub nickname: Option<String>,
    /// `--password` or `WEFT_PASSWORD`.
    pub password: Option<String>,
    /// `--trusted-subnets`, one entry per CIDR.
    pub trusted_subnets: Vec<String>,
    /// `--port`.
    pub port: u16,
    /// `--mtu`.
    pub mtu: Option<u32>,
    /// `--no-fastdp`.
    pub no_fastdp: bool,
    /// `--ipalloc-range`.
    pub ipalloc_range: Option<String>,
    /// `--ipalloc-default-subnet`.
    pub ipalloc_default_subnet: Option<String>,
    /// `--ipalloc-init`.
    pub ipalloc_init: Option<String>,
    /// `--no-dns`.
    pub no_dns: bool,
    /// `--dns-domain`.
    pub dns_domain: String,
    /// `--no-discovery`.
    pub no_discovery: bool,
    /// `--conn-limit`.
    pub conn_limit: u32,
    /// `PEER[:PORT]...`.
    pub peers: Vec<String>,
    /// `--kube-peers` (or `WEFT_KUBE_PEERS`).
    pub kube_peers: bool,
    /// `--kube-api`.
    pub kube_api: Option<String>,
    /// `--kube-node`.
    pub kube_node: Option<String>,
    /// `--kube-poll`, seconds.
    pub kube_poll: u64,
    /// `--kube-reclaim-after`, seconds.
    pub kube_reclaim_after: u64,
}

impl Default for LaunchFlags {
    fn default() -> Self {
        LaunchFlags {
            name: None,
            nickname: None,
            password: None,
            trusted_subnets: Vec::new(),
            port: DEFAULT_PORT,
            mtu: None,
            no_fastdp: false,
            ipalloc_range: None,
            ipalloc_default_subnet: None,
            ipalloc_init: None,
            no_dns: false,
            dns_domain: DEFAULT_DNS_DOMAIN.to_string(),
            no_discovery: false,
            conn_limit: DEFAULT_CONN_LIMIT,
            peers: Vec::new(),
            kube_peers: false,
            kube_api: None,
            kube_node: None,
            kube_poll: DEFAULT_KUBE_POLL,
            kube_reclaim_after: DEFAULT_KUBE_RECLAIM_AFTER,
        }
    }
}

/// Peers from the Kubernetes API (`--kube-peers`), parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeConfig {
    /// Where the API is (in-cluster from `KUBERNETES_SERVICE_HOST`, or `--kube-api`).
    pub api: weft_kube::ApiEndpoint,
    /// The node this router runs on; the peer is named after it.
    pub node: String,
    /// Time between two reads of the node list.
    pub poll: std::time::Duration,
    /// How long a deleted node's peer must stay gone before its space is reclaimed.
    pub reclaim_after: std::time::Duration,
    /// `--ipalloc-init` was not given: consensus among the nodes listed at launch.
    pub init_from_nodes: bool,
}

/// A peer to dial, `HOST[:PORT]` parsed; shown as `host:port` (IPv6 as `[addr]:port`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerAddr {
    /// Hostname or IP address.
    pub host: String,
    /// Control port.
    pub port: u16,
}

impl PeerAddr {
    /// Parses `HOST[:PORT]` (IPv6 as `[ADDR]:PORT`); the port defaults to `default_port`.
    pub fn parse(s: &str, default_port: u16) -> Result<PeerAddr, String> {
        let (host, port) = parse_peer(s, default_port)?;
        Ok(PeerAddr { host, port })
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Everything the router needs to start, every value parsed and checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where state and sockets live.
    pub paths: Paths,
    /// Unique peer name, if forced with `--name` (a valid peer name).
    pub name: Option<String>,
    /// Nickname (default: hostname), 1 to 64 characters.
    pub nickname: String,
    /// Mesh password (never empty).
    pub password: Option<String>,
    /// Subnets trusted with unencrypted data.
    pub trusted_subnets: Vec<Ipv4Net>,
    /// Control/sleeve port (never 0).
    pub port: u16,
    /// Fixed overlay MTU (576 to 65000).
    pub mtu: Option<u32>,
    /// Never use fastdp.
    pub no_fastdp: bool,
    /// IPAM range as given with `--ipalloc-range` (see [`Config::range`]).
    pub ipalloc_range: Option<Ipv4Net>,
    /// IPAM default subnet.
    pub ipalloc_default_subnet: Option<Ipv4Net>,
    /// IPAM initialisation mode (plain consensus counts the peers named at launch).
    pub ipalloc_init: InitMode,
    /// DNS disabled.
    pub no_dns: bool,
    /// DNS domain, with trailing dot.
    pub dns_domain: String,
    /// Do not dial gossiped addresses.
    pub no_discovery: bool,
    /// Connection limit (at least 1).
    pub conn_limit: u32,
    /// Initial peers.
    pub peers: Vec<PeerAddr>,
    /// Peers from the Kubernetes API, when enabled.
    pub kube: Option<KubeConfig>,
    /// Also log to stderr (foreground).
    pub log_to_stderr: bool,
}

impl Config {
    /// Parses every flag; the first bad one is the error.
    pub fn parse(flags: &LaunchFlags, paths: Paths) -> Result<Config, ConfigError> {
        let f = flags;
        if let Some(name) = &f.name {
            crate::identity::validate_name(name)
                .map_err(|why| ConfigError::new("--name", name, &why))?;
        }
        let nickname = f.nickname.clone().unwrap_or_else(default_nickname);
        if nickname.is_empty() || nickname.len() > 64 {
            return Err(ConfigError::new(
                "--nickname",
                &nickname,
                "must be 1 to 64 characters",
            ));
        }
        if matches!(&f.password, Some(p) if p.is_empty()) {
            return Err(ConfigError::new(
                "--password",
                "",
                "is empty; give a password or leave the flag out",
            ));
        }
        let trusted_subnets = f
            .trusted_subnets
            .iter()
            .map(|s| {
                parse_ipv4_net(s).map_err(|why| ConfigError::new("--trusted-subnets", s, &why))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if f.port == 0 {
            return Err(ConfigError::new("--port", "0", "must be 1 to 65535"));
        }
        if let Some(mtu) = f.mtu {
            if !(576..=65_000).contains(&mtu) {
                return Err(ConfigError::new(
                    "--mtu",
                    &mtu.to_string(),
                    "must be between 576 and 65000",
                ));
            }
        }
        let net_flag = |flag: &str, v: &Option<String>| -> Result<Option<Ipv4Net>, ConfigError> {
            v.as_deref()
                .map(|s| parse_ipv4_net(s).map_err(|why| ConfigError::new(flag, s, &why)))
                .transpose()
        };
        let ipalloc_range = net_flag("--ipalloc-range", &f.ipalloc_range)?;
        let ipalloc_default_subnet =
            net_flag("--ipalloc-default-subnet", &f.ipalloc_default_subnet)?;
        let ipalloc_init = parse_init(f.ipalloc_init.as_deref(), f.peers.len()).map_err(|why| {
            ConfigError::new(
                "--ipalloc-init",
                f.ipalloc_init.as_deref().unwrap_or(""),
                &why,
            )
        })?;
        if !f.dns_domain.ends_with('.') || f.dns_domain.len() < 2 {
            return Err(ConfigError::new(
                "--dns-domain",
                &f.dns_domain,
                "must be a domain ending in a dot, like weft.local.",
            ));
        }
        weft_dns::records::normalize_name(&f.dns_domain)
            .map_err(|e| ConfigError::new("--dns-domain", &f.dns_domain, &e.to_string()))?;
        if f.conn_limit == 0 {
            return Err(ConfigError::new("--conn-limit", "0", "must be at least 1"));
        }
        let peers = f
            .peers
            .iter()
            .map(|p| PeerAddr::parse(p, f.port).map_err(|why| ConfigError::new("peer", p, &why)))
            .collect::<Result<Vec<_>, _>>()?;
        let kube = parse_kube(f)?;
        let name = match &kube {
            Some(k) => Some(weft_kube::peer_name_for_node(&k.node)),
            None => f.name.clone(),
        };
        Ok(Config {
            paths,
            name,
            nickname,
            password: f.password.clone(),
            trusted_subnets,
            port: f.port,
            mtu: f.mtu,
            no_fastdp: f.no_fastdp,
            ipalloc_range,
            ipalloc_default_subnet,
            ipalloc_init,
            no_dns: f.no_dns,
            dns_domain: f.dns_domain.clone(),
            no_discovery: f.no_discovery,
            conn_limit: f.conn_limit,
            peers,
            kube,
            log_to_stderr: false,
        })
    }

    /// The allocation range: `--ipalloc-range` (host bits cleared) or the default.
    pub fn range(&self) -> Ipv4Net {
        self.ipalloc_range.unwrap_or(DEFAULT_RANGE).trunc()
    }
}

/// `--kube-*`: the API's address (in a pod, from `KUBERNETES_SERVICE_HOST` and
/// `KUBERNETES_SERVICE_PORT`), this node's name (default: the hostname), the periods.
fn parse_kube(f: &LaunchFlags) -> Result<Option<KubeConfig>, ConfigError> {
    if !f.kube_peers {
        for (flag, given) in [
            ("--kube-api", f.kube_api.is_some()),
            ("--kube-node", f.kube_node.is_some()),
        ] {
            if given {
                return Err(ConfigError::new(
                    flag,
                    "",
                    "takes effect only with --kube-peers; add it",
                ));
            }
        }
        return Ok(None);
    }
    if let Some(name) = &f.name {
        return Err(ConfigError::new(
            "--name",
            name,
            "cannot be combined with --kube-peers: the peer is named after its node (--kube-node)",
        ));
    }
    let api = match &f.kube_api {
        Some(url) => weft_kube::ApiEndpoint::parse(url),
        None => weft_kube::ApiEndpoint::in_cluster(
            std::env::var("KUBERNETES_SERVICE_HOST").ok().as_deref(),
            std::env::var("KUBERNETES_SERVICE_PORT").ok().as_deref(),
        ),
    }
    .map_err(|e| {
        ConfigError::new(
            "--kube-api",
            f.kube_api.as_deref().unwrap_or(""),
            &e.to_string(),
        )
    })?;
    let node = f.kube_node.clone().unwrap_or_else(default_nickname);
    if node.is_empty() || node.len() > 253 || !node.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ConfigError::new(
            "--kube-node",
            &node,
            "must be the node's name as the API lists it (1 to 253 characters); pass spec.nodeName",
        ));
    }
    for (flag, v) in [
        ("--kube-poll", f.kube_poll),
        ("--kube-reclaim-after", f.kube_reclaim_after),
    ] {
        if !(1..=86_400).contains(&v) {
            return Err(ConfigError::new(
                flag,
                &v.to_string(),
                "must be 1 to 86400 seconds",
            ));
        }
    }
    Ok(Some(KubeConfig {
        api,
        node,
        poll: std::time::Duration::from_secs(f.kube_poll),
        reclaim_after: std::time::Duration::from_secs(f.kube_reclaim_after),
        init_from_nodes: f.ipalloc_init.is_none(),
    }))
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
    let addr: IpAddr = addr.parse().map_err(|_| {
        format!("{addr:?} is not an IP address; give ADDRESS/PREFIX, like 10.32.0.0/12")
    })?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len: u8 = len
        .parse()
        .ok()
        .filter(|l| *l <= max)
        .ok_or_else(|| format!("prefix length must be 0 to {max}"))?;
    Ok((addr, len))
}

/// Parses an IPv4 `ADDR/LEN` (weft's overlay and underlay trust are IPv4 only).
pub fn parse_ipv4_net(s: &str) -> Result<Ipv4Net, String> {
    match parse_cidr(s)? {
        (IpAddr::V4(a), len) => Ipv4Net::new(a, len).map_err(|e| e.to_string()),
        (IpAddr::V6(_), _) => {
            Err("is IPv6; weft takes IPv4 subnets here, like 10.32.0.0/12".to_string())
        }
    }
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

/// `--ipalloc-init` as the IPAM core takes it; plain `consensus` (the default) is among
/// this peer and the `launch_peers` named at launch.
pub fn parse_init(init: Option<&str>, launch_peers: usize) -> Result<InitMode, String> {
    let default_n = u32::try_from(launch_peers + 1).unwrap_or(u32::MAX);
    let s = match init.map(str::trim) {
        None | Some("consensus") => return Ok(InitMode::Consensus(default_n)),
        Some("observer") => return Ok(InitMode::Observer),
        Some(s) => s,
    };
    match s.split_once('=') {
        Some(("consensus", n)) => n
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0)
            .map(InitMode::Consensus)
            .ok_or_else(|| "consensus=N needs a positive number of peers".to_string()),
        Some(("seed", names)) => {
            let names: Vec<String> = names.split(',').map(|n| n.trim().to_string()).collect();
            if names.iter().all(|n| n.is_empty()) {
                return Err("seed= needs at least one peer name, like seed=NAME1,NAME2".to_string());
            }
            for n in &names {
                crate::identity::validate_name(n)?;
            }
            Ok(InitMode::Seed(names))
        }
        _ => Err("expected consensus, consensus=N, seed=NAME,.. or observer".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(f: &LaunchFlags) -> Result<Config, ConfigError> {
        Config::parse(f, Paths::from_env())
    }

    fn with(change: impl FnOnce(&mut LaunchFlags)) -> Result<Config, ConfigError> {
        let mut f = LaunchFlags::default();
        change(&mut f);
        parse(&f)
    }

    #[test]
    fn defaults_are_valid() {
        let c = parse(&LaunchFlags::default()).unwrap();
        assert_eq!(c.range().to_string(), "10.32.0.0/12");
        assert_eq!(c.ipalloc_init, InitMode::Consensus(1));
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
        assert_eq!(
            PeerAddr::parse("fe80::1", 7).unwrap().to_string(),
            "[fe80::1]:7"
        );
        assert_eq!(PeerAddr::parse("h2", 7).unwrap().to_string(), "h2:7");
    }

    #[test]
    fn bad_values_name_their_flag() {
        let e = with(|f| f.ipalloc_range = Some("10.32.0.0/33".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--ipalloc-range"), "{e}");
        assert!(with(|f| f.ipalloc_init = Some("seed=".into())).is_err());
        with(|f| f.ipalloc_init = Some("consensus=3".into())).unwrap();
        assert!(with(|f| f.mtu = Some(10))
            .unwrap_err()
            .to_string()
            .contains("--mtu"));
        assert!(with(|f| f.dns_domain = "weft.local".into()).is_err());
    }

    #[test]
    fn every_bad_value_stops_the_launch_with_one_line() {
        type Change = Box<dyn Fn(&mut LaunchFlags)>;
        let cases: Vec<(&str, Change)> = vec![
            (
                "--trusted-subnets",
                Box::new(|f| f.trusted_subnets = vec!["10.0.0.0/8".into(), "bogus".into()]),
            ),
            (
                "--trusted-subnets",
                Box::new(|f| f.trusted_subnets = vec!["10.0.0.0/40".into()]),
            ),
            (
                "--trusted-subnets",
                Box::new(|f| f.trusted_subnets = vec!["fd00::/8".into()]),
            ),
            (
                "--ipalloc-range",
                Box::new(|f| f.ipalloc_range = Some("10.32.0.0".into())),
            ),
            (
                "--ipalloc-range",
                Box::new(|f| f.ipalloc_range = Some("fd00::/64".into())),
            ),
            (
                "--ipalloc-default-subnet",
                Box::new(|f| f.ipalloc_default_subnet = Some("x/24".into())),
            ),
            (
                "--ipalloc-init",
                Box::new(|f| f.ipalloc_init = Some("consensus=0".into())),
            ),
            (
                "--ipalloc-init",
                Box::new(|f| f.ipalloc_init = Some("seed=a b".into())),
            ),
            (
                "--ipalloc-init",
                Box::new(|f| f.ipalloc_init = Some("bogus".into())),
            ),
            ("--port", Box::new(|f| f.port = 0)),
            ("--conn-limit", Box::new(|f| f.conn_limit = 0)),
            ("--nickname", Box::new(|f| f.nickname = Some(String::new()))),
            ("--password", Box::new(|f| f.password = Some(String::new()))),
            ("--name", Box::new(|f| f.name = Some("not a name!".into()))),
            ("peer", Box::new(|f| f.peers = vec!["h2:0".into()])),
            ("--dns-domain", Box::new(|f| f.dns_domain = "a..b.".into())),
            (
                "--kube-api",
                Box::new(|f| f.kube_api = Some("http://127.0.0.1:1".into())),
            ),
            (
                "--kube-api",
                Box::new(|f| {
                    f.kube_peers = true;
                    f.kube_api = Some("http://10.96.0.1:80".into());
                }),
            ),
            (
                "--name",
                Box::new(|f| {
                    f.kube_peers = true;
                    f.kube_api = Some("https://10.96.0.1".into());
                    f.name = Some("abc".into());
                }),
            ),
            (
                "--kube-poll",
                Box::new(|f| {
                    f.kube_peers = true;
                    f.kube_api = Some("https://10.96.0.1".into());
                    f.kube_poll = 0;
                }),
            ),
            (
                "--kube-node",
                Box::new(|f| {
                    f.kube_peers = true;
                    f.kube_api = Some("https://10.96.0.1".into());
                    f.kube_node = Some("a b".into());
                }),
            ),
        ];
        for (flag, change) in cases {
            let mut f = LaunchFlags::default();
            change(&mut f);
            let e = parse(&f).expect_err(flag).to_string();
            assert!(e.starts_with(&format!("invalid {flag} ")), "{flag}: {e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }

    #[test]
    fn values_are_parsed_into_their_types() {
        let c = with(|f| {
            f.trusted_subnets = vec!["192.168.0.0/16".into(), "10.1.0.0/24".into()];
            f.ipalloc_range = Some("10.40.1.0/16".into());
            f.peers = vec!["h2".into(), "h3:7000".into()];
        })
        .unwrap();
        assert_eq!(c.trusted_subnets.len(), 2);
        assert_eq!(c.range().to_string(), "10.40.0.0/16");
        assert_eq!(c.ipalloc_init, InitMode::Consensus(3));
        let peers: Vec<String> = c.peers.iter().map(|p| p.to_string()).collect();
        assert_eq!(peers, ["h2:6783", "h3:7000"]);
    }

    #[test]
    fn kube_peers_name_the_peer_after_its_node() {
        let c = with(|f| {
            f.kube_peers = true;
            f.kube_api = Some("https://10.96.0.1:443".into());
            f.kube_node = Some("node-a".into());
        })
        .unwrap();
        assert_eq!(c.name.as_deref(), Some("node-a"));
        let k = c.kube.unwrap();
        assert_eq!(k.api.url(), "https://10.96.0.1:443");
        assert!(k.init_from_nodes);
        assert_eq!(k.poll.as_secs(), DEFAULT_KUBE_POLL);
        assert!(with(|f| f.kube_peers = false).unwrap().kube.is_none());
    }

    #[test]
    fn init_forms() {
        assert_eq!(parse_init(None, 2).unwrap(), InitMode::Consensus(3));
        assert_eq!(
            parse_init(Some("consensus=5"), 2).unwrap(),
            InitMode::Consensus(5)
        );
        assert_eq!(
            parse_init(Some("seed=a,b"), 0).unwrap(),
            InitMode::Seed(vec!["a".into(), "b".into()])
        );
        assert_eq!(parse_init(Some("observer"), 0).unwrap(), InitMode::Observer);
        assert!(parse_init(Some("seed="), 0).is_err());
        assert!(parse_init(Some("consensus=0"), 0).is_err());
        assert!(parse_init(Some("bogus"), 0).is_err());
    }
}
