//! `hotbackup journal export --from LSN [--to LSN] FILE`: copies an LSN range of a node's
//! journal to a tape.
//!
//! It only reads segment files, so it runs beside the daemon. It never exports a record the
//! node could still lose: with a daemon running, nothing past the durable LSN the daemon
//! reports (HB.STATUS); with none, nothing past the last complete group commit (a torn tail,
//! which the next start cuts, is not exported). The tape is written to `FILE.tmp` and renamed
//! when complete, so a failed export leaves no partial tape.

use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use super::client::{Client, pairs};
use super::daemon::{Probe, ProbeError, probe};
use crate::config::Config;
use crate::datadir::DataDir;
use crate::journal::segment::{SegmentReader, list_segments};
use crate::journal::tape::{TapeError, TapeSummary, TapeWriter};
use crate::journal::{JournalError, JournalReader, Lsn, recovery};
use crate::resp::Value;

#[derive(Debug, Error)]
pub enum ExportError {
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error("{0} exists already: choose another name or remove it")]
    Exists(PathBuf),
    #[error("the journal in {} holds no records", .0.display())]
    Empty(PathBuf),
    #[error(
        "the journal no longer holds LSN {from}: it holds LSN {first}..{last} (older segments were removed; use a save and restore, or archived segments)"
    )]
    NotHeld { from: Lsn, first: Lsn, last: Lsn },
    #[error("the journal ends at LSN {last} (durable); LSN {wanted} does not exist yet")]
    Beyond { wanted: Lsn, last: Lsn },
    #[error("--to {to} is below --from {from}")]
    BadRange { from: Lsn, to: Lsn },
    #[error(
        "the daemon runs but its durable LSN could not be asked ({0}); export only while it answers, or stop it"
    )]
    NoDurableLsn(String),
    #[error("the journal changed while it was read: {0}; retry the export")]
    Moved(String),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Tape(#[from] TapeError),
}

/// The last LSN that may be exported: the daemon's durable LSN when it runs, else the end of
/// the last complete group commit on disk.
pub fn durable_end(cfg: &Config, journal_dir: &Path) -> Result<Lsn, ExportError> {
    match probe(&cfg.data_dir)? {
        Probe::Running => {
            let answer = Client::for_config(cfg, Duration::from_secs(5))
                .and_then(|mut c| c.call(&[b"HB.STATUS"]));
            let fields = match answer {
                Ok(v @ (Value::Map(_) | Value::Array(_))) => pairs(&v),
                Ok(other) => return Err(ExportError::NoDurableLsn(format!("{other:?}"))),
                Err(e) => return Err(ExportError::NoDurableLsn(e.to_string())),
            };
            fields
                .iter()
                .find(|(k, _)| k == "journal_durable_lsn")
                .and_then(|(_, v)| v.parse().ok())
                .ok_or_else(|| {
                    ExportError::NoDurableLsn("HB.STATUS has no journal_durable_lsn".into())
                })
        }
        Probe::Stopped(_lock) => {
            let scan = recovery::scan(journal_dir, None)?;
            Ok(scan.next_lsn.map_or(0, |n| n.saturating_sub(1)))
        }
    }
}

/// Copies records `from..=to` (default: to `end`) of the journal in `journal_dir` to a tape
/// at `out`. `end` is the last LSN that may be exported (see [`durable_end`]).
pub fn export(
    journal_dir: &Path,
    from: Lsn,
    to: Option<Lsn>,
    end: Lsn,
    out: &Path,
) -> Result<TapeSummary, ExportError> {
    if out.exists() {
        return Err(ExportError::Exists(out.to_path_buf()));
    }
    let io = |op| {
        let path = journal_dir.to_path_buf();
        move |source| JournalError::Io { path, op, source }
    };
    let segments = list_segments(journal_dir).map_err(io("list"))?;
    let Some(oldest) = segments.first() else {
        return Err(ExportError::Empty(journal_dir.to_path_buf()));
    };
    let first = oldest.first_lsn;
    let from = from.max(1);
    if let Some(to) = to {
        if to < from {
            return Err(ExportError::BadRange { from, to });
        }
        if to > end {
            return Err(ExportError::Beyond {
                wanted: to,
                last: end,
            });
        }
    }
    if from < first {
        return Err(ExportError::NotHeld {
            from,
            first,
            last: end,
        });
    }
    if from > end + 1 {
        return Err(ExportError::Beyond {
            wanted: from,
            last: end,
        });
    }
    let upto = to.unwrap_or(end);
    // The database id: from the header of the segment holding `from` (all agree).
    let seg = segments
        .iter()
        .rev()
        .find(|s| s.first_lsn <= from)
        .unwrap_or(oldest);
    let header = SegmentReader::open(&seg.path)
        .map_err(|source| JournalError::Io {
            path: seg.path.clone(),
            op: "open",
            source,
        })?
        .map_err(|d| JournalError::Corrupt {
            segment: seg.path.clone(),
            offset: 0,
            lsn: None,
            reason: d.to_string(),
        })?
        .header;
    let mut tape = TapeWriter::create(out, header.db_id, from)?;
    if upto >= from {
        let mut reader = JournalReader::open(journal_dir, from, Some(upto))?;
        loop {
            let rec = match reader.next_record() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                // A checkpoint of the running daemon removed a segment we were about to read.
                Err(JournalError::Io { path, source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    return Err(ExportError::Moved(format!(
                        "{} was removed (LSN {} and older are gone)",
                        path.display(),
                        reader.next_lsn()
                    )));
                }
                Err(e) => return Err(e.into()),
            };
            tape.append(rec.lsn, rec.generation, &rec.payload)?;
        }
        if tape.next_lsn() != upto + 1 {
            return Err(ExportError::Moved(format!(
                "the records stop at LSN {} before LSN {upto}",
                tape.next_lsn() - 1
            )));
        }
    }
    Ok(tape.finish()?)
}

