//! AF_XDP sockets, driven by hand (no extra crate): a UMEM, its fill and completion rings, and
//! the RX and TX rings of one socket bound to one RX queue of a device. The system calls are
//! [`crate::sys`]'s; what stays here is the ring memory shared with the kernel, each access
//! with its `// SAFETY:` reasoning.
//!
//! Each socket has a UMEM of its own, split in two fixed halves: RX frames (all of them in the
//! fill ring or in the kernel's hands, so the fill ring is always full) and TX frames (free, in
//! the TX ring, or awaiting completion). Frames are copied out of the UMEM into [`Bytes`] when
//! received (the switch may queue them on slow ports for a while) and into it when sent.
//! Binding tries zero-copy first and falls back to copy mode (veth, and most drivers, only do
//! copy mode).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::sys::mmap::Mmap;
use crate::sys::socket::{
    self, XDP_MMAP_OFFSETS, XDP_RX_RING, XDP_TX_RING, XDP_UMEM_COMPLETION_RING, XDP_UMEM_FILL_RING,
    XDP_UMEM_REG,
};
use crate::sys::{self, SyscallError};

/// Size of a UMEM chunk: the largest frame an AF_XDP socket carries here.
pub(crate) const FRAME_SIZE: u32 = 4096;
/// Frames of each half of the UMEM, and size of every ring.
const RING: u32 = 2048;

// Ring index arithmetic, kept out of `Ring`'s methods (which need a ring mmap'd from a real
// AF_XDP socket) so that it can be unit-tested, wrap-around included. The methods below call
// these functions and compute exactly what they computed inline before.
//
// As in the kernel, a ring's producer and consumer indices are free-running `u32` counters:
// they are stored unmasked, wrap at `u32::MAX`, and only their wrapping difference counts the
// entries between them. Index `i` lives in slot `i & (RING - 1)`, which stays right across the
// wrap because `RING`, a power of two, divides 2^32.
const _: () = assert!(RING.is_power_of_two() && FRAME_SIZE.is_power_of_two());

/// The slot of ring index `i`: always below `RING`.
fn slot(i: u32) -> usize {
    (i & (RING - 1)) as usize
}

/// Entries a consumer at index `cons` may take while the producer is at `prod` (RX and
/// completion rings, which the kernel produces).
fn ready(prod: u32, cons: u32) -> u32 {
    prod.wrapping_sub(cons)
}

/// Entries a producer at index `prod` may still write while the consumer is at `cons` (the TX
/// ring, which the kernel consumes): 0 when the ring is full.
fn room(prod: u32, cons: u32) -> u32 {
    RING.saturating_sub(prod.wrapping_sub(cons))
}

/// The UMEM frame (`FRAME_SIZE`-aligned chunk) that an address handed back by the kernel lies
/// in: a descriptor's address may point past the start of its chunk.
fn chunk_of(addr: u64) -> u64 {
    addr & !u64::from(FRAME_SIZE - 1)
}

/// Offset of the `len` bytes at UMEM address `addr`, if they lie within a UMEM of `umem_len`
/// bytes (descriptor addresses and lengths are the kernel's word: checked before use).
fn umem_offset(addr: u64, len: usize, umem_len: usize) -> Option<usize> {
    let end = (addr as usize).checked_add(len)?;
    (end <= umem_len).then_some(addr as usize)
}

/// One of the four rings: a producer index, a consumer index and `RING` entries.
struct Ring {
    _map: Mmap,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    desc: *mut u8,
    /// Our copy of the index we own (producer of fill/TX, consumer of RX/completion).
    local: u32,
}

// SAFETY: the raw pointers point into `_map`, which the ring owns and which moves with it (the
// mapped memory itself never moves); the indices shared with the kernel are atomics.
unsafe impl Send for Ring {}

