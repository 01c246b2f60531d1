//! [`SnpVerifier`]: report signature, chain to a pinned root, cross-checks, claims.
//!
//! Checks, in order: the report parses strictly; its CPUID names a known product (v3+);
//! the VCEK/VLEK comes from the certificate table, the supplied certificates or the
//! provisioned set, and any ARK/ASK/ASVK supplied with it is byte-identical to a pinned
//! one; the leaf's issuer is a pinned ASK (VCEK) or ASVK (VLEK) of the report's product
//! and the chain to that product's ARK verifies at the given time; the key is ECDSA
//! P-384 and the signature verifies over bytes `0x000..0x2A0` as received; the report's
//! SIGNING_KEY is the certificate's kind; CHIP_ID equals the VCEK's hwID; REPORTED_TCB
//! equals the certificate's SPLs and every TCB's reserved bytes are zero.
//!
//! Verified leaves are cached by the SHA-256 of their DER together with the window in
//! which their whole chain is valid; a cached leaf skips parsing and the RSA chain
//! checks, leaving the one ECDSA P-384 check per report. Outside the window the full
//! path runs and names the precise error.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::cert_table::{CertTable, CertTableKind};
use super::certs::{self, AmdExtensions};
use super::claims::{SnpClaims, VerifiedReport};
use super::report::{self, Report};
use super::roots::{RootOrigin, RootSet};
use super::tcb::TcbVersion;
use super::{Product, SigningKey, SnpError};
use crate::crypto::{PublicKey, Scheme};
use crate::der;
use crate::tpm::alg::{EccCurve, HashAlg};
use crate::x509::{bundle, Certificate};

/// Most verified leaves kept; the cache is emptied when it fills up.
pub const MAX_CACHED_CHAINS: usize = 4096;
/// Most operator-provisioned VCEK/VLEK certificates.
pub const MAX_PROVISIONED: usize = 65_536;
/// Most provisioned certificates tried for one report (several VLEKs may share a TCB).
const MAX_PROVISIONED_CANDIDATES: usize = 8;

