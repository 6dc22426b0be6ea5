//! A small client of the Kubernetes API: `GET /api/v1/nodes`, nothing else.
//!
//! In a pod it speaks HTTPS to `KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT`, trusts only
//! the cluster's CA and sends the service account's token, both read from
//! [`SERVICE_ACCOUNT_DIR`] at every request (tokens are rotated). Plain HTTP is taken only to
//! a loopback address (`kubectl proxy`, tests), and then no token is sent.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::error::KubeError;
use crate::nodes::{NodeEvent, NodeList};

/// Where Kubernetes mounts a pod's service-account token and the cluster's CA.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The request this client makes. `resourceVersion=0` lets the API server answer from its
/// cache instead of a quorum read of etcd, which is what a periodic list wants.
pub const NODES_PATH: &str = "/api/v1/nodes?resourceVersion=0";
/// The watch request (its version and timeout are appended).
pub const WATCH_PATH: &str = "/api/v1/nodes?watch=1";
/// How long the API keeps one watch open before it ends it (then it is opened again).
pub const WATCH_SECS: u64 = 300;
/// A watch that brings nothing (not even a bookmark) for this long is taken as broken.
pub const WATCH_IDLE: Duration = Duration::from_secs(WATCH_SECS + 60);
/// The largest single watch event read.
pub const MAX_EVENT: usize = 16 << 20;
/// The largest answer read (a node object is a few kB; this is room for thousands).
pub const MAX_BODY: usize = 128 << 20;
/// How long one request may take, connection and body included.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// HTTP or HTTPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP (loopback only).
    Http,
    /// TLS with the cluster's CA.
    Https,
}

