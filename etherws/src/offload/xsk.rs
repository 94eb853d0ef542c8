//! AF_XDP sockets, driven by hand with `libc` (no extra crate): a UMEM, its fill and completion
//! rings, and the RX and TX rings of one socket bound to one RX queue of a device.
//!
//! Each socket has a UMEM of its own, split in two fixed halves: RX frames (all of them in the
//! fill ring or in the kernel's hands, so the fill ring is always full) and TX frames (free, in
//! the TX ring, or awaiting completion). Frames are copied out of the UMEM into [`Bytes`] when
//! received (the switch may queue them on slow ports for a while) and into it when sent.
//! Binding tries zero-copy first and falls back to copy mode (veth, and most drivers, only do
//! copy mode).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// Size of a UMEM chunk: the largest frame an AF_XDP socket carries here.
pub const FRAME_SIZE: u32 = 4096;
/// Frames of each half of the UMEM, and size of every ring.
const RING: u32 = 2048;

fn last_err(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// An anonymous or ring mapping, unmapped on drop.
struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: plain memory; the rings' concurrent accesses go through atomics.
unsafe impl Send for Mmap {}
// SAFETY: as above.
unsafe impl Sync for Mmap {}

impl Mmap {
    fn new(fd: RawFd, len: usize, offset: libc::off_t, what: &str) -> io::Result<Mmap> {
        let (flags, fd) = if fd < 0 {
            (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1)
        } else {
            (libc::MAP_SHARED | libc::MAP_POPULATE, fd)
        };
        // SAFETY: a fresh mapping; the kernel checks fd/offset.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                offset,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(last_err(what));
        }
        Ok(Mmap {
            ptr: NonNull::new(p.cast()).expect("mmap never returns NULL on success"),
            len,
        })
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: our own mapping.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
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

// SAFETY: the pointers point into `_map`, which moves with the ring.
unsafe impl Send for Ring {}

impl Ring {
    fn map(fd: RawFd, off: &libc::xdp_ring_offset, entry: usize, pgoff: u64) -> io::Result<Ring> {
        let len = off.desc as usize + RING as usize * entry;
        let map = Mmap::new(fd, len, pgoff as libc::off_t, "mmap(AF_XDP ring)")?;
        let base = map.ptr.as_ptr();
        // SAFETY: the offsets come from the kernel and lie within the mapping.
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
        // SAFETY: valid, aligned, shared with the kernel only through atomic accesses.
        unsafe { &*self.producer }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as above.
        unsafe { &*self.consumer }
    }

    fn addr_slot(&self, i: u32) -> *mut u64 {
        // SAFETY: index masked into the ring.
        unsafe { self.desc.cast::<u64>().add((i & (RING - 1)) as usize) }
    }

    fn desc_slot(&self, i: u32) -> *mut libc::xdp_desc {
        // SAFETY: index masked into the ring.
        unsafe {
            self.desc
                .cast::<libc::xdp_desc>()
                .add((i & (RING - 1)) as usize)
        }
    }
}

/// What both halves share: the socket and the UMEM.
pub struct Shared {
    fd: OwnedFd,
    umem: Mmap,
    pub zerocopy: bool,
    pub queue: u32,
}

impl AsRawFd for Shared {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Shared {
    fn frame(&self, addr: u64, len: usize) -> Option<*mut u8> {
        let end = (addr as usize).checked_add(len)?;
        // SAFETY: bounds checked against the UMEM.
        (end <= self.umem.len).then(|| unsafe { self.umem.ptr.as_ptr().add(addr as usize) })
    }
}

/// The receive half: RX ring and fill ring.
pub struct Rx {
    rx: Ring,
    fill: Ring,
}

/// The transmit half: TX ring, completion ring and the free TX frames.
pub struct Tx {
    tx: Ring,
    comp: Ring,
    free: Vec<u64>,
    pending: u32,
}

/// Opens an AF_XDP socket on `queue` of `ifindex`: zero-copy if the driver allows, else copy.
pub fn open(ifindex: u32, queue: u32) -> io::Result<(Shared, Rx, Tx)> {
    match open_with(ifindex, queue, libc::XDP_ZEROCOPY) {
        Ok(x) => Ok(x),
        Err(_) => open_with(ifindex, queue, libc::XDP_COPY),
    }
}

fn open_with(ifindex: u32, queue: u32, mode: u16) -> io::Result<(Shared, Rx, Tx)> {
    // SAFETY: plain syscall.
    let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(last_err("socket(AF_XDP)"));
    }
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let umem = Mmap::new(-1, (2 * RING * FRAME_SIZE) as usize, 0, "mmap(UMEM)")?;
    let setopt = |opt: libc::c_int, val: *const libc::c_void, size: usize, what: &str| {
        // SAFETY: `val` points to `size` readable bytes.
        let r = unsafe { libc::setsockopt(raw, libc::SOL_XDP, opt, val, size as libc::socklen_t) };
        if r != 0 {
            return Err(last_err(what));
        }
        Ok(())
    };
    let reg = libc::xdp_umem_reg {
        addr: umem.ptr.as_ptr() as u64,
        len: umem.len as u64,
        chunk_size: FRAME_SIZE,
        headroom: 0,
        flags: 0,
        tx_metadata_len: 0,
    };
    setopt(
        libc::XDP_UMEM_REG,
        (&raw const reg).cast(),
        size_of_val(&reg),
        "XDP_UMEM_REG",
    )?;
    let n: libc::c_int = RING as libc::c_int;
    for (opt, what) in [
        (libc::XDP_UMEM_FILL_RING, "XDP_UMEM_FILL_RING"),
        (libc::XDP_UMEM_COMPLETION_RING, "XDP_UMEM_COMPLETION_RING"),
        (libc::XDP_RX_RING, "XDP_RX_RING"),
        (libc::XDP_TX_RING, "XDP_TX_RING"),
    ] {
        setopt(opt, (&raw const n).cast(), size_of_val(&n), what)?;
    }
    // SAFETY: plain old data.
    let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
    let mut len = size_of_val(&off) as libc::socklen_t;
    // SAFETY: valid buffer and length.
    let r = unsafe {
        libc::getsockopt(
            raw,
            libc::SOL_XDP,
            libc::XDP_MMAP_OFFSETS,
            (&raw mut off).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(last_err("XDP_MMAP_OFFSETS"));
    }
    let desc = size_of::<libc::xdp_desc>();
    let rx = Ring::map(raw, &off.rx, desc, libc::XDP_PGOFF_RX_RING as u64)?;
    let tx = Ring::map(raw, &off.tx, desc, libc::XDP_PGOFF_TX_RING as u64)?;
    let mut fill = Ring::map(raw, &off.fr, 8, libc::XDP_UMEM_PGOFF_FILL_RING)?;
    let comp = Ring::map(raw, &off.cr, 8, libc::XDP_UMEM_PGOFF_COMPLETION_RING)?;

    // Every RX frame (the first half of the UMEM) goes into the fill ring at once.
    for i in 0..RING {
        // SAFETY: slot within the ring.
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
    // SAFETY: valid sockaddr_xdp.
    let r = unsafe {
        libc::bind(
            raw,
            (&raw const addr).cast(),
            size_of_val(&addr) as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(last_err("bind(AF_XDP)"));
    }
    // SAFETY: plain fcntl on our descriptor.
    unsafe {
        let fl = libc::fcntl(raw, libc::F_GETFL);
        libc::fcntl(raw, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
    let free = (RING..2 * RING)
        .map(|i| u64::from(i * FRAME_SIZE))
        .collect();
    Ok((
        Shared {
            fd,
            umem,
            zerocopy: mode == libc::XDP_ZEROCOPY,
            queue,
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
    pub fn recv(&mut self, sh: &Shared, max: u32, mut each: impl FnMut(&[u8])) -> u32 {
        let prod = self.rx.producer().load(Ordering::Acquire);
        let n = prod.wrapping_sub(self.rx.local).min(max);
        if n == 0 {
            return 0;
        }
        for i in 0..n {
            // SAFETY: entries between our consumer index and the producer's are the kernel's
            // finished descriptors.
            let d = unsafe { std::ptr::read(self.rx.desc_slot(self.rx.local.wrapping_add(i))) };
            let len = (d.len as usize).min(FRAME_SIZE as usize);
            if let Some(p) = sh.frame(d.addr, len) {
                // SAFETY: within the UMEM; the frame is ours until it goes back to the fill ring.
                each(unsafe { std::slice::from_raw_parts(p, len) });
            }
            let chunk = d.addr & !u64::from(FRAME_SIZE - 1);
            // SAFETY: the fill ring has room for every RX frame (it holds RING entries).
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

    /// Whether frames are waiting in the RX ring.
    pub fn pending(&self) -> bool {
        self.rx.producer().load(Ordering::Acquire) != self.rx.local
    }
}

impl Tx {
    fn reclaim(&mut self) {
        let prod = self.comp.producer().load(Ordering::Acquire);
        let n = prod.wrapping_sub(self.comp.local);
        for i in 0..n {
            // SAFETY: completed entries between our consumer index and the producer's.
            let addr = unsafe { *self.comp.addr_slot(self.comp.local.wrapping_add(i)) };
            self.free.push(addr & !u64::from(FRAME_SIZE - 1));
        }
        if n > 0 {
            self.comp.local = self.comp.local.wrapping_add(n);
            self.comp
                .consumer()
                .store(self.comp.local, Ordering::Release);
        }
    }

    /// Queues one frame in the TX ring; false if there is no room right now (call
    /// [`Tx::kick`] and retry). Frames larger than a UMEM frame fail with `EMSGSIZE`.
    pub fn push(&mut self, sh: &Shared, frame: &[u8]) -> io::Result<bool> {
        if frame.len() > FRAME_SIZE as usize {
            return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
        }
        if self.free.is_empty() {
            self.reclaim();
        }
        let cons = self.tx.consumer().load(Ordering::Acquire);
        if self.tx.local.wrapping_sub(cons) >= RING {
            return Ok(false);
        }
        let Some(addr) = self.free.pop() else {
            return Ok(false);
        };
        let p = sh
            .frame(addr, frame.len())
            .expect("TX frames lie in the UMEM");
        // SAFETY: a free TX frame of the UMEM, FRAME_SIZE bytes long.
        unsafe { std::ptr::copy_nonoverlapping(frame.as_ptr(), p, frame.len()) };
        let d = libc::xdp_desc {
            addr,
            len: frame.len() as u32,
            options: 0,
        };
        // SAFETY: the slot is free (checked against the consumer index above).
        unsafe { std::ptr::write(self.tx.desc_slot(self.tx.local), d) };
        self.tx.local = self.tx.local.wrapping_add(1);
        self.pending += 1;
        Ok(true)
    }

    /// Publishes the queued frames and asks the kernel to send them (copy mode sends them
    /// during the call), then takes back the completed frames.
    pub fn kick(&mut self, sh: &Shared) -> io::Result<()> {
        if self.pending > 0 {
            self.tx.producer().store(self.tx.local, Ordering::Release);
            self.pending = 0;
        }
        // SAFETY: a zero-length send is the AF_XDP "wake up TX" call.
        let r = unsafe {
            libc::sendto(
                sh.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        self.reclaim();
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                // Busy or out of buffers: the frames stay queued for the next kick.
                Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::ENETDOWN) => Ok(()),
                _ => Err(e),
            };
        }
        Ok(())
    }

    /// Whether frames are still waiting in the TX ring.
    pub fn busy(&self) -> bool {
        self.tx.consumer().load(Ordering::Acquire) != self.tx.local
    }
}
