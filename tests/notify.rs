//! The notify list on real processes: a flapping link is told a bounded number of times (the
//! rest summarized) while every incident is still listed; a terminal on the list gets the
//! incident's text; a user name on the list is told on every terminal that user is logged in
//! on; a `mail:` target runs sendmail with a proper message, and without a sendmail the node
//! says so once.
//!
//! The user-name path reads utmp to find the user's terminals. Logging a test user in on the
//! real utmp (`/run/utmp`) would need root and would show a fake login to everyone on the host,
//! so the daemon reads the utmp file named by `HOTBACKUP_UTMP` (test/diagnostic only) instead:
//! the harness writes one per node, logging a user in on pseudo-terminals it owns. Everything
//! after finding the terminals (opening and writing them) is the production path.
//!
//! Every node of the shared harness also has a `tty:` terminal and the user `hbtest` on its
//! notify list, and `pair::assert_incident` checks both for each incident kind the tests raise.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::pair::*;
use common::proxy::Proxy;
use common::tty::{pty_for, write_utmp};
use common::{Node, cli, free_port, key_file, wait_until};

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

#[test]
fn a_terminal_on_the_notify_list_is_told_of_an_incident() {
    let ttys = tempfile::tempdir().unwrap();
    let pty = pty_for(ttys.path(), "tty");
    let extra = format!("[incidents]\nnotify = [\"tty:{}\"]\n", pty.path);
    let mut p = Pair::start(&extra, "");
    set(&p.master, "x", "1");
    wait_caught_up(&p.master, &p.slave, Duration::from_secs(20));
    // The slave dies: the master's link goes down, and the terminal hears of it.
    p.slave.kill9();
    assert!(
        pty.wait_for("link_down", Duration::from_secs(20)),
        "the terminal got {:?}\n{}",
        pty.text(),
        p.master.log_text()
    );
    let text = pty.text();
    assert!(text.contains("\x07***"), "{text:?}");
    assert!(
        text.contains(&format!("127.0.0.1:{}) down", p.slave_port)),
        "{text:?}"
    );
}

/// A master (in `dir/master`, not started) and its slave (started) sharing a key; the
/// master's config gets `master_extra`. Returns (slave, master dir, slave link port).
fn pair_with_master_unstarted(dir: &Path, master_extra: &str) -> (Node, std::path::PathBuf, u16) {
    let key = key_file(dir, "pair.key", KEY);
    let (mp, sp) = (free_port(), free_port());
    node_config(
        &dir.join("slave"),
        "slave",
        sp,
        &[format!("127.0.0.1:{mp}")],
        &key,
        "",
    );
    let slave = Node::start_in(&dir.join("slave"));
    node_config(
        &dir.join("master"),
        "master",
        mp,
        &[format!("127.0.0.1:{sp}")],
        &key,
        master_extra,
    );
    (slave, dir.join("master"), sp)
}

#[test]
fn a_user_on_the_notify_list_is_told_on_every_terminal_they_are_logged_in_on() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two, other) = (
        pty_for(dir.path(), "alice-1"),
        pty_for(dir.path(), "alice-2"),
        pty_for(dir.path(), "bob"),
    );
    let (mut slave, mdir, sp) = pair_with_master_unstarted(
        dir.path(),
        "[incidents]\nnotify = [\"alice\"]\nnotify_burst = 1000\n",
    );
    // alice is logged in twice, bob (not on the list) once: the node's own utmp file.
    write_utmp(
        &mdir.join("utmp"),
        &[("alice", &one), ("bob", &other), ("alice", &two)],
    );
    let master = Node::start_in(&mdir);
    set(&master, "x", "1");
    wait_caught_up(&master, &slave, Duration::from_secs(20));
    slave.kill9();
    let down = format!("127.0.0.1:{sp}) down");
    for pty in [&one, &two] {
        assert!(
            pty.wait_for(&down, Duration::from_secs(20)),
            "alice's terminal {} got {:?}\n{}",
            pty.path,
            pty.text(),
            master.log_text()
        );
        assert!(
            pty.text().contains(" link_down (incident #"),
            "{}",
            pty.text()
        );
    }
    // The recovery is told too.
    slave.launch();
    for pty in [&one, &two] {
        assert!(
            pty.wait_for(" link_up (incident #", Duration::from_secs(20)),
            "{:?}",
            pty.text()
        );
    }
    assert_eq!(other.text(), "", "bob is not on the notify list");
    assert!(
        !master.log_text().contains("notify User"),
        "no notify errors: {}",
        master.log_text()
    );
}

