//! A minimal HTTP/1.1 client for the router's unix socket.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Method, StatusCode};
use serde::{de::DeserializeOwned, Serialize};

use crate::unix_http::{self, UnixHttpError};
use crate::ErrorBody;

/// What can go wrong talking to the router.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No router answers on the socket.
    #[error("weft is not running (no router answers on {0}); start it with `weft launch`")]
    NotRunning(PathBuf),
    /// The router answered with an error.
    #[error("{message}")]
    Router {
        /// HTTP status.
        status: u16,
        /// The router's one-line explanation.
        message: String,
    },
    /// Transport failure after connecting.
    #[error("talking to the router on {path}: {source}")]
    Transport {
        /// Socket path.
        path: PathBuf,
        /// Cause.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The router's answer could not be decoded.
    #[error("the router's answer to {what} could not be read: {source}")]
    Decode {
        /// Endpoint.
        what: String,
        /// Cause.
        source: serde_json::Error,
    },
}

/// Client of one router's API socket.
#[derive(Debug, Clone)]
pub struct ApiClient {
    socket: PathBuf,
}

impl ApiClient {
    /// A client for the socket at `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        ApiClient {
            socket: socket.into(),
        }
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `GET path`, decoding JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let body = self.request(Method::GET, path, None).await?;
        decode(path, &body)
    }

    /// `GET path`, returning the body as text.
    pub async fn get_text(&self, path: &str) -> Result<String, ApiError> {
        let body = self.request(Method::GET, path, None).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// `POST path` with a JSON body, decoding a JSON answer.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ApiError> {
        let bytes = serde_json::to_vec(body).map_err(|e| ApiError::Decode {
            what: path.to_string(),
            source: e,
        })?;
        let body = self.request(Method::POST, path, Some(bytes)).await?;
        decode(path, &body)
    }

    /// `DELETE path`, decoding a JSON answer.
    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let body = self.request(Method::DELETE, path, None).await?;
        decode(path, &body)
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes, ApiError> {
        let transport = |e: Box<dyn std::error::Error + Send + Sync>| ApiError::Transport {
            path: self.socket.clone(),
            source: e,
        };
        let resp = match unix_http::send(&self.socket, method, path, "weft", body).await {
            Ok(resp) => resp,
            Err(UnixHttpError::Connect(_)) => {
                return Err(ApiError::NotRunning(self.socket.clone()))
            }
            Err(UnixHttpError::Transport(e)) => return Err(transport(e)),
        };
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| transport(e.into()))?
            .to_bytes();
        if status.is_success() {
            return Ok(bytes);
        }
        Err(router_error(status, &bytes))
    }
}

fn router_error(status: StatusCode, body: &[u8]) -> ApiError {
    let message = serde_json::from_slice::<ErrorBody>(body)
        .map(|e| e.error)
        .unwrap_or_else(|_| {
            let text = String::from_utf8_lossy(body).trim().to_string();
            if text.is_empty() {
                format!("the router answered {status}")
            } else {
                text
            }
        });
    ApiError::Router {
        status: status.as_u16(),
        message,
    }
}

fn decode<T: DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, ApiError> {
    // Endpoints that return nothing answer with an empty body; treat it as JSON null.
    let body: &[u8] = if body.is_empty() { b"null" } else { body };
    serde_json::from_slice(body).map_err(|e| ApiError::Decode {
        what: what.to_string(),
        source: e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_error_prefers_json_message() {
        let e = router_error(StatusCode::BAD_REQUEST, br#"{"error":"bad peer"}"#);
        assert_eq!(e.to_string(), "bad peer");
        let e = router_error(StatusCode::NOT_FOUND, b"");
        assert!(e.to_string().contains("404"));
    }
}
