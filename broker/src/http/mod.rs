//! The HTTP layer: routes, one error type, and the guard in front of them. Handlers
//! parse, call the service on the blocking pool, and answer once what the service wrote
//! is durable.

mod guard;
pub(crate) mod tls;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use mooring_attestation::protocol::{
    ErrorBody, RetireRequest, SnpChallenge, SnpFinishRequest, TpmBeginRequest, TpmFinishRequest,
    VerifyRequest,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha2::{Digest, Sha256};

pub(crate) use self::guard::Guard;
use mooring_serve::Peer;

use crate::audit::Action;
use crate::refusal::{Code, Refusal};
use crate::service::{Broker, Caller};
use mooring_attestation::protocol::{AuditVerification, IdentityChange, PolicyInForce, RevocationRequest};

/// How connections are served: one connection buffers at most one TLS record while reading
/// (hyper's default is 400 KiB). Bodies stream through it; measured under a boot storm, it
/// saves ~90 KiB per open connection at no cost in throughput (8 KiB cost a sixth of it).
pub(crate) const LIMITS: mooring_serve::Limits = mooring_serve::Limits { read_buffer: 16 * 1024 };

/// Every error answer: a stable code and one line.
#[derive(Debug)]
pub(crate) struct ApiError(pub(crate) Refusal);

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        Self(refusal)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody { code: self.0.code, reason: self.0.reason };
        (status, Json(body)).into_response()
    }
}

type AppState = Arc<Broker>;

/// The application routes (without TLS).
pub(crate) fn router(broker: Arc<Broker>) -> Router {
    let guard = Arc::new(Guard::new(&broker.config));
    let v1 = mooring_attestation::protocol::API_PREFIX;
    Router::new()
        .route(&format!("{v1}/tpm/begin"), post(tpm_begin))
        .route(&format!("{v1}/tpm/finish"), post(tpm_finish))
        .route(&format!("{v1}/snp/begin"), post(snp_begin))
        .route(&format!("{v1}/snp/finish"), post(snp_finish))
        .route(&format!("{v1}/credentials/verify"), post(verify))
        .route(&format!("{v1}/credentials/retire"), post(retire))
        .route(&format!("{v1}/bundle"), get(bundle))
        .route(&format!("{v1}/bundle/jwks"), get(jwks))
        .route(&format!("{v1}/revocations"), get(revocations))
        .route(&format!("{v1}/health"), get(health))
        .route("/metrics", get(metrics))
        .route(&format!("{v1}/admin/identities"), post(admin_identity))
        .route(&format!("{v1}/admin/revocations"), post(admin_revoke))
        .route(&format!("{v1}/admin/vms"), get(admin_vms))
        .route(&format!("{v1}/admin/audit"), get(admin_audit))
        .route(&format!("{v1}/admin/audit/verify"), post(admin_audit_verify))
        .route(&format!("{v1}/admin/policy/reload"), post(admin_reload))
        .fallback(|| async { ApiError(Refusal::new(Code::NotFound, "no such route")) })
        .layer(Extension(RevocationWaiters(Arc::new(tokio::sync::Semaphore::new(MAX_REVOCATION_WAITERS)))))
        .layer(axum::extract::DefaultBodyLimit::max(broker.config.limits.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state((Arc::clone(&broker), guard), guard::guard))
        .with_state(broker)
}

/// Longest `X-Forwarded-For` entry read (an IPv6 address with a zone and port fits).
const MAX_FORWARDED_ENTRY: usize = 64;

/// The client's address: the direct peer, or the last address a configured trusted proxy
/// appended to `X-Forwarded-For` (a bare address, or `address:port`). From a trusted proxy,
/// a missing or unreadable entry is refused: binding the credential to the proxy's own
/// address would hand every VM behind it the same binding.
pub(crate) fn client_address(broker: &Broker, peer: IpAddr, headers: &HeaderMap) -> Result<IpAddr, Refusal> {
    if !broker.config.network.is_trusted_proxy(peer) {
        return Ok(peer);
    }
    let entry = headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .map(str::trim)
        .ok_or_else(|| {
            Refusal::new(
                Code::ForwardedAddressInvalid,
                format!("trusted proxy {peer} sent no X-Forwarded-For"),
            )
        })?;
    entry.parse::<IpAddr>().or_else(|_| entry.parse::<SocketAddr>().map(|a| a.ip())).map_err(|_| {
        let shown: String = entry.chars().take(MAX_FORWARDED_ENTRY).flat_map(char::escape_debug).collect();
        Refusal::new(
            Code::ForwardedAddressInvalid,
            format!("trusted proxy {peer} forwarded \"{shown}\", which is not an address"),
        )
    })
}

/// The VM's address as [`client_address`] finds it, as an extractor.
struct ClientAddress(IpAddr);

impl axum::extract::FromRequestParts<AppState> for ClientAddress {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        broker: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let conn = parts
            .extensions
            .get::<Peer>()
            .ok_or_else(|| ApiError(crate::service::internal("request", "no connection details")))?;
        Ok(Self(client_address(broker, conn.address.ip(), &parts.headers)?))
    }
}

