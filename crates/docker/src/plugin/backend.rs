//! What the router does for each call dockerd makes; the protocol layer only translates
//! JSON to these calls and their results back to JSON.

use std::future::Future;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// A failed call: dockerd shows `message` to the user, so it says what and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PluginError {
    /// One clear line.
    pub message: String,
}

impl PluginError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        PluginError {
            message: message.into(),
        }
    }
}

/// Result of a backend call.
pub type PluginResult<T> = Result<T, PluginError>;

pub use weft_types::Proto;

/// One `-p [HOST_IP:]HOST_PORT[-END]:PORT[/proto]` of a container (Docker's portmap option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortMapping {
    /// Protocol.
    pub proto: Proto,
    /// Port inside the container.
    pub port: u16,
    /// Host address to listen on; `None` means every address of the host.
    pub host_ip: Option<Ipv4Addr>,
    /// First host port; 0 means "choose one".
    pub host_port: u16,
    /// Last host port of a range (equal to `host_port` for one port, 0 when unset).
    pub host_port_end: u16,
}

/// `IpamDriver.RequestPool`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolRequest {
    /// `--subnet` if given; `None` asks for the default subnet.
    pub subnet: Option<Ipv4Net>,
    /// `--ip-range` if given (must lie inside the subnet).
    pub sub_pool: Option<Ipv4Net>,
    /// Whether Docker asks for an IPv6 pool (refused: the overlay is IPv4).
    pub v6: bool,
}

/// A pool handed to Docker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// Opaque id Docker passes back in later calls.
    pub id: String,
    /// The subnet (CIDR) of the pool.
    pub subnet: Ipv4Net,
}

/// `IpamDriver.RequestAddress`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressRequest {
    /// Pool id from [`Pool::id`].
    pub pool_id: String,
    /// A specific address (`--ip`, `--gateway`), or `None` for any free one.
    pub address: Option<Ipv4Addr>,
    /// Whether this is the network's gateway (`RequestAddressType=com.docker.network.gateway`).
    pub gateway: bool,
    /// MAC address Docker will give the endpoint, when it says.
    pub mac: Option<String>,
}

/// `NetworkDriver.CreateNetwork`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec {
    /// Docker's network id.
    pub network_id: String,
    /// The IPv4 pool of the network (first of IPv4Data), if any.
    pub subnet: Option<Ipv4Net>,
    /// Gateway address of the network as Docker got it from IPAM.
    pub gateway: Option<Ipv4Net>,
    /// Driver options (`-o KEY=VALUE`) as strings.
    pub options: Vec<(String, String)>,
}

/// `NetworkDriver.CreateEndpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    /// Docker's network id.
    pub network_id: String,
    /// Docker's endpoint id.
    pub endpoint_id: String,
    /// The address IPAM gave the endpoint (CIDR with the pool's prefix).
    pub address: Option<Ipv4Net>,
    /// MAC address if Docker chose one (`--mac-address`).
    pub mac: Option<String>,
    /// Published ports (`-p`).
    pub ports: Vec<PortMapping>,
}

/// What CreateEndpoint answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointCreated {
    /// The MAC the plugin chose, when Docker did not give one.
    pub mac: Option<String>,
}

/// `NetworkDriver.Join`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinSpec {
    /// Docker's network id.
    pub network_id: String,
    /// Docker's endpoint id.
    pub endpoint_id: String,
    /// Path of the container's network namespace (in dockerd's mount namespace).
    pub sandbox_key: String,
}

/// What Join answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The interface (in the host's namespace) Docker moves into the container.
    pub src_name: String,
    /// Name prefix Docker gives it inside (`eth` gives eth0, eth1...).
    pub dst_prefix: String,
    /// Default gateway for the container; `None` lets Docker add docker_gwbridge.
    pub gateway: Option<Ipv4Addr>,
    /// Tells dockerd the endpoint needs no default gateway from `docker_gwbridge`.
    pub disable_gateway_service: bool,
}

/// Operational data of an endpoint (`NetworkDriver.EndpointOperInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointInfo {
    /// The ports actually published (host ports chosen), reported back to Docker.
    pub ports: Vec<PortMapping>,
    /// The endpoint's MAC, if known.
    pub mac: Option<String>,
}

/// The router's side of the plugin: one method per driver call.
pub trait Backend: Send + Sync + 'static {
    /// `IpamDriver.RequestPool`.
    fn request_pool(&self, req: PoolRequest) -> impl Future<Output = PluginResult<Pool>> + Send;
    /// `IpamDriver.ReleasePool`.
    fn release_pool(&self, pool_id: String) -> impl Future<Output = PluginResult<()>> + Send;
    /// `IpamDriver.RequestAddress`: the address with the pool's prefix length.
    fn request_address(
        &self,
        req: AddressRequest,
    ) -> impl Future<Output = PluginResult<Ipv4Net>> + Send;
    /// `IpamDriver.ReleaseAddress`.
    fn release_address(
        &self,
        pool_id: String,
        address: Ipv4Addr,
    ) -> impl Future<Output = PluginResult<()>> + Send;
    /// `NetworkDriver.CreateNetwork`.
    fn create_network(&self, spec: NetworkSpec) -> impl Future<Output = PluginResult<()>> + Send;
    /// `NetworkDriver.DeleteNetwork`.
    fn delete_network(&self, network_id: String) -> impl Future<Output = PluginResult<()>> + Send;
    /// `NetworkDriver.CreateEndpoint`.
    fn create_endpoint(
        &self,
        spec: EndpointSpec,
    ) -> impl Future<Output = PluginResult<EndpointCreated>> + Send;
    /// `NetworkDriver.DeleteEndpoint`.
    fn delete_endpoint(
        &self,
        network_id: String,
        endpoint_id: String,
    ) -> impl Future<Output = PluginResult<()>> + Send;
    /// `NetworkDriver.EndpointOperInfo`.
    fn endpoint_info(
        &self,
        network_id: String,
        endpoint_id: String,
    ) -> impl Future<Output = PluginResult<EndpointInfo>> + Send;
    /// `NetworkDriver.Join`.
    fn join(&self, spec: JoinSpec) -> impl Future<Output = PluginResult<Joined>> + Send;
    /// `NetworkDriver.Leave`.
    fn leave(
        &self,
        network_id: String,
        endpoint_id: String,
    ) -> impl Future<Output = PluginResult<()>> + Send;
    /// `NetworkDriver.ProgramExternalConnectivity`: publish the endpoint's ports.
    fn program_external(
        &self,
        network_id: String,
        endpoint_id: String,
    ) -> impl Future<Output = PluginResult<()>> + Send;
    /// `NetworkDriver.RevokeExternalConnectivity`: unpublish them.
    fn revoke_external(
        &self,
        network_id: String,
        endpoint_id: String,
    ) -> impl Future<Output = PluginResult<()>> + Send;
}
