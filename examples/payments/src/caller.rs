//! Who is calling: the credential a request presents (a JWT-SVID with a possession proof,
//! or the X.509-SVID of mutual TLS), checked by the broker's verify API or offline against
//! the trust bundle, always with the address the caller connected from.

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::{header, HeaderMap};
use mooring_attestation::protocol::{Code, Possession, PresentedCredential, VerifyRequest, VerifyResponse};
use mooring_attestation::svid::{
    request_digest, PossessionProof, Presentation, Presented, Proof, Verifier, POSSESSION_HEADER,
};

use mooring_serve::Peer;

use crate::broker::BrokerClient;
use crate::config::Mode;
use crate::refusal::Refusal;
use crate::replay::{SeenProofs, Unusable};
use crate::trust::Trust;

/// A caller whose credential checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    pub(crate) spiffe_id: String,
    pub(crate) serial: String,
}

/// The request being authorized, as its proof must name it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestBinding<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) body: &'a [u8],
}

/// What a request presented.
enum Credential {
    Jwt { token: String, proof: Option<PossessionProof> },
    MutualTls { leaf: Vec<u8> },
}

/// Checks callers in the configured mode.
#[derive(Debug)]
pub(crate) struct Gate {
    pub(crate) mode: Mode,
    pub(crate) audience: String,
    pub(crate) max_revocation_age: i64,
    pub(crate) trust: Arc<Trust>,
    pub(crate) broker: BrokerClient,
    pub(crate) seen: SeenProofs,
}

impl Gate {
    /// The caller of one request, or why it is refused.
    pub(crate) async fn admit(
        &self,
        connection: &Peer,
        headers: &HeaderMap,
        request: RequestBinding<'_>,
        now: i64,
    ) -> Result<Caller, Refusal> {
        let credential = presented(connection, headers)?;
        let peer = connection.address.ip();
        let request = request_digest(request.method, request.path, request.body);
        match self.mode {
            // The broker refuses a statement it has seen (on any replica): `proof_replayed`.
            Mode::Broker => self.ask_broker(&credential, peer, &request, now).await,
            Mode::Offline => {
                let caller = self.offline(&credential, peer, &request, now)?;
                if let Credential::Jwt { proof: Some(proof), .. } = &credential {
                    self.seen.use_once(proof.statement(), now).map_err(|e| match e {
                        Unusable::Replayed => {
                            Refusal::forbidden(Code::ProofReplayed, "this possession proof was used before")
                        }
                        Unusable::Full => Refusal::verifier_unavailable(),
                    })?;
                }
                Ok(caller)
            }
        }
    }

    fn offline(
        &self,
        credential: &Credential,
        peer: IpAddr,
        request: &str,
        now: i64,
    ) -> Result<Caller, Refusal> {
        let bundle = self.trust.bundle();
        let revocations = self.trust.revocations();
        let verifier = Verifier {
            bundle: &bundle,
            revocations: &revocations,
            max_revocation_age: self.max_revocation_age,
            audience: &self.audience,
        };
        let presentation = match credential {
            Credential::Jwt { token, proof } => Presentation {
                credential: Presented::Jwt(token),
                peer,
                proof: proof.as_ref().map(|proof| Proof::Signature { proof, request }),
            },
            Credential::MutualTls { leaf } => {
                Presentation { credential: Presented::X509(leaf), peer, proof: Some(Proof::MutualTls) }
            }
        };
        let verified = verifier.verify(&presentation, now)?;
        Ok(Caller { spiffe_id: verified.spiffe_id().to_owned(), serial: verified.serial().to_owned() })
    }

    async fn ask_broker(
        &self,
        credential: &Credential,
        peer: IpAddr,
        request: &str,
        now: i64,
    ) -> Result<Caller, Refusal> {
        let (credential, proof) = match credential {
            Credential::Jwt { token, proof } => {
                // The broker checks the signature, purpose, audience, time, that the
                // statement was made for this request, and that it was not seen before.
                let proof = match proof {
                    Some(proof) => {
                        proof.check_statement(&self.audience, request, now)?;
                        Some(Possession::Signature {
                            statement: proof.statement().to_vec(),
                            signature: proof.signature().to_vec(),
                        })
                    }
                    None => None,
                };
                (PresentedCredential::Jwt { token: token.clone() }, proof)
            }
            Credential::MutualTls { leaf } => (
                PresentedCredential::X509 { chain: mooring_attestation::pem::encode("CERTIFICATE", leaf) },
                Some(Possession::MutualTls {}),
            ),
        };
        let question = VerifyRequest {
            credential,
            peer_address: peer,
            audience: Some(self.audience.clone()),
            proof,
            request: Some(request.to_owned()),
        };
        let answer = self.broker.verify(&question).await.map_err(|e| {
            tracing::error!("broker verify call failed: {e:#}");
            Refusal::verifier_unavailable()
        })?;
        judged(answer)
    }
}

