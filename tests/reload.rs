//! Reload in place, against the real binary: `kill -HUP` and `etherws ctl reload` re-read the
//! configuration file and the files it names, and apply the difference without dropping the
//! clients whose settings did not change; a bad file changes nothing and says why; a user
//! removed from the htpasswd file loses their session.
//!
//! The clients are raw WebSocket clients of this process (tokio-tungstenite), each with its own
//! MAC address; the first test runs the switch in a network namespace of its own (it creates a
//! TAP device), the others on loopback.

use std::sync::Arc;
use std::time::Duration;

use etherws_testkit::*;
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Clients connected before the reload (half on `/`, half on `/lab`).
const CLIENTS: usize = 100;

fn frame(i: usize) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0x52, 0x4c, 0x00, (i >> 8) as u8, i as u8]);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.resize(60, 0xa5);
    f
}

/// A WebSocket client's handshake on `io` to `path`, with Basic credentials if given.
async fn handshake<S>(io: S, path: &str, creds: Option<(&str, &str)>) -> WebSocketStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut req = format!("ws://127.0.0.1{path}")
        .into_client_request()
        .unwrap();
    if let Some((u, p)) = creds {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        req.headers_mut()
            .insert("authorization", format!("Basic {token}").parse().unwrap());
    }
    let (ws, _) = tokio_tungstenite::client_async(req, io)
        .await
        .unwrap_or_else(|e| panic!("handshake on {path}: {e}"));
    ws
}

/// A TLS client trusting `ca` only; `connect` gives the stream and the server's certificate.
struct Tls(tokio_rustls::TlsConnector);

impl Tls {
    fn new(ca: &str) -> Tls {
        Tls::with(ca, None)
    }

    /// Presenting the client certificate `identity` if given.
    fn with(ca: &str, identity: Option<&ServerCert>) -> Tls {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some(id) => {
                let chain = vec![first_cert(&id.cert)];
                let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&id.key).unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
        };
        Tls(tokio_rustls::TlsConnector::from(Arc::new(config)))
    }

    async fn connect(
        &self,
        port: u16,
    ) -> (
        tokio_rustls::client::TlsStream<TcpStream>,
        CertificateDer<'static>,
    ) {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let tls = self.0.connect(name, tcp).await.expect("TLS handshake");
        let cert = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        (tls, cert.into_owned())
    }
}

fn first_cert(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(pem).unwrap()
}

