//! The Engine API objects weft reads, with only the fields weft needs.
//!
//! Docker sends `null` for empty lists and maps (`"Env": null`, `"Containers": null`), and
//! leaves fields out depending on the API version, so every field defaults and accepts null.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// Reads a field that may be `null` or missing as its type's default.
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Reads a `{"k": "v"}` map whose values Docker meant as strings; other JSON values are kept
/// as their JSON text, so an odd value never fails the whole object.
pub(crate) fn string_map<'de, D>(d: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: Deserializer<'de>,
{
    let raw: Option<BTreeMap<String, serde_json::Value>> = Option::deserialize(d)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            (k, v)
        })
        .collect())
}

/// `GET /containers/{id}/json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Container {
    /// Full container id.
    #[serde(deserialize_with = "null_default")]
    pub id: String,
    /// Name with Docker's leading slash (`/web`); see [`Container::short_name`].
    #[serde(deserialize_with = "null_default")]
    pub name: String,
    /// Run state.
    #[serde(deserialize_with = "null_default")]
    pub state: ContainerState,
    /// The container's configuration.
    #[serde(deserialize_with = "null_default")]
    pub config: ContainerConfig,
    /// Host-side configuration.
    #[serde(deserialize_with = "null_default")]
    pub host_config: HostConfig,
    /// The networks the container is attached to.
    #[serde(deserialize_with = "null_default")]
    pub network_settings: NetworkSettings,
}

impl Container {
    /// The name without Docker's leading slash.
    pub fn short_name(&self) -> &str {
        self.name.strip_prefix('/').unwrap_or(&self.name)
    }
}

/// `State` of an inspected container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ContainerState {
    /// Whether its process runs.
    #[serde(deserialize_with = "null_default")]
    pub running: bool,
    /// Host pid of its first process (0 when not running).
    #[serde(deserialize_with = "null_default")]
    pub pid: i64,
    /// `created`, `running`, `paused`, `restarting`, `removing`, `exited` or `dead`.
    #[serde(deserialize_with = "null_default")]
    pub status: String,
}

/// `Config` of an inspected container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ContainerConfig {
    /// Hostname (without domain).
    #[serde(deserialize_with = "null_default")]
    pub hostname: String,
    /// Domain name.
    #[serde(deserialize_with = "null_default")]
    pub domainname: String,
    /// `KEY=value` environment entries.
    #[serde(deserialize_with = "null_default")]
    pub env: Vec<String>,
    /// Labels.
    #[serde(deserialize_with = "string_map")]
    pub labels: BTreeMap<String, String>,
}

impl ContainerConfig {
    /// The value of the last `KEY=...` entry of the environment (Docker lets the last win).
    pub fn env_value(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
    }
}

/// `HostConfig` of an inspected container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct HostConfig {
    /// `default`, `bridge`, `host`, `none`, `container:ID` or a network name.
    #[serde(deserialize_with = "null_default")]
    pub network_mode: String,
}

/// `NetworkSettings` of an inspected container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct NetworkSettings {
    /// Endpoint per network name.
    #[serde(deserialize_with = "null_default")]
    pub networks: BTreeMap<String, EndpointSettings>,
}

/// One network endpoint of an inspected container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct EndpointSettings {
    /// Network id.
    #[serde(rename = "NetworkID", deserialize_with = "null_default")]
    pub network_id: String,
    /// Endpoint id.
    #[serde(rename = "EndpointID", deserialize_with = "null_default")]
    pub endpoint_id: String,
    /// IPv4 address (empty when none).
    #[serde(rename = "IPAddress", deserialize_with = "null_default")]
    pub ip_address: String,
    /// Prefix length of `ip_address`.
    #[serde(rename = "IPPrefixLen", deserialize_with = "null_default")]
    pub ip_prefix_len: u8,
    /// MAC address.
    #[serde(rename = "MacAddress", deserialize_with = "null_default")]
    pub mac_address: String,
    /// IPv4 gateway (empty when none).
    #[serde(rename = "Gateway", deserialize_with = "null_default")]
    pub gateway: String,
}

/// One entry of `GET /containers/json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ContainerSummary {
    /// Full container id.
    #[serde(deserialize_with = "null_default")]
    pub id: String,
    /// Names, each with Docker's leading slash.
    #[serde(deserialize_with = "null_default")]
    pub names: Vec<String>,
    /// `created`, `running`, `exited`, ...
    #[serde(deserialize_with = "null_default")]
    pub state: String,
    /// Labels.
    #[serde(deserialize_with = "string_map")]
    pub labels: BTreeMap<String, String>,
}

