use super::*;

const FILE_PAGES: usize = 256;

use crate::store::tests::Rng;

fn open_rw(path: &Path) -> File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap()
}

/// Writes pages of `tag` at `page`: every byte says which write it was.
fn pages_of(tag: u8, count: usize) -> Vec<u8> {
    vec![tag; count * PAGE]
}

/// Random writes (aligned runs of 1-3 pages, the same pages again and again, now and then an
/// unaligned one; now and then a commit: 64 adjacent pages in a shuffled order, then a sync),
/// syncs and reads against a model of the file; then the whole file. Returns the batches
/// written (with direct I/O, through the page cache).
fn writes_land_as_made(
    files: impl FnOnce(&Path) -> Files,
    batch_bytes: usize,
    seed: u64,
) -> (u64, u64) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("f");
    let (backend, shared) = LoadingFile::with_batches(open_rw(&path), batch_bytes).unwrap();
    backend.set_len((FILE_PAGES * PAGE) as u64).unwrap();
    let loading = Loading::start_with(shared.clone(), files(&path)).unwrap();
    assert!(shared.loading());
    let mut model = vec![0u8; FILE_PAGES * PAGE];
    let mut rng = Rng(seed);
    for step in 0..3000u32 {
        let tag = (step % 251) as u8 + 1;
        match rng.below(40) {
            0 => backend.sync_data().unwrap(),
            4 => {
                let from = rng.below(FILE_PAGES - 64);
                let mut order: Vec<usize> = (from..from + 64).collect();
                for i in (1..order.len()).rev() {
                    order.swap(i, rng.below(i + 1));
                }
                for page in order {
                    backend
                        .write((page * PAGE) as u64, &pages_of(tag, 1))
                        .unwrap();
                    model[page * PAGE..(page + 1) * PAGE].fill(tag);
                }
                backend.sync_data().unwrap();
            }
            1 | 5 => {
                let (at, len) = (rng.below(FILE_PAGES * PAGE - 100), rng.below(99) + 1);
                backend.write(at as u64, &vec![tag; len]).unwrap();
                model[at..at + len].fill(tag);
            }
            2 | 3 | 6 | 7 => {
                let (at, len) = (rng.below(FILE_PAGES * PAGE - 9000), rng.below(9000) + 1);
                let mut out = vec![0u8; len];
                backend.read(at as u64, &mut out).unwrap();
                assert!(
                    out == model[at..at + len],
                    "step {step}: read at {at}+{len}"
                );
            }
            _ => {
                let count = rng.below(3) + 1;
                let page = rng.below(FILE_PAGES - count + 1);
                backend
                    .write((page * PAGE) as u64, &pages_of(tag, count))
                    .unwrap();
                model[page * PAGE..(page + count) * PAGE].fill(tag);
            }
        }
    }
    loading.end();
    assert!(!shared.loading());
    backend.sync_data().unwrap();
    assert!(std::fs::read(&path).unwrap() == model, "the file as made");
    // Direct again: a write goes straight to the file.
    backend.write(0, &pages_of(7, 1)).unwrap();
    assert_eq!(std::fs::read(&path).unwrap()[..PAGE], pages_of(7, 1)[..]);
    shared.batches()
}

#[test]
fn queued_writes_are_read_back_and_land_as_made_through_the_page_cache() {
    let buffered = |path: &Path| Files {
        direct: None,
        buffered: std::fs::OpenOptions::new().write(true).open(path).unwrap(),
    };
    let (direct, buffered_batches) = writes_land_as_made(buffered, BATCH_BYTES, 0x9e37_79b9);
    assert_eq!(direct, 0);
    assert!(buffered_batches > 10, "{buffered_batches} batches");
    // Small batches: writes wait for the thread now and then.
    writes_land_as_made(buffered, 3 * PAGE, 0x1234_5678);
}

