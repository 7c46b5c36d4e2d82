//! Link messages after authentication: what master and slave say to each other.
//!
//! This file owns the payload layouts of the frame types 16 and up (1–4 are the
//! authentication messages of [`super::auth`]). Every decoder checks every length against the
//! bytes present: a peer's bytes never make us panic or allocate more than they carry.
//!
//! ```text
//! IDENT       both, first after auth: role, db id, generation history, LSNs, catalog, name
//! STREAM      master → slave: partial resync: records from LSN n follow
//! SYNC_BEGIN  master → slave: full sync of a snapshot at LSN L: db id, history, catalog
//! SYNC_CHUNK  master → slave: lz4 block of one file's items
//! SYNC_END    master → slave: the snapshot is complete (counts to check)
//! RECORDS     master → slave: journal records (LSN, generation, payload), in LSN order
//! ACK         slave → master: received / durable / applied LSN
//! HEARTBEAT   both: I am alive; my durable LSN and wall clock
//! REPAIR_KEYS   master → rejoining slave: values (at LSN M) of items its divergent suffix touched
//! REPAIR_FILE   master → rejoining slave: a file to repair whole: absent, or its logged flag
//! REPAIR_ITEMS  master → rejoining slave: lz4 block of such a file's items
//! REPAIR_END    master → rejoining slave: the repair is complete at LSN M (counts to check)
//! PROMOTE       master → slave (switchover): take over; you must hold exactly up to LSN n
//! PROMOTED      slave → master: done (new generation) or refused (why)
//! VERIFY_SUMS   feeder → slave: its checksums at a verify marker
//! VERIFY_NARROW slave → feeder: list the items of these buckets
//! VERIFY_ITEMS  feeder → slave: (id, hash) of the items of those buckets
//! VERIFY_RESULT slave → feeder: the outcome (relayed up a cascading chain)
//! ```

pub use crate::codec::{MsgError, Reader, Writer};
use crate::journal::{DbId, Lsn};
use crate::store::rewind::RewindState;

pub const T_IDENT: u8 = 16;
pub const T_STREAM: u8 = 17;
pub const T_SYNC_BEGIN: u8 = 18;
pub const T_SYNC_CHUNK: u8 = 19;
pub const T_SYNC_END: u8 = 20;
pub const T_RECORDS: u8 = 21;
pub const T_ACK: u8 = 22;
pub const T_HEARTBEAT: u8 = 23;
pub const T_REPAIR_KEYS: u8 = 24;
pub const T_REPAIR_FILE: u8 = 25;
pub const T_REPAIR_ITEMS: u8 = 26;
pub const T_REPAIR_END: u8 = 27;
pub const T_PROMOTE: u8 = 28;
pub const T_PROMOTED: u8 = 29;
/// Online verify (payloads in [`crate::verify::wire`] and [`crate::verify::report`]).
pub const T_VERIFY_SUMS: u8 = 30;
pub const T_VERIFY_NARROW: u8 = 31;
pub const T_VERIFY_ITEMS: u8 = 32;
pub const T_VERIFY_RESULT: u8 = 33;
/// Master → slave, instead of STREAM or SYNC_BEGIN: the slave holds records from LSN F on that
/// this master does not have as it does (it lost records it had shipped before they were
/// durable: a crash of its machine, or, a slave feeding a further one, a rewind of its own);
/// the slave exports and rewinds them, then sends IDENT again.
pub const T_FORK: u8 = 34;

/// A node's role as it says in IDENT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Master,
    Slave,
}

/// One step of a generation history: generation `generation` starts at `first_lsn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenStart {
    pub generation: u64,
    pub first_lsn: Lsn,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ident {
    pub role: Role,
    /// All zeros: no database yet (a new, empty slave).
    pub db_id: DbId,
    pub history: Vec<GenStart>,
    /// A master: its durable LSN. A slave: the last LSN it holds durably.
    pub lsn: Lsn,
    /// A slave: its catalog (file, logged), which is the master's as of `lsn`.
    pub catalog: Vec<(String, bool)>,
    /// Where clients reach this node ("host:port"; an unspecified host means: my link address).
    pub client_addr: String,
    /// A rejoining slave: what its exported divergent suffix touched (to be repaired).
    pub rewind: Option<RewindState>,
    /// Where this node answers as a Sentinel ("" when it does not).
    pub sentinel_addr: String,
    /// A slave: the digests of its last records (`engine::record_digest`), `tail.1[i]` for
    /// LSN `tail.0 + i` (up to `lsn`), for the master to check that they are its own records
    /// (see [`T_FORK`]).
    pub tail: (Lsn, Vec<u64>),
}

