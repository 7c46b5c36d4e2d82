//! The file of a copy being loaded (a full sync's new copy, a restore's): redb writes it, but its
//! syncs wait until the load is complete, and the kernel is kept writing the file out
//! meanwhile.
//!
//! Before, a load of 5M items (1.1 GB) stood still twice over for the disk. redb grows the file
//! a few times, and each growth syncs it: the loading thread waited 0.6–0.7 s while the disk
//! wrote everything evicted so far. Then the final checkpoint wrote the rest (the half of the
//! cache that non-durable commits leave in redb's buffer) and synced it: 1.1 s with nothing
//! else to do. The kernel starts writing dirty pages on its own only past
//! `dirty_background_ratio` (GiBs), so the disk idled during the inserts.
//!
//! Now, while loading: a sync returns at once; each commit of the loader is a durable one,
//! which hands its pages to the file (its sync returns at once too); and a thread asks the
//! kernel every [`WRITEBACK_EVERY`] to start writing the file out
//! (`sync_file_range(SYNC_FILE_RANGE_WRITE)`: it starts the writes and waits for none). The
//! disk works beside the inserts, and the final checkpoint takes 0.02–0.07 s instead of 1.1 s.
//! `examples/store_load.rs`, 5M items, 5 runs each, alternated: median 8.90 s before,
//! 8.10 s after.
//!
//! Why skipping syncs is safe: a copy being loaded is never opened after a crash (its
//! `state.M.tmp` is removed by `DataDir::prepare`), so the crash ordering that redb's
//! intermediate syncs give has no reader; [`Loading::end`] restores real syncs before the
//! checkpoint that completes the load, and that checkpoint's `fdatasync` makes everything
//! durable, the file's length included, before the copy can go live.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use redb::StorageBackend;
use redb::backends::FileBackend;

/// How often the kernel is asked to start writing the file out during a load.
const WRITEBACK_EVERY: Duration = Duration::from_millis(50);

/// redb's file backend whose syncs can be held back while a copy is loaded.
#[derive(Debug)]
pub(super) struct LoadingFile {
    inner: FileBackend,
    /// Set while loading: a sync returns at once.
    defer: Arc<AtomicBool>,
}

impl LoadingFile {
    /// The backend on `file`, and the switch that defers its syncs (off at first).
    pub(super) fn new(file: File) -> io::Result<(LoadingFile, Arc<AtomicBool>)> {
        let defer = Arc::new(AtomicBool::new(false));
        let inner = FileBackend::new(file).map_err(io::Error::other)?;
        Ok((
            LoadingFile {
                inner,
                defer: defer.clone(),
            },
            defer,
        ))
    }
}

impl StorageBackend for LoadingFile {
    fn len(&self) -> Result<u64, io::Error> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        if self.defer.load(Ordering::Acquire) {
            return Ok(());
        }
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.inner.write(offset, data)
    }

    fn close(&self) -> Result<(), io::Error> {
        self.inner.close()
    }

    delegate_locks_to!(inner);
}

/// A load in progress: syncs deferred, and the thread that keeps the kernel writing.
pub(super) struct Loading {
    defer: Arc<AtomicBool>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Loading {
    /// Defers the syncs of the backend behind `defer` and starts writing `file` out.
    pub(super) fn start(defer: Arc<AtomicBool>, file: File) -> io::Result<Loading> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("hb-writeback".into())
                .spawn(move || write_out(&file, &stop))?
        };
        defer.store(true, Ordering::Release);
        Ok(Loading {
            defer,
            stop,
            thread: Some(thread),
        })
    }

    /// Ends the load: syncs are real again, and the writing thread has stopped.
    pub(super) fn end(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.defer.store(false, Ordering::Release);
        {
            let (lock, cv) = &*self.stop;
            *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
            cv.notify_all();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Loading {
    fn drop(&mut self) {
        self.stop_now();
    }
}

fn write_out(file: &File, stop: &(Mutex<bool>, Condvar)) {
    let (lock, cv) = stop;
    loop {
        {
            let stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
            let (stopped, _) = cv
                .wait_timeout(stopped, WRITEBACK_EVERY)
                .unwrap_or_else(|p| p.into_inner());
            if *stopped {
                return;
            }
        }
        // Starts the writing of the whole file's dirty pages; waits for none of it. An error
        // (a full disk, say) shows again in the sync that ends the load, which fails it.
        // SAFETY: a plain syscall on an open descriptor, no memory passed.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
}
