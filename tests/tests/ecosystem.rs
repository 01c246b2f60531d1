//! The broker checked by its ecosystem's own tools, on one live broker after a real
//! attestation (a confidential VM on the SEV-SNP path, test signer): py-spiffe (PyPI
//! `spiffe`) reads `GET /v1/bundle` and validates the VM's X.509-SVID and JWT-SVID
//! (`tests/ecosystem/spiffe_check.py`); generic OIDC relying parties (PyJWT's PyJWKClient,
//! jwcrypto) discover the broker's OIDC issuer on its own listener and validate the tokens
//! the VM exchanged its JWT-SVID for (`tests/ecosystem/oidc_check.py`); schemathesis checks
//! `broker/openapi.json` against the server, without and with the admin client certificate
//! (`tests/ecosystem/schemathesis.toml`); promtool checks `/metrics` after all that traffic.
//! Each tool is also shown to fail on a broken input, so a pass means something.
//!
//! The tools are what `scripts/ecosystem-tools.sh` installs (scripts/test.sh runs it) under
//! `$MOORING_ECOSYSTEM`, else `$CARGO_TARGET_DIR/ecosystem` or `target/ecosystem`: when they
//! are missing the test skips with that command, and fails in CI.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use mooring_attestation::protocol::{
    exchange_request, IssuedCredentials, EXCHANGE_AUDIENCE, JWT_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT,
};
use mooring_attestation::snp::sim::TestSigner;
use mooring_testdata::workspace_root;
use mooring_tests::broker::{loopback, Broker};
use mooring_tests::cvm::{snp_broker_setup, Cvm, MEASUREMENT};
use mooring_tests::prereq::in_ci;
use serde_json::Value;

const TRUST_DOMAIN: &str = "test.mooring";
const AUDIENCE: &str = "payments";
/// Downstream audiences the VM's class federates with: AWS STS's, a GCP workload identity
/// provider's, and one whose tokens live 10 s (to see them expire).
const AWS: &str = "sts.amazonaws.com";
const GCP: &str = "//iam.googleapis.com/projects/1234567890/locations/global/workloadIdentityPools/mooring/providers/mooring";
const SHORT: &str = "short-lived";

/// The installed tools.
struct Tools {
    python: PathBuf,
    schemathesis: PathBuf,
    promtool: PathBuf,
}

/// The tools of `scripts/ecosystem-tools.sh`, or `None` after saying why this test skips
/// (a failure in CI).
fn tools(test: &str) -> Option<Tools> {
    let dir = std::env::var_os("MOORING_ECOSYSTEM")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(|t| PathBuf::from(t).join("ecosystem")))
        .unwrap_or_else(|| workspace_root().join("target/ecosystem"));
    let tools = Tools {
        python: dir.join("venv/bin/python"),
        schemathesis: dir.join("venv/bin/schemathesis"),
        promtool: dir.join("promtool"),
    };
    let missing: Vec<String> = [&tools.python, &tools.schemathesis, &tools.promtool]
        .iter()
        .filter(|path| !path.is_file())
        .map(|path| path.display().to_string())
        .collect();
    if missing.is_empty() {
        return Some(tools);
    }
    let message =
        format!("{test}: missing {} (run scripts/ecosystem-tools.sh {})", missing.join(", "), dir.display());
    assert!(!in_ci(), "CI is set, so this is a failure, not a skip: {message}");
    eprintln!("SKIPPED {message}; set CI=true to make this a failure");
    None
}

