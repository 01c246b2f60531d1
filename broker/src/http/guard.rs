//! In front of every route: per-source rate limit, bounded concurrency, a deadline.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::Semaphore;

use super::{client_address, refuse, Connection};
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
    permits: Arc<Semaphore>,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl Guard {
    pub(crate) fn new(config: &Config) -> Self {
        Self {
            rate: f64::from(config.limits.requests_per_second),
            burst: f64::from(config.limits.burst.max(1)),
            timeout: Duration::from_secs(u64::from(config.limits.request_timeout_seconds)),
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

/// The middleware.
pub(crate) async fn guard(
    State((broker, guard)): State<(Arc<Broker>, Arc<Guard>)>,
    request: Request,
    next: Next,
) -> Response {
    let source = request
        .extensions()
        .get::<Connection>()
        // A forwarded address that does not read is refused by the handlers that bind it;
        // the rate limit then counts against the proxy.
        .map(|c| client_address(&broker, c.peer.ip(), request.headers()).unwrap_or(c.peer.ip()));
    if let Some(source) = source {
        if !guard.admit(source, Instant::now()) {
            // Not audited: a flood must not be able to fill the audit log.
            broker.metrics.refused(crate::audit::Action::Request, Code::RateLimited);
            return refuse(Refusal::new(
                Code::RateLimited,
                format!("too many requests from {source}; slow down"),
            ));
        }
    }
    let Ok(_permit) = Arc::clone(&guard.permits).acquire_owned().await else {
        return refuse(Refusal::new(Code::Internal, "shutting down"));
    };
    match tokio::time::timeout(guard.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            refuse(Refusal::new(Code::Timeout, format!("request took longer than {:?}", guard.timeout)))
        }
    }
}
