//! Per-peer-pair sealing of sleeve datagrams (AES-256-GCM or ChaCha20-Poly1305) and the
//! replay window.
//!
//! The router hands us a 32-byte session key per peer and the cipher both sides support
//! ([`CipherKind::negotiate`]: AES-256-GCM when both CPUs have AES instructions, which
//! runs several times faster there; ChaCha20-Poly1305 otherwise).
//! Both directions share the key, so the nonce carries a direction byte (which of the two
//! peers has the lower id) next to the 64-bit counter from the header: no nonce repeats as
//! long as a key is not reused across restarts (the router derives a fresh one per session).

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, CHACHA20_POLY1305};

use super::wire::TAG_LEN;
use super::PeerId;

pub use weft_types::CipherKind;

/// The flag bit that marks datagrams sealed with this cipher.
pub fn cipher_flag(kind: CipherKind) -> u8 {
    match kind {
        CipherKind::ChaCha20Poly1305 => 0,
        CipherKind::Aes256Gcm => super::wire::FLAG_AES,
    }
}

/// A session key with the cipher state ready to seal and open.
pub struct Cipher {
    kind: CipherKind,
    // ring's AEADs are assembly (AES-NI/VAES with PCLMUL, ChaCha with AVX2/AVX-512),
    // several times faster than the pure-Rust crates without target-cpu flags; ring is in
    // the tree already (snow).
    aead: LessSafeKey,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cipher({}, ..)", self.kind)
    }
}

/// Sealing failed: the output buffer cannot hold the tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("sleeve seal/open failed")]
pub struct CryptoError;

fn nonce(sender: PeerId, receiver: PeerId, counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[0] = u8::from(sender.0 >= receiver.0);
    n[4..12].copy_from_slice(&counter.to_le_bytes());
    // Unique per key: direction byte + counter, and the replay window refuses repeats.
    Nonce::assume_unique_for_key(n)
}

impl Cipher {
    /// Builds the cipher for a 32-byte session key.
    pub fn new(kind: CipherKind, key: &[u8; 32]) -> Result<Cipher, CryptoError> {
        let alg = match kind {
            CipherKind::ChaCha20Poly1305 => &CHACHA20_POLY1305,
            CipherKind::Aes256Gcm => &AES_256_GCM,
        };
        let k = UnboundKey::new(alg, key).map_err(|_| CryptoError)?;
        Ok(Cipher {
            kind,
            aead: LessSafeKey::new(k),
        })
    }

    /// Which AEAD this is.
    pub fn kind(&self) -> CipherKind {
        self.kind
    }

    /// Encrypts `buf[header_len..header_len+payload_len]` in place and writes the tag
    /// right after it; the header is authenticated. Returns the new datagram length.
    pub fn seal(
        &self,
        sender: PeerId,
        receiver: PeerId,
        counter: u64,
        buf: &mut [u8],
        header_len: usize,
        payload_len: usize,
    ) -> Result<usize, CryptoError> {
        let end = header_len + payload_len;
        if buf.len() < end + TAG_LEN {
            return Err(CryptoError);
        }
        let (head, rest) = buf.split_at_mut(header_len);
        let (payload, tail) = rest.split_at_mut(payload_len);
        let tag = self
            .aead
            .seal_in_place_separate_tag(
                nonce(sender, receiver, counter),
                Aad::from(&*head),
                payload,
            )
            .map_err(|_| CryptoError)?;
        tail[..TAG_LEN].copy_from_slice(tag.as_ref());
        Ok(end + TAG_LEN)
    }

    /// Verifies and decrypts a sealed datagram in place. Returns the plaintext payload
    /// length (the payload starts at `header_len`). Fails on any tampering or wrong key.
    pub fn open(
        &self,
        sender: PeerId,
        receiver: PeerId,
        counter: u64,
        datagram: &mut [u8],
        header_len: usize,
    ) -> Result<usize, CryptoError> {
        datagram
            .len()
            .checked_sub(header_len + TAG_LEN)
            .ok_or(CryptoError)?;
        let (head, rest) = datagram.split_at_mut(header_len);
        let plain = self
            .aead
            .open_in_place(nonce(sender, receiver, counter), Aad::from(&*head), rest)
            .map_err(|_| CryptoError)?;
        Ok(plain.len())
    }
}

/// Number of counters behind the highest one that are still accepted (once each).
pub const REPLAY_WINDOW: u64 = 4096;
const WORDS: usize = (REPLAY_WINDOW / 64) as usize;

