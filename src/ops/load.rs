//! `hotbackup journal load FILE...`: appends tapes to a stopped node's journal, keeping their
//! LSNs — the seed's "load the tapes on the backup machine".
//!
//! The node must be stopped (its data directory's lock is free); the load opens it as the
//! daemon would ([`Engine::open`]: recovery, replay) and feeds the tapes' records through the
//! same path as records from a master ([`Engine::apply_record`]): journaled with their own LSN
//! and generation, applied to the store, made durable (fsync) and checkpointed chunk by chunk.
//! A crash at any point leaves a node that starts: the journal is fsynced before the store is
//! made durable, and an interrupted load is simply run again.
//!
//! Everything is checked before anything is written ([`plan`]): every tape is read whole
//! (integrity, LSN continuity), must be of this database, must continue the node's journal
//! without a gap (tapes are taken in LSN order and may overlap), and its generations must
//! continue the node's history (a new generation only with its promotion record). Records the
//! node has already (LSN ≤ its last) are skipped when they are the same — loading a tape twice
//! changes nothing — and a different record at such an LSN means the tape comes from another
//! history: refused. Below the node's journal (e.g. after a restore at LSN L) only the
//! generation can be compared.
//!
//! An empty data directory can be built from tapes that start at LSN 1 (the database id is the
//! tapes').

use std::path::{Path, PathBuf};

use thiserror::Error;

use super::daemon::{Probe, ProbeError, probe};
use crate::config::Config;
use crate::datadir::{DataDir, hex};
use crate::journal::tape::{TapeError, TapeReader};
use crate::journal::{DbId, JournalError, JournalReader, Lsn, SyncMode};
use crate::link::msg::WireRecord;
use crate::server::engine::TurnOutcome;
use crate::server::{Engine, EngineError, Settings};
use crate::store::{Store, StoreError, StoreOptions, SyncInit};
use crate::txn::{Op, Transaction};

/// Records appended per group commit (and store checkpoint) while loading.
const CHUNK_RECORDS: u64 = 10_000;
const CHUNK_BYTES: usize = 64 << 20;

#[derive(Debug, Error)]
pub enum LoadError {
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error(
        "a hotbackup daemon is running on {}: stop it first (journal load appends to a stopped node's journal), or replay the tapes as new transactions on a running master with --to HOST:PORT",
        .0.display()
    )]
    Running(PathBuf),
    #[error("no tape given")]
    NoTapes,
    #[error(
        "{} holds no database, and the first tape starts at LSN {first}: restore a save (hotbackup restore) first, then load tapes from its LSN + 1",
        dir.display()
    )]
    NoDatabase { dir: PathBuf, first: Lsn },
    #[error(transparent)]
    Tape(#[from] TapeError),
    #[error(
        "tape {} belongs to another database (database id {tape}, this node's is {node})",
        path.display()
    )]
    OtherDatabase {
        path: PathBuf,
        tape: String,
        node: String,
    },
    #[error(
        "tape {} starts at LSN {first}, but the node's journal ends at LSN {last} (with the tapes before it): LSN {expected}..{} are missing; export them with --from {expected}",
        path.display(), first - 1
    )]
    Gap {
        path: PathBuf,
        first: Lsn,
        last: Lsn,
        expected: Lsn,
    },
    #[error("tape {} is from another history: LSN {lsn}: {why}", path.display())]
    OtherHistory {
        path: PathBuf,
        lsn: Lsn,
        why: String,
    },
    #[error("tape {}: record LSN {lsn} does not decode: {why}", path.display())]
    BadRecord {
        path: PathBuf,
        lsn: Lsn,
        why: String,
    },
    #[error("tape {}: record LSN {lsn} cannot be applied: {why}; records before it are loaded", path.display())]
    Apply {
        path: PathBuf,
        lsn: Lsn,
        why: String,
    },
    #[error("cannot prepare {}: {source}", dir.display())]
    DataDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// What loading one tape does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapePlan {
    pub path: PathBuf,
    pub first_lsn: Lsn,
    pub last_lsn: Option<Lsn>,
    /// Records the node has already (checked equal, or by generation below its journal).
    pub skipped: u64,
    /// Of the skipped, those compared by generation only.
    pub unverified: u64,
    /// Records to append.
    pub new: u64,
}

