//! The store: the database's items in redb, in tables per file ([`parts`]), plus meta and catalog
//! tables.
//!
//! The store owns `DATA_DIR/store.redb`. It applies journal ops ([`crate::txn::Op`]) in batches:
//! a [`Batch`] is one redb write transaction, committed with `Durability::None` together with the
//! LSN of the last record it applied, so the data and the applied LSN always agree. A
//! checkpoint makes everything durable: [`Store::checkpoint`] waits for the disk,
//! [`Store::checkpoint_behind`] leaves that to the store file's writer ([`behind`]: redb's
//! writes and syncs, done in order on a thread of their own); after a crash redb comes back at
//! the last checkpoint on disk and the server replays the journal from there. A [`View`] is a redb read
//! transaction: a consistent cut at a known LSN, unaffected by later writes. A copy being made
//! (a full sync's, a restore's) has its pages written by a thread of their own, sorted and past
//! the page cache, its syncs held until the checkpoint that completes it ([`loading`]).
//!
//! The store never reads the journal and never decides what a command means: it applies ops.

/// The byte-range lock methods of a [`redb::StorageBackend`], handed to its `FileBackend`
/// field `$inner` (the store's backends write the file their own way but lock it as redb does).
macro_rules! delegate_locks_to {
    ($inner:ident) => {
        fn try_lock_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> Result<bool, redb::BackendError> {
            self.$inner.try_lock_range(start, end)
        }

        fn try_lock_shared_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> Result<bool, redb::BackendError> {
            self.$inner.try_lock_shared_range(start, end)
        }

        fn lock_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> Result<(), redb::BackendError> {
            self.$inner.lock_range(start, end)
        }

        fn lock_shared_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> Result<(), redb::BackendError> {
            self.$inner.lock_shared_range(start, end)
        }

        fn unlock_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> Result<(), redb::BackendError> {
            self.$inner.unlock_range(start, end)
        }

        fn query_lock_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> Result<bool, redb::BackendError> {
            self.$inner.query_lock_range(start, end)
        }
    };
}

mod behind;
mod fill;
pub mod incidents;
pub mod item;
mod loading;
mod parts;
mod pending;
mod read;
pub mod rewind;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use thiserror::Error;

use crate::journal::{DbId, Lsn};
use crate::txn::{Op, Value};

pub use fill::Filler;
pub use parts::Parts;
pub use read::{Reader, Source};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("hb.meta");
const CATALOG: TableDefinition<&str, &[u8]> = TableDefinition::new("hb.catalog");
/// Generation history: generation -> its first LSN.
const GENERATIONS: TableDefinition<u64, u64> = TableDefinition::new("hb.generations");
/// Replication slots (master side): slave node id -> acked LSN, update time, name.
const SLOTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("hb.slots");
/// Who started each generation after the first: generation -> time u64, node id, name.
const PROMOTIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("hb.promotions");
/// Version of the store layout, kept in the meta table: 1, one table per file; 2, a file's
/// items in the number of tables that the meta table's `parts` says ([`parts`]).
pub const STORE_FORMAT: u64 = 2;

/// The format of a new store with `parts`: 1 where one part keeps it readable by older builds.
fn format_of(parts: Parts) -> u64 {
    if parts == Parts::ONE { 1 } else { STORE_FORMAT }
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("store: {op}: {source}")]
    Redb {
        op: &'static str,
        source: redb::Error,
    },
    #[error("store: cannot read random bytes for a database id: {0}")]
    Random(std::io::Error),
    #[error("store: {0}")]
    Corrupt(String),
    #[error("store: op does not fit the stored state (LSN {lsn}): {what}")]
    Apply { lsn: Lsn, what: String },
}

impl StoreError {
    /// Whether the underlying cause is the disk being full.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Redb {
                source: redb::Error::Io(e),
                ..
            } => crate::journal::is_disk_full(e),
            _ => false,
        }
    }
}

fn redb_err<E: Into<redb::Error>>(op: &'static str) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError::Redb {
        op,
        source: e.into(),
    }
}

/// What the catalog knows of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileInfo {
    pub logged: bool,
    /// LSN of the record that created it.
    pub created_lsn: Lsn,
}

impl FileInfo {
    fn encode(&self) -> [u8; 10] {
        let mut b = [0u8; 10];
        b[0] = 1;
        b[1] = self.logged as u8;
        b[2..10].copy_from_slice(&self.created_lsn.to_le_bytes());
        b
    }
    fn decode(b: &[u8]) -> Option<FileInfo> {
        if b.len() != 10 || b[0] != 1 || b[1] > 1 {
            return None;
        }
        let mut l = [0u8; 8];
        l.copy_from_slice(&b[2..10]);
        Some(FileInfo {
            logged: b[1] == 1,
            created_lsn: u64::from_le_bytes(l),
        })
    }
}

