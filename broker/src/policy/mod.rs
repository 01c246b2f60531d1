//! Policy: which VMs are admitted, what they must show, and what they receive.
//!
//! Fail closed: an empty policy admits nothing; every class must say how VMs match it
//! and what boot state it requires; a class only accepts the evidence kind it names.

mod boot;
mod class;
mod file;
pub(crate) mod learn;
mod snp;
mod tpm;

use std::path::{Path, PathBuf};

use mooring_attestation::snp::appraisal::SnpAppraisal;
use sha2::{Digest, Sha256};

pub(crate) use self::class::Class;
use self::file::PolicyFile;
use crate::records::EvidenceKind;
use crate::refusal::{Code, Refusal};

/// Largest secret a class may release: `TPM2B_SENSITIVE_DATA` holds 128 bytes.
pub(crate) const MAX_SECRET_BYTES: usize = 128;

/// A policy file that could not be loaded; names the file and line.
#[derive(Debug, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub(crate) struct PolicyError {
    pub(crate) file: PathBuf,
    pub(crate) line: Option<usize>,
    pub(crate) message: String,
}

/// A loaded, checked policy.
#[derive(Debug)]
pub(crate) struct Policy {
    classes: Vec<Class>,
    digest: String,
}

/// A class-level error; `at` is the byte offset of a table more precise than the class.
#[derive(Debug)]
struct CompileError {
    at: Option<usize>,
    message: String,
}

impl From<String> for CompileError {
    fn from(message: String) -> Self {
        Self { at: None, message }
    }
}

impl From<&str> for CompileError {
    fn from(message: &str) -> Self {
        Self { at: None, message: message.to_owned() }
    }
}

/// A releasable secret.
#[derive(Clone)]
pub(crate) struct Secret {
    pub(crate) name: String,
    pub(crate) value: Vec<u8>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret").field("name", &self.name).field("value", &"<redacted>").finish()
    }
}

/// A TPM asking to be admitted, as far as `begin` knows: its EK, who certified it, and
/// whether an administrator enrolled it (a blocked one never gets here).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TpmApplicant<'a> {
    pub(crate) ek_issuer: Option<&'a str>,
    pub(crate) hardware_id: &'a str,
    pub(crate) enrolled: bool,
}

impl Policy {
    /// Loads and checks `path`.
    pub(crate) fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
            file: path.to_owned(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, path)
    }

    /// Parses policy text; `path` names it in errors and anchors secret files.
    pub(crate) fn parse(text: &str, path: &Path) -> Result<Self, PolicyError> {
        let error =
            |line: Option<usize>, message: String| PolicyError { file: path.to_owned(), line, message };
        let parsed: PolicyFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|span| line_of(text, span.start));
            error(line, e.message().trim().to_owned())
        })?;
        if parsed.version != 1 {
            return Err(error(None, format!("version {} is not supported (only 1)", parsed.version)));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let svid_audiences: Vec<(String, String)> = parsed
            .classes
            .iter()
            .flat_map(|c| c.get_ref().audiences.iter().map(|a| (a.clone(), c.get_ref().name.clone())))
            .collect();
        let mut classes: Vec<Class> = Vec::new();
        for spanned in parsed.classes {
            let line = line_of(text, spanned.span().start);
            let class = spanned.into_inner();
            let name = class.name.clone();
            if classes.iter().any(|c| c.name == name) {
                return Err(error(Some(line), format!("class {name:?} is defined twice")));
            }
            let class = Class::compile(class, base, &svid_audiences).map_err(|e| {
                let line = e.at.map_or(line, |offset| line_of(text, offset));
                error(Some(line), format!("class {name:?}: {}", e.message))
            })?;
            classes.push(class);
        }
        Ok(Self { classes, digest: hex::encode(Sha256::digest(text.as_bytes())) })
    }

    /// SHA-256 of the policy text (written into audit records).
    pub(crate) fn digest(&self) -> &str {
        &self.digest
    }

    /// Classes in file order.
    pub(crate) fn classes(&self) -> &[Class] {
        &self.classes
    }

    /// A class by name.
    pub(crate) fn class(&self, name: &str) -> Option<&Class> {
        self.classes.iter().find(|c| c.name == name)
    }

    /// The first TPM class that admits this EK.
    pub(crate) fn match_tpm(&self, who: TpmApplicant<'_>) -> Result<&Class, Refusal> {
        self.classes
            .iter()
            .filter(|c| c.evidence == EvidenceKind::Tpm)
            .find(|c| c.matches_identity(who.hardware_id, who.ek_issuer, who.enrolled))
            .ok_or_else(|| {
                Refusal::new(
                    Code::NoMatchingClass,
                    format!(
                        "no TPM class admits EK {} (issuer {}, {})",
                        who.hardware_id,
                        who.ek_issuer.unwrap_or("none: enrolled EK without certificate"),
                        if who.enrolled { "enrolled" } else { "not enrolled" }
                    ),
                )
            })
    }

    /// The first SEV-SNP class that admits this chip and launch measurement.
    /// `chip_id`: the hex of the report's hardware identity ([`VerifiedReport::hw_id`]).
    ///
    /// [`VerifiedReport::hw_id`]: mooring_attestation::snp::VerifiedReport::hw_id
    pub(crate) fn match_snp(
        &self,
        appraisal: &SnpAppraisal,
        chip_id: &str,
        enrolled: bool,
    ) -> Result<&Class, Refusal> {
        self.classes
            .iter()
            .filter(|c| c.evidence == EvidenceKind::Snp)
            .filter(|c| c.matches_identity(chip_id, None, enrolled))
            .find(|c| c.snp.as_ref().is_some_and(|rules| rules.admits_measurement(appraisal)))
            .ok_or_else(|| {
                Refusal::new(
                    Code::SnpMeasurement,
                    format!(
                        "no SEV-SNP class admits measurement {} from chip {}",
                        hex::encode(appraisal.report().measurement()),
                        short(chip_id)
                    ),
                )
            })
    }
}

fn short(id: &str) -> &str {
    id.get(..16).unwrap_or(id)
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).map_or(1, |before| before.matches('\n').count() + 1)
}

#[cfg(test)]
mod boot_tests;
#[cfg(test)]
mod tests;
