//! The torture test's client side: a seeded PRNG, the write workload (client threads that record
//! every write with its outcome) and the monitor that samples both nodes' `writes` state to find
//! two writable masters at once. Everything here is bounded in count and time and never panics on
//! a node being down: a dead node is what the test is about.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// SplitMix64: small, fast, and the same sequence on every platform for a seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

/// What a client knows about one write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered OK.
    Acked,
    /// The server answered an error (READONLY, TRYAGAIN, NOREPLICAS, …).
    Failed,
    /// The request was sent and the connection failed or timed out before an answer.
    Unknown,
}

/// One write a client sent: a key written once only, with a value naming it.
#[derive(Clone, Debug)]
pub struct Op {
    pub key: String,
    pub value: String,
    pub outcome: Outcome,
    /// The node (0 = A, 1 = B) it was sent to.
    pub node: usize,
    /// Milliseconds since the run started, when the answer came.
    pub at_ms: u64,
    /// The server's error, for failed writes.
    pub error: Option<String>,
}

/// The client threads of a run.
pub struct Workload {
    stop: Arc<AtomicBool>,
    /// While set, the clients send nothing (see `harness::strict`).
    paused: Arc<AtomicBool>,
    /// Clients with a write in flight.
    busy: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<Vec<Op>>>,
}

/// Longest a single write may wait for its answer before it counts as unknown.
const WRITE_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest a client thread runs, whatever happens (the schedule is far shorter).
const CLIENT_LIFETIME: Duration = Duration::from_secs(1800);
/// At most this many writes per client (bounds memory and the final check).
const MAX_OPS_PER_CLIENT: u64 = 400_000;
/// Pause between two writes of one client: a steady, modest load (a few hundred writes/s).
const WRITE_GAP: Duration = Duration::from_millis(3);

impl Workload {
    /// Starts `clients` threads writing to whichever of `nodes` takes writes.
    pub fn start(nodes: [SocketAddr; 2], clients: usize, seed: u64, t0: Instant) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(false));
        let busy = Arc::new(AtomicUsize::new(0));
        let threads = (0..clients)
            .map(|c| {
                let (stop, paused, busy) = (stop.clone(), paused.clone(), busy.clone());
                std::thread::Builder::new()
                    .name(format!("torture-client-{c}"))
                    .spawn(move || client(c, nodes, seed, t0, &stop, &paused, &busy))
                    .expect("spawn a client thread")
            })
            .collect();
        Workload {
            stop,
            paused,
            busy,
            threads,
        }
    }

    /// Holds the clients or lets them go on. Holding waits up to `within` until no write is
    /// in flight; false if one still is.
    pub fn pause(&self, on: bool, within: Duration) -> bool {
        self.paused.store(on, Ordering::SeqCst);
        !on || crate::common::wait_until(within, || self.busy.load(Ordering::SeqCst) == 0)
    }

    /// Stops the clients and returns every write they sent.
    pub fn finish(self) -> Vec<Op> {
        self.stop.store(true, Ordering::SeqCst);
        let mut ops = Vec::new();
        for t in self.threads {
            ops.extend(t.join().expect("a client thread panicked"));
        }
        ops
    }
}

fn connect(addr: SocketAddr) -> Option<redis::Connection> {
    let c = redis::Client::open(format!("redis://{addr}/")).ok()?;
    let conn = c
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()?;
    conn.set_read_timeout(Some(WRITE_TIMEOUT)).ok()?;
    conn.set_write_timeout(Some(WRITE_TIMEOUT)).ok()?;
    Some(conn)
}

