//! Fuzz target: see `etherws::fuzzing::no_proxy`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    etherws::fuzzing::no_proxy(data);
});
