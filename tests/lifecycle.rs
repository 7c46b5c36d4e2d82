//! The daemon's life: crash and restart, graceful stop, reload, the admin CLI, bad input,
//! many clients, slow clients.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{Node, cli, wait_until};

#[test]
fn acked_write_survives_kill_9() {
    let mut n = Node::start("");
    let mut c = n.raw();
    assert_eq!(c.cmd(&["SET", "greeting", "hello"]), "+OK\r\n");
    drop(c);
    n.kill9();
    n.launch();
    assert_eq!(n.raw().cmd(&["GET", "greeting"]), "$5\r\nhello\r\n");
    assert!(
        n.log_text().contains("replaying journal"),
        "{}",
        n.log_text()
    );
}

#[test]
fn sigterm_stops_cleanly_with_a_checkpoint() {
    let mut n = Node::start("");
    n.raw().cmd(&["SET", "a", "1"]);
    let sock = n.dir.join("hb.sock");
    assert!(sock.exists());
    assert_eq!(n.stop(), Some(0));
    assert!(n.log_text().contains("stopped cleanly"), "{}", n.log_text());
    assert!(!sock.exists(), "unix socket removed");
    n.log.lock().unwrap().clear();
    n.launch();
    assert!(
        !n.log_text().contains("replaying"),
        "nothing to replay after a clean stop"
    );
    assert_eq!(n.raw().cmd(&["GET", "a"]), "$1\r\n1\r\n");
}

#[test]
fn sigterm_finishes_a_pipeline_in_flight() {
    let mut n = Node::start("");
    let mut c = n.raw();
    let mut req = Vec::new();
    for i in 0..5000 {
        let k = format!("k{i}");
        hotbackup::resp::encode::request(&mut req, &[b"SET", k.as_bytes(), b"v"]);
    }
    c.send(&req);
    n.signal(libc::SIGTERM);
    let mut ok = 0;
    let out = c.read_to_close();
    let mut rest = &out[..];
    while let Some(r) = rest.strip_prefix(b"+OK\r\n") {
        ok += 1;
        rest = r;
    }
    assert_eq!(n.stop(), Some(0));
    n.launch();
    // Whatever was acknowledged is there.
    let mut c = n.raw();
    for i in 0..ok {
        assert_eq!(
            c.cmd(&["GET", &format!("k{i}")]),
            "$1\r\nv\r\n",
            "k{i} acked but lost"
        );
    }
}

#[test]
fn sighup_reloads_what_can_be_reloaded() {
    let mut n = Node::start("");
    let mut c = n.raw();
    assert_eq!(c.cmd(&["PING"]), "+PONG\r\n");
    let text = std::fs::read_to_string(&n.config).unwrap();
    let with_pass = text.replace("[client]\n", "[client]\nrequirepass = \"pw\"\n");
    std::fs::write(&n.config, &with_pass).unwrap();
    n.signal(libc::SIGHUP);
    assert!(
        n.wait_log("configuration reloaded", Duration::from_secs(10)),
        "{}",
        n.log_text()
    );
    assert!(n.log_text().contains("requirepass changed"));
    assert_eq!(
        n.raw().cmd(&["GET", "a"]),
        "-NOAUTH Authentication required.\r\n"
    );
    // A broken file is refused with its line; the running config stays.
    std::fs::write(&n.config, with_pass.clone() + "\nbogus_key = 1\n").unwrap();
    n.signal(libc::SIGHUP);
    assert!(
        n.wait_log("not reloaded", Duration::from_secs(10)),
        "{}",
        n.log_text()
    );
    assert!(n.log_text().contains("bogus_key"));
    let mut c2 = n.raw();
    assert_eq!(c2.cmd(&["AUTH", "pw"]), "+OK\r\n");
    assert_eq!(n.stop(), Some(0));
}

#[test]
fn status_cli_for_running_and_stopped() {
    let mut n = Node::start("");
    n.raw().cmd(&["SET", "a", "1"]);
    let cfg = n.config.to_str().unwrap().to_string();
    let (code, out, err) = cli(&["status", "-c", &cfg]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("running") && out.contains("role         master"),
        "{out}"
    );
    let (code, json, _) = cli(&["status", "-c", &cfg, "--json"]);
    assert_eq!(code, 0);
    assert!(
        json.contains("\"running\":true") && json.contains("\"journal_durable_lsn\":\"1\""),
        "{json}"
    );
    n.stop();
    let (code, out, _) = cli(&["status", "-c", &cfg]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("not running") && out.contains("LSN 1..1"),
        "{out}"
    );
}

#[test]
fn corruption_before_the_tail_stops_start_up_and_journal_check_finds_it() {
    let mut n = Node::start("");
    let mut c = n.raw();
    for i in 0..20 {
        c.cmd(&["SET", &format!("k{i}"), "value"]);
    }
    drop(c);
    n.kill9();
    let cfg = n.config.to_str().unwrap().to_string();
    let (code, out, _) = cli(&["journal", "check", "-c", &cfg]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("20 record(s)") && out.ends_with("OK\n"),
        "{out}"
    );
    let seg = n.dir.join("data/current/journal/00000000000000000001.hbj");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[300] ^= 0xff; // inside an early record
    std::fs::write(&seg, &bytes).unwrap();
    let (code, out, _) = cli(&["journal", "check", "-c", &cfg]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("CORRUPT") && out.contains("00000000000000000001.hbj offset"),
        "{out}"
    );
    let (code, _, err) = cli(&["serve", "-c", &cfg]);
    assert_eq!(code, 1);
    assert!(
        err.contains("journal corrupt") && err.contains("not a torn tail"),
        "{err}"
    );
}

