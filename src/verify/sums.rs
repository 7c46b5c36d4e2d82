//! Order-independent checksums of the logged files at one LSN, and the narrowing of a
//! mismatch down to items.
//!
//! Each item hashes to 128 bits (SHA-256 of its id and stored bytes, truncated); a file's sum is
//! the wrapping sum of its items' hashes, so two copies that hold the same items agree however
//! their B-trees are laid out. Each item also falls in one of [`BUCKETS`] buckets by its id
//! alone (the value does not move it), with a 64-bit sum per bucket: two copies that disagree
//! disagree in a few buckets, and only those buckets' (id, hash) lists cross the link to name
//! the differing items.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use sha2::{Digest, Sha256};

use crate::codec::{MsgError, Reader, Writer};
use crate::store::Reader as StoreReader;
use crate::store::StoreError;

/// Buckets per file.
pub const BUCKETS: usize = 256;
/// Differing buckets of one file that are narrowed to items; past this only counts are given.
pub const MAX_NARROW_BUCKETS: usize = 32;
/// Differing items named per file.
pub const MAX_ITEMS_SHOWN: usize = 100;

/// The checksum of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSum {
    pub items: u64,
    pub sum: u128,
    pub buckets: Vec<u64>,
}

impl Default for FileSum {
    fn default() -> Self {
        FileSum {
            items: 0,
            sum: 0,
            buckets: vec![0; BUCKETS],
        }
    }
}

/// The checksums of all logged files of a copy, by file name.
pub type Sums = BTreeMap<String, FileSum>;

/// The 128-bit hash of an item.
pub fn item_hash(id: &[u8], raw: &[u8]) -> u128 {
    let mut h = Sha256::new();
    h.update((id.len() as u32).to_le_bytes());
    h.update(id);
    h.update(raw);
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    u128::from_le_bytes(b)
}

/// The bucket of an item id.
pub fn bucket_of(id: &[u8]) -> usize {
    (crc32c::crc32c(id) & 0xff) as usize
}

impl FileSum {
    pub fn add(&mut self, id: &[u8], raw: &[u8]) {
        let h = item_hash(id, raw);
        self.items += 1;
        self.sum = self.sum.wrapping_add(h);
        let b = &mut self.buckets[bucket_of(id)];
        *b = b.wrapping_add(h as u64);
    }
}

/// Checksums of every logged file a reader holds.
pub fn compute(r: &dyn StoreReader) -> Result<Sums, StoreError> {
    let mut out = Sums::new();
    for (file, info) in r.files() {
        if !info.logged {
            continue;
        }
        let mut s = FileSum::default();
        r.scan_from(&file, b"", &mut |id, raw| {
            s.add(id, raw);
            ControlFlow::Continue(())
        })?;
        out.insert(file, s);
    }
    Ok(out)
}

/// (id, hash) of every item of `file` in the given buckets, sorted by id.
pub fn bucket_items(
    r: &dyn StoreReader,
    file: &str,
    buckets: &[u16],
) -> Result<Vec<(Vec<u8>, u128)>, StoreError> {
    let mut want = [false; BUCKETS];
    for &b in buckets {
        if let Some(w) = want.get_mut(b as usize) {
            *w = true;
        }
    }
    let mut out = Vec::new();
    r.scan_from(file, b"", &mut |id, raw| {
        if want[bucket_of(id)] {
            out.push((id.to_vec(), item_hash(id, raw)));
        }
        ControlFlow::Continue(())
    })?;
    Ok(out)
}

/// How one file compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileVerdict {
    Match {
        items: u64,
    },
    /// Present upstream only.
    Missing {
        items: u64,
    },
    /// Present here only.
    Extra {
        items: u64,
    },
    Differs {
        upstream_items: u64,
        local_items: u64,
        /// Buckets whose sums differ.
        buckets: Vec<u16>,
    },
}

