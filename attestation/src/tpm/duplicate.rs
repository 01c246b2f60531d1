//! Sealed secrets for one TPM: a `TPM2_Import` blob built in software (TPM 2.0 Part 1,
//! 23 "Protected Storage Hierarchy" / 23.3 "Duplication"; Part 3, 13.1 `TPM2_Duplicate` and
//! 13.3 `TPM2_Import`), so the broker can release a secret that only one TPM, in one boot
//! state, can read.
//!
//! The secret becomes the sensitive data of a sealed-data object (`TPM_ALG_KEYEDHASH`,
//! scheme `TPM_ALG_NULL`) whose `authPolicy` is a PolicyPCR digest over the expected PCR
//! values. The object is duplicated to the EK as its new parent with the outer wrapper only
//! (no inner wrapper, `symmetricAlg = TPM_ALG_NULL` at import):
//!
//! - `seed`: fresh, protected to the EK exactly as MakeCredential's seed but with the label
//!   `"DUPLICATE"` (Part 1, 11.4.10; [`credential`](super::credential)),
//! - `symKey = KDFa(ekNameAlg, seed, "STORAGE", name, "", ekSymKeyBits)`,
//! - `dupSensitive = AES-CFB(symKey, IV = 0, TPM2B_SENSITIVE)`,
//! - `HMACkey = KDFa(ekNameAlg, seed, "INTEGRITY", "", "", ekNameAlg bits)`,
//! - `outerHMAC = HMAC(HMACkey, dupSensitive || name)`,
//! - `duplicate = TPM2B_PRIVATE(TPM2B_DIGEST(outerHMAC) || dupSensitive)`.
//!
//! Only the TPM holding the EK's private key can recover the seed, so only it imports the
//! blob; the integrity HMAC covers the object's Name, so neither the public area (and its
//! policy) nor the encrypted sensitive area can be changed. After `TPM2_Load`, `TPM2_Unseal`
//! needs a policy session whose PCRs match: `userWithAuth` is clear, so the (empty) auth
//! value never authorizes use, and `adminWithPolicy` is set, so administrative commands need
//! a policy that includes their command code, which this PCR-only policy never does.

use std::collections::BTreeMap;

use aws_lc_rs::rand::SecureRandom;
use thiserror::Error;

use crate::codec::TpmWrite;
use crate::tpm::alg::{id, HashAlg};
use crate::tpm::credential::{protect_seed, storage_key_bits, CredentialError, ProtectedSeed};
use crate::tpm::kdf::{self, KdfError};
use crate::tpm::pcr::{PcrSelection, PcrValues};
use crate::tpm::public::{ObjectAttributes, Public};
use crate::tpm::session_policy::{self, PolicyDigest, PolicyDigestError};

/// Largest secret: `TPM2B_SENSITIVE_DATA` holds `MAX_SYM_DATA` (128) bytes (Part 2, Table
/// 145 and the reference implementation's `MAX_SYM_DATA`).
pub const MAX_SECRET: usize = 128;

/// Name algorithm of the sealed object, and so the hash of the policy session that unseals
/// it (`tpm2_startauthsession --policy-session` defaults to it).
pub const SEALED_NAME_ALG: HashAlg = HashAlg::Sha256;

/// `TPMA_OBJECT` of the sealed object (Part 2, Table 31): `adminWithPolicy | noDA`.
///
/// `fixedTPM` and `fixedParent` are clear because `TPM2_Import` refuses objects that have
/// either (Part 3, 13.3.1); `encryptedDuplication` is clear because there is no inner
/// wrapper; `userWithAuth` is clear so only the policy authorizes `TPM2_Unseal`;
/// `sensitiveDataOrigin` is clear because the data came from outside the TPM; `sign`,
/// `decrypt` and `restricted` are clear, which makes it a sealed-data object.
pub const SEALED_ATTRIBUTES: u32 = ObjectAttributes::ADMIN_WITH_POLICY | ObjectAttributes::NO_DA;

/// Label of the seed's protection for duplication (Part 1, 23.3.2.2 / 11.4.10).
const DUPLICATE_LABEL: &str = "DUPLICATE";

