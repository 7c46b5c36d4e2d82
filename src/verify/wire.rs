//! Payloads of the verify frames (VERIFY_RESULT is [`super::report::Outcome`]'s own):
//!
//! ```text
//! VERIFY_SUMS    feeder → slave: marker id, LSN, the feeder's name, its sums at that LSN
//! VERIFY_NARROW  slave → feeder: marker id, file, the buckets whose sums differ
//! VERIFY_ITEMS   feeder → slave: marker id, file, (id, hash) of its items in those buckets
//! ```
//! Every decoder checks every length against the bytes present.

use super::sums::{self, Sums};
use crate::codec::{MsgError, Reader, Writer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SumsMsg {
    pub id: u64,
    pub lsn: u64,
    pub from: String,
    pub sums: Sums,
}

impl SumsMsg {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u64(self.id).u64(self.lsn).bytes(self.from.as_bytes());
        sums::put_sums(&mut w, &self.sums);
        w.0
    }
    pub fn decode(b: &[u8]) -> Result<SumsMsg, MsgError> {
        let mut r = Reader::new(b, "VERIFY_SUMS");
        let m = SumsMsg {
            id: r.u64()?,
            lsn: r.u64()?,
            from: r.string()?,
            sums: sums::get_sums(&mut r)?,
        };
        r.end()?;
        Ok(m)
    }
}

fn put_buckets(w: &mut Writer, buckets: &[u16]) {
    w.u32(buckets.len() as u32);
    for b in buckets {
        w.u32(u32::from(*b));
    }
}

/// A list of bucket numbers, each checked against [`sums::BUCKETS`].
fn get_buckets(r: &mut Reader<'_>) -> Result<Vec<u16>, MsgError> {
    let n = r.count(4)?;
    if n > sums::BUCKETS {
        return Err(r.err("more buckets than there are"));
    }
    let mut buckets = Vec::with_capacity(n);
    for _ in 0..n {
        let v = r.u32()?;
        if v as usize >= sums::BUCKETS {
            return Err(r.err("bucket out of range"));
        }
        buckets.push(v as u16);
    }
    Ok(buckets)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NarrowMsg {
    pub id: u64,
    pub file: String,
    pub buckets: Vec<u16>,
}

impl NarrowMsg {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u64(self.id).bytes(self.file.as_bytes());
        put_buckets(&mut w, &self.buckets);
        w.0
    }
    pub fn decode(b: &[u8]) -> Result<NarrowMsg, MsgError> {
        let mut r = Reader::new(b, "VERIFY_NARROW");
        let id = r.u64()?;
        let file = r.string()?;
        let buckets = get_buckets(&mut r)?;
        r.end()?;
        Ok(NarrowMsg { id, file, buckets })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemsMsg {
    pub id: u64,
    pub file: String,
    pub buckets: Vec<u16>,
    /// The feeder's (id, hash) list, or why it could not make one.
    pub items: Result<Vec<(Vec<u8>, u128)>, String>,
}

impl ItemsMsg {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u64(self.id).bytes(self.file.as_bytes());
        put_buckets(&mut w, &self.buckets);
        match &self.items {
            Ok(items) => {
                w.u8(0);
                sums::put_item_hashes(&mut w, items);
            }
            Err(e) => {
                w.u8(1).bytes(e.as_bytes());
            }
        }
        w.0
    }
    pub fn decode(b: &[u8]) -> Result<ItemsMsg, MsgError> {
        let mut r = Reader::new(b, "VERIFY_ITEMS");
        let id = r.u64()?;
        let file = r.string()?;
        let buckets = get_buckets(&mut r)?;
        let items = match r.u8()? {
            0 => Ok(sums::get_item_hashes(&mut r)?),
            1 => Err(r.string()?),
            _ => return Err(r.err("bad flag")),
        };
        r.end()?;
        Ok(ItemsMsg {
            id,
            file,
            buckets,
            items,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_messages_round_trip_and_reject_bad_bytes() {
        let mut s = Sums::new();
        let mut f = sums::FileSum::default();
        f.add(b"k", b"v");
        s.insert("main".into(), f);
        let m = SumsMsg {
            id: 3,
            lsn: 99,
            from: "a".into(),
            sums: s,
        };
        assert_eq!(SumsMsg::decode(&m.encode()).unwrap(), m);
        let n = NarrowMsg {
            id: 3,
            file: "main".into(),
            buckets: vec![0, 17, 255],
        };
        assert_eq!(NarrowMsg::decode(&n.encode()).unwrap(), n);
        let mut bad = n.encode();
        let len = bad.len();
        bad[len - 4..].copy_from_slice(&256u32.to_le_bytes());
        assert!(NarrowMsg::decode(&bad).is_err(), "bucket 256 is refused");
        let i = ItemsMsg {
            id: 3,
            file: "main".into(),
            buckets: vec![17],
            items: Ok(vec![(b"k".to_vec(), 5)]),
        };
        assert_eq!(ItemsMsg::decode(&i.encode()).unwrap(), i);
        let e = ItemsMsg {
            items: Err("no snapshot".into()),
            ..i
        };
        assert_eq!(ItemsMsg::decode(&e.encode()).unwrap(), e);
        for m in [m.encode(), n.encode(), e.encode()] {
            assert!(SumsMsg::decode(&m[..m.len() - 1]).is_err());
        }
    }
}
