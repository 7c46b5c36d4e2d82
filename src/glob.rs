//! Redis-compatible glob matching: the one place that decides whether a name matches a pattern.
//!
//! Used for `KEYS`/`SCAN MATCH`-style patterns from clients and for the `[files]` globs of the
//! config. Semantics follow Redis `util.c` `stringmatchlen()` byte for byte:
//!
//! - `*` matches any run of bytes, `?` exactly one byte;
//! - `[abc]` one byte of the set, `[^abc]` one byte not in it, `[a-z]` a range (a reversed range
//!   `[z-a]` means the same as `[a-z]`), `\x` inside a class is the literal `x`;
//! - `\x` outside a class is the literal `x`; a trailing lone `\` is a literal backslash;
//! - an unclosed class (`[abc`) runs to the end of the pattern; `[]` matches nothing, `[^]` any
//!   one byte; `-` right before `]` makes `]` the end of a range (`[a-]]`), as in Redis;
//! - `nocase` folds ASCII letters only (C-locale `tolower`); like Redis, an escaped byte inside a
//!   class (`[\a]`) is compared exactly even with `nocase`.
//!
//! It works on bytes, never on UTF-8 characters: `?` matches one byte of a multi-byte character.
//!
//! Differences from Redis, all deliberate:
//! - Redis recurses once per `*` and, since 7.x, gives up (answers "no match") past 1000 nested
//!   stars. This matcher is iterative (backtracking to the last `*` only), runs in
//!   O(pattern × subject) time and constant memory, and has no such limit: it answers correctly
//!   for any pattern length. It must never recurse or allocate, because patterns come from
//!   clients.
//! - Redis never matches the empty subject unless the pattern is empty (`*` does not match `""`
//!   in `stringmatchlen`; `KEYS *` hides this with a special case). Here a pattern of stars
//!   matches `""`, as in every other glob.
//! - Ranges compare bytes as unsigned values; Redis compares C `char`, which is signed on x86, so
//!   its ranges involving bytes >= 0x80 behave differently.

/// Does `s` match the Redis-style glob `pattern`? `nocase` folds ASCII letters.
pub fn glob_match(pattern: &[u8], s: &[u8], nocase: bool) -> bool {
    let mut p = 0; // index into pattern
    let mut i = 0; // index into s
    // After a `*`: where the pattern resumes, and where in `s` the star's match currently ends.
    // Only the last star matters: every other token consumes exactly one byte, so letting an
    // earlier star match more can never help once a later star has failed at every position.
    let mut resume: Option<(usize, usize)> = None;
    loop {
        if pattern.get(p) == Some(&b'*') {
            while pattern.get(p) == Some(&b'*') {
                p += 1;
            }
            if p == pattern.len() {
                return true;
            }
            resume = Some((p, i));
            continue;
        }
        match s.get(i) {
            Some(&c) if p < pattern.len() => {
                let (matched, next) = match_one(pattern, p, c, nocase);
                if matched {
                    p = next;
                    i += 1;
                    continue;
                }
            }
            Some(_) => {}
            None if p == pattern.len() => return true,
            None => {}
        }
        // Mismatch: let the last star swallow one more byte, if there is one.
        match resume {
            Some((rp, ri)) if ri < s.len() => {
                resume = Some((rp, ri + 1));
                p = rp;
                i = ri + 1;
            }
            _ => return false,
        }
    }
}

/// Matches the single-byte token at `pattern[p]` (not `*`) against `c`.
/// Returns whether it matched and the index of the next token.
fn match_one(pattern: &[u8], p: usize, c: u8, nocase: bool) -> (bool, usize) {
    match pattern[p] {
        b'?' => (true, p + 1),
        b'[' => match_class(pattern, p + 1, c, nocase),
        b'\\' if p + 1 < pattern.len() => (eq(pattern[p + 1], c, nocase), p + 2),
        b => (eq(b, c, nocase), p + 1),
    }
}

