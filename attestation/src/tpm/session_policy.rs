//! TPM policy-session digests computed in software (TPM 2.0 Part 1, 19.7 "Enhanced
//! Authorization"), so the broker can bind an object to PCR values without a TPM of its own.
//! ("Policy" here is the TPM's authorization policy, not the SEV-SNP guest policy
//! ([`crate::snp::guest_policy`]) or the broker's admission policy.)
//!
//! A policy digest starts as zeros of the policy hash's size and is extended by each
//! policy command in turn (`policyDigest_new = H(policyDigest_old || TPM_CC || ...)`).
//! A policy session on the TPM runs the same commands against the TPM's real state and
//! reaches the same digest only if every assertion holds.

use std::fmt::Write as _;

use thiserror::Error;

use crate::tpm::alg::HashAlg;
use crate::tpm::pcr::{PcrError, PcrSelection, PcrValues, MAX_PCRS};

/// `TPM_CC_PolicyPCR` (Part 2, Table 12).
pub const TPM_CC_POLICY_PCR: u32 = 0x0000_017F;

/// Why a policy digest could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PolicyDigestError {
    /// A PCR policy over no PCRs would assert nothing: refused rather than built.
    #[error("PCR policy selects no PCRs; it would authorize any boot state")]
    EmptySelection,
    /// A selected PCR has no expected value.
    #[error("no expected value for selected PCR {bank}:{index}")]
    PcrValueMissing {
        /// Bank of the missing value.
        bank: HashAlg,
        /// PCR index of the missing value.
        index: u8,
    },
    /// The digest to extend has the wrong size for the policy hash.
    #[error("policy digest is {len} bytes, {hash} digests are {expected}")]
    DigestSize {
        /// The policy hash.
        hash: HashAlg,
        /// Length given.
        len: usize,
        /// Length expected.
        expected: usize,
    },
    /// A tpm2-tools PCR list (`sha256:0,7+sha1:1`) could not be read.
    #[error("PCR list {text:?}: {reason}")]
    PcrList {
        /// The text given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// A policy digest under construction: the hash algorithm (the object's `nameAlg`, and the
/// hash of the policy session that must reproduce it) and the current value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDigest {
    hash: HashAlg,
    digest: Vec<u8>,
}

impl PolicyDigest {
    /// The initial policy digest: all zeros (Part 1, 19.7.2 and Part 3, 23.1).
    #[must_use]
    pub fn new(hash: HashAlg) -> Self {
        Self { hash, digest: vec![0; hash.size()] }
    }

    /// Continues from an existing digest (for example a trial session's output).
    ///
    /// # Errors
    /// [`PolicyDigestError::DigestSize`] when `digest` is not one `hash` digest long.
    pub fn from_digest(hash: HashAlg, digest: &[u8]) -> Result<Self, PolicyDigestError> {
        if digest.len() != hash.size() {
            return Err(PolicyDigestError::DigestSize { hash, len: digest.len(), expected: hash.size() });
        }
        Ok(Self { hash, digest: digest.to_vec() })
    }

    /// `TPM2_PolicyPCR(pcrs = selection)` with the expected PCR values (Part 3, 23.7):
    ///
    /// `policyDigest_new = H(policyDigest_old || TPM_CC_PolicyPCR || pcrs || digestTPM)`,
    /// where `pcrs` is the `TPML_PCR_SELECTION` as marshaled (banks in the order the
    /// selection lists them) and `digestTPM = H(values of the selected PCRs, concatenated in
    /// selection order)`, both with this policy's hash.
    ///
    /// The order of banks in `selection` is part of the digest: the policy session must
    /// send the same selection ([`tpm2_tools_pcr_list`] prints it for `tpm2_policypcr -l`).
    ///
    /// # Errors
    /// [`PolicyDigestError::EmptySelection`] when nothing is selected;
    /// [`PolicyDigestError::PcrValueMissing`] naming the first selected PCR without a value.
    pub fn policy_pcr(self, selection: &PcrSelection, values: &PcrValues) -> Result<Self, PolicyDigestError> {
        if selection.is_empty() {
            return Err(PolicyDigestError::EmptySelection);
        }
        let digest_tpm = values.digest(selection, self.hash).map_err(|e| match e {
            PcrError::Missing { bank, index } => PolicyDigestError::PcrValueMissing { bank, index },
            // `PcrValues::digest` reports nothing else; keep the reason if that changes.
            other => PolicyDigestError::PcrList { text: selection.to_string(), reason: other.to_string() },
        })?;
        let digest = self.hash.digest(&[
            &self.digest,
            &TPM_CC_POLICY_PCR.to_be_bytes(),
            &selection.to_bytes(),
            &digest_tpm,
        ]);
        Ok(Self { hash: self.hash, digest })
    }

