//! Verification of a `TPM2_Quote` (TPM 2.0 Part 3, 18.4) against an attestation key.

use serde::Serialize;
use thiserror::Error;

use crate::tpm::alg::HashAlg;
use crate::tpm::attest::{verify_signed, Ak, Attested, ClockInfo, Signature, SignedAttestError};
use crate::tpm::pcr::{PcrError, PcrSelection, PcrValues};

/// Why a quote was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum QuoteError {
    /// AK, framing, signature or magic.
    #[error(transparent)]
    Signed(#[from] SignedAttestError),
    /// A signed structure of another type.
    #[error("attestation type is {0:#06x}, not TPM_ST_ATTEST_QUOTE (0x8018)")]
    NotAQuote(u16),
    /// `extraData` is not the qualifying data this verifier expects.
    #[error("quote qualifying data is {found}, expected {expected} (stale or replayed quote?)")]
    QualifyingData {
        /// Expected, hex.
        expected: String,
        /// Found, hex.
        found: String,
    },
    /// The quote covers other PCRs than required.
    #[error("quote selects {quoted}, policy requires {required}")]
    Selection {
        /// What the quote selects.
        quoted: String,
        /// What is required.
        required: String,
    },
    /// A PCR value needed for the digest was not supplied.
    #[error(transparent)]
    Pcr(#[from] PcrError),
    /// The supplied PCR values are not the ones the TPM quoted.
    #[error("the PCR values supplied hash to {computed}, the quote's pcrDigest is {quoted}")]
    PcrDigest {
        /// Digest of the supplied values, hex.
        computed: String,
        /// Digest in the quote, hex.
        quoted: String,
    },
}

/// What the verifier requires of a quote.
#[derive(Debug, Clone, Copy)]
pub struct QuoteExpectation<'a> {
    /// The exact qualifying data (`extraData`): no padding or truncation is tolerated.
    pub qualifying_data: &'a [u8],
    /// The exact PCR selection the quote must cover.
    pub selection: &'a PcrSelection,
}

/// A quote whose signature, freshness, selection and PCR values all checked out.
/// Only [`verify_quote`] makes one.
#[derive(Debug, Clone, Serialize)]
pub struct VerifiedQuote {
    #[serde(serialize_with = "crate::serde_hex::option")]
    ak_name: Option<Vec<u8>>,
    #[serde(serialize_with = "crate::serde_hex::bytes")]
    qualifying_data: Vec<u8>,
    selection: String,
    pcrs: PcrValues,
    clock: ClockInfo,
    firmware_version: String,
}

impl VerifiedQuote {
    /// Name of the AK that signed (none for a vouched bare key).
    #[must_use]
    pub fn ak_name(&self) -> Option<&[u8]> {
        self.ak_name.as_deref()
    }

    /// The quoted PCR values (only those selected).
    #[must_use]
    pub fn pcrs(&self) -> &PcrValues {
        &self.pcrs
    }

    /// The TPM's clock information at quote time.
    #[must_use]
    pub fn clock(&self) -> ClockInfo {
        self.clock
    }

    /// The same quote with only the values of PCRs `indices` of `bank` (those quoted): for
    /// appraising a quote that covers more PCRs than a policy looks at, such as one recorded
    /// outside Mooring over all 24.
    #[must_use]
    pub fn only(&self, bank: HashAlg, indices: &[u8]) -> Self {
        let mut pcrs = PcrValues::new();
        for index in indices {
            if let Some(value) = self.pcrs.get(bank, *index) {
                // Inserting a value that was already held cannot fail.
                let _ = pcrs.insert(bank, *index, value.to_vec());
            }
        }
        Self { pcrs, ..self.clone() }
    }
}

/// Verifies a quote: the AK is a TPM-resident restricted signing key, the signature
/// covers exactly `attest` as received, magic and type are right, `extraData` equals the
/// expected qualifying data, the selection equals the required one, and `pcrs` hash to
/// the quoted `pcrDigest` (with the signature's hash algorithm).
///
/// # Errors
/// [`QuoteError`] naming the first check that failed.
pub fn verify_quote(
    ak: Ak<'_>,
    attest: &[u8],
    signature: &Signature,
    pcrs: &PcrValues,
    expected: &QuoteExpectation<'_>,
) -> Result<VerifiedQuote, QuoteError> {
    let parsed = verify_signed(ak, attest, signature)?;
    let Attested::Quote { selection, pcr_digest } = parsed.attested() else {
        return Err(QuoteError::NotAQuote(parsed.kind()));
    };
    if parsed.extra_data() != expected.qualifying_data {
        return Err(QuoteError::QualifyingData {
            expected: hex::encode(expected.qualifying_data),
            found: hex::encode(parsed.extra_data()),
        });
    }
    if selection != expected.selection || selection.is_empty() {
        return Err(QuoteError::Selection {
            quoted: selection.to_string(),
            required: expected.selection.to_string(),
        });
    }
    let digest_alg: HashAlg = signature.scheme().hash();
    let computed = pcrs.digest(selection, digest_alg)?;
    if computed != *pcr_digest {
        return Err(QuoteError::PcrDigest {
            computed: hex::encode(computed),
            quoted: hex::encode(pcr_digest),
        });
    }
    let mut quoted = PcrValues::new();
    for (bank, list) in selection.iter() {
        for index in list {
            let value = pcrs.get(bank, index).ok_or(PcrError::Missing { bank, index })?;
            quoted.insert(bank, index, value.to_vec())?;
        }
    }
    Ok(VerifiedQuote {
        ak_name: ak.name(),
        qualifying_data: parsed.extra_data().to_vec(),
        selection: selection.to_string(),
        pcrs: quoted,
        clock: parsed.clock(),
        firmware_version: format!("{:#018x}", parsed.firmware_version()),
    })
}
