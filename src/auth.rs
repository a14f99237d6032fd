//! Authentication and authorisation (SPEC.md section 6).
//!
//! A request carries `authorization: Bearer <token>`. The token's SHA-256 is looked up among the
//! configured hashes (the clear token is never stored). The interceptor puts the resulting
//! [`Caller`] in the request's extensions; each RPC then asks [`Caller::require`] for the kind of
//! access it needs. With no tokens configured (dev mode) every caller is admin of
//! [`DEV_ACCOUNT`].

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use tonic::{Request, Status};

use crate::error::Error;
use crate::store::Scope;

/// The account every dev-mode caller acts in.
pub const DEV_ACCOUNT: &str = "000000000000";

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// All reads and writes in its account.
    Admin,
    /// Reads and Watch in its account.
    Reader,
    /// Reads (Get*, ResolveRoute) and Watch across all accounts; no writes.
    Gateway,
}

impl Role {
    /// The role's name as written in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Reader => "reader",
            Role::Gateway => "gateway",
        }
    }
}

/// One accepted bearer token, stored by hash only: a `[[tokens]]` entry of the config file
/// (re-exported as `config::TokenConfig`; defined here so that `config` depends on `auth` and
/// not the reverse). Deserializing refuses unknown fields; `Config::check` refuses a hash that
/// is not 64 hex digits or an account that is not 12 digits, and [`Authenticator::new`] skips
/// an entry whose hash does not decode.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Lower-case hex SHA-256 of the token.
    pub sha256: String,
    /// The 12-digit account the token acts in.
    pub account_id: String,
    /// What the token may do.
    pub role: Role,
}

/// One accepted AWS access key: an `[[access_keys]]` entry of the config file, for the REST
/// edge's Signature Version 4 (`src/rest`). SigV4 is an HMAC, so the server needs the secret
/// itself: keep the config file readable by the server only. `Debug` never prints the secret.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AccessKeyConfig {
    /// The key id clients send (`AWS_ACCESS_KEY_ID`): 16 to 128 ASCII letters and digits.
    pub access_key_id: String,
    /// The secret clients sign with (`AWS_SECRET_ACCESS_KEY`).
    pub secret_access_key: String,
    /// The 12-digit account the key acts in.
    pub account_id: String,
    /// What the key may do.
    pub role: Role,
    /// Who the key belongs to, for logs and audit; the key id when absent.
    #[serde(default)]
    pub name: Option<String>,
}

impl std::fmt::Debug for AccessKeyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKeyConfig")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("account_id", &self.account_id)
            .field("role", &self.role)
            .field("name", &self.name)
            .finish()
    }
}

/// An access key the server accepts: the secret to verify signatures with, and the caller a
/// verified request acts as. `Debug` never prints the secret.
#[derive(Clone)]
pub struct AccessKey {
    /// The secret the request must be signed with.
    pub secret_access_key: String,
    /// The account and role the key acts as.
    pub caller: Caller,
    /// Who the key belongs to (the config's `name`, or the key id).
    pub name: String,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("caller", &self.caller)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The kind of access an RPC needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Get*, ResolveRoute.
    Read,
    /// Create*, Update*, Delete*.
    Write,
    /// ChangeFeed.Watch.
    Watch,
}

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The caller's account.
    pub account_id: String,
    /// The caller's role.
    pub role: Role,
}

impl Caller {
    /// Ok when the role allows `access` (method names the RPC in the error).
    pub fn require(&self, access: Access, method: &str) -> Result<(), Error> {
        let allowed = match self.role {
            Role::Admin => true,
            Role::Reader | Role::Gateway => access != Access::Write,
        };
        if allowed {
            Ok(())
        } else {
            Err(Error::PermissionDenied {
                reason: "PERMISSION_DENIED",
                message: format!(
                    "role {} of account {} may not call {method}: the role is read-only",
                    self.role.as_str(),
                    self.account_id
                ),
            })
        }
    }

    /// The records this caller may read.
    pub fn scope(&self) -> Scope {
        match self.role {
            Role::Gateway => Scope::All,
            _ => Scope::Account(self.account_id.clone()),
        }
    }
}

/// Whether `s` is a 12-digit account id.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Resolves bearer tokens to callers.
#[derive(Debug, Clone)]
pub struct Authenticator {
    tokens: Arc<HashMap<[u8; 32], Caller>>,
    access_keys: Arc<HashMap<String, AccessKey>>,
}

