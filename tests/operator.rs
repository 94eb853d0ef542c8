//! What an operator meets before and around the data path: a daemon that says why it did not
//! start, its pidfile and its log, `--version`, `--check-config`, `--log-format json` and
//! `ctl --json`.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use etherws_testkit::*;
use serde_json::Value;

/// Runs `etherws ARGS` in `ns` (or on the host) to completion, with a deadline: a daemonizing
/// `sw` returns once the switch is up or has failed.
fn etherws_run(ns: Option<&Netns>, args: &[&str]) -> Output {
    let mut child = etherws(ns)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start etherws");
    let deadline = Instant::now() + Duration::from_secs(20);
    while matches!(child.try_wait(), Ok(None)) {
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("etherws {args:?} did not return");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("collect output")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn daemon_says_why_it_did_not_start_and_names_itself_in_its_pidfile() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("opd");
    let dir = TempDir::new("opd");
    let (port, ctl) = (free_port(), free_port());
    let log = dir.file("etherws.log");
    let logconf = dir.write("log.toml", &format!("output = {log:?}\n"));
    let pidfile = dir.file("etherws.pid");

    // A port the configuration declares but the kernel cannot give: the daemon exits 1 and the
    // reason reaches the terminal, before it would have detached.
    let bad = dir.write(
        "bad.toml",
        &format!(
            "[switch]\nport = {port}\nctlport = {ctl}\n\n[[port]]\ntype = \"netdev\"\ntarget = \"nosuch0\"\n"
        ),
    );
    let out = etherws_run(Some(&ns), &["sw", "--config", &bad, "--logconf", &logconf]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bad.toml:5: port 1") && err.contains("nosuch0"),
        "{err}"
    );
    assert!(std::fs::read_to_string(&log).unwrap().contains("nosuch0"));

    // A good one: it returns 0 once the switch is up, and the pidfile names the daemon.
    let good = dir.write(
        "good.toml",
        &format!(
            "[switch]\nport = {port}\nctlport = {ctl}\n\n[[port]]\ntype = \"tap\"\ntarget = \"opdtap0\"\n\n[[port]]\ntype = \"client\"\ntarget = \"wss://192.0.2.9/\"\ninsecure = true\n"
        ),
    );
    let args = [
        "sw",
        "--config",
        &good,
        "--logconf",
        &logconf,
        "--pidfile",
        &pidfile,
    ];
    let out = etherws_run(Some(&ns), &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .expect("pidfile written")
        .trim()
        .parse()
        .expect("a pid");
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    assert_eq!(comm.trim(), "etherws");
    assert!(ns.pids().contains(&pid), "{pid} not in {:?}", ns.pids());
    // Up already: the ports of the file exist, ctl answers.
    let url = format!("http://127.0.0.1:{ctl}/ctl");
    let out = etherws_run(Some(&ns), &["ctl", "--ctlurl", &url, "listport"]);
    let table = text(&out.stdout);
    assert!(
        table.contains("opdtap0") && table.contains("wss://192.0.2.9/"),
        "{table}"
    );
    // Warnings reach the log, not /dev/null.
    poll(
        "the insecure-TLS warning in the log",
        Duration::from_secs(10),
        || {
            let l = std::fs::read_to_string(&log).unwrap_or_default();
            if l.contains("NOT verified (--insecure)") {
                Ok(())
            } else {
                Err(l)
            }
        },
    );

    // A second switch with the same pidfile is refused, with the reason.
    let other = [
        "sw",
        "--foreground",
        "--port",
        "0",
        "--ctlport",
        "0",
        "--pidfile",
        &pidfile,
    ];
    let out = etherws_run(Some(&ns), &other);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!("names a running etherws (pid {pid})")),
        "{}",
        text(&out.stderr)
    );

    // SIGTERM: it stops, and takes its pidfile with it.
    // SAFETY: kill(2) on a pid of our own namespace's daemon; no memory is involved.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    poll("the pidfile gone", Duration::from_secs(10), || {
        if std::path::Path::new(&pidfile).exists() {
            Err("still there".into())
        } else {
            Ok(())
        }
    });
}

