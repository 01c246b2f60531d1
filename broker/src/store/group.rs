//! Group commit: one thread makes durable, in one pass, the writes of every caller waiting.
//!
//! Callers submit their writes as jobs; each job gets the next number. The thread takes
//! every job queued so far (at most [`PASS_AT_MOST`]) and makes them durable in one pass (sled: one flush of the
//! writes already made; PostgreSQL: the jobs themselves, written and committed in one
//! transaction), then releases every caller whose jobs that pass covered. Callers never
//! block a thread while they wait, so under load one pass covers every decision made
//! during the previous one (one `sync_file_range`, or one commit and one hold of the audit
//! chain's head lock, for dozens of attestations instead of one each).
//!
//! A caller notes where the numbering stood before it wrote ([`Group::mark`]) and waits
//! with that mark ([`Group::durable`]): it is released once every job numbered since is
//! through a pass, and fails if any of them failed (a pass that fails as a whole fails all
//! its jobs; PostgreSQL can fail a single job). Nothing is answered as durable that is not:
//! a job that failed is never retried behind its caller's back, and a caller whose window
//! holds a failure it can no longer see (more than [`FAILURES_KEPT`] failures since its
//! mark) fails too. After a failed pass the thread pauses before the next one, doubling
//! the pause up to [`RETRY_AT_MOST`] while passes keep failing.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use super::StoreError;

/// Pause after a failed pass; it doubles up to [`RETRY_AT_MOST`].
const RETRY_AFTER: Duration = Duration::from_millis(50);
const RETRY_AT_MOST: Duration = Duration::from_secs(5);
/// Failed jobs remembered for callers that have not yet looked.
const FAILURES_KEPT: usize = 256;
/// Jobs one pass takes at most (the rest wait for the next): bounds the time a PostgreSQL
/// pass spends between taking the chain head's lock and writing.
pub(crate) const PASS_AT_MOST: usize = 4096;

/// Where the numbering of jobs stood: taken before writing, waited on after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct WriteMark(u64);

/// What a pass could not make durable.
#[derive(Debug)]
pub(crate) enum PassFailure {
    /// Nothing (the flush or the transaction failed).
    All(String),
    /// These jobs (indices into the pass's jobs); the others are durable.
    Jobs(Vec<(usize, String)>),
}

/// Makes `jobs` durable, in order.
pub(crate) type Pass<J> = Box<dyn FnMut(Vec<J>) -> Result<(), PassFailure> + Send>;

/// How far the passes got.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// Jobs through a pass, successful or not.
    done: u64,
    /// Failed jobs `(number, why)`, oldest first, at most [`FAILURES_KEPT`].
    failed: VecDeque<(u64, String)>,
    /// The newest failed job no longer in `failed`.
    forgotten: u64,
    /// Passes run.
    passes: u64,
}

impl Progress {
    fn fail(&mut self, number: u64, reason: String) {
        if self.failed.len() == FAILURES_KEPT {
            if let Some((old, _)) = self.failed.pop_front() {
                self.forgotten = old;
            }
        }
        self.failed.push_back((number, reason));
    }

    /// Why a job numbered in `(since, through]` failed, if one did.
    fn failure_in(&self, since: u64, through: u64) -> Option<String> {
        if self.forgotten > since {
            return Some(format!("more than {FAILURES_KEPT} writes failed since this one was made"));
        }
        self.failed.iter().find(|(n, _)| *n > since && *n <= through).map(|(_, reason)| reason.clone())
    }
}

/// Handle to the thread; dropping it stops the thread (after a last pass over the jobs
/// still queued) and waits for it.
pub(crate) struct Group<J> {
    shared: Arc<Shared<J>>,
    progress: watch::Receiver<Progress>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl<J> std::fmt::Debug for Group<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group").field("done", &self.progress.borrow().done).finish_non_exhaustive()
    }
}

struct Shared<J> {
    state: Mutex<State<J>>,
    wake: Condvar,
}

struct State<J> {
    queue: Vec<J>,
    /// Jobs submitted so far (the number of the last one).
    submitted: u64,
    stopping: bool,
}

