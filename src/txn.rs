//! Transactions: the logical operations a journal record carries.
//!
//! One client command (or one MULTI…EXEC) becomes one [`Transaction`]: a wall-clock time and a list
//! of [`Op`]s, applied as a whole. This module owns the payload encoding (versioned) inside a
//! journal record; the journal itself only frames payloads, the store applies ops. Ops record
//! *results* where the result depends on prior state (INCR journals the new value), so applying a
//! record is deterministic. Decoding never panics: payloads come from disk and, later, from peers.

use thiserror::Error;

/// Version byte at the start of every payload.
pub const PAYLOAD_VERSION: u8 = 1;

/// A value of an item: a string, or a hash (fields sorted by name, no duplicates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(Vec<u8>),
    Hash(Vec<(Vec<u8>, Vec<u8>)>),
}

/// One logical operation on the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create a file with its logged flag (always journaled before the first write to a new file).
    CreateFile { file: String, logged: bool },
    /// Change a file's logged flag (the `set-dptr` of this system).
    SetLogged { file: String, logged: bool },
    /// Remove a file and all its items.
    DropFile { file: String },
    /// Remove all items of a file, keeping the file (FLUSHDB).
    ClearFile { file: String },
    /// Store a whole value under an id, replacing what was there.
    Put {
        file: String,
        id: Vec<u8>,
        value: Value,
    },
    /// Delete an item (no-op if absent).
    Delete { file: String, id: Vec<u8> },
    /// Append bytes to a string item (created empty if absent).
    Append {
        file: String,
        id: Vec<u8>,
        data: Vec<u8>,
    },
    /// Set fields of a hash item (created if absent).
    HashSet {
        file: String,
        id: Vec<u8>,
        fields: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// Delete fields of a hash item; the item goes when its last field goes.
    HashDel {
        file: String,
        id: Vec<u8>,
        fields: Vec<Vec<u8>>,
    },
    /// A promotion: generation `generation` starts at this record (LSN `first_lsn`), made by
    /// node `node` (named `name`) at `time_ms`. Touches no file.
    NewGeneration {
        generation: u64,
        first_lsn: u64,
        node: Vec<u8>,
        name: String,
        time_ms: u64,
    },
}

impl Op {
    /// The file this op touches ("" for an op that touches none).
    pub fn file(&self) -> &str {
        match self {
            Op::NewGeneration { .. } => "",
            Op::CreateFile { file, .. }
            | Op::SetLogged { file, .. }
            | Op::DropFile { file }
            | Op::ClearFile { file }
            | Op::Put { file, .. }
            | Op::Delete { file, .. }
            | Op::Append { file, .. }
            | Op::HashSet { file, .. }
            | Op::HashDel { file, .. } => file,
        }
    }
}

/// Wall-clock time in milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The payload of one journal record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// Wall-clock time of the commit, milliseconds since the Unix epoch.
    pub time_ms: u64,
    pub ops: Vec<Op>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("payload truncated at byte {0}")]
    Truncated(usize),
    #[error("unknown payload version {0}")]
    Version(u8),
    #[error("unknown op tag {tag} at byte {at}")]
    Tag { tag: u8, at: usize },
    #[error("file name is not UTF-8 at byte {0}")]
    FileName(usize),
    #[error("{0} trailing bytes after the last op")]
    Trailing(usize),
}

mod tag {
    pub const CREATE_FILE: u8 = 1;
    pub const SET_LOGGED: u8 = 2;
    pub const DROP_FILE: u8 = 3;
    pub const CLEAR_FILE: u8 = 4;
    pub const PUT: u8 = 10;
    pub const DELETE: u8 = 11;
    pub const APPEND: u8 = 12;
    pub const HASH_SET: u8 = 13;
    pub const HASH_DEL: u8 = 14;
    pub const NEW_GENERATION: u8 = 20;
    pub const VALUE_STR: u8 = 0;
    pub const VALUE_HASH: u8 = 1;
}

