//! Segment files: listing them in a directory and reading their records in order.
//!
//! [`SegmentReader`] reads one segment sequentially and reports, for any bad record, the exact
//! offset and why. Recovery, `journal check`, `journal dump` and the by-LSN reader all read
//! through it, so they agree on what a valid segment is.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::format::{
    self, COMMIT_FLAG, HEADER_LEN, HeaderError, Lsn, MAX_PAYLOAD, RECORD_HEADER_LEN, RecordError,
    SegmentHeader,
};

/// A segment file found in the journal directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub path: PathBuf,
    /// The first LSN its name announces.
    pub first_lsn: Lsn,
}

/// Segment files of `dir`, sorted by first LSN. Other files are ignored.
pub fn list_segments(dir: &Path) -> io::Result<Vec<SegmentInfo>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(first_lsn) = format::parse_segment_name(name) {
            out.push(SegmentInfo {
                path: entry.path(),
                first_lsn,
            });
        }
    }
    out.sort_by_key(|s| s.first_lsn);
    Ok(out)
}

/// A record read from a segment, owning its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub lsn: Lsn,
    pub generation: u64,
    pub payload: Vec<u8>,
    /// Byte offset of the record in its segment.
    pub offset: u64,
    /// On the last record of a group commit: the LSN of the group's first record.
    pub group_first: Option<Lsn>,
}

/// Why a segment stops being readable at some offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    Header(HeaderError),
    Record(RecordError),
    /// A valid record with an LSN other than the next one.
    Lsn {
        expected: Lsn,
        found: Lsn,
    },
    /// An all-zero record header followed later by non-zero bytes.
    ZerosThenData,
    /// A group-end record naming another first LSN than its group's.
    Group {
        expected: Lsn,
        found: Lsn,
    },
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::Header(e) => write!(f, "{e}"),
            Damage::Record(e) => write!(f, "{e}"),
            Damage::Lsn { expected, found } => {
                write!(f, "LSN {found} where {expected} was expected")
            }
            Damage::ZerosThenData => write!(f, "zeroed bytes followed by data"),
            Damage::Group { expected, found } => write!(
                f,
                "group commit end names first LSN {found} where {expected} was expected"
            ),
        }
    }
}

/// Sequential reader of one segment.
pub struct SegmentReader {
    file: BufReader<File>,
    pub header: SegmentHeader,
    /// Offset of the next record.
    pub offset: u64,
    /// LSN the next record must have.
    pub next_lsn: Lsn,
    pub file_len: u64,
}

/// Outcome of one read step.
#[derive(Debug)]
pub enum Step {
    Record(Record),
    /// Clean end of file exactly after the last record.
    End,
    /// An all-zero record header at `offset`: the end of the records if only zeros follow
    /// (space allocated ahead); see [`SegmentReader::rest_is_zero`].
    Zeros {
        offset: u64,
    },
    /// Bad bytes at `offset` (nothing valid could be read there).
    Damaged {
        offset: u64,
        damage: Damage,
    },
}

impl SegmentReader {
    /// Opens a segment and checks its header. `Err(Ok(damage))` is a bad header.
    pub fn open(path: &Path) -> io::Result<Result<SegmentReader, Damage>> {
        let mut file = File::open(path)?;
        let file_len = file.metadata()?.len();
        let mut head = Vec::with_capacity(HEADER_LEN);
        (&mut file).take(HEADER_LEN as u64).read_to_end(&mut head)?;
        let header = match SegmentHeader::decode(&head) {
            Ok(h) => h,
            Err(e) => return Ok(Err(Damage::Header(e))),
        };
        Ok(Ok(SegmentReader {
            file: BufReader::with_capacity(256 * 1024, file),
            header,
            offset: HEADER_LEN as u64,
            next_lsn: header.first_lsn,
            file_len,
        }))
    }

