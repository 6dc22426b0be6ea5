//! Reassembly of messages (virtio header + frame) that crossed as several chunks.
//!
//! Chunks of one message are sent back to back in one GSO train, so they arrive in order
//! unless something is lost; reassembly is in-order only. A gap or a new frame id drops
//! the partial message (TCP inside recovers), which keeps this bounded and simple: one
//! buffer per origin peer, allocated once.

use super::wire::{Data, MAX_MESSAGE};

/// What happened to a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The chunk was stored; the message is not complete yet.
    Pending,
    /// The message is complete: read it with `Reassembly::message`.
    Complete,
    /// The chunk did not continue the message in progress and did not start one.
    Dropped,
}

/// In-order reassembly state for one origin peer.
#[derive(Debug, Default)]
pub struct Reassembly {
    frame_id: u32,
    total: usize,
    filled: usize,
    active: bool,
    buf: Vec<u8>,
}

impl Reassembly {
    /// Feeds one chunk (already authenticated and bounds-checked with `Data::check_chunk`).
    pub fn push(&mut self, hdr: &Data, payload: &[u8]) -> Outcome {
        let total = hdr.total_len as usize;
        let offset = hdr.offset as usize;
        if total > MAX_MESSAGE || offset.saturating_add(payload.len()) > total {
            return Outcome::Dropped;
        }
        if offset == 0 {
            // Start of a message: abandon whatever was in progress.
            if self.buf.len() < MAX_MESSAGE {
                self.buf.resize(MAX_MESSAGE, 0);
            }
            self.frame_id = hdr.frame_id;
            self.total = total;
            self.filled = 0;
            self.active = true;
        } else if !self.active
            || hdr.frame_id != self.frame_id
            || total != self.total
            || offset != self.filled
        {
            self.active = false;
            return Outcome::Dropped;
        }
        self.buf[offset..offset + payload.len()].copy_from_slice(payload);
        self.filled = offset + payload.len();
        if self.filled == self.total {
            self.active = false;
            Outcome::Complete
        } else {
            Outcome::Pending
        }
    }

    /// The last completed message.
    pub fn message(&self) -> &[u8] {
        &self.buf[..self.filled.min(self.buf.len())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sleeve::PeerId;

    fn hdr(frame_id: u32, total: u32, offset: u32) -> Data {
        Data {
            origin: PeerId(1),
            dst: PeerId(2),
            frame_id,
            total_len: total,
            offset,
            ttl: 1,
        }
    }

    #[test]
    fn in_order_chunks_complete_a_message() {
        let mut r = Reassembly::default();
        assert_eq!(r.push(&hdr(1, 6, 0), b"abc"), Outcome::Pending);
        assert_eq!(r.push(&hdr(1, 6, 3), b"def"), Outcome::Complete);
        assert_eq!(r.message(), b"abcdef");
    }

    #[test]
    fn gaps_duplicates_and_strays_are_dropped() {
        let mut r = Reassembly::default();
        assert_eq!(r.push(&hdr(1, 9, 3), b"def"), Outcome::Dropped);
        assert_eq!(r.push(&hdr(1, 9, 0), b"abc"), Outcome::Pending);
        assert_eq!(r.push(&hdr(1, 9, 6), b"ghi"), Outcome::Dropped);
        assert_eq!(r.push(&hdr(1, 9, 3), b"def"), Outcome::Dropped);
        // A new message restarts cleanly.
        assert_eq!(r.push(&hdr(2, 4, 0), b"ab"), Outcome::Pending);
        assert_eq!(r.push(&hdr(3, 2, 0), b"xy"), Outcome::Complete);
        assert_eq!(r.message(), b"xy");
        assert_eq!(r.push(&hdr(2, 4, 2), b"cd"), Outcome::Dropped);
    }
}