/// What a load did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    pub tapes: Vec<TapePlan>,
    /// The node's last LSN before and after.
    pub before: Lsn,
    pub after: Lsn,
    pub generation: u64,
}

impl LoadReport {
    pub fn render_human(&self) -> String {
        let mut o = String::new();
        for t in &self.tapes {
            let range = match t.last_lsn {
                Some(l) => format!("LSN {}..{l}", t.first_lsn),
                None => format!("no records (at LSN {})", t.first_lsn),
            };
            o.push_str(&format!(
                "{}: {range}: {} loaded, {} already here{}\n",
                t.path.display(),
                t.new,
                t.skipped,
                if t.unverified > 0 {
                    format!(
                        " ({} below the node's journal, checked by generation only)",
                        t.unverified
                    )
                } else {
                    String::new()
                }
            ));
        }
        o.push_str(&format!(
            "the node's journal now ends at LSN {} (was {}), generation {}\n",
            self.after, self.before, self.generation
        ));
        o
    }
}

/// The generation in effect at `lsn` according to a history (generation, first LSN).
fn generation_at(history: &[(u64, Lsn)], lsn: Lsn) -> u64 {
    history
        .iter()
        .filter(|(_, first)| *first <= lsn)
        .map(|(g, _)| *g)
        .max()
        .unwrap_or(1)
}

/// Checks a new record's generation against the history so far; returns the generation it
/// starts, if it is a promotion record.
fn check_generation(
    history: &[(u64, Lsn)],
    lsn: Lsn,
    generation: u64,
    txn: &Transaction,
) -> Result<Option<(u64, Lsn)>, String> {
    let current = history.iter().map(|(g, _)| *g).max().unwrap_or(1);
    let starts = txn.ops.iter().find_map(|op| match op {
        Op::NewGeneration {
            generation,
            first_lsn,
            ..
        } => Some((*generation, *first_lsn)),
        _ => None,
    });
    if generation < current {
        return Err(format!(
            "its generation {generation} is below this node's current generation {current}"
        ));
    }
    match starts {
        Some((g, first)) => {
            if g != generation || first != lsn || g <= current {
                return Err(format!(
                    "it starts generation {g} at LSN {first}, but this node is at generation {current} and the record has generation {generation}"
                ));
            }
            Ok(Some((g, first)))
        }
        None if generation > current => Err(format!(
            "it has generation {generation} but this node is at generation {current} and no promotion record starts generation {generation}"
        )),
        None => Ok(None),
    }
}

/// Node facts the checks need.
struct NodeView {
    db_id: DbId,
    last: Lsn,
    journal_first: Lsn,
    journal_dir: PathBuf,
    history: Vec<(u64, Lsn)>,
}

impl NodeView {
    fn of(eng: &Engine) -> Result<NodeView, LoadError> {
        let store = eng
            .store()
            .ok_or_else(|| StoreError::Corrupt("the store did not open".into()))?;
        Ok(NodeView {
            db_id: store.meta().db_id,
            last: eng.durable_lsn(),
            journal_first: eng.journal().first_lsn(),
            journal_dir: eng.journal().dir().to_path_buf(),
            history: eng
                .history()
                .into_iter()
                .map(|g| (g.generation, g.first_lsn))
                .collect(),
        })
    }
}

