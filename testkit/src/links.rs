//! Interfaces inside a namespace: what they are (MAC, MTU, addresses, counters) and their
//! settings (MTU, offload features, bridges, VLANs).

use super::*;

/// `ethtool` commands of the legacy ioctl interface (`linux/ethtool.h`).
const ETHTOOL_STXCSUM: u32 = 0x17;
const ETHTOOL_SGRO: u32 = 0x2c;
const ETHTOOL_SSG: u32 = 0x19;
const ETHTOOL_STSO: u32 = 0x1f;
const ETHTOOL_SGSO: u32 = 0x24;
const SIOCETHTOOL: libc::Ioctl = 0x8946;

impl Netns {
    pub fn has_link(&self, ifname: &str) -> bool {
        self.ip_try(&["link", "show", "dev", ifname])
            .status
            .success()
    }

    /// Wait until the interface exists in this namespace.
    pub fn wait_link(&self, ifname: &str) {
        poll(
            &format!("{ifname} in {}", self.name()),
            Duration::from_secs(10),
            || {
                if self.has_link(ifname) {
                    Ok(())
                } else {
                    Err("not there".into())
                }
            },
        )
    }

    /// The MAC address of an interface in this namespace, lower case `aa:bb:cc:dd:ee:ff`
    /// ([`parse_mac`] makes bytes of it).
    pub fn mac(&self, ifname: &str) -> String {
        let out = self.ip(&["-o", "link", "show", "dev", ifname]);
        let mut words = out.split_whitespace();
        while let Some(w) = words.next() {
            if w == "link/ether" {
                return words.next().expect("mac after link/ether").to_lowercase();
            }
        }
        panic!(
            "no link/ether address for {ifname} in {}: {out}",
            self.name()
        );
    }

    /// The MTU of an interface in this namespace.
    pub fn mtu(&self, ifname: &str) -> u32 {
        let out = self.ip(&["-o", "link", "show", "dev", ifname]);
        let mut words = out.split_whitespace();
        while let Some(w) = words.next() {
            if w == "mtu" {
                return words
                    .next()
                    .and_then(|m| m.parse().ok())
                    .expect("mtu value");
            }
        }
        panic!("no mtu for {ifname} in {}: {out}", self.name());
    }

    /// Sets the MTU of an interface in this namespace (`ip link set IF mtu MTU`).
    pub fn set_mtu(&self, ifname: &str, mtu: u32) {
        self.ip(&["link", "set", ifname, "mtu", &mtu.to_string()]);
    }

    /// IPv4 addresses (`a.b.c.d/len`) on an interface in this namespace.
    pub fn addrs(&self, ifname: &str) -> Vec<String> {
        let out = self.ip(&["-o", "-4", "addr", "show", "dev", ifname]);
        let mut v = Vec::new();
        for line in out.lines() {
            let mut words = line.split_whitespace();
            while let Some(w) = words.next() {
                if w == "inet"
                    && let Some(a) = words.next()
                {
                    v.push(a.to_string());
                }
            }
        }
        v
    }

