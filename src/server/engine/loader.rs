//! The full sync's loader: a thread that inserts the snapshot's items into the new copy.
//!
//! A slave loading a full sync spends most of its time in redb's B-tree inserts. The event
//! loop receives, decompresses and decodes the chunks (and keeps serving clients, heartbeats
//! and `status`); this thread takes them through a bounded queue and inserts them, committing
//! every [`LOAD_BATCH_BYTES`], so that the two halves of the work run on two cores. The inserts
//! themselves are spread over the store's parts (a file's items live in several tables,
//! [`crate::store::Parts`]): during each batch, a helper thread per further core fills parts of
//! its own from the same chunks ([`crate::store::Filler`]). The thread owns the new copy's
//! store until the load ends.
//!
//! Ending a load: [`Loader::complete`] asks the thread to commit the last batch, record this
//! node's local settings and make the copy durable (the checkpoint), all off the event loop,
//! which polls [`Loader::is_done`] (the thread calls the `wake` it was given when it is) and
//! then takes the store with [`Loader::finish`]. `finish` alone commits the last batch
//! without a checkpoint and waits. [`Loader::abort`] (or dropping the loader) stops the
//! thread without a commit.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::journal::Lsn;
use crate::link::msg::ChunkItems;
use crate::store::{Batch, Store, StoreError};

/// Commit the loading batch every this many bytes of items.
const LOAD_BATCH_BYTES: usize = 64 << 20;
/// Chunks (about 256 KiB each) queued for the thread before the event loop waits for it.
const QUEUE_CHUNKS: usize = 64;
/// Chunks queued for each helper thread before the loader thread waits for it.
const HELPER_CHUNKS: usize = 16;
/// Test-only: while the file this variable names exists, a completing load waits before its
/// checkpoint (at most [`MAX_HOLD`]), so that a test can see the event loop go on meanwhile.
/// Unset (the default, and in every packaged unit) it does nothing.
const HOLD_ENV: &str = "HOTBACKUP_TEST_LOADER_HOLD_FILE";
const MAX_HOLD: Duration = Duration::from_secs(60);

/// Called by the thread when it has ended (the event loop's waker).
pub type Wake = Arc<dyn Fn() + Send + Sync>;

enum Job {
    Items {
        file: String,
        items: ChunkItems,
    },
    /// The last chunk was queued: commit, record these local settings, checkpoint, wake.
    Complete {
        locals: Vec<(String, String)>,
        wake: Option<Wake>,
    },
    Abort,
}

pub struct Loader {
    tx: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<Result<Store, StoreError>>>,
    /// Set to stop the thread at its next chunk (or during a completion's hold).
    abort: Arc<AtomicBool>,
    /// Set by the thread when its work is over, right before it wakes the loop (the thread
    /// itself ends a moment later).
    done: Arc<AtomicBool>,
    /// [`Loader::complete`] was called.
    completing: bool,
}

impl Loader {
    /// Starts the thread on the new copy's store; every commit records `lsn`.
    pub fn start(mut store: Store, lsn: Lsn) -> Result<Loader, StoreError> {
        // The copy is made durable by the checkpoint that completes the load; until then its
        // syncs wait ([`Store::start_load`]).
        store.start_load()?;
        let (tx, rx) = mpsc::sync_channel(QUEUE_CHUNKS);
        let abort = Arc::new(AtomicBool::new(false));
        let hold = std::env::var_os(HOLD_ENV)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        let done = Arc::new(AtomicBool::new(false));
        let (stop, over) = (abort.clone(), done.clone());
        let thread = std::thread::Builder::new()
            .name("hb-loader".into())
            .spawn(move || {
                let (result, wake) = load(store, lsn, rx, &stop, hold);
                over.store(true, Ordering::Release);
                if let Some(w) = wake {
                    w();
                }
                result
            })
            .map_err(|e| StoreError::Corrupt(format!("cannot start the loader thread: {e}")))?;
        Ok(Loader {
            tx: Some(tx),
            thread: Some(thread),
            abort,
            done,
            completing: false,
        })
    }

    /// Queues one chunk's items (waits while the queue is full). Err: the thread failed.
    pub fn add(&mut self, file: String, items: ChunkItems) -> Result<(), StoreError> {
        let Some(tx) = self.tx.as_ref() else {
            return Err(StoreError::Corrupt("the loader was stopped".into()));
        };
        if tx.send(Job::Items { file, items }).is_err() {
            // The thread ended early: its error says why.
            self.tx = None;
            return Err(match self.join() {
                Err(e) => e,
                Ok(_) => StoreError::Corrupt("the loader thread stopped".into()),
            });
        }
        Ok(())
    }

