//! The switch under test: an `etherws sw` process, its log, its `ctl`.

use super::*;

/// A running `etherws sw --foreground`, killed on drop; its log is printed if the test panics.
pub struct Switch {
    label: String,
    netns: Option<String>,
    child: Child,
    log: PathBuf,
    /// The log file is the caller's ([`SwitchBuilder::log_file`]): kept after the switch.
    keep_log: bool,
    pub host: String,
    pub ws_port: u16,
    pub ctl_port: u16,
    /// `--ctlurl` for `ctl()`; None: `http://127.0.0.1:CTLPORT/ctl`.
    ctl_url: Option<String>,
    /// Global ctl options (e.g. credentials, CA) that `ctl()` passes before the command.
    ctl_opts: Vec<String>,
}

/// A loopback port that was free a moment ago (racy: only where a port must be known before
/// the switch starts, e.g. a shared listener's one number for `--port` and `--ctlport`, or an
/// `https://` control URL; everything else asks the switch for `--port 0`).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// The port of `key=ADDR:PORT` in a line of the switch's log.
fn logged_port(log: &str, key: &str) -> Option<u16> {
    log.lines()
        .filter(|l| l.contains("serving"))
        .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix(key)))
        .and_then(|a| a.rsplit_once(':'))
        .and_then(|(_, p)| p.parse().ok())
}

impl Switch {
    /// `etherws sw --foreground --host HOST --port PORT --ctlhost 127.0.0.1 --ctlport CTLPORT
    /// EXTRA...` inside `ns`.
    pub fn in_netns(
        ns: &Netns,
        label: &str,
        host: &str,
        port: u16,
        ctl_port: u16,
        extra: &[&str],
    ) -> Switch {
        SwitchBuilder::new(label)
            .netns(ns)
            .host(host)
            .port(port)
            .ctl_port(ctl_port)
            .args(extra)
            .start()
    }

    /// A switch in the root namespace on loopback only (no root needed), on two free ports.
    pub fn local(label: &str, extra: &[&str]) -> Switch {
        SwitchBuilder::new(label).args(extra).start()
    }

    /// A switch on loopback whose WebSocket and control API share one listener (same host and
    /// port), as `--host/--port` equal to `--ctlhost/--ctlport` asks for.
    pub fn local_shared(label: &str) -> Switch {
        let p = free_port();
        SwitchBuilder::new(label).port(p).ctl_port(p).start()
    }

