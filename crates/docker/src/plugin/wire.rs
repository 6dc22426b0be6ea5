//! The JSON of each libnetwork remote-driver and IPAM-driver call: request bodies decoded into
//! the typed values of [`super::backend`], results encoded into the answers dockerd reads.
//! No IO here; every decoder returns an error message instead of panicking.

use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::backend::{
    AddressRequest, EndpointCreated, EndpointInfo, EndpointSpec, JoinSpec, Joined, NetworkSpec,
    Pool, PoolRequest, PortMapping, Proto,
};

/// What a failed decode says (already naming the call and the field).
pub(crate) type WireResult<T> = Result<T, String>;

/// libnetwork's option key for `-p` bindings (`netlabel.PortMap`).
pub(crate) const PORTMAP_KEY: &str = "com.docker.network.portmap";
/// libnetwork's option key for the endpoint MAC (`netlabel.MacAddress`).
pub(crate) const MAC_KEY: &str = "com.docker.network.endpoint.macaddress";
/// libnetwork's option key holding the `-o KEY=VALUE` driver options (`netlabel.GenericData`).
pub(crate) const GENERIC_KEY: &str = "com.docker.network.generic";
/// IPAM option naming the kind of address asked for (`ipamapi.RequestAddressType`).
pub(crate) const ADDRESS_TYPE_KEY: &str = "RequestAddressType";
/// Value of [`ADDRESS_TYPE_KEY`] when dockerd asks for the network's gateway (`netlabel.Gateway`).
pub(crate) const GATEWAY_TYPE: &str = "com.docker.network.gateway";
/// The one message every IPv6 request gets.
pub(crate) const IPV4_ONLY: &str = "weft networks are IPv4 only";

/// Parses `body` as the JSON object of `call`; unknown fields are ignored.
fn decode<'a, T: Deserialize<'a>>(call: &str, body: &'a [u8]) -> WireResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(format!(
            "bad {call} request: empty body, expected a JSON object"
        ));
    }
    serde_json::from_slice(body).map_err(|e| format!("bad {call} request: {e}"))
}

/// A field dockerd always fills.
fn required(call: &str, field: &str, value: String) -> WireResult<String> {
    if value.is_empty() {
        Err(format!("bad {call} request: {field} is missing or empty"))
    } else {
        Ok(value)
    }
}

/// An IPv4 CIDR (`10.99.0.0/24`); an IPv6 one gets the IPv4-only message.
fn ipv4_net(call: &str, field: &str, s: &str) -> WireResult<Ipv4Net> {
    ipv4::<Ipv4Net, IpNet>(
        call,
        field,
        s,
        "an IPv4 address with prefix length (a.b.c.d/n)",
    )
}

/// An IPv4 address (`10.99.0.5`); an IPv6 one gets the IPv4-only message.
fn ipv4_addr(call: &str, field: &str, s: &str) -> WireResult<Ipv4Addr> {
    ipv4::<Ipv4Addr, IpAddr>(call, field, s, "an IPv4 address")
}

/// `s` read as the IPv4 `V4`; when it is not one, `Any` (the same for either family)
/// tells an IPv6 value, which gets the IPv4-only message, from a bad one.
fn ipv4<V4: FromStr, Any: FromStr>(
    call: &str,
    field: &str,
    s: &str,
    expected: &str,
) -> WireResult<V4> {
    s.parse::<V4>().map_err(|_| match s.parse::<Any>() {
        Ok(_) => format!("{IPV4_ONLY}: {field} {s} is IPv6"),
        Err(_) => format!("bad {call} request: {field} {s:?} is not {expected}"),
    })
}

/// An empty string means "not given".
fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// An optional field (absent or empty: none), read by `parse`.
fn optional<T>(
    call: &str,
    field: &str,
    s: Option<String>,
    parse: fn(&str, &str, &str) -> WireResult<T>,
) -> WireResult<Option<T>> {
    non_empty(s).map(|v| parse(call, field, &v)).transpose()
}

/// A MAC as `net.ParseMAC` prints it (six hex pairs joined by `:`).
fn mac(call: &str, field: &str, s: &str) -> WireResult<String> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        Ok(parts.join(":").to_ascii_lowercase())
    } else {
        Err(format!(
            "bad {call} request: {field} {s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"
        ))
    }
}

/// A request holding just a network id (DeleteNetwork).
#[derive(Deserialize, Default)]
#[serde(default)]
struct NetworkIdReq {
    #[serde(rename = "NetworkID")]
    network_id: String,
}

