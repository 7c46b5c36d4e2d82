//! Pub/sub against the real binary: Redis's exact replies for SUBSCRIBE and friends (RESP2
//! and RESP3), the subscribed-mode rules, and the node's own `+switch-master` message, which
//! every node publishes when the master it reports moves (failover, fencing, switchover).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::duo::*;
use common::pair::*;
use common::{Node, Raw, wait_until};

/// The instance name the test configs give (the default).
const NAME: &str = "node";

fn frame(kind: &str, parts: &[&[u8]], count: Option<i64>, resp3: bool) -> String {
    let mut out = Vec::new();
    let n = parts.len() + 1 + usize::from(count.is_some());
    out.extend_from_slice(format!("{}{n}\r\n", if resp3 { '>' } else { '*' }).as_bytes());
    hotbackup::resp::encode::bulk(&mut out, kind.as_bytes());
    for p in parts {
        hotbackup::resp::encode::bulk(&mut out, p);
    }
    if let Some(c) = count {
        hotbackup::resp::encode::integer(&mut out, c);
    }
    String::from_utf8(out).unwrap()
}

/// `[kind, name, count]`, as Redis confirms a (un)subscription.
fn conf(kind: &str, name: &str, count: i64) -> String {
    frame(kind, &[name.as_bytes()], Some(count), false)
}

/// Sends one command and reads as many replies as it gives (one per channel for SUBSCRIBE).
fn cmd_n(c: &mut Raw, args: &[&str], n: usize) -> String {
    let mut req = Vec::new();
    let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
    hotbackup::resp::encode::request(&mut req, &a);
    c.send(&req);
    (0..n)
        .map(|_| String::from_utf8_lossy(&c.reply()).into_owned())
        .collect()
}

const CONTEXT_ERR: &str =
    "only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n";

