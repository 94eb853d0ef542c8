//! `cargo xtask test-ebpf`: checks the decisions of the XDP program with `BPF_PROG_TEST_RUN`.
//!
//! The kernel runs the program of `target/bpf/etherws-xdp.o` (built by `cargo xtask build-ebpf`)
//! on a frame we give it, as if the frame had arrived on the interface and RX queue named in the
//! `xdp_md` context we pass, and returns the program's action; no traffic flows. Ingress
//! interfaces and DEVMAP targets must be real devices, so the tests run in a thread of their own
//! that first moves into a private network namespace (`unshare(CLONE_NEWNET)`) and makes veth
//! pairs there: the host's interfaces are never touched, and everything vanishes with the thread.
//!
//! Loading BPF programs needs root: without it the tests are skipped loudly, unless `CI=true`,
//! where that is a failure.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;

use anyhow::{Context, bail, ensure};
use aya::maps::{DevMapHash, HashMap, MapData, PerCpuHashMap, XskMap};
use aya::programs::{SchedClassifier, SocketFilter, Xdp};
use aya::{Ebpf, TestRun, TestRunOptions};
use etherws_common::object::XdpObject;
use etherws_common::{
    FdbKey, FdbValue, PORT_F_GENERIC, PORT_F_SHUT, PORT_F_USER, PortConf, PortCounters,
    SEEN_REFRESH_NS, SOCK_PROGRAM, TC_PROGRAM, XDP_PROGRAM,
};

use crate::build_ebpf::object_path;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_REDIRECT: u32 = 4;

pub(crate) const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
pub(crate) const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
pub(crate) const MAC_R: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0c];
pub(crate) const BROADCAST: [u8; 6] = [0xff; 6];
pub(crate) const MULTICAST: [u8; 6] = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01];

/// Switch port numbers of the test ports.
pub(crate) const PORT_A: u32 = 1;
pub(crate) const PORT_B: u32 = 2;
pub(crate) const PORT_REMOTE: u32 = 3;

/// The loaded program, its maps, and the namespace's interfaces.
pub(crate) struct Bench {
    /// Holds the program.
    ebpf: Ebpf,
    fdb: HashMap<MapData, FdbKey, FdbValue>,
    pub(crate) ports: HashMap<MapData, u32, PortConf>,
    devmap: DevMapHash<MapData>,
    xsks: XskMap<MapData>,
    counters: PerCpuHashMap<MapData, u32, PortCounters>,
    /// Offloaded port A (port 1) and B (port 2).
    pub(crate) a: u32,
    pub(crate) b: u32,
    /// An interface that is no offloaded port.
    pub(crate) other: u32,
}

impl Bench {
    /// Empties every map: each test starts from scratch.
    fn reset(&mut self) -> anyhow::Result<()> {
        for k in self.fdb.keys().collect::<Result<Vec<_>, _>>()? {
            self.fdb.remove(&k)?;
        }
        for k in self.ports.keys().collect::<Result<Vec<_>, _>>()? {
            self.ports.remove(&k)?;
        }
        for k in self.devmap.keys().collect::<Result<Vec<_>, _>>()? {
            self.devmap.remove(k)?;
        }
        for k in self.counters.keys().collect::<Result<Vec<_>, _>>()? {
            self.counters.remove(&k)?;
        }
        for i in 0..self.xsks.len() {
            let _ = self.xsks.unset(i);
        }
        Ok(())
    }

    /// The usual setup: A and B offloaded (B reachable through the DEVMAP), MAC_A known on A,
    /// MAC_B on B, MAC_R on a remote port, all in VLAN `vid`.
    fn standard(&mut self, vid: u16) -> anyhow::Result<()> {
        self.port(self.a, PORT_A, 0, 0)?;
        self.port(self.b, PORT_B, 0, 8)?;
        self.devmap.insert(self.b, self.b, None, 0)?;
        self.devmap.insert(self.a, self.a, None, 0)?;
        self.learn(vid, MAC_A, self.a, PORT_A, 0)?;
        self.learn(vid, MAC_B, self.b, PORT_B, 0)?;
        self.learn(vid, MAC_R, 0, PORT_REMOTE, 0)?;
        Ok(())
    }

    pub(crate) fn port(
        &mut self,
        ifindex: u32,
        port: u32,
        flags: u32,
        xsk_base: u32,
    ) -> anyhow::Result<()> {
        self.port_with_mac(ifindex, port, flags, xsk_base, [0; 6])
    }