/// Why a secret could not be sealed to this EK.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DuplicateError {
    /// The secret does not fit a sealed-data object.
    #[error("secret of {len} bytes does not fit TPM2B_SENSITIVE_DATA (at most {max} bytes)")]
    SecretTooLarge {
        /// Length given.
        len: usize,
        /// Largest allowed.
        max: usize,
    },
    /// An empty secret is refused: it would unseal to nothing.
    #[error("secret is empty")]
    EmptySecret,
    /// The EK is not a restricted decryption (storage) key, so it cannot be a parent.
    #[error("the EK is not a storage key (restricted decryption key): missing {}", .missing.join(", "))]
    NotAStorageKey {
        /// Attribute names that are not set.
        missing: Vec<&'static str>,
    },
    /// The EK's symmetric definition is not AES-128-CFB or AES-256-CFB.
    #[error("the EK's symmetric definition {alg:#06x}/{key_bits}/{mode:#06x} is not AES-128/256-CFB")]
    UnsupportedSymmetric {
        /// `TPMT_SYM_DEF_OBJECT.algorithm`.
        alg: u16,
        /// `TPMT_SYM_DEF_OBJECT.keyBits`.
        key_bits: u16,
        /// `TPMT_SYM_DEF_OBJECT.mode`.
        mode: u16,
    },
    /// The policy would select no PCR, and so bind the secret to no boot state.
    #[error("PCR selection is empty: the secret would not be bound to any boot state")]
    EmptySelection,
    /// A selected PCR has no expected value.
    #[error("no expected value for selected PCR {bank}:{index}")]
    PcrValueMissing {
        /// Bank of the missing value.
        bank: HashAlg,
        /// PCR index of the missing value.
        index: u8,
    },
    /// Any other problem computing the policy.
    #[error(transparent)]
    Policy(PolicyDigestError),
    /// Key derivation or encryption failed.
    #[error(transparent)]
    Kdf(#[from] KdfError),
    /// The EK public key was rejected, or the random generator failed.
    #[error("EK public key unusable: {0}")]
    Key(&'static str),
}

impl From<PolicyDigestError> for DuplicateError {
    fn from(e: PolicyDigestError) -> Self {
        match e {
            PolicyDigestError::EmptySelection => Self::EmptySelection,
            PolicyDigestError::PcrValueMissing { bank, index } => Self::PcrValueMissing { bank, index },
            other => Self::Policy(other),
        }
    }
}

impl From<CredentialError> for DuplicateError {
    fn from(e: CredentialError) -> Self {
        match e {
            CredentialError::NotAStorageKey { missing } => Self::NotAStorageKey { missing },
            // `seal_to_ek` reports the EK's full symmetric definition instead.
            CredentialError::Symmetric { alg, mode } => Self::UnsupportedSymmetric { alg, key_bits: 0, mode },
            CredentialError::Kdf(e) => Self::Kdf(e),
            CredentialError::Key(reason) => Self::Key(reason),
            // MakeCredential's secret limit does not apply to duplication.
            CredentialError::SecretTooLong { .. } => Self::Key("unexpected credential error"),
        }
    }
}

/// One input file of `tpm2_import`, as [`SealedImport::tpm2_tools_files`] lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tpm2ToolsFile<'a> {
    /// The `tpm2_import` option that reads it (`-u`, `-i`, `-s`).
    pub option: &'static str,
    /// A conventional file name.
    pub file_name: &'static str,
    /// The file's bytes: the TPM structure, marshaled with its size.
    pub contents: &'a [u8],
}

/// A secret sealed to one TPM's EK under a PCR policy: the three inputs of `TPM2_Import`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedImport {
    public: Vec<u8>,
    duplicate: Vec<u8>,
    encrypted_seed: Vec<u8>,
    name: Vec<u8>,
    policy: PolicyDigest,
    selection: PcrSelection,
}

impl SealedImport {
    /// `objectPublic`: the sealed object's `TPM2B_PUBLIC`, marshaled with its size.
    #[must_use]
    pub fn public(&self) -> &[u8] {
        &self.public
    }

    /// `duplicate`: the `TPM2B_PRIVATE` (outer wrapper only), marshaled with its size.
    #[must_use]
    pub fn duplicate(&self) -> &[u8] {
        &self.duplicate
    }

    /// `inSymSeed`: the seed protected to the EK, a `TPM2B_ENCRYPTED_SECRET` with its size.
    #[must_use]
    pub fn encrypted_seed(&self) -> &[u8] {
        &self.encrypted_seed
    }

    /// The sealed object's Name (`nameAlg || H(TPMT_PUBLIC)`), as `tpm2_load -n` prints it.
    #[must_use]
    pub fn name(&self) -> &[u8] {
        &self.name
    }

