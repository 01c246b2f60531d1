//! The relying services' question: is this credential good for this caller, now?

use std::net::IpAddr;

use mooring_attestation::protocol::{
    CredentialClaims, Possession, PossessionStatement, PresentedCredential, VerifyRequest, VerifyResponse,
};

use super::{internal, Broker, Caller};
use crate::audit::{Action, Outcome};
use crate::issuer::CredentialKey;
use crate::refusal::{Code, Refusal};
use crate::store::{HardwareId, IdentityStatus};

/// How far a possession statement's time may be from the broker's clock.
pub(crate) const POSSESSION_SKEW_SECONDS: i64 = 120;

/// A credential's content, whichever form it came in.
struct Presented {
    claims: CredentialClaims,
    audiences: Option<Vec<String>>,
    key: CredentialKey,
    x509: bool,
    /// From the issuance record, which every credential the broker signed has.
    hardware: HardwareId,
}

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
                if let Err(e) = self.store.audit(event) {
                    tracing::error!("audit record of a verification lost: {e}");
                }
                self.metrics.verified(true);
                VerifyResponse { valid: true, code: None, reason: None, claims: Some(claims) }
            }
            Err(refusal) => {
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
                self.metrics.verified(false);
                VerifyResponse {
                    valid: false,
                    code: Some(refusal.code.as_str().to_owned()),
                    reason: Some(refusal.reason),
                    claims: None,
                }
            }
        }
    }

    fn verify_inner(&self, request: &VerifyRequest) -> Result<CredentialClaims, Refusal> {
        let now = self.now();
        let presented = self.presented(&request.credential, now)?;
        let claims = presented.claims.clone();
        if let Some(audiences) = &presented.audiences {
            let audience = request.audience.as_deref().ok_or_else(|| {
                Refusal::new(Code::WrongAudience, "JWT-SVIDs are checked for an audience: give `audience`")
            })?;
            if !audiences.iter().any(|a| a == audience) {
                return Err(Refusal::new(
                    Code::WrongAudience,
                    format!("credential is for {audiences:?}, not {audience:?}"),
                ));
            }
        }
        if let Some(revocation) = self
            .store
            .revocation_for(&claims.serial, &claims.spiffe_id)
            .map_err(|e| internal("revocations", e))?
        {
            return Err(Refusal::new(Code::Revoked, format!("revoked: {}", revocation.reason)));
        }
        if self.store.identity_status(&presented.hardware).map_err(|e| internal("enrollment", e))?
            == Some(IdentityStatus::Blocked)
        {
            return Err(Refusal::new(Code::VmBlocked, "the VM's hardware is blocked by an administrator"));
        }
        check_address(claims.bound_address, request.peer_address)?;
        match &request.proof {
            None => Err(Refusal::new(
                Code::NoProofOfPossession,
                "no proof of possession of the credential key: a copied credential looks exactly like this",
            )),
            Some(Possession::MutualTls) if presented.x509 => Ok(claims),
            Some(Possession::MutualTls) => Err(Refusal::new(
                Code::NoProofOfPossession,
                "mutual TLS proves possession only for an X.509-SVID; sign a possession statement",
            )),
            Some(Possession::Signature { statement, signature }) => {
                check_statement(statement, signature, &presented.key, request.audience.as_deref(), now)?;
                Ok(claims)
            }
        }
    }

    fn presented(&self, credential: &PresentedCredential, now: i64) -> Result<Presented, Refusal> {
        match credential {
            PresentedCredential::Jwt { token } => {
                let jwt = self.issuer.verify_jwt(token, now)?;
                let record = self.issuance_record(&jwt.jti)?;
                let point = jwt.cnf.jwk.point().ok_or_else(|| {
                    Refusal::new(Code::CredentialMalformed, "JWT-SVID cnf is not a P-256 JWK")
                })?;
                Ok(Presented {
                    claims: CredentialClaims {
                        spiffe_id: jwt.sub,
                        class: jwt.class,
                        serial: jwt.jti,
                        hardware_id: jwt.hardware_id,
                        bound_address: jwt.bound_address,
                        expires_at: jwt.exp,
                    },
                    audiences: Some(jwt.aud),
                    key: CredentialKey::from_point(point),
                    x509: false,
                    hardware: record.hardware_id,
                })
            }
            PresentedCredential::X509 { chain } => {
                let svid = self.issuer.verify_x509(chain, now)?;
                // The X.509-SVID carries no class or hardware id; the issuance record does.
                let record = self.issuance_record(&svid.serial)?;
                Ok(Presented {
                    claims: CredentialClaims {
                        spiffe_id: svid.spiffe_id,
                        class: record.class,
                        serial: svid.serial,
                        hardware_id: record.hardware_id.hex().to_owned(),
                        bound_address: svid.bound_address,
                        expires_at: svid.expires_at,
                    },
                    audiences: None,
                    key: CredentialKey::from_point(svid.key_point),
                    x509: true,
                    hardware: record.hardware_id,
                })
            }
        }
    }
}

impl Broker {
    fn issuance_record(&self, serial: &str) -> Result<crate::store::CredentialRecord, Refusal> {
        self.store.credential(serial).map_err(|e| internal("credentials", e))?.ok_or_else(|| {
            Refusal::new(Code::UnknownSigningKey, format!("no issuance record for serial {serial}"))
        })
    }
}

fn check_address(bound: IpAddr, peer: IpAddr) -> Result<(), Refusal> {
    if bound == peer {
        return Ok(());
    }
    Err(Refusal::new(
        Code::AddressOutsideBinding,
        format!("presented from {peer}, but the credential is bound to {bound}"),
    ))
}

fn check_statement(
    statement: &[u8],
    signature: &[u8],
    key: &CredentialKey,
    audience: Option<&str>,
    now: i64,
) -> Result<(), Refusal> {
    if !key.verify(statement, signature) {
        return Err(Refusal::new(Code::ProofInvalid, "possession signature is not by the credential's key"));
    }
    let statement: PossessionStatement = serde_json::from_slice(statement)
        .map_err(|e| Refusal::new(Code::ProofInvalid, format!("possession statement: {e}")))?;
    if statement.purpose != PossessionStatement::PURPOSE {
        return Err(Refusal::new(
            Code::ProofInvalid,
            format!("possession statement purpose {:?}", statement.purpose),
        ));
    }
    if audience != Some(statement.audience.as_str()) {
        return Err(Refusal::new(
            Code::ProofInvalid,
            format!("possession statement is for {:?}, not {audience:?}", statement.audience),
        ));
    }
    if (statement.issued_at - now).abs() > POSSESSION_SKEW_SECONDS {
        return Err(Refusal::new(
            Code::ProofInvalid,
            format!(
                "possession statement made {} s from now; allowed ±{POSSESSION_SKEW_SECONDS}",
                statement.issued_at - now
            ),
        ));
    }
    Ok(())
}