/// The catalog of files, shared copy-on-write with views.
pub type Catalog = Arc<BTreeMap<String, FileInfo>>;

/// Identity and progress of the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub db_id: DbId,
    /// Created at init: wall clock, ms.
    pub created_ms: u64,
    pub generation: u64,
    /// LSN of the last record applied (committed, maybe not yet durable).
    pub applied_lsn: Lsn,
    /// LSN of the last durable checkpoint.
    pub checkpoint_lsn: Lsn,
}

#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub cache_size: usize,
    /// Parts of each file in a store this creates ([`parts`]); a store that exists keeps its
    /// own. Tests make stores of format 1 with [`Parts::ONE`].
    pub parts: Parts,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_size: 256 << 20,
            parts: Parts::new(u64::from(parts::NEW_PARTS)).unwrap_or(Parts::ONE),
        }
    }
}

pub struct Store {
    db: Database,
    /// How each file's items are spread over tables ([`parts`]).
    parts: Parts,
    /// A load in progress ([`Store::start_load`]). Declared after `db`: a copy dropped while
    /// it loads (a full sync given up) is closed without waiting for the disk, as it is thrown
    /// away; a load that completes ends with a checkpoint.
    loading: Option<loading::Loading>,
    /// The switch of a loading backend's deferred syncs (a copy made by `create_for_sync`).
    load_switch: Option<Arc<loading::Shared>>,
    /// How far the store file's writer has got ([`behind`]); None: redb writes and syncs the
    /// file itself (a full sync's new copy, loaded by a thread of its own).
    progress: Option<behind::Progress>,
    /// A checkpoint asked for and not yet on disk: (sync number, its LSN).
    pending_checkpoint: Option<(u64, Lsn)>,
    path: PathBuf,
    catalog: Catalog,
    meta: Meta,
    /// A batch hands its buffered writes to redb past this many bytes ([`pending_limit`]).
    pending_limit: usize,
}

/// Who writes the store file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// A thread behind the caller ([`behind`]): the live store.
    Behind,
    /// The loading backend ([`loading`]): a copy being made, its syncs deferred and its pages
    /// written behind during a load.
    Loading,
}

/// The meta entries that say how a new store is laid out: its format, and its parts.
fn layout_entries(parts: Parts) -> Vec<(&'static str, u64)> {
    let mut v = vec![("format", format_of(parts))];
    if parts != Parts::ONE {
        v.push(("parts", parts.count() as u64));
    }
    v
}

fn u64_of(b: &[u8]) -> Option<u64> {
    let a: [u8; 8] = b.try_into().ok()?;
    Some(u64::from_le_bytes(a))
}

pub fn random_db_id() -> Result<DbId, StoreError> {
    let mut id = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut id))
        .map_err(StoreError::Random)?;
    Ok(id)
}

/// Reads the identity and checkpoint of a store that no process has open (for offline tools).
pub fn read_meta(path: &Path) -> Result<Meta, StoreError> {
    let db = redb::Builder::new()
        .open_read_only(path)
        .map_err(redb_err("open read-only"))?;
    let txn = db.begin_read().map_err(redb_err("begin read"))?;
    let t = txn.open_table(META).map_err(redb_err("open meta"))?;
    let bad = |what: &str| StoreError::Corrupt(format!("meta table: bad {what}"));
    let get = |k: &str| -> Result<Vec<u8>, StoreError> {
        t.get(k)
            .map_err(redb_err("read meta"))?
            .map(|g| g.value().to_vec())
            .ok_or_else(|| bad(k))
    };
    let num = |k: &str| get(k).and_then(|v| u64_of(&v).ok_or_else(|| bad(k)));
    let db_id: DbId = get("db_id")?
        .as_slice()
        .try_into()
        .map_err(|_| bad("db_id"))?;
    let applied = num("applied_lsn")?;
    Ok(Meta {
        db_id,
        created_ms: num("created_ms")?,
        generation: num("generation")?,
        applied_lsn: applied,
        checkpoint_lsn: applied,
    })
}

/// What a store made for a full sync starts with: the master's identity and position.
#[derive(Debug, Clone)]
pub struct SyncInit {
    pub db_id: DbId,
    pub history: Vec<(u64, Lsn)>,
    pub lsn: Lsn,
    pub catalog: Vec<(String, bool)>,
}

/// A promotion: who started a generation, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    pub generation: u64,
    pub time_ms: u64,
    pub node: Vec<u8>,
    pub name: String,
}

