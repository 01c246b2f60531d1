//! `mooring-demo`: the quick start's narrated run (`scripts/demo.sh` builds and starts it).
//!
//! Two simulated VMs, each a real swtpm with an EK certificate and its own loopback address
//! (A on 127.0.0.2, B on 127.0.0.3); the real broker on its embedded sled store; the real
//! `mooring-client` on each VM; the example payment service asking the broker; and
//! `mooring-pay` as the VM's application. VM A attests and pays. Then everything A keeps is
//! copied onto B, and every way of using the copy is refused, with the reason printed.
//! Everything runs on loopback and is removed at the end.
// The harness panics with a message when a part fails to start (it is test tooling); indexing
// here is serde_json's, which answers Null for a missing key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Output};

use mooring_tests::broker::{loopback, Broker};
use mooring_tests::client::{copy_dir, tpm_broker_setup, ClientVm};
use mooring_tests::payments::{Mode, Payments, PaymentsSetup};
use mooring_tests::prereq::{require_tools, TPM_TOOLS};
use serde_json::Value;

const A: u8 = 2;
const B: u8 = 3;

fn main() -> ExitCode {
    // Outside CI the harness skips (returns None) when a tool is missing; say so and stop.
    if !require_tools("mooring-demo", TPM_TOOLS) {
        eprintln!("mooring-demo: swtpm and tpm2-tools are needed (scripts/demo.sh installs them as root)");
        return ExitCode::from(2);
    }
    let (Some(a), Some(b)) = (
        ClientVm::start_or_skip("mooring-demo", loopback(A)),
        ClientVm::start_or_skip("mooring-demo", loopback(B)),
    ) else {
        return ExitCode::from(2);
    };

    step(
        "The broker starts on its embedded store, with a policy admitting TPMs whose EK certificate \
          the local TPM vendor CA signed, attesting from 127.0.0.2 or 127.0.0.3.",
    );
    let broker = Broker::start(&tpm_broker_setup(&[&a.tpm, &b.tpm], &["127.0.0.2/32", "127.0.0.3/32"]));
    a.write_config(&broker);
    b.write_config(&broker);
    println!("   broker listening on https://{}", broker.address);
    let payments = Payments::start(&broker, &PaymentsSetup::new(Mode::Broker));
    println!("   payment service on https://{} (checks every credential with the broker)", payments.address);

    step("VM A (127.0.0.2) boots; mooring-client proves its TPM, its boot state and its new key K.");
    let out = a.client_command(&["attest"]).env("MOORING_LOG", "warn").output().unwrap();
    show(&out);
    if !out.status.success() {
        return ExitCode::FAILURE;
    }
    b.attest();

    step("VM A pays with its JWT-SVID and a proof signed by K inside its TPM.");
    let mut ok = expect_paid(&pay(&a.config_path(), &payments, "jwt", &[]));
    step("VM A pays over mutual TLS with its X.509-SVID (the handshake is signed by K in the TPM).");
    ok &= expect_paid(&pay(&a.config_path(), &payments, "mtls", &[]));

    step(
        "An attacker copies everything VM A keeps (credentials, key file, K's TPM blobs) onto \
          VM B, which has its own TPM and address 127.0.0.3.",
    );
    let stolen_run = b.run.path().join("stolen");
    let stolen_state = b.dir.path().join("stolen-state");
    copy_dir(&a.runtime_dir(), &stolen_run);
    copy_dir(&a.state_dir(), &stolen_state);
    let stolen = stolen_config(&b, &stolen_run, &stolen_state);
    let stolen_jwt = stolen_run.join("jwt-svid").display().to_string();

    step("B presents the copy over mutual TLS: K's blobs load only in A's TPM, so B cannot sign.");
    ok &= expect_refused(&pay(&stolen, &payments, "mtls", &[]));
    step("B presents the copied JWT-SVID from its own address.");
    ok &= expect_refused(&pay(&stolen, &payments, "bearer", &[]));
    step("B takes over A's address 127.0.0.2 as well and presents the token alone.");
    ok &= expect_refused(&pay(&stolen, &payments, "bearer", &["--source-address", "127.0.0.2"]));
    step("B signs a proof with its own TPM key: not the key the credential names.");
    ok &= expect_refused(&pay(
        &b.config_path(),
        &payments,
        "jwt",
        &["--jwt", &stolen_jwt, "--source-address", "127.0.0.2"],
    ));

    step("VM A still pays.");
    ok &= expect_paid(&pay(&a.config_path(), &payments, "jwt", &[]));

    step("The broker's audit log (hash-chained) holds each decision:");
    for record in broker.audit() {
        println!(
            "   #{:<3} {:<8} {:<9} {:<24} {}",
            record["seq"].as_u64().unwrap_or_default(),
            record["action"].as_str().unwrap_or_default(),
            record["outcome"].as_str().unwrap_or_default(),
            record["code"].as_str().unwrap_or_default(),
            record["peer"].as_str().unwrap_or("-"),
        );
    }
    if ok {
        println!(
            "\n== done: VM A attested and paid; every use of its copied credentials on VM B was refused"
        );
        ExitCode::SUCCESS
    } else {
        println!("\n== an outcome differed from what the demo expects (see above)");
        ExitCode::FAILURE
    }
}

fn step(text: &str) {
    println!("\n-- {}", text.split_whitespace().collect::<Vec<_>>().join(" "));
}

fn show(out: &Output) {
    for line in
        String::from_utf8_lossy(&out.stdout).lines().chain(String::from_utf8_lossy(&out.stderr).lines())
    {
        println!("   {line}");
    }
}

/// `mooring-pay` with `config` against `payments`.
fn pay(config: &Path, payments: &Payments, mode: &str, args: &[&str]) -> Output {
    payments.mooring_pay(config, mode, args)
}

fn expect_paid(out: &Output) -> bool {
    let answer = String::from_utf8_lossy(&out.stdout);
    if out.status.success() {
        let receipt: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
        let cents = receipt["amount_cents"].as_u64().unwrap_or_default();
        let currency = receipt["currency"].as_str().unwrap_or_default();
        let payer = receipt["payer"].as_str().unwrap_or_default();
        println!("   PAID  {}.{:02} {currency} by {payer}", cents / 100, cents % 100);
        true
    } else {
        println!("   unexpected: {}{}", answer.trim(), String::from_utf8_lossy(&out.stderr).trim());
        false
    }
}

fn expect_refused(out: &Output) -> bool {
    if out.status.success() {
        println!("   unexpected: PAID {}", String::from_utf8_lossy(&out.stdout).trim());
        return false;
    }
    let text = [&out.stdout, &out.stderr].map(|b| String::from_utf8_lossy(b).trim().to_owned()).join(" ");
    println!("   REFUSED  {}", text.trim());
    true
}

/// VM B's client configuration pointed at the copied directories (what the thief runs).
fn stolen_config(b: &ClientVm, runtime: &Path, state: &Path) -> PathBuf {
    let quoted = |p: &Path| format!("{:?}", p.display().to_string());
    let text = std::fs::read_to_string(b.config_path())
        .unwrap()
        .replace(&quoted(&b.runtime_dir()), &quoted(runtime))
        .replace(&quoted(&b.state_dir()), &quoted(state));
    let path = b.dir.path().join("stolen.toml");
    std::fs::write(&path, text).unwrap();
    path
}
