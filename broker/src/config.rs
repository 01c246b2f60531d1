//! Broker configuration: one TOML file, unknown keys refused.
//!
//! ```toml
//! listen = "0.0.0.0:8443"
//! data_dir = "/var/lib/mooring"
//! trust_domain = "example.org"
//! policy = "/etc/mooring/policy.toml"
//! store = "sled"
//!
//! [tpm]
//! ek_roots = ["/etc/mooring/ek-roots"]
//! ```
//! Every other section is optional; see `policies/broker.example.toml`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use ipnet::IpNet;
use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    /// Address and port of the HTTPS listener.
    pub(crate) listen: SocketAddr,
    /// Holds the store, the signing keys and generated TLS material (created 0700).
    pub(crate) data_dir: PathBuf,
    /// SPIFFE trust domain of issued identities.
    pub(crate) trust_domain: String,
    /// The policy file.
    pub(crate) policy: PathBuf,
    /// Storage backend.
    #[serde(default)]
    pub(crate) store: StoreKind,
    /// Server certificate; generated under `data_dir/tls` when absent.
    #[serde(default)]
    pub(crate) tls: Option<TlsFiles>,
    #[serde(default)]
    pub(crate) admin: AdminConfig,
    #[serde(default)]
    pub(crate) tpm: TpmConfig,
    #[serde(default)]
    pub(crate) snp: SnpConfig,
    #[serde(default)]
    pub(crate) challenge: ChallengeConfig,
    #[serde(default)]
    pub(crate) limits: Limits,
    #[serde(default)]
    pub(crate) network: NetworkConfig,
    #[serde(default)]
    pub(crate) keys: KeyConfig,
    #[serde(default)]
    pub(crate) audit: AuditConfig,
    /// Connection to the shared database when `store = "postgres"`.
    #[serde(default)]
    pub(crate) postgres: Option<PostgresConfig>,
    /// The OpenID Connect issuer view and token exchange; none: neither.
    #[serde(default)]
    pub(crate) federation: Option<FederationConfig>,
}

/// `[federation]`: the broker as an OpenID Connect issuer. Relying parties (cloud IAM,
/// Vault) fetch `ISSUER/.well-known/openid-configuration` and the JWK Set it names,
/// anonymously over TLS they trust (public CAs). The API listener serves both; `listen`
/// serves them, and nothing else, on a listener of its own with its own certificate (a
/// public CA's), asking for no client certificate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FederationConfig {
    /// `https://HOST[:PORT]`, exactly as the tokens' `iss` and the relying parties'
    /// configuration say it; no path (the documents are served at the root).
    pub(crate) issuer: String,
    /// Address of the issuer's own listener.
    #[serde(default)]
    pub(crate) listen: Option<SocketAddr>,
    /// Its certificate chain (PEM, leaf first), e.g. from a public ACME CA.
    #[serde(default)]
    pub(crate) certificate: Option<PathBuf>,
    /// Its private key (PEM, PKCS#8).
    #[serde(default)]
    pub(crate) private_key: Option<PathBuf>,
}

impl FederationConfig {
    /// Where the JWK Set is (`jwks_uri`).
    pub(crate) fn jwks_uri(&self) -> String {
        format!("{}{}", self.issuer, mooring_attestation::protocol::OIDC_JWKS_PATH)
    }

    /// The issuer's listener, certificate and key, when it has a listener of its own.
    pub(crate) fn own_listener(&self) -> Option<(SocketAddr, &PathBuf, &PathBuf)> {
        match (self.listen, &self.certificate, &self.private_key) {
            (Some(listen), Some(certificate), Some(key)) => Some((listen, certificate, key)),
            _ => None,
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        let issuer = &self.issuer;
        let url =
            url::Url::parse(issuer).map_err(|e| anyhow::anyhow!("federation.issuer {issuer:?}: {e}"))?;
        anyhow::ensure!(
            url.scheme() == "https",
            "federation.issuer {issuer:?}: relying parties fetch the issuer's documents over https only"
        );
        anyhow::ensure!(
            url.username().is_empty()
                && url.password().is_none()
                && url.path() == "/"
                && url.query().is_none()
                && url.fragment().is_none(),
            "federation.issuer {issuer:?}: https://HOST[:PORT] only, without user, path, query or fragment \
             (the broker serves .well-known/openid-configuration at the root)"
        );
        let canonical = url.as_str().trim_end_matches('/');
        anyhow::ensure!(
            canonical == issuer,
            "federation.issuer {issuer:?}: write it as {canonical:?}; relying parties compare it byte for byte"
        );
        match (self.listen, &self.certificate, &self.private_key) {
            (Some(_), Some(_), Some(_)) | (None, None, None) => Ok(()),
            (Some(_), _, _) => anyhow::bail!(
                "federation.listen needs federation.certificate and federation.private_key (a certificate \
                 relying parties trust, e.g. from a public CA)"
            ),
            (None, _, _) => anyhow::bail!(
                "federation.certificate and federation.private_key are for federation.listen, which is not set"
            ),
        }
    }
}

/// Which `Store` implementation holds the broker's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StoreKind {
    /// Embedded sled database in `data_dir/store` (one broker process).
    #[default]
    Sled,
    /// A PostgreSQL database shared by several broker replicas (`[postgres]`).
    Postgres,
}

