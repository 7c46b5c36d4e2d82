//! Start-up recovery: scan every segment, tell a torn tail from real corruption.
//!
//! A group commit is acknowledged only after its fdatasync, and the writer syncs a segment
//! completely before it starts the next one. So only the last group commit of the last segment
//! can be incomplete on disk after a crash — and its pages may have reached the disk in any
//! order. The last record of every group carries a commit flag. Recovery therefore reads up to
//! the first damage (or an incomplete last group) and asks: does any valid group-end record come
//! after it? If yes, a later commit completed after the damaged bytes were durable: that is
//! corruption, and start-up stops with the segment and offset. If no, the damage is the torn
//! last group, never acknowledged: [`recover`] cuts the segment at the group's start and reports
//! where, with the last good LSN. Zeros after the last record are space allocated ahead.

use std::path::{Path, PathBuf};

use super::JournalError;
use super::format::{DbId, HEADER_LEN, Lsn};
use super::fs::Fs;
use super::segment::{Damage, SegmentInfo, SegmentReader, Step, list_segments};

/// What one segment holds.
#[derive(Debug, Clone)]
pub struct SegmentSummary {
    pub info: SegmentInfo,
    pub records: u64,
    /// LSN of its last valid record, if any.
    pub last_lsn: Option<Lsn>,
    /// Length of its valid part (header + valid records).
    pub valid_len: u64,
    pub file_len: u64,
}

/// A torn last group commit at the end of the last segment.
#[derive(Debug, Clone)]
pub struct TailDamage {
    pub segment: PathBuf,
    /// Where the torn group starts: the segment is cut here.
    pub offset: u64,
    pub file_len: u64,
    /// What was found.
    pub damage: String,
    /// Valid records of the incomplete group that are dropped with it.
    pub dropped_records: u64,
    /// The header itself is bad: the whole file is a torn creation.
    pub whole_file: bool,
}

/// Result of a read-only scan.
#[derive(Debug, Clone)]
pub struct ScanReport {
    pub segments: Vec<SegmentSummary>,
    pub tail: Option<TailDamage>,
    /// LSN the next appended record gets (None: no segment at all).
    pub next_lsn: Option<Lsn>,
    pub last_generation: u64,
    pub records: u64,
}

/// What recovery did.
#[derive(Debug, Clone)]
pub struct Recovery {
    pub report: ScanReport,
    /// The torn tail that was cut: segment, offset, bytes dropped, last good LSN.
    pub truncated: Option<(PathBuf, u64, u64, Option<Lsn>)>,
}

fn corrupt(seg: &Path, offset: u64, lsn: Option<Lsn>, reason: String) -> JournalError {
    JournalError::Corrupt {
        segment: seg.to_path_buf(),
        offset,
        lsn,
        reason,
    }
}

