//! Synthetic logs for the edge cases real logs do not exercise. Real logs are tested in
//! `attestation/tests/eventlog.rs`.

use super::*;
use crate::tpm::alg::id;
use crate::tpm::pcr::PcrValues;

const SHA256: (u16, u16) = (id::SHA256, 32);

/// The `Spec ID Event03` header event (a `TCG_PCR_EVENT`).
fn spec_id(algs: &[(u16, u16)]) -> Vec<u8> {
    let mut data = b"Spec ID Event03\0".to_vec();
    data.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 2]);
    data.extend_from_slice(&u32::try_from(algs.len()).unwrap().to_le_bytes());
    for (alg, size) in algs {
        data.extend_from_slice(&alg.to_le_bytes());
        data.extend_from_slice(&size.to_le_bytes());
    }
    data.push(0);
    legacy(0, EventType::NO_ACTION, [0; 20], &data)
}

fn legacy(pcr: u32, event_type: EventType, digest: [u8; 20], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&pcr.to_le_bytes());
    out.extend_from_slice(&event_type.0.to_le_bytes());
    out.extend_from_slice(&digest);
    out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_le_bytes());
    out.extend_from_slice(data);
    out
}

fn event2(pcr: u32, event_type: EventType, digests: &[(u16, Vec<u8>)], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&pcr.to_le_bytes());
    out.extend_from_slice(&event_type.0.to_le_bytes());
    out.extend_from_slice(&u32::try_from(digests.len()).unwrap().to_le_bytes());
    for (alg, digest) in digests {
        out.extend_from_slice(&alg.to_le_bytes());
        out.extend_from_slice(digest);
    }
    out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_le_bytes());
    out.extend_from_slice(data);
    out
}

/// A sha256 event whose digest is the hash of its data.
fn measured(pcr: u32, event_type: EventType, data: &[u8]) -> Vec<u8> {
    event2(pcr, event_type, &[(id::SHA256, HashAlg::Sha256.digest(&[data]))], data)
}

fn locality_event(pcr: u32, locality: u8) -> Vec<u8> {
    let mut data = b"StartupLocality\0".to_vec();
    data.push(locality);
    event2(pcr, EventType::NO_ACTION, &[(id::SHA256, vec![0; 32])], &data)
}

