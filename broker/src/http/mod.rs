//! The HTTP layer: routes, one error type, and the guard in front of them. Handlers
//! parse, call the service on the blocking pool, and answer once what the service wrote
//! is durable.

mod admin;
mod documents;
mod guard;
pub(crate) mod tls;
mod vm;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use mooring_attestation::protocol::ErrorBody;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use mooring_serve::Peer;

pub(crate) use self::guard::Guard;

use crate::audit::Action;
use crate::refusal::{Code, Refusal};
use crate::service::{Broker, Caller};
use crate::store::WriteMark;

/// How connections are served: one connection buffers at most one TLS record while reading
/// (hyper's default is 400 KiB). Bodies stream through it; measured under a boot storm, it
/// saves ~90 KiB per open connection at no cost in throughput (8 KiB cost a sixth of it).
pub(crate) const LIMITS: mooring_serve::Limits = mooring_serve::Limits { read_buffer: 16 * 1024 };

/// Every error answer: a stable code and one line.
#[derive(Debug)]
pub(crate) struct ErrorResponse(pub(crate) Refusal);

impl From<Refusal> for ErrorResponse {
    fn from(refusal: Refusal) -> Self {
        Self(refusal)
    }
}

impl IntoResponse for ErrorResponse {
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
    oidc_issuer(Router::new())
        .route(&format!("{v1}/tpm/begin"), vm::from_vm(Action::Begin, "tpm_begin", Broker::tpm_begin))
        .route(&format!("{v1}/tpm/finish"), vm::from_vm(Action::Attest, "tpm_finish", Broker::tpm_finish))
        .route(&format!("{v1}/snp/begin"), vm::from_vm(Action::Begin, "snp_begin", Broker::snp_begin))
        .route(&format!("{v1}/snp/finish"), vm::from_vm(Action::Attest, "snp_finish", Broker::snp_finish))
        .route(&format!("{v1}/azure/begin"), vm::from_vm(Action::Begin, "azure_begin", Broker::azure_begin))
        .route(
            &format!("{v1}/azure/finish"),
            vm::from_vm(Action::Attest, "azure_finish", Broker::azure_finish),
        )
        .route(&format!("{v1}/credentials/verify"), post(vm::verify))
        .route(&format!("{v1}/credentials/retire"), vm::from_vm(Action::Retire, "retire", Broker::retire))
        .route(
            &format!("{v1}/credentials/exchange"),
            vm::from_vm(Action::Exchange, "exchange", Broker::exchange),
        )
        .route(&format!("{v1}/bundle"), get(documents::bundle))
        .route(&format!("{v1}/bundle/jwks"), get(documents::jwks))
        .route(&format!("{v1}/revocations"), get(documents::revocations))
        .route(&format!("{v1}/health"), get(documents::health))
        .route("/metrics", get(documents::metrics))
        .route(&format!("{v1}/admin/identities"), admin::posted(admin::set_identity))
        .route(&format!("{v1}/admin/revocations"), admin::posted(Broker::revoke))
        .route(&format!("{v1}/admin/vms"), get(admin::vms))
        .route(&format!("{v1}/admin/audit"), get(admin::audit))
        .route(&format!("{v1}/admin/audit/verify"), post(admin::audit_verify))
        .route(&format!("{v1}/admin/policy/reload"), post(admin::reload))
        .route(&format!("{v1}/admin/policy/dry-run"), admin::posted(Broker::dry_run))
        .fallback(|| async { ErrorResponse(Refusal::new(Code::NotFound, "no such route")) })
        .layer(Extension(documents::RevocationWaiters::new()))
        .layer(axum::extract::DefaultBodyLimit::max(broker.config.limits.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state((Arc::clone(&broker), guard), guard::guard))
        .with_state(broker)
}

/// The OpenID Connect issuer's documents (`[federation]`), which relying parties fetch
/// anonymously: on the API listener, and alone on the issuer's own listener.
fn oidc_issuer(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/.well-known/openid-configuration", get(documents::openid_configuration))
        .route("/.well-known/jwks.json", get(documents::oidc_jwks))
}

/// The issuer's own listener (`[federation] listen`): its two documents and nothing else,
/// behind a guard of its own.
pub(crate) fn issuer_router(broker: Arc<Broker>) -> Router {
    let guard = Arc::new(Guard::new(&broker.config));
    oidc_issuer(Router::new())
        .fallback(|| async { ErrorResponse(Refusal::new(Code::NotFound, "no such route")) })
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
    type Rejection = ErrorResponse;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        broker: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let conn = parts
            .extensions
            .get::<Peer>()
            .ok_or_else(|| ErrorResponse(crate::service::internal("request", "no connection details")))?;
        Ok(Self(client_address(broker, conn.address.ip(), &parts.headers)?))
    }
}

