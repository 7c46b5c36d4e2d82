//! The save file (`hotbackup save --to FILE`): a consistent snapshot of a database at LSN L.
//!
//! This file alone owns the layout. All integers are little-endian.
//! ```text
//! magic "HOTBKSAV" 8 | version u32 (=1) | header length u32 | header | CRC32C of the header u32
//! header: database id 16, LSN u64, saved at (ms) u64, expected items u64,
//!         history: count u32, (generation u64, first LSN u64)*,
//!         catalog: count u32, (name: len u32 + bytes, logged u8)*,
//!         source: len u32 + bytes (instance and role that made it, informative)
//! frames, each: kind u8 | length u32 | CRC32C of the payload u32 | payload
//!   'C' chunk: an lz4 block (size prepended) of: file name (len u32 + bytes), count u32,
//!              (id: len u32 + bytes, stored item: len u32 + bytes)*
//!   'E' end:   items u64, chunks u64, SHA-256 of every byte of the file before this frame
//! and nothing after the end frame.
//! ```
//! The CRCs say where damage is; the SHA-256 in the end frame proves that nothing is missing,
//! reordered or added, and the end frame itself that the file is whole. A file is written to
//! `FILE.tmp` and renamed when complete. Readers check every length against the bytes present
//! and bound every allocation: a damaged file gives an error, never a panic.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::journal::{DbId, Lsn};

pub const MAGIC: &[u8; 8] = b"HOTBKSAV";
pub const VERSION: u32 = 1;
const KIND_CHUNK: u8 = b'C';
const KIND_END: u8 = b'E';
/// Largest header, frame payload, and decompressed chunk accepted.
pub const MAX_HEADER: usize = 64 << 20;
pub const MAX_FRAME: usize = (1 << 30) + (1 << 20);
const FRAME_HEAD: usize = 9;

#[derive(Debug, Error)]
pub enum SaveError {
    #[error("save file {}: cannot {op}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    #[error("{} is not a hotbackup save file: {why}", path.display())]
    NotASave { path: PathBuf, why: String },
    #[error(
        "save file {} is truncated at offset {offset} (it was not written completely): {why}",
        path.display()
    )]
    Truncated {
        path: PathBuf,
        offset: u64,
        why: String,
    },
    #[error("save file {} is corrupt at offset {offset}: {why}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        why: String,
    },
}

/// What a save says of the database it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveHeader {
    pub db_id: DbId,
    pub lsn: Lsn,
    pub saved_ms: u64,
    /// Items the snapshot held when it was taken (for progress; the end frame has the count).
    pub items: u64,
    pub history: Vec<(u64, Lsn)>,
    pub catalog: Vec<(String, bool)>,
    pub source: String,
}

fn put_u32(o: &mut Vec<u8>, v: u32) {
    o.extend_from_slice(&v.to_le_bytes());
}
fn put_u64(o: &mut Vec<u8>, v: u64) {
    o.extend_from_slice(&v.to_le_bytes());
}
fn put_bytes(o: &mut Vec<u8>, b: &[u8]) {
    put_u32(o, b.len() as u32);
    o.extend_from_slice(b);
}

/// Bounds-checked reading of a decoded buffer.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| format!("field at byte {} runs past the end", self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Result<String, String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| "a name is not UTF-8".to_string())
    }
    /// A count of entries each at least `min` bytes, checked against what is left.
    fn count(&mut self, min: usize) -> Result<usize, String> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min) > self.buf.len() - self.pos {
            return Err(format!("count {n} larger than the bytes present"));
        }
        Ok(n)
    }
    fn end(&self) -> Result<(), String> {
        if self.pos != self.buf.len() {
            return Err(format!("{} trailing bytes", self.buf.len() - self.pos));
        }
        Ok(())
    }
}

