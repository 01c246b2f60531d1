//! PCR selections (`TPML_PCR_SELECTION`, TPM 2.0 Part 2 Table 111) and PCR values.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use thiserror::Error;

use crate::codec::{CodecError, Reader};
use crate::tpm::alg::HashAlg;

/// Highest PCR index plus one that a selection may name (`sizeofSelect` ≤ 4 bytes).
pub const MAX_PCRS: u8 = 32;
/// Largest `sizeofSelect` accepted (`PCR_SELECT_MAX` for up to 32 PCRs).
const MAX_SIZEOF_SELECT: u8 = 4;
/// Most banks a selection may list (one per supported hash algorithm).
const MAX_BANKS: u32 = 5;

/// Errors about PCR selections and values.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PcrError {
    /// The bytes do not form a valid structure.
    #[error("PCR selection: {0}")]
    Codec(#[from] CodecError),
    /// A bank uses a hash algorithm this verifier does not know.
    #[error("PCR selection names unknown hash algorithm {0:#06x}")]
    UnknownBank(u16),
    /// The same bank appears twice.
    #[error("PCR selection lists bank {0} twice")]
    DuplicateBank(HashAlg),
    /// A PCR value needed for the digest was not supplied.
    #[error("no value supplied for PCR {bank}:{index}")]
    Missing {
        /// Bank of the missing value.
        bank: HashAlg,
        /// PCR index of the missing value.
        index: u8,
    },
    /// A PCR value has the wrong length for its bank.
    #[error("PCR {bank}:{index} is {len} bytes, the bank's digest is {expected}")]
    WrongSize {
        /// Bank of the value.
        bank: HashAlg,
        /// PCR index of the value.
        index: u8,
        /// Length found.
        len: usize,
        /// Length expected.
        expected: usize,
    },
    /// A PCR index outside 0..32.
    #[error("PCR index {0} out of range (0-31)")]
    IndexOutOfRange(u32),
    /// The PCR values file could not be understood.
    #[error("PCR values: {0}")]
    Format(String),
}

/// The PCRs selected in each bank, in the order the selection lists the banks.
///
/// Equality ignores the order of banks and how many select bytes were used.
#[derive(Debug, Clone, Default, Eq)]
pub struct PcrSelection {
    banks: Vec<(HashAlg, u32)>,
}

impl PartialEq for PcrSelection {
    fn eq(&self, other: &Self) -> bool {
        self.normalized() == other.normalized()
    }
}

impl PcrSelection {
    /// An empty selection.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A selection of `indices` in one bank.
    ///
    /// # Errors
    /// [`PcrError::IndexOutOfRange`] for an index above 31.
    pub fn single(bank: HashAlg, indices: &[u8]) -> Result<Self, PcrError> {
        let mut selection = Self::new();
        selection.add(bank, indices)?;
        Ok(selection)
    }

    /// Adds `indices` in `bank` to the selection (merging with an existing entry).
    ///
    /// # Errors
    /// [`PcrError::IndexOutOfRange`] for an index above 31.
    pub fn add(&mut self, bank: HashAlg, indices: &[u8]) -> Result<(), PcrError> {
        let mut mask = 0u32;
        for &index in indices {
            if index >= MAX_PCRS {
                return Err(PcrError::IndexOutOfRange(u32::from(index)));
            }
            mask |= 1 << index;
        }
        match self.banks.iter_mut().find(|(alg, _)| *alg == bank) {
            Some((_, existing)) => *existing |= mask,
            None => self.banks.push((bank, mask)),
        }
        Ok(())
    }

