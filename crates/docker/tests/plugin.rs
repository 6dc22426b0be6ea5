//! The network + IPAM plugin server on a unix socket, driven with the JSON bodies dockerd sends,
//! against a fake backend that records what it was asked.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use ipnet::Ipv4Net;
use serde_json::{json, Value};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use weft_docker::plugin::{
    answer, serve, AddressRequest, Backend, EndpointCreated, EndpointInfo, EndpointSpec, JoinSpec,
    Joined, NetworkSpec, PluginError, PluginResult, Pool, PoolRequest, PortMapping, Proto,
    CONTENT_TYPE,
};

/// One backend call as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    RequestPool(PoolRequest),
    ReleasePool(String),
    RequestAddress(AddressRequest),
    ReleaseAddress(String, Ipv4Addr),
    CreateNetwork(NetworkSpec),
    DeleteNetwork(String),
    CreateEndpoint(EndpointSpec),
    DeleteEndpoint(String, String),
    EndpointInfo(String, String),
    Join(JoinSpec),
    Leave(String, String),
    ProgramExternal(String, String),
    RevokeExternal(String, String),
}

/// A backend that records calls, hands out addresses from its pools, and fails every call
/// with `fail` when set.
#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<Call>>,
    fail: Mutex<Option<String>>,
    pools: Mutex<HashMap<String, Ipv4Net>>,
    next_host: Mutex<u32>,
    ports: Mutex<HashMap<String, Vec<PortMapping>>>,
    join_gateway: Mutex<Option<Ipv4Addr>>,
}

impl Fake {
    fn record(&self, c: Call) -> PluginResult<()> {
        self.calls.lock().unwrap().push(c);
        match self.fail.lock().unwrap().clone() {
            Some(m) => Err(PluginError::new(m)),
            None => Ok(()),
        }
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

impl Backend for Fake {
    async fn request_pool(&self, req: PoolRequest) -> PluginResult<Pool> {
        self.record(Call::RequestPool(req.clone()))?;
        let subnet = req
            .subnet
            .unwrap_or_else(|| "10.32.0.0/16".parse().unwrap());
        let mut pools = self.pools.lock().unwrap();
        let id = format!("weft-pool-{}", pools.len() + 1);
        pools.insert(id.clone(), subnet);
        Ok(Pool { id, subnet })
    }

    async fn release_pool(&self, pool_id: String) -> PluginResult<()> {
        self.record(Call::ReleasePool(pool_id))
    }

    async fn request_address(&self, req: AddressRequest) -> PluginResult<Ipv4Net> {
        self.record(Call::RequestAddress(req.clone()))?;
        let subnet = *self
            .pools
            .lock()
            .unwrap()
            .get(&req.pool_id)
            .ok_or_else(|| PluginError::new(format!("no pool {}", req.pool_id)))?;
        let addr = match (req.address, req.gateway) {
            (Some(a), _) => a,
            (None, true) => Ipv4Addr::from(u32::from(subnet.network()).wrapping_add(1)),
            (None, false) => {
                let mut n = self.next_host.lock().unwrap();
                *n += 1;
                Ipv4Addr::from(u32::from(subnet.network()).wrapping_add(1 + *n))
            }
        };
        Ok(Ipv4Net::new(addr, subnet.prefix_len()).unwrap())
    }

    async fn release_address(&self, pool_id: String, address: Ipv4Addr) -> PluginResult<()> {
        self.record(Call::ReleaseAddress(pool_id, address))
    }

    async fn create_network(&self, spec: NetworkSpec) -> PluginResult<()> {
        self.record(Call::CreateNetwork(spec))
    }

    async fn delete_network(&self, network_id: String) -> PluginResult<()> {
        self.record(Call::DeleteNetwork(network_id))
    }

    async fn create_endpoint(&self, spec: EndpointSpec) -> PluginResult<EndpointCreated> {
        self.record(Call::CreateEndpoint(spec.clone()))?;
        self.ports
            .lock()
            .unwrap()
            .insert(spec.endpoint_id.clone(), spec.ports.clone());
        Ok(EndpointCreated {
            mac: Some("02:57:46:00:00:02".into()),
        })
    }

    async fn delete_endpoint(&self, network_id: String, endpoint_id: String) -> PluginResult<()> {
        self.record(Call::DeleteEndpoint(network_id, endpoint_id))
    }

    async fn endpoint_info(
        &self,
        network_id: String,
        endpoint_id: String,
    ) -> PluginResult<EndpointInfo> {
        self.record(Call::EndpointInfo(network_id, endpoint_id.clone()))?;
        Ok(EndpointInfo {
            ports: self
                .ports
                .lock()
                .unwrap()
                .get(&endpoint_id)
                .cloned()
                .unwrap_or_default(),
            mac: Some("02:57:46:00:00:02".into()),
        })
    }

    async fn join(&self, spec: JoinSpec) -> PluginResult<Joined> {
        self.record(Call::Join(spec.clone()))?;
        Ok(Joined {
            src_name: format!(
                "vethwp{}",
                spec.endpoint_id.chars().take(8).collect::<String>()
            ),
            dst_prefix: "eth".into(),
            gateway: *self.join_gateway.lock().unwrap(),
            disable_gateway_service: false,
        })
    }

    async fn leave(&self, network_id: String, endpoint_id: String) -> PluginResult<()> {
        self.record(Call::Leave(network_id, endpoint_id))
    }

    async fn program_external(&self, network_id: String, endpoint_id: String) -> PluginResult<()> {
        self.record(Call::ProgramExternal(network_id, endpoint_id))
    }

    async fn revoke_external(&self, network_id: String, endpoint_id: String) -> PluginResult<()> {
        self.record(Call::RevokeExternal(network_id, endpoint_id))
    }
}

/// The plugin server on a socket in a temporary directory; stopped on drop.
struct Server {
    sock: PathBuf,
    backend: Arc<Fake>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("weft.sock");
        // Bound before the task starts, so a connect right after cannot miss it.
        let listener = UnixListener::bind(&sock).unwrap();
        let backend = Arc::new(Fake::default());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, backend.clone(), async move {
            let _ = rx.await;
        }));
        Server {
            sock,
            backend,
            stop: Some(tx),
            task: Some(task),
            _dir: dir,
        }
    }

    async fn post(&self, call: &str, body: &str) -> Reply {
        request(&self.sock, "POST", &format!("/{call}"), body).await
    }

    /// Posts and expects success, returning the JSON answer.
    async fn ok(&self, call: &str, body: &str) -> Value {
        let r = self.post(call, body).await;
        assert_eq!(r.status, 200, "{call} answered {} {}", r.status, r.body);
        r.body
    }

    async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// What the server answered.
