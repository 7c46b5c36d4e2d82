//! The on-disk journal format: segment file names, the segment header, the record frame.
//!
//! This file alone knows these layouts; the rest of the journal never spells a file name or an
//! offset. All integers are little-endian.
//!
//! Segment file `NNNNNNNNNNNNNNNNNNNN.hbj` (20-digit first LSN), starting with a header:
//! ```text
//!  0  magic "HOTBKJNL"      8
//!  8  version u32 (=1)      4
//! 12  header length u32     4   (=48)
//! 16  first LSN u64         8
//! 24  database id          16
//! 40  CRC32C of bytes 0..40 4
//! 44  reserved (0)          4
//! ```
//! then records, back to back:
//! ```text
//!  0  length word u32       4   payload length; bit 31 set on the last record of a group commit
//!  4  CRC32C u32            4   over bytes 0..4 and 8..end
//!  8  LSN u64               8
//! 16  generation u64        8
//! 24  payload               length
//!     group's first LSN u64 8   only on the last record of a group commit
//! ```
//! then, in the current segment, zeros: space allocated ahead so that a group commit's
//! fdatasync flushes data only, not the file size. A record header is never all zeros (LSNs
//! start at 1), so the first all-zero header marks the end of the records.
//!
//! The commit bit and the group's first LSN make group commits visible on disk: a commit is
//! durable as a whole or not at all, so recovery drops an incomplete last group (never
//! acknowledged, its pages maybe written out of order) and treats damage followed by a record of
//! a later group as corruption.

use std::path::{Path, PathBuf};

pub const MAGIC: &[u8; 8] = b"HOTBKJNL";
pub const VERSION: u32 = 1;
pub const HEADER_LEN: usize = 48;
pub const RECORD_HEADER_LEN: usize = 24;
/// Largest payload a record may carry (1 GiB): larger lengths are corruption.
pub const MAX_PAYLOAD: usize = 1 << 30;
/// Bit of the length word marking the last record of a group commit.
pub const COMMIT_FLAG: u32 = 1 << 31;
pub const SEGMENT_EXT: &str = "hbj";

pub type Lsn = u64;
pub type DbId = [u8; 16];

/// File name of the segment whose first record has LSN `first`.
pub fn segment_name(first: Lsn) -> String {
    format!("{first:020}.{SEGMENT_EXT}")
}

pub fn segment_path(dir: &Path, first: Lsn) -> PathBuf {
    dir.join(segment_name(first))
}

/// The first LSN a segment file name announces, or None if it is not a segment name.
pub fn parse_segment_name(name: &str) -> Option<Lsn> {
    let stem = name.strip_suffix(SEGMENT_EXT)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub first_lsn: Lsn,
    pub db_id: DbId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    Short(usize),
    Magic,
    Version(u32),
    Length(u32),
    Crc,
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Short(n) => write!(f, "header truncated ({n} of {HEADER_LEN} bytes)"),
            HeaderError::Magic => write!(f, "not a hotbackup journal segment (bad magic)"),
            HeaderError::Version(v) => write!(f, "unsupported journal format version {v}"),
            HeaderError::Length(n) => write!(f, "bad header length {n}"),
            HeaderError::Crc => write!(f, "header checksum mismatch"),
        }
    }
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..8].copy_from_slice(MAGIC);
        h[8..12].copy_from_slice(&VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        h[16..24].copy_from_slice(&self.first_lsn.to_le_bytes());
        h[24..40].copy_from_slice(&self.db_id);
        let crc = crc32c::crc32c(&h[0..40]);
        h[40..44].copy_from_slice(&crc.to_le_bytes());
        h
    }

    pub fn decode(buf: &[u8]) -> Result<SegmentHeader, HeaderError> {
        if buf.len() < HEADER_LEN {
            return Err(HeaderError::Short(buf.len()));
        }
        if &buf[0..8] != MAGIC {
            return Err(HeaderError::Magic);
        }
        let version = u32_at(buf, 8);
        if version != VERSION {
            return Err(HeaderError::Version(version));
        }
        let len = u32_at(buf, 12);
        if len as usize != HEADER_LEN {
            return Err(HeaderError::Length(len));
        }
        if u32_at(buf, 40) != crc32c::crc32c(&buf[0..40]) {
            return Err(HeaderError::Crc);
        }
        let mut db_id = [0u8; 16];
        db_id.copy_from_slice(&buf[24..40]);
        Ok(SegmentHeader {
            first_lsn: u64_at(buf, 16),
            db_id,
        })
    }
}

/// One decoded record, borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub lsn: Lsn,
    pub generation: u64,
    pub payload: &'a [u8],
    /// On the last record of a group commit: the LSN of the group's first record.
    pub group_first: Option<Lsn>,
}

/// Why bytes at some offset are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// Fewer bytes than the header or than the length announces.
    Incomplete { have: usize, need: usize },
    /// Length field over [`MAX_PAYLOAD`].
    Length(u32),
    /// Checksum mismatch.
    Crc,
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::Incomplete { have, need } => {
                write!(f, "record incomplete ({have} of {need} bytes)")
            }
            RecordError::Length(n) => write!(f, "record length {n} exceeds the maximum"),
            RecordError::Crc => write!(f, "record checksum mismatch"),
        }
    }
}

