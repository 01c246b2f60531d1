//! The end of a credential's life: a PCR change refusing the renewal, then expiry;
//! revocation; retirement at a clean shutdown; a reboot superseding the earlier boot.

use std::time::{Duration, Instant};

use mooring_client::service::now;
use mooring_tests::client::{copy_dir, OutputText as _, CLIENT_EXIT_REFUSED};
use mooring_tests::payments::{Mode, Payments, PaymentsSetup};
use serde_json::json;

use crate::checks::{assert_audited, assert_paid, assert_refused, refused_offline_within_2_s};
use crate::{offline_service, pay, spiffe_id, world, A};

#[test]
fn s5_after_a_pcr_change_renewal_is_refused_and_the_credential_dies_at_expiry() {
    let Some(w) = world("e2e_s5_pcr_change") else { return };
    w.a.attest();
    let payer = spiffe_id(&w.a);
    let expires_at = w.a.status_json()["expires_at"].as_i64().unwrap();
    let offline = Payments::start(&w.broker, &PaymentsSetup::new(Mode::Offline));
    assert_paid(&pay(&w.a.config_path(), &w.payments, "jwt", &[]), &payer);

    let released = || std::fs::read_dir(w.a.runtime_dir().join("secrets")).unwrap().count();
    assert_eq!(released(), 1, "the class releases one secret");

    // Another kernel measured into PCR 0: the next attestation (renewal) is refused.
    w.a.extend_pcr(0);
    let out = w.a.client(&["attest"]);
    assert_eq!(out.status.code(), Some(CLIENT_EXIT_REFUSED), "{}", out.stderr_text());
    assert!(out.stderr_text().contains("pcr_value_not_allowed"), "{}", out.stderr_text());
    assert_audited(&w.broker, "pcr_value_not_allowed", A);
    // What the broker released for the admitted state is gone from the VM.
    assert_eq!(released(), 0, "released secrets outlived the refusal");

    // The credential already issued works until it expires (its TTL is 60 s) ...
    assert!(now() < expires_at, "expired before the renewal was tried");
    assert_paid(&pay(&w.a.config_path(), &w.payments, "jwt", &[]), &payer);
    // ... and not after.
    let wait = u64::try_from(expires_at + 1 - now()).unwrap_or(0);
    std::thread::sleep(Duration::from_secs(wait));
    let reason = assert_refused(&pay(&w.a.config_path(), &w.payments, "jwt", &[]), "expired");
    assert!(reason.contains("expired"), "{reason}");
    assert_audited(&w.broker, "expired", A);
    assert_refused(&pay(&w.a.config_path(), &offline, "jwt", &[]), "expired");
    // Over mutual TLS the expired X.509-SVID does not get through the handshake.
    let out = pay(&w.a.config_path(), &w.payments, "mtls", &[]);
    assert_eq!(out.status.code(), Some(4), "stdout: {}\nstderr: {}", out.stdout_text(), out.stderr_text());
}

#[test]
fn s6_a_revoked_vm_is_refused_at_once_online_and_after_the_next_fetch_offline() {
    let Some(w) = world("e2e_s6_revoked") else { return };
    w.a.attest();
    let payer = spiffe_id(&w.a);
    let offline = offline_service(&w.broker, 1, 30);
    for mode in ["jwt", "mtls"] {
        assert_paid(&pay(&w.a.config_path(), &w.payments, mode, &[]), &payer);
        assert_paid(&pay(&w.a.config_path(), &offline, mode, &[]), &payer);
    }

    let revoke = json!({"target": {"kind": "vm", "id": payer}, "reason": "image leaked"});
    w.broker.admin_post("admin/revocations", &revoke);

    // The verify API knows at once.
    for mode in ["jwt", "mtls"] {
        let reason = assert_refused(&pay(&w.a.config_path(), &w.payments, mode, &[]), "revoked");
        assert!(reason.contains("image leaked"), "{reason}");
    }
    assert_audited(&w.broker, "revoked", A);

    // Offline: once its next revocation-list fetch (every second) has seen it.
    let deadline = Instant::now() + Duration::from_secs(15);
    let out = loop {
        let out = pay(&w.a.config_path(), &offline, "jwt", &[]);
        if out.status.code() != Some(0) || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_refused(&out, "revoked");
    assert_refused(&pay(&w.a.config_path(), &offline, "mtls", &[]), "revoked");
}

#[test]
fn s8_a_clean_shutdown_retires_the_credentials_and_relying_services_refuse_them_at_once() {
    let Some(w) = world("e2e_s8_retire") else { return };
    w.a.attest();
    let payer = spiffe_id(&w.a);
    let offline = offline_service(&w.broker, 20, 60);
    assert_paid(&pay(&w.a.config_path(), &w.payments, "jwt", &[]), &payer);
    assert_paid(&pay(&w.a.config_path(), &offline, "jwt", &[]), &payer);

    // What a copy of the runtime directory keeps after the VM is gone.
    let kept = tempfile::tempdir().unwrap();
    copy_dir(&w.a.runtime_dir(), kept.path());

    // `systemctl stop`: the unit's ExecStop retires the credential, within its deadline.
    let started = Instant::now();
    let out = w.a.client(&["retire"]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr_text());
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert!(!w.a.runtime_dir().join("status.json").exists(), "the runtime directory was not cleared");
    assert!(w.broker.audit().iter().any(|r| r["code"] == "retired" && r["action"] == "retire"));

    // The kept copy is refused at once online, and offline as soon as the long poll answers
    // (no refresh interval to wait for: it is 20 s here).
    copy_dir(kept.path(), &w.a.runtime_dir());
    assert_refused(&pay(&w.a.config_path(), &w.payments, "jwt", &[]), "retired");
    refused_offline_within_2_s(&w.a.config_path(), &offline, "jwt", "retired");

    // A broker that cannot be reached does not hold the shutdown up beyond the deadline.
    let mut gone = w.broker;
    gone.kill_9();
    let started = Instant::now();
    let out = w.a.client(&["retire"]);
    assert_eq!(out.status.code(), Some(4), "{}", out.stderr_text());
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[test]
fn s9_after_a_reboot_the_earlier_boots_credentials_are_refused_online_and_offline() {
    let Some(mut w) = world("e2e_s9_reboot") else { return };
    w.a.attest();
    let payer = spiffe_id(&w.a);
    let offline = offline_service(&w.broker, 20, 60);
    assert_paid(&pay(&w.a.config_path(), &offline, "jwt", &[]), &payer);
    // What the VM held before the reboot, kept somewhere.
    let earlier = tempfile::tempdir().unwrap();
    copy_dir(&w.a.runtime_dir(), earlier.path());

    // A reboot (the TPM is reset: resetCount moves on) and a new attestation.
    w.a.tpm.restart().unwrap();
    w.a.attest();
    assert_paid(&pay(&w.a.config_path(), &w.payments, "jwt", &[]), &payer);
    assert!(w.broker.audit().iter().any(|r| r["code"] == "superseded_by_reboot"));

    // The earlier boot's credentials: refused at once online, and offline within 2 s.
    copy_dir(earlier.path(), &w.a.runtime_dir());
    for mode in ["jwt", "mtls"] {
        assert_refused(&pay(&w.a.config_path(), &w.payments, mode, &[]), "superseded_by_reboot");
    }
    for mode in ["jwt", "mtls"] {
        refused_offline_within_2_s(&w.a.config_path(), &offline, mode, "superseded_by_reboot");
    }
}