    pub(crate) fn port_with_mac(
        &mut self,
        ifindex: u32,
        port: u32,
        flags: u32,
        xsk_base: u32,
        mac: [u8; 6],
    ) -> anyhow::Result<()> {
        let conf = PortConf {
            port,
            flags,
            xsk_base,
            mac,
            _pad: [0; 2],
        };
        Ok(self.ports.insert(ifindex, conf, 0)?)
    }

    pub(crate) fn learn(
        &mut self,
        vid: u16,
        mac: [u8; 6],
        ifindex: u32,
        port: u32,
        seen_ns: u64,
    ) -> anyhow::Result<()> {
        let v = FdbValue {
            ifindex,
            port,
            seen_ns,
        };
        Ok(self.fdb.insert(FdbKey { vid, mac }, v, 0)?)
    }

    pub(crate) fn seen_ns(&self, vid: u16, mac: [u8; 6]) -> anyhow::Result<u64> {
        Ok(self.fdb.get(&FdbKey { vid, mac }, 0)?.seen_ns)
    }

    /// Runs the program on `frame` as received on `ifindex`, RX queue `queue`.
    fn run_on(&self, ifindex: u32, queue: u32, frame: &[u8]) -> anyhow::Result<u32> {
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
        // egress_ifindex. The kernel wants data = data_meta = 0 and data_end = the frame's
        // length.
        let md: [u32; 6] = [0, frame.len() as u32, 0, ifindex, queue, 0];
        let ctx: Vec<u8> = md.iter().flat_map(|v| v.to_ne_bytes()).collect();
        let prog: &Xdp = self
            .ebpf
            .program(XDP_PROGRAM)
            .context("no program")?
            .try_into()?;
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ctx_in: Some(&ctx),
                ..TestRunOptions::default()
            })
            .with_context(|| format!("BPF_PROG_TEST_RUN on ifindex {ifindex}"))?;
        Ok(r.return_value)
    }

    /// Runs the socket filter, then the TC program (the order of the kernel: packet taps
    /// first) on `frame` as received on `ifindex`, as a GSO frame of `gso_segs` segments if
    /// not 0; checks that the filter drops exactly the frames TC redirects or drops, and
    /// returns TC's return value.
    pub(crate) fn run_tc(&self, ifindex: u32, frame: &[u8], gso_segs: u32) -> anyhow::Result<u32> {
        // struct __sk_buff (192 bytes): ifindex at 40, gso_segs at 164, gso_size at 176; every
        // other field must be zero.
        let mut ctx = [0u8; 192];
        ctx[40..44].copy_from_slice(&ifindex.to_ne_bytes());
        if gso_segs > 0 {
            ctx[164..168].copy_from_slice(&gso_segs.to_ne_bytes());
            ctx[176..180].copy_from_slice(&1448u32.to_ne_bytes());
        }
        let opts = || TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(&ctx),
            ..TestRunOptions::default()
        };
        let sock: &SocketFilter = self
            .ebpf
            .program(SOCK_PROGRAM)
            .context("no socket filter")?
            .try_into()?;
        // The kernel refuses to test-run a socket filter on a frame of a few bytes past its
        // Ethernet header (only the truncation cases have such frames).
        let kept = if frame.len() >= 18 {
            sock.test_run(opts())
                .with_context(|| format!("BPF_PROG_TEST_RUN (socket filter) on ifindex {ifindex}"))?
                .return_value
                .into()
        } else {
            None
        };
        let tc: &SchedClassifier = self
            .ebpf
            .program(TC_PROGRAM)
            .context("no TC program")?
            .try_into()?;
        let r = tc
            .test_run(opts())
            .with_context(|| format!("BPF_PROG_TEST_RUN (TC) on ifindex {ifindex}"))?
            .return_value;
        let taken = r == TC_ACT_REDIRECT || r == TC_ACT_SHOT;
        let Some(kept) = kept else { return Ok(r) };
        ensure!(
            (kept == 0) == taken,
            "the socket filter returned {kept:#x} but TC {}: userspace would get the frame {}",
            tc_name(r),
            if taken { "too" } else { "never" }
        );
        ensure!(kept == 0 || kept == u32::MAX, "socket filter: {kept:#x}");
        Ok(r)
    }

    fn run(&self, ifindex: u32, frame: &[u8]) -> anyhow::Result<u32> {
        self.run_on(ifindex, 0, frame)
    }

    /// Counters of `ifindex`, summed over the CPUs (zero if the entry does not exist).
    pub(crate) fn counters(&self, ifindex: u32) -> anyhow::Result<PortCounters> {
        let mut sum = PortCounters::default();
        match self.counters.get(&ifindex, 0) {
            Ok(per_cpu) => per_cpu.iter().for_each(|c| sum += *c),
            Err(aya::maps::MapError::KeyNotFound) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(sum)
    }
}

