//! Answering the broker's TPM challenge: ActivateCredential (the AK shares a TPM with the
//! EK), a Quote of the requested PCRs with the nonce- and K-bound qualifying data, the PCR
//! values, and TPM2_Certify of K by the AK (K lives in that TPM too). The Azure path answers
//! its challenge with the same [`answer`].

use std::collections::BTreeMap;
use std::path::Path;

use mooring_attestation::protocol::{tpm_qualifying_data, TpmChallenge};
use tss_esapi::abstraction::pcr;
use tss_esapi::handles::KeyHandle;
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{Data, EncryptedSecret, IdObject, PcrSelectionList, PcrSlot, SignatureScheme};
use tss_esapi::traits::Marshall as _;
use tss_esapi::Context;

use super::key::{self, KeyBlobs};
use super::{flushing, tpm2b_contents, tss, with_ek_session, TpmError};

/// Bank names the broker uses, and their algorithms.
const BANKS: [(&str, HashingAlgorithm); 4] = [
    ("sha1", HashingAlgorithm::Sha1),
    ("sha256", HashingAlgorithm::Sha256),
    ("sha384", HashingAlgorithm::Sha384),
    ("sha512", HashingAlgorithm::Sha512),
];
/// PCR indices a PC Client TPM has (TPM 2.0 Part 2: IMPLEMENTATION_PCR = 24).
const PCR_COUNT: u8 = 24;

/// A quote and the PCR values it covers.
#[derive(Debug, Clone)]
pub struct Quote {
    /// `TPMS_ATTEST`.
    pub attest: Vec<u8>,
    /// `TPMT_SIGNATURE`.
    pub signature: Vec<u8>,
    /// Bank name to index to hex value.
    pub pcrs: BTreeMap<String, BTreeMap<String, String>>,
}

/// ActivateCredential with the AK (password session) and the EK (policy session):
/// returns the secret the broker put into the credential blob.
///
/// # Errors
/// When the blobs are malformed or the TPM refuses (AK and EK not in one TPM).
pub fn activate(
    context: &mut Context,
    ak: KeyHandle,
    ek: KeyHandle,
    challenge: &TpmChallenge,
) -> Result<Vec<u8>, TpmError> {
    let blob = IdObject::try_from(
        tpm2b_contents("credential blob (TPM2B_ID_OBJECT)", &challenge.credential_blob)?.to_vec(),
    )
    .map_err(tss("credential blob"))?;
    let secret = EncryptedSecret::try_from(
        tpm2b_contents("encrypted secret (TPM2B_ENCRYPTED_SECRET)", &challenge.encrypted_secret)?.to_vec(),
    )
    .map_err(tss("encrypted secret"))?;
    let digest = with_ek_session(
        context,
        ek,
        true,
        |ctx| ctx.activate_credential(ak, ek, blob, secret),
        "ActivateCredential",
    )?;
    Ok(digest.value().to_vec())
}

