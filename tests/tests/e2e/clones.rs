//! Cloned vTPMs: a copy attesting from a second address, fresh or stale.

use mooring_tests::broker::loopback;
use mooring_tests::client::{OutputText as _, CLIENT_EXIT_REFUSED};

use crate::checks::{assert_audited, assert_paid, assert_refused};
use crate::{pay, spiffe_id, world, A, B};

#[test]
fn s10_a_cloned_vtpm_attesting_from_a_second_address_is_refused_and_both_copies_lose_their_credentials() {
    let Some(w) = world("e2e_s10_clone") else { return };
    w.a.attest();
    let payer = spiffe_id(&w.a);
    assert_paid(&pay(&w.a.config_path(), &w.payments, "jwt", &[]), &payer);

    // The hypervisor copies A's vTPM state and disk; the copy starts from B's address (its
    // start is a reset of the copied TPM, so it looks like A rebooted) while A runs on.
    let clone = w.a.clone_to(loopback(B));
    clone.write_config(&w.broker);
    clone.attest();
    assert_eq!(spiffe_id(&clone), payer, "one TPM, one identity");

    // A attests again from the boot it never left: an earlier boot than one seen since.
    let out = w.a.client(&["attest"]);
    assert_eq!(out.status.code(), Some(CLIENT_EXIT_REFUSED), "{}", out.stderr_text());
    assert!(out.stderr_text().contains("clone_suspected"), "{}", out.stderr_text());
    assert_audited(&w.broker, "clone_suspected", A);

    // Both copies lose their credentials, and the TPM stays blocked until an administrator acts.
    assert_refused(&pay(&clone.config_path(), &w.payments, "jwt", &[]), "clone_suspected");
    assert_refused(&pay(&w.a.config_path(), &w.payments, "jwt", &[]), "superseded_by_reboot");
    let out = clone.client(&["attest"]);
    assert_eq!(out.status.code(), Some(CLIENT_EXIT_REFUSED), "{}", out.stderr_text());
    assert!(out.stderr_text().contains("vm_blocked"), "{}", out.stderr_text());
    let metrics = w
        .broker
        .client(loopback(A))
        .get(format!("https://localhost:{}/metrics", w.broker.address.port()))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(metrics.contains("code=\"clone_suspected\""), "{metrics}");
}

#[test]
fn s11_a_stale_vtpm_clone_attesting_from_a_second_address_gets_clone_suspected() {
    let Some(mut w) = world("e2e_s11_stale_clone") else { return };
    w.a.attest();
    // A snapshot of A's vTPM and disk, kept aside while A goes on (and reboots twice).
    let clone = w.a.clone_to(loopback(B));
    clone.write_config(&w.broker);
    w.a.tpm.restart().unwrap();
    w.a.tpm.restart().unwrap();
    w.a.attest();
    let payer = spiffe_id(&w.a);
    assert_paid(&pay(&w.a.config_path(), &w.payments, "jwt", &[]), &payer);

    // The snapshot, restored elsewhere, attests from B's address: its TPM is in an earlier
    // boot than the one A attested from.
    let out = clone.client(&["attest"]);
    assert_eq!(out.status.code(), Some(CLIENT_EXIT_REFUSED), "{}", out.stderr_text());
    assert!(out.stderr_text().contains("clone_suspected"), "{}", out.stderr_text());
    assert_audited(&w.broker, "clone_suspected", B);

    // Both copies are out: A's credentials are revoked and its TPM is blocked.
    assert_refused(&pay(&w.a.config_path(), &w.payments, "jwt", &[]), "clone_suspected");
    let out = w.a.client(&["attest"]);
    assert_eq!(out.status.code(), Some(CLIENT_EXIT_REFUSED), "{}", out.stderr_text());
    assert!(out.stderr_text().contains("vm_blocked"), "{}", out.stderr_text());
}
