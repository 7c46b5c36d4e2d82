//! The notify list: who hears of incidents, and how often.
//!
//! A thread of its own takes incidents from [`super::raise`] and tells each target:
//! - `user` (a user name): every terminal the user is logged in on (utmp), like `write`/`wall`;
//! - `tty:/dev/pts/N`: that terminal;
//! - `mail:ADDRESS`: a plain-text mail (the incident's kind in the subject, its fields in the
//!   body) through the local `sendmail` (`[incidents] sendmail`, `/usr/sbin/sendmail` by
//!   default; one warning for the whole run if there is none);
//! - `exec:/path/hook`: runs the hook with the incident in `HOTBACKUP_*` environment variables and
//!   as JSON on stdin, killed after `hook_timeout`.
//!
//! Per kind, at most `burst` incidents are told in each `window`; the rest are counted and told
//! as one summary when the window ends ("12 more link_down incidents …"), so a flapping link
//! never floods anyone. Nothing here blocks the event loop: `send` only queues.
//!
//! [`UTMP_ENV`] (`HOTBACKUP_UTMP`) is for tests and diagnostics only: it names the utmp file
//! read to find a user's terminals instead of the system's, so that a test can log a user in
//! on a terminal it owns without writing the real utmp.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Incident, Kind};

/// One entry of the notify list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A user name: their terminals.
    User(String),
    /// A terminal device.
    Tty(PathBuf),
    /// A mail address, through sendmail.
    Mail(String),
    /// A hook program.
    Exec(PathBuf),
}

impl Target {
    /// Parses a notify list entry: `user`, `tty:/dev/…`, `mail:addr`, `exec:/abs/path`.
    pub fn parse(s: &str) -> Result<Target, String> {
        if let Some(p) = s.strip_prefix("tty:") {
            if !p.starts_with("/dev/") {
                return Err(format!("\"{s}\": a tty target names a device under /dev/"));
            }
            return Ok(Target::Tty(PathBuf::from(p)));
        }
        if let Some(a) = s.strip_prefix("mail:") {
            if !a.contains('@') || a.chars().any(|c| c.is_whitespace() || c == ',') {
                return Err(format!("\"{s}\": expected mail:user@host"));
            }
            return Ok(Target::Mail(a.to_string()));
        }
        if let Some(p) = s.strip_prefix("exec:") {
            if !p.starts_with('/') {
                return Err(format!("\"{s}\": a hook is given by its absolute path"));
            }
            return Ok(Target::Exec(PathBuf::from(p)));
        }
        let valid = !s.is_empty()
            && s.len() <= 32
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        if !valid {
            return Err(format!(
                "\"{s}\": expected a user name, tty:/dev/…, mail:addr or exec:/path"
            ));
        }
        Ok(Target::User(s.to_string()))
    }
}

/// How the notifier behaves.
#[derive(Debug, Clone)]
pub struct Settings {
    pub targets: Vec<Target>,
    /// Incidents of one kind told per window.
    pub burst: u32,
    pub window: Duration,
    pub hook_timeout: Duration,
    pub instance: String,
    /// The sendmail program for `mail:` targets.
    pub sendmail: PathBuf,
}

/// Where sendmail is unless `[incidents] sendmail` says otherwise.
pub const DEFAULT_SENDMAIL: &str = "/usr/sbin/sendmail";

/// Tests and diagnostics only: the utmp file to read instead of the system's.
pub const UTMP_ENV: &str = "HOTBACKUP_UTMP";

/// A handle on the notifier thread.
pub struct Notifier {
    tx: Option<Sender<Incident>>,
    thread: Option<JoinHandle<()>>,
}

