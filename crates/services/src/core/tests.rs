//! Unit tests of the services core: local requests, and a few cores exchanging their
//! gossip directly (the seeded mesh simulation is in tests/sim.rs).

use std::net::Ipv4Addr;

use weft_mesh::{MeshApp, Reachable, TopologyView, Transmit};
use weft_types::port::Proto;

use super::*;
use crate::spec::{EndpointMode, HealthCheck, HealthKind, Publish};
use crate::wire::VERSION;

fn spec(name: &str, vip: u8) -> ServiceSpec {
    crate::spec::sample(name, vip)
}

/// `spec(name, vip)` publishing `host_port` on every host to its tasks' `port`.
fn publishing(name: &str, vip: u8, proto: Proto, host_port: u16, port: u16) -> ServiceSpec {
    ServiceSpec {
        published: vec![Publish {
            proto,
            host_port,
            port,
        }],
        ..spec(name, vip)
    }
}

fn addr(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 32, 0, last)
}

fn view(me: &str, names: &[String]) -> TopologyView {
    let mut peers: Vec<Reachable> = names
        .iter()
        .map(|n| Reachable {
            name: n.clone(),
            ..Reachable::default()
        })
        .collect();
    peers.sort_by(|a, b| a.name.cmp(&b.name));
    TopologyView {
        me: me.into(),
        peers,
    }
}

/// A few cores that deliver each other's gossip at once; `cut` peers do not see each
/// other.
struct Net {
    cores: Vec<ServicesCore>,
    effects: Vec<Vec<ServiceEffect>>,
    up: Vec<bool>,
    now: Millis,
}

impl Net {
    fn new(n: usize) -> Net {
        let cores = (0..n)
            .map(|i| ServicesCore::new(&format!("p{i}"), None, 0))
            .collect();
        let mut net = Net {
            cores,
            effects: vec![Vec::new(); n],
            up: vec![true; n],
            now: 0,
        };
        net.topology();
        net
    }

    fn name(i: usize) -> String {
        format!("p{i}")
    }

    /// Tells every running core which peers run.
    fn topology(&mut self) {
        let running: Vec<String> = (0..self.cores.len())
            .filter(|&i| self.up[i])
            .map(Net::name)
            .collect();
        for i in 0..self.cores.len() {
            if self.up[i] {
                self.cores[i].handle_topology(self.now, &view(&Net::name(i), &running));
            }
        }
        self.deliver();
    }

    fn deliver(&mut self) {
        loop {
            let mut sent = false;
            for i in 0..self.cores.len() {
                while let Some(e) = self.cores[i].poll_effect() {
                    self.effects[i].push(e);
                }
                while let Some(t) = self.cores[i].poll_transmit() {
                    sent = true;
                    let from = Net::name(i);
                    let (dsts, payload): (Vec<usize>, Vec<u8>) = match t {
                        Transmit::To { dst, payload, .. } => {
                            (vec![dst[1..].parse().unwrap()], payload)
                        }
                        Transmit::Broadcast { payload, .. } => {
                            ((0..self.cores.len()).filter(|&j| j != i).collect(), payload)
                        }
                    };
                    for j in dsts {
                        if self.up[i] && self.up[j] {
                            self.cores[j].handle_message(self.now, CHANNEL, &from, &payload);
                        }
                    }
                }
            }
            if !sent {
                return;
            }
        }
    }

    fn with<R>(&mut self, i: usize, f: impl FnOnce(&mut ServicesCore) -> R) -> R {
        let r = f(&mut self.cores[i]);
        self.deliver();
        r
    }

    fn take(&mut self, i: usize) -> Vec<ServiceEffect> {
        std::mem::take(&mut self.effects[i])
    }
}

/// Three peers: p0 created "web", p1 and p2 have a task of it each.
fn web_on_three() -> Net {
    let mut net = Net::new(3);
    net.with(0, |c| c.create(0, spec("web", 10)).map(drop))
        .unwrap();
    net.with(1, |c| c.add_task(0, "web", addr(2), "c1"))
        .unwrap();
    net.with(2, |c| c.add_task(0, "web", addr(3), "c2"))
        .unwrap();
    net
}

