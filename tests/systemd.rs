//! The systemd side of the daemon, without systemd: socket activation (a link listener passed
//! as LISTEN_FDS/LISTEN_FDNAMES, kept open across a restart of the daemon, as a .socket unit
//! does), the sd_notify protocol (READY, STATUS, WATCHDOG, STOPPING on a datagram socket of
//! the test's), the watchdog freeze trigger, and `hotbackup setup` into a temporary root.
//! The same behaviour under a real systemd is tests/system/two-hosts.sh.

mod common;

use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::pair::{KEY, node_config};
use common::{BIN, Node, free_port, key_file, wait_until};

/// `hotbackup serve` with `listener` as fd 3 and the LISTEN_* variables systemd would set
/// (LISTEN_PID is the daemon's own pid: `sh` sets it and execs, so the pid stays).
fn activated(config: &Path, listener: &TcpListener, env: &[(&str, String)]) -> Command {
    let fd = listener.as_raw_fd();
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "LISTEN_PID=$$ WATCHDOG_PID=$$ exec \"$0\" \"$@\""])
        .arg(BIN)
        .args(["serve", "--config"])
        .arg(config)
        .env("LISTEN_FDS", "1")
        .env("LISTEN_FDNAMES", "link");
    for (k, v) in env {
        cmd.env(k, v);
    }
    // SAFETY: dup2/fcntl are async-signal-safe and touch only the child's fd table.
    unsafe {
        cmd.pre_exec(move || {
            if fd == 3 {
                let flags = libc::fcntl(3, libc::F_GETFD);
                if flags < 0 || libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

fn get(n: &Node, k: &str) -> Option<String> {
    let mut c = n.client();
    redis::cmd("GET").arg(k).query(&mut c).ok().flatten()
}

#[test]
fn slave_takes_the_link_port_from_systemd_and_keeps_it_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "pair.key", KEY);
    // The port systemd would hold. The slave's config names another port, which must stay
    // unused: the passed socket wins.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let held_port = held.local_addr().unwrap().port();
    let (mp, unused) = (free_port(), free_port());
    node_config(
        &dir.path().join("slave"),
        "slave",
        unused,
        &[format!("127.0.0.1:{mp}")],
        &key,
        "",
    );
    node_config(
        &dir.path().join("master"),
        "master",
        mp,
        &[format!("127.0.0.1:{held_port}")],
        &key,
        "",
    );
    let slave_dir = dir.path().join("slave");
    let mut slave = Node::start_in_unlaunched(&slave_dir);
    slave.launch_cmd(activated(&slave.config, &held, &[]));
    assert_eq!(
        slave.link_addr.map(|a| a.port()),
        Some(held_port),
        "{}",
        slave.log_text()
    );
    assert!(
        TcpListener::bind(("127.0.0.1", unused)).is_ok(),
        "the config's own link port was bound too"
    );
    let master = Node::start_in(&dir.path().join("master"));
    let mut m = master.client();
    let _: () = redis::cmd("SET").arg("a").arg("1").query(&mut m).unwrap();
    assert!(wait_until(Duration::from_secs(20), || get(&slave, "a")
        .as_deref()
        == Some("1")));

    // The service stops (systemctl restart): the port stays open, held by "systemd".
    assert_eq!(slave.stop(), Some(0));
    let early =
        std::net::TcpStream::connect_timeout(&held.local_addr().unwrap(), Duration::from_secs(2));
    assert!(
        early.is_ok(),
        "a connection while the daemon is down waits in the backlog: {early:?}"
    );
    drop(early);
    let _: () = redis::cmd("SET").arg("b").arg("2").query(&mut m).unwrap();
    slave.launch_cmd(activated(&slave.config, &held, &[]));
    assert!(
        wait_until(Duration::from_secs(30), || get(&slave, "b").as_deref()
            == Some("2")),
        "{}",
        slave.log_text()
    );
}

/// Receives sd_notify datagrams until `want` matches one, or the deadline.
fn recv_until(sock: &UnixDatagram, within: Duration, want: impl Fn(&str) -> bool) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        sock.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = want(&msg);
                got.push(msg);
                if done {
                    return got;
                }
            }
            Err(_) => break,
        }
    }
    panic!("no matching notification within {within:?}; got {got:?}");
}

