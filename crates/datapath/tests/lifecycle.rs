//! Attach/detach/reset leave nothing behind, setup that fails half way rolls back, and
//! bad input gives one typed error and changes nothing.

mod common;

use std::path::Path;

use common::*;
use weft_datapath::fastdp::{self, FastdpSpec};
use weft_datapath::{attach, detach, expose, hide, reset, Error, Netns, NetnsTarget};

#[test]
fn detach_removes_addresses_then_the_link() {
    let lab = Lab::new();
    let c1 = Ns::new("c1");
    let info = attach_to(&lab.h1, &c1, &["10.32.2.1/24", "10.32.3.1/24"]);
    assert!(info.created);
    assert_eq!(info.added.len(), 2);
    // Neither address covers the whole range, so the container has a route to it.
    let routes = c1.ip("route");
    assert!(routes.contains("10.32.0.0/12 dev ethwe"), "{routes}");

    // Attaching again with one more address adds only that one to the same interface.
    let again = try_attach(&lab.h1, &c1, "ethwe", &["10.32.2.1/24", "10.32.4.1/24"]).unwrap();
    assert!(!again.created);
    assert_eq!(again.added, vec![net("10.32.4.1/24")]);
    assert_eq!(again.mac, info.mac);

    let d = lab
        .h1
        .run(|| detach(&c1.ns, "ethwe", &[net("10.32.2.1/24")]))
        .unwrap();
    assert_eq!(d.removed, vec![net("10.32.2.1/24")]);
    assert!(!d.link_removed);
    assert!(c1.links().contains(&"ethwe".to_string()));

    let d = lab.h1.run(|| detach(&c1.ns, "ethwe", &[])).unwrap();
    assert_eq!(d.removed.len(), 2);
    assert!(d.link_removed);
    assert_eq!(c1.links(), vec!["lo".to_string()]);
    assert!(
        !lab.h1.links().contains(&info.host_veth),
        "host veth left behind: {:?}",
        lab.h1.links()
    );
    // Detaching what is gone says so.
    let e = lab.h1.run(|| detach(&c1.ns, "ethwe", &[])).unwrap_err();
    assert!(matches!(e, Error::LinkNotFound { .. }), "{e}");
}

#[test]
fn reset_removes_every_weft_link() {
    let lab = Lab::new();
    let (c1, _) = container_on(&lab.h1, "c1", &["10.32.5.1/12"]);
    let (c2, _) = container_on(&lab.h1, "c2", &["10.32.5.2/12"]);
    // A tap named like the sleeve's, so reset has one to remove.
    lab.h1.ip("tuntap add dev weft-sleeve mode tap");
    lab.h1.ip("link set weft-sleeve master weft");
    // A link weft did not make stays.
    lab.h1
        .ip("link add vethother type veth peer name vethother2");

    let mut deleted = lab.h1.run(|| reset("weft")).unwrap();
    deleted.sort();
    assert_eq!(deleted.len(), 5, "{deleted:?}");
    assert!(deleted.contains(&"weft".to_string()));
    assert!(deleted.contains(&"vxlan-6784".to_string()));
    assert!(deleted.contains(&"weft-sleeve".to_string()));
    assert_eq!(
        lab.h1.links(),
        vec!["lo", "ul", "vethother", "vethother2"],
        "reset left or took the wrong links"
    );
    assert_eq!(c1.links(), vec!["lo"]);
    assert_eq!(c2.links(), vec!["lo"]);
    // Reset on a clean host is a no-op.
    assert!(lab.h1.run(|| reset("weft")).unwrap().is_empty());
}

#[test]
fn fastdp_setup_failing_half_way_rolls_back() {
    let h = Ns::new("h");
    // A veth squats the VXLAN device's name: setup creates the bridge, then must stop.
    h.ip("link add vxlan-6784 type veth peer name squat");
    let e = h
        .run(|| fastdp::setup(&FastdpSpec::new("weft", MTU, None)))
        .unwrap_err();
    assert!(matches!(e, Error::LinkKindMismatch { .. }), "{e}");
    assert_eq!(
        h.links(),
        vec!["lo", "squat", "vxlan-6784"],
        "bridge not rolled back"
    );

    // A VNI of more than 24 bits is refused before anything changes.
    h.ip("link del vxlan-6784");
    let mut spec = FastdpSpec::new("weft", MTU, None);
    spec.vxlan.vni = 1 << 24;
    let e = h.run(|| fastdp::setup(&spec)).unwrap_err();
    assert!(
        matches!(e, Error::InvalidParameter { what: "VNI", .. }),
        "{e}"
    );
    assert_eq!(h.links(), vec!["lo"]);

    // Setup twice is fine (the second re-creates the VXLAN device).
    h.run(|| fastdp::setup(&FastdpSpec::new("weft", MTU, None)))
        .unwrap();
    h.run(|| fastdp::setup(&FastdpSpec::new("weft", MTU, None)))
        .unwrap();
    assert_eq!(h.links(), vec!["lo", "vxlan-6784", "weft"]);
}