fn lost_and_released(effects: &[ServiceEffect]) -> (Vec<String>, Vec<Ipv4Addr>) {
    let mut lost = Vec::new();
    let mut released = Vec::new();
    for e in effects {
        match e {
            ServiceEffect::Lost { winner, .. } => lost.push(winner.clone()),
            ServiceEffect::ReleaseVip { vip, .. } => released.push(*vip),
            _ => {}
        }
    }
    (lost, released)
}

#[test]
fn create_refuses_a_live_name_a_used_vip_and_a_used_host_port() {
    let mut c = ServicesCore::new("me", None, 0);
    let web = publishing("web", 10, Proto::Tcp, 8000, 80);
    let def = c.create(0, web.clone()).unwrap();
    assert_eq!((def.origin.as_str(), def.version), ("me", 1));
    assert_eq!(
        c.create(0, web.clone()),
        Err(ServiceError::Exists("web".into()))
    );
    let err = c.create(0, spec("api", 10)).unwrap_err();
    assert!(
        matches!(err, ServiceError::VipInUse { ref service, .. } if service == "web"),
        "{err}"
    );
    let mut api = spec("api", 11);
    api.published = web.published.clone();
    let err = c.create(0, api).unwrap_err();
    assert!(err.to_string().contains("8000"), "{err}");
    assert!(c.create(0, spec("Bad", 12)).is_err());
    // The same checks before a VIP is allocated.
    let mut pending = spec("api", 10);
    pending.vip = None;
    c.precheck(&pending).unwrap();
    pending.published = web.published.clone();
    assert!(matches!(
        c.precheck(&pending),
        Err(ServiceError::PortInUse { .. })
    ));
    pending.name = "web".into();
    assert!(matches!(c.precheck(&pending), Err(ServiceError::Exists(_))));
    assert_eq!(c.used_host_ports(), vec![(Proto::Tcp, 8000)]);
    c.create(0, spec("api", 11)).unwrap();
    let names: Vec<&str> = c.definitions().map(|d| d.spec.name.as_str()).collect();
    assert_eq!(names, ["api", "web"]);
    let planned: Vec<&str> = c.plan().services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(planned, ["api", "web"]);
    assert_eq!(c.plan().services[1].published, web.published);
    assert_eq!(
        c.remove(0, "nope"),
        Err(ServiceError::Unknown("nope".into()))
    );
}

#[test]
fn remove_releases_the_vip_on_the_creating_host_and_tasks_go_everywhere() {
    let mut net = web_on_three();
    for c in &net.cores {
        assert_eq!(c.plan().services[0].backends, [addr(2), addr(3)]);
    }
    net.take(0);
    // Removed from another host: the VIP is released where it was allocated.
    net.with(2, |c| c.remove(0, "web").map(drop)).unwrap();
    let (_, released) = lost_and_released(&net.take(0));
    assert_eq!(released, [addr(10)]);
    assert!(lost_and_released(&net.take(2)).1.is_empty());
    for c in &net.cores {
        assert!(c.plan().services.is_empty());
        assert!(c.definition("web").is_none());
        assert!(
            c.local_tasks().is_empty(),
            "{}: tasks of a removed service go",
            c.me()
        );
        assert!(c.tasks("web").is_empty());
    }
    // The name is free again.
    net.with(1, |c| c.create(0, spec("web", 10)).map(drop))
        .unwrap();
    assert!(net
        .cores
        .iter()
        .all(|c| c.definition("web").map(|d| d.origin.as_str()) == Some("p1")));
}

