//! Decoders of wire messages and persisted state on random and mangled input: an error or
//! a value, never a panic; every message round-trips.

use proptest::prelude::*;
use weft_ipam::consensus::Ballot;
use weft_ipam::messages::{DenyReason, Message, RingKind};
use weft_ipam::persist::{PersistedAlloc, PersistedState, Quarantine};
use weft_ipam::ring::Ring;
use weft_ipam::Cidr;
use weft_types::cursor::first_broken_accepted;

fn ring() -> Ring {
    let mut r = Ring::split(
        "10.32.0.0/12".parse().unwrap(),
        &["a".to_string(), "b".to_string(), "c".to_string()],
        42,
    );
    let s = u64::from(r.range().network());
    r.transfer("a", s + 10, s + 20, "d").unwrap();
    r
}

fn ballot(round: u64) -> Ballot {
    Ballot {
        round,
        proposer: "peer-ü".into(),
    }
}

fn samples() -> Vec<Message> {
    let sub: Cidr = "10.32.1.0/24".parse().unwrap();
    vec![
        Message::Ring {
            ring: ring(),
            kind: RingKind::Handover,
        },
        Message::Ring {
            ring: ring(),
            kind: RingKind::Exchange,
        },
        Message::HandoverAck,
        Message::SpaceGranted {
            nonce: 3,
            ring: ring(),
        },
        Message::SpaceRequest {
            nonce: 9,
            subnet: sub,
            want: Some(sub.network() + 3),
        },
        Message::SpaceRequest {
            nonce: 10,
            subnet: sub,
            want: None,
        },
        Message::SpaceDenied {
            nonce: 9,
            reason: DenyReason::InUse("container-1".into()),
        },
        Message::SpaceDenied {
            nonce: 9,
            reason: DenyReason::NoSpace,
        },
        Message::SpaceDenied {
            nonce: 9,
            reason: DenyReason::NotOwner,
        },
        Message::Want { mode: 2 },
        Message::Prepare { ballot: ballot(3) },
        Message::Promise {
            ballot: ballot(3),
            accepted: Some((ballot(2), vec!["a".into(), "b".into()])),
        },
        Message::Promise {
            ballot: ballot(3),
            accepted: None,
        },
        Message::Nack {
            ballot: ballot(1),
            promised: ballot(4),
        },
        Message::Accept {
            ballot: ballot(3),
            value: vec!["a".into()],
        },
        Message::Accepted { ballot: ballot(3) },
    ]
}

fn state() -> PersistedState {
    PersistedState {
        name: "a".into(),
        ring: Some(ring()),
        allocations: vec![PersistedAlloc {
            addr: 7,
            prefix: 12,
            owner: "c1".into(),
        }],
        acceptor: Default::default(),
        quarantines: vec![Quarantine {
            dead: "z".into(),
            ranges: vec![(5, 9)],
            tokens: vec![(5, 2)],
            waiting: ["b".to_string()].into_iter().collect(),
        }],
    }
}

#[test]
fn every_message_round_trips() {
    for m in samples() {
        assert_eq!(Message::decode(&m.encode()), Ok(m.clone()));
    }
    let s = state();
    assert_eq!(PersistedState::decode(&s.encode()), Ok(s));
}

#[test]
fn truncations_and_other_versions_are_errors() {
    for m in samples() {
        let b = m.encode();
        assert_eq!(first_broken_accepted(&b, Message::decode), None, "{m:?}");
        let mut v = b.clone();
        v[2] = 99;
        assert!(Message::decode(&v)
            .unwrap_err()
            .to_string()
            .contains("version 99"));
    }
    let b = state().encode();
    assert_eq!(first_broken_accepted(&b, PersistedState::decode), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn random_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = Message::decode(&b);
        let _ = PersistedState::decode(&b);
        let mut framed = b"WI\x01".to_vec();
        framed.extend_from_slice(&b);
        let _ = Message::decode(&framed);
        let mut st = b"WIPS\x00\x00\x00\x01".to_vec();
        st.extend_from_slice(&b);
        let _ = PersistedState::decode(&st);
    }

    #[test]
    fn mangled_encodings_never_panic(which in 0usize..16, flips in prop::collection::vec((any::<u16>(), any::<u8>()), 1..6)) {
        let msgs = samples();
        let mut b = msgs[which % msgs.len()].encode();
        let mut s = state().encode();
        for (pos, val) in flips {
            let i = usize::from(pos) % b.len();
            b[i] = val;
            let j = usize::from(pos) % s.len();
            s[j] = val;
        }
        let _ = Message::decode(&b);
        let _ = PersistedState::decode(&s);
    }
}
