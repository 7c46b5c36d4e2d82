//! A fake journald for the integration tests: every node started by the harness sends its native
//! journal records (`HOTBACKUP_JOURNAL_SOCKET`, test/diagnostic only) to a unix datagram socket
//! in its directory, read here by a thread that parses journald's native protocol
//! (<https://systemd.io/JOURNAL_NATIVE_PROTOCOL/>) and keeps every entry, so tests assert the
//! fields an incident really carried (`MESSAGE_ID`, `PRIORITY`, `HOTBACKUP_*`).
//!
//! The parser is written from the protocol's description, apart from the daemon's writer:
//! `KEY=value\n`, or for a value holding a newline `KEY\n` + its length as u64 little endian +
//! the bytes + `\n`; a record too large for a datagram arrives as a memfd (`SCM_RIGHTS`), read
//! the same way. A datagram that does not parse is kept as an error, and tests fail on it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// One journal entry: its fields in the order they came (a field may repeat).
#[derive(Clone)]
pub struct Entry {
    pub fields: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(
                self.fields
                    .iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(v))),
            )
            .finish()
    }
}

impl Entry {
    /// The first value of field `k`, as text.
    pub fn get(&self, k: &str) -> Option<String> {
        self.fields
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// The journal socket of one node directory, and what arrived on it.
pub struct Journal {
    pub path: PathBuf,
    entries: Mutex<Vec<Entry>>,
    errors: Mutex<Vec<String>>,
}

impl Journal {
    /// Every entry so far.
    pub fn entries(&self) -> Vec<Entry> {
        self.entries.lock().unwrap().clone()
    }

    /// Datagrams that did not parse (should be none).
    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().unwrap().clone()
    }

    /// Entries whose field `k` is `v`.
    pub fn with(&self, k: &str, v: &str) -> Vec<Entry> {
        self.entries()
            .into_iter()
            .filter(|e| e.get(k).as_deref() == Some(v))
            .collect()
    }
}

/// The journal of the node directory `dir` (its socket `dir/journal.sock`, or one in /tmp if
/// that path is too long for a socket address), made on first use
/// and kept for the rest of the test process, so a node restarted (or a new `Node` on the same
/// directory) logs to the same place.
pub fn journal_for(dir: &Path) -> Arc<Journal> {
    static ALL: OnceLock<Mutex<HashMap<PathBuf, Arc<Journal>>>> = OnceLock::new();
    let mut all = ALL.get_or_init(Default::default).lock().unwrap();
    if let Some(j) = all.get(dir) {
        return j.clone();
    }
    let mut path = dir.join("journal.sock");
    if path.as_os_str().len() >= 100 {
        // Too long for a unix socket address (108 bytes with its NUL): a short one instead.
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        path = std::path::Path::new("/tmp")
            .join(format!("hb-journal-{}-{n}.sock", std::process::id()));
    }
    let _ = std::fs::remove_file(&path);
    let socket = UnixDatagram::bind(&path)
        .unwrap_or_else(|e| panic!("bind the test journal socket {}: {e}", path.display()));
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let j = Arc::new(Journal {
        path,
        entries: Mutex::new(Vec::new()),
        errors: Mutex::new(Vec::new()),
    });
    let weak = Arc::downgrade(&j);
    std::thread::Builder::new()
        .name("test-journal".into())
        .spawn(move || {
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let got = recv(&socket, &mut buf);
                let Some(j) = weak.upgrade() else { return };
                let data = match got {
                    Ok(Some(d)) => d,
                    Ok(None) => continue,
                    Err(e) => {
                        j.errors.lock().unwrap().push(format!("receive: {e}"));
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                };
                if data.is_empty() {
                    continue; // the logger's "is anyone there" probe
                }
                match parse(&data) {
                    Ok(fields) => j.entries.lock().unwrap().push(Entry { fields }),
                    Err(e) => j.errors.lock().unwrap().push(format!(
                        "{e}: {:?}",
                        String::from_utf8_lossy(&data[..data.len().min(200)])
                    )),
                }
            }
        })
        .expect("spawn the test journal reader");
    all.insert(dir.to_path_buf(), j.clone());
    j
}

/// One datagram (or the contents of the memfd it passed); `None` on a timeout.
fn recv(socket: &UnixDatagram, buf: &mut [u8]) -> std::io::Result<Option<Vec<u8>>> {
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: a zeroed msghdr pointing at `iov` (into `buf`) and `control`, both alive for the
    // call; recvmsg writes at most their lengths. A control header is read only when the
    // kernel returned one (CMSG_FIRSTHDR is null otherwise), and a passed descriptor is owned
    // at once.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => Ok(None),
                std::io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        }
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if !cmsg.is_null()
            && (*cmsg).cmsg_level == libc::SOL_SOCKET
            && (*cmsg).cmsg_type == libc::SCM_RIGHTS
        {
            let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
            let file = std::fs::File::from(OwnedFd::from_raw_fd(fd));
            let mut data = Vec::new();
            use std::io::{Read, Seek};
            let mut f = &file;
            f.seek(std::io::SeekFrom::Start(0))?;
            f.read_to_end(&mut data)?;
            return Ok(Some(data));
        }
        Ok(Some(buf[..n as usize].to_vec()))
    }
}

/// The fields of one native-protocol record.
pub fn parse(mut b: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let nl = b
            .iter()
            .position(|&c| c == b'\n')
            .ok_or("a field without its newline")?;
        let line = &b[..nl];
        let (name, value, rest) = match line.iter().position(|&c| c == b'=') {
            Some(eq) => (&line[..eq], line[eq + 1..].to_vec(), &b[nl + 1..]),
            None => {
                let rest = &b[nl + 1..];
                if rest.len() < 8 {
                    return Err("a binary field without its length".into());
                }
                let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
                let rest = &rest[8..];
                if rest.len() < len + 1 || rest[len] != b'\n' {
                    return Err(format!("a binary field of {len} bytes is cut short"));
                }
                (line, rest[..len].to_vec(), &rest[len + 1..])
            }
        };
        let name = std::str::from_utf8(name).map_err(|_| "a field name is not UTF-8")?;
        let valid = !name.is_empty()
            && !name.starts_with('_')
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name
                .bytes()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_');
        if !valid {
            return Err(format!("{name:?} is not a valid journal field name"));
        }
        out.push((name.to_string(), value));
        b = rest;
    }
    Ok(out)
}