#[test]
fn concurrent_creates_settle_on_the_lower_version_and_the_loser_is_told() {
    let mut net = Net::new(3);
    // p1 and p2 create "web" while cut off from each other.
    net.up[2] = false;
    net.topology();
    net.with(0, |c| c.create(0, spec("other", 20)).map(drop))
        .unwrap();
    net.with(1, |c| c.create(0, spec("web", 10)).map(drop))
        .unwrap();
    net.up = vec![false, false, true];
    net.topology();
    net.with(2, |c| {
        // p2's clock is behind: its create has the lower version and wins.
        c.create(0, spec("web", 11)).map(drop)
    })
    .unwrap();
    net.up = vec![true; 3];
    net.topology();
    for c in &net.cores {
        let d = c.definition("web").unwrap();
        assert_eq!((d.origin.as_str(), d.version), ("p2", 1), "on {}", c.me());
        assert_eq!(c.plan().get("web").unwrap().vip, Some(addr(11)));
    }
    let (lost, released) = lost_and_released(&net.take(1));
    assert_eq!((lost, released), (vec!["p2".to_string()], vec![addr(10)]));
    assert_eq!(lost_and_released(&net.take(2)), (vec![], vec![]));
    let hashes: Vec<u64> = net.cores.iter().map(|c| c.names.hash()).collect();
    assert!(hashes.iter().all(|h| *h == hashes[0]), "{hashes:?}");
    // The loser was withdrawn: removing the winner does not bring it back.
    net.with(0, |c| c.remove(0, "web").map(drop)).unwrap();
    assert!(net.cores.iter().all(|c| c.definition("web").is_none()));
}

#[test]
fn tasks_with_a_health_check_enter_rotation_when_healthy() {
    let mut net = Net::new(2);
    let mut web = spec("web", 10);
    web.health = Some(HealthCheck {
        kind: HealthKind::Http {
            path: "/health".into(),
        },
        interval_ms: 1000,
    });
    net.with(0, |c| c.create(0, web).map(drop)).unwrap();
    net.with(1, |c| c.add_task(0, "web", addr(2), "c1"))
        .unwrap();
    net.with(1, |c| c.add_task(0, "web", addr(3), "c1"))
        .unwrap();
    assert!(net.cores[0].plan().get("web").unwrap().backends.is_empty());
    assert!(net.with(1, |c| c.set_health(0, "web", addr(3), true)));
    assert!(
        !net.with(1, |c| c.set_health(0, "web", addr(3), true)),
        "no change"
    );
    assert_eq!(net.cores[0].plan().get("web").unwrap().backends, [addr(3)]);
    let tasks = net.cores[0].tasks("web");
    assert_eq!(tasks.len(), 2);
    assert_eq!((tasks[1].host.as_str(), tasks[1].healthy), ("p1", true));
    // Refusals: unknown service, address outside the subnet or the VIP itself.
    assert!(matches!(
        net.with(1, |c| c.add_task(0, "nope", addr(4), "c")),
        Err(ServiceError::Unknown(_))
    ));
    let err = net
        .with(1, |c| {
            c.add_task(0, "web", Ipv4Addr::new(10, 40, 0, 1), "c")
        })
        .unwrap_err();
    assert!(err.to_string().contains("subnet"), "{err}");
    assert!(net
        .with(1, |c| c.add_task(0, "web", addr(10), "c"))
        .is_err());
    // The container goes: all its tasks.
    assert_eq!(net.with(1, |c| c.remove_container(0, "c1")), 2);
    assert!(net.cores[0].tasks("web").is_empty());
    assert!(!net.with(1, |c| c.remove_task(0, "web", addr(3))));
}

#[test]
fn an_unreachable_hosts_tasks_leave_rotation_until_it_announces_again() {
    let mut net = web_on_three();
    net.take(0);
    net.up[2] = false;
    net.topology();
    assert_eq!(net.cores[0].plan().get("web").unwrap().backends, [addr(2)]);
    assert!(net.take(0).contains(&ServiceEffect::PlanChanged));
    let t = net.cores[0].tasks("web");
    assert_eq!(t.len(), 2, "kept");
    assert!(!t[1].healthy, "but out of rotation");
    // p2 changes its tasks while away; when back its set replaces the old.
    net.cores[2].remove_task(0, "web", addr(3));
    net.cores[2].add_task(0, "web", addr(4), "c3").unwrap();
    net.up[2] = true;
    net.topology();
    for c in &net.cores {
        assert_eq!(
            c.plan().get("web").unwrap().backends,
            [addr(2), addr(4)],
            "on {}",
            c.me()
        );
    }
}

