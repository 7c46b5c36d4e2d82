//! Test harness: runs the real `hotbackup` binary as a separate process on loopback.
//!
//! Each node's native journald records go to a socket the harness reads ([`journal`]), and its
//! terminal notifications to pseudo-terminals the harness owns ([`tty`]), so that
//! `pair::assert_incident` checks every place an incident goes.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_hotbackup");

/// A hotbackup daemon under test, with its data directory.
pub struct Node {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub child: Option<Child>,
    pub addr: SocketAddr,
    /// The link port, when the node listens on one.
    pub link_addr: Option<SocketAddr>,
    pub log: Arc<Mutex<Vec<String>>>,
    /// Its native journal records (see [`journal`]).
    pub journal: Arc<journal::Journal>,
    _tmp: Option<tempfile::TempDir>,
}

/// The user name the shared config notifies, logged in (in the node's own utmp file) on the
/// node's `user` terminal.
pub const NOTIFY_USER: &str = "hbtest";

/// Writes `dir/hook.sh`, a notify hook appending each incident's JSON to `dir/notified.log`.
pub fn notify_hook(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let hook = dir.join("hook.sh");
    std::fs::write(
        &hook,
        format!("#!/bin/sh\ncat >> {}\n", dir.join("notified.log").display()),
    )
    .expect("write the notify hook");
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))
        .expect("make the notify hook executable");
    hook
}

/// The `[incidents]` section every node of the harness gets unless a test gives its own: each
/// incident is told to a terminal the harness owns (`tty:`, see [`tty::pty_for`]), to the user
/// [`NOTIFY_USER`], logged in on another such terminal in the node's own utmp file
/// (`HOTBACKUP_UTMP`), and to a hook appending it to `notified.log` (see
/// `pair::assert_incident`). The hook comes last: once it has the incident, the terminals have
/// been written to.
pub fn incidents_section(dir: &Path) -> String {
    let tty = tty::pty_for(dir, "tty");
    let user = tty::pty_for(dir, "user");
    tty::write_utmp(&dir.join("utmp"), &[(NOTIFY_USER, &user)]);
    format!(
        "\n[incidents]\nnotify = [\"tty:{}\", \"{NOTIFY_USER}\", \"exec:{}\"]\nnotify_burst = 1000\n",
        tty.path,
        notify_hook(dir).display()
    )
}

/// Writes a config for a node in `dir`; `extra` is appended (TOML sections).
pub fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let config = dir.join("node.toml");
    let text = format!(
        "data_dir = \"{}\"\n\n[client]\nlisten = \"127.0.0.1:0\"\nunix_socket = \"{}\"\n{extra}\n",
        dir.join("data").display(),
        dir.join("hb.sock").display(),
    );
    let text = if extra.contains("[link]") {
        text
    } else {
        // Every node answers on a link port; tests take a free one.
        text + "\n[link]\nlisten = \"127.0.0.1:0\"\n"
    };
    let text = if extra.contains("[log]") {
        text
    } else {
        text + "\n[log]\nlevel = \"info\"\n"
    };
    // Every incident is told to the harness's terminals and hook (see `incidents_section`).
    let text = if extra.contains("[incidents]") {
        text
    } else {
        text + &incidents_section(dir)
    };
    std::fs::write(&config, text).expect("write config");
    config
}

impl Node {
    /// Starts a node in a fresh temporary directory.
    pub fn start(extra_config: &str) -> Node {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let config = write_config(&dir, extra_config);
        let journal = journal::journal_for(&dir);
        let mut n = Node {
            dir,
            config,
            child: None,
            addr: "127.0.0.1:0".parse().unwrap(),
            link_addr: None,
            log: Arc::new(Mutex::new(Vec::new())),
            journal,
            _tmp: Some(tmp),
        };
        n.launch();
        n
    }

    /// A node on an existing directory holding `node.toml`, not started yet.
    pub fn start_in_unlaunched(dir: &Path) -> Node {
        Node {
            dir: dir.to_path_buf(),
            config: dir.join("node.toml"),
            child: None,
            addr: "127.0.0.1:0".parse().unwrap(),
            link_addr: None,
            log: Arc::new(Mutex::new(Vec::new())),
            journal: journal::journal_for(dir),
            _tmp: None,
        }
    }

    /// Starts a node on an existing directory holding `node.toml`.
    pub fn start_in(dir: &Path) -> Node {
        let mut n = Node {
            dir: dir.to_path_buf(),
            config: dir.join("node.toml"),
            child: None,
            addr: "127.0.0.1:0".parse().unwrap(),
            link_addr: None,
            log: Arc::new(Mutex::new(Vec::new())),
            journal: journal::journal_for(dir),
            _tmp: None,
        };
        n.launch();
        n
    }

    /// (Re)starts the process and waits until it serves clients.
    pub fn launch(&mut self) {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--config"]).arg(&self.config);
        self.launch_cmd(cmd);
    }

