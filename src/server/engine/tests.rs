use std::sync::atomic::Ordering;

use super::*;
use crate::journal::fs::{Faults, FaultyFs};
use crate::store::item;
use crate::txn::Value;

fn opts(dir: &Path) -> EngineOptions {
    EngineOptions {
        data_dir: dir.to_path_buf(),
        sync: SyncMode::Fsync,
        segment_size: 1 << 20,
        cache_size: 16 << 20,
        min_free_space: 0,
        logged: vec!["*".into()],
        unlogged: vec!["tmp/*".into()],
        slave: false,
        archive: None,
    }
}

fn put(k: &str, v: &str) -> Op {
    Op::Put {
        file: "main".into(),
        id: k.as_bytes().to_vec(),
        value: Value::Str(v.as_bytes().to_vec()),
    }
}

fn get(e: &mut Engine, k: &str) -> Option<Vec<u8>> {
    e.reader()
        .unwrap()
        .get_raw("main", k.as_bytes())
        .unwrap()
        .map(|r| item::as_str(&r).unwrap().to_vec())
}

#[test]
fn a_turn_commits_one_record_per_command_and_creates_files_first() {
    let tmp = tempfile::tempdir().unwrap();
    let mut e = Engine::open(opts(tmp.path())).unwrap();
    e.write(put("a", "1")).unwrap();
    e.end_txn();
    e.write(put("b", "2")).unwrap();
    e.write(put("c", "3")).unwrap();
    e.end_txn();
    assert!(matches!(e.end_turn(), TurnOutcome::Committed(2)));
    assert_eq!(get(&mut e, "c").as_deref(), Some(&b"3"[..]));
    drop(e);
    let recs: Vec<_> = JournalReader::open(&DataDir::new(tmp.path()).journal_dir(), 1, None)
        .unwrap()
        .map(|r| Transaction::decode(&r.unwrap().payload).unwrap().ops)
        .collect();
    assert_eq!(recs.len(), 2);
    assert!(matches!(&recs[0][0], Op::CreateFile { file, logged: true } if file == "main"));
    assert_eq!(recs[0][1], put("a", "1"));
    assert_eq!(recs[1], vec![put("b", "2"), put("c", "3")]);
}

#[test]
fn logged_flag_of_new_files_comes_from_the_globs() {
    let o = opts(Path::new("/nonexistent"));
    assert!(o.is_logged("main"));
    assert!(o.is_logged("acct/x"));
    assert!(!o.is_logged("tmp/scratch"));
}

#[test]
fn records_after_the_checkpoint_are_replayed_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let mut e = Engine::open(opts(tmp.path())).unwrap();
    e.write(put("a", "1")).unwrap();
    e.end_txn();
    e.end_turn();
    e.checkpoint();
    let db_id = e.store().unwrap().meta().db_id;
    drop(e);
    // Records the store never saw, as after a crash between group commit and checkpoint.
    let (mut j, _) = Journal::open(
        &DataDir::new(tmp.path()).journal_dir(),
        db_id,
        1,
        JournalOptions::default(),
        Arc::new(RealFs),
    )
    .unwrap();
    for (k, v) in [("b", "2"), ("a", "changed")] {
        let t = Transaction {
            time_ms: 0,
            ops: vec![put(k, v)],
        };
        j.append(1, &t.encode());
    }
    j.commit().unwrap();
    drop(j);
    let mut e = Engine::open(opts(tmp.path())).unwrap();
    assert_eq!(e.stats.replayed_at_start, 2);
    assert_eq!(get(&mut e, "a").as_deref(), Some(&b"changed"[..]));
    assert_eq!(get(&mut e, "b").as_deref(), Some(&b"2"[..]));
    assert_eq!(e.store().unwrap().meta().applied_lsn, 3);
}

#[test]
fn a_second_engine_on_the_same_data_dir_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let _e = Engine::open(opts(tmp.path())).unwrap();
    assert!(matches!(
        Engine::open(opts(tmp.path())),
        Err(EngineError::Locked(_))
    ));
}