/// Reads and parses a JSON body; refusals are audited (nothing else is stored).
fn parse<T: DeserializeOwned>(
    broker: &Broker,
    action: Action,
    body: Body,
    address: IpAddr,
) -> Result<(T, Caller), ApiError> {
    // A body that does not parse proves nothing: counted, not recorded one by one.
    let refuse = |refusal: Refusal| {
        broker.tally_refusal(action, &refusal, Some(address));
        ApiError(refusal)
    };
    let body = body.map_err(|rejection| {
        let refusal = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Refusal::new(
                Code::BodyTooLarge,
                format!("request body exceeds {} bytes", broker.config.limits.max_body_bytes),
            )
        } else {
            Refusal::new(
                Code::MalformedRequest,
                format!("cannot read the request body: {}", rejection.body_text()),
            )
        };
        refuse(refusal)
    })?;
    let digest: [u8; 32] = Sha256::digest(&body).into();
    let value = serde_json::from_slice(&body)
        .map_err(|e| refuse(Refusal::new(Code::MalformedRequest, format!("request JSON: {e}"))))?;
    Ok((value, Caller { address, body_digest: digest }))
}

/// Marks a queued service call abandoned when the request that queued it is dropped
/// (timed out, or the client went away).
struct Abandon(Arc<AtomicBool>);

impl Drop for Abandon {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs a service call off the async runtime; answers once what it wrote is durable. A
/// call whose request was dropped while it waited for a thread is skipped: under a storm
/// the queue is long, and work nobody will receive (consuming a challenge, signing,
/// recording) would only lengthen it.
async fn blocking<T: Send + 'static>(
    broker: &Arc<Broker>,
    f: impl FnOnce(&Broker) -> Result<T, Refusal> + Send + 'static,
) -> Result<T, ApiError> {
    let service = Arc::clone(broker);
    let abandoned = Arc::new(AtomicBool::new(false));
    let _abandon = Abandon(Arc::clone(&abandoned));
    let call = move || {
        if abandoned.load(Ordering::Relaxed) {
            return Err(Refusal::new(Code::Timeout, "abandoned before it started"));
        }
        f(&service)
    };
    let result = match tokio::task::spawn_blocking(call).await {
        Ok(result) => result.map_err(ApiError),
        Err(e) => Err(ApiError(crate::service::internal("request task", e))),
    };
    settled(broker, result).await
}

/// `result`, once every write made for it (a decision, its audit record) is durable: an
/// answer never gets ahead of its record.
async fn settled<T>(broker: &Broker, result: Result<T, ApiError>) -> Result<T, ApiError> {
    broker
        .store
        .durable()
        .await
        .map_err(|e| ApiError(crate::service::internal("making the record durable", e)))?;
    result
}

type Body = Result<Bytes, axum::extract::rejection::BytesRejection>;

/// Parses the JSON body, runs the service call on the blocking pool, times it and
/// answers JSON.
async fn serve_json<Req, Resp>(
    broker: AppState,
    address: IpAddr,
    action: Action,
    route: &'static str,
    body: Body,
    call: impl FnOnce(&Broker, &Req, &Caller) -> Result<Resp, Refusal> + Send + 'static,
) -> Result<Response, ApiError>
where
    Req: DeserializeOwned + Send + 'static,
    Resp: serde::Serialize + Send + 'static,
{
    let started = Instant::now();
    let answer = match parse::<Req>(&broker, action, body, address) {
        Ok((request, caller)) => blocking(&broker, move |service| call(service, &request, &caller)).await,
        Err(refused) => settled(&broker, Err(refused)).await,
    };
    // Refusals are timed too: a flood of them is load the histogram must show.
    broker.metrics.observe(route, answer.is_ok(), started.elapsed());
    Ok(Json(answer?).into_response())
}

