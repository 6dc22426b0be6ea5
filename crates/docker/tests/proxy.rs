//! The Docker API proxy between a client and a fake dockerd on unix sockets: requests pass
//! through unchanged, streams flow as they come, hijacked sessions carry bytes both ways
//! with half-close, and container create is rewritten per WEFT_CIDR.

mod fake_dockerd;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use fake_dockerd::FakeDockerd;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use weft_docker::proxy::{serve, ProxyConfig};

const LIMIT: Duration = Duration::from_secs(10);

fn config() -> ProxyConfig {
    ProxyConfig {
        default_network: "weft".into(),
        default_subnet: "10.32.0.0/16".parse().unwrap(),
        range: "10.32.0.0/12".parse().unwrap(),
        dns_server: Some(Ipv4Addr::new(127, 0, 0, 12)),
        dns_domain: Some("weft.local".into()),
        driver: "weft".into(),
    }
}

/// A running proxy; stopped (and checked to stop) by [`Proxy::stop`].
struct Proxy {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Proxy {
    fn start(upstream: &Path) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("proxy.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, upstream.to_path_buf(), config(), async {
            let _ = rx.await;
        }));
        Proxy {
            _dir: dir,
            socket,
            stop: Some(tx),
            task,
        }
    }

    /// `POST uri` (a container create) with a create body carrying `env`, on a connection
    /// of its own.
    async fn create(&self, uri: &str, env: &[&str]) -> (StatusCode, Value) {
        once(&self.socket, "POST", uri, Some(create_body(env))).await
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(LIMIT, &mut self.task)
            .await
            .expect("the proxy stops when told to")
            .unwrap();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn connect(socket: &Path) -> SendRequest<Full<Bytes>> {
    let stream = UnixStream::connect(socket).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

async fn call(
    sender: &mut SendRequest<Full<Bytes>>,
    method: &str,
    uri: &str,
    body: Option<Vec<u8>>,
) -> (StatusCode, hyper::HeaderMap, Bytes) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "docker")
        .header("user-agent", "Docker-Client/20.10.24 (linux)")
        .header("x-weft-test", "kept");
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .unwrap();
    let resp = tokio::time::timeout(LIMIT, sender.send_request(req))
        .await
        .expect("the proxy answers")
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
}

async fn once(socket: &Path, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut s = connect(socket).await;
    let (status, _, bytes) = call(
        &mut s,
        method,
        uri,
        body.map(|b| b.to_string().into_bytes()),
    )
    .await;
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)))
    };
    (status, v)
}

#[tokio::test]
async fn passes_requests_through_unchanged_on_one_kept_alive_connection() {
    let fake = FakeDockerd::start();
    fake.add_network("bridge", "bridge", "172.17.0.0/16");
    let proxy = Proxy::start(&fake.socket);
    let mut s = connect(&proxy.socket).await;

    let (status, headers, body) = call(&mut s, "GET", "/_ping", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "OK");
    assert_eq!(headers["api-version"], "1.41");

    let uri = "/v1.41/containers/json?all=1&filters=%7B%22label%22%3A%5B%22a%22%5D%7D";
    let (status, _, body) = call(&mut s, "GET", uri, None).await;
    assert_eq!(status, StatusCode::OK);
    let list: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(list[0]["Names"][0], "/web");

    // A request body (not a container create) arrives byte for byte.
    let raw = br#"{"Name":"n1",  "Driver":"bridge" ,"Labels":{"x":"y"}}"#.to_vec();
    let (status, _, _) = call(&mut s, "POST", "/v1.40/networks/create", Some(raw.clone())).await;
    assert_eq!(status, StatusCode::CREATED);

    // Errors of dockerd pass through as they are.
    let (status, _, body) = call(&mut s, "GET", "/v1.41/containers/nope/json", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"message": "No such container: nope"})
    );

    let seen = fake.state.requests();
    let uris: Vec<&str> = seen.iter().map(|r| r.uri.as_str()).collect();
    assert_eq!(
        uris,
        vec![
            "/_ping",
            uri,
            "/v1.40/networks/create",
            "/v1.41/containers/nope/json"
        ]
    );
    for r in &seen {
        assert_eq!(r.headers["x-weft-test"], "kept");
        assert_eq!(r.headers["user-agent"], "Docker-Client/20.10.24 (linux)");
        assert_eq!(r.headers["host"], "docker");
    }
    assert_eq!(seen[2].body, Bytes::from(raw));
    // One client connection kept alive → one connection to dockerd.
    assert_eq!(
        fake.state
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    drop(s);
    proxy.stop().await;
}

