//! Why a netdev port cannot be offloaded: the reason the operator reads (logged, and shown by
//! `listPort` under the port that fell back to AF_PACKET).

use std::fmt;

use aya::maps::MapError;
use aya::maps::xdp::XdpMapError;
use etherws_common::object::LoadError;

use super::NO_OBJECT;
use crate::base::escape::printable;
use crate::port::netdev::NetdevError;
use crate::sys::SyscallError;
use crate::sys::netif::Peer;

/// Why [`Offload::prepare`](super::Offload::prepare) failed (the port then falls back to
/// AF_PACKET), or why an offloaded port is not a target of in-kernel forwarding.
///
/// Each message is complete, its cause included (as anyhow's `{:#}` would print it): it is
/// kept and shown as one reason, so no cause is left to [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
pub(crate) enum OffloadError {
    /// The packet socket every offloaded port has beside its AF_XDP sockets.
    #[error("{}", Chain(.0))]
    Companion(NetdevError),
    /// The interface is an offloaded port already.
    #[error("{0} is offloaded already")]
    Offloaded(String),
    /// This build has no XDP object.
    #[error("{NO_OBJECT}")]
    NoObject,
    /// The XDP object could not be loaded (the verifier refused it...).
    #[error("{}", Chain(.0))]
    Load(LoadError),
    /// Every entry of the XSKMAP is some other port's.
    #[error("no room left in the XSKMAP")]
    XskmapFull,
    /// An AF_XDP socket could not be set up.
    #[error("AF_XDP socket on queue {queue}: {error}")]
    Socket { queue: u32, error: SyscallError },
    /// Every attach mode tried was refused: each mode with the kernel's answer.
    #[error("cannot attach the XDP program ({})", .0.join("; "))]
    Attach(Vec<String>),
    /// Every way of attaching the TC program was refused: each with the kernel's answer.
    #[error("cannot attach the TC program ({})", .0.join("; "))]
    AttachTc(Vec<String>),
    /// An AF_XDP socket could not be put in the XSKMAP.
    #[error("cannot put the AF_XDP socket in the XSKMAP: {}", Chain(.0))]
    Xskmap(MapError),
    /// An offloaded port left out of the DEVMAP (its frames from other offloaded ports then
    /// go through userspace): the kernel refused the entry.
    #[error("cannot add the port to the DEVMAP: {0}")]
    Devmap(XdpMapError),
    /// An offloaded port left out of the DEVMAP: its device (`device`) drops frames
    /// redirected into it. `peer`: the other end, if it is a veth.
    #[error("{}", no_redirect(.device, .peer.as_ref()))]
    NoRedirect { device: String, peer: Option<Peer> },
}

/// Why a device does not take redirected frames, and what to do: for a veth, which peer
/// needs GRO, and where it is.
fn no_redirect(device: &str, peer: Option<&Peer>) -> String {
    const WHAT: &str = "the device does not take frames redirected by XDP";
    let device = printable(device);
    let Some(peer) = peer else {
        return format!("{WHAT} (its driver has no ndo_xdp_xmit)");
    };
    let index = peer.index;
    match (peer.name.as_deref().map(printable), peer.elsewhere) {
        (Some(name), false) => format!(
            "{WHAT}: its veth peer {name} has neither GRO nor an XDP program \
             (`ethtool -K {name} gro on` lets them in)"
        ),
        (Some(name), true) => format!(
            "{WHAT}: its veth peer {name} (ifindex {index}, in the network namespace that \
             `ip -d link show {device}` names after link-netns) has neither GRO nor an XDP \
             program (`ip netns exec NETNS ethtool -K {name} gro on` lets them in)"
        ),
        (None, elsewhere) => format!(
            "{WHAT}: its veth peer (ifindex {index}{}) has neither GRO nor an XDP program \
             (`ethtool -K PEER gro on` there lets them in)",
            if elsewhere {
                format!(
                    ", in the network namespace that `ip -d link show {device}` names after \
                     link-netns"
                )
            } else {
                String::new()
            }
        ),
    }
}

