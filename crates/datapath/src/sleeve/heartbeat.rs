//! Heartbeat schedule and round-trip-time estimate (pure; time is an input in nanoseconds).

/// Default interval between heartbeats to each direct peer.
pub const DEFAULT_INTERVAL_NANOS: u64 = 1_000_000_000;

/// Smoothed RTT like TCP's SRTT (RFC 6298, alpha = 1/8).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RttEstimate {
    /// Smoothed RTT in nanoseconds, None before the first sample.
    pub srtt: Option<u64>,
    /// The most recent sample in nanoseconds.
    pub last: Option<u64>,
}

impl RttEstimate {
    /// Folds in one sample (a pong's arrival time minus the echoed ping time).
    pub fn sample(&mut self, rtt: u64) {
        self.last = Some(rtt);
        self.srtt = Some(match self.srtt {
            None => rtt,
            Some(s) => s - s / 8 + rtt / 8,
        });
    }
}

/// When the next round of heartbeats is due.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    interval: u64,
    next: u64,
}

impl Schedule {
    /// A schedule that fires at once and then every `interval` nanoseconds.
    pub fn new(interval: u64) -> Schedule {
        Schedule {
            interval: interval.max(1),
            next: 0,
        }
    }

    /// Makes the next round due now (a peer was added).
    pub fn kick(&mut self) {
        self.next = 0;
    }

    /// Whether a round is due at `now`; if so the next one is scheduled.
    pub fn due(&mut self, now: u64) -> bool {
        if now >= self.next {
            self.next = now + self.interval;
            true
        } else {
            false
        }
    }

    /// Nanoseconds until the next round.
    pub fn wait(&self, now: u64) -> u64 {
        self.next.saturating_sub(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_smooths_samples() {
        let mut r = RttEstimate::default();
        r.sample(800);
        assert_eq!(r.srtt, Some(800));
        r.sample(1600);
        assert_eq!(r.srtt, Some(900));
        assert_eq!(r.last, Some(1600));
    }

    #[test]
    fn schedule_fires_every_interval() {
        let mut s = Schedule::new(100);
        assert!(s.due(5));
        assert!(!s.due(50));
        assert_eq!(s.wait(50), 55);
        assert!(s.due(105));
        s.kick();
        assert!(s.due(106));
    }
}