/// The shared PostgreSQL database (`store = "postgres"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PostgresConfig {
    /// libpq key/value string or `postgresql://` URL, without a password, e.g.
    /// `host=/run/postgresql dbname=mooring user=mooring`.
    pub(crate) url: String,
    /// File whose first line is the password.
    #[serde(default)]
    pub(crate) password_file: Option<PathBuf>,
    /// Environment variable holding the password (instead of `password_file`).
    #[serde(default)]
    pub(crate) password_env: Option<String>,
    /// Connections each replica keeps at most.
    #[serde(default = "default_pool_size")]
    pub(crate) pool_size: u32,
    /// File holding 32 random bytes as 64 hex digits: encrypts the signing keys stored in
    /// the database (AES-256-GCM). Every replica gets the same file.
    pub(crate) key_encryption_key_file: PathBuf,
    /// How the link to the server is protected. Default: `off` when every host of `url` is
    /// a Unix socket or a loopback address, `verify-full` otherwise.
    #[serde(default)]
    pub(crate) tls: Option<PostgresTls>,
    /// PEM CA certificate(s) the server's certificate must chain to (`tls = "verify-full"`).
    #[serde(default)]
    pub(crate) ca_file: Option<PathBuf>,
    /// Lets `tls = "off"` reach a host that is not this machine: only over a link protected
    /// otherwise (WireGuard, IPsec), as anyone on the path reads and changes plaintext.
    #[serde(default)]
    pub(crate) allow_plaintext: bool,
}

/// TLS to PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum PostgresTls {
    /// TLS required; the server's certificate must chain to `ca_file` and name the host
    /// (libpq's `sslmode=verify-full`).
    VerifyFull,
    /// No TLS (libpq's `sslmode=disable`).
    Off,
}

fn default_pool_size() -> u32 {
    8
}

/// A configured server certificate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsFiles {
    /// PEM chain, leaf first.
    pub(crate) certificate: PathBuf,
    /// PEM PKCS#8 private key.
    pub(crate) private_key: PathBuf,
}

/// Who may call the admin API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdminConfig {
    /// PEM CA certificates that issue admin client certificates; when absent the broker
    /// generates an admin CA and one admin client certificate under `data_dir/tls`.
    pub(crate) client_ca: Option<PathBuf>,
    /// Attestations kept in memory (the newest; only evidence that passed the live checks)
    /// for `POST /v1/admin/policy/dry-run`; 0 keeps none. At most 1024.
    #[serde(default = "default_dry_run_recent")]
    pub(crate) dry_run_recent: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self { client_ca: None, dry_run_recent: default_dry_run_recent() }
    }
}

fn default_dry_run_recent() -> usize {
    64
}

/// TPM evidence settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TpmConfig {
    /// Files or directories of PEM/DER certificates: TPM manufacturer EK roots (and
    /// intermediates). An EK certificate must chain to one of them.
    #[serde(default)]
    pub(crate) ek_roots: Vec<PathBuf>,
    /// Block a TPM whose clock information shows two machines running its state (a cloned
    /// vTPM), until an administrator enrolls it again; off: refuse the attestation only.
    #[serde(default = "default_true")]
    pub(crate) block_clones: bool,
}

fn default_true() -> bool {
    true
}

impl Default for TpmConfig {
    fn default() -> Self {
        Self { ek_roots: Vec::new(), block_clones: true }
    }
}

