//! `mooring-broker verify ...` end to end: fresh quotes made by `tpm2_quote` on swtpm
//! (RSA and ECC AKs, several PCR selections) verify (exit 0); each tampered variant is
//! rejected (exit 1, one line on stderr); usage and I/O errors exit 2. `identity ek` reads
//! the same key forms as `--ak`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mooring_testdata::testdata_dir;
use mooring_tests::{Swtpm, SwtpmOptions, Tpm2Tools};
use sha2::Digest as _;

fn broker(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mooring-broker")).args(args).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

struct Quote {
    ak: PathBuf,
    msg: PathBuf,
    sig: PathBuf,
    pcrs: PathBuf,
    nonce: String,
}

impl Quote {
    fn args<'a>(
        &'a self,
        ak: &'a Path,
        msg: &'a Path,
        sig: &'a Path,
        pcrs: &'a Path,
        nonce: &'a str,
    ) -> Vec<&'a str> {
        vec![
            "verify",
            "tpm-quote",
            "--ak",
            s(ak),
            "--quote",
            s(msg),
            "--signature",
            s(sig),
            "--pcrs",
            s(pcrs),
            "--nonce",
            nonce,
        ]
    }

    fn verify(&self) -> Output {
        broker(&self.args(&self.ak, &self.msg, &self.sig, &self.pcrs, &self.nonce))
    }
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn make_ak(tools: &Tpm2Tools, tag: &str, alg: &[&str]) {
    tools.run("tpm2_createek", ["-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub"]).unwrap();
    let ctx = format!("ak-{tag}.ctx");
    let public = format!("ak-{tag}.pub");
    let mut args = vec!["-C", "ek.ctx", "-c", ctx.as_str(), "-u", public.as_str()];
    args.extend_from_slice(alg);
    tools.run("tpm2_createak", args).unwrap();
    tools.flush_all().unwrap();
}

fn quote(tools: &Tpm2Tools, tag: &str, selection: &str, format: &str, n: usize) -> Quote {
    let nonce = format!("{:02x}", n).repeat(32);
    let msg = tools.path(&format!("q{n}.msg"));
    let sig = tools.path(&format!("q{n}.sig"));
    let pcrs = tools.path(&format!("q{n}.pcrs"));
    tools
        .run(
            "tpm2_quote",
            [
                "-c",
                &format!("ak-{tag}.ctx"),
                "-l",
                selection,
                "-q",
                &nonce,
                "-m",
                s(&msg),
                "-s",
                s(&sig),
                "-o",
                s(&pcrs),
                "-F",
                format,
                "-g",
                if tag == "rsa384" { "sha384" } else { "sha256" },
            ],
        )
        .unwrap();
    tools.flush_all().unwrap();
    Quote { ak: tools.path(&format!("ak-{tag}.pub")), msg, sig, pcrs, nonce }
}

fn flipped(path: &Path, at: impl Fn(usize) -> usize, suffix: &str) -> PathBuf {
    let mut bytes = std::fs::read(path).unwrap();
    let i = at(bytes.len());
    bytes[i] ^= 0x01;
    let out = path.with_extension(suffix);
    std::fs::write(&out, bytes).unwrap();
    out
}

fn assert_rejected(out: &Output, why: &str, expect: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{why}: expected exit 1, stderr: {err}");
    assert_eq!(err.lines().count(), 1, "{why}: one line on stderr: {err}");
    assert!(err.contains(expect), "{why}: {err:?} lacks {expect:?}");
}

