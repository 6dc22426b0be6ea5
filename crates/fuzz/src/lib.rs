//! Fuzzing of every decoder of outside bytes (docs/hardening.md).
//!
//! Each target is a plain `fn(&[u8])` in [`targets`], run three ways:
//! - by `cargo test -p weft-fuzz`: the checked-in corpus (`corpus/TARGET/`) and a short,
//!   count-bounded mutation run of each target;
//! - by the long run `WEFT_FUZZ_SECS=600 cargo run --release -p weft-fuzz` (all targets, or
//!   those named on the command line), which saves any crashing input under `crashes/`;
//! - by cargo-fuzz with a nightly toolchain (`crates/fuzz/fuzz/`, libFuzzer targets that
//!   call the same functions).
//!
//! The stable driver ([`driver`]) mutates corpus inputs (bit flips, interesting integers,
//! insertions, deletions, splices) without coverage feedback, catches panics, and runs under
//! [`alloc_cap::CappedAlloc`], which fails any single allocation above a cap: a length field
//! that says 4 GB must not allocate it.

pub mod alloc_cap;
pub mod driver;
pub mod seeds;
pub mod targets;

pub use targets::{target, Target, TARGETS};
