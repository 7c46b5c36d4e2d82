//! The rejoining slave's side of a fork: export what it holds beyond the fork point, rewind,
//! and take the master's repair.
//!
//! When a slave meets a master whose generation history forks from its own (it was the master
//! of an older generation and wrote records its successor never got), it:
//! 1. writes those records, unchanged, to a lost-transactions tape `lost-g{G}-{F}.journal` in
//!    the data directory (readable with `journal dump`, replayable with `journal load --to`),
//!    fsync'd, and raises an incident naming it;
//! 2. records in the store what the records touched ([`RewindState`]), sets its applied LSN
//!    to F-1 and forgets generations past it, in one durable transaction;
//! 3. cuts its journal back to F-1 (redone at start if a crash came in between);
//! 4. tells the master (IDENT) what to repair; the master sends those items' values at its
//!    LSN M, then streams from F; records up to M leave repaired items alone.
//!
//! A master whose journal no longer covers F answers with a full sync instead, which replaces
//! everything (the tape was written first).

use std::path::PathBuf;

use super::{Engine, EngineError, SHIP_AHEAD, TurnOutcome};
use crate::journal::tape::TapeWriter;
use crate::journal::truncate::truncate_after;
use crate::journal::{Journal, JournalOptions, JournalReader, Lsn};
use crate::link::msg::{GenStart, RepairEnd, RepairFile, RepairKey};
use crate::store::StoreError;
use crate::store::rewind::RewindState;
use crate::txn::Transaction;

/// The first LSN at which `mine` and `theirs` disagree: the first generation start of
/// `theirs` that `mine` lacks or has differently. None when `theirs` is a prefix of `mine`
/// (equal, or this node has seen generations the other has not: callers refuse such a peer by
/// its older generation).
pub fn fork_point(mine: &[GenStart], theirs: &[GenStart]) -> Option<Lsn> {
    for (i, t) in theirs.iter().enumerate() {
        match mine.get(i) {
            Some(m) if m == t => continue,
            Some(m) => return Some(m.first_lsn.min(t.first_lsn)),
            None => return Some(t.first_lsn),
        }
    }
    None
}

/// What a rewind did, for the incident, the command and `status`.
#[derive(Debug, Clone)]
pub struct RewindReport {
    pub fork: Lsn,
    pub last: Lsn,
    /// Clients' transactions beyond the fork point.
    pub records: u64,
    /// hotbackup's own records beyond it (canaries, verify markers, a promotion).
    pub own_records: u64,
    pub tape: PathBuf,
    /// The master lost them (FORK), rather than a newer master never got them.
    pub unconfirmed: bool,
}

impl std::fmt::Display for RewindReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.records == 0 {
            return write!(
                f,
                "no client transaction was beyond the fork point (LSN {}-{} held only {} canary/verify/promotion record(s) of hotbackup's own); kept in {}",
                self.fork,
                self.last,
                self.own_records,
                self.tape.display()
            );
        }
        write!(
            f,
            "{} transaction(s) (LSN {}-{}) {}; saved to {}",
            self.records,
            self.fork,
            self.last,
            if self.unconfirmed {
                "are not on the master (it lost them before they were durable there)"
            } else {
                "were never sent to the new master"
            },
            self.tape.display()
        )?;
        if self.own_records > 0 {
            write!(
                f,
                " (with {} canary/verify record(s) of hotbackup's own)",
                self.own_records
            )?;
        }
        Ok(())
    }
}

/// Why a slave rewinds.
#[derive(Clone, Copy)]
enum Cause {
    /// Its history forks from its master's (it was the master of an older generation).
    Fork,
    /// Its master lost records it had shipped before they were durable (a crash of its
    /// machine, or a rewind of its own when it is a slave feeding this one).
    Unconfirmed,
}

/// Whether a transaction holds only hotbackup's own ops (canary, verify marker, promotion):
/// nothing a client wrote.
fn is_own(txn: &Transaction) -> bool {
    txn.ops
        .iter()
        .all(|op| op.file().is_empty() || crate::files::is_reserved(op.file()))
}

fn store_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::Store(StoreError::Corrupt(e.to_string()))
}

impl Engine {
    /// The rewind in progress (None: none).
    pub fn rewind_state(&self) -> Option<&RewindState> {
        self.rewind.as_ref()
    }

    /// What the last rewind exported (for `status` and `hotbackup rejoin`).
    pub fn rejoin_report(&self) -> Option<String> {
        self.rejoin_report.clone()
    }

    /// A slave meeting a master with history `theirs`: if this node holds records beyond the
    /// fork point, export and rewind them (see the module doc). Ok(None): nothing to do.
    pub fn prepare_rejoin(
        &mut self,
        theirs: &[GenStart],
        master: &str,
    ) -> Result<Option<RewindReport>, EngineError> {
        if !self.opts.slave || self.rewind.as_ref().is_some_and(|r| r.upto.is_none()) {
            return Ok(None);
        }
        let mine = self.history();
        let Some(fork) = fork_point(&mine, theirs) else {
            return Ok(None);
        };
        self.rewind_from(fork, master, Cause::Fork)
    }