#[test]
fn attach_failing_half_way_rolls_back() {
    let lab = Lab::new();
    let c1 = Ns::new("c1");
    // A gateway that is not on any link: the veth is made, the default route fails.
    let mut s = spec("ethwe", &["10.32.6.1/12"]);
    s.default_gateway = Some("192.0.2.1".parse().unwrap());
    let before = lab.h1.links();
    let e = lab.h1.run(|| attach(&c1.ns, &s)).unwrap_err();
    assert!(matches!(e, Error::Kernel { .. }), "{e}");
    assert!(e.to_string().contains("default route via 192.0.2.1"), "{e}");
    assert_eq!(lab.h1.links(), before);
    assert_eq!(c1.links(), vec!["lo"]);

    // An on-link gateway works, and the route is there.
    s.default_gateway = Some("10.32.0.100".parse().unwrap());
    lab.h1.run(|| attach(&c1.ns, &s)).unwrap();
    assert!(c1.ip("route").contains("default via 10.32.0.100 dev ethwe"));
}

#[test]
fn bad_input_gives_one_typed_error_and_changes_nothing() {
    let lab = Lab::new();
    let c1 = Ns::new("c1");
    let before_h = lab.h1.links();
    let before_c = c1.links();

    let missing = format!("/run/netns/{}-does-not-exist", c1.name);
    let e = Netns::open(&NetnsTarget::Path(missing.clone().into())).unwrap_err();
    assert!(matches!(e, Error::NetnsOpen { .. }), "{e}");
    assert!(e.to_string().contains(&missing), "{e}");
    let e = Netns::open(&NetnsTarget::Pid(u32::MAX)).unwrap_err();
    assert!(matches!(e, Error::NetnsOpen { .. }), "{e}");
    let e = Netns::open_path(Path::new("/proc/self/ns/uts")).unwrap_err();
    assert!(matches!(e, Error::NotNetns { .. }), "{e}");

    let e = try_attach(&lab.h1, &c1, "averyveryverylongname", &["10.32.7.1/12"]).unwrap_err();
    assert!(matches!(e, Error::InvalidIfname { .. }), "{e}");
    assert!(e.to_string().contains("averyveryverylongname"), "{e}");
    let e = try_attach(&lab.h1, &c1, "eth/0", &["10.32.7.1/12"]).unwrap_err();
    assert!(matches!(e, Error::InvalidIfname { .. }), "{e}");

    let e = try_attach(&lab.h1, &c1, "ethwe", &["10.32.7.1/12", "192.168.1.5/24"]).unwrap_err();
    assert!(matches!(e, Error::AddressOutsideRange { .. }), "{e}");
    assert!(e.to_string().contains("192.168.1.5/24"), "{e}");

    let mut s = spec("ethwe", &["10.32.7.1/12"]);
    s.bridge = "nobridge".into();
    let e = lab.h1.run(|| attach(&c1.ns, &s)).unwrap_err();
    assert!(matches!(e, Error::LinkNotFound { .. }), "{e}");

    // The container already has `ethwe` of another kind: refused, untouched.
    c1.ip("link add ethwe type bridge");
    let e = try_attach(&lab.h1, &c1, "ethwe", &["10.32.7.1/12"]).unwrap_err();
    assert!(matches!(e, Error::LinkKindMismatch { .. }), "{e}");
    c1.ip("link del ethwe");

    let e = lab
        .h1
        .run(|| detach(&c1.ns, "ethwe", &[net("10.32.7.1/12")]))
        .unwrap_err();
    assert!(matches!(e, Error::LinkNotFound { .. }), "{e}");

    assert_eq!(lab.h1.links(), before_h);
    assert_eq!(c1.links(), before_c);
}

#[test]
fn teardown_expose_and_hide_undo_what_they_did() {
    let h = Ns::new("h");
    h.run(|| fastdp::setup(&FastdpSpec::new("weft", MTU, None)))
        .unwrap();
    assert_eq!(h.links(), vec!["lo", "vxlan-6784", "weft"]);

    // Expose is idempotent and hide undoes it; the route into the overlay comes and goes.
    assert!(h.run(|| expose("weft", net("10.32.0.1/12"))).unwrap());
    assert!(!h.run(|| expose("weft", net("10.32.0.1/12"))).unwrap());
    assert!(h.ip("route").contains("10.32.0.0/12 dev weft"));
    assert_eq!(
        h.run(|| weft_datapath::expose::exposed("weft")).unwrap(),
        vec![net("10.32.0.1/12")]
    );
    assert!(h.run(|| hide("weft", net("10.32.0.1/12"))).unwrap());
    assert!(!h.run(|| hide("weft", net("10.32.0.1/12"))).unwrap());
    assert!(!h.ip("route").contains("10.32.0.0/12"));
    let e = h
        .run(|| expose("nobridge", net("10.32.0.1/12")))
        .unwrap_err();
    assert!(matches!(e, Error::LinkNotFound { .. }), "{e}");

    // Teardown removes the VXLAN device (the bridge stays for attached containers).
    assert!(h.run(|| fastdp::teardown(fastdp::VXLAN_NAME)).unwrap());
    assert!(!h.run(|| fastdp::teardown(fastdp::VXLAN_NAME)).unwrap());
    assert_eq!(h.links(), vec!["lo", "weft"]);
    assert_eq!(h.run(|| reset("weft")).unwrap(), vec!["weft".to_string()]);
    assert_eq!(h.links(), vec!["lo"]);
}
