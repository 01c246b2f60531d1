//! Attesting once, and keeping the credentials fresh: renew at half of the lifetime with
//! jitter, retry with exponential backoff while the broker is unreachable (the stored,
//! still-valid credentials keep being served meanwhile), stop when the broker refuses the VM.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use mooring_attestation::protocol::{Code, IssuedCredentials};

use crate::api::{ApiError, BrokerApi};
use crate::azure::AzureError;
use crate::config::Renewal;
use crate::runtime::{Bundle, RuntimeDir, RuntimeError, Status};
use crate::snp::GuestError;
use crate::tpm::TpmError;

/// Renewal happens up to this fraction of the time between issue and `renew_after` early,
/// so VMs booted together do not renew together.
const RENEW_JITTER: f64 = 0.1;
/// Longest single sleep, so a changed wall clock is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// What one successful attestation produced. `Debug` leaves out the key file and the
/// secrets' plaintext.
pub struct Attested {
    /// The broker's answer.
    pub issued: IssuedCredentials,
    /// K's key file (TSS2 PEM or PKCS#8 PEM).
    pub key_pem: String,
    /// Unsealed secrets.
    pub secrets: Vec<(String, Vec<u8>)>,
    /// Persistent handle of the AK (TPM and Azure paths).
    pub ak_handle: Option<u32>,
}

impl std::fmt::Debug for Attested {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secrets: Vec<&str> = self.secrets.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Attested")
            .field("spiffe_id", &self.issued.spiffe_id)
            .field("serial", &self.issued.x509_serial)
            .field("secrets", &secrets)
            .field("ak_handle", &self.ak_handle)
            .finish_non_exhaustive()
    }
}

/// Why an attestation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// Talking to the broker failed, or it refused.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The TPM path failed.
    #[error(transparent)]
    Tpm(#[from] TpmError),
    /// The SEV-SNP path failed.
    #[error(transparent)]
    Snp(#[from] GuestError),
    /// The Azure confidential VM path failed.
    #[error(transparent)]
    Azure(#[from] AzureError),
    /// Storing the credentials failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// K could not sign (retiring, exchanging).
    #[error("signing with the credential key: {0}")]
    Signer(String),
    /// No credential is held (exchanging).
    #[error("no credential held: attest first")]
    NoCredential,
}

impl AttestError {
    /// The broker's refusal (code, reason), if that is what this is.
    #[must_use]
    pub fn refusal(&self) -> Option<(Code, &str)> {
        match self {
            Self::Api(ApiError::Refused { code, reason, .. }) => Some((*code, reason)),
            _ => None,
        }
    }

    /// Whether the broker could not be reached (as opposed to a local failure).
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Api(ApiError::Unavailable(_)))
    }
}

/// One way of proving the VM.
pub trait Attester {
    /// `tpm`, `snp` or `azure`.
    fn kind(&self) -> &'static str;
    /// Runs the protocol with the broker once.
    ///
    /// # Errors
    /// See [`AttestError`].
    fn attest(&mut self, api: &BrokerApi) -> Result<Attested, AttestError>;
}

/// Unix seconds now.
#[must_use]
pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A uniformly random fraction in [0, 1).
fn random_fraction() -> f64 {
    let mut bytes = [0u8; 4];
    // The system generator does not fail on Linux; without randomness, no jitter.
    if SystemRandom::new().fill(&mut bytes).is_err() {
        return 0.0;
    }
    f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0)
}

/// When to renew: the broker's `renew_after`, moved earlier by up to `RENEW_JITTER` of the
/// time from `now` to it (`fraction` in [0, 1)), never before `now`.
#[must_use]
pub fn renew_at(issued: &IssuedCredentials, now: i64, fraction: f64) -> i64 {
    let window = issued.renew_after.saturating_sub(now).max(0);
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)] // seconds, far below 2^52
    let early = (window as f64 * RENEW_JITTER * fraction.clamp(0.0, 1.0)).floor() as i64;
    issued.renew_after.saturating_sub(early).max(now)
}

/// The delay before retry number `attempt` (1-based): exponential from
/// `retry_initial_seconds`, capped at `retry_max_seconds`, with "equal jitter" (half fixed,
/// half random, `fraction` in [0, 1)).
#[must_use]
pub fn backoff(attempt: u32, renewal: &Renewal, fraction: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(32);
    let base = renewal.retry_initial_seconds.saturating_mul(1u64 << exponent).min(renewal.retry_max_seconds);
    let base = Duration::from_secs(base);
    base / 2 + (base / 2).mul_f64(fraction.clamp(0.0, 1.0))
}

