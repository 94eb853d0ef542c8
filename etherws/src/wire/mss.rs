//! TCP MSS clamping: the MSS option of a TCP SYN or SYN-ACK lowered in place, so that the
//! connection's segments fit a port that carries smaller frames than the hosts' links (a QUIC
//! datagram, like OpenVPN's `mssfix`).
//!
//! The MSS a host announces in its SYN (or SYN-ACK) is how large the segments sent *to it* may
//! be. So a port that clamps what it sends makes the segments it receives fit; with both ends
//! of a link clamping what they send, both ways fit. Clamping what it receives as well covers
//! both ways from one end alone.
//!
//! Only the MSS option's value changes; the frame's length never does. The TCP checksum is
//! adjusted incrementally (RFC 1624, eqn. 3), so a checksum that was wrong stays wrong, unless
//! the frame is checksum-partial ([`clamp_mss_vnet`]). Pure functions on byte slices.

use core::ops::Range;

use crate::wire::gso::{self, VnetHdr};
use crate::wire::{self, ethernet, ip_protocol, ipv4, ipv6, tcp, vlan};

/// TCP option kinds (RFC 9293).
mod option {
    pub(crate) const EOL: u8 = 0;
    pub(crate) const NOP: u8 = 1;
    pub(crate) const MSS: u8 = 2;
    /// The MSS option's length: kind, length, a 16-bit value.
    pub(crate) const MSS_LEN: usize = 4;
}

/// Lowest MSS ever written: Linux's smallest (`tcp_min_snd_mss`). An MSS of 0 would be worse
/// than none (Linux ignores it and falls back to 536).
pub(crate) const MIN_MSS: u16 = gso::MIN_GSO_SIZE;

/// How the checksum of the frame to clamp stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Csum {
    /// Complete (or not checked by anyone): adjusted along with the MSS.
    Full,
    /// Checksum-partial (`F_NEEDS_CSUM`): the field holds the pseudo-header sum, and whoever
    /// completes it (the kernel, the NIC, [`gso::fix_csum`], [`gso::segment`]) sums the
    /// option as it then stands; the pseudo-header does not change. Left alone.
    Partial,
}

/// The largest MSS whose segments fit `budget` bytes of Ethernet frame (no FCS) behind
/// `vlan_tags` tags: the budget less the Ethernet header, the tags, a 20-byte IPv4 or 40-byte
/// IPv6 header and a 20-byte TCP header. TCP options, IPv4 options and IPv6 extension headers
/// are not counted: a sender takes those it sends off the MSS itself (RFC 6691). 0 when
/// nothing fits; at most 65,535.
pub(crate) fn mss_for(budget: usize, ipv6: bool, vlan_tags: usize) -> u16 {
    let ip = if ipv6 {
        ipv6::HEADER_LEN
    } else {
        ipv4::MIN_HEADER_LEN
    };
    let overhead = (ethernet::HEADER_LEN + ip + tcp::MIN_HEADER_LEN)
        .saturating_add(vlan_tags.saturating_mul(vlan::HEADER_LEN));
    u16::try_from(budget.saturating_sub(overhead)).unwrap_or(u16::MAX)
}

/// Lowers the MSS option of a plain frame's TCP SYN or SYN-ACK to `max_mss` (never below
/// [`MIN_MSS`]) if it is larger, and adjusts the TCP checksum. Whether it changed the frame.
///
/// Anything else is left as it is: not IP, not TCP, no SYN, a later fragment, a TCP header cut
/// short or longer than its IP packet, no MSS option or a malformed option list.
pub(crate) fn clamp_mss(frame: &mut [u8], max_mss: u16) -> bool {
    clamp(frame, Csum::Full, |_| max_mss)
}

/// [`clamp_mss`] with `max_mss` computed by [`mss_for`] from the frame's own IP version and
/// VLAN tags: what makes its connection's segments fit `budget` bytes of frame.
pub(crate) fn clamp_mss_to_fit(frame: &mut [u8], budget: usize) -> bool {
    clamp(frame, Csum::Full, |h| {
        mss_for(budget, h.is_ipv6(), h.vlan_tags)
    })
}

