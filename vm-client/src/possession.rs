//! Proof of possession of K for one request to a relying service: a
//! [`PossessionStatement`] naming the service and the request, signed with K by any
//! [`KeySigner`] (K in the TPM or in guest memory). The header format and the request digest
//! are [`mooring_attestation::svid`]'s (`PossessionProof`, `request_digest`).

use mooring_attestation::protocol::PossessionStatement;
use mooring_attestation::svid::PossessionProof;

use crate::tls::KeySigner;

/// The statement bytes for `audience` and `request` (a request digest or nonce), made at `now`.
///
/// # Errors
/// When serialising fails.
pub fn statement(audience: &str, request: &str, now: i64) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&PossessionStatement {
        purpose: PossessionStatement::PURPOSE.into(),
        audience: audience.into(),
        issued_at: now,
        request: request.into(),
    })
}

/// The statement and K's signature over its bytes, ready for the `mooring-possession` header
/// ([`PossessionProof::to_header`]).
///
/// # Errors
/// A description of what failed: serialising, or signing with K (e.g. K does not load in
/// this TPM).
pub fn prove(
    signer: &dyn KeySigner,
    audience: &str,
    request: &str,
    now: i64,
) -> Result<PossessionProof, String> {
    let statement = statement(audience, request, now).map_err(|e| format!("possession statement: {e}"))?;
    let signature = signer.sign_sha256(&statement)?;
    Ok(PossessionProof::new(statement, signature))
}
