//! A client of the Docker Engine API over its unix socket.
//!
//! One connection per call (dockerd is local and connecting to a unix socket is cheap), API
//! version 1.41 (Docker 20.10), and typed answers that carry only what weft reads.

mod events;
mod types;

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::Stream;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Response, StatusCode};
use serde::de::DeserializeOwned;
use weft_api::unix_http::{self, UnixHttpError};

pub use events::{Actor, Event, Line, LineSplitter, MAX_LINE};
pub use types::{
    Container, ContainerConfig, ContainerState, ContainerSummary, CreateNetwork, EndpointSettings,
    HostConfig, Ipam, IpamConfig, Network, NetworkContainer, NetworkSettings,
};

use types::{CreateIpamBody, CreateIpamConfig, CreateNetworkBody, IdBody};

/// The API version every path is prefixed with (Docker 20.10 speaks up to 1.41).
pub const API_VERSION: &str = "v1.41";

/// Where Docker listens when `DOCKER_HOST` is not set.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// How long one request (not a stream) may take: a hung dockerd must not hang its caller.
/// Generous, because dockerd itself waits up to a minute for a plugin that does not answer.
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(90);

/// What can go wrong talking to dockerd.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// `DOCKER_HOST` names something other than a unix socket.
    #[error("DOCKER_HOST={value}: {why}; weft talks to Docker only through a unix socket, e.g. DOCKER_HOST=unix:///var/run/docker.sock")]
    UnsupportedHost {
        /// The value given.
        value: String,
        /// What is wrong with it.
        why: String,
    },
    /// Nothing accepts connections on the socket.
    #[error(
        "Docker is not reachable on {socket}: {source}; is dockerd running (see DOCKER_HOST)?"
    )]
    Unreachable {
        /// Socket path.
        socket: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The connection failed after connecting.
    #[error("{request} on {socket}: {source}")]
    Transport {
        /// The request, e.g. `GET /networks`.
        request: String,
        /// Socket path.
        socket: PathBuf,
        /// Cause.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Docker answered 404.
    #[error("{request}: not found: {message}")]
    NotFound {
        /// The request.
        request: String,
        /// Docker's message.
        message: String,
    },
    /// The object already exists (409, or Docker 20.10's 403 for a duplicate network name).
    #[error("{request}: already exists: {message}")]
    Conflict {
        /// The request.
        request: String,
        /// Docker's message.
        message: String,
    },
    /// Any other error answer.
    #[error("{request}: Docker answered {status}: {message}")]
    Api {
        /// The request.
        request: String,
        /// HTTP status.
        status: u16,
        /// Docker's message.
        message: String,
    },
    /// An answer that does not decode.
    #[error("{request}: Docker's answer could not be read: {source}")]
    Decode {
        /// The request.
        request: String,
        /// Cause.
        source: serde_json::Error,
    },
}

impl EngineError {
    /// Whether the error says the object already exists.
    pub fn is_conflict(&self) -> bool {
        matches!(self, EngineError::Conflict { .. })
    }

    /// Whether the error says the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, EngineError::NotFound { .. })
    }
}

/// A client of one dockerd.
#[derive(Debug, Clone)]
pub struct Engine {
    socket: PathBuf,
    call_timeout: std::time::Duration,
}

