//! Fuzz target: login names, prefixes, email addresses, the login rule. Input format and
//! invariants: `identity::fuzzing::login`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| identity::fuzzing::login(data));
