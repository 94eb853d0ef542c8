//! End-to-end tests of pinned self-signed server certificates and of client certificates
//! (mutual TLS), for `client` ports and for `etherws ctl`.
//!
//! The recipes are those of docs/tls.md (and, for the control API opened to other nodes,
//! docs/control-api.md), byte for byte: each block below is checked to appear there as a
//! fenced block, and is run as it stands with `sh -e` in the node's directory
//! (certificates made with the real `openssl`; the `etherws` on PATH is the binary under test,
//! which daemonizes as the page's commands make it). Two nodes are two network namespaces
//! joined by a veth: A is 192.0.2.1 (the address the certificates name), B is 192.0.2.2.
//! Root is needed for the namespaces; `client_certificate_settings_are_checked` runs on
//! loopback without it.

use std::fs;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use etherws_testkit::*;

const A_ADDR: &str = "192.0.2.1";
const B_ADDR: &str = "192.0.2.2";
const A_TAP_IP: &str = "198.51.100.1";
const B_TAP_IP: &str = "198.51.100.2";

// ---------------------------------------------------------------------------------------------
// the recipes of docs/tls.md

/// A self-signed server certificate for node A.
const SELF_SIGNED: &str = "\
openssl req -x509 -newkey rsa:2048 -nodes -keyout ssl.key -out ssl.crt -days 365 \\
    -subj /CN=192.0.2.1 -addext subjectAltName=IP:192.0.2.1
";

/// Node A serves `wss://` with it.
const SERVE_WSS: &str = "\
etherws sw --sslkey ssl.key --sslcert ssl.crt
";

/// Node B, with a copy of `ssl.crt`, connects and pins that certificate.
const CONNECT_PINNED: &str = "\
etherws sw
etherws ctl addport client --cacerts ssl.crt wss://192.0.2.1/
";

/// A private CA and a server certificate it signs, for node A.
const PRIVATE_CA: &str = "\
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 365 \\
    -subj /CN=my-ca -addext basicConstraints=critical,CA:TRUE
openssl req -newkey rsa:2048 -nodes -keyout ssl.key -out ssl.csr -subj /CN=nodea
echo subjectAltName=IP:192.0.2.1 > ssl.ext
openssl x509 -req -in ssl.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out ssl.crt -days 365 \\
    -extfile ssl.ext
";

/// Node B, with a copy of `ca.pem`, verifies A against the CA.
const CONNECT_CA: &str = "\
etherws sw
etherws ctl addport client --cacerts ca.pem wss://192.0.2.1/
";

/// Node A serves the control API over HTTPS with the self-signed certificate, with a password.
const SERVE_CTL_PINNED: &str = "\
etherws sw --ctlhost 192.0.2.1 --ctlport 7443 --ctlsslkey ssl.key --ctlsslcert ssl.crt \\
    --ctlhtpasswd htpasswd
";

/// Node B controls A, pinning its certificate (prompts for the password).
const CTL_PINNED: &str = "\
etherws ctl --ctlurl https://192.0.2.1:7443/ctl --ctlsslcert ssl.crt --ctluser username listport
";

/// A CA for client certificates, and the certificate of node B.
const CLIENT_CA: &str = "\
openssl req -x509 -newkey rsa:2048 -nodes -keyout clientca.key -out clientca.pem -days 365 \\
    -subj /CN=my-client-ca -addext basicConstraints=critical,CA:TRUE
echo extendedKeyUsage=clientAuth > client.ext
openssl req -newkey rsa:2048 -nodes -keyout nodeb.key -out nodeb.csr -subj /CN=nodeb
openssl x509 -req -in nodeb.csr -CA clientca.pem -CAkey clientca.key -CAcreateserial \\
    -out nodeb.crt -days 365 -extfile client.ext
";

/// Node A requires client certificates of that CA on `wss://`.
const SERVE_WSS_MTLS: &str = "\
etherws sw --sslkey ssl.key --sslcert ssl.crt --sslclientca clientca.pem
";

