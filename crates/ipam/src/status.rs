//! The IPAM report for `weft status ipam`: a line saying what IPAM waits for, and each
//! peer's share of the range, free space and liveness.

use serde::Serialize;

use crate::addr::{fmt_addr, Cidr};
use crate::allocator::{Allocator, Pending, Want};
use crate::consensus::{quorum, InitMode};

/// One peer's share of the ring.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerShare {
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

/// The IPAM report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// This peer.
    pub name: String,
    /// The allocation range.
    pub range: Cidr,
    /// The default subnet.
    pub default_subnet: Cidr,
    /// `consensus=N`, `seed=...` or `observer`.
    pub init: String,
    /// What IPAM is doing or waiting for, in one line.
    pub line: String,
    /// Each owner's share, this peer first.
    pub peers: Vec<PeerShare>,
    /// Addresses allocated on this peer.
    pub allocated: u64,
    /// Requests waiting.
    pub pending: usize,
    /// Warnings (incompatible peers, conflicts).
    pub notes: Vec<String>,
    /// Payloads that could not be decoded.
    pub bad_messages: u64,
}

impl Allocator {
    /// What a pending request waits for, in words.
    pub(crate) fn waiting_for(&self, p: &Pending) -> String {
        let Some(ring) = &self.ring else {
            return self.init_line();
        };
        match &p.want {
            Want::Prime => "the ring".into(),
            Want::Alloc(subnet) => match self.req.asks.get(&(*subnet, None)) {
                Some(a) => format!("waiting for space in {subnet} from peer {}", a.to),
                None => {
                    let gone: Vec<String> = ring
                        .owners()
                        .into_iter()
                        .filter(|o| *o != self.name && !self.reachable.contains(o))
                        .filter(|o| ring.advertised_free(o, subnet) > 0)
                        .collect();
                    if gone.is_empty() {
                        format!("waiting for space in {subnet}: no reachable peer has free space")
                    } else {
                        format!(
                            "waiting for space in {subnet}: free space is only on unreachable peers {} (weft rmpeer them if they are gone for good)",
                            gone.join(", ")
                        )
                    }
                }
            },
            Want::Claim(c) => {
                let owner = ring.owner_of(c.addr).unwrap_or("nobody");
                if self.reachable.contains(owner) {
                    format!("waiting for {} from peer {owner}", fmt_addr(c.addr))
                } else {
                    format!(
                        "waiting for {}: it belongs to unreachable peer {owner} (weft rmpeer {owner} if it is gone for good)",
                        fmt_addr(c.addr)
                    )
                }
            }
        }
    }

    fn init_line(&self) -> String {
        if !self.init.wanting {
            return "idle: the ring is created on the first allocation or `weft prime`".into();
        }
        match &self.config.init {
            InitMode::Consensus(n) => {
                let peers = self.consensus_peers();
                let proposer = peers.iter().next().cloned().unwrap_or_default();
                let who = if proposer == self.name {
                    "this peer proposes".to_string()
                } else {
                    format!("{proposer} proposes")
                };
                let mut line = format!(
                    "awaiting consensus ({} of {} peers reachable, quorum {}; {who})",
                    peers.len(),
                    n,
                    quorum(*n)
                );
                if peers.len() < quorum(*n) {
                    line.push_str(
                        "; if the missing peers are gone for good, relaunch the others with --ipalloc-init seed=THEIR,NAMES",
                    );
                }
                if peers.len() > *n as usize {
                    line.push_str(&format!(
                        "; WARNING: more consensus peers than consensus={n}: give every peer the same, correct N"
                    ));
                }
                line
            }
            InitMode::Seed(_) => "creating the ring from the seed list".into(),
            InitMode::Observer => {
                "observer: waiting for the ring from another peer (none reachable has one)".into()
            }
        }
    }

    /// The one-line state: "ready", or what IPAM waits for.
    pub fn status_line(&self) -> String {
        if let Some(l) = &self.leave.leaving {
            let w: Vec<String> = l.waiting.iter().cloned().collect();
            return format!(
                "handing space over: waiting for {} to confirm",
                w.join(", ")
            );
        }
        if self.leave.left {
            return "left: this peer handed its space to others".into();
        }
        if self.ring.is_none() {
            return self.init_line();
        }
        let mut line = match self.req.pending.first() {
            Some(p) => format!(
                "{} ({} requests queued)",
                self.waiting_for(p),
                self.req.pending.len()
            ),
            None => "ready".into(),
        };
        for q in &self.leave.quarantines {
            let w: Vec<String> = q.waiting.iter().cloned().collect();
            line.push_str(&format!(
                "; space taken from {} is used once {} sent their rings",
                q.dead,
                w.join(", ")
            ));
        }
        line
    }

    /// The full report.
    pub fn status(&self) -> Status {
        let mut peers = Vec::new();
        if let Some(ring) = &self.ring {
            let size = ring.range().size() as f64;
            let full = Cidr {
                addr: ring.range().network(),
                prefix: ring.range().prefix,
            };
            let mut names = ring.owners();
            names.sort_by_key(|n| (*n != self.name, n.clone()));
            for n in names {
                let owned = ring.owned_count(&n);
                peers.push(PeerShare {
                    reachable: self.reachable.contains(&n),
                    free: ring.advertised_free(&n, &full),
                    percent: (owned as f64) * 100.0 / size,
                    owned,
                    name: n,
                });
            }
        }
        let init = match &self.config.init {
            InitMode::Consensus(n) => format!("consensus={n}"),
            InitMode::Seed(s) => format!("seed={}", s.join(",")),
            InitMode::Observer => "observer".into(),
        };
        Status {
            name: self.name.clone(),
            range: self.config.range,
            default_subnet: self.default_subnet,
            init,
            line: self.status_line(),
            peers,
            allocated: self.space.len() as u64,
            pending: self.req.pending.len(),
            notes: self.notes.values().cloned().collect(),
            bad_messages: self.bad_messages,
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "        Range: {}", self.range)?;
        writeln!(f, "DefaultSubnet: {}", self.default_subnet)?;
        writeln!(f, "         Init: {}", self.init)?;
        writeln!(f, "       Status: {}", self.line)?;
        for p in &self.peers {
            writeln!(
                f,
                "  {:<24} {:>10} IPs ({:5.1}% of total) ({} free) - {}",
                p.name,
                p.owned,
                p.percent,
                p.free,
                if p.name == self.name {
                    "this peer"
                } else if p.reachable {
                    "reachable"
                } else {
                    "unreachable!"
                }
            )?;
        }
        for n in &self.notes {
            writeln!(f, "  note: {n}")?;
        }
        Ok(())
    }
}
