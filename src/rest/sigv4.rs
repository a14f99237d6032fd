//! AWS Signature Version 4, verified as API Gateway verifies it (what botocore's `SigV4Auth`
//! and the other AWS SDKs sign for service `apigateway`).
//!
//! A request carries `Authorization: AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/SERVICE/aws4_request,
//! SignedHeaders=a;b;c, Signature=HEX` and `X-Amz-Date: YYYYMMDDTHHMMSSZ`. The server rebuilds
//! the canonical request from what it received and checks the HMAC chain:
//!
//! | part | how it is built |
//! |---|---|
//! | method | as sent, upper case |
//! | canonical URI | the raw path as received (still percent-encoded), `.`/`..`/empty segments removed, then percent-encoded **again** (every byte but `A-Za-z0-9-_.~/`): services other than S3 double-encode |
//! | canonical query | each `name=value` pair percent-decoded and re-encoded (every byte but `A-Za-z0-9-_.~`), sorted by name then value |
//! | canonical headers | each signed header `name:value`, names lower case and sorted, values trimmed with inner whitespace runs collapsed, repeated headers joined by `,` |
//! | payload hash | `X-Amz-Content-SHA256` when sent (it must then be the body's hash), else hex SHA-256 of the body |
//!
//! String to sign: `AWS4-HMAC-SHA256\nX-AMZ-DATE\nDATE/REGION/SERVICE/aws4_request\nhex(sha256(canonical request))`;
//! key: `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, DATE), REGION), SERVICE), "aws4_request")`.
//!
//! Also checked: the scope's service is `apigateway`, its date is the `X-Amz-Date`'s, the
//! terminator is `aws4_request`; `host` and `x-amz-date` are signed; the time is within
//! [`MAX_SKEW_SECS`] of the server's clock. The signature is compared in constant time. Any
//! region is accepted (mapreg has none; the region only appears in ARNs it answers).

use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::{Digest, Sha256};

use super::time;

/// The signing name of API Gateway (v1 and v2 alike).
pub const SERVICE: &str = "apigateway";
/// The only algorithm accepted.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// How far `X-Amz-Date` may be from the server's clock, either way (AWS's 15 minutes).
pub const MAX_SKEW_SECS: i64 = 15 * 60;

type HmacSha256 = Hmac<Sha256>;

/// RFC 3986 unreserved characters stay; everything else is encoded (query names and values).
const QUERY_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// As [`QUERY_SET`], and `/` stays (paths).
const PATH_SET: &AsciiSet = &QUERY_SET.remove(b'/');

/// Why a signature was not accepted. Each maps to one AWS error (see `rest::error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigError {
    /// No `Authorization` header (and no presigned query).
    Missing,
    /// The header or the request lacks something SigV4 needs; the message says what.
    Incomplete(String),
    /// The scope or the time is wrong; the message says how (AWS's `InvalidSignatureException`).
    Invalid(String),
    /// The signature does not match; what the server computed, as AWS shows it.
    Mismatch {
        /// The canonical request the server built.
        canonical_request: String,
        /// The string to sign the server built.
        string_to_sign: String,
    },
    /// `X-Amz-Content-SHA256` is not the body's hash.
    ContentSha256Mismatch,
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The access key id.
    pub access_key_id: String,
    /// The scope's date, `YYYYMMDD`.
    pub date: String,
    /// The scope's region.
    pub region: String,
    /// The scope's service.
    pub service: String,
    /// The scope's terminator (`aws4_request`).
    pub terminator: String,
    /// Signed header names, as listed (lower case, `;`-separated in the header).
    pub signed_headers: Vec<String>,
    /// The signature, hex.
    pub signature: String,
}

impl Authorization {
    /// `DATE/REGION/SERVICE/TERMINATOR`.
    pub fn scope(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.date, self.region, self.service, self.terminator
        )
    }
}