impl Engine {
    /// A client of the dockerd listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Engine {
            socket: socket.into(),
            call_timeout: CALL_TIMEOUT,
        }
    }

    /// The same client with another bound on each request ([`CALL_TIMEOUT`] by default).
    pub fn with_call_timeout(mut self, limit: std::time::Duration) -> Self {
        self.call_timeout = limit;
        self
    }

    /// A client for a `DOCKER_HOST` value (`None` or empty: [`DEFAULT_SOCKET`]).
    pub fn from_docker_host(value: Option<&str>) -> Result<Self, EngineError> {
        parse_docker_host(value).map(Engine::new)
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `GET /_ping`: whether dockerd answers.
    pub async fn ping(&self) -> Result<(), EngineError> {
        self.call(Method::GET, "/_ping", None).await.map(|_| ())
    }

    /// `GET /containers/{id}/json`; `None` when there is no such container.
    pub async fn inspect_container(
        &self,
        id_or_name: &str,
    ) -> Result<Option<Container>, EngineError> {
        let path = format!("/containers/{}/json", encode(id_or_name));
        optional(self.get_json(&path).await)
    }

    /// `GET /containers/json`: running containers, or all with `all`.
    pub async fn list_containers(&self, all: bool) -> Result<Vec<ContainerSummary>, EngineError> {
        let path = format!("/containers/json?all={}", if all { "1" } else { "0" });
        self.get_json(&path).await
    }

    /// `GET /networks`.
    pub async fn list_networks(&self) -> Result<Vec<Network>, EngineError> {
        self.get_json("/networks").await
    }

    /// `GET /networks/{id}`; `None` when there is no such network.
    pub async fn inspect_network(&self, id_or_name: &str) -> Result<Option<Network>, EngineError> {
        let path = format!("/networks/{}", encode(id_or_name));
        optional(self.get_json(&path).await)
    }

    /// `POST /networks/create`; returns the new network's id. A network of that name that
    /// already exists is [`EngineError::Conflict`].
    pub async fn create_network(&self, req: &CreateNetwork) -> Result<String, EngineError> {
        let body = CreateNetworkBody {
            name: &req.name,
            check_duplicate: true,
            driver: &req.driver,
            ipam: CreateIpamBody {
                driver: req.ipam_driver.as_deref(),
                config: if req.subnet.is_some() || req.gateway.is_some() {
                    vec![CreateIpamConfig {
                        subnet: req.subnet.as_deref(),
                        gateway: req.gateway.as_deref(),
                    }]
                } else {
                    Vec::new()
                },
            },
            options: &req.options,
            labels: &req.labels,
        };
        let id: IdBody = self.post_json("/networks/create", &body).await?;
        Ok(id.id)
    }

    /// `DELETE /networks/{id}`.
    pub async fn remove_network(&self, id_or_name: &str) -> Result<(), EngineError> {
        let path = format!("/networks/{}", encode(id_or_name));
        self.call(Method::DELETE, &path, None).await.map(|_| ())
    }

    /// `POST /networks/{id}/connect`, asking for `ipv4` if given.
    pub async fn connect_network(
        &self,
        network: &str,
        container: &str,
        ipv4: Option<Ipv4Addr>,
    ) -> Result<(), EngineError> {
        let path = format!("/networks/{}/connect", encode(network));
        let body = connect_body(container, ipv4);
        self.call(Method::POST, &path, Some(to_vec(&path, &body)?))
            .await
            .map(|_| ())
    }

    /// `POST /networks/{id}/disconnect`.
    pub async fn disconnect_network(
        &self,
        network: &str,
        container: &str,
        force: bool,
    ) -> Result<(), EngineError> {
        let path = format!("/networks/{}/disconnect", encode(network));
        let body = serde_json::json!({"Container": container, "Force": force});
        self.call(Method::POST, &path, Some(to_vec(&path, &body)?))
            .await
            .map(|_| ())
    }

    /// `POST /containers/create` with a raw create body; returns the new container's id.
    pub async fn create_container(
        &self,
        name: Option<&str>,
        body: &serde_json::Value,
    ) -> Result<String, EngineError> {
        let path = match name {
            Some(n) => format!("/containers/create?name={}", encode(n)),
            None => "/containers/create".to_string(),
        };
        let id: IdBody = self.post_json(&path, body).await?;
        Ok(id.id)
    }

    /// `POST /containers/{id}/start`.
    pub async fn start_container(&self, id_or_name: &str) -> Result<(), EngineError> {
        let path = format!("/containers/{}/start", encode(id_or_name));
        self.call(Method::POST, &path, None).await.map(|_| ())
    }

    /// `DELETE /containers/{id}`, killing it first with `force`.
    pub async fn remove_container(&self, id_or_name: &str, force: bool) -> Result<(), EngineError> {
        let path = format!(
            "/containers/{}?force={}",
            encode(id_or_name),
            if force { "1" } else { "0" }
        );
        self.call(Method::DELETE, &path, None).await.map(|_| ())
    }

    /// `GET /events` from now on, filtered (`{"type": ["container"], "event": ["start"]}`).
    /// The stream ends when dockerd closes it; a line that does not decode is an `Err` item
    /// and the stream goes on.
    pub async fn events(
        &self,
        filters: &BTreeMap<String, Vec<String>>,
    ) -> Result<impl Stream<Item = Result<Event, EngineError>> + Send + 'static, EngineError> {
        let mut path = "/events".to_string();
        if !filters.is_empty() {
            let json = to_vec(&path, filters)?;
            path = format!(
                "/events?filters={}",
                encode(&String::from_utf8_lossy(&json))
            );
        }
        let request = format!("GET {path}");
        let resp = self.send(Method::GET, &path, None).await?;
        let status = resp.status();
        if !status.is_success() {
            let body = self.read_body(&request, resp).await?;
            return Err(api_error(&request, status, &body));
        }
        let state = EventState {
            body: resp.into_body(),
            splitter: LineSplitter::new(),
            ready: VecDeque::new(),
            done: false,
            request,
            socket: self.socket.clone(),
        };
        Ok(futures::stream::unfold(state, next_event))
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, EngineError> {
        let body = self.call(Method::GET, path, None).await?;
        decode(&format!("GET {path}"), &body)
    }

    async fn post_json<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, EngineError> {
        let bytes = to_vec(path, body)?;
        let answer = self.call(Method::POST, path, Some(bytes)).await?;
        decode(&format!("POST {path}"), &answer)
    }

    /// One request; the body of a 2xx answer, or the error Docker gave.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes, EngineError> {
        let request = format!("{method} {path}");
        let exchange = async {
            let resp = self.send(method, path, body).await?;
            let status = resp.status();
            Ok::<_, EngineError>((status, self.read_body(&request, resp).await?))
        };
        let (status, bytes) = tokio::time::timeout(self.call_timeout, exchange)
            .await
            .map_err(|_| EngineError::Transport {
                request: request.clone(),
                socket: self.socket.clone(),
                source: format!("no answer within {:?}", self.call_timeout).into(),
            })??;
        if status.is_success() {
            Ok(bytes)
        } else {
            Err(api_error(&request, status, &bytes))
        }
    }

    async fn read_body(
        &self,
        request: &str,
        resp: Response<Incoming>,
    ) -> Result<Bytes, EngineError> {
        resp.into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .map_err(|e| EngineError::Transport {
                request: request.to_string(),
                socket: self.socket.clone(),
                source: e.into(),
            })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response<Incoming>, EngineError> {
        let request = format!("{method} {path}");
        let uri = format!("/{API_VERSION}{path}");
        unix_http::send(&self.socket, method, &uri, "docker", body)
            .await
            .map_err(|e| match e {
                UnixHttpError::Connect(source) => EngineError::Unreachable {
                    socket: self.socket.clone(),
                    source,
                },
                UnixHttpError::Transport(source) => EngineError::Transport {
                    request,
                    socket: self.socket.clone(),
                    source,
                },
            })
    }
}

