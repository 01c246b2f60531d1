//! The JSON bodies of every broker route (all their types live in `protocol`), both directions
//! (requests the broker parses, answers the client and relying services parse), then what
//! their readers do with the fields in the library: TPM structures, PCR maps, SEV-SNP
//! report and certificate table, keys, certificates, credentials, bundles.
//!
//! First byte: which type; the rest: the JSON body.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use mooring_attestation::protocol::{
    check_audience, check_nonce, exchange_request, parse_scope, AuditVerification, AzureChallenge,
    AzureFinishRequest, BundleDocument, DryRunReport, DryRunRequest, ErrorBody, ExchangeRequest, ExchangeResponse,
    IdentityChange, IssuedCredentials, JwkSet, OidcDiscovery, Possession, PresentedCredential, RecordedEvidence,
    RetireRequest, RetireResponse, RevocationList, RevocationRequest, Sealed, SnpChallenge, SnpFinishRequest,
    TpmBeginRequest, TpmChallenge, TpmFinishRequest, VerifyRequest, VerifyResponse, EXCHANGE_AUDIENCE,
    RETIRE_AUDIENCE,
};
use mooring_attestation::snp::azure::HclReport;
use mooring_attestation::snp::{CertTable, Report};
use mooring_attestation::svid::{CheckedCredential, ExchangedToken, PossessionProof, Presented, TrustBundle};
use mooring_attestation::tpm::attest::{Attest, Signature};
use mooring_attestation::tpm::ekcert::verify_ek_certificate;
use mooring_attestation::tpm::eventlog::EventLog;
use mooring_attestation::tpm::pcr::PcrValues;
use mooring_attestation::tpm::public::Public;
use mooring_attestation::x509::bundle::parse_certificates;
use mooring_attestation::x509::{spki_public_key, TrustStore};
use serde::de::DeserializeOwned;
use serde::Serialize;

const NOW: i64 = 1_800_000_000;

/// An empty trust bundle of a fixed domain: credentials are parsed, then refused.
fn bundle() -> &'static TrustBundle {
    static BUNDLE: OnceLock<TrustBundle> = OnceLock::new();
    BUNDLE.get_or_init(|| {
        TrustBundle::from_authorities("test.mooring", Vec::new(), &JwkSet::default()).expect("empty bundle")
    })
}

/// Parses `body` as `T`; a value that parses serializes to JSON that parses to the same.
fn parse<T: DeserializeOwned + Serialize>(body: &[u8]) -> Option<T> {
    let value: T = serde_json::from_slice(body).ok()?;
    let json = serde_json::to_string(&value).expect("a parsed body serializes");
    let again: T = serde_json::from_str(&json).expect("a serialized body parses");
    assert_eq!(json, serde_json::to_string(&again).expect("serializes"), "JSON round trip");
    Some(value)
}

fn tpm_public(bytes: &[u8]) {
    if let Ok(public) = Public::from_tpm2b(bytes) {
        let _ = public.name();
        let _ = public.key().to_spki_der();
    }
}

fn credential(presented: &PresentedCredential) {
    match presented {
        PresentedCredential::Jwt { token } => {
            let _ = CheckedCredential::check(Presented::Jwt(token), bundle(), NOW);
        }
        PresentedCredential::X509 { chain } => {
            if let Some(leaf) = parse_certificates(chain.as_bytes()).ok().and_then(|c| c.into_iter().next()) {
                let _ = CheckedCredential::check(Presented::X509(leaf.der()), bundle(), NOW);
            }
        }
        PresentedCredential::Exchanged { token } => {
            let _ = ExchangedToken::check(token, bundle(), "https://issuer.test.mooring", "aud", NOW);
        }
    }
}

/// `POST /v1/credentials/exchange`: what the broker reads before the JWT-SVID's signature.
fn exchange(request: &ExchangeRequest) {
    let _ = check_audience(&request.audience);
    let _ = check_nonce(&request.nonce);
    if let Some(scope) = &request.scope {
        let _ = parse_scope(scope);
    }
    let _ = CheckedCredential::check(Presented::Jwt(&request.subject_token), bundle(), NOW);
    let proof = PossessionProof::new(request.statement.clone(), request.signature.clone());
    let digest = exchange_request(&request.audience, request.scope.as_deref(), &request.nonce);
    let _ = proof.check_statement(EXCHANGE_AUDIENCE, &digest, NOW);
}

fn tpm_begin(request: &TpmBeginRequest) {
    tpm_public(&request.ek_public);
    tpm_public(&request.ak_public);
    tpm_public(&request.key_public);
    if let Some(cert) = &request.ek_certificate {
        let now = UNIX_EPOCH + Duration::from_secs(NOW.unsigned_abs());
        let _ = verify_ek_certificate(cert, &[], &TrustStore::new([]), now);
    }
}