/// Parses an `Authorization` header value.
pub fn parse_authorization(value: &str) -> Result<Authorization, SigError> {
    let (algorithm, rest) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    if algorithm != ALGORITHM {
        return Err(SigError::Incomplete(format!(
            "Unsupported authorization type or algorithm {:?}: only {ALGORITHM} (Signature Version 4) is accepted",
            algorithm.chars().take(40).collect::<String>()
        )));
    }
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let Some((k, v)) = part.trim().split_once('=') else {
            continue;
        };
        match k.trim() {
            "Credential" => credential = Some(v.trim()),
            "SignedHeaders" => signed = Some(v.trim()),
            "Signature" => signature = Some(v.trim()),
            _ => {}
        }
    }
    let mut missing = Vec::new();
    for (name, v) in [
        ("Credential", credential),
        ("Signature", signature),
        ("SignedHeaders", signed),
    ] {
        if v.is_none_or(str::is_empty) {
            missing.push(format!("Authorization header requires '{name}' parameter."));
        }
    }
    if !missing.is_empty() {
        return Err(SigError::Incomplete(missing.join(" ")));
    }
    let (credential, signed, signature) = (
        credential.unwrap_or_default(),
        signed.unwrap_or_default(),
        signature.unwrap_or_default(),
    );
    let parts: Vec<&str> = credential.split('/').collect();
    let [key, date, region, service, terminator] = parts.as_slice() else {
        return Err(SigError::Incomplete(format!(
            "Credential must have the form ACCESS_KEY_ID/YYYYMMDD/REGION/SERVICE/aws4_request, got {:?}",
            credential.chars().take(200).collect::<String>()
        )));
    };
    if key.is_empty() || region.is_empty() {
        return Err(SigError::Incomplete(
            "Credential names no access key id or no region".into(),
        ));
    }
    Ok(Authorization {
        access_key_id: (*key).to_string(),
        date: (*date).to_string(),
        region: (*region).to_string(),
        service: (*service).to_string(),
        terminator: (*terminator).to_string(),
        signed_headers: signed.split(';').map(|h| h.trim().to_string()).collect(),
        signature: signature.to_string(),
    })
}

/// What of a received request the signature covers.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    /// The method, e.g. `POST`.
    pub method: &'a str,
    /// The path as received, still percent-encoded.
    pub raw_path: &'a str,
    /// The query string as received (without `?`), if any.
    pub raw_query: Option<&'a str>,
    /// The headers.
    pub headers: &'a http::HeaderMap,
    /// The URI's authority (HTTP/2's `:authority`), used when no `Host` header came.
    pub authority: Option<&'a str>,
    /// The body.
    pub body: &'a [u8],
}

/// Checks `req` against `auth`, signed with `secret`, at server time `now` (Unix seconds).
pub fn verify(
    req: &Received<'_>,
    auth: &Authorization,
    secret: &str,
    now: i64,
) -> Result<(), SigError> {
    let amz_date = header(req.headers, "x-amz-date").ok_or_else(|| {
        SigError::Incomplete(
            "Authorization header requires existence of an 'X-Amz-Date' header (YYYYMMDDTHHMMSSZ)."
                .into(),
        )
    })?;
    let Some(signed_at) = time::parse_amz_date(&amz_date) else {
        return Err(SigError::Incomplete(format!(
            "X-Amz-Date must be YYYYMMDDTHHMMSSZ, got {:?}",
            amz_date.chars().take(40).collect::<String>()
        )));
    };
    for needed in ["host", "x-amz-date"] {
        if !auth.signed_headers.iter().any(|h| h == needed) {
            return Err(SigError::Incomplete(format!(
                "'{needed}' must be a 'SignedHeader' in the AWS Authorization."
            )));
        }
    }
    if auth.service != SERVICE {
        return Err(SigError::Invalid(format!(
            "Credential should be scoped to correct service: '{SERVICE}'. "
        )));
    }
    if auth.terminator != "aws4_request" {
        return Err(SigError::Invalid(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{}'. ",
            auth.terminator
        )));
    }
    if amz_date.get(..8) != Some(auth.date.as_str()) {
        return Err(SigError::Invalid(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from '{amz_date}'.",
            auth.date,
            amz_date.get(..8).unwrap_or_default()
        )));
    }
    if signed_at < now - MAX_SKEW_SECS {
        return Err(SigError::Invalid(format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - 15 min.)",
            time::amz_date(now - MAX_SKEW_SECS),
            time::amz_date(now)
        )));
    }
    if signed_at > now + MAX_SKEW_SECS {
        return Err(SigError::Invalid(format!(
            "Signature not yet current: {amz_date} is still later than {} ({} + 15 min.)",
            time::amz_date(now + MAX_SKEW_SECS),
            time::amz_date(now)
        )));
    }
    let body_hash = hex::encode(Sha256::digest(req.body));
    let declared = header(req.headers, "x-amz-content-sha256");
    if let Some(d) = &declared {
        if d == "UNSIGNED-PAYLOAD" || d.starts_with("STREAMING-") {
            return Err(SigError::Incomplete(format!(
                "X-Amz-Content-SHA256 {d:?} is not accepted: sign the body (its hex SHA-256)"
            )));
        }
    }
    let payload_hash = declared.clone().unwrap_or_else(|| body_hash.clone());
    let canonical_request = canonical_request(req, &auth.signed_headers, &payload_hash);
    let string_to_sign = string_to_sign(&amz_date, &auth.scope(), &canonical_request);
    let key = signing_key(secret, &auth.date, &auth.region, &auth.service);
    let mut mac = HmacSha256::new_from_slice(&key)
        .map_err(|_| mismatch(&canonical_request, &string_to_sign))?;
    mac.update(string_to_sign.as_bytes());
    let provided = hex::decode(&auth.signature).unwrap_or_default();
    if mac.verify_slice(&provided).is_err() {
        return Err(mismatch(&canonical_request, &string_to_sign));
    }
    // The signature covers the declared hash; the body must be what was declared.
    if declared.is_some_and(|d| !d.eq_ignore_ascii_case(&body_hash)) {
        return Err(SigError::ContentSha256Mismatch);
    }
    Ok(())
}

