//! The little DER (ITU-T X.690) the client writes: the TSS2 key file and ECDSA signatures,
//! plus the length of a DER value read from NV (EK certificates may be zero-padded there).

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
}
