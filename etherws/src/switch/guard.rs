//! Port security for untrusted ports: the rules that look past the Ethernet header.
//!
//! A port is untrusted when its policy says so (by default: isolated ports, such as VMs of
//! strangers). Frames from it are checked by [`Guard::check_untrusted`] against five rules:
//! it may not act as a DHCP server ([`Rule::DhcpServer`]) or a router ([`Rule::Ra`]), may ask
//! for DHCP leases only for its own MAC ([`Rule::DhcpClient`]), and may announce with ARP
//! ([`Rule::Arp`]) and neighbor discovery ([`Rule::Nd`]) only its own MAC and addresses no one
//! else holds. The two rules on source MACs ([`Rule::MacSpoof`], [`Rule::MaxMacs`]) are the
//! forwarding database's; they are named here so all seven are counted alike.
//!
//! Who holds an address is learned two ways: DHCP snooping (a DHCPACK seen from a trusted
//! port binds the address to the client's MAC and port for the lease; a DHCPRELEASE unbinds
//! it), and first come, first served: the first port whose ARP or ND uses an address claims
//! it until it goes quiet for the FDB's ageout. Trusted ports always win an address
//! ([`Guard::observe_trusted`]). The table is bounded in total and per port: an untrusted
//! port that would grow it beyond either is refused (its ARP or ND dropped), never served by
//! growing.
//!
//! Only headers are read (a GSO super-frame's header is its first segment's), every read is
//! bounds-checked by the views of [`crate::wire`], and nothing here panics on any input.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use crate::switch::fdb::PortNo;
use crate::switch::frame::Mac;
use crate::wire::arp::{self, Arp};
use crate::wire::dhcp::{self, Dhcpv4};
use crate::wire::icmpv6::{self, Nd};
use crate::wire::{self, Headers, ethernet, ip_protocol, ipv6, udp};

/// Why a frame from an untrusted port was dropped; each is counted per port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Rule {
    /// Its source MAC is live on another port (the FDB's rule).
    MacSpoof,
    /// Its source MAC is one more than the port may have (the FDB's rule).
    MaxMacs,
    /// A DHCPv4 or DHCPv6 server (or relay) message.
    DhcpServer,
    /// An ICMPv6 router advertisement or redirect.
    Ra,
    /// A DHCPv4 client message for a MAC other than the frame's source.
    DhcpClient,
    /// ARP for another MAC, or for an address someone else holds.
    Arp,
    /// Neighbor discovery for another MAC, or for an address someone else holds.
    Nd,
}

impl Rule {
    /// Every rule, in the order of `listPort`'s counters.
    pub(crate) const ALL: [Rule; 7] = [
        Rule::MacSpoof,
        Rule::MaxMacs,
        Rule::DhcpServer,
        Rule::Ra,
        Rule::DhcpClient,
        Rule::Arp,
        Rule::Nd,
    ];

    /// The rule's name in metrics (`rule="…"`) and, with `_dropped`, in `listPort`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Rule::MacSpoof => "mac_spoof",
            Rule::MaxMacs => "max_macs",
            Rule::DhcpServer => "dhcp_server",
            Rule::Ra => "ra",
            Rule::DhcpClient => "dhcp_client",
            Rule::Arp => "arp",
            Rule::Nd => "nd",
        }
    }

    /// Its place in [`Rule::ALL`] and in [`GuardCounters`].
    fn index(self) -> usize {
        self as usize
    }
}

/// Frames dropped by each rule (of one port).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct GuardCounters([u64; Rule::ALL.len()]);

impl GuardCounters {
    /// Counts one frame dropped by `rule`.
    pub(crate) fn add(&mut self, rule: Rule) {
        let n = &mut self.0[rule.index()];
        *n = n.saturating_add(1);
    }

    /// Frames dropped by `rule` so far.
    pub(crate) fn get(&self, rule: Rule) -> u64 {
        self.0[rule.index()]
    }

    /// Frames dropped by all the rules together.
    pub(crate) fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// Entries the table holds at most, all ports together.
pub(crate) const MAX_ENTRIES: usize = 65536;
/// Addresses one port may claim first-come-first-served (leases and trusted claims aside:
/// leases are bounded by the port's MACs, trusted ports are trusted).
pub(crate) const MAX_CLAIMS_PER_PORT: usize = 64;
/// The longest lease a binding is kept for, whatever the server said (option 51).
pub(crate) const MAX_LEASE: Duration = Duration::from_secs(24 * 3600);
/// The lease of a DHCPACK without a lease time.
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(3600);

/// How large the table may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GuardLimits {
    pub(crate) total: usize,
    pub(crate) per_port: usize,
}

impl Default for GuardLimits {
    fn default() -> Self {
        GuardLimits {
            total: MAX_ENTRIES,
            per_port: MAX_CLAIMS_PER_PORT,
        }
    }
}

/// Who holds an address (in a VLAN), and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Binding {
    pub(crate) mac: Mac,
    pub(crate) port: PortNo,
    /// `None`: until the port goes (only when the clock cannot count that far).
    pub(crate) expires: Option<Instant>,
    /// Claimed by a trusted port: no untrusted port may use it.
    pub(crate) trusted: bool,
    /// Leased by DHCP to `mac` on `port` (else claimed first-come-first-served).
    pub(crate) lease: bool,
}

impl Binding {
    /// Not expired by `now`: lookups ignore expired entries before any sweep.
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|e| now < e)
    }

    /// Whether it counts against its port's [`GuardLimits::per_port`].
    fn counted(&self) -> bool {
        !self.trusted && !self.lease
    }
}

/// The DHCP snooping bindings and address claims of the switch, with the rules that use them.
#[derive(Debug)]
pub(crate) struct Guard {
    /// How long a claim lives after its last use: the FDB's ageout.
    ageout: Duration,
    limits: GuardLimits,
    table: HashMap<(u16, IpAddr), Binding>,
    /// Counted entries ([`Binding::counted`]) per port.
    claims: HashMap<PortNo, usize>,
    /// Every entry's key by its port, kept in step with `table`: a port that goes (every
    /// session a reload closes, say) is forgotten without a scan of the table under the
    /// switch's lock.
    by_port: HashMap<PortNo, HashSet<(u16, IpAddr)>>,
}

impl Guard {
    /// An empty table whose claims live `ageout` (the FDB's) after their last use.
    pub(crate) fn new(ageout: Duration) -> Self {
        Self::with_limits(ageout, GuardLimits::default())
    }

    /// [`Guard::new`] with other bounds than [`MAX_ENTRIES`] and [`MAX_CLAIMS_PER_PORT`].
    pub(crate) fn with_limits(ageout: Duration, limits: GuardLimits) -> Self {
        Guard {
            ageout,
            limits,
            table: HashMap::new(),
            claims: HashMap::new(),
            by_port: HashMap::new(),
        }
    }

    /// Checks a frame from the untrusted `port` (VLAN `vid`, source MAC `src`) against the
    /// rules dhcp_server, ra, dhcp_client, arp and nd; claims the addresses its ARP and ND
    /// announce. `Err` names the rule that drops it.
    pub(crate) fn check_untrusted(
        &mut self,
        port: PortNo,
        vid: u16,
        src: Mac,
        frame: &[u8],
        now: Instant,
    ) -> Result<(), Rule> {
        let Some((ethertype, l3)) = ethernet::inner(frame) else {
            return Ok(());
        };
        match ethertype {
            arp::ETHERTYPE => {
                self.check_arp(port, vid, src, frame.get(l3..).unwrap_or_default(), now)
            }
            ethernet::ETHERTYPE_IPV4 => self.check_ipv4(port, vid, src, frame),
            ethernet::ETHERTYPE_IPV6 => self.check_ipv6(port, vid, src, frame, now),
            _ => Ok(()),
        }
    }