fn log(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

fn framing_field(err: EventLogError) -> (usize, &'static str) {
    match err {
        EventLogError::Framing { number, source, .. } => match source {
            CodecError::Truncated { field, .. }
            | CodecError::TooLarge { field, .. }
            | CodecError::BadValue { field, .. }
            | CodecError::TrailingBytes { field, .. } => (number, field),
        },
        other => panic!("expected a framing error, got {other:?}"),
    }
}

#[test]
fn crypto_agile_replay_with_startup_locality() {
    let bytes = log(&[
        spec_id(&[SHA256, (id::SM3_256, 32)]),
        locality_event(0, 3),
        event2(0, EventType::POST_CODE, &[(id::SHA256, vec![1; 32]), (id::SM3_256, vec![2; 32])], b"x"),
        measured(7, EventType::SEPARATOR, &[0; 4]),
    ]);
    let parsed = EventLog::parse(&bytes).unwrap();
    assert_eq!(parsed.format(), LogFormat::CryptoAgile);
    assert_eq!(parsed.banks(), [HashAlg::Sha256, HashAlg::Sm3_256]);
    assert_eq!(parsed.startup_locality(), Some(3));
    assert_eq!(parsed.events().len(), 4);
    assert_eq!(parsed.events()[1].kind(), EventKind::StartupLocality(3));
    let replay = parsed.replay();
    let mut pcr0 = [0u8; 32];
    pcr0[31] = 3;
    assert_eq!(replay.get(HashAlg::Sha256, 0), Some(HashAlg::Sha256.extend(&pcr0, &[1; 32]).as_slice()));
    assert_eq!(replay.get(HashAlg::Sm3_256, 0), Some(HashAlg::Sm3_256.extend(&pcr0, &[2; 32]).as_slice()));
    assert!(replay.get(HashAlg::Sm3_256, 7).is_none(), "the separator carries no SM3 digest");
    assert_eq!(replay.bank(HashAlg::Sha256).count(), 2);
}

#[test]
fn startup_locality_alone_leaves_pcr0_out_of_replay_but_not_out_of_checks() {
    let bytes = log(&[spec_id(&[SHA256]), locality_event(0, 3)]);
    let parsed = EventLog::parse(&bytes).unwrap();
    assert_eq!(parsed.replay(), PcrValues::new());
    let mut quoted = PcrValues::new();
    let mut pcr0 = vec![0u8; 32];
    pcr0[31] = 3;
    quoted.insert(HashAlg::Sha256, 0, pcr0).unwrap();
    quoted.insert(HashAlg::Sha256, 1, vec![0; 32]).unwrap();
    let matched = parsed.check_against(&quoted, HashAlg::Sha256, &[1, 0]).unwrap();
    assert_eq!(matched.pcrs(), [0, 1]);
    quoted.insert(HashAlg::Sha256, 0, vec![0; 32]).unwrap();
    assert!(matches!(
        parsed.check_against(&quoted, HashAlg::Sha256, &[0]),
        Err(EventLogError::PcrMismatch { index: 0, .. })
    ));
}

#[test]
fn unknown_declared_algorithm_is_skipped_but_undeclared_one_is_an_error() {
    const SHA3_256: u16 = 0x0027;
    let bytes = log(&[
        spec_id(&[(SHA3_256, 32), SHA256]),
        event2(4, EventType::EFI_ACTION, &[(SHA3_256, vec![9; 32]), (id::SHA256, vec![1; 32])], b"a"),
    ]);
    let parsed = EventLog::parse(&bytes).unwrap();
    assert_eq!(parsed.banks(), [HashAlg::Sha256]);
    assert_eq!(parsed.unsupported_algorithms(), [SHA3_256]);
    assert_eq!(parsed.replay().banks().collect::<Vec<_>>(), [HashAlg::Sha256]);

    let bytes =
        log(&[spec_id(&[SHA256]), event2(4, EventType::EFI_ACTION, &[(id::SHA384, vec![1; 48])], b"a")]);
    assert_eq!(
        EventLog::parse(&bytes).unwrap_err(),
        EventLogError::UndeclaredAlgorithm { number: 1, alg: id::SHA384 }
    );
}

#[test]
fn framing_errors_name_event_and_field() {
    let good = log(&[spec_id(&[SHA256]), measured(4, EventType::EFI_ACTION, b"abc")]);
    let header_len = spec_id(&[SHA256]).len();
    for cut in (1..good.len()).filter(|cut| *cut != header_len) {
        assert!(EventLog::parse(&good[..cut]).is_err(), "truncation to {cut} bytes parsed");
    }
    assert_eq!(
        framing_field(EventLog::parse(&good[..good.len() - 1]).unwrap_err()),
        (1, "TCG_PCR_EVENT2.eventSize")
    );
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[0xff; 3]);
    assert_eq!(framing_field(EventLog::parse(&trailing).unwrap_err()), (2, "TCG_PCR_EVENT2.pcrIndex"));
    let mut zeros = good.clone();
    zeros.extend_from_slice(&[0; 64]);
    assert_eq!(framing_field(EventLog::parse(&zeros).unwrap_err()), (2, "TPML_DIGEST_VALUES.count"));

    let mut oversized =
        log(&[spec_id(&[SHA256]), event2(4, EventType::EFI_ACTION, &[(id::SHA256, vec![0; 32])], b"")]);
    let size_at = oversized.len() - 4;
    let too_big = u32::try_from(MAX_EVENT_DATA_SIZE + 1).unwrap().to_le_bytes();
    oversized.splice(size_at.., too_big);
    let err = EventLog::parse(&oversized).unwrap_err();
    assert!(matches!(
        &err,
        EventLogError::Framing {
            number: 1,
            source: CodecError::TooLarge { field: "TCG_PCR_EVENT2.eventSize", .. },
            ..
        }
    ));
    assert!(err.to_string().contains("exceeds the maximum 1048576"), "{err}");
}

