//! `hotbackup promote` and `hotbackup rejoin`: role changes, safe to call from scripts.
//!
//! Each talks to the running daemon (HB.PROMOTE / HB.REJOIN); when no daemon answers and the
//! data directory is not locked, it changes the stopped node's data directory instead, so the
//! node starts in its new role. Exit codes ([`Exit`]): 0 done or already so (idempotent),
//! 1 failed, 2 bad usage or config, 3 refused in this node's state (e.g. promote on a fenced
//! node), 4 timed out waiting (rejoin).

use std::time::{Duration, Instant};

use super::client::{Client, pairs};
use crate::config::{Config, Role};
use crate::resp::Value;
use crate::server::EngineError;
use crate::server::engine::{Engine, RoleError};
use crate::server::settings::Settings;

/// How a role command ended, as its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Done = 0,
    Failed = 1,
    Usage = 2,
    Refused = 3,
    TimedOut = 4,
}

/// What a role command did: its exit and the message for the admin.
pub struct Outcome {
    pub exit: Exit,
    pub message: String,
}

fn outcome(exit: Exit, message: impl Into<String>) -> Outcome {
    Outcome {
        exit,
        message: message.into(),
    }
}

const TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to the running daemon; None when none answers.
fn daemon(cfg: &Config) -> Option<Client> {
    Client::for_config(cfg, TIMEOUT).ok()
}