    /// Parses a marshaled `TPML_PCR_SELECTION` from `r`.
    ///
    /// # Errors
    /// Truncation, oversized counts, unknown or duplicate banks.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, PcrError> {
        let count = r.u32_be("TPML_PCR_SELECTION.count")?;
        if count > MAX_BANKS {
            return Err(CodecError::TooLarge {
                field: "TPML_PCR_SELECTION.count",
                size: usize::try_from(count).unwrap_or(usize::MAX),
                max: MAX_BANKS as usize,
            }
            .into());
        }
        let mut banks: Vec<(HashAlg, u32)> = Vec::new();
        for _ in 0..count {
            let alg = r.u16_be("TPMS_PCR_SELECTION.hash")?;
            let bank = HashAlg::from_tpm(alg).ok_or(PcrError::UnknownBank(alg))?;
            let size = r.u8("TPMS_PCR_SELECTION.sizeofSelect")?;
            if size > MAX_SIZEOF_SELECT {
                return Err(CodecError::TooLarge {
                    field: "TPMS_PCR_SELECTION.sizeofSelect",
                    size: usize::from(size),
                    max: usize::from(MAX_SIZEOF_SELECT),
                }
                .into());
            }
            let select = r.take(usize::from(size), "TPMS_PCR_SELECTION.pcrSelect")?;
            let mut mask = 0u32;
            for (i, byte) in select.iter().enumerate() {
                mask |= u32::from(*byte) << (8 * i);
            }
            if banks.iter().any(|(b, _)| *b == bank) {
                return Err(PcrError::DuplicateBank(bank));
            }
            banks.push((bank, mask));
        }
        Ok(Self { banks })
    }

    /// Marshals as `TPML_PCR_SELECTION` with 3 select bytes per bank (24 PCRs) or 4 when
    /// a PCR above 23 is selected.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&u32::try_from(self.banks.len()).unwrap_or(0).to_be_bytes());
        for (bank, mask) in &self.banks {
            out.extend_from_slice(&bank.tpm_id().to_be_bytes());
            let bytes = mask.to_le_bytes();
            let size: usize = if *mask > 0x00ff_ffff { 4 } else { 3 };
            out.push(if size == 4 { 4 } else { 3 });
            out.extend_from_slice(bytes.get(..size).unwrap_or(&bytes));
        }
        out
    }

    /// Banks and selected indices, in selection order.
    pub fn iter(&self) -> impl Iterator<Item = (HashAlg, Vec<u8>)> + '_ {
        self.banks.iter().map(|(bank, mask)| (*bank, indices(*mask)))
    }

    /// Whether nothing at all is selected.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.banks.iter().all(|(_, mask)| *mask == 0)
    }

    fn normalized(&self) -> BTreeMap<HashAlg, u32> {
        let mut map = BTreeMap::new();
        for (bank, mask) in &self.banks {
            if *mask != 0 {
                *map.entry(*bank).or_insert(0) |= mask;
            }
        }
        map
    }
}

fn indices(mask: u32) -> Vec<u8> {
    (0..MAX_PCRS).filter(|i| mask & (1 << i) != 0).collect()
}

impl fmt::Display for PcrSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("no PCRs");
        }
        let mut first = true;
        for (bank, list) in self.iter().filter(|(_, l)| !l.is_empty()) {
            if !first {
                f.write_str(" + ")?;
            }
            first = false;
            let list: Vec<String> = list.iter().map(u8::to_string).collect();
            write!(f, "{bank}:{}", list.join(","))?;
        }
        Ok(())
    }
}

/// PCR values by bank and index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PcrValues {
    #[serde(flatten, serialize_with = "serialize_values")]
    banks: BTreeMap<HashAlg, BTreeMap<u8, Vec<u8>>>,
}

fn serialize_values<S: serde::Serializer>(
    banks: &BTreeMap<HashAlg, BTreeMap<u8, Vec<u8>>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = serializer.serialize_map(Some(banks.len()))?;
    for (bank, values) in banks {
        let values: BTreeMap<String, String> =
            values.iter().map(|(i, v)| (i.to_string(), hex::encode(v))).collect();
        map.serialize_entry(bank.name(), &values)?;
    }
    map.end()
}

impl PcrValues {
    /// No values.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets one PCR value, checking its size against the bank.
    ///
    /// # Errors
    /// [`PcrError::WrongSize`] or [`PcrError::IndexOutOfRange`].
    pub fn insert(&mut self, bank: HashAlg, index: u8, value: Vec<u8>) -> Result<(), PcrError> {
        if index >= MAX_PCRS {
            return Err(PcrError::IndexOutOfRange(u32::from(index)));
        }
        if value.len() != bank.size() {
            return Err(PcrError::WrongSize { bank, index, len: value.len(), expected: bank.size() });
        }
        self.banks.entry(bank).or_default().insert(index, value);
        Ok(())
    }

    /// One PCR value.
    #[must_use]
    pub fn get(&self, bank: HashAlg, index: u8) -> Option<&[u8]> {
        self.banks.get(&bank)?.get(&index).map(Vec::as_slice)
    }

