//! The service's configuration file (TOML, unknown keys refused; relative paths are
//! relative to the file).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `mooring-payments --config FILE`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    /// Where to listen (HTTPS).
    pub(crate) listen: SocketAddr,
    /// The audience name callers' JWT-SVIDs and possession statements must carry.
    pub(crate) audience: String,
    /// Who checks callers' credentials.
    pub(crate) mode: Mode,
    /// This service's own certificate.
    pub(crate) tls: TlsConfig,
    /// The broker to trust.
    pub(crate) broker: BrokerConfig,
    /// How often the broker's bundle and revocation list are fetched.
    #[serde(default)]
    pub(crate) refresh: Refresh,
}

/// Who checks a caller's credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Mode {
    /// The broker's `POST /v1/credentials/verify`, once per request.
    Broker,
    /// This service, against the trust bundle and revocation list.
    Offline,
}

/// The service's TLS certificate.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum TlsConfig {
    /// A PEM certificate chain and its PEM private key.
    Files { certificate: PathBuf, private_key: PathBuf },
    /// A self-signed certificate made at start (for `localhost`, 127.0.0.1 and the listen
    /// address), written to `write_certificate` for callers to pin.
    Generate { write_certificate: PathBuf },
}

/// The broker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BrokerConfig {
    /// Base URL, e.g. `https://broker:8443`.
    pub(crate) url: String,
    /// The SPIFFE trust domain whose bundle the broker serves (the bundle does not name it:
    /// SPIFFE Trust Domain and Bundle §5 has the relying side configure it).
    pub(crate) trust_domain: String,
    /// The CA certificate (PEM) the broker's server certificate is pinned to.
    pub(crate) ca: PathBuf,
}

/// Refresh intervals.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Refresh {
    /// Trust bundle (both modes: it holds the CAs of mutual TLS).
    pub(crate) bundle_seconds: u64,
    /// Revocation list (offline mode).
    pub(crate) revocations_seconds: u64,
    /// Oldest revocation list accepted, by its `generated_at`.
    pub(crate) max_revocation_age_seconds: u32,
}

impl Default for Refresh {
    fn default() -> Self {
        Self { bundle_seconds: 300, revocations_seconds: 30, max_revocation_age_seconds: 300 }
    }
}

impl mooring_serve::ConfigFile for Config {
    fn paths(&mut self) -> Vec<&mut PathBuf> {
        let mut paths = vec![&mut self.broker.ca];
        match &mut self.tls {
            TlsConfig::Files { certificate, private_key } => paths.extend([certificate, private_key]),
            TlsConfig::Generate { write_certificate } => paths.push(write_certificate),
        }
        paths
    }

    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.audience.is_empty(), "audience must not be empty");
        anyhow::ensure!(self.broker.url.starts_with("https://"), "broker.url must be https://");
        let domain = &self.broker.trust_domain;
        anyhow::ensure!(
            !domain.is_empty() && !domain.contains(['/', ':']),
            "broker.trust_domain {domain:?} is not a trust domain name (e.g. \"example.org\", without spiffe://)"
        );
        let r = &self.refresh;
        anyhow::ensure!(r.bundle_seconds > 0, "refresh.bundle_seconds must be positive");
        anyhow::ensure!(r.revocations_seconds > 0, "refresh.revocations_seconds must be positive");
        anyhow::ensure!(
            u64::from(r.max_revocation_age_seconds) >= r.revocations_seconds,
            "refresh.max_revocation_age_seconds below refresh.revocations_seconds refuses every caller"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use mooring_serve::ConfigFile as _;

    use super::*;

    const GOOD: &str = r#"
listen = "127.0.0.1:0"
audience = "payments"
mode = "offline"
[tls]
source = "generate"
write_certificate = "cert.pem"
[broker]
url = "https://127.0.0.1:8443"
trust_domain = "test.mooring"
ca = "ca.pem"
"#;

    fn load(text: &str) -> anyhow::Result<Config> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("payments.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path)
    }

    #[test]
    fn the_example_and_a_minimal_file_load() {
        let config = load(GOOD).unwrap();
        assert_eq!(config.mode, Mode::Offline);
        assert_eq!(config.refresh.revocations_seconds, 30);
        assert!(config.broker.ca.is_absolute());
        let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("example.toml");
        assert_eq!(Config::load(&example).unwrap().mode, Mode::Offline);
    }

    #[test]
    fn unknown_keys_bad_modes_and_plain_http_are_refused() {
        assert!(load(&format!("{GOOD}\nextra = 1\n")).is_err());
        assert!(load(&GOOD.replace("\"offline\"", "\"trusting\"")).is_err());
        assert!(load(&GOOD.replace("https://", "http://")).is_err());
        let scheme = load(&GOOD.replace("\"test.mooring\"", "\"spiffe://test.mooring\"")).unwrap_err();
        assert!(scheme.to_string().contains("not a trust domain name"), "{scheme}");
        assert!(
            load(&GOOD.replace("trust_domain = \"test.mooring\"\n", "")).is_err(),
            "trust_domain is required"
        );
        assert!(load(&GOOD.replace("\"generate\"", "\"files\"")).is_err());
        let stale = format!("{GOOD}[refresh]\nbundle_seconds = 1\nrevocations_seconds = 60\nmax_revocation_age_seconds = 10\n");
        assert!(load(&stale).unwrap_err().to_string().contains("refuses every caller"));
    }
}
