//! Reading and changing an interface's IPv4 address, netmask and MTU (and, for TAP ports, its
//! transmit queue's length and drops).
//!
//! etherws 1.3 did this with the classic `SIOC[GS]IFADDR`, `SIOC[GS]IFNETMASK`
//! and `SIOC[GS]IFMTU` ioctls. Those only know about a single address per
//! interface and need a throwaway socket per call, so this module talks
//! rtnetlink instead, while keeping what a user of `listif`/`setif` could
//! observe:
//!
//! * the address reported is the *primary* IPv4 address, the one
//!   `SIOCGIFADDR` would have returned;
//! * setting an address without a netmask gives it the classful prefix, as
//!   `SIOCSIFADDR` does in Linux (see [`classful_prefix`]);
//! * setting a netmask alone re-prefixes the existing address, and fails if
//!   there is none, as `SIOCSIFNETMASK` does;
//! * the broadcast address follows the prefix, as both ioctls ensure.
//!
//! Everything is async because rtnetlink is: a [`Netif`] wraps a
//! [`rtnetlink::Handle`] whose connection runs as a tokio task.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use futures_util::stream::TryStreamExt;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::{Handle, LinkUnspec};

/// Longest interface name the kernel accepts (`IFNAMSIZ - 1`).
const IFNAME_MAX: usize = 15;

/// What `listif` shows for an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IfInfo {
    /// Primary IPv4 address (the first one the kernel lists), if any.
    pub(crate) address: Option<Ipv4Addr>,
    /// Its netmask (from the prefix length), if there is an address.
    pub(crate) netmask: Option<Ipv4Addr>,
    pub(crate) mtu: u32,
}

/// The other end of a veth pair, as [`Netif::veth_peer`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Peer {
    /// Its index, in its own network namespace.
    pub(crate) index: u32,
    /// Its name, if the kernel told it.
    pub(crate) name: Option<String>,
    /// Whether it is in another network namespace than the switch.
    pub(crate) elsewhere: bool,
}

/// What the offload needs to know of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hardware {
    pub(crate) index: u32,
    /// All zeroes for a device without an Ethernet address.
    pub(crate) mac: [u8; 6],
}

/// A change requested by `setif`. `None` leaves that setting alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct IfChange {
    pub(crate) address: Option<Ipv4Addr>,
    pub(crate) netmask: Option<Ipv4Addr>,
    pub(crate) mtu: Option<u32>,
}

/// Why reading or changing an interface failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NetifError {
    /// The kernel has no interface of that name (in our network namespace).
    #[error("no such interface: {0}")]
    NoSuchInterface(String),
    /// A netmask whose one bits are not contiguous; rtnetlink only speaks
    /// prefix lengths, so such a mask cannot be expressed at all.
    #[error("invalid netmask {0}: the one bits are not contiguous")]
    BadNetmask(Ipv4Addr),
    /// An address that cannot be an interface's own unicast address
    /// (unspecified, limited broadcast or multicast). `SIOCSIFADDR` rejected
    /// these too; checking up front avoids removing the old address first.
    #[error("invalid interface address {0}")]
    BadAddress(Ipv4Addr),
    /// Only a netmask was given, but the interface has no IPv4 address to
    /// apply it to (`SIOCSIFNETMASK` failed with `EADDRNOTAVAIL` here).
    #[error("{0} has no IPv4 address to apply a netmask to")]
    NoAddress(String),
    /// The kernel refused a request; `what` says which one, `source` carries
    /// the errno (or a description if the failure was not the kernel's).
    #[error("{what}: {source}")]
    Kernel { what: String, source: io::Error },
}

impl NetifError {
    fn kernel(what: String, err: rtnetlink::Error) -> Self {
        NetifError::Kernel {
            what,
            source: to_io(err),
        }
    }
}

/// Turns an rtnetlink error into an `io::Error`, so that a kernel refusal
/// reads like the errno it is ("Invalid argument (os error 22)") rather than
/// as a netlink message dump.
fn to_io(err: rtnetlink::Error) -> io::Error {
    match err {
        // `to_io` takes the absolute value of the (negative) errno.
        rtnetlink::Error::NetlinkError(msg) if msg.code.is_some() => msg.to_io(),
        other => io::Error::other(other.to_string()),
    }
}

/// The kernel's errno for a failed request, if it was the kernel that failed.
fn errno(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|c| c.get().abs()),
        _ => None,
    }
}

/// The primary IPv4 address of a link, and the message that describes it
/// (kept so that it can be handed back verbatim to delete the address).
struct Primary {
    message: AddressMessage,
    address: Ipv4Addr,
    prefix: u8,
}

