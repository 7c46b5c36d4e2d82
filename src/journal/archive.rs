//! The archive of journal segments (`[journal] archive_dir` / `archive_command`): every
//! segment is kept somewhere else before the journal removes it, so tapes can be loaded from
//! any point (`hotbackup journal load ARCHIVE/*.hbj`) — PostgreSQL's WAL archiving.
//!
//! A segment is handed to the archiver as soon as it is sealed (and, at start, every sealed
//! segment still present, in LSN order: archiving is at-least-once, so an archive must accept
//! the identical file again). [`super::Journal::remove_through`] removes a segment only once
//! it is archived. Archiving runs on a thread of its own: copying 64 MiB with fsync, or an
//! archive command copying over the network, may take seconds, and the event loop must not
//! wait for it (a helper thread for latency, not speed). When archiving fails the segment
//! stays, the failure is logged as an INCIDENT, and the same segment is retried (backing off
//! from 1 s to 1 min) before any later one; the journal then grows until it works again.
//!
//! `archive_dir`: the segment is copied to a temporary file in DIR, fsynced, linked as
//! `DIR/NAME` (link(2): never replacing a file), and the directory fsynced. A file of that name
//! with the same contents counts as archived. One of another database is an error (never
//! overwritten); one of the same database with other contents is a segment rewritten after a
//! rejoin cut this node's divergent history back: it is kept as `NAME.superseded-TIME`.
//! `archive_command`: run by `/bin/sh -c` with `%p` replaced by the segment's path, `%f` by its
//! file name (both shell-quoted) and `%%` by `%`; exit status 0 means archived.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use super::format::Lsn;
use super::segment::SegmentInfo;

/// Where sealed segments go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Archiver {
    Dir(PathBuf),
    Command(String),
}

const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// Bytes of an archive command's stderr kept for the error message.
const STDERR_KEEP: usize = 1000;

/// Quotes a string for `/bin/sh`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The command line for one segment: `%p`, `%f` and `%%` replaced.
pub fn expand_command(template: &str, path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut out = String::with_capacity(template.len() + 64);
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('p') => {
                chars.next();
                out.push_str(&shell_quote(&path.to_string_lossy()));
            }
            Some('f') => {
                chars.next();
                out.push_str(&shell_quote(&name));
            }
            Some('%') => {
                chars.next();
                out.push('%');
            }
            _ => out.push('%'),
        }
    }
    out
}

fn same_contents(a: &Path, b: &Path) -> io::Result<bool> {
    let (mut fa, mut fb) = (File::open(a)?, File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// The database id in a segment file's header, if it has a valid one.
fn segment_db_id(p: &Path) -> Option<super::format::DbId> {
    let mut head = Vec::with_capacity(super::format::HEADER_LEN);
    File::open(p)
        .ok()?
        .take(super::format::HEADER_LEN as u64)
        .read_to_end(&mut head)
        .ok()?;
    super::format::SegmentHeader::decode(&head)
        .ok()
        .map(|h| h.db_id)
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

fn copy_to_dir(dir: &Path, src: &Path) -> Result<(), String> {
    let name = src
        .file_name()
        .ok_or_else(|| format!("{} has no file name", src.display()))?;
    let ctx = |what: &str, p: &Path| {
        let p = p.display().to_string();
        let what = what.to_string();
        move |e: io::Error| format!("cannot {what} {p}: {e}")
    };
    std::fs::create_dir_all(dir).map_err(ctx("create", dir))?;
    let dst = dir.join(name);
    if dst.exists() && same_contents(src, &dst).unwrap_or(false) {
        return Ok(());
    }
    // A name of our own: two archivers (an old journal's thread finishing while the new
    // one's starts) never write the same temporary file.
    let mut tmp_name = name.to_owned();
    tmp_name.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        TMP_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        std::fs::copy(src, &tmp).map_err(ctx("copy to", &tmp))?;
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(ctx("fsync", &tmp))?;
        // link(2), not rename(2): an archived file is never replaced.
        for _ in 0..2 {
            match std::fs::hard_link(&tmp, &dst) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(ctx("link to", &dst)(e)),
            }
            if same_contents(src, &dst).map_err(ctx("compare with", &dst))? {
                return Ok(());
            }
            if segment_db_id(&dst) != segment_db_id(src) {
                return Err(format!(
                    "{} exists and belongs to another database (do two databases archive into one directory?); it is not overwritten",
                    dst.display()
                ));
            }
            // The same database, other contents: the segment was rewritten after this node's
            // divergent history was cut back (rejoin). Keep the old one under another name.
            let mut old = name.to_owned();
            old.push(format!(".superseded-{}", crate::txn::now_ms()));
            let old = dir.join(old);
            std::fs::rename(&dst, &old).map_err(ctx("rename", &dst))?;
            log::warn!(
                "journal archive: {} held other contents of the same database (a history cut back by a rejoin); kept as {}",
                dst.display(),
                old.display()
            );
        }
        Err(format!("{} keeps changing; not archived", dst.display()))
    })();
    let _ = std::fs::remove_file(&tmp);
    result?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ctx("fsync", dir))?;
    Ok(())
}

