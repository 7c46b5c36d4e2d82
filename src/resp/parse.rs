//! Client requests: one multibulk or inline request cut off the front of a read buffer.
//!
//! The grammar, limits and error texts are those of Redis 7 (`networking.c`:
//! `processMultibulkBuffer`, `processInlineBuffer`; `sds.c`: `sdssplitargs`; `util.c`:
//! `string2ll`), so `redis-cli`, `redis-benchmark` and client libraries see the same behaviour.
//! Deliberate differences, all stricter or more deterministic:
//! - the two bytes after a bulk payload must be `\r\n` (Redis skips them unread), and the byte after
//!   the `\r` of a `*N`/`$N` header line must be `\n`;
//! - a line (inline request or `*N`/`$N` header) longer than [`Limits::max_inline_len`] is refused
//!   even when its newline is already in the buffer, so the answer does not depend on how the
//!   bytes were split across reads (Redis only checks while the newline is missing);
//! - an inline line may contain NUL bytes: they are ordinary bytes (Redis stops at them, as C
//!   strings do, and then waits for a newline it never finds).

use thiserror::Error;

/// Size limits applied while parsing; anything larger is a protocol error, refused before any
/// allocation.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest bulk string (Redis `proto-max-bulk-len`, default 512 MiB).
    pub max_bulk_len: usize,
    /// Most arguments in one multibulk request (Redis: 1024*1024). [`parse_value`] applies it to
    /// the element count of each aggregate.
    ///
    /// [`parse_value`]: super::parse_value
    pub max_args: usize,
    /// Longest inline request line, and longest `*N` / `$N` header line (Redis
    /// `PROTO_INLINE_MAX_SIZE`, 64 KiB). [`parse_value`] applies it to line-type replies.
    ///
    /// [`parse_value`]: super::parse_value
    pub max_inline_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_args: 1024 * 1024,
            max_inline_len: 64 * 1024,
        }
    }
}

/// Why a frame could not be parsed.
#[derive(Debug, PartialEq, Eq, Error)]
pub enum ParseError {
    /// The buffer holds only the start of a frame: read more bytes and call again.
    #[error("incomplete frame")]
    Incomplete,
    /// The bytes can never become a valid frame. The message is what Redis would send after
    /// `-ERR ` before closing the connection.
    #[error("{0}")]
    Protocol(String),
}

pub(crate) const TOO_BIG_INLINE: &str = "Protocol error: too big inline request";
pub(crate) const UNBALANCED_QUOTES: &str = "Protocol error: unbalanced quotes in request";
pub(crate) const TOO_BIG_MBULK: &str = "Protocol error: too big mbulk count string";
pub(crate) const INVALID_MBULK: &str = "Protocol error: invalid multibulk length";
pub(crate) const TOO_BIG_BULK: &str = "Protocol error: too big bulk count string";
pub(crate) const INVALID_BULK: &str = "Protocol error: invalid bulk length";
/// Not a Redis message: Redis does not check the two bytes after a bulk payload.
pub(crate) const BULK_NOT_TERMINATED: &str = "Protocol error: bulk data not followed by CRLF";

pub(crate) fn protocol(msg: &str) -> ParseError {
    ParseError::Protocol(msg.to_owned())
}

/// Parses one request from the start of `buf`: multibulk (`*N\r\n$len\r\n…\r\n`) or inline
/// (`SET a b\r\n`, split with Redis' `sdssplitargs` quoting rules).
///
/// Returns the arguments and the number of bytes consumed. `Ok((vec![], n))` is an empty command
/// (an empty inline line, `*0\r\n`, `*-1\r\n`): the caller skips `n` bytes and goes on.
/// [`ParseError::Incomplete`] means "read more and call again"; calling again is cheap, since no
/// payload is copied until the whole frame is present.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<(Vec<Vec<u8>>, usize), ParseError> {
    match buf.first() {
        None => Err(ParseError::Incomplete),
        Some(b'*') => {
            // Check pass: walk the frame without copying anything.
            let (argc, consumed) = walk_multibulk(buf, limits, |_| {})?;
            // Parse pass: every argument is known to be present, so argc is backed by at least
            // 6 bytes of buffer each ("$0\r\n\r\n") and the capacity is not attacker-inflated.
            let mut args = Vec::with_capacity(argc);
            walk_multibulk(buf, limits, |arg| args.push(arg.to_vec()))?;
            Ok((args, consumed))
        }
        Some(_) => parse_inline(buf, limits),
    }
}