#[test]
fn version_names_the_build() {
    let out = etherws(None).arg("--version").output().expect("run");
    let v = text(&out.stdout);
    assert!(out.status.success(), "{v}");
    // `etherws 2.0.0-alpha.1 (git 0123456789ab; eBPF offload: built in)`
    assert!(v.starts_with("etherws 2."), "{v}");
    assert!(v.contains("(git ") && v.contains("eBPF offload: "), "{v}");
    let sw = text(
        &etherws(None)
            .args(["sw", "--version"])
            .output()
            .unwrap()
            .stdout,
    );
    assert!(sw.contains("eBPF offload: "), "{sw}");
}

#[test]
fn check_config_validates_without_starting_anything() {
    let dir = TempDir::new("opc");
    let port = free_port();
    let good = dir.write(
        "good.toml",
        &format!(
            "[switch]\nport = {port}\n\n[[path]]\npath = \"/lab\"\nvlan = 10\n\n[user.alice]\nsource = \"certificate\"\nvlan = 20\n\n[[port]]\ntype = \"tap\"\ntarget = \"chk0\"\n"
        ),
    );
    let out = etherws_run(None, &["sw", "--check-config", &good]);
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}{}", text(&out.stderr));
    assert!(
        said.contains("good.toml: OK (1 port, WebSocket path /lab, 1 pinned user)"),
        "{said}"
    );
    // Nothing was bound: the port is still free.
    std::net::TcpListener::bind(("0.0.0.0", port)).expect("the port is still free");

    for (file, body, want) in [
        (
            "typo.toml",
            "[switch]\nagout = 3\n",
            "typo.toml:2: unknown key \"agout\" in [switch]",
        ),
        (
            "nohtpasswd.toml",
            "[switch]\nhtpasswd = \"missing.htpasswd\"\n",
            "missing.htpasswd",
        ),
        (
            "badpath.toml",
            "[[path]]\npath = \"/a\"\nvlan = 5000\n",
            "badpath.toml:3: path 1: vlan must be from 0 to 4094",
        ),
        // A user pin no one can match: the switch-wide file's alice where there is none, a
        // path not served, a path whose users are the switch-wide file's.
        (
            "nofile.toml",
            "[user.alice]\nvlan = 20\n",
            "nofile.toml:1: user alice: pins alice of the switch-wide htpasswd file, and there \
             is none",
        ),
        (
            "unserved.toml",
            "[[path]]\npath = \"/a\"\n\n[user.alice]\npath = \"/b\"\n",
            "unserved.toml:4: user alice: path /b is not served (the paths: /a)",
        ),
        (
            "notown.toml",
            "[[path]]\npath = \"/a\"\n\n[user.alice]\npath = \"/a\"\n",
            "notown.toml:4: user alice: path /a has no htpasswd file of its own",
        ),
    ] {
        let f = dir.write(file, body);
        let out = etherws_run(None, &["sw", "--check-config", &f]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{file}: {err}");
        assert!(err.contains(want), "{file}: {err}");
    }
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = TempDir::new("opj");
    let log = dir.file("sw.log");
    let logconf = dir.write("log.toml", &format!("output = {log:?}\n"));
    let (port, ctl) = (free_port(), free_port());
    let (port_s, ctl_s) = (port.to_string(), ctl.to_string());
    let mut child = etherws(None)
        .args([
            "sw",
            "--foreground",
            "--host",
            "127.0.0.1",
            "--port",
            &port_s,
        ])
        .args([
            "--ctlport",
            &ctl_s,
            "--log-format",
            "json",
            "--logconf",
            &logconf,
        ])
        .spawn()
        .expect("start the switch");
    let url = format!("http://127.0.0.1:{ctl}/ctl");
    let lines = poll("log lines", Duration::from_secs(10), || {
        // An error the switch logs: a control request for a port that does not exist.
        let _ = etherws_run(None, &["ctl", "--ctlurl", &url, "delport", "7"]);
        let l = std::fs::read_to_string(&log).unwrap_or_default();
        if l.contains("no such port: 7") {
            Ok(l)
        } else {
            Err(l)
        }
    });
    let _ = child.kill();
    let _ = child.wait();
    for line in lines.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["level"].is_string() && v["fields"]["message"].is_string(),
            "{v}"
        );
    }
    assert!(lines.contains("\"message\":\"serving control\""), "{lines}");
}