/// One item's repair: its value at the master (`None`: absent there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairKey {
    pub file: String,
    pub id: Vec<u8>,
    pub raw: Option<Vec<u8>>,
}

/// A whole file's repair: absent at the master, or present with this logged flag (its items
/// follow in REPAIR_ITEMS when logged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairFile {
    pub file: String,
    pub logged: Option<bool>,
}

/// The repair is complete: its values are those of the master's LSN `upto`; `files` were
/// repaired whole (the slave's own list and those the master added).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairEnd {
    pub upto: Lsn,
    pub files: Vec<String>,
    pub keys: u64,
    pub items: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncBegin {
    pub lsn: Lsn,
    pub db_id: DbId,
    pub history: Vec<GenStart>,
    pub catalog: Vec<(String, bool)>,
    /// How many items the snapshot holds (for progress).
    pub items_total: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncEnd {
    pub items: u64,
    pub chunks: u64,
}

/// A journal record as shipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireRecord {
    pub lsn: Lsn,
    pub generation: u64,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ack {
    pub received: Lsn,
    pub durable: Lsn,
    pub applied: Lsn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub time_ms: u64,
    pub durable: Lsn,
}

fn put_history(w: &mut Writer, h: &[GenStart]) {
    w.u32(h.len() as u32);
    for g in h {
        w.u64(g.generation).u64(g.first_lsn);
    }
}

fn get_history(r: &mut Reader<'_>) -> Result<Vec<GenStart>, MsgError> {
    let n = r.count(16)?;
    let mut h = Vec::with_capacity(n);
    for _ in 0..n {
        h.push(GenStart {
            generation: r.u64()?,
            first_lsn: r.u64()?,
        });
    }
    Ok(h)
}

fn put_catalog(w: &mut Writer, c: &[(String, bool)]) {
    w.u32(c.len() as u32);
    for (name, logged) in c {
        w.bytes(name.as_bytes()).u8(*logged as u8);
    }
}

fn get_catalog(r: &mut Reader<'_>) -> Result<Vec<(String, bool)>, MsgError> {
    let n = r.count(5)?;
    let mut c = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.string()?;
        let logged = match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(r.err("logged flag is not 0 or 1")),
        };
        c.push((name, logged));
    }
    Ok(c)
}

impl Ident {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(match self.role {
            Role::Master => 0,
            Role::Slave => 1,
        })
        .raw(&self.db_id);
        put_history(&mut w, &self.history);
        w.u64(self.lsn);
        put_catalog(&mut w, &self.catalog);
        w.bytes(self.client_addr.as_bytes());
        match &self.rewind {
            None => {
                w.u8(0);
            }
            Some(r) => {
                w.u8(1).bytes(&r.encode());
            }
        }
        w.bytes(self.sentinel_addr.as_bytes());
        w.u64(self.tail.0).u32(self.tail.1.len() as u32);
        for t in &self.tail.1 {
            w.u64(*t);
        }
        w.0
    }

    pub fn decode(b: &[u8]) -> Result<Ident, MsgError> {
        let mut r = Reader::new(b, "IDENT");
        let role = match r.u8()? {
            0 => Role::Master,
            1 => Role::Slave,
            _ => return Err(r.err("unknown role")),
        };
        let db_id = r.db_id()?;
        let history = get_history(&mut r)?;
        let lsn = r.u64()?;
        let catalog = get_catalog(&mut r)?;
        let client_addr = r.string()?;
        let rewind = match r.u8()? {
            0 => None,
            1 => Some(RewindState::decode(r.bytes()?)?),
            _ => return Err(r.err("bad rewind flag")),
        };
        let sentinel_addr = r.string()?;
        // Absent from an older peer's IDENT.
        let tail = if r.is_empty() {
            (0, Vec::new())
        } else {
            let from = r.u64()?;
            let n = r.count(8)?;
            let mut digests = Vec::with_capacity(n);
            for _ in 0..n {
                digests.push(r.u64()?);
            }
            (from, digests)
        };
        r.end()?;
        Ok(Ident {
            role,
            db_id,
            history,
            lsn,
            catalog,
            client_addr,
            rewind,
            sentinel_addr,
            tail,
        })
    }
}

