//! Abuse traffic against a real broker, for the abuse tests (`tests/tests/abuse.rs`) and
//! the benchmark's abuse mode (`mooring-load --abuse`): a flood of malformed, oversized
//! and unknown-challenge requests; slow-body connections that announce a large body and
//! send it a byte at a time; a flood of `begin` calls. Each runs on one thread of its own
//! (an async runtime, so a thousand connections cost no thousand threads) from many
//! loopback source addresses, until told to stop or its request budget is spent, and
//! reports what the broker answered.

mod bodies;
mod wire;

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;

pub use self::wire::Endpoint;

/// Length the slow bodies announce (below the broker's default `max_body_bytes`, so it
/// waits for all of it).
pub const SLOW_BODY_BYTES: usize = 200 * 1024;
/// How long tasks may take to notice a stop before they are aborted.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Pause after a failed connection, so a refusing broker is not spun against.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// One kind of abuse.
#[derive(Debug, Clone)]
pub enum Abuse {
    /// Malformed JSON, `{"<200 KB key>":1}` and 200 KB strings serde would echo in its
    /// error, bodies over `max_body_bytes`, junk EK certificates, credentials the broker
    /// never issued, and `finish` calls naming unknown challenges; `connections` keep-alive
    /// connections from each source, `requests` in all (none: until stopped).
    Malformed { sources: Vec<IpAddr>, connections: usize, requests: Option<u64> },
    /// `connections` connections spread over `sources`, each announcing a
    /// [`SLOW_BODY_BYTES`] body and sending it one byte every `byte_interval`; when the
    /// broker cuts one off, it connects again.
    SlowBodies { sources: Vec<IpAddr>, connections: usize, byte_interval: Duration },
    /// One keep-alive connection per source, each sending `POST /v1/snp/begin` and
    /// `POST /v1/tpm/begin` with junk keys, one after another, as fast as answered.
    BeginFlood { sources: Vec<IpAddr> },
}

impl Abuse {
    /// Its name in reports.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Malformed { .. } => "malformed",
            Self::SlowBodies { .. } => "slow-bodies",
            Self::BeginFlood { .. } => "begin-flood",
        }
    }
}

/// `count` source addresses `127.0.subnet.1`, `127.0.subnet.2`, ... (at most 254).
#[must_use]
pub fn sources(subnet: u8, count: u8) -> Vec<IpAddr> {
    (1..=count.min(254)).map(|host| IpAddr::V4(Ipv4Addr::new(127, 0, subnet, host))).collect()
}

/// `count` source addresses each in a /24 of its own (`127.1.1.1`, `127.1.2.1`, ...), so
/// the broker's refusal summaries have as many prefixes to name as they can: their
/// longest records.
#[must_use]
pub fn spread_sources(count: u8) -> Vec<IpAddr> {
    (1..=count.min(254)).map(|net| IpAddr::V4(Ipv4Addr::new(127, 1, net, 1))).collect()
}

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
struct Counters {
    requests: AtomicU64,
    connections: AtomicU64,
    open: AtomicU64,
    peak_open: AtomicU64,
    answers: Mutex<BTreeMap<u16, u64>>,
    failures: Mutex<BTreeMap<String, u64>>,
    held_ms: Mutex<Vec<u64>>,
}

impl Counters {
    fn answered(&self, status: u16) {
        *self.answers.lock().unwrap_or_else(PoisonError::into_inner).entry(status).or_default() += 1;
    }

    fn failed(&self, what: &str, error: &io::Error) {
        let key = format!("{what}: {:?}", error.kind());
        *self.failures.lock().unwrap_or_else(PoisonError::into_inner).entry(key).or_default() += 1;
    }