#[test]
fn disk_full_fails_the_turn_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let fs = Arc::new(FaultyFs {
        faults: faults.clone(),
    });
    let mut e = Engine::open_with_fs(opts(tmp.path()), fs).unwrap();
    e.write(put("kept", "1")).unwrap();
    e.end_turn();
    // A write larger than the journal space allocated ahead, on a disk with no room left.
    faults.space_left.store(5, Ordering::SeqCst);
    let big = "x".repeat(3 << 20);
    e.write(put("lost", &big)).unwrap();
    e.write(put("kept", "overwritten")).unwrap();
    match e.end_turn() {
        TurnOutcome::Failed { message, fatal } => {
            assert!(!fatal);
            assert!(message.contains("disk full"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(get(&mut e, "lost"), None);
    assert_eq!(get(&mut e, "kept").as_deref(), Some(&b"1"[..]));
    e.end_turn();
    // Space is back (the real file system has room, so the guard lets writes through again).
    faults.space_left.store(u64::MAX, Ordering::SeqCst);
    e.write(put("after", "ok")).unwrap();
    assert!(matches!(e.end_turn(), TurnOutcome::Committed(2)));
    drop(e);
    let e = Engine::open(opts(tmp.path())).unwrap();
    assert_eq!(e.journal().durable_lsn(), 2);
}

#[test]
fn low_free_space_refuses_writes_before_they_start() {
    let tmp = tempfile::tempdir().unwrap();
    let mut o = opts(tmp.path());
    o.min_free_space = u64::MAX;
    let mut e = Engine::open(o).unwrap();
    match e.write(put("a", "1")) {
        Err(WriteError::Refused(WriteRefused::LowSpace { .. })) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(e.end_turn(), TurnOutcome::ReadOnly));
    assert_eq!(get(&mut e, "a"), None);
}

#[test]
fn an_empty_journal_after_a_checkpoint_continues_from_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let mut e = Engine::open(opts(tmp.path())).unwrap();
    for i in 0..3 {
        e.write(put(&format!("k{i}"), "v")).unwrap();
        e.end_turn();
    }
    e.checkpoint();
    drop(e);
    std::fs::remove_dir_all(DataDir::new(tmp.path()).journal_dir()).unwrap();
    std::fs::create_dir(DataDir::new(tmp.path()).journal_dir()).unwrap();
    // An empty journal starts after the store: allowed (segments were all checkpointed away).
    let e = Engine::open(opts(tmp.path())).unwrap();
    assert_eq!(e.journal().next_lsn(), 4);
}

#[test]
fn a_store_ahead_of_its_journal_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut e = Engine::open(opts(tmp.path())).unwrap();
    for i in 0..3 {
        e.write(put(&format!("k{i}"), "v")).unwrap();
        e.end_turn();
    }
    e.checkpoint();
    drop(e);
    let jdir = DataDir::new(tmp.path()).journal_dir();
    let third = JournalReader::open(&jdir, 3, None)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let seg = crate::journal::format::segment_path(&jdir, 1);
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(third.offset).unwrap();
    drop(f);
    match Engine::open(opts(tmp.path())) {
        Err(EngineError::StoreAhead {
            store: 3,
            journal: 2,
        }) => {}
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("opened a store that is ahead of its journal"),
    }
}

fn slave_opts(dir: &Path) -> EngineOptions {
    EngineOptions {
        slave: true,
        ..opts(dir)
    }
}

fn wire(lsn: Lsn, ops: Vec<Op>) -> crate::link::msg::WireRecord {
    crate::link::msg::WireRecord {
        lsn,
        generation: 1,
        payload: Transaction { time_ms: 1, ops }.encode(),
    }
}

#[test]
fn a_slave_journals_remote_records_with_their_lsns_and_refuses_gaps() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Engine::open(slave_opts(tmp.path())).unwrap();
    let create = Op::CreateFile {
        file: "main".into(),
        logged: true,
    };
    s.apply_remote(&wire(1, vec![create, put("a", "1")]))
        .unwrap();
    s.apply_remote(&wire(2, vec![put("b", "2")])).unwrap();
    match s.apply_remote(&wire(4, vec![put("c", "3")])) {
        Err(ApplyError::Gap {
            expected: 3,
            got: 4,
        }) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(s.end_turn(), TurnOutcome::Committed(2)));
    assert_eq!(get(&mut s, "b").as_deref(), Some(&b"2"[..]));
    drop(s);
    let mut s = Engine::open(slave_opts(tmp.path())).unwrap();
    assert_eq!(get(&mut s, "a").as_deref(), Some(&b"1"[..]));
    assert_eq!(s.journal().next_lsn(), 3);
    let ident = s.ident();
    assert_eq!(ident.lsn, 2);
    assert_eq!(ident.catalog, vec![("main".to_string(), true)]);
}

