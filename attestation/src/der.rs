//! The DER (ITU-T X.690) read and written outside `x509-parser`: the one reader of
//! tag-length-value headers (certificate framing, AMD's certificate extensions, the client's
//! EK certificate read from NV) and the few encodings this workspace writes (keys handed to
//! aws-lc-rs, ECDSA signatures, the client's TSS2 key file, the test signer's certificates).
//!
//! Read lengths must be definite, minimally encoded (X.690 §10.1) and at most
//! [`MAX_LENGTH_OCTETS`] long; tags must fit one byte (tag numbers up to 30).

use thiserror::Error;

use crate::codec::Reader;

/// Universal tags (X.690 §8.1.2; ASN.1 X.680 §8.4) used in this workspace.
pub mod tag {
    /// BOOLEAN.
    pub const BOOLEAN: u8 = 0x01;
    /// INTEGER.
    pub const INTEGER: u8 = 0x02;
    /// BIT STRING (primitive).
    pub const BIT_STRING: u8 = 0x03;
    /// OCTET STRING (primitive).
    pub const OCTET_STRING: u8 = 0x04;
    /// OBJECT IDENTIFIER.
    pub const OBJECT_IDENTIFIER: u8 = 0x06;
    /// IA5String.
    pub const IA5_STRING: u8 = 0x16;
    /// SEQUENCE (constructed).
    pub const SEQUENCE: u8 = 0x30;
}

/// Most length octets read: three give 16 MiB, more than any certificate or key here.
pub const MAX_LENGTH_OCTETS: usize = 3;

/// Why bytes do not start with a DER tag-length-value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DerError {
    /// There is no byte at all.
    #[error("empty input")]
    Empty,
    /// The tag number does not fit in the first byte.
    #[error("multi-byte tags are not supported")]
    MultiByteTag,
    /// The input ends after the tag.
    #[error("no length after the tag")]
    MissingLength,
    /// The indefinite length form (BER only).
    #[error("indefinite length is not supported in DER")]
    Indefinite,
    /// More length octets than [`MAX_LENGTH_OCTETS`].
    #[error("length of {octets} bytes is not supported (at most {MAX_LENGTH_OCTETS})")]
    LengthTooLong {
        /// Length octets announced.
        octets: usize,
    },
    /// The input ends inside the length octets.
    #[error("truncated length")]
    TruncatedLength,
    /// The length is not in its shortest form.
    #[error("length is not minimally encoded")]
    NotMinimal,
    /// The input ends before the value does.
    #[error("value of {total} bytes, only {available} present")]
    Truncated {
        /// Header and content length.
        total: usize,
        /// Bytes present.
        available: usize,
    },
}

/// The identifier and length octets at the start of an encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    tag: u8,
    header_len: usize,
    content_len: usize,
}

impl Header {
    /// Reads the header at the start of `bytes`; the content need not be present.
    ///
    /// # Errors
    /// [`DerError`] for anything but a one-byte tag and a definite, minimal length.
    pub fn read(bytes: &[u8]) -> Result<Self, DerError> {
        let mut r = Reader::new(bytes);
        let tag = r.u8("tag").map_err(|_| DerError::Empty)?;
        if tag & 0x1f == 0x1f {
            return Err(DerError::MultiByteTag);
        }
        let first = r.u8("length").map_err(|_| DerError::MissingLength)?;
        let content_len = if first < 0x80 {
            usize::from(first)
        } else {
            let octets = usize::from(first & 0x7f);
            if octets == 0 {
                return Err(DerError::Indefinite);
            }
            if octets > MAX_LENGTH_OCTETS {
                return Err(DerError::LengthTooLong { octets });
            }
            let len = r.take(octets, "length").map_err(|_| DerError::TruncatedLength)?;
            if len.first() == Some(&0) || (octets == 1 && len.first().is_some_and(|b| *b < 0x80)) {
                return Err(DerError::NotMinimal);
            }
            len.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
        };
        Ok(Self { tag, header_len: r.position(), content_len })
    }

    /// The one-byte tag.
    #[must_use]
    pub fn tag(&self) -> u8 {
        self.tag
    }

    /// Bytes of content the length announces.
    #[must_use]
    pub fn content_len(&self) -> usize {
        self.content_len
    }

    /// Bytes of tag, length and content.
    #[must_use]
    pub fn total_len(&self) -> usize {
        self.header_len.saturating_add(self.content_len)
    }
}

/// One tag-length-value, borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    encoded: &'a [u8],
}

impl<'a> Tlv<'a> {
    /// The one-byte tag.
    #[must_use]
    pub fn tag(&self) -> u8 {
        self.tag
    }

    /// The content octets.
    #[must_use]
    pub fn content(&self) -> &'a [u8] {
        self.content
    }

    /// The whole encoding: header and content.
    #[must_use]
    pub fn encoded(&self) -> &'a [u8] {
        self.encoded
    }
}

