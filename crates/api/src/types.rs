//! JSON bodies of the router's HTTP API. `weft report` prints [`Report`] as it is.

use serde::{Deserialize, Serialize};

/// Everything `weft report` shows; `weft status` renders it as text.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Report {
    /// weft version of the router.
    pub version: String,
    /// The mesh router: identity, peers, connections.
    pub router: RouterReport,
    /// Address management, once the router has it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ipam: Option<IpamReport>,
    /// The embedded DNS, unless launched with `--no-dns`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dns: Option<DnsReport>,
    /// The Docker integration, when the router found Docker.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub docker: Option<DockerReport>,
    /// Every service of the cluster, sorted by name (`weft service ls`).
    #[serde(default)]
    pub services: Vec<crate::ServiceInfo>,
}

/// The Docker section of a report.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct DockerReport {
    /// dockerd's socket.
    pub docker_socket: String,
    /// The network/IPAM plugin's socket.
    pub plugin_socket: String,
    /// The API proxy's socket (`weft env`).
    pub proxy_socket: String,
    /// Docker networks of driver weft known to the plugin.
    pub networks: usize,
    /// Container endpoints on them on this host.
    pub endpoints: usize,
}

/// The router section of a report.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct RouterReport {
    /// Unique peer name (persisted in the state dir).
    pub name: String,
    /// Human-friendly name, by default the hostname.
    pub nickname: String,
    /// TCP/UDP port of the control plane and sleeve.
    pub port: u16,
    /// Lowest and highest wire protocol versions spoken.
    pub protocol_min_version: u8,
    /// Highest wire protocol version spoken.
    pub protocol_max_version: u8,
    /// Whether a password is set (control plane and sleeve encrypted with it).
    pub encryption: bool,
    /// Whether peers' addresses learned from gossip are dialled.
    pub peer_discovery: bool,
    /// Subnets whose peers are trusted with unencrypted data.
    pub trusted_subnets: Vec<String>,
    /// Maximum number of connections.
    pub conn_limit: u32,
    /// Overlay MTU if fixed with `--mtu`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mtu: Option<u32>,
    /// Every peer known in the topology (this one included).
    pub peers: Vec<PeerReport>,
    /// This router's connections, established or not.
    pub connections: Vec<ConnectionReport>,
    /// Addresses this router dials (given on launch/connect, and discovered).
    pub targets: Vec<TargetReport>,
}

/// One peer of the topology.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct PeerReport {
    /// Unique name.
    pub name: String,
    /// Nickname.
    pub nickname: String,
    /// The peers this one has established connections to.
    pub connections: Vec<PeerConnectionReport>,
}

/// An edge of the topology as seen in gossip.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct PeerConnectionReport {
    /// Name of the remote peer.
    pub name: String,
    /// Nickname of the remote peer.
    pub nickname: String,
    /// Underlay address of the connection.
    pub address: String,
    /// Whether this side dialled.
    pub outbound: bool,
    /// Whether both sides report the connection.
    pub established: bool,
}

/// One connection of this router, as in `weft status connections`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ConnectionReport {
    /// Remote address `IP:PORT`.
    pub address: String,
    /// `->` for outbound, `<-` for inbound.
    pub outbound: bool,
    /// `pending`, `connecting`, `established`, `failed`, `retrying`.
    pub state: String,
    /// Datapath in use: `fastdp`, `sleeve`, `sleeve via NAME`, or empty while unknown.
    pub path: String,
    /// Whether traffic on that path is sealed (the sleeve with a password; fastdp never).
    #[serde(default)]
    pub encrypted: bool,
    /// The sleeve cipher sealing it (`aes-256-gcm`, `chacha20-poly1305`), when encrypted.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cipher: Option<String>,
    /// Remote peer name and nickname, when known.
    pub peer: String,
    /// Overlay MTU on this connection, when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mtu: Option<u32>,
    /// Largest underlay datagram the path carries, as probed (fastdp: the overlay MTU's
    /// datagram once its padded heartbeats answer; sleeve: its path-MTU search).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pmtu: Option<u32>,
    /// Why a failed connection failed, or other detail.
    pub info: String,
}