    /// A slave told by its master (FORK) that the records it holds from LSN `fork` on are not
    /// the master's: the master lost records it had shipped before they were durable there (a
    /// crash of its machine, or its own rewind), so no client was ever told they were written.
    /// They are exported and rewound like a fork's; see the module doc.
    pub fn rewind_unconfirmed(
        &mut self,
        fork: Lsn,
        master: &str,
    ) -> Result<Option<RewindReport>, EngineError> {
        if !self.opts.slave {
            return Err(EngineError::Role(
                "a FORK from a master, but this node is not a slave".into(),
            ));
        }
        if self.rewind.as_ref().is_some_and(|r| r.upto.is_none()) {
            return Err(EngineError::Role(
                "a FORK from the master while a rewind waits for its repair".into(),
            ));
        }
        self.rewind_from(fork, master, Cause::Unconfirmed)
    }

    /// The digests of this slave's last records (at most [`SHIP_AHEAD`], up to its last
    /// written LSN): the records its master may have lost in a crash are among them. The turn
    /// is ended first, so that what the link handshake reports is in the journal.
    pub fn tail_digests(&mut self) -> (Lsn, Vec<u64>) {
        if self.turn_dirty {
            let _ = self.end_turn();
        }
        let last = self.journal.written_lsn();
        let from = last
            .saturating_sub(SHIP_AHEAD - 1)
            .max(self.journal.first_lsn())
            .max(1);
        if last < from {
            return (0, Vec::new());
        }
        match self.digests(from, last) {
            Ok(s) => (from, s),
            Err(e) => {
                log::warn!("reading the journal's last records for the handshake: {e}");
                (0, Vec::new())
            }
        }
    }

    /// The digests ([`record_digest`]) of this node's records `from..=upto` (fewer if the
    /// journal ends before).
    fn digests(&self, from: Lsn, upto: Lsn) -> Result<Vec<u64>, EngineError> {
        let mut r = JournalReader::open(self.journal.dir(), from, Some(upto))?;
        let mut out = Vec::with_capacity((upto + 1).saturating_sub(from) as usize);
        let mut next = from;
        while let Some(rec) = r.next_record()? {
            if rec.lsn != next {
                return Err(EngineError::BadRecord {
                    lsn: rec.lsn,
                    what: format!("expected LSN {next} in the journal"),
                });
            }
            if Transaction::stamp(&rec.payload).is_none() {
                return Err(EngineError::BadRecord {
                    lsn: rec.lsn,
                    what: "not a transaction".into(),
                });
            }
            out.push(record_digest(&rec.payload));
            next += 1;
        }
        Ok(out)
    }

    /// A master checking a slave's last records (IDENT's `tail`, ending at its LSN
    /// `slave_lsn`) against its own: the first LSN where the slave holds a record this node
    /// does not have as it is (another digest, or past this node's last written record).
    /// Ok(None): all of them are this node's. Err: they cannot be checked here.
    pub fn fork_in_tail(
        &self,
        tail: &(Lsn, Vec<u64>),
        slave_lsn: Lsn,
    ) -> Result<Option<Lsn>, String> {
        let (tail_from, digests) = tail;
        if digests.is_empty() || *tail_from == 0 {
            return Ok(None);
        }
        let written = self.journal.written_lsn();
        // Records this journal no longer holds were durable here before they went: only a
        // record this node had not made durable can differ.
        let skip = self.journal.first_lsn().saturating_sub(*tail_from);
        let from = tail_from + skip;
        let digests = digests.get(skip as usize..).unwrap_or_default();
        if digests.is_empty() {
            return Ok(None);
        }
        // The peer's numbers: no overflow whatever they are.
        let upto = from.saturating_add(digests.len() as u64 - 1).min(written);
        if upto >= from {
            let mine = self
                .digests(from, upto)
                .map_err(|e| format!("reading this journal's LSN {from}-{upto}: {e}"))?;
            for (i, (a, b)) in mine.iter().zip(digests.iter()).enumerate() {
                if a != b {
                    return Ok(Some(from + i as u64));
                }
            }
            if (mine.len() as u64) < upto + 1 - from {
                return Ok(Some(from + mine.len() as u64));
            }
        }
        if slave_lsn > written {
            return Ok(Some((written + 1).max(from)));
        }
        Ok(None)
    }