#[test]
fn fresh_swtpm_quotes_verify_and_tampered_ones_exit_1() {
    let Some(tpm) =
        Swtpm::start_or_skip("fresh_swtpm_quotes_verify", SwtpmOptions::default().without_ek_certs())
    else {
        return;
    };
    let tools = tpm.tools();
    tools
        .run("tpm2_pcrextend", ["4:sha256=0000000000000000000000000000000000000000000000000000000000000004"])
        .unwrap();
    tools.run("tpm2_pcrextend", ["7:sha1=0000000000000000000000000000000000000007"]).unwrap();
    make_ak(&tools, "rsa", &["-G", "rsa", "-g", "sha256", "-s", "rsassa"]);
    make_ak(&tools, "ecc", &["-G", "ecc", "-g", "sha256", "-s", "ecdsa"]);
    make_ak(&tools, "rsa384", &["-G", "rsa", "-g", "sha384", "-s", "rsassa"]);

    let mut n = 0;
    let mut quotes = Vec::new();
    for (tag, selection, format) in [
        ("rsa", "sha256:0,1,2,3,4,5,6,7", "values"),
        ("ecc", "sha256:0,4,7,10", "serialized"),
        ("ecc", "sha1:0,1,7", "values"),
        ("rsa384", "sha256:4,7,16", "serialized"),
        ("rsa", "sha1:0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,23", "serialized"),
        // Two banks in one quote, as `tpm2_quote -l sha1:0-7+sha256:0-7` makes them.
        ("rsa", "sha1:0,1,2,3,4,5,6,7+sha256:0,1,2,3,4,5,6,7", "values"),
        ("ecc", "sha1:0,7+sha256:4,7", "serialized"),
    ] {
        n += 1;
        let q = quote(&tools, tag, selection, format, n);
        let out = q.verify();
        assert!(out.status.success(), "{tag} {selection}: {}", stderr(&out));
        // tpm2-tools agrees (its tpm2_checkquote reads the serialized PCR format only).
        if format == "serialized" {
            let hash = if tag == "rsa384" { "sha384" } else { "sha256" };
            let args = [
                "-u",
                s(&q.ak),
                "-m",
                s(&q.msg),
                "-s",
                s(&q.sig),
                "-f",
                s(&q.pcrs),
                "-g",
                hash,
                "-q",
                &q.nonce,
            ];
            tools
                .run("tpm2_checkquote", args)
                .unwrap_or_else(|e| panic!("tpm2_checkquote {tag} {selection}: {e}"));
        }
        let claims: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(claims["quote"]["qualifying_data"], q.nonce.as_str());
        assert_eq!(claims["ak"], "tpm_public_area");
        quotes.push((tag, q));
    }

    for (tag, q) in &quotes {
        // Another nonce: a replay against a later challenge.
        let other = "ab".repeat(32);
        assert_rejected(&broker(&q.args(&q.ak, &q.msg, &q.sig, &q.pcrs, &other)), tag, "qualifying data");
        // Any quoted byte: the signature no longer covers it.
        let msg = flipped(&q.msg, |len| len - 3, "msg-flipped");
        assert_rejected(&broker(&q.args(&q.ak, &msg, &q.sig, &q.pcrs, &q.nonce)), tag, "rejected: quote");
        // The signature.
        let sig = flipped(&q.sig, |len| len - 1, "sig-flipped");
        assert_rejected(
            &broker(&q.args(&q.ak, &q.msg, &sig, &q.pcrs, &q.nonce)),
            tag,
            "signature does not verify",
        );
    }
    // A PCR value (values format: the first value's first byte).
    let (_, q) = &quotes[0];
    let pcrs = flipped(&q.pcrs, |_| 0, "pcrs-flipped");
    assert_rejected(&broker(&q.args(&q.ak, &q.msg, &q.sig, &pcrs, &q.nonce)), "pcr", "pcrDigest");
    // The AK: the ECC AK presented for the RSA AK's quote.
    let other_ak = quotes[1].1.ak.clone();
    assert_rejected(&broker(&q.args(&other_ak, &q.msg, &q.sig, &q.pcrs, &q.nonce)), "ak", "rejected");
}

/// `verify tpm-quote` on the real GCE COS 85 SHA-256 quote with `ak_file`, plus `extra`.
fn gce_quote(ak_file: &str, extra: &[&str]) -> Output {
    let base = testdata_dir().join("tpm/quotes/gce-cos85-vtpm/nonce9009");
    let (ak, msg) = (base.join(ak_file), base.join("quote_sha256.attest.bin"));
    let (sig, pcrs) = (base.join("quote_sha256.sig.tpmt_signature.bin"), base.join("pcrs.json"));
    let mut args = vec![
        "verify",
        "tpm-quote",
        "--ak",
        s(&ak),
        "--quote",
        s(&msg),
        "--signature",
        s(&sig),
        "--pcrs",
        s(&pcrs),
    ];
    args.extend_from_slice(extra);
    broker(&args)
}

#[test]
fn real_gce_quote_with_event_log_verifies_and_mismatched_log_names_the_pcr() {
    let base = testdata_dir().join("tpm/quotes/gce-cos85-vtpm/nonce9009");
    let args = |log: &Path| {
        gce_quote(
            "ak_pub.tpmt_public.bin",
            &["--pcr-bank", "sha256", "--nonce", "9009", "--event-log", s(log)],
        )
    };
    let out = args(&base.join("binary_bios_measurements"));
    assert!(out.status.success(), "{}", stderr(&out));
    let claims: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(claims["event_log"][0]["pcrs_replayed"], serde_json::json!([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]));
    let other_log = testdata_dir().join("tpm/eventlogs/go-tpm-tools/cos-85-amd-sev.bin");
    assert_rejected(&args(&other_log), "other log", "event log replays PCR");
}

