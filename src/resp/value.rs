//! Replies read back by a client (our CLI talking to the daemon): every RESP2 and RESP3 type.
//!
//! One grammar, walked twice: first with a sink that builds nothing (no allocation, no copy) to
//! learn whether the whole reply is present, then with a sink that builds the [`Value`]. Since
//! both passes run the same code they cannot disagree about where a reply ends.
//!
//! Hostile input is bounded: nesting depth ([`MAX_DEPTH`]), aggregate counts
//! ([`Limits::max_args`]), bulk lengths ([`Limits::max_bulk_len`]) and line lengths
//! ([`Limits::max_inline_len`]) are checked before anything is allocated, and vectors are only
//! sized by elements actually present in the buffer.
//!
//! Accepted beyond what Redis sends: RESP3 attributes (`|`, parsed and dropped), streamed
//! strings (`$?` + `;len` chunks) and streamed aggregates (`*?`, `~?`, `%?`, `>?` ended by `.`).

use super::parse::{INVALID_BULK, Limits, ParseError, protocol};

/// Deepest nesting of aggregates (attributes included) accepted in one reply.
pub const MAX_DEPTH: usize = 128;

const TOO_DEEP: &str = "Protocol error: nesting too deep";
const LINE_TOO_LONG: &str = "Protocol error: line too long";
const BAD_LINE_END: &str = "Protocol error: expected CRLF";
const INVALID_AGGREGATE: &str = "Protocol error: invalid aggregate length";
const INVALID_INTEGER: &str = "Protocol error: invalid integer";
const INVALID_DOUBLE: &str = "Protocol error: invalid double";
const INVALID_BOOLEAN: &str = "Protocol error: invalid boolean";
const INVALID_NULL: &str = "Protocol error: invalid null";
const INVALID_BIG_NUMBER: &str = "Protocol error: invalid big number";
const INVALID_VERBATIM: &str = "Protocol error: invalid verbatim string";
const INVALID_STREAM: &str = "Protocol error: invalid streamed string chunk";

/// One RESP2/RESP3 reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `+OK`. Not UTF-8 bytes are replaced (U+FFFD); simple strings are ASCII in practice.
    Simple(String),
    /// `-ERR msg` (the text after `-`, code included) or a RESP3 blob error `!len`.
    Error(String),
    /// `:42`.
    Int(i64),
    /// `$len` bulk string (also a RESP3 streamed string, reassembled).
    Bulk(Vec<u8>),
    /// `$-1`, `*-1` (RESP2) or `_` (RESP3).
    Nil,
    /// `*n`.
    Array(Vec<Value>),
    /// `%n` (RESP3), pairs in wire order.
    Map(Vec<(Value, Value)>),
    /// `~n` (RESP3).
    Set(Vec<Value>),
    /// `,1.5` (RESP3).
    Double(f64),
    /// `#t` / `#f` (RESP3).
    Bool(bool),
    /// `=len\r\nfmt:data` (RESP3): the three-byte format (`txt`, `mkd`) and the data.
    Verbatim(String, Vec<u8>),
    /// `(123…` (RESP3), the digits as sent.
    BigNumber(String),
    /// `>n` (RESP3 out-of-band push: pub/sub messages, invalidations).
    Push(Vec<Value>),
}

/// Parses one reply from the start of `buf`. Returns it and the number of bytes consumed.
/// RESP3 attributes in front of a value are read and dropped. [`ParseError::Incomplete`]:
/// read more and call again (cheap: nothing is copied until the whole reply is present).
pub fn parse_value(buf: &[u8], limits: &Limits) -> Result<(Value, usize), ParseError> {
    let mut check = Reader::new(buf, limits);
    check.value::<Check>(0)?;
    let end = check.pos;
    let mut build = Reader::new(buf, limits);
    let value = build.value::<Build>(0)?;
    Ok((value, end))
}