/// The PCR selection the broker asked for.
///
/// # Errors
/// For an unknown bank, an index past the TPM's PCRs, or an empty selection.
pub fn selection(requested: &BTreeMap<String, Vec<u8>>) -> Result<PcrSelectionList, TpmError> {
    if requested.values().all(Vec::is_empty) {
        return Err(TpmError::Unsupported("the broker asked for a quote over no PCRs".into()));
    }
    let mut builder = PcrSelectionList::builder();
    for (bank, indices) in requested {
        let hash = bank_algorithm(bank)?;
        let slots = indices
            .iter()
            .map(|&index| {
                if index >= PCR_COUNT {
                    return Err(TpmError::Unsupported(format!("PCR {bank}:{index} does not exist (0-23)")));
                }
                PcrSlot::try_from(1u32 << index).map_err(tss("PCR slot"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        builder = builder.with_selection(hash, &slots);
    }
    builder.build().map_err(tss("building the PCR selection"))
}

fn bank_algorithm(bank: &str) -> Result<HashingAlgorithm, TpmError> {
    BANKS
        .iter()
        .find(|(name, _)| *name == bank)
        .map(|(_, hash)| *hash)
        .ok_or_else(|| TpmError::Unsupported(format!("PCR bank {bank:?} is not supported")))
}

fn bank_name(hash: HashingAlgorithm) -> Result<&'static str, TpmError> {
    BANKS
        .iter()
        .find(|(_, h)| *h == hash)
        .map(|(name, _)| *name)
        .ok_or_else(|| TpmError::Unsupported(format!("PCR bank {hash:?} is not supported")))
}

/// TPM2_Quote by the AK over `requested` (bank name to indices) with qualifying data
/// [`tpm_qualifying_data`]`(nonce, K's TPM2B_PUBLIC)`, then the PCR values.
///
/// # Errors
/// When the selection is invalid or the TPM refuses.
pub fn quote(
    context: &mut Context,
    ak: KeyHandle,
    nonce: &[u8],
    requested: &BTreeMap<String, Vec<u8>>,
    key_public: &[u8],
) -> Result<Quote, TpmError> {
    let selection = selection(requested)?;
    let qualifying =
        Data::try_from(tpm_qualifying_data(nonce, key_public)).map_err(tss("qualifying data"))?;
    let (attest, signature) = context
        .execute_with_session(Some(AuthSession::Password), |ctx| {
            ctx.quote(ak, qualifying, SignatureScheme::Null, selection.clone())
        })
        .map_err(tss("TPM2_Quote"))?;
    let values = context
        .execute_without_session(|ctx| pcr::read_all(ctx, selection))
        .map_err(tss("reading the quoted PCRs"))?;
    let mut pcrs = BTreeMap::new();
    for (hash, bank) in values {
        let entries: &mut BTreeMap<String, String> = pcrs.entry(bank_name(hash)?.to_owned()).or_default();
        for (slot, digest) in &bank {
            let index = u32::from(*slot).trailing_zeros();
            entries.insert(index.to_string(), hex::encode(digest.value()));
        }
    }
    Ok(Quote {
        attest: attest.marshall().map_err(tss("marshalling the quote"))?,
        signature: signature.marshall().map_err(tss("marshalling the quote signature"))?,
        pcrs,
    })
}

/// What a challenge asks of the TPM once the AK is trusted (after ActivateCredential on the
/// TPM path, through the HCL report on Azure): the quote, K certified by the AK, and the
/// measured-boot event log.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The quote and its PCR values.
    pub quote: Quote,
    /// `TPMS_ATTEST` of TPM2_Certify(K) by the AK.
    pub certify: Vec<u8>,
    /// `TPMT_SIGNATURE` over `certify`.
    pub certify_signature: Vec<u8>,
    /// The event log, when the file exists.
    pub event_log: Option<Vec<u8>>,
}

/// [`quote`] with `nonce` over `requested` bound to K, [`certify`] of K (loaded for it and
/// flushed again), and the event log from `event_log` when it exists.
///
/// # Errors
/// When the TPM refuses, K does not load, or the event log cannot be read.
pub fn answer(
    context: &mut Context,
    ak: KeyHandle,
    key: &KeyBlobs,
    nonce: &[u8],
    requested: &BTreeMap<String, Vec<u8>>,
    event_log: &Path,
) -> Result<Answer, TpmError> {
    let quote = quote(context, ak, nonce, requested, &key.public)?;
    let k = key::load(context, key)?;
    let (certify, certify_signature) = flushing(context, k, |ctx| certify(ctx, k, ak))?;
    let event_log =
        read_event_log(event_log).map_err(|source| TpmError::Io { path: event_log.to_owned(), source })?;
    Ok(Answer { quote, certify, certify_signature, event_log })
}

/// Largest event log read: firmware logs are tens of KiB (securityfs gives no size ahead).
const MAX_EVENT_LOG_BYTES: usize = 4 * 1024 * 1024;

/// The measured-boot event log, when the VM has one, read no further than
/// [`MAX_EVENT_LOG_BYTES`].
fn read_event_log(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let bytes = crate::bounded::read_at_most(file, MAX_EVENT_LOG_BYTES)?.ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("event log larger than {MAX_EVENT_LOG_BYTES} bytes"),
        )
    })?;
    Ok(Some(bytes))
}

/// TPM2_Certify of K by the AK (both authorised by empty-password sessions):
/// (`TPMS_ATTEST`, `TPMT_SIGNATURE`).
///
/// # Errors
/// When the TPM refuses.
pub fn certify(context: &mut Context, key: KeyHandle, ak: KeyHandle) -> Result<(Vec<u8>, Vec<u8>), TpmError> {
    let (attest, signature) = context
        .execute_with_sessions((Some(AuthSession::Password), Some(AuthSession::Password), None), |ctx| {
            ctx.certify(key.into(), ak, Data::default(), SignatureScheme::Null)
        })
        .map_err(tss("TPM2_Certify of K"))?;
    Ok((
        attest.marshall().map_err(tss("marshalling the certification"))?,
        signature.marshall().map_err(tss("marshalling the certification signature"))?,
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_selection_builds() {
        let requested = BTreeMap::from([("sha256".to_owned(), vec![0, 1, 7, 23])]);
        let list = selection(&requested).unwrap();
        assert_eq!(list.len(), 1);
    }

    #[test]
    fn unknown_banks_out_of_range_pcrs_and_empty_selections_are_refused() {
        let err = selection(&BTreeMap::from([("md5".to_owned(), vec![0])])).unwrap_err();
        assert!(err.to_string().contains("md5"), "{err}");
        let err = selection(&BTreeMap::from([("sha256".to_owned(), vec![24])])).unwrap_err();
        assert!(err.to_string().contains("sha256:24"), "{err}");
        let err = selection(&BTreeMap::from([("sha256".to_owned(), vec![])])).unwrap_err();
        assert!(err.to_string().contains("no PCRs"), "{err}");
        assert!(selection(&BTreeMap::new()).is_err());
    }

    #[test]
    fn the_event_log_is_read_within_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(super::read_event_log(&dir.path().join("none")).unwrap(), None);
        let log = dir.path().join("log");
        std::fs::write(&log, b"events").unwrap();
        assert_eq!(super::read_event_log(&log).unwrap().unwrap(), b"events");
        // A file that never ends is read only up to the bound.
        let err = super::read_event_log(std::path::Path::new("/dev/zero")).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    }
}
