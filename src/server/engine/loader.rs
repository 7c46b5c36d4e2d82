//! The full sync's loader: a thread that inserts the snapshot's items into the new copy.
//!
//! A slave loading a full sync spends most of its time in redb's B-tree inserts. The event
//! loop receives, decompresses and decodes the chunks (and keeps serving clients, heartbeats
//! and `status`); this thread takes them through a bounded queue and inserts them, committing
//! every [`LOAD_BATCH_BYTES`], so that the two halves of the work run on two cores. The thread
//! owns the new copy's store until the load ends.
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

/// The thread's work; the wake to call once it is over (a completion's).
fn load(
    store: Store,
    lsn: Lsn,
    rx: Receiver<Job>,
    abort: &AtomicBool,
    hold: Option<PathBuf>,
) -> (Result<Store, StoreError>, Option<Wake>) {
    let mut store = store;
    let mut batch: Option<Batch> = None;
    let mut batch_bytes = 0;
    while let Ok(job) = rx.recv() {
        if abort.load(Ordering::Relaxed) {
            return (Err(aborted()), None);
        }
        let (file, items) = match job {
            Job::Items { file, items } => (file, items),
            Job::Abort => return (Err(aborted()), None),
            Job::Complete { locals, wake } => {
                return (
                    complete(store, batch.take(), lsn, &locals, abort, hold),
                    wake,
                );
            }
        };
        if let Err(e) = insert(&mut store, &mut batch, &mut batch_bytes, lsn, &file, &items) {
            return (Err(e), None);
        }
    }
    // The sender is gone without a completion: commit what is loaded.
    if let Some(b) = batch.take()
        && let Err(e) = store.commit(b, lsn)
    {
        return (Err(e), None);
    }
    (Ok(store), None)
}

/// Inserts one chunk into the open batch (opened if needed), committing it every
/// [`LOAD_BATCH_BYTES`].
fn insert(
    store: &mut Store,
    batch: &mut Option<Batch>,
    batch_bytes: &mut usize,
    lsn: Lsn,
    file: &str,
    items: &ChunkItems,
) -> Result<(), StoreError> {
    let b = match batch.as_mut() {
        Some(b) => b,
        None => batch.insert(store.begin()?),
    };
    b.put_item_slices(file, items.iter())?;
    *batch_bytes += items.bytes();
    if *batch_bytes >= LOAD_BATCH_BYTES {
        if let Some(b) = batch.take() {
            store.commit(b, lsn)?;
        }
        *batch_bytes = 0;
    }
    Ok(())
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
