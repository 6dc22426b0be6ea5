//! weft run as a CNI plugin (CNI_COMMAND is set): reads the environment and stdin, asks
//! this host's router over its 0600 socket (the conflist names it), prints the result or
//! the spec's error JSON on stdout. The protocol itself is `weft_cni`.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use weft_api::{
    ApiClient, ApiError, CniAddRequest, CniAttachment, CniCheckRequest, CniDelRequest,
    CniGcRequest, CniGcResponse, CniStatus, Paths,
};
use weft_cni::{
    add_request, add_result, attachment_key, code, CniError, CniVersion, Command, Env, NetConf,
};

/// How long an ADD whose router died mid-way waits for it to come back, to undo the ADD.
const RECOVER_WITHIN: Duration = Duration::from_secs(60);

/// Runs the verb; returns the exit code.
pub fn main() -> i32 {
    let env = match Env::parse(|k| std::env::var(k).ok()) {
        Ok(e) => e,
        Err(e) => return fail(&e, "1.1.0"),
    };
    if env.command == Command::Version {
        println!("{}", weft_cni::supported_versions_json());
        return 0;
    }
    let stdin = match read_stdin() {
        Ok(b) => b,
        Err(e) => return fail(&e, "1.1.0"),
    };
    let version = weft_cni::conf::version_of(&stdin);
    let conf = match NetConf::parse(&stdin) {
        Ok(c) => c,
        Err(e) => return fail(&e, &version),
    };
    let socket = conf
        .socket
        .clone()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Paths::from_env().socket());
    let client = ApiClient::new(socket);
    let done = crate::commands::block_on(verb(&client, &env, &conf));
    match done {
        Ok(Some(out)) => {
            let mut o = std::io::stdout().lock();
            let _ = writeln!(o, "{out}");
            0
        }
        Ok(None) => 0,
        Err(e) => fail(&e, conf.cni_version.as_str()),
    }
}

fn fail(e: &CniError, version: &str) -> i32 {
    println!("{}", e.to_json(version));
    eprintln!("weft (CNI): {}: {}", e.msg, e.details);
    1
}

/// Stdin, at most [`weft_cni::MAX_STDIN`] bytes (one more is read to tell it was larger).
fn read_stdin() -> Result<Vec<u8>, CniError> {
    let mut buf = Vec::new();
    std::io::stdin()
        .lock()
        .take(weft_cni::MAX_STDIN as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| CniError::new(code::IO, "cannot read stdin", e.to_string()))?;
    Ok(buf)
}

async fn verb(client: &ApiClient, env: &Env, conf: &NetConf) -> Result<Option<String>, CniError> {
    match env.command {
        Command::Add => add(client, env, conf).await.map(Some),
        Command::Del => {
            let req = CniDelRequest {
                key: attachment_key(env, conf),
                netns: env.netns.clone(),
            };
            client
                .post::<_, ()>("/cni/del", &req)
                .await
                .map_err(|e| router_error(client, "DEL", e))?;
            Ok(None)
        }
        Command::Check => check(client, env, conf).await.map(|_| None),
        Command::Gc => {
            let Some(valid) = &conf.valid_attachments else {
                return Err(CniError::new(
                    code::INVALID_CONF,
                    "GC without cni.dev/valid-attachments",
                    "GC needs the list of attachments to keep; nothing was released",
                ));
            };
            let req = CniGcRequest {
                network: conf.name.clone(),
                valid: valid
                    .iter()
                    .map(|v| (v.container_id.clone(), v.ifname.clone()))
                    .collect(),
            };
            let out: CniGcResponse = client
                .post("/cni/gc", &req)
                .await
                .map_err(|e| router_error(client, "GC", e))?;
            for k in out.released {
                eprintln!("weft (CNI): GC released {} ({})", k.container_id, k.ifname);
            }
            Ok(None)
        }
        Command::Status => match client.get::<CniStatus>("/cni/status").await {
            Ok(_) => Ok(None),
            Err(ApiError::Router { message, .. }) => Err(CniError::new(
                code::NOT_AVAILABLE,
                "weft cannot take containers now",
                message,
            )),
            Err(e) => Err(CniError::new(
                code::NOT_AVAILABLE,
                "weft's router is not running",
                format!("{e}"),
            )),
        },
        Command::Version => Ok(Some(weft_cni::supported_versions_json())),
    }
}

