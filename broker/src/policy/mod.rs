//! Policy: which VMs are admitted, what they must show, and what they receive.
//!
//! Fail closed: an empty policy admits nothing; every class must say how VMs match it
//! and what boot state it requires; a class only accepts the evidence kind it names.

mod boot;
mod file;
pub(crate) mod learn;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use mooring_attestation::snp::TcbParts;
use mooring_attestation::tpm::alg::HashAlg;
use mooring_attestation::tpm::appraisal::TpmAppraisal;
use mooring_attestation::tpm::pcr::PcrSelection;
use sha2::{Digest, Sha256};

use self::boot::{BootRules, NOT_IN_FIRMWARE_LOG};
use self::file::{ClassFile, Evidence, PolicyFile};
use crate::records::EvidenceKind;
use crate::refusal::{Code, Refusal};
use mooring_attestation::protocol::IdentityStatus;

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

/// One class of VMs.
#[derive(Debug)]
pub(crate) struct Class {
    name: String,
    evidence: EvidenceKind,
    spiffe_id: String,
    ttl_seconds: u32,
    audiences: Vec<String>,
    networks: Vec<IpNet>,
    ek_issuers: Vec<String>,
    hardware_ids: Vec<String>,
    enrolled_only: bool,
    tpm: Option<TpmRules>,
    snp: Option<SnpRules>,
    secrets: Vec<Secret>,
}

