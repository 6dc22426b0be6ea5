//! Mesh channels: each router module that talks to its peers over the mesh has its own.

/// IPAM ring gossip, space requests, consensus.
pub const IPAM: u16 = 1;
/// DNS record gossip.
pub const DNS: u16 = 2;
/// Data path: MAC announcements, path heartbeats, sleeve keys.
pub const DATAPATH: u16 = 3;
/// Services: definitions, tasks and their health (`weft_services::CHANNEL`).
pub const SERVICES: u16 = weft_services::CHANNEL;