/// `GET /networks/{id}` and each entry of `GET /networks`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Network {
    /// Full network id.
    #[serde(deserialize_with = "null_default")]
    pub id: String,
    /// Name.
    #[serde(deserialize_with = "null_default")]
    pub name: String,
    /// Network driver (`weft`, `bridge`, ...).
    #[serde(deserialize_with = "null_default")]
    pub driver: String,
    /// Address management.
    #[serde(rename = "IPAM", deserialize_with = "null_default")]
    pub ipam: Ipam,
    /// Attached containers by id (filled by inspect only, empty in lists).
    #[serde(deserialize_with = "null_default")]
    pub containers: BTreeMap<String, NetworkContainer>,
    /// Driver options.
    #[serde(deserialize_with = "string_map")]
    pub options: BTreeMap<String, String>,
    /// Labels.
    #[serde(deserialize_with = "string_map")]
    pub labels: BTreeMap<String, String>,
}

impl Network {
    /// The IPv4 subnets of its IPAM configuration (entries that do not parse are skipped).
    pub fn ipv4_subnets(&self) -> impl Iterator<Item = ipnet::Ipv4Net> + '_ {
        self.ipam
            .config
            .iter()
            .filter_map(|c| c.subnet.parse::<ipnet::Ipv4Net>().ok())
    }
}

/// `IPAM` of a network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Ipam {
    /// IPAM driver (`default`, `weft`, ...).
    #[serde(deserialize_with = "null_default")]
    pub driver: String,
    /// Pools.
    #[serde(deserialize_with = "null_default")]
    pub config: Vec<IpamConfig>,
}

/// One pool of a network's IPAM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct IpamConfig {
    /// Subnet CIDR.
    #[serde(deserialize_with = "null_default")]
    pub subnet: String,
    /// Gateway address (may be empty).
    #[serde(deserialize_with = "null_default")]
    pub gateway: String,
}

/// A container attached to an inspected network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct NetworkContainer {
    /// Container name (no leading slash here).
    #[serde(rename = "Name", deserialize_with = "null_default")]
    pub name: String,
    /// Endpoint id.
    #[serde(rename = "EndpointID", deserialize_with = "null_default")]
    pub endpoint_id: String,
    /// `a.b.c.d/len` (empty when none).
    #[serde(rename = "IPv4Address", deserialize_with = "null_default")]
    pub ipv4_address: String,
    /// MAC address.
    #[serde(rename = "MacAddress", deserialize_with = "null_default")]
    pub mac_address: String,
}

/// What [`super::Engine::create_network`] asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateNetwork {
    /// Network name.
    pub name: String,
    /// Network driver.
    pub driver: String,
    /// IPAM driver (`None`: Docker's default).
    pub ipam_driver: Option<String>,
    /// Subnet CIDR (`None`: the IPAM driver chooses).
    pub subnet: Option<String>,
    /// Gateway address.
    pub gateway: Option<String>,
    /// Driver options.
    pub options: BTreeMap<String, String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// The JSON body of `POST /networks/create`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CreateNetworkBody<'a> {
    pub name: &'a str,
    // Without it, Docker 20.10 happily creates a second network of the same name.
    pub check_duplicate: bool,
    pub driver: &'a str,
    #[serde(rename = "IPAM")]
    pub ipam: CreateIpamBody<'a>,
    pub options: &'a BTreeMap<String, String>,
    pub labels: &'a BTreeMap<String, String>,
}

/// `IPAM` of [`CreateNetworkBody`].
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CreateIpamBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<&'a str>,
    pub config: Vec<CreateIpamConfig<'a>>,
}

/// One pool of [`CreateIpamBody`].
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CreateIpamConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<&'a str>,
}