#[test]
fn daemon_notifies_ready_status_watchdog_and_stopping_and_the_freeze_trigger_stops_pings() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let freeze = dir.path().join("freeze");
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let node_dir = dir.path().join("n");
    std::fs::create_dir_all(&node_dir).unwrap();
    common::write_config(&node_dir, "");
    let mut n = Node::start_in_unlaunched(&node_dir);
    n.launch_cmd(activated(
        &n.config,
        &held,
        &[
            ("NOTIFY_SOCKET", sock_path.display().to_string()),
            ("WATCHDOG_USEC", "400000".into()),
            ("HOTBACKUP_TEST_FREEZE_FILE", freeze.display().to_string()),
        ],
    ));
    let got = recv_until(&sock, Duration::from_secs(10), |m| m.contains("READY=1"));
    assert!(
        got.iter().any(|m| m.starts_with("STATUS=recovering")),
        "{got:?}"
    );
    let got = recv_until(&sock, Duration::from_secs(10), |m| {
        m.starts_with("STATUS=master gen 1")
    });
    let status = got.last().unwrap();
    assert!(
        status.contains("writes ok") && status.contains("client(s)"),
        "{status}"
    );
    recv_until(&sock, Duration::from_secs(5), |m| m == "WATCHDOG=1\n");

    // Frozen: no ping for well over the 400 ms watchdog.
    std::fs::write(&freeze, b"").unwrap();
    assert!(n.wait_log("freezing the event loop", Duration::from_secs(5)));
    while sock.recv(&mut [0u8; 64]).is_ok() {
        // drain what was sent before the freeze (non-blocking after the timeout below)
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
    }
    sock.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut buf = [0u8; 256];
    let during = sock.recv(&mut buf);
    assert!(
        during.is_err(),
        "a frozen loop sent {:?}",
        during.map(|k| String::from_utf8_lossy(&buf[..k]).into_owned())
    );
    std::fs::remove_file(&freeze).unwrap();
    recv_until(&sock, Duration::from_secs(5), |m| m == "WATCHDOG=1\n");

    common::signal(n.pid(), libc::SIGTERM);
    recv_until(&sock, Duration::from_secs(10), |m| m.contains("STOPPING=1"));
    assert_eq!(n.stop(), Some(0));
}

fn me() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .unwrap()
        .unwrap()
        .name
}

#[test]
fn setup_into_a_root_writes_a_config_the_daemon_runs_and_is_idempotent() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap();
    let (link, client) = (free_port(), free_port());
    let user = me();
    let args = |port: u16| {
        vec![
            "setup".to_owned(),
            "slave".into(),
            "db1".into(),
            "--root".into(),
            r.into(),
            "--user".into(),
            user.clone(),
            "--port".into(),
            port.to_string(),
            "--listen-address".into(),
            "127.0.0.1".into(),
            "--peer".into(),
            "127.0.0.1:9".into(),
            "--client-listen".into(),
            format!("127.0.0.1:{client}"),
        ]
    };
    let run = |a: &[String]| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        common::cli(&a)
    };
    let (code, out, err) = run(&args(link));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("created   /etc/hotbackup/db1.toml"), "{out}");
    assert!(
        out.contains("systemctl enable --now hotbackup-slave@db1.socket"),
        "{out}"
    );
    let dropin = std::fs::read_to_string(
        root.path()
            .join("etc/systemd/system/hotbackup-slave@db1.socket.d/link.conf"),
    )
    .unwrap();
    assert!(
        dropin.contains(&format!("ListenStream=127.0.0.1:{link}")),
        "{dropin}"
    );

    let (code, out, err) = run(&args(link));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.matches("unchanged").count(), 3, "{out}");

    let (code, out, err) = run(&args(free_port()));
    assert_eq!(code, 3, "{out}{err}");
    assert!(err.contains("--force"), "{err}");

    // A port in use is refused, naming the holder.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut a = args(taken.local_addr().unwrap().port());
    a[2] = "db2".into();
    let (code, _, err) = run(&a);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    assert!(!root.path().join("etc/hotbackup/db2.toml").exists());

    // The config runs, with its absolute paths moved under the root.
    let text = std::fs::read_to_string(root.path().join("etc/hotbackup/db1.toml")).unwrap();
    let text = text
        .replace("\"/etc/", &format!("\"{r}/etc/"))
        .replace("\"/var/", &format!("\"{r}/var/"))
        .replace("\"/run/", &format!("\"{r}/run/"));
    std::fs::create_dir_all(root.path().join("run/hotbackup/db1")).unwrap();
    let node_dir = root.path().join("node");
    std::fs::create_dir_all(&node_dir).unwrap();
    std::fs::write(node_dir.join("node.toml"), text).unwrap();
    let n = Node::start_in(&node_dir);
    assert_eq!(n.addr.port(), client);
    assert_eq!(n.link_addr.map(|a| a.port()), Some(link));
    let mut c = n.client();
    let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut c).unwrap();
    assert_eq!(
        role.first(),
        Some(&redis::Value::BulkString(b"slave".to_vec()))
    );
}