/// An Ethernet frame from `src` to `dst`, tagged with `tci` if given, padded to 60 bytes.
pub(crate) fn frame(dst: [u8; 6], src: [u8; 6], tci: Option<u16>) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    if let Some(tci) = tci {
        f.extend_from_slice(&etherws_common::ETH_P_8021Q.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.resize(60, 0x5a);
    f
}

/// An IPv4/TCP frame (optionally tagged) whose checksum field holds the folded pseudo-header
/// sum (`partial`, as a sender with checksum offload leaves it) or something else.
pub(crate) fn tcp_frame(dst: [u8; 6], src: [u8; 6], tci: Option<u16>, partial: bool) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend(src);
    if let Some(tci) = tci {
        f.extend(0x8100u16.to_be_bytes());
        f.extend(tci.to_be_bytes());
    }
    f.extend(0x0800u16.to_be_bytes());
    let l3 = f.len();
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(20u16 + 20 + 4).to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&[192, 0, 2, 1]);
    ip[16..20].copy_from_slice(&[192, 0, 2, 2]);
    f.extend(ip);
    let mut tcp = [0u8; 20];
    tcp[12] = 0x50;
    f.extend(tcp);
    f.extend(b"abcd");
    let words = |b: &[u8]| -> u32 {
        b.chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum()
    };
    let mut sum = words(&f[l3 + 12..l3 + 20]) + 6 + 24;
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    let field = if partial {
        sum as u16
    } else {
        !(sum as u16) ^ 0x5a5a
    };
    f[l3 + 20 + 16..l3 + 20 + 18].copy_from_slice(&field.to_be_bytes());
    f
}

pub(crate) const TC_ACT_SHOT: u32 = 2;
pub(crate) const TC_ACT_REDIRECT: u32 = 7;
/// `TC_ACT_UNSPEC` (-1) as the test run returns it.
pub(crate) const TC_ACT_UNSPEC: u32 = u32::MAX;

fn tc_name(a: u32) -> &'static str {
    match a {
        TC_ACT_SHOT => "TC_ACT_SHOT",
        TC_ACT_REDIRECT => "TC_ACT_REDIRECT",
        TC_ACT_UNSPEC => "TC_ACT_UNSPEC",
        0 => "TC_ACT_OK",
        _ => "?",
    }
}

/// Checks a TC return value.
pub(crate) fn expect_tc(got: u32, want: u32) -> anyhow::Result<()> {
    ensure!(
        got == want,
        "TC returned {} ({got}), expected {} ({want})",
        tc_name(got),
        tc_name(want)
    );
    Ok(())
}

fn action_name(a: u32) -> &'static str {
    match a {
        0 => "XDP_ABORTED",
        XDP_DROP => "XDP_DROP",
        XDP_PASS => "XDP_PASS",
        3 => "XDP_TX",
        XDP_REDIRECT => "XDP_REDIRECT",
        _ => "?",
    }
}

fn expect_action(got: u32, want: u32) -> anyhow::Result<()> {
    ensure!(
        got == want,
        "action {} ({got}), expected {} ({want})",
        action_name(got),
        action_name(want)
    );
    Ok(())
}

pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live, writable timespec, the only memory clock_gettime writes;
    // CLOCK_MONOTONIC always exists, so the call cannot fail and leave it unset.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub(crate) type Case = fn(&mut Bench) -> anyhow::Result<()>;

