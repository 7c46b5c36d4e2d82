//! The rewind of a rejoining node: which items its divergent suffix touched, and their repair.
//!
//! A node that rejoins a new master after holding records the master never got (beyond the
//! fork point F) exports them, cuts its journal back to F-1 and records here, durably and in
//! the same transaction that sets its applied LSN to F-1, what those records touched: items
//! (file, id) and whole files. Those items hold values the master never had. The master then
//! sends their values as of its LSN M (the *repair*), and streams its records from F; records
//! up to M are not applied to the repaired items (the repair already holds their effect), all
//! others are. Past M the node is an ordinary slave and the state is cleared.

use std::collections::BTreeSet;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::{Batch, FileInfo, GENERATIONS, META, PROMOTIONS, Store, StoreError, redb_err};
use super::{Reader as _, item};
use crate::codec::{MsgError, Reader, Writer};
use crate::journal::Lsn;
use crate::txn::Op;

const REWIND: TableDefinition<&str, &[u8]> = TableDefinition::new("hb.rewind");

/// What a rewinding node must have repaired, and how far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RewindState {
    /// The fork point: the first LSN this node held that the master does not have.
    pub fork: Lsn,
    /// The master's LSN of the repair values, once they are all applied.
    pub upto: Option<Lsn>,
    /// Items to repair.
    pub keys: BTreeSet<(String, Vec<u8>)>,
    /// Files to repair whole (a file-level op touched them).
    pub files: BTreeSet<String>,
}

impl RewindState {
    /// Notes what one op of the divergent suffix touched.
    pub fn note(&mut self, op: &Op) {
        match op {
            Op::NewGeneration { .. } => {}
            Op::CreateFile { file, .. }
            | Op::SetLogged { file, .. }
            | Op::DropFile { file }
            | Op::ClearFile { file } => {
                self.files.insert(file.clone());
            }
            Op::Put { file, id, .. }
            | Op::Delete { file, id }
            | Op::Append { file, id, .. }
            | Op::HashSet { file, id, .. }
            | Op::HashDel { file, id, .. } => {
                self.keys.insert((file.clone(), id.clone()));
            }
        }
    }

    /// Whether the op of the master's record `lsn` must not be applied: the repair holds it.
    pub fn skips(&self, lsn: Lsn, op: &Op) -> bool {
        let Some(upto) = self.upto else {
            return false;
        };
        if lsn > upto {
            return false;
        }
        let file = op.file();
        if file.is_empty() {
            return false;
        }
        if self.files.contains(file) {
            return true;
        }
        match op {
            Op::Put { id, .. }
            | Op::Delete { id, .. }
            | Op::Append { id, .. }
            | Op::HashSet { id, .. }
            | Op::HashDel { id, .. } => self.keys.contains(&(file.to_string(), id.clone())),
            _ => false,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u64(self.fork);
        w.u64(self.upto.map_or(0, |u| u + 1));
        w.u32(self.files.len() as u32);
        for f in &self.files {
            w.bytes(f.as_bytes());
        }
        w.u32(self.keys.len() as u32);
        for (f, id) in &self.keys {
            w.bytes(f.as_bytes());
            w.bytes(id);
        }
        w.0
    }

    pub fn decode(b: &[u8]) -> Result<RewindState, MsgError> {
        let mut r = Reader::new(b, "rewind state");
        let fork = r.u64()?;
        let upto = r.u64()?.checked_sub(1);
        let mut st = RewindState {
            fork,
            upto,
            ..RewindState::default()
        };
        let n = r.count(4)?;
        for _ in 0..n {
            st.files.insert(r.string()?);
        }
        let n = r.count(8)?;
        for _ in 0..n {
            let f = r.string()?;
            let id = r.bytes()?.to_vec();
            st.keys.insert((f, id));
        }
        r.end()?;
        Ok(st)
    }
}

impl Store {
    /// The rewind in progress, if any (as committed).
    pub fn rewind(&self) -> Result<Option<RewindState>, StoreError> {
        let txn = self.db.begin_read().map_err(redb_err("begin read"))?;
        let t = match txn.open_table(REWIND) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(redb_err("open rewind")(e)),
        };
        let Some(v) = t.get("state").map_err(redb_err("read rewind"))? else {
            return Ok(None);
        };
        RewindState::decode(v.value())
            .map(Some)
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }
}

impl Batch {
    /// Records (or replaces) the rewind state.
    pub fn set_rewind(&mut self, st: &RewindState) -> Result<(), StoreError> {
        let mut t = self
            .txn
            .open_table(REWIND)
            .map_err(redb_err("open rewind"))?;
        t.insert("state", st.encode().as_slice())
            .map_err(redb_err("write rewind"))?;
        Ok(())
    }

