//! The routes VMs and relying services call with a JSON body: attestation, verification,
//! retirement. Each parses its body, runs one service call on the blocking pool, and is
//! timed for the metrics, refusals included.

use std::net::IpAddr;
use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{post, MethodRouter};
use axum::{Extension, Json};
use mooring_attestation::protocol::VerifyRequest;
use mooring_serve::Peer;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{blocking, parse, settled, AppState, Body, ClientAddress, ErrorResponse, Work};
use crate::audit::Action;
use crate::refusal::Refusal;
use crate::service::{Broker, Caller};

/// A service call on a parsed body.
pub(super) type Call<Req, Resp> = fn(&Broker, &Req, &Caller) -> Result<Resp, Refusal>;

/// Parses the JSON body, runs the service call on the blocking pool, times it and
/// answers JSON.
pub(super) async fn serve_json<Req, Resp>(
    broker: AppState,
    address: IpAddr,
    action: Action,
    route: &'static str,
    body: Body,
    call: impl FnOnce(&Broker, &Req, &Caller) -> Result<Resp, Refusal> + Send + 'static,
) -> Result<Response, ErrorResponse>
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
{
    let started = Instant::now();
    let since = broker.store.mark();
    let answer = match parse::<Req>(&broker, action, body, address) {
        Ok((request, caller)) => {
            blocking(&broker, Work::Writes, move |service| call(service, &request, &caller)).await
        }
        Err(refused) => settled(&broker, since, Err(refused)).await,
    };
    // Refusals are timed too: a flood of them is load the histogram must show.
    broker.metrics.observe(route, answer.is_ok(), started.elapsed());
    Ok(Json(answer?).into_response())
}

/// `POST` of a JSON body from a VM: the call binds the VM's address (the direct peer, or
/// what a trusted proxy forwarded). `route` names it in the metrics.
pub(super) fn from_vm<Req, Resp>(
    action: Action,
    route: &'static str,
    call: Call<Req, Resp>,
) -> MethodRouter<AppState>
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
{
    post(move |State(broker): State<AppState>, ClientAddress(address): ClientAddress, body: Body| {
        serve_json(broker, address, action, route, body, call)
    })
}

/// `POST /v1/credentials/verify`: the relying service states the caller's address in the
/// body; its own peer address is what the audit record of the question shows.
pub(super) async fn verify(
    State(broker): State<AppState>,
    Extension(peer): Extension<Peer>,
    body: Body,
) -> Result<Response, ErrorResponse> {
    serve_json(broker, peer.address.ip(), Action::Verify, "verify", body, |b, r: &VerifyRequest, c| {
        Ok(b.verify_credential(r, c))
    })
    .await
}
