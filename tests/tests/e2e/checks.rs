//! What the scenarios check: a payment made or refused (by code), K unusable off its TPM,
//! and the broker's audit record of each refusal.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use mooring_tests::broker::{loopback, Broker};
use mooring_tests::client::OutputText as _;
use mooring_tests::payments::Payments;
use serde_json::Value;

use crate::{pay, PAY_EXIT_LOCAL, PAY_EXIT_REFUSED};

/// The `offline` payment service refuses `config`'s credential with `code` within 2 s (its
/// revocation list long-poll answering), paying until then.
pub(crate) fn refused_offline_within_2_s(config: &Path, offline: &Payments, mode: &str, code: &str) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let out = pay(config, offline, mode, &[]);
        if out.status.code() != Some(0) {
            assert_refused(&out, code);
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the offline service still accepts the {mode} credential ({code})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Paid: the receipt names `payer`.
pub(crate) fn assert_paid(out: &Output, payer: &str) {
    assert_eq!(out.status.code(), Some(0), "stdout: {}\nstderr: {}", out.stdout_text(), out.stderr_text());
    let receipt: Value = serde_json::from_str(&out.stdout_text()).unwrap();
    assert_eq!(receipt["status"], "accepted", "{receipt}");
    assert_eq!(receipt["payer"], payer, "{receipt}");
}

/// Refused by the service with `code` and a reason; returns the reason.
pub(crate) fn assert_refused(out: &Output, code: &str) -> String {
    assert_eq!(
        out.status.code(),
        Some(PAY_EXIT_REFUSED),
        "stdout: {}\nstderr: {}",
        out.stdout_text(),
        out.stderr_text()
    );
    let stdout = out.stdout_text();
    let reason = stdout
        .trim()
        .strip_prefix(&format!("refused: {code}: "))
        .unwrap_or_else(|| panic!("expected refusal {code}, got: {stdout}"));
    assert!(!reason.is_empty(), "{stdout}");
    reason.to_owned()
}

/// K could not sign on this machine: the request never left it (or its TLS handshake failed).
pub(crate) fn assert_k_unusable(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(PAY_EXIT_LOCAL),
        "stdout: {}\nstderr: {}",
        out.stdout_text(),
        out.stderr_text()
    );
    assert!(out.stderr_text().contains("K cannot sign here"), "{}", out.stderr_text());
}

/// The broker's audit log holds a refused decision with `code` and a reason, about a
/// caller at `peer` (the address the payment service saw).
pub(crate) fn assert_audited(broker: &Broker, code: &str, peer: u8) {
    let audit = broker.audit();
    let peer = loopback(peer).to_string();
    let found = audit.iter().any(|r| {
        r["outcome"] == "refused"
            && r["code"] == code
            && r["peer"] == peer.as_str()
            && !r["reason"].as_str().unwrap_or_default().is_empty()
    });
    assert!(found, "no refused {code} record for {peer} in the audit log:\n{audit:#?}");
}