/// An address this router tries to keep a connection to.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct TargetReport {
    /// `HOST[:PORT]` as given.
    pub address: String,
    /// Whether it was given by the user (not discovered).
    pub explicit: bool,
    /// Current state: `connected`, `connecting`, `waiting`.
    pub state: String,
    /// Last error, if any.
    pub last_error: String,
}

/// The IPAM section of a report.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct IpamReport {
    /// What IPAM is doing or waiting for (`idle`, `ready`, `awaiting consensus`...).
    pub status: String,
    /// The allocation range.
    pub range: String,
    /// The default subnet.
    pub default_subnet: String,
    /// Each peer's share of the range.
    pub entries: Vec<IpamEntry>,
}

/// One peer's share of the address range.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct IpamEntry {
    /// Peer name.
    pub peer: String,
    /// Peer nickname.
    pub nickname: String,
    /// Addresses owned.
    pub size: u64,
    /// Addresses owned that are free.
    pub free: u64,
    /// Whether the peer is reachable.
    pub reachable: bool,
}

/// The DNS section of a report.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct DnsReport {
    /// The domain answered locally.
    pub domain: String,
    /// Where queries are answered.
    pub address: String,
    /// Upstream servers for other names.
    pub upstream: Vec<String>,
    /// TTL of answers, seconds.
    pub ttl: u32,
    /// Every record known.
    pub entries: Vec<DnsEntry>,
}

/// One name-to-address record.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct DnsEntry {
    /// Fully qualified name.
    pub hostname: String,
    /// Address.
    pub address: String,
    /// Peer that owns the record.
    pub origin: String,
    /// Container id or name it belongs to.
    pub container: String,
}

/// Body of `POST /connect`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConnectRequest {
    /// `HOST[:PORT]` targets.
    pub peers: Vec<String>,
    /// Replace the current explicit targets instead of adding.
    pub replace: bool,
}

/// Body of `POST /forget`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ForgetRequest {
    /// `HOST[:PORT]` targets to stop dialling.
    pub peers: Vec<String>,
}

/// Error body the API returns with a non-2xx status.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// One line: what failed, why, what to do.
    pub error: String,
}

/// Body of `POST /attach`: put a container on the overlay.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AttachRequest {
    /// Path of the container's network namespace (`/run/netns/X`, `/proc/PID/ns/net`).
    pub netns: String,
    /// Address forms: `net:default`, `net:CIDR`, `ip:CIDR`, `CIDR`; none = the default subnet.
    pub addrs: Vec<String>,
    /// Interface name inside the container.
    pub ifname: String,
    /// Name to register in DNS.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Do not register the hostname in DNS.
    #[serde(default)]
    pub without_dns: bool,
    /// Container id (Docker's); default: derived from the namespace.
    #[serde(default)]
    pub container: Option<String>,
    /// Services the container joins as a task (`--service NAME`, repeatable).
    #[serde(default)]
    pub services: Vec<String>,
}

/// Answer to `POST /attach`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AttachResponse {
    /// The container's id in weft (IPAM owner, key of `weft ps`).
    pub container: String,
    /// Every address the container now has on the overlay, as CIDRs.
    pub addrs: Vec<String>,
}

/// Body of `POST /detach`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DetachRequest {
    /// Path of the container's network namespace; empty when `container` names it.
    pub netns: String,
    /// Address forms to remove; none = all of them.
    pub addrs: Vec<String>,
    /// Container id, when known.
    #[serde(default)]
    pub container: Option<String>,
}

/// Answer to `POST /detach`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DetachResponse {
    /// Addresses removed, as CIDRs.
    pub removed: Vec<String>,
}

/// One attached container, as `weft ps` lists it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerReport {
    /// weft's id of the container.
    pub id: String,
    /// Its network namespace path.
    pub netns: String,
    /// Interface inside it.
    pub ifname: String,
    /// MAC of that interface.
    pub mac: String,
    /// Overlay addresses, as CIDRs.
    pub addrs: Vec<String>,
    /// DNS name, if registered.
    #[serde(default)]
    pub hostname: Option<String>,
}