/// A fake sendmail: appends `ARGV: <args>` and its stdin, then a `.` line, to `out`.
fn fake_sendmail(dir: &Path, out: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("sendmail");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\n{{ echo \"ARGV: $*\"; cat; echo .; }} >> {}\n",
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn a_mail_target_sends_the_incident_through_the_configured_sendmail() {
    let tools = tempfile::tempdir().unwrap();
    let out = tools.path().join("mail.out");
    let sendmail = fake_sendmail(tools.path(), &out);
    let extra = format!(
        "[incidents]\nnotify = [\"mail:ops@example.com\"]\nsendmail = \"{}\"\n",
        sendmail.display()
    );
    let mut p = Pair::start(&extra, "");
    set(&p.master, "x", "1");
    wait_caught_up(&p.master, &p.slave, Duration::from_secs(20));
    p.slave.kill9();
    let read = || std::fs::read_to_string(&out).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(20), || read().contains("link_down")),
        "sendmail was not run: {:?}\n{}",
        read(),
        p.master.log_text()
    );
    // The first mail: one ARGV line, the message, the end marker.
    let all = read();
    let mail = all
        .split("\n.\n")
        .find(|m| m.contains("link_down"))
        .unwrap();
    let (argv, message) = mail.split_once('\n').unwrap();
    assert_eq!(argv, "ARGV: -oi -- ops@example.com");
    let (head, body) = message
        .split_once("\n\n")
        .expect("headers, a blank line, a body");
    let headers: Vec<&str> = head.lines().collect();
    assert!(headers.contains(&"To: ops@example.com"), "{head}");
    let subject = headers
        .iter()
        .find_map(|h| h.strip_prefix("Subject: "))
        .unwrap_or_else(|| panic!("no Subject in {head}"));
    assert!(
        subject.contains("link_down") && subject.contains(&instance_of(&p.master)),
        "{subject}"
    );
    assert!(
        headers.contains(&"Content-Type: text/plain; charset=utf-8"),
        "{head}"
    );
    let id = told_id(&p.master, "link_down");
    for line in [
        "kind: link_down".to_string(),
        format!("id: {id}"),
        "severity: warn".to_string(),
        format!("peer: node (127.0.0.1:{})", p.slave_port),
        "message_id: 13fbc8af529147a4922be2f31b28c49b".to_string(),
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "{line:?} not in the body:\n{body}"
        );
    }
    let message = format!("message: link node (127.0.0.1:{}) down: ", p.slave_port);
    assert!(
        body.lines().any(|l| l.starts_with(&message)),
        "{message:?} not in the body:\n{body}"
    );
    assert!(
        !p.master.log_text().contains("cannot mail"),
        "{}",
        p.master.log_text()
    );
}