/// What a TPM VM must show.
#[derive(Debug)]
pub(crate) struct TpmRules {
    selection: PcrSelection,
    bank: HashAlg,
    pcrs: Vec<u8>,
    pcr_values: BTreeMap<u8, Vec<Vec<u8>>>,
    boot: Option<BootRules>,
    seal_selection: PcrSelection,
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

/// What an SEV-SNP VM must show.
#[derive(Debug)]
pub(crate) struct SnpRules {
    measurements: Vec<Vec<u8>>,
    min_tcb: TcbParts,
    allow_debug: bool,
    max_vmpl: u32,
}

/// The first component of `have` below `min`, as (name, have, min).
fn tcb_below(have: &TcbParts, min: &TcbParts) -> Option<(&'static str, u8, u8)> {
    have.components()
        .into_iter()
        .zip(min.components())
        .find(|((_, have), (_, need))| have < need)
        .map(|((name, have), (_, need))| (name, have, need))
}

/// The facts of a verified SEV-SNP report the policy looks at.
#[derive(Debug, Clone)]
pub(crate) struct SnpFacts {
    pub(crate) chip_id: String,
    pub(crate) measurement: Vec<u8>,
    pub(crate) debug_allowed: bool,
    pub(crate) vmpl: u32,
    pub(crate) reported_tcb: TcbParts,
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

/// Who is asking to be admitted, as far as `begin` knows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TpmIdentity<'a> {
    pub(crate) ek_issuer: Option<&'a str>,
    pub(crate) hardware_id: &'a str,
    pub(crate) status: Option<IdentityStatus>,
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
        let mut classes: Vec<Class> = Vec::new();
        for spanned in parsed.classes {
            let line = line_of(text, spanned.span().start);
            let class = spanned.into_inner();
            let name = class.name.clone();
            if classes.iter().any(|c| c.name == name) {
                return Err(error(Some(line), format!("class {name:?} is defined twice")));
            }
            let class = Class::compile(class, base).map_err(|e| {
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

    /// The first TPM class this identity matches.
    pub(crate) fn match_tpm(&self, who: TpmIdentity<'_>) -> Result<&Class, Refusal> {
        if who.status == Some(IdentityStatus::Blocked) {
            return Err(Refusal::new(
                Code::VmBlocked,
                format!("EK {} is blocked by an administrator", who.hardware_id),
            ));
        }
        self.classes
            .iter()
            .filter(|c| c.evidence == EvidenceKind::Tpm)
            .find(|c| c.matches_identity(who.hardware_id, who.ek_issuer, who.status))
            .ok_or_else(|| {
                Refusal::new(
                    Code::NoMatchingClass,
                    format!(
                        "no TPM class admits EK {} (issuer {}, {})",
                        who.hardware_id,
                        who.ek_issuer.unwrap_or("none: enrolled EK without certificate"),
                        if who.status == Some(IdentityStatus::Enrolled) {
                            "enrolled"
                        } else {
                            "not enrolled"
                        }
                    ),
                )
            })
    }

    /// The first SEV-SNP class these facts match.
    pub(crate) fn match_snp(
        &self,
        facts: &SnpFacts,
        status: Option<IdentityStatus>,
    ) -> Result<&Class, Refusal> {
        if status == Some(IdentityStatus::Blocked) {
            return Err(Refusal::new(
                Code::VmBlocked,
                format!("chip {} is blocked by an administrator", facts.chip_id),
            ));
        }
        self.classes
            .iter()
            .filter(|c| c.evidence == EvidenceKind::Snp)
            .filter(|c| c.matches_identity(&facts.chip_id, None, status))
            .find(|c| c.snp.as_ref().is_some_and(|rules| rules.measurements.contains(&facts.measurement)))
            .ok_or_else(|| {
                Refusal::new(
                    Code::SnpMeasurement,
                    format!(
                        "no SEV-SNP class admits measurement {} from chip {}",
                        hex::encode(&facts.measurement),
                        short(&facts.chip_id)
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

impl Class {
    fn compile(class: ClassFile, base: &Path) -> Result<Self, CompileError> {
        if class.name.is_empty()
            || !class.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        {
            return Err("name: letters, digits, '-' and '_' only".into());
        }
        check_template(&class.spiffe_id).map_err(CompileError::from)?;
        if class.ttl_seconds < 60 || class.ttl_seconds > 7 * 24 * 3600 {
            return Err(format!("ttl_seconds {} outside 60..=604800", class.ttl_seconds).into());
        }
        if class.networks.is_empty() {
            return Err("networks is empty: list the CIDRs VMs of this class attest from".into());
        }
        let hardware_ids = class.matching.hardware_ids.iter().map(|h| hex::encode(&h.0)).collect::<Vec<_>>();
        let (tpm, snp, evidence) = match class.evidence {
            Evidence::Tpm => {
                if class.snp.is_some() {
                    return Err("evidence = \"tpm\" but a [class.snp] table is present".into());
                }
                if class.matching.ek_issuers.is_empty() && hardware_ids.is_empty() && !class.matching.enrolled
                {
                    return Err("[class.match] needs ek_issuers, hardware_ids or enrolled = true: a TPM \
                                class must say which EKs it admits"
                        .into());
                }
                let rules = class.tpm.ok_or("evidence = \"tpm\" needs a [class.tpm] table")?;
                (Some(TpmRules::compile(rules)?), None, EvidenceKind::Tpm)
            }
            Evidence::Snp => {
                if class.tpm.is_some() {
                    return Err("evidence = \"snp\" but a [class.tpm] table is present".into());
                }
                if !class.matching.ek_issuers.is_empty() {
                    return Err("ek_issuers does not apply to SEV-SNP".into());
                }
                let rules = class.snp.ok_or("evidence = \"snp\" needs a [class.snp] table")?;
                (None, Some(SnpRules::compile(rules)?), EvidenceKind::Snp)
            }
        };
        let mut secrets: Vec<Secret> = Vec::new();
        for secret in class.secrets {
            if secrets.iter().any(|s| s.name == secret.name) || secret.name.is_empty() {
                return Err(format!("secret name {:?} is empty or repeated", secret.name).into());
            }
            let path = if secret.file.is_relative() { base.join(&secret.file) } else { secret.file.clone() };
            let value = std::fs::read(&path).map_err(|e| {
                CompileError::from(format!("secret {:?}: cannot read {}: {e}", secret.name, path.display()))
            })?;
            if value.is_empty() || value.len() > MAX_SECRET_BYTES {
                return Err(format!(
                    "secret {:?} is {} bytes; releasable secrets hold 1..={MAX_SECRET_BYTES} bytes \
                     (seal a key, not a document)",
                    secret.name,
                    value.len()
                )
                .into());
            }
            secrets.push(Secret { name: secret.name, value });
        }
        Ok(Self {
            name: class.name,
            evidence,
            spiffe_id: class.spiffe_id,
            ttl_seconds: class.ttl_seconds,
            audiences: class.audiences,
            networks: class.networks,
            ek_issuers: class.matching.ek_issuers,
            hardware_ids,
            enrolled_only: class.matching.enrolled,
            tpm,
            snp,
            secrets,
        })
    }

    fn matches_identity(
        &self,
        hardware_id: &str,
        ek_issuer: Option<&str>,
        status: Option<IdentityStatus>,
    ) -> bool {
        let issuer_ok =
            self.ek_issuers.is_empty() || ek_issuer.is_some_and(|i| self.ek_issuers.iter().any(|e| e == i));
        let id_ok = self.hardware_ids.is_empty() || self.hardware_ids.iter().any(|h| h == hardware_id);
        let enrolled_ok = !self.enrolled_only || status == Some(IdentityStatus::Enrolled);
        issuer_ok && id_ok && enrolled_ok
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn ttl_seconds(&self) -> u32 {
        self.ttl_seconds
    }

    pub(crate) fn audiences(&self) -> &[String] {
        &self.audiences
    }

    pub(crate) fn secrets(&self) -> &[Secret] {
        &self.secrets
    }

    pub(crate) fn tpm(&self) -> Option<&TpmRules> {
        self.tpm.as_ref()
    }

    /// The SPIFFE ID for a VM of this class.
    pub(crate) fn spiffe_id(&self, trust_domain: &str, hardware_id: &str) -> String {
        self.spiffe_id
            .replace("{trust_domain}", trust_domain)
            .replace("{class}", &self.name)
            .replace("{hardware_id}", short(hardware_id))
    }

    /// The address must lie in one of the class's networks.
    pub(crate) fn check_address(&self, address: IpAddr) -> Result<(), Refusal> {
        if self.networks.iter().any(|n| n.contains(&address)) {
            return Ok(());
        }
        let networks: Vec<String> = self.networks.iter().map(ToString::to_string).collect();
        Err(Refusal::new(
            Code::AddressNotAllowed,
            format!("address {address} is outside class {:?} networks [{}]", self.name, networks.join(", ")),
        ))
    }

    /// SEV-SNP requirements beyond the measurement that matched.
    pub(crate) fn check_snp(&self, facts: &SnpFacts) -> Result<(), Refusal> {
        let Some(rules) = &self.snp else {
            return Err(Refusal::new(
                Code::NoMatchingClass,
                format!("class {:?} is not an SEV-SNP class", self.name),
            ));
        };
        if facts.debug_allowed && !rules.allow_debug {
            return Err(Refusal::new(
                Code::SnpDebug,
                "guest policy allows debugging (DEBUG bit set): the host can read guest memory",
            ));
        }
        if facts.vmpl > rules.max_vmpl {
            return Err(Refusal::new(
                Code::SnpVmpl,
                format!("report from VMPL {}, class allows at most {}", facts.vmpl, rules.max_vmpl),
            ));
        }
        if let Some((component, have, need)) = tcb_below(&facts.reported_tcb, &rules.min_tcb) {
            return Err(Refusal::new(
                Code::SnpTcbTooLow,
                format!("reported TCB {component} is {have}, class requires at least {need}: update the host firmware"),
            ));
        }
        Ok(())
    }
}

fn check_template(template: &str) -> Result<(), String> {
    if !template.starts_with("spiffe://{trust_domain}/") {
        return Err(format!("spiffe_id {template:?} must start with \"spiffe://{{trust_domain}}/\""));
    }
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = rest.get(open + 1..).unwrap_or("");
        let close = after.find('}').ok_or_else(|| format!("spiffe_id {template:?}: unclosed '{{'"))?;
        let name = after.get(..close).unwrap_or("");
        if !matches!(name, "trust_domain" | "class" | "hardware_id") {
            return Err(format!(
                "spiffe_id: unknown placeholder {{{name}}} (trust_domain, class, hardware_id)"
            ));
        }
        rest = after.get(close + 1..).unwrap_or("");
    }
    if !template.contains("{hardware_id}") {
        return Err("spiffe_id must contain {hardware_id}: every VM needs its own identity".into());
    }
    Ok(())
}

impl TpmRules {
    fn compile(rules: file::TpmFile) -> Result<Self, CompileError> {
        let bank = HashAlg::from_name(&rules.pcr_bank)
            .ok_or_else(|| format!("unknown pcr_bank {:?}", rules.pcr_bank))?;
        let selection = PcrSelection::single(bank, &rules.pcrs).map_err(|e| format!("pcrs: {e}"))?;
        if rules.pcrs.is_empty() {
            return Err("pcrs is empty".into());
        }
        if let Some((index, why)) = NOT_IN_FIRMWARE_LOG.iter().find(|(i, _)| rules.pcrs.contains(i)) {
            return Err(format!(
                "pcrs lists PCR {index}: {why}, and every quoted PCR is checked against that log"
            )
            .into());
        }
        let mut pcr_values = BTreeMap::new();
        for (index, values) in rules.pcr_values {
            let index: u8 = index.parse().map_err(|_| format!("pcr_values: {index:?} is not a PCR index"))?;
            if !rules.pcrs.contains(&index) {
                return Err(format!("pcr_values lists PCR {index}, which is not in pcrs").into());
            }
            if let Some(bad) = values.iter().find(|v| v.0.len() != bank.size()) {
                return Err(format!(
                    "pcr_values {index}: {} bytes, a {} PCR has {}",
                    bad.0.len(),
                    bank.name(),
                    bank.size()
                )
                .into());
            }
            if values.is_empty() {
                return Err(format!(
                    "pcr_values {index}: empty list admits nothing; remove the key or add values"
                )
                .into());
            }
            pcr_values.insert(index, values.into_iter().map(|v| v.0).collect());
        }
        let boot = match rules.event_log {
            Some(table) => {
                let at = table.span().start;
                let compiled = BootRules::compile(table.into_inner(), bank, &rules.pcrs)
                    .map_err(|message| CompileError { at: Some(at), message })?;
                Some(compiled)
            }
            None => None,
        };
        if pcr_values.is_empty() && boot.is_none() {
            return Err(
                "[class.tpm] pins no boot state: give pcr_values, or [class.tpm.event_log] rules".into()
            );
        }
        let seal_pcrs = rules.seal_pcrs.unwrap_or_else(|| rules.pcrs.clone());
        if let Some(index) = seal_pcrs.iter().find(|i| !rules.pcrs.contains(i)) {
            return Err(format!("seal_pcrs lists PCR {index}, which is not quoted (pcrs)").into());
        }
        let seal_selection = PcrSelection::single(bank, &seal_pcrs).map_err(|e| format!("seal_pcrs: {e}"))?;
        Ok(Self { selection, bank, pcrs: rules.pcrs, pcr_values, boot, seal_selection })
    }

    /// The bank the class quotes and appraises.
    pub(crate) fn bank(&self) -> HashAlg {
        self.bank
    }

    /// The PCRs a VM must quote.
    pub(crate) fn selection(&self) -> &PcrSelection {
        &self.selection
    }

    /// The PCRs a sealed secret's policy covers.
    pub(crate) fn seal_selection(&self) -> &PcrSelection {
        &self.seal_selection
    }

    /// Bank name to indices, for the challenge.
    pub(crate) fn selection_map(&self) -> BTreeMap<String, Vec<u8>> {
        BTreeMap::from([(self.bank.name().to_owned(), self.pcrs.clone())])
    }

    /// Decides on an appraisal: measured-boot rules first (their refusals say what in the
    /// boot was wrong), then the pinned PCR values.
    pub(crate) fn check(&self, appraisal: &TpmAppraisal) -> Result<(), Refusal> {
        if let Some(rules) = &self.boot {
            let Some(boot) = appraisal.boot() else {
                return Err(Refusal::new(
                    Code::EventLogMissing,
                    "class has measured-boot rules and requires the event log; none was sent",
                ));
            };
            rules.check(boot)?;
        }
        for (index, allowed) in &self.pcr_values {
            let value = appraisal.pcrs().get(self.bank, *index).unwrap_or_default();
            if !allowed.iter().any(|a| a.as_slice() == value) {
                return Err(Refusal::new(
                    Code::PcrValueNotAllowed,
                    format!(
                        "PCR {}:{index} is {}, not an allowed value",
                        self.bank.name(),
                        hex::encode(value)
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl SnpRules {
    fn compile(rules: file::SnpFile) -> Result<Self, CompileError> {
        if rules.measurements.is_empty() {
            return Err("[class.snp] measurements is empty: list the launch measurements to admit".into());
        }
        if let Some(bad) = rules.measurements.iter().find(|m| m.0.len() != 48) {
            return Err(
                format!("measurement {} is {} bytes, not 48", hex::encode(&bad.0), bad.0.len()).into()
            );
        }
        Ok(Self {
            measurements: rules.measurements.into_iter().map(|m| m.0).collect(),
            min_tcb: rules.min_tcb,
            allow_debug: rules.allow_debug,
            max_vmpl: rules.max_vmpl,
        })
    }
}

#[cfg(test)]
mod boot_tests;
#[cfg(test)]
mod tests;
