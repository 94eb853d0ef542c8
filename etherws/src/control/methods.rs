//! The methods of the control API: etherws 1.3's seven, and etherws 2's `reload` and `statusSummary`.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use etherws_common::PortCounters;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{Call, RpcError, parse_call, response};
use crate::base::escape::Esc;
use crate::base::tls::ClientTls;
use crate::offload::{AttachMode, Offload, PortView, Program, Requested};
use crate::port::Port;
use crate::port::netdev::Netdev;
use crate::port::quic::QuicDialer;
use crate::port::tap::Tap;
use crate::port::websocket::{ClientOptions, ClientPort, Credentials, WsSettings};
use crate::port::{SharedSwitch, attach, lock};
use crate::settings::profile::Profile;
use crate::settings::values::BitRate;
use crate::settings::values::Num;
use crate::settings::values::Transport;
use crate::switch::fdb::PortNo;
use crate::switch::guard::{GuardCounters, Rule};
use crate::switch::{Policy, PolicyError, PortKind, PortStat, QuicStat};
use crate::sys::netif::{IfChange, Netif};

/// What the control API acts on.
#[derive(Clone)]
pub(crate) struct Control {
    pub(crate) switch: SharedSwitch,
    pub(crate) netif: Netif,
    pub(crate) ws: WsSettings,
    /// eBPF offload of netdev ports.
    pub(crate) offload: Offload,
    /// Where `reload` asks the program to reload its configuration (`None`: it cannot).
    pub(crate) reload: Option<ReloadTx>,
    /// The status page's last reading of the counters (`statusSummary`'s rates).
    pub(crate) status: super::rates::StatusMemo,
}

/// A reload asked for: its answer is the summary of what changed, or why nothing did.
pub(crate) type ReloadAsk = tokio::sync::oneshot::Sender<Result<String, String>>;

/// Where reloads are asked for (`etherws sw` answers them one at a time).
pub(crate) type ReloadTx = tokio::sync::mpsc::Sender<ReloadAsk>;

type MethodResult = Result<Value, RpcError>;

/// The smallest MTU an interface may be given (what etherws 1.3's `ctl` allowed, and IPv4's
/// minimum datagram).
pub(crate) const MIN_MTU: u32 = 576;
/// The largest MTU Linux accepts on a TAP or most devices.
pub(crate) const MAX_MTU: u32 = 65535;

fn bad(msg: impl Into<String>) -> RpcError {
    RpcError::invalid_params(msg)
}

/// `params` as an object; absent params read as empty.
fn object(params: &Value) -> Result<Map<String, Value>, RpcError> {
    match params {
        Value::Object(m) => Ok(m.clone()),
        Value::Null => Ok(Map::new()),
        other => Err(bad(format!("params must be an object, not {other}"))),
    }
}

/// An integer parameter, given as a number or (as Python's `int()` allowed) a numeric string.
fn integer(p: &Map<String, Value>, key: &str) -> Result<Option<i64>, RpcError> {
    match p.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| bad(format!("{key} must be an integer: {n}"))),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| bad(format!("{key} must be an integer: {s:?}"))),
        Some(v) => Err(bad(format!("{key} must be an integer: {v}"))),
    }
}

fn string<'a>(p: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, RpcError> {
    match p.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(bad(format!("{key} must be a string: {v}"))),
    }
}

/// An etherws 2 on/off setting (`isolated`, `mesh`, `offload`): `true`/`false` or 1/0, as
/// `ctl` and the documentation give it; anything else is refused, so that `"no"` or `"0"` never
/// turns a setting on. (1.3's own `shut` and `insecure` keep its `bool(x)`: [`truthy`].)
fn flag(p: &Map<String, Value>, key: &str) -> Result<Option<bool>, RpcError> {
    match p.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::Number(n)) if n.as_u64() == Some(1) => Ok(Some(true)),
        Some(Value::Number(n)) if n.as_u64() == Some(0) => Ok(Some(false)),
        Some(v) => Err(bad(format!(
            "{key} must be true or false (or 1 or 0), not {v}"
        ))),
    }
}

/// A netdev port's `offload` option: `true` (or 1: the switch chooses), `false` (or 0, or
/// absent: none), or the program, `"auto"`, `"xdp"` or `"tc"`.
fn offload_option(p: &Map<String, Value>) -> Result<Option<Requested>, RpcError> {
    match p.get("offload") {
        Some(Value::String(s)) => s.parse().map(Some).map_err(bad),
        _ => Ok(flag(p, "offload")?.and_then(|on| on.then_some(Requested::Auto))),
    }
}

/// Truthiness as etherws 1.3's `bool(x)`.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn port_no(p: &Map<String, Value>) -> Result<PortNo, RpcError> {
    let n = integer(p, "port")?.ok_or_else(|| bad("missing port"))?;
    PortNo::try_from(n).map_err(|_| bad(format!("no such port: {n}")))
}

