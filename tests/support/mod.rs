//! Test harness: real FTP servers (vsftpd, pyftpdlib) started on loopback with a temp root, a
//! free high port, a user with a password and a passive port range, and stopped (killed) when
//! the handle is dropped, also when the test panics.
//!
//! vsftpd logs in local PAM users, so the harness (running as root) creates one system user,
//! `ftpfstest`, once, with a real home directory ([`HOME`]; vsftpd refuses logins without one).
//! Files the servers write are checked on their own disk through [`FtpServer::disk`].

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ftpfs::ftp::{ConnectOptions, Connection};

pub const USER: &str = "ftpfstest";
pub const PASSWORD: &str = "t3st-Pa55word";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    Vsftpd,
    Pyftpdlib,
    /// Run from the extracted package under /opt/ftpfs-test (scripts/setup.sh).
    PureFtpd,
    /// Run from the extracted package under /opt/ftpfs-test (scripts/setup.sh).
    Proftpd,
}

const SERVERS: &str = "/opt/ftpfs-test";

impl ServerKind {
    /// Offers MLSD (and so seconds-precise times and modes in listings).
    pub fn has_mlsd(self) -> bool {
        self != ServerKind::Vsftpd
    }

    /// Offers MFMT (file times can be set).
    pub fn has_mfmt(self) -> bool {
        self != ServerKind::Vsftpd
    }

    /// Reads a login sent in one write (USER, PASS, OPTS, TYPE), as ftpfs knows by its greeting.
    pub fn reads_pipelined_login(self) -> bool {
        true
    }

    /// Runs sessions as the FTP user, so the disk's permissions apply to it.
    pub fn runs_as_ftp_user(self) -> bool {
        self != ServerKind::Pyftpdlib
    }

    /// Shows symbolic links as links in its listings (pyftpdlib shows what they point to).
    pub fn lists_symlinks(self) -> bool {
        self != ServerKind::Pyftpdlib
    }
}

/// Extra settings for one server.
#[derive(Clone, Debug, Default)]
pub struct ServerConfig {
    /// Listen address; default 127.0.0.1 ("::1" for IPv6).
    pub host: Option<String>,
    /// Extra `key=value` lines for vsftpd's config file.
    pub vsftpd_extra: Vec<String>,
    /// FTPS: require TLS with a certificate from the test CA ([`test_ca`]).
    pub tls: Option<TlsServer>,
    /// FTPS with this certificate and key (PEM files) instead of the test CA's.
    pub certificate: Option<(PathBuf, PathBuf)>,
    /// Environment for the server process (TZ, for instance).
    pub env: Vec<(String, String)>,
    /// pyftpdlib: the character set of names on the wire (default UTF-8).
    pub encoding: Option<String>,
    /// vsftpd: offer only this many passive ports (default: the 59 of the server's block).
    pub passive_ports: Option<u16>,
}

/// How a test server speaks TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsServer {
    /// AUTH TLS required for login and data (PROT P).
    Explicit,
    /// TLS from the first byte (vsftpd only).
    Implicit,
}

/// Certificates made for the tests: a CA, a server certificate it signed for 127.0.0.1 and
/// localhost, and a second CA that signed nothing (for "wrong certificate" tests).
pub struct TestCa {
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub other_ca: PathBuf,
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl (run scripts/setup.sh)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The test CA, made once per test process with the openssl command.
pub fn test_ca() -> &'static TestCa {
    static CA: std::sync::OnceLock<TestCa> = std::sync::OnceLock::new();
    CA.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("ftpfs-ca-").tempdir().expect("ca dir");
        let d = dir.path();
        for (name, cn) in [("ca", "ftpfs test CA"), ("other", "ftpfs other CA")] {
            openssl(
                &["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "3",
                  "-keyout", &format!("{name}.key"), "-out", &format!("{name}.pem"), "-subj", &format!("/CN={cn}"),
                  "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                d,
            );
        }
        openssl(&["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "srv.key",
                  "-out", "srv.csr", "-subj", "/CN=localhost"], d);
        std::fs::write(
            d.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .expect("ext.cnf");
        openssl(&["x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "srv.pem",
                  "-days", "3", "-extfile", "ext.cnf"], d);
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod ca dir");
        TestCa {
            ca: d.join("ca.pem"),
            server_cert: d.join("srv.pem"),
            server_key: d.join("srv.key"),
            other_ca: d.join("other.pem"),
            _dir: dir,
        }
    })
}

