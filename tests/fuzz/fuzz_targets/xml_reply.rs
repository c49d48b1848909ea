//! Fuzz target: the legacy XML writer. Input format and
//! invariants: `identity::fuzzing::xml_reply`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| identity::fuzzing::xml_reply(data));