    /// Starts `cmd` (a `hotbackup serve` in some wrapper) as this node's process and waits
    /// until it serves clients.
    pub fn launch_cmd(&mut self, mut cmd: Command) {
        assert!(self.child.is_none(), "already running");
        // Its journal records come to the harness; its user-name notifications look for the
        // user in its own utmp file (both test/diagnostic-only variables).
        cmd.env("HOTBACKUP_JOURNAL_SOCKET", &self.journal.path);
        let utmp = self.dir.join("utmp");
        if utmp.exists() {
            cmd.env("HOTBACKUP_UTMP", utmp);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hotbackup");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("HB_TEST_LOG").is_some() {
                    eprintln!("[node] {line}");
                }
                log.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        self.child = Some(child);
        let start = self.log.lock().unwrap().len();
        self.addr = wait_ready(&rx, self.child.as_mut().unwrap(), &self.log);
        self.link_addr = self.log.lock().unwrap()[start..]
            .iter()
            .rev()
            .find_map(|l| l.split("link: listening on ").nth(1))
            .and_then(|a| a.trim().parse().ok());
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// kill -9, and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM; waits for exit (with a deadline) and returns the exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        signal(c.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("node did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn signal(&self, sig: i32) {
        signal(self.pid(), sig);
    }

    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .expect("client")
            .get_connection()
            .expect("connect")
    }

    pub fn raw(&self) -> Raw {
        Raw::connect(self.addr)
    }

    /// Log lines so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits until a log line contains `needle`.
    pub fn wait_log(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.log.lock().unwrap().iter().any(|l| l.contains(needle)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Runs `hotbackup ARGS...` and returns (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        cli(args)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A TCP port that was free a moment ago on loopback (for configs that must name ports).
/// A port free now, for a node's fixed address. Taken below the kernel's ephemeral range
/// (32768-60999 by default): a port from that range, free while its node is down (a restart
/// after kill -9), could meanwhile become the local port of some outgoing connection (a
/// proxy's, a client's) and the node could not bind it again. Each test binary walks the range
/// from its own start, so parallel binaries rarely meet.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let start = std::process::id().wrapping_mul(2_654_435_761);
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        // 7919 is prime and does not divide SPAN: the walk visits every port once.
        let port = (LOW + start.wrapping_add(n.wrapping_mul(7919)) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN)
}

/// Writes a 0600 key file and returns its path.
pub fn key_file(dir: &Path, name: &str, key: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, key).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

pub fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("run hotbackup");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a pid this test started; no memory is involved.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

fn wait_ready(
    rx: &Receiver<String>,
    child: &mut Child,
    log: &Arc<Mutex<Vec<String>>>,
) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok(line) => {
                if let Some(rest) = line.split("ready: clients on ").nth(1) {
                    return rest.trim().parse().expect("address in ready line");
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let st = child.wait().ok();
                panic!(
                    "hotbackup exited before ready ({st:?}):\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        }
        if Instant::now() > deadline {
            panic!(
                "hotbackup not ready within 30 s:\n{}",
                log.lock().unwrap().join("\n")
            );
        }
    }
}

/// A raw RESP connection: send bytes, read exactly the reply bytes expected.
pub struct Raw {
    pub s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        Raw { s, buf: Vec::new() }
    }

    pub fn send(&mut self, b: &[u8]) {
        self.s.write_all(b).expect("send");
    }

    /// Reads one complete reply (parsed with the crate's own RESP parser) and returns its bytes.
    pub fn reply(&mut self) -> Vec<u8> {
        let mut chunk = [0u8; 4096];
        loop {
            match hotbackup::resp::parse_value(&self.buf, &hotbackup::resp::Limits::default()) {
                Ok((_, n)) => {
                    let rest = self.buf.split_off(n);
                    return std::mem::replace(&mut self.buf, rest);
                }
                Err(hotbackup::resp::ParseError::Incomplete) => {}
                Err(e) => panic!("bad reply {e:?}: {:?}", String::from_utf8_lossy(&self.buf)),
            }
            let n = self.s.read(&mut chunk).expect("read reply");
            assert!(
                n > 0,
                "connection closed; got {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends a command as multibulk and returns the reply as a string.
    pub fn cmd(&mut self, args: &[&str]) -> String {
        let mut req = Vec::new();
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        hotbackup::resp::encode::request(&mut req, &a);
        self.send(&req);
        String::from_utf8_lossy(&self.reply()).into_owned()
    }

    /// Reads until the server closes; returns everything read.
    pub fn read_to_close(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = self.s.read_to_end(&mut out);
        out
    }
}

/// Polls `f` until it returns true or the deadline passes.
pub fn wait_until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}
pub mod duo;
pub mod journal;
pub mod pair;
pub mod proxy;
pub mod tty;
