//! The SEV-SNP path: K is an ECDSA P-256 key generated in guest memory (encrypted by the
//! hardware), secrets are sealed to an X25519 key generated next to it, and the report's
//! `REPORT_DATA` commits to the broker's nonce and both keys
//! ([`mooring_attestation::protocol::snp_report_data`]).
//!
//! The report comes from an [`SnpDevice`]: on a real guest [`device::GuestDevice`], which is
//! [`configfs_tsm::ConfigfsTsm`] (Linux 6.7+, files only) when this process may make a report
//! entry, else [`sev_guest::SevGuest`] (the ioctl, the only code in this crate with `unsafe`);
//! in tests any other implementation, such as one backed by the attestation crate's test
//! signer.

pub mod configfs_tsm;
pub mod device;
pub mod sev_guest;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_ASN1_SIGNING};
use mooring_attestation::pem;
use mooring_attestation::protocol::{
    hpke_secret_aad, snp_report_data, IssuedCredentials, Sealed, SealedSecret, SnpFinishRequest,
    HPKE_SECRET_INFO,
};
use mooring_attestation::seal::{open, SealedBox, SealingKeyPair};

use crate::api::BrokerApi;
use crate::service::{AttestError, Attested, Attester};

/// PEM label of K's PKCS#8 key file.
const PKCS8_LABEL: &str = "PRIVATE KEY";

/// Errors of the client's SEV-SNP guest path (the library's report verification errors are
/// [`mooring_attestation::snp::SnpError`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GuestError {
    /// The guest device failed.
    #[error("SEV-SNP guest device {device}: {reason}")]
    Device {
        /// Which device.
        device: String,
        /// Why.
        reason: String,
    },
    /// Key generation or use failed.
    #[error("SEV-SNP credential key: {0}")]
    Key(String),
    /// A configfs-tsm request failed.
    #[error(transparent)]
    Tsm(#[from] configfs_tsm::TsmError),
    /// A sealed secret did not open.
    #[error("sealed secret {name:?}: {reason}")]
    Secret {
        /// The secret's name.
        name: String,
        /// Why.
        reason: String,
    },
}

/// What the guest device returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpEvidence {
    /// The raw `ATTESTATION_REPORT` (AMD SEV-SNP ABI, table 22).
    pub report: Vec<u8>,
    /// The extended report's certificate table (GHCB spec, 4.1.8.1), when the host provides one.
    pub certificate_table: Option<Vec<u8>>,
}

/// A source of SEV-SNP attestation reports.
pub trait SnpDevice {
    /// A report with `report_data` in `REPORT_DATA`, requested at `vmpl`.
    ///
    /// # Errors
    /// When the device or the firmware refuses.
    fn report(&self, report_data: &[u8; 64], vmpl: u32) -> Result<SnpEvidence, GuestError>;
}

/// K on the SEV-SNP path: an ECDSA P-256 key in guest memory.
pub struct GuestKey {
    pair: EcdsaKeyPair,
    pkcs8: Vec<u8>,
}

/// Shows the public key only: K's private half must never reach a log.
impl std::fmt::Debug for GuestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestKey")
            .field("public", &hex::encode(self.pair.public_key()))
            .finish_non_exhaustive()
    }
}

impl GuestKey {
    /// A new key.
    ///
    /// # Errors
    /// When the random generator fails.
    pub fn generate() -> Result<Self, GuestError> {
        let document = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &SystemRandom::new())
            .map_err(|_| GuestError::Key("generating the key failed".into()))?;
        Self::from_pkcs8(document.as_ref())
    }

    /// A key from PKCS#8 DER.
    ///
    /// # Errors
    /// When it is not a P-256 PKCS#8 key.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, GuestError> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8)
            .map_err(|e| GuestError::Key(format!("not a P-256 PKCS#8 key: {e}")))?;
        Ok(Self { pair, pkcs8: pkcs8.to_vec() })
    }

    /// A key from the PKCS#8 PEM this client wrote.
    ///
    /// # Errors
    /// When the PEM or the key is malformed.
    pub fn from_pem(text: &[u8]) -> Result<Self, GuestError> {
        let der = pem::decode_one(text, PKCS8_LABEL).map_err(|e| GuestError::Key(e.to_string()))?;
        Self::from_pkcs8(&der)
    }

    /// PKCS#8 PEM (written only to the tmpfs runtime directory, i.e. guest memory).
    #[must_use]
    pub fn to_pem(&self) -> String {
        pem::encode(PKCS8_LABEL, &self.pkcs8)
    }

    /// SubjectPublicKeyInfo (DER).
    ///
    /// # Errors
    /// When encoding fails.
    pub fn spki(&self) -> Result<Vec<u8>, GuestError> {
        self.pair
            .public_key()
            .as_der()
            .map(|der| der.as_ref().to_vec())
            .map_err(|_| GuestError::Key("encoding the public key failed".into()))
    }

    /// ECDSA-SHA256 signature (DER) over `message`.
    ///
    /// # Errors
    /// When signing fails.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, GuestError> {
        self.pair
            .sign(&SystemRandom::new(), message)
            .map(|sig| sig.as_ref().to_vec())
            .map_err(|_| GuestError::Key("signing failed".into()))
    }
}

/// Attests with SEV-SNP reports from `device`.
#[derive(Debug)]
pub struct SnpAttester<D> {
    device: D,
    vmpl: u32,
    key: GuestKey,
}

