//! The crypto floor: the least work one attestation needs, measured in this process on
//! one thread (CPU time, not wall time) with the inputs a broker sees. The broker's CPU
//! per attestation divided by this is the headline: it says how much of the broker's
//! time is overhead, and holds on a shared, noisy machine where absolute times do not.

use std::collections::BTreeMap;
use std::time::SystemTime;

use anyhow::Context as _;
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING};
use mooring_attestation::protocol::{
    snp_report_data, tpm_qualifying_data, SnpChallenge, TpmBeginRequest, TpmChallenge,
};
use mooring_attestation::snp::{SnpCertSource, SnpVerifier};
use mooring_attestation::tpm::attest::{Ak, Signature};
use mooring_attestation::tpm::certify::{verify_certify, NON_EXPORTABLE_SIGNING_KEY};
use mooring_attestation::tpm::credential::make_credential;
use mooring_attestation::tpm::ekcert::verify_ek_certificate;
use mooring_attestation::tpm::eventlog::EventLog;
use mooring_attestation::tpm::pcr::PcrValues;
use mooring_attestation::tpm::public::Public;
use mooring_attestation::tpm::quote::{verify_quote, QuoteExpectation};
use mooring_attestation::x509::{spki_public_key, TrustStore};
use serde::Serialize;

use super::boot_log::{BootImage, BANK};
use super::fleet::Fleet;
use super::options::Path as EvidencePath;
use super::procfs::thread_cpu_ns;
use super::snp_vm::{SnpHost, SnpVm};
use super::tpm_vm::TpmVm;

/// Sizes of what the broker signs per attestation: an X.509-SVID's TBSCertificate and a
/// JWT-SVID's signing input (measured from issued credentials, rounded up).
const X509_TBS_BYTES: usize = 640;
const JWT_INPUT_BYTES: usize = 480;

/// One operation's cost.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Component {
    pub(crate) name: &'static str,
    /// Mean CPU microseconds per call.
    pub(crate) us: f64,
}

/// The floor of one evidence path.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Floor {
    pub(crate) components: Vec<Component>,
    pub(crate) total_us: f64,
}

