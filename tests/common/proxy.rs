//! A fault-injecting TCP proxy for the integration tests: it sits between a master and a slave
//! (or any client and server) on loopback, forwards both directions with plain threads, and lets
//! a test pause, delay, cut, refuse or corrupt the traffic while it flows. Every control applies
//! to all current and future connections at once.
//!
//! It never buffers without bound (a paused proxy stops reading, so the sender sees backpressure
//! as on a stalled network), never busy-waits (sockets carry short timeouts so threads notice
//! controls), and never outlives its `Proxy`: dropping it stops and joins every thread.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often a waiting thread looks at the controls again (socket timeouts, sleeps).
const TICK: Duration = Duration::from_millis(20);
/// Largest chunk read from a socket in one go.
const CHUNK: usize = 16 * 1024;
/// Chunks read but not yet written, per direction and connection (bounds the proxy's queue).
const QUEUE: usize = 32;
/// How long connecting to the target may take before the client is closed instead.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long `Drop` waits for the threads.
const JOIN_TIMEOUT: Duration = Duration::from_secs(5);
/// The bit `flip_byte` flips.
const FLIP_MASK: u8 = 0x01;

/// A direction of traffic through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// From the connecting side (e.g. the master) to the target (e.g. the slave).
    ToTarget,
    /// From the target back to the connecting side.
    FromTarget,
}

impl Dir {
    fn index(self) -> usize {
        match self {
            Dir::ToTarget => 0,
            Dir::FromTarget => 1,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Dir::ToTarget => "to-target",
            Dir::FromTarget => "from-target",
        }
    }
}

/// A fault-injecting TCP proxy listening on loopback.
pub struct Proxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on 127.0.0.1:0 and forwards every accepted connection to `target`.
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("proxy: local_addr");
        listener
            .set_nonblocking(true)
            .expect("proxy: nonblocking listener");
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let acceptor = thread::Builder::new()
            .name("proxy-accept".into())
            .spawn(move || accept_loop(&s, &listener, target))
            .expect("proxy: spawn accept thread");
        Proxy {
            shared,
            addr,
            acceptor: Some(acceptor),
        }
    }

    /// The address to connect to instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops forwarding: nothing more is read from either socket and bytes already read stay
    /// queued in the proxy. Connections stay open; new ones are accepted but forward nothing.
    /// Once this returns, `forwarded` stands still (a chunk already being written finishes).
    pub fn pause(&self) {
        // Taken under the locks `take` holds, so no writer starts a chunk after this.
        let _guards = [lock(&self.shared.flips[0]), lock(&self.shared.flips[1])];
        self.shared.paused.store(true, Ordering::SeqCst);
    }

    /// Goes on forwarding after `pause`, queued bytes first.
    pub fn resume(&self) {
        self.shared.paused.store(false, Ordering::SeqCst);
    }

    /// Closes every current connection, both halves, like a cable pulled; bytes queued in the
    /// proxy are lost. New connections are forwarded as before.
    pub fn cut(&self) {
        for link in lock(&self.shared.links).iter() {
            if let Some(sockets) = link.sockets.upgrade() {
                sockets.kill();
            }
        }
    }

    /// While `on`, accepts new connections and closes them at once without contacting the
    /// target. Connections already forwarded are not affected.
    pub fn refuse(&self, on: bool) {
        self.shared.refusing.store(on, Ordering::SeqCst);
    }

    /// Holds every chunk for `d` after it was read before forwarding it (zero: none). This adds
    /// latency in each direction without limiting throughput; chunks already queued use the
    /// delay in force when they come up for writing.
    pub fn delay(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.shared.delay_nanos.store(nanos, Ordering::SeqCst);
    }

    /// Sends the next hot-backup link frame of type `ty` in `dir` twice (over any connection),
    /// as a network that duplicated it would: the receiver must see the repeated sequence
    /// number. One-shot. Only frames of at most 64 KiB are duplicated.
    pub fn dup_frame(&self, dir: Dir, ty: u8) {
        lock(&self.shared.dups[dir.index()]).push(ty);
    }

    /// Flips the lowest bit of the `nth` byte (0 = the very next one) forwarded in `dir` from
    /// now on, counting over all connections. One-shot; several may be pending at once.
    pub fn flip_byte(&self, dir: Dir, nth: u64) {
        let i = dir.index();
        let mut pending = lock(&self.shared.flips[i]);
        let at = self.shared.forwarded[i].load(Ordering::SeqCst) + nth;
        pending.push(at);
    }

    /// Bytes forwarded so far in `dir`, over all connections. A chunk counts when the proxy
    /// starts writing it, so whatever the receiver has seen is counted; a chunk a cut interrupts
    /// mid-write counts whole.
    pub fn forwarded(&self, dir: Dir) -> u64 {
        self.shared.forwarded[dir.index()].load(Ordering::SeqCst)
    }

    /// Connections forwarded so far (accepted and connected to the target; refused ones and
    /// ones whose target could not be reached are not counted).
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.cut();
        let deadline = Instant::now() + JOIN_TIMEOUT;
        if let Some(acceptor) = self.acceptor.take() {
            join_by(acceptor, deadline);
        }
        // The acceptor is gone: no link can be added any more.
        let links = std::mem::take(&mut *lock(&self.shared.links));
        for sockets in links.iter().filter_map(|l| l.sockets.upgrade()) {
            sockets.kill();
        }
        for thread in links.into_iter().flat_map(|l| l.threads) {
            join_by(thread, deadline);
        }
    }
}

