//! Thin systemd glue: logging setup (journald or stderr), `sd_notify` messages, the watchdog
//! interval, socket activation (`LISTEN_FDS`) and the open-files limit.
//!
//! Everything here is a no-op when the process does not run under systemd, so the daemon and the
//! admin tools call it unconditionally. This module owns the process-wide logger and the
//! environment variables systemd passes (`JOURNAL_STREAM`, `NOTIFY_SOCKET`, `WATCHDOG_*`,
//! `LISTEN_*`); it must never decide policy (when to be ready, what to log) — callers do.
//!
//! Log records go to journald over its native protocol (<https://systemd.io/JOURNAL_NATIVE_PROTOCOL/>),
//! written here: one datagram of `KEY=value\n` fields per record (a value holding a newline as
//! `KEY\n`, its length as 64-bit little endian, the bytes, `\n`), a datagram too large for the
//! socket as a sealed memfd passed with `SCM_RIGHTS`. Log levels map to `PRIORITY=` as
//! error→3, warn→4, info→6, debug/trace→7 ([`syslog_priority`]).
//!
//! [`JOURNAL_SOCKET_ENV`] (`HOTBACKUP_JOURNAL_SOCKET`) is for tests and diagnostics only: it
//! names a socket to send the journald datagrams to instead of journald's, so that a test can
//! read the fields an incident really carries.

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter, Log, Metadata, Record};
use sd_notify::NotifyState;

/// Errors from [`init_logging`].
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    /// A logger is already installed in this process (by an earlier call, or by someone else).
    #[error("logging is already initialised in this process")]
    LoggingAlreadyInitialised,
}

/// Where [`init_logging`] sends log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    /// Natively to journald, with structured fields.
    Journald,
    /// To stderr, one line per record with a UTC timestamp.
    Stderr,
    /// Both: natively to the socket [`JOURNAL_SOCKET_ENV`] names, and to stderr (which is not
    /// the journal).
    JournaldAndStderr,
}

/// journald's socket for the native protocol.
pub const JOURNALD_SOCKET: &str = "/run/systemd/journal/socket";

/// Tests and diagnostics only: the path of a datagram socket that gets the native journald
/// records instead of [`JOURNALD_SOCKET`]. When it is set the records go there even if stderr is
/// not the journal, and then to stderr as well.
pub const JOURNAL_SOCKET_ENV: &str = "HOTBACKUP_JOURNAL_SOCKET";

/// Set once the first [`init_logging`] call got past its check, so a second call fails before it
/// opens a journald socket it would only throw away.
static LOGGING_INITIALISED: AtomicBool = AtomicBool::new(false);

/// Installs the process-wide logger behind the `log` facade.
///
/// When `JOURNAL_STREAM` names stderr's device:inode (systemd.exec(5): stderr is connected to the
/// journal), records go natively to journald with `SYSLOG_IDENTIFIER=hotbackup` and
/// `HOTBACKUP_INSTANCE=<instance>`. Otherwise (or if the journald socket cannot be reached) they
/// go to stderr as `2026-11-29T12:00:00.123Z INFO  target: message`. With
/// [`JOURNAL_SOCKET_ENV`] set, the native records go to that socket (see there).
///
/// A second call returns [`SystemdError::LoggingAlreadyInitialised`]; it never panics.
pub fn init_logging(instance: &str, level: LevelFilter) -> Result<LogTarget, SystemdError> {
    if LOGGING_INITIALISED.swap(true, Ordering::SeqCst) {
        return Err(SystemdError::LoggingAlreadyInitialised);
    }
    let diverted = std::env::var_os(JOURNAL_SOCKET_ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    let stderr_journal = stderr_is_journal();
    let journal = if stderr_journal || diverted.is_some() {
        // If journald's socket is missing (containers), stderr still reaches the journal as a
        // plain stream, so falling back to it loses fields but not records.
        let path = diverted
            .clone()
            .unwrap_or_else(|| PathBuf::from(JOURNALD_SOCKET));
        Journal::connect(&path, instance).ok()
    } else {
        None
    };
    let (logger, target) = match journal {
        Some(j) if stderr_journal => (
            Logger {
                journal: Some(j),
                stderr: false,
            },
            LogTarget::Journald,
        ),
        Some(j) => (
            Logger {
                journal: Some(j),
                stderr: true,
            },
            LogTarget::JournaldAndStderr,
        ),
        None => (
            Logger {
                journal: None,
                stderr: true,
            },
            LogTarget::Stderr,
        ),
    };
    log::set_boxed_logger(Box::new(logger)).map_err(|_| SystemdError::LoggingAlreadyInitialised)?;
    log::set_max_level(level);
    Ok(target)
}

/// Changes the level filter of the installed logger (e.g. on SIGHUP reload).
pub fn set_log_level(level: LevelFilter) {
    log::set_max_level(level);
}

struct Logger {
    journal: Option<Journal>,
    stderr: bool,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        if let Some(j) = &self.journal {
            // A failed log call must not take the process down; there is nowhere to report it.
            let _ = j.send(record);
        }
        if self.stderr {
            let line = format_stderr_line(SystemTime::now(), record);
            let _ = io::stderr().lock().write_all(line.as_bytes());
        }
    }

    fn flush(&self) {
        if self.stderr {
            let _ = io::stderr().flush();
        }
    }
}