    fn cmd(netns: &Option<String>) -> Command {
        let mut c = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin());
                c
            }
            None => Command::new(bin()),
        };
        clear_proxy_env(&mut c);
        c.stdin(Stdio::null());
        c
    }

    /// A switch with more settings than `in_netns`/`local` offer (environment, control
    /// address, ctl options); see [`SwitchBuilder`].
    pub fn builder(label: &str) -> SwitchBuilder {
        SwitchBuilder::new(label)
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("switch {} exited during start-up: {status}", self.label);
            }
            let out = self.ctl(&["listport"]);
            if lists_ports(&out) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "switch {} control API never answered\nlast ctl listport:\n{}",
                    self.label,
                    show(&out)
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn ctl_url(&self) -> String {
        self.ctl_url
            .clone()
            .unwrap_or_else(|| format!("http://127.0.0.1:{}/ctl", self.ctl_port))
    }

    /// The control API address as seen from inside the switch's namespace.
    pub fn ctl_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ctl_port))
    }

    /// `etherws ctl --ctlurl URL [CTL-OPTS...] ARGS...` (in the switch's namespace), with the
    /// ctl options the switch was built with (none unless [`SwitchBuilder::ctl_opts`]).
    pub fn ctl(&self, args: &[&str]) -> Output {
        let opts: Vec<&str> = self.ctl_opts.iter().map(String::as_str).collect();
        self.ctl_with(&opts, args)
    }

    /// `etherws ctl --ctlurl URL OPTS... ARGS...` (in the switch's namespace): `opts` replace
    /// the switch's own ctl options (e.g. other or no credentials).
    pub fn ctl_with(&self, opts: &[&str], args: &[&str]) -> Output {
        let url = self.ctl_url();
        let mut c = Self::cmd(&self.netns);
        c.args(["ctl", "--ctlurl", &url]).args(opts).args(args);
        c.output()
            .unwrap_or_else(|e| panic!("cannot run ctl {opts:?} {args:?}: {e}"))
    }

    /// `ctl` that must succeed without a JSON-RPC error; returns stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() && !stdout.contains("(-3"),
            "switch {}: ctl {args:?} failed\n{}",
            self.label,
            show(&out)
        );
        stdout
    }

    /// A JSON-RPC call to the switch's control API (plain HTTP, no credentials), from inside
    /// its namespace; returns the `result`.
    pub fn rpc(&self, method: &str, params: Value) -> Value {
        let url = self.ctl_url();
        let path = url
            .strip_prefix("http://")
            .and_then(|rest| rest.find('/').map(|i| rest[i..].to_string()))
            .unwrap_or_else(|| panic!("rpc() needs a plain http:// control URL: {url}"));
        let body = serde_json::json!({
            "jsonrpc": "2.0",
            "method": format!("etherws.control.{method}"),
            "params": params,
            "id": 1,
        })
        .to_string();
        let addr = self.ctl_addr();
        let call = move || http_post(addr, &path, &body);
        let (status, answer) = match &self.netns {
            Some(ns) => enter_named(ns, call),
            None => call(),
        };
        let v: Value = serde_json::from_str(&answer)
            .unwrap_or_else(|e| panic!("{method}: HTTP {status}, not JSON ({e}): {answer}"));
        assert!(v["error"].is_null(), "{method}: {v}");
        v["result"].clone()
    }

    /// Port `n` as `listPort` reports it in JSON (every field, 1.3's and the extra ones).
    pub fn port_status(&self, n: u32) -> Value {
        let ports = self.rpc("listPort", serde_json::json!({}));
        ports["entries"]
            .as_array()
            .and_then(|e| e.iter().find(|p| p["port"] == n))
            .cloned()
            .unwrap_or_else(|| panic!("switch {}: no port {n} in {ports}", self.label))
    }

    pub fn listport(&self) -> Vec<PortRow> {
        parse_ports(&self.ctl_ok(&["listport"]))
    }

    pub fn listif(&self) -> Vec<IfRow> {
        parse_ifs(&self.ctl_ok(&["listif"]))
    }

    pub fn listfdb(&self) -> Vec<FdbRow> {
        parse_fdb(&self.ctl_ok(&["listfdb"]))
    }

    pub fn port(&self, n: u32) -> Option<PortRow> {
        self.listport().into_iter().find(|p| p.port == n)
    }

    /// `ctl addport KIND TARGET OPTS...` that must add one port of that kind (`netdev` also
    /// matches `netdev/xdp`) on that target; returns the row it prints.
    pub fn add_port(&self, kind: &str, target: &str, opts: &[&str]) -> PortRow {
        let mut args = vec!["addport", kind, target];
        args.extend_from_slice(opts);
        let rows = parse_ports(&self.ctl_ok(&args));
        assert!(
            rows.len() == 1 && rows[0].kind.starts_with(kind) && rows[0].target == target,
            "switch {}: ctl {args:?} should print the new port: {rows:?}",
            self.label
        );
        rows[0].clone()
    }

    /// A TAP port carrying `ip`/24: `addport tap TAP`, then, once the interface is there in
    /// `ns` (the switch's namespace), `setif PORT --address IP --netmask 255.255.255.0`;
    /// checks what `setif` prints and the kernel's address. Returns the `addport` row (the
    /// port is not necessarily 1: a peer may have connected first).
    pub fn add_tap(&self, ns: &Netns, tap: &str, ip: &str) -> PortRow {
        const NETMASK: &str = "255.255.255.0";
        let row = self.add_port("tap", tap, &[]);
        ns.wait_link(tap);
        let port = row.port.to_string();
        let ifs = parse_ifs(&self.ctl_ok(&["setif", &port, "--address", ip, "--netmask", NETMASK]));
        assert!(
            ifs.len() == 1 && (ifs[0].address.as_str(), ifs[0].netmask.as_str()) == (ip, NETMASK),
            "setif {port} should print the interface with {ip}/{NETMASK}: {ifs:?}"
        );
        assert!(
            ns.addrs(tap).contains(&format!("{ip}/24")),
            "{tap} should carry {ip}/24 in the kernel, has {:?}",
            ns.addrs(tap)
        );
        row
    }

    /// The server ports (incoming WebSocket connections).
    pub fn servers(&self) -> Vec<PortRow> {
        self.listport()
            .into_iter()
            .filter(|p| p.kind == "server")
            .collect()
    }

    /// Waits up to 10 s until the switch has exactly `n` server ports; returns them.
    pub fn wait_servers(&self, n: usize) -> Vec<PortRow> {
        poll(
            &format!("{n} server port(s) on switch {}", self.label),
            Duration::from_secs(10),
            || {
                let s = self.servers();
                if s.len() == n {
                    Ok(s)
                } else {
                    Err(format!("{s:?}"))
                }
            },
        )
    }

    /// Waits up to 10 s until port `n` is a server port.
    pub fn wait_server_port(&self, n: u32) {
        poll(
            &format!("server port {n} on switch {}", self.label),
            Duration::from_secs(10),
            || {
                let ports = self.listport();
                if ports.iter().any(|p| p.port == n && p.kind == "server") {
                    Ok(())
                } else {
                    Err(format!("{ports:?}"))
                }
            },
        );
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The file the switch logs to.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The switch's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `sig` (e.g. `libc::SIGSTOP`, `SIGKILL`, `SIGTERM`) to the switch process (`ip
    /// netns exec` execs, so the child is the switch itself).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits up to `timeout` for the switch to exit and returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "===== log of switch {} ({}) =====\n{}===== end of log of switch {} =====",
                self.label,
                self.log.display(),
                self.log(),
                self.label
            );
        } else if !self.keep_log {
            let _ = fs::remove_file(&self.log);
        }
    }
}

