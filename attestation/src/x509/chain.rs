//! Path building and validation (RFC 5280 §6.1, the subset certificate-based
//! attestation needs): leaf → intermediates, in any order → a trust anchor.
//!
//! Each link checks the issuer/subject names, the authority/subject key
//! identifiers when both are present, the signature over the TBS bytes as
//! received, and for the issuer: validity at the injected time, basicConstraints
//! cA TRUE (a trust anchor without basicConstraints is accepted, as old v1-style
//! roots are trusted by configuration), keyUsage keyCertSign when keyUsage is
//! present, pathLenConstraint (counting every intermediate, self-issued ones
//! included), and no unhandled critical extension. No policy processing, name
//! constraints or revocation.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use thiserror::Error;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::cert::Certificate;
use super::signature::SignatureError;
use super::store::TrustStore;
use super::{MAX_CHAIN_LEN, MAX_SIGNATURE_CHECKS};

/// Why a certificate does not chain to a trust anchor.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CertPathError {
    /// No configured or supplied CA has the issuer's name (and key identifier).
    #[error(
        "no trust anchor or intermediate CA named \"{issuer}\" (issuer of {subject}); \
         add that CA certificate to the trust store or pass it as an intermediate"
    )]
    UnknownIssuer {
        /// The certificate whose issuer is missing.
        subject: String,
        /// The issuer name looked for.
        issuer: String,
    },
    /// A certificate on the path has expired.
    #[error("certificate {subject} expired at {not_after} (verification time {now})")]
    Expired {
        /// The expired certificate.
        subject: String,
        /// Its notAfter.
        not_after: String,
        /// The verification time.
        now: String,
    },
    /// A certificate on the path is not yet valid.
    #[error("certificate {subject} is not valid before {not_before} (verification time {now})")]
    NotYetValid {
        /// The certificate.
        subject: String,
        /// Its notBefore.
        not_before: String,
        /// The verification time.
        now: String,
    },
    /// A signature could not be checked or did not verify.
    #[error("signature on {subject} by {issuer}: {source}")]
    Signature {
        /// The signed certificate.
        subject: String,
        /// The issuer whose key was used.
        issuer: String,
        /// What failed.
        source: SignatureError,
    },
    /// An issuer is not a CA.
    #[error("{subject} cannot issue {child}: basicConstraints cA is not TRUE")]
    NotCa {
        /// The would-be issuer.
        subject: String,
        /// The certificate it signed.
        child: String,
    },
    /// An issuer's keyUsage does not allow certificate signing.
    #[error("{subject} cannot issue {child}: keyUsage lacks keyCertSign")]
    NoKeyCertSign {
        /// The would-be issuer.
        subject: String,
        /// The certificate it signed.
        child: String,
    },
    /// Too many intermediates below a CA with a pathLenConstraint.
    #[error(
        "{subject} allows {path_len} intermediate CA(s) below it (pathLenConstraint), the path has {below}"
    )]
    PathLenExceeded {
        /// The constraining CA.
        subject: String,
        /// Its pathLenConstraint.
        path_len: u32,
        /// Intermediates below it on this path.
        below: usize,
    },
    /// A certificate has a critical extension this verifier does not process.
    #[error("certificate {subject} has critical extension {oid}, which this verifier does not process")]
    UnhandledCriticalExtension {
        /// The certificate.
        subject: String,
        /// The extension OID.
        oid: String,
    },
    /// No anchor within the maximum path length.
    #[error("no trust anchor within {max} certificates above {subject}")]
    TooLong {
        /// The certificate where the path got too long.
        subject: String,
        /// [`MAX_CHAIN_LEN`].
        max: usize,
    },
    /// The search made too many signature checks.
    #[error("gave up after {max} signature checks searching a path for {subject}; the intermediates are ambiguous")]
    SearchLimit {
        /// The leaf.
        subject: String,
        /// [`MAX_SIGNATURE_CHECKS`].
        max: usize,
    },
    /// The verification time cannot be represented.
    #[error("verification time is before 1970 or too far in the future")]
    BadTime,
}

/// A certificate path that verified at a given time: the proof a leaf chains to
/// an anchor. Only this module can build one.
#[derive(Debug, Clone)]
pub struct VerifiedChain {
    leaf: Arc<Certificate>,
    issuers: Arc<[Arc<Certificate>]>,
    verified_at: i64,
}

impl VerifiedChain {
    pub(super) fn new(leaf: Arc<Certificate>, issuers: Arc<[Arc<Certificate>]>, verified_at: i64) -> Self {
        Self { leaf, issuers, verified_at }
    }

    /// The certificate that was verified.
    #[must_use]
    pub fn leaf(&self) -> &Certificate {
        &self.leaf
    }

    /// The issuers from the leaf's issuer up to the trust anchor; empty when the
    /// leaf is itself a trust anchor.
    #[must_use]
    pub fn issuers(&self) -> &[Arc<Certificate>] {
        &self.issuers
    }

    /// The trust anchor the path ends at.
    #[must_use]
    pub fn anchor(&self) -> &Certificate {
        self.issuers.last().map_or(&self.leaf, |c| c)
    }

    /// Every certificate, leaf first, anchor last.
    pub fn certificates(&self) -> impl Iterator<Item = &Certificate> {
        std::iter::once(&*self.leaf).chain(self.issuers.iter().map(|c| &**c))
    }

    /// The verification time, in seconds since the Unix epoch.
    #[must_use]
    pub fn verified_at_unix(&self) -> i64 {
        self.verified_at
    }
}

