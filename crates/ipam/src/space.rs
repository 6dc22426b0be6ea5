//! A peer's allocations: which container holds which address, and the free space left in the
//! intervals the peer owns.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::addr::{intersect, Addr, Cidr};

/// Who holds an address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holder {
    /// The container (or other owner) id.
    pub owner: String,
    /// The prefix of the subnet the address was given in.
    pub prefix: u8,
}

/// The allocations of one peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Space {
    allocs: BTreeMap<Addr, Holder>,
    by_owner: BTreeMap<String, BTreeSet<Addr>>,
}

impl Space {
    /// Who holds `a`.
    pub fn holder(&self, a: Addr) -> Option<&Holder> {
        self.allocs.get(&a)
    }

    /// Every allocation in address order.
    pub fn all(&self) -> impl Iterator<Item = (Addr, &Holder)> + '_ {
        self.allocs.iter().map(|(a, h)| (*a, h))
    }

    /// Number of allocations.
    pub fn len(&self) -> usize {
        self.allocs.len()
    }

    /// Whether nothing is allocated.
    pub fn is_empty(&self) -> bool {
        self.allocs.is_empty()
    }

    /// Allocations inside `[s, e)`.
    pub fn count_in(&self, s: u64, e: u64) -> u64 {
        if s >= e || s > u64::from(u32::MAX) {
            return 0;
        }
        let hi = e.min(1 << 32);
        self.allocs
            .range(s as Addr..)
            .take_while(|(a, _)| u64::from(**a) < hi)
            .count() as u64
    }

    /// The address `owner` already holds in `subnet`, if any.
    pub fn existing_in(&self, owner: &str, subnet: &Cidr) -> Option<Addr> {
        self.by_owner.get(owner)?.iter().copied().find(|a| {
            subnet.contains(*a) && self.allocs.get(a).map(|h| h.prefix) == Some(subnet.prefix)
        })
    }

    /// Record `a` as held by `owner` in a subnet of `prefix`.
    pub fn insert(&mut self, a: Addr, owner: &str, prefix: u8) {
        self.allocs.insert(
            a,
            Holder {
                owner: owner.to_string(),
                prefix,
            },
        );
        self.by_owner
            .entry(owner.to_string())
            .or_default()
            .insert(a);
    }

    /// The first free usable address of `subnet` inside the `owned` intervals.
    pub fn first_free(&self, owned: &[(u64, u64)], subnet: &Cidr) -> Option<Addr> {
        self.free_runs(owned, subnet).next().map(|(s, _)| s as Addr)
    }

    /// The first free usable address at or after `from` (wrapping around to the start):
    /// next-fit, so sequential allocation is cheap and released addresses rest a while.
    pub fn next_free(&self, owned: &[(u64, u64)], subnet: &Cidr, from: u64) -> Option<Addr> {
        let after: Vec<(u64, u64)> = owned
            .iter()
            .filter_map(|iv| intersect(*iv, (from, u64::MAX)))
            .collect();
        self.first_free(&after, subnet)
            .or_else(|| self.first_free(owned, subnet))
    }

    /// The largest run of free usable addresses of `subnet` inside the `owned` intervals
    /// (the first of the largest).
    pub fn largest_free_run(&self, owned: &[(u64, u64)], subnet: &Cidr) -> Option<(u64, u64)> {
        self.free_runs(owned, subnet).fold(None, |best, (s, e)| {
            if best.is_none_or(|(bs, be)| e - s > be - bs) {
                Some((s, e))
            } else {
                best
            }
        })
    }

    /// The runs `[s, e)` of free usable addresses of `subnet` inside the `owned` intervals,
    /// in order, found lazily (the first one costs only the allocations before it).
    fn free_runs<'a>(
        &'a self,
        owned: &'a [(u64, u64)],
        subnet: &Cidr,
    ) -> impl Iterator<Item = (u64, u64)> + 'a {
        let usable = subnet.usable_interval();
        let within = owned.iter().filter_map(move |iv| intersect(*iv, usable));
        let runs = within.flat_map(move |(s, e)| {
            let mut taken = self
                .allocs
                .range(s as Addr..)
                .map(|(a, _)| u64::from(*a))
                .take_while(move |a| *a < e);
            let mut from = Some(s);
            std::iter::from_fn(move || {
                let start = from?;
                let Some(a) = taken.next() else {
                    from = None;
                    return Some((start, e));
                };
                from = Some(a + 1);
                Some((start, a))
            })
        });
        runs.filter(|(s, e)| e > s)
    }

    /// Release `a` if `owner` holds it (or every address of `owner` when `a` is `None`).
    pub fn release(&mut self, owner: &str, a: Option<Addr>) -> Vec<Cidr> {
        let addrs: Vec<Addr> = match (a, self.by_owner.get(owner)) {
            (_, None) => Vec::new(),
            (Some(a), Some(set)) => set.iter().copied().filter(|x| *x == a).collect(),
            (None, Some(set)) => set.iter().copied().collect(),
        };
        let mut out = Vec::new();
        for a in addrs {
            if let Some(h) = self.allocs.remove(&a) {
                out.push(Cidr {
                    addr: a,
                    prefix: h.prefix,
                });
            }
            if let Some(set) = self.by_owner.get_mut(owner) {
                set.remove(&a);
                if set.is_empty() {
                    self.by_owner.remove(owner);
                }
            }
        }
        out
    }

    /// Every address `owner` holds.
    pub fn lookup(&self, owner: &str) -> Vec<Cidr> {
        self.by_owner
            .get(owner)
            .map(|set| {
                set.iter()
                    .filter_map(|a| {
                        self.allocs.get(a).map(|h| Cidr {
                            addr: *a,
                            prefix: h.prefix,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every allocation with its owner, in address order.
    pub fn holdings(&self) -> Vec<(String, Cidr)> {
        self.allocs
            .iter()
            .map(|(a, h)| {
                (
                    h.owner.clone(),
                    Cidr {
                        addr: *a,
                        prefix: h.prefix,
                    },
                )
            })
            .collect()
    }

    /// Drop every allocation (this peer is leaving).
    pub fn clear(&mut self) {
        self.allocs.clear();
        self.by_owner.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_free_and_runs() {
        let sub: Cidr = "10.0.0.0/29".parse().unwrap();
        let base = u64::from(sub.network());
        let owned = vec![(base, base + 8)];
        let mut s = Space::default();
        let a = s.first_free(&owned, &sub).unwrap();
        assert_eq!(u64::from(a), base + 1);
        s.insert(a, "c1", 29);
        s.insert(a + 2, "c2", 29);
        assert_eq!(u64::from(s.first_free(&owned, &sub).unwrap()), base + 2);
        assert_eq!(s.largest_free_run(&owned, &sub), Some((base + 4, base + 7)));
        assert_eq!(s.existing_in("c2", &sub), Some(a + 2));
        assert_eq!(s.release("c1", None).len(), 1);
        assert_eq!(s.lookup("c2").len(), 1);
        assert_eq!(s.count_in(base, base + 8), 1);
    }
}
