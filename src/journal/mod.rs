//! The journal: the transaction log every update goes through before it is acknowledged.
//!
//! Append-only segment files of framed records (length, CRC32C, LSN strictly +1, generation,
//! payload). This module owns the files under `DATA_DIR/journal/`: their format ([`format`]),
//! writing with group commit ([`writer`]), recovery of a torn tail ([`recovery`]) and reading by
//! LSN ([`reader`]), and tapes: the same format in a file of its own, carried between nodes
//! ([`tape`]); sealed segments are archived before removal ([`archive`]). It knows nothing of what a payload means (see [`crate::txn`]) and never
//! imports the store, the server or the link.

pub mod archive;
pub mod format;
pub mod fs;
pub mod fsync_stats;
pub mod reader;
pub mod recovery;
pub mod segment;
pub mod syncer;
pub mod tape;
pub mod truncate;
pub mod writer;

use std::io;
use std::path::PathBuf;

use thiserror::Error;

pub use format::{DbId, Lsn};
pub use reader::JournalReader;
pub use segment::Record;
pub use syncer::{SyncOutcome, SyncRequest, Syncer};
pub use writer::{CommitMark, Journal, JournalOptions, SyncMode};

#[derive(Debug, Error)]
pub enum JournalError {
    #[error("journal: cannot {op} {}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    #[error("journal: disk full writing {}: {source}", path.display())]
    DiskFull { path: PathBuf, source: io::Error },
    #[error(
        "journal corrupt: segment {} offset {offset}{}: {reason}",
        segment.display(),
        lsn.map(|l| format!(" (at LSN {l})")).unwrap_or_default()
    )]
    Corrupt {
        segment: PathBuf,
        offset: u64,
        lsn: Option<Lsn>,
        reason: String,
    },
    #[error(
        "journal has a gap: {} holds LSN {found} where {expected} was expected",
        segment.display()
    )]
    Gap {
        segment: PathBuf,
        expected: Lsn,
        found: Lsn,
    },
    #[error("journal segment {} belongs to another database", segment.display())]
    WrongDatabase { segment: PathBuf },
    #[error("journal no longer holds LSN {lsn} (oldest is {oldest})")]
    NotFound { lsn: Lsn, oldest: Lsn },
    #[error("journal unusable until restart: {0}")]
    Poisoned(String),
}

impl JournalError {
    fn write_failed(path: PathBuf, source: io::Error) -> JournalError {
        Self::write_failed_op(path, "write", source)
    }

    fn write_failed_op(path: PathBuf, op: &'static str, source: io::Error) -> JournalError {
        if is_disk_full(&source) {
            JournalError::DiskFull { path, source }
        } else {
            JournalError::Io { path, op, source }
        }
    }

    /// Whether the error is the disk being full (writes may work again when space returns).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, JournalError::DiskFull { .. })
    }
}

/// ENOSPC or EDQUOT.
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

#[cfg(test)]
mod tests;
