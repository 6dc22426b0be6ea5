//! Logs go to `$WEFT_RUN_DIR/weft.log`, and to stderr when the router runs in the foreground.

use std::path::Path;

use tracing_subscriber::{fmt, prelude::*, EnvFilter};

/// Installs the global subscriber. `WEFT_LOG` sets the filter (default `info`).
pub fn init(log_file: &Path, to_stderr: bool) -> anyhow::Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_file)
        .map_err(|e| anyhow::anyhow!("cannot open log file {}: {e}", log_file.display()))?;
    let filter = || EnvFilter::try_from_env("WEFT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let file_layer = fmt::layer()
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .with_filter(filter());
    let stderr_layer = to_stderr.then(|| {
        fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter())
    });
    // A second init (tests running several routers in one process) keeps the first.
    let _ = tracing_subscriber::registry()
        .with(file_layer)
        .with(stderr_layer)
        .try_init();
    Ok(())
}