    /// The banks present.
    pub fn banks(&self) -> impl Iterator<Item = HashAlg> + '_ {
        self.banks.keys().copied()
    }

    /// Index and value of every PCR in `bank`, ascending.
    pub fn bank(&self, bank: HashAlg) -> impl Iterator<Item = (u8, &[u8])> + '_ {
        self.banks.get(&bank).into_iter().flat_map(|m| m.iter().map(|(i, v)| (*i, v.as_slice())))
    }

    /// The values `selection` names, concatenated in selection order (banks in the order
    /// listed, indices ascending), then hashed with `hash`: a quote's `pcrDigest`.
    ///
    /// # Errors
    /// [`PcrError::Missing`] naming the first selected PCR without a value.
    pub fn digest(&self, selection: &PcrSelection, hash: HashAlg) -> Result<Vec<u8>, PcrError> {
        let mut parts: Vec<&[u8]> = Vec::new();
        for (bank, list) in selection.iter() {
            for index in list {
                parts.push(self.get(bank, index).ok_or(PcrError::Missing { bank, index })?);
            }
        }
        Ok(hash.digest(&parts))
    }

    /// Parses a JSON map `{"sha256": {"0": "hex", ...}, ...}`.
    ///
    /// # Errors
    /// [`PcrError::Format`] for anything but that shape, or bad sizes.
    pub fn from_json(text: &str) -> Result<Self, PcrError> {
        let raw: BTreeMap<String, BTreeMap<String, String>> = serde_json::from_str(text)
            .map_err(|e| PcrError::Format(format!("not a JSON map of banks to PCRs: {e}")))?;
        Self::from_map(&raw)
    }

    /// From bank name to PCR index (decimal string) to hex value, as the broker API
    /// carries them.
    ///
    /// # Errors
    /// [`PcrError::Format`] for an unknown bank, a bad index or hex, or bad sizes.
    pub fn from_map(raw: &BTreeMap<String, BTreeMap<String, String>>) -> Result<Self, PcrError> {
        let mut values = Self::new();
        for (bank_name, entries) in raw {
            let bank = HashAlg::from_name(bank_name)
                .ok_or_else(|| PcrError::Format(format!("unknown bank {bank_name:?}")))?;
            for (index, value) in entries {
                let index: u8 = index
                    .parse()
                    .map_err(|_| PcrError::Format(format!("{bank_name}: bad PCR index {index:?}")))?;
                let value = hex::decode(value.trim())
                    .map_err(|e| PcrError::Format(format!("{bank_name}:{index}: {e}")))?;
                values.insert(bank, index, value)?;
            }
        }
        Ok(values)
    }

    /// Parses what `tpm2_quote -o` / `tpm2_pcrread -o` write: either the `serialized`
    /// form (native-endian `TPML_PCR_SELECTION` struct, a `u32` list count, then that
    /// many `TPML_DIGEST` structs) or the `values` form (the selected digests
    /// concatenated), which needs the quote's `selection` to be split.
    ///
    /// # Errors
    /// [`PcrError::Format`] when the file matches neither form.
    pub fn from_tpm2_tools(bytes: &[u8], selection: &PcrSelection) -> Result<Self, PcrError> {
        if let Ok(values) = Self::from_tpm2_tools_serialized(bytes) {
            return Ok(values);
        }
        let expected: usize = selection.iter().map(|(bank, list)| bank.size() * list.len()).sum();
        if bytes.len() != expected {
            return Err(PcrError::Format(format!(
                "{} bytes is neither a serialized PCR file nor the {expected} bytes of \
                 concatenated values that the selection {selection} needs",
                bytes.len()
            )));
        }
        let mut r = Reader::new(bytes);
        let mut values = Self::new();
        for (bank, list) in selection.iter() {
            for index in list {
                values.insert(bank, index, r.take(bank.size(), "PCR value")?.to_vec())?;
            }
        }
        Ok(values)
    }

    fn from_tpm2_tools_serialized(bytes: &[u8]) -> Result<Self, PcrError> {
        // Layout of tss2's C structs on a little-endian host:
        // TPML_PCR_SELECTION = u32 count + 16 x {u16 hash, u8 size, u8[4], pad} (132 bytes);
        // TPML_DIGEST = u32 count + 8 x {u16 size, u8[64]} (532 bytes).
        const SELECTIONS: usize = 16;
        const DIGESTS_PER_LIST: usize = 8;
        let mut r = Reader::new(bytes);
        let count = r.u32_le("TPML_PCR_SELECTION.count")?;
        let mut selection = PcrSelection::new();
        for i in 0..SELECTIONS {
            let hash = r.u16_le("TPMS_PCR_SELECTION.hash")?;
            let size = r.u8("TPMS_PCR_SELECTION.sizeofSelect")?;
            let select = r.array::<4>("TPMS_PCR_SELECTION.pcrSelect")?;
            r.take(1, "padding")?;
            if u32::try_from(i).unwrap_or(u32::MAX) < count {
                let bank = HashAlg::from_tpm(hash).ok_or(PcrError::UnknownBank(hash))?;
                let used = select.get(..usize::from(size.min(4))).unwrap_or(&[]);
                let mut list = Vec::new();
                for (byte_index, byte) in used.iter().enumerate() {
                    for bit in 0..8u8 {
                        if byte & (1 << bit) != 0 {
                            list.push(u8::try_from(byte_index * 8).unwrap_or(u8::MAX) + bit);
                        }
                    }
                }
                selection.add(bank, &list)?;
            }
        }
        let lists = r.u32_le("pcr list count")?;
        let mut digests: Vec<&[u8]> = Vec::new();
        for _ in 0..lists {
            let n = usize::try_from(r.u32_le("TPML_DIGEST.count")?).unwrap_or(usize::MAX);
            if n > DIGESTS_PER_LIST {
                return Err(PcrError::Format("TPML_DIGEST.count above 8".into()));
            }
            for slot in 0..DIGESTS_PER_LIST {
                let size = usize::from(r.u16_le("TPM2B_DIGEST.size")?);
                let buffer = r.take(64, "TPM2B_DIGEST.buffer")?;
                if slot < n {
                    digests.push(buffer.get(..size).ok_or(PcrError::Format("digest size above 64".into()))?);
                }
            }
        }
        r.expect_end("tpm2-tools PCR file")?;
        let mut values = Self::new();
        let mut next = digests.into_iter();
        for (bank, list) in selection.iter() {
            for index in list {
                let value = next.next().ok_or(PcrError::Missing { bank, index })?;
                values.insert(bank, index, value.to_vec())?;
            }
        }
        if next.next().is_some() {
            return Err(PcrError::Format("more digests than selected PCRs".into()));
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_round_trips_and_compares_as_a_set() {
        let mut a = PcrSelection::single(HashAlg::Sha256, &[0, 7, 23]).unwrap();
        a.add(HashAlg::Sha1, &[1]).unwrap();
        let bytes = a.to_bytes();
        let b = PcrSelection::read(&mut Reader::new(&bytes)).unwrap();
        assert_eq!(a, b);
        let mut c = PcrSelection::single(HashAlg::Sha1, &[1]).unwrap();
        c.add(HashAlg::Sha256, &[23, 7, 0]).unwrap();
        assert_eq!(a, c);
        assert_ne!(a, PcrSelection::single(HashAlg::Sha256, &[0, 7, 23]).unwrap());
        assert_eq!(c.to_string(), "sha1:1 + sha256:0,7,23");
    }

    #[test]
    fn selection_rejects_unknown_bank_duplicates_and_big_select() {
        let unknown = [0, 0, 0, 1, 0x00, 0x99, 3, 1, 0, 0];
        assert_eq!(PcrSelection::read(&mut Reader::new(&unknown)), Err(PcrError::UnknownBank(0x99)));
        let dup = [0, 0, 0, 2, 0, 0x0b, 3, 1, 0, 0, 0, 0x0b, 3, 2, 0, 0];
        assert_eq!(PcrSelection::read(&mut Reader::new(&dup)), Err(PcrError::DuplicateBank(HashAlg::Sha256)));
        let big = [0, 0, 0, 1, 0, 0x0b, 5, 1, 0, 0, 0, 0];
        assert!(matches!(
            PcrSelection::read(&mut Reader::new(&big)),
            Err(PcrError::Codec(CodecError::TooLarge { .. }))
        ));
    }

    #[test]
    fn digest_names_first_missing_pcr() {
        let sel = PcrSelection::single(HashAlg::Sha256, &[0, 1]).unwrap();
        let mut values = PcrValues::new();
        values.insert(HashAlg::Sha256, 0, vec![0; 32]).unwrap();
        assert_eq!(
            values.digest(&sel, HashAlg::Sha256),
            Err(PcrError::Missing { bank: HashAlg::Sha256, index: 1 })
        );
        assert!(matches!(values.insert(HashAlg::Sha256, 2, vec![0; 20]), Err(PcrError::WrongSize { .. })));
    }
}