    /// ARP must be the sender's own, and about an address free or its port's own. A probe
    /// (sender IP 0.0.0.0) claims nothing. ARP hosts would drop (truncated, not IPv4 over
    /// 6-byte addresses) is dropped here too: an untrusted port has no use for it.
    fn check_arp(
        &mut self,
        port: PortNo,
        vid: u16,
        src: Mac,
        packet: &[u8],
        now: Instant,
    ) -> Result<(), Rule> {
        let a = Arp::parse(packet).ok_or(Rule::Arp)?;
        if a.sender_mac != src.0 {
            return Err(Rule::Arp);
        }
        // A probe (RFC 5227) claims the address it asks about, as a tentative claim would
        // (RFC 6620): no one else may then echo it back to make the prober give it up.
        let ip = if a.sender_ip.is_unspecified() {
            a.target_ip
        } else {
            a.sender_ip
        };
        self.claim(port, vid, ip.into(), src, now)
            .then_some(())
            .ok_or(Rule::Arp)
    }

    /// DHCPv4 from an untrusted port: nothing from the server port, and to it only requests
    /// for the frame's own MAC. A first fragment too short for the UDP header might hide a
    /// server's port; a later fragment has no header to judge.
    fn check_ipv4(&mut self, port: PortNo, vid: u16, src: Mac, frame: &[u8]) -> Result<(), Rule> {
        let Ok(h) = wire::walk(frame) else {
            return Ok(());
        };
        if h.l4_protocol != ip_protocol::UDP || h.is_later_fragment() {
            return Ok(());
        }
        let Some(u) = udp::datagram(frame, &h) else {
            return if h.is_fragment() {
                Err(Rule::DhcpServer)
            } else {
                Ok(())
            };
        };
        // A server's port, or a client's from any port: clients read port 68 whatever the
        // source port.
        if u.src_port == dhcp::SERVER_PORT || u.dst_port == dhcp::CLIENT_PORT {
            return Err(Rule::DhcpServer);
        }
        if u.dst_port != dhcp::SERVER_PORT {
            return Ok(());
        }
        let msg = frame.get(u.payload).unwrap_or_default();
        self.check_dhcp_client(port, vid, src, msg)
    }

    /// A message to the DHCP server port (from any port but the server's): a request for
    /// `src` itself, whole enough to tell. A RELEASE ends the client's own lease.
    fn check_dhcp_client(
        &mut self,
        port: PortNo,
        vid: u16,
        src: Mac,
        msg: &[u8],
    ) -> Result<(), Rule> {
        let d = Dhcpv4::parse(msg).ok_or(Rule::DhcpClient)?;
        if d.op != dhcp::OP_REQUEST {
            return Err(Rule::DhcpServer);
        }
        // Servers may key leases on the client identifier rather than chaddr.
        if !d.chaddr_is(src.0) || d.client_mac.is_some_and(|m| m != src.0) {
            return Err(Rule::DhcpClient);
        }
        if d.message_type == Some(dhcp::message::RELEASE) {
            self.release(port, vid, src, d.ciaddr);
        }
        Ok(())
    }

    /// IPv6 from an untrusted port: no DHCPv6 server messages, no RAs or redirects, neighbor
    /// discovery only for itself. A header chain that cannot be followed to its end is how
    /// RA guards are evaded (RFC 7113), so it is dropped as an RA.
    fn check_ipv6(
        &mut self,
        port: PortNo,
        vid: u16,
        src: Mac,
        frame: &[u8],
        now: Instant,
    ) -> Result<(), Rule> {
        let h = match wire::walk(frame) {
            Ok(h) => h,
            Err(wire::Error::Ipv6ExtTruncated | wire::Error::Ipv6ExtTooMany) => {
                return Err(Rule::Ra);
            }
            Err(_) => return Ok(()),
        };
        if h.is_later_fragment() {
            return Ok(());
        }
        match h.l4_protocol {
            ip_protocol::UDP => match udp::datagram(frame, &h) {
                Some(u) if dhcpv6_from_server(&u, frame) => Err(Rule::DhcpServer),
                None if h.is_fragment() => Err(Rule::DhcpServer),
                _ => Ok(()),
            },
            ip_protocol::ICMPV6 => self.check_icmpv6(port, vid, src, frame, &h, now),
            _ => Ok(()),
        }
    }

    /// RAs and redirects are a router's; NS and NA go to [`Guard::check_nd`].
    fn check_icmpv6(
        &mut self,
        port: PortNo,
        vid: u16,
        src: Mac,
        frame: &[u8],
        h: &Headers,
        now: Instant,
    ) -> Result<(), Rule> {
        let msg = icmpv6_message(frame, h);
        let Some(t) = icmpv6::msg_type(msg) else {
            return if h.is_fragment() {
                Err(Rule::Ra)
            } else {
                Ok(())
            };
        };
        match t {
            icmpv6::kind::ROUTER_ADVERT | icmpv6::kind::REDIRECT => Err(Rule::Ra),
            icmpv6::kind::NEIGHBOR_SOLICIT
            | icmpv6::kind::NEIGHBOR_ADVERT
            | icmpv6::kind::ROUTER_SOLICIT => self.check_nd(port, vid, src, frame, h, now),
            _ => Ok(()),
        }
    }

    /// NS and NA: whole and unfragmented (RFC 6980), every link-layer address option `src`,
    /// and the address announced (an NA's target, an NS's source) free or the port's own. An
    /// NS from the unspecified address is duplicate address detection: it claims nothing.
    fn check_nd(
        &mut self,
        port: PortNo,
        vid: u16,
        src: Mac,
        frame: &[u8],
        h: &Headers,
        now: Instant,
    ) -> Result<(), Rule> {
        if h.is_fragment() {
            return Err(Rule::Nd);
        }
        let nd = Nd::parse(icmpv6_message(frame, h)).ok_or(Rule::Nd)?;
        if nd.link_layer_addrs().any(|m| m != src.0) {
            return Err(Rule::Nd);
        }
        let Some(addr) = nd_address(&nd, frame, h) else {
            return Ok(());
        };
        self.claim(port, vid, addr, src, now)
            .then_some(())
            .ok_or(Rule::Nd)
    }

    /// Learns from a frame of the trusted `port` (VLAN `vid`): a DHCPACK binds its address to
    /// the client (`locate` tells the port its MAC is on: the FDB's lookup), a DHCPRELEASE
    /// unbinds it, and the addresses its ARP and ND announce become trusted claims, which
    /// replace whatever held them.
    pub(crate) fn observe_trusted(
        &mut self,
        port: PortNo,
        vid: u16,
        frame: &[u8],
        locate: impl Fn(u16, Mac) -> Option<PortNo>,
        now: Instant,
    ) {
        let Some((ethertype, l3)) = ethernet::inner(frame) else {
            return;
        };
        match ethertype {
            arp::ETHERTYPE => {
                if let Some(a) = Arp::parse(frame.get(l3..).unwrap_or_default()) {
                    self.claim_trusted(port, vid, a.sender_ip.into(), Mac(a.sender_mac), now);
                }
            }
            ethernet::ETHERTYPE_IPV4 => self.observe_dhcp(port, vid, frame, locate, now),
            ethernet::ETHERTYPE_IPV6 => self.observe_nd(port, vid, frame, now),
            _ => {}
        }
    }

    /// A DHCPACK from a server binds; a client's DHCPRELEASE unbinds.
    fn observe_dhcp(
        &mut self,
        port: PortNo,
        vid: u16,
        frame: &[u8],
        locate: impl Fn(u16, Mac) -> Option<PortNo>,
        now: Instant,
    ) {
        let Some(u) = wire::walk(frame)
            .ok()
            .and_then(|h| udp::datagram(frame, &h))
        else {
            return;
        };
        let Some(d) = frame.get(u.payload.clone()).and_then(Dhcpv4::parse) else {
            return;
        };
        let from_server = u.src_port == dhcp::SERVER_PORT;
        let chaddr = Mac(d.chaddr);
        match (d.op, d.message_type) {
            (dhcp::OP_REPLY, Some(dhcp::message::ACK)) if from_server => {
                if d.has_ethernet_chaddr()
                    && let Some(client) = locate(vid, chaddr)
                {
                    self.bind_lease(vid, &d, client, now);
                }
            }
            (dhcp::OP_REQUEST, Some(dhcp::message::RELEASE))
                if !from_server && u.dst_port == dhcp::SERVER_PORT =>
            {
                self.release(port, vid, chaddr, d.ciaddr);
            }
            _ => {}
        }
    }

