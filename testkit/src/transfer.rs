//! Bulk data across the network under test, checked byte for byte: a TCP listener inside a
//! namespace, reproducible pseudo-random data, and a copy that compares what arrived.

use std::net::Shutdown;

use super::*;

/// A TCP listener opened inside `ns`.
pub fn listen_in(ns: &Netns, addr: SocketAddr) -> TcpListener {
    ns.enter(move || TcpListener::bind(addr))
        .unwrap_or_else(|e| panic!("cannot listen on {addr} in {}: {e}", ns.name()))
}

/// `len` pseudo-random bytes (xorshift), different for each seed.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// FNV-1a, to name the data in messages.
pub fn digest(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Sends `data` over TCP from `from` to a listener on `to_addr` in `to`, and checks that
/// exactly the same bytes arrive. Returns the throughput in Mbit/s.
pub fn copy(from: &Netns, to: &Netns, to_addr: &str, port: u16, data: &[u8]) -> f64 {
    let addr: SocketAddr = format!("{to_addr}:{port}").parse().unwrap();
    let listener = listen_in(to, addr);
    let receiver = thread::spawn(move || -> std::io::Result<Vec<u8>> {
        let (mut s, _) = listener.accept()?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut got = Vec::new();
        s.read_to_end(&mut got)?;
        Ok(got)
    });
    let start = Instant::now();
    let sent = (|| -> std::io::Result<()> {
        let mut s = from.tcp_connect(addr)?;
        s.set_write_timeout(Some(Duration::from_secs(20)))?;
        s.write_all(data)?;
        s.shutdown(Shutdown::Write)
    })();
    if let Err(e) = &sent {
        // Unblock the receiver so the test fails with the real cause.
        let _ = from.tcp_connect(addr);
        panic!(
            "sending {} bytes from {} to {addr} failed: {e}",
            data.len(),
            from.name()
        );
    }
    let got = receiver
        .join()
        .expect("receiver thread")
        .unwrap_or_else(|e| panic!("receiving on {addr} failed: {e}"));
    let secs = start.elapsed().as_secs_f64();
    assert!(
        got.len() == data.len() && got == data,
        "copy {} -> {addr}: sent {} bytes (fnv {:016x}), received {} bytes (fnv {:016x})",
        from.name(),
        data.len(),
        digest(data),
        got.len(),
        digest(&got)
    );
    let mbit_s = data.len() as f64 * 8.0 / secs / 1e6;
    eprintln!(
        "copy {} -> {addr}: {} bytes intact (fnv {:016x}) in {secs:.2} s, {mbit_s:.1} Mbit/s",
        from.name(),
        data.len(),
        digest(data)
    );
    mbit_s
}
