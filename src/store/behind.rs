//! The store file's writes and syncs, done behind the event loop in the order redb made them.
//!
//! redb writes its dirty pages and calls `sync_data` inside a commit, on the thread that
//! commits: a checkpoint under a heavy write load held the event loop for half a second (the
//! pages of ten seconds of writes, then the fsync behind the journal's own), and so did every
//! growth of the file (redb syncs the new length before a header can name it).
//!
//! [`WriteBehind`] is the store's redb backend. A write is copied into a queue and returns;
//! a sync closes the current *epoch* and returns at once. A thread writes the epochs in
//! order: every page of an epoch, then `fdatasync`, and only then anything of the next one.
//! What reaches the disk is therefore exactly what a synchronous run would have written, in
//! the same order, only later: a crash (of the process or of the machine) leaves the file as
//! a synchronous run that crashed a little earlier would have, which redb recovers from as
//! ever. What the store may no longer assume is that a commit is durable when it returns:
//! [`WriteBehind::barrier`] numbers the syncs asked for, [`WriteBehind::durable`] says how
//! many are done, and [`WriteBehind::wait`] waits for one (a checkpoint that must be durable
//! before anything is said of it).
//!
//! Reads see the queue: a page still queued (or being written) is read from there, the newest
//! copy winning. The queue holds at most about `cap` bytes: past that, a write waits for the
//! thread. A full disk stalls the thread: it tries the epoch again every half second, while reads
//! see the queue, writes go on queueing up to the cap (then fail with the disk's error), and a
//! wait for a sync fails at once. Any other error stops the thread for good: nothing more
//! reaches the file, every later write or sync returns the error (reads still see the queue),
//! and the store is reopened from what is on disk, as after a crash.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use redb::StorageBackend;
use redb::backends::FileBackend;

/// Most pages one `pwritev` takes.
const IOV_MAX: usize = 512;

type Pages = BTreeMap<u64, Vec<u8>>;

/// Writes up to a sync.
#[derive(Default)]
struct Epoch {
    pages: Pages,
    /// A sync closed it: the thread ends it with an fdatasync, and nothing is added.
    closed: bool,
}

/// An error of the writing thread, kept to be returned again.
#[derive(Clone)]
pub(super) struct Failure {
    os: Option<i32>,
    kind: io::ErrorKind,
    message: String,
}

impl Failure {
    pub(super) fn of(e: &io::Error) -> Failure {
        Failure {
            os: e.raw_os_error(),
            kind: e.kind(),
            message: e.to_string(),
        }
    }
    pub(super) fn error(&self) -> io::Error {
        match self.os {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(self.kind, self.message.clone()),
        }
    }
}

#[derive(Default)]
struct State {
    /// Epochs not fully written, oldest first; only the last may be open.
    queue: VecDeque<Epoch>,
    /// Pages the thread is writing now (taken from the front epoch).
    writing: Option<Arc<Pages>>,
    /// Bytes in `queue` and `writing`.
    bytes: usize,
    /// Longest single write seen (how far back an overlapping write may start).
    longest: u64,
    /// Syncs asked for, and syncs done.
    barriers: u64,
    durable: u64,
    failure: Option<Failure>,
    /// The disk is full: the thread retries the front epoch now and then.
    stalled: Option<Failure>,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-changed in a way that
        // matters more than the panic itself: go on with it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn wait<'a>(&self, g: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed.wait(g).unwrap_or_else(|p| p.into_inner())
    }
}

/// A redb backend writing a file behind the caller's back, in order (see the module docs).
pub struct WriteBehind {
    file: Arc<File>,
    /// redb's own file backend on the same file, for its locks only.
    locks: FileBackend,
    shared: Arc<Shared>,
    cap: usize,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for WriteBehind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBehind").finish_non_exhaustive()
    }
}

/// A handle on a [`WriteBehind`]'s progress, kept by the store after redb took the backend.
#[derive(Clone)]
pub struct Progress {
    shared: Arc<Shared>,
}

impl Progress {
    /// Syncs asked for so far: a commit that returned is durable once [`Progress::durable`]
    /// reaches this number as read after it.
    pub fn barrier(&self) -> u64 {
        self.shared.lock().barriers
    }

