//! Attestation structures: `TPMS_ATTEST` (TPM 2.0 Part 2, Table 133) with quote,
//! certify and certify-creation payloads, and `TPMT_SIGNATURE` (Table 214).

use serde::Serialize;
use thiserror::Error;

use crate::codec::{CodecError, Reader};
use crate::crypto::{CryptoError, PublicKey, Scheme, SignatureValue};
use crate::tpm::alg::{id, HashAlg};
use crate::tpm::limits::{MAX_DATA, MAX_DIGEST, MAX_ECC_KEY_BYTES, MAX_NAME, MAX_RSA_KEY_BYTES};
use crate::tpm::pcr::{PcrError, PcrSelection};
use crate::tpm::public::{ObjectAttributes, Public};

/// `TPM_GENERATED_VALUE`: every structure the TPM signs starts with it.
pub const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
/// `TPM_ST_ATTEST_CERTIFY`.
pub const TPM_ST_ATTEST_CERTIFY: u16 = 0x8017;
/// `TPM_ST_ATTEST_QUOTE`.
pub const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;
/// `TPM_ST_ATTEST_CREATION`.
pub const TPM_ST_ATTEST_CREATION: u16 = 0x801A;

/// Errors parsing attestation structures.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AttestError {
    /// Framing problem.
    #[error("attestation: {0}")]
    Codec(#[from] CodecError),
    /// Problem in the quoted PCR selection.
    #[error("attestation: {0}")]
    Pcr(#[from] PcrError),
    /// An attestation type other than quote, certify or certify-creation.
    #[error("attestation type {0:#06x} is not a quote, certify or certify-creation")]
    UnsupportedType(u16),
    /// An algorithm not accepted here.
    #[error("{field} has unsupported algorithm {alg:#06x}")]
    UnsupportedAlgorithm {
        /// The field.
        field: &'static str,
        /// The value found.
        alg: u16,
    },
}

/// `TPMS_CLOCK_INFO` (Table 120).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ClockInfo {
    /// Milliseconds the TPM has been powered since its last clear.
    pub clock: u64,
    /// TPM resets since the last clear.
    pub reset_count: u32,
    /// TPM restarts / resumes since the last reset.
    pub restart_count: u32,
    /// Whether `clock` has not gone backwards.
    pub safe: bool,
}

/// What a `TPMS_ATTEST` attests (`TPMU_ATTEST`, Table 132).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attested {
    /// `TPMS_QUOTE_INFO` (Table 128).
    Quote {
        /// The PCRs quoted.
        selection: PcrSelection,
        /// Hash of the selected PCR values.
        pcr_digest: Vec<u8>,
    },
    /// `TPMS_CERTIFY_INFO` (Table 124).
    Certify {
        /// Name of the certified object.
        name: Vec<u8>,
        /// Qualified name of the certified object.
        qualified_name: Vec<u8>,
    },
    /// `TPMS_CREATION_INFO` (Table 127).
    Creation {
        /// Name of the created object.
        object_name: Vec<u8>,
        /// Hash of its creation data.
        creation_hash: Vec<u8>,
    },
}

/// A parsed `TPMS_ATTEST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attest {
    magic: u32,
    kind: u16,
    qualified_signer: Vec<u8>,
    extra_data: Vec<u8>,
    clock: ClockInfo,
    firmware_version: u64,
    attested: Attested,
}

