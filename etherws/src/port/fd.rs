//! Ports backed by a file descriptor (TAP devices, AF_PACKET sockets): non-blocking I/O driven
//! by tokio readiness, frames read into large shared blocks ([`RxBuf`]) and handed to the
//! switch in batches, written one per call or a batch per call as the device takes them.
//! The system calls themselves are [`crate::sys`]'s.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::unix::AsyncFd;

use super::{Ingress, MAX_FRAME, PortIo};
use crate::switch::fdb::PortNo;
use crate::switch::frame::Frame;
use crate::sys::{self, SyscallError};
use crate::wire::gso::VNET_HDR_LEN;

/// Receive buffer for device ports: frames are read into one large block and handed out as
/// [`Bytes`] slices of it, so reading a frame costs neither a copy nor an allocation.
///
/// A block is freed when the last frame cut from it is dropped; blocks are kept small enough
/// that frames parked in a slow port's queue pin a bounded amount of memory.
pub(crate) struct RxBuf {
    buf: BytesMut,
    /// Blocks used up, kept while their frames are still on their way: once every frame of
    /// one is gone, the block is taken again as it is (already initialised), instead of a new
    /// one being allocated and zeroed. Under a stream of 64 KB super-frames that zeroing was
    /// a memset of every byte read, and each 256 KiB block an mmap and page faults.
    retired: Retired,
}

/// Used-up blocks kept for reuse at most (a megabyte a port).
const RETIRED: usize = 4;

/// Buffers whose frames may still be on their way (frames are [`Bytes`] cut from them), kept
/// so that a buffer whose frames are all gone is taken again rather than a new one allocated.
#[derive(Debug)]
pub(crate) struct Retired {
    bufs: std::collections::VecDeque<BytesMut>,
    /// Buffers kept at most: the oldest goes (to its frames alone) when one more comes in.
    max: usize,
}

impl Retired {
    pub(crate) fn new(max: usize) -> Self {
        Retired {
            bufs: Default::default(),
            max,
        }
    }

    /// Takes in `used` (a buffer with no room left) and gives back a kept one whose frames are
    /// all gone, with room for `need` bytes, if there is one.
    pub(crate) fn exchange(&mut self, used: BytesMut, need: usize) -> Option<BytesMut> {
        let free = self.bufs.iter_mut().position(|b| b.try_reclaim(need));
        let found = free.and_then(|i| self.bufs.remove(i));
        if used.capacity() > 0 {
            if self.bufs.len() == self.max {
                self.bufs.pop_front();
            }
            self.bufs.push_back(used);
        }
        found
    }
}

/// Bytes kept free in front of each frame so a VLAN tag can be put back without moving it.
pub(crate) const HEADROOM: usize = crate::wire::vlan::HEADER_LEN;

const BLOCK: usize = 4 * MAX_FRAME;

impl Default for RxBuf {
    fn default() -> Self {
        RxBuf {
            buf: block(),
            retired: Retired::new(RETIRED),
        }
    }
}

/// A fresh block, every byte initialised (zeroed) once: reads only ever overwrite it, so no
/// byte the buffer exposes can be uninitialised, whatever a `read` closure claims. Zeroing
/// costs a memset per block (some hundred frames), not per frame.
fn block() -> BytesMut {
    let mut b = BytesMut::zeroed(BLOCK);
    b.clear();
    b
}

impl RxBuf {
    /// Reads one frame with `read`, which gets a pointer to at least [`MAX_FRAME`] writable
    /// bytes (after [`HEADROOM`] spare ones) and returns how many it wrote. `fixup` may then
    /// edit the frame including the headroom and returns where the frame starts (0 or
    /// `HEADROOM`).
    ///
    /// The count `read` returns (capped at `MAX_FRAME`) says which bytes become the frame. It
    /// should be what `read` wrote; if it claims more, the frame holds zeroes or bytes of earlier
    /// frames of the block, never uninitialised memory (see [`block`]).
    ///
    /// # Errors
    ///
    /// What `read` returned; the buffer is then as it was.
    pub(crate) fn read(
        &mut self,
        read: impl FnOnce(*mut u8, usize) -> std::io::Result<usize>,
        fixup: impl FnOnce(&mut [u8]) -> usize,
    ) -> std::io::Result<Bytes> {
        self.room(MAX_FRAME + HEADROOM);
        let spare = self.buf.spare_capacity_mut();
        let n = read(spare[HEADROOM..].as_mut_ptr().cast(), MAX_FRAME)?;
        let n = n.min(MAX_FRAME);
        // Zero the headroom so the whole range is initialised before it is exposed.
        for b in &mut spare[..HEADROOM] {
            b.write(0);
        }
        // SAFETY: every byte of the block was initialised when it was allocated (`block`) and
        // has only been overwritten since, so the first HEADROOM + n bytes of the spare capacity
        // are initialised whatever `read` returned; n <= MAX_FRAME, so HEADROOM + n is within
        // the spare capacity checked above.
        unsafe { self.buf.set_len(HEADROOM + n) };
        Ok(self.cut(fixup))
    }

