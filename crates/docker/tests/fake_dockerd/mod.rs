//! A stand-in for dockerd in tests of the Engine client and the proxy: a small HTTP server on
//! a unix socket in a temporary directory that records every request and answers the few
//! endpoints the tests use, as Docker 20.10 does (JSON bodies, `{"message"}` errors,
//! a chunked `/events` stream, and the `101 UPGRADED` hijack of attach).

#![allow(dead_code)]

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::HeaderMap;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path and query, as sent.
    pub uri: String,
    /// Headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Recorded {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {}: body is not JSON ({e}): {:?}",
                self.method, self.uri, self.body
            )
        })
    }
}

/// What the fake knows and saw.
#[derive(Default)]
pub struct State {
    /// Every request, in order.
    pub requests: Mutex<Vec<Recorded>>,
    /// Connections accepted.
    pub connections: AtomicUsize,
    /// The networks `GET /networks` lists (Engine API JSON).
    pub networks: Mutex<Vec<Value>>,
    /// Containers `GET /containers/{id}/json` knows, by id or name.
    pub containers: Mutex<Vec<(String, Value)>>,
    /// A network name whose `connect` fails with 500.
    pub fail_connect: Mutex<Option<String>>,
    /// When set, `POST /networks/create` adds the network but answers 409, as when another
    /// client made it a moment earlier.
    pub race_on_create: Mutex<bool>,
    /// Chunks the next `GET /events` streams; the stream ends when the sender is dropped.
    pub events: Mutex<Option<mpsc::Receiver<Bytes>>>,
    /// Woken on every request.
    pub arrived: Notify,
}

impl State {
    /// The requests seen so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// Requests whose method and path (without the version prefix and query) match.
    pub fn find(&self, method: &str, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && route_path(&r.uri) == path)
            .collect()
    }
}