    pub fn clear_rewind(&mut self) -> Result<(), StoreError> {
        let mut t = self
            .txn
            .open_table(REWIND)
            .map_err(redb_err("open rewind"))?;
        t.remove("state").map_err(redb_err("clear rewind"))?;
        Ok(())
    }

    /// Forgets the generations that started after LSN `keep` (they belong to the exported
    /// divergent suffix). Returns the generation the node is at afterwards.
    pub fn rewind_history(&mut self, keep: Lsn) -> Result<u64, StoreError> {
        let mut gens = self
            .txn
            .open_table(GENERATIONS)
            .map_err(redb_err("open generations"))?;
        let mut drop_gens = Vec::new();
        let mut last: u64 = 1;
        for e in gens.iter().map_err(redb_err("read generations"))? {
            let (g, first) = e.map_err(redb_err("read generations"))?;
            if first.value() > keep {
                drop_gens.push(g.value());
            } else {
                last = last.max(g.value());
            }
        }
        for g in &drop_gens {
            gens.remove(g).map_err(redb_err("remove generation"))?;
        }
        drop(gens);
        let mut p = self
            .txn
            .open_table(PROMOTIONS)
            .map_err(redb_err("open promotions"))?;
        for g in &drop_gens {
            p.remove(g).map_err(redb_err("remove promotion"))?;
        }
        drop(p);
        let mut meta = self.txn.open_table(META).map_err(redb_err("open meta"))?;
        meta.insert("generation", &last.to_le_bytes()[..])
            .map_err(redb_err("write generation"))?;
        self.generation_reset = Some(last);
        Ok(last)
    }

    /// Repair of a whole file: `Some(logged)` makes it exist, empty, with that flag (its items
    /// follow through [`Batch::put_items`]); `None` makes it absent.
    pub fn repair_file(&mut self, file: &str, logged: Option<bool>) -> Result<(), StoreError> {
        if self.file_info(file).is_some() {
            self.delete_items(file, "clear file")?;
        }
        match logged {
            Some(logged) => self.set_catalog(
                file,
                Some(FileInfo {
                    logged,
                    created_lsn: self.lsn,
                }),
            ),
            None if self.file_info(file).is_some() => self.set_catalog(file, None),
            None => Ok(()),
        }
    }

    /// Repair of one item: its value at the master (`None`: absent there).
    pub fn repair_item(
        &mut self,
        file: &str,
        id: &[u8],
        raw: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        if self.file_info(file).is_none() {
            return Err(StoreError::Corrupt(format!(
                "repair of an item of file '{file}', which this node does not have"
            )));
        }
        match raw {
            Some(raw) => {
                if item::kind(raw).is_err() {
                    return Err(StoreError::Corrupt(format!(
                        "repair item of file '{file}' has an unknown type tag"
                    )));
                }
                self.put_raw(file, id, raw.to_vec())
            }
            None => self.remove_raw(file, id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::Value;

    #[test]
    fn state_round_trips_and_garbage_is_an_error() {
        let mut st = RewindState {
            fork: 1041,
            upto: Some(2000),
            ..Default::default()
        };
        st.note(&Op::Put {
            file: "main".into(),
            id: b"k".to_vec(),
            value: Value::Str(b"v".to_vec()),
        });
        st.note(&Op::DropFile { file: "tmp".into() });
        st.note(&Op::NewGeneration {
            generation: 2,
            first_lsn: 1041,
            node: vec![0; 16],
            name: "x".into(),
            time_ms: 1,
        });
        assert_eq!(RewindState::decode(&st.encode()), Ok(st.clone()));
        let b = st.encode();
        for n in 0..b.len() {
            assert!(RewindState::decode(&b[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn skips_only_repaired_items_up_to_the_repair_lsn() {
        let mut st = RewindState {
            fork: 10,
            upto: None,
            ..Default::default()
        };
        st.keys.insert(("main".into(), b"k".to_vec()));
        st.files.insert("tmp".into());
        let put = |file: &str, id: &[u8]| Op::Put {
            file: file.into(),
            id: id.to_vec(),
            value: Value::Str(b"v".to_vec()),
        };
        // Before the repair is complete nothing is skipped (no record may come then anyway).
        assert!(!st.skips(11, &put("main", b"k")));
        st.upto = Some(20);
        assert!(st.skips(11, &put("main", b"k")));
        assert!(st.skips(20, &put("main", b"k")));
        assert!(!st.skips(21, &put("main", b"k")));
        assert!(!st.skips(11, &put("main", b"other")));
        assert!(st.skips(11, &put("tmp", b"any")));
        assert!(st.skips(11, &Op::DropFile { file: "tmp".into() }));
        assert!(!st.skips(
            11,
            &Op::ClearFile {
                file: "main".into()
            }
        ));
    }
}