/// What the walker makes of each element: [`Check`] nothing, [`Build`] a [`Value`].
trait Sink {
    type Out;
    /// Accumulates the chunks of a streamed string.
    type Bytes: Default;
    fn simple(s: &[u8]) -> Self::Out;
    fn error(s: &[u8]) -> Self::Out;
    fn int(i: i64) -> Self::Out;
    fn bulk(b: &[u8]) -> Self::Out;
    fn nil() -> Self::Out;
    fn double(d: f64) -> Self::Out;
    fn boolean(b: bool) -> Self::Out;
    fn verbatim(format: &[u8], data: &[u8]) -> Self::Out;
    fn big_number(digits: &[u8]) -> Self::Out;
    fn append(acc: &mut Self::Bytes, chunk: &[u8]);
    fn streamed(acc: Self::Bytes) -> Self::Out;
    fn aggregate(kind: Kind, items: Vec<Self::Out>) -> Self::Out;
    fn map(pairs: Vec<(Self::Out, Self::Out)>) -> Self::Out;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Array,
    Set,
    Push,
}

/// The check pass: `Out = ()`, so `Vec<()>` never allocates.
struct Check;

impl Sink for Check {
    type Out = ();
    type Bytes = ();
    fn simple(_: &[u8]) {}
    fn error(_: &[u8]) {}
    fn int(_: i64) {}
    fn bulk(_: &[u8]) {}
    fn nil() {}
    fn double(_: f64) {}
    fn boolean(_: bool) {}
    fn verbatim(_: &[u8], _: &[u8]) {}
    fn big_number(_: &[u8]) {}
    fn append(_: &mut (), _: &[u8]) {}
    fn streamed(_: ()) {}
    fn aggregate(_: Kind, _: Vec<()>) {}
    fn map(_: Vec<((), ())>) {}
}

struct Build;

fn lossy(s: &[u8]) -> String {
    String::from_utf8_lossy(s).into_owned()
}

impl Sink for Build {
    type Out = Value;
    type Bytes = Vec<u8>;
    fn simple(s: &[u8]) -> Value {
        Value::Simple(lossy(s))
    }
    fn error(s: &[u8]) -> Value {
        Value::Error(lossy(s))
    }
    fn int(i: i64) -> Value {
        Value::Int(i)
    }
    fn bulk(b: &[u8]) -> Value {
        Value::Bulk(b.to_vec())
    }
    fn nil() -> Value {
        Value::Nil
    }
    fn double(d: f64) -> Value {
        Value::Double(d)
    }
    fn boolean(b: bool) -> Value {
        Value::Bool(b)
    }
    fn verbatim(format: &[u8], data: &[u8]) -> Value {
        Value::Verbatim(lossy(format), data.to_vec())
    }
    fn big_number(digits: &[u8]) -> Value {
        Value::BigNumber(lossy(digits))
    }
    fn append(acc: &mut Vec<u8>, chunk: &[u8]) {
        acc.extend_from_slice(chunk);
    }
    fn streamed(acc: Vec<u8>) -> Value {
        Value::Bulk(acc)
    }
    fn aggregate(kind: Kind, items: Vec<Value>) -> Value {
        match kind {
            Kind::Array => Value::Array(items),
            Kind::Set => Value::Set(items),
            Kind::Push => Value::Push(items),
        }
    }
    fn map(pairs: Vec<(Value, Value)>) -> Value {
        Value::Map(pairs)
    }
}

/// The smallest encoding of any value (`_\r\n`), used to bound vector capacities by the bytes
/// actually left in the buffer.
const MIN_VALUE_LEN: usize = 3;

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    limits: &'a Limits,
}

