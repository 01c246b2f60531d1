//! The endorsement key: recreated from its standard template (TCG EK Credential Profile 2.0,
//! annex B: L-1 RSA-2048, L-2 ECC P-256, H-3 ECC P-384), and its certificate read from NV.

use tss_esapi::abstraction::ek::{create_ek_object_2, retrieve_ek_pubcert};
use tss_esapi::abstraction::AsymmetricAlgorithmSelection;
use tss_esapi::handles::KeyHandle;
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::structures::PublicBuffer;
use tss_esapi::traits::Marshall as _;
use tss_esapi::Context;

use super::nv::{self, NvReader};
use super::{handle_present, tss, TpmError};
use crate::config::EkKind;
use crate::der;

/// The recreated EK: its transient handle (flush it) and its `TPM2B_PUBLIC`.
#[derive(Debug)]
pub struct Ek {
    /// Transient handle.
    pub handle: KeyHandle,
    /// `TPM2B_PUBLIC` as the broker expects it.
    pub public: Vec<u8>,
}

/// Largest EK certificate read from a non-standard NV index.
const MAX_EK_CERTIFICATE_LEN: usize = 8 * 1024;

const fn selection(kind: EkKind) -> AsymmetricAlgorithmSelection {
    match kind {
        EkKind::Rsa2048 => AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
        EkKind::EccP256 => AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256),
        EkKind::EccP384 => AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP384),
    }
}

/// Recreates the EK in the endorsement hierarchy from its standard template (same seed,
/// same template: the same key the certificate was issued for).
///
/// # Errors
/// When the TPM refuses.
pub fn recreate(context: &mut Context, kind: EkKind) -> Result<Ek, TpmError> {
    let handle = create_ek_object_2(context, selection(kind), None).map_err(tss("creating the EK"))?;
    let public = (|| {
        let (public, _, _) = context.read_public(handle).map_err(tss("reading the EK public area"))?;
        PublicBuffer::try_from(public)
            .and_then(|buffer| buffer.marshall())
            .map_err(tss("marshalling the EK public area"))
    })();
    match public {
        Ok(public) => Ok(Ek { handle, public }),
        Err(e) => {
            let _ = context.flush_context(handle.into());
            Err(e)
        }
    }
}

/// Reads the EK certificate (DER) from NV: the configured index, or the standard one for
/// this EK kind. `Ok(None)` when the index is not defined (then the broker must know the EK
/// by enrollment). Zero padding after the certificate, which some TPMs leave in NV, is cut.
///
/// # Errors
/// When the index exists but cannot be read, or does not hold a DER value.
pub fn read_certificate(
    context: &mut Context,
    kind: EkKind,
    index: Option<u32>,
) -> Result<Option<Vec<u8>>, TpmError> {
    let index = index.unwrap_or(kind.certificate_index());
    let raw = if index == kind.certificate_index() {
        if !handle_present(context, index)? {
            return Ok(None);
        }
        retrieve_ek_pubcert(context, selection(kind)).map_err(tss("reading the EK certificate from NV"))?
    } else {
        match nv::read(context, index, NvReader::Index, MAX_EK_CERTIFICATE_LEN)? {
            Some(raw) => raw,
            None => return Ok(None),
        }
    };
    Ok(Some(trim_der(&raw)?.to_vec()))
}

/// The DER certificate at the start of an NV index's contents, without trailing padding.
fn trim_der(raw: &[u8]) -> Result<&[u8], TpmError> {
    let malformed = |reason: String| TpmError::Malformed { what: "EK certificate in NV", reason };
    if raw.first() != Some(&der::SEQUENCE) {
        return Err(malformed("does not start with a DER SEQUENCE".into()));
    }
    let len = der::value_len(raw).map_err(malformed)?;
    if raw.get(len..).is_some_and(|rest| rest.iter().any(|b| *b != 0 && *b != 0xff)) {
        return Err(malformed("data other than padding follows the certificate".into()));
    }
    raw.get(..len).ok_or_else(|| malformed("truncated".into()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn padding_is_trimmed() {
        let mut raw = der::tlv(der::SEQUENCE, &[1; 40]);
        raw.extend([0xff; 16]);
        assert_eq!(trim_der(&raw).unwrap().len(), 42);
    }

    #[test]
    fn non_der_or_trailing_data_is_refused() {
        assert!(trim_der(&[0x04, 1, 0]).is_err());
        let mut raw = der::tlv(der::SEQUENCE, &[1; 40]);
        raw.extend([0, 7]);
        assert!(trim_der(&raw).unwrap_err().to_string().contains("other than padding"));
        let raw = der::tlv(der::SEQUENCE, &[1; 40]);
        assert!(trim_der(raw.get(..20).unwrap()).is_err());
    }
}
