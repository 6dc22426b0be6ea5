//! State shared by the router's tasks and its API handlers.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use weft_api::{Report, RouterReport};

use crate::config::Config;
use crate::metrics::Metrics;

/// Handle to the running router, cheap to clone.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    name: String,
    started: Instant,
    metrics: Metrics,
    shutdown: watch::Sender<bool>,
}

impl Router {
    /// A router with its identity decided.
    pub fn new(config: Config, name: String) -> Self {
        let (shutdown, _) = watch::channel(false);
        Router {
            inner: Arc::new(Inner {
                config,
                name,
                started: Instant::now(),
                metrics: Metrics::default(),
                shutdown,
            }),
        }
    }

    /// The configuration the router started with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// This peer's unique name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Counters exported on /metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Seconds since start.
    pub fn uptime_secs(&self) -> u64 {
        self.inner.started.elapsed().as_secs()
    }

    /// Asks every task to stop.
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Resolves once shutdown was asked for.
    pub async fn stopped(&self) {
        let mut rx = self.inner.shutdown.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// The whole state as `weft report` shows it.
    pub fn report(&self) -> Report {
        let c = &self.inner.config;
        Report {
            version: weft_api::VERSION.to_string(),
            router: RouterReport {
                name: self.inner.name.clone(),
                nickname: c.nickname.clone(),
                port: c.port,
                protocol_min_version: 1,
                protocol_max_version: 1,
                encryption: c.password.is_some(),
                peer_discovery: !c.no_discovery,
                trusted_subnets: c.trusted_subnets.clone(),
                conn_limit: c.conn_limit,
                mtu: c.mtu,
                peers: Vec::new(),
                connections: Vec::new(),
                targets: Vec::new(),
            },
            ipam: None,
            dns: None,
        }
    }
}
