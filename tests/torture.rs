//! Torture test (issue 7, part 1): a master and a slave as real processes, their link through
//! fault-injecting proxies, three clients writing unique keys and recording every write's
//! outcome (acked, failed, unknown), and a seeded schedule of faults: kill -9 and graceful
//! restarts of either node, the slave stopped (SIGSTOP), link cut, stall, flipped byte,
//! duplicated frame, a full disk on either node (each node's data directory is a tmpfs of its
//! own: root), failover (promote after kill -9, rejoin of the old master), split brain (promote while the master, cut off,
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
const CI_FAULTS: usize = 13;

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
