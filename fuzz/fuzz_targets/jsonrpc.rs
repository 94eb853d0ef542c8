//! Fuzz target: see `etherws::fuzzing::jsonrpc`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    etherws::fuzzing::jsonrpc(data);
});