impl SaveHeader {
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Vec::new();
        o.extend_from_slice(&self.db_id);
        put_u64(&mut o, self.lsn);
        put_u64(&mut o, self.saved_ms);
        put_u64(&mut o, self.items);
        put_u32(&mut o, self.history.len() as u32);
        for (g, first) in &self.history {
            put_u64(&mut o, *g);
            put_u64(&mut o, *first);
        }
        put_u32(&mut o, self.catalog.len() as u32);
        for (name, logged) in &self.catalog {
            put_bytes(&mut o, name.as_bytes());
            o.push(*logged as u8);
        }
        put_bytes(&mut o, self.source.as_bytes());
        o
    }

    pub fn decode(b: &[u8]) -> Result<SaveHeader, String> {
        let mut r = Cursor { buf: b, pos: 0 };
        let mut db_id = [0u8; 16];
        db_id.copy_from_slice(r.take(16)?);
        let lsn = r.u64()?;
        let saved_ms = r.u64()?;
        let items = r.u64()?;
        let n = r.count(16)?;
        let mut history = Vec::with_capacity(n);
        for _ in 0..n {
            history.push((r.u64()?, r.u64()?));
        }
        let n = r.count(5)?;
        let mut catalog = Vec::with_capacity(n);
        for _ in 0..n {
            let name = r.string()?;
            let logged = match r.u8()? {
                0 => false,
                1 => true,
                x => return Err(format!("logged flag {x} is not 0 or 1")),
            };
            catalog.push((name, logged));
        }
        let source = r.string()?;
        r.end()?;
        if history.is_empty() {
            return Err("the generation history is empty".into());
        }
        Ok(SaveHeader {
            db_id,
            lsn,
            saved_ms,
            items,
            history,
            catalog,
            source,
        })
    }
}

/// A chunk: one file's items (id, stored item bytes).
pub type Chunk = (String, Vec<(Vec<u8>, Vec<u8>)>);

/// Encodes and compresses one chunk (the payload of a 'C' frame).
pub fn encode_chunk(file: &str, items: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut o = Vec::new();
    put_bytes(&mut o, file.as_bytes());
    put_u32(&mut o, items.len() as u32);
    for (id, raw) in items {
        put_bytes(&mut o, id);
        put_bytes(&mut o, raw);
    }
    lz4_flex::compress_prepend_size(&o)
}

/// Decompresses and decodes a chunk payload.
pub fn decode_chunk(b: &[u8]) -> Result<Chunk, String> {
    if b.len() < 4 {
        return Err("chunk shorter than its size field".into());
    }
    let size = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
    if size > MAX_FRAME {
        return Err(format!(
            "chunk claims {size} bytes decompressed, over the limit"
        ));
    }
    if size > crate::codec::lz4_max_plain(b.len() - 4) {
        return Err(format!(
            "chunk claims {size} bytes decompressed, more than its {} compressed bytes can hold",
            b.len() - 4
        ));
    }
    let plain =
        lz4_flex::decompress_size_prepended(b).map_err(|e| format!("bad lz4 block: {e}"))?;
    let mut r = Cursor {
        buf: &plain,
        pos: 0,
    };
    let file = r.string()?;
    let n = r.count(8)?;
    let mut items = Vec::with_capacity(n);
    for _ in 0..n {
        let id = r.bytes()?.to_vec();
        let raw = r.bytes()?.to_vec();
        items.push((id, raw));
    }
    r.end()?;
    Ok((file, items))
}

/// `path` + ".tmp".
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// Writes a save file: to `FILE.tmp`, renamed by [`SaveWriter::finish`]; dropped unfinished,
/// the temporary file is removed.
pub struct SaveWriter {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<BufWriter<File>>,
    hash: Sha256,
    items: u64,
    chunks: u64,
    bytes: u64,
}

