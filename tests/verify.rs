//! The built-in checks of issue 5, against real processes: the canary (its end-to-end lag,
//! its alarm on both sides when the link is cut, the recovery when it heals, the slave's own
//! alarm when the canaries it applies are old though they arrive steadily) and online
//! verify (equal copies match, a tampered slave item is named, writes during a run give no
//! false mismatch, a cascading chain reports every slave).

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::duo::Duo;
use common::pair::*;
use common::proxy::Proxy;
use common::{Node, free_port, key_file, wait_until};

const FAST_CANARY: &str = "\n[verify]\ncanary_interval = \"200ms\"\ncanary_alarm = \"1s\"\n";

fn verify(n: &Node, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec![
        "verify",
        "--config",
        n.config.to_str().unwrap(),
        "--timeout",
        "60",
    ];
    args.extend_from_slice(extra);
    n.cli(&args)
}

fn notified(n: &Node, kind: &str) -> usize {
    let needle = format!("\"kind\":\"{kind}\"");
    std::fs::read_to_string(n.dir.join("notified.log"))
        .map(|t| t.lines().filter(|l| l.contains(&needle)).count())
        .unwrap_or(0)
}

#[test]
fn the_canary_shows_the_lag_and_raises_an_alarm_on_both_sides_when_the_link_is_cut() {
    let d = Duo::start(FAST_CANARY);
    // Canaries flow: the slave shows how old and how late the last one is.
    let flowing = wait_until(Duration::from_secs(10), || {
        field(&info(&d.b, "replication"), "canary_counter")
            .and_then(|c| c.parse::<u64>().ok())
            .is_some_and(|c| c >= 3)
    });
    assert!(
        flowing,
        "no canary on the slave:\n{}",
        info(&d.b, "replication")
    );
    let status =
        d.b.cli(&["status", "--config", d.b.config.to_str().unwrap()])
            .1;
    let line = status
        .lines()
        .find(|l| l.trim_start().starts_with("canary"))
        .unwrap_or_else(|| panic!("no canary line in status:\n{status}"));
    assert!(
        line.contains("s ago, lag ") && line.contains(" ms"),
        "{line}"
    );
    let lag: u64 = field(&info(&d.b, "replication"), "canary_lag_ms")
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(lag < 1000, "a healthy loopback pair lags {lag} ms");
    assert_eq!(
        notified(&d.a, "canary_late") + notified(&d.b, "canary_late"),
        0
    );

    // The link is cut: within canary_alarm + one interval both sides raise the alarm.
    let cut = Instant::now();
    d.cut();
    let limit = Duration::from_millis(1000 + 200) + Duration::from_secs(2);
    let both = wait_until(Duration::from_secs(15), || {
        notified(&d.a, "canary_late") > 0 && notified(&d.b, "canary_late") > 0
    });
    let took = cut.elapsed();
    assert!(both, "no canary alarm on both sides");
    assert!(
        took <= limit,
        "the canary alarm took {took:?} (canary_alarm 1s + interval 200ms, polling slack 2s)"
    );
    assert_incident(&d.a, "canary_late");
    assert_incident(&d.b, "canary_late");
    let master_side = d.a.log_text();
    assert!(
        master_side.contains("has not applied canary"),
        "the master names the slave that is behind:\n{master_side}"
    );
    let st =
        d.b.cli(&["status", "--config", d.b.config.to_str().unwrap()])
            .1;
    assert!(st.contains("LATE"), "status shows the alarm:\n{st}");

    // Healed: the recovery is announced on both sides.
    d.heal();
    assert_incident(&d.a, "canary_recovered");
    assert_incident(&d.b, "canary_recovered");
    assert_eq!(notified(&d.a, "canary_late"), 1, "one alarm per episode");
    assert_eq!(notified(&d.b, "canary_late"), 1, "one alarm per episode");
}

