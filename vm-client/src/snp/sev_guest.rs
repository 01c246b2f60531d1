//! `/dev/sev-guest`: the Linux SEV-SNP guest driver (include/uapi/linux/sev-guest.h). The
//! extended report request (`SNP_GET_EXT_REPORT`) returns the report and, when the host
//! provides them, the VCEK/VLEK certificates in the GHCB certificate table format.
//!
//! This module is the only place in the crate allowed `unsafe`: one `ioctl(2)` call whose
//! arguments are described at the call.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};

use super::{GuestError, SnpDevice, SnpEvidence};

/// `struct snp_report_req` (sev-guest.h): user data and the VMPL to report at.
#[repr(C)]
#[derive(Debug)]
struct ReportRequest {
    user_data: [u8; 64],
    vmpl: u32,
    reserved: [u8; 28],
}

/// `struct snp_ext_report_req`: the report request plus the buffer for certificates.
#[repr(C)]
#[derive(Debug)]
struct ExtReportRequest {
    data: ReportRequest,
    certs_address: u64,
    certs_len: u32,
}

/// `struct snp_report_resp`: the firmware's MSG_REPORT_RSP in 4000 bytes.
#[repr(C)]
#[derive(Debug)]
struct ReportResponse {
    data: [u8; 4000],
}

/// `struct snp_guest_request_ioctl`.
#[repr(C)]
#[derive(Debug)]
struct GuestRequest {
    msg_version: u8,
    req_data: u64,
    resp_data: u64,
    /// `exitinfo2`: firmware error in the low 32 bits, VMM error in the high 32 bits.
    exitinfo2: u64,
}

/// `SNP_GET_EXT_REPORT = _IOWR('S', 0x2, struct snp_guest_request_ioctl)`.
const SNP_GET_EXT_REPORT: libc::c_ulong = ioc_readwrite(b'S', 0x2, std::mem::size_of::<GuestRequest>());
/// The driver's message version.
const MSG_VERSION: u8 = 1;
/// VMM error: the certificate buffer is too small (`certs_len` then holds the size needed).
const VMM_ERR_INVALID_LEN: u32 = 1;
/// First certificate buffer size (pages; the kernel requires a page multiple).
const CERTS_PAGES: usize = 4;
const PAGE: usize = 4096;
/// Largest certificate buffer this client allocates.
const MAX_CERTS_LEN: usize = 64 * 1024;
/// MSG_REPORT_RSP (SEV-SNP ABI, table 25): STATUS at 0, REPORT_SIZE at 4, REPORT at 0x20.
const RESPONSE_REPORT_OFFSET: usize = 0x20;

/// `_IOWR(type, nr, size)` of the Linux ioctl encoding (asm-generic/ioctl.h).
const fn ioc_readwrite(kind: u8, nr: u8, size: usize) -> libc::c_ulong {
    const READ_WRITE: libc::c_ulong = 3;
    #[allow(clippy::cast_possible_truncation)] // the struct is 32 bytes; _IOC_SIZEBITS is 14
    let size = (size as libc::c_ulong) & 0x3fff;
    (READ_WRITE << 30) | (size << 16) | ((kind as libc::c_ulong) << 8) | (nr as libc::c_ulong)
}

/// The SEV-SNP guest device.
#[derive(Debug)]
pub struct SevGuest {
    path: PathBuf,
    file: File,
}