    /// Syncs done.
    pub fn durable(&self) -> u64 {
        self.shared.lock().durable
    }

    /// Ok, or the error that stopped the writing thread.
    pub fn failure(&self) -> io::Result<()> {
        match &self.shared.lock().failure {
            Some(f) => Err(f.error()),
            None => Ok(()),
        }
    }

    /// Waits until sync number `n` is done. Err: the writing thread failed, or it is stalled
    /// on a full disk (no waiting for room).
    pub fn wait(&self, n: u64) -> io::Result<()> {
        let mut g = self.shared.lock();
        loop {
            if let Some(f) = &g.failure {
                return Err(f.error());
            }
            if g.durable >= n {
                return Ok(());
            }
            if let Some(f) = &g.stalled {
                return Err(f.error());
            }
            g = self.shared.wait(g);
        }
    }
}

impl WriteBehind {
    /// A backend on `file` (open for reading and writing) holding at most about `cap` bytes
    /// of writes not yet handed to the file.
    pub fn new(file: File, cap: usize) -> io::Result<(WriteBehind, Progress)> {
        let locks = FileBackend::new(file.try_clone()?).map_err(io::Error::other)?;
        let file = Arc::new(file);
        let cap = cap.max(1 << 20);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let thread = {
            let (file, shared) = (file.clone(), shared.clone());
            std::thread::Builder::new()
                .name("hb-store-writer".into())
                .spawn(move || write_loop(&file, &shared))?
        };
        let progress = Progress {
            shared: shared.clone(),
        };
        Ok((
            WriteBehind {
                file,
                locks,
                shared,
                cap,
                thread: Mutex::new(Some(thread)),
            },
            progress,
        ))
    }

    /// Closes the open epoch (a sync) and returns its number.
    fn close_epoch(g: &mut State) -> u64 {
        match g.queue.back_mut() {
            Some(e) if !e.closed => e.closed = true,
            _ => g.queue.push_back(Epoch {
                pages: Pages::new(),
                closed: true,
            }),
        }
        g.barriers += 1;
        g.barriers
    }

    /// Waits until everything queued so far is written and synced.
    fn drain(&self) -> io::Result<()> {
        let n = {
            let mut g = self.shared.lock();
            if let Some(f) = &g.failure {
                return Err(f.error());
            }
            let n = Self::close_epoch(&mut g);
            self.shared.changed.notify_all();
            n
        };
        Progress {
            shared: self.shared.clone(),
        }
        .wait(n)
    }
}

/// Puts a write into an epoch's pages, cutting what it overwrites out of older entries there
/// (so that the entries of an epoch never overlap, and their order does not matter). Returns
/// the bytes added and removed.
fn insert(pages: &mut Pages, longest: u64, offset: u64, data: &[u8]) -> (usize, usize) {
    let end = offset + data.len() as u64;
    let from = offset.saturating_sub(longest.saturating_sub(1));
    let hit: Vec<u64> = pages
        .range(from..end)
        .filter(|(at, d)| **at + d.len() as u64 > offset)
        .map(|(at, _)| *at)
        .collect();
    let (mut added, mut removed) = (data.len(), 0);
    for at in hit {
        let Some(old) = pages.remove(&at) else {
            continue;
        };
        removed += old.len();
        let old_end = at + old.len() as u64;
        if at < offset {
            let head = old[..(offset - at) as usize].to_vec();
            added += head.len();
            pages.insert(at, head);
        }
        if old_end > end {
            let tail = old[(end - at) as usize..].to_vec();
            added += tail.len();
            pages.insert(end, tail);
        }
    }
    pages.insert(offset, data.to_vec());
    (added, removed)
}

/// Copies into `out` (the bytes at `offset`) what `pages` hold of them.
fn overlay(pages: &Pages, longest: u64, offset: u64, out: &mut [u8]) {
    let end = offset + out.len() as u64;
    for (&at, data) in pages.range(offset.saturating_sub(longest.saturating_sub(1))..end) {
        let data_end = at + data.len() as u64;
        if data_end <= offset {
            continue;
        }
        let (from, to) = (at.max(offset), data_end.min(end));
        out[(from - offset) as usize..(to - offset) as usize]
            .copy_from_slice(&data[(from - at) as usize..(to - at) as usize]);
    }
}