#[test]
fn recovery_extends_the_start_timeout_and_ready_comes_only_after_the_replay() {
    let mut n =
        Node::start("[durability]\ncheckpoint_interval = \"1h\"\ncheckpoint_bytes = \"1GiB\"\n");
    {
        let mut c = n.client();
        for i in 0..300 {
            let _: () = redis::cmd("SET")
                .arg(format!("k{i}"))
                .arg(i)
                .query(&mut c)
                .unwrap();
        }
    }
    // No checkpoint since: the next start replays the journal into the store.
    n.kill9();
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--config"])
        .arg(&n.config)
        .env("NOTIFY_SOCKET", &sock_path);
    n.launch_cmd(cmd);
    let got = recv_until(&sock, Duration::from_secs(10), |m| m.contains("READY=1"));
    let extend = got
        .iter()
        .position(|m| m.contains("EXTEND_TIMEOUT_USEC="))
        .unwrap_or_else(|| panic!("no EXTEND_TIMEOUT_USEC during the replay: {got:?}"));
    let replayed = got
        .iter()
        .position(|m| m.starts_with("STATUS=recovering: replayed the journal up to LSN"))
        .unwrap_or_else(|| panic!("no replay STATUS before READY: {got:?}"));
    let ready = got.len() - 1;
    assert!(extend < ready && replayed < ready, "{got:?}");
    // Every start-up step says what it does, the first one with more time asked for.
    let step = |what: &str| {
        got.iter()
            .position(|m| m.starts_with(&format!("STATUS=recovering: {what}")))
            .unwrap_or_else(|| panic!("no STATUS for '{what}' before READY: {got:?}"))
    };
    let (store, scan) = (
        step("opening the store"),
        step("scanning journal segment 1 of"),
    );
    assert!(extend < store && store < scan && scan < replayed, "{got:?}");
    assert_eq!(get(&n, "k299"), Some("299".into()));
    assert_eq!(n.stop(), Some(0));
}

#[test]
fn status_field_and_service_address_without_an_address() {
    let mut n = Node::start("");
    let cfg = n.config.to_string_lossy().into_owned();
    let (code, out, err) = common::cli(&["status", "--config", &cfg, "--field", "role"]);
    assert_eq!((code, out.as_str()), (0, "master\n"), "{err}");
    let (code, out, _) = common::cli(&["status", "--config", &cfg, "--field", "writes"]);
    assert_eq!((code, out.as_str()), (0, "ok\n"));
    let (code, out, _) = common::cli(&["status", "--config", &cfg, "--field", "no-such"]);
    assert_eq!((code, out.as_str()), (0, "\n"));
    // No [service] address: nothing to do, exit 0, and it says so.
    for action in ["up", "down"] {
        let (code, _, err) = common::cli(&["service-address", action, "--config", &cfg]);
        assert_eq!(code, 0, "{err}");
        assert!(err.contains("no [service] address"), "{err}");
    }
    assert_eq!(n.stop(), Some(0));
    // Stopped: exit 3 (LSB), the data directory's fields.
    let (code, out, _) = common::cli(&["status", "--config", &cfg, "--field", "generation"]);
    assert_eq!((code, out.as_str()), (3, "1\n"));
}

/// The unit-swap script behind hotbackup-failover/-rejoin/-switchover refuses bad usage with
/// exit 2 before it touches anything (its real work is shown by tests/system/two-hosts.sh).
#[test]
fn failover_scripts_refuse_bad_usage() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/lib/hotbackup-units");
    let run = |args: &[&str]| {
        let out = Command::new("bash")
            .arg(script)
            .args(args)
            .env("HOTBACKUP_BIN", BIN)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for (args, says) in [
        (&[][..], "usage"),
        (&["explode", "db1"][..], "unknown action"),
        (&["failover"][..], "usage: hotbackup-failover NAME"),
        (&["rejoin", "a/b"][..], "invalid instance name"),
        (
            &["switchover", "db1", "--bogus"][..],
            "unknown option --bogus",
        ),
        (
            &["failover", "db1", "--timeout", "soon"][..],
            "--timeout takes seconds",
        ),
        (
            &["failover", "no-such-instance-here"][..],
            if nix_is_root() {
                "/etc/hotbackup/no-such-instance-here.toml not found"
            } else {
                "run as root"
            },
        ),
    ] {
        let (code, err) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
