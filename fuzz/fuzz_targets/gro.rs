//! Fuzz target: see `etherws::fuzzing::gro`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    etherws::fuzzing::gro(data);
});
