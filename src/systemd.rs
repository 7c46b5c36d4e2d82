//! Thin systemd glue: logging setup (journald or stderr), `sd_notify` messages, the watchdog
//! interval, socket activation (`LISTEN_FDS`) and the open-files limit.
//!
//! Everything here is a no-op when the process does not run under systemd, so the daemon and the
//! admin tools call it unconditionally. This module owns the process-wide logger and the
//! environment variables systemd passes (`JOURNAL_STREAM`, `NOTIFY_SOCKET`, `WATCHDOG_*`,
//! `LISTEN_*`); it must never decide policy (when to be ready, what to log) — callers do.
//!
//! Log levels map to journald priorities (`PRIORITY=`) as error→3, warn→4, info→6,
//! debug/trace→7 ([`syslog_priority`]). `systemd-journal-logger` itself maps info→5 and debug→6, so the journald logger hands
//! it a copy of each record with the level shifted by one step (`journal_level`); the level
//! is used by that crate for `PRIORITY=` only, so nothing else changes.

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::os::fd::{AsFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter, Log, Metadata, Record};
use sd_notify::NotifyState;
use systemd_journal_logger::JournalLog;

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
}

/// Set once the first [`init_logging`] call got past its check, so a second call fails before it
/// opens a journald socket it would only throw away.
static LOGGING_INITIALISED: AtomicBool = AtomicBool::new(false);

/// Installs the process-wide logger behind the `log` facade.
///
/// When `JOURNAL_STREAM` names stderr's device:inode (systemd.exec(5): stderr is connected to the
/// journal), records go natively to journald with `SYSLOG_IDENTIFIER=hotbackup` and
/// `HOTBACKUP_INSTANCE=<instance>`. Otherwise (or if the journald socket cannot be opened) they
/// go to stderr as `2026-11-29T12:00:00.123Z INFO  target: message`.
///
/// A second call returns [`SystemdError::LoggingAlreadyInitialised`]; it never panics.
pub fn init_logging(instance: &str, level: LevelFilter) -> Result<LogTarget, SystemdError> {
    if LOGGING_INITIALISED.swap(true, Ordering::SeqCst) {
        return Err(SystemdError::LoggingAlreadyInitialised);
    }
    let journal = if stderr_is_journal() {
        // If journald's socket is missing (containers), stderr still reaches the journal as a
        // plain stream, so falling back to it loses fields but not records.
        JournalLog::new().ok().map(|j| {
            j.with_syslog_identifier("hotbackup".to_owned())
                .add_extra_field("HOTBACKUP_INSTANCE", instance)
        })
    } else {
        None
    };
    let (logger, target) = match journal {
        Some(j) => (Logger::Journald(j), LogTarget::Journald),
        None => (Logger::Stderr, LogTarget::Stderr),
    };
    log::set_boxed_logger(Box::new(logger)).map_err(|_| SystemdError::LoggingAlreadyInitialised)?;
    log::set_max_level(level);
    Ok(target)
}

/// Changes the level filter of the installed logger (e.g. on SIGHUP reload).
pub fn set_log_level(level: LevelFilter) {
    log::set_max_level(level);
}

enum Logger {
    Journald(JournalLog),
    Stderr,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        match self {
            Logger::Journald(j) => {
                let shifted = record
                    .to_builder()
                    .level(journal_level(record.level()))
                    .build();
                // A failed log call must not take the process down; there is nowhere to report it.
                let _ = j.journal_send(&shifted);
            }
            Logger::Stderr => {
                let line = format_stderr_line(SystemTime::now(), record);
                let _ = io::stderr().lock().write_all(line.as_bytes());
            }
        }
    }

    fn flush(&self) {
        if let Logger::Stderr = self {
            let _ = io::stderr().flush();
        }
    }
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

/// The level to hand `systemd-journal-logger` 2.2.2 so that it writes [`syslog_priority`]: it
/// maps Error→3, Warn→4, Info→5, Debug→6, Trace→7 and uses the level for nothing else.
fn journal_level(level: Level) -> Level {
    match level {
        Level::Error => Level::Error,
        Level::Warn => Level::Warn,
        Level::Info => Level::Debug,
        Level::Debug | Level::Trace => Level::Trace,
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

    #[test]
    fn levels_map_to_syslog_priorities_through_the_journal_crate() {
        // What systemd-journal-logger 2.2.2 writes for a level.
        let crate_priority = |l: Level| match l {
            Level::Error => 3,
            Level::Warn => 4,
            Level::Info => 5,
            Level::Debug => 6,
            Level::Trace => 7,
        };
        for (level, want) in [
            (Level::Error, 3),
            (Level::Warn, 4),
            (Level::Info, 6),
            (Level::Debug, 7),
            (Level::Trace, 7),
        ] {
            assert_eq!(syslog_priority(level), want);
            assert_eq!(crate_priority(journal_level(level)), want, "{level}");
        }
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
