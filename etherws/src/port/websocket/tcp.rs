//! The TCP socket under every WebSocket connection, client and server alike: a small unsent
//! backlog (`TCP_NOTSENT_LOWAT`), so that a frame queued behind bulk waits in the port's
//! queue, where the switch counts and expires it, rather than behind megabytes in the socket;
//! and the congestion control algorithm (`TCP_CONGESTION`).
//!
//! The writer needs nothing else: with the low-water mark the socket is writable (epoll) only
//! while fewer than that many bytes wait unsent, and a write takes only what fits under it, so
//! the session's writer (tokio's readiness) keeps the pipe full and no fuller. TLS sits on top
//! of the same socket; rustls adds its own buffer of records, at most 64 KiB.
//!
//! Neither setting ever fails a connection: an algorithm the kernel refuses (not loaded, or
//! not in `net.ipv4.tcp_allowed_congestion_control`) is logged once, and every connection
//! keeps the system's default from then on, without asking the kernel again.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use crate::settings::values::Congestion;
use crate::sys::SyscallError;
use crate::sys::socket::{CaName, TCP_CA_NAME_MAX, TCP_CONGESTION, TCP_NOTSENT_LOWAT};
use crate::sys::socket::{getsockopt, setsockopt};

/// `--notsent-lowat` when not given: bytes a connection may hold unsent. 128 KiB keeps a
/// gigabit path busy for a millisecond between the writer's wake-ups, and interactive frames
/// at most that much behind bulk.
pub(crate) const DEFAULT_NOTSENT_LOWAT: u32 = 128 * 1024;

/// `--congestion` when not given: BBR. Measured across the bench's delay line (`cargo xtask
/// bench --wan 20ms,2% --inner-cc cubic`): with CUBIC under the WebSocket every random loss
/// halves the tunnel's window (1.7 / 2.4 Mbit/s, pings during a transfer 553 ms on a 40 ms
/// path), with BBR the tunnel absorbs the loss for the flows inside (163 / 92 Mbit/s, 76 ms).
pub(crate) const DEFAULT_CONGESTION: Congestion = Congestion::named("bbr");

/// What every WebSocket connection's TCP socket is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpTuning {
    /// Unsent bytes above which the socket is not writable; 0: the system's
    /// (`net.ipv4.tcp_notsent_lowat`, no limit unless set).
    pub(crate) notsent_lowat: u32,
    /// The congestion control algorithm.
    pub(crate) congestion: Congestion,
}

impl Default for TcpTuning {
    fn default() -> Self {
        TcpTuning {
            notsent_lowat: DEFAULT_NOTSENT_LOWAT,
            congestion: DEFAULT_CONGESTION,
        }
    }
}

/// Set once the kernel refused the algorithm: it is not asked again (with `CAP_NET_ADMIN` each
/// attempt would run modprobe), and the warning is not repeated.
static CONGESTION_REFUSED: AtomicBool = AtomicBool::new(false);

/// Set once the kernel refused the low-water mark (a kernel before 3.12): logged once.
static LOWAT_REFUSED: AtomicBool = AtomicBool::new(false);

/// Gives `tcp` the low-water mark and the algorithm of `t`, and returns the algorithm in
/// effect (as the kernel reads it back; `None` if it cannot). Never fails: what the kernel
/// refuses is logged, once, and left at the system's default.
pub(crate) fn tune(tcp: &impl AsFd, t: &TcpTuning) -> Option<Arc<str>> {
    if t.notsent_lowat > 0
        && !LOWAT_REFUSED.load(Relaxed)
        && let Err(e) = set_notsent_lowat(tcp, t.notsent_lowat)
        && !LOWAT_REFUSED.swap(true, Relaxed)
    {
        tracing::warn!(
            "cannot limit WebSocket connections' unsent bytes ({e}); they keep the system's \
             default"
        );
    }
    if let Some(name) = t.congestion.name()
        && !CONGESTION_REFUSED.load(Relaxed)
        && let Err(e) = set_congestion(tcp, t.congestion)
        && !CONGESTION_REFUSED.swap(true, Relaxed)
    {
        tracing::warn!(
            congestion = name,
            "TCP congestion control {name} refused: {}; falling back to the system default \
             for every WebSocket connection",
            refusal(&e, name)
        );
    }
    congestion(tcp)
}

/// `TCP_NOTSENT_LOWAT` of `tcp` to `bytes`.
fn set_notsent_lowat(tcp: &impl AsFd, bytes: u32) -> Result<(), SyscallError> {
    let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    setsockopt(tcp.as_fd(), TCP_NOTSENT_LOWAT, &bytes)
}

/// `TCP_CONGESTION` of `tcp` to `c` (the system's default: nothing to do).
fn set_congestion(tcp: &impl AsFd, c: Congestion) -> Result<(), SyscallError> {
    let Some(name) = c.name() else {
        return Ok(());
    };
    let mut raw: CaName = [0; TCP_CA_NAME_MAX];
    // At most 15 bytes (`Congestion`): the last stays NUL.
    let len = name.len().min(TCP_CA_NAME_MAX - 1);
    raw[..len].copy_from_slice(&name.as_bytes()[..len]);
    setsockopt(tcp.as_fd(), TCP_CONGESTION, &raw)
}

