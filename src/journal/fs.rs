//! The file-system seam of the journal writer.
//!
//! Every write, sync, truncate, create and remove the journal does goes through [`Fs`] and
//! [`SegmentFile`], so tests can swap in [`FaultyFs`] and cut a write at any byte or fail any
//! sync (disk full, I/O error) on purpose. Reading goes through std directly: a read cannot harm
//! the data, and recovery must read what is really on disk. Every fdatasync of the real file
//! system is timed into [`super::fsync_stats`].

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// An open segment file, written at given offsets.
pub trait SegmentFile: Send {
    /// Writes all of `buf` at `offset`.
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Makes everything written durable (fdatasync).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Sets the file's length (cutting or extending with a hole).
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// A handle another thread can fdatasync this file through.
    fn sync_handle(&self) -> io::Result<Arc<dyn SyncHandle>>;
}

/// fdatasync of a file, callable from any thread (the journal's syncer).
pub trait SyncHandle: Send + Sync {
    fn sync_data(&self) -> io::Result<()>;
}

impl SyncHandle for File {
    fn sync_data(&self) -> io::Result<()> {
        super::fsync_stats::timed(|| File::sync_data(self))
    }
}

/// Directory-level operations.
pub trait Fs: Send + Sync {
    /// Creates a new file (it must not exist).
    fn create(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>>;
    /// Opens an existing file for writing.
    fn open_write(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>>;
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
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        super::fsync_stats::timed(|| self.file.sync_data())
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
    fn sync_handle(&self) -> io::Result<Arc<dyn SyncHandle>> {
        Ok(Arc::new(self.file.try_clone()?))
    }
}

impl Fs for RealFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        let file = OpenOptions::new().write(true).create_new(true).open(path)?;
        Ok(Box::new(RealFile { file }))
    }
    fn open_write(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        let file = OpenOptions::new().write(true).open(path)?;
        Ok(Box::new(RealFile { file }))
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

/// A [`RealFs`] with injectable faults: a disk that fills up after N more bytes of file growth
/// (the write that crosses the limit is cut there, as a real short write would be), failing
/// syncs and truncations. Overwriting bytes a file already has needs no space.
pub struct FaultyFs {
    pub faults: Arc<Faults>,
}

struct FaultyFile {
    inner: Box<dyn SegmentFile>,
    faults: Arc<Faults>,
    len: u64,
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOSPC)
}

struct FaultySync {
    inner: Arc<dyn SyncHandle>,
    faults: Arc<Faults>,
}

impl SyncHandle for FaultySync {
    fn sync_data(&self) -> io::Result<()> {
        if self.faults.fail_sync.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.inner.sync_data()
    }
}

impl SegmentFile for FaultyFile {
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let end = offset + buf.len() as u64;
        let growth = end.saturating_sub(self.len);
        let left = self.faults.space_left.load(Ordering::SeqCst);
        if growth <= left {
            if left != u64::MAX {
                self.faults
                    .space_left
                    .store(left - growth, Ordering::SeqCst);
            }
            self.inner.write_at(offset, buf)?;
            self.len = self.len.max(end);
            return Ok(());
        }
        // A short write of what fits, then the error.
        let fits = (self.len.saturating_sub(offset) + left) as usize;
        self.inner.write_at(offset, &buf[..fits.min(buf.len())])?;
        self.len = self.len.max(offset + fits as u64);
        self.faults.space_left.store(0, Ordering::SeqCst);
        Err(enospc())
    }
    fn sync_data(&mut self) -> io::Result<()> {
        if self.faults.fail_sync.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.inner.sync_data()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        if self.faults.fail_truncate.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.inner.set_len(len)?;
        self.len = len;
        Ok(())
    }
    fn sync_handle(&self) -> io::Result<Arc<dyn SyncHandle>> {
        Ok(Arc::new(FaultySync {
            inner: self.inner.sync_handle()?,
            faults: self.faults.clone(),
        }))
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
            len: 0,
        }))
    }
    fn open_write(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        let len = std::fs::metadata(path)?.len();
        Ok(Box::new(FaultyFile {
            inner: RealFs.open_write(path)?,
            faults: self.faults.clone(),
            len,
        }))
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        RealFs.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        RealFs.sync_dir(dir)
    }
}