/// Node B presents its certificate.
const CONNECT_MTLS: &str = "\
etherws ctl addport client --cacerts ssl.crt --cert nodeb.crt --key nodeb.key wss://192.0.2.1/
";

/// `ca.cnf`: what `openssl ca` needs to revoke certificates and write CRLs.
const CA_CNF: &str = "\
[ca]
default_ca = clientca
[clientca]
database = index.txt
crlnumber = crlnumber
default_md = sha256
default_crl_days = 30
";

/// Revoking node C's certificate, and a switch that refuses it.
const REVOKE: &str = "\
touch index.txt
echo 01 > crlnumber
openssl ca -config ca.cnf -keyfile clientca.key -cert clientca.pem -revoke nodec.crt
openssl ca -config ca.cnf -keyfile clientca.key -cert clientca.pem -gencrl -out clientca.crl
etherws sw --sslkey ssl.key --sslcert ssl.crt --sslclientca clientca.pem --sslcrl clientca.crl
";

/// Node A requires client certificates on its HTTPS control API.
const SERVE_CTL_MTLS: &str = "\
etherws sw --ctlhost 192.0.2.1 --ctlport 7443 --ctlsslkey ssl.key --ctlsslcert ssl.crt \\
    --ctlsslclientca clientca.pem
";

/// Node B controls A with its client certificate.
const CTL_MTLS: &str = "\
etherws ctl --ctlurl https://192.0.2.1:7443/ctl --ctlsslcert ssl.crt --ctlcert nodeb.crt \\
    --ctlkey nodeb.key listport
";

/// The page of the certificate recipes.
const PAGE: &str = "docs/tls.md";

/// The page that opens the control API to other nodes ("Remote control"): [`SERVE_CTL_PINNED`]
/// and [`CTL_PINNED`].
const REMOTE_CONTROL_PAGE: &str = "docs/control-api.md";

#[test]
fn docs_show_the_recipes_tested_here() {
    for block in [
        SELF_SIGNED,
        SERVE_WSS,
        CONNECT_PINNED,
        PRIVATE_CA,
        CONNECT_CA,
        CLIENT_CA,
        SERVE_WSS_MTLS,
        CONNECT_MTLS,
        REVOKE,
        SERVE_CTL_MTLS,
        CTL_MTLS,
    ] {
        etherws_testkit::docs::assert_shows(PAGE, "sh", block);
    }
    etherws_testkit::docs::assert_shows(PAGE, "ini", CA_CNF);
    for block in [SERVE_CTL_PINNED, CTL_PINNED] {
        etherws_testkit::docs::assert_shows(REMOTE_CONTROL_PAGE, "sh", block);
    }
}

/// [`CLIENT_CA`]'s last two commands for another client (`nodeb` → `name`).
fn client_cert_recipe(name: &str) -> String {
    let lines: Vec<&str> = CLIENT_CA.lines().collect();
    let mut recipe = lines[lines.len() - 3..].join("\n").replace("nodeb", name);
    recipe.push('\n');
    recipe
}

/// A CA of nobody's and a client certificate it signs: `mallory.crt`, `mallory.key`.
const FOREIGN_CLIENT: &str = "\
openssl req -x509 -newkey rsa:2048 -nodes -keyout otherca.key -out otherca.pem -days 365 \\
    -subj /CN=other-ca -addext basicConstraints=critical,CA:TRUE
echo extendedKeyUsage=clientAuth > client.ext
openssl req -newkey rsa:2048 -nodes -keyout mallory.key -out mallory.csr -subj /CN=mallory
openssl x509 -req -in mallory.csr -CA otherca.pem -CAkey otherca.key -CAcreateserial \\
    -out mallory.crt -days 365 -extfile client.ext
";

/// Another self-signed certificate for 192.0.2.1, from another key: `other.crt`.
const OTHER_SELF_SIGNED: &str = "\
openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.crt -days 365 \\
    -subj /CN=192.0.2.1 -addext subjectAltName=IP:192.0.2.1
";

// ---------------------------------------------------------------------------------------------
// nodes

