//! The file-system seam of the journal writer.
//!
//! Every write, sync, truncate, create and remove the journal does goes through [`Fs`] and
//! [`SegmentFile`], so tests can swap in [`FaultyFs`] and cut a write at any byte or fail any
//! sync (disk full, I/O error) on purpose. Reading goes through std directly: a read cannot harm
//! the data, and recovery must read what is really on disk.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// An open segment file, written at its end.
pub trait SegmentFile: Send {
    /// Writes all of `buf` at the end of the file.
    fn append(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Makes everything appended durable (fdatasync).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Cuts the file to `len` bytes; later appends go there.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
}

/// Directory-level operations.
pub trait Fs: Send + Sync {
    /// Creates a new file (it must not exist).
    fn create(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>>;
    /// Opens an existing file for appending at `len` (the end of its valid content).
    fn open_append(&self, path: &Path, len: u64) -> io::Result<Box<dyn SegmentFile>>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes creations and removals in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

struct RealFile {
    file: File,
}

impl SegmentFile for RealFile {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        use std::io::Seek;
        self.file.set_len(len)?;
        self.file.seek(io::SeekFrom::Start(len))?;
        Ok(())
    }
}

impl Fs for RealFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        let file = OpenOptions::new().write(true).create_new(true).open(path)?;
        Ok(Box::new(RealFile { file }))
    }
    fn open_append(&self, path: &Path, len: u64) -> io::Result<Box<dyn SegmentFile>> {
        let file = OpenOptions::new().write(true).open(path)?;
        let mut f = RealFile { file };
        f.truncate(len)?;
        Ok(Box::new(f))
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// Shared switches of a [`FaultyFs`], kept by the test to arm faults while the journal runs.
#[derive(Debug, Default)]
pub struct Faults {
    /// Bytes that may still be appended before appends fail with ENOSPC (u64::MAX = no limit).
    pub space_left: AtomicU64,
    /// Fail the next syncs with EIO.
    pub fail_sync: AtomicBool,
    /// Fail truncation with EIO.
    pub fail_truncate: AtomicBool,
}

impl Faults {
    pub fn new() -> Arc<Faults> {
        Arc::new(Faults {
            space_left: AtomicU64::new(u64::MAX),
            ..Faults::default()
        })
    }
}

/// A [`RealFs`] with injectable faults: a disk that fills up after N more bytes (the write that
/// crosses the limit is cut there, as a real short write would be), failing syncs.
pub struct FaultyFs {
    pub faults: Arc<Faults>,
}

struct FaultyFile {
    inner: Box<dyn SegmentFile>,
    faults: Arc<Faults>,
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOSPC)
}

impl SegmentFile for FaultyFile {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        let left = self.faults.space_left.load(Ordering::SeqCst);
        if (buf.len() as u64) <= left {
            if left != u64::MAX {
                self.faults
                    .space_left
                    .store(left - buf.len() as u64, Ordering::SeqCst);
            }
            return self.inner.append(buf);
        }
        // A short write of what fits, then the error.
        self.inner.append(&buf[..left as usize])?;
        self.faults.space_left.store(0, Ordering::SeqCst);
        Err(enospc())
    }
    fn sync_data(&mut self) -> io::Result<()> {
        if self.faults.fail_sync.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.inner.sync_data()
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        if self.faults.fail_truncate.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.inner.truncate(len)
    }
}

impl Fs for FaultyFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        if self.faults.space_left.load(Ordering::SeqCst) == 0 {
            return Err(enospc());
        }
        Ok(Box::new(FaultyFile {
            inner: RealFs.create(path)?,
            faults: self.faults.clone(),
        }))
    }
    fn open_append(&self, path: &Path, len: u64) -> io::Result<Box<dyn SegmentFile>> {
        Ok(Box::new(FaultyFile {
            inner: RealFs.open_append(path, len)?,
            faults: self.faults.clone(),
        }))
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        RealFs.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        RealFs.sync_dir(dir)
    }
}
