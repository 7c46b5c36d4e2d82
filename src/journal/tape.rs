//! Tapes: journal records in a file of their own, to carry between nodes (D3's tapes).
//!
//! A tape is a file in exactly the format of a journal segment ([`super::format`]): the 48-byte
//! segment header with the database id and the first LSN, then records, each its own group
//! commit (commit flag and trailer). So `hotbackup journal dump FILE` and `journal check FILE`
//! read tapes, an archived segment is a tape, and a tape is read by the same
//! [`SegmentReader`] as the journal. This module owns writing a tape ([`TapeWriter`]: to
//! `FILE.tmp`, then fsync, rename, fsync of the directory, so a tape either exists whole or not
//! at all) and reading one strictly ([`TapeReader`], [`read_tape`]): LSNs must follow each
//! other, generations never decrease, and a tape that ends inside a record or a group commit is
//! truncated — an error, never a shorter tape. It never touches a journal directory: loading a
//! tape into a node is `crate::ops::tape_cmd`'s business.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read as _, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::format::{self, DbId, HEADER_LEN, HeaderError, Lsn, RecordError, SegmentHeader};
use super::segment::{Damage, Record, SegmentReader, Step};

#[derive(Debug, Error)]
pub enum TapeError {
    #[error("tape {}: cannot {op}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    #[error("{} is not a hotbackup tape or journal segment: {why}", path.display())]
    NotATape { path: PathBuf, why: String },
    #[error("tape {} is truncated at offset {offset}: {why}", path.display())]
    Truncated {
        path: PathBuf,
        offset: u64,
        why: String,
    },
    #[error(
        "tape {} is corrupt at offset {offset}{}: {why}",
        path.display(),
        lsn.map(|l| format!(" (at LSN {l})")).unwrap_or_default()
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        lsn: Option<Lsn>,
        why: String,
    },
    #[error(
        "tape {} has a gap: LSN {found} where {expected} was expected",
        path.display()
    )]
    Gap {
        path: PathBuf,
        expected: Lsn,
        found: Lsn,
    },
    #[error(
        "tape {}: LSN {lsn} has generation {generation}, below the {previous} of the record before it",
        path.display()
    )]
    GenerationBackwards {
        path: PathBuf,
        lsn: Lsn,
        generation: u64,
        previous: u64,
    },
    #[error("tape {}: a tape cannot start at LSN 0", path.display())]
    ZeroLsn { path: PathBuf },
}

impl TapeError {
    fn io(path: &Path, op: &'static str) -> impl FnOnce(io::Error) -> TapeError {
        let path = path.to_path_buf();
        move |source| TapeError::Io { path, op, source }
    }
}

/// What a finished tape holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapeSummary {
    pub path: PathBuf,
    pub first_lsn: Lsn,
    /// None for a tape without records.
    pub last_lsn: Option<Lsn>,
    pub records: u64,
    /// File size.
    pub bytes: u64,
    /// Generations of the first and the last record ((0, 0) for a tape without records).
    pub generations: (u64, u64),
}

/// Writes a tape: records in LSN order, each its own group commit.
pub struct TapeWriter {
    path: PathBuf,
    tmp: PathBuf,
    /// None once finished (or failed).
    file: Option<BufWriter<File>>,
    first_lsn: Lsn,
    next_lsn: Lsn,
    generations: Option<(u64, u64)>,
    records: u64,
    bytes: u64,
    buf: Vec<u8>,
}

/// `path` + ".tmp".
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

