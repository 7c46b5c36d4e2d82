//! Crash test: concurrent clients write unique keys and record every acknowledged write; the
//! server is killed with SIGKILL at a random moment; after restart every acknowledged write is
//! there with its value, nothing is there that no client wrote, and MULTI/EXEC pairs are whole.
//! Rounds: HB_CRASH_ROUNDS (default 20). Seed: HB_CRASH_SEED (printed on every run).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Node;

const WRITERS: usize = 8;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Default)]
struct Ledger {
    /// Every write attempted: key -> value.
    attempted: HashMap<String, String>,
    /// Writes the server acknowledged: key, value, whether it is a hash field.
    acked: Vec<(String, String, bool)>,
    /// Highest value of the MULTI counter pair acknowledged.
    pair_acked: i64,
}

fn writer(url: String, id: usize, round: usize, stop: Arc<AtomicBool>, ledger: Arc<Mutex<Ledger>>) {
    let Ok(mut con) = redis::Client::open(url).and_then(|c| c.get_connection()) else {
        return;
    };
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        if id == 0 {
            // The transactional writer: a and b move together.
            let r: redis::RedisResult<(i64, i64)> = redis::pipe()
                .atomic()
                .cmd("INCR")
                .arg("pair:a")
                .cmd("INCR")
                .arg("pair:b")
                .query(&mut con);
            match r {
                Ok((a, _)) => ledger.lock().unwrap().pair_acked = a,
                Err(_) => return,
            }
            continue;
        }
        let key = format!("r{round}:c{id}:{seq}");
        let value = format!(
            "value-{round}-{id}-{seq}-{}",
            "x".repeat((seq % 50) as usize)
        );
        ledger
            .lock()
            .unwrap()
            .attempted
            .insert(key.clone(), value.clone());
        let hash = seq % 3 == 0;
        let r: redis::RedisResult<()> = if hash {
            redis::cmd("HSET")
                .arg(&key)
                .arg("f")
                .arg(&value)
                .query(&mut con)
        } else {
            redis::cmd("SET").arg(&key).arg(&value).query(&mut con)
        };
        match r {
            Ok(()) => ledger.lock().unwrap().acked.push((key, value, hash)),
            Err(_) => return, // killed: this write's outcome is unknown
        }
    }
}

#[test]
fn acked_writes_survive_kill_9() {
    let rounds: usize = std::env::var("HB_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("HB_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("crash test: {rounds} rounds, HB_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    // Small segments and frequent checkpoints, so that kills land in every phase: group
    // commits, segment rolls, checkpoints, segment removal, replay.
    let mut n =
        Node::start("\n[durability]\nsegment_size = \"1MiB\"\ncheckpoint_interval = \"200ms\"\n");
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut total_acked = 0;
    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..WRITERS)
            .map(|id| {
                let (url, stop, ledger) = (n.url(), stop.clone(), ledger.clone());
                std::thread::spawn(move || writer(url, id, round, stop, ledger))
            })
            .collect();
        let delay = Duration::from_millis(50 + rng.below(450));
        std::thread::sleep(delay);
        n.kill9();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        n.launch();
        // Check everything ever acknowledged, in every round so far.
        let mut con = n.client();
        let l = ledger.lock().unwrap();
        let mut pipe = redis::pipe();
        for (k, _, hash) in &l.acked {
            if *hash {
                pipe.cmd("HGET").arg(k).arg("f");
            } else {
                pipe.cmd("GET").arg(k);
            }
        }
        let got: Vec<Option<String>> = pipe.query(&mut con).unwrap();
        for ((k, v, _), got) in l.acked.iter().zip(&got) {
            assert_eq!(
                got.as_deref(),
                Some(v.as_str()),
                "round {round} (seed {seed}): acknowledged {k} lost after kill -9 at {delay:?}"
            );
        }
        let (a, b): (Option<i64>, Option<i64>) = redis::cmd("MGET")
            .arg("pair:a")
            .arg("pair:b")
            .query(&mut con)
            .unwrap();
        assert_eq!(a, b, "round {round}: a MULTI/EXEC was half applied");
        assert!(
            a.unwrap_or(0) >= l.pair_acked,
            "round {round}: acked MULTI lost"
        );
        // Nothing that no client wrote.
        let keys: Vec<String> = redis::cmd("KEYS").arg("r*").query(&mut con).unwrap();
        for k in &keys {
            assert!(
                l.attempted.contains_key(k),
                "round {round}: {k} appeared from nowhere"
            );
        }
        total_acked = l.acked.len();
        eprintln!(
            "round {round}: killed after {delay:?}; {} acked writes so far, all present",
            total_acked
        );
    }
    assert!(
        total_acked > rounds * 10,
        "too few writes to mean anything: {total_acked}"
    );
    let started = Instant::now();
    assert_eq!(n.stop(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(20));
}