impl Transaction {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.ops.len() * 32);
        self.encode_into(&mut out);
        out
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(PAYLOAD_VERSION);
        out.extend_from_slice(&self.time_ms.to_le_bytes());
        put_u32(out, self.ops.len());
        for op in &self.ops {
            encode_op(op, out);
        }
    }

    /// The commit time of an encoded transaction, without decoding its ops (None: not a
    /// transaction of this format).
    pub fn stamp(buf: &[u8]) -> Option<u64> {
        if buf.first() != Some(&PAYLOAD_VERSION) {
            return None;
        }
        let b: [u8; 8] = buf.get(1..9)?.try_into().ok()?;
        Some(u64::from_le_bytes(b))
    }

    pub fn decode(buf: &[u8]) -> Result<Transaction, DecodeError> {
        let mut r = Reader { buf, pos: 0 };
        let version = r.u8()?;
        if version != PAYLOAD_VERSION {
            return Err(DecodeError::Version(version));
        }
        let time_ms = r.u64()?;
        let count = r.u32()? as usize;
        // Each op takes at least 5 bytes; never reserve more than the buffer could hold.
        let mut ops = Vec::with_capacity(count.min(buf.len() / 5));
        for _ in 0..count {
            ops.push(decode_op(&mut r)?);
        }
        if r.pos != buf.len() {
            return Err(DecodeError::Trailing(buf.len() - r.pos));
        }
        Ok(Transaction { time_ms, ops })
    }
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(out, b.len());
    out.extend_from_slice(b);
}

fn encode_op(op: &Op, out: &mut Vec<u8>) {
    match op {
        Op::CreateFile { file, logged } => {
            out.push(tag::CREATE_FILE);
            put_bytes(out, file.as_bytes());
            out.push(*logged as u8);
        }
        Op::SetLogged { file, logged } => {
            out.push(tag::SET_LOGGED);
            put_bytes(out, file.as_bytes());
            out.push(*logged as u8);
        }
        Op::DropFile { file } => {
            out.push(tag::DROP_FILE);
            put_bytes(out, file.as_bytes());
        }
        Op::ClearFile { file } => {
            out.push(tag::CLEAR_FILE);
            put_bytes(out, file.as_bytes());
        }
        Op::Put { file, id, value } => {
            out.push(tag::PUT);
            put_bytes(out, file.as_bytes());
            put_bytes(out, id);
            match value {
                Value::Str(s) => {
                    out.push(tag::VALUE_STR);
                    put_bytes(out, s);
                }
                Value::Hash(fields) => {
                    out.push(tag::VALUE_HASH);
                    put_pairs(out, fields);
                }
            }
        }
        Op::Delete { file, id } => {
            out.push(tag::DELETE);
            put_bytes(out, file.as_bytes());
            put_bytes(out, id);
        }
        Op::Append { file, id, data } => {
            out.push(tag::APPEND);
            put_bytes(out, file.as_bytes());
            put_bytes(out, id);
            put_bytes(out, data);
        }
        Op::HashSet { file, id, fields } => {
            out.push(tag::HASH_SET);
            put_bytes(out, file.as_bytes());
            put_bytes(out, id);
            put_pairs(out, fields);
        }
        Op::HashDel { file, id, fields } => {
            out.push(tag::HASH_DEL);
            put_bytes(out, file.as_bytes());
            put_bytes(out, id);
            put_u32(out, fields.len());
            for f in fields {
                put_bytes(out, f);
            }
        }
        Op::NewGeneration {
            generation,
            first_lsn,
            node,
            name,
            time_ms,
        } => {
            out.push(tag::NEW_GENERATION);
            out.extend_from_slice(&generation.to_le_bytes());
            out.extend_from_slice(&first_lsn.to_le_bytes());
            put_bytes(out, node);
            put_bytes(out, name.as_bytes());
            out.extend_from_slice(&time_ms.to_le_bytes());
        }
    }
}

fn put_pairs(out: &mut Vec<u8>, pairs: &[(Vec<u8>, Vec<u8>)]) {
    put_u32(out, pairs.len());
    for (f, v) in pairs {
        put_bytes(out, f);
        put_bytes(out, v);
    }
}

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(DecodeError::Truncated(self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn file(&mut self) -> Result<String, DecodeError> {
        let at = self.pos;
        String::from_utf8(self.bytes()?).map_err(|_| DecodeError::FileName(at))
    }
    fn flag(&mut self) -> Result<bool, DecodeError> {
        let at = self.pos;
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            t => Err(DecodeError::Tag { tag: t, at }),
        }
    }
    fn count(&mut self, min_item: usize) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item) > self.buf.len() - self.pos {
            return Err(DecodeError::Truncated(self.pos));
        }
        Ok(n)
    }
    fn pairs(&mut self) -> Result<Pairs, DecodeError> {
        let n = self.count(8)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let f = self.bytes()?;
            let x = self.bytes()?;
            v.push((f, x));
        }
        Ok(v)
    }
}

