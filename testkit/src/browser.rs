//! Web pages and a headless browser, for the tests that drive a real `chromium`.
//!
//! [`PageServer`] serves a page from inside a namespace (and relays, or holds the page's load
//! until it reports), [`headless_chromium`] loads it there and dumps the DOM.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::{CHROMIUM_HEADLESS, Netns, TempDir};

/// What the page reported through `POST /done`.
#[derive(Default)]
struct Report {
    done: Mutex<Option<String>>,
    cv: Condvar,
}

/// How long `GET /hold` waits for the page's report before answering anyway.
const HOLD: Duration = Duration::from_secs(45);

/// A tiny HTTP server listening inside a namespace; stopped on drop. It answers `GET /` with
/// `page` (and closes the connection, so that the browser does not reuse it for a request that
/// must be relayed). Every other request is:
///
/// * with `relay`: relayed as is to that address (the rebinding origin);
/// * without: `GET /hold` is answered only once the page posted its results to `POST /done`
///   (an `<img src="/hold">` keeps the page's load event, and so headless chromium's DOM dump
///   and its virtual clock, waiting until the page is done); anything else 404.
pub struct PageServer {
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    report: Arc<Report>,
}

impl PageServer {
    /// Serves `page` on `addr` inside `ns` (relaying to `relay`, if given); panics if it
    /// cannot bind.
    pub fn start(
        ns: &Netns,
        addr: SocketAddr,
        page: String,
        relay: Option<SocketAddr>,
    ) -> PageServer {
        let path = format!("/run/netns/{}", ns.name());
        let stop = Arc::new(AtomicBool::new(false));
        let report = Arc::new(Report::default());
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop2, report2) = (stop.clone(), report.clone());
        // setns(CLONE_NEWNET) only moves the calling thread; the threads it starts inherit it.
        let accept = thread::spawn(move || {
            let bound = (|| {
                let nsf = File::open(&path)?;
                // SAFETY: setns on a namespace file we opened, for this thread only.
                if unsafe { libc::setns(nsf.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let l = TcpListener::bind(addr)?;
                l.set_nonblocking(true)?;
                Ok(l)
            })();
            let listener = match bound {
                Ok(l) => {
                    let _ = ready_tx.send(Ok(()));
                    l
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let page = Arc::new(page);
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (page, report) = (page.clone(), report2.clone());
                        thread::spawn(move || serve(conn, &page, relay, &report));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        ready_rx
            .recv()
            .expect("page server thread")
            .unwrap_or_else(|e| panic!("page server on {addr} in {}: {e}", ns.name()));
        PageServer {
            stop,
            accept: Some(accept),
            report,
        }
    }

    /// The results the page posted to `/done`, if it did.
    pub fn results(&self) -> Option<String> {
        self.report.done.lock().unwrap().clone()
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.report.cv.notify_all();
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn respond(conn: &mut TcpStream, status: &str, content_type: &str, body: &str) {
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(resp.as_bytes());
    let _ = conn.shutdown(Shutdown::Write);
}

fn serve(mut conn: TcpStream, page: &str, relay: Option<SocketAddr>, report: &Report) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) if head.len() + n > 65536 => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    };
    let text = String::from_utf8_lossy(&head[..end]).into_owned();
    let request_line = text.lines().next().unwrap_or("").to_string();
    eprintln!("page server got {request_line}");
    if request_line.starts_with("GET / ") {
        return respond(&mut conn, "200 OK", "text/html; charset=utf-8", page);
    }
    if let Some(relay) = relay {
        // What the browser's connection does once DNS rebinding made the attacker's name point
        // at the switch: the same bytes reach the control API.
        let Ok(mut up) = TcpStream::connect_timeout(&relay, Duration::from_secs(5)) else {
            return;
        };
        if up.write_all(&head).is_err() {
            return;
        }
        let _ = conn.set_read_timeout(None);
        let (Ok(mut conn_r), Ok(mut up_w)) = (conn.try_clone(), up.try_clone()) else {
            return;
        };
        let upward = thread::spawn(move || {
            let _ = std::io::copy(&mut conn_r, &mut up_w);
            let _ = up_w.shutdown(Shutdown::Write);
        });
        let _ = std::io::copy(&mut up, &mut conn);
        let _ = conn.shutdown(Shutdown::Both);
        let _ = upward.join();
        return;
    }
    if request_line.starts_with("GET /hold ") {
        let done = report.done.lock().unwrap();
        let _ = report
            .cv
            .wait_timeout_while(done, HOLD, |d| d.is_none())
            .unwrap();
        return respond(&mut conn, "204 No Content", "text/plain", "");
    }
    if request_line.starts_with("POST /done ") {
        let len = text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = head[end..].to_vec();
        while body.len() < len {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&buf[..n]),
            }
        }
        *report.done.lock().unwrap() = Some(String::from_utf8_lossy(&body).into_owned());
        report.cv.notify_all();
        return respond(&mut conn, "204 No Content", "text/plain", "");
    }
    respond(&mut conn, "404 Not Found", "text/plain", "")
}

/// `chromium --headless ... FLAGS --dump-dom URL` as root inside `ns` ([`CHROMIUM_HEADLESS`],
/// without its `--disable-quic` when `quic`: WebTransport needs QUIC); killed (its whole process
/// group) if it runs over 90 s. Returns the dumped DOM and chromium's log; panics if chromium
/// fails or hangs.
pub fn headless_chromium(ns: &Netns, url: &str, flags: &[&str], quic: bool) -> (String, String) {
    let dir = TempDir::new("chromium");
    let profile = dir.file("profile");
    let out_path = dir.file("dom.html");
    let err_path = dir.file("chromium.log");
    let user_data = format!("--user-data-dir={profile}");
    let mut argv: Vec<&str> = CHROMIUM_HEADLESS
        .iter()
        .copied()
        .filter(|f| !(quic && *f == "--disable-quic"))
        .collect();
    argv.push(user_data.as_str());
    argv.extend(flags);
    argv.extend(["--dump-dom", url]);
    let mut cmd = ns.command(&argv);
    cmd.env("HOME", dir.path())
        .stdout(File::create(&out_path).expect("create dom file"))
        .stderr(File::create(&err_path).expect("create chromium log"))
        .process_group(0);
    let mut child = cmd.spawn().expect("start chromium");
    let pgid = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        thread::sleep(Duration::from_millis(100));
    };
    // The whole process group (`ip netns exec` execs chromium, which leads it): whatever is left
    // of it, or all of it when it hung. ESRCH when nothing is left is fine.
    // SAFETY: kill(2) on the process group of our own child (process_group(0)).
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let _ = child.wait();
    let dom = fs::read_to_string(&out_path).unwrap_or_default();
    let log = fs::read_to_string(&err_path).unwrap_or_default();
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!("chromium failed ({s})\n--- dumped DOM ---\n{dom}\n--- log ---\n{log}"),
        None => panic!("chromium did not finish within 90 s; killed\n--- log ---\n{log}"),
    }
    (dom, log)
}