impl Ring {
    fn map(
        fd: BorrowedFd<'_>,
        off: &libc::xdp_ring_offset,
        entry: usize,
        pgoff: u64,
    ) -> Result<Ring, SyscallError> {
        let len = off.desc as usize + RING as usize * entry;
        let map = Mmap::shared(fd, len, pgoff as libc::off_t, "mmap(AF_XDP ring)")?;
        let base = map.as_ptr();
        // SAFETY: the offsets come from the kernel (XDP_MMAP_OFFSETS) for this very ring, whose
        // layout puts both indices before `desc`; the mapping is `off.desc + RING * entry` bytes
        // long, so all three pointers lie within it.
        let ring = unsafe {
            Ring {
                producer: base.add(off.producer as usize).cast(),
                consumer: base.add(off.consumer as usize).cast(),
                desc: base.add(off.desc as usize),
                local: 0,
                _map: map,
            }
        };
        Ok(ring)
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: `producer` points at the kernel's u32-aligned producer index inside the mapping
        // that `self` owns, so it is valid for the returned borrow; the kernel and this code only
        // access it atomically.
        unsafe { &*self.producer }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as in `producer`, for the consumer index: aligned, inside the mapping `self`
        // owns, and only accessed atomically.
        unsafe { &*self.consumer }
    }

    fn addr_slot(&self, i: u32) -> *mut u64 {
        // SAFETY: `slot(i) < RING`, and a fill or completion ring is mapped with RING u64 entries
        // after `desc` (`entry` = 8 in `Ring::map`): the pointer stays within the mapping.
        unsafe { self.desc.cast::<u64>().add(slot(i)) }
    }

    fn desc_slot(&self, i: u32) -> *mut libc::xdp_desc {
        // SAFETY: `slot(i) < RING`, and an RX or TX ring is mapped with RING `xdp_desc` entries
        // after `desc` (`entry` = `size_of::<xdp_desc>()` in `open_with`): the pointer stays within
        // the mapping.
        unsafe { self.desc.cast::<libc::xdp_desc>().add(slot(i)) }
    }
}

/// The memory frames are received into and sent from, shared with the kernel.
pub(crate) struct Umem(Mmap);

impl Umem {
    fn frame(&self, addr: u64, len: usize) -> Option<*mut u8> {
        let off = umem_offset(addr, len, self.0.len())?;
        // SAFETY: `umem_offset` checked that `off + len <= umem.len`, so the pointer (and the
        // `len` bytes after it) lie within the UMEM mapping.
        Some(unsafe { self.0.as_ptr().add(off) })
    }
}

/// What both halves of an AF_XDP socket share: the socket (bound to one queue, non-blocking)
/// and its UMEM.
pub(crate) struct Shared {
    pub(crate) fd: OwnedFd,
    pub(crate) umem: Umem,
    /// Bound in zero-copy mode (else copy mode).
    pub(crate) zerocopy: bool,
}

/// The receive half: RX ring and fill ring.
pub(crate) struct Rx {
    rx: Ring,
    fill: Ring,
}

/// The transmit half: TX ring, completion ring and the free TX frames.
pub(crate) struct Tx {
    tx: Ring,
    comp: Ring,
    free: Vec<u64>,
    pending: u32,
}

/// Opens an AF_XDP socket on `queue` of `ifindex`: zero-copy if the driver allows, else copy.
///
/// # Errors
///
/// The call of the copy-mode attempt that failed (`socket(AF_XDP)`, `mmap(UMEM)`,
/// `setsockopt(XDP_UMEM_REG)`, `bind(AF_XDP)`...).
pub(crate) fn open(ifindex: u32, queue: u32) -> Result<(Shared, Rx, Tx), SyscallError> {
    open_with(ifindex, queue, libc::XDP_ZEROCOPY).or_else(|e| {
        tracing::debug!(ifindex, queue, "AF_XDP zero-copy refused ({e}): copy mode");
        open_with(ifindex, queue, libc::XDP_COPY)
    })
}

