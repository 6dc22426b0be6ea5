//! The node list as the Kubernetes API answers `GET /api/v1/nodes`, reduced to what weft
//! reads: each node's name, its addresses, and whether it is being deleted. Every other
//! field of the (large) answer is skipped while parsing.

use std::net::IpAddr;

use serde::Deserialize;

use crate::error::KubeError;

/// One node: its name, its underlay addresses, and whether its deletion has begun.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `metadata.name`.
    pub name: String,
    /// `status.addresses` of type `InternalIP`, in the API's order.
    pub internal_ips: Vec<IpAddr>,
    /// `status.addresses` of type `ExternalIP` (used only when a node has no internal one).
    pub external_ips: Vec<IpAddr>,
    /// `metadata.deletionTimestamp` is set: the node is on its way out (finalizers run).
    pub deleting: bool,
}

impl Node {
    /// The address to dial this node's router on: its first internal IPv4 address, else its
    /// first internal address, else the same among its external ones.
    pub fn dial_addr(&self) -> Option<IpAddr> {
        let v4 = |ips: &[IpAddr]| ips.iter().copied().find(IpAddr::is_ipv4);
        v4(&self.internal_ips)
            .or_else(|| self.internal_ips.first().copied())
            .or_else(|| v4(&self.external_ips))
            .or_else(|| self.external_ips.first().copied())
    }
}

/// The nodes of one answer, sorted by name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeList {
    /// `metadata.resourceVersion` of the list (empty when absent).
    pub resource_version: String,
    /// The nodes, sorted by name, each name once.
    pub nodes: Vec<Node>,
}

impl NodeList {
    /// Parses the JSON body of `GET /api/v1/nodes`. Addresses that are not IP addresses are
    /// skipped (the API also lists `Hostname` entries); a body that is not a `NodeList` is an
    /// error that says what it was.
    pub fn parse(body: &[u8]) -> Result<NodeList, KubeError> {
        let raw: RawList = serde_json::from_slice(body)
            .map_err(|e| KubeError::BadNodeList { why: e.to_string() })?;
        if let Some(kind) = raw.kind.as_deref() {
            if kind != "NodeList" {
                return Err(KubeError::BadNodeList {
                    why: format!("the answer is a {kind}, not a NodeList"),
                });
            }
        }
        let items = raw.items.ok_or_else(|| KubeError::BadNodeList {
            why: "the answer has no items".to_string(),
        })?;
        let mut nodes = Vec::with_capacity(items.len());
        for item in items {
            let name = item.metadata.name.unwrap_or_default();
            if name.is_empty() {
                return Err(KubeError::BadNodeList {
                    why: "a node has no metadata.name".to_string(),
                });
            }
            let addrs = item.status.and_then(|s| s.addresses).unwrap_or_default();
            let of_type = |t: &str| -> Vec<IpAddr> {
                addrs
                    .iter()
                    .filter(|a| a.kind == t)
                    .filter_map(|a| a.address.parse().ok())
                    .collect()
            };
            nodes.push(Node {
                internal_ips: of_type("InternalIP"),
                external_ips: of_type("ExternalIP"),
                deleting: item.metadata.deletion_timestamp.is_some(),
                name,
            });
        }
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(w) = nodes.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(KubeError::BadNodeList {
                why: format!("node {} is listed twice", w[0].name),
            });
        }
        Ok(NodeList {
            resource_version: raw
                .metadata
                .and_then(|m| m.resource_version)
                .unwrap_or_default(),
            nodes,
        })
    }

    /// The node called `name`.
    pub fn get(&self, name: &str) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }
}

#[derive(Deserialize)]
struct RawList {
    kind: Option<String>,
    metadata: Option<RawListMeta>,
    items: Option<Vec<RawNode>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawListMeta {
    resource_version: Option<String>,
}

#[derive(Deserialize)]
struct RawNode {
    metadata: RawMeta,
    status: Option<RawStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMeta {
    name: Option<String>,
    deletion_timestamp: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct RawStatus {
    addresses: Option<Vec<RawAddress>>,
}

#[derive(Deserialize)]
struct RawAddress {
    #[serde(rename = "type")]
    kind: String,
    address: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_addresses_and_deletion() {
        let body = br#"{"kind":"NodeList","apiVersion":"v1","metadata":{"resourceVersion":"42"},
          "items":[
            {"metadata":{"name":"b","deletionTimestamp":"2026-12-03T04:00:00Z"},
             "status":{"addresses":[{"type":"Hostname","address":"b"},{"type":"InternalIP","address":"fd00::2"},{"type":"InternalIP","address":"10.0.0.2"}]}},
            {"metadata":{"name":"a"},"status":{"addresses":[{"type":"ExternalIP","address":"1.2.3.4"}]}},
            {"metadata":{"name":"c"}}
          ]}"#;
        let l = NodeList::parse(body).unwrap();
        assert_eq!(l.resource_version, "42");
        let names: Vec<_> = l.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert!(l.get("b").unwrap().deleting);
        assert_eq!(
            l.get("b").unwrap().dial_addr(),
            Some("10.0.0.2".parse().unwrap())
        );
        assert_eq!(
            l.get("a").unwrap().dial_addr(),
            Some("1.2.3.4".parse().unwrap())
        );
        assert_eq!(l.get("c").unwrap().dial_addr(), None);
        assert!(l.get("d").is_none());
    }

    #[test]
    fn refuses_what_is_not_a_node_list() {
        let status = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"nodes is forbidden","code":403}"#;
        let e = NodeList::parse(status).unwrap_err().to_string();
        assert!(e.contains("Status"), "{e}");
        assert!(NodeList::parse(b"").is_err());
        assert!(NodeList::parse(b"[]").is_err());
        assert!(NodeList::parse(br#"{"items":[{"metadata":{}}]}"#).is_err());
        let twice = br#"{"items":[{"metadata":{"name":"a"}},{"metadata":{"name":"a"}}]}"#;
        assert!(NodeList::parse(twice)
            .unwrap_err()
            .to_string()
            .contains("twice"));
    }
}