pub(super) fn unix_seconds(now: SystemTime) -> Result<i64, CertPathError> {
    let secs = now.duration_since(UNIX_EPOCH).map_err(|_| CertPathError::BadTime)?.as_secs();
    i64::try_from(secs).map_err(|_| CertPathError::BadTime)
}

/// Validity and critical extensions of one certificate.
pub(super) fn check_certificate(cert: &Certificate, now: i64) -> Result<(), CertPathError> {
    if now < cert.not_before_unix() {
        return Err(CertPathError::NotYetValid {
            subject: cert.describe(),
            not_before: format_unix(cert.not_before_unix()),
            now: format_unix(now),
        });
    }
    if now > cert.not_after_unix() {
        return Err(CertPathError::Expired {
            subject: cert.describe(),
            not_after: format_unix(cert.not_after_unix()),
            now: format_unix(now),
        });
    }
    if let Some(oid) = cert.unhandled_critical_extension() {
        return Err(CertPathError::UnhandledCriticalExtension {
            subject: cert.describe(),
            oid: oid.to_owned(),
        });
    }
    Ok(())
}

/// A depth-first search for a path, trying trust anchors before intermediates.
pub(super) struct Search<'a> {
    store: &'a TrustStore,
    extra: &'a [Arc<Certificate>],
    now: i64,
    checks: usize,
    first_error: Option<CertPathError>,
}

impl<'a> Search<'a> {
    pub(super) fn new(store: &'a TrustStore, extra: &'a [Arc<Certificate>], now: i64) -> Self {
        Self { store, extra, now, checks: 0, first_error: None }
    }

    /// The issuers above `leaf`, ending at a trust anchor.
    pub(super) fn run(mut self, leaf: Arc<Certificate>) -> Result<Vec<Arc<Certificate>>, CertPathError> {
        let mut path = vec![leaf];
        if self.extend(&mut path) {
            path.remove(0);
            return Ok(path);
        }
        let leaf = path.first().map(|c| c.describe()).unwrap_or_default();
        Err(self.first_error.unwrap_or(CertPathError::TooLong { subject: leaf, max: MAX_CHAIN_LEN }))
    }

    fn record(&mut self, error: CertPathError) {
        self.first_error.get_or_insert(error);
    }

    fn extend(&mut self, path: &mut Vec<Arc<Certificate>>) -> bool {
        let Some(child) = path.last().cloned() else { return false };
        let candidates = self.store.candidates(&child, self.extra);
        if candidates.is_empty() {
            self.record(CertPathError::UnknownIssuer {
                subject: child.describe(),
                issuer: child.issuer().to_owned(),
            });
            return false;
        }
        for (candidate, is_anchor) in candidates {
            if path.iter().any(|c| c.fingerprint() == candidate.fingerprint()) {
                continue;
            }
            if path.len() >= MAX_CHAIN_LEN {
                self.record(CertPathError::TooLong { subject: child.describe(), max: MAX_CHAIN_LEN });
                return false;
            }
            // Intermediates between this candidate and the leaf.
            let below = path.len() - 1;
            if let Err(e) = self.check_issuer(&child, &candidate, is_anchor, below) {
                let stop = matches!(e, CertPathError::SearchLimit { .. });
                self.record(e);
                if stop {
                    return false;
                }
                continue;
            }
            path.push(candidate);
            if is_anchor || self.extend(path) {
                return true;
            }
            path.pop();
        }
        false
    }

    fn check_issuer(
        &mut self,
        child: &Certificate,
        issuer: &Certificate,
        is_anchor: bool,
        below: usize,
    ) -> Result<(), CertPathError> {
        self.checks += 1;
        if self.checks > MAX_SIGNATURE_CHECKS {
            return Err(CertPathError::SearchLimit { subject: child.describe(), max: MAX_SIGNATURE_CHECKS });
        }
        check_issuer_constraints(child, issuer, is_anchor, below)?;
        check_certificate(issuer, self.now)?;
        child.verify_issued_by(issuer).map_err(|source| CertPathError::Signature {
            subject: child.describe(),
            issuer: issuer.describe(),
            source,
        })
    }
}

fn check_issuer_constraints(
    child: &Certificate,
    issuer: &Certificate,
    is_anchor: bool,
    below: usize,
) -> Result<(), CertPathError> {
    let bc = issuer.basic_constraints();
    match bc {
        Some(bc) if bc.ca => {}
        None if is_anchor => {}
        _ => return Err(CertPathError::NotCa { subject: issuer.describe(), child: child.describe() }),
    }
    if issuer.may_sign_certificates() == Some(false) {
        return Err(CertPathError::NoKeyCertSign { subject: issuer.describe(), child: child.describe() });
    }
    if let Some(path_len) = bc.and_then(|bc| bc.path_len) {
        if usize::try_from(path_len).is_ok_and(|max| below > max) {
            return Err(CertPathError::PathLenExceeded { subject: issuer.describe(), path_len, below });
        }
    }
    Ok(())
}

/// RFC 3339 (`YYYY-MM-DDTHH:MM:SSZ`) for seconds since the epoch; the bare number outside
/// the years 0-9999.
fn format_unix(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|time| time.format(&Rfc3339).ok())
        .unwrap_or_else(|| secs.to_string())
}

#[cfg(test)]
mod tests {
    use super::format_unix;

    #[test]
    fn formats_times() {
        assert_eq!(format_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_unix(1_760_968_063), "2025-10-20T13:47:43Z");
        assert_eq!(format_unix(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_unix(-1), "1969-12-31T23:59:59Z");
    }
}