struct Reply {
    status: u16,
    content_type: String,
    body: Value,
}

/// One HTTP request on a fresh connection, as dockerd's plugin client makes it.
async fn request(sock: &Path, method: &str, path: &str, body: &str) -> Reply {
    let stream = UnixStream::connect(sock).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("Host", "plugin")
        .header("Accept", "application/vnd.docker.plugins.v1.2+json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("answer to {path} is not JSON ({e}): {bytes:?}"));
    Reply {
        status,
        content_type,
        body,
    }
}

const NET: &str = "4c3b1d2e9a8f7e6d5c4b3a291817161514131211100f0e0d0c0b0a0908070605";
const EP: &str = "9e8d7c6b5a4938271605f4e3d2c1b0a99887766554433221100ffeeddccbbaa0";

/// Request bodies as dockerd 20.10.24 sent them (captured from a real dockerd by
/// `real_dockerd_creates_runs_and_removes_on_a_weft_network`; ids, one `-o`, and a second,
/// UDP, published port added).
mod sample {
    use super::{EP, NET};

    pub fn request_pool() -> String {
        r#"{"AddressSpace":"weft-local","Pool":"10.99.0.0/24","SubPool":"","Options":{},"V6":false}"#
            .into()
    }
    pub fn request_gateway() -> String {
        r#"{"PoolID":"weft-pool-1","Address":"","Options":{"RequestAddressType":"com.docker.network.gateway"}}"#.into()
    }
    pub fn create_network() -> String {
        format!(
            r#"{{"NetworkID":"{NET}","Options":{{"com.docker.network.enable_ipv6":false,"com.docker.network.generic":{{"weft.mtu":"1400","weft.note":"blue"}}}},"IPv4Data":[{{"AddressSpace":"weft-local","Gateway":"10.99.0.1/24","Pool":"10.99.0.0/24"}}],"IPv6Data":[]}}"#
        )
    }
    pub fn request_address() -> String {
        r#"{"PoolID":"weft-pool-1","Address":"","Options":null}"#.into()
    }
    const PORTMAP: &str = r#""com.docker.network.endpoint.exposedports":[{"Proto":6,"Port":80},{"Proto":17,"Port":53}],"com.docker.network.portmap":[{"Proto":6,"IP":"","Port":80,"HostIP":"","HostPort":8080,"HostPortEnd":8080},{"Proto":17,"IP":"","Port":53,"HostIP":"127.0.0.1","HostPort":0,"HostPortEnd":0}]"#;
    pub fn create_endpoint() -> String {
        format!(
            r#"{{"NetworkID":"{NET}","EndpointID":"{EP}","Interface":{{"Address":"10.99.0.2/24","AddressIPv6":"","MacAddress":""}},"Options":{{{PORTMAP}}}}}"#
        )
    }
    pub fn join() -> String {
        format!(
            r#"{{"NetworkID":"{NET}","EndpointID":"{EP}","SandboxKey":"/var/run/docker/netns/8a1f5c0b2d3e","Options":{{{PORTMAP}}}}}"#
        )
    }
    pub fn program_external() -> String {
        format!(r#"{{"NetworkID":"{NET}","EndpointID":"{EP}","Options":{{{PORTMAP}}}}}"#)
    }
    pub fn ids() -> String {
        format!(r#"{{"NetworkID":"{NET}","EndpointID":"{EP}"}}"#)
    }
    pub fn release(addr: &str) -> String {
        format!(r#"{{"PoolID":"weft-pool-1","Address":"{addr}"}}"#)
    }
    pub fn release_pool() -> String {
        r#"{"PoolID":"weft-pool-1"}"#.into()
    }
    pub fn delete_network() -> String {
        format!(r#"{{"NetworkID":"{NET}"}}"#)
    }
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

#[tokio::test]
async fn dockerd_sequence_create_run_stop_remove() {
    let srv = Server::start();
    *srv.backend.join_gateway.lock().unwrap() = Some(ip("10.99.0.1"));
    let (n, e) = (NET.to_string(), EP.to_string());

    // docker network create -d weft --ipam-driver weft --subnet 10.99.0.0/24 -o ... x
    let r = srv.post("Plugin.Activate", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, CONTENT_TYPE);
    assert_eq!(
        r.body,
        json!({"Implements": ["NetworkDriver", "IpamDriver"]})
    );
    expect_answers(
        &srv,
        vec![
            (
                "NetworkDriver.GetCapabilities",
                String::new(),
                json!({"Scope": "local", "ConnectivityScope": "local"}),
            ),
            (
                "IpamDriver.GetCapabilities",
                String::new(),
                json!({"RequiresMACAddress": false, "RequiresRequestReplay": false}),
            ),
            (
                "IpamDriver.GetDefaultAddressSpaces",
                String::new(),
                json!({"LocalDefaultAddressSpace": "weft-local", "GlobalDefaultAddressSpace": "weft-global"}),
            ),
            (
                "IpamDriver.RequestPool",
                sample::request_pool(),
                json!({"PoolID": "weft-pool-1", "Pool": "10.99.0.0/24", "Data": {}}),
            ),
            (
                "IpamDriver.RequestAddress",
                sample::request_gateway(),
                json!({"Address": "10.99.0.1/24", "Data": {}}),
            ),
            (
                "NetworkDriver.CreateNetwork",
                sample::create_network(),
                json!({}),
            ),
        ],
    )
    .await;

    // docker run --network x -p 8080:80 -p 127.0.0.1::53/udp ...
    expect_answers(
        &srv,
        vec![
            (
                "IpamDriver.RequestAddress",
                sample::request_address(),
                json!({"Address": "10.99.0.2/24", "Data": {}}),
            ),
            (
                "NetworkDriver.CreateEndpoint",
                sample::create_endpoint(),
                json!({"Interface": {"MacAddress": "02:57:46:00:00:02"}}),
            ),
            (
                "NetworkDriver.Join",
                sample::join(),
                json!({
                    "InterfaceName": {"SrcName": "vethwp9e8d7c6b", "DstPrefix": "eth"},
                    "Gateway": "10.99.0.1",
                    "GatewayIPv6": "",
                    "StaticRoutes": [],
                    "DisableGatewayService": false,
                }),
            ),
            (
                "NetworkDriver.ProgramExternalConnectivity",
                sample::program_external(),
                json!({}),
            ),
            (
                "NetworkDriver.EndpointOperInfo",
                sample::ids(),
                json!({"Value": {
                    "com.docker.network.portmap": [
                        {"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 8080, "HostPortEnd": 8080},
                        {"Proto": 17, "IP": "", "Port": 53, "HostIP": "127.0.0.1", "HostPort": 0, "HostPortEnd": 0},
                    ],
                    "com.docker.network.endpoint.macaddress": "02:57:46:00:00:02",
                }}),
            ),
        ],
    )
    .await;

    // docker stop; docker network rm x: every call answers {}.
    let stop_and_remove = [
        ("NetworkDriver.RevokeExternalConnectivity", sample::ids()),
        ("NetworkDriver.Leave", sample::ids()),
        ("NetworkDriver.DeleteEndpoint", sample::ids()),
        ("IpamDriver.ReleaseAddress", sample::release("10.99.0.2")),
        ("IpamDriver.ReleaseAddress", sample::release("10.99.0.1")),
        ("IpamDriver.ReleasePool", sample::release_pool()),
        ("NetworkDriver.DeleteNetwork", sample::delete_network()),
    ];
    let empty = stop_and_remove.map(|(call, body)| (call, body, json!({})));
    expect_answers(&srv, empty.to_vec()).await;

    let pool = "weft-pool-1".to_string();
    let ports = vec![
        PortMapping {
            proto: Proto::Tcp,
            port: 80,
            host_ip: None,
            host_port: 8080,
            host_port_end: 8080,
        },
        PortMapping {
            proto: Proto::Udp,
            port: 53,
            host_ip: Some(ip("127.0.0.1")),
            host_port: 0,
            host_port_end: 0,
        },
    ];
    assert_eq!(
        srv.backend.calls(),
        vec![
            Call::RequestPool(PoolRequest {
                subnet: Some(net("10.99.0.0/24")),
                sub_pool: None,
                v6: false
            }),
            Call::RequestAddress(AddressRequest {
                pool_id: pool.clone(),
                address: None,
                gateway: true,
                mac: None
            }),
            Call::CreateNetwork(NetworkSpec {
                network_id: n.clone(),
                subnet: Some(net("10.99.0.0/24")),
                gateway: Some(net("10.99.0.1/24")),
                options: vec![
                    ("weft.mtu".into(), "1400".into()),
                    ("weft.note".into(), "blue".into())
                ],
            }),
            Call::RequestAddress(AddressRequest {
                pool_id: pool.clone(),
                address: None,
                gateway: false,
                mac: None
            }),
            Call::CreateEndpoint(EndpointSpec {
                network_id: n.clone(),
                endpoint_id: e.clone(),
                address: Some(net("10.99.0.2/24")),
                mac: None,
                ports,
            }),
            Call::Join(JoinSpec {
                network_id: n.clone(),
                endpoint_id: e.clone(),
                sandbox_key: "/var/run/docker/netns/8a1f5c0b2d3e".into(),
            }),
            Call::ProgramExternal(n.clone(), e.clone()),
            Call::EndpointInfo(n.clone(), e.clone()),
            Call::RevokeExternal(n.clone(), e.clone()),
            Call::Leave(n.clone(), e.clone()),
            Call::DeleteEndpoint(n.clone(), e.clone()),
            Call::ReleaseAddress(pool.clone(), ip("10.99.0.2")),
            Call::ReleaseAddress(pool.clone(), ip("10.99.0.1")),
            Call::ReleasePool(pool),
            Call::DeleteNetwork(n),
        ]
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn backend_errors_reach_dockerd_as_err_with_status_500() {
    let srv = Server::start();
    *srv.backend.fail.lock().unwrap() =
        Some("subnet 10.99.0.0/24 overlaps weft network blue (10.99.0.0/16)".into());
    let bodies: Vec<_> = all_calls()
        .into_iter()
        .filter(|(call, _)| reaches_backend(call))
        .collect();
    for (call, body) in &bodies {
        let r = srv.post(call, body).await;
        assert_eq!(r.status, 500, "{call}");
        assert_eq!(r.content_type, CONTENT_TYPE, "{call}");
        assert_eq!(
            r.body,
            json!({"Err": "subnet 10.99.0.0/24 overlaps weft network blue (10.99.0.0/16)"}),
            "{call}"
        );
    }
    assert_eq!(srv.backend.calls().len(), bodies.len());
    srv.shutdown().await;
}

/// Posts each (call, body) in order, asserting a 200 with the answer given.
async fn expect_answers(srv: &Server, steps: Vec<(&str, String, Value)>) {
    for (call, body, want) in steps {
        assert_eq!(srv.ok(call, &body).await, want, "{call}");
    }
}

/// Posts `body` to `call` and returns the `Err` message, asserting a 500.
async fn err_of(srv: &Server, call: &str, body: &str) -> String {
    let r = srv.post(call, body).await;
    assert_eq!(r.status, 500, "{call} {body} answered {}", r.body);
    r.body["Err"]
        .as_str()
        .unwrap_or_else(|| panic!("no Err in {}", r.body))
        .to_owned()
}

#[tokio::test]
async fn ipv6_and_unsupported_input_get_one_clear_error_and_reach_no_backend() {
    let srv = Server::start();
    let v6_pool =
        r#"{"AddressSpace":"weft-local","Pool":"fd00::/64","SubPool":"","Options":null,"V6":true}"#;
    assert!(err_of(&srv, "IpamDriver.RequestPool", v6_pool)
        .await
        .contains("weft networks are IPv4 only"));
    let v6_net = format!(
        r#"{{"NetworkID":"{NET}","Options":{{}},"IPv4Data":[{{"AddressSpace":"weft-local","Pool":"10.99.0.0/24","Gateway":"10.99.0.1/24"}}],"IPv6Data":[{{"AddressSpace":"weft-local","Pool":"fd00::/64","Gateway":"fd00::1/64"}}]}}"#
    );
    assert!(err_of(&srv, "NetworkDriver.CreateNetwork", &v6_net)
        .await
        .contains("IPv4 only"));
    let v6_ep = format!(
        r#"{{"NetworkID":"{NET}","EndpointID":"{EP}","Interface":{{"Address":"10.99.0.2/24","AddressIPv6":"fd00::2/64","MacAddress":""}},"Options":{{}}}}"#
    );
    assert!(err_of(&srv, "NetworkDriver.CreateEndpoint", &v6_ep)
        .await
        .contains("IPv4 only"));
    let icmp = format!(
        r#"{{"NetworkID":"{NET}","EndpointID":"{EP}","Interface":{{"Address":"10.99.0.2/24"}},"Options":{{"com.docker.network.portmap":[{{"Proto":1,"IP":"","Port":7,"HostIP":"","HostPort":7,"HostPortEnd":7}}]}}}}"#
    );
    let m = err_of(&srv, "NetworkDriver.CreateEndpoint", &icmp).await;
    assert!(
        m.contains("protocol number 1") && m.contains("tcp, udp and sctp"),
        "{m}"
    );
    let bad_addr = r#"{"PoolID":"weft-pool-1","Address":"10.99.0.300"}"#;
    let m = err_of(&srv, "IpamDriver.ReleaseAddress", bad_addr).await;
    assert!(m.contains("\"10.99.0.300\" is not an IPv4 address"), "{m}");
    let m = err_of(&srv, "NetworkDriver.Join", "{not json").await;
    assert!(m.starts_with("bad NetworkDriver.Join request:"), "{m}");
    let m = err_of(&srv, "NetworkDriver.DeleteNetwork", "").await;
    assert!(m.contains("empty body"), "{m}");
    let m = err_of(&srv, "NetworkDriver.Leave", r#"{"NetworkID":"n"}"#).await;
    assert!(m.contains("EndpointID is missing"), "{m}");
    let m = err_of(&srv, "NetworkDriver.AllocateNetwork", "{}").await;
    assert!(m.contains("local-scope"), "{m}");
    assert!(srv.backend.calls().is_empty(), "{:?}", srv.backend.calls());
    srv.shutdown().await;
}

#[tokio::test]
async fn unknown_calls_and_other_methods_answer_json_errors() {
    let srv = Server::start();
    let r = srv.post("VolumeDriver.Create", "{}").await;
    assert_eq!(r.status, 404);
    assert!(r.body["Err"]
        .as_str()
        .unwrap()
        .contains("VolumeDriver.Create"));
    let r = request(&srv.sock, "GET", "/Plugin.Activate", "").await;
    assert_eq!(r.status, 405);
    assert!(r.body["Err"].as_str().unwrap().contains("POST"));
    srv.shutdown().await;
}

#[tokio::test]
async fn dockerd_given_mac_is_not_answered_back_and_no_gateway_is_empty() {
    let srv = Server::start();
    let body = format!(
        r#"{{"NetworkID":"{NET}","EndpointID":"{EP}","Interface":{{"Address":"10.99.0.7/24","AddressIPv6":"","MacAddress":"02:42:0A:63:00:07"}},"Options":null}}"#
    );
    assert_eq!(
        srv.ok("NetworkDriver.CreateEndpoint", &body).await,
        json!({})
    );
    let joined = srv.ok("NetworkDriver.Join", &sample::join()).await;
    assert_eq!(joined["Gateway"], "");
    let calls = srv.backend.calls();
    match &calls[0] {
        Call::CreateEndpoint(spec) => {
            assert_eq!(spec.mac.as_deref(), Some("02:42:0a:63:00:07"));
            assert_eq!(spec.address, Some(net("10.99.0.7/24")));
            assert!(spec.ports.is_empty());
        }
        other => panic!("expected CreateEndpoint, got {other:?}"),
    }
    // --ip and --ip-range reach the backend typed.
    let pool = r#"{"AddressSpace":"weft-local","Pool":"10.99.0.0/16","SubPool":"10.99.8.0/24","Options":null,"V6":false}"#;
    srv.ok("IpamDriver.RequestPool", pool).await;
    let want = r#"{"PoolID":"weft-pool-1","Address":"10.99.8.9","Options":{"com.docker.network.endpoint.macaddress":"02:42:0a:63:08:09"}}"#;
    assert_eq!(
        srv.ok("IpamDriver.RequestAddress", want).await,
        json!({"Address": "10.99.8.9/16", "Data": {}})
    );
    let calls = srv.backend.calls();
    assert_eq!(
        calls[2..],
        [
            Call::RequestPool(PoolRequest {
                subnet: Some(net("10.99.0.0/16")),
                sub_pool: Some(net("10.99.8.0/24")),
                v6: false
            }),
            Call::RequestAddress(AddressRequest {
                pool_id: "weft-pool-1".into(),
                address: Some(ip("10.99.8.9")),
                gateway: false,
                mac: Some("02:42:0a:63:08:09".into())
            }),
        ]
    );
    srv.shutdown().await;
}

/// Every call the server knows, with a valid body.
fn all_calls() -> Vec<(&'static str, String)> {
    vec![
        ("Plugin.Activate", String::new()),
        ("NetworkDriver.GetCapabilities", String::new()),
        ("NetworkDriver.CreateNetwork", sample::create_network()),
        ("NetworkDriver.DeleteNetwork", sample::delete_network()),
        ("NetworkDriver.CreateEndpoint", sample::create_endpoint()),
        ("NetworkDriver.DeleteEndpoint", sample::ids()),
        ("NetworkDriver.EndpointOperInfo", sample::ids()),
        ("NetworkDriver.Join", sample::join()),
        ("NetworkDriver.Leave", sample::ids()),
        ("NetworkDriver.DiscoverNew", "{}".into()),
        ("NetworkDriver.DiscoverDelete", "{}".into()),
        (
            "NetworkDriver.ProgramExternalConnectivity",
            sample::program_external(),
        ),
        ("NetworkDriver.RevokeExternalConnectivity", sample::ids()),
        ("NetworkDriver.AllocateNetwork", "{}".into()),
        ("NetworkDriver.FreeNetwork", "{}".into()),
        ("IpamDriver.GetCapabilities", String::new()),
        ("IpamDriver.GetDefaultAddressSpaces", String::new()),
        ("IpamDriver.RequestPool", sample::request_pool()),
        ("IpamDriver.ReleasePool", sample::release_pool()),
        ("IpamDriver.RequestAddress", sample::request_gateway()),
        ("IpamDriver.ReleaseAddress", sample::release("10.99.0.1")),
    ]
}

/// Calls answered without reading the body (dockerd sends none, or it is swarm's).
fn ignores_body(call: &str) -> bool {
    matches!(
        call,
        "Plugin.Activate"
            | "NetworkDriver.GetCapabilities"
            | "IpamDriver.GetCapabilities"
            | "IpamDriver.GetDefaultAddressSpaces"
            | "NetworkDriver.DiscoverNew"
            | "NetworkDriver.DiscoverDelete"
    )
}

/// Calls that reach the backend (the others are answered by the server alone).
fn reaches_backend(call: &str) -> bool {
    !ignores_body(call)
        && !matches!(
            call,
            "NetworkDriver.AllocateNetwork" | "NetworkDriver.FreeNetwork"
        )
}

/// A small deterministic generator (xorshift64*), so failures replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A body from `valid`: random bytes, a truncation, flipped bytes, or a field set to a
/// value of the wrong type.
fn mangle(rng: &mut Rng, valid: &str) -> Vec<u8> {
    let mut b = valid.as_bytes().to_vec();
    match rng.below(5) {
        0 => (0..rng.below(200)).map(|_| rng.next() as u8).collect(),
        1 => {
            b.truncate(rng.below(b.len().max(1)));
            b
        }
        2 if !b.is_empty() => {
            for _ in 0..=rng.below(4) {
                let i = rng.below(b.len());
                b[i] = rng.next() as u8;
            }
            b
        }
        3 => {
            let wrong = ["null", "-1", "1e400", "[]", "{}", "\"x\"", "true", "70000"];
            let w = wrong[rng.below(wrong.len())];
            let fields = [
                "NetworkID",
                "EndpointID",
                "PoolID",
                "Address",
                "Pool",
                "SubPool",
                "V6",
                "Options",
                "Interface",
                "IPv4Data",
                "IPv6Data",
                "SandboxKey",
                "Proto",
                "Port",
                "HostPort",
                "HostIP",
                "MacAddress",
                "Gateway",
            ];
            let f = fields[rng.below(fields.len())];
            format!(r#"{{"{f}":{w}}}"#).into_bytes()
        }
        _ => {
            let depth = rng.below(300);
            let mut s = "[".repeat(depth);
            s.push_str(&"]".repeat(depth));
            s.into_bytes()
        }
    }
}

#[tokio::test]
async fn random_bodies_answer_an_error_and_never_panic() {
    let backend = Fake::default();
    let mut rng = Rng(0x005e_ed0f_3e1f);
    for round in 0..4000 {
        for (call, valid) in all_calls() {
            let body = mangle(&mut rng, &valid);
            let a = answer(&backend, &format!("/{call}"), &body).await;
            if ignores_body(call) {
                assert_eq!(a.status, 200, "{call}");
                continue;
            }
            if a.status == 200 {
                // A mangled body may still be valid JSON for the call (e.g. a flipped byte in
                // an id); then it must have decoded to something the backend accepted.
                continue;
            }
            assert_eq!(a.status, 500, "round {round} {call} {body:?}: {}", a.body);
            let err = a.body["Err"].as_str().unwrap_or_default();
            assert!(!err.is_empty(), "round {round} {call}: {}", a.body);
        }
    }
    // And through the socket: random bytes on every call keep the server answering JSON.
    let srv = Server::start();
    for _ in 0..20 {
        for (call, valid) in all_calls() {
            let body = String::from_utf8_lossy(&mangle(&mut rng, &valid)).into_owned();
            let r = srv.post(call, &body).await;
            assert!(
                r.status == 200 || (r.status == 500 && r.body["Err"].is_string()),
                "{call}: {} {}",
                r.status,
                r.body
            );
        }
    }
    srv.shutdown().await;
}
