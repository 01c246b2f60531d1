//! `mooring-broker store migrate --from OLD.toml --to NEW.toml`: moves a stopped broker's
//! embedded store into the (empty) PostgreSQL database replicas will share. Both files are
//! broker configurations: the old broker's (`store = "sled"`, its data directory) and the
//! replicas' (`store = "postgres"`, the `[postgres]` section). The trust domain must be the
//! same, or the credentials and keys moved would name another one.

use std::path::PathBuf;

use clap::Subcommand;
use mooring_serve::ConfigFile as _;

use super::Failure;
use crate::config::{Config, StoreKind};
use crate::store::migrate::{self, MigrateError};
use crate::store::{KeyFiles, PgStore, SledStore};

#[derive(Debug, Subcommand)]
pub(crate) enum StoreCommand {
    /// Move a stopped broker's embedded store into an empty PostgreSQL database: identities,
    /// VM records, credentials, revocations, signing keys and the audit chain (verified
    /// before and after). Run it before any replica starts on the database.
    Migrate {
        /// The stopped broker's configuration (`store = "sled"`).
        #[arg(long)]
        from: PathBuf,
        /// The replicas' configuration (`store = "postgres"`).
        #[arg(long)]
        to: PathBuf,
    },
}

fn usage(e: impl std::fmt::Display) -> Failure {
    Failure::Usage(e.to_string())
}

pub(crate) fn run(command: &StoreCommand) -> Result<String, Failure> {
    let StoreCommand::Migrate { from, to } = command;
    let from = Config::load(from).map_err(|e| usage(format!("--from: {e:#}")))?;
    let to = Config::load(to).map_err(|e| usage(format!("--to: {e:#}")))?;
    if from.store != StoreKind::Sled {
        return Err(usage("--from must configure store = \"sled\" (the store to move)"));
    }
    let Some(postgres) = to.postgres.as_ref().filter(|_| to.store == StoreKind::Postgres) else {
        return Err(usage("--to must configure store = \"postgres\" with a [postgres] section"));
    };
    if from.trust_domain != to.trust_domain {
        return Err(usage(format!(
            "trust domains differ ({} and {}): credentials issued before the move would not verify after it",
            from.trust_domain, to.trust_domain
        )));
    }
    let source = SledStore::open(&from.data_dir.join("store"), from.challenge.max_used)
        .map_err(|e| usage(format!("cannot open the store to move (is its broker still running?): {e}")))?;
    let keys = KeyFiles::new(&from.data_dir.join("keys"));
    let target = PgStore::connect(postgres).map_err(|e| usage(format!("--to: {e}")))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let moved = migrate::sled_to_postgres(&source, &keys, &target, now).map_err(|e| match e {
        MigrateError::SourceChain(_) => Failure::Rejected(e.to_string()),
        _ => usage(e),
    })?;
    let records: Vec<String> = moved.records.iter().map(|(what, count)| format!("{count} {what}")).collect();
    Ok(format!(
        "moved {}, {} signing key generations; audit chain intact in PostgreSQL: {} records, head {}",
        records.join(", "),
        moved.key_generations,
        moved.chain.records,
        moved.chain.head
    ))
}
