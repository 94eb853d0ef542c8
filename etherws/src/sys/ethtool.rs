//! What a device's driver says of itself through the `SIOCETHTOOL` ioctl: its name
//! (`ETHTOOL_GDRVINFO`) and whether GRO, GSO and TSO are on (`ETHTOOL_GGRO`, `ETHTOOL_GGSO`,
//! `ETHTOOL_GTSO`). The offload reads them to choose between its XDP and TC programs.
//!
//! The ioctl goes to any socket; an `AF_INET` datagram socket is the customary one (the
//! `ethtool` tool's). None of these reads needs a privilege.
//!
//! The `libc` crate has `SIOCETHTOOL` but neither the commands nor their structures; they are
//! defined here after `<linux/ethtool.h>`, a stable part of the kernel's ABI.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use super::socket::{self, Plain};
use super::{Result, SyscallError, check};

/// `<linux/ethtool.h>`: get driver and device information (`struct ethtool_drvinfo`).
const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;
/// `<linux/ethtool.h>`: get TSO enable (`struct ethtool_value`).
const ETHTOOL_GTSO: u32 = 0x0000_001e;
/// `<linux/ethtool.h>`: get GSO enable (`struct ethtool_value`).
const ETHTOOL_GGSO: u32 = 0x0000_0023;
/// `<linux/ethtool.h>`: get GRO enable (`struct ethtool_value`).
const ETHTOOL_GGRO: u32 = 0x0000_002b;

/// `<linux/ethtool.h>`'s `struct ethtool_value`: a command and its one value.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `<linux/ethtool.h>`'s `struct ethtool_drvinfo` (196 bytes): strings NUL-terminated by the
/// kernel (`strscpy`) within their 32 bytes.
#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [libc::c_char; 32],
    version: [libc::c_char; 32],
    fw_version: [libc::c_char; 32],
    bus_info: [libc::c_char; 32],
    erom_version: [libc::c_char; 32],
    reserved2: [libc::c_char; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

// SAFETY: two integers.
unsafe impl Plain for EthtoolValue {}
// SAFETY: integers and byte arrays.
unsafe impl Plain for EthtoolDrvinfo {}

/// A command of `SIOCETHTOOL` and the structure it fills in.
trait Command: Plain {
    /// Sets the structure's `cmd`.
    fn with_cmd(cmd: u32) -> Self;
}

impl Command for EthtoolValue {
    fn with_cmd(cmd: u32) -> Self {
        EthtoolValue { cmd, data: 0 }
    }
}

impl Command for EthtoolDrvinfo {
    fn with_cmd(cmd: u32) -> Self {
        let mut d = EthtoolDrvinfo::zeroed();
        d.cmd = cmd;
        d
    }
}

/// Whether GRO, GSO and TSO are on (`ethtool -k`'s `generic-receive-offload`,
/// `generic-segmentation-offload`, `tcp-segmentation-offload`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Offloads {
    pub(crate) gro: bool,
    pub(crate) gso: bool,
    pub(crate) tso: bool,
}

/// A socket to ask drivers through.
pub(crate) struct Ethtool {
    fd: OwnedFd,
}

impl Ethtool {
    /// Opens the socket (`AF_INET`, `SOCK_DGRAM`).
    ///
    /// # Errors
    ///
    /// `socket(AF_INET)` with the OS error.
    pub(crate) fn open() -> Result<Ethtool> {
        let fd = socket::socket(
            libc::AF_INET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            0,
            "socket(AF_INET)",
        )?;
        Ok(Ethtool { fd })
    }

    /// The name of the driver behind `ifname` (`veth`, `tun`, `virtio_net`, `bridge`,
    /// `mlx5_core`...), as `ethtool -i` shows it.
    ///
    /// # Errors
    ///
    /// `ioctl(SIOCETHTOOL, ETHTOOL_GDRVINFO)` with the OS error: `EOPNOTSUPP` for a device
    /// whose driver has no name to give (`lo`), `ENODEV` for no such interface (or a driver
    /// that answers nothing, like `dummy`'s), `EINVAL` for a name the kernel cannot take.
    pub(crate) fn driver(&self, ifname: &str) -> Result<String> {
        let info: EthtoolDrvinfo = self.ask(
            ifname,
            ETHTOOL_GDRVINFO,
            "ioctl(SIOCETHTOOL, ETHTOOL_GDRVINFO)",
        )?;
        Ok(c_string(&info.driver))
    }

