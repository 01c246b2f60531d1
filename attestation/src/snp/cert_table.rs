//! The certificate table an extended guest request returns with the report (GHCB
//! specification, §4.1.8.1 "SNP Extended Guest Request", certificate table format):
//! entries of `{ GUID (16 bytes, RFC 4122 byte order), offset: u32 LE, length: u32 LE }`
//! ended by an all-zero entry, followed by the certificates. Offsets count from the
//! start of the table. The buffer may be zero-padded after the last certificate.

use thiserror::Error;

use crate::codec::{CodecError, Reader};

/// Largest table accepted (the kernel hands the guest at most a few pages).
pub const MAX_CERT_TABLE_LEN: usize = 64 * 1024;
/// Most entries accepted before the terminator.
pub const MAX_CERT_TABLE_ENTRIES: usize = 16;
/// Size of one table entry.
pub const ENTRY_LEN: usize = 24;

/// The GUIDs the GHCB specification assigns, in the RFC 4122 byte order they travel in.
#[rustfmt::skip]
mod guid {
    /// `c0b406a4-a803-4952-9743-3fb6014cd0ae`
    pub(super) const ARK: [u8; 16] = [0xc0, 0xb4, 0x06, 0xa4, 0xa8, 0x03, 0x49, 0x52, 0x97, 0x43, 0x3f, 0xb6, 0x01, 0x4c, 0xd0, 0xae];
    /// `4ab7b379-bbac-4fe4-a02f-05aef327c782`
    pub(super) const ASK: [u8; 16] = [0x4a, 0xb7, 0xb3, 0x79, 0xbb, 0xac, 0x4f, 0xe4, 0xa0, 0x2f, 0x05, 0xae, 0xf3, 0x27, 0xc7, 0x82];
    /// `63da758d-e664-4564-adc5-f4b93be8accd`
    pub(super) const VCEK: [u8; 16] = [0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd];
    /// `a8074bc2-a25a-483e-aae6-39c045a0b8a1`
    pub(super) const VLEK: [u8; 16] = [0xa8, 0x07, 0x4b, 0xc2, 0xa2, 0x5a, 0x48, 0x3e, 0xaa, 0xe6, 0x39, 0xc0, 0x45, 0xa0, 0xb8, 0xa1];
    /// `92f81bc3-5811-4d3d-97ff-d19f88dc67ea`
    pub(super) const CRL: [u8; 16] = [0x92, 0xf8, 0x1b, 0xc3, 0x58, 0x11, 0x4d, 0x3d, 0x97, 0xff, 0xd1, 0x9f, 0x88, 0xdc, 0x67, 0xea];
}

/// What an entry holds, by GUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertTableKind {
    /// AMD Root Key.
    Ark,
    /// AMD SEV Key (or, with a VLEK, the ASVK).
    Ask,
    /// Versioned Chip Endorsement Key.
    Vcek,
    /// Versioned Loaded Endorsement Key.
    Vlek,
    /// Certificate revocation list.
    Crl,
    /// A GUID the specification does not assign (kept, never used for trust).
    Other([u8; 16]),
}

impl CertTableKind {
    fn from_guid(guid: [u8; 16]) -> Self {
        match guid {
            guid::ARK => Self::Ark,
            guid::ASK => Self::Ask,
            guid::VCEK => Self::Vcek,
            guid::VLEK => Self::Vlek,
            guid::CRL => Self::Crl,
            other => Self::Other(other),
        }
    }

    /// The GUID in wire byte order.
    #[must_use]
    pub fn guid(self) -> [u8; 16] {
        match self {
            Self::Ark => guid::ARK,
            Self::Ask => guid::ASK,
            Self::Vcek => guid::VCEK,
            Self::Vlek => guid::VLEK,
            Self::Crl => guid::CRL,
            Self::Other(guid) => guid,
        }
    }

    fn name(self) -> String {
        match self {
            Self::Ark => "ARK".into(),
            Self::Ask => "ASK".into(),
            Self::Vcek => "VCEK".into(),
            Self::Vlek => "VLEK".into(),
            Self::Crl => "CRL".into(),
            Self::Other(guid) => format!("GUID {}", hex::encode(guid)),
        }
    }
}

