//! Honest VMs keep attesting under abuse (issue #15), against the real broker over
//! loopback: a flood of malformed and oversized requests from 50 addresses leaves the data
//! directory almost as it was while every honest decision is recorded; a thousand
//! slow-body connections and a `begin` flood from 250 addresses leave an honest TPM and an
//! honest SEV-SNP attestation under two seconds. Every loop is bounded in count and time;
//! the abusers run on one thread (`mooring_tests::abuse`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use mooring_attestation::snp::sim::TestSigner;
use mooring_client::api::BrokerApi;
use mooring_client::config::{Config, Evidence};
use mooring_client::service::Attester as _;
use mooring_client::tpm::attest::TpmAttester;
use mooring_tests::abuse::{self, Abuse, Background, Endpoint};
use mooring_tests::broker::{loopback, Broker};
use mooring_tests::client::{tpm_broker_setup, ClientVm, SNP_MEASUREMENT};
use mooring_tests::cvm::{snp_broker_setup, Cvm};
use serde_json::Value;

/// The honest TPM VM's and the honest confidential VM's addresses.
const TPM_VM: u8 = 2;
const SNP_VM: u8 = 3;
/// Networks the honest VMs attest from (the abusers use 127.1.x.1 and 127.0.2-3.x).
const HONEST: &[&str] = &["127.0.0.0/24"];
/// "Less than 1 MB".
const ONE_MB: u64 = 1_000_000;
/// The longest an honest attestation may take under abuse.
const HONEST_LIMIT: Duration = Duration::from_secs(2);
/// Longest audit reason: the broker's cap (512 characters) plus its "...".
const MAX_REASON: usize = 515;

/// A broker admitting one swtpm VM and one test-signer confidential VM, both from
/// 127.0.0.0/24, with default limits and a refusal summary each second.
struct World {
    broker: Broker,
    tpm_vm: ClientVm,
    cvm: Cvm,
    endpoint: Endpoint,
}

fn world(test: &str) -> Option<World> {
    // A thousand connections on each side: the broker inherits this limit. It does not
    // raise its own soft limit, and at 1,024 (the systemd default for services) it cannot
    // hold the slow bodies and the begin flood together: fewer than 1,000 bodies get under
    // way, and new connections (health, a booting VM) wait for a descriptor.
    let limit = abuse::raise_fd_limit(8192).unwrap();
    assert!(limit >= 4096, "open-file limit {limit}: raise the hard limit (ulimit -Hn) to run this test");
    let tpm_vm = ClientVm::start_or_skip(test, loopback(TPM_VM))?;
    let signer = TestSigner::generate();
    let snp = snp_broker_setup(&signer, String::new());
    let mut setup = tpm_broker_setup(&[&tpm_vm.tpm], HONEST);
    setup.policy.push_str(&format!(
        "\n[[class]]\nname = \"cvm\"\nevidence = \"snp\"\nttl_seconds = 600\naudiences = [\"payments\"]\n\
         networks = {HONEST:?}\n[class.snp]\nmeasurements = [\"{}\"]\n\
         min_tcb = {{ bootloader = 0, tee = 0, snp = 0, microcode = 0 }}\nallow_debug = false\nmax_vmpl = 0\n",
        hex::encode(SNP_MEASUREMENT)
    ));
    setup.extra_config = snp.extra_config;
    setup.secrets.extend(snp.secrets);
    let broker = Broker::start(&setup);
    tpm_vm.write_config(&broker);
    let ca = std::fs::read(broker.data_dir().join("tls/ca.pem")).unwrap();
    let endpoint = Endpoint::new(broker.address, &ca).unwrap();
    Some(World { broker, tpm_vm, cvm: Cvm::new(signer), endpoint })
}

impl World {
    /// One TPM attestation through the client library and the VM's swtpm, from a fresh
    /// connection: how long it took, and the credential serial.
    fn attest_tpm(&self) -> (Duration, String) {
        let config = Config::load(&self.tpm_vm.config_path()).unwrap();
        let Evidence::Tpm(tpm) = config.evidence.clone() else { panic!("a TPM configuration") };
        let started = Instant::now();
        let api = BrokerApi::new(&config.broker_url, &config.broker_ca, config.source_address).unwrap();
        let attested = TpmAttester::new(tpm, &config.state_dir)
            .attest(&api)
            .unwrap_or_else(|e| panic!("honest TPM attestation after {:?}: {e}", started.elapsed()));
        (started.elapsed(), attested.issued.x509_serial)
    }

