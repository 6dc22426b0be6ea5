//! Links: look up, create (bridge, veth, VXLAN), change (up, MTU, master) and delete.

use std::net::Ipv4Addr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{
    BridgeStpState, InfoBridge, InfoData, InfoKind, InfoVeth, InfoVxlan, LinkAttribute, LinkFlags,
    LinkInfo, LinkMessage, State,
};
use netlink_packet_route::RouteNetlinkMessage;

use crate::error::{kernel, Error, Result};
use crate::netns::Netns;
use crate::nl::Handle;

/// Longest interface name the kernel takes (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

/// Checks a name the way the kernel's dev_valid_name does, so bad input fails before any change.
pub fn validate_ifname(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidIfname {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > IFNAME_MAX {
        return bad("it is longer than 15 bytes");
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are reserved");
    }
    if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return bad("it contains '/', ':', whitespace or a control character");
    }
    Ok(())
}

/// What weft needs to know about one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface name.
    pub name: String,
    /// Interface index.
    pub index: u32,
    /// Kind from IFLA_INFO_KIND ("bridge", "veth", "vxlan", "tun", ...), if any.
    pub kind: Option<String>,
    /// MTU.
    pub mtu: u32,
    /// Hardware address (empty for links without one).
    pub mac: Vec<u8>,
    /// Administratively up.
    pub up: bool,
    /// Index of the bridge it is a port of.
    pub master: Option<u32>,
    /// Operational state is UP (carrier and qdisc active: frames sent now leave).
    pub oper_up: bool,
}

impl Link {
    /// This link if it is a `wanted` (`bridge`, `vxlan`, `veth`), else
    /// [`Error::LinkKindMismatch`] saying what it is in `netns`.
    pub fn of_kind(self, wanted: &'static str, netns: &str) -> Result<Link> {
        if self.kind.as_deref() == Some(wanted) {
            return Ok(self);
        }
        Err(Error::LinkKindMismatch {
            name: self.name,
            netns: netns.to_string(),
            kind: self.kind.unwrap_or_else(|| "device".into()),
            wanted,
        })
    }

    fn from_message(m: &LinkMessage) -> Link {
        let mut link = Link {
            name: String::new(),
            index: m.header.index,
            kind: None,
            mtu: 0,
            mac: Vec::new(),
            up: m.header.flags.contains(LinkFlags::Up),
            master: None,
            oper_up: false,
        };
        for a in &m.attributes {
            match a {
                LinkAttribute::IfName(n) => link.name = n.clone(),
                LinkAttribute::Mtu(v) => link.mtu = *v,
                LinkAttribute::Address(a) => link.mac = a.clone(),
                LinkAttribute::Controller(i) => link.master = Some(*i),
                LinkAttribute::OperState(s) => link.oper_up = *s == State::Up,
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        if let LinkInfo::Kind(k) = i {
                            link.kind = Some(k.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }

    /// The MAC as a 6-byte array, if it is an Ethernet address.
    pub fn mac6(&self) -> Option<[u8; 6]> {
        self.mac.as_slice().try_into().ok()
    }
}

/// Looks a link up by name; `None` if there is no such link.
pub fn get(h: &mut Handle, name: &str) -> Result<Option<Link>> {
    validate_ifname(name)?;
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.to_string()));
    match h.get(RouteNetlinkMessage::GetLink(m)) {
        Ok(msgs) => Ok(msgs.iter().find_map(|r| match r {
            RouteNetlinkMessage::NewLink(l) => Some(Link::from_message(l)),
            _ => None,
        })),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(kernel(format!("look up link {name} in {}", h.what))(e)),
    }
}

/// Looks a link up by name and fails with `LinkNotFound` if it is missing.
pub fn require(h: &mut Handle, name: &str) -> Result<Link> {
    get(h, name)?.ok_or_else(|| Error::LinkNotFound {
        name: name.to_string(),
        netns: h.what.clone(),
    })
}

/// Lists every link in the handle's namespace.
pub fn list(h: &mut Handle) -> Result<Vec<Link>> {
    let msgs = h
        .dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))
        .map_err(kernel(format!("list links in {}", h.what)))?;
    Ok(msgs
        .iter()
        .filter_map(|r| match r {
            RouteNetlinkMessage::NewLink(l) => Some(Link::from_message(l)),
            _ => None,
        })
        .collect())
}

/// Builds the RTM_NEWLINK that creates a bridge (STP off, optional fixed MAC).
pub(crate) fn bridge_message(name: &str, mtu: u32, mac: Option<[u8; 6]>) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.to_string()));
    m.attributes.push(LinkAttribute::Mtu(mtu));
    if let Some(mac) = mac {
        m.attributes.push(LinkAttribute::Address(mac.to_vec()));
    }
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Bridge),
        LinkInfo::Data(InfoData::Bridge(vec![InfoBridge::StpState(
            BridgeStpState::Disabled,
        )])),
    ]));
    m
}

/// The link `name`, which must be a bridge (a clear error names what it is instead).
pub fn require_bridge(h: &mut Handle, name: &str) -> Result<Link> {
    let br = require(h, name)?;
    br.of_kind("bridge", &h.what)
}

/// Creates a bridge (fails with EEXIST if the name is taken).
pub fn create_bridge(h: &mut Handle, name: &str, mtu: u32, mac: Option<[u8; 6]>) -> Result<()> {
    validate_ifname(name)?;
    let m = bridge_message(name, mtu, mac);
    h.ack(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)
        .map_err(kernel(format!("create bridge {name} in {}", h.what)))
}

