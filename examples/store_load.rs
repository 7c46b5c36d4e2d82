//! The store's own floor for a full sync: what the slave's side costs with no master and no
//! network. Builds the same chunks a master ships (N string items of 200 bytes, keys
//! `item:000000000000`, 256 KiB per chunk, lz4), decodes them as the slave's event loop does,
//! and loads them through the full sync's loader thread into a new store, then makes it
//! durable. `bench/report.py` prints it beside the full sync it bounds.
//!
//!     cargo run --release --example store_load -- DIR N [CACHE_MIB]
//!
//! Prints one line: `store_load items=N secs=S load=L checkpoint=C`.

use std::path::PathBuf;
use std::time::Instant;

use hotbackup::link::msg::{ChunkWriter, decode_chunk_items};
use hotbackup::server::engine::loader::Loader;
use hotbackup::store::{Store, StoreOptions, SyncInit, item};

const CHUNK_BYTES: usize = 256 << 10;

fn main() {
    if let Err(e) = run() {
        eprintln!("store_load: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(dir), Some(n)) = (args.first(), args.get(1)) else {
        return Err("usage: store_load DIR N [CACHE_MIB]".into());
    };
    let n: u64 = n.parse()?;
    let cache_mib: usize = args.get(2).map_or(Ok(1024), |s| s.parse())?;
    let path = PathBuf::from(dir).join("store_load.redb");
    if path.exists() {
        return Err(format!("{} exists", path.display()).into());
    }
    let opts = StoreOptions {
        cache_size: cache_mib << 20,
        ..StoreOptions::default()
    };
    let init = SyncInit {
        db_id: [7; 16],
        history: vec![(1, 1)],
        lsn: n,
        catalog: vec![("main".into(), true)],
    };
    let store = Store::create_for_sync(&path, &opts, &init)?;
    let value = item::encode_str(&[b'v'; 200]);
    let t0 = Instant::now();
    let mut loader = Loader::start(store, n)?;
    let mut i = 0;
    while i < n {
        let mut c = ChunkWriter::new("main", CHUNK_BYTES);
        while i < n && c.encoded_len() < CHUNK_BYTES {
            c.push(format!("item:{i:012}").as_bytes(), &value);
            i += 1;
        }
        let (file, items) = decode_chunk_items(&c.finish(), 16 << 20)?;
        loader.add(file, items)?;
    }
    let mut store = loader.finish()?;
    let loaded = t0.elapsed();
    store.checkpoint()?;
    let secs = t0.elapsed();
    drop(store);
    std::fs::remove_file(&path)?;
    println!(
        "store_load items={n} secs={:.3} load={:.3} checkpoint={:.3}",
        secs.as_secs_f64(),
        loaded.as_secs_f64(),
        (secs - loaded).as_secs_f64()
    );
    Ok(())
}
