//! Signing with K inside the TPM: ECDSA P-256 over a SHA-256 digest, returned as a DER
//! ECDSA-Sig-Value. Each signature opens its own TPM context and loads K (and flushes it), so a
//! signer is `Send + Sync` and never holds a TPM slot between uses; calls are serialised.

use std::sync::Mutex;

use sha2::{Digest as _, Sha256};
use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{Digest, HashcheckTicket, Signature, SignatureScheme};
use tss_esapi::tss2_esys::TPMT_TK_HASHCHECK;

use super::key::{self, KeyBlobs};
use super::{flushing, open, tss, TpmError};
use crate::der;

/// Signs with K in the TPM reached through `tcti`.
#[derive(Debug)]
pub struct TpmSigner {
    tcti: String,
    key: KeyBlobs,
    lock: Mutex<()>,
}

impl TpmSigner {
    /// A signer for K (its blobs as kept in the state directory).
    #[must_use]
    pub fn new(tcti: &str, key: KeyBlobs) -> Self {
        Self { tcti: tcti.to_owned(), key, lock: Mutex::new(()) }
    }

    /// ECDSA-SHA256 over `message` with K; DER signature.
    ///
    /// # Errors
    /// When the TPM cannot be reached, K does not load, or the TPM refuses.
    pub fn sign_sha256(&self, message: &[u8]) -> Result<Vec<u8>, TpmError> {
        let digest = Digest::try_from(Sha256::digest(message).to_vec()).map_err(tss("digest"))?;
        let _guard = self.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut context = open(&self.tcti)?;
        let handle = key::load(&mut context, &self.key)?;
        let signature = flushing(&mut context, handle, |ctx| {
            // K is not restricted, so no hash-check ticket is needed: pass the NULL ticket.
            let validation = HashcheckTicket::try_from(TPMT_TK_HASHCHECK {
                tag: TPM2_ST_HASHCHECK,
                hierarchy: TPM2_RH_NULL,
                digest: Default::default(),
            })
            .map_err(tss("null hash-check ticket"))?;
            ctx.execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.sign(handle, digest, SignatureScheme::Null, validation)
            })
            .map_err(tss("TPM2_Sign with K"))
        })?;
        match signature {
            Signature::EcDsa(ecc) => {
                Ok(der::ecdsa_signature(ecc.signature_r().value(), ecc.signature_s().value()))
            }
            other => Err(TpmError::Malformed {
                what: "signature from the TPM",
                reason: format!("{:?} instead of ECDSA", other.algorithm()),
            }),
        }
    }

    /// A proof of possession of K for a relying service (the broker's verify API):
    /// the statement bytes and K's signature over them.
    ///
    /// # Errors
    /// As [`TpmSigner::sign_sha256`].
    pub fn prove_possession(
        &self,
        audience: &str,
        request: &str,
        now: i64,
    ) -> Result<(Vec<u8>, Vec<u8>), TpmError> {
        let statement = crate::possession::statement(audience, request, now)
            .map_err(|e| TpmError::Malformed { what: "possession statement", reason: e.to_string() })?;
        let signature = self.sign_sha256(&statement)?;
        Ok((statement, signature))
    }
}