    /// One SEV-SNP attestation (begin and finish, fresh connection).
    fn attest_snp(&self) -> (Duration, String) {
        let started = Instant::now();
        let issued = self.cvm.attest(&self.broker, SNP_VM);
        (started.elapsed(), issued.x509_serial)
    }

    /// The audit records after record `after`, every page.
    fn audit_after(&self, after: u64) -> Vec<Value> {
        let admin = self.broker.admin();
        let mut records = Vec::new();
        let mut last = after;
        for _ in 0..100 {
            let url = self.broker.url(&format!("admin/audit?after={last}&limit=1000"));
            let page: Vec<Value> = admin.get(url).send().unwrap().json().unwrap();
            let Some(seq) = page.last().and_then(|r| r["seq"].as_u64()) else { break };
            last = seq;
            records.extend(page);
        }
        records
    }

    /// The last record's number.
    fn audit_head(&self) -> u64 {
        self.audit_after(0).last().and_then(|r| r["seq"].as_u64()).unwrap_or(0)
    }
}

/// The total a `refusals_summarized` record counts ("N refusals of requests ...").
fn summarized(record: &Value) -> u64 {
    let reason = record["reason"].as_str().unwrap_or_default();
    reason
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("summary reason: {reason}"))
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

#[test]
fn malformed_flood_from_50_addresses_grows_the_data_directory_by_less_than_1_mb_and_every_honest_decision_is_recorded(
) {
    let Some(w) = world("abuse_malformed_flood") else { return };
    // Quiet: the first attestations create what every later one reuses.
    let (tpm_quiet, _) = w.attest_tpm();
    let (snp_quiet, _) = w.attest_snp();
    std::thread::sleep(Duration::from_millis(1500));
    let head = w.audit_head();
    let before = abuse::dir_size(&w.broker.data_dir()).unwrap();

    let started = Instant::now();
    let flood = Background::start(
        w.endpoint.clone(),
        Abuse::Malformed { sources: abuse::spread_sources(50), connections: 2, requests: Some(5000) },
    )
    .unwrap();
    // Honest VMs attest while the flood runs (at most 20 rounds, at most 60 s).
    let mut serials = Vec::new();
    let mut honest_ms = Vec::new();
    while !flood.finished() && serials.len() < 40 && started.elapsed() < Duration::from_secs(60) {
        let (tpm, serial) = w.attest_tpm();
        serials.push(serial);
        let (snp, serial) = w.attest_snp();
        serials.push(serial);
        honest_ms.push((ms(tpm), ms(snp)));
    }
    let flood = flood.wait(Duration::from_secs(60));
    let flood_seconds = started.elapsed().as_secs_f64();
    // The next summary (every second in tests) and the store's flush.
    std::thread::sleep(Duration::from_millis(2500));
    let after = abuse::dir_size(&w.broker.data_dir()).unwrap();
    let records = w.audit_after(head);

    let growth = after.allocated.saturating_sub(before.allocated);
    let growth_bytes = after.bytes.saturating_sub(before.bytes);
    eprintln!("{}", flood.summary());
    eprintln!(
        "quiet: TPM {} ms, SNP {} ms; under the flood (TPM ms, SNP ms): {honest_ms:?}",
        ms(tpm_quiet),
        ms(snp_quiet)
    );
    eprintln!(
        "data directory: {} -> {} bytes allocated (+{growth}), {} -> {} bytes in files (+{growth_bytes}) over {flood_seconds:.1} s; {} audit records",
        before.allocated,
        after.allocated,
        before.bytes,
        after.bytes,
        records.len()
    );

    // The flood was substantial and refused, never answered with a server error.
    assert!(flood.requests >= 4500, "{}", flood.summary());
    assert!(flood.answers.keys().all(|&status| (200..500).contains(&status)), "{}", flood.summary());
    assert!(!serials.is_empty(), "no honest attestation ran during the flood");

    // Less than 1 MB, on disk and in file lengths.
    assert!(growth < ONE_MB, "data directory grew by {growth} bytes on disk during the flood");
    assert!(growth_bytes < ONE_MB, "data directory files grew by {growth_bytes} bytes during the flood");

    // Every honest decision of the window has its record.
    let issued: BTreeSet<&str> = records
        .iter()
        .filter(|r| r["code"] == "issued" && r["outcome"] == "accepted")
        .filter_map(|r| r["serial"].as_str())
        .collect();
    for serial in &serials {
        assert!(issued.contains(serial.as_str()), "issued credential {serial} has no audit record");
    }

    // The flood is in bounded summary records, and in nothing else.
    let summaries: Vec<&Value> = records.iter().filter(|r| r["code"] == "refusals_summarized").collect();
    assert!(!summaries.is_empty(), "no refusals_summarized record after the flood");
    let counted: u64 = summaries.iter().map(|r| summarized(r)).sum();
    // Every answer but a rate limit is a counted refusal (a credential that is not ours is
    // answered 200 `valid: false`, and counted too).
    let refused = flood.answers_total() - flood.answered(429);
    eprintln!(
        "{} summary records counting {counted} refusals (flood: {refused} refusals answered, {} requests)",
        summaries.len(),
        flood.requests
    );
    assert!(counted >= refused, "summaries count {counted} refusals, the flood had {refused} answered");
    assert!(
        counted <= flood.requests,
        "summaries count {counted}, more than the flood's {} requests",
        flood.requests
    );
    for record in &records {
        let reason = record["reason"].as_str().unwrap_or_default();
        assert!(
            reason.chars().count() <= MAX_REASON,
            "record {} reason is {} chars",
            record["seq"],
            reason.len()
        );
        assert!(!reason.contains('\n'), "record {} reason holds a raw newline", record["seq"]);
    }
    let other: Vec<&Value> =
        records.iter().filter(|r| r["code"] != "issued" && r["code"] != "refusals_summarized").collect();
    assert!(other.is_empty(), "records neither honest nor summaries: {other:?}");
    assert!(
        summaries.len() as f64 <= flood_seconds + 5.0,
        "{} summaries in {flood_seconds:.1} s: more than one a second",
        summaries.len()
    );
    assert_eq!(w.broker.audit_verify()["valid"], true);
}

