//! The full sync's loader: a thread that inserts the snapshot's items into the new copy.
//!
//! A slave loading a full sync spends most of its time in redb's B-tree inserts. The event
//! loop receives, decompresses and decodes the chunks (and keeps serving clients, heartbeats
//! and `status`); this thread takes them through a bounded queue and inserts them, committing
//! every [`LOAD_BATCH_BYTES`], so that the two halves of the work run on two cores. The thread
//! owns the new copy's store until the load ends: [`Loader::finish`] commits the last batch and
//! hands the store back; [`Loader::abort`] (or dropping the loader) stops it without a commit.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;

use crate::journal::Lsn;
use crate::link::msg::ChunkItems;
use crate::store::{Batch, Store, StoreError};

/// Commit the loading batch every this many bytes of items.
const LOAD_BATCH_BYTES: usize = 64 << 20;
/// Chunks (about 256 KiB each) queued for the thread before the event loop waits for it.
const QUEUE_CHUNKS: usize = 64;

enum Job {
    Items { file: String, items: ChunkItems },
    Abort,
}

pub struct Loader {
    tx: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<Result<Store, StoreError>>>,
}

impl Loader {
    /// Starts the thread on the new copy's store; every commit records `lsn`.
    pub fn start(mut store: Store, lsn: Lsn) -> Result<Loader, StoreError> {
        // The copy is made durable by the checkpoint that completes the load; until then its
        // syncs wait ([`Store::start_load`]).
        store.start_load()?;
        let (tx, rx) = mpsc::sync_channel(QUEUE_CHUNKS);
        let thread = std::thread::Builder::new()
            .name("hb-loader".into())
            .spawn(move || load(store, lsn, rx))
            .map_err(|e| StoreError::Corrupt(format!("cannot start the loader thread: {e}")))?;
        Ok(Loader {
            tx: Some(tx),
            thread: Some(thread),
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

    /// Waits until everything queued is inserted and committed; the store comes back.
    pub fn finish(mut self) -> Result<Store, StoreError> {
        self.tx = None;
        self.join()
    }

    /// Stops the thread without committing what it holds.
    pub fn abort(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(tx) = self.tx.take() {
            // A full queue means the thread is busy: it sees the abort after those chunks
            // (dropping the sender alone would make it commit them).
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

fn load(mut store: Store, lsn: Lsn, rx: Receiver<Job>) -> Result<Store, StoreError> {
    let mut batch: Option<Batch> = None;
    let mut batch_bytes = 0;
    while let Ok(job) = rx.recv() {
        let (file, items) = match job {
            Job::Items { file, items } => (file, items),
            Job::Abort => return Err(StoreError::Corrupt("full sync aborted".into())),
        };
        let b = match batch.as_mut() {
            Some(b) => b,
            None => batch.insert(store.begin()?),
        };
        b.put_item_slices(&file, items.iter())?;
        batch_bytes += items.bytes();
        if batch_bytes >= LOAD_BATCH_BYTES {
            if let Some(b) = batch.take() {
                store.commit(b, lsn)?;
            }
            batch_bytes = 0;
        }
    }
    // The sender is gone: the load is complete.
    if let Some(b) = batch.take() {
        store.commit(b, lsn)?;
    }
    Ok(store)
}
