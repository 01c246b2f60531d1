//! The TCG event log module against the 39 real logs of the shared test data
//! (`tpm/eventlogs/expected_pcrs.json`, MANIFEST section 5) and the two quoted GCE logs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use mooring_attestation::codec::CodecError;
use mooring_attestation::tpm::alg::HashAlg;
use mooring_attestation::tpm::eventlog::{
    CmdlineSource, EventKind, EventLog, EventLogError, EventType, LogFormat,
};
use mooring_attestation::tpm::pcr::PcrValues;
use mooring_testdata::testdata;
use proptest::prelude::*;
use serde_json::Value;
use support::{exercise, expected, expected_pcrs, replayed};

const RHEL8: &str = "tpm/eventlogs/go-tpm-tools/rhel8-uefi.bin";
const UBUNTU_NO_SB: &str = "tpm/eventlogs/go-tpm-tools/ubuntu-2104-no-secure-boot.bin";
const COS85_QUOTED: &str = "tpm/quotes/gce-cos85-vtpm/nonce9009";
const WINDOWS_QUOTED: &str = "tpm/quotes/gce-windows-vtpm";

/// Test helpers (in a `cfg(test)` module so the workspace's test allowances apply).
#[cfg(test)]
mod support {
    use super::*;

    pub(crate) fn expected() -> BTreeMap<String, Value> {
        let text = testdata("tpm/eventlogs/expected_pcrs.json");
        serde_json::from_slice(&text).expect("expected_pcrs.json")
    }

    /// `{"sha1": {"0": "hex"}}` of one log as bank -> index -> bytes.
    pub(crate) fn expected_pcrs(entry: &Value) -> BTreeMap<HashAlg, BTreeMap<u8, Vec<u8>>> {
        let mut out = BTreeMap::new();
        for (bank, values) in entry["replayed_pcrs"].as_object().unwrap() {
            let bank = HashAlg::from_name(bank).unwrap();
            let values = values.as_object().unwrap();
            let values = values
                .iter()
                .map(|(i, v)| (i.parse().unwrap(), hex::decode(v.as_str().unwrap()).unwrap()))
                .collect();
            out.insert(bank, values);
        }
        out
    }

    pub(crate) fn replayed(values: &PcrValues, bank: HashAlg) -> BTreeMap<u8, Vec<u8>> {
        values.bank(bank).map(|(i, v)| (i, v.to_vec())).collect()
    }

    pub(crate) fn exercise(bytes: &[u8]) {
        if let Ok(log) = EventLog::parse(bytes) {
            let replay = log.replay();
            for event in log.events() {
                let _ = event.kind();
            }
            for bank in log.banks() {
                let _ = log.summary(*bank);
                let _ = log.check_against(&replay, *bank, &[0, 7]);
            }
        }
    }
}

