//! Who is looking at the console: login sessions and CSRF tokens.
//!
//! - Dev mode: no login; every viewer is the dev account's admin, as on gRPC. Forms still
//!   carry a CSRF token (one per server start), so another site cannot post to a loopback
//!   console.
//! - With credentials configured: `/console/login` takes a bearer token, authenticates it
//!   exactly as gRPC does ([`Authenticator::authenticate`]) and opens a session. The browser
//!   holds a random 256-bit session id in the cookie `mapreg_session` (`HttpOnly`,
//!   `SameSite=Strict`, `Secure` when the server has TLS); the server keeps only the id's
//!   SHA-256, mapped to the caller and the session's CSRF token. Sessions last
//!   [`SESSION_TTL`]. A changed or removed token does not end open sessions before that;
//!   restarting the server does.
//! - Every POST must carry the session's CSRF token in the field `csrf`, else 403.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::HeaderMap;
use http::header::COOKIE;
use sha2::{Digest, Sha256};

use crate::auth::{Authenticator, Caller, Credential, DEV_ACCOUNT, Role};

/// The session cookie's name.
pub const COOKIE_NAME: &str = "mapreg_session";

/// How long a session lasts after login.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Most sessions held at once; the oldest go first.
const MAX_SESSIONS: usize = 10_000;

/// A viewer of the console: the caller its requests run as, and its CSRF token.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// Runs every call.
    pub caller: Caller,
    /// Must come back with every POST.
    pub csrf: String,
    /// Logged in through a session (false in dev mode).
    pub session: bool,
}

impl Viewer {
    /// Whether the viewer may write (admin).
    pub fn writes(&self) -> bool {
        self.caller.role == Role::Admin
    }
}

struct Session {
    caller: Caller,
    csrf: String,
    created: Instant,
}

/// The sessions of one server.
pub struct Sessions {
    auth: Authenticator,
    /// By SHA-256 of the session id.
    open: Mutex<HashMap<[u8; 32], Session>>,
    dev_csrf: String,
    /// Whether cookies are `Secure` (the server has TLS).
    secure: bool,
}

/// A random 256-bit value, hex.
fn random_hex() -> String {
    let b: [u8; 32] = rand::random();
    hex::encode(b)
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// Compares two strings in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

impl Sessions {
    /// Sessions authenticating with `auth`; `secure`: the server has TLS.
    pub fn new(auth: Authenticator, secure: bool) -> Sessions {
        Sessions {
            auth,
            open: Mutex::new(HashMap::new()),
            dev_csrf: random_hex(),
            secure,
        }
    }

    /// Whether logins are needed (not dev mode).
    pub fn needs_login(&self) -> bool {
        !self.auth.dev_mode()
    }

    /// The viewer of a request, if any.
    pub fn viewer(&self, headers: &HeaderMap) -> Option<Viewer> {
        if self.auth.dev_mode() {
            return Some(Viewer {
                caller: Caller {
                    account_id: DEV_ACCOUNT.to_string(),
                    role: Role::Admin,
                    credential: Credential::Dev,
                },
                csrf: self.dev_csrf.clone(),
                session: false,
            });
        }
        let id = cookie(headers, COOKIE_NAME)?;
        let mut open = self.open.lock().ok()?;
        let key = digest(&id);
        let s = open.get(&key)?;
        if s.created.elapsed() > SESSION_TTL {
            open.remove(&key);
            return None;
        }
        Some(Viewer {
            caller: s.caller.clone(),
            csrf: s.csrf.clone(),
            session: true,
        })
    }

    /// Logs in with a bearer token: the `Set-Cookie` value of the new session, or the
    /// authentication error's message.
    pub fn login(&self, token: &str) -> Result<String, String> {
        let header = format!("Bearer {}", token.trim());
        let caller = self
            .auth
            .authenticate(Some(header.as_bytes()))
            .map_err(|e| e.to_string())?;
        let id = random_hex();
        let mut open = self
            .open
            .lock()
            .map_err(|_| "the session table is unavailable".to_string())?;
        open.retain(|_, s| s.created.elapsed() <= SESSION_TTL);
        if open.len() >= MAX_SESSIONS {
            if let Some(oldest) = open.iter().min_by_key(|(_, s)| s.created).map(|(k, _)| *k) {
                open.remove(&oldest);
            }
        }
        open.insert(
            digest(&id),
            Session {
                caller,
                csrf: random_hex(),
                created: Instant::now(),
            },
        );
        Ok(self.set_cookie(&id, SESSION_TTL.as_secs()))
    }

    /// Ends the request's session; the `Set-Cookie` value that clears the cookie.
    pub fn logout(&self, headers: &HeaderMap) -> String {
        if let Some(id) = cookie(headers, COOKIE_NAME) {
            if let Ok(mut open) = self.open.lock() {
                open.remove(&digest(&id));
            }
        }
        self.set_cookie("", 0)
    }

    fn set_cookie(&self, value: &str, max_age: u64) -> String {
        format!(
            "{COOKIE_NAME}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// A login form's CSRF token, bound to a short-lived cookie (double submit): the
    /// `Set-Cookie` value and the token.
    pub fn login_csrf(&self) -> (String, String) {
        let token = random_hex();
        let cookie = format!(
            "mapreg_login={token}; Path=/console/login; Max-Age=3600; HttpOnly; SameSite=Strict{}",
            if self.secure { "; Secure" } else { "" }
        );
        (cookie, token)
    }

    /// Whether a login form's CSRF token matches its cookie.
    pub fn login_csrf_ok(&self, headers: &HeaderMap, token: &str) -> bool {
        cookie(headers, "mapreg_login").is_some_and(|c| !c.is_empty() && same(&c, token))
    }
}

/// Whether a posted CSRF token is the viewer's.
pub fn csrf_ok(viewer: &Viewer, posted: &str) -> bool {
    same(&viewer.csrf, posted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TokenConfig;

    #[test]
    fn sessions_keep_only_hashes_and_expire_on_logout() {
        let auth = Authenticator::new(
            &[TokenConfig {
                sha256: crate::auth::token_hash("t-reader"),
                account_id: "111122223333".into(),
                role: Role::Reader,
                name: None,
            }],
            &[],
        );
        let s = Sessions::new(auth, true);
        assert!(s.login("wrong").is_err());
        let set = s.login("t-reader").unwrap();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Secure")
        );
        let id = set
            .split(';')
            .next()
            .and_then(|kv| kv.split_once('='))
            .map(|(_, v)| v.to_string())
            .unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            format!("other=1; {COOKIE_NAME}={id}").parse().unwrap(),
        );
        let v = s.viewer(&h).expect("logged in");
        assert_eq!(v.caller.role, Role::Reader);
        assert!(!v.writes());
        assert!(csrf_ok(&v, &v.csrf) && !csrf_ok(&v, "forged"));
        // Only the hash is kept.
        assert!(!s.open.lock().unwrap().contains_key(&[0u8; 32]));
        assert!(s.open.lock().unwrap().contains_key(&digest(&id)));
        s.logout(&h);
        assert!(s.viewer(&h).is_none());
    }
}
