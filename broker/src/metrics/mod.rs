//! Prometheus metrics (text exposition format 0.0.4), kept in atomics.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::audit::Action;
use crate::refusal::Code;

mod process;

/// Upper bounds (seconds) of the request duration histogram.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    issued: AtomicU64,
    exchanged: AtomicU64,
    verified_valid: AtomicU64,
    verified_invalid: AtomicU64,
    refusals: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    durations: Mutex<BTreeMap<(&'static str, &'static str), Histogram>>,
}

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Metrics {
    pub(crate) fn issued(&self) {
        self.issued.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn exchanged(&self) {
        self.exchanged.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn verified(&self, valid: bool) {
        let counter = if valid { &self.verified_valid } else { &self.verified_invalid };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn refused(&self, action: Action, code: Code) {
        let mut map = self.refusals.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *map.entry((action.as_str(), code.as_str())).or_default() += 1;
    }

    /// Records how long a route took to answer, accepted or refused.
    pub(crate) fn observe(&self, route: &'static str, accepted: bool, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let outcome = if accepted { "accepted" } else { "refused" };
        let mut map = self.durations.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let histogram = map.entry((route, outcome)).or_default();
        for (bound, count) in BUCKETS.iter().zip(histogram.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        histogram.count += 1;
        histogram.sum += seconds;
    }

    /// The exposition text.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP mooring_credentials_issued_total Credentials issued after a successful attestation."
        );
        let _ = writeln!(out, "# TYPE mooring_credentials_issued_total counter");
        let _ = writeln!(out, "mooring_credentials_issued_total {}", self.issued.load(Ordering::Relaxed));
        let _ = writeln!(
            out,
            "# HELP mooring_tokens_exchanged_total Tokens for downstream audiences exchanged for JWT-SVIDs."
        );
        let _ = writeln!(out, "# TYPE mooring_tokens_exchanged_total counter");
        let _ = writeln!(out, "mooring_tokens_exchanged_total {}", self.exchanged.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP mooring_verifications_total Credential checks by relying services.");
        let _ = writeln!(out, "# TYPE mooring_verifications_total counter");
        let _ = writeln!(
            out,
            "mooring_verifications_total{{result=\"valid\"}} {}",
            self.verified_valid.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "mooring_verifications_total{{result=\"invalid\"}} {}",
            self.verified_invalid.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP mooring_refusals_total Refused requests by action and reason code.");
        let _ = writeln!(out, "# TYPE mooring_refusals_total counter");
        for ((action, code), count) in
            self.refusals.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter()
        {
            let _ = writeln!(out, "mooring_refusals_total{{action=\"{action}\",code=\"{code}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "# HELP mooring_request_duration_seconds Request handling time by route and outcome."
        );
        let _ = writeln!(out, "# TYPE mooring_request_duration_seconds histogram");
        for ((route, outcome), h) in
            self.durations.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter()
        {
            let labels = format!("route=\"{route}\",outcome=\"{outcome}\"");
            for (bound, count) in BUCKETS.iter().zip(h.counts.iter()) {
                let _ = writeln!(
                    out,
                    "mooring_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}"
                );
            }
            let _ =
                writeln!(out, "mooring_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "mooring_request_duration_seconds_sum{{{labels}}} {}", h.sum);
            let _ = writeln!(out, "mooring_request_duration_seconds_count{{{labels}}} {}", h.count);
        }
        let _ = writeln!(out, "# HELP mooring_build_info The broker's version.");
        let _ = writeln!(out, "# TYPE mooring_build_info gauge");
        let _ = writeln!(out, "mooring_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
        process::render(&mut out);
        out
    }
}
