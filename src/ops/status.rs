//! `hotbackup status`: what a running daemon says of itself (HB.STATUS), or, when none answers,
//! what its data directory shows.

use std::fmt::Write as _;
use std::time::Duration;

use super::client::{Client, pairs};
use super::json;
use crate::config::Config;
use crate::datadir::DataDir;
use crate::journal::recovery;
use crate::resp::Value;
use crate::store;

pub enum Status {
    /// The daemon answered: its HB.STATUS fields.
    Running(Vec<(String, String)>),
    /// Nobody answered; what the data directory holds.
    Stopped {
        why: String,
        disk: Vec<(String, String)>,
    },
}

impl Status {
    /// Exit code in the LSB status convention: 0 running, 3 not running.
    pub fn exit_code(&self) -> i32 {
        match self {
            Status::Running(_) => 0,
            Status::Stopped { .. } => 3,
        }
    }

    /// One field's value: the daemon's (HB.STATUS), or the data directory's when stopped.
    pub fn field(&self, k: &str) -> Option<&str> {
        let list = match self {
            Status::Running(f) => f,
            Status::Stopped { disk, .. } => disk,
        };
        list.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str())
    }

    pub fn render_human(&self, cfg: &Config) -> String {
        let mut o = String::new();
        match self {
            Status::Running(f) => {
                let get = |k: &str| {
                    f.iter()
                        .find(|(x, _)| x == k)
                        .map(|(_, v)| v.as_str())
                        .unwrap_or("?")
                };
                let _ = writeln!(
                    o,
                    "hotbackup instance {}: running (pid {}, up {} s, version {})",
                    get("instance"),
                    get("pid"),
                    get("uptime_s"),
                    get("version")
                );
                let _ = writeln!(
                    o,
                    "  role         {}, generation {}",
                    get("role"),
                    get("generation")
                );
                let _ = writeln!(o, "  writes       {}", get("writes"));
                for (k, label) in [
                    ("master_addr", "master at   "),
                    ("fenced", "FENCED      "),
                    ("rejoin", "rejoin      "),
                    ("switchover", "switchover  "),
                    ("sync", "sync        "),
                ] {
                    let v = get(k);
                    if !v.is_empty() && v != "?" {
                        let _ = writeln!(o, "  {label} {v}");
                    }
                }
                let _ = writeln!(o, "  database id  {}", get("db_id"));
                let _ = writeln!(o, "  durability   {}", get("durability"));
                let _ = writeln!(o, "  data_dir     {}", get("data_dir"));
                let _ = writeln!(
                    o,
                    "  journal      LSN {}..{} durable, {} segment(s)",
                    get("journal_first_lsn"),
                    get("journal_durable_lsn"),
                    get("journal_segments")
                );
                let _ = writeln!(
                    o,
                    "  store        applied LSN {}, checkpoint LSN {}",
                    get("applied_lsn"),
                    get("checkpoint_lsn")
                );
                let _ = writeln!(o, "  files        {}", get("files"));
                let _ = writeln!(o, "  canary       {}", get("canary"));
                let v = get("verify");
                if !v.is_empty() && v != "?" {
                    let _ = writeln!(o, "  verify       {v}");
                }
                let _ = writeln!(o, "  clients      {}", get("clients"));
                for l in get("links")
                    .split('\n')
                    .filter(|l| !l.is_empty() && *l != "?")
                {
                    let _ = writeln!(o, "  link         {l}");
                }
                let refused = get("writes_refused");
                let _ = writeln!(
                    o,
                    "  writes       {}",
                    if refused.is_empty() {
                        "accepted".to_string()
                    } else {
                        format!("REFUSED: {refused}")
                    }
                );
            }
            Status::Stopped { why, disk } => {
                let _ = writeln!(
                    o,
                    "hotbackup instance {}: not running ({why})",
                    cfg.instance
                );
                for (k, v) in disk {
                    let _ = writeln!(o, "  {k:<12} {v}");
                }
            }
        }
        o
    }

    pub fn to_json(&self, cfg: &Config) -> String {
        let mut fields = String::from("{");
        let list = match self {
            Status::Running(f) => f,
            Status::Stopped { disk, .. } => disk,
        };
        for (i, (k, v)) in list.iter().enumerate() {
            if i > 0 {
                fields.push(',');
            }
            json::string(&mut fields, k);
            fields.push(':');
            json::string(&mut fields, v);
        }
        fields.push('}');
        let mut obj = json::Object::new()
            .str("instance", &cfg.instance)
            .bool("running", matches!(self, Status::Running(_)));
        if let Status::Stopped { why, .. } = self {
            obj = obj.str("reason", why);
        }
        obj.raw("fields", &fields).finish()
    }
}

/// Asks the daemon; falls back to reading the data directory.
pub fn status(cfg: &Config) -> Status {
    let answer =
        Client::for_config(cfg, Duration::from_secs(3)).and_then(|mut c| c.call(&[b"HB.STATUS"]));
    match answer {
        Ok(v @ (Value::Map(_) | Value::Array(_))) => Status::Running(pairs(&v)),
        Ok(Value::Error(e)) => Status::Stopped {
            why: format!("the daemon answered with an error: {e}"),
            disk: on_disk(cfg),
        },
        Ok(other) => Status::Stopped {
            why: format!("unexpected answer {other:?}"),
            disk: on_disk(cfg),
        },
        Err(e) => Status::Stopped {
            why: format!("no answer on the client address: {e}"),
            disk: on_disk(cfg),
        },
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What the data directory shows without a daemon.
pub fn on_disk(cfg: &Config) -> Vec<(String, String)> {
    let mut out = vec![("data_dir".to_string(), cfg.data_dir.display().to_string())];
    if !cfg.data_dir.exists() {
        out.push((
            "state".into(),
            "no data directory yet (never started)".into(),
        ));
        return out;
    }
    match store::read_meta(&DataDir::new(&cfg.data_dir).store_path()) {
        Ok(m) => {
            out.push(("database id".into(), hex(&m.db_id)));
            out.push(("generation".into(), m.generation.to_string()));
            out.push((
                "store".into(),
                format!("checkpoint at LSN {}", m.applied_lsn),
            ));
        }
        Err(e) => out.push(("store".into(), format!("unreadable now: {e}"))),
    }
    match recovery::scan(&DataDir::new(&cfg.data_dir).journal_dir(), None) {
        Ok(r) => {
            let first = r.segments.first().map_or(0, |s| s.info.first_lsn);
            let last = r.next_lsn.map_or(0, |n| n.saturating_sub(1));
            out.push((
                "journal".into(),
                format!("LSN {first}..{last}, {} segment(s)", r.segments.len()),
            ));
            if let Some(t) = r.tail {
                out.push((
                    "journal tail".into(),
                    format!(
                        "torn write at {} offset {} (cut at next start): {}",
                        t.segment.display(),
                        t.offset,
                        t.damage
                    ),
                ));
            }
        }
        Err(e) => out.push(("journal".into(), format!("ERROR {e}"))),
    }
    out
}
