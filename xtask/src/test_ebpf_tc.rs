//! `cargo xtask test-ebpf`, the TC program (`etherws_tc`) and the socket filter
//! (`etherws_sock`): the XDP cases ported, plus GSO counting. Every run goes through
//! [`Bench::run_tc`], which also runs the socket filter on the same frame and checks that it
//! drops exactly what TC redirects or drops (the frames userspace must not get twice).

use anyhow::ensure;
use etherws_common::{PORT_F_SHUT, PORT_F_TC, PORT_F_USER, PortCounters, SEEN_REFRESH_NS};

use crate::test_ebpf::{
    BROADCAST, Bench, Case, MAC_A, MAC_B, MAC_R, MULTICAST, PORT_A, PORT_B, PORT_REMOTE,
    TC_ACT_REDIRECT, TC_ACT_SHOT, TC_ACT_UNSPEC, expect_tc, frame, monotonic_ns, tcp_frame,
};

impl Bench {
    /// The usual setup for TC: A and B are TC ports, MAC_A known on A, MAC_B on B, MAC_R on a
    /// remote port, all in VLAN `vid`.
    fn standard_tc(&mut self, vid: u16) -> anyhow::Result<()> {
        self.port(self.a, PORT_A, PORT_F_TC, 0)?;
        self.port(self.b, PORT_B, PORT_F_TC, 0)?;
        self.learn(vid, MAC_A, self.a, PORT_A, 0)?;
        self.learn(vid, MAC_B, self.b, PORT_B, 0)?;
        self.learn(vid, MAC_R, 0, PORT_REMOTE, 0)?;
        Ok(())
    }

    fn tc(&self, ifindex: u32, frame: &[u8]) -> anyhow::Result<u32> {
        self.run_tc(ifindex, frame, 0)
    }
}

const UNKNOWN: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];
const NEW: [u8; 6] = [0x02, 0, 0, 0, 0, 0x77];

