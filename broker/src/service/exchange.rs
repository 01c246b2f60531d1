//! Federation: a VM trades its bound JWT-SVID for a short bearer token for one downstream
//! audience its class federates with (RFC 8693 token exchange), and relying services ask
//! whether such a token is still good. The tokens are signed with the JWT-SVID keys and
//! published in OpenID Connect form (`GET /.well-known/openid-configuration`).
//!
//! An exchange proves what a retirement proves (the credential is ours and current,
//! presented from its bound address, with a fresh possession statement by K); until then a
//! refusal is only counted. From there every decision is an audit record naming the
//! subject, the credential's serial and the audience: the audience is bounded
//! ([`check_audience`]) before anything is recorded.

use mooring_attestation::protocol::{
    check_audience, check_nonce, exchange_request, parse_scope, CredentialClaims, ExchangeRequest,
    ExchangeResponse, ExchangedClaims, HardwareId, OidcDiscovery, EXCHANGED_TOKEN_ALG, EXCHANGE_AUDIENCE,
    JWT_TOKEN_TYPE, NOT_APPLICABLE_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT,
};

use super::verify::{refusal, Held};
use super::{internal, store_failure, Broker, Caller};
use crate::audit::{Action, Outcome};
use crate::config::FederationConfig;
use crate::refusal::{Code, Refusal};

/// What an exchange proved before anything about it is recorded.
#[derive(Debug)]
struct Proven {
    spiffe_id: String,
    serial: String,
    hardware_id: HardwareId,
    class: String,
    /// When the JWT-SVID expires: no token outlives it.
    expires_at: i64,
    /// The scopes asked for (well-formed, not yet granted).
    scopes: Vec<String>,
}

impl Broker {
    /// `[federation]`, or the refusal of a route that needs it.
    fn federation(&self) -> Result<&FederationConfig, Refusal> {
        self.config.federation.as_ref().ok_or_else(|| {
            Refusal::new(
                Code::NotFound,
                "this broker is no OIDC issuer: its configuration has no [federation]",
            )
        })
    }

    /// `GET /.well-known/openid-configuration`.
    pub(crate) fn openid_configuration(&self) -> Result<OidcDiscovery, Refusal> {
        let federation = self.federation()?;
        let claims = ["iss", "sub", "aud", "exp", "iat", "jti", "class", "svid_serial", "scope"];
        Ok(OidcDiscovery {
            issuer: federation.issuer.clone(),
            jwks_uri: federation.jwks_uri(),
            response_types_supported: vec!["id_token".into()],
            subject_types_supported: vec!["public".into()],
            id_token_signing_alg_values_supported: vec![EXCHANGED_TOKEN_ALG.into()],
            claims_supported: claims.iter().map(|&c| c.to_owned()).collect(),
        })
    }

    /// `GET /.well-known/jwks.json`: the keys exchanged tokens are signed with.
    pub(crate) fn oidc_jwks(&self) -> Result<mooring_attestation::protocol::JwkSet, Refusal> {
        self.federation()?;
        Ok(self.issuer.oidc_jwks(self.now()))
    }

    /// `POST /v1/credentials/exchange`.
    pub(crate) fn exchange(
        &self,
        request: &ExchangeRequest,
        caller: &Caller,
    ) -> Result<ExchangeResponse, Refusal> {
        let proven = self.anonymous(Action::Exchange, caller, || self.exchange_proven(request, caller))?;
        match self.exchange_decided(request, &proven) {
            Ok((response, claims)) => {
                let reason = format!(
                    "token {} for {:?} until {}{}",
                    claims.jti,
                    claims.aud,
                    claims.exp,
                    claims.scope.as_deref().map(|s| format!(", scope {s:?}")).unwrap_or_default()
                );
                let event =
                    self.exchange_event(Outcome::Accepted, "exchanged", reason, request, &proven, caller);
                // No token leaves without its record.
                self.store.audit(event).map_err(|e| store_failure("recording the exchange", e))?;
                self.metrics.exchanged();
                Ok(response)
            }
            Err(refused) => {
                let event = self.exchange_event(
                    Outcome::Refused,
                    refused.code.as_str(),
                    refused.reason.clone(),
                    request,
                    &proven,
                    caller,
                );
                self.record_refusal(Action::Exchange, &refused, event);
                Err(refused)
            }
        }
    }

    /// The request's form, then the JWT-SVID (ours, current, from its bound address) and the
    /// possession statement by its K for this audience and scope, used once.
    fn exchange_proven(&self, request: &ExchangeRequest, caller: &Caller) -> Result<Proven, Refusal> {
        self.federation()?;
        let malformed = |reason: String| Refusal::new(Code::MalformedRequest, reason);
        if request.grant_type != TOKEN_EXCHANGE_GRANT {
            return Err(malformed(format!("grant_type must be {TOKEN_EXCHANGE_GRANT}")));
        }
        if request.subject_token_type != JWT_TOKEN_TYPE {
            return Err(malformed(format!("subject_token_type must be {JWT_TOKEN_TYPE} (a JWT-SVID)")));
        }
        if request.requested_token_type.as_ref().is_some_and(|t| t != JWT_TOKEN_TYPE) {
            return Err(malformed(format!("requested_token_type can only be {JWT_TOKEN_TYPE}")));
        }
        check_audience(&request.audience).map_err(|e| malformed(format!("audience: {e}")))?;
        check_nonce(&request.nonce).map_err(malformed)?;
        let scopes = match &request.scope {
            Some(scope) => parse_scope(scope).map_err(malformed)?.into_iter().map(str::to_owned).collect(),
            None => Vec::new(),
        };
        let now = self.now();
        let held = Held {
            jwt_svid: &request.subject_token,
            statement: &request.statement,
            signature: &request.signature,
        };
        let digest = exchange_request(&request.audience, request.scope.as_deref(), &request.nonce);
        let (verified, record) = self.held_by_caller(held, EXCHANGE_AUDIENCE, |_| digest, caller, now)?;
        Ok(Proven {
            spiffe_id: verified.spiffe_id().to_owned(),
            serial: verified.serial().to_owned(),
            hardware_id: record.hardware_id,
            class: record.class,
            expires_at: verified.expires_at(),
            scopes,
        })
    }