#[tokio::test]
async fn streams_chunked_answers_as_they_come() {
    let fake = FakeDockerd::start();
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    *fake.state.events.lock().unwrap() = Some(rx);
    let proxy = Proxy::start(&fake.socket);
    let mut s = connect(&proxy.socket).await;
    let req = Request::builder()
        .uri("/v1.41/events?filters=%7B%7D")
        .header("host", "docker")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(LIMIT, s.send_request(req))
        .await
        .expect("the event stream's head arrives before any event")
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    // Each chunk reaches the client while dockerd still holds the stream open.
    for chunk in [
        &b"{\"Type\":\"container\",\"Action\":\"st"[..],
        b"art\"}\n",
        b"{\"Type\":\"network\"}\n",
    ] {
        tx.send(Bytes::from_static(chunk)).await.unwrap();
        let mut got = Vec::new();
        while got.len() < chunk.len() {
            let frame = tokio::time::timeout(LIMIT, body.frame())
                .await
                .expect("a chunk dockerd sent reaches the client without waiting for more")
                .expect("the stream is still open")
                .unwrap();
            if let Ok(data) = frame.into_data() {
                got.extend_from_slice(&data);
            }
        }
        assert_eq!(got, chunk);
    }
    drop(tx);
    let end = tokio::time::timeout(LIMIT, body.frame())
        .await
        .expect("the end of dockerd's stream reaches the client");
    assert!(end.is_none());
    proxy.stop().await;
}