/// A client certificate and its key (PEM files) signed by the test CA for TLS client
/// authentication, made once per test process.
pub fn client_certificate() -> &'static (PathBuf, PathBuf) {
    static CLIENT: std::sync::OnceLock<(PathBuf, PathBuf)> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        let ca = test_ca();
        let d = ca.ca.parent().expect("the CA's directory");
        openssl(
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "client.key",
                "-out",
                "client.csr",
                "-subj",
                "/CN=ftpfs test client",
            ],
            d,
        );
        std::fs::write(
            d.join("client.cnf"),
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
        )
        .expect("client.cnf");
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                "client.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "client.pem",
                "-days",
                "3",
                "-extfile",
                "client.cnf",
            ],
            d,
        );
        let key = d.join("client.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod client.key");
        (d.join("client.pem"), key)
    })
}

impl ServerConfig {
    /// The server's certificate and key files when it speaks TLS.
    fn cert_and_key(&self) -> (PathBuf, PathBuf) {
        match &self.certificate {
            Some(pair) => pair.clone(),
            None => (test_ca().server_cert.clone(), test_ca().server_key.clone()),
        }
    }
}

/// A certificate made as the usual vsftpd tutorial makes it (`openssl req -x509 -nodes -newkey
/// rsa:2048 -keyout vsftpd.pem -out vsftpd.pem`): self-signed, CA:TRUE, key and certificate in
/// one file, named for another host. Made once per test process.
pub fn tutorial_certificate() -> &'static Path {
    static CERT: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
    let (_, path) = CERT.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("ftpfs-selfsigned-").tempdir().expect("cert dir");
        openssl(
            &[
                "req",
                "-x509",
                "-nodes",
                "-days",
                "3",
                "-newkey",
                "rsa:2048",
                "-keyout",
                "vsftpd.pem",
                "-out",
                "vsftpd.pem",
                "-subj",
                "/CN=ftp.example.org",
            ],
            dir.path(),
        );
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod cert dir");
        let path = dir.path().join("vsftpd.pem");
        (dir, path)
    });
    path
}

