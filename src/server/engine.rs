//! The engine: the database state machine the event loop drives, one turn at a time.
//!
//! It owns the [`Store`] and the [`Journal`] of a data directory and the work of the current
//! loop turn: commands read through [`Engine::reader`] and write ops through [`Engine::write`];
//! each finished command (or EXEC) becomes one journal record ([`Engine::end_txn`]); at the end
//! of the turn [`Engine::end_turn`] writes all records of the turn at once (group commit) and
//! commits the store batch. The records become durable with one fdatasync, run by the event
//! loop's syncer thread ([`Engine::sync_request`], [`Engine::on_sync`]) while the next turn is
//! served. Nothing is sent to a client before everything it could have seen is durable: the
//! event loop holds a turn's replies until [`Engine::durable_lsn`] reaches the turn's
//! [`Engine::visible_lsn`]. And the store is never made durable (checkpoint, close) ahead of
//! the journal: those sync the journal first.
//!
//! Start-up ([`Engine::open`]) locks the data directory, recovers the journal tail, and replays
//! the journal from the store's checkpoint.

use std::ffi::CString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::datadir::{DataDir, JOURNAL_DIR, NodeId, STORE_FILE};
use crate::journal::fs::{Fs, RealFs};
use crate::journal::{
    Journal, JournalError, JournalOptions, JournalReader, Lsn, SyncMode, SyncOutcome, SyncRequest,
};
use crate::store::{Batch, Reader, Source, Store, StoreError, StoreOptions, View};
use crate::txn::{Op, Transaction};

/// Replay commits the store every this many records.
const REPLAY_BATCH: u64 = 10_000;
/// The open store batch is committed (not durably) this often...
pub const STORE_COMMIT_INTERVAL: Duration = Duration::from_millis(20);
/// ... unless writes come faster than this many journal bytes a second (a slave catching up, a
/// pipelined load): then the batch stays open up to [`BULK_COMMIT_INTERVAL`], so that its item
/// writes reach redb in large sorted runs (see `store::pending`), each B-tree leaf copied once
/// per commit instead of once per write. Reads go through the open batch either way.
const BULK_RATE: u64 = 12 << 20;
const BULK_COMMIT_INTERVAL: Duration = Duration::from_secs(1);
/// Free space below which a turn's buffered item writes go to redb before the turn is
/// acknowledged instead of at the batch's commit ([`Engine::room_to_defer`]).
const DEFER_ROOM: u64 = 1 << 30;
/// How many records past its durable LSN a node ships ([`Engine::shippable_lsn`]). A slave
/// therefore holds nothing its master may have lost in a crash except among its last
/// `SHIP_AHEAD` records: those are the ones whose stamps it shows at the handshake.
pub const SHIP_AHEAD: u64 = 4096;

#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub data_dir: PathBuf,
    pub sync: SyncMode,
    pub segment_size: u64,
    pub cache_size: usize,
    /// Writes are refused while the data directory's file system has less free space.
    pub min_free_space: u64,
    /// Globs of file names that are logged (replicated) ...
    pub logged: Vec<String>,
    /// ... unless they match one of these.
    pub unlogged: Vec<String>,
    /// A slave: clients may only read; data comes from the master over the link.
    pub slave: bool,
    /// Where journal segments are archived before removal.
    pub archive: Option<crate::journal::archive::Archiver>,
}

impl EngineOptions {
    /// Whether a new file of this name starts logged.
    pub fn is_logged(&self, file: &str) -> bool {
        let m = |globs: &[String]| {
            globs
                .iter()
                .any(|g| crate::glob::glob_match(g.as_bytes(), file.as_bytes(), false))
        };
        m(&self.logged) && !m(&self.unlogged)
    }
}

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("data directory {}: {what}: {source}", dir.display())]
    DataDir {
        dir: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    #[error(
        "data directory {} is in use by another hotbackup process (its lock file is held)",
        .0.display()
    )]
    Locked(PathBuf),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("journal record LSN {lsn} does not decode: {what}")]
    BadRecord { lsn: Lsn, what: String },
    #[error(
        "the store is at LSN {store} but the journal ends at LSN {journal}: the journal was truncated or replaced; restore it or rebuild from a slave"
    )]
    StoreAhead { store: Lsn, journal: Lsn },
    #[error(
        "the journal starts at LSN {first} but the store needs LSN {needed} onwards: journal segments are missing"
    )]
    JournalMissing { first: Lsn, needed: Lsn },
    #[error("{0}")]
    Role(String),
    /// Not enough room on the data directory's file system (a full sync's new copy).
    #[error("{0}")]
    NoSpace(String),
}

/// Where the master is, for a refused write's message (empty when unknown).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MasterHint(pub Option<String>);

impl std::fmt::Display for MasterHint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(a) => write!(f, " The master is at {a}."),
            None => Ok(()),
        }
    }
}

/// Why a write was refused before anything was done.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WriteRefused {
    #[error(
        "disk full: {free} bytes free on the data directory's file system, below min_free_space ({min}); writes are refused until space is freed, reads still work"
    )]
    LowSpace { free: u64, min: u64 },
    #[error(
        "disk full: the last write failed ({0}); writes are refused until space is freed, reads still work"
    )]
    DiskFull(String),
    #[error("writes are refused: {0}")]
    Unavailable(String),
    /// A read while the store is being recovered (after a failed write, from the journal).
    #[error("the store cannot be read now: {0}; it is being rebuilt from the journal, retry")]
    ReadUnavailable(String),
    /// This node is a slave.
    #[error("READONLY You can't write against a read only replica.{0}")]
    ReadOnly(MasterHint),
    /// This node was a master and learnt that a newer one exists.
    #[error("READONLY You can't write against a read only replica. This node was fenced: {0}")]
    Fenced(String),
    /// A master handing over to its slave (switchover) with `switchover_writes = "refuse"`.
    #[error(
        "TRYAGAIN a switchover is in progress; retry in a moment (on the new master if it completes)"
    )]
    Paused,
    /// A master checking with its peers at start whether it is still the master.
    #[error(
        "TRYAGAIN this node is checking with its peers whether it is still the master; retry shortly"
    )]
    CheckingPeers,
    /// A sync mode's slaves did not acknowledge in time and the policy is to refuse.
    #[error("NOREPLICAS Not enough good replicas to write.")]
    NoReplicas,
}

