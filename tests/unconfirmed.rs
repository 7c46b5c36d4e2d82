//! A master ships records before they are durable on its disk (so that a sync mode's write pays
//! for the two fsyncs side by side). If its machine crashes, it restarts without the records
//! that were not durable yet, which its slave may already hold. These tests give the slave
//! exactly that: the master's data directory is put back to a copy taken earlier (what a
//! crash leaves of a machine whose last writes never reached the disk) while the slave holds
//! the records written after the copy. At the next handshake the slave must find out, save
//! those records to a lost-transactions tape with an incident, rewind them, and follow the
//! master again with equal data: also when the master has meanwhile written other records at
//! the same LSNs (the admin ended its wait for the unreachable slave with `hotbackup promote`;
//! before, the slave would have streamed on from its LSN, silently different).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::pair::*;
use common::{Node, cli, wait_until};

const FILES: &[&str] = &["main"];

/// Copies a directory tree (a stopped node's data directory).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        let t = e.file_type().unwrap();
        if t.is_dir() {
            copy_dir(&e.path(), &dst);
        } else if t.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(e.path()).unwrap(), &dst).unwrap();
        } else if t.is_file() {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// The lost-transactions tapes in a node's data directory.
fn tapes(n: &Node) -> Vec<PathBuf> {
    std::fs::read_dir(n.dir.join("data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("lost-")
        })
        .collect()
}

fn get(n: &Node, k: &str) -> Option<String> {
    let mut c = n.client();
    redis::cmd("GET").arg(k).query(&mut c).unwrap()
}

/// A pair where the master's data directory was put back to before `lost` keys were written,
/// with the slave holding them; the slave is SIGSTOPped (the master restarts without it).
fn pair_with_lost_tail(lost: usize) -> (Pair, PathBuf) {
    let mut p = Pair::start("", "");
    load(&p.master, "kept", 500);
    wait_caught_up(&p.master, &p.slave, Duration::from_secs(20));
    // What a crash leaves: the data directory as it was before the last writes.
    p.master.stop();
    let saved = p.dir.path().join("master-data-before");
    copy_dir(&p.master.dir.join("data"), &saved);
    p.master.launch();
    wait_writable(&p.master, Duration::from_secs(20));
    for i in 0..lost {
        set(
            &p.master,
            &format!("lost{i:03}"),
            &format!("only-ever-on-the-slave-{i}"),
        );
    }
    wait_caught_up(&p.master, &p.slave, Duration::from_secs(20));
    assert_eq!(
        get(&p.slave, "lost000").as_deref(),
        Some("only-ever-on-the-slave-0")
    );
    // The crash: the master's last records never reached its disk.
    p.slave.signal(libc::SIGSTOP);
    p.master.kill9();
    let data = p.master.dir.join("data");
    std::fs::remove_dir_all(&data).unwrap();
    copy_dir(&saved, &data);
    (p, saved)
}

/// After the slave rewound: its tape holds the lost records, it follows the master again,
/// with equal data and nothing of the lost keys.
fn check_rewound(p: &Pair, lost: usize) {
    wait_caught_up(&p.master, &p.slave, Duration::from_secs(30));
    set(&p.master, "after", "1");
    wait_caught_up(&p.master, &p.slave, Duration::from_secs(20));
    assert_eq!(get(&p.slave, "after").as_deref(), Some("1"));
    assert_same(&p.master, &p.slave, FILES);
    for i in 0..lost {
        assert_eq!(get(&p.slave, &format!("lost{i:03}")), None, "lost{i:03}");
    }
    assert!(get(&p.slave, "kept0000499").is_some());
    assert_incident(&p.slave, "lost_transactions");
    let t = tapes(&p.slave);
    assert_eq!(t.len(), 1, "{t:?}\n{}", p.slave.log_text());
    let (code, dump, err) = cli(&["journal", "dump", t[0].to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    for i in 0..lost {
        let needle = format!("only-ever-on-the-slave-{i}");
        assert!(dump.contains(&needle), "{needle} not on the tape:\n{dump}");
    }
    assert!(
        !dump.contains("kept0000499"),
        "the tape holds records the master has:\n{dump}"
    );
    assert!(
        p.slave
            .log_text()
            .contains("no longer has them: it shipped them before they were durable there"),
        "{}",
        p.slave.log_text()
    );
}

#[test]
fn a_slave_holding_records_its_restarted_master_lost_exports_and_rewinds_them() {
    let (mut p, _) = pair_with_lost_tail(20);
    p.master.launch();
    p.slave.signal(libc::SIGCONT);
    wait_writable(&p.master, Duration::from_secs(20));
    check_rewound(&p, 20);
    p.master.stop();
    p.slave.stop();
}

#[test]
fn a_slave_holding_records_its_master_lost_and_wrote_again_at_the_same_lsns_rewinds_them() {
    let (mut p, _) = pair_with_lost_tail(10);
    p.master.launch();
    // The slave is unreachable: the admin ends the restarted master's wait for its peer.
    let (code, out, err) = common::duo::promote(&p.master);
    assert_eq!(code, 0, "{out}{err}");
    wait_writable(&p.master, Duration::from_secs(20));
    // More records than the slave holds past the crash, at the same LSNs and beyond.
    for i in 0..40 {
        set(
            &p.master,
            &format!("new{i:03}"),
            "written-after-the-restart",
        );
    }
    let before = durable(&p.master);
    p.slave.signal(libc::SIGCONT);
    check_rewound(&p, 10);
    assert!(durable(&p.master) > before);
    for i in 0..40 {
        assert_eq!(
            get(&p.slave, &format!("new{i:03}")).as_deref(),
            Some("written-after-the-restart")
        );
    }
    assert!(
        wait_until(Duration::from_secs(5), || p
            .master
            .log_text()
            .contains("does not have as it does")),
        "{}",
        p.master.log_text()
    );
    p.master.stop();
    p.slave.stop();
}

/// A slave that feeds a further slave (A → B → C): when B rewinds the records A lost, C holds
/// them too; B drops its feed, and C, at the next handshake with B, rewinds them as well.
#[test]
fn a_cascaded_slave_rewinds_the_records_its_feeder_rewound() {
    let dir = tempfile::tempdir().unwrap();
    let key = common::key_file(dir.path(), "k.key", KEY);
    let (pa, pb, pc) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    let node = |name: &str, role: &str, port: u16, peer: u16, extra: &str| {
        node_config(
            &dir.path().join(name),
            role,
            port,
            &[format!("127.0.0.1:{peer}")],
            &key,
            extra,
        );
        Node::start_in(&dir.path().join(name))
    };
    let mut c = node("c", "slave", pc, pb, "");
    let mut b = node(
        "b",
        "slave",
        pb,
        pa,
        &format!("downstream = [\"127.0.0.1:{pc}\"]"),
    );
    let mut a = node("a", "master", pa, pb, "");
    load(&a, "kept", 500);
    wait_caught_up(&a, &b, Duration::from_secs(30));
    wait_caught_up(&a, &c, Duration::from_secs(30));
    a.stop();
    let saved = dir.path().join("a-data-before");
    copy_dir(&a.dir.join("data"), &saved);
    a.launch();
    wait_writable(&a, Duration::from_secs(20));
    for i in 0..15 {
        set(
            &a,
            &format!("lost{i:03}"),
            &format!("only-ever-on-the-slave-{i}"),
        );
    }
    wait_caught_up(&a, &c, Duration::from_secs(20));
    assert_eq!(
        get(&c, "lost014").as_deref(),
        Some("only-ever-on-the-slave-14")
    );
    // A's machine crashes before its last records reached its disk.
    a.kill9();
    let data = a.dir.join("data");
    std::fs::remove_dir_all(&data).unwrap();
    copy_dir(&saved, &data);
    a.launch();
    wait_writable(&a, Duration::from_secs(20));
    set(&a, "after", "1");
    wait_caught_up(&a, &b, Duration::from_secs(30));
    wait_caught_up(&a, &c, Duration::from_secs(30));
    assert_eq!(get(&c, "after").as_deref(), Some("1"));
    assert_same(&a, &b, FILES);
    assert_same(&a, &c, FILES);
    for n in [&b, &c] {
        assert_eq!(get(n, "lost000"), None);
        assert_incident(n, "lost_transactions");
        assert_eq!(tapes(n).len(), 1, "{}", n.log_text());
    }
    c.stop();
    b.stop();
    a.stop();
}
