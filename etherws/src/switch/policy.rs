//! A port's policy: its VLAN, whom it may talk to, where copies of its frames go and how fast
//! it may send and receive — and what these rules make of a frame leaving by a port.

use crate::switch::fdb::{Learning, PortNo};

/// How a port takes part in switching beyond 1.3's `shut`: its VLAN, whom it may talk to, where
/// copies of its frames go and how fast it may send and receive. Set by `setPort`, by the
/// WebSocket path a client came in on, by the user it authenticated as, or in the
/// configuration file; all off by default (a trunk that talks to everyone, as in 1.3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Policy {
    /// Access VLAN: untagged frames in belong to it, frames out leave untagged, tagged frames in
    /// are dropped. `None`: a trunk (tags kept as they are).
    pub(crate) vlan: Option<u16>,
    /// Exchanges frames only with ports that are not isolated (private VLAN: the clients of a
    /// shared relay reach its gateway, never each other).
    pub(crate) isolated: bool,
    /// A frame that came in on a mesh port is never sent out of another one (split horizon):
    /// switches joined in a full mesh are one segment without a loop.
    pub(crate) mesh: bool,
    /// Every frame into and out of this port is copied to that port too.
    pub(crate) mirror: Option<PortNo>,
    /// Limit on the frames received from the port.
    pub(crate) rate_in: Option<Rate>,
    /// Limit on the frames sent out of the port.
    pub(crate) rate_out: Option<Rate>,
    /// Whether the port's stations are trusted (port security): `None`, unless isolated.
    pub(crate) trusted: Option<bool>,
    /// The port's own limit on its stations: `None`, [`Policy::UNTRUSTED_MAX_MACS`] on an
    /// untrusted port and none on a trusted one; `Some(0)`: none of its own.
    pub(crate) max_macs: Option<u32>,
}

impl Policy {
    /// How many stations an untrusted port may have unless told otherwise: a client VM or
    /// two, with room for a MAC change, and not a pool's worth of made-up ones.
    pub(crate) const UNTRUSTED_MAX_MACS: u32 = 4;

    /// Whether port security trusts the port: as set, or else unless it is isolated (the
    /// clients of a shared relay are strangers to each other).
    pub(crate) fn is_trusted(&self) -> bool {
        self.trusted.unwrap_or(!self.isolated)
    }

    /// The port's own limit on its stations, if any.
    pub(crate) fn own_max_macs(&self) -> Option<u32> {
        match self.max_macs {
            Some(0) => None,
            Some(n) => Some(n),
            None => (!self.is_trusted()).then_some(Self::UNTRUSTED_MAX_MACS),
        }
    }

    /// How the port learns its stations.
    pub(crate) fn learning(&self) -> Learning {
        Learning {
            untrusted: !self.is_trusted(),
            max_macs: self.own_max_macs().map(|n| n as usize),
            successor_of: None,
        }
    }

    /// True when the port's frames must all pass the switch core: the kernel's datapath
    /// (eBPF offload) knows none of these rules.
    pub(crate) fn needs_core(&self) -> bool {
        *self != Policy::default()
    }

    /// Checks the VLAN's range and, for port `port`, the mirror (`exists` says which ports
    /// do).
    ///
    /// # Errors
    ///
    /// [`PolicyError::Vlan`] for a VLAN out of 1–4094, [`PolicyError::Mirror`] for a mirror
    /// that is `port` itself or no existing port.
    pub(crate) fn check(
        &self,
        port: PortNo,
        exists: impl Fn(PortNo) -> bool,
    ) -> Result<(), PolicyError> {
        if let Some(v) = self.vlan {
            if !(1..=4094).contains(&v) {
                return Err(PolicyError::Vlan(v));
            }
        }
        if let Some(m) = self.mirror {
            if m == port || !exists(m) {
                return Err(PolicyError::Mirror(m));
            }
        }
        Ok(())
    }

