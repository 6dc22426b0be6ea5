//! Times the service table (not a test; bench/services/nft/run.sh runs it inside a
//! namespace of its own): programming N services × T tasks from scratch, then single
//! changes against that table (one more service, one endpoint more or less, one service
//! less), each the median of ROUNDS runs, nft's process start included.
//!
//! Usage: NETNS=NAME ip netns exec NAME svc_bench [SERVICES [TASKS [ROUNDS]]]
//! (defaults 1000 10 20).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use weft_firewall::{CommandRunner, FirewallError, Proto, Runner, SvcRule, SvcScope, SvcTable};

/// Service `i` with `tasks` tasks: VIP 10.96.0.0/12 + i, TCP 80 and a published port.
fn service(i: u32, tasks: u32) -> SvcRule {
    SvcRule {
        name: format!("svc-{i}"),
        vip: Some(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + i)),
        ports: vec![(Proto::Tcp, 80)],
        published: vec![(Proto::Tcp, 20000 + (i % 40000) as u16, 80)],
        backends: (0..tasks)
            .map(|k| Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 32, 0, 0)) + i * tasks + k + 1))
            .collect(),
    }
}

/// A runner that throws scripts away: what weft itself costs, without nft. With
/// `SVC_BENCH_DUMP=FILE` in the environment it writes the last script there.
struct Discard;
impl Runner for Discard {
    fn run(&mut self, script: &str) -> Result<(), FirewallError> {
        if let Ok(path) = std::env::var("SVC_BENCH_DUMP") {
            std::fs::write(path, script).expect("dump the script");
        }
        Ok(())
    }
}

/// CPU time (user + system) of this process's reaped children so far: nft's own cost,
/// which a loaded machine inflates less than wall time (10 ms resolution).
fn children_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command's closing parenthesis; cutime and cstime are 16 and 17.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = f[13].parse::<u64>().unwrap_or(0) + f[14].parse::<u64>().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn arg(n: usize, default: u32) -> u32 {
    std::env::args()
        .nth(n)
        .map(|a| a.parse().expect("numbers: SERVICES TASKS ROUNDS"))
        .unwrap_or(default)
}

fn main() -> Result<(), FirewallError> {
    // It programs (and at the end deletes) `ip weft_svc` where it runs: only ever in the
    // namespace named by NETNS (made for the bench), never in the one it was started from.
    use std::os::unix::fs::MetadataExt;
    let id = |p: &str| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let netns = std::env::var("NETNS").unwrap_or_default();
    if netns.is_empty() || id(&format!("/run/netns/{netns}")) != id("/proc/self/ns/net") {
        eprintln!("svc_bench: run me as `NETNS=NAME ip netns exec NAME svc_bench ...` in a namespace made for it (bench/services/nft/run.sh does)");
        std::process::exit(2);
    }
    let (n, t, rounds) = (arg(1, 1000), arg(2, 10), arg(3, 20));
    let all: Vec<SvcRule> = (0..n).map(|i| service(i, t)).collect();

    // From scratch: a fresh SvcTable each round (its first sync replaces the table whole).
    let mut full = Vec::new();
    let mut bytes = 0;
    let cpu = children_cpu();
    for _ in 0..rounds.min(5) {
        let mut table = SvcTable::new(CommandRunner::new(), SvcScope::Host);
        let start = Instant::now();
        bytes = table.sync(&all)?.script_bytes;
        full.push(start.elapsed());
    }
    let mut dry = SvcTable::new(Discard, SvcScope::Host);
    let start = Instant::now();
    dry.sync(&all)?;
    let render = start.elapsed();
    let full_rounds = rounds.min(5);
    let cpu = (children_cpu() - cpu) / full_rounds;
    println!(
        "{n} services x {t} tasks from scratch: {} wall (median of {full_rounds}), nft CPU {} (mean); script {} KiB, rendering alone {}",
        ms(median(full)),
        ms(cpu),
        bytes / 1024,
        ms(render)
    );

    let mut table = SvcTable::new(CommandRunner::new(), SvcScope::Host);
    table.sync(&all)?;
    let mut timed = |label: &str, a: &[SvcRule], b: &[SvcRule]| -> Result<(), FirewallError> {
        let (mut there, mut back) = (Vec::new(), Vec::new());
        let (mut bytes, mut cpu_there, mut cpu_back) = (0, Duration::ZERO, Duration::ZERO);
        for _ in 0..rounds {
            let (start, cpu) = (Instant::now(), children_cpu());
            bytes = table.sync(a)?.script_bytes;
            there.push(start.elapsed());
            cpu_there += children_cpu() - cpu;
            let (start, cpu) = (Instant::now(), children_cpu());
            table.sync(b)?;
            back.push(start.elapsed());
            cpu_back += children_cpu() - cpu;
        }
        println!(
            "{label}: {} wall, nft CPU {} (script {bytes} B); undoing it: {} wall, nft CPU {}",
            ms(median(there)),
            ms(cpu_there / rounds),
            ms(median(back)),
            ms(cpu_back / rounds)
        );
        Ok(())
    };
    let mut more = all.clone();
    more.push(service(n, t));
    timed("one more service", &more, &all)?;
    let mut ep = all.clone();
    ep[n as usize / 2].backends.pop();
    timed("one endpoint less", &ep, &all)?;
    timed("one service less", &all[1..], &all)?;
    table.delete()
}