    fn opened(&self) -> OpenGuard<'_> {
        self.connections.fetch_add(1, Ordering::Relaxed);
        let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_open.fetch_max(open, Ordering::Relaxed);
        OpenGuard(self)
    }

    fn report(&self, kind: &'static str, seconds: f64) -> Report {
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
struct OpenGuard<'a>(&'a Counters);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What every task of a run shares.
struct Shared {
    endpoint: Endpoint,
    counters: Counters,
    stop: AtomicBool,
    /// Requests handed out so far (the budget of a bounded flood).
    next: AtomicU64,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The next request number, or none when `budget` is spent or the run stopped.
    fn take(&self, budget: Option<u64>) -> Option<u64> {
        if self.stopped() {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        budget.is_none_or(|budget| n < budget).then_some(n)
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

/// Requests one after another on a keep-alive connection from `source` (connecting again
/// whenever the broker closes it), until the budget is spent or the run stops.
async fn keep_alive(
    shared: &Shared,
    source: IpAddr,
    budget: Option<u64>,
    request: impl Fn(u64) -> bodies::Junk,
) {
    let counters = &shared.counters;
    'connections: loop {
        if shared.stopped() {
            return;
        }
        let mut stream = match shared.endpoint.connect(source).await {
            Ok(stream) => stream,
            Err(e) => {
                counters.failed("connect", &e);
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        let _open = counters.opened();
        loop {
            let Some(n) = shared.take(budget) else { return };
            let junk = request(n);
            counters.requests.fetch_add(1, Ordering::Relaxed);
            let exchange = async {
                let sent =
                    wire::send(&mut stream, &wire::post_head(junk.path, junk.body.len()), &junk.body).await;
                match (sent, wire::read_answer(&mut stream).await) {
                    // A body refused part way (too large) is answered before it is all
                    // sent: the answer counts, not the broken pipe.
                    (_, Ok(answer)) => Ok(answer),
                    (Err(e), Err(_)) | (Ok(()), Err(e)) => Err(e),
                }
            };
            match exchange.await {
                Ok(answer) => {
                    counters.answered(answer.status);
                    // After a body it did not read to the end (refused before it was
                    // read: rate limited; or part way: too slow, too large), the broker
                    // closes the connection.
                    if answer.close || matches!(answer.status, 408 | 413 | 429) {
                        continue 'connections;
                    }
                }
                Err(e) => {
                    counters.failed("exchange", &e);
                    continue 'connections;
                }
            }
        }
    }
}

/// Holds the first wave of slow bodies until every connection is made, so that all of
/// them dribble at once (the broker cuts each off about a second after its head, sooner
/// than a thousand handshakes may take).
struct Gate {
    wanted: u64,
    ready: AtomicU64,
    open: tokio::sync::watch::Sender<bool>,
}

impl Gate {
    /// Longest wait at the gate: well within the broker's wait for a request head.
    const LIMIT: Duration = Duration::from_secs(5);

    fn new(wanted: usize) -> Self {
        let (open, _) = tokio::sync::watch::channel(false);
        Self { wanted: wanted as u64, ready: AtomicU64::new(0), open }
    }

    /// Waits until everyone is ready, or [`Gate::LIMIT`] after the first to arrive.
    async fn pass(&self) {
        let mut open = self.open.subscribe();
        if self.ready.fetch_add(1, Ordering::Relaxed) + 1 >= self.wanted {
            self.open.send_replace(true);
        }
        let _ = tokio::time::timeout(Self::LIMIT, open.wait_for(|open| *open)).await;
    }
}

/// One slow-body connection after another from `source`, until the run stops; the first
/// waits at `gate`.
async fn slow_body(shared: &Shared, source: IpAddr, byte_interval: Duration, gate: &Gate) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let counters = &shared.counters;
    let mut first = true;
    while !shared.stopped() {
        let mut stream = match shared.endpoint.connect(source).await {
            Ok(stream) => stream,
            Err(e) => {
                counters.failed("connect", &e);
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        if std::mem::take(&mut first) {
            gate.pass().await;
        }
        let head = wire::post_head("/v1/tpm/finish", SLOW_BODY_BYTES);
        if let Err(e) = wire::send(&mut stream, &head, b"{").await {
            counters.failed("head", &e);
            continue;
        }
        // Open from here: a body under way.
        let _open = counters.opened();
        counters.requests.fetch_add(1, Ordering::Relaxed);
        let began = Instant::now();
        let mut sent = 1usize;
        let mut peek = [0u8; 1];
        let ended = loop {
            if shared.stopped() {
                return;
            }
            tokio::select! {
                // The broker answered (or closed): read that answer whole.
                read = stream.read(&mut peek) => break read.map(|n| n > 0),
                () = tokio::time::sleep(byte_interval) => {
                    if sent >= SLOW_BODY_BYTES {
                        break Ok(false);
                    }
                    let write = async {
                        stream.write_all(b" ").await?;
                        stream.flush().await
                    };
                    if let Err(e) = write.await {
                        break Err(e);
                    }
                    sent += 1;
                }
            }
        };
        let held = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
        match ended {
            Ok(true) => {
                // `peek` holds the first byte of "HTTP/1.1 408 ..."; the rest follows.
                let mut rest = Vec::with_capacity(256);
                let mut chunk = [0u8; 1024];
                let status = loop {
                    if let Some(status) = status_of(peek.first().copied(), &rest) {
                        break Some(status);
                    }
                    match tokio::time::timeout(wire::ANSWER_TIMEOUT, stream.read(&mut chunk)).await {
                        Ok(Ok(n)) if n > 0 => rest.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                        _ => break None,
                    }
                };
                match status {
                    Some(status) => counters.answered(status),
                    None => counters.failed("answer", &io::Error::from(io::ErrorKind::InvalidData)),
                }
                counters.held_ms.lock().unwrap_or_else(PoisonError::into_inner).push(held);
            }
            Ok(false) => {
                counters.failed("cut off", &io::Error::from(io::ErrorKind::ConnectionReset));
                counters.held_ms.lock().unwrap_or_else(PoisonError::into_inner).push(held);
            }
            Err(e) => {
                counters.failed("dribble", &e);
                counters.held_ms.lock().unwrap_or_else(PoisonError::into_inner).push(held);
            }
        }
    }
}

/// The status code once the status line (`first` byte, then `rest`) is complete.
fn status_of(first: Option<u8>, rest: &[u8]) -> Option<u16> {
    let first = first?;
    let end = rest.iter().position(|&b| b == b'\n')?;
    let mut line = vec![first];
    line.extend_from_slice(rest.get(..end).unwrap_or_default());
    let line = String::from_utf8_lossy(&line);
    line.split(' ').nth(1).and_then(|code| code.trim().parse().ok())
}

/// Sends `GET /v1/health` from `source` on a fresh connection; its status and how long
/// it took, connection and TLS handshake included.
///
/// # Errors
/// When the broker cannot be reached or does not answer.
pub fn health(endpoint: &Endpoint, source: IpAddr) -> anyhow::Result<(u16, Duration)> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let started = Instant::now();
        let mut stream = endpoint.connect(source).await.context("connecting for /v1/health")?;
        wire::send(&mut stream, &wire::get_head("/v1/health"), &[]).await?;
        let answer = wire::read_answer(&mut stream).await.context("answer to /v1/health")?;
        Ok((answer.status, started.elapsed()))
    })
}

/// Size of a directory tree: bytes in its files, and bytes allocated to them on disk
/// (what `du` counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DirSize {
    pub bytes: u64,
    pub allocated: u64,
}

/// [`DirSize`] of `dir`, recursively (symbolic links not followed).
///
/// # Errors
/// When a directory cannot be read.
pub fn dir_size(dir: &Path) -> anyhow::Result<DirSize> {
    use std::os::unix::fs::MetadataExt as _;
    let mut total = DirSize::default();
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        // A file may vanish while we look (sled replaces its snapshot): skip it.
        let Ok(meta) = entry.path().symlink_metadata() else { continue };
        if meta.is_dir() {
            let sub = dir_size(&entry.path())?;
            total.bytes += sub.bytes;
            total.allocated += sub.allocated;
        } else {
            total.bytes += meta.len();
            total.allocated += meta.blocks() * 512;
        }
    }
    Ok(total)
}

