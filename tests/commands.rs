//! The command list against the real binary: exact reply bytes for the Redis commands (the
//! protocol is the contract), and the same through the `redis` crate.

mod common;

use common::Node;

fn node() -> Node {
    Node::start("")
}

#[test]
fn connection_commands_reply_like_redis() {
    let n = node();
    let mut c = n.raw();
    assert_eq!(c.cmd(&["PING"]), "+PONG\r\n");
    assert_eq!(c.cmd(&["ping", "hi"]), "$2\r\nhi\r\n");
    assert_eq!(c.cmd(&["ECHO", "x y"]), "$3\r\nx y\r\n");
    assert_eq!(c.cmd(&["CLIENT", "SETNAME", "tester"]), "+OK\r\n");
    assert_eq!(c.cmd(&["CLIENT", "GETNAME"]), "$6\r\ntester\r\n");
    assert_eq!(
        c.cmd(&["CLIENT", "SETINFO", "LIB-NAME", "mylib"]),
        "+OK\r\n"
    );
    assert!(c.cmd(&["CLIENT", "ID"]).starts_with(':'));
    assert!(c.cmd(&["CLIENT", "LIST"]).contains("name=tester"));
    assert_eq!(
        c.cmd(&["CLIENT", "SETNAME", "a b"]),
        "-ERR Client names cannot contain spaces, newlines or special characters.\r\n"
    );
    assert_eq!(
        c.cmd(&["NOSUCH", "a", "b"]),
        "-ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' \r\n"
    );
    assert_eq!(
        c.cmd(&["GET"]),
        "-ERR wrong number of arguments for 'get' command\r\n"
    );
    assert_eq!(c.cmd(&["QUIT"]), "+OK\r\n");
    assert!(c.read_to_close().is_empty(), "closed after QUIT");
}

#[test]
fn hello_switches_to_resp3_and_replies_change_shape() {
    let n = node();
    let mut c = n.raw();
    let hello = c.cmd(&["HELLO", "3"]);
    assert!(hello.starts_with("%8\r\n"), "{hello}");
    assert!(hello.contains("proto\r\n:3"), "{hello}");
    assert_eq!(c.cmd(&["GET", "missing"]), "_\r\n");
    c.cmd(&["HSET", "h", "f", "v"]);
    assert_eq!(c.cmd(&["HGETALL", "h"]), "%1\r\n$1\r\nf\r\n$1\r\nv\r\n");
    assert_eq!(c.cmd(&["HELLO", "2"]).chars().next(), Some('*'));
    assert_eq!(c.cmd(&["GET", "missing"]), "$-1\r\n");
    assert_eq!(
        c.cmd(&["HELLO", "4"]),
        "-NOPROTO unsupported protocol version\r\n"
    );
}

