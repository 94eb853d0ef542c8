//! Fuzz target: see `etherws::fuzzing::h3_datagram`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    etherws::fuzzing::h3_datagram(data);
});
