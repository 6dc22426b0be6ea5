//! `weft-fuzz [TARGET...]`: fuzzes each target (all by default) for `WEFT_FUZZ_SECS`
//! seconds (default 60) or `WEFT_FUZZ_EXECS` executions, saves crashing inputs under
//! `crates/fuzz/crashes/`, and exits non-zero if any target panicked.
//! `weft-fuzz seed` writes the built-in seeds to `crates/fuzz/corpus/`.

use std::time::{Duration, Instant};

use weft_fuzz::driver::{self, Budget};

#[global_allocator]
static ALLOC: weft_fuzz::alloc_cap::CappedAlloc = weft_fuzz::alloc_cap::CappedAlloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("seed") {
        for t in weft_fuzz::TARGETS {
            let dir = driver::corpus_dir(t.name);
            if let Err(e) = std::fs::create_dir_all(&dir) {
                eprintln!("weft-fuzz: cannot create {}: {e}", dir.display());
                std::process::exit(1);
            }
            for (i, s) in weft_fuzz::seeds::seeds(t.name).iter().enumerate() {
                if let Err(e) = std::fs::write(dir.join(format!("seed-{i:02}")), s) {
                    eprintln!("weft-fuzz: cannot write the corpus of {}: {e}", t.name);
                    std::process::exit(1);
                }
            }
        }
        return;
    }
    let targets: Vec<&weft_fuzz::Target> = if args.is_empty() {
        weft_fuzz::TARGETS.iter().collect()
    } else {
        let mut out = Vec::new();
        for a in &args {
            match weft_fuzz::target(a) {
                Some(t) => out.push(t),
                None => {
                    let names: Vec<&str> = weft_fuzz::TARGETS.iter().map(|t| t.name).collect();
                    eprintln!(
                        "weft-fuzz: no target {a:?}; the targets are {}",
                        names.join(", ")
                    );
                    std::process::exit(2);
                }
            }
        }
        out
    };
    let env_u64 = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let budget = match (env_u64("WEFT_FUZZ_EXECS"), env_u64("WEFT_FUZZ_SECS")) {
        (Some(n), _) => Budget::Execs(n),
        (None, Some(s)) => Budget::Time(Duration::from_secs(s)),
        (None, None) => Budget::Time(Duration::from_secs(60)),
    };
    let seed = env_u64("WEFT_FUZZ_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let crashes_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crashes");
    if std::fs::create_dir_all(&crashes_dir).is_ok() {
        weft_fuzz::alloc_cap::set_oom_file(&crashes_dir.join(weft_fuzz::alloc_cap::OOM_FILE_NAME));
    }
    let mut failed = false;
    println!("seed {seed}, budget {budget:?}");
    println!(
        "{:<24} {:>12} {:>10} {:>8} {:>8}",
        "target", "execs", "execs/s", "corpus", "crashes"
    );
    for t in targets {
        let start = Instant::now();
        let r = driver::fuzz(t, budget, seed);
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{:<24} {:>12} {:>10.0} {:>8} {:>8}",
            t.name,
            r.execs,
            r.execs as f64 / secs.max(1e-9),
            r.corpus,
            r.crash_count
        );
        for c in &r.crashes {
            failed = true;
            match driver::save_crash(&crashes_dir, t.name, &c.input) {
                Ok(p) => println!("  panic: {} (input saved in {})", c.message, p.display()),
                Err(e) => println!("  panic: {} (input not saved: {e})", c.message),
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}
