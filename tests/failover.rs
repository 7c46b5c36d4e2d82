//! Failover between real processes on loopback: promote, fencing of an old master (also across
//! a cut link), rejoin with exported lost transactions, switchover, and repeated cycles.

mod common;

use std::time::{Duration, Instant};

use common::duo::*;
use common::pair::*;
use common::{Node, cli, wait_until};

#[test]
fn promote_makes_the_slave_a_writable_master_and_the_restarted_old_master_is_fenced() {
    let mut d = Duo::start("");
    load(&d.a, "k", 2000);
    wait_caught_up(&d.a, &d.b, Duration::from_secs(20));
    d.a.kill9();

    // A slave refuses writes, naming its master.
    let e = try_set(&d.b, "x", "1").unwrap_err();
    assert!(e.to_lowercase().contains("readonly"), "{e}");
    assert!(e.contains(&format!("The master is at {}", d.a.addr)), "{e}");

    let t = Instant::now();
    let (code, out, err) = promote(&d.b);
    let took = t.elapsed();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("now the master, generation 2"), "{out}");
    try_set(&d.b, "after", "promotion").unwrap();
    eprintln!("promote: writable {took:?} after the command started");
    assert_eq!(
        field(&info(&d.b, "replication"), "generation").as_deref(),
        Some("2")
    );
    // Promoting again is harmless.
    let (code, out, _) = promote(&d.b);
    assert_eq!(code, 0);
    assert!(out.contains("already the master"), "{out}");

    // The old master comes back: it learns of generation 2 from B and is fenced.
    d.a.launch();
    wait_state(&d.a, "fenced", Duration::from_secs(15));
    let e = try_set(&d.a, "y", "1").unwrap_err();
    assert!(e.contains("fenced"), "{e}");
    assert!(
        e.contains(&d.b.addr.to_string()),
        "the error names the new master's client address {}: {e}",
        d.b.addr
    );
    // Still readable; `status` says why it refuses writes.
    assert!(get(&d.a, "k0000001").is_some());
    let (code, status, _) = cli(&["status", "--config", &config_of(&d.a)]);
    assert_eq!(code, 0);
    assert!(
        status.contains("writes       fenced") && status.contains("FENCED"),
        "{status}"
    );
    assert!(d.a.log_text().contains("INCIDENT fenced: fenced"));
    assert_incident(&d.a, "fenced");
    assert_incident(&d.b, "promoted");
    // A fenced node cannot be promoted: it must rejoin.
    let (code, _, err) = promote(&d.a);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("rejoin"), "{err}");
    // The fencing survives a restart.
    assert_eq!(d.a.stop(), Some(0));
    d.a.launch();
    assert_eq!(writes_state(&d.a), "fenced");
    // B took every write meanwhile.
    try_set(&d.b, "still", "master").unwrap();
}

