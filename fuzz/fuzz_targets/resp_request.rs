//! `parse_request` on arbitrary bytes: never panics; a parsed request consumed a non-empty
//! prefix, re-encodes to a multibulk that parses back to the same arguments, and every shorter
//! prefix of the frame was Incomplete.
#![no_main]

use hotbackup::resp::{Limits, ParseError, encode, parse_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Small limits too, so the limit paths are reached with small inputs.
    let small = Limits {
        max_bulk_len: 64,
        max_args: 8,
        max_inline_len: 32,
    };
    for limits in [Limits::default(), small] {
        let Ok((args, used)) = parse_request(data, &limits) else {
            continue;
        };
        assert!(
            used > 0 && used <= data.len(),
            "consumed {used} of {}",
            data.len()
        );
        // The frame alone parses the same; one byte less is not a frame yet.
        assert_eq!(
            parse_request(&data[..used], &limits),
            Ok((args.clone(), used))
        );
        assert_eq!(
            parse_request(&data[..used - 1], &limits),
            Err(ParseError::Incomplete)
        );
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let mut wire = Vec::new();
        encode::request(&mut wire, &refs);
        match parse_request(&wire, &limits) {
            Ok((again, n)) => {
                assert_eq!(again, args);
                assert_eq!(n, wire.len());
            }
            // An inline line can be short while its multibulk form crosses a limit that only
            // multibulk has (bulk length is never larger, so only max_args can bite).
            Err(e) => assert!(
                args.len() > limits.max_args,
                "re-encoded request failed: {e:?}"
            ),
        }
    }
});