/// A decoded length line: `-1`, `?` (streamed), or a count.
enum Len {
    Null,
    Streamed,
    Count(usize),
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], limits: &'a Limits) -> Self {
        Reader {
            buf,
            pos: 0,
            limits,
        }
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn byte(&mut self) -> Result<u8, ParseError> {
        let b = *self.buf.get(self.pos).ok_or(ParseError::Incomplete)?;
        self.pos += 1;
        Ok(b)
    }

    fn peek(&self) -> Result<u8, ParseError> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or(ParseError::Incomplete)
    }

    /// The rest of a line up to `\r\n` (not included), which it skips. A bare `\n` or a `\r`
    /// not followed by `\n` is an error, as is a line longer than `max_inline_len`.
    fn line(&mut self) -> Result<&'a [u8], ParseError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let window = &rest[..rest.len().min(self.limits.max_inline_len.saturating_add(1))];
        match window.iter().position(|&b| b == b'\r' || b == b'\n') {
            None if rest.len() > self.limits.max_inline_len => Err(protocol(LINE_TOO_LONG)),
            None => Err(ParseError::Incomplete),
            Some(end) => match (rest.get(end), rest.get(end + 1)) {
                (Some(b'\r'), Some(b'\n')) => {
                    self.pos += end + 2;
                    Ok(&rest[..end])
                }
                (Some(b'\r'), None) => Err(ParseError::Incomplete),
                _ => Err(protocol(BAD_LINE_END)),
            },
        }
    }

    /// `n` payload bytes followed by `\r\n`.
    fn payload(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        let start = self.pos;
        let end = start.checked_add(n).ok_or_else(|| protocol(INVALID_BULK))?;
        match (self.buf.get(end), self.buf.get(end.saturating_add(1))) {
            (Some(b'\r'), Some(b'\n')) => {}
            (None, _) | (Some(b'\r'), None) => return Err(ParseError::Incomplete),
            _ => return Err(protocol(BAD_LINE_END)),
        }
        let data = self.buf.get(start..end).ok_or(ParseError::Incomplete)?;
        self.pos = end + 2;
        Ok(data)
    }

    /// A length line: `-1`, `?`, or a decimal count no larger than `max`.
    fn len(&mut self, max: usize, invalid: &str) -> Result<Len, ParseError> {
        let line = self.line()?;
        if line == b"?" {
            return Ok(Len::Streamed);
        }
        match parse_i64(line) {
            Some(-1) => Ok(Len::Null),
            Some(n) => match usize::try_from(n) {
                Ok(n) if n <= max => Ok(Len::Count(n)),
                _ => Err(protocol(invalid)),
            },
            None => Err(protocol(invalid)),
        }
    }

    fn value<S: Sink>(&mut self, depth: usize) -> Result<S::Out, ParseError> {
        loop {
            let ty = self.byte()?;
            return match ty {
                b'+' => Ok(S::simple(self.line()?)),
                b'-' => Ok(S::error(self.line()?)),
                b':' => parse_i64(self.line()?)
                    .map(S::int)
                    .ok_or_else(|| protocol(INVALID_INTEGER)),
                b'$' => match self.len(self.limits.max_bulk_len, INVALID_BULK)? {
                    Len::Null => Ok(S::nil()),
                    Len::Count(n) => Ok(S::bulk(self.payload(n)?)),
                    Len::Streamed => self.streamed_string::<S>(),
                },
                b'!' => match self.len(self.limits.max_bulk_len, INVALID_BULK)? {
                    Len::Count(n) => Ok(S::error(self.payload(n)?)),
                    Len::Null | Len::Streamed => Err(protocol(INVALID_BULK)),
                },
                b'=' => match self.len(self.limits.max_bulk_len, INVALID_BULK)? {
                    Len::Count(n) => {
                        let data = self.payload(n)?;
                        match (data.get(..3), data.get(3), data.get(4..)) {
                            (Some(format), Some(b':'), Some(text)) => Ok(S::verbatim(format, text)),
                            _ => Err(protocol(INVALID_VERBATIM)),
                        }
                    }
                    Len::Null | Len::Streamed => Err(protocol(INVALID_VERBATIM)),
                },
                b'_' => {
                    if self.line()?.is_empty() {
                        Ok(S::nil())
                    } else {
                        Err(protocol(INVALID_NULL))
                    }
                }
                b',' => std::str::from_utf8(self.line()?)
                    .ok()
                    .and_then(|s| s.parse::<f64>().ok())
                    .map(S::double)
                    .ok_or_else(|| protocol(INVALID_DOUBLE)),
                b'#' => match self.line()? {
                    b"t" => Ok(S::boolean(true)),
                    b"f" => Ok(S::boolean(false)),
                    _ => Err(protocol(INVALID_BOOLEAN)),
                },
                b'(' => {
                    let line = self.line()?;
                    let digits = match line.split_first() {
                        Some((b'+' | b'-', rest)) => rest,
                        _ => line,
                    };
                    if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) {
                        Ok(S::big_number(line))
                    } else {
                        Err(protocol(INVALID_BIG_NUMBER))
                    }
                }
                b'*' => self.aggregate::<S>(Kind::Array, depth),
                b'~' => self.aggregate::<S>(Kind::Set, depth),
                b'>' => self.aggregate::<S>(Kind::Push, depth),
                b'%' => self.map::<S>(depth),
                b'|' => {
                    // An attribute: metadata about the value that follows. Walk it without
                    // building anything, then read the value itself.
                    self.map::<Check>(depth)?;
                    continue;
                }
                other => Err(ParseError::Protocol(format!(
                    "Protocol error: unknown reply type '{}'",
                    char::from(other).escape_default()
                ))),
            };
        }
    }

    fn enter(depth: usize) -> Result<usize, ParseError> {
        if depth >= MAX_DEPTH {
            Err(protocol(TOO_DEEP))
        } else {
            Ok(depth + 1)
        }
    }

    /// In a streamed aggregate, consumes the `.\r\n` end marker if it is next.
    fn end_of_stream(&mut self) -> Result<bool, ParseError> {
        if self.peek()? != b'.' {
            return Ok(false);
        }
        self.pos += 1;
        if self.line()?.is_empty() {
            Ok(true)
        } else {
            Err(protocol(INVALID_AGGREGATE))
        }
    }

    fn aggregate<S: Sink>(&mut self, kind: Kind, depth: usize) -> Result<S::Out, ParseError> {
        let inner = Self::enter(depth)?;
        let len = self.len(self.limits.max_args, INVALID_AGGREGATE)?;
        let mut items = Vec::new();
        match len {
            Len::Null if kind == Kind::Array => return Ok(S::nil()),
            Len::Null => return Err(protocol(INVALID_AGGREGATE)),
            Len::Count(n) => {
                items.reserve(n.min(self.remaining() / MIN_VALUE_LEN));
                for _ in 0..n {
                    items.push(self.value::<S>(inner)?);
                }
            }
            Len::Streamed => {
                while !self.end_of_stream()? {
                    if items.len() >= self.limits.max_args {
                        return Err(protocol(INVALID_AGGREGATE));
                    }
                    items.push(self.value::<S>(inner)?);
                }
            }
        }
        Ok(S::aggregate(kind, items))
    }

    /// A map (`%`) or an attribute (`|`): a count of key/value pairs.
    fn map<S: Sink>(&mut self, depth: usize) -> Result<S::Out, ParseError> {
        let inner = Self::enter(depth)?;
        let len = self.len(self.limits.max_args, INVALID_AGGREGATE)?;
        let mut pairs = Vec::new();
        match len {
            Len::Null => return Err(protocol(INVALID_AGGREGATE)),
            Len::Count(n) => {
                pairs.reserve(n.min(self.remaining() / (2 * MIN_VALUE_LEN)));
                for _ in 0..n {
                    let key = self.value::<S>(inner)?;
                    let value = self.value::<S>(inner)?;
                    pairs.push((key, value));
                }
            }
            Len::Streamed => {
                while !self.end_of_stream()? {
                    if pairs.len() >= self.limits.max_args {
                        return Err(protocol(INVALID_AGGREGATE));
                    }
                    let key = self.value::<S>(inner)?;
                    let value = self.value::<S>(inner)?;
                    pairs.push((key, value));
                }
            }
        }
        Ok(S::map(pairs))
    }

    /// `$?\r\n` then `;len\r\ndata\r\n` chunks until `;0\r\n`.
    fn streamed_string<S: Sink>(&mut self) -> Result<S::Out, ParseError> {
        let mut acc = S::Bytes::default();
        let mut total = 0usize;
        loop {
            if self.byte()? != b';' {
                return Err(protocol(INVALID_STREAM));
            }
            let n = match self.len(self.limits.max_bulk_len, INVALID_STREAM)? {
                Len::Count(n) => n,
                Len::Null | Len::Streamed => return Err(protocol(INVALID_STREAM)),
            };
            if n == 0 {
                return Ok(S::streamed(acc));
            }
            total = total.saturating_add(n);
            if total > self.limits.max_bulk_len {
                return Err(protocol(INVALID_BULK));
            }
            S::append(&mut acc, self.payload(n)?);
        }
    }
}

