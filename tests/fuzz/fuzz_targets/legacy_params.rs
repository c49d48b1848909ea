//! Fuzz target: the legacy API's query string and form body. Input format and
//! invariants: `identity::fuzzing::legacy_params`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| identity::fuzzing::legacy_params(data));
