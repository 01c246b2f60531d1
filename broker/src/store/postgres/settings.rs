//! From the `[postgres]` section to a way of connecting: the connection string (no
//! password in it), the password from a private file or the environment, durability
//! settings that do not depend on the server's defaults, and how the link is protected.

use std::path::Path;

use super::connection::{Connector, CONNECT_TIMEOUT};
use crate::config::PostgresConfig;
use crate::store::StoreError;

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
    let mut config: postgres::Config = settings
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
    // Durability must not depend on the server's default.
    let options = match config.get_options() {
        Some(options) => format!("{options} -c synchronous_commit=on"),
        None => "-c synchronous_commit=on".to_owned(),
    };
    config.options(&options);
    config.application_name("mooring-broker");
    config.connect_timeout(CONNECT_TIMEOUT);
    Ok(Connector::new(config, postgres::NoTls))
}
