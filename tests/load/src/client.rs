//! HTTPS to the broker: one client per source address and broker (keep-alive
//! connections pooled and reused), JSON in and out, failures named for counting.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use mooring_attestation::protocol::{ErrorBody, API_PREFIX};
use serde::de::DeserializeOwned;

use super::target::Target;

/// Deadline of one request (the broker's own is 30 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Why one attestation failed; its `Display` is the key errors are counted under.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Connection, TLS or timeout.
    Transport { route: &'static str, reason: String },
    /// A non-200 answer with the broker's refusal code.
    Refused { route: &'static str, status: u16, code: String },
    /// A 200 answer that is not the expected JSON.
    Decode { route: &'static str, reason: String },
    /// The simulated VM could not answer the challenge.
    Vm(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Transport { route, reason } => write!(f, "{route}: transport: {reason}"),
            Self::Refused { route, status, code } => write!(f, "{route}: {status} {code}"),
            Self::Decode { route, reason } => write!(f, "{route}: bad answer: {reason}"),
            Self::Vm(reason) => write!(f, "vm: {reason}"),
        }
    }
}

/// A broker as seen from one source address.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    client: reqwest::Client,
    base: String,
}

/// The source address of client `n`: 127.0.0.2, 127.0.0.3, ...
fn source(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n.saturating_add(2)))
}

/// A runtime of `threads` workers and, made inside it, [`endpoints`].
pub(crate) fn connect(
    target: &Target,
    sources: u8,
    threads: usize,
) -> anyhow::Result<(tokio::runtime::Runtime, Arc<Vec<Endpoint>>)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let endpoints = {
        let _guard = runtime.enter();
        Arc::new(endpoints(target, sources)?)
    };
    Ok((runtime, endpoints))
}

/// One endpoint per (source, broker), sources outermost so consecutive workers differ in both.
fn endpoints(target: &Target, sources: u8) -> anyhow::Result<Vec<Endpoint>> {
    let ca = reqwest::Certificate::from_pem(&target.ca_pem).context("the broker CA certificate")?;
    let mut out = Vec::new();
    for n in 0..sources.max(1) {
        for base in &target.urls {
            let url = reqwest::Url::parse(base).with_context(|| format!("broker URL {base:?}"))?;
            let mut builder = reqwest::Client::builder()
                .tls_certs_only([ca.clone()])
                .local_address(source(n))
                .pool_max_idle_per_host(usize::MAX)
                .pool_idle_timeout(None)
                .tcp_nodelay(true)
                .timeout(REQUEST_TIMEOUT);
            if url.host_str() == Some("localhost") {
                // Never ::1: the source addresses are IPv4 loopback.
                let port = url.port_or_known_default().unwrap_or(443);
                builder = builder.resolve("localhost", SocketAddr::from(([127, 0, 0, 1], port)));
            }
            let client = builder.build().context("building the HTTPS client")?;
            out.push(Endpoint { client, base: format!("{base}{API_PREFIX}") });
        }
    }
    Ok(out)
}

impl Endpoint {
    /// POSTs `body` (JSON) to `route` and decodes a 200 answer.
    pub(crate) async fn post<T: DeserializeOwned>(
        &self,
        route: &'static str,
        body: Vec<u8>,
    ) -> Result<T, Failure> {
        let transport = |e: reqwest::Error| Failure::Transport { route, reason: e.to_string() };
        let response = self
            .client
            .post(format!("{}/{route}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(transport)?;
        if status != 200 {
            let code = serde_json::from_slice::<ErrorBody>(&bytes)
                .map_or_else(|_| "unknown".to_owned(), |e| e.code.to_string());
            return Err(Failure::Refused { route, status, code });
        }
        serde_json::from_slice(&bytes).map_err(|e| Failure::Decode { route, reason: e.to_string() })
    }
}