/// Reads all segments of `dir` without changing anything.
pub fn scan(dir: &Path, db_id: Option<&DbId>) -> Result<ScanReport, JournalError> {
    let io = |op| {
        move |source| JournalError::Io {
            path: dir.to_path_buf(),
            op,
            source,
        }
    };
    let infos = list_segments(dir).map_err(io("list"))?;
    let mut report = ScanReport {
        segments: Vec::new(),
        tail: None,
        next_lsn: None,
        last_generation: 0,
        records: 0,
    };
    let count = infos.len();
    for (i, info) in infos.into_iter().enumerate() {
        crate::systemd::extend_start(&format!("scanning journal segment {} of {count}", i + 1));
        let is_last = i + 1 == count;
        let path = info.path.clone();
        let ioerr = |source| JournalError::Io {
            path: path.clone(),
            op: "read",
            source,
        };
        let mut reader = match SegmentReader::open(&path).map_err(ioerr)? {
            Ok(r) => r,
            Err(damage) => {
                let file_len = std::fs::metadata(&path).map_err(ioerr)?.len();
                if is_last && (file_len as usize) <= HEADER_LEN {
                    // Created, never completed: a torn creation.
                    report.tail = Some(TailDamage {
                        segment: path.clone(),
                        offset: 0,
                        file_len,
                        damage: damage.to_string(),
                        dropped_records: 0,
                        whole_file: true,
                    });
                    continue;
                }
                return Err(corrupt(&path, 0, None, damage.to_string()));
            }
        };
        if reader.header.first_lsn != info.first_lsn {
            return Err(corrupt(
                &path,
                16,
                None,
                format!(
                    "header says first LSN {} but the file name says {}",
                    reader.header.first_lsn, info.first_lsn
                ),
            ));
        }
        if let Some(expected) = db_id {
            if &reader.header.db_id != expected {
                return Err(JournalError::WrongDatabase {
                    segment: path.clone(),
                });
            }
        }
        if let Some(next) = report.next_lsn {
            if info.first_lsn != next {
                return Err(JournalError::Gap {
                    segment: path.clone(),
                    expected: next,
                    found: info.first_lsn,
                });
            }
        }
        let mut summary = SegmentSummary {
            info: info.clone(),
            records: 0,
            last_lsn: None,
            valid_len: HEADER_LEN as u64,
            file_len: reader.file_len,
        };
        // Where the group commit being read started, and the LSN it starts with.
        let mut group_start = (HEADER_LEN as u64, reader.next_lsn);
        let mut group_records = 0u64;
        let mut group_generation = report.last_generation;
        let damage = loop {
            match reader.step().map_err(ioerr)? {
                Step::Record(rec) => {
                    if rec.group_first.is_some_and(|g| g != group_start.1) {
                        break Some((
                            rec.offset,
                            Damage::Group {
                                expected: group_start.1,
                                found: rec.group_first.unwrap_or(0),
                            },
                        ));
                    }
                    group_records += 1;
                    if rec.group_first.is_some() {
                        summary.records += group_records;
                        summary.last_lsn = Some(rec.lsn);
                        group_generation = rec.generation;
                        group_records = 0;
                        group_start = (reader.offset, reader.next_lsn);
                    }
                }
                Step::End => break None,
                Step::Zeros { offset } => {
                    if reader.rest_is_zero().map_err(ioerr)? {
                        break None;
                    }
                    break Some((offset, Damage::ZerosThenData));
                }
                Step::Damaged { offset, damage } => break Some((offset, damage)),
            }
        };
        report.last_generation = group_generation;
        let end = reader.offset;
        let incomplete_group = group_records > 0;
        if damage.is_some() || incomplete_group {
            let (offset, what) = match damage {
                Some((o, d)) => (o, d.to_string()),
                None => (end, "the last group commit has no end record".to_string()),
            };
            if !is_last {
                return Err(corrupt(
                    &path,
                    offset,
                    Some(reader.next_lsn),
                    format!("{what} (in a sealed segment)"),
                ));
            }
            if let Some(at) = reader.find_later_group(group_start.1).map_err(ioerr)? {
                return Err(corrupt(
                    &path,
                    offset,
                    Some(reader.next_lsn),
                    format!(
                        "{what}, but a record of a later group commit follows at offset {at}: this is not a torn tail"
                    ),
                ));
            }
            report.tail = Some(TailDamage {
                segment: path.clone(),
                offset: group_start.0,
                file_len: reader.file_len,
                damage: what,
                dropped_records: group_records,
                whole_file: false,
            });
        }
        reader.next_lsn = group_start.1;
        reader.offset = group_start.0;
        summary.valid_len = reader.offset;
        report.records += summary.records;
        report.next_lsn = Some(reader.next_lsn);
        report.segments.push(summary);
    }
    Ok(report)
}

/// Scans and repairs a torn tail (truncates it, or removes a torn new segment).
pub fn recover(dir: &Path, db_id: &DbId, fs: &dyn Fs) -> Result<Recovery, JournalError> {
    let report = scan(dir, Some(db_id))?;
    let mut truncated = None;
    if let Some(tail) = &report.tail {
        let last_good = report
            .next_lsn
            .and_then(|n| n.checked_sub(1))
            .filter(|&l| l > 0);
        let ioerr = |op| {
            let path = tail.segment.clone();
            move |source| JournalError::Io { path, op, source }
        };
        if tail.whole_file {
            fs.remove(&tail.segment)
                .map_err(ioerr("remove torn segment"))?;
            fs.sync_dir(dir).map_err(ioerr("sync directory"))?;
            truncated = Some((tail.segment.clone(), 0, tail.file_len, last_good));
        } else {
            let mut f = fs
                .open_write(&tail.segment)
                .map_err(ioerr("open torn segment"))?;
            f.set_len(tail.offset)
                .map_err(ioerr("truncate torn tail"))?;
            f.sync_data().map_err(ioerr("sync after truncation"))?;
            truncated = Some((
                tail.segment.clone(),
                tail.offset,
                tail.file_len - tail.offset,
                last_good,
            ));
        }
        log::warn!(
            "journal tail truncated: segment {} offset {} ({} bytes and {} complete record(s) of an unfinished group commit dropped: {}); last good LSN {}",
            tail.segment.display(),
            tail.offset,
            tail.file_len - tail.offset,
            tail.dropped_records,
            tail.damage,
            last_good.map_or("none".to_string(), |l| l.to_string()),
        );
    }
    Ok(Recovery { report, truncated })
}