    /// Exports and rewinds what this node holds from LSN `fork` on.
    fn rewind_from(
        &mut self,
        fork: Lsn,
        master: &str,
        cause: Cause,
    ) -> Result<Option<RewindReport>, EngineError> {
        let last = self.visible_lsn();
        if fork > last {
            return Ok(None);
        }
        // Everything applied so far goes to disk first: the export reads the journal.
        if let TurnOutcome::Failed { message, .. } = self.end_turn() {
            return Err(EngineError::Role(format!("cannot rewind: {message}")));
        }
        self.commit_batch();
        if self.batch.is_some() {
            return Err(EngineError::Role(
                "cannot rewind: the store could not commit; retry".into(),
            ));
        }
        self.sync_now();
        if let Some(f) = &self.fatal {
            return Err(EngineError::Role(format!("cannot rewind: {f}")));
        }
        if self.journal.first_lsn() > fork {
            return Err(EngineError::Role(format!(
                "this node holds LSN {fork}-{last} that {master} does not have, but its journal starts at LSN {}: those records cannot be exported one by one; copy the data directory aside and rebuild this node (`hotbackup rejoin` after wiping it)",
                self.journal.first_lsn()
            )));
        }
        let db_id = self.store.as_ref().map_or([0; 16], |s| s.meta().db_id);
        let dir = self.journal.dir().to_path_buf();
        // 1. The tape.
        let mut reader = JournalReader::open(&dir, fork, Some(last))?;
        let mut st = RewindState {
            fork,
            ..RewindState::default()
        };
        let mut records = 0u64;
        let mut own_records = 0u64;
        let mut first_gen = None;
        let mut staged: Vec<(Lsn, u64, Vec<u8>)> = Vec::new();
        while let Some(rec) = reader.next_record()? {
            let txn = Transaction::decode(&rec.payload).map_err(|e| EngineError::BadRecord {
                lsn: rec.lsn,
                what: e.to_string(),
            })?;
            for op in &txn.ops {
                st.note(op);
            }
            first_gen.get_or_insert(rec.generation);
            staged.push((rec.lsn, rec.generation, rec.payload));
            if is_own(&txn) {
                own_records += 1;
            } else {
                records += 1;
            }
        }
        let tape = self.lost_tape_path(first_gen.unwrap_or(self.generation), fork);
        let mut w = TapeWriter::create(&tape, db_id, fork).map_err(store_err)?;
        for (lsn, g, payload) in &staged {
            w.append(*lsn, *g, payload).map_err(store_err)?;
        }
        w.finish().map_err(store_err)?;
        drop(staged);
        let report = RewindReport {
            fork,
            last,
            records,
            own_records,
            tape,
            unconfirmed: matches!(cause, Cause::Unconfirmed),
        };
        let why = match cause {
            Cause::Fork => format!("{master} forked from this node's history at LSN {fork}"),
            Cause::Unconfirmed => format!(
                "{master} no longer has them: it shipped them before they were durable there and lost them (its machine crashed, or it rewound them itself), so no client was told they were written"
            ),
        };
        if records == 0 {
            log::info!("rejoin: {report}; {why}");
        } else {
            crate::incident::raise(
                crate::incident::Kind::LostTransactions,
                format!(
                    "rejoin: {report}; {why}. Review them with `hotbackup journal dump {}`, re-apply with `hotbackup journal load --to <master> {}` if wanted",
                    report.tape.display(),
                    report.tape.display()
                ),
                &[
                    ("peer", master.to_string()),
                    ("lsn", fork.to_string()),
                    ("tape", report.tape.display().to_string()),
                ],
            );
        }
        // 2. The rewind state, durably, with the applied LSN at fork - 1.
        let generation = {
            let store = self
                .store
                .as_mut()
                .ok_or_else(|| EngineError::Role("the store is unavailable".into()))?;
            let mut b = store.begin()?;
            b.set_rewind(&st)?;
            let g = b.rewind_history(fork - 1)?;
            store.commit(b, fork - 1)?;
            store.checkpoint()?;
            g
        };
        // 3. The journal, cut back and reopened.
        truncate_after(&dir, &db_id, fork - 1, self.fs.as_ref())?;
        let (journal, _) = Journal::open(
            &dir,
            db_id,
            fork,
            JournalOptions {
                segment_size: self.opts.segment_size,
                sync: self.opts.sync,
            },
            self.fs.clone(),
        )?;
        let mut journal = journal;
        super::attach_archiver(&mut journal, &self.opts)?;
        self.journal = journal;
        self.generation = generation;
        self.view = None;
        self.rewind = Some(st);
        self.rejoin_report = Some(report.to_string());
        log::warn!(
            "rejoin: this node is back at LSN {} (generation {generation}); waiting for the repair of what the exported records touched",
            fork - 1
        );
        Ok(Some(report))
    }