    /// Every chunk is queued: the thread commits the last batch, writes `locals` (local
    /// settings of this node, `set_local`), makes the copy durable with a checkpoint, then
    /// calls `wake`. Returns at once; [`Loader::is_done`] tells when [`Loader::finish`] will
    /// not wait.
    pub fn complete(&mut self, locals: Vec<(String, String)>, wake: Option<Wake>) {
        self.completing = true;
        if let Some(tx) = self.tx.take() {
            // A thread that already ended (an error) makes `finish` report it.
            let _ = tx.send(Job::Complete { locals, wake });
        }
    }

    /// Whether [`Loader::complete`] was called.
    pub fn completing(&self) -> bool {
        self.completing
    }

    /// Whether the thread has ended, or is about to (completed, failed or stopped):
    /// [`Loader::finish`] does not wait for its work.
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
            || self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits until everything queued is inserted and committed (and, after
    /// [`Loader::complete`], made durable); the store comes back.
    pub fn finish(mut self) -> Result<Store, StoreError> {
        self.tx = None;
        self.join()
    }

    /// Stops the thread without committing what it holds.
    pub fn abort(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.abort.store(true, Ordering::Relaxed);
        if let Some(tx) = self.tx.take() {
            // The flag stops a thread busy with a chunk; the message wakes one waiting for
            // the next (dropping the sender alone would make it commit what it holds).
            match tx.try_send(Job::Abort) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                Err(TrySendError::Full(_)) => {
                    let _ = tx.send(Job::Abort);
                }
            }
        }
        let _ = self.join();
    }

    fn join(&mut self) -> Result<Store, StoreError> {
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(StoreError::Corrupt("the loader thread panicked".into()))),
            None => Err(StoreError::Corrupt("the loader already ended".into())),
        }
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop();
        }
    }
}

fn aborted() -> StoreError {
    StoreError::Corrupt("full sync aborted".into())
}

/// How a batch's filling ended.
enum End {
    /// [`LOAD_BATCH_BYTES`] reached: commit and go on with a new batch.
    Full,
    /// The last chunk is in: complete the load.
    Complete {
        locals: Vec<(String, String)>,
        wake: Option<Wake>,
    },
    /// The sender is gone without a completion: commit what is loaded.
    Closed,
    Aborted,
}

/// The thread's work; the wake to call once it is over (a completion's).
fn load(
    mut store: Store,
    lsn: Lsn,
    rx: Receiver<Job>,
    abort: &AtomicBool,
    hold: Option<PathBuf>,
) -> (Result<Store, StoreError>, Option<Wake>) {
    loop {
        let batch = match store.begin() {
            Ok(b) => b,
            Err(e) => return (Err(e), None),
        };
        match fill(&batch, &rx, abort) {
            Ok(End::Full) => {
                if let Err(e) = store.commit(batch, lsn) {
                    return (Err(e), None);
                }
            }
            Ok(End::Complete { locals, wake }) => {
                return (
                    complete(store, Some(batch), lsn, &locals, abort, hold),
                    wake,
                );
            }
            Ok(End::Closed) => return (store.commit(batch, lsn).map(|()| store), None),
            Ok(End::Aborted) => return (Err(aborted()), None),
            Err(e) => return (Err(e), None),
        }
    }
}

