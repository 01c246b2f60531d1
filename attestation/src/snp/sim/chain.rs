//! The test chain's certificates, written as DER by hand: RSA-2048 CAs signing with
//! RSA-PSS/SHA-384 (the AlgorithmIdentifier AMD uses), ECDSA P-384 leaves carrying the
//! AMD extensions (VCEK Certificate and KDS Interface Specification).

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, RsaKeyPair, RSA_PSS_SHA384};

use super::{LeafSpec, DEFAULT_NOT_AFTER, DEFAULT_NOT_BEFORE};
use crate::crypto::PublicKey;
use crate::der::{bit_string, oid, sequence, tlv, unsigned_integer};
use crate::snp::report::P384_SCALAR_LEN;
use crate::snp::Product;
use crate::tpm::alg::EccCurve;

/// AlgorithmIdentifier for RSASSA-PSS with SHA-384, MGF1-SHA-384, salt 48, trailer 1,
/// encoded as AMD's certificates encode it (RFC 4055 §3.1).
const RSA_PSS_SHA384_ALG: &[u8] = &[
    0x30, 0x46, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, 0x30, 0x39, 0xa0, 0x0f,
    0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0xa1, 0x1c,
    0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08, 0x30, 0x0d, 0x06, 0x09,
    0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0xa2, 0x03, 0x02, 0x01, 0x30, 0xa3,
    0x03, 0x02, 0x01, 0x01,
];

/// Encoded OIDs (X.690 §8.19) used in the certificates.
mod oids {
    pub(super) const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
    pub(super) const ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0a];
    pub(super) const KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
    pub(super) const BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
    /// 1.3.6.1.4.1.3704.1, AMD's arc; the extensions append one or two arcs.
    pub(super) const AMD: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x9c, 0x78, 0x01];
}

const ORGANIZATION: &str = "Mooring test signer (not AMD)";

/// An RSA CA of the test chain.
pub(super) struct Ca {
    pair: RsaKeyPair,
    name: Vec<u8>,
    pub(super) der: Vec<u8>,
}

impl Ca {
    /// An RSA-2048 CA named `cn`, self-signed when `issuer` is `None`.
    #[allow(clippy::expect_used)]
    pub(super) fn new(cn: &str, issuer: Option<&Ca>, serial: u64, rng: &SystemRandom) -> Self {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA keygen");
        let name = name(cn);
        let spki = pair.public_key().as_der().expect("RSA SPKI").as_ref().to_vec();
        let path_len = if issuer.is_some() { Some(0) } else { None };
        let extensions = vec![
            extension(oids::BASIC_CONSTRAINTS, true, &basic_constraints(path_len)),
            // keyCertSign and cRLSign (RFC 5280 §4.2.1.3 bits 5 and 6).
            extension(oids::KEY_USAGE, true, &tlv(0x03, &[0x01, 0x06])),
        ];
        let tbs = |issuer_name: &[u8]| {
            tbs(serial, issuer_name, &name, DEFAULT_NOT_BEFORE, DEFAULT_NOT_AFTER, &spki, &extensions)
        };
        let der = match issuer {
            Some(issuer) => issuer.sign_tbs(&tbs(&issuer.name), rng),
            None => sign_tbs_with(&pair, &tbs(&name), rng),
        };
        Self { pair, name, der }
    }

    fn sign_tbs(&self, tbs: &[u8], rng: &SystemRandom) -> Vec<u8> {
        sign_tbs_with(&self.pair, tbs, rng)
    }

