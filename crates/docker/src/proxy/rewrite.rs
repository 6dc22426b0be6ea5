//! The sans-IO heart of the proxy: which `POST /containers/create` bodies to change, which
//! Docker networks the `WEFT_CIDR` forms map to, and the rewritten body.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde_json::{Map, Value};

use super::cidr::{parse_weft_cidr, AddrSpec, CidrSetting};
use super::ProxyConfig;
use crate::engine::Network;

/// What to do with a create request.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Forward the body unchanged (`none`, another network mode, or not a JSON object).
    PassThrough,
    /// Answer 400 with this message and create nothing.
    Reject(String),
    /// Attach the container per these forms (never empty).
    Attach {
        /// The parsed JSON body.
        body: Value,
        /// `WEFT_CIDR=value` as the user wrote it (for messages).
        setting: String,
        /// The address forms, in order.
        specs: Vec<AddrSpec>,
    },
}

/// Network modes that mean "Docker's default", which the proxy replaces with weft.
const DEFAULT_MODES: [&str; 3] = ["", "default", "bridge"];

/// Looks at a create body and decides.
pub fn decide(body: &[u8]) -> Decision {
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return Decision::PassThrough;
    };
    if !body.is_object() {
        return Decision::PassThrough;
    }
    let mode = match body.pointer("/HostConfig/NetworkMode") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Decision::PassThrough,
    };
    if !DEFAULT_MODES.contains(&mode) {
        return Decision::PassThrough;
    }
    let (var, value) = match (
        env_value(&body, "WEFT_CIDR"),
        env_value(&body, "WEAVE_CIDR"),
    ) {
        (Some(v), _) => ("WEFT_CIDR", Some(v)),
        (None, Some(v)) => ("WEAVE_CIDR", Some(v)),
        (None, None) => ("WEFT_CIDR", None),
    };
    let setting = format!("{var}={}", value.unwrap_or_default());
    match parse_weft_cidr(value) {
        Ok(CidrSetting::None) => Decision::PassThrough,
        Ok(CidrSetting::Attach(specs)) => Decision::Attach {
            body,
            setting,
            specs,
        },
        Err(e) => Decision::Reject(reject_message(&setting, &e.why)),
    }
}

/// The 400 message for a `WEFT_CIDR` that cannot be used.
pub fn reject_message(setting: &str, why: &str) -> String {
    format!("{setting}: {why}; use net:default, net:CIDR, ip:CIDR or none")
}

/// The last `KEY=value` of the body's `Env` (Docker lets the last one win).
fn env_value<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get("Env")?
        .as_array()?
        .iter()
        .rev()
        .filter_map(Value::as_str)
        .find_map(|e| e.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// The Docker network one address form lands in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A network that exists, by name.
    Existing(String),
    /// A network to create first (driver and IPAM driver weft).
    Create {
        /// Its name.
        name: String,
        /// Its subnet.
        subnet: Ipv4Net,
    },
}

impl Target {
    /// The network's name.
    pub fn name(&self) -> &str {
        match self {
            Target::Existing(n) => n,
            Target::Create { name, .. } => name,
        }
    }
}

/// Where one address form goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The network.
    pub target: Target,
    /// The address asked for (`ip:` forms), or `None` for any free one.
    pub ipv4: Option<Ipv4Addr>,
}

/// The name the proxy gives the network of `subnet`: `weft-10.32.1.0-24`.
pub fn subnet_network_name(subnet: Ipv4Net) -> String {
    format!("weft-{}-{}", subnet.network(), subnet.prefix_len())
}

/// Maps each form to a network, given the networks Docker has now. The error says why (it
/// goes after `WEFT_CIDR=...: `).
pub fn place(
    specs: &[AddrSpec],
    networks: &[Network],
    config: &ProxyConfig,
) -> Result<Vec<Placement>, String> {
    let mut out: Vec<Placement> = Vec::with_capacity(specs.len());
    for spec in specs {
        let (subnet, ipv4) = match *spec {
            AddrSpec::DefaultSubnet => (config.default_subnet, None),
            AddrSpec::Subnet(net) => {
                if !config.range.contains(&net) {
                    return Err(format!(
                        "net:{net} is outside weft's address range {}",
                        config.range
                    ));
                }
                (net, None)
            }
            AddrSpec::Ip {
                addr,
                prefix: Some(p),
            } => {
                let net = Ipv4Net::new(addr, p)
                    .map_err(|_| format!("ip:{addr}/{p}: bad prefix length"))?
                    .trunc();
                // The IPAM plugin only hands out pools inside the range; say so up front.
                if net != config.default_subnet && !config.range.contains(&net) {
                    return Err(format!(
                        "ip:{addr}/{p}: its subnet {net} is outside weft's address range {}",
                        config.range
                    ));
                }
                (net, Some(addr))
            }
            AddrSpec::Ip { addr, prefix: None } => {
                (subnet_holding(addr, networks, config)?, Some(addr))
            }
        };
        let target = network_for_subnet(subnet, networks, config);
        if out.iter().any(|p| p.target.name() == target.name()) {
            return Err(format!(
                "two forms land in the same network {} ({subnet}); a container joins a network once",
                target.name()
            ));
        }
        out.push(Placement { target, ipv4 });
    }
    Ok(out)
}

