//! Replies (and client requests) written straight into an output buffer.
//!
//! Every function appends one RESP element to `out`; nothing allocates besides the growth of
//! `out` itself (numbers are formatted on the stack). Aggregates are written as a header
//! ([`array_len`], [`map_len`], [`set_len`]) followed by their elements, so a command can stream
//! a reply of any size without building it first.
//!
//! The RESP2 fallbacks are the ones Redis 7 uses: maps and sets become flat arrays, doubles and
//! verbatim strings become bulk strings, booleans become `:1`/`:0`, null is `$-1` (or `*-1` for
//! a missing aggregate).

/// The protocol version a connection speaks (`HELLO 3` switches to RESP3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Proto {
    /// RESP2, what every connection starts with.
    #[default]
    Resp2,
    /// RESP3.
    Resp3,
}

const CRLF: &[u8] = b"\r\n";

/// A simple string: `+s\r\n`. Leading and trailing `\r`/`\n` are removed and inner ones become
/// spaces (a simple string cannot hold them), as Redis does for error texts.
pub fn simple(out: &mut Vec<u8>, s: &str) {
    out.push(b'+');
    push_line(out, s.as_bytes());
    out.extend_from_slice(CRLF);
}

/// An error: `-ERR msg\r\n`. `msg` already starts with its code (`"ERR x"`, `"WRONGTYPE …"`,
/// `"READONLY …"`); a leading `-` (Redis' own convention for a caller-supplied code) is accepted
/// and not doubled. `\r`/`\n` are trimmed at the ends and turned into spaces inside, as Redis'
/// `addReplyErrorFormat` does. An empty message becomes `-ERR`.
pub fn error(out: &mut Vec<u8>, msg: &str) {
    out.push(b'-');
    let msg = trim_crlf(msg.as_bytes());
    let msg = msg.strip_prefix(b"-").unwrap_or(msg);
    if msg.is_empty() {
        out.extend_from_slice(b"ERR");
    } else {
        push_line(out, msg);
    }
    out.extend_from_slice(CRLF);
}

/// An integer: `:i\r\n`.
pub fn integer(out: &mut Vec<u8>, i: i64) {
    out.push(b':');
    push_i64(out, i);
    out.extend_from_slice(CRLF);
}

/// A bulk string: `$len\r\nbytes\r\n`.
pub fn bulk(out: &mut Vec<u8>, b: &[u8]) {
    out.reserve(b.len() + 24);
    header(out, b'$', b.len());
    out.extend_from_slice(b);
    out.extend_from_slice(CRLF);
}

/// A null (missing value): `$-1\r\n` in RESP2, `_\r\n` in RESP3.
pub fn null(out: &mut Vec<u8>, p: Proto) {
    out.extend_from_slice(match p {
        Proto::Resp2 => b"$-1\r\n",
        Proto::Resp3 => b"_\r\n",
    });
}

/// A null aggregate (e.g. a timed-out `BLPOP`): `*-1\r\n` in RESP2, `_\r\n` in RESP3.
pub fn null_array(out: &mut Vec<u8>, p: Proto) {
    out.extend_from_slice(match p {
        Proto::Resp2 => b"*-1\r\n",
        Proto::Resp3 => b"_\r\n",
    });
}

/// An array header: `*n\r\n`, to be followed by `n` elements.
pub fn array_len(out: &mut Vec<u8>, n: usize) {
    header(out, b'*', n);
}

/// A map header for `n` key/value pairs: `%n\r\n` in RESP3, an array of `2n` elements in RESP2.
pub fn map_len(out: &mut Vec<u8>, n: usize, p: Proto) {
    match p {
        Proto::Resp2 => header(out, b'*', n.saturating_mul(2)),
        Proto::Resp3 => header(out, b'%', n),
    }
}

/// A push header (pub/sub messages and subscription replies): `>n\r\n` in RESP3, an array
/// header in RESP2, where pub/sub frames are plain arrays.
pub fn push_len(out: &mut Vec<u8>, n: usize, p: Proto) {
    match p {
        Proto::Resp2 => header(out, b'*', n),
        Proto::Resp3 => header(out, b'>', n),
    }
}