#[test]
fn a_torn_journal_tail_is_cut_at_start_with_an_incident_and_nothing_acked_is_lost() {
    let mut n = Node::start("");
    let mut c = n.client();
    for i in 0..50 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
    n.kill9();
    // The unfinished write of a crash: part of a group commit at the end of the segment.
    let dir = n.dir.join("data/current/journal");
    let mut segs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "hbj"))
        .collect();
    segs.sort();
    let last = segs.last().unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(last).unwrap();
    f.write_all(&[0xab; 77]).unwrap();
    drop(f);
    n.launch();
    let mut c = n.client();
    for i in 0..50 {
        let v: i64 = redis::cmd("GET")
            .arg(format!("k{i}"))
            .query(&mut c)
            .unwrap();
        assert_eq!(v, i);
    }
    common::pair::assert_incident(&n, "journal_truncated");
}

#[test]
fn a_second_daemon_on_the_same_data_dir_is_refused() {
    let n = Node::start("");
    let (code, _, err) = cli(&["serve", "-c", n.config.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("in use by another hotbackup process"), "{err}");
    assert_eq!(n.raw().cmd(&["PING"]), "+PONG\r\n");
}

#[test]
fn a_bad_config_line_is_refused_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "data_dir = \"/tmp/x\"\n[client]\nlisten = \"127.0.0.1:0\"\nlistn = 3\n",
    )
    .unwrap();
    let (code, _, err) = cli(&["serve", "-c", cfg.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("bad.toml:4:1") && err.contains("listn"),
        "{err}"
    );
}

#[test]
fn port_check_names_the_process_holding_the_port() {
    let n = Node::start("");
    let port = n.addr.port().to_string();
    let (code, out, _) = cli(&["port-check", &port]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("in use") && out.contains(&format!("pid {}", n.pid())),
        "{out}"
    );
    let (_, json, _) = cli(&["port-check", &port, "--json"]);
    assert!(json.contains("\"free\":false"), "{json}");
}

#[test]
fn malformed_requests_get_an_error_and_harm_nothing() {
    let n = Node::start("max_bulk_len = \"1KiB\"");
    let cases: &[(&[u8], &str)] = &[
        (
            b"*1\r\n$x\r\n",
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*abc\r\n",
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\n+PING\r\n",
            "-ERR Protocol error: expected '$', got '+'\r\n",
        ),
        (b"*1\r\n$4\r\nPINGxx", "-ERR Protocol error: "),
        (
            b"SET \"unbalanced\r\n",
            "-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
        (
            b"*1\r\n$2000\r\n",
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
    ];
    for (input, expect) in cases {
        let mut c = n.raw();
        c.send(input);
        let out = String::from_utf8_lossy(&c.read_to_close()).into_owned();
        assert!(
            out.starts_with(expect),
            "{:?} -> {out:?}",
            String::from_utf8_lossy(input)
        );
    }
    // A client vanishing mid-command.
    let mut c = n.raw();
    c.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100\r\nabc");
    drop(c);
    assert_eq!(n.raw().cmd(&["PING"]), "+PONG\r\n");
    assert_eq!(n.raw().cmd(&["GET", "k"]), "$-1\r\n");
}

#[test]
fn big_values_round_trip() {
    let n = Node::start("");
    let mut con = n.client();
    let big: Vec<u8> = (0..10_000_000u32).map(|i| (i % 251) as u8).collect();
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(&big[..])
        .query(&mut con)
        .unwrap();
    let back: Vec<u8> = redis::cmd("GET").arg("big").query(&mut con).unwrap();
    assert!(back == big);
}

#[test]
fn thousands_of_connections_are_served() {
    let n = Node::start("");
    let mut conns: Vec<std::net::TcpStream> = Vec::new();
    for _ in 0..2000 {
        let s = std::net::TcpStream::connect(n.addr).expect("connect");
        conns.push(s);
    }
    for s in &mut conns {
        s.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
    }
    for s in &mut conns {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut b = [0u8; 7];
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"+PONG\r\n");
    }
    let info = n.raw().cmd(&["INFO", "clients"]);
    assert!(info.contains("connected_clients:2001"), "{info}");
}

#[test]
fn a_client_that_never_reads_does_not_delay_the_others() {
    let n = Node::start("");
    let mut con = n.client();
    let _: () = redis::cmd("SET")
        .arg("blob")
        .arg(vec![b'x'; 100_000])
        .query(&mut con)
        .unwrap();
    // The stuck client asks for ~1 GB of replies and never reads them.
    let mut stuck = std::net::TcpStream::connect(n.addr).unwrap();
    let mut req = Vec::new();
    for _ in 0..10_000 {
        hotbackup::resp::encode::request(&mut req, &[b"GET", b"blob"]);
    }
    stuck
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = stuck.write_all(&req);
    let started = Instant::now();
    for i in 0..200 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut con)
            .unwrap();
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "200 writes took {took:?} beside a stuck client"
    );
    assert!(wait_until(Duration::from_secs(5), || {
        n.raw().cmd(&["PING"]) == "+PONG\r\n"
    }));
}