/// A node: a network namespace and the directory its commands run in.
struct Node {
    ns: Netns,
    dir: TempDir,
    /// A directory whose `etherws` is the binary under test (first on PATH).
    bin: TempDir,
}

/// Nodes A (192.0.2.1) and B (192.0.2.2), joined by a veth.
fn nodes(tag: &str) -> (Node, Node) {
    let (ns_a, ns_b) = linked(tag, A_ADDR, B_ADDR);
    let node = |ns: Netns, side: &str| {
        let bin = TempDir::new(&format!("{tag}{side}-bin"));
        std::os::unix::fs::symlink(PathBuf::from(bin_path()), bin.path().join("etherws"))
            .expect("symlink etherws");
        Node {
            ns,
            dir: TempDir::new(&format!("{tag}{side}")),
            bin,
        }
    };
    (node(ns_a, "A"), node(ns_b, "B"))
}

/// The binary under test as a path.
fn bin_path() -> String {
    bin().to_string_lossy().into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Node {
    /// `sh -ec SCRIPT` in the node's namespace and directory, `etherws` on PATH, no proxy.
    fn sh(&self, script: &str) -> Output {
        let path = format!(
            "{}:{}",
            self.bin.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut c = self.ns.command(&["sh", "-ec", script]);
        c.current_dir(self.dir.path()).env("PATH", path);
        clear_proxy_env(&mut c);
        c.output().expect("run sh")
    }

    /// [`Node::sh`] that must succeed; returns stdout.
    #[track_caller]
    fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "in {}:\n{script}failed\n{}",
            self.ns.name(),
            show(&out)
        );
        stdout(&out)
    }

    /// `etherws ARGS...` in the node's namespace and directory.
    fn etherws(&self, args: &[&str]) -> Output {
        etherws(Some(&self.ns))
            .current_dir(self.dir.path())
            .args(args)
            .output()
            .expect("run etherws")
    }

    /// Copies files of this node's directory to `to`'s (what an operator would scp).
    fn give(&self, to: &Node, names: &[&str]) {
        for name in names {
            fs::copy(self.dir.path().join(name), to.dir.path().join(name))
                .unwrap_or_else(|e| panic!("copy {name}: {e}"));
        }
    }

    /// Waits until `etherws ctl CTL_OPTS listport` answers with a table; returns the rows.
    fn ready(&self, ctl_opts: &[&str]) -> Vec<PortRow> {
        let mut args = vec!["ctl"];
        args.extend_from_slice(ctl_opts);
        args.push("listport");
        poll(
            &format!("the switch in {} to answer", self.ns.name()),
            Duration::from_secs(10),
            || {
                let out = self.etherws(&args);
                let text = stdout(&out);
                if out.status.success() && header(&text).first().map(String::as_str) == Some("Port")
                {
                    Ok(parse_ports(&text))
                } else {
                    Err(show(&out))
                }
            },
        )
    }

    /// Stops the switches running in the node (the page's commands daemonize them): SIGTERM
    /// to the `etherws` processes in its namespace, then waits until they are gone.
    fn stop_switches(&self) {
        let pids = || -> Vec<i32> {
            let out = run(&["ip", "netns", "pids", self.ns.name()]);
            stdout(&out)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .filter(|p| {
                    fs::read_to_string(format!("/proc/{p}/comm"))
                        .is_ok_and(|c| c.trim() == "etherws")
                })
                .collect()
        };
        for pid in pids() {
            // SAFETY: kill(2) on a switch this test started in its own namespace.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        poll("the switches to stop", Duration::from_secs(10), || {
            let left = pids();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{left:?}"))
            }
        });
    }

    /// A TAP port with `ip/24`.
    fn add_tap(&self, tap: &str, ip: &str) {
        let out = self.etherws(&["ctl", "addport", "tap", tap]);
        assert!(out.status.success(), "addport tap\n{}", show(&out));
        let rows = parse_ports(&stdout(&out));
        assert_eq!(rows.len(), 1, "addport tap\n{}", show(&out));
        self.ns.wait_link(tap);
        let port = rows[0].port.to_string();
        let out = self.etherws(&[
            "ctl",
            "setif",
            &port,
            "--address",
            ip,
            "--netmask",
            "255.255.255.0",
        ]);
        assert!(out.status.success(), "setif\n{}", show(&out));
    }
}

