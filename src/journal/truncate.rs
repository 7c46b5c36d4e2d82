//! Cutting the journal back to an earlier LSN: how a rejoining node drops the records it holds
//! beyond the fork point (after exporting them to a lost-transactions tape).
//!
//! Done on a closed journal (the engine reopens it afterwards). Later segments are removed
//! newest first, so a crash leaves a journal that ends somewhere between the old end and the
//! new one, never one with a gap; the record at the new end is made the end of a group commit
//! (rewritten with the commit flag if it was inside a group), so recovery keeps it.

use std::path::Path;

use super::JournalError;
use super::format::{self, DbId, Lsn};
use super::fs::Fs;
use super::segment::{SegmentReader, Step, list_segments};

/// What [`truncate_after`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Truncated {
    pub segments_removed: usize,
    /// Bytes cut from the segment that now ends the journal.
    pub bytes_cut: u64,
}

fn io_err<'a>(
    path: &'a Path,
    op: &'static str,
) -> impl FnOnce(std::io::Error) -> JournalError + 'a {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// Removes every record with LSN > `keep` from the journal in `dir`. `keep` must be at least
/// the LSN before the journal's first record (then the journal is left empty).
pub fn truncate_after(
    dir: &Path,
    db_id: &DbId,
    keep: Lsn,
    fs: &dyn Fs,
) -> Result<Truncated, JournalError> {
    let segments = list_segments(dir).map_err(io_err(dir, "list segments"))?;
    let mut out = Truncated::default();
    if let Some(first) = segments.first() {
        if keep + 1 < first.first_lsn {
            return Err(JournalError::Corrupt {
                segment: first.path.clone(),
                offset: 0,
                lsn: Some(first.first_lsn),
                reason: format!(
                    "cannot cut the journal back to LSN {keep}: it starts at LSN {}",
                    first.first_lsn
                ),
            });
        }
    }
    // Whole segments past `keep`, newest first.
    for seg in segments.iter().rev().filter(|s| s.first_lsn > keep) {
        fs.remove(&seg.path)
            .map_err(io_err(&seg.path, "remove segment"))?;
        fs.sync_dir(dir).map_err(io_err(dir, "sync directory"))?;
        out.segments_removed += 1;
    }
    let Some(last) = segments.iter().rev().find(|s| s.first_lsn <= keep) else {
        return Ok(out);
    };
    let path = &last.path;
    let mut reader = match SegmentReader::open(path).map_err(io_err(path, "open"))? {
        Ok(r) => r,
        Err(d) => {
            return Err(JournalError::Corrupt {
                segment: path.clone(),
                offset: 0,
                lsn: None,
                reason: d.to_string(),
            });
        }
    };
    if &reader.header.db_id != db_id {
        return Err(JournalError::WrongDatabase {
            segment: path.clone(),
        });
    }
    let mut group_first = reader.next_lsn;
    loop {
        match reader.step().map_err(io_err(path, "read"))? {
            Step::Record(rec) => {
                let end = reader.offset;
                if rec.lsn < keep {
                    if rec.group_first.is_some() {
                        group_first = rec.lsn + 1;
                    }
                    continue;
                }
                // rec.lsn == keep: the new end.
                let mut f = fs
                    .open_write(path)
                    .map_err(io_err(path, "open for writing"))?;
                let new_len = if rec.group_first.is_some() {
                    end
                } else {
                    let mut buf = Vec::with_capacity(format::record_len(rec.payload.len()) + 8);
                    format::encode_record(&mut buf, rec.lsn, rec.generation, &rec.payload);
                    format::mark_commit(&mut buf, 0, group_first);
                    f.write_at(rec.offset, &buf)
                        .map_err(io_err(path, "rewrite the last record"))?;
                    rec.offset + buf.len() as u64
                };
                out.bytes_cut = reader.file_len.saturating_sub(new_len);
                f.set_len(new_len).map_err(io_err(path, "truncate"))?;
                f.sync_data()
                    .map_err(io_err(path, "sync after truncation"))?;
                return Ok(out);
            }
            Step::End | Step::Zeros { .. } | Step::Damaged { .. } => {
                // The journal ends at or before `keep`: nothing to cut (a torn tail after it
                // is recovery's business).
                if keep + 1 >= reader.next_lsn {
                    return Ok(out);
                }
                return Err(JournalError::Corrupt {
                    segment: path.clone(),
                    offset: reader.offset,
                    lsn: Some(reader.next_lsn),
                    reason: format!(
                        "cannot cut the journal back to LSN {keep}: the segment ends before it"
                    ),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::journal::fs::RealFs;
    use crate::journal::{Journal, JournalOptions, JournalReader, SyncMode};

    const DB: DbId = [7; 16];

    fn opts() -> JournalOptions {
        JournalOptions {
            sync: SyncMode::None,
            segment_size: 4096,
        }
    }

    /// Writes `groups` group commits of `per` records each; returns the last LSN.
    fn write(dir: &Path, groups: u64, per: u64) -> Lsn {
        let (mut j, _) = Journal::open(dir, DB, 1, opts(), Arc::new(RealFs)).unwrap();
        for g in 0..groups {
            for i in 0..per {
                j.append(1, format!("record {g}.{i} {}", "x".repeat(100)).as_bytes());
            }
            j.commit().unwrap();
        }
        j.sync_now().unwrap();
        j.written_lsn()
    }

    fn lsns(dir: &Path) -> Vec<Lsn> {
        let mut r = JournalReader::open(dir, 1, None).unwrap();
        let mut v = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            v.push(rec.lsn);
        }
        v
    }

    #[test]
    fn cuts_inside_a_group_and_across_segments_and_recovery_keeps_the_new_end() {
        let tmp = tempfile::tempdir().unwrap();
        let last = write(tmp.path(), 40, 3);
        assert_eq!(last, 120);
        let before = list_segments(tmp.path()).unwrap().len();
        assert!(before > 3, "the test needs several segments: {before}");
        // 50 is the middle record of a group (49..=51).
        let t = truncate_after(tmp.path(), &DB, 50, &RealFs).unwrap();
        assert!(t.segments_removed > 0);
        let (j, rec) = Journal::open(tmp.path(), DB, 1, opts(), Arc::new(RealFs)).unwrap();
        assert!(rec.truncated.is_none(), "nothing left for recovery to cut");
        assert_eq!(j.next_lsn(), 51);
        drop(j);
        assert_eq!(lsns(tmp.path()), (1..=50).collect::<Vec<_>>());
    }

    #[test]
    fn appending_after_a_cut_goes_on_from_the_new_end() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), 10, 2);
        truncate_after(tmp.path(), &DB, 12, &RealFs).unwrap();
        let (mut j, _) = Journal::open(tmp.path(), DB, 1, opts(), Arc::new(RealFs)).unwrap();
        assert_eq!(j.append(2, b"new"), 13);
        j.commit().unwrap();
        j.sync_now().unwrap();
        drop(j);
        assert_eq!(lsns(tmp.path()), (1..=13).collect::<Vec<_>>());
    }

    #[test]
    fn cutting_at_the_end_changes_nothing_and_before_the_start_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), 3, 2);
        let t = truncate_after(tmp.path(), &DB, 6, &RealFs).unwrap();
        assert_eq!(t.segments_removed, 0);
        assert_eq!(lsns(tmp.path()), (1..=6).collect::<Vec<_>>());
        // Cutting beyond the end changes nothing either.
        truncate_after(tmp.path(), &DB, 60, &RealFs).unwrap();
        assert_eq!(lsns(tmp.path()), (1..=6).collect::<Vec<_>>());
        // Cutting to "before the first record" empties the journal.
        truncate_after(tmp.path(), &DB, 0, &RealFs).unwrap();
        let (j, _) = Journal::open(tmp.path(), DB, 1, opts(), Arc::new(RealFs)).unwrap();
        assert_eq!(j.next_lsn(), 1);
        drop(j);
        let tmp2 = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(tmp2.path(), DB, 100, opts(), Arc::new(RealFs)).unwrap();
        j.append(1, b"a");
        j.commit().unwrap();
        j.sync_now().unwrap();
        drop(j);
        assert!(truncate_after(tmp2.path(), &DB, 50, &RealFs).is_err());
    }
}
