//! The fault-injecting proxy of `tests/common/proxy.rs`, checked against a tiny echo server
//! before the replication tests lean on it: it forwards faithfully, and each fault does exactly
//! what it says.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::proxy::{Dir, Proxy};
use common::wait_until;

/// Every blocking socket call in these tests gives up after this long.
const PATIENCE: Duration = Duration::from_secs(5);

/// Echoes every byte back; passes a half-close on. Stops when dropped.
struct Echo {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Echo {
    fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = thread::spawn(move || {
            let mut conns = Vec::new();
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((c, _)) => {
                        let s = s.clone();
                        conns.push(thread::spawn(move || echo(c, &s)));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        Echo {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn echo(mut c: TcpStream, stop: &AtomicBool) {
    c.set_nonblocking(false).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    c.set_write_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::SeqCst) {
        let n = match c.read(&mut buf) {
            Ok(0) => {
                let _ = c.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(e) if timed_out(&e) => continue,
            Err(_) => return,
        };
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            match c.write(rest) {
                Ok(0) => return,
                Ok(k) => rest = &rest[k..],
                Err(e) if timed_out(&e) => {}
                Err(_) => return,
            }
        }
    }
}

fn timed_out(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(PATIENCE)).unwrap();
    c.set_write_timeout(Some(PATIENCE)).unwrap();
    c.set_nodelay(true).unwrap();
    c
}

/// Sends `msg` and reads back as many bytes.
fn round_trip(c: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    c.write_all(msg).unwrap();
    let mut got = vec![0u8; msg.len()];
    c.read_exact(&mut got).unwrap();
    got
}

/// True if the peer closed `c` (end of stream or reset), false if it merely stayed silent.
fn closed_by_peer(c: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    match c.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !timed_out(&e),
    }
}

/// Deterministic, non-repeating-looking bytes.
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[test]
fn ten_megabytes_cross_both_ways_intact() {
    const LEN: usize = 10 * 1024 * 1024;
    let echo = Echo::start();
    let proxy = Proxy::start(echo.addr);
    let mut c = connect(proxy.addr());
    let sent = pattern(LEN);
    let expect = fnv1a(&sent);
    let mut w = c.try_clone().unwrap();
    let writer = thread::spawn(move || {
        w.write_all(&sent).unwrap();
        // The half-close must travel through the proxy and the echo back to us.
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut got = Vec::with_capacity(LEN);
    c.read_to_end(&mut got).unwrap();
    writer.join().unwrap();
    assert_eq!(got.len(), LEN);
    assert_eq!(fnv1a(&got), expect, "echoed bytes differ");
    assert_eq!(proxy.forwarded(Dir::ToTarget), LEN as u64);
    assert_eq!(proxy.forwarded(Dir::FromTarget), LEN as u64);
    assert_eq!(proxy.connections(), 1);
}

#[test]
fn pause_holds_bytes_back_and_resume_delivers_them() {
    let echo = Echo::start();
    let proxy = Proxy::start(echo.addr);
    let mut before = connect(proxy.addr());
    assert_eq!(round_trip(&mut before, b"a"), b"a");
    proxy.pause();
    // A connection opened while paused is held as well.
    let mut during = connect(proxy.addr());
    before.write_all(b"hello").unwrap();
    during.write_all(b"world").unwrap();
    for c in [&mut before, &mut during] {
        c.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut b = [0u8; 1];
        let e = c.read(&mut b).expect_err("nothing may arrive while paused");
        assert!(timed_out(&e), "{e}");
        c.set_read_timeout(Some(PATIENCE)).unwrap();
    }
    assert_eq!(proxy.forwarded(Dir::ToTarget), 1);
    assert_eq!(proxy.forwarded(Dir::FromTarget), 1);
    proxy.resume();
    let mut got = [0u8; 5];
    before.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello");
    during.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"world");
    assert_eq!(proxy.forwarded(Dir::ToTarget), 11);
}

#[test]
fn cut_closes_the_client_and_new_connections_work_after() {
    let echo = Echo::start();
    let proxy = Proxy::start(echo.addr);
    let mut c = connect(proxy.addr());
    assert_eq!(round_trip(&mut c, b"before"), b"before");
    proxy.cut();
    assert!(closed_by_peer(&mut c), "client side still open after cut");
    let mut again = connect(proxy.addr());
    assert_eq!(round_trip(&mut again, b"after"), b"after");
    assert_eq!(proxy.connections(), 2);
}

#[test]
fn refuse_closes_new_connections_until_lifted() {
    let echo = Echo::start();
    let proxy = Proxy::start(echo.addr);
    let mut old = connect(proxy.addr());
    assert_eq!(round_trip(&mut old, b"x"), b"x");
    proxy.refuse(true);
    let mut c = connect(proxy.addr());
    assert!(closed_by_peer(&mut c), "refused connection stayed open");
    // Connections forwarded before are not affected.
    assert_eq!(round_trip(&mut old, b"y"), b"y");
    proxy.refuse(false);
    let mut c = connect(proxy.addr());
    assert_eq!(round_trip(&mut c, b"z"), b"z");
    assert_eq!(proxy.connections(), 2);
}

#[test]
fn delay_holds_each_direction_back() {
    const D: Duration = Duration::from_millis(150);
    let echo = Echo::start();
    let proxy = Proxy::start(echo.addr);
    let mut c = connect(proxy.addr());
    assert_eq!(round_trip(&mut c, b"warm"), b"warm");
    proxy.delay(D);
    let t = Instant::now();
    assert_eq!(round_trip(&mut c, b"slow"), b"slow");
    let took = t.elapsed();
    assert!(
        took >= 2 * D,
        "round trip took {took:?}, expected at least {:?}",
        2 * D
    );
    proxy.delay(Duration::ZERO);
    assert_eq!(round_trip(&mut c, b"fast"), b"fast");
}

/// Sends `len` zero bytes and returns the positions and bit masks where the echo differs.
fn differences(c: &mut TcpStream, len: usize) -> Vec<(usize, u8)> {
    let got = round_trip(c, &vec![0u8; len]);
    got.iter()
        .enumerate()
        .filter(|&(_, &b)| b != 0)
        .map(|(i, &b)| (i, b))
        .collect()
}

#[test]
fn flip_byte_changes_exactly_one_bit_at_the_chosen_position() {
    let echo = Echo::start();
    let proxy = Proxy::start(echo.addr);
    let mut c = connect(proxy.addr());
    // Bytes forwarded before the call do not count.
    assert_eq!(round_trip(&mut c, &[0u8; 1000]), vec![0u8; 1000]);
    for (dir, nth) in [(Dir::ToTarget, 100), (Dir::FromTarget, 7)] {
        proxy.flip_byte(dir, nth);
        let diff = differences(&mut c, 4096);
        assert_eq!(diff.len(), 1, "{dir:?}: {diff:?}");
        let (at, mask) = diff[0];
        assert_eq!(at as u64, nth, "{dir:?}");
        assert_eq!(mask.count_ones(), 1, "{dir:?}: mask {mask:#010b}");
        // One-shot: the next bytes pass unchanged.
        assert_eq!(differences(&mut c, 4096), vec![], "{dir:?}");
    }
}

#[test]
fn drop_returns_promptly_with_traffic_stuck() {
    // A target that accepts and never reads, so the proxy's writer meets backpressure.
    let sink = TcpListener::bind("127.0.0.1:0").unwrap();
    sink.set_nonblocking(true).unwrap();
    let proxy = Proxy::start(sink.local_addr().unwrap());
    let mut c = connect(proxy.addr());
    c.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut held = None;
    assert!(wait_until(PATIENCE, || {
        held = sink.accept().ok();
        held.is_some()
    }));
    let mut w = c.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let block = vec![7u8; 64 * 1024];
        // Ends with an error once buffers are full (timeout) or the proxy is gone.
        for _ in 0..256 {
            if w.write_all(&block).is_err() {
                break;
            }
        }
    });
    assert!(wait_until(PATIENCE, || proxy.forwarded(Dir::ToTarget) > 0));
    thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    drop(proxy);
    let took = t.elapsed();
    assert!(took < Duration::from_secs(2), "drop took {took:?}");
    assert!(closed_by_peer(&mut c), "client side still open after drop");
    writer.join().unwrap();
}

/// A link frame as the proxy sees one: header, payload, and a MAC unless it is an auth frame.
fn frame(ty: u8, seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut f = b"HB".to_vec();
    f.push(2);
    f.push(ty);
    f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    f.extend_from_slice(&seq.to_le_bytes());
    // The header CRC (the proxy does not check it).
    f.extend_from_slice(&[0; 4]);
    f.extend_from_slice(payload);
    if !(1..=3).contains(&ty) {
        f.extend_from_slice(&[0xee; 16]);
    }
    f
}

#[test]
fn dup_frame_repeats_exactly_the_next_frame_of_that_type() {
    let echo = Echo::start();
    let proxy = Proxy::start(echo.addr);
    let mut c = connect(proxy.addr());
    let hello = frame(1, 0, b"hello");
    assert_eq!(round_trip(&mut c, &hello), hello);
    proxy.dup_frame(Dir::ToTarget, 21);
    let (a, b, d) = (
        frame(23, 1, b"hb"),
        frame(21, 2, &pattern(3000)),
        frame(21, 3, b"later"),
    );
    let sent = [a.clone(), b.clone(), d.clone()].concat();
    let want = [a, b.clone(), b, d].concat();
    c.write_all(&sent).unwrap();
    let mut got = vec![0u8; want.len()];
    c.read_exact(&mut got).unwrap();
    assert_eq!(
        got, want,
        "the first RECORDS frame once more, right after itself"
    );
    // One-shot: later frames pass once.
    let e = frame(21, 4, b"again");
    assert_eq!(round_trip(&mut c, &e), e);
}