/// Compares a slave's sums (`local`) with its upstream's (`upstream`), file by file.
pub fn compare(upstream: &Sums, local: &Sums) -> BTreeMap<String, FileVerdict> {
    let mut out = BTreeMap::new();
    for (file, u) in upstream {
        let v = match local.get(file) {
            None => FileVerdict::Missing { items: u.items },
            Some(l) if l == u => FileVerdict::Match { items: u.items },
            Some(l) => FileVerdict::Differs {
                upstream_items: u.items,
                local_items: l.items,
                buckets: (0..BUCKETS)
                    .filter(|&i| u.buckets.get(i) != l.buckets.get(i))
                    .map(|i| i as u16)
                    .collect(),
            },
        };
        out.insert(file.clone(), v);
    }
    for (file, l) in local {
        if !upstream.contains_key(file) {
            out.insert(file.clone(), FileVerdict::Extra { items: l.items });
        }
    }
    out
}

/// One item that differs between the two copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemDiff {
    /// Upstream has it, this copy does not.
    Missing(Vec<u8>),
    /// This copy has it, upstream does not.
    Extra(Vec<u8>),
    /// Both have it with different values.
    Value(Vec<u8>),
}

impl ItemDiff {
    pub fn id(&self) -> &[u8] {
        match self {
            ItemDiff::Missing(k) | ItemDiff::Extra(k) | ItemDiff::Value(k) => k,
        }
    }
    pub fn what(&self) -> &'static str {
        match self {
            ItemDiff::Missing(_) => "missing on the slave",
            ItemDiff::Extra(_) => "only on the slave",
            ItemDiff::Value(_) => "value differs",
        }
    }
}

/// The differing items of two sorted (id, hash) lists.
pub fn diff_items(upstream: &[(Vec<u8>, u128)], local: &[(Vec<u8>, u128)]) -> Vec<ItemDiff> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < upstream.len() || j < local.len() {
        match (upstream.get(i), local.get(j)) {
            (Some(u), Some(l)) if u.0 == l.0 => {
                if u.1 != l.1 {
                    out.push(ItemDiff::Value(u.0.clone()));
                }
                i += 1;
                j += 1;
            }
            (Some(u), Some(l)) if u.0 < l.0 => {
                out.push(ItemDiff::Missing(u.0.clone()));
                i += 1;
            }
            (Some(_), Some(l)) => {
                out.push(ItemDiff::Extra(l.0.clone()));
                j += 1;
            }
            (Some(u), None) => {
                out.push(ItemDiff::Missing(u.0.clone()));
                i += 1;
            }
            (None, Some(l)) => {
                out.push(ItemDiff::Extra(l.0.clone()));
                j += 1;
            }
            (None, None) => break,
        }
    }
    out
}

pub fn put_sums(w: &mut Writer, s: &Sums) {
    w.u32(s.len() as u32);
    for (file, f) in s {
        w.bytes(file.as_bytes()).u64(f.items);
        w.raw(&f.sum.to_le_bytes());
        for b in &f.buckets {
            w.u64(*b);
        }
    }
}

pub fn get_sums(r: &mut Reader<'_>) -> Result<Sums, MsgError> {
    let n = r.count(4 + 8 + 16 + 8 * BUCKETS)?;
    let mut out = Sums::new();
    for _ in 0..n {
        let file = r.string()?;
        let items = r.u64()?;
        let lo = r.u64()? as u128;
        let hi = r.u64()? as u128;
        let mut buckets = Vec::with_capacity(BUCKETS);
        for _ in 0..BUCKETS {
            buckets.push(r.u64()?);
        }
        out.insert(
            file,
            FileSum {
                items,
                sum: lo | (hi << 64),
                buckets,
            },
        );
    }
    Ok(out)
}

pub fn put_item_hashes(w: &mut Writer, items: &[(Vec<u8>, u128)]) {
    w.u32(items.len() as u32);
    for (id, h) in items {
        w.bytes(id);
        w.raw(&h.to_le_bytes());
    }
}

