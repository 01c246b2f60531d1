//! Real VMs with a genuine UEFI measured boot, for `tests/tests/real_vm.rs`: qemu (software
//! emulation) + OVMF + swtpm boot Debian's kernel through one of four [`Chain`]s, with the
//! release `mooring-client` in a busybox initramfs. REAL-VM.md (in the team's shared
//! directory) records what was measured on these machines; this follows it.
//!
//! - [`Media::build`] runs `tests/realvm/build.sh`: Debian's kernel, shim and grub are fetched
//!   once with `apt-get download` into `<target>/realvm/debs` (never installed), and the
//!   initramfs and the three disks are rebuilt from them and the given client on each run.
//! - [`VmTpm::manufacture`] makes a TPM with the harness's own swtpm setup
//!   ([`crate::swtpm::manufacture_state`]: EK certificates from the shared local CA);
//!   [`Vm::boot`] starts `swtpm socket --ctrl type=unixio,... --terminate` on it (no
//!   `startup-clear`: the firmware starts the TPM) and qemu with Secure Boot firmware, its
//!   own copy of the OVMF variables, `-device e1000,romfile=` and the disk at `bootindex=0`.
//! - The guest (`tests/realvm/init`) reports the PCRs of both banks, the event log and
//!   `/proc/cmdline` on its second serial port, a unix socket here ([`BootReport`]), then runs
//!   `mooring-client attest` each time [`Vm::attest`] asks. Its configuration and the broker's
//!   CA come through fw_cfg, so the images hold nothing that changes between runs.
//! - Networking is qemu's user mode with `restrict=on`: the guest reaches nothing but
//!   `10.0.2.100:8443` ([`GUEST_BROKER`]), which qemu forwards through `socat` to the broker on
//!   this machine's 127.0.0.1; the broker sees the VM as 127.0.0.1. [`BrokerTls`] makes a
//!   server certificate naming that address.
//!
//! KVM here runs no firmware, so qemu uses TCG: a boot takes 10-40 s of one core. Boot one VM
//! at a time.

mod control;
mod host;
mod media;
mod policy;
mod report;
mod tls;
mod tpm;
mod vm;

use std::net::Ipv4Addr;
use std::time::Duration;

pub use host::{release_client_or_skip, require_prerequisites, target_dir};
pub use media::Media;
pub use policy::learn_tpm;
pub use report::{save_report, BootReport};
pub use tls::BrokerTls;
pub use tpm::VmTpm;
pub use vm::{Attempt, Vm};

/// Where the guest dials the broker; qemu forwards it to the broker's port on 127.0.0.1.
pub const GUEST_BROKER: (Ipv4Addr, u16) = (Ipv4Addr::new(10, 0, 2, 100), 8443);
/// How long a boot may take, firmware to the guest's report (TCG: 10-40 s normally).
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
/// How long one `mooring-client attest` in the guest may take (4-5 s normally).
pub const ATTEST_TIMEOUT: Duration = Duration::from_secs(120);

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
const OVMF_VARS_SNAKEOIL: &str = "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd";
const OVMF_VARS_MICROSOFT: &str = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd";

/// How the VM boots. Secure Boot is on in every chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Chain {
    /// systemd-boot -> kernel from a GPT disk's ESP, both signed with OVMF's snakeoil db key.
    SystemdBoot,
    /// Debian's shim -> grub -> kernel as Debian signed them; OVMF with Microsoft's keys.
    ShimGrub,
    /// qemu `-kernel/-initrd/-append`: OVMF cannot verify the patched kernel and silently
    /// falls back to a legacy loader that measures nothing into PCR 4.
    QemuKernel,
    /// A unified kernel image (systemd's stub, assembled with objcopy, snakeoil-signed) as
    /// `\EFI\BOOT\BOOTX64.EFI`.
    Uki,
}

impl Chain {
    /// The name build.sh uses in its file names.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::SystemdBoot => "systemd-boot",
            Self::ShimGrub => "shim-grub",
            Self::QemuKernel => "kernel",
            Self::Uki => "uki",
        }
    }

    const fn ovmf_vars(self) -> &'static str {
        match self {
            Self::ShimGrub => OVMF_VARS_MICROSOFT,
            Self::SystemdBoot | Self::QemuKernel | Self::Uki => OVMF_VARS_SNAKEOIL,
        }
    }
}
