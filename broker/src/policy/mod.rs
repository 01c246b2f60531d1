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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mooring_attestation::snp::appraisal::SnpAppraisal;
use mooring_attestation::tpm::alg::HashAlg;
use sha2::{Digest, Sha256};

pub(crate) use self::class::Class;
use self::class::SecretFiles;
use self::file::PolicyFile;
pub(crate) use self::tpm::TpmRules;
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
        Self::parse(&read_policy(path)?, path)
    }

    /// A proposed policy from a file ([`Policy::parse_proposal`]: its secret files are
    /// not read).
    pub(crate) fn load_proposal(path: &Path) -> Result<Self, PolicyError> {
        Self::parse_proposal(&read_policy(path)?, path)
    }

    /// Parses policy text; `path` names it in errors and anchors secret files.
    pub(crate) fn parse(text: &str, path: &Path) -> Result<Self, PolicyError> {
        Self::compile(text, path, SecretFiles::Read)
    }

    /// Parses a proposed policy for a dry run: everything is checked but its secret files,
    /// which are not read (a dry run releases nothing).
    pub(crate) fn parse_proposal(text: &str, path: &Path) -> Result<Self, PolicyError> {
        Self::compile(text, path, SecretFiles::Unread)
    }

    fn compile(text: &str, path: &Path, files: SecretFiles) -> Result<Self, PolicyError> {
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
            let class = Class::compile(class, base, files, &svid_audiences).map_err(|e| {
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

    /// Whether some TPM class matches on enrollment (`enrolled = true`): then `begin` needs
    /// the administrator's word on an EK even when it has a certificate.
    pub(crate) fn matches_enrollment(&self) -> bool {
        self.classes.iter().any(|c| c.evidence == EvidenceKind::Tpm && c.enrolled_only())
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
        self.match_measurement(EvidenceKind::Snp, appraisal, chip_id, enrolled)
    }

    /// The first Azure class that admits this vTPM (`ek_id`: its EK's hardware identity) and
    /// launch measurement.
    pub(crate) fn match_azure(
        &self,
        appraisal: &SnpAppraisal,
        ek_id: &str,
        enrolled: bool,
    ) -> Result<&Class, Refusal> {
        self.match_measurement(EvidenceKind::Azure, appraisal, ek_id, enrolled)
    }

    /// The first class of `kind` that admits the launch measurement and then the hardware
    /// identity: a measurement no class lists is `snp_measurement`; one some class lists
    /// from hardware none of those classes admits is `no_matching_class`, naming the
    /// identity in full (what to add to `hardware_ids`, or to enroll).
    fn match_measurement(
        &self,
        kind: EvidenceKind,
        appraisal: &SnpAppraisal,
        hardware_id: &str,
        enrolled: bool,
    ) -> Result<&Class, Refusal> {
        let (classes, who) = match kind {
            EvidenceKind::Azure => ("Azure", "vTPM EK"),
            _ => ("SEV-SNP", "chip"),
        };
        let mut measured = self
            .classes
            .iter()
            .filter(|c| c.evidence == kind)
            .filter(|c| c.snp.as_ref().is_some_and(|rules| rules.admits_measurement(appraisal)))
            .peekable();
        if measured.peek().is_none() {
            return Err(Refusal::new(
                Code::SnpMeasurement,
                format!(
                    "no {classes} class admits measurement {} (from {who} {hardware_id})",
                    hex::encode(appraisal.report().measurement()),
                ),
            ));
        }
        measured.find(|c| c.matches_identity(hardware_id, None, enrolled)).ok_or_else(|| {
            Refusal::new(
                Code::NoMatchingClass,
                format!(
                    "no {classes} class that admits this measurement admits {who} {hardware_id} ({}): \
                     add it to the class's [class.match] hardware_ids, or enroll it",
                    if enrolled { "enrolled" } else { "not enrolled" }
                ),
            )
        })
    }

    /// What an Azure VM quotes: every PCR some Azure class appraises (all quote the
    /// sha256 bank); `None` when no class admits Azure VMs.
    pub(crate) fn azure_selection(&self) -> Option<BTreeMap<String, Vec<u8>>> {
        let mut indices: Vec<u8> = self
            .classes
            .iter()
            .filter(|c| c.evidence == EvidenceKind::Azure)
            .filter_map(|c| c.tpm())
            .flat_map(|rules| rules.pcrs().iter().copied())
            .collect();
        if indices.is_empty() {
            return None;
        }
        indices.sort_unstable();
        indices.dedup();
        Some(BTreeMap::from([(HashAlg::Sha256.name().to_owned(), indices)]))
    }
}

fn read_policy(path: &Path) -> Result<String, PolicyError> {
    std::fs::read_to_string(path).map_err(|e| PolicyError {
        file: path.to_owned(),
        line: None,
        message: format!("cannot read: {e}"),
    })
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