/// Walks one multibulk request (`buf[0] == b'*'`), handing each argument (borrowed from `buf`)
/// to `on_arg`. Returns (argument count, bytes consumed).
///
/// The checks follow `processMultibulkBuffer` in order, so the same bytes give the same error
/// as Redis; an error is reported as soon as the bytes that prove it are present.
fn walk_multibulk<'a>(
    buf: &'a [u8],
    limits: &Limits,
    mut on_arg: impl FnMut(&'a [u8]),
) -> Result<(usize, usize), ParseError> {
    let (count_line, mut pos) = header_line(buf, 0, limits, TOO_BIG_MBULK, INVALID_MBULK)?;
    let count = count_line
        .get(1..)
        .and_then(string2ll)
        .ok_or_else(|| protocol(INVALID_MBULK))?;
    if count <= 0 {
        // Redis skips `*0`, `*-1` (and any negative count) as an empty command.
        return Ok((0, pos));
    }
    let count = match usize::try_from(count) {
        Ok(n) if n <= limits.max_args => n,
        _ => return Err(protocol(INVALID_MBULK)),
    };
    for _ in 0..count {
        let (len_line, data_start) = header_line(buf, pos, limits, TOO_BIG_BULK, INVALID_BULK)?;
        match len_line.first() {
            Some(b'$') => {}
            // An empty line: the argument starts with the '\r' of its own line end.
            other => return Err(expected_dollar(other.copied().unwrap_or(b'\r'))),
        }
        let len = len_line.get(1..).and_then(string2ll);
        let len = match len.map(usize::try_from) {
            Some(Ok(n)) if n <= limits.max_bulk_len => n,
            _ => return Err(protocol(INVALID_BULK)),
        };
        let data_end = data_start
            .checked_add(len)
            .ok_or_else(|| protocol(INVALID_BULK))?;
        match (buf.get(data_end), buf.get(data_end.saturating_add(1))) {
            (Some(b'\r'), Some(b'\n')) => {}
            (None, _) | (Some(b'\r'), None) => return Err(ParseError::Incomplete),
            _ => return Err(protocol(BULK_NOT_TERMINATED)),
        }
        let data = buf
            .get(data_start..data_end)
            .ok_or(ParseError::Incomplete)?;
        on_arg(data);
        pos = data_end + 2;
    }
    Ok((count, pos))
}

/// "expected '$', got 'X'", with the byte as Redis prints it (`%c`), except that `\r` and `\n`
/// become spaces as Redis' `addReplyErrorFormat` does, so the text is what goes on the wire.
fn expected_dollar(got: u8) -> ParseError {
    let got = match got {
        b'\r' | b'\n' => ' ',
        b => char::from(b),
    };
    ParseError::Protocol(format!("Protocol error: expected '$', got '{got}'"))
}

/// Finds the `\r\n`-terminated header line that starts at `start` (type byte included).
/// Returns the line without its `\r\n`, and the position after it.
///
/// Like Redis, looks for the first `\r`; if none is within `max_inline_len + 1` bytes of the line
/// start the line is refused with `too_big`. The byte after `\r` must be `\n` (else `bad`).
fn header_line<'a>(
    buf: &'a [u8],
    start: usize,
    limits: &Limits,
    too_big: &str,
    bad: &str,
) -> Result<(&'a [u8], usize), ParseError> {
    let rest = buf.get(start..).unwrap_or_default();
    let window = &rest[..rest.len().min(limits.max_inline_len.saturating_add(1))];
    match window.iter().position(|&b| b == b'\r') {
        None if rest.len() > limits.max_inline_len => Err(protocol(too_big)),
        None => Err(ParseError::Incomplete),
        Some(cr) => match rest.get(cr + 1) {
            None => Err(ParseError::Incomplete),
            Some(b'\n') => Ok((&rest[..cr], start + cr + 2)),
            Some(_) => Err(protocol(bad)),
        },
    }
}