fn run_command(template: &str, src: &Path) -> Result<(), String> {
    let line = expand_command(template, src);
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(&line)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run archive_command `{line}`: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let mut err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if err.len() > STDERR_KEEP {
        let mut cut = STDERR_KEEP;
        while !err.is_char_boundary(cut) {
            cut -= 1;
        }
        err.truncate(cut);
    }
    Err(format!(
        "archive_command `{line}` failed ({}){}",
        out.status,
        if err.is_empty() {
            String::new()
        } else {
            format!(": {err}")
        }
    ))
}

impl Archiver {
    /// Archives one segment file, in this thread.
    pub fn archive(&self, segment: &Path) -> Result<(), String> {
        match self {
            Archiver::Dir(d) => copy_to_dir(d, segment),
            Archiver::Command(c) => run_command(c, segment),
        }
    }

    fn describe(&self) -> String {
        match self {
            Archiver::Dir(d) => format!("archive_dir {}", d.display()),
            Archiver::Command(c) => format!("archive_command `{c}`"),
        }
    }
}

/// The journal's side of the archiver thread.
pub struct ArchiveHandle {
    tx: mpsc::Sender<SegmentInfo>,
    /// First LSN of the last segment archived (0: none yet). Segments are archived in order.
    done: Arc<AtomicU64>,
}

impl ArchiveHandle {
    /// Starts the archiver thread.
    pub fn start(archiver: Archiver) -> io::Result<ArchiveHandle> {
        let (tx, rx) = mpsc::channel::<SegmentInfo>();
        let done = Arc::new(AtomicU64::new(0));
        let d = done.clone();
        std::thread::Builder::new()
            .name("hb-archive".into())
            .spawn(move || worker(archiver, rx, d))?;
        Ok(ArchiveHandle { tx, done })
    }

    /// Hands a sealed segment over (segments must come in LSN order).
    pub fn queue(&self, seg: SegmentInfo) {
        // The thread only ends when this handle is dropped.
        let _ = self.tx.send(seg);
    }

    /// Whether the segment starting at `first_lsn` is archived.
    pub fn is_archived(&self, first_lsn: Lsn) -> bool {
        first_lsn <= self.done.load(Ordering::Acquire)
    }
}

