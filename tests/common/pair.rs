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
    // Every incident is told to the harness's terminals and hook (see assert_incident).
    let text = if extra.contains("[incidents]") {
        text
    } else {
        text + &super::incidents_section(dir)
    };
    std::fs::write(dir.join("node.toml"), text).unwrap();
}

/// journald's `MESSAGE_ID` and `PRIORITY` of each incident kind: fixed forever (admins filter
/// on them), so written out here rather than taken from the code under test.
pub fn journal_ids(kind: &str) -> (&'static str, &'static str) {
    match kind {
        "link_down" => ("13fbc8af529147a4922be2f31b28c49b", "4"),
        "link_up" => ("a956984d15b4463da71516ea9ad8973c", "6"),
        "auth_failure" => ("110588704d52486c9f7473fb887d82c8", "3"),
        "peer_refused" => ("52266c04bac7458b944f19554163c612", "4"),
        "sequence_gap" => ("869fd33adbc44fbf9b45a3cad4587d3b", "3"),
        "canary_late" => ("e920978d5df143de9d55907aea88b31c", "3"),
        "canary_recovered" => ("fc3d544985f34b8d945556db37eab825", "6"),
        "slot_dropped" => ("060e9b0706f446a19caeae7b53dfa80f", "3"),
        "sync_timeout" => ("16b44a362d014ea6ad6b8bb584a84c90", "4"),
        "sync_recovered" => ("e6ad384907714d1b913dcbd5c83f1a5d", "6"),
        "fenced" => ("2e0933817ef44fb590ccde18df76b45f", "3"),
        "two_masters" => ("88218c9b98e544a09c13e4aff7d72928", "3"),
        "promoted" => ("2f3493af878f4448bcd9510dd087b9d1", "4"),
        "lost_transactions" => ("184f541313f2443cab88d96317d9f96a", "3"),
        "switchover" => ("f02ea00dfe144d2586db3c5124c6779d", "4"),
        "verify_mismatch" => ("5ffb7cf5f2254405b4a883f1efd9dc81", "3"),
        "verify_match" => ("4a42e1b966c74bf3b93fbd0e8808051a", "6"),
        "disk_full" => ("bf4568547a6c4e6d860951f037c3de7e", "3"),
        "disk_recovered" => ("a045781a7bef49c2b0de08d39aef2f86", "6"),
        "journal_truncated" => ("3b9515fa30e94de2a3d69cdbfaa73585", "4"),
        "archive_failed" => ("d07f4d8c144a4e278e0613cd86c742e1", "3"),
        other => panic!("unknown incident kind {other}"),
    }
}

/// The node's instance name: `instance = "…"` in its config, else the config file's stem.
pub fn instance_of(n: &Node) -> String {
    let text = std::fs::read_to_string(&n.config).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("instance = "))
        .map(|v| v.trim().trim_matches('"').to_string())
        .unwrap_or_else(|| n.config.file_stem().unwrap().to_string_lossy().into_owned())
}

/// The node's role now: from `INFO replication` while it runs, else its config's.
pub fn role_of(n: &Node) -> String {
    if n.child.is_some() {
        if let Some(r) = field(&info(n, "replication"), "role") {
            return r;
        }
    }
    let text = std::fs::read_to_string(&n.config).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("role = "))
        .map(|v| v.trim().trim_matches('"').to_string())
        .unwrap_or_else(|| "master".into())
}

/// The incidents of `kind` the notify hook was told, as (id, peer field) from their JSON.
pub fn told(n: &Node, kind: &str) -> Vec<(u64, Option<String>)> {
    let text = std::fs::read_to_string(n.dir.join("notified.log")).unwrap_or_default();
    let needle = format!("\"kind\":\"{kind}\"");
    let string_after = |line: &str, key: &str| -> Option<String> {
        let rest = line.split(&format!("\"{key}\":\"")).nth(1)?;
        Some(rest[..rest.find('"')?].to_string())
    };
    text.lines()
        .filter(|l| l.contains(&needle))
        .filter_map(|l| {
            let id = l
                .strip_prefix("{\"id\":")?
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()?;
            Some((id, string_after(l, "peer")))
        })
        .filter(|(id, _)| *id > 0) // a rate-limit summary is not one incident
        .collect()
}

