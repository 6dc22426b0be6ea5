//! Gratuitous ARP: an address that moves to another container (on the same or another
//! host) is found at its new place within a second, without waiting for ARP to expire.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::*;
use weft_datapath::nl::Handle;
use weft_datapath::{detach, expose, hide, link, neigh};

/// The MAC `ns` has for `ip` in its neighbour table (on any link).
fn neighbour_mac(ns: &Ns, ip: Ipv4Addr) -> Option<[u8; 6]> {
    ns.run(|| {
        let mut h = Handle::current()?;
        neigh::list(&mut h, None)
    })
    .unwrap()
    .into_iter()
    .find(|n| n.ip == ip)
    .and_then(|n| n.mac)
}

#[test]
fn moved_address_is_announced_to_other_hosts() {
    let lab = Lab::new();
    // Host 1 is on the overlay, so it has a neighbour table for container addresses.
    assert!(lab
        .h1
        .run(|| expose("weft", net("10.32.0.100/12")))
        .unwrap());
    let c1 = Ns::new("c1");
    attach_to(&lab.h1, &c1, &["10.32.9.1/12"]);
    let c2 = Ns::new("c2");
    let c3 = Ns::new("c3");
    let c4 = Ns::new("c4");
    let x: Ipv4Addr = "10.32.9.7".parse().unwrap();

    let a2 = attach_to(&lab.h2, &c2, &["10.32.9.7/12"]);
    assert!(lab.h1.ping("10.32.9.7"), "host 1 cannot reach c2");
    assert!(c1.ping("10.32.9.7"), "c1 cannot reach c2");
    assert_eq!(neighbour_mac(&lab.h1, x), Some(a2.mac));
    assert_eq!(neighbour_mac(&c1, x), Some(a2.mac));

    // Move 1: from c2 to c3, both on host 2; the announcement crosses VXLAN (flooded).
    lab.h2
        .run(|| detach(&c2.ns, "ethwe", &[net("10.32.9.7/12")]))
        .unwrap();
    let a3 = attach_to(&lab.h2, &c3, &["10.32.9.7/12"]);
    assert_ne!(a3.mac, a2.mac);
    let moved = wait_for(Duration::from_secs(1), || {
        neighbour_mac(&lab.h1, x) == Some(a3.mac) && neighbour_mac(&c1, x) == Some(a3.mac)
    });
    assert!(
        moved,
        "after 1 s host 1 still has {:02x?}, c1 {:02x?}, want {:02x?}",
        neighbour_mac(&lab.h1, x),
        neighbour_mac(&c1, x),
        a3.mac
    );
    assert!(
        lab.h1.ping("10.32.9.7"),
        "host 1 cannot reach the address at c3"
    );
    assert!(c1.ping("10.32.9.7"), "c1 cannot reach the address at c3");

    // Move 2: from c3 on host 2 to c4 on host 1.
    lab.h2
        .run(|| detach(&c3.ns, "ethwe", &[net("10.32.9.7/12")]))
        .unwrap();
    let a4 = attach_to(&lab.h1, &c4, &["10.32.9.7/12"]);
    let moved = wait_for(Duration::from_secs(1), || {
        neighbour_mac(&lab.h1, x) == Some(a4.mac) && neighbour_mac(&c1, x) == Some(a4.mac)
    });
    assert!(moved, "second move not seen within 1 s");
    assert!(lab.h1.ping("10.32.9.7"));
    assert!(c1.ping("10.32.9.7"));
    // The old places have no interface left.
    assert_eq!(c2.links(), vec!["lo"]);
    assert_eq!(c3.links(), vec!["lo"]);

    // Hide takes the host off the overlay.
    assert!(lab.h1.run(|| hide("weft", net("10.32.0.100/12"))).unwrap());
    let br = lab
        .h1
        .run(|| link::require(&mut Handle::current()?, "weft"))
        .unwrap();
    assert!(!lab.h1.ip("-4 addr show dev weft").contains("10.32.0.100"));
    assert!(br.up);
}
