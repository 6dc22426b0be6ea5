//! HTTP/1.1 over a unix socket, one request per connection: how the command line talks to
//! the router and the Docker integration to dockerd (both local, so connecting is cheap).

use std::path::Path;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

/// Why a request on a unix socket got no answer.
#[derive(Debug, thiserror::Error)]
pub enum UnixHttpError {
    /// Nothing accepts connections on the socket.
    #[error("connecting: {0}")]
    Connect(#[source] std::io::Error),
    /// The connection failed after it was made.
    #[error("{0}")]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Sends `method uri` with `Host: host` and, when given, a JSON body, on a new connection
/// to `socket`; the answer's head (its body still to be read).
pub async fn send(
    socket: &Path,
    method: Method,
    uri: &str,
    host: &str,
    json: Option<Vec<u8>>,
) -> Result<Response<Incoming>, UnixHttpError> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(UnixHttpError::Connect)?;
    let transport = |e: Box<dyn std::error::Error + Send + Sync>| UnixHttpError::Transport(e);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| transport(e.into()))?;
    tokio::spawn(async move {
        // Ends when the answer has been read or dropped.
        let _ = conn.await;
    });
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(HOST, host);
    if json.is_some() {
        req = req.header(CONTENT_TYPE, "application/json");
    }
    let req = req
        .body(Full::new(Bytes::from(json.unwrap_or_default())))
        .map_err(|e| transport(e.into()))?;
    sender
        .send_request(req)
        .await
        .map_err(|e| transport(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_socket_is_a_connect_error() {
        let dir = std::env::temp_dir().join(format!("weft-unix-http-{}", std::process::id()));
        let err = send(&dir.join("none.sock"), Method::GET, "/", "weft", None)
            .await
            .unwrap_err();
        assert!(matches!(err, UnixHttpError::Connect(_)), "{err}");
    }
}