    /// A frame received elsewhere, copied in behind the headroom: it takes only its own length
    /// of the block. `fixup` as for [`read`](Self::read). `data` must not exceed
    /// [`MAX_FRAME`] (longer is cut there).
    pub(crate) fn copy(&mut self, data: &[u8], fixup: impl FnOnce(&mut [u8]) -> usize) -> Bytes {
        let data = &data[..data.len().min(MAX_FRAME)];
        self.room(data.len() + HEADROOM);
        self.buf.extend_from_slice(&[0; HEADROOM]);
        self.buf.extend_from_slice(data);
        self.cut(fixup)
    }

    /// Makes sure the block has `need` bytes free: if not, it is replaced by a retired one
    /// whose frames are all gone (its bytes were initialised when it was made and only
    /// overwritten since), or a new one.
    fn room(&mut self, need: usize) {
        if self.buf.capacity() - self.buf.len() < need {
            let used = std::mem::take(&mut self.buf);
            self.buf = self
                .retired
                .exchange(used, MAX_FRAME + HEADROOM)
                .unwrap_or_else(block);
        }
    }

    /// Cuts the frame just put in the buffer (behind its headroom) off it, once `fixup` has
    /// said where it starts.
    fn cut(&mut self, fixup: impl FnOnce(&mut [u8]) -> usize) -> Bytes {
        let start = fixup(&mut self.buf[..]);
        let mut frame = self.buf.split();
        frame.advance(start.min(HEADROOM));
        frame.freeze()
    }
}

/// `read(2)` of one frame from a non-blocking descriptor, for [`RxBuf::read`], whose `read`
/// closure returns a bare [`io::Error`]: name the call on what `RxBuf::read` returns
/// ([`SyscallError::of`]`("read")`).
///
/// # Safety
///
/// `ptr` must be valid for writes of `len` bytes (as the pointer [`RxBuf::read`] hands its
/// `read` closure is).
///
/// # Errors
///
/// The OS error of `read(2)` (`WouldBlock` when nothing is waiting).
pub(crate) unsafe fn read_fd(fd: RawFd, ptr: *mut u8, len: usize) -> std::io::Result<usize> {
    // SAFETY: the caller's promise of `len` writable bytes at `ptr`, passed on.
    unsafe { sys::fd::read(fd, ptr, len) }.map_err(|e| e.source)
}

/// `write(2)` of one plain frame to a non-blocking descriptor.
///
/// # Errors
///
/// `write` with the OS error.
pub(crate) fn write_fd(fd: RawFd, frame: &Frame) -> Result<usize, SyscallError> {
    sys::fd::write(fd, &frame.data)
}

/// What one receive produced for the switch.
pub(crate) enum Received {
    /// One frame: the common case, straight from the receive buffer.
    One(Frame),
    /// Nothing to forward (a frame that had to be dropped); keep reading.
    Nothing,
}

/// The two pieces of a frame read or written with its `virtio_net_hdr`: the header, then the
/// frame's `len` bytes at `frame` (for `readv`/`recvmsg`, or `writev`).
pub(crate) fn vnet_iov(hdr: *mut u8, frame: *mut u8, len: usize) -> [libc::iovec; 2] {
    [
        libc::iovec {
            iov_base: hdr.cast(),
            iov_len: VNET_HDR_LEN,
        },
        libc::iovec {
            iov_base: frame.cast(),
            iov_len: len,
        },
    ]
}

