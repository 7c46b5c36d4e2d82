//! Torture test (issue 7, part 1): a master and a slave as real processes, their link through
//! fault-injecting proxies, three clients writing unique keys and recording every write's
//! outcome (acked, failed, unknown), and a seeded schedule of faults: kill -9 and graceful
//! restarts of either node, link cut, stall, flipped byte, duplicated frame, failover (promote
//! after kill -9, rejoin of the old master), split brain (promote while the master, cut off,
//! still writes; heal; the old master fenced and rejoined) and switchover. After the schedule
//! everything is healed and a checker proves: every acknowledged write is there (async mode: or
//! in a lost-transactions tape), nothing appears that no client wrote, the slave equals the
//! master (`hotbackup verify` and item by item), two writable masters never overlapped beyond
//! one peer timeout (after contact), and every fault raised its incidents in time.
//!
//! CI runs two fixed seeds (one per sync mode). For release testing run many:
//! `HB_TORTURE_SEEDS=1..50 HB_TORTURE_FAULTS=20 cargo test --release --test torture -- --ignored --nocapture torture_seeds`;
//! a failing seed is replayed with `HB_TORTURE_SEED=n` (same fault count).

mod common;
#[path = "torture/harness.rs"]
mod harness;
#[path = "torture/workload.rs"]
mod workload;

/// Faults per schedule in CI: one of each kind.
const CI_FAULTS: usize = 11;

#[test]
fn torture_durable_seed_1_loses_no_acknowledged_write_through_every_kind_of_fault() {
    harness::run(1, CI_FAULTS);
}

#[test]
fn torture_async_seed_2_loses_nothing_but_what_the_lost_transactions_tape_lists() {
    harness::run(2, CI_FAULTS);
}

/// Seeds from `HB_TORTURE_SEED` (one) or `HB_TORTURE_SEEDS` ("a..b" or "a,b,c"), faults per
/// schedule from `HB_TORTURE_FAULTS` (default 20). Odd seeds run in durable mode, even in async.
fn seeds_from_env() -> (Vec<u64>, usize) {
    let faults = std::env::var("HB_TORTURE_FAULTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let spec = std::env::var("HB_TORTURE_SEED")
        .or_else(|_| std::env::var("HB_TORTURE_SEEDS"))
        .unwrap_or_else(|_| "1..10".into());
    let seeds = if let Some((a, b)) = spec.split_once("..") {
        let (a, b): (u64, u64) = (
            a.trim().parse().expect("HB_TORTURE_SEEDS: a..b"),
            b.trim().parse().expect("HB_TORTURE_SEEDS: a..b"),
        );
        (a..=b).collect()
    } else {
        spec.split(',')
            .map(|s| s.trim().parse().expect("HB_TORTURE_SEED(S): numbers"))
            .collect()
    };
    (seeds, faults)
}

#[test]
#[ignore = "long run for release testing: HB_TORTURE_SEEDS / HB_TORTURE_SEED / HB_TORTURE_FAULTS"]
fn torture_seeds() {
    let (seeds, faults) = seeds_from_env();
    let started = std::time::Instant::now();
    let mut failed = Vec::new();
    for &seed in &seeds {
        // Every seed runs; the failures are listed at the end.
        if std::panic::catch_unwind(|| harness::run(seed, faults)).is_err() {
            failed.push(seed);
        }
    }
    eprintln!(
        "torture: {} seed(s) of {faults} faults in {:.0} s; failed: {failed:?}",
        seeds.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failed.is_empty(),
        "failing seeds: {failed:?} (replay one with HB_TORTURE_SEED=n HB_TORTURE_FAULTS={faults})"
    );
}

// Findings of the torture run, pinned as deterministic tests. They fail today (the bugs are
// reported, not fixed in src/ by the torture work), hence ignored; run them with
// `cargo test --test torture -- --ignored finding_`.

/// Finding: the peer timeout counts bytes, not frames. A bit flipped in a RECORDS/heartbeat
/// frame's length field (+64 KiB here) makes the slave wait for a payload that long; the
/// master's heartbeats keep arriving, so the slave never finds it silent: the link shows "up",
/// nothing is applied and no incident is raised (until the bytes add up, minutes later, or
/// canary_late after 30 s).
#[test]
#[ignore = "known bug: a corrupted frame length stalls the link undetected (see the doc comment)"]
fn finding_a_flipped_length_bit_is_detected_within_the_peer_timeout() {
    use common::duo::{Duo, try_set};
    use common::pair::{durable, field, info, load, wait_caught_up};
    use common::proxy::Dir;
    use std::time::Duration;
    let d = Duo::start("");
    load(&d.a, "k", 100);
    wait_caught_up(&d.a, &d.b, Duration::from_secs(20));
    // Idle but for heartbeats: wait until a frame has just passed, then flip the next frame's
    // byte 6 (bit 0 of the third length byte).
    let base = d.to_b.forwarded(Dir::ToTarget);
    assert!(common::wait_until(Duration::from_secs(5), || d
        .to_b
        .forwarded(Dir::ToTarget)
        > base));
    std::thread::sleep(Duration::from_millis(50));
    d.to_b.flip_byte(Dir::ToTarget, 6);
    try_set(&d.a, "after-flip", "1").unwrap();
    let detected = common::wait_until(Duration::from_secs(6), || {
        std::fs::read_to_string(d.b.dir.join("notified.log")).is_ok_and(|t| {
            t.contains("\"kind\":\"auth_failure\"") || t.contains("\"kind\":\"link_down\"")
        })
    });
    assert!(
        detected,
        "no incident 6 s after a flipped length bit (peer_timeout 2 s); slave link {:?}, slave at LSN {:?}, master at {}",
        field(&info(&d.b, "replication"), "master_link_status"),
        field(&info(&d.b, "replication"), "slave_repl_offset"),
        durable(&d.a)
    );
    wait_caught_up(&d.a, &d.b, Duration::from_secs(20));
}

/// Finding: in a sync mode, `hotbackup promote` of a slave whose master is dead answers only
/// when the promotion record is acknowledged by a slave (there is none) or `sync_timeout`
/// passes: with sync_timeout >= 10 s the command gives up ("the daemon did not answer"),
/// exits 1, although the node was promoted at once and takes writes.
#[test]
#[ignore = "known bug: promote in durable mode answers only after sync_timeout (see the doc comment)"]
fn finding_promote_in_durable_mode_answers_at_once() {
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

/// Finding (seed 11, durable mode): a master cut off from its slave holds its clients' write
/// replies (no slave acknowledges them); the slave is promoted; on contact the old master is
/// fenced and `rejoin` exports those writes to its lost-transactions tape and rewinds them. The
/// held "+OK" replies are not failed: when the node is master again (a switchover) and the new
/// records under the same LSNs are acknowledged, they are sent, so the client holds an
/// acknowledgement of a write that is only in the tape.
#[test]
#[ignore = "known bug: a held write of a fenced and rewound master is acknowledged later (see the doc comment)"]
fn finding_a_write_held_by_a_split_brain_master_is_never_acknowledged_after_its_rewind() {
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
    eprintln!("the held write was answered: {reply:?}");
}