/// Where the report's VCEK or VLEK comes from.
#[derive(Debug, Clone, Copy)]
pub enum SnpCertSource<'a> {
    /// The certificate table of an extended report (SNP_GET_EXT_REPORT). Its ARK and
    /// ASK entries, when present, must be byte-identical to pinned ones.
    CertTable(&'a [u8]),
    /// The VCEK or VLEK as DER, or PEM text that may also hold the pinned ASK/ASVK and ARK
    /// (an AMD KDS `cert_chain` appended): every CA certificate in it must be pinned.
    Certificates(&'a [u8]),
    /// Look the VCEK/VLEK up among the operator-provisioned certificates by CHIP_ID and
    /// REPORTED_TCB (no network fetch at verification time).
    Provisioned,
}

/// A leaf whose chain verified, with what its extensions say.
#[derive(Debug)]
struct TrustedLeaf {
    cert: Arc<Certificate>,
    root: usize,
    kind: SigningKey,
    product: Product,
    ext: AmdExtensions,
    valid_from: i64,
    valid_until: i64,
}

/// A provisioned certificate, indexed before any verification.
#[derive(Debug)]
struct Provisioned {
    cert: Certificate,
    product: Product,
    kind: SigningKey,
    ext: AmdExtensions,
}

/// A configured non-AMD root set, as given.
#[derive(Debug)]
struct TestRoot {
    product: Product,
    ark: Vec<u8>,
    ask: Vec<u8>,
    asvk: Option<Vec<u8>>,
}

/// Configuration for an [`SnpVerifier`]: AMD's pinned roots are always trusted; test
/// roots and provisioned certificates are added explicitly.
#[derive(Debug, Default)]
pub struct SnpVerifierBuilder {
    test_roots: Vec<TestRoot>,
    provisioned: Vec<Vec<u8>>,
}

impl SnpVerifierBuilder {
    /// Also trusts a non-AMD root for `product`: an ARK, the ASK it issued (VCEK branch)
    /// and optionally an ASVK (VLEK branch), each DER or PEM. This is the only way the
    /// test signer's chain (`snp::sim`) is accepted; reports verified through it carry
    /// `root: "test"` in their claims.
    #[must_use]
    pub fn trust_test_root(mut self, product: Product, ark: &[u8], ask: &[u8], asvk: Option<&[u8]>) -> Self {
        self.test_roots.push(TestRoot {
            product,
            ark: ark.to_vec(),
            ask: ask.to_vec(),
            asvk: asvk.map(<[u8]>::to_vec),
        });
        self
    }

    /// Adds operator-provisioned VCEK/VLEK certificates (DER, or PEM with any number of
    /// certificates), used for reports verified with [`SnpCertSource::Provisioned`].
    /// Copies of the pinned ARK/ASK/ASVK among them are skipped; any other CA is an error
    /// at [`Self::build`].
    #[must_use]
    pub fn provision(mut self, certificates: &[u8]) -> Self {
        self.provisioned.push(certificates.to_vec());
        self
    }

    /// Parses and checks everything configured.
    ///
    /// # Errors
    /// [`SnpError::Root`] when a built-in certificate does not match its pin or a test
    /// root is misshapen; [`SnpError::Certificate`], [`SnpError::UnknownRoot`],
    /// [`SnpError::TooManyProvisioned`] or an extension error for a provisioned certificate.
    pub fn build(self) -> Result<SnpVerifier, SnpError> {
        let mut roots = RootSet::builtin()?;
        for root in self.test_roots {
            let parse = |bytes: &[u8]| bundle::parse_one_certificate(bytes);
            let asvk = root.asvk.as_deref().map(parse).transpose()?;
            roots.push(RootSet::new(
                root.product,
                RootOrigin::Test,
                parse(&root.ark)?,
                parse(&root.ask)?,
                asvk,
            )?);
        }
        let mut provisioned = Vec::new();
        for bytes in self.provisioned {
            for cert in bundle::parse_certificates(&bytes)? {
                // A KDS cert_chain next to the VCEKs: the pinned CAs are known already.
                let der = cert.der();
                let pinned = |r: &RootSet| {
                    r.is_ark(der) || r.is_issuer(SigningKey::Vcek, der) || r.is_issuer(SigningKey::Vlek, der)
                };
                if roots.iter().any(pinned) {
                    continue;
                }
                if provisioned.len() == MAX_PROVISIONED {
                    return Err(SnpError::TooManyProvisioned { max: MAX_PROVISIONED });
                }
                let (root, kind) = issuing_root(&roots, &cert, None)?;
                let product = roots.get(root).map_or(Product::Milan, RootSet::product);
                let ext = certs::read(&cert, kind, product)?;
                provisioned.push(Provisioned { cert, product, kind, ext });
            }
        }
        Ok(SnpVerifier { roots, provisioned, cache: RwLock::new(HashMap::new()) })
    }
}

/// Verifies SEV-SNP reports against the pinned AMD roots (and any configured test root).
/// Build it once and share it (`Arc<SnpVerifier>`): verification takes `&self`.
pub struct SnpVerifier {
    roots: Vec<RootSet>,
    provisioned: Vec<Provisioned>,
    cache: RwLock<HashMap<[u8; 32], Arc<TrustedLeaf>>>,
}

impl SnpVerifier {
    /// A verifier trusting AMD's built-in roots only.
    ///
    /// # Errors
    /// [`SnpError::Root`] if a built-in certificate does not match its pin.
    pub fn new() -> Result<Self, SnpError> {
        Self::builder().build()
    }

    /// Starts a configuration.
    #[must_use]
    pub fn builder() -> SnpVerifierBuilder {
        SnpVerifierBuilder::default()
    }

    /// Number of verified leaves cached.
    #[must_use]
    pub fn cached_chains(&self) -> usize {
        self.cache.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Forgets every cached chain (leaves and the ASK/ASVK → ARK paths).
    pub fn clear_cache(&self) {
        self.cache.write().unwrap_or_else(PoisonError::into_inner).clear();
        for root in &self.roots {
            root.clear_cache();
        }
    }

    /// Number of provisioned VCEK/VLEK certificates.
    #[must_use]
    pub fn provisioned(&self) -> usize {
        self.provisioned.len()
    }

    /// Verifies `report` (the 1184 bytes as received) with the VCEK/VLEK from `certs`
    /// at `now_unix` (seconds since the epoch; certificates must be valid then).
    ///
    /// # Errors
    /// [`SnpError`] naming the first check that failed.
    pub fn verify(
        &self,
        report: &[u8],
        certs: SnpCertSource<'_>,
        now_unix: i64,
    ) -> Result<VerifiedReport, SnpError> {
        let now = u64::try_from(now_unix).map_err(|_| SnpError::BadTime(now_unix))?;
        let parsed = Report::parse(report)?;
        let signed = report::signed_region(report)?;
        let hint = match parsed.cpuid() {
            Some(id) => Some(
                Product::from_cpuid(id.family, id.model)
                    .ok_or(SnpError::UnknownProduct { family: id.family, model: id.model })?,
            ),
            None => None,
        };
        let ctx = Context { hint, now_unix, now: UNIX_EPOCH + Duration::from_secs(now) };
        let kind = parsed.signing_key();
        match certs {
            SnpCertSource::CertTable(bytes) => {
                let table = CertTable::parse(bytes)?;
                let slot = match kind {
                    SigningKey::Vcek => CertTableKind::Vcek,
                    SigningKey::Vlek => CertTableKind::Vlek,
                };
                let der = table.get(slot).ok_or_else(|| SnpError::MissingCertificate {
                    kind,
                    detail: "the certificate table has no entry for it".into(),
                })?;
                let leaf = self.leaf_from_der(der, &ctx)?;
                let supplied = [table.get(CertTableKind::Ark), table.get(CertTableKind::Ask)];
                self.require_pinned(&leaf, supplied.into_iter().flatten())?;
                self.check(&parsed, signed, &leaf)
            }
            SnpCertSource::Certificates(bytes) => {
                let leaf = if bytes.first() == Some(&0x30) {
                    self.leaf_from_der(bytes, &ctx)?
                } else {
                    let (leaf, cas) = split_bundle(bytes, kind)?;
                    let leaf = match self.cached(leaf.fingerprint(), ctx.now_unix) {
                        Some(leaf) => leaf,
                        None => self.trust(leaf, &ctx)?,
                    };
                    self.require_pinned(&leaf, cas.iter().map(Certificate::der))?;
                    leaf
                };
                self.check(&parsed, signed, &leaf)
            }
            SnpCertSource::Provisioned => self.verify_provisioned(&parsed, signed, &ctx),
        }
    }

    /// Every CA certificate supplied with `leaf` must be byte-identical to the ARK or the
    /// ASK/ASVK of the pinned root set the leaf chains to.
    fn require_pinned<'c>(
        &self,
        leaf: &TrustedLeaf,
        supplied: impl Iterator<Item = &'c [u8]>,
    ) -> Result<(), SnpError> {
        let root = self.roots.get(leaf.root).ok_or_else(|| unknown_root(&leaf.cert))?;
        for der in supplied {
            if root.is_ark(der) || root.is_issuer(leaf.kind, der) {
                continue;
            }
            let role = match Certificate::from_der(der) {
                Ok(cert) if cert.is_self_issued() => "ARK",
                _ => "ASK/ASVK",
            };
            return Err(SnpError::NotPinned { role, fingerprint: hex::encode(Sha256::digest(der)) });
        }
        Ok(())
    }

    fn leaf_from_der(&self, der: &[u8], ctx: &Context) -> Result<Arc<TrustedLeaf>, SnpError> {
        let fingerprint: [u8; 32] = Sha256::digest(der).into();
        if let Some(leaf) = self.cached(&fingerprint, ctx.now_unix) {
            return Ok(leaf);
        }
        self.trust(Certificate::from_der(der)?, ctx)
    }

    fn cached(&self, fingerprint: &[u8; 32], now: i64) -> Option<Arc<TrustedLeaf>> {
        let cache = self.cache.read().unwrap_or_else(PoisonError::into_inner);
        cache.get(fingerprint).filter(|leaf| leaf.valid_from <= now && now <= leaf.valid_until).cloned()
    }

    /// Full path: issuer → pinned root set, chain at `now`, key type, extensions; cached.
    fn trust(&self, cert: Certificate, ctx: &Context) -> Result<Arc<TrustedLeaf>, SnpError> {
        let (root_index, kind) = issuing_root(&self.roots, &cert, ctx.hint)?;
        let root = self.roots.get(root_index).ok_or_else(|| unknown_root(&cert))?;
        let store = root.store(kind).ok_or_else(|| unknown_root(&cert))?;
        let chain = store.verify(&cert, &[], ctx.now)?;
        let product = root.product();
        match cert.public_key() {
            Ok(PublicKey::Ecc { curve: EccCurve::NistP384, .. }) => {}
            Ok(other) => {
                return Err(SnpError::SignerKey {
                    kind,
                    reason: format!("{} key, not ECDSA P-384", other.describe()),
                })
            }
            Err(e) => return Err(SnpError::SignerKey { kind, reason: e.to_string() }),
        }
        let ext = certs::read(&cert, kind, product)?;
        if !ext.product_name.starts_with(product.name()) {
            return Err(SnpError::ProductMismatch {
                report: product.to_string(),
                certificate: ext.product_name,
            });
        }
        let valid_from = chain.certificates().map(Certificate::not_before_unix).max().unwrap_or(i64::MAX);
        let valid_until = chain.certificates().map(Certificate::not_after_unix).min().unwrap_or(i64::MIN);
        let leaf = Arc::new(TrustedLeaf {
            cert: Arc::new(cert),
            root: root_index,
            kind,
            product,
            ext,
            valid_from,
            valid_until,
        });
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_CACHED_CHAINS {
            cache.clear();
        }
        cache.insert(*leaf.cert.fingerprint(), Arc::clone(&leaf));
        Ok(leaf)
    }

    fn verify_provisioned(
        &self,
        report: &Report,
        signed: &[u8],
        ctx: &Context,
    ) -> Result<VerifiedReport, SnpError> {
        let kind = report.signing_key();
        let candidates = self.provisioned.iter().filter(|p| {
            p.kind == kind
                && ctx.hint.is_none_or(|hint| hint == p.product)
                && TcbVersion::new(p.product, report.reported_tcb_raw()).parts() == p.ext.spl
                && p.ext.hw_id.as_deref().is_none_or(|hw| report.chip_id().starts_with(hw))
        });
        let mut first_error = None;
        for candidate in candidates.take(MAX_PROVISIONED_CANDIDATES) {
            let result = match self.cached(candidate.cert.fingerprint(), ctx.now_unix) {
                Some(leaf) => Ok(leaf),
                None => self.trust(candidate.cert.clone(), ctx),
            }
            .and_then(|leaf| self.check(report, signed, &leaf));
            match result {
                Ok(verified) => return Ok(verified),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| SnpError::MissingCertificate {
            kind,
            detail: format!(
                "none of the {} provisioned certificates matches CHIP_ID {} and REPORTED_TCB {}",
                self.provisioned.len(),
                hex::encode(report.chip_id()),
                hex::encode(report.reported_tcb_raw())
            ),
        }))
    }

    /// The checks between a report and its trusted leaf.
    fn check(&self, report: &Report, signed: &[u8], leaf: &TrustedLeaf) -> Result<VerifiedReport, SnpError> {
        if let Some(hint) = report.cpuid().and_then(|id| Product::from_cpuid(id.family, id.model)) {
            if hint != leaf.product {
                return Err(SnpError::ProductMismatch {
                    report: hint.to_string(),
                    certificate: leaf.product.to_string(),
                });
            }
        }
        let signature = der::ecdsa_signature(&report.signature_r, &report.signature_s);
        leaf.cert.verify_signed_by_subject(Scheme::Ecdsa(HashAlg::Sha384), signed, &signature).map_err(
            |e| match e {
                crate::x509::SignatureError::BadSignature => {
                    SnpError::BadSignature { kind: leaf.kind, subject: leaf.cert.describe() }
                }
                other => SnpError::SignerKey { kind: leaf.kind, reason: other.to_string() },
            },
        )?;
        if report.signing_key() != leaf.kind {
            return Err(SnpError::WrongSigningKeyKind {
                report: report.signing_key(),
                certificate: leaf.kind,
            });
        }
        if let Some(hw_id) = &leaf.ext.hw_id {
            let (prefix, rest) = report.chip_id().split_at(hw_id.len().min(report.chip_id().len()));
            if prefix != hw_id.as_slice() || rest.iter().any(|b| *b != 0) {
                return Err(SnpError::ChipIdMismatch {
                    report: hex::encode(report.chip_id()),
                    certificate: hex::encode(hw_id),
                });
            }
        }
        let tcb = |raw, field| {
            let tcb = TcbVersion::new(leaf.product, raw);
            if tcb.reserved_bytes_are_zero() {
                Ok(tcb)
            } else {
                Err(SnpError::Reserved { field })
            }
        };
        tcb(report.current_tcb, "CURRENT_TCB reserved bytes")?;
        tcb(report.committed_tcb, "COMMITTED_TCB reserved bytes")?;
        tcb(report.launch_tcb, "LAUNCH_TCB reserved bytes")?;
        let reported = tcb(report.reported_tcb, "REPORTED_TCB reserved bytes")?;
        for ((component, in_report), (_, in_cert)) in
            reported.parts().components().into_iter().zip(leaf.ext.spl.components())
        {
            if in_report != in_cert {
                return Err(SnpError::TcbMismatch { component, report: in_report, certificate: in_cert });
            }
        }
        let origin = self.roots.get(leaf.root).map_or(RootOrigin::Test, RootSet::origin);
        let claims = SnpClaims::new(
            report,
            leaf.product,
            origin,
            &leaf.cert,
            leaf.ext.product_name.clone(),
            leaf.ext.csp_id.clone(),
        );
        Ok(VerifiedReport::new(claims, Arc::clone(&leaf.cert)))
    }
}

impl std::fmt::Debug for SnpVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnpVerifier")
            .field("roots", &self.roots)
            .field("provisioned", &self.provisioned.len())
            .field("cached_chains", &self.cached_chains())
            .finish()
    }
}