    /// Whether GRO is on on `ifname`.
    ///
    /// # Errors
    ///
    /// `ioctl(SIOCETHTOOL, ETHTOOL_GGRO)` with the OS error.
    pub(crate) fn gro(&self, ifname: &str) -> Result<bool> {
        self.flag(ifname, ETHTOOL_GGRO, "ioctl(SIOCETHTOOL, ETHTOOL_GGRO)")
    }

    /// Whether GSO is on on `ifname`.
    ///
    /// # Errors
    ///
    /// `ioctl(SIOCETHTOOL, ETHTOOL_GGSO)` with the OS error.
    pub(crate) fn gso(&self, ifname: &str) -> Result<bool> {
        self.flag(ifname, ETHTOOL_GGSO, "ioctl(SIOCETHTOOL, ETHTOOL_GGSO)")
    }

    /// Whether TSO is on on `ifname` (for IPv4; `ethtool -k`'s `tcp-segmentation-offload`).
    ///
    /// # Errors
    ///
    /// `ioctl(SIOCETHTOOL, ETHTOOL_GTSO)` with the OS error.
    pub(crate) fn tso(&self, ifname: &str) -> Result<bool> {
        self.flag(ifname, ETHTOOL_GTSO, "ioctl(SIOCETHTOOL, ETHTOOL_GTSO)")
    }

    /// GRO, GSO and TSO of `ifname`, in three calls.
    ///
    /// # Errors
    ///
    /// The first call that failed, named.
    pub(crate) fn offloads(&self, ifname: &str) -> Result<Offloads> {
        Ok(Offloads {
            gro: self.gro(ifname)?,
            gso: self.gso(ifname)?,
            tso: self.tso(ifname)?,
        })
    }

    /// An `ethtool_value` command: whether its value is non-zero.
    fn flag(&self, ifname: &str, cmd: u32, call: &'static str) -> Result<bool> {
        let v: EthtoolValue = self.ask(ifname, cmd, call)?;
        Ok(v.data != 0)
    }

    /// `SIOCETHTOOL` with `cmd` for `ifname`: the structure the kernel filled in.
    fn ask<T: Command>(&self, ifname: &str, cmd: u32, call: &'static str) -> Result<T> {
        let mut ifr = ifreq_for(ifname, call)?;
        let mut data = T::with_cmd(cmd);
        ifr.ifr_ifru.ifru_data = (&raw mut data).cast();
        // SAFETY: SIOCETHTOOL reads the ifreq (a NUL-terminated name and the pointer) and the
        // command at `ifru_data`, then writes at most the structure of that command, which is
        // `T` (`Command` is implemented only for the structure of its commands); `ifr` and
        // `data` are live and not otherwise borrowed for the call. Whatever the kernel writes
        // is a valid `T` (`Plain`).
        let r = unsafe { libc::ioctl(self.fd.as_fd().as_raw_fd(), libc::SIOCETHTOOL, &mut ifr) };
        check(r, call)?;
        Ok(data)
    }
}