/// A ctl run that failed as a refused `addport` does: exit 1, `  Invalid params (-32602)`,
/// then the reason (returned).
#[track_caller]
fn refused(out: &Output, what: &str) -> String {
    error_reason(out, "  Invalid params (-32602)", what)
}

/// A ctl run that failed to talk to the control API: exit 1, `  Internal error (-32603)`,
/// then the reason (returned).
#[track_caller]
fn unreachable(out: &Output, what: &str) -> String {
    error_reason(out, "  Internal error (-32603)", what)
}

#[track_caller]
fn error_reason(out: &Output, first: &str, what: &str) -> String {
    let text = stdout(out);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        !out.status.success() && lines.first() == Some(&first) && lines.len() == 2,
        "{what}: expected {first:?} and one reason line\n{}",
        show(out)
    );
    lines[1].trim().to_string()
}

/// Asserts that `reason` contains every one of `words`.
#[track_caller]
fn says(reason: &str, words: &[&str], what: &str) {
    for w in words {
        assert!(reason.contains(w), "{what}: {reason:?} does not say {w:?}");
    }
}

/// The single client port `out` (an addport) shows.
#[track_caller]
fn joined(out: &Output, what: &str) -> PortRow {
    assert!(
        out.status.success() && stdout(out).starts_with("  Port"),
        "{what}: expected the new client port\n{}",
        show(out)
    );
    let rows = parse_ports(&stdout(out));
    assert!(
        rows.len() == 1 && rows[0].kind == "client",
        "{what}: expected the new client port\n{}",
        show(out)
    );
    rows[0].clone()
}

fn server_ports(node: &Node, ctl_opts: &[&str]) -> usize {
    node.ready(ctl_opts)
        .iter()
        .filter(|p| p.kind == "server")
        .count()
}

/// Waits until `node` has `n` server ports.
fn wait_server_ports(node: &Node, ctl_opts: &[&str], n: usize) {
    poll(
        &format!("{n} server port(s)"),
        Duration::from_secs(10),
        || match server_ports(node, ctl_opts) {
            m if m == n => Ok(()),
            m => Err(format!("{m} server ports")),
        },
    );
}

fn delport(node: &Node, port: u32) {
    let out = node.etherws(&["ctl", "delport", &port.to_string()]);
    assert!(out.status.success(), "delport\n{}", show(&out));
}

// ---------------------------------------------------------------------------------------------
// pinned self-signed certificates

#[test]
fn self_signed_certificate_is_pinned_by_client_ports() {
    if !needs(&["openssl", "ping"]) {
        return;
    }
    let (a, b) = nodes("pin");
    a.sh_ok(SELF_SIGNED);
    a.sh_ok(SERVE_WSS);
    a.ready(&[]);
    a.give(&b, &["ssl.crt"]);

    // The recipe: B pins A's certificate, CA:TRUE as `openssl req -x509` makes it.
    let out = b.sh(CONNECT_PINNED);
    let client = joined(&out, "the page's client port");
    assert_eq!(client.target, "wss://192.0.2.1/");
    wait_server_ports(&a, &[], 1);
    a.add_tap("ewsA0", A_TAP_IP);
    b.add_tap("ewsB0", B_TAP_IP);
    ping(&b.ns, A_TAP_IP);
    ping(&a.ns, B_TAP_IP);
    delport(&b, client.port);
    wait_server_ports(&a, &[], 0);

    // Another self-signed certificate for the same address is not A's: refused.
    b.sh_ok(OTHER_SELF_SIGNED);
    let out = b.etherws(&[
        "ctl",
        "addport",
        "client",
        "--cacerts",
        "other.crt",
        "wss://192.0.2.1/",
    ]);
    let reason = refused(&out, "a different self-signed certificate");
    says(
        &reason,
        &["invalid peer certificate", "trusted only as itself"],
        "a different self-signed certificate",
    );
    // So is A's own certificate as the system roots see it (none of them).
    // Without --cacerts there is no certificate file to speak of: the system's trust store.
    let out = b.etherws(&["ctl", "addport", "client", "wss://192.0.2.1/"]);
    let reason = refused(&out, "the system roots");
    says(
        &reason,
        &["certificate", "system's trust store"],
        "the system roots",
    );
    assert!(!reason.contains("certificate file given"), "{reason}");
    assert_eq!(server_ports(&a, &[]), 0);

    // Both switches still answer.
    assert_eq!(a.ready(&[]).len(), 1);
    assert_eq!(b.ready(&[]).len(), 1);
}

