//! Is a daemon running on a data directory? The offline tools ask before they read or write it.
//!
//! The answer comes from the data directory's lock (`hotbackup.lock`, flock'ed by the daemon
//! for its whole life), not from a pid file or a port: a lock cannot go stale. A tool that
//! changes the data directory keeps the lock ([`Probe::Stopped`]) so that no daemon starts
//! under it; a tool that only reads lets it go at once.

use std::fs::File;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::datadir::DataDir;

pub enum Probe {
    /// No daemon: the lock is ours while this value lives.
    Stopped(File),
    /// A daemon holds the lock.
    Running,
}

#[derive(Debug, Error)]
pub enum ProbeError {
    #[error("data directory {} does not exist", .0.display())]
    Missing(PathBuf),
    #[error("data directory {}: cannot open its lock file: {source}", dir.display())]
    Lock {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// Whether a daemon runs on `data_dir` (taking the lock when none does).
pub fn probe(data_dir: &Path) -> Result<Probe, ProbeError> {
    if !data_dir.is_dir() {
        return Err(ProbeError::Missing(data_dir.to_path_buf()));
    }
    match DataDir::new(data_dir).lock() {
        Ok(f) => Ok(Probe::Stopped(f)),
        Err(None) => Ok(Probe::Running),
        Err(Some(source)) => Err(ProbeError::Lock {
            dir: data_dir.to_path_buf(),
            source,
        }),
    }
}
