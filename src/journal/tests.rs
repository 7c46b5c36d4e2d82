use std::fs::OpenOptions;
use std::io::{Seek, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::format::{self, HEADER_LEN, segment_path};
use super::fs::{Faults, FaultyFs, RealFs};
use super::*;

const DB: DbId = [9; 16];

fn open(dir: &Path, opts: JournalOptions) -> (Journal, recovery::Recovery) {
    Journal::open(dir, DB, 1, opts, Arc::new(RealFs)).expect("open journal")
}

fn payload(i: u64) -> Vec<u8> {
    format!("payload-{i}-{}", "x".repeat((i % 7) as usize)).into_bytes()
}

fn write_n(j: &mut Journal, n: u64, per_commit: u64) {
    let mut i = 0;
    while i < n {
        for _ in 0..per_commit.min(n - i) {
            let lsn = j.next_lsn();
            j.append(1, &payload(lsn));
            i += 1;
        }
        j.commit().expect("commit");
    }
}

fn read_all(dir: &Path) -> Vec<Record> {
    JournalReader::open(dir, 1, None)
        .expect("reader")
        .collect::<Result<Vec<_>, _>>()
        .expect("read")
}

#[test]
fn committed_records_are_read_back_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut j, _) = open(tmp.path(), JournalOptions::default());
    write_n(&mut j, 100, 7);
    assert_eq!(j.durable_lsn(), 100);
    drop(j);
    let recs = read_all(tmp.path());
    assert_eq!(recs.len(), 100);
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r.lsn, i as u64 + 1);
        assert_eq!(r.payload, payload(r.lsn));
    }
    let (j, rec) = open(tmp.path(), JournalOptions::default());
    assert!(rec.truncated.is_none());
    assert_eq!(j.next_lsn(), 101);
}

#[test]
fn reader_starts_at_any_lsn_and_stops_at_upto() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = JournalOptions {
        segment_size: 600,
        ..Default::default()
    };
    let (mut j, _) = open(tmp.path(), opts);
    write_n(&mut j, 60, 3);
    assert!(j.segments().len() > 3, "segments rolled");
    let recs: Vec<_> = JournalReader::open(tmp.path(), 17, Some(40))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(recs.first().map(|r| r.lsn), Some(17));
    assert_eq!(recs.last().map(|r| r.lsn), Some(40));
    assert_eq!(recs.len(), 24);
}

#[test]
fn recovers_from_a_tail_truncated_at_every_byte_of_the_last_record() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    let (mut j, _) = open(&base, JournalOptions::default());
    write_n(&mut j, 5, 1);
    let seg = segment_path(&base, 1);
    let before_last = std::fs::metadata(&seg).unwrap().len();
    let last = j.next_lsn();
    j.append(1, b"the last record, torn by a crash");
    j.commit().unwrap();
    drop(j);
    let full = std::fs::read(&seg).unwrap();
    for cut in before_last..full.len() as u64 {
        let dir = tmp.path().join(format!("cut{cut}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(segment_path(&dir, 1), &full[..cut as usize]).unwrap();
        let (mut j, rec) = open(&dir, JournalOptions::default());
        assert_eq!(j.next_lsn(), last, "cut at {cut}");
        if cut > before_last {
            let (_, offset, dropped, good) = rec.truncated.clone().expect("truncation reported");
            assert_eq!(
                (offset, dropped, good),
                (before_last, cut - before_last, Some(5))
            );
        } else {
            assert!(rec.truncated.is_none());
        }
        // The journal goes on from there, and the file holds exactly the good records.
        j.append(1, b"after recovery");
        j.commit().unwrap();
        drop(j);
        let recs = read_all(&dir);
        assert_eq!(recs.len(), 6);
        assert_eq!(recs[5].payload, b"after recovery");
    }
}

#[test]
fn corruption_before_the_tail_stops_recovery_with_segment_and_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut j, _) = open(tmp.path(), JournalOptions::default());
    write_n(&mut j, 10, 1);
    drop(j);
    let seg = segment_path(tmp.path(), 1);
    let recs = read_all(tmp.path());
    let victim = &recs[4];
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[victim.offset as usize + 30] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();
    let err = Journal::open(
        tmp.path(),
        DB,
        1,
        JournalOptions::default(),
        Arc::new(RealFs),
    )
    .err()
    .expect("must refuse");
    match &err {
        JournalError::Corrupt {
            segment,
            offset,
            lsn,
            ..
        } => {
            assert_eq!(segment, &seg);
            assert_eq!(*offset, victim.offset);
            assert_eq!(*lsn, Some(5));
        }
        other => panic!("wrong error {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("not a torn tail"), "{msg}");
    // Nothing was truncated.
    assert_eq!(std::fs::read(&seg).unwrap(), bytes);
}

#[test]
fn corruption_in_a_sealed_segment_is_an_error_even_at_its_end() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = JournalOptions {
        segment_size: 400,
        ..Default::default()
    };
    let (mut j, _) = open(tmp.path(), opts.clone());
    write_n(&mut j, 30, 2);
    let first = j.segments()[0].path.clone();
    drop(j);
    let len = std::fs::metadata(&first).unwrap().len();
    let f = OpenOptions::new().write(true).open(&first).unwrap();
    f.set_len(len - 3).unwrap();
    let err = Journal::open(tmp.path(), DB, 1, opts, Arc::new(RealFs))
        .err()
        .expect("must refuse");
    assert!(err.to_string().contains("sealed segment"), "{err}");
}