fn ecosystem_dir() -> PathBuf {
    workspace_root().join("tests/ecosystem")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Runs `command` to completion; its output, and whether it succeeded.
fn run(command: &mut Command) -> (bool, String) {
    let output = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    (output.status.success(), text(&output))
}

fn policy(vm: &Cvm) -> String {
    format!(
        "version = 1\n\
         [[class]]\nname = \"cvm\"\nevidence = \"snp\"\nttl_seconds = 600\naudiences = [\"{AUDIENCE}\"]\n\
         networks = [\"127.0.0.2/32\"]\n\
         [class.snp]\nmeasurements = [\"{}\"]\n\
         min_tcb = {{ bootloader = 0, tee = 0, snp = {}, microcode = 0 }}\n\
         allow_debug = false\nmax_vmpl = 0\n\
         [[class.federation]]\naudience = \"{AWS}\"\nscopes = [\"s3:read\"]\n\
         [[class.federation]]\naudience = \"{GCP}\"\n\
         [[class.federation]]\naudience = \"{SHORT}\"\nttl_seconds = 10\n",
        hex::encode(MEASUREMENT),
        vm.signer.tcb().snp
    )
}

/// The OIDC issuer's own listener: `https://localhost:PORT` with a certificate of a CA of
/// this test (standing in for a public CA), which the relying parties are given.
struct IssuerTls {
    url: String,
    port: u16,
    ca: PathBuf,
    certificate: PathBuf,
    key: PathBuf,
}

impl IssuerTls {
    fn new(dir: &Path) -> Self {
        // A port that was free a moment ago: the issuer URL must name it before the broker
        // listens on it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name.push(rcgen::DnType::CommonName, "ecosystem test public CA");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        let tls = Self {
            url: format!("https://localhost:{port}"),
            port,
            ca: dir.join("issuer-ca.pem"),
            certificate: dir.join("issuer.pem"),
            key: dir.join("issuer.key"),
        };
        std::fs::write(&tls.ca, ca_cert.pem()).unwrap();
        std::fs::write(&tls.certificate, format!("{}{}", cert.pem(), ca_cert.pem())).unwrap();
        std::fs::write(&tls.key, key.serialize_pem()).unwrap();
        tls
    }

    fn config(&self) -> String {
        format!(
            "\n[federation]\nissuer = \"{}\"\nlisten = \"127.0.0.1:{}\"\ncertificate = {:?}\nprivate_key = {:?}\n",
            self.url,
            self.port,
            self.certificate.display().to_string(),
            self.key.display().to_string()
        )
    }
}

/// The broker of the VM's platform, with limits a tool's traffic from one address stays
/// under (the rate limit is tested elsewhere: here it would only turn checks into 429s),
/// and an OIDC issuer of its own.
fn broker(vm: &Cvm, issuer: &IssuerTls) -> Broker {
    let mut setup = snp_broker_setup(&vm.signer, policy(vm));
    setup.extra_config.push_str(
        "\n[limits]\nmax_body_bytes = 262144\nrequests_per_second = 100000\nburst = 100000\n\
         max_concurrent_requests = 1024\nrequest_timeout_seconds = 30\nbody_timeout_seconds = 10\n\
         min_body_bytes_per_second = 4096\nslot_wait_ms = 2000\n",
    );
    setup.extra_config.push_str(&issuer.config());
    let broker = Broker::start(&setup);
    assert_eq!(broker.issuer_address.map(|a| a.port()), Some(issuer.port), "the issuer's own listener");
    broker
}

/// py-spiffe validates the VM's SVIDs against the bundle; the same run with the bundle's
/// X.509 authorities taken out fails.
fn py_spiffe(tools: &Tools, broker: &Broker, vm: &Cvm, dir: &Path) {
    let issued = vm.attest(broker, 2);
    let bundle: Value = broker.client(loopback(1)).get(broker.url("bundle")).send().unwrap().json().unwrap();
    std::fs::write(dir.join("svid.pem"), &issued.x509_svid).unwrap();
    std::fs::write(dir.join("svid.key"), vm.key_pem()).unwrap();
    std::fs::write(dir.join("jwt-svid"), &issued.jwt_svid).unwrap();
    let check = |bundle: &Value| {
        std::fs::write(dir.join("bundle.json"), bundle.to_string()).unwrap();
        run(Command::new(&tools.python)
            .arg(ecosystem_dir().join("spiffe_check.py"))
            .arg(TRUST_DOMAIN)
            .args(["bundle.json", "svid.pem", "svid.key", "jwt-svid", AUDIENCE])
            .current_dir(dir)
            .env("PYTHONDONTWRITEBYTECODE", "1"))
    };
    let (ok, output) = check(&bundle);
    println!("{output}");
    assert!(ok, "py-spiffe refused the broker's bundle or SVIDs:\n{output}");
    assert!(output.contains("spiffe_check: ok"), "{output}");

    let mut without_cas = bundle.clone();
    without_cas["keys"].as_array_mut().unwrap().retain(|key| key["use"] != "x509-svid");
    let (ok, output) = check(&without_cas);
    assert!(!ok, "an X.509-SVID validated against a bundle without its CA:\n{output}");
}

/// The VM (bound to 127.0.0.2) exchanges its JWT-SVID for a token for `audience`.
fn exchange(
    broker: &Broker,
    vm: &Cvm,
    issued: &IssuedCredentials,
    audience: &str,
    scope: Option<&str>,
) -> String {
    let mut nonce = [0u8; 16];
    aws_lc_rs::rand::fill(&mut nonce).unwrap();
    let nonce = hex::encode(nonce);
    let (statement, signature) = vm.sign_statement(
        EXCHANGE_AUDIENCE,
        &exchange_request(audience, scope, &nonce),
        mooring_tests::cvm::now(),
    );
    let mut body = serde_json::json!({
        "grant_type": TOKEN_EXCHANGE_GRANT,
        "subject_token": issued.jwt_svid,
        "subject_token_type": JWT_TOKEN_TYPE,
        "audience": audience,
        "nonce": nonce,
        "statement": STANDARD.encode(statement),
        "signature": STANDARD.encode(signature),
    });
    if let Some(scope) = scope {
        body["scope"] = scope.into();
    }
    let (status, answer) = broker.post(&broker.client(loopback(2)), "credentials/exchange", &body);
    assert_eq!(status, 200, "{answer}");
    answer["access_token"].as_str().unwrap().to_owned()
}

