//! `hotbackup journal check` and `hotbackup journal dump`: an admin's look inside the journal.
//!
//! Both only read. `check` walks every segment and every payload and says whether start-up
//! would succeed (a torn tail is normal after a crash and is cut at the next start; anything
//! else is corruption). `dump` prints records by LSN, for people (`--json` for programs).

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;

use super::json;
use crate::journal::recovery::{self, ScanReport, SegmentSummary};
use crate::journal::segment::{Record, SegmentInfo, SegmentReader, Step};
use crate::journal::tape::{TapeError, TapeReader};
use crate::journal::{JournalError, JournalReader, Lsn};
use crate::txn::{Op, Transaction, Value};

pub struct CheckReport {
    /// The segments read, or why they cannot be read.
    pub scan: Result<ScanReport, String>,
    /// Records whose payload does not decode: (LSN, why).
    pub bad_payloads: Vec<(Lsn, String)>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.scan.is_ok() && self.bad_payloads.is_empty()
    }

    pub fn render_human(&self, dir: &Path) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "journal {}", dir.display());
        match &self.scan {
            Err(e) => {
                let _ = writeln!(o, "CORRUPT: {e}");
            }
            Ok(r) => {
                for s in &r.segments {
                    let _ = writeln!(
                        o,
                        "  {}  records {:>8}  LSN {}..{}  {} bytes",
                        s.info
                            .path
                            .file_name()
                            .map_or("?".into(), |n| n.to_string_lossy()),
                        s.records,
                        s.info.first_lsn,
                        s.last_lsn.map_or("-".to_string(), |l| l.to_string()),
                        s.valid_len
                    );
                }
                let last = r.next_lsn.map_or(0, |n| n.saturating_sub(1));
                let _ = writeln!(
                    o,
                    "{} segment(s), {} record(s), last LSN {last}, last generation {}",
                    r.segments.len(),
                    r.records,
                    r.last_generation
                );
                if let Some(t) = &r.tail {
                    let _ = writeln!(
                        o,
                        "torn tail: {} offset {} ({} bytes: {}); the next start cuts it",
                        t.segment.display(),
                        t.offset,
                        t.file_len - t.offset,
                        t.damage
                    );
                }
            }
        }
        for (lsn, why) in &self.bad_payloads {
            let _ = writeln!(
                o,
                "CORRUPT: record LSN {lsn}: payload does not decode: {why}"
            );
        }
        let _ = writeln!(o, "{}", if self.ok() { "OK" } else { "FAILED" });
        o
    }

    pub fn to_json(&self, dir: &Path) -> String {
        let mut o = json::Object::new()
            .str("dir", &dir.display().to_string())
            .bool("ok", self.ok());
        match &self.scan {
            Err(e) => o = o.str("error", &e.to_string()),
            Ok(r) => {
                o = o
                    .num("segments", r.segments.len())
                    .num("records", r.records)
                    .num(
                        "first_lsn",
                        r.segments.first().map_or(0, |s| s.info.first_lsn),
                    )
                    .num("last_lsn", r.next_lsn.map_or(0, |n| n.saturating_sub(1)));
                if let Some(t) = &r.tail {
                    o = o.str(
                        "torn_tail",
                        &format!("{} offset {}: {}", t.segment.display(), t.offset, t.damage),
                    );
                }
            }
        }
        let mut bad = String::from("[");
        for (i, (lsn, why)) in self.bad_payloads.iter().enumerate() {
            if i > 0 {
                bad.push(',');
            }
            bad.push_str(
                &json::Object::new()
                    .num("lsn", lsn)
                    .str("error", why)
                    .finish(),
            );
        }
        bad.push(']');
        o.raw("bad_payloads", &bad).finish()
    }
}