#[test]
fn an_old_master_restarted_while_the_link_is_cut_takes_no_write_and_is_fenced_when_it_heals() {
    let mut d = Duo::start("");
    load(&d.a, "k", 1000);
    wait_caught_up(&d.a, &d.b, Duration::from_secs(20));
    d.a.kill9();
    d.cut();
    let (code, out, err) = promote(&d.b);
    assert_eq!(code, 0, "{out}{err}");
    try_set(&d.b, "b-only", "1").unwrap();

    d.a.launch();
    // Cut off from its peer, the restarted master does not know whether it is still the master:
    // it takes no write, however long the cut lasts (bounded here to 3 s of attempts).
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut attempts = 0;
    while Instant::now() < deadline {
        let e = try_set(&d.a, "a-only", "1").unwrap_err();
        assert!(e.to_lowercase().contains("tryagain"), "{e}");
        attempts += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(attempts > 10);
    assert_eq!(writes_state(&d.a), "checking_peers");

    d.heal();
    wait_state(&d.a, "fenced", Duration::from_secs(15));
    assert!(try_set(&d.a, "a-only", "1").is_err());
    assert_eq!(get(&d.a, "a-only"), None);
    assert_eq!(writes_state(&d.b), "ok");
}

#[test]
fn a_master_cut_off_while_its_slave_is_promoted_is_fenced_within_a_heartbeat_timeout_of_contact() {
    let d = Duo::start("");
    load(&d.a, "k", 1000);
    wait_caught_up(&d.a, &d.b, Duration::from_secs(20));
    d.cut();
    let (code, out, err) = promote(&d.b);
    assert_eq!(code, 0, "{out}{err}");
    // Both take writes while they cannot see each other (async mode: A's are lost to B, and
    // are exported when A rejoins).
    try_set(&d.a, "a-side", "1").unwrap();
    try_set(&d.b, "b-side", "1").unwrap();

    d.heal();
    let healed = Instant::now();
    // peer_timeout is 2 s in these configs; A must be fenced within it of the link working.
    wait_state(&d.a, "fenced", Duration::from_secs(10));
    let dual = healed.elapsed();
    eprintln!("two writable masters for {dual:?} after the link healed");
    assert!(
        dual < Duration::from_secs(2) + Duration::from_millis(600),
        "two writable masters for {dual:?} after contact"
    );
    assert_eq!(writes_state(&d.b), "ok");
}

#[test]
fn rejoin_exports_the_divergent_suffix_and_repairs_without_a_full_copy() {
    let mut d = Duo::start("");
    load(&d.a, "k", 3000);
    let _ = cmd(&d.a, &["HSET", "h", "f1", "v1", "f2", "v2"]);
    let _ = cmd(&d.a, &["SET", "counter", "10"]);
    let _ = cmd(&d.a, &["SET", "log", "a"]);
    wait_caught_up(&d.a, &d.b, Duration::from_secs(20));

    // The link fails; A takes writes B never gets (acknowledged: async mode).
    d.cut();
    for i in 0..20 {
        try_set(&d.a, &format!("a-only-{i}"), "x").unwrap();
    }
    try_set(&d.a, "k0000001", "changed-on-a").unwrap();
    cmd(&d.a, &["DEL", "k0000002"]).unwrap();
    cmd(&d.a, &["APPEND", "log", "-a1"]).unwrap();
    cmd(&d.a, &["INCR", "counter"]).unwrap();
    cmd(&d.a, &["HSET", "h", "f3", "on-a"]).unwrap();
    cmd(&d.a, &["HB.CREATE", "scratch"]).unwrap();
    cmd(&d.a, &["HB.WRITE", "scratch", "s1", "x"]).unwrap();
    let a_durable = durable(&d.a);
    d.a.kill9();

    // B is promoted and takes writes of its own, some to the same items.
    let (code, out, err) = promote(&d.b);
    assert_eq!(code, 0, "{out}{err}");
    try_set(&d.b, "k0000001", "changed-on-b").unwrap();
    cmd(&d.b, &["APPEND", "log", "-b1"]).unwrap();
    cmd(&d.b, &["INCR", "counter"]).unwrap();
    cmd(&d.b, &["HSET", "h", "f4", "on-b"]).unwrap();
    for i in 0..50 {
        try_set(&d.b, &format!("b-{i}"), "y").unwrap();
    }

    let (out, err) = heal_restart_fenced_and_rejoin(&mut d);
    assert!(
        err.contains("were never sent to the new master") || out.contains("were never sent"),
        "the rejoin names the lost transactions:\n{out}\n{err}"
    );
    // More writes on B while A catches up, touching repaired items again.
    cmd(&d.b, &["APPEND", "log", "-b2"]).unwrap();
    try_set(&d.b, "a-only-3", "now-on-b").unwrap();
    wait_caught_up(&d.b, &d.a, Duration::from_secs(30));
    assert_same(&d.b, &d.a, &["main"]);
    assert_eq!(get(&d.a, "log").as_deref(), Some("a-b1-b2"));
    assert_eq!(get(&d.a, "counter").as_deref(), Some("11"));
    assert_eq!(get(&d.a, "k0000001").as_deref(), Some("changed-on-b"));
    assert!(get(&d.a, "k0000002").is_some(), "A's delete was rewound");
    assert_eq!(get(&d.a, "a-only-5"), None);
    let files_a = cmd(&d.a, &["HB.FILES"]).unwrap();
    assert!(
        !format!("{files_a:?}").contains("scratch"),
        "A's file was rewound: {files_a:?}"
    );
    assert_eq!(
        cmd(&d.a, &["HB.READ", "scratch", "s1"]),
        Ok(redis::Value::Nil)
    );
    assert_eq!(link_stat(&d.b, "link_full_syncs"), 0, "no full copy");
    assert!(link_stat(&d.b, "link_partial_syncs") >= 1);
    assert_incident(&d.a, "lost_transactions");

    // The lost transactions are on a tape in A's data dir, readable with `journal dump`.
    let data = d.a.dir.join("data");
    let tapes: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("lost-g1-")
        })
        .collect();
    assert_eq!(tapes.len(), 1, "{tapes:?}");
    let (code, dump, err) = cli(&["journal", "dump", tapes[0].to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    for needle in [
        "a-only-0",
        "a-only-19",
        "changed-on-a",
        "-a1",
        "on-a",
        "scratch",
    ] {
        assert!(dump.contains(needle), "{needle} not in the dump:\n{dump}");
    }
    let last: u64 = dump
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .next()?
                .trim_start_matches("LSN")
                .parse()
                .ok()
        })
        .max()
        .unwrap_or(0);
    eprintln!(
        "lost tape {} ends at LSN {last}; A was durable to {a_durable}",
        tapes[0].display()
    );
    // The admin reviews them and re-applies them on the new master, as new transactions.
    let (code, out, err) = cli(&[
        "journal",
        "load",
        "--to",
        &d.b.addr.to_string(),
        tapes[0].to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(get(&d.b, "a-only-5").as_deref(), Some("x"));
    assert_eq!(get(&d.b, "k0000001").as_deref(), Some("changed-on-a"));
    assert_eq!(
        cmd(&d.b, &["HB.READ", "scratch", "s1"]),
        Ok(redis::Value::BulkString(b"x".to_vec()))
    );
    wait_caught_up(&d.b, &d.a, Duration::from_secs(30));
    assert_same(&d.b, &d.a, &["main"]);
    // A is an ordinary slave now: it refuses writes naming B.
    let e = try_set(&d.a, "x", "1").unwrap_err();
    assert!(e.contains(&d.b.addr.to_string()), "{e}");
    // And rejoin again is harmless.
    let (code, out, err) = rejoin(&d.a, &["--no-wait"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("already a slave"), "{out}");
}

#[test]
fn rejoin_falls_back_to_a_full_sync_when_the_new_master_no_longer_has_the_fork_point() {
    // B keeps the journal A needs (a slot made at the promotion) only up to 1 MiB.
    let extra = "max_retained_bytes = \"1MiB\"\n[durability]\nsegment_size = \"1MiB\"\ncheckpoint_interval = \"1s\"\n";
    let mut d = Duo::start(extra);
    load(&d.a, "k", 500);
    wait_caught_up(&d.a, &d.b, Duration::from_secs(20));
    d.cut();
    try_set(&d.a, "a-only", "x").unwrap();
    d.a.kill9();
    let (code, out, err) = promote(&d.b);
    assert_eq!(code, 0, "{out}{err}");
    let fork = durable(&d.b);
    // Enough writes on B that its journal drops the fork point after checkpoints.
    let ok = wait_until(Duration::from_secs(60), || {
        load(&d.b, "b", 5000);
        link_stat(&d.b, "journal_first_lsn") > fork
    });
    assert!(
        ok,
        "B's journal still starts at {}",
        link_stat(&d.b, "journal_first_lsn")
    );
    heal_restart_fenced_and_rejoin(&mut d);
    wait_caught_up(&d.b, &d.a, Duration::from_secs(60));
    assert_same(&d.b, &d.a, &["main"]);
    assert_eq!(get(&d.a, "a-only"), None);
    assert_eq!(link_stat(&d.b, "link_full_syncs"), 1);
    let lost = std::fs::read_dir(d.a.dir.join("data"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("lost-g1-")
        })
        .count();
    assert_eq!(lost, 1);
    // After the full sync the node is still a slave across a restart (its role moved with it).
    assert_eq!(d.a.stop(), Some(0));
    d.a.launch();
    assert_eq!(writes_state(&d.a), "readonly");
    wait_caught_up(&d.b, &d.a, Duration::from_secs(30));
}

/// Writes keys `{prefix}{i}` one by one to whichever node takes them (starting with `first`),
/// until `stop` is set or `max` keys; returns the keys acknowledged and the longest time
/// between two acknowledgements (the pause clients saw).
fn writer(
    nodes: [std::net::SocketAddr; 2],
    prefix: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    max: usize,
) -> std::thread::JoinHandle<(Vec<String>, Duration)> {
    std::thread::spawn(move || {
        let mut acked = Vec::new();
        let mut longest = Duration::ZERO;
        let mut last_ack = Instant::now();
        let mut which = 0;
        let connect = |i: usize| {
            redis::Client::open(format!("redis://{}/", nodes[i]))
                .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
        };
        let mut conn = connect(which).ok();
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut i = 0;
        while i < max
            && !stop.load(std::sync::atomic::Ordering::SeqCst)
            && Instant::now() < deadline
        {
            let key = format!("{prefix}{i}");
            let r: Result<(), String> = match conn.as_mut() {
                Some(c) => redis::cmd("SET")
                    .arg(&key)
                    .arg(i)
                    .query(c)
                    .map_err(|e| e.to_string()),
                None => Err("not connected".into()),
            };
            match r {
                Ok(()) => {
                    longest = longest.max(last_ack.elapsed());
                    last_ack = Instant::now();
                    acked.push(key);
                    i += 1;
                }
                Err(_) => {
                    // Not the master (any more), or gone: try the other node.
                    which = 1 - which;
                    conn = connect(which).ok();
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        (acked, longest)
    })
}

#[test]
fn switchover_under_write_load_loses_no_acknowledged_write_and_reports_the_pause() {
    let d = Duo::start("");
    load(&d.a, "k", 1000);
    wait_caught_up(&d.a, &d.b, Duration::from_secs(20));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let w = writer([d.a.addr, d.b.addr], "w".into(), stop.clone(), 1_000_000);
    assert!(wait_until(Duration::from_secs(60), || durable(&d.a) > 1300));
    let (code, out, err) = cli(&["switchover", "--config", &config_of(&d.a)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("switchover done"), "{out}");
    eprintln!("{}", out.trim());
    assert_incident(&d.b, "promoted");
    // Writes go on on B.
    let b_start = durable(&d.b);
    assert!(wait_until(Duration::from_secs(60), || durable(&d.b) > b_start + 300));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (acked, longest) = w.join().unwrap();
    eprintln!(
        "switchover under load: {} writes acknowledged, longest pause seen by the client {longest:?}",
        acked.len()
    );
    assert_eq!(writes_state(&d.b), "ok");
    assert_eq!(writes_state(&d.a), "readonly");
    wait_caught_up(&d.b, &d.a, Duration::from_secs(20));
    let mut c = d.b.client();
    let mut missing = Vec::new();
    for chunk in acked.chunks(1000) {
        let vals: Vec<Option<String>> = redis::cmd("MGET").arg(chunk).query(&mut c).unwrap();
        missing.extend(
            chunk
                .iter()
                .zip(vals)
                .filter(|(_, v)| v.is_none())
                .map(|(k, _)| k.clone()),
        );
    }
    assert!(
        missing.is_empty(),
        "acknowledged writes lost: {:?}",
        &missing[..missing.len().min(10)]
    );
    assert_same(&d.b, &d.a, &["main"]);
    // And back again, from B's config this time.
    let (code, out, err) = cli(&["switchover", "--config", &config_of(&d.b)]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(writes_state(&d.a), "ok");
    try_set(&d.a, "back", "on-a").unwrap();
    wait_caught_up(&d.a, &d.b, Duration::from_secs(20));
    assert_same(&d.a, &d.b, &["main"]);
}

#[test]
fn a_switchover_whose_slave_cannot_catch_up_is_aborted_and_the_master_resumes() {
    let d = Duo::start("switchover_timeout = \"500ms\"\n");
    load(&d.a, "k", 500);
    wait_caught_up(&d.a, &d.b, Duration::from_secs(20));
    // The slave stops receiving (the link stays up but forwards nothing).
    d.to_b.pause();
    try_set(&d.a, "behind", "1").unwrap();
    let (code, out, err) = cli(&["switchover", "--config", &config_of(&d.a)]);
    assert_eq!(code, 4, "{out}{err}");
    assert!(err.contains("aborted"), "{err}");
    assert_eq!(writes_state(&d.a), "ok");
    assert_incident(&d.a, "switchover");
    try_set(&d.a, "after-abort", "1").unwrap();
    d.to_b.resume();
    wait_caught_up(&d.a, &d.b, Duration::from_secs(20));
    assert_eq!(writes_state(&d.b), "readonly");
}

/// Keys of `keys` that `n` does not hold.
fn missing_on(n: &Node, keys: &[String]) -> Vec<String> {
    let mut c = n.client();
    let mut missing = Vec::new();
    for chunk in keys.chunks(1000) {
        let vals: Vec<Option<String>> = redis::cmd("MGET").arg(chunk).query(&mut c).unwrap();
        missing.extend(
            chunk
                .iter()
                .zip(vals)
                .filter(|(_, v)| v.is_none())
                .map(|(k, _)| k.clone()),
        );
    }
    missing
}

/// Kills A under load, promotes B, lets the writer go on on B; returns the acknowledged keys.
fn fail_over_under_load(d: &mut Duo) -> Vec<String> {
    load(&d.a, "k", 500);
    wait_caught_up(&d.a, &d.b, Duration::from_secs(20));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let w = writer([d.a.addr, d.b.addr], "w".into(), stop.clone(), 1_000_000);
    let start = durable(&d.a);
    assert!(wait_until(Duration::from_secs(60), || durable(&d.a) > start + 300));
    d.a.kill9();
    let (code, out, err) = promote(&d.b);
    assert_eq!(code, 0, "{out}{err}");
    let b_start = durable(&d.b);
    assert!(wait_until(Duration::from_secs(60), || durable(&d.b) > b_start + 100));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (acked, longest) = w.join().unwrap();
    eprintln!(
        "failover under load: {} writes acknowledged; longest gap seen by the client {longest:?}",
        acked.len()
    );
    acked
}

#[test]
fn kill9_under_load_in_durable_mode_every_acknowledged_write_is_on_the_new_master() {
    let mut d = Duo::start("sync = \"durable\"\nsync_timeout = \"5s\"\n");
    let acked = fail_over_under_load(&mut d);
    let missing = missing_on(&d.b, &acked);
    assert!(
        missing.is_empty(),
        "lost: {:?}",
        &missing[..missing.len().min(10)]
    );
}

#[test]
fn kill9_under_load_in_applied_mode_every_acknowledged_write_is_on_the_new_master() {
    let mut d = Duo::start("sync = \"applied\"\nsync_timeout = \"5s\"\n");
    // The slave lags (10 ms on its link; in async mode that loses the last writes, see the
    // next test): a write is acknowledged only once the slave has applied it, so nothing
    // acknowledged may be missing.
    d.to_b.delay(Duration::from_millis(10));
    let acked = fail_over_under_load(&mut d);
    d.to_b.delay(Duration::ZERO);
    assert!(!acked.is_empty());
    let missing = missing_on(&d.b, &acked);
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes lost, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(10)]
    );
    // The sync mode was in force: no write was acknowledged by the timeout fallback.
    assert!(
        !d.a.log_text().contains("INCIDENT sync_timeout"),
        "a write timed out waiting for the slave:\n{}",
        d.a.log_text()
    );
}

#[test]
fn kill9_under_load_in_async_mode_every_acknowledged_write_is_on_the_new_master_or_exported() {
    let mut d = Duo::start("");
    // The slave lags behind (100 ms on its link), so that A acknowledges writes B never gets.
    d.to_b.delay(Duration::from_millis(100));
    let acked = fail_over_under_load(&mut d);
    d.to_b.delay(Duration::ZERO);
    let missing = missing_on(&d.b, &acked);
    eprintln!(
        "{} acknowledged writes not on the new master",
        missing.len()
    );
    assert!(
        !missing.is_empty(),
        "the slave did not lag: the test proves nothing"
    );
    // The old master comes back fenced and rejoins: what B lacks is in its lost tape.
    d.a.launch();
    wait_state(&d.a, "fenced", Duration::from_secs(15));
    let (code, out, err) = rejoin(&d.a, &[]);
    assert_eq!(code, 0, "{out}{err}");
    let mut dump = String::new();
    for e in std::fs::read_dir(d.a.dir.join("data")).unwrap() {
        let p = e.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("lost-")
        {
            let (code, text, err) = cli(&["journal", "dump", p.to_str().unwrap()]);
            assert_eq!(code, 0, "{err}");
            dump.push_str(&text);
        }
    }
    let vanished: Vec<_> = missing
        .iter()
        .filter(|k| !dump.contains(&format!("\"{k}\"")) && !dump.contains(&format!(" {k} ")))
        .collect();
    assert!(
        vanished.is_empty(),
        "acknowledged writes neither on the new master nor exported: {:?}\n{}",
        &vanished[..vanished.len().min(10)],
        &dump[..dump.len().min(2000)]
    );
    wait_caught_up(&d.b, &d.a, Duration::from_secs(30));
    assert_same(&d.b, &d.a, &["main"]);
}

#[test]
fn ten_failover_rejoin_and_switchover_cycles_with_writes_end_with_equal_data() {
    let d = Duo::start("");
    let mut nodes = [d.a, d.b];
    let (mut m, mut s) = (0usize, 1usize);
    let mut expected = 0;
    for cycle in 0..10 {
        load(&nodes[m], &format!("c{cycle}-m-"), 300);
        expected += 300;
        wait_caught_up(&nodes[m], &nodes[s], Duration::from_secs(30));
        if cycle % 2 == 0 {
            // Failover: the master dies, the slave is promoted, the old master rejoins.
            nodes[m].kill9();
            let (code, out, err) = promote(&nodes[s]);
            assert_eq!(code, 0, "cycle {cycle}: {out}{err}");
            load(&nodes[s], &format!("c{cycle}-s-"), 300);
            expected += 300;
            nodes[m].launch();
            wait_state(&nodes[m], "fenced", Duration::from_secs(15));
            let (code, out, err) = rejoin(&nodes[m], &[]);
            assert_eq!(code, 0, "cycle {cycle}: {out}{err}");
        } else {
            let (code, out, err) = cli(&["switchover", "--config", &config_of(&nodes[s])]);
            assert_eq!(code, 0, "cycle {cycle}: {out}{err}");
        }
        std::mem::swap(&mut m, &mut s);
        assert_eq!(writes_state(&nodes[m]), "ok", "cycle {cycle}");
        assert_eq!(writes_state(&nodes[s]), "readonly", "cycle {cycle}");
        wait_caught_up(&nodes[m], &nodes[s], Duration::from_secs(30));
    }
    let generation: u64 = field(&info(&nodes[m], "replication"), "generation")
        .and_then(|g| g.parse().ok())
        .unwrap_or(0);
    assert_eq!(
        generation, 11,
        "one generation per failover and per switchover"
    );
    let mut c = nodes[m].client();
    let n: usize = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, expected, "every write of every cycle is there");
    assert_same(&nodes[m], &nodes[s], &["main"]);
}

#[test]
fn the_promoted_slave_keeps_the_journal_the_old_master_needs_to_rejoin_without_a_full_copy() {
    let extra = "\n[durability]\nsegment_size = \"1MiB\"\ncheckpoint_interval = \"1s\"\n";
    let mut d = Duo::start(extra);
    load(&d.a, "k", 500);
    wait_caught_up(&d.a, &d.b, Duration::from_secs(20));
    d.cut();
    try_set(&d.a, "a-only", "x").unwrap();
    d.a.kill9();
    let (code, out, err) = promote(&d.b);
    assert_eq!(code, 0, "{out}{err}");
    let fork = durable(&d.b);
    // Several segments' worth of writes and checkpoints on B.
    for round in 0..4 {
        load(&d.b, &format!("b{round}-"), 5000);
    }
    // Wait for a checkpoint covering all of it (after which segments may go).
    let end = durable(&d.b);
    let checkpointed = wait_until(Duration::from_secs(20), || {
        let v: std::collections::HashMap<String, String> =
            redis::cmd("HB.STATUS").query(&mut d.b.client()).unwrap();
        v.get("checkpoint_lsn")
            .and_then(|c| c.parse::<u64>().ok())
            .is_some_and(|c| c >= end)
    });
    assert!(checkpointed, "no checkpoint on B");
    assert!(
        link_stat(&d.b, "journal_first_lsn") <= fork + 1,
        "B dropped journal the old master needs: it starts at {} (fork at {})\n{}",
        link_stat(&d.b, "journal_first_lsn"),
        fork + 1,
        d.b.log_text()
    );
    heal_restart_fenced_and_rejoin(&mut d);
    wait_caught_up(&d.b, &d.a, Duration::from_secs(60));
    assert_same(&d.b, &d.a, &["main"]);
    assert_eq!(link_stat(&d.b, "link_full_syncs"), 0, "no full copy");
}

#[test]
fn rejoin_rebuilds_a_wiped_slave_with_progress_while_the_master_serves() {
    let mut d = Duo::start("");
    load(&d.a, "k", 150_000);
    wait_caught_up(&d.a, &d.b, Duration::from_secs(60));
    // The slave's disk is replaced: its data directory is gone.
    assert_eq!(d.b.stop(), Some(0));
    std::fs::remove_dir_all(d.b.dir.join("data")).unwrap();
    d.b.launch();
    let (code, out, err) = rejoin(&d.b, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("in sync"), "{out}");
    // The rebuild is reported: live progress lines while the command watched it load (the
    // master may have finished before the command started), and always the summary.
    assert!(
        // 150000 and hotbackup's own canary item, if one was written meanwhile.
        out.contains("full sync of 150000 items") || out.contains("full sync of 150001 items"),
        "the full sync is reported with its item count:\n{out}\n{err}"
    );
    if let Some(line) = err.lines().find(|l| l.starts_with("full sync:")) {
        assert!(
            line.contains("of 15000"),
            "progress shows the total: {line}"
        );
    }
    // The master kept serving meanwhile.
    try_set(&d.a, "during", "rebuild").unwrap();
    wait_caught_up(&d.a, &d.b, Duration::from_secs(30));
    assert_same(&d.a, &d.b, &["main"]);
}

#[test]
fn switchover_with_refuse_mode_answers_tryagain_during_the_hand_over_and_loses_nothing() {
    let d = Duo::start("switchover_writes = \"refuse\"\n");
    load(&d.a, "k", 500);
    wait_caught_up(&d.a, &d.b, Duration::from_secs(20));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let w = writer([d.a.addr, d.b.addr], "r".into(), stop.clone(), 1_000_000);
    let start = durable(&d.a);
    assert!(wait_until(Duration::from_secs(60), || durable(&d.a) > start + 300));
    let (code, out, err) = cli(&["switchover", "--config", &config_of(&d.a)]);
    assert_eq!(code, 0, "{out}{err}");
    let b_start = durable(&d.b);
    assert!(wait_until(Duration::from_secs(60), || durable(&d.b) > b_start + 100));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (acked, _) = w.join().unwrap();
    let missing = missing_on(&d.b, &acked);
    assert!(
        missing.is_empty(),
        "lost: {:?}",
        &missing[..missing.len().min(10)]
    );
    assert!(
        d.a.log_text().contains("new writes get TRYAGAIN"),
        "the refuse mode was in force"
    );
}

#[test]
fn promote_and_rejoin_work_on_stopped_nodes_and_are_idempotent() {
    let mut d = Duo::start("");
    load(&d.a, "k", 500);
    wait_caught_up(&d.a, &d.b, Duration::from_secs(20));
    d.a.kill9();
    assert_eq!(d.b.stop(), Some(0));
    // Both nodes are down: B is promoted in its data directory.
    let (code, out, err) = promote(&d.b);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("(stopped) is now the master, generation 2"),
        "{out}"
    );
    let (code, out, _) = promote(&d.b);
    assert_eq!(code, 0);
    assert!(out.contains("already a master"), "{out}");
    // A, stopped, is made a slave before it ever starts again: it never takes a write.
    let (code, out, err) = rejoin(&d.a, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("(stopped) is now a slave"), "{out}");
    let (code, out, _) = rejoin(&d.a, &[]);
    assert_eq!(code, 0);
    assert!(out.contains("already a slave"), "{out}");
    d.b.launch();
    // Its config says slave, its data dir says master; until it has heard from its peer it
    // takes no write (the peer might have been promoted too).
    assert_eq!(writes_state(&d.b), "checking_peers");
    d.a.launch();
    assert_eq!(writes_state(&d.a), "readonly");
    wait_state(&d.b, "ok", Duration::from_secs(15));
    try_set(&d.b, "on-b", "1").unwrap();
    wait_caught_up(&d.b, &d.a, Duration::from_secs(30));
    assert_same(&d.b, &d.a, &["main"]);
}

#[test]
fn two_masters_of_one_generation_meet_refuse_to_feed_each_other_and_raise_an_incident() {
    // B is made from a save of A and configured as a master: the same database at the same
    // generation, two writable masters (a setup mistake). When they meet, neither feeds the
    // other and both raise the incident that tells the admin to promote one and rejoin the other.
    let dir = tempfile::tempdir().unwrap();
    let key = common::key_file(dir.path(), "k.key", KEY);
    let (pa, pb) = (common::free_port(), common::free_port());
    let (adir, bdir) = (dir.path().join("a"), dir.path().join("b"));
    node_config(&adir, "master", pa, &[format!("127.0.0.1:{pb}")], &key, "");
    node_config(&bdir, "master", pb, &[format!("127.0.0.1:{pa}")], &key, "");
    let a = Node::start_in(&adir);
    load(&a, "k", 100);
    let tape = dir.path().join("a.save");
    let (code, out, err) = cli(&[
        "save",
        "-c",
        a.config.to_str().unwrap(),
        "--to",
        tape.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = cli(&[
        "restore",
        "-c",
        bdir.join("node.toml").to_str().unwrap(),
        tape.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let b = Node::start_in(&bdir);
    assert_incident(&a, "two_masters");
    assert_incident(&b, "two_masters");
    assert_eq!(
        get(&b, "k0000099").as_deref(),
        get(&a, "k0000099").as_deref()
    );
    let log = a.log_text();
    assert!(
        log.contains("promote one (`hotbackup promote`) and rejoin the other"),
        "{log}"
    );
}

/// In a sync mode, `hotbackup promote` of a slave whose master is dead answers at once: the
/// promotion record waits to be durable here, not for a slave (it has none yet). Found by the
/// torture test: it used to wait for `sync_timeout` and exit 1 although promoted.
#[test]
fn promote_in_durable_mode_answers_at_once() {
    use common::duo::{Duo, promote};
    use common::pair::{load, wait_caught_up};
    use std::time::{Duration, Instant};
    let mut d = Duo::start("sync = \"durable\"\nsync_timeout = \"30s\"\n");
    load(&d.a, "k", 100);
    wait_caught_up(&d.a, &d.b, Duration::from_secs(20));
    d.a.kill9();
    let t = Instant::now();
    let (code, out, err) = promote(&d.b);
    assert_eq!(code, 0, "after {:?}: {out}{err}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

/// Durable mode: a master cut off from its slave holds its clients' write replies (no slave
/// acknowledges them); the slave is promoted; on contact the old master is fenced and `rejoin`
/// exports those writes to its lost-transactions tape and rewinds them. The held replies must
/// never become "+OK" (found by the torture test, seed 11: they were sent once the node was
/// master again and records under the same LSNs were acknowledged): the client is disconnected
/// when the node is fenced, outcome unknown.
#[test]
fn a_write_held_by_a_split_brain_master_is_never_acknowledged_after_its_rewind() {
    use common::duo::{Duo, config_of, get, promote, rejoin, wait_state};
    use common::pair::{load, wait_caught_up};
    use std::time::Duration;
    let d = Duo::start("sync = \"durable\"\nsync_timeout = \"60s\"\n");
    load(&d.a, "k", 10);
    wait_caught_up(&d.a, &d.b, Duration::from_secs(20));
    d.cut();
    let addr = d.a.addr;
    let writer = std::thread::spawn(move || {
        let mut c = redis::Client::open(format!("redis://{addr}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        c.set_read_timeout(Some(Duration::from_secs(45))).unwrap();
        redis::cmd("SET")
            .arg("held")
            .arg("1")
            .query::<()>(&mut c)
            .map_err(|e| e.to_string())
    });
    let before = common::pair::durable(&d.a);
    assert!(common::wait_until(Duration::from_secs(5), || {
        common::pair::durable(&d.a) > before
    }));
    // Durable mode: the command times out though B is promoted (the other finding).
    let _ = promote(&d.b);
    wait_state(&d.b, "ok", Duration::from_secs(15));
    d.heal();
    wait_state(&d.a, "fenced", Duration::from_secs(15));
    let (code, out, err) = rejoin(&d.a, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("never sent"), "{out}");
    wait_caught_up(&d.b, &d.a, Duration::from_secs(30));
    let (code, out, err) = common::cli(&["switchover", "--config", &config_of(&d.b)]);
    assert_eq!(code, 0, "{out}{err}");
    let reply = writer.join().unwrap();
    if reply.is_ok() {
        assert!(
            get(&d.a, "held").is_some(),
            "SET held was acknowledged, but it is not in the database (it is in the lost-transactions tape)"
        );
    }
    assert!(
        reply.is_err(),
        "the held write must not be acknowledged: {reply:?}"
    );
}

/// The string value of `"name":"…"` in `hotbackup status --json` output (its fields are flat
/// strings without escapes in what these tests read).
fn json_field(json: &str, name: &str) -> Option<String> {
    let start = json.find(&format!("\"{name}\":\""))? + name.len() + 4;
    let rest = &json[start..];
    Some(rest[..rest.find('"')?].to_string())
}

/// One sample of a full sync as `hotbackup status --json` shows it, checked for sanity:
/// (items loaded, items total). None when the node shows no full sync.
fn full_sync_sample(n: &Node) -> Option<(u64, u64)> {
    let (code, json, err) = cli(&["status", "--config", &config_of(n), "--json"]);
    assert_eq!(
        code, 0,
        "the daemon answers `status` during the sync: {json}{err}"
    );
    if json_field(&json, "sync_phase")?.as_str() != "full sync" {
        return None;
    }
    let num = |k: &str| -> f64 {
        json_field(&json, k)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{k} missing or not a number: {json}"))
    };
    let (items, total) = (num("sync_items") as u64, num("sync_items_total") as u64);
    assert!(items <= total, "loaded {items} of {total}: {json}");
    if items > 0 {
        // Bytes and an ETA at the rate observed so far, once items arrive.
        assert!(num("sync_bytes") > 0.0, "{json}");
        assert!(num("sync_rate_items_s") > 0.0, "{json}");
        assert!(num("sync_eta_s") >= 0.0, "{json}");
        assert!(num("sync_elapsed_s") >= 0.0, "{json}");
    }
    Some((items, total))
}

#[test]
fn a_full_sync_shows_items_bytes_and_eta_in_status_while_the_master_takes_writes() {
    let mut d = Duo::start("");
    load(&d.a, "k", 200_000);
    wait_caught_up(&d.a, &d.b, Duration::from_secs(60));
    assert_eq!(d.b.stop(), Some(0));
    std::fs::remove_dir_all(d.b.dir.join("data")).unwrap();
    // Each chunk on the link is held 100 ms: the snapshot takes a few seconds to cross (the
    // proxy queues at most 32 chunks of 16 KiB), long enough to watch.
    d.to_b.delay(Duration::from_millis(100));
    let started = Instant::now();
    d.b.launch();
    let mut seen = None;
    let ok = wait_until(Duration::from_secs(60), || {
        seen = full_sync_sample(&d.b).filter(|&(items, _)| items > 0);
        seen.is_some()
    });
    assert!(
        ok,
        "no full sync in progress seen in `status --json` within 60 s\n{}",
        d.b.log_text()
    );
    let (items, total) = seen.unwrap();
    eprintln!(
        "full sync seen {:?} after the slave started: {items} of {total} items",
        started.elapsed()
    );
    assert!(total >= 200_000, "{total}");
    // The human form and INFO replication show it too.
    let (_, human, _) = cli(&["status", "--config", &config_of(&d.b)]);
    let line = human
        .lines()
        .find(|l| l.trim_start().starts_with("sync "))
        .unwrap_or_else(|| panic!("no sync line:\n{human}"));
    assert!(
        line.contains("full sync:") && line.contains("MiB") && line.contains("ETA"),
        "{line}"
    );
    let repl = info(&d.b, "replication");
    let n = |k: &str| -> i64 {
        field(&repl, k)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{k} missing: {repl}"))
    };
    assert_eq!(n("master_sync_in_progress"), 1, "{repl}");
    assert!(n("master_sync_read_items") > 0, "{repl}");
    assert!(
        n("master_sync_read_items") <= n("master_sync_total_items"),
        "{repl}"
    );
    assert!(n("master_sync_read_bytes") > 0, "{repl}");
    assert!(n("master_sync_eta_seconds") >= 0, "{repl}");
    assert!(
        field(&repl, "master_sync_progress").is_some_and(|p| p.starts_with("full sync:")),
        "{repl}"
    );
    eprintln!("status: {}", line.trim());
    // A write to the master during the rebuild is acknowledged at once (and the rebuild is
    // still going on after it: all of the above was seen during it)...
    try_set(&d.a, "during", "rebuild").unwrap();
    let after_write = full_sync_sample(&d.b);
    eprintln!("after the write: {after_write:?}");
    assert!(
        after_write.is_some(),
        "the full sync ended before the write was acknowledged: the test proves nothing"
    );
    // ...and is on the slave once the copy is live and streaming.
    d.to_b.delay(Duration::ZERO);
    wait_caught_up(&d.a, &d.b, Duration::from_secs(60));
    eprintln!(
        "full sync done {:?} after the slave started",
        started.elapsed()
    );
    assert_eq!(get(&d.b, "during").as_deref(), Some("rebuild"));
    assert!(
        full_sync_sample(&d.b).is_none(),
        "the progress fields go once the sync is done"
    );
    assert_same(&d.a, &d.b, &["main"]);
}

/// Scripts call `rejoin` and `switchover` blindly: on the wrong node they must refuse with the
/// documented exit code 3 and say why, and change nothing.
#[test]
fn rejoin_and_switchover_on_the_wrong_node_refuse_with_exit_3_and_change_nothing() {
    let mut d = Duo::start("");
    load(&d.a, "k", 100);
    wait_caught_up(&d.a, &d.b, Duration::from_secs(20));

    // rejoin on the healthy, writable, unfenced master: the pair would have no master.
    for extra in [&[][..], &["--no-wait"][..]] {
        let (code, out, err) = rejoin(&d.a, extra);
        assert_eq!(code, 3, "rejoin {extra:?}: {out}{err}");
        assert!(
            err.contains("--force") && err.contains("writable master"),
            "the refusal says why and how to override: {err}"
        );
        assert!(out.is_empty(), "{out}");
    }
    assert_eq!(writes_state(&d.a), "ok");
    assert_eq!(
        field(&info(&d.a, "replication"), "role").as_deref(),
        Some("master")
    );
    try_set(&d.a, "still", "master").unwrap();
    wait_caught_up(&d.a, &d.b, Duration::from_secs(20));

    // switchover while no slave streams from the master (B stopped): nobody to hand over to.
    assert_eq!(d.b.stop(), Some(0));
    let streaming = || {
        info(&d.a, "replication")
            .lines()
            .any(|l| l.starts_with("slave0:") && l.contains("state=streaming"))
    };
    assert!(
        wait_until(Duration::from_secs(10), || !streaming()),
        "A still sees B streaming"
    );
    let (code, out, err) = cli(&["switchover", "--config", &config_of(&d.a)]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(err.contains("no slave is streaming"), "{err}");
    assert_eq!(writes_state(&d.a), "ok", "writes are not left paused");
    try_set(&d.a, "after", "refused-switchover").unwrap();

    // switchover on the stopped node: refused, the same code as the unit scripts use.
    let (code, out, err) = cli(&["switchover", "--config", &config_of(&d.b)]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(err.contains("is not running"), "{err}");
    // Nothing was changed: B comes back as A's slave and catches up.
    d.b.launch();
    assert_eq!(writes_state(&d.b), "readonly");
    wait_caught_up(&d.a, &d.b, Duration::from_secs(30));
    assert_eq!(get(&d.b, "after").as_deref(), Some("refused-switchover"));
    assert_eq!(
        field(&info(&d.a, "replication"), "generation").as_deref(),
        Some("1")
    );
}

#[test]
fn a_rejoin_repair_shows_its_progress_in_status() {
    let mut d = Duo::start("");
    load(&d.a, "k", 30_000);
    wait_caught_up(&d.a, &d.b, Duration::from_secs(60));
    // A, cut off, rewrites every item; B is promoted: A's rejoin must repair all of them.
    d.cut();
    let mut c = d.a.client();
    for i in (0..30_000).step_by(1000) {
        let mut mset = redis::cmd("MSET");
        for j in i..i + 1000 {
            mset.arg(format!("k{j:07}")).arg(format!("on-a-{j}"));
        }
        let _: () = mset.query(&mut c).unwrap();
    }
    d.a.kill9();
    let (code, out, err) = promote(&d.b);
    assert_eq!(code, 0, "{out}{err}");
    d.heal();
    // The repair's frames are held 100 ms each on the link (the proxy queues at most 512 KiB):
    // the repair takes a moment to arrive.
    d.to_a.delay(Duration::from_millis(100));
    d.a.launch();
    wait_state(&d.a, "fenced", Duration::from_secs(15));
    let (code, out, err) = rejoin(&d.a, &["--no-wait"]);
    assert_eq!(code, 0, "{out}{err}");
    // Watch the repair: until part of it has arrived, or it is over (on a loaded machine the
    // items may all come in one burst; then the last view of it under way is checked).
    let mut seen: Option<String> = None;
    let mut partly = false;
    wait_until(Duration::from_secs(60), || {
        let (code, json, err) = cli(&["status", "--config", &config_of(&d.a), "--json"]);
        assert_eq!(code, 0, "{json}{err}");
        if json_field(&json, "sync_phase").as_deref() != Some("repair") {
            // Over once it was seen under way.
            return seen.is_some();
        }
        partly = json_field(&json, "sync_items").is_some_and(|n| n != "0");
        seen = Some(json);
        partly
    });
    let Some(json) = seen else {
        panic!(
            "no repair under way seen in `status --json`\n{}",
            d.a.log_text()
        );
    };
    let num = |k: &str| -> u64 {
        json_field(&json, k)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{k}: {json}"))
    };
    // Every rewritten item is asked for (and hotbackup's own canary, if one was written).
    assert!(
        (30_000..=30_001).contains(&num("sync_items_total")),
        "{json}"
    );
    assert!(num("sync_items") <= num("sync_items_total"), "{json}");
    assert!(!partly || num("sync_bytes") > 0, "{json}");
    assert_eq!(
        json_field(&json, "sync_eta_s").as_deref(),
        Some(""),
        "a repair has no ETA: {json}"
    );
    let links = json_field(&json, "links").unwrap_or_default();
    assert!(links.contains("repair ("), "{links}");
    eprintln!("{}", json_field(&json, "sync").unwrap_or_default());
    d.to_a.delay(Duration::ZERO);
    wait_caught_up(&d.b, &d.a, Duration::from_secs(60));
    assert_same(&d.b, &d.a, &["main"]);
    assert_eq!(link_stat(&d.b, "link_full_syncs"), 0, "no full copy");
    assert_eq!(writes_state(&d.a), "readonly");
}

/// The new master scans its journal from the rejoining node's fork point (for file-level ops)
/// a budget at a time: a long journal since the fork is read whole, the file it dropped and
/// created again is repaired whole, and the data ends equal.
#[test]
fn a_rejoin_scans_a_long_journal_since_the_fork_and_repairs_a_file_dropped_there() {
    let mut d = Duo::start("");
    cmd(&d.a, &["HB.CREATE", "side"]).unwrap();
    cmd(&d.a, &["HB.WRITE", "side", "s0", "before"]).unwrap();
    load(&d.a, "k", 2000);
    wait_caught_up(&d.a, &d.b, Duration::from_secs(20));
    // A, cut off, writes to the file; B is promoted.
    d.cut();
    cmd(&d.a, &["HB.WRITE", "side", "s1", "on-a"]).unwrap();
    try_set(&d.a, "k0000001", "on-a").unwrap();
    d.a.kill9();
    let (code, out, err) = promote(&d.b);
    assert_eq!(code, 0, "{out}{err}");
    // B drops the file and makes it again, then takes many records.
    cmd(&d.b, &["HB.DROP", "side"]).unwrap();
    cmd(&d.b, &["HB.CREATE", "side"]).unwrap();
    cmd(&d.b, &["HB.WRITE", "side", "s2", "on-b"]).unwrap();
    let mut c = d.b.client();
    for i in 0..20_000 {
        let _: () = redis::cmd("SET")
            .arg(format!("b{i:06}"))
            .arg("y")
            .query(&mut c)
            .unwrap();
    }
    heal_restart_fenced_and_rejoin(&mut d);
    wait_caught_up(&d.b, &d.a, Duration::from_secs(60));
    assert_same(&d.b, &d.a, &["main", "side"]);
    assert_eq!(
        cmd(&d.a, &["HB.READ", "side", "s1"]),
        Ok(redis::Value::Nil),
        "A's write to the dropped file was rewound"
    );
    assert_eq!(
        cmd(&d.a, &["HB.READ", "side", "s0"]),
        Ok(redis::Value::Nil),
        "the file was dropped on B"
    );
    assert_eq!(link_stat(&d.b, "link_full_syncs"), 0, "no full copy");
    // Every record B wrote since the fork was scanned (its promotion, the file ops, the
    // write, the SETs; maybe a canary), and the file was repaired whole.
    let line =
        d.b.log_text()
            .lines()
            .find(|l| l.contains("since its fork point scanned"))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no scan logged:\n{}", d.b.log_text()));
    let scanned: u64 = line
        .split("rejoining slave: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    eprintln!("{line}");
    assert!((20_004..20_020).contains(&scanned), "{line}");
    assert!(line.contains("1 whole file(s)"), "{line}");
}
