//! `mooring-broker verify snp-report` and `verify azure-cvm` on the real vectors: verified
//! evidence prints its claims as JSON (exit 0); refused evidence exits 1 with one line on
//! stderr naming the reason; usage and I/O errors exit 2.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mooring_attestation::snp::cert_table::{CertTable, CertTableKind};
use mooring_attestation::x509::CertBundle;
use mooring_testdata::testdata_dir;

/// Inside every real VCEK's validity.
const AT_2026: &str = "2026-01-01T00:00:00Z";
/// Inside the Milan VLEK's validity (it expired 2025-12-10).
const AT_VLEK: &str = "2025-06-15T00:00:00+00:00";

fn broker(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mooring-broker")).args(args).output().unwrap()
}

fn vector(relative: &str) -> PathBuf {
    testdata_dir().join(relative)
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn snp(report: &Path, cert_flag: &str, cert: &Path, at: &str) -> Output {
    broker(&["verify", "snp-report", "--report", s(report), cert_flag, s(cert), "--at", at])
}

fn claims(out: &Output) -> serde_json::Value {
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Exit 1 with exactly one line on stderr containing `reason`.
fn assert_rejected(out: &Output, reason: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("rejected: "), "{stderr}");
    assert!(stderr.contains(reason), "expected {reason:?} in: {stderr}");
    assert!(out.stdout.is_empty());
}

fn assert_usage(out: &Output, reason: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains(reason), "expected {reason:?} in: {stderr}");
}

#[test]
fn real_reports_verify_and_print_their_claims() {
    for (dir, product, version) in [
        ("snp/milan/virtee-sev", "milan", 2),
        ("snp/genoa/oak-containers", "genoa", 5),
        ("snp/turin/oak-containers", "turin", 5),
    ] {
        let out = snp(
            &vector(&format!("{dir}/report.bin")),
            "--cert",
            &vector(&format!("{dir}/vcek.der")),
            AT_2026,
        );
        let claims = claims(&out);
        assert_eq!(claims["product"], product, "{dir}");
        assert_eq!(claims["version"], version, "{dir}");
        assert_eq!(claims["signing_key"], "VCEK", "{dir}");
        assert_eq!(claims["root"], "amd", "{dir}");
        for field in [
            "measurement",
            "chip_id",
            "report_data",
            "host_data",
            "vmpl",
            "reported_tcb",
            "committed_tcb",
            "launch_tcb",
        ] {
            assert!(!claims[field].is_null(), "{dir}: {field}");
        }
    }
    let claims = claims(&snp(
        &vector("snp/turin/oak-containers/report.bin"),
        "--cert",
        &vector("snp/turin/oak-containers/vcek.der"),
        AT_2026,
    ));
    assert_eq!(
        claims["reported_tcb"],
        serde_json::json!({"raw": "0001000200000047", "fmc": 0, "bootloader": 1, "tee": 0, "snp": 2, "microcode": 71})
    );
    assert_eq!(
        claims["measurement"],
        "f924dd18f168df60fbea937f0b086284d51b1b376de872bac43694f61134d57967c318018de7335503023dbb50dee624"
    );
}

#[test]
fn hex_reports_pem_chains_and_certificate_tables_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    // virtee/sev stores its report as hex text.
    let out = snp(
        &vector("snp/milan/virtee-sev/report.hex"),
        "--cert",
        &vector("snp/milan/virtee-sev/vcek.der"),
        AT_2026,
    );
    assert_eq!(
        claims(&out)["measurement"],
        "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f"
    );
    // The Azure VCEK is PEM.
    let out = snp(
        &vector("snp/azure-cvm-vtpm/genoa/snp_report.bin"),
        "--cert",
        &vector("snp/azure-cvm-vtpm/genoa/vcek.pem"),
        AT_2026,
    );
    assert_eq!(claims(&out)["product"], "genoa");
    // An extended report's certificate table.
    let der = |p: &str| {
        CertBundle::from_bytes(&std::fs::read(vector(p)).unwrap()).unwrap().certificates()[0].der().to_vec()
    };
    let table = CertTable::encode(&[
        (CertTableKind::Ark, &der("snp/amd-ca/milan/ark.pem")),
        (CertTableKind::Ask, &der("snp/amd-ca/milan/ask.pem")),
        (CertTableKind::Vcek, &der("snp/milan/trustee/vcek.der")),
    ]);
    let table_path = dir.path().join("certs.bin");
    std::fs::write(&table_path, &table).unwrap();
    let out = snp(&vector("snp/milan/trustee/report.bin"), "--cert-table", &table_path, AT_2026);
    assert_eq!(claims(&out)["policy"]["raw"], "0x3001f");
    // A table whose ARK is another product's is refused.
    let wrong = CertTable::encode(&[
        (CertTableKind::Ark, &der("snp/amd-ca/genoa/ark.pem")),
        (CertTableKind::Vcek, &der("snp/milan/trustee/vcek.der")),
    ]);
    std::fs::write(&table_path, &wrong).unwrap();
    assert_rejected(
        &snp(&vector("snp/milan/trustee/report.bin"), "--cert-table", &table_path, AT_2026),
        "not a pinned AMD certificate",
    );
}