#[test]
fn a_slave_applying_old_canaries_raises_its_own_alarm_though_they_arrive_steadily() {
    // The link goes through a proxy whose latency grows in small steps: canaries keep arriving
    // (never a gap near canary_alarm, so the "none arrived" check stays quiet) but each is
    // older, as when a slave works through a backlog. The slave must alarm on its own side.
    let extra = "\n[verify]\ncanary_interval = \"250ms\"\ncanary_alarm = \"1500ms\"\n";
    let cell: Arc<Mutex<Option<Proxy>>> = Default::default();
    let c2 = cell.clone();
    let p = Pair::start_with(extra, extra, move |sp| {
        let proxy = Proxy::start(format!("127.0.0.1:{sp}").parse().unwrap());
        let port = proxy.addr().port();
        *c2.lock().unwrap() = Some(proxy);
        port
    });
    let guard = cell.lock().unwrap();
    let proxy = guard.as_ref().unwrap();
    let slave_info = |name: &str| -> Option<u64> {
        field(&info(&p.slave, "replication"), name).and_then(|v| v.parse().ok())
    };
    assert!(
        wait_until(Duration::from_secs(10), || slave_info("canary_counter")
            .is_some_and(|c| c >= 3)),
        "no canary on the slave:\n{}",
        info(&p.slave, "replication")
    );
    assert_eq!(notified(&p.slave, "canary_late"), 0);

    // Latency up by 0.3 s every 0.5 s, to 3.3 s; then held for 3 s. Meanwhile the time since
    // the slave last applied a canary is sampled: it must stay well under canary_alarm.
    let mut longest_gap = 0;
    let sample_until = |until: Instant, longest_gap: &mut u64| {
        while Instant::now() < until {
            if let Some(age) = slave_info("canary_age_ms") {
                *longest_gap = (*longest_gap).max(age);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    for step in 1..=11u32 {
        proxy.delay(Duration::from_millis(300) * step);
        sample_until(
            Instant::now() + Duration::from_millis(500),
            &mut longest_gap,
        );
    }
    sample_until(Instant::now() + Duration::from_secs(3), &mut longest_gap);
    assert!(
        longest_gap < 1200,
        "canaries stopped arriving for {longest_gap} ms: this test needs a steady stream"
    );
    assert_eq!(
        notified(&p.slave, "canary_late"),
        1,
        "the slave applies 3 s old canaries with canary_alarm 1.5 s: one alarm\n{}",
        p.slave.log_text()
    );
    let (_, list, _) = p
        .slave
        .cli(&["incidents", "--config", p.slave.config.to_str().unwrap()]);
    assert!(
        list.lines()
            .any(|l| l.contains(" canary_late: ") && l.contains("applies old transactions")),
        "the slave's alarm says why:\n{list}"
    );
    assert_eq!(
        slave_info("canary_late"),
        Some(1),
        "still late while it applies old canaries"
    );
    assert_eq!(notified(&p.slave, "canary_recovered"), 0, "no flapping");
    assert_incident(&p.slave, "canary_late");

    // Latency gone: fresh canaries end the alarm.
    proxy.delay(Duration::ZERO);
    assert_incident(&p.slave, "canary_recovered");
    assert_eq!(slave_info("canary_late"), Some(0));
    assert_eq!(
        notified(&p.slave, "canary_late"),
        1,
        "one alarm per episode"
    );
    drop(guard);
}

#[test]
fn verify_finds_equal_copies_equal_and_keeps_the_result() {
    let p = Pair::start("", "");
    load(&p.master, "k", 3000);
    let mut c = p.master.client();
    let _: () = redis::cmd("HSET")
        .arg("h")
        .arg("f1")
        .arg("v1")
        .arg("f2")
        .arg("v2")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SELECT").arg("acct/x").query(&mut c).unwrap();
    let _: () = redis::cmd("SET").arg("a").arg("1").query(&mut c).unwrap();
    wait_caught_up(&p.master, &p.slave, Duration::from_secs(30));
    let (code, out, err) = verify(&p.master, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(": match;"), "{out}");
    assert!(out.contains("1 of 1 slave outcome"), "{out}");
    for file in ["main", "acct/x"] {
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{file} ")))
            .unwrap_or_else(|| panic!("no line for {file}:\n{out}"));
        assert!(line.contains("match"), "{line}");
    }
    assert!(out.contains("3001 item(s) upstream, 3001 here"), "{out}");
    // Kept: shown by --last on both nodes, and by status.
    let (code, last, _) = verify(&p.master, &["--last"]);
    assert_eq!(code, 0);
    assert!(last.contains(": match;"), "{last}");
    let (code, on_slave, _) = verify(&p.slave, &["--last"]);
    assert_eq!(code, 0, "{on_slave}");
    assert!(on_slave.contains("match"), "{on_slave}");
    let (_, json, _) = verify(&p.master, &["--last", "--json"]);
    assert!(json.contains("\"state\":\"match\""), "{json}");
    let st = p
        .master
        .cli(&["status", "--config", p.master.config.to_str().unwrap()])
        .1;
    assert!(st.contains("verify ") && st.contains(": match"), "{st}");
    assert_incident(&p.slave, "verify_match");
    // A slave does not start runs.
    let (code, _, err) = verify(&p.slave, &[]);
    assert_eq!(code, 3);
    assert!(err.contains("started on the master"), "{err}");
}

/// Changes one item and adds one in the stopped slave's store, behind the journal's back.
fn tamper(slave: &Node) {
    use hotbackup::store::{Store, StoreOptions};
    use hotbackup::txn::{Op, Value};
    let path = hotbackup::datadir::DataDir::new(&slave.dir.join("data")).store_path();
    let mut store = Store::open(&path, &StoreOptions::default()).unwrap();
    let lsn = store.meta().applied_lsn;
    let mut b = store.begin().unwrap();
    for (id, v) in [("k0000042", "tampered"), ("zz-extra", "only here")] {
        b.apply(&Op::Put {
            file: "main".into(),
            id: id.as_bytes().to_vec(),
            value: Value::Str(v.as_bytes().to_vec()),
        })
        .unwrap();
    }
    store.commit(b, lsn).unwrap();
    store.checkpoint().unwrap();
}

#[test]
fn verify_names_the_items_tampered_on_the_slave() {
    let mut p = Pair::start("", "");
    load(&p.master, "k", 5000);
    wait_caught_up(&p.master, &p.slave, Duration::from_secs(30));
    assert_eq!(p.slave.stop(), Some(0));
    tamper(&p.slave);
    p.slave.launch();
    set(&p.master, "after", "restart");
    wait_caught_up(&p.master, &p.slave, Duration::from_secs(30));
    let (code, out, err) = verify(&p.master, &[]);
    assert_eq!(code, 1, "a mismatch exits 1:\n{out}{err}");
    assert!(out.contains(": mismatch;"), "{out}");
    let main = out
        .lines()
        .find(|l| l.trim_start().starts_with("main "))
        .unwrap_or_else(|| panic!("no line for main:\n{out}"));
    assert!(
        main.contains("mismatch") && main.contains("5001 item(s) upstream, 5002 here"),
        "{main}"
    );
    assert!(out.contains("k0000042: value differs"), "{out}");
    assert!(out.contains("zz-extra: only on the slave"), "{out}");
    assert!(
        !out.contains("k0000043"),
        "only the tampered items are named:\n{out}"
    );
    // An incident on both sides, naming the file and the item.
    assert_incident(&p.slave, "verify_mismatch");
    assert_incident(&p.master, "verify_mismatch");
    let log = p.master.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("INCIDENT verify_mismatch"))
        .unwrap();
    assert!(
        line.contains("main mismatch: ") && line.contains("k0000042 (value differs)"),
        "{line}"
    );
}

#[test]
fn verify_while_writes_continue_gives_no_false_mismatch() {
    let p = Pair::start("", "");
    load(&p.master, "k", 2000);
    wait_caught_up(&p.master, &p.slave, Duration::from_secs(30));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let addr = p.master.url();
    let (s, d) = (stop.clone(), done.clone());
    let writer = std::thread::spawn(move || {
        let mut c = redis::Client::open(addr).unwrap().get_connection().unwrap();
        let mut n = 0u64;
        let deadline = Instant::now() + Duration::from_secs(120);
        while !s.load(Ordering::SeqCst) && Instant::now() < deadline {
            let k = format!("k{:07}", n % 2000);
            let _: () = redis::pipe()
                .cmd("SET")
                .arg(&k)
                .arg(n)
                .cmd("HSET")
                .arg("h")
                .arg(n % 50)
                .arg(n)
                .cmd("DEL")
                .arg(format!("tmp{}", n % 7))
                .cmd("SET")
                .arg(format!("tmp{}", (n + 3) % 7))
                .arg(n)
                .query(&mut c)
                .unwrap();
            n += 1;
            d.store(n, Ordering::SeqCst);
        }
    });
    // Writes are flowing before each run and go on during the runs.
    let mut during = 0;
    for round in 0..3 {
        let before = done.load(Ordering::SeqCst);
        assert!(
            wait_until(Duration::from_secs(10), || done.load(Ordering::SeqCst)
                > before),
            "round {round}: the writer is stuck"
        );
        let at_start = done.load(Ordering::SeqCst);
        let (code, out, err) = verify(&p.master, &[]);
        assert_eq!(
            code, 0,
            "round {round}: a false mismatch under writes:\n{out}{err}"
        );
        during += done.load(Ordering::SeqCst) - at_start;
    }
    assert!(during > 0, "no write completed while verify ran");
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
}

fn start(
    root: &Path,
    name: &str,
    role: &str,
    port: u16,
    peers: &[String],
    key: &Path,
    extra: &str,
) -> Node {
    node_config(&root.join(name), role, port, peers, key, extra);
    Node::start_in(&root.join(name))
}

#[test]
fn verify_reports_every_slave_of_a_cascading_chain() {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "k.key", KEY);
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let c = start(
        dir.path(),
        "c",
        "slave",
        pc,
        &[format!("127.0.0.1:{pb}")],
        &key,
        "",
    );
    let b = start(
        dir.path(),
        "b",
        "slave",
        pb,
        &[format!("127.0.0.1:{pa}")],
        &key,
        &format!("downstream = [\"127.0.0.1:{pc}\"]"),
    );
    let a = start(
        dir.path(),
        "a",
        "master",
        pa,
        &[format!("127.0.0.1:{pb}")],
        &key,
        "",
    );
    load(&a, "k", 1000);
    wait_caught_up(&a, &b, Duration::from_secs(30));
    wait_caught_up(&a, &c, Duration::from_secs(30));
    let (code, out, err) = verify(&a, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("2 of 2 slave outcome"),
        "B's and C's outcomes:\n{out}"
    );
    let b_port = b.addr.port();
    let c_port = c.addr.port();
    assert!(
        out.lines().any(|l| l.contains(&format!(":{c_port} vs "))
            && l.contains(&format!(":{b_port} at LSN"))
            && l.ends_with("match")),
        "C compared with B:\n{out}"
    );
    let (code, on_b, _) = verify(&b, &["--last"]);
    assert_eq!(code, 0, "{on_b}");
    assert!(
        on_b.contains(&format!(":{c_port} vs ")),
        "B keeps C's outcome:\n{on_b}"
    );
}

#[test]
fn a_scheduled_verify_runs_by_itself() {
    let p = Pair::start("\n[verify]\ninterval = \"1s\"\n", "");
    load(&p.master, "k", 500);
    wait_caught_up(&p.master, &p.slave, Duration::from_secs(30));
    let mut last = String::new();
    let ran = wait_until(Duration::from_secs(20), || {
        let (code, out, err) = verify(&p.master, &["--last"]);
        last = format!("{code} {out}{err}");
        code == 0 && out.contains(": match;") && out.contains("1 of 1 slave outcome")
    });
    assert!(ran, "no scheduled run came to a match: {last}");
}