#[test]
fn ctl_json_prints_every_answer_as_one_document() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("ojs");
    let sw = Switch::in_netns(&ns, "ojs", "127.0.0.1", free_port(), free_port(), &[]);
    let json = |args: &[&str]| -> (bool, Value) {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = sw.ctl(&all);
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", text(&out.stdout)));
        (out.status.success(), v)
    };
    let (ok, v) = json(&["addport", "tap", "ojs0"]);
    assert!(ok, "{v}");
    assert_eq!(v["entries"][0]["target"], "ojs0", "{v}");
    assert_eq!(v["entries"][0]["type"], "tap", "{v}");
    let (ok, v) = json(&["setport", "1", "--vlan", "10", "--isolated", "1"]);
    assert!(ok, "{v}");
    assert_eq!(
        (&v["entries"][0]["vlan"], &v["entries"][0]["isolated"]),
        (&Value::from(10), &Value::from(true)),
        "{v}"
    );
    let (ok, v) = json(&[
        "setif",
        "1",
        "--address",
        "192.0.2.1",
        "--netmask",
        "255.255.255.0",
    ]);
    assert!(ok, "{v}");
    assert_eq!(v["entries"][0]["address"], "192.0.2.1", "{v}");
    let (ok, v) = json(&["listif"]);
    assert!(
        ok && v["entries"].as_array().is_some_and(|e| e.len() == 1),
        "{v}"
    );
    let (ok, v) = json(&["listport"]);
    assert!(ok && v["entries"][0]["port"] == 1, "{v}");
    let (ok, v) = json(&["listfdb"]);
    assert!(ok && v["entries"].is_array(), "{v}");
    let (ok, v) = json(&["delport", "1"]);
    assert!(ok && v["entries"][0]["port"] == 1, "{v}");
    // Errors: the error object, and status 1.
    let (ok, v) = json(&["delport", "9"]);
    assert!(!ok, "{v}");
    assert_eq!(v["error"]["code"], -32602, "{v}");
    assert_eq!(v["error"]["data"], "no such port: 9", "{v}");
    let (ok, v) = json(&["setport", "0"]);
    assert!(!ok && v["error"]["data"] == "Invalid port: 0", "{v}");
}

/// A switch that cannot be reached is an error document too.
#[test]
fn ctl_json_reports_an_unreachable_switch_as_json() {
    let out = Command::new(bin())
        .args([
            "ctl",
            "--json",
            "--ctlurl",
            "http://127.0.0.1:1/ctl",
            "listport",
        ])
        .output()
        .expect("run");
    // Connection refused: an error document, still JSON.
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["error"]["code"], -32603, "{v}");
    assert!(!out.status.success());
}

/// A WebSocket upgrade of `path` on `sw`'s listener: the HTTP status it gets.
fn upgrade_status(sw: &Switch, path: &str) -> u16 {
    let s = std::net::TcpStream::connect(("127.0.0.1", sw.ws_port)).expect("connect");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    try_http_exchange(s, &req, Duration::from_millis(500))
        .unwrap_or_else(|e| panic!("upgrade of {path}: {e}"))
        .status
}