/// Whether `frame` is a TCP SYN or SYN-ACK whose header [`clamp_mss`] would read: for a
/// caller that copies a shared frame only when it may change.
pub(crate) fn is_syn(frame: &[u8]) -> bool {
    syn_options(frame).is_some()
}

/// [`clamp_mss`] for a frame behind its virtio-net header. A checksum-partial frame's
/// checksum field is left alone (see `Csum::Partial`), and then only a frame whose partial
/// checksum starts at its TCP header is clamped (else who sums what is unclear). A super-frame
/// is clamped like any frame: segmenting sums every segment afresh.
pub(crate) fn clamp_mss_vnet(hdr: &VnetHdr, frame: &mut [u8], max_mss: u16) -> bool {
    if !hdr.needs_csum() {
        return clamp_mss(frame, max_mss);
    }
    let (start, offset) = (usize::from(hdr.csum_start), usize::from(hdr.csum_offset));
    clamp(frame, Csum::Partial, |h| {
        if start == h.l4_offset && offset == tcp::field::CHECKSUM.start {
            max_mss
        } else {
            u16::MAX
        }
    })
}

/// The clamp: `limit` gives the largest MSS for the headers found.
fn clamp(frame: &mut [u8], csum: Csum, limit: impl FnOnce(&wire::Headers) -> u16) -> bool {
    let Some((h, options)) = syn_options(frame) else {
        return false;
    };
    let Some(at) = find_mss(&frame[options.clone()]).map(|i| options.start + i) else {
        return false;
    };
    let old = u16::from_be_bytes([frame[at], frame[at + 1]]);
    let new = limit(&h).max(MIN_MSS);
    if old <= new {
        return false;
    }
    frame[at..at + 2].copy_from_slice(&new.to_be_bytes());
    if csum == Csum::Full {
        let field = h.l4_offset + tcp::field::CHECKSUM.start;
        let check = u16::from_be_bytes([frame[field], frame[field + 1]]);
        // The checksum sums 16-bit words counted from the TCP header: a value at an odd
        // offset adds its bytes the other way round.
        let odd = (at - h.l4_offset) % 2 == 1;
        let word = |v: u16| if odd { v.swap_bytes() } else { v };
        let check = adjust(check, word(old), word(new));
        frame[field..field + 2].copy_from_slice(&check.to_be_bytes());
    }
    true
}

/// The headers of a TCP SYN (or SYN-ACK) whose whole header lies within `frame` and within its
/// IP packet, and where its options are.
fn syn_options(frame: &[u8]) -> Option<(wire::Headers, Range<usize>)> {
    let h = wire::walk(frame).ok()?;
    if h.l4_protocol != ip_protocol::TCP || h.is_later_fragment() {
        return None;
    }
    let l4 = h.l4_offset;
    // Within the frame: the walker checked.
    let end = l4 + h.l4_header_len.ok()?;
    if h.ip_end().is_some_and(|e| e < end) || frame[l4 + tcp::field::FLAGS] & tcp::SYN == 0 {
        return None;
    }
    Some((h, l4 + tcp::MIN_HEADER_LEN..end))
}

/// The offset in `options` (a TCP header's, behind its 20 fixed bytes) of the MSS option's
/// value: `None` without one, or when the list goes wrong before it (a length below 2 or past
/// the end; an MSS option of another length than 4).
fn find_mss(options: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(&kind) = options.get(i) {
        match kind {
            option::EOL => return None,
            option::NOP => {
                i += 1;
                continue;
            }
            _ => {}
        }
        let len = usize::from(*options.get(i + 1)?);
        if len < 2 || len > options.len() - i {
            return None;
        }
        if kind == option::MSS {
            return (len == option::MSS_LEN).then_some(i + 2);
        }
        i += len;
    }
    None
}

/// The checksum `check` after a 16-bit word it covers went from `old` to `new` (RFC 1624,
/// eqn. 3: HC' = ~(~HC + ~m + m')).
fn adjust(check: u16, old: u16, new: u16) -> u16 {
    !gso::fold(u64::from(!check) + u64::from(!old) + u64::from(new))
}