/// Reads an HTTP head (up to the blank line) and returns it and whatever came after.
async fn read_head(stream: &mut UnixStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).to_string();
            return (head, buf[i + 4..].to_vec());
        }
        let n = tokio::time::timeout(LIMIT, stream.read(&mut chunk))
            .await
            .expect("an answer head")
            .unwrap();
        assert!(n > 0, "connection closed before the head: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn read_exact_timeout(stream: &mut UnixStream, pending: &mut Vec<u8>, want: &[u8]) {
    let mut chunk = [0u8; 1024];
    while pending.len() < want.len() {
        let n = tokio::time::timeout(LIMIT, stream.read(&mut chunk))
            .await
            .expect("the echo comes back")
            .unwrap();
        assert!(n > 0, "closed early; have {pending:?}");
        pending.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(&pending[..want.len()], want);
    pending.drain(..want.len());
}

#[tokio::test]
async fn hijacked_attach_carries_bytes_both_ways_and_half_closes() {
    let fake = FakeDockerd::start();
    let proxy = Proxy::start(&fake.socket);
    let mut stream = UnixStream::connect(&proxy.socket).await.unwrap();
    // What the docker 20.10 CLI sends for `docker attach` / `docker run -i`.
    stream
        .write_all(
            b"POST /v1.41/containers/c0ffee/attach?stderr=1&stdin=1&stdout=1&stream=1 HTTP/1.1\r\n\
              Host: docker\r\nUser-Agent: Docker-Client/20.10.24 (linux)\r\n\
              Content-Length: 0\r\nContent-Type: text/plain\r\n\
              Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n",
        )
        .await
        .unwrap();
    let (head, mut pending) = read_head(&mut stream).await;
    let lower = head.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 101"), "{head}");
    assert!(lower.contains("upgrade: tcp"), "{head}");
    assert!(
        lower.contains("content-type: application/vnd.docker.raw-stream"),
        "{head}"
    );
    for line in [&b"echo hello\n"[..], b"second line\n"] {
        stream.write_all(line).await.unwrap();
        read_exact_timeout(&mut stream, &mut pending, line).await;
    }
    // stdin ends: the container side must see EOF while its output still reaches us.
    stream.shutdown().await.unwrap();
    read_exact_timeout(&mut stream, &mut pending, b"stdin closed\n").await;
    let mut rest = Vec::new();
    tokio::time::timeout(LIMIT, stream.read_to_end(&mut rest))
        .await
        .expect("the session ends after dockerd closes")
        .unwrap();
    assert!(
        rest.is_empty() && pending.is_empty(),
        "{rest:?} {pending:?}"
    );
    let attach = fake.state.find("POST", "/containers/c0ffee/attach");
    assert_eq!(attach.len(), 1);
    assert_eq!(attach[0].headers["upgrade"], "tcp");
    proxy.stop().await;
}

/// A fake dockerd that has weft's default network (as once the router has made it).
fn fake_with_weft_network() -> FakeDockerd {
    let fake = FakeDockerd::start();
    fake.add_network("weft", "weft", "10.32.0.0/16");
    fake
}

/// The body of the first container create that reached dockerd.
fn created_body(fake: &FakeDockerd) -> Value {
    fake.state.find("POST", "/containers/create")[0].json()
}

/// The body the docker 20.10 CLI sends for `docker run --name web -e ... busybox sh`.
fn create_body(env: &[&str]) -> Value {
    json!({
        "Hostname": "", "Domainname": "", "User": "", "AttachStdin": false,
        "AttachStdout": true, "AttachStderr": true, "Tty": false, "OpenStdin": false,
        "StdinOnce": false, "Env": env, "Cmd": ["sh"], "Image": "busybox",
        "Volumes": {}, "WorkingDir": "", "Entrypoint": null, "OnBuild": null, "Labels": {},
        "HostConfig": {"Binds": null, "NetworkMode": "default", "PortBindings": {},
            "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}, "AutoRemove": false,
            "Dns": [], "DnsOptions": [], "DnsSearch": [], "ExtraHosts": null},
        "NetworkingConfig": {"EndpointsConfig": {}}
    })
}

#[tokio::test]
async fn create_is_rewritten_onto_weft_networks() {
    let fake = FakeDockerd::start();
    fake.add_network("bridge", "bridge", "172.17.0.0/16");
    fake.add_network("weft", "weft", "10.32.0.0/16");
    fake.add_network("blue", "weft", "10.34.0.0/24");
    let proxy = Proxy::start(&fake.socket);
    let env = [
        "PATH=/bin",
        "WEFT_CIDR=ip:10.33.0.5/24 net:default net:10.34.0.0/24",
    ];
    let (status, answer) = proxy
        .create("/v1.41/containers/create?name=web", &env)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["Id"], "c0ffee0123456789");

    let created = fake.state.find("POST", "/networks/create");
    assert_eq!(created.len(), 1);
    let net = created[0].json();
    assert_eq!(net["Name"], "weft-10.33.0.0-24");
    assert_eq!(net["Driver"], "weft");
    assert_eq!(net["CheckDuplicate"], true);
    assert_eq!(
        net["IPAM"],
        json!({"Driver": "weft", "Config": [{"Subnet": "10.33.0.0/24"}]})
    );

    let create = fake.state.find("POST", "/containers/create");
    assert_eq!(create.len(), 1);
    assert_eq!(create[0].uri, "/v1.41/containers/create?name=web");
    let mut want = create_body(&env);
    want["HostConfig"]["NetworkMode"] = json!("weft-10.33.0.0-24");
    want["HostConfig"]["Dns"] = json!(["127.0.0.12"]);
    want["HostConfig"]["DnsSearch"] = json!(["weft.local"]);
    want["NetworkingConfig"]["EndpointsConfig"] =
        json!({"weft-10.33.0.0-24": {"IPAMConfig": {"IPv4Address": "10.33.0.5"}}});
    want["Hostname"] = json!("web");
    want["Domainname"] = json!("weft.local");
    assert_eq!(create[0].json(), want);
    assert_eq!(
        create[0].headers["content-length"],
        create[0].body.len().to_string().as_str()
    );

    // The other forms are connected after the create and before the client hears back.
    let connects: Vec<(String, Value)> = fake
        .state
        .requests()
        .into_iter()
        .filter(|r| r.uri.ends_with("/connect"))
        .map(|r| (fake_dockerd::route_path(&r.uri), r.json()))
        .collect();
    assert_eq!(
        connects,
        vec![
            (
                "/networks/weft/connect".to_string(),
                json!({"Container": "c0ffee0123456789", "EndpointConfig": {}})
            ),
            (
                "/networks/blue/connect".to_string(),
                json!({"Container": "c0ffee0123456789", "EndpointConfig": {}})
            ),
        ]
    );
    proxy.stop().await;
}