pub fn encode_repair_keys(keys: &[RepairKey]) -> Vec<u8> {
    let mut w = Writer::default();
    w.u32(keys.len() as u32);
    for k in keys {
        w.bytes(k.file.as_bytes()).bytes(&k.id);
        match &k.raw {
            None => {
                w.u8(0);
            }
            Some(raw) => {
                w.u8(1).bytes(raw);
            }
        }
    }
    w.0
}

pub fn decode_repair_keys(b: &[u8]) -> Result<Vec<RepairKey>, MsgError> {
    let mut r = Reader::new(b, "REPAIR_KEYS");
    let n = r.count(9)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let file = r.string()?;
        let id = r.bytes()?.to_vec();
        let raw = match r.u8()? {
            0 => None,
            1 => Some(r.bytes()?.to_vec()),
            _ => return Err(r.err("bad value flag")),
        };
        out.push(RepairKey { file, id, raw });
    }
    r.end()?;
    Ok(out)
}

impl RepairFile {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.bytes(self.file.as_bytes()).u8(match self.logged {
            None => 0,
            Some(false) => 1,
            Some(true) => 2,
        });
        w.0
    }

    pub fn decode(b: &[u8]) -> Result<RepairFile, MsgError> {
        let mut r = Reader::new(b, "REPAIR_FILE");
        let file = r.string()?;
        let logged = match r.u8()? {
            0 => None,
            1 => Some(false),
            2 => Some(true),
            _ => return Err(r.err("bad file state")),
        };
        r.end()?;
        Ok(RepairFile { file, logged })
    }
}

impl RepairEnd {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u64(self.upto).u64(self.keys).u64(self.items);
        w.u32(self.files.len() as u32);
        for f in &self.files {
            w.bytes(f.as_bytes());
        }
        w.0
    }

    pub fn decode(b: &[u8]) -> Result<RepairEnd, MsgError> {
        let mut r = Reader::new(b, "REPAIR_END");
        let upto = r.u64()?;
        let keys = r.u64()?;
        let items = r.u64()?;
        let n = r.count(4)?;
        let mut files = Vec::with_capacity(n);
        for _ in 0..n {
            files.push(r.string()?);
        }
        r.end()?;
        Ok(RepairEnd {
            upto,
            files,
            keys,
            items,
        })
    }
}

/// The slave's answer to PROMOTE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promoted {
    pub ok: bool,
    pub generation: u64,
    pub message: String,
}

impl Promoted {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(self.ok as u8)
            .u64(self.generation)
            .bytes(self.message.as_bytes());
        w.0
    }

    pub fn decode(b: &[u8]) -> Result<Promoted, MsgError> {
        let mut r = Reader::new(b, "PROMOTED");
        let ok = match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(r.err("bad flag")),
        };
        let generation = r.u64()?;
        let message = r.string()?;
        r.end()?;
        Ok(Promoted {
            ok,
            generation,
            message,
        })
    }
}

pub fn encode_fork(fork: Lsn) -> Vec<u8> {
    fork.to_le_bytes().to_vec()
}

pub fn decode_fork(b: &[u8]) -> Result<Lsn, MsgError> {
    let mut r = Reader::new(b, "FORK");
    let fork = r.u64()?;
    r.end()?;
    if fork == 0 {
        return Err(r.err("fork point 0"));
    }
    Ok(fork)
}

pub fn encode_stream(from: Lsn) -> Vec<u8> {
    from.to_le_bytes().to_vec()
}