/// Redis' `string2ll`: an optional `-`, then `0` alone or a digit string without leading zeros,
/// within i64. No `+`, no spaces, no empty string, no `-0`.
pub(crate) fn string2ll(s: &[u8]) -> Option<i64> {
    if s == b"0" {
        return Some(0);
    }
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
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

/// Parses an inline request: one line ended by `\n` (an optional `\r` before it is dropped).
fn parse_inline(buf: &[u8], limits: &Limits) -> Result<(Vec<Vec<u8>>, usize), ParseError> {
    let window = &buf[..buf.len().min(limits.max_inline_len.saturating_add(1))];
    let Some(newline) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() > limits.max_inline_len {
            Err(protocol(TOO_BIG_INLINE))
        } else {
            Err(ParseError::Incomplete)
        };
    };
    let line = &buf[..newline];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let args = split_args(line).ok_or_else(|| protocol(UNBALANCED_QUOTES))?;
    Ok((args, newline + 1))
}

/// C `isspace` in the "C" locale: what `sdssplitargs` skips between arguments and accepts after
/// a closing quote.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Redis' `sdssplitargs`, over a byte slice instead of a C string. `None` is "unbalanced quotes":
/// an unterminated quote, or a closing quote followed by something other than a space.
///
/// - arguments are separated by whitespace (`isspace`); inside an unquoted argument only
///   space, `\t`, `\r`, `\n` end it (so `\v` and `\f` are kept, as in Redis);
/// - `"…"`: `\n \r \t \b \a` escapes, `\xHH` (two hex digits) for any byte, `\` before any other
///   byte gives that byte;
/// - `'…'`: only `\'` is an escape; everything else is literal;
/// - quotes may start in the middle of an argument (`ab"cd"` is `abcd`).
fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while line.get(i).is_some_and(|&b| is_c_space(b)) {
            i += 1;
        }
        if i >= line.len() {
            return Some(args);
        }
        let mut current = Vec::new();
        let mut in_double = false;
        let mut in_single = false;
        loop {
            let c = line.get(i).copied();
            let next = line.get(i + 1).copied();
            if in_double {
                match c {
                    None => return None,
                    Some(b'\\') if next == Some(b'x') => {
                        let hi = line.get(i + 2).copied().and_then(hex_value);
                        let lo = line.get(i + 3).copied().and_then(hex_value);
                        if let (Some(hi), Some(lo)) = (hi, lo) {
                            current.push(hi * 16 + lo);
                            i += 3;
                        } else {
                            // `\x` without two hex digits is an ordinary escape: gives 'x'.
                            current.push(b'x');
                            i += 1;
                        }
                    }
                    Some(b'\\') if next.is_some() => {
                        i += 1;
                        current.push(match next {
                            Some(b'n') => b'\n',
                            Some(b'r') => b'\r',
                            Some(b't') => b'\t',
                            Some(b'b') => 0x08,
                            Some(b'a') => 0x07,
                            Some(other) => other,
                            None => return None,
                        });
                    }
                    Some(b'"') => {
                        if next.is_some_and(|b| !is_c_space(b)) {
                            return None;
                        }
                        i += 1;
                        break;
                    }
                    Some(b) => current.push(b),
                }
            } else if in_single {
                match c {
                    None => return None,
                    Some(b'\\') if next == Some(b'\'') => {
                        i += 1;
                        current.push(b'\'');
                    }
                    Some(b'\'') => {
                        if next.is_some_and(|b| !is_c_space(b)) {
                            return None;
                        }
                        i += 1;
                        break;
                    }
                    Some(b) => current.push(b),
                }
            } else {
                match c {
                    None => break,
                    Some(b' ' | b'\n' | b'\r' | b'\t') => {
                        i += 1;
                        break;
                    }
                    Some(b'"') => in_double = true,
                    Some(b'\'') => in_single = true,
                    Some(b) => current.push(b),
                }
            }
            i += 1;
        }
        args.push(current);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::encode;
    use proptest::prelude::*;

    fn parse(buf: &[u8]) -> Result<(Vec<Vec<u8>>, usize), ParseError> {
        parse_request(buf, &Limits::default())
    }

    fn args(buf: &[u8]) -> Vec<Vec<u8>> {
        match parse(buf) {
            Ok((args, used)) => {
                assert_eq!(used, buf.len(), "whole frame consumed for {buf:?}");
                args
            }
            Err(e) => panic!("{buf:?} gave {e:?}"),
        }
    }

    fn strs(args: &[&str]) -> Vec<Vec<u8>> {
        args.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    fn protocol_error(buf: &[u8]) -> String {
        protocol_error_with(buf, &Limits::default())
    }

    fn protocol_error_with(buf: &[u8], limits: &Limits) -> String {
        match parse_request(buf, limits) {
            Err(ParseError::Protocol(m)) => m,
            other => panic!("{buf:?}: expected a protocol error, got {other:?}"),
        }
    }

    fn small_limits() -> Limits {
        Limits {
            max_bulk_len: 10,
            max_args: 3,
            max_inline_len: 16,
        }
    }

    #[test]
    fn multibulk_request_is_parsed() {
        assert_eq!(
            args(b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$5\r\nhello\r\n"),
            strs(&["SET", "a", "hello"])
        );
    }

    #[test]
    fn pipelined_requests_are_parsed_one_after_another() {
        let pipeline: &[u8] =
            b"*1\r\n$4\r\nPING\r\nECHO 'x y'\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n\n*0\r\nPING\n";
        let mut rest = pipeline;
        let mut seen = Vec::new();
        while !rest.is_empty() {
            let (args, used) = parse(rest).expect("valid pipeline");
            assert!(used > 0);
            seen.push(args);
            rest = &rest[used..];
        }
        assert_eq!(
            seen,
            vec![
                strs(&["PING"]),
                strs(&["ECHO", "x y"]),
                strs(&["GET", "k"]),
                vec![],
                vec![],
                strs(&["PING"]),
            ]
        );
    }

    #[test]
    fn bytes_after_a_frame_are_not_consumed() {
        let (a, used) = parse(b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPI").unwrap();
        assert_eq!((a, used), (strs(&["PING"]), 14));
        let (a, used) = parse(b"GET k\r\nSET").unwrap();
        assert_eq!((a, used), (strs(&["GET", "k"]), 7));
    }

    #[test]
    fn every_prefix_of_a_valid_frame_is_incomplete() {
        let frames: &[&[u8]] = &[
            b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$5\r\nhel\r\n\r\n",
            b"*2\r\n$0\r\n\r\n$10\r\n0123456789\r\n",
            b"*0\r\n",
            b"*-1\r\n",
            b"SET \"a b\" 'c'\r\n",
            b"PING\n",
            b"\r\n",
            b"\n",
        ];
        for frame in frames {
            let (_, used) = parse(frame).expect("valid frame");
            assert_eq!(used, frame.len());
            for cut in 0..frame.len() {
                assert_eq!(
                    parse(&frame[..cut]),
                    Err(ParseError::Incomplete),
                    "prefix {:?}",
                    &frame[..cut]
                );
            }
        }
    }

    #[test]
    fn bulk_payload_is_binary_safe() {
        let frame = b"*2\r\n$4\r\nECHO\r\n$8\r\n\r\n\0\xff*1\r\n\r\n";
        assert_eq!(
            args(frame),
            vec![b"ECHO".to_vec(), b"\r\n\0\xff*1\r\n".to_vec()]
        );
    }

    #[test]
    fn empty_bulk_is_an_empty_argument() {
        assert_eq!(args(b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n"), strs(&["GET", ""]));
    }

    #[test]
    fn empty_and_null_multibulk_are_empty_commands() {
        assert_eq!(parse(b"*0\r\n"), Ok((vec![], 4)));
        assert_eq!(parse(b"*-1\r\n"), Ok((vec![], 5)));
        // Redis treats any count <= 0 as an empty command.
        assert_eq!(parse(b"*-7\r\n*1\r\n"), Ok((vec![], 5)));
    }

    #[test]
    fn empty_inline_lines_are_empty_commands() {
        assert_eq!(parse(b"\r\n"), Ok((vec![], 2)));
        assert_eq!(parse(b"\n"), Ok((vec![], 1)));
        assert_eq!(parse(b"  \t \r\n"), Ok((vec![], 6)));
    }

    #[test]
    fn inline_accepts_bare_lf_and_crlf() {
        assert_eq!(parse(b"PING\n"), Ok((strs(&["PING"]), 5)));
        assert_eq!(parse(b"PING\r\n"), Ok((strs(&["PING"]), 6)));
        // Only one \r before the \n belongs to the line end; another one is whitespace.
        assert_eq!(parse(b"PING\r\r\n"), Ok((strs(&["PING"]), 7)));
    }

    #[test]
    fn inline_splits_on_whitespace() {
        assert_eq!(
            args(b"  SET\t\tkey   value \r\n"),
            strs(&["SET", "key", "value"])
        );
        // \v and \f are skipped between arguments but kept inside one, as in sdssplitargs.
        assert_eq!(args(b"\x0bA\x0bB \x0cC\n"), strs(&["A\x0bB", "C"]));
        // A lone \r inside the line separates arguments.
        assert_eq!(args(b"A\rB\n"), strs(&["A", "B"]));
    }

    #[test]
    fn inline_double_quotes_understand_escapes() {
        assert_eq!(
            args(b"ECHO \"a\\n\\r\\t\\b\\a\\\\\\\"z\"\r\n"),
            vec![b"ECHO".to_vec(), b"a\n\r\t\x08\x07\\\"z".to_vec()]
        );
        assert_eq!(
            args(b"ECHO \"\\x41\\x00\\xfF\"\n"),
            vec![b"ECHO".to_vec(), b"A\0\xff".to_vec()]
        );
        // \x without two hex digits is just an escaped 'x'; other escaped bytes are themselves.
        assert_eq!(args(b"ECHO \"\\xZZ\\x4\\q\"\n"), strs(&["ECHO", "xZZx4q"]));
        assert_eq!(args(b"ECHO \"a b\"\n"), strs(&["ECHO", "a b"]));
    }

    #[test]
    fn inline_single_quotes_only_escape_the_quote() {
        assert_eq!(
            args(b"ECHO 'it\\'s \\n \"x\"'\n"),
            strs(&["ECHO", "it's \\n \"x\""])
        );
    }

    #[test]
    fn inline_empty_quoted_arguments_are_kept() {
        assert_eq!(args(b"SET k \"\"\n"), strs(&["SET", "k", ""]));
        assert_eq!(args(b"SET k ''\n"), strs(&["SET", "k", ""]));
    }

    #[test]
    fn inline_quotes_may_start_inside_an_argument() {
        assert_eq!(args(b"ab\"c d\" e\n"), strs(&["abc d", "e"]));
        assert_eq!(args(b"ab'c d'\n"), strs(&["abc d"]));
    }

    #[test]
    fn inline_closing_quote_followed_by_space_or_end() {
        assert_eq!(args(b"\"a\"\t\"b\"\x0b'c'\n"), strs(&["a", "b", "c"]));
        assert_eq!(protocol_error(b"\"a\"b\n"), UNBALANCED_QUOTES);
        assert_eq!(protocol_error(b"'a'b\n"), UNBALANCED_QUOTES);
    }

    #[test]
    fn inline_unterminated_quotes_are_unbalanced() {
        assert_eq!(protocol_error(b"SET \"a\r\n"), UNBALANCED_QUOTES);
        assert_eq!(protocol_error(b"SET 'a\n"), UNBALANCED_QUOTES);
        assert_eq!(protocol_error(b"SET \"a\\\"\n"), UNBALANCED_QUOTES);
        assert_eq!(protocol_error(b"SET \"a\\\n"), UNBALANCED_QUOTES);
    }

    #[test]
    fn inline_nul_is_an_ordinary_byte() {
        assert_eq!(
            args(b"SET a\0b \"\0\"\n"),
            vec![b"SET".to_vec(), b"a\0b".to_vec(), b"\0".to_vec()]
        );
    }

    #[test]
    fn inline_line_too_long_is_refused() {
        let limits = small_limits();
        // Up to max_inline_len bytes without a newline: wait for more.
        assert_eq!(
            parse_request(&[b'a'; 16], &limits),
            Err(ParseError::Incomplete)
        );
        // One more byte and still no newline: refused.
        assert_eq!(protocol_error_with(&[b'a'; 17], &limits), TOO_BIG_INLINE);
        // A line of exactly max_inline_len bytes (its \r included) is accepted.
        let mut line = vec![b'a'; 15];
        line.extend_from_slice(b"\r\n");
        assert_eq!(
            parse_request(&line, &limits),
            Ok((vec![vec![b'a'; 15]], 17))
        );
        // Longer than that is refused even when the newline is already there.
        let mut line = vec![b'a'; 17];
        line.push(b'\n');
        assert_eq!(protocol_error_with(&line, &limits), TOO_BIG_INLINE);
        // Default limit: 64 KiB.
        assert_eq!(protocol_error(&vec![b'x'; 64 * 1024 + 1]), TOO_BIG_INLINE);
        assert_eq!(parse(&vec![b'x'; 64 * 1024]), Err(ParseError::Incomplete));
    }

    #[test]
    fn multibulk_count_must_be_a_number() {
        for bad in [
            &b"*abc\r\n"[..],
            b"*\r\n",
            b"*01\r\n",
            b"*-0\r\n",
            b"*+1\r\n",
            b"* 1\r\n",
            b"*1 \r\n",
            b"*1\n\r\n",
            b"*99999999999999999999\r\n",
        ] {
            assert_eq!(protocol_error(bad), INVALID_MBULK, "{bad:?}");
        }
    }

    #[test]
    fn multibulk_count_line_needs_lf_after_cr() {
        assert_eq!(protocol_error(b"*1\rX$1\r\na\r\n"), INVALID_MBULK);
        assert_eq!(parse(b"*1\r"), Err(ParseError::Incomplete));
    }

    #[test]
    fn multibulk_count_above_max_args_is_refused() {
        assert_eq!(protocol_error(b"*1048577\r\n"), INVALID_MBULK);
        assert_eq!(parse(b"*1048576\r\n"), Err(ParseError::Incomplete));
        assert_eq!(
            protocol_error_with(b"*4\r\n", &small_limits()),
            INVALID_MBULK
        );
    }

    #[test]
    fn multibulk_count_line_without_cr_is_too_big() {
        let mut buf = b"*".to_vec();
        buf.extend(std::iter::repeat_n(b'1', 64 * 1024));
        assert_eq!(protocol_error(&buf), TOO_BIG_MBULK);
        buf.pop();
        assert_eq!(parse(&buf), Err(ParseError::Incomplete));
    }

    #[test]
    fn argument_must_start_with_dollar() {
        assert_eq!(
            protocol_error(b"*1\r\n:1\r\n"),
            "Protocol error: expected '$', got ':'"
        );
        assert_eq!(
            protocol_error(b"*2\r\n$3\r\nGET\r\nfoo\r\n"),
            "Protocol error: expected '$', got 'f'"
        );
        assert_eq!(
            protocol_error(b"*1\r\n\r\n"),
            "Protocol error: expected '$', got ' '"
        );
        assert_eq!(
            protocol_error(b"*1\r\n\n\r\n"),
            "Protocol error: expected '$', got ' '"
        );
        // As in Redis, the check comes once the header line is complete.
        assert_eq!(parse(b"*1\r\nfoo"), Err(ParseError::Incomplete));
    }

    #[test]
    fn bulk_length_must_be_valid() {
        for bad in [
            &b"*1\r\n$-1\r\n"[..],
            b"*1\r\n$-5\r\n",
            b"*1\r\n$abc\r\n",
            b"*1\r\n$\r\n",
            b"*1\r\n$01\r\n",
            b"*1\r\n$+1\r\n",
            b"*1\r\n$1 \r\n",
            b"*1\r\n$536870913\r\n",
            b"*1\r\n$99999999999999999999\r\n",
            b"*1\r\n$1\rX",
        ] {
            assert_eq!(protocol_error(bad), INVALID_BULK, "{bad:?}");
        }
        assert_eq!(
            protocol_error_with(b"*1\r\n$11\r\n", &small_limits()),
            INVALID_BULK
        );
    }

    #[test]
    fn bulk_length_line_without_cr_is_too_big() {
        let mut buf = b"*1\r\n$".to_vec();
        buf.extend(std::iter::repeat_n(b'1', 64 * 1024));
        assert_eq!(protocol_error(&buf), TOO_BIG_BULK);
        buf.pop();
        assert_eq!(parse(&buf), Err(ParseError::Incomplete));
    }

    #[test]
    fn bulk_payload_must_be_followed_by_crlf() {
        assert_eq!(
            protocol_error(b"*1\r\n$3\r\nfooXY*1\r\n"),
            BULK_NOT_TERMINATED
        );
        assert_eq!(protocol_error(b"*1\r\n$3\r\nfoo\rX"), BULK_NOT_TERMINATED);
        assert_eq!(protocol_error(b"*1\r\n$3\r\nfoo\n\r"), BULK_NOT_TERMINATED);
        // Reported as soon as the first wrong byte is there.
        assert_eq!(protocol_error(b"*1\r\n$3\r\nfooX"), BULK_NOT_TERMINATED);
        assert_eq!(parse(b"*1\r\n$3\r\nfoo\r"), Err(ParseError::Incomplete));
    }

    #[test]
    fn huge_declared_sizes_wait_without_allocating() {
        // Neither of these may allocate what they announce: they are just incomplete.
        assert_eq!(
            parse(b"*1048576\r\n$3\r\nfoo\r\n"),
            Err(ParseError::Incomplete)
        );
        assert_eq!(
            parse(b"*1\r\n$536870912\r\nabc"),
            Err(ParseError::Incomplete)
        );
    }

    #[test]
    fn string2ll_matches_redis() {
        assert_eq!(string2ll(b"0"), Some(0));
        assert_eq!(string2ll(b"-1"), Some(-1));
        assert_eq!(string2ll(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(string2ll(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"-0",
            b"00",
            b"01",
            b"+1",
            b" 1",
            b"1a",
            b"9223372036854775808",
            b"-9223372036854775809",
        ] {
            assert_eq!(string2ll(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn parse_error_displays_the_redis_message() {
        assert_eq!(protocol(INVALID_BULK).to_string(), INVALID_BULK);
        assert_eq!(ParseError::Incomplete.to_string(), "incomplete frame");
    }

    /// Quotes an argument the way a careful inline client would: `"…"` with `\xHH` escapes.
    fn quote_inline(arg: &[u8]) -> Vec<u8> {
        let mut out = b"\"".to_vec();
        for &b in arg {
            if b.is_ascii_alphanumeric() || b == b' ' {
                out.push(b);
            } else {
                out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
            }
        }
        out.push(b'"');
        out
    }

    proptest! {
        #[test]
        fn encoded_requests_parse_back(
            argv in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..8)
        ) {
            let refs: Vec<&[u8]> = argv.iter().map(Vec::as_slice).collect();
            let mut wire = Vec::new();
            encode::request(&mut wire, &refs);
            prop_assert_eq!(parse(&wire), Ok((argv.clone(), wire.len())));
            for cut in 0..wire.len() {
                prop_assert_eq!(parse(&wire[..cut]), Err(ParseError::Incomplete));
            }
        }

        #[test]
        fn quoted_inline_requests_parse_back(
            argv in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..20), 1..6)
        ) {
            let mut line = Vec::new();
            for arg in &argv {
                line.extend_from_slice(&quote_inline(arg));
                line.push(b' ');
            }
            line.extend_from_slice(b"\r\n");
            prop_assert_eq!(parse(&line), Ok((argv.clone(), line.len())));
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_respect_bounds(
            bytes in prop::collection::vec(any::<u8>(), 0..200)
        ) {
            if let Ok((_, used)) = parse(&bytes) {
                prop_assert!(used > 0 && used <= bytes.len());
            }
        }
    }
}
