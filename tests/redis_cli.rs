//! The command list through Debian's redis-cli and a short redis-benchmark run (redis-tools,
//! installed by .ci/run). These tools must work against hotbackup unchanged.

mod common;

use std::process::Command;

use common::Node;

fn redis_cli(n: &Node, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &n.addr.port().to_string()])
        .args(args)
        .output()
        .expect("redis-cli must be installed (apt-get install redis-tools)");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

#[test]
fn redis_cli_runs_the_command_list() {
    let n = Node::start("");
    let cases: &[(&[&str], &str)] = &[
        (&["PING"], "PONG"),
        (&["ECHO", "hi"], "hi"),
        (&["SET", "greeting", "hello"], "OK"),
        (&["GET", "greeting"], "hello"),
        (&["SET", "greeting", "x", "NX"], ""),
        (&["GETSET", "greeting", "hey"], "hello"),
        (&["SETNX", "n", "10"], "1"),
        (&["INCR", "n"], "11"),
        (&["INCRBY", "n", "9"], "20"),
        (&["DECR", "n"], "19"),
        (&["DECRBY", "n", "9"], "10"),
        (&["APPEND", "s", "abc"], "3"),
        (&["STRLEN", "s"], "3"),
        (&["MSET", "a", "1", "b", "2"], "OK"),
        (&["MGET", "a", "b", "nope"], "1\n2"),
        (&["EXISTS", "a", "b", "nope"], "2"),
        (&["TYPE", "a"], "string"),
        (&["DEL", "a"], "1"),
        (&["HSET", "h", "f1", "v1", "f2", "v2"], "2"),
        (&["HGET", "h", "f1"], "v1"),
        (&["HMGET", "h", "f1", "zz"], "v1"),
        (&["HLEN", "h"], "2"),
        (&["HEXISTS", "h", "f2"], "1"),
        (&["HKEYS", "h"], "f1\nf2"),
        (&["HVALS", "h"], "v1\nv2"),
        (&["HGETALL", "h"], "f1\nv1\nf2\nv2"),
        (&["HINCRBY", "h", "c", "5"], "5"),
        (&["HDEL", "h", "c"], "1"),
        (&["TYPE", "h"], "hash"),
        (&["DBSIZE"], "5"),
        (&["SELECT", "acct/x"], "OK"),
        (&["HB.WRITE", "acct/x", "id1", "val"], "OK"),
        (&["HB.READ", "acct/x", "id1"], "val"),
        (&["HB.LOGGED", "acct/x"], "1"),
        (&["HB.LOGGED", "acct/x", "off"], "OK"),
        (&["HB.DELETE", "acct/x", "id1"], "1"),
        (&["CLIENT", "SETNAME", "cli"], "OK"),
    ];
    for (args, want) in cases {
        assert_eq!(redis_cli(&n, args), *want, "redis-cli {args:?}");
    }
    let keys = redis_cli(&n, &["KEYS", "*"]);
    let mut keys: Vec<&str> = keys.lines().collect();
    keys.sort();
    assert_eq!(keys, vec!["b", "greeting", "h", "n", "s"]);
    assert_eq!(redis_cli(&n, &["--scan", "--pattern", "g*"]), "greeting");
    assert!(redis_cli(&n, &["INFO", "keyspace"]).contains("db0:keys=5"));
    assert!(redis_cli(&n, &["SET", "k", "v", "EX", "1"]).contains("not supported"));
    assert!(redis_cli(&n, &["FOO"]).contains("unknown command"));
    // A transaction through redis-cli's stdin.
    let out = Command::new("redis-cli")
        .args(["-p", &n.addr.port().to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(b"MULTI\nINCR t\nINCR t\nEXEC\n")?;
            c.wait_with_output()
        })
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("QUEUED") && text.trim_end().ends_with("2"),
        "{text}"
    );
    assert_eq!(redis_cli(&n, &["FLUSHDB"]), "OK");
    assert_eq!(redis_cli(&n, &["DBSIZE"]), "0");
}

#[test]
fn redis_cli_over_the_unix_socket_and_redis_benchmark_pipelined() {
    let n = Node::start("");
    let sock = n.dir.join("hb.sock");
    let out = Command::new("redis-cli")
        .arg("-s")
        .arg(&sock)
        .args(["SET", "via", "unix"])
        .output()
        .expect("redis-cli");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK");
    let out = Command::new("redis-benchmark")
        .args([
            "-p",
            &n.addr.port().to_string(),
            "-t",
            "set,get,incr,hset",
            "-n",
            "20000",
        ])
        .args(["-c", "20", "-P", "16", "-q", "--csv"])
        .output()
        .expect("redis-benchmark must be installed (redis-tools)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for t in ["SET", "GET", "INCR", "HSET"] {
        assert!(text.contains(&format!("\"{t}")), "no {t} line: {text}");
    }
    let mut c = n.raw();
    assert_eq!(c.cmd(&["GET", "counter:__rand_int__"]), "$5\r\n20000\r\n");
    assert_eq!(c.cmd(&["GET", "via"]), "$4\r\nunix\r\n");
}
