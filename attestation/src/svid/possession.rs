//! Proof of possession of K for one HTTP request: the caller signs a
//! [`PossessionStatement`] naming the relying service and a digest of the request, and
//! sends it in the [`POSSESSION_HEADER`] header next to its JWT-SVID:
//!
//! ```text
//! Mooring-Possession: <base64url(statement JSON bytes)>.<base64url(ECDSA P-256 SHA-256 DER signature)>
//! ```
//!
//! The signature covers the statement bytes exactly as sent; the verifier parses them only
//! after the signature holds.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::{CredentialKey, SvidError};
use crate::protocol::PossessionStatement;

/// The HTTP header carrying a [`PossessionProof`] (lowercase, as HTTP/2 wants it).
pub const POSSESSION_HEADER: &str = "mooring-possession";

/// Longest header value accepted.
pub const MAX_PROOF_HEADER_BYTES: usize = 4096;

/// How far a statement's `issued_at` may be from the verifier's clock (the broker's value).
pub const POSSESSION_SKEW_SECONDS: i64 = 120;

/// The `request` a statement for one HTTP request carries:
/// hex `SHA-256(method || 0x0a || path || 0x0a || body)`.
#[must_use]
pub fn request_digest(method: &str, path: &str, body: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(method.as_bytes())
        .chain_update(b"\n")
        .chain_update(path.as_bytes())
        .chain_update(b"\n")
        .chain_update(body)
        .finalize();
    hex::encode(digest)
}

/// A possession statement and K's signature over its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PossessionProof {
    statement: Vec<u8>,
    signature: Vec<u8>,
}

impl PossessionProof {
    /// A proof from the statement bytes as signed and the signature.
    #[must_use]
    pub fn new(statement: Vec<u8>, signature: Vec<u8>) -> Self {
        Self { statement, signature }
    }

    /// The statement, exactly as signed.
    #[must_use]
    pub fn statement(&self) -> &[u8] {
        &self.statement
    }

    /// The signature (ECDSA P-256 SHA-256, ASN.1 DER).
    #[must_use]
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// Reads the header value.
    ///
    /// # Errors
    /// [`SvidError::ProofInvalid`] when it is too long or not two base64url parts.
    pub fn from_header(value: &str) -> Result<Self, SvidError> {
        let invalid = |what: &str| SvidError::ProofInvalid(format!("{POSSESSION_HEADER} header: {what}"));
        if value.len() > MAX_PROOF_HEADER_BYTES {
            return Err(invalid("longer than 4 KiB"));
        }
        let (statement, signature) =
            value.trim().split_once('.').ok_or_else(|| invalid("expected <statement>.<signature>"))?;
        let statement =
            URL_SAFE_NO_PAD.decode(statement).map_err(|_| invalid("statement is not base64url"))?;
        let signature =
            URL_SAFE_NO_PAD.decode(signature).map_err(|_| invalid("signature is not base64url"))?;
        Ok(Self { statement, signature })
    }

    /// The header value.
    #[must_use]
    pub fn to_header(&self) -> String {
        format!("{}.{}", URL_SAFE_NO_PAD.encode(&self.statement), URL_SAFE_NO_PAD.encode(&self.signature))
    }

    /// Checks what the statement says, without its signature: purpose, `audience`,
    /// `request` and time. A service that leaves the signature to the broker's verify API
    /// still checks this, since the broker treats `request` as opaque.
    ///
    /// # Errors
    /// [`SvidError::ProofInvalid`] naming the first field that does not fit.
    pub fn check_statement(
        &self,
        audience: &str,
        request: &str,
        now: i64,
    ) -> Result<PossessionStatement, SvidError> {
        self.check_fields(audience, Some(request), now)
    }

    /// As [`PossessionProof::check_statement`]; `request: None` leaves `request` unchecked.
    fn check_fields(
        &self,
        audience: &str,
        request: Option<&str>,
        now: i64,
    ) -> Result<PossessionStatement, SvidError> {
        let invalid = SvidError::ProofInvalid;
        let statement: PossessionStatement = serde_json::from_slice(&self.statement)
            .map_err(|e| invalid(format!("possession statement: {e}")))?;
        if statement.purpose != PossessionStatement::PURPOSE {
            return Err(invalid(format!("possession statement purpose {:?}", statement.purpose)));
        }
        if statement.audience != audience {
            return Err(invalid(format!(
                "possession statement is for {:?}, not {audience:?}",
                statement.audience
            )));
        }
        if request.is_some_and(|request| statement.request != request) {
            return Err(invalid("possession statement was made for another request".into()));
        }
        let offset = statement.issued_at.saturating_sub(now);
        if offset.saturating_abs() > POSSESSION_SKEW_SECONDS {
            return Err(invalid(format!(
                "possession statement made {offset} s from now; allowed ±{POSSESSION_SKEW_SECONDS}"
            )));
        }
        Ok(statement)
    }

    /// The signature by `key`, then [`PossessionProof::check_statement`] (`request: None`:
    /// every field but `request`).
    pub(super) fn verify(
        &self,
        key: &CredentialKey,
        audience: &str,
        request: Option<&str>,
        now: i64,
    ) -> Result<(), SvidError> {
        if !key.verify(&self.statement, &self.signature) {
            return Err(SvidError::ProofInvalid(
                "possession signature is not by the credential's key".into(),
            ));
        }
        self.check_fields(audience, request, now).map(|_| ())
    }
}
