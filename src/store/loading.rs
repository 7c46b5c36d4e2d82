//! The file of a copy being loaded (a full sync's new copy, a restore's): redb writes it, but
//! its syncs wait until the load is complete, and its pages go to the disk from a thread of
//! their own, past the page cache.
//!
//! A load of 5M items (1.1 GB) is CPU-bound where cores are few: redb's inserts fill both cores
//! of a small machine. Writing the pages out took a fifth of it (`examples/store_load.rs`, 5M
//! items: 8.0 s, 6.5 s with the writes dropped): each commit made 17k `pwrite`s of 4 KiB on
//! the committing thread (the copy into the page cache and ext4's bookkeeping of each) while
//! the helper that fills the other parts waited for the commit; then the kernel's threads
//! wrote the page cache out.
//!
//! While a load is on:
//! - A sync returns at once (redb syncs at each commit and at each growth of the file).
//! - A page write is copied into a batch in memory and returns. A sync (a commit's) hands the
//!   batch to the thread, which writes it in offset order, runs of adjacent pages with one
//!   `pwritev`: a commit's pages are mostly adjacent once sorted (redb writes them in the order
//!   of its cache's hash stripes), 17k pages in about 20 runs. Through a descriptor opened with
//!   `O_DIRECT`, where the file system has it and the runs are long: no copy into the page
//!   cache and no writeback left to do. Otherwise through the page cache, asking the kernel to
//!   start writing the batch out (`sync_file_range`), so that the disk works beside the
//!   inserts rather than all at the end.
//! - Reads, length changes and real syncs first wait until every queued write is in the file.
//!   A load reads a handful of pages (10 in a 5M load); a write that is not page-aligned (none
//!   in a load) waits too, then goes straight to the file.
//! - A failed write (a full disk) fails every later write, read and sync of the file: the
//!   load fails with that error and its copy is dropped.
//!
//! Memory: a batch is handed over at a commit or at [`BATCH_BYTES`]; one batch fills while the
//! thread writes the one before, and a third may wait for it; past that a write waits. A full
//! sync commits every 64 MiB of items, about 70 MiB of pages: 140 MiB in batches as a rule,
//! 210 MiB at most, for the length of the load.
//! Measured, 5M items of 200 bytes, alternated runs: `store_load` median 7.73 s before (6
//! runs), 6.88 s after; a full sync on loopback 8.26 s before, 7.28 s after (5 runs each).
//!
//! Why skipping syncs is safe: a copy being loaded is never opened after a crash (its
//! `state.M.tmp` is removed by `DataDir::prepare`), so the crash ordering that redb's
//! intermediate syncs give has no reader; [`Loading::end`] waits for the thread and restores
//! real syncs and writes before the checkpoint that completes the load, and that checkpoint's
//! `fdatasync` makes everything durable (the direct writes, the file's length) before the copy
//! can go live.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use redb::StorageBackend;
use redb::backends::FileBackend;

use super::behind::{Failure, write_run};

/// Alignment of direct I/O (memory, offsets and lengths), and redb's page size.
const PAGE: usize = 4096;
/// A batch is handed to the thread at a sync, or once it holds this many bytes.
const BATCH_BYTES: usize = 128 << 20;
/// Most pages one `pwritev` takes (the kernel's IOV_MAX).
const IOV_MAX: usize = 1024;
/// A batch goes past the page cache only if its runs are this many pages long on average.
const MIN_DIRECT_RUN: usize = 16;

/// One page of a batch, aligned as direct I/O needs.
#[derive(Clone, Copy)]
#[repr(C, align(4096))]
struct Page([u8; PAGE]);

/// A write held in a batch: `pages` pages from `first` on, for the file at `offset`.
#[derive(Clone, Copy)]
struct Held {
    offset: u64,
    first: usize,
    pages: usize,
}

impl Held {
    fn end(&self) -> u64 {
        self.offset + (self.pages * PAGE) as u64
    }
}

#[derive(Default)]
struct Batch {
    pages: Vec<Page>,
    writes: Vec<Held>,
}

