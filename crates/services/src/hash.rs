//! A hash every build of weft computes alike (unlike std's), for the digests peers compare.

/// FNV-1a 64 of `parts` (each followed by a separator), then mixed (splitmix64's
/// finalizer) so that sums of hashes of different sets rarely collide.
pub(crate) fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in part.iter().chain(&[0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_keep_parts_apart_and_values_are_fixed() {
        assert_ne!(stable_hash(&[b"ab", b"c"]), stable_hash(&[b"a", b"bc"]));
        // Fixed across builds: peers of different versions must agree.
        assert_eq!(stable_hash(&[b"web"]), 1_280_296_727_366_244_153);
    }
}
