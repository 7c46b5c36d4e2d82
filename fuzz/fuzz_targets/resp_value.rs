//! `parse_value` on arbitrary bytes: never panics (no stack overflow either), a parsed reply
//! consumed a non-empty prefix, and every shorter prefix was Incomplete.
#![no_main]

use hotbackup::resp::{Limits, ParseError, parse_value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let small = Limits {
        max_bulk_len: 64,
        max_args: 8,
        max_inline_len: 32,
    };
    for limits in [Limits::default(), small] {
        let Ok((value, used)) = parse_value(data, &limits) else {
            continue;
        };
        assert!(
            used > 0 && used <= data.len(),
            "consumed {used} of {}",
            data.len()
        );
        let (alone, n) = parse_value(&data[..used], &limits).expect("the frame alone parses");
        assert_eq!(n, used);
        // NaN != NaN: compare the debug form, which is exact for everything else.
        assert_eq!(format!("{alone:?}"), format!("{value:?}"));
        assert_eq!(
            parse_value(&data[..used - 1], &limits),
            Err(ParseError::Incomplete)
        );
    }
});
