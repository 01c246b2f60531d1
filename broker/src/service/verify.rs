//! The relying services' question: is this credential good for this caller, now?
//!
//! The credential checks (signature by a key generation in use, validity, audience,
//! address binding, proof of possession) are [`mooring_attestation::svid`]'s, the same a
//! relying service runs offline; the broker adds what only it knows: the issuance record,
//! revocations (its store is the truth) and blocked hardware.

use mooring_attestation::protocol::{
    CredentialClaims, Possession, PresentedCredential, RetireRequest, RetireResponse, Revocation,
    RevocationCode, RevocationTarget, VerifyRequest, VerifyResponse, MAX_AUDIENCE_BYTES, RETIRE_AUDIENCE,
};
use mooring_attestation::svid::{
    CheckedCredential, PossessionProof, Presented, Proof, SvidError, VerifiedCredential,
    POSSESSION_SKEW_SECONDS,
};
use mooring_attestation::x509::bundle::parse_certificates;
use sha2::{Digest, Sha256};

use super::{internal, store_failure, Broker, Caller};
use crate::audit::{Action, Outcome};
use crate::records::CredentialRecord;
use crate::refusal::{Code, Refusal};
use crate::store::Consumed;

impl Broker {
    /// `POST /v1/credentials/verify`. Always an answer; refusals are audited.
    pub(crate) fn verify_credential(&self, request: &VerifyRequest, caller: &Caller) -> VerifyResponse {
        match self.verify_inner(request) {
            Ok(claims) => {
                let mut event =
                    self.event(Action::Verify, Outcome::Accepted, "valid", "credential valid", Some(caller));
                event.spiffe_id = Some(claims.spiffe_id.clone());
                event.serial = Some(claims.serial.clone());
                event.hardware_id = Some(claims.hardware_id.clone());
                event.peer = Some(request.peer_address.to_string());
                // No acceptance without its audit record: a store that cannot take it
                // (full, or failing) turns the answer into a refusal.
                if let Err(e) = self.store.audit(event) {
                    let refusal = store_failure("recording the verification", e);
                    self.metrics.verified(false);
                    return VerifyResponse {
                        valid: false,
                        code: Some(refusal.code),
                        reason: Some(refusal.reason),
                        claims: None,
                    };
                }
                self.metrics.verified(true);
                VerifyResponse { valid: true, code: None, reason: None, claims: Some(claims) }
            }
            Err(refusal) => {
                if matches!(
                    refusal.code,
                    Code::MalformedRequest
                        | Code::CredentialMalformed
                        | Code::BadSignature
                        | Code::UnknownSigningKey
                ) {
                    // A malformed request, or a credential that is not one of ours, proves
                    // nothing: counted, not recorded.
                    self.tally_refusal(Action::Verify, &refusal, Some(caller.address));
                } else {
                    let mut event = self.event(
                        Action::Verify,
                        Outcome::Refused,
                        refusal.code.as_str(),
                        &refusal.reason,
                        Some(caller),
                    );
                    event.peer = Some(request.peer_address.to_string());
                    if let Err(e) = self.store.audit(event) {
                        tracing::error!("audit record of a verification lost: {e}");
                    }
                }
                self.metrics.verified(false);
                VerifyResponse {
                    valid: false,
                    code: Some(refusal.code),
                    reason: Some(refusal.reason),
                    claims: None,
                }
            }
        }
    }