impl TapeWriter {
    /// Writes to `path` + ".tmp"; [`TapeWriter::finish`] fsyncs, renames to `path` (replacing
    /// a file of that name) and fsyncs the directory. Dropped unfinished, the temporary file
    /// is removed.
    pub fn create(path: &Path, db_id: DbId, first_lsn: Lsn) -> Result<TapeWriter, TapeError> {
        if first_lsn == 0 {
            return Err(TapeError::ZeroLsn {
                path: path.to_path_buf(),
            });
        }
        let tmp = tmp_path(path);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(TapeError::io(&tmp, "create"))?;
        let mut w = TapeWriter {
            path: path.to_path_buf(),
            tmp,
            file: Some(BufWriter::with_capacity(256 << 10, file)),
            first_lsn,
            next_lsn: first_lsn,
            generations: None,
            records: 0,
            bytes: HEADER_LEN as u64,
            buf: Vec::new(),
        };
        let header = SegmentHeader { first_lsn, db_id }.encode();
        w.write(&header)?;
        Ok(w)
    }

    fn write(&mut self, b: &[u8]) -> Result<(), TapeError> {
        let Some(f) = self.file.as_mut() else {
            return Err(TapeError::Io {
                path: self.tmp.clone(),
                op: "write",
                source: io::Error::other("the tape writer failed earlier"),
            });
        };
        if let Err(e) = f.write_all(b) {
            self.file = None;
            return Err(TapeError::io(&self.tmp, "write")(e));
        }
        Ok(())
    }

    /// Appends one record: it must have exactly the next LSN, and a generation not below the
    /// previous record's.
    pub fn append(&mut self, lsn: Lsn, generation: u64, payload: &[u8]) -> Result<(), TapeError> {
        if lsn != self.next_lsn {
            return Err(TapeError::Gap {
                path: self.path.clone(),
                expected: self.next_lsn,
                found: lsn,
            });
        }
        if let Some((_, last)) = self.generations {
            if generation < last {
                return Err(TapeError::GenerationBackwards {
                    path: self.path.clone(),
                    lsn,
                    generation,
                    previous: last,
                });
            }
        }
        if payload.len() > format::MAX_PAYLOAD {
            return Err(TapeError::Corrupt {
                path: self.path.clone(),
                offset: self.bytes,
                lsn: Some(lsn),
                why: format!("payload of {} bytes exceeds the maximum", payload.len()),
            });
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        format::encode_record(&mut buf, lsn, generation, payload);
        format::mark_commit(&mut buf, 0, lsn);
        let r = self.write(&buf);
        let n = buf.len() as u64;
        self.buf = buf;
        r?;
        self.bytes += n;
        self.records += 1;
        self.next_lsn += 1;
        self.generations = Some(match self.generations {
            None => (generation, generation),
            Some((first, _)) => (first, generation),
        });
        Ok(())
    }

    /// LSN the next appended record must have.
    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    /// Records appended so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Bytes written so far (header included).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Makes the tape durable under its name.
    pub fn finish(mut self) -> Result<TapeSummary, TapeError> {
        let Some(w) = self.file.take() else {
            return Err(TapeError::Io {
                path: self.tmp.clone(),
                op: "finish",
                source: io::Error::other("the tape writer failed earlier"),
            });
        };
        let file = w
            .into_inner()
            .map_err(|e| TapeError::io(&self.tmp, "write")(e.into_error()))?;
        file.sync_all().map_err(TapeError::io(&self.tmp, "fsync"))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path).map_err(TapeError::io(&self.path, "rename"))?;
        let dir = parent_dir(&self.path);
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(TapeError::io(&dir, "fsync the directory of"))?;
        Ok(TapeSummary {
            path: self.path.clone(),
            first_lsn: self.first_lsn,
            last_lsn: (self.records > 0).then(|| self.next_lsn - 1),
            records: self.records,
            bytes: self.bytes,
            generations: self.generations.unwrap_or((0, 0)),
        })
    }
}

