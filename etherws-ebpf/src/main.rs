//! eBPF programs of etherws, built for `bpfel-unknown-none` by `cargo xtask build-ebpf`.
//!
//! For now a single XDP program that passes every frame to the kernel's stack: the AF_PACKET
//! datapath of `netdev` ports works without it. The offload (XDP → AF_XDP, in-kernel
//! forwarding between netdev ports through a DEVMAP) builds on this crate.
#![no_std]
#![no_main]

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

#[xdp]
pub fn etherws_xdp(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
