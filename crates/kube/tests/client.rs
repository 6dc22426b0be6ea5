//! The API client against a small server on loopback that answers with the recorded node
//! lists: over HTTPS with a CA and token in a service-account directory, as in a pod, and
//! over plain HTTP as to `kubectl proxy`; and the errors a user can meet.

use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use weft_kube::{ApiClient, ApiEndpoint, KubeError};

/// A client of the API at `url`, with the service account's files in `dir`.
fn client_of(url: &str, dir: impl AsRef<Path>) -> ApiClient {
    ApiClient::new(ApiEndpoint::parse(url).unwrap(), dir.as_ref())
}

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// What the server answers, and the requests it saw (request line and headers).
#[derive(Clone)]
struct Server {
    answer: Arc<Mutex<(u16, Vec<u8>)>>,
    /// The body of a watch (`watch=1`), sent in two writes that split a line, then closed.
    watch: Arc<Mutex<Vec<u8>>>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn new(status: u16, body: Vec<u8>) -> Server {
        Server {
            answer: Arc::new(Mutex::new((status, body))),
            watch: Arc::new(Mutex::new(Vec::new())),
            seen: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn set(&self, status: u16, body: Vec<u8>) {
        *self.answer.lock().unwrap() = (status, body);
    }

    fn last_request(&self) -> String {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }

    /// Serves one HTTP/1.1 request on `stream`.
    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(&self, mut stream: S) {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let request = String::from_utf8_lossy(&head).into_owned();
        self.seen.lock().unwrap().push(request.clone());
        if request.contains("watch=1") {
            let body = self.watch.lock().unwrap().clone();
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n")
                .await;
            let (a, b) = body.split_at(body.len() / 2);
            let _ = stream.write_all(a).await;
            let _ = stream.flush().await;
            let _ = stream.write_all(b).await;
            let _ = stream.shutdown().await;
            return;
        }
        let (status, body) = self.answer.lock().unwrap().clone();
        let reply = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(reply.as_bytes()).await;
        let _ = stream.write_all(&body).await;
        let _ = stream.shutdown().await;
    }
}

/// Listens on 127.0.0.1 (TLS when `tls` is given) and serves every connection.
async fn listen(server: Server, tls: Option<tokio_rustls::TlsAcceptor>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let server = server.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    Some(acceptor) => {
                        if let Ok(s) = acceptor.accept(tcp).await {
                            server.serve(s).await;
                        }
                    }
                    None => server.serve(tcp).await,
                }
            });
        }
    });
    port
}