/// Why a certificate table was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CertTableError {
    /// The table is larger than [`MAX_CERT_TABLE_LEN`].
    #[error("certificate table of {len} bytes exceeds the maximum of {MAX_CERT_TABLE_LEN}")]
    TooLarge {
        /// Bytes received.
        len: usize,
    },
    /// The entries ran out before the all-zero terminator.
    #[error("certificate table: {0}")]
    Codec(#[from] CodecError),
    /// More entries than [`MAX_CERT_TABLE_ENTRIES`] before the terminator.
    #[error("certificate table has more than {MAX_CERT_TABLE_ENTRIES} entries")]
    TooManyEntries,
    /// An entry points outside the buffer or into the entry list.
    #[error("certificate table entry {kind} (offset {offset}, length {length}) lies outside the certificate area of the {len}-byte table")]
    OutOfBounds {
        /// The entry's kind.
        kind: String,
        /// Its offset.
        offset: u32,
        /// Its length.
        length: u32,
        /// Table size.
        len: usize,
    },
    /// An entry has length zero.
    #[error("certificate table entry {kind} is empty")]
    EmptyEntry {
        /// The entry's kind.
        kind: String,
    },
    /// A GUID appears twice.
    #[error("certificate table holds {kind} twice")]
    Duplicate {
        /// The entry's kind.
        kind: String,
    },
}

/// One entry: its kind and the bytes it points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertTableEntry<'a> {
    kind: CertTableKind,
    bytes: &'a [u8],
}

impl<'a> CertTableEntry<'a> {
    /// What the entry holds.
    #[must_use]
    pub fn kind(&self) -> CertTableKind {
        self.kind
    }

    /// The certificate (or CRL) bytes, as received.
    #[must_use]
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

/// A parsed certificate table borrowing the buffer it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertTable<'a> {
    entries: Vec<CertTableEntry<'a>>,
}

