//! Helpers for tests of a master/slave pair: configs, waiting for catch-up, comparing data.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Node, free_port, key_file, wait_until};

pub const KEY: &str = "0123456789abcdef-pair-secret";

/// Writes a node's config in `dir` (its own data dir inside).
pub fn node_config(
    dir: &Path,
    role: &str,
    link_port: u16,
    peers: &[String],
    key: &Path,
    extra: &str,
) {
    std::fs::create_dir_all(dir).unwrap();
    let peers: Vec<String> = peers.iter().map(|p| format!("\"{p}\"")).collect();
    let text = format!(
        "role = \"{role}\"\ndata_dir = \"{data}\"\n\n[client]\nlisten = \"127.0.0.1:{client_port}\"\nsentinel_listen = \"127.0.0.1:{sentinel_port}\"\n\n[link]\nlisten = \"127.0.0.1:{link_port}\"\npeers = [{peers}]\nkey_file = \"{key}\"\nheartbeat_interval = \"200ms\"\npeer_timeout = \"2s\"\nreconnect_min = \"50ms\"\nreconnect_max = \"500ms\"\n{extra}\n\n[log]\nlevel = \"info\"\n",
        data = dir.join("data").display(),
        client_port = free_port(),
        sentinel_port = free_port(),
        peers = peers.join(", "),
        key = key.display(),
    );
    // Every incident is told to a hook that appends it to notified.log (see assert_incident).
    let hook = super::notify_hook(dir);
    let text = if extra.contains("[incidents]") {
        text
    } else {
        format!(
            "{text}\n[incidents]\nnotify = [\"exec:{}\"]\nnotify_burst = 1000\n",
            hook.display()
        )
    };
    std::fs::write(dir.join("node.toml"), text).unwrap();
}

/// Asserts that `n` raised an incident of `kind` and that it reached every place: its log
/// line with the journald fields, its notify hook, and `hotbackup incidents`.
pub fn assert_incident(n: &Node, kind: &str) {
    let notified = n.dir.join("notified.log");
    let needle = format!("\"kind\":\"{kind}\"");
    let ok = wait_until(Duration::from_secs(15), || {
        std::fs::read_to_string(&notified).is_ok_and(|t| t.contains(&needle))
    });
    assert!(
        ok,
        "incident {kind} did not reach the notify hook of {}: {:?}\n{}",
        n.addr,
        std::fs::read_to_string(&notified),
        n.log_text()
    );
    let log = n.log_text();
    let line = log
        .lines()
        .find(|l| l.contains(&format!("INCIDENT {kind}:")))
        .unwrap_or_else(|| panic!("no INCIDENT {kind} line in the log:\n{log}"));
    assert!(
        line.contains("MESSAGE_ID=") && line.contains(&format!("HOTBACKUP_INCIDENT={kind}")),
        "the incident's journald fields are missing: {line}"
    );
    let (code, out, err) = super::cli(&["incidents", "--config", n.config.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(" {kind}: ")),
        "{kind} not in `hotbackup incidents`:\n{out}"
    );
}

/// A master and its slave, each a real process.
pub struct Pair {
    pub master: Node,
    pub slave: Node,
    pub dir: tempfile::TempDir,
    pub slave_port: u16,
}

impl Pair {
    /// Starts a slave and a master that dials it (through `via`, if given).
    pub fn start(master_extra: &str, slave_extra: &str) -> Pair {
        Self::start_with(master_extra, slave_extra, |p| p)
    }

    pub fn start_with(master_extra: &str, slave_extra: &str, route: impl Fn(u16) -> u16) -> Pair {
        let dir = tempfile::tempdir().unwrap();
        let key = key_file(dir.path(), "pair.key", KEY);
        let (mp, sp) = (free_port(), free_port());
        node_config(
            &dir.path().join("slave"),
            "slave",
            sp,
            &[format!("127.0.0.1:{mp}")],
            &key,
            slave_extra,
        );
        let slave = Node::start_in(&dir.path().join("slave"));
        node_config(
            &dir.path().join("master"),
            "master",
            mp,
            &[format!("127.0.0.1:{}", route(sp))],
            &key,
            master_extra,
        );
        let master = Node::start_in(&dir.path().join("master"));
        Pair {
            master,
            slave,
            dir,
            slave_port: sp,
        }
    }