const CASES: &[(&str, Case)] = &[
    ("not_offloaded_interface_passes", |t| {
        t.standard(0)?;
        expect_action(t.run(t.other, &frame(MAC_B, MAC_A, None))?, XDP_PASS)?;
        ensure!(t.counters(t.other)? == PortCounters::default(), "counted");
        Ok(())
    }),
    ("known_dest_on_other_port_is_forwarded_in_kernel", |t| {
        t.standard(0)?;
        let f = frame(MAC_B, MAC_A, None);
        expect_action(t.run(t.a, &f)?, XDP_REDIRECT)?;
        let (a, b) = (t.counters(t.a)?, t.counters(t.b)?);
        let len = f.len() as u64;
        ensure!((a.rx_frames, a.rx_bytes) == (1, len), "rx of A: {a:?}");
        ensure!((b.tx_frames, b.tx_bytes) == (1, len), "tx of B: {b:?}");
        ensure!(
            a.to_user + a.passed + a.dropped + a.tx_frames == 0,
            "A: {a:?}"
        );
        ensure!(b.rx_frames == 0, "B: {b:?}");
        Ok(())
    }),
    ("both_directions_and_counts_add_up", |t| {
        t.standard(0)?;
        for _ in 0..3 {
            expect_action(t.run(t.a, &frame(MAC_B, MAC_A, None))?, XDP_REDIRECT)?;
        }
        expect_action(t.run(t.b, &frame(MAC_A, MAC_B, None))?, XDP_REDIRECT)?;
        let (a, b) = (t.counters(t.a)?, t.counters(t.b)?);
        ensure!((a.rx_frames, a.tx_frames) == (3, 1), "A: {a:?}");
        ensure!((b.rx_frames, b.tx_frames) == (1, 3), "B: {b:?}");
        Ok(())
    }),
    ("dest_on_ingress_port_is_dropped", |t| {
        t.standard(0)?;
        t.learn(0, MAC_B, t.a, PORT_A, 0)?;
        expect_action(t.run(t.a, &frame(MAC_B, MAC_A, None))?, XDP_DROP)?;
        let a = t.counters(t.a)?;
        ensure!((a.rx_frames, a.dropped) == (1, 1), "A: {a:?}");
        ensure!(t.counters(t.b)?.tx_frames == 0, "forwarded");
        Ok(())
    }),
    ("unknown_dest_passes_without_xsk", |t| {
        t.standard(0)?;
        let unknown = [0x02, 0, 0, 0, 0, 0x99];
        expect_action(t.run(t.a, &frame(unknown, MAC_A, None))?, XDP_PASS)?;
        let a = t.counters(t.a)?;
        ensure!((a.rx_frames, a.passed, a.to_user) == (1, 1, 0), "A: {a:?}");
        Ok(())
    }),
    ("unknown_dest_goes_to_bound_xsk_of_its_queue", |t| {
        t.standard(0)?;
        // B's sockets start at index 8 of the XSKMAP: its queue-0 socket is at 8.
        let xsk = xsk_socket(t.b, 0)?;
        t.xsks.set(8, xsk.as_raw_fd(), 0)?;
        let unknown = [0x02, 0, 0, 0, 0, 0x99];
        expect_action(t.run(t.b, &frame(unknown, MAC_B, None))?, XDP_REDIRECT)?;
        let b = t.counters(t.b)?;
        ensure!((b.to_user, b.passed, b.tx_frames) == (1, 0, 0), "B: {b:?}");
        // A's socket index (0) is empty: A falls back to the stack.
        expect_action(t.run(t.a, &frame(unknown, MAC_A, None))?, XDP_PASS)?;
        Ok(())
    }),
    ("group_frames_go_to_the_host_stack", |t| {
        t.standard(0)?;
        // Even with a socket bound: the host's stack must get them (the port's packet socket
        // hands them to the switch).
        let xsk = xsk_socket(t.a, 0)?;
        t.xsks.set(0, xsk.as_raw_fd(), 0)?;
        for dst in [BROADCAST, MULTICAST] {
            expect_action(t.run(t.a, &frame(dst, MAC_A, None))?, XDP_PASS)?;
        }
        // From a new source too (an ARP request from a station not known yet).
        let new = [0x02, 0, 0, 0, 0, 0x77];
        expect_action(t.run(t.a, &frame(BROADCAST, new, None))?, XDP_PASS)?;
        // Even if a group address somehow got into the FDB.
        t.learn(0, MULTICAST, t.b, PORT_B, 0)?;
        expect_action(t.run(t.a, &frame(MULTICAST, MAC_A, None))?, XDP_PASS)?;
        ensure!(t.counters(t.b)?.tx_frames == 0, "forwarded");
        let a = t.counters(t.a)?;
        ensure!((a.host, a.passed, a.to_user) == (4, 0, 0), "A: {a:?}");
        Ok(())
    }),
    ("frames_to_the_interface_itself_go_to_the_host_stack", |t| {
        t.standard(0)?;
        let own = [0x02, 0, 0, 0, 0, 0x5a];
        t.port_with_mac(t.a, PORT_A, 0, 0, own)?;
        let xsk = xsk_socket(t.a, 0)?;
        t.xsks.set(0, xsk.as_raw_fd(), 0)?;
        expect_action(t.run(t.a, &frame(own, MAC_A, None))?, XDP_PASS)?;
        // Even if the switch has learned it on another port.
        t.learn(0, own, t.b, PORT_B, 0)?;
        expect_action(t.run(t.a, &frame(own, MAC_A, None))?, XDP_PASS)?;
        // Other unicast still goes to the socket, and a zero "own" address matches nothing.
        let unknown = [0x02, 0, 0, 0, 0, 0x99];
        expect_action(t.run(t.a, &frame(unknown, MAC_A, None))?, XDP_REDIRECT)?;
        t.port(t.a, PORT_A, 0, 0)?;
        t.learn(0, [0; 6], t.b, PORT_B, 0)?;
        expect_action(t.run(t.a, &frame([0; 6], MAC_A, None))?, XDP_REDIRECT)?;
        let a = t.counters(t.a)?;
        ensure!((a.host, a.to_user) == (2, 1), "A: {a:?}");
        ensure!(t.counters(t.b)?.tx_frames == 1, "B: {:?}", t.counters(t.b)?);
        Ok(())
    }),
    ("partial_checksums_are_not_forwarded_in_the_kernel", |t| {
        t.standard(0)?;
        // A complete checksum: forwarded in the kernel.
        expect_action(
            t.run(t.a, &tcp_frame(MAC_B, MAC_A, None, false))?,
            XDP_REDIRECT,
        )?;
        ensure!(t.counters(t.b)?.tx_frames == 1, "{:?}", t.counters(t.b)?);
        // Left to the hardware: to the AF_XDP socket (none bound here: the stack).
        expect_action(t.run(t.a, &tcp_frame(MAC_B, MAC_A, None, true))?, XDP_PASS)?;
        let xsk = xsk_socket(t.a, 0)?;
        t.xsks.set(0, xsk.as_raw_fd(), 0)?;
        expect_action(
            t.run(t.a, &tcp_frame(MAC_B, MAC_A, Some(0), true))?,
            XDP_REDIRECT,
        )?;
        // Generic mode: to the stack, whose packet socket has the metadata.
        t.port(t.a, PORT_A, PORT_F_GENERIC, 0)?;
        expect_action(t.run(t.a, &tcp_frame(MAC_B, MAC_A, None, true))?, XDP_PASS)?;
        let a = t.counters(t.a)?;
        ensure!(
            (a.csum_partial, a.to_user, a.passed, a.host) == (3, 1, 1, 1),
            "A: {a:?}"
        );
        ensure!(t.counters(t.b)?.tx_frames == 1, "{:?}", t.counters(t.b)?);
        Ok(())
    }),
    ("remote_dest_goes_to_userspace", |t| {
        t.standard(0)?;
        expect_action(t.run(t.a, &frame(MAC_R, MAC_A, None))?, XDP_PASS)?;
        Ok(())
    }),
    ("unknown_source_goes_to_userspace", |t| {
        t.standard(0)?;
        let new = [0x02, 0, 0, 0, 0, 0x77];
        expect_action(t.run(t.a, &frame(MAC_B, new, None))?, XDP_PASS)?;
        ensure!(t.counters(t.b)?.tx_frames == 0, "forwarded");
        Ok(())
    }),
    ("moved_source_goes_to_userspace", |t| {
        t.standard(0)?;
        // MAC_R is known on the remote port, and now speaks on A.
        expect_action(t.run(t.a, &frame(MAC_B, MAC_R, None))?, XDP_PASS)?;
        // MAC_B is known on B, and now speaks on A.
        expect_action(t.run(t.a, &frame(MAC_R, MAC_B, None))?, XDP_PASS)?;
        ensure!(t.seen_ns(0, MAC_R)? == 0, "moved source refreshed");
        ensure!(t.counters(t.b)?.tx_frames == 0, "forwarded");
        Ok(())
    }),
    ("source_age_is_refreshed", |t| {
        t.standard(0)?;
        let before = monotonic_ns();
        expect_action(t.run(t.a, &frame(MAC_B, MAC_A, None))?, XDP_REDIRECT)?;
        let seen = t.seen_ns(0, MAC_A)?;
        let after = monotonic_ns();
        ensure!(
            (before..=after).contains(&seen),
            "seen_ns {seen} not in [{before}, {after}]"
        );
        ensure!(t.seen_ns(0, MAC_B)? == 0, "destination refreshed");
        // Refreshed also when the frame goes to userspace (source known on this port).
        t.learn(0, MAC_A, t.a, PORT_A, 0)?;
        expect_action(t.run(t.a, &frame(BROADCAST, MAC_A, None))?, XDP_PASS)?;
        ensure!(t.seen_ns(0, MAC_A)? >= before, "not refreshed by broadcast");
        // A fresh timestamp is not rewritten for every frame.
        let recent = monotonic_ns() - SEEN_REFRESH_NS / 2;
        t.learn(0, MAC_A, t.a, PORT_A, recent)?;
        expect_action(t.run(t.a, &frame(MAC_B, MAC_A, None))?, XDP_REDIRECT)?;
        ensure!(
            t.seen_ns(0, MAC_A)? == recent,
            "rewritten within SEEN_REFRESH_NS"
        );
        // An old one is.
        let old = monotonic_ns() - 2 * SEEN_REFRESH_NS;
        t.learn(0, MAC_A, t.a, PORT_A, old)?;
        expect_action(t.run(t.a, &frame(MAC_B, MAC_A, None))?, XDP_REDIRECT)?;
        ensure!(t.seen_ns(0, MAC_A)? > old + SEEN_REFRESH_NS, "old age kept");
        Ok(())
    }),
    ("vlans_are_separate", |t| {
        t.standard(10)?;
        // Known in VLAN 10 only.
        expect_action(t.run(t.a, &frame(MAC_B, MAC_A, Some(10)))?, XDP_REDIRECT)?;
        expect_action(t.run(t.a, &frame(MAC_B, MAC_A, Some(20)))?, XDP_PASS)?;
        expect_action(t.run(t.a, &frame(MAC_B, MAC_A, None))?, XDP_PASS)?;
        // Same MACs in VLAN 20 with B on A's side: dropped there, forwarded in VLAN 10.
        t.learn(20, MAC_A, t.a, PORT_A, 0)?;
        t.learn(20, MAC_B, t.a, PORT_A, 0)?;
        expect_action(t.run(t.a, &frame(MAC_B, MAC_A, Some(20)))?, XDP_DROP)?;
        expect_action(t.run(t.a, &frame(MAC_B, MAC_A, Some(10)))?, XDP_REDIRECT)?;
        ensure!(t.counters(t.b)?.tx_frames == 2, "{:?}", t.counters(t.b)?);
        Ok(())
    }),
    ("priority_bits_do_not_hide_the_vid", |t| {
        t.standard(10)?;
        let tci = (5 << 13) | (1 << 12) | 10; // PCP 5, DEI 1, VID 10
        expect_action(t.run(t.a, &frame(MAC_B, MAC_A, Some(tci)))?, XDP_REDIRECT)?;
        // A priority-tagged frame (VID 0) is in VLAN 0, like an untagged one.
        t.standard(0)?;
        expect_action(
            t.run(t.a, &frame(MAC_B, MAC_A, Some(3 << 13)))?,
            XDP_REDIRECT,
        )?;
        Ok(())
    }),
    ("truncated_frames_are_dropped", |t| {
        t.standard(0)?;
        // A header alone (the kernel refuses to test-run less than ETH_HLEN bytes).
        let f = frame(MAC_B, MAC_A, None);
        expect_action(t.run(t.a, &f[..14])?, XDP_REDIRECT)?;
        // A tag announced but cut short.
        let f = frame(MAC_B, MAC_A, Some(10));
        for len in 14..18 {
            expect_action(t.run(t.a, &f[..len])?, XDP_DROP)?;
        }
        let a = t.counters(t.a)?;
        ensure!((a.rx_frames, a.dropped) == (5, 4), "A: {a:?}");
        // Not our interface: not our business either.
        expect_action(t.run(t.other, &f[..15])?, XDP_PASS)?;
        Ok(())
    }),
    ("shut_port_drops_everything", |t| {
        t.standard(0)?;
        t.port(t.a, PORT_A, PORT_F_SHUT, 0)?;
        for dst in [MAC_B, BROADCAST, MAC_R] {
            expect_action(t.run(t.a, &frame(dst, MAC_A, None))?, XDP_DROP)?;
        }
        let a = t.counters(t.a)?;
        ensure!((a.rx_frames, a.dropped) == (3, 3), "A: {a:?}");
        ensure!(t.seen_ns(0, MAC_A)? == 0, "shut port learned");
        Ok(())
    }),
    ("shut_or_missing_egress_goes_to_userspace", |t| {
        t.standard(0)?;
        t.port(t.b, PORT_B, PORT_F_SHUT, 8)?;
        expect_action(t.run(t.a, &frame(MAC_B, MAC_A, None))?, XDP_PASS)?;
        t.port(t.b, PORT_B, 0, 8)?;
        t.devmap.remove(t.b)?;
        expect_action(t.run(t.a, &frame(MAC_B, MAC_A, None))?, XDP_PASS)?;
        t.ports.remove(&t.b)?;
        t.devmap.insert(t.b, t.b, None, 0)?;
        expect_action(t.run(t.a, &frame(MAC_B, MAC_A, None))?, XDP_PASS)?;
        ensure!(t.counters(t.b)?.tx_frames == 0, "forwarded");
        Ok(())
    }),
    ("ports_with_a_policy_are_left_to_userspace", |t| {
        // A VLAN, isolation, mesh flag, mirror or rate limit: only the switch core applies
        // them, so neither a frame from such a port nor one to it is forwarded in the kernel.
        t.standard(0)?;
        t.port(t.a, PORT_A, PORT_F_USER, 0)?;
        expect_action(t.run(t.a, &frame(MAC_B, MAC_A, None))?, XDP_PASS)?;
        t.port(t.a, PORT_A, 0, 0)?;
        t.port(t.b, PORT_B, PORT_F_USER, 8)?;
        expect_action(t.run(t.a, &frame(MAC_B, MAC_A, None))?, XDP_PASS)?;
        ensure!(t.counters(t.b)?.tx_frames == 0, "forwarded");
        // Without the flag the same frame is forwarded in the kernel.
        t.port(t.b, PORT_B, 0, 8)?;
        expect_action(t.run(t.a, &frame(MAC_B, MAC_A, None))?, XDP_REDIRECT)?;
        ensure!(t.counters(t.b)?.tx_frames == 1, "not forwarded");
        Ok(())
    }),
];