/// Settings for a [`Switch`] beyond `in_netns`/`local`: `etherws sw --foreground --host HOST
/// --port PORT --ctlhost CTLHOST --ctlport CTLPORT ARGS...` with extra environment variables,
/// and the `--ctlurl` and global ctl options that `ctl()` (and the readiness probe) use.
///
/// Defaults: root namespace, host and ctlhost 127.0.0.1, two free loopback ports, no extra
/// environment (the proxy variables are always cleared first, then `env` is applied).
#[derive(Clone)]
pub struct SwitchBuilder {
    label: String,
    netns: Option<String>,
    host: String,
    port: Option<u16>,
    ctl_host: String,
    ctl_port: Option<u16>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    ctl_url: Option<String>,
    ctl_opts: Vec<String>,
    log: Option<PathBuf>,
    die_with_parent: bool,
}

impl SwitchBuilder {
    pub fn new(label: &str) -> SwitchBuilder {
        SwitchBuilder {
            label: label.to_string(),
            netns: None,
            host: "127.0.0.1".into(),
            port: None,
            ctl_host: "127.0.0.1".into(),
            ctl_port: None,
            args: Vec::new(),
            env: Vec::new(),
            ctl_url: None,
            ctl_opts: Vec::new(),
            log: None,
            die_with_parent: false,
        }
    }

    /// The name the switch goes by in failure messages and its log file.
    pub fn label(mut self, label: &str) -> Self {
        self.label = label.to_string();
        self
    }

    /// Run inside this namespace (the switch dies with it).
    pub fn netns(mut self, ns: &Netns) -> Self {
        self.netns = Some(ns.name().to_string());
        self
    }

    /// `--host` (WebSocket listener address).
    pub fn host(mut self, host: &str) -> Self {
        self.host = host.to_string();
        self
    }

    /// `--port` (WebSocket listener port).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// `--ctlhost` (control API address).
    pub fn ctl_host(mut self, host: &str) -> Self {
        self.ctl_host = host.to_string();
        self
    }

    /// `--ctlport` (control API port).
    pub fn ctl_port(mut self, port: u16) -> Self {
        self.ctl_port = Some(port);
        self
    }

    /// More `sw` arguments (e.g. `--sslkey K --sslcert C`, `--htpasswd F`).
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// An environment variable for the switch process (e.g. `http_proxy`).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// The `--ctlurl` ctl uses (default `http://127.0.0.1:CTLPORT/ctl`), e.g. an https:// one.
    pub fn ctl_url(mut self, url: &str) -> Self {
        self.ctl_url = Some(url.to_string());
        self
    }

