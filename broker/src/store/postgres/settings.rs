//! From the `[postgres]` section to a way of connecting: the connection string (no
//! password in it), the password from a private file or the environment, durability
//! settings that do not depend on the server's defaults, and how the link is protected.
//!
//! TLS (`tls`): `verify-full` needs `ca_file` and TCP hosts, and then never falls back to
//! plaintext (`sslmode=require` with a verifying connector). Plaintext (`off`, the default
//! for Unix sockets and loopback addresses) to any other host is refused unless
//! `allow_plaintext` says the link is protected otherwise. Settings that contradict each
//! other (a CA file with TLS off, `sslmode` in the URL) are refused rather than guessed at.

use std::net::IpAddr;
use std::path::Path;

use tokio_postgres::config::{Host, SslMode};

use super::connection::{Connector, CONNECT_TIMEOUT};
use super::tls::Tls;
use crate::config::{PostgresConfig, PostgresTls};
use crate::store::StoreError;

/// A session idle this long inside a transaction is ended by the server, releasing its
/// locks. The broker's transactions send their statements pipelined; the longest gap is a
/// group commit chaining its records (at most [`crate::store::group::PASS_AT_MOST`])
/// between the head lock and the write, milliseconds.
pub(super) const IDLE_IN_TRANSACTION_MS: u32 = 5_000;
/// Longest wait for a row lock (the chain head) before the statement fails: a backstop
/// against a foreign session holding it. Far longer than [`IDLE_IN_TRANSACTION_MS`] (a
/// replica cut off is ended first) and than a request's deadline (every caller of a group
/// that waits this long has been answered already).
const LOCK_TIMEOUT_MS: u32 = 60_000;
/// TCP keepalives: the first probe after this much idle time, then every
/// [`KEEPALIVE_INTERVAL`], [`KEEPALIVE_RETRIES`] unanswered probes end the connection (a
/// server that vanished is noticed within a minute).
const KEEPALIVE_IDLE: std::time::Duration = std::time::Duration::from_secs(30);
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;
/// Longest time data sent may stay unacknowledged before the connection is closed (a
/// network that drops a group commit mid-send, where keepalives do not apply).
const UNACKNOWLEDGED_AT_MOST: std::time::Duration = std::time::Duration::from_secs(60);

/// A secret file's content; refused when others may read it. Never echoes the content.
pub(super) fn read_secret_file(path: &Path, setting: &str) -> Result<String, StoreError> {
    use std::os::unix::fs::PermissionsExt as _;
    let unreadable = |e: std::io::Error| StoreError::Config(format!("{setting} {}: {e}", path.display()));
    let mode = std::fs::metadata(path).map_err(unreadable)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(StoreError::Config(format!(
            "{setting} {} is open to other users (mode {:o}): chmod 600 it",
            path.display(),
            mode & 0o777
        )));
    }
    std::fs::read_to_string(path).map_err(unreadable)
}

/// How to connect with `settings`.
pub(super) fn connector(settings: &PostgresConfig) -> Result<Connector, StoreError> {
    let mut config: tokio_postgres::Config = settings
        .url
        .parse()
        .map_err(|e| StoreError::Config(format!("postgres.url is not a connection string: {e}")))?;
    if config.get_password().is_some() {
        return Err(StoreError::Config(
            "postgres.url holds a password: move it to postgres.password_file or password_env".into(),
        ));
    }
    if let Some(path) = &settings.password_file {
        let text = read_secret_file(path, "postgres.password_file")?;
        config.password(text.lines().next().unwrap_or_default());
    } else if let Some(variable) = &settings.password_env {
        let password = std::env::var(variable).map_err(|_| {
            StoreError::Config(format!("postgres.password_env: ${variable} is not set (or not UTF-8)"))
        })?;
        config.password(password);
    }
    // Durability must not depend on the server's default, and no session waits forever:
    // a group commit holds the audit chain's head lock, so a replica cut off inside its
    // transaction would stop every other replica's appends until the server noticed.
    let session = format!(
        "-c synchronous_commit=on -c lock_timeout={LOCK_TIMEOUT_MS} \
         -c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS}"
    );
    let options = match config.get_options() {
        Some(options) => format!("{options} {session}"),
        None => session,
    };
    config.options(&options);
    config.keepalives_idle(KEEPALIVE_IDLE);
    config.keepalives_interval(KEEPALIVE_INTERVAL);
    config.keepalives_retries(KEEPALIVE_RETRIES);
    config.tcp_user_timeout(UNACKNOWLEDGED_AT_MOST);
    config.application_name("mooring-broker");
    config.connect_timeout(CONNECT_TIMEOUT);
    let tls = protection(settings, &mut config)?;
    Ok(Connector::new(config, tls))
}

/// Whether `host` is this machine: a Unix socket, `localhost` or a loopback address.
fn is_local(host: &Host) -> bool {
    match host {
        Host::Unix(_) => true,
        Host::Tcp(name) => name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()),
    }
}

/// How the connections of `config` are protected, with its `sslmode` set to match.
fn protection(settings: &PostgresConfig, config: &mut tokio_postgres::Config) -> Result<Tls, StoreError> {
    let refuse = |reason: String| Err(StoreError::Config(reason));
    if config.get_ssl_mode() != SslMode::Prefer {
        return refuse(
            "postgres.url sets sslmode: say postgres.tls = \"verify-full\" or \"off\" instead".into(),
        );
    }
    let hosts = config.get_hosts();
    let remote = hosts.iter().find(|host| !is_local(host)).map(|host| match host {
        Host::Tcp(name) => name.clone(),
        Host::Unix(path) => path.display().to_string(),
    });
    let remote = remote
        .or_else(|| config.get_hostaddrs().iter().find(|ip| !ip.is_loopback()).map(ToString::to_string));
    let mode =
        settings.tls.unwrap_or(if remote.is_some() { PostgresTls::VerifyFull } else { PostgresTls::Off });
    match mode {
        PostgresTls::VerifyFull => {
            if let Some(Host::Unix(path)) = hosts.iter().find(|host| matches!(host, Host::Unix(_))) {
                return refuse(format!(
                    "postgres.tls = \"verify-full\" needs TCP hosts, and postgres.url names the Unix socket {} \
                     (the server speaks no TLS there; a socket is local: set tls = \"off\")",
                    path.display()
                ));
            }
            let Some(ca_file) = &settings.ca_file else {
                let host = remote.unwrap_or_else(|| "the database".into());
                return refuse(format!(
                    "postgres.tls = \"verify-full\" (the default for {host}, not this machine) needs postgres.ca_file: \
                     the CA certificate the server's certificate chains to"
                ));
            };
            config.ssl_mode(SslMode::Require);
            Tls::verify_full(ca_file)
        }
        PostgresTls::Off => {
            if settings.ca_file.is_some() {
                return refuse(
                    "postgres.ca_file is set but postgres.tls is \"off\": say which one you mean".into(),
                );
            }
            if let Some(host) = remote.filter(|_| !settings.allow_plaintext) {
                return refuse(format!(
                    "postgres.tls = \"off\" to {host}, which is not this machine: anyone on the path could read and \
                     change what the broker stores; set tls = \"verify-full\" with ca_file, or allow_plaintext = true \
                     if the link is protected otherwise (WireGuard, IPsec)"
                ));
            }
            config.ssl_mode(SslMode::Disable);
            Ok(Tls::off())
        }
    }
}