/// Items as a SYNC_CHUNK frame brings them.
fn chunk_items(items: &[(Vec<u8>, Vec<u8>)]) -> crate::link::msg::ChunkItems {
    let b = crate::link::msg::encode_chunk("main", items);
    crate::link::msg::decode_chunk_items(&b, 1 << 30).unwrap().1
}

#[test]
fn a_full_sync_loads_beside_the_live_copy_and_switches_atomically() {
    use std::ops::ControlFlow;
    let mtmp = tempfile::tempdir().unwrap();
    let stmp = tempfile::tempdir().unwrap();
    let mut m = Engine::open(opts(mtmp.path())).unwrap();
    for i in 0..500 {
        m.write(put(&format!("k{i:03}"), &format!("v{i}"))).unwrap();
        m.end_txn();
    }
    m.end_turn();
    let view = m.snapshot().unwrap();
    let lsn = view.lsn();
    assert_eq!(lsn, 500);
    let begin = crate::link::msg::SyncBegin {
        lsn,
        db_id: m.store().unwrap().meta().db_id,
        history: m.history(),
        catalog: view
            .files()
            .into_iter()
            .map(|(n, i)| (n, i.logged))
            .collect(),
        items_total: 500,
    };
    let mut items = Vec::new();
    view.scan_from("main", b"", &mut |k, v| {
        items.push((k.to_vec(), v.to_vec()));
        ControlFlow::Continue(())
    })
    .unwrap();
    // The slave had a database of its own before: it is replaced whole.
    let mut s = Engine::open(slave_opts(stmp.path())).unwrap();
    s.apply_remote(&wire(
        1,
        vec![
            Op::CreateFile {
                file: "main".into(),
                logged: true,
            },
            put("stale", "x"),
        ],
    ))
    .unwrap();
    s.end_turn();
    assert!(get(&mut s, "stale").is_some());
    // A full sync given up half way (the link broke) leaves the live copy as it was.
    let mut fs = s.begin_full_sync(&begin).unwrap();
    fs.add("main".into(), chunk_items(&items[..100])).unwrap();
    s.abort_full_sync(fs);
    assert!(get(&mut s, "stale").is_some());
    assert_eq!(get(&mut s, "k000"), None);
    // One with an item the store cannot take fails, and changes nothing either.
    let mut fs = s.begin_full_sync(&begin).unwrap();
    fs.add("main".into(), chunk_items(&items[..100])).unwrap();
    let bad = vec![(b"bad".to_vec(), vec![0xee, 1, 2])];
    let r = fs
        .add("main".into(), chunk_items(&bad))
        .map_err(EngineError::from)
        .and_then(|()| s.finish_full_sync(fs));
    assert!(
        r.as_ref()
            .is_err_and(|e| e.to_string().contains("unknown type tag")),
        "{:?}",
        r.err()
    );
    assert!(get(&mut s, "stale").is_some());
    // The whole snapshot: the loader makes the new copy durable off the event loop, wakes
    // it, and the switch then does not wait.
    let woken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let w = woken.clone();
    s.set_wake(Arc::new(move || {
        w.fetch_add(1, Ordering::SeqCst);
    }));
    let mut fs = s.begin_full_sync(&begin).unwrap();
    for chunk in items.chunks(64) {
        fs.add("main".into(), chunk_items(chunk)).unwrap();
    }
    s.end_full_sync(&mut fs);
    assert!(
        get(&mut s, "stale").is_some(),
        "the live copy serves meanwhile"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !fs.ready() {
        assert!(Instant::now() < deadline, "the loader did not complete");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(woken.load(Ordering::SeqCst), 1);
    s.finish_full_sync(fs).unwrap();
    assert_eq!(s.journal().next_lsn(), 501);
    assert_eq!(s.store().unwrap().meta().db_id, begin.db_id);
    assert_eq!(get(&mut s, "k499").as_deref(), Some(&b"v499"[..]));
    assert_eq!(s.reader().unwrap().count("main").unwrap(), 500);
    assert_eq!(get(&mut s, "stale"), None, "the old copy's data is gone");
    drop(s);
    let mut s = Engine::open(slave_opts(stmp.path())).unwrap();
    assert_eq!(get(&mut s, "k000").as_deref(), Some(&b"v0"[..]));
    assert_eq!(s.journal().next_lsn(), 501);
    let states: Vec<_> = std::fs::read_dir(stmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("state."))
        .collect();
    assert_eq!(states.len(), 1, "the old copy is gone: {states:?}");
}

/// A setting made durable while a turn's writes are still open (a master feeding a slave for
/// the first time while clients write) must neither wait forever on redb's write lock (the
/// torture test caught the daemon hung there) nor be lost.
#[test]
fn a_local_setting_made_inside_a_turn_with_writes_does_not_hang_and_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut e = Engine::open(opts(&dir)).unwrap();
        e.write(put("a", "1")).unwrap();
        e.end_txn();
        e.note_fed_slave();
        assert!(matches!(e.end_turn(), TurnOutcome::Committed(_)));
        let due = e.checkpoint_due(Duration::from_secs(3600), u64::MAX);
        e.tick(due);
        let kept = e.has_fed_slaves();
        drop(e);
        let _ = tx.send(kept);
    });
    let kept = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("note_fed_slave inside a turn hung (or panicked)");
    assert!(
        kept,
        "the setting is committed with the checkpoint after the turn"
    );
    let e = Engine::open(opts(tmp.path())).unwrap();
    assert!(e.has_fed_slaves(), "and survives a restart");
}