/// Attests once and stores the result; returns what was recorded.
///
/// # Errors
/// See [`AttestError`].
pub fn attest_once(
    attester: &mut dyn Attester,
    api: &BrokerApi,
    runtime: &RuntimeDir,
) -> Result<Status, AttestError> {
    let attested = match attester.attest(api) {
        Ok(attested) => attested,
        Err(e) => {
            if let Some((code, _)) = e.refusal() {
                match runtime.withdraw_secrets() {
                    Ok(0) => {}
                    Ok(removed) => {
                        tracing::warn!(%code, removed, "refused by the broker: released secrets removed")
                    }
                    Err(err) => {
                        tracing::error!(%code, error = %err, "refused, and the released secrets could not be removed")
                    }
                }
            }
            return Err(e);
        }
    };
    let now = now();
    let issued = &attested.issued;
    let status = Status {
        evidence: attester.kind().to_owned(),
        spiffe_id: issued.spiffe_id.clone(),
        class: issued.class.clone(),
        x509_serial: issued.x509_serial.clone(),
        bound_address: issued.bound_address,
        attested_at: now,
        expires_at: issued.expires_at,
        renew_after: issued.renew_after,
        renew_at: renew_at(issued, now, random_fraction()),
        secrets: attested.secrets.iter().map(|(name, _)| name.clone()).collect(),
        ak_handle: attested.ak_handle.map(|h| format!("{h:#010x}")),
    };
    runtime.store(&Bundle {
        svid_pem: &issued.x509_svid,
        key_pem: &attested.key_pem,
        bundle_pem: &issued.x509_bundle,
        jwt: &issued.jwt_svid,
        secrets: &attested.secrets,
        status: &status,
    })?;
    tracing::info!(
        spiffe_id = %status.spiffe_id,
        serial = %status.x509_serial,
        bound_address = %status.bound_address,
        expires_at = status.expires_at,
        renew_at = status.renew_at,
        secrets = status.secrets.len(),
        "attested"
    );
    Ok(status)
}

/// The audience of the possession statement that retires a credential.
pub use mooring_attestation::protocol::RETIRE_AUDIENCE;

/// Gives up the credential this VM holds (at shutdown): the broker revokes it, so relying
/// services refuse it with `retired`, then the runtime directory is cleared. Returns the
/// serial retired, or `None` when no credential is held. The local files are cleared even
/// when the broker cannot be reached (the error is still returned).
///
/// # Errors
/// See [`AttestError`].
pub fn retire(
    signer: &dyn crate::tls::KeySigner,
    api: &BrokerApi,
    runtime: &RuntimeDir,
) -> Result<Option<String>, AttestError> {
    let (Some(status), Some(jwt)) = (runtime.status()?, runtime.read(crate::runtime::JWT_FILE)?) else {
        return Ok(None);
    };
    let jwt_svid =
        String::from_utf8(jwt).map_err(|_| AttestError::Signer("the JWT-SVID file is not text".into()))?;
    let proof = crate::possession::prove(signer, RETIRE_AUDIENCE, &status.x509_serial, now())
        .map_err(AttestError::Signer)?;
    let request = mooring_attestation::protocol::RetireRequest {
        jwt_svid,
        statement: proof.statement().to_vec(),
        signature: proof.signature().to_vec(),
    };
    let answer = api.retire(&request);
    runtime.clear()?;
    let retired = answer?;
    tracing::info!(serial = %retired.serial, "credential retired");
    Ok(Some(retired.serial))
}

/// Exchanges the JWT-SVID held for a token for `audience` (RFC 8693): a possession
/// statement by K for this audience, scope and a new nonce, from the bound address.
///
/// # Errors
/// [`AttestError::NoCredential`] without one; the others as [`AttestError`] says.
pub fn exchange(
    signer: impl FnOnce() -> Result<std::sync::Arc<dyn crate::tls::KeySigner>, String>,
    api: &BrokerApi,
    runtime: &RuntimeDir,
    audience: &str,
    scope: Option<&str>,
) -> Result<mooring_attestation::protocol::ExchangeResponse, AttestError> {
    use mooring_attestation::protocol::{
        exchange_request, ExchangeRequest, EXCHANGE_AUDIENCE, JWT_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT,
    };
    let jwt = runtime.read(crate::runtime::JWT_FILE)?.ok_or(AttestError::NoCredential)?;
    let subject_token =
        String::from_utf8(jwt).map_err(|_| AttestError::Signer("the JWT-SVID file is not text".into()))?;
    let mut nonce = [0u8; 16];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| AttestError::Signer("no randomness for a nonce".into()))?;
    let nonce = hex::encode(nonce);
    // K only once a JWT-SVID is held: a VM that never attested is told so, not about K's files.
    let signer = signer().map_err(AttestError::Signer)?;
    let proof = crate::possession::prove(
        signer.as_ref(),
        EXCHANGE_AUDIENCE,
        &exchange_request(audience, scope, &nonce),
        now(),
    )
    .map_err(AttestError::Signer)?;
    let request = ExchangeRequest {
        grant_type: TOKEN_EXCHANGE_GRANT.into(),
        subject_token,
        subject_token_type: JWT_TOKEN_TYPE.into(),
        audience: audience.into(),
        scope: scope.map(str::to_owned),
        requested_token_type: None,
        nonce,
        statement: proof.statement().to_vec(),
        signature: proof.signature().to_vec(),
    };
    let answer = api.exchange(&request)?;
    tracing::info!(audience, expires_in = answer.expires_in, "token exchanged");
    Ok(answer)
}

