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
            nodes.push(item.into_node()?);
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

/// One change from a watch of the nodes (`GET /api/v1/nodes?watch=1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// A node was added or changed.
    Upsert(Node),
    /// A node was deleted from the API.
    Delete(String),
    /// Nothing changed; the watch has reached this version.
    Bookmark,
    /// The version the watch started from is too old (410 Gone): list again.
    Expired,
}

impl NodeEvent {
    /// Parses one line of a watch stream: `{"type": ..., "object": ...}`. Returns the event
    /// and the object's `metadata.resourceVersion` (empty when absent).
    pub fn parse(line: &[u8]) -> Result<(NodeEvent, String), KubeError> {
        let bad = |why: String| KubeError::BadNodeList { why };
        let raw: RawEvent =
            serde_json::from_slice(line).map_err(|e| bad(format!("watch event: {e}")))?;
        if raw.kind == "ERROR" {
            let status: RawStatusObject =
                serde_json::from_value(raw.object).map_err(|e| bad(format!("watch error: {e}")))?;
            if status.code == Some(410) {
                return Ok((NodeEvent::Expired, String::new()));
            }
            return Err(bad(format!(
                "the watch ended with an error: {}",
                status.message.unwrap_or_default()
            )));
        }
        let node: RawNode =
            serde_json::from_value(raw.object).map_err(|e| bad(format!("watch event: {e}")))?;
        let version = node.metadata.resource_version.clone().unwrap_or_default();
        let event = match raw.kind.as_str() {
            "ADDED" | "MODIFIED" => NodeEvent::Upsert(node.into_node()?),
            "DELETED" => NodeEvent::Delete(node.into_node()?.name),
            "BOOKMARK" => NodeEvent::Bookmark,
            other => return Err(bad(format!("unknown watch event type {other:?}"))),
        };
        Ok((event, version))
    }
}

impl NodeList {
    /// Applies a watch event (with the version it carried); returns whether a node's name,
    /// addresses or deletion changed (what the peers core reads).
    pub fn apply(&mut self, event: NodeEvent, version: String) -> bool {
        if !version.is_empty() {
            self.resource_version = version;
        }
        let at = |nodes: &[Node], name: &str| nodes.binary_search_by(|n| n.name.as_str().cmp(name));
        match event {
            NodeEvent::Upsert(node) => match at(&self.nodes, &node.name) {
                Ok(i) if self.nodes[i] == node => false,
                Ok(i) => {
                    self.nodes[i] = node;
                    true
                }
                Err(i) => {
                    self.nodes.insert(i, node);
                    true
                }
            },
            NodeEvent::Delete(name) => match at(&self.nodes, &name) {
                Ok(i) => {
                    self.nodes.remove(i);
                    true
                }
                Err(_) => false,
            },
            NodeEvent::Bookmark | NodeEvent::Expired => false,
        }
    }
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(rename = "type")]
    kind: String,
    object: serde_json::Value,
}

#[derive(Deserialize)]
struct RawStatusObject {
    code: Option<u16>,
    message: Option<String>,
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

impl RawNode {
    fn into_node(self) -> Result<Node, KubeError> {
        let name = self.metadata.name.unwrap_or_default();
        if name.is_empty() {
            return Err(KubeError::BadNodeList {
                why: "a node has no metadata.name".to_string(),
            });
        }
        let addrs = self.status.and_then(|s| s.addresses).unwrap_or_default();
        let of_type = |t: &str| -> Vec<IpAddr> {
            addrs
                .iter()
                .filter(|a| a.kind == t)
                .filter_map(|a| a.address.parse().ok())
                .collect()
        };
        Ok(Node {
            internal_ips: of_type("InternalIP"),
            external_ips: of_type("ExternalIP"),
            deleting: self.metadata.deletion_timestamp.is_some(),
            name,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMeta {
    name: Option<String>,
    resource_version: Option<String>,
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
    fn watch_events_change_the_list() {
        let mut l = NodeList::parse(br#"{"kind":"NodeList","metadata":{"resourceVersion":"1"},"items":[{"metadata":{"name":"a"}}]}"#).unwrap();
        let ev = |s: &str| NodeEvent::parse(s.as_bytes()).unwrap();
        let (e, v) = ev(
            r#"{"type":"ADDED","object":{"kind":"Node","metadata":{"name":"b","resourceVersion":"5"},"status":{"addresses":[{"type":"InternalIP","address":"10.0.0.2"}]}}}"#,
        );
        assert_eq!(v, "5");
        assert!(l.apply(e, v));
        assert_eq!(l.resource_version, "5");
        assert_eq!(l.nodes.len(), 2);
        // A heartbeat-only change does not count; an address change does.
        let (e, v) = ev(
            r#"{"type":"MODIFIED","object":{"metadata":{"name":"b","resourceVersion":"6"},"status":{"addresses":[{"type":"InternalIP","address":"10.0.0.2"}],"conditions":[]}}}"#,
        );
        assert!(!l.apply(e, v));
        assert_eq!(l.resource_version, "6");
        let (e, v) = ev(
            r#"{"type":"MODIFIED","object":{"metadata":{"name":"b","resourceVersion":"7"},"status":{"addresses":[{"type":"InternalIP","address":"10.0.0.3"}]}}}"#,
        );
        assert!(l.apply(e, v));
        let (e, v) = ev(
            r#"{"type":"BOOKMARK","object":{"kind":"Node","metadata":{"resourceVersion":"9"}}}"#,
        );
        assert_eq!(e, NodeEvent::Bookmark);
        assert!(!l.apply(e, v));
        assert_eq!(l.resource_version, "9");
        let (e, v) =
            ev(r#"{"type":"DELETED","object":{"metadata":{"name":"a","resourceVersion":"10"}}}"#);
        assert!(l.apply(e, v));
        assert_eq!(
            l.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
            ["b"]
        );
        let (e, _) = ev(
            r#"{"type":"ERROR","object":{"kind":"Status","code":410,"message":"too old resource version"}}"#,
        );
        assert_eq!(e, NodeEvent::Expired);
        assert!(NodeEvent::parse(
            br#"{"type":"ERROR","object":{"kind":"Status","code":500,"message":"boom"}}"#
        )
        .unwrap_err()
        .to_string()
        .contains("boom"));
        assert!(
            NodeEvent::parse(br#"{"type":"WHAT","object":{"metadata":{"name":"a"}}}"#).is_err()
        );
        assert!(NodeEvent::parse(b"{").is_err());
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
