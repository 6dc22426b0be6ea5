//! The Engine API client against a fake dockerd on a unix socket: paths with the API
//! version, typed answers, error kinds, and the event stream across chunk boundaries.

mod fake_dockerd;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use bytes::Bytes;
use fake_dockerd::FakeDockerd;
use futures::StreamExt;
use serde_json::json;
use tokio::sync::mpsc;
use weft_docker::engine::{CreateNetwork, Engine, EngineError};

const LIMIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn calls_carry_the_api_version_and_decode() {
    let fake = FakeDockerd::start();
    fake.add_network("weft", "weft", "10.32.0.0/12");
    fake.state.containers.lock().unwrap().push((
        "web".into(),
        json!({"Id": "c0ffee", "Name": "/web", "State": {"Running": true, "Pid": 77, "Status": "running"},
               "Config": {"Hostname": "web", "Env": null, "Labels": null},
               "HostConfig": {"NetworkMode": "weft"},
               "NetworkSettings": {"Networks": {"weft": {"IPAddress": "10.32.0.2", "IPPrefixLen": 12}}}}),
    ));
    let engine = Engine::new(fake.socket.clone());
    engine.ping().await.unwrap();

    let c = engine.inspect_container("web").await.unwrap().unwrap();
    assert_eq!(
        (c.id.as_str(), c.short_name(), c.state.pid),
        ("c0ffee", "web", 77)
    );
    assert_eq!(c.network_settings.networks["weft"].ip_address, "10.32.0.2");
    assert!(engine.inspect_container("nope").await.unwrap().is_none());

    let list = engine.list_containers(true).await.unwrap();
    assert_eq!(list[0].names, vec!["/web"]);

    let nets = engine.list_networks().await.unwrap();
    assert_eq!(nets.len(), 1);
    assert_eq!(nets[0].ipam.driver, "weft");

    let uris: Vec<String> = fake.state.requests().into_iter().map(|r| r.uri).collect();
    assert_eq!(
        uris,
        vec![
            "/v1.41/_ping",
            "/v1.41/containers/web/json",
            "/v1.41/containers/nope/json",
            "/v1.41/containers/json?all=1",
            "/v1.41/networks",
        ]
    );
}

#[tokio::test]
async fn networks_create_conflict_connect_and_remove() {
    let fake = FakeDockerd::start();
    let engine = Engine::new(fake.socket.clone());
    let req = CreateNetwork {
        name: "weft-10.33.0.0-24".into(),
        driver: "weft".into(),
        ipam_driver: Some("weft".into()),
        subnet: Some("10.33.0.0/24".into()),
        ..CreateNetwork::default()
    };
    let id = engine.create_network(&req).await.unwrap();
    assert_eq!(id, "id-weft-10.33.0.0-24");
    let again = engine.create_network(&req).await.unwrap_err();
    assert!(again.is_conflict(), "{again}");
    assert!(again.to_string().contains("already exists"), "{again}");

    let net = engine
        .inspect_network("weft-10.33.0.0-24")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        net.ipv4_subnets().collect::<Vec<_>>(),
        vec!["10.33.0.0/24".parse().unwrap()]
    );

    engine
        .connect_network(
            "weft-10.33.0.0-24",
            "web",
            Some(Ipv4Addr::new(10, 33, 0, 4)),
        )
        .await
        .unwrap();
    let connect = fake
        .state
        .find("POST", "/networks/weft-10.33.0.0-24/connect");
    assert_eq!(
        connect[0].json(),
        json!({"Container": "web", "EndpointConfig": {"IPAMConfig": {"IPv4Address": "10.33.0.4"}}})
    );
    *fake.state.fail_connect.lock().unwrap() = Some("weft-10.33.0.0-24".into());
    let e = engine
        .connect_network("weft-10.33.0.0-24", "web", None)
        .await
        .unwrap_err();
    assert!(matches!(e, EngineError::Api { status: 500, .. }), "{e}");
    assert!(e.to_string().contains("no address left in the pool"), "{e}");

    engine.remove_network("weft-10.33.0.0-24").await.unwrap();
    assert!(engine
        .inspect_network("weft-10.33.0.0-24")
        .await
        .unwrap()
        .is_none());
    let e = engine
        .remove_network("weft-10.33.0.0-24")
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");
}

#[tokio::test]
async fn events_survive_chunk_boundaries_and_bad_lines() {
    let fake = FakeDockerd::start();
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    *fake.state.events.lock().unwrap() = Some(rx);
    let engine = Engine::new(fake.socket.clone());
    let mut filters = BTreeMap::new();
    filters.insert("type".to_string(), vec!["container".to_string()]);
    filters.insert(
        "event".to_string(),
        vec!["start".to_string(), "die".to_string()],
    );
    let stream = tokio::time::timeout(LIMIT, engine.events(&filters))
        .await
        .expect("the stream opens before any event")
        .unwrap();
    let mut stream = Box::pin(stream);

    let start = r#"{"Type":"container","Action":"start","Actor":{"ID":"c0ffee","Attributes":{"name":"web"}},"time":1700000000}"#;
    let die = r#"{"Type":"container","Action":"die","Actor":{"ID":"c0ffee","Attributes":{"exitCode":"0"}},"time":1700000001}"#;
    let (a, b) = start.split_at(30);
    tx.send(Bytes::from(a.to_string())).await.unwrap();
    tx.send(Bytes::from(format!("{b}\n{{broken\n")))
        .await
        .unwrap();
    let first = tokio::time::timeout(LIMIT, stream.next())
        .await
        .expect("an event split over two chunks arrives whole")
        .unwrap()
        .unwrap();
    assert_eq!(first.action, "start");
    assert_eq!(first.actor.attributes["name"], "web");
    let bad = stream.next().await.unwrap().unwrap_err();
    assert!(matches!(bad, EngineError::Decode { .. }), "{bad}");
    tx.send(Bytes::from(format!("{die}\n"))).await.unwrap();
    let third = stream.next().await.unwrap().unwrap();
    assert_eq!((third.action.as_str(), third.time), ("die", 1700000001));
    drop(tx);
    assert!(tokio::time::timeout(LIMIT, stream.next())
        .await
        .expect("the stream ends with dockerd's")
        .is_none());

    let req = &fake.state.find("GET", "/events")[0];
    let query = req.uri.split_once("?filters=").unwrap().1;
    let decoded = percent_decode(query);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&decoded).unwrap(),
        json!({"event": ["start", "die"], "type": ["container"]})
    );
}

#[tokio::test]
async fn no_dockerd_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("docker.sock");
    let engine = Engine::from_docker_host(Some(&format!("unix://{}", sock.display()))).unwrap();
    let e = engine.ping().await.unwrap_err();
    assert!(matches!(e, EngineError::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains(&sock.display().to_string()), "{e}");
}

fn percent_decode(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn a_dockerd_that_never_answers_gives_an_error_in_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hung.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    // Accepts and holds connections, never answering.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let engine = Engine::new(path.clone()).with_call_timeout(Duration::from_millis(300));
    let e = tokio::time::timeout(LIMIT, engine.list_networks())
        .await
        .expect("the call must end by itself")
        .unwrap_err();
    assert!(matches!(e, EngineError::Transport { .. }), "{e:?}");
    assert!(e.to_string().contains("no answer within"), "{e}");
    holder.abort();
}
