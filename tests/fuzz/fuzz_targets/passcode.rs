//! Fuzz target: passcodes and new PINs. Input format and
//! invariants: `identity::fuzzing::passcode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| identity::fuzzing::passcode(data));
