//! The AMD extensions of a VCEK or VLEK certificate (VCEK Certificate and KDS Interface
//! Specification, AMD publication 57230, "VCEK Certificate Extensions"): product name,
//! the security patch levels the key was derived for, the chip's hwID (VCEK) and the
//! cloud provider (VLEK).
//!
//! Each value is the DER inside `extnValue`: an INTEGER for SPLs, an IA5String for
//! names. hwID is the raw bytes; some certificates wrap them in an OCTET STRING, which
//! is told apart by length (64 or 8 bytes raw, 66 or 10 wrapped).

use crate::der::{self, tag};
use crate::x509::Certificate;

use super::tcb::TcbParts;
use super::{Product, SigningKey, SnpError};

/// AMD's extension OIDs (arc 1.3.6.1.4.1.3704.1).
pub(super) mod oid {
    pub(super) const PRODUCT_NAME: &str = "1.3.6.1.4.1.3704.1.2";
    pub(super) const BL_SPL: &str = "1.3.6.1.4.1.3704.1.3.1";
    pub(super) const TEE_SPL: &str = "1.3.6.1.4.1.3704.1.3.2";
    pub(super) const SNP_SPL: &str = "1.3.6.1.4.1.3704.1.3.3";
    pub(super) const UCODE_SPL: &str = "1.3.6.1.4.1.3704.1.3.8";
    pub(super) const FMC_SPL: &str = "1.3.6.1.4.1.3704.1.3.9";
    pub(super) const HW_ID: &str = "1.3.6.1.4.1.3704.1.4";
    pub(super) const CSP_ID: &str = "1.3.6.1.4.1.3704.1.5";
}

/// Longest IA5String accepted in productName or cspId.
const MAX_NAME_LEN: usize = 127;

/// What the AMD extensions of a leaf say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AmdExtensions {
    pub(super) product_name: String,
    pub(super) spl: TcbParts,
    pub(super) hw_id: Option<Vec<u8>>,
    pub(super) csp_id: Option<String>,
}

/// Reads the extensions a `kind` leaf of `product` must carry: productName and the SPLs
/// (FMC on Turin), hwID of the product's length for a VCEK; cspId when a VLEK has it.
pub(super) fn read(
    cert: &Certificate,
    kind: SigningKey,
    product: Product,
) -> Result<AmdExtensions, SnpError> {
    let required = |name: &'static str, oid: &'static str| {
        cert.extension(oid).map(|e| e.value()).ok_or(SnpError::MissingExtension {
            kind,
            extension: name,
            oid,
        })
    };
    let spl = |name: &'static str, oid: &'static str| -> Result<u8, SnpError> {
        integer_u8(required(name, oid)?).ok_or(SnpError::MalformedExtension { extension: name, oid })
    };
    let product_name = ia5(required("productName", oid::PRODUCT_NAME)?)
        .ok_or(SnpError::MalformedExtension { extension: "productName", oid: oid::PRODUCT_NAME })?;
    let fmc = match product {
        Product::Turin => spl("fmcSPL", oid::FMC_SPL)?,
        Product::Milan | Product::Genoa => 0,
    };
    let spl = TcbParts {
        fmc,
        bootloader: spl("blSPL", oid::BL_SPL)?,
        tee: spl("teeSPL", oid::TEE_SPL)?,
        snp: spl("snpSPL", oid::SNP_SPL)?,
        microcode: spl("ucodeSPL", oid::UCODE_SPL)?,
    };
    let hw_id = match kind {
        SigningKey::Vcek => Some(
            hw_id(required("hwID", oid::HW_ID)?, product.hw_id_len())
                .ok_or(SnpError::MalformedExtension { extension: "hwID", oid: oid::HW_ID })?,
        ),
        SigningKey::Vlek => None,
    };
    let csp_id = match cert.extension(oid::CSP_ID) {
        Some(ext) => Some(
            ia5(ext.value()).ok_or(SnpError::MalformedExtension { extension: "cspId", oid: oid::CSP_ID })?,
        ),
        None => None,
    };
    Ok(AmdExtensions { product_name, spl, hw_id, csp_id })
}

/// The content of the one DER TLV with tag `expected` filling `value` exactly.
fn tlv(value: &[u8], expected: u8) -> Option<&[u8]> {
    match der::split_tlv(value) {
        Ok((tlv, [])) if tlv.tag() == expected => Some(tlv.content()),
        _ => None,
    }
}

/// A DER INTEGER in 0..=255, minimally encoded.
fn integer_u8(value: &[u8]) -> Option<u8> {
    match tlv(value, tag::INTEGER)? {
        [v] if *v < 0x80 => Some(*v),
        [0, v] if *v >= 0x80 => Some(*v),
        _ => None,
    }
}

/// A printable-ASCII DER IA5String.
fn ia5(value: &[u8]) -> Option<String> {
    let content = tlv(value, tag::IA5_STRING)?;
    if content.len() > MAX_NAME_LEN || !content.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        return None;
    }
    String::from_utf8(content.to_vec()).ok()
}

/// hwID: `len` raw bytes, or the same wrapped in an OCTET STRING.
fn hw_id(value: &[u8], len: usize) -> Option<Vec<u8>> {
    if value.len() == len {
        return Some(value.to_vec());
    }
    tlv(value, tag::OCTET_STRING).filter(|inner| inner.len() == len).map(<[u8]>::to_vec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_encodings() {
        assert_eq!(integer_u8(&[2, 1, 0x73]), Some(0x73));
        assert_eq!(integer_u8(&[2, 2, 0, 0xd9]), Some(0xd9));
        assert_eq!(integer_u8(&[2, 2, 0, 0x10]), None, "not minimal");
        assert_eq!(integer_u8(&[2, 1, 0x80]), None, "negative");
        assert_eq!(integer_u8(&[2, 2, 1, 0]), None, "above 255");
        assert_eq!(integer_u8(&[2, 1, 5, 0]), None, "trailing byte");
        assert_eq!(ia5(b"\x16\x08Milan-B0").as_deref(), Some("Milan-B0"));
        assert_eq!(ia5(b"\x0c\x05Milan"), None, "UTF8String");
        assert_eq!(hw_id(&[7; 8], 8), Some(vec![7; 8]));
        let mut wrapped = vec![4, 64];
        wrapped.extend_from_slice(&[9; 64]);
        assert_eq!(hw_id(&wrapped, 64), Some(vec![9; 64]));
        assert_eq!(hw_id(&wrapped, 8), None);
        assert_eq!(hw_id(&[7; 63], 64), None);
    }
}