impl Attest {
    /// Parses `TPMS_ATTEST` bytes as `tpm2_quote -m` writes them. The magic value is
    /// kept, not checked here: verification reports a wrong magic as such.
    ///
    /// # Errors
    /// Framing errors naming the field; unsupported attestation types.
    pub fn parse(bytes: &[u8]) -> Result<Self, AttestError> {
        let mut r = Reader::new(bytes);
        let magic = r.u32_be("TPMS_ATTEST.magic")?;
        let kind = r.u16_be("TPMS_ATTEST.type")?;
        let qualified_signer = r.tpm2b(MAX_NAME, "TPMS_ATTEST.qualifiedSigner")?.to_vec();
        let extra_data = r.tpm2b(MAX_DATA, "TPMS_ATTEST.extraData")?.to_vec();
        let clock = ClockInfo {
            clock: r.u64_be("TPMS_CLOCK_INFO.clock")?,
            reset_count: r.u32_be("TPMS_CLOCK_INFO.resetCount")?,
            restart_count: r.u32_be("TPMS_CLOCK_INFO.restartCount")?,
            safe: match r.u8("TPMS_CLOCK_INFO.safe")? {
                0 => false,
                1 => true,
                other => {
                    return Err(CodecError::BadValue {
                        field: "TPMS_CLOCK_INFO.safe",
                        value: u64::from(other),
                    }
                    .into())
                }
            },
        };
        let firmware_version = r.u64_be("TPMS_ATTEST.firmwareVersion")?;
        let attested = match kind {
            TPM_ST_ATTEST_QUOTE => Attested::Quote {
                selection: PcrSelection::read(&mut r)?,
                pcr_digest: r.tpm2b(MAX_DIGEST, "TPMS_QUOTE_INFO.pcrDigest")?.to_vec(),
            },
            TPM_ST_ATTEST_CERTIFY => Attested::Certify {
                name: r.tpm2b(MAX_NAME, "TPMS_CERTIFY_INFO.name")?.to_vec(),
                qualified_name: r.tpm2b(MAX_NAME, "TPMS_CERTIFY_INFO.qualifiedName")?.to_vec(),
            },
            TPM_ST_ATTEST_CREATION => Attested::Creation {
                object_name: r.tpm2b(MAX_NAME, "TPMS_CREATION_INFO.objectName")?.to_vec(),
                creation_hash: r.tpm2b(MAX_DIGEST, "TPMS_CREATION_INFO.creationHash")?.to_vec(),
            },
            other => return Err(AttestError::UnsupportedType(other)),
        };
        r.expect_end("TPMS_ATTEST")?;
        Ok(Self { magic, kind, qualified_signer, extra_data, clock, firmware_version, attested })
    }

    /// The `magic` field.
    #[must_use]
    pub fn magic(&self) -> u32 {
        self.magic
    }

    /// The `type` field (`TPM_ST_ATTEST_*`).
    #[must_use]
    pub fn kind(&self) -> u16 {
        self.kind
    }

    /// Qualified Name of the signing key.
    #[must_use]
    pub fn qualified_signer(&self) -> &[u8] {
        &self.qualified_signer
    }

    /// The qualifying data the caller supplied (`extraData`).
    #[must_use]
    pub fn extra_data(&self) -> &[u8] {
        &self.extra_data
    }

    /// Clock information.
    #[must_use]
    pub fn clock(&self) -> ClockInfo {
        self.clock
    }

    /// Firmware version of the TPM.
    #[must_use]
    pub fn firmware_version(&self) -> u64 {
        self.firmware_version
    }

    /// The attested payload.
    #[must_use]
    pub fn attested(&self) -> &Attested {
        &self.attested
    }
}

/// A parsed `TPMT_SIGNATURE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    scheme: Scheme,
    /// RSA: the signature block; ECDSA: `r` then `s` (split at `r_len`).
    bytes: Vec<u8>,
    r_len: usize,
}

impl Signature {
    /// Parses a `TPMT_SIGNATURE` as `tpm2_quote -s` writes it (the default `tss` format).
    ///
    /// # Errors
    /// Framing errors; schemes other than RSASSA, RSAPSS and ECDSA.
    pub fn parse(bytes: &[u8]) -> Result<Self, AttestError> {
        let mut r = Reader::new(bytes);
        let sig_alg = r.u16_be("TPMT_SIGNATURE.sigAlg")?;
        let hash_id = r.u16_be("TPMT_SIGNATURE.signature.hash")?;
        let hash = HashAlg::from_tpm(hash_id).ok_or(AttestError::UnsupportedAlgorithm {
            field: "TPMT_SIGNATURE.signature.hash",
            alg: hash_id,
        })?;
        let signature = match sig_alg {
            id::RSASSA | id::RSAPSS => {
                let sig = r.tpm2b(MAX_RSA_KEY_BYTES, "TPMS_SIGNATURE_RSA.sig")?;
                let scheme =
                    if sig_alg == id::RSASSA { Scheme::RsaPkcs1(hash) } else { Scheme::RsaPss(hash) };
                Self { scheme, bytes: sig.to_vec(), r_len: 0 }
            }
            id::ECDSA => {
                let sig_r = r.tpm2b(MAX_ECC_KEY_BYTES, "TPMS_SIGNATURE_ECC.signatureR")?;
                let sig_s = r.tpm2b(MAX_ECC_KEY_BYTES, "TPMS_SIGNATURE_ECC.signatureS")?;
                Self { scheme: Scheme::Ecdsa(hash), bytes: [sig_r, sig_s].concat(), r_len: sig_r.len() }
            }
            other => {
                return Err(AttestError::UnsupportedAlgorithm { field: "TPMT_SIGNATURE.sigAlg", alg: other })
            }
        };
        r.expect_end("TPMT_SIGNATURE")?;
        Ok(signature)
    }

