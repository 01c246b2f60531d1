//! Sealed secrets on the TPM path: the broker's import blob (a duplicate wrapped to the EK,
//! TPM 2.0 Part 1, 23.3) is imported under the EK, loaded, and unsealed in a PolicyPCR
//! session over the PCRs the broker sealed to. Only this TPM, in this boot state, opens it.

use mooring_attestation::protocol::{Sealed, SealedSecret};
use tss_esapi::constants::SessionType;
use tss_esapi::handles::{KeyHandle, SessionHandle};
use tss_esapi::interface_types::session_handles::PolicySession;
use tss_esapi::structures::{
    Digest, EncryptedSecret, Private, Public, SymmetricDefinition, SymmetricDefinitionObject,
};
use tss_esapi::traits::UnMarshall as _;
use tss_esapi::Context;

use super::challenge::selection;
use super::{flushing, tpm2b_contents, tss, with_ek_session, TpmError};

/// Imports, loads and unseals one secret; returns its plaintext.
///
/// # Errors
/// When the blob is not a TPM import blob or malformed, or the TPM refuses (another TPM,
/// or the PCRs no longer have the sealed values).
pub fn unseal(context: &mut Context, ek: KeyHandle, secret: &SealedSecret) -> Result<Vec<u8>, TpmError> {
    let Sealed::TpmImport { public, duplicate, encrypted_seed, pcr_selection } = &secret.sealed else {
        return Err(TpmError::Unsupported(format!(
            "secret {:?} is not sealed to the TPM (the broker sent another kind)",
            secret.name
        )));
    };
    let public = Public::unmarshall(tpm2b_contents("sealed object TPM2B_PUBLIC", public)?)
        .map_err(tss("parsing the sealed object's public area"))?;
    let duplicate = Private::try_from(tpm2b_contents("sealed object TPM2B_PRIVATE", duplicate)?.to_vec())
        .map_err(tss("sealed object duplicate"))?;
    let seed = EncryptedSecret::try_from(tpm2b_contents("sealed object seed", encrypted_seed)?.to_vec())
        .map_err(tss("sealed object seed"))?;
    let pcrs = selection(pcr_selection)?;
    let import_public = public.clone();
    let private = with_ek_session(
        context,
        ek,
        false,
        |ctx| ctx.import(ek.into(), None, import_public, duplicate, seed, SymmetricDefinitionObject::Null),
        "TPM2_Import of a sealed secret",
    )?;
    let hash = public.name_hashing_algorithm();
    let object =
        with_ek_session(context, ek, false, |ctx| ctx.load(ek, private, public), "loading a sealed secret")?;
    flushing(context, object, |ctx| {
        let session = ctx
            .start_auth_session(None, None, None, SessionType::Policy, SymmetricDefinition::AES_128_CFB, hash)
            .map_err(tss("starting the PCR policy session"))?
            .ok_or_else(|| TpmError::Malformed {
                what: "policy session",
                reason: "TPM returned no session".into(),
            })?;
        let unsealed = (|| {
            let policy = PolicySession::try_from(session).map_err(tss("policy session handle"))?;
            ctx.policy_pcr(policy, Digest::default(), pcrs).map_err(tss("PolicyPCR"))?;
            ctx.execute_with_session(Some(session), |ctx| ctx.unseal(object.into()))
                .map_err(tss("TPM2_Unseal (the PCRs no longer match the sealed values?)"))
        })();
        let _ = ctx.flush_context(SessionHandle::from(session).into());
        ctx.clear_sessions();
        Ok(unsealed?.value().to_vec())
    })
}