impl Batch {
    fn bytes(&self) -> usize {
        self.pages.len() * PAGE
    }

    fn push(&mut self, offset: u64, data: &[u8]) {
        let first = self.pages.len();
        self.pages.extend(data.chunks_exact(PAGE).map(|c| {
            let mut p = Page([0; PAGE]);
            p.0.copy_from_slice(c);
            p
        }));
        self.writes.push(Held {
            offset,
            first,
            pages: self.pages.len() - first,
        });
    }

    fn clear(&mut self) {
        self.pages.clear();
        self.writes.clear();
    }

    /// The writes in the order to make them: by offset, a later write of the same range
    /// replacing an earlier one; in the order they came if ranges overlap otherwise.
    fn plan(&self) -> Vec<Held> {
        let mut by_offset = self.writes.clone();
        by_offset.sort_by_key(|w| w.offset);
        let mut plan: Vec<Held> = Vec::with_capacity(by_offset.len());
        for w in by_offset {
            if let Some(last) = plan.last_mut() {
                if last.offset == w.offset && last.pages == w.pages {
                    // The sort is stable: `w` came later.
                    *last = w;
                    continue;
                }
                if w.offset < last.end() {
                    return self.writes.clone();
                }
            }
            plan.push(w);
        }
        plan
    }

    /// The plan cut into runs: adjacent ranges, each written with one `pwritev`.
    fn runs(plan: &[Held]) -> Vec<&[Held]> {
        let mut runs = Vec::new();
        let mut at = 0;
        while at < plan.len() {
            let mut to = at + 1;
            let mut pages = plan[at].pages;
            while to < plan.len()
                && plan[to].offset == plan[to - 1].end()
                && pages + plan[to].pages <= IOV_MAX
            {
                pages += plan[to].pages;
                to += 1;
            }
            runs.push(&plan[at..to]);
            at = to;
        }
        runs
    }

    /// Writes the batch: with direct I/O if `files` have it and the runs are long enough
    /// (a direct write waits for the disk: 4 KiB ones crawl), otherwise through the page
    /// cache, whose writing out the kernel is asked to start. Ok(whether direct).
    fn write_to(&self, files: &Files) -> io::Result<bool> {
        let plan = self.plan();
        let runs = Self::runs(&plan);
        let file = match &files.direct {
            Some(f) if self.pages.len() >= MIN_DIRECT_RUN * runs.len() => f,
            _ => &files.buffered,
        };
        for run in &runs {
            self.write_run(file, run)?;
        }
        let direct = !std::ptr::eq(file, &files.buffered);
        if !direct {
            // Starts writing what this batch dirtied; waits for none of it.
            // SAFETY: a plain syscall on an open descriptor, no memory passed.
            unsafe {
                libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
            }
        }
        Ok(direct)
    }

    fn write_run(&self, file: &File, run: &[Held]) -> io::Result<()> {
        let slices: Vec<&[u8]> = run
            .iter()
            .flat_map(|w| {
                self.pages[w.first..w.first + w.pages]
                    .iter()
                    .map(|p| &p.0[..])
            })
            .collect();
        write_run(file, run[0].offset, &slices)
    }
}

struct State {
    /// Set while loading: syncs return at once, page writes are queued.
    loading: bool,
    filling: Batch,
    /// Handed over, for the thread to take.
    ready: Option<Batch>,
    /// The thread is writing a batch.
    busy: bool,
    /// An emptied batch, to fill again (its memory is kept during a load).
    spare: Vec<Batch>,
    failure: Option<Failure>,
    /// The load was given up: what is queued need not be written.
    abandoned: bool,
    stop: bool,
    /// A batch is handed over once it holds this many bytes ([`BATCH_BYTES`]).
    batch_bytes: usize,
    /// Batches written with direct I/O, and through the page cache.
    direct_batches: u64,
    buffered_batches: u64,
}

/// The state shared by the backend, the thread and the store's [`Loading`].
pub(super) struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("loading::Shared").finish_non_exhaustive()
    }
}