impl Notifier {
    pub fn start(settings: Settings) -> std::io::Result<Notifier> {
        let (tx, rx) = mpsc::channel::<Incident>();
        let thread = std::thread::Builder::new()
            .name("hb-notify".into())
            .spawn(move || {
                let mut n = Worker::new(settings);
                loop {
                    match rx.recv_timeout(Duration::from_millis(500)) {
                        Ok(i) => n.incident(&i),
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => {
                            n.flush_summaries(true);
                            return;
                        }
                    }
                    n.flush_summaries(false);
                }
            })?;
        Ok(Notifier {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues an incident for the targets.
    pub fn send(&self, i: &Incident) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(i.clone());
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Per kind: the current window.
struct Window {
    started: Instant,
    told: u32,
    suppressed: u64,
    first_suppressed_ms: u64,
    last_suppressed_ms: u64,
}

/// Decides what is told now and what is summarized later.
pub struct Limiter {
    burst: u32,
    window: Duration,
    kinds: HashMap<Kind, Window>,
}

/// A summary of suppressed incidents of one kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub kind: Kind,
    pub count: u64,
    pub first_ms: u64,
    pub last_ms: u64,
}

impl Limiter {
    pub fn new(burst: u32, window: Duration) -> Limiter {
        Limiter {
            burst: burst.max(1),
            window,
            kinds: HashMap::new(),
        }
    }

    /// Whether to tell this incident now (else it is counted for a summary). A window that
    /// ended first yields its summary.
    pub fn admit(&mut self, i: &Incident, now: Instant) -> (bool, Option<Summary>) {
        let summary = self.expire(i.kind, now);
        let w = self.kinds.entry(i.kind).or_insert(Window {
            started: now,
            told: 0,
            suppressed: 0,
            first_suppressed_ms: 0,
            last_suppressed_ms: 0,
        });
        if w.told < self.burst {
            w.told += 1;
            return (true, summary);
        }
        if w.suppressed == 0 {
            w.first_suppressed_ms = i.time_ms;
        }
        w.suppressed += 1;
        w.last_suppressed_ms = i.time_ms;
        (false, summary)
    }

    /// Ends the window of `kind` if it is over; its summary if it suppressed anything.
    fn expire(&mut self, kind: Kind, now: Instant) -> Option<Summary> {
        let w = self.kinds.get(&kind)?;
        if now.duration_since(w.started) < self.window {
            return None;
        }
        let w = self.kinds.remove(&kind)?;
        (w.suppressed > 0).then_some(Summary {
            kind,
            count: w.suppressed,
            first_ms: w.first_suppressed_ms,
            last_ms: w.last_suppressed_ms,
        })
    }

    /// Summaries of every window that is over (all of them with `all`).
    pub fn due(&mut self, now: Instant, all: bool) -> Vec<Summary> {
        let kinds: Vec<Kind> = self
            .kinds
            .iter()
            .filter(|(_, w)| all || now.duration_since(w.started) >= self.window)
            .map(|(k, _)| *k)
            .collect();
        let mut out = Vec::new();
        for k in kinds {
            if let Some(w) = self.kinds.remove(&k) {
                if w.suppressed > 0 {
                    out.push(Summary {
                        kind: k,
                        count: w.suppressed,
                        first_ms: w.first_suppressed_ms,
                        last_ms: w.last_suppressed_ms,
                    });
                }
            }
        }
        out
    }
}

struct Worker {
    s: Settings,
    limiter: Limiter,
    host: String,
    warned_no_sendmail: bool,
}

impl Worker {
    fn new(s: Settings) -> Worker {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        Worker {
            limiter: Limiter::new(s.burst, s.window),
            s,
            host,
            warned_no_sendmail: false,
        }
    }

    fn incident(&mut self, i: &Incident) {
        let (tell, summary) = self.limiter.admit(i, Instant::now());
        if let Some(sum) = summary {
            self.tell_summary(&sum);
        }
        if tell {
            let text = format!(
                "hotbackup {} on {}: {} {} (incident #{} at {}): {}",
                self.s.instance,
                self.host,
                i.severity.as_str().to_ascii_lowercase(),
                i.kind.name(),
                i.id,
                crate::systemd::format_unix_millis(
                    (i.time_ms / 1000) as i64,
                    (i.time_ms % 1000) as u32
                ),
                i.message
            );
            self.tell(i, &text, 0);
        }
    }

    fn flush_summaries(&mut self, all: bool) {
        for s in self.limiter.due(Instant::now(), all) {
            self.tell_summary(&s);
        }
    }

    fn tell_summary(&mut self, s: &Summary) {
        let fmt =
            |ms: u64| crate::systemd::format_unix_millis((ms / 1000) as i64, (ms % 1000) as u32);
        let text = format!(
            "hotbackup {} on {}: {} more {} incident(s) between {} and {} were not told one by one (rate limit); see `hotbackup incidents`",
            self.s.instance,
            self.host,
            s.count,
            s.kind.name(),
            fmt(s.first_ms),
            fmt(s.last_ms)
        );
        let i = Incident {
            id: 0,
            kind: s.kind,
            severity: s.kind.severity(),
            time_ms: crate::txn::now_ms(),
            message: text.clone(),
            fields: vec![("suppressed".into(), s.count.to_string())],
        };
        self.tell(&i, &text, s.count);
    }

    fn tell(&mut self, i: &Incident, text: &str, suppressed: u64) {
        for t in self.s.targets.clone() {
            let r = match &t {
                Target::User(u) => tell_user(u, text),
                Target::Tty(p) => write_tty(p, text),
                Target::Mail(a) => self.mail(a, i, text, suppressed),
                Target::Exec(p) => self.exec(p, i, suppressed),
            };
            if let Err(e) = r {
                log::warn!("notify {t:?}: {e}");
            }
        }
    }

    /// Once per run (not per incident or address): there is no sendmail to mail with.
    fn warn_no_sendmail(&mut self, why: &str) {
        if std::mem::replace(&mut self.warned_no_sendmail, true) {
            return;
        }
        let addrs: Vec<&str> = self
            .s
            .targets
            .iter()
            .filter_map(|t| match t {
                Target::Mail(a) => Some(a.as_str()),
                _ => None,
            })
            .collect();
        log::warn!(
            "notify: cannot mail incidents to {}: {why} (install a mail transfer agent, set [incidents] sendmail, or use an exec: hook); this warning is not repeated",
            addrs.join(", ")
        );
    }

    fn mail(
        &mut self,
        addr: &str,
        i: &Incident,
        text: &str,
        suppressed: u64,
    ) -> Result<(), String> {
        let sendmail = self.s.sendmail.clone();
        if !sendmail.exists() {
            self.warn_no_sendmail(&format!("no {} on this host", sendmail.display()));
            return Ok(());
        }
        let mut child = match Command::new(&sendmail)
            .args(["-oi", "--", addr])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
                ) =>
            {
                self.warn_no_sendmail(&format!("cannot run {}: {e}", sendmail.display()));
                return Ok(());
            }
            Err(e) => return Err(format!("cannot run {}: {e}", sendmail.display())),
        };
        let mail = mail_message(addr, &self.s.instance, &self.host, i, text, suppressed);
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(mail.as_bytes());
        }
        wait_bounded(
            &mut child,
            self.s.hook_timeout,
            &sendmail.display().to_string(),
        )
    }

