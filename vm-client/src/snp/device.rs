//! Which interface a real guest asks for its reports: configfs-tsm when this process can
//! make a report entry there, `/dev/sev-guest` (the ioctl) otherwise.

use std::path::Path;

use super::configfs_tsm::ConfigfsTsm;
use super::sev_guest::SevGuest;
use super::{GuestError, SnpDevice, SnpEvidence};
use crate::config::SnpConfig;

/// The guest's report interface, chosen once at start.
#[derive(Debug)]
pub enum GuestDevice {
    /// configfs-tsm report entries (Linux 6.7+).
    ConfigfsTsm(ConfigfsTsm),
    /// The `SNP_GET_EXT_REPORT` ioctl on the guest device.
    SevGuest(SevGuest),
}

impl GuestDevice {
    /// configfs-tsm at `config.configfs_tsm` when an entry can be made there, else the
    /// device at `config.device`. The choice and the reason for it are logged.
    ///
    /// # Errors
    /// When neither can be used; the error names both reasons.
    pub fn open(config: &SnpConfig) -> Result<Self, GuestError> {
        Self::choose(&config.configfs_tsm, &config.device)
    }

    fn choose(root: &Path, device: &Path) -> Result<Self, GuestError> {
        let tsm_error = match ConfigfsTsm::open(root) {
            Ok(tsm) => {
                tracing::info!(root = %root.display(), "SEV-SNP reports through configfs-tsm");
                return Ok(Self::ConfigfsTsm(tsm));
            }
            Err(e) => e,
        };
        match SevGuest::open(device) {
            Ok(guest) => {
                tracing::info!(device = %device.display(), configfs_tsm = %tsm_error, "SEV-SNP reports through the guest device");
                Ok(Self::SevGuest(guest))
            }
            Err(GuestError::Device { device, reason }) => {
                Err(GuestError::Device { device, reason: format!("{reason}; and {tsm_error}") })
            }
            Err(other) => Err(other),
        }
    }
}

impl SnpDevice for GuestDevice {
    fn report(&self, report_data: &[u8; 64], vmpl: u32) -> Result<SnpEvidence, GuestError> {
        match self {
            Self::ConfigfsTsm(tsm) => tsm.report(report_data, vmpl),
            Self::SevGuest(guest) => guest.report(report_data, vmpl),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn without_the_configfs_tree_the_guest_device_is_chosen() {
        let dir = tempfile::tempdir().unwrap();
        // Any file opens read-write as the "device": the choice is what is tested here.
        let device = dir.path().join("sev-guest");
        std::fs::write(&device, b"").unwrap();
        let chosen = GuestDevice::choose(&dir.path().join("no/tsm/report"), &device).unwrap();
        assert!(matches!(chosen, GuestDevice::SevGuest(_)), "{chosen:?}");
    }

    #[test]
    fn a_report_directory_that_takes_an_entry_is_chosen_first() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("report");
        std::fs::create_dir(&root).unwrap();
        let chosen = GuestDevice::choose(&root, &dir.path().join("no-device")).unwrap();
        let GuestDevice::ConfigfsTsm(tsm) = &chosen else { panic!("{chosen:?}") };
        assert_eq!(tsm.root(), root);
        // The probe entry is gone again.
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
    }

    #[test]
    fn a_root_that_takes_no_entry_falls_back_and_neither_names_both_reasons() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the directory should be: mkdir under it fails (ENOTDIR).
        let root = dir.path().join("report");
        std::fs::write(&root, b"").unwrap();
        let device = dir.path().join("sev-guest");
        std::fs::write(&device, b"").unwrap();
        assert!(matches!(GuestDevice::choose(&root, &device).unwrap(), GuestDevice::SevGuest(_)));

        let err = GuestDevice::choose(&dir.path().join("absent"), &dir.path().join("no-device")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("no-device"), "{text}");
        assert!(text.contains("configfs-tsm at"), "{text}");
        assert!(text.contains("older than 6.7"), "{text}");
    }
}