#[test]
fn subscribe_replies_and_subscribed_mode_are_redis_s() {
    let n = Node::start("");
    let mut c = n.raw();
    assert_eq!(
        cmd_n(&mut c, &["SUBSCRIBE", "a", "b", "a"], 3),
        conf("subscribe", "a", 1) + &conf("subscribe", "b", 2) + &conf("subscribe", "a", 2)
    );
    assert_eq!(
        cmd_n(&mut c, &["PSUBSCRIBE", "+*"], 1),
        conf("psubscribe", "+*", 3)
    );
    // Subscribed mode (RESP2): PING answers as a pub/sub frame, most commands are refused.
    assert_eq!(c.cmd(&["PING"]), "*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    assert_eq!(c.cmd(&["PING", "hi"]), "*2\r\n$4\r\npong\r\n$2\r\nhi\r\n");
    assert_eq!(
        c.cmd(&["GET", "x"]),
        format!("-ERR Can't execute 'get': {CONTEXT_ERR}")
    );
    assert_eq!(
        c.cmd(&["CLIENT", "INFO"]),
        format!("-ERR Can't execute 'client|info': {CONTEXT_ERR}")
    );
    assert_eq!(
        c.cmd(&["GET"]),
        "-ERR wrong number of arguments for 'get' command\r\n"
    );
    assert!(
        c.cmd(&["NOSUCH"])
            .starts_with("-ERR unknown command 'NOSUCH'")
    );
    // CLIENT LIST from another connection shows the subscriptions (Redis's sub= and psub=).
    let list = n.raw().cmd(&["CLIENT", "LIST"]);
    assert!(list.contains(" sub=2 psub=1 "), "{list}");

    assert_eq!(
        cmd_n(&mut c, &["UNSUBSCRIBE", "a", "zzz"], 2),
        conf("unsubscribe", "a", 2) + &conf("unsubscribe", "zzz", 2)
    );
    assert_eq!(
        cmd_n(&mut c, &["UNSUBSCRIBE"], 1),
        conf("unsubscribe", "b", 1)
    );
    // Nothing left to unsubscribe: one confirmation with a null name.
    assert_eq!(
        cmd_n(&mut c, &["UNSUBSCRIBE"], 1),
        "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:1\r\n"
    );
    assert_eq!(
        cmd_n(&mut c, &["PUNSUBSCRIBE"], 1),
        conf("punsubscribe", "+*", 0)
    );
    // Out of subscribed mode: everything again.
    assert_eq!(c.cmd(&["PING"]), "+PONG\r\n");
    assert_eq!(c.cmd(&["GET", "x"]), "$-1\r\n");
    assert_eq!(
        cmd_n(&mut c, &["PUNSUBSCRIBE"], 1),
        "*3\r\n$12\r\npunsubscribe\r\n$-1\r\n:0\r\n"
    );

    // RESET leaves subscribed mode without confirmations.
    cmd_n(&mut c, &["SUBSCRIBE", "a"], 1);
    assert_eq!(c.cmd(&["RESET"]), "+RESET\r\n");
    assert_eq!(c.cmd(&["GET", "x"]), "$-1\r\n");

    // Not inside MULTI (a difference from Redis, which would queue it).
    assert_eq!(c.cmd(&["MULTI"]), "+OK\r\n");
    assert_eq!(
        c.cmd(&["SUBSCRIBE", "a"]),
        "-ERR Command not allowed inside a transaction\r\n"
    );
    assert!(c.cmd(&["EXEC"]).starts_with("-EXECABORT"));

    // QUIT is allowed in subscribed mode and closes.
    cmd_n(&mut c, &["SUBSCRIBE", "a"], 1);
    assert_eq!(c.cmd(&["QUIT"]), "+OK\r\n");
    assert!(c.read_to_close().is_empty());

    // RESP3: push frames, and no command is refused while subscribed.
    let mut c = n.raw();
    c.cmd(&["HELLO", "3"]);
    assert_eq!(
        cmd_n(&mut c, &["SUBSCRIBE", "+switch-master"], 1),
        frame("subscribe", &[b"+switch-master"], Some(1), true)
    );
    assert_eq!(c.cmd(&["PING"]), "+PONG\r\n");
    assert_eq!(c.cmd(&["GET", "x"]), "_\r\n");
    assert_eq!(
        cmd_n(&mut c, &["UNSUBSCRIBE"], 1),
        frame("unsubscribe", &[b"+switch-master"], Some(0), true)
    );
    assert_eq!(
        cmd_n(&mut c, &["UNSUBSCRIBE"], 1),
        ">3\r\n$11\r\nunsubscribe\r\n_\r\n:0\r\n"
    );

    // The redis crate parses the confirmations (its own pub/sub API).
    let mut con = n.client();
    let mut ps = con.as_pubsub();
    ps.subscribe("+switch-master").unwrap();
    ps.psubscribe("+*").unwrap();
    ps.punsubscribe("+*").unwrap();
    ps.unsubscribe("+switch-master").unwrap();
}

/// A connection subscribed with raw RESP; a thread collects every frame it receives.
struct Subscriber {
    out: TcpStream,
    frames: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Subscriber {
    /// Connects to `addr` (RESP3 after HELLO 3 if asked) and subscribes with `cmd`, which
    /// must confirm exactly one channel or pattern.
    fn start(addr: SocketAddr, resp3: bool, cmd: &[&str]) -> Subscriber {
        let mut raw = Raw::connect(addr);
        if resp3 {
            raw.cmd(&["HELLO", "3"]);
        }
        let confirmed = raw.cmd(cmd);
        assert!(confirmed.contains("subscribe"), "{confirmed}");
        Self::from_raw(raw)
    }

    /// Collects what arrives on `raw` (subscribed already, no reply pending) from now on.
    fn from_raw(raw: Raw) -> Subscriber {
        let out = raw.s.try_clone().unwrap();
        let mut s = raw.s;
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let frames = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, st) = (frames.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let limits = hotbackup::resp::Limits::default();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !st.load(Ordering::SeqCst) {
                match s.read(&mut chunk) {
                    Ok(0) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        continue;
                    }
                    Err(_) => return,
                }
                while let Ok((_, used)) = hotbackup::resp::parse_value(&buf, &limits) {
                    let rest = buf.split_off(used);
                    let one = std::mem::replace(&mut buf, rest);
                    f.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&one).into_owned());
                }
            }
        });
        Subscriber {
            out,
            frames,
            stop,
            thread: Some(thread),
        }
    }

    fn frames(&self) -> Vec<String> {
        self.frames.lock().unwrap().clone()
    }

    /// Waits until `n` frames arrived.
    fn wait_frames(&self, n: usize, within: Duration) -> Vec<String> {
        wait_until(within, || self.frames.lock().unwrap().len() >= n);
        self.frames()
    }

    /// Everything received up to now, for sure: a PING's reply comes after every message
    /// published before it. Returns the frames before that reply.
    fn barrier(&mut self) -> Vec<String> {
        let before = self.frames.lock().unwrap().len();
        self.out.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
        let is_pong = |f: &String| f == "*2\r\n$4\r\npong\r\n$0\r\n\r\n" || f == "+PONG\r\n";
        let ok = wait_until(Duration::from_secs(10), || {
            self.frames.lock().unwrap()[before..].iter().any(is_pong)
        });
        assert!(ok, "no PING reply on a subscribed connection");
        let mut frames = self.frames.lock().unwrap();
        let at = frames.iter().rposition(is_pong).unwrap();
        frames.remove(at);
        frames[..at].to_vec()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.out.shutdown(std::net::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn hp(a: SocketAddr) -> String {
    format!("{} {}", a.ip(), a.port())
}

/// The `message` frame of `+switch-master` from `old` to `new`.
fn switch(old: SocketAddr, new: SocketAddr, resp3: bool) -> String {
    let text = format!("{NAME} {} {}", hp(old), hp(new));
    frame(
        "message",
        &[b"+switch-master", text.as_bytes()],
        None,
        resp3,
    )
}

fn pswitch(pattern: &str, old: SocketAddr, new: SocketAddr) -> String {
    let text = format!("{NAME} {} {}", hp(old), hp(new));
    frame(
        "pmessage",
        &[pattern.as_bytes(), b"+switch-master", text.as_bytes()],
        None,
        false,
    )
}

fn master_addr_of(n: &Node) -> Option<Vec<String>> {
    let mut c = redis::Client::open(format!("redis://{}/", sentinel_addr(n)))
        .unwrap()
        .get_connection()
        .unwrap();
    redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(NAME)
        .query(&mut c)
        .unwrap()
}

#[test]
fn each_node_publishes_switch_master_through_a_failover_and_a_switchover() {
    let mut d = Duo::start("");
    set(&d.a, "seed", "1");
    wait_caught_up(&d.a, &d.b, Duration::from_secs(20));
    let (a, b) = (d.a.addr, d.b.addr);

    // Subscribers on both nodes: Sentinel ports (RESP2, by channel), B's client port (RESP3,
    // by channel; and RESP2 by pattern).
    let a_sent = Subscriber::start(sentinel_addr(&d.a), false, &["SUBSCRIBE", "+switch-master"]);
    let mut b_sent =
        Subscriber::start(sentinel_addr(&d.b), false, &["SUBSCRIBE", "+switch-master"]);
    let mut b_resp3 = Subscriber::start(b, true, &["SUBSCRIBE", "+switch-master"]);
    let mut b_pat = Subscriber::start(b, false, &["PSUBSCRIBE", "*switch-*"]);
    let mut b_jedis = jedis_listener(sentinel_addr(&d.b), a);
    assert!(b_sent.barrier().is_empty(), "nothing happened yet");

    // Failover: A dies, B is promoted. B tells its subscribers A -> B.
    d.a.kill9();
    let (code, out, err) = promote(&d.b);
    assert_eq!(code, 0, "{out}{err}");
    let got = b_sent.wait_frames(1, Duration::from_secs(10));
    assert_eq!(got, vec![switch(a, b, false)], "{}", d.b.log_text());
    assert_eq!(
        b_resp3.wait_frames(1, Duration::from_secs(10)),
        vec![switch(a, b, true)]
    );
    assert_eq!(
        b_pat.wait_frames(1, Duration::from_secs(10)),
        vec![pswitch("*switch-*", a, b)]
    );
    assert!(
        a_sent.frames().is_empty(),
        "A was dead: {:?}",
        a_sent.frames()
    );
    drop(a_sent);

    // A comes back with its link cut: it still names itself (checking its peers). Once the
    // link heals it learns that B is the master (fenced) and tells its subscribers A -> B.
    d.cut();
    d.a.launch();
    assert_eq!(
        master_addr_of(&d.a),
        Some(vec![a.ip().to_string(), a.port().to_string()])
    );
    let mut a_sent =
        Subscriber::start(sentinel_addr(&d.a), false, &["SUBSCRIBE", "+switch-master"]);
    d.heal();
    wait_state(&d.a, "fenced", Duration::from_secs(15));
    assert_eq!(
        a_sent.wait_frames(1, Duration::from_secs(10)),
        vec![switch(a, b, false)],
        "{}",
        d.a.log_text()
    );

    // Rejoin: A follows B, which it already named: nothing to publish.
    let (code, out, err) = rejoin(&d.a, &[]);
    assert_eq!(code, 0, "{out}{err}");
    wait_caught_up(&d.b, &d.a, Duration::from_secs(30));
    assert_eq!(a_sent.barrier(), vec![switch(a, b, false)]);

    // Switchover back to A: both nodes tell B -> A.
    let (code, out, err) = common::cli(&["switchover", "--config", &config_of(&d.a)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(wait_until(Duration::from_secs(10), || writes_state(&d.a) == "ok"));
    assert_eq!(
        a_sent.wait_frames(2, Duration::from_secs(10)),
        vec![switch(a, b, false), switch(b, a, false)]
    );
    assert_eq!(
        b_sent.wait_frames(2, Duration::from_secs(10)),
        vec![switch(a, b, false), switch(b, a, false)]
    );
    // Exactly these, nothing else (no flicker while B waited for A or A caught up).
    assert_eq!(
        a_sent.barrier(),
        vec![switch(a, b, false), switch(b, a, false)]
    );
    assert_eq!(
        b_sent.barrier(),
        vec![switch(a, b, false), switch(b, a, false)]
    );
    assert_eq!(
        b_resp3.barrier(),
        vec![switch(a, b, true), switch(b, a, true)]
    );
    assert_eq!(
        b_pat.barrier(),
        vec![pswitch("*switch-*", a, b), pswitch("*switch-*", b, a)]
    );
    // The new master as Jedis reads it from each message: fields 3 and 4 of its text.
    let jedis_saw: Vec<String> = b_jedis
        .barrier()
        .iter()
        .map(|f| {
            let text = f.rsplit("\r\n").nth(1).unwrap_or_default().to_string();
            let parts: Vec<&str> = text.split(' ').collect();
            assert!(parts.len() > 3 && parts[0] == NAME, "{f:?}");
            format!("{}:{}", parts[3], parts[4])
        })
        .collect();
    assert_eq!(jedis_saw, vec![b.to_string(), a.to_string()]);
}

/// What Jedis's Sentinel listeners send to each sentinel when they (re)connect, read from
/// Jedis's source and replayed here, because Jedis itself cannot be fetched on this machine
/// (no Maven repository): the client info every Jedis connection sends, the replicas (the
/// `SentineledConnectionProvider` listener; `JedisSentinelPool`'s skips it), the master's
/// address (the "active refresh"), then SUBSCRIBE (`JedisSentinelPool`: `+switch-master`;
/// the provider: the four channels here). Returns the subscribed connection.
fn jedis_listener(sentinel: SocketAddr, master: SocketAddr) -> Subscriber {
    let mut c = Raw::connect(sentinel);
    assert_eq!(
        c.cmd(&["CLIENT", "SETINFO", "LIB-NAME", "jedis"]),
        "+OK\r\n"
    );
    assert_eq!(c.cmd(&["CLIENT", "SETINFO", "LIB-VER", "8.0.2"]), "+OK\r\n");
    let replicas = c.cmd(&["SENTINEL", "SLAVES", NAME]);
    assert!(replicas.starts_with("*1\r\n"), "{replicas}");
    assert_eq!(
        c.cmd(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", NAME]),
        frame_of(&[master.ip().to_string(), master.port().to_string()])
    );
    assert_eq!(
        cmd_n(
            &mut c,
            &["SUBSCRIBE", "+switch-master", "+sdown", "-sdown", "+slave"],
            4
        ),
        conf("subscribe", "+switch-master", 1)
            + &conf("subscribe", "+sdown", 2)
            + &conf("subscribe", "-sdown", 3)
            + &conf("subscribe", "+slave", 4)
    );
    Subscriber::from_raw(c)
}

/// An array of bulk strings.
fn frame_of(items: &[String]) -> String {
    let mut out = format!("*{}\r\n", items.len()).into_bytes();
    for i in items {
        hotbackup::resp::encode::bulk(&mut out, i.as_bytes());
    }
    String::from_utf8(out).unwrap()
}
