//! `hotbackup::fuzzing::link_frame_preauth` on arbitrary bytes (the body and its invariants live in
//! src/fuzzing.rs, shared with the corpus replay of tests/fuzz_corpus.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hotbackup::fuzzing::link_frame_preauth(data));