/// A write command's failure.
#[derive(Debug, Error)]
pub enum WriteError {
    #[error(transparent)]
    Refused(#[from] WriteRefused),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How the end of a turn went.
#[derive(Debug)]
pub enum TurnOutcome {
    /// Nothing was written.
    ReadOnly,
    /// Records up to this LSN are durable and applied.
    Committed(Lsn),
    /// The turn's writes failed and were rolled back: none of them happened. The message is
    /// what clients are told. `fatal` means the process must restart to recover.
    Failed { message: String, fatal: bool },
}

/// Counters for INFO.
#[derive(Debug, Default, Clone)]
pub struct EngineStats {
    pub records: u64,
    pub commits: u64,
    /// Time spent writing turns to the journal, microseconds.
    pub commit_us: u64,
    /// Journal syncs completed, and the time from request to result, microseconds.
    pub syncs: u64,
    pub sync_us: u64,
    pub failed_turns: u64,
    pub checkpoints: u64,
    pub last_checkpoint_ms: u64,
    /// How long the last checkpoint and the longest one held the event loop, microseconds.
    pub last_checkpoint_us: u64,
    pub max_checkpoint_us: u64,
    pub replayed_at_start: u64,
    pub truncated_at_start: Option<String>,
}

pub struct Engine {
    opts: EngineOptions,
    fs: Arc<dyn Fs>,
    data: DataDir,
    /// The live copy's directory (resolved: a later switch does not move it).
    state_dir: PathBuf,
    node_id: NodeId,
    store: Option<Store>,
    journal: Journal,
    generation: u64,
    batch: Option<Batch>,
    batch_opened: Instant,
    /// This turn changed the batch and has records not yet written.
    turn_dirty: bool,
    view: Option<View>,
    /// Ops of the transaction being built (a command or a MULTI block).
    txn_ops: Vec<Op>,
    batch_error: Option<StoreError>,
    /// Last measured free space, and when.
    /// Last measured free space, when, and `written_bytes` then.
    free_space: Option<(u64, Instant, u64)>,
    /// Journal bytes written by this process (a running total), and its value when the open
    /// store batch began: the free-space guard's estimate of what is not yet measured.
    written_bytes: u64,
    batch_written_at: u64,
    /// Set after a real disk-full failure; cleared when a write goes through.
    disk_full: Option<String>,
    store_broken: Option<String>,
    last_checkpoint: Instant,
    checkpoint_requested: bool,
    checkpoint_postponed: bool,
    no_replicas: bool,
    /// Set when a newer master exists: why (persisted until rejoin).
    fenced: Option<String>,
    /// Where clients reach the master (a slave's master, or the master that fenced this node).
    master_addr: Option<String>,
    /// A switchover's pause of new writes: Some(refuse) while it lasts (refuse: TRYAGAIN at
    /// once; else they wait in the event loop).
    write_pause: Option<bool>,
    /// A disk-full incident was raised and not yet ended.
    disk_alarm: bool,
    /// A rejoin's rewind in progress (see `rejoin.rs`).
    rewind: Option<crate::store::rewind::RewindState>,
    /// What the last rejoin exported.
    rejoin_report: Option<String>,
    /// The node this slave follows ("hex-id name"), as also kept in the store.
    master_node: Option<String>,
    /// A master at start, until it has heard from its peers (or given up waiting).
    checking_peers: bool,
    /// The oldest LSN a slave may still need (journal retention).
    retention_floor: Option<Lsn>,
    sync_started: Option<Instant>,
    fatal: Option<String>,
    /// `sys/...` records applied from upstream, for the link (see `sys.rs`).
    sys_applied: Vec<sys::SysApplied>,
    /// The last full sync loaded by this process (text) and when it went live.
    last_full_sync: Option<(String, Instant)>,
    /// Wakes the event loop (a full sync's loader calls it when the new copy is durable).
    wake: Option<loader::Wake>,
    /// What a full sync's new copy took on disk per item, when the last one ran out of room
    /// (see `room.rs`).
    full_sync_bytes_per_item: Option<f64>,
    pub stats: EngineStats,
    _lock: File,
}

/// Free bytes (for unprivileged users) on the file system holding `dir`.
pub fn free_space(dir: &Path) -> std::io::Result<u64> {
    let c = CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated path; `st` is a valid out-pointer that statvfs fills.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    // The field types differ between architectures.
    #[allow(clippy::unnecessary_cast)]
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// Space a checkpoint may need: the store pages written since the last one (bounded by twice
/// the journal bytes written since, plus a margin for the B-tree's own pages).
fn checkpoint_room(dir: &Path, journal_bytes: u64) -> Result<(), String> {
    let need = (16 << 20) + journal_bytes.saturating_mul(2);
    match free_space(dir) {
        Ok(free) if free < need => Err(format!(
            "{free} bytes free on the data directory's file system, about {need} needed"
        )),
        _ => Ok(()),
    }
}

/// Applies the journal's records `from..=upto` to a batch. Returns how many.
fn apply_records(
    journal: &Journal,
    batch: &mut Batch,
    from: Lsn,
    upto: Lsn,
    rewind: Option<&crate::store::rewind::RewindState>,
) -> Result<u64, EngineError> {
    let mut reader = JournalReader::open(journal.dir(), from, Some(upto))?;
    let mut count = 0;
    let mut last = from - 1;
    while let Some(rec) = reader.next_record()? {
        let txn = Transaction::decode(&rec.payload).map_err(|e| EngineError::BadRecord {
            lsn: rec.lsn,
            what: e.to_string(),
        })?;
        batch.set_lsn(rec.lsn);
        for op in &txn.ops {
            if rewind.is_some_and(|r| r.skips(rec.lsn, op)) {
                continue;
            }
            batch.apply(op)?;
        }
        last = rec.lsn;
        count += 1;
    }
    if last != upto {
        return Err(EngineError::Journal(JournalError::Gap {
            segment: journal.dir().to_path_buf(),
            expected: last + 1,
            found: upto,
        }));
    }
    Ok(count)
}

/// Starts archiving the journal's segments, if the options say where.
pub(crate) fn attach_archiver(
    journal: &mut Journal,
    opts: &EngineOptions,
) -> Result<(), EngineError> {
    if let Some(a) = &opts.archive {
        journal
            .set_archiver(a.clone())
            .map_err(|source| EngineError::DataDir {
                dir: journal.dir().to_path_buf(),
                what: "cannot start the journal archiver thread",
                source,
            })?;
    }
    Ok(())
}

impl Engine {
    /// Opens the data directory: lock, journal recovery, store, replay from the checkpoint.
    pub fn open(opts: EngineOptions) -> Result<Engine, EngineError> {
        Self::open_with_fs(opts, Arc::new(RealFs))
    }

    pub fn open_with_fs(opts: EngineOptions, fs: Arc<dyn Fs>) -> Result<Engine, EngineError> {
        let dir = &opts.data_dir;
        std::fs::create_dir_all(dir).map_err(|source| EngineError::DataDir {
            dir: dir.clone(),
            what: "cannot create",
            source,
        })?;
        let data = DataDir::new(dir);
        let lock = data.lock().map_err(|e| match e {
            None => EngineError::Locked(dir.clone()),
            Some(source) => EngineError::DataDir {
                dir: dir.clone(),
                what: "cannot open the lock file",
                source,
            },
        })?;
        let layout = |what| {
            let dir = dir.clone();
            move |source| EngineError::DataDir { dir, what, source }
        };
        data.prepare()
            .map_err(layout("cannot prepare the layout"))?;
        let node_id = data
            .node_id()
            .map_err(layout("cannot read or make the node id"))?;
        let state_dir = data
            .live()
            .map_err(layout("cannot resolve the live copy"))?;
        // Opening the store may repair it after a crash (redb walks the whole file).
        crate::systemd::extend_start("opening the store");
        let store = Store::open(
            &state_dir.join(STORE_FILE),
            &StoreOptions {
                cache_size: opts.cache_size,
                ..StoreOptions::default()
            },
        )?;
        let meta = *store.meta();
        // The incident list goes on from what was kept (ids keep increasing).
        crate::incident::restore(store.incidents().unwrap_or_default());
        // Incidents raised while the engine opens (a cut journal tail) name the role this node
        // starts in: the one its store recorded (a promote or rejoin), else the config's.
        crate::incident::set_role(match store.local("role").ok().flatten().as_deref() {
            Some("master") => "master",
            Some("slave") => "slave",
            _ if opts.slave => "slave",
            _ => "master",
        });
        let rewind = store.rewind()?;
        if let Some(r) = rewind.as_ref().filter(|r| r.upto.is_none()) {
            // A rejoin exported the records from r.fork and set the store back before it; the
            // journal may still hold them if the process stopped before cutting it.
            let cut = crate::journal::truncate::truncate_after(
                &state_dir.join(JOURNAL_DIR),
                &meta.db_id,
                r.fork - 1,
                fs.as_ref(),
            )?;
            if cut != Default::default() {
                log::warn!(
                    "rejoin: the journal was cut back to LSN {} at start (an interrupted rewind)",
                    r.fork - 1
                );
            }
        }
        let fs_for_later = fs.clone();
        crate::systemd::extend_start("scanning the journal");
        let (journal, recovery) = Journal::open(
            &state_dir.join(JOURNAL_DIR),
            meta.db_id,
            meta.applied_lsn + 1,
            JournalOptions {
                segment_size: opts.segment_size,
                sync: opts.sync,
            },
            fs,
        )?;
        let mut journal = journal;
        attach_archiver(&mut journal, &opts)?;
        let mut stats = EngineStats::default();
        if let Some((seg, offset, dropped, last)) = &recovery.truncated {
            let what = format!(
                "segment {} offset {offset}: {dropped} bytes of a torn write dropped; last good LSN {}",
                seg.display(),
                last.map_or("none".into(), |l| l.to_string())
            );
            crate::incident::raise(
                crate::incident::Kind::JournalTruncated,
                format!("journal tail cut at start (an unfinished write of a crash): {what}"),
                &[("segment", seg.display().to_string())],
            );
            stats.truncated_at_start = Some(what);
        }
        let mut engine = Engine {
            fs: fs_for_later,
            data,
            state_dir,
            node_id,
            generation: meta.generation,
            opts,
            store: Some(store),
            journal,
            batch: None,
            batch_opened: Instant::now(),
            turn_dirty: false,
            view: None,
            txn_ops: Vec::new(),
            batch_error: None,
            free_space: None,
            written_bytes: 0,
            batch_written_at: 0,
            disk_full: None,
            store_broken: None,
            last_checkpoint: Instant::now(),
            checkpoint_requested: false,
            checkpoint_postponed: false,
            no_replicas: false,
            fenced: None,
            master_addr: None,
            rewind,
            rejoin_report: None,
            master_node: None,
            write_pause: None,
            disk_alarm: false,
            checking_peers: false,
            retention_floor: None,
            sync_started: None,
            fatal: None,
            sys_applied: Vec::new(),
            last_full_sync: None,
            wake: None,
            full_sync_bytes_per_item: None,
            stats,
            _lock: lock,
        };
        engine.stats.replayed_at_start = engine.replay()?;
        engine.load_local_state()?;
        Ok(engine)
    }

    /// Applies journal records the store does not have yet (after a crash: everything after
    /// the last checkpoint; after a store failure: everything written), then checkpoints.
    fn replay(&mut self) -> Result<u64, EngineError> {
        let Some(store) = self.store.as_mut() else {
            return Ok(0);
        };
        let applied = store.meta().applied_lsn;
        let written = self.journal.written_lsn();
        if written < applied {
            return Err(EngineError::StoreAhead {
                store: applied,
                journal: written,
            });
        }
        if written == applied {
            return Ok(0);
        }
        if self.journal.first_lsn() > applied + 1 {
            return Err(EngineError::JournalMissing {
                first: self.journal.first_lsn(),
                needed: applied + 1,
            });
        }
        log::info!(
            "replaying journal LSN {}..={written} into the store",
            applied + 1
        );
        let started = Instant::now();
        let mut count = 0;
        let mut from = applied + 1;
        while from <= written {
            let upto = written.min(from + REPLAY_BATCH - 1);
            let mut batch = store.begin()?;
            count += apply_records(&self.journal, &mut batch, from, upto, self.rewind.as_ref())?;
            store.commit(batch, upto)?;
            from = upto + 1;
            crate::systemd::extend_start(&format!(
                "replayed the journal up to LSN {upto} of {written}"
            ));
        }
        self.generation = self.generation.max(self.journal.last_generation());
        // The store must not be made durable ahead of the journal.
        self.journal.sync_now()?;
        let store = match self.store.as_mut() {
            Some(s) => s,
            None => return Ok(count),
        };
        match checkpoint_room(&self.opts.data_dir, self.journal.bytes_since_mark()) {
            Ok(()) => {
                store.checkpoint()?;
            }
            Err(why) => log::warn!("replay: checkpoint postponed: {why}"),
        }
        log::info!(
            "replayed {count} records in {:.3}s; store at LSN {written}",
            started.elapsed().as_secs_f64()
        );
        Ok(count)
    }

    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Replaces the options that can change at run time (SIGHUP).
    pub fn reload(&mut self, min_free_space: u64, logged: Vec<String>, unlogged: Vec<String>) {
        self.opts.min_free_space = min_free_space;
        self.opts.logged = logged;
        self.opts.unlogged = unlogged;
        self.free_space = None;
    }

    /// This node's identity.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    pub fn data_dir(&self) -> &DataDir {
        &self.data
    }

    /// Why this node's role refuses writes now (slave, fenced, checking with its peers).
    pub fn role_refusal(&self) -> Option<WriteRefused> {
        if self.opts.slave {
            return Some(WriteRefused::ReadOnly(MasterHint(self.master_addr.clone())));
        }
        if let Some(why) = &self.fenced {
            return Some(WriteRefused::Fenced(why.clone()));
        }
        if self.checking_peers {
            return Some(WriteRefused::CheckingPeers);
        }
        if self.write_pause == Some(true) {
            return Some(WriteRefused::Paused);
        }
        None
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The store, unless it is being recovered after an I/O failure.
    pub fn store(&self) -> Option<&Store> {
        self.store.as_ref()
    }

    fn unavailable(&self) -> String {
        self.store_broken
            .clone()
            .unwrap_or_else(|| "store unavailable".into())
    }

    /// What reads see now: this turn's batch if one is open, else a view taken this turn.
    pub fn reader(&mut self) -> Result<Source<'_>, WriteRefused> {
        if self.batch.is_none() && self.view.is_none() {
            let store = self
                .store
                .as_ref()
                .ok_or_else(|| WriteRefused::ReadUnavailable(self.unavailable()))?;
            let view = store
                .view()
                .map_err(|e| WriteRefused::ReadUnavailable(e.to_string()))?;
            self.view = Some(view);
        }
        if let Some(b) = self.batch.as_ref() {
            return Ok(Source::Batch(b));
        }
        match self.view.as_ref() {
            Some(v) => Ok(Source::View(v)),
            None => Err(WriteRefused::ReadUnavailable(self.unavailable())),
        }
    }

    /// Refuses writes early when the disk is (nearly) full or the engine cannot write.
    /// Refuse writes with NOREPLICAS (a sync mode timed out under `on_sync_timeout = refuse`).
    pub fn set_no_replicas(&mut self, on: bool) {
        self.no_replicas = on;
    }

    pub fn check_writable(&mut self) -> Result<(), WriteRefused> {
        let r = self.check_space();
        // Disk full (and back) are incidents, once per episode.
        match (&r, self.disk_alarm) {
            (Err(e @ (WriteRefused::LowSpace { .. } | WriteRefused::DiskFull(_))), false) => {
                self.disk_alarm = true;
                crate::incident::raise(crate::incident::Kind::DiskFull, e.to_string(), &[]);
            }
            (Ok(()), true) => {
                self.disk_alarm = false;
                crate::incident::raise(
                    crate::incident::Kind::DiskRecovered,
                    "disk space is back: writes are accepted again",
                    &[],
                );
            }
            _ => {}
        }
        r
    }

    fn check_space(&mut self) -> Result<(), WriteRefused> {
        if self.no_replicas {
            return Err(WriteRefused::NoReplicas);
        }
        if self.journal.is_poisoned() {
            return Err(WriteRefused::Unavailable(
                "the journal failed to sync; restart needed".into(),
            ));
        }
        if self.store.is_none() {
            return Err(WriteRefused::Unavailable(self.unavailable()));
        }
        let min = self.opts.min_free_space;
        if min == 0 && self.disk_full.is_none() {
            return Ok(());
        }
        // What was written since the last measure, and what the open store batch will still
        // write, are not in a measure yet: count each journal byte three times (the journal,
        // and up to twice that in the store's copy-on-write pages) to decide when to measure
        // again, so that a fast writer cannot fill the disk between two measures.
        let unseen = |at_bytes: u64, written: u64, batch_at: Option<u64>| {
            written.saturating_sub(at_bytes).saturating_mul(3)
                + batch_at.map_or(0, |b| written.saturating_sub(b).saturating_mul(2))
        };
        let batch_at = self.batch.as_ref().map(|_| self.batch_written_at);
        let stale = match self.free_space {
            None => true,
            Some((free, at, at_bytes)) => {
                let est = free.saturating_sub(unseen(at_bytes, self.written_bytes, batch_at));
                // Re-measure often when close to the limit, rarely when far from it.
                let every = if est < min.saturating_mul(4) || self.disk_full.is_some() {
                    Duration::from_millis(10)
                } else {
                    Duration::from_millis(250)
                };
                at.elapsed() >= every
            }
        };
        if stale {
            let free = free_space(&self.opts.data_dir).unwrap_or(u64::MAX);
            if let Some(f) = &self.disk_full {
                // After a real ENOSPC, wait until there is room for a sizeable batch again.
                if free < min.max(1 << 20) {
                    self.free_space = Some((free, Instant::now(), self.written_bytes));
                    return Err(WriteRefused::DiskFull(f.clone()));
                }
                log::info!("disk space is back ({free} bytes free): writes are accepted again");
                self.disk_full = None;
            }
            self.free_space = Some((free, Instant::now(), self.written_bytes));
        }
        if let Some(f) = &self.disk_full {
            return Err(WriteRefused::DiskFull(f.clone()));
        }
        // The decision: the measure, less what the open batch will still write to the store.
        let pending = batch_at.map_or(0, |b| {
            self.written_bytes.saturating_sub(b).saturating_mul(2)
        });
        let Some((free, _, _)) = self.free_space else {
            return Ok(());
        };
        let est = free.saturating_sub(pending);
        if est >= min {
            return Ok(());
        }
        if pending > 0 && free >= min {
            // Only the open batch's estimate refuses, and the estimate is generous (large
            // values cost the store about their size, not twice it): commit the batch when the
            // turn allows and decide on a measure of what it really took. Else writes would
            // flap near the limit: refused on the estimate, accepted after each commit.
            self.commit_batch();
            if self.batch.is_none() {
                let free = free_space(&self.opts.data_dir).unwrap_or(u64::MAX);
                self.free_space = Some((free, Instant::now(), self.written_bytes));
                if free >= min {
                    return Ok(());
                }
                return Err(WriteRefused::LowSpace { free, min });
            }
        }
        Err(WriteRefused::LowSpace { free: est, min })
    }

    fn batch(&mut self) -> Result<&mut Batch, WriteError> {
        if self.batch.is_none() {
            let store = self
                .store
                .as_ref()
                .ok_or_else(|| WriteRefused::Unavailable(self.unavailable()))?;
            let mut batch = store.begin()?;
            batch.set_lsn(self.journal.next_lsn());
            self.batch_written_at = self.written_bytes;
            // Reads from now on must see this batch's writes.
            self.view = None;
            self.batch = Some(batch);
            self.batch_opened = Instant::now();
        }
        match self.batch.as_mut() {
            Some(b) => Ok(b),
            None => Err(WriteRefused::Unavailable("no batch".into()).into()),
        }
    }

    /// Applies one op of the current transaction. Data ops on a file that does not exist yet
    /// first create it, with the logged flag the config globs give.
    pub fn write(&mut self, op: Op) -> Result<(), WriteError> {
        if let Some(r) = self.role_refusal() {
            return Err(r.into());
        }
        if !self.turn_dirty {
            // The first write of a turn: is writing possible at all (disk space, store)?
            self.check_writable()?;
        }
        let needs_file =
            !matches!(op, Op::CreateFile { .. }) && self.batch()?.file_info(op.file()).is_none();
        if needs_file {
            // hotbackup's own files (canary, verify marker) always replicate.
            let logged = crate::files::is_reserved(op.file()) || self.opts.is_logged(op.file());
            self.apply(Op::CreateFile {
                file: op.file().to_string(),
                logged,
            })?;
        }
        self.apply(op)
    }

    fn apply(&mut self, op: Op) -> Result<(), WriteError> {
        self.turn_dirty = true;
        let batch = self.batch()?;
        if let Err(e) = batch.apply(&op) {
            log::error!("store apply failed: {e}");
            let msg = e.to_string();
            self.batch_error = Some(e);
            return Err(StoreError::Corrupt(msg).into());
        }
        self.txn_ops.push(op);
        Ok(())
    }

    /// Ends the current transaction: its ops become one journal record (not yet written).
    pub fn end_txn(&mut self) {
        if self.txn_ops.is_empty() {
            return;
        }
        let txn = Transaction {
            time_ms: crate::txn::now_ms(),
            ops: std::mem::take(&mut self.txn_ops),
        };
        let payload = txn.encode();
        self.journal.append(self.generation, &payload);
        self.stats.records += 1;
        if let Some(b) = self.batch.as_mut() {
            b.set_lsn(self.journal.next_lsn());
        }
    }

    /// Whether this turn has changed anything not yet written to the journal.
    pub fn turn_has_writes(&self) -> bool {
        self.turn_dirty
    }

    /// Ends the turn: one journal write for all its records (the group commit; the sync comes
    /// from [`Engine::sync_request`]). The store batch stays open across turns and is committed
    /// every [`STORE_COMMIT_INTERVAL`] (see [`Engine::tick`]): each redb commit costs copying
    /// and checksumming every page it dirtied, so fewer commits mean much less work.
    pub fn end_turn(&mut self) -> TurnOutcome {
        self.view = None;
        self.end_txn();
        if !std::mem::take(&mut self.turn_dirty) {
            return TurnOutcome::ReadOnly;
        }
        if self.batch_error.is_none() && !self.room_to_defer() {
            // Short of room (or not knowing): the turn's item writes go to redb now, before
            // anyone is told of them, so that a full disk fails this turn (refused, rolled back)
            // rather than a later commit of writes already acknowledged.
            if let Some(Err(e)) = self.batch.as_ref().map(Batch::flush) {
                self.batch_error = Some(e);
            }
        }
        if let Some(e) = self.batch_error.take() {
            self.stats.failed_turns += 1;
            return self.fail_store(e);
        }
        if self.journal.pending() == 0 {
            // Every write of the turn was refused before it changed anything.
            return TurnOutcome::ReadOnly;
        }
        let started = Instant::now();
        self.written_bytes += self.journal.pending_bytes() as u64;
        let written = self.journal.write();
        self.stats.commit_us += started.elapsed().as_micros() as u64;
        match written {
            Ok(_) => {
                self.stats.commits += 1;
                TurnOutcome::Committed(self.journal.written_lsn())
            }
            Err(e) => {
                self.stats.failed_turns += 1;
                self.rebuild_batch();
                self.fail_journal(e)
            }
        }
    }

    /// Throws the open batch away and builds it again from the journal: the records written
    /// since the store's last commit, without the turn that failed (its records were discarded).
    fn rebuild_batch(&mut self) {
        self.batch = None;
        self.txn_ops.clear();
        self.journal.discard_pending();
        let Some(store) = self.store.as_ref() else {
            return;
        };
        let from = store.meta().applied_lsn + 1;
        let upto = self.journal.written_lsn();
        if from > upto {
            return;
        }
        let result = store
            .begin()
            .map_err(EngineError::from)
            .and_then(|mut batch| {
                let n = apply_records(&self.journal, &mut batch, from, upto, self.rewind.as_ref())?;
                Ok((batch, n))
            });
        match result {
            Ok((batch, n)) => {
                log::info!("store batch rebuilt from {n} journal records (LSN {from}..={upto})");
                self.batch = Some(batch);
                self.batch_opened = Instant::now();
            }
            Err(e) => {
                log::error!("rebuilding the store batch failed: {e}; reopening the store");
                self.reopen_store();
            }
        }
    }

    /// Commits the open batch (not durably) when it holds no unwritten records.
    fn commit_batch(&mut self) {
        if self.turn_dirty || self.journal.pending() > 0 {
            return;
        }
        let Some(batch) = self.batch.take() else {
            return;
        };
        let lsn = self.journal.written_lsn();
        let Some(store) = self.store.as_mut() else {
            return;
        };
        if let Err(e) = store.commit(batch, lsn) {
            // The records are in the journal: rebuild the store from it. Nobody needs to be
            // told: their writes are in the journal and become durable with the next sync.
            log::error!("store commit failed: {e}; reopening the store and replaying the journal");
            if e.is_disk_full() {
                self.disk_full = Some(e.to_string());
                self.free_space = None;
            }
            self.reopen_store();
        }
    }

    fn fail_journal(&mut self, e: JournalError) -> TurnOutcome {
        if e.is_disk_full() {
            log::error!("{e}; the turn's writes were rolled back");
            let msg = e.to_string();
            self.disk_full = Some(msg.clone());
            self.free_space = None;
            return TurnOutcome::Failed {
                message: WriteRefused::DiskFull(msg).to_string(),
                fatal: false,
            };
        }
        log::error!("{e}");
        TurnOutcome::Failed {
            message: format!("write failed: {e}"),
            fatal: matches!(e, JournalError::Poisoned(_)),
        }
    }

    /// The store failed while applying: drop the batch and rebuild the store from its
    /// checkpoint plus the journal (which holds everything written).
    fn fail_store(&mut self, e: StoreError) -> TurnOutcome {
        let disk_full = e.is_disk_full();
        log::error!("store failed: {e}; reopening it and replaying the journal");
        if disk_full {
            self.disk_full = Some(e.to_string());
            self.free_space = None;
        }
        let message = if disk_full {
            WriteRefused::DiskFull(e.to_string()).to_string()
        } else {
            format!("write failed: {e}")
        };
        self.batch = None;
        self.txn_ops.clear();
        self.journal.discard_pending();
        self.reopen_store();
        TurnOutcome::Failed {
            message,
            fatal: false,
        }
    }

    /// LSN of the last record whose effects reads may have seen (appended, maybe not yet
    /// written or durable).
    pub fn visible_lsn(&self) -> Lsn {
        self.journal.next_lsn() - 1
    }

    /// Whether a sync was requested and has not come back.
    pub fn sync_in_flight(&self) -> bool {
        self.journal.sync_in_flight()
    }

    /// Bytes of records appended but not yet written.
    pub fn pending_bytes(&self) -> usize {
        self.journal.pending_bytes()
    }

    /// LSN of the last durable record.
    pub fn durable_lsn(&self) -> Lsn {
        self.journal.durable_lsn()
    }

    /// LSN up to which records may be shipped to slaves: everything written to the journal,
    /// up to [`SHIP_AHEAD`] records past what is durable here. Shipping does not wait for this
    /// node's fsync, so a sync mode's write costs max(fsync here, the slave's ack) rather than
    /// their sum. Written records are never taken back while the process lives; a crash of the
    /// machine may lose those not yet durable, which a slave that got them finds out at its
    /// next handshake (the stamps of its last records; see `rejoin.rs`).
    pub fn shippable_lsn(&self) -> Lsn {
        self.journal
            .written_lsn()
            .min(self.journal.durable_lsn() + SHIP_AHEAD)
    }

    /// A sync for the syncer thread, when records were written since the last one.
    pub fn sync_request(&mut self) -> Option<SyncRequest> {
        let r = self.journal.sync_request();
        if r.is_some() && self.sync_started.is_none() {
            self.sync_started = Some(Instant::now());
        }
        r
    }

    /// Takes a syncer result. A failed sync is fatal: returns the message.
    pub fn on_sync(&mut self, o: SyncOutcome) {
        match o {
            SyncOutcome::Synced { journal, upto } => {
                self.journal.mark_durable(journal, upto);
                if let Some(t) = self.sync_started.take() {
                    self.stats.syncs += 1;
                    self.stats.sync_us += t.elapsed().as_micros() as u64;
                }
            }
            SyncOutcome::Failed(_, e) => {
                let err = self.journal.sync_failed(&e);
                self.fatal = Some(err.to_string());
            }
        }
    }

    /// Makes everything written durable, in this thread.
    pub fn sync_now(&mut self) {
        if let Err(e) = self.journal.sync_now() {
            self.fatal = Some(e.to_string());
        }
    }

    /// Set when the engine cannot go on (a journal sync failed): the process must restart and
    /// recover from what is on disk.
    pub fn fatal(&self) -> Option<&str> {
        self.fatal.as_deref()
    }

    /// Drops and reopens the store, replaying the journal. Leaves the engine without a store
    /// (reads and writes refused) if that fails; [`Engine::tick`] retries.
    fn reopen_store(&mut self) {
        self.batch = None;
        self.view = None;
        // Closing the store may make its latest commits durable: the journal first.
        self.sync_now();
        if self.fatal.is_some() {
            return;
        }
        self.store = None;
        let path = self.state_dir.join(STORE_FILE);
        match Store::open(
            &path,
            &StoreOptions {
                cache_size: self.opts.cache_size,
                ..StoreOptions::default()
            },
        ) {
            Ok(s) => {
                self.store = Some(s);
                match self.replay() {
                    Ok(n) => {
                        log::info!("store reopened; {n} journal records replayed");
                        self.store_broken = None;
                    }
                    Err(e) => {
                        log::error!("store replay after reopen failed: {e}");
                        self.store = None;
                        self.store_broken = Some(format!("store recovery failed: {e}"));
                    }
                }
            }
            Err(e) => {
                log::error!("store reopen failed: {e}");
                self.store_broken = Some(format!("store unavailable: {e}"));
            }
        }
    }

    /// Periodic work between turns: the store batch's commit, a checkpoint (and journal
    /// segment removal) when the caller found one due with [`Engine::checkpoint_due`] — the
    /// caller sets the retention floor right before, from that same decision, so that no
    /// checkpoint removes segments under a floor computed before a slot was recorded — and
    /// store recovery retries.
    pub fn tick(&mut self, checkpoint: bool) {
        if self.turn_dirty || self.journal.pending() > 0 {
            // A batch with unwritten records is open (kept while a sync runs).
            return;
        }
        if self.batch.is_some() && self.batch_commit_due() {
            self.commit_batch();
        }
        if self.store.is_none() {
            if self.last_checkpoint.elapsed() >= Duration::from_secs(1) {
                self.last_checkpoint = Instant::now();
                self.reopen_store();
            }
            return;
        }
        if checkpoint {
            // Asked for (SAVE, a setting to persist): durable before anything goes on.
            // Periodic: on disk behind the event loop.
            if std::mem::take(&mut self.checkpoint_requested) {
                self.checkpoint();
            } else {
                self.checkpoint_behind();
            }
        } else {
            self.settle_checkpoint();
        }
    }

    /// Whether the last free-space measure leaves room for the store batch's buffered writes
    /// to wait for the commit (see `store::pending`): [`DEFER_ROOM`], or four times the
    /// free-space guard, beyond what was written since the measure (counted three times).
    fn room_to_defer(&self) -> bool {
        match self.free_space {
            Some((free, _, at_bytes)) if self.disk_full.is_none() => {
                let since = self
                    .written_bytes
                    .saturating_sub(at_bytes)
                    .saturating_mul(3);
                free.saturating_sub(since)
                    >= DEFER_ROOM.max(self.opts.min_free_space.saturating_mul(4))
            }
            _ => false,
        }
    }

    /// Whether the open batch has been open long enough (see [`BULK_RATE`]). A bulk batch's
    /// dirty pages outgrow redb's write buffer and go to the file before the commit, where a
    /// full disk would fail it: only with room to spare ([`Engine::room_to_defer`]).
    fn batch_commit_due(&self) -> bool {
        let age = self.batch_opened.elapsed();
        if age < STORE_COMMIT_INTERVAL {
            return false;
        }
        let bytes = self.written_bytes.saturating_sub(self.batch_written_at);
        let bulk = bytes as f64 >= BULK_RATE as f64 * age.as_secs_f64() && self.room_to_defer();
        !bulk || age >= BULK_COMMIT_INTERVAL
    }

    /// Whether the next [`Engine::tick`] would checkpoint.
    pub fn checkpoint_due(&self, interval: Duration, bytes: u64) -> bool {
        self.store.is_some()
            && (self.checkpoint_requested
                || self.last_checkpoint.elapsed() >= interval
                || self.journal.bytes_since_mark() >= bytes)
    }

    /// Commits the open store batch and checkpoints now. Inside a turn whose writes are not
    /// yet in the journal the batch cannot be committed (the store never goes ahead of the
    /// journal), and a checkpoint then — a second redb write transaction beside the batch's —
    /// would wait for it forever on this very thread: the checkpoint is asked of the next
    /// [`Engine::tick`] instead, right after the turn. Ok(false) says so.
    pub(crate) fn make_durable(&mut self) -> Result<bool, StoreError> {
        if self.turn_dirty || self.journal.pending() > 0 {
            self.checkpoint_requested = true;
            return Ok(false);
        }
        self.commit_batch();
        if self.batch.is_some() {
            // The commit failed and the store is being rebuilt from the journal.
            self.checkpoint_requested = true;
            return Ok(false);
        }
        self.sync_now();
        if let Some(store) = self.store.as_mut() {
            store.checkpoint()?;
        }
        Ok(true)
    }

    /// Asks for a checkpoint at the next [`Engine::tick`] (SAVE).
    pub fn request_checkpoint(&mut self) {
        self.checkpoint_requested = true;
    }

    /// Removes journal segments wholly at or below the checkpoint `lsn`, keeping what a slave
    /// may still need (its slot). The only place segments are deleted.
    fn remove_segments(&mut self, lsn: Lsn) {
        let keep = self
            .retention_floor
            .map_or(lsn, |f| lsn.min(f.saturating_sub(1)));
        match self.journal.remove_through(keep) {
            Ok(removed) if !removed.is_empty() => log::info!(
                "removed {} journal segment(s) up to LSN {keep} (checkpoint at {lsn})",
                removed.len()
            ),
            Ok(_) => {}
            Err(e) => log::warn!("journal segment removal failed: {e}"),
        }
    }

    /// Makes the store durable, waiting for the disk, and removes journal segments it no
    /// longer needs. Postponed while the disk is (nearly) full: a checkpoint that fails for
    /// space breaks the store, while a postponed one only means a longer replay after a crash
    /// (the journal holds it all).
    pub fn checkpoint(&mut self) {
        self.checkpoint_with(true);
    }

    /// The periodic checkpoint: like [`Engine::checkpoint`], but the store file's writer
    /// makes it durable behind the event loop; the journal segments it frees go once it is on
    /// disk ([`Engine::settle_checkpoint`]).
    fn checkpoint_behind(&mut self) {
        self.checkpoint_with(false);
    }

    /// Removes the journal segments that a checkpoint which reached the disk since made
    /// unnecessary. Err from the store file's writer: the store is reopened from the disk.
    fn settle_checkpoint(&mut self) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        let before = store.meta().checkpoint_lsn;
        match store.durable_checkpoint() {
            Ok(lsn) if lsn > before => self.remove_segments(lsn),
            Ok(_) => {}
            Err(e) => self.checkpoint_failed(e),
        }
    }

    /// A checkpoint (or the writing of one behind the loop) failed: the store is reopened
    /// from the disk and the journal; a full disk refuses writes until there is room.
    fn checkpoint_failed(&mut self, e: StoreError) {
        log::error!("checkpoint failed: {e}");
        if e.is_disk_full() {
            self.disk_full = Some(e.to_string());
            self.free_space = None;
        }
        self.reopen_store();
    }

    fn checkpoint_with(&mut self, wait: bool) {
        self.view = None;
        self.last_checkpoint = Instant::now();
        if self.turn_dirty || self.journal.pending() > 0 {
            return;
        }
        self.commit_batch();
        let Some(store) = self.store.as_ref() else {
            return;
        };
        if store.requested_checkpoint() == store.meta().applied_lsn {
            // Nothing new to make durable; but slaves may have moved on since (and the last
            // checkpoint may have reached the disk).
            let lsn = store.meta().checkpoint_lsn;
            self.journal.reset_bytes_counter();
            self.remove_segments(lsn);
            self.settle_checkpoint();
            return;
        }
        let room = match &self.disk_full {
            Some(f) => Err(format!("the disk is full ({f})")),
            None => checkpoint_room(&self.opts.data_dir, self.journal.bytes_since_mark()),
        };
        if let Err(why) = room {
            if !self.checkpoint_postponed {
                log::warn!("checkpoint postponed: {why}; the journal keeps everything meanwhile");
                self.checkpoint_postponed = true;
            }
            return;
        }
        if std::mem::take(&mut self.checkpoint_postponed) {
            log::info!("checkpoints resume");
        }
        // Never make the store durable ahead of the journal.
        self.sync_now();
        if self.fatal.is_some() {
            return;
        }
        let Some(store) = self.store.as_mut() else {
            return;
        };
        let started = Instant::now();
        let done = if wait {
            store.checkpoint()
        } else {
            store.checkpoint_behind()
        };
        match done {
            Ok(lsn) => {
                self.stats.checkpoints += 1;
                self.stats.last_checkpoint_ms = crate::txn::now_ms();
                let us = started.elapsed().as_micros() as u64;
                self.stats.last_checkpoint_us = us;
                self.stats.max_checkpoint_us = self.stats.max_checkpoint_us.max(us);
                self.journal.reset_bytes_counter();
                log::debug!(
                    "checkpoint at LSN {lsn} in {:.1} ms{}",
                    started.elapsed().as_secs_f64() * 1e3,
                    if wait { "" } else { " (on disk behind)" }
                );
                if wait {
                    self.remove_segments(lsn);
                } else {
                    self.settle_checkpoint();
                }
            }
            Err(e) => self.checkpoint_failed(e),
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // The store's close may make its latest commits durable: the journal must be first.
        self.sync_now();
        if self.fatal.is_some() {
            // The journal cannot be trusted to hold what the store has: leave the store as a
            // crash would, so that start-up recovers from its checkpoint and the journal.
            if let Some(store) = self.store.take() {
                std::mem::forget(store);
            }
        }
    }
}

pub mod loader;
mod rejoin;
mod replica;
mod room;
mod sys;
pub use rejoin::{RewindReport, fork_point};
pub use replica::{ApplyError, FullSync, RoleError};
pub use sys::SysApplied;

#[cfg(test)]
mod tests;
