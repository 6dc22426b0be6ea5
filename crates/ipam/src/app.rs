//! IPAM on the mesh: the [`Allocator`] behind the mesh-application trait
//! ([`weft_mesh::MeshApp`]). Payloads on its channel and topology changes go in, ticks
//! every [`TICK_MS`]; sends come out as [`Transmit`]s, persists and replies as
//! [`IpamEffect`]s, in the order the allocator returned them. Local requests (allocate,
//! claim, `Persisted` acknowledgements ...) go in through [`IpamApp::request`].

use std::collections::{BTreeSet, VecDeque};

use weft_mesh::{MeshApp, Millis, TopologyView, Transmit};

use crate::allocator::{Action, Allocator, Event, IpamEffect};

/// How often the allocator's timers run.
pub const TICK_MS: Millis = 500;

/// The allocator as a mesh application on one channel.
#[derive(Debug)]
pub struct IpamApp {
    core: Allocator,
    channel: u16,
    tick_ms: Millis,
    next_tick: Millis,
    reachable: Option<BTreeSet<String>>,
    transmits: VecDeque<Transmit>,
    effects: VecDeque<IpamEffect>,
}

impl IpamApp {
    /// Runs `core` on mesh channel `channel`, ticking every [`TICK_MS`].
    pub fn new(core: Allocator, channel: u16) -> IpamApp {
        IpamApp::with_tick(core, channel, TICK_MS)
    }

    /// Like [`IpamApp::new`] with another tick period.
    pub fn with_tick(mut core: Allocator, channel: u16, tick_ms: Millis) -> IpamApp {
        core.set_channel(channel);
        IpamApp {
            core,
            channel,
            tick_ms: tick_ms.max(1),
            next_tick: 0,
            reachable: None,
            transmits: VecDeque::new(),
            effects: VecDeque::new(),
        }
    }

    /// The allocator (status, ring, allocations).
    pub fn allocator(&self) -> &Allocator {
        &self.core
    }

    /// A local input: a request from the API, or a `Persisted` acknowledgement.
    pub fn request(&mut self, now: Millis, event: Event) {
        let actions = self.core.handle(now, event);
        for a in actions {
            match a {
                Action::Transmit(t) => self.transmits.push_back(t),
                Action::Effect(e) => self.effects.push_back(e),
            }
        }
    }
}

impl MeshApp for IpamApp {
    type Effect = IpamEffect;

    fn handle_message(&mut self, now: Millis, channel: u16, from: &str, payload: &[u8]) {
        if channel == self.channel {
            let event = Event::Received {
                from: from.to_string(),
                payload: payload.to_vec(),
            };
            self.request(now, event);
        }
    }

    fn handle_topology(&mut self, now: Millis, topology: &TopologyView) {
        let reachable: BTreeSet<String> = topology.names().map(String::from).collect();
        if self.reachable.as_ref() == Some(&reachable) {
            return;
        }
        self.reachable = Some(reachable.clone());
        self.request(now, Event::PeersChanged { reachable });
    }

    fn handle_timeout(&mut self, now: Millis) {
        if now >= self.next_tick {
            self.next_tick = now + self.tick_ms;
            self.request(now, Event::Tick);
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn poll_effect(&mut self) -> Option<IpamEffect> {
        self.effects.pop_front()
    }

    fn poll_timeout(&self) -> Option<Millis> {
        Some(self.next_tick)
    }
}