#[tokio::test]
async fn create_without_weft_cidr_joins_the_default_network_made_if_missing() {
    let fake = FakeDockerd::start();
    let proxy = Proxy::start(&fake.socket);
    let (status, _) = proxy.create("/containers/create", &["WEAVE_CIDR="]).await;
    assert_eq!(status, StatusCode::CREATED);
    let net = fake.state.find("POST", "/networks/create")[0].json();
    assert_eq!(net["Name"], "weft");
    assert_eq!(net["IPAM"]["Config"][0]["Subnet"], "10.32.0.0/16");
    let body = created_body(&fake);
    assert_eq!(body["HostConfig"]["NetworkMode"], "weft");
    assert_eq!(
        body["NetworkingConfig"]["EndpointsConfig"],
        json!({"weft": {}})
    );
    // No name, no hostname change.
    assert_eq!(body["Hostname"], "");
    assert!(fake
        .state
        .requests()
        .iter()
        .all(|r| !r.uri.ends_with("/connect")));
    proxy.stop().await;
}

#[tokio::test]
async fn create_survives_losing_the_network_create_race() {
    let fake = fake_with_weft_network();
    *fake.state.race_on_create.lock().unwrap() = true;
    let proxy = Proxy::start(&fake.socket);
    let (status, answer) = proxy
        .create("/v1.41/containers/create", &["WEFT_CIDR=net:10.35.0.0/24"])
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(fake.state.find("GET", "/networks").len(), 2);
    let body = created_body(&fake);
    assert_eq!(body["HostConfig"]["NetworkMode"], "weft-10.35.0.0-24");
    proxy.stop().await;
}

