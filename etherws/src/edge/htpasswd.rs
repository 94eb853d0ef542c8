//! HTTP Basic authentication against an Apache `htpasswd` file.
//!
//! Accepted entry formats (everything the `htpasswd` tool writes that can be verified without
//! the system `crypt(3)`):
//!
//! * `{SHA}` — base64 of the SHA-1 of the password (`htpasswd -s`, the only format etherws 1.3
//!   understood);
//! * `$apr1$` — Apache's MD5-crypt variant (`htpasswd -m`, the tool's default);
//! * `$2y$`, `$2a$`, `$2b$` — bcrypt (`htpasswd -B`).
//!
//! DES `crypt()` (`htpasswd -d`), plaintext (`htpasswd -p`), SHA-256/SHA-512 crypt
//! (`htpasswd -2` / `-5`) and anything else are refused: the entry is logged (user name and line
//! number only, never the hash) and that user can never log in.
//!
//! The file is re-read whenever its metadata (device, inode, mtime, ctime, length) changes, like
//! etherws 1.3 did; if re-reading fails the previously loaded entries stay in force.
//!
//! Verification never reveals whether a user exists: an unknown (or refused) user still costs a
//! hash computation of the same kind and cost as the file's most expensive usable entry, and
//! digests are compared in constant time.

use std::collections::HashMap;
use std::fs::{self, Metadata};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context as _;
use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use md5::Md5;
use sha1::{Digest as _, Sha1};
use subtle::ConstantTimeEq as _;

/// An htpasswd file, re-read when it changes on disk.
pub(crate) struct Htpasswd {
    path: PathBuf,
    state: Mutex<State>,
}

/// What the last look at the file found, plus the entries in force.
struct State {
    probe: Probe,
    entries: Arc<Entries>,
}

/// Outcome of the last `stat` of the file; a reload is attempted only when this changes, so a
/// persistent failure is logged once rather than on every authentication attempt.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Probe {
    Stat(Signature),
    Failed(io::ErrorKind),
}

/// The metadata that tells whether the file changed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Signature {
    dev: u64,
    ino: u64,
    mtime: i64,
    mtime_nsec: i64,
    ctime: i64,
    ctime_nsec: i64,
    len: u64,
}

impl Signature {
    #[cfg(unix)]
    fn of(m: &Metadata) -> Self {
        use std::os::unix::fs::MetadataExt as _;
        Self {
            dev: m.dev(),
            ino: m.ino(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
            ctime: m.ctime(),
            ctime_nsec: m.ctime_nsec(),
            len: m.len(),
        }
    }

    #[cfg(not(unix))]
    fn of(m: &Metadata) -> Self {
        let (mtime, mtime_nsec) = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or((0, 0), |d| {
                (d.as_secs() as i64, i64::from(d.subsec_nanos()))
            });
        Self {
            dev: 0,
            ino: 0,
            mtime,
            mtime_nsec,
            ctime: 0,
            ctime_nsec: 0,
            len: m.len(),
        }
    }
}

/// Parsed contents of one version of the file.
pub(crate) struct Entries {
    users: HashMap<String, Entry>,
    /// Verified against for unknown or refused users, so they cost the same as known ones.
    dummy: Hash,
}

enum Entry {
    Usable(Hash),
    /// Present in the file in a format we do not accept; never matches.
    Refused,
}

enum Hash {
    /// `{SHA}`: the raw SHA-1 digest.
    Sha1([u8; 20]),
    /// `$apr1$salt$digest`: the salt (at most 8 bytes) and the 22-character encoded digest.
    Apr1 { salt: String, digest: String },
    /// The whole bcrypt string, `$2y$NN$` + 53 characters.
    Bcrypt(String),
}

/// A well-formed bcrypt hash body (22 characters of salt, 31 of digest), used for dummy work.
const DUMMY_BCRYPT_BODY: &str = "OlybgbDpJb6IfSQC5Ed8LeJyV7wTwDyYt3mYwOB6RZoHYIhg8DkJq";
/// Cost of the dummy bcrypt hash when the file has no usable entry (`htpasswd -B` default).
const DEFAULT_BCRYPT_COST: u32 = 5;

impl Hash {
    fn check(&self, password: &str) -> bool {
        match self {
            Hash::Sha1(stored) => {
                let digest = Sha1::digest(password.as_bytes());
                digest.as_slice().ct_eq(stored).into()
            }
            Hash::Apr1 { salt, digest } => {
                let computed = apr1_digest(password.as_bytes(), salt.as_bytes());
                computed.as_slice().ct_eq(digest.as_bytes()).into()
            }
            Hash::Bcrypt(stored) => bcrypt::verify(password, stored).unwrap_or(false),
        }
    }