/// `{"Id": ...}` answers (network and container create).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct IdBody {
    #[serde(deserialize_with = "null_default")]
    pub id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    // Shaped after the Engine API v1.41 ContainerInspect example, trimmed and with the
    // nulls Docker really sends for empty collections.
    const INSPECT: &str = r#"{
      "Id": "ba033ac4401106a3b513bc9d639eee123ad78ca3616b921167cd74b20e25ed39",
      "Created": "2015-01-06T15:47:31.485331387Z",
      "Path": "/bin/sh",
      "Args": [],
      "State": {"Status": "running", "Running": true, "Paused": false, "Restarting": false,
                "OOMKilled": false, "Dead": false, "Pid": 4242, "ExitCode": 0, "Error": "",
                "StartedAt": "2015-01-06T15:47:32.072697474Z", "FinishedAt": "0001-01-01T00:00:00Z"},
      "Image": "sha256:04c5d3b7b0656168630d3ba35d8889bd0e9caafcaeb3004d2bfbc47e7c5d35d2",
      "Name": "/web",
      "RestartCount": 0,
      "HostConfig": {"NetworkMode": "weft", "Dns": null, "DnsSearch": null, "Binds": null},
      "Config": {"Hostname": "web", "Domainname": "weft.local", "User": "",
                 "Env": ["PATH=/usr/bin", "WEFT_CIDR=net:10.32.1.0/24", "WEFT_CIDR=ip:10.32.1.9/24"],
                 "Cmd": ["sh"], "Labels": {"com.example.vendor": "Acme", "n": 3}, "Tty": true},
      "NetworkSettings": {
        "Bridge": "", "SandboxID": "abc", "SandboxKey": "/var/run/docker/netns/abc",
        "IPAddress": "", "MacAddress": "",
        "Networks": {
          "weft": {"IPAMConfig": {"IPv4Address": "10.32.0.5"}, "Links": null, "Aliases": ["ba033ac44011"],
                   "NetworkID": "7ea29fc1412292a2d7bba362f9253545fecdfa8ce9a6e37dd10ba8bee7129812",
                   "EndpointID": "7587b82f0dada3656fda26588aee72630c6fab1536d36e394b2bfbcf898c971d",
                   "Gateway": "", "IPAddress": "10.32.0.5", "IPPrefixLen": 12,
                   "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                   "MacAddress": "02:42:0a:20:00:05", "DriverOpts": null}
        }
      }
    }"#;

    #[test]
    fn container_inspect_reads_the_fields_weft_needs() {
        let c: Container = serde_json::from_str(INSPECT).unwrap();
        assert_eq!(c.short_name(), "web");
        assert!(c.state.running);
        assert_eq!(c.state.pid, 4242);
        assert_eq!(c.state.status, "running");
        assert_eq!(c.config.hostname, "web");
        assert_eq!(c.config.domainname, "weft.local");
        assert_eq!(c.config.env_value("WEFT_CIDR"), Some("ip:10.32.1.9/24"));
        assert_eq!(c.config.env_value("PATH"), Some("/usr/bin"));
        assert_eq!(c.config.env_value("PAT"), None);
        assert_eq!(c.config.labels["com.example.vendor"], "Acme");
        assert_eq!(c.config.labels["n"], "3");
        assert_eq!(c.host_config.network_mode, "weft");
        let ep = &c.network_settings.networks["weft"];
        assert_eq!(ep.ip_address, "10.32.0.5");
        assert_eq!(ep.ip_prefix_len, 12);
        assert_eq!(ep.mac_address, "02:42:0a:20:00:05");
        assert!(ep.endpoint_id.starts_with("7587b82f"));
        assert!(ep.network_id.starts_with("7ea29fc1"));
    }

    #[test]
    fn nulls_and_missing_fields_default() {
        let c: Container = serde_json::from_str(
            r#"{"Id":"x","Name":null,"State":null,"Config":{"Env":null,"Labels":null},
                "NetworkSettings":{"Networks":null}}"#,
        )
        .unwrap();
        assert_eq!(c.id, "x");
        assert_eq!(c.name, "");
        assert!(c.config.env.is_empty());
        assert!(c.network_settings.networks.is_empty());
        let c: Container = serde_json::from_str("{}").unwrap();
        assert_eq!(c, Container::default());
    }

    #[test]
    fn wrong_types_are_errors_not_panics() {
        assert!(serde_json::from_str::<Container>(r#"{"State":{"Pid":"many"}}"#).is_err());
        assert!(serde_json::from_str::<Vec<Network>>(r#"[{"IPAM":7}]"#).is_err());
        assert!(serde_json::from_str::<Container>("[").is_err());
    }

    #[test]
    fn network_list_and_inspect() {
        let list: Vec<Network> = serde_json::from_str(
            r#"[
              {"Name":"bridge","Id":"f2de39df4171b0dc801e8002d1d999b77256983dfc63041c0f34030aa3977566",
               "Created":"2016-10-19T06:21:00.416543526Z","Scope":"local","Driver":"bridge",
               "EnableIPv6":false,"Internal":false,"Attachable":false,"Ingress":false,
               "IPAM":{"Driver":"default","Config":[{"Subnet":"172.17.0.0/16"}]},
               "Containers":{},"Options":{"com.docker.network.bridge.default_bridge":"true"},"Labels":null},
              {"Name":"none","Id":"e086a3893b05ab69242d3c44e49483a3bbbd3a26b46baa8f61ab797c1088d794",
               "Driver":"null","IPAM":{"Driver":"default","Config":[]},"Containers":{},"Options":{},"Labels":{}},
              {"Name":"weft-10.32.1.0-24","Id":"3f2a","Driver":"weft",
               "IPAM":{"Driver":"weft","Options":null,"Config":[{"Subnet":"10.32.1.0/24","Gateway":"10.32.1.1"},{"Subnet":"fd00::/64"}]},
               "Containers":null,"Options":null,"Labels":{"works.weft":"1"}}
            ]"#,
        )
        .unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(list[0].ipam.config[0].subnet, "172.17.0.0/16");
        assert_eq!(
            list[0].options["com.docker.network.bridge.default_bridge"],
            "true"
        );
        assert_eq!(list[2].driver, "weft");
        assert_eq!(list[2].ipam.driver, "weft");
        assert_eq!(list[2].ipam.config[0].gateway, "10.32.1.1");
        let subnets: Vec<_> = list[2].ipv4_subnets().collect();
        assert_eq!(subnets, vec!["10.32.1.0/24".parse().unwrap()]);

        let net: Network = serde_json::from_str(
            r#"{"Name":"weft","Id":"7d86d31b1478e7cca9ebed7e73aa0fdeec46c5ca29497431d3007d2d9e15ed99",
                "Driver":"weft","IPAM":{"Driver":"weft","Config":[{"Subnet":"10.32.0.0/12"}]},
                "Containers":{"19a4d5d687db25203351ed79d478946f861258f018fe384f229f2efa4b23513c":
                  {"Name":"test","EndpointID":"628cadb8bcb92de107b2a1e516cbffe463e321f548feb37697cce00ad694f21a",
                   "MacAddress":"02:42:ac:13:00:02","IPv4Address":"10.32.0.2/12","IPv6Address":""}}}"#,
        )
        .unwrap();
        let (id, c) = net.containers.iter().next().unwrap();
        assert!(id.starts_with("19a4d5d6"));
        assert_eq!(c.name, "test");
        assert_eq!(c.ipv4_address, "10.32.0.2/12");
        assert_eq!(c.mac_address, "02:42:ac:13:00:02");
    }

    #[test]
    fn container_list() {
        let list: Vec<ContainerSummary> = serde_json::from_str(
            r#"[{"Id":"8dfafdbc3a40","Names":["/boring_feynman"],"Image":"ubuntu:latest",
                 "State":"Exited","Status":"Exit 0","Labels":{"a":"b"},
                 "NetworkSettings":{"Networks":{"bridge":{"IPAddress":"172.17.0.2"}}}},
                {"Id":"9cd87474be90","Names":null,"State":"running"}]"#,
        )
        .unwrap();
        assert_eq!(list[0].names, vec!["/boring_feynman"]);
        assert_eq!(list[0].labels["a"], "b");
        assert_eq!(list[1].state, "running");
        assert!(list[1].names.is_empty());
    }

    #[test]
    fn create_network_body_shape() {
        let opts = BTreeMap::new();
        let mut labels = BTreeMap::new();
        labels.insert("k".to_string(), "v".to_string());
        let body = CreateNetworkBody {
            name: "weft-10.32.1.0-24",
            check_duplicate: true,
            driver: "weft",
            ipam: CreateIpamBody {
                driver: Some("weft"),
                config: vec![CreateIpamConfig {
                    subnet: Some("10.32.1.0/24"),
                    gateway: None,
                }],
            },
            options: &opts,
            labels: &labels,
        };
        let v = serde_json::to_value(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "Name": "weft-10.32.1.0-24", "CheckDuplicate": true, "Driver": "weft",
                "IPAM": {"Driver": "weft", "Config": [{"Subnet": "10.32.1.0/24"}]},
                "Options": {}, "Labels": {"k": "v"}
            })
        );
    }
}
