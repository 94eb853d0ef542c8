//! Fuzz target: see `etherws::fuzzing::gso`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    etherws::fuzzing::gso(data);
});