/// The fake dockerd; stops when dropped.
pub struct FakeDockerd {
    /// Holds the socket.
    pub dir: tempfile::TempDir,
    /// Where it listens.
    pub socket: PathBuf,
    /// What it knows and saw.
    pub state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for FakeDockerd {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeDockerd {
    /// Starts listening on `docker.sock` in a new temporary directory.
    pub fn start() -> FakeDockerd {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let state = Arc::new(State::default());
        let st = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                st.connections.fetch_add(1, Ordering::SeqCst);
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(answer(&st, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        FakeDockerd {
            dir,
            socket,
            state,
            task,
        }
    }

    /// Adds a network to the list (`driver` is also its IPAM driver).
    pub fn add_network(&self, name: &str, driver: &str, subnet: &str) {
        self.state.networks.lock().unwrap().push(network_json(
            name,
            &format!("id-{name}"),
            driver,
            driver,
            Some(subnet),
        ));
    }

    /// Waits (bounded) until `n` requests have arrived.
    pub async fn wait_requests(&self, n: usize) {
        let wait = async {
            loop {
                let notified = self.state.arrived.notified();
                if self.state.requests.lock().unwrap().len() >= n {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(std::time::Duration::from_secs(10), wait)
            .await
            .is_err()
        {
            panic!(
                "the fake dockerd saw {} requests in 10 s, expected {n}",
                self.state.requests().len()
            );
        }
    }
}

/// An Engine API network object.
pub fn network_json(
    name: &str,
    id: &str,
    driver: &str,
    ipam_driver: &str,
    subnet: Option<&str>,
) -> Value {
    let config: Vec<Value> = subnet.map(|s| json!({"Subnet": s})).into_iter().collect();
    json!({
        "Name": name, "Id": id, "Created": "2026-11-22T22:00:00.000000000Z", "Scope": "local",
        "Driver": driver, "EnableIPv6": false, "Internal": false, "Attachable": false,
        "IPAM": {"Driver": ipam_driver, "Options": null, "Config": config},
        "Containers": {}, "Options": {}, "Labels": {}
    })
}

type Body = BoxBody<Bytes, Infallible>;

fn full(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r.headers_mut()
        .insert("api-version", "1.41".parse().unwrap());
    r
}

fn message(status: StatusCode, msg: &str) -> Response<Body> {
    full(status, json!({ "message": msg }).to_string())
}

/// The path without `/vX.Y` and query.
pub fn route_path(uri: &str) -> String {
    let path = uri.split('?').next().unwrap_or_default();
    if let Some(rest) = path.strip_prefix("/v") {
        if let Some(i) = rest.find('/') {
            if rest[..i].bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                return rest[i..].to_string();
            }
        }
    }
    path.to_string()
}

async fn answer(st: &State, mut req: Request<Incoming>) -> Response<Body> {
    let upgrade = req
        .headers()
        .contains_key("upgrade")
        .then(|| hyper::upgrade::on(&mut req));
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let headers = req.headers().clone();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let rec = Recorded {
        method: method.clone(),
        uri: uri.clone(),
        headers,
        body,
    };
    st.requests.lock().unwrap().push(rec.clone());
    st.arrived.notify_waiters();
    let path = route_path(&uri);
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), segs.as_slice()) {
        ("GET" | "HEAD", ["_ping"]) => {
            let mut r = full(StatusCode::OK, "OK");
            r.headers_mut()
                .insert("content-type", "text/plain; charset=utf-8".parse().unwrap());
            r
        }
        ("GET", ["containers", "json"]) => full(
            StatusCode::OK,
            json!([{"Id": "c0ffee", "Names": ["/web"], "State": "running", "Status": "Up 1 second",
                    "Labels": {}}])
            .to_string(),
        ),
        ("GET", ["containers", id, "json"]) => {
            let found = st
                .containers
                .lock()
                .unwrap()
                .iter()
                .find(|(k, _)| k == id)
                .map(|(_, v)| v.clone());
            match found {
                Some(v) => full(StatusCode::OK, v.to_string()),
                None => message(StatusCode::NOT_FOUND, &format!("No such container: {id}")),
            }
        }
        ("POST", ["containers", "create"]) => full(
            StatusCode::CREATED,
            json!({"Id": "c0ffee0123456789", "Warnings": []}).to_string(),
        ),
        ("DELETE", ["containers", _]) => full(StatusCode::NO_CONTENT, ""),
        ("POST", ["containers", _, "attach"]) => match upgrade {
            Some(on) => {
                tokio::spawn(echo_session(on));
                let mut r = Response::new(Full::new(Bytes::new()).boxed());
                *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                let h = r.headers_mut();
                h.insert(
                    "content-type",
                    "application/vnd.docker.raw-stream".parse().unwrap(),
                );
                h.insert("connection", "Upgrade".parse().unwrap());
                h.insert("upgrade", "tcp".parse().unwrap());
                r
            }
            None => message(
                StatusCode::BAD_REQUEST,
                "this fake only hijacks with Upgrade",
            ),
        },
        ("GET", ["events"]) => {
            let rx = st.events.lock().unwrap().take();
            let Some(rx) = rx else {
                return message(StatusCode::INTERNAL_SERVER_ERROR, "no events prepared");
            };
            let stream = futures::stream::unfold(rx, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
            });
            let mut r = Response::new(StreamBody::new(stream).boxed());
            r.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            r
        }
        ("GET", ["networks"]) => full(
            StatusCode::OK,
            Value::Array(st.networks.lock().unwrap().clone()).to_string(),
        ),
        ("GET", ["networks", id]) => {
            let found = st
                .networks
                .lock()
                .unwrap()
                .iter()
                .find(|n| n["Name"] == *id || n["Id"] == *id)
                .cloned();
            match found {
                Some(v) => full(StatusCode::OK, v.to_string()),
                None => message(StatusCode::NOT_FOUND, &format!("network {id} not found")),
            }
        }
        ("DELETE", ["networks", id]) => {
            let mut nets = st.networks.lock().unwrap();
            let before = nets.len();
            nets.retain(|n| n["Name"] != *id && n["Id"] != *id);
            if nets.len() == before {
                message(StatusCode::NOT_FOUND, &format!("network {id} not found"))
            } else {
                full(StatusCode::NO_CONTENT, "")
            }
        }
        ("POST", ["networks", "create"]) => {
            let v = rec.json();
            let name = v["Name"].as_str().unwrap_or_default().to_string();
            let mut nets = st.networks.lock().unwrap();
            if nets.iter().any(|n| n["Name"] == *name) {
                return message(
                    StatusCode::CONFLICT,
                    &format!("network with name {name} already exists"),
                );
            }
            let id = format!("id-{name}");
            nets.push(network_json(
                &name,
                &id,
                v["Driver"].as_str().unwrap_or("bridge"),
                v["IPAM"]["Driver"].as_str().unwrap_or("default"),
                v["IPAM"]["Config"][0]["Subnet"].as_str(),
            ));
            if std::mem::take(&mut *st.race_on_create.lock().unwrap()) {
                return message(
                    StatusCode::CONFLICT,
                    &format!("network with name {name} already exists"),
                );
            }
            full(
                StatusCode::CREATED,
                json!({"Id": id, "Warning": ""}).to_string(),
            )
        }
        ("POST", ["networks", net, "connect"]) => {
            if st.fail_connect.lock().unwrap().as_deref() == Some(*net) {
                return message(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "no address left in the pool",
                );
            }
            full(StatusCode::OK, "")
        }
        _ => message(
            StatusCode::NOT_FOUND,
            &format!("page not found: {method} {uri}"),
        ),
    }
}

/// The hijacked side of attach: echoes what it reads; when stdin ends, says so and closes.
async fn echo_session(on: hyper::upgrade::OnUpgrade) {
    let Ok(upgraded) = on.await else { return };
    let mut io = TokioIo::new(upgraded);
    let mut buf = [0u8; 4096];
    loop {
        match io.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if io.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = io.write_all(b"stdin closed\n").await;
    let _ = io.shutdown().await;
}