async fn tpm_begin(
    State(broker): State<AppState>,
    ClientAddress(address): ClientAddress,
    body: Body,
) -> Result<Response, ApiError> {
    serve_json(broker, address, Action::Begin, "tpm_begin", body, |b, r: &TpmBeginRequest, c| {
        b.tpm_begin(r, c)
    })
    .await
}

async fn tpm_finish(
    State(broker): State<AppState>,
    ClientAddress(address): ClientAddress,
    body: Body,
) -> Result<Response, ApiError> {
    serve_json(broker, address, Action::Attest, "tpm_finish", body, |b, r: &TpmFinishRequest, c| {
        b.tpm_finish(r, c)
    })
    .await
}

async fn snp_begin(
    State(broker): State<AppState>,
    ClientAddress(address): ClientAddress,
) -> Result<Json<SnpChallenge>, ApiError> {
    Ok(Json(blocking(&broker, move |service| service.snp_begin(address)).await?))
}

async fn snp_finish(
    State(broker): State<AppState>,
    ClientAddress(address): ClientAddress,
    body: Body,
) -> Result<Response, ApiError> {
    serve_json(broker, address, Action::Attest, "snp_finish", body, |b, r: &SnpFinishRequest, c| {
        b.snp_finish(r, c)
    })
    .await
}

/// The relying service states the caller's address in the body; its own peer address
/// is what the audit record of the question shows.
async fn verify(
    State(broker): State<AppState>,
    Extension(conn): Extension<Peer>,
    body: Body,
) -> Result<Response, ApiError> {
    serve_json(broker, conn.address.ip(), Action::Verify, "verify", body, |b, r: &VerifyRequest, c| {
        Ok(b.verify_credential(r, c))
    })
    .await
}

/// The VM retires its own credential, from the address it is bound to.
async fn retire(
    State(broker): State<AppState>,
    ClientAddress(address): ClientAddress,
    body: Body,
) -> Result<Response, ApiError> {
    serve_json(broker, address, Action::Retire, "retire", body, |b, r: &RetireRequest, c| b.retire(r, c))
        .await
}

async fn bundle(State(broker): State<AppState>) -> Response {
    Json(broker.bundle()).into_response()
}

async fn jwks(State(broker): State<AppState>) -> Response {
    Json(broker.issuer.jwks(broker.now())).into_response()
}

/// Longest a `GET /v1/revocations?version=V&wait=S` waits for the list to change.
const MAX_REVOCATION_WAIT: Duration = Duration::from_secs(25);
/// Most such requests waiting at once; beyond it they are answered at once.
const MAX_REVOCATION_WAITERS: usize = 1024;
/// How often a waiting request looks at the list (replicas change it too).
const REVOCATION_POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevocationQuery {
    /// The `version` the caller holds: answer when the list is another (long poll).
    version: Option<String>,
    /// Seconds to wait for a change (at most [`MAX_REVOCATION_WAIT`]).
    #[serde(default)]
    wait: u64,
}

/// Requests waiting for the revocation list to change.
#[derive(Debug, Clone)]
struct RevocationWaiters(Arc<tokio::sync::Semaphore>);

