//! `hotbackup save --to FILE`: a consistent snapshot of a running node (master or slave) in a
//! save file, while writes go on.
//!
//! The snapshot is pulled over the client connection (HB.SNAPSHOT, see
//! `server::commands::snapshot`): the daemon holds a redb read transaction at LSN L and hands
//! out lz4 chunks; this command writes them with [`SaveWriter`] (`FILE.tmp`, then fsync and
//! rename), with progress on stderr. So the file is written by the admin's process, where and
//! with the permissions the admin chooses — also from another host — and the daemon needs no
//! thread and writes no file. The save holds the database id, L, the generation history, the
//! catalog and a SHA-256; `hotbackup restore` turns it into a node at L, and tapes from L+1
//! (`journal export --from L+1`) continue it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use super::client::Client;
use super::progress::{Progress, human_bytes};
use crate::config::Config;
use crate::journal::Lsn;
use crate::resp::Value;
use crate::savefile::{SaveError, SaveHeader, SaveWriter};

/// Chunks asked for per round trip.
const CHUNKS_PER_CALL: &[u8] = b"4";

#[derive(Debug, Error)]
pub enum SaveCmdError {
    #[error("{0} exists already: choose another name, remove it, or give --force")]
    Exists(PathBuf),
    #[error("cannot reach the daemon: {0} (save reads from a running node)")]
    Connect(std::io::Error),
    #[error("the daemon: {0}")]
    Daemon(String),
    #[error("lost the daemon mid-save: {0}; nothing was written")]
    Lost(std::io::Error),
    #[error(transparent)]
    File(#[from] SaveError),
}

#[derive(Debug, Clone)]
pub struct SaveReport {
    pub path: PathBuf,
    pub lsn: Lsn,
    pub items: u64,
    pub chunks: u64,
    pub bytes: u64,
    pub files: usize,
    pub took: Duration,
}

impl SaveReport {
    pub fn render_human(&self) -> String {
        format!(
            "saved {} item(s) of {} file(s) at LSN {} to {} ({}, {:.1} s); continue it with tapes from LSN {}",
            self.items,
            self.files,
            self.lsn,
            self.path.display(),
            human_bytes(self.bytes),
            self.took.as_secs_f64(),
            self.lsn + 1
        )
    }
}

fn unexpected(what: &str, v: &Value) -> SaveCmdError {
    match v {
        Value::Error(e) => SaveCmdError::Daemon(e.clone()),
        other => SaveCmdError::Daemon(format!("unexpected reply to {what}: {other:?}")),
    }
}

/// Saves the running node of `cfg` to `out`.
pub fn save(cfg: &Config, out: &Path, force: bool) -> Result<SaveReport, SaveCmdError> {
    if out.exists() && !force {
        return Err(SaveCmdError::Exists(out.to_path_buf()));
    }
    let mut c = Client::for_config(cfg, Duration::from_secs(60)).map_err(SaveCmdError::Connect)?;
    let begin = c
        .call(&[b"HB.SNAPSHOT", b"BEGIN"])
        .map_err(SaveCmdError::Lost)?;
    let (header, total) = match &begin {
        Value::Array(a) => match (a.first(), a.get(1)) {
            (Some(Value::Bulk(h)), Some(Value::Int(n))) => (
                SaveHeader::decode(h)
                    .map_err(|e| SaveCmdError::Daemon(format!("bad snapshot header: {e}")))?,
                *n as u64,
            ),
            _ => return Err(unexpected("HB.SNAPSHOT BEGIN", &begin)),
        },
        other => return Err(unexpected("HB.SNAPSHOT BEGIN", other)),
    };
    let mut w = SaveWriter::create(out, &header)?;
    let mut progress = Progress::new("save", Some(total));
    let (mut items, mut chunks) = (0u64, 0u64);
    loop {
        let r = c
            .call(&[b"HB.SNAPSHOT", b"NEXT", CHUNKS_PER_CALL])
            .map_err(SaveCmdError::Lost)?;
        let list = match r {
            Value::Nil => break,
            Value::Array(a) => a,
            other => return Err(unexpected("HB.SNAPSHOT NEXT", &other)),
        };
        for pair in list.chunks(2) {
            match pair {
                [Value::Bulk(payload), Value::Int(n)] => {
                    w.add_chunk(payload, *n as u64)?;
                    items += *n as u64;
                    chunks += 1;
                }
                _ => {
                    return Err(SaveCmdError::Daemon(
                        "malformed HB.SNAPSHOT NEXT reply".into(),
                    ));
                }
            }
        }
        progress.set(items, w.bytes());
    }
    let bytes = w.finish()?;
    let took = progress.finish();
    Ok(SaveReport {
        path: out.to_path_buf(),
        lsn: header.lsn,
        items,
        chunks,
        bytes,
        files: header.catalog.len(),
        took,
    })
}