fn decode_op(r: &mut Reader<'_>) -> Result<Op, DecodeError> {
    let at = r.pos;
    let t = r.u8()?;
    Ok(match t {
        tag::CREATE_FILE => Op::CreateFile {
            file: r.file()?,
            logged: r.flag()?,
        },
        tag::SET_LOGGED => Op::SetLogged {
            file: r.file()?,
            logged: r.flag()?,
        },
        tag::DROP_FILE => Op::DropFile { file: r.file()? },
        tag::CLEAR_FILE => Op::ClearFile { file: r.file()? },
        tag::PUT => {
            let file = r.file()?;
            let id = r.bytes()?;
            let vat = r.pos;
            let value = match r.u8()? {
                tag::VALUE_STR => Value::Str(r.bytes()?),
                tag::VALUE_HASH => Value::Hash(r.pairs()?),
                t => return Err(DecodeError::Tag { tag: t, at: vat }),
            };
            Op::Put { file, id, value }
        }
        tag::DELETE => Op::Delete {
            file: r.file()?,
            id: r.bytes()?,
        },
        tag::APPEND => Op::Append {
            file: r.file()?,
            id: r.bytes()?,
            data: r.bytes()?,
        },
        tag::HASH_SET => Op::HashSet {
            file: r.file()?,
            id: r.bytes()?,
            fields: r.pairs()?,
        },
        tag::HASH_DEL => {
            let file = r.file()?;
            let id = r.bytes()?;
            let n = r.count(4)?;
            let mut fields = Vec::with_capacity(n);
            for _ in 0..n {
                fields.push(r.bytes()?);
            }
            Op::HashDel { file, id, fields }
        }
        tag::NEW_GENERATION => Op::NewGeneration {
            generation: r.u64()?,
            first_lsn: r.u64()?,
            node: r.bytes()?,
            name: r.file()?,
            time_ms: r.u64()?,
        },
        t => return Err(DecodeError::Tag { tag: t, at }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..24)
    }
    fn file() -> impl Strategy<Value = String> {
        "[a-z]{1,8}(/[a-z0-9]{1,8})?"
    }
    fn pairs() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
        proptest::collection::vec((bytes(), bytes()), 0..4)
    }
    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (file(), any::<bool>()).prop_map(|(file, logged)| Op::CreateFile { file, logged }),
            (file(), any::<bool>()).prop_map(|(file, logged)| Op::SetLogged { file, logged }),
            file().prop_map(|file| Op::DropFile { file }),
            file().prop_map(|file| Op::ClearFile { file }),
            (file(), bytes(), bytes()).prop_map(|(file, id, v)| Op::Put {
                file,
                id,
                value: Value::Str(v)
            }),
            (file(), bytes(), pairs()).prop_map(|(file, id, h)| Op::Put {
                file,
                id,
                value: Value::Hash(h)
            }),
            (file(), bytes()).prop_map(|(file, id)| Op::Delete { file, id }),
            (file(), bytes(), bytes()).prop_map(|(file, id, data)| Op::Append { file, id, data }),
            (file(), bytes(), pairs()).prop_map(|(file, id, fields)| Op::HashSet {
                file,
                id,
                fields
            }),
            (file(), bytes(), proptest::collection::vec(bytes(), 0..4))
                .prop_map(|(file, id, fields)| Op::HashDel { file, id, fields }),
            (any::<u64>(), any::<u64>(), bytes(), file(), any::<u64>()).prop_map(
                |(generation, first_lsn, node, name, time_ms)| Op::NewGeneration {
                    generation,
                    first_lsn,
                    node,
                    name,
                    time_ms
                }
            ),
        ]
    }

    proptest! {
        #[test]
        fn transaction_round_trips(time_ms in any::<u64>(), ops in proptest::collection::vec(op(), 0..6)) {
            let t = Transaction { time_ms, ops };
            prop_assert_eq!(Transaction::decode(&t.encode()), Ok(t));
        }

        #[test]
        fn decode_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Transaction::decode(&buf);
        }

        #[test]
        fn every_truncation_is_an_error(ops in proptest::collection::vec(op(), 1..4)) {
            let enc = Transaction { time_ms: 7, ops }.encode();
            for cut in 0..enc.len() {
                prop_assert!(Transaction::decode(&enc[..cut]).is_err());
            }
        }
    }

    #[test]
    fn huge_counts_do_not_allocate() {
        let mut buf = vec![PAYLOAD_VERSION];
        buf.extend_from_slice(&0u64.to_le_bytes());
        buf.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Transaction::decode(&buf), Err(DecodeError::Truncated(13)));
    }
}
