//! The engine's side of replication: what the link asks of the database.
//!
//! On a slave: records from the master are journaled with their own LSNs and applied
//! ([`Engine::apply_remote`]), and a full sync builds a new copy of the database beside the live
//! one and switches to it atomically ([`Engine::begin_full_sync`], [`Engine::end_full_sync`]
//! when every chunk has arrived, [`Engine::finish_full_sync`] once the loader has made the copy
//! durable; whether there is room for it: `room.rs`).
//! On a master: a consistent snapshot to ship ([`Engine::snapshot`]) and the slots that keep
//! the journal a slave still needs ([`Engine::record_slot`]). Both: the identity a node states
//! in the link handshake ([`Engine::ident`]).

use std::time::Instant;

use thiserror::Error;

use super::loader::Loader;
use super::{Engine, EngineError, TurnOutcome, WriteRefused};
use crate::datadir::NewState;
use crate::journal::{Journal, JournalOptions, Lsn};
use crate::link::msg::{ChunkItems, GenStart, Ident, Role, SyncBegin, WireRecord};
use crate::store::{Reader, Slot, Store, StoreError, StoreOptions, SyncInit, View};
use crate::txn::Transaction;

#[derive(Debug, Error)]
pub enum ApplyError {
    #[error("LSN {got} arrived where {expected} was expected")]
    Gap { expected: Lsn, got: Lsn },
    #[error("record LSN {lsn} does not decode: {what}")]
    Decode { lsn: Lsn, what: String },
    #[error(
        "this node is no longer a slave (it was promoted): nothing more is applied from the old master"
    )]
    NotSlave,
    #[error("records arrived before the repair of this rejoining node was complete")]
    RepairPending,
    /// The disk is (nearly) full: nothing is applied until space returns (the master keeps
    /// the journal from here for this slave).
    #[error("{0}")]
    NoSpace(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A full sync in progress on a slave: a new copy of the database being loaded (by the
/// [`Loader`] thread).
pub struct FullSync {
    state: NewState,
    loader: Option<Loader>,
    pub lsn: Lsn,
    db_id: crate::journal::DbId,
    /// Items received (and queued for the loader).
    pub items: u64,
    /// Items the master's snapshot holds (progress).
    pub items_total: u64,
    /// Bytes of item data received so far (ids and stored values, uncompressed; progress).
    pub bytes: u64,
    pub chunks: u64,
    pub started: Instant,
    /// Free bytes on the data directory's file system when the load began, and `bytes` at
    /// the last measure since (`room.rs`).
    pub(super) free_at_begin: u64,
    pub(super) room_checked_at: u64,
}

impl FullSync {
    /// Loads one chunk of a file's items.
    pub fn add(&mut self, file: String, items: ChunkItems) -> Result<(), StoreError> {
        let Some(loader) = self.loader.as_mut() else {
            return Err(StoreError::Corrupt("full sync store closed".into()));
        };
        let (n, bytes) = (items.len() as u64, items.bytes() as u64);
        loader.add(file, items)?;
        self.bytes += bytes;
        self.items += n;
        self.chunks += 1;
        Ok(())
    }

    /// Whether the new copy is durable and [`Engine::finish_full_sync`] will not wait for
    /// it (after [`Engine::end_full_sync`]; a failed load is ready too: `finish` reports it).
    pub fn ready(&self) -> bool {
        self.loader.as_ref().is_none_or(Loader::is_done)
    }
}

/// Why promote, rejoin or fence could not be done.
#[derive(Debug, Error)]
pub enum RoleError {
    #[error("this node is already the master (generation {0})")]
    AlreadyMaster(u64),
    #[error("this node was fenced ({0}); a newer master exists: rejoin it, do not promote")]
    Fenced(String),
    #[error("this node is already a slave")]
    AlreadySlave,
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Engine {
    /// Reads the role and fencing persisted in the store. A store made before (or a new one)
    /// records the role the config gave.
    pub(super) fn load_local_state(&mut self) -> Result<(), EngineError> {
        let Some(store) = self.store.as_ref() else {
            return Ok(());
        };
        let role = store.local("role")?;
        let fenced = store.local("fenced")?;
        match role.as_deref() {
            Some("master") => {
                if self.opts.slave {
                    log::warn!(
                        "the config says slave, but this node was promoted: it starts as master (generation {})",
                        self.generation
                    );
                }
                self.opts.slave = false;
            }
            Some("slave") => {
                if !self.opts.slave {
                    log::warn!(
                        "the config says master, but this node rejoined as a slave: it starts as slave"
                    );
                }
                self.opts.slave = true;
            }
            _ => {
                let role = if self.opts.slave { "slave" } else { "master" };
                self.persist_local("role", Some(role))?
            }
        }
        self.fenced = fenced;
        if let Some(why) = &self.fenced {
            log::error!("this node is fenced ({why}): it refuses writes until `hotbackup rejoin`");
        }
        Ok(())
    }

    /// Writes a local setting and makes it durable at once (or, inside a turn with writes,
    /// with the checkpoint right after the turn: see [`Engine::make_durable`]).
    fn persist_local(&mut self, key: &str, value: Option<&str>) -> Result<(), EngineError> {
        self.batch()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?
            .set_local(key, value)?;
        self.make_durable()?;
        Ok(())
    }

    /// The node's role name.
    pub fn role_name(&self) -> &'static str {
        if self.opts.slave { "slave" } else { "master" }
    }

    /// Why this node was fenced, if it was.
    pub fn fenced(&self) -> Option<&str> {
        self.fenced.as_deref()
    }

    /// A master that learnt of a newer one stops taking writes (persisted until rejoin).
    pub fn fence(&mut self, why: String) {
        if self.opts.slave || self.fenced.is_some() {
            return;
        }
        crate::incident::raise(
            crate::incident::Kind::Fenced,
            format!("fenced: {why}; this node refuses writes until `hotbackup rejoin`"),
            &[],
        );
        if let Err(e) = self.persist_local("fenced", Some(&why)) {
            log::error!("cannot persist the fencing: {e}");
        }
        self.fenced = Some(why);
    }

    /// At start, a master with peers refuses writes (TRYAGAIN) until it has heard from them.
    pub fn set_checking_peers(&mut self, on: bool) {
        self.checking_peers = on;
    }

    pub fn checking_peers(&self) -> bool {
        self.checking_peers
    }

    /// A switchover pauses new writes (Some(refuse)) or lets them go again (None).
    pub fn set_write_pause(&mut self, pause: Option<bool>) {
        self.write_pause = pause;
    }

    /// Whether new writes must wait (a switchover in `wait` mode).
    pub fn writes_wait(&self) -> bool {
        self.write_pause == Some(false)
    }

    /// Where clients reach the master this slave follows (or the master that fenced it).
    pub fn set_master_addr(&mut self, addr: Option<String>) {
        self.master_addr = addr;
    }

    pub fn master_addr(&self) -> Option<&str> {
        self.master_addr.as_deref()
    }

    /// Notes which node this slave follows (its node id and name), so that a promotion keeps
    /// the journal that node will need when it rejoins. Kept with the store.
    pub fn note_master_node(&mut self, node: [u8; 16], name: &str) {
        let value = format!("{} {name}", crate::datadir::hex(&node));
        self.master_node = Some(value.clone());
        if self
            .store
            .as_ref()
            .and_then(|s| s.local("master_node").ok().flatten())
            == Some(value.clone())
        {
            return;
        }
        let result = match self.batch() {
            Ok(b) => b.set_local("master_node", Some(&value)),
            Err(e) => Err(StoreError::Corrupt(e.to_string())),
        };
        if let Err(e) = result {
            log::warn!("cannot record which node this slave follows: {e}");
        }
    }

    /// The node this slave followed last: (node id, name).
    fn master_node(&self) -> Option<([u8; 16], String)> {
        let v = match &self.master_node {
            Some(v) => v.clone(),
            None => self.store.as_ref()?.local("master_node").ok()??,
        };
        let (id, name) = v.split_once(' ').unwrap_or((v.as_str(), ""));
        if id.len() != 32 {
            return None;
        }
        let mut node = [0u8; 16];
        for (i, b) in node.iter_mut().enumerate() {
            *b = u8::from_str_radix(id.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some((node, name.to_string()))
    }

    /// Records the new master's client address for a fenced node's messages.
    pub fn set_fenced_master(&mut self, addr: Option<String>) {
        self.master_addr = addr;
    }

    /// Whether this node has ever fed a slave (or was promoted): then some other node may
    /// hold this database and be promoted, so a restarting master checks with its peers.
    pub fn has_fed_slaves(&self) -> bool {
        self.store
            .as_ref()
            .and_then(|s| s.local("fed").ok().flatten())
            .is_some()
    }

    /// Notes (once, durably) that this node fed a slave.
    pub fn note_fed_slave(&mut self) {
        if self.has_fed_slaves() {
            return;
        }
        if let Err(e) = self.persist_local("fed", Some("1")) {
            log::warn!("cannot record that this node feeds a slave: {e}");
        }
    }

    /// Promotes this slave: a new generation starts at the next LSN, the node becomes a
    /// writable master. Durable when this returns.
    pub fn promote(&mut self, name: &str) -> Result<u64, RoleError> {
        if let Some(why) = &self.fenced {
            return Err(RoleError::Fenced(why.clone()));
        }
        if !self.opts.slave {
            return Err(RoleError::AlreadyMaster(self.generation));
        }
        // Whatever the turn has applied goes first, under the old generation.
        self.end_turn();
        let generation = self
            .history()
            .last()
            .map_or(1, |g| g.generation)
            .max(self.generation)
            + 1;
        let first_lsn = self.journal.next_lsn();
        self.generation = generation;
        let op = crate::txn::Op::NewGeneration {
            generation,
            first_lsn,
            node: self.node_id.to_vec(),
            name: name.to_string(),
            time_ms: crate::txn::now_ms(),
        };
        self.turn_dirty = true;
        let batch = self
            .batch()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        batch.set_lsn(first_lsn);
        batch.apply(&op)?;
        self.txn_ops.push(op);
        self.end_txn();
        if let TurnOutcome::Failed { message, .. } = self.end_turn() {
            return Err(
                StoreError::Corrupt(format!("cannot write the promotion: {message}")).into(),
            );
        }
        self.opts.slave = false;
        crate::incident::set_role("master");
        // The old master will need the journal from here when it rejoins: a slot keeps it
        // (within max_retained_bytes), so that its rejoin needs no full copy.
        if let Some((node, name)) = self.master_node() {
            let slot = crate::store::Slot {
                acked: first_lsn - 1,
                updated_ms: crate::txn::now_ms(),
                name: format!("{name} (the old master)"),
            };
            log::info!(
                "promote: keeping the journal from LSN {first_lsn} for {} until it rejoins",
                slot.name
            );
            self.record_slot(&node, &slot);
        } else {
            log::warn!(
                "promote: this node never recorded which master it followed: no journal is kept for the old master (its rejoin may need a full copy)"
            );
        }
        // Another node holds this database: a restart checks with the peers first ("fed").
        // Both settings and the slot are made durable with one checkpoint.
        let b = self
            .batch()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        b.set_local("fed", Some("1"))?;
        self.persist_local("role", Some("master"))?;
        crate::incident::raise(
            crate::incident::Kind::Promoted,
            format!(
                "promoted: this node is the master, generation {generation} from LSN {first_lsn}"
            ),
            &[
                ("generation", generation.to_string()),
                ("lsn", first_lsn.to_string()),
            ],
        );
        Ok(generation)
    }

    /// Turns this master (fenced or not) into a slave that waits for the new master. What it
    /// holds beyond the fork point is exported when the new master connects.
    pub fn become_slave(&mut self) -> Result<(), RoleError> {
        if self.opts.slave {
            return Err(RoleError::AlreadySlave);
        }
        self.end_turn();
        self.opts.slave = true;
        crate::incident::set_role("slave");
        self.fenced = None;
        self.persist_local("fenced", None)?;
        self.persist_local("role", Some("slave"))?;
        log::warn!("rejoin: this node is now a slave and waits for its master");
        Ok(())
    }

    /// Whether this node is a slave (read-only for clients).
    pub fn is_slave(&self) -> bool {
        self.opts.slave
    }

    /// The generation history.
    pub fn history(&self) -> Vec<GenStart> {
        self.store
            .as_ref()
            .and_then(|s| s.history().ok())
            .unwrap_or_else(|| vec![(1, 1)])
            .into_iter()
            .map(|(generation, first_lsn)| GenStart {
                generation,
                first_lsn,
            })
            .collect()
    }

    /// Every file and its logged flag, as of what reads see now.
    pub fn catalog(&mut self) -> Vec<(String, bool)> {
        match self.reader() {
            Ok(r) => r.files().into_iter().map(|(n, i)| (n, i.logged)).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// What this node says of itself in the link handshake.
    pub fn ident(&mut self) -> Ident {
        let db_id = self.store.as_ref().map_or([0; 16], |s| s.meta().db_id);
        let (role, tail, lsn, catalog) = if self.is_slave() {
            let tail = self.tail_digests();
            (Role::Slave, tail, self.visible_lsn(), self.catalog())
        } else {
            (
                Role::Master,
                (0, Vec::new()),
                self.durable_lsn(),
                Vec::new(),
            )
        };
        Ident {
            role,
            db_id,
            history: self.history(),
            lsn,
            catalog,
            client_addr: String::new(),
            rewind: self
                .rewind
                .as_ref()
                .filter(|r| r.upto.is_none() && self.opts.slave)
                .cloned(),
            sentinel_addr: String::new(),
            tail,
        }
    }

    /// Applies one record from the master: journaled with its own LSN and generation, applied
    /// to the open batch. It becomes durable with the turn's group commit.
    pub fn apply_remote(&mut self, rec: &WireRecord) -> Result<(), ApplyError> {
        if !self.opts.slave {
            return Err(ApplyError::NotSlave);
        }
        if !self.turn_dirty {
            // The first record of a turn: is there room for it (the same guard as a master's
            // client writes, with its disk_full / disk_recovered incidents)?
            if let Err(e @ (WriteRefused::LowSpace { .. } | WriteRefused::DiskFull(_))) =
                self.check_writable()
            {
                return Err(ApplyError::NoSpace(e.to_string()));
            }
        }
        self.apply_record(rec)
    }

    /// Journals and applies one record with its own LSN and generation, whatever this node's
    /// role: a slave's stream ([`Engine::apply_remote`]), or tapes loaded into a stopped node
    /// (`hotbackup journal load`). It becomes durable with the turn's group commit.
    pub fn apply_record(&mut self, rec: &WireRecord) -> Result<(), ApplyError> {
        if self.rewind.as_ref().is_some_and(|r| r.upto.is_none()) {
            return Err(ApplyError::RepairPending);
        }
        let expected = self.journal.next_lsn();
        if rec.lsn != expected {
            return Err(ApplyError::Gap {
                expected,
                got: rec.lsn,
            });
        }
        let txn = Transaction::decode(&rec.payload).map_err(|e| ApplyError::Decode {
            lsn: rec.lsn,
            what: e.to_string(),
        })?;
        self.turn_dirty = true;
        let skip: Vec<bool> = txn
            .ops
            .iter()
            .map(|op| self.rewind_skips(rec.lsn, op))
            .collect();
        let batch = match self.batch() {
            Ok(b) => b,
            Err(e) => return Err(StoreError::Corrupt(e.to_string()).into()),
        };
        batch.set_lsn(rec.lsn);
        for (op, skip) in txn.ops.iter().zip(skip) {
            if skip {
                continue;
            }
            if let Err(e) = batch.apply(op) {
                let msg = e.to_string();
                self.batch_error = Some(e);
                return Err(StoreError::Corrupt(msg).into());
            }
        }
        self.journal.append(rec.generation, &rec.payload);
        self.stats.records += 1;
        if rec.generation > self.generation {
            self.generation = rec.generation;
        }
        if let Some(b) = self.batch.as_mut() {
            b.set_lsn(self.journal.next_lsn());
        }
        if txn
            .ops
            .iter()
            .any(|op| op.file().starts_with(crate::files::RESERVED_PREFIX))
        {
            self.note_sys_applied(rec.lsn, &txn.ops);
        }
        self.maybe_end_rewind();
        Ok(())
    }

    /// A consistent snapshot to ship, and the LSN it is at (the store's last commit).
    pub fn snapshot(&mut self) -> Result<View, StoreError> {
        self.commit_batch();
        self.view = None;
        match self.store.as_ref() {
            Some(s) => s.view(),
            None => Err(StoreError::Corrupt(self.unavailable())),
        }
    }

    /// Starts loading a full sync beside the live copy.
    pub fn begin_full_sync(&mut self, b: &SyncBegin) -> Result<FullSync, EngineError> {
        let free_at_begin = self.room_to_begin_full_sync(b.items_total)?;
        let state = self
            .data
            .new_state()
            .map_err(|source| EngineError::DataDir {
                dir: self.data.root().to_path_buf(),
                what: "cannot make a directory for the new copy",
                source,
            })?;
        let init = SyncInit {
            db_id: b.db_id,
            history: b
                .history
                .iter()
                .map(|g| (g.generation, g.first_lsn))
                .collect(),
            lsn: b.lsn,
            catalog: b.catalog.clone(),
        };
        let store = match Store::create_for_sync(
            &state.store_path(),
            &StoreOptions {
                cache_size: self.opts.cache_size,
                ..StoreOptions::default()
            },
            &init,
        ) {
            Ok(s) => s,
            Err(e) => {
                self.data.discard(state);
                return Err(e.into());
            }
        };
        log::info!(
            "full sync: loading a snapshot at LSN {} into {}",
            b.lsn,
            state.dir.display()
        );
        let loader = match Loader::start(store, b.lsn) {
            Ok(l) => l,
            Err(e) => {
                self.data.discard(state);
                return Err(e.into());
            }
        };
        Ok(FullSync {
            state,
            loader: Some(loader),
            lsn: b.lsn,
            db_id: b.db_id,
            items: 0,
            items_total: b.items_total,
            bytes: 0,
            chunks: 0,
            started: Instant::now(),
            free_at_begin,
            room_checked_at: 0,
        })
    }

    /// Gives up a full sync: the live copy stays as it was.
    pub fn abort_full_sync(&mut self, mut fs: FullSync) {
        if let Some(l) = fs.loader.take() {
            l.abort();
        }
        self.data.discard(fs.state);
    }

    /// Every chunk of a full sync has arrived: the loader thread commits the last of them with
    /// this node's own settings and makes the new copy durable, off the event loop, which
    /// polls [`FullSync::ready`] and then calls [`Engine::finish_full_sync`].
    pub fn end_full_sync(&mut self, fs: &mut FullSync) {
        // This node's own settings go with it to the new copy (it is a slave; whether it fed
        // slaves before decides whether a restart as master checks with its peers).
        let mut locals = vec![("role".to_string(), "slave".to_string())];
        if self.has_fed_slaves() {
            locals.push(("fed".into(), "1".into()));
        }
        if let Some(m) = &self.master_node {
            locals.push(("master_node".into(), m.clone()));
        }
        if let Some(l) = fs.loader.as_mut() {
            l.complete(locals, self.wake.clone());
        }
    }

    /// Sets what wakes the event loop when a full sync's new copy is durable.
    pub fn set_wake(&mut self, wake: super::loader::Wake) {
        self.wake = Some(wake);
    }

    /// Completes a full sync: makes the new copy durable (if [`Engine::end_full_sync`] has
    /// not had it done already, waiting for it), switches to it atomically, and goes on from
    /// its LSN. The old copy is removed.
    pub fn finish_full_sync(&mut self, mut fs: FullSync) -> Result<(), EngineError> {
        if !self.opts.slave {
            self.abort_full_sync(fs);
            return Err(EngineError::Role(
                "this node was promoted during a full sync: the new copy is discarded".into(),
            ));
        }
        if fs.loader.as_ref().is_some_and(|l| !l.completing()) {
            self.end_full_sync(&mut fs);
        }
        let loaded = match fs.loader.take() {
            Some(l) => l.finish(),
            None => Err(StoreError::Corrupt("full sync store closed".into())),
        };
        let store = match loaded {
            Ok(s) => s,
            Err(e) => {
                let err = if e.is_disk_full() {
                    self.full_sync_out_of_room(&fs, &e)
                } else {
                    e.into()
                };
                self.abort_full_sync(fs);
                return Err(err);
            }
        };
        drop(store);
        // The new copy's journal starts right after the snapshot.
        let (journal, _) = Journal::open(
            &fs.state.journal_dir(),
            fs.db_id,
            fs.lsn + 1,
            JournalOptions {
                segment_size: self.opts.segment_size,
                sync: self.opts.sync,
            },
            self.fs.clone(),
        )?;
        drop(journal);
        // Close the old copy completely before the switch removes it.
        self.batch = None;
        self.view = None;
        self.txn_ops.clear();
        self.turn_dirty = false;
        self.journal.discard_pending();
        self.store = None;
        let items = fs.items;
        let took = fs.started.elapsed();
        let live = self
            .data
            .switch_to(fs.state)
            .map_err(|source| EngineError::DataDir {
                dir: self.data.root().to_path_buf(),
                what: "cannot switch to the new copy",
                source,
            })?;
        self.state_dir = live;
        let store = Store::open(
            &self.state_dir.join(crate::datadir::STORE_FILE),
            &StoreOptions {
                cache_size: self.opts.cache_size,
                ..StoreOptions::default()
            },
        )?;
        let meta = *store.meta();
        let (journal, _) = Journal::open(
            &self.state_dir.join(crate::datadir::JOURNAL_DIR),
            meta.db_id,
            meta.applied_lsn + 1,
            JournalOptions {
                segment_size: self.opts.segment_size,
                sync: self.opts.sync,
            },
            self.fs.clone(),
        )?;
        let mut journal = journal;
        super::attach_archiver(&mut journal, &self.opts)?;
        self.generation = meta.generation;
        self.store = Some(store);
        self.journal = journal;
        self.store_broken = None;
        // A rewind in progress belonged to the old copy.
        self.rewind = None;
        self.full_sync_bytes_per_item = None;
        log::info!(
            "full sync complete: {items} items at LSN {} in {:.2}s; this copy is live",
            meta.applied_lsn,
            took.as_secs_f64()
        );
        self.last_full_sync = Some((
            format!(
                "a full sync of {items} items at LSN {} in {:.1} s",
                meta.applied_lsn,
                took.as_secs_f64()
            ),
            std::time::Instant::now(),
        ));
        Ok(())
    }

    /// Bytes of journal segments holding LSN `lsn` and later.
    pub fn journal_bytes_from(&self, lsn: Lsn) -> u64 {
        let segs = self.journal.segments();
        let mut total = 0;
        for (i, s) in segs.iter().enumerate() {
            let next_first = segs.get(i + 1).map_or(Lsn::MAX, |n| n.first_lsn);
            if next_first > lsn {
                total += std::fs::metadata(&s.path).map_or(0, |m| m.len());
            }
        }
        total
    }

    /// The oldest LSN a slave may still need: checkpoints keep the journal from there.
    pub fn set_retention_floor(&mut self, floor: Option<Lsn>) {
        self.retention_floor = floor;
    }

    /// Replication slots (slave node id, slot), as the open batch sees them: a slot recorded
    /// since the last commit (a slave's position, the old master's) must already hold the journal
    /// at the checkpoint that commits it.
    pub fn slots(&self) -> Vec<(Vec<u8>, Slot)> {
        let slots = match (&self.batch, &self.store) {
            (Some(b), _) => b.slots(),
            (None, Some(s)) => s.slots(),
            (None, None) => return Vec::new(),
        };
        slots.unwrap_or_else(|e| {
            log::warn!("cannot read the replication slots: {e}");
            Vec::new()
        })
    }

    /// The last full sync this process loaded, and when it went live.
    pub fn last_full_sync(&self) -> Option<&(String, std::time::Instant)> {
        self.last_full_sync.as_ref()
    }

    /// Writes incidents to the store's list (durable with the next checkpoint).
    pub fn save_incidents(&mut self, list: &[crate::incident::Incident]) {
        let result = match self.batch() {
            Ok(b) => b.save_incidents(list),
            Err(e) => Err(StoreError::Corrupt(e.to_string())),
        };
        if let Err(e) = result {
            log::warn!("cannot keep incidents in the store: {e}");
        }
    }

    /// Records how far a slave has acknowledged (kept with the store; durable at checkpoints).
    pub fn record_slot(&mut self, node: &[u8], slot: &Slot) {
        let result = match self.batch() {
            Ok(b) => b.set_slot(node, slot),
            Err(e) => Err(StoreError::Corrupt(e.to_string())),
        };
        if let Err(e) = result {
            log::warn!("cannot record the slot of a slave: {e}");
        }
    }

    /// Forgets a slave's slot (its journal is no longer kept).
    pub fn drop_slot(&mut self, node: &[u8]) {
        let result = match self.batch() {
            Ok(b) => b.remove_slot(node),
            Err(e) => Err(StoreError::Corrupt(e.to_string())),
        };
        if let Err(e) = result {
            log::warn!("cannot drop the slot of a slave: {e}");
        }
    }
}
