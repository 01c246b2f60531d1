//! What an abuse run saw: counters its tasks share, and the report made from them.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

/// What an abuse run saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub kind: &'static str,
    /// From start to stop.
    pub seconds: f64,
    /// Requests sent (for slow bodies: heads sent, bodies begun).
    pub requests: u64,
    /// Answers by HTTP status.
    pub answers: BTreeMap<u16, u64>,
    /// Connections opened (TLS handshake done).
    pub connections: u64,
    /// Most connections open at once (slow bodies: bodies under way at once).
    pub peak_open: u64,
    /// Connection and I/O failures by kind.
    pub failures: BTreeMap<String, u64>,
    /// Slow bodies: how long the broker let one dribble before answering, milliseconds
    /// (median and longest).
    pub held_ms_p50: u64,
    pub held_ms_max: u64,
}

impl Report {
    /// Answers with status `status`.
    #[must_use]
    pub fn answered(&self, status: u16) -> u64 {
        self.answers.get(&status).copied().unwrap_or(0)
    }

    /// Every answer.
    #[must_use]
    pub fn answers_total(&self) -> u64 {
        self.answers.values().sum()
    }

    /// Failed connections or exchanges.
    #[must_use]
    pub fn failures_total(&self) -> u64 {
        self.failures.values().sum()
    }

    /// One line for people.
    #[must_use]
    pub fn summary(&self) -> String {
        let answers: Vec<String> = self.answers.iter().map(|(s, n)| format!("{s} x{n}")).collect();
        let failures: Vec<String> = self.failures.iter().map(|(k, n)| format!("{k} x{n}")).collect();
        let held = if self.held_ms_max > 0 {
            format!("; held p50 {} ms, max {} ms", self.held_ms_p50, self.held_ms_max)
        } else {
            String::new()
        };
        format!(
            "{}: {} requests in {:.1} s over {} connections (peak {} open); answers [{}]; failures [{}]{held}",
            self.kind,
            self.requests,
            self.seconds,
            self.connections,
            self.peak_open,
            answers.join(", "),
            failures.join(", ")
        )
    }
}

/// Counters the tasks share.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) requests: AtomicU64,
    connections: AtomicU64,
    open: AtomicU64,
    peak_open: AtomicU64,
    answers: Mutex<BTreeMap<u16, u64>>,
    failures: Mutex<BTreeMap<String, u64>>,
    pub(super) held_ms: Mutex<Vec<u64>>,
}

impl Counters {
    pub(super) fn answered(&self, status: u16) {
        *self.answers.lock().unwrap_or_else(PoisonError::into_inner).entry(status).or_default() += 1;
    }

    pub(super) fn failed(&self, what: &str, error: &io::Error) {
        let key = format!("{what}: {:?}", error.kind());
        *self.failures.lock().unwrap_or_else(PoisonError::into_inner).entry(key).or_default() += 1;
    }

    pub(super) fn opened(&self) -> OpenGuard<'_> {
        self.connections.fetch_add(1, Ordering::Relaxed);
        let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_open.fetch_max(open, Ordering::Relaxed);
        OpenGuard(self)
    }

    pub(super) fn report(&self, kind: &'static str, seconds: f64) -> Report {
        let mut held = self.held_ms.lock().unwrap_or_else(PoisonError::into_inner).clone();
        held.sort_unstable();
        Report {
            kind,
            seconds,
            requests: self.requests.load(Ordering::Relaxed),
            answers: self.answers.lock().unwrap_or_else(PoisonError::into_inner).clone(),
            connections: self.connections.load(Ordering::Relaxed),
            peak_open: self.peak_open.load(Ordering::Relaxed),
            failures: self.failures.lock().unwrap_or_else(PoisonError::into_inner).clone(),
            held_ms_p50: held.get(held.len() / 2).copied().unwrap_or(0),
            held_ms_max: held.last().copied().unwrap_or(0),
        }
    }
}

/// Counts a connection as open while it lives.
pub(super) struct OpenGuard<'a>(&'a Counters);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}