    /// The policy hash algorithm.
    #[must_use]
    pub fn hash(&self) -> HashAlg {
        self.hash
    }

    /// The current digest: an object's `authPolicy`.
    #[must_use]
    pub fn digest(&self) -> &[u8] {
        &self.digest
    }
}

/// The PolicyPCR digest from a fresh session: `PolicyDigest::new(hash).policy_pcr(..)`.
///
/// # Errors
/// As [`PolicyDigest::policy_pcr`].
pub fn pcr_policy(
    hash: HashAlg,
    selection: &PcrSelection,
    values: &PcrValues,
) -> Result<PolicyDigest, PolicyDigestError> {
    PolicyDigest::new(hash).policy_pcr(selection, values)
}

/// `selection` in one canonical form: banks in ascending `TPM_ALG_ID` order (sha1, sha256,
/// sha384, sha512, sm3_256), banks with nothing selected left out. Two parties that agree on
/// the set of PCRs but not on an order reach the same PolicyPCR digest through this.
#[must_use]
pub fn canonical_selection(selection: &PcrSelection) -> PcrSelection {
    let mut canonical = PcrSelection::new();
    for bank in HashAlg::ALL {
        let indices: Vec<u8> =
            selection.iter().filter(|(b, _)| *b == bank).flat_map(|(_, list)| list).collect();
        if !indices.is_empty() {
            // Indices come from a valid selection, so they are in range.
            let _ = canonical.add(bank, &indices);
        }
    }
    canonical
}

/// The selection in tpm2-tools' PCR list syntax (`sha1:1+sha256:0,7`), banks in selection
/// order, for `tpm2_policypcr -l`, `tpm2_pcrread` and `tpm2_createpolicy --policy-pcr -l`.
#[must_use]
pub fn tpm2_tools_pcr_list(selection: &PcrSelection) -> String {
    let mut out = String::new();
    for (bank, indices) in selection.iter().filter(|(_, list)| !list.is_empty()) {
        if !out.is_empty() {
            out.push('+');
        }
        let _ = write!(out, "{}:", bank.name());
        let list: Vec<String> = indices.iter().map(u8::to_string).collect();
        out.push_str(&list.join(","));
    }
    out
}

