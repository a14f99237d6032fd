//! Server configuration: command-line flags over an optional TOML file over defaults.
//!
//! ```toml
//! listen = "127.0.0.1:50051"
//! data_dir = "./mapreg-data"
//! store = "sled"            # or "etcd://HOST:PORT[,HOST:PORT...][/PREFIX]" (SPEC.md 8.2)
//! store_wait_seconds = 60   # etcd: how long `serve` waits for an unreachable store at start
//! max_multi_level_mappings_per_domain = 200
//! watch_history = 100000
//! advertise_url = "http://10.0.0.5:50051"  # several nodes on etcd: where the others reach this one
//!
//! [[tokens]]
//! # sha256 of the bearer token, hex: `printf %s "$TOKEN" | sha256sum`
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! account_id = "111122223333"
//! role = "admin"            # admin | reader | gateway
//! name = "deploy-pipeline"  # optional: the principal in logs and the change log's audit
//!
//! # TLS (SPEC.md 8.6); the flags --tls-cert, --tls-key, --tls-client-ca override these.
//! tls_cert = "/etc/mapreg/server.pem"
//! tls_key = "/etc/mapreg/server.key"
//! tls_client_ca = "/etc/mapreg/clients-ca.pem"   # clients must present a certificate it signed
//!
//! [[clients]]
//! subject = "gw-eu-1"       # the certificate's subject CN or a DNS SAN
//! account_id = "999999999999"
//! role = "gateway"
//!
//! [[access_keys]]            # AWS SigV4 keys for the REST edge (aws CLI, boto3, SDKs)
//! access_key_id = "AKIAMAPREGEXAMPLE01"
//! secret_access_key = "..." # the secret itself (SigV4 is an HMAC): protect this file
//! account_id = "111122223333"
//! role = "admin"
//! name = "deploy-pipeline"  # optional, for logs
//! ```
//!
//! Tokens, clients and certificate files are read again on SIGHUP (see `server`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

// `[[tokens]]` entries are defined in `auth` (which must not depend on `config`) and
// re-exported here, so `config::TokenConfig` keeps naming them.
pub use crate::auth::{AccessKeyConfig, ClientCertConfig, TokenConfig};

/// Default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "./mapreg-data";
/// Default change-log window, in revisions.
pub const DEFAULT_WATCH_HISTORY: u64 = 100_000;
/// Default limit of open connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default time a connection may take to send its first request, in milliseconds.
pub const DEFAULT_FIRST_REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Default time `serve` waits at start for an etcd store it cannot reach, in seconds.
pub const DEFAULT_STORE_WAIT_SECONDS: u64 = 60;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its line.
        source: toml::de::Error,
    },
    /// A value is out of its range.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// Which storage engine a server runs on (`--store`, `MAPREG_STORE`, `store =`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum Store {
    /// The embedded sled engine in the data dir.
    #[default]
    Sled,
    /// An etcd cluster under a key prefix; no data dir is used.
    Etcd(crate::store::etcd::EtcdUrl),
}

/// Why a `--store` value is neither `sled` nor a valid `etcd://` URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreParseError {
    /// Neither `sled` nor an `etcd://` URL.
    #[error("invalid store {0:?}: expected sled or etcd://HOST:PORT[,HOST:PORT...][/PREFIX]")]
    Unknown(String),
    /// An `etcd://` URL that does not parse; says what is wrong.
    #[error(transparent)]
    Etcd(#[from] crate::store::etcd::EtcdUrlError),
}

impl std::str::FromStr for Store {
    type Err = StoreParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "sled" {
            Ok(Store::Sled)
        } else if s.starts_with("etcd://") {
            Ok(Store::Etcd(crate::store::etcd::EtcdUrl::parse(s)?))
        } else {
            Err(StoreParseError::Unknown(s.to_string()))
        }
    }
}

impl TryFrom<String> for Store {
    type Error = StoreParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl std::fmt::Display for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Store::Sled => f.write_str("sled"),
            Store::Etcd(url) => url.fmt(f),
        }
    }
}