/// A request holding a network and an endpoint id (DeleteEndpoint, Leave, EndpointOperInfo,
/// Program/RevokeExternalConnectivity).
#[derive(Deserialize, Default)]
#[serde(default)]
struct EndpointIdReq {
    #[serde(rename = "NetworkID")]
    network_id: String,
    #[serde(rename = "EndpointID")]
    endpoint_id: String,
}

/// `driverapi.IPAMData` as dockerd marshals it (pool and gateway in CIDR form).
#[derive(Deserialize, Default)]
#[serde(default)]
struct IpamData {
    #[serde(rename = "Pool")]
    pool: Option<String>,
    #[serde(rename = "Gateway")]
    gateway: Option<String>,
}

/// `api.CreateNetworkRequest`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct CreateNetworkReq {
    #[serde(rename = "NetworkID")]
    network_id: String,
    #[serde(rename = "Options")]
    options: Option<Map<String, Value>>,
    #[serde(rename = "IPv4Data")]
    ipv4_data: Option<Vec<IpamData>>,
    #[serde(rename = "IPv6Data")]
    ipv6_data: Option<Vec<IpamData>>,
}

/// `api.EndpointInterface` in a CreateEndpoint request.
#[derive(Deserialize, Default)]
#[serde(default)]
struct EndpointInterface {
    #[serde(rename = "Address")]
    address: Option<String>,
    #[serde(rename = "AddressIPv6")]
    address_ipv6: Option<String>,
    #[serde(rename = "MacAddress")]
    mac_address: Option<String>,
}

/// `api.CreateEndpointRequest`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct CreateEndpointReq {
    #[serde(rename = "NetworkID")]
    network_id: String,
    #[serde(rename = "EndpointID")]
    endpoint_id: String,
    #[serde(rename = "Interface")]
    interface: Option<EndpointInterface>,
    #[serde(rename = "Options")]
    options: Option<Map<String, Value>>,
}

/// libnetwork's `types.PortBinding` as JSON (Proto is the IANA number).
#[derive(Deserialize, Default)]
#[serde(default)]
struct PortBinding {
    #[serde(rename = "Proto")]
    proto: u64,
    #[serde(rename = "Port")]
    port: u16,
    #[serde(rename = "HostIP")]
    host_ip: Option<String>,
    #[serde(rename = "HostPort")]
    host_port: u16,
    #[serde(rename = "HostPortEnd")]
    host_port_end: u16,
}

/// `api.JoinRequest`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct JoinReq {
    #[serde(rename = "NetworkID")]
    network_id: String,
    #[serde(rename = "EndpointID")]
    endpoint_id: String,
    #[serde(rename = "SandboxKey")]
    sandbox_key: String,
}

/// IPAM `RequestPoolRequest`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RequestPoolReq {
    #[serde(rename = "Pool")]
    pool: Option<String>,
    #[serde(rename = "SubPool")]
    sub_pool: Option<String>,
    #[serde(rename = "V6")]
    v6: bool,
}

/// IPAM `ReleasePoolRequest`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ReleasePoolReq {
    #[serde(rename = "PoolID")]
    pool_id: String,
}

/// IPAM `RequestAddressRequest`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RequestAddressReq {
    #[serde(rename = "PoolID")]
    pool_id: String,
    #[serde(rename = "Address")]
    address: Option<String>,
    #[serde(rename = "Options")]
    options: Option<Map<String, Value>>,
}

/// IPAM `ReleaseAddressRequest`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ReleaseAddressReq {
    #[serde(rename = "PoolID")]
    pool_id: String,
    #[serde(rename = "Address")]
    address: Option<String>,
}

/// DeleteNetwork: the network id.
pub(crate) fn network_id(call: &str, body: &[u8]) -> WireResult<String> {
    let r: NetworkIdReq = decode(call, body)?;
    required(call, "NetworkID", r.network_id)
}

/// Calls naming one endpoint: (network id, endpoint id).
pub(crate) fn endpoint_ids(call: &str, body: &[u8]) -> WireResult<(String, String)> {
    let r: EndpointIdReq = decode(call, body)?;
    Ok((
        required(call, "NetworkID", r.network_id)?,
        required(call, "EndpointID", r.endpoint_id)?,
    ))
}

