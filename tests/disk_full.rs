//! Disk full, on a small tmpfs as the data directory (needs root to mount; CI runs as root).
//! Writes get a clear error, the server stays up and serves reads, nothing acknowledged is lost,
//! and writes work again when space returns — both with the early free-space guard and with the
//! guard off (the journal and store meet a real ENOSPC).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Node, wait_until, write_config};

struct Tmpfs {
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("fs");
        std::fs::create_dir(&dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("run mount");
        assert!(
            st.success(),
            "mounting a tmpfs failed: this test needs root (CI runs as root)"
        );
        Tmpfs { dir, _tmp: tmp }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn fill(path: &Path, bytes: usize) {
    std::fs::write(path, vec![0xaau8; bytes]).unwrap();
}

/// Writes 64 KiB values until the server refuses; returns the acked keys and the error.
fn write_until_full(n: &Node, tag: &str) -> (Vec<String>, String) {
    let mut con = n.client();
    let value = vec![b'v'; 64 * 1024];
    let mut acked = Vec::new();
    for i in 0..10_000 {
        let key = format!("{tag}{i}");
        match redis::cmd("SET")
            .arg(&key)
            .arg(&value[..])
            .query::<()>(&mut con)
        {
            Ok(()) => acked.push(key),
            Err(e) => return (acked, e.to_string()),
        }
    }
    panic!("the disk never filled up");
}

fn check_full_behaviour(n: &Node, acked: &[String], err: &str) {
    assert!(err.contains("disk full"), "unclear error: {err}");
    // The server is up and serves reads.
    let mut con = n.client();
    for k in acked {
        let v: Vec<u8> = redis::cmd("GET").arg(k).query(&mut con).unwrap();
        assert_eq!(v.len(), 64 * 1024, "{k}");
    }
    let info: String = redis::cmd("INFO")
        .arg("persistence")
        .query(&mut con)
        .unwrap();
    assert!(
        info.contains("writes_refused:disk full"),
        "{info}\n--- log\n{}",
        n.log_text()
    );
    // Still refused while full, and not now and then: a guard that refused on an estimate
    // must not take writes again when the open batch commits and proves the estimate high
    // (the writes, and the disk_full / disk_recovered incidents, would flap). Tried for 1 s,
    // past the store's batch commit interval.
    for i in 0..20 {
        let again = redis::cmd("SET")
            .arg(format!("x{i}"))
            .arg(vec![b'v'; 64 * 1024])
            .query::<()>(&mut con);
        assert!(
            again.is_err(),
            "write {i} after the refusal was accepted\n--- log\n{}",
            n.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Removes the filler and waits until the server takes a write again (after it notices).
fn free_space_and_write_again(n: &Node, filler: &Path) {
    std::fs::remove_file(filler).unwrap();
    let mut con = n.client();
    assert!(
        wait_until(Duration::from_secs(10), || redis::cmd("SET")
            .arg("after")
            .arg("ok")
            .query::<()>(&mut con)
            .is_ok()),
        "writes did not resume after space was freed:\n{}",
        n.log_text()
    );
}

fn run(min_free_space: &str, checkpoint_interval: &str) {
    let fs = Tmpfs::mount("48m");
    let filler = fs.dir.join("filler");
    fill(&filler, 12 << 20);
    let config = write_config(
        &fs.dir,
        &format!(
            "\n[durability]\nmin_free_space = \"{min_free_space}\"\ncheckpoint_interval = \"{checkpoint_interval}\"\n[store]\ncache_size = \"8MiB\"\n"
        ),
    );
    let _ = config;
    // The notify hook's log lives off the full file system (else it could not be written).
    let outside = fs.dir.parent().unwrap().join("notified.log");
    std::fs::write(&outside, "").unwrap();
    std::os::unix::fs::symlink(&outside, fs.dir.join("notified.log")).unwrap();
    let mut n = Node::start_in(&fs.dir);
    let (acked, err) = write_until_full(&n, "a");
    assert!(acked.len() > 50, "only {} writes before full", acked.len());
    check_full_behaviour(&n, &acked, &err);
    common::pair::assert_incident(&n, "disk_full");
    // Space returns: writes work again (after the server notices).
    free_space_and_write_again(&n, &filler);
    common::pair::assert_incident(&n, "disk_recovered");
    // Nothing acknowledged was lost, across a crash too.
    n.kill9();
    n.launch();
    let mut con = n.client();
    for k in &acked {
        let v: Option<Vec<u8>> = redis::cmd("GET").arg(k).query(&mut con).unwrap();
        assert_eq!(v.map(|v| v.len()), Some(64 * 1024), "{k} lost");
    }
    let v: String = redis::cmd("GET").arg("after").query(&mut con).unwrap();
    assert_eq!(v, "ok");
    n.stop();
}

#[test]
fn disk_full_with_the_free_space_guard() {
    run("4MiB", "10s");
}

#[test]
fn disk_full_without_the_guard_meets_real_enospc() {
    run("0", "10s");
}

/// Checkpoints every 50 ms: the store's own writes meet ENOSPC too, and it is rebuilt from the
/// journal when they fail.
#[test]
fn disk_full_during_checkpoints() {
    run("0", "50ms");
}

/// Clients pipelining writes and reads while the disk fills up: a failed group commit turns
/// the replies of its batch into errors, and a batch can span several turns of the event loop
/// (it stays open while a sync is in flight). Every command still gets exactly one complete
/// reply, in order, with nothing cut or stuck; the server stays up, and every write answered
/// OK is there afterwards.
#[test]
fn pipelined_clients_get_one_whole_reply_per_command_when_writes_fail() {
    const CLIENTS: usize = 8;
    const PIPELINE: usize = 32;
    let fs = Tmpfs::mount("48m");
    let filler = fs.dir.join("filler");
    fill(&filler, 16 << 20);
    write_config(
        &fs.dir,
        "\n[durability]\nmin_free_space = \"0\"\ncheckpoint_interval = \"10s\"\n[store]\ncache_size = \"8MiB\"\n",
    );
    let outside = fs.dir.parent().unwrap().join("notified.log");
    std::fs::write(&outside, "").unwrap();
    std::os::unix::fs::symlink(&outside, fs.dir.join("notified.log")).unwrap();
    let mut n = Node::start_in(&fs.dir);
    // A value that GETs read back in every pipeline: their replies are voided too, and they
    // are longer than the error that replaces them.
    let big = "r".repeat(8 * 1024);
    n.raw().cmd(&["SET", "read-me", &big]);
    let addr = n.addr;
    let threads: Vec<_> = (0..CLIENTS)
        .map(|t| {
            std::thread::spawn(move || {
                let mut raw = common::Raw::connect(addr);
                let value = vec![b'v'; 4 * 1024];
                let expected_get = format!("$8192\r\n{}\r\n", "r".repeat(8 * 1024)).into_bytes();
                let (mut acked, mut errors) = (Vec::new(), 0usize);
                let deadline = std::time::Instant::now() + Duration::from_secs(60);
                let mut batch = 0;
                while errors < 3 * PIPELINE && std::time::Instant::now() < deadline {
                    let mut req = Vec::new();
                    let mut keys = Vec::new();
                    for i in 0..PIPELINE {
                        if i % 2 == 0 {
                            let key = format!("c{t}-{batch}-{i}");
                            hotbackup::resp::encode::request(
                                &mut req,
                                &[b"SET", key.as_bytes(), &value],
                            );
                            keys.push(Some(key));
                        } else {
                            hotbackup::resp::encode::request(&mut req, &[b"GET", b"read-me"]);
                            keys.push(None);
                        }
                    }
                    raw.send(&req);
                    for key in keys {
                        let reply = raw.reply();
                        let text = String::from_utf8_lossy(&reply);
                        match key {
                            Some(key) if reply == b"+OK\r\n" => acked.push(key),
                            None if reply == expected_get => {}
                            _ => {
                                assert!(
                                    text.starts_with("-ERR") && text.ends_with("\r\n"),
                                    "client {t} batch {batch}: not a reply of its command: {text:.200}"
                                );
                                errors += 1;
                            }
                        }
                    }
                    batch += 1;
                }
                (acked, errors)
            })
        })
        .collect();
    let mut acked = Vec::new();
    let mut errors = 0;
    for t in threads {
        let (a, e) = t.join().expect("a client's replies went wrong");
        acked.extend(a);
        errors += e;
    }
    assert!(errors > 0, "the disk never filled up");
    assert!(acked.len() > 100, "only {} writes before full", acked.len());
    // Space returns: the server (still up) takes writes again, and every write it answered OK
    // is there, across a crash too.
    free_space_and_write_again(&n, &filler);
    n.kill9();
    n.launch();
    let mut con = n.client();
    for k in &acked {
        let v: Option<Vec<u8>> = redis::cmd("GET").arg(k).query(&mut con).unwrap();
        assert_eq!(
            v.map(|v| v.len()),
            Some(4 * 1024),
            "{k} answered OK but is not there"
        );
    }
    n.stop();
    drop(fs);
}

/// Free bytes of the file system holding `path`.
fn free_bytes(path: &Path) -> u64 {
    let st = nix::sys::statvfs::statvfs(path).unwrap();
    st.blocks_available() as u64 * st.fragment_size() as u64
}

/// A slave whose disk cannot hold a full sync's new copy beside its live one: with the
/// free-space guard (the default `min_free_space`, 64 MiB) the load stops before the disk is
/// full; the copy is given up and its directory removed, and the slave stays up on its old
/// copy and says why. The master offers the sync again at every reconnect: the slave refuses
/// those at their start (it learnt what the copy needs), with one disk_full incident in all,
/// and the master raises link_down once. When space returns, a later attempt completes and
/// the slave holds what the master holds, across a kill -9 too. (The new copy's syncs wait
/// until its load is complete, `src/store/loading.rs`: a write that fails must still fail the
/// sync, not a later switch.)
#[test]
fn a_slave_without_room_for_a_full_sync_stops_it_before_the_disk_is_full() {
    full_sync_without_room(true);
}

/// The same with the guard off (`min_free_space = 0`): the load meets a real ENOSPC once, and
/// the next attempts are refused at their start.
#[test]
fn a_full_sync_that_meets_a_full_disk_gives_up_its_copy_and_completes_when_space_returns() {
    full_sync_without_room(false);
}

fn full_sync_without_room(guard: bool) {
    use common::pair::{KEY, assert_same, node_config, told, wait_caught_up};
    // 256 MiB: once the filler is gone, the loaded copy leaves more than the default
    // min_free_space (64 MiB) free, so the slave applies what the master writes next.
    let fs = Tmpfs::mount("256m");
    let dir = tempfile::tempdir().unwrap();
    let key = common::key_file(dir.path(), "pair.key", KEY);
    let (mp, sp) = (common::free_port(), common::free_port());
    // The master first, with 40 MiB of items; its slave is not there yet.
    let mdir = dir.path().join("master");
    node_config(&mdir, "master", mp, &[format!("127.0.0.1:{sp}")], &key, "");
    let master = Node::start_in(&mdir);
    let mut c = master.client();
    let value = vec![b'v'; 16 << 10];
    for chunk in 0..25 {
        let mut cmd = redis::cmd("MSET");
        for i in 0..100 {
            cmd.arg(format!("k{chunk:02}-{i:03}")).arg(&value[..]);
        }
        let _: () = cmd.query(&mut c).unwrap();
    }
    // The slave's disk has 24 MiB free (no guard) or 80 MiB (guard at 64 MiB): the new copy
    // does not fit.
    let filler = fs.dir.join("filler");
    let free = if guard { 80 << 20 } else { 24 << 20 };
    fill(&filler, (free_bytes(&fs.dir) - free) as usize);
    let sdir = fs.dir.join("slave");
    let durability = if guard {
        ""
    } else {
        "[durability]\nmin_free_space = \"0\"\n"
    };
    node_config(
        &sdir,
        "slave",
        sp,
        &[format!("127.0.0.1:{mp}")],
        &key,
        &format!("[store]\ncache_size = \"8MiB\"\n{durability}"),
    );
    // The notify hook's log lives off the full file system.
    let outside = dir.path().join("slave-notified.log");
    std::fs::write(&outside, "").unwrap();
    std::os::unix::fs::symlink(&outside, sdir.join("notified.log")).unwrap();
    let mut slave = Node::start_in(&sdir);
    let stopped = if guard {
        "below min_free_space"
    } else {
        "No space left on device"
    };
    assert!(
        slave.wait_log(stopped, Duration::from_secs(30)),
        "the full sync did not stop:\n{}",
        slave.log_text()
    );
    assert!(
        slave.wait_log("the previous copy stays live", Duration::from_secs(30)),
        "{}",
        slave.log_text()
    );
    // The master's next offers are refused at their start, without loading.
    let refusals = || slave.log_text().matches("a full sync cannot start").count();
    assert!(
        wait_until(Duration::from_secs(30), || refusals() >= 3),
        "the next attempts were not refused at their start:\n{}",
        slave.log_text()
    );
    let log = slave.log_text();
    assert_eq!(
        log.matches("down: loading the full sync").count(),
        1,
        "only the first attempt loads:\n{log}"
    );
    if guard {
        assert!(!log.contains("No space left on device"), "{log}");
    }
    assert_eq!(told(&slave, "disk_full").len(), 1, "{log}");
    assert!(told(&slave, "link_down").is_empty(), "{log}");
    assert_eq!(
        told(&master, "link_down").len(),
        1,
        "one link_down on the master for all the refusals:\n{}",
        master.log_text()
    );
    assert!(
        master.log_text().contains("a full sync cannot start"),
        "the master is told why:\n{}",
        master.log_text()
    );
    // Up, serving its old (empty) copy.
    let mut sc = slave.client();
    let got: Option<Vec<u8>> = redis::cmd("GET").arg("k00-000").query(&mut sc).unwrap();
    assert_eq!(got, None);
    let tmp_copies = || -> Vec<String> {
        std::fs::read_dir(sdir.join("data"))
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect()
    };
    // Space returns: a later attempt completes, and no given-up copy is left behind.
    std::fs::remove_file(&filler).unwrap();
    // And what the master writes next is streamed and applied too.
    let _: () = redis::cmd("SET")
        .arg("after")
        .arg("1")
        .query(&mut c)
        .unwrap();
    wait_caught_up(&master, &slave, Duration::from_secs(60));
    assert_same(&master, &slave, &["main"]);
    assert!(tmp_copies().is_empty(), "left behind: {:?}", tmp_copies());
    assert_eq!(told(&slave, "disk_recovered").len(), 1);
    // The loaded copy is on disk: it is there after a kill -9.
    slave.kill9();
    slave.launch();
    let got: Vec<u8> = redis::cmd("GET")
        .arg("k24-099")
        .query(&mut slave.client())
        .unwrap();
    assert_eq!(got.len(), 16 << 10);
}
