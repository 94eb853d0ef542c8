//! Fuzz target: see `etherws::fuzzing::proxy_url`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    etherws::fuzzing::proxy_url(data);
});
