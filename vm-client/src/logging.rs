//! Logs to stderr (journald takes it from there), filtered by `MOORING_LOG` (tracing's
//! `EnvFilter` syntax), else at `default`. Shared by the client and the tools beside it.

/// Installs the subscriber once per process; later calls do nothing.
pub fn init(default: &str) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MOORING_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .try_init();
}
