//! DER framing of a whole certificate (X.690 §8.1): the outer SEQUENCE length,
//! strict "exactly one certificate" input, and the TPM NV padding rule.

use super::cert::CertificateError;
use super::MAX_CERTIFICATE_LEN;
use crate::codec::Reader;

/// Tag of a constructed SEQUENCE.
const SEQUENCE: u8 = 0x30;
/// Fill byte of unwritten TPM NV memory after an EK certificate.
const NV_PADDING: u8 = 0xFF;

/// Total length (header and content) of the DER SEQUENCE starting `bytes`.
pub(super) fn outer_len(bytes: &[u8]) -> Result<usize, CertificateError> {
    let malformed = |reason: &'static str| CertificateError::Framing { reason };
    let mut r = Reader::new(bytes);
    let tag = r.u8("certificate tag").map_err(|_| malformed("input is empty"))?;
    if tag != SEQUENCE {
        return Err(malformed("does not start with a DER SEQUENCE (0x30)"));
    }
    let first = r.u8("certificate length").map_err(|_| malformed("length is missing"))?;
    let content = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 {
            return Err(malformed("indefinite length is not DER"));
        }
        if count > 3 {
            return Err(malformed("length field longer than 3 bytes"));
        }
        let len_bytes = r.take(count, "certificate length").map_err(|_| malformed("length is truncated"))?;
        if len_bytes.first() == Some(&0) || (count == 1 && len_bytes.first().is_some_and(|b| *b < 0x80)) {
            return Err(malformed("length is not minimally encoded"));
        }
        len_bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    let total = r.position().saturating_add(content);
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
/// only `0xFF` fill may follow (TPM NV indices are read whole; unwritten bytes
/// read as `0xFF`). Any other trailing byte is an error.
pub(super) fn trim_nv_padding(bytes: &[u8]) -> Result<&[u8], CertificateError> {
    let len = outer_len(bytes)?;
    let (cert, rest) = bytes.split_at(len);
    if let Some(pos) = rest.iter().position(|b| *b != NV_PADDING) {
        let value = rest.get(pos).copied().unwrap_or_default();
        return Err(CertificateError::BadPadding { offset: len + pos, value });
    }
    Ok(cert)
}

/// The DER TLV at the start of `bytes`: (tag, the whole TLV, the bytes after it).
/// Definite, minimally encoded lengths of at most 3 bytes; `None` otherwise.
fn split_tlv(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let mut r = Reader::new(bytes);
    let tag = r.u8("tag").ok()?;
    let first = r.u8("length").ok()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        let len_bytes = r.take(count, "length").ok()?;
        let minimal = (1..=3).contains(&count)
            && len_bytes.first().is_some_and(|b| *b != 0)
            && !(count == 1 && len_bytes.first().is_some_and(|b| *b < 0x80));
        if !minimal {
            return None;
        }
        len_bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    let header = r.position();
    r.take(len, "content").ok()?;
    let (tlv, rest) = bytes.split_at(header + len);
    Some((tag, tlv, rest))
}

/// The content of the DER TLV at the start of `bytes`.
fn content(bytes: &[u8]) -> Option<&[u8]> {
    let (_, tlv, _) = split_tlv(bytes)?;
    let mut r = Reader::new(tlv);
    r.u8("tag").ok()?;
    let first = r.u8("length").ok()?;
    if first >= 0x80 {
        r.take(usize::from(first & 0x7f), "length").ok()?;
    }
    Some(r.rest())
}

/// The encoded `signatureAlgorithm` after the tbsCertificate and the encoded
/// `tbsCertificate.signature`, exactly as received (RFC 5280 §4.1.1.2 requires them
/// to be the same; comparing encodings also refuses BER variants of either), after
/// checking that the parts outside the signed TBS are DER: `signatureAlgorithm` is a
/// SEQUENCE and `signatureValue` a primitive BIT STRING ending the certificate. The
/// parser used is lenient about tags there, and those bytes are not signed.
pub(super) fn signature_algorithms<'a>(cert: &'a [u8], tbs: &'a [u8]) -> Option<(&'a [u8], &'a [u8])> {
    const SEQUENCE_TAG: u8 = 0x30;
    const VERSION_TAG: u8 = 0xa0;
    const BIT_STRING_TAG: u8 = 0x03;
    // Outer: SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }.
    let outer = content(cert)?;
    let after_tbs = outer.strip_prefix(tbs)?;
    let (tag, outer_alg, after_alg) = split_tlv(after_tbs)?;
    if tag != SEQUENCE_TAG {
        return None;
    }
    let (tag, _, after_value) = split_tlv(after_alg)?;
    if tag != BIT_STRING_TAG || !after_value.is_empty() {
        return None;
    }
    // TBS: SEQUENCE { [0] version OPTIONAL, serialNumber, signature, ... }.
    let fields = content(tbs)?;
    let (tag, _, mut rest) = split_tlv(fields)?;
    if tag == VERSION_TAG {
        let (_, _, after_serial) = split_tlv(rest)?;
        rest = after_serial;
    }
    let (tag, tbs_alg, _) = split_tlv(rest)?;
    if tag != SEQUENCE_TAG {
        return None;
    }
    Some((outer_alg, tbs_alg))
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
        assert_eq!(split_tlv(&[0x02, 0x81, 0x01, 0x00]), None, "non-minimal length");
        assert_eq!(split_tlv(&[0x02, 0x02, 0x00]), None, "truncated");
        assert_eq!(split_tlv(&[0x02, 0x01, 0x05, 0x09]), Some((0x02, &[0x02, 0x01, 0x05][..], &[0x09][..])));
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