/// A replication slot: how far a slave has acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub acked: Lsn,
    pub updated_ms: u64,
    pub name: String,
}

impl Slot {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(16 + self.name.len());
        b.extend_from_slice(&self.acked.to_le_bytes());
        b.extend_from_slice(&self.updated_ms.to_le_bytes());
        b.extend_from_slice(self.name.as_bytes());
        b
    }
    fn decode(b: &[u8]) -> Option<Slot> {
        if b.len() < 16 {
            return None;
        }
        Some(Slot {
            acked: u64_of(&b[0..8])?,
            updated_ms: u64_of(&b[8..16])?,
            name: String::from_utf8_lossy(&b[16..]).into_owned(),
        })
    }
}

impl Store {
    /// Creates a store for a full sync at `path` (which must not exist): the master's database
    /// id, generation history, LSN and catalog; the items come through [`Batch::put_items`].
    pub fn create_for_sync(
        path: &Path,
        opts: &StoreOptions,
        init: &SyncInit,
    ) -> Result<Store, StoreError> {
        let db = Database::builder()
            .set_cache_size(opts.cache_size)
            .create(path)
            .map_err(redb_err("create"))?;
        let generation = init.history.last().map_or(1, |g| g.0);
        let txn = db.begin_write().map_err(redb_err("begin"))?;
        {
            let w = redb_err("init meta");
            let mut table = txn.open_table(META).map_err(w)?;
            table
                .insert("db_id", &init.db_id[..])
                .map_err(redb_err("init meta"))?;
            let now = crate::txn::now_ms();
            for (k, v) in [
                ("created_ms", now),
                ("generation", generation),
                ("applied_lsn", init.lsn),
            ]
            .into_iter()
            .chain(layout_entries(opts.parts))
            {
                table
                    .insert(k, &v.to_le_bytes()[..])
                    .map_err(redb_err("init meta"))?;
            }
            let mut gens = txn
                .open_table(GENERATIONS)
                .map_err(redb_err("init generations"))?;
            for (g, first) in &init.history {
                gens.insert(g, first)
                    .map_err(redb_err("init generations"))?;
            }
            let mut cat = txn.open_table(CATALOG).map_err(redb_err("init catalog"))?;
            for (file, logged) in &init.catalog {
                let info = FileInfo {
                    logged: *logged,
                    created_lsn: 0,
                };
                cat.insert(file.as_str(), &info.encode()[..])
                    .map_err(redb_err("init catalog"))?;
            }
        }
        txn.commit().map_err(redb_err("commit"))?;
        drop(db);
        // The copy is written through the loading backend ([`loading`]: its own writer, in
        // commit-sized sorted batches, rather than the live store's epochs); it goes live
        // reopened.
        Store::open_with(path, opts, Backend::Loading)
    }

    /// Opens the store at `path`, creating and initialising it if it does not exist.
    pub fn open(path: &Path, opts: &StoreOptions) -> Result<Store, StoreError> {
        Store::open_with(path, opts, Backend::Behind)
    }

