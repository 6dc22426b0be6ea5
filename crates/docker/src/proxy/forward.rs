//! Passing requests to dockerd and answers back, streams and hijacked sessions included.

use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{header, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tokio::sync::Mutex;

use super::Shared;

/// Any error of a body in flight.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of requests to dockerd and answers to clients.
pub(crate) type ProxyBody = BoxBody<Bytes, BoxError>;

/// A body holding `bytes`.
pub(crate) fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A streamed body.
pub(crate) fn streamed(body: Incoming) -> ProxyBody {
    body.map_err(BoxError::from).boxed()
}

/// The connection to dockerd that one client connection reuses between its requests.
pub(crate) struct UpstreamSlot {
    socket: PathBuf,
    idle: Mutex<Option<SendRequest<ProxyBody>>>,
}

impl UpstreamSlot {
    /// A slot that connects to `socket` on first use.
    pub fn new(socket: PathBuf) -> Self {
        UpstreamSlot {
            socket,
            idle: Mutex::new(None),
        }
    }

    /// Sends one request and returns dockerd's answer head (the body streams on).
    pub async fn send(&self, req: Request<ProxyBody>) -> Result<Response<Incoming>, String> {
        let mut idle = self.idle.lock().await;
        // Ready once the previous answer was read to its end; an error means dockerd
        // closed the connection, so make a new one.
        let reusable = match idle.take() {
            Some(mut s) => s.ready().await.is_ok().then_some(s),
            None => None,
        };
        let mut sender = match reusable {
            Some(s) => s,
            None => self.connect().await?,
        };
        let resp = sender.send_request(req).await.map_err(|e| {
            format!(
                "dockerd on {} failed the request: {e}",
                self.socket.display()
            )
        })?;
        *idle = Some(sender);
        Ok(resp)
    }

    async fn connect(&self) -> Result<SendRequest<ProxyBody>, String> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| format!("cannot reach dockerd on {}: {e}", self.socket.display()))?;
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("cannot talk to dockerd on {}: {e}", self.socket.display()))?;
        tokio::spawn(async move {
            // with_upgrades: a 101 answer hands the socket to the hijack pump.
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!("docker proxy: dockerd connection ended: {e}");
            }
        });
        Ok(sender)
    }
}

/// A JSON error answer in Docker's shape (`{"message": ...}`), which Docker clients print.
pub(crate) fn error_response(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({ "message": message }).to_string();
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// The request as it goes to dockerd: everything kept but `Expect`, which this side
/// already answered to the client.
pub(crate) fn upstream_request(
    mut parts: hyper::http::request::Parts,
    body: ProxyBody,
) -> Request<ProxyBody> {
    parts.headers.remove(header::EXPECT);
    Request::from_parts(parts, body)
}

/// Forwards one request unchanged and streams the answer back; a 101 answer to an Upgrade
/// request joins the two sockets.
pub(crate) async fn forward(
    shared: &Shared,
    slot: &UpstreamSlot,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    let wants_upgrade = req.headers().contains_key(header::UPGRADE);
    let client_upgrade = wants_upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let request = format!("{} {}", parts.method, parts.uri);
    let mut resp = match slot.send(upstream_request(parts, streamed(body))).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("docker proxy: {request}: {e}");
            return error_response(
                StatusCode::BAD_GATEWAY,
                &format!("weft's Docker proxy: {e}"),
            );
        }
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return resp.map(streamed);
    }
    let Some(client_upgrade) = client_upgrade else {
        return error_response(
            StatusCode::BAD_GATEWAY,
            "weft's Docker proxy: dockerd switched protocols on a request that did not ask to",
        );
    };
    let upstream_upgrade = hyper::upgrade::on(&mut resp);
    let mut stop = shared.stop.clone();
    tokio::spawn(async move {
        let (client, upstream) = tokio::join!(client_upgrade, upstream_upgrade);
        let (client, upstream) = match (client, upstream) {
            (Ok(c), Ok(u)) => (c, u),
            (c, u) => {
                tracing::debug!(
                    "docker proxy: {request}: upgrade failed (client {:?}, dockerd {:?})",
                    c.err(),
                    u.err()
                );
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        // copy_bidirectional shuts down each write side when its read side ends, so the
        // client's stdin EOF reaches the container while its output still flows.
        tokio::select! {
            r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                if let Err(e) = r {
                    tracing::debug!("docker proxy: {request}: session ended: {e}");
                }
            }
            _ = stop.changed() => {}
        }
    });
    let (parts, _) = resp.into_parts();
    Response::from_parts(parts, full(Bytes::new()))
}