    /// The object's `authPolicy`: the PolicyPCR digest (hash [`SEALED_NAME_ALG`]).
    #[must_use]
    pub fn policy_digest(&self) -> &[u8] {
        self.policy.digest()
    }

    /// The PCRs the policy covers, in the order the policy session must name them
    /// (canonical: banks in ascending `TPM_ALG_ID` order, see
    /// [`session_policy::canonical_selection`]).
    #[must_use]
    pub fn pcr_selection(&self) -> &PcrSelection {
        &self.selection
    }

    /// [`SealedImport::pcr_selection`] as a map from bank name (`sha256`) to ascending PCR
    /// indices. Iterating the map in key order gives the canonical bank order.
    #[must_use]
    pub fn pcr_selection_map(&self) -> BTreeMap<String, Vec<u8>> {
        self.selection.iter().map(|(bank, indices)| (bank.name().to_owned(), indices)).collect()
    }

    /// [`SealedImport::pcr_selection`] for `tpm2_policypcr -l` (`sha1:1+sha256:0,7`).
    #[must_use]
    pub fn tpm2_tools_pcr_list(&self) -> String {
        session_policy::tpm2_tools_pcr_list(&self.selection)
    }

    /// The files `tpm2_import -u sealed.pub -i sealed.dup -s sealed.seed` reads: each is the
    /// marshaled structure itself (tpm2-tools loads them with the TSS unmarshalers).
    #[must_use]
    pub fn tpm2_tools_files(&self) -> [Tpm2ToolsFile<'_>; 3] {
        [
            Tpm2ToolsFile { option: "-u", file_name: "sealed.pub", contents: &self.public },
            Tpm2ToolsFile { option: "-i", file_name: "sealed.dup", contents: &self.duplicate },
            Tpm2ToolsFile { option: "-s", file_name: "sealed.seed", contents: &self.encrypted_seed },
        ]
    }
}

/// Seals `secret` to the TPM holding `ek`, readable only while the PCRs in `selection` hold
/// the values `pcrs` gives (the values expected at unseal time, e.g. the quoted ones).
///
/// The selection is put in canonical order first ([`session_policy::canonical_selection`]), so the
/// client's policy session must list banks in ascending `TPM_ALG_ID` order
/// ([`SealedImport::tpm2_tools_pcr_list`]). `rng` provides the obfuscation value and the
/// seed (and, for an RSA EK, the OAEP randomness).
///
/// # Errors
/// [`DuplicateError`] naming the problem: the secret is empty or above [`MAX_SECRET`]
/// bytes, the EK is not an AES-CFB storage key, the selection is empty or a selected PCR has
/// no value, or the EK key is unusable.
pub fn seal_to_ek(
    ek: &Public,
    selection: &PcrSelection,
    pcrs: &PcrValues,
    secret: &[u8],
    rng: &dyn SecureRandom,
) -> Result<SealedImport, DuplicateError> {
    if secret.is_empty() {
        return Err(DuplicateError::EmptySecret);
    }
    if secret.len() > MAX_SECRET {
        return Err(DuplicateError::SecretTooLarge { len: secret.len(), max: MAX_SECRET });
    }
    let sym = ek.symmetric();
    let unsupported = || DuplicateError::UnsupportedSymmetric {
        alg: sym.algorithm,
        key_bits: sym.key_bits,
        mode: sym.mode,
    };
    let key_bits = storage_key_bits(ek).map_err(|e| match e {
        CredentialError::Symmetric { .. } => unsupported(),
        other => other.into(),
    })?;
    if key_bits != 128 && key_bits != 256 {
        return Err(unsupported());
    }
    let selection = session_policy::canonical_selection(selection);
    let policy = session_policy::pcr_policy(SEALED_NAME_ALG, &selection, pcrs)?;

    let mut obfuscation = vec![0u8; SEALED_NAME_ALG.size()];
    rng.fill(&mut obfuscation).map_err(|_| DuplicateError::Key("random generator failed"))?;
    let object = SealedObject::new(policy.digest(), &obfuscation, secret);
    let ProtectedSeed { seed, encrypted } = protect_seed(ek, DUPLICATE_LABEL, rng)?;
    let duplicate = outer_wrap(ek.name_alg(), key_bits, &seed, &object.name, &object.sensitive)?;

    let mut public = Vec::with_capacity(object.tpmt_public.len() + 2);
    public.put_tpm2b(&object.tpmt_public);
    Ok(SealedImport { public, duplicate, encrypted_seed: encrypted, name: object.name, policy, selection })
}