/// Fills one batch with the chunks that come, up to [`LOAD_BATCH_BYTES`]: each chunk's items
/// are written by one filler per core, up to the store's parts ([`crate::store::Filler`]):
/// this thread and helpers of its own, which end with the batch.
fn fill(batch: &Batch, rx: &Receiver<Job>, abort: &AtomicBool) -> Result<End, StoreError> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let of = batch.parts().min(cores).max(1);
    std::thread::scope(|s| {
        let mut helpers = Vec::new();
        for turn in 1..of {
            let mut filler = batch.filler(turn, of)?;
            let (tx, chunks) = mpsc::sync_channel::<Arc<(String, ChunkItems)>>(HELPER_CHUNKS);
            let helper = std::thread::Builder::new()
                .name(format!("hb-loader-{turn}"))
                .spawn_scoped(s, move || -> Result<(), StoreError> {
                    for c in chunks {
                        if abort.load(Ordering::Relaxed) {
                            break;
                        }
                        filler.put(&c.0, c.1.iter())?;
                    }
                    Ok(())
                })
                .map_err(|e| StoreError::Corrupt(format!("cannot start a loader thread: {e}")))?;
            helpers.push((tx, helper));
        }
        let mut mine = batch.filler(0, of)?;
        let mut bytes = 0;
        let end = loop {
            let Ok(job) = rx.recv() else {
                break Ok(End::Closed);
            };
            if abort.load(Ordering::Relaxed) {
                break Ok(End::Aborted);
            }
            let (file, items) = match job {
                Job::Items { file, items } => (file, items),
                Job::Abort => break Ok(End::Aborted),
                Job::Complete { locals, wake } => break Ok(End::Complete { locals, wake }),
            };
            if let Err(e) = batch.check_items(&file, items.iter()) {
                break Err(e);
            }
            bytes += items.bytes();
            let chunk = Arc::new((file, items));
            // A helper that stopped failed: its error comes with the join below.
            if helpers
                .iter()
                .any(|(tx, _)| tx.send(chunk.clone()).is_err())
            {
                break Ok(End::Aborted);
            }
            if let Err(e) = mine.put(&chunk.0, chunk.1.iter()) {
                break Err(e);
            }
            if bytes >= LOAD_BATCH_BYTES {
                break Ok(End::Full);
            }
        };
        let mut errors = Vec::new();
        let end = match end {
            Ok(end) => Some(end),
            Err(e) => {
                errors.push(e);
                None
            }
        };
        for (tx, helper) in helpers {
            drop(tx);
            let r = helper
                .join()
                .unwrap_or_else(|_| Err(StoreError::Corrupt("a loader thread panicked".into())));
            if let Err(e) = r {
                errors.push(e);
            }
        }
        match (end, first_cause(errors)) {
            (_, Some(e)) => Err(e),
            (Some(end), None) => Ok(end),
            (None, None) => Err(StoreError::Corrupt("the load failed".into())),
        }
    })
}

/// Of the errors of the threads of one batch, the one that says why: after a write failed
/// (a full disk), redb answers every other with "previous I/O error".
fn first_cause(errors: Vec<StoreError>) -> Option<StoreError> {
    let rank = |e: &StoreError| {
        if e.is_disk_full() {
            0
        } else if matches!(
            e,
            StoreError::Redb {
                source: redb::Error::PreviousIo,
                ..
            }
        ) {
            2
        } else {
            1
        }
    };
    errors.into_iter().min_by_key(rank)
}

/// The end of a load: the last batch and the local settings committed, the copy durable.
fn complete(
    mut store: Store,
    batch: Option<Batch>,
    lsn: Lsn,
    locals: &[(String, String)],
    abort: &AtomicBool,
    hold: Option<PathBuf>,
) -> Result<Store, StoreError> {
    let mut b = match batch {
        Some(b) => b,
        None => store.begin()?,
    };
    for (k, v) in locals {
        b.set_local(k, Some(v.as_str()))?;
    }
    store.commit(b, lsn)?;
    if let Some(path) = hold.filter(|p| p.exists()) {
        log::warn!(
            "test trigger {} exists: the full sync's checkpoint waits for it (up to {}s)",
            path.display(),
            MAX_HOLD.as_secs()
        );
        let start = Instant::now();
        while path.exists() && start.elapsed() < MAX_HOLD && !abort.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    if abort.load(Ordering::Relaxed) {
        return Err(aborted());
    }
    store.checkpoint()?;
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redb_error(source: redb::Error) -> StoreError {
        StoreError::Redb {
            op: "write",
            source,
        }
    }

    #[test]
    fn a_full_disk_is_the_cause_reported_over_the_errors_that_follow_it() {
        let enospc = || redb_error(redb::Error::Io(std::io::Error::from_raw_os_error(28)));
        let got = first_cause(vec![redb_error(redb::Error::PreviousIo), enospc()]);
        assert!(got.is_some_and(|e| e.is_disk_full()));
        let got = first_cause(vec![
            redb_error(redb::Error::PreviousIo),
            StoreError::Corrupt("bad".into()),
        ]);
        assert!(matches!(got, Some(StoreError::Corrupt(_))));
        assert!(first_cause(Vec::new()).is_none());
    }
}
