//! The TPM path, on tss-esapi: the endorsement key and its certificate ([`ek`]), the
//! attestation key kept at a persistent handle ([`ak`]), the credential key K ([`key`]) and its
//! TSS2 key file ([`keyfile`]), the broker's challenge ([`challenge`]), sealed secrets
//! ([`unseal`]), signing with K ([`sign`]) and bounded NV reads ([`nv`]).
//!
//! Every transient object and session is flushed after use: without a resource manager
//! (swtpm, or `/dev/tpm0`) the TPM has only a few slots.

pub mod ak;
pub mod attest;
pub mod challenge;
pub mod ek;
pub mod key;
pub mod keyfile;
pub mod nv;
pub mod sign;
pub mod unseal;

use std::str::FromStr as _;

use tss_esapi::constants::{CapabilityType, SessionType};
use tss_esapi::handles::{AuthHandle, KeyHandle, ObjectHandle, SessionHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::CapabilityData;
use tss_esapi::structures::{Digest, DigestList, SymmetricDefinition};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::Context;

/// Errors of the TPM path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TpmError {
    /// A TPM command (or the TSS) failed.
    #[error("TPM: {during}: {source}")]
    Tss {
        /// What the client was doing.
        during: &'static str,
        /// The TSS's error.
        source: tss_esapi::Error,
    },
    /// A structure from the broker, a file or the TPM is malformed.
    #[error("{what} is malformed: {reason}")]
    Malformed {
        /// Which structure.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The object at the AK's persistent handle is not the AK this client created.
    #[error("persistent handle {handle:#010x} holds an object that is not this client's AK ({reason}); evict it or choose another evidence.ak_handle")]
    ForeignAk {
        /// The handle.
        handle: u32,
        /// What differs.
        reason: String,
    },
    /// Reading or writing the state directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The broker asked for something this client cannot do.
    #[error("{0}")]
    Unsupported(String),
}

/// Shorthand for mapping a tss-esapi error.
pub(crate) fn tss(during: &'static str) -> impl FnOnce(tss_esapi::Error) -> TpmError {
    move |source| TpmError::Tss { during, source }
}

/// Opens an ESAPI context on the configured TCTI.
///
/// # Errors
/// When the TCTI string is invalid or the TPM cannot be reached.
pub fn open(tcti: &str) -> Result<Context, TpmError> {
    let conf = TctiNameConf::from_str(tcti).map_err(tss("parsing the TCTI configuration"))?;
    Context::new(conf).map_err(tss("opening the TPM"))
}

/// The contents of a `TPM2B_*` (TPM 2.0 Part 2, 10.4): a big-endian u16 size, then exactly
/// that many bytes.
pub(crate) fn tpm2b_contents<'a>(what: &'static str, bytes: &'a [u8]) -> Result<&'a [u8], TpmError> {
    let malformed = |reason: String| TpmError::Malformed { what, reason };
    let (size, rest) =
        bytes.split_at_checked(2).ok_or_else(|| malformed("shorter than its size field".into()))?;
    let size = usize::from(u16::from_be_bytes(
        <[u8; 2]>::try_from(size).map_err(|_| malformed("size field".into()))?,
    ));
    if rest.len() != size {
        return Err(malformed(format!("size field says {size} bytes, {} follow", rest.len())));
    }
    Ok(rest)
}

/// Wraps bytes as a `TPM2B_*`.
pub(crate) fn tpm2b(contents: &[u8]) -> Result<Vec<u8>, TpmError> {
    let size = u16::try_from(contents.len()).map_err(|_| TpmError::Malformed {
        what: "TPM2B contents",
        reason: "longer than 65535 bytes".into(),
    })?;
    let mut out = size.to_be_bytes().to_vec();
    out.extend_from_slice(contents);
    Ok(out)
}

/// Whether a persistent handle or NV index is present (TPM2_GetCapability(TPM_CAP_HANDLES)).
pub(crate) fn handle_present(context: &mut Context, handle: u32) -> Result<bool, TpmError> {
    let (data, _) = context
        .execute_without_session(|ctx| ctx.get_capability(CapabilityType::Handles, handle, 1))
        .map_err(tss("listing handles"))?;
    let CapabilityData::Handles(list) = data else {
        return Err(TpmError::Malformed {
            what: "TPM_CAP_HANDLES answer",
            reason: "not a handle list".into(),
        });
    };
    Ok(list.iter().any(|h| u32::from(*h) == handle))
}

/// Runs `f`, then flushes `handle` whether `f` succeeded or not.
pub(crate) fn flushing<T>(
    context: &mut Context,
    handle: impl Into<ObjectHandle>,
    f: impl FnOnce(&mut Context) -> Result<T, TpmError>,
) -> Result<T, TpmError> {
    let handle = handle.into();
    let result = f(context);
    let flushed = context.flush_context(handle).map_err(tss("flushing a transient object"));
    let value = result?;
    flushed?;
    Ok(value)
}

/// PolicyOR branches of the high-range EK templates' authPolicy (TCG EK Credential Profile
/// 2.0, B.6: PolicyA and PolicyC, SHA-384).
const POLICY_A_SHA384: [u8; 48] = [
    0x8b, 0xbf, 0x22, 0x66, 0x53, 0x7c, 0x17, 0x1c, 0xb5, 0x6e, 0x40, 0x3c, 0x4d, 0xc1, 0xd4, 0xb6, 0x4f,
    0x43, 0x26, 0x11, 0xdc, 0x38, 0x6e, 0x6f, 0x53, 0x20, 0x50, 0xc3, 0x27, 0x8c, 0x93, 0x0e, 0x14, 0x3e,
    0x8b, 0xb1, 0x13, 0x38, 0x24, 0xcc, 0xb4, 0x31, 0x05, 0x38, 0x71, 0xc6, 0xdb, 0x53,
];
const POLICY_C_SHA384: [u8; 48] = [
    0xd6, 0x03, 0x2c, 0xe6, 0x1f, 0x2f, 0xb3, 0xc2, 0x40, 0xeb, 0x3c, 0xf6, 0xa3, 0x32, 0x37, 0xef, 0x2b,
    0x6a, 0x16, 0xf4, 0x29, 0x3c, 0x22, 0xb4, 0x55, 0xe2, 0x61, 0xcf, 0xfd, 0x21, 0x7a, 0xd5, 0xb4, 0x94,
    0x7c, 0x2d, 0x73, 0xe6, 0x30, 0x05, 0xee, 0xd2, 0xdc, 0x2b, 0x35, 0x93, 0xd1, 0x65,
];

/// Starts a policy session that satisfies the EK's authPolicy (PolicySecret(endorsement),
/// and for the SHA-384 high-range templates PolicyOR over PolicyA/PolicyC), for one command.
/// The caller flushes it (see [`with_ek_session`]).
fn ek_policy_session(context: &mut Context, ek: KeyHandle) -> Result<AuthSession, TpmError> {
    let (public, _, _) = context.read_public(ek).map_err(tss("reading the EK's public area"))?;
    let hash = public.name_hashing_algorithm();
    let session = context
        .start_auth_session(None, None, None, SessionType::Policy, SymmetricDefinition::AES_128_CFB, hash)
        .map_err(tss("starting the EK policy session"))?
        .ok_or_else(|| TpmError::Malformed {
            what: "policy session",
            reason: "TPM returned no session".into(),
        })?;
    let policy = PolicySession::try_from(session).map_err(tss("policy session handle"))?;
    let satisfied = (|| {
        context
            .execute_with_nullauth_session(|ctx| {
                ctx.policy_secret(
                    policy,
                    AuthHandle::Endorsement,
                    Default::default(),
                    Default::default(),
                    Default::default(),
                    None,
                )
            })
            .map_err(tss("PolicySecret(endorsement)"))?;
        match hash {
            HashingAlgorithm::Sha256 => Ok(()),
            HashingAlgorithm::Sha384 => {
                let mut branches = DigestList::new();
                for branch in [POLICY_A_SHA384.as_slice(), POLICY_C_SHA384.as_slice()] {
                    branches
                        .add(Digest::try_from(branch).map_err(tss("policy digest"))?)
                        .map_err(tss("policy digest list"))?;
                }
                context.policy_or(policy, branches).map_err(tss("PolicyOR for the EK"))
            }
            other => Err(TpmError::Unsupported(format!("EK with name algorithm {other:?}"))),
        }
    })();
    if let Err(e) = satisfied {
        let _ = context.flush_context(SessionHandle::from(session).into());
        return Err(e);
    }
    Ok(session)
}

/// Runs `f` with an EK policy session as session 2 (after a password session for the other
/// handle) or alone, then flushes the session.
pub(crate) fn with_ek_session<T>(
    context: &mut Context,
    ek: KeyHandle,
    ek_is_second: bool,
    f: impl FnOnce(&mut Context) -> tss_esapi::Result<T>,
    during: &'static str,
) -> Result<T, TpmError> {
    let session = ek_policy_session(context, ek)?;
    let sessions = if ek_is_second {
        (Some(AuthSession::Password), Some(session), None)
    } else {
        (Some(session), None, None)
    };
    let result = context.execute_with_sessions(sessions, f).map_err(tss(during));
    // A policy session is consumed (flushed by the TPM) only on success with
    // continueSession clear; flush it either way and ignore "already gone".
    let _ = context.flush_context(SessionHandle::from(session).into());
    context.clear_sessions();
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tpm2b_round_trip() {
        let wrapped = tpm2b(&[1, 2, 3]).unwrap();
        assert_eq!(wrapped, [0, 3, 1, 2, 3]);
        assert_eq!(tpm2b_contents("x", &wrapped).unwrap(), [1, 2, 3]);
    }

    #[test]
    fn tpm2b_with_a_wrong_size_is_refused() {
        assert!(tpm2b_contents("x", &[0, 4, 1, 2, 3])
            .unwrap_err()
            .to_string()
            .contains("says 4 bytes, 3 follow"));
        assert!(tpm2b_contents("x", &[0, 1, 1, 2]).is_err());
        assert!(tpm2b_contents("x", &[0]).is_err());
        assert!(tpm2b(&vec![0; 70_000]).is_err());
    }
}
