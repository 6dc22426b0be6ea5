//! The services core on the seeded mesh simulation (`weft_mesh::sim`), run through the
//! mesh-application trait as the router runs it, with faults: application payloads
//! lost, a partition during which both sides create (also the same names), crashes and
//! restarts with and without the saved state, then a heal. Checked once settled: every
//! running peer holds the same definitions (one per name), the same tasks and the same
//! plan; no VIP or host port is planned twice; no task of a peer that is down is in
//! rotation; a VIP released by its creator is not in any live definition.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::rc::Rc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use weft_mesh::sim::{earlier_targets, Sim, SimConfig};
use weft_mesh::Transmit;
use weft_services::{
    EndpointMode, HealthCheck, HealthKind, PortSpec, Publish, Saved, ServiceEffect, ServiceSpec,
    ServicesCore, CHANNEL,
};
use weft_types::port::Proto;

const PEERS: usize = 32;
const DIGEST: u64 = 1_000;
/// Service names the operations draw from: few, so that creates collide.
const NAMES: [&str; 8] = ["web", "api", "db", "cache", "queue", "auth", "mail", "logs"];

/// Saved state per peer, kept by the test as the router keeps services.json.
type Disk = Rc<RefCell<BTreeMap<usize, Saved>>>;

struct World {
    sim: Sim<ServicesCore>,
    rng: StdRng,
    disk: Disk,
    /// VIPs each peer was told to release.
    released: BTreeMap<usize, BTreeSet<Ipv4Addr>>,
    lost: usize,
    next: u32,
}

fn world(seed: u64, loss: f64) -> World {
    let disk: Disk = Rc::default();
    let d = Rc::clone(&disk);
    let config = SimConfig {
        seed,
        app_loss: loss,
        ..SimConfig::default()
    };
    let mut sim = Sim::new(config, move |i| {
        let saved = d.borrow().get(&i).cloned();
        ServicesCore::new(&format!("p{i:04}"), saved, 0).with_digest_interval(DIGEST)
    });
    let mut rng = StdRng::seed_from_u64(seed);
    for i in 0..PEERS {
        sim.add_peer(&earlier_targets(i, 2, &mut rng));
    }
    sim.run_until_converged(60_000, 100).unwrap();
    World {
        sim,
        rng,
        disk,
        released: BTreeMap::new(),
        lost: 0,
        next: 0,
    }
}

impl World {
    /// Runs `ms`, carrying out the peers' effects as routers do.
    fn run(&mut self, ms: u64) {
        self.sim.run_for(ms);
        for i in 0..self.sim.len() {
            for e in self.sim.take_effects(i) {
                match e {
                    ServiceEffect::Persist(s) => {
                        self.disk.borrow_mut().insert(i, s);
                    }
                    ServiceEffect::ReleaseVip { vip, .. } => {
                        let fresh = self.released.entry(i).or_default().insert(vip);
                        assert!(fresh, "p{i} told twice to release {vip}");
                    }
                    ServiceEffect::Lost { .. } => self.lost += 1,
                    ServiceEffect::PlanChanged => {}
                }
            }
        }
    }

    /// A unique number: VIPs and task addresses never repeat, as IPAM makes them.
    fn unique(&mut self) -> u32 {
        self.next += 1;
        self.next
    }

