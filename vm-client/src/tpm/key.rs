//! The credential key K: an ECDSA P-256 signing key created in the TPM under the owner
//! hierarchy's storage primary key (fixedTPM, fixedParent, sensitiveDataOrigin,
//! userWithAuth, sign; empty auth). Its key blobs (`k.pub`: `TPM2B_PUBLIC`, `k.priv`:
//! `TPM2B_PRIVATE`, encrypted by the TPM) are kept in the state directory and only load in
//! this TPM. The X.509-SVID is issued for it.
//!
//! The storage primary key is recreated on demand from the TCG Provisioning Guidance ECC
//! P-256 SRK template (the one OpenSSL's tpm2 provider and tpm2-tss-engine use for a key file
//! whose parent is 0x40000001), so the TSS2 key file written for K loads in those tools too.

use std::path::Path;

use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::handles::KeyHandle;
use tss_esapi::interface_types::algorithm::{EccSchemeAlgorithm, HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::structures::{
    EccPoint, EccScheme, KeyDerivationFunctionScheme, Private, Public, PublicBuilder,
    PublicEccParametersBuilder, SymmetricDefinitionObject,
};
use tss_esapi::traits::UnMarshall as _;
use tss_esapi::Context;

use super::{flushing, tpm2b, tpm2b_contents, tss, TpmError};
use crate::runtime::{read_optional, write_atomic};

/// K's `TPM2B_PUBLIC` in the state directory.
pub const K_PUBLIC_FILE: &str = "k.pub";
/// K's `TPM2B_PRIVATE` in the state directory.
pub const K_PRIVATE_FILE: &str = "k.priv";

/// The credential key K as the TPM keeps it outside itself: its public area and its private
/// area wrapped by the storage key (the library's `svid::CredentialKey` is K's public point).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyBlobs {
    /// `TPM2B_PUBLIC`.
    pub public: Vec<u8>,
    /// `TPM2B_PRIVATE` (wrapped by the storage primary key; useless outside this TPM).
    pub private: Vec<u8>,
}

/// The SRK template (TCG TPM v2.0 Provisioning Guidance, 7.5.1, ECC NIST P-256).
fn srk_template() -> Result<Public, TpmError> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_restricted(true)
        .with_decrypt(true)
        .build()
        .map_err(tss("SRK attributes"))?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new_restricted_decryption_key(
                SymmetricDefinitionObject::AES_128_CFB,
                EccCurve::NistP256,
            )
            .build()
            .map_err(tss("SRK parameters"))?,
        )
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
        .map_err(tss("SRK template"))
}

/// K's template.
fn key_template() -> Result<Public, TpmError> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_sign_encrypt(true)
        .build()
        .map_err(tss("K attributes"))?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new()
                .with_symmetric(SymmetricDefinitionObject::Null)
                .with_ecc_scheme(
                    EccScheme::create(EccSchemeAlgorithm::EcDsa, Some(HashingAlgorithm::Sha256), None)
                        .map_err(tss("K scheme"))?,
                )
                .with_curve(EccCurve::NistP256)
                .with_key_derivation_function_scheme(KeyDerivationFunctionScheme::Null)
                .with_is_signing_key(true)
                .with_is_decryption_key(false)
                .with_restricted(false)
                .build()
                .map_err(tss("K parameters"))?,
        )
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
        .map_err(tss("K template"))
}

/// Recreates the storage primary key (flush it after use).
fn storage_primary(context: &mut Context) -> Result<KeyHandle, TpmError> {
    let template = srk_template()?;
    context
        .execute_with_nullauth_session(|ctx| {
            ctx.create_primary(Hierarchy::Owner, template, None, None, None, None)
        })
        .map(|created| created.key_handle)
        .map_err(tss("creating the storage primary key"))
}

/// K from the state directory, or a new K created in the TPM and saved there.
///
/// # Errors
/// When the files cannot be read or written, or the TPM refuses.
pub fn ensure(context: &mut Context, state_dir: &Path) -> Result<KeyBlobs, TpmError> {
    let io = |name: &str| {
        let path = state_dir.join(name);
        move |source| TpmError::Io { path, source }
    };
    let public = read_optional(&state_dir.join(K_PUBLIC_FILE)).map_err(io(K_PUBLIC_FILE))?;
    let private = read_optional(&state_dir.join(K_PRIVATE_FILE)).map_err(io(K_PRIVATE_FILE))?;
    if let (Some(public), Some(private)) = (public, private) {
        return Ok(KeyBlobs { public, private });
    }
    let template = key_template()?;
    let srk = storage_primary(context)?;
    let created = flushing(context, srk, |ctx| {
        ctx.execute_with_nullauth_session(|ctx| ctx.create(srk, template, None, None, None, None))
            .map_err(tss("creating the credential key K"))
    })?;
    let public = tss_esapi::structures::PublicBuffer::try_from(created.out_public)
        .and_then(|buffer| tss_esapi::traits::Marshall::marshall(&buffer))
        .map_err(tss("marshalling K's public area"))?;
    let key = KeyBlobs { public, private: tpm2b(created.out_private.value())? };
    // Private part first: a public file alone is never mistaken for a usable key.
    write_atomic(state_dir, K_PRIVATE_FILE, &key.private).map_err(io(K_PRIVATE_FILE))?;
    write_atomic(state_dir, K_PUBLIC_FILE, &key.public).map_err(io(K_PUBLIC_FILE))?;
    Ok(key)
}

/// Loads K under a freshly recreated storage primary key (which is flushed again).
///
/// # Errors
/// When the blobs are malformed or do not load in this TPM.
pub fn load(context: &mut Context, key: &KeyBlobs) -> Result<KeyHandle, TpmError> {
    let public = Public::unmarshall(tpm2b_contents("K's TPM2B_PUBLIC", &key.public)?)
        .map_err(tss("parsing K's public area"))?;
    let private = Private::try_from(tpm2b_contents("K's TPM2B_PRIVATE", &key.private)?.to_vec())
        .map_err(tss("K's private blob"))?;
    let srk = storage_primary(context)?;
    flushing(context, srk, |ctx| {
        ctx.execute_with_nullauth_session(|ctx| ctx.load(srk, private, public))
            .map_err(tss("loading the credential key K"))
    })
}
