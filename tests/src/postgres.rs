//! A real PostgreSQL server per test: Debian's package (`postgresql`), `initdb` on a
//! temporary data directory, `pg_ctl` to start and stop it. No mocks.
//!
//! - initdb refuses to run as root: as root the harness runs it (and `pg_ctl`, `psql`) as
//!   the `postgres` user the package creates (`runuser -u postgres`), on a temporary
//!   directory given to that user; as anyone else, as that user.
//! - The server listens only on a Unix socket in the instance's own directory
//!   (`listen_addresses = ''`), so parallel tests never compete for a port; or, with
//!   [`Postgres::start_tls_or_skip`], also with TLS on a free loopback port, its
//!   certificate (for the names the test gives) issued by a test CA made here with rcgen.
//! - Password authentication (SCRAM) for a superuser `mooring`, whose password is in a
//!   0600 file, as a broker would be configured.
//! - Drop stops the server (`pg_ctl stop -m immediate`) and removes the directory.
//!
//! [`Postgres::start_or_skip`] skips (prints why, returns `None`) when the server
//! programs are not installed, unless `CI` is set: then it fails, like
//! [`crate::Swtpm::start_or_skip`].

use std::ffi::OsString;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::cmd::Invocation;
use crate::{prereq, HarnessError};

/// The database superuser the tests (and brokers) connect as.
pub const USER: &str = "mooring";
/// The database the brokers use.
pub const DATABASE: &str = "postgres";
/// Names the socket file when nothing listens on TCP.
const PORT: u16 = 5432;
/// The Debian package with the server programs.
pub const PACKAGE: &str = "postgresql";

/// A running PostgreSQL server.
#[derive(Debug)]
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// The port (TCP with TLS; else only the socket file's name).
    port: u16,
    /// Whom the server programs run as (`runuser -u`), when the harness runs as root.
    run_as: Option<String>,
}

/// The directory holding `initdb`, `pg_ctl` and `psql`: Debian's
/// `/usr/lib/postgresql/<version>/bin` (newest version first), else where the `initdb` on
/// `PATH` really lives (symbolic links followed).
#[must_use]
pub fn server_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let initdb = std::fs::canonicalize(prereq::find_program("initdb")?).ok()?;
    initdb.parent().map(Path::to_path_buf)
}

fn is_root() -> bool {
    // The harness has no libc binding; `id -u` is coreutils, present wherever tests run.
    Invocation { program: "id", args: vec!["-u".into()], envs: Vec::new(), cwd: None }
        .run()
        .is_ok_and(|out| out.trim_ascii() == b"0")
}

/// The uid and gid of `user`.
fn ids(user: &str) -> Result<(u32, u32), HarnessError> {
    let id = |flag: &str| -> Result<u32, HarnessError> {
        let out =
            Invocation { program: "id", args: vec![flag.into(), user.into()], envs: Vec::new(), cwd: None }
                .run()?;
        String::from_utf8_lossy(&out).trim().parse().map_err(|_| HarnessError::StartFailed {
            reason: format!("`id {flag} {user}` printed no number"),
            log: String::new(),
        })
    };
    Ok((id("-u")?, id("-g")?))
}

fn random_hex(bytes: usize) -> Result<String, HarnessError> {
    let mut buffer = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buffer))
        .map_err(|e| HarnessError::io("read /dev/urandom", e))?;
    Ok(buffer.iter().map(|b| format!("{b:02x}")).collect())
}

/// A loopback port nothing listens on now (the kernel's pick; free again when returned).
fn free_port() -> Result<u16, HarnessError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|e| HarnessError::io("find a free port", e))
}

fn write_private(path: &Path, text: &str) -> Result<(), HarnessError> {
    std::fs::write(path, text)
        .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)))
        .map_err(|e| HarnessError::io(format!("write {}", path.display()), e))
}

impl Postgres {
    /// Starts a server, or skips: see the module documentation.
    ///
    /// # Panics
    /// The server programs are missing and `CI` is set, or the server does not start.
    #[must_use]
    #[allow(clippy::panic)]
    pub fn start_or_skip(test: &str) -> Option<Self> {
        Self::start_with_or_skip(test, None)
    }

    /// Starts a server that also listens with TLS on a loopback port, its certificate
    /// naming `names` (DNS names or IP addresses) and issued by a test CA
    /// ([`Postgres::ca_file`]); or skips, as [`Postgres::start_or_skip`].
    ///
    /// # Panics
    /// As [`Postgres::start_or_skip`].
    #[must_use]
    pub fn start_tls_or_skip(test: &str, names: &[&str]) -> Option<Self> {
        Self::start_with_or_skip(test, Some(names))
    }

    #[allow(clippy::panic)]
    fn start_with_or_skip(test: &str, tls: Option<&[&str]>) -> Option<Self> {
        if server_bin_dir().is_none() {
            let message = format!(
                "{test}: PostgreSQL server programs (initdb, pg_ctl) not found (Debian: apt-get install {PACKAGE})"
            );
            assert!(!prereq::in_ci(), "CI is set, so this is a failure, not a skip: {message}");
            eprintln!("SKIPPED {message}; set CI=true to make this a failure");
            return None;
        }
        match Self::start_with(tls) {
            Ok(server) => Some(server),
            Err(e) => panic!("{test}: PostgreSQL: {e}"),
        }
    }