/// Reads every tape and decides what loading it does, without changing anything. Tapes are
/// taken in the order of their first LSN.
fn plan(node: &NodeView, paths: &[PathBuf]) -> Result<Vec<TapePlan>, LoadError> {
    let mut tapes = Vec::new();
    for p in paths {
        let r = TapeReader::open(p)?;
        tapes.push((r.header().first_lsn, p.clone()));
    }
    tapes.sort_by_key(|(first, _)| *first);
    let mut history = node.history.clone();
    let mut last = node.last;
    let mut plans = Vec::new();
    for (first, path) in tapes {
        let mut reader = TapeReader::open(&path)?;
        if reader.header().db_id != node.db_id {
            return Err(LoadError::OtherDatabase {
                path,
                tape: hex(&reader.header().db_id),
                node: hex(&node.db_id),
            });
        }
        if first > last + 1 {
            return Err(LoadError::Gap {
                path,
                first,
                last,
                expected: last + 1,
            });
        }
        let mut t = TapePlan {
            path: path.clone(),
            first_lsn: first,
            last_lsn: None,
            skipped: 0,
            unverified: 0,
            new: 0,
        };
        // The node's own records at the LSNs the tape repeats.
        let mut mine: Option<JournalReader> = None;
        let other = |lsn, why: String| LoadError::OtherHistory {
            path: path.clone(),
            lsn,
            why,
        };
        while let Some(rec) = reader.next_record()? {
            t.last_lsn = Some(rec.lsn);
            let txn = Transaction::decode(&rec.payload).map_err(|e| LoadError::BadRecord {
                path: path.clone(),
                lsn: rec.lsn,
                why: e.to_string(),
            })?;
            if rec.lsn <= node.last {
                t.skipped += 1;
                if rec.lsn < node.journal_first {
                    t.unverified += 1;
                    let g = generation_at(&node.history, rec.lsn);
                    if g != rec.generation {
                        return Err(other(
                            rec.lsn,
                            format!(
                                "the tape's record has generation {}, this node's history has generation {g} there",
                                rec.generation
                            ),
                        ));
                    }
                    continue;
                }
                if mine.is_none() {
                    mine = Some(JournalReader::open(
                        &node.journal_dir,
                        rec.lsn,
                        Some(node.last),
                    )?);
                }
                let theirs = mine
                    .as_mut()
                    .map(|m| m.next_record())
                    .transpose()?
                    .flatten();
                match theirs {
                    Some(m) if m.lsn == rec.lsn => {
                        if m.generation != rec.generation || m.payload != rec.payload {
                            return Err(other(
                                rec.lsn,
                                format!(
                                    "this node has a different record there (generation {} here, {} on the tape){}",
                                    m.generation,
                                    rec.generation,
                                    if m.generation == rec.generation {
                                        ", with other contents"
                                    } else {
                                        ""
                                    }
                                ),
                            ));
                        }
                    }
                    _ => {
                        return Err(LoadError::Journal(JournalError::NotFound {
                            lsn: rec.lsn,
                            oldest: node.journal_first,
                        }));
                    }
                }
                continue;
            }
            if rec.lsn <= last {
                // Repeated by an earlier tape of this load: it was checked there.
                t.skipped += 1;
                continue;
            }
            match check_generation(&history, rec.lsn, rec.generation, &txn) {
                Ok(Some(g)) => history.push(g),
                Ok(None) => {}
                Err(why) => return Err(other(rec.lsn, why)),
            }
            t.new += 1;
            last = rec.lsn;
        }
        plans.push(t);
    }
    Ok(plans)
}

/// Makes a database in an empty data directory for tapes starting at LSN 1.
fn init_empty(cfg: &Config, db_id: DbId) -> Result<(), LoadError> {
    let data = DataDir::new(&cfg.data_dir);
    let err = |source| LoadError::DataDir {
        dir: cfg.data_dir.clone(),
        source,
    };
    std::fs::create_dir_all(&cfg.data_dir).map_err(err)?;
    let _lock = match data.lock() {
        Ok(l) => l,
        Err(None) => return Err(LoadError::Running(cfg.data_dir.clone())),
        Err(Some(e)) => return Err(err(e)),
    };
    data.prepare().map_err(err)?;
    let store = Store::create_for_sync(
        &data.store_path(),
        &StoreOptions {
            cache_size: cfg.store.cache_size,
            ..StoreOptions::default()
        },
        &SyncInit {
            db_id,
            history: vec![(1, 1)],
            lsn: 0,
            catalog: Vec::new(),
        },
    )?;
    drop(store);
    Ok(())
}

fn holds_database(data_dir: &Path) -> bool {
    DataDir::new(data_dir).store_path().exists()
}

