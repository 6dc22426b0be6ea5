//! The Docker API proxy: passes everything through, attaching containers per WEFT_CIDR.
//!
//! Users point the Docker client at the proxy's socket (`eval $(weft env)`); every request
//! goes to dockerd unchanged (streams and hijacked `attach`/`exec` sessions included) except
//! `POST /containers/create`, whose body is rewritten so that dockerd itself attaches the
//! container to weft's Docker networks (driver and IPAM driver `weft`) before its process
//! starts. Forms beyond the first are connected right after the create, before the client
//! hears back.
//!
//! Hijacked sessions must use the `Connection: Upgrade` / `Upgrade: tcp` handshake, which the
//! Docker CLI and docker-py have sent since Docker 1.12; the older hijack without it (a 200
//! followed by raw bytes) is not supported.

pub mod cidr;
mod create;
mod forward;
pub mod rewrite;

use std::future::Future;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use ipnet::Ipv4Net;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::engine::Engine;

/// How the proxy maps `WEFT_CIDR` to Docker networking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// The Docker network of weft's default subnet (`weft`), made by the router at launch.
    pub default_network: String,
    /// weft's default subnet.
    pub default_subnet: Ipv4Net,
    /// weft's whole allocation range; `net:CIDR` must lie inside it.
    pub range: Ipv4Net,
    /// DNS server given to attached containers (`None` with `--no-dns`).
    pub dns_server: Option<Ipv4Addr>,
    /// DNS domain for search and hostnames (`weft.local`), `None` with `--no-dns`.
    pub dns_domain: Option<String>,
    /// Network and IPAM driver name (`weft`).
    pub driver: String,
}

/// What every connection task shares.
pub(crate) struct Shared {
    pub upstream: PathBuf,
    pub config: ProxyConfig,
    pub engine: Engine,
    /// Closed when the proxy stops, which ends hijacked sessions.
    pub stop: watch::Receiver<()>,
}

/// Serves the proxy on `listener`, forwarding to the dockerd listening on `upstream`, until
/// `shutdown` completes; then stops accepting and drops every open connection and session.
pub async fn serve(
    listener: UnixListener,
    upstream: PathBuf,
    config: ProxyConfig,
    shutdown: impl Future,
) {
    let (stop_tx, stop_rx) = watch::channel(());
    let shared = Arc::new(Shared {
        engine: Engine::new(upstream.clone()),
        upstream,
        config,
        stop: stop_rx,
    });
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    conns.spawn(serve_connection(stream, shared.clone()));
                }
                Err(e) => {
                    // Out of descriptors and the like: wait a little instead of spinning.
                    tracing::warn!("docker proxy: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(stop_tx);
    conns.shutdown().await;
}

async fn serve_connection(stream: UnixStream, shared: Arc<Shared>) {
    let slot = Arc::new(forward::UpstreamSlot::new(shared.upstream.clone()));
    let service = service_fn(move |req| {
        let shared = shared.clone();
        let slot = slot.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(&shared, &slot, req).await) }
    });
    let conn = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!("docker proxy: client connection ended: {e}");
    }
}

async fn handle(
    shared: &Shared,
    slot: &forward::UpstreamSlot,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<forward::ProxyBody> {
    if req.method() == hyper::Method::POST && rewrite::is_create_path(req.uri().path()) {
        create::handle(shared, slot, req).await
    } else {
        forward::forward(shared, slot, req).await
    }
}