#[test]
fn wrong_database_segments_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut j, _) = open(tmp.path(), JournalOptions::default());
    write_n(&mut j, 2, 1);
    drop(j);
    let err = Journal::open(
        tmp.path(),
        [1; 16],
        1,
        JournalOptions::default(),
        Arc::new(RealFs),
    )
    .err()
    .expect("must refuse");
    assert!(matches!(err, JournalError::WrongDatabase { .. }), "{err}");
}

#[test]
fn a_torn_new_segment_is_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut j, _) = open(tmp.path(), JournalOptions::default());
    write_n(&mut j, 3, 1);
    drop(j);
    let torn = segment_path(tmp.path(), 4);
    std::fs::write(&torn, b"HOTBK").unwrap();
    let (j, rec) = open(tmp.path(), JournalOptions::default());
    assert!(!torn.exists());
    assert!(rec.truncated.is_some());
    assert_eq!(j.next_lsn(), 4);
}

#[test]
fn disk_full_fails_the_batch_leaves_no_partial_record_and_reuses_lsns() {
    let tmp = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let fs = Arc::new(FaultyFs {
        faults: faults.clone(),
    });
    let (mut j, _) = Journal::open(tmp.path(), DB, 1, JournalOptions::default(), fs).unwrap();
    write_n(&mut j, 3, 1);
    // More than the space allocated ahead, with almost no room left on the disk.
    faults.space_left.store(10, Ordering::SeqCst);
    let big = vec![7u8; 3 * super::writer::PREALLOC_CHUNK as usize];
    j.append(1, &big);
    j.append(1, b"nor this");
    let err = j.commit().expect_err("disk full");
    assert!(err.is_disk_full(), "{err}");
    assert_eq!(j.next_lsn(), 4);
    assert_eq!(j.durable_lsn(), 3);
    assert_eq!(read_all(tmp.path()).len(), 3, "no partial record left");
    // Small writes still fit in the space allocated ahead.
    assert_eq!(j.append(1, b"fits"), 4);
    j.commit().unwrap();
    // Space returns: big writes work again.
    faults.space_left.store(u64::MAX, Ordering::SeqCst);
    assert_eq!(j.append(1, &big), 5);
    j.commit().unwrap();
    drop(j);
    let recs = read_all(tmp.path());
    assert_eq!(recs.len(), 5);
    assert_eq!(recs[3].payload, b"fits");
    assert_eq!(recs[4].payload, big);
}