    /// `lost-g{G}-{F}.journal` in the data directory; `-2`, `-3`… if taken.
    fn lost_tape_path(&self, generation: u64, fork: Lsn) -> PathBuf {
        let root = self.data.root();
        let base = format!("lost-g{generation}-{fork}");
        let mut p = root.join(format!("{base}.journal"));
        let mut n = 2;
        while p.exists() {
            p = root.join(format!("{base}-{n}.journal"));
            n += 1;
        }
        p
    }

    /// A repair's item values.
    pub fn apply_repair_keys(&mut self, keys: &[RepairKey]) -> Result<(), String> {
        self.expect_repair()?;
        let b = self.batch().map_err(|e| e.to_string())?;
        for k in keys {
            b.repair_item(&k.file, &k.id, k.raw.as_deref())
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// A repair's whole file (its items follow in [`Engine::apply_repair_items`]).
    pub fn apply_repair_file(&mut self, f: &RepairFile) -> Result<(), String> {
        self.expect_repair()?;
        let b = self.batch().map_err(|e| e.to_string())?;
        b.repair_file(&f.file, f.logged).map_err(|e| e.to_string())
    }

    pub fn apply_repair_items(
        &mut self,
        file: &str,
        items: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), String> {
        self.expect_repair()?;
        let b = self.batch().map_err(|e| e.to_string())?;
        b.put_items(file, items).map_err(|e| e.to_string())
    }

    /// The repair is complete at the master's LSN `end.upto`: recorded durably with the
    /// repaired values; the master's records up to it now leave repaired items alone.
    pub fn finish_repair(&mut self, end: &RepairEnd) -> Result<(), String> {
        self.expect_repair()?;
        let mut st = self.rewind.clone().unwrap_or_default();
        st.upto = Some(end.upto);
        st.files.extend(end.files.iter().cloned());
        st.keys.retain(|(f, _)| !st.files.contains(f));
        let b = self.batch().map_err(|e| e.to_string())?;
        b.set_rewind(&st).map_err(|e| e.to_string())?;
        self.make_durable().map_err(|e| e.to_string())?;
        log::info!(
            "rejoin: repair complete ({} item(s), {} whole file(s), {} file item(s)) at the master's LSN {}; streaming from LSN {}",
            end.keys,
            end.files.len(),
            end.items,
            end.upto,
            st.fork
        );
        self.rewind = Some(st);
        self.maybe_end_rewind();
        Ok(())
    }

    fn expect_repair(&self) -> Result<(), String> {
        match &self.rewind {
            Some(r) if r.upto.is_none() => Ok(()),
            _ => Err("a repair arrived but this node is not rewinding".into()),
        }
    }

    /// Whether the op of record `lsn` is left out (the repair holds its effect).
    pub(super) fn rewind_skips(&self, lsn: Lsn, op: &crate::txn::Op) -> bool {
        self.rewind.as_ref().is_some_and(|r| r.skips(lsn, op))
    }

    /// Past the repair's LSN the node is an ordinary slave: the rewind state goes (with the
    /// batch that applies the record reaching it).
    pub(super) fn maybe_end_rewind(&mut self) {
        let done =
            matches!(&self.rewind, Some(r) if r.upto.is_some_and(|u| self.visible_lsn() >= u));
        if !done {
            return;
        }
        match self.batch() {
            Ok(b) => {
                if let Err(e) = b.clear_rewind() {
                    log::error!("cannot clear the rewind state: {e}");
                    return;
                }
            }
            Err(e) => {
                log::error!("cannot clear the rewind state: {e}");
                return;
            }
        }
        self.rewind = None;
        log::info!("rejoin: caught up past the repair; this node is an ordinary slave again");
    }
}

/// A record's digest for the handshake's check: the first 8 bytes of the SHA-256 of its
/// payload (which a slave journals byte for byte as its master wrote it). Two records with the
/// same LSN differ in digest unless they are the same transaction: the same ops at the same
/// commit time.
pub fn record_digest(payload: &[u8]) -> u64 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(payload);
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(generation: u64, first_lsn: Lsn) -> GenStart {
        GenStart {
            generation,
            first_lsn,
        }
    }

    #[test]
    fn fork_points() {
        // Same history: no fork.
        assert_eq!(fork_point(&[g(1, 1)], &[g(1, 1)]), None);
        // The master went on to generation 2 at 1041: the fork is there.
        assert_eq!(fork_point(&[g(1, 1)], &[g(1, 1), g(2, 1041)]), Some(1041));
        // Both were promoted to generation 2, at different LSNs.
        assert_eq!(
            fork_point(&[g(1, 1), g(2, 1050)], &[g(1, 1), g(2, 1041)]),
            Some(1041)
        );
        assert_eq!(
            fork_point(&[g(1, 1), g(2, 1030)], &[g(1, 1), g(2, 1041)]),
            Some(1030)
        );
        // This node has seen more than the other: not a fork this side handles.
        assert_eq!(fork_point(&[g(1, 1), g(2, 9)], &[g(1, 1)]), None);
    }
}
