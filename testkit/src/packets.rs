//! Raw Ethernet frames (AF_PACKET) inside a namespace.

use super::*;

const ETH_P_ALL: u16 = 0x0003;
const PACKET_AUXDATA: libc::c_int = 8;
const PACKET_OUTGOING: u8 = 4;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct TpacketAuxdata {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
}

/// A received frame, with an 802.1Q tag the kernel had stripped put back in place.
#[derive(Debug, Clone)]
pub struct RxFrame {
    pub data: Vec<u8>,
    pub pkttype: u8,
}

impl RxFrame {
    /// The TCI of the outer 802.1Q tag, if any.
    pub fn tci(&self) -> Option<u16> {
        frame_tci(&self.data)
    }
}

/// The TCI of an 802.1Q (0x8100) tag at offset 12, if present.
pub fn frame_tci(f: &[u8]) -> Option<u16> {
    (f.len() >= 16 && f[12] == 0x81 && f[13] == 0x00).then(|| u16::from_be_bytes([f[14], f[15]]))
}

/// Build an Ethernet frame: dst, src, optional 802.1Q TCI, ethertype, payload (padded to 60 bytes).
pub fn build_frame(
    dst: [u8; 6],
    src: [u8; 6],
    tci: Option<u16>,
    ethertype: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(64 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    if let Some(tci) = tci {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    while f.len() < 60 {
        f.push(0);
    }
    f
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

pub fn parse_mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).expect("hex mac"))
        .collect();
    v.try_into().expect("6-byte mac")
}

pub fn format_mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// An AF_PACKET socket bound to one interface inside a namespace.
pub struct RawSock {
    fd: OwnedFd,
    what: String,
}

impl RawSock {
    pub fn open(ns: &Netns, ifname: &str) -> RawSock {
        let ifname_s = ifname.to_string();
        // The socket keeps the namespace it was created in.
        let fd = ns
            .enter(move || -> Result<OwnedFd, String> {
                // SAFETY: socket/if_nametoindex/bind/setsockopt get live locals (the
                // NUL-terminated `cname`, `sll`, `one`, `tv`) with their exact sizes and only
                // read them; the checked socket() result is owned at once; all-zero sockaddr_ll
                // is valid.
                unsafe {
                    let fd = libc::socket(
                        libc::AF_PACKET,
                        libc::SOCK_RAW,
                        ETH_P_ALL.to_be() as libc::c_int,
                    );
                    if fd < 0 {
                        return Err(format!(
                            "socket(AF_PACKET): {}",
                            std::io::Error::last_os_error()
                        ));
                    }
                    let fd = OwnedFd::from_raw_fd(fd);
                    let cname = CString::new(ifname_s.clone()).unwrap();
                    let idx = libc::if_nametoindex(cname.as_ptr());
                    if idx == 0 {
                        return Err(format!(
                            "if_nametoindex({ifname_s}): {}",
                            std::io::Error::last_os_error()
                        ));
                    }
                    let mut sll: libc::sockaddr_ll = std::mem::zeroed();
                    sll.sll_family = libc::AF_PACKET as u16;
                    sll.sll_protocol = ETH_P_ALL.to_be();
                    sll.sll_ifindex = idx as i32;
                    if libc::bind(
                        fd.as_raw_fd(),
                        &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                        std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                    ) != 0
                    {
                        return Err(format!(
                            "bind to {ifname_s}: {}",
                            std::io::Error::last_os_error()
                        ));
                    }
                    let one: libc::c_int = 1;
                    libc::setsockopt(
                        fd.as_raw_fd(),
                        libc::SOL_PACKET,
                        PACKET_AUXDATA,
                        &one as *const _ as *const libc::c_void,
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    );
                    let tv = libc::timeval {
                        tv_sec: 0,
                        tv_usec: 100_000,
                    };
                    libc::setsockopt(
                        fd.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_RCVTIMEO,
                        &tv as *const _ as *const libc::c_void,
                        std::mem::size_of::<libc::timeval>() as libc::socklen_t,
                    );
                    Ok(fd)
                }
            })
            .unwrap_or_else(|e| panic!("raw socket on {ifname} in {}: {e}", ns.name()));
        RawSock {
            fd,
            what: format!("{ifname}@{}", ns.name()),
        }
    }

