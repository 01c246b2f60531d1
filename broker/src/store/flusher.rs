//! Group commit for sled: one thread flushes on behalf of every caller waiting.
//!
//! The store counts its writes. A caller that needs its writes durable waits for a flush
//! that started after its last write counted; the flusher thread flushes everything
//! written so far and then releases every caller whose count it covered. Callers never
//! block a thread while they wait, so under load one flush covers every decision made
//! during the previous one (a single `sync_file_range` for dozens of attestations instead
//! of one each), and a caller that wrote nothing since the last flush does not wait. A
//! flush that fails fails its waiters at once, and every waiter after them until a retry
//! succeeds (sled 0.34 keeps an I/O error until the database is reopened, so in practice
//! until the broker restarts): nothing is answered as durable that is not.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use super::StoreError;

/// Pause before retrying a failed flush; it doubles up to [`RETRY_AT_MOST`].
const RETRY_AFTER: Duration = Duration::from_millis(50);
const RETRY_AT_MOST: Duration = Duration::from_secs(5);

/// How far flushing got.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// Writes durable so far.
    done: u64,
    /// Why the last flush failed, until one succeeds.
    failure: Option<String>,
}

/// Flushes everything written so far.
type Flush = Box<dyn FnMut() -> Result<(), String> + Send>;

/// Handle to the flusher thread; dropping it stops the thread (after the flush any waiting
/// ticket needs) and waits for it.
#[derive(Debug)]
pub(crate) struct Flusher {
    shared: Arc<Shared>,
    progress: watch::Receiver<Progress>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// Writes made so far, counted after each one completed.
    written: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    /// The flush to run next must cover this many writes.
    requested: u64,
    stopping: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Two integers and a flag, always consistent: a poisoned lock is safe to reuse.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Flusher {
    /// Starts the thread that flushes `db`.
    pub(crate) fn start(db: sled::Db) -> Result<Self, StoreError> {
        Self::start_with(Box::new(move || db.flush().map(drop).map_err(|e| e.to_string())))
    }

    fn start_with(flush: Flush) -> Result<Self, StoreError> {
        let shared = Arc::new(Shared::default());
        let (sender, progress) = watch::channel(Progress::default());
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("store-flush".into())
            .spawn(move || run(&thread_shared, flush, &sender))
            .map_err(|e| StoreError::Backend(format!("cannot start the flush thread: {e}")))?;
        Ok(Self { shared, progress, thread: Some(thread) })
    }

    /// Counts a write; call it once the write has completed.
    pub(crate) fn wrote(&self) {
        self.shared.written.fetch_add(1, Ordering::SeqCst);
    }

    /// Waits until every write counted before this call is durable.
    pub(crate) fn durable(
        &self,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send + 'static {
        let target = self.shared.written.load(Ordering::SeqCst);
        let mut progress = self.progress.clone();
        let pending = progress.borrow().done < target;
        if pending {
            let mut state = self.shared.lock();
            if state.requested < target {
                state.requested = target;
                drop(state);
                self.shared.wake.notify_one();
            }
        }
        async move {
            if !pending {
                return Ok(());
            }
            let reached = progress
                .wait_for(|p| p.done >= target || p.failure.is_some())
                .await
                .map_err(|_| StoreError::Backend("the flush thread stopped".into()))?;
            match &reached.failure {
                Some(failure) if reached.done < target => {
                    Err(StoreError::Backend(format!("flushing the store failed: {failure}")))
                }
                _ => Ok(()),
            }
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.wake.notify_one();
        // The thread holds the database open; the store is closed when this returns.
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(shared: &Shared, mut flush: Flush, progress: &watch::Sender<Progress>) {
    let mut flushed = 0;
    let mut retry_after = RETRY_AFTER;
    loop {
        let (target, stopping) = {
            let mut state = shared.lock();
            while state.requested == flushed && !state.stopping {
                state = shared.wake.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
            if state.requested == flushed {
                return;
            }
            (state.requested, state.stopping)
        };
        match flush() {
            Ok(()) => {
                flushed = target;
                retry_after = RETRY_AFTER;
                progress.send_replace(Progress { done: target, failure: None });
            }
            Err(e) => {
                tracing::error!("flushing the store failed; answers that need it fail until it works: {e}");
                progress.send_modify(|p| p.failure = Some(e));
                if stopping {
                    return;
                }
                std::thread::sleep(retry_after);
                retry_after = (retry_after * 2).min(RETRY_AT_MOST);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn a_wait_is_released_by_a_flush_that_started_after_the_write() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).flush_every_ms(None).open().unwrap();
        let flusher = Flusher::start(db.clone()).unwrap();
        db.insert(b"k", b"v").unwrap();
        flusher.wrote();
        let waits: Vec<_> = (0..50).map(|_| flusher.durable()).collect();
        for wait in waits {
            wait.await.unwrap();
        }
        // Nothing is buffered any more: the write reached the file before the waits
        // were released.
        assert_eq!(db.flush().unwrap(), 0);
        // Nothing written since: no wait at all.
        flusher.durable().await.unwrap();
    }

    #[tokio::test]
    async fn a_failed_flush_fails_its_waiters_until_one_succeeds_and_stopping_does_not_hang() {
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let fail = Arc::clone(&failing);
        let flusher = Flusher::start_with(Box::new(move || {
            if fail.load(Ordering::SeqCst) {
                Err("disk gone".to_owned())
            } else {
                Ok(())
            }
        }))
        .unwrap();
        flusher.wrote();
        let refused = flusher.durable().await.unwrap_err();
        assert!(refused.to_string().contains("disk gone"), "{refused}");
        failing.store(false, Ordering::SeqCst);
        flusher.wrote();
        // Waits that came in while the error stood fail until a retry succeeds.
        let mut answered = flusher.durable().await;
        for _ in 0..100 {
            if answered.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            answered = flusher.durable().await;
        }
        answered.unwrap();
        // Dropping a flusher whose flush fails returns instead of retrying forever.
        failing.store(true, Ordering::SeqCst);
        flusher.wrote();
        drop(flusher.durable());
        drop(flusher);
    }
}
