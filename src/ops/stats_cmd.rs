//! `hotbackup stats [--json]`: the statistics of a running node and of each of its links
//! (HB.STATS), D3's "Show statistics".
//!
//! Per link: its state, frames and bytes both ways, connects and reconnects, full and partial
//! syncs, the last acknowledged LSNs, the transaction being sent and the queue of journal
//! entries not yet acknowledged. The daemon keeps them in memory: they count from its start
//! and reset when it restarts (the report says so), so there is nothing to show of a stopped
//! node.

use std::fmt::Write as _;
use std::time::Duration;

use thiserror::Error;

use super::client::{Client, pairs};
use super::json;
use crate::config::Config;
use crate::resp::Value;

#[derive(Debug, Error)]
pub enum StatsError {
    #[error(
        "no answer from the daemon ({0}); statistics are kept by the running daemon only (they reset when it restarts)"
    )]
    NotRunning(std::io::Error),
    #[error("the daemon answered with an error: {0}")]
    Refused(String),
    #[error("unexpected answer to HB.STATS: {0}")]
    Unexpected(String),
}

/// What HB.STATS answered: the node's fields, then each link's.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub node: Vec<(String, String)>,
    pub links: Vec<Vec<(String, String)>>,
}

fn get<'a>(f: &'a [(String, String)], k: &str) -> &'a str {
    f.iter()
        .find(|(x, _)| x == k)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

fn num(f: &[(String, String)], k: &str) -> u64 {
    get(f, k).parse().unwrap_or(0)
}

/// Fields whose values are text in JSON (the rest are numbers).
const TEXT_FIELDS: &[&str] = &[
    "instance",
    "role",
    "reset",
    "peer",
    "name",
    "direction",
    "state",
    "last_error",
];

impl Stats {
    /// Parses HB.STATS's reply.
    pub fn from_reply(v: &Value) -> Result<Stats, StatsError> {
        let Value::Array(items) = v else {
            return Err(match v {
                Value::Error(e) => StatsError::Refused(e.clone()),
                other => StatsError::Unexpected(format!("{other:?}")),
            });
        };
        let mut maps = items.iter().map(pairs);
        let node = maps
            .next()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| StatsError::Unexpected("no node figures".into()))?;
        Ok(Stats {
            node,
            links: maps.collect(),
        })
    }

    pub fn render_human(&self) -> String {
        let n = &self.node;
        let mut o = String::new();
        let started = num(n, "started_ms");
        let _ = writeln!(
            o,
            "hotbackup instance {}: statistics since the daemon started at {} (up {} s); they reset when it restarts",
            get(n, "instance"),
            crate::systemd::format_unix_millis((started / 1000) as i64, (started % 1000) as u32),
            get(n, "uptime_s"),
        );
        let _ = writeln!(
            o,
            "  node      {}, generation {}",
            get(n, "role"),
            get(n, "generation")
        );
        let _ = writeln!(
            o,
            "  journal   LSN {}..{} durable (next {}), {}; store applied {}, checkpoint {}",
            get(n, "journal_first_lsn"),
            get(n, "durable_lsn"),
            get(n, "next_lsn"),
            bytes(num(n, "journal_bytes")),
            get(n, "applied_lsn"),
            get(n, "checkpoint_lsn"),
        );
        let _ = writeln!(
            o,
            "  link port {} accepted, {} dialled, {} authentication failure(s), {} disconnect(s), {} full / {} partial sync(s) served, {} sync timeout(s), {} slot(s) dropped",
            get(n, "accepted"),
            get(n, "dials"),
            get(n, "auth_failures"),
            get(n, "disconnects"),
            get(n, "full_syncs"),
            get(n, "partial_syncs"),
            get(n, "sync_timeouts"),
            get(n, "slots_dropped"),
        );
        if self.links.is_empty() {
            let _ = writeln!(o, "\nno links (no [link] peers configured or connected)");
        }
        for l in &self.links {
            let name = get(l, "name");
            let role = match get(l, "role") {
                "slave" => "a slave this node feeds",
                "master" => "the master this node follows",
                _ => "role not known yet",
            };
            let state = match (get(l, "state"), get(l, "last_error")) {
                ("down", e) if !e.is_empty() => format!("down ({e})"),
                (s, _) => s.replace('_', " "),
            };
            let _ = writeln!(
                o,
                "\nlink {}{} — {}, {}\n  state     {} for {}",
                get(l, "peer"),
                if name.is_empty() {
                    String::new()
                } else {
                    format!(" ({name})")
                },
                role,
                if get(l, "direction") == "dial" {
                    "dialled by this node"
                } else {
                    "connects to this node"
                },
                state,
                secs(num(l, "state_ms")),
            );
            let _ = writeln!(
                o,
                "  frames    {} in, {} out",
                get(l, "frames_in"),
                get(l, "frames_out")
            );
            let _ = writeln!(
                o,
                "  bytes     {} in, {} out",
                bytes(num(l, "bytes_in")),
                bytes(num(l, "bytes_out"))
            );
            let _ = writeln!(
                o,
                "  connects  {} ({} reconnect(s)), {} disconnect(s), {} failed attempt(s)",
                get(l, "connects"),
                get(l, "reconnects"),
                get(l, "disconnects"),
                get(l, "failed_connects")
            );
            let _ = writeln!(
                o,
                "  syncs     {} full, {} partial",
                get(l, "full_syncs"),
                get(l, "partial_syncs")
            );
            let sending = match num(l, "sending_lsn") {
                0 => "nothing in flight".to_string(),
                s => format!("sending LSN {s}"),
            };
            let _ = writeln!(
                o,
                "  LSNs      sent {}, {sending}; acked received {} / durable {} / applied {}",
                get(l, "sent_lsn"),
                get(l, "acked_received"),
                get(l, "acked_durable"),
                get(l, "acked_applied"),
            );
            let _ = writeln!(
                o,
                "  queue     {} journal entr(ies) not yet acknowledged; lag {} entr(ies), {}, {} ms; last heard {} ms ago",
                get(l, "queue_depth"),
                get(l, "lag_entries"),
                bytes(num(l, "lag_bytes")),
                get(l, "lag_ms"),
                get(l, "last_ack_ms"),
            );
        }
        o
    }

    pub fn to_json(&self) -> String {
        let obj = |f: &[(String, String)]| {
            let mut o = json::Object::new();
            for (k, v) in f {
                o = match v.parse::<u64>() {
                    Ok(n) if !TEXT_FIELDS.contains(&k.as_str()) => o.num(k, n),
                    _ => o.str(k, v),
                };
            }
            o.finish()
        };
        let links: Vec<String> = self.links.iter().map(|l| obj(l)).collect();
        json::Object::new()
            .raw("node", &obj(&self.node))
            .raw("links", &format!("[{}]", links.join(",")))
            .finish()
    }
}