#[test]
fn private_ca_recipe() {
    if !needs(&["openssl"]) {
        return;
    }
    let (a, b) = nodes("pca");
    a.sh_ok(PRIVATE_CA);
    a.sh_ok(SERVE_WSS);
    a.ready(&[]);
    a.give(&b, &["ca.pem", "ssl.crt"]);

    let out = b.sh(CONNECT_CA);
    let client = joined(&out, "verified against the private CA");
    wait_server_ports(&a, &[], 1);
    delport(&b, client.port);
    wait_server_ports(&a, &[], 0);
    // The server certificate itself, pinned, does as well.
    let out = b.etherws(&[
        "ctl",
        "addport",
        "client",
        "--cacerts",
        "ssl.crt",
        "wss://192.0.2.1/",
    ]);
    let client = joined(&out, "the CA-signed server certificate pinned");
    wait_server_ports(&a, &[], 1);
    delport(&b, client.port);

    assert!(a.ready(&[]).len() <= 1);
    assert!(b.ready(&[]).is_empty());
}

#[test]
fn self_signed_certificate_is_pinned_by_ctl() {
    if !needs(&["openssl", "htpasswd"]) {
        return;
    }
    let (a, b) = nodes("cpin");
    a.sh_ok(SELF_SIGNED);
    a.sh_ok("htpasswd -cbB htpasswd username password\n");
    a.sh_ok(SERVE_CTL_PINNED);
    a.give(&b, &["ssl.crt"]);
    let url = "https://192.0.2.1:7443/ctl";
    let verified = [
        "--ctlurl",
        url,
        "--ctlsslcert",
        "ssl.crt",
        "--ctluser",
        "username",
        "--ctlpasswd",
        "password",
    ];
    b.ready(&verified);

    // The recipe, password typed at the prompt.
    let path = format!(
        "{}:{}",
        b.bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = b.ns.command(&["sh", "-ec", CTL_PINNED]);
    cmd.current_dir(b.dir.path()).env("PATH", path);
    let run = run_on_pty(cmd, "Control Password: ", "password");
    assert!(
        run.status.success() && run.output.contains("Port  Type  State"),
        "the page's ctl command: {run:?}"
    );

    // Another self-signed certificate is not the switch's.
    b.sh_ok(OTHER_SELF_SIGNED);
    let mut args = vec!["ctl"];
    args.extend_from_slice(&verified);
    args[4] = "other.crt";
    args.push("listport");
    let reason = unreachable(&b.etherws(&args), "a different self-signed certificate");
    says(
        &reason,
        &["invalid peer certificate", "trusted only as itself"],
        "a different self-signed certificate",
    );
    // The pinned certificate does not replace the password.
    let out = b.etherws(&[
        "ctl",
        "--ctlurl",
        url,
        "--ctlsslcert",
        "ssl.crt",
        "--ctluser",
        "username",
        "--ctlpasswd",
        "wrong",
        "listport",
    ]);
    says(
        &unreachable(&out, "a wrong password"),
        &["HTTP Error 401"],
        "a wrong password",
    );

    assert!(b.ready(&verified).is_empty());
}

// ---------------------------------------------------------------------------------------------
// client certificates

/// Node A with its self-signed server certificate and the client CA, node C's certificate
/// (to be revoked) and a certificate of a foreign CA; B gets copies of what it presents.
fn client_pki(a: &Node, b: &Node) {
    a.sh_ok(SELF_SIGNED);
    a.sh_ok(CLIENT_CA);
    a.sh_ok(&client_cert_recipe("nodec"));
    // The foreign CA lives elsewhere; only its client's files come to B.
    let elsewhere = TempDir::new("mtls-foreign");
    let out =
        a.ns.command(&["sh", "-ec", FOREIGN_CLIENT])
            .current_dir(elsewhere.path())
            .output()
            .expect("run sh");
    assert!(out.status.success(), "foreign CA\n{}", show(&out));
    for f in ["mallory.crt", "mallory.key"] {
        fs::copy(elsewhere.path().join(f), b.dir.path().join(f)).expect("copy");
    }
    a.give(
        b,
        &[
            "ssl.crt",
            "nodeb.crt",
            "nodeb.key",
            "nodec.crt",
            "nodec.key",
        ],
    );
}

#[test]
fn client_certificates_on_wss() {
    if !needs(&["openssl", "ping"]) {
        return;
    }
    let (a, b) = nodes("mtls");
    client_pki(&a, &b);
    a.sh_ok(SERVE_WSS_MTLS);
    a.ready(&[]);
    b.sh_ok("etherws sw\n");
    b.ready(&[]);

    // B's certificate, issued by the client CA: B joins, and frames flow.
    let out = b.sh(CONNECT_MTLS);
    let client = joined(&out, "a client certificate of the client CA");
    wait_server_ports(&a, &[], 1);
    // The switch knows the peer by its certificate's name.
    let answer = rpc_in(
        &a.ns,
        "127.0.0.1:7867".parse().unwrap(),
        "/ctl",
        r#"{"jsonrpc":"2.0","method":"etherws.control.listPort","id":1}"#,
    );
    let rows = answer["result"]["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        rows.iter()
            .any(|r| r["type"] == "server" && r["user"] == "nodeb"),
        "{answer}"
    );
    a.add_tap("ewsA0", A_TAP_IP);
    b.add_tap("ewsB0", B_TAP_IP);
    ping(&b.ns, A_TAP_IP);
    delport(&b, client.port);
    wait_server_ports(&a, &[], 0);

    // Without a certificate, or with one of another CA: refused, and addport says why.
    let addport = |extra: &[&str]| {
        let mut args = vec!["ctl", "addport", "client", "--cacerts", "ssl.crt"];
        args.extend_from_slice(extra);
        args.push("wss://192.0.2.1/");
        b.etherws(&args)
    };
    let reason = refused(&addport(&[]), "no client certificate");
    says(
        &reason,
        &["requires a client certificate", "certificate required"],
        "no client certificate",
    );
    let reason = refused(
        &addport(&["--cert", "mallory.crt", "--key", "mallory.key"]),
        "a certificate of a foreign CA",
    );
    says(&reason, &["unknown CA"], "a certificate of a foreign CA");
    // A key that is not the certificate's is caught before connecting.
    let reason = refused(
        &addport(&["--cert", "nodeb.crt", "--key", "nodec.key"]),
        "a mismatched key",
    );
    says(&reason, &["do not go together"], "a mismatched key");
    assert_eq!(server_ports(&a, &[]), 0);

    // C's certificate is good until it is revoked.
    let out = addport(&["--cert", "nodec.crt", "--key", "nodec.key"]);
    let client_c = joined(&out, "node C before its revocation");
    wait_server_ports(&a, &[], 1);
    delport(&b, client_c.port);
    wait_server_ports(&a, &[], 0);
    a.stop_switches();
    fs::write(a.dir.path().join("ca.cnf"), CA_CNF).expect("write ca.cnf");
    a.sh_ok(REVOKE);
    a.ready(&[]);
    let reason = refused(
        &addport(&["--cert", "nodec.crt", "--key", "nodec.key"]),
        "a revoked certificate",
    );
    says(&reason, &["revoked"], "a revoked certificate");
    assert_eq!(server_ports(&a, &[]), 0);
    // B's is not revoked.
    joined(&b.sh(CONNECT_MTLS), "node B after C's revocation");
    wait_server_ports(&a, &[], 1);

    assert_eq!(a.ready(&[]).len(), 1);
    assert_eq!(b.ready(&[]).len(), 2);
}

#[test]
fn client_certificates_on_control_api() {
    if !needs(&["openssl", "htpasswd"]) {
        return;
    }
    let (a, b) = nodes("cmtls");
    client_pki(&a, &b);
    a.sh_ok(SERVE_CTL_MTLS);
    let url = "https://192.0.2.1:7443/ctl";
    let base = ["ctl", "--ctlurl", url, "--ctlsslcert", "ssl.crt"];
    let ctl = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        args.push("listport");
        b.etherws(&args)
    };
    poll("the HTTPS control API", Duration::from_secs(10), || {
        let out = ctl(&["--ctlcert", "nodeb.crt", "--ctlkey", "nodeb.key"]);
        if out.status.success() {
            Ok(())
        } else {
            Err(show(&out))
        }
    });

    // The recipe.
    let out = b.sh(CTL_MTLS);
    assert!(
        stdout(&out).starts_with("  Port  Type  State"),
        "the page's ctl command\n{}",
        show(&out)
    );
    // Refused: no certificate, one of a foreign CA.
    says(
        &unreachable(&ctl(&[]), "no client certificate"),
        &["requires a client certificate", "certificate required"],
        "no client certificate",
    );
    says(
        &unreachable(
            &ctl(&["--ctlcert", "mallory.crt", "--ctlkey", "mallory.key"]),
            "a foreign CA",
        ),
        &["unknown CA"],
        "a foreign CA",
    );
    // --ctlcert needs --ctlkey (clap says so).
    let out = ctl(&["--ctlcert", "nodeb.crt"]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--ctlkey"),
        "{}",
        show(&out)
    );

    // With CRLs, and a password on top of the certificate.
    a.stop_switches();
    fs::write(a.dir.path().join("ca.cnf"), CA_CNF).expect("write ca.cnf");
    a.sh_ok(
        "touch index.txt\necho 01 > crlnumber\n\
         openssl ca -config ca.cnf -keyfile clientca.key -cert clientca.pem -revoke nodec.crt\n\
         openssl ca -config ca.cnf -keyfile clientca.key -cert clientca.pem -gencrl -out clientca.crl\n\
         htpasswd -cbB htpasswd username password\n\
         etherws sw --ctlhost 192.0.2.1 --ctlport 7443 --ctlsslkey ssl.key --ctlsslcert ssl.crt \
         --ctlsslclientca clientca.pem --ctlsslcrl clientca.crl --ctlhtpasswd htpasswd\n",
    );
    let creds = ["--ctluser", "username", "--ctlpasswd", "password"];
    let with = |cert: &[&str], creds: &[&str]| {
        let mut extra = cert.to_vec();
        extra.extend_from_slice(creds);
        ctl(&extra)
    };
    let nodeb = ["--ctlcert", "nodeb.crt", "--ctlkey", "nodeb.key"];
    let nodec = ["--ctlcert", "nodec.crt", "--ctlkey", "nodec.key"];
    poll("the restarted control API", Duration::from_secs(10), || {
        let out = with(&nodeb, &creds);
        if out.status.success() {
            Ok(())
        } else {
            Err(show(&out))
        }
    });
    says(
        &unreachable(&with(&nodec, &creds), "a revoked certificate"),
        &["revoked"],
        "a revoked certificate",
    );
    says(
        &unreachable(&with(&nodeb, &[]), "a certificate without the password"),
        &["HTTP Error 401"],
        "a certificate without the password",
    );
    says(
        &unreachable(&with(&[], &creds), "the password without a certificate"),
        &["certificate required"],
        "the password without a certificate",
    );

    let out = with(&nodeb, &creds);
    assert!(
        out.status.success() && parse_ports(&stdout(&out)).is_empty(),
        "{}",
        show(&out)
    );
}

