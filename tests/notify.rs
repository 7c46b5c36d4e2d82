//! The notify list on real processes: a flapping link is told a bounded number of times (the
//! rest summarized) while every incident is still listed, and a terminal on the list gets the
//! incident's text.

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::pair::*;
use common::proxy::Proxy;
use common::{cli, wait_until};

/// A hook that appends "KIND SUPPRESSED ID" for each notification to `out`.
fn counting_hook(dir: &Path, out: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let hook = dir.join("count-hook.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho \"$HOTBACKUP_INCIDENT $HOTBACKUP_SUPPRESSED $HOTBACKUP_INCIDENT_ID\" >> {}\ncat > /dev/null\n",
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    hook
}

/// How many incidents of `kind` the node lists now (HB.INCIDENTS).
fn listed(n: &common::Node, kind: &str) -> usize {
    let mut c = n.client();
    let list: Vec<String> = redis::cmd("HB.INCIDENTS").query(&mut c).unwrap();
    let needle = format!("\"kind\":\"{kind}\"");
    list.iter().filter(|i| i.contains(&needle)).count()
}

#[test]
fn a_flapping_link_is_told_a_bounded_number_of_times_and_every_incident_is_listed() {
    let hooks = tempfile::tempdir().unwrap();
    let told = hooks.path().join("told.log");
    let hook = counting_hook(hooks.path(), &told);
    const BURST: usize = 2;
    let master_extra = format!(
        "[incidents]\nnotify = [\"exec:{}\"]\nnotify_burst = {BURST}\nnotify_window = \"1h\"\n",
        hook.display()
    );
    let cell: Arc<Mutex<Option<Proxy>>> = Default::default();
    let c2 = cell.clone();
    let mut p = Pair::start_with(&master_extra, "", move |sp| {
        let proxy = Proxy::start(format!("127.0.0.1:{sp}").parse().unwrap());
        let port = proxy.addr().port();
        *c2.lock().unwrap() = Some(proxy);
        port
    });
    let guard = cell.lock().unwrap();
    let proxy = guard.as_ref().unwrap();
    set(&p.master, "x", "1");
    wait_caught_up(&p.master, &p.slave, Duration::from_secs(20));
    let (downs0, ups0) = (listed(&p.master, "link_down"), listed(&p.master, "link_up"));

    // Flap: cut and refuse until the master has seen the link go down, then heal until it is
    // up again.
    const FLAPS: usize = 8;
    for i in 1..=FLAPS {
        proxy.refuse(true);
        proxy.cut();
        assert!(
            wait_until(Duration::from_secs(20), || listed(&p.master, "link_down")
                >= downs0 + i),
            "flap {i}: no link_down\n{}",
            p.master.log_text()
        );
        proxy.refuse(false);
        assert!(
            wait_until(Duration::from_secs(20), || listed(&p.master, "link_up")
                >= ups0 + i),
            "flap {i}: no link_up\n{}",
            p.master.log_text()
        );
    }
    // Every incident is listed by `hotbackup incidents`.
    let (code, out, err) = cli(&["incidents", "--config", p.master.config.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let count = |kind: &str| out.matches(&format!(" {kind}: ")).count();
    assert!(count("link_down") >= downs0 + FLAPS, "{out}");
    assert!(count("link_up") >= ups0 + FLAPS, "{out}");

    // The notifier told at most BURST of each kind one by one; a clean stop tells what it
    // held back as one summary per kind.
    assert_eq!(p.master.stop(), Some(0));
    let lines = std::fs::read_to_string(&told).unwrap_or_default();
    let told_one_by_one = |kind: &str| {
        lines
            .lines()
            .filter(|l| l.starts_with(&format!("{kind} 0 ")))
            .count()
    };
    let summaries: Vec<(String, u64)> = lines
        .lines()
        .filter_map(|l| {
            let mut w = l.split(' ');
            let kind = w.next()?.to_string();
            let suppressed: u64 = w.next()?.parse().ok()?;
            (suppressed > 0).then_some((kind, suppressed))
        })
        .collect();
    for kind in ["link_down", "link_up"] {
        assert_eq!(told_one_by_one(kind), BURST, "{kind}:\n{lines}");
        let held: Vec<u64> = summaries
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, n)| *n)
            .collect();
        assert_eq!(held.len(), 1, "one summary of {kind}:\n{lines}");
        let total = match kind {
            "link_down" => downs0 + FLAPS,
            _ => ups0 + FLAPS,
        };
        assert!(
            held[0] as usize >= total - BURST,
            "the {kind} summary counts {} of {total}:\n{lines}",
            held[0]
        );
    }
    let notifications = lines.lines().count();
    let kinds: std::collections::HashSet<&str> =
        lines.lines().filter_map(|l| l.split(' ').next()).collect();
    assert!(
        notifications <= kinds.len() * (BURST + 1),
        "{notifications} notifications for {} kinds:\n{lines}",
        kinds.len()
    );
    eprintln!(
        "notify: {} link incidents over {FLAPS} flaps gave {notifications} notifications",
        2 * FLAPS
    );
    // After the stop, the list kept in the store still has them all.
    let (code, out, err) = cli(&["incidents", "--config", p.master.config.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.matches(" link_down: ").count() >= downs0 + FLAPS,
        "{out}"
    );
    drop(guard);
}

/// A pseudo-terminal: (master side, path of the slave side, the slave side held open).
fn open_pty() -> (OwnedFd, String, OwnedFd) {
    // SAFETY: plain libc calls on descriptors this test owns; every return value is checked
    // and each descriptor is wrapped in an OwnedFd at once.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(m >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
        let master = OwnedFd::from_raw_fd(m);
        assert_eq!(libc::grantpt(m), 0, "grantpt");
        assert_eq!(libc::unlockpt(m), 0, "unlockpt");
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(
            libc::ptsname_r(m, name.as_mut_ptr(), name.len()),
            0,
            "ptsname_r"
        );
        let path = std::ffi::CStr::from_ptr(name.as_ptr())
            .to_string_lossy()
            .into_owned();
        let s = libc::open(name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
        assert!(s >= 0, "open {path}: {}", std::io::Error::last_os_error());
        let flags = libc::fcntl(m, libc::F_GETFL);
        assert_eq!(libc::fcntl(m, libc::F_SETFL, flags | libc::O_NONBLOCK), 0);
        (master, path, OwnedFd::from_raw_fd(s))
    }
}

/// Reads from the pty's master side until `needle` shows up or `within` passes.
fn read_pty_until(master: &OwnedFd, needle: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if String::from_utf8_lossy(&got).contains(needle) {
            break;
        }
        let mut pfd = libc::pollfd {
            fd: master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; the descriptor is open for the whole call.
        let r = unsafe { libc::poll(&mut pfd, 1, 100) };
        if r <= 0 {
            continue;
        }
        // SAFETY: reading into a buffer of the length given.
        let n = unsafe { libc::read(master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            got.extend_from_slice(&buf[..n as usize]);
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn a_terminal_on_the_notify_list_is_told_of_an_incident() {
    let (pty, path, _slave_side) = open_pty();
    let extra = format!("[incidents]\nnotify = [\"tty:{path}\"]\n");
    let mut p = Pair::start(&extra, "");
    set(&p.master, "x", "1");
    wait_caught_up(&p.master, &p.slave, Duration::from_secs(20));
    // The slave dies: the master's link goes down, and the terminal hears of it.
    p.slave.kill9();
    let text = read_pty_until(&pty, "link_down", Duration::from_secs(20));
    assert!(
        text.contains("link_down") && text.contains("\x07***"),
        "the terminal got {text:?}\n{}",
        p.master.log_text()
    );
    assert!(
        text.contains(&format!("127.0.0.1:{}) down", p.slave_port)),
        "{text:?}"
    );
}
