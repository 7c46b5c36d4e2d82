//! Tapes, the seed's offline path, with real processes: journal export and load, replaying
//! tapes on a running master (journal load --to, HB.APPLY), save and restore, the archive of
//! journal segments, and the iterative procedure (restore, load tapes while more are written,
//! brief stop, last tape, start).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{Node, cli, write_config};
use hotbackup::journal::tape::{TapeWriter, read_tape};
use hotbackup::txn::{Op, Transaction, Value};

/// Every item of every file: (file, id) -> value as text (hashes as sorted field=value).
fn contents(n: &Node) -> BTreeMap<(String, String), String> {
    let mut c = n.client();
    let files: Vec<redis::Value> = redis::cmd("HB.FILES").query(&mut c).unwrap();
    let mut names = Vec::new();
    for f in files {
        let pairs: Vec<(String, redis::Value)> = match f {
            redis::Value::Map(m) => m
                .into_iter()
                .map(|(k, v)| (redis::from_redis_value(k).unwrap(), v))
                .collect(),
            redis::Value::Array(a) => a
                .chunks(2)
                .map(|p| (redis::from_redis_value(p[0].clone()).unwrap(), p[1].clone()))
                .collect(),
            other => panic!("HB.FILES entry {other:?}"),
        };
        for (k, v) in pairs {
            if k == "name" {
                names.push(redis::from_redis_value::<String>(v).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    for file in names {
        if file.starts_with("sys/") {
            continue;
        }
        redis::cmd("SELECT").arg(&file).exec(&mut c).unwrap();
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
        for k in keys {
            let t: String = redis::cmd("TYPE").arg(&k).query(&mut c).unwrap();
            let v = if t == "hash" {
                let h: BTreeMap<String, String> =
                    redis::cmd("HGETALL").arg(&k).query(&mut c).unwrap();
                format!("{h:?}")
            } else {
                redis::cmd("GET").arg(&k).query::<String>(&mut c).unwrap()
            };
            out.insert((file.clone(), k), v);
        }
    }
    out
}

fn set(n: &Node, k: &str, v: &str) {
    let mut c = n.client();
    redis::cmd("SET").arg(k).arg(v).exec(&mut c).unwrap();
}

/// The node's last durable LSN (HB.STATUS).
fn durable_lsn(n: &Node) -> u64 {
    let mut c = n.client();
    let m: BTreeMap<String, String> = redis::cmd("HB.STATUS").query(&mut c).unwrap();
    m["journal_durable_lsn"].parse().unwrap()
}

fn run(args: &[&str]) -> (i32, String, String) {
    cli(args)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A config for a node that is not started yet (its data dir does not exist).
fn new_node_dir(root: &Path, name: &str, extra: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    write_config(&dir, extra);
    dir
}

const FAST: &str = "[durability]\nmode = \"none\"\n";

fn payload(ops: Vec<Op>) -> Vec<u8> {
    Transaction { time_ms: 1, ops }.encode()
}

fn put(file: &str, id: &str, v: &str) -> Op {
    Op::Put {
        file: file.into(),
        id: id.as_bytes().to_vec(),
        value: Value::Str(v.as_bytes().to_vec()),
    }
}

#[test]
fn tapes_build_a_copy_and_loading_twice_changes_nothing() {
    let a = Node::start(FAST);
    for i in 0..50 {
        set(&a, &format!("k{i}"), &format!("v{i}"));
    }
    let root = tempfile::tempdir().unwrap();
    let t1 = root.path().join("t1.hbt");
    let (code, out, err) = run(&[
        "journal",
        "export",
        "-c",
        s(&a.config),
        "--from",
        "1",
        s(&t1),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("LSN 1..50"), "{out}");
    // The tape reads like a journal.
    let (code, out, _) = run(&["journal", "check", s(&t1)]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = run(&["journal", "dump", s(&t1), "--limit", "1"]);
    assert_eq!(code, 0);
    assert!(out.contains("put main \"k0\" = \"v0\""), "{out}");

    // A new node, built from the tape alone (it starts at LSN 1).
    let bdir = new_node_dir(root.path(), "b", FAST);
    let bcfg = bdir.join("node.toml");
    let (code, out, err) = run(&["journal", "load", "-c", s(&bcfg), s(&t1)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("50 loaded"), "{out}");
    // Again: nothing changes.
    let (code, out, err) = run(&["journal", "load", "-c", s(&bcfg), s(&t1)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 loaded, 50 already here"), "{out}");

    // More writes, a second tape (overlapping the first), loaded with the first again.
    for i in 50..80 {
        set(&a, &format!("k{i}"), &format!("w{i}"));
    }
    set(&a, "k3", "changed");
    let t2 = root.path().join("t2.hbt");
    let (code, out, err) = run(&[
        "journal",
        "export",
        "-c",
        s(&a.config),
        "--from",
        "40",
        s(&t2),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run(&["journal", "load", "-c", s(&bcfg), s(&t2), s(&t1)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("31 loaded"), "{out}");

    let b = Node::start_in(&bdir);
    assert_eq!(contents(&a), contents(&b));
    assert_eq!(durable_lsn(&a), durable_lsn(&b));

    // A running node refuses an offline load.
    let (code, _, err) = run(&["journal", "load", "-c", s(&bcfg), s(&t2)]);
    assert_eq!(code, 1);
    assert!(
        err.contains("is running") && err.contains("stop it"),
        "{err}"
    );
}

#[test]
fn a_tape_with_a_gap_or_from_another_database_or_history_is_refused() {
    let a = Node::start(FAST);
    for i in 0..20 {
        set(&a, &format!("k{i}"), "a");
    }
    let root = tempfile::tempdir().unwrap();
    let t1 = root.path().join("t1.hbt");
    let t_gap = root.path().join("gap.hbt");
    assert_eq!(
        run(&[
            "journal",
            "export",
            "-c",
            s(&a.config),
            "--from",
            "1",
            "--to",
            "10",
            s(&t1)
        ])
        .0,
        0
    );
    assert_eq!(
        run(&[
            "journal",
            "export",
            "-c",
            s(&a.config),
            "--from",
            "15",
            s(&t_gap)
        ])
        .0,
        0
    );
    let bdir = new_node_dir(root.path(), "b", FAST);
    let bcfg = bdir.join("node.toml");
    assert_eq!(run(&["journal", "load", "-c", s(&bcfg), s(&t1)]).0, 0);
    let (code, _, err) = run(&["journal", "load", "-c", s(&bcfg), s(&t_gap)]);
    assert_eq!(code, 1);
    assert!(
        err.contains("starts at LSN 15") && err.contains("ends at LSN 10"),
        "{err}"
    );
    assert!(err.contains("--from 11"), "{err}");

    // Export a range the journal does not hold: the error says what it holds.
    let (code, _, err) = run(&[
        "journal",
        "export",
        "-c",
        s(&a.config),
        "--from",
        "99",
        s(&root.path().join("x")),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("ends at LSN 20"), "{err}");

    // Another database.
    let other = Node::start(FAST);
    set(&other, "x", "y");
    let t_other = root.path().join("other.hbt");
    assert_eq!(
        run(&[
            "journal",
            "export",
            "-c",
            s(&other.config),
            "--from",
            "1",
            s(&t_other)
        ])
        .0,
        0
    );
    let (code, _, err) = run(&["journal", "load", "-c", s(&bcfg), s(&t_other)]);
    assert_eq!(code, 1);
    assert!(err.contains("another database"), "{err}");

    // Another history: the same database and LSNs, other contents (a tape written by hand).
    let db_id = read_tape(&t1).unwrap().header.db_id;
    let fork = root.path().join("fork.hbt");
    let mut w = TapeWriter::create(&fork, db_id, 9).unwrap();
    w.append(9, 1, &payload(vec![put("main", "k8", "forked")]))
        .unwrap();
    w.append(10, 1, &payload(vec![put("main", "k9", "forked")]))
        .unwrap();
    w.append(11, 1, &payload(vec![put("main", "k10", "forked")]))
        .unwrap();
    w.finish().unwrap();
    let (code, _, err) = run(&["journal", "load", "-c", s(&bcfg), s(&fork)]);
    assert_eq!(code, 1);
    assert!(
        err.contains("another history") && err.contains("LSN 9"),
        "{err}"
    );

    // Another generation: generation 2 without its promotion record.
    let g2 = root.path().join("g2.hbt");
    let mut w = TapeWriter::create(&g2, db_id, 11).unwrap();
    w.append(11, 2, &payload(vec![put("main", "g", "2")]))
        .unwrap();
    w.finish().unwrap();
    let (code, _, err) = run(&["journal", "load", "-c", s(&bcfg), s(&g2)]);
    assert_eq!(code, 1);
    assert!(
        err.contains("another history") && err.contains("generation 2"),
        "{err}"
    );
    // With its promotion record, generation 2 is taken; then generation 1 is refused.
    let promo = root.path().join("promo.hbt");
    let mut w = TapeWriter::create(&promo, db_id, 11).unwrap();
    w.append(
        11,
        2,
        &payload(vec![Op::NewGeneration {
            generation: 2,
            first_lsn: 11,
            node: vec![7; 16],
            name: "other".into(),
            time_ms: 1,
        }]),
    )
    .unwrap();
    w.append(12, 2, &payload(vec![put("main", "g", "2")]))
        .unwrap();
    w.finish().unwrap();
    let (code, out, err) = run(&["journal", "load", "-c", s(&bcfg), s(&promo)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("generation 2"), "{out}");
    let old = root.path().join("old.hbt");
    let mut w = TapeWriter::create(&old, db_id, 13).unwrap();
    w.append(13, 1, &payload(vec![put("main", "g", "1")]))
        .unwrap();
    w.finish().unwrap();
    let (code, _, err) = run(&["journal", "load", "-c", s(&bcfg), s(&old)]);
    assert_eq!(code, 1);
    assert!(
        err.contains("below this node's current generation 2"),
        "{err}"
    );
    // The node starts with what was accepted.
    let b = Node::start_in(&bdir);
    let mut c = b.client();
    let g: String = redis::cmd("GET").arg("g").query(&mut c).unwrap();
    assert_eq!(g, "2");
}

#[test]
fn journal_load_to_replays_a_tape_on_a_running_master_as_new_transactions() {
    let a = Node::start(FAST);
    for i in 0..10 {
        set(&a, &format!("k{i}"), "a");
    }
    let root = tempfile::tempdir().unwrap();
    let lost = root.path().join("lost.hbt");
    assert_eq!(
        run(&[
            "journal",
            "export",
            "-c",
            s(&a.config),
            "--from",
            "5",
            s(&lost)
        ])
        .0,
        0
    );
    let m = Node::start(FAST);
    set(&m, "other", "x");
    let before = durable_lsn(&m);
    let addr = m.addr.to_string();
    let (code, out, err) = run(&["journal", "load", "--to", &addr, s(&lost)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "applied 6 transaction(s) on {addr}: tape LSN 5..10 became LSN {}..{}",
            before + 1,
            before + 6
        )),
        "{out}"
    );
    let mut c = m.client();
    let v: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&["k3", "k4", "k9", "other"])
        .query(&mut c)
        .unwrap();
    assert_eq!(
        v,
        vec![None, Some("a".into()), Some("a".into()), Some("x".into())]
    );
}

#[test]
fn hb_apply_is_atomic_and_refuses_promotions_and_reserved_files() {
    let m = Node::start(FAST);
    let mut c = m.client();
    redis::cmd("HSET")
        .arg("h")
        .arg("f")
        .arg("1")
        .exec(&mut c)
        .unwrap();
    // The second op would APPEND to a hash: nothing of the transaction is applied.
    let bad = payload(vec![
        put("main", "new", "1"),
        Op::Append {
            file: "main".into(),
            id: b"h".to_vec(),
            data: b"x".to_vec(),
        },
    ]);
    let e = redis::cmd("HB.APPLY").arg(bad).exec(&mut c).unwrap_err();
    assert!(e.to_string().contains("op 2 (append)"), "{e}");
    assert!(e.to_string().contains("nothing was applied"), "{e}");
    let got: Option<String> = redis::cmd("GET").arg("new").query(&mut c).unwrap();
    assert_eq!(got, None);
    // Ops see the effect of the ops before them.
    let good = payload(vec![
        Op::CreateFile {
            file: "acct/x".into(),
            logged: true,
        },
        put("acct/x", "a", "1"),
        Op::Append {
            file: "acct/x".into(),
            id: b"a".to_vec(),
            data: b"2".to_vec(),
        },
        Op::Delete {
            file: "main".into(),
            id: b"h".to_vec(),
        },
    ]);
    let lsn: u64 = redis::cmd("HB.APPLY").arg(good).query(&mut c).unwrap();
    assert_eq!(lsn, durable_lsn(&m));
    let v: String = redis::cmd("HB.READ")
        .arg("acct/x")
        .arg("a")
        .query(&mut c)
        .unwrap();
    assert_eq!(v, "12");
    let promo = payload(vec![Op::NewGeneration {
        generation: 5,
        first_lsn: 1,
        node: vec![],
        name: String::new(),
        time_ms: 0,
    }]);
    let e = redis::cmd("HB.APPLY").arg(promo).exec(&mut c).unwrap_err();
    assert!(e.to_string().contains("promotion record"), "{e}");
    let sys = payload(vec![put("sys/canary", "x", "1")]);
    let e = redis::cmd("HB.APPLY").arg(sys).exec(&mut c).unwrap_err();
    assert!(e.to_string().contains("reserved"), "{e}");
    let e = redis::cmd("HB.APPLY").arg("junk").exec(&mut c).unwrap_err();
    assert!(e.to_string().contains("not an encoded transaction"), "{e}");

    // Refused on a slave like any write.
    let root = tempfile::tempdir().unwrap();
    let key = common::key_file(root.path(), "k.key", "0123456789abcdef-tapes-secret");
    let cfg = write_config(
        root.path(),
        &format!(
            "{FAST}\n[link]\nlisten = \"127.0.0.1:0\"\npeers = [\"127.0.0.1:1\"]\nkey_file = \"{}\"\n",
            key.display()
        ),
    );
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("role = \"slave\"\n{text}")).unwrap();
    let sl = Node::start_in(root.path());
    let mut c = sl.client();
    let e = redis::cmd("HB.APPLY")
        .arg(payload(vec![put("main", "a", "b")]))
        .exec(&mut c)
        .unwrap_err();
    assert!(e.to_string().contains("read only replica"), "{e}");
}

/// The number after `word` in `text` ("at LSN 42" -> 42 for "at LSN ").
fn number_after(text: &str, word: &str) -> u64 {
    let rest = text
        .split(word)
        .nth(1)
        .unwrap_or_else(|| panic!("no {word:?} in {text:?}"));
    rest.chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("no number after {word:?} in {text:?}"))
}

/// Exports from `from` to a new tape; returns the LSN to export from next time.
fn export_from(a: &Node, from: u64, tape: &Path) -> u64 {
    let (code, out, err) = run(&[
        "journal",
        "export",
        "-c",
        s(&a.config),
        "--from",
        &from.to_string(),
        s(tape),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    if out.contains("exported no records") {
        return from;
    }
    number_after(&out, &format!("LSN {from}..")) + 1
}

#[test]
fn save_restore_then_tapes_in_rounds_under_writes_give_the_masters_data() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Duration;

    let a = Node::start(FAST);
    {
        let mut c = a.client();
        for i in 0..3000 {
            redis::cmd("SET")
                .arg(format!("k{i}"))
                .arg(format!("{i:0>100}"))
                .exec(&mut c)
                .unwrap();
        }
        redis::cmd("HSET")
            .arg("h")
            .arg("f")
            .arg("1")
            .exec(&mut c)
            .unwrap();
        redis::cmd("HB.CREATE")
            .arg("acct/quiet")
            .arg("UNLOGGED")
            .exec(&mut c)
            .unwrap();
        redis::cmd("HB.WRITE")
            .arg("acct/quiet")
            .arg("x")
            .arg("y")
            .exec(&mut c)
            .unwrap();
    }
    // Writes go on during the whole procedure.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, done) = (stop.clone(), done.clone());
        let mut c = a.client();
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                redis::cmd("SET")
                    .arg(format!("w{}", i % 500))
                    .arg(i)
                    .exec(&mut c)
                    .unwrap();
                redis::cmd("INCR").arg("counter").exec(&mut c).unwrap();
                redis::cmd("HSET")
                    .arg("h")
                    .arg(format!("f{}", i % 7))
                    .arg(i)
                    .exec(&mut c)
                    .unwrap();
                if i % 50 == 0 {
                    redis::cmd("DEL").arg(format!("k{i}")).exec(&mut c).unwrap();
                }
                i += 1;
                done.store(i, Ordering::SeqCst);
            }
        })
    };
    let progressed = |since: u64| {
        common::wait_until(Duration::from_secs(20), || {
            done.load(Ordering::SeqCst) >= since + 100
        })
    };
    assert!(progressed(0));

    let root = tempfile::tempdir().unwrap();
    let save = root.path().join("a.hbs");
    let (code, out, err) = run(&["save", "-c", s(&a.config), "--to", s(&save)]);
    assert_eq!(code, 0, "{out}{err}");
    let l = number_after(&out, "at LSN ");
    assert!(out.contains("item(s) of 2 file(s)"), "{out}");

    let bdir = new_node_dir(root.path(), "b", FAST);
    let bcfg = bdir.join("node.toml");
    let (code, out, err) = run(&["restore", "-c", s(&bcfg), s(&save)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("at LSN {l}")), "{out}");

    // Rounds of tapes while the writes go on.
    let mut next = l + 1;
    for round in 0..3 {
        assert!(progressed(done.load(Ordering::SeqCst)));
        let tape = root.path().join(format!("round{round}.hbt"));
        let from = next;
        next = export_from(&a, from, &tape);
        let (code, out, err) = run(&["journal", "load", "-c", s(&bcfg), s(&tape)]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(
            out.contains(&format!("now ends at LSN {}", next - 1)),
            "round {round}: {out}"
        );
    }
    // Brief stop of the writes, the last tape, start the restored node.
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let last = root.path().join("last.hbt");
    next = export_from(&a, next, &last);
    let (code, out, err) = run(&["journal", "load", "-c", s(&bcfg), s(&last)]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(next - 1, durable_lsn(&a));
    let b = Node::start_in(&bdir);
    assert_eq!(durable_lsn(&b), durable_lsn(&a));
    let (ca, cb) = (contents(&a), contents(&b));
    assert!(ca.len() > 3000);
    assert_eq!(ca, cb);
    // The restored node carries the saved identity: a tape of the master still loads (nothing
    // new) once it is stopped again.
    drop(b);
}

#[test]
fn restore_refuses_a_non_empty_data_dir_and_a_damaged_save_leaves_it_empty() {
    let a = Node::start(FAST);
    for i in 0..200 {
        set(&a, &format!("k{i}"), "v");
    }
    let root = tempfile::tempdir().unwrap();
    let save = root.path().join("a.hbs");
    let (code, out, err) = run(&["save", "-c", s(&a.config), "--to", s(&save)]);
    assert_eq!(code, 0, "{out}{err}");
    // An existing file is not replaced without --force.
    let (code, _, err) = run(&["save", "-c", s(&a.config), "--to", s(&save)]);
    assert_eq!(code, 1);
    assert!(err.contains("exists already"), "{err}");

    // Restoring onto a node's data dir is refused.
    let (code, _, err) = run(&["restore", "-c", s(&a.config), s(&save)]);
    assert_eq!(code, 1);
    assert!(err.contains("is not empty"), "{err}");

    let bytes = std::fs::read(&save).unwrap();
    let bdir = new_node_dir(root.path(), "b", FAST);
    let bcfg = bdir.join("node.toml");
    let data = bdir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let cut = root.path().join("cut.hbs");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    let (code, _, err) = run(&["restore", "-c", s(&bcfg), s(&cut)]);
    assert_eq!(code, 1);
    assert!(err.contains("truncated"), "{err}");
    assert_eq!(std::fs::read_dir(&data).unwrap().count(), 0);
    let mut bad = bytes.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x40;
    let badp = root.path().join("bad.hbs");
    std::fs::write(&badp, &bad).unwrap();
    let (code, _, err) = run(&["restore", "-c", s(&bcfg), s(&badp)]);
    assert_eq!(code, 1);
    assert!(err.contains("corrupt"), "{err}");
    assert_eq!(std::fs::read_dir(&data).unwrap().count(), 0);
    // The good file restores, and the node starts with the data.
    let (code, out, err) = run(&["restore", "-c", s(&bcfg), s(&save)]);
    assert_eq!(code, 0, "{out}{err}");
    let b = Node::start_in(&bdir);
    assert_eq!(contents(&a), contents(&b));
}

fn segments_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "hbj"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// About 4 MiB of writes, pipelined.
fn fill(n: &Node, rounds: usize) {
    let mut c = n.client();
    let value = "x".repeat(1000);
    for r in 0..rounds {
        let mut p = redis::pipe();
        for i in 0..100 {
            p.cmd("SET").arg(format!("k{r}-{i}")).arg(&value).ignore();
        }
        p.exec(&mut c).unwrap();
    }
}

#[test]
fn segments_are_archived_before_removal_and_archived_segments_load() {
    use std::time::Duration;
    let root = tempfile::tempdir().unwrap();
    let arch = root.path().join("archive");
    let extra = format!(
        "[durability]\nmode = \"none\"\nsegment_size = \"1MiB\"\ncheckpoint_interval = \"1s\"\n\n[journal]\narchive_dir = \"{}\"\n",
        arch.display()
    );
    let a = Node::start(&extra);
    fill(&a, 40);
    let jdir = a.dir.join("data/current/journal");
    // Checkpoints remove what the store holds, once archived.
    assert!(
        common::wait_until(Duration::from_secs(30), || {
            let mut c = a.client();
            redis::cmd("SAVE").exec(&mut c).unwrap();
            // Writes have stopped: once every sealed segment is archived and removed, only
            // the current one is left, and nothing moves any more.
            segments_in(&jdir).len() == 1 && segments_in(&arch).len() >= 3
        }),
        "journal {:?}, archive {:?}",
        segments_in(&jdir),
        segments_in(&arch)
    );
    // Everything removed from the journal is in the archive.
    let first_kept: u64 = segments_in(&jdir)[0]
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .unwrap();
    let archived = segments_in(&arch);
    assert!(archived[0].ends_with("00000000000000000001.hbj"));
    let last_archived: u64 = archived
        .last()
        .and_then(|p| p.file_stem())
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(last_archived < first_kept);
    // A new node from the archive and a tape of the rest.
    let rest = root.path().join("rest.hbt");
    let (code, out, err) = run(&[
        "journal",
        "export",
        "-c",
        s(&a.config),
        "--from",
        &first_kept.to_string(),
        s(&rest),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let bdir = new_node_dir(root.path(), "b", FAST);
    let bcfg = bdir.join("node.toml");
    let mut args: Vec<String> = vec![
        "journal".into(),
        "load".into(),
        "-c".into(),
        s(&bcfg).into(),
    ];
    args.extend(archived.iter().map(|p| s(p).to_string()));
    args.push(s(&rest).into());
    let argv: Vec<&str> = args.iter().map(|x| x.as_str()).collect();
    let (code, out, err) = run(&argv);
    assert_eq!(code, 0, "{out}{err}");
    let b = Node::start_in(&bdir);
    assert_eq!(durable_lsn(&a), durable_lsn(&b));
    assert_eq!(contents(&a), contents(&b));
}

#[test]
fn a_failing_archive_keeps_the_segments_and_raises_an_incident() {
    use std::time::Duration;
    let extra = "[durability]\nmode = \"none\"\nsegment_size = \"1MiB\"\ncheckpoint_interval = \"1s\"\n\n[journal]\narchive_command = \"echo archive is broken >&2; exit 1 # %p\"\n";
    let a = Node::start(extra);
    fill(&a, 30);
    assert!(a.wait_log(
        "INCIDENT archive_failed: journal archive failed",
        Duration::from_secs(20)
    ));
    assert!(a.log_text().contains("archive is broken"));
    common::pair::assert_incident(&a, "archive_failed");
    let jdir = a.dir.join("data/current/journal");
    let before = segments_in(&jdir).len();
    assert!(before >= 3);
    let mut c = a.client();
    redis::cmd("SAVE").exec(&mut c).unwrap();
    // Checkpoints come and go (SAVE, then the 1 s interval): no segment is removed.
    let ck = |n: &Node| {
        let m: BTreeMap<String, String> = redis::cmd("HB.STATUS").query(&mut n.client()).unwrap();
        m["checkpoint_lsn"].parse::<u64>().unwrap()
    };
    assert!(common::wait_until(Duration::from_secs(10), || ck(&a) == durable_lsn(&a)));
    redis::cmd("SAVE").exec(&mut c).unwrap();
    assert!(common::wait_until(Duration::from_secs(10), || {
        a.log_text().contains("journal archive still failing")
    }));
    assert_eq!(segments_in(&jdir).len(), before);
}

#[test]
fn an_archive_command_archives_each_segment_byte_for_byte_before_the_journal_drops_it() {
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;
    let root = tempfile::tempdir().unwrap();
    let arch = root.path().join("archive");
    std::fs::create_dir_all(&arch).unwrap();
    // The archive command copies a segment into `arch` (through a temporary name), once the
    // gate file exists: until then it waits, as a slow archive (a tape, a remote copy) does.
    let gate = root.path().join("gate");
    let done = root.path().join("archived.log");
    let script = root.path().join("archive.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             # archive.sh SEGMENT NAME\n\
             i=0\n\
             while [ ! -e '{gate}' ]; do\n\
             \x20 i=$((i+1)); [ $i -gt 1200 ] && {{ echo 'the gate never opened' >&2; exit 1; }}\n\
             \x20 sleep 0.05\n\
             done\n\
             dst='{arch}'/\"$2\"\n\
             # At least once: the same segment again is fine, another one under its name is not.\n\
             if [ -e \"$dst\" ]; then cmp -s \"$1\" \"$dst\"; exit $?; fi\n\
             cp \"$1\" \"$dst.tmp\" && mv \"$dst.tmp\" \"$dst\" && echo \"$2\" >> '{done}'\n",
            gate = gate.display(),
            arch = arch.display(),
            done = done.display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let extra = format!(
        "[durability]\nmode = \"none\"\nsegment_size = \"1MiB\"\ncheckpoint_interval = \"1s\"\n\n[journal]\narchive_command = \"{} %p %f\"\n",
        script.display()
    );
    let a = Node::start(&extra);
    fill(&a, 40);
    let jdir = a.dir.join("data/current/journal");
    let checkpoint = |n: &Node| {
        let m: BTreeMap<String, String> = redis::cmd("HB.STATUS").query(&mut n.client()).unwrap();
        m["checkpoint_lsn"].parse::<u64>().unwrap()
    };
    // Checkpoints cover every record, twice over: the journal could drop every sealed segment,
    // but none is archived yet, so all stay.
    let mut c = a.client();
    redis::cmd("SAVE").exec(&mut c).unwrap();
    assert!(common::wait_until(Duration::from_secs(10), || checkpoint(
        &a
    )
        == durable_lsn(&a)));
    std::thread::sleep(Duration::from_millis(1500));
    redis::cmd("SAVE").exec(&mut c).unwrap();
    let held = segments_in(&jdir);
    assert!(
        held.len() >= 4,
        "at least 3 sealed segments and the current one: {held:?}"
    );
    assert!(
        segments_in(&arch).is_empty(),
        "nothing archived yet: {:?}",
        segments_in(&arch)
    );
    // What the sealed segments hold now, in the journal (all but the newest, still written).
    let sealed: Vec<(String, Vec<u8>)> = held[..held.len() - 1]
        .iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(p).unwrap(),
            )
        })
        .collect();
    // The archive works again: every sealed segment is archived, then dropped.
    std::fs::write(&gate, "").unwrap();
    assert!(
        common::wait_until(Duration::from_secs(60), || {
            redis::cmd("SAVE").exec(&mut c).unwrap();
            let left = segments_in(&jdir);
            sealed.iter().all(|(name, _)| {
                arch.join(name).exists() && !left.iter().any(|p| p.ends_with(name))
            })
        }),
        "journal {:?}, archive {:?}\n{}",
        segments_in(&jdir),
        segments_in(&arch),
        a.log_text()
    );
    for (name, bytes) in &sealed {
        let copy = std::fs::read(arch.join(name)).unwrap();
        assert!(
            copy == *bytes,
            "{name}: the archived copy ({} bytes) differs from the journal's segment ({} bytes)",
            copy.len(),
            bytes.len()
        );
        let (code, out, err) = run(&["journal", "check", s(&arch.join(name))]);
        assert_eq!(code, 0, "{name}: {out}{err}");
    }
    // Archived in LSN order, each once, no temporary file left.
    let log = std::fs::read_to_string(&done).unwrap();
    let names: Vec<&str> = sealed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(log.lines().take(names.len()).collect::<Vec<_>>(), names);
    let stray: Vec<_> = std::fs::read_dir(&arch)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".hbj"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    // And the archive holds the data: the first segment dumps the first writes.
    let (code, dump, err) = run(&["journal", "dump", s(&arch.join(names[0]))]);
    assert_eq!(code, 0, "{err}");
    assert!(dump.contains("k0-0"), "{}", &dump[..dump.len().min(2000)]);
    assert!(
        !a.log_text().contains("INCIDENT archive_failed"),
        "{}",
        a.log_text()
    );
}

/// A master and its slave (real processes, loopback), with `extra` in both configs.
fn pair(root: &Path, extra: &str) -> (Node, Node) {
    let key = common::key_file(root, "pair.key", "0123456789abcdef-tapes-pair");
    let (mp, sp) = (common::free_port(), common::free_port());
    let write = |name: &str, role: &str, me: u16, peer: u16| {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let text = format!(
            "role = \"{role}\"\ndata_dir = \"{}\"\n\n[client]\nlisten = \"127.0.0.1:{}\"\n\n[link]\nlisten = \"127.0.0.1:{me}\"\npeers = [\"127.0.0.1:{peer}\"]\nkey_file = \"{}\"\nheartbeat_interval = \"200ms\"\nreconnect_min = \"50ms\"\nreconnect_max = \"500ms\"\n\n{extra}\n",
            dir.join("data").display(),
            common::free_port(),
            key.display()
        );
        std::fs::write(dir.join("node.toml"), text).unwrap();
        dir
    };
    let sdir = write("slave", "slave", sp, mp);
    let slave = Node::start_in(&sdir);
    let mdir = write("master", "master", mp, sp);
    let master = Node::start_in(&mdir);
    (master, slave)
}

#[test]
fn a_slave_saves_while_its_master_writes_and_tapes_of_the_master_continue_the_copy() {
    use std::time::Duration;
    let root = tempfile::tempdir().unwrap();
    let (m, sl) = pair(root.path(), FAST);
    fill(&m, 10);
    assert!(common::wait_until(Duration::from_secs(20), || durable_lsn(
        &sl
    )
        == durable_lsn(&m)));
    // The master keeps writing while the slave saves.
    let writer = {
        let mut c = m.client();
        std::thread::spawn(move || {
            for i in 0..300 {
                redis::cmd("SET")
                    .arg(format!("during{i}"))
                    .arg(i)
                    .exec(&mut c)
                    .unwrap();
            }
        })
    };
    let save = root.path().join("slave.hbs");
    let (code, out, err) = run(&["save", "-c", s(&sl.config), "--to", s(&save)]);
    assert_eq!(code, 0, "{out}{err}");
    let l = number_after(&out, "at LSN ");
    writer.join().unwrap();
    let cdir = new_node_dir(root.path(), "c", FAST);
    let ccfg = cdir.join("node.toml");
    let (code, out, err) = run(&["restore", "-c", s(&ccfg), s(&save)]);
    assert_eq!(code, 0, "{out}{err}");
    let tape = root.path().join("t.hbt");
    export_from(&m, l + 1, &tape);
    let (code, out, err) = run(&["journal", "load", "-c", s(&ccfg), s(&tape)]);
    assert_eq!(code, 0, "{out}{err}");
    let c = Node::start_in(&cdir);
    assert_eq!(durable_lsn(&c), durable_lsn(&m));
    assert_eq!(contents(&c), contents(&m));
}
