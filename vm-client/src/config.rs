//! The client's configuration file (TOML, unknown keys refused).
//!
//! ```toml
//! broker_url = "https://broker.example:8443"
//! broker_ca = "/etc/mooring/broker-ca.pem"    # the only CA trusted for the broker
//! runtime_dir = "/run/mooring"                # tmpfs: credentials and unsealed secrets
//! state_dir = "/var/lib/mooring"              # persistent: AK public part, K's key blobs
//! # source_address = "10.0.0.5"               # local address on a multi-homed VM
//!
//! [evidence]
//! kind = "tpm"                                # or "snp" (configfs_tsm, device, vmpl), "azure"
//! tcti = "device:/dev/tpmrm0"                 # or "swtpm:host=127.0.0.1,port=2321", "tabrmd:"
//! ek = "rsa2048"                              # or "ecc-p256", "ecc-p384"
//! ak_handle = 0x81010002                      # persistent handle the AK is kept at
//! event_log = "/sys/kernel/security/tpm0/binary_bios_measurements"
//!
//! [renewal]
//! retry_initial_seconds = 1
//! retry_max_seconds = 300
//! ```
//!
//! An Azure confidential VM (`kind = "azure"`) proves itself with its paravisor's HCL report
//! and a quote by the vTPM's AK, which the paravisor provisioned:
//!
//! ```toml
//! [evidence]
//! kind = "azure"
//! tcti = "device:/dev/tpmrm0"
//! ak_handle = 0x81000003                      # the paravisor's AK (runtime claims' HCLAkPub)
//! hcl_report_index = 0x01400001               # NV index holding the HCL report
//! vcek_url = "http://169.254.169.254/metadata/THIM/amd/certification"
//! event_log = "/sys/kernel/security/tpm0/binary_bios_measurements"
//! ```
//!
//! There is no way to turn off the broker CA pin: the client trusts exactly `broker_ca`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Default TCTI: the kernel's resource manager.
pub const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";
/// Default persistent handle of the AK (TCG's range for endorsement-hierarchy keys,
/// next to the EK at 0x81010001).
pub const DEFAULT_AK_HANDLE: u32 = 0x8101_0002;
/// Where Linux exposes the firmware's measured-boot event log.
pub const DEFAULT_EVENT_LOG: &str = "/sys/kernel/security/tpm0/binary_bios_measurements";
/// The SEV-SNP guest device.
pub const DEFAULT_SEV_GUEST: &str = "/dev/sev-guest";
/// Where Linux 6.7+ offers configfs-tsm report entries.
pub const DEFAULT_CONFIGFS_TSM: &str = crate::snp::configfs_tsm::DEFAULT_ROOT;
/// Where an Azure confidential VM's paravisor keeps the vTPM's AK (its public key is the
/// runtime claims' `HCLAkPub`).
pub const DEFAULT_AZURE_AK_HANDLE: u32 = 0x8100_0003;
/// The vTPM NV index an Azure paravisor writes the HCL report to.
pub const DEFAULT_HCL_REPORT_INDEX: u32 = 0x0140_0001;
/// Azure's instance metadata service (IMDS) endpoint for the VCEK and its chain, from the
/// Trusted Hardware Identity Management (THIM) cache.
pub const DEFAULT_VCEK_URL: &str = "http://169.254.169.254/metadata/THIM/amd/certification";
/// Persistent handles the AK may be kept at (TPM 2.0 Part 2, 7.5: persistent objects).
const PERSISTENT_RANGE: std::ops::RangeInclusive<u32> = 0x8100_0000..=0x81FF_FFFF;
/// NV indices (TPM 2.0 Part 2, 7.4: TPM_HT_NV_INDEX).
const NV_INDEX_RANGE: std::ops::RangeInclusive<u32> = 0x0100_0000..=0x01FF_FFFF;

