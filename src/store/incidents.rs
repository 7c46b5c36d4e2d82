//! A node's incident list in its store (`hb.incidents`: id → incident), bounded to the last
//! [`crate::incident::KEEP`]. Local bookkeeping, like the slots: not journaled, not replicated.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::{Batch, Store, StoreError, redb_err};
use crate::incident::{Incident, KEEP};

const INCIDENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("hb.incidents");

impl Store {
    /// The incidents kept, oldest first (undecodable entries are skipped).
    pub fn incidents(&self) -> Result<Vec<Incident>, StoreError> {
        let txn = self.db.begin_read().map_err(redb_err("begin read"))?;
        let t = match txn.open_table(INCIDENTS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(redb_err("open incidents")(e)),
        };
        let mut out = Vec::new();
        for e in t.iter().map_err(redb_err("read incidents"))? {
            let (_, v) = e.map_err(redb_err("read incidents"))?;
            if let Ok(i) = Incident::decode(v.value()) {
                out.push(i);
            }
        }
        Ok(out)
    }
}

impl Batch {
    /// Adds incidents, dropping the oldest beyond [`KEEP`].
    pub fn save_incidents(&mut self, list: &[Incident]) -> Result<(), StoreError> {
        let Some(last) = list.iter().map(|i| i.id).max() else {
            return Ok(());
        };
        let mut t = self
            .txn
            .open_table(INCIDENTS)
            .map_err(redb_err("open incidents"))?;
        for i in list {
            t.insert(i.id, i.encode().as_slice())
                .map_err(redb_err("write incident"))?;
        }
        let floor = last.saturating_sub(KEEP as u64);
        if floor > 0 {
            t.retain_in(..=floor, |_, _| false)
                .map_err(redb_err("trim incidents"))?;
        }
        Ok(())
    }
}
