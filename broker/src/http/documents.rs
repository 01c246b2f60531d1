//! What anyone may fetch: the trust bundle, the revocation list (with its long poll), the
//! broker's health and metrics. None of these takes a request slot.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use mooring_attestation::protocol::RevocationList;
use serde::Deserialize;

use super::{blocking, AppState, ErrorResponse, Work};
use crate::refusal::{Code, Refusal};
use crate::service::Broker;

pub(super) async fn bundle(State(broker): State<AppState>) -> Response {
    Json(broker.bundle()).into_response()
}

pub(super) async fn jwks(State(broker): State<AppState>) -> Response {
    Json(broker.jwks()).into_response()
}

/// `GET /.well-known/openid-configuration` (OpenID Connect Discovery 1.0 §4).
pub(super) async fn openid_configuration(State(broker): State<AppState>) -> Result<Response, ErrorResponse> {
    Ok(Json(broker.openid_configuration()?).into_response())
}

/// `GET /.well-known/jwks.json`: the issuer's keys in OIDC form.
pub(super) async fn oidc_jwks(State(broker): State<AppState>) -> Result<Response, ErrorResponse> {
    Ok(Json(broker.oidc_jwks()?).into_response())
}

/// Longest a `GET /v1/revocations?version=V&wait=S` waits for the list to change.
const MAX_REVOCATION_WAIT: Duration = Duration::from_secs(25);
/// Most such requests waiting at once; beyond it they are answered at once.
const MAX_REVOCATION_WAITERS: usize = 1024;
/// Longest `version` a caller may send (the broker's are 16 hex digits).
const MAX_VERSION_LENGTH: usize = 64;
/// How often a waiting request looks at the list (replicas change it too).
const REVOCATION_POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RevocationQuery {
    /// The `version` the caller holds: answer when the list is another (long poll).
    version: Option<String>,
    /// Seconds to wait for a change (at most [`MAX_REVOCATION_WAIT`]).
    #[serde(default)]
    wait: u64,
}

/// A revocation list and when it was read from the store.
type ReadList = (Instant, Arc<RevocationList>);

/// Requests waiting for the revocation list to change, and the list they last read: the
/// waiters share one read of the store per poll interval, however many there are.
#[derive(Debug, Clone)]
pub(super) struct RevocationWaiters {
    pub(super) slots: Arc<tokio::sync::Semaphore>,
    latest: Arc<std::sync::Mutex<Option<ReadList>>>,
}

impl RevocationWaiters {
    pub(super) fn new() -> Self {
        Self { slots: Arc::new(tokio::sync::Semaphore::new(MAX_REVOCATION_WAITERS)), latest: Arc::default() }
    }

    /// The list as a waiter read it less than a poll interval ago, if any.
    fn recent(&self) -> Option<Arc<RevocationList>> {
        let latest = self.latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        latest.as_ref().filter(|(at, _)| at.elapsed() < REVOCATION_POLL).map(|(_, list)| Arc::clone(list))
    }

    fn remember(&self, list: &Arc<RevocationList>) {
        *self.latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((Instant::now(), Arc::clone(list)));
    }
}

/// `GET /v1/revocations`: every revocation in force, with a `version` of the list. Given the
/// `version` it holds and `wait`, the request is answered as soon as the list changes (on
/// any replica), or when `wait` runs out: offline verifiers learn of a revocation within
/// a poll interval instead of at their next refresh.
pub(super) async fn revocations(
    State(broker): State<AppState>,
    Extension(waiters): Extension<RevocationWaiters>,
    query: Result<Query<RevocationQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ErrorResponse> {
    let Query(query) =
        query.map_err(|e| ErrorResponse(Refusal::new(Code::MalformedRequest, e.body_text())))?;
    if query.version.as_ref().is_some_and(|v| v.chars().count() > MAX_VERSION_LENGTH) {
        let reason =
            format!("version longer than {MAX_VERSION_LENGTH} characters (the broker's are 16 hex digits)");
        return Err(ErrorResponse(Refusal::new(Code::MalformedRequest, reason)));
    }
    let deadline = Instant::now() + Duration::from_secs(query.wait).min(MAX_REVOCATION_WAIT);
    let waiting = match &query.version {
        Some(_) if query.wait > 0 => Arc::clone(&waiters.slots).try_acquire_owned().ok(),
        _ => None,
    };
    // The first look is the store's own; later looks of a waiter may share another's.
    let mut list = Arc::new(blocking(&broker, Work::Reads, Broker::revocation_list).await?);
    waiters.remember(&list);
    loop {
        if waiting.is_none()
            || query.version.as_deref() != Some(list.version.as_str())
            || Instant::now() >= deadline
        {
            return Ok(Json(&*list).into_response());
        }
        tokio::time::sleep(REVOCATION_POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
        list = match waiters.recent() {
            Some(recent) => recent,
            None => {
                let fresh = Arc::new(blocking(&broker, Work::Reads, Broker::revocation_list).await?);
                waiters.remember(&fresh);
                fresh
            }
        };
    }
}

/// `ok`, or `503 overloaded` while the store takes no new work: a load balancer then
/// sends VMs elsewhere.
pub(super) async fn health(State(broker): State<AppState>) -> Response {
    match super::accepting(&broker) {
        Ok(()) => Json(broker.health()).into_response(),
        Err(refused) => refused.into_response(),
    }
}

pub(super) async fn metrics(State(broker): State<AppState>) -> Response {
    ([("content-type", "text/plain; version=0.0.4")], broker.metrics.render()).into_response()
}
