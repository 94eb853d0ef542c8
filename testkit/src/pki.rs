//! External tools, temporary files, and certificates made with the real `openssl`.

use super::*;

/// True when `tool` is on PATH. Otherwise: panics under CI (`CI=true`), or prints a loud
/// SKIPPED line and returns false (the caller then returns early).
pub fn require_tool(tool: &str) -> bool {
    let test = this_test();
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .any(|d| d.join(tool).is_file())
    {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: needs `{tool}`, which is not installed; it must be installed under CI");
    }
    loud(&format!("SKIPPED (needs `{tool}`): {test}"));
    false
}

/// A fresh directory in the temp dir, removed on drop (kept, and named, if the test panics).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "etherws-e2e-{}-{tag}-{}",
            std::process::id(),
            next_id()
        ));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// `dir/name` as a string (for command lines).
    pub fn file(&self, name: &str) -> String {
        self.path.join(name).to_string_lossy().into_owned()
    }

    /// Write `dir/name`; returns its path as a string.
    pub fn write(&self, name: &str, contents: &str) -> String {
        let p = self.file(name);
        fs::write(&p, contents).unwrap_or_else(|e| panic!("write {p}: {e}"));
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("e2e: keeping {} for inspection", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// The PEM form a private key is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyForm {
    /// `-----BEGIN PRIVATE KEY-----` (RSA 2048, `openssl genpkey`).
    Pkcs8,
    /// `-----BEGIN RSA PRIVATE KEY-----` (RSA 2048, `openssl genrsa -traditional`).
    Pkcs1,
    /// `-----BEGIN EC PRIVATE KEY-----` (P-256, `openssl ecparam -genkey`, preceded by the
    /// `EC PARAMETERS` block that command writes too).
    Sec1,
}

impl KeyForm {
    /// The PEM label the key file must carry.
    pub fn pem_label(self) -> &'static str {
        match self {
            KeyForm::Pkcs8 => "-----BEGIN PRIVATE KEY-----",
            KeyForm::Pkcs1 => "-----BEGIN RSA PRIVATE KEY-----",
            KeyForm::Sec1 => "-----BEGIN EC PRIVATE KEY-----",
        }
    }
}

/// A certificate authority made with the real `openssl` (self-signed, CA:TRUE).
pub struct Ca {
    pub name: String,
    /// The CA certificate (PEM): what `--cacerts` / `--ctlsslcert` (ctl) take.
    pub cert: String,
    key: String,
}

/// A key and certificate (PEM files): a server's ([`Pki::server`]) or a client's
/// ([`Pki::client`]).
pub struct ServerCert {
    pub key: String,
    pub cert: String,
}

/// Certificates made with the real `openssl` in a temporary directory.
pub struct Pki {
    pub dir: TempDir,
}

fn openssl(dir: &TempDir, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl {args:?}: {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?} failed\n{}",
        show(&out)
    );
}

impl Pki {
    pub fn new(tag: &str) -> Pki {
        Pki {
            dir: TempDir::new(tag),
        }
    }

    /// A self-signed CA `CN=etherws test CA <name>` (RSA 2048, valid 2 days).
    pub fn ca(&self, name: &str) -> Ca {
        let cnf = self.dir.write(
            &format!("{name}-ca.cnf"),
            &format!(
                "[req]\ndistinguished_name = dn\nprompt = no\n\
                 [dn]\nCN = etherws test CA {name}\n\
                 [v3_ca]\nbasicConstraints = critical, CA:TRUE\n\
                 keyUsage = critical, keyCertSign, cRLSign\n\
                 subjectKeyIdentifier = hash\n\
                 authorityKeyIdentifier = keyid:always\n"
            ),
        );
        let key = self.dir.file(&format!("{name}-ca.key"));
        let cert = self.dir.file(&format!("{name}-ca.pem"));
        openssl(
            &self.dir,
            &[
                "req",
                "-x509",
                "-config",
                &cnf,
                "-extensions",
                "v3_ca",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &cert,
                "-days",
                "2",
            ],
        );
        Ca {
            name: name.to_string(),
            cert,
            key,
        }
    }

    /// A private key in the given form, `dir/<name>.key`.
    pub fn key(&self, name: &str, form: KeyForm) -> String {
        let key = self.dir.file(&format!("{name}.key"));
        match form {
            KeyForm::Pkcs8 => openssl(
                &self.dir,
                &[
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                    "-out",
                    &key,
                ],
            ),
            KeyForm::Pkcs1 => openssl(&self.dir, &["genrsa", "-traditional", "-out", &key, "2048"]),
            KeyForm::Sec1 => openssl(
                &self.dir,
                &["ecparam", "-name", "prime256v1", "-genkey", "-out", &key],
            ),
        }
        let pem = fs::read_to_string(&key).expect("read the new key");
        assert!(
            pem.contains(form.pem_label()),
            "openssl wrote {key} not as {form:?}:\n{}",
            pem.lines()
                .filter(|l| l.starts_with("-----"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        key
    }

    /// A server certificate `CN=<name>` signed by `ca`, for these IP addresses
    /// (`subjectAltName=IP:...`), with a new key in the given form.
    pub fn server(&self, ca: &Ca, name: &str, ips: &[&str], form: KeyForm) -> ServerCert {
        let sans: Vec<String> = ips.iter().map(|ip| format!("IP:{ip}")).collect();
        self.leaf(
            ca,
            name,
            form,
            &format!(
                "extendedKeyUsage = serverAuth\nsubjectAltName = {}\n",
                sans.join(", ")
            ),
        )
    }

    /// A TLS client certificate `CN=<name>` signed by `ca` (`extendedKeyUsage = clientAuth`),
    /// with a new key in the given form: for peers that authenticate clients (e.g. OpenVPN's
    /// `--tls-server`).
    pub fn client(&self, ca: &Ca, name: &str, form: KeyForm) -> ServerCert {
        self.leaf(ca, name, form, "extendedKeyUsage = clientAuth\n")
    }

    /// A certificate signed by `ca` with these extra `v3_srv` extension lines.
    fn leaf(&self, ca: &Ca, name: &str, form: KeyForm, ext: &str) -> ServerCert {
        let key = self.key(name, form);
        let cnf = self.dir.write(
            &format!("{name}.cnf"),
            &format!(
                "[req]\ndistinguished_name = dn\nprompt = no\n\
                 [dn]\nCN = {name}\n\
                 [v3_srv]\nbasicConstraints = critical, CA:FALSE\n\
                 keyUsage = critical, digitalSignature, keyEncipherment\n\
                 {ext}\
                 subjectKeyIdentifier = hash\n\
                 authorityKeyIdentifier = keyid\n"
            ),
        );
        let csr = self.dir.file(&format!("{name}.csr"));
        let cert = self.dir.file(&format!("{name}.pem"));
        openssl(
            &self.dir,
            &["req", "-new", "-config", &cnf, "-key", &key, "-out", &csr],
        );
        let serial = format!("{}", 1000 + next_id());
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca.cert,
                "-CAkey",
                &ca.key,
                "-set_serial",
                &serial,
                "-days",
                "2",
                "-extfile",
                &cnf,
                "-extensions",
                "v3_srv",
                "-out",
                &cert,
            ],
        );
        ServerCert { key, cert }
    }
}