/// A client of journald's native protocol.
struct Journal {
    socket: UnixDatagram,
    path: PathBuf,
    /// Fields of every record: `SYSLOG_IDENTIFIER`, `HOTBACKUP_INSTANCE`.
    extra: Vec<u8>,
}

impl Journal {
    /// Opens a socket and checks that journald (or whatever `path` names) listens, with an
    /// empty datagram (which journald ignores).
    fn connect(path: &Path, instance: &str) -> io::Result<Journal> {
        let socket = UnixDatagram::unbound()?;
        socket.send_to(&[], path)?;
        let mut extra = Vec::new();
        put_journal_field(&mut extra, "SYSLOG_IDENTIFIER", b"hotbackup");
        put_journal_field(&mut extra, "HOTBACKUP_INSTANCE", instance.as_bytes());
        Ok(Journal {
            socket,
            path: path.to_path_buf(),
            extra,
        })
    }

    fn send(&self, record: &Record) -> io::Result<()> {
        let mut payload = journal_payload(record);
        payload.extend_from_slice(&self.extra);
        match self.socket.send_to(&payload, &self.path) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => self.send_large(&payload),
            Err(e) => Err(e),
        }
    }

    /// A record too large for one datagram: written to a sealed memfd whose descriptor is sent
    /// instead (the protocol's way for large entries).
    fn send_large(&self, payload: &[u8]) -> io::Result<()> {
        use std::os::fd::{FromRawFd, OwnedFd};
        use std::os::unix::ffi::OsStrExt;
        // SAFETY: memfd_create takes a NUL-terminated name and flags; the result is checked and
        // owned at once.
        let fd = unsafe {
            libc::memfd_create(
                c"hotbackup-journal".as_ptr(),
                libc::MFD_ALLOW_SEALING | libc::MFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        file.write_all(payload)?;
        let seals =
            libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
        // SAFETY: F_ADD_SEALS takes an int; the descriptor is open (owned by `file`).
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let path = self.path.as_os_str().as_bytes();
        // SAFETY: sockaddr_un and msghdr are plain C structs for which all-zero is valid.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        if path.len() >= addr.sun_path.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "journal socket path too long",
            ));
        }
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (d, s) in addr.sun_path.iter_mut().zip(path) {
            *d = *s as libc::c_char;
        }
        let addr_len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + path.len() + 1;
        let fd_len = std::mem::size_of::<libc::c_int>() as libc::c_uint;
        // SAFETY: CMSG_SPACE/CMSG_LEN only compute sizes.
        let (space, len) = unsafe { (libc::CMSG_SPACE(fd_len), libc::CMSG_LEN(fd_len)) };
        // u64 words keep the control buffer aligned for cmsghdr.
        let mut control = vec![0u64; (space as usize).div_ceil(8)];
        // SAFETY: as above.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut addr as *mut libc::sockaddr_un).cast();
        msg.msg_namelen = addr_len as libc::socklen_t;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: `msg` describes `control`, which has room for one header and one int (CMSG_SPACE
        // of it); CMSG_FIRSTHDR therefore returns a valid, aligned pointer into it, and CMSG_DATA
        // points at the int's place. `addr` and `control` outlive the sendmsg call; no iovec is
        // passed (the data is in the memfd).
        let sent = unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = len as _;
            std::ptr::write_unaligned(
                libc::CMSG_DATA(cmsg).cast::<libc::c_int>(),
                file.as_raw_fd(),
            );
            libc::sendmsg(self.socket.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The native-protocol fields of a record: `PRIORITY`, `MESSAGE`, `SYSLOG_PID`, `CODE_FILE`,
/// `CODE_LINE`, `CODE_MODULE`, `TARGET`, then its key-values (keys upper-cased, characters
/// other than `A-Z0-9_` made `_`).
fn journal_payload(record: &Record) -> Vec<u8> {
    let mut b = Vec::with_capacity(512);
    put_journal_field(
        &mut b,
        "PRIORITY",
        syslog_priority(record.level()).to_string().as_bytes(),
    );
    put_journal_field(&mut b, "MESSAGE", record.args().to_string().as_bytes());
    put_journal_field(
        &mut b,
        "SYSLOG_PID",
        std::process::id().to_string().as_bytes(),
    );
    if let Some(f) = record.file() {
        put_journal_field(&mut b, "CODE_FILE", f.as_bytes());
    }
    if let Some(l) = record.line() {
        put_journal_field(&mut b, "CODE_LINE", l.to_string().as_bytes());
    }
    if let Some(m) = record.module_path() {
        put_journal_field(&mut b, "CODE_MODULE", m.as_bytes());
    }
    put_journal_field(&mut b, "TARGET", record.target().as_bytes());
    struct Fields<'a>(&'a mut Vec<u8>);
    impl<'kvs> log::kv::VisitSource<'kvs> for Fields<'_> {
        fn visit_pair(
            &mut self,
            key: log::kv::Key<'kvs>,
            value: log::kv::Value<'kvs>,
        ) -> Result<(), log::kv::Error> {
            put_journal_field(
                self.0,
                &journal_key(key.as_str()),
                value.to_string().as_bytes(),
            );
            Ok(())
        }
    }
    let _ = record.key_values().visit(&mut Fields(&mut b));
    b
}