/// State shared by the `Proxy` handle and its threads.
#[derive(Default)]
struct Shared {
    paused: AtomicBool,
    refusing: AtomicBool,
    stopping: AtomicBool,
    delay_nanos: AtomicU64,
    forwarded: [AtomicU64; 2],
    /// Absolute positions (in `forwarded` terms) of bytes still to flip; the lock also orders
    /// the updates of `forwarded`.
    flips: [Mutex<Vec<u64>>; 2],
    /// Frame types still to duplicate (see `dup_frame`).
    dups: [Mutex<Vec<u8>>; 2],
    connections: AtomicU64,
    links: Mutex<Vec<Link>>,
}

impl Shared {
    fn delay(&self) -> Duration {
        Duration::from_nanos(self.delay_nanos.load(Ordering::SeqCst))
    }

    fn paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    fn alive(&self, sockets: &Sockets) -> bool {
        !self.stopping.load(Ordering::SeqCst) && !sockets.dead.load(Ordering::SeqCst)
    }

    /// Counts the chunk as forwarded, which gives it its place in the direction's byte count,
    /// and applies the flips that fall in it; false (and nothing done) if paused meanwhile.
    fn take(&self, dir: Dir, data: &mut [u8]) -> bool {
        let i = dir.index();
        let mut pending = lock(&self.flips[i]);
        if self.paused() {
            return false;
        }
        let start = self.forwarded[i].fetch_add(data.len() as u64, Ordering::SeqCst);
        let end = start + data.len() as u64;
        pending.retain(|&at| {
            if (start..end).contains(&at) {
                data[(at - start) as usize] ^= FLIP_MASK;
                false
            } else {
                true
            }
        });
        true
    }
}

/// One forwarded connection: its two sockets and four threads. Only the threads own the
/// sockets, so they are closed as soon as the last thread is done.
struct Link {
    sockets: Weak<Sockets>,
    threads: Vec<JoinHandle<()>>,
}

struct Sockets {
    client: TcpStream,
    target: TcpStream,
    dead: AtomicBool,
}

impl Sockets {
    /// Closes both halves of both sockets and tells the threads to go.
    fn kill(&self) {
        self.dead.store(true, Ordering::SeqCst);
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.target.shutdown(Shutdown::Both);
    }

    fn source(&self, dir: Dir) -> &TcpStream {
        match dir {
            Dir::ToTarget => &self.client,
            Dir::FromTarget => &self.target,
        }
    }

    fn destination(&self, dir: Dir) -> &TcpStream {
        match dir {
            Dir::ToTarget => &self.target,
            Dir::FromTarget => &self.client,
        }
    }
}

