//! In front of every route: per-source rate limit; the body read whole, under a deadline
//! and a minimum rate, before anything is held for the request; then a request slot,
//! waited for a bounded time (else `503 overloaded` at once), and a deadline. Health and
//! metrics take no slot, so they answer however busy the broker is.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt as _;
use tokio::sync::Semaphore;

use mooring_serve::Peer;

use super::{client_address, refuse};
use crate::audit::Action;
use crate::config::Config;
use crate::refusal::{Code, Refusal};
use crate::service::Broker;

/// Most sources tracked at once; beyond it idle buckets are dropped first.
const MAX_TRACKED_SOURCES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Shared guard state.
#[derive(Debug)]
pub(crate) struct Guard {
    rate: f64,
    burst: f64,
    timeout: Duration,
    body: BodyLimits,
    slot_wait: Duration,
    permits: Arc<Semaphore>,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl Guard {
    pub(crate) fn new(config: &Config) -> Self {
        Self {
            rate: f64::from(config.limits.requests_per_second),
            burst: f64::from(config.limits.burst.max(1)),
            timeout: Duration::from_secs(u64::from(config.limits.request_timeout_seconds)),
            body: BodyLimits {
                max_bytes: config.limits.max_body_bytes,
                deadline: Duration::from_secs(u64::from(config.limits.body_timeout_seconds)),
                min_rate: f64::from(config.limits.min_body_bytes_per_second.max(1)),
            },
            slot_wait: Duration::from_millis(u64::from(config.limits.slot_wait_ms)),
            permits: Arc::new(Semaphore::new(config.limits.max_concurrent_requests)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token from `source`'s bucket.
    fn admit(&self, source: IpAddr, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_TRACKED_SOURCES && !buckets.contains_key(&source) {
            let burst = self.burst;
            let rate = self.rate;
            // Forget sources whose bucket has refilled: they lose nothing.
            buckets.retain(|_, b| b.tokens + now.duration_since(b.updated).as_secs_f64() * rate < burst);
        }
        let bucket = buckets.entry(source).or_insert(Bucket { tokens: self.burst, updated: now });
        let refill = now.duration_since(bucket.updated).as_secs_f64() * self.rate;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// How a body must arrive.
#[derive(Debug, Clone, Copy)]
struct BodyLimits {
    max_bytes: usize,
    deadline: Duration,
    /// Bytes per second, averaged from the start, required after [`BODY_GRACE`].
    min_rate: f64,
}

/// Time a body may take before the minimum rate applies (a TLS record or two).
const BODY_GRACE: Duration = Duration::from_secs(1);

/// Routes that take no request slot: health and metrics must answer when everything else
/// waits, and a revocation list request may wait for a change (it bounds its own waiters).
fn takes_no_slot(path: &str) -> bool {
    path == "/metrics"
        || path
            .strip_prefix(mooring_attestation::protocol::API_PREFIX)
            .is_some_and(|rest| rest == "/health" || rest == "/revocations")
}

/// Reads `body` whole: at most `max_bytes`, within `deadline`, and after the grace period
/// at least `min_rate` bytes per second on average.
async fn read_body(mut body: Body, limits: BodyLimits) -> Result<Bytes, Refusal> {
    let started = Instant::now();
    // The announced length (bounded) sizes the buffer once; a body that lies only grows it.
    let announced = usize::try_from(axum::body::HttpBody::size_hint(&body).lower()).unwrap_or(0);
    let mut buffer = Vec::with_capacity(announced.min(limits.max_bytes));
    loop {
        // The latest moment the next bytes may arrive: the deadline, or when the bytes read
        // so far fall below the minimum rate.
        #[allow(clippy::cast_precision_loss)] // a body is far below 2^52 bytes
        let by_rate = BODY_GRACE + Duration::from_secs_f64(buffer.len() as f64 / limits.min_rate);
        let wait = limits.deadline.min(by_rate).saturating_sub(started.elapsed());
        let frame = match tokio::time::timeout(wait, body.frame()).await {
            Err(_) => {
                return Err(Refusal::new(
                    Code::Timeout,
                    format!(
                        "request body too slow: {} bytes in {:.1} s (at least {} bytes/s after the first \
                         second, all within {} s)",
                        buffer.len(),
                        started.elapsed().as_secs_f64(),
                        limits.min_rate,
                        limits.deadline.as_secs()
                    ),
                ))
            }
            Ok(None) => return Ok(Bytes::from(buffer)),
            Ok(Some(Err(e))) => {
                return Err(Refusal::new(
                    Code::MalformedRequest,
                    format!("cannot read the request body: {e}"),
                ))
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if buffer.len().saturating_add(data.len()) > limits.max_bytes {
                return Err(Refusal::new(
                    Code::BodyTooLarge,
                    format!("request body exceeds {} bytes", limits.max_bytes),
                ));
            }
            buffer.extend_from_slice(&data);
        }
    }
}

/// The middleware.
pub(crate) async fn guard(
    State((broker, guard)): State<(Arc<Broker>, Arc<Guard>)>,
    request: Request,
    next: Next,
) -> Response {
    let source = request.extensions().get::<Peer>().map(|c| {
        // A forwarded address that does not read is refused by the handlers that bind
        // it; the rate limit then counts against the proxy.
        client_address(&broker, c.address.ip(), request.headers()).unwrap_or(c.address.ip())
    });
    if let Some(source) = source {
        if !guard.admit(source, Instant::now()) {
            // Not audited: a flood must not be able to fill the audit log.
            broker.metrics.refused(Action::Request, Code::RateLimited);
            return refuse(Refusal::new(
                Code::RateLimited,
                format!("too many requests from {source}; slow down"),
            ));
        }
    }
    let (parts, body) = request.into_parts();
    let body = match read_body(body, guard.body).await {
        Ok(body) => body,
        Err(refusal) => {
            broker.tally_refusal(Action::Request, &refusal, source);
            return refuse(refusal);
        }
    };
    let request = Request::from_parts(parts, Body::from(body));
    let _permit = if takes_no_slot(request.uri().path()) {
        None
    } else {
        match tokio::time::timeout(guard.slot_wait, Arc::clone(&guard.permits).acquire_owned()).await {
            Ok(Ok(permit)) => Some(permit),
            Ok(Err(_)) => return refuse(Refusal::new(Code::Internal, "shutting down")),
            Err(_) => {
                broker.metrics.refused(Action::Request, Code::Overloaded);
                return refuse(Refusal::new(
                    Code::Overloaded,
                    format!("no request slot free within {:?}: retry shortly", guard.slot_wait),
                ));
            }
        }
    };
    match tokio::time::timeout(guard.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            refuse(Refusal::new(Code::Timeout, format!("request took longer than {:?}", guard.timeout)))
        }
    }
}