#[test]
fn string_commands() {
    let n = node();
    let mut c = n.raw();
    assert_eq!(c.cmd(&["SET", "k", "v1"]), "+OK\r\n");
    assert_eq!(c.cmd(&["GET", "k"]), "$2\r\nv1\r\n");
    assert_eq!(c.cmd(&["SET", "k", "v2", "NX"]), "$-1\r\n");
    assert_eq!(c.cmd(&["SET", "new", "x", "XX"]), "$-1\r\n");
    assert_eq!(c.cmd(&["SET", "k", "v3", "XX", "GET"]), "$2\r\nv1\r\n");
    assert_eq!(
        c.cmd(&["SET", "k", "v", "NX", "XX"]),
        "-ERR syntax error\r\n"
    );
    assert_eq!(c.cmd(&["SET", "k", "v", "BOGUS"]), "-ERR syntax error\r\n");
    assert_eq!(
        c.cmd(&["SET", "k", "v", "EX", "10"]),
        "-ERR SET with EX/PX/EXAT/PXAT (keys do not expire in hotbackup) is not supported by hotbackup\r\n"
    );
    assert_eq!(
        c.cmd(&["GET", "k"]),
        "$2\r\nv3\r\n",
        "refused SET changed nothing"
    );
    assert_eq!(c.cmd(&["SETNX", "k", "z"]), ":0\r\n");
    assert_eq!(c.cmd(&["SETNX", "k2", "z"]), ":1\r\n");
    assert_eq!(c.cmd(&["GETSET", "k2", "y"]), "$1\r\nz\r\n");
    assert_eq!(c.cmd(&["GETSET", "k3", "y"]), "$-1\r\n");
    assert_eq!(c.cmd(&["MSET", "a", "1", "b", "2"]), "+OK\r\n");
    assert_eq!(
        c.cmd(&["MSET", "a", "1", "b"]),
        "-ERR wrong number of arguments for 'mset' command\r\n"
    );
    assert_eq!(
        c.cmd(&["MGET", "a", "nope", "b"]),
        "*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n"
    );
    assert_eq!(c.cmd(&["INCR", "a"]), ":2\r\n");
    assert_eq!(c.cmd(&["INCRBY", "a", "40"]), ":42\r\n");
    assert_eq!(c.cmd(&["DECR", "a"]), ":41\r\n");
    assert_eq!(c.cmd(&["DECRBY", "a", "1"]), ":40\r\n");
    assert_eq!(c.cmd(&["INCR", "fresh"]), ":1\r\n");
    assert_eq!(
        c.cmd(&["INCR", "k"]),
        "-ERR value is not an integer or out of range\r\n"
    );
    assert_eq!(
        c.cmd(&["INCRBY", "a", "x"]),
        "-ERR value is not an integer or out of range\r\n"
    );
    c.cmd(&["SET", "max", "9223372036854775807"]);
    assert_eq!(
        c.cmd(&["INCR", "max"]),
        "-ERR increment or decrement would overflow\r\n"
    );
    assert_eq!(c.cmd(&["APPEND", "s", "ab"]), ":2\r\n");
    assert_eq!(c.cmd(&["APPEND", "s", "cde"]), ":5\r\n");
    assert_eq!(c.cmd(&["GET", "s"]), "$5\r\nabcde\r\n");
    assert_eq!(c.cmd(&["STRLEN", "s"]), ":5\r\n");
    assert_eq!(c.cmd(&["STRLEN", "none"]), ":0\r\n");
    // Binary safety.
    let mut raw = c;
    raw.send(b"*3\r\n$3\r\nSET\r\n$3\r\nb\x00n\r\n$4\r\n\r\n\xff\x00\r\n");
    assert_eq!(raw.reply(), b"+OK\r\n");
    raw.send(b"*2\r\n$3\r\nGET\r\n$3\r\nb\x00n\r\n");
    assert_eq!(raw.reply(), b"$4\r\n\r\n\xff\x00\r\n");
}

#[test]
fn key_commands() {
    let n = node();
    let mut c = n.raw();
    c.cmd(&["MSET", "user:1", "a", "user:2", "b", "other", "c"]);
    c.cmd(&["HSET", "hash", "f", "v"]);
    assert_eq!(c.cmd(&["TYPE", "user:1"]), "+string\r\n");
    assert_eq!(c.cmd(&["TYPE", "hash"]), "+hash\r\n");
    assert_eq!(c.cmd(&["TYPE", "nope"]), "+none\r\n");
    assert_eq!(c.cmd(&["EXISTS", "user:1", "nope", "user:1"]), ":2\r\n");
    assert_eq!(c.cmd(&["DBSIZE"]), ":4\r\n");
    assert_eq!(
        c.cmd(&["KEYS", "user:*"]),
        "*2\r\n$6\r\nuser:1\r\n$6\r\nuser:2\r\n"
    );
    assert_eq!(c.cmd(&["DEL", "user:1", "user:1", "nope"]), ":1\r\n");
    assert_eq!(c.cmd(&["DBSIZE"]), ":3\r\n");
    assert_eq!(c.cmd(&["TTL", "other"]), ":-1\r\n");
    assert_eq!(c.cmd(&["TTL", "nope"]), ":-2\r\n");
    assert!(c.cmd(&["EXPIRE", "other", "5"]).contains("not supported"));
    assert_eq!(c.cmd(&["FLUSHDB"]), "+OK\r\n");
    assert_eq!(c.cmd(&["DBSIZE"]), ":0\r\n");
}