    /// A leaf certificate for `key` with the AMD extensions from `spec`.
    #[allow(clippy::expect_used)]
    pub(super) fn issue_leaf(
        &self,
        cn: &str,
        key: &EcdsaKeyPair,
        spec: &LeafSpec,
        product: Product,
        rng: &SystemRandom,
    ) -> Vec<u8> {
        let point = key.public_key().as_ref();
        let (x, y) = point.get(1..).unwrap_or_default().split_at(P384_SCALAR_LEN);
        let spki = PublicKey::ecc(EccCurve::NistP384, x, y).expect("P-384 point").to_spki_der();
        let amd = |arc: &[u8], value: Vec<u8>| extension(&[oids::AMD, arc].concat(), false, &value);
        let int = |v: u8| unsigned_integer(&[v]);
        let mut extensions = vec![
            amd(&[1], int(1)),
            amd(&[2], tlv(0x16, spec.product_name.as_bytes())),
            amd(&[3, 1], int(spec.tcb.bootloader)),
            amd(&[3, 2], int(spec.tcb.tee)),
            amd(&[3, 3], int(spec.tcb.snp)),
            amd(&[3, 8], int(spec.tcb.microcode)),
        ];
        if product == Product::Turin {
            extensions.push(amd(&[3, 9], int(spec.tcb.fmc)));
        }
        if let Some(hw_id) = &spec.hw_id {
            // hwID's extnValue is the raw bytes, as AMD encodes it.
            extensions.push(extension(&[oids::AMD, &[4]].concat(), false, hw_id));
        }
        if let Some(csp) = &spec.csp_id {
            extensions.push(amd(&[5], tlv(0x16, csp.as_bytes())));
        }
        let tbs =
            tbs(spec.serial, &self.name, &name(cn), spec.not_before, spec.not_after, &spki, &extensions);
        self.sign_tbs(&tbs, rng)
    }
}

#[allow(clippy::expect_used)]
fn sign_tbs_with(pair: &RsaKeyPair, tbs: &[u8], rng: &SystemRandom) -> Vec<u8> {
    let mut sig = vec![0u8; pair.public_modulus_len()];
    pair.sign(&RSA_PSS_SHA384, rng, tbs, &mut sig).expect("RSA-PSS signing");
    sequence(&[tbs.to_vec(), RSA_PSS_SHA384_ALG.to_vec(), bit_string(&sig)])
}

fn tbs(
    serial: u64,
    issuer: &[u8],
    subject: &[u8],
    not_before: i64,
    not_after: i64,
    spki: &[u8],
    extensions: &[Vec<u8>],
) -> Vec<u8> {
    sequence(&[
        tlv(0xa0, &unsigned_integer(&[2])),
        unsigned_integer(&serial.to_be_bytes()),
        RSA_PSS_SHA384_ALG.to_vec(),
        issuer.to_vec(),
        sequence(&[time(not_before), time(not_after)]),
        subject.to_vec(),
        spki.to_vec(),
        tlv(0xa3, &sequence(extensions)),
    ])
}

/// `O=Mooring test signer (not AMD), CN=<cn>`.
fn name(cn: &str) -> Vec<u8> {
    let rdn = |attr: &[u8], value: &str| tlv(0x31, &sequence(&[oid(attr), tlv(0x0c, value.as_bytes())]));
    sequence(&[rdn(oids::ORGANIZATION, ORGANIZATION), rdn(oids::COMMON_NAME, cn)])
}

fn extension(oid_bytes: &[u8], critical: bool, value: &[u8]) -> Vec<u8> {
    let mut parts = vec![oid(oid_bytes)];
    if critical {
        parts.push(tlv(0x01, &[0xff]));
    }
    parts.push(tlv(0x04, value));
    sequence(&parts)
}

fn basic_constraints(path_len: Option<u8>) -> Vec<u8> {
    let mut parts = vec![tlv(0x01, &[0xff])];
    if let Some(n) = path_len {
        parts.push(unsigned_integer(&[n]));
    }
    sequence(&parts)
}

/// UTCTime before 2050, GeneralizedTime from then on (RFC 5280 §4.1.2.5).
fn time(unix: i64) -> Vec<u8> {
    let t = time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let (year, month) = (t.year(), u8::from(t.month()));
    let rest = format!("{month:02}{:02}{:02}{:02}{:02}Z", t.day(), t.hour(), t.minute(), t.second());
    if year < 2050 {
        tlv(0x17, format!("{:02}{rest}", year % 100).as_bytes())
    } else {
        tlv(0x18, format!("{year:04}{rest}").as_bytes())
    }
}