/// Checks every segment and payload of the journal in `dir`.
pub fn check(dir: &Path) -> CheckReport {
    let scan = recovery::scan(dir, None).map_err(|e| e.to_string());
    let mut bad_payloads = Vec::new();
    if let Ok(r) = &scan {
        if let (Some(first), Some(next)) = (r.segments.first(), r.next_lsn) {
            if next > first.info.first_lsn {
                match JournalReader::open(dir, first.info.first_lsn, Some(next - 1)) {
                    Ok(reader) => {
                        for rec in reader {
                            match rec {
                                Ok(rec) => {
                                    if let Err(e) = Transaction::decode(&rec.payload) {
                                        bad_payloads.push((rec.lsn, e.to_string()));
                                    }
                                }
                                Err(e) => {
                                    bad_payloads.push((0, e.to_string()));
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => bad_payloads.push((0, e.to_string())),
                }
            }
        }
    }
    CheckReport { scan, bad_payloads }
}

/// Checks a journal directory, or one file (a tape, an archived or copied segment): every
/// record and payload. A file must be whole: a torn end is an error, not a tail to cut.
pub fn check_path(path: &Path) -> CheckReport {
    if path.is_dir() {
        return check(path);
    }
    let mut bad_payloads = Vec::new();
    let scan = (|| -> Result<ScanReport, TapeError> {
        let mut r = TapeReader::open(path)?;
        let first_lsn = r.header().first_lsn;
        let (mut records, mut last_lsn, mut last_generation) = (0u64, None, 0u64);
        while let Some(rec) = r.next_record()? {
            if let Err(e) = Transaction::decode(&rec.payload) {
                bad_payloads.push((rec.lsn, e.to_string()));
            }
            records += 1;
            last_lsn = Some(rec.lsn);
            last_generation = rec.generation;
        }
        let file_len = std::fs::metadata(path).map_or(0, |m| m.len());
        Ok(ScanReport {
            segments: vec![SegmentSummary {
                info: SegmentInfo {
                    path: path.to_path_buf(),
                    first_lsn,
                },
                records,
                last_lsn,
                valid_len: file_len,
                file_len,
            }],
            tail: None,
            next_lsn: Some(last_lsn.map_or(first_lsn, |l| l + 1)),
            last_generation,
            records,
        })
    })()
    .map_err(|e| e.to_string());
    CheckReport { scan, bad_payloads }
}

/// Quotes bytes the way redis-cli shows them.
pub fn quote(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() + 2);
    s.push('"');
    for &c in b {
        match c {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            0x20..=0x7e => s.push(c as char),
            _ => {
                let _ = write!(s, "\\x{c:02x}");
            }
        }
    }
    s.push('"');
    s
}

fn op_human(op: &Op) -> String {
    match op {
        Op::CreateFile { file, logged } => format!(
            "create-file {file} {}",
            if *logged { "logged" } else { "unlogged" }
        ),
        Op::SetLogged { file, logged } => {
            format!("set-logged {file} {}", if *logged { "on" } else { "off" })
        }
        Op::DropFile { file } => format!("drop-file {file}"),
        Op::ClearFile { file } => format!("clear-file {file}"),
        Op::Put {
            file,
            id,
            value: Value::Str(v),
        } => format!("put {file} {} = {}", quote(id), quote(v)),
        Op::Put {
            file,
            id,
            value: Value::Hash(h),
        } => {
            let fields: Vec<String> = h
                .iter()
                .map(|(f, v)| format!("{}={}", quote(f), quote(v)))
                .collect();
            format!("put {file} {} = hash {{{}}}", quote(id), fields.join(" "))
        }
        Op::Delete { file, id } => format!("delete {file} {}", quote(id)),
        Op::Append { file, id, data } => format!("append {file} {} {}", quote(id), quote(data)),
        Op::HashSet { file, id, fields } => {
            let f: Vec<String> = fields
                .iter()
                .map(|(f, v)| format!("{}={}", quote(f), quote(v)))
                .collect();
            format!("hset {file} {} {}", quote(id), f.join(" "))
        }
        Op::HashDel { file, id, fields } => {
            let f: Vec<String> = fields.iter().map(|f| quote(f)).collect();
            format!("hdel {file} {} {}", quote(id), f.join(" "))
        }
        Op::NewGeneration {
            generation,
            first_lsn,
            node,
            name,
            ..
        } => format!(
            "new-generation {generation} from LSN {first_lsn} by {name} ({})",
            crate::datadir::hex(node)
        ),
    }
}

fn op_json(op: &Op) -> String {
    let o = json::Object::new();
    let with_id = |o: json::Object, kind: &str, file: &str, id: &[u8]| {
        let mut s = String::new();
        json::bytes(&mut s, id);
        o.str("op", kind).str("file", file).raw("id", &s)
    };
    let b = |v: &[u8]| {
        let mut s = String::new();
        json::bytes(&mut s, v);
        s
    };
    let pairs = |p: &[(Vec<u8>, Vec<u8>)]| {
        let mut s = String::from("{");
        for (i, (f, v)) in p.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            json::bytes(&mut s, f);
            s.push(':');
            json::bytes(&mut s, v);
        }
        s.push('}');
        s
    };
    match op {
        Op::CreateFile { file, logged } => o
            .str("op", "create-file")
            .str("file", file)
            .bool("logged", *logged),
        Op::SetLogged { file, logged } => o
            .str("op", "set-logged")
            .str("file", file)
            .bool("logged", *logged),
        Op::DropFile { file } => o.str("op", "drop-file").str("file", file),
        Op::ClearFile { file } => o.str("op", "clear-file").str("file", file),
        Op::Put {
            file,
            id,
            value: Value::Str(v),
        } => with_id(o, "put", file, id).raw("value", &b(v)),
        Op::Put {
            file,
            id,
            value: Value::Hash(h),
        } => with_id(o, "put", file, id).raw("hash", &pairs(h)),
        Op::Delete { file, id } => with_id(o, "delete", file, id),
        Op::Append { file, id, data } => with_id(o, "append", file, id).raw("data", &b(data)),
        Op::HashSet { file, id, fields } => {
            with_id(o, "hset", file, id).raw("fields", &pairs(fields))
        }
        Op::HashDel { file, id, fields } => {
            let list: Vec<String> = fields.iter().map(|f| b(f)).collect();
            with_id(o, "hdel", file, id).raw("fields", &format!("[{}]", list.join(",")))
        }
        Op::NewGeneration {
            generation,
            first_lsn,
            node,
            name,
            time_ms,
        } => o
            .str("op", "new-generation")
            .num("generation", generation)
            .num("first_lsn", first_lsn)
            .str("node", &crate::datadir::hex(node))
            .str("name", name)
            .num("time_ms", time_ms),
    }
    .finish()
}

fn print_record(out: &mut dyn Write, rec: &Record, json_out: bool) -> io::Result<()> {
    let txn = Transaction::decode(&rec.payload);
    if json_out {
        let mut o = json::Object::new()
            .num("lsn", rec.lsn)
            .num("generation", rec.generation);
        match &txn {
            Ok(t) => {
                let ops: Vec<String> = t.ops.iter().map(op_json).collect();
                o = o
                    .num("time_ms", t.time_ms)
                    .raw("ops", &format!("[{}]", ops.join(",")));
            }
            Err(e) => o = o.str("error", &e.to_string()),
        }
        return writeln!(out, "{}", o.finish());
    }
    match &txn {
        Ok(t) => {
            let secs = (t.time_ms / 1000) as i64;
            writeln!(
                out,
                "LSN {}  gen {}  {}  {} op(s)",
                rec.lsn,
                rec.generation,
                crate::systemd::format_unix_millis(secs, (t.time_ms % 1000) as u32),
                t.ops.len()
            )?;
            for op in &t.ops {
                writeln!(out, "  {}", op_human(op))?;
            }
        }
        Err(e) => writeln!(
            out,
            "LSN {}  gen {}  PAYLOAD DOES NOT DECODE: {e}",
            rec.lsn, rec.generation
        )?,
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("cannot write the dump: {0}")]
    Out(#[from] io::Error),
    #[error("{path}: {why}")]
    Segment { path: String, why: String },
}

/// Prints records with LSN >= `from`, at most `limit`, from a journal directory or one segment
/// file (e.g. an exported tape). Returns how many were printed.
pub fn dump(
    path: &Path,
    from: Lsn,
    limit: Option<u64>,
    json_out: bool,
    out: &mut dyn Write,
) -> Result<u64, DumpError> {
    let mut n = 0;
    let limit = limit.unwrap_or(u64::MAX);
    if path.is_dir() {
        let oldest = crate::journal::segment::list_segments(path)
            .map_err(|e| DumpError::Segment {
                path: path.display().to_string(),
                why: e.to_string(),
            })?
            .first()
            .map_or(1, |s| s.first_lsn);
        let mut reader = JournalReader::open(path, from.max(oldest), None)?;
        while n < limit {
            match reader.next_record()? {
                Some(rec) => {
                    print_record(out, &rec, json_out)?;
                    n += 1;
                }
                None => break,
            }
        }
        return Ok(n);
    }
    let seg_err = |why: String| DumpError::Segment {
        path: path.display().to_string(),
        why,
    };
    let mut r = SegmentReader::open(path)
        .map_err(|e| seg_err(e.to_string()))?
        .map_err(|d| seg_err(d.to_string()))?;
    while n < limit {
        match r.step().map_err(|e| seg_err(e.to_string()))? {
            Step::Record(rec) => {
                if rec.lsn >= from {
                    print_record(out, &rec, json_out)?;
                    n += 1;
                }
            }
            Step::End | Step::Zeros { .. } => break,
            Step::Damaged { offset, damage } => {
                return Err(seg_err(format!("damaged at offset {offset}: {damage}")));
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::tape::TapeWriter;
    use crate::txn::{Op, Transaction, Value};

    fn payload(v: &str) -> Vec<u8> {
        Transaction {
            time_ms: 1,
            ops: vec![Op::Put {
                file: "main".into(),
                id: b"k".to_vec(),
                value: Value::Str(v.as_bytes().to_vec()),
            }],
        }
        .encode()
    }

    #[test]
    fn check_and_dump_read_a_tape_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.hbt");
        let mut w = TapeWriter::create(&path, [1; 16], 4).unwrap();
        w.append(4, 1, &payload("a")).unwrap();
        w.append(5, 1, &payload("b")).unwrap();
        w.finish().unwrap();
        let r = check_path(&path);
        assert!(r.ok(), "{}", r.render_human(&path));
        assert!(r.render_human(&path).contains("LSN 4..5"));
        let mut out = Vec::new();
        assert_eq!(dump(&path, 1, None, false, &mut out).unwrap(), 2);
        assert!(String::from_utf8_lossy(&out).contains("put main \"k\" = \"b\""));
        // Cut in the middle of the last record: check fails and says where.
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let r = check_path(&path);
        assert!(!r.ok());
        assert!(
            r.render_human(&path).contains("truncated"),
            "{}",
            r.render_human(&path)
        );
    }
}