/// `journal export` for a node's config.
pub fn export_node(
    cfg: &Config,
    from: Lsn,
    to: Option<Lsn>,
    out: &Path,
) -> Result<TapeSummary, ExportError> {
    let dir = DataDir::new(&cfg.data_dir).journal_dir();
    let end = durable_end(cfg, &dir)?;
    export(&dir, from, to, end, out)
}

/// One line for people.
pub fn describe(s: &TapeSummary) -> String {
    match s.last_lsn {
        Some(last) => format!(
            "exported {} record(s), LSN {}..{last} (generation {}..{}), {} bytes, to {}",
            s.records,
            s.first_lsn,
            s.generations.0,
            s.generations.1,
            s.bytes,
            s.path.display()
        ),
        None => format!(
            "exported no records (nothing after LSN {}), to {}",
            s.first_lsn - 1,
            s.path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::fs::RealFs;
    use crate::journal::tape::read_tape;
    use crate::journal::{Journal, JournalOptions, SyncMode};

    fn journal(dir: &Path, n: u64, segment_size: u64) {
        let (mut j, _) = Journal::open(
            dir,
            [4; 16],
            1,
            JournalOptions {
                segment_size,
                sync: SyncMode::None,
            },
            std::sync::Arc::new(RealFs),
        )
        .unwrap();
        for i in 0..n {
            j.append(1, format!("record {i}").as_bytes());
            j.commit().unwrap();
        }
    }

    #[test]
    fn exports_a_range_across_segments() {
        let tmp = tempfile::tempdir().unwrap();
        let jdir = tmp.path().join("j");
        journal(&jdir, 100, 512);
        assert!(list_segments(&jdir).unwrap().len() > 3);
        let out = tmp.path().join("t.hbt");
        let s = export(&jdir, 10, Some(60), 100, &out).unwrap();
        assert_eq!((s.first_lsn, s.last_lsn, s.records), (10, Some(60), 51));
        let t = read_tape(&out).unwrap();
        assert_eq!(t.header.db_id, [4; 16]);
        assert_eq!(t.records[0].payload, b"record 9");
        // Up to the end; an existing file is not overwritten.
        assert!(matches!(
            export(&jdir, 10, None, 100, &out),
            Err(ExportError::Exists(_))
        ));
        let out2 = tmp.path().join("t2.hbt");
        let s = export(&jdir, 90, None, 95, &out2).unwrap();
        assert_eq!(s.last_lsn, Some(95));
        // Nothing new: an empty tape that continues at 101.
        let out3 = tmp.path().join("t3.hbt");
        let s = export(&jdir, 101, None, 100, &out3).unwrap();
        assert_eq!((s.first_lsn, s.records), (101, 0));
    }

    #[test]
    fn a_range_the_journal_does_not_hold_is_refused_with_what_it_holds() {
        let tmp = tempfile::tempdir().unwrap();
        let jdir = tmp.path().join("j");
        journal(&jdir, 50, 512);
        let segs = list_segments(&jdir).unwrap();
        std::fs::remove_file(&segs[0].path).unwrap();
        let first = segs[1].first_lsn;
        let out = tmp.path().join("t.hbt");
        let e = export(&jdir, 1, None, 50, &out).unwrap_err();
        assert!(
            e.to_string().contains(&format!("it holds LSN {first}..50")),
            "{e}"
        );
        assert!(matches!(
            export(&jdir, 52, None, 50, &out),
            Err(ExportError::Beyond { .. })
        ));
        assert!(matches!(
            export(&jdir, 20, Some(10), 50, &out),
            Err(ExportError::BadRange { .. })
        ));
        assert!(!out.exists());
    }
}