/// Asserts that `n` raised an incident of `kind` and that it reached every place: its log
/// line, journald (the native record on the harness's journal socket: `MESSAGE_ID` and
/// `PRIORITY` of the kind, `HOTBACKUP_INCIDENT`, `HOTBACKUP_INCIDENT_ID`, `HOTBACKUP_INSTANCE`,
/// `HOTBACKUP_ROLE`, and `HOTBACKUP_PEER` exactly when the incident has a peer), its notify
/// list (the terminal, the logged-in user's terminal and the hook of the shared config), and
/// `hotbackup incidents`. The newest incident of the kind must carry the node's current role.
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

    // journald: one native record per incident told, with the fields of its kind.
    let (message_id, priority) = journal_ids(kind);
    let instance = instance_of(n);
    let incidents = told(n, kind);
    assert!(
        !incidents.is_empty(),
        "no {kind} with an id in notified.log"
    );
    let mut newest_role = String::new();
    for (id, peer) in &incidents {
        // (An id is found twice only if a node was killed before it kept the first one.)
        let id_text = id.to_string();
        let mut entries = Vec::new();
        wait_until(Duration::from_secs(10), || {
            entries = n.journal.with("HOTBACKUP_INCIDENT_ID", &id_text);
            entries.retain(|e| e.get("HOTBACKUP_INCIDENT").as_deref() == Some(kind));
            !entries.is_empty()
        });
        assert!(
            !entries.is_empty(),
            "no journal record of incident #{id} ({kind}); parse errors {:?}; records {:?}",
            n.journal.errors(),
            n.journal.entries()
        );
        let e = entries.last().unwrap();
        let want = |k: &str, v: &str| {
            assert_eq!(
                e.get(k).as_deref(),
                Some(v),
                "{k} of incident #{id} ({kind}) in the journal: {e:?}"
            )
        };
        want("MESSAGE_ID", message_id);
        want("PRIORITY", priority);
        want("HOTBACKUP_INSTANCE", &instance);
        want("SYSLOG_IDENTIFIER", "hotbackup");
        assert!(
            e.get("MESSAGE")
                .is_some_and(|m| m.starts_with(&format!("INCIDENT {kind}: "))),
            "{e:?}"
        );
        let role = e.get("HOTBACKUP_ROLE").unwrap_or_default();
        assert!(
            role == "master" || role == "slave",
            "HOTBACKUP_ROLE of incident #{id} ({kind}) is {role:?}: {e:?}"
        );
        newest_role = role;
        match peer {
            Some(p) => want("HOTBACKUP_PEER", p),
            None => assert_eq!(
                e.get("HOTBACKUP_PEER"),
                None,
                "incident #{id} ({kind}) has no peer: no HOTBACKUP_PEER field: {e:?}"
            ),
        }
        // The terminals on the notify list were written to before the hook ran.
        let shown = format!(" {kind} (incident #{id} ");
        for (what, pty) in [
            ("tty: terminal", super::tty::pty_for(&n.dir, "tty")),
            ("user's terminal", super::tty::pty_for(&n.dir, "user")),
        ] {
            assert!(
                pty.wait_for(&shown, Duration::from_secs(10)),
                "the {what} {} never showed {shown:?}; it got {:?}",
                pty.path,
                pty.text()
            );
        }
    }
    let role = role_of(n);
    assert_eq!(
        newest_role, role,
        "the newest {kind} incident names role {newest_role:?}, the node is {role}"
    );
    assert!(
        n.journal.errors().is_empty(),
        "journal datagrams that do not parse: {:?}",
        n.journal.errors()
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