pub fn decode_stream(b: &[u8]) -> Result<Lsn, MsgError> {
    let mut r = Reader::new(b, "STREAM");
    let from = r.u64()?;
    r.end()?;
    Ok(from)
}

impl SyncBegin {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u64(self.lsn).raw(&self.db_id);
        put_history(&mut w, &self.history);
        put_catalog(&mut w, &self.catalog);
        w.u64(self.items_total);
        w.0
    }

    pub fn decode(b: &[u8]) -> Result<SyncBegin, MsgError> {
        let mut r = Reader::new(b, "SYNC_BEGIN");
        let lsn = r.u64()?;
        let db_id = r.db_id()?;
        let history = get_history(&mut r)?;
        let catalog = get_catalog(&mut r)?;
        let items_total = r.u64()?;
        r.end()?;
        Ok(SyncBegin {
            lsn,
            db_id,
            history,
            catalog,
            items_total,
        })
    }
}

/// Encodes one file's items into a chunk (compressed).
pub fn encode_chunk(file: &str, items: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut c = ChunkWriter::new(file, 0);
    for (id, raw) in items {
        c.push(id, raw);
    }
    c.finish()
}

/// Builds a chunk item by item, straight from a snapshot's borrowed items (a full sync ships
/// millions: no copy of each item is held on the way).
pub struct ChunkWriter {
    w: Writer,
    count_at: usize,
    count: u32,
}

impl ChunkWriter {
    /// A chunk of `file`'s items; `capacity`: bytes of items expected.
    pub fn new(file: &str, capacity: usize) -> ChunkWriter {
        let mut w = Writer(Vec::with_capacity(capacity + file.len() + 64));
        w.bytes(file.as_bytes());
        let count_at = w.0.len();
        w.u32(0);
        ChunkWriter {
            w,
            count_at,
            count: 0,
        }
    }

    pub fn push(&mut self, id: &[u8], raw: &[u8]) {
        self.w.bytes(id).bytes(raw);
        self.count += 1;
    }

    /// Items pushed.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Encoded bytes so far (before compression).
    pub fn encoded_len(&self) -> usize {
        self.w.0.len()
    }

    /// The compressed chunk.
    pub fn finish(mut self) -> Vec<u8> {
        self.w.0[self.count_at..self.count_at + 4].copy_from_slice(&self.count.to_le_bytes());
        lz4_flex::compress_prepend_size(&self.w.0)
    }
}

/// A decoded chunk: the file and its items (id, raw stored item).
pub type Chunk = (String, Vec<(Vec<u8>, Vec<u8>)>);

/// Decodes a chunk; `max` bounds the decompressed size.
pub fn decode_chunk(b: &[u8], max: usize) -> Result<Chunk, MsgError> {
    let (file, items) = decode_chunk_items(b, max)?;
    let items = items
        .iter()
        .map(|(id, raw)| (id.to_vec(), raw.to_vec()))
        .collect();
    Ok((file, items))
}

/// A chunk's items decoded in place: its decompressed bytes and where each item's id and
/// stored value lie in them (no allocation per item: a full sync loads millions).
#[derive(Debug, Default)]
pub struct ChunkItems {
    plain: Vec<u8>,
    /// (id start, id end, value start, value end) in `plain`.
    spans: Vec<[u32; 4]>,
    bytes: usize,
}

impl ChunkItems {
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Bytes of ids and values.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// (id, stored value) of each item, in chunk order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
        self.spans.iter().map(|s| {
            let [a, b, c, d] = s.map(|x| x as usize);
            (&self.plain[a..b], &self.plain[c..d])
        })
    }
}