#[cfg(test)]
mod tests {
    use super::*;

    // --- a checksum from scratch, independent of `gso::sum` ---

    fn naive_sum(bytes: &[u8]) -> u32 {
        let mut s: u32 = 0;
        for w in bytes.chunks(2) {
            s += (u32::from(w[0]) << 8) | u32::from(*w.get(1).unwrap_or(&0));
            s = (s & 0xffff) + (s >> 16);
        }
        s
    }

    /// The TCP checksum of the frame's segment (pseudo-header included) as it should stand,
    /// summed from scratch with the checksum field taken as 0.
    fn tcp_csum(f: &[u8]) -> u16 {
        let h = wire::walk(f).unwrap();
        let (l3, l4) = (h.l3_offset(), h.l4_offset);
        let end = h.ip_end().unwrap().min(f.len());
        let mut seg = f[l4..end].to_vec();
        seg[16..18].fill(0);
        let mut pseudo = if h.is_ipv6() {
            f[l3 + 8..l3 + 40].to_vec()
        } else {
            f[l3 + 12..l3 + 20].to_vec()
        };
        pseudo.extend_from_slice(&(seg.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 6]);
        let s = naive_sum(&pseudo) + naive_sum(&seg);
        !(((s & 0xffff) + (s >> 16)) as u16)
    }

    fn stored_csum(f: &[u8]) -> u16 {
        let l4 = wire::walk(f).unwrap().l4_offset;
        u16::from_be_bytes([f[l4 + 16], f[l4 + 17]])
    }

    /// The checksum verifies (0 and 0xffff are the same value in one's complement).
    fn csum_ok(f: &[u8]) -> bool {
        let (want, got) = (tcp_csum(f), stored_csum(f));
        want == got || (want | got == 0xffff && want & got == 0)
    }

    fn set_csum(f: &mut [u8]) {
        let l4 = wire::walk(f).unwrap().l4_offset;
        let c = tcp_csum(f);
        f[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());
    }

    fn mss_of(f: &[u8]) -> Option<u16> {
        let (_, opts) = syn_options(f)?;
        let at = opts.start + find_mss(&f[opts])?;
        Some(u16::from_be_bytes([f[at], f[at + 1]]))
    }

    // --- frame builders ---

    const SYN: u8 = 0x02;
    const SYN_ACK: u8 = 0x12;
    const ACK: u8 = 0x10;

    /// Linux's SYN options: MSS, SACK permitted, timestamps, NOP, window scale.
    fn linux_options(mss: u16) -> Vec<u8> {
        let m = mss.to_be_bytes();
        vec![
            2, 4, m[0], m[1], 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
        ]
    }