    /// How much work checking a password against this hash takes, in rising order: `{SHA}`
    /// (one SHA-1), `$apr1$` (1,000 MD5 rounds), then bcrypt by cost (2^cost rounds).
    fn cost(&self) -> u32 {
        match self {
            Hash::Sha1(_) => 0,
            Hash::Apr1 { .. } => 1,
            // Validated by `parse_bcrypt`: bytes 4..6 are the two cost digits.
            Hash::Bcrypt(stored) => 2 + stored[4..6].parse::<u32>().unwrap_or(0),
        }
    }

    /// A hash of the same kind and cost that no password matches in practice.
    fn dummy(&self) -> Hash {
        match self {
            Hash::Sha1(_) => Hash::Sha1([0; 20]),
            Hash::Apr1 { salt, .. } => Hash::Apr1 {
                salt: "dummysal"[..salt.len()].to_owned(),
                digest: ".".repeat(22),
            },
            // Validated by `parse_bcrypt`: bytes 4..6 are the two cost digits.
            Hash::Bcrypt(stored) => {
                Hash::Bcrypt(format!("$2y${}${DUMMY_BCRYPT_BODY}", &stored[4..6]))
            }
        }
    }
}

impl Htpasswd {
    /// Loads the file; errors if it cannot be read (start-up should fail then). Logs refused entries.
    pub(crate) fn open(path: impl Into<PathBuf>) -> anyhow::Result<Self> {
        let path = path.into();
        let (signature, entries) = load(&path).context("cannot read htpasswd file")?;
        if !entries
            .users
            .values()
            .any(|e| matches!(e, Entry::Usable(_)))
        {
            tracing::warn!(path = %path.display(), "htpasswd file has no usable entries; nobody can log in");
        }
        Ok(Self {
            path,
            state: Mutex::new(State {
                probe: Probe::Stat(signature),
                entries: Arc::new(entries),
            }),
        })
    }

    /// True if `user`/`password` match an entry. Re-reads the file first if its metadata changed
    /// (if the re-read fails, keep the previous entries and log a warning). CPU-bound (bcrypt):
    /// callers run it in spawn_blocking.
    pub(crate) fn verify(&self, user: &str, password: &str) -> bool {
        let entries = self.current();
        match entries.users.get(user) {
            Some(Entry::Usable(hash)) => hash.check(password),
            Some(Entry::Refused) | None => {
                std::hint::black_box(entries.dummy.check(std::hint::black_box(password)));
                false
            }
        }
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// True if the file (re-read if it changed) has a usable entry for `user`.
    pub(crate) fn has_user(&self, user: &str) -> bool {
        matches!(self.current().users.get(user), Some(Entry::Usable(_)))
    }

    /// The entries in force after re-reading the file if it changed. The lock is not held while
    /// hashing, so concurrent verifications do not serialise on bcrypt.
    fn current(&self) -> Arc<Entries> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.refresh(&mut state);
        Arc::clone(&state.entries)
    }

