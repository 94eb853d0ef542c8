//! `etherws ctl`: one JSON-RPC call to a switch, printed as etherws 1.3 prints it.
//!
//! Output is byte-for-byte the original's: an aligned table with a header row, or an error as
//! `  MESSAGE (CODE)` and `    DATA`. Unlike 1.3, an error also makes the exit status 1, so
//! scripts can tell.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use serde_json::{Value, json};
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

use crate::cli::{AddPort, CtlArgs, CtlCommand};
use crate::control::NAMESPACE;
use crate::escape::printable;

/// Something to print and exit 1 for.
pub struct Failure {
    pub code: i64,
    pub message: String,
    pub data: String,
}

impl Failure {
    fn internal(e: anyhow::Error) -> Self {
        Failure {
            code: -32603,
            message: "Internal error".into(),
            data: format!("{e:#}"),
        }
    }

    /// Prints the failure; what the server sent is escaped (it must not drive the terminal).
    pub fn print(&self) {
        println!("  {} ({})", printable(&self.message), self.code);
        println!("    {}", printable(&self.data));
    }
}

/// Runs `ctl`; prints the result or the failure. Returns whether it succeeded.
pub fn run(mut args: CtlArgs) -> bool {
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
    let (method, params, table) = request_for(&args.command).map_err(Failure::internal)?;
    let answer = call(args, method, params).map_err(Failure::internal)?;
    if let Some(err) = answer.get("error") {
        return Err(Failure {
            code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: text(err.get("message")),
            data: text(err.get("data")),
        });
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
        CtlCommand::Listport => ("listPort", None, port_table),
        CtlCommand::Listif => ("listInterface", None, if_table),
        CtlCommand::Listfdb => ("listFdb", None, fdb_table),
        CtlCommand::Delport { port } => (
            "delPort",
            Some(json!({"port": positive(*port)?})),
            port_table,
        ),
        CtlCommand::Setport { port, shut } => {
            let mut p = json!({"port": positive(*port)?});
            if let Some(s) = shut {
                p["shut"] = json!(*s == 1);
            }
            ("setPort", Some(p), port_table)
        }
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
            let (kind, target, opts) = match kind {
                AddPort::Netdev {
                    target,
                    offload,
                    xdp_mode,
                } => {
                    let mut opts = json!({});
                    if *offload {
                        opts["offload"] = json!(true);
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
                } => {
                    if !target.starts_with("ws://") && !target.starts_with("wss://") {
                        bail!("Invalid target URL scheme: {target}");
                    }
                    let user = user.clone().filter(|u| !u.is_empty());
                    let mut passwd = passwd.clone().filter(|p| !p.is_empty());
                    if user.is_none() && passwd.is_some() {
                        bail!("Authentication required but username empty");
                    }
                    if user.is_some() && passwd.is_none() {
                        passwd = Some(
                            rpassword::prompt_password("Client Password: ")
                                .context("cannot read password")?,
                        );
                    }
                    let cacerts = cacerts
                        .as_ref()
                        .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()));
                    (
                        "client",
                        target,
                        json!({"user": user, "passwd": passwd, "cacerts": cacerts, "insecure": insecure}),
                    )
                }
            };
            (
                "addPort",
                Some(json!({"type": kind, "target": target, "options": opts})),
                port_table,
            )
        }
    })
}

/// Largest answer read from a switch (a `listport` of thousands of ports is a few MB).
const MAX_ANSWER: u64 = 64 * 1024 * 1024;

/// Posts one JSON-RPC request and returns the decoded answer.
fn call(args: &mut CtlArgs, method: &str, params: Option<Value>) -> anyhow::Result<Value> {
    let mut body = json!({"jsonrpc": "2.0", "method": format!("{NAMESPACE}{method}"), "id": 0});
    if let Some(p) = params {
        body["params"] = p;
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        // A redirect is an answer, never followed: following it would send the request (and
        // its credentials) elsewhere and show another server's answer as the switch's.
        .max_redirects(0)
        .tls_config(tls_config(args)?)
        .build()
        .into();
    let mut req = agent
        .post(&args.ctlurl)
        .header("Content-Type", "application/json");
    if let Some(user) = &args.ctluser {
        if args.ctlpasswd.is_none() {
            args.ctlpasswd = Some(
                rpassword::prompt_password("Control Password: ").context("cannot read password")?,
            );
        }
        let token = base64::engine::general_purpose::STANDARD.encode(format!(
            "{user}:{}",
            args.ctlpasswd.as_deref().unwrap_or_default()
        ));
        req = req.header("Authorization", &format!("Basic {token}"));
    }
    let mut resp = req
        .send(body.to_string())
        .with_context(|| format!("cannot reach {}", args.ctlurl))?;
    let status = resp.status();
    let text = resp
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_string()
        .with_context(|| format!("cannot read the answer of {}", args.ctlurl))?;
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

/// How `ctl` checks an `https://` control URL: against `--ctlsslcert`, the system roots, or
/// (with `--ctlinsecure`) not at all.
fn tls_config(args: &CtlArgs) -> anyhow::Result<TlsConfig> {
    let builder = TlsConfig::builder().provider(TlsProvider::Rustls);
    if args.ctlinsecure {
        return Ok(builder.disable_verification(true).build());
    }
    if !args.ctlurl.starts_with("https://") {
        return Ok(builder.build());
    }
    let certs = match &args.ctlsslcert {
        Some(path) => crate::tls::load_certs(path)?,
        None => crate::tls::system_roots()?,
    };
    let roots: Vec<Certificate<'static>> = certs
        .iter()
        .map(|c| Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    Ok(builder
        .root_certs(RootCerts::new_with_certs(&roots))
        .build())
}

/// etherws 1.3's `print_table`: two spaces, then left-aligned columns two spaces apart, each
/// as wide as its widest cell (the last one padded too).
pub fn render(rows: &[Vec<String>]) -> String {
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
        // etherws 2: an eBPF-offloaded netdev port shows as `netdev/xdp`.
        let kind = match e.get("datapath").and_then(Value::as_str) {
            Some("xdp") => format!("{}/xdp", cell(e, "type")),
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
    render(&rows)
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
                },
            })
        };
        assert!(client("http://x/", None, None).is_err());
        assert!(client("ws://x/", None, Some("pw")).is_err());
        assert!(client("ws://x/", Some("u"), Some("pw")).is_ok());
    }
}
