//! Files: SELECT by name or number, native commands naming the file, the logged flag (from the
//! config globs, changed live, persisted across restarts), `sys/` reserved.

mod common;

use common::Node;

#[test]
fn select_switches_files_and_numbers_map_to_files() {
    let n = Node::start("");
    let mut c = n.raw();
    c.cmd(&["SET", "k", "in-main"]);
    assert_eq!(c.cmd(&["SELECT", "acct/orders"]), "+OK\r\n");
    assert_eq!(c.cmd(&["GET", "k"]), "$-1\r\n");
    c.cmd(&["SET", "k", "in-orders"]);
    assert_eq!(c.cmd(&["DBSIZE"]), ":1\r\n");
    assert_eq!(c.cmd(&["SELECT", "0"]), "+OK\r\n");
    assert_eq!(c.cmd(&["GET", "k"]), "$7\r\nin-main\r\n");
    assert_eq!(c.cmd(&["SELECT", "3"]), "+OK\r\n");
    c.cmd(&["SET", "k", "in-db3"]);
    assert_eq!(c.cmd(&["HB.READ", "db3", "k"]), "$6\r\nin-db3\r\n");
    assert_eq!(
        c.cmd(&["HB.READ", "acct/orders", "k"]),
        "$9\r\nin-orders\r\n"
    );
    assert_eq!(
        c.cmd(&["SELECT", "-1"]),
        "-ERR DB index is out of range\r\n"
    );
    assert!(
        c.cmd(&["SELECT", "bad name"])
            .starts_with("-ERR invalid file name")
    );
    // A redis-rs client with a db number in its URL.
    let mut con = redis::Client::open(format!("redis://{}/3", n.addr))
        .unwrap()
        .get_connection()
        .unwrap();
    let v: String = redis::cmd("GET").arg("k").query(&mut con).unwrap();
    assert_eq!(v, "in-db3");
}

#[test]
fn native_commands_name_the_file() {
    let n = Node::start("");
    let mut c = n.raw();
    assert_eq!(c.cmd(&["HB.WRITE", "inv/parts", "p1", "bolt"]), "+OK\r\n");
    assert_eq!(c.cmd(&["HB.READ", "inv/parts", "p1"]), "$4\r\nbolt\r\n");
    assert_eq!(c.cmd(&["HB.READ", "inv/parts", "nope"]), "$-1\r\n");
    assert_eq!(c.cmd(&["HB.DELETE", "inv/parts", "p1"]), ":1\r\n");
    assert_eq!(c.cmd(&["HB.DELETE", "inv/parts", "p1"]), ":0\r\n");
    assert_eq!(c.cmd(&["HB.CREATE", "empty", "UNLOGGED"]), "+OK\r\n");
    assert_eq!(
        c.cmd(&["HB.CREATE", "empty"]),
        "-ERR file 'empty' exists already\r\n"
    );
    c.cmd(&["SELECT", "inv/parts"]);
    c.cmd(&["HSET", "p2", "name", "nut", "qty", "7"]);
    assert_eq!(
        c.cmd(&["HB.READ", "inv/parts", "p2"]),
        "*4\r\n$4\r\nname\r\n$3\r\nnut\r\n$3\r\nqty\r\n$1\r\n7\r\n"
    );
    let files = c.cmd(&["HB.FILES"]);
    assert!(
        files.contains("empty") && files.contains("inv/parts"),
        "{files}"
    );
    assert_eq!(c.cmd(&["HB.DROP", "empty"]), "+OK\r\n");
    assert_eq!(
        c.cmd(&["HB.DROP", "empty"]),
        "-ERR no such file 'empty'\r\n"
    );
    assert!(!c.cmd(&["HB.FILES"]).contains("empty"));
}

#[test]
fn sys_files_are_reserved() {
    let n = Node::start("");
    let mut c = n.raw();
    let refused = "-ERR file 'sys/canary' is reserved for hotbackup's own use\r\n";
    assert_eq!(c.cmd(&["HB.WRITE", "sys/canary", "x", "1"]), refused);
    c.cmd(&["SELECT", "sys/canary"]);
    assert_eq!(c.cmd(&["SET", "x", "1"]), refused);
    assert_eq!(c.cmd(&["GET", "x"]), "$-1\r\n", "reading is allowed");
}

#[test]
fn logged_flag_comes_from_globs_changes_live_and_survives_restart() {
    let mut n = Node::start("[files]\nlogged = [\"*\"]\nunlogged = [\"tmp/*\"]");
    let mut c = n.raw();
    c.cmd(&["HB.WRITE", "orders", "1", "x"]);
    c.cmd(&["HB.WRITE", "tmp/scratch", "1", "x"]);
    assert_eq!(c.cmd(&["HB.LOGGED", "orders"]), ":1\r\n");
    assert_eq!(c.cmd(&["HB.LOGGED", "tmp/scratch"]), ":0\r\n");
    assert_eq!(c.cmd(&["HB.LOGGED", "orders", "OFF"]), "+OK\r\n");
    assert_eq!(c.cmd(&["HB.LOGGED", "tmp/scratch", "ON"]), "+OK\r\n");
    assert_eq!(
        c.cmd(&["HB.LOGGED", "nope"]),
        "-ERR no such file 'nope'\r\n"
    );
    assert_eq!(
        c.cmd(&["HB.LOGGED", "orders", "maybe"]),
        "-ERR syntax error\r\n"
    );
    drop(c);
    // Crash (no checkpoint): the flag changes come back from the journal.
    n.kill9();
    n.launch();
    let mut c = n.raw();
    assert_eq!(c.cmd(&["HB.LOGGED", "orders"]), ":0\r\n");
    assert_eq!(c.cmd(&["HB.LOGGED", "tmp/scratch"]), ":1\r\n");
    drop(c);
    // Clean stop (checkpoint): from the store.
    assert_eq!(n.stop(), Some(0));
    n.launch();
    let mut c = n.raw();
    assert_eq!(c.cmd(&["HB.LOGGED", "orders"]), ":0\r\n");
    assert_eq!(c.cmd(&["HB.LOGGED", "tmp/scratch"]), ":1\r\n");
    let (_, dump, _) = n.cli(&["journal", "dump", "-c", n.config.to_str().unwrap()]);
    assert!(dump.contains("set-logged orders off"), "{dump}");
}