fn tpm_finish(request: &TpmFinishRequest) {
    quoted(
        &request.pcrs,
        [&request.quote, &request.certify],
        [&request.quote_signature, &request.certify_signature],
        request.event_log.as_deref(),
    );
}

/// A quote and a certification, their signatures, PCR values and event log.
fn quoted(
    pcrs: &BTreeMap<String, BTreeMap<String, String>>,
    attested: [&[u8]; 2],
    signatures: [&[u8]; 2],
    log: Option<&[u8]>,
) {
    let _ = PcrValues::from_map(pcrs);
    for attest in attested {
        let _ = Attest::parse(attest);
    }
    for signature in signatures {
        let _ = Signature::parse(signature);
    }
    if let Some(log) = log {
        let _ = EventLog::parse(log);
    }
}

fn azure_finish(request: &AzureFinishRequest) {
    let _ = HclReport::parse(&request.hcl_report);
    if let Some(chain) = &request.vcek_chain {
        let _ = parse_certificates(chain.as_bytes());
    }
    tpm_public(&request.ak_public);
    tpm_public(&request.key_public);
    quoted(
        &request.pcrs,
        [&request.quote, &request.certify],
        [&request.quote_signature, &request.certify_signature],
        request.event_log.as_deref(),
    );
}

fn snp_finish(request: &SnpFinishRequest) {
    let _ = spki_public_key(&request.key_spki);
    let _ = Report::parse(&request.report);
    if let Some(table) = &request.certificate_table {
        let _ = CertTable::parse(table);
    }
}

fn verify(request: &VerifyRequest) {
    credential(&request.credential);
    if let Some(Possession::Signature { statement, signature }) = &request.proof {
        let proof = PossessionProof::new(statement.clone(), signature.clone());
        let _ = proof.check_statement(request.audience.as_deref().unwrap_or_default(), "", NOW);
        let _ = PossessionProof::from_header(&proof.to_header());
    }
}

fn issued(credentials: &IssuedCredentials) {
    let _ = parse_certificates(credentials.x509_svid.as_bytes());
    let _ = parse_certificates(credentials.x509_bundle.as_bytes());
    let _ = CheckedCredential::check(Presented::Jwt(&credentials.jwt_svid), bundle(), NOW);
    for secret in &credentials.secrets {
        if let Sealed::TpmImport { public, .. } = &secret.sealed {
            tpm_public(public);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    match selector % 24 {
        // Requests the broker reads (`POST /v1/snp/begin` takes `{}` only: SnpBeginRequest).
        0 => parse::<TpmBeginRequest>(body).iter().for_each(tpm_begin),
        1 => parse::<TpmFinishRequest>(body).iter().for_each(tpm_finish),
        2 => parse::<SnpFinishRequest>(body).iter().for_each(snp_finish),
        3 => parse::<VerifyRequest>(body).iter().for_each(verify),
        // Answers the client and relying services read.
        4 => drop(parse::<TpmChallenge>(body)),
        5 => drop(parse::<SnpChallenge>(body)),
        6 => parse::<IssuedCredentials>(body).iter().for_each(issued),
        7 => drop(parse::<VerifyResponse>(body)),
        8 => drop(parse::<ErrorBody>(body)),
        9 => {
            if let Ok(document) = serde_json::from_slice::<BundleDocument>(body) {
                let _ = TrustBundle::from_document("test.mooring", &document);
            }
        }
        10 => {
            if let Ok(list) = serde_json::from_slice::<RevocationList>(body) {
                let _ = list.find("0a1b", "spiffe://test.mooring/vm/web/ab");
            }
        }
        // `POST /v1/credentials/retire` and its answer.
        11 => parse::<RetireRequest>(body).iter().for_each(|r| {
            let _ = CheckedCredential::check(Presented::Jwt(&r.jwt_svid), bundle(), NOW);
            let proof = PossessionProof::new(r.statement.clone(), r.signature.clone());
            let _ = proof.check_statement(RETIRE_AUDIENCE, "0a", NOW);
        }),
        12 => drop(parse::<RetireResponse>(body)),
        // The administrators' bodies.
        13 => drop(parse::<IdentityChange>(body)),
        14 => drop(parse::<RevocationRequest>(body)),
        15 => drop(parse::<DryRunRequest>(body)),
        16 => drop(parse::<DryRunReport>(body)),
        // The Azure confidential VM exchange, and evidence recorded for dry runs.
        17 => parse::<AzureFinishRequest>(body).iter().for_each(azure_finish),
        18 => drop(parse::<AzureChallenge>(body)),
        19 => drop(parse::<RecordedEvidence>(body)),
        // Federation: `POST /v1/credentials/exchange` and its answer, the OIDC discovery
        // document a relying party reads.
        20 => parse::<ExchangeRequest>(body).iter().for_each(exchange),
        21 => drop(parse::<ExchangeResponse>(body)),
        22 => drop(parse::<OidcDiscovery>(body)),
        _ => drop(parse::<AuditVerification>(body)),
    }
});
