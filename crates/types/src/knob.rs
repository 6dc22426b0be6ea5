//! Knobs of tests and benches read from the environment (`WEFT_FUZZ_CASES`, seeds ...), so
//! that a longer run needs no code change.

use std::str::FromStr;

/// Environment variable `name` parsed as a `T`, or `default` when it is unset or does not
/// parse.
pub fn knob<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_or_bad_values_give_the_default() {
        assert_eq!(knob("WEFT_KNOB_TEST_SURELY_UNSET", 7u64), 7);
        assert_eq!(knob::<usize>("PATH", 3), 3);
    }
}