fn open_with(ifindex: u32, queue: u32, mode: u16) -> Result<(Shared, Rx, Tx), SyscallError> {
    let fd = socket::socket(
        libc::AF_XDP,
        libc::SOCK_RAW | libc::SOCK_CLOEXEC,
        0,
        "socket(AF_XDP)",
    )?;
    let umem = Umem(Mmap::anonymous(
        (2 * RING * FRAME_SIZE) as usize,
        "mmap(UMEM)",
    )?);
    let reg = libc::xdp_umem_reg {
        addr: umem.0.as_ptr() as u64,
        len: umem.0.len() as u64,
        chunk_size: FRAME_SIZE,
        headroom: 0,
        flags: 0,
        tx_metadata_len: 0,
    };
    socket::setsockopt(fd.as_fd(), XDP_UMEM_REG, &reg)?;
    let n = RING as libc::c_int;
    for opt in [
        XDP_UMEM_FILL_RING,
        XDP_UMEM_COMPLETION_RING,
        XDP_RX_RING,
        XDP_TX_RING,
    ] {
        socket::setsockopt(fd.as_fd(), opt, &n)?;
    }
    let off = socket::getsockopt(fd.as_fd(), XDP_MMAP_OFFSETS)?;
    let desc = size_of::<libc::xdp_desc>();
    let rx = Ring::map(fd.as_fd(), &off.rx, desc, libc::XDP_PGOFF_RX_RING as u64)?;
    let tx = Ring::map(fd.as_fd(), &off.tx, desc, libc::XDP_PGOFF_TX_RING as u64)?;
    let mut fill = Ring::map(fd.as_fd(), &off.fr, 8, libc::XDP_UMEM_PGOFF_FILL_RING)?;
    let comp = Ring::map(fd.as_fd(), &off.cr, 8, libc::XDP_UMEM_PGOFF_COMPLETION_RING)?;

    // Every RX frame (the first half of the UMEM) goes into the fill ring at once.
    for i in 0..RING {
        // SAFETY: `addr_slot` stays within the fill ring's mapping, and the kernel reads fill
        // entries only below the producer index, which is published after this loop.
        unsafe { *fill.addr_slot(i) = u64::from(i * FRAME_SIZE) };
    }
    fill.local = RING;
    fill.producer().store(RING, Ordering::Release);

    let addr = libc::sockaddr_xdp {
        sxdp_family: libc::AF_XDP as u16,
        sxdp_flags: mode,
        sxdp_ifindex: ifindex,
        sxdp_queue_id: queue,
        sxdp_shared_umem_fd: 0,
    };
    socket::bind(fd.as_fd(), &addr, "bind(AF_XDP)")?;
    sys::fd::set_nonblocking(fd.as_fd())?;
    let free = (RING..2 * RING)
        .map(|i| u64::from(i * FRAME_SIZE))
        .collect();
    Ok((
        Shared {
            fd,
            umem,
            zerocopy: mode == libc::XDP_ZEROCOPY,
        },
        Rx { rx, fill },
        Tx {
            tx,
            comp,
            free,
            pending: 0,
        },
    ))
}

impl Rx {
    /// Takes up to `max` received frames (copied out), handing their UMEM frames straight back
    /// to the fill ring; returns how many.
    pub(crate) fn recv(&mut self, umem: &Umem, max: u32, mut each: impl FnMut(&[u8])) -> u32 {
        let prod = self.rx.producer().load(Ordering::Acquire);
        let n = ready(prod, self.rx.local).min(max);
        if n == 0 {
            return 0;
        }
        for i in 0..n {
            // SAFETY: entries from our consumer index up to the producer's (i < n <= ready) are
            // descriptors the kernel has finished, made visible by the Acquire load of the
            // producer; `desc_slot` keeps the read within the ring.
            let d = unsafe { std::ptr::read(self.rx.desc_slot(self.rx.local.wrapping_add(i))) };
            let len = (d.len as usize).min(FRAME_SIZE as usize);
            if let Some(p) = umem.frame(d.addr, len) {
                // SAFETY: within the UMEM; the frame is ours until it goes back to the fill ring.
                each(unsafe { std::slice::from_raw_parts(p, len) });
            }
            let chunk = chunk_of(d.addr);
            // SAFETY: `addr_slot` stays within the fill ring. The slot is free: there are only
            // RING RX frames, each in one place at a time (fill ring, kernel, RX ring, or this
            // loop), so while this loop holds n of them the fill ring holds at most RING - n
            // entries, and the n slots after its producer index are not the kernel's.
            unsafe { *self.fill.addr_slot(self.fill.local.wrapping_add(i)) = chunk };
        }
        self.rx.local = self.rx.local.wrapping_add(n);
        self.rx.consumer().store(self.rx.local, Ordering::Release);
        self.fill.local = self.fill.local.wrapping_add(n);
        self.fill
            .producer()
            .store(self.fill.local, Ordering::Release);
        n
    }
}

