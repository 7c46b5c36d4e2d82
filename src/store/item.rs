//! Items as the store keeps them: a type tag then the value.
//!
//! ```text
//! string: 0x00 bytes...
//! hash:   0x01 count u32, then per field: len u32, field, len u32, value   (sorted by field)
//! ```
//! A hash is kept as one redb value (one item with attributes, like a D3 item), so a hash
//! update rewrites the item. Decoding checks every length: a damaged value is an error, not a
//! panic.

use crate::txn::Value;

const TAG_STR: u8 = 0;
const TAG_HASH: u8 = 1;

/// The type of an item, as TYPE reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Hash,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Str => "string",
            Kind::Hash => "hash",
        }
    }
}

/// A stored value whose bytes do not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadItem;

pub fn encode(value: &Value) -> Vec<u8> {
    match value {
        Value::Str(s) => encode_str(s),
        Value::Hash(fields) => encode_hash(fields.iter().map(|(f, v)| (&f[..], &v[..]))),
    }
}

pub fn encode_str(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + s.len());
    out.push(TAG_STR);
    out.extend_from_slice(s);
    out
}

/// Encodes fields that are already sorted and unique.
pub fn encode_hash<'a>(fields: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])>) -> Vec<u8> {
    let mut out = vec![TAG_HASH];
    out.extend_from_slice(&(fields.len() as u32).to_le_bytes());
    for (f, v) in fields {
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v);
    }
    out
}

pub fn kind(raw: &[u8]) -> Result<Kind, BadItem> {
    match raw.first() {
        Some(&TAG_STR) => Ok(Kind::Str),
        Some(&TAG_HASH) => Ok(Kind::Hash),
        _ => Err(BadItem),
    }
}

/// The string bytes of a raw string item.
pub fn as_str(raw: &[u8]) -> Option<&[u8]> {
    match raw.split_first() {
        Some((&TAG_STR, rest)) => Some(rest),
        _ => None,
    }
}

/// The fields of a raw hash item, in order.
/// Borrowed fields of a hash item, sorted by name.
pub type Fields<'a> = Vec<(&'a [u8], &'a [u8])>;

pub fn hash_fields(raw: &[u8]) -> Result<Fields<'_>, BadItem> {
    let Some((&TAG_HASH, mut rest)) = raw.split_first() else {
        return Err(BadItem);
    };
    let n = take_u32(&mut rest)? as usize;
    if n.saturating_mul(8) > rest.len() {
        return Err(BadItem);
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let f = take_bytes(&mut rest)?;
        let v = take_bytes(&mut rest)?;
        out.push((f, v));
    }
    if !rest.is_empty() {
        return Err(BadItem);
    }
    Ok(out)
}

/// Decodes any raw item into a [`Value`].
pub fn decode(raw: &[u8]) -> Result<Value, BadItem> {
    match kind(raw)? {
        Kind::Str => Ok(Value::Str(raw[1..].to_vec())),
        Kind::Hash => Ok(Value::Hash(
            hash_fields(raw)?
                .into_iter()
                .map(|(f, v)| (f.to_vec(), v.to_vec()))
                .collect(),
        )),
    }
}

fn take_u32(rest: &mut &[u8]) -> Result<u32, BadItem> {
    if rest.len() < 4 {
        return Err(BadItem);
    }
    let (a, b) = rest.split_at(4);
    *rest = b;
    Ok(u32::from_le_bytes([a[0], a[1], a[2], a[3]]))
}

fn take_bytes<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], BadItem> {
    let n = take_u32(rest)? as usize;
    if rest.len() < n {
        return Err(BadItem);
    }
    let (a, b) = rest.split_at(n);
    *rest = b;
    Ok(a)
}

/// Merges `set` into sorted `fields` (later duplicates in `set` win); returns how many
/// fields were new.
pub fn merge_fields(fields: &mut Vec<(Vec<u8>, Vec<u8>)>, set: &[(Vec<u8>, Vec<u8>)]) -> usize {
    let mut added = 0;
    for (f, v) in set {
        match fields.binary_search_by(|(x, _)| x.as_slice().cmp(f)) {
            Ok(i) => fields[i].1 = v.clone(),
            Err(i) => {
                fields.insert(i, (f.clone(), v.clone()));
                added += 1;
            }
        }
    }
    added
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for v in [
            Value::Str(b"hello".to_vec()),
            Value::Str(vec![]),
            Value::Hash(vec![]),
            Value::Hash(vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"b".to_vec(), vec![]),
            ]),
        ] {
            assert_eq!(decode(&encode(&v)), Ok(v));
        }
    }

    #[test]
    fn damaged_hash_is_an_error() {
        let raw = encode(&Value::Hash(vec![(b"field".to_vec(), b"value".to_vec())]));
        for cut in 1..raw.len() {
            assert_eq!(hash_fields(&raw[..cut]), Err(BadItem), "cut {cut}");
        }
        assert_eq!(kind(&[]), Err(BadItem));
        assert_eq!(kind(&[7]), Err(BadItem));
    }

    #[test]
    fn merge_keeps_order_and_counts_new_fields() {
        let mut f = vec![(b"b".to_vec(), b"1".to_vec())];
        let n = merge_fields(
            &mut f,
            &[
                (b"c".to_vec(), b"2".to_vec()),
                (b"a".to_vec(), b"3".to_vec()),
                (b"b".to_vec(), b"4".to_vec()),
            ],
        );
        assert_eq!(n, 2);
        let names: Vec<_> = f.iter().map(|(k, v)| (k[0], v[0])).collect();
        assert_eq!(names, vec![(b'a', b'3'), (b'b', b'4'), (b'c', b'2')]);
    }
}
