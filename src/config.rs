//! Server configuration: command-line flags over an optional TOML file over defaults.
//!
//! ```toml
//! listen = "127.0.0.1:50051"
//! data_dir = "./mapreg-data"
//! max_multi_level_mappings_per_domain = 200
//! watch_history = 100000
//!
//! [[tokens]]
//! # sha256 of the bearer token, hex: `printf %s "$TOKEN" | sha256sum`
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! account_id = "111122223333"
//! role = "admin"            # admin | reader | gateway
//!
//! [[access_keys]]            # AWS SigV4 keys for the REST edge (aws CLI, boto3, SDKs)
//! access_key_id = "AKIAMAPREGEXAMPLE01"
//! secret_access_key = "..." # the secret itself (SigV4 is an HMAC): protect this file
//! account_id = "111122223333"
//! role = "admin"
//! name = "deploy-pipeline"  # optional, for logs
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

// `[[tokens]]` entries are defined in `auth` (which must not depend on `config`) and
// re-exported here, so `config::TokenConfig` keeps naming them.
pub use crate::auth::{AccessKeyConfig, TokenConfig};

/// Default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "./mapreg-data";
/// Default change-log window, in revisions.
pub const DEFAULT_WATCH_HISTORY: u64 = 100_000;

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
    /// Rule 4's per-domain quota of multi-level mappings.
    #[serde(default = "default_multi_level")]
    pub max_multi_level_mappings_per_domain: u64,
    /// How many revisions the change log keeps.
    #[serde(default = "default_watch_history")]
    pub watch_history: u64,
    /// Accepted tokens. None: dev mode (every caller is admin of 000000000000, loopback only).
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// Accepted AWS access keys (SigV4, REST edge). Tokens and keys both empty: dev mode.
    #[serde(default)]
    pub access_keys: Vec<AccessKeyConfig>,
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

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: default_listen(),
            data_dir: default_data_dir(),
            max_multi_level_mappings_per_domain: default_multi_level(),
            watch_history: default_watch_history(),
            tokens: Vec::new(),
            access_keys: Vec::new(),
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

    /// Checks every value: token hashes are 64 hex digits, accounts 12 digits, quotas positive.
    pub fn check(&self) -> Result<(), ConfigError> {
        for (i, t) in self.tokens.iter().enumerate() {
            if t.sha256.len() != 64 || !t.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ConfigError::Invalid(format!(
                    "tokens[{i}].sha256 must be 64 hex digits (the SHA-256 of the token, never the token)"
                )));
            }
            if !crate::auth::is_account_id(&t.account_id) {
                return Err(ConfigError::Invalid(format!(
                    "tokens[{i}].account_id must be 12 decimal digits, got {:?}",
                    t.account_id
                )));
            }
        }
        check_access_keys(&self.access_keys)?;
        if self.max_multi_level_mappings_per_domain == 0 {
            return Err(ConfigError::Invalid(
                "max_multi_level_mappings_per_domain must be at least 1".into(),
            ));
        }
        if self.watch_history == 0 {
            return Err(ConfigError::Invalid(
                "watch_history must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// Dev mode: no tokens and no access keys configured.
    pub fn dev_mode(&self) -> bool {
        self.tokens.is_empty() && self.access_keys.is_empty()
    }

    /// Refuses a dev-mode server on anything but loopback, saying why.
    pub fn check_listen(&self) -> Result<(), ConfigError> {
        if self.dev_mode() && !self.listen.ip().is_loopback() {
            return Err(ConfigError::Invalid(format!(
                "refusing to listen on {}: no tokens are configured (dev mode), so every caller would be admin of account {}; \
                 dev mode listens only on loopback (127.0.0.1 or ::1). Configure [[tokens]] in a --config file to listen elsewhere",
                self.listen,
                crate::auth::DEV_ACCOUNT
            )));
        }
        Ok(())
    }
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
        if !crate::auth::is_account_id(&k.account_id) {
            return Err(ConfigError::Invalid(format!(
                "access_keys[{i}].account_id must be 12 decimal digits, got {:?}",
                k.account_id
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    #[test]
    fn parses_tokens_and_refuses_bad_ones() {
        let ok: Config = toml::from_str(
            r#"
            listen = "0.0.0.0:5000"
            [[tokens]]
            sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
            account_id = "111122223333"
            role = "gateway"
            "#,
        )
        .expect("parses");
        assert!(ok.check().is_ok());
        assert!(ok.check_listen().is_ok());
        assert_eq!(ok.tokens[0].role, Role::Gateway);
        let bad: Config = toml::from_str(
            r#"
            [[tokens]]
            sha256 = "secret"
            account_id = "1"
            role = "admin"
            "#,
        )
        .expect("parses");
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
    }

    #[test]
    fn parses_access_keys_and_refuses_bad_ones() {
        let ok: Config = toml::from_str(
            r#"
            [[access_keys]]
            access_key_id = "AKIAMAPREGEXAMPLE01"
            secret_access_key = "s3cret"
            account_id = "111122223333"
            role = "reader"
            name = "ci"
            "#,
        )
        .expect("parses");
        assert!(ok.check().is_ok());
        assert!(!ok.dev_mode(), "access keys alone end dev mode");
        assert!(!format!("{ok:?}").contains("s3cret"), "Debug hides the secret");
        let twice: Config = toml::from_str(
            r#"
            [[access_keys]]
            access_key_id = "AKIAMAPREGEXAMPLE01"
            secret_access_key = "a"
            account_id = "111122223333"
            role = "admin"
            [[access_keys]]
            access_key_id = "AKIAMAPREGEXAMPLE01"
            secret_access_key = "b"
            account_id = "111122223333"
            role = "admin"
            "#,
        )
        .expect("parses");
        assert!(twice.check().expect_err("duplicate").to_string().contains("twice"));
        let short: Config = toml::from_str(
            r#"
            [[access_keys]]
            access_key_id = "AKIA"
            secret_access_key = "a"
            account_id = "111122223333"
            role = "admin"
            "#,
        )
        .expect("parses");
        assert!(short.check().is_err());
    }
}