/// The socket path a `DOCKER_HOST` value names.
pub fn parse_docker_host(value: Option<&str>) -> Result<PathBuf, EngineError> {
    let value = value.map(str::trim).unwrap_or_default();
    if value.is_empty() {
        return Ok(PathBuf::from(DEFAULT_SOCKET));
    }
    let unsupported = |why: &str| EngineError::UnsupportedHost {
        value: value.to_string(),
        why: why.to_string(),
    };
    match value.split_once("://") {
        Some(("unix", path)) if path.starts_with('/') => Ok(PathBuf::from(path)),
        Some(("unix", _)) => Err(unsupported(
            "the socket path must be absolute (unix:///path)",
        )),
        Some((scheme @ ("tcp" | "http" | "https" | "ssh" | "npipe" | "fd"), _)) => {
            Err(unsupported(&format!("{scheme}:// is not supported")))
        }
        Some((scheme, _)) => Err(unsupported(&format!("unknown scheme {scheme}://"))),
        None => Err(unsupported("it has no scheme")),
    }
}

/// The body of `POST /networks/{id}/connect`.
pub(crate) fn connect_body(container: &str, ipv4: Option<Ipv4Addr>) -> serde_json::Value {
    let mut endpoint = serde_json::json!({});
    if let Some(ip) = ipv4 {
        endpoint = serde_json::json!({"IPAMConfig": {"IPv4Address": ip.to_string()}});
    }
    serde_json::json!({"Container": container, "EndpointConfig": endpoint})
}

/// Turns a 404 into `None`.
fn optional<T>(r: Result<T, EngineError>) -> Result<Option<T>, EngineError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Docker's `{"message": "..."}` error body, or the body as text.
pub(crate) fn error_message(status: StatusCode, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Message {
        message: Option<String>,
    }
    if let Ok(Message { message: Some(m) }) = serde_json::from_slice::<Message>(body) {
        return m;
    }
    let text = String::from_utf8_lossy(body).trim().to_string();
    if text.is_empty() {
        format!("HTTP {status}")
    } else {
        text
    }
}

fn api_error(request: &str, status: StatusCode, body: &[u8]) -> EngineError {
    let message = error_message(status, body);
    let request = request.to_string();
    match status {
        StatusCode::NOT_FOUND => EngineError::NotFound { request, message },
        StatusCode::CONFLICT => EngineError::Conflict { request, message },
        StatusCode::FORBIDDEN if message.contains("already exists") => {
            EngineError::Conflict { request, message }
        }
        _ => EngineError::Api {
            request,
            status: status.as_u16(),
            message,
        },
    }
}

fn decode<T: DeserializeOwned>(request: &str, body: &[u8]) -> Result<T, EngineError> {
    serde_json::from_slice(body).map_err(|e| EngineError::Decode {
        request: request.to_string(),
        source: e,
    })
}