/// CPU microseconds per call of `op`, run in batches on this thread until it has used at
/// least `budget_ms` of CPU time. The thread's CPU clock (`schedstat`) advances at
/// scheduler ticks, so a long run keeps its granularity below a percent or two.
fn measure(
    name: &'static str,
    budget_ms: u32,
    mut op: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Component> {
    op().with_context(|| format!("crypto floor: {name}"))?; // warm: caches, lazy statics
    let budget_ns = u64::from(budget_ms.max(1)) * 1_000_000;
    let before = thread_cpu_ns()?;
    let mut calls = 0u64;
    loop {
        for _ in 0..BATCH {
            op().with_context(|| format!("crypto floor: {name}"))?;
        }
        calls += BATCH;
        let spent = thread_cpu_ns()?.saturating_sub(before);
        if spent >= budget_ns {
            return Ok(Component { name, us: spent as f64 / 1000.0 / calls as f64 });
        }
    }
}

/// Calls between two reads of the CPU clock.
const BATCH: u64 = 16;

/// Measures the floor of `path` for `fleet`'s kind of VM.
pub(crate) fn measure_floor(path: EvidencePath, fleet: &Fleet, budget_ms: u32) -> anyhow::Result<Floor> {
    let mut components = match path {
        EvidencePath::Tpm => tpm_components(fleet, budget_ms)?,
        EvidencePath::Snp => snp_components(fleet, budget_ms)?,
    };
    components.push(signing(budget_ms)?);
    let total_us = components.iter().map(|c| c.us).sum();
    Ok(Floor { components, total_us })
}

fn tpm_components(fleet: &Fleet, budget_ms: u32) -> anyhow::Result<Vec<Component>> {
    let rng = SystemRandom::new();
    let vm = TpmVm::new(&fleet.ca)?;
    let begin: TpmBeginRequest = serde_json::from_slice(vm.begin_body())?;
    let ek_cert = begin.ek_certificate.clone().context("begin without EK certificate")?;
    let store = TrustStore::builder().anchors([fleet.ca.certificate().clone()]).build();
    let parse = || -> anyhow::Result<(Public, Public, Public)> {
        Ok((
            Public::from_tpm2b(&begin.ek_public)?,
            Public::from_tpm2b(&begin.ak_public)?,
            Public::from_tpm2b(&begin.key_public)?,
        ))
    };
    let (ek, ak, key) = parse()?;
    let ak_name = ak.name();

    // The broker's challenge and the VM's answer, as inputs to the checks.
    let mut secret = [0u8; 32];
    rng.fill(&mut secret).map_err(|_| anyhow::anyhow!("no randomness"))?;
    let made = make_credential(&ek, &ak_name, &secret, &rng)?;
    let indices = fleet.boot.indices().to_vec();
    let challenge = TpmChallenge {
        challenge_id: "floor".into(),
        nonce: vec![7; 32],
        credential_blob: made.id_object().to_vec(),
        encrypted_secret: made.encrypted_secret().to_vec(),
        pcr_selection: BTreeMap::from([(BANK.name().to_owned(), indices.clone())]),
        expires_at: 0,
    };
    let finish = vm.finish(&challenge, &fleet.boot)?;
    let selection = fleet.boot.quoted(&challenge.pcr_selection)?.selection;
    let pcrs = PcrValues::from_map(&finish.pcrs)?;
    let qualifying = tpm_qualifying_data(&challenge.nonce, &begin.key_public);
    let log = finish.event_log.clone().context("finish without event log")?;
    let quoted = quoted_values(&fleet.boot, &indices)?;

    Ok(vec![
        measure("parse EK, AK, K public areas", budget_ms, || parse().map(drop))?,
        measure("EK certificate chain (cached path)", budget_ms, || {
            let verified = verify_ek_certificate(&ek_cert, &[], &store, SystemTime::now())?;
            verified.matches_public_key(ek.key())?;
            Ok(())
        })?,
        measure("MakeCredential (ECC P-256 EK)", budget_ms, || {
            make_credential(&ek, &ak_name, &secret, &rng).map(drop).map_err(Into::into)
        })?,
        measure("quote: signature, nonce, PCR digest", budget_ms, || {
            let signature = Signature::parse(&finish.quote_signature)?;
            let expected = QuoteExpectation { qualifying_data: &qualifying, selection: &selection };
            verify_quote(Ak::Tpm(&ak), &finish.quote, &signature, &pcrs, &expected)?;
            Ok(())
        })?,
        measure("certify of K: signature, name", budget_ms, || {
            let signature = Signature::parse(&finish.certify_signature)?;
            verify_certify(
                Ak::Tpm(&ak),
                &key,
                &finish.certify,
                &signature,
                None,
                NON_EXPORTABLE_SIGNING_KEY,
            )?;
            Ok(())
        })?,
        measure("event log: parse, replay against the quote", budget_ms, || {
            EventLog::parse(&log)?.check_against(&quoted, BANK, &indices)?;
            Ok(())
        })?,
    ])
}

fn quoted_values(boot: &BootImage, indices: &[u8]) -> anyhow::Result<PcrValues> {
    let mut values = PcrValues::new();
    for &index in indices {
        values.insert(BANK, index, boot.value(index).context("PCR not in the log")?.to_vec())?;
    }
    Ok(values)
}

fn snp_components(fleet: &Fleet, budget_ms: u32) -> anyhow::Result<Vec<Component>> {
    let generated;
    let host = match fleet.hosts.first() {
        Some(host) => host,
        None => {
            generated = SnpHost::generate(0);
            &generated
        }
    };
    let signer = host.signer();
    let verifier = SnpVerifier::builder()
        .trust_test_root(signer.product(), signer.ark_der(), signer.ask_der(), Some(signer.asvk_der()))
        .build()?;
    let vm = SnpVm::new(0)?;
    let challenge = SnpChallenge { challenge_id: "floor".into(), nonce: vec![9; 32], expires_at: 0 };
    let finish = vm.finish(host, &challenge);
    let table = finish.certificate_table.clone().context("finish without certificate table")?;
    let now = i64::try_from(
        SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default(),
    )?;
    Ok(vec![
        measure("report signature, VCEK chain cached", budget_ms, || {
            verifier.verify(&finish.report, SnpCertSource::CertTable(&table), now)?;
            Ok(())
        })?,
        measure("K and REPORT_DATA binding", budget_ms, || {
            spki_public_key(&finish.key_spki)?;
            let expected = snp_report_data(&challenge.nonce, &finish.key_spki, &finish.sealing_key);
            anyhow::ensure!(expected.len() == 64);
            Ok(())
        })?,
    ])
}

/// One ECDSA P-256 signature for the X.509-SVID and one ES256 signature for the JWT-SVID.
fn signing(budget_ms: u32) -> anyhow::Result<Component> {
    let rng = SystemRandom::new();
    let key = |alg| -> anyhow::Result<EcdsaKeyPair> {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).map_err(|_| anyhow::anyhow!("keygen"))?;
        EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).map_err(|e| anyhow::anyhow!("key: {e}"))
    };
    let x509 = key(&ECDSA_P256_SHA256_ASN1_SIGNING)?;
    let jwt = key(&ECDSA_P256_SHA256_FIXED_SIGNING)?;
    let tbs = vec![0x30u8; X509_TBS_BYTES];
    let input = vec![b'e'; JWT_INPUT_BYTES];
    measure("credential signing: X.509-SVID + JWT-SVID", budget_ms, || {
        x509.sign(&rng, &tbs).map_err(|_| anyhow::anyhow!("sign"))?;
        jwt.sign(&rng, &input).map_err(|_| anyhow::anyhow!("sign"))?;
        Ok(())
    })
}