/// The thread: epochs in order, each written then synced. The pages of the open epoch are
/// written as they come (the disk space they take is taken about when it was before), the
/// sync once the epoch is closed.
fn write_loop(file: &File, shared: &Shared) {
    loop {
        let (pages, closes) = {
            let mut g = shared.lock();
            loop {
                if g.failure.is_some() {
                    return;
                }
                let ready = g
                    .queue
                    .front()
                    .is_some_and(|e| e.closed || !e.pages.is_empty());
                if ready {
                    break;
                }
                if g.stop {
                    return;
                }
                g = shared.wait(g);
            }
            let closes = g.queue.front().is_some_and(|e| e.closed);
            let pages = match g.queue.front_mut() {
                Some(e) => Arc::new(std::mem::take(&mut e.pages)),
                None => continue,
            };
            if closes {
                g.queue.pop_front();
            }
            g.writing = Some(pages.clone());
            (pages, closes)
        };
        let mut result = write_pages(file, &pages);
        if result.is_ok() && closes {
            result = file.sync_data();
        }
        let mut g = shared.lock();
        g.writing = None;
        match result {
            Ok(()) => {
                g.bytes -= pages.values().map(Vec::len).sum::<usize>();
                if closes {
                    g.durable += 1;
                }
                if g.stalled.take().is_some() {
                    log::info!("store file: writing behind again (the disk has room)");
                }
            }
            Err(e) if is_full(&e) => {
                // The disk is full: the epoch goes back in front, to be written again from its
                // start when there is room (rewriting what did land is harmless). Reads see it
                // meanwhile; a wait for it fails at once (see Progress::wait).
                if g.stalled.is_none() {
                    log::warn!("store file: {e}; retrying every {RETRY:?}");
                }
                g.stalled = Some(Failure::of(&e));
                put_back(&mut g, &pages, closes);
                shared.changed.notify_all();
                if !g.stop {
                    g = shared
                        .changed
                        .wait_timeout(g, RETRY)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|p| p.into_inner().0);
                }
                if g.stop {
                    return;
                }
            }
            Err(e) => {
                log::error!("store file: writing behind failed: {e}");
                g.failure = Some(Failure::of(&e));
                // Nothing after a failed epoch may reach the file: the thread stops here. What
                // it did not write stays queued for reads (redb's view includes it) until the
                // store is closed and opened again from the disk.
                put_back(&mut g, &pages, closes);
            }
        }
        shared.changed.notify_all();
    }
}

/// How often a thread stalled on a full disk tries again.
const RETRY: std::time::Duration = std::time::Duration::from_millis(500);

fn is_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Puts pages the thread could not write back in front of what came after them: a closed
/// epoch of their own, or under the newer pages of the open epoch they were taken from.
fn put_back(g: &mut State, pages: &Pages, closed: bool) {
    if closed {
        g.queue.push_front(Epoch {
            pages: pages.clone(),
            closed: true,
        });
    } else {
        let longest = g.longest;
        match g.queue.front_mut() {
            Some(front) => {
                let newer = std::mem::take(&mut front.pages);
                let mut merged = pages.clone();
                for (at, data) in &newer {
                    insert(&mut merged, longest, *at, data);
                }
                front.pages = merged;
            }
            None => g.queue.push_front(Epoch {
                pages: pages.clone(),
                closed: false,
            }),
        }
    }
    g.bytes = g
        .queue
        .iter()
        .flat_map(|e| e.pages.values())
        .map(Vec::len)
        .sum();
}

/// Writes pages in offset order, runs of adjacent ones with one `pwritev`.
fn write_pages(file: &File, pages: &Pages) -> io::Result<()> {
    let mut it = pages.iter().peekable();
    while let Some((&start, first)) = it.next() {
        let mut run: Vec<&[u8]> = vec![first];
        let mut end = start + first.len() as u64;
        while let Some(&(&at, data)) = it.peek() {
            if at != end || run.len() >= IOV_MAX {
                break;
            }
            run.push(data);
            end += data.len() as u64;
            it.next();
        }
        write_run(file, start, &run)?;
    }
    Ok(())
}

