//! Request and response types of the router's CNI routes (`/cni/...`), which the `weft`
//! binary calls when a runtime runs it as a CNI plugin.

use serde::{Deserialize, Serialize};

/// Which attachment: a network, a container and its interface (the CNI spec's key).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct CniKey {
    /// The network's name (the conflist's `name`).
    pub network: String,
    /// CNI_CONTAINERID.
    pub container_id: String,
    /// CNI_IFNAME.
    pub ifname: String,
}

/// Body of `POST /cni/add`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CniAddRequest {
    /// The attachment.
    pub key: CniKey,
    /// CNI_NETNS.
    pub netns: String,
    /// Tenant subnet (CIDR) from the configuration; none = the default subnet.
    #[serde(default)]
    pub subnet: Option<String>,
    /// Fixed addresses (`A.B.C.D` or `A.B.C.D/P`).
    #[serde(default)]
    pub ips: Vec<String>,
    /// DNS name to register.
    #[serde(default)]
    pub hostname: Option<String>,
}

/// DNS settings handed to the container.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CniDns {
    /// Name servers (weft's, inside the container's namespace).
    pub nameservers: Vec<String>,
    /// weft's domain.
    pub domain: Option<String>,
    /// Search domains.
    pub search: Vec<String>,
}

/// An attachment as the router keeps it (the answer to ADD).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CniAttachment {
    /// The attachment.
    pub key: CniKey,
    /// CNI_NETNS.
    pub netns: String,
    /// weft's container id (the IPAM owner, as `weft ps` lists it).
    pub id: String,
    /// Host side of the veth.
    pub host_ifname: String,
    /// Its MAC.
    pub host_mac: String,
    /// The container's interface MAC.
    pub mac: String,
    /// Addresses, as CIDRs.
    pub addrs: Vec<String>,
    /// The default gateway (the host's exposed address in the subnet), if any.
    pub gateway: Option<String>,
    /// DNS settings.
    pub dns: CniDns,
}

/// Body of `POST /cni/del`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CniDelRequest {
    /// The attachment.
    pub key: CniKey,
    /// CNI_NETNS, when the runtime still has it.
    #[serde(default)]
    pub netns: Option<String>,
}

/// Body of `POST /cni/check`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CniCheckRequest {
    /// The attachment.
    pub key: CniKey,
    /// CNI_NETNS.
    pub netns: String,
    /// The addresses the prevResult gives the interface, as CIDRs.
    pub addrs: Vec<String>,
}

/// Body of `POST /cni/gc`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CniGcRequest {
    /// The network.
    pub network: String,
    /// Its attachments to keep (container id, interface); every other one goes.
    pub valid: Vec<(String, String)>,
}

/// Answer to `POST /cni/gc`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CniGcResponse {
    /// The attachments released.
    pub released: Vec<CniKey>,
}

/// Answer to `GET /cni/status` when the router can take ADDs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CniStatus {
    /// IPAM's state in one line.
    pub ipam: String,
}