#[test]
fn slow_bodies_on_1000_connections_and_a_begin_flood_from_250_addresses_leave_honest_attestation_under_2_s() {
    let Some(w) = world("abuse_slow_bodies_begin_flood") else { return };
    let (tpm_quiet, _) = w.attest_tpm();
    let (snp_quiet, _) = w.attest_snp();

    let slow = Background::start(
        w.endpoint.clone(),
        Abuse::SlowBodies {
            sources: abuse::sources(2, 50),
            connections: 1000,
            byte_interval: Duration::from_millis(100),
        },
    )
    .unwrap();
    let flood =
        Background::start(w.endpoint.clone(), Abuse::BeginFlood { sources: abuse::sources(3, 250) }).unwrap();
    // Until the thousand connections are open (at most 15 s).
    let ramp = Instant::now();
    while slow.snapshot().peak_open < 1000 && ramp.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let ramp = ramp.elapsed();

    // Honest rounds for 8 s of abuse (at most 10): long enough for every slow connection
    // to be cut off and come back several times.
    let abused = Instant::now();
    let mut rounds = Vec::new();
    while rounds.len() < 10 && (rounds.len() < 3 || abused.elapsed() < Duration::from_secs(8)) {
        let (health_status, health) = abuse::health(&w.endpoint, loopback(4)).unwrap();
        assert_eq!(health_status, 200);
        let (tpm, _) = w.attest_tpm();
        let (snp, _) = w.attest_snp();
        let open = slow.snapshot();
        rounds.push((tpm, snp, health, open.peak_open));
    }
    let slow = slow.stop();
    let flood = flood.stop();
    eprintln!("{}", slow.summary());
    eprintln!("{}", flood.summary());
    eprintln!("ramp to 1000 open slow connections: {} ms", ms(ramp));
    eprintln!("quiet: TPM {} ms, SNP {} ms", ms(tpm_quiet), ms(snp_quiet));
    for (tpm, snp, health, _) in &rounds {
        eprintln!("under abuse: TPM {} ms, SNP {} ms, health {} ms", ms(*tpm), ms(*snp), ms(*health));
    }

    // The abuse happened: a thousand slow connections at once, cut off by the broker, and
    // a flood of begins answered.
    assert!(slow.peak_open >= 1000, "{}", slow.summary());
    assert!(slow.answered(408) > 0, "the broker cut off no slow body: {}", slow.summary());
    assert!(slow.held_ms_max < 12_000, "a slow body was held {} ms: {}", slow.held_ms_max, slow.summary());
    assert!(flood.requests >= 1000, "{}", flood.summary());
    assert!(flood.answered(200) > 0, "no begin answered: {}", flood.summary());

    for (tpm, snp, health, _) in rounds {
        assert!(tpm < HONEST_LIMIT, "honest TPM attestation took {} ms under abuse", ms(tpm));
        assert!(snp < HONEST_LIMIT, "honest SEV-SNP attestation took {} ms under abuse", ms(snp));
        assert!(health < Duration::from_secs(1), "/v1/health took {} ms under abuse", ms(health));
    }
}