impl Shared {
    fn new(batch_bytes: usize) -> Shared {
        Shared {
            state: Mutex::new(State {
                loading: false,
                filling: Batch::default(),
                ready: None,
                busy: false,
                spare: Vec::new(),
                failure: None,
                abandoned: false,
                stop: false,
                batch_bytes,
                direct_batches: 0,
                buffered_batches: 0,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, g: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed.wait(g).unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a load is on (syncs deferred, writes queued).
    #[cfg(test)]
    pub(super) fn loading(&self) -> bool {
        self.lock().loading
    }

    /// Batches written so far: (with direct I/O, through the page cache).
    #[cfg(test)]
    fn batches(&self) -> (u64, u64) {
        let g = self.lock();
        (g.direct_batches, g.buffered_batches)
    }

    /// Hands the filling batch to the thread (waiting while the previous one is not taken).
    fn close_batch<'a>(&'a self, mut g: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        if g.filling.writes.is_empty() {
            return g;
        }
        while g.ready.is_some() && g.failure.is_none() {
            g = self.wait(g);
        }
        if g.failure.is_none() {
            let fresh = g.spare.pop().unwrap_or_default();
            let full = std::mem::replace(&mut g.filling, fresh);
            g.ready = Some(full);
            self.changed.notify_all();
        }
        g
    }

    /// Waits until every queued write is in the file. Err: the thread failed.
    fn drain(&self) -> io::Result<()> {
        let mut g = self.close_batch(self.lock());
        while (g.ready.is_some() || g.busy) && g.failure.is_none() {
            g = self.wait(g);
        }
        match &g.failure {
            Some(f) => Err(f.error()),
            None => Ok(()),
        }
    }
}

/// redb's file backend for a copy being made: while a load is on, syncs wait and writes go
/// behind (see the module docs); otherwise redb's own file backend.
#[derive(Debug)]
pub(super) struct LoadingFile {
    inner: FileBackend,
    shared: Arc<Shared>,
}

impl LoadingFile {
    /// The backend on `file`, and the state through which [`Loading`] turns loading on.
    pub(super) fn new(file: File) -> io::Result<(LoadingFile, Arc<Shared>)> {
        LoadingFile::with_batches(file, BATCH_BYTES)
    }

    fn with_batches(file: File, batch_bytes: usize) -> io::Result<(LoadingFile, Arc<Shared>)> {
        let shared = Arc::new(Shared::new(batch_bytes));
        let inner = FileBackend::new(file).map_err(io::Error::other)?;
        Ok((
            LoadingFile {
                inner,
                shared: shared.clone(),
            },
            shared,
        ))
    }
}

impl StorageBackend for LoadingFile {
    fn len(&self) -> Result<u64, io::Error> {
        self.shared.drain()?;
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.shared.drain()?;
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.shared.drain()?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        {
            let g = self.shared.lock();
            if g.loading {
                // Nothing is promised before the checkpoint that ends the load: hand the
                // batch over (a commit's pages) and go on.
                let g = self.shared.close_batch(g);
                return match &g.failure {
                    Some(f) => Err(f.error()),
                    None => Ok(()),
                };
            }
        }
        self.shared.drain()?;
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let aligned = offset % PAGE as u64 == 0 && data.len() % PAGE == 0 && !data.is_empty();
        {
            let mut g = self.shared.lock();
            if let Some(f) = &g.failure {
                return Err(f.error());
            }
            if g.loading && aligned {
                if g.filling.bytes() + data.len() > g.batch_bytes {
                    g = self.shared.close_batch(g);
                    if let Some(f) = &g.failure {
                        return Err(f.error());
                    }
                }
                g.filling.push(offset, data);
                return Ok(());
            }
        }
        self.shared.drain()?;
        self.inner.write(offset, data)
    }

    fn close(&self) -> Result<(), io::Error> {
        let drained = self.shared.drain();
        let closed = self.inner.close();
        drained?;
        closed
    }

    delegate_locks_to!(inner);
}

/// A load in progress: syncs deferred, writes going behind on the thread.
pub(super) struct Loading {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Loading {
    /// Turns loading on for the backend behind `shared`, whose file is at `path`; its pages
    /// are written by a thread of its own.
    pub(super) fn start(shared: Arc<Shared>, path: &Path) -> io::Result<Loading> {
        Loading::start_with(shared, Files::open(path)?)
    }

    fn start_with(shared: Arc<Shared>, files: Files) -> io::Result<Loading> {
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("hb-load-writer".into())
                .spawn(move || write_loop(files, &shared))?
        };
        {
            let mut g = shared.lock();
            g.loading = true;
            g.stop = false;
            g.abandoned = false;
        }
        Ok(Loading {
            shared,
            thread: Some(thread),
        })
    }

    /// Ends the load: every queued write is in the file (or failed: the backend's next
    /// operation says so), the thread has stopped, and syncs and writes are direct again.
    pub(super) fn end(mut self) {
        self.stop_now(false);
    }

    /// Stops the thread after what is queued (or dropping it, `abandon`).
    fn stop_now(&mut self, abandon: bool) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        {
            let mut g = self.shared.lock();
            // From here on writes go to the file (after the queue), not into a batch.
            g.loading = false;
            if abandon {
                g.abandoned = true;
                g.filling.clear();
                g.ready = None;
            }
            let mut g = self.shared.close_batch(g);
            g.stop = true;
            self.shared.changed.notify_all();
        }
        let _ = thread.join();
        let mut g = self.shared.lock();
        // The batches' memory goes with the load.
        g.spare = Vec::new();
        g.filling = Batch::default();
    }
}

impl Drop for Loading {
    fn drop(&mut self) {
        // Not ended: the load was given up, and its copy goes.
        self.stop_now(true);
    }
}

/// The thread's descriptors of the file: one with direct I/O where the file system has it,
/// one through the page cache.
struct Files {
    direct: Option<File>,
    buffered: File,
}

impl Files {
    fn open(path: &Path) -> io::Result<Files> {
        let direct = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path);
        let direct = match direct {
            Ok(f) => Some(f),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => None,
            Err(e) => return Err(e),
        };
        let buffered = std::fs::OpenOptions::new().write(true).open(path)?;
        Ok(Files { direct, buffered })
    }
}

/// The thread: takes each ready batch and writes it; on stop, ends once nothing is queued
/// (what is queued is dropped instead if the load was abandoned).
fn write_loop(mut files: Files, shared: &Shared) {
    loop {
        let batch = {
            let mut g = shared.lock();
            loop {
                if let Some(b) = g.ready.take() {
                    g.busy = true;
                    break b;
                }
                if g.stop {
                    return;
                }
                g = shared.wait(g);
            }
        };
        let skip = {
            let g = shared.lock();
            g.failure.is_some() || g.abandoned
        };
        let mut result = if skip {
            Ok(None)
        } else {
            batch.write_to(&files).map(Some)
        };
        if let Err(e) = &result
            && e.raw_os_error() == Some(libc::EINVAL)
            && files.direct.is_some()
        {
            // Direct I/O taken at open but refused at write (some file systems do): this
            // batch again, and the rest of the load, through the page cache.
            log::info!(
                "loading a copy: direct writes refused ({e}); writing through the page cache"
            );
            files.direct = None;
            result = batch.write_to(&files).map(Some);
        }
        let mut batch = batch;
        batch.clear();
        let mut g = shared.lock();
        g.busy = false;
        if g.spare.is_empty() {
            g.spare.push(batch);
        }
        match result {
            Ok(Some(true)) => g.direct_batches += 1,
            Ok(Some(false)) => g.buffered_batches += 1,
            Ok(None) => {}
            Err(e) => {
                // Not logged here: the load fails with it, and says so.
                if g.failure.is_none() {
                    g.failure = Some(Failure::of(&e));
                }
            }
        }
        shared.changed.notify_all();
    }
}

#[cfg(test)]
mod tests;
