//! A pair whose link goes through proxies (one towards each node), and the role commands,
//! for failover and Sentinel tests.
#![allow(dead_code)]

use std::time::Duration;

use super::pair::*;
use super::proxy::Proxy;
use super::{Node, cli, free_port, key_file, wait_until};

/// A and B, each reaching the other through a proxy: A starts as master, B as its slave.
pub struct Duo {
    pub a: Node,
    pub b: Node,
    /// Forwards to A's link port (B dials A through it).
    pub to_a: Proxy,
    /// Forwards to B's link port (A dials B through it).
    pub to_b: Proxy,
    pub _dir: tempfile::TempDir,
}

impl Duo {
    pub fn start(extra: &str) -> Duo {
        Self::start_prepared(extra, &|_| {})
    }

    /// Like [`Duo::start`], with `prepare` run on each node's directory (its config written,
    /// its data directory not yet created) before the node starts.
    pub fn start_prepared(extra: &str, prepare: &dyn Fn(&std::path::Path)) -> Duo {
        let dir = tempfile::tempdir().unwrap();
        let key = key_file(dir.path(), "pair.key", KEY);
        let (la, lb) = (free_port(), free_port());
        let to_a = Proxy::start(format!("127.0.0.1:{la}").parse().unwrap());
        let to_b = Proxy::start(format!("127.0.0.1:{lb}").parse().unwrap());
        node_config(
            &dir.path().join("b"),
            "slave",
            lb,
            &[to_a.addr().to_string()],
            &key,
            extra,
        );
        prepare(&dir.path().join("b"));
        let b = Node::start_in(&dir.path().join("b"));
        node_config(
            &dir.path().join("a"),
            "master",
            la,
            &[to_b.addr().to_string()],
            &key,
            extra,
        );
        prepare(&dir.path().join("a"));
        let a = Node::start_in(&dir.path().join("a"));
        Duo {
            a,
            b,
            to_a,
            to_b,
            _dir: dir,
        }
    }

    /// Cuts the link both ways: current connections die, new ones are refused.
    pub fn cut(&self) {
        self.to_a.refuse(true);
        self.to_b.refuse(true);
        self.to_a.cut();
        self.to_b.cut();
    }

    pub fn heal(&self) {
        self.to_a.refuse(false);
        self.to_b.refuse(false);
    }
}

pub fn config_of(n: &Node) -> String {
    n.config.display().to_string()
}

/// `hotbackup promote` on a node: (exit code, stdout, stderr).
pub fn promote(n: &Node) -> (i32, String, String) {
    cli(&["promote", "--config", &config_of(n)])
}

/// A SET; Err is the error as the `redis` crate shows it (its kind, e.g. "ReadOnly", then the
/// server's text).
pub fn try_set(n: &Node, k: &str, v: &str) -> Result<(), String> {
    let mut c = n.client();
    redis::cmd("SET")
        .arg(k)
        .arg(v)
        .query::<()>(&mut c)
        .map_err(|e| e.to_string())
}

pub fn get(n: &Node, k: &str) -> Option<String> {
    let mut c = n.client();
    redis::cmd("GET").arg(k).query(&mut c).unwrap()
}

pub fn wait_state(n: &Node, state: &str, within: Duration) {
    let ok = wait_until(within, || writes_state(n) == state);
    assert!(
        ok,
        "{} never reached writes:{state}: {}\n--- log\n{}",
        n.addr,
        info(n, "replication"),
        n.log_text()
    );
}

/// `hotbackup rejoin` on a node: (exit code, stdout, stderr).
pub fn rejoin(n: &Node, extra: &[&str]) -> (i32, String, String) {
    let config = config_of(n);
    let mut args = vec!["rejoin", "--config", config.as_str(), "--timeout", "60"];
    args.extend_from_slice(extra);
    cli(&args)
}

/// A was cut off and stopped while B took over: the link heals, A starts again, finds itself
/// fenced, and `hotbackup rejoin` on it succeeds. Returns rejoin's (stdout, stderr).
pub fn heal_restart_fenced_and_rejoin(d: &mut Duo) -> (String, String) {
    d.heal();
    d.a.launch();
    wait_state(&d.a, "fenced", Duration::from_secs(15));
    let (code, out, err) = rejoin(&d.a, &[]);
    assert_eq!(code, 0, "{out}{err}");
    (out, err)
}

pub fn cmd(n: &Node, args: &[&str]) -> Result<redis::Value, String> {
    let mut c = n.client();
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(&mut c).map_err(|e| e.to_string())
}

pub fn link_stat(n: &Node, name: &str) -> u64 {
    field(&info(n, "replication"), name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