    /// [`Store::open`], with the file written behind the caller ([`behind`]) or by redb
    /// ([`loading`]).
    fn open_with(path: &Path, opts: &StoreOptions, backend: Backend) -> Result<Store, StoreError> {
        let io = |source: std::io::Error| StoreError::Redb {
            op: "open",
            source: redb::Error::Io(source),
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        let mut load_switch = None;
        let (db, progress) = if backend == Backend::Behind {
            // A checkpoint hands the writer redb's whole write buffer (at most half the cache)
            // without waiting, up to 512 MiB.
            let cap = (opts.cache_size / 2 + (16 << 20)).min(512 << 20);
            let (backend, progress) = behind::WriteBehind::new(file, cap).map_err(io)?;
            let db = Database::builder()
                .set_cache_size(opts.cache_size)
                .create_with_backend(backend)
                .map_err(redb_err("open"))?;
            (db, Some(progress))
        } else {
            let (backend, switch) = loading::LoadingFile::new(file).map_err(io)?;
            load_switch = Some(switch);
            let db = Database::builder()
                .set_cache_size(opts.cache_size)
                .create_with_backend(backend)
                .map_err(redb_err("open"))?;
            (db, None)
        };
        let txn = db.begin_write().map_err(redb_err("begin"))?;
        let (meta, parts, catalog) = {
            let mut table = txn.open_table(META).map_err(redb_err("open meta"))?;
            let get =
                |t: &redb::Table<&str, &[u8]>, k: &str| -> Result<Option<Vec<u8>>, StoreError> {
                    Ok(t.get(k)
                        .map_err(redb_err("read meta"))?
                        .map(|g| g.value().to_vec()))
                };
            let (meta, parts) = match get(&table, "db_id")? {
                None => {
                    let meta = Meta {
                        db_id: random_db_id()?,
                        created_ms: crate::txn::now_ms(),
                        generation: 1,
                        applied_lsn: 0,
                        checkpoint_lsn: 0,
                    };
                    let w = redb_err("init meta");
                    table.insert("db_id", &meta.db_id[..]).map_err(w)?;
                    for (k, v) in [
                        ("created_ms", meta.created_ms),
                        ("generation", 1),
                        ("applied_lsn", 0),
                    ]
                    .into_iter()
                    .chain(layout_entries(opts.parts))
                    {
                        table
                            .insert(k, &v.to_le_bytes()[..])
                            .map_err(redb_err("init meta"))?;
                    }
                    let mut gens = txn
                        .open_table(GENERATIONS)
                        .map_err(redb_err("init generations"))?;
                    gens.insert(1u64, 1u64)
                        .map_err(redb_err("init generations"))?;
                    log::info!("store: initialised a new database at {}", path.display());
                    (meta, opts.parts)
                }
                Some(id) => {
                    let bad = |what: &str| StoreError::Corrupt(format!("meta table: bad {what}"));
                    let db_id: DbId = id.as_slice().try_into().map_err(|_| bad("db_id"))?;
                    let num = |k: &str| -> Result<u64, StoreError> {
                        get(&table, k)?
                            .as_deref()
                            .and_then(u64_of)
                            .ok_or_else(|| bad(k))
                    };
                    let parts = match num("format")? {
                        1 => Parts::ONE,
                        STORE_FORMAT => Parts::new(num("parts")?).ok_or_else(|| bad("parts"))?,
                        format => {
                            return Err(StoreError::Corrupt(format!(
                                "store format {format} is not supported (this build reads 1 and {STORE_FORMAT})"
                            )));
                        }
                    };
                    let applied = num("applied_lsn")?;
                    let meta = Meta {
                        db_id,
                        created_ms: num("created_ms")?,
                        generation: num("generation")?,
                        applied_lsn: applied,
                        checkpoint_lsn: applied,
                    };
                    (meta, parts)
                }
            };
            let cat = txn.open_table(CATALOG).map_err(redb_err("open catalog"))?;
            let mut catalog = BTreeMap::new();
            for entry in cat.iter().map_err(redb_err("read catalog"))? {
                let (k, v) = entry.map_err(redb_err("read catalog"))?;
                let info = FileInfo::decode(v.value()).ok_or_else(|| {
                    StoreError::Corrupt(format!("catalog entry of '{}' is damaged", k.value()))
                })?;
                catalog.insert(k.value().to_string(), info);
            }
            (meta, parts, catalog)
        };
        txn.commit().map_err(redb_err("commit"))?;
        Ok(Store {
            db,
            parts,
            loading: None,
            load_switch,
            progress,
            pending_checkpoint: None,
            path: path.to_path_buf(),
            catalog: Arc::new(catalog),
            meta,
            pending_limit: pending_limit(opts.cache_size),
        })
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The generation history: (generation, first LSN), oldest first.
    pub fn history(&self) -> Result<Vec<(u64, Lsn)>, StoreError> {
        let txn = self.db.begin_read().map_err(redb_err("begin read"))?;
        let t = match txn.open_table(GENERATIONS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(vec![(1, 1)]),
            Err(e) => return Err(redb_err("open generations")(e)),
        };
        let mut out = Vec::new();
        for e in t.iter().map_err(redb_err("read generations"))? {
            let (g, first) = e.map_err(redb_err("read generations"))?;
            out.push((g.value(), first.value()));
        }
        if out.is_empty() {
            out.push((1, 1));
        }
        Ok(out)
    }

    /// A local text setting of this node (see [`Batch::set_local`]), as committed.
    pub fn local(&self, key: &str) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read().map_err(redb_err("begin read"))?;
        let t = txn.open_table(META).map_err(redb_err("open meta"))?;
        let k = format!("local.{key}");
        Ok(t.get(k.as_str())
            .map_err(redb_err("read meta"))?
            .map(|v| String::from_utf8_lossy(v.value()).into_owned()))
    }

    /// Who made each generation after the first.
    pub fn promotions(&self) -> Result<Vec<Promotion>, StoreError> {
        let txn = self.db.begin_read().map_err(redb_err("begin read"))?;
        let t = match txn.open_table(PROMOTIONS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(redb_err("open promotions")(e)),
        };
        let mut out = Vec::new();
        for e in t.iter().map_err(redb_err("read promotions"))? {
            let (g, v) = e.map_err(redb_err("read promotions"))?;
            let v = v.value();
            if v.len() >= 24 {
                let time = u64_of(&v[0..8]).unwrap_or(0);
                out.push(Promotion {
                    generation: g.value(),
                    time_ms: time,
                    node: v[8..24].to_vec(),
                    name: String::from_utf8_lossy(&v[24..]).into_owned(),
                });
            }
        }
        Ok(out)
    }

    /// Replication slots: (slave node id, slot).
    pub fn slots(&self) -> Result<Vec<(Vec<u8>, Slot)>, StoreError> {
        let txn = self.db.begin_read().map_err(redb_err("begin read"))?;
        let t = match txn.open_table(SLOTS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(redb_err("open slots")(e)),
        };
        read_slots(&t)
    }

    /// Starts a batch: one write transaction, not durable until a checkpoint.
    pub fn begin(&self) -> Result<Batch, StoreError> {
        let mut txn = self.db.begin_write().map_err(redb_err("begin batch"))?;
        // While loading, a commit is a durable one: it hands its pages to the file (its sync
        // waits, [`loading`]), so that the kernel writes them out during the load rather than
        // all at its end.
        if self.loading.is_none() {
            txn.set_durability(Durability::None)
                .map_err(redb_err("set durability"))?;
        }
        Ok(Batch {
            txn,
            parts: self.parts,
            pending: RefCell::default(),
            pending_limit: self.pending_limit,
            base: self.catalog.clone(),
            overlay: BTreeMap::new(),
            generation: None,
            generation_reset: None,
            lsn: self.meta.applied_lsn,
        })
    }

    /// Commits a batch whose last applied record has LSN `lsn`.
    pub fn commit(&mut self, batch: Batch, lsn: Lsn) -> Result<(), StoreError> {
        batch.flush()?;
        let Batch {
            txn,
            overlay,
            generation,
            generation_reset,
            ..
        } = batch;
        {
            let mut meta = txn.open_table(META).map_err(redb_err("open meta"))?;
            meta.insert("applied_lsn", &lsn.to_le_bytes()[..])
                .map_err(redb_err("write applied LSN"))?;
        }
        txn.commit().map_err(redb_err("commit batch"))?;
        self.meta.applied_lsn = lsn;
        if let Some(g) = generation_reset {
            self.meta.generation = g;
        }
        if let Some(g) = generation {
            self.meta.generation = self.meta.generation.max(g);
        }
        if !overlay.is_empty() {
            let cat = Arc::make_mut(&mut self.catalog);
            for (name, info) in overlay {
                match info {
                    Some(i) => cat.insert(name, i),
                    None => cat.remove(&name),
                };
            }
        }
        Ok(())
    }

    /// Starts a load into a copy made by [`Store::create_for_sync`]: until the next checkpoint,
    /// redb's syncs wait and its pages are written behind by a thread ([`loading`]); that
    /// checkpoint makes the whole load durable. A crash before it must not leave the copy to
    /// be opened (a full sync's copy is removed). Err: the store is not such a copy.
    pub fn start_load(&mut self) -> Result<(), StoreError> {
        let Some(switch) = &self.load_switch else {
            return Err(StoreError::Corrupt(
                "only a copy made for a full sync can be loaded with deferred syncs".into(),
            ));
        };
        if self.loading.is_some() {
            return Ok(());
        }
        let io = |source: std::io::Error| StoreError::Redb {
            op: "start a load",
            source: redb::Error::Io(source),
        };
        self.loading = Some(loading::Loading::start(switch.clone(), &self.path).map_err(io)?);
        Ok(())
    }

    /// Makes every committed batch durable, and waits until it is. Returns the checkpoint LSN.
    pub fn checkpoint(&mut self) -> Result<Lsn, StoreError> {
        let lsn = self.checkpoint_behind()?;
        if let (Some((sync, _)), Some(p)) = (self.pending_checkpoint, &self.progress) {
            p.wait(sync).map_err(|e| StoreError::Redb {
                op: "sync checkpoint",
                source: redb::Error::Io(e),
            })?;
        }
        self.durable_checkpoint()?;
        Ok(lsn)
    }

    /// Commits a checkpoint of every committed batch and returns its LSN without waiting for
    /// the disk: the store file's writer makes it durable behind the caller, in order
    /// ([`behind`]). [`Store::durable_checkpoint`] says when it is.
    pub fn checkpoint_behind(&mut self) -> Result<Lsn, StoreError> {
        if let Some(l) = self.loading.take() {
            l.end();
        }
        let mut txn = self
            .db
            .begin_write()
            .map_err(redb_err("begin checkpoint"))?;
        txn.set_durability(Durability::Immediate)
            .map_err(redb_err("set durability"))?;
        txn.set_quick_repair(true);
        txn.commit().map_err(redb_err("commit checkpoint"))?;
        let lsn = self.meta.applied_lsn;
        match &self.progress {
            Some(p) => self.pending_checkpoint = Some((p.barrier(), lsn)),
            // redb synced the file itself.
            None => self.meta.checkpoint_lsn = lsn,
        }
        Ok(lsn)
    }

    /// LSN of the newest checkpoint on disk (what a crash comes back to at least), also in
    /// [`Meta::checkpoint_lsn`]. Err: the store file's writer failed; the store must be
    /// reopened from what is on disk.
    pub fn durable_checkpoint(&mut self) -> Result<Lsn, StoreError> {
        let Some(p) = &self.progress else {
            return Ok(self.meta.checkpoint_lsn);
        };
        if let Some((sync, lsn)) = self.pending_checkpoint {
            if p.durable() >= sync {
                self.meta.checkpoint_lsn = lsn;
                self.pending_checkpoint = None;
            }
        }
        p.failure().map_err(|e| StoreError::Redb {
            op: "write the store file",
            source: redb::Error::Io(e),
        })?;
        Ok(self.meta.checkpoint_lsn)
    }

    /// LSN of the newest checkpoint asked for, durable or not yet.
    pub fn requested_checkpoint(&self) -> Lsn {
        self.pending_checkpoint
            .map_or(self.meta.checkpoint_lsn, |(_, lsn)| lsn)
    }

    /// A consistent read-only cut of the committed state.
    pub fn view(&self) -> Result<View, StoreError> {
        Ok(View {
            txn: self.db.begin_read().map_err(redb_err("begin read"))?,
            parts: self.parts,
            catalog: self.catalog.clone(),
            lsn: self.meta.applied_lsn,
        })
    }
}

/// A read-only snapshot at LSN [`View::lsn`].
pub struct View {
    txn: redb::ReadTransaction,
    parts: Parts,
    catalog: Catalog,
    lsn: Lsn,
}

impl View {
    pub fn lsn(&self) -> Lsn {
        self.lsn
    }
}

/// An open write transaction applying ops.
fn read_slots(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
) -> Result<Vec<(Vec<u8>, Slot)>, StoreError> {
    let mut out = Vec::new();
    for e in t.iter().map_err(redb_err("read slots"))? {
        let (k, v) = e.map_err(redb_err("read slots"))?;
        if let Some(slot) = Slot::decode(v.value()) {
            out.push((k.value().to_vec(), slot));
        }
    }
    Ok(out)
}

pub struct Batch {
    txn: redb::WriteTransaction,
    parts: Parts,
    /// Item writes not yet handed to redb (see [`pending`]); a RefCell because a read through
    /// `&Batch` that the buffer cannot answer alone (a scan, a count) flushes it first.
    pending: RefCell<pending::Pending>,
    pending_limit: usize,
    base: Catalog,
    /// Catalog changes of this batch (None = dropped).
    overlay: BTreeMap<String, Option<FileInfo>>,
    /// A generation this batch started.
    generation: Option<u64>,
    /// The generation after a rewind dropped later ones ([`Batch::rewind_history`]).
    generation_reset: Option<u64>,
    /// LSN of the op being applied (for error messages).
    lsn: Lsn,
}

fn item_table(name: &str) -> TableDefinition<'_, &'static [u8], &'static [u8]> {
    TableDefinition::new(name)
}

