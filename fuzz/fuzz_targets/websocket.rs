//! Fuzz target: see `etherws::fuzzing::websocket`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    etherws::fuzzing::websocket(data);
});