    fn refresh(&self, state: &mut State) {
        let probe = match fs::metadata(&self.path) {
            Ok(m) => Probe::Stat(Signature::of(&m)),
            Err(e) => {
                let probe = Probe::Failed(e.kind());
                if probe != state.probe {
                    tracing::warn!(
                        path = %self.path.display(),
                        error = %e,
                        "cannot stat htpasswd file; keeping the previously loaded entries"
                    );
                    state.probe = probe;
                }
                return;
            }
        };
        if probe == state.probe {
            return;
        }
        match load(&self.path) {
            Ok((signature, entries)) => {
                tracing::info!(
                    path = %self.path.display(),
                    users = entries.users.len(),
                    "reloaded htpasswd file"
                );
                state.probe = Probe::Stat(signature);
                state.entries = Arc::new(entries);
            }
            Err(e) => {
                tracing::warn!(
                    path = %self.path.display(),
                    error = %e,
                    "cannot re-read htpasswd file; keeping the previously loaded entries"
                );
                state.probe = probe;
            }
        }
    }
}

/// Reads and parses the file; the signature is taken from the open descriptor before reading,
/// so a change made while reading is noticed on the next verification.
fn load(path: &Path) -> Result<(Signature, Entries), crate::base::files::FileError> {
    let (data, meta) = crate::base::files::read_limited(path)?;
    Ok((Signature::of(&meta), parse(path, &data)))
}

pub(crate) fn parse(path: &Path, data: &[u8]) -> Entries {
    let mut users = HashMap::new();
    let mut dummy = None;
    for (index, raw) in data.split(|&b| b == b'\n').enumerate() {
        let line = index + 1;
        let Ok(text) = std::str::from_utf8(raw) else {
            tracing::warn!(path = %path.display(), line, "skipping htpasswd line that is not valid UTF-8");
            continue;
        };
        // Like Apache's ap_cfg_getline: surrounding whitespace (and a CR) is not part of it.
        let text = text.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let Some((user, rest)) = text.split_once(':') else {
            tracing::warn!(path = %path.display(), line, "skipping malformed htpasswd line (no ':')");
            continue;
        };
        if users.contains_key(user) {
            tracing::warn!(
                path = %path.display(),
                line,
                user = ?user,
                "ignoring duplicate htpasswd entry; the first one wins"
            );
            continue;
        }
        // Like mod_authn_file, the hash ends at the next ':' (later fields are ignored).
        let hash = rest.split(':').next().unwrap_or_default();
        let entry = match classify(hash) {
            Ok(hash) => {
                // Unknown users cost as much as the most expensive entry, so timing does not
                // tell which users exist even in a file that mixes formats or costs.
                if dummy.as_ref().is_none_or(|d: &Hash| hash.cost() > d.cost()) {
                    dummy = Some(hash.dummy());
                }
                Entry::Usable(hash)
            }
            Err(reason) => {
                tracing::warn!(
                    path = %path.display(),
                    line,
                    user = ?user,
                    reason,
                    "refusing htpasswd entry; re-create it with `htpasswd -B`"
                );
                Entry::Refused
            }
        };
        users.insert(user.to_owned(), entry);
    }
    let dummy = dummy.unwrap_or_else(|| {
        Hash::Bcrypt(format!("$2y${DEFAULT_BCRYPT_COST:02}${DUMMY_BCRYPT_BODY}"))
    });
    Entries { users, dummy }
}

/// Parses an accepted hash, or says (without quoting it) why it is refused.
fn classify(hash: &str) -> Result<Hash, &'static str> {
    if let Some(b64) = hash.strip_prefix("{SHA}") {
        return STANDARD
            .decode(b64)
            .ok()
            .and_then(|v| <[u8; 20]>::try_from(v).ok())
            .map(Hash::Sha1)
            .ok_or("malformed {SHA} hash");
    }
    if let Some(rest) = hash.strip_prefix("$apr1$") {
        return parse_apr1(rest).ok_or("malformed $apr1$ hash");
    }
    if ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
        return parse_bcrypt(hash).ok_or("malformed bcrypt hash");
    }
    Err(if hash.is_empty() {
        "empty password hash"
    } else if hash.starts_with("$5$") || hash.starts_with("$6$") {
        "SHA-256/SHA-512 crypt hashes (htpasswd -2/-5) are not supported"
    } else if hash.starts_with('$') || hash.starts_with('{') {
        "unsupported hash scheme"
    } else if hash.len() == 13 && hash.bytes().all(is_crypt_char) {
        "DES crypt hashes (htpasswd -d) are not supported"
    } else {
        "plaintext passwords (htpasswd -p) are not supported"
    })
}

fn is_crypt_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'.' || c == b'/'
}

/// `salt$digest` after `$apr1$`.
fn parse_apr1(rest: &str) -> Option<Hash> {
    let (salt, digest) = rest.split_once('$')?;
    (salt.len() <= 8 && digest.len() == 22 && digest.bytes().all(is_crypt_char)).then(|| {
        Hash::Apr1 {
            salt: salt.to_owned(),
            digest: digest.to_owned(),
        }
    })
}

/// `$2?$NN$` + 22 characters of salt + 31 of digest.
fn parse_bcrypt(hash: &str) -> Option<Hash> {
    let b = hash.as_bytes();
    let well_formed = b.len() == 60
        && b[6] == b'$'
        && b[4].is_ascii_digit()
        && b[5].is_ascii_digit()
        && (4..=31).contains(&((b[4] - b'0') * 10 + (b[5] - b'0')))
        && b[7..].iter().copied().all(is_crypt_char);
    well_formed.then(|| Hash::Bcrypt(hash.to_owned()))
}

