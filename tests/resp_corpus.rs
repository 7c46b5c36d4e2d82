//! The RESP parsers against the fuzz seed corpus and a table of malformed inputs.
//!
//! Every file in `fuzz/corpus/resp_request/` and `fuzz/corpus/resp_value/` is replayed with the
//! invariants the fuzz targets check (no panic; a parsed frame is a non-empty prefix, parses the
//! same alone, and is Incomplete one byte short; a request survives re-encoding). Crashes found
//! by fuzzing are added to the corpus, so they stay fixed. Seeds named `err_*` must be
//! protocol errors; the named tables pin the exact error text for each malformed case.

use std::fs;
use std::path::PathBuf;

use hotbackup::resp::{Limits, ParseError, Value, encode, parse_request, parse_value};

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("corpus entry").path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (name, bytes)
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "{} holds only {} seeds",
        dir.display(),
        files.len()
    );
    files
}

/// The limits the fuzz targets use besides the defaults, so limit paths get exercised.
fn small_limits() -> Limits {
    Limits {
        max_bulk_len: 64,
        max_args: 8,
        max_inline_len: 32,
    }
}

fn check_request_invariants(name: &str, data: &[u8]) {
    for limits in [Limits::default(), small_limits()] {
        // Walk the buffer as a server would: request after request until it runs out.
        let mut rest = data;
        while let Ok((args, used)) = parse_request(rest, &limits) {
            assert!(
                used > 0 && used <= rest.len(),
                "{name}: consumed {used} of {}",
                rest.len()
            );
            assert_eq!(
                parse_request(&rest[..used], &limits),
                Ok((args.clone(), used)),
                "{name}: the frame alone parses differently"
            );
            assert_eq!(
                parse_request(&rest[..used - 1], &limits),
                Err(ParseError::Incomplete),
                "{name}: one byte short is not Incomplete"
            );
            let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let mut wire = Vec::new();
            encode::request(&mut wire, &refs);
            match parse_request(&wire, &limits) {
                Ok(again) => assert_eq!(again, (args, wire.len()), "{name}: re-encoding"),
                Err(e) => assert!(
                    args.len() > limits.max_args,
                    "{name}: re-encoded request failed: {e:?}"
                ),
            }
            rest = &rest[used..];
        }
    }
}

fn check_value_invariants(name: &str, data: &[u8]) {
    for limits in [Limits::default(), small_limits()] {
        let mut rest = data;
        while let Ok((value, used)) = parse_value(rest, &limits) {
            assert!(
                used > 0 && used <= rest.len(),
                "{name}: consumed {used} of {}",
                rest.len()
            );
            let alone = parse_value(&rest[..used], &limits)
                .unwrap_or_else(|e| panic!("{name}: the reply alone fails: {e:?}"));
            // Debug form: exact, and NaN-proof.
            assert_eq!(format!("{alone:?}"), format!("{:?}", (value, used)));
            assert_eq!(
                parse_value(&rest[..used - 1], &limits),
                Err(ParseError::Incomplete),
                "{name}: one byte short is not Incomplete"
            );
            rest = &rest[used..];
        }
    }
}

#[test]
fn request_corpus_upholds_the_parser_invariants() {
    for (name, data) in corpus("resp_request") {
        check_request_invariants(&name, &data);
    }
}

#[test]
fn value_corpus_upholds_the_parser_invariants() {
    for (name, data) in corpus("resp_value") {
        check_value_invariants(&name, &data);
    }
}

#[test]
fn request_seeds_named_err_are_protocol_errors() {
    for (name, data) in corpus("resp_request") {
        if name.starts_with("err_") {
            let got = parse_request(&data, &Limits::default());
            assert!(
                matches!(got, Err(ParseError::Protocol(_))),
                "{name}: {got:?}"
            );
        }
    }
}