impl SaveWriter {
    pub fn create(path: &Path, header: &SaveHeader) -> Result<SaveWriter, SaveError> {
        let tmp = tmp_path(path);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|source| SaveError::Io {
                path: tmp.clone(),
                op: "create",
                source,
            })?;
        let mut w = SaveWriter {
            path: path.to_path_buf(),
            tmp,
            file: Some(BufWriter::with_capacity(1 << 20, file)),
            hash: Sha256::new(),
            items: 0,
            chunks: 0,
            bytes: 0,
        };
        let h = header.encode();
        let mut head = Vec::with_capacity(h.len() + 20);
        head.extend_from_slice(MAGIC);
        put_u32(&mut head, VERSION);
        put_u32(&mut head, h.len() as u32);
        head.extend_from_slice(&h);
        put_u32(&mut head, crc32c::crc32c(&h));
        w.write(&head)?;
        Ok(w)
    }

    fn write(&mut self, b: &[u8]) -> Result<(), SaveError> {
        let Some(f) = self.file.as_mut() else {
            return Err(SaveError::Io {
                path: self.tmp.clone(),
                op: "write",
                source: io::Error::other("the writer failed earlier"),
            });
        };
        if let Err(source) = f.write_all(b) {
            self.file = None;
            return Err(SaveError::Io {
                path: self.tmp.clone(),
                op: "write",
                source,
            });
        }
        self.hash.update(b);
        self.bytes += b.len() as u64;
        Ok(())
    }

    fn frame(&mut self, kind: u8, payload: &[u8]) -> Result<(), SaveError> {
        let mut head = Vec::with_capacity(FRAME_HEAD);
        head.push(kind);
        put_u32(&mut head, payload.len() as u32);
        put_u32(&mut head, crc32c::crc32c(payload));
        self.write(&head)?;
        self.write(payload)
    }

    /// Adds a chunk made by [`encode_chunk`] holding `items` items.
    pub fn add_chunk(&mut self, payload: &[u8], items: u64) -> Result<(), SaveError> {
        if payload.len() > MAX_FRAME {
            return Err(SaveError::Corrupt {
                path: self.path.clone(),
                offset: self.bytes,
                why: format!("chunk of {} bytes over the limit", payload.len()),
            });
        }
        self.frame(KIND_CHUNK, payload)?;
        self.items += items;
        self.chunks += 1;
        Ok(())
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Writes the end frame, fsyncs, renames to the final name, fsyncs the directory.
    /// Returns the file's size.
    pub fn finish(mut self) -> Result<u64, SaveError> {
        let digest = self.hash.clone().finalize();
        let mut end = Vec::with_capacity(48);
        put_u64(&mut end, self.items);
        put_u64(&mut end, self.chunks);
        end.extend_from_slice(digest.as_slice());
        self.frame(KIND_END, &end)?;
        let io = |path: &Path, op| {
            let path = path.to_path_buf();
            move |source| SaveError::Io { path, op, source }
        };
        let Some(w) = self.file.take() else {
            return Err(io(&self.tmp, "finish")(io::Error::other(
                "the writer failed earlier",
            )));
        };
        let f = w
            .into_inner()
            .map_err(|e| io(&self.tmp, "write")(e.into_error()))?;
        f.sync_all().map_err(io(&self.tmp, "fsync"))?;
        drop(f);
        std::fs::rename(&self.tmp, &self.path).map_err(io(&self.path, "rename"))?;
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&dir, "fsync the directory of"))?;
        Ok(self.bytes)
    }
}

impl Drop for SaveWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() || self.tmp.exists() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Reads a save file, checking everything (see the module doc).
pub struct SaveReader {
    path: PathBuf,
    file: BufReader<File>,
    header: SaveHeader,
    hash: Sha256,
    offset: u64,
    file_len: u64,
    items: u64,
    chunks: u64,
    done: bool,
}

