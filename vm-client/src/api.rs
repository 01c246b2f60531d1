//! The broker's HTTPS API (`broker/openapi.json`), as the VM client uses it: TLS pinned to
//! the configured broker CA only, optionally from a chosen local address.
//!
//! Every failure is classified for the service loop: [`ApiError::Refused`] (the broker
//! looked at this VM and said no: do not retry blindly) or [`ApiError::Unavailable`]
//! (network, timeout, 5xx, rate limit: retry later).

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use std::sync::Arc;

use mooring_attestation::protocol::{
    AzureChallenge, AzureFinishRequest, Code, ErrorBody, ExchangeRequest, ExchangeResponse,
    IssuedCredentials, RetireRequest, RetireResponse, SnpChallenge, SnpFinishRequest, TpmBeginRequest,
    TpmChallenge, TpmFinishRequest, API_PREFIX,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::record::{Begun, Finished, Recorder};

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer body read from the broker.
const MAX_BODY: usize = 1 << 20;

/// What went wrong talking to the broker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The broker refused this VM or its request (4xx with a reason).
    #[error("broker refused: {code}: {reason}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The broker's stable code.
        code: Code,
        /// The broker's one-line reason.
        reason: String,
    },
    /// The broker could not be reached or answered with a server error; try again later.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The broker's answer does not parse.
    #[error("broker answer to {route} is malformed: {reason}")]
    Malformed {
        /// The route.
        route: &'static str,
        /// Why.
        reason: String,
    },
    /// The client could not be set up (CA file, TLS).
    #[error("broker client setup: {0}")]
    Setup(String),
    /// The exchange could not be recorded (`--record`).
    #[error("recording the exchange: {0}")]
    Record(String),
}

/// A client for one broker.
#[derive(Debug, Clone)]
pub struct BrokerApi {
    client: reqwest::blocking::Client,
    base: String,
    /// A deadline for each whole request, shorter than the client's (at shutdown).
    deadline: Option<Duration>,
    /// The local address requests come from, when configured.
    source: Option<IpAddr>,
    /// Where exchanges are recorded (`--record`).
    recorder: Option<Arc<Recorder>>,
}

