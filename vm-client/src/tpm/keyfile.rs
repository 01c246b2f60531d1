//! K as a TSS2 key file ("ASN.1 Specification for TPM 2.0 Key Files", TCG), PEM label
//! `TSS2 PRIVATE KEY`, so OpenSSL's tpm2 provider, tpm2-tss-engine and other tools can use
//! the key in the TPM:
//!
//! ```text
//! TPMKey ::= SEQUENCE {
//!     type        OBJECT IDENTIFIER,         -- id-loadablekey 2.23.133.10.1.3
//!     emptyAuth   [0] EXPLICIT BOOLEAN OPTIONAL,
//!     parent      INTEGER,                   -- 0x40000001: the owner hierarchy's SRK
//!     pubkey      OCTET STRING,              -- TPM2B_PUBLIC
//!     privkey     OCTET STRING               -- TPM2B_PRIVATE
//! }
//! ```
//!
//! Parent 0x40000001 (TPM_RH_OWNER) means "the primary key created in the owner hierarchy
//! from the standard ECC P-256 SRK template", which is what [`super::key`] loads K under.

use super::key::KeyBlobs;
use crate::der;

/// id-loadablekey (2.23.133.10.1.3), DER content octets.
const ID_LOADABLE_KEY: [u8; 6] = [0x67, 0x81, 0x05, 0x0a, 0x01, 0x03];
/// TPM_RH_OWNER: the parent is the owner hierarchy's standard SRK.
pub const PARENT_OWNER_SRK: u32 = 0x4000_0001;
/// PEM label of the key file.
pub const PEM_LABEL: &str = "TSS2 PRIVATE KEY";

/// The DER `TPMKey` for K, with empty auth and the owner SRK as parent.
#[must_use]
pub fn to_der(key: &KeyBlobs) -> Vec<u8> {
    let mut content = der::tlv(der::OBJECT_IDENTIFIER, &ID_LOADABLE_KEY);
    content.extend(der::explicit(0, &der::tlv(der::BOOLEAN, &[0xff])));
    content.extend(der::unsigned_integer(&PARENT_OWNER_SRK.to_be_bytes()));
    content.extend(der::tlv(der::OCTET_STRING, &key.public));
    content.extend(der::tlv(der::OCTET_STRING, &key.private));
    der::tlv(der::SEQUENCE, &content)
}

/// The PEM key file.
#[must_use]
pub fn to_pem(key: &KeyBlobs) -> String {
    mooring_attestation::pem::encode(PEM_LABEL, &to_der(key))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_specification() {
        let key = KeyBlobs { public: vec![0, 2, 0xaa, 0xbb], private: vec![0, 1, 0xcc] };
        let der = to_der(&key);
        let expected: Vec<u8> = [
            &[0x30, 0x1e][..],
            &[0x06, 0x06, 0x67, 0x81, 0x05, 0x0a, 0x01, 0x03],
            &[0xa0, 0x03, 0x01, 0x01, 0xff],
            &[0x02, 0x04, 0x40, 0x00, 0x00, 0x01],
            &[0x04, 0x04, 0, 2, 0xaa, 0xbb],
            &[0x04, 0x03, 0, 1, 0xcc],
        ]
        .concat();
        assert_eq!(der, expected);
        let pem = to_pem(&key);
        assert!(pem.starts_with("-----BEGIN TSS2 PRIVATE KEY-----\n"), "{pem}");
    }
}
