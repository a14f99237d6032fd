//! Authentication and authorisation (SPEC.md sections 6 and 8.6).
//!
//! A request carries `authorization: Bearer <token>`, or arrives over a TLS connection whose
//! client certificate (verified against `--tls-client-ca`) names a `[[clients]]` entry by its
//! subject common name or a DNS subject alternative name. A token, when sent, decides; the
//! certificate is used only without one. The token's SHA-256 is looked up among the configured
//! hashes (the clear token is never stored). The interceptor puts the resulting [`Caller`] in
//! the request's extensions; each RPC then asks [`Caller::require`] for the kind of access it
//! needs. With no tokens and no clients configured (dev mode) every caller is admin of
//! [`DEV_ACCOUNT`].
//!
//! Credentials are reloaded on SIGHUP ([`Authenticator::reload`]): requests after a reload see
//! the new set, and [`Authenticator::revoked`] tells a long-lived stream that the credential it
//! was opened with no longer grants what it granted then.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwap;
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
    /// Who the token belongs to, for logs and audit (the change sets it makes); absent:
    /// `token:` and the first 12 hex digits of `sha256`.
    #[serde(default)]
    pub name: Option<String>,
}

/// One accepted client certificate: a `[[clients]]` entry of the config file (re-exported as
/// `config::ClientCertConfig`). A certificate signed by `--tls-client-ca` whose subject common
/// name or one of whose DNS subject alternative names equals `subject` (ASCII case ignored)
/// acts as `account_id` with `role`, exactly as a token would.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClientCertConfig {
    /// The certificate's subject common name or DNS SAN, e.g. `gw-eu-1`.
    pub subject: String,
    /// The 12-digit account the certificate acts in.
    pub account_id: String,
    /// What the certificate may do.
    pub role: Role,
}

/// What authenticated a caller: the key under which a reload finds it again.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Credential {
    /// Dev mode: nothing was checked.
    Dev,
    /// A bearer token, by its SHA-256.
    Token([u8; 32]),
    /// A client certificate, by the `[[clients]]` subject it matched (lower case).
    Certificate(String),
    /// An AWS access key (the REST edge's SigV4), by its id.
    AccessKey(String),
}

/// The names a verified client certificate presents, in order: its subject common name(s),
/// then its DNS subject alternative names. The transport attaches it to every request of the
/// connection; [`Authenticator`] matches it against `[[clients]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCertificate {
    /// Common names, then DNS SANs.
    pub names: Vec<String>,
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
    /// What authenticated it.
    pub credential: Credential,
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

/// One set of accepted credentials, replaced whole by a reload.
#[derive(Debug, Default)]
struct Credentials {
    tokens: HashMap<[u8; 32], (String, Role)>,
    /// The `name` of the tokens that have one.
    token_names: HashMap<[u8; 32], String>,
    /// By lower-case subject.
    clients: HashMap<String, (String, Role)>,
    /// By access key id.
    access_keys: HashMap<String, AccessKey>,
}

impl Credentials {
    fn new(
        tokens: &[TokenConfig],
        clients: &[ClientCertConfig],
        access_keys: &[AccessKeyConfig],
    ) -> Self {
        let mut c = Credentials::default();
        for k in access_keys {
            let key = AccessKey {
                secret_access_key: k.secret_access_key.clone(),
                caller: Caller {
                    account_id: k.account_id.clone(),
                    role: k.role,
                    credential: Credential::AccessKey(k.access_key_id.clone()),
                },
                name: k.name.clone().unwrap_or_else(|| k.access_key_id.clone()),
            };
            c.access_keys.insert(k.access_key_id.clone(), key);
        }
        for t in tokens {
            let mut h = [0u8; 32];
            if hex::decode_to_slice(&t.sha256, &mut h).is_ok() {
                c.tokens.insert(h, (t.account_id.clone(), t.role));
                if let Some(name) = &t.name {
                    c.token_names.insert(h, name.clone());
                }
            }
        }
        for k in clients {
            c.clients.insert(
                k.subject.to_ascii_lowercase(),
                (k.account_id.clone(), k.role),
            );
        }
        c
    }

