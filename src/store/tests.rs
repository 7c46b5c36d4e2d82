use std::ops::ControlFlow;

use super::*;

pub(super) fn open(dir: &Path) -> Store {
    Store::open(&dir.join("store.redb"), &StoreOptions::default()).expect("open store")
}

pub(super) fn s(b: &str) -> Vec<u8> {
    b.as_bytes().to_vec()
}

pub(super) fn put(file: &str, id: &str, v: &str) -> Op {
    Op::Put {
        file: file.into(),
        id: s(id),
        value: Value::Str(s(v)),
    }
}

pub(super) fn create(file: &str) -> Op {
    Op::CreateFile {
        file: file.into(),
        logged: true,
    }
}

pub(super) fn apply_all(store: &mut Store, lsn: Lsn, ops: &[Op]) {
    let mut b = store.begin().unwrap();
    b.set_lsn(lsn);
    for op in ops {
        b.apply(op).unwrap();
    }
    store.commit(b, lsn).unwrap();
}

#[test]
fn a_new_store_gets_an_identity_that_persists() {
    let tmp = tempfile::tempdir().unwrap();
    let id = open(tmp.path()).meta().db_id;
    let again = open(tmp.path());
    assert_eq!(again.meta().db_id, id);
    assert_eq!(again.meta().generation, 1);
    assert_eq!(again.meta().applied_lsn, 0);
}

#[test]
fn committed_batches_are_visible_and_the_applied_lsn_goes_with_them() {
    let tmp = tempfile::tempdir().unwrap();
    let mut st = open(tmp.path());
    apply_all(&mut st, 1, &[create("main"), put("main", "a", "1")]);
    apply_all(&mut st, 2, &[put("main", "b", "2")]);
    let v = st.view().unwrap();
    assert_eq!(v.lsn(), 2);
    assert_eq!(
        v.get_raw("main", b"a").unwrap(),
        Some(item::encode_str(b"1"))
    );
    assert_eq!(v.count("main").unwrap(), 2);
    st.checkpoint().unwrap();
    drop(v);
    drop(st);
    let st = open(tmp.path());
    assert_eq!(st.meta().applied_lsn, 2);
    assert_eq!(st.catalog().get("main").map(|i| i.logged), Some(true));
    assert_eq!(st.view().unwrap().count("main").unwrap(), 2);
}

#[test]
fn a_dropped_batch_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut st = open(tmp.path());
    apply_all(&mut st, 1, &[create("main"), put("main", "a", "1")]);
    let mut b = st.begin().unwrap();
    b.apply(&put("main", "a", "changed")).unwrap();
    b.apply(&create("other")).unwrap();
    assert_eq!(
        b.get_raw("main", b"a").unwrap(),
        Some(item::encode_str(b"changed"))
    );
    drop(b);
    let v = st.view().unwrap();
    assert_eq!(
        v.get_raw("main", b"a").unwrap(),
        Some(item::encode_str(b"1"))
    );
    assert!(v.file_info("other").is_none());
    assert_eq!(st.meta().applied_lsn, 1);
}

#[test]
fn a_view_is_a_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let mut st = open(tmp.path());
    apply_all(&mut st, 1, &[create("main"), put("main", "a", "1")]);
    let before = st.view().unwrap();
    apply_all(&mut st, 2, &[put("main", "a", "2"), create("new")]);
    assert_eq!(
        before.get_raw("main", b"a").unwrap(),
        Some(item::encode_str(b"1"))
    );
    assert!(before.file_info("new").is_none());
    assert_eq!(
        st.view().unwrap().get_raw("main", b"a").unwrap(),
        Some(item::encode_str(b"2"))
    );
}