/// Matches the class whose body starts at `pattern[q]` (just after `[`) against `c`.
fn match_class(pattern: &[u8], mut q: usize, c: u8, nocase: bool) -> (bool, usize) {
    let negate = pattern.get(q) == Some(&b'^');
    if negate {
        q += 1;
    }
    let mut matched = false;
    loop {
        let Some(&b) = pattern.get(q) else {
            // Unclosed: the class runs to the end of the pattern.
            return (matched != negate, pattern.len());
        };
        if b == b'\\' && q + 1 < pattern.len() {
            q += 1;
            // Redis compares an escaped class member exactly, even with nocase.
            if pattern[q] == c {
                matched = true;
            }
        } else if b == b']' {
            return (matched != negate, q + 1);
        } else if q + 2 < pattern.len() && pattern[q + 1] == b'-' {
            let (mut start, mut end) = (b, pattern[q + 2]);
            if start > end {
                std::mem::swap(&mut start, &mut end);
            }
            let mut c = c;
            if nocase {
                start = start.to_ascii_lowercase();
                end = end.to_ascii_lowercase();
                c = c.to_ascii_lowercase();
            }
            if start <= c && c <= end {
                matched = true;
            }
            q += 2;
        } else if eq(b, c, nocase) {
            matched = true;
        }
        q += 1;
    }
}