/// Errors reading the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or names an unknown key.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its line.
        source: Box<toml::de::Error>,
    },
    /// A value is out of range.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Base URL of the broker (`https://host:port`).
    pub broker_url: String,
    /// PEM file with the CA certificate(s) the broker's TLS certificate must chain to.
    pub broker_ca: PathBuf,
    /// Directory for credentials and unsealed secrets: must be on tmpfs.
    pub runtime_dir: PathBuf,
    /// Directory for what must survive reboots (AK public part, K's TPM key blobs).
    pub state_dir: PathBuf,
    /// Local address to connect from (multi-homed VMs); `--source-address` overrides it.
    #[serde(default)]
    pub source_address: Option<IpAddr>,
    /// Refuse a runtime directory that is not on tmpfs/ramfs. Default `true`.
    #[serde(default = "yes")]
    pub require_tmpfs: bool,
    /// What the VM proves itself with.
    pub evidence: Evidence,
    /// Renewal and retry timing.
    #[serde(default)]
    pub renewal: Renewal,
}

/// The evidence the VM presents.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Evidence {
    /// A TPM 2.0 quote.
    Tpm(TpmConfig),
    /// An AMD SEV-SNP attestation report.
    Snp(SnpConfig),
    /// An Azure confidential VM: the paravisor's HCL report and a vTPM quote.
    Azure(AzureConfig),
}

impl Evidence {
    /// The TCTI of the TPM holding K (`None` on the SEV-SNP path, where K is in memory).
    #[must_use]
    pub fn tcti(&self) -> Option<&str> {
        match self {
            Self::Tpm(tpm) => Some(&tpm.tcti),
            Self::Azure(azure) => Some(&azure.tcti),
            Self::Snp(_) => None,
        }
    }
}

/// Which endorsement key (TCG EK Credential Profile 2.0, templates L-1, L-2, H-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EkKind {
    /// RSA 2048 (certificate at NV 0x01c00002).
    Rsa2048,
    /// ECC NIST P-256 (certificate at NV 0x01c0000a).
    EccP256,
    /// ECC NIST P-384, high range (certificate at NV 0x01c00016).
    EccP384,
}

impl EkKind {
    /// NV index of this EK's certificate (TCG EK Credential Profile 2.0, 2.2.1.4/2.2.1.5).
    #[must_use]
    pub const fn certificate_index(self) -> u32 {
        match self {
            Self::Rsa2048 => 0x01c0_0002,
            Self::EccP256 => 0x01c0_000a,
            Self::EccP384 => 0x01c0_0016,
        }
    }
}

/// The TPM path.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmConfig {
    /// TCTI: `device:/dev/tpmrm0`, `swtpm:host=..,port=..`, `tabrmd:`.
    #[serde(default = "default_tcti")]
    pub tcti: String,
    /// Which EK to recreate and whose certificate to read.
    #[serde(default = "default_ek")]
    pub ek: EkKind,
    /// NV index of the EK certificate, when the platform stores it elsewhere.
    #[serde(default)]
    pub ek_certificate_index: Option<u32>,
    /// Persistent handle the AK is kept at.
    #[serde(default = "default_ak_handle")]
    pub ak_handle: u32,
    /// The measured-boot event log; sent when the file exists.
    #[serde(default = "default_event_log")]
    pub event_log: PathBuf,
}

/// The SEV-SNP path.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpConfig {
    /// configfs-tsm's report directory: used first, when the client may make an entry there.
    #[serde(default = "default_configfs_tsm")]
    pub configfs_tsm: PathBuf,
    /// The guest device, used when configfs-tsm cannot be.
    #[serde(default = "default_sev_guest")]
    pub device: PathBuf,
    /// VMPL to request the report at (0-3).
    #[serde(default)]
    pub vmpl: u32,
}

/// The Azure confidential VM path.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureConfig {
    /// TCTI of the vTPM.
    #[serde(default = "default_tcti")]
    pub tcti: String,
    /// Persistent handle of the paravisor's AK; the client never creates or replaces it.
    #[serde(default = "default_azure_ak_handle")]
    pub ak_handle: u32,
    /// NV index holding the HCL report.
    #[serde(default = "default_hcl_report_index")]
    pub hcl_report_index: u32,
    /// Where to GET the VCEK chain (instance metadata, THIM JSON). When it cannot be
    /// fetched the client sends none and the broker uses its provisioned VCEKs.
    #[serde(default = "default_vcek_url")]
    pub vcek_url: String,
    /// The measured-boot event log; sent when the file exists.
    #[serde(default = "default_event_log")]
    pub event_log: PathBuf,
}