/// A self-signed certificate for 127.0.0.1 written as the account directory's ca.crt, a
/// token beside it, and the acceptor that serves with that certificate.
fn account_dir(dir: &Path, token: &str) -> tokio_rustls::TlsAcceptor {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    std::fs::write(dir.join("ca.crt"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("token"), format!("{token}\n")).unwrap();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

#[tokio::test]
async fn lists_nodes_over_https_with_the_service_account() {
    let dir = tempfile::tempdir().unwrap();
    let acceptor = account_dir(dir.path(), "tok-123");
    let server = Server::new(200, data("three-nodes.json"));
    let port = listen(server.clone(), Some(acceptor)).await;
    let endpoint = ApiEndpoint::in_cluster(Some("127.0.0.1"), Some(&port.to_string())).unwrap();
    let client = ApiClient::new(endpoint, dir.path());
    let list = client.list_nodes().await.unwrap();
    let names: Vec<_> = list.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["node-a", "node-b", "node-c"]);
    let req = server.last_request().to_lowercase();
    assert!(
        req.starts_with("get /api/v1/nodes?resourceversion=0 http/1.1"),
        "{req}"
    );
    assert!(req.contains("authorization: bearer tok-123\r\n"), "{req}");

    // The token is read at every request: a rotated token is used at once.
    std::fs::write(dir.path().join("token"), "tok-456").unwrap();
    server.set(200, data("node-c-deleted.json"));
    let list = client.list_nodes().await.unwrap();
    assert_eq!(list.nodes.len(), 2);
    assert!(server.last_request().contains("Bearer tok-456"));

    // The API's refusal reaches the user with its message and what to grant.
    server.set(403, data("forbidden.json"));
    let e = client.list_nodes().await.unwrap_err();
    assert!(matches!(e, KubeError::Status { status: 403, .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("cannot list resource") && msg.contains("ClusterRole"),
        "{msg}"
    );

    // A server whose certificate the cluster's CA did not sign is refused.
    let other = tempfile::tempdir().unwrap();
    let _ = account_dir(other.path(), "tok-123");
    std::fs::copy(other.path().join("ca.crt"), dir.path().join("ca.crt")).unwrap();
    server.set(200, data("three-nodes.json"));
    let e = client.list_nodes().await.unwrap_err();
    assert!(matches!(e, KubeError::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains("TLS"), "{e}");
}

#[tokio::test]
async fn plain_http_to_a_local_proxy_sends_no_token() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "secret").unwrap();
    let server = Server::new(200, data("one-node.json"));
    let port = listen(server.clone(), None).await;
    let client = client_of(&format!("http://127.0.0.1:{port}"), dir.path());
    let list = client.list_nodes().await.unwrap();
    assert_eq!(list.nodes.len(), 1);
    assert!(!server
        .last_request()
        .to_lowercase()
        .contains("authorization"));
}

#[tokio::test]
async fn missing_credentials_and_bad_answers_are_one_clear_error() {
    let empty = tempfile::tempdir().unwrap();
    let server = Server::new(200, b"<html>not the API</html>".to_vec());
    let port = listen(server.clone(), None).await;
    // HTTPS needs the token and the CA of the pod's service account.
    let https = client_of(&format!("https://127.0.0.1:{port}"), empty.path());
    let e = https.list_nodes().await.unwrap_err();
    assert!(matches!(e, KubeError::Credentials { .. }), "{e}");
    assert!(e.to_string().contains("token"), "{e}");

    let client = client_of(&format!("http://127.0.0.1:{port}"), "/nonexistent");
    let e = client.list_nodes().await.unwrap_err();
    assert!(matches!(e, KubeError::BadNodeList { .. }), "{e}");

    // Nothing listens: unreachable, naming the address.
    drop(server);
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let client = client_of(&format!("http://127.0.0.1:{port}"), "/nonexistent");
    let e = client.list_nodes().await.unwrap_err();
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
}

#[tokio::test]
async fn a_watch_brings_the_changes_after_the_list() {
    let server = Server::new(200, data("three-nodes.json"));
    let events = [
        r#"{"type":"ADDED","object":{"kind":"Node","apiVersion":"v1","metadata":{"name":"node-d","resourceVersion":"2041"},"status":{"addresses":[{"type":"InternalIP","address":"192.168.56.14"}]}}}"#,
        r#"{"type":"MODIFIED","object":{"kind":"Node","apiVersion":"v1","metadata":{"name":"node-a","resourceVersion":"2042"},"status":{"addresses":[{"type":"InternalIP","address":"192.168.56.11"},{"type":"Hostname","address":"node-a"}]}}}"#,
        "",
        r#"{"type":"DELETED","object":{"kind":"Node","apiVersion":"v1","metadata":{"name":"node-c","resourceVersion":"2043"}}}"#,
        r#"{"type":"BOOKMARK","object":{"kind":"Node","apiVersion":"v1","metadata":{"resourceVersion":"2050"}}}"#,
    ];
    *server.watch.lock().unwrap() = format!("{}\n", events.join("\n")).into_bytes();
    let port = listen(server.clone(), None).await;
    let client = client_of(&format!("http://127.0.0.1:{port}"), "/nonexistent");
    let mut list = client.list_nodes().await.unwrap();
    assert_eq!(list.resource_version, "2040");
    let mut watch = client.watch_nodes(&list.resource_version).await.unwrap();
    let req = server.last_request();
    assert!(
        req.starts_with("GET /api/v1/nodes?watch=1&resourceVersion=2040&allowWatchBookmarks=true&timeoutSeconds=300 "),
        "{req}"
    );
    let mut changed = Vec::new();
    while let Some((event, version)) = watch.next().await.unwrap() {
        changed.push(list.apply(event, version));
    }
    assert_eq!(
        changed,
        [true, false, true, false],
        "node-a's change is not one weft reads"
    );
    let names: Vec<_> = list.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["node-a", "node-b", "node-d"]);
    assert_eq!(list.resource_version, "2050");
    assert!(
        client.watch_nodes("2050&x=1").await.is_err(),
        "a version is only digits and letters"
    );
}