#[test]
fn a_lost_task_delta_is_repaired_by_the_digest() {
    let mut net = Net::new(2);
    net.with(0, |c| c.create(0, spec("web", 10)).map(drop))
        .unwrap();
    net.with(1, |c| c.add_task(0, "web", addr(2), "c1"))
        .unwrap();
    // Lost: p1 changes, its delta never arrives.
    net.cores[1].add_task(0, "web", addr(3), "c1").unwrap();
    while net.cores[1].poll_transmit().is_some() {}
    assert_eq!(net.cores[0].plan().get("web").unwrap().backends, [addr(2)]);
    // The next delta does not apply (its base is ahead): p0 asks for the set.
    net.with(1, |c| c.add_task(0, "web", addr(4), "c1"))
        .unwrap();
    assert_eq!(
        net.cores[0].plan().get("web").unwrap().backends,
        [addr(2), addr(3), addr(4)]
    );
    // Lost again, repaired by the digest this time.
    net.cores[1].remove_task(0, "web", addr(2));
    while net.cores[1].poll_transmit().is_some() {}
    net.now = DIGEST_INTERVAL * 3;
    net.with(1, |c| c.handle_timeout(DIGEST_INTERVAL * 3));
    assert_eq!(
        net.cores[0].plan().get("web").unwrap().backends,
        [addr(3), addr(4)]
    );
}

#[test]
fn names_that_differ_are_asked_for_when_the_difference_outlasts_a_digest() {
    let mut net = Net::new(2);
    net.cores[0].create(0, spec("web", 10)).unwrap();
    while net.cores[0].poll_transmit().is_some() {}
    assert!(net.cores[1].definition("web").is_none());
    // p0's first digest: p1 notes the difference, the second makes it ask.
    net.with(0, |c| c.handle_timeout(DIGEST_INTERVAL));
    assert!(net.cores[1].definition("web").is_none());
    net.with(0, |c| c.handle_timeout(2 * DIGEST_INTERVAL));
    assert!(net.cores[1].definition("web").is_some());
}

#[test]
fn a_peer_that_breaks_the_protocol_is_dropped_and_ignored_until_gone() {
    let mut c = ServicesCore::new("me", None, 0);
    c.handle_topology(0, &view("me", &["me".into(), "evil".into(), "good".into()]));
    while c.poll_transmit().is_some() {}
    c.create(0, spec("web", 10)).unwrap();
    let set = |n: u8| {
        Message::TaskSet {
            seq: 1,
            tasks: (0..n)
                .map(|i| Task {
                    service: "web".into(),
                    addr: addr(i + 1),
                    host: String::new(),
                    container: "c".into(),
                    healthy: true,
                })
                .collect(),
        }
        .encode()
    };
    c.handle_message(0, CHANNEL, "evil", &set(2));
    assert_eq!(c.plan().get("web").unwrap().backends.len(), 2);
    // Another encoding version: ignored, not dropped (rolling upgrades).
    c.handle_message(0, CHANNEL, "evil", &[VERSION + 1, 1]);
    assert!(c.poll_disconnect().is_none());
    // Other channels are not ours.
    c.handle_message(0, CHANNEL + 1, "evil", &[1, 2, 3]);
    assert!(c.poll_disconnect().is_none());
    c.handle_message(0, CHANNEL, "evil", &[VERSION, 99]);
    let d = c.poll_disconnect().expect("dropped");
    assert!(d.reason.contains("kind 99"), "{}", d.reason);
    assert!(
        c.plan().get("web").unwrap().backends.is_empty(),
        "its tasks go"
    );
    c.handle_message(0, CHANNEL, "evil", &set(2));
    assert!(c.plan().get("web").unwrap().backends.is_empty(), "ignored");
    assert!(c.poll_disconnect().is_none(), "dropped once");
    // Gone and back: taken again.
    c.handle_topology(0, &view("me", &["me".into(), "good".into()]));
    c.handle_topology(0, &view("me", &["me".into(), "evil".into(), "good".into()]));
    c.handle_message(0, CHANNEL, "evil", &set(1));
    assert_eq!(c.plan().get("web").unwrap().backends.len(), 1);
    // Too many creates of one name.
    let entries = (0..=crate::limits::MAX_ENTRIES_PER_NAME as u64)
        .map(|v| Entry {
            origin: format!("o{v}"),
            version: v + 1,
            spec: None,
        })
        .collect();
    let names = Message::Names {
        full: false,
        names: vec![NameState {
            name: "x".into(),
            removed: 0,
            entries,
        }],
    };
    c.handle_message(0, CHANNEL, "good", &names.encode());
    let d = c.poll_disconnect().expect("dropped");
    assert_eq!(d.peer, "good");
    assert!(c.definition("x").is_none());
}