#[test]
fn the_debug_policy_is_shown() {
    let claims = claims(&snp(
        &vector("snp/milan/go-sev-guest/report.bin"),
        "--cert",
        &vector("snp/milan/go-sev-guest/vcek.der"),
        AT_2026,
    ));
    assert_eq!(claims["policy"]["debug_allowed"], true);
    assert_eq!(claims["policy"]["raw"], "0xb0000");
}

#[test]
fn the_vlek_report_verifies_at_a_time_inside_its_validity_only() {
    let report = vector("snp/milan-vlek/trustee/report.bin");
    let vlek = vector("snp/milan-vlek/trustee/vlek.der");
    let claims = claims(&snp(&report, "--cert", &vlek, AT_VLEK));
    assert_eq!(claims["signing_key"], "VLEK");
    assert_eq!(claims["vmpl"], 1);
    assert_rejected(&snp(&report, "--cert", &vlek, AT_2026), "expired at 2025-12-10T22:14:21Z");
    // Without --at the current time is used, and the VLEK has expired.
    let out = broker(&["verify", "snp-report", "--report", s(&report), "--cert", s(&vlek)]);
    assert_rejected(&out, "expired");
}

#[test]
fn refused_evidence_exits_1_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let report = std::fs::read(vector("snp/genoa/trustee-e2e/report.bin")).unwrap();
    let vcek = vector("snp/genoa/trustee-e2e/vcek.der");
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    // One bit of REPORT_DATA.
    let mut flipped = report.clone();
    flipped[0x50] ^= 1;
    assert_rejected(
        &snp(&write("flipped.bin", &flipped), "--cert", &vcek, AT_2026),
        "signature does not verify",
    );
    // Truncated and reserved-field reports.
    assert_rejected(&snp(&write("short.bin", &report[..1000]), "--cert", &vcek, AT_2026), "1000 bytes");
    let mut reserved = report.clone();
    reserved[0x4C] = 1;
    assert_rejected(&snp(&write("reserved.bin", &reserved), "--cert", &vcek, AT_2026), "reserved field 0x4C");
    // Another chip's VCEK, and the negative certificates.
    assert_rejected(
        &snp(
            &vector("snp/milan/virtee-sev/report.bin"),
            "--cert",
            &vector("snp/milan/trustee/vcek.der"),
            AT_2026,
        ),
        "signature does not verify with the VCEK",
    );
    for name in ["vcek-invalid-legacy.der", "vcek-invalid-new.der"] {
        assert_rejected(
            &snp(
                &vector("snp/milan/virtee-sev/report.bin"),
                "--cert",
                &vector(&format!("snp/negative/trustee/{name}")),
                AT_2026,
            ),
            "certificate chain",
        );
    }
    // A certificate that is not a certificate is evidence refused, not a usage error.
    let report_path = write("report.bin", &report);
    assert_rejected(
        &snp(&report_path, "--cert", &write("junk.pem", b"not a certificate"), AT_2026),
        "no certificate found",
    );
}

#[test]
fn usage_and_io_errors_exit_2() {
    let report = vector("snp/genoa/trustee-e2e/report.bin");
    let vcek = vector("snp/genoa/trustee-e2e/vcek.der");
    assert_usage(&snp(&report, "--cert", &vcek, "yesterday"), "--at");
    assert_usage(&snp(&report, "--cert", &vcek, "2026-02-30T00:00:00Z"), "out of range");
    assert_usage(
        &snp(&PathBuf::from("/nonexistent/report.bin"), "--cert", &vcek, AT_2026),
        "/nonexistent/report.bin",
    );
    assert_usage(&broker(&["verify", "snp-report", "--report", s(&report)]), "--cert");
    let out = broker(&[
        "verify",
        "snp-report",
        "--report",
        s(&report),
        "--cert",
        s(&vcek),
        "--cert-table",
        s(&vcek),
    ]);
    assert_eq!(out.status.code(), Some(2));
}