/// Where the API is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiEndpoint {
    /// HTTP or HTTPS.
    pub scheme: Scheme,
    /// Host name or IP address (without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl ApiEndpoint {
    /// Parses `http://HOST:PORT` (loopback only) or `https://HOST[:PORT]`; no path.
    pub fn parse(url: &str) -> Result<ApiEndpoint, KubeError> {
        let bad = |why: &str| KubeError::BadAddress {
            value: url.to_string(),
            why: why.to_string(),
        };
        let (scheme, rest) = if let Some(r) = url.strip_prefix("https://") {
            (Scheme::Https, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (Scheme::Http, r)
        } else {
            return Err(bad(
                "give https://HOST[:PORT], or http://127.0.0.1:PORT for a local proxy",
            ));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err(bad("give the API's address without a path"));
        }
        let (host, port) = if let Some(r) = rest.strip_prefix('[') {
            let (h, after) = r
                .split_once(']')
                .ok_or_else(|| bad("missing ] after an IPv6 address"))?;
            (h.to_string(), after.strip_prefix(':'))
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (rest.to_string(), None),
            }
        };
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("the port must be 1 to 65535"))?,
            None if scheme == Scheme::Https => 443,
            None => {
                return Err(bad(
                    "give the port of the local proxy, like http://127.0.0.1:8001",
                ))
            }
        };
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c))
        {
            return Err(bad("the host must be a host name or an IP address"));
        }
        let endpoint = ApiEndpoint { scheme, host, port };
        if scheme == Scheme::Http && !endpoint.is_loopback() {
            return Err(bad(
                "plain HTTP is taken only to a loopback address (a local `kubectl proxy`); use https",
            ));
        }
        Ok(endpoint)
    }

    /// The in-cluster address from the values of `KUBERNETES_SERVICE_HOST` and
    /// `KUBERNETES_SERVICE_PORT`.
    pub fn in_cluster(host: Option<&str>, port: Option<&str>) -> Result<ApiEndpoint, KubeError> {
        let Some(host) = host.filter(|h| !h.is_empty()) else {
            return Err(KubeError::BadAddress {
                value: String::new(),
                why: "KUBERNETES_SERVICE_HOST is not set: run weft in a Kubernetes pod, or give the API's address with --kube-api".to_string(),
            });
        };
        let port = port.filter(|p| !p.is_empty()).unwrap_or("443");
        let url = if host.contains(':') {
            format!("https://[{host}]:{port}")
        } else {
            format!("https://{host}:{port}")
        };
        ApiEndpoint::parse(&url)
    }

    /// Whether the host is a loopback address (or `localhost`).
    fn is_loopback(&self) -> bool {
        self.host == "localhost" || self.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// The address as a URL.
    pub fn url(&self) -> String {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// The client: an endpoint and the directory of the service-account files.
#[derive(Debug, Clone)]
pub struct ApiClient {
    endpoint: ApiEndpoint,
    account_dir: PathBuf,
}

impl ApiClient {
    /// A client of `endpoint` that reads the token and CA (for HTTPS) from `account_dir`.
    pub fn new(endpoint: ApiEndpoint, account_dir: impl Into<PathBuf>) -> ApiClient {
        ApiClient {
            endpoint,
            account_dir: account_dir.into(),
        }
    }

    /// The API's address.
    pub fn endpoint(&self) -> &ApiEndpoint {
        &self.endpoint
    }

    /// Lists the cluster's nodes.
    pub async fn list_nodes(&self) -> Result<NodeList, KubeError> {
        let body = self.get(NODES_PATH).await?;
        NodeList::parse(&body)
    }

    /// GETs `path` and returns the body of a 200 answer.
    pub async fn get(&self, path: &str) -> Result<Bytes, KubeError> {
        let url = self.endpoint.url();
        let whole = async {
            let resp = self.send(path).await?;
            read_body(resp.into_body(), path, MAX_BODY, &self.endpoint).await
        };
        match tokio::time::timeout(TIMEOUT, whole).await {
            Ok(r) => r,
            Err(_) => Err(KubeError::Timeout {
                url,
                secs: TIMEOUT.as_secs(),
            }),
        }
    }

    /// Watches the nodes from `version` (the list's `resourceVersion`).
    pub async fn watch_nodes(&self, version: &str) -> Result<NodeWatch, KubeError> {
        if version.is_empty() || !version.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(KubeError::BadNodeList {
                why: format!("resourceVersion {version:?} cannot start a watch"),
            });
        }
        let path = format!(
            "{WATCH_PATH}&resourceVersion={version}&allowWatchBookmarks=true&timeoutSeconds={WATCH_SECS}"
        );
        let url = self.endpoint.url();
        match tokio::time::timeout(TIMEOUT, self.send(&path)).await {
            // The error names the watch without its version, so that the same refusal
            // reads the same at every try.
            Ok(Err(KubeError::Status {
                status,
                message,
                hint,
                ..
            })) => Err(KubeError::Status {
                path: WATCH_PATH.to_string(),
                status,
                message,
                hint,
            }),
            Ok(resp) => Ok(NodeWatch {
                body: resp?.into_body(),
                buf: Vec::new(),
                scanned: 0,
                url,
            }),
            Err(_) => Err(KubeError::Timeout {
                url,
                secs: TIMEOUT.as_secs(),
            }),
        }
    }

    async fn send(&self, path: &str) -> Result<Response<Incoming>, KubeError> {
        let unreachable = |why: String| KubeError::Unreachable {
            url: self.endpoint.url(),
            why,
        };
        let connect = || async {
            TcpStream::connect((self.endpoint.host.as_str(), self.endpoint.port))
                .await
                .map_err(|e| unreachable(e.to_string()))
        };
        match self.endpoint.scheme {
            Scheme::Http => self.request(connect().await?, path, None).await,
            Scheme::Https => {
                // Credentials first: a pod without its service account hears that, not a
                // connection error.
                let token = read_token(&self.account_dir.join("token"))?;
                let connector = tls_connector(&self.account_dir.join("ca.crt"))?;
                let tcp = connect().await?;
                let name = ServerName::try_from(self.endpoint.host.clone())
                    .map_err(|e| unreachable(format!("bad server name: {e}")))?;
                let tls = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| unreachable(format!("TLS: {e}")))?;
                self.request(tls, path, Some(token)).await
            }
        }
    }

    async fn request<S>(
        &self,
        stream: S,
        path: &str,
        token: Option<String>,
    ) -> Result<Response<Incoming>, KubeError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let unreachable = |why: String| KubeError::Unreachable {
            url: self.endpoint.url(),
            why,
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let host = match self.endpoint.host.contains(':') {
            true => format!("[{}]:{}", self.endpoint.host, self.endpoint.port),
            false => format!("{}:{}", self.endpoint.host, self.endpoint.port),
        };
        let mut req = Request::get(path)
            .header("host", host)
            .header("accept", "application/json")
            .header("user-agent", concat!("weft/", env!("CARGO_PKG_VERSION")));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| unreachable(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let status = resp.status();
        if status != StatusCode::OK {
            let body = read_body(resp.into_body(), path, 64 * 1024, &self.endpoint).await?;
            return Err(status_error(path, status, &body));
        }
        Ok(resp)
    }
}

/// Reads a whole body of at most `limit` bytes.
async fn read_body(
    body: Incoming,
    path: &str,
    limit: usize,
    endpoint: &ApiEndpoint,
) -> Result<Bytes, KubeError> {
    Ok(Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                KubeError::TooLarge {
                    path: path.to_string(),
                    limit,
                }
            } else {
                KubeError::Unreachable {
                    url: endpoint.url(),
                    why: e.to_string(),
                }
            }
        })?
        .to_bytes())
}