    /// One random local request on a random running peer.
    fn operate(&mut self) {
        let i = self.rng.random_range(0..self.sim.len());
        if !self.sim.alive(i) {
            return;
        }
        let name = NAMES[self.rng.random_range(0..NAMES.len())];
        let live = self.sim.app(i).definition(name).is_some();
        let op = self.rng.random_range(0..10);
        let n = self.unique();
        let a = Ipv4Addr::from(0x0a00_0000 | (n << 8) | 1);
        match op {
            0 | 1 if !live => {
                let port = self
                    .rng
                    .random_bool(0.5)
                    .then(|| 8000 + self.rng.random_range(0..4));
                // A host port another service publishes is refused: fine.
                let _ = self.try_create(i, name, port, a);
            }
            2 if live => {
                self.sim.with_app(i, |c, now| c.remove(now, name)).unwrap();
            }
            3..=5 if live => {
                let container = format!("c{}", n % 7);
                self.sim
                    .with_app(i, |c, now| c.add_task(now, name, a, &container))
                    .unwrap();
            }
            6 | 7 => {
                let tasks = self.sim.app(i).local_tasks();
                if tasks.is_empty() {
                    return;
                }
                let t = &tasks[self.rng.random_range(0..tasks.len())];
                let healthy = !t.healthy;
                let (s, a) = (t.service.clone(), t.addr);
                assert!(self
                    .sim
                    .with_app(i, |c, now| c.set_health(now, &s, a, healthy)));
            }
            8 => {
                let tasks = self.sim.app(i).local_tasks();
                if let Some(t) = tasks.first() {
                    let (s, a) = (t.service.clone(), t.addr);
                    assert!(self.sim.with_app(i, |c, now| c.remove_task(now, &s, a)));
                }
            }
            9 => {
                let container = format!("c{}", n % 7);
                self.sim
                    .with_app(i, |c, now| c.remove_container(now, &container));
            }
            _ => {}
        }
    }

    /// Peer `i` creates `name`, publishing `port` if given; VIP and health at random.
    fn create(&mut self, i: usize, name: &str, port: Option<u16>) {
        let n = self.unique();
        let a = Ipv4Addr::from(0x0a00_0000 | (n << 8) | 1);
        self.try_create(i, name, port, a).unwrap();
    }

    fn try_create(
        &mut self,
        i: usize,
        name: &str,
        port: Option<u16>,
        a: Ipv4Addr,
    ) -> Result<(), weft_services::ServiceError> {
        let dnsrr = self.rng.random_bool(0.2);
        let health = self.rng.random_bool(0.3).then_some(HealthCheck {
            kind: HealthKind::Tcp,
            interval_ms: 1000,
        });
        let spec = ServiceSpec {
            name: name.into(),
            mode: if dnsrr {
                EndpointMode::Dnsrr
            } else {
                EndpointMode::Vip
            },
            subnet: "10.0.0.0/8".parse().unwrap(),
            vip: (!dnsrr).then_some(a),
            ports: vec![PortSpec {
                proto: Proto::Tcp,
                port: 80,
            }],
            published: port
                .map(|host_port| Publish {
                    proto: Proto::Tcp,
                    host_port,
                    port: 80,
                })
                .into_iter()
                .collect(),
            health,
        };
        self.sim.with_app(i, |c, now| c.create(now, spec)).map(drop)
    }

    /// `n` random requests, 20 ms apart.
    fn operations(&mut self, n: usize) {
        for _ in 0..n {
            self.operate();
            self.run(20);
        }
    }

    /// What peer `i` holds, to compare between peers.
    /// Tasks of peers that are down are left out: a peer that started after they went
    /// down never heard of them (and they are out of rotation everywhere).
    fn state(&mut self, i: usize) -> String {
        let alive: BTreeSet<String> = (0..self.sim.len())
            .filter(|&j| self.sim.alive(j))
            .map(|j| self.sim.name(j).to_string())
            .collect();
        let c = self.sim.app(i);
        let defs: Vec<String> = c
            .definitions()
            .map(|d| format!("{}@{}/{} {:?}", d.spec.name, d.origin, d.version, d.spec))
            .collect();
        let tasks: Vec<String> = c
            .definitions()
            .flat_map(|d| c.tasks(&d.spec.name))
            .filter(|t| alive.contains(&t.host))
            .map(|t| format!("{t:?}"))
            .collect();
        // The registers too (losers withdrawn, tombstones), through what is saved.
        let saved = serde_json::to_value(c.saved()).unwrap();
        format!(
            "{defs:#?}\n{tasks:#?}\n{:#?}\n{:#}",
            c.plan(),
            saved["names"]
        )
    }