impl Drop for TapeWriter {
    fn drop(&mut self) {
        if self.file.is_some() || self.tmp.exists() {
            self.file = None;
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// A tape read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tape {
    pub header: SegmentHeader,
    pub records: Vec<Record>,
}

impl Tape {
    pub fn last_lsn(&self) -> Option<Lsn> {
        self.records.last().map(|r| r.lsn)
    }
}

/// Reads a tape record by record, checking as it goes (see the module doc).
pub struct TapeReader {
    path: PathBuf,
    reader: SegmentReader,
    header: SegmentHeader,
    /// Records read since the last group-commit end (they are not a whole tape yet).
    open_group: Option<(Lsn, u64)>,
    last_generation: Option<u64>,
    done: bool,
}

fn damage_error(path: &Path, offset: u64, lsn: Lsn, damage: Damage) -> TapeError {
    let path = path.to_path_buf();
    match damage {
        Damage::Record(RecordError::Incomplete { .. }) => TapeError::Truncated {
            path,
            offset,
            why: damage.to_string(),
        },
        Damage::Lsn { expected, found } => TapeError::Gap {
            path,
            expected,
            found,
        },
        Damage::Header(HeaderError::Short(_)) => TapeError::Truncated {
            path,
            offset,
            why: damage.to_string(),
        },
        Damage::Header(h) => TapeError::NotATape {
            path,
            why: h.to_string(),
        },
        other => TapeError::Corrupt {
            path,
            offset,
            lsn: Some(lsn),
            why: other.to_string(),
        },
    }
}

impl TapeReader {
    pub fn open(path: &Path) -> Result<TapeReader, TapeError> {
        if path.is_dir() {
            return Err(TapeError::NotATape {
                path: path.to_path_buf(),
                why: "it is a directory".into(),
            });
        }
        // A file too short for a header is truncated only if what it holds starts like one.
        let mut head = Vec::with_capacity(8);
        File::open(path)
            .and_then(|f| io::Read::take(f, 8).read_to_end(&mut head))
            .map_err(TapeError::io(path, "open"))?;
        if head[..] != format::MAGIC[..head.len()] {
            return Err(TapeError::NotATape {
                path: path.to_path_buf(),
                why: HeaderError::Magic.to_string(),
            });
        }
        let reader = SegmentReader::open(path)
            .map_err(TapeError::io(path, "open"))?
            .map_err(|d| damage_error(path, 0, 0, d))?;
        let header = reader.header;
        if header.first_lsn == 0 {
            return Err(TapeError::ZeroLsn {
                path: path.to_path_buf(),
            });
        }
        Ok(TapeReader {
            path: path.to_path_buf(),
            reader,
            header,
            open_group: None,
            last_generation: None,
            done: false,
        })
    }

    pub fn header(&self) -> &SegmentHeader {
        &self.header
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next record; None at the end of a complete tape.
    ///
    /// Records of a group commit are returned as they are read; a tape that ends inside a
    /// group is an error at the end (a journal segment is only complete at a group's end).
    pub fn next_record(&mut self) -> Result<Option<Record>, TapeError> {
        if self.done {
            return Ok(None);
        }
        let step = self
            .reader
            .step()
            .map_err(TapeError::io(&self.path, "read"))?;
        let end = |s: &mut TapeReader, offset: u64| -> Result<Option<Record>, TapeError> {
            if let Some((lsn, at)) = s.open_group {
                return Err(TapeError::Truncated {
                    path: s.path.clone(),
                    offset: at,
                    why: format!(
                        "the group commit starting at LSN {lsn} has no end record (ends at offset {offset})"
                    ),
                });
            }
            s.done = true;
            Ok(None)
        };
        match step {
            Step::End => end(self, self.reader.offset),
            Step::Zeros { offset } => {
                // An unsealed segment: space allocated ahead, zeros to the end.
                if !self
                    .reader
                    .rest_is_zero()
                    .map_err(TapeError::io(&self.path, "read"))?
                {
                    return Err(TapeError::Corrupt {
                        path: self.path.clone(),
                        offset,
                        lsn: Some(self.reader.next_lsn),
                        why: Damage::ZerosThenData.to_string(),
                    });
                }
                end(self, offset)
            }
            Step::Damaged { offset, damage } => Err(damage_error(
                &self.path,
                offset,
                self.reader.next_lsn,
                damage,
            )),
            Step::Record(rec) => {
                if let Some(prev) = self.last_generation {
                    if rec.generation < prev {
                        return Err(TapeError::GenerationBackwards {
                            path: self.path.clone(),
                            lsn: rec.lsn,
                            generation: rec.generation,
                            previous: prev,
                        });
                    }
                }
                self.last_generation = Some(rec.generation);
                let group_first = self.open_group.map_or(rec.lsn, |(l, _)| l);
                match rec.group_first {
                    Some(g) if g != group_first => {
                        return Err(TapeError::Corrupt {
                            path: self.path.clone(),
                            offset: rec.offset,
                            lsn: Some(rec.lsn),
                            why: Damage::Group {
                                expected: group_first,
                                found: g,
                            }
                            .to_string(),
                        });
                    }
                    Some(_) => self.open_group = None,
                    None => {
                        if self.open_group.is_none() {
                            self.open_group = Some((rec.lsn, rec.offset));
                        }
                    }
                }
                Ok(Some(rec))
            }
        }
    }
}

impl Iterator for TapeReader {
    type Item = Result<Record, TapeError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

/// Reads a whole tape into memory, checking it (see [`TapeReader`]).
pub fn read_tape(path: &Path) -> Result<Tape, TapeError> {
    let mut r = TapeReader::open(path)?;
    let mut records = Vec::new();
    while let Some(rec) = r.next_record()? {
        records.push(rec);
    }
    Ok(Tape {
        header: r.header,
        records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DB: DbId = [9; 16];

    fn write(path: &Path, first: Lsn, recs: &[(Lsn, u64, &[u8])]) -> TapeSummary {
        let mut w = TapeWriter::create(path, DB, first).unwrap();
        for (lsn, g, p) in recs {
            w.append(*lsn, *g, p).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn a_tape_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.hbt");
        let s = write(&path, 10, &[(10, 1, b"a"), (11, 1, b""), (12, 2, b"ccc")]);
        assert_eq!(s.first_lsn, 10);
        assert_eq!(s.last_lsn, Some(12));
        assert_eq!(s.records, 3);
        assert_eq!(s.generations, (1, 2));
        assert_eq!(s.bytes, std::fs::metadata(&path).unwrap().len());
        assert!(!tmp_path(&path).exists());
        let t = read_tape(&path).unwrap();
        assert_eq!(
            t.header,
            SegmentHeader {
                first_lsn: 10,
                db_id: DB
            }
        );
        let got: Vec<(Lsn, u64, Vec<u8>)> = t
            .records
            .iter()
            .map(|r| (r.lsn, r.generation, r.payload.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (10, 1, b"a".to_vec()),
                (11, 1, vec![]),
                (12, 2, b"ccc".to_vec())
            ]
        );
        // The journal's own tools read it as a segment.
        let scan = crate::journal::recovery::scan(dir.path(), None).unwrap();
        assert!(
            scan.segments.is_empty(),
            "a tape is not named like a segment"
        );
    }

    #[test]
    fn an_empty_tape_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.hbt");
        let s = write(&path, 5, &[]);
        assert_eq!((s.last_lsn, s.records, s.generations), (None, 0, (0, 0)));
        let t = read_tape(&path).unwrap();
        assert_eq!(t.header.first_lsn, 5);
        assert!(t.records.is_empty());
    }

    #[test]
    fn every_truncation_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.hbt");
        write(&path, 1, &[(1, 1, b"hello"), (2, 1, b"world!")]);
        let full = std::fs::read(&path).unwrap();
        let cut_path = dir.path().join("cut.hbt");
        let first_end = {
            let t = read_tape(&path).unwrap();
            t.records[1].offset as usize
        };
        for cut in 0..full.len() {
            std::fs::write(&cut_path, &full[..cut]).unwrap();
            let r = read_tape(&cut_path);
            if cut == HEADER_LEN || cut == first_end {
                // Exactly at a record boundary: a shorter, valid tape.
                assert!(r.is_ok(), "cut {cut}: {r:?}");
                continue;
            }
            match r {
                Err(TapeError::Truncated { .. }) => {}
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
    }

    #[test]
    fn damage_is_reported_with_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.hbt");
        write(&path, 1, &[(1, 1, b"hello"), (2, 1, b"world")]);
        let mut b = std::fs::read(&path).unwrap();
        let t = read_tape(&path).unwrap();
        let at = t.records[1].offset as usize + 26;
        b[at] ^= 0xff;
        std::fs::write(&path, &b).unwrap();
        match read_tape(&path) {
            Err(TapeError::Corrupt { offset, lsn, .. }) => {
                assert_eq!(offset, t.records[1].offset);
                assert_eq!(lsn, Some(2));
            }
            other => panic!("{other:?}"),
        }
        b[0] = b'X';
        std::fs::write(&path, &b).unwrap();
        assert!(matches!(read_tape(&path), Err(TapeError::NotATape { .. })));
        std::fs::write(&path, b"hello\n").unwrap();
        let e = read_tape(&path).unwrap_err();
        assert!(matches!(e, TapeError::NotATape { .. }), "{e}");
    }

    #[test]
    fn a_gap_is_refused_when_writing_and_when_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.hbt");
        let mut w = TapeWriter::create(&path, DB, 1).unwrap();
        w.append(1, 1, b"a").unwrap();
        let e = w.append(3, 1, b"c").unwrap_err();
        assert!(
            matches!(
                e,
                TapeError::Gap {
                    expected: 2,
                    found: 3,
                    ..
                }
            ),
            "{e}"
        );
        let e = w.append(2, 0, b"b").unwrap_err();
        assert!(matches!(e, TapeError::GenerationBackwards { .. }), "{e}");
        drop(w);
        assert!(
            !tmp_path(&path).exists(),
            "an unfinished tape leaves nothing"
        );
        assert!(!path.exists());
        // A file made by hand with a gap.
        let mut b = SegmentHeader {
            first_lsn: 1,
            db_id: DB,
        }
        .encode()
        .to_vec();
        for lsn in [1u64, 3] {
            let start = b.len();
            format::encode_record(&mut b, lsn, 1, b"x");
            format::mark_commit(&mut b, start, lsn);
        }
        std::fs::write(&path, &b).unwrap();
        let e = read_tape(&path).unwrap_err();
        assert!(
            matches!(
                e,
                TapeError::Gap {
                    expected: 2,
                    found: 3,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("gap"), "{e}");
    }

    #[test]
    fn generations_going_back_are_refused_when_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.hbt");
        let mut b = SegmentHeader {
            first_lsn: 7,
            db_id: DB,
        }
        .encode()
        .to_vec();
        for (lsn, g) in [(7u64, 2u64), (8, 1)] {
            let start = b.len();
            format::encode_record(&mut b, lsn, g, b"x");
            format::mark_commit(&mut b, start, lsn);
        }
        std::fs::write(&path, &b).unwrap();
        assert!(matches!(
            read_tape(&path),
            Err(TapeError::GenerationBackwards { lsn: 8, .. })
        ));
    }

    #[test]
    fn a_journal_segment_is_a_tape() {
        use crate::journal::fs::RealFs;
        use crate::journal::{Journal, JournalOptions, SyncMode};
        let dir = tempfile::tempdir().unwrap();
        let jdir = dir.path().join("journal");
        let (mut j, _) = Journal::open(
            &jdir,
            DB,
            1,
            JournalOptions {
                segment_size: 1 << 20,
                sync: SyncMode::None,
            },
            std::sync::Arc::new(RealFs),
        )
        .unwrap();
        j.append(1, b"one");
        j.append(1, b"two");
        j.commit().unwrap();
        j.append(1, b"three");
        j.commit().unwrap();
        let seg = j.segments()[0].path.clone();
        drop(j);
        // Preallocated zeros after the records are fine.
        let t = read_tape(&seg).unwrap();
        assert_eq!(t.records.len(), 3);
        assert_eq!(t.records[2].payload, b"three");
    }
}