fn to_vec<B: serde::Serialize + ?Sized>(path: &str, body: &B) -> Result<Vec<u8>, EngineError> {
    serde_json::to_vec(body).map_err(|e| EngineError::Decode {
        request: path.to_string(),
        source: e,
    })
}

/// Percent-encodes everything but RFC 3986's unreserved characters (for path segments and
/// query values).
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

struct EventState {
    body: Incoming,
    splitter: LineSplitter,
    ready: VecDeque<Result<Event, EngineError>>,
    done: bool,
    request: String,
    socket: PathBuf,
}

impl EventState {
    fn take_lines(&mut self, lines: Vec<Line>) {
        for line in lines {
            let item = match line {
                Line::Text(t) => decode(&self.request, &t),
                Line::TooLong => Err(EngineError::Api {
                    request: self.request.clone(),
                    status: 200,
                    message: format!("an event longer than {MAX_LINE} bytes was skipped"),
                }),
            };
            self.ready.push_back(item);
        }
    }
}

async fn next_event(mut st: EventState) -> Option<(Result<Event, EngineError>, EventState)> {
    loop {
        if let Some(item) = st.ready.pop_front() {
            return Some((item, st));
        }
        if st.done {
            return None;
        }
        match st.body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let lines = st.splitter.push(&data);
                    st.take_lines(lines);
                }
            }
            Some(Err(e)) => {
                st.done = true;
                st.ready.push_back(Err(EngineError::Transport {
                    request: st.request.clone(),
                    socket: st.socket.clone(),
                    source: e.into(),
                }));
            }
            None => {
                st.done = true;
                if let Some(rest) = st.splitter.finish() {
                    st.take_lines(vec![Line::Text(rest)]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_host_values() {
        assert_eq!(
            parse_docker_host(None).unwrap(),
            PathBuf::from("/var/run/docker.sock")
        );
        assert_eq!(
            parse_docker_host(Some("")).unwrap(),
            PathBuf::from("/var/run/docker.sock")
        );
        assert_eq!(
            parse_docker_host(Some("unix:///tmp/lab/h1/docker.sock")).unwrap(),
            PathBuf::from("/tmp/lab/h1/docker.sock")
        );
        for bad in [
            "tcp://127.0.0.1:2375",
            "ssh://me@host",
            "unix://relative.sock",
            "/var/run/docker.sock",
            "gopher://x",
        ] {
            let e = parse_docker_host(Some(bad)).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
            assert!(e.contains("only through a unix socket"), "{e}");
        }
        let e = Engine::from_docker_host(Some("tcp://1.2.3.4:2376")).unwrap_err();
        assert!(e.to_string().contains("tcp:// is not supported"), "{e}");
    }

    #[test]
    fn error_bodies() {
        let e = api_error(
            "POST /networks/create",
            StatusCode::CONFLICT,
            br#"{"message":"network with name weft already exists"}"#,
        );
        assert!(e.is_conflict());
        assert_eq!(
            e.to_string(),
            "POST /networks/create: already exists: network with name weft already exists"
        );
        let e = api_error(
            "POST /networks/create",
            StatusCode::FORBIDDEN,
            br#"{"message":"network with name weft already exists"}"#,
        );
        assert!(e.is_conflict());
        let e = api_error(
            "POST /networks/create",
            StatusCode::FORBIDDEN,
            br#"{"message":"operation is not permitted on predefined bridge network"}"#,
        );
        assert!(matches!(e, EngineError::Api { status: 403, .. }));
        let e = api_error(
            "GET /containers/x/json",
            StatusCode::NOT_FOUND,
            b"no such\n",
        );
        assert!(e.is_not_found());
        assert!(e.to_string().ends_with("no such"));
        let e = api_error("GET /x", StatusCode::INTERNAL_SERVER_ERROR, b"");
        assert!(e.to_string().contains("500"), "{e}");
        let e = api_error("GET /x", StatusCode::BAD_REQUEST, br#"{"message":null}"#);
        assert!(e.to_string().contains(r#"{"message":null}"#), "{e}");
    }

    #[test]
    fn encoding() {
        assert_eq!(encode("web-1_a.b~"), "web-1_a.b~");
        assert_eq!(encode("a b/c?"), "a%20b%2Fc%3F");
        assert_eq!(
            encode(r#"{"type":["container"]}"#),
            "%7B%22type%22%3A%5B%22container%22%5D%7D"
        );
    }

    #[test]
    fn connect_bodies() {
        assert_eq!(
            connect_body("c1", Some(Ipv4Addr::new(10, 32, 1, 9))),
            serde_json::json!({"Container":"c1","EndpointConfig":{"IPAMConfig":{"IPv4Address":"10.32.1.9"}}})
        );
        assert_eq!(
            connect_body("c1", None),
            serde_json::json!({"Container":"c1","EndpointConfig":{}})
        );
    }
}
