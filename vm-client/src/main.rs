//! `mooring-client`: the boot-time attestation client that runs on each VM.
//!
//! Exit status: 0 success; 1 local failure (TPM, device, files); 2 usage or configuration;
//! 3 the broker refused this VM (its reason is printed); 4 the broker could not be reached.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mooring_client::api::BrokerApi;
use mooring_client::azure::AzureAttester;
use mooring_client::config::{Config, Evidence};
use mooring_client::record::Recorder;
use mooring_client::runtime::{RuntimeDir, Status, KEY_FILE};
use mooring_client::service::{self, AttestError, Attester};
use mooring_client::snp::device::GuestDevice;
use mooring_client::snp::{GuestKey, SnpAttester};
use mooring_client::tpm::attest::TpmAttester;

const EXIT_LOCAL: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_REFUSED: u8 = 3;
const EXIT_UNAVAILABLE: u8 = 4;

#[derive(Debug, Parser)]
#[command(
    name = "mooring-client",
    version,
    about = "Proves this VM to the Mooring broker and keeps its credentials fresh"
)]
struct Cli {
    /// Configuration file.
    #[arg(long, default_value = "/etc/mooring/client.toml")]
    config: PathBuf,
    /// Local address to connect to the broker from (overrides `source_address`).
    #[arg(long)]
    source_address: Option<IpAddr>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Attest once, store the credentials, and exit.
    Attest(Recording),
    /// Attest, then renew at half of each credential's lifetime until stopped.
    Run(Recording),
    /// Give up the credential held (at shutdown: the unit's ExecStop), within 3 s.
    Retire,
    /// Print the credentials held and when they renew.
    Status,
    /// Exchange the JWT-SVID held for a short token for a downstream audience its class
    /// federates with (cloud IAM, Vault); prints the token, or the whole answer with --json.
    Exchange {
        /// The audience (e.g. `sts.amazonaws.com`).
        audience: String,
        /// Space-separated scopes the token should carry.
        #[arg(long)]
        scope: Option<String>,
        /// Print the RFC 8693 answer (JSON) instead of the token alone.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
struct Recording {
    /// Write each exchange with the broker to FILE (mode 0600, replaced at each attestation)
    /// as recorded evidence for `mooring-broker policy dry-run`.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    mooring_client::logging::init("info");
    let config = match Config::load(&cli.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("mooring-client: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match cli.command {
        Command::Status => status(&config),
        Command::Retire => retire(&config, cli.source_address),
        Command::Attest(recording) => attest(&config, cli.source_address, recording.record.as_deref(), false),
        Command::Run(recording) => attest(&config, cli.source_address, recording.record.as_deref(), true),
        Command::Exchange { audience, scope, json } => {
            exchange(&config, cli.source_address, &audience, scope.as_deref(), json)
        }
    }
}

fn attest(config: &Config, source: Option<IpAddr>, record: Option<&Path>, daemon: bool) -> ExitCode {
    let setup = || -> anyhow::Result<(BrokerApi, RuntimeDir, Box<dyn Attester>)> {
        let mut api =
            BrokerApi::new(&config.broker_url, &config.broker_ca, source.or(config.source_address))?;
        if let Some(file) = record {
            api = api.recording(Recorder::new(file));
        }
        let runtime = RuntimeDir::open(&config.runtime_dir, config.require_tmpfs)?;
        let attester: Box<dyn Attester> = match &config.evidence {
            Evidence::Tpm(tpm) => Box::new(TpmAttester::new(tpm.clone(), &config.state_dir)),
            Evidence::Snp(snp) => {
                Box::new(SnpAttester::new(GuestDevice::open(snp)?, snp.vmpl, guest_key(&runtime)?))
            }
            Evidence::Azure(azure) => Box::new(AzureAttester::new(azure.clone(), &config.state_dir)),
        };
        Ok((api, runtime, attester))
    };
    let (api, runtime, mut attester) = match setup() {
        Ok(parts) => parts,
        Err(e) => {
            eprintln!("mooring-client: {e:#}");
            return ExitCode::from(EXIT_LOCAL);
        }
    };
    let result = if daemon {
        service::run(attester.as_mut(), &api, &runtime, &config.renewal).map(|never| match never {})
    } else {
        service::attest_once(attester.as_mut(), &api, &runtime).map(|status| print_status(&status))
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => exit_for(&e),
    }
}

/// How long retiring may hold up a shutdown.
const RETIRE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(3);

fn retire(config: &Config, source: Option<IpAddr>) -> ExitCode {
    let runtime = RuntimeDir::existing(&config.runtime_dir);
    let setup = || -> anyhow::Result<_> {
        let api = BrokerApi::new(&config.broker_url, &config.broker_ca, source.or(config.source_address))?
            .with_deadline(RETIRE_DEADLINE);
        let signer = mooring_client::tls::configured_signer(config).map_err(anyhow::Error::msg)?;
        Ok((api, signer))
    };
    let (api, signer) = match setup() {
        Ok(parts) => parts,
        Err(e) => {
            // Nothing to sign with or no broker to tell: the credentials still go.
            let _ = runtime.clear();
            eprintln!("mooring-client: cannot retire: {e:#}");
            return ExitCode::from(1);
        }
    };
    match service::retire(signer.as_ref(), &api, &runtime) {
        Ok(Some(serial)) => {
            println!("retired credential {serial}");
            ExitCode::SUCCESS
        }
        Ok(None) => {
            println!("no credential held");
            ExitCode::SUCCESS
        }
        Err(e) => exit_for(&e),
    }
}

fn exchange(
    config: &Config,
    source: Option<IpAddr>,
    audience: &str,
    scope: Option<&str>,
    json: bool,
) -> ExitCode {
    let runtime = RuntimeDir::existing(&config.runtime_dir);
    let api = match BrokerApi::new(&config.broker_url, &config.broker_ca, source.or(config.source_address)) {
        Ok(api) => api,
        Err(e) => {
            eprintln!("mooring-client: cannot exchange: {e:#}");
            return ExitCode::from(EXIT_LOCAL);
        }
    };
    let signer = || mooring_client::tls::configured_signer(config);
    match service::exchange(signer, &api, &runtime, audience, scope) {
        Ok(answer) if json => match serde_json::to_string(&answer) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("mooring-client: {e}");
                ExitCode::from(EXIT_LOCAL)
            }
        },
        Ok(answer) => {
            println!("{}", answer.access_token);
            ExitCode::SUCCESS
        }
        Err(e) => exit_for(&e),
    }
}

/// K on the SEV-SNP path: the one kept in the runtime directory (guest memory) during this
/// boot, or a new one.
fn guest_key(runtime: &RuntimeDir) -> anyhow::Result<GuestKey> {
    match runtime.read(KEY_FILE)? {
        Some(pem) => Ok(GuestKey::from_pem(&pem)?),
        None => Ok(GuestKey::generate()?),
    }
}

fn exit_for(error: &AttestError) -> ExitCode {
    if let Some((code, reason)) = error.refusal() {
        eprintln!("mooring-client: the broker refused this VM: {reason} ({code})");
        return ExitCode::from(EXIT_REFUSED);
    }
    eprintln!("mooring-client: {error}");
    if error.is_unavailable() {
        ExitCode::from(EXIT_UNAVAILABLE)
    } else {
        ExitCode::from(EXIT_LOCAL)
    }
}

fn status(config: &Config) -> ExitCode {
    let runtime = RuntimeDir::existing(&config.runtime_dir);
    match runtime.status() {
        Ok(Some(status)) => {
            print_status(&status);
            if status.expires_at > service::now() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_LOCAL)
            }
        }
        Ok(None) => {
            println!("no credentials held in {}", display(&config.runtime_dir));
            ExitCode::from(EXIT_LOCAL)
        }
        Err(e) => {
            eprintln!("mooring-client: {e}");
            ExitCode::from(EXIT_LOCAL)
        }
    }
}

fn print_status(status: &Status) {
    let now = service::now();
    let relative = |at: i64| {
        let delta = at - now;
        if delta >= 0 {
            format!("in {delta} s")
        } else {
            format!("{} s ago", -delta)
        }
    };
    println!("spiffe_id:     {}", status.spiffe_id);
    println!("class:         {}", status.class);
    println!("evidence:      {}", status.evidence);
    if let Some(handle) = &status.ak_handle {
        println!("ak_handle:     {handle}");
    }
    println!("serial:        {}", status.x509_serial);
    println!("bound_address: {}", status.bound_address);
    println!("attested_at:   {} ({})", status.attested_at, relative(status.attested_at));
    println!(
        "expires_at:    {} ({}){}",
        status.expires_at,
        relative(status.expires_at),
        if status.expires_at <= now { " EXPIRED" } else { "" }
    );
    println!("renews_at:     {} ({})", status.renew_at, relative(status.renew_at));
    println!(
        "secrets:       {}",
        if status.secrets.is_empty() { "-".to_owned() } else { status.secrets.join(", ") }
    );
}

fn display(path: &Path) -> String {
    path.display().to_string()
}
