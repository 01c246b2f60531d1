//! An abuse run on a thread of its own: the state its tasks share, starting them, stopping
//! them.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::flood::keep_alive;
use super::report::{Counters, Report};
use super::slow::{slow_body, Gate};
use super::{bodies, Abuse, Endpoint, RETRY_PAUSE, STOP_GRACE};

/// What every task of a run shares.
pub(super) struct Shared {
    endpoint: Endpoint,
    pub(super) counters: Counters,
    stop: AtomicBool,
    /// Requests handed out so far (the budget of a bounded flood).
    next: AtomicU64,
}

impl Shared {
    pub(super) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The next request number, or none when `budget` is spent or the run stopped.
    pub(super) fn take(&self, budget: Option<u64>) -> Option<u64> {
        if self.stopped() {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        budget.is_none_or(|budget| n < budget).then_some(n)
    }

    /// A new connection from `source`; none (after counting the failure and pausing
    /// [`RETRY_PAUSE`]) when the broker cannot be reached.
    pub(super) async fn connect(&self, source: IpAddr) -> Option<TlsStream<TcpStream>> {
        match self.endpoint.connect(source).await {
            Ok(stream) => Some(stream),
            Err(e) => {
                self.counters.failed("connect", &e);
                tokio::time::sleep(RETRY_PAUSE).await;
                None
            }
        }
    }
}

/// An abuse run on a thread of its own; stopped (and joined) when dropped.
pub struct Background {
    kind: &'static str,
    shared: Arc<Shared>,
    started: Instant,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Background {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Background").field("kind", &self.kind).finish_non_exhaustive()
    }
}

impl Background {
    /// Starts `abuse` against `endpoint`.
    ///
    /// # Errors
    /// When the thread or its runtime cannot be started.
    pub fn start(endpoint: Endpoint, abuse: Abuse) -> anyhow::Result<Self> {
        let kind = abuse.name();
        let shared = Arc::new(Shared {
            endpoint,
            counters: Counters::default(),
            stop: AtomicBool::new(false),
            next: AtomicU64::new(0),
        });
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().context("abuse runtime")?;
        let task_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("abuse-{kind}"))
            .spawn(move || runtime.block_on(run(task_shared, abuse)))
            .context("abuse thread")?;
        Ok(Self { kind, shared, started: Instant::now(), thread: Some(thread) })
    }

    /// What it saw so far.
    #[must_use]
    pub fn snapshot(&self) -> Report {
        self.shared.counters.report(self.kind, self.started.elapsed().as_secs_f64())
    }

    /// Whether a bounded run has sent its last request and had its answer.
    #[must_use]
    pub fn finished(&self) -> bool {
        self.thread.as_ref().is_none_or(std::thread::JoinHandle::is_finished)
    }

    /// Waits until a bounded run is done, at most `limit`; then stops it.
    #[must_use]
    pub fn wait(self, limit: Duration) -> Report {
        let deadline = Instant::now() + limit;
        while !self.finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop()
    }

    /// Stops it and reports.
    #[must_use]
    pub fn stop(mut self) -> Report {
        self.halt()
    }

    fn halt(&mut self) -> Report {
        self.shared.stop.store(true, Ordering::Relaxed);
        let seconds = self.started.elapsed().as_secs_f64();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.shared.counters.report(self.kind, seconds)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}

/// Runs every task of `abuse` until they end, or until a stop plus [`STOP_GRACE`].
async fn run(shared: Arc<Shared>, abuse: Abuse) {
    let mut tasks = tokio::task::JoinSet::new();
    match abuse {
        Abuse::Malformed { sources, connections, requests } => {
            let set = Arc::new(bodies::MalformedSet::new());
            for source in &sources {
                for _ in 0..connections.max(1) {
                    let (shared, set, source) = (Arc::clone(&shared), Arc::clone(&set), *source);
                    tasks.spawn(async move {
                        keep_alive(&shared, source, requests, |n| set.get(n)).await;
                    });
                }
            }
        }
        Abuse::BeginFlood { sources } => {
            for source in sources {
                let shared = Arc::clone(&shared);
                tasks.spawn(async move { keep_alive(&shared, source, None, bodies::begin_flood).await });
            }
        }
        Abuse::SlowBodies { sources, connections, byte_interval } => {
            let gate = Arc::new(Gate::new(connections));
            for i in 0..connections {
                let Some(source) = sources.get(i % sources.len().max(1)).copied() else { break };
                let (shared, gate) = (Arc::clone(&shared), Arc::clone(&gate));
                tasks.spawn(async move { slow_body(&shared, source, byte_interval, &gate).await });
                // Spread the handshakes a little, as many independent clients would.
                if i % 50 == 49 {
                    tokio::task::yield_now().await;
                }
            }
        }
    }
    let mut stopped_at = None;
    while !tasks.is_empty() {
        tokio::select! {
            _ = tasks.join_next() => {}
            () = tokio::time::sleep(Duration::from_millis(20)) => {
                if shared.stopped() {
                    let at = *stopped_at.get_or_insert_with(Instant::now);
                    if at.elapsed() > STOP_GRACE {
                        tasks.shutdown().await;
                    }
                }
            }
        }
    }
}