impl<'a> CertTable<'a> {
    /// Parses a table: entries up to the all-zero terminator, each pointing inside the
    /// buffer after the entry list, no GUID twice, no empty entry.
    ///
    /// # Errors
    /// [`CertTableError`] naming the entry at fault.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, CertTableError> {
        if bytes.len() > MAX_CERT_TABLE_LEN {
            return Err(CertTableError::TooLarge { len: bytes.len() });
        }
        let mut r = Reader::new(bytes);
        let mut raw = Vec::new();
        loop {
            let guid: [u8; 16] = r.array("certificate table entry GUID")?;
            let offset = r.u32_le("certificate table entry offset")?;
            let length = r.u32_le("certificate table entry length")?;
            if guid == [0; 16] && offset == 0 && length == 0 {
                break;
            }
            if raw.len() == MAX_CERT_TABLE_ENTRIES {
                return Err(CertTableError::TooManyEntries);
            }
            raw.push((CertTableKind::from_guid(guid), offset, length));
        }
        let header_len = r.position();
        let mut entries: Vec<CertTableEntry<'a>> = Vec::with_capacity(raw.len());
        for (kind, offset, length) in raw {
            let out_of_bounds =
                || CertTableError::OutOfBounds { kind: kind.name(), offset, length, len: bytes.len() };
            if length == 0 {
                return Err(CertTableError::EmptyEntry { kind: kind.name() });
            }
            let start = usize::try_from(offset).map_err(|_| out_of_bounds())?;
            let len = usize::try_from(length).map_err(|_| out_of_bounds())?;
            if start < header_len {
                return Err(out_of_bounds());
            }
            let end = start.checked_add(len).ok_or_else(out_of_bounds)?;
            let cert = bytes.get(start..end).ok_or_else(out_of_bounds)?;
            if entries.iter().any(|e| e.kind == kind) {
                return Err(CertTableError::Duplicate { kind: kind.name() });
            }
            entries.push(CertTableEntry { kind, bytes: cert });
        }
        Ok(Self { entries })
    }

    /// The entries, in table order.
    #[must_use]
    pub fn entries(&self) -> &[CertTableEntry<'a>] {
        &self.entries
    }

    /// The bytes of the entry of `kind`, if present.
    #[must_use]
    pub fn get(&self, kind: CertTableKind) -> Option<&'a [u8]> {
        self.entries.iter().find(|e| e.kind == kind).map(|e| e.bytes)
    }

    /// Builds a table holding `certs` in order (what a host provides; used by the test
    /// signer and client tests).
    #[must_use]
    pub fn encode(certs: &[(CertTableKind, &[u8])]) -> Vec<u8> {
        let header_len = (certs.len() + 1) * ENTRY_LEN;
        let mut header = Vec::with_capacity(header_len);
        let mut body = Vec::new();
        for (kind, cert) in certs {
            let offset = u32::try_from(header_len + body.len()).unwrap_or(u32::MAX);
            let length = u32::try_from(cert.len()).unwrap_or(u32::MAX);
            header.extend_from_slice(&kind.guid());
            header.extend_from_slice(&offset.to_le_bytes());
            header.extend_from_slice(&length.to_le_bytes());
            body.extend_from_slice(cert);
        }
        header.extend_from_slice(&[0; ENTRY_LEN]);
        header.extend_from_slice(&body);
        header
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_are_the_ghcb_ones() {
        assert_eq!(hex::encode(CertTableKind::Ark.guid()), "c0b406a4a803495297433fb6014cd0ae");
        assert_eq!(hex::encode(CertTableKind::Vlek.guid()), "a8074bc2a25a483eaae639c045a0b8a1");
    }

    #[test]
    fn round_trip_and_padding() {
        let mut table = CertTable::encode(&[(CertTableKind::Vcek, b"vcek"), (CertTableKind::Ask, b"ask!")]);
        table.extend_from_slice(&[0; 100]);
        let parsed = CertTable::parse(&table).unwrap();
        assert_eq!(parsed.get(CertTableKind::Vcek), Some(&b"vcek"[..]));
        assert_eq!(parsed.get(CertTableKind::Ask), Some(&b"ask!"[..]));
        assert_eq!(parsed.get(CertTableKind::Ark), None);
        assert_eq!(parsed.entries().len(), 2);
    }

    #[test]
    fn malformed_tables() {
        let good = CertTable::encode(&[(CertTableKind::Vcek, b"vcek")]);
        // No terminator.
        assert!(matches!(CertTable::parse(&good[..ENTRY_LEN + 10]), Err(CertTableError::Codec(_))));
        // Offset pointing into the entry list.
        let mut into_header = good.clone();
        into_header[16] = 4;
        assert!(matches!(CertTable::parse(&into_header), Err(CertTableError::OutOfBounds { .. })));
        // Length past the end.
        let mut long = good.clone();
        long[20] = 5;
        assert!(matches!(CertTable::parse(&long), Err(CertTableError::OutOfBounds { .. })));
        let mut huge = good.clone();
        huge[16..24].copy_from_slice(&[0xff; 8]);
        assert!(matches!(CertTable::parse(&huge), Err(CertTableError::OutOfBounds { .. })));
        let mut empty = good.clone();
        empty[20] = 0;
        assert!(matches!(CertTable::parse(&empty), Err(CertTableError::EmptyEntry { .. })));
        let twice = CertTable::encode(&[(CertTableKind::Vcek, b"a"), (CertTableKind::Vcek, b"b")]);
        assert!(matches!(CertTable::parse(&twice), Err(CertTableError::Duplicate { .. })));
        let many: Vec<(CertTableKind, &[u8])> = (0..=MAX_CERT_TABLE_ENTRIES)
            .map(|i| (CertTableKind::Other([u8::try_from(i).unwrap() + 1; 16]), &b"x"[..]))
            .collect();
        assert_eq!(CertTable::parse(&CertTable::encode(&many)), Err(CertTableError::TooManyEntries));
        assert!(matches!(
            CertTable::parse(&vec![1; MAX_CERT_TABLE_LEN + 1]),
            Err(CertTableError::TooLarge { .. })
        ));
    }
}