fn mismatch(canonical_request: &str, string_to_sign: &str) -> SigError {
    SigError::Mismatch {
        canonical_request: canonical_request.to_string(),
        string_to_sign: string_to_sign.to_string(),
    }
}

/// A header's values joined by `,` (None when absent), lossily decoded.
fn header(headers: &http::HeaderMap, name: &str) -> Option<String> {
    let mut values = headers.get_all(name).iter().peekable();
    values.peek()?;
    Some(
        values
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// The canonical request of `req` for `signed_headers`, with `payload_hash`.
pub fn canonical_request(
    req: &Received<'_>,
    signed_headers: &[String],
    payload_hash: &str,
) -> String {
    let mut names: Vec<&str> = signed_headers.iter().map(String::as_str).collect();
    names.sort_unstable();
    names.dedup();
    let mut headers = String::new();
    for name in &names {
        let values: Vec<String> = req
            .headers
            .get_all(*name)
            .iter()
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        let value = match values.is_empty() {
            false => values.join(","),
            true if *name == "host" => req.authority.unwrap_or_default().to_string(),
            true => String::new(),
        };
        headers.push_str(name);
        headers.push(':');
        headers.push_str(&value);
        headers.push('\n');
    }
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method.to_ascii_uppercase(),
        canonical_uri(req.raw_path),
        canonical_query(req.raw_query.unwrap_or_default()),
        headers,
        names.join(";"),
        payload_hash
    )
}

/// The raw path with dot and empty segments removed (as botocore's `remove_dot_segments`),
/// then percent-encoded again.
pub fn canonical_uri(raw_path: &str) -> String {
    if raw_path.is_empty() {
        return "/".into();
    }
    let mut out: Vec<&str> = Vec::new();
    for seg in raw_path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let first = if raw_path.starts_with('/') { "/" } else { "" };
    let last = if raw_path.ends_with('/') && !out.is_empty() {
        "/"
    } else {
        ""
    };
    let normalized = format!("{first}{}{last}", out.join("/"));
    utf8_percent_encode(&normalized, PATH_SET).to_string()
}

/// The `key=value` pairs of a raw query string, in order and still percent-encoded: empty
/// pairs are skipped, and a pair without `=` has the value `""`.
pub fn query_pairs(raw_query: &str) -> impl Iterator<Item = (&str, &str)> {
    raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// The query's pairs, decoded, re-encoded strictly and sorted by name then value.
pub fn canonical_query(raw_query: &str) -> String {
    let encode = |s: &str| -> String {
        let bytes: Vec<u8> = percent_decode_str(s).collect();
        percent_encoding::percent_encode(&bytes, QUERY_SET).to_string()
    };
    let mut pairs: Vec<(String, String)> = query_pairs(raw_query)
        .map(|(k, v)| (encode(k), encode(v)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The string to sign.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

/// The signing key for `secret` on `date` in `region` for `service`.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    for part in [region, service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    key
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Signs a request as an AWS SDK would (for tests and tools): the `Authorization` value for
/// `req` signed with `key_id`/`secret` in `region` at `amz_date`, signing `signed_headers`.
pub fn sign(
    req: &Received<'_>,
    signed_headers: &[&str],
    key_id: &str,
    secret: &str,
    region: &str,
    amz_date: &str,
) -> String {
    let date = amz_date.get(..8).unwrap_or_default();
    let names: Vec<String> = signed_headers.iter().map(|h| h.to_string()).collect();
    let payload = hex::encode(Sha256::digest(req.body));
    let cr = canonical_request(req, &names, &payload);
    let scope = format!("{date}/{region}/{SERVICE}/aws4_request");
    let sts = string_to_sign(amz_date, &scope, &cr);
    let key = signing_key(secret, date, region, SERVICE);
    let mut sorted = names.clone();
    sorted.sort();
    format!(
        "{ALGORITHM} Credential={key_id}/{scope}, SignedHeaders={}, Signature={}",
        sorted.join(";"),
        hex::encode(hmac(&key, sts.as_bytes()))
    )
}

#[cfg(test)]
mod tests;
