//! Port security: what an untrusted port may not send. (Stub: replaced by the full module.)

/// A port-security rule that dropped a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    MacSpoof,
    MaxMacs,
    DhcpServer,
    Ra,
    DhcpClient,
    Arp,
    Nd,
}

impl Rule {
    pub(crate) const ALL: [Rule; 7] = [
        Rule::MacSpoof,
        Rule::MaxMacs,
        Rule::DhcpServer,
        Rule::Ra,
        Rule::DhcpClient,
        Rule::Arp,
        Rule::Nd,
    ];

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
}

/// Frames each rule dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct GuardCounters([u64; 7]);

impl GuardCounters {
    pub(crate) fn add(&mut self, rule: Rule) {
        self.0[rule as usize] += 1;
    }

    pub(crate) fn get(&self, rule: Rule) -> u64 {
        self.0[rule as usize]
    }
}