/// The TLV at the start of `bytes` and the bytes after it.
///
/// # Errors
/// As [`Header::read`], and [`DerError::Truncated`] when the content is not all there.
pub fn split_tlv(bytes: &[u8]) -> Result<(Tlv<'_>, &[u8]), DerError> {
    let header = Header::read(bytes)?;
    let total = header.total_len();
    let truncated = DerError::Truncated { total, available: bytes.len() };
    let encoded = bytes.get(..total).ok_or(truncated)?;
    let content = encoded.get(header.header_len..).ok_or(truncated)?;
    let rest = bytes.get(total..).unwrap_or_default();
    Ok((Tlv { tag: header.tag, content, encoded }, rest))
}

/// Tag, definite length (X.690 §8.1.3, shortest form), content.
#[must_use]
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.extend(u8::try_from(len));
    } else {
        let bytes = len.to_be_bytes();
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len() - 1);
        let used = bytes.get(start..).unwrap_or_default();
        out.extend(u8::try_from(0x80 | used.len()));
        out.extend_from_slice(used);
    }
    out.extend_from_slice(content);
    out
}

/// A SEQUENCE of encoded items.
#[must_use]
pub fn sequence(items: &[Vec<u8>]) -> Vec<u8> {
    tlv(tag::SEQUENCE, &items.concat())
}

/// A non-negative INTEGER from big-endian magnitude bytes (minimal encoding).
#[must_use]
pub fn unsigned_integer(magnitude: &[u8]) -> Vec<u8> {
    let start = magnitude.iter().position(|b| *b != 0).unwrap_or(magnitude.len());
    let trimmed = magnitude.get(start..).unwrap_or_default();
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    tlv(tag::INTEGER, &content)
}

/// An OBJECT IDENTIFIER from its content octets.
#[must_use]
pub fn oid(encoded: &[u8]) -> Vec<u8> {
    tlv(tag::OBJECT_IDENTIFIER, encoded)
}

/// A BIT STRING of whole bytes.
#[must_use]
pub fn bit_string(bytes: &[u8]) -> Vec<u8> {
    let mut content = vec![0u8];
    content.extend_from_slice(bytes);
    tlv(tag::BIT_STRING, &content)
}

/// A context-specific constructed (EXPLICIT) tag `[n]`, `n` below 31.
#[must_use]
pub fn explicit(n: u8, content: &[u8]) -> Vec<u8> {
    tlv(0xa0 | (n & 0x1f), content)
}

/// `Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` (RFC 3279 §2.2.3) from big-endian
/// unsigned `r` and `s`, as aws-lc-rs and TLS take ECDSA signatures.
#[must_use]
pub fn ecdsa_signature(r: &[u8], s: &[u8]) -> Vec<u8> {
    sequence(&[unsigned_integer(r), unsigned_integer(s)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_short_and_long_round_trip() {
        assert_eq!(tlv(tag::OCTET_STRING, &[1, 2]), [4, 2, 1, 2]);
        let long = tlv(tag::OCTET_STRING, &[0; 300]);
        assert_eq!(long[..4], [4, 0x82, 0x01, 0x2c]);
        let (value, rest) = split_tlv(&long).unwrap();
        assert_eq!((value.tag(), value.content().len(), value.encoded().len(), rest), (4, 300, 304, &[][..]));
        let mut padded = tlv(tag::SEQUENCE, &[1; 10]);
        padded.extend([0; 20]);
        assert_eq!(split_tlv(&padded).unwrap().0.encoded().len(), 12);
        assert_eq!(split_tlv(&[0x02, 0x01, 0x05, 0x09]).unwrap().1, [0x09]);
    }

    #[test]
    fn non_der_or_truncated_headers_are_refused() {
        assert_eq!(Header::read(&[]), Err(DerError::Empty));
        assert_eq!(Header::read(&[0x30]), Err(DerError::MissingLength));
        assert_eq!(Header::read(&[0x1f, 0x01]), Err(DerError::MultiByteTag));
        assert_eq!(Header::read(&[0x30, 0x80]), Err(DerError::Indefinite));
        assert_eq!(Header::read(&[0x30, 0x84, 1, 1, 1, 1]), Err(DerError::LengthTooLong { octets: 4 }));
        assert_eq!(Header::read(&[0x30, 0x82, 0x01]), Err(DerError::TruncatedLength));
        assert_eq!(Header::read(&[0x02, 0x81, 0x01]), Err(DerError::NotMinimal));
        assert_eq!(Header::read(&[0x02, 0x82, 0x00, 0x81]), Err(DerError::NotMinimal));
        let value = tlv(tag::SEQUENCE, &[1; 200]);
        assert_eq!(split_tlv(&value[..100]), Err(DerError::Truncated { total: 203, available: 100 }));
        assert_eq!(split_tlv(&[0x02, 0x02, 0x00]), Err(DerError::Truncated { total: 4, available: 3 }));
    }

    #[test]
    fn integers_are_minimal_and_non_negative() {
        assert_eq!(unsigned_integer(&[0, 0, 0x7f]), [2, 1, 0x7f]);
        assert_eq!(unsigned_integer(&[0x80]), [2, 2, 0, 0x80]);
        assert_eq!(unsigned_integer(&[0x40, 0, 0, 1]), [2, 4, 0x40, 0, 0, 1]);
        assert_eq!(unsigned_integer(&[]), [2, 1, 0]);
        assert_eq!(ecdsa_signature(&[1], &[0x80]), [0x30, 7, 2, 1, 1, 2, 2, 0, 0x80]);
    }
}
