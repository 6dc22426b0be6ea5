//! Property tests of the sleeve's sans-IO parts: decoders never panic on any bytes,
//! headers round-trip, reassembly and the replay window hold their invariants.

use proptest::prelude::*;
use weft_datapath::sleeve::crypto::{Cipher, CipherKind, ReplayWindow, REPLAY_WINDOW};
use weft_datapath::sleeve::reassembly::{Outcome, Reassembly};
use weft_datapath::sleeve::wire::{self, Common, Data, Kind, DATA_HEADER_LEN};
use weft_datapath::sleeve::PeerId;

proptest! {
    #[test]
    fn decoding_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(p) = wire::parse(&bytes) {
            let plen = bytes.len() - p.header_len;
            let _ = wire::check_payload(&p, plen);
            let _ = wire::token(&bytes[p.header_len..]);
            let _ = wire::probe_ack(&bytes[p.header_len..]);
            for kind in [CipherKind::ChaCha20Poly1305, CipherKind::Aes256Gcm] {
                let mut copy = bytes.clone();
                let c = Cipher::new(kind, &[1; 32]).unwrap();
                let _ = c.open(p.common.sender, PeerId(1), p.common.counter, &mut copy, p.header_len);
            }
            if let (Some(d), Ok(())) = (p.data, wire::check_payload(&p, plen)) {
                let mut r = Reassembly::default();
                let _ = r.push(&d, &bytes[p.header_len..]);
            }
        }
        let _ = wire::frame_macs(&bytes, 10);
    }

    #[test]
    fn datagrams_with_valid_magic_never_panic(
        kind in 0u8..7, flags in any::<u8>(), rest in proptest::collection::vec(any::<u8>(), 0..80)
    ) {
        let mut b = vec![wire::MAGIC, wire::VERSION, kind, flags];
        b.extend(rest);
        if let Ok(p) = wire::parse(&b) {
            prop_assert!(p.header_len <= b.len());
            let _ = wire::check_payload(&p, b.len() - p.header_len);
        }
    }

    #[test]
    fn data_headers_round_trip(
        sender in any::<u32>(), counter in any::<u64>(), origin in any::<u32>(), dst in any::<u32>(),
        frame_id in any::<u32>(), total in any::<u32>(), offset in any::<u32>(), ttl in any::<u8>(), sealed in any::<bool>()
    ) {
        let c = Common { kind: Kind::Data, flags: u8::from(sealed), sender: PeerId(sender), counter };
        let d = Data { origin: PeerId(origin), dst: PeerId(dst), frame_id, total_len: total, offset, ttl };
        let mut b = [0u8; DATA_HEADER_LEN];
        c.write(&mut b);
        d.write(&mut b);
        let p = wire::parse(&b).unwrap();
        prop_assert_eq!(p.common, c);
        prop_assert_eq!(p.data, Some(d));
    }

    #[test]
    fn sealed_datagrams_open_only_unchanged(
        payload in proptest::collection::vec(any::<u8>(), 1..300), flip in any::<usize>(), counter in any::<u64>(),
        aes in any::<bool>()
    ) {
        let kind = if aes { CipherKind::Aes256Gcm } else { CipherKind::ChaCha20Poly1305 };
        let c = Cipher::new(kind, &[9; 32]).unwrap();
        let hl = 16;
        let mut b = vec![0u8; hl + payload.len() + 16];
        b[hl..hl + payload.len()].copy_from_slice(&payload);
        let n = c.seal(PeerId(1), PeerId(2), counter, &mut b, hl, payload.len()).unwrap();
        let mut ok = b[..n].to_vec();
        prop_assert_eq!(c.open(PeerId(1), PeerId(2), counter, &mut ok, hl), Ok(payload.len()));
        prop_assert_eq!(&ok[hl..hl + payload.len()], &payload[..]);
        let mut bad = b[..n].to_vec();
        bad[flip % n] ^= 0x80;
        prop_assert!(c.open(PeerId(1), PeerId(2), counter, &mut bad, hl).is_err());
    }

    #[test]
    fn reassembly_yields_the_message_from_in_order_chunks(
        msg in proptest::collection::vec(any::<u8>(), 1..5000), chunk in 1usize..1500
    ) {
        let mut r = Reassembly::default();
        let n = msg.len().div_ceil(chunk);
        for (i, piece) in msg.chunks(chunk).enumerate() {
            let d = Data { origin: PeerId(1), dst: PeerId(2), frame_id: 7, total_len: msg.len() as u32, offset: (i * chunk) as u32, ttl: 1 };
            let out = r.push(&d, piece);
            prop_assert_eq!(out, if i + 1 == n { Outcome::Complete } else { Outcome::Pending });
        }
        prop_assert_eq!(r.message(), &msg[..]);
    }

    #[test]
    fn replay_window_accepts_each_counter_at_most_once(seq in proptest::collection::vec(0u64..20_000, 1..400)) {
        let mut w = ReplayWindow::default();
        let mut seen = std::collections::HashSet::new();
        let mut max: Option<u64> = None;
        for c in seq {
            let ok = w.accept(c);
            if seen.contains(&c) {
                prop_assert!(!ok, "counter {} accepted twice", c);
            }
            if let Some(m) = max {
                if c + REPLAY_WINDOW <= m {
                    prop_assert!(!ok, "counter {} older than the window accepted", c);
                }
                if c > m {
                    prop_assert!(ok, "new counter {} refused", c);
                }
            }
            if ok {
                seen.insert(c);
                max = Some(max.map_or(c, |m| m.max(c)));
            }
        }
    }
}
