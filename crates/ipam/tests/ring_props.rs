//! Property tests on the ring CRDT: merge laws, and that any interleaving of transfers by
//! owners, merges and allocations keeps ownership disjoint and addresses unique.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use weft_ipam::addr::Cidr;
use weft_ipam::ring::{Entry, Ring};
use weft_ipam::space::Space;

fn range() -> Cidr {
    "10.0.0.0/24".parse().unwrap()
}

const OWNERS: [&str; 4] = ["a", "b", "c", "d"];

fn arb_ring() -> impl Strategy<Value = Ring> {
    prop::collection::vec((1u8..=255, 0u32..4, 0usize..4, 0u32..3), 0..12).prop_map(|v| {
        let base = range().network();
        let mut tokens = BTreeMap::new();
        tokens.insert(
            base,
            Entry {
                version: 0,
                owner: "a".into(),
                free: 0,
            },
        );
        for (off, version, owner, free) in v {
            tokens.insert(
                base + u32::from(off),
                Entry {
                    version,
                    owner: OWNERS[owner].into(),
                    free,
                },
            );
        }
        Ring::from_parts(range(), 1, tokens).unwrap()
    })
}

fn merged(a: &Ring, b: &Ring) -> Ring {
    let mut x = a.clone();
    x.merge(b).unwrap();
    x
}

proptest! {
    #[test]
    fn merge_is_commutative_associative_idempotent(a in arb_ring(), b in arb_ring(), c in arb_ring()) {
        prop_assert_eq!(merged(&a, &b), merged(&b, &a));
        prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
        prop_assert_eq!(merged(&a, &a), a.clone());
        // Merging never loses information: the result absorbs both inputs.
        let ab = merged(&a, &b);
        prop_assert_eq!(merged(&ab, &a), ab.clone());
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// Peer `by` gives part of one of its free runs to `to`.
    Transfer {
        by: usize,
        to: usize,
        pick: u16,
        frac: u8,
    },
    /// `to` merges `from`'s view.
    Merge { from: usize, to: usize },
    /// Peer allocates one address from what it believes it owns.
    Alloc { peer: usize },
    /// Peer frees one of its addresses.
    Free { peer: usize, pick: u16 },
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..4, 0usize..4, any::<u16>(), 1u8..=100)
            .prop_map(|(by, to, pick, frac)| Op::Transfer { by, to, pick, frac }),
        (0usize..4, 0usize..4).prop_map(|(from, to)| Op::Merge { from, to }),
        (0usize..4).prop_map(|peer| Op::Alloc { peer }),
        (0usize..4, any::<u16>()).prop_map(|(peer, pick)| Op::Free { peer, pick }),
    ]
}

fn check_disjoint(views: &[Ring]) -> Result<(), TestCaseError> {
    let mut spans = Vec::new();
    for (i, v) in views.iter().enumerate() {
        for (s, e) in v.owned_by(OWNERS[i]) {
            spans.push((s, e, i));
        }
    }
    spans.sort();
    for w in spans.windows(2) {
        prop_assert!(
            w[1].0 >= w[0].1,
            "peers {} and {} both own {:?}",
            w[0].2,
            w[1].2,
            (w[0], w[1])
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn transfers_and_merges_keep_ownership_a_partition(
        seeds in prop::collection::btree_set(0usize..4, 1..=4),
        ops in prop::collection::vec(arb_op(), 1..120),
    ) {
        let names: Vec<String> = seeds.iter().map(|i| OWNERS[*i].to_string()).collect();
        let start = Ring::split(range(), &names, 7);
        let mut views: Vec<Ring> = vec![start; 4];
        let mut spaces: Vec<Space> = vec![Space::default(); 4];
        let mut held: BTreeSet<u32> = BTreeSet::new();
        let sub = range();
        for op in ops {
            match op {
                Op::Transfer { by, to, pick, frac } => {
                    if by == to { continue; }
                    let owned = views[by].owned_by(OWNERS[by]);
                    // Only free space changes hands, as the allocator does.
                    let mut runs = Vec::new();
                    let mut sp = spaces[by].clone();
                    while let Some(r) = sp.largest_free_run(&owned, &sub) {
                        runs.push(r);
                        for a in r.0..r.1 { sp.insert(a as u32, "x", 24); }
                    }
                    if runs.is_empty() { continue; }
                    let (s, e) = runs[usize::from(pick) % runs.len()];
                    let len = ((e - s) * u64::from(frac)).div_ceil(100).max(1);
                    views[by].transfer(OWNERS[by], e - len, e, OWNERS[to]).unwrap();
                }
                Op::Merge { from, to } => {
                    let other = views[from].clone();
                    views[to].merge(&other).unwrap();
                }
                Op::Alloc { peer } => {
                    let owned = views[peer].owned_by(OWNERS[peer]);
                    if let Some(a) = spaces[peer].first_free(&owned, &sub) {
                        prop_assert!(held.insert(a), "address {a} given twice");
                        spaces[peer].insert(a, "c", 24);
                    }
                }
                Op::Free { peer, pick } => {
                    let mine: Vec<u32> = spaces[peer].all().map(|(a, _)| a).collect();
                    if !mine.is_empty() {
                        let a = mine[usize::from(pick) % mine.len()];
                        spaces[peer].release("c", Some(a));
                        held.remove(&a);
                    }
                }
            }
            check_disjoint(&views)?;
            // Every allocation lies in space its peer owns.
            for (i, sp) in spaces.iter().enumerate() {
                for (a, _) in sp.all() {
                    prop_assert_eq!(views[i].owner_of(a), Some(OWNERS[i]));
                }
            }
        }
        // After everyone has merged everyone, the views agree and cover the range once.
        let mut all = views[0].clone();
        for v in &views { all.merge(v).unwrap(); }
        for v in views.iter_mut() { v.merge(&all).unwrap(); prop_assert_eq!(&*v, &all); }
        let covered: u64 = all.entries().map(|(s, e, _)| e - s).sum();
        prop_assert_eq!(covered, range().size());
        let mut last = u64::from(range().network());
        for (s, e, _) in all.entries() { prop_assert_eq!(s, last); last = e; }
        prop_assert_eq!(last, range().end());
    }
}