/// The server ports, by number, with their path and VLAN.
fn servers(sw: &Switch) -> Vec<(u64, String, Option<u64>)> {
    let ports = sw.rpc("listPort", Value::Null);
    let mut out: Vec<_> = ports["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "server")
        .map(|p| {
            (
                p["port"].as_u64().unwrap(),
                p["path"].as_str().unwrap_or_default().to_string(),
                p["vlan"].as_u64(),
            )
        })
        .collect();
    out.sort();
    out
}

fn wait_servers(sw: &Switch, n: usize) -> Vec<(u64, String, Option<u64>)> {
    poll(
        &format!("{n} server ports"),
        Duration::from_secs(20),
        || {
            let s = servers(sw);
            if s.len() == n {
                Ok(s)
            } else {
                Err(format!("{} ports", s.len()))
            }
        },
    )
}

/// Waits for `what` in the switch's log.
fn wait_log(sw: &Switch, what: &str) -> String {
    poll(
        &format!("{what:?} in the log"),
        Duration::from_secs(10),
        || {
            let log = sw.log();
            if log.contains(what) {
                Ok(log)
            } else {
                Err(log)
            }
        },
    )
}

const CONFIG_BEFORE: &str = r#"
[switch]
sslkey = "live.key"
sslcert = "live.crt"
storm_pps = 0
max_conns_per_addr = 1000

[[path]]
path = "/"

[[path]]
path = "/lab"
vlan = 10
"#;

const CONFIG_AFTER: &str = r#"
[switch]
sslkey = "live.key"
sslcert = "live.crt"
storm_pps = 0
max_conns_per_addr = 1000

[[path]]
path = "/"

[[path]]
path = "/lab"
vlan = 20

[[path]]
path = "/new"

[[port]]
type = "tap"
target = "rl0"
"#;

/// 100 clients over TLS, then a changed file (a new path, a path's VLAN changed, a new TAP
/// port) and a renewed certificate, and SIGHUP: no client dropped, the same port numbers, every
/// client still passing frames, `/lab`'s clients on VLAN 20, `/new` served, the TAP there, and a
/// new handshake sees the new certificate.
#[test]
fn sighup_applies_a_new_file_and_certificate_without_dropping_anyone() {
    if !require_root() || !require_tool("openssl") {
        return;
    }
    let pki = Pki::new("reload");
    let ca = pki.ca("reload");
    let old = pki.server(&ca, "old", &["127.0.0.1"], KeyForm::Pkcs8);
    let new = pki.server(&ca, "new", &["127.0.0.1"], KeyForm::Pkcs8);
    let dir = &pki.dir;
    std::fs::copy(&old.key, dir.file("live.key")).unwrap();
    std::fs::copy(&old.cert, dir.file("live.crt")).unwrap();
    let config = dir.write("etherws.toml", CONFIG_BEFORE);
    let ns = Netns::new("reload");
    let sw = Switch::builder("reload")
        .netns(&ns)
        .args(&["--config", &config])
        .start();
    let (ca_pem, new_cert) = (ca.cert.clone(), new.clone_paths());
    let (live_key, live_crt) = (dir.file("live.key"), dir.file("live.crt"));
    ns.enter(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let tls = Tls::new(&ca_pem);
            let mut clients = Vec::new();
            for i in 0..CLIENTS {
                let path = if i % 2 == 0 { "/" } else { "/lab" };
                let (io, cert) = tls.connect(sw.ws_port).await;
                assert_eq!(cert, first_cert(&live_crt), "the certificate at start");
                clients.push(handshake(io, path, None).await);
            }
            let before = wait_servers(&sw, CLIENTS);
            assert!(
                before
                    .iter()
                    .all(|(_, p, v)| (p == "/lab") == (*v == Some(10)))
            );

            // certbot's deploy hook: the new pair in place, then a reload.
            std::fs::copy(&new_cert.0, &live_key).unwrap();
            std::fs::copy(&new_cert.1, &live_crt).unwrap();
            std::fs::write(&config, CONFIG_AFTER).unwrap();
            sw.signal(libc::SIGHUP);
            let log = wait_log(&sw, "reloaded:");
            assert!(log.contains("+/new") && log.contains("~/lab"), "{log}");

            // Nobody dropped: the same ports, `/lab`'s now on VLAN 20, the others as they were.
            let after = servers(&sw);
            let numbers =
                |v: &[(u64, String, Option<u64>)]| v.iter().map(|p| p.0).collect::<Vec<_>>();
            assert_eq!(numbers(&after), numbers(&before), "no client dropped");
            for (n, path, vlan) in &after {
                let want = if path == "/lab" { Some(20) } else { None };
                assert_eq!(*vlan, want, "port {n} on {path}");
            }
            // Every client still passes frames both ways: one broadcast each, and each gets
            // at least one of its group's.
            for (i, c) in clients.iter_mut().enumerate() {
                c.send(Message::Binary(frame(i).into()))
                    .await
                    .expect("client still open");
            }
            for (i, c) in clients.iter_mut().enumerate() {
                let got = tokio::time::timeout(Duration::from_secs(10), c.next()).await;
                assert!(
                    matches!(got, Ok(Some(Ok(Message::Binary(_))))),
                    "client {i} received nothing after the reload: {got:?}"
                );
            }
            // Each client got a frame of its group's, not necessarily its own yet: the
            // switch may still be reading the last of them.
            let server_rx = || -> u64 {
                sw.rpc("listPort", Value::Null)["entries"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|p| p["type"] == "server")
                    .map(|p| p["rx"].as_u64().unwrap())
                    .sum()
            };
            let until = std::time::Instant::now() + Duration::from_secs(10);
            let mut rx = server_rx();
            while rx < CLIENTS as u64 && std::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(100)).await;
                rx = server_rx();
            }
            assert_eq!(rx, CLIENTS as u64, "every client's frame was switched");

            // The new path is served, over the new certificate; the TAP port is there.
            let (io, cert) = tls.connect(sw.ws_port).await;
            assert_eq!(
                cert,
                first_cert(&new_cert.1),
                "a new handshake sees the new certificate"
            );
            let _new = handshake(io, "/new", None).await;
            let all = wait_servers(&sw, CLIENTS + 1);
            assert!(all.iter().any(|(_, p, _)| p == "/new"), "{all:?}");
            let ports = sw.listport();
            let tap = ports.iter().find(|p| p.kind == "tap" && p.target == "rl0");
            let tap = tap
                .unwrap_or_else(|| panic!("no TAP port rl0: {ports:?}"))
                .port;

            // The TAP's MTU changed: the same port, re-configured; then gone from the file:
            // deleted. The clients stay through both.
            std::fs::write(&config, format!("{CONFIG_AFTER}mtu = 1400\n")).unwrap();
            let said = sw.ctl_ok(&["reload"]);
            assert!(
                said.contains(&format!("port {tap} (rl0) re-configured")),
                "{said}"
            );
            let ifs = sw.listif();
            assert!(
                ifs.iter().any(|i| i.port == tap && i.mtu == 1400),
                "{ifs:?}"
            );
            let without_tap =
                CONFIG_AFTER.replace("[[port]]\ntype = \"tap\"\ntarget = \"rl0\"\n", "");
            std::fs::write(&config, without_tap).unwrap();
            let said = sw.ctl_ok(&["reload"]);
            assert!(
                said.contains(&format!("port {tap} (rl0) deleted")),
                "{said}"
            );
            assert!(sw.port(tap).is_none(), "the TAP port is deleted");
            assert_eq!(servers(&sw).len(), CLIENTS + 1, "no client dropped");
            assert!(
                sw.log().contains("port") && !sw.log().contains("disconnected"),
                "{}",
                sw.log()
            );
        });
    });
}