impl SevGuest {
    /// Opens the device.
    ///
    /// # Errors
    /// When it does not exist (not an SEV-SNP guest) or cannot be opened.
    pub fn open(path: &Path) -> Result<Self, GuestError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| GuestError::Device { device: path.display().to_string(), reason: e.to_string() })?;
        Ok(Self { path: path.to_owned(), file })
    }

    fn fail(&self, reason: String) -> GuestError {
        GuestError::Device { device: self.path.display().to_string(), reason }
    }

    /// One SNP_GET_EXT_REPORT with a certificate buffer of `certs.len()` bytes. Returns the
    /// response, or the certificate size the host needs.
    fn request(
        &self,
        report_data: &[u8; 64],
        vmpl: u32,
        certs: &mut [u8],
    ) -> Result<Result<Box<ReportResponse>, usize>, GuestError> {
        let mut response = Box::new(ReportResponse { data: [0; 4000] });
        let mut ext = ExtReportRequest {
            data: ReportRequest { user_data: *report_data, vmpl, reserved: [0; 28] },
            certs_address: certs.as_mut_ptr() as u64,
            certs_len: u32::try_from(certs.len())
                .map_err(|_| self.fail("certificate buffer too large".into()))?,
        };
        let mut request = GuestRequest {
            msg_version: MSG_VERSION,
            req_data: std::ptr::addr_of_mut!(ext) as u64,
            resp_data: std::ptr::addr_of_mut!(*response) as u64,
            exitinfo2: 0,
        };
        // SAFETY: the fd is an open /dev/sev-guest. The driver reads `request` (32 bytes,
        // the layout of `struct snp_guest_request_ioctl`) and writes back `exitinfo2`; through
        // `req_data` it reads `ext` (the layout of `struct snp_ext_report_req`) and writes
        // `certs_len`; it writes at most `certs_len` bytes at `certs_address` (the live,
        // exclusively borrowed `certs` slice of exactly that length) and at most 4000 bytes
        // at `resp_data` (the boxed `ReportResponse` of exactly 4000 bytes). All of them outlive
        // the call, which is synchronous and keeps no pointer afterwards.
        let rc = unsafe {
            libc::ioctl(self.file.as_raw_fd(), SNP_GET_EXT_REPORT, std::ptr::addr_of_mut!(request))
        };
        if rc == 0 {
            return Ok(Ok(response));
        }
        let errno = std::io::Error::last_os_error();
        let vmm_error = u32::try_from(request.exitinfo2 >> 32).unwrap_or(u32::MAX);
        let fw_error = u32::try_from(request.exitinfo2 & 0xffff_ffff).unwrap_or(u32::MAX);
        if vmm_error == VMM_ERR_INVALID_LEN {
            let needed = usize::try_from(ext.certs_len).map_err(|_| self.fail("certificate size".into()))?;
            return Ok(Err(needed));
        }
        Err(self.fail(format!(
            "SNP_GET_EXT_REPORT failed: {errno} (firmware error {fw_error:#x}, VMM error {vmm_error:#x})"
        )))
    }
}

impl SnpDevice for SevGuest {
    fn report(&self, report_data: &[u8; 64], vmpl: u32) -> Result<SnpEvidence, GuestError> {
        let mut certs = vec![0u8; CERTS_PAGES * PAGE];
        let response = match self.request(report_data, vmpl, &mut certs)? {
            Ok(response) => response,
            Err(needed) => {
                let pages = needed.div_ceil(PAGE).max(1);
                let len = pages.checked_mul(PAGE).filter(|len| *len <= MAX_CERTS_LEN).ok_or_else(|| {
                    self.fail(format!(
                        "the host's certificates need {needed} bytes, more than {MAX_CERTS_LEN}"
                    ))
                })?;
                certs = vec![0u8; len];
                self.request(report_data, vmpl, &mut certs)?.map_err(|needed| {
                    self.fail(format!("certificate size changed to {needed} between requests"))
                })?
            }
        };
        let report = parse_response(&response.data).map_err(|reason| self.fail(reason))?;
        let certificate_table = certs.iter().any(|b| *b != 0).then_some(certs);
        Ok(SnpEvidence { report, certificate_table })
    }
}

/// The report inside MSG_REPORT_RSP, after checking its status and size.
fn parse_response(data: &[u8]) -> Result<Vec<u8>, String> {
    let word = |at: usize| {
        data.get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes)
            .ok_or_else(|| "response too short".to_owned())
    };
    let status = word(0)?;
    if status != 0 {
        return Err(format!("firmware status {status:#x} in MSG_REPORT_RSP"));
    }
    let size = usize::try_from(word(4)?).map_err(|_| "report size".to_owned())?;
    data.get(RESPONSE_REPORT_OFFSET..RESPONSE_REPORT_OFFSET.saturating_add(size))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| format!("report size {size} exceeds the response"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_ioctl_number_matches_the_kernel_header() {
        // _IOWR('S', 0x2, struct snp_guest_request_ioctl) with a 32-byte struct.
        assert_eq!(std::mem::size_of::<GuestRequest>(), 32);
        assert_eq!(std::mem::size_of::<ReportRequest>(), 96);
        assert_eq!(std::mem::size_of::<ExtReportRequest>(), 112);
        assert_eq!(SNP_GET_EXT_REPORT, 0xc020_5302);
    }

    #[test]
    fn a_response_is_checked() {
        let mut data = [0u8; 4000];
        data[4] = 0xa0; // 1184 = 0x4a0
        data[5] = 0x04;
        data[0x20] = 7;
        let report = parse_response(&data).unwrap();
        assert_eq!(report.len(), 1184);
        assert_eq!(report.first(), Some(&7));
        data[0] = 0x16;
        assert!(parse_response(&data).unwrap_err().contains("status 0x16"));
        data[0] = 0;
        data[5] = 0x10; // 4096 + 0xa0
        assert!(parse_response(&data).unwrap_err().contains("exceeds"));
    }

    #[test]
    fn a_missing_device_is_a_clear_error() {
        let err = SevGuest::open(Path::new("/nonexistent/sev-guest")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/sev-guest"), "{err}");
    }
}