    fn tcp(flags: u8, options: &[u8], data: &[u8]) -> Vec<u8> {
        assert_eq!(options.len() % 4, 0);
        let mut t = vec![0u8; 20];
        t[0..4].copy_from_slice(&[0x9c, 0x40, 0x14, 0x51]);
        t[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        t[12] = (((20 + options.len()) / 4) as u8) << 4;
        t[13] = flags;
        t[14..16].copy_from_slice(&64240u16.to_be_bytes());
        t.extend_from_slice(options);
        t.extend_from_slice(data);
        t
    }

    fn eth(tpids: &[u16], ethertype: u16) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 0x0b, 0x02, 0, 0, 0, 0, 0x0c];
        for (i, tpid) in tpids.iter().enumerate() {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&(100 + i as u16).to_be_bytes());
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f
    }

    /// A TCP/IPv4 frame with a valid checksum.
    fn v4(tpids: &[u16], seg: &[u8], flg_off: u16) -> Vec<u8> {
        let mut f = eth(tpids, 0x0800);
        let mut ip = vec![0x45, 0, 0, 0, 0xbe, 0xef, 0, 0, 64, 6, 0, 0];
        ip[2..4].copy_from_slice(&((20 + seg.len()) as u16).to_be_bytes());
        ip[6..8].copy_from_slice(&flg_off.to_be_bytes());
        ip.extend_from_slice(&[192, 0, 2, 1, 198, 51, 100, 7]);
        f.extend_from_slice(&ip);
        f.extend_from_slice(seg);
        set_csum(&mut f);
        f
    }

    /// A TCP/IPv6 frame with `ext` (each a hop-by-hop or destination options header of 8
    /// bytes) and a valid checksum.
    fn v6(tpids: &[u16], ext: &[u8], seg: &[u8]) -> Vec<u8> {
        let mut f = eth(tpids, 0x86dd);
        let mut ip = vec![0x60, 0, 0, 0, 0, 0, 0, 64];
        ip[4..6].copy_from_slice(&((8 * ext.len() + seg.len()) as u16).to_be_bytes());
        ip[6] = ext.first().copied().unwrap_or(6);
        ip.extend_from_slice(&[0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        ip.extend_from_slice(&[0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0xab, 0, 0, 2]);
        f.extend_from_slice(&ip);
        for (i, _) in ext.iter().enumerate() {
            let next = ext.get(i + 1).copied().unwrap_or(6);
            f.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
        }
        f.extend_from_slice(seg);
        set_csum(&mut f);
        f
    }

    /// Clamps `f` to `max` and checks: the MSS is `want`, the length is the same, only the
    /// MSS and checksum bytes changed, and the checksum verifies from scratch.
    fn check_clamped(mut f: Vec<u8>, max: u16, want: u16) {
        let before = f.clone();
        assert!(csum_ok(&f));
        assert!(clamp_mss(&mut f, max), "not clamped");
        assert_eq!(f.len(), before.len());
        assert_eq!(mss_of(&f), Some(want));
        assert!(csum_ok(&f), "checksum after the clamp");
        let changed = f.iter().zip(&before).filter(|(a, b)| a != b).count();
        assert!(changed <= 4, "{changed} bytes changed");
    }

    fn check_unchanged(mut f: Vec<u8>, max: u16) {
        let before = f.clone();
        assert!(!clamp_mss(&mut f, max));
        assert_eq!(f, before);
    }

    #[test]
    fn ipv4_syn() {
        check_clamped(v4(&[], &tcp(SYN, &linux_options(1460), &[]), 0), 1400, 1400);
        // DF set, and a first fragment: the TCP header is there.
        check_clamped(
            v4(&[], &tcp(SYN, &linux_options(1460), &[]), 0x4000),
            1380,
            1380,
        );
        check_clamped(
            v4(&[], &tcp(SYN, &linux_options(1460), &[]), 0x2000),
            1380,
            1380,
        );
    }

    #[test]
    fn syn_ack_and_many_values() {
        // Every old and new value, so that carries and wrapping sums come up.
        for old in [0xffff, 0xff00, 9000, 1460, 1441, 0x0101] {
            for new in [1400u16, 1399, 536, 0x00ff, 256, MIN_MSS] {
                if new < old {
                    let f = v4(&[], &tcp(SYN_ACK, &linux_options(old), &[]), 0);
                    check_clamped(f, new, new);
                    let f = v6(&[], &[], &tcp(SYN_ACK, &linux_options(old), b"tfo"));
                    check_clamped(f, new, new);
                }
            }
        }
    }

    #[test]
    fn ipv6_syn_behind_extension_headers() {
        let seg = tcp(SYN, &linux_options(1440), &[]);
        check_clamped(v6(&[], &[0], &seg), 1300, 1300);
        check_clamped(v6(&[], &[0, 60], &seg), 1300, 1300);
    }

    #[test]
    fn tagged_syns() {
        let seg = tcp(SYN, &linux_options(1460), &[]);
        check_clamped(v4(&[0x8100], &seg, 0), 1400, 1400);
        check_clamped(v4(&[0x88a8, 0x8100], &seg, 0), 1400, 1400);
        check_clamped(v6(&[0x8100], &[0], &seg), 1400, 1400);
    }

    #[test]
    fn mss_at_an_odd_offset() {
        // NOP, MSS, then padding: the value straddles two checksum words.
        for old in [1460u16, 0xffff, 0x01ff, 0xff01] {
            let opts = [1, 2, 4, (old >> 8) as u8, old as u8, 1, 1, 0];
            check_clamped(v4(&[], &tcp(SYN, &opts, &[]), 0), 400, 400);
            check_clamped(v6(&[0x8100], &[], &tcp(SYN, &opts, &[])), 300, 300);
        }
        // Three NOPs, then MSS.
        let opts = [1, 1, 1, 2, 4, 0x05, 0xb4, 0];
        check_clamped(v4(&[], &tcp(SYN, &opts, &[]), 0), 1200, 1200);
    }

    #[test]
    fn small_mss_and_no_mss_are_left_alone() {
        check_unchanged(v4(&[], &tcp(SYN, &linux_options(1200), &[]), 0), 1400);
        check_unchanged(v4(&[], &tcp(SYN, &linux_options(1400), &[]), 0), 1400);
        check_unchanged(v4(&[], &tcp(SYN, &[1, 3, 3, 7], &[]), 0), 1400);
        check_unchanged(v4(&[], &tcp(SYN, &[], &[]), 0), 1400);
        // Never below MIN_MSS; a MIN_MSS already there stays.
        check_clamped(v4(&[], &tcp(SYN, &linux_options(1460), &[]), 0), 0, MIN_MSS);
        check_unchanged(v4(&[], &tcp(SYN, &linux_options(MIN_MSS), &[]), 0), 0);
    }

    #[test]
    fn not_a_syn_is_left_alone() {
        for flags in [ACK, ACK | 0x08, 0x01, 0x04, 0] {
            check_unchanged(v4(&[], &tcp(flags, &linux_options(1460), &[]), 0), 1000);
        }
        // A later fragment: what stands at the L4 offset is data.
        check_unchanged(v4(&[], &tcp(SYN, &linux_options(1460), &[]), 0x0003), 1000);
        // UDP.
        let mut f = v4(&[], &tcp(SYN, &linux_options(1460), &[]), 0);
        f[14 + 9] = 17;
        check_unchanged(f, 1000);
        // ARP.
        let mut f = v4(&[], &tcp(SYN, &linux_options(1460), &[]), 0);
        f[12..14].copy_from_slice(&[0x08, 0x06]);
        check_unchanged(f, 1000);
    }

    #[test]
    fn malformed_options_are_left_alone() {
        // Option lengths 0 and 1 before the MSS, one past the header, an EOL before it, an MSS
        // of the wrong length.
        for opts in [
            &[8, 0, 2, 4, 5, 0xb4, 0, 0][..],
            &[8, 1, 2, 4, 5, 0xb4, 0, 0],
            &[8, 9, 2, 4, 5, 0xb4, 0, 0],
            &[0, 1, 2, 4, 5, 0xb4, 0, 0],
            &[2, 5, 5, 0xb4, 0, 0, 0, 0],
            &[2, 3, 5, 0xb4],
            &[1, 1, 1, 2],
            &[1, 1, 2, 4],
            &[1, 1, 1, 1, 1, 1, 2, 6],
        ] {
            check_unchanged(v4(&[], &tcp(SYN, opts, &[]), 0), 1000);
        }
    }

    #[test]
    fn truncated_frames_are_left_alone() {
        let f = v4(&[0x8100], &tcp(SYN, &linux_options(1460), &[]), 0);
        for len in 0..f.len() {
            check_unchanged(f[..len].to_vec(), 1000);
        }
        check_clamped(f, 1000, 1000);
        // An IP length that ends inside the TCP header.
        let mut f = v4(&[], &tcp(SYN, &linux_options(1460), &[]), 0);
        f[16..18].copy_from_slice(&(20u16 + 30).to_be_bytes());
        check_unchanged(f, 1000);
    }

    #[test]
    fn ethernet_padding_is_left_out_of_the_checksum() {
        let mut f = v4(&[], &tcp(SYN, &[2, 4, 5, 0xb4], &[]), 0);
        f.resize(60, 0xee);
        check_clamped(f, 1000, 1000);
    }

    #[test]
    fn a_wrong_checksum_stays_wrong() {
        let mut f = v4(&[], &tcp(SYN, &linux_options(1460), &[]), 0);
        f[14 + 20 + 16] ^= 0x40;
        assert!(clamp_mss(&mut f, 1000));
        assert!(!csum_ok(&f));
    }

    #[test]
    fn checksum_partial_frames_keep_their_field() {
        let mut f = v4(&[0x8100], &tcp(SYN, &linux_options(1460), &[]), 0);
        let l4 = 18 + 20;
        // The field holds the folded pseudo-header sum, as the kernel leaves it.
        let seed = gso::fold(gso::pseudo_sum(&f, 18, false, 6, 40));
        f[l4 + 16..l4 + 18].copy_from_slice(&seed.to_be_bytes());
        let hdr = VnetHdr {
            flags: gso::F_NEEDS_CSUM,
            csum_start: l4 as u16,
            csum_offset: 16,
            ..VnetHdr::default()
        };
        // csum_start elsewhere: left alone.
        let mut odd = f.clone();
        let elsewhere = VnetHdr {
            csum_start: 14,
            ..hdr
        };
        assert!(!clamp_mss_vnet(&elsewhere, &mut odd, 1000));
        assert_eq!(odd, f);
        assert!(clamp_mss_vnet(&hdr, &mut f, 1000));
        assert_eq!(mss_of(&f), Some(1000));
        assert_eq!(stored_csum(&f), seed);
        // Completed afterwards, the checksum is right.
        gso::fix_csum(&hdr, &mut f).unwrap();
        assert!(csum_ok(&f));
        // Without NEEDS_CSUM, the checksum is adjusted as for a plain frame.
        let mut f = v4(&[], &tcp(SYN, &linux_options(1460), &[]), 0);
        assert!(clamp_mss_vnet(&VnetHdr::default(), &mut f, 1000));
        assert!(csum_ok(&f) && mss_of(&f) == Some(1000));
    }

    #[test]
    fn mss_from_the_budget() {
        assert_eq!(mss_for(1514, false, 0), 1460);
        assert_eq!(mss_for(1514, true, 0), 1440);
        assert_eq!(mss_for(1490, false, 1), 1432);
        assert_eq!(mss_for(1490, true, 2), 1408);
        assert_eq!(mss_for(50, false, 0), 0);
        assert_eq!(mss_for(usize::MAX, false, 0), u16::MAX);
        assert_eq!(mss_for(1500, false, usize::MAX), 0);
        // The frame's own version and tags.
        let mut f = v6(&[0x8100], &[], &tcp(SYN, &linux_options(1440), &[]));
        assert!(clamp_mss_to_fit(&mut f, 1490));
        assert_eq!(mss_of(&f), Some(1490 - 18 - 40 - 20));
        assert!(csum_ok(&f));
        let mut f = v4(&[], &tcp(SYN, &linux_options(1460), &[]), 0);
        assert!(clamp_mss_to_fit(&mut f, 1490));
        assert_eq!(mss_of(&f), Some(1436));
    }

    #[test]
    fn junk_never_panics_nor_changes_the_length() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let samples = [
            v4(&[0x8100], &tcp(SYN, &linux_options(1460), &[]), 0),
            v6(&[], &[0], &tcp(SYN_ACK, &[1, 2, 4, 5, 0xb4, 1, 1, 0], b"x")),
        ];
        for _ in 0..20_000 {
            let r = next();
            let mut f = samples[r as usize % 2].clone();
            for _ in 0..(r >> 8) % 4 + 1 {
                let at = next() as usize % f.len();
                f[at] = next() as u8;
            }
            let len = next() as usize % (f.len() + 1);
            let mut f = f[..len].to_vec();
            let ok = walk_ok(&f) && csum_ok(&f);
            let changed = clamp_mss(&mut f, (next() % 2000) as u16);
            assert_eq!(f.len(), len);
            if changed && ok {
                assert!(csum_ok(&f));
            }
        }
    }

    fn walk_ok(f: &[u8]) -> bool {
        wire::walk(f).is_ok_and(|h| {
            let end = h.l4_header_len.map(|n| h.l4_offset + n);
            h.l4_protocol == 6 && end.is_ok_and(|end| h.ip_end().is_some_and(|e| e >= end))
        })
    }
}