impl Authenticator {
    /// From the configured tokens; none means dev mode.
    pub fn new(tokens: &[TokenConfig]) -> Self {
        let mut map = HashMap::new();
        for t in tokens {
            let mut h = [0u8; 32];
            if hex::decode_to_slice(&t.sha256, &mut h).is_ok() {
                map.insert(
                    h,
                    Caller {
                        account_id: t.account_id.clone(),
                        role: t.role,
                    },
                );
            }
        }
        Authenticator {
            tokens: Arc::new(map),
            access_keys: Arc::new(HashMap::new()),
        }
    }

    /// The same, also accepting the AWS access keys `keys` (the REST edge's SigV4).
    pub fn with_access_keys(mut self, keys: &[AccessKeyConfig]) -> Self {
        let map = keys
            .iter()
            .map(|k| {
                let key = AccessKey {
                    secret_access_key: k.secret_access_key.clone(),
                    caller: Caller {
                        account_id: k.account_id.clone(),
                        role: k.role,
                    },
                    name: k.name.clone().unwrap_or_else(|| k.access_key_id.clone()),
                };
                (k.access_key_id.clone(), key)
            })
            .collect();
        self.access_keys = Arc::new(map);
        self
    }

    /// Dev mode: no tokens and no access keys configured.
    pub fn dev_mode(&self) -> bool {
        self.tokens.is_empty() && self.access_keys.is_empty()
    }

    /// The configured access key `access_key_id`, if any.
    pub fn access_key(&self, access_key_id: &str) -> Option<&AccessKey> {
        self.access_keys.get(access_key_id)
    }

    /// The caller for an `authorization` header value (None: header absent).
    pub fn authenticate(&self, header: Option<&[u8]>) -> Result<Caller, Error> {
        if self.dev_mode() {
            return Ok(Caller {
                account_id: DEV_ACCOUNT.to_string(),
                role: Role::Admin,
            });
        }
        let Some(header) = header else {
            return Err(Error::Unauthenticated {
                reason: "TOKEN_MISSING",
                message: "missing credentials: send `authorization: Bearer <token>` metadata"
                    .into(),
            });
        };
        let token = std::str::from_utf8(header)
            .ok()
            .and_then(|h| {
                let (scheme, token) = h.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then_some(token.trim())
            })
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()));
        let Some(token) = token else {
            return Err(Error::invalid(
                "authorization",
                "authorization metadata is malformed: expected `Bearer <token>`",
            ));
        };
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.tokens
            .get(&digest)
            .cloned()
            .ok_or_else(|| Error::Unauthenticated {
                reason: "TOKEN_UNKNOWN",
                message: "the bearer token is not known to this server".into(),
            })
    }

    /// A tonic interceptor: authenticates and stores the [`Caller`] in the request extensions.
    pub fn intercept(&self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let header = req
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes().to_vec());
        match self.authenticate(header.as_deref()) {
            Ok(caller) => {
                req.extensions_mut().insert(caller);
                Ok(req)
            }
            Err(e) => {
                tracing::info!(code = ?e.code(), reason = e.reason(), "request refused by authentication");
                Err(e.into())
            }
        }
    }
}

/// SHA-256 of a token, hex: what goes in the config file.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        Authenticator::new(&[TokenConfig {
            sha256: token_hash("s3cret"),
            account_id: "111122223333".into(),
            role: Role::Reader,
        }])
    }

    #[test]
    fn tokens_resolve_by_hash() {
        let a = auth();
        let c = a.authenticate(Some(b"Bearer s3cret")).expect("known");
        assert_eq!(c.account_id, "111122223333");
        assert_eq!(
            a.authenticate(Some(b"Bearer other"))
                .expect_err("unknown")
                .reason(),
            "TOKEN_UNKNOWN"
        );
        assert_eq!(
            a.authenticate(None).expect_err("missing").reason(),
            "TOKEN_MISSING"
        );
        assert_eq!(
            a.authenticate(Some(b"Basic x")).expect_err("bad").reason(),
            "INVALID_AUTHORIZATION"
        );
        assert!(c.require(Access::Write, "CreateApi").is_err());
        assert!(c.require(Access::Watch, "Watch").is_ok());
    }

    #[test]
    fn dev_mode_is_admin_of_the_dev_account() {
        let c = Authenticator::new(&[]).authenticate(None).expect("dev");
        assert_eq!((c.account_id.as_str(), c.role), (DEV_ACCOUNT, Role::Admin));
    }
}
