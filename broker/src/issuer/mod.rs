//! Issuing credentials for a VM's key K, and checking credentials the broker issued (with
//! [`mooring_attestation::svid`], against a trust bundle of the broker's key generations).

mod jwt;
pub(crate) mod keys;
mod svid;

use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use mooring_attestation::pem;
use mooring_attestation::protocol::{
    Audience, BundleDocument, Confirmation, ExchangedClaims, Jwk, JwkSet, JwtSvidClaims, EXCHANGED_TOKEN_ALG,
    JWT_SVID_USE, OIDC_SIG_USE, X509_SVID_USE,
};
use mooring_attestation::svid::{
    CheckedCredential, CredentialKey, ExchangedToken, Presented, SvidError, TrustBundle,
};
use mooring_attestation::validity::Windowed;

use self::keys::{Generation, KeySet};
use crate::store::KeyVault;

/// What a credential is issued for.
#[derive(Debug, Clone)]
pub(crate) struct Subject {
    pub(crate) spiffe_id: String,
    pub(crate) class: String,
    pub(crate) hardware_id: String,
    /// The credential key K (ECC P-256).
    pub(crate) key: CredentialKey,
    pub(crate) bound_address: IpAddr,
    pub(crate) ttl_seconds: u32,
    pub(crate) audiences: Vec<String>,
}

/// Credentials issued for one attestation.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    pub(crate) serial: String,
    pub(crate) x509_svid_pem: String,
    pub(crate) jwt_svid: String,
    pub(crate) issued_at: i64,
    pub(crate) expires_at: i64,
}

/// The issuer: key generations and the trust domain.
#[derive(Debug)]
pub(crate) struct Issuer {
    keys: KeySet,
    trust_domain: String,
    /// The trust bundle credentials are checked against, built once per key-set version.
    bundle: Mutex<Option<CachedBundle>>,
}

/// The trust bundle of the generations valid for verification, with the key-set version it
/// was built from, valid from the latest expiry of a generation left out (it expired) until
/// the earliest expiry of a generation in it.
type CachedBundle = Windowed<(u64, Arc<TrustBundle>)>;

