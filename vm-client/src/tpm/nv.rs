//! Reading an NV index whole, bounded: its declared size is checked against what the caller
//! accepts before anything is read, and it is read in chunks no larger than the TPM's
//! `TPM_PT_NV_BUFFER_MAX` (TPM 2.0 Part 2, 6.13), each answer checked for its length.

use tss_esapi::abstraction::nv::max_nv_buffer_size;
use tss_esapi::handles::{NvIndexHandle, NvIndexTpmHandle, TpmHandle};
use tss_esapi::interface_types::resource_handles::NvAuth;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::MaxNvBuffer;
use tss_esapi::Context;

use super::{handle_present, tss, TpmError};

/// Whose authorization reads the index (empty password either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NvReader {
    /// The owner hierarchy (TPMA_NV_OWNERREAD): Azure's HCL report.
    Owner,
    /// The index itself (TPMA_NV_AUTHREAD): EK certificates.
    Index,
}

/// The contents of NV index `index`, or `None` when it is not defined.
///
/// # Errors
/// When the index is larger than `max` bytes, the TPM refuses, or it answers a read with
/// another length than asked.
pub fn read(
    context: &mut Context,
    index: u32,
    reader: NvReader,
    max: usize,
) -> Result<Option<Vec<u8>>, TpmError> {
    if !handle_present(context, index)? {
        return Ok(None);
    }
    let tpm_handle = NvIndexTpmHandle::new(index).map_err(tss("NV index handle"))?;
    let handle = NvIndexHandle::from(
        context
            .execute_without_session(|ctx| ctx.tr_from_tpm_public(TpmHandle::NvIndex(tpm_handle)))
            .map_err(tss("opening an NV index"))?,
    );
    let (public, _) = context
        .execute_without_session(|ctx| ctx.nv_read_public(handle))
        .map_err(tss("reading an NV index's public area"))?;
    let size = public.data_size();
    if size > max {
        return Err(TpmError::Malformed {
            what: "NV index",
            reason: format!("{index:#010x} holds {size} bytes, more than the {max} expected"),
        });
    }
    let chunk = max_nv_buffer_size(context)
        .map_err(tss("reading TPM_PT_NV_BUFFER_MAX"))?
        .clamp(1, MaxNvBuffer::MAX_SIZE);
    let auth = match reader {
        NvReader::Owner => NvAuth::Owner,
        NvReader::Index => NvAuth::NvIndex(handle),
    };
    let mut contents = Vec::with_capacity(size);
    while contents.len() < size {
        let want = (size - contents.len()).min(chunk);
        let (offset, length) = match (u16::try_from(contents.len()), u16::try_from(want)) {
            (Ok(offset), Ok(length)) => (offset, length),
            _ => {
                return Err(TpmError::Malformed {
                    what: "NV index",
                    reason: format!("{index:#010x}: offset or length past 65535"),
                })
            }
        };
        let data = context
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.nv_read(auth, handle, length, offset)
            })
            .map_err(tss("TPM2_NV_Read"))?;
        let data = data.value();
        if data.len() != want {
            return Err(TpmError::Malformed {
                what: "TPM2_NV_Read answer",
                reason: format!("{} bytes for the {want} asked at offset {offset}", data.len()),
            });
        }
        contents.extend_from_slice(data);
    }
    Ok(Some(contents))
}
