//! Group commit for sled: one thread flushes on behalf of every caller waiting.
//!
//! The store counts its writes. A caller that needs its writes durable waits for a flush
//! that started after its last write counted; the flusher thread flushes everything
//! written so far and then releases every caller whose count it covered. Callers never
//! block a thread while they wait, so under load one flush covers every decision made
//! during the previous one (a single `sync_file_range` for dozens of attestations instead
//! of one each), and a caller that wrote nothing new does not wait at all. A flush that
//! fails is retried; its callers are released by the next flush that succeeds (sled's
//! flush writes everything buffered), so nothing is answered before its writes are
//! durable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use super::StoreError;

/// Pause before retrying a failed flush.
const RETRY_AFTER: Duration = Duration::from_millis(50);

/// Handle to the flusher thread; dropping it stops the thread (after the flush any waiting
/// ticket needs) and waits for it.
#[derive(Debug)]
pub(crate) struct Flusher {
    shared: Arc<Shared>,
    /// Writes durable so far (a count).
    done: watch::Receiver<u64>,
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
        let shared = Arc::new(Shared::default());
        let (done_tx, done) = watch::channel(0);
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("store-flush".into())
            .spawn(move || run(&thread_shared, &db, &done_tx))
            .map_err(|e| StoreError::Backend(format!("cannot start the flush thread: {e}")))?;
        Ok(Self { shared, done, thread: Some(thread) })
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
        let mut done = self.done.clone();
        let pending = *done.borrow() < target;
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
            done.wait_for(|done| *done >= target)
                .await
                .map(|_| ())
                .map_err(|_| StoreError::Backend("the flush thread stopped".into()))
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

fn run(shared: &Shared, db: &sled::Db, done: &watch::Sender<u64>) {
    let mut flushed = 0;
    loop {
        let target = {
            let mut state = shared.lock();
            while state.requested == flushed && !state.stopping {
                state = shared.wake.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
            if state.requested == flushed {
                return;
            }
            state.requested
        };
        match db.flush() {
            Ok(_) => {
                flushed = target;
                done.send_replace(target);
            }
            Err(e) => {
                tracing::error!("flushing the store failed, retrying: {e}");
                std::thread::sleep(RETRY_AFTER);
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
        // Nothing is buffered any more: the write reached the file before the tickets
        // were released.
        assert_eq!(db.flush().unwrap(), 0);
    }
}