/// Moves the calling thread into a new network namespace and makes two veth pairs there.
/// Returns the ifindexes of `a`, `b` and `c` (`c` being `a`'s peer).
fn private_netns() -> anyhow::Result<(u32, u32, u32)> {
    // SAFETY: unshare(2) takes no pointers; CLONE_NEWNET moves only the calling thread into a
    // new network namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        bail!("unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
    }
    // Children inherit the namespace of the thread that starts them: `ip` acts in ours.
    for args in [
        "link add xa type veth peer name xc",
        "link add xb type veth peer name xd",
        "link set xa up",
        "link set xb up",
        "link set xc up",
        "link set xd up",
    ] {
        let out = Command::new("ip")
            .args(args.split(' '))
            .output()
            .context("cannot run `ip` (iproute2)")?;
        ensure!(
            out.status.success(),
            "ip {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let index = |name: &str| {
        let c = CString::new(name).expect("no NUL");
        // SAFETY: `c` is a live NUL-terminated string, which if_nametoindex only reads.
        match unsafe { libc::if_nametoindex(c.as_ptr()) } {
            0 => bail!("no interface {name}"),
            i => Ok(i),
        }
    };
    Ok((index("xa")?, index("xb")?, index("xc")?))
}

/// An AF_XDP socket (copy mode) bound to `queue` of `ifindex`: what the XSKMAP holds.
fn xsk_socket(ifindex: u32, queue: u32) -> anyhow::Result<OwnedFd> {
    const FRAMES: usize = 64;
    const FRAME_SIZE: usize = 4096;
    // SAFETY: socket(2) takes no pointers; the descriptor it returns is checked, then owned.
    let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        bail!("socket(AF_XDP): {}", std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // The UMEM: anonymous memory, never unmapped (a few pages, once per test run).
    let len = FRAMES * FRAME_SIZE;
    // SAFETY: a new anonymous mapping at an address the kernel picks (null hint, no
    // MAP_FIXED): no existing memory is affected; MAP_FAILED is checked below.
    let umem = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if umem == libc::MAP_FAILED {
        bail!("mmap: {}", std::io::Error::last_os_error());
    }
    let setsockopt = |opt: libc::c_int, val: *const libc::c_void, size: usize| {
        // SAFETY: `val` points to `size` readable bytes.
        if unsafe { libc::setsockopt(fd, libc::SOL_XDP, opt, val, size as libc::socklen_t) } != 0 {
            bail!(
                "setsockopt(SOL_XDP, {opt}): {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    };
    let reg = libc::xdp_umem_reg {
        addr: umem as u64,
        len: len as u64,
        chunk_size: FRAME_SIZE as u32,
        headroom: 0,
        flags: 0,
        tx_metadata_len: 0,
    };
    setsockopt(
        libc::XDP_UMEM_REG,
        (&raw const reg).cast(),
        size_of_val(&reg),
    )?;
    let ring: libc::c_int = FRAMES as libc::c_int;
    for opt in [
        libc::XDP_UMEM_FILL_RING,
        libc::XDP_UMEM_COMPLETION_RING,
        libc::XDP_RX_RING,
    ] {
        setsockopt(opt, (&raw const ring).cast(), size_of_val(&ring))?;
    }
    let addr = libc::sockaddr_xdp {
        sxdp_family: libc::AF_XDP as u16,
        sxdp_flags: libc::XDP_COPY,
        sxdp_ifindex: ifindex,
        sxdp_queue_id: queue,
        sxdp_shared_umem_fd: 0,
    };
    // The previous test's socket on this queue may still be on its way out (the XSKMAP entry
    // that held it was only just cleared): the queue is busy for a moment.
    for _ in 0..100 {
        // SAFETY: `addr` is a live, fully initialised sockaddr_xdp and the length given is its
        // size; bind only reads it.
        let r = unsafe {
            libc::bind(
                fd,
                (&raw const addr).cast(),
                size_of_val(&addr) as libc::socklen_t,
            )
        };
        if r == 0 {
            return Ok(sock);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EBUSY) {
            bail!("bind(AF_XDP): {e}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    bail!("bind(AF_XDP): queue {queue} of ifindex {ifindex} stays busy")
}

/// Loads the object and opens every map by the names userspace will use.
fn bench(a: u32, b: u32, other: u32) -> anyhow::Result<Bench> {
    let path = object_path();
    let data = std::fs::read(&path).with_context(|| {
        format!(
            "cannot read {} (run `cargo xtask build-ebpf` first)",
            path.display()
        )
    })?;
    // The switch's own loading sequence; verification happens here, so a verifier rejection
    // fails every test.
    let mut object =
        XdpObject::load(&data).with_context(|| format!("loading {}", path.display()))?;
    object
        .load_tc()
        .context("loading the TC program and the socket filter")?;
    let XdpObject {
        ebpf,
        fdb,
        ports,
        devmap,
        xsks,
        counters,
        ..
    } = object;
    Ok(Bench {
        ebpf,
        fdb,
        ports,
        devmap,
        xsks,
        counters,
        a,
        b,
        other,
    })
}

pub fn task_test_ebpf() -> anyhow::Result<()> {
    // SAFETY: geteuid(2) takes no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        if std::env::var("CI").as_deref() == Ok("true") {
            bail!("the eBPF tests need root (BPF, network namespaces); CI=true forbids skipping");
        }
        eprintln!();
        eprintln!("######## SKIPPED: the eBPF tests need root (BPF, network namespaces) ########");
        eprintln!();
        return Ok(());
    }
    let handle = std::thread::Builder::new()
        .name("ebpf-tests".into())
        .spawn(|| -> anyhow::Result<(usize, usize)> {
            let (a, b, other) = private_netns()?;
            let mut t = bench(a, b, other)?;
            let (mut passed, mut failed) = (0, 0);
            for (name, case) in CASES.iter().chain(crate::test_ebpf_tc::CASES) {
                let r = t.reset().and_then(|()| case(&mut t));
                match r {
                    Ok(()) => {
                        passed += 1;
                        eprintln!("test ebpf::{name} ... ok");
                    }
                    Err(e) => {
                        failed += 1;
                        eprintln!("test ebpf::{name} ... FAILED: {e:#}");
                    }
                }
            }
            Ok((passed, failed))
        })
        .context("cannot start the test thread")?;
    let (passed, failed) = handle
        .join()
        .map_err(|_| anyhow::anyhow!("the eBPF test thread panicked"))??;
    eprintln!("ebpf: {passed} passed, {failed} failed");
    if failed > 0 {
        bail!("{failed} eBPF test(s) failed");
    }
    Ok(())
}
