//! Which eBPF program an offloaded port runs: XDP (before GRO, per frame; fast for small frames
//! and on native XDP drivers with zero-copy AF_XDP) or TC (tcx, after GRO; forwards 64 KB GSO
//! super-frames with `bpf_redirect`).
//!
//! [`choose`] is the decision, pure and table-tested; [`Facts::read`] gathers what it reads
//! about a device: its driver's name and GRO/TSO (`sys::ethtool`), its XDP features
//! ([`features`](super::features)), and whether the kernel has tcx.

use super::features::{self, XDP_ACT_BASIC, XDP_ACT_NDO_XMIT, XDP_ACT_XSK_ZEROCOPY};
use crate::sys::{self, ethtool::Ethtool};

/// The program a port runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Program {
    /// The XDP program: in the driver (or generic), before GRO, one frame at a time.
    Xdp,
    /// The TC program (tcx ingress): after GRO, super-frames and all.
    Tc,
}

impl Program {
    /// Its name as `--offload` takes it and `listPort` shows it (`program`; the table's
    /// `netdev/xdp`, `netdev/tc`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Program::Xdp => "xdp",
            Program::Tc => "tc",
        }
    }
}

/// What the user asked for (`--offload`, `--offload=auto|xdp|tc`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Requested {
    /// Let [`choose`] decide from the device's [`Facts`].
    #[default]
    Auto,
    Xdp,
    Tc,
}

impl std::str::FromStr for Requested {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Requested::Auto),
            "xdp" => Ok(Requested::Xdp),
            "tc" => Ok(Requested::Tc),
            other => Err(format!("invalid offload {other:?} (auto, xdp or tc)")),
        }
    }
}

/// What [`choose`] knows of a device. A fact that could not be read is the cautious value
/// (`""`, `false`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Facts {
    /// The driver's name (`ETHTOOL_GDRVINFO`: `veth`, `tun`, `virtio_net`, `mlx5_core`...);
    /// empty when the device names none (`lo`).
    pub(crate) driver: String,
    /// The driver runs XDP itself (`NETDEV_XDP_ACT_BASIC`); without it XDP would be generic.
    pub(crate) native_xdp: bool,
    /// The device takes XDP-redirected frames (`NETDEV_XDP_ACT_NDO_XMIT`). Some drivers set
    /// it only once an XDP program is attached (`virtio_net`) or while the peer has GRO on
    /// (`veth`): read before attaching, `false` means "not known to".
    pub(crate) ndo_xmit: bool,
    /// AF_XDP sockets can be zero-copy (`NETDEV_XDP_ACT_XSK_ZEROCOPY`).
    pub(crate) xsk_zerocopy: bool,
    /// GRO is on (`ETHTOOL_GGRO`).
    pub(crate) gro: bool,
    /// TSO is on (`ETHTOOL_GTSO`).
    pub(crate) tso: bool,
    /// The kernel has tcx, so the TC program detaches with its link (see
    /// [`tcx_by_kernel_version`]).
    pub(crate) tcx: bool,
}

impl Facts {
    /// Reads the facts of interface `ifname` (index `ifindex`). Blocks for a few system calls
    /// and one netlink exchange (at most a second): call it off the async runtime.
    pub(crate) fn read(ifname: &str, ifindex: u32) -> Facts {
        let ethtool = Ethtool::open();
        let ethtool = ethtool.as_ref().ok();
        let driver = ethtool
            .and_then(|e| e.driver(ifname).ok())
            .unwrap_or_default();
        let offloads = ethtool
            .and_then(|e| e.offloads(ifname).ok())
            .unwrap_or_default();
        let xdp = features::Genl::open()
            .and_then(|mut g| g.xdp_features(ifindex))
            .unwrap_or(0);
        Facts {
            driver,
            native_xdp: xdp & XDP_ACT_BASIC != 0,
            ndo_xmit: xdp & XDP_ACT_NDO_XMIT != 0,
            xsk_zerocopy: xdp & XDP_ACT_XSK_ZEROCOPY != 0,
            gro: offloads.gro,
            tso: offloads.tso,
            tcx: sys::kernel_release().is_ok_and(|r| tcx_by_kernel_version(&r)),
        }
    }
}

/// Whether a kernel of release `release` (`uname -r`) has tcx: Linux ≥ 6.6. A version check
/// only, not a try-attach: a kernel built without it, or a distribution's backport, is not
/// seen; the TC port's attach failure falls back as any other.
pub(crate) fn tcx_by_kernel_version(release: &str) -> bool {
    kernel_version(release).is_some_and(|v| v >= (6, 6))
}

/// Major and minor of a release string (`6.8.0-45-generic` → (6, 8)).
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((major, minor.parse().ok()?))
}