impl BrokerApi {
    /// A client trusting only the CA certificates in `ca_pem_file`.
    ///
    /// # Errors
    /// [`ApiError::Setup`] when the CA file cannot be read or holds no certificate.
    pub fn new(base_url: &str, ca_pem_file: &Path, source: Option<IpAddr>) -> Result<Self, ApiError> {
        let pem = std::fs::read(ca_pem_file)
            .map_err(|e| ApiError::Setup(format!("broker CA {}: {e}", ca_pem_file.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| ApiError::Setup(format!("broker CA {}: {e}", ca_pem_file.display())))?;
        if certs.is_empty() {
            return Err(ApiError::Setup(format!("broker CA {} holds no certificate", ca_pem_file.display())));
        }
        let mut builder = reqwest::blocking::Client::builder()
            .tls_certs_only(certs)
            .https_only(true)
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mooring-client/", env!("CARGO_PKG_VERSION")));
        if let Some(source) = source {
            builder = builder.local_address(source);
        }
        let client = builder.build().map_err(|e| ApiError::Setup(format!("TLS client: {e}")))?;
        Ok(Self {
            client,
            base: base_url.trim_end_matches('/').to_owned(),
            deadline: None,
            source,
            recorder: None,
        })
    }

    /// The same client, recording each attestation exchange to `recorder`'s file.
    #[must_use]
    pub fn recording(mut self, recorder: Recorder) -> Self {
        self.recorder = Some(Arc::new(recorder));
        self
    }

    /// The address this client attests from, as it knows it: the configured source address,
    /// or the local address the kernel routes to the broker from (a NAT on the way is not
    /// seen).
    ///
    /// # Errors
    /// [`ApiError::Unavailable`] when the broker's host does not resolve or is unreachable.
    pub fn local_address(&self) -> Result<IpAddr, ApiError> {
        if let Some(source) = self.source {
            return Ok(source);
        }
        let unavailable = |e: &dyn std::fmt::Display| ApiError::Unavailable(format!("{}: {e}", self.base));
        let url = reqwest::Url::parse(&self.base).map_err(|e| unavailable(&e))?;
        let broker = url
            .socket_addrs(|| Some(443))
            .map_err(|e| unavailable(&e))?
            .into_iter()
            .next()
            .ok_or_else(|| unavailable(&"no address"))?;
        let unspecified: IpAddr = if broker.is_ipv4() {
            std::net::Ipv4Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        };
        // Connecting a UDP socket sends nothing; it only picks the route and local address.
        let socket = std::net::UdpSocket::bind((unspecified, 0)).map_err(|e| unavailable(&e))?;
        socket.connect(broker).map_err(|e| unavailable(&e))?;
        Ok(socket.local_addr().map_err(|e| unavailable(&e))?.ip())
    }

    /// The same client, giving up on each request after `deadline` in all (connecting
    /// included): what a shutdown can afford to wait.
    #[must_use]
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// `POST /v1/credentials/retire`.
    ///
    /// # Errors
    /// See [`ApiError`].
    pub fn retire(&self, request: &RetireRequest) -> Result<RetireResponse, ApiError> {
        self.post("credentials/retire", request)
    }

    /// `POST /v1/credentials/exchange`.
    ///
    /// # Errors
    /// See [`ApiError`].
    pub fn exchange(&self, request: &ExchangeRequest) -> Result<ExchangeResponse, ApiError> {
        self.post("credentials/exchange", request)
    }

    /// `POST /v1/tpm/begin`.
    ///
    /// # Errors
    /// See [`ApiError`].
    pub fn tpm_begin(&self, request: &TpmBeginRequest) -> Result<TpmChallenge, ApiError> {
        let challenge: TpmChallenge = self.post("tpm/begin", request)?;
        self.begun(|| Begun::Tpm(request.clone(), challenge.nonce.clone()));
        Ok(challenge)
    }

    /// `POST /v1/tpm/finish`.
    ///
    /// # Errors
    /// See [`ApiError`].
    pub fn tpm_finish(&self, request: &TpmFinishRequest) -> Result<IssuedCredentials, ApiError> {
        self.finished(self.tpm_finish_naming_log(request), Finished::Tpm(request))
    }

    /// Names the event log by its SHA-256 first: a broker that admitted a VM with the same
    /// log (one booted from the same image) needs no copy. When it holds none
    /// (`event_log_unknown`, the challenge still unused), sends the log, with its digest so
    /// that the broker keeps it. A broker from before logs were named refuses the unknown
    /// member (`malformed_request` naming `event_log_sha256`, also before the challenge is
    /// used): it gets the log alone.
    fn tpm_finish_naming_log(&self, request: &TpmFinishRequest) -> Result<IssuedCredentials, ApiError> {
        let Some(log) = &request.event_log else {
            return self.post("tpm/finish", request);
        };
        let digest = hex::encode(Sha256::digest(log));
        let named =
            TpmFinishRequest { event_log: None, event_log_sha256: Some(digest.clone()), ..request.clone() };
        let answer = match self.post("tpm/finish", &named) {
            Err(ApiError::Refused { code: Code::EventLogUnknown, .. }) => {
                tracing::debug!("the broker holds no copy of this event log: sending it");
                self.post(
                    "tpm/finish",
                    &TpmFinishRequest { event_log_sha256: Some(digest), ..request.clone() },
                )
            }
            answer => answer,
        };
        match answer {
            Err(ApiError::Refused { code: Code::MalformedRequest, reason, .. })
                if reason.contains("unknown field `event_log_sha256`") =>
            {
                tracing::debug!("the broker does not take event logs by digest: sending the log alone");
                self.post("tpm/finish", request)
            }
            answer => answer,
        }
    }

    /// `POST /v1/snp/begin`.
    ///
    /// # Errors
    /// See [`ApiError`].
    pub fn snp_begin(&self) -> Result<SnpChallenge, ApiError> {
        let challenge: SnpChallenge = self.post("snp/begin", &serde_json::json!({}))?;
        self.begun(|| Begun::Snp(challenge.nonce.clone()));
        Ok(challenge)
    }

    /// `POST /v1/snp/finish`.
    ///
    /// # Errors
    /// See [`ApiError`].
    pub fn snp_finish(&self, request: &SnpFinishRequest) -> Result<IssuedCredentials, ApiError> {
        self.finished(self.post("snp/finish", request), Finished::Snp(request))
    }

    /// `POST /v1/azure/begin`.
    ///
    /// # Errors
    /// See [`ApiError`].
    pub fn azure_begin(&self) -> Result<AzureChallenge, ApiError> {
        let challenge: AzureChallenge = self.post("azure/begin", &serde_json::json!({}))?;
        self.begun(|| Begun::Azure(challenge.nonce.clone()));
        Ok(challenge)
    }

    /// `POST /v1/azure/finish`.
    ///
    /// # Errors
    /// See [`ApiError`].
    pub fn azure_finish(&self, request: &AzureFinishRequest) -> Result<IssuedCredentials, ApiError> {
        self.finished(self.post("azure/finish", request), Finished::Azure(request))
    }

    /// Remembers a `begin` for the recorder, if there is one.
    fn begun(&self, begun: impl FnOnce() -> Begun) {
        if let Some(recorder) = &self.recorder {
            recorder.begun(begun());
        }
    }

    /// Records the exchange `finished` completes when the broker judged it (`answer`, which
    /// is returned, admitted or refused: the challenge is spent either way). A recording
    /// that fails turns an admission into [`ApiError::Record`]; after a refusal it is only
    /// logged.
    fn finished(
        &self,
        answer: Result<IssuedCredentials, ApiError>,
        finished: Finished<'_>,
    ) -> Result<IssuedCredentials, ApiError> {
        let Some(recorder) = &self.recorder else { return answer };
        if !matches!(answer, Ok(_) | Err(ApiError::Refused { .. })) {
            return answer;
        }
        let recorded = self
            .local_address()
            .map_err(|e| e.to_string())
            .and_then(|address| recorder.finished(finished, address));
        match (answer, recorded) {
            (answer, Ok(())) => {
                tracing::info!(file = %recorder.path().display(), "exchange recorded");
                answer
            }
            (Ok(_), Err(reason)) => Err(ApiError::Record(reason)),
            (Err(e), Err(reason)) => {
                tracing::error!(error = %reason, "the exchange could not be recorded");
                Err(e)
            }
        }
    }

    fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        route: &'static str,
        request: &Req,
    ) -> Result<Resp, ApiError> {
        let url = format!("{}{API_PREFIX}/{route}", self.base);
        let mut call = self.client.post(&url).json(request);
        if let Some(deadline) = self.deadline {
            call = call.timeout(deadline);
        }
        let response =
            call.send().map_err(|e| ApiError::Unavailable(format!("{url}: {}", error_chain(&e))))?;
        let status = response.status().as_u16();
        let body =
            read_limited(response, MAX_BODY).map_err(|e| ApiError::Unavailable(format!("{url}: {e}")))?;
        classify(route, status, &body)
    }
}

/// Maps an answer to its value or an [`ApiError`].
fn classify<Resp: DeserializeOwned>(route: &'static str, status: u16, body: &[u8]) -> Result<Resp, ApiError> {
    match status {
        200 => serde_json::from_slice(body).map_err(|e| ApiError::Malformed { route, reason: e.to_string() }),
        // Rate limited or overloaded: the VM itself was not judged.
        429 | 500..=599 => {
            Err(ApiError::Unavailable(format!("{route}: HTTP {status}{}", reason_suffix(body))))
        }
        400..=499 => match serde_json::from_slice::<ErrorBody>(body) {
            Ok(error) if error.code == Code::Unrecognized => {
                Err(ApiError::Refused { status, code: error.code, reason: unrecognized(body, &error.reason) })
            }
            Ok(error) => Err(ApiError::Refused { status, code: error.code, reason: error.reason }),
            Err(_) => Err(ApiError::Refused {
                status,
                code: Code::Unrecognized,
                reason: format!("HTTP {status} without an error body"),
            }),
        },
        _ => Err(ApiError::Malformed { route, reason: format!("unexpected HTTP status {status}") }),
    }
}

/// The reason of a refusal whose code this client does not know (a newer broker): the
/// code as sent (at most 64 characters, escaped), then the reason.
fn unrecognized(body: &[u8], reason: &str) -> String {
    let sent = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("code").and_then(serde_json::Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    let shown: String = sent.chars().take(64).flat_map(char::escape_debug).collect();
    format!("code \"{shown}\" (unknown to this client): {reason}")
}

fn reason_suffix(body: &[u8]) -> String {
    serde_json::from_slice::<ErrorBody>(body)
        .map(|e| format!(" ({}: {})", e.code, e.reason))
        .unwrap_or_default()
}

/// An answer's body, at most `max` bytes.
pub(crate) fn read_limited(response: reqwest::blocking::Response, max: usize) -> Result<Vec<u8>, String> {
    crate::bounded::read_at_most(response, max)
        .map_err(|e| format!("reading the answer: {e}"))?
        .ok_or_else(|| format!("answer larger than {max} bytes"))
}

/// The error and its causes on one line (reqwest's top-level message alone says little).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn refusals_carry_the_brokers_code_and_reason() {
        let body =
            br#"{"code":"pcr_value_not_allowed","reason":"PCR sha256:7 is ab12..., not an allowed value"}"#;
        let err = classify::<SnpChallenge>("tpm/finish", 403, body).unwrap_err();
        let ApiError::Refused { status, code, reason } = err else { panic!("not a refusal") };
        assert_eq!((status, code.as_str()), (403, "pcr_value_not_allowed"));
        assert!(reason.contains("PCR sha256:7"));
    }