/// A watch of the nodes: the events as they come, one JSON object per line.
#[derive(Debug)]
pub struct NodeWatch {
    body: Incoming,
    buf: Vec<u8>,
    /// How far `buf` was searched for a newline.
    scanned: usize,
    url: String,
}

impl NodeWatch {
    /// The next event and the version it carries; `None` when the API ended the watch
    /// (it does after `timeoutSeconds`): watch again from the last version.
    pub async fn next(&mut self) -> Result<Option<(NodeEvent, String)>, KubeError> {
        loop {
            if let Some(i) = self.buf[self.scanned..].iter().position(|b| *b == b'\n') {
                let end = self.scanned + i;
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                self.scanned = 0;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return NodeEvent::parse(&line[..end]).map(Some);
            }
            self.scanned = self.buf.len();
            if self.buf.len() > MAX_EVENT {
                return Err(KubeError::TooLarge {
                    path: WATCH_PATH.to_string(),
                    limit: MAX_EVENT,
                });
            }
            let frame = match tokio::time::timeout(WATCH_IDLE, self.body.frame()).await {
                Err(_) => {
                    return Err(KubeError::Timeout {
                        url: self.url.clone(),
                        secs: WATCH_IDLE.as_secs(),
                    })
                }
                Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => {
                    return Err(KubeError::Unreachable {
                        url: self.url.clone(),
                        why: e.to_string(),
                    })
                }
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data() {
                self.buf.extend_from_slice(&data);
            }
        }
    }
}

/// The error for a non-200 answer, with the message of the API's `Status` object.
fn status_error(path: &str, status: StatusCode, body: &[u8]) -> KubeError {
    #[derive(serde::Deserialize)]
    struct Status {
        message: Option<String>,
    }
    let message = serde_json::from_slice::<Status>(body)
        .ok()
        .and_then(|s| s.message)
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    let hint = match status.as_u16() {
        401 => "; the service-account token was refused (expired, or from another cluster)",
        403 => "; give weft's service account the ClusterRole of dist/kubernetes/weft.yaml (get, list, watch nodes)",
        _ => "",
    };
    KubeError::Status {
        path: path.to_string(),
        status: status.as_u16(),
        message,
        hint: hint.to_string(),
    }
}

fn read_token(path: &Path) -> Result<String, KubeError> {
    let token = std::fs::read_to_string(path).map_err(|e| KubeError::Credentials {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    let token = token.trim();
    if token.is_empty() || token.len() > 64 * 1024 || !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err(KubeError::Credentials {
            path: path.to_path_buf(),
            why: "the token is empty, too long, or not printable ASCII".to_string(),
        });
    }
    Ok(token.to_string())
}

fn tls_connector(ca: &Path) -> Result<tokio_rustls::TlsConnector, KubeError> {
    let bad = |why: String| KubeError::Credentials {
        path: ca.to_path_buf(),
        why,
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca).map_err(|e| bad(e.to_string()))?;
    for cert in certs {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("holds no certificate".to_string()));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        let e = ApiEndpoint::parse("https://10.96.0.1:443").unwrap();
        assert_eq!(
            (e.scheme, e.host.as_str(), e.port),
            (Scheme::Https, "10.96.0.1", 443)
        );
        assert_eq!(ApiEndpoint::parse("https://api.example").unwrap().port, 443);
        assert_eq!(
            ApiEndpoint::parse("https://[fd00::1]:6443").unwrap().url(),
            "https://[fd00::1]:6443"
        );
        assert_eq!(
            ApiEndpoint::parse("http://127.0.0.1:8001/").unwrap().url(),
            "http://127.0.0.1:8001"
        );
        for bad in [
            "10.96.0.1:443",
            "http://10.96.0.1:8001",
            "http://127.0.0.1",
            "https://h:0",
            "https://h/api",
            "https://",
            "https://a b",
        ] {
            assert!(ApiEndpoint::parse(bad).is_err(), "{bad}");
        }
        let e = ApiEndpoint::in_cluster(Some("fd00::1"), Some("443")).unwrap();
        assert_eq!(e.url(), "https://[fd00::1]:443");
        let msg = ApiEndpoint::in_cluster(None, None).unwrap_err().to_string();
        assert!(msg.contains("KUBERNETES_SERVICE_HOST"), "{msg}");
    }

    #[test]
    fn forbidden_says_what_to_grant() {
        let body = br#"{"kind":"Status","message":"nodes is forbidden: User \"system:serviceaccount:kube-system:default\" cannot list resource \"nodes\""}"#;
        let e = status_error("/api/v1/nodes", StatusCode::FORBIDDEN, body).to_string();
        assert!(
            e.contains("403") && e.contains("cannot list") && e.contains("ClusterRole"),
            "{e}"
        );
    }
}