/// SEV-SNP evidence settings. AMD's ARK/ASK/ASVK for Milan, Genoa and Turin are built
/// in and pinned; reports are verified with the VCEK/VLEK from the client's extended-report
/// certificate table, or else with one provisioned in `vcek_dir`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SnpConfig {
    /// Directory of operator-provisioned VCEK/VLEK certificates, PEM or DER, e.g. fetched
    /// from AMD's KDS ahead of time (the broker never fetches at verification time).
    pub(crate) vcek_dir: Option<PathBuf>,
    /// Non-AMD root sets to trust as well. Only for the test signer; never in production.
    /// Credentials issued through one say so in the audit log (`root: test`).
    #[serde(default)]
    pub(crate) test_roots: Vec<SnpTestRoot>,
}

/// A non-AMD ARK/ASK(/ASVK) set for one product.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SnpTestRoot {
    /// `milan`, `genoa` or `turin`.
    pub(crate) product: SnpProduct,
    pub(crate) ark: PathBuf,
    pub(crate) ask: PathBuf,
    #[serde(default)]
    pub(crate) asvk: Option<PathBuf>,
}

/// An SEV-SNP product line.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SnpProduct {
    Milan,
    Genoa,
    Turin,
}

impl From<SnpProduct> for mooring_attestation::snp::Product {
    fn from(product: SnpProduct) -> Self {
        match product {
            SnpProduct::Milan => Self::Milan,
            SnpProduct::Genoa => Self::Genoa,
            SnpProduct::Turin => Self::Turin,
        }
    }
}

/// Challenge lifetime and bounds. `begin` stores nothing (the challenge is sealed into its
/// id); only finished challenges are remembered, until they expire.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ChallengeConfig {
    /// Seconds between `begin` and the last accepted `finish`.
    pub(crate) ttl_seconds: u32,
    /// Most finished, unexpired challenges the embedded store remembers (in memory, about
    /// 100 bytes each); a `finish` beyond it answers `overloaded`. One million covers
    /// 16,000 attestations a second for the default TTL.
    pub(crate) max_used: usize,
}

impl Default for ChallengeConfig {
    fn default() -> Self {
        Self { ttl_seconds: 60, max_used: 1_000_000 }
    }
}

/// The audit log.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct AuditConfig {
    /// Refusals of requests that proved no identity (malformed bodies, unknown challenges,
    /// evidence that does not verify) are counted per source prefix and written as one
    /// record this often, instead of one record each.
    pub(crate) summary_seconds: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self { summary_seconds: 60 }
    }
}

/// Resource limits on the API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Limits {
    /// Largest request body accepted.
    pub(crate) max_body_bytes: usize,
    /// Sustained requests per second per source address.
    pub(crate) requests_per_second: u32,
    /// Burst allowance per source address.
    pub(crate) burst: u32,
    /// Requests handled at once; more wait.
    pub(crate) max_concurrent_requests: usize,
    /// Deadline of one request, including reading its body.
    pub(crate) request_timeout_seconds: u32,
    /// Deadline for reading a request body, before any request slot is taken.
    #[serde(default = "default_body_timeout")]
    pub(crate) body_timeout_seconds: u32,
    /// Slowest body accepted after its first second: a client that sends less is cut off.
    #[serde(default = "default_min_body_rate")]
    pub(crate) min_body_bytes_per_second: u32,
    /// Longest wait for a request slot; then `503 overloaded` at once.
    #[serde(default = "default_slot_wait")]
    pub(crate) slot_wait_ms: u32,
    /// Threads that run verification and store calls; unset: see
    /// [`Config::service_threads`].
    #[serde(default)]
    pub(crate) service_threads: Option<usize>,
    /// Bytes of admitted event logs kept for VMs that name theirs by digest (0: none).
    #[serde(default = "default_known_event_log_bytes")]
    pub(crate) known_event_log_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 256 * 1024,
            requests_per_second: 50,
            burst: 100,
            max_concurrent_requests: 1024,
            request_timeout_seconds: 30,
            body_timeout_seconds: default_body_timeout(),
            min_body_bytes_per_second: default_min_body_rate(),
            slot_wait_ms: default_slot_wait(),
            service_threads: None,
            known_event_log_bytes: default_known_event_log_bytes(),
        }
    }
}

fn default_body_timeout() -> u32 {
    10
}

fn default_min_body_rate() -> u32 {
    4096
}