impl<D: SnpDevice> SnpAttester<D> {
    /// With the key kept from an earlier attestation in this boot, or a new one.
    #[must_use]
    pub fn new(device: D, vmpl: u32, key: GuestKey) -> Self {
        Self { device, vmpl, key }
    }

    /// K.
    #[must_use]
    pub fn key(&self) -> &GuestKey {
        &self.key
    }
}

impl<D: SnpDevice> Attester for SnpAttester<D> {
    fn kind(&self) -> &'static str {
        "snp"
    }

    fn attest(&mut self, api: &BrokerApi) -> Result<Attested, AttestError> {
        let challenge = api.snp_begin()?;
        // A fresh sealing key per attestation: it only ever opens this answer's secrets.
        let sealing = SealingKeyPair::generate().map_err(|e| GuestError::Key(format!("sealing key: {e}")))?;
        let key_spki = self.key.spki()?;
        let sealing_key = sealing.public_key_bytes().to_vec();
        let report_data = snp_report_data(&challenge.nonce, &key_spki, &sealing_key);
        let evidence = self.device.report(&report_data, self.vmpl)?;
        let issued = api.snp_finish(&SnpFinishRequest {
            challenge_id: challenge.challenge_id,
            report: evidence.report,
            certificate_table: evidence.certificate_table,
            key_spki,
            sealing_key,
        })?;
        let secrets = open_secrets(&sealing, &issued)?;
        Ok(Attested { key_pem: self.key.to_pem(), issued, secrets, ak_handle: None })
    }
}

/// Opens the HPKE-sealed secrets of an answer.
fn open_secrets(
    sealing: &SealingKeyPair,
    issued: &IssuedCredentials,
) -> Result<Vec<(String, Vec<u8>)>, GuestError> {
    issued.secrets.iter().map(|secret| open_secret(sealing, secret, &issued.spiffe_id)).collect()
}

fn open_secret(
    sealing: &SealingKeyPair,
    secret: &SealedSecret,
    spiffe_id: &str,
) -> Result<(String, Vec<u8>), GuestError> {
    let fail = |reason: String| GuestError::Secret { name: secret.name.clone(), reason };
    let Sealed::Hpke { enc, ciphertext } = &secret.sealed else {
        return Err(fail("not sealed with HPKE (the broker sent a TPM import blob)".into()));
    };
    let sealed = SealedBox::from_parts(enc, ciphertext.clone()).map_err(|e| fail(e.to_string()))?;
    let plaintext = open(sealing, &sealed, HPKE_SECRET_INFO, &hpke_secret_aad(&secret.name, spiffe_id))
        .map_err(|e| fail(e.to_string()))?;
    Ok((secret.name.clone(), plaintext))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use mooring_attestation::seal::seal_to;

    use super::*;

    fn sealed(sealing: &SealingKeyPair, name: &str, spiffe_id: &str) -> SealedSecret {
        let aad = hpke_secret_aad(name, spiffe_id);
        let sealed = seal_to(sealing.public_key_bytes(), HPKE_SECRET_INFO, &aad, b"s3cret").unwrap();
        SealedSecret {
            name: name.into(),
            sealed: Sealed::Hpke { enc: sealed.enc().to_vec(), ciphertext: sealed.ciphertext().to_vec() },
        }
    }

    #[test]
    fn a_secret_opens_only_as_itself_for_this_vm_with_this_key() {
        let sealing = SealingKeyPair::generate().unwrap();
        let secret = sealed(&sealing, "api-key", "spiffe://t/vm/a/1");
        assert_eq!(open_secret(&sealing, &secret, "spiffe://t/vm/a/1").unwrap().1, b"s3cret");
        assert!(open_secret(&sealing, &secret, "spiffe://t/vm/a/2").is_err());
        let renamed = SealedSecret { name: "other".into(), ..secret.clone() };
        assert!(open_secret(&sealing, &renamed, "spiffe://t/vm/a/1").is_err());
        let other_key = SealingKeyPair::generate().unwrap();
        assert!(open_secret(&other_key, &secret, "spiffe://t/vm/a/1").is_err());
        let Sealed::Hpke { enc, mut ciphertext } = secret.sealed.clone() else { unreachable!() };
        if let Some(byte) = ciphertext.first_mut() {
            *byte ^= 1;
        }
        let flipped = SealedSecret { name: secret.name.clone(), sealed: Sealed::Hpke { enc, ciphertext } };
        assert!(open_secret(&sealing, &flipped, "spiffe://t/vm/a/1").is_err());
    }

    #[test]
    fn a_tpm_blob_is_refused_on_the_snp_path() {
        let sealing = SealingKeyPair::generate().unwrap();
        let secret = SealedSecret {
            name: "x".into(),
            sealed: Sealed::TpmImport {
                public: vec![],
                duplicate: vec![],
                encrypted_seed: vec![],
                pcr_selection: Default::default(),
            },
        };
        assert!(open_secret(&sealing, &secret, "id")
            .unwrap_err()
            .to_string()
            .contains("not sealed with HPKE"));
    }

    #[test]
    fn the_key_round_trips_through_its_pem() {
        let key = GuestKey::generate().unwrap();
        let again = GuestKey::from_pem(key.to_pem().as_bytes()).unwrap();
        assert_eq!(key.spki().unwrap(), again.spki().unwrap());
        assert!(
            GuestKey::from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").is_err()
        );
        assert!(GuestKey::from_pem(b"not pem").is_err());
    }
}