/// Handle to the kernel's rtnetlink; cheap to clone. Must be created inside a
/// tokio runtime (spawns the connection task).
///
/// The netlink socket belongs to the network namespace of the thread that
/// calls [`Netif::new`], whichever thread later drives it.
#[derive(Clone)]
pub(crate) struct Netif {
    handle: Handle,
}

impl Netif {
    /// Opens an rtnetlink socket and spawns its connection task on the
    /// current tokio runtime. Fails (rather than panicking) outside one.
    pub(crate) fn new() -> io::Result<Self> {
        let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let (connection, handle, _) = rtnetlink::new_connection()?;
        runtime.spawn(connection);
        Ok(Netif { handle })
    }

    /// The kernel's index of `ifname`, which every other request needs.
    pub(crate) async fn index(&self, ifname: &str) -> Result<u32, NetifError> {
        Ok(self.link(ifname).await?.header.index)
    }

    /// Index and MAC address of `ifname`.
    pub(crate) async fn hardware(&self, ifname: &str) -> Result<Hardware, NetifError> {
        let link = self.link(ifname).await?;
        let mut hw = Hardware {
            index: link.header.index,
            mac: [0; 6],
        };
        for attr in &link.attributes {
            if let LinkAttribute::Address(a) = attr {
                if a.len() == 6 {
                    hw.mac.copy_from_slice(a);
                }
            }
        }
        Ok(hw)
    }