/// When to renew and how to retry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Renewal {
    /// First retry delay after a failed attestation.
    #[serde(default = "default_retry_initial")]
    pub retry_initial_seconds: u64,
    /// Longest retry delay.
    #[serde(default = "default_retry_max")]
    pub retry_max_seconds: u64,
}

impl Default for Renewal {
    fn default() -> Self {
        Self { retry_initial_seconds: default_retry_initial(), retry_max_seconds: default_retry_max() }
    }
}

const fn yes() -> bool {
    true
}
fn default_tcti() -> String {
    DEFAULT_TCTI.to_owned()
}
const fn default_ek() -> EkKind {
    EkKind::Rsa2048
}
const fn default_ak_handle() -> u32 {
    DEFAULT_AK_HANDLE
}
fn default_event_log() -> PathBuf {
    PathBuf::from(DEFAULT_EVENT_LOG)
}
const fn default_azure_ak_handle() -> u32 {
    DEFAULT_AZURE_AK_HANDLE
}
const fn default_hcl_report_index() -> u32 {
    DEFAULT_HCL_REPORT_INDEX
}
fn default_vcek_url() -> String {
    DEFAULT_VCEK_URL.to_owned()
}
fn default_sev_guest() -> PathBuf {
    PathBuf::from(DEFAULT_SEV_GUEST)
}
fn default_configfs_tsm() -> PathBuf {
    PathBuf::from(DEFAULT_CONFIGFS_TSM)
}
const fn default_retry_initial() -> u64 {
    1
}
const fn default_retry_max() -> u64 {
    300
}

