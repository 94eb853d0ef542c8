//! Fuzz target: see `etherws::fuzzing::proxy_answer`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    etherws::fuzzing::proxy_answer(data);
});