/// A sealed-data object's public and sensitive areas, marshaled.
struct SealedObject {
    tpmt_public: Vec<u8>,
    name: Vec<u8>,
    /// `TPMT_SENSITIVE` (without the `TPM2B_SENSITIVE` size).
    sensitive: Vec<u8>,
}

impl SealedObject {
    fn new(auth_policy: &[u8], obfuscation: &[u8], secret: &[u8]) -> Self {
        // Part 1, 27.7.3 (symmetric / keyed-hash objects): unique = H_nameAlg(seedValue || data).
        let unique = SEALED_NAME_ALG.digest(&[obfuscation, secret]);
        // TPMT_PUBLIC (Part 2, Table 225) with TPMS_KEYEDHASH_PARMS (Table 182).
        let mut tpmt_public = Vec::with_capacity(12 + auth_policy.len() + 4 + unique.len());
        tpmt_public.put_u16(id::KEYEDHASH);
        tpmt_public.put_u16(SEALED_NAME_ALG.tpm_id());
        tpmt_public.put_u32(SEALED_ATTRIBUTES);
        tpmt_public.put_tpm2b(auth_policy);
        tpmt_public.put_u16(id::NULL); // TPMT_KEYEDHASH_SCHEME.scheme: sealed data
        tpmt_public.put_tpm2b(&unique);
        let mut name = SEALED_NAME_ALG.tpm_id().to_be_bytes().to_vec();
        name.extend(SEALED_NAME_ALG.digest(&[&tpmt_public]));
        // TPMT_SENSITIVE (Part 2, Table 195): type, authValue (empty), seedValue (the
        // obfuscation value), sensitive (TPM2B_SENSITIVE_DATA).
        let mut sensitive = Vec::with_capacity(8 + obfuscation.len() + secret.len());
        sensitive.put_u16(id::KEYEDHASH);
        sensitive.put_tpm2b(&[]);
        sensitive.put_tpm2b(obfuscation);
        sensitive.put_tpm2b(secret);
        Self { tpmt_public, name, sensitive }
    }
}

