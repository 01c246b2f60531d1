//! Request limits: per-source rate limit, unknown routes, admin authentication.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::{assert_refused, loopback, Broker, BrokerSetup};
use mooring_attestation::protocol::BundleDocument;
use mooring_attestation::svid::TrustBundle;

fn broker(extra_config: &str) -> Broker {
    Broker::start(&BrokerSetup {
        policy: "version = 1\n".into(),
        ek_roots: Vec::new(),
        extra_config: extra_config.into(),
        secrets: Vec::new(),
    })
}

fn get(broker: &Broker, source: u8, path: &str) -> (u16, serde_json::Value) {
    let response = broker.client(loopback(source)).get(broker.url(path)).send().unwrap();
    (response.status().as_u16(), response.json().unwrap_or(serde_json::Value::Null))
}

#[test]
fn a_source_over_its_rate_is_refused_and_others_are_not() {
    let broker = broker("[limits]\nrequests_per_second = 1\nburst = 3\nmax_body_bytes = 262144\nmax_concurrent_requests = 8\nrequest_timeout_seconds = 10");
    for _ in 0..3 {
        assert_eq!(get(&broker, 1, "health").0, 200);
    }
    assert_refused(&get(&broker, 1, "health"), 429, "rate_limited");
    assert_eq!(get(&broker, 2, "health").0, 200, "another source has its own bucket");
}

#[test]
fn admin_routes_need_the_admin_certificate() {
    let broker = broker("");
    assert_refused(&get(&broker, 1, "admin/vms"), 401, "unauthorized");
    let response = broker.admin().get(broker.url("admin/vms")).send().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_refused(&get(&broker, 1, "no/such/route"), 404, "not_found");
    let (status, bundle) = get(&broker, 1, "bundle");
    assert_eq!(status, 200);
    // A SPIFFE bundle: the CA as an x509-svid key (x5c), the JWT key as a jwt-svid key.
    let document: BundleDocument = serde_json::from_value(bundle.clone()).unwrap();
    let parsed = TrustBundle::from_document("test.mooring", &document).unwrap();
    assert_eq!(parsed.x509_authorities().len(), 1);
    assert!(parsed.sequence().is_some_and(|s| s > 0), "{bundle}");
    assert_eq!(bundle["keys"][1]["use"], "jwt-svid");
    assert_eq!(bundle["keys"][1]["crv"], "P-256");
    // The signing CA carries the trust domain's SPIFFE ID.
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("ca.der");
    std::fs::write(&pem, parsed.x509_authorities()[0].der()).unwrap();
    let san = std::process::Command::new("openssl")
        .args(["x509", "-inform", "DER", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(&pem)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&san.stdout).contains("URI:spiffe://test.mooring"), "{san:?}");
    let text = broker.metrics();
    assert!(text.contains("mooring_credentials_issued_total 0"));
    assert!(text.contains(&format!("mooring_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"))));
    assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
    assert!(text.contains("\nprocess_open_fds "), "{text}");

    // A refused request is timed like an answered one.
    let response = broker.client(loopback(1)).post(broker.url("tpm/begin")).body("{").send().unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let text = broker.metrics();
    assert!(
        text.contains("mooring_request_duration_seconds_count{route=\"tpm_begin\",outcome=\"refused\"} 1"),
        "{text}"
    );
}

/// What `broker/openapi.json` calls invalid the server refuses (400 `malformed_request`):
/// a body that is not a JSON object (serde would read a struct from an array), anything
/// but `{}` at `snp/begin`, members no route knows (also inside a `mutual_tls` proof), and
/// query parameters out of their bounds or unknown.
#[test]
fn requests_are_refused_as_strictly_as_the_api_document_says() {
    let broker = broker("");
    let client = broker.client(loopback(1));
    let post = |path: &str, body: &str| {
        let response = client.post(broker.url(path)).body(body.to_owned()).send().unwrap();
        (response.status().as_u16(), response.json::<serde_json::Value>().unwrap_or_default())
    };
    assert_eq!(post("snp/begin", "{}").0, 200);
    assert_eq!(post("snp/begin", " \n{ }").0, 200);
    for body in ["", "[]", "[null,null]", "null", "{\"a\":1}", "{"] {
        assert_refused(&post("snp/begin", body), 400, "malformed_request");
    }
    // TpmBeginRequest read from an array, which serde would take.
    assert_refused(&post("tpm/begin", "[\"AAAA\",null,\"AAAA\",\"AAAA\"]"), 400, "malformed_request");
    let verify = |proof: &str| {
        format!("{{\"credential\":{{\"type\":\"jwt\",\"token\":\"a.b.c\"}},\"peer_address\":\"127.0.0.2\",\"proof\":{proof}}}")
    };
    assert_eq!(post("credentials/verify", &verify("{\"type\":\"mutual_tls\"}")).0, 200);
    assert_refused(
        &post("credentials/verify", &verify("{\"type\":\"mutual_tls\",\"x\":1}")),
        400,
        "malformed_request",
    );

    let get = |path: &str| {
        let response = broker.admin().get(broker.url(path)).send().unwrap();
        (response.status().as_u16(), response.json::<serde_json::Value>().unwrap_or_default())
    };
    assert!(get("admin/audit?after=0&limit=1000").1.is_array());
    assert!(get("admin/vms").1.is_array());
    for query in ["limit=0", "limit=1001", "after=-1", "after=18446744073709551616", "page=2"] {
        assert_refused(&get(&format!("admin/audit?{query}")), 400, "malformed_request");
    }
    assert_eq!(get(&format!("revocations?version={}&wait=0", "a".repeat(64))).0, 200);
    for query in [format!("version={}", "a".repeat(65)), "wait=-1".into(), "since=1".into()] {
        assert_refused(&get(&format!("revocations?{query}")), 400, "malformed_request");
    }
}

