//! Lazy initialisation of the ring: a seed list, or Paxos among the consensus peers.

use std::collections::{BTreeMap, BTreeSet};

use super::{Allocator, Millis};
use crate::consensus::{
    choose_value, consensus_ring, quorum, seed_ring, AcceptorState, Ballot, InitMode, Phase,
    Proposal,
};
use crate::messages::{Message, RingKind};

/// The state of initialising the ring.
#[derive(Debug, Default)]
pub(crate) struct Init {
    pub(crate) acceptor: AcceptorState,
    pub(crate) proposal: Option<Proposal>,
    pub(crate) last_proposal: Option<Millis>,
    pub(crate) max_round: u64,
    /// This peer wants a ring (a request needs one, or a peer asked).
    pub(crate) wanting: bool,
    pub(crate) last_want_sent: Option<Millis>,
    /// Peers that asked for the ring, with their init mode's tag (0: consensus).
    pub(crate) participants: BTreeMap<String, u8>,
}

impl Allocator {
    pub(super) fn send_want(&mut self) {
        self.init.last_want_sent = Some(self.now);
        let mode = self.config.init.tag();
        self.broadcast(Message::Want { mode });
    }

    /// Start lazy initialisation.
    pub(super) fn want_ring(&mut self) {
        if self.ring.is_some() {
            return;
        }
        if let InitMode::Seed(seeds) = &self.config.init {
            self.ring = Some(seed_ring(self.config.range, seeds));
            self.dirty = true;
            self.broadcast_ring();
            return;
        }
        if !self.init.wanting {
            self.init.wanting = true;
            self.send_want();
        }
    }

    /// The consensus peers we know of that are reachable (us included when we take part).
    pub(crate) fn consensus_peers(&self) -> BTreeSet<String> {
        let mut s: BTreeSet<String> = self
            .init
            .participants
            .iter()
            .filter(|(n, tag)| **tag == 0 && self.reachable.contains(*n))
            .map(|(n, _)| n.clone())
            .collect();
        if matches!(self.config.init, InitMode::Consensus(_)) {
            s.insert(self.name.clone());
        }
        s
    }

    pub(super) fn consensus_step(&mut self) {
        let InitMode::Consensus(n) = self.config.init else {
            return;
        };
        if self.ring.is_some() || !self.init.wanting {
            return;
        }
        let q = quorum(n);
        // Advance a running proposal.
        let mut decided = None;
        let mut accept = None;
        if let Some(p) = self.init.proposal.as_mut() {
            match &mut p.phase {
                Phase::Preparing(promises) if promises.len() >= q => {
                    let value = choose_value(promises);
                    let mut acks = BTreeSet::new();
                    if self.init.acceptor.on_accept(&p.ballot, &value).is_ok() {
                        acks.insert(self.name.clone());
                    }
                    accept = Some((p.ballot.clone(), value.clone()));
                    p.phase = Phase::Accepting(value, acks);
                }
                Phase::Accepting(value, acks) if acks.len() >= q => {
                    decided = Some(value.clone());
                }
                _ => {}
            }
        }
        if let Some((ballot, value)) = accept {
            self.dirty = true;
            self.broadcast(Message::Accept { ballot, value });
            // A single-peer quorum decides at once.
            return self.consensus_step();
        }
        if let Some(value) = decided {
            self.ring = Some(consensus_ring(self.config.range, &value));
            self.init.proposal = None;
            self.init.wanting = false;
            self.dirty = true;
            self.broadcast_ring();
            return;
        }
        if self.init.proposal.is_some() {
            return;
        }
        // Only the lowest-named reachable participant proposes; others wait for it.
        let peers = self.consensus_peers();
        if peers.iter().next() != Some(&self.name) {
            return;
        }
        if self
            .init
            .last_proposal
            .is_some_and(|t| self.now.saturating_sub(t) < self.config.retry_ms)
        {
            return;
        }
        let ballot = Ballot {
            round: self.init.max_round + 1,
            proposer: self.name.clone(),
        };
        self.init.max_round = ballot.round;
        self.init.last_proposal = Some(self.now);
        let mut promises = BTreeMap::new();
        if let Ok(acc) = self.init.acceptor.on_prepare(&ballot) {
            promises.insert(self.name.clone(), acc);
        }
        self.dirty = true;
        self.init.proposal = Some(Proposal {
            ballot: ballot.clone(),
            started: self.now,
            phase: Phase::Preparing(promises),
        });
        self.broadcast(Message::Prepare { ballot });
        self.consensus_step();
    }