    /// Reads the next record, or says why there is none.
    pub fn step(&mut self) -> io::Result<Step> {
        let left = self.file_len.saturating_sub(self.offset);
        if left == 0 {
            return Ok(Step::End);
        }
        let damaged = |offset, damage| Ok(Step::Damaged { offset, damage });
        if left < RECORD_HEADER_LEN as u64 {
            return damaged(
                self.offset,
                Damage::Record(RecordError::Incomplete {
                    have: left as usize,
                    need: RECORD_HEADER_LEN,
                }),
            );
        }
        let mut head = [0u8; RECORD_HEADER_LEN];
        self.file.read_exact(&mut head)?;
        if format::is_zero_header(&head) {
            self.reposition()?;
            return Ok(Step::Zeros {
                offset: self.offset,
            });
        }
        let word = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let len = (word & !COMMIT_FLAG) as usize;
        if len > MAX_PAYLOAD {
            self.reposition()?;
            return damaged(self.offset, Damage::Record(RecordError::Length(len as u32)));
        }
        let trailer = if word & COMMIT_FLAG != 0 {
            format::COMMIT_TRAILER_LEN
        } else {
            0
        };
        let total = (RECORD_HEADER_LEN + len + trailer) as u64;
        if total > left {
            self.reposition()?;
            return damaged(
                self.offset,
                Damage::Record(RecordError::Incomplete {
                    have: left as usize,
                    need: total as usize,
                }),
            );
        }
        let mut buf = Vec::with_capacity(total as usize);
        buf.extend_from_slice(&head);
        buf.resize(total as usize, 0);
        self.file.read_exact(&mut buf[RECORD_HEADER_LEN..])?;
        let (rec, _) = match format::decode_record(&buf) {
            Ok(r) => r,
            Err(e) => {
                self.reposition()?;
                return damaged(self.offset, Damage::Record(e));
            }
        };
        if rec.lsn != self.next_lsn {
            let found = rec.lsn;
            self.reposition()?;
            return damaged(
                self.offset,
                Damage::Lsn {
                    expected: self.next_lsn,
                    found,
                },
            );
        }
        let record = Record {
            lsn: rec.lsn,
            generation: rec.generation,
            group_first: rec.group_first,
            payload: buf[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len].to_vec(),
            offset: self.offset,
        };
        self.offset += total;
        self.next_lsn += 1;
        Ok(Step::Record(record))
    }

    /// For a file still being written: re-reads its length and forgets buffered bytes.
    /// Returns whether there is more to read than before.
    pub fn refresh(&mut self) -> io::Result<bool> {
        let len = self.file.get_ref().metadata()?.len();
        self.reposition()?;
        let grew = len > self.file_len;
        self.file_len = len;
        Ok(grew)
    }

    fn reposition(&mut self) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(self.offset))?;
        Ok(())
    }

    /// Whether every byte from the current offset to the end of the file is zero.
    pub fn rest_is_zero(&mut self) -> io::Result<bool> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut all_zero = true;
        loop {
            let n = self.file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            if buf[..n].iter().any(|&b| b != 0) {
                all_zero = false;
                break;
            }
        }
        self.reposition()?;
        Ok(all_zero)
    }

    /// After damage at the current offset, in a group commit whose first LSN is `group_first`:
    /// is there proof that a *later* group was written? That is a valid record of a later group's
    /// end (its trailer names a later first LSN), or a valid record with a higher LSN than our
    /// group's own end record. Later groups are only written after this group's fdatasync
    /// returned, so then the damage hit durable, acknowledged data: corruption, not a torn tail.
    /// Returns the offset of the proof.
    pub fn find_later_group(&mut self, group_first: Lsn) -> io::Result<Option<u64>> {
        let start = self.offset + 1;
        let mut rest = Vec::new();
        self.file.seek(SeekFrom::Start(start))?;
        self.file.read_to_end(&mut rest)?;
        self.reposition()?;
        let last_good = self.next_lsn.saturating_sub(1);
        let max_lsn = last_good.saturating_add(rest.len() as u64 / RECORD_HEADER_LEN as u64 + 1);
        let mut own_end: Option<Lsn> = None;
        let mut highest: Option<(Lsn, u64)> = None;
        for i in 0..rest.len().saturating_sub(RECORD_HEADER_LEN - 1) {
            let b = &rest[i + 8..i + 16];
            let lsn = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
            if lsn <= last_good || lsn > max_lsn {
                continue;
            }
            let Ok((r, _)) = format::decode_record(&rest[i..]) else {
                continue;
            };
            let at = start + i as u64;
            match r.group_first {
                Some(g) if g > group_first => return Ok(Some(at)),
                Some(g) if g == group_first => {
                    own_end = Some(own_end.map_or(r.lsn, |e: Lsn| e.min(r.lsn)))
                }
                _ => {}
            }
            if highest.is_none_or(|(l, _)| r.lsn > l) {
                highest = Some((r.lsn, at));
            }
        }
        Ok(match (own_end, highest) {
            (Some(end), Some((l, at))) if l > end => Some(at),
            _ => None,
        })
    }
}
