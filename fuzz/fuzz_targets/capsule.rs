//! Fuzz target: see `etherws::fuzzing::capsule`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    etherws::fuzzing::capsule(data);
});
