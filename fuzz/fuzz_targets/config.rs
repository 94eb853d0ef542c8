//! Fuzz target: see `etherws::fuzzing::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    etherws::fuzzing::config(data);
});
