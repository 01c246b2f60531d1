//! configfs-tsm against a directory tree with the kernel's layout.
//!
//! A plain directory is not configfs: `mkdir` there makes an empty directory, and its files
//! do not answer reads with reports. So these tests play the kernel's part, and this is
//! where:
//! - the entry the kernel would create at `mkdir` is created by [`StandIn::new`] (a
//!   pre-created entry with the attributes the `sev_guest` provider shows). The client's own
//!   `mkdir` and `rmdir` are tested on a plain directory
//!   (`entries_are_fresh_directories_removed_after_use`);
//! - `generation` and `outblob` are named pipes served by a thread, so that, as in the
//!   kernel, the report is made when the client reads `outblob`, from the `inblob` and
//!   `privlevel` it wrote, and the second read of `generation` counts the writes made.
//!
//! Reports are signed by the attestation crate's test signer, not by a processor.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mooring_attestation::snp::sim::TestSigner;

use super::*;

fn signer() -> &'static TestSigner {
    static SIGNER: OnceLock<TestSigner> = OnceLock::new();
    SIGNER.get_or_init(TestSigner::generate)
}

/// A report the test signer signs over `report_data` at `vmpl`.
fn signed(report_data: &[u8; 64], vmpl: u32) -> Vec<u8> {
    let mut fields = signer().report_fields();
    fields.report_data = *report_data;
    fields.vmpl = vmpl;
    signer().sign(&fields)
}

/// What the stand-in kernel does for one entry.
#[derive(Debug, Clone)]
struct Kernel {
    provider: String,
    floor: u64,
    /// Writes someone else makes to the entry while the client uses it.
    foreign_writes: u64,
    /// `None`: the report for what the client wrote; `Some`: these bytes instead.
    outblob: Option<Vec<u8>>,
    auxblob: Vec<u8>,
}

impl Default for Kernel {
    fn default() -> Self {
        Self {
            provider: SEV_GUEST_PROVIDER.into(),
            floor: 0,
            foreign_writes: 0,
            outblob: None,
            auxblob: signer().cert_table(),
        }
    }
}

/// One entry made as the kernel makes it, and the thread answering its reads.
struct StandIn {
    path: PathBuf,
    thread: Option<JoinHandle<()>>,
}

impl StandIn {
    fn new(dir: &Path, name: &str, kernel: Kernel) -> Self {
        let path = dir.join(name);
        fs::create_dir(&path).unwrap();
        fs::write(path.join("provider"), format!("{}\n", kernel.provider)).unwrap();
        fs::write(path.join("privlevel_floor"), format!("{}\n", kernel.floor)).unwrap();
        // Write-only attributes exist before anyone writes them.
        fs::write(path.join("privlevel"), b"").unwrap();
        fs::write(path.join("inblob"), b"").unwrap();
        fs::write(path.join("auxblob"), &kernel.auxblob).unwrap();
        for fifo in ["generation", "outblob"] {
            let status = std::process::Command::new("mkfifo").arg(path.join(fifo)).status().unwrap();
            assert!(status.success(), "mkfifo {fifo}");
        }
        let served = path.clone();
        let thread = std::thread::spawn(move || serve(&served, &kernel));
        Self { path, thread: Some(thread) }
    }

    fn entry(&self) -> Entry {
        Entry::existing(&self.path)
    }

    fn written(&self, name: &str) -> Vec<u8> {
        fs::read(self.path.join(name)).unwrap()
    }
}