#[test]
fn spec_id_header_is_checked() {
    assert_eq!(
        framing_field(EventLog::parse(&spec_id(&[])).unwrap_err()),
        (0, "TCG_EfiSpecIdEvent.numberOfAlgorithms")
    );
    assert_eq!(
        EventLog::parse(&spec_id(&[(id::SHA256, 20)])).unwrap_err(),
        EventLogError::WrongDigestSize { bank: HashAlg::Sha256, size: 20, expected: 32 }
    );
    assert_eq!(
        EventLog::parse(&spec_id(&[SHA256, SHA256])).unwrap_err(),
        EventLogError::DuplicateAlgorithm { alg: id::SHA256 }
    );
    let many: Vec<(u16, u16)> = (0x100..0x111).map(|alg| (alg, 32)).collect();
    assert_eq!(
        framing_field(EventLog::parse(&spec_id(&many)).unwrap_err()),
        (0, "TCG_EfiSpecIdEvent.numberOfAlgorithms")
    );
    assert_eq!(
        framing_field(EventLog::parse(&spec_id(&[(0x100, 65)])).unwrap_err()),
        (0, "TCG_EfiSpecIdEventAlgorithmSize.digestSize")
    );
    let mut nonzero_digest = spec_id(&[SHA256]);
    nonzero_digest[8] = 1;
    assert!(EventLog::parse(&nonzero_digest).is_err());
    assert!(EventLog::parse(&[]).is_err());
}

#[test]
fn digests_and_pcrs_are_checked() {
    let dup = log(&[
        spec_id(&[SHA256]),
        event2(1, EventType::EFI_ACTION, &[(id::SHA256, vec![0; 32]), (id::SHA256, vec![0; 32])], b""),
    ]);
    // Two digests for a one-bank header is caught by the count bound first.
    assert_eq!(framing_field(EventLog::parse(&dup).unwrap_err()), (1, "TPML_DIGEST_VALUES.count"));
    let dup = log(&[
        spec_id(&[SHA256, (id::SHA1, 20)]),
        event2(1, EventType::EFI_ACTION, &[(id::SHA256, vec![0; 32]), (id::SHA256, vec![0; 32])], b""),
    ]);
    assert_eq!(
        EventLog::parse(&dup).unwrap_err(),
        EventLogError::DuplicateDigest { number: 1, alg: id::SHA256 }
    );
    let out_of_range = log(&[spec_id(&[SHA256]), measured(32, EventType::EFI_ACTION, b"a")]);
    assert_eq!(
        EventLog::parse(&out_of_range).unwrap_err(),
        EventLogError::PcrOutOfRange { number: 1, pcr: 32 }
    );
    let no_action_anywhere = log(&[spec_id(&[SHA256]), event2(u32::MAX, EventType::NO_ACTION, &[], b"WBCL")]);
    assert!(EventLog::parse(&no_action_anywhere).is_err(), "empty digest list");
    let no_action_anywhere = log(&[
        spec_id(&[SHA256]),
        event2(u32::MAX, EventType::NO_ACTION, &[(id::SHA256, vec![0; 32])], b"WBCL"),
    ]);
    assert!(EventLog::parse(&no_action_anywhere).is_ok());
}

#[test]
fn startup_locality_must_be_unique_early_and_in_pcr0() {
    let problem = |parts: &[Vec<u8>]| match EventLog::parse(&log(parts)) {
        Err(EventLogError::StartupLocality { problem, .. }) => problem,
        other => panic!("{other:?}"),
    };
    let header = spec_id(&[SHA256]);
    assert_eq!(problem(&[header.clone(), locality_event(0, 3), locality_event(0, 3)]), "appears twice");
    assert_eq!(
        problem(&[header.clone(), measured(0, EventType::POST_CODE, b"p"), locality_event(0, 3)]),
        "comes after PCR 0 was extended"
    );
    assert_eq!(problem(&[header.clone(), locality_event(1, 3)]), "is not logged to PCR 0");
    assert_eq!(problem(&[header, locality_event(0, 5)]), "names a locality above 4");
}

#[test]
fn legacy_format_is_sha1_only() {
    let bytes = log(&[
        legacy(0, EventType::POST_CODE, [1; 20], b"ACPI DATA"),
        legacy(7, EventType::SEPARATOR, [2; 20], &[0; 4]),
    ]);
    let parsed = EventLog::parse(&bytes).unwrap();
    assert_eq!(parsed.format(), LogFormat::LegacySha1);
    assert_eq!(parsed.banks(), [HashAlg::Sha1]);
    assert_eq!(parsed.events()[0].kind(), EventKind::PostCode("ACPI DATA".into()));
    assert_eq!(parsed.replay().bank(HashAlg::Sha1).count(), 2);
}