/// Writes `run`, slices meant for adjacent ranges from `start` on, with one `pwritev` (then,
/// if it fell short, slice by slice).
pub(super) fn write_run(file: &File, start: u64, run: &[&[u8]]) -> io::Result<()> {
    if run.len() == 1 {
        return file.write_all_at(run[0], start);
    }
    let iov: Vec<libc::iovec> = run
        .iter()
        .map(|d| libc::iovec {
            iov_base: d.as_ptr() as *mut libc::c_void,
            iov_len: d.len(),
        })
        .collect();
    let total: usize = run.iter().map(|d| d.len()).sum();
    // SAFETY: every iovec points into a live slice of `run` for the call's duration, and
    // pwritev only reads from them.
    let n = unsafe {
        libc::pwritev(
            file.as_raw_fd(),
            iov.as_ptr(),
            iov.len() as libc::c_int,
            start as libc::off_t,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    if n as usize != total {
        // Short (or interrupted): the rest one slice at a time.
        let mut at = start;
        for d in run {
            file.write_all_at(d, at)?;
            at += d.len() as u64;
        }
    }
    Ok(())
}

impl StorageBackend for WriteBehind {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.file.metadata()?.len())
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        // What is queued for these bytes, oldest first (the newest is copied last). Reads go
        // on after a failure of the thread: what it did not write is still queued.
        let queued: Vec<Pages> = {
            let g = self.shared.lock();
            let end = offset + out.len() as u64;
            let from = offset.saturating_sub(g.longest.saturating_sub(1));
            let pick = |p: &Pages| -> Pages {
                p.range(from..end)
                    .filter(|(at, d)| **at + d.len() as u64 > offset)
                    .map(|(at, d)| (*at, d.clone()))
                    .collect()
            };
            let mut v = Vec::new();
            if let Some(w) = &g.writing {
                v.push(pick(w));
            }
            for e in &g.queue {
                v.push(pick(&e.pages));
            }
            v.retain(|p| !p.is_empty());
            v
        };
        let covered = queued.len() == 1
            && queued[0].len() == 1
            && queued[0]
                .iter()
                .next()
                .is_some_and(|(at, d)| *at == offset && d.len() == out.len());
        if !covered {
            self.file.read_exact_at(out, offset)?;
        }
        for p in &queued {
            overlay(p, u64::MAX, offset, out);
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let old = self.file.metadata()?.len();
        if len < old {
            // Nothing queued may land past the new end after the cut.
            self.drain()?;
            return self.file.set_len(len);
        }
        if let Some(f) = &self.shared.lock().failure {
            return Err(f.error());
        }
        self.file.set_len(len)
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        let mut g = self.shared.lock();
        if let Some(f) = &g.failure {
            return Err(f.error());
        }
        Self::close_epoch(&mut g);
        self.shared.changed.notify_all();
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut g = self.shared.lock();
        loop {
            if let Some(f) = &g.failure {
                return Err(f.error());
            }
            if g.bytes < self.cap {
                break;
            }
            if let Some(f) = &g.stalled {
                // Full, and the disk is full: the transaction fails as a write would have.
                return Err(f.error());
            }
            g = self.shared.wait(g);
        }
        let open = matches!(g.queue.back(), Some(e) if !e.closed);
        if !open {
            g.queue.push_back(Epoch::default());
        }
        let longest = g.longest.max(data.len() as u64);
        g.longest = longest;
        let (added, removed) = match g.queue.back_mut() {
            Some(e) => insert(&mut e.pages, longest, offset, data),
            None => (0, 0),
        };
        g.bytes = g.bytes + added - removed;
        self.shared.changed.notify_all();
        Ok(())
    }

    fn close(&self) -> Result<(), io::Error> {
        let drained = self.drain();
        {
            let mut g = self.shared.lock();
            g.stop = true;
            self.shared.changed.notify_all();
        }
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
        let unlocked = self.locks.close();
        drained?;
        unlocked
    }

    delegate_locks_to!(locks);
}

impl Drop for WriteBehind {
    fn drop(&mut self) {
        // redb calls close(); if it could not, stop the thread after what is queued.
        let mut g = self.shared.lock();
        g.stop = true;
        self.shared.changed.notify_all();
    }
}

#[cfg(test)]
mod tests;