/// The slot that keeps the old master's journal must count from the moment of promotion:
/// the retention floor read before the batch holding it was committed once let the next
/// checkpoint delete the segments the old master's rejoin needed (CI caught it).
#[test]
fn the_old_masters_slot_is_seen_at_once_after_promotion() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Engine::open(slave_opts(tmp.path())).unwrap();
    let create = Op::CreateFile {
        file: "main".into(),
        logged: true,
    };
    s.apply_remote(&wire(1, vec![create, put("a", "1")]))
        .unwrap();
    s.apply_remote(&wire(2, vec![put("b", "2")])).unwrap();
    s.note_master_node([7; 16], "A");
    assert!(matches!(s.end_turn(), TurnOutcome::Committed(2)));
    s.promote("B").unwrap();
    // A write after the promotion keeps a batch open, as clients do.
    s.write(put("c", "3")).unwrap();
    s.end_txn();
    let slots = s.slots();
    let slot = slots
        .iter()
        .find(|(n, _)| n.as_slice() == [7; 16])
        .map(|(_, s)| s.clone());
    assert_eq!(slot.map(|s| s.acked), Some(2), "{slots:?}");
    // And a slot recorded into a batch not yet committed counts before that commit.
    let other = crate::store::Slot {
        acked: 1,
        updated_ms: 1,
        name: "C".into(),
    };
    s.record_slot(&[9; 16], &other);
    let slots = s.slots();
    assert!(
        slots
            .iter()
            .any(|(n, s)| n.as_slice() == [9; 16] && s.acked == 1),
        "{slots:?}"
    );
}