/// The SHA-256 fingerprint of a PEM certificate as `openssl x509 -fingerprint -sha256` prints it
/// (`sha256 Fingerprint=AB:CD:…`).
pub fn openssl_fingerprint(pem: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(pem)
        .output()
        .expect("openssl x509");
    assert!(out.status.success(), "openssl x509: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// [`PASSWORD`] as a SHA-512 crypt(3) hash, made once with openssl.
fn sha512_crypt_password() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        let out = Command::new("openssl")
            .args(["passwd", "-6", "-salt", "ftpfstestsalt", PASSWORD])
            .output()
            .expect("openssl passwd (run scripts/setup.sh)");
        assert!(out.status.success(), "openssl passwd: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    })
}

/// A running server. Dropping it kills the server and removes its root.
pub struct FtpServer {
    pub kind: ServerKind,
    pub host: String,
    pub port: u16,
    pub pasv_range: (u16, u16),
    root: tempfile::TempDir,
    work: tempfile::TempDir,
    child: Option<Child>,
    cfg: ServerConfig,
}

/// Hands out blocks of ports below Linux's ephemeral range, distinct within this process.
fn port_block(size: u16) -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let pid_slot = (std::process::id() % 40) as u32;
    loop {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let base = 20_000 + ((pid_slot * 7 + n) % 200) * 60;
        let base = base as u16;
        if TcpListener::bind(("127.0.0.1", base)).is_ok() && TcpListener::bind(("::1", base)).is_ok() {
            return base;
        }
        assert!(n < 10_000, "no free port block of {size}");
    }
}

fn run(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().map(|s| s.success()).unwrap_or(false)
}

/// The test user's home. It must exist and belong to the user: vsftpd changes into the home
/// directory at login, before it applies `local_root`, and fails every login
/// (`500 OOPS: cannot change directory`) when it cannot.
pub const HOME: &str = "/home/ftpfstest";

/// Creates the PAM user vsftpd logs in (idempotent), and repairs an existing one whose home is
/// missing or `/nonexistent` (as older versions of this harness made it).
pub fn ensure_test_user() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if !run(Command::new("id").arg(USER)) {
            assert!(
                run(Command::new("useradd").args(["-M", "-d", HOME, "-s", "/bin/bash", USER])),
                "useradd {USER} failed: the tests need root to create the vsftpd user"
            );
        }
        let mut home = home_of(USER);
        if home.is_empty() || home == "/nonexistent" {
            assert!(run(Command::new("usermod").args(["-d", HOME, USER])), "usermod -d {HOME} {USER} failed");
            home = HOME.to_string();
        }
        // Ours (or missing): make it exist and belong to the user, whatever a removed earlier
        // user left behind. Another home that exists is left as it is.
        let ours = home == HOME;
        let home = Path::new(&home);
        if ours || !home.is_dir() {
            std::fs::create_dir_all(home).unwrap_or_else(|e| panic!("mkdir {}: {e}", home.display()));
            std::os::unix::fs::chown(home, Some(uid_of(USER)), Some(gid_of(USER)))
                .unwrap_or_else(|e| panic!("chown {}: {e}", home.display()));
            std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o755)).expect("chmod home");
        }
        let mut child = Command::new("chpasswd").stdin(Stdio::piped()).spawn().expect("chpasswd");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{USER}:{PASSWORD}\n").as_bytes())
            .expect("write chpasswd");
        assert!(child.wait().expect("chpasswd").success(), "chpasswd failed");
        std::fs::create_dir_all("/var/run/vsftpd/empty").expect("secure_chroot_dir");
    });
}

/// The home directory in the password database (`getent passwd`), empty when none is set.
fn home_of(user: &str) -> String {
    let out = Command::new("getent").args(["passwd", user]).output().expect("getent passwd");
    String::from_utf8_lossy(&out.stdout).trim().split(':').nth(5).unwrap_or("").to_string()
}

fn gid_of(user: &str) -> u32 {
    let out = Command::new("id").args(["-g", user]).output().expect("id -g");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("gid")
}

pub fn uid_of(user: &str) -> u32 {
    let out = Command::new("id").args(["-u", user]).output().expect("id -u");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("uid")
}

impl FtpServer {
    pub fn start(kind: ServerKind) -> FtpServer {
        FtpServer::start_with(kind, ServerConfig::default())
    }

    pub fn start_with(kind: ServerKind, cfg: ServerConfig) -> FtpServer {
        let host = cfg.host.clone().unwrap_or_else(|| "127.0.0.1".to_string());
        let base = port_block(60);
        let port = base;
        let pasv_range = (base + 1, base + cfg.passive_ports.unwrap_or(59).clamp(1, 59));
        let root = tempfile::Builder::new().prefix("ftpfs-root-").tempdir().expect("temp root");
        let work = tempfile::Builder::new().prefix("ftpfs-srv-").tempdir().expect("temp work");
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod root");
        let mut srv = FtpServer { kind, host, port, pasv_range, root, work, child: None, cfg };
        srv.spawn();
        srv
    }

    fn spawn(&mut self) {
        let child = match self.kind {
            ServerKind::Vsftpd => self.spawn_vsftpd(&self.cfg),
            ServerKind::Pyftpdlib => self.spawn_pyftpdlib(),
            ServerKind::PureFtpd => self.spawn_pureftpd(),
            ServerKind::Proftpd => self.spawn_proftpd(),
        };
        self.child = Some(child);
        self.wait_ready();
    }

