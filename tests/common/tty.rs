//! Terminals the harness owns, for the notify list's terminal targets: a pseudo-terminal per
//! node directory and purpose, whose output a thread keeps, so tests see what a user at that
//! terminal would have read. A fake utmp file logs a user in on one of them, for the user-name
//! targets (`HOTBACKUP_UTMP`, test/diagnostic only): the real utmp is never written.
#![allow(dead_code)]

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A pseudo-terminal: the device path of its slave side, and everything written to it.
pub struct Pty {
    pub path: String,
    text: Mutex<Vec<u8>>,
    _master: Arc<OwnedFd>,
    /// Held open so that reading the master side never sees end of file.
    _slave: OwnedFd,
}

impl Pty {
    /// Everything written to the terminal so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.text.lock().unwrap()).into_owned()
    }

    /// Waits until the terminal has shown `needle`.
    pub fn wait_for(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.text().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The utmp line (`pts/N`) of this terminal.
    pub fn line(&self) -> &str {
        self.path.strip_prefix("/dev/").unwrap_or(&self.path)
    }
}

/// The pseudo-terminal `name` of the node directory `dir`, opened on first use and kept (open)
/// for the rest of the test process: a closed one's number could go to another test's terminal.
pub fn pty_for(dir: &Path, name: &str) -> Arc<Pty> {
    type Ptys = HashMap<(PathBuf, String), Arc<Pty>>;
    static ALL: OnceLock<Mutex<Ptys>> = OnceLock::new();
    let mut all = ALL.get_or_init(Default::default).lock().unwrap();
    let key = (dir.to_path_buf(), name.to_string());
    if let Some(p) = all.get(&key) {
        return p.clone();
    }
    let (master, path, slave) = open_pty();
    let master = Arc::new(master);
    let pty = Arc::new(Pty {
        path,
        text: Mutex::new(Vec::new()),
        _master: master.clone(),
        _slave: slave,
    });
    let weak = Arc::downgrade(&pty);
    std::thread::Builder::new()
        .name("test-pty".into())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                // SAFETY: reading into a buffer of the length given, from a descriptor kept
                // open by the Arc this thread holds.
                let n =
                    unsafe { libc::read(master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                let Some(p) = weak.upgrade() else { return };
                if n > 0 {
                    p.text.lock().unwrap().extend_from_slice(&buf[..n as usize]);
                } else {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        })
        .expect("spawn the pty reader");
    all.insert(key, pty.clone());
    pty
}

/// A pseudo-terminal: (master side, path of the slave side, the slave side held open).
pub fn open_pty() -> (OwnedFd, String, OwnedFd) {
    // SAFETY: plain libc calls on descriptors this test owns; every return value is checked
    // and each descriptor is wrapped in an OwnedFd at once.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(m >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
        let master = OwnedFd::from_raw_fd(m);
        assert_eq!(libc::grantpt(m), 0, "grantpt");
        assert_eq!(libc::unlockpt(m), 0, "unlockpt");
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(
            libc::ptsname_r(m, name.as_mut_ptr(), name.len()),
            0,
            "ptsname_r"
        );
        let path = std::ffi::CStr::from_ptr(name.as_ptr())
            .to_string_lossy()
            .into_owned();
        let s = libc::open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        assert!(s >= 0, "open {path}: {}", std::io::Error::last_os_error());
        (master, path, OwnedFd::from_raw_fd(s))
    }
}

/// Writes a utmp file at `path` in which each (user, terminal) of `logins` is logged in (one
/// USER_PROCESS record each, as login would write it).
pub fn write_utmp(path: &Path, logins: &[(&str, &Pty)]) {
    let mut out = Vec::new();
    for (user, pty) in logins {
        out.extend_from_slice(&utmp_record(user, pty));
    }
    std::fs::write(path, out).expect("write the test utmp file");
}

fn utmp_record(user: &str, pty: &Pty) -> Vec<u8> {
    // SAFETY: utmpx is a plain C struct for which all-zero is valid.
    let mut u: libc::utmpx = unsafe { std::mem::zeroed() };
    u.ut_type = libc::USER_PROCESS;
    u.ut_pid = std::process::id() as libc::pid_t;
    let put = |dst: &mut [libc::c_char], s: &str| {
        assert!(s.len() <= dst.len(), "{s:?} does not fit utmp");
        for (d, c) in dst.iter_mut().zip(s.bytes()) {
            *d = c as libc::c_char;
        }
    };
    let line = pty.line();
    put(&mut u.ut_line, line);
    put(&mut u.ut_id, &line[line.len().saturating_sub(4)..]);
    put(&mut u.ut_user, user);
    put(&mut u.ut_host, "hotbackup-test");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    u.ut_tv.tv_sec = now.as_secs() as _;
    u.ut_tv.tv_usec = now.subsec_micros() as _;
    // SAFETY: viewing the struct's own bytes, for its size, while it is alive.
    unsafe {
        std::slice::from_raw_parts(
            (&u as *const libc::utmpx).cast::<u8>(),
            std::mem::size_of::<libc::utmpx>(),
        )
    }
    .to_vec()
}
