//! The journal writer: appends records, group commit, segment roll, undo, removal.
//!
//! Records appended during one event-loop turn are buffered in memory ([`Journal::append`]) and
//! written and made durable together by one [`Journal::commit`]: one write, one fdatasync for
//! everything that arrived in the turn; its last record carries the commit flag. The current
//! segment is allocated ahead in zeroed chunks ([`PREALLOC_CHUNK`]), so that a commit's
//! fdatasync flushes data only, not the file size (measured: it saves an inode write per
//! commit). A failed allocation (disk full) is rolled back and the batch's LSNs are reused, so the
//! journal never holds a record nobody was told about. A failed sync poisons the writer: after
//! fsync fails, what is on disk is unknown, so the process must restart and recover from what
//! is really there.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::JournalError;
use super::format::{self, DbId, HEADER_LEN, Lsn, SegmentHeader};

/// The current segment grows by at least this much zeroed space at a time.
pub const PREALLOC_CHUNK: u64 = 1 << 20;
static ZEROS: [u8; 64 * 1024] = [0u8; 64 * 1024];
use super::archive::{ArchiveHandle, Archiver};
use super::fs::{Fs, SegmentFile, SyncHandle};
use super::recovery::{self, Recovery};
use super::segment::SegmentInfo;
use super::syncer::SyncRequest;

/// How the journal makes commits durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// fdatasync before a commit returns (production).
    Fsync,
    /// No sync at all: for tests and benchmarks only; kill -9 of the OS loses acknowledged writes.
    None,
}

#[derive(Debug, Clone)]
pub struct JournalOptions {
    /// A new segment is started once the current one reaches this size.
    pub segment_size: u64,
    pub sync: SyncMode,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            segment_size: 64 << 20,
            sync: SyncMode::Fsync,
        }
    }
}

/// Where a commit began, so that a commit whose store apply failed can be undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitMark {
    segment_first_lsn: Lsn,
    offset: u64,
    first_lsn: Lsn,
}

/// The journal of one database instance.
pub struct Journal {
    dir: PathBuf,
    db_id: DbId,
    fs: Arc<dyn Fs>,
    opts: JournalOptions,
    segments: Vec<SegmentInfo>,
    file: Box<dyn SegmentFile>,
    /// End of the records in the current (last) segment.
    file_len: u64,
    /// Length of the current segment on disk (records, then zeros).
    alloc_len: u64,
    /// Records appended but not yet committed.
    buf: Vec<u8>,
    /// Offset in `buf` of the last record appended.
    last_record: usize,
    pending: u64,
    next_lsn: Lsn,
    /// Last LSN written to the file (maybe not yet durable).
    written_lsn: Lsn,
    /// Last LSN known durable.
    durable_lsn: Lsn,
    /// Last LSN a sync was requested for.
    requested_lsn: Lsn,
    last_generation: u64,
    poisoned: Option<String>,
    sync_handle: Option<Arc<dyn SyncHandle>>,
    /// Bytes committed since the counter was last reset (checkpoint trigger).
    bytes_since_mark: u64,
    /// Sealed segments are archived before removal (see [`super::archive`]).
    archive: Option<ArchiveHandle>,
    /// Unique per opened journal (see [`SyncRequest::journal`]).
    instance: u64,
}

static INSTANCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Journal {
    /// Opens (creating if needed) the journal in `dir`, recovering a torn tail.
    /// `start_lsn` is the LSN of the first record when the directory holds no segment.
    pub fn open(
        dir: &Path,
        db_id: DbId,
        start_lsn: Lsn,
        opts: JournalOptions,
        fs: Arc<dyn Fs>,
    ) -> Result<(Journal, Recovery), JournalError> {
        std::fs::create_dir_all(dir).map_err(|source| JournalError::Io {
            path: dir.to_path_buf(),
            op: "create directory",
            source,
        })?;
        let recovery = recovery::recover(dir, &db_id, fs.as_ref())?;
        let report = &recovery.report;
        let mut segments: Vec<SegmentInfo> =
            report.segments.iter().map(|s| s.info.clone()).collect();
        let (file, file_len, next_lsn) = match report.segments.last() {
            Some(last) => {
                let f = fs
                    .open_write(&last.info.path)
                    .map_err(|source| JournalError::Io {
                        path: last.info.path.clone(),
                        op: "open for writing",
                        source,
                    })?;
                (f, last.valid_len, report.next_lsn.unwrap_or(start_lsn))
            }
            None => {
                let (f, info) = create_segment(dir, &db_id, start_lsn, fs.as_ref())?;
                segments.push(info);
                (f, HEADER_LEN as u64, start_lsn)
            }
        };
        let journal = Journal {
            dir: dir.to_path_buf(),
            db_id,
            fs,
            opts,
            segments,
            file,
            file_len,
            // Whatever follows the records on disk is zeros (recovery checked), so it counts
            // as allocated.
            alloc_len: report
                .segments
                .last()
                .map_or(HEADER_LEN as u64, |s| s.file_len.max(s.valid_len)),
            buf: Vec::with_capacity(1 << 20),
            last_record: 0,
            pending: 0,
            next_lsn,
            written_lsn: next_lsn - 1,
            durable_lsn: next_lsn - 1,
            requested_lsn: next_lsn - 1,
            last_generation: report.last_generation,
            poisoned: None,
            sync_handle: None,
            bytes_since_mark: 0,
            archive: None,
            instance: INSTANCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        };
        Ok((journal, recovery))
    }

    /// Archives every sealed segment before it is removed: those present now (in LSN
    /// order; again if they were archived before a restart) and each one sealed from now on.
    pub fn set_archiver(&mut self, archiver: Archiver) -> std::io::Result<()> {
        let handle = ArchiveHandle::start(archiver)?;
        for seg in &self.segments[..self.segments.len().saturating_sub(1)] {
            handle.queue(seg.clone());
        }
        self.archive = Some(handle);
        Ok(())
    }

    /// Buffers one record; it becomes durable with the next [`Journal::commit`].
    pub fn append(&mut self, generation: u64, payload: &[u8]) -> Lsn {
        let lsn = self.next_lsn;
        self.last_record = self.buf.len();
        format::encode_record(&mut self.buf, lsn, generation, payload);
        self.next_lsn += 1;
        self.pending += 1;
        self.last_generation = generation;
        lsn
    }

    /// Writes and syncs all buffered records (a [`Journal::write`] then a
    /// [`Journal::sync_now`]). Returns the mark of where they begin (for [`Journal::undo`]).
    pub fn commit(&mut self) -> Result<Option<CommitMark>, JournalError> {
        let mark = self.write()?;
        self.sync_now()?;
        Ok(mark)
    }

    /// Writes all buffered records to the file, without waiting for the disk: they are
    /// durable once a sync covers them ([`Journal::sync_now`], or a [`super::Syncer`] fed by
    /// [`Journal::sync_request`]). Returns the mark of where they begin (for
    /// [`Journal::undo`]) or None when nothing was pending. When space cannot be allocated
    /// (disk full) the batch is discarded and its LSNs are reused.
    pub fn write(&mut self) -> Result<Option<CommitMark>, JournalError> {
        if let Some(why) = &self.poisoned {
            return Err(JournalError::Poisoned(why.clone()));
        }
        if self.pending == 0 {
            return Ok(None);
        }
        let first_lsn = self.written_lsn + 1;
        if self.file_len > HEADER_LEN as u64
            && self.file_len + self.buf.len() as u64 > self.opts.segment_size
        {
            if let Err(e) = self.roll(first_lsn) {
                self.discard_pending();
                return Err(e);
            }
        }
        let mark = CommitMark {
            segment_first_lsn: self.current_segment().first_lsn,
            offset: self.file_len,
            first_lsn,
        };
        format::mark_commit(&mut self.buf, self.last_record, first_lsn);
        let end = self.file_len + self.buf.len() as u64;
        if end > self.alloc_len {
            if let Err(e) = self.allocate(end) {
                self.discard_pending();
                return Err(e);
            }
        }
        if let Err(e) = self.file.write_at(self.file_len, &self.buf) {
            // The space was allocated, so this is not a full disk: an I/O error.
            let path = self.current_segment().path.clone();
            return Err(self.poison(format!("write to {} failed: {e}", path.display())));
        }
        self.file_len += self.buf.len() as u64;
        self.bytes_since_mark += self.buf.len() as u64;
        self.written_lsn = self.next_lsn - 1;
        if self.opts.sync == SyncMode::None {
            self.durable_lsn = self.written_lsn;
            self.requested_lsn = self.written_lsn;
        }
        self.buf.clear();
        self.pending = 0;
        Ok(Some(mark))
    }

    /// Makes everything written durable, in this thread.
    pub fn sync_now(&mut self) -> Result<(), JournalError> {
        if let Some(why) = &self.poisoned {
            return Err(JournalError::Poisoned(why.clone()));
        }
        if self.durable_lsn >= self.written_lsn {
            return Ok(());
        }
        if let Err(e) = self.file.sync_data() {
            let path = self.current_segment().path.clone();
            return Err(self.poison(format!("fdatasync of {} failed: {e}", path.display())));
        }
        self.durable_lsn = self.written_lsn;
        self.requested_lsn = self.written_lsn;
        Ok(())
    }

    /// A sync to hand to another thread, if records were written since the last request.
    pub fn sync_request(&mut self) -> Option<SyncRequest> {
        if self.poisoned.is_some() || self.requested_lsn >= self.written_lsn {
            return None;
        }
        match self.sync_handle() {
            Ok(handle) => {
                self.requested_lsn = self.written_lsn;
                Some(SyncRequest {
                    handle,
                    upto: self.written_lsn,
                    journal: self.instance,
                })
            }
            Err(e) => {
                log::warn!("journal: no sync handle ({e}); syncing in the loop");
                None
            }
        }
    }

    fn sync_handle(&mut self) -> std::io::Result<Arc<dyn SyncHandle>> {
        if let Some(h) = &self.sync_handle {
            return Ok(h.clone());
        }
        let h = self.file.sync_handle()?;
        self.sync_handle = Some(h.clone());
        Ok(h)
    }

    /// Whether a sync was requested ([`Journal::sync_request`]) and has not been reported.
    pub fn sync_in_flight(&self) -> bool {
        self.durable_lsn < self.requested_lsn
    }

    /// Records that a sync covering `lsn` completed (ignored when it was asked by another
    /// opened journal, one this replaced).
    pub fn mark_durable(&mut self, instance: u64, lsn: Lsn) {
        if instance != self.instance {
            return;
        }
        self.durable_lsn = self.durable_lsn.max(lsn.min(self.written_lsn));
    }

    /// This opened journal's number, unique in the process.
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// Records that a sync failed: the journal is unusable until restart.
    pub fn sync_failed(&mut self, e: &std::io::Error) -> JournalError {
        let path = self.current_segment().path.clone();
        self.poison(format!("fdatasync of {} failed: {e}", path.display()))
    }

    /// Extends the current segment with zeros so that it holds at least `end` bytes.
    fn allocate(&mut self, end: u64) -> Result<(), JournalError> {
        let target = end.max(self.alloc_len + PREALLOC_CHUNK).min(
            // Never far beyond the segment size, but always enough for this batch.
            self.opts.segment_size.max(end),
        );
        let mut at = self.alloc_len;
        while at < target {
            let n = (target - at).min(ZEROS.len() as u64) as usize;
            if let Err(source) = self.file.write_at(at, &ZEROS[..n]) {
                let path = self.current_segment().path.clone();
                // Give back what was allocated; the records end where they did.
                if let Err(e) = self.file.set_len(self.alloc_len) {
                    return Err(self.poison(format!(
                        "cannot cut a failed allocation back in {}: {e}",
                        path.display()
                    )));
                }
                return Err(JournalError::write_failed(path, source));
            }
            at += n as u64;
        }
        self.alloc_len = target;
        Ok(())
    }

    /// Drops records appended since the last commit; their LSNs will be reused.
    pub fn discard_pending(&mut self) {
        self.next_lsn -= self.pending;
        self.pending = 0;
        self.buf.clear();
    }

    /// Removes a committed batch again (its store apply failed, nobody was acknowledged).
    /// Only the latest commit can be undone.
    pub fn undo(&mut self, mark: CommitMark) -> Result<(), JournalError> {
        if self.current_segment().first_lsn != mark.segment_first_lsn
            || mark.first_lsn > self.written_lsn + 1
        {
            return Err(self.poison("undo of a commit that is not the latest".into()));
        }
        self.discard_pending();
        let mut at = mark.offset;
        while at < self.file_len {
            let n = (self.file_len - at).min(ZEROS.len() as u64) as usize;
            if let Err(e) = self.file.write_at(at, &ZEROS[..n]) {
                return Err(self.poison(format!("cannot undo a commit: {e}")));
            }
            at += n as u64;
        }
        if self.opts.sync == SyncMode::Fsync {
            if let Err(e) = self.file.sync_data() {
                return Err(self.poison(format!("fdatasync after undo failed: {e}")));
            }
        }
        self.file_len = mark.offset;
        self.written_lsn = mark.first_lsn - 1;
        self.durable_lsn = self.durable_lsn.min(self.written_lsn);
        self.requested_lsn = self.requested_lsn.min(self.written_lsn);
        self.next_lsn = mark.first_lsn;
        Ok(())
    }

    fn poison(&mut self, why: String) -> JournalError {
        log::error!("journal: {why}; the journal refuses further writes until restart");
        self.poisoned = Some(why.clone());
        JournalError::Poisoned(why)
    }

    fn current_segment(&self) -> &SegmentInfo {
        // Invariant: open() always leaves at least one segment.
        &self.segments[self.segments.len() - 1]
    }

    fn roll(&mut self, first_lsn: Lsn) -> Result<(), JournalError> {
        // Seal: give back the zeros allocated ahead, and make sure all is on disk (in sync mode
        // none this is the only sync: only the last segment may ever have a torn tail).
        let sealed = self
            .file
            .set_len(self.file_len)
            .and_then(|_| self.file.sync_data());
        if let Err(e) = sealed {
            return Err(self.poison(format!("sealing a segment failed: {e}")));
        }
        // Everything written so far is in the sealed segment, now synced.
        self.durable_lsn = self.written_lsn;
        self.requested_lsn = self.written_lsn;
        self.sync_handle = None;
        let (file, info) = create_segment(&self.dir, &self.db_id, first_lsn, self.fs.as_ref())?;
        self.file = file;
        self.file_len = HEADER_LEN as u64;
        self.alloc_len = HEADER_LEN as u64;
        self.segments.push(info);
        if let Some(a) = &self.archive {
            a.queue(self.segments[self.segments.len() - 2].clone());
        }
        Ok(())
    }

    /// Removes segments whose records all have LSN <= `lsn`, never the current one, and,
    /// with an archiver, none that is not archived yet.
    /// This is the only place segments are deleted.
    pub fn remove_through(&mut self, lsn: Lsn) -> Result<Vec<PathBuf>, JournalError> {
        let mut removed = Vec::new();
        while self.segments.len() > 1 && self.segments[1].first_lsn <= lsn + 1 {
            if let Some(a) = &self.archive {
                if !a.is_archived(self.segments[0].first_lsn) {
                    break;
                }
            }
            let seg = self.segments.remove(0);
            self.fs
                .remove(&seg.path)
                .map_err(|source| JournalError::Io {
                    path: seg.path.clone(),
                    op: "remove segment",
                    source,
                })?;
            removed.push(seg.path);
        }
        if !removed.is_empty() {
            self.fs
                .sync_dir(&self.dir)
                .map_err(|source| JournalError::Io {
                    path: self.dir.clone(),
                    op: "sync directory",
                    source,
                })?;
        }
        Ok(removed)
    }

    /// LSN of the last durable record (0 when none ever was).
    pub fn durable_lsn(&self) -> Lsn {
        self.durable_lsn
    }
    /// LSN of the last record written to the file (durable or not yet).
    pub fn written_lsn(&self) -> Lsn {
        self.written_lsn
    }
    /// LSN the next appended record gets.
    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }
    /// LSN of the oldest record still in the journal's segments.
    pub fn first_lsn(&self) -> Lsn {
        self.segments.first().map_or(self.next_lsn, |s| s.first_lsn)
    }
    pub fn pending(&self) -> u64 {
        self.pending
    }
    pub fn pending_bytes(&self) -> usize {
        self.buf.len()
    }
    pub fn last_generation(&self) -> u64 {
        self.last_generation
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn segments(&self) -> &[SegmentInfo] {
        &self.segments
    }
    /// Bytes of records the journal holds on disk: the sealed segments' sizes and the records
    /// of the current one (not the zeros allocated ahead of them). One stat per sealed segment.
    pub fn size_bytes(&self) -> u64 {
        let sealed = &self.segments[..self.segments.len().saturating_sub(1)];
        let on_disk: u64 = sealed
            .iter()
            .map(|s| std::fs::metadata(&s.path).map_or(0, |m| m.len()))
            .sum();
        on_disk + self.file_len
    }
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }
    /// Bytes committed since [`Journal::reset_bytes_counter`].
    pub fn bytes_since_mark(&self) -> u64 {
        self.bytes_since_mark
    }
    pub fn reset_bytes_counter(&mut self) {
        self.bytes_since_mark = 0;
    }
}

fn create_segment(
    dir: &Path,
    db_id: &DbId,
    first_lsn: Lsn,
    fs: &dyn Fs,
) -> Result<(Box<dyn SegmentFile>, SegmentInfo), JournalError> {
    let path = format::segment_path(dir, first_lsn);
    let err = |op| {
        let path = path.clone();
        move |source| JournalError::write_failed_op(path, op, source)
    };
    let mut file = fs.create(&path).map_err(err("create segment"))?;
    let header = SegmentHeader {
        first_lsn,
        db_id: *db_id,
    };
    let written = file
        .write_at(0, &header.encode())
        .and_then(|_| file.sync_data())
        .and_then(|_| fs.sync_dir(dir));
    if let Err(source) = written {
        // Leave no torn segment behind if we can help it.
        let _ = fs.remove(&path);
        return Err(JournalError::write_failed_op(
            path,
            "write segment header",
            source,
        ));
    }
    Ok((file, SegmentInfo { path, first_lsn }))
}
