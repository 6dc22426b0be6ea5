//! The guard of the TCP listener (127.0.0.1:6784): read-only methods, loopback `Host` only.
//!
//! A web page can make a browser send requests to 127.0.0.1 (a cross-site POST without a
//! body needs no CORS preflight), and a page on a name the attacker re-points at 127.0.0.1
//! (DNS rebinding) can even read the answers. So this listener changes nothing, whatever
//! the request, and answers only requests addressed to loopback by name.

use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiFailure;

/// Refuses other methods than GET and HEAD, and `Host`s that are not loopback.
pub(super) async fn guard(req: Request, next: Next) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return ApiFailure {
            status: StatusCode::METHOD_NOT_ALLOWED,
            message: format!(
                "{} {} is refused on {}: it serves reading only; changes go through the \
                 router's unix socket (run the weft command as root)",
                req.method(),
                req.uri().path(),
                weft_api::paths::HTTP_ADDR
            ),
        }
        .into_response();
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    if !host.is_some_and(loopback_host) {
        return ApiFailure {
            status: StatusCode::FORBIDDEN,
            message: format!(
                "Host {:?} is refused: {} answers only to 127.0.0.1, localhost or [::1]",
                host.unwrap_or(""),
                weft_api::paths::HTTP_ADDR
            ),
        }
        .into_response();
    }
    next.run(req).await
}

/// Whether a `Host` header names loopback: 127.0.0.1, localhost or [::1], with or
/// without a port.
pub(super) fn loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inner, port))
                if port.is_empty() || port.strip_prefix(':').is_some_and(valid_port) =>
            {
                return inner == "::1";
            }
            _ => return false,
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) if valid_port(port) => name,
            Some(_) => return false,
            None => host,
        }
    };
    name == "127.0.0.1" || name.eq_ignore_ascii_case("localhost")
}

/// A decimal port number.
fn valid_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::loopback_host;

    #[test]
    fn only_loopback_hosts_pass() {
        for ok in [
            "127.0.0.1",
            "127.0.0.1:6784",
            "localhost",
            "LOCALHOST:80",
            "[::1]",
            "[::1]:6784",
        ] {
            assert!(loopback_host(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.example",
            "evil.example:6784",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
            "127.0.0.2",
            "[::2]:6784",
            "[::1]x",
            "127.0.0.1:",
            "127.0.0.1:abc",
            "localhost:6784:1",
            "[::1]:",
        ] {
            assert!(!loopback_host(bad), "{bad}");
        }
    }
}