impl Config {
    /// Reads and checks a configuration file.
    ///
    /// # Errors
    /// When the file cannot be read, is not valid TOML, has unknown keys or bad values.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse { path: path.to_owned(), source },
            ConfigError::Invalid { reason, .. } => ConfigError::Invalid { path: path.to_owned(), reason },
            other => other,
        })
    }

    /// Parses and checks configuration text.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: PathBuf::new(), source: Box::new(e) })?;
        config.check().map_err(|reason| ConfigError::Invalid { path: PathBuf::new(), reason })?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        if !self.broker_url.starts_with("https://") {
            return Err(format!("broker_url {:?} must start with https://", self.broker_url));
        }
        let ak_handle = match &self.evidence {
            Evidence::Tpm(tpm) => Some(tpm.ak_handle),
            Evidence::Azure(azure) => Some(azure.ak_handle),
            Evidence::Snp(_) => None,
        };
        if let Some(handle) = ak_handle.filter(|h| !PERSISTENT_RANGE.contains(h)) {
            return Err(format!(
                "evidence.ak_handle {handle:#010x} is not a persistent handle (0x81000000-0x81ffffff)"
            ));
        }
        if let Evidence::Snp(snp) = &self.evidence {
            if snp.vmpl > 3 {
                return Err(format!("evidence.vmpl {} is not 0-3", snp.vmpl));
            }
        }
        if let Evidence::Azure(azure) = &self.evidence {
            if !NV_INDEX_RANGE.contains(&azure.hcl_report_index) {
                return Err(format!(
                    "evidence.hcl_report_index {:#010x} is not an NV index (0x01000000-0x01ffffff)",
                    azure.hcl_report_index
                ));
            }
            if !azure.vcek_url.starts_with("http://") && !azure.vcek_url.starts_with("https://") {
                return Err(format!(
                    "evidence.vcek_url {:?} must be an http:// or https:// URL",
                    azure.vcek_url
                ));
            }
        }
        let renewal = &self.renewal;
        if renewal.retry_initial_seconds == 0 || renewal.retry_initial_seconds > renewal.retry_max_seconds {
            return Err(format!(
                "renewal: retry_initial_seconds ({}) must be at least 1 and at most retry_max_seconds ({})",
                renewal.retry_initial_seconds, renewal.retry_max_seconds
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    const BASE: &str = r#"
broker_url = "https://127.0.0.1:8443"
broker_ca = "/etc/mooring/ca.pem"
runtime_dir = "/run/mooring"
state_dir = "/var/lib/mooring"
"#;

    fn with(evidence: &str) -> String {
        format!("{BASE}\n[evidence]\n{evidence}\n")
    }

    #[test]
    fn tpm_defaults() {
        let config = Config::parse(&with("kind = \"tpm\"")).unwrap();
        let Evidence::Tpm(tpm) = config.evidence else { panic!("not tpm") };
        assert_eq!(tpm.tcti, DEFAULT_TCTI);
        assert_eq!(tpm.ek, EkKind::Rsa2048);
        assert_eq!(tpm.ak_handle, DEFAULT_AK_HANDLE);
        assert!(config.require_tmpfs);
        assert_eq!(config.renewal.retry_max_seconds, 300);
    }

    #[test]
    fn snp_section() {
        let config = Config::parse(&with("kind = \"snp\"\nvmpl = 1")).unwrap();
        let Evidence::Snp(snp) = config.evidence else { panic!("not snp") };
        assert_eq!(snp.device, PathBuf::from(DEFAULT_SEV_GUEST));
        assert_eq!(snp.configfs_tsm, PathBuf::from("/sys/kernel/config/tsm/report"));
        assert_eq!(snp.vmpl, 1);
        let config = Config::parse(&with("kind = \"snp\"\nconfigfs_tsm = \"/mnt/tsm/report\"")).unwrap();
        let Evidence::Snp(snp) = config.evidence else { panic!("not snp") };
        assert_eq!(snp.configfs_tsm, PathBuf::from("/mnt/tsm/report"));
    }

    #[test]
    fn azure_defaults_are_azures_handles_and_metadata_endpoint() {
        let config = Config::parse(&with("kind = \"azure\"")).unwrap();
        assert_eq!(config.evidence.tcti(), Some(DEFAULT_TCTI));
        let Evidence::Azure(azure) = config.evidence else { panic!("not azure") };
        assert_eq!(azure.ak_handle, 0x8100_0003);
        assert_eq!(azure.hcl_report_index, 0x0140_0001);
        assert_eq!(azure.vcek_url, "http://169.254.169.254/metadata/THIM/amd/certification");
        assert_eq!(azure.event_log, PathBuf::from(DEFAULT_EVENT_LOG));
    }

    #[test]
    fn bad_azure_handles_and_urls_are_refused() {
        let err = Config::parse(&with("kind = \"azure\"\nak_handle = 0x01400001")).unwrap_err();
        assert!(err.to_string().contains("not a persistent handle"), "{err}");
        let err = Config::parse(&with("kind = \"azure\"\nhcl_report_index = 0x81000003")).unwrap_err();
        assert!(err.to_string().contains("hcl_report_index 0x81000003 is not an NV index"), "{err}");
        let err = Config::parse(&with("kind = \"azure\"\nvcek_url = \"file:///etc/passwd\"")).unwrap_err();
        assert!(err.to_string().contains("vcek_url"), "{err}");
        let err = Config::parse(&with("kind = \"azure\"\nek = \"rsa2048\"")).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = Config::parse(&with("kind = \"tpm\"\ninsecure = true")).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let err = Config::parse(&format!("{BASE}\ninsecure_skip_verify = true\n[evidence]\nkind = \"tpm\""))
            .unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn plain_http_is_refused() {
        let text = with("kind = \"tpm\"").replace("https://", "http://");
        let err = Config::parse(&text).unwrap_err();
        assert!(err.to_string().contains("https://"), "{err}");
    }

    #[test]
    fn a_transient_ak_handle_is_refused() {
        let err = Config::parse(&with("kind = \"tpm\"\nak_handle = 0x80000001")).unwrap_err();
        assert!(err.to_string().contains("not a persistent handle"), "{err}");
    }

    #[test]
    fn bad_vmpl_and_retry_are_refused() {
        let err = Config::parse(&with("kind = \"snp\"\nvmpl = 4")).unwrap_err();
        assert!(err.to_string().contains("vmpl"), "{err}");
        let err = Config::parse(&format!(
            "{}\n[renewal]\nretry_initial_seconds = 10\nretry_max_seconds = 5\n",
            with("kind = \"tpm\"")
        ))
        .unwrap_err();
        assert!(err.to_string().contains("retry_initial_seconds"), "{err}");
    }

    #[test]
    fn a_missing_ca_pin_is_refused() {
        let text = with("kind = \"tpm\"").replace("broker_ca = \"/etc/mooring/ca.pem\"\n", "");
        let err = Config::parse(&text).unwrap_err();
        assert!(err.to_string().contains("broker_ca"), "{err}");
    }
}
