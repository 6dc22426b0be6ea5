//! The plugin's HTTP side: dockerd POSTs `/Interface.Method` with a JSON body on the unix
//! socket; [`answer`] decodes the call, runs it on the [`Backend`] and encodes the reply.

use std::future::Future;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::Value;
use tokio::net::UnixListener;

use super::backend::{Backend, PluginError};
use super::wire;

/// Content type of every answer (the version dockerd's plugin client asks for in `Accept`).
pub const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1.2+json";

/// One answer to dockerd: HTTP status and JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// 200 on success, 500 with `{"Err": ...}` on a failed call, 404 for an unknown call.
    pub status: u16,
    /// The JSON body.
    pub body: Value,
}

/// Why a call did not succeed.
enum Fail {
    /// The call failed; dockerd shows this message.
    Msg(String),
    /// No such call.
    Unknown,
}

impl From<String> for Fail {
    fn from(m: String) -> Self {
        Fail::Msg(m)
    }
}

impl From<PluginError> for Fail {
    fn from(e: PluginError) -> Self {
        Fail::Msg(e.message)
    }
}

/// What AllocateNetwork/FreeNetwork answer: dockerd only sends them for swarm-scoped networks.
const SWARM_SCOPE: &str = "weft is a local-scope network driver: create the network on each host \
     with `docker network create -d weft`, not as a swarm-scoped network";

/// Runs one call (`path` is the request path, e.g. `/NetworkDriver.Join`) on `backend`.
async fn run<B: Backend>(backend: &B, call: &str, body: &[u8]) -> Result<Value, Fail> {
    Ok(match call {
        "Plugin.Activate" => wire::activated(),
        "NetworkDriver.GetCapabilities" => wire::network_capabilities(),
        "NetworkDriver.CreateNetwork" => {
            backend
                .create_network(wire::create_network(call, body)?)
                .await?;
            wire::empty()
        }
        "NetworkDriver.DeleteNetwork" => {
            backend
                .delete_network(wire::network_id(call, body)?)
                .await?;
            wire::empty()
        }
        "NetworkDriver.CreateEndpoint" => {
            let spec = wire::create_endpoint(call, body)?;
            let created = backend.create_endpoint(spec.clone()).await?;
            wire::endpoint_created(&spec, &created)
        }
        "NetworkDriver.DeleteEndpoint"
        | "NetworkDriver.Leave"
        | "NetworkDriver.ProgramExternalConnectivity"
        | "NetworkDriver.RevokeExternalConnectivity" => {
            let (n, e) = wire::endpoint_ids(call, body)?;
            match call {
                "NetworkDriver.DeleteEndpoint" => backend.delete_endpoint(n, e).await?,
                "NetworkDriver.Leave" => backend.leave(n, e).await?,
                "NetworkDriver.ProgramExternalConnectivity" => {
                    backend.program_external(n, e).await?
                }
                _ => backend.revoke_external(n, e).await?,
            }
            wire::empty()
        }
        "NetworkDriver.EndpointOperInfo" => {
            let (n, e) = wire::endpoint_ids(call, body)?;
            wire::endpoint_info(&backend.endpoint_info(n, e).await?)
        }
        "NetworkDriver.Join" => wire::joined(&backend.join(wire::join(call, body)?).await?),
        // Node discovery is swarm's; weft's mesh finds its peers itself.
        "NetworkDriver.DiscoverNew" | "NetworkDriver.DiscoverDelete" => wire::empty(),
        "NetworkDriver.AllocateNetwork" | "NetworkDriver.FreeNetwork" => {
            return Err(Fail::Msg(SWARM_SCOPE.to_string()))
        }
        "IpamDriver.GetCapabilities" => wire::ipam_capabilities(),
        "IpamDriver.GetDefaultAddressSpaces" => wire::address_spaces(),
        "IpamDriver.RequestPool" => wire::pool(
            &backend
                .request_pool(wire::request_pool(call, body)?)
                .await?,
        ),
        "IpamDriver.ReleasePool" => {
            backend.release_pool(wire::pool_id(call, body)?).await?;
            wire::empty()
        }
        "IpamDriver.RequestAddress" => wire::address(
            &backend
                .request_address(wire::request_address(call, body)?)
                .await?,
        ),
        "IpamDriver.ReleaseAddress" => {
            let (pool, addr) = wire::release_address(call, body)?;
            backend.release_address(pool, addr).await?;
            wire::empty()
        }
        _ => return Err(Fail::Unknown),
    })
}

/// Answers one POST of dockerd: the protocol without HTTP (what [`serve`] runs per request).
pub async fn answer<B: Backend>(backend: &B, path: &str, body: &[u8]) -> Answer {
    let call = path.strip_prefix('/').unwrap_or(path);
    match run(backend, call, body).await {
        Ok(body) => {
            tracing::debug!(call, "plugin call answered");
            Answer { status: 200, body }
        }
        Err(Fail::Msg(m)) => {
            tracing::warn!(call, error = %m, "plugin call failed");
            Answer {
                status: 500,
                body: wire::error(&m),
            }
        }
        Err(Fail::Unknown) => {
            tracing::warn!(call, "unknown plugin call");
            Answer {
                status: 404,
                body: wire::error(&format!(
                    "weft plugin: unknown call {path:?} (weft implements NetworkDriver and IpamDriver)"
                )),
            }
        }
    }
}

/// An HTTP response carrying `a`.
fn respond(a: Answer) -> Response {
    let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        a.body.to_string(),
    )
        .into_response()
}

/// Every request lands here: only POST is a plugin call.
async fn handle<B: Backend>(
    State(backend): State<Arc<B>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    if method != Method::POST {
        return respond(Answer {
            status: 405,
            body: wire::error(&format!(
                "weft plugin: {method} {} is not a plugin call; dockerd POSTs them",
                uri.path()
            )),
        });
    }
    respond(answer(&*backend, uri.path(), &body).await)
}

/// The plugin's HTTP routes over `backend`.
pub fn router<B: Backend>(backend: Arc<B>) -> Router {
    Router::new().fallback(handle::<B>).with_state(backend)
}

/// Serves the network + IPAM plugin protocol on `listener` (dockerd's `weft.sock`) until
/// `shutdown` completes; then waits for the calls in flight.
pub async fn serve<B: Backend>(
    listener: UnixListener,
    backend: Arc<B>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(backend))
        .with_graceful_shutdown(shutdown)
        .await
}
