//! One class of VMs: how VMs match it, what they must show, what they receive.

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use mooring_attestation::protocol::{check_audience, check_scope_token};
use mooring_attestation::snp::appraisal::SnpAppraisal;
use mooring_attestation::tpm::alg::HashAlg;

use super::file::{ClassFile, Evidence, FederationFile};
use super::snp::SnpRules;
use super::tpm::TpmRules;
use super::{short, CompileError, Secret, MAX_SECRET_BYTES};
use crate::records::EvidenceKind;
use crate::refusal::{Code, Refusal};

/// One class of VMs.
#[derive(Debug)]
pub(crate) struct Class {
    pub(super) name: String,
    pub(super) evidence: EvidenceKind,
    spiffe_id: String,
    ttl_seconds: u32,
    audiences: Vec<String>,
    networks: Vec<IpNet>,
    ek_issuers: Vec<String>,
    hardware_ids: Vec<String>,
    enrolled_only: bool,
    tpm: Option<TpmRules>,
    pub(super) snp: Option<SnpRules>,
    secrets: Vec<Secret>,
    federation: Vec<Federation>,
}

/// Shortest and longest lifetime of an exchanged token: a bearer token, so short; at least
/// long enough to reach the relying party.
pub(crate) const FEDERATION_TTL: std::ops::RangeInclusive<u32> = 10..=3600;

/// A downstream audience a class federates with (`[[class.federation]]`).
#[derive(Debug)]
pub(crate) struct Federation {
    audience: String,
    ttl_seconds: u32,
    scopes: Vec<String>,
}

impl Federation {
    /// `federation`, unless an audience of `svid_audiences` (every class's JWT-SVID
    /// audiences) is its own: a relying party there would take the bearer token where it
    /// expects a bound JWT-SVID.
    fn compile(federation: FederationFile, svid_audiences: &[(String, String)]) -> Result<Self, String> {
        let FederationFile { audience, ttl_seconds, scopes } = federation;
        check_audience(&audience).map_err(|e| format!("federation audience {audience:?}: {e}"))?;
        check_not_reserved(&audience)?;
        if let Some((_, class)) = svid_audiences.iter().find(|(a, _)| *a == audience) {
            return Err(format!(
                "federation audience {audience:?} is also a JWT-SVID audience (class {class:?}): a relying \
                 party for it would take the exchanged bearer token where it expects a bound JWT-SVID"
            ));
        }
        if !FEDERATION_TTL.contains(&ttl_seconds) {
            return Err(format!(
                "federation audience {audience:?}: ttl_seconds {ttl_seconds} outside {}..={} (a bearer \
                 token: keep it short)",
                FEDERATION_TTL.start(),
                FEDERATION_TTL.end()
            ));
        }
        for (index, scope) in scopes.iter().enumerate() {
            check_scope_token(scope).map_err(|e| format!("federation audience {audience:?}: {e}"))?;
            if scopes.get(..index).is_some_and(|before| before.contains(scope)) {
                return Err(format!("federation audience {audience:?}: scope {scope:?} is listed twice"));
            }
        }
        Ok(Self { audience, ttl_seconds, scopes })
    }

    pub(crate) fn audience(&self) -> &str {
        &self.audience
    }

    pub(crate) fn ttl_seconds(&self) -> u32 {
        self.ttl_seconds
    }

    pub(crate) fn scopes(&self) -> &[String] {
        &self.scopes
    }
}