/// Follows the hot-backup link frames of one direction (header: "HB", version, type, u32
/// length, u64 seq; then the payload and, except on the auth frames 1-3, a 16-byte MAC) to
/// duplicate whole frames on request. It stops following at anything else.
#[derive(Default)]
struct Framer {
    /// The frame being read, while it is small enough to copy.
    cur: Vec<u8>,
    /// Bytes of the current frame still to come (0: reading a header).
    need: usize,
    ty: u8,
    /// The whole frame's length.
    total: usize,
    lost: bool,
}

/// A link frame header's length (src/link/frame.rs): magic, version, type, length, seq, CRC.
const HEADER: usize = 20;

impl Framer {
    /// `data` with any requested duplicate inserted right after its frame.
    fn pass(&mut self, data: &[u8], dups: &Mutex<Vec<u8>>) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len());
        let mut i = 0;
        while i < data.len() && !self.lost {
            if self.need == 0 {
                let take = (HEADER - self.cur.len()).min(data.len() - i);
                self.cur.extend_from_slice(&data[i..i + take]);
                out.extend_from_slice(&data[i..i + take]);
                i += take;
                if self.cur.len() < HEADER {
                    continue;
                }
                if &self.cur[..2] != b"HB" {
                    self.lost = true;
                    break;
                }
                self.ty = self.cur[3];
                let len = u32::from_le_bytes([self.cur[4], self.cur[5], self.cur[6], self.cur[7]]);
                let mac = if (1..=3).contains(&self.ty) { 0 } else { 16 };
                self.need = len as usize + mac;
                self.total = HEADER + self.need;
                if self.need == 0 {
                    self.end_frame(&mut out, dups);
                }
            } else {
                let take = self.need.min(data.len() - i);
                if self.cur.len() <= 64 * 1024 {
                    self.cur.extend_from_slice(&data[i..i + take]);
                }
                out.extend_from_slice(&data[i..i + take]);
                i += take;
                self.need -= take;
                if self.need == 0 {
                    self.end_frame(&mut out, dups);
                }
            }
        }
        out.extend_from_slice(&data[i..]);
        out
    }

    fn end_frame(&mut self, out: &mut Vec<u8>, dups: &Mutex<Vec<u8>>) {
        let frame = std::mem::take(&mut self.cur);
        let mut pending = lock(dups);
        if let Some(at) = pending.iter().position(|&t| t == self.ty) {
            if frame.len() == self.total {
                pending.remove(at);
                out.extend_from_slice(&frame);
            }
        }
    }
}

/// Bytes read from one side, with the time they were read (for `delay`).
struct Chunk {
    read_at: Instant,
    data: Vec<u8>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn join_by(thread: JoinHandle<()>, deadline: Instant) {
    while !thread.is_finished() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    if thread.is_finished() {
        let _ = thread.join();
    } else {
        eprintln!(
            "proxy: thread {:?} still running after {JOIN_TIMEOUT:?}; left behind",
            thread.thread().name()
        );
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener, target: SocketAddr) {
    while !shared.stopping.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(e) => {
                eprintln!("proxy: accept: {e}");
                thread::sleep(TICK);
                continue;
            }
        };
        if shared.refusing.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let Ok(target) = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT) else {
            drop(client);
            continue;
        };
        // Counted and registered (under the lock `cut` takes) before any byte can pass, so a
        // test that saw traffic sees the count, and a cut reaches every link that carried any.
        let n = shared.connections.fetch_add(1, Ordering::SeqCst);
        let mut links = lock(&shared.links);
        links.retain(|l| !l.threads.iter().all(JoinHandle::is_finished));
        if let Some(link) = open_link(shared, n, client, target) {
            links.push(link);
        }
    }
}