    /// Revocation, blocked hardware, then what the class grants: the audience, the scopes.
    /// The token's claims come with the answer.
    fn exchange_decided(
        &self,
        request: &ExchangeRequest,
        proven: &Proven,
    ) -> Result<(ExchangeResponse, ExchangedClaims), Refusal> {
        let federation = self.federation()?;
        self.not_revoked(&proven.serial, &proven.spiffe_id)?;
        self.not_blocked(&proven.hardware_id)?;
        let ttl_seconds =
            self.granted(&proven.class, &request.audience, proven.scopes.iter().map(String::as_str))?;
        let now = self.now();
        let expires_at = (now + i64::from(ttl_seconds)).min(proven.expires_at);
        if expires_at <= now {
            return Err(Refusal::new(
                Code::Expired,
                "the JWT-SVID expired during the exchange: attest again, then exchange the new one",
            ));
        }
        let mut claims = ExchangedClaims {
            iss: federation.issuer.clone(),
            sub: proven.spiffe_id.clone(),
            aud: request.audience.clone(),
            exp: expires_at,
            iat: now,
            jti: String::new(),
            class: proven.class.clone(),
            svid_serial: proven.serial.clone(),
            scope: (!proven.scopes.is_empty()).then(|| proven.scopes.join(" ")),
        };
        let token = self
            .issuer
            .sign_exchanged(&mut claims, now)
            .map_err(|e| internal("signing the exchanged token", format!("{e:#}")))?;
        let response = ExchangeResponse {
            access_token: token,
            issued_token_type: JWT_TOKEN_TYPE.into(),
            token_type: NOT_APPLICABLE_TOKEN_TYPE.into(),
            expires_in: expires_at - now,
            scope: claims.scope.clone(),
        };
        Ok((response, claims))
    }

    /// What the policy in force grants `class` for `audience`, all of `scopes` included:
    /// the tokens' lifetime. Checked at the exchange and again at each verify of its token,
    /// so that a grant the policy withdrew stops its tokens too.
    fn granted<'s>(
        &self,
        class: &str,
        audience: &str,
        mut scopes: impl Iterator<Item = &'s str>,
    ) -> Result<u32, Refusal> {
        let policy = self.policy();
        let found = policy.class(class).ok_or_else(|| {
            Refusal::new(Code::NoMatchingClass, format!("class {class:?} is no longer in the policy"))
        })?;
        let grant = found.federation(audience).ok_or_else(|| {
            Refusal::new(
                Code::WrongAudience,
                format!("class {class:?} exchanges for {:?}, not {audience:?}", found.federation_audiences()),
            )
        })?;
        if let Some(missing) = scopes.find(|s| !grant.scopes().iter().any(|granted| granted == s)) {
            return Err(Refusal::new(
                Code::ScopeNotAllowed,
                format!("class {class:?} is granted {:?} for {audience:?}, not {missing:?}", grant.scopes()),
            ));
        }
        Ok(grant.ttl_seconds())
    }

    /// The audit record of an exchange decided about `proven`.
    fn exchange_event(
        &self,
        outcome: Outcome,
        code: &str,
        reason: String,
        request: &ExchangeRequest,
        proven: &Proven,
        caller: &Caller,
    ) -> crate::audit::AuditEvent {
        let mut event = self.event(Action::Exchange, outcome, code, reason, Some(caller));
        event.spiffe_id = Some(proven.spiffe_id.clone());
        event.serial = Some(proven.serial.clone());
        event.hardware_id = Some(proven.hardware_id.hex().to_owned());
        event.audience = Some(request.audience.clone());
        event
    }

    /// `POST /v1/credentials/verify` of an exchanged token: signature, issuer, audience and
    /// time, then what only the broker knows: the credential it was exchanged for is on
    /// record, not revoked, its hardware not blocked, and the policy in force still grants
    /// its class this audience and these scopes. No address or possession: it is a
    /// bearer token.
    pub(super) fn verify_exchanged(
        &self,
        token: &str,
        audience: Option<&str>,
        now: i64,
    ) -> Result<CredentialClaims, Refusal> {
        let federation = self.config.federation.as_ref().ok_or_else(|| {
            Refusal::new(Code::CredentialMalformed, "this broker has no [federation]: it exchanged no tokens")
        })?;
        // A request without the audience proves nothing about any token: counted, not recorded.
        let audience = audience.ok_or_else(|| {
            Refusal::new(
                Code::MalformedRequest,
                "exchanged tokens are checked for an audience: give `audience`",
            )
        })?;
        let exchanged =
            self.issuer.check_exchanged(token, &federation.issuer, audience, now).map_err(refusal)?;
        let record = self.issuance_record(exchanged.svid_serial())?;
        self.not_revoked(exchanged.svid_serial(), exchanged.spiffe_id())?;
        self.not_blocked(&record.hardware_id)?;
        self.granted(exchanged.class(), audience, exchanged.scopes())?;
        Ok(CredentialClaims {
            spiffe_id: exchanged.spiffe_id().to_owned(),
            class: exchanged.class().to_owned(),
            serial: exchanged.svid_serial().to_owned(),
            hardware_id: record.hardware_id.hex().to_owned(),
            bound_address: record.bound_address,
            expires_at: exchanged.expires_at(),
        })
    }
}