/// A JSON option value as the string the user typed (`-o k=v` values are strings already).
fn option_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// CreateNetwork.
pub(crate) fn create_network(call: &str, body: &[u8]) -> WireResult<NetworkSpec> {
    let r: CreateNetworkReq = decode(call, body)?;
    let network_id = required(call, "NetworkID", r.network_id)?;
    if r.ipv6_data.as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(format!(
            "{IPV4_ONLY}: create the network without --ipv6 and without an IPv6 --subnet"
        ));
    }
    let v4 = r.ipv4_data.unwrap_or_default();
    if v4.len() > 1 {
        return Err(format!(
            "a weft network has one IPv4 subnet, this request has {}: give one --subnet",
            v4.len()
        ));
    }
    let (mut subnet, mut gateway) = (None, None);
    if let Some(d) = v4.first() {
        if let Some(p) = non_empty(d.pool.clone()) {
            subnet = Some(ipv4_net(call, "IPv4Data.Pool", &p)?);
        }
        if let Some(g) = non_empty(d.gateway.clone()) {
            gateway = Some(ipv4_net(call, "IPv4Data.Gateway", &g)?);
        }
    }
    let mut options = Vec::new();
    if let Some(generic) = r.options.as_ref().and_then(|o| o.get(GENERIC_KEY)) {
        match generic {
            Value::Object(m) => {
                options.extend(m.iter().map(|(k, v)| (k.clone(), option_string(v))));
            }
            Value::Null => {}
            _ => {
                return Err(format!(
                    "bad {call} request: Options.{GENERIC_KEY} is not an object"
                ))
            }
        }
    }
    options.sort();
    Ok(NetworkSpec {
        network_id,
        subnet,
        gateway,
        options,
    })
}

/// The `com.docker.network.portmap` option: Docker's `-p` bindings.
fn port_mappings(call: &str, v: &Value) -> WireResult<Vec<PortMapping>> {
    if v.is_null() {
        return Ok(Vec::new());
    }
    let list: Vec<PortBinding> = serde_json::from_value(v.clone())
        .map_err(|e| format!("bad {call} request: Options.{PORTMAP_KEY}: {e}"))?;
    list.into_iter()
        .map(|b| {
            let Some(proto) = u8::try_from(b.proto).ok().and_then(Proto::from_iana) else {
                return Err(format!(
                    "published port {}: protocol number {} is not supported (weft publishes tcp, udp and sctp)",
                    b.port, b.proto
                ));
            };
            let host_ip = match non_empty(b.host_ip) {
                None => None,
                Some(s) => {
                    let a = ipv4_addr(call, "published port HostIP", &s)?;
                    (!a.is_unspecified()).then_some(a)
                }
            };
            Ok(PortMapping {
                proto,
                port: b.port,
                host_ip,
                host_port: b.host_port,
                host_port_end: b.host_port_end,
            })
        })
        .collect()
}

/// CreateEndpoint.
pub(crate) fn create_endpoint(call: &str, body: &[u8]) -> WireResult<EndpointSpec> {
    let r: CreateEndpointReq = decode(call, body)?;
    let network_id = required(call, "NetworkID", r.network_id)?;
    let endpoint_id = required(call, "EndpointID", r.endpoint_id)?;
    let iface = r.interface.unwrap_or_default();
    if let Some(v6) = non_empty(iface.address_ipv6) {
        return Err(format!(
            "{IPV4_ONLY}: the endpoint was given IPv6 address {v6}"
        ));
    }
    let address = optional(call, "Interface.Address", iface.address, ipv4_net)?;
    let mac = optional(call, "Interface.MacAddress", iface.mac_address, mac)?;
    let ports = match r.options.as_ref().and_then(|o| o.get(PORTMAP_KEY)) {
        Some(v) => port_mappings(call, v)?,
        None => Vec::new(),
    };
    Ok(EndpointSpec {
        network_id,
        endpoint_id,
        address,
        mac,
        ports,
    })
}

/// Join.
pub(crate) fn join(call: &str, body: &[u8]) -> WireResult<JoinSpec> {
    let r: JoinReq = decode(call, body)?;
    Ok(JoinSpec {
        network_id: required(call, "NetworkID", r.network_id)?,
        endpoint_id: required(call, "EndpointID", r.endpoint_id)?,
        sandbox_key: required(call, "SandboxKey", r.sandbox_key)?,
    })
}

