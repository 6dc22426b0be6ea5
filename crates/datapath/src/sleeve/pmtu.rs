//! Path-MTU search for one path to one peer (sans-IO: time and answers are inputs, the
//! sizes to probe are outputs). Used by the sleeve (UDP 6783) and by the router for
//! fastdp (VXLAN on UDP 6784).
//!
//! Sizes are whole IP datagrams on the underlay. A probe is one datagram of that size,
//! sent with DF; an answer means it fitted. The search starts with the largest size (what
//! the interface says; usually it fits and one round trip ends the search), then bisects
//! between the largest size known to fit and the smallest known not to. Until a probe
//! fails, the path is assumed to carry the largest size; after a failure only what was
//! confirmed is used. Every `confirm` the value in use is probed again (one datagram): if
//! it no longer fits, or the owner reports losses (`suspect`), the floor is used at once
//! and the search starts again. Every `recheck` the largest size is tried again, so a
//! path that healed is used in full again.

/// Tunables of the search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PmtuConfig {
    /// Smallest size, assumed to always fit (IPv4 guarantees 576).
    pub floor: u32,
    /// Largest size worth having (the interface MTU, or what the overlay needs).
    pub ceiling: u32,
    /// The search stops when the gap between fits and does-not-fit is at most this.
    pub granularity: u32,
    /// How long to wait for an answer (nanoseconds).
    pub timeout: u64,
    /// How many unanswered probes of one size mean it does not fit.
    pub tries: u8,
    /// How often the size in use is confirmed once settled (nanoseconds).
    pub confirm: u64,
    /// How often a settled search tries the largest size again (nanoseconds).
    pub recheck: u64,
}