/// The whole configuration of a server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Directory of the sled database.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Where the registry is stored: sled in `data_dir` (the default), or an etcd cluster
    /// several nodes share.
    #[serde(default)]
    pub store: Store,
    /// On etcd: how long a starting server waits for a store it cannot reach (etcd not up yet,
    /// no quorum yet), trying again with backoff, before it gives up and exits. 0: one try.
    #[serde(default = "default_store_wait_seconds")]
    pub store_wait_seconds: u64,
    /// Rule 4's per-domain quota of multi-level mappings.
    #[serde(default = "default_multi_level")]
    pub max_multi_level_mappings_per_domain: u64,
    /// How many revisions the change log keeps.
    #[serde(default = "default_watch_history")]
    pub watch_history: u64,
    /// Accepted tokens. None, and no clients: dev mode (every caller is admin of
    /// 000000000000, loopback only).
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// Accepted client certificates, by subject (needs `tls_client_ca`).
    #[serde(default)]
    pub clients: Vec<ClientCertConfig>,
    /// The server's certificate chain (PEM); with `tls_key`, the server speaks TLS only.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert` (PEM).
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM): clients must present a certificate one of them signed.
    #[serde(default)]
    pub tls_client_ca: Option<PathBuf>,
    /// Allows listening on a non-loopback address without TLS (e.g. behind a proxy that
    /// terminates TLS).
    #[serde(default)]
    pub insecure_plaintext: bool,
    /// Most connections open at once; more are closed as soon as accepted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A connection that has not sent a complete request (TLS handshake included) this many
    /// milliseconds after it was accepted is closed.
    #[serde(default = "default_first_request_timeout_ms")]
    pub first_request_timeout_ms: u64,
    /// Accepted AWS access keys (SigV4, REST edge). Tokens and keys both empty: dev mode.
    #[serde(default)]
    pub access_keys: Vec<AccessKeyConfig>,
    /// Start even if the store is behind its high-water mark or has another history (a copy
    /// restored on purpose); the mark is then reset to the store.
    #[serde(default)]
    pub accept_rollback: bool,
    /// Encoded bytes one Watch stream may hold queued for a slow client (snapshot included).
    #[serde(default = "default_watch_buffer_bytes")]
    pub watch_buffer_bytes: usize,
    /// Watch streams one principal (token, certificate, access key; dev mode is one) may hold.
    #[serde(default = "default_max_watches_per_principal")]
    pub max_watches_per_principal: usize,
    /// Where `/metrics` is served (Prometheus), on its own listener; None: not served.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// A gateway not heard from for this many seconds leaves `GetGateways` (default 300).
    #[serde(default = "default_gateway_expiry_seconds")]
    pub gateway_expiry_seconds: u64,
    /// The URL the other nodes of a shared store reach this one at, when it is their elected
    /// writer (`http://HOST:PORT` or `https://...`). None: the listen address (none when
    /// listening on every interface: the node then never becomes the writer).
    #[serde(default)]
    pub advertise_url: Option<String>,
}

fn default_watch_buffer_bytes() -> usize {
    crate::feed::watch::DEFAULT_BUFFER_BYTES
}
fn default_max_watches_per_principal() -> usize {
    crate::api::change_feed::DEFAULT_MAX_WATCHES_PER_PRINCIPAL
}
fn default_gateway_expiry_seconds() -> u64 {
    crate::fleet::DEFAULT_EXPIRY.as_secs()
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 50051))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from(DEFAULT_DATA_DIR)
}
fn default_multi_level() -> u64 {
    200
}
fn default_watch_history() -> u64 {
    DEFAULT_WATCH_HISTORY
}
fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}
fn default_first_request_timeout_ms() -> u64 {
    DEFAULT_FIRST_REQUEST_TIMEOUT_MS
}

fn default_store_wait_seconds() -> u64 {
    DEFAULT_STORE_WAIT_SECONDS
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: default_listen(),
            data_dir: default_data_dir(),
            store: Store::default(),
            store_wait_seconds: default_store_wait_seconds(),
            max_multi_level_mappings_per_domain: default_multi_level(),
            watch_history: default_watch_history(),
            tokens: Vec::new(),
            clients: Vec::new(),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            insecure_plaintext: false,
            max_connections: default_max_connections(),
            first_request_timeout_ms: default_first_request_timeout_ms(),
            accept_rollback: false,
            watch_buffer_bytes: default_watch_buffer_bytes(),
            max_watches_per_principal: default_max_watches_per_principal(),
            access_keys: Vec::new(),
            metrics_listen: None,
            gateway_expiry_seconds: default_gateway_expiry_seconds(),
            advertise_url: None,
        }
    }
}