/// RequestPool.
pub(crate) fn request_pool(call: &str, body: &[u8]) -> WireResult<PoolRequest> {
    let r: RequestPoolReq = decode(call, body)?;
    if r.v6 {
        return Err(format!(
            "{IPV4_ONLY}: create the network without --ipv6 and without an IPv6 --subnet"
        ));
    }
    let subnet = optional(call, "Pool (--subnet)", r.pool, ipv4_net)?;
    let sub_pool = optional(call, "SubPool (--ip-range)", r.sub_pool, ipv4_net)?;
    if sub_pool.is_some() && subnet.is_none() {
        return Err("--ip-range needs --subnet: give the subnet it lies in".to_string());
    }
    Ok(PoolRequest {
        subnet,
        sub_pool,
        v6: false,
    })
}

/// ReleasePool: the pool id.
pub(crate) fn pool_id(call: &str, body: &[u8]) -> WireResult<String> {
    let r: ReleasePoolReq = decode(call, body)?;
    required(call, "PoolID", r.pool_id)
}

/// RequestAddress.
pub(crate) fn request_address(call: &str, body: &[u8]) -> WireResult<AddressRequest> {
    let r: RequestAddressReq = decode(call, body)?;
    let pool_id = required(call, "PoolID", r.pool_id)?;
    let address = optional(call, "Address", r.address, ipv4_addr)?;
    let opts = r.options.unwrap_or_default();
    let gateway = opts.get(ADDRESS_TYPE_KEY).and_then(Value::as_str) == Some(GATEWAY_TYPE);
    let mac = match opts
        .get(MAC_KEY)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        Some(m) => Some(mac(call, &format!("Options.{MAC_KEY}"), m)?),
        None => None,
    };
    Ok(AddressRequest {
        pool_id,
        address,
        gateway,
        mac,
    })
}

/// ReleaseAddress: (pool id, address).
pub(crate) fn release_address(call: &str, body: &[u8]) -> WireResult<(String, Ipv4Addr)> {
    let r: ReleaseAddressReq = decode(call, body)?;
    let pool_id = required(call, "PoolID", r.pool_id)?;
    let address = required(call, "Address", r.address.unwrap_or_default())?;
    Ok((pool_id, ipv4_addr(call, "Address", &address)?))
}

/// An error answer: dockerd reads `Err` from any non-200 answer of either driver.
pub(crate) fn error(message: &str) -> Value {
    json!({ "Err": message })
}

/// An empty success answer.
pub(crate) fn empty() -> Value {
    json!({})
}

/// `Plugin.Activate`.
pub(crate) fn activated() -> Value {
    json!({ "Implements": ["NetworkDriver", "IpamDriver"] })
}

/// `NetworkDriver.GetCapabilities`: one host's networks, kept by each dockerd.
pub(crate) fn network_capabilities() -> Value {
    json!({ "Scope": "local", "ConnectivityScope": "local" })
}

/// `IpamDriver.GetCapabilities`. No replay: the router persists its allocations, and a replay
/// would re-request pools and addresses it already holds.
pub(crate) fn ipam_capabilities() -> Value {
    json!({ "RequiresMACAddress": false, "RequiresRequestReplay": false })
}

/// `IpamDriver.GetDefaultAddressSpaces`.
pub(crate) fn address_spaces() -> Value {
    json!({
        "LocalDefaultAddressSpace": "weft-local",
        "GlobalDefaultAddressSpace": "weft-global",
    })
}

/// RequestPool answer.
pub(crate) fn pool(p: &Pool) -> Value {
    json!({ "PoolID": p.id, "Pool": p.subnet.to_string(), "Data": {} })
}

/// RequestAddress answer: the address in CIDR form, as dockerd parses it.
pub(crate) fn address(a: &Ipv4Net) -> Value {
    json!({ "Address": a.to_string(), "Data": {} })
}

/// CreateEndpoint answer. Only a MAC dockerd did not set goes back: dockerd refuses an answer
/// that sets an address or MAC it already has ("driver modified interface ...").
pub(crate) fn endpoint_created(spec: &EndpointSpec, created: &EndpointCreated) -> Value {
    match (&spec.mac, &created.mac) {
        (None, Some(m)) => json!({ "Interface": { "MacAddress": m } }),
        _ => empty(),
    }
}