/// `--path` is a literal URI path, never a route pattern: `/{x}` (which matched every path),
/// `/:x`, `/*x` and `/a{` (which panicked at start while `--check-config` said OK), a newline,
/// a space or a NUL are refused before anything starts, with the same words from
/// `--check-config` as from `sw`, and no panic; a path is served as written, and only it.
#[test]
fn paths_are_literal_never_patterns() {
    let dir = TempDir::new("opp");
    let empty = dir.write("empty.toml", "");
    for path in [
        "/{x}", "/:x", "/a/*x", "/a{", "/a}", "/a\nb", "/a b", "/a?b", "/a%zz",
    ] {
        let checked = etherws_run(None, &["sw", "--check-config", &empty, "--path", path]);
        let started = sw_start_fails(&["--port", "0", "--ctlport", "0", "--path", path]);
        for (what, out) in [("--check-config", &checked), ("sw", &started)] {
            let err = text(&out.stderr);
            assert!(
                !out.status.success() && !err.contains("panicked"),
                "{what} --path {path:?}: {}\n{err}",
                out.status
            );
            assert!(
                err.lines().next().is_some_and(|l| l.contains("--path")
                    && (l.contains("must hold only")
                        || l.contains("must not start")
                        || l.contains("%XX"))),
                "{what} --path {path:?}: {err}"
            );
        }
        assert_eq!(
            text(&checked.stderr),
            text(&started.stderr),
            "--check-config and sw say the same of --path {path:?}"
        );
    }
    // In the configuration file (where a NUL can be written): exit 1, one escaped line.
    for (file, body) in [
        ("nul.toml", "[[path]]\npath = \"/a\\u0000b\"\n"),
        ("brace.toml", "[switch]\npath = \"/{x}\"\n"),
        ("colon.toml", "[switch]\nctlpath = \"/:ctl\"\n"),
    ] {
        let f = dir.write(file, body);
        let checked = etherws_run(None, &["sw", "--check-config", &f]);
        let started = sw_start_fails(&["--config", &f, "--port", "0", "--ctlport", "0"]);
        for (what, out) in [("--check-config", &checked), ("sw", &started)] {
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{what} {file}: {err}");
            assert_eq!(err.lines().count(), 1, "{what} {file}: {err}");
            assert!(
                err.starts_with("etherws sw: error: ") && err.contains(&format!("{file}:2: ")),
                "{what} {file}: {err}"
            );
        }
    }
    // Served as written, and only that: not /b, not /a/ or /A; escapes and ':' inside a
    // segment are plain characters.
    let sw = Switch::local("opp", &["--path", "/a", "--path", "/x:y%20z"]);
    for (path, want) in [
        ("/a", 101),
        ("/x:y%20z", 101),
        ("/b", 404),
        ("/a/", 404),
        ("/A", 404),
        ("/a/b", 404),
        ("/x:y", 404),
    ] {
        assert_eq!(upgrade_status(&sw, path), want, "upgrade of {path}");
    }
}

/// `ETHERWS_PATH` holds several path specs separated by spaces (a spec holds commas of its
/// own: `/lab=vlan:10,isolated`), each served; on the command line one `--path` is one spec,
/// and wins over the environment.
#[test]
fn environment_paths_are_separated_by_spaces() {
    let sw = SwitchBuilder::new("ope")
        .env("ETHERWS_PATH", "/a /lab=vlan:10,isolated")
        .start();
    for (path, want) in [("/a", 101), ("/lab", 101), ("/", 404), ("/a%20/lab", 404)] {
        assert_eq!(upgrade_status(&sw, path), want, "upgrade of {path:?}");
    }
    drop(sw);
    let sw = SwitchBuilder::new("ope")
        .env("ETHERWS_PATH", "/a /b")
        .args(&["--path", "/c"])
        .start();
    for (path, want) in [("/c", 101), ("/a", 404), ("/b", 404)] {
        assert_eq!(upgrade_status(&sw, path), want, "upgrade of {path:?}");
    }
    drop(sw);
    // A spec the environment's list holds that is wrong is named by the variable.
    let mut cmd = etherws(None);
    cmd.args(["sw", "--foreground", "--port", "0", "--ctlport", "0"])
        .env("ETHERWS_PATH", "/a nope");
    let out = cmd.output().expect("run etherws");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("etherws sw: error: ")
            && err.contains("ETHERWS_PATH")
            && err.contains("\"nope\""),
        "{err}"
    );
}