    /// The phase of our running proposal, if `ballot` is its ballot.
    fn phase_of(&mut self, ballot: &Ballot) -> Option<&mut Phase> {
        self.init
            .proposal
            .as_mut()
            .filter(|p| p.ballot == *ballot)
            .map(|p| &mut p.phase)
    }

    /// Repeat our want, and drop a proposal that took too long.
    pub(super) fn tick_init(&mut self) {
        let now = self.now;
        let retry = self.config.retry_ms;
        if self.ring.is_none() && self.init.wanting {
            if self
                .init
                .last_want_sent
                .is_none_or(|t| now.saturating_sub(t) >= retry)
            {
                self.send_want();
            }
            if let Some(p) = &self.init.proposal {
                if now.saturating_sub(p.started) >= retry {
                    self.init.proposal = None;
                }
            }
        }
    }

    /// A message of initialisation: a want, or a consensus round's.
    pub(super) fn on_consensus(&mut self, from: &str, m: Message) {
        match m {
            Message::Want { mode } => {
                self.init.participants.insert(from.to_string(), mode);
                if self.ring.is_some() {
                    self.send_ring(from, RingKind::Gossip);
                } else if !matches!(self.config.init, InitMode::Observer) {
                    self.want_ring();
                }
            }
            Message::Prepare { ballot } => {
                self.init.participants.insert(from.to_string(), 0);
                self.init.max_round = self.init.max_round.max(ballot.round);
                if self.ring.is_some() {
                    self.send_ring(from, RingKind::Gossip);
                    return;
                }
                if !matches!(self.config.init, InitMode::Consensus(_)) {
                    return;
                }
                self.init.wanting = true;
                match self.init.acceptor.on_prepare(&ballot) {
                    Ok(accepted) => {
                        self.dirty = true;
                        self.send(from, Message::Promise { ballot, accepted });
                    }
                    Err(promised) => self.send(from, Message::Nack { ballot, promised }),
                }
            }
            Message::Accept { ballot, value } => {
                if self.ring.is_some()
                    || value.is_empty()
                    || !matches!(self.config.init, InitMode::Consensus(_))
                {
                    return;
                }
                self.init.max_round = self.init.max_round.max(ballot.round);
                match self.init.acceptor.on_accept(&ballot, &value) {
                    Ok(()) => {
                        self.dirty = true;
                        self.send(from, Message::Accepted { ballot });
                    }
                    Err(promised) => self.send(from, Message::Nack { ballot, promised }),
                }
            }
            Message::Promise { ballot, accepted } => {
                if let Some(Phase::Preparing(promises)) = self.phase_of(&ballot) {
                    promises.insert(from.to_string(), accepted);
                }
                self.consensus_step();
            }
            Message::Accepted { ballot } => {
                if let Some(Phase::Accepting(_, acks)) = self.phase_of(&ballot) {
                    acks.insert(from.to_string());
                }
                self.consensus_step();
            }
            Message::Nack { ballot, promised } => {
                self.init.max_round = self.init.max_round.max(promised.round);
                if self
                    .init
                    .proposal
                    .as_ref()
                    .is_some_and(|p| p.ballot == ballot)
                {
                    self.init.proposal = None;
                }
            }
            // Space and ring messages are dispatched elsewhere.
            _ => {}
        }
    }
}