    pub fn key(&self) -> PathBuf {
        self.dir.path().join("pair.key")
    }
}

pub fn info(n: &Node, section: &str) -> String {
    let mut c = n.client();
    redis::cmd("INFO").arg(section).query(&mut c).unwrap()
}

pub fn field(text: &str, name: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_string())
}

pub fn durable(n: &Node) -> u64 {
    field(&info(n, "replication"), "durable_lsn")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Waits until the slave holds everything the master has made durable.
pub fn wait_caught_up(master: &Node, slave: &Node, within: Duration) {
    let ok = wait_until(within, || {
        let m = durable(master);
        let s: u64 = field(&info(slave, "replication"), "slave_repl_offset")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        m > 0 && s == m
    });
    assert!(
        ok,
        "slave did not catch up: master {}\nslave {}\n--- master log\n{}\n--- slave log\n{}",
        info(master, "replication"),
        info(slave, "replication"),
        master.log_text(),
        slave.log_text()
    );
}

/// Every item of the given files: (file, id) -> type and value.
pub fn contents(n: &Node, files: &[&str]) -> BTreeMap<(String, Vec<u8>), String> {
    let mut out = BTreeMap::new();
    for file in files {
        let mut c = redis::Client::open(n.url())
            .unwrap()
            .get_connection()
            .unwrap();
        let _: () = redis::cmd("SELECT").arg(*file).query(&mut c).unwrap();
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
        let mut pipe = redis::pipe();
        for k in &keys {
            pipe.cmd("TYPE").arg(k);
        }
        let types: Vec<String> = if keys.is_empty() {
            Vec::new()
        } else {
            pipe.query(&mut c).unwrap()
        };
        let mut pipe = redis::pipe();
        for (k, t) in keys.iter().zip(&types) {
            if t == "hash" {
                pipe.cmd("HGETALL").arg(k);
            } else {
                pipe.cmd("GET").arg(k);
            }
        }
        let values: Vec<redis::Value> = if keys.is_empty() {
            Vec::new()
        } else {
            pipe.query(&mut c).unwrap()
        };
        for ((k, t), v) in keys.into_iter().zip(types).zip(values) {
            out.insert((file.to_string(), k), format!("{t}:{v:?}"));
        }
    }
    out
}

pub fn assert_same(master: &Node, slave: &Node, files: &[&str]) {
    let m = contents(master, files);
    let s = contents(slave, files);
    assert_eq!(m.len(), s.len(), "item counts differ");
    if m != s {
        let diff: Vec<_> = m
            .iter()
            .filter(|(k, v)| s.get(*k) != Some(v))
            .take(5)
            .collect();
        panic!("slave differs from master, e.g. {diff:?}");
    }
}

pub fn set(n: &Node, k: &str, v: &str) {
    let mut c = n.client();
    let _: () = redis::cmd("SET").arg(k).arg(v).query(&mut c).unwrap();
}

pub fn load(n: &Node, prefix: &str, count: usize) {
    let mut c = n.client();
    let mut i = 0;
    while i < count {
        let mut cmd = redis::cmd("MSET");
        for j in i..(i + 1000).min(count) {
            cmd.arg(format!("{prefix}{j:07}"))
                .arg(format!("value-{j}-{}", "x".repeat(j % 40)));
        }
        let _: () = cmd.query(&mut c).unwrap();
        i += 1000;
    }
}

/// Waits until a master takes writes (a restarted master first checks with its peers).
pub fn wait_writable(n: &Node, within: Duration) {
    let ok = wait_until(within, || {
        field(&info(n, "replication"), "writes").as_deref() == Some("ok")
    });
    assert!(
        ok,
        "{} did not become writable: {}\n{}",
        n.addr,
        info(n, "replication"),
        n.log_text()
    );
}

/// The node's `writes` state: ok, checking_peers, fenced or readonly.
pub fn writes_state(n: &Node) -> String {
    field(&info(n, "replication"), "writes").unwrap_or_default()
}

/// The node's Sentinel port, from its config.
pub fn sentinel_addr(n: &Node) -> std::net::SocketAddr {
    let text = std::fs::read_to_string(&n.config).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("sentinel_listen = "))
        .map(|v| v.trim_matches('"').parse().unwrap())
        .expect("the config has a sentinel_listen")
}
