//! `etherws ctl`: one JSON-RPC call to a switch, printed as etherws 1.3 prints it.
//!
//! Output is byte-for-byte the original's: an aligned table with a header row, or an error as
//! `  MESSAGE (CODE)` and `    DATA`. Unlike 1.3, an error also makes the exit status 1, so
//! scripts can tell.
//!
//! The HTTP client is hyper's HTTP/1.1 client on a single-threaded tokio runtime, over the
//! switch's own TLS ([`crate::base::tls::client_config`]) and proxy code ([`http_proxy::connect`]). It
//! used to be ureq, whose `TlsConfig` takes root certificates but no certificate verifier:
//! pinning a self-signed `--ctlsslcert` (as `client` ports pin `--cacerts`) needs our verifier,
//! and ureq's transport API that could carry one is explicitly unversioned (it may change in
//! any release). hyper, tokio and tokio-rustls are in the switch already, and this way `ctl`
//! verifies, presents client certificates and goes through proxies exactly as client ports do.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use hyper::http::{Request as HttpRequest, StatusCode, Uri, header};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use crate::app::cli::{AddPort, CtlArgs, CtlCommand, SetPort};
use crate::base::escape::printable;
use crate::base::tls::ClientTls;
use crate::control::NAMESPACE;
use crate::port::websocket::http_proxy;
use crate::sys::term::EchoOff;

/// Something to print and exit 1 for.
pub(crate) struct Failure {
    pub(crate) code: i64,
    pub(crate) message: String,
    pub(crate) data: String,
    /// `--json`: print the error object instead.
    pub(crate) json: bool,
}

impl Failure {
    fn internal(e: anyhow::Error) -> Self {
        Failure {
            code: -32603,
            message: "Internal error".into(),
            data: format!("{e:#}"),
            json: false,
        }
    }

    /// Prints the failure; what the server sent is escaped (it must not drive the terminal).
    pub(crate) fn print(&self) {
        if self.json {
            let err = json!({"code": self.code, "message": self.message, "data": self.data});
            println!("{}", json_text(&json!({ "error": err })));
            return;
        }
        println!("  {} ({})", printable(&self.message), self.code);
        println!("    {}", printable(&self.data));
    }
}

/// `--json` output: one pretty-printed document. JSON already escapes C0 controls; the C1
/// ones (U+007F–U+009F, which some terminals obey as escape sequences) are escaped too, so a
/// hostile switch cannot drive the terminal this way either.
pub(crate) fn json_text(v: &Value) -> String {
    let text = serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into());
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if ('\u{7f}'..='\u{9f}').contains(&c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Runs `ctl`; prints the result or the failure. Returns whether it succeeded.
pub(crate) fn run(mut args: Box<CtlArgs>) -> bool {
    match execute(&mut args) {
        Ok(out) => {
            print!("{out}");
            true
        }
        Err(f) => {
            f.print();
            false
        }
    }
}

fn execute(args: &mut CtlArgs) -> Result<String, Failure> {
    let (method, params, table) = request_for(&args.command).map_err(|e| Failure {
        json: args.json,
        ..Failure::internal(e)
    })?;
    let answer = call(args, method, params).map_err(|e| Failure {
        json: args.json,
        ..Failure::internal(e)
    })?;
    if let Some(err) = answer.get("error") {
        return Err(Failure {
            code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: text(err.get("message")),
            data: text(err.get("data")),
            json: args.json,
        });
    }
    if args.json {
        let result = answer.get("result").cloned().unwrap_or(Value::Null);
        return Ok(format!("{}\n", json_text(&result)));
    }
    // `reload` answers with a one-line summary, not a table.
    if let Some(summary) = answer.pointer("/result/summary").and_then(Value::as_str) {
        return Ok(format!("{}\n", printable(summary)));
    }
    let entries = answer
        .pointer("/result/entries")
        .and_then(Value::as_array)
        .ok_or_else(|| Failure::internal(anyhow::anyhow!("malformed answer: {answer}")))?;
    Ok(table(entries))
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    }
}

fn positive(port: i64) -> anyhow::Result<i64> {
    if port <= 0 {
        bail!("Invalid port: {port}");
    }
    Ok(port)
}