    /// A raw RSA signature block with a scheme given out of band (as Azure's vTPM
    /// quote signature travels, outside any `TPMT_SIGNATURE`).
    #[must_use]
    pub fn raw_rsa(scheme: Scheme, block: &[u8]) -> Self {
        Self { scheme, bytes: block.to_vec(), r_len: 0 }
    }

    /// The scheme and hash.
    #[must_use]
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Checks the signature over `message` with `key`; a public area must allow the scheme.
    ///
    /// # Errors
    /// [`CryptoError`] when the key's fixed scheme differs, or the signature is bad.
    pub fn verify(&self, key: Ak<'_>, message: &[u8]) -> Result<(), CryptoError> {
        let key = match key {
            Ak::Tpm(public) => {
                if let Some(fixed) = public.scheme().filter(|fixed| *fixed != self.scheme) {
                    return Err(CryptoError::SchemeKeyMismatch {
                        scheme: self.scheme.name(),
                        key: format!(
                            "{} key fixed to {} {}",
                            public.key().describe(),
                            fixed.name(),
                            fixed.hash()
                        ),
                    });
                }
                public.key()
            }
            Ak::Vouched(key) => key,
        };
        let value = match self.scheme {
            Scheme::Ecdsa(_) => {
                let (r, s) = self.bytes.split_at(self.r_len.min(self.bytes.len()));
                SignatureValue::Ecdsa { r, s }
            }
            Scheme::RsaPkcs1(_) | Scheme::RsaPss(_) => SignatureValue::Rsa(&self.bytes),
        };
        key.verify(self.scheme, message, &value)
    }
}