/// An item table open in a batch.
type ItemTableMut<'b> = redb::Table<'b, &'static [u8], &'static [u8]>;

/// Buffered item writes past this many bytes are handed to redb without waiting for the
/// commit, so that a long batch (a slave catching up) holds a bounded amount of memory: a
/// quarter of the store cache (redb keeps a transaction's dirty pages in at most half of it,
/// and writes the rest to the file before the commit — where a full disk fails the whole
/// batch), between 1 and 2 MiB. The hand-over runs on the event loop, in the write that
/// fills the buffer: 64 MiB of random keys took it about half a second under load (clients
/// waited as long); at 8 MiB the loop still stalled for 40 ms and more, under 50 clients of
/// random SETs (`bench/loop-stall.sh`), and 2 MiB halved the worst waits with the same
/// throughput, and the same time for a 1M-write pipelined load.
fn pending_limit(cache_size: usize) -> usize {
    (cache_size / 4).clamp(1 << 20, 2 << 20)
}

impl Batch {
    /// Sets the LSN reported in errors of the next applies.
    pub fn set_lsn(&mut self, lsn: Lsn) {
        self.lsn = lsn;
    }

    fn apply_err(&self, what: String) -> StoreError {
        StoreError::Apply {
            lsn: self.lsn,
            what,
        }
    }

