//! One bounds-checked reader for every wire format in this crate.
//!
//! Parsers never index into untrusted slices directly: they take bytes through
//! [`Reader`], which reports the field it was reading when the input ran out or
//! had bytes left over. Big-endian accessors serve the TPM structures
//! (TPM 2.0 Part 2 marshals big-endian); little-endian accessors serve the TCG
//! event log and the SEV-SNP report.

use thiserror::Error;

/// Why a byte string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The input ended in the middle of a field.
    #[error("{field}: needs {needed} more bytes, {available} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// Bytes remained after the structure ended.
    #[error("{field}: {extra} unexpected trailing bytes")]
    TrailingBytes {
        /// The structure that should have consumed everything.
        field: &'static str,
        /// How many bytes were left.
        extra: usize,
    },
    /// A size prefix exceeds the maximum the specification allows.
    #[error("{field}: size {size} exceeds the maximum {max}")]
    TooLarge {
        /// The field whose size is wrong.
        field: &'static str,
        /// The size found.
        size: usize,
        /// The largest size allowed.
        max: usize,
    },
    /// A field holds a value the specification does not allow here.
    #[error("{field}: unexpected value {value:#x}")]
    BadValue {
        /// The field with the bad value.
        field: &'static str,
        /// The value found.
        value: u64,
    },
}

/// A byte other than the fill after a structure read whole from a TPM NV index
/// (see [`Reader::expect_padding`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadPadding {
    /// Offset of the byte from the start of the input.
    pub offset: usize,
    /// Its value.
    pub value: u8,
}