    /// Runs until every running peer holds the same, checking every 500 ms.
    /// Returns how long the services took once the mesh had converged.
    fn settle(&mut self, limit: u64) -> u64 {
        self.sim.run_until_converged(60_000, 100).unwrap();
        let start = self.sim.now();
        loop {
            self.run(500);
            let alive: Vec<usize> = (0..self.sim.len()).filter(|&i| self.sim.alive(i)).collect();
            let first = self.state(alive[0]);
            let odd = alive.iter().copied().find(|&i| self.state(i) != first);
            let Some(odd) = odd else {
                return self.sim.now() - start;
            };
            if self.sim.now() - start > limit {
                let theirs = self.state(odd);
                let a: BTreeSet<&str> = first.lines().collect();
                let b: BTreeSet<&str> = theirs.lines().collect();
                panic!(
                    "p{odd:04} does not hold what p{:04} holds after {limit} ms:\nonly p{odd:04}: {:#?}\nonly p{:04}: {:#?}",
                    alive[0],
                    b.difference(&a).collect::<Vec<_>>(),
                    alive[0],
                    a.difference(&b).collect::<Vec<_>>(),
                );
            }
        }
    }

    /// The checks that hold once settled.
    fn check(&mut self) {
        let alive: Vec<usize> = (0..self.sim.len()).filter(|&i| self.sim.alive(i)).collect();
        let down: BTreeSet<String> = (0..self.sim.len())
            .filter(|&i| !self.sim.alive(i))
            .map(|i| self.sim.name(i).to_string())
            .collect();
        let c = self.sim.app(alive[0]);
        let plan = c.plan().clone();
        let defs: Vec<_> = c.definitions().cloned().collect();
        let names: BTreeSet<&str> = defs.iter().map(|d| d.spec.name.as_str()).collect();
        assert_eq!(names.len(), defs.len(), "one definition per name");
        assert_eq!(plan.services.len(), defs.len());
        let vips: Vec<Ipv4Addr> = plan.services.iter().filter_map(|s| s.vip).collect();
        let unique: BTreeSet<_> = vips.iter().collect();
        assert_eq!(unique.len(), vips.len(), "a VIP is planned twice: {vips:?}");
        let ports: Vec<(Proto, u16)> = plan
            .services
            .iter()
            .flat_map(|s| s.published.iter().map(|p| (p.proto, p.host_port)))
            .collect();
        let unique: BTreeSet<_> = ports.iter().collect();
        assert_eq!(unique.len(), ports.len(), "a host port is planned twice");
        for s in &plan.services {
            let tasks = c.tasks(&s.name);
            let mut rotation: Vec<Ipv4Addr> =
                tasks.iter().filter(|t| t.healthy).map(|t| t.addr).collect();
            rotation.dedup();
            assert_eq!(
                s.backends, rotation,
                "{}: backends are the tasks in rotation",
                s.name
            );
            for t in tasks.iter().filter(|t| down.contains(&t.host)) {
                assert!(!t.healthy, "{t:?} of a peer that is down is in rotation");
            }
        }
        // Every losing create of a running peer was withdrawn by it: it cannot come back.
        let saved = serde_json::to_value(c.saved()).unwrap();
        for st in saved["names"].as_array().unwrap() {
            let live: Vec<&str> = st["entries"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| !e["spec"].is_null())
                .map(|e| e["origin"].as_str().unwrap())
                .filter(|o| !down.contains(*o))
                .collect();
            assert!(
                live.len() <= 1,
                "{}: creates of running peers not withdrawn: {live:?}",
                st["name"]
            );
        }
        for d in &defs {
            let origin: usize = d.origin[1..].parse().unwrap();
            if let (Some(vip), Some(rel)) = (d.spec.vip, self.released.get(&origin)) {
                assert!(
                    !rel.contains(&vip),
                    "{} holds VIP {vip} that p{origin} released",
                    d.spec.name
                );
            }
        }
    }
}