#[test]
fn saved_state_survives_a_restart_through_json() {
    let mut c = ServicesCore::new("me", None, 0);
    let web = publishing("web", 10, Proto::Udp, 5353, 53);
    c.create(0, web).unwrap();
    c.create(0, spec("gone", 11)).unwrap();
    c.remove(0, "gone").unwrap();
    c.add_task(0, "web", addr(2), "c1").unwrap();
    let mut saved = None;
    while let Some(e) = c.poll_effect() {
        if let ServiceEffect::Persist(s) = e {
            saved = Some(s);
        }
    }
    let saved = saved.expect("persisted");
    assert_eq!(saved, c.saved());
    let json = serde_json::to_string(&saved).unwrap();
    let back: Saved = serde_json::from_str(&json).unwrap();
    let r = ServicesCore::new("me", Some(back), 0);
    assert_eq!(r.plan(), c.plan());
    assert_eq!(r.local_tasks(), c.local_tasks());
    assert_eq!(r.names.hash(), c.names.hash());
    assert_eq!(r.clock, c.clock);
    // A damaged file: what is invalid is left out, the rest is kept.
    let json = json.replace("\"web\"", "\"Web!\"");
    let r = ServicesCore::new("me", Some(serde_json::from_str(&json).unwrap()), 0);
    assert!(r.definition("web").is_none());
    assert!(r.local_tasks().is_empty());
}

#[test]
fn two_live_services_with_one_vip_or_port_plan_it_once() {
    let mut net = Net::new(2);
    let a = publishing("a", 10, Proto::Tcp, 8080, 80);
    let mut b = a.clone();
    b.name = "b".into();
    net.up = vec![true, false];
    net.topology();
    net.with(0, |c| c.create(0, a).map(drop)).unwrap();
    net.up = vec![false, true];
    net.topology();
    net.with(1, |c| c.create(0, b).map(drop)).unwrap();
    net.up = vec![true, true];
    net.topology();
    for c in &net.cores {
        let (pa, pb) = (c.plan().get("a").unwrap(), c.plan().get("b").unwrap());
        // Equal versions: the lower origin (p0's "a") holds both.
        assert_eq!(pa.vip, Some(addr(10)));
        assert_eq!(pa.published.len(), 1);
        assert_eq!((pb.vip, pb.published.len()), (None, 0));
    }
    // "a" goes: "b" gets them.
    net.with(0, |c| c.remove(0, "a").map(drop)).unwrap();
    for c in &net.cores {
        let pb = c.plan().get("b").unwrap();
        assert_eq!((pb.vip, pb.published.len()), (Some(addr(10)), 1));
    }
}

#[test]
fn own_requests_stay_within_what_peers_accept() {
    let mut c = ServicesCore::new("me", None, 0);
    for i in 0..crate::limits::MAX_SERVICES {
        let mut s = spec(&format!("s{i}"), 0);
        s.mode = EndpointMode::Dnsrr;
        s.vip = None;
        c.create(0, s).unwrap();
    }
    let err = c.create(0, spec("one-more", 10)).unwrap_err();
    assert!(matches!(err, ServiceError::TooMany { .. }), "{err}");
    assert_eq!(c.plan().services.len(), crate::limits::MAX_SERVICES);
    for i in 0..MAX_TASKS_PER_HOST as u32 {
        let a = Ipv4Addr::from(u32::from(addr(0)) + i % 250 + 1);
        let name = format!("s{}", i / 250);
        c.add_task(0, &name, a, "c").unwrap();
    }
    let err = c.add_task(0, "s999", addr(1), "c").unwrap_err();
    assert!(err.to_string().contains("tasks on this host"), "{err}");
    // The same task again is no change, not a refusal.
    c.add_task(0, "s0", addr(1), "c").unwrap();
}