    /// Kills the server (and its sessions) and starts it again on the same port and root.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpListener::bind((self.host.as_str(), self.port)).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.spawn();
    }

    fn log_path(&self) -> PathBuf {
        self.work.path().join("server.log")
    }

    /// Starts `cmd` with its output going to the server log.
    fn spawn_logged(&self, mut cmd: Command, what: &str) -> Child {
        let log = std::fs::File::create(self.log_path()).expect("log");
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {what}: {e} (run scripts/setup.sh)"))
    }

    fn spawn_vsftpd(&self, cfg: &ServerConfig) -> Child {
        ensure_test_user();
        let uid = uid_of(USER);
        std::os::unix::fs::chown(self.root.path(), Some(uid), None).expect("chown root");
        let ipv6 = self.host.contains(':');
        let mut conf = format!(
            "listen={}\nlisten_ipv6={}\nlisten_address{}={}\nlisten_port={}\nbackground=NO\n\
             anonymous_enable=NO\nlocal_enable=YES\nwrite_enable=YES\nlocal_umask=022\n\
             chroot_local_user=YES\nallow_writeable_chroot=YES\nlocal_root={}\n\
             seccomp_sandbox=NO\nisolate=NO\nisolate_network=NO\n\
             pasv_enable=YES\npasv_min_port={}\npasv_max_port={}\n{}\
             port_enable=YES\nconnect_from_port_20=NO\nsecure_chroot_dir=/var/run/vsftpd/empty\n\
             pam_service_name=vsftpd\nutf8_filesystem=YES\nuse_localtime=NO\n\
             xferlog_enable=YES\nxferlog_file={}\ndirmessage_enable=NO\nmax_clients=200\nmax_per_ip=200\n",
            if ipv6 { "NO" } else { "YES" },
            if ipv6 { "YES" } else { "NO" },
            if ipv6 { "6" } else { "" },
            self.host,
            self.port,
            self.root.path().display(),
            self.pasv_range.0,
            self.pasv_range.1,
            if ipv6 { String::new() } else { "pasv_address=127.0.0.1\n".to_string() },
            self.work.path().join("xfer.log").display(),
        );
        if let Some(tls) = cfg.tls {
            let (cert, key) = cfg.cert_and_key();
            conf.push_str(&format!(
                "ssl_enable=YES\nrsa_cert_file={}\nrsa_private_key_file={}\nrequire_ssl_reuse=YES\n\
                 force_local_data_ssl=YES\nforce_local_logins_ssl=YES\nssl_ciphers=HIGH\nallow_anon_ssl=NO\n",
                cert.display(),
                key.display()
            ));
            if tls == TlsServer::Implicit {
                conf.push_str("implicit_ssl=YES\n");
            }
        }
        for line in &cfg.vsftpd_extra {
            conf.push_str(line);
            conf.push('\n');
        }
        let conf_path = self.work.path().join("vsftpd.conf");
        std::fs::write(&conf_path, conf).expect("write vsftpd.conf");
        let mut cmd = Command::new("/usr/sbin/vsftpd");
        cmd.arg(&conf_path).envs(cfg.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        self.spawn_logged(cmd, "vsftpd")
    }

    fn spawn_pureftpd(&self) -> Child {
        ensure_test_user();
        std::os::unix::fs::chown(self.root.path(), Some(uid_of(USER)), None).expect("chown root");
        let passwd = self.work.path().join("pureftpd.passwd");
        let pdb = self.work.path().join("pureftpd.pdb");
        // The user's line is written here rather than by `pure-pw useradd`: pure-pw hashes with
        // argon2id at 1023 passes, which costs pure-ftpd 2 to 5 s of CPU at every login. A
        // SHA-512 crypt hash (which pure-ftpd checks with crypt(3)) costs a millisecond.
        let uid = uid_of(USER);
        let line =
            format!("{USER}:{}:{uid}:{uid}::{}/./::::::::::::\n", sha512_crypt_password(), self.root.path().display());
        std::fs::write(&passwd, line).expect("write pure-ftpd passwd");
        let pw = format!("{SERVERS}/pure/usr/bin/pure-pw");
        let st = Command::new(&pw).arg("mkdb").arg(&pdb).arg("-f").arg(&passwd).status().expect("pure-pw mkdb");
        assert!(st.success(), "pure-pw mkdb failed");
        let mut cmd = Command::new(format!("{SERVERS}/pure/usr/sbin/pure-ftpd"));
        cmd.arg("-S")
            .arg(format!("{},{}", self.host, self.port))
            .arg("-l")
            .arg(format!("puredb:{}", pdb.display()))
            .args(["-E", "-c", "200", "-C", "200"])
            .arg("-p")
            .arg(format!("{}:{}", self.pasv_range.0, self.pasv_range.1));
        if let Some(tls) = self.cfg.tls {
            assert_eq!(tls, TlsServer::Explicit, "pure-ftpd is tested with explicit TLS only");
            // -Y 2: no login without TLS; -2: the certificate and key files.
            let (cert, key) = self.cfg.cert_and_key();
            cmd.args(["-Y", "2", "-2"]).arg(format!("{},{}", cert.display(), key.display()));
        }
        self.spawn_logged(cmd, "pure-ftpd")
    }

    fn spawn_proftpd(&self) -> Child {
        ensure_test_user();
        let uid = uid_of(USER);
        std::os::unix::fs::chown(self.root.path(), Some(uid), None).expect("chown root");
        let w = self.work.path();
        let hash = Command::new("openssl").args(["passwd", "-6", PASSWORD]).output().expect("openssl passwd");
        let hash = String::from_utf8_lossy(&hash.stdout).trim().to_string();
        let passwd = w.join("proftpd.passwd");
        std::fs::write(&passwd, format!("{USER}:{hash}:{uid}:{uid}::{}:/bin/bash\n", self.root.path().display()))
            .expect("passwd");
        std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o600)).expect("chmod passwd");
        let ipv6 = self.host.contains(':');
        // SocketBindTight: the control port on the server's address only, not on every
        // address, so that a proxy may listen on the same port at another loopback address
        // (tests/nat.rs).
        let conf = format!(
            "ServerName \"ftpfs test proftpd\"\nServerType standalone\nDefaultServer on\nPort {}\n\
             DefaultAddress {}\nUseIPv6 {}\nUser {USER}\nGroup nogroup\nPidFile {}\nScoreboardFile {}\n\
             DelayTable none\nWtmpLog off\nTransferLog none\nSystemLog {}\nAuthOrder mod_auth_file.c\n\
             AuthUserFile {}\nRequireValidShell off\nDefaultRoot ~\nPassivePorts {} {}\nUmask 022\n\
             AllowOverwrite on\nUseReverseDNS off\nMaxInstances 200\nSocketBindTight on\n\
             ModulePath {SERVERS}/proftpd/usr/lib/proftpd\nLoadModule mod_digest.c\nLoadModule mod_site_misc.c\n\
             DigestEngine on\n",
            self.port,
            self.host,
            if ipv6 { "on" } else { "off" },
            w.join("proftpd.pid").display(),
            w.join("proftpd.scoreboard").display(),
            self.log_path().display(),
            passwd.display(),
            self.pasv_range.0,
            self.pasv_range.1,
        );
        let conf_path = w.join("proftpd.conf");
        std::fs::write(&conf_path, conf).expect("proftpd.conf");
        Command::new(format!("{SERVERS}/proftpd/usr/sbin/proftpd"))
            .arg("-n")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start proftpd: run scripts/setup.sh")
    }

    fn spawn_pyftpdlib(&self) -> Child {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/pyftpd_server.py");
        // pyftpdlib as scripts/setup.sh pins it, in its own virtual environment.
        let venv = Path::new("/opt/ftpfs-test/venv/bin/python");
        assert!(venv.exists(), "{} is missing: run scripts/setup.sh", venv.display());
        let mut cmd = Command::new(venv);
        cmd.arg(script)
            .args(["--host", &self.host, "--port", &self.port.to_string()])
            .args(["--root", &self.root.path().display().to_string()])
            .args(["--user", USER, "--password", PASSWORD])
            .args(["--pasv", &format!("{}-{}", self.pasv_range.0, self.pasv_range.1)])
            .args(self.cfg.encoding.iter().flat_map(|e| ["--encoding".to_string(), e.clone()]))
            .args(match self.cfg.tls {
                Some(_) => vec![
                    "--certfile".to_string(),
                    self.cfg.cert_and_key().0.display().to_string(),
                    "--keyfile".to_string(),
                    self.cfg.cert_and_key().1.display().to_string(),
                ],
                None => vec![],
            });
        self.spawn_logged(cmd, "pyftpdlib")
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("{:?} exited early ({status}): {}", self.kind, self.log());
            }
            if let Ok(s) = TcpStream::connect((self.host.as_str(), self.port)) {
                if self.cfg.tls == Some(TlsServer::Implicit) {
                    return; // it listens; the greeting comes only after a TLS handshake
                }
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut line = String::new();
                if BufReader::new(s).read_line(&mut line).is_ok() && line.starts_with("220") {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "{:?} did not become ready: {}", self.kind, self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's own log, for failure messages.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.log_path()) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// The server's root directory on disk.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// A path on the server's own disk (relative to its root).
    pub fn disk(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel.trim_start_matches('/'))
    }

    /// Writes a file on the server's disk (readable and writable by the FTP user).
    pub fn put_file(&self, rel: &str, data: &[u8]) {
        let p = self.disk(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir on server disk");
            self.give_to_ftp_user(parent);
        }
        std::fs::write(&p, data).expect("write on server disk");
        self.give_to_ftp_user(&p);
    }

    /// Makes a path on the server's disk owned by the FTP user, so the server may change it.
    pub fn give_to_ftp_user(&self, p: &Path) {
        if self.kind.runs_as_ftp_user() {
            let _ = std::os::unix::fs::chown(p, Some(uid_of(USER)), None);
        }
    }

    /// Connection options for this server (trusting the test CA when it speaks TLS).
    pub fn options(&self) -> ConnectOptions {
        let mut o = ConnectOptions::new(&self.host, self.port, USER, PASSWORD);
        o.timeout = Duration::from_secs(20);
        if let Some(tls) = self.cfg.tls {
            o.tls_mode = match tls {
                TlsServer::Explicit => ftpfs::ftp::TlsMode::Explicit,
                TlsServer::Implicit => ftpfs::ftp::TlsMode::Implicit,
            };
            let settings =
                ftpfs::ftp::TlsSettings { cafile: Some(test_ca().ca.clone()), no_verify: false, ..Default::default() };
            o.tls = Some(std::sync::Arc::new(ftpfs::ftp::TlsContext::new(&self.host, &settings).expect("tls context")));
        }
        o
    }

    pub fn tls(&self) -> Option<TlsServer> {
        self.cfg.tls
    }

    /// A logged-in connection.
    pub fn connect(&self) -> Connection {
        Connection::connect(&self.options())
            .unwrap_or_else(|e| panic!("connect to {:?} failed: {e}\n{}", self.kind, self.log()))
    }

    /// `ftp://user:password@host:port/` for tools like curl.
    pub fn url(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        format!("ftp://{USER}:{PASSWORD}@{host}:{}/", self.port)
    }

    /// Stops the server now (kills it).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        match self.kind {
            // vsftpd and proftpd fork a process per session; end them too.
            ServerKind::Vsftpd => {
                let _ = Command::new("pkill")
                    .args(["-f", &self.work.path().join("vsftpd.conf").display().to_string()])
                    .status();
            }
            ServerKind::Proftpd => {
                let _ = Command::new("pkill")
                    .args(["-f", &self.work.path().join("proftpd.conf").display().to_string()])
                    .status();
            }
            ServerKind::PureFtpd => {
                let _ =
                    Command::new("pkill").args(["-f", &format!("pure-ftpd -S {},{}", self.host, self.port)]).status();
            }
            ServerKind::Pyftpdlib => {}
        }
        self.kill_sessions();
    }

    /// Kills every process (other than this one) holding a socket on the server's ports, the
    /// control port and the passive range: proftpd and pure-ftpd rewrite their session processes'
    /// titles, so `pkill -f` misses them and they would live on and finish transfers. Only
    /// sockets on the server's own address (or a wildcard) count: a proxy in front of the server
    /// listens on the same port numbers at another loopback address (tests/wan.rs's wan_proxy on
    /// 127.0.0.2), and it outlives a restart of the server as the network would.
    fn kill_sessions(&self) {
        let ports = self.port..=self.pasv_range.1;
        let addresses = proc_net_addresses(&self.host);
        let sockets: std::collections::HashSet<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
            .iter()
            .filter_map(|table| std::fs::read_to_string(table).ok())
            .flat_map(|text| text.lines().skip(1).map(str::to_string).collect::<Vec<_>>())
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let (address, port) = fields.get(1)?.rsplit_once(':')?;
                let port = u16::from_str_radix(port, 16).ok()?;
                let ours = addresses.as_ref().is_none_or(|a| a.iter().any(|a| a.eq_ignore_ascii_case(address)));
                let inode = fields.get(9)?;
                (ours && ports.contains(&port) && *inode != "0").then(|| format!("socket:[{inode}]"))
            })
            .collect();
        if sockets.is_empty() {
            return;
        }
        let me = std::process::id() as i32;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else { continue };
            let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else { continue };
            let serves = fds
                .flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| sockets.contains(l.to_string_lossy().as_ref())));
            if serves && pid != me {
                // SAFETY: kill(2) has no memory-safety preconditions; this pid serves our test server.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The local addresses of /proc/net/tcp and tcp6 (hex, each 32-bit word as the kernel prints it)
/// that a server listening on `host` has: its own, IPv4-mapped for IPv4, and the wildcards.
/// `None` when `host` is not an IP address (then every address counts).
fn proc_net_addresses(host: &str) -> Option<Vec<String>> {
    let hex = |bytes: &[u8]| -> String {
        bytes.chunks(4).map(|w| format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]]))).collect()
    };
    let mut out = vec![hex(&[0; 4]), hex(&[0; 16])];
    match host.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(v4) => {
            out.push(hex(&v4.octets()));
            out.push(hex(&v4.to_ipv6_mapped().octets()));
        }
        std::net::IpAddr::V6(v6) => out.push(hex(&v6.octets())),
    }
    Some(out)
}