trait Paths {
    fn clone_paths(&self) -> (String, String);
}

impl Paths for ServerCert {
    fn clone_paths(&self) -> (String, String) {
        (self.key.clone(), self.cert.clone())
    }
}

/// A bad file, a broken certificate or an option only a start sets: `ctl reload` fails with
/// the reason, the log says it, and nothing changes; a good one prints its summary.
#[test]
fn a_bad_reload_changes_nothing_and_says_why() {
    if !require_tool("openssl") {
        return;
    }
    let pki = Pki::new("badreload");
    let ca = pki.ca("badreload");
    let srv = pki.server(&ca, "srv", &["127.0.0.1"], KeyForm::Pkcs8);
    let dir = &pki.dir;
    let good = format!(
        "[switch]\nsslkey = {:?}\nsslcert = {:?}\n\n[[path]]\npath = \"/\"\n",
        srv.key, srv.cert
    );
    let config = dir.write("etherws.toml", &good);
    let sw = Switch::local("badreload", &["--config", &config]);
    // A client connected throughout: its port must stay as it is.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _client = rt.block_on(async {
        let (io, _) = Tls::new(&ca.cert).connect(sw.ws_port).await;
        handshake(io, "/", None).await
    });
    let before = wait_servers(&sw, 1);

    let broken = dir.write("broken.crt", "-----BEGIN CERTIFICATE-----\nnot base64!\n");
    let cases = [
        (good.replace(&srv.cert, &broken), "broken.crt"),
        (format!("{good}\n[[path]]\npath = \"/\"\n"), "given twice"),
        (format!("{good}\n[[port]]\ntype = \"tep\"\n"), "tep"),
        (
            good.replace("[switch]\n", "[switch]\nthreads = 3\n"),
            "--threads changed: needs a restart",
        ),
        (
            good.replace("[switch]\n", "[switch]\nqueue_delay = 2\n"),
            "--queue-delay changed: needs a restart",
        ),
    ];
    for (text, reason) in cases {
        std::fs::write(&config, &text).unwrap();
        let out = sw.ctl(&["reload"]);
        assert!(
            !out.status.success(),
            "ctl reload should fail\n{}",
            show(&out)
        );
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            said.contains(reason),
            "ctl reload says why ({reason})\n{}",
            show(&out)
        );
        wait_log(&sw, "reload refused, nothing changed");
        assert_eq!(servers(&sw), before, "nothing changed");
    }
    // The file made good again: a summary, exit 0.
    std::fs::write(&config, format!("{good}\n[[path]]\npath = \"/two\"\n")).unwrap();
    let said = sw.ctl_ok(&["reload"]);
    assert!(said.contains("paths +/two"), "{said}");
    let rpc = sw.rpc("reload", Value::Null);
    assert_eq!(rpc["summary"], "TLS certificates read again", "{rpc}");
    // The switch core's limits apply live.
    let limited = good.replace("[switch]\n", "[switch]\nmax_macs = 7\nstorm_pps = 100\n");
    std::fs::write(&config, format!("{limited}\n[[path]]\npath = \"/two\"\n")).unwrap();
    let said = sw.ctl_ok(&["reload"]);
    assert!(said.contains("limits"), "{said}");
    assert_eq!(servers(&sw).len(), before.len(), "nobody dropped");
}