    fn set_catalog(&mut self, file: &str, info: Option<FileInfo>) -> Result<(), StoreError> {
        let mut cat = self
            .txn
            .open_table(CATALOG)
            .map_err(redb_err("open catalog"))?;
        match info {
            Some(i) => cat.insert(file, &i.encode()[..]).map(|_| ()),
            None => cat.remove(file).map(|_| ()),
        }
        .map_err(redb_err("write catalog"))?;
        drop(cat);
        self.overlay.insert(file.to_string(), info);
        Ok(())
    }

    fn require_file(&self, file: &str) -> Result<FileInfo, StoreError> {
        self.file_info(file)
            .ok_or_else(|| self.apply_err(format!("file '{file}' does not exist")))
    }

    /// Applies one op. On error the batch must be dropped (aborted).
    pub fn apply(&mut self, op: &Op) -> Result<(), StoreError> {
        match op {
            Op::CreateFile { file, logged } => {
                if self.file_info(file).is_some() {
                    return Err(self.apply_err(format!("file '{file}' exists already")));
                }
                let info = FileInfo {
                    logged: *logged,
                    created_lsn: self.lsn,
                };
                self.set_catalog(file, Some(info))
            }
            Op::SetLogged { file, logged } => {
                let mut info = self.require_file(file)?;
                info.logged = *logged;
                self.set_catalog(file, Some(info))
            }
            Op::DropFile { file } => {
                self.require_file(file)?;
                self.delete_items(file, "drop file")?;
                self.set_catalog(file, None)
            }
            Op::ClearFile { file } => {
                self.require_file(file)?;
                self.delete_items(file, "clear file")
            }
            Op::Put { file, id, value } => {
                self.require_file(file)?;
                let raw = item::encode(value);
                self.put_raw(file, id, raw)
            }
            Op::Delete { file, id } => {
                self.require_file(file)?;
                self.remove_raw(file, id)
            }
            Op::Append { file, id, data } => {
                self.require_file(file)?;
                let raw = match self.get_raw(file, id)? {
                    None => item::encode_str(data),
                    Some(mut old) => {
                        if item::as_str(&old).is_none() {
                            return Err(self.apply_err("APPEND to a hash".into()));
                        }
                        old.extend_from_slice(data);
                        old
                    }
                };
                self.put_raw(file, id, raw)
            }
            Op::HashSet { file, id, fields } => {
                self.require_file(file)?;
                let mut cur = match self.get_raw(file, id)? {
                    None => Vec::new(),
                    Some(old) => match item::decode(&old) {
                        Ok(Value::Hash(h)) => h,
                        _ => return Err(self.apply_err("hash op on a string".into())),
                    },
                };
                item::merge_fields(&mut cur, fields);
                self.put_raw(file, id, item::encode(&Value::Hash(cur)))
            }
            Op::NewGeneration {
                generation,
                first_lsn,
                node,
                name,
                time_ms,
            } => {
                let mut gens = self
                    .txn
                    .open_table(GENERATIONS)
                    .map_err(redb_err("open generations"))?;
                gens.insert(generation, first_lsn)
                    .map_err(redb_err("write generation"))?;
                drop(gens);
                let mut p = self
                    .txn
                    .open_table(PROMOTIONS)
                    .map_err(redb_err("open promotions"))?;
                let mut v = time_ms.to_le_bytes().to_vec();
                v.extend_from_slice(node);
                v.extend_from_slice(name.as_bytes());
                p.insert(generation, v.as_slice())
                    .map_err(redb_err("write promotion"))?;
                drop(p);
                let mut meta = self.txn.open_table(META).map_err(redb_err("open meta"))?;
                meta.insert("generation", &generation.to_le_bytes()[..])
                    .map_err(redb_err("write generation"))?;
                self.generation = Some(*generation);
                Ok(())
            }
            Op::HashDel { file, id, fields } => {
                self.require_file(file)?;
                let Some(old) = self.get_raw(file, id)? else {
                    return Ok(());
                };
                let mut cur = match item::decode(&old) {
                    Ok(Value::Hash(h)) => h,
                    _ => return Err(self.apply_err("hash op on a string".into())),
                };
                cur.retain(|(f, _)| !fields.contains(f));
                if cur.is_empty() {
                    self.remove_raw(file, id)
                } else {
                    self.put_raw(file, id, item::encode(&Value::Hash(cur)))
                }
            }
        }
    }

