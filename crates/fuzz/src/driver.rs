//! The stable fuzz driver: runs a target over its corpus, then over mutations of it, for a
//! number of executions or a time, catching panics. No coverage feedback (that needs
//! cargo-fuzz on nightly); the mutations are the classic ones of AFL and libFuzzer.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::targets::Target;

/// Longest input the driver makes.
pub const MAX_INPUT: usize = 64 * 1024;

/// How long to fuzz one target.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    /// This many mutated executions (after the corpus).
    Execs(u64),
    /// For this long.
    Time(Duration),
}

/// An input that made the target panic.
#[derive(Debug, Clone)]
pub struct Crash {
    /// The input.
    pub input: Vec<u8>,
    /// The panic message.
    pub message: String,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    /// Executions, corpus included.
    pub execs: u64,
    /// Corpus inputs run.
    pub corpus: usize,
    /// Inputs that panicked (at most the first few are kept).
    pub crashes: Vec<Crash>,
    /// Panicking executions in all.
    pub crash_count: u64,
}

/// The folder of the checked-in corpus of `target`.
pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}

/// The corpus of `target`: the checked-in files and the built-in seeds.
pub fn load_corpus(target: &str) -> Vec<Vec<u8>> {
    let mut inputs = crate::seeds::seeds(target);
    if let Ok(dir) = std::fs::read_dir(corpus_dir(target)) {
        let mut paths: Vec<PathBuf> = dir.filter_map(|e| Some(e.ok()?.path())).collect();
        paths.sort();
        for p in paths {
            if let Ok(bytes) = std::fs::read(&p) {
                if bytes.len() <= MAX_INPUT && !inputs.contains(&bytes) {
                    inputs.push(bytes);
                }
            }
        }
    }
    if inputs.is_empty() {
        inputs.push(Vec::new());
    }
    inputs
}

/// Runs `target` on one input; `Err` with the panic message if it panicked.
pub fn run_one(target: &Target, input: &[u8]) -> Result<(), String> {
    crate::alloc_cap::set_current(input);
    let r = catch_unwind(AssertUnwindSafe(|| (target.run)(input)));
    crate::alloc_cap::clear_current();
    r.map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())
    })
}

/// Fuzzes `target`: its corpus once, then mutations within `budget`.
pub fn fuzz(target: &Target, budget: Budget, seed: u64) -> RunReport {
    let corpus = load_corpus(target.name);
    let mut report = RunReport {
        corpus: corpus.len(),
        ..Default::default()
    };
    let quiet = QuietPanics::install();
    let record = |report: &mut RunReport, input: &[u8], r: Result<(), String>| {
        report.execs += 1;
        if let Err(message) = r {
            report.crash_count += 1;
            if report.crashes.len() < 8 {
                report.crashes.push(Crash {
                    input: input.to_vec(),
                    message,
                });
            }
        }
    };
    for input in &corpus {
        let r = run_one(target, input);
        record(&mut report, input, r);
    }
    let mut rng = Rng::new(seed ^ hash(target.name.as_bytes()));
    let start = Instant::now();
    let mut mutated = 0u64;
    let mut current: Vec<u8> = Vec::new();
    loop {
        match budget {
            Budget::Execs(n) if mutated >= n => break,
            Budget::Time(d) if mutated.is_multiple_of(256) && start.elapsed() >= d => break,
            _ => {}
        }
        // Mostly start again from a corpus input; sometimes keep mutating the last one.
        if current.is_empty() || rng.below(4) != 0 {
            current.clone_from(&corpus[rng.below(corpus.len())]);
        }
        let rounds = 1 + rng.below(8);
        for _ in 0..rounds {
            mutate(&mut current, &corpus, &mut rng);
        }
        let r = run_one(target, &current);
        record(&mut report, &current, r);
        mutated += 1;
    }
    drop(quiet);
    report
}

/// A panic hook, as `std::panic::take_hook` returns it.
type PanicHook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send>;

/// Silences the panic hook while fuzzing (panics are caught and reported).
struct QuietPanics {
    previous: Option<PanicHook>,
}

impl QuietPanics {
    fn install() -> Self {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        QuietPanics {
            previous: Some(previous),
        }
    }
}

impl Drop for QuietPanics {
    fn drop(&mut self) {
        // The hook cannot change while a panic (of the driver itself) unwinds.
        if std::thread::panicking() {
            return;
        }
        if let Some(p) = self.previous.take() {
            std::panic::set_hook(p);
        }
    }
}

/// xorshift64*: small, fast and deterministic for a seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

fn hash(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Integers that break decoders: boundaries of every width, both byte orders.
const INTERESTING: [u64; 12] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0xffff_ffff,
    0xffff_fffe,
    u64::MAX,
];

/// Applies one random mutation to `buf`.
pub fn mutate(buf: &mut Vec<u8>, corpus: &[Vec<u8>], rng: &mut Rng) {
    let len = buf.len();
    match rng.below(11) {
        0 if len > 0 => {
            let i = rng.below(len);
            buf[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            buf[i] = rng.next_u64() as u8;
        }
        2 if len > 0 => {
            let i = rng.below(len);
            buf[i] = buf[i].wrapping_add(rng.below(35) as u8).wrapping_sub(17);
        }
        3 => {
            // An interesting integer of 1, 2, 4 or 8 bytes, big or little endian.
            let width = 1 << rng.below(4);
            if len >= width {
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let at = rng.below(len - width + 1);
                let bytes = if rng.below(2) == 0 {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                };
                let src = if rng.below(2) == 0 {
                    &bytes[8 - width..]
                } else {
                    &bytes[..width]
                };
                buf[at..at + width].copy_from_slice(src);
            }
        }
        4 if len < MAX_INPUT => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            buf.splice(at..at, bytes);
        }
        5 if len > 0 => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(64));
            buf.drain(at..at + n);
        }
        6 if len > 0 && len < MAX_INPUT => {
            // Duplicate a range (repeated fields, repeated frames).
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(256));
            let piece = buf[at..at + n].to_vec();
            let to = rng.below(len + 1);
            buf.splice(to..to, piece);
        }
        7 => {
            // Splice in a piece of another corpus input.
            let other = &corpus[rng.below(corpus.len())];
            if !other.is_empty() {
                let at = rng.below(other.len());
                let n = 1 + rng.below((other.len() - at).min(256));
                let to = rng.below(len + 1);
                let end = (to + n).min(len);
                buf.splice(to..end, other[at..at + n].iter().copied());
            }
        }
        8 if len > 0 => buf.truncate(rng.below(len)),
        9 if len > 0 => {
            // Swap two bytes.
            let (a, b) = (rng.below(len), rng.below(len));
            buf.swap(a, b);
        }
        10 if len > 0 => {
            // An ASCII character that matters to text formats.
            let i = rng.below(len);
            const TEXT: &[u8] = b"{}[]\":,.0-9e/ \\\n\0";
            buf[i] = TEXT[rng.below(TEXT.len())];
        }
        _ => {
            if len < MAX_INPUT {
                buf.push(rng.next_u64() as u8);
            }
        }
    }
    buf.truncate(MAX_INPUT);
}

/// Writes a crashing input to `dir/TARGET-HASH` and returns the path.
pub fn save_crash(dir: &Path, target: &str, input: &[u8]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{target}-{:016x}", hash(input)));
    std::fs::write(&path, input)?;
    Ok(path)
}