#[test]
fn a_failed_sync_poisons_the_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let fs = Arc::new(FaultyFs {
        faults: faults.clone(),
    });
    let (mut j, _) = Journal::open(tmp.path(), DB, 1, JournalOptions::default(), fs).unwrap();
    faults.fail_sync.store(true, Ordering::SeqCst);
    j.append(1, b"x");
    assert!(matches!(j.commit(), Err(JournalError::Poisoned(_))));
    faults.fail_sync.store(false, Ordering::SeqCst);
    j.append(1, b"y");
    assert!(matches!(j.commit(), Err(JournalError::Poisoned(_))));
}

#[test]
fn undo_removes_the_latest_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut j, _) = open(tmp.path(), JournalOptions::default());
    write_n(&mut j, 2, 1);
    j.append(1, b"undone");
    let mark = j.commit().unwrap().expect("mark");
    j.undo(mark).unwrap();
    assert_eq!(j.next_lsn(), 3);
    j.append(1, b"kept");
    j.commit().unwrap();
    drop(j);
    let recs = read_all(tmp.path());
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[2].payload, b"kept");
}

#[test]
fn segments_wholly_below_a_checkpoint_are_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = JournalOptions {
        segment_size: 500,
        ..Default::default()
    };
    let (mut j, _) = open(tmp.path(), opts.clone());
    write_n(&mut j, 40, 2);
    let before = j.segments().to_vec();
    assert!(before.len() >= 4);
    let cut = before[2].first_lsn; // segments 0 and 1 hold only LSNs < cut
    let removed = j.remove_through(cut - 1).unwrap();
    assert_eq!(
        removed,
        vec![before[0].path.clone(), before[1].path.clone()]
    );
    assert_eq!(j.first_lsn(), cut);
    drop(j);
    // Reading from before the oldest segment is a clear error; reopening works.
    assert!(matches!(
        JournalReader::open(tmp.path(), 1, None),
        Err(JournalError::NotFound { .. })
    ));
    let (j, _) = open(tmp.path(), opts);
    assert_eq!(j.next_lsn(), 41);
}

#[test]
fn zeros_after_the_records_are_free_space_and_garbage_is_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut j, _) = open(tmp.path(), JournalOptions::default());
    write_n(&mut j, 4, 1);
    drop(j);
    let seg = segment_path(tmp.path(), 1);
    let len = read_all(tmp.path()).last().map(|r| r.offset).unwrap();
    let len = len + format::record_len(payload(4).len()) as u64 + 8;
    let mut f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len).unwrap();
    f.seek(std::io::SeekFrom::End(0)).unwrap();
    f.write_all(&[0u8; 4096]).unwrap();
    drop(f);
    let (j, rec) = open(tmp.path(), JournalOptions::default());
    assert_eq!(j.next_lsn(), 5);
    assert!(rec.truncated.is_none(), "zeros are not damage");
    drop(j);
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[0xab; 100]).unwrap();
    drop(f);
    let (j, rec) = open(tmp.path(), JournalOptions::default());
    assert_eq!(j.next_lsn(), 5);
    assert_eq!(rec.truncated.map(|t| t.1), Some(len));
    assert!(len > HEADER_LEN as u64);
}

/// Writes groups of `sizes[i]` records each; returns the records as read back.
fn write_groups(dir: &Path, sizes: &[u64]) -> Vec<Record> {
    let (mut j, _) = open(dir, JournalOptions::default());
    for &n in sizes {
        write_n(&mut j, n, n);
    }
    drop(j);
    read_all(dir)
}

fn damage(dir: &Path, at: u64) {
    let seg = segment_path(dir, 1);
    let mut bytes = std::fs::read(&seg).unwrap();
    for b in &mut bytes[at as usize..at as usize + 4] {
        *b ^= 0x5a;
    }
    std::fs::write(&seg, &bytes).unwrap();
}

#[test]
fn a_last_group_written_out_of_order_is_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    // Groups: LSN 1-2, then 3-5. The last group's first record never reached the disk, its
    // later records did (pages persisted out of order before the crash).
    let recs = write_groups(tmp.path(), &[2, 3]);
    damage(tmp.path(), recs[2].offset + 10);
    let (j, rec) = open(tmp.path(), JournalOptions::default());
    assert_eq!(j.next_lsn(), 3, "the whole unfinished group is dropped");
    let (_, offset, _, last_good) = rec.truncated.expect("reported");
    assert_eq!((offset, last_good), (recs[2].offset, Some(2)));
}