fn ipv4(p: &Map<String, Value>, key: &str) -> Result<Option<Ipv4Addr>, RpcError> {
    string(p, key)?
        .map(|s| {
            s.parse()
                .map_err(|_| bad(format!("invalid IPv4 {key}: {s:?}")))
        })
        .transpose()
}

/// A port's `listPort` row. For an offloaded netdev port `rx`/`tx` include the frames the
/// kernel switched itself (counted once: frames it handed to userspace are counted there);
/// `datapath` and `offload` say which path a netdev port uses, and `kernel` holds the XDP
/// counters. One typed row, serialized straight to text for `listPort` (a thousand ports in well
/// under a millisecond) and to a `Value` for the methods that answer with one port.
#[derive(Serialize)]
pub(crate) struct PortRow<'a> {
    port: PortNo,
    #[serde(rename = "type")]
    kind: &'static str,
    target: &'a str,
    tx: u64,
    rx: u64,
    shut: bool,
    link: &'static str,
    rx_bytes: u64,
    tx_bytes: u64,
    rx_dropped: u64,
    rx_invalid: u64,
    rx_oversize: u64,
    rx_truncated: u64,
    rx_gro_merged: u64,
    storm_dropped: u64,
    macs_refused: u64,
    tx_dropped: u64,
    tx_expired: u64,
    tx_aqm_dropped: u64,
    queued_bytes: u64,
    super_frames: bool,
    /// A WebSocket port's TCP congestion control algorithm, a QUIC port's controller
    /// (`null` for the others).
    congestion: Option<&'a str>,
    /// How a server or client port reaches its peer: `ws` or `quic` (`null` for the others).
    transport: Option<&'static str>,
    /// A QUIC port's connection: `rtt_ms`, `max_datagram`, `lost_packets`, `rx_errors`,
    /// `tx_dropped_oversize`.
    #[serde(flatten)]
    quic: Option<QuicStatRow>,
    user: Option<&'a str>,
    loop_blocked: bool,
    loop_blocks: u64,
    loop_dropped: u64,
    vlan: Option<u16>,
    isolated: bool,
    mesh: bool,
    mirror: Option<PortNo>,
    rate_in: Option<u64>,
    rate_out: Option<u64>,
    burst: Option<u64>,
    vlan_dropped: u64,
    rate_in_dropped: u64,
    rate_out_dropped: u64,
    path: Option<&'a str>,
    /// Port security: whether the port is trusted, its own limit on its stations.
    trusted: bool,
    max_macs: Option<u32>,
    #[serde(flatten)]
    guard: GuardRow,
    #[serde(flatten)]
    netdev: Option<NetdevRow<'a>>,
}

/// A QUIC port's connection, as `listPort` shows it.
#[derive(Serialize)]
struct QuicStatRow {
    rtt_ms: u64,
    max_datagram: u64,
    lost_packets: u64,
    rx_errors: u64,
    tx_dropped_oversize: u64,
}

impl From<QuicStat> for QuicStatRow {
    fn from(q: QuicStat) -> Self {
        QuicStatRow {
            rtt_ms: q.rtt_ms,
            max_datagram: q.max_datagram,
            lost_packets: q.lost_packets,
            rx_errors: q.rx_errors,
            tx_dropped_oversize: q.tx_dropped_oversize,
        }
    }
}

/// What port security dropped from a port, per rule.
#[derive(Serialize)]
struct GuardRow {
    /// All of them together.
    guard_dropped: u64,
    mac_spoof_dropped: u64,
    max_macs_dropped: u64,
    dhcp_server_dropped: u64,
    ra_dropped: u64,
    dhcp_client_dropped: u64,
    arp_dropped: u64,
    nd_dropped: u64,
}

impl From<&GuardCounters> for GuardRow {
    fn from(g: &GuardCounters) -> GuardRow {
        GuardRow {
            guard_dropped: g.total(),
            mac_spoof_dropped: g.get(Rule::MacSpoof),
            max_macs_dropped: g.get(Rule::MaxMacs),
            dhcp_server_dropped: g.get(Rule::DhcpServer),
            ra_dropped: g.get(Rule::Ra),
            dhcp_client_dropped: g.get(Rule::DhcpClient),
            arp_dropped: g.get(Rule::Arp),
            nd_dropped: g.get(Rule::Nd),
        }
    }
}

/// What a netdev port's row adds.
#[derive(Serialize)]
struct NetdevRow<'a> {
    datapath: &'static str,
    /// What the offload does for the port (`kernel`, `userspace`, `fallback`, `off`), and why
    /// not more.
    offload: &'static str,
    offload_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offload_fallback: Option<&'a str>,
    #[serde(flatten)]
    xdp: Option<XdpRow<'a>>,
}

