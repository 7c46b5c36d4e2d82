//! Clients in Redis Sentinel mode find the master through the nodes themselves: the `redis`
//! crate's SentinelClient and redis-py's `Sentinel` (Debian's python3-redis), given the two
//! nodes' client addresses as "sentinels" and the instance name as the master name, follow a
//! failover and a switchover without any configuration change. ioredis (npm, in
//! tests/clients/ioredis) with its `failoverDetector` follows a switchover by the
//! `+switch-master` message the nodes publish, before it makes any call, and a failover by
//! asking the surviving node when its connection to the dead master drops.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::duo::*;
use common::pair::*;
use common::{Node, cli, wait_until};
use redis::sentinel::{SentinelClient, SentinelServerType};

/// The instance name the test configs give (the default).
const NAME: &str = "node";

/// The nodes' Sentinel ports, as the redis crate's Sentinel client takes them.
fn urls(d: &[&Node]) -> Vec<String> {
    d.iter()
        .map(|n| format!("redis://{}/", sentinel_addr(n)))
        .collect()
}

/// Writes `key` through a Sentinel-mode client (re-discovering the master on errors, as an
/// application does); returns the master address it used.
fn sentinel_set(nodes: &[&Node], key: &str, value: &str) -> String {
    let mut client = SentinelClient::build(
        urls(nodes),
        NAME.to_string(),
        None,
        SentinelServerType::Master,
    )
    .expect("sentinel client");
    let mut last = String::new();
    let ok = wait_until(Duration::from_secs(20), || match client.get_connection() {
        Ok(mut c) => match redis::cmd("SET").arg(key).arg(value).query::<()>(&mut c) {
            Ok(()) => {
                last = c_addr(&mut c);
                true
            }
            Err(e) => {
                last = e.to_string();
                false
            }
        },
        Err(e) => {
            last = e.to_string();
            false
        }
    });
    assert!(ok, "a Sentinel-mode client could not write: {last}");
    last
}

/// The server's view of the client's local address: which node the connection reached.
fn c_addr(c: &mut redis::Connection) -> String {
    let info: String = redis::cmd("CLIENT")
        .arg("INFO")
        .query(c)
        .unwrap_or_default();
    info.split_whitespace()
        .find_map(|f| f.strip_prefix("laddr="))
        .unwrap_or_default()
        .to_string()
}

