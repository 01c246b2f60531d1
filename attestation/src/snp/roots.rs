//! The AMD root certificates built into the verifier, pinned by SHA-256, and root sets
//! configured for tests.
//!
//! Sources of the embedded certificates (`roots/<product>/*.der`, DER of the published PEM), all published by AMD's Key
//! Distribution Service (`/vcek/v1/<Product>/cert_chain` and `/vlek/v1/<Product>/cert_chain`):
//! * `ark`, `ask`: the `sev` crate 8.0.0 (virtee), `src/certs/snp/builtin/<product>/`;
//! * `asvk`: the first certificate of google/go-sev-guest's
//!   `verify/trust/ask_ark_<product>_vlek.pem` (Genoa, Turin); for Milan the same KDS
//!   chain as go-sev-guest ships it in `verify/testdata/milanvlek.testcer`, transcribed
//!   from a public repository quoting that file. Every file matches its pin below.
//!
//! The fingerprints in [`BUILTIN_ROOT_FINGERPRINTS`] are the pin: a built-in file whose
//! DER hashes to anything else makes [`super::SnpVerifier`] construction fail.

use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Product, SigningKey, SnpError};
use crate::x509::{bundle, Certificate, TrustStore};

/// Where a root set comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RootOrigin {
    /// AMD's ARK, built in and pinned.
    Amd,
    /// A root trusted by explicit configuration ([`super::SnpVerifierBuilder::trust_test_root`]).
    Test,
}

/// SHA-256 of the DER of each built-in certificate: (product, role, hex).
pub const BUILTIN_ROOT_FINGERPRINTS: [(Product, &str, &str); 9] = [
    (Product::Milan, "ARK", "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd"),
    (Product::Milan, "ASK", "67d303bd3905fd38db8b20e0793699870e7fa612eaad5dec358293fd8c0bac1b"),
    (Product::Milan, "ASVK", "c5e081f59b7efab1fe2f8b505e159704e72f29cab7ef7cf628a05a42439082f5"),
    (Product::Genoa, "ARK", "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1"),
    (Product::Genoa, "ASK", "5464738c1546aed5f2cecf1dc98c5c960a92e8913238a61711bc90ec6e828521"),
    (Product::Genoa, "ASVK", "197e610743a917d6b9bb982a5a9226ccc0a15b611be0619e626aca9151457372"),
    (Product::Turin, "ARK", "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a"),
    (Product::Turin, "ASK", "5b77ef5fe7a7a004fd9032668fba9d0fda22f88c4442069a479636a6ae3b3185"),
    (Product::Turin, "ASVK", "104e10a8bd060a3c20a434261a57d0588fd65a88915b4f65b08bdecaf8df1a3c"),
];

/// One product's embedded PEM files.
struct BuiltinPem {
    product: Product,
    ark: &'static [u8],
    ask: &'static [u8],
    asvk: &'static [u8],
}

/// The embedded PEM files.
const BUILTIN_PEM: [BuiltinPem; 3] = [
    BuiltinPem {
        product: Product::Milan,
        ark: include_bytes!("roots/milan/ark.der"),
        ask: include_bytes!("roots/milan/ask.der"),
        asvk: include_bytes!("roots/milan/asvk.der"),
    },
    BuiltinPem {
        product: Product::Genoa,
        ark: include_bytes!("roots/genoa/ark.der"),
        ask: include_bytes!("roots/genoa/ask.der"),
        asvk: include_bytes!("roots/genoa/asvk.der"),
    },
    BuiltinPem {
        product: Product::Turin,
        ark: include_bytes!("roots/turin/ark.der"),
        ask: include_bytes!("roots/turin/ask.der"),
        asvk: include_bytes!("roots/turin/asvk.der"),
    },
];

/// One product's ARK with the ASK (VCEK issuer) and optionally the ASVK (VLEK issuer),
/// and a trust store per branch that holds only these certificates.
pub(super) struct RootSet {
    product: Product,
    origin: RootOrigin,
    ark: Arc<Certificate>,
    ask: Arc<Certificate>,
    asvk: Option<Arc<Certificate>>,
    vcek_store: TrustStore,
    vlek_store: Option<TrustStore>,
}

impl RootSet {
    /// A root set after checking its shape: the ARK is self-signed, the ASK and ASVK
    /// are CAs issued by it.
    pub(super) fn new(
        product: Product,
        origin: RootOrigin,
        ark: Certificate,
        ask: Certificate,
        asvk: Option<Certificate>,
    ) -> Result<Self, SnpError> {
        let bad = |reason: String| SnpError::Root { product: product.to_string(), reason };
        ark.verify_issued_by(&ark)
            .map_err(|e| bad(format!("ARK {} is not self-signed: {e}", ark.describe())))?;
        for (role, cert) in std::iter::once(("ASK", &ask)).chain(asvk.as_ref().map(|c| ("ASVK", c))) {
            if !cert.is_ca() {
                return Err(bad(format!("{role} {} is not a CA", cert.describe())));
            }
            cert.verify_issued_by(&ark)
                .map_err(|e| bad(format!("{role} {} is not issued by the ARK: {e}", cert.describe())))?;
        }
        let store = |intermediate: &Certificate| {
            TrustStore::builder().anchors([ark.clone()]).intermediates([intermediate.clone()]).build()
        };
        Ok(Self {
            product,
            origin,
            vcek_store: store(&ask),
            vlek_store: asvk.as_ref().map(store),
            ark: Arc::new(ark),
            ask: Arc::new(ask),
            asvk: asvk.map(Arc::new),
        })
    }