/// What the broker's answer to `credentials/verify` means for the caller. Anything short of
/// a valid answer with claims, or a refusal with a code this service knows, fails closed.
fn judged(answer: VerifyResponse) -> Result<Caller, Refusal> {
    match (answer.valid, answer.claims, answer.code) {
        (true, Some(claims), _) => Ok(Caller { spiffe_id: claims.spiffe_id, serial: claims.serial }),
        (true, None, _) => Err(Refusal::verifier_unusable("the broker said valid but named no caller")),
        (false, _, None) => Err(Refusal::verifier_unusable("the broker refused without a reason code")),
        (false, _, Some(Code::Unrecognized)) => Err(Refusal::verifier_unusable(
            "the broker refused with a reason code this service does not know: upgrade the service",
        )),
        (false, _, Some(code)) => Err(Refusal::forbidden(
            code,
            answer.reason.unwrap_or_else(|| "the broker refused the credential".into()),
        )),
    }
}

/// The credential in the request: a bearer JWT-SVID (with its proof header when sent)
/// takes precedence over a TLS client certificate.
fn presented(connection: &Peer, headers: &HeaderMap) -> Result<Credential, Refusal> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Refusal::malformed("Authorization: expected `Bearer <JWT-SVID>`"))?;
        let proof = match headers.get(POSSESSION_HEADER) {
            Some(value) => Some(PossessionProof::from_header(
                value
                    .to_str()
                    .map_err(|_| Refusal::forbidden(Code::ProofInvalid, "proof header is not ASCII"))?,
            )?),
            None => None,
        };
        return Ok(Credential::Jwt { token: token.to_owned(), proof });
    }
    match &connection.client_certificate {
        Some(leaf) => Ok(Credential::MutualTls { leaf: leaf.to_vec() }),
        None => Err(Refusal::no_credential()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::http::StatusCode;
    use mooring_attestation::protocol::{Code, CredentialClaims, VerifyResponse};

    use super::judged;

    fn answer(valid: bool, code: Option<Code>, claims: bool) -> VerifyResponse {
        VerifyResponse {
            valid,
            code,
            reason: Some("why".into()),
            claims: claims.then(|| CredentialClaims {
                spiffe_id: "spiffe://test.mooring/vm/web/ab".into(),
                class: "web".into(),
                serial: "0a".into(),
                hardware_id: "ab".into(),
                bound_address: "127.0.0.2".parse().unwrap(),
                expires_at: 1,
            }),
        }
    }

    #[test]
    fn a_valid_answer_with_claims_admits_the_caller() {
        assert_eq!(judged(answer(true, None, true)).unwrap().serial, "0a");
    }

    #[test]
    fn answers_the_service_cannot_act_on_fail_closed() {
        for (valid, code, claims) in
            [(true, None, false), (false, None, false), (false, Some(Code::Unrecognized), false)]
        {
            let refusal = judged(answer(valid, code, claims)).unwrap_err();
            assert_eq!(
                (refusal.status, refusal.code),
                (StatusCode::SERVICE_UNAVAILABLE, Code::VerifierUnavailable)
            );
        }
        // A refusal is a refusal even when claims come with it.
        assert_eq!(judged(answer(false, Some(Code::Revoked), true)).unwrap_err().code, Code::Revoked);
    }

    #[test]
    fn a_refusal_keeps_the_brokers_code_and_its_status() {
        let refusal = judged(answer(false, Some(Code::AddressOutsideBinding), false)).unwrap_err();
        assert_eq!((refusal.status, refusal.code), (StatusCode::FORBIDDEN, Code::AddressOutsideBinding));
        let refusal = judged(answer(false, Some(Code::RevocationListStale), false)).unwrap_err();
        assert_eq!(refusal.status, StatusCode::SERVICE_UNAVAILABLE);
    }
}