type Request = (&'static str, Option<Value>, fn(&[Value]) -> String);

/// The method, params and output table for a command, after the checks 1.3's ctl made locally.
fn request_for(cmd: &CtlCommand) -> anyhow::Result<Request> {
    Ok(match cmd {
        CtlCommand::Listport { verbose } => (
            "listPort",
            None,
            if *verbose {
                port_table_verbose
            } else {
                port_table
            },
        ),
        CtlCommand::Listif => ("listInterface", None, if_table),
        CtlCommand::Listfdb => ("listFdb", None, fdb_table),
        CtlCommand::Reload => ("reload", None, port_table),
        CtlCommand::Delport { port } => (
            "delPort",
            Some(json!({"port": positive(*port)?})),
            port_table,
        ),
        CtlCommand::Setport(set) => setport_request(set)?,
        CtlCommand::Setif {
            port,
            address,
            netmask,
            mtu,
        } => {
            let mut p = json!({"port": positive(*port)?});
            for (key, val) in [("address", address), ("netmask", netmask)] {
                if let Some(v) = val {
                    if !v.is_empty() {
                        v.parse::<Ipv4Addr>()
                            .with_context(|| format!("Invalid {key}: {v}"))?;
                    }
                    p[key] = json!(v);
                }
            }
            if let Some(m) = mtu {
                if *m < 576 {
                    bail!("Invalid MTU: {m}");
                }
                p["mtu"] = json!(m);
            }
            ("setInterface", Some(p), if_table)
        }
        CtlCommand::Addport { kind } => {
            let (kind, target, opts) = addport_options(kind)?;
            (
                "addPort",
                Some(json!({"type": kind, "target": target, "options": opts})),
                port_table,
            )
        }
    })
}

/// `setport`: the settings given, and 1.3's table unless an etherws 2 setting is among them.
fn setport_request(set: &SetPort) -> anyhow::Result<Request> {
    let SetPort {
        port,
        shut,
        vlan,
        isolated,
        mesh,
        mirror,
        rate_in,
        rate_out,
        burst,
        trusted,
        max_macs,
    } = set;
    let mut p = json!({"port": positive(*port)?});
    if let Some(s) = shut {
        p["shut"] = json!(*s == 1);
    }
    if let Some(t) = trusted {
        p["trusted"] = json!(t);
    }
    // etherws 2: VLAN, isolation, mesh, mirror and rate limits.
    let flags = [("isolated", isolated), ("mesh", mesh)];
    for (key, v) in flags {
        if let Some(v) = v {
            p[key] = json!(*v == 1);
        }
    }
    let numbers = [
        ("vlan", vlan.map(u64::from)),
        ("mirror", mirror.map(u64::from)),
        ("rate_in", rate_in.map(|r| r.0)),
        ("rate_out", rate_out.map(|r| r.0)),
        ("burst", *burst),
        ("max_macs", max_macs.map(u64::from)),
    ];
    for (key, v) in numbers {
        if let Some(v) = v {
            p[key] = json!(v);
        }
    }
    // 1.3's table unless an etherws 2 setting was given.
    let given = p.as_object().map_or(0, |o| o.len());
    let table = if given > 1 + usize::from(shut.is_some()) {
        port_table_verbose
    } else {
        port_table
    };
    Ok(("setPort", Some(p), table))
}

/// `addport`: the port's type, target and options, after 1.3's local checks; for a client
/// port, the password is asked for if a user is given without one.
fn addport_options(kind: &AddPort) -> anyhow::Result<(&'static str, &String, Value)> {
    Ok(match kind {
        AddPort::Netdev {
            target,
            offload,
            xdp_mode,
        } => {
            let mut opts = json!({});
            if offload.as_deref() == Some("tc") && xdp_mode.is_some() {
                anyhow::bail!("--xdp-mode applies to XDP only, not to --offload=tc");
            }
            match offload.as_deref() {
                // As 1.3-compatible as it gets: `--offload` alone is `true`.
                Some("auto") => opts["offload"] = json!(true),
                Some(p) => opts["offload"] = json!(p),
                None => {}
            }
            if let Some(m) = xdp_mode {
                opts["xdp_mode"] = json!(m);
            }
            ("netdev", target, opts)
        }
        AddPort::Tap { target } => ("tap", target, json!({})),
        AddPort::Client {
            target,
            user,
            passwd,
            cacerts,
            insecure,
            cert,
            key,
            mesh,
            transport,
        } => {
            if !target.starts_with("ws://") && !target.starts_with("wss://") {
                bail!("Invalid target URL scheme: {target}");
            }
            if let Some(t) = transport {
                t.check(target).map_err(anyhow::Error::msg)?;
            }
            let user = user.clone().filter(|u| !u.is_empty());
            let mut passwd = passwd.clone().filter(|p| !p.is_empty());
            if user.is_none() && passwd.is_some() {
                bail!("Authentication required but username empty");
            }
            if user.is_some() && passwd.is_none() {
                passwd =
                    Some(prompt_password("Client Password: ").context("cannot read password")?);
            }
            // The switch reads these files: it gets absolute paths.
            let absolute = |p: &Option<std::path::PathBuf>| {
                p.as_ref()
                    .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
            };
            let mut opts = json!({"user": user, "passwd": passwd, "cacerts": absolute(cacerts), "insecure": insecure});
            if let (Some(cert), Some(key)) = (absolute(cert), absolute(key)) {
                opts["cert"] = json!(cert);
                opts["key"] = json!(key);
            }
            if *mesh {
                opts["mesh"] = json!(true);
            }
            if let Some(t) = transport {
                opts["transport"] = json!(t.name());
            }
            ("client", target, opts)
        }
    })
}

/// Prompts for a password on the terminal and reads it without echo.
///
/// rpassword turns echo off only after it has written the prompt, so a password typed as soon
/// as the prompt shows (type-ahead, a script driving a terminal) could be echoed in between.
/// Echo goes off here first, and comes back as it was afterwards.
fn prompt_password(prompt: &str) -> std::io::Result<String> {
    let _quiet = echo_off();
    rpassword::prompt_password(prompt)
}

/// The terminal's echo turned off, restored when the guard drops; `None` (and nothing happens)
/// without a terminal, or one whose modes cannot be read or set: rpassword then does what it
/// can, as it always did.
fn echo_off() -> Option<EchoOff> {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .ok()?;
    EchoOff::new(tty.into()).ok()
}

/// Largest answer read from a switch (a `listport` of thousands of ports is a few MB).
const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// Time allowed for the whole exchange: connecting, TLS, the request and the answer.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Posts one JSON-RPC request and returns the decoded answer.
fn call(args: &mut CtlArgs, method: &str, params: Option<Value>) -> anyhow::Result<Value> {
    let mut body = json!({"jsonrpc": "2.0", "method": format!("{NAMESPACE}{method}"), "id": 0});
    if let Some(p) = params {
        body["params"] = p;
    }
    let url = Target::parse(&args.ctlurl)?;
    let mut authorization = None;
    if let Some(user) = &args.ctluser {
        if args.ctlpasswd.is_none() {
            args.ctlpasswd =
                Some(prompt_password("Control Password: ").context("cannot read password")?);
        }
        let token = base64::engine::general_purpose::STANDARD.encode(format!(
            "{user}:{}",
            args.ctlpasswd.as_deref().unwrap_or_default()
        ));
        authorization = Some(format!("Basic {token}"));
    }
    let tls = if url.tls {
        Some(tls_config(args)?)
    } else {
        None
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let exchange = post(&url, tls, authorization, body.to_string());
    let (status, text) = runtime
        .block_on(async { tokio::time::timeout(TIMEOUT, exchange).await })
        .map_err(|_| {
            anyhow::anyhow!(
                "cannot reach {}: no answer within {} s",
                args.ctlurl,
                TIMEOUT.as_secs()
            )
        })?
        // A server that refuses our client certificate (or our lack of one) says why in a TLS
        // alert: put it in words.
        .map_err(|e| anyhow::anyhow!(crate::base::tls::explain(&e, args.ctlsslcert.is_some())))?;
    // A redirect is an answer, never followed: following it would send the request (and its
    // credentials) elsewhere and show another server's answer as the switch's.
    if !status.is_success() {
        bail!(
            "HTTP Error {}: {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
    }
    serde_json::from_str(&text)
        .with_context(|| format!("answer is not JSON: {:.200}", printable(&text)))
}

/// A control URL, taken apart: `http[s]://host[:port][/path]`.
struct Target {
    url: String,
    tls: bool,
    /// Host without IPv6 brackets.
    host: String,
    port: u16,
    /// The `Host` header: the URL's host and port as written.
    authority: String,
    /// Path and query (at least `/`).
    path: String,
}

impl Target {
    fn parse(url: &str) -> anyhow::Result<Target> {
        let uri: Uri = url.parse().with_context(|| format!("invalid URL: {url}"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => bail!("unsupported URL scheme in {url} (http:// or https://)"),
        };
        let host = uri.host().filter(|h| !h.is_empty());
        let (Some(host), Some(authority)) = (host, uri.authority()) else {
            bail!("no host in URL: {url}");
        };
        let authority = authority.as_str();
        let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        Ok(Target {
            url: url.to_string(),
            tls,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port: uri.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            authority: authority.to_string(),
            path: if path.is_empty() { "/" } else { path }.to_string(),
        })
    }
}

/// The TCP (and TLS) connection to the control API, boxed.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

/// One POST: connects (through the environment's proxy, as client ports do), runs TLS for
/// `https://`, sends the body, and reads the answer (at most [`MAX_ANSWER`] bytes).
async fn post(
    url: &Target,
    tls: Option<Arc<rustls::ClientConfig>>,
    authorization: Option<String>,
    body: String,
) -> anyhow::Result<(StatusCode, String)> {
    let reach = || format!("cannot reach {}", url.url);
    let tcp = http_proxy::connect(&url.host, url.port, url.tls)
        .await
        .with_context(reach)?;
    let io: Box<dyn Io> = match tls {
        None => Box::new(tcp),
        Some(config) => {
            let name = crate::base::tls::server_name(&url.host)?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| anyhow::Error::from(e).context(reach()))?;
            Box::new(stream)
        }
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .with_context(reach)?;
    // The connection runs beside the request; its own error (a TLS alert, say) is what
    // explains a failed request best.
    let conn = tokio::spawn(conn);
    let mut req = HttpRequest::post(url.path.as_str())
        .header(header::HOST, url.authority.as_str())
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::USER_AGENT,
            concat!("etherws-ctl/", env!("CARGO_PKG_VERSION")),
        );
    if let Some(auth) = &authorization {
        req = req.header(header::AUTHORIZATION, auth.as_str());
    }
    let req = req.body(body).context("cannot build the request")?;
    let resp = match sender.send_request(req).await {
        Ok(resp) => resp,
        Err(e) => {
            let e = match conn.await {
                Ok(Err(conn_err)) => anyhow::Error::from(conn_err),
                _ => anyhow::Error::from(e),
            };
            return Err(e.context(reach()));
        }
    };
    let status = resp.status();
    let bytes = axum::body::to_bytes(axum::body::Body::new(resp.into_body()), MAX_ANSWER)
        .await
        .with_context(|| format!("cannot read the answer of {}", url.url))?;
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

/// How `ctl` checks an `https://` control URL (against `--ctlsslcert`, the system roots, or
/// with `--ctlinsecure` not at all), and the client certificate it presents (`--ctlcert`).
fn tls_config(args: &CtlArgs) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    ClientTls::new(
        args.ctlinsecure,
        args.ctlsslcert.as_deref(),
        args.ctlcert.as_deref(),
        args.ctlkey.as_deref(),
    )?
    .config()
}

/// etherws 1.3's `print_table`: two spaces, then left-aligned columns two spaces apart, each
/// as wide as its widest cell (the last one padded too).
pub(crate) fn render(rows: &[Vec<String>]) -> String {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str("  ");
        out.push_str(&cells.join("  "));
        out.push('\n');
    }
    out
}

/// A table cell: what the server sent, control characters escaped so that a hostile switch
/// (or whoever named a port) cannot send escape sequences to the operator's terminal.
fn cell(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => printable(s).into_owned(),
        Some(Value::Null) | None => "None".into(),
        Some(other) => printable(&other.to_string()).into_owned(),
    }
}

fn port_table(entries: &[Value]) -> String {
    let mut out = render(&port_rows(entries));
    out.push_str(&offload_notes(entries));
    out
}

/// 1.3's `listport` table, row by row.
fn port_rows(entries: &[Value]) -> Vec<Vec<String>> {
    let mut rows = vec![
        ["Port", "Type", "State", "RX", "TX", "Target"]
            .map(String::from)
            .to_vec(),
    ];
    for e in entries {
        let shut = e.get("shut").and_then(Value::as_bool).unwrap_or(false);
        // etherws 2 additions: `link` down (a client port that lost its peer and is
        // reconnecting), `loop_blocked` (the loop guard holds the port for a while).
        let down = e.get("link").and_then(Value::as_str) == Some("down");
        let blocked = e.get("loop_blocked").and_then(Value::as_bool) == Some(true);
        let state = match (shut, blocked, down) {
            (true, _, _) => "shut",
            (false, true, _) => "blocked",
            (false, false, true) => "down",
            (false, false, false) => "up",
        };
        // etherws 2: an offloaded netdev port shows what the offload does for it.
        // The program: `xdp` for a switch that does not say (only XDP then).
        let program = e
            .get("offload_program")
            .and_then(Value::as_str)
            .filter(|p| *p == "tc")
            .unwrap_or("xdp");
        let kind = match e.get("offload").and_then(Value::as_str) {
            Some("kernel") => format!("{}/{program}", cell(e, "type")),
            Some("userspace") => format!("{}/{program}-user", cell(e, "type")),
            Some("fallback") => format!("{}/fallback", cell(e, "type")),
            _ => cell(e, "type"),
        };
        rows.push(vec![
            cell(e, "port"),
            kind,
            state.into(),
            cell(e, "rx"),
            cell(e, "tx"),
            cell(e, "target"),
        ]);
    }
    rows
}

/// Below the table, for each offloaded port not (fully) switched in the kernel: why, in the
/// switch's words (`offload_reason`). Nothing for a switch without offloaded ports, so 1.3's
/// table stays as it was.
fn offload_notes(entries: &[Value]) -> String {
    // Apart from the table by a blank line, so that whoever parses the table can stop there.
    let mut out = String::new();
    for e in entries {
        let program = e.get("offload_program").and_then(Value::as_str);
        let tc = program == Some("tc");
        let why = e.get("offload_why").and_then(Value::as_str).unwrap_or("");
        // Which program, how attached and why: TC ports, and XDP ports whose program was
        // chosen (`--offload` alone is auto); XDP asked for by name adds no line.
        if tc || (program == Some("xdp") && !why.is_empty() && !why.starts_with("asked for")) {
            let attach = e
                .get("offload_attach")
                .and_then(Value::as_str)
                .unwrap_or("");
            if out.is_empty() {
                out.push('\n');
            }
            let by = if why.starts_with("asked for") {
                ""
            } else {
                "chosen by auto: "
            };
            out.push_str(&format!(
                "  port {}: {} program ({}), {by}{}\n",
                cell(e, "port"),
                if tc { "TC" } else { "XDP" },
                printable(attach),
                printable(why)
            ));
        }
        let what = match e.get("offload").and_then(Value::as_str) {
            Some("userspace") if tc => "TC program attached, frames go through userspace",
            Some("userspace") => "XDP attached, frames into it go through userspace",
            Some("fallback") => "offload fell back to AF_PACKET",
            _ => continue,
        };
        let why = e
            .get("offload_reason")
            .and_then(Value::as_str)
            .unwrap_or("");
        if out.is_empty() {
            out.push('\n');
        }
        out.push_str(&format!(
            "  port {}: {what}: {}\n",
            cell(e, "port"),
            printable(why)
        ));
    }
    out
}

/// `listport --verbose`: 1.3's columns, then what etherws 2 adds.
fn port_table_verbose(entries: &[Value]) -> String {
    let base = render(&port_rows(entries));
    let mut rows = vec![
        [
            "VLAN",
            "Flags",
            "Mirror",
            "Rate-in",
            "Rate-out",
            "Drops",
            "Congestion",
            "User",
            "Path",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let or_dash = |v: Option<&Value>| match v {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) => printable(s).into_owned(),
        Some(v) => printable(&v.to_string()).into_owned(),
    };
    let rate = |v: Option<&Value>| match v.and_then(Value::as_u64) {
        Some(r) => crate::settings::values::BitRate(r).to_string(),
        None => "-".into(),
    };
    for e in entries {
        let vlan = match e.get("vlan").and_then(Value::as_u64) {
            Some(v) => v.to_string(),
            None => "trunk".into(),
        };
        let mut flags: Vec<&str> = Vec::new();
        for (key, name) in [
            ("isolated", "isolated"),
            ("mesh", "mesh"),
            ("super_frames", "super"),
        ] {
            if e.get(key).and_then(Value::as_bool) == Some(true) {
                flags.push(name);
            }
        }
        if e.get("trusted").and_then(Value::as_bool) == Some(false) {
            flags.push("untrusted");
        }
        let drops: u64 = [
            "tx_dropped",
            "tx_expired",
            "tx_aqm_dropped",
            "storm_dropped",
            "vlan_dropped",
            "rate_in_dropped",
            "rate_out_dropped",
            "loop_dropped",
            "rx_dropped",
            "rx_invalid",
            "rx_oversize",
            "guard_dropped",
        ]
        .iter()
        .filter_map(|k| e.get(*k).and_then(Value::as_u64))
        .sum();
        rows.push(vec![
            vlan,
            if flags.is_empty() {
                "-".into()
            } else {
                flags.join(",")
            },
            or_dash(e.get("mirror")),
            rate(e.get("rate_in")),
            rate(e.get("rate_out")),
            drops.to_string(),
            or_dash(e.get("congestion")),
            or_dash(e.get("user")),
            or_dash(e.get("path")),
        ]);
    }
    // Side by side: the 1.3 table's lines, each followed by the added columns.
    let extra = render(&rows);
    let mut out: String = base
        .lines()
        .zip(extra.lines())
        .map(|(a, b)| format!("{a}  {b}\n"))
        .collect();
    out.push_str(&offload_notes(entries));
    out
}

fn if_table(entries: &[Value]) -> String {
    let mut rows = vec![
        ["Port", "Type", "Address", "Netmask", "MTU", "Target"]
            .map(String::from)
            .to_vec(),
    ];
    for e in entries {
        rows.push(
            ["port", "type", "address", "netmask", "mtu", "target"]
                .map(|k| cell(e, k))
                .to_vec(),
        );
    }
    render(&rows)
}

fn fdb_table(entries: &[Value]) -> String {
    let mut rows = vec![["Port", "VLAN", "MAC", "Age"].map(String::from).to_vec()];
    for e in entries {
        rows.push(["port", "vid", "mac", "age"].map(|k| cell(e, k)).to_vec());
    }
    render(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_output_escapes_c1_controls_too() {
        let v = json!({"target": "a\u{1b}[2Jb\u{9b}31mc\u{7f}"});
        let out = json_text(&v);
        assert!(out.contains(r"a\u001b[2Jb\u009b31mc\u007f"), "{out}");
        assert!(out.chars().all(|c| !c.is_control() || c == '\n'), "{out}");
        assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), v);
    }

    #[test]
    fn table_matches_etherws_1_3() {
        // What Python's print_table prints for this listport answer.
        let out = port_table(&[
            json!({"port": 1, "type": "tap", "shut": false, "rx": 12, "tx": 3, "target": "ethws0"}),
            json!({"port": 2, "type": "client", "shut": true, "rx": 0, "tx": 1024, "target": "ws://192.0.2.1/"}),
        ]);
        let expected = concat!(
            "  Port  Type    State  RX  TX    Target         \n",
            "  1     tap     up     12  3     ethws0         \n",
            "  2     client  shut   0   1024  ws://192.0.2.1/\n",
        );
        assert_eq!(out, expected);
    }

    #[test]
    fn empty_tables_print_the_header() {
        assert_eq!(fdb_table(&[]), "  Port  VLAN  MAC  Age\n");
        assert_eq!(
            if_table(&[]),
            "  Port  Type  Address  Netmask  MTU  Target\n"
        );
    }

    #[test]
    fn local_checks() {
        let setif = |mtu, address: Option<&str>| {
            request_for(&CtlCommand::Setif {
                port: 1,
                address: address.map(String::from),
                netmask: None,
                mtu,
            })
            .map(|r| r.1)
        };
        assert!(setif(Some(575), None).is_err());
        assert!(setif(Some(576), None).is_ok());
        assert!(setif(None, Some("300.1.1.1")).is_err());
        assert_eq!(
            setif(None, Some("192.0.2.1")).unwrap(),
            Some(json!({"port": 1, "address": "192.0.2.1"}))
        );
        assert!(request_for(&CtlCommand::Delport { port: 0 }).is_err());
        let client = |target: &str, user: Option<&str>, passwd: Option<&str>| {
            request_for(&CtlCommand::Addport {
                kind: AddPort::Client {
                    target: target.into(),
                    user: user.map(String::from),
                    passwd: passwd.map(String::from),
                    cacerts: None,
                    insecure: false,
                    cert: None,
                    key: None,
                    mesh: false,
                    transport: None,
                },
            })
        };
        assert!(client("http://x/", None, None).is_err());
        assert!(client("ws://x/", None, Some("pw")).is_err());
        assert!(client("ws://x/", Some("u"), Some("pw")).is_ok());
    }

    /// `--offload` alone sends 1.3-style `true`; `--offload=tc` names the program.
    #[test]
    fn offload_option_of_a_netdev_port() {
        use clap::Parser;
        let opts = |args: &[&str]| {
            let argv = ["etherws", "ctl", "addport", "netdev", "s1"]
                .iter()
                .chain(args);
            let cli = crate::app::cli::Cli::try_parse_from(argv).unwrap();
            let crate::app::cli::Command::Ctl(ctl) = cli.command else {
                panic!("not ctl")
            };
            request_for(&ctl.command).unwrap().1.unwrap()["options"].clone()
        };
        assert_eq!(opts(&[]), json!({}));
        assert_eq!(opts(&["--offload"]), json!({"offload": true}));
        assert_eq!(opts(&["--offload=tc"]), json!({"offload": "tc"}));
        assert_eq!(opts(&["--offload=xdp"]), json!({"offload": "xdp"}));
        assert_eq!(
            opts(&["--offload", "--xdp-mode", "generic"]),
            json!({"offload": true, "xdp_mode": "generic"})
        );
        let argv = [
            "etherws",
            "ctl",
            "addport",
            "netdev",
            "s1",
            "--offload=tc",
            "--xdp-mode",
            "native",
        ];
        let cli = crate::app::cli::Cli::try_parse_from(argv).unwrap();
        let crate::app::cli::Command::Ctl(ctl) = cli.command else {
            panic!("not ctl")
        };
        assert!(request_for(&ctl.command).is_err());
        let argv = ["etherws", "ctl", "addport", "netdev", "s1", "--offload=bpf"];
        assert!(crate::app::cli::Cli::try_parse_from(argv).is_err());
    }

    /// TC ports in the table: `netdev/tc`, `netdev/tc-user`, and a note naming the program.
    #[test]
    fn tc_ports_in_the_table() {
        let row = |port: u64, offload: &str| {
            json!({"port": port, "type": "netdev", "shut": false, "rx": 0, "tx": 0,
                   "target": "s1", "offload": offload, "offload_program": "tc",
                   "offload_attach": "tcx", "offload_why": "asked for (--offload=tc)",
                   "offload_reason": "a policy"})
        };
        let out = port_table(&[row(1, "kernel"), row(2, "userspace")]);
        assert!(out.contains("  1     netdev/tc "), "{out}");
        assert!(out.contains("  2     netdev/tc-user "), "{out}");
        assert!(
            out.contains("\n  port 1: TC program (tcx), asked for (--offload=tc)\n"),
            "{out}"
        );
        assert!(
            out.contains("  port 2: TC program attached, frames go through userspace: a policy"),
            "{out}"
        );
    }

    #[test]
    fn client_certificate_paths_are_sent_absolute() {
        let req = request_for(&CtlCommand::Addport {
            kind: AddPort::Client {
                target: "wss://192.0.2.1/".into(),
                user: None,
                passwd: None,
                cacerts: Some("ca.pem".into()),
                insecure: false,
                cert: Some("client.pem".into()),
                key: Some("/etc/client.key".into()),
                mesh: false,
                transport: None,
            },
        })
        .unwrap();
        let opts = &req.1.unwrap()["options"];
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(opts["cert"], json!(cwd.join("client.pem")));
        assert_eq!(opts["cacerts"], json!(cwd.join("ca.pem")));
        assert_eq!(opts["key"], json!("/etc/client.key"));
    }

    #[test]
    fn control_urls() {
        let t = Target::parse("https://[2001:db8::1]:7443/ctl?x=1").unwrap();
        assert!(t.tls);
        assert_eq!(
            (
                t.host.as_str(),
                t.port,
                t.authority.as_str(),
                t.path.as_str()
            ),
            ("2001:db8::1", 7443, "[2001:db8::1]:7443", "/ctl?x=1")
        );
        let t = Target::parse("http://u:p@switch.example").unwrap();
        assert_eq!(
            (
                t.tls,
                t.host.as_str(),
                t.port,
                t.authority.as_str(),
                t.path.as_str()
            ),
            (false, "switch.example", 80, "switch.example", "/")
        );
        assert_eq!(Target::parse("https://192.0.2.1/ctl").unwrap().port, 443);
        for bad in ["ftp://192.0.2.1/", "/ctl", "http://", "not a url"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