    /// Global ctl options for `ctl()` and the readiness probe, e.g. `--ctluser U --ctlpasswd
    /// P`, `--ctlsslcert CA`.
    pub fn ctl_opts(mut self, opts: &[&str]) -> Self {
        self.ctl_opts.extend(opts.iter().map(|a| a.to_string()));
        self
    }

    /// Log to this file (created, or truncated), which is then the caller's: kept when the
    /// switch is dropped. Default: a file in the temp dir, removed on drop unless the thread
    /// panics (then it is printed).
    pub fn log_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.log = Some(path.into());
        self
    }

    /// Have the kernel kill the switch (SIGKILL) when the thread that started it ends, e.g.
    /// when a driver is killed before it could drop the [`Switch`] (`PR_SET_PDEATHSIG`). Only
    /// for a switch started by a thread that outlives it, such as a program's main thread: a
    /// test thread ends with its test.
    pub fn die_with_parent(mut self) -> Self {
        self.die_with_parent = true;
        self
    }

    /// Start the switch and wait until its control API answers `ctl listport`. Ports not
    /// given are `0`: the switch binds free ones, and says which in its log.
    pub fn start(self) -> Switch {
        let port = self.port.unwrap_or(0);
        let ctl_port = self.ctl_port.unwrap_or(0);
        let keep_log = self.log.is_some();
        let log = self.log.unwrap_or_else(|| log_path(&self.label));
        let logf = File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let port_s = port.to_string();
        let ctl_s = ctl_port.to_string();
        let mut c = Switch::cmd(&self.netns);
        c.args([
            "sw",
            "--foreground",
            "--host",
            &self.host,
            "--port",
            &port_s,
        ])
        .args(["--ctlhost", &self.ctl_host, "--ctlport", &ctl_s])
        .args(&self.args)
        .envs(self.env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(logf);
        if self.die_with_parent {
            use std::os::unix::process::CommandExt;
            // SAFETY: the closure runs in the child between fork and exec and only calls
            // prctl(2), which is async-signal-safe; the setting survives the exec (of `ip netns
            // exec`, which execs the switch in turn).
            unsafe {
                c.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = c
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", bin()));
        let mut sw = Switch {
            label: self.label,
            netns: self.netns,
            child,
            log,
            keep_log,
            host: self.host,
            ws_port: port,
            ctl_port,
            ctl_url: self.ctl_url,
            ctl_opts: self.ctl_opts,
        };
        if port == 0 || ctl_port == 0 {
            let (ws, ctl) = poll(
                &format!("switch {} to say where it listens", sw.label),
                Duration::from_secs(10),
                || {
                    if let Ok(Some(status)) = sw.child.try_wait() {
                        panic!(
                            "switch {} exited during start-up: {status}\n{}",
                            sw.label,
                            sw.log()
                        );
                    }
                    let log = sw.log();
                    match (
                        logged_port(&log, "ws_addr="),
                        logged_port(&log, "ctl_addr="),
                    ) {
                        (Some(w), Some(c)) => Ok((w, c)),
                        _ => Err(log),
                    }
                },
            );
            sw.ws_port = ws;
            sw.ctl_port = ctl;
        }
        sw.wait_ready();
        sw
    }
}

/// Whether `ctl listport` succeeded and printed its table (the switch answers).
pub(crate) fn lists_ports(out: &Output) -> bool {
    out.status.success()
        && header(&String::from_utf8_lossy(&out.stdout))
            .first()
            .map(String::as_str)
            == Some("Port")
}

/// An `etherws` command (not started), in `ns` or the root namespace, with the proxy
/// variables cleared and stdin on /dev/null.
pub fn etherws(ns: Option<&Netns>) -> Command {
    Switch::cmd(&ns.map(|n| n.name().to_string()))
}

/// `etherws sw --foreground ARGS...` that must fail at start-up: waits up to 15 s for it to
/// exit (killing it and panicking if it is still running), returns its output.
pub fn sw_start_fails(args: &[&str]) -> Output {
    let mut c = etherws(None);
    c.args(["sw", "--foreground"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", bin()));
    let deadline = Instant::now() + Duration::from_secs(15);
    while matches!(child.try_wait(), Ok(None)) {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect output");
            panic!(
                "etherws sw {args:?} kept running, expected a start-up error\n{}",
                show(&out)
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("collect output")
}
