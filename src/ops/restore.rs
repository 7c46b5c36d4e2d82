//! `hotbackup restore FILE`: builds a node from a save file, into an empty data directory.
//!
//! It builds the copy the way a full sync does (`state.N.tmp` beside nothing, then the atomic
//! switch of `current`): a store with the save's database id, generation history, catalog and
//! LSN L, loaded with every item, checkpointed; a journal that starts at L+1. The node then
//! starts at L with the saved identity, and `journal load` of tapes from L+1 continues it. The
//! save file is checked as it is read (CRCs, counts, SHA-256 at the end) and the copy becomes
//! live only after the whole file checked out: a truncated or corrupt save gets a clear error
//! and leaves the data directory as empty as it was (or absent, if it did not exist).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

use super::progress::{Progress, human_bytes};
use crate::config::Config;
use crate::datadir::{DataDir, LOCK_FILE, hex};
use crate::journal::fs::RealFs;
use crate::journal::{Journal, JournalError, JournalOptions, Lsn, SyncMode};
use crate::savefile::{SaveError, SaveReader};
use crate::store::{Store, StoreError, StoreOptions, SyncInit};

/// Commit the loading batch every this many bytes.
const BATCH_BYTES: usize = 64 << 20;

#[derive(Debug, Error)]
pub enum RestoreError {
    #[error(
        "data directory {} is not empty ({}): restore only into an empty or new data directory",
        dir.display(), entries.join(", ")
    )]
    NotEmpty { dir: PathBuf, entries: Vec<String> },
    #[error("a hotbackup daemon holds {}", .0.display())]
    Running(PathBuf),
    #[error("data directory {}: {what}: {source}", dir.display())]
    DataDir {
        dir: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Save(#[from] SaveError),
    #[error("{0} (the data directory was left empty)")]
    Failed(Box<RestoreError>),
    #[error("save file: a chunk of file '{0}', which its catalog does not list")]
    UnknownFile(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

#[derive(Debug, Clone)]
pub struct RestoreReport {
    pub data_dir: PathBuf,
    pub db_id: String,
    pub lsn: Lsn,
    pub generation: u64,
    pub items: u64,
    pub files: usize,
    pub bytes: u64,
}

impl RestoreReport {
    pub fn render_human(&self) -> String {
        format!(
            "restored database {} at LSN {} (generation {}): {} item(s) of {} file(s) from {} into {}; load tapes from LSN {} (journal load), then start the node",
            self.db_id,
            self.lsn,
            self.generation,
            self.items,
            self.files,
            human_bytes(self.bytes),
            self.data_dir.display(),
            self.lsn + 1
        )
    }
}

fn entries(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir)? {
        v.push(e?.file_name().to_string_lossy().into_owned());
    }
    v.sort();
    Ok(v)
}

/// Restores `file` into the (empty) data directory of `cfg`.
pub fn restore(cfg: &Config, file: &Path) -> Result<RestoreReport, RestoreError> {
    let dir = cfg.data_dir.clone();
    let dd = |what| {
        let dir = dir.clone();
        move |source| RestoreError::DataDir { dir, what, source }
    };
    let created = !dir.exists();
    if !created {
        let found = entries(&dir).map_err(dd("cannot list"))?;
        if !found.is_empty() {
            let mut shown: Vec<String> = found.iter().take(5).cloned().collect();
            if found.len() > 5 {
                shown.push(format!("and {} more", found.len() - 5));
            }
            return Err(RestoreError::NotEmpty {
                dir,
                entries: shown,
            });
        }
    }
    // The file must at least look like a save before anything is created.
    let reader = SaveReader::open(file)?;
    std::fs::create_dir_all(&dir).map_err(dd("cannot create"))?;
    let data = DataDir::new(&dir);
    let lock = match data.lock() {
        Ok(l) => l,
        Err(None) => return Err(RestoreError::Running(dir)),
        Err(Some(e)) => return Err(dd("cannot open the lock file")(e)),
    };
    let result = build(cfg, &data, reader);
    if result.is_err() {
        // Leave the data directory as it was: empty, or absent.
        for name in entries(&dir).unwrap_or_default() {
            let p = dir.join(&name);
            if name != LOCK_FILE {
                let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
            }
        }
        let _ = std::fs::remove_file(dir.join(LOCK_FILE));
        drop(lock);
        if created {
            let _ = std::fs::remove_dir(&dir);
        }
    }
    result.map_err(|e| RestoreError::Failed(Box::new(e)))
}

fn build(
    cfg: &Config,
    data: &DataDir,
    mut reader: SaveReader,
) -> Result<RestoreReport, RestoreError> {
    let h = reader.header().clone();
    let state = data.new_state().map_err(|source| RestoreError::DataDir {
        dir: data.root().to_path_buf(),
        what: "cannot make the new copy's directory",
        source,
    })?;
    let opts = StoreOptions {
        cache_size: cfg.store.cache_size,
        ..StoreOptions::default()
    };
    let mut store = Store::create_for_sync(
        &state.store_path(),
        &opts,
        &SyncInit {
            db_id: h.db_id,
            history: h.history.clone(),
            lsn: h.lsn,
            catalog: h.catalog.clone(),
        },
    )?;
    // Like a full sync's loader: the copy is made durable by the checkpoint after the load.
    store.start_load()?;
    let mut progress = Progress::new("restore", Some(h.items));
    let mut batch = None;
    let mut pending = 0usize;
    while let Some((file, items)) = reader.next_chunk()? {
        if !h.catalog.iter().any(|(n, _)| *n == file) {
            return Err(RestoreError::UnknownFile(file));
        }
        if batch.is_none() {
            batch = Some(store.begin()?);
        }
        if let Some(b) = batch.as_mut() {
            b.put_items(&file, &items)?;
        }
        pending += items.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        if pending >= BATCH_BYTES {
            if let Some(b) = batch.take() {
                store.commit(b, h.lsn)?;
            }
            pending = 0;
        }
        progress.set(reader.items(), reader.progress().0);
    }
    if let Some(b) = batch.take() {
        store.commit(b, h.lsn)?;
    }
    store.checkpoint()?;
    drop(store);
    progress.finish();
    let (journal, _) = Journal::open(
        &state.journal_dir(),
        h.db_id,
        h.lsn + 1,
        JournalOptions {
            segment_size: cfg.durability.segment_size,
            sync: SyncMode::Fsync,
        },
        Arc::new(RealFs),
    )?;
    drop(journal);
    data.switch_to(state)
        .map_err(|source| RestoreError::DataDir {
            dir: data.root().to_path_buf(),
            what: "cannot make the restored copy live",
            source,
        })?;
    Ok(RestoreReport {
        data_dir: data.root().to_path_buf(),
        db_id: hex(&h.db_id),
        lsn: h.lsn,
        generation: h.history.iter().map(|(g, _)| *g).max().unwrap_or(1),
        items: reader.items(),
        files: h.catalog.len(),
        bytes: reader.progress().1,
    })
}