fn faults(seed: u64) {
    let loss: f64 = weft_types::knob("WEFT_SERVICES_SIM_LOSS", 0.05);
    let mut w = world(seed, loss);
    w.operations(150);
    // Both sides of a partition go on creating, also the same names.
    w.sim.partition(|j| u32::from(j % 2 == 1));
    w.run(3_000);
    // For sure: one name created on both sides, one host port published by a service on
    // each side.
    w.create(0, "race", Some(9000));
    w.create(1, "race", Some(9001));
    w.create(4, "pa", Some(9100));
    w.create(5, "pb", Some(9100));
    w.operations(150);
    // Crashes: with and without a reset; one peer will find no saved state.
    w.sim.crash(3, true);
    w.sim.crash(8, false);
    w.sim.crash(13, true);
    w.disk.borrow_mut().remove(&13);
    // Its next life remembers nothing: it may be told again of what it released.
    w.released.remove(&13);
    w.run(2_000);
    w.operations(60);
    w.sim.heal();
    w.sim.restart(3);
    w.sim.restart(13);
    w.operations(60);
    let took = w.settle(30_000);
    w.check();
    assert!(
        w.lost > 0,
        "the partition made concurrent creates of one name"
    );
    let c = w.sim.app(0);
    let (defs, tasks) = (
        c.definitions().count(),
        c.plan()
            .services
            .iter()
            .map(|s| s.backends.len())
            .sum::<usize>(),
    );
    assert!(defs > 0 && tasks > 0, "the run left something to compare");
    let t = w.sim.total_traffic();
    eprintln!(
        "seed {seed}: settled {took} ms after the heal's mesh convergence; {defs} services, \
         {tasks} tasks in rotation, {} lost creates; {} messages, {} bytes in all",
        w.lost, t.messages, t.bytes
    );
    // The crashed peer that stayed down: its tasks are kept, out of rotation.
    assert!(!w.sim.alive(8));
}

#[test]
fn peers_converge_after_loss_partition_crashes_and_restarts() {
    let seeds: u64 = weft_types::knob("WEFT_SERVICES_SIM_SEEDS", 2);
    for seed in 1..=seeds {
        faults(seed);
    }
}

#[test]
fn a_peer_sending_garbage_is_dropped_and_the_others_go_on() {
    let mut w = world(7, 0.0);
    w.operations(80);
    w.settle(10_000);
    let hostile = 5;
    w.sim.app_send(
        hostile,
        Transmit::Broadcast {
            channel: CHANNEL,
            payload: vec![weft_services::wire::VERSION, 200, 1, 2, 3],
        },
    );
    w.run(2_000);
    w.operations(40);
    w.settle(20_000);
    w.check();
}

#[test]
fn a_peer_restarted_without_its_state_before_the_others_noticed_catches_up() {
    let mut w = world(11, 0.0);
    w.operations(100);
    w.settle(10_000);
    let before = w.sim.app(0).definitions().count();
    // Crashed without a reset and back at once, its services.json lost.
    w.sim.crash(5, false);
    w.disk.borrow_mut().remove(&5);
    w.released.remove(&5);
    w.sim.restart(5);
    assert!(w.sim.app(5).definitions().next().is_none());
    let took = w.settle(20_000);
    w.check();
    assert_eq!(w.sim.app(5).definitions().count(), before);
    assert!(w.sim.app(5).local_tasks().is_empty());
    let c = w.sim.app(0);
    let of_5: Vec<_> = c
        .definitions()
        .flat_map(|d| c.tasks(&d.spec.name))
        .filter(|t| t.host == "p0005")
        .collect();
    assert!(
        of_5.is_empty(),
        "its old tasks went with its state: {of_5:?}"
    );
    eprintln!("settled {took} ms after the restart");
}