/// The outer duplication wrapper (Part 1, 23.3.2.2) around `sensitive` (a `TPMT_SENSITIVE`)
/// for an object named `name`, under `seed`; returns the marshaled `TPM2B_PRIVATE`.
fn outer_wrap(
    parent_name_alg: HashAlg,
    parent_key_bits: u16,
    seed: &[u8],
    name: &[u8],
    sensitive: &[u8],
) -> Result<Vec<u8>, KdfError> {
    let mut dup_sensitive = Vec::with_capacity(sensitive.len() + 2);
    dup_sensitive.put_tpm2b(sensitive);
    let sym_key = kdf::kdfa(parent_name_alg, seed, "STORAGE", name, &[], u32::from(parent_key_bits))?;
    kdf::aes_cfb_encrypt(parent_key_bits, &sym_key, &mut dup_sensitive)?;
    let hmac_bits = u32::try_from(parent_name_alg.size() * 8).unwrap_or(0);
    let hmac_key = kdf::kdfa(parent_name_alg, seed, "INTEGRITY", &[], &[], hmac_bits)?;
    let outer_hmac = kdf::hmac(parent_name_alg, &hmac_key, &[&dup_sensitive, name])?;
    let mut private = Vec::with_capacity(2 + outer_hmac.len() + dup_sensitive.len());
    private.put_tpm2b(&outer_hmac);
    private.extend_from_slice(&dup_sensitive);
    let mut duplicate = Vec::with_capacity(private.len() + 2);
    duplicate.put_tpm2b(&private);
    Ok(duplicate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Reader;
    use aws_lc_rs::cipher::{DecryptingKey, DecryptionContext, UnboundCipherKey, AES_128};
    use aws_lc_rs::iv::FixedLength;
    use aws_lc_rs::rand::SystemRandom;

    fn ek() -> Public {
        Public::from_tpm2b(&mooring_testdata::testdata("tpm/quotes/sim-keylime/ek.pub")).unwrap()
    }

    fn pcrs() -> (PcrSelection, PcrValues) {
        let mut selection = PcrSelection::single(HashAlg::Sha256, &[0, 7]).unwrap();
        selection.add(HashAlg::Sha1, &[1]).unwrap();
        let mut values = PcrValues::new();
        values.insert(HashAlg::Sha256, 0, vec![0; 32]).unwrap();
        values.insert(HashAlg::Sha256, 7, vec![7; 32]).unwrap();
        values.insert(HashAlg::Sha1, 1, vec![1; 20]).unwrap();
        (selection, values)
    }

    #[test]
    fn public_area_is_a_policy_bound_sealed_data_object() {
        let (selection, values) = pcrs();
        let sealed = seal_to_ek(&ek(), &selection, &values, b"api-key", &SystemRandom::new()).unwrap();
        let mut r = Reader::new(sealed.public());
        let tpmt = r.tpm2b(crate::tpm::limits::MAX_PUBLIC, "TPM2B_PUBLIC").unwrap();
        r.expect_end("TPM2B_PUBLIC").unwrap();
        let mut t = Reader::new(tpmt);
        assert_eq!(t.u16_be("type").unwrap(), id::KEYEDHASH);
        assert_eq!(t.u16_be("nameAlg").unwrap(), id::SHA256);
        let attributes = ObjectAttributes::from_bits(t.u32_be("attributes").unwrap());
        assert_eq!(attributes.bits(), 0x0000_0480);
        assert!(!attributes.has(ObjectAttributes::FIXED_TPM));
        assert!(!attributes.has(ObjectAttributes::FIXED_PARENT));
        assert!(!attributes.has(ObjectAttributes::USER_WITH_AUTH));
        let expected_policy = session_policy::pcr_policy(
            SEALED_NAME_ALG,
            &session_policy::canonical_selection(&selection),
            &values,
        )
        .unwrap();
        assert_eq!(t.tpm2b(64, "authPolicy").unwrap(), expected_policy.digest());
        assert_eq!(sealed.policy_digest(), expected_policy.digest());
        assert_eq!(t.u16_be("scheme").unwrap(), id::NULL);
        assert_eq!(t.tpm2b(64, "unique").unwrap().len(), 32);
        t.expect_end("TPMT_PUBLIC").unwrap();

        let mut name = vec![0x00, 0x0b];
        name.extend(HashAlg::Sha256.digest(&[tpmt]));
        assert_eq!(sealed.name(), name);
        // The selection was reordered to sha1 before sha256.
        assert_eq!(sealed.tpm2_tools_pcr_list(), "sha1:1+sha256:0,7");
        assert_eq!(
            sealed.pcr_selection_map(),
            BTreeMap::from([("sha1".to_owned(), vec![1]), ("sha256".to_owned(), vec![0, 7])])
        );
        // RSA-2048 EK: the seed is one OAEP block.
        assert_eq!(sealed.encrypted_seed().len(), 2 + 256);
        let files = sealed.tpm2_tools_files();
        assert_eq!(files.map(|f| f.option), ["-u", "-i", "-s"]);
        assert_eq!(files[1].contents, sealed.duplicate());
    }

    /// Undoes the outer wrapper as the TPM does (check the HMAC, then decrypt) and finds the
    /// secret and the obfuscation value that the public area's `unique` commits to.
    #[test]
    fn outer_wrapper_opens_with_the_seed_and_binds_the_name() {
        let seed = [0x5a; 32];
        let object = SealedObject::new(&[3; 32], &[9; 32], b"payment-token");
        let duplicate = outer_wrap(HashAlg::Sha256, 128, &seed, &object.name, &object.sensitive).unwrap();

        let mut r = Reader::new(&duplicate);
        let private = r.tpm2b(4096, "TPM2B_PRIVATE").unwrap();
        r.expect_end("TPM2B_PRIVATE").unwrap();
        let mut p = Reader::new(private);
        let integrity = p.tpm2b(64, "outerHMAC").unwrap();
        let encrypted = p.rest();
        let hmac_key = kdf::kdfa(HashAlg::Sha256, &seed, "INTEGRITY", &[], &[], 256).unwrap();
        assert_eq!(kdf::hmac(HashAlg::Sha256, &hmac_key, &[encrypted, &object.name]).unwrap(), integrity);
        let mut other_name = object.name.clone();
        other_name[5] ^= 1;
        assert_ne!(kdf::hmac(HashAlg::Sha256, &hmac_key, &[encrypted, &other_name]).unwrap(), integrity);

        let sym_key = kdf::kdfa(HashAlg::Sha256, &seed, "STORAGE", &object.name, &[], 128).unwrap();
        let key = DecryptingKey::cfb128(UnboundCipherKey::new(&AES_128, &sym_key).unwrap()).unwrap();
        let mut plain = encrypted.to_vec();
        let plain = key.decrypt(&mut plain, DecryptionContext::Iv128(FixedLength::from([0u8; 16]))).unwrap();
        let mut s = Reader::new(plain);
        let sensitive = s.tpm2b(4096, "TPM2B_SENSITIVE").unwrap();
        s.expect_end("TPM2B_SENSITIVE").unwrap();
        let mut t = Reader::new(sensitive);
        assert_eq!(t.u16_be("sensitiveType").unwrap(), id::KEYEDHASH);
        assert_eq!(t.tpm2b(64, "authValue").unwrap(), b"");
        let obfuscation = t.tpm2b(64, "seedValue").unwrap();
        let data = t.tpm2b(MAX_SECRET, "sensitive").unwrap();
        t.expect_end("TPMT_SENSITIVE").unwrap();
        assert_eq!(data, b"payment-token");
        assert_eq!(obfuscation, [9; 32]);
        let unique = HashAlg::Sha256.digest(&[obfuscation, data]);
        assert!(object.tpmt_public.ends_with(&unique));
    }

    #[test]
    fn two_seals_of_one_secret_differ() {
        let (selection, values) = pcrs();
        let rng = SystemRandom::new();
        let a = seal_to_ek(&ek(), &selection, &values, b"same", &rng).unwrap();
        let b = seal_to_ek(&ek(), &selection, &values, b"same", &rng).unwrap();
        // Fresh obfuscation value: the public areas (and Names) differ, not just the seeds.
        assert_ne!(a.public(), b.public());
        assert_ne!(a.duplicate(), b.duplicate());
        assert_ne!(a.encrypted_seed(), b.encrypted_seed());
        assert_eq!(a.policy_digest(), b.policy_digest());
    }

    #[test]
    fn refusals_name_the_problem() {
        let (selection, values) = pcrs();
        let rng = SystemRandom::new();
        assert_eq!(
            seal_to_ek(&ek(), &selection, &values, &[0; 129], &rng),
            Err(DuplicateError::SecretTooLarge { len: 129, max: 128 })
        );
        seal_to_ek(&ek(), &selection, &values, &[0; 128], &rng).unwrap();
        assert_eq!(seal_to_ek(&ek(), &selection, &values, b"", &rng), Err(DuplicateError::EmptySecret));
        assert_eq!(
            seal_to_ek(&ek(), &PcrSelection::new(), &values, b"x", &rng),
            Err(DuplicateError::EmptySelection)
        );
        let more = PcrSelection::single(HashAlg::Sha256, &[0, 7, 9]).unwrap();
        assert_eq!(
            seal_to_ek(&ek(), &more, &values, b"x", &rng),
            Err(DuplicateError::PcrValueMissing { bank: HashAlg::Sha256, index: 9 })
        );
        let ak = Public::from_tpm2b(&mooring_testdata::testdata("tpm/quotes/sim-keylime/ak.pub")).unwrap();
        assert!(matches!(
            seal_to_ek(&ak, &selection, &values, b"x", &rng),
            Err(DuplicateError::NotAStorageKey { missing }) if missing == ["decrypt"]
        ));
        // TPMT_PUBLIC of the EK: symmetric {algorithm, keyBits, mode} at 42..48.
        let mut tpmt = mooring_testdata::testdata("tpm/quotes/sim-keylime/ek.pub")[2..].to_vec();
        assert_eq!(tpmt[44..46], [0x00, 0x80]);
        tpmt[44..46].copy_from_slice(&192u16.to_be_bytes());
        let aes192 = Public::from_tpmt(&tpmt).unwrap();
        let mut cbc = mooring_testdata::testdata("tpm/quotes/sim-keylime/ek.pub")[2..].to_vec();
        cbc[47] = 0x42;
        assert_eq!(
            seal_to_ek(&Public::from_tpmt(&cbc).unwrap(), &selection, &values, b"x", &rng),
            Err(DuplicateError::UnsupportedSymmetric { alg: id::AES, key_bits: 128, mode: id::CBC })
        );
        assert_eq!(
            seal_to_ek(&aes192, &selection, &values, b"x", &rng),
            Err(DuplicateError::UnsupportedSymmetric { alg: id::AES, key_bits: 192, mode: id::CFB })
        );
    }
}