#[test]
fn every_reference_log_parses_and_replays_to_its_expected_pcrs() {
    let expected = expected();
    assert_eq!(expected.len(), 39);
    for (path, entry) in &expected {
        let bytes = testdata(path);
        let log = EventLog::parse(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
        let format = match entry["format"].as_str().unwrap() {
            f if f.starts_with("legacy SHA-1") => LogFormat::LegacySha1,
            f if f.starts_with("crypto-agile") => LogFormat::CryptoAgile,
            f => panic!("{path}: unknown format {f}"),
        };
        assert_eq!(log.format(), format, "{path}");
        let banks: Vec<&str> = log.banks().iter().map(|b| b.name()).collect();
        let want_banks: Vec<&str> =
            entry["banks"].as_array().unwrap().iter().map(|b| b.as_str().unwrap()).collect();
        assert_eq!(banks, want_banks, "{path}");
        assert!(log.unsupported_algorithms().is_empty(), "{path}");
        assert_eq!(log.events().len(), usize::try_from(entry["events"].as_u64().unwrap()).unwrap(), "{path}");
        let locality: Vec<u8> = entry["startup_locality"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| u8::try_from(l.as_u64().unwrap()).unwrap())
            .collect();
        assert_eq!(log.startup_locality().into_iter().collect::<Vec<_>>(), locality, "{path}");

        let replay = log.replay();
        let want = expected_pcrs(entry);
        assert_eq!(want.keys().copied().collect::<Vec<_>>(), {
            let mut sorted = log.banks().to_vec();
            sorted.sort();
            sorted
        });
        for (bank, values) in &want {
            assert_eq!(&replayed(&replay, *bank), values, "{path} {bank}");
            let extended: Vec<u8> = (0..24).filter(|i| log.extends(*bank, *i)).collect();
            assert_eq!(extended, values.keys().copied().collect::<Vec<_>>(), "{path} {bank}: extends");
            if !values.is_empty() {
                let indices: Vec<u8> = values.keys().copied().collect();
                let matched =
                    log.check_against(&replay, *bank, &indices).unwrap_or_else(|e| panic!("{path}: {e}"));
                assert_eq!(matched.pcrs(), indices);
            }
        }
        for event in log.events() {
            let _ = event.kind();
        }
        for bank in log.banks() {
            let _ = serde_json::to_string(&log.summary(*bank)).unwrap();
        }
    }
}

/// The one log whose framing needs a quirk: tpm2-tools' fixture stores the Spec ID vendor
/// info after the event's declared size (the reference parser stopped at byte 69 of 73).
#[test]
fn specid_vendordata_reads_vendor_info_after_the_event() {
    let bytes = testdata("tpm/eventlogs/tpm2-tools/specid-vendordata.bin");
    let log = EventLog::parse(&bytes).unwrap();
    assert_eq!(log.events().len(), 1);
    assert_eq!(log.events()[0].kind(), EventKind::SpecId);
    assert_eq!(log.events()[0].data().len(), 37);
    let mut short = bytes.clone();
    short.pop();
    assert!(EventLog::parse(&short).is_err());
}

#[test]
fn short_no_action_log_is_a_lone_startup_locality_event() {
    let bytes = testdata("tpm/eventlogs/go-attestation/short_no_action_eventlog");
    let log = EventLog::parse(&bytes).unwrap();
    assert_eq!(log.format(), LogFormat::LegacySha1);
    assert_eq!(log.startup_locality(), Some(3));
    assert_eq!(log.events()[0].kind(), EventKind::StartupLocality(3));
    assert_eq!(log.replay(), PcrValues::new());
}

#[test]
fn quoted_gce_logs_match_their_quotes() {
    for (dir, bank_list, firmware_pcrs) in [
        (
            COS85_QUOTED,
            &[HashAlg::Sha1, HashAlg::Sha256, HashAlg::Sha384][..],
            &[0u8, 1, 2, 3, 4, 5, 6, 7, 8, 9][..],
        ),
        (
            WINDOWS_QUOTED,
            &[HashAlg::Sha1][..],
            &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 23][..],
        ),
    ] {
        let bytes = testdata(&format!("{dir}/binary_bios_measurements"));
        let quoted = String::from_utf8(testdata(&format!("{dir}/pcrs.json"))).unwrap();
        let quoted = PcrValues::from_json(&quoted).unwrap();
        let log = EventLog::parse(&bytes).unwrap();
        for bank in bank_list {
            let matched =
                log.check_against(&quoted, *bank, firmware_pcrs).unwrap_or_else(|e| panic!("{dir}: {e}"));
            assert_eq!(matched.bank(), *bank);
            assert!(matched.summary().unverified_events().is_empty(), "{dir}");
        }
    }
    // PCR 10 is IMA's, extended after the firmware log ends: the log cannot vouch for it.
    let bytes = testdata(&format!("{COS85_QUOTED}/binary_bios_measurements"));
    let quoted =
        PcrValues::from_json(&String::from_utf8(testdata(&format!("{COS85_QUOTED}/pcrs.json"))).unwrap())
            .unwrap();
    let log = EventLog::parse(&bytes).unwrap();
    let err = log.check_against(&quoted, HashAlg::Sha256, &[10, 0, 7]).unwrap_err();
    assert!(matches!(err, EventLogError::PcrMismatch { index: 10, .. }), "{err}");
    assert!(matches!(
        log.check_against(&quoted, HashAlg::Sha256, &[7, 17]),
        Err(EventLogError::UncheckablePcr { index: 17, .. })
    ));
}

