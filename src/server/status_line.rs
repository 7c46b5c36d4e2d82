//! The one-line `STATUS=` the daemon sends to systemd (`systemctl status` shows it), and the
//! test-only trigger that freezes the event loop so the system test can prove that systemd's
//! watchdog kills and restarts a stuck daemon.
//!
//! This module only formats and checks; the event loop decides when to send. It must never
//! block the loop, except in the freeze trigger, which exists to do exactly that and is off
//! unless `HOTBACKUP_TEST_FREEZE_FILE` is set in the daemon's environment.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::link::manager::PeerStatus;

/// What the status line is made from.
pub struct StatusInput<'a> {
    pub role: &'a str,
    pub generation: u64,
    pub durable_lsn: u64,
    pub clients: usize,
    /// Why writes are refused, if they are (fenced, checking peers).
    pub writes: Option<&'a str>,
    pub peers: &'a [PeerStatus],
    pub stopping: bool,
}

/// `master gen 3, LSN 1041, writes ok, link: 10.77.0.2:2000 streaming lag 0 (0 ms), 2 client(s)`;
/// on a slave `slave gen 3, LSN 1041, writes readonly, link: 10.77.0.1:2000 streaming behind 0
/// (canary 2 ms), 0 client(s)`.
/// Kept on one line and short: systemd shows it next to the unit.
pub fn format_status(s: &StatusInput<'_>) -> String {
    let mut out = format!(
        "{} gen {}, LSN {}, writes {}",
        s.role,
        s.generation,
        s.durable_lsn,
        s.writes.unwrap_or("ok")
    );
    if s.peers.is_empty() {
        out.push_str(", link: no peer connected");
    } else {
        out.push_str(", link:");
        for (i, p) in s.peers.iter().enumerate() {
            if i > 0 {
                out.push(';');
            }
            let state = if p.state.is_empty() {
                "up"
            } else {
                p.state.as_str()
            };
            out.push_str(&format!(" {} {}", p.addr, state));
            if p.role == "slave" && p.state == "streaming" {
                out.push_str(&format!(" lag {} ({} ms)", p.lag_entries, p.lag_ms));
            }
            if p.role == "master" && p.state == "streaming" {
                // This node follows p: how far behind it is (entries, and the canary's lag).
                out.push_str(&format!(
                    " behind {} (canary {} ms)",
                    p.lag_entries, p.lag_ms
                ));
            }
        }
    }
    out.push_str(&format!(", {} client(s)", s.clients));
    if s.stopping {
        out.push_str(", stopping");
    }
    out
}

/// Longest a freeze lasts: long enough for any watchdog the tests set, bounded so a forgotten
/// trigger file cannot hang a daemon forever.
const MAX_FREEZE: Duration = Duration::from_secs(600);

/// The test-only freeze trigger: when the environment variable `HOTBACKUP_TEST_FREEZE_FILE`
/// names a path, [`FreezeTrigger::check`] blocks the calling (event loop) thread while that
/// file exists, at most [`MAX_FREEZE`]. Unset (the default, and in every packaged unit), it
/// does nothing and costs nothing.
pub struct FreezeTrigger {
    path: Option<PathBuf>,
}

impl FreezeTrigger {
    pub fn from_env() -> FreezeTrigger {
        FreezeTrigger {
            path: std::env::var_os("HOTBACKUP_TEST_FREEZE_FILE")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
        }
    }

    /// Blocks while the trigger file exists (bounded). Returns whether it froze.
    pub fn check(&self) -> bool {
        let Some(path) = &self.path else {
            return false;
        };
        if !path.exists() {
            return false;
        }
        log::warn!(
            "test trigger {} exists: freezing the event loop (no watchdog pings) for up to {}s",
            path.display(),
            MAX_FREEZE.as_secs()
        );
        let start = Instant::now();
        while path.exists() && start.elapsed() < MAX_FREEZE {
            std::thread::sleep(Duration::from_millis(200));
        }
        log::warn!(
            "test trigger: event loop resumes after {:.1}s",
            start.elapsed().as_secs_f64()
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(addr: &str, role: &'static str, state: &str, lag: u64, ms: u64) -> PeerStatus {
        PeerStatus {
            addr: addr.into(),
            name: String::new(),
            client_addr: String::new(),
            sentinel_addr: String::new(),
            role,
            state: state.into(),
            sent: 0,
            acked_received: 0,
            acked_durable: 0,
            acked_applied: 0,
            lag_entries: lag,
            lag_bytes: 0,
            lag_ms: ms,
            last_ack_ms: 0,
            frames_in: 0,
            frames_out: 0,
            bytes_in: 0,
            bytes_out: 0,
            connected_s: 0,
            full_syncs: 0,
            partial_syncs: 0,
            sync_summary: String::new(),
            progress: None,
        }
    }

    #[test]
    fn status_line_names_role_generation_link_and_lag() {
        let peers = [peer("10.77.0.2:2000", "slave", "streaming", 3, 12)];
        let s = format_status(&StatusInput {
            role: "master",
            generation: 2,
            durable_lsn: 1041,
            clients: 4,
            writes: None,
            peers: &peers,
            stopping: false,
        });
        assert_eq!(
            s,
            "master gen 2, LSN 1041, writes ok, link: 10.77.0.2:2000 streaming lag 3 (12 ms), 4 client(s)"
        );
    }

    #[test]
    fn a_slaves_status_line_says_how_far_behind_its_master_it_is() {
        let peers = [peer("10.77.0.1:2000", "master", "streaming", 120, 35)];
        let s = format_status(&StatusInput {
            role: "slave",
            generation: 2,
            durable_lsn: 921,
            clients: 0,
            writes: Some("readonly"),
            peers: &peers,
            stopping: false,
        });
        assert_eq!(
            s,
            "slave gen 2, LSN 921, writes readonly, link: 10.77.0.1:2000 streaming behind 120 (canary 35 ms), 0 client(s)"
        );
    }

    #[test]
    fn status_line_shows_down_links_fencing_and_stopping() {
        let peers = [peer("b:2000", "slave", "down (connection refused)", 0, 0)];
        let s = format_status(&StatusInput {
            role: "master",
            generation: 1,
            durable_lsn: 7,
            clients: 0,
            writes: Some("fenced"),
            peers: &peers,
            stopping: true,
        });
        assert_eq!(
            s,
            "master gen 1, LSN 7, writes fenced, link: b:2000 down (connection refused), 0 client(s), stopping"
        );
        let s = format_status(&StatusInput {
            role: "slave",
            generation: 1,
            durable_lsn: 7,
            clients: 1,
            writes: Some("readonly"),
            peers: &[],
            stopping: false,
        });
        assert_eq!(
            s,
            "slave gen 1, LSN 7, writes readonly, link: no peer connected, 1 client(s)"
        );
    }

    #[test]
    fn freeze_trigger_without_env_or_file_does_nothing() {
        assert!(!FreezeTrigger { path: None }.check());
        let dir = tempfile::tempdir().unwrap();
        let t = FreezeTrigger {
            path: Some(dir.path().join("freeze")),
        };
        assert!(!t.check());
    }

    #[test]
    fn freeze_trigger_blocks_while_the_file_exists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("freeze");
        std::fs::write(&path, b"").unwrap();
        let remover = {
            let path = path.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(500));
                std::fs::remove_file(path).unwrap();
            })
        };
        let start = Instant::now();
        assert!(FreezeTrigger { path: Some(path) }.check());
        assert!(start.elapsed() >= Duration::from_millis(400));
        remover.join().unwrap();
    }
}