/// Releases a kernel thread still waiting for a reader (the client stopped early), then
/// joins it.
impl Drop for StandIn {
    fn drop(&mut self) {
        let Some(thread) = self.thread.take() else { return };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !thread.is_finished() && Instant::now() < deadline {
            for fifo in ["generation", "outblob"] {
                if let Ok(mut reader) =
                    OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(self.path.join(fifo))
                {
                    let _ = reader.read_to_end(&mut Vec::new());
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if std::thread::panicking() {
            return;
        }
        assert!(thread.is_finished(), "the stand-in kernel did not finish");
        thread.join().unwrap();
    }
}

/// The kernel's side: `generation`; then `outblob`, made when the client opens it (after its
/// writes) from the `inblob` and `privlevel` it wrote; then `generation` again, advanced by
/// every write made. Nothing here may fail: a client waiting on a pipe nobody answers would
/// wait for ever.
fn serve(entry: &Path, kernel: &Kernel) {
    let open = |name: &str| OpenOptions::new().write(true).open(entry.join(name));
    if let Ok(mut generation) = open("generation") {
        let _ = generation.write_all(b"0\n");
    }
    let written = || {
        let inblob = fs::read(entry.join("inblob")).unwrap_or_default();
        let privlevel = fs::read_to_string(entry.join("privlevel")).unwrap_or_default();
        (inblob, privlevel)
    };
    // Blocks until the client reads the report, which it does after writing.
    if let Ok(mut outblob) = open("outblob") {
        let (inblob, privlevel) = written();
        let report = kernel.outblob.clone().unwrap_or_else(|| {
            match (<[u8; 64]>::try_from(inblob.as_slice()), privlevel.trim().parse()) {
                (Ok(report_data), Ok(vmpl)) => signed(&report_data, vmpl),
                // sev_guest refuses other inblob lengths; here the outblob stays empty.
                _ => Vec::new(),
            }
        });
        let _ = outblob.write_all(&report);
    }
    let (inblob, privlevel) = written();
    let own = u64::from(!inblob.is_empty()) + u64::from(!privlevel.is_empty());
    if let Ok(mut generation) = open("generation") {
        let _ = generation.write_all(format!("{}\n", own + kernel.foreign_writes).as_bytes());
    }
}

/// `entry`'s entry for the first request, and no other (a retry must use a fresh entry).
fn only(stand_in: &StandIn) -> impl FnMut() -> Result<Entry, TsmError> + '_ {
    let mut given = false;
    move || {
        if std::mem::replace(&mut given, true) {
            return Err(TsmError::Unavailable {
                root: stand_in.path.clone(),
                reason: "no second entry".into(),
            });
        }
        Ok(stand_in.entry())
    }
}

const DATA: [u8; 64] = [0x5a; 64];

#[test]
fn the_report_answers_the_written_report_data_at_the_vmpl_with_the_hosts_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let stand_in = StandIn::new(dir.path(), "e", Kernel::default());
    let evidence = request_with(only(&stand_in), &DATA, 1).unwrap();

    let report = Report::parse(&evidence.report).unwrap();
    assert_eq!(report.report_data(), &DATA);
    // VMPL (ABI Table 23, offset 0x30) as written to privlevel.
    assert_eq!(evidence.report[0x30..0x34], 1u32.to_le_bytes());
    assert_eq!(evidence.certificate_table, Some(signer().cert_table()));
    assert_eq!(stand_in.written("inblob"), DATA);
    assert_eq!(stand_in.written("privlevel"), b"1\n");
}

#[test]
fn without_certificates_from_the_host_none_are_sent() {
    let dir = tempfile::tempdir().unwrap();
    let stand_in = StandIn::new(dir.path(), "e", Kernel { auxblob: Vec::new(), ..Kernel::default() });
    let evidence = request_with(only(&stand_in), &DATA, 0).unwrap();
    assert_eq!(evidence.certificate_table, None);
    assert_eq!(stand_in.written("privlevel"), b"0\n");
}

#[test]
fn another_provider_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let stand_in =
        StandIn::new(dir.path(), "e", Kernel { provider: "tdx_guest".into(), ..Kernel::default() });
    let err = request_with(only(&stand_in), &DATA, 0).unwrap_err();
    assert!(matches!(&err, TsmError::WrongProvider { found, .. } if found == "tdx_guest"), "{err}");
    assert!(err.to_string().contains("not \"sev_guest\""), "{err}");
    assert!(stand_in.written("inblob").is_empty());
}

#[test]
fn a_provider_longer_than_any_name_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let stand_in = StandIn::new(dir.path(), "e", Kernel { provider: "x".repeat(100), ..Kernel::default() });
    let err = request_with(only(&stand_in), &DATA, 0).unwrap_err();
    assert!(matches!(&err, TsmError::Oversized { path, max: 64 } if path.ends_with("provider")), "{err}");
}

#[test]
fn a_vmpl_below_the_floor_is_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let stand_in = StandIn::new(dir.path(), "e", Kernel { floor: 2, ..Kernel::default() });
    let err = request_with(only(&stand_in), &DATA, 1).unwrap_err();
    assert!(matches!(err, TsmError::BelowFloor { vmpl: 1, floor: 2 }), "{err}");
    assert!(stand_in.written("privlevel").is_empty());
}