/// The subnet of a bare `ip:A`: the default subnet if it holds A, else the narrowest weft
/// network that does.
fn subnet_holding(
    addr: Ipv4Addr,
    networks: &[Network],
    config: &ProxyConfig,
) -> Result<Ipv4Net, String> {
    if config.default_subnet.contains(&addr) {
        return Ok(config.default_subnet);
    }
    networks
        .iter()
        .filter(|n| n.driver == config.driver)
        .flat_map(Network::ipv4_subnets)
        .filter(|s| s.contains(&addr))
        .max_by_key(Ipv4Net::prefix_len)
        .ok_or_else(|| {
            format!(
                "ip:{addr} is outside the default subnet {} and every weft network; give its subnet as ip:{addr}/len",
                config.default_subnet
            )
        })
}

/// The weft network of `subnet`, or the one to create.
fn network_for_subnet(subnet: Ipv4Net, networks: &[Network], config: &ProxyConfig) -> Target {
    if subnet == config.default_subnet {
        if networks.iter().any(|n| n.name == config.default_network) {
            return Target::Existing(config.default_network.clone());
        }
        return Target::Create {
            name: config.default_network.clone(),
            subnet,
        };
    }
    let ours = subnet_network_name(subnet);
    let mut found: Vec<&str> = networks
        .iter()
        .filter(|n| n.driver == config.driver && n.ipv4_subnets().any(|s| s == subnet))
        .map(|n| n.name.as_str())
        .collect();
    // Docker lists networks in no fixed order; prefer our own name, then the first by name.
    found.sort_by_key(|n| (*n != ours, n.to_string()));
    match found.first() {
        Some(name) => Target::Existing((*name).to_string()),
        None => Target::Create { name: ours, subnet },
    }
}

/// Rewrites a create body to attach the container to `network` (with `ipv4` if given), and
/// sets weft's DNS server, search domain and the hostname `name.domain`.
pub fn rewrite_create(
    body: &mut Value,
    network: &str,
    ipv4: Option<Ipv4Addr>,
    name: Option<&str>,
    config: &ProxyConfig,
) {
    let Some(top) = body.as_object_mut() else {
        return;
    };
    let host = object_at(top, "HostConfig");
    let old_mode = host
        .get("NetworkMode")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    host.insert("NetworkMode".into(), Value::String(network.to_string()));
    if let Some(dns) = config.dns_server {
        if is_empty_list(host.get("Dns")) {
            host.insert("Dns".into(), Value::Array(vec![dns.to_string().into()]));
        }
    }
    let domain = config
        .dns_domain
        .as_deref()
        .map(|d| d.trim_end_matches('.'))
        .filter(|d| !d.is_empty());
    if let Some(domain) = domain {
        if is_empty_list(host.get("DnsSearch")) {
            host.insert("DnsSearch".into(), Value::Array(vec![domain.into()]));
        }
    }

    let endpoints = object_at(object_at(top, "NetworkingConfig"), "EndpointsConfig");
    // Settings the user gave for the default network (aliases, links) move to weft's.
    let mut endpoint = Value::Object(Map::new());
    for key in [old_mode.as_str(), "default", "bridge"] {
        if let Some(v) = endpoints.remove(key) {
            if v.is_object() {
                endpoint = v;
            }
        }
    }
    if let Some(e) = endpoints.remove(network) {
        if e.is_object() {
            endpoint = e;
        }
    }
    if let (Some(ip), Some(ep)) = (ipv4, endpoint.as_object_mut()) {
        object_at(ep, "IPAMConfig").insert("IPv4Address".into(), Value::String(ip.to_string()));
    }
    endpoints.insert(network.to_string(), endpoint);

    if let (Some(domain), Some(name)) = (domain, name.filter(|n| !n.is_empty())) {
        // A hostname the client gave is kept, and with it its domain.
        if set_if_empty(top, "Hostname", name) {
            set_if_empty(top, "Domainname", domain);
        }
    }
}