/// Loads tapes into the stopped node of `cfg`.
pub fn load(cfg: &Config, paths: &[PathBuf]) -> Result<LoadReport, LoadError> {
    if paths.is_empty() {
        return Err(LoadError::NoTapes);
    }
    if !holds_database(&cfg.data_dir) {
        let mut first: Option<(Lsn, DbId)> = None;
        for p in paths {
            let r = TapeReader::open(p)?;
            let h = *r.header();
            if first.is_none_or(|(l, _)| h.first_lsn < l) {
                first = Some((h.first_lsn, h.db_id));
            }
        }
        match first {
            Some((1, db_id)) => init_empty(cfg, db_id)?,
            Some((l, _)) => {
                return Err(LoadError::NoDatabase {
                    dir: cfg.data_dir.clone(),
                    first: l,
                });
            }
            None => return Err(LoadError::NoTapes),
        }
    }
    match probe(&cfg.data_dir)? {
        Probe::Running => return Err(LoadError::Running(cfg.data_dir.clone())),
        // The engine takes the lock itself (a daemon started meanwhile makes it fail).
        Probe::Stopped(lock) => drop(lock),
    }
    let mut opts = Settings::from_config(cfg).engine_options();
    // Offline, every chunk is made durable whatever the daemon's mode.
    opts.sync = SyncMode::Fsync;
    let mut eng = Engine::open(opts).map_err(|e| match e {
        EngineError::Locked(dir) => LoadError::Running(dir),
        e => e.into(),
    })?;
    let node = NodeView::of(&eng)?;
    let plans = plan(&node, paths)?;
    let mut last = node.last;
    for t in &plans {
        if t.new == 0 {
            continue;
        }
        let mut reader = TapeReader::open(&t.path)?;
        let (mut n, mut bytes) = (0u64, 0usize);
        while let Some(rec) = reader.next_record()? {
            if rec.lsn <= last {
                continue;
            }
            let wire = WireRecord {
                lsn: rec.lsn,
                generation: rec.generation,
                payload: rec.payload,
            };
            if let Err(e) = eng.apply_record(&wire) {
                let why = e.to_string();
                // The chunk is dropped whole; what was loaded before it stays.
                let _ = eng.end_turn();
                return Err(LoadError::Apply {
                    path: t.path.clone(),
                    lsn: rec.lsn,
                    why,
                });
            }
            n += 1;
            bytes += wire.payload.len();
            if n >= CHUNK_RECORDS || bytes >= CHUNK_BYTES {
                last = commit_chunk(&mut eng, &t.path, rec.lsn)?;
                (n, bytes) = (0, 0);
            }
        }
        if n > 0 {
            let lsn = eng.visible_lsn();
            last = commit_chunk(&mut eng, &t.path, lsn)?;
        }
    }
    let after = eng.durable_lsn();
    let generation = eng.generation();
    drop(eng);
    Ok(LoadReport {
        tapes: plans,
        before: node.last,
        after,
        generation,
    })
}

/// Writes, fsyncs and checkpoints what was applied; returns the node's last LSN.
fn commit_chunk(eng: &mut Engine, path: &Path, lsn: Lsn) -> Result<Lsn, LoadError> {
    if let TurnOutcome::Failed { message, .. } = eng.end_turn() {
        return Err(LoadError::Apply {
            path: path.to_path_buf(),
            lsn,
            why: message,
        });
    }
    eng.sync_now();
    if let Some(f) = eng.fatal() {
        return Err(LoadError::Apply {
            path: path.to_path_buf(),
            lsn,
            why: f.to_string(),
        });
    }
    eng.checkpoint();
    Ok(eng.durable_lsn())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(ops: Vec<Op>) -> Transaction {
        Transaction { time_ms: 1, ops }
    }

    #[test]
    fn generations_must_continue_the_history() {
        let h = vec![(1, 1), (2, 10)];
        let plain = txn(vec![]);
        assert_eq!(check_generation(&h, 20, 2, &plain), Ok(None));
        assert!(check_generation(&h, 20, 1, &plain).is_err());
        assert!(check_generation(&h, 20, 3, &plain).is_err());
        let promo = |g, first| {
            txn(vec![Op::NewGeneration {
                generation: g,
                first_lsn: first,
                node: vec![1; 16],
                name: "b".into(),
                time_ms: 0,
            }])
        };
        assert_eq!(
            check_generation(&h, 20, 3, &promo(3, 20)),
            Ok(Some((3, 20)))
        );
        assert!(check_generation(&h, 20, 3, &promo(3, 19)).is_err());
        assert!(check_generation(&h, 20, 2, &promo(2, 20)).is_err());
        assert_eq!(generation_at(&h, 9), 1);
        assert_eq!(generation_at(&h, 10), 2);
    }
}