#[test]
fn check_against_refuses_what_it_cannot_vouch_for() {
    let bytes = log(&[spec_id(&[SHA256]), measured(4, EventType::EFI_ACTION, b"a")]);
    let parsed = EventLog::parse(&bytes).unwrap();
    let quoted = parsed.replay();
    assert_eq!(
        parsed.check_against(&quoted, HashAlg::Sha256, &[]).unwrap_err(),
        EventLogError::NothingToCheck
    );
    let err = parsed.check_against(&quoted, HashAlg::Sha1, &[4]).unwrap_err();
    assert_eq!(err.to_string(), "event log has no sha1 bank (it declares sha256)");
    assert!(matches!(
        parsed.check_against(&quoted, HashAlg::Sha256, &[4, 17]),
        Err(EventLogError::UncheckablePcr { index: 17, .. })
    ));
    assert_eq!(
        parsed.check_against(&quoted, HashAlg::Sha256, &[4, 5]).unwrap_err(),
        EventLogError::QuotedPcrMissing { bank: HashAlg::Sha256, index: 5 }
    );
    let mut wrong = quoted.clone();
    wrong.insert(HashAlg::Sha256, 4, vec![0xcd; 32]).unwrap();
    let err = parsed.check_against(&wrong, HashAlg::Sha256, &[4]).unwrap_err();
    let replayed = hex::encode(quoted.get(HashAlg::Sha256, 4).unwrap());
    assert_eq!(
        err.to_string(),
        format!("event log replays PCR 4 (sha256) to {replayed}, the quote says {}", "cd".repeat(32))
    );
}

#[test]
fn summary_only_reports_content_bound_to_its_digest() {
    let var = |name: &str, data: &[u8]| {
        let mut out = Guid::EFI_GLOBAL_VARIABLE.0.to_vec();
        out.extend_from_slice(&u64::try_from(name.len()).unwrap().to_le_bytes());
        out.extend_from_slice(&u64::try_from(data.len()).unwrap().to_le_bytes());
        out.extend(name.encode_utf16().flat_map(u16::to_le_bytes));
        out.extend_from_slice(data);
        out
    };
    let secure_boot_on = var("SecureBoot", &[1]);
    let cmdline = b"kernel_cmdline: /vmlinuz ro quiet\0";
    let honest = log(&[
        spec_id(&[SHA256]),
        measured(7, EventType::EFI_VARIABLE_DRIVER_CONFIG, &secure_boot_on),
        measured(7, EventType::SEPARATOR, &[0; 4]),
        event2(8, EventType::IPL, &[(id::SHA256, HashAlg::Sha256.digest(&[b"/vmlinuz ro quiet"]))], cmdline),
        measured(8, EventType::IPL, cmdline),
        measured(0, EventType::SEPARATOR, &[1, 0, 0, 0]),
    ]);
    let parsed = EventLog::parse(&honest).unwrap();
    let summary = parsed.summary(HashAlg::Sha256);
    assert_eq!(summary.secure_boot(), Some(true));
    assert_eq!(summary.separator_pcrs(), [7]);
    assert_eq!(summary.error_separator_pcrs(), [0]);
    assert_eq!(summary.kernel_cmdlines().len(), 1);
    assert_eq!(summary.kernel_cmdlines()[0].cmdline(), "/vmlinuz ro quiet");
    assert_eq!(summary.unverified_events(), [4], "grub does not hash its prefix");

    // The quote only covers PCR 7: the command line in PCR 8 is not backed.
    let quoted = parsed.replay();
    let matched = parsed.check_against(&quoted, HashAlg::Sha256, &[7]).unwrap();
    assert!(matched.summary().kernel_cmdlines().is_empty());
    assert_eq!(matched.summary().secure_boot(), Some(true));

    // A log that claims SecureBoot=1 over the digest of SecureBoot=0.
    let secure_boot_off = var("SecureBoot", &[0]);
    let lying = log(&[
        spec_id(&[SHA256]),
        event2(
            7,
            EventType::EFI_VARIABLE_DRIVER_CONFIG,
            &[(id::SHA256, HashAlg::Sha256.digest(&[&secure_boot_off]))],
            &secure_boot_on,
        ),
    ]);
    let summary = EventLog::parse(&lying).unwrap().summary(HashAlg::Sha256);
    assert_eq!(summary.secure_boot(), None);
    assert_eq!(summary.unverified_events(), [1]);
}