/// Sets `top[key]` to `value` when it is missing, empty or not a string; whether it did.
fn set_if_empty(top: &mut Map<String, Value>, key: &str, value: &str) -> bool {
    let empty = top
        .get(key)
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    if empty {
        top.insert(key.into(), Value::String(value.to_string()));
    }
    empty
}

/// The object under `key`, made an empty object if missing, null or not an object.
fn object_at<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = map
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(m) => m,
        // Made an object just above.
        _ => unreachable!("slot was just made an object"),
    }
}

fn is_empty_list(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    }
}

/// The `name` query parameter of a create request, percent-decoded.
pub fn query_name(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == "name").then(|| percent_decode(v))
        })
        .map(|n| n.trim_start_matches('/').to_string())
        .filter(|n| !n.is_empty())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |j: usize| {
            bytes
                .get(j)
                .and_then(|c| char::from(*c).to_digit(16))
                .and_then(|d| u8::try_from(d).ok())
        };
        match b {
            b'%' => match (hex(i + 1), hex(i + 2)) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b),
            },
            b'+' => out.push(b' '),
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a request path is container create (`/containers/create`, optionally after a
/// `/vX.Y` version prefix).
pub fn is_create_path(path: &str) -> bool {
    let rest = match path.strip_prefix("/v") {
        Some(after) => match after.find('/') {
            Some(i) => {
                let (version, rest) = after.split_at(i);
                let ok = !version.is_empty()
                    && version
                        .split('.')
                        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
                if !ok {
                    return false;
                }
                rest
            }
            None => return false,
        },
        None => path,
    };
    rest == "/containers/create"
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    pub(super) fn config() -> ProxyConfig {
        ProxyConfig {
            default_network: "weft".into(),
            // Narrower than the range, so that other subnets of the range do not overlap it.
            default_subnet: "10.32.0.0/16".parse().unwrap(),
            range: "10.32.0.0/12".parse().unwrap(),
            dns_server: Some(Ipv4Addr::new(127, 0, 0, 12)),
            dns_domain: Some("weft.local.".into()),
            driver: "weft".into(),
        }
    }

    fn net(name: &str, driver: &str, subnets: &[&str]) -> Network {
        serde_json::from_value(json!({
            "Name": name, "Id": format!("id-{name}"), "Driver": driver,
            "IPAM": {"Driver": driver, "Config": subnets.iter().map(|s| json!({"Subnet": s})).collect::<Vec<_>>()}
        }))
        .unwrap()
    }

    fn networks() -> Vec<Network> {
        vec![
            net("bridge", "bridge", &["172.17.0.0/16"]),
            net("weft", "weft", &["10.32.0.0/16"]),
            net("mine", "weft", &["10.33.0.0/24"]),
            net("weft-10.33.0.0-24", "weft", &["10.33.0.0/24"]),
            net("other", "bridge", &["10.34.0.0/24"]),
        ]
    }

    /// What the docker 20.10 CLI sends for `docker run -e WEFT_CIDR=... busybox sh`.
    fn cli_body(env: &[&str]) -> Value {
        json!({
            "Hostname": "", "Domainname": "", "User": "", "AttachStdin": true,
            "AttachStdout": true, "AttachStderr": true, "Tty": true, "OpenStdin": true,
            "StdinOnce": true, "Env": env, "Cmd": ["sh"], "Image": "busybox",
            "Volumes": {}, "WorkingDir": "", "Entrypoint": null, "OnBuild": null, "Labels": {},
            "HostConfig": {"Binds": null, "ContainerIDFile": "", "LogConfig": {"Type": "", "Config": {}},
                "NetworkMode": "default", "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
                "AutoRemove": true, "Dns": [], "DnsOptions": [], "DnsSearch": [], "ExtraHosts": null},
            "NetworkingConfig": {"EndpointsConfig": {}}
        })
    }

    fn decide_value(v: &Value) -> Decision {
        decide(&serde_json::to_vec(v).unwrap())
    }

    #[test]
    fn decisions() {
        let Decision::Attach { specs, setting, .. } = decide_value(&cli_body(&["A=1"])) else {
            panic!("unset WEFT_CIDR attaches to the default subnet");
        };
        assert_eq!(specs, vec![AddrSpec::DefaultSubnet]);
        assert_eq!(setting, "WEFT_CIDR=");

        let both = cli_body(&["WEFT_CIDR=net:10.32.1.0/24", "WEAVE_CIDR=none"]);
        let Decision::Attach { specs, .. } = decide_value(&both) else {
            panic!("WEFT_CIDR wins");
        };
        assert_eq!(
            specs,
            vec![AddrSpec::Subnet("10.32.1.0/24".parse().unwrap())]
        );

        assert_eq!(
            decide_value(&cli_body(&["WEAVE_CIDR=none"])),
            Decision::PassThrough
        );
        assert_eq!(
            decide_value(&cli_body(&["WEFT_CIDR=ip:10.32.1.5/24", "WEFT_CIDR=none"])),
            Decision::PassThrough
        );
        assert_eq!(
            decide_value(&cli_body(&["WEAVE_CIDR=bogus"])),
            Decision::Reject(
                "WEAVE_CIDR=bogus: bogus: bogus is not an IPv4 address; use net:default, net:CIDR, ip:CIDR or none"
                    .into()
            )
        );
        for mode in ["host", "none", "container:abc", "mynet", "weft"] {
            let mut b = cli_body(&["WEFT_CIDR=bogus"]);
            b["HostConfig"]["NetworkMode"] = json!(mode);
            assert_eq!(decide_value(&b), Decision::PassThrough, "{mode}");
        }
        for mode in [json!(""), json!("bridge"), json!(null)] {
            let mut b = cli_body(&[]);
            b["HostConfig"]["NetworkMode"] = mode.clone();
            assert!(
                matches!(decide_value(&b), Decision::Attach { .. }),
                "{mode}"
            );
        }
        let mut b = cli_body(&[]);
        b.as_object_mut().unwrap().remove("HostConfig");
        b["Env"] = json!(null);
        assert!(matches!(decide_value(&b), Decision::Attach { .. }));
        // Junk goes to dockerd, which explains it.
        assert_eq!(decide(b"not json"), Decision::PassThrough);
        assert_eq!(decide(b"[1,2]"), Decision::PassThrough);
        assert_eq!(decide(b""), Decision::PassThrough);
        let mut b = cli_body(&[]);
        b["HostConfig"]["NetworkMode"] = json!(5);
        assert_eq!(decide_value(&b), Decision::PassThrough);
        let mut b = cli_body(&[]);
        b["Env"] = json!([1, "WEFT_CIDR=none", null]);
        assert_eq!(decide_value(&b), Decision::PassThrough);
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn specs(s: &str) -> Vec<AddrSpec> {
        match parse_weft_cidr(Some(s)).unwrap() {
            CidrSetting::Attach(v) => v,
            CidrSetting::None => panic!(),
        }
    }

    #[test]
    fn placements() {
        let cfg = config();
        let nets = networks();
        let p = place(
            &specs("net:default net:10.33.0.0/24 ip:10.40.1.9/24 ip:10.33.0.7"),
            &nets,
            &cfg,
        );
        // Both weft networks of 10.33.0.0/24 hold 10.33.0.7: same network twice.
        let e = p.unwrap_err();
        assert!(e.contains("same network weft-10.33.0.0-24"), "{e}");

        let p = place(
            &specs("net:default net:10.33.0.0/24 ip:10.40.1.9/24"),
            &nets,
            &cfg,
        )
        .unwrap();
        assert_eq!(
            p,
            vec![
                Placement {
                    target: Target::Existing("weft".into()),
                    ipv4: None
                },
                // Two weft networks have that subnet: the proxy's own name wins.
                Placement {
                    target: Target::Existing("weft-10.33.0.0-24".into()),
                    ipv4: None
                },
                Placement {
                    target: Target::Create {
                        name: "weft-10.40.1.0-24".into(),
                        subnet: "10.40.1.0/24".parse().unwrap()
                    },
                    ipv4: Some(ip("10.40.1.9"))
                },
            ]
        );

        // Bare addresses: the default subnet, else the narrowest weft network holding it.
        let p = place(&specs("10.32.5.6"), &nets, &cfg).unwrap();
        assert_eq!(p[0].target, Target::Existing("weft".into()));
        assert_eq!(p[0].ipv4, Some(ip("10.32.5.6")));
        let p = place(&specs("ip:10.33.0.9"), &nets, &cfg).unwrap();
        assert_eq!(p[0].target, Target::Existing("weft-10.33.0.0-24".into()));
        // ip:A/len in the default subnet with the default prefix is the default network.
        let p = place(&specs("ip:10.32.0.9/16"), &nets, &cfg).unwrap();
        assert_eq!(p[0].target, Target::Existing("weft".into()));
        // A bridge network's subnet is not a weft network.
        let e = place(&specs("ip:10.34.0.9"), &nets, &cfg).unwrap_err();
        assert!(e.contains("give its subnet as ip:10.34.0.9/len"), "{e}");
        let p = place(&specs("net:10.64.0.0/24"), &nets, &cfg);
        assert!(p
            .unwrap_err()
            .contains("outside weft's address range 10.32.0.0/12"));
        let e = place(&specs("10.64.0.9/24"), &nets, &cfg).unwrap_err();
        assert_eq!(
            e,
            "ip:10.64.0.9/24: its subnet 10.64.0.0/24 is outside weft's address range 10.32.0.0/12"
        );
        let p = place(&specs("10.34.0.9/24"), &nets, &cfg).unwrap();
        assert_eq!(p[0].target.name(), "weft-10.34.0.0-24");
        let e = place(&specs("net:default 10.32.0.2"), &nets, &cfg).unwrap_err();
        assert!(e.contains("same network weft (10.32.0.0/16)"), "{e}");
        let p = place(&specs("ip:10.32.0.9/12"), &nets, &cfg).unwrap();
        assert_eq!(p[0].target.name(), "weft-10.32.0.0-12");
        // Only one candidate, under another name.
        let p = place(
            &specs("net:10.33.0.0/24"),
            &[net("mine", "weft", &["10.33.0.0/24"])],
            &cfg,
        )
        .unwrap();
        assert_eq!(p[0].target, Target::Existing("mine".into()));
        // No default network yet: create it.
        let p = place(&specs("net:default"), &[], &cfg).unwrap();
        assert_eq!(
            p[0].target,
            Target::Create {
                name: "weft".into(),
                subnet: cfg.default_subnet
            }
        );
    }

    #[test]
    fn rewrite_attaches_and_sets_dns_and_hostname() {
        let cfg = config();
        let mut b = cli_body(&["WEFT_CIDR=ip:10.32.1.5/24"]);
        b["NetworkingConfig"]["EndpointsConfig"] = json!({"default": {"Aliases": ["db"]}});
        let before = b.clone();
        rewrite_create(
            &mut b,
            "weft-10.32.1.0-24",
            Some(ip("10.32.1.5")),
            Some("web"),
            &cfg,
        );
        let mut want = before;
        want["HostConfig"]["NetworkMode"] = json!("weft-10.32.1.0-24");
        want["HostConfig"]["Dns"] = json!(["127.0.0.12"]);
        want["HostConfig"]["DnsSearch"] = json!(["weft.local"]);
        want["NetworkingConfig"]["EndpointsConfig"] = json!({
            "weft-10.32.1.0-24": {"Aliases": ["db"], "IPAMConfig": {"IPv4Address": "10.32.1.5"}}
        });
        want["Hostname"] = json!("web");
        want["Domainname"] = json!("weft.local");
        assert_eq!(b, want);
    }

    #[test]
    fn rewrite_keeps_what_the_user_gave() {
        let cfg = config();
        let mut b = cli_body(&[]);
        b["Hostname"] = json!("myhost");
        b["HostConfig"]["Dns"] = json!(["1.1.1.1"]);
        b["HostConfig"]["DnsSearch"] = json!(["example.com"]);
        b["Unknown"] = json!({"kept": [1, 2]});
        let before = b.clone();
        rewrite_create(&mut b, "weft", None, Some("web"), &cfg);
        let mut want = before;
        want["HostConfig"]["NetworkMode"] = json!("weft");
        want["NetworkingConfig"]["EndpointsConfig"] = json!({"weft": {}});
        assert_eq!(b, want);

        // --no-dns: no DNS settings, no hostname; no name: no hostname.
        let cfg = ProxyConfig {
            dns_server: None,
            dns_domain: None,
            ..config()
        };
        let mut b = cli_body(&[]);
        rewrite_create(&mut b, "weft", None, Some("web"), &cfg);
        assert_eq!(b["HostConfig"]["Dns"], json!([]));
        assert_eq!(b["HostConfig"]["DnsSearch"], json!([]));
        assert_eq!(b["Hostname"], json!(""));
        let mut b = cli_body(&[]);
        rewrite_create(&mut b, "weft", None, None, &config());
        assert_eq!(b["Hostname"], json!(""));
        assert_eq!(b["HostConfig"]["Dns"], json!(["127.0.0.12"]));

        // A minimal body without HostConfig or NetworkingConfig.
        let mut b = json!({"Image": "busybox", "NetworkingConfig": null});
        rewrite_create(&mut b, "weft", Some(ip("10.32.0.9")), Some("x"), &config());
        assert_eq!(
            b,
            json!({
                "Image": "busybox", "Hostname": "x", "Domainname": "weft.local",
                "HostConfig": {"NetworkMode": "weft", "Dns": ["127.0.0.12"], "DnsSearch": ["weft.local"]},
                "NetworkingConfig": {"EndpointsConfig": {"weft": {"IPAMConfig": {"IPv4Address": "10.32.0.9"}}}}
            })
        );
    }

    #[test]
    fn query_names_and_paths() {
        assert_eq!(query_name(Some("name=web")), Some("web".into()));
        assert_eq!(
            query_name(Some("platform=&name=%2Fweb%2D1")),
            Some("web-1".into())
        );
        assert_eq!(query_name(Some("name=")), None);
        assert_eq!(query_name(Some("names=x")), None);
        assert_eq!(query_name(None), None);
        assert_eq!(query_name(Some("name=a%zz%4")), Some("a%zz%4".into()));
        assert_eq!(query_name(Some("name=%C3%A9")), Some("é".into()));
        for p in [
            "/containers/create",
            "/v1.41/containers/create",
            "/v1/containers/create",
        ] {
            assert!(is_create_path(p), "{p}");
        }
        for p in [
            "/containers/create/",
            "/vx.1/containers/create",
            "/v1./containers/create",
            "/v/containers/create",
            "/v1.41/containers/json",
            "/v1.41/v1.41/containers/create",
            "/containers/createx",
            "/v1.41",
        ] {
            assert!(!is_create_path(p), "{p}");
        }
    }
}

#[cfg(test)]
mod prop {
    use proptest::prelude::*;
    use serde_json::json;

    use super::tests::config;
    use super::*;

    /// Words that look like address forms, some right, some not.
    fn word() -> impl Strategy<Value = String> {
        let ip = (any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>())
            .prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}"));
        (
            prop_oneof![
                Just(""),
                Just("ip:"),
                Just("net:"),
                Just("none"),
                Just("x:")
            ],
            ip,
            prop_oneof![Just(String::new()), (0u8..40).prop_map(|p| format!("/{p}"))],
        )
            .prop_map(|(f, a, p)| format!("{f}{a}{p}"))
    }

    proptest! {
        #[test]
        fn decide_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decide(&bytes);
        }

        #[test]
        fn any_cidr_value_is_placed_or_refused_and_the_body_stays_an_object(
            words in proptest::collection::vec(word(), 0..4),
            junk in ".{0,20}",
            mode in prop_oneof![Just("default"), Just("bridge"), Just(""), Just("host")],
            name in proptest::option::of("[a-z][a-z0-9_.-]{0,10}"),
        ) {
            let value = format!("{} {junk}", words.join(" "));
            let body = json!({"Env": [format!("WEFT_CIDR={value}")], "HostConfig": {"NetworkMode": mode}});
            match decide(body.to_string().as_bytes()) {
                Decision::PassThrough | Decision::Reject(_) => {}
                Decision::Attach { mut body, specs, .. } => {
                    prop_assert!(!specs.is_empty());
                    let nets = vec![];
                    if let Ok(placements) = place(&specs, &nets, &config()) {
                        prop_assert_eq!(placements.len(), specs.len());
                        let first = &placements[0];
                        rewrite_create(&mut body, first.target.name(), first.ipv4, name.as_deref(), &config());
                        prop_assert_eq!(&body["HostConfig"]["NetworkMode"], &json!(first.target.name()));
                        prop_assert!(body["NetworkingConfig"]["EndpointsConfig"][first.target.name()].is_object());
                    }
                }
            }
        }

        #[test]
        fn query_and_path_helpers_never_panic(s in ".{0,40}") {
            let _ = query_name(Some(&s));
            let _ = is_create_path(&s);
        }
    }
}