impl PmtuConfig {
    /// Defaults for a path whose interface allows `ceiling`: floor 576, 8-byte
    /// granularity, 400 ms per probe, 2 tries, confirm every 5 s, recheck every 30 s.
    pub fn new(ceiling: u32) -> PmtuConfig {
        PmtuConfig {
            floor: 576.min(ceiling),
            ceiling,
            granularity: 8,
            timeout: 400_000_000,
            tries: 2,
            confirm: 5_000_000_000,
            recheck: 30_000_000_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Bisecting between `fits` and `too_big`.
    Search,
    /// Settled; the size in use is confirmed again at the given time.
    Settled(u64),
    /// Probing the size in use again (a loss means the path shrank).
    Confirm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InFlight {
    size: u32,
    sent: u64,
    tries: u8,
}

/// The search state of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pmtu {
    cfg: PmtuConfig,
    /// Largest size known to fit.
    fits: u32,
    /// Smallest size known not to fit (ceiling + 1 when none).
    too_big: u32,
    /// No probe has failed since the last (re)start: the ceiling is assumed to fit.
    optimistic: bool,
    phase: Phase,
    inflight: Option<InFlight>,
    /// When a settled search tries the ceiling again (0: not scheduled yet).
    recheck_at: u64,
}

impl Pmtu {
    /// A fresh search: the first probe (the ceiling) is due at once.
    pub fn new(cfg: PmtuConfig) -> Pmtu {
        let cfg = PmtuConfig {
            floor: cfg.floor.min(cfg.ceiling),
            granularity: cfg.granularity.max(1),
            tries: cfg.tries.max(1),
            ..cfg
        };
        Pmtu {
            cfg,
            fits: cfg.floor,
            too_big: cfg.ceiling + 1,
            optimistic: true,
            phase: Phase::Search,
            inflight: None,
            recheck_at: 0,
        }
    }

    /// The tunables.
    pub fn config(&self) -> &PmtuConfig {
        &self.cfg
    }

    /// The size to use now: the ceiling until a probe failed, then the largest confirmed.
    pub fn current(&self) -> u32 {
        if self.optimistic {
            self.cfg.ceiling
        } else {
            self.fits
        }
    }

    /// The discovered value once the search settled (None while searching).
    pub fn discovered(&self) -> Option<u32> {
        match self.phase {
            Phase::Settled(_) => Some(self.current()),
            _ => None,
        }
    }

    /// Whether the path carries `size` as far as is known now.
    pub fn carries(&self, size: u32) -> bool {
        self.current() >= size
    }

    /// Advances time: returns the size of a probe to send now, if one is due (a new size,
    /// or a repeat of one that went unanswered).
    pub fn poll(&mut self, now: u64) -> Option<u32> {
        if let Some(f) = self.inflight {
            if now.saturating_sub(f.sent) < self.cfg.timeout {
                return None;
            }
            if f.tries < self.cfg.tries {
                self.inflight = Some(InFlight {
                    sent: now,
                    tries: f.tries + 1,
                    ..f
                });
                return Some(f.size);
            }
            self.inflight = None;
            self.lost(f.size);
        }
        let size = match self.phase {
            Phase::Settled(_) if self.recheck_at <= now => {
                // Recheck: the ceiling first, keeping what we use meanwhile.
                self.recheck_at = now + self.cfg.recheck;
                self.too_big = self.cfg.ceiling + 1;
                self.phase = Phase::Search;
                self.cfg.ceiling
            }
            Phase::Settled(at) if now < at => return None,
            Phase::Settled(_) | Phase::Confirm => {
                self.phase = Phase::Confirm;
                self.current()
            }
            Phase::Search => {
                if self.fits >= self.cfg.ceiling
                    || (self.too_big <= self.cfg.ceiling
                        && self.too_big - self.fits <= self.cfg.granularity)
                {
                    self.settle(now);
                    return None;
                }
                if self.too_big > self.cfg.ceiling {
                    self.cfg.ceiling
                } else {
                    let mid = self.fits + (self.too_big - self.fits) / 2;
                    mid.max(self.fits + 1)
                }
            }
        };
        self.inflight = Some(InFlight {
            size,
            sent: now,
            tries: 1,
        });
        Some(size)
    }

    fn settle(&mut self, now: u64) {
        self.phase = Phase::Settled(now + self.cfg.confirm);
        if self.recheck_at == 0 {
            self.recheck_at = now + self.cfg.recheck;
        }
    }

    fn lost(&mut self, size: u32) {
        if size <= self.cfg.floor {
            // Not even the floor passes: the path is down, which says nothing about its
            // MTU. Start afresh, so that the first probe after it heals settles it.
            self.reset();
            return;
        }
        if self.phase == Phase::Confirm || size <= self.current() {
            // What we use no longer fits: the path shrank. The floor until we know more.
            self.fits = self.cfg.floor;
            self.phase = Phase::Search;
        }
        self.optimistic = false;
        self.too_big = self.too_big.min(size).max(self.fits + 1);
    }

    /// An answer to a probe of `size` arrived.
    pub fn on_ack(&mut self, size: u32, now: u64) {
        if size < self.cfg.floor || size > self.cfg.ceiling {
            return;
        }
        if self.inflight.is_some_and(|f| f.size == size) {
            self.inflight = None;
        }
        if size >= self.fits {
            self.fits = size;
        }
        if size >= self.too_big {
            // It fits after all (the path grew while we searched).
            self.too_big = self.cfg.ceiling + 1;
        }
        if size == self.cfg.ceiling {
            self.optimistic = true;
            self.too_big = self.cfg.ceiling + 1;
        }
        if self.phase == Phase::Confirm {
            // Still fits: settled again until the next confirmation.
            self.settle(now);
        }
    }

    /// The owner knows the path is down (heartbeats unanswered): forget what was found,
    /// so that when it is back the first probe (the full size) settles it.
    pub fn reset(&mut self) {
        *self = Pmtu {
            recheck_at: self.recheck_at,
            ..Pmtu::new(self.cfg)
        };
    }

    /// The owner saw losses that suggest the path shrank: search again from the floor.
    pub fn suspect(&mut self, _now: u64) {
        self.restart();
    }

    fn restart(&mut self) {
        self.fits = self.cfg.floor;
        self.too_big = self.cfg.ceiling + 1;
        self.optimistic = false;
        self.phase = Phase::Search;
        self.inflight = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// Runs the search against a path that carries up to `limit` until it settles;
    /// returns the value and the time it took.
    fn settle(p: &mut Pmtu, limit: u32, mut now: u64) -> (u32, u64) {
        let start = now;
        for _ in 0..10_000 {
            if let Some(size) = p.poll(now) {
                if size <= limit {
                    p.on_ack(size, now + MS);
                }
            }
            if let Some(v) = p.discovered() {
                return (v, now - start);
            }
            now += 50 * MS;
        }
        panic!("search never settled: {p:?}");
    }

    #[test]
    fn a_path_that_carries_the_ceiling_settles_at_once() {
        let mut p = Pmtu::new(PmtuConfig::new(1500));
        assert_eq!(p.current(), 1500);
        assert_eq!(p.poll(0), Some(1500));
        assert_eq!(p.poll(MS), None, "waits for the answer");
        p.on_ack(1500, MS);
        assert_eq!(p.poll(2 * MS), None);
        assert_eq!(p.discovered(), Some(1500));
        assert!(p.carries(1500));
    }

    #[test]
    fn a_smaller_path_is_found_within_the_granularity() {
        for limit in [600, 777, 1000, 1400, 1499] {
            let mut p = Pmtu::new(PmtuConfig::new(1500));
            let (v, took) = settle(&mut p, limit, 0);
            assert!(v <= limit && limit - v < 8, "limit {limit}: found {v}");
            assert!(took < 10_000 * MS, "limit {limit}: took {} ms", took / MS);
            assert_eq!(p.current(), v);
            assert!(!p.carries(1500));
        }
    }

    #[test]
    fn after_the_first_failure_only_confirmed_sizes_are_used() {
        let mut p = Pmtu::new(PmtuConfig::new(1500));
        assert_eq!(p.poll(0), Some(1500));
        assert_eq!(p.poll(400 * MS), Some(1500), "one retry");
        assert_eq!(p.current(), 1500, "still optimistic");
        let next = p.poll(800 * MS).expect("bisects");
        assert_eq!(
            p.current(),
            576,
            "the floor until something larger is confirmed"
        );
        assert!(next > 576 && next < 1500);
        p.on_ack(next, 801 * MS);
        assert_eq!(p.current(), next);
    }

    #[test]
    fn a_path_that_heals_is_used_in_full_after_the_recheck() {
        let mut p = Pmtu::new(PmtuConfig::new(1500));
        let (v, _) = settle(&mut p, 1000, 0);
        assert!(v <= 1000);
        let later = 60_000 * MS;
        assert_eq!(p.poll(later), Some(1500));
        assert_eq!(p.current(), v, "keeps the confirmed value while rechecking");
        p.on_ack(1500, later + MS);
        assert_eq!(p.current(), 1500);
        assert_eq!(p.poll(later + 2 * MS), None);
        assert_eq!(p.discovered(), Some(1500));
    }

    /// Simulates `dur` of a path that carries up to `limit`; returns the size in use then.
    fn run(p: &mut Pmtu, limit: u32, from: u64, dur: u64) -> u32 {
        let mut now = from;
        while now < from + dur {
            if let Some(size) = p.poll(now) {
                if size <= limit {
                    p.on_ack(size, now + MS);
                }
            }
            now += 50 * MS;
        }
        p.current()
    }

    #[test]
    fn a_path_that_shrinks_is_found_by_the_next_confirmation() {
        let mut p = Pmtu::new(PmtuConfig::new(1500));
        assert_eq!(run(&mut p, 1500, 0, 2_000 * MS), 1500);
        // The path shrinks to 900: within a confirmation period plus a search, 900 is used.
        let v = run(&mut p, 900, 2_000 * MS, 15_000 * MS);
        assert!(v <= 900 && 900 - v < 8, "found {v}");
        assert_eq!(p.discovered(), Some(v));
        // And again, below the value in use.
        let v2 = run(&mut p, 700, 17_000 * MS, 15_000 * MS);
        assert!(v2 <= 700 && 700 - v2 < 8, "found {v2}");
        // The floor is used as soon as a confirmation fails.
        let mut q = Pmtu::new(PmtuConfig::new(1500));
        run(&mut q, 1500, 0, 2_000 * MS);
        let mut now = 2_000 * MS;
        while q.current() == 1500 {
            q.poll(now);
            now += 50 * MS;
            assert!(now < 10_000 * MS, "the lost confirmation went unnoticed");
        }
        assert_eq!(q.current(), 576);
        assert!(now < 8_000 * MS);
    }

    #[test]
    fn a_suspicion_restarts_from_the_floor() {
        let mut p = Pmtu::new(PmtuConfig::new(1500));
        run(&mut p, 1500, 0, 2_000 * MS);
        p.suspect(2_000 * MS);
        assert_eq!(p.current(), 576);
        let (v, took) = settle(&mut p, 1200, 2_000 * MS);
        assert!(v <= 1200 && 1200 - v < 8, "found {v}");
        assert!(took < 10_000 * MS);
    }

    #[test]
    fn a_dead_path_starts_afresh_and_is_used_in_full_when_it_heals() {
        let mut p = Pmtu::new(PmtuConfig::new(1500));
        run(&mut p, 1500, 0, 2_000 * MS);
        // Nothing passes for a while (the peer's host is down); the owner sees its
        // heartbeats go unanswered and resets the search.
        run(&mut p, 0, 2_000 * MS, 20_000 * MS);
        p.reset();
        // Back: the next probe is the full size, which fits.
        let v = run(&mut p, 1500, 22_000 * MS, 2_000 * MS);
        assert_eq!(v, 1500);
        assert_eq!(p.discovered(), Some(1500));
    }

    #[test]
    fn stray_answers_are_ignored() {
        let mut p = Pmtu::new(PmtuConfig::new(1500));
        p.on_ack(9000, 0);
        p.on_ack(10, 0);
        assert_eq!(p.poll(0), Some(1500));
        assert_eq!(p.current(), 1500);
        let mut q = Pmtu::new(PmtuConfig {
            floor: 2000,
            ..PmtuConfig::new(1500)
        });
        assert_eq!(
            q.poll(0),
            None,
            "nothing to search between floor and ceiling"
        );
        assert_eq!(q.discovered(), Some(1500));
    }
}