    /// An NA's target and an NS's source address become the trusted port's.
    fn observe_nd(&mut self, port: PortNo, vid: u16, frame: &[u8], now: Instant) {
        let Ok(h) = wire::walk(frame) else { return };
        if h.l4_protocol != ip_protocol::ICMPV6 || h.is_fragment() {
            return;
        }
        let Some(nd) = Nd::parse(icmpv6_message(frame, &h)) else {
            return;
        };
        let src = frame
            .get(ethernet::field::SRC)
            .and_then(|s| s.try_into().ok());
        if let (Some(addr), Some(src)) = (nd_address(&nd, frame, &h), src) {
            self.claim_trusted(port, vid, addr, Mac(src), now);
        }
    }

    /// Binds the address a DHCPACK gives to its client on `client`, for the lease (capped);
    /// the server's word replaces any claim.
    fn bind_lease(&mut self, vid: u16, d: &Dhcpv4, client: PortNo, now: Instant) {
        let ip = IpAddr::V4(d.yiaddr);
        if !claimable(ip) {
            return;
        }
        let lease = d.lease_time.map_or(DEFAULT_LEASE, |s| {
            Duration::from_secs(s.into()).min(MAX_LEASE)
        });
        let b = Binding {
            mac: Mac(d.chaddr),
            port: client,
            expires: now.checked_add(lease),
            trusted: false,
            lease: true,
        };
        self.make_room_for_lease(client, (vid, ip));
        self.insert_if_room((vid, ip), b);
    }

    /// Room for a lease to `port` at `key`: a port holds at most [`GuardLimits::per_port`]
    /// leases (one rotating its MACs gives up its oldest lease, it does not pile them up), and
    /// a full table gives up a first-come claim of the port holding the most (a lease is the
    /// server's word, a claim only a first use).
    fn make_room_for_lease(&mut self, port: PortNo, key: (u16, IpAddr)) {
        if self.table.contains_key(&key) {
            return;
        }
        let leases: Vec<((u16, IpAddr), Option<Instant>)> = self
            .by_port
            .get(&port)
            .into_iter()
            .flatten()
            .filter_map(|k| {
                self.table
                    .get(k)
                    .filter(|b| b.lease)
                    .map(|b| (*k, b.expires))
            })
            .collect();
        if leases.len() >= self.limits.per_port {
            // The soonest to end; one that never ends (`None`) last.
            if let Some((oldest, _)) = leases.iter().min_by_key(|(_, e)| (e.is_none(), *e)) {
                self.remove(oldest);
            }
        }
        if self.table.len() >= self.limits.total {
            self.evict_a_claim();
        }
    }

    /// Forgets one first-come claim of the port holding the most.
    fn evict_a_claim(&mut self) {
        let Some((&port, _)) = self.claims.iter().max_by_key(|&(&p, &n)| (n, p)) else {
            return;
        };
        let victim = self.by_port.get(&port).and_then(|keys| {
            keys.iter()
                .copied()
                .find(|k| self.table.get(k).is_some_and(Binding::counted))
        });
        if let Some(k) = victim {
            self.remove(&k);
        }
    }

    /// Ends the lease of `ip` if `mac` on `port` holds it.
    fn release(&mut self, port: PortNo, vid: u16, mac: Mac, ip: Ipv4Addr) {
        let key = (vid, IpAddr::V4(ip));
        if self
            .table
            .get(&key)
            .is_some_and(|b| b.lease && b.mac == mac && b.port == port)
        {
            self.remove(&key);
        }
    }

    /// A trusted port uses `ip`: its claim replaces any other, and is refreshed.
    fn claim_trusted(&mut self, port: PortNo, vid: u16, ip: IpAddr, mac: Mac, now: Instant) {
        if !claimable(ip) {
            return;
        }
        // A lease stays its client's: a gateway answering ARP for its clients (proxy ARP)
        // must not take their addresses from them.
        if self
            .table
            .get(&(vid, ip))
            .is_some_and(|b| b.lease && b.live(now))
        {
            return;
        }
        let b = Binding {
            mac,
            port,
            expires: now.checked_add(self.ageout),
            trusted: true,
            lease: false,
        };
        self.insert_if_room((vid, ip), b);
    }

    /// The untrusted `port` uses `ip` as `mac`: whether it may. It may when the address is
    /// its own (a claim of the port, refreshed; a lease to `mac` on the port, kept at least an
    /// ageout past this use), or free and the table has room for the port's claim.
    fn claim(&mut self, port: PortNo, vid: u16, ip: IpAddr, mac: Mac, now: Instant) -> bool {
        if !claimable(ip) {
            return false;
        }
        let key = (vid, ip);
        let expires = now.checked_add(self.ageout);
        if let Some(b) = self.table.get_mut(&key).filter(|b| b.live(now)) {
            if b.port != port || (b.lease && b.mac != mac) {
                return false;
            }
            // A lease in use outlives its end (the 24 h cap, a client renewing unseen) by an
            // ageout from its last use, so that no one can claim it in between.
            if b.lease && b.expires.is_some_and(|e| expires.is_some_and(|x| e < x)) {
                b.expires = expires;
            }
            if !b.lease {
                (b.mac, b.expires) = (mac, expires);
            }
            return true;
        }
        // Free, or held by a claim gone stale: make it the port's, if there is room.
        self.remove(&key);
        let mine = self.claims.get(&port).copied().unwrap_or(0);
        if self.table.len() >= self.limits.total || mine >= self.limits.per_port {
            return false;
        }
        let b = Binding {
            mac,
            port,
            expires,
            trusted: false,
            lease: false,
        };
        self.insert_if_room(key, b)
    }

    /// Sets `key` to `b` if it is in the table already or the table has room.
    fn insert_if_room(&mut self, key: (u16, IpAddr), b: Binding) -> bool {
        if !self.table.contains_key(&key) && self.table.len() >= self.limits.total {
            return false;
        }
        if let Some(old) = self.table.insert(key, b) {
            uncount(&mut self.claims, &old);
            unindex(&mut self.by_port, key, old.port);
        }
        self.by_port.entry(b.port).or_default().insert(key);
        if b.counted() {
            *self.claims.entry(b.port).or_default() += 1;
        }
        true
    }

    /// Removes `key`, off its port's count.
    fn remove(&mut self, key: &(u16, IpAddr)) {
        if let Some(old) = self.table.remove(key) {
            uncount(&mut self.claims, &old);
            unindex(&mut self.by_port, *key, old.port);
        }
    }

    /// The addresses `mac` holds on port `old` (its leases and claims) go to port `new`: the
    /// same client, connected again before its old connection timed out.
    pub(crate) fn hand_over(&mut self, mac: Mac, old: PortNo, new: PortNo) {
        let keys: Vec<(u16, IpAddr)> = self
            .by_port
            .get(&old)
            .into_iter()
            .flatten()
            .copied()
            .filter(|k| self.table.get(k).is_some_and(|b| b.mac == mac))
            .collect();
        for key in keys {
            if let Some(mut b) = self.table.get(&key).copied() {
                b.port = new;
                self.remove(&key);
                self.insert_if_room(key, b);
            }
        }
    }

    /// Drops every binding and claim of a port that is gone.
    pub(crate) fn forget_port(&mut self, port: PortNo) {
        for key in self.by_port.remove(&port).unwrap_or_default() {
            self.table.remove(&key);
        }
        self.claims.remove(&port);
    }

    /// Drops the bindings and claims expired by `now`; returns how many. Lookups ignore them
    /// at once: this bounds memory, and frees room in a full table.
    pub(crate) fn expire(&mut self, now: Instant) -> usize {
        let before = self.table.len();
        let (claims, by_port) = (&mut self.claims, &mut self.by_port);
        self.table.retain(|&key, b| {
            let live = b.live(now);
            if !live {
                uncount(claims, b);
                unindex(by_port, key, b.port);
            }
            live
        });
        before - self.table.len()
    }

    /// Checks that the index by port holds exactly the table's keys, each under its port.
    #[cfg(test)]
    fn assert_index_in_step(&self) {
        let indexed: usize = self.by_port.values().map(HashSet::len).sum();
        assert_eq!(indexed, self.table.len());
        for (port, keys) in &self.by_port {
            assert!(!keys.is_empty());
            assert!(keys.iter().all(|k| self.table[k].port == *port));
        }
    }

