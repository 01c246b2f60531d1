//! The DER the client writes (the TSS2 key file, ECDSA signatures) and the length of a DER
//! value read from NV, from the attestation library's one implementation
//! ([`mooring_attestation::der`]).

pub(crate) use mooring_attestation::der::tag::{BOOLEAN, OBJECT_IDENTIFIER, OCTET_STRING, SEQUENCE};
pub(crate) use mooring_attestation::der::{ecdsa_signature, explicit, tlv, unsigned_integer};

/// The total length (header and content) of the DER value at the start of `bytes`, checked
/// against `bytes`: definite, minimal lengths of up to three bytes.
pub(crate) fn value_len(bytes: &[u8]) -> Result<usize, String> {
    mooring_attestation::der::split_tlv(bytes).map(|(tlv, _)| tlv.encoded().len()).map_err(|e| e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn value_len_excludes_what_follows_and_names_the_problem() {
        let mut padded = tlv(SEQUENCE, &[1; 300]);
        padded.extend([0xff; 20]);
        assert_eq!(value_len(&padded).unwrap(), 304);
        assert!(value_len(padded.get(..100).unwrap()).unwrap_err().contains("only 100"));
        assert!(value_len(&[0x30, 0x85, 1, 1, 1, 1, 1]).unwrap_err().contains("not supported"));
        assert!(value_len(&[0x30, 0x80]).unwrap_err().contains("not supported"));
        assert!(value_len(&[]).is_err());
    }
}