#[test]
fn queued_writes_are_read_back_and_land_as_made_with_direct_io() {
    let tmp = tempfile::tempdir().unwrap();
    let probe = tmp.path().join("probe");
    drop(open_rw(&probe));
    let has_direct = Files::open(&probe).unwrap().direct.is_some();
    let direct = |path: &Path| Files::open(path).unwrap();
    let (direct_batches, buffered) = writes_land_as_made(direct, BATCH_BYTES, 0x0bad_cafe);
    if has_direct {
        // The commits go direct, the batches of scattered pages through the page cache.
        assert!(direct_batches > 5, "{direct_batches} direct batches");
    } else {
        eprintln!("no direct I/O on this file system: the page cache path only");
    }
    assert!(buffered > 5, "{buffered} batches through the page cache");
    writes_land_as_made(direct, 5 * PAGE, 0x5eed);
}

#[test]
fn a_batch_is_written_in_offset_order_with_a_later_write_of_a_range_winning() {
    let mut b = Batch::default();
    b.push(3 * PAGE as u64, &pages_of(1, 1));
    b.push(0, &pages_of(2, 2));
    b.push(3 * PAGE as u64, &pages_of(3, 1));
    b.push(2 * PAGE as u64, &pages_of(4, 1));
    let plan = b.plan();
    let got: Vec<(u64, u8)> = plan
        .iter()
        .map(|w| (w.offset / PAGE as u64, b.pages[w.first].0[0]))
        .collect();
    assert_eq!(got, vec![(0, 2), (2, 4), (3, 3)]);
    // One run: pages 0 to 3 are adjacent.
    assert_eq!(Batch::runs(&plan).len(), 1);

    // Ranges that overlap otherwise: the order they came in.
    let mut b = Batch::default();
    b.push(PAGE as u64, &pages_of(1, 1));
    b.push(0, &pages_of(2, 2));
    let got: Vec<u64> = b.plan().iter().map(|w| w.offset).collect();
    assert_eq!(got, vec![PAGE as u64, 0]);
}

#[test]
fn runs_stop_at_gaps_and_at_the_kernels_iovec_limit() {
    let mut b = Batch::default();
    for p in 0..(IOV_MAX + 10) {
        b.push((p * PAGE) as u64, &pages_of(1, 1));
    }
    b.push(((IOV_MAX + 20) * PAGE) as u64, &pages_of(1, 1));
    let plan = b.plan();
    let lens: Vec<usize> = Batch::runs(&plan)
        .iter()
        .map(|r| r.iter().map(|w| w.pages).sum())
        .collect();
    assert_eq!(lens, vec![IOV_MAX, 10, 1]);
}

#[test]
fn a_failed_write_fails_every_later_write_read_and_sync_of_the_load() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("f");
    let (backend, shared) = LoadingFile::with_batches(open_rw(&path), 2 * PAGE).unwrap();
    backend.set_len((4 * PAGE) as u64).unwrap();
    // A descriptor the thread cannot write with.
    let files = Files {
        direct: None,
        buffered: File::open(&path).unwrap(),
    };
    let loading = Loading::start_with(shared, files).unwrap();
    backend.write(0, &pages_of(1, 1)).unwrap();
    // The sync hands the batch over; the thread's write fails.
    let _ = backend.sync_data();
    let mut out = vec![0u8; PAGE];
    let read = backend.read(0, &mut out).unwrap_err();
    assert_eq!(read.raw_os_error(), Some(libc::EBADF), "{read}");
    let write = backend.write(PAGE as u64, &pages_of(2, 1)).unwrap_err();
    assert_eq!(write.raw_os_error(), Some(libc::EBADF), "{write}");
    assert!(backend.sync_data().is_err());
    loading.end();
    assert!(backend.sync_data().is_err(), "still failed after the load");
}

#[test]
fn a_load_given_up_stops_its_thread_and_writes_go_to_the_file_again() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("f");
    let (backend, shared) = LoadingFile::with_batches(open_rw(&path), BATCH_BYTES).unwrap();
    backend.set_len((4 * PAGE) as u64).unwrap();
    let loading = Loading::start(shared.clone(), &path).unwrap();
    backend.write(0, &pages_of(1, 2)).unwrap();
    drop(loading);
    assert!(!shared.loading());
    backend.write(2 * PAGE as u64, &pages_of(3, 1)).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap()[2 * PAGE..3 * PAGE],
        pages_of(3, 1)[..]
    );
}
