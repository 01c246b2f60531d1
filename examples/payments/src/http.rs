//! Routes: `POST /pay` for callers with a valid Mooring credential, `GET /health`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use mooring_serve::Peer;
use serde::{Deserialize, Serialize};

use crate::caller::{Gate, RequestBinding};
use crate::refusal::Refusal;

/// Largest payment request accepted.
const MAX_BODY_BYTES: usize = 16 * 1024;

/// Shared by the routes.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) gate: Gate,
    pub(crate) clock: fn() -> i64,
}

/// `POST /pay`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payment {
    amount_cents: u64,
    currency: String,
    /// The caller's idempotency reference.
    reference: String,
}

/// Answer to an accepted payment.
#[derive(Debug, Clone, Serialize)]
struct Receipt {
    status: &'static str,
    payer: String,
    credential: String,
    amount_cents: u64,
    currency: String,
    reference: String,
}

pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/pay", post(pay))
        .route("/health", get(health))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(app)
}

async fn pay(
    State(app): State<Arc<App>>,
    Extension(connection): Extension<Peer>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Receipt>, Refusal> {
    let binding = RequestBinding { method: "POST", path: "/pay", body: &body };
    let caller = match app.gate.admit(&connection, &headers, binding, (app.clock)()).await {
        Ok(caller) => caller,
        Err(refusal) => {
            tracing::info!(peer = %connection.address, code = %refusal.code, reason = %refusal.reason, "payment refused");
            return Err(refusal);
        }
    };
    let payment: Payment =
        serde_json::from_slice(&body).map_err(|e| Refusal::malformed(format!("payment: {e}")))?;
    if payment.currency.len() != 3 || !payment.currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Refusal::malformed("currency: three capital letters (ISO 4217)"));
    }
    if payment.reference.is_empty() || payment.reference.len() > 128 {
        return Err(Refusal::malformed("reference: 1..128 characters"));
    }
    tracing::info!(
        peer = %connection.address, payer = %caller.spiffe_id, serial = %caller.serial,
        amount_cents = payment.amount_cents, currency = %payment.currency, "payment accepted"
    );
    Ok(Json(Receipt {
        status: "accepted",
        payer: caller.spiffe_id,
        credential: caller.serial,
        amount_cents: payment.amount_cents,
        currency: payment.currency,
        reference: payment.reference,
    }))
}

async fn health(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok", "mode": app.gate.mode }))
}
