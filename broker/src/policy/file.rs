//! The policy file format (TOML). `policies/README.md` documents it for operators.
//!
//! Field-level problems (bad hex, bad CIDR, unknown key) are reported by the TOML
//! reader with their line; whole-class problems by [`PolicyError`] with the line of the
//! class's `[[class]]` table.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

/// The file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PolicyFile {
    /// Format version; only 1 exists.
    pub(super) version: u32,
    /// Classes in order; the first one a VM matches decides.
    #[serde(default, rename = "class")]
    pub(super) classes: Vec<Spanned<ClassFile>>,
}

/// One `[[class]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClassFile {
    pub(super) name: String,
    /// `"tpm"`, `"snp"` or `"azure"`: the only evidence this class accepts.
    pub(super) evidence: Evidence,
    /// SPIFFE ID template: `{trust_domain}`, `{class}`, `{hardware_id}` are replaced.
    #[serde(default = "default_spiffe_id")]
    pub(super) spiffe_id: String,
    pub(super) ttl_seconds: u32,
    #[serde(default)]
    pub(super) audiences: Vec<String>,
    /// Addresses a VM of this class may attest from (and is bound to).
    pub(super) networks: Vec<IpNet>,
    #[serde(default, rename = "match")]
    pub(super) matching: MatchFile,
    pub(super) tpm: Option<TpmFile>,
    pub(super) snp: Option<SnpFile>,
    #[serde(default)]
    pub(super) secrets: Vec<SecretFile>,
    /// Downstream audiences VMs of this class may exchange their JWT-SVID for.
    #[serde(default)]
    pub(super) federation: Vec<Spanned<FederationFile>>,
}

fn default_spiffe_id() -> String {
    "spiffe://{trust_domain}/vm/{class}/{hardware_id}".to_owned()
}

/// Evidence kinds a class may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Evidence {
    Tpm,
    Snp,
    Azure,
}

/// `[class.match]`: every rule given must hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MatchFile {
    /// Issuer DN of the EK certificate, exactly as `mooring-broker verify` prints it.
    #[serde(default)]
    pub(super) ek_issuers: Vec<String>,
    /// Explicit hardware identities: SHA-256 of the EK public key, or CHIP_ID (hex).
    #[serde(default)]
    pub(super) hardware_ids: Vec<Hex>,
    /// Only identities enrolled through the admin API.
    #[serde(default)]
    pub(super) enrolled: bool,
}

/// `[class.tpm]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TpmFile {
    /// PCR bank to quote.
    pub(super) pcr_bank: String,
    /// PCRs to quote.
    pub(super) pcrs: Vec<u8>,
    /// Allowed values per PCR index (any listed value is accepted).
    #[serde(default)]
    pub(super) pcr_values: BTreeMap<String, Vec<Hex>>,
    pub(super) event_log: Option<Spanned<EventLogFile>>,
    /// PCRs a sealed secret's unseal policy covers (default: `pcrs`).
    pub(super) seal_pcrs: Option<Vec<u8>>,
}

/// `[class.tpm.event_log]`: measured-boot rules, judged by digests (see `policy/boot.rs`).
/// The table's presence requires the VM to send its event log.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventLogFile {
    /// Only `true` is accepted (the default); kept so older files still read.
    pub(super) required: Option<bool>,
    /// Required Secure Boot state.
    pub(super) secure_boot: Option<bool>,
    /// Allowed Authenticode digests of boot applications (shim, boot loader, kernel, UKI).
    pub(super) boot_applications: Option<Vec<Hex>>,
    /// Allowed kernel command lines, exactly as measured.
    pub(super) kernel_cmdlines: Option<Vec<String>>,
    /// Further digests allowed per PCR (grub commands, files, UKI sections...): every
    /// digest in a PCR listed here, or owned by a rule, must be allowed.
    #[serde(default)]
    pub(super) measurements: BTreeMap<String, Vec<Hex>>,
}

/// `[class.snp]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SnpFile {
    /// Allowed launch measurements (48-byte hex).
    pub(super) measurements: Vec<Hex>,
    /// Lowest acceptable reported TCB, per component (`fmc` only on Turin and later).
    pub(super) min_tcb: mooring_attestation::snp::TcbParts,
    /// Admit guests whose policy allows debugging (never in production).
    #[serde(default)]
    pub(super) allow_debug: bool,
    /// Highest VMPL the report may come from.
    #[serde(default)]
    pub(super) max_vmpl: u32,
}

/// `[[class.secrets]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SecretFile {
    pub(super) name: String,
    /// File holding the secret, relative to the policy file.
    pub(super) file: PathBuf,
}

/// `[[class.federation]]`: a downstream audience (cloud IAM, Vault, an API) VMs of this
/// class may exchange their JWT-SVID for a short bearer token for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FederationFile {
    /// The token's `aud`.
    pub(super) audience: String,
    /// Lifetime of a token (never beyond the JWT-SVID's).
    #[serde(default = "default_federation_ttl")]
    pub(super) ttl_seconds: u32,
    /// Scopes a token for this audience may carry (when the VM asks for them).
    #[serde(default)]
    pub(super) scopes: Vec<String>,
}

fn default_federation_ttl() -> u32 {
    300
}

/// Hex bytes in the policy (checked when read, so the error has a line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Hex(pub(super) Vec<u8>);

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let bytes =
            hex::decode(text.trim()).map_err(|e| serde::de::Error::custom(format!("not hex: {e}")))?;
        if bytes.is_empty() {
            return Err(serde::de::Error::custom("empty hex value"));
        }
        Ok(Self(bytes))
    }
}
