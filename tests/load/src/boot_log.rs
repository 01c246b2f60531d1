//! The measured boot every simulated TPM VM went through: a real event log from the test
//! data, replayed to the PCR values the VMs quote (and the policy pins).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use base64::Engine as _;
use mooring_attestation::tpm::alg::HashAlg;
use mooring_attestation::tpm::eventlog::EventLog;
use mooring_attestation::tpm::pcr::{PcrSelection, PcrValues};

/// The bank the VMs quote.
pub(crate) const BANK: HashAlg = HashAlg::Sha256;
/// PCRs the policy selects, where the log extends them (firmware and boot loader).
const CANDIDATE_PCRS: std::ops::RangeInclusive<u8> = 0..=9;

/// What a VM quotes for a selection.
#[derive(Debug)]
pub(crate) struct Quoted {
    pub(crate) selection: PcrSelection,
    pub(crate) values: PcrValues,
    /// The wire form: bank name to index to hex value.
    pub(crate) map: BTreeMap<String, BTreeMap<String, String>>,
}

/// An event log and its replayed PCR values.
#[derive(Debug)]
pub(crate) struct BootImage {
    log: Vec<u8>,
    /// `log` as a JSON string of its base64.
    log_json: Vec<u8>,
    /// SHA-256 of `log`, hex: how a VM names it.
    log_sha256: String,
    /// Whether VMs name the log by digest first, as `mooring-client` does, and send it
    /// only to a broker that holds no copy (`--send-event-log`: every VM sends it whole).
    named: bool,
    values: PcrValues,
    indices: Vec<u8>,
}

impl BootImage {
    /// Reads and replays the log at `path`; VMs name it by digest first when `named`.
    pub(crate) fn load(path: &Path, named: bool) -> anyhow::Result<Self> {
        let log = std::fs::read(path).with_context(|| format!("reading event log {}", path.display()))?;
        let values = EventLog::parse(&log).with_context(|| format!("event log {}", path.display()))?.replay();
        let indices: Vec<u8> = CANDIDATE_PCRS.filter(|i| values.get(BANK, *i).is_some()).collect();
        anyhow::ensure!(
            !indices.is_empty(),
            "event log {} extends no {} PCR 0-9",
            path.display(),
            BANK.name()
        );
        let log_json = serde_json::to_vec(&base64::engine::general_purpose::STANDARD.encode(&log))?;
        let log_sha256 = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &log));
        Ok(Self { log, log_json, log_sha256, named, values, indices })
    }

    /// SHA-256 of the event log, hex.
    pub(crate) fn log_sha256(&self) -> &str {
        &self.log_sha256
    }

    /// Whether VMs name the log by digest first.
    pub(crate) fn named(&self) -> bool {
        self.named
    }

    /// The event log as the VM sends it.
    pub(crate) fn log(&self) -> &[u8] {
        &self.log
    }

    /// The event log as a JSON string (base64), as the wire carries it.
    pub(crate) fn log_json(&self) -> &[u8] {
        &self.log_json
    }

    /// The PCR indices the policy selects.
    pub(crate) fn indices(&self) -> &[u8] {
        &self.indices
    }

    /// The replayed value of PCR `index`.
    pub(crate) fn value(&self, index: u8) -> Option<&[u8]> {
        self.values.get(BANK, index)
    }

    /// The values of `selection` (as a broker challenge names it).
    pub(crate) fn quoted(&self, selection: &BTreeMap<String, Vec<u8>>) -> anyhow::Result<Quoted> {
        let mut pcr_selection = PcrSelection::new();
        let mut values = PcrValues::new();
        let mut map = BTreeMap::new();
        for (bank_name, indices) in selection {
            let bank = HashAlg::from_name(bank_name)
                .with_context(|| format!("the broker asks for unknown PCR bank {bank_name:?}"))?;
            pcr_selection.add(bank, indices)?;
            let mut bank_map = BTreeMap::new();
            for &index in indices {
                let value = self
                    .values
                    .get(bank, index)
                    .with_context(|| format!("the boot log does not extend {bank_name}:{index}"))?;
                values.insert(bank, index, value.to_vec())?;
                bank_map.insert(index.to_string(), hex::encode(value));
            }
            map.insert(bank_name.clone(), bank_map);
        }
        Ok(Quoted { selection: pcr_selection, values, map })
    }
}