/// An optional sign then at least one decimal digit, within i64.
fn parse_i64(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    if negative {
        0i64.checked_sub_unsigned(v)
    } else {
        i64::try_from(v).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::encode::{self, Proto};
    use proptest::prelude::*;

    fn parse(buf: &[u8]) -> Result<(Value, usize), ParseError> {
        parse_value(buf, &Limits::default())
    }

    fn value(buf: &[u8]) -> Value {
        match parse(buf) {
            Ok((v, used)) => {
                assert_eq!(used, buf.len(), "whole reply consumed for {buf:?}");
                v
            }
            Err(e) => panic!("{buf:?} gave {e:?}"),
        }
    }

    fn protocol_error(buf: &[u8]) -> String {
        match parse(buf) {
            Err(ParseError::Protocol(m)) => m,
            other => panic!("{buf:?}: expected a protocol error, got {other:?}"),
        }
    }

    fn bulk(s: &str) -> Value {
        Value::Bulk(s.as_bytes().to_vec())
    }

    #[test]
    fn resp2_types() {
        assert_eq!(value(b"+OK\r\n"), Value::Simple("OK".into()));
        assert_eq!(
            value(b"-ERR unknown command\r\n"),
            Value::Error("ERR unknown command".into())
        );
        assert_eq!(value(b":-42\r\n"), Value::Int(-42));
        assert_eq!(value(b":+7\r\n"), Value::Int(7));
        assert_eq!(value(b"$5\r\nhe\r\nl\r\n"), bulk("he\r\nl"));
        assert_eq!(value(b"$0\r\n\r\n"), bulk(""));
        assert_eq!(value(b"$-1\r\n"), Value::Nil);
        assert_eq!(value(b"*-1\r\n"), Value::Nil);
        assert_eq!(value(b"*0\r\n"), Value::Array(vec![]));
        assert_eq!(
            value(b"*3\r\n:1\r\n$1\r\na\r\n*1\r\n+x\r\n"),
            Value::Array(vec![
                Value::Int(1),
                bulk("a"),
                Value::Array(vec![Value::Simple("x".into())])
            ])
        );
    }

    #[test]
    fn resp3_types() {
        assert_eq!(value(b"_\r\n"), Value::Nil);
        assert_eq!(value(b",1.5\r\n"), Value::Double(1.5));
        assert_eq!(value(b",-inf\r\n"), Value::Double(f64::NEG_INFINITY));
        assert_eq!(value(b",1e+300\r\n"), Value::Double(1e300));
        assert!(matches!(value(b",nan\r\n"), Value::Double(d) if d.is_nan()));
        assert_eq!(value(b"#t\r\n"), Value::Bool(true));
        assert_eq!(value(b"#f\r\n"), Value::Bool(false));
        assert_eq!(
            value(b"!21\r\nSYNTAX invalid syntax\r\n"),
            Value::Error("SYNTAX invalid syntax".into())
        );
        assert_eq!(
            value(b"=15\r\ntxt:Some string\r\n"),
            Value::Verbatim("txt".into(), b"Some string".to_vec())
        );
        assert_eq!(
            value(b"(3492890328409238509324850943850943825024385\r\n"),
            Value::BigNumber("3492890328409238509324850943850943825024385".into())
        );
        assert_eq!(
            value(b"%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n"),
            Value::Map(vec![
                (Value::Simple("first".into()), Value::Int(1)),
                (Value::Simple("second".into()), Value::Int(2)),
            ])
        );
        assert_eq!(
            value(b"~2\r\n$1\r\na\r\n#t\r\n"),
            Value::Set(vec![bulk("a"), Value::Bool(true)])
        );
        assert_eq!(
            value(b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"),
            Value::Push(vec![bulk("message"), bulk("ch"), bulk("hi")])
        );
    }

    #[test]
    fn attributes_are_read_and_dropped() {
        let reply = b"|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n*2\r\n:2039123\r\n:9543892\r\n";
        assert_eq!(
            value(reply),
            Value::Array(vec![Value::Int(2039123), Value::Int(9543892)])
        );
        // Inside an aggregate too, and several in a row.
        assert_eq!(
            value(b"*2\r\n|1\r\n+a\r\n+b\r\n|0\r\n:1\r\n:2\r\n"),
            Value::Array(vec![Value::Int(1), Value::Int(2)])
        );
        assert_eq!(parse(b"|1\r\n+a\r\n+b\r\n"), Err(ParseError::Incomplete));
    }

    #[test]
    fn streamed_strings_and_aggregates() {
        assert_eq!(
            value(b"$?\r\n;4\r\nHell\r\n;5\r\no wor\r\n;1\r\nd\r\n;0\r\n"),
            bulk("Hello word")
        );
        assert_eq!(
            value(b"*?\r\n:1\r\n:2\r\n.\r\n"),
            Value::Array(vec![Value::Int(1), Value::Int(2)])
        );
        assert_eq!(
            value(b"%?\r\n+a\r\n:1\r\n.\r\n"),
            Value::Map(vec![(Value::Simple("a".into()), Value::Int(1))])
        );
        assert_eq!(value(b"~?\r\n.\r\n"), Value::Set(vec![]));
        assert_eq!(
            protocol_error(b"$?\r\n:4\r\n"),
            "Protocol error: invalid streamed string chunk"
        );
        assert_eq!(
            protocol_error(b"$?\r\n;-1\r\n"),
            "Protocol error: invalid streamed string chunk"
        );
        assert_eq!(
            protocol_error(b"*?\r\n.x\r\n"),
            "Protocol error: invalid aggregate length"
        );
    }

    #[test]
    fn replies_are_parsed_one_after_another() {
        let mut wire = Vec::new();
        encode::simple(&mut wire, "OK");
        encode::integer(&mut wire, 5);
        encode::null(&mut wire, Proto::Resp3);
        encode::map_len(&mut wire, 1, Proto::Resp3);
        encode::bulk(&mut wire, b"k");
        encode::double(&mut wire, 0.25, Proto::Resp3);
        encode::verbatim(&mut wire, "txt", b"x", Proto::Resp3);
        encode::boolean(&mut wire, true, Proto::Resp3);
        encode::set_len(&mut wire, 1, Proto::Resp3);
        encode::error(&mut wire, "ERR no");
        encode::null_array(&mut wire, Proto::Resp2);
        let mut seen = Vec::new();
        let mut rest = &wire[..];
        while !rest.is_empty() {
            let (v, used) = parse(rest).expect("valid replies");
            seen.push(v);
            rest = &rest[used..];
        }
        assert_eq!(
            seen,
            vec![
                Value::Simple("OK".into()),
                Value::Int(5),
                Value::Nil,
                Value::Map(vec![(bulk("k"), Value::Double(0.25))]),
                Value::Verbatim("txt".into(), b"x".to_vec()),
                Value::Bool(true),
                Value::Set(vec![Value::Error("ERR no".into())]),
                Value::Nil,
            ]
        );
    }

    #[test]
    fn every_prefix_of_a_valid_reply_is_incomplete() {
        let replies: &[&[u8]] = &[
            b"*2\r\n$3\r\nfoo\r\n%1\r\n:1\r\n(12\r\n",
            b"|1\r\n+a\r\n+b\r\n=6\r\ntxt:hi\r\n",
            b"$?\r\n;2\r\nab\r\n;0\r\n",
            b"~?\r\n_\r\n.\r\n",
            b",-1.5e-3\r\n",
        ];
        for reply in replies {
            let (_, used) = parse(reply).expect("valid reply");
            assert_eq!(used, reply.len());
            for cut in 0..reply.len() {
                assert_eq!(
                    parse(&reply[..cut]),
                    Err(ParseError::Incomplete),
                    "prefix {:?}",
                    &reply[..cut]
                );
            }
        }
    }

    #[test]
    fn malformed_replies_are_protocol_errors() {
        for (bad, msg) in [
            (&b"?\r\n"[..], "Protocol error: unknown reply type '?'"),
            (b"\x01\r\n", "Protocol error: unknown reply type '\\u{1}'"),
            (b"+OK\n", "Protocol error: expected CRLF"),
            (b"+O\rK\r\n", "Protocol error: expected CRLF"),
            (b":12a\r\n", "Protocol error: invalid integer"),
            (b":\r\n", "Protocol error: invalid integer"),
            (
                b":99999999999999999999\r\n",
                "Protocol error: invalid integer",
            ),
            (b"$-2\r\n", "Protocol error: invalid bulk length"),
            (b"$x\r\n", "Protocol error: invalid bulk length"),
            (b"$536870913\r\n", "Protocol error: invalid bulk length"),
            (b"$3\r\nfooXY", "Protocol error: expected CRLF"),
            (b"!-1\r\n", "Protocol error: invalid bulk length"),
            (b"*-2\r\n", "Protocol error: invalid aggregate length"),
            (b"%-1\r\n", "Protocol error: invalid aggregate length"),
            (b"~-1\r\n", "Protocol error: invalid aggregate length"),
            (b"*1048577\r\n", "Protocol error: invalid aggregate length"),
            (b"_x\r\n", "Protocol error: invalid null"),
            (b",abc\r\n", "Protocol error: invalid double"),
            (b"#x\r\n", "Protocol error: invalid boolean"),
            (b"(12a\r\n", "Protocol error: invalid big number"),
            (b"(\r\n", "Protocol error: invalid big number"),
            (b"=3\r\ntxt\r\n", "Protocol error: invalid verbatim string"),
            (b"=4\r\ntxtx\r\n", "Protocol error: invalid verbatim string"),
            (b"*1\r\n.\r\n", "Protocol error: unknown reply type '.'"),
        ] {
            assert_eq!(protocol_error(bad), msg, "{bad:?}");
        }
    }

    #[test]
    fn long_lines_are_refused() {
        let limits = Limits {
            max_inline_len: 8,
            ..Limits::default()
        };
        assert_eq!(
            parse_value(b"+12345678\r\n", &limits),
            Ok((Value::Simple("12345678".into()), 11))
        );
        assert_eq!(
            parse_value(b"+12345678", &limits),
            Err(ParseError::Incomplete)
        );
        assert_eq!(
            parse_value(b"+123456789", &limits),
            Err(protocol(LINE_TOO_LONG))
        );
        assert_eq!(
            parse_value(b"+123456789\r\n", &limits),
            Err(protocol(LINE_TOO_LONG))
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let mut ok = "*1\r\n".repeat(MAX_DEPTH).into_bytes();
        ok.extend_from_slice(b":1\r\n");
        assert!(parse(&ok).is_ok());
        let mut deep = "*1\r\n".repeat(MAX_DEPTH + 1).into_bytes();
        deep.extend_from_slice(b":1\r\n");
        assert_eq!(parse(&deep), Err(protocol(TOO_DEEP)));
        // Hostile depth far beyond the limit fails fast instead of overflowing the stack.
        let hostile = "*1\r\n".repeat(1_000_000).into_bytes();
        assert_eq!(parse(&hostile), Err(protocol(TOO_DEEP)));
        let hostile = "|1\r\n".repeat(1_000_000).into_bytes();
        assert_eq!(parse(&hostile), Err(protocol(TOO_DEEP)));
    }

    #[test]
    fn huge_declared_sizes_wait_without_allocating() {
        assert_eq!(parse(b"*1048576\r\n:1\r\n"), Err(ParseError::Incomplete));
        assert_eq!(parse(b"%1048576\r\n"), Err(ParseError::Incomplete));
        assert_eq!(parse(b"$536870912\r\nab"), Err(ParseError::Incomplete));
        assert_eq!(parse(b"=536870912\r\nab"), Err(ParseError::Incomplete));
    }

    #[test]
    fn streamed_aggregate_count_is_bounded() {
        let limits = Limits {
            max_args: 2,
            ..Limits::default()
        };
        assert_eq!(
            parse_value(b"*?\r\n:1\r\n:2\r\n:3\r\n.\r\n", &limits),
            Err(protocol(INVALID_AGGREGATE))
        );
        assert_eq!(
            parse_value(
                b"$?\r\n;3\r\nabc\r\n;0\r\n",
                &Limits {
                    max_bulk_len: 2,
                    ..limits
                }
            ),
            Err(protocol(INVALID_STREAM))
        );
        assert_eq!(
            parse_value(
                b"$?\r\n;2\r\nab\r\n;2\r\ncd\r\n;0\r\n",
                &Limits {
                    max_bulk_len: 3,
                    ..limits
                }
            ),
            Err(protocol(INVALID_BULK))
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_respect_bounds(
            bytes in prop::collection::vec(any::<u8>(), 0..200)
        ) {
            if let Ok((_, used)) = parse(&bytes) {
                prop_assert!(used > 0 && used <= bytes.len());
                prop_assert_eq!(parse(&bytes[..used - 1]), Err(ParseError::Incomplete));
            }
        }

        #[test]
        fn encoded_integers_and_bulks_parse_back(i in any::<i64>(), b in prop::collection::vec(any::<u8>(), 0..50)) {
            let mut wire = Vec::new();
            encode::array_len(&mut wire, 2);
            encode::integer(&mut wire, i);
            encode::bulk(&mut wire, &b);
            prop_assert_eq!(
                parse(&wire),
                Ok((Value::Array(vec![Value::Int(i), Value::Bulk(b)]), wire.len()))
            );
        }
    }
}