fn azure(dir: &str, hcl: &Path, quote: &Path, nonce: &str) -> Output {
    let base = vector(&format!("snp/azure-cvm-vtpm/{dir}"));
    broker(&[
        "verify",
        "azure-cvm",
        "--hcl-report",
        s(hcl),
        "--vcek",
        s(&base.join("vcek.pem")),
        "--quote",
        s(quote),
        "--signature",
        s(&base.join("tpm_quote_sig_rsassa_sha256.bin")),
        "--pcrs",
        s(&base.join("pcrs_sha256.json")),
        "--nonce",
        nonce,
        "--at",
        AT_2026,
    ])
}

#[test]
fn azure_cvm_evidence_verifies_and_tampering_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for (dir, nonce) in [
        ("genoa", "0218488bae25d2509232bf676f1a66a30d7372add909109b36016ef136f2938ca05475f8b46094de6b64270ea35d950f"),
        ("milan-v2", "982f5c6e45df0ed3f10b6f60b02f0c8390e281300f3805e2279c16168cd6ae9aa398f647caa2338748cd0fd9f5f819ef"),
    ] {
        let base = vector(&format!("snp/azure-cvm-vtpm/{dir}"));
        let hcl = base.join("hcl_report.bin");
        let quote = base.join("tpm_quote_attest.bin");
        let claims = claims(&azure(dir, &hcl, &quote, nonce));
        assert_eq!(claims["runtime_claims"]["ak"]["type"], "rsa", "{dir}");
        assert_eq!(claims["snp"]["signing_key"], "VCEK", "{dir}");
        assert!(claims["quote"]["pcrs"].is_object(), "{dir}");
        // The runtime claims: one byte of the JSON.
        let mut bytes = std::fs::read(&hcl).unwrap();
        bytes[0x4D4 + 30] ^= 1;
        let tampered = tmp.path().join(format!("{dir}-hcl.bin"));
        std::fs::write(&tampered, &bytes).unwrap();
        assert_rejected(&azure(dir, &tampered, &quote, nonce), "does not commit to the runtime claims");
        // The quote: one byte of its clock.
        let mut bytes = std::fs::read(&quote).unwrap();
        let last = bytes.len() - 40;
        bytes[last] ^= 1;
        let tampered = tmp.path().join(format!("{dir}-quote.bin"));
        std::fs::write(&tampered, &bytes).unwrap();
        assert_rejected(&azure(dir, &hcl, &tampered, nonce), "vTPM quote");
        // Another nonce.
        assert_rejected(&azure(dir, &hcl, &quote, "00"), "vTPM quote");
    }
}

#[test]
fn learn_snp_writes_a_class_for_a_verified_report_and_refuses_a_forged_one() {
    let report = vector("snp/turin/oak-containers/report.bin");
    let vcek = vector("snp/turin/oak-containers/vcek.der");
    let learn = |report: &Path| {
        broker(&[
            "policy",
            "learn-snp",
            "--class",
            "oak",
            "--report",
            s(report),
            "--cert",
            s(&vcek),
            "--at",
            AT_2026,
        ])
    };
    let out = learn(&report);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let class = String::from_utf8(out.stdout).unwrap();
    assert!(class.contains("evidence = \"snp\""), "{class}");
    assert!(
        class.contains("f924dd18f168df60fbea937f0b086284d51b1b376de872bac43694f61134d57967c318018de7335503023dbb50dee624"),
        "{class}"
    );
    assert!(
        class.contains("min_tcb = { bootloader = 1, tee = 0, snp = 2, microcode = 71, fmc = 0 }"),
        "{class}"
    );

    // Once the operator fills in the networks, the class loads as written.
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    let filled = class.replace("networks = []", "networks = [\"10.30.0.0/16\"]");
    std::fs::write(&policy, format!("version = 1\n{filled}")).unwrap();
    let check = broker(&["policy", "check", s(&policy)]);
    assert_eq!(check.status.code(), Some(0), "{}", String::from_utf8_lossy(&check.stderr));

    // Reference values are only learned from evidence that verifies.
    let mut forged = std::fs::read(&report).unwrap();
    forged[0x90] ^= 1; // MEASUREMENT
    let forged_path = dir.path().join("forged.bin");
    std::fs::write(&forged_path, forged).unwrap();
    assert_rejected(&learn(&forged_path), "signature");
}