/// `GET /v1/revocations`: every revocation in force, with a `version` of the list. Given the
/// `version` it holds and `wait`, the request is answered as soon as the list changes (on
/// any replica), or when `wait` runs out: offline verifiers learn of a revocation within
/// a poll interval instead of at their next refresh.
async fn revocations(
    State(broker): State<AppState>,
    Extension(waiters): Extension<RevocationWaiters>,
    query: Result<Query<RevocationQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError(Refusal::new(Code::MalformedRequest, e.body_text())))?;
    let deadline = Instant::now() + Duration::from_secs(query.wait).min(MAX_REVOCATION_WAIT);
    let waiting = match &query.version {
        Some(_) if query.wait > 0 => Arc::clone(&waiters.0).try_acquire_owned().ok(),
        _ => None,
    };
    loop {
        let list = blocking(&broker, Broker::revocation_list).await?;
        if waiting.is_none()
            || query.version.as_deref() != Some(list.version.as_str())
            || Instant::now() >= deadline
        {
            return Ok(Json(list).into_response());
        }
        tokio::time::sleep(REVOCATION_POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

async fn health(State(broker): State<AppState>) -> Response {
    Json(broker.health()).into_response()
}

async fn metrics(State(broker): State<AppState>) -> Response {
    ([("content-type", "text/plain; version=0.0.4")], broker.metrics.render()).into_response()
}

/// The subject of the connection's client certificate: the server's client verifier
/// accepts only certificates of the admin CA.
fn admin(conn: &Peer) -> Result<String, ApiError> {
    conn.client_certificate
        .as_ref()
        .and_then(|cert| mooring_attestation::x509::Certificate::from_der(cert).ok())
        .map(|cert| cert.subject().to_owned())
        .ok_or_else(|| {
            ApiError(Refusal::new(Code::Unauthorized, "admin routes need an admin client certificate"))
        })
}

async fn admin_identity(
    State(broker): State<AppState>,
    Extension(conn): Extension<Peer>,
    body: Body,
) -> Result<Response, ApiError> {
    let who = admin(&conn)?;
    serve_json(
        broker,
        conn.address.ip(),
        Action::Admin,
        "admin",
        body,
        move |b, change: &IdentityChange, _| b.set_identity(change, &who).map(|()| change.clone()),
    )
    .await
}

async fn admin_revoke(
    State(broker): State<AppState>,
    Extension(conn): Extension<Peer>,
    body: Body,
) -> Result<Response, ApiError> {
    let who = admin(&conn)?;
    serve_json(
        broker,
        conn.address.ip(),
        Action::Admin,
        "admin",
        body,
        move |b, request: &RevocationRequest, _| b.revoke(request, &who),
    )
    .await
}

async fn admin_vms(
    State(broker): State<AppState>,
    Extension(conn): Extension<Peer>,
) -> Result<Response, ApiError> {
    admin(&conn)?;
    Ok(Json(blocking(&broker, Broker::vms).await?).into_response())
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    #[serde(default)]
    after: u64,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    100
}

async fn admin_audit(
    State(broker): State<AppState>,
    Extension(conn): Extension<Peer>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    admin(&conn)?;
    let Query(query) = query.map_err(|e| ApiError(Refusal::new(Code::MalformedRequest, e.body_text())))?;
    Ok(Json(blocking(&broker, move |service| service.audit_page(query.after, query.limit)).await?)
        .into_response())
}

async fn admin_audit_verify(
    State(broker): State<AppState>,
    Extension(conn): Extension<Peer>,
) -> Result<Response, ApiError> {
    admin(&conn)?;
    let result = blocking(&broker, Broker::verify_audit).await?;
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

async fn admin_reload(
    State(broker): State<AppState>,
    Extension(conn): Extension<Peer>,
) -> Result<Response, ApiError> {
    let who = admin(&conn)?;
    let digest = blocking(&broker, move |service| service.reload(&who)).await?;
    Ok(Json(PolicyInForce { policy: digest }).into_response())
}

/// Used by the guard to answer before a handler runs.
pub(crate) fn refuse(refusal: Refusal) -> Response {
    ApiError(refusal).into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use std::collections::BTreeSet;

    /// The OpenAPI document lists exactly the routes and refusal codes the code has.
    #[test]
    fn openapi_document_matches_the_routes_and_codes() {
        let spec: serde_json::Value = serde_json::from_str(include_str!("../../openapi.json")).unwrap();
        let documented: BTreeSet<String> = spec["paths"].as_object().unwrap().keys().cloned().collect();
        let source = include_str!("mod.rs");
        let source = source.split("#[cfg(test)]").next().unwrap();
        let routed: BTreeSet<String> = source
            .split(".route(")
            .skip(1)
            .filter_map(|rest| rest.split('"').nth(1))
            .map(|path| path.replace("{v1}", mooring_attestation::protocol::API_PREFIX))
            .collect();
        assert_eq!(documented, routed);

        let codes: BTreeSet<&str> = spec["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        let known: BTreeSet<&str> = crate::refusal::Code::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(codes, known);
    }
}
