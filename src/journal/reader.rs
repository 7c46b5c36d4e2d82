//! Reading the journal by LSN: start-up replay, `journal dump`, and (later) the link's stream.
//!
//! [`JournalReader`] walks the segments of a directory from a given LSN up to an optional last
//! LSN. Any damage it meets is an error naming the segment and offset: a reader never skips.
//! [`JournalReader::follow`] makes one that keeps its place at the end of a live journal and
//! yields new records as the writer adds them (up to a bound the caller moves: the durable LSN).

use std::path::{Path, PathBuf};

use super::JournalError;
use super::format::Lsn;
use super::segment::{Record, SegmentInfo, SegmentReader, Step, list_segments};

pub struct JournalReader {
    segments: Vec<SegmentInfo>,
    index: usize,
    current: Option<SegmentReader>,
    next_lsn: Lsn,
    upto: Option<Lsn>,
    dir: PathBuf,
    follow: bool,
    /// The last call found nothing more (a follower then re-reads the file's end).
    caught_up: bool,
}

impl JournalReader {
    /// Reader over `dir` yielding records with LSN in `from..=upto` (`upto` None: to the end).
    /// Fails with [`JournalError::NotFound`] if `from` is older than the oldest segment.
    pub fn open(dir: &Path, from: Lsn, upto: Option<Lsn>) -> Result<JournalReader, JournalError> {
        let segments = list_segments(dir).map_err(|source| JournalError::Io {
            path: dir.to_path_buf(),
            op: "list",
            source,
        })?;
        let from = from.max(1);
        if let Some(first) = segments.first() {
            if first.first_lsn > from && upto.is_none_or(|u| u >= from) {
                return Err(JournalError::NotFound {
                    lsn: from,
                    oldest: first.first_lsn,
                });
            }
        }
        // The last segment starting at or before `from`.
        let index = segments
            .iter()
            .rposition(|s| s.first_lsn <= from)
            .unwrap_or(0);
        Ok(JournalReader {
            segments,
            index,
            current: None,
            next_lsn: from,
            upto,
            dir: dir.to_path_buf(),
            follow: false,
            caught_up: false,
        })
    }

    /// A reader of a live journal: at the end it waits (returns None) for more instead of
    /// finishing, and never reads past `upto`, which [`JournalReader::set_upto`] moves.
    pub fn follow(dir: &Path, from: Lsn, upto: Lsn) -> Result<JournalReader, JournalError> {
        let mut r = JournalReader::open(dir, from, Some(upto))?;
        r.follow = true;
        Ok(r)
    }

    /// Moves the last LSN the reader may return.
    pub fn set_upto(&mut self, upto: Lsn) {
        self.upto = Some(upto);
    }

    /// LSN of the next record this reader returns.
    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    /// Paths of the segments this reader walks.
    pub fn segment_paths(&self) -> impl Iterator<Item = &PathBuf> {
        self.segments.iter().map(|s| &s.path)
    }

    /// The next record, None at the end.
    pub fn next_record(&mut self) -> Result<Option<Record>, JournalError> {
        let r = self.next_record_inner();
        self.caught_up = !matches!(r, Ok(Some(_)));
        r
    }

    fn next_record_inner(&mut self) -> Result<Option<Record>, JournalError> {
        if self.follow && self.caught_up {
            // The writer may have added to (or sealed) the file since we last read: forget
            // what was buffered and look at the file again.
            if let Some(r) = self.current.as_mut() {
                let path = self.segments[self.index].path.clone();
                r.refresh().map_err(|source| JournalError::Io {
                    path,
                    op: "stat",
                    source,
                })?;
            }
        }
        let mut looked_again = false;
        loop {
            if self.upto.is_some_and(|u| self.next_lsn > u) {
                return Ok(None);
            }
            if self.current.is_none() {
                let Some(seg) = self.segments.get(self.index) else {
                    return Ok(None);
                };
                let path = seg.path.clone();
                let reader = SegmentReader::open(&path)
                    .map_err(|source| JournalError::Io {
                        path: path.clone(),
                        op: "open",
                        source,
                    })?
                    .map_err(|damage| JournalError::Corrupt {
                        segment: path.clone(),
                        offset: 0,
                        lsn: None,
                        reason: damage.to_string(),
                    })?;
                self.current = Some(reader);
            }
            let seg_path = self.segments[self.index].path.clone();
            let Some(reader) = self.current.as_mut() else {
                continue;
            };
            match reader.step().map_err(|source| JournalError::Io {
                path: seg_path.clone(),
                op: "read",
                source,
            })? {
                Step::Record(rec) => {
                    if rec.lsn < self.next_lsn {
                        continue;
                    }
                    if rec.lsn > self.next_lsn {
                        return Err(JournalError::Gap {
                            segment: seg_path,
                            expected: self.next_lsn,
                            found: rec.lsn,
                        });
                    }
                    self.next_lsn += 1;
                    return Ok(Some(rec));
                }
                Step::End | Step::Zeros { .. }
                    if self.follow && self.index + 1 >= self.segments.len() =>
                {
                    // The end of what the writer has written so far: a new segment, or more
                    // of this one, may come.
                    if reader.refresh().map_err(|source| JournalError::Io {
                        path: seg_path.clone(),
                        op: "stat",
                        source,
                    })? {
                        continue;
                    }
                    let newer = list_segments(&self.dir).map_err(|source| JournalError::Io {
                        path: self.dir.clone(),
                        op: "list",
                        source,
                    })?;
                    let known = self.segments.len();
                    for s in newer {
                        if s.first_lsn > self.segments[known - 1].first_lsn {
                            self.segments.push(s);
                        }
                    }
                    if self.segments.len() == known {
                        return Ok(None);
                    }
                    self.current = None;
                    self.index += 1;
                }
                Step::End | Step::Zeros { .. } => {
                    self.current = None;
                    self.index += 1;
                    if let Some(next) = self.segments.get(self.index) {
                        if next.first_lsn > self.next_lsn {
                            return Err(JournalError::Gap {
                                segment: next.path.clone(),
                                expected: self.next_lsn,
                                found: next.first_lsn,
                            });
                        }
                    }
                }
                Step::Damaged { offset, damage } => {
                    let is_last = self.index + 1 == self.segments.len();
                    if is_last && self.upto.is_none() {
                        // A reader of a live journal stops at a tail not yet written whole.
                        return Ok(None);
                    }
                    if self.follow && !looked_again {
                        // The length a follower knows may have been taken while the writer
                        // was writing records that `upto` has covered since: look at the file
                        // again (once) before calling them damaged.
                        looked_again = true;
                        reader.refresh().map_err(|source| JournalError::Io {
                            path: seg_path.clone(),
                            op: "stat",
                            source,
                        })?;
                        continue;
                    }
                    return Err(JournalError::Corrupt {
                        segment: seg_path,
                        offset,
                        lsn: Some(reader.next_lsn),
                        reason: damage.to_string(),
                    });
                }
            }
        }
    }
}

impl Iterator for JournalReader {
    type Item = Result<Record, JournalError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}