#[test]
fn scan_visits_every_key_once_with_match_and_count() {
    let n = node();
    let mut con = n.client();
    for i in 0..250 {
        let _: () = redis::cmd("SET")
            .arg(format!("key:{i:04}"))
            .arg(i)
            .query(&mut con)
            .unwrap();
    }
    let _: () = redis::cmd("HSET")
        .arg("key:h")
        .arg("f")
        .arg("v")
        .query(&mut con)
        .unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor: u64 = 0;
    let mut calls = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("key:0*")
            .arg("COUNT")
            .arg(20)
            .query(&mut con)
            .unwrap();
        calls += 1;
        for k in keys {
            assert!(seen.insert(k.clone()), "{k} returned twice");
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    assert_eq!(seen.len(), 250);
    assert!(
        calls >= 12,
        "COUNT 20 over 251 keys takes many calls, took {calls}"
    );
    let (_, hashes): (u64, Vec<String>) = redis::cmd("SCAN")
        .arg(0)
        .arg("TYPE")
        .arg("hash")
        .arg("COUNT")
        .arg(1000)
        .query(&mut con)
        .unwrap();
    assert_eq!(hashes, vec!["key:h".to_string()]);
    let err = redis::cmd("SCAN")
        .arg(12345)
        .query::<(u64, Vec<String>)>(&mut con);
    assert!(err.is_err(), "unknown cursor is an error");
}

#[test]
fn hash_commands() {
    let n = node();
    let mut c = n.raw();
    assert_eq!(c.cmd(&["HSET", "h", "a", "1", "b", "2"]), ":2\r\n");
    assert_eq!(c.cmd(&["HSET", "h", "a", "9", "c", "3"]), ":1\r\n");
    assert_eq!(c.cmd(&["HGET", "h", "a"]), "$1\r\n9\r\n");
    assert_eq!(c.cmd(&["HGET", "h", "zz"]), "$-1\r\n");
    assert_eq!(c.cmd(&["HLEN", "h"]), ":3\r\n");
    assert_eq!(c.cmd(&["HEXISTS", "h", "b"]), ":1\r\n");
    assert_eq!(
        c.cmd(&["HKEYS", "h"]),
        "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"
    );
    assert_eq!(
        c.cmd(&["HVALS", "h"]),
        "*3\r\n$1\r\n9\r\n$1\r\n2\r\n$1\r\n3\r\n"
    );
    assert_eq!(
        c.cmd(&["HGETALL", "h"]),
        "*6\r\n$1\r\na\r\n$1\r\n9\r\n$1\r\nb\r\n$1\r\n2\r\n$1\r\nc\r\n$1\r\n3\r\n"
    );
    assert_eq!(c.cmd(&["HMGET", "h", "a", "x"]), "*2\r\n$1\r\n9\r\n$-1\r\n");
    assert_eq!(c.cmd(&["HINCRBY", "h", "b", "5"]), ":7\r\n");
    assert_eq!(c.cmd(&["HINCRBY", "h", "new", "-1"]), ":-1\r\n");
    c.cmd(&["HSET", "h", "txt", "abc"]);
    assert_eq!(
        c.cmd(&["HINCRBY", "h", "txt", "1"]),
        "-ERR hash value is not an integer\r\n"
    );
    assert_eq!(c.cmd(&["HDEL", "h", "a", "a", "zz"]), ":1\r\n");
    assert_eq!(c.cmd(&["HSETNX", "h", "b", "x"]), ":0\r\n");
    assert_eq!(c.cmd(&["HSETNX", "h", "n2", "x"]), ":1\r\n");
    assert_eq!(c.cmd(&["HSTRLEN", "h", "txt"]), ":3\r\n");
    assert_eq!(c.cmd(&["HMSET", "h2", "f", "v"]), "+OK\r\n");
    assert_eq!(
        c.cmd(&["HSET", "h", "odd"]),
        "-ERR wrong number of arguments for 'hset' command\r\n"
    );
    assert_eq!(c.cmd(&["HDEL", "h2", "f"]), ":1\r\n");
    assert_eq!(
        c.cmd(&["EXISTS", "h2"]),
        ":0\r\n",
        "last field gone: key gone"
    );
    // Types are enforced both ways.
    c.cmd(&["SET", "str", "x"]);
    let wrong = "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
    assert_eq!(c.cmd(&["HGET", "str", "f"]), wrong);
    assert_eq!(c.cmd(&["HSET", "str", "f", "v"]), wrong);
    assert_eq!(c.cmd(&["GET", "h"]), wrong);
    assert_eq!(c.cmd(&["APPEND", "h", "x"]), wrong);
    assert_eq!(c.cmd(&["INCR", "h"]), wrong);
}

#[test]
fn server_commands_enough_for_redis_tools() {
    let n = node();
    let mut c = n.raw();
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "save"]),
        "*2\r\n$4\r\nsave\r\n$0\r\n\r\n"
    );
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "appendonly"]),
        "*2\r\n$10\r\nappendonly\r\n$3\r\nyes\r\n"
    );
    assert!(
        c.cmd(&["CONFIG", "SET", "save", ""])
            .starts_with("-ERR CONFIG SET")
    );
    let count = c.cmd(&["COMMAND", "COUNT"]);
    assert!(count.starts_with(':'));
    let all = c.cmd(&["COMMAND"]);
    assert!(all.contains("hb.write") && all.contains("\r\nget\r\n"));
    assert!(c.cmd(&["COMMAND", "DOCS"]).starts_with("*0"));
    let info = c.cmd(&["INFO"]);
    for section in [
        "# Server",
        "# Clients",
        "# Persistence",
        "# Stats",
        "# Replication",
        "# Keyspace",
    ] {
        assert!(info.contains(section), "INFO lacks {section}");
    }
    assert!(info.contains("redis_version:"));
    let pers = c.cmd(&["INFO", "persistence"]);
    assert!(pers.contains("durability:fsync") && !pers.contains("# Server"));
    assert!(c.cmd(&["TIME"]).starts_with("*2\r\n"));
    assert_eq!(c.cmd(&["SAVE"]), "+OK\r\n");
}

