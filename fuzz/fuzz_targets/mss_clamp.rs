//! Fuzz target: see `etherws::fuzzing::mss_clamp`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    etherws::fuzzing::mss_clamp(data);
});