fn worker(archiver: Archiver, rx: mpsc::Receiver<SegmentInfo>, done: Arc<AtomicU64>) {
    let mut queue: VecDeque<SegmentInfo> = VecDeque::new();
    let mut failing = false;
    let mut delay = RETRY_MIN;
    loop {
        let Some(seg) = queue.pop_front() else {
            match rx.recv() {
                Ok(s) => queue.push_back(s),
                Err(_) => return,
            }
            continue;
        };
        match archiver.archive(&seg.path) {
            Ok(()) => {
                done.store(seg.first_lsn, Ordering::Release);
                if failing {
                    log::info!(
                        "journal archive works again: {} archived to {}",
                        seg.path.display(),
                        archiver.describe()
                    );
                }
                failing = false;
                delay = RETRY_MIN;
            }
            Err(e) => {
                if failing {
                    log::warn!(
                        "journal archive still failing ({e}); retrying in {}s",
                        delay.as_secs()
                    );
                } else {
                    crate::incident::raise(
                        crate::incident::Kind::ArchiveFailed,
                        format!(
                            "journal archive failed: {e}; segment {} (and the ones after it) stays in the journal until archived; retrying in {}s",
                            seg.path.display(),
                            delay.as_secs()
                        ),
                        &[("segment", seg.path.display().to_string())],
                    );
                }
                failing = true;
                queue.push_front(seg);
                // Wait, while taking what is queued meanwhile (in order).
                match rx.recv_timeout(delay) {
                    Ok(s) => {
                        queue.push_back(s);
                        while let Ok(s) = rx.try_recv() {
                            queue.push_back(s);
                        }
                        // Not yet time to retry: wait out the rest of the delay.
                        std::thread::sleep(Duration::from_millis(50).min(delay));
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
                delay = (delay * 2).min(RETRY_MAX);
            }
        }
        // Segments queued while we worked.
        while let Ok(s) = rx.try_recv() {
            queue.push_back(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_get_quoted_paths() {
        let p = Path::new("/var/lib/hb/journal/00000000000000000001.hbj");
        assert_eq!(
            expand_command("cp %p /arch/%f && echo 100%%", p),
            "cp '/var/lib/hb/journal/00000000000000000001.hbj' /arch/'00000000000000000001.hbj' && echo 100%"
        );
        assert_eq!(expand_command("x %q %", Path::new("/a b/it's")), "x %q %");
        assert_eq!(
            expand_command("x %p", Path::new("/a b/it's")),
            "x '/a b/it'\\''s'"
        );
    }

    #[test]
    fn a_dir_archive_is_idempotent_and_never_overwrites() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("00000000000000000001.hbj");
        std::fs::write(&src, b"segment").unwrap();
        let a = Archiver::Dir(d.path().join("arch"));
        a.archive(&src).unwrap();
        a.archive(&src).unwrap();
        assert_eq!(
            std::fs::read(d.path().join("arch/00000000000000000001.hbj")).unwrap(),
            b"segment"
        );
        // Not segments (no header): treated as of one database, the old one is kept aside.
        std::fs::write(&src, b"other").unwrap();
        a.archive(&src).unwrap();
        let names: Vec<String> = std::fs::read_dir(d.path().join("arch"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.iter().any(|n| n.contains(".superseded-")));
        assert_eq!(
            std::fs::read(d.path().join("arch/00000000000000000001.hbj")).unwrap(),
            b"other"
        );
        // A segment of another database is never replaced.
        let seg = |db: u8| {
            let mut b = crate::journal::format::SegmentHeader {
                first_lsn: 2,
                db_id: [db; 16],
            }
            .encode()
            .to_vec();
            b.push(db);
            b
        };
        let src2 = d.path().join("00000000000000000002.hbj");
        std::fs::write(&src2, seg(1)).unwrap();
        a.archive(&src2).unwrap();
        std::fs::write(&src2, seg(2)).unwrap();
        let e = a.archive(&src2).unwrap_err();
        assert!(e.contains("another database"), "{e}");
    }

    #[test]
    fn a_failing_command_says_why() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("s.hbj");
        std::fs::write(&src, b"x").unwrap();
        let ok = Archiver::Command(format!("cp %p {}/%f", d.path().join("out").display()));
        std::fs::create_dir(d.path().join("out")).unwrap();
        ok.archive(&src).unwrap();
        assert!(d.path().join("out/s.hbj").exists());
        let bad = Archiver::Command("echo nope >&2; exit 3".into());
        let e = bad.archive(&src).unwrap_err();
        assert!(e.contains("nope") && e.contains("3"), "{e}");
    }

    #[test]
    fn the_thread_archives_in_order_and_retries() {
        let d = tempfile::tempdir().unwrap();
        let arch = d.path().join("arch");
        // A file where the directory should be: archiving fails until it is removed.
        std::fs::write(&arch, b"in the way").unwrap();
        let h = ArchiveHandle::start(Archiver::Dir(arch.clone())).unwrap();
        for first in [1u64, 5] {
            let path = d.path().join(crate::journal::format::segment_name(first));
            std::fs::write(&path, format!("seg {first}")).unwrap();
            h.queue(SegmentInfo {
                path,
                first_lsn: first,
            });
        }
        assert!(!h.is_archived(1));
        std::fs::remove_file(&arch).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !h.is_archived(5) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(h.is_archived(1) && h.is_archived(5));
        assert!(!h.is_archived(6));
    }

    #[test]
    fn the_journal_removes_only_archived_segments() {
        use crate::journal::fs::RealFs;
        use crate::journal::{Journal, JournalOptions, SyncMode};
        let d = tempfile::tempdir().unwrap();
        let arch = d.path().join("arch");
        std::fs::write(&arch, b"in the way").unwrap();
        let (mut j, _) = Journal::open(
            &d.path().join("j"),
            [1; 16],
            1,
            JournalOptions {
                segment_size: 4096,
                sync: SyncMode::None,
            },
            Arc::new(RealFs),
        )
        .unwrap();
        j.set_archiver(Archiver::Dir(arch.clone())).unwrap();
        for _ in 0..40 {
            j.append(1, &[7u8; 500]);
            j.commit().unwrap();
        }
        let segments = j.segments().len();
        assert!(segments > 3);
        // Archiving fails: nothing goes.
        assert!(j.remove_through(j.written_lsn()).unwrap().is_empty());
        std::fs::remove_file(&arch).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut removed = 0;
        while removed < segments - 1 && std::time::Instant::now() < deadline {
            removed += j.remove_through(j.written_lsn()).unwrap().len();
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(removed, segments - 1);
        assert_eq!(std::fs::read_dir(&arch).unwrap().count(), segments - 1);
    }
}