fn field(f: &[(String, String)], k: &str) -> String {
    f.iter()
        .find(|(x, _)| x == k)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// Opens the stopped node's engine (locks its data directory).
fn open_offline(cfg: &Config) -> Result<Engine, Outcome> {
    let opts = Settings::from_config(cfg).engine_options();
    Engine::open(opts).map_err(|e| match e {
        EngineError::Locked(_) => outcome(
            Exit::Failed,
            format!(
                "the daemon holds {} but does not answer on its client address; is it hung? ({e})",
                cfg.data_dir.display()
            ),
        ),
        e => outcome(Exit::Failed, format!("cannot open the data directory: {e}")),
    })
}

/// `hotbackup promote`.
pub fn promote(cfg: &Config) -> Outcome {
    if let Some(mut c) = daemon(cfg) {
        let started = Instant::now();
        return match c.call(&[b"HB.PROMOTE"]) {
            Ok(Value::Error(e)) if e.starts_with("FENCED") => outcome(Exit::Refused, e),
            Ok(Value::Error(e)) => outcome(Exit::Failed, e),
            Ok(v) => {
                let f = pairs(&v);
                let g = field(&f, "generation");
                match field(&f, "result").as_str() {
                    "promoted" => outcome(
                        Exit::Done,
                        format!(
                            "{} is now the master, generation {g} from LSN {}, writable ({} ms)",
                            cfg.instance,
                            field(&f, "first_lsn"),
                            started.elapsed().as_millis()
                        ),
                    ),
                    "stopped_waiting" => outcome(
                        Exit::Done,
                        format!(
                            "{} was already the master (generation {g}); it stopped waiting for its peers and takes writes",
                            cfg.instance
                        ),
                    ),
                    _ => outcome(
                        Exit::Done,
                        format!(
                            "{} is already the master (generation {g}); nothing to do",
                            cfg.instance
                        ),
                    ),
                }
            }
            Err(e) => outcome(Exit::Failed, format!("the daemon did not answer: {e}")),
        };
    }
    let mut eng = match open_offline(cfg) {
        Ok(e) => e,
        Err(o) => return o,
    };
    let first = eng.journal().next_lsn();
    match eng.promote(&cfg.instance) {
        Ok(g) => outcome(
            Exit::Done,
            format!(
                "{} (stopped) is now the master, generation {g} from LSN {first}; it starts as master{}",
                cfg.instance,
                if cfg.role == Role::Slave {
                    " although its config says slave"
                } else {
                    ""
                }
            ),
        ),
        Err(RoleError::AlreadyMaster(g)) => outcome(
            Exit::Done,
            format!(
                "{} (stopped) is already a master (generation {g}); nothing to do",
                cfg.instance
            ),
        ),
        Err(e @ RoleError::Fenced(_)) => outcome(Exit::Refused, e.to_string()),
        Err(e) => outcome(Exit::Failed, e.to_string()),
    }
}

/// Options of `hotbackup rejoin`.
pub struct RejoinOpts {
    pub force: bool,
    /// Return once the node is a slave, without waiting to be in sync.
    pub no_wait: bool,
    /// How long to wait for the node to be in sync with its master.
    pub timeout: Duration,
}

/// `hotbackup rejoin`: the node becomes a slave of its configured peer and catches up;
/// progress goes to `progress` (stderr) while waiting.
pub fn rejoin(cfg: &Config, o: &RejoinOpts, progress: &mut dyn std::io::Write) -> Outcome {
    let Some(mut c) = daemon(cfg) else {
        let mut eng = match open_offline(cfg) {
            Ok(e) => e,
            Err(o) => return o,
        };
        return match eng.become_slave() {
            Ok(()) => outcome(
                Exit::Done,
                format!(
                    "{} (stopped) is now a slave; when started it waits for its master, exports what it holds beyond the fork point, and catches up",
                    cfg.instance
                ),
            ),
            Err(RoleError::AlreadySlave) => outcome(
                Exit::Done,
                format!(
                    "{} (stopped) is already a slave; nothing to do",
                    cfg.instance
                ),
            ),
            Err(e) => outcome(Exit::Failed, e.to_string()),
        };
    };
    let args: Vec<&[u8]> = if o.force {
        vec![b"HB.REJOIN", b"FORCE"]
    } else {
        vec![b"HB.REJOIN"]
    };
    let first = match c.call(&args) {
        Ok(Value::Error(e)) => return outcome(Exit::Refused, e),
        Ok(v) => field(&pairs(&v), "result"),
        Err(e) => return outcome(Exit::Failed, format!("the daemon did not answer: {e}")),
    };
    let what = if first == "already_slave" {
        format!("{} is already a slave", cfg.instance)
    } else {
        format!("{} is now a slave", cfg.instance)
    };
    if o.no_wait {
        return outcome(Exit::Done, what);
    }
    let _ = writeln!(progress, "{what}; waiting for its master and catching up");
    wait_in_sync(cfg, c, o.timeout, progress, what)
}

/// Whether a failed call means the daemon is busy (no answer within the client's timeout)
/// rather than gone.
fn busy(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// INFO replication of a client's node, as (field, value) lines.
fn replication_info(c: &mut Client) -> Result<String, String> {
    match c.call(&[b"INFO", b"replication"]) {
        Ok(Value::Bulk(b)) | Ok(Value::Verbatim(_, b)) => {
            Ok(String::from_utf8_lossy(&b).into_owned())
        }
        Ok(Value::Error(e)) => Err(e),
        Ok(other) => Err(format!("unexpected reply {other:?}")),
        Err(e) => Err(format!("the daemon did not answer: {e}")),
    }
}

fn info_field(info: &str, k: &str) -> String {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{k}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// `hotbackup switchover`: run against either node of the pair; the master hands over to
/// its slave. Exit 0 done, 1 failed or unsettled, 3 refused (this node is not running, or no
/// slave streams from the master: nothing was changed), 4 aborted (the slave did not catch up
/// in time: the old master resumed, nothing changed).
pub fn switchover(cfg: &Config, progress: &mut dyn std::io::Write) -> Outcome {
    let Some(mut c) = daemon(cfg) else {
        return outcome(
            Exit::Refused,
            format!(
                "{} is not running: a switchover needs both nodes up and streaming (if the master is dead, promote the slave: `hotbackup promote`)",
                cfg.instance
            ),
        );
    };
    let info = match replication_info(&mut c) {
        Ok(i) => i,
        Err(e) => return outcome(Exit::Failed, e),
    };
    let mut master = if info_field(&info, "role") == "slave" {
        let host = info_field(&info, "master_host");
        let port = info_field(&info, "master_port");
        let addr = format!("{host}:{port}");
        let Ok(sa) = addr.parse::<std::net::SocketAddr>() else {
            return outcome(
                Exit::Refused,
                format!(
                    "{} is a slave that does not know its master's address yet ({addr:?}); is the link up?",
                    cfg.instance
                ),
            );
        };
        let _ = writeln!(
            progress,
            "{} is a slave; its master is at {sa}",
            cfg.instance
        );
        let mut m = match Client::tcp(sa, TIMEOUT) {
            Ok(m) => m,
            Err(e) => {
                return outcome(
                    Exit::Failed,
                    format!("cannot reach the master at {sa}: {e}"),
                );
            }
        };
        if let Some(pass) = &cfg.client.requirepass {
            let _ = m.call(&[b"AUTH", pass.as_bytes()]);
        }
        m
    } else {
        c
    };
    match master.call(&[b"HB.SWITCHOVER"]) {
        Ok(Value::Error(e)) => return outcome(Exit::Refused, e),
        Ok(Value::Simple(s)) => {
            let _ = writeln!(progress, "{s}");
        }
        Ok(other) => return outcome(Exit::Failed, format!("unexpected reply {other:?}")),
        Err(e) => return outcome(Exit::Failed, format!("the master did not answer: {e}")),
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut reported_unsettled = false;
    loop {
        let info = match replication_info(&mut master) {
            Ok(i) => i,
            Err(e) => return outcome(Exit::Failed, e),
        };
        let o = info_field(&info, "switchover");
        if o.starts_with("done") {
            return outcome(Exit::Done, format!("switchover {o}"));
        }
        if o.starts_with("aborted") {
            return outcome(Exit::TimedOut, format!("switchover {o}"));
        }
        if o.starts_with("unsettled") && !reported_unsettled {
            // Settled at the next contact between the two: keep watching.
            let _ = writeln!(progress, "switchover {o}");
            reported_unsettled = true;
        }
        if Instant::now() >= deadline {
            return outcome(
                Exit::Failed,
                format!("the switchover did not finish in time: {o}"),
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls INFO replication until the slave streams from its master, showing progress.
/// A daemon busy for longer than the client's timeout (a slave committing a big full sync on a
/// loaded machine) is waited for on a new connection, up to `timeout`; one that closed the
/// connection or refuses new ones has stopped.
fn wait_in_sync(
    cfg: &Config,
    mut c: Client,
    timeout: Duration,
    progress: &mut dyn std::io::Write,
    what: String,
) -> Outcome {
    let deadline = Instant::now() + timeout;
    let mut last_line = String::new();
    let mut reports = Vec::new();
    let mut last_progress = Instant::now() - Duration::from_secs(1);
    loop {
        let info = match c.call(&[b"INFO", b"replication"]) {
            Ok(Value::Bulk(b)) => String::from_utf8_lossy(&b).into_owned(),
            Ok(Value::Verbatim(_, b)) => String::from_utf8_lossy(&b).into_owned(),
            Ok(other) => format!("{other:?}"),
            Err(e) if busy(&e) && Instant::now() < deadline => {
                let _ = writeln!(
                    progress,
                    "the daemon did not answer within {TIMEOUT:?} (busy); still waiting"
                );
                // The late answer would come on this connection: take a new one.
                match Client::for_config(cfg, TIMEOUT) {
                    Ok(n) => c = n,
                    Err(e) => {
                        return outcome(Exit::Failed, format!("the daemon stopped answering: {e}"));
                    }
                }
                continue;
            }
            Err(e) => return outcome(Exit::Failed, format!("the daemon stopped answering: {e}")),
        };
        let get = |k: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}:")))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let report = get("rejoin_report");
        if !report.is_empty() && !reports.contains(&report) {
            let _ = writeln!(progress, "{report}");
            reports.push(report);
        }
        let state = get("master_link_state");
        let line = format!(
            "master {} ({}): {}, LSN {}",
            get("master_link_addr"),
            get("master_host") + ":" + &get("master_port"),
            state,
            get("slave_repl_offset")
        );
        let sync = get("master_sync_progress");
        if !sync.is_empty() {
            // A full sync (items, bytes, rate and ETA, from the daemon) or a rejoin's repair,
            // about once a second.
            let now = Instant::now();
            if now.duration_since(last_progress) >= Duration::from_secs(1) {
                last_progress = now;
                let _ = writeln!(progress, "{sync}");
            }
            last_line = line;
        } else if line != last_line {
            let _ = writeln!(progress, "{line}");
            last_line = line;
        }
        if get("master_link_status") == "up" && state == "streaming" {
            let how = get("master_sync_summary");
            let mut msg = format!(
                "{what}; in sync with its master at LSN {}{}",
                get("slave_repl_offset"),
                if how.is_empty() {
                    String::new()
                } else {
                    format!(" (after {how})")
                }
            );
            let full = get("master_last_full_sync");
            if !full.is_empty() && !how.starts_with("a full sync") {
                msg.push_str(&format!("; last full sync: {full}"));
            }
            for r in &reports {
                msg.push('\n');
                msg.push_str(r);
            }
            return outcome(Exit::Done, msg);
        }
        if Instant::now() >= deadline {
            return outcome(
                Exit::TimedOut,
                format!(
                    "{what}, but it was not in sync after {timeout:?} (last: {last_line}); it keeps trying; see `hotbackup status`"
                ),
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