#[test]
fn a_task_delta_past_the_bound_drops_its_sender() {
    let mut c = ServicesCore::new("me", None, 0);
    c.handle_topology(0, &view("me", &["me".into(), "big".into()]));
    while c.poll_transmit().is_some() {}
    c.create(0, spec("web", 10)).unwrap();
    let tasks = |from: u32, n: u32| -> Vec<Task> {
        (from..from + n)
            .map(|i| Task {
                service: "web".into(),
                addr: Ipv4Addr::from(i),
                host: String::new(),
                container: "c".into(),
                healthy: true,
            })
            .collect()
    };
    let full = Message::TaskSet {
        seq: 1,
        tasks: tasks(0, MAX_TASKS_PER_HOST as u32),
    };
    c.handle_message(0, CHANNEL, "big", &full.encode());
    assert!(c.poll_disconnect().is_none(), "at the bound is fine");
    assert_eq!(c.tasks("web").len(), MAX_TASKS_PER_HOST);
    // Only those in the service's subnet are planned.
    assert_eq!(c.plan().get("web").unwrap().backends.len(), 0);
    let delta = Message::TaskDelta {
        base: 1,
        seq: 2,
        upserts: tasks(1_000_000, 1),
        removes: vec![],
    };
    c.handle_message(0, CHANNEL, "big", &delta.encode());
    let d = c.poll_disconnect().expect("dropped");
    assert!(d.reason.contains("per host"), "{}", d.reason);
    assert!(c.tasks("web").is_empty());
}

#[test]
fn of_two_creates_at_one_version_the_lower_origin_wins_and_the_other_is_told() {
    let mut net = Net::new(2);
    net.up = vec![true, false];
    net.topology();
    net.with(0, |c| c.create(0, spec("web", 10)).map(drop))
        .unwrap();
    net.up = vec![false, true];
    net.topology();
    net.with(1, |c| c.create(0, spec("web", 11)).map(drop))
        .unwrap();
    net.up = vec![true, true];
    net.topology();
    for c in &net.cores {
        let d = c.definition("web").unwrap();
        assert_eq!((d.origin.as_str(), d.version), ("p0", 1));
    }
    assert_eq!(
        lost_and_released(&net.take(1)),
        (vec!["p0".to_string()], vec![addr(11)])
    );
    assert_eq!(lost_and_released(&net.take(0)), (vec![], vec![]));
}

#[test]
fn a_forged_create_in_our_name_does_not_free_a_live_vip() {
    let mut c = ServicesCore::new("me", None, 0);
    c.handle_topology(0, &view("me", &["me".into(), "evil".into()]));
    c.create(0, spec("web", 10)).unwrap();
    while c.poll_effect().is_some() {}
    // "evil" says we also created "web" later, with our VIP: it loses, and is withdrawn,
    // but the VIP of the live "web" stays.
    let forged = Message::Names {
        full: false,
        names: vec![NameState {
            name: "web".into(),
            removed: 0,
            entries: vec![Entry {
                origin: "me".into(),
                version: 7,
                spec: Some(spec("web", 10)),
            }],
        }],
    };
    c.handle_message(0, CHANNEL, "evil", &forged.encode());
    let effects: Vec<ServiceEffect> = std::iter::from_fn(|| c.poll_effect()).collect();
    assert_eq!(
        lost_and_released(&effects),
        (vec!["me".to_string()], vec![])
    );
    assert_eq!(c.definition("web").unwrap().version, 1);
}

#[test]
fn the_tasks_of_a_peer_gone_for_long_are_forgotten() {
    let mut net = web_on_three();
    net.up[2] = false;
    net.topology();
    let c = &mut net.cores[0];
    c.handle_timeout(crate::FORGET_AFTER - 1);
    assert_eq!(c.tasks("web").len(), 2, "kept a while");
    c.handle_timeout(crate::FORGET_AFTER + DIGEST_INTERVAL);
    let hosts: Vec<String> = c.tasks("web").into_iter().map(|t| t.host).collect();
    assert_eq!(hosts, ["p1"]);
    // Back: it announces them again.
    net.up[2] = true;
    net.topology();
    assert_eq!(
        net.cores[0].plan().get("web").unwrap().backends,
        [addr(2), addr(3)]
    );
}
