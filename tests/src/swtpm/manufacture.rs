//! Manufacturing a TPM: swtpm_setup on a state directory, with EK certificates from the
//! shared local CA (or a private one).

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use super::{EkKind, SwtpmOptions};
use crate::cmd::Invocation;
use crate::error::HarnessError;
use crate::prereq::find_program;

/// File names swtpm_localca uses in its state directory.
const CA_ROOT_CERT: &str = "swtpm-localca-rootca-cert.pem";
const CA_ROOT_KEY: &str = "swtpm-localca-rootca-privkey.pem";
const CA_SIGNING_KEY: &str = "signkey.pem";
const CA_ISSUER_CERT: &str = "issuercert.pem";
const CA_SERIAL: &str = "certserial";
const CA_FILES: [&str; 5] = [CA_ROOT_CERT, CA_ROOT_KEY, CA_SIGNING_KEY, CA_ISSUER_CERT, CA_SERIAL];
/// Name of the shared CA directory below the cargo target directory.
const SHARED_CA_DIR_NAME: &str = "mooring-swtpm-localca";
/// Environment variable overriding where the shared CA lives.
pub const SHARED_CA_DIR_ENV: &str = "MOORING_SWTPM_CA_DIR";

/// The PEM certificates of the local CA that issued an instance's EK certificates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EkCaFiles {
    root: PathBuf,
    intermediate: PathBuf,
}

impl EkCaFiles {
    fn in_dir(dir: &Path) -> Self {
        Self { root: dir.join(CA_ROOT_CERT), intermediate: dir.join(CA_ISSUER_CERT) }
    }

    /// The self-signed root (`CN=swtpm-localca-rootca`): the trust anchor.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The intermediate (`CN=swtpm-localca`) that signs the EK certificates.
    #[must_use]
    pub fn intermediate(&self) -> &Path {
        &self.intermediate
    }

    /// Root then intermediate.
    #[must_use]
    pub fn all(&self) -> [&Path; 2] {
        [&self.root, &self.intermediate]
    }
}

/// Manufactures a TPM the way [`Swtpm::start`](super::Swtpm::start) does, without starting
/// swtpm: its state in `root/state`, its EK certificates in `root/ek-certs`
/// ([`ek_cert_file`]), signed by the shared local CA (or a private one, per `options`). For a
/// swtpm that another program drives, e.g. qemu's TPM emulator backend in the real-VM test
/// (`crate::realvm`).
///
/// # Errors
/// A program is missing, or swtpm_setup failed (the error carries its output).
pub fn manufacture_state(root: &Path, options: &SwtpmOptions) -> Result<EkCaFiles, HarnessError> {
    for sub in ["state", "ek-certs"] {
        fs::create_dir_all(root.join(sub))
            .map_err(|e| HarnessError::io(format!("create {sub} directory"), e))?;
    }
    manufacture(root, options)
}

/// Where [`manufacture_state`] wrote the DER certificate of the `kind` EK.
#[must_use]
pub fn ek_cert_file(root: &Path, kind: EkKind) -> PathBuf {
    root.join("ek-certs").join(kind.cert_file_name())
}

/// Runs swtpm_setup in `root/state`; returns the CA that signed the EK certificates.
pub(super) fn manufacture(root: &Path, options: &SwtpmOptions) -> Result<EkCaFiles, HarnessError> {
    let shared = if options.private_ca { None } else { shared_ca_dir() };
    let (ca_dir, publish_to) = match shared {
        Some(dir) if CA_FILES.iter().all(|f| dir.join(f).is_file()) => (dir, None),
        other => {
            let private = root.join("ca");
            fs::create_dir(&private).map_err(|e| HarnessError::io("create CA directory", e))?;
            // Publish only where nothing is yet: an incomplete directory is left alone.
            (private, other.filter(|dir| !dir.exists()))
        }
    };

    let localca = find_program("swtpm_localca")
        .ok_or_else(|| HarnessError::MissingTool { tool: "swtpm_localca".to_owned() })?;
    let localca_conf = root.join("swtpm-localca.conf");
    let localca_options = root.join("swtpm-localca.options");
    let setup_conf = root.join("swtpm_setup.conf");
    write_file(
        &localca_conf,
        &format!(
            "statedir = {}\nsigningkey = {}\nissuercert = {}\ncertserial = {}\n",
            ca_dir.display(),
            ca_dir.join(CA_SIGNING_KEY).display(),
            ca_dir.join(CA_ISSUER_CERT).display(),
            ca_dir.join(CA_SERIAL).display(),
        ),
    )?;
    write_file(
        &localca_options,
        "--platform-manufacturer Mooring\n--platform-version 2.1\n--platform-model swtpm\n",
    )?;
    write_file(
        &setup_conf,
        &format!(
            "create_certs_tool = {}\ncreate_certs_tool_config = {}\ncreate_certs_tool_options = {}\n",
            localca.display(),
            localca_conf.display(),
            localca_options.display(),
        ),
    )?;

    let mut args: Vec<OsString> = vec![
        "--tpm2".into(),
        "--tpmstate".into(),
        root.join("state").into(),
        "--config".into(),
        setup_conf.into(),
        "--overwrite".into(),
        "--pcr-banks".into(),
        options.pcr_banks.clone().into(),
    ];
    if options.ek_certs {
        args.extend([
            "--create-ek-cert".into(),
            "--create-platform-cert".into(),
            "--write-ek-cert-files".into(),
            root.join("ek-certs").into(),
        ]);
    }
    Invocation { program: "swtpm_setup", args, envs: Vec::new(), cwd: Some(root) }.run()?;

    if let Some(shared) = publish_to {
        publish_ca(&ca_dir, &shared);
    }
    Ok(EkCaFiles::in_dir(&ca_dir))
}

/// Where the shared CA lives: `$MOORING_SWTPM_CA_DIR`, else `mooring-swtpm-localca` in the
/// cargo target directory this test binary was built into (the ancestor holding
/// `CACHEDIR.TAG`). `None` when neither is known: every instance then has its own CA.
fn shared_ca_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(SHARED_CA_DIR_ENV).filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .skip(1)
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map(|target| target.join(SHARED_CA_DIR_NAME))
}

/// Copies the CA in `from` to `to` through a staging directory and one rename, so readers
/// see all of it or nothing. Best effort: losing the race to another process, or any I/O
/// error, leaves `to` as it was (this instance keeps its own CA either way).
fn publish_ca(from: &Path, to: &Path) {
    let (Some(parent), Some(name)) = (to.parent(), to.file_name()) else {
        return;
    };
    let Ok(staging) =
        tempfile::Builder::new().prefix(&format!(".{}.", name.to_string_lossy())).tempdir_in(parent)
    else {
        return;
    };
    let copied = CA_FILES.iter().all(|file| fs::copy(from.join(file), staging.path().join(file)).is_ok());
    if copied && fs::rename(staging.path(), to).is_ok() {
        // The staging directory is now `to`: nothing left for `staging` to remove.
        let _ = staging.keep();
    }
}

fn write_file(path: &Path, contents: &str) -> Result<(), HarnessError> {
    fs::write(path, contents).map_err(|e| HarnessError::io(format!("write {}", path.display()), e))
}
