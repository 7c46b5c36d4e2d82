//! MULTI/EXEC: queued, run as one unit, one journal record, never half visible.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::Node;

#[test]
fn multi_exec_discard_and_errors_reply_like_redis() {
    let n = Node::start("");
    let mut c = n.raw();
    assert_eq!(c.cmd(&["EXEC"]), "-ERR EXEC without MULTI\r\n");
    assert_eq!(c.cmd(&["DISCARD"]), "-ERR DISCARD without MULTI\r\n");
    assert_eq!(c.cmd(&["MULTI"]), "+OK\r\n");
    assert_eq!(c.cmd(&["MULTI"]), "-ERR MULTI calls can not be nested\r\n");
    assert_eq!(c.cmd(&["SET", "a", "1"]), "+QUEUED\r\n");
    assert_eq!(c.cmd(&["INCR", "a"]), "+QUEUED\r\n");
    assert_eq!(c.cmd(&["HSET", "a", "f", "v"]), "+QUEUED\r\n");
    assert_eq!(c.cmd(&["GET", "a"]), "+QUEUED\r\n");
    // A runtime error inside EXEC fails that command only, as in Redis.
    assert_eq!(
        c.cmd(&["EXEC"]),
        "*4\r\n+OK\r\n:2\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n$1\r\n2\r\n"
    );
    assert_eq!(c.cmd(&["MULTI"]), "+OK\r\n");
    assert_eq!(c.cmd(&["SET", "b", "1"]), "+QUEUED\r\n");
    assert_eq!(c.cmd(&["DISCARD"]), "+OK\r\n");
    assert_eq!(c.cmd(&["GET", "b"]), "$-1\r\n");
    // A queueing error aborts the whole transaction.
    assert_eq!(c.cmd(&["MULTI"]), "+OK\r\n");
    assert_eq!(c.cmd(&["SET", "b", "1"]), "+QUEUED\r\n");
    assert_eq!(
        c.cmd(&["GET"]),
        "-ERR wrong number of arguments for 'get' command\r\n"
    );
    assert_eq!(
        c.cmd(&["EXEC"]),
        "-EXECABORT Transaction discarded because of previous errors.\r\n"
    );
    assert_eq!(c.cmd(&["GET", "b"]), "$-1\r\n");
    assert!(c.cmd(&["WATCH", "a"]).contains("not supported"));
}

#[test]
fn multi_exec_is_one_journal_record() {
    let mut n = Node::start("");
    let mut c = n.raw();
    c.cmd(&["MULTI"]);
    c.cmd(&["SET", "x", "1"]);
    c.cmd(&["SET", "y", "2"]);
    c.cmd(&["HSET", "z", "f", "v"]);
    c.cmd(&["EXEC"]);
    drop(c);
    n.stop();
    let (code, out, _) = n.cli(&[
        "journal",
        "dump",
        "--config",
        n.config.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "one record: {out}");
    assert!(
        lines[0].contains("\"put\"") && lines[0].contains("\"hset\""),
        "{out}"
    );
}

#[test]
fn readers_never_see_half_a_transaction() {
    let n = Node::start("");
    let stop = Arc::new(AtomicBool::new(false));
    let addr = n.url();
    let writers: Vec<_> = (0..3)
        .map(|_| {
            let addr = addr.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut con = redis::Client::open(addr).unwrap().get_connection().unwrap();
                let mut done = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let _: (i64, i64) = redis::pipe()
                        .atomic()
                        .cmd("INCR")
                        .arg("a")
                        .cmd("INCR")
                        .arg("b")
                        .query(&mut con)
                        .unwrap();
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut con = n.client();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut checks = 0;
    while Instant::now() < deadline {
        let (a, b): (Option<i64>, Option<i64>) = redis::cmd("MGET")
            .arg("a")
            .arg("b")
            .query(&mut con)
            .unwrap();
        assert_eq!(a, b, "a transaction was half visible");
        checks += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let total: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    let a: i64 = redis::cmd("GET").arg("a").query(&mut con).unwrap();
    assert_eq!(a as u64, total);
    assert!(
        checks > 100 && total > 100,
        "checks {checks}, transactions {total}"
    );
}