fn default_slot_wait() -> u32 {
    2000
}

/// 16 MiB: some 350 logs of 45 KB (a UEFI boot of a common distribution).
fn default_known_event_log_bytes() -> usize {
    16 * 1024 * 1024
}

/// Where client addresses come from.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NetworkConfig {
    /// Direct peers allowed to state the client address in `X-Forwarded-For` (the last
    /// entry, the one they appended, is used). A header from any other peer is ignored.
    #[serde(default)]
    pub(crate) trusted_proxies: Vec<IpNet>,
}

impl NetworkConfig {
    /// Whether `peer` may forward a client address.
    pub(crate) fn is_trusted_proxy(&self, peer: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&peer))
    }
}

/// Credential signing keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyConfig {
    /// A new signing key (JWT and X.509 CA) is made when the current one is this old.
    pub(crate) rotate_after_hours: u32,
}

impl Default for KeyConfig {
    fn default() -> Self {
        Self { rotate_after_hours: 24 }
    }
}

impl Config {
    /// Threads that run verification and store calls (`limits.service_threads`). The work
    /// is CPU-bound with sled (writes return at once, the flush is awaited off-thread), so
    /// one per core: more only add scheduling (measured: 500 threads on 2 cores cost a
    /// fifth of the throughput, 2 to 4 threads the same). With PostgreSQL a thread waits a
    /// round trip per call, so there is one per pooled connection on top (measured with
    /// two replicas: one per pooled connection alone, so that none waits for a connection,
    /// cost throughput and saved no CPU).
    pub(crate) fn service_threads(&self) -> usize {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        self.limits.service_threads.unwrap_or(match (&self.store, &self.postgres) {
            (StoreKind::Postgres, Some(postgres)) => {
                cores.max(usize::try_from(postgres.pool_size).unwrap_or(usize::MAX))
            }
            _ => cores,
        })
    }
}

impl mooring_serve::ConfigFile for Config {
    fn paths(&mut self) -> Vec<&mut PathBuf> {
        let mut paths = vec![&mut self.data_dir, &mut self.policy];
        if let Some(postgres) = &mut self.postgres {
            paths.extend(postgres.password_file.as_mut());
            paths.extend(postgres.ca_file.as_mut());
            paths.push(&mut postgres.key_encryption_key_file);
        }
        if let Some(tls) = &mut self.tls {
            paths.extend([&mut tls.certificate, &mut tls.private_key]);
        }
        paths.extend(self.admin.client_ca.as_mut());
        if let Some(federation) = &mut self.federation {
            paths.extend(federation.certificate.as_mut());
            paths.extend(federation.private_key.as_mut());
        }
        paths.extend(self.tpm.ek_roots.iter_mut());
        paths.extend(self.snp.vcek_dir.as_mut());
        for root in &mut self.snp.test_roots {
            paths.extend([&mut root.ark, &mut root.ask]);
            paths.extend(root.asvk.as_mut());
        }
        paths
    }