/// Parses tpm2-tools' PCR list syntax (`sha256:0,7+sha1:1`), keeping the bank order.
///
/// # Errors
/// [`PolicyDigestError::PcrList`] for an unknown bank, a bad or out-of-range index, a bank named
/// twice, or an empty list.
pub fn parse_tpm2_tools_pcr_list(text: &str) -> Result<PcrSelection, PolicyDigestError> {
    let fail = |reason: String| PolicyDigestError::PcrList { text: text.to_owned(), reason };
    let mut selection = PcrSelection::new();
    let mut seen = Vec::new();
    for part in text.split('+') {
        let (bank_name, list) =
            part.split_once(':').ok_or_else(|| fail(format!("{part:?} is not BANK:INDICES")))?;
        let bank = HashAlg::from_name(bank_name.trim())
            .ok_or_else(|| fail(format!("unknown bank {bank_name:?}")))?;
        if seen.contains(&bank) {
            return Err(fail(format!("bank {bank} named twice")));
        }
        seen.push(bank);
        let mut indices = Vec::new();
        for index in list.split(',') {
            let index: u8 = index.trim().parse().map_err(|_| fail(format!("bad PCR index {index:?}")))?;
            if index >= MAX_PCRS {
                return Err(fail(format!("PCR index {index} out of range (0-31)")));
            }
            indices.push(index);
        }
        selection.add(bank, &indices).map_err(|e| fail(e.to_string()))?;
    }
    if selection.is_empty() {
        return Err(fail("selects no PCRs".to_owned()));
    }
    Ok(selection)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> PcrValues {
        let mut values = PcrValues::new();
        values.insert(HashAlg::Sha256, 0, vec![0; 32]).unwrap();
        values.insert(HashAlg::Sha256, 7, vec![7; 32]).unwrap();
        values.insert(HashAlg::Sha1, 1, vec![1; 20]).unwrap();
        values
    }

    #[test]
    fn policy_pcr_follows_part3_23_7_by_hand() {
        let selection = PcrSelection::single(HashAlg::Sha256, &[0, 7]).unwrap();
        let policy = pcr_policy(HashAlg::Sha256, &selection, &values()).unwrap();
        let digest_tpm = HashAlg::Sha256.digest(&[&[0; 32], &[7; 32]]);
        // TPML_PCR_SELECTION: count 1, TPM_ALG_SHA256, sizeofSelect 3, PCRs 0 and 7.
        let pcrs = [0, 0, 0, 1, 0x00, 0x0b, 3, 0x81, 0, 0];
        let expected = HashAlg::Sha256.digest(&[&[0; 32], &[0x00, 0x00, 0x01, 0x7f], &pcrs, &digest_tpm]);
        assert_eq!(policy.digest(), expected);
        assert_eq!(policy.hash(), HashAlg::Sha256);
    }

    #[test]
    fn bank_order_and_values_change_the_digest() {
        let mut a = PcrSelection::single(HashAlg::Sha1, &[1]).unwrap();
        a.add(HashAlg::Sha256, &[0]).unwrap();
        let mut b = PcrSelection::single(HashAlg::Sha256, &[0]).unwrap();
        b.add(HashAlg::Sha1, &[1]).unwrap();
        let da = pcr_policy(HashAlg::Sha256, &a, &values()).unwrap();
        let db = pcr_policy(HashAlg::Sha256, &b, &values()).unwrap();
        assert_ne!(da, db);
        assert_eq!(pcr_policy(HashAlg::Sha256, &canonical_selection(&b), &values()).unwrap(), da);

        let mut changed = values();
        changed.insert(HashAlg::Sha256, 0, vec![9; 32]).unwrap();
        assert_ne!(pcr_policy(HashAlg::Sha256, &a, &changed).unwrap(), da);
    }

    #[test]
    fn refuses_empty_selections_missing_values_and_bad_digests() {
        assert_eq!(
            pcr_policy(HashAlg::Sha256, &PcrSelection::new(), &values()),
            Err(PolicyDigestError::EmptySelection)
        );
        let selection = PcrSelection::single(HashAlg::Sha256, &[0, 8]).unwrap();
        assert_eq!(
            pcr_policy(HashAlg::Sha256, &selection, &values()),
            Err(PolicyDigestError::PcrValueMissing { bank: HashAlg::Sha256, index: 8 })
        );
        assert_eq!(
            PolicyDigest::from_digest(HashAlg::Sha256, &[0; 20]),
            Err(PolicyDigestError::DigestSize { hash: HashAlg::Sha256, len: 20, expected: 32 })
        );
    }

    #[test]
    fn tpm2_tools_lists_round_trip_in_order() {
        let selection = parse_tpm2_tools_pcr_list("sha256:7,0+sha1:1").unwrap();
        assert_eq!(tpm2_tools_pcr_list(&selection), "sha256:0,7+sha1:1");
        assert_eq!(tpm2_tools_pcr_list(&canonical_selection(&selection)), "sha1:1+sha256:0,7");
        for bad in ["", "sha256", "md5:1", "sha256:32", "sha256:x", "sha256:1+sha256:2"] {
            assert!(
                matches!(parse_tpm2_tools_pcr_list(bad), Err(PolicyDigestError::PcrList { .. })),
                "{bad:?} accepted"
            );
        }
    }
}
