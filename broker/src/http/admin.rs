//! The administrators' routes: mutual TLS with a certificate of the admin CA.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, MethodRouter};
use axum::{Extension, Json};
use mooring_attestation::protocol::{AuditVerification, IdentityChange, PolicyInForce};
use mooring_serve::Peer;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::vm::serve_json;
use super::{blocking, AppState, Body, ErrorResponse, Work};
use crate::audit::Action;
use crate::refusal::{Code, Refusal};
use crate::service::Broker;

/// The subject of the connection's client certificate: the server's client verifier
/// accepts only certificates of the admin CA.
fn admin(conn: &Peer) -> Result<String, ErrorResponse> {
    conn.client_certificate
        .as_ref()
        .and_then(|cert| mooring_attestation::x509::Certificate::from_der(cert).ok())
        .map(|cert| cert.subject().to_owned())
        .ok_or_else(|| {
            ErrorResponse(Refusal::new(Code::Unauthorized, "admin routes need an admin client certificate"))
        })
}

/// `POST` of an admin's JSON body: `call` gets the admin's certificate subject.
pub(super) fn posted<Req, Resp>(
    call: fn(&Broker, &Req, &str) -> Result<Resp, Refusal>,
) -> MethodRouter<AppState>
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
{
    post(move |State(broker): State<AppState>, Extension(conn): Extension<Peer>, body: Body| async move {
        let who = admin(&conn)?;
        serve_json(broker, conn.address.ip(), Action::Admin, "admin", body, move |b, request: &Req, _| {
            call(b, request, &who)
        })
        .await
    })
}

/// `POST /v1/admin/identities`: answers with the change made.
pub(super) fn set_identity(
    broker: &Broker,
    change: &IdentityChange,
    admin: &str,
) -> Result<IdentityChange, Refusal> {
    broker.set_identity(change, admin).map(|()| change.clone())
}

pub(super) async fn vms(
    State(broker): State<AppState>,
    Extension(conn): Extension<Peer>,
) -> Result<Response, ErrorResponse> {
    admin(&conn)?;
    Ok(Json(blocking(&broker, Work::Reads, Broker::vms).await?).into_response())
}

/// Most audit records one page holds.
const MAX_AUDIT_PAGE: usize = 1000;

/// `GET /v1/admin/audit?after=SEQ&limit=N`: records after `after`, at most `limit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    #[serde(default)]
    after: u64,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    100
}

pub(super) async fn audit(
    State(broker): State<AppState>,
    Extension(conn): Extension<Peer>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ErrorResponse> {
    admin(&conn)?;
    let Query(query) =
        query.map_err(|e| ErrorResponse(Refusal::new(Code::MalformedRequest, e.body_text())))?;
    if !(1..=MAX_AUDIT_PAGE).contains(&query.limit) {
        let reason = format!("limit {}: a page holds 1 to {MAX_AUDIT_PAGE} records", query.limit);
        return Err(ErrorResponse(Refusal::new(Code::MalformedRequest, reason)));
    }
    Ok(Json(
        blocking(&broker, Work::Reads, move |service| service.audit_page(query.after, query.limit)).await?,
    )
    .into_response())
}

pub(super) async fn audit_verify(
    State(broker): State<AppState>,
    Extension(conn): Extension<Peer>,
) -> Result<Response, ErrorResponse> {
    admin(&conn)?;
    let result = blocking(&broker, Work::Reads, Broker::verify_audit).await?;
    Ok(Json(match result {
        Ok(report) => AuditVerification {
            valid: true,
            records: Some(report.records),
            head: Some(report.head),
            reason: None,
        },
        Err(reason) => AuditVerification { valid: false, records: None, head: None, reason: Some(reason) },
    })
    .into_response())
}

pub(super) async fn reload(
    State(broker): State<AppState>,
    Extension(conn): Extension<Peer>,
) -> Result<Response, ErrorResponse> {
    let who = admin(&conn)?;
    let digest = blocking(&broker, Work::Writes, move |service| service.reload(&who)).await?;
    Ok(Json(PolicyInForce { policy: digest }).into_response())
}
