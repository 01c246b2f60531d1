//! End to end, with every part real: simulated VMs, each with its own swtpm and its own
//! loopback address (A on 127.0.0.2, B on 127.0.0.3), the broker on its sled store, the
//! `mooring-client` binary, the example payment service, and `mooring-pay` as the VM's
//! application. Each scenario is its own test; each refusal is checked by its code, and
//! the broker's audit log must hold it with its reason.
//!
//! The scenarios by what they attack: a VM attesting and paying (here), stolen credentials,
//! keys and sealed secrets (`theft`), the end of a credential's life (`lifetime`: PCR change,
//! revocation, retirement, reboot), cloned vTPMs (`clones`), the SEV-SNP path (`snp`), and
//! Azure confidential VMs (`azure`: an HCL report in a swtpm's NV and a quote by its AK), and
//! the token exchange for downstream audiences (`federation`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod azure;
mod checks;
mod clones;
mod federation;
mod lifetime;
mod snp;
mod theft;

use std::path::Path;
use std::process::Output;

use mooring_tests::broker::{loopback, Broker};
use mooring_tests::client::{tpm_broker_setup, ClientVm};
use mooring_tests::payments::{Mode, Payments, PaymentsSetup};

use crate::checks::assert_paid;

/// VM A's and VM B's addresses.
const A: u8 = 2;
const B: u8 = 3;
const NETWORKS: &[&str] = &["127.0.0.2/32", "127.0.0.3/32"];

/// `mooring-pay` exit statuses.
const PAY_EXIT_LOCAL: i32 = 1;
const PAY_EXIT_REFUSED: i32 = 3;

/// Two TPM VMs, the broker admitting both, and the payment service asking the broker.
struct World {
    a: ClientVm,
    b: ClientVm,
    broker: Broker,
    payments: Payments,
}

fn world(test: &str) -> Option<World> {
    let a = ClientVm::start_or_skip(test, loopback(A))?;
    let b = ClientVm::start_or_skip(test, loopback(B))?;
    let broker = Broker::start(&tpm_broker_setup(&[&a.tpm, &b.tpm], NETWORKS));
    a.write_config(&broker);
    b.write_config(&broker);
    let payments = Payments::start(&broker, &PaymentsSetup::new(Mode::Broker));
    Some(World { a, b, broker, payments })
}

/// `mooring-pay --config CONFIG --mode MODE ARGS` against `payments`.
fn pay(config: &Path, payments: &Payments, mode: &str, args: &[&str]) -> Output {
    payments.mooring_pay(config, mode, args)
}

/// An offline payment service fetching `broker`'s revocation list every
/// `revocations_seconds`, refusing when the list it holds is older than `max_age_seconds`.
fn offline_service(broker: &Broker, revocations_seconds: u64, max_age_seconds: u64) -> Payments {
    Payments::start(
        broker,
        &PaymentsSetup {
            revocations_seconds,
            max_revocation_age_seconds: max_age_seconds,
            ..PaymentsSetup::new(Mode::Offline)
        },
    )
}

fn spiffe_id(vm: &ClientVm) -> String {
    vm.status_json()["spiffe_id"].as_str().unwrap().to_owned()
}

#[test]
fn s1_vm_a_attests_and_pays() {
    let Some(w) = world("e2e_s1_attest_and_pay") else { return };
    w.a.attest();
    let payer = spiffe_id(&w.a);
    assert_eq!(w.a.status_json()["bound_address"], "127.0.0.2");
    assert_paid(&pay(&w.a.config_path(), &w.payments, "jwt", &[]), &payer);
    assert_paid(&pay(&w.a.config_path(), &w.payments, "mtls", &[]), &payer);
    let offline = Payments::start(&w.broker, &PaymentsSetup::new(Mode::Offline));
    assert_paid(&pay(&w.a.config_path(), &offline, "jwt", &[]), &payer);
    assert_paid(&pay(&w.a.config_path(), &offline, "mtls", &[]), &payer);
}
