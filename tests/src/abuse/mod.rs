//! Abuse traffic against a real broker, for the abuse tests (`tests/tests/abuse.rs`) and
//! the benchmark's abuse mode (`mooring-load --abuse`): a flood of malformed, oversized
//! and unknown-challenge requests; slow-body connections that announce a large body and
//! send it a byte at a time; a flood of `begin` calls. Each runs on one thread of its own
//! (an async runtime, so a thousand connections cost no thousand threads) from many
//! loopback source addresses, until told to stop or its request budget is spent, and
//! reports what the broker answered.

mod background;
mod bodies;
mod flood;
mod host;
mod report;
mod slow;
mod wire;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::Context as _;

pub use self::background::Background;
pub use self::host::{dir_size, raise_fd_limit, DirSize};
pub use self::report::Report;
pub use self::wire::Endpoint;

/// Length the slow bodies announce (below the broker's default `max_body_bytes`, so it
/// waits for all of it).
pub const SLOW_BODY_BYTES: usize = 200 * 1024;
/// How long tasks may take to notice a stop before they are aborted.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Pause after a failed connection, so a refusing broker is not spun against.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// One kind of abuse.
#[derive(Debug, Clone)]
pub enum Abuse {
    /// Malformed JSON, `{"<200 KB key>":1}` and 200 KB strings serde would echo in its
    /// error, bodies over `max_body_bytes`, junk EK certificates, credentials the broker
    /// never issued, and `finish` calls naming unknown challenges; `connections` keep-alive
    /// connections from each source, `requests` in all (none: until stopped).
    Malformed { sources: Vec<IpAddr>, connections: usize, requests: Option<u64> },
    /// `connections` connections spread over `sources`, each announcing a
    /// [`SLOW_BODY_BYTES`] body and sending it one byte every `byte_interval`; when the
    /// broker cuts one off, it connects again.
    SlowBodies { sources: Vec<IpAddr>, connections: usize, byte_interval: Duration },
    /// One keep-alive connection per source, each sending `POST /v1/snp/begin` and
    /// `POST /v1/tpm/begin` with junk keys, one after another, as fast as answered.
    BeginFlood { sources: Vec<IpAddr> },
}

impl Abuse {
    /// Its name in reports.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Malformed { .. } => "malformed",
            Self::SlowBodies { .. } => "slow-bodies",
            Self::BeginFlood { .. } => "begin-flood",
        }
    }
}

/// `count` source addresses `127.0.subnet.1`, `127.0.subnet.2`, ... (at most 254).
#[must_use]
pub fn sources(subnet: u8, count: u8) -> Vec<IpAddr> {
    (1..=count.min(254)).map(|host| IpAddr::V4(Ipv4Addr::new(127, 0, subnet, host))).collect()
}

/// `count` source addresses each in a /24 of its own (`127.1.1.1`, `127.1.2.1`, ...), so
/// the broker's refusal summaries have as many prefixes to name as they can: their
/// longest records.
#[must_use]
pub fn spread_sources(count: u8) -> Vec<IpAddr> {
    (1..=count.min(254)).map(|net| IpAddr::V4(Ipv4Addr::new(127, 1, net, 1))).collect()
}

/// Sends `GET /v1/health` from `source` on a fresh connection; its status and how long
/// it took, connection and TLS handshake included.
///
/// # Errors
/// When the broker cannot be reached or does not answer.
pub fn health(endpoint: &Endpoint, source: IpAddr) -> anyhow::Result<(u16, Duration)> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let started = Instant::now();
        let mut stream = endpoint.connect(source).await.context("connecting for /v1/health")?;
        wire::send(&mut stream, &wire::get_head("/v1/health"), &[]).await?;
        let answer = wire::read_answer(&mut stream).await.context("answer to /v1/health")?;
        Ok((answer.status, started.elapsed()))
    })
}