#[tokio::test]
async fn other_network_modes_and_none_pass_through_byte_for_byte() {
    let fake = fake_with_weft_network();
    let proxy = Proxy::start(&fake.socket);
    let mut bodies = Vec::new();
    for (mode, env) in [
        ("default", "WEFT_CIDR=none"),
        ("host", "WEFT_CIDR=net:10.33.0.0/24"),
        ("container:abc", "WEFT_CIDR=bogus"),
        ("mynet", ""),
        ("weft", ""),
    ] {
        let mut b = create_body(&[env]);
        b["HostConfig"]["NetworkMode"] = json!(mode);
        // Odd spacing: a re-serialised body would differ.
        let raw = format!("{}  \n", serde_json::to_string_pretty(&b).unwrap()).into_bytes();
        let mut s = connect(&proxy.socket).await;
        let (status, _, _) = call(
            &mut s,
            "POST",
            "/v1.41/containers/create?name=x",
            Some(raw.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{mode}");
        bodies.push(raw);
    }
    let seen: Vec<Vec<u8>> = fake
        .state
        .find("POST", "/containers/create")
        .into_iter()
        .map(|r| r.body.to_vec())
        .collect();
    assert_eq!(seen, bodies);
    assert!(fake.state.find("GET", "/networks").is_empty());
    proxy.stop().await;
}

#[tokio::test]
async fn bad_weft_cidr_is_refused_and_creates_nothing() {
    let fake = fake_with_weft_network();
    let proxy = Proxy::start(&fake.socket);
    let (status, answer) = proxy
        .create("/v1.41/containers/create", &["WEFT_CIDR=net:10.33.0.7/24"])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer["message"],
        "WEFT_CIDR=net:10.33.0.7/24: net:10.33.0.7/24: 10.33.0.7/24 is not the start of a subnet \
         (did you mean net:10.33.0.0/24 or ip:10.33.0.7/24?); use net:default, net:CIDR, ip:CIDR or none"
    );
    assert!(fake.state.requests().is_empty());

    // Outside weft's range: refused after looking at the networks, nothing created.
    let (status, answer) = proxy
        .create(
            "/v1.41/containers/create",
            &["WEFT_CIDR=net:192.168.9.0/24"],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let msg = answer["message"].as_str().unwrap();
    assert!(
        msg.contains("outside weft's address range 10.32.0.0/12"),
        "{msg}"
    );
    assert!(fake.state.find("POST", "/networks/create").is_empty());
    assert!(fake.state.find("POST", "/containers/create").is_empty());
    proxy.stop().await;
}

#[tokio::test]
async fn failed_connect_removes_the_container_and_says_why() {
    let fake = fake_with_weft_network();
    fake.add_network("blue", "weft", "10.34.0.0/24");
    *fake.state.fail_connect.lock().unwrap() = Some("blue".into());
    let proxy = Proxy::start(&fake.socket);
    let (status, answer) = proxy
        .create(
            "/v1.41/containers/create?name=web",
            &["WEFT_CIDR=net:default ip:10.34.0.9"],
        )
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let msg = answer["message"].as_str().unwrap();
    assert!(
        msg.starts_with(
            "WEFT_CIDR=net:default ip:10.34.0.9: attaching the container to network blue:"
        ),
        "{msg}"
    );
    assert!(msg.contains("no address left in the pool"), "{msg}");
    let connect = fake.state.find("POST", "/networks/blue/connect");
    assert_eq!(
        connect[0].json(),
        json!({"Container": "c0ffee0123456789", "EndpointConfig": {"IPAMConfig": {"IPv4Address": "10.34.0.9"}}})
    );
    let removed = fake.state.find("DELETE", "/containers/c0ffee0123456789");
    assert_eq!(removed.len(), 1);
    assert!(removed[0].uri.ends_with("?force=1"), "{}", removed[0].uri);
    proxy.stop().await;
}

#[tokio::test]
async fn unreachable_dockerd_is_a_502_naming_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("no-dockerd.sock");
    let proxy = Proxy::start(&gone);
    for (method, uri, body) in [
        ("GET", "/v1.41/version", None),
        ("POST", "/v1.41/containers/create", Some(create_body(&[]))),
    ] {
        let (status, answer) = once(&proxy.socket, method, uri, body).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{uri}");
        let msg = answer["message"].as_str().unwrap();
        assert!(msg.contains(&gone.display().to_string()), "{uri}: {msg}");
    }
    proxy.stop().await;
}

#[tokio::test]
async fn stopping_the_proxy_ends_open_sessions_and_streams() {
    let fake = FakeDockerd::start();
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    *fake.state.events.lock().unwrap() = Some(rx);
    let proxy = Proxy::start(&fake.socket);
    let mut session = UnixStream::connect(&proxy.socket).await.unwrap();
    session
        .write_all(
            b"POST /v1.41/containers/c0ffee/attach?stdin=1&stdout=1&stream=1 HTTP/1.1\r\n\
              Host: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n",
        )
        .await
        .unwrap();
    let (head, mut pending) = read_head(&mut session).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    session.write_all(b"x\n").await.unwrap();
    read_exact_timeout(&mut session, &mut pending, b"x\n").await;

    let mut events = UnixStream::connect(&proxy.socket).await.unwrap();
    events
        .write_all(b"GET /v1.41/events HTTP/1.1\r\nHost: docker\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_head(&mut events).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    proxy.stop().await;
    for (what, stream) in [("session", &mut session), ("event stream", &mut events)] {
        let mut rest = Vec::new();
        tokio::time::timeout(LIMIT, stream.read_to_end(&mut rest))
            .await
            .unwrap_or_else(|_| panic!("the {what} ends when the proxy stops"))
            .unwrap();
    }
    drop(tx);
}