/// `writev(2)` of one frame behind its `virtio_net_hdr` (all zero for a plain frame), as a TAP
/// with `IFF_VNET_HDR` or a packet socket with `PACKET_VNET_HDR` takes it; returns the frame
/// bytes written.
///
/// # Errors
///
/// `writev` with the OS error.
pub(crate) fn write_vnet(fd: RawFd, frame: &Frame) -> Result<usize, SyscallError> {
    let hdr = frame.offload.to_bytes();
    let n = sys::fd::writev(fd, &[IoSlice::new(&hdr), IoSlice::new(&frame.data)])?;
    Ok(n.saturating_sub(VNET_HDR_LEN))
}

/// Errors after which the descriptor is useless: the device is gone.
fn fatal(e: &SyscallError) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENODEV | libc::ENXIO | libc::EBADF | libc::EFAULT)
    )
}

/// What a device's writes can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Takes {
    /// Plain frames only: offloaded ones are finished (segmented, checksummed) first.
    Plain,
    /// Frames with their offload metadata (a `virtio_net_hdr` in front): the kernel finishes
    /// them.
    Offloaded,
}

/// A port's `send` for [`drive`] that writes one frame per call with `write` (e.g.
/// [`write_fd`]), for devices that take no batches: a TAP is a character device, one `write`
/// is one frame.
pub(crate) fn one_at_a_time(
    mut write: impl FnMut(RawFd, &Frame) -> Result<usize, SyscallError>,
) -> impl FnMut(RawFd, &[Frame]) -> Result<usize, SyscallError> {
    move |fd, frames: &[Frame]| write(fd, &frames[0]).map(|_| 1)
}

/// Runs a descriptor-backed port: frames read by `recv` go to the switch, frames from the
/// switch are written with `send`, finished first unless the device [`Takes::Offloaded`] ones.
/// Returns when the switch removes the port (`Ok`) or the device goes away (`Err`). A frame the device refuses (too big for its MTU,
/// link down, no buffer space) is dropped and logged; the port lives on.
///
/// `send` writes frames from the front of the slice it is given and returns how many it
/// wrote: at least one, or the error of the first, which `drive` handles and then moves past
/// (e.g. [`one_at_a_time`]`(`[`write_fd`]`)`, or a `sendmmsg` of the whole batch). A frame
/// refused in the middle of a `sendmmsg` is tried once more, first of the next call, before
/// it is dropped.
///
/// # Errors
///
/// The error that made the device useless ([`fatal`]), or the reactor's.
pub(crate) async fn drive<T: AsRawFd>(
    afd: &AsyncFd<T>,
    io: PortIo,
    mut recv: impl FnMut(RawFd, &mut RxBuf) -> Result<Received, SyscallError>,
    takes: Takes,
    mut send: impl FnMut(RawFd, &[Frame]) -> Result<usize, SyscallError>,
) -> anyhow::Result<()> {
    let PortIo {
        mut egress,
        ingress,
    } = io;
    let reader = receive(afd, &ingress, &mut recv);

    let writer = async {
        let mut batch = Vec::with_capacity(SEND_BATCH);
        let mut plain = Vec::new();
        loop {
            let n = match takes {
                Takes::Offloaded => egress.recv_many(&mut batch, SEND_BATCH).await,
                Takes::Plain => {
                    let n = egress.recv_plain(&mut plain, SEND_BATCH).await;
                    batch.extend(plain.drain(..).map(Frame::from));
                    n
                }
            };
            if n == 0 {
                break;
            }
            send_all(afd, &batch, ingress.port(), &mut send).await?;
            batch.clear();
            // Charged to the queue until now (see `EgressRx`).
            egress.written();
        }
        Ok(())
    };

    tokio::select! {
        r = reader => r,
        r = writer => r,
    }
}

