//! The syncer: a thread that runs the journal's fdatasync while the event loop goes on.
//!
//! The loop writes a turn's records, hands the sync to this thread and starts the next turn;
//! the replies of a turn are sent only once a sync covering it is reported back. With one sync
//! in flight while the next batch forms, a group commit costs max(fsync, work) instead of
//! fsync + work (measured in bench/single-node.sh: see README). Requests that queue up while a
//! sync runs are merged: the next sync covers them all. The thread owns nothing but the file
//! handles it is given; results come back through [`Syncer::results`], announced by `notify`.

use std::io;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use super::format::Lsn;
use super::fs::SyncHandle;

/// A sync to run: everything up to `upto` is in the file behind `handle`.
pub struct SyncRequest {
    pub handle: Arc<dyn SyncHandle>,
    pub upto: Lsn,
    /// Which opened journal asked ([`super::Journal::instance`]): a result for a journal
    /// that was replaced since (full sync, rewind) must not count for the new one.
    pub journal: u64,
}

/// What a sync came to.
#[derive(Debug)]
pub enum SyncOutcome {
    /// Records up to this LSN of that journal instance are durable.
    Synced { journal: u64, upto: Lsn },
    /// fdatasync failed: nothing after the last success can be trusted.
    Failed(Lsn, io::Error),
}

pub struct Syncer {
    tx: Option<Sender<SyncRequest>>,
    results: Receiver<SyncOutcome>,
    thread: Option<JoinHandle<()>>,
}

impl Syncer {
    /// Starts the thread; `notify` is called after each result is queued.
    pub fn start(notify: impl Fn() + Send + 'static) -> io::Result<Syncer> {
        let (tx, rx) = mpsc::channel::<SyncRequest>();
        let (rtx, results) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("hb-syncer".into())
            .spawn(move || {
                while let Ok(mut req) = rx.recv() {
                    // Merge what queued up meanwhile: the latest request covers the others
                    // (older segments were synced when they were sealed).
                    while let Ok(next) = rx.try_recv() {
                        req = next;
                    }
                    let outcome = match req.handle.sync_data() {
                        Ok(()) => SyncOutcome::Synced {
                            journal: req.journal,
                            upto: req.upto,
                        },
                        Err(e) => SyncOutcome::Failed(req.upto, e),
                    };
                    if rtx.send(outcome).is_err() {
                        return;
                    }
                    notify();
                }
            })?;
        Ok(Syncer {
            tx: Some(tx),
            results,
            thread: Some(thread),
        })
    }

    pub fn request(&self, req: SyncRequest) {
        if let Some(tx) = &self.tx {
            // The thread only stops when we drop the sender.
            let _ = tx.send(req);
        }
    }

    /// Results reported since the last call.
    pub fn results(&self) -> Vec<SyncOutcome> {
        self.results.try_iter().collect()
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    struct Counting(Arc<AtomicUsize>, bool);
    impl SyncHandle for Counting {
        fn sync_data(&self) -> io::Result<()> {
            self.0.fetch_add(1, Ordering::SeqCst);
            if self.1 {
                Err(io::Error::from_raw_os_error(libc::EIO))
            } else {
                Ok(())
            }
        }
    }

    fn wait_results(s: &Syncer, n: usize) -> Vec<SyncOutcome> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        while got.len() < n && Instant::now() < deadline {
            got.extend(s.results());
            std::thread::sleep(Duration::from_millis(1));
        }
        got
    }

    #[test]
    fn syncs_report_back_and_notify() {
        let calls = Arc::new(AtomicUsize::new(0));
        let notified = Arc::new(AtomicUsize::new(0));
        let n2 = notified.clone();
        let s = Syncer::start(move || {
            n2.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        s.request(SyncRequest {
            handle: Arc::new(Counting(calls.clone(), false)),
            upto: 7,
            journal: 1,
        });
        let r = wait_results(&s, 1);
        assert!(
            matches!(
                r[..],
                [SyncOutcome::Synced {
                    journal: 1,
                    upto: 7
                }]
            ),
            "{r:?}"
        );
        assert!(notified.load(Ordering::SeqCst) >= 1);
        s.request(SyncRequest {
            handle: Arc::new(Counting(calls.clone(), true)),
            upto: 9,
            journal: 1,
        });
        let r = wait_results(&s, 1);
        assert!(matches!(r[..], [SyncOutcome::Failed(9, _)]), "{r:?}");
    }
}