/// A user removed from the htpasswd file: their session is closed at the reload, and the log
/// says why; the others' are untouched.
#[test]
fn a_user_removed_from_htpasswd_loses_the_session() {
    let dir = TempDir::new("htreload");
    let entry = |u: &str| format!("{u}:{}\n", bcrypt::hash("pw", 4).unwrap());
    let htpasswd = dir.write("htpasswd", &(entry("alice") + &entry("bob")));
    let config = dir.write(
        "etherws.toml",
        &format!("[switch]\nhtpasswd = {htpasswd:?}\n\n[[path]]\npath = \"/\"\n"),
    );
    let with_gone = std::fs::read_to_string(&config).unwrap() + "\n[[path]]\npath = \"/gone\"\n";
    std::fs::write(&config, &with_gone).unwrap();
    let sw = Switch::local("htreload", &["--config", &config]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tcp = |p| TcpStream::connect(("127.0.0.1", p));
        let mut alice = handshake(tcp(sw.ws_port).await.unwrap(), "/", Some(("alice", "pw"))).await;
        let mut bob = handshake(tcp(sw.ws_port).await.unwrap(), "/", Some(("bob", "pw"))).await;
        let gone = tcp(sw.ws_port).await.unwrap();
        let mut gone = handshake(gone, "/gone", Some(("alice", "pw"))).await;
        let before = wait_servers(&sw, 3);

        // Bob gone from the file, and the path /gone from the configuration.
        std::fs::write(&htpasswd, entry("alice")).unwrap();
        std::fs::write(
            &config,
            with_gone.replace("[[path]]\npath = \"/gone\"\n", ""),
        )
        .unwrap();
        let said = sw.ctl_ok(&["reload"]);
        assert!(
            said.contains("paths -/gone") && said.contains("2 session(s) closed"),
            "{said}"
        );
        let log = wait_log(&sw, "session closed by reload");
        assert!(log.contains("user bob is no longer in"), "{log}");
        assert!(log.contains("its path is no longer served"), "{log}");
        assert!(closed(&mut gone).await, "the session on /gone is closed");

        // Bob's connection ends (a close frame), alice's stays and passes a frame.
        assert!(closed(&mut bob).await, "bob's session is closed");
        let after = wait_servers(&sw, 1);
        assert!(
            before.contains(&after[0]),
            "alice keeps her port: {before:?} {after:?}"
        );
        assert_eq!(after[0].1, "/", "{after:?}");
        alice
            .send(Message::Binary(frame(1).into()))
            .await
            .expect("alice still connected");
        poll("alice's frame", Duration::from_secs(5), || {
            let rx = sw.port_status(after[0].0 as u32)["rx"].as_u64();
            if rx == Some(1) {
                Ok(())
            } else {
                Err(format!("{rx:?}"))
            }
        });
    });
}

/// A path that starts asking for a password: the clients that came in without one are
/// disconnected at the reload, and the log says why.
#[test]
fn anonymous_sessions_end_when_their_path_asks_for_a_password() {
    let dir = TempDir::new("anonreload");
    let htpasswd = dir.write(
        "htpasswd",
        &format!("alice:{}\n", bcrypt::hash("pw", 4).unwrap()),
    );
    let open = "[[path]]\npath = \"/\"\n";
    let config = dir.write("etherws.toml", open);
    let sw = Switch::local("anonreload", &["--config", &config]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tcp = TcpStream::connect(("127.0.0.1", sw.ws_port)).await.unwrap();
        let mut anonymous = handshake(tcp, "/", None).await;
        wait_servers(&sw, 1);
        std::fs::write(
            &config,
            format!("[switch]\nhtpasswd = {htpasswd:?}\n\n{open}"),
        )
        .unwrap();
        let said = sw.ctl_ok(&["reload"]);
        assert!(said.contains("1 session(s) closed"), "{said}");
        let log = wait_log(&sw, "session closed by reload");
        assert!(log.contains("now asks for a password"), "{log}");
        assert!(
            closed(&mut anonymous).await,
            "the anonymous session is closed"
        );
    });
}

/// Waits for a client's connection to end (a close frame, or the stream's end).
async fn closed<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> bool {
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    });
    end.await.is_ok()
}

/// `openssl ca` in the PKI's directory: `ca.cnf`, its database, and a CRL of `ca` (none
/// revoked yet) in `ca.crl`.
fn crl_setup(pki: &Pki, ca: &str) -> String {
    pki.dir.write(
        "ca.cnf",
        "[ca]\ndefault_ca = theca\n[theca]\ndatabase = index.txt\ncrlnumber = crlnumber\n\
         default_md = sha256\ndefault_crl_days = 30\n",
    );
    openssl_ca(
        pki,
        ca,
        "touch index.txt && echo 01 > crlnumber && openssl ca -config ca.cnf -keyfile CAKEY -cert CACERT -gencrl -out ca.crl",
    );
    pki.dir.file("ca.crl")
}