fn client(
    c: usize,
    nodes: [SocketAddr; 2],
    seed: u64,
    t0: Instant,
    stop: &AtomicBool,
    paused: &AtomicBool,
    busy: &AtomicUsize,
) -> Vec<Op> {
    let mut rng = Rng::new(seed.wrapping_mul(31).wrapping_add(c as u64 + 1));
    let mut ops = Vec::new();
    let mut conns: [Option<redis::Connection>; 2] = [None, None];
    let mut which = 0;
    let started = Instant::now();
    let mut n: u64 = 0;
    while !stop.load(Ordering::SeqCst)
        && n < MAX_OPS_PER_CLIENT
        && started.elapsed() < CLIENT_LIFETIME
    {
        busy.fetch_add(1, Ordering::SeqCst);
        if paused.load(Ordering::SeqCst) {
            busy.fetch_sub(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        if conns[which].is_none() {
            conns[which] = connect(nodes[which]);
            if conns[which].is_none() {
                // Not reachable (killed, restarting): nothing was sent; try the other one.
                busy.fetch_sub(1, Ordering::SeqCst);
                which = 1 - which;
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        }
        let key = format!("c{c}-{n:07}");
        let pad = "x".repeat(rng.range(0, 40) as usize);
        let value = format!("s{seed}-c{c}-{n}-{pad}");
        n += 1;
        let conn = conns[which].as_mut().expect("connected above");
        let r: redis::RedisResult<()> = redis::cmd("SET").arg(&key).arg(&value).query(conn);
        busy.fetch_sub(1, Ordering::SeqCst);
        let at_ms = t0.elapsed().as_millis() as u64;
        let (outcome, error) = match r {
            Ok(()) => (Outcome::Acked, None),
            Err(e) if e.code().is_some() => (Outcome::Failed, Some(e.to_string())),
            Err(e) => (Outcome::Unknown, Some(e.to_string())),
        };
        ops.push(Op {
            key,
            value,
            outcome,
            node: which,
            at_ms,
            error,
        });
        match outcome {
            Outcome::Acked => std::thread::sleep(WRITE_GAP),
            Outcome::Failed => {
                // Not the master (any more), or not yet: ask the other node.
                which = 1 - which;
                std::thread::sleep(Duration::from_millis(10));
            }
            Outcome::Unknown => {
                conns[which] = None;
                which = 1 - which;
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    ops
}

/// Samples both nodes' `writes` state (INFO replication) and measures every stretch during
/// which both answered `writes:ok`.
pub struct Monitor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<MonitorReport>>,
}

#[derive(Default, Debug)]
pub struct MonitorReport {
    /// Samples taken (rounds over both nodes).
    pub samples: u64,
    /// Each stretch with two writable masters: (start ms since t0, length).
    pub overlaps: Vec<(u64, Duration)>,
    /// Every change of a node's state: (ms since t0, node, new state).
    pub transitions: Vec<(u64, usize, String)>,
}

impl MonitorReport {
    pub fn longest_overlap(&self) -> Duration {
        self.overlaps
            .iter()
            .map(|o| o.1)
            .max()
            .unwrap_or(Duration::ZERO)
    }
}

const MONITOR_PERIOD: Duration = Duration::from_millis(20);
const MONITOR_LIFETIME: Duration = Duration::from_secs(3600);

impl Monitor {
    pub fn start(nodes: [SocketAddr; 2], t0: Instant) -> Monitor {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("torture-monitor".into())
            .spawn(move || monitor(nodes, t0, &s))
            .expect("spawn the monitor thread");
        Monitor {
            stop,
            thread: Some(thread),
        }
    }

    pub fn finish(mut self) -> MonitorReport {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .expect("finished once")
            .join()
            .expect("the monitor thread panicked")
    }
}

/// The node's `writes` field, or "down" when it does not answer.
fn writes_of(conn: &mut Option<redis::Connection>, addr: SocketAddr) -> String {
    if conn.is_none() {
        *conn = redis::Client::open(format!("redis://{addr}/"))
            .ok()
            .and_then(|c| {
                c.get_connection_with_timeout(Duration::from_millis(200))
                    .ok()
            });
        if let Some(c) = conn.as_ref() {
            let _ = c.set_read_timeout(Some(Duration::from_secs(1)));
        }
    }
    let Some(c) = conn.as_mut() else {
        return "down".into();
    };
    match redis::cmd("INFO").arg("replication").query::<String>(c) {
        Ok(text) => text
            .lines()
            .find_map(|l| l.strip_prefix("writes:"))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| "?".into()),
        Err(_) => {
            *conn = None;
            "down".into()
        }
    }
}

fn monitor(nodes: [SocketAddr; 2], t0: Instant, stop: &AtomicBool) -> MonitorReport {
    let mut report = MonitorReport::default();
    let mut conns: [Option<redis::Connection>; 2] = [None, None];
    let mut last = [String::new(), String::new()];
    let mut both_since: Option<(u64, Instant)> = None;
    let started = Instant::now();
    while !stop.load(Ordering::SeqCst) && started.elapsed() < MONITOR_LIFETIME {
        let states = [
            writes_of(&mut conns[0], nodes[0]),
            writes_of(&mut conns[1], nodes[1]),
        ];
        report.samples += 1;
        let now_ms = t0.elapsed().as_millis() as u64;
        for i in 0..2 {
            if states[i] != last[i] {
                report.transitions.push((now_ms, i, states[i].clone()));
                last[i] = states[i].clone();
            }
        }
        let both = states.iter().all(|s| s == "ok");
        match (both, both_since) {
            (true, None) => both_since = Some((now_ms, Instant::now())),
            (false, Some((at, since))) => {
                report.overlaps.push((at, since.elapsed()));
                both_since = None;
            }
            _ => {}
        }
        std::thread::sleep(MONITOR_PERIOD);
    }
    if let Some((at, since)) = both_since {
        report.overlaps.push((at, since.elapsed()));
    }
    report
}