    fn check(&self) -> anyhow::Result<()> {
        let domain = &self.trust_domain;
        let valid = !domain.is_empty()
            && domain.len() <= 255
            && domain.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
        anyhow::ensure!(valid, "trust_domain {domain:?}: lowercase letters, digits, '-', '.', '_' only");
        anyhow::ensure!(self.challenge.ttl_seconds > 0, "challenge.ttl_seconds must be positive");
        anyhow::ensure!(self.audit.summary_seconds > 0, "audit.summary_seconds must be positive");
        anyhow::ensure!(self.challenge.max_used > 0, "challenge.max_used must be positive");
        anyhow::ensure!(self.limits.max_body_bytes >= 1024, "limits.max_body_bytes below 1024");
        anyhow::ensure!(self.limits.requests_per_second > 0, "limits.requests_per_second must be positive");
        anyhow::ensure!(
            self.limits.max_concurrent_requests > 0,
            "limits.max_concurrent_requests must be positive"
        );
        anyhow::ensure!(self.limits.service_threads != Some(0), "limits.service_threads must be positive");
        anyhow::ensure!(self.keys.rotate_after_hours > 0, "keys.rotate_after_hours must be positive");
        anyhow::ensure!(self.admin.dry_run_recent <= 1024, "admin.dry_run_recent is at most 1024");
        match (&self.store, &self.postgres) {
            (StoreKind::Postgres, None) => anyhow::bail!("store = \"postgres\" needs a [postgres] section"),
            (StoreKind::Sled, Some(_)) => anyhow::bail!("[postgres] is set but store is \"sled\""),
            (StoreKind::Postgres, Some(postgres)) => {
                anyhow::ensure!(postgres.pool_size > 0, "postgres.pool_size must be positive");
                anyhow::ensure!(
                    postgres.password_file.is_none() || postgres.password_env.is_none(),
                    "postgres: set password_file or password_env, not both"
                );
            }
            (StoreKind::Sled, None) => {}
        }
        if let Some(federation) = &self.federation {
            federation.check()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use mooring_serve::ConfigFile as _;

    /// The example every operator starts from names only keys that exist, with values that
    /// pass the checks.
    #[test]
    fn the_example_configuration_loads() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/broker.example.toml");
        let config = super::Config::load(&path).unwrap();
        assert_eq!(config.challenge.max_used, 1_000_000);
        assert_eq!(config.limits.slot_wait_ms, 2000);
        assert_eq!(config.audit.summary_seconds, 60);
    }

    /// `[federation]`: the issuer is the exact https origin relying parties compare `iss`
    /// with, and its own listener comes with its own certificate.
    #[test]
    fn the_federation_issuer_is_an_exact_https_origin() {
        let check = |section: &str| toml::from_str::<super::FederationConfig>(section).unwrap().check();
        check("issuer = \"https://id.example.org\"").unwrap();
        check("issuer = \"https://id.example.org:8444\"").unwrap();
        check(
            "issuer = \"https://id.example.org\"\nlisten = \"0.0.0.0:443\"\ncertificate = \"c.pem\"\n\
             private_key = \"k.pem\"",
        )
        .unwrap();
        for (section, says) in [
            ("issuer = \"http://id.example.org\"", "over https only"),
            ("issuer = \"https://id.example.org/\"", "write it as \"https://id.example.org\""),
            ("issuer = \"https://ID.example.org\"", "write it as \"https://id.example.org\""),
            ("issuer = \"https://id.example.org:443\"", "write it as \"https://id.example.org\""),
            ("issuer = \"https://id.example.org/mooring\"", "without user, path"),
            ("issuer = \"https://id.example.org?x=1\"", "without user, path"),
            ("issuer = \"https://u@id.example.org\"", "without user, path"),
            ("issuer = \"id.example.org\"", "relative URL"),
            ("issuer = \"https://id.example.org\"\nlisten = \"0.0.0.0:443\"", "needs federation.certificate"),
            ("issuer = \"https://id.example.org\"\ncertificate = \"c.pem\"", "which is not set"),
        ] {
            let e = check(section).unwrap_err().to_string();
            assert!(e.contains(says), "{section}: {e}");
        }
    }

    /// The example's commented `[federation]` section, switched on, names only keys that
    /// exist, with values that pass the checks.
    #[test]
    fn the_example_federation_section_parses() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/broker.example.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let section = text.split("# [federation]").nth(1).unwrap().split("# [postgres]").next().unwrap();
        let keys: String = section
            .lines()
            .filter_map(|line| line.strip_prefix("# "))
            .filter(|line| line.split_once(" = ").is_some_and(|(key, _)| !key.contains(' ')))
            .map(|line| format!("{line}\n"))
            .collect();
        let federation: super::FederationConfig = toml::from_str(&keys).unwrap();
        federation.check().unwrap();
        assert!(federation.own_listener().is_some());
        assert_eq!(federation.jwks_uri(), "https://mooring-id.example.org/.well-known/jwks.json");
    }

    /// The example's commented `[postgres]` section, switched on, names only keys that
    /// exist.
    #[test]
    fn the_example_postgres_section_parses() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/broker.example.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let section = text.split("# [postgres]").nth(1).unwrap();
        let keys: String = section
            .lines()
            .filter_map(|line| line.strip_prefix("# "))
            .filter(|line| line.split_once(" = ").is_some_and(|(key, _)| !key.contains(' ')))
            .map(|line| format!("{line}\n"))
            .collect();
        let postgres: super::PostgresConfig = toml::from_str(&keys).unwrap();
        assert_eq!(postgres.tls, Some(super::PostgresTls::VerifyFull));
        assert!(postgres.ca_file.is_some() && !postgres.allow_plaintext);
        assert!(postgres.password_file.is_some() && postgres.password_env.is_some());
    }
}
