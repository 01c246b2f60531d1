//! Releasable secrets, sealed so only the attested VM can open them.

use mooring_attestation::protocol::{hpke_secret_aad, Sealed, SealedSecret, HPKE_SECRET_INFO};
use mooring_attestation::seal::seal_to;
use mooring_attestation::tpm::duplicate::seal_to_ek;
use mooring_attestation::tpm::pcr::PcrValues;
use mooring_attestation::tpm::public::Public;

use super::{internal, Broker};
use crate::policy::Class;
use crate::refusal::{Code, Refusal};

impl Broker {
    /// TPM: an import blob to the EK whose unseal policy is PolicyPCR over the class's
    /// seal PCRs at the values just quoted, so it opens only in this TPM in this boot state.
    pub(crate) fn seal_tpm_secrets(
        &self,
        class: &Class,
        ek: &Public,
        quoted: &PcrValues,
    ) -> Result<Vec<SealedSecret>, Refusal> {
        let Some(rules) = class.tpm() else { return Ok(Vec::new()) };
        class
            .secrets()
            .iter()
            .map(|secret| {
                let sealed = seal_to_ek(ek, rules.seal_selection(), quoted, &secret.value, &self.rng)
                    .map_err(|e| internal("sealing a secret", e))?;
                Ok(SealedSecret {
                    name: secret.name.clone(),
                    sealed: Sealed::TpmImport {
                        public: sealed.public().to_vec(),
                        duplicate: sealed.duplicate().to_vec(),
                        encrypted_seed: sealed.encrypted_seed().to_vec(),
                        pcr_selection: sealed.pcr_selection_map(),
                    },
                })
            })
            .collect()
    }

    /// SEV-SNP: HPKE to the X25519 key the report committed to in `REPORT_DATA`, with the
    /// secret's name and the VM's SPIFFE ID as associated data.
    pub(crate) fn seal_hpke_secrets(
        &self,
        class: &Class,
        sealing_key: &[u8],
        spiffe_id: &str,
    ) -> Result<Vec<SealedSecret>, Refusal> {
        class
            .secrets()
            .iter()
            .map(|secret| {
                let aad = hpke_secret_aad(&secret.name, spiffe_id);
                let sealed = seal_to(sealing_key, HPKE_SECRET_INFO, &aad, &secret.value)
                    .map_err(|e| Refusal::new(Code::KeyInvalid, format!("sealing key: {e}")))?;
                Ok(SealedSecret {
                    name: secret.name.clone(),
                    sealed: Sealed::Hpke {
                        enc: sealed.enc().to_vec(),
                        ciphertext: sealed.ciphertext().to_vec(),
                    },
                })
            })
            .collect()
    }
}
