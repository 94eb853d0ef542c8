//! Fuzz target: see `etherws::fuzzing::htpasswd`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    etherws::fuzzing::htpasswd(data);
});