/// Why the kernel refused to attach the program in mode `mode` (`native`, `generic`): the
/// error with its causes (the kernel's errno, not just "`bpf_link_create` failed"), and what to
/// do about it where the errno says.
pub(super) fn attach_failure(mode: &str, err: &(dyn std::error::Error + 'static)) -> String {
    let mut errno = None;
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            errno = io.raw_os_error();
        } else if let Some(sys) = e.downcast_ref::<SyscallError>() {
            errno = sys.raw_os_error();
        }
        cause = e.source();
    }
    let hint = match errno {
        Some(libc::EOPNOTSUPP) if mode == "native" => Some(
            "the driver has no native XDP: use `--xdp-mode generic`, or `auto`, which falls back \
             to it",
        ),
        Some(libc::ERANGE) => Some(
            "the MTU is too large for native XDP on this device (a veth's peer must fit in a \
             page, about 3,500 bytes): lower it, or use `--xdp-mode generic`",
        ),
        Some(libc::EBUSY | libc::EEXIST) => Some(
            "another XDP program is attached to the interface: `ip -d link show` shows it, \
             `ip link set dev IF xdp off` removes it",
        ),
        Some(libc::EPERM | libc::EACCES) => {
            Some("attaching XDP needs CAP_NET_ADMIN and CAP_BPF (or CAP_SYS_ADMIN)")
        }
        Some(libc::EINVAL) => Some(
            "the driver refused the program in its present configuration (`dmesg` may say \
             why): try `--xdp-mode generic`",
        ),
        _ => None,
    };
    match hint {
        Some(hint) => format!("{mode}: {} ({hint})", Chain(err)),
        None => format!("{mode}: {}", Chain(err)),
    }
}

/// An XDP attach mode that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid XDP mode {0:?} (auto, native or generic)")]
pub(crate) struct InvalidMode(pub(crate) String);

/// For the control API, whose errors are messages.
impl From<InvalidMode> for String {
    fn from(e: InvalidMode) -> String {
        e.to_string()
    }
}

/// An error and its causes, each after a colon: what anyhow's `{:#}` prints.
struct Chain<'a>(&'a dyn std::error::Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn a_reason_reads_as_the_anyhow_chain_did() {
        let syscall = || SyscallError {
            call: "socket(AF_PACKET)",
            source: io::Error::from_raw_os_error(libc::EPERM),
        };
        let e = OffloadError::Companion(NetdevError::Open(syscall()));
        let before = format!(
            "{:#}",
            anyhow::Error::from(syscall()).context("cannot open packet socket")
        );
        assert_eq!(e.to_string(), before);
        assert!(std::error::Error::source(&e).is_none());
        let e = OffloadError::Socket {
            queue: 2,
            error: syscall(),
        };
        assert!(
            e.to_string()
                .starts_with("AF_XDP socket on queue 2: socket(AF_PACKET): ")
        );
        let e = OffloadError::Attach(vec!["native: no".into(), "generic: no".into()]);
        assert_eq!(
            e.to_string(),
            "cannot attach the XDP program (native: no; generic: no)"
        );
        // What `listPort` shows operators, word for word: the peer named, and where it is.
        let no_redirect = |peer: Option<Peer>| {
            OffloadError::NoRedirect {
                device: "s1".into(),
                peer,
            }
            .to_string()
        };
        let peer = |name: Option<&str>, elsewhere| {
            Some(Peer {
                index: 7,
                name: name.map(Into::into),
                elsewhere,
            })
        };
        assert_eq!(
            no_redirect(peer(Some("h1"), false)),
            "the device does not take frames redirected by XDP: its veth peer h1 has neither \
             GRO nor an XDP program (`ethtool -K h1 gro on` lets them in)"
        );
        assert_eq!(
            no_redirect(peer(Some("h1"), true)),
            "the device does not take frames redirected by XDP: its veth peer h1 (ifindex 7, in \
             the network namespace that `ip -d link show s1` names after link-netns) has \
             neither GRO nor an XDP program (`ip netns exec NETNS ethtool -K h1 gro on` lets \
             them in)"
        );
        assert!(no_redirect(peer(None, true)).contains("ifindex 7, in the network namespace"));
        assert!(no_redirect(peer(Some("a\u{1b}[2J"), false)).contains("a\\u{1b}[2J"));
        assert_eq!(
            no_redirect(None),
            "the device does not take frames redirected by XDP (its driver has no ndo_xdp_xmit)"
        );
        assert_eq!(OffloadError::NoObject.to_string(), NO_OBJECT);
    }

    /// A refused attach says what the kernel answered, and what to do.
    #[test]
    fn an_attach_failure_gives_the_kernels_error_and_a_way_out() {
        // As aya says it: "`bpf_link_create` failed", the errno only in its source.
        let refused = |errno| {
            aya::programs::ProgramError::SyscallError(aya::sys::SyscallError {
                call: "bpf_link_create",
                io_error: io::Error::from_raw_os_error(errno),
            })
        };
        let said = attach_failure("native", &refused(libc::ERANGE));
        assert!(
            said.starts_with("native: `bpf_link_create` failed: ")
                && said.contains("(os error 34)")
                && said.contains("the MTU is too large for native XDP"),
            "{said}"
        );
        let said = attach_failure("native", &refused(libc::EOPNOTSUPP));
        assert!(said.contains("use `--xdp-mode generic`"), "{said}");
        let said = attach_failure("generic", &refused(libc::ENOMEM));
        let kernel = io::Error::from_raw_os_error(libc::ENOMEM);
        assert_eq!(said, format!("generic: `bpf_link_create` failed: {kernel}"));
    }
}