/// Runs `script` in the PKI's directory, CAKEY and CACERT standing for `ca`'s files.
fn openssl_ca(pki: &Pki, ca: &str, script: &str) {
    let script = script
        .replace("CAKEY", &format!("{ca}-ca.key"))
        .replace("CACERT", &format!("{ca}-ca.pem"));
    let out = std::process::Command::new("sh")
        .args(["-ec", &script])
        .current_dir(pki.dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{script}\n{}", show(&out));
}

/// A client certificate revoked by a new CRL: its session is closed at the reload, and the log
/// says why; another client's is untouched.
#[test]
fn a_revoked_certificate_loses_the_session() {
    if !require_tool("openssl") {
        return;
    }
    let pki = Pki::new("crlreload");
    let ca = pki.ca("crl");
    let srv = pki.server(&ca, "srv", &["127.0.0.1"], KeyForm::Pkcs8);
    let alice = pki.client(&ca, "alice", KeyForm::Pkcs8);
    let bob = pki.client(&ca, "bob", KeyForm::Pkcs8);
    let crl = crl_setup(&pki, "crl");
    let config = pki.dir.write(
        "etherws.toml",
        &format!(
            "[switch]\nsslkey = {:?}\nsslcert = {:?}\nsslclientca = {:?}\nsslcrl = {crl:?}\n",
            srv.key, srv.cert, ca.cert
        ),
    );
    let sw = Switch::local("crlreload", &["--config", &config]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (io, _) = Tls::with(&ca.cert, Some(&alice)).connect(sw.ws_port).await;
        let mut a = handshake(io, "/", None).await;
        let (io, _) = Tls::with(&ca.cert, Some(&bob)).connect(sw.ws_port).await;
        let mut b = handshake(io, "/", None).await;
        let before = wait_servers(&sw, 2);

        openssl_ca(
            &pki,
            "crl",
            &format!(
                "openssl ca -config ca.cnf -keyfile CAKEY -cert CACERT -revoke {}\n\
                 openssl ca -config ca.cnf -keyfile CAKEY -cert CACERT -gencrl -out ca.crl",
                bob.cert
            ),
        );
        let said = sw.ctl_ok(&["reload"]);
        assert!(said.contains("1 session(s) closed"), "{said}");
        let log = wait_log(&sw, "session closed by reload");
        assert!(
            log.contains("certificate revoked") && log.contains("user=bob"),
            "{log}"
        );
        assert!(closed(&mut b).await, "bob's session is closed");
        let after = wait_servers(&sw, 1);
        assert!(
            before.contains(&after[0]),
            "alice keeps her port: {before:?} {after:?}"
        );
        a.send(Message::Binary(frame(1).into()))
            .await
            .expect("alice still connected");
    });
}

/// The control API over HTTPS takes a renewed certificate at `ctl reload` too: the next
/// handshake sees it, and `ctl` (which checks it against the CA) keeps working.
#[test]
fn the_control_api_takes_a_renewed_certificate() {
    if !require_tool("openssl") {
        return;
    }
    let pki = Pki::new("ctlreload");
    let ca = pki.ca("ctlreload");
    let old = pki.server(&ca, "old", &["127.0.0.1"], KeyForm::Pkcs8);
    let new = pki.server(&ca, "new", &["127.0.0.1"], KeyForm::Pkcs8);
    let dir = &pki.dir;
    let (key, crt) = (dir.file("ctl.key"), dir.file("ctl.crt"));
    std::fs::copy(&old.key, &key).unwrap();
    std::fs::copy(&old.cert, &crt).unwrap();
    let config = dir.write(
        "etherws.toml",
        &format!("[switch]\nctlsslkey = {key:?}\nctlsslcert = {crt:?}\n"),
    );
    let port = free_port();
    let sw = Switch::builder("ctlreload")
        .ctl_port(port)
        .ctl_url(&format!("https://127.0.0.1:{port}/ctl"))
        .ctl_opts(&["--ctlsslcert", &ca.cert])
        .args(&["--config", &config])
        .start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let seen = |rt: &tokio::runtime::Runtime| rt.block_on(Tls::new(&ca.cert).connect(port)).1;
    assert_eq!(seen(&rt), first_cert(&old.cert));
    std::fs::copy(&new.key, &key).unwrap();
    std::fs::copy(&new.cert, &crt).unwrap();
    let said = sw.ctl_ok(&["reload"]);
    assert!(said.contains("TLS certificates read again"), "{said}");
    assert_eq!(seen(&rt), first_cert(&new.cert), "the new certificate");
    sw.ctl_ok(&["listport"]);
}