/// redis-py in Sentinel mode: discovers the master, writes `key`, prints the master address.
fn python_set(nodes: &[&Node], key: &str) -> String {
    let sentinels: String = nodes
        .iter()
        .map(|n| format!("('{}', {})", n.addr.ip(), n.addr.port()))
        .collect::<Vec<_>>()
        .join(", ");
    let script = format!(
        r#"
import sys, time
from redis.sentinel import Sentinel
s = Sentinel([{sentinels}], socket_timeout=2)
deadline = time.time() + 20
last = None
while time.time() < deadline:
    try:
        host, port = s.discover_master("{NAME}")
        m = s.master_for("{NAME}", socket_timeout=2)
        m.set("{key}", "py")
        assert m.get("{key}") == b"py"
        replicas = s.discover_slaves("{NAME}")
        print(f"{{host}}:{{port}} replicas={{replicas}}")
        sys.exit(0)
    except Exception as e:
        last = e
        time.sleep(0.1)
print(f"failed: {{last!r}}", file=sys.stderr)
sys.exit(1)
"#
    );
    // Debian's interpreter, where python3-redis lives.
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .output()
        .expect("run /usr/bin/python3 (apt-get install python3-redis)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "redis-py Sentinel client failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.trim().to_string()
}

#[test]
fn the_sentinel_port_answers_as_a_sentinel_and_only_sentinel_commands() {
    let d = Duo::start("");
    set(&d.a, "seed", "1");
    wait_caught_up(&d.a, &d.b, Duration::from_secs(20));
    let c = redis::Client::open(format!("redis://{}/", sentinel_addr(&d.a))).unwrap();
    let mut c = c.get_connection().unwrap();
    let role: (String, Vec<String>) = redis::cmd("ROLE").query(&mut c).unwrap();
    assert_eq!(role, ("sentinel".to_string(), vec![NAME.to_string()]));
    let e = redis::cmd("GET")
        .arg("seed")
        .query::<Option<String>>(&mut c)
        .unwrap_err();
    assert!(e.to_string().contains("Sentinel port"), "{e}");
    let sentinels: Vec<std::collections::HashMap<String, String>> = redis::cmd("SENTINEL")
        .arg("sentinels")
        .arg(NAME)
        .query(&mut c)
        .unwrap();
    assert_eq!(sentinels.len(), 1, "{sentinels:?}");
    assert_eq!(sentinels[0]["port"], sentinel_addr(&d.b).port().to_string());
}

#[test]
fn sentinel_commands_describe_the_pair() {
    let d = Duo::start("");
    set(&d.a, "seed", "1");
    wait_caught_up(&d.a, &d.b, Duration::from_secs(20));
    for n in [&d.a, &d.b] {
        let mut c = n.client();
        let addr: Vec<String> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(NAME)
            .query(&mut c)
            .unwrap();
        assert_eq!(
            addr,
            vec![d.a.addr.ip().to_string(), d.a.addr.port().to_string()]
        );
        let none: redis::Value = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg("other")
            .query(&mut c)
            .unwrap();
        assert_eq!(none, redis::Value::Nil);
        let e = redis::cmd("SENTINEL")
            .arg("replicas")
            .arg("other")
            .query::<redis::Value>(&mut c)
            .unwrap_err();
        assert!(e.to_string().contains("No such master"), "{e}");
    }
    let mut c = d.a.client();
    let replicas: Vec<std::collections::HashMap<String, String>> = redis::cmd("SENTINEL")
        .arg("replicas")
        .arg(NAME)
        .query(&mut c)
        .unwrap();
    assert_eq!(replicas.len(), 1, "{replicas:?}");
    assert_eq!(replicas[0]["port"], d.b.addr.port().to_string());
    assert_eq!(replicas[0]["flags"], "slave");
    let role: redis::Value = redis::cmd("ROLE").query(&mut c).unwrap();
    assert!(format!("{role:?}").contains("master"), "{role:?}");
    let mut c = d.b.client();
    let role: (String, String, u16, String, u64) = redis::cmd("ROLE").query(&mut c).unwrap();
    assert_eq!(role.0, "slave");
    assert_eq!(role.2, d.a.addr.port());
    assert_eq!(role.3, "connected");
}

#[test]
fn sentinel_mode_clients_follow_a_failover_and_a_switchover() {
    let mut d = Duo::start("");
    set(&d.a, "seed", "1");
    wait_caught_up(&d.a, &d.b, Duration::from_secs(20));
    let a = d.a.addr.to_string();
    let b = d.b.addr.to_string();

    assert_eq!(sentinel_set(&[&d.a, &d.b], "k1", "1"), a);
    assert!(python_set(&[&d.a, &d.b], "p1").starts_with(&a));

    // Failover: A dies, B is promoted. The clients, unchanged, now write to B.
    d.a.kill9();
    let (code, out, err) = cli(&["promote", "--config", &d.b.config.display().to_string()]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(sentinel_set(&[&d.a, &d.b], "k2", "2"), b);
    assert!(python_set(&[&d.a, &d.b], "p2").starts_with(&b));

    // A comes back fenced: it points clients at B.
    d.a.launch();
    wait_state(&d.a, "fenced", Duration::from_secs(15));
    let mut c = d.a.client();
    let addr: Vec<String> = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(NAME)
        .query(&mut c)
        .unwrap();
    assert_eq!(addr[1], d.b.addr.port().to_string());
    assert_eq!(sentinel_set(&[&d.a, &d.b], "k3", "3"), b);

    // A rejoins, then a switchover makes it the master again: the clients follow.
    let (code, out, err) = rejoin(&d.a, &[]);
    assert_eq!(code, 0, "{out}{err}");
    wait_caught_up(&d.b, &d.a, Duration::from_secs(30));
    let (code, out, err) = cli(&["switchover", "--config", &d.a.config.display().to_string()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(wait_until(Duration::from_secs(10), || writes_state(&d.a) == "ok"));
    assert_eq!(sentinel_set(&[&d.a, &d.b], "k4", "4"), a);
    // B is listed as a replica once it streams from A again.
    assert!(wait_until(Duration::from_secs(20), || info(
        &d.a,
        "replication"
    )
    .lines()
    .any(|l| l.starts_with("slave0:") && l.contains("state=streaming"))));
    let py = python_set(&[&d.a, &d.b], "p4");
    assert!(py.starts_with(&a), "{py}");
    assert!(
        py.contains(&d.b.addr.port().to_string()),
        "B is listed as a replica: {py}"
    );
    wait_caught_up(&d.a, &d.b, Duration::from_secs(20));
    for k in ["k1", "k2", "k3", "k4", "p1", "p2", "p4"] {
        assert!(get(&d.a, k).is_some(), "{k} missing");
    }
}

/// `node tests/clients/ioredis/failover.js`: ioredis in Sentinel mode with its failover
/// detector, driven line by line (see the script). Killed (by its own handle) if still running
/// when dropped.
struct Ioredis {
    child: Child,
    stdin: ChildStdin,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl Ioredis {
    fn start(sentinels: &[std::net::SocketAddr]) -> Ioredis {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/ioredis");
        assert!(
            dir.join("node_modules/ioredis").is_dir(),
            "ioredis is not installed: run `npm ci --prefix tests/clients/ioredis` (scripts/test.sh and .ci/run do)"
        );
        let mut child = Command::new("node")
            .arg("failover.js")
            .arg(NAME)
            .args(sentinels.iter().map(|s| s.to_string()))
            .current_dir(&dir)
            // ioredis's own debug line when a +switch-master message makes it reconnect.
            .env("DEBUG", "ioredis:FailoverDetector")
            .env("DEBUG_COLORS", "no")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run node (Node.js is needed for the ioredis test)");
        let stdin = child.stdin.take().expect("stdin");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (l, out) = (lines.clone(), child.stdout.take().expect("stdout"));
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                l.lock().unwrap().push(line);
            }
        });
        let (e, err) = (stderr.clone(), child.stderr.take().expect("stderr"));
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut e = e.lock().unwrap();
                e.push_str(&line);
                e.push('\n');
            }
        });
        Ioredis {
            child,
            stdin,
            lines,
            stderr,
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for a line from index `from` on that satisfies `f`; returns it.
    fn wait_line(&self, from: usize, within: Duration, f: impl Fn(&str) -> bool) -> String {
        let mut found = None;
        wait_until(within, || {
            found = self.lines()[from.min(self.lines().len())..]
                .iter()
                .find(|l| f(l))
                .cloned();
            found.is_some()
        });
        found.unwrap_or_else(|| {
            panic!(
                "ioredis never printed the line expected; stdout {:?}\nstderr {}",
                self.lines(),
                self.stderr()
            )
        })
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write to the ioredis script");
    }

    /// Sends `write KEY` and returns the script's answer line.
    fn write(&mut self, key: &str) -> String {
        let from = self.lines().len();
        self.send(&format!("write {key}"));
        let wrote = format!("wrote {key} ");
        let failed = format!("failed {key} ");
        self.wait_line(from, Duration::from_secs(10), |l| {
            l.starts_with(&wrote) || l.starts_with(&failed)
        })
    }

    /// Sends `quit` and waits (bounded) for a clean exit.
    fn quit(&mut self) {
        self.send("quit");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.child.try_wait().expect("wait for node") {
                assert!(st.success(), "ioredis script: {st}; {:?}", self.lines());
                return;
            }
            assert!(Instant::now() < deadline, "the ioredis script did not quit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Ioredis {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn ioredis_follows_a_switchover_by_the_switch_master_message_and_a_failover() {
    let mut d = Duo::start("");
    set(&d.a, "seed", "1");
    wait_caught_up(&d.a, &d.b, Duration::from_secs(20));
    let (a, b) = (d.a.addr, d.b.addr);

    // B's Sentinel port first: ioredis asks the sentinel that answered last first again, and
    // B names the new master from the moment it publishes; so the test is deterministic.
    let mut io = Ioredis::start(&[sentinel_addr(&d.b), sentinel_addr(&d.a)]);
    io.wait_line(0, Duration::from_secs(20), |l| l == "subscribed");
    assert!(
        io.lines().contains(&format!("ready {a}")),
        "{:?}",
        io.lines()
    );
    assert_eq!(io.write("io1"), format!("wrote io1 {a}"));

    // The switchover: the client is idle, it sends nothing; the message makes it reconnect.
    let from = io.lines().len();
    let (code, out, err) = cli(&["switchover", "--config", &config_of(&d.b)]);
    assert_eq!(code, 0, "{out}{err}");
    io.wait_line(from, Duration::from_secs(20), |l| l == format!("ready {b}"));
    io.wait_line(from, Duration::from_secs(20), |l| l == "subscribed");
    assert!(
        io.stderr().contains("Failover detected, disconnecting"),
        "ioredis did not reconnect because of a +switch-master message: {}",
        io.stderr()
    );
    // Between the switchover and the next call: the connection closed, then ready on B and
    // the detector subscribed again (in either order); no error, no other master.
    let mut after: Vec<String> = io.lines()[from..].to_vec();
    after[1..].sort();
    assert_eq!(
        after,
        vec![
            "close".to_string(),
            format!("ready {b}"),
            "subscribed".to_string()
        ],
    );
    assert_eq!(io.write("io2"), format!("wrote io2 {b}"));
    wait_caught_up(&d.b, &d.a, Duration::from_secs(20));
    assert_eq!(get(&d.a, "io2").as_deref(), Some("ioredis"));
    assert_eq!(get(&d.b, "io1").as_deref(), Some("ioredis"));

    // A failover: B (the master now) dies, A is promoted. ioredis loses its connection,
    // asks the sentinels that answer (A's) and writes to A.
    let from = io.lines().len();
    d.b.kill9();
    let (code, out, err) = cli(&["promote", "--config", &config_of(&d.a)]);
    assert_eq!(code, 0, "{out}{err}");
    io.wait_line(from, Duration::from_secs(30), |l| l == format!("ready {a}"));
    assert_eq!(io.write("io3"), format!("wrote io3 {a}"));
    io.quit();
    assert_eq!(get(&d.a, "io3").as_deref(), Some("ioredis"));
}
