//! A pseudo-terminal, for password prompts.

use super::*;

/// What a command run on a pseudo-terminal did: its exit status and everything it wrote to the
/// terminal (stdout, stderr and /dev/tty are all the terminal).
#[derive(Debug)]
pub struct PtyRun {
    pub status: std::process::ExitStatus,
    pub output: String,
}

/// Run `cmd` with a new pseudo-terminal as its controlling terminal and stdio; when `prompt`
/// appears in its output, type `input` and Enter. Panics if the command does not end within
/// 30 s (it is killed) or the prompt never appears before it ends.
pub fn run_on_pty(mut cmd: Command, prompt: &str, input: &str) -> PtyRun {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::process::CommandExt;
    use std::sync::{Arc, Mutex, mpsc};

    // SAFETY: posix_openpt/grantpt/unlockpt take no pointers; the descriptor is checked and
    // owned at once, so it is open for the two calls after it.
    let master = unsafe {
        let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(fd >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
        let fd = OwnedFd::from_raw_fd(fd);
        assert_eq!(libc::grantpt(fd.as_raw_fd()), 0, "grantpt");
        assert_eq!(libc::unlockpt(fd.as_raw_fd()), 0, "unlockpt");
        fd
    };
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: the buffer is valid for its length.
    let rc = unsafe { libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) };
    assert_eq!(rc, 0, "ptsname_r");
    // SAFETY: ptsname_r wrote a NUL-terminated string into the buffer.
    let slave_path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    let slave = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&slave_path)
        .unwrap_or_else(|e| panic!("open {slave_path}: {e}"));
    cmd.stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn on a pty");
    // Close our copies of the terminal's slave side, so that reading the master ends (EIO)
    // once the child is gone.
    drop(cmd);

    let master = File::from(master);
    let mut reader = master.try_clone().expect("dup pty master");
    let mut writer = master;
    let seen = Arc::new(Mutex::new(Vec::<u8>::new()));
    let (done_tx, done_rx) = mpsc::channel();
    {
        let seen = seen.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
            let _ = done_tx.send(());
        });
    }
    let text =
        |seen: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut typed = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the pty child") {
            break status;
        }
        if !typed && text(&seen).contains(prompt) {
            writer
                .write_all(format!("{input}\n").as_bytes())
                .expect("type on the pty");
            typed = true;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "command on the pty did not finish (prompt {prompt:?} typed: {typed}); output:\n{}",
                text(&seen)
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    let _ = done_rx.recv_timeout(Duration::from_secs(5));
    let output = text(&seen);
    assert!(
        output.contains(prompt),
        "the prompt {prompt:?} never appeared; the command ended with {status}, output:\n{output}"
    );
    PtyRun { status, output }
}
