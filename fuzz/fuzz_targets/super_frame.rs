//! Fuzz target: see `etherws::fuzzing::super_frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    etherws::fuzzing::super_frame(data);
});