#[test]
fn ops_have_their_meaning() {
    let tmp = tempfile::tempdir().unwrap();
    let mut st = open(tmp.path());
    let f = || "acct/f".to_string();
    apply_all(
        &mut st,
        1,
        &[
            create("acct/f"),
            Op::Append {
                file: f(),
                id: s("s"),
                data: s("ab"),
            },
            Op::Append {
                file: f(),
                id: s("s"),
                data: s("cd"),
            },
            Op::HashSet {
                file: f(),
                id: s("h"),
                fields: vec![(s("x"), s("1")), (s("y"), s("2"))],
            },
            Op::HashDel {
                file: f(),
                id: s("h"),
                fields: vec![s("x")],
            },
            Op::HashSet {
                file: f(),
                id: s("gone"),
                fields: vec![(s("k"), s("v"))],
            },
            Op::HashDel {
                file: f(),
                id: s("gone"),
                fields: vec![s("k")],
            },
            Op::SetLogged {
                file: f(),
                logged: false,
            },
        ],
    );
    let v = st.view().unwrap();
    assert_eq!(
        v.get_raw(&f(), b"s").unwrap(),
        Some(item::encode_str(b"abcd"))
    );
    let h = v.get_raw(&f(), b"h").unwrap().unwrap();
    assert_eq!(item::hash_fields(&h).unwrap(), vec![(&b"y"[..], &b"2"[..])]);
    assert!(!v.exists(&f(), b"gone").unwrap(), "empty hash is deleted");
    assert_eq!(v.file_info(&f()).map(|i| i.logged), Some(false));
    let mut seen = Vec::new();
    v.scan_from(&f(), b"", &mut |k, _| {
        seen.push(k.to_vec());
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(seen, vec![s("h"), s("s")]);
    drop(v);
    apply_all(&mut st, 2, &[Op::ClearFile { file: f() }]);
    assert_eq!(st.view().unwrap().count(&f()).unwrap(), 0);
    assert!(st.view().unwrap().file_info(&f()).is_some());
    apply_all(&mut st, 3, &[Op::DropFile { file: f() }]);
    assert!(st.view().unwrap().file_info(&f()).is_none());
}

#[test]
fn ops_that_do_not_fit_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let mut st = open(tmp.path());
    apply_all(&mut st, 1, &[create("main"), put("main", "str", "x")]);
    let mut b = st.begin().unwrap();
    b.set_lsn(9);
    for op in [
        put("nofile", "a", "1"),
        create("main"),
        Op::HashSet {
            file: "main".into(),
            id: s("str"),
            fields: vec![],
        },
    ] {
        match b.apply(&op) {
            Err(StoreError::Apply { lsn: 9, .. }) => {}
            other => panic!("{op:?}: {other:?}"),
        }
    }
}

pub(super) fn del(file: &str, id: &str) -> Op {
    Op::Delete {
        file: file.into(),
        id: s(id),
    }
}

pub(super) fn ids(r: &impl Reader, file: &str) -> Vec<String> {
    let mut out = Vec::new();
    r.scan_from(file, b"", &mut |id, _| {
        out.push(String::from_utf8_lossy(id).into_owned());
        ControlFlow::Continue(())
    })
    .unwrap();
    out
}

#[test]
fn a_batch_reads_its_own_buffered_writes_whatever_the_question() {
    let tmp = tempfile::tempdir().unwrap();
    let mut st = open(tmp.path());
    apply_all(
        &mut st,
        1,
        &[create("main"), put("main", "a", "1"), put("main", "c", "3")],
    );
    let mut b = st.begin().unwrap();
    b.set_lsn(2);
    for op in [
        put("main", "b", "2"),
        del("main", "a"),
        put("main", "c", "33"),
    ] {
        b.apply(&op).unwrap();
    }
    // Point reads come from the buffer: a removal, an overwrite, a new item, an untouched one.
    assert_eq!(b.get_raw("main", b"a").unwrap(), None);
    assert_eq!(
        b.get_raw("main", b"c").unwrap(),
        Some(item::encode_str(b"33"))
    );
    assert_eq!(
        b.get_raw("main", b"b").unwrap(),
        Some(item::encode_str(b"2"))
    );
    // A count and a scan see them too; writes after that are buffered again and seen.
    assert_eq!(b.count("main").unwrap(), 2);
    assert_eq!(ids(&b, "main"), ["b", "c"]);
    b.apply(&put("main", "d", "4")).unwrap();
    assert_eq!(ids(&b, "main"), ["b", "c", "d"]);
    // A read of the committed state sees none of it until the commit.
    assert_eq!(ids(&st.view().unwrap(), "main"), ["a", "c"]);
    st.commit(b, 2).unwrap();
    let v = st.view().unwrap();
    assert_eq!(ids(&v, "main"), ["b", "c", "d"]);
    assert_eq!(
        v.get_raw("main", b"c").unwrap(),
        Some(item::encode_str(b"33"))
    );
}

#[test]
fn dropping_or_clearing_a_file_forgets_its_buffered_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let mut st = open(tmp.path());
    apply_all(
        &mut st,
        1,
        &[create("main"), create("aux"), put("main", "a", "1")],
    );
    let mut b = st.begin().unwrap();
    b.set_lsn(2);
    let ops = [
        put("main", "b", "2"),
        put("aux", "x", "1"),
        Op::ClearFile {
            file: "main".into(),
        },
        put("main", "c", "3"),
        Op::DropFile { file: "aux".into() },
        create("aux"),
    ];
    for op in &ops {
        b.apply(op).unwrap();
    }
    assert_eq!(b.get_raw("main", b"b").unwrap(), None);
    assert_eq!(b.get_raw("aux", b"x").unwrap(), None);
    st.commit(b, 2).unwrap();
    let v = st.view().unwrap();
    assert_eq!(ids(&v, "main"), ["c"]);
    assert_eq!(ids(&v, "aux"), Vec::<String>::new());
}