/// A set header: `~n\r\n` in RESP3, an array header in RESP2.
pub fn set_len(out: &mut Vec<u8>, n: usize, p: Proto) {
    match p {
        Proto::Resp2 => header(out, b'*', n),
        Proto::Resp3 => header(out, b'~', n),
    }
}

/// A double: `,1.5\r\n` in RESP3, the bulk string `"1.5"` in RESP2.
///
/// Spelled as Redis 7.2+ `d2string` does: `inf`, `-inf`, `nan`, `-0`; integral values up to
/// ±2^62 as integers; anything else with the shortest round-trip digits laid out like Redis'
/// `fpconv_dtoa` (`0.1`, `1.5e-7`, `1e+300`).
pub fn double(out: &mut Vec<u8>, d: f64, p: Proto) {
    let mut buf = NumBuf::new();
    d2string(&mut buf, d);
    match p {
        Proto::Resp2 => bulk(out, buf.as_bytes()),
        Proto::Resp3 => {
            out.push(b',');
            out.extend_from_slice(buf.as_bytes());
            out.extend_from_slice(CRLF);
        }
    }
}

/// A boolean: `#t\r\n`/`#f\r\n` in RESP3, `:1\r\n`/`:0\r\n` in RESP2.
pub fn boolean(out: &mut Vec<u8>, b: bool, p: Proto) {
    out.extend_from_slice(match (p, b) {
        (Proto::Resp2, true) => b":1\r\n",
        (Proto::Resp2, false) => b":0\r\n",
        (Proto::Resp3, true) => b"#t\r\n",
        (Proto::Resp3, false) => b"#f\r\n",
    });
}

/// A verbatim string: `=len\r\nfmt:bytes\r\n` in RESP3 (`format` is cut or space-padded to
/// three bytes, as Redis does: `txt`, `mkd`), a plain bulk string in RESP2.
pub fn verbatim(out: &mut Vec<u8>, format: &str, b: &[u8], p: Proto) {
    match p {
        Proto::Resp2 => bulk(out, b),
        Proto::Resp3 => {
            out.reserve(b.len() + 28);
            header(out, b'=', b.len().saturating_add(4));
            let mut ext = [b' '; 3];
            for (slot, &c) in ext.iter_mut().zip(format.as_bytes()) {
                *slot = c;
            }
            out.extend_from_slice(&ext);
            out.push(b':');
            out.extend_from_slice(b);
            out.extend_from_slice(CRLF);
        }
    }
}

/// A command as a client sends it: `*N\r\n` then one bulk string per argument.
pub fn request(out: &mut Vec<u8>, args: &[&[u8]]) {
    array_len(out, args.len());
    for arg in args {
        bulk(out, arg);
    }
}

/// `prefix`, the decimal `n`, `\r\n`.
fn header(out: &mut Vec<u8>, prefix: u8, n: usize) {
    out.push(prefix);
    push_u64(out, n as u64);
    out.extend_from_slice(CRLF);
}

fn trim_crlf(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| !matches!(b, b'\r' | b'\n'));
    let end = s.iter().rposition(|b| !matches!(b, b'\r' | b'\n'));
    match (start, end) {
        (Some(start), Some(end)) => &s[start..=end],
        _ => &[],
    }
}

/// Appends `s` as the body of a line-type element: trimmed, inner `\r`/`\n` as spaces.
fn push_line(out: &mut Vec<u8>, s: &[u8]) {
    let s = trim_crlf(s);
    out.extend(s.iter().map(|&b| match b {
        b'\r' | b'\n' => b' ',
        b => b,
    }));
}

/// Two decimal digits for each value 0..100, as in itoa.
const DEC_DIGITS_LUT: &[u8; 200] = b"\
    0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

/// Formats `n` into the end of `buf`; returns where the digits start.
fn format_u64(buf: &mut [u8; 20], mut n: u64) -> usize {
    let mut cur = buf.len();
    while n >= 100 {
        let d = (n % 100) as usize * 2;
        n /= 100;
        cur -= 2;
        buf[cur..cur + 2].copy_from_slice(&DEC_DIGITS_LUT[d..d + 2]);
    }
    if n >= 10 {
        let d = n as usize * 2;
        cur -= 2;
        buf[cur..cur + 2].copy_from_slice(&DEC_DIGITS_LUT[d..d + 2]);
    } else {
        cur -= 1;
        buf[cur] = b'0' + n as u8;
    }
    cur
}

