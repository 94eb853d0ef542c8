//! Fuzz target: see `etherws::fuzzing::strict_egress`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    etherws::fuzzing::strict_egress(data);
});