/// A slave whose disk is (nearly) full applies nothing of the stream — the same guard as a
/// master's client writes — and takes it again where it stopped once there is room.
#[test]
fn a_slave_short_of_space_applies_nothing_until_space_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let mut o = slave_opts(tmp.path());
    o.min_free_space = u64::MAX;
    let mut s = Engine::open(o).unwrap();
    let create = Op::CreateFile {
        file: "main".into(),
        logged: true,
    };
    let rec = wire(1, vec![create, put("a", "1")]);
    match s.apply_remote(&rec) {
        Err(ApplyError::NoSpace(e)) => assert!(e.contains("disk full"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(s.end_turn(), TurnOutcome::ReadOnly));
    assert_eq!(s.journal().next_lsn(), 1, "nothing journaled");
    drop(s);
    // Space is back (the guard off): the same record applies.
    let mut s = Engine::open(slave_opts(tmp.path())).unwrap();
    s.apply_remote(&rec).unwrap();
    assert!(matches!(s.end_turn(), TurnOutcome::Committed(1)));
    assert_eq!(get(&mut s, "a").as_deref(), Some(&b"1"[..]));
}

/// A slave's last records (IDENT's tail) are checked against this journal: equal digests
/// pass, another digest or a record past this journal's end is a fork there, and any numbers
/// a peer sends are answered without a panic.
#[test]
fn a_slaves_tail_is_checked_against_the_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let mut m = Engine::open(opts(tmp.path())).unwrap();
    for i in 0..5 {
        m.write(put(&format!("k{i}"), "v")).unwrap();
        m.end_txn();
    }
    m.end_turn();
    m.sync_now();
    let mut r = crate::journal::JournalReader::open(m.journal().dir(), 1, Some(5)).unwrap();
    let mut digests = Vec::new();
    let mut payloads = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        digests.push(super::rejoin::record_digest(&rec.payload));
        payloads.push(rec.payload);
    }
    // Another transaction with the same commit time (a record rewritten after a crash within
    // the same millisecond) has another digest: a fork there too.
    let mut same_ms = payloads[3].clone();
    *same_ms.last_mut().unwrap() ^= 1;
    assert_eq!(
        crate::txn::Transaction::stamp(&same_ms),
        crate::txn::Transaction::stamp(&payloads[3])
    );
    let mut rewritten = digests.clone();
    rewritten[3] = super::rejoin::record_digest(&same_ms);
    assert_eq!(m.fork_in_tail(&(1, rewritten), 5), Ok(Some(4)));
    assert_eq!(digests.len(), 5);
    assert_eq!(m.fork_in_tail(&(1, digests.clone()), 5), Ok(None));
    assert_eq!(m.fork_in_tail(&(3, digests[2..].to_vec()), 5), Ok(None));
    let mut other = digests.clone();
    other[3] += 1;
    assert_eq!(m.fork_in_tail(&(1, other), 5), Ok(Some(4)));
    let mut longer = digests.clone();
    longer.push(1);
    assert_eq!(m.fork_in_tail(&(1, longer), 6), Ok(Some(6)));
    assert_eq!(m.fork_in_tail(&(0, Vec::new()), 5), Ok(None));
    for from in [u64::MAX, u64::MAX - 1, 1 << 63] {
        let r = m.fork_in_tail(&(from, vec![1, 2, 3]), u64::MAX);
        assert!(matches!(r, Ok(Some(_))), "{r:?}");
    }
}

/// While the store is being rebuilt (a failed write, a full disk), a read says that it is a
/// read that cannot be served now and why, not that writes are refused.
#[test]
fn a_read_while_the_store_is_rebuilt_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let mut e = Engine::open(opts(tmp.path())).unwrap();
    e.store = None;
    e.store_broken = Some("store recovery failed: disk full".into());
    let err = e.reader().err().expect("no store: no reader").to_string();
    assert!(
        err.starts_with("the store cannot be read now: store recovery failed: disk full"),
        "{err}"
    );
    assert!(!err.contains("writes are refused"), "{err}");
}