impl Drop for FtpServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Downloads a whole file (from `offset`) over a wire-level connection and checks the transfer's
/// final reply.
pub fn fetch(c: &mut Connection, path: &str, offset: u64) -> Vec<u8> {
    let mut dl = c.retr(path, offset).unwrap_or_else(|e| panic!("RETR {path}: {e}"));
    let mut got = Vec::new();
    dl.read_to_end(&mut got).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    dl.finish().unwrap_or_else(|e| panic!("end of RETR {path}: {e}"));
    got
}

/// Runs each named test function (taking a [`ServerKind`]) as one test per server, in a module
/// per server: `on_servers!([vsftpd: Vsftpd, pyftpdlib: Pyftpdlib], test_a, test_b)`.
#[macro_export]
macro_rules! on_servers {
    ([$($module:ident: $kind:ident),*], $($name:ident),* $(,)?) => {
        $crate::on_servers!(@each [$($module: $kind),*] [$($name),*]);
    };
    (@each [$($module:ident: $kind:ident),*] $names:tt) => {
        $( $crate::on_servers!(@one $module $kind $names); )*
    };
    (@one $module:ident $kind:ident [$($name:ident),*]) => {
        mod $module {
            $( #[test] fn $name() { super::$name(super::support::ServerKind::$kind) } )*
        }
    };
}

/// [`on_servers!`] on all four real servers.
#[macro_export]
macro_rules! on_every_server {
    ($($name:ident),* $(,)?) => {
        $crate::on_servers!([vsftpd: Vsftpd, pyftpdlib: Pyftpdlib, pureftpd: PureFtpd, proftpd: Proftpd], $($name),*);
    };
}

/// Deterministic pseudo-random bytes (xorshift64*), so big files can be checked without
/// keeping a copy: the same seed always gives the same stream.
pub struct DataGen {
    state: u64,
}

impl DataGen {
    pub fn new(seed: u64) -> DataGen {
        DataGen { state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1 }
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            let v = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        DataGen::new(seed).fill(&mut v);
        v
    }
}

/// Compares a reader with the DataGen stream of `seed`, `len` bytes long.
pub fn assert_stream_matches(mut r: impl Read, seed: u64, len: u64, what: &str) {
    let mut generator = DataGen::new(seed);
    let mut expect = vec![0u8; 1 << 20];
    let mut got = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < len {
        let n = ((len - done) as usize).min(expect.len());
        generator.fill(&mut expect[..n]);
        r.read_exact(&mut got[..n]).unwrap_or_else(|e| panic!("{what}: short read at {done}: {e}"));
        assert!(expect[..n] == got[..n], "{what}: content differs in the block at {done}");
        done += n as u64;
    }
    let mut extra = [0u8; 1];
    assert_eq!(r.read(&mut extra).expect("read past end"), 0, "{what}: longer than {len}");
}
pub mod mount;
pub mod proxy;
pub mod wan;

/// The files in every write-back journal under `cache/writeback/<server>/<mount>/` (lock files
/// aside), sorted.
pub fn journal_files(cache: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if e.file_name() != "lock" {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&cache.join("writeback"), &mut out);
    out.sort();
    out
}

/// A test that cannot run here says so: under `CI=true` (set by `.ci/run`) it fails instead, and
/// otherwise its name and `reason` are appended to `$FTPFS_SKIP_LOG` (set by `scripts/test.sh`,
/// whose summary counts skipped tests apart from passed ones). The caller returns after it.
pub fn skip(reason: &str) {
    let name = std::thread::current().name().unwrap_or("?").to_string();
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{name} cannot run here under CI: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
    if let Some(path) = std::env::var_os("FTPFS_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{name}: {reason}");
        }
    }
}

/// The scripted misbehaving server (tests/support/fake_ftpd.py), for what real servers won't do.
pub struct FakeServer {
    pub port: u16,
    child: Child,
}

impl FakeServer {
    /// Starts the fake with `flags` (see tests/support/fake_ftpd.py) and waits until it greets,
    /// or, with `--silent-greeting`, until it accepts connections.
    pub fn start(flags: &[&str]) -> FakeServer {
        let greets = !flags.contains(&"--silent-greeting");
        let port = port_block(1);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fake_ftpd.py");
        let child = Command::new("python3")
            .arg(script)
            .args(["--port", &port.to_string()])
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start fake_ftpd.py");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                if !greets {
                    break;
                }
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut line = String::new();
                if BufReader::new(s).read_line(&mut line).is_ok() && line.starts_with("220") {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "fake server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        FakeServer { port, child }
    }

    pub fn options(&self, timeout_secs: u64) -> ConnectOptions {
        let mut o = ConnectOptions::new("127.0.0.1", self.port, "u", "p");
        o.timeout = Duration::from_secs(timeout_secs);
        o
    }

    pub fn url(&self) -> String {
        format!("ftp://u@127.0.0.1:{}/", self.port)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
