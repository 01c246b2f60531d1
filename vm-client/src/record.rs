//! `--record FILE`: each exchange with the broker written as
//! [`RecordedEvidence`] JSON, for `mooring-broker policy dry-run`.
//!
//! The [`BrokerApi`](crate::api::BrokerApi) remembers each `begin` request and the nonce it
//! was answered with, and once the broker has judged the `finish` (admitted or refused; not
//! when it could not be reached), writes the whole exchange to the file: atomically, mode 0600, replacing the previous
//! one (`run` keeps the latest). What it holds is what the client sent: public keys,
//! reports, quotes, the event log. The TPM path's activated secret is in it too; the
//! challenge it answered is spent by the time the file is written, so it opens nothing.
//!
//! `address` is the address the client attested from as the client knows it: the
//! configured `source_address` (or `--source-address`), otherwise the local address the
//! kernel routes to the broker from. A NAT or proxy between the VM and the broker changes
//! what the broker saw; a dry run then judges the recorded address.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use mooring_attestation::protocol::{
    AzureBeginRequest, RecordedEvidence, RecordedExchange, SnpBeginRequest, TpmBeginRequest,
};

use crate::runtime::replace_file;

/// Where exchanges are recorded, and the `begin` awaiting its `finish`.
#[derive(Debug)]
pub struct Recorder {
    path: PathBuf,
    begun: Mutex<Option<Begun>>,
}

/// A `begin` request and the nonce the broker answered it with.
#[derive(Debug, Clone)]
pub(crate) enum Begun {
    Tpm(TpmBeginRequest, Vec<u8>),
    Snp(Vec<u8>),
    Azure(Vec<u8>),
}

/// A `finish` request, to pair with its [`Begun`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Finished<'a> {
    Tpm(&'a mooring_attestation::protocol::TpmFinishRequest),
    Snp(&'a mooring_attestation::protocol::SnpFinishRequest),
    Azure(&'a mooring_attestation::protocol::AzureFinishRequest),
}

impl Recorder {
    /// A recorder writing to `path`.
    #[must_use]
    pub fn new(path: &Path) -> Self {
        Self { path: path.to_owned(), begun: Mutex::new(None) }
    }

    /// The file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Remembers a `begin` (replacing one that never finished).
    pub(crate) fn begun(&self, begun: Begun) {
        *self.begun.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(begun);
    }

    /// Writes the exchange `finished` completes, sent from `address`.
    ///
    /// # Errors
    /// A description of what failed: no `begin` of the same kind before, or writing.
    pub(crate) fn finished(&self, finished: Finished<'_>, address: IpAddr) -> Result<(), String> {
        let begun = self.begun.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        let evidence = match (begun, finished) {
            (Some(Begun::Tpm(begin, nonce)), Finished::Tpm(finish)) => {
                RecordedEvidence::Tpm(RecordedExchange { address, nonce, begin, finish: finish.clone() })
            }
            (Some(Begun::Snp(nonce)), Finished::Snp(finish)) => RecordedEvidence::Snp(RecordedExchange {
                address,
                nonce,
                begin: SnpBeginRequest {},
                finish: finish.clone(),
            }),
            (Some(Begun::Azure(nonce)), Finished::Azure(finish)) => {
                RecordedEvidence::Azure(RecordedExchange {
                    address,
                    nonce,
                    begin: AzureBeginRequest {},
                    finish: finish.clone(),
                })
            }
            _ => return Err("a finish without its begin of the same kind".into()),
        };
        let mut json = serde_json::to_vec_pretty(&evidence).map_err(|e| e.to_string())?;
        json.push(b'\n');
        let (dir, name) = match (self.path.parent(), self.path.file_name().and_then(|n| n.to_str())) {
            (Some(dir), Some(name)) => (if dir.as_os_str().is_empty() { Path::new(".") } else { dir }, name),
            _ => return Err(format!("{} is not a file path", self.path.display())),
        };
        replace_file(dir, name, &json).map_err(|e| format!("writing {}: {e}", self.path.display()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use mooring_attestation::protocol::SnpFinishRequest;

    use super::*;

    fn finish() -> SnpFinishRequest {
        SnpFinishRequest {
            challenge_id: "c1".into(),
            report: vec![1; 4],
            certificate_table: None,
            key_spki: vec![2; 3],
            sealing_key: vec![3; 32],
        }
    }

    #[test]
    fn an_exchange_is_written_private_and_reads_back() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("evidence.json");
        let recorder = Recorder::new(&path);
        recorder.begun(Begun::Snp(vec![9; 32]));
        let finish = finish();
        recorder.finished(Finished::Snp(&finish), "10.0.0.5".parse().unwrap()).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let read: RecordedEvidence = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let RecordedEvidence::Snp(exchange) = read else { panic!("not snp") };
        assert_eq!(exchange.address.to_string(), "10.0.0.5");
        assert_eq!(exchange.nonce, vec![9; 32]);
        assert_eq!(exchange.finish.challenge_id, "c1");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"kind\": \"snp\""), "{text}");
        // The directory was left as it was (the runtime directory's writer tightens its own).
        assert_eq!(std::fs::metadata(dir.path()).unwrap().mode() & 0o777, 0o755);
    }

    #[test]
    fn a_finish_without_its_begin_is_not_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evidence.json");
        let recorder = Recorder::new(&path);
        let finish = finish();
        let address = "127.0.0.1".parse().unwrap();
        assert!(recorder
            .finished(Finished::Snp(&finish), address)
            .unwrap_err()
            .contains("without its begin"));
        recorder.begun(Begun::Azure(vec![1]));
        assert!(recorder.finished(Finished::Snp(&finish), address).is_err());
        assert!(!path.exists());
    }
}
