//! Filling a batch's item tables from several threads at once: a full sync's load.
//!
//! redb changes the file through one write transaction at a time, but the tables of that
//! transaction can be written by threads of their own. A [`Filler`] writes the parts
//! ([`super::parts`]) given to it: filler `turn` of `of` takes the parts `p` with
//! `p % of == turn`. The fillers of one batch take disjoint parts, so no table is open twice;
//! each is handed every chunk and writes only its own items. They borrow the batch, so it
//! cannot be committed, nor written otherwise, until they are gone.
//!
//! Checked before the items are handed out: the file exists and every item has a known type
//! ([`Batch::check_items`]), as [`Batch::put_item_slices`] checks them.

use super::{Batch, ItemTableMut, Parts, StoreError, item, item_table, parts, redb_err};

/// Writes its share of the parts of the items it is given.
pub struct Filler<'b> {
    txn: &'b redb::WriteTransaction,
    parts: Parts,
    turn: usize,
    of: usize,
    /// The file whose tables are open, and its tables of this filler's parts (part
    /// `turn + i * of` at `i`).
    open: Option<(String, Vec<ItemTableMut<'b>>)>,
}

impl Filler<'_> {
    /// Writes those of `items` (of an existing file, checked) that live in this filler's parts.
    pub fn put<'a>(
        &mut self,
        file: &str,
        items: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Result<(), StoreError> {
        if self.open.as_ref().is_none_or(|(f, _)| f != file) {
            // A file's tables close before the next file's open.
            self.open = None;
            let mut tables = Vec::new();
            for p in (self.turn..self.parts.count()).step_by(self.of) {
                let name = parts::table_name(file, p);
                tables.push(
                    self.txn
                        .open_table(item_table(&name))
                        .map_err(redb_err("open file"))?,
                );
            }
            self.open = Some((file.to_string(), tables));
        }
        let Some((_, tables)) = self.open.as_mut() else {
            return Ok(());
        };
        for (id, raw) in items {
            let p = self.parts.of(id);
            if p % self.of != self.turn {
                continue;
            }
            if let Some(t) = tables.get_mut(p / self.of) {
                t.insert(id, raw).map_err(redb_err("write"))?;
            }
        }
        Ok(())
    }
}

impl Batch {
    /// Parts of each file in this store: the most fillers that can work at once.
    pub fn parts(&self) -> usize {
        self.parts.count()
    }

    /// Filler `turn` of `of` (`of` is clamped to 1..=[`Batch::parts`], `turn` must be below
    /// it). Buffered writes of the batch are handed to redb first.
    pub fn filler(&self, turn: usize, of: usize) -> Result<Filler<'_>, StoreError> {
        let of = of.clamp(1, self.parts.count());
        if turn >= of {
            return Err(StoreError::Corrupt(format!(
                "filler {turn} of {of} does not exist"
            )));
        }
        self.flush()?;
        Ok(Filler {
            txn: &self.txn,
            parts: self.parts,
            turn,
            of,
            open: None,
        })
    }

    /// Err unless `file` exists and every item's stored value has a known type tag.
    pub fn check_items<'a>(
        &self,
        file: &str,
        mut items: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Result<(), StoreError> {
        self.require_file(file)?;
        if items.any(|(_, raw)| item::kind(raw).is_err()) {
            return Err(StoreError::Corrupt(format!(
                "full sync item of file '{file}' has an unknown type tag"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{apply_all, create, ids};
    use super::super::*;

    #[test]
    fn fillers_on_threads_of_their_own_write_every_item_once() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = StoreOptions {
            parts: Parts::new(3).unwrap(),
            ..StoreOptions::default()
        };
        let mut st = Store::open(&tmp.path().join("store.redb"), &opts).unwrap();
        apply_all(&mut st, 1, &[create("main"), create("aux")]);
        let items: Vec<(Vec<u8>, Vec<u8>)> = (0..3000)
            .map(|i| (format!("k{i:05}").into_bytes(), item::encode_str(b"v")))
            .collect();
        let chunks: Vec<&[(Vec<u8>, Vec<u8>)]> = items.chunks(250).collect();
        for of in [1, 2, 3, 5] {
            let b = st.begin().unwrap();
            b.check_items("main", items.iter().map(|(k, v)| (&k[..], &v[..])))
                .unwrap();
            std::thread::scope(|s| {
                for turn in 0..of.min(b.parts()) {
                    let mut f = b.filler(turn, of).unwrap();
                    let chunks = &chunks;
                    s.spawn(move || {
                        for (i, c) in chunks.iter().enumerate() {
                            // Two files, alternating: each keeps its own tables.
                            let file = if i % 2 == 0 { "main" } else { "aux" };
                            f.put(file, c.iter().map(|(k, v)| (&k[..], &v[..])))
                                .unwrap();
                        }
                    });
                }
            });
            st.commit(b, 2).unwrap();
            let v = st.view().unwrap();
            let want = |file: &str| -> Vec<String> {
                chunks
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| (*i % 2 == 0) == (file == "main"))
                    .flat_map(|(_, c)| c.iter())
                    .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
                    .collect()
            };
            assert_eq!(ids(&v, "main"), want("main"), "{of} fillers");
            assert_eq!(ids(&v, "aux"), want("aux"), "{of} fillers");
            drop(v);
            apply_all(
                &mut st,
                3,
                &[
                    Op::ClearFile {
                        file: "main".into(),
                    },
                    Op::ClearFile { file: "aux".into() },
                ],
            );
        }
    }

    #[test]
    fn items_of_a_missing_file_or_of_an_unknown_type_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let mut st = Store::open(&tmp.path().join("store.redb"), &StoreOptions::default()).unwrap();
        apply_all(&mut st, 1, &[create("main")]);
        let b = st.begin().unwrap();
        let good = item::encode_str(b"v");
        let e = b
            .check_items("nope", [(&b"a"[..], &good[..])].into_iter())
            .unwrap_err();
        assert!(e.to_string().contains("'nope' does not exist"), "{e}");
        let e = b
            .check_items("main", [(&b"a"[..], &[0xEE, 1][..])].into_iter())
            .unwrap_err();
        assert!(e.to_string().contains("unknown type tag"), "{e}");
        assert!(b.filler(2, 2).is_err());
    }
}