/// A port made ready for one of the two programs.
enum Prepared {
    Xdp(crate::offload::XdpPort),
    Tc(crate::offload::tc::TcPort),
}

/// What an offloaded (XDP) port's row adds.
#[derive(Serialize)]
struct XdpRow<'a> {
    user_rx: u64,
    user_tx: u64,
    /// XDP ports only (`native`, `generic`).
    #[serde(skip_serializing_if = "Option::is_none")]
    xdp_mode: Option<&'static str>,
    /// The program (`xdp` or `tc`), how it is attached (`native`, `generic`, `tcx`,
    /// `netlink`), and why that program.
    offload_program: &'static str,
    offload_attach: &'static str,
    offload_why: &'a str,
    kernel_tx: bool,
    kernel: KernelRow,
}

/// The XDP program's counters of the port, all CPUs summed.
#[derive(Serialize)]
struct KernelRow {
    rx_frames: u64,
    rx_bytes: u64,
    tx_frames: u64,
    tx_bytes: u64,
    to_user: u64,
    dropped: u64,
    passed: u64,
    host: u64,
    csum_partial: u64,
}

impl From<&PortCounters> for KernelRow {
    fn from(k: &PortCounters) -> KernelRow {
        KernelRow {
            rx_frames: k.rx_frames,
            rx_bytes: k.rx_bytes,
            tx_frames: k.tx_frames,
            tx_bytes: k.tx_bytes,
            to_user: k.to_user,
            dropped: k.dropped,
            passed: k.passed,
            host: k.host,
            csum_partial: k.csum_partial,
        }
    }
}

impl<'a> PortRow<'a> {
    /// `s` as `listPort` shows it, with its offload state (`view`, netdev ports).
    pub(crate) fn new(s: &'a PortStat, view: Option<&'a PortView>, now: Instant) -> PortRow<'a> {
        let total = with_kernel(s, view);
        let netdev = (s.kind == PortKind::Netdev).then(|| {
            let xdp = view.filter(|v| v.xdp);
            let (offload, offload_reason) = match view {
                Some(v) if v.xdp => match &v.userspace_why {
                    None => ("kernel", None),
                    Some(why) => ("userspace", Some(why.as_str())),
                },
                Some(v) => ("fallback", v.fallback.as_deref()),
                None => ("off", None),
            };
            NetdevRow {
                datapath: xdp.map_or("af_packet", |v| v.program),
                offload,
                offload_reason,
                offload_fallback: view.and_then(|v| v.fallback.as_deref()),
                xdp: xdp.map(|v| XdpRow {
                    user_rx: s.rx,
                    user_tx: s.tx,
                    xdp_mode: (v.program == Program::Xdp.name()).then_some(v.mode),
                    offload_program: v.program,
                    offload_attach: v.mode,
                    offload_why: &v.why,
                    kernel_tx: v.kernel_tx,
                    kernel: KernelRow::from(&v.kernel),
                }),
            }
        });
        let p = &s.policy;
        PortRow {
            port: s.port,
            kind: s.kind.as_str(),
            target: &s.target,
            tx: total.tx,
            rx: total.rx,
            shut: s.shut,
            rx_bytes: total.rx_bytes,
            tx_bytes: total.tx_bytes,
            link: if s.link_up { "up" } else { "down" },
            rx_dropped: s.rx_dropped,
            rx_invalid: s.rx_invalid,
            rx_oversize: s.rx_oversize,
            rx_truncated: s.rx_truncated,
            rx_gro_merged: s.rx_gro_merged,
            storm_dropped: s.storm_dropped,
            macs_refused: s.macs_refused,
            tx_dropped: s.tx_dropped,
            tx_expired: s.tx_expired,
            tx_aqm_dropped: s.tx_aqm_dropped,
            queued_bytes: s.queued_bytes,
            super_frames: s.super_frames,
            congestion: s.congestion.as_deref(),
            transport: match (s.kind, s.quic) {
                (PortKind::Server | PortKind::Client, Some(_)) => Some("quic"),
                (PortKind::Server | PortKind::Client, None) => Some("ws"),
                _ => None,
            },
            quic: s.quic.map(QuicStatRow::from),
            user: s.user.as_deref(),
            loop_blocked: s.loop_blocked(now),
            loop_blocks: s.loop_blocks,
            loop_dropped: s.loop_dropped,
            vlan: p.vlan,
            isolated: p.isolated,
            mesh: p.mesh,
            mirror: p.mirror,
            rate_in: p.rate_in.map(|r| r.bits_per_sec),
            rate_out: p.rate_out.map(|r| r.bits_per_sec),
            burst: p.rate_in.or(p.rate_out).map(|r| r.burst),
            vlan_dropped: s.vlan_dropped,
            rate_in_dropped: s.rate_in_dropped,
            rate_out_dropped: s.rate_out_dropped,
            path: s.path.as_deref(),
            trusted: p.is_trusted(),
            max_macs: p.own_max_macs(),
            guard: GuardRow::from(&s.guard),
            netdev,
        }
    }
}