    #[test]
    fn a_code_from_a_newer_broker_is_kept_in_the_reason() {
        let body = br#"{"code":"from_a_newer_broker","reason":"something new"}"#;
        let ApiError::Refused { code, reason, .. } =
            classify::<SnpChallenge>("tpm/finish", 403, body).unwrap_err()
        else {
            panic!("not a refusal")
        };
        assert_eq!(code, Code::Unrecognized);
        assert_eq!(reason, "code \"from_a_newer_broker\" (unknown to this client): something new");
    }

    #[test]
    fn server_errors_and_rate_limits_are_retryable() {
        for status in [429, 500, 503] {
            let err = classify::<SnpChallenge>("tpm/begin", status, b"").unwrap_err();
            assert!(matches!(err, ApiError::Unavailable(_)), "{status}: {err}");
        }
    }

    #[test]
    fn a_malformed_success_is_not_accepted() {
        let err = classify::<SnpChallenge>("snp/begin", 200, b"{\"challenge_id\":1}").unwrap_err();
        assert!(matches!(err, ApiError::Malformed { .. }), "{err}");
    }

    #[test]
    fn a_refusal_without_a_body_still_names_its_status() {
        let err = classify::<SnpChallenge>("snp/begin", 404, b"nope").unwrap_err();
        assert!(err.to_string().contains("HTTP 404"), "{err}");
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_a_setup_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = BrokerApi::new("https://127.0.0.1:1", &dir.path().join("none.pem"), None).unwrap_err();
        assert!(matches!(err, ApiError::Setup(_)), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let err = BrokerApi::new("https://127.0.0.1:1", &empty, None).unwrap_err();
        assert!(err.to_string().contains("no certificate"), "{err}");
    }
}
