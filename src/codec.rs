//! Little-endian field codec shared by the link messages and the small binary records the
//! store keeps (a rewind's state): every read checks its length against the bytes present, so
//! bytes from outside never cause a panic or an allocation larger than they are.

use thiserror::Error;

use crate::journal::DbId;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("malformed {what} message: {why}")]
pub struct MsgError {
    pub what: &'static str,
    pub why: &'static str,
}

/// The most an LZ4 block of `compressed` bytes can decompress to: a match or literal run
/// grows by at most 255 bytes per byte of its length field, so a size field claiming more is a
/// lie, refused before anything that large is allocated.
pub fn lz4_max_plain(compressed: usize) -> usize {
    compressed.saturating_mul(255).saturating_add(64)
}

/// Appends little-endian fields.
#[derive(Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
        self
    }
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
}

/// Reads fields back, checking every length.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { buf, pos: 0, what }
    }
    pub fn err(&self, why: &'static str) -> MsgError {
        MsgError {
            what: self.what,
            why,
        }
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], MsgError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(self.err("truncated"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    pub fn u8(&mut self) -> Result<u8, MsgError> {
        Ok(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> Result<u32, MsgError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn u64(&mut self) -> Result<u64, MsgError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], MsgError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub fn string(&mut self) -> Result<String, MsgError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| self.err("string is not UTF-8"))
    }
    pub fn db_id(&mut self) -> Result<DbId, MsgError> {
        let mut id = [0u8; 16];
        id.copy_from_slice(self.take(16)?);
        Ok(id)
    }
    /// A count of items each at least `min` bytes long, checked against what is left.
    pub fn count(&mut self, min: usize) -> Result<usize, MsgError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min.max(1)) > self.buf.len() - self.pos {
            return Err(self.err("count larger than the message"));
        }
        Ok(n)
    }
    pub fn end(&self) -> Result<(), MsgError> {
        if self.pos != self.buf.len() {
            return Err(self.err("trailing bytes"));
        }
        Ok(())
    }
    pub fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }
}
