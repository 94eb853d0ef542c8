//! Fuzz target: see `etherws::fuzzing::forwarded`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    etherws::fuzzing::forwarded(data);
});