/// Sliding-window replay filter over 64-bit counters (as in IPsec/WireGuard).
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    /// Highest counter seen + 1 (0 = nothing seen yet).
    next: u64,
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow {
            next: 0,
            bits: [0; WORDS],
        }
    }
}

impl ReplayWindow {
    /// Whether `counter` would be accepted (not too old, not seen). Call before the
    /// (costly) authentication; commit with `accept` only after it succeeded.
    pub fn check(&self, counter: u64) -> bool {
        if counter == u64::MAX {
            return false;
        }
        if counter >= self.next {
            return true;
        }
        if self.next - counter > REPLAY_WINDOW {
            return false;
        }
        let bit = counter % REPLAY_WINDOW;
        self.bits[(bit / 64) as usize] & (1 << (bit % 64)) == 0
    }

    /// Records an authenticated counter. Returns false if it is a replay or too old.
    pub fn accept(&mut self, counter: u64) -> bool {
        if !self.check(counter) {
            return false;
        }
        if counter >= self.next {
            // Clear the bits of the counters we skip over (they become "not seen").
            let advance = counter + 1 - self.next;
            if advance >= REPLAY_WINDOW {
                self.bits = [0; WORDS];
            } else {
                for c in self.next..=counter {
                    let b = c % REPLAY_WINDOW;
                    self.bits[(b / 64) as usize] &= !(1 << (b % 64));
                }
            }
            self.next = counter + 1;
        }
        let bit = counter % REPLAY_WINDOW;
        self.bits[(bit / 64) as usize] |= 1 << (bit % 64);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_round_trips_and_tamper_fails() {
        for kind in [CipherKind::ChaCha20Poly1305, CipherKind::Aes256Gcm] {
            round_trip(kind);
        }
    }

    #[test]
    fn the_two_ciphers_do_not_open_each_other() {
        let a = Cipher::new(CipherKind::Aes256Gcm, &[7u8; 32]).unwrap();
        let c = Cipher::new(CipherKind::ChaCha20Poly1305, &[7u8; 32]).unwrap();
        let mut buf = vec![0u8; 64];
        let n = a.seal(PeerId(1), PeerId(2), 1, &mut buf, 4, 5).unwrap();
        assert!(c.open(PeerId(1), PeerId(2), 1, &mut buf[..n], 4).is_err());
    }

    fn round_trip(kind: CipherKind) {
        let c = Cipher::new(kind, &[7u8; 32]).unwrap();
        let mut buf = vec![0u8; 64];
        buf[..4].copy_from_slice(b"head");
        buf[4..9].copy_from_slice(b"hello");
        let n = c.seal(PeerId(1), PeerId(2), 5, &mut buf, 4, 5).unwrap();
        assert_eq!(n, 4 + 5 + TAG_LEN);
        assert_ne!(&buf[4..9], b"hello");
        let mut copy = buf[..n].to_vec();
        assert_eq!(c.open(PeerId(1), PeerId(2), 5, &mut copy, 4), Ok(5));
        assert_eq!(&copy[4..9], b"hello");
        // Wrong direction, counter, header or key: all fail.
        assert!(c
            .open(PeerId(2), PeerId(1), 5, &mut buf[..n].to_vec(), 4)
            .is_err());
        assert!(c
            .open(PeerId(1), PeerId(2), 6, &mut buf[..n].to_vec(), 4)
            .is_err());
        let mut t = buf[..n].to_vec();
        t[0] ^= 1;
        assert!(c.open(PeerId(1), PeerId(2), 5, &mut t, 4).is_err());
        let other = Cipher::new(kind, &[8u8; 32]).unwrap();
        assert!(other
            .open(PeerId(1), PeerId(2), 5, &mut buf[..n].to_vec(), 4)
            .is_err());
        assert!(c.open(PeerId(1), PeerId(2), 5, &mut [0u8; 10], 4).is_err());
    }

    #[test]
    fn replay_window_accepts_once_and_in_window() {
        let mut w = ReplayWindow::default();
        assert!(w.accept(0));
        assert!(!w.accept(0));
        assert!(w.accept(10));
        assert!(w.accept(5));
        assert!(!w.accept(5));
        assert!(w.accept(10 + REPLAY_WINDOW));
        assert!(!w.check(10));
        assert!(!w.accept(9));
        assert!(w.accept(11 + REPLAY_WINDOW));
        assert!(w.accept(12));
        assert!(w.accept(u64::MAX - 1));
        assert!(!w.accept(u64::MAX - 1));
        assert!(!w.accept(u64::MAX));
    }
}