/// An option `sw` or `ctl` refuses, on the command line or in the environment, is one plain line
/// `etherws sw: error: REASON` (or `etherws ctl: …`) and exit status 1, as the command reference
/// says, its value escaped; a value from the environment is named by its variable, which is
/// what the user set. `--help` and `--version` print and exit 0 as ever.
#[test]
fn option_errors_are_one_line_and_exit_1() {
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let mut cmd = etherws(None);
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run etherws");
        (out.status.code(), text(&out.stderr))
    };
    for (env, args, prefix, named) in [
        (
            &[][..],
            &["sw", "--ageout", "0"][..],
            "etherws sw: error: ",
            "--ageout",
        ),
        (
            &[("ETHERWS_AGEOUT", "0")][..],
            &["sw"][..],
            "etherws sw: error: ",
            "ETHERWS_AGEOUT",
        ),
        (
            &[("ETHERWS_MAX_FRAME", "1")][..],
            &["sw"][..],
            "etherws sw: error: ",
            "ETHERWS_MAX_FRAME",
        ),
        (
            &[][..],
            &["sw", "--bogus"][..],
            "etherws sw: error: ",
            "--bogus",
        ),
        (
            &[][..],
            &["sw", "--path", "nope\n\x1b[2J"][..],
            "etherws sw: error: ",
            "nope\\n\\u{1b}[2J",
        ),
        (
            &[][..],
            &["ctl", "--ctlcert", "c.pem", "listport"][..],
            "etherws ctl: error: ",
            "--ctlkey",
        ),
        (
            &[][..],
            &["ctl", "listport", "extra"][..],
            "etherws ctl: error: ",
            "extra",
        ),
    ] {
        let (code, err) = run(env, args);
        let what = format!("{env:?} {args:?}");
        assert_eq!(code, Some(1), "{what}: {err}");
        assert_eq!(err.lines().count(), 1, "{what}: not one line: {err:?}");
        assert!(
            err.starts_with(prefix) && err.contains(named),
            "{what}: {err:?}"
        );
        assert!(!err.contains('\x1b'), "{what}: raw escape: {err:?}");
    }
    // The environment's value is the variable's, not an option the user never typed: refused
    // as it is read, or later (a proxy's CIDR).
    let (_, err) = run(&[("ETHERWS_AGEOUT", "0")], &["sw"]);
    assert!(!err.contains("--ageout"), "{err}");
    let foreground = ["sw", "--foreground", "--port", "0", "--ctlport", "0"];
    let (code, err) = run(&[("ETHERWS_TRUSTED_PROXY", "192.0.2.1/99")], &foreground);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.starts_with("etherws sw: error: invalid ETHERWS_TRUSTED_PROXY \"192.0.2.1/99\"")
            && err.lines().count() == 1,
        "{err}"
    );
    // The command line's own value still names the option, whatever the environment holds.
    let (_, err) = run(&[("ETHERWS_AGEOUT", "0")], &["sw", "--ageout=0"]);
    assert!(
        err.contains("--ageout") && !err.contains("ETHERWS_AGEOUT"),
        "{err}"
    );
    for args in [&["--version"][..], &["sw", "--help"], &["ctl", "--help"]] {
        let (code, err) = run(&[], args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
    }
}

/// `--debug` wins over the filter of `--logconf`: with `filter = "etherws=info"` its debug
/// messages are written all the same (here: a connection that ended before its request did).
#[test]
fn debug_wins_over_the_logconf_filter() {
    let dir = TempDir::new("opdbg");
    let logconf = dir.write("log.toml", "filter = \"etherws=info\"\n");
    let sw = Switch::local("opdbg", &["--debug", "--logconf", &logconf]);
    {
        use std::io::Write;
        let mut c = std::net::TcpStream::connect(sw.ctl_addr()).expect("connect");
        c.write_all(b"GET /ctl HTTP/1.1\r\nHost: x\r\n")
            .expect("write");
    }
    poll("a debug message in the log", Duration::from_secs(5), || {
        let log = sw.log();
        if log.contains("DEBUG") && log.contains("HTTP connection ended") {
            Ok(())
        } else {
            Err(log)
        }
    });
}