/// `begin` stores nothing: any number of begins leave the broker as it was, and a
/// challenge id opens only unaltered. Only finished challenges are remembered, bounded by
/// `challenge.max_used`; past it a finish is refused (`overloaded`), never accepted twice.
#[test]
fn begin_keeps_no_state_and_finished_challenges_are_bounded() {
    let broker = broker("[challenge]\nmax_used = 2\n[limits]\nrequests_per_second = 1000\nburst = 1000\nmax_body_bytes = 262144\nmax_concurrent_requests = 64\nrequest_timeout_seconds = 10");
    let client = broker.client(loopback(1));
    let begin = || {
        let response = client.post(broker.url("snp/begin")).json(&serde_json::json!({})).send().unwrap();
        let answer = (response.status().as_u16(), response.json::<serde_json::Value>().unwrap());
        assert_eq!(answer.0, 200, "{answer:?}");
        answer.1["challenge_id"].as_str().unwrap().to_owned()
    };
    // Far more begins than max_used: none is refused, none is remembered.
    let ids: Vec<String> = (0..200).map(|_| begin()).collect();
    let finish = |id: &str| {
        let finish = serde_json::json!({"challenge_id": id, "report": "AAAA", "key_spki": "AAAA", "sealing_key": "AAAA"});
        let response = client.post(broker.url("snp/finish")).json(&finish).send().unwrap();
        (response.status().as_u16(), response.json::<serde_json::Value>().unwrap())
    };
    // An altered id does not open.
    let mut altered = ids[0].clone().into_bytes();
    let at = altered.len() / 2;
    altered[at] = if altered[at] == b'A' { b'B' } else { b'A' };
    assert_refused(&finish(std::str::from_utf8(&altered).unwrap()), 404, "challenge_unknown");
    // A finish uses its challenge up before it looks at the evidence.
    assert_refused(&finish(&ids[0]), 403, "key_invalid");
    assert_refused(&finish(&ids[0]), 409, "challenge_used");
    assert_refused(&finish(&ids[1]), 403, "key_invalid");
    // Two finished challenges are remembered: the third is refused until they expire.
    let full = finish(&ids[2]);
    assert_refused(&full, 503, "overloaded");
    assert!(full.1["reason"].as_str().unwrap().contains("challenge.max_used"), "{}", full.1);
    assert_refused(&finish(&ids[0]), 409, "challenge_used");
}

/// With its own server certificate (`[tls]`) and no admin CA, the broker makes only the
/// admin certificate, and says so: every file its start-up message names exists.
#[test]
fn the_start_up_message_names_only_files_that_exist() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let openssl = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
        ])
        .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-keyout", "server.key", "-out", "server.pem"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(openssl.status.success(), "{}", String::from_utf8_lossy(&openssl.stderr));
    std::fs::write(dir.path().join("policy.toml"), "version = 1\n").unwrap();
    std::fs::write(
        dir.path().join("broker.toml"),
        "listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\ntrust_domain = \"test.mooring\"\npolicy = \"policy.toml\"\n\
         [tls]\ncertificate = \"server.pem\"\nprivate_key = \"server.key\"\n",
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mooring-broker"))
        .args(["serve", "--config"])
        .arg(dir.path().join("broker.toml"))
        .env("MOORING_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut named = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if line.starts_with("mooring-broker listening") {
            break;
        }
        named.extend(line.split([' ', ')', '(']).filter(|w| w.starts_with('/')).map(str::to_owned));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(named.iter().any(|p| p.ends_with("admin.pem")), "{named:?}");
    assert!(!named.iter().any(|p| p.ends_with("ca.pem") && !p.ends_with("admin-ca.pem")), "{named:?}");
    for path in &named {
        assert!(std::path::Path::new(path).exists(), "{path} is named but does not exist");
    }
}