    /// Signature and validity, issuance record, audience, revocation, blocked hardware,
    /// address binding, proof of possession: the first that fails answers.
    fn verify_inner(&self, request: &VerifyRequest) -> Result<CredentialClaims, Refusal> {
        let now = self.now();
        // Refusal reasons repeat the audience asked for: an oversized one is a malformed
        // request (counted), never an audit record of attacker-sized text.
        if request.audience.as_ref().is_some_and(|a| a.len() > MAX_AUDIENCE_BYTES) {
            return Err(Refusal::new(
                Code::MalformedRequest,
                format!("audience: at most {MAX_AUDIENCE_BYTES} bytes"),
            ));
        }
        if let PresentedCredential::Exchanged { token } = &request.credential {
            if request.proof.is_some() || request.request.is_some() {
                return Err(Refusal::new(
                    Code::MalformedRequest,
                    "an exchanged token is a bearer token: no proof of possession is checked for it; \
                     send none",
                ));
            }
            return self.verify_exchanged(token, request.audience.as_deref(), now);
        }
        let checked = self.checked(&request.credential, now)?;
        let record = self.issuance_record(checked.credential().serial())?;
        let Some(audience) = request.audience.as_deref() else {
            return Err(Refusal::new(
                Code::WrongAudience,
                "credentials are checked for an audience: give `audience` (the relying service's name)",
            ));
        };
        if checked.audiences().is_some() {
            checked.check_audience(audience).map_err(refusal)?;
        } else {
            // An X.509-SVID names no audience: its class's audiences (in the policy in
            // force) are the ones it may be presented to, as its JWT-SVID twin.
            let policy = self.policy();
            let allowed =
                policy.class(&record.class).map(crate::policy::Class::audiences).unwrap_or_default();
            if !allowed.iter().any(|a| a == audience) {
                return Err(Refusal::new(
                    Code::WrongAudience,
                    format!("X.509-SVID of class {:?} is for {allowed:?}, not {audience:?}", record.class),
                ));
            }
        }
        let credential = checked.credential();
        self.not_revoked(credential.serial(), credential.spiffe_id())?;
        self.not_blocked(&record.hardware_id)?;
        checked.check_binding(request.peer_address).map_err(refusal)?;
        let signed;
        let (proof, audience) = match (&request.proof, request.audience.as_deref()) {
            (None, audience) => (None, audience.unwrap_or_default()),
            (Some(Possession::MutualTls {}), audience) => {
                (Some(Proof::MutualTls), audience.unwrap_or_default())
            }
            (Some(Possession::Signature { statement, signature }), Some(audience)) => {
                signed = PossessionProof::new(statement.clone(), signature.clone());
                match request.request.as_deref() {
                    Some(digest) => (Some(Proof::Signature { proof: &signed, request: digest }), audience),
                    // `request` is then the relying service's to check.
                    None => (Some(Proof::SignatureAnyRequest { proof: &signed }), audience),
                }
            }
            (Some(Possession::Signature { .. }), None) => {
                return Err(Refusal::new(
                    Code::ProofInvalid,
                    "a possession statement names the relying service: give `audience`",
                ))
            }
        };
        let verified = checked.check_possession(proof, audience, now).map_err(refusal)?;
        if let Some(Possession::Signature { statement, .. }) = &request.proof {
            self.use_statement_once(statement, now)?;
        }
        Ok(CredentialClaims {
            spiffe_id: verified.spiffe_id().to_owned(),
            // The X.509-SVID carries no class or hardware id; the issuance record does.
            class: verified.class().map_or_else(|| record.class.clone(), str::to_owned),
            serial: verified.serial().to_owned(),
            hardware_id: verified
                .hardware_id()
                .map_or_else(|| record.hardware_id.hex().to_owned(), str::to_owned),
            bound_address: verified.bound_address(),
            expires_at: verified.expires_at(),
        })
    }

    /// `POST /v1/credentials/retire`: the VM gives up a credential (at shutdown). It must be
    /// ours and current, presented from its bound address, with a possession statement by
    /// K for [`RETIRE_AUDIENCE`] naming its serial; relying services then refuse it with
    /// `retired`.
    /// A refusal is counted, not recorded: until it succeeds, the request proved nothing.
    pub(crate) fn retire(&self, request: &RetireRequest, caller: &Caller) -> Result<RetireResponse, Refusal> {
        self.anonymous(Action::Retire, caller, || self.retire_checked(request, caller))
    }

    fn retire_checked(&self, request: &RetireRequest, caller: &Caller) -> Result<RetireResponse, Refusal> {
        let now = self.now();
        let held = Held {
            jwt_svid: &request.jwt_svid,
            statement: &request.statement,
            signature: &request.signature,
        };
        let (verified, record) = self.held_by_caller(held, RETIRE_AUDIENCE, str::to_owned, caller, now)?;
        let serial = verified.serial().to_owned();
        let revocation = Revocation {
            target: RevocationTarget::Credential(serial.clone()),
            revoked_at: now,
            reason: "the VM retired it (shut down)".into(),
            code: RevocationCode::Retired,
        };
        let mut event = self.event(
            Action::Retire,
            Outcome::Accepted,
            "retired",
            "the VM gave up its credential",
            Some(caller),
        );
        event.spiffe_id = Some(verified.spiffe_id().to_owned());
        event.serial = Some(serial.clone());
        event.hardware_id = Some(record.hardware_id.hex().to_owned());
        self.store.revoke(&revocation, event).map_err(|e| store_failure("retiring the credential", e))?;
        Ok(RetireResponse { serial })
    }

