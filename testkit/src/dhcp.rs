//! DHCP from the client's side, and the repository's `contrib/` scripts: what the test of the
//! "DHCP and NAT for browser VMs" recipe (docs/dhcp-nat.md) needs.
//!
//! * [`udhcpc`]: a real DHCP client (`busybox udhcpc`) on an interface in a namespace, which
//!   applies the lease (address, default route) as a VM's would, and returns it;
//! * [`contrib`]: the path of a script in `contrib/`, e.g. `etherws-lan-gateway`;
//! * [`nft_has_table`]: whether a namespace has an nftables table.

use super::*;

/// What a DHCP server handed out, as `udhcpc` reported it to its script.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    /// The address, `a.b.c.d`.
    pub ip: String,
    /// The prefix length (from the subnet mask).
    pub prefix: u8,
    /// The routers (option 3), first one first.
    pub routers: Vec<String>,
    /// The DNS servers (option 6).
    pub dns: Vec<String>,
    /// The server that gave the lease (option 54).
    pub server: String,
}

/// The script `udhcpc` runs on each event: on `bound`/`renew` it puts the address on the
/// interface and the default route through the first router, as a distribution's script would,
/// and writes what it got to `$LEASE_FILE` (`key=value` lines).
const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
case "$1" in
deconfig)
	ip -4 addr flush dev "$interface"
	ip link set "$interface" up
	;;
bound | renew)
	ip -4 addr flush dev "$interface"
	ip addr add "$ip/${mask:-$subnet}" dev "$interface"
	if [ -n "${router:-}" ]; then
		set -- $router
		ip route replace default via "$1" dev "$interface"
	fi
	{
		echo "ip=$ip"
		echo "mask=${mask:-}"
		echo "subnet=${subnet:-}"
		echo "router=${router:-}"
		echo "dns=${dns:-}"
		echo "serverid=${serverid:-}"
	} >"$LEASE_FILE.tmp"
	mv "$LEASE_FILE.tmp" "$LEASE_FILE"
	;;
esac
exit 0
"#;

fn prefix_of(mask: &str) -> Option<u8> {
    let addr: std::net::Ipv4Addr = mask.parse().ok()?;
    let bits = u32::from(addr);
    (bits.leading_ones() + bits.trailing_zeros() == 32).then_some(bits.leading_ones() as u8)
}

/// Runs `busybox udhcpc` on `ifname` in `ns` until it has a lease (it broadcasts a discover
/// every second, up to `tries` times, then gives up), applies it (address and default route)
/// and returns it. Panics with udhcpc's output if no lease came. The script and the lease file
/// live in `dir`.
pub fn udhcpc(ns: &Netns, ifname: &str, dir: &TempDir, tries: u32) -> Lease {
    let script = dir.write("udhcpc.sh", UDHCPC_SCRIPT);
    fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {script}: {e}"));
    let lease_file = dir.file(&format!("lease-{ifname}"));
    let _ = fs::remove_file(&lease_file);
    let tries = tries.to_string();
    let out = ns
        .command(&[
            "env",
            &format!("LEASE_FILE={lease_file}"),
            "busybox",
            "udhcpc",
            "-i",
            ifname,
            "-f",
            "-q",
            "-n",
            "-t",
            &tries,
            "-T",
            "1",
            "-s",
            &script,
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run busybox udhcpc in {}: {e}", ns.name()));
    let text = fs::read_to_string(&lease_file).unwrap_or_default();
    assert!(
        out.status.success() && !text.is_empty(),
        "udhcpc on {ifname} in {} got no lease\n{}",
        ns.name(),
        show(&out)
    );
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let words = |key: &str| {
        field(key)
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let prefix = field("mask")
        .parse()
        .ok()
        .or_else(|| prefix_of(&field("subnet")))
        .unwrap_or_else(|| panic!("udhcpc reported no subnet mask:\n{text}"));
    Lease {
        ip: field("ip"),
        prefix,
        routers: words("router"),
        dns: words("dns"),
        server: field("serverid"),
    }
}

/// The path of `contrib/NAME` in this repository.
pub fn contrib(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the testkit crate lives in the workspace")
        .join("contrib")
        .join(name);
    assert!(p.is_file(), "no {}", p.display());
    p
}

/// Whether `ns` has the nftables table `FAMILY NAME` (e.g. `inet`, `etherws-lan-lan0`).
pub fn nft_has_table(ns: &Netns, family: &str, name: &str) -> bool {
    ns.exec(&["nft", "list", "table", family, name])
        .status
        .success()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_to_prefixes() {
        assert_eq!(prefix_of("255.255.255.0"), Some(24));
        assert_eq!(prefix_of("255.255.254.0"), Some(23));
        assert_eq!(prefix_of("255.255.255.255"), Some(32));
        assert_eq!(prefix_of("255.0.255.0"), None);
        assert_eq!(prefix_of("nonsense"), None);
    }
}