/// The verification time and the report's product.
struct Context {
    hint: Option<Product>,
    now_unix: i64,
    now: SystemTime,
}

fn unknown_root(cert: &Certificate) -> SnpError {
    SnpError::UnknownRoot { subject: cert.describe(), issuer: cert.issuer().to_owned() }
}

/// The root set whose ASK or ASVK issued `cert` (by name), preferring `hint`'s product.
fn issuing_root(
    roots: &[RootSet],
    cert: &Certificate,
    hint: Option<Product>,
) -> Result<(usize, SigningKey), SnpError> {
    let matches: Vec<(usize, SigningKey, Product)> = roots
        .iter()
        .enumerate()
        .filter_map(|(i, root)| root.issued_kind(cert).map(|kind| (i, kind, root.product())))
        .collect();
    if let Some(hint) = hint {
        if let Some((i, kind, _)) = matches.iter().find(|(_, _, p)| *p == hint) {
            return Ok((*i, *kind));
        }
        if let Some((_, _, other)) = matches.first() {
            return Err(SnpError::ProductMismatch {
                report: hint.to_string(),
                certificate: other.to_string(),
            });
        }
    }
    matches.first().map(|(i, kind, _)| (*i, *kind)).ok_or_else(|| unknown_root(cert))
}

/// The one non-CA certificate of a PEM bundle, and the CA certificates beside it.
fn split_bundle(bytes: &[u8], kind: SigningKey) -> Result<(Certificate, Vec<Certificate>), SnpError> {
    let (mut leaves, cas): (Vec<Certificate>, Vec<Certificate>) =
        bundle::parse_certificates(bytes)?.into_iter().partition(|c| !c.is_ca());
    match leaves.len() {
        1 => leaves.pop().map(|leaf| (leaf, cas)).ok_or(SnpError::AmbiguousCertificate { count: 0 }),
        0 => Err(SnpError::MissingCertificate { kind, detail: "only CA certificates were supplied".into() }),
        count => Err(SnpError::AmbiguousCertificate { count }),
    }
}