#[test]
fn usage_and_io_errors_exit_2() {
    let missing = broker(&[
        "verify",
        "tpm-quote",
        "--ak",
        "/nonexistent",
        "--quote",
        "x",
        "--signature",
        "y",
        "--pcrs",
        "z",
    ]);
    assert_eq!(missing.status.code(), Some(2));
    assert_eq!(broker(&["verify", "tpm-quote"]).status.code(), Some(2));
    // Several banks in the PCR file and no --pcr-bank: the operator must choose.
    let ambiguous = gce_quote("ak_pub.pem", &["--nonce", "9009"]);
    assert_eq!(ambiguous.status.code(), Some(2), "{}", stderr(&ambiguous));
    assert!(stderr(&ambiguous).contains("--pcr-bank"));
    let bad_nonce = gce_quote("ak_pub.pem", &["--nonce", "zz"]);
    assert!(stderr(&bad_nonce).contains("--nonce is not hex"), "{}", stderr(&bad_nonce));
    assert_eq!(bad_nonce.status.code(), Some(2));
}

#[test]
fn a_certify_creation_given_as_quote_is_rejected_as_such() {
    let win = testdata_dir().join("tpm/quotes/gce-windows-vtpm");
    let out = broker(&[
        "verify",
        "tpm-quote",
        "--ak",
        s(&win.join("ak_pub.tpmt_public.bin")),
        "--quote",
        s(&win.join("ak_CreateAttestation.bin")),
        "--signature",
        s(&win.join("ak_CreateSignature.bin")),
        "--pcrs",
        s(&win.join("quote.sig.tpmt_signature.bin")),
    ]);
    assert_rejected(&out, "certify-creation", "not TPM_ST_ATTEST_QUOTE");
}

#[test]
fn event_log_command_replays_and_rejects_garbage() {
    let log = testdata_dir().join("tpm/eventlogs/go-tpm-tools/rhel8-uefi.bin");
    let out = broker(&["verify", "event-log", "--log", s(&log)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let claims: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(claims["events"], 83);
    assert_eq!(
        claims["replayed_pcrs"]["sha256"]["7"].as_str().map(str::len),
        Some(64),
        "PCR 7 replayed in sha256"
    );
    let garbage = std::env::temp_dir().join(format!("mooring-garbage-{}.bin", std::process::id()));
    std::fs::write(&garbage, b"this is not an event log at all, just text").unwrap();
    let out = broker(&["verify", "event-log", "--log", s(&garbage)]);
    std::fs::remove_file(&garbage).unwrap();
    assert_rejected(&out, "garbage", "event log");
}

/// `identity ek`: the admin API's enrollment body from an EK public key in each form the key
/// reaches an administrator (DER SubjectPublicKeyInfo and TPMT_PUBLIC as the AWS EC2 API
/// gives it, PEM, TPM2B_PUBLIC), the same identity from each; anything else refused.
#[test]
fn identity_ek_reads_every_key_form_to_one_identity_and_refuses_others() {
    let dir = tempfile::tempdir().unwrap();
    let gce = testdata_dir().join("tpm/quotes/gce-cos85-vtpm/nonce9009");
    let pem = std::fs::read(gce.join("ak_pub.pem")).unwrap();
    let der = mooring_attestation::pem::decode_one(&pem, "PUBLIC KEY").unwrap();
    let tpmt = std::fs::read(gce.join("ak_pub.tpmt_public.bin")).unwrap();
    let mut tpm2b = u16::try_from(tpmt.len()).unwrap().to_be_bytes().to_vec();
    tpm2b.extend(&tpmt);
    let body = |name: &str, bytes: &[u8], status: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = broker(&["identity", "ek", "--status", status, "--public", s(&path)]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let id = hex::encode(sha2::Sha256::digest(&der));
    let expected = serde_json::json!({"identity": {"kind": "ek", "id": id}, "status": "enrolled"});
    for (name, bytes) in [("ek.der", &der), ("ek.pem", &pem), ("ek.tpmt", &tpmt), ("ek.tpm2b", &tpm2b)] {
        assert_eq!(body(name, bytes, "enrolled"), expected, "{name}");
    }
    assert_eq!(body("ek.der", &der, "blocked")["status"], "blocked");

    let mut cut = der.clone();
    cut.truncate(der.len() - 1);
    for (name, bytes) in [("cut.der", cut), ("junk", b"\x00\x01junk".to_vec())] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = broker(&["identity", "ek", "--public", s(&path)]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
        assert!(stderr(&out).starts_with("rejected: EK public key ("), "{name}: {}", stderr(&out));
    }
    let out = broker(&["identity", "ek", "--public", "/nonexistent/ek.der"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
