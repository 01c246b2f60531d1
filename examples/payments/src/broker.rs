//! The broker, as this service talks to it: HTTPS pinned to the broker's CA; the trust
//! bundle, the revocation list and the verify API.

use std::time::Duration;

use anyhow::Context as _;
use mooring_attestation::protocol::{BundleDocument, RevocationList, VerifyRequest, VerifyResponse};
use mooring_attestation::svid::TrustBundle;

use crate::config::BrokerConfig;

/// Deadline of one call to the broker.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTPS client for one broker.
#[derive(Debug, Clone)]
pub(crate) struct BrokerClient {
    http: reqwest::Client,
    base: String,
    trust_domain: String,
}

impl BrokerClient {
    pub(crate) fn new(config: &BrokerConfig) -> anyhow::Result<Self> {
        let pem =
            std::fs::read(&config.ca).with_context(|| format!("cannot read {}", config.ca.display()))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("{}: not PEM certificates", config.ca.display()))?;
        anyhow::ensure!(!certificates.is_empty(), "{}: no certificate", config.ca.display());
        let http = reqwest::Client::builder()
            .tls_certs_only(certificates)
            .timeout(CALL_TIMEOUT)
            .build()
            .context("HTTPS client")?;
        Ok(Self {
            http,
            base: format!("{}/v1", config.url.trim_end_matches('/')),
            trust_domain: config.trust_domain.clone(),
        })
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = format!("{}/{path}", self.base);
        let response = self.http.get(&url).send().await.with_context(|| format!("GET {url}"))?;
        let status = response.status();
        anyhow::ensure!(status.is_success(), "GET {url}: {status}");
        response.json().await.with_context(|| format!("GET {url}: unexpected answer"))
    }

    /// `GET /v1/bundle`: the SPIFFE bundle of the configured trust domain, parsed.
    pub(crate) async fn bundle(&self) -> anyhow::Result<TrustBundle> {
        let document: BundleDocument = self.get("bundle").await?;
        TrustBundle::from_document(&self.trust_domain, &document)
            .with_context(|| format!("the broker's trust bundle for {}", self.trust_domain))
    }

    /// `GET /v1/revocations`.
    pub(crate) async fn revocations(&self) -> anyhow::Result<RevocationList> {
        self.get("revocations").await
    }

    /// `GET /v1/revocations?version=V&wait=S`: the list once it is another than `version`,
    /// or after `wait` seconds (long poll).
    pub(crate) async fn revocations_after(&self, version: &str, wait: u64) -> anyhow::Result<RevocationList> {
        // The broker's versions are hex; anything else is not sent back into a URL.
        let version: String = version.chars().filter(char::is_ascii_hexdigit).collect();
        let url = format!("{}/revocations?version={version}&wait={wait}", self.base);
        let response = self
            .http
            .get(&url)
            .timeout(Duration::from_secs(wait) + CALL_TIMEOUT)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        anyhow::ensure!(status.is_success(), "GET {url}: {status}");
        response.json().await.with_context(|| format!("GET {url}: unexpected answer"))
    }

    /// `POST /v1/credentials/verify`.
    pub(crate) async fn verify(&self, request: &VerifyRequest) -> anyhow::Result<VerifyResponse> {
        let url = format!("{}/credentials/verify", self.base);
        let response =
            self.http.post(&url).json(request).send().await.with_context(|| format!("POST {url}"))?;
        let status = response.status();
        anyhow::ensure!(status.is_success(), "POST {url}: {status}");
        response.json().await.with_context(|| format!("POST {url}: unexpected answer"))
    }
}