fn push_u64(out: &mut Vec<u8>, n: u64) {
    let mut buf = [0u8; 20];
    let start = format_u64(&mut buf, n);
    out.extend_from_slice(&buf[start..]);
}

fn push_i64(out: &mut Vec<u8>, i: i64) {
    if i < 0 {
        out.push(b'-');
    }
    push_u64(out, i.unsigned_abs());
}

/// A small stack buffer for formatting one number. Longer output is cut (it cannot happen for
/// what we format: at most 24 bytes).
struct NumBuf {
    buf: [u8; 48],
    len: usize,
}

impl NumBuf {
    fn new() -> Self {
        NumBuf {
            buf: [0; 48],
            len: 0,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn push(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    fn extend(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.push(b);
        }
    }
}

impl std::fmt::Write for NumBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.len + s.len() > self.buf.len() {
            return Err(std::fmt::Error);
        }
        self.extend(s.as_bytes());
        Ok(())
    }
}

/// Redis' `double2ll`: an integral double within ±(i64::MAX / 2) is printed as an integer.
fn double2ll(d: f64) -> Option<i64> {
    const LIMIT: f64 = (i64::MAX / 2) as f64;
    if !(-LIMIT..=LIMIT).contains(&d) {
        return None;
    }
    let i = d as i64;
    (i as f64 == d).then_some(i)
}

/// Redis' `d2string` (util.c, 7.2+).
fn d2string(buf: &mut NumBuf, d: f64) {
    if d.is_nan() {
        buf.extend(b"nan");
    } else if d.is_infinite() {
        buf.extend(if d < 0.0 { b"-inf" } else { b"inf" });
    } else if d == 0.0 {
        buf.extend(if d.is_sign_negative() { b"-0" } else { b"0" });
    } else if let Some(i) = double2ll(d) {
        let mut digits = [0u8; 20];
        if i < 0 {
            buf.push(b'-');
        }
        let start = format_u64(&mut digits, i.unsigned_abs());
        buf.extend(&digits[start..]);
    } else {
        fpconv_dtoa(buf, d);
    }
}

/// Redis' `fpconv_dtoa` for a finite non-zero double: the shortest round-trip digits (from
/// Rust's own shortest formatting) laid out by fpconv's `emit_digits` rules. Redis computes
/// the digits with grisu2, which in rare cases yields a longer (still round-trip) string.
fn fpconv_dtoa(buf: &mut NumBuf, d: f64) {
    use std::fmt::Write;
    let neg = d < 0.0;
    let mut sci = NumBuf::new();
    // "{:e}" gives the shortest round-trip digits as "d.ddde[-]x".
    if write!(sci, "{:e}", d.abs()).is_err() {
        let _ = write!(buf, "{d}");
        return;
    }
    let text = sci.as_bytes();
    let Some(e_at) = text.iter().position(|&b| b == b'e') else {
        let _ = write!(buf, "{d}");
        return;
    };
    let (mantissa, exponent) = (&text[..e_at], &text[e_at + 1..]);
    let exponent = std::str::from_utf8(exponent)
        .ok()
        .and_then(|e| e.parse::<i32>().ok());
    let Some(exponent) = exponent else {
        let _ = write!(buf, "{d}");
        return;
    };
    let mut digits = [0u8; 24];
    let mut ndigits = 0usize;
    for &b in mantissa.iter().filter(|b| b.is_ascii_digit()) {
        if let Some(slot) = digits.get_mut(ndigits) {
            *slot = b;
            ndigits += 1;
        }
    }
    if ndigits == 0 {
        let _ = write!(buf, "{d}");
        return;
    }
    if neg {
        buf.push(b'-');
    }
    emit_digits(
        buf,
        &digits[..ndigits],
        exponent - (ndigits as i32 - 1),
        neg,
    );
}

