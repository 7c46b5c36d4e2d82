//! Reading items: the same questions asked of a [`View`] (committed state) or of a [`Batch`]
//! (committed state plus this batch's own writes). A batch answers a point read from its write
//! buffer when it holds the item, and hands the buffer to redb before a count or a scan.
//! A point read asks the table of the item's part; a count adds the parts up; a scan merges
//! them in id order ([`super::parts`]).

use std::ops::ControlFlow;

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, TableError};

/// Visitor of (id, raw item) pairs; break to stop.
pub type ScanFn<'a> = dyn FnMut(&[u8], &[u8]) -> ControlFlow<()> + 'a;
type ItemTable = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;

use super::{Batch, FileInfo, StoreError, View, item_table, parts, redb_err};

/// Read access to items and the catalog.
pub trait Reader {
    /// Catalog entry of a file (None: the file does not exist).
    fn file_info(&self, file: &str) -> Option<FileInfo>;
    /// All files, sorted by name.
    fn files(&self) -> Vec<(String, FileInfo)>;
    /// The raw stored bytes of an item (see [`super::item`]).
    fn get_raw(&self, file: &str, id: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Number of items in a file.
    fn count(&self, file: &str) -> Result<u64, StoreError>;
    /// Calls `f(id, raw)` for items with id >= `start` in order until it breaks.
    fn scan_from(&self, file: &str, start: &[u8], f: &mut ScanFn<'_>) -> Result<(), StoreError>;

    fn exists(&self, file: &str, id: &[u8]) -> Result<bool, StoreError> {
        Ok(self.get_raw(file, id)?.is_some())
    }
}

fn get_in<T: ReadableTable<&'static [u8], &'static [u8]>>(
    t: &T,
    id: &[u8],
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(t.get(id)
        .map_err(redb_err("read"))?
        .map(|g| g.value().to_vec()))
}

/// Scans the parts of a file as one table: ids >= `start`, in order. An id lives in one part,
/// so the merge never meets the same id twice.
fn scan_in<T: ReadableTable<&'static [u8], &'static [u8]>>(
    tables: &[T],
    start: &[u8],
    f: &mut ScanFn<'_>,
) -> Result<(), StoreError> {
    if let [t] = tables {
        for entry in t.range(start..).map_err(redb_err("scan"))? {
            let (k, v) = entry.map_err(redb_err("scan"))?;
            if f(k.value(), v.value()).is_break() {
                break;
            }
        }
        return Ok(());
    }
    let mut ranges = Vec::with_capacity(tables.len());
    let mut heads = Vec::with_capacity(tables.len());
    for t in tables {
        let mut r = t.range(start..).map_err(redb_err("scan"))?;
        heads.push(r.next().transpose().map_err(redb_err("scan"))?);
        ranges.push(r);
    }
    loop {
        let mut least: Option<usize> = None;
        for (i, head) in heads.iter().enumerate() {
            let Some((k, _)) = head else { continue };
            let lower = match least.and_then(|l| heads[l].as_ref()) {
                Some((lk, _)) => k.value() < lk.value(),
                None => true,
            };
            if lower {
                least = Some(i);
            }
        }
        let Some(i) = least else {
            return Ok(());
        };
        if let Some((k, v)) = heads[i].take()
            && f(k.value(), v.value()).is_break()
        {
            return Ok(());
        }
        heads[i] = ranges[i].next().transpose().map_err(redb_err("scan"))?;
    }
}

impl View {
    /// The item table of part `part` of a file, None if it has none (yet).
    fn table(&self, file: &str, part: usize) -> Result<Option<ItemTable>, StoreError> {
        if !self.catalog.contains_key(file) {
            return Ok(None);
        }
        let name = parts::table_name(file, part);
        let def: TableDefinition<&[u8], &[u8]> = item_table(&name);
        match self.txn.open_table(def) {
            Ok(t) => Ok(Some(t)),
            Err(TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(redb_err("open file")(e)),
        }
    }

    /// The item tables that a file has.
    fn tables(&self, file: &str) -> Result<Vec<ItemTable>, StoreError> {
        let mut out = Vec::with_capacity(self.parts.count());
        for p in 0..self.parts.count() {
            out.extend(self.table(file, p)?);
        }
        Ok(out)
    }
}

impl Reader for View {
    fn file_info(&self, file: &str) -> Option<FileInfo> {
        self.catalog.get(file).copied()
    }
    fn files(&self) -> Vec<(String, FileInfo)> {
        self.catalog.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
    fn get_raw(&self, file: &str, id: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.table(file, self.parts.of(id))? {
            Some(t) => get_in(&t, id),
            None => Ok(None),
        }
    }
    fn count(&self, file: &str) -> Result<u64, StoreError> {
        let mut n = 0;
        for t in self.tables(file)? {
            n += t.len().map_err(redb_err("count"))?;
        }
        Ok(n)
    }
    fn scan_from(&self, file: &str, start: &[u8], f: &mut ScanFn<'_>) -> Result<(), StoreError> {
        scan_in(&self.tables(file)?, start, f)
    }
}

impl Reader for Batch {
    fn file_info(&self, file: &str) -> Option<FileInfo> {
        match self.overlay.get(file) {
            Some(o) => *o,
            None => self.base.get(file).copied(),
        }
    }
    fn files(&self) -> Vec<(String, FileInfo)> {
        let mut all = (*self.base).clone();
        for (k, v) in &self.overlay {
            match v {
                Some(i) => all.insert(k.clone(), *i),
                None => all.remove(k),
            };
        }
        all.into_iter().collect()
    }
    fn get_raw(&self, file: &str, id: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if self.file_info(file).is_none() {
            return Ok(None);
        }
        if let Some(buffered) = self.pending.borrow().get(file, id) {
            return Ok(buffered.map(<[u8]>::to_vec));
        }
        let name = parts::table_name(file, self.parts.of(id));
        let t = self
            .txn
            .open_table(item_table(&name))
            .map_err(redb_err("open file"))?;
        get_in(&t, id)
    }
    fn count(&self, file: &str) -> Result<u64, StoreError> {
        if self.file_info(file).is_none() {
            return Ok(0);
        }
        self.flush()?;
        let mut n = 0;
        for t in self.item_tables(file)? {
            n += t.len().map_err(redb_err("count"))?;
        }
        Ok(n)
    }
    fn scan_from(&self, file: &str, start: &[u8], f: &mut ScanFn<'_>) -> Result<(), StoreError> {
        if self.file_info(file).is_none() {
            return Ok(());
        }
        self.flush()?;
        scan_in(&self.item_tables(file)?, start, f)
    }
}

/// Either kind of reader, for code that reads from whichever is current.
pub enum Source<'a> {
    View(&'a View),
    Batch(&'a Batch),
}

impl Reader for Source<'_> {
    fn file_info(&self, file: &str) -> Option<FileInfo> {
        match self {
            Source::View(v) => v.file_info(file),
            Source::Batch(b) => b.file_info(file),
        }
    }
    fn files(&self) -> Vec<(String, FileInfo)> {
        match self {
            Source::View(v) => v.files(),
            Source::Batch(b) => b.files(),
        }
    }
    fn get_raw(&self, file: &str, id: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Source::View(v) => v.get_raw(file, id),
            Source::Batch(b) => b.get_raw(file, id),
        }
    }
    fn count(&self, file: &str) -> Result<u64, StoreError> {
        match self {
            Source::View(v) => v.count(file),
            Source::Batch(b) => b.count(file),
        }
    }
    fn scan_from(&self, file: &str, start: &[u8], f: &mut ScanFn<'_>) -> Result<(), StoreError> {
        match self {
            Source::View(v) => v.scan_from(file, start, f),
            Source::Batch(b) => b.scan_from(file, start, f),
        }
    }
}