#[test]
fn an_entry_changed_by_another_writer_is_given_up_for_a_fresh_one() {
    let dir = tempfile::tempdir().unwrap();
    let stand_ins = [
        StandIn::new(dir.path(), "changed", Kernel { foreign_writes: 1, ..Kernel::default() }),
        StandIn::new(dir.path(), "quiet", Kernel::default()),
    ];
    let mut next = stand_ins.iter();
    let evidence = request_with(|| Ok(next.next().unwrap().entry()), &DATA, 0).unwrap();
    assert_eq!(Report::parse(&evidence.report).unwrap().report_data(), &DATA);
    assert!(next.next().is_none(), "both entries used");
}

#[test]
fn a_generation_changed_on_every_entry_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let stand_ins: Vec<StandIn> = (0..ATTEMPTS)
        .map(|i| {
            StandIn::new(dir.path(), &format!("e{i}"), Kernel { foreign_writes: 1, ..Kernel::default() })
        })
        .collect();
    let mut next = stand_ins.iter();
    let err = request_with(|| Ok(next.next().unwrap().entry()), &DATA, 0).unwrap_err();
    assert!(
        matches!(err, TsmError::GenerationChanged { expected: 2, found: 3, attempts: ATTEMPTS }),
        "{err}"
    );
    assert!(err.to_string().contains("another writer"), "{err}");
}

#[test]
fn a_short_outblob_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let short = signed(&DATA, 0)[..REPORT_LEN - 1].to_vec();
    let stand_in = StandIn::new(dir.path(), "e", Kernel { outblob: Some(short), ..Kernel::default() });
    let err = request_with(only(&stand_in), &DATA, 0).unwrap_err();
    assert!(matches!(err, TsmError::ReportSize { len } if len == REPORT_LEN - 1), "{err}");
}

#[test]
fn an_outblob_over_the_kernels_bound_is_refused_after_reading_only_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let huge = vec![0u8; MAX_BLOB + 4096];
    let stand_in = StandIn::new(dir.path(), "e", Kernel { outblob: Some(huge), ..Kernel::default() });
    let err = request_with(only(&stand_in), &DATA, 0).unwrap_err();
    assert!(
        matches!(&err, TsmError::Oversized { path, max } if path.ends_with("outblob") && *max == MAX_BLOB),
        "{err}"
    );
}

#[test]
fn a_report_of_the_right_size_that_is_not_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let stand_in =
        StandIn::new(dir.path(), "e", Kernel { outblob: Some(vec![0xff; REPORT_LEN]), ..Kernel::default() });
    let err = request_with(only(&stand_in), &DATA, 0).unwrap_err();
    assert!(matches!(err, TsmError::NotAReport(_)), "{err}");
}

#[test]
fn a_report_for_other_report_data_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut other = DATA;
    other[63] ^= 1;
    let stand_in =
        StandIn::new(dir.path(), "e", Kernel { outblob: Some(signed(&other, 0)), ..Kernel::default() });
    let err = request_with(only(&stand_in), &DATA, 0).unwrap_err();
    assert!(matches!(err, TsmError::ReportDataMismatch), "{err}");
}

#[test]
fn entries_are_fresh_directories_removed_after_use() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("report");
    fs::create_dir(&root).unwrap();
    let tsm = ConfigfsTsm::open(&root).unwrap();
    assert_eq!(fs::read_dir(&root).unwrap().count(), 0, "the probe entry is removed");

    let (first, second) = (Entry::create(&root).unwrap(), Entry::create(&root).unwrap());
    assert_ne!(first.path, second.path);
    let name = first.path.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(name.starts_with(&format!("mooring-{}-", std::process::id())), "{name}");
    drop((first, second));
    assert_eq!(fs::read_dir(&root).unwrap().count(), 0);

    // A plain directory is not configfs: the new entry has no attributes. The request says
    // which one it missed, and leaves nothing behind.
    let err = tsm.request(&DATA, 0).unwrap_err();
    assert!(matches!(&err, TsmError::Io { path, .. } if path.ends_with("provider")), "{err}");
    assert_eq!(fs::read_dir(&root).unwrap().count(), 0);
}

#[test]
fn a_missing_tree_is_unavailable_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let err = ConfigfsTsm::open(&dir.path().join("tsm/report")).unwrap_err();
    assert!(matches!(err, TsmError::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains("older than 6.7"), "{err}");
}