/// The 22-character encoded digest of Apache's `$apr1$` MD5-crypt (FreeBSD md5crypt with the
/// magic string `$apr1$`, 1000 rounds).
fn apr1_digest(password: &[u8], salt: &[u8]) -> [u8; 22] {
    const MAGIC: &[u8] = b"$apr1$";
    const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

    let alternate = Md5::new()
        .chain_update(password)
        .chain_update(salt)
        .chain_update(password)
        .finalize();

    let mut ctx = Md5::new()
        .chain_update(password)
        .chain_update(MAGIC)
        .chain_update(salt);
    let mut remaining = password.len();
    while remaining > 0 {
        let n = remaining.min(16);
        ctx.update(&alternate[..n]);
        remaining -= n;
    }
    let mut i = password.len();
    while i > 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        i >>= 1;
    }
    let mut fin: [u8; 16] = ctx.finalize().into();

    for round in 0..1000 {
        let mut ctx = Md5::new();
        if round & 1 == 1 {
            ctx.update(password);
        } else {
            ctx.update(fin);
        }
        if round % 3 != 0 {
            ctx.update(salt);
        }
        if round % 7 != 0 {
            ctx.update(password);
        }
        if round & 1 == 1 {
            ctx.update(fin);
        } else {
            ctx.update(password);
        }
        fin = ctx.finalize().into();
    }

    let mut out = [0u8; 22];
    let triple = |a: usize, b: usize, c: usize| {
        u32::from(fin[a]) << 16 | u32::from(fin[b]) << 8 | u32::from(fin[c])
    };
    let groups = [
        (triple(0, 6, 12), 4),
        (triple(1, 7, 13), 4),
        (triple(2, 8, 14), 4),
        (triple(3, 9, 15), 4),
        (triple(4, 10, 5), 4),
        (u32::from(fin[11]), 2),
    ];
    let mut pos = 0;
    for (mut value, chars) in groups {
        for _ in 0..chars {
            out[pos] = ITOA64[(value & 0x3f) as usize];
            value >>= 6;
            pos += 1;
        }
    }
    out
}