fn eq(a: u8, b: u8, nocase: bool) -> bool {
    if nocase {
        a.eq_ignore_ascii_case(&b)
    } else {
        a == b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(p: &str, s: &str) -> bool {
        glob_match(p.as_bytes(), s.as_bytes(), false)
    }

    fn mi(p: &str, s: &str) -> bool {
        glob_match(p.as_bytes(), s.as_bytes(), true)
    }

    /// `(pattern, subject, expected case-sensitive, expected nocase)`.
    fn check(cases: &[(&str, &str, bool, bool)]) {
        for &(p, s, case, nocase) in cases {
            assert_eq!(m(p, s), case, "glob_match({p:?}, {s:?}, false)");
            assert_eq!(mi(p, s), nocase, "glob_match({p:?}, {s:?}, true)");
        }
    }

    #[test]
    fn literals_and_case_folding() {
        check(&[
            ("a", "a", true, true),
            ("a", "A", false, true),
            ("A", "a", false, true),
            ("abc", "abc", true, true),
            ("abc", "abcd", false, false),
            ("abcd", "abc", false, false),
            ("", "", true, true),
            ("", "a", false, false),
            ("a", "", false, false),
            ("\\a", "a", true, true),
            ("\\a", "A", false, true),
            ("\\A", "a", false, true),
            ("HELLO", "hello", false, true),
            ("H[A-Z]LLO", "hello", false, true),
        ]);
    }

    // The cases below are the Redis/Valkey unit tests for stringmatch() whose expectations hold
    // for Redis util.c semantics (Valkey later changed escapes at range ends and escaped class
    // members under nocase; those cases are covered in `redis_class_quirks` with Redis's answer).
    #[test]
    fn redis_escaped_metacharacters() {
        check(&[
            ("\\*", "*", true, true),
            ("\\?", "?", true, true),
            ("\\\\", "\\", true, true),
            ("\\[", "[", true, true),
            ("\\]", "]", true, true),
            ("\\^", "^", true, true),
            ("\\-", "-", true, true),
            ("[\\*]", "*", true, true),
            ("[\\?]", "?", true, true),
            ("[\\\\]", "\\", true, true),
            ("[\\[]", "[", true, true),
            ("[\\]]", "]", true, true),
            ("[\\^]", "^", true, true),
            ("[\\-]", "-", true, true),
            ("\\*", "a", false, false),
            ("h\\*llo", "hello", false, false),
            ("[\\a]", "a", true, true),
            ("[\\A]", "A", true, true),
        ]);
    }

    #[test]
    fn redis_special_only_in_context() {
        check(&[
            // Not special outside character classes.
            ("]", "]", true, true),
            ("^", "^", true, true),
            ("-", "-", true, true),
            // Not special inside character classes.
            ("[*]", "*", true, true),
            ("[?]", "?", true, true),
            ("[[]", "[", true, true),
            ("[*]", "a", false, false),
            // Not special as the first character in a class.
            ("[-]", "-", true, true),
            // `]` as a range end: `[+-]]` is the range + to ].
            ("[+-]]", ",", true, true),
            ("[+-]]", "*", false, false),
            ("[+-]]", "^", false, false),
            ("[+--]", ",", true, true),
            ("[+--]", "*", false, false),
            ("[+--]", ".", false, false),
            // And the same, unclosed.
            ("[+-]", ",", true, true),
            ("[+-]", "*", false, false),
            ("[+-]", "^", false, false),
            ("[+--", ",", true, true),
            ("[+--", "*", false, false),
            ("[+--", ".", false, false),
            // Escaped ] alone is literal.
            ("[\\]a]", "]", true, true),
            ("[\\]a]", "a", true, true),
            // An incomplete escape is a literal backslash.
            ("[+-\\", ",", true, true),
            ("[+-\\", "*", false, false),
            ("[+-\\", "]", false, false),
            ("a\\", "a\\", true, true),
            ("\\", "\\", true, true),
        ]);
    }

    #[test]
    fn redis_empty_and_unclosed_classes() {
        check(&[
            ("[]", "", false, false),
            ("[]", "a", false, false),
            ("[]]", "]", false, false),
            ("[", "", false, false),
            ("[", "a", false, false),
            ("[^]", "", false, false),
            ("[^]", "a", true, true),
            ("[^]", "ab", false, false),
            ("[^", "", false, false),
            ("[^", "a", true, true),
            ("[^", "ab", false, false),
            ("[A-", "B", false, false),
            ("[abc", "a", true, true),
            ("[abc", "d", false, false),
        ]);
    }

    /// Where Redis util.c and later Valkey disagree, we answer as Redis does.
    #[test]
    fn redis_class_quirks() {
        check(&[
            // The escape is taken first and cannot start a range: the members are ], - and _.
            ("[\\]-_]", "^", false, false),
            ("[\\]-_]", "-", true, true),
            ("[\\]-_]", "_", true, true),
            // Range + to \, then `\]` is an escaped member: the class is unclosed.
            ("[+-\\\\]", ",", true, true),
            ("[+-\\\\]", "*", false, false),
            ("[+-\\\\]", "]", true, true),
            // Range + to \, then `]` closes, then a literal ].
            ("[+-\\]]", ",", false, false),
            ("[+-\\]]", ",]", true, true),
            // An escaped class member is compared exactly even with nocase.
            ("[\\a]", "A", false, false),
            ("[\\A]", "a", false, false),
            // Ranges are ordered before folding: `[Z-a]` folds to the empty range z..a.
            ("[a-Z]", "_", true, false),
            ("[Z-a]", "m", false, false),
            ("[A-z]", "m", true, true),
        ]);
    }

    #[test]
    fn classes_and_ranges() {
        check(&[
            ("[abc]", "b", true, true),
            ("[abc]", "B", false, true),
            ("[abc]", "d", false, false),
            ("[^abc]", "d", true, true),
            ("[^abc]", "a", false, false),
            ("[a-c]", "b", true, true),
            ("[c-a]", "b", true, true),
            ("[c-a]", "d", false, false),
            ("[a-cx-z]", "y", true, true),
            ("[a-c]x", "bx", true, true),
            ("[a-c]x", "b", false, false),
            ("h[ae]llo", "hallo", true, true),
            ("h[^e]llo", "hello", false, false),
            ("h[a-b]llo", "hbllo", true, true),
        ]);
    }

    #[test]
    fn stars_and_questions() {
        check(&[
            ("*", "", true, true),
            ("**", "", true, true),
            ("*", "anything", true, true),
            ("a*", "a", true, true),
            ("a**", "a", true, true),
            ("*b", "ab", true, true),
            ("*b", "b", true, true),
            ("*b", "ba", false, false),
            ("a*b*c", "abbbbbc", true, true),
            ("a*b*c", "abbbbb", false, false),
            ("*world*", "hello world again", true, true),
            ("h*o", "hello", true, true),
            ("h*o", "hellp", false, false),
            ("h?llo", "hello", true, true),
            ("h?llo", "heello", false, false),
            ("key:1??", "key:123", true, true),
            ("key:1??", "key:12", false, false),
            ("key:*", "key:", true, true),
            ("?", "", false, false),
            ("*?", "", false, false),
            ("*?", "a", true, true),
            ("*a*", "bab", true, true),
            ("*[0-9]", "abc7", true, true),
            ("*\\*", "ab*", true, true),
            ("*\\*", "ab", false, false),
        ]);
    }

    /// keyspace.tcl: "KEYS with pattern", "KEYS with hashtag", "KEYS to get all keys".
    #[test]
    fn redis_keys_patterns() {
        let keys = ["key_x", "key_y", "key_z", "foo_a", "foo_b", "foo_c"];
        let pick = |p: &str| -> Vec<&str> { keys.iter().copied().filter(|k| m(p, k)).collect() };
        assert_eq!(pick("foo*"), ["foo_a", "foo_b", "foo_c"]);
        assert_eq!(pick("*"), keys);
        assert_eq!(pick("*_[xa]"), ["key_x", "foo_a"]);
        assert!(m("{a}*", "{a}x"));
        assert!(m("{a}*", "{a}"));
        assert!(!m("{a}*", "{b}x"));
        assert!(m("*", "dlskeriewrioeuwqoirueioqwrueoqwrueqw"));
    }

    /// keyspace.tcl: "Regression for pattern matching long nested loops" (CVE-2022-36021).
    #[test]
    fn nested_stars_are_not_exponential() {
        let s = "a".repeat(40);
        assert!(!m("a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", &s));

        let long = "a".repeat(50_000);
        let pattern = format!("{}b", "a*".repeat(1000));
        assert!(!m(&pattern, &long));
        assert!(m(&format!("{}*", "a*".repeat(1000)), &long));
    }

    /// keyspace.tcl "Regression for pattern matching very long nested loops": Redis answers
    /// "no match" only because it gives up past 1000 nested stars; the true answer is a match.
    #[test]
    fn very_long_patterns_answer_correctly() {
        let s = "a".repeat(50_000);
        assert!(m(&"*?".repeat(50_000), &s));
        assert!(!m(&"*?".repeat(50_001), &s));
    }

    #[test]
    fn bytes_not_characters() {
        assert!(!glob_match(b"?", "é".as_bytes(), false));
        assert!(glob_match(b"??", "é".as_bytes(), false));
        assert!(glob_match(b"[\x80-\xff]", b"\xc3", false));
        assert!(!glob_match(b"[a-\xff]", b"A", false));
        assert!(glob_match(b"[a-\xff]", b"b", false));
        assert!(glob_match(b"\xff*", b"\xff\x00", false));
    }

    /// A direct port of Redis 7 util.c `stringmatchlen_impl` (recursive, with the
    /// skip-longer-matches cut, without the nesting limit) as the reference semantics.
    fn redis_reference(pattern: &[u8], s: &[u8], nocase: bool) -> bool {
        // C reads one byte past the end of the pattern (its NUL terminator).
        fn at(p: &[u8], i: usize) -> u8 {
            p.get(i).copied().unwrap_or(0)
        }
        fn lower(c: u8, nocase: bool) -> u8 {
            if nocase { c.to_ascii_lowercase() } else { c }
        }
        fn imp(
            pat: &[u8],
            mut p: usize,
            s: &[u8],
            mut i: usize,
            nocase: bool,
            skip: &mut bool,
        ) -> bool {
            let plen = pat.len();
            while p < plen && i < s.len() {
                match pat[p] {
                    b'*' => {
                        while p < plen && at(pat, p + 1) == b'*' {
                            p += 1;
                        }
                        if plen - p == 1 {
                            return true;
                        }
                        while i < s.len() {
                            if imp(pat, p + 1, s, i, nocase, skip) {
                                return true;
                            }
                            if *skip {
                                return false;
                            }
                            i += 1;
                        }
                        *skip = true;
                        return false;
                    }
                    b'?' => i += 1,
                    b'[' => {
                        p += 1;
                        let not = at(pat, p) == b'^';
                        if not {
                            p += 1;
                        }
                        let mut matched = false;
                        loop {
                            if at(pat, p) == b'\\' && plen - p >= 2 {
                                p += 1;
                                if pat[p] == s[i] {
                                    matched = true;
                                }
                            } else if p < plen && pat[p] == b']' {
                                break;
                            } else if p >= plen {
                                p -= 1;
                                break;
                            } else if plen - p >= 3 && pat[p + 1] == b'-' {
                                let (mut a, mut b) = (pat[p], pat[p + 2]);
                                if a > b {
                                    std::mem::swap(&mut a, &mut b);
                                }
                                let (a, b, c) =
                                    (lower(a, nocase), lower(b, nocase), lower(s[i], nocase));
                                p += 2;
                                if c >= a && c <= b {
                                    matched = true;
                                }
                            } else if lower(pat[p], nocase) == lower(s[i], nocase) {
                                matched = true;
                            }
                            p += 1;
                        }
                        if not {
                            matched = !matched;
                        }
                        if !matched {
                            return false;
                        }
                        i += 1;
                    }
                    c => {
                        let c = if c == b'\\' && plen - p >= 2 {
                            p += 1;
                            pat[p]
                        } else {
                            c
                        };
                        if lower(c, nocase) != lower(s[i], nocase) {
                            return false;
                        }
                        i += 1;
                    }
                }
                p += 1;
                if i == s.len() {
                    while p < plen && pat[p] == b'*' {
                        p += 1;
                    }
                    break;
                }
            }
            p == plen && i == s.len()
        }
        let mut skip = false;
        imp(pattern, 0, s, 0, nocase, &mut skip)
    }

    /// A naive matcher for patterns without classes: `*`, `?`, `\x` and literals.
    fn simple_reference(p: &[u8], s: &[u8]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((b'*', rest)) => (0..=s.len()).any(|k| simple_reference(rest, &s[k..])),
            Some((b'?', rest)) => !s.is_empty() && simple_reference(rest, &s[1..]),
            Some((b'\\', rest)) if !rest.is_empty() => {
                s.first() == Some(&rest[0]) && simple_reference(&rest[1..], &s[1..])
            }
            Some((&c, rest)) => s.first() == Some(&c) && simple_reference(rest, &s[1..]),
        }
    }

    /// Pieces of patterns: single bytes (so any odd mix occurs) and whole classes and escapes
    /// (so ranges, negation and escapes inside classes occur often enough to be tested).
    fn pattern_piece() -> impl Strategy<Value = Vec<u8>> {
        const PIECES: &[&str] = &[
            "a", "A", "b", "z", "Z", "_", "*", "?", "[", "]", "^", "-", "\\", "\\a", "\\*", "\\]",
            "[ab]", "[^a]", "[a-z]", "[z-a]", "[A-z]", "[Z-a]", "[a-]", "[a-]]", "[-a]", "[\\]]",
            "[\\a-z]", "[a-\\z]", "[^]", "[]", "[a", "[^", "[*?]",
        ];
        proptest::sample::select(PIECES).prop_map(|s| s.as_bytes().to_vec())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn agrees_with_simple_reference_without_classes(
            p in proptest::collection::vec(proptest::sample::select(b"ab*?\\".to_vec()), 0..10),
            s in proptest::collection::vec(proptest::sample::select(b"ab*?\\".to_vec()), 0..12),
        ) {
            prop_assert_eq!(glob_match(&p, &s, false), simple_reference(&p, &s));
        }

        #[test]
        fn agrees_with_redis_port(
            p in proptest::collection::vec(pattern_piece(), 0..8),
            s in proptest::collection::vec(proptest::sample::select(b"aAbBzZ_*?[]^-\\".to_vec()), 1..10),
            nocase: bool,
        ) {
            let p = p.concat();
            // Redis's only other difference (stars against the empty subject) needs s == "".
            prop_assert_eq!(glob_match(&p, &s, nocase), redis_reference(&p, &s, nocase));
        }

        #[test]
        fn arbitrary_bytes_never_panic(p: Vec<u8>, s: Vec<u8>, nocase: bool) {
            let _ = glob_match(&p, &s, nocase);
        }
    }
}
