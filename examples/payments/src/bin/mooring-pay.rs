//! `mooring-pay`: an application on a Mooring VM paying at the example payment service with
//! the credentials `mooring-client` keeps. It reads the client's configuration (runtime and
//! state directories, where K is), then sends `POST /pay`:
//!
//! - `--mode jwt`: `Authorization: Bearer <JWT-SVID>` plus a `mooring-possession` header
//!   signed with K for this exact request;
//! - `--mode mtls`: mutual TLS with the X.509-SVID, the handshake signed with K;
//! - `--mode bearer`: the JWT-SVID alone, as a stolen token file would be used (refused).
//!
//! K signs where the client keeps it: in the TPM (`k.pub`/`k.priv`, loadable only in the TPM
//! that made them) or in guest memory (SEV-SNP). Exit status: 0 paid (the service's receipt
//! on stdout); 1 K cannot sign here, or a file is missing; 2 usage or configuration; 3 the
//! service refused (`refused: <code>: <reason>` on stdout); 4 the service could not be
//! reached or the TLS handshake failed.
#![forbid(unsafe_code)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use mooring_attestation::protocol::ErrorBody;
use mooring_attestation::svid::{request_digest, POSSESSION_HEADER};
use mooring_client::config::Config;
use mooring_client::possession;
use mooring_client::runtime::JWT_FILE;
use mooring_client::tls::{client_config, configured_signer, KeySigner};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;

/// Exit statuses.
const EXIT_LOCAL: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_REFUSED: u8 = 3;
const EXIT_UNREACHABLE: u8 = 4;
/// Longest answer read from the service.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;
const TIMEOUT: Duration = Duration::from_secs(30);

/// Pays at the example payment service with this VM's Mooring credentials.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The mooring-client configuration (where the credentials and K are).
    #[arg(long, default_value = "/etc/mooring/client.toml")]
    config: PathBuf,
    /// The payment service's base URL, e.g. https://payments:9443.
    #[arg(long)]
    url: String,
    /// PEM certificate(s) the service's TLS certificate must chain to (pinned; nothing else trusted).
    #[arg(long)]
    payments_ca: PathBuf,
    /// How to present the credential.
    #[arg(long, value_enum, default_value_t = Mode::Jwt)]
    mode: Mode,
    /// Amount in cents.
    #[arg(long, default_value_t = 1250)]
    amount: u64,
    /// ISO 4217 currency.
    #[arg(long, default_value = "EUR")]
    currency: String,
    /// The payment's reference (default: a fresh one).
    #[arg(long)]
    reference: Option<String>,
    /// Local address to connect from (default: the configuration's source_address, if any).
    #[arg(long)]
    source_address: Option<IpAddr>,
    /// The audience the possession statement names.
    #[arg(long, default_value = "payments")]
    audience: String,
    /// Present this JWT-SVID file instead of the runtime directory's.
    #[arg(long)]
    jwt: Option<PathBuf>,
    /// Also write the request as sent (body and credential headers, JSON) to this file.
    #[arg(long)]
    save_request: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// JWT-SVID with a possession proof signed by K.
    Jwt,
    /// Mutual TLS with the X.509-SVID.
    Mtls,
    /// The JWT-SVID without any proof (what a copied token file gives).
    Bearer,
}

/// Why no receipt: the message and the exit status.
#[derive(Debug)]
struct Failure {
    status: u8,
    message: String,
}

fn fail(status: u8, message: impl Into<String>) -> Failure {
    Failure { status, message: message.into() }
}

/// K's signer, remembering why its last signature failed (a failed TLS handshake does not
/// carry the reason back through the HTTP client).
#[derive(Debug)]
struct Recording {
    inner: Arc<dyn KeySigner>,
    failure: Mutex<Option<String>>,
}

impl KeySigner for Recording {
    fn sign_sha256(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let signed = self.inner.sign_sha256(message);
        if let Err(e) = &signed {
            *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(e.clone());
        }
        signed
    }
}

fn main() -> ExitCode {
    mooring_client::logging::init("warn");
    let args = Args::parse();
    match pay(&args) {
        Ok(receipt) => {
            println!("{receipt}");
            ExitCode::SUCCESS
        }
        Err(failure) => {
            if failure.status == EXIT_REFUSED {
                println!("{}", failure.message);
            } else {
                eprintln!("mooring-pay: {}", failure.message);
            }
            ExitCode::from(failure.status)
        }
    }
}