/// A cursor over borrowed bytes that never reads past the end.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
    consumed: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading `bytes` from the beginning.
    #[must_use]
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes, consumed: 0 }
    }

    /// Bytes not yet read.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Bytes read so far.
    #[must_use]
    pub fn position(&self) -> usize {
        self.consumed
    }

    /// True when everything has been read.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Takes the next `n` bytes.
    ///
    /// # Errors
    /// [`CodecError::Truncated`] naming `field` when fewer than `n` bytes are left.
    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], CodecError> {
        if n > self.rest.len() {
            return Err(CodecError::Truncated { field, needed: n, available: self.rest.len() });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        self.consumed += n;
        Ok(head)
    }

    /// Takes exactly `N` bytes as an array.
    ///
    /// # Errors
    /// [`CodecError::Truncated`] when fewer than `N` bytes are left.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], CodecError> {
        let bytes = self.take(N, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// Takes everything that is left.
    pub fn rest(&mut self) -> &'a [u8] {
        let rest = self.rest;
        self.consumed += rest.len();
        self.rest = &[];
        rest
    }

    /// Reads one byte.
    ///
    /// # Errors
    /// [`CodecError::Truncated`] at the end of input.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, CodecError> {
        Ok(self.array::<1>(field)?[0])
    }

    /// Reads a big-endian `u16`.
    ///
    /// # Errors
    /// [`CodecError::Truncated`] at the end of input.
    pub fn u16_be(&mut self, field: &'static str) -> Result<u16, CodecError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    /// Reads a big-endian `u32`.
    ///
    /// # Errors
    /// [`CodecError::Truncated`] at the end of input.
    pub fn u32_be(&mut self, field: &'static str) -> Result<u32, CodecError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// Reads a big-endian `u64`.
    ///
    /// # Errors
    /// [`CodecError::Truncated`] at the end of input.
    pub fn u64_be(&mut self, field: &'static str) -> Result<u64, CodecError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// Reads a little-endian `u16`.
    ///
    /// # Errors
    /// [`CodecError::Truncated`] at the end of input.
    pub fn u16_le(&mut self, field: &'static str) -> Result<u16, CodecError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    /// Reads a little-endian `u32`.
    ///
    /// # Errors
    /// [`CodecError::Truncated`] at the end of input.
    pub fn u32_le(&mut self, field: &'static str) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    /// Reads a little-endian `u64`.
    ///
    /// # Errors
    /// [`CodecError::Truncated`] at the end of input.
    pub fn u64_le(&mut self, field: &'static str) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// Reads a TPM2B: a big-endian `u16` size, then that many bytes, refusing
    /// sizes above `max` (the buffer size the specification gives the type).
    ///
    /// # Errors
    /// [`CodecError::TooLarge`] or [`CodecError::Truncated`] naming `field`.
    pub fn tpm2b(&mut self, max: usize, field: &'static str) -> Result<&'a [u8], CodecError> {
        let size = usize::from(self.u16_be(field)?);
        if size > max {
            return Err(CodecError::TooLarge { field, size, max });
        }
        self.take(size, field)
    }

    /// Reads a little-endian `u32` length, then that many bytes, refusing lengths above `max`.
    ///
    /// # Errors
    /// [`CodecError::TooLarge`] or [`CodecError::Truncated`] naming `field`.
    pub fn u32_le_prefixed(&mut self, max: usize, field: &'static str) -> Result<&'a [u8], CodecError> {
        let size = usize::try_from(self.u32_le(field)?).unwrap_or(usize::MAX);
        if size > max {
            return Err(CodecError::TooLarge { field, size, max });
        }
        self.take(size, field)
    }

    /// Fails unless every byte has been read.
    ///
    /// # Errors
    /// [`CodecError::TrailingBytes`] naming the structure `field`.
    pub fn expect_end(&self, field: &'static str) -> Result<(), CodecError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(CodecError::TrailingBytes { field, extra: self.rest.len() })
        }
    }

    /// Fails unless every byte left is `pad`. TPM NV indices are read whole, and what
    /// follows the structure written to one is the index's fill, which depends on who
    /// wrote it: `0xFF` after an EK certificate in a vendor-provisioned index (the STMicro
    /// ST33 test vector), `0x00` after Azure's HCL report (the paravisor zero-fills its
    /// 2600-byte index).
    ///
    /// # Errors
    /// [`BadPadding`] naming the first other byte.
    pub fn expect_padding(&self, pad: u8) -> Result<(), BadPadding> {
        match self.rest.iter().position(|b| *b != pad) {
            None => Ok(()),
            Some(i) => {
                Err(BadPadding { offset: self.consumed + i, value: self.rest.get(i).copied().unwrap_or(pad) })
            }
        }
    }
}

/// Appends big-endian TPM wire encodings to a buffer (for structures this
/// crate produces itself, such as MakeCredential's output).
pub(crate) trait TpmWrite {
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    /// Writes a TPM2B; callers guarantee `bytes` fits in a `u16`.
    fn put_tpm2b(&mut self, bytes: &[u8]);
}

impl TpmWrite for Vec<u8> {
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_tpm2b(&mut self, bytes: &[u8]) {
        let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
        self.put_u16(len);
        self.extend_from_slice(bytes.get(..usize::from(len)).unwrap_or(bytes));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_names_field() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16_be("a"), Ok(0x0102));
        assert_eq!(r.u32_be("magic"), Err(CodecError::Truncated { field: "magic", needed: 4, available: 1 }));
    }

    #[test]
    fn tpm2b_respects_maximum_and_trailing_bytes() {
        let mut r = Reader::new(&[0, 3, 9, 9, 9, 7]);
        assert_eq!(
            r.clone().tpm2b(2, "extraData"),
            Err(CodecError::TooLarge { field: "extraData", size: 3, max: 2 })
        );
        assert_eq!(r.tpm2b(3, "extraData"), Ok(&[9u8, 9, 9][..]));
        assert_eq!(r.expect_end("x"), Err(CodecError::TrailingBytes { field: "x", extra: 1 }));
    }

    #[test]
    fn padding_is_the_fill_asked_for() {
        let mut erased = Reader::new(&[7, 7, 0xff, 0xff, 0x00]);
        erased.take(2, "structure").unwrap();
        assert_eq!(erased.expect_padding(0xff), Err(BadPadding { offset: 4, value: 0x00 }));
        let mut zeroed = Reader::new(&[7, 0, 0, 0]);
        zeroed.take(1, "structure").unwrap();
        assert_eq!(zeroed.expect_padding(0x00), Ok(()));
        assert_eq!(zeroed.expect_padding(0xff), Err(BadPadding { offset: 1, value: 0x00 }));
        assert_eq!(Reader::new(&[]).expect_padding(0xff), Ok(()));
    }
}
