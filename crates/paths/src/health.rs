//! Heartbeat health of the fastdp path to one peer, with hysteresis.

use weft_mesh::Millis;

/// How long without a fastdp answer before the path counts as broken (two heartbeats and
/// a half: one lost heartbeat is not a failure).
pub const FASTDP_DEAD_MS: Millis = 2500;
/// How long pongs must keep coming after a failure before fastdp is used again.
pub const FASTDP_HEAL_MS: Millis = 1500;

/// Heartbeat health of the fastdp path to one peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Health {
    last_pong: Option<Millis>,
    up_since: Option<Millis>,
    failed_before: bool,
}

impl Health {
    /// A pong arrived at `now`.
    pub fn pong(&mut self, now: Millis) {
        let fresh = self
            .last_pong
            .is_none_or(|t| now.saturating_sub(t) > FASTDP_DEAD_MS);
        if fresh {
            if self.last_pong.is_some() {
                self.failed_before = true;
            }
            self.up_since = Some(now);
        }
        self.last_pong = Some(now);
    }

    /// Whether an answer arrived within [`FASTDP_DEAD_MS`] (the round trip works now,
    /// before any hysteresis).
    pub fn alive(&self, now: Millis) -> bool {
        self.last_pong
            .is_some_and(|t| now.saturating_sub(t) <= FASTDP_DEAD_MS)
    }

    /// Whether fastdp works at `now`: a recent pong, and after a failure pongs for a while.
    pub fn ok(&self, now: Millis) -> bool {
        let (Some(last), Some(since)) = (self.last_pong, self.up_since) else {
            return false;
        };
        now.saturating_sub(last) <= FASTDP_DEAD_MS
            && (!self.failed_before || now.saturating_sub(since) >= FASTDP_HEAL_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_fails_and_heals_with_hysteresis() {
        let mut h = Health::default();
        assert!(!h.ok(0));
        h.pong(100);
        assert!(h.ok(100), "the first pong is enough");
        assert!(h.ok(100 + FASTDP_DEAD_MS));
        assert!(!h.ok(101 + FASTDP_DEAD_MS));
        h.pong(10_000);
        assert!(!h.ok(10_000), "after a failure, wait for stable pongs");
        h.pong(10_000 + FASTDP_HEAL_MS);
        assert!(h.ok(10_000 + FASTDP_HEAL_MS));
    }
}