pub(crate) const CASES: &[(&str, Case)] = &[
    ("tc_not_a_tc_port_passes", |t| {
        t.standard_tc(0)?;
        expect_tc(t.tc(t.other, &frame(MAC_B, MAC_A, None))?, TC_ACT_UNSPEC)?;
        // An XDP port (no PORT_F_TC) is not the TC program's either.
        t.port(t.a, PORT_A, 0, 0)?;
        expect_tc(t.tc(t.a, &frame(MAC_B, MAC_A, None))?, TC_ACT_UNSPEC)?;
        ensure!(t.counters(t.other)? == PortCounters::default(), "counted");
        ensure!(t.counters(t.a)? == PortCounters::default(), "counted");
        Ok(())
    }),
    ("tc_known_dest_is_redirected_and_counted", |t| {
        t.standard_tc(0)?;
        let f = frame(MAC_B, MAC_A, None);
        expect_tc(t.tc(t.a, &f)?, TC_ACT_REDIRECT)?;
        let (a, b) = (t.counters(t.a)?, t.counters(t.b)?);
        let len = f.len() as u64;
        ensure!((a.rx_frames, a.rx_bytes) == (1, len), "rx of A: {a:?}");
        ensure!((b.tx_frames, b.tx_bytes) == (1, len), "tx of B: {b:?}");
        ensure!(
            a.to_user + a.host + a.dropped + a.tx_frames == 0,
            "A: {a:?}"
        );
        expect_tc(t.tc(t.b, &frame(MAC_A, MAC_B, None))?, TC_ACT_REDIRECT)?;
        ensure!(t.counters(t.a)?.tx_frames == 1, "B to A not counted");
        Ok(())
    }),
    ("tc_gso_super_frame_counts_its_segments", |t| {
        t.standard_tc(0)?;
        let f = tcp_frame(MAC_B, MAC_A, None, true);
        expect_tc(t.run_tc(t.a, &f, 40)?, TC_ACT_REDIRECT)?;
        let (a, b) = (t.counters(t.a)?, t.counters(t.b)?);
        ensure!(
            (a.rx_frames, a.rx_bytes) == (40, f.len() as u64),
            "A: {a:?}"
        );
        ensure!(b.tx_frames == 40, "B: {b:?}");
        // Userspace-bound GSO frames count their segments, as received and as to userspace.
        expect_tc(
            t.run_tc(t.a, &tcp_frame(UNKNOWN, MAC_A, None, true), 3)?,
            TC_ACT_UNSPEC,
        )?;
        let a = t.counters(t.a)?;
        ensure!((a.rx_frames, a.to_user) == (43, 3), "A: {a:?}");
        Ok(())
    }),
    (
        "tc_partial_checksums_are_forwarded_with_their_metadata",
        |t| {
            t.standard_tc(0)?;
            expect_tc(
                t.tc(t.a, &tcp_frame(MAC_B, MAC_A, None, true))?,
                TC_ACT_REDIRECT,
            )?;
            expect_tc(
                t.tc(t.a, &tcp_frame(MAC_B, MAC_A, None, false))?,
                TC_ACT_REDIRECT,
            )?;
            ensure!(t.counters(t.a)?.csum_partial == 0, "{:?}", t.counters(t.a)?);
            Ok(())
        },
    ),
    ("tc_dest_on_ingress_port_is_dropped", |t| {
        t.standard_tc(0)?;
        t.learn(0, MAC_B, t.a, PORT_A, 0)?;
        expect_tc(t.tc(t.a, &frame(MAC_B, MAC_A, None))?, TC_ACT_SHOT)?;
        let a = t.counters(t.a)?;
        ensure!((a.rx_frames, a.dropped) == (1, 1), "A: {a:?}");
        Ok(())
    }),
    ("tc_unknown_remote_and_new_go_to_userspace", |t| {
        t.standard_tc(0)?;
        expect_tc(t.tc(t.a, &frame(UNKNOWN, MAC_A, None))?, TC_ACT_UNSPEC)?;
        expect_tc(t.tc(t.a, &frame(MAC_R, MAC_A, None))?, TC_ACT_UNSPEC)?;
        expect_tc(t.tc(t.a, &frame(MAC_B, NEW, None))?, TC_ACT_UNSPEC)?;
        // Moved sources: MAC_R (remote) and MAC_B (on B) speaking on A.
        expect_tc(t.tc(t.a, &frame(MAC_B, MAC_R, None))?, TC_ACT_UNSPEC)?;
        expect_tc(t.tc(t.a, &frame(MAC_R, MAC_B, None))?, TC_ACT_UNSPEC)?;
        ensure!(t.seen_ns(0, MAC_R)? == 0, "moved source refreshed");
        let a = t.counters(t.a)?;
        ensure!((a.rx_frames, a.to_user) == (5, 5), "A: {a:?}");
        ensure!(t.counters(t.b)?.tx_frames == 0, "forwarded");
        Ok(())
    }),
    ("tc_group_and_own_frames_go_to_the_host", |t| {
        t.standard_tc(0)?;
        for dst in [BROADCAST, MULTICAST] {
            expect_tc(t.tc(t.a, &frame(dst, MAC_A, None))?, TC_ACT_UNSPEC)?;
        }
        expect_tc(t.tc(t.a, &frame(BROADCAST, NEW, None))?, TC_ACT_UNSPEC)?;
        t.learn(0, MULTICAST, t.b, PORT_B, 0)?;
        expect_tc(t.tc(t.a, &frame(MULTICAST, MAC_A, None))?, TC_ACT_UNSPEC)?;
        let own = [0x02, 0, 0, 0, 0, 0x5a];
        t.port_with_mac(t.a, PORT_A, PORT_F_TC, 0, own)?;
        t.learn(0, own, t.b, PORT_B, 0)?;
        expect_tc(t.tc(t.a, &frame(own, MAC_A, None))?, TC_ACT_UNSPEC)?;
        let a = t.counters(t.a)?;
        ensure!((a.host, a.to_user) == (5, 0), "A: {a:?}");
        ensure!(t.counters(t.b)?.tx_frames == 0, "forwarded");
        Ok(())
    }),
    (
        "tc_source_age_is_refreshed_and_the_filter_only_reads",
        |t| {
            t.standard_tc(0)?;
            let before = monotonic_ns();
            expect_tc(t.tc(t.a, &frame(MAC_B, MAC_A, None))?, TC_ACT_REDIRECT)?;
            let seen = t.seen_ns(0, MAC_A)?;
            ensure!((before..=monotonic_ns()).contains(&seen), "seen_ns {seen}");
            let recent = monotonic_ns() - SEEN_REFRESH_NS / 2;
            t.learn(0, MAC_A, t.a, PORT_A, recent)?;
            expect_tc(t.tc(t.a, &frame(MAC_B, MAC_A, None))?, TC_ACT_REDIRECT)?;
            ensure!(
                t.seen_ns(0, MAC_A)? == recent,
                "rewritten within SEEN_REFRESH_NS"
            );
            // `run_tc` runs the filter first: had it refreshed, TC would find a fresh age.
            let old = monotonic_ns() - 2 * SEEN_REFRESH_NS;
            t.learn(0, MAC_A, t.a, PORT_A, old)?;
            expect_tc(t.tc(t.a, &frame(MAC_B, MAC_A, None))?, TC_ACT_REDIRECT)?;
            ensure!(t.seen_ns(0, MAC_A)? > old + SEEN_REFRESH_NS, "old age kept");
            Ok(())
        },
    ),
    ("tc_vlans_in_band_are_separate", |t| {
        t.standard_tc(10)?;
        expect_tc(t.tc(t.a, &frame(MAC_B, MAC_A, Some(10)))?, TC_ACT_REDIRECT)?;
        expect_tc(t.tc(t.a, &frame(MAC_B, MAC_A, Some(20)))?, TC_ACT_UNSPEC)?;
        expect_tc(t.tc(t.a, &frame(MAC_B, MAC_A, None))?, TC_ACT_UNSPEC)?;
        t.learn(20, MAC_A, t.a, PORT_A, 0)?;
        t.learn(20, MAC_B, t.a, PORT_A, 0)?;
        expect_tc(t.tc(t.a, &frame(MAC_B, MAC_A, Some(20)))?, TC_ACT_SHOT)?;
        let tci = (5 << 13) | (1 << 12) | 10;
        expect_tc(t.tc(t.a, &frame(MAC_B, MAC_A, Some(tci)))?, TC_ACT_REDIRECT)?;
        ensure!(t.counters(t.b)?.tx_frames == 2, "{:?}", t.counters(t.b)?);
        Ok(())
    }),
    ("tc_truncated_tags_are_dropped", |t| {
        t.standard_tc(0)?;
        // (The kernel refuses to test-run an untagged frame of a header alone.)
        // A tag announced but cut short.
        let f = frame(MAC_B, MAC_A, Some(10));
        for len in 14..18 {
            expect_tc(t.tc(t.a, &f[..len])?, TC_ACT_SHOT)?;
        }
        let a = t.counters(t.a)?;
        ensure!((a.rx_frames, a.dropped) == (4, 4), "A: {a:?}");
        Ok(())
    }),
    ("tc_shut_port_drops_everything", |t| {
        t.standard_tc(0)?;
        t.port(t.a, PORT_A, PORT_F_TC | PORT_F_SHUT, 0)?;
        for dst in [MAC_B, BROADCAST, MAC_R] {
            expect_tc(t.tc(t.a, &frame(dst, MAC_A, None))?, TC_ACT_SHOT)?;
        }
        let a = t.counters(t.a)?;
        ensure!((a.rx_frames, a.dropped) == (3, 3), "A: {a:?}");
        ensure!(t.seen_ns(0, MAC_A)? == 0, "shut port learned");
        Ok(())
    }),
    ("tc_egress_must_be_an_open_tc_port", |t| {
        t.standard_tc(0)?;
        let f = frame(MAC_B, MAC_A, None);
        for flags in [PORT_F_TC | PORT_F_SHUT, PORT_F_TC | PORT_F_USER, 0] {
            t.port(t.b, PORT_B, flags, 0)?;
            expect_tc(t.tc(t.a, &f)?, TC_ACT_UNSPEC)?;
        }
        t.ports.remove(&t.b)?;
        expect_tc(t.tc(t.a, &f)?, TC_ACT_UNSPEC)?;
        // Ingress with a policy: everything to userspace.
        t.port(t.b, PORT_B, PORT_F_TC, 0)?;
        t.port(t.a, PORT_A, PORT_F_TC | PORT_F_USER, 0)?;
        expect_tc(t.tc(t.a, &f)?, TC_ACT_UNSPEC)?;
        ensure!(t.counters(t.b)?.tx_frames == 0, "forwarded");
        t.port(t.a, PORT_A, PORT_F_TC, 0)?;
        expect_tc(t.tc(t.a, &f)?, TC_ACT_REDIRECT)?;
        Ok(())
    }),
];