/// A port's `listPort` row as a JSON value.
pub(crate) fn portstat_with(s: &PortStat, view: Option<&PortView>) -> Value {
    serde_json::to_value(PortRow::new(s, view, Instant::now())).unwrap_or(Value::Null)
}

/// A port's counters including what the kernel switched for it (offloaded netdev ports):
/// frames the XDP program forwarded itself, counted once — those it handed to userspace are
/// counted there already. What `listPort` and `/metrics` both report.
pub(crate) fn with_kernel(s: &PortStat, view: Option<&PortView>) -> PortStat {
    let mut s = s.clone();
    if let Some(view) = view.filter(|v| v.xdp) {
        let k = &view.kernel;
        s.rx += k.rx_frames.saturating_sub(k.to_user + k.passed + k.host);
        s.tx += k.tx_frames;
        // What the kernel sent is all its own; what it received is not told apart from what
        // it handed to userspace, so `rx_bytes` is userspace's only.
        s.tx_bytes += k.tx_bytes;
    }
    s
}

/// `{"entries": v}`, built by moving `v` in: `json!` would serialize the whole tree again (for
/// a thousand ports, most of the time `listPort` took).
fn entries(v: Vec<Value>) -> Value {
    Value::Object(Map::from_iter([("entries".to_string(), Value::Array(v))]))
}

impl Control {
    /// Answers one HTTP request body with one JSON-RPC response, as text.
    pub(crate) async fn handle(&self, body: &[u8]) -> String {
        match parse_call(body) {
            Err((id, e)) => response(id, Err(e)).to_string(),
            // The one answer that grows with the switch: written straight to text.
            Ok(call) if call.method == "listPort" => self.list_port(&call.id),
            // etherws 2's status page: sized to what the page shows (control/summary.rs).
            Ok(call) if call.method == "statusSummary" => {
                self.status_summary(&call.id, &call.params)
            }
            Ok(call) => {
                let id = call.id.clone();
                let outcome = self.call(call).await;
                if let Err(e) = &outcome {
                    if e.code == -32602 {
                        tracing::info!("control request failed: {}", Esc(&e.data));
                    }
                }
                response(id, outcome).to_string()
            }
        }
    }

    async fn call(&self, call: Call) -> MethodResult {
        let p = &call.params;
        match call.method.as_str() {
            "addPort" => {
                // A new port's device and connection belong to the data path's runtime (see
                // `port::data_path`), not to the control API's own thread.
                let (this, p) = (self.clone(), object(p)?);
                crate::port::on_data_path(async move { this.add_port(&p).await })
                    .await
                    .unwrap_or_else(|e| Err(RpcError::internal(e.to_string())))
            }
            "setPort" => self.set_port(&object(p)?),
            "delPort" => self.del_port(&object(p)?),
            "setInterface" => self.set_interface(&object(p)?).await,
            "listInterface" => self.list_interface().await,
            "listFdb" => self.list_fdb(),
            "reload" => self.reload().await,
            other => Err(RpcError::method_not_found(format!(
                "no such method: {}{other}",
                super::NAMESPACE
            ))),
        }
    }