/// Sends all of `frames` (of port `port`) through `afd` with `send`, waiting while the
/// socket is full; a frame the device refuses is dropped (logged), the others still go.
///
/// # Errors
///
/// The error that made the device useless ([`fatal`]), or the reactor's.
pub(crate) async fn send_all<T: AsRawFd>(
    afd: &AsyncFd<T>,
    frames: &[Frame],
    port: PortNo,
    mut send: impl FnMut(RawFd, &[Frame]) -> Result<usize, SyscallError>,
) -> anyhow::Result<()> {
    let fd = afd.as_raw_fd();
    let mut sent = 0;
    while sent < frames.len() {
        match send(fd, &frames[sent..]) {
            Ok(n) => {
                debug_assert!(n > 0, "send wrote no frame");
                sent += n.max(1);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                afd.writable().await?.clear_ready();
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if fatal(&e) => return Err(anyhow::Error::from(e)),
            Err(e) => {
                tracing::debug!(port, len = frames[sent].len(), "frame not sent: {e}");
                sent += 1;
            }
        }
    }
    Ok(())
}

/// Reads frames with `recv` and hands them to the switch until the device goes away (`Err`):
/// the receive half of [`drive`], also used alone by ports that send another way.
///
/// # Errors
///
/// The error that made the device useless ([`fatal`]), or the reactor's.
pub(crate) async fn receive<T: AsRawFd>(
    afd: &AsyncFd<T>,
    ingress: &Ingress,
    mut recv: impl FnMut(RawFd, &mut RxBuf) -> Result<Received, SyscallError>,
) -> anyhow::Result<()> {
    let fd = afd.as_raw_fd();
    let mut buf = RxBuf::default();
    // Frames read but not yet switched: handed over together, so the switch is locked once
    // per batch rather than once per frame.
    let mut batch = Vec::with_capacity(RECV_BATCH);
    loop {
        let mut guard = afd.readable().await?;
        // Drain everything that is ready before waiting again.
        loop {
            if batch.len() >= RECV_BATCH {
                ingress.frames(batch.drain(..));
            }
            match recv(fd, &mut buf) {
                Ok(Received::One(frame)) => batch.push(frame),
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
        ingress.frames(batch.drain(..));
    }
}

/// Frames read from a device before they are switched together.
const RECV_BATCH: usize = 64;

/// Frames a port's writer takes off its queue at once, and hands its `send` together.
pub(crate) const SEND_BATCH: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    /// What the capacity check of [`RxBuf::read`] looks at: room left in the current block.
    fn spare(rx: &RxBuf) -> usize {
        rx.buf.capacity() - rx.buf.len()
    }

    /// Where the next frame's headroom starts (the buffer is empty between reads).
    fn next(rx: &RxBuf) -> usize {
        rx.buf.as_ptr() as usize
    }

    fn pattern(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// A `read` closure that writes `data` and reports its length.
    fn writes(data: &[u8]) -> impl FnOnce(*mut u8, usize) -> io::Result<usize> + '_ {
        move |ptr, len| {
            assert!(
                data.len() <= len,
                "{} bytes offered, {} needed",
                len,
                data.len()
            );
            // SAFETY: `RxBuf::read` offers `len` writable bytes at `ptr`; `data` is a distinct
            // slice of at most `len` bytes.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), ptr, data.len()) };
            Ok(data.len())
        }
    }

    /// Reads `data` as one frame, leaving it where the device put it.
    fn read(rx: &mut RxBuf, data: &[u8]) -> Bytes {
        rx.read(writes(data), |_| HEADROOM).expect("read")
    }

    #[test]
    fn a_block_whose_frames_are_gone_is_used_again() {
        let mut rx = RxBuf::default();
        let first = next(&rx);
        let full = pattern(MAX_FRAME, 1);
        let frames: Vec<Bytes> = (0..4).map(|_| read(&mut rx, &full)).collect();
        // Its frames still live: a new block.
        let held = read(&mut rx, &full);
        assert!(!(first..first + BLOCK).contains(&(held.as_ptr() as usize)));
        drop(frames);
        for _ in 0..3 {
            read(&mut rx, &full);
        }
        // The next block is the first one again, its old bytes overwritten by the new frame.
        let again = read(&mut rx, &pattern(100, 9));
        assert!((first..first + BLOCK).contains(&(again.as_ptr() as usize)));
        assert_eq!(&again[..], &pattern(100, 9)[..]);
        assert_eq!(
            &held[..],
            &full[..],
            "a frame still held is never overwritten"
        );
    }

    #[test]
    fn a_copied_frame_takes_only_its_own_length() {
        let mut rx = RxBuf::default();
        let base = next(&rx);
        let a = rx.copy(&pattern(60, 1), |_| HEADROOM);
        let b = rx.copy(&pattern(1514, 2), |_| HEADROOM);
        assert_eq!(
            (&a[..], &b[..]),
            (&pattern(60, 1)[..], &pattern(1514, 2)[..])
        );
        assert_eq!(a.as_ptr() as usize, base + HEADROOM);
        assert_eq!(
            b.as_ptr() as usize,
            base + 2 * HEADROOM + 60,
            "packed behind the first"
        );
        // A full block is replaced, as for reads.
        while spare(&rx) >= MAX_FRAME + HEADROOM {
            rx.copy(&pattern(MAX_FRAME, 3), |_| HEADROOM);
        }
        let c = rx.copy(&pattern(spare(&rx), 4), |_| HEADROOM);
        assert!(!(base..base + BLOCK).contains(&(c.as_ptr() as usize)));
    }

    #[test]
    fn a_new_buffer_is_one_empty_block() {
        let rx = RxBuf::default();
        assert_eq!(rx.buf.len(), 0);
        assert!(rx.buf.capacity() >= BLOCK);
    }

    // A block holds several largest frames, each behind its headroom.
    const _: () = assert!(BLOCK >= 2 * (MAX_FRAME + HEADROOM));

    #[test]
    fn read_offers_max_frame_bytes_after_the_headroom() {
        let mut rx = RxBuf::default();
        let base = next(&rx);
        let mut offered = None;
        rx.read(
            |ptr, len| {
                offered = Some((ptr as usize, len));
                Ok(0)
            },
            |_| HEADROOM,
        )
        .unwrap();
        assert_eq!(offered, Some((base + HEADROOM, MAX_FRAME)));
    }

    #[test]
    fn a_partial_read_takes_headroom_and_frame_only() {
        let mut rx = RxBuf::default();
        let before = spare(&rx);
        let base = next(&rx);
        let data = pattern(60, 1);
        let frame = read(&mut rx, &data);
        assert_eq!(&frame[..], &data[..]);
        assert_eq!(frame.as_ptr() as usize, base + HEADROOM);
        // The buffer is empty again, just past the frame, with the rest of the block left.
        assert_eq!(rx.buf.len(), 0);
        assert_eq!(next(&rx), base + HEADROOM + 60);
        assert_eq!(spare(&rx), before - HEADROOM - 60);
    }

    #[test]
    fn a_full_read_takes_max_frame() {
        let mut rx = RxBuf::default();
        let before = spare(&rx);
        let data = pattern(MAX_FRAME, 2);
        let frame = read(&mut rx, &data);
        assert_eq!(frame.len(), MAX_FRAME);
        assert_eq!(&frame[..], &data[..]);
        assert_eq!(spare(&rx), before - HEADROOM - MAX_FRAME);
    }

    #[test]
    fn an_empty_read_gives_an_empty_frame() {
        let mut rx = RxBuf::default();
        let frame = read(&mut rx, &[]);
        assert!(frame.is_empty());
        // The headroom was used up all the same.
        let mut rx2 = RxBuf::default();
        let before = spare(&rx2);
        read(&mut rx2, &[]);
        assert_eq!(spare(&rx2), before - HEADROOM);
    }

    #[test]
    fn fixup_sees_a_zeroed_headroom_then_the_frame() {
        let mut rx = RxBuf::default();
        // The first read scribbles over everything it is offered but claims only 10 bytes: the
        // next frame's headroom lies in that scribbled memory.
        rx.read(
            |ptr, len| {
                // SAFETY: `RxBuf::read` offers `len` writable bytes at `ptr`.
                unsafe { std::ptr::write_bytes(ptr, 0xaa, len) };
                Ok(10)
            },
            |_| HEADROOM,
        )
        .unwrap();
        let data = pattern(100, 3);
        let mut seen = None;
        let frame = rx
            .read(writes(&data), |f| {
                seen = Some(f.to_vec());
                HEADROOM
            })
            .unwrap();
        let seen = seen.expect("fixup called");
        assert_eq!(seen.len(), HEADROOM + 100);
        assert_eq!(&seen[..HEADROOM], &[0; HEADROOM]);
        assert_eq!(&seen[HEADROOM..], &data[..]);
        assert_eq!(&frame[..], &data[..]);
    }

    #[test]
    fn fixup_may_use_the_headroom() {
        // What netdev does with a VLAN tag the kernel took off: the addresses slide into the
        // headroom and the tag goes where they were; the frame then starts at 0.
        let mut rx = RxBuf::default();
        let data = pattern(64, 4);
        let frame = rx
            .read(writes(&data), |f| {
                f.copy_within(HEADROOM..HEADROOM + 12, 0);
                f[12..16].copy_from_slice(&[0x81, 0x00, 0x00, 0x2a]);
                0
            })
            .unwrap();
        assert_eq!(frame.len(), HEADROOM + 64);
        assert_eq!(&frame[..12], &data[..12]);
        assert_eq!(&frame[12..16], &[0x81, 0x00, 0x00, 0x2a]);
        assert_eq!(&frame[16..], &data[12..]);
    }

    #[test]
    fn fixup_start_is_capped_at_the_headroom() {
        let mut rx = RxBuf::default();
        let data = pattern(50, 5);
        // Past the headroom: the frame still starts right after it, nothing of it is lost.
        let frame = rx.read(writes(&data), |_| 1000).unwrap();
        assert_eq!(&frame[..], &data[..]);
        // Inside the headroom: the rest of the (zeroed) headroom stays in front.
        let frame = rx.read(writes(&data), |_| HEADROOM - 2).unwrap();
        assert_eq!(frame.len(), 52);
        assert_eq!(&frame[..2], &[0, 0]);
        assert_eq!(&frame[2..], &data[..]);
    }

    #[test]
    fn a_read_that_claims_what_it_did_not_write_exposes_no_uninitialised_memory() {
        // Safe code can pass any closure: one that writes nothing but claims a full frame
        // gets zeroes (a fresh block), then bytes of earlier frames — never garbage.
        let mut rx = RxBuf::default();
        let liar = rx.read(|_, len| Ok(len), |_| HEADROOM).unwrap();
        assert_eq!(liar.len(), MAX_FRAME);
        assert!(liar.iter().all(|&b| b == 0));
    }

    #[test]
    fn a_count_above_max_frame_is_capped() {
        // A `read` that claims more than it was offered (say a count that includes a header
        // it wrote elsewhere) must not make the frame reach past the block.
        for claimed in [MAX_FRAME + 1, MAX_FRAME + HEADROOM + 1, BLOCK, usize::MAX] {
            let mut rx = RxBuf::default();
            let before = spare(&rx);
            let data = pattern(MAX_FRAME, 6);
            let frame = rx
                .read(
                    |ptr, len| {
                        writes(&data)(ptr, len)?;
                        Ok(claimed)
                    },
                    |_| HEADROOM,
                )
                .unwrap();
            assert_eq!(frame.len(), MAX_FRAME, "claimed {claimed}");
            assert_eq!(&frame[..], &data[..]);
            assert_eq!(spare(&rx), before - HEADROOM - MAX_FRAME);
        }
    }

    #[test]
    fn a_failed_read_leaves_the_buffer_as_it_was() {
        let mut rx = RxBuf::default();
        let first = read(&mut rx, &pattern(30, 7));
        let (at, room) = (next(&rx), spare(&rx));
        let e = rx
            .read(
                |_, _| Err(io::Error::from(io::ErrorKind::WouldBlock)),
                |_| panic!("fixup after a failed read"),
            )
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(rx.buf.len(), 0);
        assert_eq!((next(&rx), spare(&rx)), (at, room));
        // The next read uses the very place the failed one was offered.
        let data = pattern(40, 8);
        let frame = read(&mut rx, &data);
        assert_eq!(frame.as_ptr() as usize, at + HEADROOM);
        assert_eq!(&frame[..], &data[..]);
        assert_eq!(&first[..], &pattern(30, 7)[..]);
    }

    #[test]
    fn reads_follow_each_other_in_the_block_and_keep_earlier_frames() {
        let mut rx = RxBuf::default();
        let sizes = [60, 1514, 1, 9000, 0, 64, 4096];
        let frames: Vec<(Vec<u8>, Bytes)> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let data = pattern(n, i as u8);
                let frame = read(&mut rx, &data);
                (data, frame)
            })
            .collect();
        for pair in frames.windows(2) {
            let (prev, cur) = (&pair[0].1, &pair[1].1);
            assert_eq!(
                cur.as_ptr() as usize,
                prev.as_ptr() as usize + prev.len() + HEADROOM
            );
        }
        // Later reads (and their zeroed headrooms) did not touch earlier frames.
        for (data, frame) in &frames {
            assert_eq!(&frame[..], &data[..]);
        }
    }

    #[test]
    fn the_last_read_of_a_block_may_use_exactly_the_rest() {
        let mut rx = RxBuf::default();
        let cap = spare(&rx);
        // Bring the room left down to exactly what one read needs.
        let target = cap - (MAX_FRAME + HEADROOM);
        let mut used = 0;
        let mut frames = Vec::new();
        while used < target {
            let n = (target - used)
                .checked_sub(HEADROOM)
                .expect("steps of at least HEADROOM")
                .min(MAX_FRAME);
            frames.push(read(&mut rx, &pattern(n, frames.len() as u8)));
            used += HEADROOM + n;
        }
        assert_eq!(spare(&rx), MAX_FRAME + HEADROOM);
        // Still this block: the read fills it to the last byte.
        let at = next(&rx);
        let data = pattern(MAX_FRAME, 0x55);
        let last = read(&mut rx, &data);
        assert_eq!(last.as_ptr() as usize, at + HEADROOM);
        assert_eq!(spare(&rx), 0);
        // Then a new block, with a full block's room.
        let after = read(&mut rx, &pattern(10, 0x66));
        assert_ne!(
            after.as_ptr() as usize,
            at + HEADROOM + MAX_FRAME + HEADROOM
        );
        assert!(spare(&rx) >= BLOCK - HEADROOM - 10);
        assert_eq!(&last[..], &data[..]);
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(&f[..], &pattern(f.len(), i as u8)[..]);
        }
    }

    #[test]
    fn a_new_block_when_the_rest_is_too_small() {
        let mut rx = RxBuf::default();
        let mut kept = Vec::new();
        let mut new_blocks = 0;
        for i in 0..20u8 {
            let room = spare(&rx);
            let at = next(&rx);
            let data = pattern(MAX_FRAME - usize::from(i), i);
            let mut offered = 0;
            let frame = rx
                .read(
                    |ptr, len| {
                        offered = ptr as usize;
                        writes(&data)(ptr, len)
                    },
                    |_| HEADROOM,
                )
                .unwrap();
            if room < MAX_FRAME + HEADROOM {
                // Not enough left for a largest frame: a fresh block, away from the old one.
                assert_ne!(offered, at + HEADROOM, "read {i}");
                new_blocks += 1;
            } else {
                assert_eq!(offered, at + HEADROOM, "read {i}");
            }
            kept.push((data, frame));
        }
        assert!(new_blocks >= 4, "only {new_blocks} new blocks");
        // Frames in replaced blocks stay valid: each block lives until its last frame goes.
        for (data, frame) in &kept {
            assert_eq!(&frame[..], &data[..]);
        }
        drop(rx);
        for (data, frame) in &kept {
            assert_eq!(&frame[..], &data[..]);
        }
    }

    #[test]
    fn read_fd_reads_one_datagram_per_frame() {
        use std::os::unix::net::UnixDatagram;
        let (a, b) = UnixDatagram::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let fd = b.as_raw_fd();
        let read_b = |rx: &mut RxBuf| {
            // SAFETY: `RxBuf::read` offers `len` writable bytes at `ptr`.
            rx.read(|ptr, len| unsafe { read_fd(fd, ptr, len) }, |_| HEADROOM)
        };
        let mut rx = RxBuf::default();
        let small = pattern(60, 9);
        let big = pattern(MAX_FRAME + 100, 10);
        a.send(&small).unwrap();
        a.send(&big).unwrap();
        let f1 = read_b(&mut rx).unwrap();
        // read(2) of a datagram larger than the buffer keeps what fits.
        let f2 = read_b(&mut rx).unwrap();
        assert_eq!(&f1[..], &small[..]);
        assert_eq!(&f2[..], &big[..MAX_FRAME]);
        // Nothing more: the error comes through and the buffer is unchanged.
        let (at, room) = (next(&rx), spare(&rx));
        let e = read_b(&mut rx).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert_eq!((next(&rx), spare(&rx)), (at, room));
    }
}
