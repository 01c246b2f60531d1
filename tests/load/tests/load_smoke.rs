//! Smoke run of the boot-storm benchmark (`mooring-load`), so the tool cannot rot: a few
//! hundred attestations on each evidence path against the real broker, at low
//! concurrency, with zero errors and a report whose fields make sense. The benchmark
//! itself (thousands of VMs, minutes) is not part of the test suite.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::process::Command;

use serde_json::Value;

fn run(args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_mooring-load"))
        .args(args)
        .args(["--json", "--warmup", "0s", "--floor-ms", "20", "--concurrency", "4", "--sources", "3"])
        .arg("--broker")
        .arg(mooring_tests::workspace_binary("mooring-broker"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "mooring-load {args:?} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("report is not JSON ({e}):\n{stdout}"))
}

/// Throughput, latency order and broker usage of one phase.
fn assert_sane_phase(phase: &Value, attestations: u64) {
    assert_eq!(phase["attestations"], attestations, "{phase}");
    assert_eq!(phase["errors"], 0, "{phase}");
    assert!(phase["per_second"].as_f64().unwrap() > 0.0, "{phase}");
    let (p50, p95, p99) = (
        phase["p50_ms"].as_f64().unwrap(),
        phase["p95_ms"].as_f64().unwrap(),
        phase["p99_ms"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p95 && p95 <= p99, "{phase}");
    let broker = &phase["broker"];
    assert!(broker["cpu_us_per_attestation"].as_f64().unwrap() > 0.0, "{phase}");
    assert!(broker["peak_rss_mib"].as_f64().unwrap() >= broker["rss_mib"].as_f64().unwrap(), "{phase}");
}

fn assert_floor(report: &Value, components: usize) {
    let floor = &report["floor"];
    assert_eq!(floor["components"].as_array().unwrap().len(), components, "{floor}");
    assert!(
        floor["components"].as_array().unwrap().iter().all(|c| c["us"].as_f64().unwrap() > 0.0),
        "{floor}"
    );
    assert!(report["ratio"].as_f64().unwrap() > 0.0, "{report}");
}

#[test]
fn tpm_boot_storm_smoke_run_with_preload() {
    let report = run(&["--path", "tpm", "--vms", "20", "--count", "200", "--preload", "60"]);
    assert_eq!(report["path"], "tpm");
    assert_sane_phase(&report["measured"], 200);
    assert_sane_phase(&report["preload"]["fill"], 60);
    assert_sane_phase(&report["preload"]["after"], 200);
    assert_floor(&report, 7);
}

#[test]
fn snp_boot_storm_smoke_run() {
    let report = run(&["--path", "snp", "--vms", "20", "--snp-hosts", "2", "--count", "150"]);
    assert_eq!(report["path"], "snp");
    assert_sane_phase(&report["measured"], 150);
    assert_floor(&report, 3);
}

/// Two replicas on one PostgreSQL server started by the tool: the report has the
/// database's CPU beside the brokers'.
#[test]
fn tpm_boot_storm_smoke_run_on_two_replicas_reports_database_cpu() {
    if mooring_tests::postgres::server_bin_dir().is_none() {
        assert!(!mooring_tests::prereq::in_ci(), "CI is set: PostgreSQL server programs are missing");
        eprintln!("SKIPPED: PostgreSQL server programs (initdb) not found");
        return;
    }
    let report = run(&["--path", "tpm", "--vms", "20", "--count", "200", "--replicas", "2"]);
    assert_eq!(report["brokers"], 2);
    assert_sane_phase(&report["measured"], 200);
    let broker = &report["measured"]["broker"];
    assert!(broker["db_cpu_us_per_attestation"].as_f64().unwrap() > 0.0, "{broker}");
    // A single broker has no database to measure.
    let single = run(&["--path", "tpm", "--vms", "20", "--count", "50"]);
    assert!(single["measured"]["broker"]["db_cpu_us_per_attestation"].is_null(), "{single}");
}