    /// The peer of interface `index` if it is a veth (`None` if it is not): its index
    /// (`IFLA_LINK`), and its name, asked of its own namespace when it is in another one (by
    /// the id this namespace knows it by, `IFLA_LINK_NETNSID`).
    pub(crate) async fn veth_peer(&self, index: u32) -> Result<Option<Peer>, NetifError> {
        let what = || format!("looking up interface {index}");
        let mut links = self.handle.link().get().match_index(index).execute();
        let Some(link) = links
            .try_next()
            .await
            .map_err(|e| NetifError::kernel(what(), e))?
        else {
            return Ok(None);
        };
        let veth = link.attributes.iter().any(|a| {
            matches!(a, LinkAttribute::LinkInfo(infos)
                if infos.iter().any(|i| matches!(i, LinkInfo::Kind(InfoKind::Veth))))
        });
        let peer = link.attributes.iter().find_map(|a| match a {
            LinkAttribute::Link(p) => Some(*p),
            _ => None,
        });
        let (true, Some(peer)) = (veth, peer) else {
            return Ok(None);
        };
        let nsid = link.attributes.iter().find_map(|a| match a {
            LinkAttribute::LinkNetNsId(n) => Some(*n),
            _ => None,
        });
        let mut request = self.handle.link().get().match_index(peer);
        if let Some(n) = nsid {
            request
                .message_mut()
                .attributes
                .push(LinkAttribute::IfNetnsId(n));
        }
        // Unnamed if the kernel will not say (an older one, or no right to ask there).
        let name = match request.execute().try_next().await {
            Ok(Some(m)) => m.attributes.into_iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n),
                _ => None,
            }),
            _ => None,
        };
        Ok(Some(Peer {
            index: peer,
            name,
            elsewhere: nsid.is_some(),
        }))
    }

    /// Frames interface `index` dropped on their way out, as the kernel counts them
    /// (`IFLA_STATS64`'s `tx_dropped`; 0 if it gives no statistics): for a TAP, frames for the
    /// program reading it that did not fit its queue (`txqueuelen`).
    pub(crate) async fn tx_dropped(&self, index: u32) -> Result<u64, NetifError> {
        let link = self.link_at(index).await?;
        Ok(link
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Stats64(s) => Some(s.tx_dropped),
                _ => None,
            })
            .unwrap_or(0))
    }

    /// Makes interface `index`'s transmit queue (`txqueuelen`) `len` frames long if it is
    /// shorter (a longer one is left as it is); returns the length in force.
    pub(crate) async fn raise_txqueuelen(&self, index: u32, len: u32) -> Result<u32, NetifError> {
        let link = self.link_at(index).await?;
        let now = link.attributes.iter().find_map(|a| match a {
            LinkAttribute::TxQueueLen(n) => Some(*n),
            _ => None,
        });
        if now.is_some_and(|n| n >= len) {
            return Ok(now.unwrap_or(len));
        }
        let msg = LinkUnspec::new_with_index(index).txqueuelen(len).build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| NetifError::kernel(format!("setting txqueuelen {len} on {index}"), e))?;
        Ok(len)
    }

    /// Looks interface `index` up.
    async fn link_at(&self, index: u32) -> Result<LinkMessage, NetifError> {
        let what = || format!("looking up interface {index}");
        let mut links = self.handle.link().get().match_index(index).execute();
        links
            .try_next()
            .await
            .map_err(|e| NetifError::kernel(what(), e))?
            .ok_or_else(|| NetifError::NoSuchInterface(index.to_string()))
    }

    /// Receive queues `ifname` has in use (at least 1).
    ///
    /// From sysfs (`queues/rx-N`), on the blocking pool: rtnetlink's `IFLA_NUM_RX_QUEUES` is
    /// what the device *allocated* (a veth allocates one per possible CPU), not what it uses,
    /// and AF_XDP can only bind to queues in use.
    pub(crate) async fn rx_queues(ifname: &str) -> u32 {
        let dir = format!("/sys/class/net/{ifname}/queues");
        tokio::task::spawn_blocking(move || {
            std::fs::read_dir(dir)
                .map(|d| {
                    d.filter_map(Result::ok)
                        .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                        .count() as u32
                })
                .unwrap_or(1)
        })
        .await
        .unwrap_or(1)
        .max(1)
    }

    /// Primary IPv4 address, its netmask and the MTU of `ifname`.
    pub(crate) async fn get(&self, ifname: &str) -> Result<IfInfo, NetifError> {
        let link = self.link(ifname).await?;
        let mtu = link
            .attributes
            .iter()
            .find_map(|attr| match attr {
                LinkAttribute::Mtu(mtu) => Some(*mtu),
                _ => None,
            })
            .unwrap_or(0);
        let primary = self
            .primary(link.header.index)
            .await
            .map_err(|e| NetifError::kernel(format!("listing addresses of {ifname}"), e))?;
        Ok(IfInfo {
            address: primary.as_ref().map(|p| p.address),
            netmask: primary.as_ref().map(|p| prefix_to_netmask(p.prefix)),
            mtu,
        })
    }

    /// Applies `change` to `ifname`: address/netmask first, then MTU, the
    /// order in which etherws 1.3 issued its ioctls.
    ///
    /// Arguments are validated before anything is changed, so a bad netmask
    /// or address leaves the interface untouched.
    pub(crate) async fn set(&self, ifname: &str, change: &IfChange) -> Result<(), NetifError> {
        let prefix = match change.netmask {
            Some(mask) => Some(netmask_to_prefix(mask).ok_or(NetifError::BadNetmask(mask))?),
            None => None,
        };
        let unassignable =
            |a: &Ipv4Addr| a.is_unspecified() || a.is_broadcast() || a.is_multicast();
        if let Some(addr) = change.address.filter(unassignable) {
            return Err(NetifError::BadAddress(addr));
        }

        let index = self.index(ifname).await?;

        if change.address.is_some() || prefix.is_some() {
            let primary = self
                .primary(index)
                .await
                .map_err(|e| NetifError::kernel(format!("listing addresses of {ifname}"), e))?;
            let (address, prefix) = match (change.address, prefix) {
                (Some(addr), Some(prefix)) => (addr, prefix),
                (Some(addr), None) => (addr, classful_prefix(addr)),
                (None, Some(prefix)) => match &primary {
                    Some(p) => (p.address, prefix),
                    None => return Err(NetifError::NoAddress(ifname.to_string())),
                },
                (None, None) => unreachable!(),
            };
            self.replace_primary(ifname, index, primary, address, prefix)
                .await?;
        }

        if let Some(mtu) = change.mtu {
            let msg = LinkUnspec::new_with_index(index).mtu(mtu).build();
            self.handle
                .link()
                .set(msg)
                .execute()
                .await
                .map_err(|e| NetifError::kernel(format!("setting MTU {mtu} on {ifname}"), e))?;
        }
        Ok(())
    }

    /// Sets `IFF_UP` on `ifname` (`ip link set dev IFNAME up`).
    pub(crate) async fn link_up(&self, ifname: &str) -> Result<(), NetifError> {
        let index = self.index(ifname).await?;
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| NetifError::kernel(format!("bringing up {ifname}"), e))
    }

    /// Looks `ifname` up by name, mapping "no such device" to
    /// [`NetifError::NoSuchInterface`].
    async fn link(&self, ifname: &str) -> Result<LinkMessage, NetifError> {
        // The kernel answers EINVAL rather than ENODEV for names that cannot
        // exist; both mean the same to the user.
        if ifname.is_empty() || ifname.len() > IFNAME_MAX || ifname.contains(['/', '\0']) {
            return Err(NetifError::NoSuchInterface(ifname.to_string()));
        }
        let mut links = self.handle.link().get().match_name(ifname).execute();
        match links.try_next().await {
            Ok(Some(link)) => Ok(link),
            Ok(None) => Err(NetifError::NoSuchInterface(ifname.to_string())),
            Err(e) if errno(&e) == Some(libc::ENODEV) => {
                Err(NetifError::NoSuchInterface(ifname.to_string()))
            }
            Err(e) => Err(NetifError::kernel(format!("looking up {ifname}"), e)),
        }
    }

    /// The primary IPv4 address of link `index`: the first one the kernel
    /// lists that is not flagged secondary. That is the address `SIOCGIFADDR`
    /// reports (the kernel keeps primaries ahead of secondaries).
    async fn primary(&self, index: u32) -> Result<Option<Primary>, rtnetlink::Error> {
        let mut request = self.handle.address().get().set_link_index_filter(index);
        // Have the kernel dump IPv4 addresses only; the index filter is
        // applied on our side.
        request.message_mut().header.family = AddressFamily::Inet;
        let mut addresses = request.execute();
        let mut primary = None;
        // Drain the whole dump rather than stopping at the first match, so
        // no half-read dump is left behind on the socket.
        while let Some(message) = addresses.try_next().await? {
            if primary.is_some()
                || message.header.family != AddressFamily::Inet
                || message.header.flags.contains(AddressHeaderFlags::Secondary)
            {
                continue;
            }
            if let Some(address) = local_v4(&message) {
                let prefix = message.header.prefix_len;
                primary = Some(Primary {
                    message,
                    address,
                    prefix,
                });
            }
        }
        Ok(primary)
    }

    /// Makes `address/prefix` the primary address of link `index`, replacing
    /// `old` if it differs.
    ///
    /// The old address is deleted *before* the new one is added: if they
    /// share a subnet, adding first would make the new one a secondary, and
    /// deleting the primary then takes its secondaries with it (unless
    /// `promote_secondaries` is on). This is also what `SIOCSIFADDR` and
    /// `SIOCSIFNETMASK` do internally. Should the add fail, the old address
    /// is put back on a best-effort basis.
    async fn replace_primary(
        &self,
        ifname: &str,
        index: u32,
        old: Option<Primary>,
        address: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), NetifError> {
        let what = || format!("setting address {address}/{prefix} on {ifname}");
        if let Some(old) = &old {
            if old.address == address && old.prefix == prefix {
                // Already in place; re-adding would only fail with EEXIST.
                return Ok(());
            }
            self.handle
                .address()
                .del(old.message.clone())
                .execute()
                .await
                .map_err(|e| {
                    NetifError::kernel(
                        format!(
                            "removing address {}/{} from {ifname}",
                            old.address, old.prefix
                        ),
                        e,
                    )
                })?;
        }
        // rtnetlink 0.24's builder sets IFA_LOCAL, IFA_ADDRESS and, for
        // prefixes below /31, IFA_BROADCAST (address | !mask), like the
        // ioctls. `replace` makes an identical address already present (say,
        // as a secondary) a success instead of EEXIST.
        let added = self
            .handle
            .address()
            .add(index, IpAddr::V4(address), prefix)
            .replace()
            .execute()
            .await;
        if let Err(e) = added {
            if let Some(old) = old {
                // Best effort: the error worth reporting is the first one.
                let _ = self
                    .handle
                    .address()
                    .add(index, IpAddr::V4(old.address), old.prefix)
                    .replace()
                    .execute()
                    .await;
            }
            return Err(NetifError::kernel(what(), e));
        }
        Ok(())
    }
}