#[test]
fn a_dropped_batch_leaves_its_buffered_writes_out() {
    let tmp = tempfile::tempdir().unwrap();
    let mut st = open(tmp.path());
    apply_all(&mut st, 1, &[create("main"), put("main", "a", "1")]);
    let mut b = st.begin().unwrap();
    b.apply(&put("main", "b", "2")).unwrap();
    b.apply(&del("main", "a")).unwrap();
    drop(b);
    let v = st.view().unwrap();
    assert_eq!(ids(&v, "main"), ["a"]);
    assert_eq!(st.meta().applied_lsn, 1);
}

#[test]
fn a_batch_larger_than_its_buffer_is_handed_to_redb_on_the_way() {
    let tmp = tempfile::tempdir().unwrap();
    let mut st = open(tmp.path());
    apply_all(&mut st, 1, &[create("main")]);
    let mut b = st.begin().unwrap();
    let big = "v".repeat(64 << 10);
    let limit = pending_limit(StoreOptions::default().cache_size);
    let n = limit / big.len() + 10;
    for i in 0..n {
        b.apply(&put("main", &format!("k{i:06}"), &big)).unwrap();
    }
    assert!(
        b.pending.borrow().bytes() < limit,
        "the buffer was flushed on the way"
    );
    st.commit(b, 2).unwrap();
    assert_eq!(st.view().unwrap().count("main").unwrap(), n as u64);
}

fn sync_init(lsn: Lsn) -> SyncInit {
    SyncInit {
        db_id: [9; 16],
        history: vec![(1, 1)],
        lsn,
        catalog: vec![("main".into(), true)],
    }
}

#[test]
fn a_load_with_deferred_syncs_is_whole_once_its_checkpoint_is_done() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("store.redb");
    // A small cache: pages are evicted and the file grows several times during the load.
    let opts = StoreOptions {
        cache_size: 2 << 20,
        ..StoreOptions::default()
    };
    let mut st = Store::create_for_sync(&path, &opts, &sync_init(500)).unwrap();
    st.start_load().unwrap();
    let switch = st.load_switch.clone().unwrap();
    assert!(switch.loading(), "syncs wait");
    let value = item::encode_str(&[b'v'; 200]);
    let n = 20_000u32;
    for chunk in 0..10 {
        let ids: Vec<Vec<u8>> = (chunk * n / 10..(chunk + 1) * n / 10)
            .map(|i| format!("item:{i:08}").into_bytes())
            .collect();
        let mut b = st.begin().unwrap();
        b.put_item_slices(
            "main",
            ids.iter().map(|id| (id.as_slice(), value.as_slice())),
        )
        .unwrap();
        st.commit(b, 500).unwrap();
    }
    assert_eq!(st.checkpoint().unwrap(), 500);
    assert!(
        !switch.loading(),
        "the checkpoint that ends the load syncs for real"
    );
    assert!(st.loading.is_none(), "the writeback thread has stopped");
    drop(st);
    let st = open(tmp.path());
    assert_eq!(st.meta().applied_lsn, 500);
    assert_eq!(st.meta().db_id, [9; 16]);
    let v = st.view().unwrap();
    assert_eq!(v.count("main").unwrap(), u64::from(n));
    assert_eq!(
        v.get_raw("main", b"item:00012345").unwrap(),
        Some(value.clone())
    );
}

#[test]
fn only_a_copy_made_for_a_full_sync_loads_with_deferred_syncs() {
    let tmp = tempfile::tempdir().unwrap();
    let mut st = open(tmp.path());
    assert!(st.start_load().is_err());
}

/// A little generator, so that a randomised test is the same on every run.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n`.
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