/// Decodes a chunk without copying its items out; `max` bounds the decompressed size.
pub fn decode_chunk_items(b: &[u8], max: usize) -> Result<(String, ChunkItems), MsgError> {
    let err = |why| MsgError {
        what: "SYNC_CHUNK",
        why,
    };
    if b.len() < 4 {
        return Err(err("truncated"));
    }
    let size = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
    if size > max || size > u32::MAX as usize {
        return Err(err("decompressed size over the frame limit"));
    }
    if size > crate::codec::lz4_max_plain(b.len() - 4) {
        return Err(err("decompressed size larger than the block can hold"));
    }
    let plain = lz4_flex::decompress_size_prepended(b).map_err(|_| err("bad lz4 block"))?;
    let base = plain.as_ptr() as usize;
    let at = |s: &[u8]| -> [u32; 2] {
        let start = s.as_ptr() as usize - base;
        [start as u32, (start + s.len()) as u32]
    };
    let mut r = Reader::new(&plain, "SYNC_CHUNK");
    let file = r.string()?;
    let n = r.count(8)?;
    let mut spans = Vec::with_capacity(n);
    let mut bytes = 0;
    for _ in 0..n {
        let id = r.bytes()?;
        let raw = r.bytes()?;
        bytes += id.len() + raw.len();
        let [a, b] = at(id);
        let [c, d] = at(raw);
        spans.push([a, b, c, d]);
    }
    r.end()?;
    Ok((
        file,
        ChunkItems {
            plain,
            spans,
            bytes,
        },
    ))
}

impl SyncEnd {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u64(self.items).u64(self.chunks);
        w.0
    }
    pub fn decode(b: &[u8]) -> Result<SyncEnd, MsgError> {
        let mut r = Reader::new(b, "SYNC_END");
        let items = r.u64()?;
        let chunks = r.u64()?;
        r.end()?;
        Ok(SyncEnd { items, chunks })
    }
}

/// Appends one record to a RECORDS payload under construction (start with [`records_start`]).
pub fn push_record(w: &mut Writer, lsn: Lsn, generation: u64, payload: &[u8]) {
    w.u64(lsn).u64(generation).bytes(payload);
}

pub fn decode_records(b: &[u8]) -> Result<Vec<WireRecord>, MsgError> {
    let mut r = Reader::new(b, "RECORDS");
    let mut out = Vec::new();
    while !r.is_empty() {
        let lsn = r.u64()?;
        let generation = r.u64()?;
        let payload = r.bytes()?.to_vec();
        out.push(WireRecord {
            lsn,
            generation,
            payload,
        });
    }
    Ok(out)
}

impl Ack {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u64(self.received).u64(self.durable).u64(self.applied);
        w.0
    }
    pub fn decode(b: &[u8]) -> Result<Ack, MsgError> {
        let mut r = Reader::new(b, "ACK");
        let a = Ack {
            received: r.u64()?,
            durable: r.u64()?,
            applied: r.u64()?,
        };
        r.end()?;
        Ok(a)
    }
}