fn record_crc(len: &[u8], rest: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(len), rest)
}

/// Appends one framed record to `out` (without the commit flag).
pub fn encode_record(out: &mut Vec<u8>, lsn: Lsn, generation: u64, payload: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = record_crc(&out[start..start + 4], &out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Makes the framed record that starts at `start` and ends `buf` the last of a group commit
/// whose first record has LSN `group_first`: sets the flag, appends the trailer, fixes the CRC.
pub fn mark_commit(buf: &mut Vec<u8>, start: usize, group_first: Lsn) {
    buf.extend_from_slice(&group_first.to_le_bytes());
    let rec = &mut buf[start..];
    let word = u32_at(rec, 0) | COMMIT_FLAG;
    rec[0..4].copy_from_slice(&word.to_le_bytes());
    let crc = record_crc(&rec[0..4], &rec[8..]);
    rec[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// Bytes a commit record has beyond header and payload.
pub const COMMIT_TRAILER_LEN: usize = 8;

/// Whether a record header is all zeros: the end of the records in a preallocated segment.
pub fn is_zero_header(b: &[u8]) -> bool {
    b.len() >= RECORD_HEADER_LEN && b[..RECORD_HEADER_LEN].iter().all(|&x| x == 0)
}

/// Framed size of a record with this payload length.
pub fn record_len(payload_len: usize) -> usize {
    RECORD_HEADER_LEN + payload_len
}

/// Decodes the record at the start of `buf`; returns it and its framed length.
pub fn decode_record(buf: &[u8]) -> Result<(RecordRef<'_>, usize), RecordError> {
    if buf.len() < RECORD_HEADER_LEN {
        return Err(RecordError::Incomplete {
            have: buf.len(),
            need: RECORD_HEADER_LEN,
        });
    }
    let word = u32_at(buf, 0);
    let len = word & !COMMIT_FLAG;
    if len as usize > MAX_PAYLOAD {
        return Err(RecordError::Length(len));
    }
    let commit = word & COMMIT_FLAG != 0;
    let payload_end = RECORD_HEADER_LEN + len as usize;
    let total = payload_end + if commit { COMMIT_TRAILER_LEN } else { 0 };
    if buf.len() < total {
        return Err(RecordError::Incomplete {
            have: buf.len(),
            need: total,
        });
    }
    if u32_at(buf, 4) != record_crc(&buf[0..4], &buf[8..total]) {
        return Err(RecordError::Crc);
    }
    Ok((
        RecordRef {
            lsn: u64_at(buf, 8),
            generation: u64_at(buf, 16),
            payload: &buf[RECORD_HEADER_LEN..payload_end],
            group_first: commit.then(|| u64_at(buf, payload_end)),
        },
        total,
    ))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn segment_names_round_trip() {
        assert_eq!(segment_name(42), "00000000000000000042.hbj");
        assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_segment_name("42.hbj"), None);
        assert_eq!(parse_segment_name("0000000000000000004x.hbj"), None);
        assert_eq!(parse_segment_name("00000000000000000042.tmp"), None);
    }

    #[test]
    fn header_round_trips_and_detects_damage() {
        let h = SegmentHeader {
            first_lsn: 1234,
            db_id: [7; 16],
        };
        let enc = h.encode();
        assert_eq!(SegmentHeader::decode(&enc), Ok(h));
        for i in 0..44 {
            let mut bad = enc;
            bad[i] ^= 0x40;
            assert!(SegmentHeader::decode(&bad).is_err(), "byte {i}");
        }
        assert_eq!(
            SegmentHeader::decode(&enc[..10]),
            Err(HeaderError::Short(10))
        );
    }

    proptest! {
        #[test]
        fn record_round_trips(lsn in any::<u64>(), generation in any::<u64>(),
                              payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut buf = Vec::new();
            encode_record(&mut buf, lsn, generation, &payload);
            prop_assert_eq!(buf.len(), record_len(payload.len()));
            let (r, n) = decode_record(&buf).unwrap();
            prop_assert_eq!(n, buf.len());
            prop_assert_eq!(r, RecordRef { lsn, generation, payload: &payload, group_first: None });
            mark_commit(&mut buf, 0, 7);
            let (r, n) = decode_record(&buf).unwrap();
            prop_assert_eq!(n, buf.len());
            prop_assert_eq!(r.group_first, Some(7));
            prop_assert_eq!(r.payload, &payload[..]);
        }

        #[test]
        fn any_single_byte_corruption_is_detected(
            payload in proptest::collection::vec(any::<u8>(), 0..100),
            pos in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let mut buf = Vec::new();
            encode_record(&mut buf, 99, 3, &payload);
            if flip % 2 == 0 {
                mark_commit(&mut buf, 0, 42);
            }
            let i = pos.index(buf.len());
            buf[i] ^= flip;
            prop_assert!(decode_record(&buf).is_err(), "corrupting byte {} went unnoticed", i);
        }

        #[test]
        fn every_truncation_is_incomplete(payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut buf = Vec::new();
            encode_record(&mut buf, 1, 1, &payload);
            for cut in 0..buf.len() {
                let is_incomplete = matches!(decode_record(&buf[..cut]), Err(RecordError::Incomplete { .. }));
                prop_assert!(is_incomplete);
            }
        }
    }
}