    /// Creates a cluster in a temporary directory and starts the server on it.
    ///
    /// # Errors
    /// The programs are missing, a command fails, or the server does not come up.
    pub fn start() -> Result<Self, HarnessError> {
        Self::start_with(None)
    }

    fn start_with(tls: Option<&[&str]>) -> Result<Self, HarnessError> {
        let bin = server_bin_dir().ok_or_else(|| HarnessError::MissingTool { tool: "initdb".into() })?;
        let run_as = is_root().then(|| "postgres".to_owned());
        // As root, under /tmp whatever TMPDIR says: the postgres user must reach it. It
        // also keeps the socket path short (Unix socket paths end at 107 bytes).
        let parent = if run_as.is_some() { PathBuf::from("/tmp") } else { std::env::temp_dir() };
        let dir = tempfile::Builder::new().prefix("mooring-pg-").tempdir_in(&parent).map_err(|e| {
            HarnessError::io(format!("create a PostgreSQL directory in {}", parent.display()), e)
        })?;
        let port = match tls {
            Some(_) => free_port()?,
            None => PORT,
        };
        let server = Self { dir, bin, port, run_as };
        std::fs::create_dir(server.socket_dir())
            .map_err(|e| HarnessError::io("create the socket directory", e))?;
        let password = random_hex(16)?;
        write_private(&server.password_file(), &format!("{password}\n"))?;
        // psql reads it from a passfile, so no command line or environment shows it.
        write_private(&server.passfile(), &format!("*:*:*:*:{password}\n"))?;
        if let Some(user) = &server.run_as {
            let (uid, gid) = ids(user)?;
            for path in [
                server.dir.path().to_path_buf(),
                server.socket_dir(),
                server.password_file(),
                server.passfile(),
            ] {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                    .map_err(|e| HarnessError::io(format!("give {} to {user}", path.display()), e))?;
            }
        }
        let data = server.data_dir();
        server.run(
            "initdb",
            &[
                "-D".into(),
                data.clone().into(),
                "-U".into(),
                USER.into(),
                "--pwfile".into(),
                server.password_file().into(),
                "-A".into(),
                "scram-sha-256".into(),
                "-E".into(),
                "UTF8".into(),
                "--locale".into(),
                "C".into(),
                "--no-sync".into(),
            ],
        )?;
        let mut settings = format!(
            "\nport = {}\nunix_socket_directories = '{}'\nfsync = on\nsynchronous_commit = on\nmax_connections = 100\n",
            server.port,
            server.socket_dir().display()
        );
        match tls {
            Some(names) => {
                server.write_certificates(names)?;
                settings.push_str(
                    "listen_addresses = '127.0.0.1'\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
                );
            }
            None => settings.push_str("listen_addresses = ''\n"),
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, settings.as_bytes()))
            .map_err(|e| HarnessError::io("configure postgresql.conf", e))?;
        let log = server.dir.path().join("server.log");
        let started = server.run(
            "pg_ctl",
            &[
                "-D".into(),
                data.into(),
                "-l".into(),
                log.clone().into(),
                "-w".into(),
                "-t".into(),
                "60".into(),
                "start".into(),
            ],
        );
        if let Err(e) = started {
            return Err(HarnessError::StartFailed {
                reason: e.to_string(),
                log: std::fs::read_to_string(&log).unwrap_or_default(),
            });
        }
        Ok(server)
    }

    /// Runs a server program (as the server's user when the harness is root).
    fn run(&self, program: &str, args: &[OsString]) -> Result<Vec<u8>, HarnessError> {
        self.run_with(program, args, Vec::new())
    }

    fn run_with(
        &self,
        program: &str,
        args: &[OsString],
        envs: Vec<(&'static str, String)>,
    ) -> Result<Vec<u8>, HarnessError> {
        let path = self.bin.join(program);
        match &self.run_as {
            Some(user) => {
                let mut all: Vec<OsString> = vec!["-u".into(), user.into(), "--".into(), path.into()];
                all.extend(args.iter().cloned());
                Invocation { program: "runuser", args: all, envs, cwd: Some(self.dir.path()) }.run()
            }
            None => Invocation {
                program: &path.to_string_lossy(),
                args: args.to_vec(),
                envs,
                cwd: Some(self.dir.path()),
            }
            .run(),
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("socket")
    }

    fn passfile(&self) -> PathBuf {
        self.dir.path().join("pgpass")
    }

    /// The superuser's password (first line of a 0600 file).
    #[must_use]
    pub fn password_file(&self) -> PathBuf {
        self.dir.path().join("password")
    }

    /// libpq connection string without the password.
    #[must_use]
    pub fn url(&self) -> String {
        format!("host={} port={} user={USER} dbname={DATABASE}", self.socket_dir().display(), self.port)
    }

    /// libpq connection string over TCP to `host` (a name the server's certificate may or
    /// may not carry), reaching 127.0.0.1 whatever the name, without the password.
    #[must_use]
    pub fn tcp_url(&self, host: &str) -> String {
        format!("host={host} hostaddr=127.0.0.1 port={} user={USER} dbname={DATABASE}", self.port)
    }

    /// The test CA (PEM) that issued the server's certificate.
    #[must_use]
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The test CA and the server's certificate for `names`, in the data directory (the
    /// key readable by the server's user only).
    fn write_certificates(&self, names: &[&str]) -> Result<(), HarnessError> {
        let failed = |e: rcgen::Error| HarnessError::StartFailed {
            reason: format!("making the test server certificate: {e}"),
            log: String::new(),
        };
        let ca_key = rcgen::KeyPair::generate().map_err(failed)?;
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
        ca.distinguished_name.push(rcgen::DnType::CommonName, "mooring test database CA");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).map_err(failed)?;
        let key = rcgen::KeyPair::generate().map_err(failed)?;
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .map_err(failed)?
            .signed_by(&key, &rcgen::Issuer::new(ca, ca_key))
            .map_err(failed)?;
        std::fs::write(self.ca_file(), ca_cert.pem())
            .map_err(|e| HarnessError::io("write the test CA", e))?;
        let data = self.data_dir();
        std::fs::write(data.join("server.crt"), cert.pem())
            .map_err(|e| HarnessError::io("write the server certificate", e))?;
        write_private(&data.join("server.key"), &key.serialize_pem())?;
        if let Some(user) = &self.run_as {
            let (uid, gid) = ids(user)?;
            for name in ["server.crt", "server.key"] {
                std::os::unix::fs::chown(data.join(name), Some(uid), Some(gid))
                    .map_err(|e| HarnessError::io(format!("give {name} to {user}"), e))?;
            }
        }
        Ok(())
    }

    /// Broker configuration for this server: `store = "postgres"` and a `[postgres]`
    /// section (put it last: it opens a table). Every call names the same key-encryption
    /// key file, so all replicas configured from one server share their signing keys.
    ///
    /// # Errors
    /// The key file cannot be written.
    pub fn broker_config(&self) -> Result<String, HarnessError> {
        Ok(format!("store = \"postgres\"\n\n{}", self.postgres_section()?))
    }

    /// The `[postgres]` section alone of [`Postgres::broker_config`] (for a configuration
    /// that says `store = "postgres"` elsewhere).
    ///
    /// # Errors
    /// The key file cannot be written.
    pub fn postgres_section(&self) -> Result<String, HarnessError> {
        self.postgres_section_with_pool(Some(4))
    }

    /// [`Postgres::postgres_section`] with `pool_size` (`None`: the broker's default).
    ///
    /// # Errors
    /// The key file cannot be written.
    pub fn postgres_section_with_pool(&self, pool_size: Option<u32>) -> Result<String, HarnessError> {
        let kek = self.dir.path().join("signing-keys.kek");
        if !kek.exists() {
            write_private(&kek, &format!("{}\n", random_hex(32)?))?;
        }
        let pool = pool_size.map(|size| format!("pool_size = {size}\n")).unwrap_or_default();
        Ok(format!(
            "[postgres]\nurl = {:?}\npassword_file = {:?}\nkey_encryption_key_file = {:?}\n{pool}",
            self.url(),
            self.password_file().display().to_string(),
            kek.display().to_string(),
        ))
    }

    /// The server's process id (the postmaster; its backends are its children).
    ///
    /// # Errors
    /// `postmaster.pid` cannot be read.
    pub fn postmaster_pid(&self) -> Result<u32, HarnessError> {
        let path = self.data_dir().join("postmaster.pid");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| HarnessError::io(format!("read {}", path.display()), e))?;
        text.lines().next().and_then(|line| line.trim().parse().ok()).ok_or_else(|| {
            HarnessError::StartFailed {
                reason: format!("{} does not start with a process id", path.display()),
                log: String::new(),
            }
        })
    }

    /// Runs SQL with `psql` and returns its unaligned, tuples-only output.
    ///
    /// # Errors
    /// psql fails (the statement's error is in the message).
    pub fn psql(&self, sql: &str) -> Result<String, HarnessError> {
        let args: Vec<OsString> = vec![
            "-h".into(),
            self.socket_dir().into(),
            "-p".into(),
            self.port.to_string().into(),
            "-U".into(),
            USER.into(),
            "-d".into(),
            DATABASE.into(),
            "-X".into(),
            "-v".into(),
            "ON_ERROR_STOP=1".into(),
            "-At".into(),
            "-c".into(),
            sql.into(),
        ];
        let out =
            self.run_with("psql", &args, vec![("PGPASSFILE", self.passfile().display().to_string())])?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Best effort: the directory goes with the TempDir either way.
        let _ = self.run(
            "pg_ctl",
            &[
                "-D".into(),
                self.data_dir().into(),
                "-m".into(),
                "immediate".into(),
                "-w".into(),
                "stop".into(),
            ],
        );
    }
}