impl Config {
    /// Reads and checks a TOML file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        config.check()?;
        Ok(config)
    }

    /// Checks every value: token hashes are 64 hex digits and each appears once, client
    /// subjects are set and each appears once, accounts are 12 digits, quotas positive, TLS
    /// files come in the pairs that make sense.
    pub fn check(&self) -> Result<(), ConfigError> {
        let mut hashes = std::collections::HashMap::new();
        for (i, t) in self.tokens.iter().enumerate() {
            if t.sha256.len() != 64 || !t.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ConfigError::Invalid(format!(
                    "tokens[{i}].sha256 must be 64 hex digits (the SHA-256 of the token, never the token)"
                )));
            }
            check_account_id("tokens", i, &t.account_id)?;
            if let Some(first) = hashes.insert(t.sha256.to_ascii_lowercase(), i) {
                return Err(ConfigError::Invalid(format!(
                    "tokens[{i}].sha256 is the same as tokens[{first}].sha256: each token may be \
                     listed once (which account and role would it act as?)"
                )));
            }
        }
        let mut subjects = std::collections::HashMap::new();
        for (i, c) in self.clients.iter().enumerate() {
            if c.subject.trim().is_empty() || c.subject.trim() != c.subject {
                return Err(ConfigError::Invalid(format!(
                    "clients[{i}].subject must be a certificate's common name or DNS name, got {:?}",
                    c.subject
                )));
            }
            check_account_id("clients", i, &c.account_id)?;
            if let Some(first) = subjects.insert(c.subject.to_ascii_lowercase(), i) {
                return Err(ConfigError::Invalid(format!(
                    "clients[{i}].subject {:?} is the same as clients[{first}].subject (ASCII case \
                     ignored): each client subject may be listed once",
                    c.subject
                )));
            }
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) | (None, Some(_)) => {
                return Err(ConfigError::Invalid(
                    "--tls-cert and --tls-key (tls_cert, tls_key) must be given together".into(),
                ));
            }
            _ => {}
        }
        if self.tls_client_ca.is_some() && self.tls_cert.is_none() {
            return Err(ConfigError::Invalid(
                "--tls-client-ca needs --tls-cert and --tls-key: client certificates are \
                 checked during the TLS handshake"
                    .into(),
            ));
        }
        if !self.clients.is_empty() && self.tls_client_ca.is_none() {
            return Err(ConfigError::Invalid(
                "[[clients]] entries need --tls-client-ca (tls_client_ca): without it no client \
                 certificate is asked for or verified"
                    .into(),
            ));
        }
        at_least("max_connections", self.max_connections, 1)?;
        at_least("first_request_timeout_ms", self.first_request_timeout_ms, 1)?;
        check_access_keys(&self.access_keys)?;
        at_least(
            "max_multi_level_mappings_per_domain",
            self.max_multi_level_mappings_per_domain,
            1,
        )?;
        at_least("watch_buffer_bytes", self.watch_buffer_bytes, 64 * 1024)?;
        at_least(
            "max_watches_per_principal",
            self.max_watches_per_principal,
            1,
        )?;
        at_least("watch_history", self.watch_history, 1)?;
        if let Some(url) = &self.advertise_url {
            let host = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"))
                .unwrap_or_default();
            if host.trim_end_matches('/').is_empty()
                || url.parse::<http::Uri>().is_err()
                || host.trim_end_matches('/').contains('/')
            {
                return Err(ConfigError::Invalid(format!(
                    "advertise_url must be http://HOST:PORT or https://HOST:PORT, got {url:?}"
                )));
            }
        }
        Ok(())
    }

    /// Dev mode: no tokens, no client certificates and no access keys configured.
    pub fn dev_mode(&self) -> bool {
        self.tokens.is_empty() && self.clients.is_empty() && self.access_keys.is_empty()
    }

    /// Whether the server speaks TLS.
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some()
    }

    /// Refuses a dev-mode server on anything but loopback, and a plaintext one unless
    /// `insecure_plaintext` says so, saying why.
    pub fn check_listen(&self) -> Result<(), ConfigError> {
        if self.dev_mode() && !self.listen.ip().is_loopback() {
            return Err(ConfigError::Invalid(format!(
                "refusing to listen on {}: no tokens are configured (dev mode), so every caller would be admin of account {}; \
                 dev mode listens only on loopback (127.0.0.1 or ::1). Configure [[tokens]] in a --config file to listen elsewhere",
                self.listen,
                crate::auth::DEV_ACCOUNT
            )));
        }
        if !self.tls() && !self.insecure_plaintext && !self.listen.ip().is_loopback() {
            return Err(ConfigError::Invalid(format!(
                "refusing to listen on {} without TLS: bearer tokens and registry data would cross \
                 the network in clear. Give --tls-cert and --tls-key, or --insecure-plaintext if \
                 something in front of mapreg (a proxy, a service mesh) already encrypts the traffic",
                self.listen
            )));
        }
        Ok(())
    }
}