async fn add(client: &ApiClient, env: &Env, conf: &NetConf) -> Result<String, CniError> {
    let req = add_request(env, conf);
    let att: CniAttachment = match client.post("/cni/add", &req).await {
        Ok(a) => a,
        Err(ApiError::Transport { .. }) => return Err(recover(client, &req).await),
        Err(e) => return Err(router_error(client, "ADD", e)),
    };
    let result = add_result(&att).appended_to(conf.prev_result.clone());
    Ok(result.render(conf.cni_version).to_string())
}

/// The router went away during ADD: whether the ADD happened is unknown, so wait for the
/// router to come back (bounded) and DEL it, then report the failure: an ADD that failed
/// leaves nothing.
async fn recover(client: &ApiClient, req: &CniAddRequest) -> CniError {
    let start = Instant::now();
    let del = CniDelRequest {
        key: req.key.clone(),
        netns: Some(req.netns.clone()),
    };
    while start.elapsed() < RECOVER_WITHIN {
        match client.post::<_, ()>("/cni/del", &del).await {
            Ok(()) => {
                return CniError::new(
                    code::TRY_AGAIN,
                    "weft's router stopped during ADD",
                    "the router restarted and the half-done ADD was undone; try again",
                )
            }
            Err(ApiError::Router { message, .. }) => {
                return CniError::new(
                    code::TRY_AGAIN,
                    "weft's router stopped during ADD",
                    format!("undoing it after the restart failed ({message}); the runtime's DEL will finish it"),
                )
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    CniError::new(
        code::TRY_AGAIN,
        "weft's router stopped during ADD",
        format!(
            "it did not come back within {} s; start it with `weft launch` (it undoes the half-done ADD) and try again",
            RECOVER_WITHIN.as_secs()
        ),
    )
}

async fn check(client: &ApiClient, env: &Env, conf: &NetConf) -> Result<(), CniError> {
    if conf.cni_version < CniVersion::V040 {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            "CHECK needs cniVersion 0.4.0 or later",
            format!("the configuration says {}", conf.cni_version.as_str()),
        ));
    }
    let Some(prev) = &conf.prev_result else {
        return Err(CniError::new(
            code::INVALID_CONF,
            "CHECK without prevResult",
            "CHECK needs the result of ADD in prevResult",
        ));
    };
    let netns = env.netns.clone().unwrap_or_default();
    let Some(index) = prev
        .interfaces
        .iter()
        .position(|i| i.name == env.ifname && i.sandbox == netns)
    else {
        return Err(CniError::new(
            code::CHECK_FAILED,
            "CHECK failed",
            format!("prevResult has no interface {} in {netns}", env.ifname),
        ));
    };
    let req = CniCheckRequest {
        key: attachment_key(env, conf),
        netns,
        addrs: prev
            .addresses_of(index)
            .into_iter()
            .map(str::to_string)
            .collect(),
    };
    client
        .post::<_, ()>("/cni/check", &req)
        .await
        .map_err(|e| router_error(client, "CHECK", e))
}

/// A router failure as CNI error: down is 11 (try again later, with what to do); the
/// router's refusals by status.
fn router_error(client: &ApiClient, verb: &str, e: ApiError) -> CniError {
    match e {
        ApiError::NotRunning(_) => CniError::new(
            code::TRY_AGAIN,
            "weft's router is not running",
            format!(
                "{verb}: no router answers on {}; start it with `weft launch` (or fix `socket` in the network configuration), then try again",
                client.socket().display()
            ),
        ),
        ApiError::Transport { .. } => CniError::new(
            code::TRY_AGAIN,
            "weft's router stopped during the request",
            format!("{verb}: {e}; try again once it runs"),
        ),
        ApiError::Router { status, message } => {
            let c = match status {
                503 => code::TRY_AGAIN,
                400 => code::INVALID_CONF,
                404 | 412 if verb == "CHECK" => code::CHECK_FAILED,
                _ => code::ROUTER_REFUSED,
            };
            let msg = if c == code::CHECK_FAILED {
                "CHECK failed".to_string()
            } else {
                format!("weft refused {verb}")
            };
            CniError::new(c, msg, message)
        }
        ApiError::Decode { .. } => CniError::new(code::ROUTER_REFUSED, format!("weft refused {verb}"), e.to_string()),
    }
}