#[test]
fn requirepass_needs_auth() {
    let n = Node::start("requirepass = \"s3cret\"");
    let mut c = n.raw();
    assert_eq!(c.cmd(&["GET", "a"]), "-NOAUTH Authentication required.\r\n");
    assert_eq!(
        c.cmd(&["AUTH", "wrong"]),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(c.cmd(&["AUTH", "s3cret"]), "+OK\r\n");
    assert_eq!(c.cmd(&["GET", "a"]), "$-1\r\n");
    let mut c2 = n.raw();
    let hello = c2.cmd(&["HELLO", "3", "AUTH", "default", "s3cret"]);
    assert!(hello.starts_with('%'), "{hello}");
    let mut con = redis::Client::open(format!("redis://:s3cret@{}/", n.addr))
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("SET").arg("x").arg("1").query(&mut con).unwrap();
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let n = node();
    let mut c = n.raw();
    let mut req = Vec::new();
    for i in 0..2000 {
        let k = format!("p{i}");
        hotbackup::resp::encode::request(&mut req, &[b"SET", k.as_bytes(), b"v"]);
        hotbackup::resp::encode::request(&mut req, &[b"INCR", b"ctr"]);
    }
    // Inline commands too, as telnet users type them.
    req.extend_from_slice(b"PING\r\nGET p1999\r\n");
    c.send(&req);
    for i in 0..2000 {
        assert_eq!(c.reply(), b"+OK\r\n");
        assert_eq!(c.reply(), format!(":{}\r\n", i + 1).into_bytes());
    }
    assert_eq!(c.reply(), b"+PONG\r\n");
    assert_eq!(c.reply(), b"$1\r\nv\r\n");
}

#[test]
fn the_redis_crate_works_unchanged() {
    let n = node();
    let mut con = n.client();
    let _: () = redis::cmd("SET")
        .arg("greeting")
        .arg("hello")
        .query(&mut con)
        .unwrap();
    let v: String = redis::cmd("GET").arg("greeting").query(&mut con).unwrap();
    assert_eq!(v, "hello");
    let v: i64 = redis::cmd("INCRBY")
        .arg("n")
        .arg(5)
        .query(&mut con)
        .unwrap();
    assert_eq!(v, 5);
    let (a, b): (i64, i64) = redis::pipe()
        .atomic()
        .cmd("INCR")
        .arg("n")
        .cmd("INCR")
        .arg("n")
        .query(&mut con)
        .unwrap();
    assert_eq!((a, b), (6, 7));
    let h: std::collections::HashMap<String, String> =
        redis::cmd("HGETALL").arg("none").query(&mut con).unwrap();
    assert!(h.is_empty());
}