impl Issuer {
    /// Opens the signing keys kept in `vault`.
    pub(crate) fn open(
        vault: Arc<dyn KeyVault>,
        trust_domain: &str,
        rotate_after_hours: u32,
        now: i64,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            keys: KeySet::open(vault, trust_domain, rotate_after_hours, now)?,
            trust_domain: trust_domain.to_owned(),
            bundle: Mutex::new(None),
        })
    }

    pub(crate) fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// Issues an X.509-SVID and a JWT-SVID with one serial.
    pub(crate) fn issue(&self, subject: &Subject, now: i64) -> anyhow::Result<Issued> {
        let generation = self.keys.current(now)?;
        let serial = new_serial()?;
        let expires_at = now + i64::from(subject.ttl_seconds);
        let x509_svid_pem = svid::issue(&generation, subject, &serial, now, expires_at)?;
        let claims = JwtSvidClaims {
            sub: subject.spiffe_id.clone(),
            aud: Audience::Many(subject.audiences.clone()),
            exp: expires_at,
            iat: now,
            jti: serial.clone(),
            cnf: Confirmation { jwk: Jwk::ec_p256(subject.key.point()) },
            class: subject.class.clone(),
            hardware_id: subject.hardware_id.clone(),
            bound_address: subject.bound_address,
        };
        let jwt_svid = jwt::sign(&generation, &claims)?;
        Ok(Issued { serial, x509_svid_pem, jwt_svid, issued_at: now, expires_at })
    }

    /// The X.509 CA certificates of every generation still in use (PEM).
    pub(crate) fn x509_bundle_pem(&self, now: i64) -> String {
        self.keys.all(now).iter().map(|g| pem::encode("CERTIFICATE", &g.ca_der)).collect()
    }

    /// The JWT verification keys (RFC 7517 JWK Set, SPIFFE bundle style).
    pub(crate) fn jwks(&self, now: i64) -> JwkSet {
        jwk_set(&self.keys.all(now))
    }

    /// The same keys as an OpenID Connect issuer's JWK Set: `use` `sig`, `alg` `ES256`, and
    /// the key id, nothing SPIFFE-specific (generic JOSE libraries skip or refuse keys of
    /// another `use`).
    pub(crate) fn oidc_jwks(&self, now: i64) -> JwkSet {
        let mut set = jwk_set(&self.keys.all(now));
        for jwk in &mut set.keys {
            jwk.use_ = Some(OIDC_SIG_USE.into());
            jwk.alg = Some(EXCHANGED_TOKEN_ALG.into());
        }
        set
    }

    /// Signs an exchanged token with the generation that signs now; its `jti` is a new
    /// random serial, set here.
    pub(crate) fn sign_exchanged(&self, claims: &mut ExchangedClaims, now: i64) -> anyhow::Result<String> {
        let generation = self.keys.current(now)?;
        claims.jti = new_serial()?;
        jwt::sign(&generation, claims)
    }

    /// The SPIFFE bundle of every generation still in use: per generation, its CA as an
    /// `x509-svid` key and its JWT key as a `jwt-svid` key.
    ///
    /// `spiffe_sequence` is the sum of the creation times of the oldest and the newest
    /// generation in it. Generations join newest-last and leave oldest-first (a generation
    /// is only made once the one before retired, and each expires a fixed time after it
    /// retires), so every change of the keys raises one of the two and lowers neither: the
    /// sequence moves with every change and never back, also across restarts, and every
    /// replica reading the same vault at the same second answers the same number.
    pub(crate) fn bundle_document(&self, now: i64, refresh_hint: u64) -> BundleDocument {
        let generations = self.keys.all(now);
        let mut keys = Vec::with_capacity(generations.len() * 2);
        for generation in &generations {
            let mut authority = Jwk::ec_p256(generation.ca_public());
            authority.use_ = Some(X509_SVID_USE.into());
            authority.x5c = Some(vec![STANDARD.encode(&generation.ca_der)]);
            keys.push(authority);
        }
        keys.extend(jwk_set(&generations).keys);
        let created = generations.iter().map(|g| u64::try_from(g.created_at).unwrap_or(0));
        let sequence = created.clone().min().unwrap_or(0).saturating_add(created.max().unwrap_or(0));
        BundleDocument { keys, spiffe_sequence: Some(sequence), spiffe_refresh_hint: Some(refresh_hint) }
    }

    /// Signature (by a generation in use), validity and names of a credential the broker
    /// issued. A signer this replica does not know (another replica rotated since it last
    /// looked) makes it read the vault again, at most once a second, and retry.
    pub(crate) fn check(&self, credential: Presented<'_>, now: i64) -> Result<CheckedCredential, SvidError> {
        self.with_bundle(now, |bundle| CheckedCredential::check(credential, bundle, now))
    }

    /// Signature (by a generation in use), issuer, validity, subject and audience of an
    /// exchanged token, as [`Issuer::check`] for credentials.
    pub(crate) fn check_exchanged(
        &self,
        token: &str,
        issuer: &str,
        audience: &str,
        now: i64,
    ) -> Result<ExchangedToken, SvidError> {
        self.with_bundle(now, |bundle| ExchangedToken::check(token, bundle, issuer, audience, now))
    }

    /// `check` against the trust bundle at `now`; once more after reading the vault again
    /// when it names a signer this replica does not know (at most once a second).
    fn with_bundle<T>(
        &self,
        now: i64,
        check: impl Fn(&TrustBundle) -> Result<T, SvidError>,
    ) -> Result<T, SvidError> {
        match check(&*self.trust_bundle(now)?) {
            Err(SvidError::UnknownSigningKey(_)) if self.keys.reload_if_stale(now) => {
                check(&*self.trust_bundle(now)?)
            }
            other => other,
        }
    }

    /// The trust bundle of the generations valid for verification at `now`: the cached one
    /// unless the key set changed or a generation expired (or `now` went back before one).
    fn trust_bundle(&self, now: i64) -> Result<Arc<TrustBundle>, SvidError> {
        let mut cached = self.bundle.lock().unwrap_or_else(PoisonError::into_inner);
        let (version, loaded) = self.keys.versioned();
        if let Some((_, bundle)) = cached.as_ref().and_then(|c| c.at(now)).filter(|(v, _)| *v == version) {
            return Ok(Arc::clone(bundle));
        }
        let (valid, expired): (Vec<Arc<Generation>>, Vec<Arc<Generation>>) =
            loaded.iter().cloned().partition(|g| g.expire_at > now);
        let bundle = Arc::new(TrustBundle::from_authorities(
            &self.trust_domain,
            valid.iter().map(|g| g.ca_cert.clone()).collect(),
            &jwk_set(&valid),
        )?);
        let valid_from = expired.iter().map(|g| g.expire_at).max().unwrap_or(i64::MIN);
        let valid_until = valid.iter().map(|g| g.expire_at).min().unwrap_or(i64::MAX);
        *cached = Some(Windowed::new((version, Arc::clone(&bundle)), valid_from..valid_until));
        Ok(bundle)
    }

    /// Reads the shared keys again (another replica may have rotated) and makes sure a
    /// current generation exists (rotating if due).
    pub(crate) fn rotate_if_due(&self, now: i64) -> anyhow::Result<()> {
        self.keys.reload(now)?;
        self.keys.current(now).map(|_| ())
    }
}