/// Keeps the credentials fresh until the broker refuses the VM (returned as the error).
/// Failures other than a refusal are retried with [`backoff`].
///
/// # Errors
/// Only a refusal ends the loop.
pub fn run(
    attester: &mut dyn Attester,
    api: &BrokerApi,
    runtime: &RuntimeDir,
    renewal: &Renewal,
) -> Result<std::convert::Infallible, AttestError> {
    let mut attempt = 0u32;
    loop {
        match attest_once(attester, api, runtime) {
            Ok(status) => {
                attempt = 0;
                sleep_until(status.renew_at);
            }
            Err(e) if e.refusal().is_some() => return Err(e),
            Err(e) => {
                attempt = attempt.saturating_add(1);
                let delay = backoff(attempt, renewal, random_fraction());
                let held = runtime.status().ok().flatten();
                let still_valid = held.as_ref().filter(|s| s.expires_at > now());
                match still_valid {
                    Some(held) => tracing::warn!(
                        error = %e,
                        attempt,
                        retry_in_seconds = delay.as_secs(),
                        serving_until = held.expires_at,
                        "attestation failed; retrying, still serving the current credentials"
                    ),
                    None => tracing::warn!(
                        error = %e,
                        attempt,
                        retry_in_seconds = delay.as_secs(),
                        "attestation failed; retrying, no valid credentials held"
                    ),
                }
                std::thread::sleep(delay);
            }
        }
    }
}

fn sleep_until(deadline: i64) {
    loop {
        let remaining = deadline.saturating_sub(now());
        let Ok(remaining) = u64::try_from(remaining) else { return };
        if remaining == 0 {
            return;
        }
        std::thread::sleep(Duration::from_secs(remaining).min(MAX_SLEEP));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn issued(renew_after: i64, expires_at: i64) -> IssuedCredentials {
        IssuedCredentials {
            spiffe_id: String::new(),
            class: String::new(),
            x509_svid: String::new(),
            x509_serial: String::new(),
            jwt_svid: String::new(),
            x509_bundle: String::new(),
            expires_at,
            renew_after,
            bound_address: "127.0.0.1".parse().unwrap(),
            secrets: vec![],
        }
    }

    #[test]
    fn renewal_is_at_half_life_with_at_most_ten_percent_jitter() {
        let issued = issued(1300, 1600);
        assert_eq!(renew_at(&issued, 1000, 0.0), 1300);
        assert_eq!(renew_at(&issued, 1000, 0.999_999), 1271);
        assert_eq!(renew_at(&issued, 1000, 0.5), 1285);
        // Past renew_after already: now.
        assert_eq!(renew_at(&issued, 1400, 0.5), 1400);
        // Nonsense jitter input is clamped.
        assert_eq!(renew_at(&issued, 1000, 7.0), 1270);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let renewal = Renewal { retry_initial_seconds: 2, retry_max_seconds: 60 };
        assert_eq!(backoff(1, &renewal, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(1, &renewal, 0.999_999_999).as_secs(), 1);
        assert_eq!(backoff(2, &renewal, 0.0), Duration::from_secs(2));
        assert_eq!(backoff(3, &renewal, 0.5), Duration::from_secs(6));
        assert_eq!(backoff(10, &renewal, 0.0), Duration::from_secs(30));
        assert_eq!(backoff(u32::MAX, &renewal, 1.0), Duration::from_secs(60));
    }

    #[test]
    fn random_fractions_stay_in_range() {
        for _ in 0..100 {
            let f = random_fraction();
            assert!((0.0..1.0).contains(&f), "{f}");
        }
    }
}