/// fpconv's `emit_digits`: `digits` × 10^`k`, as a plain integer, a plain decimal, or
/// `d.ddde±x`, with fpconv's thresholds.
fn emit_digits(buf: &mut NumBuf, digits: &[u8], k: i32, neg: bool) {
    let nd = digits.len() as i32;
    let mut exp = (k + nd - 1).abs();

    // Plain integer.
    if k >= 0 && exp < nd + 7 {
        buf.extend(digits);
        for _ in 0..k {
            buf.push(b'0');
        }
        return;
    }

    // Decimal without exponent.
    if k < 0 && (k > -7 || exp < 4) {
        let offset = nd - k.abs();
        if offset <= 0 {
            buf.extend(b"0.");
            for _ in 0..-offset {
                buf.push(b'0');
            }
            buf.extend(digits);
        } else {
            let (int, frac) = digits.split_at((offset as usize).min(digits.len()));
            buf.extend(int);
            buf.push(b'.');
            buf.extend(frac);
        }
        return;
    }

    // Scientific notation.
    let nd = nd.min(18 - i32::from(neg));
    let shown = digits.get(..nd as usize).unwrap_or(digits);
    if let Some((first, rest)) = shown.split_first() {
        buf.push(*first);
        if !rest.is_empty() {
            buf.push(b'.');
            buf.extend(rest);
        }
    }
    buf.push(b'e');
    buf.push(if k + nd - 1 < 0 { b'-' } else { b'+' });
    let mut cent = 0;
    if exp > 99 {
        cent = exp / 100;
        buf.push(b'0' + cent as u8);
        exp -= cent * 100;
    }
    if exp > 9 {
        let dec = exp / 10;
        buf.push(b'0' + dec as u8);
        exp -= dec * 10;
    } else if cent != 0 {
        buf.push(b'0');
    }
    buf.push(b'0' + (exp % 10) as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut out = Vec::new();
        f(&mut out);
        out
    }

    fn dbl(d: f64) -> String {
        let mut buf = NumBuf::new();
        d2string(&mut buf, d);
        String::from_utf8(buf.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn simple_strings_and_errors() {
        assert_eq!(enc(|o| simple(o, "OK")), b"+OK\r\n");
        assert_eq!(
            enc(|o| simple(o, "\r\nline1\r\nline2\n")),
            b"+line1  line2\r\n"
        );
        assert_eq!(
            enc(|o| error(o, "ERR unknown command")),
            b"-ERR unknown command\r\n"
        );
        assert_eq!(
            enc(|o| error(o, "WRONGTYPE Operation\nagainst a key\r\n")),
            b"-WRONGTYPE Operation against a key\r\n"
        );
        assert_eq!(enc(|o| error(o, "-NOAUTH x")), b"-NOAUTH x\r\n");
        assert_eq!(enc(|o| error(o, "\r\n")), b"-ERR\r\n");
    }

    #[test]
    fn integers_cover_the_whole_range() {
        assert_eq!(enc(|o| integer(o, 0)), b":0\r\n");
        assert_eq!(enc(|o| integer(o, 7)), b":7\r\n");
        assert_eq!(enc(|o| integer(o, -42)), b":-42\r\n");
        assert_eq!(enc(|o| integer(o, 100)), b":100\r\n");
        assert_eq!(enc(|o| integer(o, i64::MAX)), b":9223372036854775807\r\n");
        assert_eq!(enc(|o| integer(o, i64::MIN)), b":-9223372036854775808\r\n");
    }

    #[test]
    fn bulk_and_nulls() {
        assert_eq!(enc(|o| bulk(o, b"a\r\nb")), b"$4\r\na\r\nb\r\n");
        assert_eq!(enc(|o| bulk(o, b"")), b"$0\r\n\r\n");
        assert_eq!(enc(|o| null(o, Proto::Resp2)), b"$-1\r\n");
        assert_eq!(enc(|o| null(o, Proto::Resp3)), b"_\r\n");
        assert_eq!(enc(|o| null_array(o, Proto::Resp2)), b"*-1\r\n");
        assert_eq!(enc(|o| null_array(o, Proto::Resp3)), b"_\r\n");
    }

    #[test]
    fn aggregate_headers_per_protocol() {
        assert_eq!(enc(|o| array_len(o, 3)), b"*3\r\n");
        assert_eq!(enc(|o| map_len(o, 2, Proto::Resp2)), b"*4\r\n");
        assert_eq!(enc(|o| map_len(o, 2, Proto::Resp3)), b"%2\r\n");
        assert_eq!(enc(|o| set_len(o, 5, Proto::Resp2)), b"*5\r\n");
        assert_eq!(enc(|o| set_len(o, 5, Proto::Resp3)), b"~5\r\n");
        assert_eq!(enc(|o| push_len(o, 3, Proto::Resp2)), b"*3\r\n");
        assert_eq!(enc(|o| push_len(o, 3, Proto::Resp3)), b">3\r\n");
    }

    #[test]
    fn booleans_and_verbatim() {
        assert_eq!(enc(|o| boolean(o, true, Proto::Resp3)), b"#t\r\n");
        assert_eq!(enc(|o| boolean(o, false, Proto::Resp3)), b"#f\r\n");
        assert_eq!(enc(|o| boolean(o, true, Proto::Resp2)), b":1\r\n");
        assert_eq!(enc(|o| boolean(o, false, Proto::Resp2)), b":0\r\n");
        assert_eq!(
            enc(|o| verbatim(o, "txt", b"Some string", Proto::Resp3)),
            b"=15\r\ntxt:Some string\r\n"
        );
        assert_eq!(
            enc(|o| verbatim(o, "markdown", b"x", Proto::Resp3)),
            b"=5\r\nmar:x\r\n"
        );
        assert_eq!(
            enc(|o| verbatim(o, "t", b"", Proto::Resp3)),
            b"=4\r\nt  :\r\n"
        );
        assert_eq!(
            enc(|o| verbatim(o, "txt", b"x", Proto::Resp2)),
            b"$1\r\nx\r\n"
        );
    }

    #[test]
    fn doubles_are_spelled_like_redis() {
        assert_eq!(enc(|o| double(o, 1.5, Proto::Resp3)), b",1.5\r\n");
        assert_eq!(enc(|o| double(o, 1.5, Proto::Resp2)), b"$3\r\n1.5\r\n");
        assert_eq!(enc(|o| double(o, f64::INFINITY, Proto::Resp3)), b",inf\r\n");
        assert_eq!(
            enc(|o| double(o, f64::NEG_INFINITY, Proto::Resp3)),
            b",-inf\r\n"
        );
        assert_eq!(enc(|o| double(o, f64::NAN, Proto::Resp3)), b",nan\r\n");
        assert_eq!(
            enc(|o| double(o, f64::INFINITY, Proto::Resp2)),
            b"$3\r\ninf\r\n"
        );
        assert_eq!(
            enc(|o| double(o, f64::NEG_INFINITY, Proto::Resp2)),
            b"$4\r\n-inf\r\n"
        );
        for (d, s) in [
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (-3.0, "-3"),
            (0.1, "0.1"),
            (-0.1, "-0.1"),
            (2.75, "2.75"),
            (1e-6, "0.000001"),
            (1.5e-6, "1.5e-6"),
            (1.5e-5, "0.000015"),
            (1e-7, "1e-7"),
            (1.5e-7, "1.5e-7"),
            (0.001234, "0.001234"),
            (1.2345678901234567e-3, "0.0012345678901234567"),
            (123456.789, "123456.789"),
            (4611686018427387904.0, "4611686018427387904"),
            (9.223372036854776e18, "9223372036854776000"),
            (1e19, "1e+19"),
            (1.5e20, "1.5e+20"),
            (1e22, "1e+22"),
            (1e100, "1e+100"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (-1.7976931348623157e308, "-1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (2.5e-10, "2.5e-10"),
            (1e105, "1e+105"),
        ] {
            assert_eq!(dbl(d), s, "{d:e}");
        }
    }

    #[test]
    fn request_is_a_multibulk_of_bulks() {
        assert_eq!(
            enc(|o| request(o, &[b"SET", b"k", b""])),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"
        );
        assert_eq!(enc(|o| request(o, &[])), b"*0\r\n");
    }

    proptest! {
        #[test]
        fn integers_match_std_formatting(i in any::<i64>()) {
            prop_assert_eq!(enc(|o| integer(o, i)), format!(":{i}\r\n").into_bytes());
        }

        #[test]
        fn doubles_round_trip(bits in any::<u64>()) {
            let d = f64::from_bits(bits);
            let s = dbl(d);
            let back: f64 = s.parse().unwrap();
            if d.is_nan() {
                prop_assert!(back.is_nan());
            } else {
                prop_assert_eq!(back.to_bits(), d.to_bits(), "{}", s);
            }
        }
    }
}
