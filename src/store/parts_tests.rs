//! A file's items spread over parts ([`super::parts`]), seen through the store.

use std::ops::ControlFlow;

use super::tests::{apply_all, create, del, ids, open, put};
use super::*;

fn open_with_parts(dir: &Path, parts: Parts) -> Store {
    let opts = StoreOptions {
        parts,
        ..StoreOptions::default()
    };
    Store::open(&dir.join("store.redb"), &opts).expect("open store")
}

fn two() -> Parts {
    Parts::new(2).expect("a valid count")
}

/// Items in each part's table of `file`, as a batch sees them.
fn per_part(st: &Store, file: &str) -> Vec<u64> {
    let b = st.begin().unwrap();
    b.item_tables(file)
        .unwrap()
        .iter()
        .map(|t| redb::ReadableTableMetadata::len(t).unwrap())
        .collect()
}

fn meta_u64(path: &Path, key: &str) -> Option<u64> {
    let db = redb::Database::open(path).unwrap();
    let r = db.begin_read().unwrap();
    let t = r.open_table(META).unwrap();
    t.get(key).unwrap().and_then(|g| u64_of(g.value()))
}

fn set_meta_u64(path: &Path, key: &str, v: u64) {
    let db = redb::Database::open(path).unwrap();
    let w = db.begin_write().unwrap();
    w.open_table(META)
        .unwrap()
        .insert(key, &v.to_le_bytes()[..])
        .unwrap();
    w.commit().unwrap();
}

#[test]
fn a_file_spread_over_two_parts_reads_as_one_table() {
    let tmp = tempfile::tempdir().unwrap();
    let mut st = open_with_parts(tmp.path(), two());
    let mut ops = vec![create("main")];
    ops.extend((0..1000).map(|i| put("main", &format!("k{i:04}"), "v")));
    apply_all(&mut st, 1, &ops);
    apply_all(
        &mut st,
        2,
        &(0..1000)
            .step_by(3)
            .map(|i| del("main", &format!("k{i:04}")))
            .collect::<Vec<_>>(),
    );
    let want: Vec<String> = (0..1000)
        .filter(|i| i % 3 != 0)
        .map(|i| format!("k{i:04}"))
        .collect();
    let parts = per_part(&st, "main");
    assert_eq!(parts.len(), 2);
    assert!(
        parts.iter().all(|&n| n > 250),
        "both parts hold items: {parts:?}"
    );
    let mut st = Some(st);
    for round in 0..2 {
        // Reopened with other options, the store keeps its own two parts.
        let st = match st.take() {
            Some(st) if round == 0 => st,
            _ => open_with_parts(tmp.path(), Parts::ONE),
        };
        let v = st.view().unwrap();
        assert_eq!(v.count("main").unwrap(), want.len() as u64);
        assert_eq!(ids(&v, "main"), want);
        for id in ["k0001", "k0998"] {
            assert_eq!(
                v.get_raw("main", id.as_bytes()).unwrap(),
                Some(item::encode_str(b"v"))
            );
        }
        assert_eq!(v.get_raw("main", b"k0003").unwrap(), None);
        // From a point inside, and stopping early: ids in order across the parts.
        let mut from = Vec::new();
        v.scan_from("main", b"k0500", &mut |id, _| {
            from.push(String::from_utf8_lossy(id).into_owned());
            if from.len() == 20 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
        let at = want.iter().position(|id| id.as_str() >= "k0500").unwrap();
        assert_eq!(from, want[at..at + 20]);
        assert_eq!(per_part(&st, "main"), parts);
        drop(v);
        drop(st);
    }
    let mut st = open(tmp.path());
    apply_all(
        &mut st,
        3,
        &[Op::ClearFile {
            file: "main".into(),
        }],
    );
    assert_eq!(st.view().unwrap().count("main").unwrap(), 0);
    assert_eq!(per_part(&st, "main"), [0, 0]);
}

#[test]
fn a_batch_reads_its_own_writes_across_the_parts() {
    let tmp = tempfile::tempdir().unwrap();
    let mut st = open_with_parts(tmp.path(), two());
    apply_all(&mut st, 1, &[create("main"), put("main", "a", "1")]);
    let mut b = st.begin().unwrap();
    for i in 0..50 {
        b.apply(&put("main", &format!("b{i:02}"), "2")).unwrap();
    }
    b.apply(&del("main", "a")).unwrap();
    assert_eq!(b.count("main").unwrap(), 50);
    let seen = ids(&b, "main");
    assert_eq!(seen.len(), 50);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order: {seen:?}");
    st.commit(b, 2).unwrap();
    assert_eq!(ids(&st.view().unwrap(), "main"), seen);
}

#[test]
fn a_store_of_format_1_keeps_its_one_table_per_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("store.redb");
    let mut st = open_with_parts(tmp.path(), Parts::ONE);
    let mut ops = vec![create("main")];
    ops.extend((0..100).map(|i| put("main", &format!("k{i:03}"), "v")));
    apply_all(&mut st, 1, &ops);
    st.checkpoint().unwrap();
    drop(st);
    assert_eq!(meta_u64(&path, "format"), Some(1));
    assert_eq!(meta_u64(&path, "parts"), None);
    // Opened by default (which makes new stores with more parts), it stays as it is.
    let mut st = open(tmp.path());
    apply_all(&mut st, 2, &[put("main", "k100", "v")]);
    assert_eq!(per_part(&st, "main"), [101]);
    assert_eq!(st.view().unwrap().count("main").unwrap(), 101);
    drop(st);
    assert_eq!(meta_u64(&path, "format"), Some(1));
}

#[test]
fn a_new_store_records_its_format_and_parts() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("store.redb");
    drop(open(tmp.path()));
    assert_eq!(meta_u64(&path, "format"), Some(STORE_FORMAT));
    assert_eq!(meta_u64(&path, "parts"), Some(u64::from(parts::NEW_PARTS)));
    let copy = tmp.path().join("copy.redb");
    let init = SyncInit {
        db_id: [1; 16],
        history: vec![(1, 1)],
        lsn: 5,
        catalog: vec![("main".into(), true)],
    };
    drop(Store::create_for_sync(&copy, &StoreOptions::default(), &init).unwrap());
    assert_eq!(meta_u64(&copy, "format"), Some(STORE_FORMAT));
    assert_eq!(meta_u64(&copy, "parts"), Some(u64::from(parts::NEW_PARTS)));
}

#[test]
fn a_store_of_an_unknown_format_or_part_count_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("store.redb");
    drop(open(tmp.path()));
    for (key, v, says) in [
        ("parts", 0, "bad parts"),
        ("parts", u64::from(parts::MAX_PARTS) + 1, "bad parts"),
        ("format", 3, "store format 3 is not supported"),
    ] {
        set_meta_u64(&path, key, v);
        let e = Store::open(&path, &StoreOptions::default())
            .err()
            .expect("refused");
        assert!(e.to_string().contains(says), "{key}={v}: {e}");
        set_meta_u64(&path, key, if key == "parts" { 2 } else { STORE_FORMAT });
    }
    drop(open(tmp.path()));
}