    pub fn send(&self, frame: &[u8]) {
        // SAFETY: `frame` is a live slice, readable for the length passed, and send(2) only reads
        // it; the socket stays open as long as `self`.
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                0,
            )
        };
        assert_eq!(
            n,
            frame.len() as isize,
            "send on {}: {}",
            self.what,
            std::io::Error::last_os_error()
        );
    }

    /// One received (not outgoing) frame, or None after the socket's 100 ms timeout.
    fn recv_one(&self) -> Option<RxFrame> {
        let mut buf = vec![0u8; 65536];
        let mut ctrl = [0u64; 64];
        // SAFETY: sockaddr_ll holds integers and byte arrays only: all zeroes is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: all pointers refer to live local buffers of the stated sizes.
        let (n, aux) = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_name = &mut sll as *mut _ as *mut libc::c_void;
            msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = ctrl.as_mut_ptr() as *mut libc::c_void;
            msg.msg_controllen = std::mem::size_of_val(&ctrl) as _;
            let n = libc::recvmsg(self.fd.as_raw_fd(), &mut msg, 0);
            if n < 0 {
                return None;
            }
            let mut aux = None;
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == PACKET_AUXDATA {
                    aux = Some(std::ptr::read_unaligned(
                        libc::CMSG_DATA(c) as *const TpacketAuxdata
                    ));
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
            (n as usize, aux)
        };
        let mut data = buf[..n].to_vec();
        if let Some(a) = aux
            && (a.tp_status & TP_STATUS_VLAN_VALID != 0 || a.tp_vlan_tci != 0)
            && data.len() >= 12
        {
            let tpid = if a.tp_status & TP_STATUS_VLAN_TPID_VALID != 0 {
                a.tp_vlan_tpid
            } else {
                0x8100
            };
            let mut tag = tpid.to_be_bytes().to_vec();
            tag.extend_from_slice(&a.tp_vlan_tci.to_be_bytes());
            data.splice(12..12, tag);
        }
        Some(RxFrame {
            data,
            pkttype: sll.sll_pkttype,
        })
    }

    /// Wait up to `timeout` for a received frame matching `pred`.
    pub fn recv_matching(
        &self,
        timeout: Duration,
        pred: impl Fn(&RxFrame) -> bool,
    ) -> Option<RxFrame> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(f) = self.recv_one()
                && f.pkttype != PACKET_OUTGOING
                && pred(&f)
            {
                return Some(f);
            }
        }
        None
    }

    /// Throw away whatever is queued.
    pub fn drain(&self) {
        while self.recv_one().is_some() {}
    }
}

/// Distinct values, for readable assertion messages.
pub fn distinct<T: std::hash::Hash + Eq + Clone>(v: &[T]) -> HashSet<T> {
    v.iter().cloned().collect()
}

/// The Internet checksum (RFC 1071) over `parts` laid end to end (each part of even length but
/// the last), as it goes into a header.
pub fn inet_checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        for pair in part.chunks(2) {
            sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 packet (TTL 64, header checksum filled in) carrying a UDP datagram from `src:sport`
/// to `dst:dport` (UDP checksum 0: none, as IPv4 allows).
pub fn ipv4_udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len() as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&(20 + udp_len).to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0]);
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let sum = inet_checksum(&[&ip]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    ip.extend_from_slice(&sport.to_be_bytes());
    ip.extend_from_slice(&dport.to_be_bytes());
    ip.extend_from_slice(&udp_len.to_be_bytes());
    ip.extend_from_slice(&[0, 0]);
    ip.extend_from_slice(payload);
    ip
}