    fn exec(&mut self, path: &Path, i: &Incident, suppressed: u64) -> Result<(), String> {
        let mut cmd = Command::new(path);
        cmd.env("HOTBACKUP_INCIDENT_ID", i.id.to_string())
            .env("HOTBACKUP_INCIDENT", i.kind.name())
            .env("HOTBACKUP_MESSAGE_ID", i.kind.message_id())
            .env(
                "HOTBACKUP_SEVERITY",
                i.severity.as_str().to_ascii_lowercase(),
            )
            .env("HOTBACKUP_MESSAGE", &i.message)
            .env("HOTBACKUP_TIME_MS", i.time_ms.to_string())
            .env("HOTBACKUP_INSTANCE", &self.s.instance)
            .env("HOTBACKUP_HOST", &self.host)
            .env("HOTBACKUP_SUPPRESSED", suppressed.to_string());
        for (k, v) in &i.fields {
            let name: String = k
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            cmd.env(format!("HOTBACKUP_FIELD_{name}"), v);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(i.to_json().as_bytes());
            let _ = stdin.write_all(b"\n");
        }
        wait_bounded(&mut child, self.s.hook_timeout, &path.display().to_string())
    }
}

/// The mail for one incident (or a summary): headers, the one-line text, then the incident's
/// facts one per line (`kind:`, `id:`, `severity:`, `time:`, `message:`, each field).
fn mail_message(
    addr: &str,
    instance: &str,
    host: &str,
    i: &Incident,
    text: &str,
    suppressed: u64,
) -> String {
    let severity = i.severity.as_str().to_ascii_lowercase();
    let subject = if suppressed > 0 {
        format!(
            "hotbackup {instance} on {host}: {suppressed} more {} incident(s)",
            i.kind.name()
        )
    } else {
        format!(
            "hotbackup {instance} on {host}: {severity} {} (incident #{})",
            i.kind.name(),
            i.id
        )
    };
    let mut m = format!(
        "To: {addr}\nSubject: {subject}\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\nAuto-Submitted: auto-generated\n\n{text}\n\n"
    );
    let time =
        crate::systemd::format_unix_millis((i.time_ms / 1000) as i64, (i.time_ms % 1000) as u32);
    let mut line = |k: &str, v: &str| m.push_str(&format!("{k}: {v}\n"));
    line("kind", i.kind.name());
    if i.id > 0 {
        line("id", &i.id.to_string());
    }
    line("severity", &severity);
    line("time", &time);
    line("message_id", i.kind.message_id());
    line("instance", instance);
    line("host", host);
    line("message", &i.message.replace('\n', "\n  "));
    for (k, v) in &i.fields {
        line(k, &v.replace('\n', "\n  "));
    }
    m.push_str(&format!(
        "\n`hotbackup incidents` on {host} lists every incident of this node.\n"
    ));
    m
}