impl<J> Shared<J> {
    fn lock(&self) -> MutexGuard<'_, State<J>> {
        // A queue, a counter and a flag, consistent after every statement: a poisoned lock
        // is safe to reuse.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<J: Send + 'static> Group<J> {
    /// Starts the thread `name`, which runs `pass` over the queued jobs.
    pub(crate) fn start(name: &str, pass: Pass<J>) -> Result<Self, StoreError> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State { queue: Vec::new(), submitted: 0, stopping: false }),
            wake: Condvar::new(),
        });
        let (sender, progress) = watch::channel(Progress::default());
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || run(&thread_shared, pass, &sender))
            .map_err(|e| StoreError::Backend(format!("cannot start the {name} thread: {e}")))?;
        Ok(Self { shared, progress, thread: Some(thread) })
    }

    /// Queues a job (for sled: a write already made) for the next pass.
    pub(crate) fn submit(&self, job: J) {
        let mut state = self.shared.lock();
        state.queue.push(job);
        state.submitted += 1;
        let first = state.queue.len() == 1;
        drop(state);
        if first {
            self.shared.wake.notify_one();
        }
    }

    /// Jobs waiting for the next pass (not those of a pass under way).
    pub(crate) fn waiting(&self) -> usize {
        self.shared.lock().queue.len()
    }

    /// Where the numbering stands now: jobs submitted after this are the caller's to wait for.
    pub(crate) fn mark(&self) -> WriteMark {
        WriteMark(self.shared.lock().submitted)
    }

    /// Waits until every job submitted after `since` and before this call has been through a
    /// pass; fails if one of them failed.
    pub(crate) fn durable(
        &self,
        since: WriteMark,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send + 'static {
        let target = self.shared.lock().submitted;
        let mut progress = self.progress.clone();
        async move {
            if target <= since.0 {
                return Ok(());
            }
            let reached = progress
                .wait_for(|p| p.done >= target)
                .await
                .map_err(|_| StoreError::Backend("the group commit thread stopped".into()))?;
            match reached.failure_in(since.0, target) {
                Some(reason) => {
                    Err(StoreError::Backend(format!("making the write durable failed: {reason}")))
                }
                None => Ok(()),
            }
        }
    }
}

impl<J> Group<J> {
    /// Passes run so far.
    #[cfg(test)]
    pub(crate) fn passes(&self) -> u64 {
        self.progress.borrow().passes
    }
}