/// A frame whose IPv4 total length says it is longer than it is (vpn-ws-client with its
/// default MTU cuts every full-size frame 14 bytes short) is forwarded as 1.3 did, counted in
/// `rx_truncated`, and the log says so once, with the hint about the sender's MTU.
#[test]
fn truncated_ip_frames_are_counted_and_logged_once() {
    use tokio_tungstenite::tungstenite::{self, Message};
    let sw = Switch::local("opt", &[]);
    let url = format!("ws://127.0.0.1:{}/", sw.ws_port);
    let tcp = std::net::TcpStream::connect(("127.0.0.1", sw.ws_port)).expect("connect");
    let (mut ws, _) = tungstenite::client(url.as_str(), tcp).expect("handshake");
    // Broadcast from 02:00:00:00:00:01, IPv4, a 20-byte header that says 1,500 bytes in all:
    // 86 bytes of IP are there.
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45, 0]);
    frame.extend_from_slice(&1500u16.to_be_bytes());
    frame.resize(100, 0);
    let wait_for = |n: u64| {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            // The port comes into being just after the handshake.
            let ports = sw.rpc("listPort", serde_json::json!({}));
            let p = ports["entries"][0].clone();
            if p["rx_truncated"] == n || Instant::now() >= deadline {
                return p;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    ws.send(Message::Binary(frame.clone().into()))
        .expect("send");
    let p = wait_for(1);
    assert_eq!(p["rx_truncated"], 1, "{p}");
    assert_eq!(p["rx"], 1, "forwarded all the same: {p}");
    for _ in 0..2 {
        ws.send(Message::Binary(frame.clone().into()))
            .expect("send");
    }
    let p = wait_for(3);
    assert_eq!(p["rx_truncated"], 3, "{p}");
    let log = sw.log();
    let warned: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("shorter than their IP length"))
        .collect();
    assert_eq!(warned.len(), 1, "{log}");
    assert!(
        warned[0].contains("port=1") && warned[0].contains("MTU must be at most 1486"),
        "{log}"
    );
}

/// Under systemd (`INVOCATION_ID` set), a file `addport` names that the switch cannot find in
/// `/tmp` or `/home` says why it may be there for the user and not for the switch: the unit's
/// `PrivateTmp=yes` and `ProtectHome=yes`. Elsewhere, the plain error.
#[test]
fn a_missing_file_under_systemd_names_private_tmp_and_protect_home() {
    let addport = |sw: &Switch, file: &str| {
        let out = sw.ctl(&["addport", "client", "wss://127.0.0.1:1/", "--cacerts", file]);
        assert!(!out.status.success());
        format!("{}{}", text(&out.stdout), text(&out.stderr))
    };
    let sw = SwitchBuilder::new("ops")
        .env("INVOCATION_ID", "0123456789abcdef0123456789abcdef")
        .start();
    let said = addport(&sw, "/tmp/etherws-no-such-dir/ca.pem");
    assert!(
        said.contains("/tmp/etherws-no-such-dir/ca.pem") && said.contains("PrivateTmp=yes"),
        "{said}"
    );
    let said = addport(&sw, "/home/etherws-no-such-user/ca.pem");
    assert!(said.contains("ProtectHome=yes"), "{said}");
    drop(sw);
    // Not under systemd (whatever runs the tests).
    let sw = SwitchBuilder::new("ops").env("INVOCATION_ID", "").start();
    let said = addport(&sw, "/tmp/etherws-no-such-dir/ca.pem");
    assert!(
        said.contains("/tmp/etherws-no-such-dir/ca.pem") && !said.contains("PrivateTmp"),
        "{said}"
    );
}