/// Refuses `value` below `min`, naming the setting `name`.
fn at_least<T: PartialOrd + std::fmt::Display>(
    name: &str,
    value: T,
    min: T,
) -> Result<(), ConfigError> {
    if value < min {
        return Err(ConfigError::Invalid(format!(
            "{name} must be at least {min}"
        )));
    }
    Ok(())
}

/// Refuses an `account_id` of entry `i` of `list` (`tokens`, `clients`, `access_keys`) that is
/// not 12 decimal digits.
fn check_account_id(list: &str, i: usize, account_id: &str) -> Result<(), ConfigError> {
    if !crate::auth::is_account_id(account_id) {
        return Err(ConfigError::Invalid(format!(
            "{list}[{i}].account_id must be 12 decimal digits, got {account_id:?}"
        )));
    }
    Ok(())
}

/// `[[access_keys]]`: ids of 16 to 128 ASCII letters and digits, each once; a secret; a
/// 12-digit account.
fn check_access_keys(keys: &[AccessKeyConfig]) -> Result<(), ConfigError> {
    let mut seen = std::collections::HashSet::new();
    for (i, k) in keys.iter().enumerate() {
        let id = &k.access_key_id;
        if !(16..=128).contains(&id.len()) || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ConfigError::Invalid(format!(
                "access_keys[{i}].access_key_id must be 16 to 128 ASCII letters and digits, got {id:?}"
            )));
        }
        if !seen.insert(id.as_str()) {
            return Err(ConfigError::Invalid(format!(
                "access_keys[{i}].access_key_id {id:?} is configured twice"
            )));
        }
        if k.secret_access_key.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "access_keys[{i}].secret_access_key is empty"
            )));
        }
        check_account_id("access_keys", i, &k.account_id)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    #[test]
    fn store_is_sled_or_an_etcd_url() {
        assert_eq!(Config::default().store, Store::Sled);
        assert_eq!("sled".parse::<Store>().unwrap(), Store::Sled);
        let Store::Etcd(url) = "etcd://a:1,b:2/p".parse::<Store>().unwrap() else {
            panic!("not etcd");
        };
        assert_eq!(url.prefix, "/p/");
        let e = "file:///x".parse::<Store>().unwrap_err().to_string();
        assert!(e.contains("expected sled or etcd://"), "{e}");
        let e = "etcd://a".parse::<Store>().unwrap_err().to_string();
        assert!(e.contains("has no :PORT"), "{e}");
        let c: Config = toml::from_str("store = \"etcd://127.0.0.1:2379\"").unwrap();
        assert_eq!(c.store.to_string(), "etcd://127.0.0.1:2379/mapreg/");
        assert_eq!(c.store_wait_seconds, DEFAULT_STORE_WAIT_SECONDS);
        let c: Config = toml::from_str("store_wait_seconds = 5").unwrap();
        assert_eq!(c.store_wait_seconds, 5);
        let e = toml::from_str::<Config>("store = \"etcd://x:y\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a number"), "{e}");
    }

    #[test]
    fn advertise_url_is_an_http_or_https_origin() {
        for good in ["http://10.0.0.5:50051", "https://node-a.example:443/"] {
            let c = Config {
                advertise_url: Some(good.into()),
                ..Config::default()
            };
            assert!(c.check().is_ok(), "{good}");
        }
        for bad in [
            "10.0.0.5:50051",
            "ftp://x:1",
            "http://",
            "http://a:1/path",
            "http://a b",
        ] {
            let c = Config {
                advertise_url: Some(bad.into()),
                ..Config::default()
            };
            let e = c.check().expect_err(bad).to_string();
            assert!(e.contains("advertise_url must be"), "{bad}: {e}");
        }
    }

    /// A config file that must parse.
    fn parse(text: &str) -> Config {
        toml::from_str(text).expect("parses")
    }

    /// One `[[table]]` entry of a config file, its `key = "value"` lines in order.
    fn entry(table: &str, fields: &[(&str, &str)]) -> String {
        let mut text = format!("[[{table}]]\n");
        for (key, value) in fields {
            text.push_str(&format!("{key} = {value:?}\n"));
        }
        text
    }

    /// An `[[access_keys]]` entry of account 111122223333.
    fn access_key(id: &str, secret: &str, role: &str) -> String {
        let fields = [
            ("access_key_id", id),
            ("secret_access_key", secret),
            ("account_id", "111122223333"),
            ("role", role),
        ];
        entry("access_keys", &fields)
    }

    #[test]
    fn parses_tokens_and_refuses_bad_ones() {
        let hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let token = [
            ("sha256", hash),
            ("account_id", "111122223333"),
            ("role", "gateway"),
        ];
        let ok = parse(&format!(
            "listen = \"0.0.0.0:5000\"\ninsecure_plaintext = true\n{}",
            entry("tokens", &token)
        ));
        assert!(ok.check().is_ok());
        assert!(ok.check_listen().is_ok());
        assert_eq!(ok.tokens[0].role, Role::Gateway);
        let bad_token = [("sha256", "secret"), ("account_id", "1"), ("role", "admin")];
        let bad = parse(&entry("tokens", &bad_token));
        assert!(bad.check().is_err());
        assert!(toml::from_str::<Config>("role = 3").is_err());
    }

    #[test]
    fn dev_mode_is_loopback_only() {
        let mut c = Config::default();
        assert!(c.check_listen().is_ok());
        c.listen = "0.0.0.0:50051".parse().expect("addr");
        let e = c.check_listen().expect_err("refused");
        assert!(e.to_string().contains("loopback"));
        c.listen = "[::1]:50051".parse().expect("addr");
        assert!(c.check_listen().is_ok());
        c.listen = "0.0.0.0:50051".parse().expect("addr");
        c.insecure_plaintext = true;
        let e = c.check_listen().expect_err("still dev mode");
        assert!(e.to_string().contains("loopback"));
    }

    fn token(hash: &str) -> TokenConfig {
        TokenConfig {
            sha256: hash.into(),
            account_id: "111122223333".into(),
            role: Role::Admin,
            name: None,
        }
    }

    fn client(subject: &str) -> ClientCertConfig {
        ClientCertConfig {
            subject: subject.into(),
            account_id: "111122223333".into(),
            role: Role::Reader,
        }
    }

    #[test]
    fn plaintext_off_loopback_needs_tls_or_the_flag() {
        let mut c = Config {
            listen: "0.0.0.0:50051".parse().expect("addr"),
            tokens: vec![token(&crate::auth::token_hash("t"))],
            ..Config::default()
        };
        let e = c.check_listen().expect_err("plaintext refused");
        assert!(e.to_string().contains("--insecure-plaintext"), "{e}");
        c.insecure_plaintext = true;
        assert!(c.check_listen().is_ok());
        c.insecure_plaintext = false;
        c.tls_cert = Some("cert.pem".into());
        c.tls_key = Some("key.pem".into());
        assert!(c.check_listen().is_ok());
    }

    /// A config with a server certificate and key, and `ca` as its client CA.
    fn tls(clients: Vec<ClientCertConfig>, ca: Option<&str>) -> Config {
        Config {
            clients,
            tls_cert: Some("c".into()),
            tls_key: Some("k".into()),
            tls_client_ca: ca.map(PathBuf::from),
            ..Config::default()
        }
    }

    #[test]
    fn duplicates_and_half_tls_settings_are_refused() {
        let h = crate::auth::token_hash("t");
        let same_hash = Config {
            tokens: vec![
                token(&h),
                token(&crate::auth::token_hash("u")),
                token(&h.to_uppercase()),
            ],
            ..Config::default()
        };
        let half = Config {
            tls_cert: Some("c".into()),
            ..Config::default()
        };
        let cases = [
            (same_hash, &["tokens[2].sha256", "tokens[0]"][..]),
            (
                tls(vec![client("gw-1"), client("GW-1")], Some("ca")),
                &["clients[1].subject", "clients[0]"],
            ),
            (half, &["--tls-key"]),
            (tls(vec![client("gw-1")], None), &["--tls-client-ca"]),
        ];
        for (c, says) in cases {
            let e = c.check().expect_err("refused").to_string();
            assert!(says.iter().all(|s| e.contains(s)), "{says:?}: {e}");
        }
    }

    #[test]
    fn parses_access_keys_and_refuses_bad_ones() {
        let id = "AKIAMAPREGEXAMPLE01";
        let ok = parse(&format!(
            "{}name = \"ci\"\n",
            access_key(id, "s3cret", "reader")
        ));
        assert!(ok.check().is_ok());
        assert!(!ok.dev_mode(), "access keys alone end dev mode");
        assert!(
            !format!("{ok:?}").contains("s3cret"),
            "Debug hides the secret"
        );
        let twice = parse(&(access_key(id, "a", "admin") + &access_key(id, "b", "admin")));
        assert!(
            twice
                .check()
                .expect_err("duplicate")
                .to_string()
                .contains("twice")
        );
        let short = parse(&access_key("AKIA", "a", "admin"));
        assert!(short.check().is_err());
    }
}