pub fn get_item_hashes(r: &mut Reader<'_>) -> Result<Vec<(Vec<u8>, u128)>, MsgError> {
    let n = r.count(4 + 16)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let id = r.bytes()?.to_vec();
        let lo = r.u64()? as u128;
        let hi = r.u64()? as u128;
        out.push((id, lo | (hi << 64)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sums(items: &[(&str, &str)]) -> FileSum {
        let mut s = FileSum::default();
        for (k, v) in items {
            s.add(k.as_bytes(), v.as_bytes());
        }
        s
    }

    #[test]
    fn a_file_sum_does_not_depend_on_item_order() {
        let a = sums(&[("a", "1"), ("b", "2"), ("c", "3")]);
        let b = sums(&[("c", "3"), ("a", "1"), ("b", "2")]);
        assert_eq!(a, b);
        assert_ne!(a, sums(&[("a", "1"), ("b", "2"), ("c", "4")]));
        // Moving a value to another id changes the sum.
        assert_ne!(
            sums(&[("a", "1"), ("b", "2")]),
            sums(&[("a", "2"), ("b", "1")])
        );
    }

    #[test]
    fn compare_names_the_buckets_of_a_changed_item_only() {
        let mut up = Sums::new();
        let mut local = Sums::new();
        let base: Vec<(String, String)> = (0..1000)
            .map(|i| (format!("k{i}"), format!("v{i}")))
            .collect();
        let mut u = FileSum::default();
        let mut l = FileSum::default();
        for (k, v) in &base {
            u.add(k.as_bytes(), v.as_bytes());
            let v = if k == "k42" { "tampered" } else { v.as_str() };
            l.add(k.as_bytes(), v.as_bytes());
        }
        up.insert("main".into(), u.clone());
        local.insert("main".into(), l);
        up.insert("other".into(), sums(&[("x", "1")]));
        local.insert("other".into(), sums(&[("x", "1")]));
        up.insert("gone".into(), sums(&[("y", "1")]));
        local.insert("new".into(), sums(&[("z", "1")]));
        let v = compare(&up, &local);
        assert_eq!(v["other"], FileVerdict::Match { items: 1 });
        assert_eq!(v["gone"], FileVerdict::Missing { items: 1 });
        assert_eq!(v["new"], FileVerdict::Extra { items: 1 });
        match &v["main"] {
            FileVerdict::Differs { buckets, .. } => {
                assert_eq!(buckets, &vec![bucket_of(b"k42") as u16]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn diff_items_finds_missing_extra_and_changed_items() {
        let h = |s: &str| item_hash(s.as_bytes(), b"v");
        let up = vec![
            (b"a".to_vec(), h("a")),
            (b"b".to_vec(), h("b")),
            (b"d".to_vec(), h("d")),
        ];
        let local = vec![
            (b"a".to_vec(), h("a")),
            (b"b".to_vec(), h("x")),
            (b"c".to_vec(), h("c")),
        ];
        assert_eq!(
            diff_items(&up, &local),
            vec![
                ItemDiff::Value(b"b".to_vec()),
                ItemDiff::Extra(b"c".to_vec()),
                ItemDiff::Missing(b"d".to_vec()),
            ]
        );
        assert!(diff_items(&up, &up).is_empty());
    }

    #[test]
    fn sums_and_item_hashes_survive_encoding_and_reject_truncation() {
        let mut s = Sums::new();
        s.insert("main".into(), sums(&[("a", "1"), ("b", "2")]));
        s.insert("acct/x".into(), sums(&[]));
        let mut w = Writer::default();
        put_sums(&mut w, &s);
        let bytes = w.0;
        let mut r = Reader::new(&bytes, "sums");
        assert_eq!(get_sums(&mut r).unwrap(), s);
        r.end().unwrap();
        for cut in [0, 3, 10, bytes.len() - 1] {
            let mut r = Reader::new(&bytes[..cut], "sums");
            assert!(get_sums(&mut r).is_err(), "cut at {cut}");
        }
        let items = vec![(b"k1".to_vec(), 7u128 << 70 | 5), (b"k2".to_vec(), 9)];
        let mut w = Writer::default();
        put_item_hashes(&mut w, &items);
        let mut r = Reader::new(&w.0, "items");
        assert_eq!(get_item_hashes(&mut r).unwrap(), items);
    }
}