    /// AMD's root sets for Milan, Genoa and Turin, each certificate checked against its pin.
    pub(super) fn builtin() -> Result<Vec<Self>, SnpError> {
        BUILTIN_PEM
            .iter()
            .map(|pem| {
                let ark = pinned(pem.product, "ARK", pem.ark)?;
                let ask = pinned(pem.product, "ASK", pem.ask)?;
                let asvk = pinned(pem.product, "ASVK", pem.asvk)?;
                Self::new(pem.product, RootOrigin::Amd, ark, ask, Some(asvk))
            })
            .collect()
    }

    pub(super) fn product(&self) -> Product {
        self.product
    }

    pub(super) fn origin(&self) -> RootOrigin {
        self.origin
    }

    /// Which kind of leaf `leaf` is, when one of this set's intermediates issued it (by name).
    pub(super) fn issued_kind(&self, leaf: &Certificate) -> Option<SigningKey> {
        if leaf.issuer_key() == self.ask.subject_key() {
            Some(SigningKey::Vcek)
        } else if self.asvk.as_ref().is_some_and(|asvk| leaf.issuer_key() == asvk.subject_key()) {
            Some(SigningKey::Vlek)
        } else {
            None
        }
    }

    /// The trust store of the branch issuing `kind` leaves.
    pub(super) fn store(&self, kind: SigningKey) -> Option<&TrustStore> {
        match kind {
            SigningKey::Vcek => Some(&self.vcek_store),
            SigningKey::Vlek => self.vlek_store.as_ref(),
        }
    }

    /// Whether `der` is byte-identical to this set's ARK.
    pub(super) fn is_ark(&self, der: &[u8]) -> bool {
        self.ark.der() == der
    }

    /// Whether `der` is byte-identical to this set's issuer of `kind` leaves (ASK or ASVK).
    pub(super) fn is_issuer(&self, kind: SigningKey, der: &[u8]) -> bool {
        match kind {
            SigningKey::Vcek => self.ask.der() == der,
            SigningKey::Vlek => self.asvk.as_ref().is_some_and(|c| c.der() == der),
        }
    }

    pub(super) fn clear_cache(&self) {
        self.vcek_store.clear_cache();
        if let Some(store) = &self.vlek_store {
            store.clear_cache();
        }
    }
}

impl std::fmt::Debug for RootSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootSet")
            .field("product", &self.product)
            .field("origin", &self.origin)
            .field("ark", &hex::encode(self.ark.fingerprint()))
            .finish_non_exhaustive()
    }
}

/// Parses one built-in PEM certificate and checks its fingerprint against the pin.
fn pinned(product: Product, role: &'static str, pem: &[u8]) -> Result<Certificate, SnpError> {
    let bad = |reason: String| SnpError::Root { product: product.to_string(), reason };
    let cert = bundle::parse_one_certificate(pem).map_err(|e| bad(format!("built-in {role}: {e}")))?;
    let pin = BUILTIN_ROOT_FINGERPRINTS
        .iter()
        .find(|(p, r, _)| *p == product && *r == role)
        .map(|(_, _, fp)| *fp)
        .ok_or_else(|| bad(format!("no pinned fingerprint for the {role}")))?;
    let found = hex::encode(Sha256::digest(cert.der()));
    if found != pin {
        return Err(bad(format!("built-in {role} has SHA-256 {found}, the pin is {pin}")));
    }
    Ok(cert)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_match_their_pins_and_names() {
        let roots = RootSet::builtin().unwrap();
        assert_eq!(roots.len(), 3);
        for set in &roots {
            let name = set.product().name();
            assert!(set.ark.subject().ends_with(&format!("CN=ARK-{name}")), "{}", set.ark.subject());
            assert!(set.ask.subject().ends_with(&format!("CN=SEV-{name}")), "{}", set.ask.subject());
            let asvk = set.asvk.as_ref().unwrap();
            assert!(asvk.subject().ends_with(&format!("CN=SEV-VLEK-{name}")), "{}", asvk.subject());
            assert_eq!(set.origin(), RootOrigin::Amd);
        }
    }

    #[test]
    fn a_wrong_pin_is_refused() {
        let err = pinned(Product::Genoa, "ASK", BUILTIN_PEM[0].ask).unwrap_err();
        assert!(matches!(&err, SnpError::Root { reason, .. } if reason.contains("the pin is 5464")), "{err}");
    }

    #[test]
    fn a_misshapen_root_set_is_refused() {
        let roots = RootSet::builtin().unwrap();
        let (milan, genoa) = (&roots[0], &roots[1]);
        // Genoa's ASK under Milan's ARK.
        let err =
            RootSet::new(Product::Milan, RootOrigin::Test, (*milan.ark).clone(), (*genoa.ask).clone(), None)
                .unwrap_err();
        assert!(
            matches!(&err, SnpError::Root { reason, .. } if reason.contains("not issued by the ARK")),
            "{err}"
        );
        // An ASK as the ARK.
        let err =
            RootSet::new(Product::Milan, RootOrigin::Test, (*milan.ask).clone(), (*milan.ask).clone(), None)
                .unwrap_err();
        assert!(matches!(&err, SnpError::Root { reason, .. } if reason.contains("not self-signed")), "{err}");
    }
}
