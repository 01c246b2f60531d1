//! The database schema, applied at start as numbered migrations.
//!
//! Every replica runs [`migrate`] when it starts; a transaction-scoped advisory lock makes
//! concurrent starts apply each migration once. A database migrated by a newer broker is
//! refused rather than used with a schema this one does not know.

use postgres::Client;

use super::{failed, read};
use crate::store::StoreError;

/// Advisory lock key taken while migrating ("mooring" in ASCII).
const MIGRATION_LOCK: i64 = 0x006d_6f6f_7269_6e67;

/// Migrations in order; a released one is never changed, only followed by another.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "
    CREATE TABLE challenges (
        id text PRIMARY KEY,
        record text NOT NULL,
        expires_at bigint NOT NULL,
        used boolean NOT NULL DEFAULT false
    );
    CREATE INDEX challenges_expires_at ON challenges (expires_at);
    CREATE TABLE identities (key text PRIMARY KEY, status text NOT NULL);
    CREATE TABLE vms (key text PRIMARY KEY, record text NOT NULL);
    CREATE TABLE credentials (serial text PRIMARY KEY, record text NOT NULL);
    CREATE TABLE revocations (key text PRIMARY KEY, record text NOT NULL);
    CREATE TABLE audit (seq bigint PRIMARY KEY, record text NOT NULL);
    CREATE TABLE audit_head (
        id smallint PRIMARY KEY CHECK (id = 1),
        seq bigint NOT NULL,
        hash bytea NOT NULL CHECK (length(hash) = 32)
    );
    INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));
    CREATE TABLE signing_keys (
        kid text PRIMARY KEY,
        created_at bigint NOT NULL,
        retire_at bigint NOT NULL,
        expire_at bigint NOT NULL,
        ca_der bytea NOT NULL,
        sealed_ca_key bytea NOT NULL,
        sealed_jwt_key bytea NOT NULL
    );
    ",
    ),
    (
        2,
        // Challenges are sealed into their ids: `begin` stores nothing, `finish` records the
        // id it used until the challenge expires.
        "
    DROP TABLE challenges;
    CREATE TABLE used_challenges (id text PRIMARY KEY, expires_at bigint NOT NULL);
    CREATE INDEX used_challenges_expires_at ON used_challenges (expires_at);
    ",
    ),
];

/// Brings the schema up to date.
pub(super) fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction().map_err(failed("starting the migration"))?;
    // Replicas starting together wait here for the one migrating, however long it takes.
    tx.batch_execute("SET LOCAL lock_timeout = 0").map_err(failed("starting the migration"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(failed("taking the migration lock"))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS mooring_schema (
            version integer PRIMARY KEY,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .map_err(failed("creating the schema version table"))?;
    let row = tx
        .query_one("SELECT coalesce(max(version), 0) FROM mooring_schema", &[])
        .map_err(failed("reading the schema version"))?;
    let current: i32 = read(&row, 0, "mooring_schema.version")?;
    let latest = MIGRATIONS.last().map_or(0, |(version, _)| *version);
    if current > latest {
        return Err(StoreError::Config(format!(
            "the database schema is at version {current}, newer than this broker knows ({latest}): upgrade the broker"
        )));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(version, _)| *version > current) {
        tx.batch_execute(sql).map_err(|e| StoreError::Backend(format!("schema migration {version}: {e}")))?;
        tx.execute("INSERT INTO mooring_schema (version) VALUES ($1)", &[version])
            .map_err(failed("recording the schema version"))?;
        tracing::info!(version, "applied a database schema migration");
    }
    tx.commit().map_err(failed("committing the migration"))
}