    /// The frames an interface in this namespace has received (`ip -s link`: rx packets).
    pub fn rx_packets(&self, ifname: &str) -> u64 {
        let out = self.ip(&["-j", "-s", "link", "show", "dev", ifname]);
        let v: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("ip -j -s link show {ifname}: {e}\n{out}"));
        v[0]["stats64"]["rx"]["packets"]
            .as_u64()
            .unwrap_or_else(|| panic!("no rx packets for {ifname} in {}: {out}", self.name()))
    }

    /// An interface's index (`ip link show`).
    pub fn ifindex(&self, ifname: &str) -> i32 {
        let out = self.ip(&["-j", "link", "show", "dev", ifname]);
        let v: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("ip -j link show {ifname}: {e}\n{out}"));
        v[0]["ifindex"]
            .as_i64()
            .and_then(|i| i32::try_from(i).ok())
            .unwrap_or_else(|| panic!("no ifindex for {ifname} in {}: {out}", self.name()))
    }

    /// Every offload that changes what crosses the wire on or off (`ethtool -K IF tx sg tso
    /// gso gro`, by ioctl): off, the interface sends and receives MTU-sized frames with complete
    /// checksums, as a physical link does (what a delay line on packet sockets needs).
    pub fn set_offloads(&self, ifname: &str, on: bool) {
        // TSO needs scatter-gather and checksums: off in that order, on in the reverse.
        let mut cmds = [
            ETHTOOL_STSO,
            ETHTOOL_SGSO,
            ETHTOOL_SGRO,
            ETHTOOL_SSG,
            ETHTOOL_STXCSUM,
        ];
        if on {
            cmds.reverse();
        }
        for cmd in cmds {
            self.ethtool_set(ifname, cmd, on);
        }
    }

    /// GRO on or off (`ethtool -K IF gro on|off`, by ioctl: no ethtool needed). A veth only
    /// takes frames redirected into its peer by native XDP when it has NAPI: GRO or an XDP
    /// program of its own (a new veth has neither).
    pub fn set_gro(&self, ifname: &str, on: bool) {
        self.ethtool_set(ifname, ETHTOOL_SGRO, on);
    }

    /// TX checksum offload on or off (`ethtool -K IF tx on|off`, by ioctl). Off, the frames the
    /// interface sends carry complete checksums: frames switched in the kernel by native XDP
    /// lose the skb's "checksum partial" state, so a local sender with TX checksum offload on
    /// would have its TCP segments dropped by the receiver (bad checksum).
    pub fn set_tx_csum(&self, ifname: &str, on: bool) {
        self.ethtool_set(ifname, ETHTOOL_STXCSUM, on);
    }

    /// One legacy `SIOCETHTOOL` "set value" command (`struct ethtool_value`).
    fn ethtool_set(&self, ifname: &str, cmd: u32, on: bool) {
        #[repr(C)]
        struct EthtoolValue {
            cmd: u32,
            data: u32,
        }
        #[repr(C)]
        struct Ifreq {
            name: [u8; 16],
            data: *mut EthtoolValue,
            _pad: [u8; 16],
        }
        assert!(ifname.len() < 16, "interface name {ifname:?} too long");
        let name = ifname.to_string();
        let what = format!("ethtool command {cmd:#x} on {ifname} in {}", self.name());
        self.enter(move || {
            let mut val = EthtoolValue {
                cmd,
                data: u32::from(on),
            };
            let mut ifr = Ifreq {
                name: [0; 16],
                data: &mut val,
                _pad: [0; 16],
            };
            ifr.name[..name.len()].copy_from_slice(name.as_bytes());
            // SAFETY: SIOCETHTOOL reads the 40-byte `ifr` (a struct ifreq: NUL-padded name,
            // pointer to `val`, padding) and the `val` it points to, both live locals of the
            // layout the kernel expects; the socket is owned at once and closed on drop.
            let (r, e) = unsafe {
                let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
                assert!(s >= 0, "socket: {}", std::io::Error::last_os_error());
                let s = OwnedFd::from_raw_fd(s);
                let r = libc::ioctl(s.as_raw_fd(), SIOCETHTOOL, &mut ifr);
                (r, std::io::Error::last_os_error())
            };
            assert_eq!(r, 0, "{what}: {e}");
        })
    }

    /// A Linux bridge `name` in this namespace with these interfaces as its ports, up.
    pub fn bridge(&self, name: &str, ports: &[&str]) {
        self.ip(&["link", "add", name, "type", "bridge"]);
        for p in ports {
            self.ip(&["link", "set", p, "master", name]);
        }
        self.ip(&["link", "set", name, "up"]);
    }

    /// An 802.1Q sub-interface `name` of `parent` with VLAN id `vid`, carrying `addr`
    /// (`a.b.c.d/len`), up; `qos`: an `egress-qos-map` (e.g. `0:5`). False when the kernel has
    /// no 802.1Q support (the caller skips that part loudly).
    pub fn add_vlan(
        &self,
        parent: &str,
        name: &str,
        vid: u16,
        addr: &str,
        qos: Option<&str>,
    ) -> bool {
        let vid_s = vid.to_string();
        let mut args = vec![
            "link", "add", "link", parent, "name", name, "type", "vlan", "id", &vid_s,
        ];
        if let Some(q) = qos {
            args.extend_from_slice(&["egress-qos-map", q]);
        }
        let out = self.ip_try(&args);
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            if err.contains("Unknown device type") || err.contains("not supported") {
                return false;
            }
            panic!("creating {name} in {}: {}", self.name(), show(&out));
        }
        self.ip(&["addr", "add", addr, "dev", name]);
        self.ip(&["link", "set", name, "up"]);
        true
    }
}
