//! The router's stop signal: asked for once (`/stop`, `weft reset`, SIGTERM), seen by every
//! task. Built at start-up and handed to what must stop with the router.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;

/// Handle to the stop signal, cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    /// A signal not yet given.
    pub fn new() -> Self {
        let (tx, _) = watch::channel(false);
        Shutdown { tx: Arc::new(tx) }
    }

    /// Asks every task to stop.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// A future that resolves once the stop was asked for (owns what it needs).
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.tx.subscribe();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }
}