/// Creates a veth pair; the peer is created directly inside `peer_ns` when given.
pub fn create_veth(
    h: &mut Handle,
    name: &str,
    peer: &str,
    peer_ns: Option<&Netns>,
    mtu: u32,
) -> Result<()> {
    validate_ifname(name)?;
    validate_ifname(peer)?;
    let mut pm = LinkMessage::default();
    pm.attributes.push(LinkAttribute::IfName(peer.to_string()));
    pm.attributes.push(LinkAttribute::Mtu(mtu));
    if let Some(ns) = peer_ns {
        pm.attributes.push(LinkAttribute::NetNsFd(ns.raw_fd()));
    }
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.to_string()));
    m.attributes.push(LinkAttribute::Mtu(mtu));
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(pm))),
    ]));
    let where_ = peer_ns
        .map(|n| n.describe().to_string())
        .unwrap_or_default();
    h.ack(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)
        .map_err(kernel(format!(
            "create veth {name} in {} with peer {peer} in {where_}",
            h.what
        )))
}

/// Settings of the VXLAN device weft uses for fastdp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanSpec {
    /// Device name, e.g. `vxlan-6784`.
    pub name: String,
    /// VXLAN network identifier (24 bits).
    pub vni: u32,
    /// UDP destination (and listening) port.
    pub port: u16,
    /// Source address of encapsulated packets; the kernel picks one when `None`.
    pub local: Option<Ipv4Addr>,
    /// Device MTU (the overlay MTU).
    pub mtu: u32,
}

/// Builds the RTM_NEWLINK that creates the VXLAN device (no learning: the router programs the FDB).
pub(crate) fn vxlan_message(spec: &VxlanSpec) -> LinkMessage {
    let mut data = vec![
        InfoVxlan::Id(spec.vni),
        InfoVxlan::Port(spec.port),
        InfoVxlan::Learning(false),
    ];
    if let Some(local) = spec.local {
        data.push(InfoVxlan::Local(local));
    }
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(spec.name.clone()));
    m.attributes.push(LinkAttribute::Mtu(spec.mtu));
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Vxlan),
        LinkInfo::Data(InfoData::Vxlan(data)),
    ]));
    m
}

/// Creates the VXLAN device.
pub fn create_vxlan(h: &mut Handle, spec: &VxlanSpec) -> Result<()> {
    validate_ifname(&spec.name)?;
    if spec.vni >= 1 << 24 {
        return Err(Error::InvalidParameter {
            what: "VNI",
            value: spec.vni.to_string(),
            reason: "a VXLAN network identifier has 24 bits",
        });
    }
    h.ack(
        RouteNetlinkMessage::NewLink(vxlan_message(spec)),
        NLM_F_CREATE | NLM_F_EXCL,
    )
    .map_err(kernel(format!(
        "create vxlan {} (vni {:#x}, port {}) in {}",
        spec.name, spec.vni, spec.port, h.what
    )))
}

/// Changes of one link; `None` leaves a property as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkChange {
    /// Bring up (true) or down (false).
    pub up: Option<bool>,
    /// New MTU.
    pub mtu: Option<u32>,
    /// Make it a port of this bridge (index); `Some(0)` detaches it.
    pub master: Option<u32>,
    /// New name.
    pub name: Option<String>,
    /// New MAC address.
    pub mac: Option<[u8; 6]>,
}

/// Applies a change to the link with this index.
pub fn set(h: &mut Handle, index: u32, change: &LinkChange) -> Result<()> {
    let mut m = LinkMessage::default();
    m.header.index = index;
    if let Some(up) = change.up {
        m.header.change_mask = LinkFlags::Up;
        if up {
            m.header.flags = LinkFlags::Up;
        }
    }
    if let Some(mtu) = change.mtu {
        m.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(master) = change.master {
        m.attributes.push(LinkAttribute::Controller(master));
    }
    if let Some(name) = &change.name {
        validate_ifname(name)?;
        m.attributes.push(LinkAttribute::IfName(name.clone()));
    }
    if let Some(mac) = change.mac {
        m.attributes.push(LinkAttribute::Address(mac.to_vec()));
    }
    h.ack(RouteNetlinkMessage::NewLink(m), 0)
        .map_err(kernel(format!(
            "change link #{index} ({change:?}) in {}",
            h.what
        )))
}

/// Waits (polling, at most `limit`) until link `name` is operationally up; returns
/// whether it got there. The kernel activates a link's queue asynchronously after
/// carrier comes up (linkwatch), and frames sent before that are dropped.
pub fn wait_oper_up(h: &mut Handle, name: &str, limit: std::time::Duration) -> Result<bool> {
    let start = std::time::Instant::now();
    loop {
        if require(h, name)?.oper_up {
            return Ok(true);
        }
        if start.elapsed() >= limit {
            return Ok(false);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Deletes the link with this index (a veth takes its peer with it).
pub fn delete(h: &mut Handle, index: u32) -> Result<()> {
    let mut m = LinkMessage::default();
    m.header.index = index;
    h.ack(RouteNetlinkMessage::DelLink(m), 0)
        .map_err(kernel(format!("delete link #{index} in {}", h.what)))
}

/// Deletes a link by name; returns false if it did not exist.
pub fn delete_by_name(h: &mut Handle, name: &str) -> Result<bool> {
    match get(h, name)? {
        Some(l) => match delete(h, l.index) {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        },
        None => Ok(false),
    }
}