impl Tx {
    fn reclaim(&mut self) {
        let prod = self.comp.producer().load(Ordering::Acquire);
        let n = ready(prod, self.comp.local);
        for i in 0..n {
            // SAFETY: entries from our consumer index up to the producer's (i < n = ready) are
            // completions the kernel has written, made visible by the Acquire load of the
            // producer; `addr_slot` keeps the read within the ring.
            let addr = unsafe { *self.comp.addr_slot(self.comp.local.wrapping_add(i)) };
            self.free.push(chunk_of(addr));
        }
        if n > 0 {
            self.comp.local = self.comp.local.wrapping_add(n);
            self.comp
                .consumer()
                .store(self.comp.local, Ordering::Release);
        }
    }

    /// Queues one frame in the TX ring; false if there is no room right now (call
    /// [`Tx::kick`] and retry).
    ///
    /// # Errors
    ///
    /// `EMSGSIZE` for a frame larger than a UMEM frame.
    pub(crate) fn push(&mut self, umem: &Umem, frame: &[u8]) -> io::Result<bool> {
        if frame.len() > FRAME_SIZE as usize {
            return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
        }
        if self.free.is_empty() {
            self.reclaim();
        }
        let cons = self.tx.consumer().load(Ordering::Acquire);
        if room(self.tx.local, cons) == 0 {
            return Ok(false);
        }
        let Some(addr) = self.free.pop() else {
            return Ok(false);
        };
        let p = umem
            .frame(addr, frame.len())
            .expect("TX frames lie in the UMEM");
        // SAFETY: the `frame.len()` bytes at `p` lie within the UMEM (`Umem::frame` checked),
        // in a TX frame taken from `free`, which the kernel does not touch until its descriptor
        // is published; `frame` is a distinct Rust slice, so the two do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(frame.as_ptr(), p, frame.len()) };
        let d = libc::xdp_desc {
            addr,
            len: frame.len() as u32,
            options: 0,
        };
        // SAFETY: the slot is free (`room` > 0 against the consumer index above) and the kernel
        // does not read it before the producer index is published in `kick`; `desc_slot` keeps
        // the write within the ring.
        unsafe { std::ptr::write(self.tx.desc_slot(self.tx.local), d) };
        self.tx.local = self.tx.local.wrapping_add(1);
        self.pending += 1;
        Ok(true)
    }