/// Raises this process's open-file limit to `want` (at most the hard limit); processes
/// started afterwards (the broker) inherit it. Returns the limit now in force.
///
/// # Errors
/// When the limit cannot be read or set.
#[allow(unsafe_code)]
pub fn raise_fd_limit(want: u64) -> anyhow::Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one `rlimit` into the struct passed, which we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error()).context("getrlimit(RLIMIT_NOFILE)");
    }
    if limit.rlim_cur >= want {
        return Ok(limit.rlim_cur);
    }
    limit.rlim_cur = want.min(limit.rlim_max);
    // SAFETY: setrlimit only reads the struct passed.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(io::Error::last_os_error()).context("setrlimit(RLIMIT_NOFILE)");
    }
    Ok(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn status_line_is_read_from_its_first_byte_on() {
        assert_eq!(status_of(Some(b'H'), b"TTP/1.1 408 Request Timeout\r\n"), Some(408));
        assert_eq!(status_of(Some(b'H'), b"TTP/1.1 408"), None);
        assert_eq!(status_of(None, b"x\n"), None);
    }

    #[test]
    fn malformed_set_cycles_through_every_kind() {
        let set = bodies::MalformedSet::new();
        let paths: std::collections::BTreeSet<&str> = (0..9).map(|n| set.get(n).path).collect();
        assert_eq!(paths.len(), 4, "{paths:?}");
        for echoed in [set.get(0).body.len(), set.get(1).body.len()] {
            // Echoed in the error, and not refused for its size before it is parsed.
            assert!(echoed > bodies::ECHOED_BYTES * 9 / 10 && echoed < 256 * 1024, "{echoed}");
        }
        assert!(set.get(2).body.len() > bodies::OVERSIZED_BYTES);
        assert_ne!(set.get(7).body, set.get(16).body, "unknown challenge ids differ");
    }
}