/// A journal field name from a log key: upper case, `A-Z0-9_` only, not starting with `_` or a
/// digit (journald drops such fields), at most 64 bytes.
fn journal_key(key: &str) -> String {
    let mut k: String = key
        .chars()
        .map(|c| match c.to_ascii_uppercase() {
            c @ ('A'..='Z' | '0'..='9' | '_') => c,
            _ => '_',
        })
        .collect();
    if k.is_empty() || k.starts_with(|c: char| c == '_' || c.is_ascii_digit()) {
        k.insert_str(0, "ESCAPED_");
    }
    k.truncate(64);
    k
}

/// Appends one field: `NAME=value\n`, or for a value with a newline `NAME\n` + its length
/// (u64 little endian) + the value + `\n`.
fn put_journal_field(b: &mut Vec<u8>, name: &str, value: &[u8]) {
    b.extend_from_slice(name.as_bytes());
    if value.contains(&b'\n') {
        b.push(b'\n');
        b.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        b.push(b'=');
    }
    b.extend_from_slice(value);
    b.push(b'\n');
}

/// The syslog priority (`PRIORITY=`) hotbackup uses for a log level, for anything else that
/// writes to the journal (incidents) to stay consistent with the logger.
pub fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// Whether `JOURNAL_STREAM` ("DEV:INODE", decimal) names the file stderr is open on.
fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(parse_journal_stream) else {
        return false;
    };
    match nix::sys::stat::fstat(io::stderr().as_fd()) {
        // dev_t and ino_t are not u64 on every target.
        #[allow(clippy::useless_conversion)]
        Ok(st) => u64::from(st.st_dev) == dev && u64::from(st.st_ino) == ino,
        Err(_) => false,
    }
}

fn parse_journal_stream(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.trim().split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

fn format_stderr_line(now: SystemTime, record: &Record) -> String {
    let mut line = format_utc_timestamp(now);
    let _ = write!(
        line,
        " {:<5} {}: {}",
        record.level(),
        record.target(),
        record.args()
    );
    // The structured fields journald would get (incidents carry MESSAGE_ID and HOTBACKUP_*),
    // as KEY=value after the message.
    struct Fields<'a>(&'a mut String);
    impl<'kvs> log::kv::VisitSource<'kvs> for Fields<'_> {
        fn visit_pair(
            &mut self,
            key: log::kv::Key<'kvs>,
            value: log::kv::Value<'kvs>,
        ) -> Result<(), log::kv::Error> {
            let _ = write!(self.0, " {}={value}", key.as_str().to_ascii_uppercase());
            Ok(())
        }
    }
    let _ = record.key_values().visit(&mut Fields(&mut line));
    line.push('\n');
    line
}