#[test]
fn value_seeds_named_err_are_protocol_errors() {
    for (name, data) in corpus("resp_value") {
        if name.starts_with("err_") {
            let got = parse_value(&data, &Limits::default());
            assert!(
                matches!(got, Err(ParseError::Protocol(_))),
                "{name}: {got:?}"
            );
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Expect {
    Protocol(&'static str),
    Incomplete,
}

fn assert_case(name: &str, got: Result<impl std::fmt::Debug, ParseError>, want: Expect) {
    match (want, got) {
        (Expect::Protocol(msg), Err(ParseError::Protocol(got))) => {
            assert_eq!(got, msg, "{name}")
        }
        (Expect::Incomplete, Err(ParseError::Incomplete)) => {}
        (want, got) => panic!("{name}: wanted {want:?}, got {got:?}"),
    }
}

fn with_tail(head: &[u8], fill: u8, n: usize, tail: &[u8]) -> Vec<u8> {
    let mut v = head.to_vec();
    v.extend(std::iter::repeat_n(fill, n));
    v.extend_from_slice(tail);
    v
}

const TOO_BIG_INLINE: &str = "Protocol error: too big inline request";
const UNBALANCED: &str = "Protocol error: unbalanced quotes in request";
const TOO_BIG_MBULK: &str = "Protocol error: too big mbulk count string";
const INVALID_MBULK: &str = "Protocol error: invalid multibulk length";
const TOO_BIG_BULK: &str = "Protocol error: too big bulk count string";
const INVALID_BULK: &str = "Protocol error: invalid bulk length";
const BULK_NOT_TERMINATED: &str = "Protocol error: bulk data not followed by CRLF";

/// Malformed or cut requests, each with the exact answer (default limits).
fn request_cases() -> Vec<(&'static str, Vec<u8>, Expect)> {
    use Expect::*;
    let kib64 = 64 * 1024;
    vec![
        ("empty_buffer", b"".to_vec(), Incomplete),
        ("inline_without_newline", b"PING".to_vec(), Incomplete),
        (
            "inline_64k_without_newline_waits",
            vec![b'a'; kib64],
            Incomplete,
        ),
        (
            "inline_over_64k_without_newline",
            vec![b'a'; kib64 + 1],
            Protocol(TOO_BIG_INLINE),
        ),
        (
            "inline_over_64k_with_newline",
            with_tail(b"", b'a', kib64 + 1, b"\r\n"),
            Protocol(TOO_BIG_INLINE),
        ),
        (
            "inline_unterminated_double_quote",
            b"SET \"a\r\n".to_vec(),
            Protocol(UNBALANCED),
        ),
        (
            "inline_unterminated_single_quote",
            b"SET 'a\n".to_vec(),
            Protocol(UNBALANCED),
        ),
        (
            "inline_closing_quote_then_letter",
            b"SET \"a\"b c\r\n".to_vec(),
            Protocol(UNBALANCED),
        ),
        (
            "inline_closing_single_quote_then_letter",
            b"SET 'a'b\r\n".to_vec(),
            Protocol(UNBALANCED),
        ),
        (
            "inline_escaped_closing_quote",
            b"ECHO \"a\\\"\n".to_vec(),
            Protocol(UNBALANCED),
        ),
        (
            "inline_backslash_at_end",
            b"ECHO \"a\\\n".to_vec(),
            Protocol(UNBALANCED),
        ),
        ("mbulk_count_cut", b"*3".to_vec(), Incomplete),
        ("mbulk_count_cr_only", b"*3\r".to_vec(), Incomplete),
        (
            "mbulk_count_not_a_number",
            b"*abc\r\n".to_vec(),
            Protocol(INVALID_MBULK),
        ),
        (
            "mbulk_count_empty",
            b"*\r\n".to_vec(),
            Protocol(INVALID_MBULK),
        ),
        (
            "mbulk_count_leading_zero",
            b"*03\r\n".to_vec(),
            Protocol(INVALID_MBULK),
        ),
        (
            "mbulk_count_minus_zero",
            b"*-0\r\n".to_vec(),
            Protocol(INVALID_MBULK),
        ),
        (
            "mbulk_count_plus_sign",
            b"*+1\r\n".to_vec(),
            Protocol(INVALID_MBULK),
        ),
        (
            "mbulk_count_overflows_i64",
            b"*9223372036854775808\r\n".to_vec(),
            Protocol(INVALID_MBULK),
        ),
        (
            "mbulk_count_above_max_args",
            b"*1048577\r\n".to_vec(),
            Protocol(INVALID_MBULK),
        ),
        (
            "mbulk_count_at_max_args_waits",
            b"*1048576\r\n".to_vec(),
            Incomplete,
        ),
        (
            "mbulk_count_cr_not_lf",
            b"*1\rX".to_vec(),
            Protocol(INVALID_MBULK),
        ),
        (
            "mbulk_count_line_over_64k",
            with_tail(b"*", b'1', kib64, b""),
            Protocol(TOO_BIG_MBULK),
        ),
        (
            "mbulk_count_line_over_64k_with_cr",
            with_tail(b"*", b'1', kib64, b"\r\n"),
            Protocol(TOO_BIG_MBULK),
        ),
        (
            "expected_dollar_got_colon",
            b"*1\r\n:1\r\n".to_vec(),
            Protocol("Protocol error: expected '$', got ':'"),
        ),
        (
            "expected_dollar_got_inline",
            b"*2\r\n$3\r\nGET\r\nkey\r\n".to_vec(),
            Protocol("Protocol error: expected '$', got 'k'"),
        ),
        (
            "expected_dollar_got_cr",
            b"*1\r\n\r\n".to_vec(),
            Protocol("Protocol error: expected '$', got ' '"),
        ),
        ("bulk_header_cut", b"*1\r\n$3".to_vec(), Incomplete),
        (
            "bulk_len_negative",
            b"*1\r\n$-1\r\n".to_vec(),
            Protocol(INVALID_BULK),
        ),
        (
            "bulk_len_not_a_number",
            b"*1\r\n$x\r\n".to_vec(),
            Protocol(INVALID_BULK),
        ),
        (
            "bulk_len_empty",
            b"*1\r\n$\r\n".to_vec(),
            Protocol(INVALID_BULK),
        ),
        (
            "bulk_len_leading_zero",
            b"*1\r\n$03\r\n".to_vec(),
            Protocol(INVALID_BULK),
        ),
        (
            "bulk_len_above_max",
            b"*1\r\n$536870913\r\n".to_vec(),
            Protocol(INVALID_BULK),
        ),
        (
            "bulk_len_at_max_waits",
            b"*1\r\n$536870912\r\nabc".to_vec(),
            Incomplete,
        ),
        (
            "bulk_len_cr_not_lf",
            b"*1\r\n$3\rX".to_vec(),
            Protocol(INVALID_BULK),
        ),
        (
            "bulk_len_line_over_64k",
            with_tail(b"*1\r\n$", b'1', kib64, b""),
            Protocol(TOO_BIG_BULK),
        ),
        ("bulk_payload_cut", b"*1\r\n$3\r\nfo".to_vec(), Incomplete),
        (
            "bulk_payload_without_crlf_yet",
            b"*1\r\n$3\r\nfoo".to_vec(),
            Incomplete,
        ),
        (
            "bulk_payload_cr_only",
            b"*1\r\n$3\r\nfoo\r".to_vec(),
            Incomplete,
        ),
        (
            "bulk_payload_not_followed_by_crlf",
            b"*1\r\n$3\r\nfooXY".to_vec(),
            Protocol(BULK_NOT_TERMINATED),
        ),
        (
            "bulk_payload_longer_than_declared",
            b"*1\r\n$3\r\nfoobar\r\n".to_vec(),
            Protocol(BULK_NOT_TERMINATED),
        ),
        (
            "bulk_payload_cr_then_not_lf",
            b"*1\r\n$3\r\nfoo\rX".to_vec(),
            Protocol(BULK_NOT_TERMINATED),
        ),
        (
            "bulk_payload_lf_cr",
            b"*1\r\n$3\r\nfoo\n\r".to_vec(),
            Protocol(BULK_NOT_TERMINATED),
        ),
        (
            "second_argument_cut",
            b"*2\r\n$3\r\nGET\r\n$1\r\n".to_vec(),
            Incomplete,
        ),
    ]
}

#[test]
fn malformed_requests_give_the_redis_error() {
    for (name, input, want) in request_cases() {
        assert_case(name, parse_request(&input, &Limits::default()), want);
    }
}

/// Malformed or cut replies, each with the exact answer (default limits).
fn value_cases() -> Vec<(&'static str, Vec<u8>, Expect)> {
    use Expect::*;
    let deep = |n: usize| "*1\r\n".repeat(n).into_bytes();
    vec![
        ("empty_buffer", b"".to_vec(), Incomplete),
        ("simple_cut", b"+OK".to_vec(), Incomplete),
        (
            "unknown_type",
            b"@x\r\n".to_vec(),
            Protocol("Protocol error: unknown reply type '@'"),
        ),
        (
            "bare_lf",
            b"+OK\n".to_vec(),
            Protocol("Protocol error: expected CRLF"),
        ),
        (
            "cr_inside_line",
            b"-ERR a\rb\r\n".to_vec(),
            Protocol("Protocol error: expected CRLF"),
        ),
        (
            "line_over_64k",
            with_tail(b"+", b'a', 64 * 1024 + 1, b""),
            Protocol("Protocol error: line too long"),
        ),
        (
            "integer_garbage",
            b":1x\r\n".to_vec(),
            Protocol("Protocol error: invalid integer"),
        ),
        (
            "integer_overflow",
            b":9223372036854775808\r\n".to_vec(),
            Protocol("Protocol error: invalid integer"),
        ),
        (
            "bulk_len_minus_two",
            b"$-2\r\n".to_vec(),
            Protocol(INVALID_BULK),
        ),
        (
            "bulk_len_above_max",
            b"$536870913\r\n".to_vec(),
            Protocol(INVALID_BULK),
        ),
        (
            "bulk_len_at_max_waits",
            b"$536870912\r\nab".to_vec(),
            Incomplete,
        ),
        (
            "bulk_without_crlf",
            b"$1\r\nab".to_vec(),
            Protocol("Protocol error: expected CRLF"),
        ),
        (
            "array_len_minus_two",
            b"*-2\r\n".to_vec(),
            Protocol("Protocol error: invalid aggregate length"),
        ),
        (
            "array_len_above_max",
            b"*1048577\r\n".to_vec(),
            Protocol("Protocol error: invalid aggregate length"),
        ),
        (
            "array_len_at_max_waits",
            b"*1048576\r\n".to_vec(),
            Incomplete,
        ),
        (
            "map_null",
            b"%-1\r\n".to_vec(),
            Protocol("Protocol error: invalid aggregate length"),
        ),
        ("map_missing_value", b"%1\r\n+k\r\n".to_vec(), Incomplete),
        (
            "null_with_payload",
            b"_0\r\n".to_vec(),
            Protocol("Protocol error: invalid null"),
        ),
        (
            "double_garbage",
            b",1.5x\r\n".to_vec(),
            Protocol("Protocol error: invalid double"),
        ),
        (
            "boolean_garbage",
            b"#true\r\n".to_vec(),
            Protocol("Protocol error: invalid boolean"),
        ),
        (
            "big_number_garbage",
            b"(1e5\r\n".to_vec(),
            Protocol("Protocol error: invalid big number"),
        ),
        (
            "verbatim_without_colon",
            b"=5\r\ntxt_x\r\n".to_vec(),
            Protocol("Protocol error: invalid verbatim string"),
        ),
        (
            "verbatim_too_short",
            b"=2\r\ntx\r\n".to_vec(),
            Protocol("Protocol error: invalid verbatim string"),
        ),
        (
            "stream_chunk_without_semicolon",
            b"$?\r\n$1\r\n".to_vec(),
            Protocol("Protocol error: invalid streamed string chunk"),
        ),
        (
            "stream_end_with_payload",
            b"*?\r\n.x\r\n".to_vec(),
            Protocol("Protocol error: invalid aggregate length"),
        ),
        ("stream_unterminated", b"*?\r\n:1\r\n".to_vec(), Incomplete),
        ("nesting_at_limit_waits", deep(128), Incomplete),
        (
            "nesting_over_limit",
            deep(129),
            Protocol("Protocol error: nesting too deep"),
        ),
        (
            "attribute_nesting_over_limit",
            "|1\r\n".repeat(200).into_bytes(),
            Protocol("Protocol error: nesting too deep"),
        ),
        ("attribute_without_value", b"|0\r\n".to_vec(), Incomplete),
    ]
}

#[test]
fn malformed_replies_give_a_protocol_error() {
    for (name, input, want) in value_cases() {
        assert_case(name, parse_value(&input, &Limits::default()), want);
    }
}

#[test]
fn a_pipeline_split_at_every_byte_gives_the_same_requests() {
    let pipeline: &[u8] =
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\na\r\n\r\nGET k\r\n\n*0\r\nECHO \"x\\ty\"\n";
    let limits = Limits::default();
    let whole = {
        let mut out = Vec::new();
        let mut rest = pipeline;
        while !rest.is_empty() {
            let (args, used) = parse_request(rest, &limits).expect("valid pipeline");
            out.push(args);
            rest = &rest[used..];
        }
        out
    };
    // Bytes arrive in two reads, split anywhere: the server's buffer loop must see the same.
    for split in 0..=pipeline.len() {
        let mut buf = pipeline[..split].to_vec();
        let mut got = Vec::new();
        loop {
            match parse_request(&buf, &limits) {
                Ok((args, used)) => {
                    got.push(args);
                    buf.drain(..used);
                }
                Err(ParseError::Incomplete) => break,
                Err(e) => panic!("split {split}: {e:?}"),
            }
        }
        buf.extend_from_slice(&pipeline[split..]);
        while !buf.is_empty() {
            let (args, used) = parse_request(&buf, &limits).expect("rest of pipeline");
            got.push(args);
            buf.drain(..used);
        }
        assert_eq!(got, whole, "split at {split}");
    }
}

#[test]
fn a_reply_stream_split_at_every_byte_gives_the_same_values() {
    let stream: &[u8] = b"+OK\r\n*2\r\n$1\r\na\r\n%1\r\n:1\r\n,2.5\r\n|1\r\n+t\r\n+v\r\n#t\r\n$?\r\n;1\r\nx\r\n;0\r\n";
    let limits = Limits::default();
    let mut whole: Vec<Value> = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let (v, used) = parse_value(rest, &limits).expect("valid replies");
        whole.push(v);
        rest = &rest[used..];
    }
    for split in 0..=stream.len() {
        let mut buf = stream[..split].to_vec();
        let mut got = Vec::new();
        while let Ok((v, used)) = parse_value(&buf, &limits) {
            got.push(v);
            buf.drain(..used);
        }
        // What is left of a prefix of valid replies is the start of the next one.
        assert_eq!(parse_value(&buf, &limits), Err(ParseError::Incomplete));
        buf.extend_from_slice(&stream[split..]);
        while !buf.is_empty() {
            let (v, used) = parse_value(&buf, &limits).expect("rest of replies");
            got.push(v);
            buf.drain(..used);
        }
        assert_eq!(got, whole, "split at {split}");
    }
}