impl Class {
    /// `svid_audiences`: every class's JWT-SVID audiences with the class's name.
    pub(super) fn compile(
        class: ClassFile,
        base: &Path,
        files: SecretFiles,
        svid_audiences: &[(String, String)],
    ) -> Result<Self, CompileError> {
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
        for audience in &class.audiences {
            check_not_reserved(audience)?;
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
            Evidence::Azure => {
                if !class.matching.ek_issuers.is_empty() {
                    return Err("ek_issuers does not apply to Azure confidential VMs: the SEV-SNP report \
                                vouches for their vTPM's EK"
                        .into());
                }
                if !class.secrets.is_empty() {
                    return Err("secrets are not released to Azure confidential VMs".into());
                }
                if hardware_ids.is_empty() && !class.matching.enrolled {
                    return Err(
                        "[class.match] needs hardware_ids or enrolled = true: the launch measurement \
                                is the paravisor's, the same for every Azure confidential VM, so an Azure \
                                class must say which vTPMs it admits"
                            .into(),
                    );
                }
                let snp = class
                    .snp
                    .ok_or("evidence = \"azure\" needs a [class.snp] table (launch measurement, TCB)")?;
                if snp.max_vmpl != 0 {
                    return Err("an Azure class admits only reports from VMPL 0 (max_vmpl = 0): only the \
                                paravisor there vouches for the runtime claims"
                        .into());
                }
                let tpm = class
                    .tpm
                    .ok_or("evidence = \"azure\" needs a [class.tpm] table (the vTPM's boot state)")?;
                let tpm = TpmRules::compile(tpm)?;
                if tpm.bank() != HashAlg::Sha256 {
                    return Err("an Azure class quotes the vTPM's sha256 bank (pcr_bank = \"sha256\")".into());
                }
                (Some(tpm), Some(SnpRules::compile(snp)?), EvidenceKind::Azure)
            }
        };
        let mut secrets: Vec<Secret> = Vec::new();
        for secret in class.secrets {
            if secrets.iter().any(|s| s.name == secret.name) || secret.name.is_empty() {
                return Err(format!("secret name {:?} is empty or repeated", secret.name).into());
            }
            if files == SecretFiles::Unread {
                secrets.push(Secret { name: secret.name, value: Vec::new() });
                continue;
            }
            let path = if secret.file.is_relative() { base.join(&secret.file) } else { secret.file.clone() };
            let value = read_secret(&path).map_err(|e| {
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
        let mut federation: Vec<Federation> = Vec::new();
        for spanned in class.federation {
            let at = Some(spanned.span().start);
            let grant = Federation::compile(spanned.into_inner(), svid_audiences)
                .map_err(|message| CompileError { at, message })?;
            if federation.iter().any(|f| f.audience == grant.audience) {
                let message = format!("federation audience {:?} is listed twice", grant.audience);
                return Err(CompileError { at, message });
            }
            federation.push(grant);
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
            federation,
        })
    }

    pub(crate) fn matches_identity(
        &self,
        hardware_id: &str,
        ek_issuer: Option<&str>,
        enrolled: bool,
    ) -> bool {
        let issuer_ok =
            self.ek_issuers.is_empty() || ek_issuer.is_some_and(|i| self.ek_issuers.iter().any(|e| e == i));
        let id_ok = self.hardware_ids.is_empty() || self.hardware_ids.iter().any(|h| h == hardware_id);
        let enrolled_ok = !self.enrolled_only || enrolled;
        issuer_ok && id_ok && enrolled_ok
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Whether the class admits only enrolled hardware.
    pub(crate) fn enrolled_only(&self) -> bool {
        self.enrolled_only
    }

    /// The only evidence kind the class accepts.
    pub(crate) fn evidence(&self) -> EvidenceKind {
        self.evidence
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

    /// What the class grants for `audience`, if it federates with it.
    pub(crate) fn federation(&self, audience: &str) -> Option<&Federation> {
        self.federation.iter().find(|f| f.audience == audience)
    }

    /// Every audience the class federates with.
    pub(crate) fn federation_audiences(&self) -> Vec<&str> {
        self.federation.iter().map(Federation::audience).collect()
    }

    pub(crate) fn tpm(&self) -> Option<&TpmRules> {
        self.tpm.as_ref()
    }

    /// The class's TPM rules; a TPM or Azure class has them.
    pub(crate) fn tpm_rules(&self) -> Result<&TpmRules, Refusal> {
        self.tpm.as_ref().ok_or_else(|| {
            Refusal::new(Code::NoMatchingClass, format!("class {:?} appraises no TPM quote", self.name))
        })
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
    pub(crate) fn check_snp(&self, appraisal: &SnpAppraisal) -> Result<(), Refusal> {
        let Some(rules) = &self.snp else {
            return Err(Refusal::new(
                Code::NoMatchingClass,
                format!("class {:?} appraises no SEV-SNP report", self.name),
            ));
        };
        rules.check(appraisal)
    }
}

/// Whether compiling reads the secret files (a proposal judged in a dry run does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecretFiles {
    Read,
    Unread,
}

/// A secret file: a regular file (not a device or a pipe), read no further than a secret
/// may be long (plus one byte, to tell a longer one).
fn read_secret(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    if !std::fs::metadata(path)?.is_file() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut value = Vec::new();
    let limit = u64::try_from(MAX_SECRET_BYTES).unwrap_or(u64::MAX).saturating_add(1);
    std::fs::File::open(path)?.take(limit).read_to_end(&mut value)?;
    Ok(value)
}

/// The broker's own operations (`mooring-broker/retire`, `mooring-broker/token-exchange`) are
/// audiences of possession statements: no relying service may be given one of those names,
/// or it could collect statements good for the broker.
const BROKER_AUDIENCES: &str = "mooring-broker/";

fn check_not_reserved(audience: &str) -> Result<(), String> {
    if audience.starts_with(BROKER_AUDIENCES) {
        return Err(format!("audience {audience:?}: names under {BROKER_AUDIENCES:?} are the broker's own"));
    }
    Ok(())
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
