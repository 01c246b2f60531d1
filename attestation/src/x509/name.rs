//! Distinguished names (RFC 5280 §4.1.2.4) and the comparison used to link a
//! certificate to its issuer.
//!
//! Names are compared as RFC 5280 §7.1 asks: attribute by attribute, string
//! values after folding case and collapsing white space, so an issuer encoded as
//! PrintableString still finds a CA whose subject is a UTF8String. Attributes of
//! a multi-valued RDN are compared as a set (some Nuvoton roots do not sort their
//! SET, which strict DER parsers reject but OpenSSL accepts).

use x509_parser::asn1_rs::Tag;
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

/// A parsed name: its DER, a comparison key, and a display form for errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Name {
    raw: Box<[u8]>,
    key: Box<[u8]>,
    display: String,
}

impl Name {
    pub(super) fn from_x509(name: &X509Name<'_>) -> Self {
        let mut key = Vec::with_capacity(name.as_raw().len());
        for rdn in name.iter_rdn() {
            let mut attributes: Vec<Vec<u8>> = rdn.iter().map(attribute_key).collect();
            attributes.sort_unstable();
            put_len(&mut key, attributes.len());
            for attribute in attributes {
                put_len(&mut key, attribute.len());
                key.extend_from_slice(&attribute);
            }
        }
        Self { raw: name.as_raw().into(), key: key.into(), display: name.to_string() }
    }

    /// The name's DER encoding as received.
    pub(super) fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The key two names compare equal by.
    pub(super) fn key(&self) -> &[u8] {
        &self.key
    }

    /// RFC 4514-style text (`C=CH, O=STMicroelectronics NV, CN=...`).
    pub(super) fn display(&self) -> &str {
        &self.display
    }

    pub(super) fn is_empty(&self) -> bool {
        self.key.is_empty()
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
}

/// Type OID, then either `s` and the normalised string, or `r`, the tag and the raw value.
fn attribute_key(attribute: &AttributeTypeAndValue<'_>) -> Vec<u8> {
    let oid = attribute.attr_type().as_bytes();
    let value = attribute.attr_value();
    let mut out = Vec::with_capacity(oid.len() + value.data.len() + 16);
    put_len(&mut out, oid.len());
    out.extend_from_slice(oid);
    match decode_string(value.tag(), value.data) {
        Some(text) => {
            out.push(b's');
            let folded = text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
            out.extend_from_slice(folded.as_bytes());
        }
        None => {
            out.push(b'r');
            out.extend_from_slice(&value.tag().0.to_be_bytes());
            out.extend_from_slice(value.data);
        }
    }
    out
}

/// Decodes the ASN.1 string types a directory string may use (X.520).
pub(crate) fn decode_string(tag: Tag, data: &[u8]) -> Option<String> {
    match tag {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::NumericString | Tag::VisibleString => {
            std::str::from_utf8(data).ok().map(str::to_owned)
        }
        // T.61: treated as Latin-1, as OpenSSL does.
        Tag::T61String => Some(data.iter().map(|b| char::from(*b)).collect()),
        Tag::BmpString => {
            let units: Vec<u16> = data.chunks(2).map(|c| u16::from_be_bytes(pair(c))).collect();
            (data.len() % 2 == 0).then(|| String::from_utf16(&units).ok()).flatten()
        }
        Tag::UniversalString => {
            if data.len() % 4 != 0 {
                return None;
            }
            data.chunks(4).map(|c| char::from_u32(u32::from_be_bytes(quad(c)))).collect()
        }
        _ => None,
    }
}

fn pair(c: &[u8]) -> [u8; 2] {
    let mut out = [0u8; 2];
    for (o, b) in out.iter_mut().zip(c) {
        *o = *b;
    }
    out
}

fn quad(c: &[u8]) -> [u8; 4] {
    let mut out = [0u8; 4];
    for (o, b) in out.iter_mut().zip(c) {
        *o = *b;
    }
    out
}
