use super::*;

fn open(dir: &std::path::Path, cap: usize) -> (WriteBehind, Progress, std::path::PathBuf) {
    let path = dir.join("f");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .unwrap();
    let (b, p) = WriteBehind::new(file, cap).unwrap();
    (b, p, path)
}

use crate::store::tests::Rng;

#[test]
fn reads_see_the_newest_write_whatever_the_thread_has_done() {
    let tmp = tempfile::tempdir().unwrap();
    // A small cap: writes wait for the thread now and then.
    let (b, p, path) = open(tmp.path(), 1 << 20);
    const SIZE: u64 = 256 * 4096;
    b.set_len(SIZE).unwrap();
    let mut model = vec![0u8; SIZE as usize];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..4000u64 {
        // Writes of 1, 2 or 4 pages at page offsets, overlapping earlier ones of other sizes.
        let pages = 1u64 << (rng.next() % 3);
        let at = (rng.next() % (SIZE / 4096 - pages + 1)) * 4096;
        let data: Vec<u8> = (0..pages * 4096)
            .map(|i| (round as u8).wrapping_add(i as u8))
            .collect();
        b.write(at, &data).unwrap();
        model[at as usize..(at + pages * 4096) as usize].copy_from_slice(&data);
        if round % 7 == 0 {
            b.sync_data().unwrap();
        }
        // A read of any range (also across page ends) gives the model's bytes.
        let len = 1 + rng.next() % 9000;
        let from = rng.next() % (SIZE - len);
        let mut out = vec![0u8; len as usize];
        b.read(from, &mut out).unwrap();
        let want = &model[from as usize..(from + len) as usize];
        if out != want {
            let i = out.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
            panic!(
                "round {round}: {len} bytes at {from} differ from byte {} on ({} instead of {})",
                from + i as u64,
                out[i],
                want[i]
            );
        }
    }
    b.sync_data().unwrap();
    p.wait(p.barrier()).unwrap();
    assert!(
        std::fs::read(&path).unwrap() == model,
        "the file after the last sync differs"
    );
    b.close().unwrap();
}

#[test]
fn a_sync_is_durable_only_when_waited_for_and_epochs_land_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let (b, p, path) = open(tmp.path(), 64 << 20);
    b.set_len(8192).unwrap();
    b.write(0, &[1u8; 4096]).unwrap();
    b.sync_data().unwrap();
    let first = p.barrier();
    b.write(0, &[2u8; 4096]).unwrap();
    b.write(4096, &[3u8; 4096]).unwrap();
    b.sync_data().unwrap();
    let second = p.barrier();
    assert_eq!(second, first + 1);
    p.wait(first).unwrap();
    assert!(p.durable() >= first);
    p.wait(second).unwrap();
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(&on_disk[..4096], &[2u8; 4096][..]);
    assert_eq!(&on_disk[4096..], &[3u8; 4096][..]);
    b.close().unwrap();
}

#[test]
fn a_full_disk_stalls_the_writer_fails_waits_at_once_and_reads_go_on() {
    let full = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/full")
        .unwrap();
    let (b, p) = WriteBehind::new(full, 1 << 20).unwrap();
    // Queued and the sync asked for: both return at once.
    b.write(0, &[7u8; 4096]).unwrap();
    b.sync_data().unwrap();
    let e = p.wait(p.barrier()).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
    // Not a failure for good: the writer retries; more writes queue until the cap.
    assert!(p.failure().is_ok());
    b.write(4096, &[8u8; 4096]).unwrap();
    let mut refused = None;
    for i in 2..1000u64 {
        if let Err(e) = b.write(i * 4096, &[9u8; 4096]) {
            refused = Some(e);
            break;
        }
    }
    let e = refused.expect("writes past the cap are refused while the disk is full");
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
    // Reads see what never reached the file.
    let mut out = [0u8; 16];
    b.read(4090, &mut out).unwrap();
    assert_eq!(out, [7, 7, 7, 7, 7, 7, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8]);
    // Closing gives up (as a crash would) rather than waiting for room.
    assert!(b.close().is_err());
}

#[test]
fn another_write_error_stops_the_writer_for_good() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("ro");
    std::fs::write(&path, [0u8; 8192]).unwrap();
    // Opened for reading only: every write of the thread fails (EBADF).
    let file = std::fs::File::open(&path).unwrap();
    let (b, p) = WriteBehind::new(file, 1 << 20).unwrap();
    b.write(0, &[5u8; 4096]).unwrap();
    b.sync_data().unwrap();
    let e = p.wait(p.barrier()).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EBADF), "{e}");
    assert!(p.failure().is_err());
    assert!(b.write(4096, &[5u8; 4096]).is_err());
    assert!(b.sync_data().is_err());
    let mut out = [0u8; 8];
    b.read(0, &mut out).unwrap();
    assert_eq!(out, [5u8; 8], "reads still see the queue");
    assert!(b.close().is_err());
    assert_eq!(
        std::fs::read(&path).unwrap(),
        vec![0u8; 8192],
        "the file is untouched"
    );
}

/// A redb database on the backend: its commits return before the disk has them, and once
/// the last sync is done (or the database closed) another open finds everything.
#[test]
fn a_redb_database_on_it_reopens_with_everything_committed() {
    use redb::{Durability, ReadableDatabase, ReadableTableMetadata, TableDefinition};
    const T: TableDefinition<u64, &[u8]> = TableDefinition::new("t");
    let tmp = tempfile::tempdir().unwrap();
    let (b, p, path) = open(tmp.path(), 4 << 20);
    let db = redb::Builder::new()
        .set_cache_size(2 << 20)
        .create_with_backend(b)
        .unwrap();
    let value = vec![9u8; 300];
    for batch in 0..20u64 {
        let mut txn = db.begin_write().unwrap();
        txn.set_durability(if batch % 5 == 4 {
            Durability::Immediate
        } else {
            Durability::None
        })
        .unwrap();
        {
            let mut t = txn.open_table(T).unwrap();
            for i in 0..1000 {
                t.insert(batch * 1000 + i, &value[..]).unwrap();
            }
        }
        txn.commit().unwrap();
    }
    p.wait(p.barrier()).unwrap();
    drop(db);
    let db = redb::Database::open(&path).unwrap();
    let r = db.begin_read().unwrap();
    let t = r.open_table(T).unwrap();
    assert_eq!(t.len().unwrap(), 20_000);
    assert_eq!(t.get(12_345).unwrap().unwrap().value(), &value[..]);
}