/// Decodes an `Authorization: Basic …` header value into (user, password); the password may
/// contain ':' (split at the first one). None if not Basic or malformed. Scheme name
/// case-insensitive.
pub(crate) fn parse_basic(header: &str) -> Option<(String, String)> {
    /// Standard alphabet; padding optional, since some clients omit it.
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let (scheme, token) = header.trim().split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("Basic") {
        return None;
    }
    let decoded = LENIENT.decode(token.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const _: () = {
        const fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Htpasswd>();
    };

    // ---- helpers ---------------------------------------------------------------------------

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "etherws-htpasswd-{tag}-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn file(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Whether the real `htpasswd` tool is available; in CI its absence is a failure.
    fn have_tool() -> bool {
        match Command::new("htpasswd").args(["-nbs", "u", "p"]).output() {
            Ok(_) => true,
            Err(e) => {
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("htpasswd (apache2-utils) is required in CI: {e}");
                }
                eprintln!(
                    "\n*** SKIPPED: `htpasswd` not found ({e}); install apache2-utils to run \
                     the htpasswd interoperability tests ***\n"
                );
                false
            }
        }
    }

    /// Runs `htpasswd -b <flags> FILE USER PASSWORD`.
    fn tool(file: &Path, flags: &[&str], user: &str, password: &str) {
        let out = Command::new("htpasswd")
            .arg("-b")
            .args(flags)
            .arg(file)
            .arg(user)
            .arg(password)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "htpasswd {flags:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[derive(Clone, Default)]
    struct LogBuf(Arc<Mutex<Vec<u8>>>);

    impl io::Write for LogBuf {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Runs `f` with every log event on this thread captured as text.
    fn capture_logs<R>(f: impl FnOnce() -> R) -> (R, String) {
        let buf = LogBuf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        let result = tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        (result, text)
    }

    fn log_line_for<'a>(logs: &'a str, user: &str) -> &'a str {
        let needle = format!("user={user:?}");
        logs.lines()
            .find(|l| l.contains(&needle))
            .unwrap_or_else(|| panic!("no log line for {user}:\n{logs}"))
    }

    // ---- with the real htpasswd tool ---------------------------------------------------------

    #[test]
    fn every_format_from_the_real_tool() {
        if !have_tool() {
            return;
        }
        let dir = TempDir::new("formats");
        let file = dir.file("htpasswd");
        tool(&file, &["-c", "-s"], "sha", "sha-secret");
        tool(&file, &["-B", "-C", "4"], "bcrypt", "bcrypt-secret");
        tool(&file, &["-m"], "md5", "md5-secret");
        tool(&file, &[], "default", "default-secret");
        tool(&file, &["-d"], "crypt", "crypt1");
        tool(&file, &["-p"], "plain", "plain-secret");

        let (ht, logs) = capture_logs(|| Htpasswd::open(&file).unwrap());
        assert_eq!(ht.path(), file);

        for (user, password) in [
            ("sha", "sha-secret"),
            ("bcrypt", "bcrypt-secret"),
            ("md5", "md5-secret"),
            ("default", "default-secret"),
        ] {
            assert!(ht.verify(user, password), "{user} with the right password");
            assert!(!ht.verify(user, "wrong"), "{user} with a wrong password");
            assert!(!ht.verify(user, ""), "{user} with an empty password");
            assert!(
                !ht.verify(user, &format!("{password}x")),
                "{user} with a longer password"
            );
        }
        // The tool's default is $apr1$.
        let text = fs::read_to_string(&file).unwrap();
        assert!(text.contains("default:$apr1$"), "{text}");
        assert!(text.contains("bcrypt:$2y$04$"), "{text}");

        // Refused formats never match, even with the right password.
        assert!(!ht.verify("crypt", "crypt1"));
        assert!(!ht.verify("plain", "plain-secret"));
        // Unknown users, and a known user's password under another name.
        assert!(!ht.verify("nobody", "sha-secret"));
        assert!(!ht.verify("", ""));
        assert!(
            !ht.verify("SHA", "sha-secret"),
            "user names are case-sensitive"
        );

        // Refusals are logged with user and line number, and no hash or password anywhere.
        let crypt = log_line_for(&logs, "crypt");
        assert!(
            crypt.contains("line=5") && crypt.contains("DES crypt"),
            "{crypt}"
        );
        let plain = log_line_for(&logs, "plain");
        assert!(
            plain.contains("line=6") && plain.contains("plaintext"),
            "{plain}"
        );
        assert_eq!(logs.lines().count(), 2, "{logs}");
        for line in text.lines() {
            let hash = line.split_once(':').unwrap().1;
            assert!(!logs.contains(hash), "hash leaked into logs:\n{logs}");
        }
        assert!(
            !logs.contains("secret") && !logs.contains("crypt1"),
            "{logs}"
        );

        // Verification itself logs nothing, whether or not the user exists.
        let ((), logs) = capture_logs(|| {
            assert!(!ht.verify("nobody", "x"));
            assert!(!ht.verify("sha", "x"));
            assert!(!ht.verify("crypt", "crypt1"));
            assert!(ht.verify("md5", "md5-secret"));
        });
        assert_eq!(logs, "");
    }

    #[test]
    fn colons_and_non_ascii_passwords_from_the_real_tool() {
        if !have_tool() {
            return;
        }
        let long = "y".repeat(100);
        let passwords = ["pa:ss", ":lead:", "pä:ßwörd ✓ 日本", "", long.as_str()];
        let dir = TempDir::new("special");
        let file = dir.file("htpasswd");
        let mut users = Vec::new();
        for (n, password) in passwords.iter().enumerate() {
            for (kind, flags) in [
                ("sha", &["-s"][..]),
                ("md5", &["-m"][..]),
                ("bcrypt", &["-B", "-C", "4"][..]),
            ] {
                let user = format!("{kind}{n}");
                let mut flags = flags.to_vec();
                if users.is_empty() {
                    flags.push("-c");
                }
                tool(&file, &flags, &user, password);
                users.push((user, *password));
            }
        }
        let ht = Htpasswd::open(&file).unwrap();
        for (user, password) in &users {
            assert!(ht.verify(user, password), "{user} {password:?}");
            assert!(!ht.verify(user, "pa"), "{user}");
            assert!(!ht.verify(user, "pa:ss:"), "{user}");
        }
        // A user name with a non-ASCII character.
        tool(&file, &["-m"], "jürgen", "pw");
        assert!(ht.verify("jürgen", "pw"));
        assert!(!ht.verify("jurgen", "pw"));
    }

    #[test]
    fn comments_blank_lines_crlf_and_duplicates() {
        if !have_tool() {
            return;
        }
        let entry = |flags: &str, user: &str, password: &str| {
            let out = Command::new("htpasswd")
                .arg(flags)
                .args([user, password])
                .output()
                .unwrap();
            assert!(out.status.success());
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        };
        let content = format!(
            "# a comment\r\n\r\n   \n{}\r\n  # indented comment\n{}   \n{}\t\r\nno colon here\n{}\n\
             {}:extra:fields\n{}",
            entry("-nbm", "alice", "alice-pw"),
            entry("-nbs", "bob", "bob-pw"),
            entry("-nbB", "carol", "carol-pw"),
            entry("-nbs", "alice", "second-alice-pw"),
            entry("-nbm", "dave", "dave-pw"),
            entry("-nbs", "eve", "eve-pw"), // no trailing newline
        );
        let dir = TempDir::new("comments");
        let file = dir.file("htpasswd");
        fs::write(&file, content).unwrap();
        let (ht, logs) = capture_logs(|| Htpasswd::open(&file).unwrap());
        assert!(ht.verify("alice", "alice-pw"));
        assert!(
            !ht.verify("alice", "second-alice-pw"),
            "the first entry wins"
        );
        assert!(ht.verify("bob", "bob-pw"));
        assert!(ht.verify("carol", "carol-pw"));
        assert!(ht.verify("dave", "dave-pw"));
        assert!(ht.verify("eve", "eve-pw"));
        assert!(!ht.verify("# a comment", ""));
        assert!(!ht.verify("no colon here", ""));
        assert!(log_line_for(&logs, "alice").contains("line=9"), "{logs}");
        assert!(logs.contains("line=8") && logs.contains("no ':'"), "{logs}");
    }

    #[test]
    fn reloads_when_the_file_changes() {
        if !have_tool() {
            return;
        }
        let dir = TempDir::new("reload");
        let file = dir.file("htpasswd");
        tool(&file, &["-c", "-s"], "alice", "alice-pw");
        let ht = Htpasswd::open(&file).unwrap();
        assert!(ht.verify("alice", "alice-pw"));
        assert!(!ht.verify("bob", "bob-pw"));

        // Add a user in place (same inode, longer file).
        tool(&file, &["-B", "-C", "4"], "bob", "bob-pw");
        assert!(ht.verify("bob", "bob-pw"));
        assert!(ht.verify("alice", "alice-pw"));

        // Re-create with a different set of users.
        std::thread::sleep(std::time::Duration::from_millis(10));
        tool(&file, &["-c", "-m"], "carol-with-a-long-name", "carol-pw");
        assert!(ht.verify("carol-with-a-long-name", "carol-pw"));
        assert!(!ht.verify("alice", "alice-pw"));
        assert!(!ht.verify("bob", "bob-pw"));

        // Change a password (same length: the mtime/ctime tells).
        std::thread::sleep(std::time::Duration::from_millis(10));
        tool(&file, &["-m"], "carol-with-a-long-name", "carol-p2");
        assert!(ht.verify("carol-with-a-long-name", "carol-p2"));
        assert!(!ht.verify("carol-with-a-long-name", "carol-pw"));

        // Replaced by rename (new inode).
        let other = dir.file("new");
        tool(&other, &["-c", "-s"], "dave", "dave-pw");
        fs::rename(&other, &file).unwrap();
        assert!(ht.verify("dave", "dave-pw"));
        assert!(!ht.verify("carol-with-a-long-name", "carol-p2"));
    }

    #[test]
    fn unreadable_after_open_keeps_the_old_entries() {
        if !have_tool() {
            return;
        }
        let dir = TempDir::new("unreadable");
        let file = dir.file("htpasswd");
        tool(&file, &["-c", "-m"], "alice", "alice-pw");
        let ht = Htpasswd::open(&file).unwrap();

        // Removed: warned once, old entries stay.
        fs::remove_file(&file).unwrap();
        let ((), logs) = capture_logs(|| {
            assert!(ht.verify("alice", "alice-pw"));
            assert!(ht.verify("alice", "alice-pw"));
            assert!(!ht.verify("alice", "wrong"));
        });
        assert_eq!(logs.lines().count(), 1, "{logs}");
        assert!(logs.contains("WARN") && logs.contains("keeping"), "{logs}");

        // A directory in its place: stat works, reading fails.
        fs::create_dir(&file).unwrap();
        let ((), logs) = capture_logs(|| {
            assert!(ht.verify("alice", "alice-pw"));
            assert!(ht.verify("alice", "alice-pw"));
        });
        assert_eq!(logs.lines().count(), 1, "{logs}");
        assert!(logs.contains("cannot re-read"), "{logs}");
        fs::remove_dir(&file).unwrap();

        // Permission denied (only observable when not running as root).
        tool(&file, &["-c", "-m"], "bob", "bob-pw");
        assert!(ht.verify("bob", "bob-pw"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            fs::set_permissions(&file, fs::Permissions::from_mode(0o000)).unwrap();
            if fs::File::open(&file).is_err() {
                assert!(ht.verify("bob", "bob-pw"));
            } else {
                eprintln!("(running as root: permission-denied case not observable)");
            }
            fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        }

        // Readable again with new content: reloaded.
        tool(&file, &["-c", "-s"], "carol", "carol-pw");
        assert!(ht.verify("carol", "carol-pw"));
        assert!(!ht.verify("bob", "bob-pw"));
    }

    // ---- pure tests --------------------------------------------------------------------------

    #[test]
    fn open_fails_on_a_missing_file() {
        let dir = TempDir::new("missing");
        let err = Htpasswd::open(dir.file("nope")).err().unwrap();
        assert!(format!("{err:#}").contains("nope"), "{err:#}");
    }

    #[test]
    fn apr1_matches_vectors_from_the_real_tool() {
        // Produced with `htpasswd -nbm USER PASSWORD` (apache2-utils 2.4.71) and
        // `openssl passwd -apr1 -salt ab pass`.
        let vectors = [
            ("pass", "$apr1$l8Tg9qAR$zMJ8bCs1j1ZZrZeLBLQ73/"),
            ("pass", "$apr1$xq9DmoDv$7Tvd4N8FV254ZqWjTVXnz0"),
            ("pä:ss", "$apr1$ooRvFx1L$V7gw/H5cW2LV06/iV.RFM0"),
            ("", "$apr1$W1Dmq7Bl$ITVjczIveRJLzidTpKB9H0"),
            ("x", "$apr1$9zx4H.X/$UYbDOXMTdhPUQJE4nkLPj0"),
            (
                "a much longer password of more than sixteen bytes, ok? ünïcødé",
                "$apr1$WYInD2Hq$1LGB.BHzdbRBvT3MF6xtm/",
            ),
            ("pass", "$apr1$ab$n.gRySpeF4Zg.rR21jU30."),
        ];
        for (password, hash) in vectors {
            let rest = hash.strip_prefix("$apr1$").unwrap();
            let (salt, digest) = rest.split_once('$').unwrap();
            assert_eq!(
                std::str::from_utf8(&apr1_digest(password.as_bytes(), salt.as_bytes())).unwrap(),
                digest,
                "{password:?}"
            );
            let parsed = classify(hash).unwrap();
            assert!(parsed.check(password));
            assert!(!parsed.check("wrong"));
        }
    }

    #[test]
    fn sha_and_bcrypt_vectors_from_the_real_tool() {
        let sha = classify("{SHA}nU4eI71bcnBGqeO0t9tXvY1u5oQ=").unwrap();
        assert!(sha.check("pass") && !sha.check("Pass"));
        let empty = classify("{SHA}2jmj7l5rSw0yVb/vlWAYkK/YBwk=").unwrap();
        assert!(empty.check("") && !empty.check(" "));
        let bcrypt =
            classify("$2y$04$sZbasFzJ6HOkHm0o5r2hK.1mGKltQ7JM2sK0K5UfhhDd7MsINUug.").unwrap();
        assert!(bcrypt.check("pä:ss") && !bcrypt.check("pä:s"));
        // > 72 bytes: bcrypt only looks at the first 72, as Apache does.
        let long =
            classify("$2y$04$.YWQatd0svKvVi5q1Q49iuWxhsKEIqmgTID3GgseYTfmjMRPRJj4C").unwrap();
        assert!(long.check(&"x".repeat(100)) && long.check(&"x".repeat(72)));
        assert!(!long.check(&"x".repeat(71)));
        // $2a$ / $2b$ spellings of the same hash.
        for prefix in ["$2a$", "$2b$"] {
            let h = format!("{prefix}04$sZbasFzJ6HOkHm0o5r2hK.1mGKltQ7JM2sK0K5UfhhDd7MsINUug.");
            assert!(classify(&h).unwrap().check("pä:ss"), "{prefix}");
        }
    }

    #[test]
    fn refused_and_malformed_hashes() {
        let refused = [
            ("KFkJheoBHADnY", "DES crypt"),
            ("pass", "plaintext"),
            ("", "empty"),
            (
                "$5$0KtjWrnl9jt9kelZ$GB7yD86yE87DHSiFt885l7VHt7nD2xr7HrLPIszToV1",
                "SHA-256",
            ),
            (
                "$6$.yRXLM/TKwTpnXXt$qoE80r8yA8rjqUrLZDjd5vFUm8oKIikhQ9m8M.A9pIUXCq8DJDHnu0bco9dDb3TXpyweVajdaVhK0AX70i.B0/",
                "SHA-512",
            ),
            ("$1$abcdefgh$0123456789012345678901", "unsupported"),
            (
                "$2x$04$sZbasFzJ6HOkHm0o5r2hK.1mGKltQ7JM2sK0K5UfhhDd7MsINUug.",
                "unsupported",
            ),
            ("{SSHA}abc", "unsupported"),
            ("{SHA}nU4eI71bcnBGqeO0t9tXvY1u5o==", "malformed {SHA}"),
            ("{SHA}not base64!", "malformed {SHA}"),
            ("$apr1$l8Tg9qAR$zMJ8bCs1j1ZZrZeLBLQ73", "malformed $apr1$"),
            ("$apr1$l8Tg9qARx$zMJ8bCs1j1ZZrZeLBLQ73/", "malformed $apr1$"),
            ("$apr1$l8Tg9qAR", "malformed $apr1$"),
            (
                "$2y$04$sZbasFzJ6HOkHm0o5r2hK.1mGKltQ7JM2sK0K5UfhhDd7MsINUug",
                "malformed bcrypt",
            ),
            (
                "$2y$03$sZbasFzJ6HOkHm0o5r2hK.1mGKltQ7JM2sK0K5UfhhDd7MsINUug.",
                "malformed bcrypt",
            ),
            (
                "$2y$4$$sZbasFzJ6HOkHm0o5r2hK.1mGKltQ7JM2sK0K5UfhhDd7MsINUug.",
                "malformed bcrypt",
            ),
            (
                "$2y$04$sZbasFzJ6HOkHm0o5r2hK.1mGKltQ7JM2sK0K5UfhhDd7MsINUu:.",
                "malformed bcrypt",
            ),
        ];
        for (hash, reason) in refused {
            match classify(hash) {
                Ok(_) => panic!("{hash} accepted"),
                Err(r) => assert!(r.contains(reason), "{hash}: {r}"),
            }
        }
    }

    #[test]
    fn dummy_work_matches_the_most_expensive_entry() {
        let parse_str = |s: &str| parse(Path::new("test"), s.as_bytes());
        let e = parse_str(
            "x:plain\na:$2y$07$sZbasFzJ6HOkHm0o5r2hK.1mGKltQ7JM2sK0K5UfhhDd7MsINUug.\nb:{SHA}nU4eI71bcnBGqeO0t9tXvY1u5oQ=\n",
        );
        assert!(
            matches!(&e.dummy, Hash::Bcrypt(h) if h.starts_with("$2y$07$") && classify(h).is_ok())
        );
        assert!(!e.dummy.check("pass"));
        let e = parse_str("b:{SHA}nU4eI71bcnBGqeO0t9tXvY1u5oQ=\n");
        assert!(matches!(e.dummy, Hash::Sha1(_)));
        let e = parse_str("b:$apr1$ab$n.gRySpeF4Zg.rR21jU30.\n");
        assert!(matches!(&e.dummy, Hash::Apr1 { salt, .. } if salt.len() == 2));
        assert!(!e.dummy.check("pass"));
        // Mixed formats and costs: the dearest one, wherever it is in the file.
        let e = parse_str(
            "s:{SHA}nU4eI71bcnBGqeO0t9tXvY1u5oQ=\nm:$apr1$ab$n.gRySpeF4Zg.rR21jU30.\nc:$2y$05$sZbasFzJ6HOkHm0o5r2hK.1mGKltQ7JM2sK0K5UfhhDd7MsINUug.\nd:$2y$10$sZbasFzJ6HOkHm0o5r2hK.1mGKltQ7JM2sK0K5UfhhDd7MsINUug.\n",
        );
        assert!(matches!(&e.dummy, Hash::Bcrypt(h) if h.starts_with("$2y$10$")));
        let e = parse_str("# nothing usable\nx:plain\n");
        assert!(
            matches!(&e.dummy, Hash::Bcrypt(h) if h.starts_with("$2y$05$") && classify(h).is_ok())
        );
        assert!(!e.dummy.check(""));
        assert!(matches!(e.users.get("x"), Some(Entry::Refused)));
    }

    #[test]
    fn parse_basic_cases() {
        let some = |u: &str, p: &str| Some((u.to_owned(), p.to_owned()));
        assert_eq!(parse_basic("Basic dXNlcjpwYTpzcw=="), some("user", "pa:ss"));
        assert_eq!(parse_basic("basic dXNlcjpwYTpzcw=="), some("user", "pa:ss"));
        assert_eq!(
            parse_basic("BASIC  dXNlcjpwYTpzcw== "),
            some("user", "pa:ss")
        );
        assert_eq!(parse_basic("Basic dXNlcjpwYTpzcw"), some("user", "pa:ss"));
        assert_eq!(parse_basic("Basic dXNlcjo="), some("user", ""));
        assert_eq!(parse_basic("Basic OnB3"), some("", "pw"));
        let encoded = STANDARD.encode("jürgen:pä:ß");
        assert_eq!(
            parse_basic(&format!("Basic {encoded}")),
            some("jürgen", "pä:ß")
        );
        assert_eq!(parse_basic("Basic !!!notbase64"), None);
        assert_eq!(parse_basic("Basic dXNl cjpwYTpzcw=="), None);
        assert_eq!(parse_basic("Basic dXNlcg=="), None, "no colon");
        assert_eq!(parse_basic("Basic /w=="), None, "not UTF-8");
        assert_eq!(parse_basic("Bearer dXNlcjpwYTpzcw=="), None);
        assert_eq!(parse_basic("Basicx dXNlcjpwYTpzcw=="), None);
        assert_eq!(parse_basic("Basic"), None);
        assert_eq!(parse_basic("Basic "), None);
        assert_eq!(parse_basic(""), None);
    }
}