/// Drivers of virtual devices: XDP on them sees frames before GRO, one by one, where TC
/// forwards the super-frames their senders made. (`virtio_net` with zero-copy AF_XDP is a
/// driver of its own; see [`choose`].)
const VIRTUAL: &[&str] = &[
    "veth",
    "tun",
    "virtio_net",
    "bridge",
    "macvlan",
    "macvtap",
    "ipvlan",
    "ipvtap",
    "vxlan",
    "geneve",
    "dummy",
    "netkit",
    "vrf",
];

/// The program a port runs, and why, in a short sentence for `listPort` and the log.
///
/// 1. An explicit `xdp` or `tc` wins.
/// 2. Without tcx, `xdp`: the TC program would have no link to detach with.
/// 3. A virtual device (`veth`, `tun`, `virtio_net` without zero-copy AF_XDP, `bridge`,
///    `macvlan`...), or one whose driver has no native XDP: `tc`.
/// 4. A native XDP driver with zero-copy AF_XDP: `xdp`.
/// 5. Another native XDP driver with GRO and TSO on: `tc`; with either off, `tc` still if the
///    device takes no XDP-redirected frames, else `xdp`.
pub(crate) fn choose(req: Requested, f: &Facts) -> (Program, &'static str) {
    match req {
        Requested::Xdp => return (Program::Xdp, "asked for (--offload=xdp)"),
        Requested::Tc => return (Program::Tc, "asked for (--offload=tc)"),
        Requested::Auto => {}
    }
    if !f.tcx {
        return (Program::Xdp, "TC needs tcx (Linux ≥ 6.6) to detach cleanly");
    }
    let virtio_zc = f.driver == "virtio_net" && f.xsk_zerocopy;
    if VIRTUAL.contains(&f.driver.as_str()) && !virtio_zc {
        let why = if f.driver == "veth" {
            "veth: XDP sees frames before GRO and turns its peer's TSO off; \
             TC forwards 64 KB super-frames"
        } else {
            "virtual device: XDP sees frames before GRO, one by one; \
             TC forwards 64 KB super-frames"
        };
        return (Program::Tc, why);
    }
    if !f.native_xdp {
        return (
            Program::Tc,
            "no native XDP: XDP would run generic (after GRO, linearized); \
             TC forwards 64 KB super-frames",
        );
    }
    if f.xsk_zerocopy {
        return (
            Program::Xdp,
            "native XDP driver: per-frame redirect at line rate, zero-copy AF_XDP",
        );
    }
    if f.gro && f.tso {
        return (
            Program::Tc,
            "native XDP without zero-copy AF_XDP, GRO and TSO on: TC forwards 64 KB super-frames",
        );
    }
    if !f.ndo_xmit {
        return (
            Program::Tc,
            "the driver takes no XDP-redirected frames; TC redirects into any device",
        );
    }
    (
        Program::Xdp,
        "native XDP driver, GRO or TSO off: per-frame redirect in the driver",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device as the tests describe it: tcx, the driver, then what is on.
    fn dev(driver: &str, on: &[&str]) -> Facts {
        let has = |w: &str| on.contains(&w);
        Facts {
            driver: driver.into(),
            native_xdp: has("native"),
            ndo_xmit: has("xmit"),
            xsk_zerocopy: has("zc"),
            gro: has("gro"),
            tso: has("tso"),
            tcx: !has("old-kernel"),
        }
    }

    #[test]
    fn requests_parse() {
        assert_eq!("tc".parse::<Requested>(), Ok(Requested::Tc));
        assert_eq!("xdp".parse::<Requested>(), Ok(Requested::Xdp));
        assert_eq!("auto".parse::<Requested>(), Ok(Requested::Auto));
        assert!("bpf".parse::<Requested>().is_err());
        assert!(
            "".parse::<Requested>().is_err(),
            "an empty string is no way to turn it on"
        );
    }

    #[test]
    fn every_rule_of_the_table() {
        use Program::{Tc, Xdp};
        use Requested as R;
        let nic = ["native", "xmit", "gro", "tso"];
        #[rustfmt::skip]
        let table: &[(R, Facts, Program, &str)] = &[
            // 1. Explicit wins, whatever the device.
            (R::Xdp, dev("veth", &["native"]), Xdp, "asked for"),
            (R::Tc, dev("mlx5_core", &["native", "zc"]), Tc, "asked for"),
            (R::Tc, dev("veth", &["old-kernel"]), Tc, "asked for"),
            // 2. No tcx: XDP, even where TC would be better.
            (R::Auto, dev("veth", &["native", "old-kernel"]), Xdp, "tcx (Linux ≥ 6.6)"),
            (R::Auto, dev("", &["old-kernel"]), Xdp, "tcx"),
            // 3. Virtual devices, native XDP or not.
            (R::Auto, dev("veth", &["native", "xmit", "tso"]), Tc, "veth: XDP sees frames before GRO"),
            (R::Auto, dev("tun", &["native", "gro"]), Tc, "virtual device"),
            (R::Auto, dev("virtio_net", &["native", "xmit", "gro", "tso"]), Tc, "virtual device"),
            (R::Auto, dev("bridge", &["gro", "tso"]), Tc, "virtual device"),
            (R::Auto, dev("macvlan", &["tso"]), Tc, "virtual device"),
            (R::Auto, dev("ipvlan", &[]), Tc, "virtual device"),
            (R::Auto, dev("vxlan", &[]), Tc, "virtual device"),
            (R::Auto, dev("dummy", &[]), Tc, "virtual device"),
            //    ... and no native XDP (lo names no driver).
            (R::Auto, dev("", &["gro", "tso"]), Tc, "no native XDP"),
            (R::Auto, dev("r8169", &["gro"]), Tc, "XDP would run generic"),
            // 4. Native XDP with zero-copy AF_XDP, virtio_net's included.
            (R::Auto, dev("mlx5_core", &["native", "xmit", "zc", "gro", "tso"]), Xdp, "zero-copy AF_XDP"),
            (R::Auto, dev("ice", &["native", "xmit", "zc"]), Xdp, "zero-copy"),
            (R::Auto, dev("virtio_net", &["native", "xmit", "zc", "gro", "tso"]), Xdp, "zero-copy"),
            // 5. Other native XDP: GRO and TSO on, TC; else XDP if it takes redirects.
            (R::Auto, dev("bnxt_en", &nic), Tc, "GRO and TSO on"),
            (R::Auto, dev("bnxt_en", &["native", "xmit", "gro"]), Xdp, "GRO or TSO off"),
            (R::Auto, dev("bnxt_en", &["native", "xmit", "tso"]), Xdp, "GRO or TSO off"),
            (R::Auto, dev("bnxt_en", &["native", "gro"]), Tc, "no XDP-redirected frames"),
        ];
        for (i, (req, facts, want, why)) in table.iter().enumerate() {
            let (got, said) = choose(*req, facts);
            assert_eq!(got, *want, "row {i}: {req:?} {facts:?}: {said}");
            assert!(said.contains(why), "row {i}: {said:?} should say {why:?}");
            assert!(
                said.chars().count() <= 100,
                "row {i}: a short sentence: {said}"
            );
        }
    }

    #[test]
    fn tcx_is_linux_6_6_and_later() {
        for (r, tcx) in [
            ("6.6.0", true),
            ("6.18.44-fc-v1300", true),
            ("7.0", true),
            ("6.8.0-45-generic", true),
            ("6.5.13-rt", false),
            ("6.1.0-25-amd64", false),
            ("5.15.0", false),
            ("", false),
            ("garbage", false),
            ("6", false),
            ("6.x", false),
        ] {
            assert_eq!(tcx_by_kernel_version(r), tcx, "{r}");
        }
        assert_eq!(kernel_version("10.12rc1"), Some((10, 12)));
    }

    #[test]
    fn program_names() {
        assert_eq!(Program::Xdp.name(), "xdp");
        assert_eq!(Program::Tc.name(), "tc");
        assert_eq!(Requested::default(), Requested::Auto);
    }

    #[test]
    fn loopback_facts_are_read() {
        // Index 1 is `lo` in every namespace.
        let f = Facts::read("lo", 1);
        assert_eq!(f.driver, "", "lo names no driver");
        assert!(!f.native_xdp && !f.xsk_zerocopy, "{f:?}");
        let f = Facts::read("no-such-if0", 999_999);
        assert_eq!(f.driver, "");
        assert!(!f.gro && !f.tso && !f.native_xdp, "{f:?}");
    }

    #[test]
    fn root_a_veth_is_read_as_one_and_gets_tc() {
        crate::sys::ethtool::testns::with_veth(|ifindex| {
            let f = Facts::read("ews0", ifindex);
            eprintln!("ews0: {f:?}");
            assert_eq!(f.driver, "veth", "{f:?}");
            assert!(f.tso && !f.gro, "{f:?}");
            let release = sys::kernel_release().unwrap();
            assert_eq!(f.tcx, tcx_by_kernel_version(&release));
            let (p, why) = choose(Requested::Auto, &f);
            if f.tcx {
                // Native XDP is advertised on Linux ≥ 6.3 (xdp_features); veth has it.
                assert!(f.native_xdp, "{f:?}");
                assert_eq!(p, Program::Tc, "{why}");
                assert!(why.starts_with("veth: "), "{why}");
            } else {
                assert_eq!(p, Program::Xdp, "{why}");
            }
        });
    }
}