#[test]
fn a_flipped_digest_byte_is_named_by_pcr() {
    let bytes = testdata(RHEL8);
    let log = EventLog::parse(&bytes).unwrap();
    let quoted = log.replay();
    let secure_boot = log.events()[3];
    assert_eq!(secure_boot.pcr(), 7);
    let digest = secure_boot.digest(HashAlg::Sha256).unwrap();
    let at = bytes.windows(digest.len()).position(|w| w == digest).unwrap();
    let mut flipped = bytes.clone();
    flipped[at + 5] ^= 0x01;
    let tampered = EventLog::parse(&flipped).unwrap();
    let replay = tampered.replay();
    for (index, value) in quoted.bank(HashAlg::Sha256) {
        assert_eq!(replay.get(HashAlg::Sha256, index) == Some(value), index != 7, "PCR {index}");
    }
    let all: Vec<u8> = (0..=9).collect();
    let err = tampered.check_against(&quoted, HashAlg::Sha256, &all).unwrap_err();
    let EventLogError::PcrMismatch { bank, index, ref replayed, ref quoted } = err else { panic!("{err}") };
    assert_eq!((bank, index), (HashAlg::Sha256, 7));
    assert_ne!(replayed, quoted);
    assert!(err.to_string().starts_with("event log replays PCR 7 (sha256) to "), "{err}");
    // The other banks are untouched by the flip.
    assert!(tampered.check_against(&log.replay(), HashAlg::Sha1, &all).is_ok());
}

#[test]
fn truncated_and_padded_real_logs_are_rejected() {
    let bytes = testdata(RHEL8);
    let err = EventLog::parse(&bytes[..bytes.len() - 1]).unwrap_err();
    let EventLogError::Framing { number, source: CodecError::Truncated { field, .. }, .. } = err else {
        panic!("{err}")
    };
    assert_eq!((number, field), (82, "TCG_PCR_EVENT2.eventSize"));
    for padding in [&[0u8; 16][..], &[0xff; 4][..], &[0; 1][..]] {
        let mut padded = bytes.clone();
        padded.extend_from_slice(padding);
        assert!(matches!(EventLog::parse(&padded), Err(EventLogError::Framing { number: 83, .. })));
    }
    let legacy = testdata("tpm/eventlogs/go-tpm-tools/debian-10.bin");
    let mut padded = legacy.clone();
    padded.extend_from_slice(&[0; 8]);
    assert!(matches!(EventLog::parse(&padded), Err(EventLogError::Framing { number: 25, .. })));
}

