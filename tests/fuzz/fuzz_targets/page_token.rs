//! Fuzz target: page tokens and page sizes. Input format and
//! invariants: `identity::fuzzing::page_token`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| identity::fuzzing::page_token(data));