/// `oidc_check.py MODE` for the relying party of `audience` with `tokens`.
fn oidc_check(tools: &Tools, issuer: &IssuerTls, mode: &str, case: &Value, dir: &Path) -> (bool, String) {
    std::fs::write(dir.join("oidc-case.json"), case.to_string()).unwrap();
    run(Command::new(&tools.python)
        .arg(ecosystem_dir().join("oidc_check.py"))
        .args([mode, &issuer.url])
        .arg(&issuer.ca)
        .arg("oidc-case.json")
        .current_dir(dir)
        .env("PYTHONDONTWRITEBYTECODE", "1"))
}

/// Generic OIDC relying parties discover the issuer and validate the VM's exchanged tokens
/// for AWS and for GCP, each refusing the other's; revoking the VM does not reach them
/// (they cannot ask), the broker's verify API refuses the token at once. Returns the
/// short-lived token and its expiry, for [`oidc_expired`].
fn oidc_relying_parties(
    tools: &Tools,
    broker: &Broker,
    vm: &Cvm,
    issuer: &IssuerTls,
    dir: &Path,
) -> (String, i64) {
    let issued = vm.attest(broker, 2);
    let aws = exchange(broker, vm, &issued, AWS, None);
    let aws_scoped = exchange(broker, vm, &issued, AWS, Some("s3:read"));
    let gcp = exchange(broker, vm, &issued, GCP, None);
    let short = exchange(broker, vm, &issued, SHORT, None);
    let spiffe_jwks: Value =
        broker.client(loopback(1)).get(broker.url("bundle/jwks")).send().unwrap().json().unwrap();
    let case = |audience: &str, tokens: &[&str], other: &str| {
        serde_json::json!({
            "audience": audience, "subject": issued.spiffe_id, "tokens": tokens, "other_audience": other,
            "jwt_svid": issued.jwt_svid, "spiffe_jwks": spiffe_jwks,
        })
    };
    for (audience, tokens, other) in
        [(AWS, vec![aws.as_str(), &aws_scoped], &gcp), (GCP, vec![gcp.as_str()], &aws)]
    {
        let (ok, output) = oidc_check(tools, issuer, "valid", &case(audience, &tokens, other), dir);
        println!("{output}");
        assert!(
            ok && output.contains("oidc_check: ok"),
            "the relying party of {audience} refused:\n{output}"
        );
    }
    // A token that is not yet expired fails the expiry check: `expired` means something.
    let (ok, output) = oidc_check(tools, issuer, "expired", &case(AWS, &[&aws], &gcp), dir);
    assert!(!ok && output.contains("accepted: an expired token"), "{output}");

    // Revoking the VM: the broker's verify API refuses what it exchanged at once; a relying
    // party that only checks signatures cannot know until the token expires.
    let verify = || -> Value {
        let body = serde_json::json!({
            "credential": {"type": "exchanged", "token": aws}, "peer_address": loopback(9), "audience": AWS,
        });
        broker.post(&broker.client(loopback(1)), "credentials/verify", &body).1
    };
    assert_eq!(verify()["valid"], true);
    broker.admin_post(
        "admin/revocations",
        &serde_json::json!({"target": {"kind": "vm", "id": issued.spiffe_id}, "reason": "ecosystem test"}),
    );
    assert_eq!(verify()["code"], "revoked");
    let (ok, output) = oidc_check(tools, issuer, "valid", &case(AWS, &[&aws], &gcp), dir);
    assert!(ok, "{output}");
    println!("oidc_check: after the VM's revocation a plain relying party still accepts its token (until exp); the broker refuses it");
    let expires_at = serde_json::from_slice::<Value>(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(short.split('.').nth(1).unwrap()).unwrap(),
    )
    .unwrap()["exp"]
        .as_i64()
        .unwrap();
    (short, expires_at)
}

