//! The attestation key: an ECDSA P-256 restricted signing key (fixedTPM, fixedParent,
//! sensitiveDataOrigin) created once under the EK and kept at a persistent handle, so a
//! reboot (PCRs reset, transient objects gone) does not need a new AK.
//!
//! Kept how: TPM2_EvictControl to `evidence.ak_handle` (default 0x81010002), and its
//! `TPM2B_PUBLIC` saved as `ak.pub` in the state directory. On every attestation the
//! object at the handle must have exactly that public area; anything else there is refused,
//! never silently replaced. A TPM clear removes the AK; the client then creates a new one.

use std::path::Path;

use tss_esapi::abstraction::ak::{create_ak_2, load_ak};
use tss_esapi::abstraction::AsymmetricAlgorithmSelection;
use tss_esapi::handles::{KeyHandle, PersistentTpmHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, SignatureSchemeAlgorithm};
use tss_esapi::interface_types::dynamic_handles::Persistent;
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::Provision;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::PublicBuffer;
use tss_esapi::traits::Marshall as _;
use tss_esapi::Context;

use super::ek::Ek;
use super::{flushing, handle_present, tss, TpmError};
use crate::runtime::{read_optional, write_atomic};

/// File in the state directory holding the AK's `TPM2B_PUBLIC`.
pub const AK_PUBLIC_FILE: &str = "ak.pub";

/// The AK, loaded.
#[derive(Debug)]
pub struct Ak {
    /// ESYS handle of the persistent object (not to be flushed).
    pub handle: KeyHandle,
    /// `TPM2B_PUBLIC`.
    pub public: Vec<u8>,
    /// Whether it was created by this call (first attestation or after a TPM clear).
    pub created: bool,
}

/// The kept AK at `persistent`, or a new one made persistent there.
///
/// # Errors
/// When another object occupies the handle, or the TPM refuses.
pub fn ensure(context: &mut Context, ek: &Ek, persistent: u32, state_dir: &Path) -> Result<Ak, TpmError> {
    let saved_path = state_dir.join(AK_PUBLIC_FILE);
    let saved =
        read_optional(&saved_path).map_err(|source| TpmError::Io { path: saved_path.clone(), source })?;
    if let Some(ak) = persistent_key(context, persistent)? {
        return match saved {
            Some(saved) if saved == ak.public => Ok(ak),
            Some(_) => Err(TpmError::ForeignAk {
                handle: persistent,
                reason: format!("its public area differs from {}", saved_path.display()),
            }),
            None => Err(TpmError::ForeignAk {
                handle: persistent,
                reason: format!("{} is missing, so it cannot be recognised", saved_path.display()),
            }),
        };
    }
    let tpm_handle = PersistentTpmHandle::new(persistent).map_err(tss("AK persistent handle"))?;
    let created = create_ak_2(
        context,
        ek.handle,
        HashingAlgorithm::Sha256,
        AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256),
        SignatureSchemeAlgorithm::EcDsa,
        None,
        None,
    )
    .map_err(tss("creating the AK"))?;
    let transient = load_ak(context, ek.handle, None, created.out_private, created.out_public)
        .map_err(tss("loading the new AK"))?;
    let persisted = flushing(context, transient, |ctx| {
        ctx.execute_with_session(Some(AuthSession::Password), |ctx| {
            ctx.evict_control(Provision::Owner, transient.into(), Persistent::Persistent(tpm_handle))
        })
        .map_err(tss("making the AK persistent (TPM2_EvictControl)"))
    })?;
    let handle = KeyHandle::from(persisted);
    let public = public_of(context, handle)?;
    write_atomic(state_dir, AK_PUBLIC_FILE, &public)
        .map_err(|source| TpmError::Io { path: saved_path, source })?;
    Ok(Ak { handle, public, created: true })
}

/// The key at persistent handle `persistent` (`created: false`), or `None` when the handle
/// is empty.
///
/// # Errors
/// When the TPM refuses.
pub fn persistent_key(context: &mut Context, persistent: u32) -> Result<Option<Ak>, TpmError> {
    if !handle_present(context, persistent)? {
        return Ok(None);
    }
    let tpm_handle = PersistentTpmHandle::new(persistent).map_err(tss("persistent handle"))?;
    let handle = KeyHandle::from(
        context
            .execute_without_session(|ctx| ctx.tr_from_tpm_public(TpmHandle::Persistent(tpm_handle)))
            .map_err(tss("opening a persistent key"))?,
    );
    let public = public_of(context, handle)?;
    Ok(Some(Ak { handle, public, created: false }))
}

/// An object's `TPM2B_PUBLIC`.
pub(crate) fn public_of(context: &mut Context, handle: KeyHandle) -> Result<Vec<u8>, TpmError> {
    let (public, _, _) = context.read_public(handle).map_err(tss("reading a public area"))?;
    PublicBuffer::try_from(public)
        .and_then(|buffer| buffer.marshall())
        .map_err(tss("marshalling a public area"))
}