/// Formats `t` as RFC 3339 UTC with milliseconds: `2026-11-29T12:00:00.123Z`.
fn format_utc_timestamp(t: SystemTime) -> String {
    let (secs, millis) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_millis(),
        ),
        Err(e) => {
            // Before 1970: floor to whole seconds, keep milliseconds non-negative.
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match d.subsec_millis() {
                0 => (-secs, 0),
                ms => (-secs - 1, 1000 - ms),
            }
        }
    };
    format_unix_millis(secs, millis)
}

/// Formats Unix time (seconds + milliseconds) as RFC 3339 UTC: `2026-11-29T12:00:00.123Z`.
pub fn format_unix_millis(secs: i64, millis: u32) -> String {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Days since 1970-01-01 → proleptic Gregorian (year, month, day). Howard Hinnant's
/// `civil_from_days` (<https://howardhinnant.github.io/date_algorithms.html>).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let d = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let y = yoe + era * 400 + i64::from(m <= 2);
    // Both are in range by construction.
    (y, m as u32, d as u32)
}

// ---------------------------------------------------------------------------------------------
// sd_notify

/// Sends one datagram of `NAME=value` lines; `Ok(false)` without `NOTIFY_SOCKET`.
fn notify(states: &[NotifyState]) -> io::Result<bool> {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return Ok(false);
    }
    sd_notify::notify(states)?;
    Ok(true)
}

/// `READY=1`: startup (recovery) is finished and the service accepts work.
pub fn notify_ready() -> io::Result<bool> {
    notify(&[NotifyState::Ready])
}

/// `STATUS=…`: a one-line status for `systemctl status`. Newlines would start new assignments in
/// the protocol, so control characters are replaced by spaces.
pub fn notify_status(s: &str) -> io::Result<bool> {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    notify(&[NotifyState::Status(&clean)])
}

/// `STOPPING=1`: shutdown has begun.
pub fn notify_stopping() -> io::Result<bool> {
    notify(&[NotifyState::Stopping])
}

/// `WATCHDOG=1`: the keep-alive ping; send it every [`watchdog_interval`].
pub fn notify_watchdog() -> io::Result<bool> {
    notify(&[NotifyState::Watchdog])
}

/// `EXTEND_TIMEOUT_USEC=…`: ask for `d` more time for the current start/stop phase (long
/// recovery). Sent as a raw assignment because the crate's typed variant is limited to `u32`
/// microseconds (about 71 minutes).
pub fn notify_extend_timeout(d: Duration) -> io::Result<bool> {
    let usec = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    let line = format!("EXTEND_TIMEOUT_USEC={usec}");
    notify(&[NotifyState::Custom(&line)])
}

/// During a long start-up step that is making progress (opening and repairing the store,
/// scanning the journal, replaying it): says `STATUS=recovering: {what}` and asks systemd for
/// [`START_EXTENSION`] more, at most once every [`START_EXTEND_EVERY`], so that `TimeoutStartSec`
/// catches a start that hangs, not one that works through a large data directory. Cheap to
/// call often (per segment, per replay batch); does nothing outside systemd.
pub fn extend_start(what: &str) {
    static LAST: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Ok(mut last) = LAST.lock() {
        if !last.is_some_and(|t| t.elapsed() < START_EXTEND_EVERY) {
            *last = Some(std::time::Instant::now());
            notify_extend_timeout(START_EXTENSION).ok();
        }
    }
    notify_status(&format!("recovering: {what}")).ok();
}

/// How much more time each [`extend_start`] asks for.
pub const START_EXTENSION: Duration = Duration::from_secs(30);
/// How often [`extend_start`] asks, at most.
pub const START_EXTEND_EVERY: Duration = Duration::from_secs(5);

/// `RELOADING=1` with `MONOTONIC_USEC=` (required by systemd ≥ 253 for `Type=notify-reload`).
/// Send [`notify_ready`] when the reload is done.
pub fn notify_reloading() -> io::Result<bool> {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return Ok(false);
    }
    notify(&[NotifyState::Reloading, NotifyState::monotonic_usec_now()?])
}