    /// The live binding or claim of `ip` in `vid`.
    #[cfg(test)]
    pub(crate) fn binding(&self, vid: u16, ip: IpAddr, now: Instant) -> Option<Binding> {
        self.table.get(&(vid, ip)).filter(|b| b.live(now)).copied()
    }

    /// Entries held, expired ones not yet swept included.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether it holds no entry at all.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

/// Takes `key` off `port`'s index.
fn unindex(
    by_port: &mut HashMap<PortNo, HashSet<(u16, IpAddr)>>,
    key: (u16, IpAddr),
    port: PortNo,
) {
    if let Some(keys) = by_port.get_mut(&port) {
        keys.remove(&key);
        if keys.is_empty() {
            by_port.remove(&port);
        }
    }
}

/// Takes `b` off its port's count of claims.
fn uncount(claims: &mut HashMap<PortNo, usize>, b: &Binding) {
    if !b.counted() {
        return;
    }
    if let Some(n) = claims.get_mut(&b.port) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            claims.remove(&b.port);
        }
    }
}

/// Whether a host can hold `ip` as its own: unicast, not unspecified.
fn claimable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_broadcast() || a.is_multicast()),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast()),
    }
}

/// The ICMPv6 message of a frame: behind the headers, up to the IPv6 payload's end where
/// that lies within the frame.
fn icmpv6_message<'a>(frame: &'a [u8], h: &Headers) -> &'a [u8] {
    let end = frame.len().min(h.ip_end().unwrap_or(usize::MAX));
    frame.get(h.l4_offset..end).unwrap_or_default()
}

/// The address an NS or NA announces as its sender's: an NA's target, an NS's source
/// address (`None` for duplicate address detection, from the unspecified address).
/// Whether a UDP datagram is a DHCPv6 server's (or relay's) message: from the server port,
/// to the client port, or of a server's type to the server port.
fn dhcpv6_from_server(u: &udp::Datagram, frame: &[u8]) -> bool {
    /// ADVERTISE, REPLY, RECONFIGURE, RELAY-REPL (RFC 8415).
    const SERVER_TYPES: [u8; 4] = [2, 7, 10, 13];
    u.src_port == dhcp::V6_SERVER_PORT
        || u.dst_port == dhcp::V6_CLIENT_PORT
        || (u.dst_port == dhcp::V6_SERVER_PORT
            && frame
                .get(u.payload.clone())
                .and_then(<[u8]>::first)
                .is_some_and(|t| SERVER_TYPES.contains(t)))
}

