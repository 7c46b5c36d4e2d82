//! The engine's side of replication: what the link asks of the database.
//!
//! On a slave: records from the master are journaled with their own LSNs and applied
//! ([`Engine::apply_remote`]), and a full sync builds a new copy of the database beside the live
//! one and switches to it atomically ([`Engine::begin_full_sync`], [`Engine::finish_full_sync`]).
//! On a master: a consistent snapshot to ship ([`Engine::snapshot`]) and the slots that keep
//! the journal a slave still needs ([`Engine::record_slot`]). Both: the identity a node states
//! in the link handshake ([`Engine::ident`]).

use std::time::Instant;

use thiserror::Error;

use super::{Engine, EngineError};
use crate::datadir::NewState;
use crate::journal::{Journal, JournalOptions, Lsn};
use crate::link::msg::{GenStart, Ident, Role, SyncBegin, WireRecord};
use crate::store::{Batch, Reader, Slot, Store, StoreError, StoreOptions, SyncInit, View};
use crate::txn::Transaction;

#[derive(Debug, Error)]
pub enum ApplyError {
    #[error("LSN {got} arrived where {expected} was expected")]
    Gap { expected: Lsn, got: Lsn },
    #[error("record LSN {lsn} does not decode: {what}")]
    Decode { lsn: Lsn, what: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A full sync in progress on a slave: a new copy of the database being loaded.
pub struct FullSync {
    state: NewState,
    store: Option<Store>,
    batch: Option<Batch>,
    batch_bytes: usize,
    pub lsn: Lsn,
    db_id: crate::journal::DbId,
    pub items: u64,
    pub chunks: u64,
    pub started: Instant,
}

/// Commit the loading batch every this many bytes.
const LOAD_BATCH_BYTES: usize = 64 << 20;

impl FullSync {
    /// Loads one chunk of a file's items.
    pub fn add(&mut self, file: &str, items: &[(Vec<u8>, Vec<u8>)]) -> Result<(), StoreError> {
        let Some(store) = self.store.as_mut() else {
            return Err(StoreError::Corrupt("full sync store closed".into()));
        };
        if self.batch.is_none() {
            self.batch = Some(store.begin()?);
        }
        let Some(batch) = self.batch.as_mut() else {
            return Err(StoreError::Corrupt("no batch".into()));
        };
        batch.put_items(file, items)?;
        self.batch_bytes += items
            .iter()
            .map(|(id, raw)| id.len() + raw.len())
            .sum::<usize>();
        self.items += items.len() as u64;
        self.chunks += 1;
        if self.batch_bytes >= LOAD_BATCH_BYTES {
            self.commit()?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        if let (Some(store), Some(batch)) = (self.store.as_mut(), self.batch.take()) {
            store.commit(batch, self.lsn)?;
        }
        self.batch_bytes = 0;
        Ok(())
    }
}

impl Engine {
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
        let (role, lsn, catalog) = if self.is_slave() {
            (Role::Slave, self.visible_lsn(), self.catalog())
        } else {
            (Role::Master, self.durable_lsn(), Vec::new())
        };
        Ident {
            role,
            db_id,
            history: self.history(),
            lsn,
            catalog,
        }
    }

    /// Applies one record from the master: journaled with its own LSN and generation, applied
    /// to the open batch. It becomes durable with the turn's group commit.
    pub fn apply_remote(&mut self, rec: &WireRecord) -> Result<(), ApplyError> {
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
        let batch = match self.batch() {
            Ok(b) => b,
            Err(e) => return Err(StoreError::Corrupt(e.to_string()).into()),
        };
        batch.set_lsn(rec.lsn);
        for op in &txn.ops {
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
        Ok(FullSync {
            state,
            store: Some(store),
            batch: None,
            batch_bytes: 0,
            lsn: b.lsn,
            db_id: b.db_id,
            items: 0,
            chunks: 0,
            started: Instant::now(),
        })
    }

    /// Gives up a full sync: the live copy stays as it was.
    pub fn abort_full_sync(&mut self, mut fs: FullSync) {
        fs.batch = None;
        fs.store = None;
        self.data.discard(fs.state);
    }

    /// Completes a full sync: makes the new copy durable, switches to it atomically, and goes
    /// on from its LSN. The old copy is removed.
    pub fn finish_full_sync(&mut self, mut fs: FullSync) -> Result<(), EngineError> {
        fs.commit()?;
        if let Some(store) = fs.store.as_mut() {
            store.checkpoint()?;
        }
        fs.store = None;
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
        self.generation = meta.generation;
        self.store = Some(store);
        self.journal = journal;
        self.store_broken = None;
        log::info!(
            "full sync complete: {items} items at LSN {} in {:.2}s; this copy is live",
            meta.applied_lsn,
            took.as_secs_f64()
        );
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

    /// Replication slots, from the store (slave node id, slot).
    pub fn slots(&self) -> Vec<(Vec<u8>, Slot)> {
        self.store
            .as_ref()
            .and_then(|s| s.slots().ok())
            .unwrap_or_default()
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
