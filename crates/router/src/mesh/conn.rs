//! One control connection: a Noise [`Session`] over a TCP stream, reporting to the driver.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use weft_mesh::{ConnEvent, ConnId, Hello, Message, Role, Session, SessionEvent};

use crate::metrics::Metrics;

/// Messages queued for one connection before its peer counts as not reading.
pub(super) const OUT_QUEUE: usize = 1024;
/// Events queued from all connections to the driver (then reading waits: TCP slows peers).
pub(super) const EVENT_QUEUE: usize = 1024;
/// How long one write may wait for a peer to read before the connection is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Queues `msg` for a connection; `Err` with the reason when the peer has not read the
/// last [`OUT_QUEUE`] messages (the caller then disconnects it rather than buffer more).
pub(super) fn queue(tx: &mpsc::Sender<Message>, msg: Message) -> Result<(), String> {
    match tx.try_send(msg) {
        Err(mpsc::error::TrySendError::Full(_)) => Err(format!(
            "it does not read what we send ({OUT_QUEUE} messages queued)"
        )),
        // Closed: the connection is ending anyway.
        _ => Ok(()),
    }
}

/// What a connection task needs besides its socket.
pub(super) struct SessionParams {
    pub conn: ConnId,
    pub password: Option<String>,
    pub hello: Hello,
    pub metrics: Arc<Metrics>,
    pub handshake_timeout: Duration,
}

async fn write_out(
    stream: &mut TcpStream,
    session: &mut Session,
    metrics: &Metrics,
) -> std::io::Result<()> {
    let out = session.take_output();
    if !out.is_empty() {
        metrics
            .mesh_bytes_sent
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&out))
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the peer has not read for {} s", WRITE_TIMEOUT.as_secs()),
                )
            })??;
    }
    Ok(())
}

/// Runs the connection until either side ends it.
pub(super) async fn run(
    mut stream: TcpStream,
    addr: SocketAddr,
    outbound: bool,
    target: Option<String>,
    p: SessionParams,
    events: mpsc::Sender<ConnEvent>,
    mut outgoing: mpsc::Receiver<Message>,
) {
    let _ = stream.set_nodelay(true);
    let role = if outbound {
        Role::Initiator
    } else {
        Role::Responder
    };
    let mut session = Session::new(role, p.password.as_deref(), p.hello.clone());
    let mut up = false;
    let deadline = tokio::time::Instant::now() + p.handshake_timeout;
    let mut buf = vec![0u8; 64 * 1024];
    let who = target.clone().unwrap_or_else(|| addr.to_string());
    let reason: String = loop {
        if let Err(e) = write_out(&mut stream, &mut session, &p.metrics).await {
            break format!("write failed: {e}");
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline), if !up => {
                break "handshake timed out".to_string();
            }
            read = stream.read(&mut buf) => {
                let n = match read {
                    Ok(0) => break "connection closed by the remote".to_string(),
                    Ok(n) => n,
                    Err(e) => break format!("read failed: {e}"),
                };
                p.metrics.mesh_bytes_received.fetch_add(n as u64, Ordering::Relaxed);
                match session.receive(&buf[..n]) {
                    Ok(evs) => {
                        for ev in evs {
                            match ev {
                                SessionEvent::Established(hello) => {
                                    up = true;
                                    let _ = events.send(ConnEvent::Up {
                                        conn: p.conn,
                                        addr,
                                        outbound,
                                        target: target.clone(),
                                        hello,
                                    }).await;
                                }
                                SessionEvent::Message(msg) => {
                                    let _ = events.send(ConnEvent::Msg { conn: p.conn, msg }).await;
                                }
                            }
                        }
                    }
                    Err(e) => {
                        // The session may have queued a reason for the remote.
                        let _ = write_out(&mut stream, &mut session, &p.metrics).await;
                        break format!("{e}");
                    }
                }
            }
            msg = outgoing.recv() => match msg {
                Some(m) => {
                    if let Err(e) = session.send(&m) {
                        tracing::warn!(peer = %who, "cannot send: {e}");
                    }
                }
                None => {
                    // The driver closed us: send what is queued, then end.
                    while let Ok(m) = outgoing.try_recv() {
                        let _ = session.send(&m);
                    }
                    let _ = write_out(&mut stream, &mut session, &p.metrics).await;
                    let _ = stream.shutdown().await;
                    break "closed".to_string();
                }
            },
        }
    };
    let _ = stream.shutdown().await;
    if up {
        let _ = events
            .send(ConnEvent::Closed {
                conn: p.conn,
                reason,
            })
            .await;
    } else {
        let reason = if outbound {
            format!("connection to {who}: {reason}")
        } else {
            format!("connection from {addr}: {reason}")
        };
        let _ = events
            .send(ConnEvent::Failed {
                conn: p.conn,
                target,
                addr: Some(addr),
                outbound,
                reason,
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_that_does_not_read_is_cut_off_at_the_queue_bound() {
        let (tx, _rx) = mpsc::channel(OUT_QUEUE);
        for _ in 0..OUT_QUEUE {
            assert!(queue(&tx, Message::Heartbeat).is_ok());
        }
        let why = queue(&tx, Message::Heartbeat).unwrap_err();
        assert!(why.contains("does not read"), "{why}");
    }
}
