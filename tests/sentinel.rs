//! Clients in Redis Sentinel mode find the master through the nodes themselves: the `redis`
//! crate's SentinelClient and redis-py's `Sentinel` (Debian's python3-redis), given the two
//! nodes' client addresses as "sentinels" and the instance name as the master name, follow a
//! failover and a switchover without any configuration change.

mod common;

use std::process::Command;
use std::time::Duration;

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