/// An `ifreq` naming `ifname`, which must fit (`IFNAMSIZ - 1` bytes) and hold no NUL: names
/// come from users and configuration files, and a cut or embedded-NUL name would address
/// another device.
fn ifreq_for(ifname: &str, call: &'static str) -> Result<libc::ifreq> {
    let mut ifr = libc::ifreq::zeroed();
    let invalid = |why: &str| SyscallError {
        call,
        source: io::Error::new(io::ErrorKind::InvalidInput, why.to_string()),
    };
    if ifname.is_empty() {
        return Err(invalid("empty interface name"));
    }
    if ifname.len() >= ifr.ifr_name.len() {
        return Err(invalid("interface name longer than 15 bytes"));
    }
    if ifname.bytes().any(|b| b == 0) {
        return Err(invalid("interface name holds a NUL byte"));
    }
    // The name is shorter than the array: the bytes after it stay NUL.
    for (d, s) in ifr.ifr_name.iter_mut().zip(ifname.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(ifr)
}

/// The string of a NUL-terminated C array, lossily; the whole array if it has no NUL.
fn c_string(a: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = a.iter().map(|&c| c as u8).collect();
    match CStr::from_bytes_until_nul(&bytes) {
        Ok(s) => s.to_string_lossy().into_owned(),
        Err(_) => String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// Test help: a private network namespace holding `lo` and a veth pair.
#[cfg(test)]
pub(crate) mod testns {
    use std::process::Command;

    /// Runs `test` on a thread of its own moved into a new network namespace (the namespace goes
    /// with the thread), after making the veth pair `ews0`/`ews1` there with `ip`; `test` is
    /// given `ews0`'s index. Returns `false` (the test skipped) without root; `CI=true` makes
    /// that a failure.
    pub(crate) fn with_veth<F: FnOnce(u32) + Send + 'static>(test: F) -> bool {
        // SAFETY: geteuid(2) takes no arguments and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("this test needs root (CI=true, refusing to skip)");
            }
            eprintln!("!!!!!!!! SKIPPED: needs root (veth in a private namespace) !!!!!!!!");
            return false;
        }
        let thread = std::thread::spawn(move || {
            // SAFETY: unshare(2) takes no pointers; CLONE_NEWNET moves only this thread,
            // spawned for the test alone, into a new network namespace.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "unshare: {}", std::io::Error::last_os_error());
            // A child forked from this thread starts in its namespace.
            let st = Command::new("ip")
                .args([
                    "link", "add", "ews0", "type", "veth", "peer", "name", "ews1",
                ])
                .status()
                .expect("running ip");
            assert!(st.success(), "ip link add: {st}");
            // SAFETY: if_nametoindex(3) reads a NUL-terminated name, which the literal is.
            let ifindex = unsafe { libc::if_nametoindex(c"ews0".as_ptr()) };
            assert_ne!(ifindex, 0, "ews0 has an index");
            test(ifindex);
        });
        if let Err(panic) = thread.join() {
            std::panic::resume_unwind(panic);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_structures_have_the_kernels_layout() {
        assert_eq!(std::mem::size_of::<EthtoolValue>(), 8);
        assert_eq!(std::mem::size_of::<EthtoolDrvinfo>(), 196);
        assert_eq!(std::mem::offset_of!(EthtoolDrvinfo, n_priv_flags), 176);
    }

    #[test]
    fn hostile_names_are_refused_before_the_call() {
        let e = Ethtool::open().unwrap();
        for name in ["", "a-name-of-16-byt", "lo\0x", &"x".repeat(1000)] {
            let err = e.driver(name).unwrap_err();
            assert_eq!(err.call, "ioctl(SIOCETHTOOL, ETHTOOL_GDRVINFO)");
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{name:?}: {err}");
            assert_eq!(e.gro(name).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        }
        // 15 bytes fit; no such device.
        let err = e.tso("a-name-of-15-by").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENODEV), "{err}");
        assert!(
            err.to_string()
                .starts_with("ioctl(SIOCETHTOOL, ETHTOOL_GTSO): ")
        );
    }

    #[test]
    fn loopback_has_offloads_and_no_driver_name() {
        let e = Ethtool::open().unwrap();
        // `lo` has no get_drvinfo, no parent device and no link kind: EOPNOTSUPP.
        match e.driver("lo") {
            Ok(d) => assert_eq!(d, "", "lo names no driver"),
            Err(err) => assert_eq!(err.raw_os_error(), Some(libc::EOPNOTSUPP), "{err}"),
        }
        // The flags are the kernel's own feature bits, there for every device.
        let o = e.offloads("lo").unwrap();
        assert!(o.gso, "lo segments in software: {o:?}");
        let e2 = e.gro("no-such-if0").unwrap_err();
        assert_eq!(e2.raw_os_error(), Some(libc::ENODEV));
    }

    #[test]
    fn root_veth_names_its_driver_and_its_offloads() {
        testns::with_veth(|_| {
            let e = Ethtool::open().unwrap();
            assert_eq!(e.driver("ews0").unwrap(), "veth");
            let o = e.offloads("ews0").unwrap();
            // A veth segments in software and has TSO on; GRO is off until asked for.
            assert!(o.gso && o.tso, "{o:?}");
            assert!(!o.gro, "{o:?}");
            let st = std::process::Command::new("ethtool")
                .args(["-K", "ews0", "gro", "on"])
                .status();
            if st.is_ok_and(|s| s.success()) {
                assert!(e.gro("ews0").unwrap());
            }
            // Other virtual drivers name themselves too (a TAP's is `tun`).
            let ip = |args: &[&str]| {
                let st = std::process::Command::new("ip").args(args).status();
                assert!(st.is_ok_and(|s| s.success()), "ip {args:?}");
            };
            ip(&["tuntap", "add", "ewst0", "mode", "tap"]);
            ip(&["link", "add", "ewsbr0", "type", "bridge"]);
            assert_eq!(e.driver("ewst0").unwrap(), "tun");
            assert_eq!(e.driver("ewsbr0").unwrap(), "bridge");
        });
    }
}
