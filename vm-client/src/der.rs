//! The little DER (ITU-T X.690) the client writes: the TSS2 key file and ECDSA signatures,
//! plus the length of a DER value read from NV (EK certificates may be zero-padded there).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// ASN.1 universal tags used here.
pub(crate) const BOOLEAN: u8 = 0x01;
pub(crate) const INTEGER: u8 = 0x02;
pub(crate) const OCTET_STRING: u8 = 0x04;
pub(crate) const OBJECT_IDENTIFIER: u8 = 0x06;
pub(crate) const SEQUENCE: u8 = 0x30;

/// A DER tag-length-value.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.extend(u8::try_from(len));
    } else {
        let bytes = len.to_be_bytes();
        let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        let significant = bytes.get(first..).unwrap_or_default();
        out.extend(u8::try_from(0x80 | significant.len()));
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
    out
}

/// A non-negative INTEGER from big-endian magnitude bytes (minimal encoding).
pub(crate) fn unsigned_integer(magnitude: &[u8]) -> Vec<u8> {
    let first = magnitude.iter().position(|b| *b != 0).unwrap_or(magnitude.len());
    let trimmed = magnitude.get(first..).unwrap_or_default();
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    tlv(INTEGER, &content)
}

/// A context-specific constructed (EXPLICIT) tag `[n]`.
pub(crate) fn explicit(n: u8, content: &[u8]) -> Vec<u8> {
    tlv(0xa0 | (n & 0x1f), content)
}

/// ECDSA-Sig-Value (RFC 3279, 2.2.3): `SEQUENCE { r INTEGER, s INTEGER }`.
pub(crate) fn ecdsa_signature(r: &[u8], s: &[u8]) -> Vec<u8> {
    let mut content = unsigned_integer(r);
    content.extend(unsigned_integer(s));
    tlv(SEQUENCE, &content)
}

/// PEM armor (RFC 7468) with 64-character lines.
pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    let encoded = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    let mut rest = encoded.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(64));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The DER inside the first PEM block with `label`.
pub(crate) fn pem_decode(label: &str, text: &[u8]) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(text).map_err(|_| "PEM is not UTF-8".to_owned())?;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin).ok_or_else(|| format!("no {begin} line"))?;
    let body = text.get(start + begin.len()..).unwrap_or_default();
    let stop = body.find(&end).ok_or_else(|| format!("no {end} line"))?;
    let base64: String = body.get(..stop).unwrap_or_default().split_whitespace().collect();
    STANDARD.decode(base64).map_err(|e| format!("PEM body: {e}"))
}

/// The total length (header and content) of the DER value at the start of `bytes`, checked
/// against `bytes`. Only definite lengths of up to four bytes are accepted.
pub(crate) fn value_len(bytes: &[u8]) -> Result<usize, String> {
    let (&first, rest) = bytes.split_first().ok_or("empty")?;
    if first & 0x1f == 0x1f {
        return Err("multi-byte tags are not supported".into());
    }
    let (&len0, rest) = rest.split_first().ok_or("no length")?;
    let (content_len, header_len) = if len0 < 0x80 {
        (usize::from(len0), 2)
    } else {
        let count = usize::from(len0 & 0x7f);
        if count == 0 || count > 4 {
            return Err(format!("length of {count} bytes is not supported"));
        }
        let len_bytes = rest.get(..count).ok_or("truncated length")?;
        let len = len_bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, 2 + count)
    };
    let total = header_len.checked_add(content_len).ok_or("length overflows")?;
    if total > bytes.len() {
        return Err(format!("value of {total} bytes, only {} present", bytes.len()));
    }
    Ok(total)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lengths_short_and_long() {
        assert_eq!(tlv(OCTET_STRING, &[1, 2]), [4, 2, 1, 2]);
        let long = tlv(OCTET_STRING, &[0; 300]);
        assert_eq!(long.get(..4).unwrap(), [4, 0x82, 0x01, 0x2c]);
        assert_eq!(value_len(&long).unwrap(), 304);
    }

    #[test]
    fn integers_are_minimal_and_non_negative() {
        assert_eq!(unsigned_integer(&[0, 0, 0x7f]), [2, 1, 0x7f]);
        assert_eq!(unsigned_integer(&[0x80]), [2, 2, 0, 0x80]);
        assert_eq!(unsigned_integer(&[0x40, 0, 0, 1]), [2, 4, 0x40, 0, 0, 1]);
        assert_eq!(unsigned_integer(&[]), [2, 1, 0]);
    }

    #[test]
    fn padding_after_a_value_is_excluded() {
        let mut padded = tlv(SEQUENCE, &[1; 10]);
        padded.extend([0; 20]);
        assert_eq!(value_len(&padded).unwrap(), 12);
    }

    #[test]
    fn truncated_or_unsupported_values_are_refused() {
        let value = tlv(SEQUENCE, &[1; 200]);
        assert!(value_len(value.get(..100).unwrap()).unwrap_err().contains("only 100"));
        assert!(value_len(&[0x30]).is_err());
        assert!(value_len(&[]).is_err());
        assert!(value_len(&[0x30, 0x85, 1, 1, 1, 1, 1]).unwrap_err().contains("not supported"));
        assert!(value_len(&[0x30, 0x80]).unwrap_err().contains("not supported"));
        assert!(value_len(&[0x1f, 0x01]).is_err());
    }

    #[test]
    fn pem_round_trip_and_malformed_pem() {
        let text = pem("X", &[7; 80]);
        assert_eq!(pem_decode("X", text.as_bytes()).unwrap(), [7; 80]);
        assert!(pem_decode("Y", text.as_bytes()).is_err());
        assert!(pem_decode("X", b"-----BEGIN X-----\n!!\n-----END X-----\n").is_err());
        assert!(pem_decode("X", b"-----BEGIN X-----\nAAAA\n").is_err());
    }

    #[test]
    fn pem_lines_are_64_characters() {
        let text = pem("TEST", &[0xab; 100]);
        let body: Vec<&str> = text.lines().skip(1).take_while(|l| !l.starts_with("-----")).collect();
        assert_eq!(body.first().unwrap().len(), 64);
        assert!(text.ends_with("-----END TEST-----\n"));
    }
}