    fn is_empty(&self) -> bool {
        self.tokens.is_empty() && self.clients.is_empty() && self.access_keys.is_empty()
    }

    /// What `credential` grants in this set, if it is still in it.
    fn grants(&self, credential: &Credential) -> Option<(&str, Role)> {
        let (account, role) = match credential {
            Credential::Dev => return None,
            Credential::Token(h) => self.tokens.get(h)?,
            Credential::Certificate(s) => self.clients.get(s)?,
            Credential::AccessKey(id) => {
                let k = self.access_keys.get(id)?;
                return Some((&k.caller.account_id, k.caller.role));
            }
        };
        Some((account, *role))
    }
}

/// Resolves bearer tokens and client certificates to callers. Cheap to clone: clones share
/// the credentials, so a [`reload`](Authenticator::reload) applies to all of them.
#[derive(Debug, Clone)]
pub struct Authenticator {
    current: Arc<ArcSwap<Credentials>>,
    /// Fixed at start: a reload never turns dev mode on or off.
    dev_mode: bool,
    /// Bumped by every reload, so that streams can check their credential again.
    generation: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Authenticator {
    /// From the configured tokens and client certificates; none of either means dev mode.
    /// An entry whose hash does not decode is skipped (`Config::check` refuses it first).
    pub fn new(tokens: &[TokenConfig], clients: &[ClientCertConfig]) -> Self {
        Self::with_access_keys(tokens, clients, &[])
    }

    /// The same, also accepting the AWS access keys `access_keys` (the REST edge's SigV4);
    /// none of the three means dev mode.
    pub fn with_access_keys(
        tokens: &[TokenConfig],
        clients: &[ClientCertConfig],
        access_keys: &[AccessKeyConfig],
    ) -> Self {
        let credentials = Credentials::new(tokens, clients, access_keys);
        let dev_mode = credentials.is_empty();
        Authenticator {
            current: Arc::new(ArcSwap::from_pointee(credentials)),
            dev_mode,
            generation: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }

    /// Replaces the accepted credentials. Requests authenticated after it returns see the new
    /// set; streams opened with a credential that is gone or now grants another account or
    /// role end (see [`revoked`](Authenticator::revoked)). Refused, changing nothing, when it
    /// would turn dev mode on or off: that needs a restart (dev mode is loopback-only, and a
    /// server that had credentials must never start accepting everyone).
    pub fn reload(
        &self,
        tokens: &[TokenConfig],
        clients: &[ClientCertConfig],
        access_keys: &[AccessKeyConfig],
    ) -> Result<(), Error> {
        let credentials = Credentials::new(tokens, clients, access_keys);
        if credentials.is_empty() != self.dev_mode {
            return Err(Error::invalid(
                "tokens",
                if self.dev_mode {
                    "the reloaded config has [[tokens]], [[clients]] or [[access_keys]] but the \
                     server runs in dev mode: restart it to leave dev mode"
                } else {
                    "the reloaded config has no [[tokens]], [[clients]] or [[access_keys]] (dev \
                     mode): a \
                     server with credentials never switches to dev mode; restart it to do so"
                },
            ));
        }
        self.current.store(Arc::new(credentials));
        self.generation.send_modify(|g| *g += 1);
        Ok(())
    }

    /// Dev mode: no tokens, client certificates or access keys configured at start.
    pub fn dev_mode(&self) -> bool {
        self.dev_mode
    }

    /// The access key `access_key_id` as configured now, if any.
    pub fn access_key(&self, access_key_id: &str) -> Option<AccessKey> {
        self.current.load().access_keys.get(access_key_id).cloned()
    }

    /// How many tokens and client certificates are accepted now.
    pub fn counts(&self) -> (usize, usize) {
        let c = self.current.load();
        (c.tokens.len(), c.clients.len())
    }

    /// The caller for an `authorization` header value (None: header absent), without a
    /// client certificate.
    pub fn authenticate(&self, header: Option<&[u8]>) -> Result<Caller, Error> {
        self.authenticate_with(header, None)
    }

    /// The caller for an `authorization` header value and the connection's verified client
    /// certificate, if any. A header decides when present (a bad or unknown token is refused
    /// even with a good certificate); otherwise the certificate's first name that a
    /// `[[clients]]` entry lists.
    pub fn authenticate_with(
        &self,
        header: Option<&[u8]>,
        certificate: Option<&ClientCertificate>,
    ) -> Result<Caller, Error> {
        if self.dev_mode {
            return Ok(Caller {
                account_id: DEV_ACCOUNT.to_string(),
                role: Role::Admin,
                credential: Credential::Dev,
            });
        }
        let credentials = self.current.load();
        let Some(header) = header else {
            if let Some(cert) = certificate {
                for name in &cert.names {
                    let key = name.to_ascii_lowercase();
                    if let Some((account_id, role)) = credentials.clients.get(&key) {
                        return Ok(Caller {
                            account_id: account_id.clone(),
                            role: *role,
                            credential: Credential::Certificate(key),
                        });
                    }
                }
                return Err(Error::Unauthenticated {
                    reason: "CLIENT_CERTIFICATE_UNKNOWN",
                    message: format!(
                        "the client certificate ({}) matches no [[clients]] subject, and no \
                         `authorization: Bearer <token>` metadata was sent",
                        if cert.names.is_empty() {
                            "no common name or DNS name".to_string()
                        } else {
                            cert.names.join(", ")
                        }
                    ),
                });
            }
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
        credentials
            .tokens
            .get(&digest)
            .map(|(account_id, role)| Caller {
                account_id: account_id.clone(),
                role: *role,
                credential: Credential::Token(digest),
            })
            .ok_or_else(|| Error::Unauthenticated {
                reason: "TOKEN_UNKNOWN",
                message: "the bearer token is not known to this server".into(),
            })
    }

    /// Resolves once a reload removed `caller`'s credential or changed the account or role it
    /// grants, with the error that should end the caller's stream (`UNAUTHENTICATED`, reason
    /// `CREDENTIAL_REVOKED`). Never resolves in dev mode.
    pub fn revoked(&self, caller: &Caller) -> impl Future<Output = Error> + Send + use<> {
        let current = self.current.clone();
        let mut generation = self.generation.subscribe();
        let caller = caller.clone();
        async move {
            if caller.credential == Credential::Dev {
                return std::future::pending().await;
            }
            loop {
                let still = current
                    .load()
                    .grants(&caller.credential)
                    .is_some_and(|(a, r)| a == caller.account_id && r == caller.role);
                if !still {
                    return Error::Unauthenticated {
                        reason: "CREDENTIAL_REVOKED",
                        message: "the credential this stream was opened with was removed or \
                                  changed by a configuration reload"
                            .into(),
                    };
                }
                if generation.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
        }
    }

    /// A tonic interceptor: authenticates (the `authorization` metadata, else the client
    /// certificate the transport attached) and stores the [`Caller`] in the request
    /// extensions.
    pub fn intercept(&self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let header = req
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes().to_vec());
        let certificate = req
            .extensions()
            .get::<crate::transport::Peer>()
            .and_then(|p| p.client_certificate.clone());
        match self.authenticate_with(header.as_deref(), certificate.as_deref()) {
            Ok(caller) => {
                if let Credential::Token(h) = &caller.credential
                    && let Some(name) = self.current.load().token_names.get(h)
                {
                    req.extensions_mut()
                        .insert(crate::audit::Principal(name.clone()));
                }
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

    /// A reader token of account 111122223333.
    fn reader_token(token: &str) -> TokenConfig {
        TokenConfig {
            sha256: token_hash(token),
            account_id: "111122223333".into(),
            role: Role::Reader,
            name: None,
        }
    }

    /// A client certificate of account 999999999999.
    fn client(subject: &str, role: Role) -> ClientCertConfig {
        ClientCertConfig {
            subject: subject.into(),
            account_id: "999999999999".into(),
            role,
        }
    }

    fn auth() -> Authenticator {
        Authenticator::new(
            &[reader_token("s3cret")],
            &[client("GW-EU-1", Role::Gateway)],
        )
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
        let c = Authenticator::new(&[], &[])
            .authenticate(None)
            .expect("dev");
        assert_eq!((c.account_id.as_str(), c.role), (DEV_ACCOUNT, Role::Admin));
    }

    fn cert(names: &[&str]) -> ClientCertificate {
        ClientCertificate {
            names: names.iter().map(|n| n.to_string()).collect(),
        }
    }

    #[test]
    fn certificates_resolve_by_subject_and_a_token_decides() {
        let a = auth();
        let c = a
            .authenticate_with(None, Some(&cert(&["other", "gw-eu-1"])))
            .expect("a SAN matches, case ignored");
        assert_eq!(
            (c.account_id.as_str(), c.role),
            ("999999999999", Role::Gateway)
        );
        let e = a
            .authenticate_with(None, Some(&cert(&["nobody"])))
            .expect_err("unknown subject");
        assert_eq!(e.reason(), "CLIENT_CERTIFICATE_UNKNOWN");
        assert!(e.to_string().contains("nobody"), "{e}");
        let t = a
            .authenticate_with(Some(b"Bearer s3cret"), Some(&cert(&["gw-eu-1"])))
            .expect("token");
        assert_eq!(t.role, Role::Reader);
        let bad = a.authenticate_with(Some(b"Bearer nope"), Some(&cert(&["gw-eu-1"])));
        assert_eq!(bad.expect_err("unknown token").reason(), "TOKEN_UNKNOWN");
    }

    #[tokio::test]
    async fn reload_revokes_removed_and_changed_credentials_only() {
        let a = auth();
        let reader = a.authenticate(Some(b"Bearer s3cret")).expect("token");
        let gateway = a
            .authenticate_with(None, Some(&cert(&["gw-eu-1"])))
            .expect("cert");
        let token_gone = a.revoked(&reader);
        let cert_changed = a.revoked(&gateway);
        tokio::pin!(token_gone, cert_changed);
        a.reload(
            &[reader_token("new")],
            &[client("gw-eu-1", Role::Gateway)],
            &[],
        )
        .expect("reload");
        let e = tokio::time::timeout(std::time::Duration::from_secs(5), &mut token_gone)
            .await
            .expect("the removed token's stream is told");
        assert_eq!(e.reason(), "CREDENTIAL_REVOKED");
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(
            futures_poll_once(&mut cert_changed).await.is_none(),
            "an unchanged certificate keeps its stream"
        );
        assert_eq!(
            a.authenticate(Some(b"Bearer s3cret"))
                .expect_err("old token")
                .reason(),
            "TOKEN_UNKNOWN"
        );
        assert!(a.authenticate(Some(b"Bearer new")).is_ok());
        a.reload(&[], &[client("gw-eu-1", Role::Reader)], &[])
            .expect("reload");
        let e = tokio::time::timeout(std::time::Duration::from_secs(5), &mut cert_changed)
            .await
            .expect("a changed role ends the stream");
        assert_eq!(e.reason(), "CREDENTIAL_REVOKED");
        assert!(a.reload(&[], &[], &[]).is_err(), "never into dev mode");
        assert!(
            Authenticator::new(&[], &[])
                .reload(&[], &[client("x", Role::Reader)], &[])
                .is_err(),
            "never out of dev mode"
        );
    }

    /// Polls `f` once: Some(output) if it is ready now.
    async fn futures_poll_once<F: Future + Unpin>(f: &mut F) -> Option<F::Output> {
        use std::task::Poll;
        std::future::poll_fn(|cx| match std::pin::Pin::new(&mut *f).poll(cx) {
            Poll::Ready(v) => Poll::Ready(Some(v)),
            Poll::Pending => Poll::Ready(None),
        })
        .await
    }
}