impl SaveReader {
    pub fn open(path: &Path) -> Result<SaveReader, SaveError> {
        let io = |op| {
            let path = path.to_path_buf();
            move |source| SaveError::Io { path, op, source }
        };
        let f = File::open(path).map_err(io("open"))?;
        let file_len = f.metadata().map_err(io("stat"))?.len();
        let mut r = SaveReader {
            path: path.to_path_buf(),
            file: BufReader::with_capacity(1 << 20, f),
            header: SaveHeader {
                db_id: [0; 16],
                lsn: 0,
                saved_ms: 0,
                items: 0,
                history: Vec::new(),
                catalog: Vec::new(),
                source: String::new(),
            },
            hash: Sha256::new(),
            offset: 0,
            file_len,
            items: 0,
            chunks: 0,
            done: false,
        };
        let magic = r.read_exact_hashed(8, "the magic")?;
        if magic[..] != MAGIC[..] {
            return Err(SaveError::NotASave {
                path: path.to_path_buf(),
                why: "bad magic".into(),
            });
        }
        let v = r.read_exact_hashed(4, "the version")?;
        let version = u32::from_le_bytes([v[0], v[1], v[2], v[3]]);
        if version != VERSION {
            return Err(SaveError::NotASave {
                path: path.to_path_buf(),
                why: format!(
                    "unsupported save format version {version} (this build reads {VERSION})"
                ),
            });
        }
        let l = r.read_exact_hashed(4, "the header length")?;
        let len = u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize;
        if len > MAX_HEADER {
            return Err(r.corrupt(12, format!("header length {len} over the limit")));
        }
        let h = r.read_exact_hashed(len, "the header")?;
        let c = r.read_exact_hashed(4, "the header checksum")?;
        if u32::from_le_bytes([c[0], c[1], c[2], c[3]]) != crc32c::crc32c(&h) {
            return Err(r.corrupt(16, "header checksum mismatch".into()));
        }
        r.header = SaveHeader::decode(&h).map_err(|why| r.corrupt(16, why))?;
        Ok(r)
    }

    pub fn header(&self) -> &SaveHeader {
        &self.header
    }

    /// Compressed bytes read so far, and the file's size.
    pub fn progress(&self) -> (u64, u64) {
        (self.offset, self.file_len)
    }

    fn corrupt(&self, offset: u64, why: String) -> SaveError {
        SaveError::Corrupt {
            path: self.path.clone(),
            offset,
            why,
        }
    }

    fn read_exact_hashed(&mut self, n: usize, what: &str) -> Result<Vec<u8>, SaveError> {
        let left = self.file_len.saturating_sub(self.offset);
        if (n as u64) > left {
            return Err(SaveError::Truncated {
                path: self.path.clone(),
                offset: self.offset,
                why: format!("{what} needs {n} bytes, {left} are left"),
            });
        }
        let mut b = vec![0u8; n];
        self.file
            .read_exact(&mut b)
            .map_err(|source| SaveError::Io {
                path: self.path.clone(),
                op: "read",
                source,
            })?;
        self.hash.update(&b);
        self.offset += n as u64;
        Ok(b)
    }

    /// The next chunk; None after the end frame was read and checked.
    pub fn next_chunk(&mut self) -> Result<Option<Chunk>, SaveError> {
        if self.done {
            return Ok(None);
        }
        let at = self.offset;
        let before_end = self.hash.clone();
        let head = self.read_exact_hashed(FRAME_HEAD, "a frame header")?;
        let kind = head[0];
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let crc = u32::from_le_bytes([head[5], head[6], head[7], head[8]]);
        if len > MAX_FRAME {
            return Err(self.corrupt(at, format!("frame length {len} over the limit")));
        }
        if kind != KIND_CHUNK && kind != KIND_END {
            return Err(self.corrupt(at, format!("unknown frame kind {kind}")));
        }
        let payload = self.read_exact_hashed(len, "a frame")?;
        if crc32c::crc32c(&payload) != crc {
            return Err(self.corrupt(at, "frame checksum mismatch".into()));
        }
        if kind == KIND_CHUNK {
            let chunk = decode_chunk(&payload).map_err(|why| self.corrupt(at, why))?;
            self.items += chunk.1.len() as u64;
            self.chunks += 1;
            return Ok(Some(chunk));
        }
        let mut r = Cursor {
            buf: &payload,
            pos: 0,
        };
        let (items, chunks, digest) = (|| Ok::<_, String>((r.u64()?, r.u64()?, r.take(32)?)))()
            .map_err(|why| self.corrupt(at, format!("end frame: {why}")))?;
        if r.end().is_err() {
            return Err(self.corrupt(at, "end frame: trailing bytes".into()));
        }
        if before_end.finalize().as_slice() != digest {
            return Err(self.corrupt(
                at,
                "the file's SHA-256 does not match the one its end records".into(),
            ));
        }
        if items != self.items || chunks != self.chunks {
            return Err(self.corrupt(
                at,
                format!(
                    "the end records {items} items in {chunks} chunks, the file holds {} in {}",
                    self.items, self.chunks
                ),
            ));
        }
        if self.offset != self.file_len {
            return Err(self.corrupt(
                self.offset,
                format!("{} bytes after the end", self.file_len - self.offset),
            ));
        }
        self.done = true;
        Ok(None)
    }