fn secs(ms: u64) -> String {
    format!("{}.{} s", ms / 1000, (ms % 1000) / 100)
}

fn bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if b < 1024 {
        return format!("{b} bytes");
    }
    let mut v = b as f64;
    let mut unit = "bytes";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// Asks the running daemon.
pub fn fetch(cfg: &Config) -> Result<Stats, StatsError> {
    let mut c = Client::for_config(cfg, Duration::from_secs(5)).map_err(StatsError::NotRunning)?;
    let v = c.call(&[b"HB.STATS"]).map_err(StatsError::NotRunning)?;
    Stats::from_reply(&v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::Bulk(s.as_bytes().to_vec())
    }

    fn flat(pairs: &[(&str, &str)]) -> Value {
        Value::Array(pairs.iter().flat_map(|(k, v)| [bulk(k), bulk(v)]).collect())
    }

    #[test]
    fn a_reply_renders_for_people_and_as_json() {
        let v = Value::Array(vec![
            flat(&[
                ("instance", "db1"),
                ("role", "master"),
                ("started_ms", "1700000000000"),
                ("journal_bytes", "2048"),
            ]),
            flat(&[
                ("peer", "b:2000"),
                ("name", "b"),
                ("role", "slave"),
                ("direction", "dial"),
                ("state", "down"),
                ("last_error", "connection refused"),
                ("reconnects", "3"),
                ("bytes_out", "5000"),
                ("sending_lsn", "0"),
            ]),
        ]);
        let s = Stats::from_reply(&v).unwrap();
        let text = s.render_human();
        assert!(text.contains("they reset when it restarts"), "{text}");
        assert!(text.contains("2.0 KiB"), "{text}");
        assert!(
            text.contains("link b:2000 (b) — a slave this node feeds, dialled by this node"),
            "{text}"
        );
        assert!(text.contains("down (connection refused)"), "{text}");
        assert!(text.contains("(3 reconnect(s))"), "{text}");
        assert!(text.contains("nothing in flight"), "{text}");
        let j = s.to_json();
        assert!(j.starts_with("{\"node\":{\"instance\":\"db1\""), "{j}");
        assert!(j.contains("\"reconnects\":3"), "{j}");
        assert!(j.contains("\"peer\":\"b:2000\""), "{j}");
        assert!(matches!(
            Stats::from_reply(&Value::Error("ERR x".into())),
            Err(StatsError::Refused(_))
        ));
        assert!(Stats::from_reply(&Value::Array(vec![])).is_err());
    }
}