// ---------------------------------------------------------------------------------------------
// settings (loopback, no root)

#[test]
fn client_certificate_settings_are_checked() {
    if !require_tool("openssl") {
        return;
    }
    let dir = TempDir::new("mtls-settings");
    let sh = |script: &str| {
        let out = std::process::Command::new("sh")
            .args(["-ec", script])
            .current_dir(dir.path())
            .output()
            .expect("run sh");
        assert!(out.status.success(), "{script}\n{}", show(&out));
    };
    sh(
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ssl.key -out ssl.crt -days 365 \
        -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1\n",
    );
    let (key, cert) = (dir.file("ssl.key"), dir.file("ssl.crt"));

    let start_fails = |args: &[&str], want: &str| {
        let out = sw_start_fails(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success()
                && stderr.contains("etherws sw: error: ")
                && stderr.contains(want),
            "{args:?}: expected a start-up error about {want:?}\n{}",
            show(&out)
        );
    };
    start_fails(
        &["--sslclientca", &cert],
        "--sslclientca needs --sslkey and --sslcert",
    );
    start_fails(
        &["--sslkey", &key, "--sslcert", &cert, "--sslcrl", &cert],
        "--sslcrl needs --sslclientca",
    );
    start_fails(
        &["--ctlsslclientca", &cert],
        "--ctlsslclientca needs --ctlsslkey and --ctlsslcert",
    );
    start_fails(
        &[
            "--sslkey",
            &key,
            "--sslcert",
            &cert,
            "--sslclientca",
            &cert,
            "--sslcrl",
            &cert,
        ],
        "no certificate revocation list",
    );
    start_fails(
        &["--sslkey", &key, "--sslcert", &cert, "--sslclientca", &key],
        "no certificate in",
    );
    // A version 1 CRL (`openssl ca -gencrl` without a crlnumber file) is refused, and why.
    sh(
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout clientca.key -out clientca.pem \
        -days 365 -subj /CN=my-client-ca\n\
        touch index.txt\n\
        printf '[ca]\\ndefault_ca = c\\n[c]\\ndatabase = index.txt\\ndefault_md = sha256\\n\
        default_crl_days = 30\\n' > v1.cnf\n\
        openssl ca -config v1.cnf -keyfile clientca.key -cert clientca.pem -gencrl -out v1.crl\n",
    );
    start_fails(
        &[
            "--sslkey",
            &key,
            "--sslcert",
            &cert,
            "--sslclientca",
            &dir.file("clientca.pem"),
            "--sslcrl",
            &dir.file("v1.crl"),
        ],
        "a CRL must be version 2",
    );
    // One listener, one way of checking clients.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    start_fails(
        &[
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--ctlhost",
            "127.0.0.1",
            "--ctlport",
            &port,
            "--sslkey",
            &key,
            "--sslcert",
            &cert,
            "--ctlsslkey",
            &key,
            "--ctlsslcert",
            &cert,
            "--sslclientca",
            &cert,
        ],
        "Different sslclientca/ctlsslclientca on same host",
    );

    // addPort's cert and key: both or neither, and only regular files are read.
    let sw = Switch::local("mtls-settings", &[]);
    let addport = |opts: &str| {
        rpc(
            sw.ctl_addr(),
            "/ctl",
            &format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"etherws.control.addPort","params":{{"type":"client","target":"wss://127.0.0.1:9/","options":{opts}}}}}"#
            ),
        )
    };
    let answer = addport(&format!(r#"{{"cert":"{cert}"}}"#));
    assert_eq!(
        answer["error"]["data"], "Both cert and key are required",
        "{answer}"
    );
    let answer = addport(r#"{"cert":"/dev/zero","key":"/dev/zero","insecure":true}"#);
    let data = answer["error"]["data"].as_str().unwrap_or_default();
    assert!(data.contains("not a regular file"), "{answer}");
    assert!(sw.listport().is_empty());
}