impl Heartbeat {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u64(self.time_ms).u64(self.durable);
        w.0
    }
    pub fn decode(b: &[u8]) -> Result<Heartbeat, MsgError> {
        let mut r = Reader::new(b, "HEARTBEAT");
        let h = Heartbeat {
            time_ms: r.u64()?,
            durable: r.u64()?,
        };
        r.end()?;
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A few bytes claiming a 1 GiB chunk are refused before anything is allocated, while the
    /// best-compressing real chunk (all zeros) is within the bound.
    #[test]
    fn a_chunk_size_its_block_cannot_hold_is_refused() {
        let mut b = (1u32 << 30).to_le_bytes().to_vec();
        b.extend_from_slice(&[0xf0, 0, 0, 0, 0, 0]);
        let e = decode_chunk(&b, 2 << 30).unwrap_err();
        assert_eq!(e.why, "decompressed size larger than the block can hold");
        let zeros = lz4_flex::compress_prepend_size(&vec![0u8; 8 << 20]);
        assert!((8 << 20) <= crate::codec::lz4_max_plain(zeros.len() - 4));
    }

    #[test]
    fn messages_round_trip() {
        let ident = Ident {
            role: Role::Slave,
            db_id: [3; 16],
            history: vec![
                GenStart {
                    generation: 1,
                    first_lsn: 1,
                },
                GenStart {
                    generation: 2,
                    first_lsn: 1041,
                },
            ],
            lsn: 1043,
            catalog: vec![("main".into(), true), ("tmp/x".into(), false)],
            client_addr: "10.0.0.1:7379".into(),
            rewind: None,
            sentinel_addr: "10.0.0.1:27379".into(),
            tail: (
                1041,
                vec![1_700_000_000_001, 1_700_000_000_002, 1_700_000_000_002],
            ),
        };
        let mut with_rewind = ident.clone();
        let mut st = RewindState {
            fork: 1044,
            ..Default::default()
        };
        st.keys.insert(("main".into(), b"k".to_vec()));
        with_rewind.rewind = Some(st);
        assert_eq!(
            Ident::decode(&with_rewind.encode()),
            Ok(with_rewind.clone())
        );
        let keys = vec![
            RepairKey {
                file: "main".into(),
                id: b"a".to_vec(),
                raw: Some(b"sv".to_vec()),
            },
            RepairKey {
                file: "main".into(),
                id: b"b".to_vec(),
                raw: None,
            },
        ];
        assert_eq!(decode_repair_keys(&encode_repair_keys(&keys)), Ok(keys));
        let f = RepairFile {
            file: "tmp".into(),
            logged: Some(true),
        };
        assert_eq!(RepairFile::decode(&f.encode()), Ok(f));
        let e = RepairEnd {
            upto: 99,
            files: vec!["tmp".into()],
            keys: 2,
            items: 5,
        };
        assert_eq!(RepairEnd::decode(&e.encode()), Ok(e));
        let p = Promoted {
            ok: true,
            generation: 3,
            message: "promoted".into(),
        };
        assert_eq!(Promoted::decode(&p.encode()), Ok(p));
        assert!(Promoted::decode(&[2, 0]).is_err());
        assert_eq!(Ident::decode(&ident.encode()), Ok(ident.clone()));
        let b = SyncBegin {
            lsn: 9,
            db_id: [1; 16],
            history: ident.history.clone(),
            catalog: ident.catalog.clone(),
            items_total: 12,
        };
        assert_eq!(SyncBegin::decode(&b.encode()), Ok(b));
        let items = vec![(b"k".to_vec(), b"\0v".to_vec()), (vec![], vec![])];
        assert_eq!(
            decode_chunk(&encode_chunk("main", &items), 1 << 20),
            Ok(("main".to_string(), items))
        );
        let mut w = Writer::default();
        push_record(&mut w, 5, 1, b"abc");
        push_record(&mut w, 6, 1, b"");
        assert_eq!(
            decode_records(&w.0)
                .unwrap()
                .iter()
                .map(|r| r.lsn)
                .collect::<Vec<_>>(),
            vec![5, 6]
        );
        let a = Ack {
            received: 3,
            durable: 2,
            applied: 1,
        };
        assert_eq!(Ack::decode(&a.encode()), Ok(a));
        assert_eq!(decode_stream(&encode_stream(77)), Ok(77));
    }

    #[test]
    fn a_chunk_claiming_a_huge_size_is_refused_before_decompressing() {
        let mut b = encode_chunk("main", &[(b"k".to_vec(), b"v".to_vec())]);
        b[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_chunk(&b, 1 << 20).is_err());
    }

    proptest! {
        #[test]
        fn decoders_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Ident::decode(&b);
            let _ = SyncBegin::decode(&b);
            let _ = decode_chunk(&b, 1 << 16);
            let _ = SyncEnd::decode(&b);
            let _ = decode_records(&b);
            let _ = Ack::decode(&b);
            let _ = Heartbeat::decode(&b);
            let _ = decode_stream(&b);
            let _ = decode_fork(&b);
        }

        /// Items decoded in place are the items encoded, in order.
        #[test]
        fn chunk_items_are_the_items_encoded(
            items in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..40),
                 proptest::collection::vec(any::<u8>(), 0..300)),
                0..50)
        ) {
            let b = encode_chunk("main", &items);
            let (file, got) = decode_chunk_items(&b, 1 << 20).unwrap();
            prop_assert_eq!(file, "main");
            prop_assert_eq!(got.len(), items.len());
            prop_assert_eq!(
                got.bytes(),
                items.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
            );
            let back: Vec<(Vec<u8>, Vec<u8>)> =
                got.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
            prop_assert_eq!(back, items);
        }
    }
}
