//! Fuzz target: HTTP Basic credentials. Input format and
//! invariants: `identity::fuzzing::basic_auth`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| identity::fuzzing::basic_auth(data));