    /// Publishes the queued frames and asks the kernel of socket `fd` to send them (copy mode
    /// sends them during the call), then takes back the completed frames.
    ///
    /// # Errors
    ///
    /// `sendto` with the OS error, unless it only means "later" (busy, out of buffers, link
    /// down): the frames then stay queued for the next kick.
    pub(crate) fn kick(&mut self, fd: BorrowedFd<'_>) -> Result<(), SyscallError> {
        if self.pending > 0 {
            self.tx.producer().store(self.tx.local, Ordering::Release);
            self.pending = 0;
        }
        // A zero-length send is the AF_XDP "wake up TX" call.
        let r = socket::sendto::<libc::sockaddr_xdp>(fd, &[], libc::MSG_DONTWAIT, None, "sendto");
        self.reclaim();
        match r {
            Err(e)
                if !matches!(
                    e.raw_os_error(),
                    Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::ENETDOWN)
                ) =>
            {
                Err(e)
            }
            _ => Ok(()),
        }
    }

    /// Whether frames are still waiting in the TX ring.
    pub(crate) fn busy(&self) -> bool {
        self.tx.consumer().load(Ordering::Acquire) != self.tx.local
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The UMEM `open_with` maps: RX frames, then TX frames.
    const UMEM_LEN: usize = (2 * RING * FRAME_SIZE) as usize;

    #[test]
    fn slot_masks_into_the_ring() {
        assert_eq!(slot(0), 0);
        assert_eq!(slot(1), 1);
        assert_eq!(slot(RING - 1), RING as usize - 1);
        assert_eq!(slot(RING), 0);
        assert_eq!(slot(RING + 5), 5);
        assert_eq!(slot(3 * RING + 7), 7);
        assert_eq!(slot(u32::MAX), RING as usize - 1);
        for i in [
            0,
            1,
            RING - 1,
            RING,
            12345,
            u32::MAX / 2,
            u32::MAX - 1,
            u32::MAX,
        ] {
            assert!(slot(i) < RING as usize, "slot({i})");
        }
    }

    #[test]
    fn slot_is_continuous_across_the_index_wrap() {
        // u32::MAX + 1 wraps to 0, whose slot follows u32::MAX's (RING divides 2^32).
        let mut i = u32::MAX - 2 * RING;
        let mut expected = slot(i);
        for _ in 0..4 * RING {
            assert_eq!(slot(i), expected, "index {i}");
            i = i.wrapping_add(1);
            expected = (expected + 1) % RING as usize;
        }
        assert_eq!(
            slot(u32::MAX.wrapping_add(1)),
            (slot(u32::MAX) + 1) % RING as usize
        );
    }

    #[test]
    fn ready_counts_entries_between_indices() {
        assert_eq!(ready(0, 0), 0);
        assert_eq!(ready(5, 0), 5);
        assert_eq!(ready(RING, 0), RING);
        assert_eq!(ready(1000 + 17, 1000), 17);
        // Equal indices anywhere: empty, even at the top of the range.
        assert_eq!(ready(u32::MAX, u32::MAX), 0);
    }

    #[test]
    fn ready_across_the_index_wrap() {
        // The producer has wrapped past u32::MAX, the consumer not yet.
        assert_eq!(ready(0, u32::MAX), 1);
        assert_eq!(ready(2, u32::MAX - 1), 4);
        assert_eq!(ready(RING / 2, u32::MAX - (RING / 2 - 1)), RING);
        // Both have wrapped.
        assert_eq!(ready(10, 3), 7);
    }

    #[test]
    fn room_counts_free_entries_and_is_zero_when_full() {
        assert_eq!(room(0, 0), RING);
        assert_eq!(room(1, 0), RING - 1);
        assert_eq!(room(RING - 1, 0), 1);
        assert_eq!(room(RING, 0), 0);
        assert_eq!(room(RING + 100, 100), 0);
        // Consumer caught up: all free again.
        assert_eq!(room(RING + 100, RING + 100), RING);
        // An impossible state (more in flight than the ring holds) reads as full, not as a
        // huge free count: `push` never writes into a slot the kernel has not consumed.
        assert_eq!(room(RING + 1, 0), 0);
        assert_eq!(room(u32::MAX, 0), 0);
    }

    #[test]
    fn room_across_the_index_wrap() {
        // Producer wrapped, consumer still below u32::MAX.
        assert_eq!(room(0, u32::MAX), RING - 1);
        assert_eq!(room(5, u32::MAX - 2), RING - 8);
        // Exactly full across the wrap.
        assert_eq!(room(5, 5u32.wrapping_sub(RING)), 0);
        assert_eq!(room(RING - 1, u32::MAX), 0);
        // Empty right at the wrap.
        assert_eq!(room(0, 0), RING);
        assert_eq!(room(u32::MAX, u32::MAX), RING);
    }

    #[test]
    fn room_and_ready_agree() {
        // For every legal distance between the indices, whatever their position: what the
        // consumer may take plus what the producer may add is the ring's size.
        for base in [0, 1, RING, u32::MAX - RING, u32::MAX - 1, u32::MAX] {
            for d in [0, 1, RING / 2, RING - 1, RING] {
                let prod = base.wrapping_add(d);
                assert_eq!(ready(prod, base), d, "base {base}, distance {d}");
                assert_eq!(
                    ready(prod, base) + room(prod, base),
                    RING,
                    "base {base}, d {d}"
                );
            }
        }
    }

    /// A ring in ordinary memory driven with the same arithmetic as `Rx::recv` and `Tx::push`:
    /// what the consumer reads is what the producer wrote, in order, across the index wrap.
    #[test]
    fn produce_and_consume_across_the_index_wrap() {
        let mut slots = vec![u64::MAX; RING as usize];
        let start = u32::MAX - RING / 2;
        let (mut prod, mut cons) = (start, start);
        let mut next = 0u64;
        let mut expected = 0u64;
        // Batches of uneven sizes, so that the indices cross u32::MAX in the middle of one.
        for round in 0..8u32 {
            // Produce as much as fits (the TX side's check, one entry at a time).
            let want = 300 + round * 97;
            let mut produced = 0;
            while produced < want && room(prod, cons) > 0 {
                slots[slot(prod)] = next;
                next += 1;
                prod = prod.wrapping_add(1);
                produced += 1;
            }
            assert!(ready(prod, cons) <= RING);
            // Consume up to a budget (the RX side's `ready(..).min(max)`).
            let n = ready(prod, cons).min(200 + round * 61);
            for i in 0..n {
                assert_eq!(slots[slot(cons.wrapping_add(i))], expected);
                expected += 1;
            }
            cons = cons.wrapping_add(n);
        }
        // Drain the rest.
        let n = ready(prod, cons);
        for i in 0..n {
            assert_eq!(slots[slot(cons.wrapping_add(i))], expected);
            expected += 1;
        }
        cons = cons.wrapping_add(n);
        assert_eq!(expected, next);
        assert_eq!(ready(prod, cons), 0);
        assert_eq!(room(prod, cons), RING);
        assert!(prod < start, "the indices wrapped during the test");
    }

    #[test]
    fn filling_the_ring_stops_at_ring_entries_across_the_wrap() {
        let cons = u32::MAX - 10;
        let mut prod = cons;
        let mut pushed = 0;
        while room(prod, cons) > 0 {
            prod = prod.wrapping_add(1);
            pushed += 1;
        }
        assert_eq!(pushed, RING);
        assert_eq!(ready(prod, cons), RING);
        // The next entry would land in the consumer's slot.
        assert_eq!(slot(prod), slot(cons));
    }

    #[test]
    fn chunk_of_rounds_down_to_the_frame() {
        assert_eq!(chunk_of(0), 0);
        assert_eq!(chunk_of(1), 0);
        assert_eq!(chunk_of(u64::from(FRAME_SIZE) - 1), 0);
        assert_eq!(chunk_of(u64::from(FRAME_SIZE)), u64::from(FRAME_SIZE));
        // A descriptor address with headroom inside frame 3.
        let f3 = 3 * u64::from(FRAME_SIZE);
        assert_eq!(chunk_of(f3 + 256), f3);
        assert_eq!(chunk_of(f3 + u64::from(FRAME_SIZE) - 1), f3);
        for i in 0..2 * RING {
            let a = u64::from(i * FRAME_SIZE);
            assert_eq!(chunk_of(a), a);
            assert_eq!(chunk_of(a + 42), a);
        }
    }

    #[test]
    fn umem_offset_checks_bounds() {
        assert_eq!(umem_offset(0, 0, UMEM_LEN), Some(0));
        assert_eq!(umem_offset(0, FRAME_SIZE as usize, UMEM_LEN), Some(0));
        assert_eq!(umem_offset(4096, 60, UMEM_LEN), Some(4096));
        // Ends exactly at the end: fine; one byte more: refused.
        let last = (UMEM_LEN - FRAME_SIZE as usize) as u64;
        assert_eq!(
            umem_offset(last, FRAME_SIZE as usize, UMEM_LEN),
            Some(last as usize)
        );
        assert_eq!(umem_offset(last, FRAME_SIZE as usize + 1, UMEM_LEN), None);
        assert_eq!(umem_offset(UMEM_LEN as u64, 0, UMEM_LEN), Some(UMEM_LEN));
        assert_eq!(umem_offset(UMEM_LEN as u64, 1, UMEM_LEN), None);
        assert_eq!(umem_offset(UMEM_LEN as u64 + 4096, 1, UMEM_LEN), None);
        // Overflowing address + length: refused, not wrapped around into the UMEM.
        assert_eq!(umem_offset(u64::MAX, 1, UMEM_LEN), None);
        assert_eq!(umem_offset(u64::MAX - 10, 100, UMEM_LEN), None);
        assert_eq!(umem_offset(1, usize::MAX, UMEM_LEN), None);
    }

    #[test]
    fn every_umem_frame_lies_within_the_umem() {
        // The RX frames given to the fill ring and the TX frames of `Tx::free`, as `open_with`
        // makes them: each whole frame is inside the UMEM (`Tx::push` relies on it).
        for i in 0..2 * RING {
            let a = u64::from(i * FRAME_SIZE);
            assert_eq!(
                umem_offset(a, FRAME_SIZE as usize, UMEM_LEN),
                Some(a as usize)
            );
        }
        let past = u64::from(2 * RING * FRAME_SIZE);
        assert_eq!(umem_offset(past, 1, UMEM_LEN), None);
    }
}