/// The congestion control algorithm of `tcp`, as the kernel names it.
pub(crate) fn congestion(tcp: &impl AsFd) -> Option<Arc<str>> {
    let raw = getsockopt(tcp.as_fd(), TCP_CONGESTION).ok()?;
    let len = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let name = String::from_utf8_lossy(&raw[..len]);
    (!name.is_empty()).then(|| name.into())
}

/// Why the kernel refused the algorithm `name`, in the operator's words.
fn refusal(e: &SyscallError, name: &str) -> String {
    match e.raw_os_error() {
        Some(libc::ENOENT) => format!(
            "the kernel has no such algorithm (not built or not loaded: modprobe tcp_{name}; \
             see net.ipv4.tcp_available_congestion_control)"
        ),
        Some(libc::EPERM) => {
            "not in net.ipv4.tcp_allowed_congestion_control (of this network namespace), \
             and the switch lacks CAP_NET_ADMIN"
                .to_string()
        }
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both ends of a TCP connection on loopback.
    async fn pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let out = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let (inc, _) = l.accept().await.unwrap();
        (out, inc)
    }

    #[tokio::test]
    async fn the_low_water_mark_is_set_and_the_algorithm_read_back() {
        let (out, inc) = pair().await;
        let system = congestion(&out).expect("a connection has an algorithm");
        assert!(
            system
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "{system}"
        );
        assert_eq!(TcpTuning::default().congestion, DEFAULT_CONGESTION);
        // The system's algorithm, so that what is read back does not depend on the host's
        // default (BBR here, CUBIC on most).
        let t = TcpTuning {
            congestion: Congestion::SYSTEM,
            ..TcpTuning::default()
        };
        for s in [&out, &inc] {
            assert_eq!(tune(s, &t).as_deref(), Some(&*system));
            let lowat = getsockopt(s.as_fd(), TCP_NOTSENT_LOWAT).unwrap();
            assert_eq!(lowat, DEFAULT_NOTSENT_LOWAT as libc::c_int);
        }
        // 0: the socket keeps the system's (what a fresh socket has).
        let (fresh, _inc) = pair().await;
        let before = getsockopt(fresh.as_fd(), TCP_NOTSENT_LOWAT).unwrap();
        let t = TcpTuning {
            notsent_lowat: 0,
            ..TcpTuning::default()
        };
        tune(&fresh, &t);
        assert_eq!(
            getsockopt(fresh.as_fd(), TCP_NOTSENT_LOWAT).unwrap(),
            before
        );
    }

    /// With a low-water mark far below what is written, a writer still gets everything across:
    /// tokio is woken each time the backlog drains under the mark.
    #[tokio::test]
    async fn a_writer_under_a_small_mark_still_fills_the_pipe() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut out, mut inc) = pair().await;
        let t = TcpTuning {
            notsent_lowat: 4096,
            ..TcpTuning::default()
        };
        tune(&out, &t);
        let data: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            out.write_all(&sent).await.unwrap();
            out.shutdown().await.unwrap();
        });
        let mut got = Vec::with_capacity(data.len());
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            inc.read_to_end(&mut got),
        );
        read.await.expect("all bytes in time").unwrap();
        writer.await.unwrap();
        assert!(
            got == data,
            "{} bytes of {} arrived intact",
            got.len(),
            data.len()
        );
    }

    #[tokio::test]
    async fn the_system_default_algorithm_is_always_allowed() {
        // The system's default is usable by anyone (the kernel marks it unrestricted): naming
        // it sets it, and it is what the socket reports.
        let (out, _inc) = pair().await;
        let system = congestion(&out).unwrap();
        let c: Congestion = system.parse().unwrap();
        set_congestion(&out, c).unwrap();
        assert_eq!(congestion(&out).as_deref(), Some(&*system));
        set_congestion(&out, Congestion::SYSTEM).unwrap();
    }

    #[tokio::test]
    async fn an_unknown_algorithm_is_refused_in_plain_words() {
        let (out, _inc) = pair().await;
        let system = congestion(&out).unwrap();
        let e = set_congestion(&out, Congestion::named("nonexistent_cc")).unwrap_err();
        assert_eq!(e.call, "setsockopt(TCP_CONGESTION)");
        let why = refusal(&e, "nonexistent_cc");
        assert!(why.contains("modprobe tcp_nonexistent_cc"), "{why}");
        // The connection is as it was.
        assert_eq!(congestion(&out).as_deref(), Some(&*system));
        let eperm = SyscallError {
            call: "setsockopt(TCP_CONGESTION)",
            source: std::io::Error::from_raw_os_error(libc::EPERM),
        };
        assert!(refusal(&eperm, "x").contains("tcp_allowed_congestion_control"));
    }
}
