//! Connections to the database: how they are opened (settings, TLS) and used (each keeps
//! its prepared statements, so a query is one round trip, not a prepare and an execute).

use std::collections::HashMap;
use std::time::Duration;

use postgres::types::ToSql;
use postgres::{Client, Row, Statement};

use super::tls::Tls;
use crate::store::StoreError;

/// How long a request waits for a pooled connection, and a new connection for the server.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Parameters of a query.
pub(super) type Params<'a> = [&'a (dyn ToSql + Sync)];

/// One open connection and the statements prepared on it.
pub(crate) struct Connection {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

impl Connection {
    fn new(client: Client) -> Self {
        Self { client, statements: HashMap::new() }
    }

    /// `sql`, prepared on this connection the first time it is used.
    fn statement(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    pub(super) fn query(
        &mut self,
        sql: &'static str,
        params: &Params<'_>,
    ) -> Result<Vec<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.query(&statement, params)
    }

    pub(super) fn query_opt(
        &mut self,
        sql: &'static str,
        params: &Params<'_>,
    ) -> Result<Option<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.query_opt(&statement, params)
    }

    pub(super) fn query_one(
        &mut self,
        sql: &'static str,
        params: &Params<'_>,
    ) -> Result<Row, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.query_one(&statement, params)
    }

    pub(super) fn execute(&mut self, sql: &'static str, params: &Params<'_>) -> Result<u64, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.execute(&statement, params)
    }

    /// The client itself: transactions, simple queries.
    pub(super) fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    pub(super) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

/// Opens connections with the configured settings; also the pool's connection manager.
#[derive(Clone)]
pub(super) struct Connector {
    config: tokio_postgres::Config,
    tls: Tls,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The configuration holds the password.
        f.debug_struct("Connector").field("tls", &self.tls).finish_non_exhaustive()
    }
}

impl Connector {
    pub(super) fn new(config: tokio_postgres::Config, tls: Tls) -> Self {
        Self { config, tls }
    }

    pub(super) fn open(&self) -> Result<Connection, postgres::Error> {
        postgres::Config::from(self.config.clone()).connect(self.tls.clone()).map(Connection::new)
    }

    /// An asynchronous client driven by `runtime` (its connection runs while the runtime
    /// does), for requests sent without waiting for each answer.
    pub(super) fn open_async(
        &self,
        runtime: &tokio::runtime::Runtime,
    ) -> Result<tokio_postgres::Client, StoreError> {
        let (client, connection) = runtime
            .block_on(self.config.connect(self.tls.clone()))
            .map_err(|e| StoreError::Backend(format!("connecting to PostgreSQL: {}", describe(&e))))?;
        runtime.spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!("the database connection of the group commit ended: {}", describe(&e));
            }
        });
        Ok(client)
    }

    /// Opens a connection, saying what the server (or TLS) refused.
    pub(super) fn open_for(&self, what: &str) -> Result<Connection, StoreError> {
        self.open()
            .map_err(|e| StoreError::Backend(format!("{what}: connecting to PostgreSQL: {}", describe(&e))))
    }
}

/// A database error with its cause (`postgres::Error` shows only "error performing TLS
/// handshake" or "db error" on its own), and what to check when TLS refused the server.
pub(super) fn describe(error: &postgres::Error) -> String {
    let mut text = error.to_string();
    let mut refused_certificate = false;
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        refused_certificate |=
            matches!(cause.downcast_ref::<rustls::Error>(), Some(rustls::Error::InvalidCertificate(_)))
                || cause
                    .downcast_ref::<std::io::Error>()
                    .and_then(|io| io.get_ref())
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                    .is_some_and(|e| matches!(e, rustls::Error::InvalidCertificate(_)));
        source = cause.source();
    }
    if refused_certificate {
        text.push_str(
            " (the server's certificate must chain to postgres.ca_file and name the host postgres.url \
             connects to)",
        );
    }
    text
}

impl r2d2::ManageConnection for Connector {
    type Connection = Connection;
    type Error = postgres::Error;

    fn connect(&self) -> Result<Connection, postgres::Error> {
        self.open()
    }

    fn is_valid(&self, connection: &mut Connection) -> Result<(), postgres::Error> {
        connection.client.simple_query("").map(drop)
    }

    fn has_broken(&self, connection: &mut Connection) -> bool {
        connection.is_closed()
    }
}