/// Waits for a child we started, killing it (by its handle) after `timeout`.
fn wait_bounded(
    child: &mut std::process::Child,
    timeout: Duration,
    what: &str,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(()),
            Ok(Some(st)) => return Err(format!("{what} exited with {st}")),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what} did not finish within {timeout:?}: killed"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("waiting for {what}: {e}")),
        }
    }
}

/// Writes to one terminal without blocking (a full or hung terminal is skipped).
fn write_tty(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let msg = format!("\r\n\x07*** {} ***\r\n", text.replace('\n', "\r\n"));
    f.write_all(msg.as_bytes())
        .map_err(|e| format!("cannot write to {}: {e}", path.display()))
}

/// Every terminal `user` is logged in on (utmp), told like `write` does.
fn tell_user(user: &str, text: &str) -> Result<(), String> {
    let ttys = user_ttys(user);
    if ttys.is_empty() {
        return Ok(()); // not logged in: nothing to tell (the journal and the list keep it)
    }
    let mut errors = Vec::new();
    for t in ttys {
        if let Err(e) = write_tty(&t, text) {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// The terminals of a logged-in user, from utmp. Only the notifier thread calls this
/// (getutxent is not thread-safe).
fn user_ttys(user: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let file = std::env::var_os(UTMP_ENV)
        .filter(|f| !f.is_empty())
        .and_then(|f| {
            std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(f.as_os_str())).ok()
        });
    // SAFETY: utmpxname/setutxent/getutxent/endutxent use libc's static utmp state, used only
    // by this thread; utmpxname copies the NUL-terminated name it is given; each entry is
    // copied out before the next call.
    unsafe {
        if let Some(f) = &file {
            libc::utmpxname(f.as_ptr());
        }
        libc::setutxent();
        loop {
            let p = libc::getutxent();
            if p.is_null() {
                break;
            }
            let e = &*p;
            if e.ut_type != libc::USER_PROCESS {
                continue;
            }
            let name = c_chars(&e.ut_user);
            let line = c_chars(&e.ut_line);
            if name == user && !line.is_empty() && !line.contains("..") {
                out.push(PathBuf::from(format!("/dev/{line}")));
            }
        }
        libc::endutxent();
    }
    out.sort();
    out.dedup();
    out
}

fn c_chars(a: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = a
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::Level;

    fn inc(kind: Kind, id: u64) -> Incident {
        Incident {
            id,
            kind,
            severity: Level::Warn,
            time_ms: 1000 + id,
            message: "m".into(),
            fields: Vec::new(),
        }
    }

    #[test]
    fn targets_parse_and_bad_ones_say_what_was_expected() {
        assert_eq!(Target::parse("root"), Ok(Target::User("root".into())));
        assert_eq!(
            Target::parse("mail:ops@example.com"),
            Ok(Target::Mail("ops@example.com".into()))
        );
        assert_eq!(
            Target::parse("exec:/usr/local/bin/page-me"),
            Ok(Target::Exec("/usr/local/bin/page-me".into()))
        );
        assert_eq!(
            Target::parse("tty:/dev/pts/3"),
            Ok(Target::Tty("/dev/pts/3".into()))
        );
        for bad in [
            "",
            "mail:nobody",
            "exec:relative",
            "tty:/tmp/x",
            "two words",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_limiter_tells_a_burst_then_summarizes_per_kind() {
        let mut l = Limiter::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        let told: Vec<bool> = (1..=10)
            .map(|i| l.admit(&inc(Kind::LinkDown, i), t0).0)
            .collect();
        assert_eq!(told.iter().filter(|t| **t).count(), 2);
        // Another kind has its own budget.
        assert!(l.admit(&inc(Kind::LinkUp, 11), t0).0);
        // Nothing is due before the window ends.
        assert!(l.due(t0 + Duration::from_secs(1), false).is_empty());
        let due = l.due(t0 + Duration::from_secs(61), false);
        assert_eq!(
            due,
            vec![Summary {
                kind: Kind::LinkDown,
                count: 8,
                first_ms: 1003,
                last_ms: 1010
            }]
        );
        // A new window tells again.
        assert!(
            l.admit(&inc(Kind::LinkDown, 12), t0 + Duration::from_secs(62))
                .0
        );
    }

    #[test]
    fn a_mail_names_the_kind_in_its_subject_and_lists_the_fields() {
        let mut i = inc(Kind::LinkDown, 42);
        i.fields.push(("peer".into(), "b:2000".into()));
        let m = mail_message(
            "ops@example.com",
            "db1",
            "a",
            &i,
            "hotbackup db1 on a: …",
            0,
        );
        let (head, body) = m.split_once("\n\n").unwrap();
        assert!(head.starts_with("To: ops@example.com\n"), "{m}");
        assert!(
            head.contains("\nSubject: hotbackup db1 on a: warn link_down (incident #42)\n"),
            "{m}"
        );
        for want in [
            "\nkind: link_down\n",
            "\nid: 42\n",
            "\npeer: b:2000\n",
            "\nmessage: m\n",
        ] {
            assert!(body.contains(want), "{want:?} in {body}");
        }
    }

    #[test]
    fn a_hook_gets_the_incident_and_a_slow_one_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let hook = dir.path().join("hook.sh");
        std::fs::write(
            &hook,
            format!(
                "#!/bin/sh\n{{ echo \"$HOTBACKUP_INCIDENT $HOTBACKUP_INCIDENT_ID $HOTBACKUP_FIELD_PEER\"; cat; }} > {}\n",
                out.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut w = Worker::new(Settings {
            targets: vec![Target::Exec(hook.clone())],
            burst: 5,
            window: Duration::from_secs(60),
            hook_timeout: Duration::from_secs(5),
            instance: "db1".into(),
            sendmail: DEFAULT_SENDMAIL.into(),
        });
        let mut i = inc(Kind::LinkDown, 42);
        i.fields.push(("peer".into(), "b:2000".into()));
        w.incident(&i);
        let got = std::fs::read_to_string(&out).unwrap();
        assert!(got.starts_with("link_down 42 b:2000\n{\"id\":42"), "{got}");
        let slow = dir.path().join("slow.sh");
        std::fs::write(&slow, "#!/bin/sh\nsleep 30\n").unwrap();
        std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).unwrap();
        let t = Instant::now();
        let mut w = Worker::new(Settings {
            targets: vec![Target::Exec(slow)],
            burst: 5,
            window: Duration::from_secs(60),
            hook_timeout: Duration::from_millis(200),
            instance: "db1".into(),
            sendmail: DEFAULT_SENDMAIL.into(),
        });
        let r = w.exec(&dir.path().join("slow.sh"), &i, 0);
        assert!(r.unwrap_err().contains("killed"));
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