fn pay(args: &Args) -> Result<String, Failure> {
    let config = Config::load(&args.config).map_err(|e| fail(EXIT_USAGE, e.to_string()))?;
    let base = args.url.trim_end_matches('/');
    if !base.starts_with("https://") {
        return Err(fail(EXIT_USAGE, format!("--url {base:?} must start with https://")));
    }
    let reference = args.reference.clone().unwrap_or_else(|| format!("mooring-pay-{}", nanos()));
    let body = serde_json::to_vec(&serde_json::json!({
        "amount_cents": args.amount, "currency": args.currency, "reference": reference,
    }))
    .map_err(|e| fail(EXIT_LOCAL, format!("payment body: {e}")))?;

    let inner = configured_signer(&config).map_err(|e| fail(EXIT_LOCAL, e))?;
    let signer = Arc::new(Recording { inner, failure: Mutex::new(None) });
    let roots = payments_roots(args)?;
    let tls = match args.mode {
        Mode::Mtls => client_config(&config.runtime_dir, Arc::clone(&signer) as Arc<dyn KeySigner>, roots)
            .map_err(|e| fail(EXIT_LOCAL, e.to_string()))?,
        Mode::Jwt | Mode::Bearer => rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(EXIT_LOCAL, format!("TLS configuration: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth(),
    };

    let mut headers: Vec<(&str, String)> = vec![("content-type", "application/json".to_owned())];
    if matches!(args.mode, Mode::Jwt | Mode::Bearer) {
        let jwt_file = args.jwt.clone().unwrap_or_else(|| config.runtime_dir.join(JWT_FILE));
        let jwt = std::fs::read_to_string(&jwt_file)
            .map_err(|e| fail(EXIT_LOCAL, format!("{}: {e}", jwt_file.display())))?;
        headers.push(("authorization", format!("Bearer {}", jwt.trim())));
    }
    if args.mode == Mode::Jwt {
        let request = request_digest("POST", "/pay", &body);
        let proof =
            possession::prove(signer.as_ref(), &args.audience, &request, mooring_client::service::now())
                .map_err(|e| fail(EXIT_LOCAL, format!("K cannot sign here: {e}")))?;
        headers.push((POSSESSION_HEADER, proof.to_header()));
    }
    if let Some(path) = &args.save_request {
        let saved = serde_json::json!({
            "body": String::from_utf8_lossy(&body),
            "headers": headers.iter().map(|(name, value)| ((*name).to_owned(), serde_json::Value::from(value.as_str()))).collect::<serde_json::Map<_, _>>(),
        });
        std::fs::write(path, saved.to_string())
            .map_err(|e| fail(EXIT_LOCAL, format!("{}: {e}", path.display())))?;
    }

    let mut client = reqwest::blocking::Client::builder().use_preconfigured_tls(tls).timeout(TIMEOUT);
    if let Some(source) = args.source_address.or(config.source_address) {
        client = client.local_address(source);
    }
    let client = client.build().map_err(|e| fail(EXIT_LOCAL, format!("HTTP client: {e}")))?;
    let mut request = client.post(format!("{base}/pay")).body(body);
    for (name, value) in &headers {
        request = request.header(*name, value);
    }
    let response = request.send().map_err(|e| {
        match signer.failure.lock().unwrap_or_else(PoisonError::into_inner).take() {
            Some(why) => fail(EXIT_LOCAL, format!("K cannot sign here, so the TLS handshake failed: {why}")),
            None => fail(EXIT_UNREACHABLE, format!("{base}: {}", error_chain(&e))),
        }
    })?;
    let status = response.status();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(response, MAX_ANSWER_BYTES), &mut text)
        .map_err(|e| fail(EXIT_UNREACHABLE, format!("reading the answer: {e}")))?;
    if status.is_success() {
        return Ok(text);
    }
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(refusal) => Err(fail(EXIT_REFUSED, format!("refused: {}: {}", refusal.code, refusal.reason))),
        Err(_) => Err(fail(EXIT_REFUSED, format!("refused: http_{}: {}", status.as_u16(), text.trim()))),
    }
}

/// The pinned CA(s) of the payment service.
fn payments_roots(args: &Args) -> Result<rustls::RootCertStore, Failure> {
    let path = &args.payments_ca;
    let pem = std::fs::read(path).map_err(|e| fail(EXIT_USAGE, format!("{}: {e}", path.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| fail(EXIT_USAGE, format!("{}: {e}", path.display())))?;
        roots.add(cert).map_err(|e| fail(EXIT_USAGE, format!("{}: {e}", path.display())))?;
    }
    if roots.is_empty() {
        return Err(fail(EXIT_USAGE, format!("{}: no certificate", path.display())));
    }
    Ok(roots)
}

/// An error and its sources, on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}

fn nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}
