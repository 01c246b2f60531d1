//! The simulated fleet: every VM's keys, built once before the run, and the broker
//! policy and trust material that admit it.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;

use super::boot_log::{BootImage, BANK};
use super::ek_ca::EkCa;
use super::options::Path as EvidencePath;
use super::snp_vm::{SnpHost, SnpVm, MAX_HOSTS};
use super::tpm_vm::TpmVm;

/// Networks the simulated VMs attest from.
const NETWORK: &str = "127.0.0.0/8";

/// The VMs of one evidence path.
#[derive(Debug)]
pub(crate) enum Vms {
    /// TPM VMs.
    Tpm(Vec<TpmVm>),
    /// SEV-SNP guests on their hosts.
    Snp(Vec<SnpVm>),
    /// Both: TPM VMs and SEV-SNP guests (the abuse mode's honest traffic).
    Both { tpm: Vec<TpmVm>, snp: Vec<SnpVm> },
}

/// Everything the simulated side holds.
#[derive(Debug)]
pub(crate) struct Fleet {
    pub(crate) ca: EkCa,
    pub(crate) boot: BootImage,
    pub(crate) hosts: Vec<SnpHost>,
    pub(crate) vms: Vms,
}

/// Builds `count` items with `make` on every core.
pub(crate) fn build_parallel<T: Send>(
    count: usize,
    make: impl Fn(usize) -> anyhow::Result<T> + Sync,
) -> anyhow::Result<Vec<T>> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get).max(1);
    let chunk = count.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..count)
            .step_by(chunk)
            .map(|start| {
                let make = &make;
                scope.spawn(move || {
                    (start..(start + chunk).min(count)).map(make).collect::<anyhow::Result<Vec<T>>>()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(count);
        for handle in handles {
            let part = handle.join().map_err(|_| anyhow::anyhow!("a fleet builder thread panicked"))??;
            all.extend(part);
        }
        Ok(all)
    })
}

impl Fleet {
    /// `vms` VMs of `path`; SNP guests spread over `hosts` hosts.
    pub(crate) fn build(
        path: EvidencePath,
        vms: usize,
        hosts: usize,
        ca: EkCa,
        boot: BootImage,
    ) -> anyhow::Result<Self> {
        let hosts: Vec<SnpHost> = match path {
            EvidencePath::Tpm => Vec::new(),
            EvidencePath::Snp => {
                anyhow::ensure!(
                    (1..=MAX_HOSTS).contains(&hosts),
                    "--snp-hosts must be 1 to {MAX_HOSTS}: test roots of one product are told apart by name only"
                );
                (0..hosts).map(SnpHost::generate).collect()
            }
        };
        let vms = match path {
            EvidencePath::Tpm => Vms::Tpm(build_parallel(vms, |_| TpmVm::new(&ca))?),
            EvidencePath::Snp => {
                let count = hosts.len();
                Vms::Snp(build_parallel(vms, |i| SnpVm::new(i % count))?)
            }
        };
        Ok(Self { ca, boot, hosts, vms })
    }

    /// `vms` TPM VMs and `vms` SEV-SNP guests spread over `hosts` hosts, admitted by one
    /// policy.
    pub(crate) fn build_both(vms: usize, hosts: usize, ca: EkCa, boot: BootImage) -> anyhow::Result<Self> {
        anyhow::ensure!(
            (1..=MAX_HOSTS).contains(&hosts),
            "--snp-hosts must be 1 to {MAX_HOSTS}: test roots of one product are told apart by name only"
        );
        let hosts: Vec<SnpHost> = (0..hosts).map(SnpHost::generate).collect();
        let count = hosts.len();
        let tpm = build_parallel(vms, |_| TpmVm::new(&ca))?;
        let snp = build_parallel(vms, |i| SnpVm::new(i % count))?;
        Ok(Self { ca, boot, hosts, vms: Vms::Both { tpm, snp } })
    }

    /// Number of VMs.
    pub(crate) fn len(&self) -> usize {
        match &self.vms {
            Vms::Tpm(vms) => vms.len(),
            Vms::Snp(vms) => vms.len(),
            Vms::Both { tpm, snp } => tpm.len() + snp.len(),
        }
    }

    /// The policy admitting the fleet: TPM VMs certified by the EK CA with the boot
    /// image's PCR values, SNP guests with their hosts' measurements; from 127.0.0.0/8.
    pub(crate) fn policy(&self) -> String {
        let mut policy = String::from("version = 1\n");
        let indices: Vec<String> = self.boot.indices().iter().map(ToString::to_string).collect();
        let _ = write!(
            policy,
            "\n[[class]]\nname = \"load-tpm\"\nevidence = \"tpm\"\nttl_seconds = 3600\naudiences = [\"load\"]\n\
             networks = [\"{NETWORK}\"]\n[class.match]\nek_issuers = [{issuer:?}]\n\
             [class.tpm]\npcr_bank = \"{bank}\"\npcrs = [{pcrs}]\n[class.tpm.pcr_values]\n",
            issuer = self.ca.name(),
            bank = BANK.name(),
            pcrs = indices.join(", "),
        );
        for &index in self.boot.indices() {
            let value = self.boot.value(index).map(hex::encode).unwrap_or_default();
            let _ = writeln!(policy, "{index} = [\"{value}\"]");
        }
        let mut measurements: Vec<String> = self.hosts.iter().map(|h| hex::encode(h.measurement())).collect();
        measurements.dedup();
        if !measurements.is_empty() {
            let _ = write!(
                policy,
                "\n[[class]]\nname = \"load-snp\"\nevidence = \"snp\"\nttl_seconds = 3600\naudiences = [\"load\"]\n\
                 networks = [\"{NETWORK}\"]\n[class.snp]\nmeasurements = [{}]\n\
                 min_tcb = {{ bootloader = 0, tee = 0, snp = 0, microcode = 0 }}\nallow_debug = false\nmax_vmpl = 0\n",
                measurements.iter().map(|m| format!("\"{m}\"")).collect::<Vec<_>>().join(", ")
            );
        }
        policy
    }

    /// Writes the trust material and policy into `dir`; returns the broker configuration
    /// lines that use them (`[tpm]`, `[[snp.test_roots]]`).
    pub(crate) fn write_setup(&self, dir: &Path) -> anyhow::Result<String> {
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.join(name);
            std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
            Ok::<_, anyhow::Error>(format!("{:?}", path.display().to_string()))
        };
        write("policy.toml", self.policy().as_bytes())?;
        let ca_path = dir.join(super::ek_ca::CA_CERT_FILE);
        self.ca.write_certificate(&ca_path)?;
        let mut config = format!("[tpm]\nek_roots = [{:?}]\n", ca_path.display().to_string());
        for (i, host) in self.hosts.iter().enumerate() {
            let signer = host.signer();
            let product = signer.product().name().to_ascii_lowercase();
            let ark = write(&format!("snp-host-{i}-ark.der"), signer.ark_der())?;
            let ask = write(&format!("snp-host-{i}-ask.der"), signer.ask_der())?;
            let asvk = write(&format!("snp-host-{i}-asvk.der"), signer.asvk_der())?;
            let _ = write!(
                config,
                "\n[[snp.test_roots]]\nproduct = \"{product}\"\nark = {ark}\nask = {ask}\nasvk = {asvk}\n"
            );
        }
        Ok(config)
    }
}