/// Reads and parses a JSON body; refusals are audited (nothing else is stored).
fn parse<T: DeserializeOwned>(
    broker: &Broker,
    action: Action,
    body: Body,
    address: IpAddr,
) -> Result<(T, Caller), ErrorResponse> {
    // A body that does not parse proves nothing: counted, not recorded one by one.
    let refuse = |refusal: Refusal| {
        broker.tally_refusal(action, &refusal, Some(address));
        ErrorResponse(refusal)
    };
    let body = body.map_err(|rejection| {
        let refusal = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Refusal::new(
                Code::BodyTooLarge,
                format!(
                    "request body exceeds {} bytes (the broker's limits.max_body_bytes)",
                    broker.config.limits.max_body_bytes
                ),
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
    // Every body is a JSON object: serde would also read a struct from an array.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(refuse(Refusal::new(Code::MalformedRequest, "request body: a JSON object is expected")));
    }
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

/// What a service call does to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Work {
    /// It may write: it does not start while the store has too many writes waiting.
    Writes,
    /// It only reads (the operator's views, the revocation list): it always runs.
    Reads,
}

/// Runs a service call off the async runtime; answers once what it wrote is durable. A
/// call whose request was dropped while it waited for a thread is skipped: under a storm
/// the queue is long, and work nobody will receive (consuming a challenge, signing,
/// recording) would only lengthen it.
async fn blocking<T: Send + 'static>(
    broker: &Arc<Broker>,
    work: Work,
    f: impl FnOnce(&Broker) -> Result<T, Refusal> + Send + 'static,
) -> Result<T, ErrorResponse> {
    // A call that may write does not start while the store has too many writes waiting:
    // it is answered `overloaded` before it uses up a challenge, signs or writes anything.
    if work == Work::Writes {
        accepting(broker)?;
    }
    let since = broker.store.mark();
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
        Ok(result) => result.map_err(ErrorResponse),
        Err(e) => Err(ErrorResponse(crate::service::internal("request task", e))),
    };
    settled(broker, since, result).await
}

/// Whether the store takes new work ([`crate::store::Store::accepting`]).
fn accepting(broker: &Broker) -> Result<(), ErrorResponse> {
    broker.store.accepting().map_err(|e| ErrorResponse(crate::service::store_failure("the store", e)))
}

/// `result`, once every write made for it since `since` (a decision, its audit record) is
/// durable: an answer never gets ahead of its record.
async fn settled<T>(
    broker: &Broker,
    since: WriteMark,
    result: Result<T, ErrorResponse>,
) -> Result<T, ErrorResponse> {
    broker
        .store
        .durable(since)
        .await
        .map_err(|e| ErrorResponse(crate::service::internal("making the record durable", e)))?;
    result
}

type Body = Result<Bytes, axum::extract::rejection::BytesRejection>;

/// Used by the guard to answer before a handler runs.
pub(crate) fn refuse(refusal: Refusal) -> Response {
    ErrorResponse(refusal).into_response()
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
