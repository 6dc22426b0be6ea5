//! Counts of the queries the server handled, by result and by who answered, for /metrics.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Result labels, in the order of [`QueryCounts::counts`].
pub const RESULTS: [&str; 6] = [
    "noerror", "nxdomain", "servfail", "refused", "other", "dropped",
];

/// Who produced the reply: weft's records, or an upstream server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Answered (or refused) from weft's records.
    Local,
    /// Forwarded upstream (a failed forward counts as `servfail`).
    Upstream,
}

/// Counters per (source, result).
#[derive(Debug, Default)]
pub struct QueryCounts {
    local: [AtomicU64; 6],
    upstream: [AtomicU64; 6],
}

impl QueryCounts {
    /// Counts one query whose reply is `reply` (`None`: dropped, nothing sent).
    pub fn count(&self, source: Source, reply: Option<&[u8]>) {
        // The RCODE is the low nibble of the fourth header byte.
        let i = match reply.map(|r| r.get(3).map(|b| b & 0x0f)) {
            None => 5,
            Some(Some(0)) => 0,
            Some(Some(3)) => 1,
            Some(Some(2)) => 2,
            Some(Some(5)) => 3,
            Some(_) => 4,
        };
        let row = match source {
            Source::Local => &self.local,
            Source::Upstream => &self.upstream,
        };
        if let Some(c) = row.get(i) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// Every non-zero count as (source, result, count).
    pub fn counts(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut out = Vec::new();
        for (source, row) in [("local", &self.local), ("upstream", &self.upstream)] {
            for (result, c) in RESULTS.iter().zip(row.iter()) {
                let n = c.load(Relaxed);
                if n > 0 {
                    out.push((source, *result, n));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_rcode_and_source() {
        let q = QueryCounts::default();
        q.count(Source::Local, Some(&[0, 1, 0x81, 0x80]));
        q.count(Source::Local, Some(&[0, 1, 0x81, 0x83]));
        q.count(Source::Local, Some(&[0, 1, 0x81, 0x83]));
        q.count(Source::Upstream, Some(&[0, 1, 0x81, 0x82]));
        q.count(Source::Local, None);
        q.count(Source::Local, Some(&[0]));
        assert_eq!(
            q.counts(),
            vec![
                ("local", "noerror", 1),
                ("local", "nxdomain", 2),
                ("local", "other", 1),
                ("local", "dropped", 1),
                ("upstream", "servfail", 1)
            ]
        );
    }
}