/// Join answer.
pub(crate) fn joined(j: &Joined) -> Value {
    json!({
        "InterfaceName": { "SrcName": j.src_name, "DstPrefix": j.dst_prefix },
        "Gateway": j.gateway.map(|g| g.to_string()).unwrap_or_default(),
        "GatewayIPv6": "",
        "StaticRoutes": [],
        "DisableGatewayService": j.disable_gateway_service,
    })
}

/// EndpointOperInfo answer: `Value` maps libnetwork's labels to values shaped as its own
/// drivers marshal them (`types.PortBinding` list, MAC string).
pub(crate) fn endpoint_info(info: &EndpointInfo) -> Value {
    let ports: Vec<Value> = info
        .ports
        .iter()
        .map(|p| {
            json!({
                "Proto": p.proto.iana(),
                "IP": "",
                "Port": p.port,
                "HostIP": p.host_ip.map(|a| a.to_string()).unwrap_or_default(),
                "HostPort": p.host_port,
                "HostPortEnd": p.host_port_end,
            })
        })
        .collect();
    let mut value = Map::new();
    value.insert(PORTMAP_KEY.to_string(), Value::Array(ports));
    if let Some(m) = &info.mac {
        value.insert(MAC_KEY.to_string(), Value::String(m.clone()));
    }
    json!({ "Value": value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_host_ip_means_every_address_and_macs_are_normalised() {
        let body = br#"{"NetworkID":"n","EndpointID":"e","Interface":{"MacAddress":"02-42-AC-11-00-02"},
            "Options":{"com.docker.network.portmap":[{"Proto":132,"Port":9,"HostIP":"0.0.0.0","HostPort":9000,"HostPortEnd":9010}]}}"#;
        let spec = create_endpoint("NetworkDriver.CreateEndpoint", body).unwrap();
        assert_eq!(spec.mac.as_deref(), Some("02:42:ac:11:00:02"));
        assert_eq!(spec.address, None);
        assert_eq!(
            spec.ports,
            vec![PortMapping {
                proto: Proto::Sctp,
                port: 9,
                host_ip: None,
                host_port: 9000,
                host_port_end: 9010
            }]
        );
    }

    #[test]
    fn ipv6_host_ip_and_bad_mac_are_refused_by_name() {
        let v6 = br#"{"NetworkID":"n","EndpointID":"e","Options":{"com.docker.network.portmap":[{"Proto":6,"Port":80,"HostIP":"::","HostPort":80}]}}"#;
        let e = create_endpoint("NetworkDriver.CreateEndpoint", v6).unwrap_err();
        assert!(e.contains("IPv4 only") && e.contains("HostIP"), "{e}");
        let mac_bad = br#"{"NetworkID":"n","EndpointID":"e","Interface":{"MacAddress":"02:42"}}"#;
        let e = create_endpoint("NetworkDriver.CreateEndpoint", mac_bad).unwrap_err();
        assert!(e.contains("\"02:42\" is not a MAC address"), "{e}");
    }

    #[test]
    fn pools_need_a_subnet_for_a_range_and_networks_one_subnet() {
        let e =
            request_pool("IpamDriver.RequestPool", br#"{"SubPool":"10.1.0.0/24"}"#).unwrap_err();
        assert!(e.contains("--ip-range needs --subnet"), "{e}");
        let default = request_pool("IpamDriver.RequestPool", br#"{"Pool":""}"#).unwrap();
        assert_eq!(default.subnet, None);
        let two =
            br#"{"NetworkID":"n","IPv4Data":[{"Pool":"10.1.0.0/24"},{"Pool":"10.2.0.0/24"}]}"#;
        let e = create_network("NetworkDriver.CreateNetwork", two).unwrap_err();
        assert!(e.contains("one IPv4 subnet"), "{e}");
        let e = create_network(
            "NetworkDriver.CreateNetwork",
            br#"{"NetworkID":"n","IPv4Data":[{"Pool":"10.1.0.0"}]}"#,
        )
        .unwrap_err();
        assert!(e.contains("IPv4Data.Pool \"10.1.0.0\""), "{e}");
    }

    #[test]
    fn non_string_generic_options_keep_their_json_text() {
        let body = br#"{"NetworkID":"n","Options":{"com.docker.network.generic":{"a":"x","b":3,"c":true}}}"#;
        let spec = create_network("NetworkDriver.CreateNetwork", body).unwrap();
        assert_eq!(
            spec.options,
            vec![
                ("a".to_string(), "x".to_string()),
                ("b".to_string(), "3".to_string()),
                ("c".to_string(), "true".to_string())
            ]
        );
    }
}
