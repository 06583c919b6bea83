#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shopfloor_server::fuzzing::chat_body(data));
