//! The write buffer of a [`super::Batch`]: item writes not yet in redb, kept in key order.
//!
//! A random write into a large redb table walks the B-tree from the root. Buffering a turn's
//! item writes (a slave catching up applies tens of thousands of records in one turn) and
//! handing them to redb sorted, per file, at the end of the turn (or when the buffer is full, or
//! a read needs the table) turns that into one ordered pass: hot branch pages, neighbouring
//! leaves, one table open per file, and only the last of several writes of one item. The engine
//! flushes before the turn's journal write, so a store failure (a full disk) fails the turn
//! instead of a later commit of acknowledged writes.
//! Point reads are answered from the buffer first; everything else flushes it (see
//! [`super::read`]).

use std::collections::HashMap;

/// Rough heap cost of one buffered entry beside its bytes (two Vecs and a hash slot).
const ENTRY_OVERHEAD: usize = 64;

type Items = HashMap<Vec<u8>, Option<Vec<u8>>>;
/// One file's buffered writes in id order, as [`Pending::take`] hands them out.
pub(super) type SortedWrites = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// Buffered item writes: file -> id -> raw item (None: removed). Hashed, not ordered: a write
/// costs one lookup; the order is made once, by [`Pending::take`].
#[derive(Default)]
pub(super) struct Pending {
    files: HashMap<String, Items>,
    bytes: usize,
}

impl Pending {
    /// Buffers a write of an item (None: its removal); the latest write of an id wins.
    pub(super) fn put(&mut self, file: &str, id: &[u8], raw: Option<Vec<u8>>) {
        let len = raw.as_ref().map_or(0, Vec::len);
        let items = match self.files.get_mut(file) {
            Some(m) => m,
            None => self.files.entry(file.to_string()).or_default(),
        };
        match items.get_mut(id) {
            Some(slot) => {
                let old = slot.as_ref().map_or(0, Vec::len);
                self.bytes = self.bytes.saturating_sub(old) + len;
                *slot = raw;
            }
            None => {
                self.bytes += ENTRY_OVERHEAD + id.len() + len;
                items.insert(id.to_vec(), raw);
            }
        }
    }

    /// What the buffer says of an item: None = nothing buffered (ask redb), Some(None) =
    /// removed, Some(Some(raw)) = its value.
    pub(super) fn get(&self, file: &str, id: &[u8]) -> Option<Option<&[u8]>> {
        self.files
            .get(file)
            .and_then(|m| m.get(id))
            .map(|v| v.as_deref())
    }

    /// Forgets the buffered writes of one file (it is being dropped or cleared).
    pub(super) fn discard_file(&mut self, file: &str) {
        if let Some(items) = self.files.remove(file) {
            let freed: usize = items
                .iter()
                .map(|(id, v)| ENTRY_OVERHEAD + id.len() + v.as_ref().map_or(0, Vec::len))
                .sum();
            self.bytes = self.bytes.saturating_sub(freed);
        }
    }

    /// Approximate heap bytes held.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(super) fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Empties the buffer, handing out its writes per file (files in name order, each file's
    /// writes in id order).
    pub(super) fn take(&mut self) -> Vec<(String, SortedWrites)> {
        self.bytes = 0;
        let mut files: Vec<(String, SortedWrites)> = self
            .files
            .drain()
            .map(|(file, items)| {
                let mut items: SortedWrites = items.into_iter().collect();
                items.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                (file, items)
            })
            .collect();
        files.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        files
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_write_of_an_item_wins_and_reads_see_it() {
        let mut p = Pending::default();
        assert_eq!(p.get("f", b"a"), None);
        p.put("f", b"a", Some(b"1".to_vec()));
        p.put("f", b"a", Some(b"22".to_vec()));
        assert_eq!(p.get("f", b"a"), Some(Some(&b"22"[..])));
        p.put("f", b"a", None);
        assert_eq!(p.get("f", b"a"), Some(None));
        assert_eq!(p.get("g", b"a"), None);
    }

    #[test]
    fn writes_come_out_per_file_in_key_order() {
        let mut p = Pending::default();
        for id in [&b"c"[..], b"a", b"b"] {
            p.put("f2", id, Some(id.to_vec()));
            p.put("f1", id, None);
        }
        let out = p.take();
        assert!(p.is_empty());
        assert_eq!(p.bytes(), 0);
        let files: Vec<&str> = out.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(files, ["f1", "f2"]);
        let ids: Vec<&[u8]> = out[1].1.iter().map(|(id, _)| id.as_slice()).collect();
        assert_eq!(ids, [&b"a"[..], b"b", b"c"]);
    }

    #[test]
    fn the_byte_count_follows_puts_and_discards() {
        let mut p = Pending::default();
        p.put("f", b"id", Some(vec![0u8; 100]));
        let one = p.bytes();
        assert_eq!(one, ENTRY_OVERHEAD + 2 + 100);
        p.put("f", b"id", Some(vec![0u8; 10]));
        assert_eq!(p.bytes(), ENTRY_OVERHEAD + 2 + 10);
        p.put("g", b"id", None);
        p.discard_file("f");
        assert_eq!(p.bytes(), ENTRY_OVERHEAD + 2);
        assert_eq!(p.get("f", b"id"), None);
    }
}
