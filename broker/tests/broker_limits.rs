//! Request limits: per-source rate limit, unknown routes, admin authentication.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::{assert_refused, loopback, Broker, BrokerSetup};

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
    assert!(bundle["x509_authorities"].as_str().unwrap().contains("BEGIN CERTIFICATE"));
    assert_eq!(bundle["jwt_authorities"]["keys"][0]["crv"], "P-256");
    let metrics = broker
        .client(loopback(1))
        .get(format!("https://localhost:{}/metrics", broker.address.port()))
        .send()
        .unwrap();
    assert!(metrics.text().unwrap().contains("mooring_credentials_issued_total 0"));
}

#[test]
fn begin_beyond_the_open_challenge_bound_is_refused_until_one_is_used() {
    let broker = broker("[challenge]\nmax_open = 2");
    let client = broker.client(loopback(1));
    let begin = || {
        let response = client.post(broker.url("snp/begin")).json(&serde_json::json!({})).send().unwrap();
        (response.status().as_u16(), response.json::<serde_json::Value>().unwrap())
    };
    let (first, second) = (begin(), begin());
    assert_eq!((first.0, second.0), (200, 200), "{first:?} {second:?}");
    let full = begin();
    assert_refused(&full, 429, "rate_limited");
    assert!(full.1["reason"].as_str().unwrap().contains("challenge.max_open"), "{}", full.1);
    assert!(
        !broker.audit().iter().any(|r| r["code"] == "rate_limited"),
        "shedding load writes no audit record"
    );

    // A finish consumes its challenge before it looks at the evidence, so even a refused
    // one frees a slot.
    let finish = serde_json::json!({
        "challenge_id": first.1["challenge_id"],
        "report": "AAAA",
        "key_spki": "AAAA",
        "sealing_key": "AAAA",
    });
    let response = client.post(broker.url("snp/finish")).json(&finish).send().unwrap();
    let refused = (response.status().as_u16(), response.json::<serde_json::Value>().unwrap());
    assert_refused(&refused, 403, "key_invalid");
    assert_eq!(begin().0, 200, "the consumed challenge freed its slot");
    assert_refused(&begin(), 429, "rate_limited");
}

#[test]
fn one_source_cannot_hold_more_open_challenges_than_its_share() {
    let broker = broker("[challenge]\nmax_open_per_source = 1");
    let begin = |source: u8| {
        let response = broker
            .client(loopback(source))
            .post(broker.url("snp/begin"))
            .json(&serde_json::json!({}))
            .send()
            .unwrap();
        (response.status().as_u16(), response.json::<serde_json::Value>().unwrap())
    };
    assert_eq!(begin(1).0, 200);
    let refused = begin(1);
    assert_refused(&refused, 429, "rate_limited");
    assert!(refused.1["reason"].as_str().unwrap().contains("max_open_per_source"), "{}", refused.1);
    assert_eq!(begin(2).0, 200, "another source has its own share");
}