    /// Whether a frame in VLAN `vid` from a port with policy `from` may leave by a port with
    /// this policy, and how: VLAN membership, isolation and split horizon.
    pub(crate) fn edit_from(&self, from: &Policy, vid: u16) -> Option<Edit> {
        if (from.isolated && self.isolated) || (from.mesh && self.mesh) {
            return None;
        }
        match (self.vlan, from.vlan) {
            (Some(v), _) if v != vid => None,
            // Into an access port: untagged (a trunk's frame loses its tag).
            (Some(_), Some(_)) => Some(Edit::AsIs),
            (Some(_), None) => Some(Edit::Untag),
            // From an access port into a trunk: tagged with the access VLAN.
            (None, Some(v)) => Some(Edit::Tag(v)),
            (None, None) => Some(Edit::AsIs),
        }
    }
}

/// Why a [`Policy`] cannot be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PolicyError {
    #[error("no such port: {0}")]
    NoPort(PortNo),
    #[error("VLAN must be 1 to 4094 (0 for a trunk), not {0}")]
    Vlan(u16),
    #[error("no such port to mirror to: {0} (another existing port)")]
    Mirror(PortNo),
}

/// What a frame needs before it leaves by one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Edit {
    AsIs,
    /// Push a VLAN tag (from an access port into a trunk).
    Tag(u16),
    /// Pop the VLAN tag (from a trunk into an access port).
    Untag,
}

/// A byte-rate limit: a token bucket refilled at `bits_per_sec`, holding `burst` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rate {
    pub(crate) bits_per_sec: u64,
    /// Bytes that may pass at once after a quiet period; at least one largest frame.
    pub(crate) burst: u64,
}

impl Rate {
    /// The smallest default burst: two of the largest super-frames, so that they pass at all.
    pub(crate) const MIN_BURST: u64 = 128 * 1024;

    /// A limit of `bits_per_sec` with `burst` bytes (0: a quarter of a second's worth, at least
    /// [`Rate::MIN_BURST`]: a policer with less makes TCP back off to about half the rate; with
    /// this, iperf3 over TCP gets within 10 % of it).
    pub(crate) fn new(bits_per_sec: u64, burst: u64) -> Rate {
        let burst = if burst == 0 {
            (bits_per_sec / 8 / 4).max(Rate::MIN_BURST)
        } else {
            burst
        };
        Rate {
            bits_per_sec,
            burst,
        }
    }

    pub(crate) fn bytes_per_sec(&self) -> f64 {
        self.bits_per_sec as f64 / 8.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(vlan: u16) -> Policy {
        Policy {
            vlan: Some(vlan),
            ..Policy::default()
        }
    }

    #[test]
    fn what_a_frame_needs_to_leave_by_a_port() {
        let trunk = Policy::default();
        // (from, to, frame's VLAN) → edit.
        let cases = [
            (trunk, trunk, 30, Some(Edit::AsIs)),
            (access(10), trunk, 10, Some(Edit::Tag(10))),
            (trunk, access(10), 10, Some(Edit::Untag)),
            (trunk, access(10), 20, None),
            (access(10), access(10), 10, Some(Edit::AsIs)),
            (access(10), access(20), 10, None),
        ];
        for (from, to, vid, edit) in cases {
            assert_eq!(to.edit_from(&from, vid), edit, "{from:?} → {to:?} in {vid}");
        }
        let isolated = Policy {
            isolated: true,
            ..trunk
        };
        let mesh = Policy {
            mesh: true,
            ..trunk
        };
        assert_eq!(isolated.edit_from(&isolated, 0), None);
        assert_eq!(mesh.edit_from(&mesh, 0), None);
        assert_eq!(mesh.edit_from(&isolated, 0), Some(Edit::AsIs));
    }

    #[test]
    fn a_policy_is_checked_before_it_is_set() {
        let exists = |p: PortNo| p <= 3;
        assert_eq!(access(4094).check(1, exists), Ok(()));
        assert_eq!(access(4095).check(1, exists), Err(PolicyError::Vlan(4095)));
        let mirror = |m| Policy {
            mirror: Some(m),
            ..Policy::default()
        };
        assert_eq!(mirror(2).check(1, exists), Ok(()));
        assert_eq!(mirror(1).check(1, exists), Err(PolicyError::Mirror(1)));
        assert_eq!(mirror(4).check(1, exists), Err(PolicyError::Mirror(4)));
    }
}
