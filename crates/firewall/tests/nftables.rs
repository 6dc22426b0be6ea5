//! The rules on the real kernel: applied inside namespaces this test makes, checked by
//! what traffic does.

mod common;

use common::{firewall, isolating, pings, run, Namespaces};
use weft_firewall::{Firewall, Masquerade, Ruleset};

#[test]
fn apply_is_idempotent_and_reset_leaves_nothing() {
    let mut nss = Namespaces::new();
    let host = nss.add("host");
    let mut rules = isolating(&["10.32.1.0/24"]);
    rules.masquerade = Some(Masquerade {
        range: "10.32.0.0/12".parse().unwrap(),
        bridge: "weft".into(),
    });
    let mut fw = firewall(&host);
    fw.apply(&rules).unwrap();
    fw.apply(&rules).unwrap();
    let listed = run(&["ip", "netns", "exec", &host, "nft", "list", "ruleset"]);
    assert_eq!(listed.matches("masquerade").count(), 2, "{listed}");
    // One isolation drop for bridged frames (bridge table), one for routed packets (inet).
    assert_eq!(listed.matches("weft: isolate").count(), 2, "{listed}");
    // The anti-spoofing guard is declared once, whatever the number of applies.
    assert_eq!(listed.matches("chain guard").count(), 1, "{listed}");
    fw.reset().unwrap();
    fw.reset().unwrap();
    let listed = run(&["ip", "netns", "exec", &host, "nft", "list", "ruleset"]);
    assert!(
        !listed.contains("weft"),
        "tables left after reset: {listed}"
    );
}

#[test]
fn bad_rules_are_refused_and_change_nothing() {
    let mut nss = Namespaces::new();
    let host = nss.add("host");
    let mut fw = firewall(&host);
    let range = "10.32.0.0/12".parse().unwrap();
    let good = Ruleset {
        masquerade: Some(Masquerade {
            range,
            bridge: "weft".into(),
        }),
        ..Default::default()
    };
    fw.apply(&good).unwrap();
    let before = run(&["ip", "netns", "exec", &host, "nft", "list", "ruleset"]);
    let bad = Ruleset {
        masquerade: Some(Masquerade {
            range,
            bridge: "we\"ft".into(),
        }),
        ..Default::default()
    };
    let err = fw.apply(&bad).unwrap_err().to_string();
    assert!(err.contains("nftables refused"), "{err}");
    let after = run(&["ip", "netns", "exec", &host, "nft", "list", "ruleset"]);
    assert_eq!(before, after, "a refused script must change nothing");
}

/// Three containers on one bridge, two subnets: isolation holds even when a container
/// routes the whole range through its interface.
#[test]
fn subnets_are_isolated_on_the_bridge() {
    let mut nss = Namespaces::new();
    let host = nss.host("host");
    let members = [
        ("a", "10.32.1.2/24"),
        ("b", "10.32.1.3/24"),
        ("c", "10.32.2.2/24"),
    ];
    let mut ns_of = std::collections::HashMap::new();
    for (name, addr) in members {
        let c = nss.container(&host, name, addr);
        // The whole range on-link: without the firewall, every container reaches every other.
        run(&[
            "ip",
            "-n",
            &c,
            "route",
            "add",
            "10.32.0.0/12",
            "dev",
            "eth0",
        ]);
        ns_of.insert(name, c);
    }
    assert!(pings(&ns_of["a"], "10.32.2.2"), "without rules a reaches c");

    let rules = isolating(&["10.32.1.0/24", "10.32.2.0/24"]);
    firewall(&host).apply(&rules).unwrap();

    assert!(
        pings(&ns_of["a"], "10.32.1.3"),
        "same subnet must still talk"
    );
    assert!(
        !pings(&ns_of["a"], "10.32.2.2"),
        "a (10.32.1/24) must not reach c"
    );
    assert!(
        !pings(&ns_of["c"], "10.32.1.2"),
        "c (10.32.2/24) must not reach a"
    );

    firewall(&host).reset().unwrap();
    assert!(pings(&ns_of["a"], "10.32.2.2"), "reset removes isolation");
}
