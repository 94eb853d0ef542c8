//! Types shared by the userspace switch and the eBPF programs.
//!
//! Everything here is `no_std` and `#[repr(C)]` so the same definitions describe BPF map keys and
//! values on both sides of the kernel boundary.
#![no_std]

/// Length of an Ethernet MAC address.
pub const ETH_ALEN: usize = 6;

/// Ethernet header length without a VLAN tag.
pub const ETH_HLEN: usize = 14;

/// TPID of an IEEE 802.1Q tag.
pub const ETH_P_8021Q: u16 = 0x8100;

/// Mask of the VLAN id within an 802.1Q TCI (the upper four bits are PCP and DEI).
pub const VLAN_VID_MASK: u16 = 0x0fff;

/// Key of the in-kernel forwarding database: a MAC address within a VLAN.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FdbKey {
    /// VLAN id (0 for untagged frames).
    pub vid: u16,
    /// The MAC address.
    pub mac: [u8; ETH_ALEN],
}
