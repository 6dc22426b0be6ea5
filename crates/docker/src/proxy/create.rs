//! `POST /containers/create`: the one request the proxy changes (the logic is in
//! [`super::rewrite`]; this is the I/O around it).

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{header, Request, Response, StatusCode};

use super::forward::{error_response, full, streamed, upstream_request, ProxyBody, UpstreamSlot};
use super::rewrite::{self, Decision, Placement, Target};
use super::Shared;
use crate::engine::{CreateNetwork, EngineError};

/// Create bodies are a few KiB; anything this big is not one.
const MAX_BODY: usize = 4 << 20;

/// How often the proxy lists networks again after a concurrent create of the same network.
const PLACE_ATTEMPTS: usize = 3;

pub(super) async fn handle(
    shared: &Shared,
    slot: &UpstreamSlot,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let (mut parts, body) = req.into_parts();
    let bytes = match Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                &format!("weft's Docker proxy: reading the container create request: {e}"),
            )
        }
    };
    let (mut body, setting, specs) = match rewrite::decide(&bytes) {
        Decision::PassThrough => return send(slot, parts, bytes).await,
        Decision::Reject(message) => return error_response(StatusCode::BAD_REQUEST, &message),
        Decision::Attach {
            body,
            setting,
            specs,
        } => (body, setting, specs),
    };
    let placements = match ensure_networks(shared, &setting, &specs).await {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    let Some((first, others)) = placements.split_first() else {
        return send(slot, parts, bytes).await;
    };
    let name = rewrite::query_name(parts.uri.query());
    rewrite::rewrite_create(
        &mut body,
        first.target.name(),
        first.ipv4,
        name.as_deref(),
        &shared.config,
    );
    tracing::info!(
        "docker proxy: {setting}: creating {} on {}",
        name.as_deref().unwrap_or("a container"),
        placements
            .iter()
            .map(|p| p.target.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let new_body = Bytes::from(body.to_string());
    parts.headers.remove(header::TRANSFER_ENCODING);
    parts.headers.insert(
        header::CONTENT_LENGTH,
        header::HeaderValue::from(new_body.len()),
    );
    if others.is_empty() {
        return send(slot, parts, new_body).await;
    }

    let resp = match slot.send(upstream_request(parts, full(new_body))).await {
        Ok(r) => r,
        Err(e) => {
            return error_response(
                StatusCode::BAD_GATEWAY,
                &format!("weft's Docker proxy: {e}"),
            )
        }
    };
    let (resp_parts, resp_body) = resp.into_parts();
    let answer = match resp_body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            return error_response(
                StatusCode::BAD_GATEWAY,
                &format!("weft's Docker proxy: reading dockerd's answer to the create: {e}"),
            )
        }
    };
    if resp_parts.status == StatusCode::CREATED {
        let id = serde_json::from_slice::<serde_json::Value>(&answer)
            .ok()
            .and_then(|v| v.get("Id").and_then(|i| i.as_str()).map(str::to_string));
        if let Some(id) = id {
            if let Err(resp) = connect_others(shared, &setting, &id, others).await {
                return resp;
            }
        }
    }
    Response::from_parts(resp_parts, full(answer))
}

async fn send(
    slot: &UpstreamSlot,
    parts: hyper::http::request::Parts,
    body: Bytes,
) -> Response<ProxyBody> {
    match slot.send(upstream_request(parts, full(body))).await {
        Ok(r) => r.map(streamed),
        Err(e) => error_response(
            StatusCode::BAD_GATEWAY,
            &format!("weft's Docker proxy: {e}"),
        ),
    }
}

/// Finds or creates the network of every form; a create that loses a race with another
/// one (conflict) looks again.
async fn ensure_networks(
    shared: &Shared,
    setting: &str,
    specs: &[super::cidr::AddrSpec],
) -> Result<Vec<Placement>, Response<ProxyBody>> {
    let config = &shared.config;
    let mut last_conflict = None;
    for _ in 0..PLACE_ATTEMPTS {
        let networks = shared
            .engine
            .list_networks()
            .await
            .map_err(|e| engine_response(setting, "listing Docker networks", &e))?;
        let placements = rewrite::place(specs, &networks, config).map_err(|why| {
            error_response(
                StatusCode::BAD_REQUEST,
                &rewrite::reject_message(setting, &why),
            )
        })?;
        let mut conflict = false;
        for p in &placements {
            let Target::Create { name, subnet } = &p.target else {
                continue;
            };
            let req = CreateNetwork {
                name: name.clone(),
                driver: config.driver.clone(),
                ipam_driver: Some(config.driver.clone()),
                subnet: Some(subnet.to_string()),
                ..CreateNetwork::default()
            };
            match shared.engine.create_network(&req).await {
                Ok(id) => tracing::info!("docker proxy: created network {name} ({subnet}) {id}"),
                Err(e) if e.is_conflict() => {
                    conflict = true;
                    last_conflict = Some((name.clone(), *subnet));
                }
                Err(e) => {
                    return Err(engine_response(
                        setting,
                        &format!("creating Docker network {name} for {subnet}"),
                        &e,
                    ))
                }
            }
        }
        if !conflict {
            return Ok(placements);
        }
    }
    let (name, subnet) = last_conflict.unwrap_or_default();
    Err(error_response(
        StatusCode::CONFLICT,
        &format!(
            "{setting}: a Docker network named {name} exists but is not a {} network of subnet {subnet}; remove or rename it",
            config.driver
        ),
    ))
}

/// Connects a created container to the other networks; on failure removes it again.
async fn connect_others(
    shared: &Shared,
    setting: &str,
    id: &str,
    others: &[Placement],
) -> Result<(), Response<ProxyBody>> {
    for p in others {
        let net = p.target.name();
        if let Err(e) = shared.engine.connect_network(net, id, p.ipv4).await {
            if let Err(rm) = shared.engine.remove_container(id, true).await {
                tracing::warn!("docker proxy: removing half-attached container {id}: {rm}");
            }
            return Err(engine_response(
                setting,
                &format!("attaching the container to network {net}"),
                &e,
            ));
        }
    }
    Ok(())
}

fn engine_response(setting: &str, doing: &str, e: &EngineError) -> Response<ProxyBody> {
    let status = match e {
        EngineError::Api { status, .. } => {
            StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        }
        EngineError::NotFound { .. } => StatusCode::NOT_FOUND,
        EngineError::Conflict { .. } => StatusCode::CONFLICT,
        EngineError::Unreachable { .. }
        | EngineError::Transport { .. }
        | EngineError::Decode { .. } => StatusCode::BAD_GATEWAY,
        EngineError::UnsupportedHost { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error_response(status, &format!("{setting}: {doing}: {e}"))
}
