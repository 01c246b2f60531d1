//! `mooring-broker policy dry-run` and `policy learn-azure` on public evidence: the Azure
//! confidential VM vectors (real Azure HCL reports and vTPM quotes) and a GCE vTPM quote
//! with its event log, judged by the broker's own appraisal and policy code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use mooring_testdata::testdata_dir;
use serde_json::{json, Value};

fn broker(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_mooring-broker")).args(args).output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn azure_vector(name: &str) -> PathBuf {
    testdata_dir().join(format!("snp/azure-cvm-vtpm/evidence-{name}.json"))
}

/// A class learned from `evidence`, with a network filled in.
fn learn_azure(class: &str, evidence: &Path) -> String {
    let (code, out, err) =
        broker(&["policy", "learn-azure", "--class", class, "--evidence", evidence.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}{err}");
    out.replace("networks = []", "networks = [\"10.0.0.0/8\"]")
}

/// The decisions of a dry run, one per evidence file, and its exit status.
fn dry_run(dir: &Path, policy: &str, evidence: &[&Path]) -> (Option<i32>, Vec<Value>) {
    let path = dir.join("policy.toml");
    std::fs::write(&path, format!("version = 1\n{policy}")).unwrap();
    let mut args = vec!["policy".to_owned(), "dry-run".into(), "--policy".into(), path.display().to_string()];
    for file in evidence {
        args.extend(["--evidence".to_owned(), file.display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = broker(&args);
    let results: Vec<Value> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["result"].clone())
        .collect();
    assert_eq!(results.len(), evidence.len(), "{out}{err}");
    (code, results)
}

fn refused_with(result: &Value, code: &str) {
    assert_eq!(result["decision"], "refused", "{result}");
    assert_eq!(result["code"], code, "{result}");
}

fn write_json(dir: &Path, name: &str, value: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, value.to_string()).unwrap();
    path
}

/// Evidence v2 with its HCL report changed by `edit` (base64url text, as trustee writes it).
fn with_hcl_report(dir: &Path, name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut vector: Value = serde_json::from_slice(&std::fs::read(azure_vector("v2")).unwrap()).unwrap();
    let mut report = engine.decode(vector["hcl_report"].as_str().unwrap().trim_end_matches('=')).unwrap();
    edit(&mut report);
    vector["hcl_report"] = Value::String(engine.encode(&report));
    write_json(dir, name, &vector)
}

#[test]
fn azure_vectors_are_admitted_by_a_policy_learned_from_them() {
    let dir = tempfile::tempdir().unwrap();
    let (v2, genoa) = (azure_vector("v2"), azure_vector("genoa"));
    let policy = format!("{}\n{}", learn_azure("milan", &v2), learn_azure("genoa", &genoa));
    let (code, results) = dry_run(dir.path(), &policy, &[&v2, &genoa]);
    assert_eq!(code, Some(0), "{results:?}");
    assert_eq!(results[0]["decision"], "admitted");
    assert_eq!(results[0]["class"], "milan");
    assert_eq!(results[1]["class"], "genoa");
    // The vTPM EK the runtime claims name is the identity: SHA-256 of its SPKI.
    assert_eq!(results[0]["hardware_id"].as_str().unwrap().len(), 64);
    assert_ne!(results[0]["hardware_id"], results[1]["hardware_id"]);

    // v0 and v1 come from another VM image: the learned classes refuse its measurement.
    let (code, results) = dry_run(dir.path(), &policy, &[&azure_vector("v0"), &azure_vector("v1")]);
    assert_eq!(code, Some(1));
    refused_with(&results[0], "snp_measurement");
    refused_with(&results[1], "snp_measurement");
}

#[test]
fn a_changed_measurement_tcb_or_pcr_in_the_policy_refuses_the_vector() {
    let dir = tempfile::tempdir().unwrap();
    let v2 = azure_vector("v2");
    let learned = learn_azure("milan", &v2);
    let line = |prefix: &str| learned.lines().find(|l| l.starts_with(prefix)).unwrap().to_owned();

    let measurement = line("measurements = ");
    let other = measurement.replacen("[\"5b", "[\"6b", 1);
    assert_ne!(measurement, other);
    let (code, results) = dry_run(dir.path(), &learned.replace(&measurement, &other), &[&v2]);
    assert_eq!(code, Some(1));
    refused_with(&results[0], "snp_measurement");

    // The same VM image from a vTPM the class does not name: refused for its identity,
    // named in full (what to add to hardware_ids).
    let ids = line("hardware_ids = ");
    let (code, results) = dry_run(
        dir.path(),
        &learned.replace(&ids, &format!("hardware_ids = [\"{}\"]", "ab".repeat(32))),
        &[&v2],
    );
    assert_eq!(code, Some(1));
    refused_with(&results[0], "no_matching_class");
    let admitted = dry_run(dir.path(), &learned, &[&v2]).1;
    let id = admitted[0]["hardware_id"].as_str().unwrap();
    assert!(results[0]["reason"].as_str().unwrap().contains(id), "{}", results[0]);

    let tcb = line("min_tcb = ");
    let (_, results) =
        dry_run(dir.path(), &learned.replace(&tcb, &tcb.replace("snp = 24", "snp = 25")), &[&v2]);
    refused_with(&results[0], "snp_tcb_too_low");
    assert!(results[0]["reason"].as_str().unwrap().contains("snp is 24"), "{}", results[0]);

    let pcr7 = line("7 = ");
    let (_, results) =
        dry_run(dir.path(), &learned.replace(&pcr7, &format!("7 = [\"{}\"]", "00".repeat(32))), &[&v2]);
    refused_with(&results[0], "pcr_value_not_allowed");
    assert!(results[0]["reason"].as_str().unwrap().contains("sha256:7"), "{}", results[0]);

    // A PCR the class appraises but the quote does not cover.
    let (_, results) = dry_run(
        dir.path(),
        &learned.replace("pcrs = [0, 1, 2, 3, 4, 5, 6, 7]", "pcrs = [0, 1, 2, 3, 4, 5, 6, 7, 8]"),
        &[&v2],
    );
    assert_eq!(results[0]["decision"], "admitted", "PCR 8 is quoted (all 24 are): {}", results[0]);
}

#[test]
fn changed_evidence_is_refused_with_the_link_that_broke() {
    let dir = tempfile::tempdir().unwrap();
    let v2 = azure_vector("v2");
    let policy = learn_azure("milan", &v2);
    let claims_at = 0x20 + 1184 + 20;

    // The runtime claims changed: REPORT_DATA no longer commits to them.
    let claims = with_hcl_report(dir.path(), "claims.json", |r| {
        let text = String::from_utf8_lossy(&r[claims_at..]).into_owned();
        let at = claims_at
            + text.find("\"secure-boot\": true").or_else(|| text.find("\"secure-boot\":true")).unwrap();
        let t = r[at..].iter().position(|&b| b == b't').unwrap() + at;
        r[t..t + 4].copy_from_slice(b"TRUE");
    });
    // The AK in the claims swapped for another key (one byte of its modulus).
    let ak = with_hcl_report(dir.path(), "ak.json", |r| {
        let text = String::from_utf8_lossy(&r[claims_at..]).into_owned();
        let n = claims_at + text.find("\"kid\":\"HCLAkPub\"").or_else(|| text.find("HCLAkPub")).unwrap();
        let n = n + String::from_utf8_lossy(&r[n..]).find("\"n\"").unwrap() + 10;
        r[n] = if r[n] == b'A' { b'B' } else { b'A' };
    });
    // The SNP report's signature broken.
    let signature = with_hcl_report(dir.path(), "signature.json", |r| r[0x20 + 0x2A0] ^= 1);
    // A quoted PCR changed: the quote's digest no longer matches.
    let mut vector: Value = serde_json::from_slice(&std::fs::read(&v2).unwrap()).unwrap();
    let pcr = vector["tpm_quote"]["pcrs"][7].as_str().unwrap().replacen(|_| true, "0", 1);
    vector["tpm_quote"]["pcrs"][7] = Value::String(pcr);
    let pcr = write_json(dir.path(), "pcr.json", &vector);
    // Genoa's HCL report with v2's quote: the claims name another AK than the one that signed.
    let mut swapped: Value = serde_json::from_slice(&std::fs::read(&v2).unwrap()).unwrap();
    let genoa: Value = serde_json::from_slice(&std::fs::read(azure_vector("genoa")).unwrap()).unwrap();
    swapped["hcl_report"] = genoa["report"].clone();
    swapped["vcek"] = genoa["vcek"].clone();
    let swapped = write_json(dir.path(), "swapped.json", &swapped);

    let (code, results) = dry_run(dir.path(), &policy, &[&claims, &ak, &signature, &pcr, &swapped]);
    assert_eq!(code, Some(1));
    refused_with(&results[0], "runtime_claims_mismatch");
    refused_with(&results[1], "runtime_claims_mismatch");
    refused_with(&results[2], "snp_report_invalid");
    refused_with(&results[3], "quote_invalid");
    assert!(results[3]["reason"].as_str().unwrap().contains("pcrDigest"), "{}", results[3]);
    refused_with(&results[4], "quote_invalid");
}

#[test]
fn unreadable_evidence_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let junk = write_json(dir.path(), "junk.json", &json!({ "hello": 1 }));
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, "version = 1\n").unwrap();
    let (code, out, err) = broker(&[
        "policy",
        "dry-run",
        "--policy",
        path.to_str().unwrap(),
        "--evidence",
        junk.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("junk.json"), "{err}");
}

/// GCE COS 85's vTPM quote of `bank` (all 24 PCRs, nonce 9009) and its event log, as a
/// quote vector.
fn gce_quote_vector(dir: &Path, bank: &str) -> PathBuf {
    let gce = testdata_dir().join("tpm/quotes/gce-cos85-vtpm/nonce9009");
    let read = |name: &str| std::fs::read(gce.join(name)).unwrap();
    let b64 = |bytes: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(bytes);
    let pcrs: Value = serde_json::from_slice(&read("pcrs.json")).unwrap();
    let vector = json!({
        "kind": "tpm_quote",
        "ak_public": b64(read("ak_pub.tpmt_public.bin")),
        "quote": b64(read(&format!("quote_{bank}.attest.bin"))),
        "quote_signature": b64(read(&format!("quote_{bank}.sig.tpmt_signature.bin"))),
        "pcrs": { bank: pcrs[bank] },
        "event_log": b64(read("binary_bios_measurements")),
    });
    write_json(dir, &format!("gce-{bank}.json"), &vector)
}

#[test]
fn a_gce_quote_and_its_event_log_are_appraised() {
    let dir = tempfile::tempdir().unwrap();
    let vector = gce_quote_vector(dir.path(), "sha256");
    let gce = testdata_dir().join("tpm/quotes/gce-cos85-vtpm/nonce9009");
    let pcrs = dir.path().join("pcrs.json");
    let all: Value = serde_json::from_slice(&std::fs::read(gce.join("pcrs.json")).unwrap()).unwrap();
    std::fs::write(&pcrs, json!({ "sha256": all["sha256"] }).to_string()).unwrap();
    let (code, learned, err) = broker(&[
        "policy",
        "learn-tpm",
        "--class",
        "gce",
        "--pcrs",
        pcrs.to_str().unwrap(),
        "--event-log",
        gce.join("binary_bios_measurements").to_str().unwrap(),
        "--network",
        "10.0.0.0/8",
    ]);
    assert_eq!(code, Some(0), "{learned}{err}");

    let (code, results) = dry_run(dir.path(), &learned, &[&vector]);
    assert_eq!(code, Some(0), "{results:?}");
    assert_eq!(results[0]["class"], "gce");
    assert!(results[0]["not_checked"].as_str().unwrap().contains("which TPM"), "{}", results[0]);
    // A secret file only the broker can read (here: none at all) does not stop a dry run.
    let with_secret = format!("{learned}\n[[class.secrets]]\nname = \"k\"\nfile = \"not-here.key\"\n");
    let (code, results) = dry_run(dir.path(), &with_secret, &[&vector]);
    assert_eq!(code, Some(0), "{results:?}");
    assert_eq!(results[0]["class"], "gce");

    // PCR 7 (Secure Boot state) pinned to another value.
    let pcr7 = learned.lines().find(|l| l.starts_with("7 = ")).unwrap();
    let (code, results) =
        dry_run(dir.path(), &learned.replace(pcr7, &format!("7 = [\"{}\"]", "11".repeat(32))), &[&vector]);
    assert_eq!(code, Some(1));
    refused_with(&results[0], "pcr_value_not_allowed");

    // The event log changed: one event's SHA-256 digest, so it no longer replays to the
    // quoted PCRs.
    let mut changed: Value = serde_json::from_slice(&std::fs::read(&vector).unwrap()).unwrap();
    let mut log =
        base64::engine::general_purpose::STANDARD.decode(changed["event_log"].as_str().unwrap()).unwrap();
    // The first SHA-256 digest of the second event (the first after the Spec ID event).
    let u32_at = |at: usize| u32::from_le_bytes(log[at..at + 4].try_into().unwrap()) as usize;
    let second = 32 + u32_at(28);
    let mut at = second + 12;
    loop {
        let alg = u16::from_le_bytes([log[at], log[at + 1]]);
        if alg == 0x000B {
            break;
        }
        at += 2 + match alg {
            0x0004 => 20,
            0x000C => 48,
            other => panic!("digest algorithm {other:#x}"),
        };
    }
    log[at + 2] ^= 1;
    changed["event_log"] = Value::String(base64::engine::general_purpose::STANDARD.encode(&log));
    let changed = write_json(dir.path(), "gce-log.json", &changed);
    let (_, results) = dry_run(dir.path(), &learned, &[&changed]);
    refused_with(&results[0], "event_log_mismatch");
}

/// The same VM's quotes of its SHA-1 and SHA-384 banks, each judged by a class learned for
/// its bank from the same log, and each refused by the other bank's class.
#[test]
fn the_gce_quotes_of_every_bank_are_appraised_with_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let gce = testdata_dir().join("tpm/quotes/gce-cos85-vtpm/nonce9009");
    let pcrs = gce.join("pcrs.json");
    let learn = |bank: &str| {
        let (code, learned, err) = broker(&[
            "policy",
            "learn-tpm",
            "--class",
            &format!("gce-{bank}"),
            "--bank",
            bank,
            "--pcrs",
            pcrs.to_str().unwrap(),
            "--event-log",
            gce.join("binary_bios_measurements").to_str().unwrap(),
            "--network",
            "10.0.0.0/8",
        ]);
        assert_eq!(code, Some(0), "{learned}{err}");
        learned
    };
    for (bank, other) in [("sha1", "sha384"), ("sha384", "sha1")] {
        let vector = gce_quote_vector(dir.path(), bank);
        let (code, results) = dry_run(dir.path(), &learn(bank), &[&vector]);
        assert_eq!(code, Some(0), "{bank}: {results:?}");
        assert_eq!(results[0]["class"], format!("gce-{bank}"));
        let (_, results) = dry_run(dir.path(), &learn(other), &[&vector]);
        refused_with(&results[0], "pcr_selection_mismatch");
    }
}