impl<J> Drop for Group<J> {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.wake.notify_one();
        // The thread holds the database; it is closed when this returns.
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run<J>(shared: &Shared<J>, mut pass: Pass<J>, progress: &watch::Sender<Progress>) {
    let mut pause = RETRY_AFTER;
    loop {
        let (jobs, through, stopping) = {
            let mut state = shared.lock();
            while state.queue.is_empty() && !state.stopping {
                state = shared.wake.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
            if state.queue.is_empty() {
                return;
            }
            let take = state.queue.len().min(PASS_AT_MOST);
            let jobs: Vec<J> = state.queue.drain(..take).collect();
            // The jobs still queued are the newest.
            (jobs, state.submitted - state.queue.len() as u64, state.stopping)
        };
        // The jobs are numbered `first..=through`, in queue order.
        let first = through + 1 - jobs.len() as u64;
        let outcome = pass(jobs);
        let failed = outcome.is_err();
        progress.send_modify(|p| {
            match outcome {
                Ok(()) => {}
                Err(PassFailure::All(reason)) => {
                    tracing::error!("a group commit failed; the answers waiting for it fail: {reason}");
                    for number in first..=through {
                        p.fail(number, reason.clone());
                    }
                }
                Err(PassFailure::Jobs(jobs)) => {
                    for (index, reason) in jobs {
                        tracing::error!("a write failed in a group commit; its answer fails: {reason}");
                        p.fail(first + index as u64, reason);
                    }
                }
            }
            p.done = through;
            p.passes += 1;
        });
        if failed && !stopping {
            std::thread::sleep(pause);
            pause = (pause * 2).min(RETRY_AT_MOST);
        } else if !failed {
            pause = RETRY_AFTER;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// A sled database flushed by a group, as the embedded store does.
    fn sled_group(db: &sled::Db) -> Group<()> {
        let db = db.clone();
        Group::start(
            "test-flush",
            Box::new(move |_| db.flush().map(drop).map_err(|e| PassFailure::All(e.to_string()))),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_wait_is_released_by_a_pass_over_its_writes() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).flush_every_ms(None).open().unwrap();
        let group = sled_group(&db);
        let mark = group.mark();
        db.insert(b"k", b"v").unwrap();
        group.submit(());
        let waits: Vec<_> = (0..50).map(|_| group.durable(mark)).collect();
        for wait in waits {
            wait.await.unwrap();
        }
        // Nothing is buffered any more: the write reached the file before the waits
        // were released.
        assert_eq!(db.flush().unwrap(), 0);
        // Nothing written since the mark: no wait at all.
        group.durable(group.mark()).await.unwrap();
    }

    #[tokio::test]
    async fn a_failed_pass_fails_its_waiters_only_and_stopping_does_not_hang() {
        let failing = Arc::new(AtomicBool::new(true));
        let fail = Arc::clone(&failing);
        let group: Group<()> = Group::start(
            "test-flush",
            Box::new(move |_| {
                if fail.load(Ordering::SeqCst) {
                    Err(PassFailure::All("disk gone".to_owned()))
                } else {
                    Ok(())
                }
            }),
        )
        .unwrap();
        let before = group.mark();
        group.submit(());
        let refused = group.durable(before).await.unwrap_err();
        assert!(refused.to_string().contains("disk gone"), "{refused}");
        // Later writes that succeed do not make the failed one durable after the fact ...
        failing.store(false, Ordering::SeqCst);
        let after = group.mark();
        group.submit(());
        group.durable(after).await.unwrap();
        assert!(group.durable(before).await.is_err());
        // ... and a caller that wrote nothing since waits for nothing.
        group.durable(group.mark()).await.unwrap();
        // Dropping a group whose pass fails returns instead of retrying forever.
        failing.store(true, Ordering::SeqCst);
        group.submit(());
        drop(group.durable(after));
        drop(group);
    }

    #[tokio::test]
    async fn a_failed_job_fails_its_own_waiter_not_the_others_in_its_pass() {
        let group: Group<&'static str> = Group::start(
            "test-commit",
            Box::new(|jobs: Vec<&str>| {
                let bad: Vec<(usize, String)> = jobs
                    .iter()
                    .enumerate()
                    .filter(|(_, job)| job.starts_with("bad"))
                    .map(|(i, job)| (i, format!("{job} refused")))
                    .collect();
                if bad.is_empty() {
                    Ok(())
                } else {
                    Err(PassFailure::Jobs(bad))
                }
            }),
        )
        .unwrap();
        let marks: Vec<WriteMark> = ["good 1", "bad 2", "good 3"]
            .into_iter()
            .map(|job| {
                let mark = group.mark();
                group.submit(job);
                mark
            })
            .collect();
        // A caller waits for the jobs from its mark to its wait: the ones before the bad job
        // cover it (their callers fail: the broker's would have written it), the one after
        // it does not.
        let outcomes =
            [group.durable(marks[0]).await, group.durable(marks[1]).await, group.durable(marks[2]).await];
        assert!(outcomes[0].is_err() && outcomes[1].is_err(), "{outcomes:?}");
        assert!(outcomes[2].is_ok(), "{outcomes:?}");
        assert!(outcomes[1].as_ref().unwrap_err().to_string().contains("bad 2 refused"));
    }

    #[tokio::test]
    async fn jobs_queued_behind_a_pass_under_way_are_waiting() {
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let group: Group<u32> = Group::start(
            "test-commit",
            Box::new(move |_| gate.recv().map_err(|e| PassFailure::All(e.to_string()))),
        )
        .unwrap();
        assert_eq!(group.waiting(), 0);
        // The first job's pass waits at the gate, holding it; the next two wait for the
        // next pass.
        let mark = group.mark();
        group.submit(1);
        while group.waiting() == 1 {
            std::thread::yield_now();
        }
        group.submit(2);
        group.submit(3);
        assert_eq!(group.waiting(), 2);
        release.send(()).unwrap();
        release.send(()).unwrap();
        group.durable(mark).await.unwrap();
        assert_eq!(group.waiting(), 0);
        assert_eq!(group.passes(), 2);
    }

    #[tokio::test]
    async fn a_pass_takes_at_most_its_share_and_the_rest_follow_in_order() {
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let (sizes, seen) = std::sync::mpsc::channel::<Vec<usize>>();
        let group: Group<usize> = Group::start(
            "test-commit",
            Box::new(move |jobs: Vec<usize>| {
                gate.recv().map_err(|e| PassFailure::All(e.to_string()))?;
                sizes.send(jobs).map_err(|e| PassFailure::All(e.to_string()))
            }),
        )
        .unwrap();
        let mark = group.mark();
        group.submit(0);
        while group.waiting() == 1 {
            std::thread::yield_now();
        }
        for n in 1..=PASS_AT_MOST + 1 {
            group.submit(n);
        }
        for _ in 0..3 {
            release.send(()).unwrap();
        }
        group.durable(mark).await.unwrap();
        let passes: Vec<Vec<usize>> = seen.try_iter().collect();
        let lengths: Vec<usize> = passes.iter().map(Vec::len).collect();
        assert_eq!(lengths, [1, PASS_AT_MOST, 1]);
        let order: Vec<usize> = passes.into_iter().flatten().collect();
        assert_eq!(order, (0..=PASS_AT_MOST + 1).collect::<Vec<_>>());
    }

    #[test]
    fn failures_beyond_what_is_kept_fail_the_windows_they_may_fall_in() {
        let mut progress = Progress::default();
        for number in 1..=(FAILURES_KEPT as u64 + 10) {
            progress.fail(number, format!("job {number}"));
        }
        assert_eq!(progress.failed.len(), FAILURES_KEPT);
        assert_eq!(progress.forgotten, 10);
        assert!(progress.failure_in(3, 4).unwrap().contains("more than"));
        assert_eq!(progress.failure_in(20, 21).unwrap(), "job 21");
        assert_eq!(progress.failure_in(FAILURES_KEPT as u64 + 10, FAILURES_KEPT as u64 + 11), None);
    }
}