#[test]
fn damage_in_a_group_followed_by_a_later_group_is_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let recs = write_groups(tmp.path(), &[2, 3, 2]);
    damage(tmp.path(), recs[3].offset + 10);
    let err = Journal::open(
        tmp.path(),
        DB,
        1,
        JournalOptions::default(),
        Arc::new(RealFs),
    )
    .err()
    .expect("must refuse");
    assert!(err.to_string().contains("later group commit"), "{err}");
}

#[test]
fn damage_followed_by_a_torn_later_group_is_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    // Group 3-5 is complete and acknowledged; group 6-7 is torn (its end record cut).
    let recs = write_groups(tmp.path(), &[2, 3, 2]);
    let seg = segment_path(tmp.path(), 1);
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(recs[6].offset + 5).unwrap();
    drop(f);
    damage(tmp.path(), recs[2].offset + 10);
    let err = Journal::open(
        tmp.path(),
        DB,
        1,
        JournalOptions::default(),
        Arc::new(RealFs),
    )
    .err()
    .expect("must refuse");
    assert!(err.to_string().contains("later group commit"), "{err}");
}

#[test]
fn a_follower_yields_new_records_as_they_become_durable_across_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = JournalOptions {
        segment_size: 700,
        ..Default::default()
    };
    let (mut j, _) = open(tmp.path(), opts);
    write_n(&mut j, 5, 1);
    let mut f = JournalReader::follow(tmp.path(), 3, j.durable_lsn()).unwrap();
    let mut got = Vec::new();
    while let Some(r) = f.next_record().unwrap() {
        got.push(r.lsn);
    }
    assert_eq!(got, vec![3, 4, 5]);
    assert!(f.next_record().unwrap().is_none(), "waits at the end");
    // Written but not yet allowed: not returned.
    j.append(1, &payload(6));
    j.write().unwrap();
    assert!(f.next_record().unwrap().is_none());
    j.sync_now().unwrap();
    write_n(&mut j, 60, 3);
    assert!(j.segments().len() > 3, "rolled");
    f.set_upto(j.durable_lsn());
    let mut got = Vec::new();
    while let Some(r) = f.next_record().unwrap() {
        assert_eq!(r.payload, payload(r.lsn));
        got.push(r.lsn);
    }
    assert_eq!(got, (6..=66).collect::<Vec<_>>());
    assert_eq!(f.next_lsn(), 67);
}

#[test]
fn a_follower_that_saw_the_file_mid_write_reads_the_record_once_it_is_allowed() {
    // The follower learns the file's length when it opens it (or finds nothing more), and the
    // link moves `upto` later: a record half in the file when the length was taken may be
    // allowed by the time the follower gets to it. It must look at the file again, not call
    // the record damaged (this took links down under heavy writes: "record incomplete").
    let tmp = tempfile::tempdir().unwrap();
    let (mut j, _) = open(tmp.path(), JournalOptions::default());
    write_n(&mut j, 5, 1);
    let seg = j.segments().last().expect("a segment").path.clone();
    drop(j);
    let bytes = std::fs::read(&seg).unwrap();
    let mut five = HEADER_LEN;
    for _ in 0..4 {
        let (_, used) = format::decode_record(&bytes[five..]).expect("a record");
        five += used;
    }
    let (_, used) = format::decode_record(&bytes[five..]).expect("record 5");
    let half = five + used / 2;
    // Record 5 half written when the follower opens the file.
    std::fs::write(&seg, &bytes[..half]).unwrap();
    let mut f = JournalReader::follow(tmp.path(), 1, 4).unwrap();
    let mut got = Vec::new();
    while let Some(r) = f.next_record().unwrap() {
        got.push(r.lsn);
        if r.lsn == 3 {
            // The rest of record 5 reaches the file, and the writer says 5 is written.
            OpenOptions::new()
                .append(true)
                .open(&seg)
                .unwrap()
                .write_all(&bytes[half..five + used])
                .unwrap();
            f.set_upto(5);
        }
    }
    assert_eq!(got, [1, 2, 3, 4, 5]);
}