/// The interface's own IPv4 address in an address message: `IFA_LOCAL`,
/// which is what `SIOCGIFADDR` returns. `IFA_ADDRESS` differs from it only
/// on point-to-point links (where it is the peer), so it is just a fallback.
fn local_v4(message: &AddressMessage) -> Option<Ipv4Addr> {
    let find = |want_local: bool| {
        message.attributes.iter().find_map(|attr| match attr {
            AddressAttribute::Local(IpAddr::V4(a)) if want_local => Some(*a),
            AddressAttribute::Address(IpAddr::V4(a)) if !want_local => Some(*a),
            _ => None,
        })
    };
    find(true).or_else(|| find(false))
}

/// Prefix length of a contiguous netmask (255.255.255.0 -> 24); None if not
/// contiguous.
///
/// rtnetlink describes an address's subnet by prefix length only, so a
/// non-contiguous mask (which the ioctls accepted, to no good end) cannot be
/// expressed and is rejected instead.
pub(crate) fn netmask_to_prefix(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    let ones = bits.leading_ones();
    // Contiguous iff nothing is left once the leading ones are shifted out.
    // `checked_shl` is None for a shift by 32, i.e. the all-ones mask.
    match bits.checked_shl(ones) {
        Some(0) | None => Some(ones as u8),
        Some(_) => None,
    }
}

