//! Fuzz target: see `etherws::fuzzing::frames`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    etherws::fuzzing::frames(data);
});