/// The JWT keys of `generations`, named by their key ids.
fn jwk_set(generations: &[Arc<Generation>]) -> JwkSet {
    JwkSet {
        keys: generations
            .iter()
            .map(|g| {
                let mut jwk = Jwk::ec_p256(g.jwt_public());
                jwk.kid = Some(g.kid.clone());
                jwk.use_ = Some(JWT_SVID_USE.into());
                jwk
            })
            .collect(),
    }
}

/// A random positive 128-bit serial (hex).
fn new_serial() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    SystemRandom::new().fill(&mut bytes).map_err(|_| anyhow::anyhow!("no randomness"))?;
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    use mooring_attestation::crypto::PublicKey;
    use mooring_attestation::tpm::alg::EccCurve;

    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn subject() -> Subject {
        let key = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        )
        .unwrap();
        use aws_lc_rs::signature::KeyPair as _;
        Subject {
            spiffe_id: "spiffe://test/vm/web/ab".into(),
            class: "web".into(),
            hardware_id: "ab".into(),
            key: {
                let point = key.public_key().as_ref();
                let (x, y) = point[1..].split_at(32);
                let key = PublicKey::Ecc { curve: EccCurve::NistP256, x: x.to_vec(), y: y.to_vec() };
                CredentialKey::from_public_key(&key).unwrap()
            },
            bound_address: "10.0.0.1".parse().unwrap(),
            ttl_seconds: 600,
            audiences: vec!["payments".into()],
        }
    }

    fn vault(dir: &std::path::Path) -> Arc<dyn KeyVault> {
        Arc::new(crate::store::KeyFiles::new(dir))
    }

    fn issuer(dir: &std::path::Path) -> Issuer {
        Issuer::open(vault(dir), "test", 24, NOW).unwrap()
    }

    fn check_jwt(issuer: &Issuer, token: &str, now: i64) -> Result<CheckedCredential, SvidError> {
        issuer.check(Presented::Jwt(token), now)
    }

    fn check_x509(issuer: &Issuer, chain_pem: &str, now: i64) -> Result<CheckedCredential, SvidError> {
        let chain = mooring_attestation::x509::bundle::parse_certificates(chain_pem.as_bytes()).unwrap();
        issuer.check(Presented::X509(chain[0].der()), now)
    }

    #[test]
    fn issued_credentials_verify_until_they_expire() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = issuer(dir.path());
        let issued = issuer.issue(&subject(), NOW).unwrap();
        let jwt = check_jwt(&issuer, &issued.jwt_svid, NOW + 1).unwrap();
        assert_eq!(jwt.credential().serial(), issued.serial);
        assert_eq!(jwt.credential().class(), Some("web"));
        assert_eq!(jwt.audiences(), Some(&["payments".to_owned()][..]));
        let svid = check_x509(&issuer, &issued.x509_svid_pem, NOW + 1).unwrap();
        assert_eq!(svid.credential().serial(), issued.serial);
        assert_eq!(svid.credential().bound_address(), subject().bound_address);
        assert_eq!(svid.credential().spiffe_id(), subject().spiffe_id);

        assert_eq!(check_jwt(&issuer, &issued.jwt_svid, NOW + 600).unwrap_err().code().as_str(), "expired");
        assert_eq!(
            check_x509(&issuer, &issued.x509_svid_pem, NOW + 600).unwrap_err().code().as_str(),
            "expired"
        );
    }

    #[test]
    fn a_changed_token_or_foreign_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = issuer(dir.path());
        let token = issuer.issue(&subject(), NOW).unwrap().jwt_svid;
        let parts: Vec<&str> = token.split('.').collect();

        // Claims rewritten (another address) under the original signature.
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        claims["bound_address"] = "10.9.9.9".into();
        let forged = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(claims.to_string()), parts[2]);
        assert_eq!(check_jwt(&issuer, &forged, NOW).unwrap_err().code().as_str(), "bad_signature");

        // Another broker's keys (the same trust domain).
        let other = tempfile::tempdir().unwrap();
        let foreign =
            Issuer::open(vault(other.path()), "test", 24, NOW).unwrap().issue(&subject(), NOW).unwrap();
        assert_eq!(
            check_jwt(&issuer, &foreign.jwt_svid, NOW).unwrap_err().code().as_str(),
            "unknown_signing_key"
        );
        assert_eq!(
            check_x509(&issuer, &foreign.x509_svid_pem, NOW).unwrap_err().code().as_str(),
            "unknown_signing_key"
        );
    }

    #[test]
    fn rotation_keeps_old_keys_until_their_credentials_expire() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = issuer(dir.path());
        let old = issuer.issue(&subject(), NOW).unwrap();
        let version = issuer.keys.versioned().0;
        check_jwt(&issuer, &old.jwt_svid, NOW).unwrap();
        let later = NOW + 24 * 3600 + 1;
        let new = issuer.issue(&subject(), later).unwrap();
        assert_ne!(issuer.keys.versioned().0, version, "rotation changes the key-set version");
        assert_eq!(issuer.jwks(later).keys.len(), 2, "the old key stays in the bundle");
        check_jwt(&issuer, &new.jwt_svid, later).unwrap();
        check_x509(&issuer, &new.x509_svid_pem, later).unwrap();
        // The old credential expired on its own; its key leaves once nothing it signed can be valid.
        let gone = NOW + 24 * 3600 + keys::MAX_CREDENTIAL_TTL + 1;
        assert_eq!(issuer.jwks(gone).keys.len(), 1);
        assert_eq!(
            check_jwt(&issuer, &old.jwt_svid, gone).unwrap_err().code().as_str(),
            "unknown_signing_key"
        );
        assert_eq!(
            check_x509(&issuer, &old.x509_svid_pem, gone).unwrap_err().code().as_str(),
            "unknown_signing_key"
        );
        // Reopening finds the same generations.
        assert_eq!(Issuer::open(vault(dir.path()), "test", 24, later).unwrap().jwks(later).keys.len(), 2);
    }

    /// The bundle document at `now`, parsed as a relying service parses it.
    fn bundle_at(issuer: &Issuer, now: i64) -> (u64, TrustBundle) {
        let document = issuer.bundle_document(now, 300);
        let bundle = TrustBundle::from_document("test", &document).unwrap();
        (document.spiffe_sequence.unwrap(), bundle)
    }

    #[test]
    fn the_bundle_sequence_moves_with_every_key_change_and_never_back() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = issuer(dir.path());
        let issued = issuer.issue(&subject(), NOW).unwrap();
        let (first, bundle) = bundle_at(&issuer, NOW);
        assert_eq!(bundle.x509_authorities().len(), 1);
        assert_eq!(bundle.refresh_hint(), Some(300));
        let leaf =
            mooring_attestation::x509::bundle::parse_certificates(issued.x509_svid_pem.as_bytes()).unwrap();
        CheckedCredential::check(Presented::X509(leaf[0].der()), &bundle, NOW + 1).unwrap();
        CheckedCredential::check(Presented::Jwt(&issued.jwt_svid), &bundle, NOW + 1).unwrap();
        // Nothing changed: the same number, from this process, a restart, or another replica.
        assert_eq!(bundle_at(&issuer, NOW + 3600).0, first);
        assert_eq!(
            bundle_at(&Issuer::open(vault(dir.path()), "test", 24, NOW + 7200).unwrap(), NOW + 7200).0,
            first
        );
        // A rotation adds a generation: up.
        let rotated = NOW + 24 * 3600 + 1;
        issuer.rotate_if_due(rotated).unwrap();
        let (second, bundle) = bundle_at(&issuer, rotated);
        assert_eq!(bundle.x509_authorities().len(), 2);
        assert!(second > first, "{second} > {first}");
        assert_eq!(
            bundle_at(&Issuer::open(vault(dir.path()), "test", 24, rotated).unwrap(), rotated).0,
            second
        );
        // The old generation leaves: up again, though no generation was added.
        let gone = NOW + 24 * 3600 + keys::MAX_CREDENTIAL_TTL + 1;
        let (third, bundle) = bundle_at(&issuer, gone);
        assert_eq!(bundle.x509_authorities().len(), 1);
        assert!(third > second, "{third} > {second}");
    }

    fn exchanged_claims() -> ExchangedClaims {
        ExchangedClaims {
            iss: "https://issuer.test".into(),
            sub: "spiffe://test/vm/web/ab".into(),
            aud: "sts.amazonaws.com".into(),
            exp: NOW + 300,
            iat: NOW,
            jti: String::new(),
            class: "web".into(),
            svid_serial: "0a1b".into(),
            scope: None,
        }
    }

    #[test]
    fn exchanged_tokens_are_signed_by_the_jwt_key_published_in_oidc_form() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = issuer(dir.path());
        let mut claims = exchanged_claims();
        let token = issuer.sign_exchanged(&mut claims, NOW).unwrap();
        let mut again = exchanged_claims();
        issuer.sign_exchanged(&mut again, NOW).unwrap();
        assert_eq!(claims.jti.len(), 32);
        assert_ne!(claims.jti, again.jti, "each token has its own id");
        let checked =
            issuer.check_exchanged(&token, "https://issuer.test", "sts.amazonaws.com", NOW + 1).unwrap();
        assert_eq!((checked.svid_serial(), checked.token_id()), ("0a1b", claims.jti.as_str()));
        assert_eq!(
            issuer.check_exchanged(&token, "https://issuer.test", "vault", NOW).unwrap_err().code().as_str(),
            "wrong_audience"
        );
        assert_eq!(
            issuer
                .check_exchanged(&token, "https://other.test", "sts.amazonaws.com", NOW)
                .unwrap_err()
                .code()
                .as_str(),
            "credential_malformed"
        );
        assert_eq!(
            issuer
                .check_exchanged(&token, "https://issuer.test", "sts.amazonaws.com", NOW + 300)
                .unwrap_err()
                .code()
                .as_str(),
            "expired"
        );

        // The OIDC JWK Set: the JWT keys by kid, `use` sig, `alg` ES256, nothing SPIFFE-specific.
        let kid = serde_json::from_slice::<serde_json::Value>(
            &URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap(),
        )
        .unwrap()["kid"]
            .clone();
        let oidc = serde_json::to_value(issuer.oidc_jwks(NOW)).unwrap();
        assert_eq!(
            oidc,
            serde_json::json!({"keys": [{
                "kty": "EC", "crv": "P-256", "x": oidc["keys"][0]["x"], "y": oidc["keys"][0]["y"],
                "kid": kid, "use": "sig", "alg": "ES256",
            }]})
        );
        assert_eq!(
            issuer.jwks(NOW).keys[0].use_.as_deref(),
            Some("jwt-svid"),
            "the SPIFFE form is unchanged"
        );

        // A generation another replica made is found, as for credentials.
        let second = Issuer::open(vault(dir.path()), "test", 24, NOW).unwrap();
        let later = NOW + 24 * 3600 + 1;
        let mut claims = ExchangedClaims { iat: later, exp: later + 300, ..exchanged_claims() };
        let rotated = second.sign_exchanged(&mut claims, later).unwrap();
        issuer.check_exchanged(&rotated, "https://issuer.test", "sts.amazonaws.com", later).unwrap();
    }

    #[test]
    fn a_replica_checks_credentials_signed_by_a_generation_another_replica_made() {
        let dir = tempfile::tempdir().unwrap();
        let first = issuer(dir.path());
        let second = issuer(dir.path());
        check_jwt(&second, &first.issue(&subject(), NOW).unwrap().jwt_svid, NOW).unwrap();
        // `first` rotates; `second` has its bundle cached and has not read the vault since.
        let later = NOW + 24 * 3600 + 1;
        let rotated = first.issue(&subject(), later).unwrap();
        check_jwt(&second, &rotated.jwt_svid, later).unwrap();
        check_x509(&second, &rotated.x509_svid_pem, later).unwrap();
    }
}