    /// A JWT-SVID presented by the VM holding it: ours and current, from its bound address,
    /// with a possession statement by its K for `audience` whose `request` is
    /// `request(serial)`, used once. What the credential says, and its issuance record.
    pub(super) fn held_by_caller(
        &self,
        held: Held<'_>,
        audience: &str,
        request: impl FnOnce(&str) -> String,
        caller: &Caller,
        now: i64,
    ) -> Result<(VerifiedCredential, CredentialRecord), Refusal> {
        let checked = self.checked(&PresentedCredential::Jwt { token: held.jwt_svid.to_owned() }, now)?;
        let record = self.issuance_record(checked.credential().serial())?;
        checked.check_binding(caller.address).map_err(refusal)?;
        let proof = PossessionProof::new(held.statement.to_vec(), held.signature.to_vec());
        let request = request(checked.credential().serial());
        let verified = checked
            .check_possession(Some(Proof::Signature { proof: &proof, request: &request }), audience, now)
            .map_err(refusal)?;
        self.use_statement_once(held.statement, now)?;
        Ok((verified, record))
    }

    /// Refuses a credential its VM, an administrator or a newer boot revoked (by serial, or
    /// the VM by SPIFFE ID), with the revocation's code.
    pub(super) fn not_revoked(&self, serial: &str, spiffe_id: &str) -> Result<(), Refusal> {
        match self.store.revocation_for(serial, spiffe_id).map_err(|e| internal("revocations", e))? {
            Some(revocation) => Err(refusal(SvidError::revoked(&revocation))),
            None => Ok(()),
        }
    }

    /// One possession statement, one use, on every replica: a statement seen again within
    /// the window it is accepted in is a replay (whatever its signature's encoding).
    pub(super) fn use_statement_once(&self, statement: &[u8], now: i64) -> Result<(), Refusal> {
        let id = format!("proof:{}", hex::encode(Sha256::digest(statement)));
        match self.store.use_once(&id, now + 2 * POSSESSION_SKEW_SECONDS) {
            Ok(Consumed::First) => Ok(()),
            Ok(Consumed::AlreadyUsed) => Err(Refusal::new(
                Code::ProofReplayed,
                "this possession statement was presented before: make a new one for each request",
            )),
            Err(e) => Err(store_failure("recording the possession statement", e)),
        }
    }

    /// Signature (by a key generation in use), validity and names.
    pub(super) fn checked(
        &self,
        credential: &PresentedCredential,
        now: i64,
    ) -> Result<CheckedCredential, Refusal> {
        match credential {
            PresentedCredential::Jwt { token } => self.issuer.check(Presented::Jwt(token), now),
            PresentedCredential::X509 { chain } => {
                let chain = parse_certificates(chain.as_bytes())
                    .map_err(|e| Refusal::new(Code::CredentialMalformed, format!("X.509-SVID: {e}")))?;
                let leaf = chain
                    .first()
                    .ok_or_else(|| Refusal::new(Code::CredentialMalformed, "X.509-SVID: no certificate"))?;
                self.issuer.check(Presented::X509(leaf.der()), now)
            }
            PresentedCredential::Exchanged { .. } => Err(SvidError::Malformed(
                "an exchanged token is a bearer token, not a VM's credential".into(),
            )),
        }
        .map_err(refusal)
    }

    pub(super) fn issuance_record(&self, serial: &str) -> Result<CredentialRecord, Refusal> {
        self.store.credential(serial).map_err(|e| internal("credentials", e))?.ok_or_else(|| {
            Refusal::new(Code::UnknownSigningKey, format!("no issuance record for serial {serial}"))
        })
    }
}

/// A JWT-SVID and the possession statement its holder signed with K.
#[derive(Debug, Clone, Copy)]
pub(super) struct Held<'a> {
    pub(super) jwt_svid: &'a str,
    pub(super) statement: &'a [u8],
    pub(super) signature: &'a [u8],
}

/// The broker's answer for an `svid` refusal: the same reason code. A bundle or revocation
/// list problem is the broker's own (it checks against its key generations and its store).
pub(super) fn refusal(e: SvidError) -> Refusal {
    match e {
        SvidError::BundleInvalid(_) | SvidError::RevocationListStale(_) => internal("trust bundle", e),
        e => Refusal::new(e.code(), e.to_string()),
    }
}