/// The interval at which to send [`notify_watchdog`]: half of `WATCHDOG_USEC`, as sd_watchdog_enabled(3)
/// recommends. `None` when the watchdog is off, the values are malformed, or `WATCHDOG_PID` names
/// another process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    watchdog_interval_from(usec.as_deref(), pid.as_deref(), std::process::id())
}

fn watchdog_interval_from(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok()?;
    if usec == 0 {
        return None;
    }
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != me {
            return None;
        }
    }
    Some(Duration::from_micros(usec) / 2)
}

// ---------------------------------------------------------------------------------------------
// Socket activation

/// The first fd systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;
/// More fds than this is a corrupt environment, not a socket unit (and must not size a `Vec`).
const MAX_LISTEN_FDS: RawFd = 65_536;

/// Listening sockets passed by systemd socket activation, as (name, fd), in fd order. Names come
/// from `LISTEN_FDNAMES` (`FileDescriptorName=`), `"unknown"` when it is absent, as in
/// sd_listen_fds_with_names(3). The fds are marked close-on-exec; the caller owns them.
///
/// Returns an empty list when `LISTEN_PID`/`LISTEN_FDS` are unset or `LISTEN_PID` is another
/// process (the variables were inherited). Malformed values are an `InvalidData` error.
///
/// `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` are unset when the process is still
/// single-threaded — the only time changing the environment is sound. Called later, they stay;
/// that is harmless because `LISTEN_PID` names this process, so no child will take the fds.
pub fn listen_fds() -> io::Result<Vec<(String, RawFd)>> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    let names = std::env::var("LISTEN_FDNAMES").ok();
    let present = pid.is_some() || fds.is_some() || names.is_some();
    let result = parse_listen_env(
        pid.as_deref(),
        fds.as_deref(),
        names.as_deref(),
        std::process::id(),
    );
    if present && process_is_single_threaded() {
        // SAFETY: `remove_var` is unsound only if another thread reads or writes the
        // environment concurrently; this process has exactly one thread (ours), and only this
        // thread could start another.
        unsafe {
            std::env::remove_var("LISTEN_PID");
            std::env::remove_var("LISTEN_FDS");
            std::env::remove_var("LISTEN_FDNAMES");
        }
    }
    let fds = result?;
    for (_, fd) in &fds {
        set_cloexec(*fd)?;
    }
    Ok(fds)
}

fn parse_listen_env(
    pid: Option<&str>,
    fds: Option<&str>,
    names: Option<&str>,
    me: u32,
) -> io::Result<Vec<(String, RawFd)>> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Ok(Vec::new());
    };
    let pid: u32 = pid
        .trim()
        .parse()
        .map_err(|_| invalid("invalid LISTEN_PID"))?;
    if pid != me {
        return Ok(Vec::new());
    }
    let count: RawFd = fds
        .trim()
        .parse()
        .map_err(|_| invalid("invalid LISTEN_FDS"))?;
    if !(0..=MAX_LISTEN_FDS).contains(&count) {
        return Err(invalid("invalid LISTEN_FDS"));
    }
    let names: Vec<String> = match names {
        Some(n) => n.split(':').map(str::to_owned).collect(),
        None => vec!["unknown".to_owned(); count as usize],
    };
    if names.len() != count as usize {
        return Err(invalid("LISTEN_FDNAMES does not match LISTEN_FDS"));
    }
    Ok(names
        .into_iter()
        .zip(LISTEN_FDS_START..LISTEN_FDS_START + count)
        .collect())
}

fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFD/F_SETFD take no pointers; on an fd that is not open they fail with EBADF.
    // The fd was handed to this process by systemd for exactly this use.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::FD_CLOEXEC == 0 {
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `Threads:` in /proc/self/status is 1. Any doubt (unreadable, malformed) answers `false`.
fn process_is_single_threaded() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse::<u32>().ok())
        == Some(1)
}