#[test]
fn secure_boot_state_and_boot_applications() {
    let bytes = testdata(RHEL8);
    let log = EventLog::parse(&bytes).unwrap();
    let quoted = log.replay();
    let matched = log.check_against(&quoted, HashAlg::Sha256, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap();
    let summary = matched.summary();
    assert_eq!(summary.secure_boot(), Some(true));
    let dbs = summary.secure_boot_databases();
    assert!(dbs.pk().unwrap().is_present() && dbs.kek().unwrap().is_present());
    assert_eq!(dbs.dbx().unwrap().data_len(), 11936);
    assert_eq!(dbs.db().unwrap().digest(), log.events()[6].digest(HashAlg::Sha256).unwrap());
    let apps: Vec<(String, Option<&str>)> =
        summary.boot_applications().iter().map(|a| (hex::encode(a.digest()), a.file_path())).collect();
    assert_eq!(
        apps,
        [
            (
                "40d6cae02973789080cf4c3a9ad11b5a0a4d8bba4438ab96e276cc784454dee7".into(),
                Some("\\EFI\\redhat\\shimx64.efi")
            ),
            (
                "e8a268c431da72caaae407f729f602b9dbf5d1d43492d4a51cc2b688a08586e3".into(),
                Some("\\EFI\\redhat\\grubx64.efi")
            ),
            ("e4c0382f98feaebfd43923a85fd6da9a20e1a48524a4d5928c31850ca1a96a6e".into(), None),
        ]
    );
    assert_eq!(
        summary.kernel_cmdlines()[0].cmdline(),
        "(hd0,gpt2)/boot/vmlinuz-4.18.0-240.22.1.el8_3.x86_64 root=UUID=f3948fb4-cce7-4193-940a-c50052e93bf3 ro \
         net.ifnames=0 biosdevname=0 scsi_mod.use_blk_mq=Y crashkernel=auto console=ttyS0,38400n8"
    );
    assert_eq!(summary.separator_pcrs(), [0, 1, 2, 3, 4, 5, 6, 7]);
    assert!(summary.error_separator_pcrs().is_empty());
    let json = serde_json::to_value(&summary).unwrap();
    assert_eq!(json["bank"], "sha256");
    assert_eq!(json["secure_boot"], true);
    assert_eq!(
        json["boot_applications"][0]["digest"],
        "40d6cae02973789080cf4c3a9ad11b5a0a4d8bba4438ab96e276cc784454dee7"
    );

    let bytes = testdata(UBUNTU_NO_SB);
    let log = EventLog::parse(&bytes).unwrap();
    let summary = log.check_against(&log.replay(), HashAlg::Sha384, &[0, 7, 8]).unwrap().summary();
    assert_eq!(summary.secure_boot(), Some(false));
    assert_eq!(summary.boot_applications().len(), 0, "PCR 4 was not checked");
    assert_eq!(
        summary.kernel_cmdlines()[0].cmdline(),
        "/boot/vmlinuz-5.11.0-1006-gcp root=PARTUUID=6443a6ae-e5e9-4df7-9a06-d1329e50f33c ro console=ttyS0 panic=-1"
    );
    assert_eq!(summary.kernel_cmdlines()[0].source(), CmdlineSource::Grub);
}

#[test]
fn systemd_boot_command_lines() {
    let bytes = testdata("tpm/eventlogs/tpm2-tools/event-sd-boot-fedora37.bin");
    let log = EventLog::parse(&bytes).unwrap();
    let summary = log.summary(HashAlg::Sha256);
    let cmdlines: Vec<(u32, CmdlineSource, &str)> =
        summary.kernel_cmdlines().iter().map(|c| (c.pcr(), c.source(), c.cmdline())).collect();
    let line = " console=ttyS0 console=tty0 efi=debug ";
    assert_eq!(cmdlines, [(12, CmdlineSource::SystemdBoot, line), (12, CmdlineSource::SystemdBoot, line)]);
    assert_eq!(summary.secure_boot(), Some(false), "SecureBoot measured with empty data");

    // Old systemd-boot logged its PCR 8 load options with a digest that is not the hash of
    // the logged bytes: the text decodes, but the summary does not vouch for it.
    let bytes = testdata("tpm/eventlogs/go-tpm-tools/arch-linux-workstation.bin");
    let log = EventLog::parse(&bytes).unwrap();
    let EventKind::Ipl(text) = log.events()[24].kind() else { panic!("EV_IPL") };
    assert!(text.starts_with("initrd=\\intel-ucode.img") && text.ends_with("l1tf=off"), "{text}");
    let summary = log.summary(HashAlg::Sha256);
    assert!(summary.kernel_cmdlines().is_empty());
    assert_eq!(summary.unverified_events(), [24]);
}

#[test]
fn typed_events_in_real_logs() {
    let bytes = testdata(RHEL8);
    let log = EventLog::parse(&bytes).unwrap();
    let kinds: Vec<EventKind<'_>> = log.events().iter().map(|e| e.kind()).collect();
    assert_eq!(kinds[0], EventKind::SpecId);
    assert_eq!(kinds[1], EventKind::SCrtmVersion("GCE Virtual Firmware v1".into()));
    let EventKind::EfiVariable(var) = &kinds[3] else { panic!("{:?}", kinds[3]) };
    assert_eq!((var.name().as_str(), var.data), ("SecureBoot", &[1u8][..]));
    assert!(kinds.contains(&EventKind::EfiAction("Calling EFI Application from Boot Option".into())));
    assert!(kinds.iter().any(|k| matches!(k, EventKind::Ipl(t) if t == "grub_cmd set pager=1")));
    assert_eq!(log.events().iter().filter(|e| e.event_type() == EventType::SEPARATOR).count(), 8);

    // shim's EV_EFI_VARIABLE_AUTHORITY with a wrong name length stays raw, not an error.
    let bytes = testdata("tpm/eventlogs/go-attestation/sb_cert_eventlog");
    let log = EventLog::parse(&bytes).unwrap();
    assert!(log.events().iter().any(
        |e| e.event_type() == EventType::EFI_VARIABLE_AUTHORITY && matches!(e.kind(), EventKind::Raw(_))
    ));

    // The SM3 bank of the H-CRTM log is declared and replayed.
    let bytes = testdata("tpm/eventlogs/tpm2-tss/binary_measurements_hcrtm.bin");
    let log = EventLog::parse(&bytes).unwrap();
    assert!(log.replay().bank(HashAlg::Sm3_256).count() > 0);
    assert!(log.events().iter().any(|e| e.event_type() == EventType::EFI_HCRTM_EVENT));

    // Windows logs EV_NO_ACTION events to PCR 0xFFFFFFFF.
    let bytes = testdata("tpm/eventlogs/go-attestation/option_rom_eventlog");
    let log = EventLog::parse(&bytes).unwrap();
    assert!(log.events().iter().any(|e| e.pcr() == u32::MAX && !e.is_extended()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        exercise(&bytes);
    }

    #[test]
    fn truncated_real_logs_never_panic(cut in 0usize..34_034) {
        let bytes = testdata(RHEL8);
        exercise(&bytes[..cut.min(bytes.len())]);
    }

    #[test]
    fn corrupted_real_logs_never_panic(edits in proptest::collection::vec((0usize..15_579, any::<u8>()), 1..8)) {
        let mut bytes = testdata("tpm/eventlogs/go-tpm-tools/arch-linux-workstation.bin");
        for (at, value) in edits {
            if let Some(byte) = bytes.get_mut(at) {
                *byte = value;
            }
        }
        exercise(&bytes);
    }

    #[test]
    fn crypto_agile_header_with_random_tail_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let mut bytes = testdata("tpm/eventlogs/tpm2-tools/event.bin")[..0x50].to_vec();
        bytes.extend_from_slice(&tail);
        exercise(&bytes);
    }
}

/// What a measurement proves comes from its digest: every reference log classifies, and the
/// Secure Boot state its verified PCR 7 variables prove agrees with the summary's.
#[test]
fn measured_boot_agrees_with_the_summary_on_every_reference_log() {
    use mooring_attestation::tpm::eventlog::{MeasuredBoot, Proof, SecureBootState, WellKnown};
    let mut classified = 0;
    for (path, _) in expected() {
        let bytes = testdata(&path);
        let Ok(log) = EventLog::parse(&bytes) else { continue };
        let values = log.replay();
        for bank in log.banks() {
            let indices: Vec<u8> = values.bank(*bank).map(|(i, _)| i).filter(|i| *i < 17).collect();
            if indices.is_empty() {
                continue;
            }
            let boot = MeasuredBoot::from_reference(&bytes, &values, *bank, &indices).unwrap();
            let summary = log.check_against(&values, *bank, &indices).unwrap().summary();
            let expected = match summary.secure_boot() {
                Some(true) => SecureBootState::On,
                Some(false) => SecureBootState::Off,
                None if indices.contains(&7) => boot.secure_boot(),
                None => SecureBootState::NotMeasured,
            };
            assert_eq!(boot.secure_boot(), expected, "{path} {bank}");
            for m in boot.measurements() {
                assert!(boot.covers(m.pcr()));
                if m.proof() == &Proof::WellKnown(WellKnown::Separator) {
                    assert_eq!(m.digest(), bank.digest(&[&[0, 0, 0, 0]]), "{path}");
                }
            }
            classified += boot.measurements().len();
        }
    }
    assert!(classified > 1000, "{classified}");
}

#[test]
fn a_digest_proves_text_only_when_the_text_hashes_to_it() {
    use mooring_attestation::tpm::eventlog::{MeasuredBoot, Proof};
    use mooring_attestation::tpm::sim::eventlog::EditableLog;
    let mut log =
        EditableLog::parse(&testdata("tpm/eventlogs/keylime/binary_bios_measurements-secureboot")).unwrap();
    let grub =
        log.in_pcr(8).into_iter().find(|i| log.events[*i].data.starts_with(b"kernel_cmdline: ")).unwrap();
    let proof = |log: &EditableLog| {
        let bytes = log.to_bytes();
        let boot = MeasuredBoot::from_reference(&bytes, &log.replay(), HashAlg::Sha256, &[8]).unwrap();
        let proof = boot.in_pcr(8).find(|m| m.number() == grub + 1).unwrap().proof().clone();
        proof
    };
    let Proof::Text { prefix, text } = proof(&log) else { panic!("grub command line is text") };
    assert_eq!(prefix, "kernel_cmdline: ");
    assert!(text.starts_with("(hd0,gpt2)/vmlinuz-5.14"), "{text}");
    // Retyped: the proof does not change.
    log.events[grub].event_type = EventType::EVENT_TAG;
    assert!(matches!(proof(&log), Proof::Text { .. }));
    // Data rewritten, digest kept: it proves nothing.
    log.events[grub].data = b"kernel_cmdline: ro quiet".to_vec();
    assert_eq!(proof(&log), Proof::Opaque);
}