/// Sets up the sockets and starts a reader and a writer per direction.
fn open_link(shared: &Arc<Shared>, n: u64, client: TcpStream, target: TcpStream) -> Option<Link> {
    for s in [&client, &target] {
        // The listener is nonblocking; the accepted socket must not be.
        s.set_nonblocking(false).ok()?;
        s.set_nodelay(true).ok()?;
        s.set_read_timeout(Some(TICK)).ok()?;
        s.set_write_timeout(Some(TICK)).ok()?;
    }
    let sockets = Arc::new(Sockets {
        client,
        target,
        dead: AtomicBool::new(false),
    });
    let mut threads = Vec::with_capacity(4);
    for dir in [Dir::ToTarget, Dir::FromTarget] {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let (s1, k1) = (shared.clone(), sockets.clone());
        let (s2, k2) = (shared.clone(), sockets.clone());
        let reader = thread::Builder::new()
            .name(format!("proxy-{n}-{}-read", dir.name()))
            .spawn(move || read_side(&s1, &k1, dir, tx));
        let writer = thread::Builder::new()
            .name(format!("proxy-{n}-{}-write", dir.name()))
            .spawn(move || write_side(&s2, &k2, dir, rx));
        for t in [reader, writer] {
            match t {
                Ok(t) => threads.push(t),
                Err(e) => {
                    eprintln!("proxy: spawn: {e}");
                    sockets.kill();
                }
            }
        }
    }
    Some(Link {
        sockets: Arc::downgrade(&sockets),
        threads,
    })
}

/// Reads chunks from the source of `dir` into the queue until end of stream, error or a kill.
/// Dropping `tx` at end of stream tells the writer to pass the half-close on.
fn read_side(shared: &Shared, sockets: &Sockets, dir: Dir, tx: SyncSender<Chunk>) {
    let mut src = sockets.source(dir);
    let mut buf = vec![0u8; CHUNK];
    let mut frames = Framer::default();
    loop {
        if !shared.alive(sockets) {
            sockets.kill();
            return;
        }
        if shared.paused() {
            thread::sleep(TICK);
            continue;
        }
        match src.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                let chunk = Chunk {
                    read_at: Instant::now(),
                    data: frames.pass(&buf[..n], &shared.dups[dir.index()]),
                };
                // Blocks while the queue is full; fails once the writer has gone.
                if tx.send(chunk).is_err() {
                    sockets.kill();
                    return;
                }
            }
            Err(e) if is_timeout(&e) => {}
            Err(_) => {
                sockets.kill();
                return;
            }
        }
    }
}

/// Writes queued chunks to the destination of `dir`, honouring delay, pause and flips.
fn write_side(shared: &Shared, sockets: &Sockets, dir: Dir, rx: Receiver<Chunk>) {
    let mut dst = sockets.destination(dir);
    loop {
        let mut chunk = match rx.recv_timeout(TICK) {
            Ok(chunk) => chunk,
            Err(RecvTimeoutError::Timeout) => {
                if !shared.alive(sockets) {
                    sockets.kill();
                    return;
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => {
                // The source ended; pass the half-close on unless the link is going anyway.
                if shared.alive(sockets) {
                    let _ = dst.shutdown(Shutdown::Write);
                }
                return;
            }
        };
        loop {
            if !hold(shared, sockets, &chunk) {
                sockets.kill();
                return;
            }
            if shared.take(dir, &mut chunk.data) {
                break;
            }
        }
        let mut rest = &chunk.data[..];
        while !rest.is_empty() {
            if !shared.alive(sockets) {
                sockets.kill();
                return;
            }
            match dst.write(rest) {
                Ok(0) => {
                    sockets.kill();
                    return;
                }
                Ok(n) => rest = &rest[n..],
                Err(e) if is_timeout(&e) => {}
                Err(_) => {
                    sockets.kill();
                    return;
                }
            }
        }
    }
}

/// Waits until the chunk's delay has passed and the proxy is not paused; false if the link
/// died or the proxy is stopping meanwhile.
fn hold(shared: &Shared, sockets: &Sockets, chunk: &Chunk) -> bool {
    loop {
        if !shared.alive(sockets) {
            return false;
        }
        let due = chunk.read_at + shared.delay();
        let now = Instant::now();
        if now < due {
            thread::sleep((due - now).min(TICK));
        } else if shared.paused() {
            thread::sleep(TICK);
        } else {
            return true;
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}