// ---------------------------------------------------------------------------------------------
// Resource limits

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (capped at `fs.nr_open` when the hard limit
/// is unlimited, which the kernel would refuse). Returns (old soft, new soft).
pub fn raise_nofile_limit() -> io::Result<(u64, u64)> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    let mut target = hard;
    if target == libc::RLIM_INFINITY {
        target = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(soft);
    }
    if target > soft {
        setrlimit(Resource::RLIMIT_NOFILE, target, hard).map_err(io::Error::from)?;
        Ok((soft, target))
    } else {
        Ok((soft, soft))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;
    use std::sync::Mutex;

    /// Serialises every test that reads or writes `NOTIFY_SOCKET`.
    static ENV_LOCK: Mutex<()> = Mutex::new(());

    fn at(secs: i64, millis: u32) -> String {
        format_unix_millis(secs, millis)
    }

    #[test]
    fn timestamp_formats_known_instants() {
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_868_799, 999), "2000-02-29T23:59:59.999Z");
        assert_eq!(at(1_709_210_096, 7), "2024-02-29T12:34:56.007Z");
        assert_eq!(at(1_795_953_600, 123), "2026-11-29T12:00:00.123Z");
        // 2100 is not a leap year: Feb 28 is followed by Mar 1.
        assert_eq!(at(4_107_542_400 - 1, 0), "2100-02-28T23:59:59.000Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000Z");
        assert_eq!(at(-1, 500), "1969-12-31T23:59:59.500Z");
    }

    #[test]
    fn timestamp_from_system_time_before_epoch_floors() {
        let t = UNIX_EPOCH - Duration::from_millis(1);
        assert_eq!(format_utc_timestamp(t), "1969-12-31T23:59:59.999Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_953_600_123);
        assert_eq!(format_utc_timestamp(t), "2026-11-29T12:00:00.123Z");
    }

    #[test]
    fn stderr_line_has_timestamp_level_target_message() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_953_600_123);
        let line = format_stderr_line(
            t,
            &Record::builder()
                .args(format_args!("recovered to lsn {}", 42))
                .level(Level::Info)
                .target("hotbackup::journal")
                .build(),
        );
        assert_eq!(
            line,
            "2026-11-29T12:00:00.123Z INFO  hotbackup::journal: recovered to lsn 42\n"
        );
    }

    /// The fields of one native-protocol datagram, in order (a reader written apart from the
    /// writer, from the protocol's description).
    fn parse_native(mut b: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        while !b.is_empty() {
            let nl = b.iter().position(|&c| c == b'\n').expect("a field ends");
            let line = &b[..nl];
            if let Some(eq) = line.iter().position(|&c| c == b'=') {
                out.push((
                    String::from_utf8(line[..eq].to_vec()).unwrap(),
                    line[eq + 1..].to_vec(),
                ));
                b = &b[nl + 1..];
            } else {
                let name = String::from_utf8(line.to_vec()).unwrap();
                let len = u64::from_le_bytes(b[nl + 1..nl + 9].try_into().unwrap()) as usize;
                let value = b[nl + 9..nl + 9 + len].to_vec();
                assert_eq!(b[nl + 9 + len], b'\n');
                out.push((name, value));
                b = &b[nl + 10 + len..];
            }
        }
        out
    }

    #[test]
    fn levels_map_to_syslog_priorities() {
        for (level, want) in [
            (Level::Error, 3),
            (Level::Warn, 4),
            (Level::Info, 6),
            (Level::Debug, 7),
            (Level::Trace, 7),
        ] {
            assert_eq!(syslog_priority(level), want);
            let payload = journal_payload(
                &Record::builder()
                    .args(format_args!("x"))
                    .level(level)
                    .build(),
            );
            assert!(
                payload.starts_with(format!("PRIORITY={want}\nMESSAGE=x\n").as_bytes()),
                "{level}: {:?}",
                String::from_utf8_lossy(&payload)
            );
        }
    }

    #[test]
    fn a_field_with_a_newline_is_length_prefixed() {
        let mut b = Vec::new();
        put_journal_field(&mut b, "FOO", b"BAR");
        assert_eq!(b, b"FOO=BAR\n");
        let mut b = Vec::new();
        put_journal_field(&mut b, "FOO", b"BAR\nBAZ");
        assert_eq!(b, b"FOO\n\x07\0\0\0\0\0\0\0BAR\nBAZ\n");
        assert_eq!(journal_key("message_id"), "MESSAGE_ID");
        assert_eq!(journal_key("a-b.c"), "A_B_C");
        assert_eq!(journal_key("_x"), "ESCAPED__X");
        assert_eq!(journal_key("1x"), "ESCAPED_1X");
    }

    #[test]
    fn records_reach_the_journal_socket_with_their_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let j = Journal::connect(&path, "db1").unwrap();
        let mut buf = vec![0u8; 1 << 16];
        assert_eq!(server.recv(&mut buf).unwrap(), 0, "the probe is empty");
        let peer = "b:2000";
        let record = |msg: &std::fmt::Arguments<'_>, f: &dyn Fn(&Record)| {
            let kvs: [(&str, log::kv::Value); 2] = [
                ("message_id", log::kv::Value::from("13fbc8af")),
                ("hotbackup_peer", log::kv::Value::from(peer)),
            ];
            f(&Record::builder()
                .args(*msg)
                .level(Level::Warn)
                .target("hotbackup::link")
                .key_values(&kvs)
                .build())
        };
        record(&format_args!("link down\nsecond line"), &|r| {
            j.send(r).unwrap()
        });
        let n = server.recv(&mut buf).unwrap();
        let fields = parse_native(&buf[..n]);
        let get = |k: &str| {
            fields
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        assert_eq!(get("PRIORITY").as_deref(), Some("4"));
        assert_eq!(get("MESSAGE").as_deref(), Some("link down\nsecond line"));
        assert_eq!(get("MESSAGE_ID").as_deref(), Some("13fbc8af"));
        assert_eq!(get("HOTBACKUP_PEER").as_deref(), Some("b:2000"));
        assert_eq!(get("HOTBACKUP_INSTANCE").as_deref(), Some("db1"));
        assert_eq!(get("SYSLOG_IDENTIFIER").as_deref(), Some("hotbackup"));
        assert_eq!(get("TARGET").as_deref(), Some("hotbackup::link"));
        // Nobody listening: connecting fails (the logger then falls back to stderr).
        drop(server);
        assert!(Journal::connect(&path, "db1").is_err());
    }

    #[test]
    fn a_record_too_large_for_a_datagram_goes_as_a_memfd() {
        use std::os::fd::{FromRawFd, OwnedFd};
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let j = Journal::connect(&path, "db1").unwrap();
        let mut buf = [0u8; 16];
        server.recv(&mut buf).unwrap();
        let big = "x".repeat(4 << 20);
        j.send(
            &Record::builder()
                .args(format_args!("{big}"))
                .level(Level::Error)
                .build(),
        )
        .unwrap();
        // Receive the descriptor.
        let mut control = vec![0u64; 8];
        // SAFETY: a zeroed msghdr pointing at `control` (no name, no data buffer); recvmsg
        // writes at most msg_controllen bytes into it, and the header read back is checked
        // before its data is used.
        let fd = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = control.len() * 8;
            let r = libc::recvmsg(server.as_raw_fd(), &mut msg, 0);
            assert!(r >= 0, "{}", io::Error::last_os_error());
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            assert!(!cmsg.is_null());
            assert_eq!((*cmsg).cmsg_type, libc::SCM_RIGHTS);
            OwnedFd::from_raw_fd(std::ptr::read_unaligned(
                libc::CMSG_DATA(cmsg).cast::<libc::c_int>(),
            ))
        };
        let file = std::fs::File::from(fd);
        let len = file.metadata().unwrap().len() as usize;
        let mut data = vec![0u8; len];
        file.read_exact_at(&mut data, 0).unwrap();
        let fields = parse_native(&data);
        assert_eq!(fields[0], ("PRIORITY".to_string(), b"3".to_vec()));
        assert_eq!(fields[1].0, "MESSAGE");
        assert_eq!(fields[1].1.len(), big.len());
        assert!(
            fields
                .iter()
                .any(|(k, v)| k == "HOTBACKUP_INSTANCE" && v == b"db1")
        );
    }

    #[test]
    fn journal_stream_parses_dev_inode() {
        assert_eq!(parse_journal_stream("8:12345"), Some((8, 12345)));
        assert_eq!(parse_journal_stream("8:12345\n"), Some((8, 12345)));
        assert_eq!(parse_journal_stream("8"), None);
        assert_eq!(parse_journal_stream("x:1"), None);
        assert_eq!(parse_journal_stream(""), None);
    }

    #[test]
    fn second_init_logging_is_an_error_not_a_panic() {
        let first = init_logging("test", LevelFilter::Debug);
        assert!(first.is_ok(), "{first:?}");
        log::info!("logging initialised");
        let second = init_logging("test", LevelFilter::Info);
        assert!(matches!(
            second,
            Err(SystemdError::LoggingAlreadyInitialised)
        ));
        set_log_level(LevelFilter::Warn);
        assert_eq!(log::max_level(), LevelFilter::Warn);
    }

    #[test]
    fn notify_is_a_no_op_without_notify_socket() {
        let _env = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        assert!(std::env::var_os("NOTIFY_SOCKET").is_none());
        assert!(!notify_ready().unwrap());
        assert!(!notify_status("role=master").unwrap());
        assert!(!notify_stopping().unwrap());
        assert!(!notify_watchdog().unwrap());
        assert!(!notify_extend_timeout(Duration::from_secs(10)).unwrap());
        assert!(!notify_reloading().unwrap());
    }

    #[test]
    fn notify_sends_datagrams_to_notify_socket() {
        let _env = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        // SAFETY: ENV_LOCK serialises every test touching NOTIFY_SOCKET, and nothing in this
        // test binary reads the environment from C code.
        unsafe { std::env::set_var("NOTIFY_SOCKET", &path) };
        let mut buf = [0u8; 512];
        let mut recv = || {
            let n = server.recv(&mut buf).unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        };

        let results = [
            notify_ready(),
            notify_status("role=master\nlag=0s"),
            notify_stopping(),
            notify_watchdog(),
            notify_extend_timeout(Duration::from_secs(2 * 3600)),
            notify_reloading(),
        ];
        let got: Vec<String> = (0..results.len()).map(|_| recv()).collect();
        // SAFETY: as above.
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        for r in results {
            assert!(r.unwrap());
        }

        assert_eq!(got[0], "READY=1\n");
        assert_eq!(got[1], "STATUS=role=master lag=0s\n");
        assert_eq!(got[2], "STOPPING=1\n");
        assert_eq!(got[3], "WATCHDOG=1\n");
        assert_eq!(got[4], "EXTEND_TIMEOUT_USEC=7200000000\n");
        let mut reload = got[5].lines();
        assert_eq!(reload.next(), Some("RELOADING=1"));
        let mono = reload
            .next()
            .and_then(|l| l.strip_prefix("MONOTONIC_USEC="));
        assert!(
            mono.is_some_and(|v| v.parse::<u64>().is_ok_and(|v| v > 0)),
            "{got:?}"
        );
    }

    #[test]
    fn watchdog_interval_is_half_the_timeout_for_this_pid() {
        let s = |x: &'static str| Some(x);
        assert_eq!(
            watchdog_interval_from(s("30000000"), None, 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            watchdog_interval_from(s("30000000"), s("7"), 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(watchdog_interval_from(s("30000000"), s("8"), 7), None);
        assert_eq!(watchdog_interval_from(s("30000000"), s("x"), 7), None);
        assert_eq!(watchdog_interval_from(s("0"), None, 7), None);
        assert_eq!(watchdog_interval_from(s("-5"), None, 7), None);
        assert_eq!(watchdog_interval_from(None, s("7"), 7), None);
    }

    #[test]
    fn listen_fds_without_env_is_empty() {
        assert!(std::env::var_os("LISTEN_FDS").is_none());
        assert!(listen_fds().unwrap().is_empty());
    }

    #[test]
    fn listen_env_parses_names_and_rejects_garbage() {
        let fds = parse_listen_env(Some("9"), Some("2"), Some("link:admin"), 9).unwrap();
        assert_eq!(fds, vec![("link".to_owned(), 3), ("admin".to_owned(), 4)]);
        let fds = parse_listen_env(Some("9"), Some("1"), None, 9).unwrap();
        assert_eq!(fds, vec![("unknown".to_owned(), 3)]);
        // Inherited from a parent: not ours.
        assert!(
            parse_listen_env(Some("8"), Some("1"), Some("link"), 9)
                .unwrap()
                .is_empty()
        );
        assert!(
            parse_listen_env(None, Some("1"), None, 9)
                .unwrap()
                .is_empty()
        );
        let bad = |p, f, n| parse_listen_env(Some(p), Some(f), n, 9).unwrap_err().kind();
        assert_eq!(bad("x", "1", None), io::ErrorKind::InvalidData);
        assert_eq!(bad("9", "-1", None), io::ErrorKind::InvalidData);
        assert_eq!(bad("9", "lots", None), io::ErrorKind::InvalidData);
        assert_eq!(bad("9", "2147483647", None), io::ErrorKind::InvalidData);
        assert_eq!(bad("9", "2", Some("one")), io::ErrorKind::InvalidData);
    }

    #[test]
    fn nofile_soft_limit_reaches_hard_limit() {
        let (old, new) = raise_nofile_limit().unwrap();
        assert!(new >= old);
        let (soft, _) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(soft, new);
    }
}
