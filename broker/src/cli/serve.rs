//! `mooring-broker serve --config FILE`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use mooring_serve::ConfigFile as _;
use tokio::net::TcpListener;

use super::Failure;
use crate::config::Config;
use crate::issuer::Issuer;
use crate::policy::Policy;
use crate::service::{Broker, Clock as _, SystemClock};
use crate::{http, store};

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The broker configuration (TOML).
    #[arg(long)]
    config: PathBuf,
}

fn usage(e: impl std::fmt::Display) -> Failure {
    Failure::Usage(e.to_string())
}

pub(crate) fn run(args: &ServeArgs) -> Result<String, Failure> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MOORING_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let config = Config::load(&args.config).map_err(|e| usage(format!("{e:#}")))?;
    crate::files::private_dir(&config.data_dir).map_err(|e| usage(format!("{e:#}")))?;
    let policy = Policy::load(&config.policy).map_err(usage)?;
    let backend = store::open(&config).map_err(usage)?;
    let clock = Arc::new(SystemClock);
    let issuer =
        Issuer::open(backend.keys, &config.trust_domain, config.keys.rotate_after_hours, clock.unix())
            .map_err(|e| usage(format!("{e:#}")))?;
    let (tls, generated) = http::tls::server_config(&config).map_err(|e| usage(format!("{e:#}")))?;
    let issuer_listener = match config.federation.as_ref().and_then(|f| f.own_listener()) {
        Some((listen, certificate, key)) => {
            Some((listen, http::tls::issuer_config(certificate, key).map_err(|e| usage(format!("{e:#}")))?))
        }
        None => None,
    };
    if let Some(generated) = generated {
        if let Some(ca) = generated.server_ca {
            println!("generated a server certificate; clients pin its CA: {}", ca.display());
        }
        if let Some((cert, key)) = generated.admin_certificate {
            println!("generated an admin client certificate: {} (key {})", cert.display(), key.display());
        }
    }
    // Every connection is a file descriptor, and a crowd of slow clients is many: take the
    // whole hard limit, not the 1,024 soft default a service starts with.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(e) => tracing::warn!("cannot raise the open file limit: {e}"),
    }
    let listen = config.listen;
    let service_threads = config.service_threads();
    let policy_path = config.policy.clone();
    let broker = Arc::new(
        Broker::new(config, backend.store, &backend.challenge_key, policy, issuer, clock)
            .map_err(|e| usage(format!("{e:#}")))?,
    );
    // Verification and store calls run on tokio's blocking pool, bounded here: hundreds of
    // threads competing for a few cores cost more than they overlap.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(service_threads)
        .enable_all()
        .build()
        .map_err(usage)?;
    let serving = Arc::clone(&broker);
    let stopped = runtime.block_on(async move {
        // The issuer's own listener first: its address is printed before the API's.
        if let Some((listen, issuer_tls)) = issuer_listener {
            let listener = TcpListener::bind(listen)
                .await
                .map_err(|e| usage(format!("cannot listen on {listen} (federation): {e}")))?;
            let local = listener.local_addr().map_err(usage)?;
            let issuer = serving.config.federation.as_ref().map(|f| f.issuer.clone()).unwrap_or_default();
            println!("mooring-broker OIDC issuer {issuer} listening on https://{local}");
            let app = http::issuer_router(Arc::clone(&serving));
            tokio::spawn(mooring_serve::serve(
                listener,
                issuer_tls,
                app,
                http::LIMITS,
                mooring_serve::shutdown_signal(),
            ));
        }
        let listener =
            TcpListener::bind(listen).await.map_err(|e| usage(format!("cannot listen on {listen}: {e}")))?;
        let local = listener.local_addr().map_err(usage)?;
        println!(
            "mooring-broker listening on https://{local} (policy {}, {} classes)",
            policy_path.display(),
            serving.policy().classes().len()
        );
        let housekeeping = Arc::clone(&serving);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                let broker = Arc::clone(&housekeeping);
                let _ = tokio::task::spawn_blocking(move || broker.housekeeping()).await;
            }
        });
        let summarizer = Arc::clone(&serving);
        tokio::spawn(async move {
            let period = Duration::from_secs(u64::from(summarizer.config.audit.summary_seconds));
            let mut tick = tokio::time::interval(period);
            tick.tick().await;
            loop {
                tick.tick().await;
                let broker = Arc::clone(&summarizer);
                let _ = tokio::task::spawn_blocking(move || broker.summarize_refusals()).await;
            }
        });
        let reloader = Arc::clone(&serving);
        tokio::spawn(async move {
            let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            while hangup.recv().await.is_some() {
                let broker = Arc::clone(&reloader);
                let _ = tokio::task::spawn_blocking(move || broker.reload("SIGHUP")).await;
            }
        });
        let app = http::router(serving);
        mooring_serve::serve(listener, tls, app, http::LIMITS, mooring_serve::shutdown_signal()).await;
        Ok("mooring-broker stopped".to_owned())
    });
    // The background tasks still hold the broker: stop them first, so that the last
    // reference, and with it the store, is dropped here, outside the runtime. (A pooled
    // PostgreSQL connection runs a runtime of its own and panics when dropped inside one.)
    runtime.shutdown_timeout(Duration::from_secs(5));
    drop(broker);
    stopped
}