/// The netmask of a prefix length (24 -> 255.255.255.0). Lengths above 32
/// are treated as 32.
pub(crate) fn prefix_to_netmask(prefix: u8) -> Ipv4Addr {
    let host_bits = 32u32.saturating_sub(u32::from(prefix));
    // A shift by 32 (prefix 0) overflows; its mask is all zeros.
    Ipv4Addr::from(u32::MAX.checked_shl(host_bits).unwrap_or(0))
}

/// The classful prefix Linux's SIOCSIFADDR gives an address set without a
/// netmask (class A /8, B /16, C /24, else /32) — etherws 1.3 compatibility.
///
/// (The kernel's `inet_abc_len` additionally gives 0.0.0.0/8 and
/// 255.255.255.255 a zero prefix and refuses class D; [`Netif::set`] rejects
/// those addresses before a prefix matters.)
pub(crate) fn classful_prefix(addr: Ipv4Addr) -> u8 {
    match addr.octets()[0] {
        0..=127 => 8,    // class A: 0xxxxxxx
        128..=191 => 16, // class B: 10xxxxxx
        192..=223 => 24, // class C: 110xxxxx
        _ => 32,         // class D (multicast) and E
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn netmask_to_prefix_contiguous() {
        assert_eq!(netmask_to_prefix(ip("0.0.0.0")), Some(0));
        assert_eq!(netmask_to_prefix(ip("128.0.0.0")), Some(1));
        assert_eq!(netmask_to_prefix(ip("255.0.0.0")), Some(8));
        assert_eq!(netmask_to_prefix(ip("255.255.0.0")), Some(16));
        assert_eq!(netmask_to_prefix(ip("255.255.255.0")), Some(24));
        assert_eq!(netmask_to_prefix(ip("255.255.255.128")), Some(25));
        assert_eq!(netmask_to_prefix(ip("255.255.255.254")), Some(31));
        assert_eq!(netmask_to_prefix(ip("255.255.255.255")), Some(32));
    }

    #[test]
    fn netmask_to_prefix_non_contiguous() {
        for mask in [
            "0.0.0.1",
            "255.0.255.0",
            "255.255.255.1",
            "254.255.255.255",
            "0.255.255.255",
            "255.255.0.255",
        ] {
            assert_eq!(netmask_to_prefix(ip(mask)), None, "{mask}");
        }
    }

    #[test]
    fn prefix_to_netmask_roundtrip() {
        assert_eq!(prefix_to_netmask(0), ip("0.0.0.0"));
        assert_eq!(prefix_to_netmask(8), ip("255.0.0.0"));
        assert_eq!(prefix_to_netmask(24), ip("255.255.255.0"));
        assert_eq!(prefix_to_netmask(31), ip("255.255.255.254"));
        assert_eq!(prefix_to_netmask(32), ip("255.255.255.255"));
        assert_eq!(prefix_to_netmask(33), ip("255.255.255.255"));
        assert_eq!(prefix_to_netmask(255), ip("255.255.255.255"));
        for prefix in 0..=32 {
            assert_eq!(netmask_to_prefix(prefix_to_netmask(prefix)), Some(prefix));
        }
    }

    #[test]
    fn classful() {
        assert_eq!(classful_prefix(ip("10.1.2.3")), 8);
        assert_eq!(classful_prefix(ip("127.0.0.1")), 8);
        assert_eq!(classful_prefix(ip("128.0.0.1")), 16);
        assert_eq!(classful_prefix(ip("172.16.0.1")), 16);
        assert_eq!(classful_prefix(ip("191.255.0.1")), 16);
        assert_eq!(classful_prefix(ip("192.0.2.1")), 24);
        assert_eq!(classful_prefix(ip("198.51.100.7")), 24);
        assert_eq!(classful_prefix(ip("203.0.113.9")), 24);
        assert_eq!(classful_prefix(ip("223.255.255.1")), 24);
        assert_eq!(classful_prefix(ip("224.0.0.1")), 32);
        assert_eq!(classful_prefix(ip("240.0.0.1")), 32);
    }

    #[test]
    fn kernel_error_display() {
        let err = NetifError::Kernel {
            what: "setting MTU 100000 on ethws0".into(),
            source: io::Error::from_raw_os_error(libc::EINVAL),
        };
        assert_eq!(
            err.to_string(),
            "setting MTU 100000 on ethws0: Invalid argument (os error 22)"
        );
    }

    // ---- Root-only tests, each in a private network namespace. ----

    use rtnetlink::LinkVeth;
    use rtnetlink::packet_route::link::LinkFlags;

    /// The interface under test: one end of a veth pair. (A dummy would do
    /// for addresses, but dummies have no MTU ceiling, and not every kernel
    /// has the dummy driver.)
    const IF: &str = "ews0";
    const PEER: &str = "ews1";

    /// Runs `test` against a fresh network namespace holding `lo` (up) and
    /// the veth pair `ews0`/`ews1` (down), so the host's interfaces are never
    /// touched.
    ///
    /// A network namespace is a per-thread property: `unshare` on a thread
    /// of our own moves only that thread, and the netlink socket created
    /// there stays in the new namespace. The namespace goes away with the
    /// thread and the socket.
    fn in_netns<F, Fut>(test: F)
    where
        F: FnOnce(Netif) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        // SAFETY: geteuid(2) takes no arguments and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("netif tests need root (CI=true, refusing to skip)");
            }
            eprintln!("!!!!!!!! SKIPPED: needs root (netif netns test) !!!!!!!!");
            return;
        }
        let thread = std::thread::spawn(move || {
            // SAFETY: unshare(2) takes no pointers; CLONE_NEWNET moves only this thread,
            // spawned for the test alone, into a new network namespace.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(
                rc,
                0,
                "unshare(CLONE_NEWNET): {}",
                io::Error::last_os_error()
            );
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            runtime.block_on(async move {
                let netif = Netif::new().expect("rtnetlink connection");
                netif
                    .handle
                    .link()
                    .add(LinkVeth::new(IF, PEER).build())
                    .execute()
                    .await
                    .expect("creating veth pair");
                netif.link_up("lo").await.expect("lo up");
                test(netif).await;
            });
        });
        if let Err(panic) = thread.join() {
            std::panic::resume_unwind(panic);
        }
    }

    /// All IPv4 addresses of `ifname` as (local, prefix, broadcast, secondary).
    async fn v4_addresses(
        netif: &Netif,
        ifname: &str,
    ) -> Vec<(Ipv4Addr, u8, Option<Ipv4Addr>, bool)> {
        let index = netif.index(ifname).await.unwrap();
        let mut dump = netif
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let mut out = Vec::new();
        while let Some(msg) = dump.try_next().await.unwrap() {
            if msg.header.family != AddressFamily::Inet {
                continue;
            }
            let brd = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Broadcast(b) => Some(*b),
                _ => None,
            });
            out.push((
                local_v4(&msg).unwrap(),
                msg.header.prefix_len,
                brd,
                msg.header.flags.contains(AddressHeaderFlags::Secondary),
            ));
        }
        out
    }

    fn addr_mask(address: &str, netmask: &str) -> IfChange {
        IfChange {
            address: Some(ip(address)),
            netmask: Some(ip(netmask)),
            mtu: None,
        }
    }

    #[test]
    fn root_get_fresh_interface() {
        in_netns(|netif| async move {
            let info = netif.get(IF).await.unwrap();
            assert_eq!(
                info,
                IfInfo {
                    address: None,
                    netmask: None,
                    mtu: 1500
                }
            );
            let lo = netif.get("lo").await.unwrap();
            assert_eq!(lo.address, Some(ip("127.0.0.1")));
            assert_eq!(lo.netmask, Some(ip("255.0.0.0")));
            assert_eq!(netif.index("lo").await.unwrap(), 1);
        });
    }

    #[test]
    fn root_set_address_and_netmask() {
        in_netns(|netif| async move {
            netif
                .set(IF, &addr_mask("192.0.2.1", "255.255.255.0"))
                .await
                .unwrap();
            let info = netif.get(IF).await.unwrap();
            assert_eq!(info.address, Some(ip("192.0.2.1")));
            assert_eq!(info.netmask, Some(ip("255.255.255.0")));
            assert_eq!(
                v4_addresses(&netif, IF).await,
                [(ip("192.0.2.1"), 24, Some(ip("192.0.2.255")), false)]
            );

            // Setting the same thing again is a no-op, not EEXIST.
            netif
                .set(IF, &addr_mask("192.0.2.1", "255.255.255.0"))
                .await
                .unwrap();
            assert_eq!(v4_addresses(&netif, IF).await.len(), 1);

            // A different address in the same subnet replaces the old one.
            netif
                .set(IF, &addr_mask("192.0.2.9", "255.255.255.128"))
                .await
                .unwrap();
            assert_eq!(
                v4_addresses(&netif, IF).await,
                [(ip("192.0.2.9"), 25, Some(ip("192.0.2.127")), false)]
            );

            // Same address, other prefix: still exactly one address.
            netif
                .set(IF, &addr_mask("192.0.2.9", "255.255.255.252"))
                .await
                .unwrap();
            assert_eq!(
                v4_addresses(&netif, IF).await,
                [(ip("192.0.2.9"), 30, Some(ip("192.0.2.11")), false)]
            );

            // /31 and /32 have no broadcast address.
            netif
                .set(IF, &addr_mask("203.0.113.4", "255.255.255.255"))
                .await
                .unwrap();
            assert_eq!(
                v4_addresses(&netif, IF).await,
                [(ip("203.0.113.4"), 32, None, false)]
            );

            // Bad arguments change nothing.
            let err = netif
                .set(IF, &addr_mask("198.51.100.1", "255.0.255.0"))
                .await
                .unwrap_err();
            assert!(
                matches!(err, NetifError::BadNetmask(m) if m == ip("255.0.255.0")),
                "{err:?}"
            );
            let err = netif
                .set(IF, &addr_mask("224.0.0.1", "255.255.255.0"))
                .await
                .unwrap_err();
            assert!(matches!(err, NetifError::BadAddress(_)), "{err:?}");
            assert_eq!(
                netif.get(IF).await.unwrap().address,
                Some(ip("203.0.113.4"))
            );
        });
    }

    #[test]
    fn root_primary_ignores_secondaries() {
        in_netns(|netif| async move {
            netif
                .set(IF, &addr_mask("192.0.2.1", "255.255.255.0"))
                .await
                .unwrap();
            let index = netif.index(IF).await.unwrap();
            netif
                .handle
                .address()
                .add(index, IpAddr::V4(ip("192.0.2.2")), 24)
                .execute()
                .await
                .unwrap();
            let info = netif.get(IF).await.unwrap();
            assert_eq!(info.address, Some(ip("192.0.2.1")));

            // Re-addressing to the secondary's address must leave it in place
            // (`replace`, not EEXIST) whatever promote_secondaries says.
            netif
                .set(IF, &addr_mask("192.0.2.2", "255.255.255.0"))
                .await
                .unwrap();
            assert_eq!(netif.get(IF).await.unwrap().address, Some(ip("192.0.2.2")));
            assert!(
                v4_addresses(&netif, IF)
                    .await
                    .iter()
                    .all(|a| a.0 != ip("192.0.2.1"))
            );
        });
    }

    #[test]
    fn root_set_address_only_is_classful() {
        in_netns(|netif| async move {
            let change = IfChange {
                address: Some(ip("198.51.100.7")),
                ..IfChange::default()
            };
            netif.set(IF, &change).await.unwrap();
            let info = netif.get(IF).await.unwrap();
            assert_eq!(info.address, Some(ip("198.51.100.7")));
            assert_eq!(info.netmask, Some(ip("255.255.255.0")));
            assert_eq!(
                v4_addresses(&netif, IF).await,
                [(ip("198.51.100.7"), 24, Some(ip("198.51.100.255")), false)]
            );
            assert_eq!(info.mtu, 1500, "MTU left alone");
        });
    }

    #[test]
    fn root_set_netmask_only() {
        in_netns(|netif| async move {
            netif
                .set(IF, &addr_mask("203.0.113.5", "255.255.255.0"))
                .await
                .unwrap();
            let change = IfChange {
                netmask: Some(ip("255.255.255.192")),
                ..IfChange::default()
            };
            netif.set(IF, &change).await.unwrap();
            let info = netif.get(IF).await.unwrap();
            assert_eq!(info.address, Some(ip("203.0.113.5")));
            assert_eq!(info.netmask, Some(ip("255.255.255.192")));
            assert_eq!(
                v4_addresses(&netif, IF).await,
                [(ip("203.0.113.5"), 26, Some(ip("203.0.113.63")), false)]
            );
        });
    }

    #[test]
    fn root_netmask_only_without_address() {
        in_netns(|netif| async move {
            let change = IfChange {
                netmask: Some(ip("255.255.255.0")),
                ..IfChange::default()
            };
            let err = netif.set(IF, &change).await.unwrap_err();
            assert!(
                matches!(&err, NetifError::NoAddress(n) if n == IF),
                "{err:?}"
            );
            assert_eq!(netif.get(IF).await.unwrap().address, None);
        });
    }

    #[test]
    fn root_mtu() {
        in_netns(|netif| async move {
            let change = IfChange {
                mtu: Some(1400),
                ..IfChange::default()
            };
            netif.set(IF, &change).await.unwrap();
            let info = netif.get(IF).await.unwrap();
            assert_eq!(info.mtu, 1400);
            assert_eq!(info.address, None, "address left alone");

            for mtu in [100_000, u32::MAX] {
                let change = IfChange {
                    mtu: Some(mtu),
                    ..IfChange::default()
                };
                let err = netif.set(IF, &change).await.unwrap_err();
                eprintln!("expected error: {err}");
                match &err {
                    NetifError::Kernel { source, .. } => {
                        assert_eq!(source.raw_os_error(), Some(libc::EINVAL))
                    }
                    _ => panic!("{err:?}"),
                }
                assert_eq!(
                    err.to_string(),
                    format!("setting MTU {mtu} on {IF}: Invalid argument (os error 22)")
                );
            }
            assert_eq!(netif.get(IF).await.unwrap().mtu, 1400);

            // Address and MTU in one go.
            let change = IfChange {
                address: Some(ip("192.0.2.77")),
                netmask: Some(ip("255.255.255.0")),
                mtu: Some(9000),
            };
            netif.set(IF, &change).await.unwrap();
            assert_eq!(
                netif.get(IF).await.unwrap(),
                IfInfo {
                    address: Some(ip("192.0.2.77")),
                    netmask: Some(ip("255.255.255.0")),
                    mtu: 9000
                }
            );
        });
    }

    #[test]
    fn root_link_up() {
        in_netns(|netif| async move {
            let is_up = |netif: Netif| async move {
                let mut links = netif.handle.link().get().match_name(IF).execute();
                let link = links.try_next().await.unwrap().unwrap();
                link.header.flags.contains(LinkFlags::Up)
            };
            assert!(!is_up(netif.clone()).await);
            netif.link_up(IF).await.unwrap();
            assert!(is_up(netif.clone()).await);
            // Idempotent.
            netif.link_up(IF).await.unwrap();
        });
    }

    #[test]
    fn root_veth_peer() {
        in_netns(|netif| async move {
            let (i, p) = (
                netif.index(IF).await.unwrap(),
                netif.index(PEER).await.unwrap(),
            );
            assert_eq!(
                netif.veth_peer(i).await.unwrap(),
                Some(Peer {
                    index: p,
                    name: Some(PEER.into()),
                    elsewhere: false
                })
            );
            let lo = netif.index("lo").await.unwrap();
            assert_eq!(netif.veth_peer(lo).await.unwrap(), None);
        });
    }

    #[test]
    fn root_tx_dropped_is_read_and_an_unknown_index_is_no_interface() {
        in_netns(|netif| async move {
            let i = netif.index(IF).await.unwrap();
            assert_eq!(netif.tx_dropped(i).await.unwrap(), 0);
            assert!(matches!(
                netif.tx_dropped(999_999).await,
                Err(NetifError::NoSuchInterface(_) | NetifError::Kernel { .. })
            ));
        });
    }

    #[test]
    fn root_txqueuelen_is_raised_never_lowered() {
        in_netns(|netif| async move {
            let i = netif.index(IF).await.unwrap();
            assert_eq!(netif.raise_txqueuelen(i, 4096).await.unwrap(), 4096);
            assert_eq!(netif.raise_txqueuelen(i, 100).await.unwrap(), 4096);
        });
    }

    #[test]
    fn root_unknown_interface() {
        in_netns(|netif| async move {
            let long = "x".repeat(40);
            for name in ["ews9", "", long.as_str(), "a/b"] {
                let is_nsi =
                    |e: &NetifError| matches!(e, NetifError::NoSuchInterface(n) if n == name);
                let err = netif.index(name).await.unwrap_err();
                assert!(is_nsi(&err), "{err:?}");
                let err = netif.get(name).await.unwrap_err();
                assert!(is_nsi(&err), "{err:?}");
                let err = netif.link_up(name).await.unwrap_err();
                assert!(is_nsi(&err), "{err:?}");
                let err = netif
                    .set(
                        name,
                        &IfChange {
                            mtu: Some(1400),
                            ..IfChange::default()
                        },
                    )
                    .await
                    .unwrap_err();
                assert!(is_nsi(&err), "{err:?}");
            }
            assert_eq!(
                NetifError::NoSuchInterface("ews9".into()).to_string(),
                "no such interface: ews9"
            );
        });
    }
}