/// The id of the first incident of `kind` in `hotbackup incidents --json`.
fn told_id(n: &Node, kind: &str) -> u64 {
    let (code, out, err) = cli(&[
        "incidents",
        "--json",
        "--config",
        n.config.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let needle = format!("\"kind\":\"{kind}\"");
    let at = out
        .find(&needle)
        .unwrap_or_else(|| panic!("{kind} in {out}"));
    let id_at = out[..at].rfind("\"id\":").unwrap() + 5;
    out[id_at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn without_a_sendmail_the_node_warns_once_however_many_incidents_and_addresses() {
    let tools = tempfile::tempdir().unwrap();
    let told = tools.path().join("told.log");
    let hook = counting_hook(tools.path(), &told);
    let missing = tools.path().join("no-such-sendmail");
    // The hook comes after the mail targets: once it was told, the mail targets were tried.
    let extra = format!(
        "[incidents]\nnotify = [\"mail:ops@example.com\", \"mail:oncall@example.com\", \"exec:{}\"]\nsendmail = \"{}\"\nnotify_burst = 1000\n",
        hook.display(),
        missing.display()
    );
    let mut p = Pair::start(&extra, "");
    set(&p.master, "x", "1");
    wait_caught_up(&p.master, &p.slave, Duration::from_secs(20));
    let count = || {
        std::fs::read_to_string(&told)
            .unwrap_or_default()
            .lines()
            .count()
    };
    // Three incidents: link down, up, down.
    for round in 0..3 {
        let before = count();
        if round % 2 == 0 {
            p.slave.kill9();
        } else {
            p.slave.launch();
        }
        assert!(
            wait_until(Duration::from_secs(20), || count() > before),
            "round {round}: no incident told\n{}",
            p.master.log_text()
        );
    }
    let log = p.master.log_text();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("cannot mail incidents"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning, got:\n{}",
        warnings.join("\n")
    );
    let w = warnings[0];
    assert!(w.contains(" WARN "), "{w}");
    assert!(
        w.contains(&missing.display().to_string())
            && w.contains("ops@example.com")
            && w.contains("oncall@example.com")
            && w.contains("[incidents] sendmail"),
        "the warning says what is missing, for whom, and what to do: {w}"
    );
}

/// (id, time_ms) of each incident `hotbackup incidents --json [--since WHEN]` lists.
fn listed_since(n: &Node, since: Option<&str>) -> Vec<(u64, u64)> {
    let cfg = n.config.to_str().unwrap().to_string();
    let mut args = vec!["incidents", "--config", cfg.as_str(), "--json"];
    if let Some(s) = since {
        args.extend(["--since", s]);
    }
    let (code, out, err) = cli(&args);
    assert_eq!(code, 0, "{err}");
    let num = |obj: &str, key: &str| -> u64 {
        let at = obj.find(&format!("\"{key}\":")).expect(key) + key.len() + 3;
        obj[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap()
    };
    out.split("{\"id\":")
        .skip(1)
        .map(|rest| {
            let obj = format!("{{\"id\":{rest}");
            (num(&obj, "id"), num(&obj, "time_ms"))
        })
        .collect()
}

/// UTC "YYYY-MM-DDTHH:MM:SS" of a time in ms (by date(1), as an admin would type it).
fn utc(ms: u64) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{}", ms / 1000), "+%Y-%m-%dT%H:%M:%S"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn incidents_since_lists_only_the_later_ones_from_a_running_and_a_stopped_node() {
    let mut d = common::duo::Duo::start("");
    set(&d.a, "x", "1");
    wait_caught_up(&d.a, &d.b, Duration::from_secs(20));
    d.cut();
    assert_incident(&d.a, "link_down");
    let first = listed_since(&d.a, None);
    let last_ms = first.iter().map(|i| i.1).max().unwrap();
    // The next incidents come at least a whole second later (--since has seconds).
    let boundary = (last_ms / 1000 + 1) * 1000;
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    while now_ms() < boundary {
        std::thread::sleep(Duration::from_millis(50));
    }
    d.heal();
    assert!(
        wait_until(Duration::from_secs(20), || listed(&d.a, "link_up") >= 1),
        "no link_up\n{}",
        d.a.log_text()
    );
    let since = utc(boundary);
    let later = listed_since(&d.a, Some(&since));
    assert!(!later.is_empty(), "nothing since {since}");
    assert!(
        later.iter().all(|i| i.1 >= boundary),
        "--since {since} listed older incidents: {later:?}"
    );
    assert!(
        first.iter().all(|f| !later.iter().any(|l| l.0 == f.0)),
        "an incident from before {since} is listed: {first:?} / {later:?}"
    );
    // A duration back from now takes them all in; a time to come, none.
    assert!(listed_since(&d.a, Some("1h")).len() >= first.len() + later.len());
    assert!(listed_since(&d.a, Some("2099-01-01T00:00")).is_empty());
    // Stopped, the node answers from its data directory the same way.
    assert_eq!(d.a.stop(), Some(0));
    let stopped = listed_since(&d.a, Some(&since));
    assert!(
        stopped.iter().all(|i| i.1 >= boundary) && stopped.len() >= later.len(),
        "stopped node: {stopped:?}"
    );
    assert!(first.iter().all(|f| !stopped.iter().any(|l| l.0 == f.0)));
}