    /// Items read so far.
    pub fn items(&self) -> u64 {
        self.items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_claiming_more_than_its_block_can_hold_is_refused() {
        let mut b = (1u32 << 30).to_le_bytes().to_vec();
        b.extend_from_slice(&[0xf0, 0, 0, 0, 0, 0]);
        let e = decode_chunk(&b).unwrap_err();
        assert!(
            e.contains("more than its 6 compressed bytes can hold"),
            "{e}"
        );
    }

    fn header() -> SaveHeader {
        SaveHeader {
            db_id: [5; 16],
            lsn: 77,
            saved_ms: 1,
            items: 3,
            history: vec![(1, 1), (2, 40)],
            catalog: vec![("main".into(), true), ("acct/x".into(), false)],
            source: "test".into(),
        }
    }

    fn write(path: &Path) {
        let mut w = SaveWriter::create(path, &header()).unwrap();
        let c1 = encode_chunk("main", &[(b"a".to_vec(), b"\0x".to_vec())]);
        let c2 = encode_chunk(
            "acct/x",
            &[(b"b".to_vec(), b"\0y".to_vec()), (b"c".to_vec(), vec![])],
        );
        w.add_chunk(&c1, 1).unwrap();
        w.add_chunk(&c2, 2).unwrap();
        w.finish().unwrap();
    }

    fn read_all(path: &Path) -> Result<(SaveHeader, Vec<Chunk>), SaveError> {
        let mut r = SaveReader::open(path)?;
        let mut v = Vec::new();
        while let Some(c) = r.next_chunk()? {
            v.push(c);
        }
        Ok((r.header().clone(), v))
    }

    #[test]
    fn a_save_round_trips() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.hbs");
        write(&p);
        assert!(!tmp_path(&p).exists());
        let (h, chunks) = read_all(&p).unwrap();
        assert_eq!(h, header());
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[1].0, "acct/x");
        assert_eq!(chunks[1].1[1], (b"c".to_vec(), vec![]));
    }

    #[test]
    fn every_truncation_and_any_flipped_byte_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.hbs");
        write(&p);
        let full = std::fs::read(&p).unwrap();
        let q = d.path().join("bad.hbs");
        for cut in 0..full.len() {
            std::fs::write(&q, &full[..cut]).unwrap();
            assert!(read_all(&q).is_err(), "cut at {cut} went unnoticed");
        }
        for i in 0..full.len() {
            let mut b = full.clone();
            b[i] ^= 0x10;
            std::fs::write(&q, &b).unwrap();
            assert!(read_all(&q).is_err(), "flip at {i} went unnoticed");
        }
        let mut b = full.clone();
        b.push(0);
        std::fs::write(&q, &b).unwrap();
        assert!(read_all(&q).is_err());
        std::fs::write(&q, b"not a save file at all").unwrap();
        assert!(matches!(read_all(&q), Err(SaveError::NotASave { .. })));
        let cut = &full[..full.len() / 2];
        std::fs::write(&q, cut).unwrap();
        let e = read_all(&q).unwrap_err();
        assert!(matches!(e, SaveError::Truncated { .. }), "{e}");
    }

    #[test]
    fn an_unfinished_writer_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.hbs");
        let mut w = SaveWriter::create(&p, &header()).unwrap();
        w.add_chunk(&encode_chunk("main", &[]), 0).unwrap();
        drop(w);
        assert!(!p.exists() && !tmp_path(&p).exists());
    }

    #[test]
    fn decoders_never_panic() {
        use proptest::prelude::*;
        proptest!(|(b in proptest::collection::vec(any::<u8>(), 0..200))| {
            let _ = SaveHeader::decode(&b);
            let _ = decode_chunk(&b);
        });
    }
}