/// Why an AK-signed attestation was refused before its payload was looked at.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SignedAttestError {
    /// The signing key is not a restricted signing key that lives in a TPM.
    #[error("the AK is not a TPM-resident restricted signing key: missing {}", .missing.join(", "))]
    AkAttributes {
        /// Attribute names that are not set.
        missing: Vec<&'static str>,
    },
    /// The AK can also decrypt, which an attestation key must not.
    #[error("the AK has the decrypt attribute; attestation keys must be signing-only")]
    AkDecrypts,
    /// The attestation or signature bytes are malformed.
    #[error(transparent)]
    Malformed(#[from] AttestError),
    /// The signature does not verify over the bytes received.
    #[error("AK signature: {0}")]
    Signature(#[from] CryptoError),
    /// The structure was not generated by a TPM.
    #[error("magic is {0:#010x}, not TPM_GENERATED_VALUE (0xff544347): not produced by a TPM")]
    BadMagic(u32),
}

/// The attributes an attestation key must have: `restricted`, `sign`, `fixedTPM`,
/// `fixedParent`, `sensitiveDataOrigin` (so only the TPM's own structures get signed, by
/// a key that never left it).
pub const AK_ATTRIBUTES: u32 = ObjectAttributes::RESTRICTED
    | ObjectAttributes::SIGN
    | ObjectAttributes::FIXED_TPM
    | ObjectAttributes::FIXED_PARENT
    | ObjectAttributes::SENSITIVE_DATA_ORIGIN;

/// The key that signed an attestation.
#[derive(Debug, Clone, Copy)]
pub enum Ak<'a> {
    /// A TPM public area: its attributes are checked and its Name is known.
    Tpm(&'a Public),
    /// A bare public key whose residency in a TPM is vouched for by other evidence (the
    /// Azure vTPM key committed in an SEV-SNP report), or asserted by an operator on the
    /// command line. No attribute check is possible.
    Vouched(&'a PublicKey),
}

impl Ak<'_> {
    /// The key's TPM Name, when it is a public area.
    #[must_use]
    pub fn name(self) -> Option<Vec<u8>> {
        match self {
            Ak::Tpm(public) => Some(public.name()),
            Ak::Vouched(_) => None,
        }
    }
}

/// Checks the AK's attributes, parses `attest`, verifies `signature` over exactly the
/// bytes received, and checks the magic value. Payload checks are the caller's.
///
/// # Errors
/// [`SignedAttestError`] naming the first check that failed.
pub fn verify_signed(ak: Ak<'_>, attest: &[u8], signature: &Signature) -> Result<Attest, SignedAttestError> {
    if let Ak::Tpm(public) = ak {
        let missing = public.attributes().missing(AK_ATTRIBUTES);
        if !missing.is_empty() {
            return Err(SignedAttestError::AkAttributes { missing });
        }
        if public.attributes().has(ObjectAttributes::DECRYPT) {
            return Err(SignedAttestError::AkDecrypts);
        }
    }
    let parsed = Attest::parse(attest)?;
    signature.verify(ak, attest)?;
    if parsed.magic() != TPM_GENERATED_VALUE {
        return Err(SignedAttestError::BadMagic(parsed.magic()));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keylime_quote_parses() {
        let attest = Attest::parse(&mooring_testdata::testdata("tpm/quotes/sim-keylime/quote.out")).unwrap();
        assert_eq!(attest.magic(), TPM_GENERATED_VALUE);
        assert_eq!(attest.kind(), TPM_ST_ATTEST_QUOTE);
        assert_eq!(hex::encode(attest.extra_data()), "db1db298db6d60e6385b7231743e9c3056a18003");
        let Attested::Quote { selection, .. } = attest.attested() else { panic!("not a quote") };
        assert_eq!(*selection, PcrSelection::single(HashAlg::Sha256, &[15, 16, 22]).unwrap());
        let sig =
            Signature::parse(&mooring_testdata::testdata("tpm/quotes/sim-keylime/quotesig.out")).unwrap();
        assert_eq!(sig.scheme(), Scheme::RsaPkcs1(HashAlg::Sha256));
    }

    #[test]
    fn windows_certify_creation_parses() {
        let bytes = mooring_testdata::testdata("tpm/quotes/gce-windows-vtpm/ak_CreateAttestation.bin");
        let attest = Attest::parse(&bytes).unwrap();
        assert!(matches!(attest.attested(), Attested::Creation { .. }));
    }

    #[test]
    fn framing_errors_name_the_field() {
        let bytes = mooring_testdata::testdata("tpm/quotes/sim-keylime/quote.out");
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            Attest::parse(&long),
            Err(AttestError::Codec(CodecError::TrailingBytes { field: "TPMS_ATTEST", extra: 1 }))
        );
        assert!(matches!(
            Attest::parse(&bytes[..bytes.len() - 1]),
            Err(AttestError::Codec(CodecError::Truncated { field: "TPMS_QUOTE_INFO.pcrDigest", .. }))
        ));
        let mut kind = bytes.clone();
        kind[5] = 0x14;
        assert_eq!(Attest::parse(&kind), Err(AttestError::UnsupportedType(0x8014)));
        let mut safe = bytes;
        let safe_offset = 4 + 2 + 2 + 34 + 2 + 20 + 16;
        safe[safe_offset] = 2;
        assert!(matches!(
            Attest::parse(&safe),
            Err(AttestError::Codec(CodecError::BadValue { field: "TPMS_CLOCK_INFO.safe", .. }))
        ));
    }

    #[test]
    fn signature_framing() {
        let bytes = mooring_testdata::testdata("tpm/quotes/sim-keylime/quotesig.out");
        let mut alg = bytes.clone();
        alg[1] = 0x17;
        assert_eq!(
            Signature::parse(&alg),
            Err(AttestError::UnsupportedAlgorithm { field: "TPMT_SIGNATURE.sigAlg", alg: 0x17 })
        );
        let mut long = bytes.clone();
        long.push(1);
        assert!(matches!(Signature::parse(&long), Err(AttestError::Codec(CodecError::TrailingBytes { .. }))));
        let mut hash = bytes;
        hash[3] = 0x42;
        assert!(matches!(Signature::parse(&hash), Err(AttestError::UnsupportedAlgorithm { .. })));
    }
}
