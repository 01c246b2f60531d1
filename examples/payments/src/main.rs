//! `mooring-payments`: an example relying service. It accepts `POST /pay` only from a
//! caller presenting a valid Mooring credential from the address it is bound to, with
//! proof that the caller holds the credential's key: mutual TLS with the X.509-SVID, or a
//! JWT-SVID with a signed possession statement for the request. Credentials are checked
//! by the broker's verify API (`mode = "broker"`) or offline against the broker's trust
//! bundle and revocation list (`mode = "offline"`).
#![forbid(unsafe_code)]

mod broker;
mod caller;
mod config;
mod http;
mod refusal;
mod replay;
mod tls;
mod trust;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use mooring_serve::ConfigFile as _;

use crate::broker::BrokerClient;
use crate::caller::Gate;
use crate::config::Config;
use crate::trust::Trust;

/// Example payment service for Mooring credentials.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Configuration file (TOML; see examples/payments/example.toml).
    #[arg(long)]
    config: PathBuf,
}

fn main() -> anyhow::Result<()> {
    mooring_client::logging::init("info");
    let args = Args::parse();
    let config = Config::load(&args.config)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?
        .block_on(run(config))
}

async fn run(config: Config) -> anyhow::Result<()> {
    let broker = BrokerClient::new(&config.broker)?;
    let trust =
        Arc::new(Trust::fetch(&broker, config.mode).await.context("cannot fetch the broker's trust bundle")?);
    trust::spawn_refresh(Arc::clone(&trust), broker.clone(), &config.refresh, config.mode);
    let tls = tls::server_config(&config.tls, config.listen.ip(), trust.client_verifier())?;
    let gate = Gate {
        mode: config.mode,
        audience: config.audience.clone(),
        max_revocation_age: i64::from(config.refresh.max_revocation_age_seconds),
        trust,
        broker,
        seen: replay::SeenProofs::default(),
    };
    let app = http::router(Arc::new(http::App { gate, clock: mooring_client::service::now }));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr().context("listen address")?;
    println!("mooring-payments listening on https://{address} (mode {:?})", config.mode);
    mooring_serve::serve(
        listener,
        tls,
        app,
        mooring_serve::Limits::default(),
        mooring_serve::shutdown_signal(),
    )
    .await;
    Ok(())
}
