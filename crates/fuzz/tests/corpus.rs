//! The bounded fuzz pass of `cargo test`: every target over its checked-in corpus, then a
//! fixed number of mutated inputs (deterministic seed), under the capped allocator (an
//! allocation over the cap aborts the test: no target uses `try_reserve`).
//! `WEFT_FUZZ_TEST_EXECS` changes the count per target (default 1,000; a tenth of it for
//! `mesh_session`, whose every run makes a Noise key pair, slow in a debug build).

use weft_fuzz::driver::{self, Budget};

#[global_allocator]
static ALLOC: weft_fuzz::alloc_cap::CappedAlloc = weft_fuzz::alloc_cap::CappedAlloc;

/// An input that breaks the cap is kept under target/, never in the source tree.
fn keep_oom_inputs_under_target() {
    let p =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(weft_fuzz::alloc_cap::OOM_FILE_NAME);
    weft_fuzz::alloc_cap::set_oom_file(&p);
}

#[test]
fn every_target_survives_its_corpus_and_mutations() {
    keep_oom_inputs_under_target();
    let execs: u64 = weft_types::knob("WEFT_FUZZ_TEST_EXECS", 1_000);
    let mut failures = Vec::new();
    for t in weft_fuzz::TARGETS {
        assert!(
            driver::corpus_dir(t.name).is_dir(),
            "no checked-in corpus for {}: run `cargo run -p weft-fuzz -- seed`",
            t.name
        );
        let n = if t.name == "mesh_session" {
            execs / 10
        } else {
            execs
        };
        let start = std::time::Instant::now();
        let r = driver::fuzz(t, Budget::Execs(n), 0x5eed);
        eprintln!(
            "{}: {} execs, {} corpus inputs, {} panics, {:.1} s",
            t.name,
            r.execs,
            r.corpus,
            r.crash_count,
            start.elapsed().as_secs_f64()
        );
        for c in r.crashes {
            failures.push(format!(
                "{}: {} on input {:02x?}",
                t.name, c.message, c.input
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "targets panicked:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_allocation_cap_refuses_a_4_gib_buffer() {
    // The cap is what makes "no unbounded allocation" checkable: a 4 GiB reservation fails.
    keep_oom_inputs_under_target();
    let mut v: Vec<u8> = Vec::new();
    assert!(v.try_reserve_exact(4 << 30).is_err());
    assert!(v.try_reserve_exact(1 << 20).is_ok());
    assert!(weft_fuzz::alloc_cap::refused() > 0);
}