    /// `listPort`'s whole answer: the rows serialized as they are built, without a `Value` per
    /// port (a thousand ports: well under a millisecond, where `Value`s took several).
    fn list_port(&self, id: &Value) -> String {
        #[derive(Serialize)]
        struct Entries<'a> {
            entries: &'a [PortRow<'a>],
        }
        #[derive(Serialize)]
        struct Reply<'a> {
            jsonrpc: &'static str,
            id: &'a Value,
            result: Entries<'a>,
        }
        let ports: Vec<PortStat> = lock(&self.switch).ports().collect();
        let views: Vec<Option<PortView>> = ports.iter().map(|s| self.view(s)).collect();
        let now = Instant::now();
        let rows: Vec<PortRow> = ports
            .iter()
            .zip(&views)
            .map(|(s, v)| PortRow::new(s, v.as_ref(), now))
            .collect();
        let reply = Reply {
            jsonrpc: "2.0",
            id,
            result: Entries { entries: &rows },
        };
        // Sized for the whole answer up front (a row is 400-500 bytes): growing the text by
        // doubling moved it several times, the largest cost of a big answer after the rows.
        let mut out = Vec::with_capacity(256 + 512 * rows.len());
        serde_json::to_writer(&mut out, &reply)
            .map_err(|e| e.to_string())
            .and_then(|()| String::from_utf8(out).map_err(|e| e.to_string()))
            .unwrap_or_else(|e| response(id.clone(), Err(RpcError::internal(e))).to_string())
    }

    /// Every port's counters as `listPort` reports them (kernel-switched frames included).
    pub(crate) fn port_counters(&self) -> Vec<PortStat> {
        let ports: Vec<PortStat> = lock(&self.switch).ports().collect();
        ports
            .iter()
            .map(|s| with_kernel(s, self.view(s).as_ref()))
            .collect()
    }

    /// A port's `listPort` row, with its offload state.
    fn row(&self, s: &PortStat) -> Value {
        portstat_with(s, self.view(s).as_ref())
    }

    /// A netdev port's offload state.
    pub(super) fn view(&self, s: &PortStat) -> Option<PortView> {
        (s.kind == PortKind::Netdev)
            .then(|| self.offload.view(s.port))
            .flatten()
    }

    fn stat(&self, port: PortNo) -> Result<PortStat, RpcError> {
        lock(&self.switch)
            .port(port)
            .ok_or_else(|| bad(format!("no such port: {port}")))
    }

    async fn add_port(&self, p: &Map<String, Value>) -> MethodResult {
        let kind = string(p, "type")?.ok_or_else(|| bad("missing type"))?;
        let target = string(p, "target")?.ok_or_else(|| bad("missing target"))?;
        let fail = |e: anyhow::Error| bad(format!("{e:#}"));
        let stat = match kind {
            "tap" => self.add_tap(target).await.map_err(fail)?,
            "netdev" => {
                let opts = object(p.get("options").unwrap_or(&Value::Null))?;
                let offload = offload_option(&opts)?;
                let mode = string(&opts, "xdp_mode")?
                    .map(str::parse::<AttachMode>)
                    .transpose()
                    .map_err(bad)?;
                if offload == Some(Requested::Tc) && mode.is_some() {
                    return Err(bad("xdp_mode is for the XDP program, not offload \"tc\""));
                }
                if let Some(requested) = offload {
                    self.add_netdev_offloaded(target, requested, mode.unwrap_or_default())
                        .await
                        .map_err(fail)?
                } else {
                    self.add_netdev(target).await.map_err(fail)?
                }
            }
            "client" => {
                let opts = object(p.get("options").unwrap_or(&Value::Null))?;
                let user = string(&opts, "user")?.filter(|u| !u.is_empty());
                let passwd = string(&opts, "passwd")?;
                let creds = match (user, passwd) {
                    (Some(user), passwd) => Some(Credentials {
                        user: user.to_string(),
                        passwd: passwd.unwrap_or_default().to_string(),
                    }),
                    (None, Some(pw)) if !pw.is_empty() => {
                        return Err(bad("Authentication required but username empty"));
                    }
                    (None, _) => None,
                };
                let insecure = opts.get("insecure").is_some_and(truthy);
                // Empty names are none; `cacerts` is not read with `insecure`.
                let file = |key| -> Result<_, RpcError> {
                    Ok(string(&opts, key)?.filter(|f| !f.is_empty()).map(Path::new))
                };
                let cacerts = if insecure { None } else { file("cacerts")? };
                // A client certificate for a server that requires one (mutual TLS).
                let tls = ClientTls::new(insecure, cacerts, file("cert")?, file("key")?)
                    .map_err(|e| bad(e.to_string()))?;
                let mesh = flag(&opts, "mesh")?.unwrap_or(false);
                let transport = string(&opts, "transport")?
                    .map(Transport::parse)
                    .transpose()
                    .and_then(|t| t.unwrap_or_default().check(target))
                    .map_err(bad)?;
                let opts = ClientOptions {
                    creds,
                    verify: tls.verify,
                    identity: tls.identity,
                };
                let stat = self
                    .add_client(target, opts, transport, true)
                    .await
                    .map_err(fail)?;
                if mesh {
                    let profile = Profile {
                        mesh: Some(true),
                        ..Profile::default()
                    };
                    self.apply_profile(stat.port, &profile).map_err(fail)?
                } else {
                    stat
                }
            }
            other => return Err(bad(format!("unsupported port type: {other}"))),
        };
        Ok(entries(vec![self.row(&stat)]))
    }

    /// Refuses an interface that is a port already: its frames would go round between the two
    /// ports (a TAP and a netdev of one name are one interface too).
    fn interface_free(&self, name: &str) -> anyhow::Result<()> {
        if let Some(p) = lock(&self.switch)
            .ports()
            .find(|p| p.kind.has_interface() && &*p.target == name)
        {
            anyhow::bail!(
                "interface {} is port {} already (adding it twice would loop every frame)",
                crate::base::escape::printable(name),
                p.port
            );
        }
        Ok(())
    }

    /// Creates (or attaches to) TAP device `name` and adds it as a port.
    pub(crate) async fn add_tap(&self, name: &str) -> anyhow::Result<PortStat> {
        if !name.is_empty() {
            self.interface_free(name)?;
        }
        let (tap, name) = Tap::open(name, &self.netif, self.ws.super_frames).await?;
        Ok(attach(&self.switch, PortKind::Tap, name, tap))
    }

    /// Adds interface `name` as a port.
    pub(crate) async fn add_netdev(&self, name: &str) -> anyhow::Result<PortStat> {
        self.interface_free(name)?;
        let dev = Netdev::open(name, &self.netif).await?;
        Ok(attach(
            &self.switch,
            PortKind::Netdev,
            name.to_string(),
            dev,
        ))
    }

    /// Adds interface `name` as a port offloaded with eBPF (XDP + AF_XDP), or, where XDP
    /// cannot serve, as a plain AF_PACKET port with the reason logged. Only a build without
    /// the XDP object is an error.
    pub(crate) async fn add_netdev_offloaded(
        &self,
        name: &str,
        requested: Requested,
        mode: AttachMode,
    ) -> anyhow::Result<PortStat> {
        if !crate::offload::available() {
            anyhow::bail!(crate::offload::NO_OBJECT);
        }
        self.interface_free(name)?;
        let hw = self.netif.hardware(name).await?;
        let queues = Netif::rx_queues(name).await;
        let index = hw.index;
        // No switch port has the interface (checked above), so an offloaded port still holding
        // it is one `delPort` removed whose task is ending: give it a moment to let go.
        for _ in 0..200 {
            if !self.offload.holds(index) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if self.offload.holds(index) {
            anyhow::bail!(
                "{} is still held by a deleted offloaded port letting go of it; try again",
                Esc(name)
            );
        }
        let was_loaded = self.offload.loaded();
        // An XDP attach mode asked for means XDP.
        let requested = match (requested, mode) {
            (Requested::Auto, AttachMode::Native | AttachMode::Generic) => Requested::Xdp,
            (r, _) => r,
        };
        let (program, why) = self.choose_program(name, index, requested).await;
        let prepare = |program: Program, why: &'static str| {
            let (offload, netif, name) =
                (self.offload.clone(), self.netif.clone(), name.to_string());
            // Verifier, netlink, sockets: off the async workers.
            tokio::task::spawn_blocking(move || match program {
                Program::Xdp => offload
                    .prepare(&name, hw, queues, mode, netif, why)
                    .map(Prepared::Xdp),
                Program::Tc => offload.prepare_tc(&name, hw, netif, why).map(Prepared::Tc),
            })
        };
        let mut r = prepare(program, why).await?;
        if let (Err(e), Program::Tc, Requested::Auto) = (&r, program, requested) {
            // Chosen by auto: XDP is still an offload.
            tracing::warn!(
                interface = name,
                "TC program not possible, trying XDP: {e:#}"
            );
            r = prepare(Program::Xdp, "the TC program could not be attached").await?;
        }
        let failed = match r {
            Ok(Prepared::Xdp(port)) => {
                return Ok(self.offloaded(name, index, port, was_loaded).await);
            }
            Ok(Prepared::Tc(port)) => {
                return Ok(self.offloaded(name, index, port, was_loaded).await);
            }
            Err(e) => e,
        };
        let reason = format!("{failed:#}");
        tracing::warn!(
            interface = name,
            "eBPF offload not possible, using AF_PACKET instead: {reason}"
        );
        let stat = self.add_netdev(name).await?;
        self.offload.note_fallback(stat.port, failed);
        Ok(stat)
    }

    /// The program for interface `name` (`index`): what was asked for, or for `auto` what
    /// [`choose`](crate::offload::choose) makes of the device's facts (read off the async
    /// workers: ioctls and a netlink exchange), and why.
    async fn choose_program(
        &self,
        name: &str,
        index: u32,
        requested: Requested,
    ) -> (Program, &'static str) {
        if requested != Requested::Auto {
            return crate::offload::choose(requested, &crate::offload::Facts::default());
        }
        let ifname = name.to_string();
        let facts =
            tokio::task::spawn_blocking(move || crate::offload::Facts::read(&ifname, index))
                .await
                .unwrap_or_default();
        tracing::debug!(interface = name, ?facts, "offload: the device's facts");
        crate::offload::choose(requested, &facts)
    }

    /// Adds the prepared offloaded port `port` on interface `name` (`index`) to the switch and
    /// switches it in the kernel.
    async fn offloaded<P: Port>(
        &self,
        name: &str,
        index: u32,
        port: P,
        was_loaded: bool,
    ) -> PortStat {
        // Its veth peer, named in the reason if it does not take redirected frames.
        match self.netif.veth_peer(index).await {
            Ok(peer) => self.offload.set_peer(index, peer),
            Err(e) => tracing::debug!(interface = name, "veth peer unknown: {e}"),
        }
        let stat = attach(&self.switch, PortKind::Netdev, name.to_string(), port);
        self.offload.activate(index, stat.port);
        // Decided before answering, so that `addport` already says whether the kernel
        // forwards into the port (a netlink round trip: off the async workers).
        let offload = self.offload.clone();
        let _ = tokio::task::spawn_blocking(move || offload.refresh(index, None)).await;
        if !was_loaded {
            // The kernel's FDB starts empty: give it what the switch knows.
            lock(&self.switch).replay_fdb();
        }
        stat
    }

    /// Adds a client port. With `connect_first`, the first connection must succeed (as
    /// `addPort` requires); without, the port starts down and keeps trying (a port declared
    /// in the configuration file, whose peer may not be up yet).
    pub(crate) async fn add_client(
        &self,
        url: &str,
        opts: ClientOptions,
        transport: Transport,
        connect_first: bool,
    ) -> anyhow::Result<PortStat> {
        let (switch, target, ws) = (&self.switch, url.to_string(), self.ws);
        if transport.check(url).map_err(anyhow::Error::msg)? == Transport::Quic {
            let dialer = QuicDialer::new(url, opts).await?;
            let port = ClientPort::start(dialer, ws, connect_first).await?;
            let stat = attach(switch, PortKind::Client, target, port);
            lock(switch).set_quic(stat.port, QuicStat::default());
            return Ok(stat);
        }
        let port = if connect_first {
            ClientPort::connect(url, opts, ws).await?
        } else {
            ClientPort::pending(url, opts, ws).await?
        };
        Ok(attach(switch, PortKind::Client, target, port))
    }

    /// Applies `setif` settings to a tap or netdev port.
    pub(crate) async fn configure_interface(
        &self,
        port: PortNo,
        change: &IfChange,
    ) -> Result<PortStat, RpcError> {
        let stat = self.stat(port)?;
        if !stat.kind.has_interface() {
            return Err(bad(format!(
                "Port {port} has unsupported interface: {}",
                stat.kind.as_str()
            )));
        }
        self.netif
            .set(&stat.target, change)
            .await
            .map_err(|e| bad(e.to_string()))?;
        tracing::info!(port, ?change, "interface set");
        Ok(stat)
    }

    fn set_port(&self, p: &Map<String, Value>) -> MethodResult {
        let port = port_no(p)?;
        // etherws 2's settings, all checked before anything changes.
        let number = |key: &str, hi: i64| -> Result<Option<u64>, RpcError> {
            match integer(p, key)? {
                None => Ok(None),
                Some(n) if (0..=hi).contains(&n) => Ok(Some(n as u64)),
                Some(n) => Err(bad(format!("{key} must be from 0 to {hi}, not {n}"))),
            }
        };
        let profile = Profile {
            vlan: number("vlan", 4094)?.map(|v| Num(v as u16)),
            isolated: flag(p, "isolated")?,
            mesh: flag(p, "mesh")?,
            rate_in: number("rate_in", 400_000_000_000)?.map(BitRate),
            rate_out: number("rate_out", 400_000_000_000)?.map(BitRate),
            burst: number("burst", i64::MAX)?.map(Num),
            trusted: flag(p, "trusted")?,
            max_macs: number("max_macs", i64::from(u32::MAX))?.map(|n| Num(n as u32)),
        };
        let mirror = number("mirror", i64::from(u32::MAX))?;
        let changes = profile != Profile::default() || mirror.is_some();
        // 1.3's `bool(shut)`.
        let shut = p.get("shut").filter(|v| !v.is_null()).map(truthy);
        let no_port = || bad(format!("no such port: {port}"));
        // Under one lock: the policy first, as it is the one that can be refused (a mirror
        // that is no other port), so that a refused call changes nothing, `shut` included.
        let stat = {
            let mut sw = lock(&self.switch);
            if changes {
                let mut policy = sw.port(port).ok_or_else(no_port)?.policy;
                profile.apply(&mut policy);
                if let Some(m) = mirror {
                    policy.mirror = (m != 0).then_some(m as PortNo);
                }
                sw.set_policy(port, policy)
                    .map_err(|e| bad(e.to_string()))?;
            }
            match shut {
                Some(s) => sw.set_shut(port, s),
                None => sw.port(port),
            }
            .ok_or_else(no_port)?
        };
        self.offload.set_shut(port, stat.shut);
        if changes {
            self.offload.set_user_only(port, stat.policy.needs_core());
        }
        tracing::info!(port, shut = stat.shut, policy = ?stat.policy, "port set");
        Ok(entries(vec![self.row(&stat)]))
    }

    /// Sets a port's policy, and tells the kernel's datapath whether it may still switch the
    /// port's frames itself (not once any policy applies: it knows none of them).
    pub(crate) fn set_policy(&self, port: PortNo, policy: Policy) -> Result<PortStat, PolicyError> {
        let stat = lock(&self.switch).set_policy(port, policy)?;
        self.offload.set_user_only(port, policy.needs_core());
        Ok(stat)
    }

    /// Applies the settings a port starts with (a `[[port]]` table's, `addport client --mesh`).
    pub(crate) fn apply_profile(
        &self,
        port: PortNo,
        profile: &Profile,
    ) -> anyhow::Result<PortStat> {
        let mut policy = self.stat(port).map_err(|e| anyhow::anyhow!(e.data))?.policy;
        profile.apply(&mut policy);
        Ok(self.set_policy(port, policy)?)
    }

    /// `reload`: the configuration file and every file it names read again, and applied if
    /// all is well; the answer is the one-line summary, the error's data why nothing changed.
    async fn reload(&self) -> MethodResult {
        let tx = self
            .reload
            .as_ref()
            .ok_or_else(|| bad("this switch cannot reload"))?;
        let (ask, answer) = tokio::sync::oneshot::channel();
        tx.send(ask)
            .await
            .map_err(|_| RpcError::internal("the switch is stopping"))?;
        match answer.await {
            Ok(Ok(summary)) => Ok(json!({ "summary": summary })),
            Ok(Err(why)) => Err(bad(why)),
            Err(_) => Err(RpcError::internal("the reload was abandoned")),
        }
    }

    fn del_port(&self, p: &Map<String, Value>) -> MethodResult {
        let port = port_no(p)?;
        let stat = lock(&self.switch)
            .remove_port(port)
            .ok_or_else(|| bad(format!("no such port: {port}")))?;
        tracing::info!(port, target = %Esc(&stat.target), "port deleted");
        let row = self.row(&stat);
        self.offload.forget(port);
        Ok(entries(vec![row]))
    }

    async fn set_interface(&self, p: &Map<String, Value>) -> MethodResult {
        let port = port_no(p)?;
        self.stat(port)?;
        // The checks etherws 1.3 left to its `ctl`, made here for every caller.
        let mtu = integer(p, "mtu")?
            .map(|m| match u32::try_from(m) {
                Ok(m) if (MIN_MTU..=MAX_MTU).contains(&m) => Ok(m),
                _ => Err(bad(format!(
                    "Invalid MTU: {m} (from {MIN_MTU} to {MAX_MTU})"
                ))),
            })
            .transpose()?;
        let address = ipv4(p, "address")?;
        if let Some(a) = address {
            if a.is_loopback() || a.is_multicast() || a.is_broadcast() || a.is_unspecified() {
                return Err(bad(format!(
                    "Invalid address: {a} (loopback, multicast, broadcast and 0.0.0.0 cannot be \
                     an interface's address)"
                )));
            }
        }
        let netmask = ipv4(p, "netmask")?;
        if let Some(m) = netmask {
            let bits = u32::from(m);
            if bits.leading_ones() + bits.trailing_zeros() != 32 {
                return Err(bad(format!("Invalid netmask: {m} (not contiguous)")));
            }
        }
        let change = IfChange {
            address,
            netmask,
            mtu,
        };
        let stat = self.configure_interface(port, &change).await?;
        Ok(entries(vec![self.ifstat(&stat).await]))
    }

    async fn ifstat(&self, s: &PortStat) -> Value {
        let info = self.netif.get(&s.target).await.ok();
        let show = |a: Option<Ipv4Addr>| a.map(|a| a.to_string()).unwrap_or_default();
        json!({
            "port": s.port,
            "type": s.kind.as_str(),
            "target": s.target,
            "address": show(info.as_ref().and_then(|i| i.address)),
            "netmask": show(info.as_ref().and_then(|i| i.netmask)),
            "mtu": info.map(|i| i.mtu).unwrap_or(0),
        })
    }

    async fn list_interface(&self) -> MethodResult {
        let ports: Vec<PortStat> = lock(&self.switch)
            .ports()
            .filter(|p| p.kind.has_interface())
            .collect();
        let mut rows = Vec::with_capacity(ports.len());
        for p in &ports {
            rows.push(self.ifstat(p).await);
        }
        Ok(entries(rows))
    }

    fn list_fdb(&self) -> MethodResult {
        let rows = lock(&self.switch).fdb_rows(Instant::now());
        Ok(entries(
            rows.iter()
                .map(|r| {
                    json!({
                        "vid": r.vid,
                        "mac": r.mac.to_string(),
                        "port": r.port,
                        "age": r.age.as_secs(),
                    })
                })
                .collect(),
        ))
    }
}
