#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shopfloor_core::fuzzing::pii_round_trip(data));