    /// Stores many raw items of one existing file (a full-sync chunk): one table open.
    pub fn put_items(
        &mut self,
        file: &str,
        items: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), StoreError> {
        self.put_item_slices(
            file,
            items
                .iter()
                .map(|(id, raw)| (id.as_slice(), raw.as_slice())),
        )
    }

    /// [`Batch::put_items`] from borrowed (id, stored value) pairs.
    pub fn put_item_slices<'a>(
        &mut self,
        file: &str,
        items: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
    ) -> Result<(), StoreError> {
        self.check_items(file, items.clone())?;
        self.flush()?;
        let mut tables = self.item_tables(file)?;
        for (id, raw) in items {
            tables[self.parts.of(id)]
                .insert(id, raw)
                .map_err(redb_err("write"))?;
        }
        Ok(())
    }

    /// The item tables of a file in this batch, one per part (made if missing).
    pub(super) fn item_tables(&self, file: &str) -> Result<Vec<ItemTableMut<'_>>, StoreError> {
        (0..self.parts.count())
            .map(|p| {
                let name = parts::table_name(file, p);
                self.txn
                    .open_table(item_table(&name))
                    .map_err(redb_err("open file"))
            })
            .collect()
    }

    /// Sets (Some) or clears (None) a local text setting of this node in the meta table
    /// (its role, its fencing): not journaled, durable at the next checkpoint.
    pub fn set_local(&mut self, key: &str, value: Option<&str>) -> Result<(), StoreError> {
        let mut meta = self.txn.open_table(META).map_err(redb_err("open meta"))?;
        let k = format!("local.{key}");
        match value {
            Some(v) => meta.insert(k.as_str(), v.as_bytes()).map(|_| ()),
            None => meta.remove(k.as_str()).map(|_| ()),
        }
        .map_err(redb_err("write meta"))
    }

    /// Records a slave's acknowledged position (not journaled: the master's own bookkeeping).
    pub fn set_slot(&mut self, node: &[u8], slot: &Slot) -> Result<(), StoreError> {
        let mut t = self.txn.open_table(SLOTS).map_err(redb_err("open slots"))?;
        t.insert(node, &slot.encode()[..])
            .map_err(redb_err("write slot"))?;
        Ok(())
    }

    /// Replication slots as this batch sees them (its own changes included).
    pub fn slots(&self) -> Result<Vec<(Vec<u8>, Slot)>, StoreError> {
        let t = self.txn.open_table(SLOTS).map_err(redb_err("open slots"))?;
        read_slots(&t)
    }

    pub fn remove_slot(&mut self, node: &[u8]) -> Result<(), StoreError> {
        let mut t = self.txn.open_table(SLOTS).map_err(redb_err("open slots"))?;
        t.remove(node).map_err(redb_err("remove slot"))?;
        Ok(())
    }

    fn remove_raw(&mut self, file: &str, id: &[u8]) -> Result<(), StoreError> {
        self.buffer(file, id, None)
    }

    fn put_raw(&mut self, file: &str, id: &[u8], raw: Vec<u8>) -> Result<(), StoreError> {
        self.buffer(file, id, Some(raw))
    }

    fn buffer(&mut self, file: &str, id: &[u8], raw: Option<Vec<u8>>) -> Result<(), StoreError> {
        let pending = self.pending.get_mut();
        pending.put(file, id, raw);
        if pending.bytes() >= self.pending_limit {
            self.flush()?;
        }
        Ok(())
    }

    /// Removes every item of a file, buffered or stored (the file is dropped or cleared).
    fn delete_items(&mut self, file: &str, op: &'static str) -> Result<(), StoreError> {
        self.pending.get_mut().discard_file(file);
        for p in 0..self.parts.count() {
            let name = parts::table_name(file, p);
            self.txn
                .delete_table(item_table(&name))
                .map_err(redb_err(op))?;
        }
        Ok(())
    }

    /// Hands the buffered item writes to redb: per file, its tables opened once and the writes in
    /// key order. On an error the batch must be dropped (aborted), like after a failed apply.
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        if self.pending.borrow().is_empty() {
            return Ok(());
        }
        let files = self.pending.borrow_mut().take();
        for (file, items) in files {
            let mut tables = self.item_tables(&file)?;
            for (id, raw) in items {
                let t = &mut tables[self.parts.of(&id)];
                match raw {
                    Some(raw) => t.insert(id.as_slice(), raw.as_slice()).map(|_| ()),
                    None => t.remove(id.as_slice()).map(|_| ()),
                }
                .map_err(redb_err("write"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod parts_tests;
#[cfg(test)]
mod tests;
