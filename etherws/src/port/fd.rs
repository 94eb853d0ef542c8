//! Ports backed by a file descriptor (TAP devices, AF_PACKET sockets): non-blocking I/O driven
//! by tokio readiness, one frame per `read`/`write`.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use bytes::{Bytes, BytesMut};
use tokio::io::unix::AsyncFd;

use super::{Ingress, MAX_FRAME, PortIo};

/// Receive buffer for device ports: frames are read into one large block and handed out as
/// [`Bytes`] slices of it, so reading a frame costs neither a copy nor an allocation.
///
/// A block is freed when the last frame cut from it is dropped; blocks are kept small enough
/// that frames parked in a slow port's queue pin a bounded amount of memory.
pub struct RxBuf {
    buf: BytesMut,
}

/// Bytes kept free in front of each frame so a VLAN tag can be put back without moving it.
pub const HEADROOM: usize = 4;

const BLOCK: usize = 4 * MAX_FRAME;

impl Default for RxBuf {
    fn default() -> Self {
        RxBuf {
            buf: BytesMut::with_capacity(BLOCK),
        }
    }
}

impl RxBuf {
    /// Reads one frame with `read`, which gets a pointer to at least [`MAX_FRAME`] writable
    /// bytes (after [`HEADROOM`] spare ones) and returns how many it wrote. `fixup` may then
    /// edit the frame including the headroom and returns where the frame starts (0 or
    /// `HEADROOM`).
    pub fn read(
        &mut self,
        read: impl FnOnce(*mut u8, usize) -> std::io::Result<usize>,
        fixup: impl FnOnce(&mut [u8]) -> usize,
    ) -> std::io::Result<Bytes> {
        if self.buf.capacity() - self.buf.len() < MAX_FRAME + HEADROOM {
            self.buf = BytesMut::with_capacity(BLOCK);
        }
        let spare = self.buf.spare_capacity_mut();
        let n = read(spare[HEADROOM..].as_mut_ptr().cast(), MAX_FRAME)?;
        let n = n.min(MAX_FRAME);
        // Zero the headroom so the whole range is initialised before it is exposed.
        for b in &mut spare[..HEADROOM] {
            b.write(0);
        }
        // SAFETY: `read` initialised n bytes after the headroom, and the headroom was just
        // written; n + HEADROOM is within the spare capacity checked above.
        unsafe { self.buf.set_len(HEADROOM + n) };
        let start = fixup(&mut self.buf[..]);
        let mut frame = self.buf.split();
        let _ = frame.split_to(start.min(HEADROOM));
        Ok(frame.freeze())
    }
}

/// `read(2)` of one frame from a non-blocking descriptor.
pub fn read_fd(fd: RawFd, ptr: *mut u8, len: usize) -> std::io::Result<usize> {
    // SAFETY: ptr/len describe writable memory owned by the caller.
    let n = unsafe { libc::read(fd, ptr.cast(), len) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `write(2)` of one frame to a non-blocking descriptor.
pub fn write_fd(fd: RawFd, frame: &[u8]) -> std::io::Result<usize> {
    // SAFETY: frame is a valid readable slice.
    let n = unsafe { libc::write(fd, frame.as_ptr().cast(), frame.len()) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// What one receive produced for the switch.
pub enum Received {
    /// One frame: the common case, straight from the receive buffer.
    One(Bytes),
    /// Several frames (an offloaded super-frame cut into segments).
    Many(Vec<Bytes>),
    /// Nothing to forward (a frame that had to be dropped); keep reading.
    Nothing,
}

/// Errors after which the descriptor is useless: the device is gone.
fn fatal(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENODEV | libc::ENXIO | libc::EBADF | libc::EFAULT)
    )
}

/// Runs a descriptor-backed port: frames read by `recv` go to the switch, frames from the
/// switch are written with `send` (e.g. [`write_fd`]). Returns when the switch removes the port
/// (`Ok`) or the device goes away (`Err`). A frame the device refuses (too big for its MTU,
/// link down, no buffer space) is dropped and logged; the port lives on.
pub async fn drive<T: AsRawFd>(
    afd: &AsyncFd<T>,
    io: PortIo,
    mut recv: impl FnMut(RawFd, &mut RxBuf) -> io::Result<Received>,
    mut send: impl FnMut(RawFd, &[u8]) -> io::Result<usize>,
) -> anyhow::Result<()> {
    let PortIo {
        mut egress,
        ingress,
    } = io;
    let fd = afd.as_raw_fd();

    let reader = receive(afd, &ingress, &mut recv);

    let writer = async {
        let mut batch = Vec::with_capacity(64);
        while egress.recv_many(&mut batch, 64).await > 0 {
            for frame in batch.drain(..) {
                loop {
                    match send(fd, &frame) {
                        Ok(_) => break,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            afd.writable().await?.clear_ready();
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) if fatal(&e) => return Err(anyhow::Error::from(e)),
                        Err(e) => {
                            tracing::debug!(
                                port = ingress.port(),
                                len = frame.len(),
                                "frame not sent: {e}"
                            );
                            break;
                        }
                    }
                }
            }
        }
        Ok(())
    };

    tokio::select! {
        r = reader => r,
        r = writer => r,
    }
}

/// Reads frames with `recv` and hands them to the switch until the device goes away (`Err`):
/// the receive half of [`drive`], also used alone by ports that send another way.
pub async fn receive<T: AsRawFd>(
    afd: &AsyncFd<T>,
    ingress: &Ingress,
    mut recv: impl FnMut(RawFd, &mut RxBuf) -> io::Result<Received>,
) -> anyhow::Result<()> {
    let fd = afd.as_raw_fd();
    let mut buf = RxBuf::default();
    loop {
        let mut guard = afd.readable().await?;
        // Drain everything that is ready before waiting again.
        loop {
            match recv(fd, &mut buf) {
                Ok(Received::One(frame)) => ingress.frame(frame),
                Ok(Received::Many(frames)) => frames.into_iter().for_each(|f| ingress.frame(f)),
                Ok(Received::Nothing) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    guard.clear_ready();
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if fatal(&e) => return Err(anyhow::Error::from(e)),
                Err(e) => {
                    tracing::debug!(port = ingress.port(), "receive error: {e}");
                    break;
                }
            }
        }
    }
}

/// Puts a descriptor in non-blocking mode, as readiness-driven I/O requires.
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain fcntl calls on a descriptor the caller owns.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