/// Once `token` (for [`SHORT`]) has expired, the relying party refuses it for that alone.
fn oidc_expired(tools: &Tools, issuer: &IssuerTls, (token, expires_at): (String, i64), dir: &Path) {
    let wait = expires_at + 1 - mooring_tests::cvm::now();
    if wait > 0 {
        std::thread::sleep(std::time::Duration::from_secs(wait.unsigned_abs()));
    }
    let case = serde_json::json!({"audience": SHORT, "tokens": [token]});
    let (ok, output) = oidc_check(tools, issuer, "expired", &case, dir);
    println!("{output}");
    assert!(ok && output.contains("oidc_check: ok"), "an expired token:\n{output}");
}

/// schemathesis with `document` against the broker, with `args`; `admin` presents the admin
/// certificate.
fn schemathesis(
    tools: &Tools,
    broker: &Broker,
    document: &Path,
    (admin, args): (bool, &[&str]),
    work: &Path,
) -> (bool, String) {
    let tls = broker.data_dir().join("tls");
    let mut command = Command::new(&tools.schemathesis);
    command
        .arg("--config-file")
        .arg(ecosystem_dir().join("schemathesis.toml"))
        .arg("run")
        .arg(document)
        .args(["--url", &format!("https://localhost:{}", broker.address.port())])
        .arg("--tls-verify")
        .arg(tls.join("ca.pem"))
        .args(["--checks", "all", "--seed", "1", "--max-examples", "100"])
        .args(["--no-color", "--workers", "1"])
        // Its example database and crash cache go to a directory of this run, not the tree.
        .current_dir(work)
        .env("SCHEMATHESIS_HOOKS", ecosystem_dir().join("schemathesis_hooks.py"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .args(args);
    if admin {
        command.arg("--request-cert").arg(tls.join("admin.pem"));
        command.arg("--request-cert-key").arg(tls.join("admin.key"));
    }
    run(&mut command)
}

/// The summary lines of a schemathesis run.
fn summary(output: &str) -> String {
    output.lines().skip_while(|line| !line.contains("SUMMARY")).collect::<Vec<_>>().join("\n")
}

/// promtool on `metrics`: whether it passes, and what it said.
fn promtool(tools: &Tools, metrics: &str) -> (bool, String) {
    use std::io::Write as _;
    let mut child = Command::new(&tools.promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(metrics.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    (output.status.success(), text(&output))
}

#[test]
fn the_ecosystems_own_tools_accept_a_live_broker() {
    let Some(tools) = tools("the_ecosystems_own_tools_accept_a_live_broker") else { return };
    let vm = Cvm::new(TestSigner::generate());
    let dir = tempfile::tempdir().unwrap();
    let issuer = IssuerTls::new(dir.path());
    let broker = broker(&vm, &issuer);

    py_spiffe(&tools, &broker, &vm, dir.path());
    let short_lived = oidc_relying_parties(&tools, &broker, &vm, &issuer, dir.path());

    let document = workspace_root().join("broker/openapi.json");
    for admin in [false, true] {
        let (ok, output) = schemathesis(&tools, &broker, &document, (admin, &[]), dir.path());
        println!("schemathesis (admin certificate: {admin}):\n{}", summary(&output));
        assert!(
            ok,
            "schemathesis (admin certificate: {admin}) found the document and the server apart:\n{output}"
        );
    }
    // A document that promises what the server does not do fails the run.
    let mut wrong: Value = serde_json::from_slice(&std::fs::read(&document).unwrap()).unwrap();
    wrong["paths"]["/v1/health"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] =
        serde_json::json!({"type": "object", "required": ["uptime"]});
    let wrong_path = dir.path().join("openapi-wrong.json");
    std::fs::write(&wrong_path, wrong.to_string()).unwrap();
    let (ok, output) =
        schemathesis(&tools, &broker, &wrong_path, (false, &["--include-path", "/v1/health"]), dir.path());
    assert!(!ok, "schemathesis passed a document the server does not keep:\n{output}");

    // schemathesis took its time: the short-lived token has expired (or is about to).
    oidc_expired(&tools, &issuer, short_lived, dir.path());

    // After all of that traffic (refusals of every kind, both SVIDs issued).
    let url = format!("https://localhost:{}/metrics", broker.address.port());
    let metrics = broker.client(loopback(1)).get(url).send().unwrap().text().unwrap();
    let (ok, output) = promtool(&tools, &metrics);
    println!("promtool check metrics: {} lines, no complaint", metrics.lines().count());
    assert!(ok && output.trim().is_empty(), "promtool check metrics:\n{output}");
    let broken = metrics.replace("# TYPE mooring_build_info gauge\n", "# TYPE mooring_build_info counter\n");
    let (ok, output) = promtool(&tools, &broken);
    assert!(!ok, "promtool passed a counter without _total:\n{output}");
}
