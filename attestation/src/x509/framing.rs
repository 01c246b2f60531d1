//! DER framing of a whole certificate (X.690 §8.1): the outer SEQUENCE length,
//! strict "exactly one certificate" input, and the TPM NV padding rule.

use super::cert::CertificateError;
use super::MAX_CERTIFICATE_LEN;
use crate::codec::{BadPadding, Reader};
use crate::der::{self, tag, DerError, Header};

/// Fill of a TPM NV index after the EK certificate in it.
const NV_PADDING: u8 = 0xFF;

/// Total length (header and content) of the DER SEQUENCE starting `bytes`.
pub(super) fn outer_len(bytes: &[u8]) -> Result<usize, CertificateError> {
    let malformed = |reason: &'static str| CertificateError::Framing { reason };
    let header = Header::read(bytes).map_err(|e| {
        malformed(match e {
            DerError::Empty => "input is empty",
            DerError::MissingLength => "length is missing",
            DerError::Indefinite => "indefinite length is not DER",
            DerError::LengthTooLong { .. } => "length field longer than 3 bytes",
            DerError::TruncatedLength => "length is truncated",
            DerError::NotMinimal => "length is not minimally encoded",
            _ => "does not start with a DER SEQUENCE (0x30)",
        })
    })?;
    if header.tag() != tag::SEQUENCE {
        return Err(malformed("does not start with a DER SEQUENCE (0x30)"));
    }
    let total = header.total_len();
    if total > MAX_CERTIFICATE_LEN {
        return Err(CertificateError::TooLarge { size: total, max: MAX_CERTIFICATE_LEN });
    }
    if total > bytes.len() {
        return Err(malformed("truncated: the SEQUENCE is longer than the input"));
    }
    Ok(total)
}

/// The input, which must be exactly one DER SEQUENCE.
pub(super) fn exact(bytes: &[u8]) -> Result<&[u8], CertificateError> {
    let len = outer_len(bytes)?;
    let extra = bytes.len() - len;
    if extra != 0 {
        return Err(CertificateError::TrailingData { extra });
    }
    Ok(bytes)
}

/// The certificate at the start of a TPM NV read: the outer SEQUENCE, after which
/// only the index's `0xFF` fill may follow ([`Reader::expect_padding`]). Any other
/// trailing byte is an error.
pub(super) fn trim_nv_padding(bytes: &[u8]) -> Result<&[u8], CertificateError> {
    let len = outer_len(bytes)?;
    let mut r = Reader::new(bytes);
    let cert = r.take(len, "certificate").map_err(|_| CertificateError::Framing { reason: "truncated" })?;
    r.expect_padding(NV_PADDING)
        .map_err(|BadPadding { offset, value }| CertificateError::BadPadding { offset, value })?;
    Ok(cert)
}

/// The encoded `signatureAlgorithm` after the tbsCertificate and the encoded
/// `tbsCertificate.signature`, exactly as received (RFC 5280 §4.1.1.2 requires them
/// to be the same; comparing encodings also refuses BER variants of either), after
/// checking that the parts outside the signed TBS are DER: `signatureAlgorithm` is a
/// SEQUENCE and `signatureValue` a primitive BIT STRING ending the certificate. The
/// parser used is lenient about tags there, and those bytes are not signed.
pub(super) fn signature_algorithms<'a>(cert: &'a [u8], tbs: &'a [u8]) -> Option<(&'a [u8], &'a [u8])> {
    const VERSION_TAG: u8 = 0xa0;
    let split = |bytes| der::split_tlv(bytes).ok();
    // Outer: SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }.
    let outer = split(cert)?.0.content();
    let after_tbs = outer.strip_prefix(tbs)?;
    let (outer_alg, after_alg) = split(after_tbs)?;
    let (value, after_value) = split(after_alg)?;
    if outer_alg.tag() != tag::SEQUENCE || value.tag() != tag::BIT_STRING || !after_value.is_empty() {
        return None;
    }
    // TBS: SEQUENCE { [0] version OPTIONAL, serialNumber, signature, ... }.
    let (first, mut rest) = split(split(tbs)?.0.content())?;
    if first.tag() == VERSION_TAG {
        rest = split(rest)?.1;
    }
    let tbs_alg = split(rest)?.0;
    if tbs_alg.tag() != tag::SEQUENCE {
        return None;
    }
    Some((outer_alg.encoded(), tbs_alg.encoded()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths() {
        assert_eq!(outer_len(&[0x30, 0x00]), Ok(2));
        let mut long = vec![0x30, 0x82, 0x01, 0x00];
        long.resize(4 + 256, 0);
        assert_eq!(outer_len(&long), Ok(260));
        assert!(matches!(outer_len(&[0x30, 0x81, 0x10]), Err(CertificateError::Framing { .. })));
        assert!(matches!(outer_len(&[0x30, 0x80]), Err(CertificateError::Framing { .. })));
        assert!(matches!(
            outer_len(&[0x30, 0x81, 0x05, 1, 2, 3, 4, 5]),
            Err(CertificateError::Framing { .. })
        ));
        assert!(matches!(outer_len(&[0x31, 0x00]), Err(CertificateError::Framing { .. })));
    }

    /// The parser accepts a primitive "SEQUENCE" or a re-tagged BIT STRING outside the
    /// signed TBS; the encodings are compared, so such a certificate cannot verify.
    #[test]
    fn unsigned_parts_are_checked_as_der() {
        use crate::x509::{Certificate, SignatureError};
        let der = mooring_testdata::testdata("snp/genoa/oak-containers/vcek.der");
        let (alg, value) = (763, 830);
        assert_eq!((der[alg], der[value]), (0x30, 0x03));
        assert!(Certificate::from_der(&der).unwrap().signature_scheme().is_ok());
        for (at, tag) in [(alg, 0x10), (value, 0x43), (value, 0x23)] {
            let mut bad = der.clone();
            bad[at] = tag;
            if let Ok(cert) = Certificate::from_der(&bad) {
                assert_eq!(
                    cert.signature_scheme(),
                    Err(SignatureError::AlgorithmMismatch),
                    "tag {tag:#x} at {at}"
                );
            }
        }
    }

    #[test]
    fn padding() {
        assert_eq!(trim_nv_padding(&[0x30, 0x01, 0x05, 0xff, 0xff]), Ok(&[0x30, 0x01, 0x05][..]));
        assert_eq!(
            trim_nv_padding(&[0x30, 0x01, 0x05, 0xff, 0xfe]),
            Err(CertificateError::BadPadding { offset: 4, value: 0xfe })
        );
        assert_eq!(exact(&[0x30, 0x01, 0x05, 0xff]), Err(CertificateError::TrailingData { extra: 1 }));
    }
}