/// Body of `POST /expose`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ExposeRequest {
    /// Addresses (`net:default`, `net:CIDR`, `ip:CIDR`, `CIDR`); none means `net:default`.
    pub addrs: Vec<String>,
    /// Do not masquerade.
    pub without_masquerade: bool,
}

/// Body of `POST /hide`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct HideRequest {
    /// Addresses to take away; none means all.
    pub addrs: Vec<String>,
}

/// Body of `POST /reset`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ResetRequest {
    /// Skip handing the address space to other peers.
    pub force: bool,
}

/// Answer to `POST /expose` and `POST /hide`: the addresses acted on.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AddrsResponse {
    /// CIDRs.
    pub addrs: Vec<String>,
}

/// Body of `POST /dns/add` and `POST /dns/remove`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct DnsEditRequest {
    /// A container as `weft ps` lists it (id, or its hostname / short name).
    pub container: Option<String>,
    /// Addresses (`10.32.0.1` or `10.32.0.1/12`); none = the container's.
    pub ips: Vec<String>,
    /// Fully qualified name; none = the container's registered hostname.
    pub fqdn: Option<String>,
}

/// Answer to `POST /dns/add` and `POST /dns/remove`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DnsEditResponse {
    /// How many records were added or removed.
    pub count: usize,
}

/// Query of `GET /dns/lookup?name=`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DnsLookupQuery {
    /// The name to resolve.
    pub name: String,
}

/// Body of `POST /ipam/allocate`: an address for `owner`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AllocateRequest {
    /// Container (or endpoint) id.
    pub owner: String,
    /// `net:default`, `net:CIDR`, `ip:CIDR` or `CIDR`; the default subnet when absent.
    #[serde(default)]
    pub addr: Option<String>,
}

/// Body of `POST /ipam/claim`: exactly this address for `owner`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClaimRequest {
    /// Container id.
    pub owner: String,
    /// The address with its subnet's prefix, e.g. `10.32.0.9/12`.
    pub addr: String,
}

/// Body of `POST /ipam/release`: one address of `owner`, or all of them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReleaseRequest {
    /// Container id.
    pub owner: String,
    /// The address (with or without prefix); all of `owner`'s when absent.
    #[serde(default)]
    pub addr: Option<String>,
}

/// Query of `GET /ipam/lookup?owner=`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct OwnerQuery {
    /// Container id.
    pub owner: String,
}

/// Body of `POST /ipam/rmpeer`: take over the space of dead peers.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RmPeerRequest {
    /// Peer names.
    pub names: Vec<String>,
}

/// One entry of the answer to `POST /ipam/rmpeer`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RemovedPeer {
    /// The peer.
    pub name: String,
    /// Addresses now owned by this peer.
    pub addresses: u64,
}

/// Answer to `POST /ipam/allocate` and `POST /ipam/claim`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AddrAnswer {
    /// The address with its subnet's prefix.
    pub addr: String,
}

/// Answer to `GET /ipam/status`: what IPAM does and each peer's share of the range.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct IpamStatus {
    /// This peer.
    pub name: String,
    /// The allocation range, as a CIDR.
    pub range: String,
    /// The default subnet, as a CIDR.
    pub default_subnet: String,
    /// `consensus=N`, `seed=...` or `observer`.
    pub init: String,
    /// What IPAM is doing or waiting for, in one line.
    pub line: String,
    /// Each owner's share, this peer first.
    pub peers: Vec<IpamPeerShare>,
    /// Addresses allocated on this peer.
    pub allocated: u64,
    /// Requests waiting.
    pub pending: usize,
    /// Warnings (incompatible peers, conflicts).
    pub notes: Vec<String>,
    /// Payloads that could not be decoded.
    pub bad_messages: u64,
}

/// One peer's share of the ring, in [`IpamStatus`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct IpamPeerShare {
    /// Peer name.
    pub name: String,
    /// Addresses it owns.
    pub owned: u64,
    /// Share of the range, in percent.
    pub percent: f64,
    /// Free addresses it advertises.
    pub free: u64,
    /// Whether it is reachable from here (always true for this peer).
    pub reachable: bool,
}