/// The address an NS, NA or RS announces or asks for: an NA's target, the source of an NS or
/// RS, or the target of duplicate address detection (an NS from the unspecified address).
fn nd_address(nd: &Nd<'_>, frame: &[u8], h: &Headers) -> Option<IpAddr> {
    if nd.msg_type == icmpv6::kind::NEIGHBOR_ADVERT {
        return Some(nd.target.into());
    }
    let src = ipv6::src_addr(frame, h.l3_offset())?;
    if !src.is_unspecified() {
        return Some(src.into());
    }
    // Duplicate address detection claims the address it asks about, as a tentative claim
    // would (RFC 6620).
    (nd.msg_type == icmpv6::kind::NEIGHBOR_SOLICIT).then_some(nd.target.into())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    const P1: PortNo = 1;
    const P2: PortNo = 2;
    /// A trusted port (the uplink, with the DHCP server and the router).
    const UP: PortNo = 9;
    const A: Mac = Mac([2, 0, 0, 0, 0, 0x0a]);
    const B: Mac = Mac([2, 0, 0, 0, 0, 0x0b]);
    const R: Mac = Mac([2, 0, 0, 0, 0, 0x01]);
    const AGE: Duration = Duration::from_secs(300);
    const VID: u16 = 10;
    const IP_A: [u8; 4] = [192, 0, 2, 10];
    const IP_B: [u8; 4] = [192, 0, 2, 11];

    // --- frame builders ---

    fn eth(src: Mac, tagged: bool, ethertype: u16) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&src.0);
        if tagged {
            f.extend_from_slice(&[0x81, 0x00, 0x20, VID as u8]);
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f
    }

    pub(crate) fn arp(src: Mac, tagged: bool, sender: Mac, sender_ip: [u8; 4]) -> Vec<u8> {
        let mut f = eth(src, tagged, arp::ETHERTYPE);
        f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&sender.0);
        f.extend_from_slice(&sender_ip);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&[192, 0, 2, 1]);
        f.extend_from_slice(&[0; 18]);
        f
    }

    /// IPv4/UDP with the fragment field `flg_off`.
    fn udp4(src: Mac, tagged: bool, ports: (u16, u16), payload: &[u8], flg_off: u16) -> Vec<u8> {
        let mut f = eth(src, tagged, ethernet::ETHERTYPE_IPV4);
        let total = (20 + 8 + payload.len()) as u16;
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&flg_off.to_be_bytes());
        f.extend_from_slice(&[64, 17, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255]);
        f.extend_from_slice(&ports.0.to_be_bytes());
        f.extend_from_slice(&ports.1.to_be_bytes());
        f.extend_from_slice(&(total - 20).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        f
    }

    /// A DHCP message: `op`, `chaddr`, ciaddr, yiaddr, then the options given and END.
    fn dhcp(op: u8, chaddr: Mac, ciaddr: [u8; 4], yiaddr: [u8; 4], opts: &[u8]) -> Vec<u8> {
        let mut m = vec![0u8; dhcp::FIXED_LEN];
        m[..3].copy_from_slice(&[op, 1, 6]);
        m[12..16].copy_from_slice(&ciaddr);
        m[16..20].copy_from_slice(&yiaddr);
        m[28..34].copy_from_slice(&chaddr.0);
        m.extend_from_slice(&dhcp::MAGIC_COOKIE);
        m.extend_from_slice(opts);
        m.push(255);
        m
    }

    pub(crate) fn ack(chaddr: Mac, yiaddr: [u8; 4], opts: &[u8]) -> Vec<u8> {
        let opts = [&[53, 1, dhcp::message::ACK][..], opts].concat();
        udp4(
            R,
            false,
            (67, 68),
            &dhcp(2, chaddr, [0; 4], yiaddr, &opts),
            0,
        )
    }

    fn request(src: Mac, chaddr: Mac, kind: u8, ciaddr: [u8; 4]) -> Vec<u8> {
        let msg = dhcp(1, chaddr, ciaddr, [0; 4], &[53, 1, kind]);
        udp4(src, false, (68, 67), &msg, 0)
    }

    /// IPv6 from `ip_src`: `next` is the first next header, `rest` the extension headers and
    /// the L4 message.
    fn ipv6(src: Mac, tagged: bool, ip_src: Ipv6Addr, next: u8, rest: &[u8]) -> Vec<u8> {
        let mut f = eth(src, tagged, ethernet::ETHERTYPE_IPV6);
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&(rest.len() as u16).to_be_bytes());
        f.extend_from_slice(&[next, 255]);
        f.extend_from_slice(&ip_src.octets());
        f.extend_from_slice(&"ff02::1".parse::<Ipv6Addr>().unwrap().octets());
        f.extend_from_slice(rest);
        f
    }

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn lla(t: u8, mac: Mac) -> Vec<u8> {
        [&[t, 1][..], &mac.0].concat()
    }

    /// An NS (135) or NA (136) for `target` with the options given.
    fn nd(kind: u8, target: Ipv6Addr, opts: &[&[u8]]) -> Vec<u8> {
        let mut m = vec![kind, 0, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&target.octets());
        for o in opts {
            m.extend_from_slice(o);
        }
        m
    }

    fn na(src: Mac, tagged: bool, target: &str, ll: Mac) -> Vec<u8> {
        let msg = nd(136, v6(target), &[&lla(2, ll)]);
        ipv6(src, tagged, v6(target), ip_protocol::ICMPV6, &msg)
    }

    fn ns(src: Mac, tagged: bool, from: &str, ll: Option<Mac>) -> Vec<u8> {
        let opt = ll.map(|m| lla(1, m)).unwrap_or_default();
        let msg = nd(135, v6("2001:db8::99"), &[&opt]);
        ipv6(src, tagged, v6(from), ip_protocol::ICMPV6, &msg)
    }

    fn v4(ip: [u8; 4]) -> IpAddr {
        IpAddr::from(ip)
    }

    fn no_fdb(_: u16, _: Mac) -> Option<PortNo> {
        None
    }

    // --- names and counters ---

    #[test]
    fn rules_are_named_and_counted() {
        let names: Vec<_> = Rule::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            names,
            [
                "mac_spoof",
                "max_macs",
                "dhcp_server",
                "ra",
                "dhcp_client",
                "arp",
                "nd"
            ]
        );
        let mut c = GuardCounters::default();
        c.add(Rule::Nd);
        c.add(Rule::Nd);
        c.add(Rule::MacSpoof);
        let got: Vec<_> = Rule::ALL.iter().map(|&r| c.get(r)).collect();
        assert_eq!(got, [1, 0, 0, 0, 0, 0, 2]);
    }

    // --- dhcp_server, ra ---

    #[test]
    fn dhcp_servers_are_dropped() {
        let mut g = Guard::new(AGE);
        let now = Instant::now();
        let msg = dhcp(2, A, [0; 4], IP_A, &[53, 1, 2]);
        for tagged in [false, true] {
            for ports in [(67, 68), (67, 67)] {
                let f = udp4(A, tagged, ports, &msg, 0);
                assert_eq!(
                    g.check_untrusted(P1, VID, A, &f, now),
                    Err(Rule::DhcpServer)
                );
            }
            let udp6 = [&[2, 0x23, 2, 0x22, 0, 12, 0, 0][..], &[2, 0, 0, 0]].concat();
            let f = ipv6(A, tagged, v6("fe80::a"), ip_protocol::UDP, &udp6);
            assert_eq!(
                g.check_untrusted(P1, VID, A, &f, now),
                Err(Rule::DhcpServer)
            );
            // A DHCPv6 client is fine, and so is other UDP.
            let udp6 = [&[2, 0x22, 2, 0x23, 0, 12, 0, 0][..], &[1, 0, 0, 0]].concat();
            let f = ipv6(A, tagged, v6("fe80::a"), ip_protocol::UDP, &udp6);
            assert_eq!(g.check_untrusted(P1, VID, A, &f, now), Ok(()));
            let f = udp4(A, tagged, (5353, 5353), &[0; 20], 0);
            assert_eq!(g.check_untrusted(P1, VID, A, &f, now), Ok(()));
        }
        // A BOOTREPLY sent to the server port is a server's too.
        let f = udp4(A, false, (68, 67), &msg, 0);
        assert_eq!(
            g.check_untrusted(P1, VID, A, &f, now),
            Err(Rule::DhcpServer)
        );
        // A first fragment cut before the UDP ports could hide them; a later one has none.
        let mut first = udp4(A, false, (67, 68), &msg, 0x2000);
        first.truncate(14 + 20 + 4);
        assert_eq!(
            g.check_untrusted(P1, VID, A, &first, now),
            Err(Rule::DhcpServer)
        );
        let later = udp4(A, false, (67, 68), &msg, 0x0010);
        assert_eq!(g.check_untrusted(P1, VID, A, &later, now), Ok(()));
        assert!(g.is_empty());
    }

    #[test]
    fn router_advertisements_and_redirects_are_dropped() {
        let mut g = Guard::new(AGE);
        let now = Instant::now();
        // An RS without options, an echo request, an RA and a redirect (their types are what
        // counts).
        let icmp = |t: u8| [&[t, 0, 0, 0][..], &[0; 4]].concat();
        for tagged in [false, true] {
            for (t, want) in [
                (134, Err(Rule::Ra)),
                (137, Err(Rule::Ra)),
                (133, Ok(())),
                (128, Ok(())),
            ] {
                let f = ipv6(A, tagged, v6("fe80::a"), ip_protocol::ICMPV6, &icmp(t));
                assert_eq!(g.check_untrusted(P1, VID, A, &f, now), want, "{t}");
            }
            // Behind a hop-by-hop header, and as a first fragment.
            let rest = [&[58, 0, 0, 0, 0, 0, 0, 0][..], &icmp(134)].concat();
            let f = ipv6(A, tagged, v6("fe80::a"), ip_protocol::HOP_BY_HOP, &rest);
            assert_eq!(g.check_untrusted(P1, VID, A, &f, now), Err(Rule::Ra));
            let rest = [&[58, 0, 0, 1, 0, 0, 0, 7][..], &icmp(134)].concat();
            let f = ipv6(A, tagged, v6("fe80::a"), ip_protocol::IPV6_FRAGMENT, &rest);
            assert_eq!(g.check_untrusted(P1, VID, A, &f, now), Err(Rule::Ra));
            // A first fragment that ends before the ICMPv6 type: the RA may be hiding.
            let f = ipv6(
                A,
                tagged,
                v6("fe80::a"),
                ip_protocol::IPV6_FRAGMENT,
                &rest[..8],
            );
            assert_eq!(g.check_untrusted(P1, VID, A, &f, now), Err(Rule::Ra));
            // A later fragment has no header to judge.
            let rest = [&[58, 0, 0, 0x10, 0, 0, 0, 7][..], &icmp(134)].concat();
            let f = ipv6(A, tagged, v6("fe80::a"), ip_protocol::IPV6_FRAGMENT, &rest);
            assert_eq!(g.check_untrusted(P1, VID, A, &f, now), Ok(()));
            // A chain too long to follow, or cut inside.
            let mut rest = vec![];
            for _ in 0..9 {
                rest.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
            }
            let f = ipv6(A, tagged, v6("fe80::a"), ip_protocol::HOP_BY_HOP, &rest);
            assert_eq!(g.check_untrusted(P1, VID, A, &f, now), Err(Rule::Ra));
            let f = ipv6(
                A,
                tagged,
                v6("fe80::a"),
                ip_protocol::HOP_BY_HOP,
                &[58, 1, 0, 0],
            );
            assert_eq!(g.check_untrusted(P1, VID, A, &f, now), Err(Rule::Ra));
        }
    }

    // --- dhcp_client, DHCP snooping ---

    #[test]
    fn dhcp_clients_ask_only_for_themselves() {
        let mut g = Guard::new(AGE);
        let now = Instant::now();
        for tagged in [false, true] {
            let msg = dhcp(1, A, [0; 4], [0; 4], &[53, 1, 1]);
            let f = udp4(A, tagged, (68, 67), &msg, 0);
            assert_eq!(g.check_untrusted(P1, VID, A, &f, now), Ok(()));
            assert_eq!(
                g.check_untrusted(P1, VID, B, &f, now),
                Err(Rule::DhcpClient)
            );
            // From another source port, too; a message too short to tell is dropped.
            let f = udp4(B, tagged, (4000, 67), &msg, 0);
            assert_eq!(
                g.check_untrusted(P1, VID, B, &f, now),
                Err(Rule::DhcpClient)
            );
            let f = udp4(A, tagged, (68, 67), &msg[..200], 0);
            assert_eq!(
                g.check_untrusted(P1, VID, A, &f, now),
                Err(Rule::DhcpClient)
            );
            // A chaddr of another length.
            let mut odd = msg.clone();
            odd[2] = 16;
            let f = udp4(A, tagged, (68, 67), &odd, 0);
            assert_eq!(
                g.check_untrusted(P1, VID, A, &f, now),
                Err(Rule::DhcpClient)
            );
        }
    }

    #[test]
    fn acks_bind_releases_unbind() {
        let mut g = Guard::new(AGE);
        let now = Instant::now();
        let locate = |vid: u16, mac: Mac| (vid == VID && mac == A).then_some(P1);
        g.observe_trusted(
            UP,
            VID,
            &ack(A, IP_A, &[51, 4, 0, 0, 0x0e, 0x10]),
            locate,
            now,
        );
        let b = g.binding(VID, v4(IP_A), now).unwrap();
        assert_eq!((b.mac, b.port, b.lease, b.trusted), (A, P1, true, false));
        assert_eq!(b.expires, Some(now + Duration::from_secs(3600)));
        // The leased address is A's on P1 alone.
        assert_eq!(
            g.check_untrusted(P1, VID, A, &arp(A, false, A, IP_A), now),
            Ok(())
        );
        assert_eq!(
            g.check_untrusted(P2, VID, B, &arp(B, false, B, IP_A), now),
            Err(Rule::Arp)
        );
        assert_eq!(
            g.check_untrusted(P1, VID, B, &arp(B, false, B, IP_A), now),
            Err(Rule::Arp)
        );
        // Another VLAN is another address.
        assert_eq!(
            g.check_untrusted(P2, 11, B, &arp(B, false, B, IP_A), now),
            Ok(())
        );
        // B cannot release A's lease; A can.
        let f = request(B, B, dhcp::message::RELEASE, IP_A);
        assert_eq!(g.check_untrusted(P2, VID, B, &f, now), Ok(()));
        assert!(g.binding(VID, v4(IP_A), now).is_some());
        let f = request(A, A, dhcp::message::RELEASE, IP_A);
        assert_eq!(g.check_untrusted(P1, VID, A, &f, now), Ok(()));
        assert_eq!(g.binding(VID, v4(IP_A), now), None);
        assert_eq!(
            g.check_untrusted(P2, VID, B, &arp(B, false, B, IP_A), now),
            Ok(())
        );
    }

    #[test]
    fn leases_are_capped_defaulted_and_need_a_located_client() {
        let mut g = Guard::new(AGE);
        let now = Instant::now();
        let locate = |_: u16, _: Mac| Some(P1);
        g.observe_trusted(
            UP,
            VID,
            &ack(A, IP_A, &[51, 4, 255, 255, 255, 255]),
            locate,
            now,
        );
        assert_eq!(
            g.binding(VID, v4(IP_A), now).unwrap().expires,
            Some(now + MAX_LEASE)
        );
        g.observe_trusted(UP, VID, &ack(A, IP_B, &[]), locate, now);
        let b = g.binding(VID, v4(IP_B), now).unwrap();
        assert_eq!(b.expires, Some(now + DEFAULT_LEASE));
        // A lease ends on its own: then the address is free.
        let later = now + DEFAULT_LEASE;
        assert_eq!(g.binding(VID, v4(IP_B), later), None);
        assert_eq!(
            g.check_untrusted(P2, VID, B, &arp(B, false, B, IP_B), later),
            Ok(())
        );
        // An ACK for a client the FDB does not know, an OFFER, an ACK from a client port,
        // and an ACK of yiaddr 0 (to an INFORM) bind nothing.
        let mut g = Guard::new(AGE);
        g.observe_trusted(UP, VID, &ack(A, IP_A, &[]), no_fdb, now);
        let offer = udp4(
            R,
            false,
            (67, 68),
            &dhcp(2, A, [0; 4], IP_A, &[53, 1, 2]),
            0,
        );
        g.observe_trusted(UP, VID, &offer, locate, now);
        let mut fake = ack(A, IP_A, &[]);
        fake[14 + 20..14 + 22].copy_from_slice(&68u16.to_be_bytes());
        g.observe_trusted(UP, VID, &fake, locate, now);
        g.observe_trusted(UP, VID, &ack(A, [0; 4], &[]), locate, now);
        assert!(g.is_empty());
    }

    #[test]
    fn an_ack_replaces_a_claim_and_a_trusted_client_releases() {
        let mut g = Guard::new(AGE);
        let now = Instant::now();
        assert_eq!(
            g.check_untrusted(P2, VID, B, &arp(B, false, B, IP_A), now),
            Ok(())
        );
        g.observe_trusted(UP, VID, &ack(A, IP_A, &[]), |_, _| Some(P1), now);
        assert_eq!(
            g.check_untrusted(P2, VID, B, &arp(B, false, B, IP_A), now),
            Err(Rule::Arp)
        );
        // A client on a trusted port releases its lease through observe_trusted.
        g.observe_trusted(UP, VID, &ack(R, IP_B, &[]), |_, _| Some(UP), now);
        assert!(g.binding(VID, v4(IP_B), now).is_some());
        g.observe_trusted(
            UP,
            VID,
            &request(R, R, dhcp::message::RELEASE, IP_B),
            no_fdb,
            now,
        );
        assert_eq!(g.binding(VID, v4(IP_B), now), None);
    }

    // --- arp ---

    #[test]
    fn arp_is_first_come_first_served() {
        let mut g = Guard::new(AGE);
        let now = Instant::now();
        for tagged in [false, true] {
            // Another sender MAC; a probe (claims what it asks about: no one else may probe
            // for it, or echo it back); malformed ARP.
            let f = arp(A, tagged, B, IP_A);
            assert_eq!(g.check_untrusted(P1, VID, A, &f, now), Err(Rule::Arp));
            let f = arp(A, tagged, A, [0; 4]);
            assert_eq!(g.check_untrusted(P1, VID, A, &f, now), Ok(()));
            assert_eq!(g.binding(VID, v4([192, 0, 2, 1]), now).unwrap().port, P1);
            let f = arp(B, tagged, B, [0; 4]);
            assert_eq!(g.check_untrusted(P2, VID, B, &f, now), Err(Rule::Arp));
            g.forget_port(P1);
            assert!(g.is_empty());
            let mut f = arp(A, tagged, A, IP_A);
            let plen = f.len() - 28 - 18 + 5;
            f[plen] = 16;
            assert_eq!(g.check_untrusted(P1, VID, A, &f, now), Err(Rule::Arp));
            // Multicast and broadcast are nobody's.
            let f = arp(A, tagged, A, [255; 4]);
            assert_eq!(g.check_untrusted(P1, VID, A, &f, now), Err(Rule::Arp));
        }
        let f = arp(A, false, A, IP_A);
        assert_eq!(g.check_untrusted(P1, VID, A, &f, now), Ok(()));
        let b = g.binding(VID, v4(IP_A), now).unwrap();
        assert_eq!((b.mac, b.port, b.lease, b.trusted), (A, P1, false, false));
        // Another port may not take it; the claim is refreshed by use.
        let f = arp(B, true, B, IP_A);
        assert_eq!(g.check_untrusted(P2, VID, B, &f, now), Err(Rule::Arp));
        let t1 = now + AGE / 2;
        assert_eq!(
            g.check_untrusted(P1, VID, A, &arp(A, false, A, IP_A), t1),
            Ok(())
        );
        assert_eq!(g.check_untrusted(P2, VID, B, &f, now + AGE), Err(Rule::Arp));
        // Once it has gone quiet for the ageout, it is free again.
        assert_eq!(g.check_untrusted(P2, VID, B, &f, t1 + AGE), Ok(()));
        assert_eq!(g.binding(VID, v4(IP_A), t1 + AGE).unwrap().port, P2);
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn trusted_ports_win_an_address() {
        let mut g = Guard::new(AGE);
        let now = Instant::now();
        assert_eq!(
            g.check_untrusted(P1, VID, A, &arp(A, false, A, IP_A), now),
            Ok(())
        );
        g.observe_trusted(UP, VID, &arp(R, true, R, IP_A), no_fdb, now);
        let b = g.binding(VID, v4(IP_A), now).unwrap();
        assert_eq!((b.mac, b.port, b.trusted), (R, UP, true));
        assert_eq!(
            g.check_untrusted(P1, VID, A, &arp(A, false, A, IP_A), now),
            Err(Rule::Arp)
        );
        // A trusted NA and NS claim too.
        g.observe_trusted(UP, VID, &na(R, false, "2001:db8::1", R), no_fdb, now);
        g.observe_trusted(UP, VID, &ns(R, true, "fe80::1", Some(R)), no_fdb, now);
        for addr in ["2001:db8::1", "fe80::1"] {
            let f = na(A, false, addr, A);
            assert_eq!(
                g.check_untrusted(P1, VID, A, &f, now),
                Err(Rule::Nd),
                "{addr}"
            );
        }
        assert_eq!(g.len(), 3);
        g.forget_port(UP);
        assert!(g.is_empty());
        assert_eq!(
            g.check_untrusted(P1, VID, A, &arp(A, false, A, IP_A), now),
            Ok(())
        );
    }

    // --- what a review found ---

    #[test]
    fn dhcp_server_messages_are_dropped_from_any_port() {
        let mut g = Guard::new(AGE);
        let now = Instant::now();
        let offer = dhcp(2, B, [0; 4], IP_B, &[53, 1, dhcp::message::OFFER]);
        let from_other_port = udp4(A, false, (6767, 68), &offer, 0);
        assert_eq!(
            g.check_untrusted(P1, VID, A, &from_other_port, now),
            Err(Rule::DhcpServer)
        );
        // DHCPv6: to the client port from anywhere, or a server's message to the server port.
        let udp6 = |ports: (u16, u16), msg_type: u8| {
            let mut u = Vec::new();
            u.extend_from_slice(&ports.0.to_be_bytes());
            u.extend_from_slice(&ports.1.to_be_bytes());
            u.extend_from_slice(&12u16.to_be_bytes());
            u.extend_from_slice(&[0, 0, msg_type, 0, 0, 1]);
            ipv6(A, false, v6("fe80::a"), ip_protocol::UDP, &u)
        };
        for (ports, t) in [((5000, 546), 7), ((546, 547), 2), ((546, 547), 13)] {
            assert_eq!(
                g.check_untrusted(P1, VID, A, &udp6(ports, t), now),
                Err(Rule::DhcpServer),
                "{ports:?} type {t}"
            );
        }
        // A client's SOLICIT passes.
        assert_eq!(
            g.check_untrusted(P1, VID, A, &udp6((546, 547), 1), now),
            Ok(())
        );
    }

    #[test]
    fn a_client_identifier_must_name_the_client_too() {
        let mut g = Guard::new(AGE);
        let now = Instant::now();
        let with_id = |id: Mac| {
            let opts = [&[53, 1, dhcp::message::REQUEST, 61, 7, 1][..], &id.0].concat();
            udp4(A, false, (68, 67), &dhcp(1, A, [0; 4], [0; 4], &opts), 0)
        };
        assert_eq!(g.check_untrusted(P1, VID, A, &with_id(A), now), Ok(()));
        assert_eq!(
            g.check_untrusted(P1, VID, A, &with_id(B), now),
            Err(Rule::DhcpClient)
        );
    }

    #[test]
    fn router_solicitations_are_neighbor_discovery_too() {
        let mut g = Guard::new(AGE);
        let now = Instant::now();
        let rs = |src: Mac, from: &str, ll: Mac| {
            let msg = [&[133, 0, 0, 0, 0, 0, 0, 0][..], &lla(1, ll)].concat();
            ipv6(src, false, v6(from), ip_protocol::ICMPV6, &msg)
        };
        assert_eq!(
            g.check_untrusted(P2, VID, B, &na(B, false, "2001:db8::b", B), now),
            Ok(())
        );
        // B's address from A, or A's solicitation naming another MAC.
        assert_eq!(
            g.check_untrusted(P1, VID, A, &rs(A, "2001:db8::b", A), now),
            Err(Rule::Nd)
        );
        assert_eq!(
            g.check_untrusted(P1, VID, A, &rs(A, "2001:db8::a", B), now),
            Err(Rule::Nd)
        );
        assert_eq!(
            g.check_untrusted(P1, VID, A, &rs(A, "2001:db8::a", A), now),
            Ok(())
        );
    }

    #[test]
    fn a_trusted_port_answering_for_a_client_leaves_its_lease() {
        let mut g = Guard::new(AGE);
        let now = Instant::now();
        let at_p1 = |_: u16, m: Mac| (m == A).then_some(P1);
        g.observe_trusted(UP, VID, &ack(A, IP_A, &[]), at_p1, now);
        // The gateway answers ARP for A's address (proxy ARP): A keeps it.
        g.observe_trusted(UP, VID, &arp(R, false, R, IP_A), no_fdb, now);
        assert_eq!(g.binding(VID, v4(IP_A), now).unwrap().port, P1);
        assert_eq!(
            g.check_untrusted(P1, VID, A, &arp(A, false, A, IP_A), now),
            Ok(())
        );
    }

    // --- nd ---

    #[test]
    fn nd_announces_only_its_own() {
        let mut g = Guard::new(AGE);
        let now = Instant::now();
        for tagged in [false, true] {
            // Duplicate address detection claims the address it asks about.
            let f = ns(A, tagged, "::", None);
            assert_eq!(g.check_untrusted(P1, VID, A, &f, now), Ok(()));
            let tentative = IpAddr::V6(v6("2001:db8::99"));
            assert_eq!(g.binding(VID, tentative, now).unwrap().port, P1);
            let f = ns(B, tagged, "::", None);
            assert_eq!(g.check_untrusted(P2, VID, B, &f, now), Err(Rule::Nd));
            g.forget_port(P1);
            assert!(g.is_empty());
            // A link-layer address other than the source.
            let f = ns(A, tagged, "fe80::a", Some(B));
            assert_eq!(g.check_untrusted(P1, VID, A, &f, now), Err(Rule::Nd));
            let f = na(A, tagged, "2001:db8::a", B);
            assert_eq!(g.check_untrusted(P1, VID, A, &f, now), Err(Rule::Nd));
            // A multicast target, a malformed option, a fragment.
            let f = na(A, tagged, "ff02::1", A);
            assert_eq!(g.check_untrusted(P1, VID, A, &f, now), Err(Rule::Nd));
            let msg = nd(136, v6("2001:db8::a"), &[&[2, 0, 0, 0, 0, 0, 0, 0]]);
            let f = ipv6(A, tagged, v6("2001:db8::a"), ip_protocol::ICMPV6, &msg);
            assert_eq!(g.check_untrusted(P1, VID, A, &f, now), Err(Rule::Nd));
            let rest = [&[58, 0, 0, 1, 0, 0, 0, 7][..], &nd(135, v6("::1"), &[])].concat();
            let f = ipv6(A, tagged, v6("fe80::a"), ip_protocol::IPV6_FRAGMENT, &rest);
            assert_eq!(g.check_untrusted(P1, VID, A, &f, now), Err(Rule::Nd));
        }
        assert!(g.is_empty());
        // The NS source and the NA target are claimed.
        let f = ns(A, false, "fe80::a", Some(A));
        assert_eq!(g.check_untrusted(P1, VID, A, &f, now), Ok(()));
        let f = na(A, true, "2001:db8::a", A);
        assert_eq!(g.check_untrusted(P1, VID, A, &f, now), Ok(()));
        assert_eq!(g.len(), 2);
        let f = ns(B, false, "fe80::a", Some(B));
        assert_eq!(g.check_untrusted(P2, VID, B, &f, now), Err(Rule::Nd));
        let f = na(B, false, "2001:db8::a", B);
        assert_eq!(g.check_untrusted(P2, VID, B, &f, now), Err(Rule::Nd));
        // Without a link-layer option, and from the owner again.
        let msg = nd(136, v6("2001:db8::a"), &[]);
        let f = ipv6(A, false, v6("2001:db8::a"), ip_protocol::ICMPV6, &msg);
        assert_eq!(g.check_untrusted(P1, VID, A, &f, now), Ok(()));
        assert_eq!(g.check_untrusted(P2, VID, B, &f, now), Err(Rule::Nd));
        g.forget_port(P1);
        assert!(g.is_empty());
    }

    // --- bounds ---

    #[test]
    fn claims_are_bounded_per_port_and_in_total() {
        let limits = GuardLimits {
            total: 5,
            per_port: 3,
        };
        let mut g = Guard::with_limits(AGE, limits);
        let now = Instant::now();
        let ip = |n: u8| [192, 0, 2, n];
        for n in 1..=3 {
            assert_eq!(
                g.check_untrusted(P1, VID, A, &arp(A, false, A, ip(n)), now),
                Ok(())
            );
        }
        // A fourth is refused, never grown into; the port's own stay usable.
        let f = arp(A, false, A, ip(4));
        assert_eq!(g.check_untrusted(P1, VID, A, &f, now), Err(Rule::Arp));
        let f = na(A, false, "2001:db8::4", A);
        assert_eq!(g.check_untrusted(P1, VID, A, &f, now), Err(Rule::Nd));
        assert_eq!(
            g.check_untrusted(P1, VID, A, &arp(A, false, A, ip(2)), now),
            Ok(())
        );
        assert_eq!(g.len(), 3);
        // The total: P2 gets two, then the table is full for everyone, trusted ports too.
        for n in 5..=6 {
            assert_eq!(
                g.check_untrusted(P2, VID, B, &arp(B, false, B, ip(n)), now),
                Ok(())
            );
        }
        let f = arp(B, false, B, ip(7));
        assert_eq!(g.check_untrusted(P2, VID, B, &f, now), Err(Rule::Arp));
        g.observe_trusted(UP, VID, &arp(R, false, R, ip(8)), no_fdb, now);
        assert_eq!(g.len(), 5, "a trusted claim finds no room");
        // A lease does: it takes the place of a claim of the port holding the most (P1).
        g.observe_trusted(UP, VID, &ack(R, ip(9), &[]), |_, _| Some(UP), now);
        assert_eq!(g.len(), 5);
        assert_eq!(g.binding(VID, v4(ip(9)), now).unwrap().port, UP);
        assert_eq!(g.claims.get(&P1), Some(&2));
        // ...and a trusted port still takes over an address already in it.
        g.observe_trusted(UP, VID, &arp(R, false, R, ip(5)), no_fdb, now);
        assert_eq!(g.binding(VID, v4(ip(5)), now).unwrap().port, UP);
        assert_eq!(g.len(), 5);
        // P2 lost a claim to UP, so it may make one more.
        assert_eq!(g.claims.get(&P2), Some(&1));
        // Expiry frees the room; the lease lives on.
        assert_eq!(g.expire(now + AGE), 4);
        assert_eq!(g.len(), 1);
        assert!(g.claims.is_empty());
        g.assert_index_in_step();
        assert_eq!(
            g.check_untrusted(P1, VID, A, &arp(A, false, A, ip(4)), now + AGE),
            Ok(())
        );
    }

    #[test]
    fn a_port_rotating_its_macs_keeps_only_so_many_leases() {
        let mut g = Guard::with_limits(
            AGE,
            GuardLimits {
                total: 100,
                per_port: 3,
            },
        );
        let now = Instant::now();
        for n in 0..10u8 {
            let mac = Mac([2, 0, 0, 0, 1, n]);
            let at = now + Duration::from_secs(u64::from(n));
            g.observe_trusted(
                UP,
                VID,
                &ack(mac, [192, 0, 2, 100 + n], &[]),
                |_, _| Some(P1),
                at,
            );
        }
        assert_eq!(g.len(), 3);
        // The newest three.
        for n in 7..10u8 {
            assert!(
                g.binding(VID, v4([192, 0, 2, 100 + n]), now).is_some(),
                "{n}"
            );
        }
        g.assert_index_in_step();
    }

    #[test]
    fn a_lease_in_use_outlives_its_cap() {
        let mut g = Guard::new(AGE);
        let now = Instant::now();
        let at_p1 = |_: u16, m: Mac| (m == A).then_some(P1);
        g.observe_trusted(UP, VID, &ack(A, IP_A, &[]), at_p1, now);
        // Used shortly before it ends: it lives on an ageout from then.
        let late = now + DEFAULT_LEASE - Duration::from_secs(1);
        assert_eq!(
            g.check_untrusted(P1, VID, A, &arp(A, false, A, IP_A), late),
            Ok(())
        );
        let after = now + DEFAULT_LEASE + Duration::from_secs(10);
        assert_eq!(
            g.check_untrusted(P2, VID, B, &arp(B, false, B, IP_A), after),
            Err(Rule::Arp)
        );
        assert!(g.binding(VID, v4(IP_A), after).unwrap().lease);
    }

    #[test]
    fn forget_port_and_expire_keep_the_counts() {
        let mut g = Guard::with_limits(
            AGE,
            GuardLimits {
                total: 100,
                per_port: 2,
            },
        );
        let now = Instant::now();
        for n in [1, 2] {
            let f = arp(A, false, A, [192, 0, 2, n]);
            assert_eq!(g.check_untrusted(P1, VID, A, &f, now), Ok(()));
        }
        g.forget_port(P1);
        for n in [3, 4] {
            let f = arp(A, false, A, [192, 0, 2, n]);
            assert_eq!(g.check_untrusted(P1, VID, A, &f, now), Ok(()));
        }
        // A stale claim of the same address is replaced without counting twice.
        let f = arp(A, false, A, [192, 0, 2, 3]);
        assert_eq!(g.check_untrusted(P1, VID, A, &f, now + AGE), Ok(()));
        assert_eq!(g.claims.get(&P1), Some(&2));
        assert_eq!(g.expire(now + AGE), 1);
        assert_eq!(g.claims.get(&P1), Some(&1));
        g.assert_index_in_step();
    }

    // --- hostile input ---

    /// Every valid frame the tests build, tagged and untagged.
    fn samples() -> Vec<Vec<u8>> {
        let mut out = vec![];
        for tagged in [false, true] {
            let msg = dhcp(1, A, [0; 4], [0; 4], &[53, 1, 1, 51, 4, 0, 0, 1, 0]);
            out.push(udp4(A, tagged, (68, 67), &msg, 0));
            out.push(udp4(A, tagged, (67, 68), &msg, 0));
            out.push(arp(A, tagged, A, IP_A));
            out.push(na(A, tagged, "2001:db8::a", A));
            out.push(ns(A, tagged, "fe80::a", Some(A)));
            let rest = [&[58, 0, 0, 0, 0, 0, 0, 0][..], &[134, 0, 0, 0, 0, 0, 0, 0]].concat();
            out.push(ipv6(
                A,
                tagged,
                v6("fe80::a"),
                ip_protocol::HOP_BY_HOP,
                &rest,
            ));
            let udp6 = [&[2, 0x23, 2, 0x22, 0, 12, 0, 0][..], &[2, 0, 0, 0]].concat();
            out.push(ipv6(A, tagged, v6("fe80::a"), ip_protocol::UDP, &udp6));
        }
        out.push(ack(A, IP_A, &[51, 4, 0, 0, 0x0e, 0x10]));
        out
    }

    #[test]
    fn truncations_never_panic_nor_grow_the_table_wrongly() {
        let now = Instant::now();
        for f in samples() {
            for len in 0..=f.len() {
                let mut g = Guard::new(AGE);
                let _ = g.check_untrusted(P1, VID, A, &f[..len], now);
                g.observe_trusted(UP, VID, &f[..len], |_, _| Some(P1), now);
                assert!(g.len() <= 2, "{len}");
            }
        }
    }

    #[test]
    fn junk_never_panics() {
        // A small xorshift: deterministic, no dependency.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let interesting = [
            0x00, 0xff, 0x01, 0x02, 0x06, 0x08, 0x3a, 0x43, 0x44, 0x86, 0x87, 0xdd,
        ];
        let samples = samples();
        let mut g = Guard::with_limits(
            AGE,
            GuardLimits {
                total: 64,
                per_port: 8,
            },
        );
        let now = Instant::now();
        for i in 0..20_000u64 {
            let r = next();
            let mut f = samples[r as usize % samples.len()].clone();
            for k in 0..(r >> 8) % 4 + 1 {
                let at = (next() as usize) % f.len();
                let v = next();
                f[at] = if k % 2 == 0 {
                    interesting[v as usize % interesting.len()]
                } else {
                    v as u8
                };
            }
            let f = &f[..(next() as usize) % (f.len() + 1)];
            let port = (i % 3) as PortNo + 1;
            let at = now + Duration::from_secs(i / 100);
            let _ = g.check_untrusted(port, VID, A, f, at);
            g.observe_trusted(UP, VID, f, |_, _| Some(port), at);
            match r % 997 {
                0 => g.forget_port(port),
                1 => {
                    g.expire(at);
                }
                _ => {}
            }
            assert!(g.len() <= 64);
            assert!(g.claims.values().all(|&n| n <= 8));
            g.assert_index_in_step();
        }
    }
}
