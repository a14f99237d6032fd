//! Syntactic validation of request fields.
//!
//! Every function here is pure and total: it never panics, whatever the input (including
//! multi-byte UTF-8), and every failure is [`Error::invalid`] with the proto field name and a
//! message that names the field and says what is allowed. Limits stated "in characters" count
//! Unicode scalar values (`chars()`), not bytes.
//!
//! These checks are about shape only; whether a well-formed id exists is decided by the store.

use std::collections::HashMap;

use crate::error::{Error, Result};

/// Page size used when a request leaves `max_results` at 0.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Largest `max_results` a request may ask for.
pub const MAX_PAGE_SIZE: usize = 1000;

/// Longest API name, in characters.
const MAX_API_NAME: usize = 128;
/// Longest description, in characters.
const MAX_DESCRIPTION: usize = 1024;
/// Most tags on one resource.
pub const MAX_TAGS: usize = 50;
/// Longest tag key, in characters.
const MAX_TAG_KEY: usize = 128;
/// Longest tag value, in characters.
const MAX_TAG_VALUE: usize = 256;
/// Reserved tag key prefix (compared ASCII case-insensitively).
const RESERVED_TAG_PREFIX: &str = "aws:";
/// The stage name that is accepted verbatim despite its `$`.
const DEFAULT_STAGE: &str = "$default";
/// Longest stage name, in characters.
const MAX_STAGE_NAME: usize = 128;
/// Longest `api_mapping_key`, in characters (all ASCII).
pub const MAX_API_MAPPING_KEY: usize = 300;
/// Punctuation allowed in an API mapping key besides `/`.
const API_MAPPING_KEY_PUNCTUATION: &str = "$-_.+!*'()";
/// Longest domain name, in characters.
const MAX_DOMAIN_NAME: usize = 253;
/// Longest label of a domain name, in characters.
const MAX_DOMAIN_LABEL: usize = 63;
/// Longest looked-up identifier (`api_id`, `api_mapping_id`), in characters.
const MAX_RESOURCE_ID: usize = 128;
/// Longest certificate ARN, in characters.
const MAX_CERTIFICATE_ARN: usize = 2048;
/// How many characters of user input are echoed back in an error message.
const MAX_ECHO: usize = 64;

/// Quotes `s` for an error message: at most [`MAX_ECHO`] characters (cut at a character
/// boundary, with `…` appended when cut), control characters escaped.
fn echo(s: &str) -> String {
    let mut chars = s.chars();
    let head: String = chars.by_ref().take(MAX_ECHO).collect();
    if chars.next().is_some() {
        format!("{head:?}…")
    } else {
        format!("{head:?}")
    }
}

/// Validates an API name.
///
/// Guarantees on `Ok`: `name` is 1 to 128 characters long. Any characters are allowed.
/// Errors are on field `name`.
pub fn api_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(
            "name",
            "name is required (1 to 128 characters)",
        ));
    }
    if name.chars().count() > MAX_API_NAME {
        return Err(Error::invalid(
            "name",
            format!("name is longer than {MAX_API_NAME} characters (1 to {MAX_API_NAME} allowed)"),
        ));
    }
    Ok(())
}

/// Validates a free-text description on `field`.
///
/// Guarantees on `Ok`: `d` is at most 1024 characters long (empty is allowed).
pub fn description(field: &str, d: &str) -> Result<()> {
    if d.chars().count() > MAX_DESCRIPTION {
        return Err(Error::invalid(
            field,
            format!("{field} is longer than {MAX_DESCRIPTION} characters"),
        ));
    }
    Ok(())
}

/// Validates a resource's tag map.
///
/// Guarantees on `Ok`: at most 50 tags; every key is 1 to 128 characters and does not start
/// with the reserved prefix `aws:` (in any ASCII case); every value is at most 256 characters
/// (empty values are allowed). Keys are checked in sorted order so the reported key is
/// deterministic. Errors are on field `tags` and quote the offending key (cut to 64 characters).
pub fn tags(tags: &HashMap<String, String>) -> Result<()> {
    let refuse = |message: String| Err(Error::invalid("tags", message));
    if tags.len() > MAX_TAGS {
        return refuse(format!(
            "tags: at most {MAX_TAGS} tags are allowed, got {}",
            tags.len()
        ));
    }
    let mut entries: Vec<(&String, &String)> = tags.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    for (key, value) in entries {
        if key.is_empty() {
            return refuse(format!(
                "tags: a tag key is empty (keys are 1 to {MAX_TAG_KEY} characters)"
            ));
        }
        if key.chars().count() > MAX_TAG_KEY {
            return refuse(format!(
                "tags: key {} is longer than {MAX_TAG_KEY} characters",
                echo(key)
            ));
        }
        if key
            .get(..RESERVED_TAG_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(RESERVED_TAG_PREFIX))
        {
            return refuse(format!(
                "tags: key {} uses the reserved prefix \"{RESERVED_TAG_PREFIX}\"",
                echo(key)
            ));
        }
        if value.chars().count() > MAX_TAG_VALUE {
            return refuse(format!(
                "tags: the value of key {} is longer than {MAX_TAG_VALUE} characters",
                echo(key)
            ));
        }
    }
    Ok(())
}

/// Validates the tag keys an UntagResource removes.
///
/// Guarantees on `Ok`: 1 to 50 keys, each 1 to 128 characters. Errors are on field `tag_keys`.
pub fn tag_keys(keys: &[String]) -> Result<()> {
    let refuse = |message: String| Err(Error::invalid("tag_keys", message));
    if keys.is_empty() {
        return refuse("tag_keys is required: name at least one tag key to remove".into());
    }
    if keys.len() > MAX_TAGS {
        return refuse(format!(
            "tag_keys: at most {MAX_TAGS} keys are allowed, got {}",
            keys.len()
        ));
    }
    for key in keys {
        if key.is_empty() || key.chars().count() > MAX_TAG_KEY {
            return refuse(format!(
                "tag_keys: key {} is not 1 to {MAX_TAG_KEY} characters",
                echo(key)
            ));
        }
    }
    Ok(())
}

/// Validates a stage name on `field` (`stage_name` for stage RPCs, `stage` for mapping RPCs).
///
/// Guarantees on `Ok`: `s` is exactly `$default`, or 1 to 128 characters of ASCII letters,
/// digits, `_` and `-`. A valid stage name is therefore pure ASCII.
pub fn stage_name(field: &str, s: &str) -> Result<()> {
    if s == DEFAULT_STAGE {
        return Ok(());
    }
    if s.is_empty() {
        return Err(Error::invalid(
            field,
            format!(
                "{field} is required ($default, or 1 to {MAX_STAGE_NAME} characters of letters, numbers, '-' and '_')"
            ),
        ));
    }
    if s.chars().count() > MAX_STAGE_NAME {
        return Err(Error::invalid(
            field,
            format!("{field} is longer than {MAX_STAGE_NAME} characters"),
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(Error::invalid(
            field,
            format!(
                "{field} may be $default or contain only letters, numbers, '-' and '_'; found {c:?}"
            ),
        ));
    }
    Ok(())
}

/// Validates an API mapping key.
///
/// Guarantees on `Ok`: `key` is empty (the root mapping), or it is at most 300 characters of
/// ASCII letters, digits, `$-_.+!*'()` and `/`, with no leading `/`, no trailing `/` and no
/// empty level (`//`). A valid key is therefore pure ASCII, and splitting it on `/` yields only
/// non-empty levels. Checks run in this order: length, characters, leading slash, trailing
/// slash, empty level. Errors are on field `api_mapping_key`.
pub fn api_mapping_key(key: &str) -> Result<()> {
    let refuse = |message: String| Err(Error::invalid("api_mapping_key", message));
    if key.is_empty() {
        return Ok(());
    }
    if key.chars().count() > MAX_API_MAPPING_KEY {
        return refuse(format!(
            "api_mapping_key is longer than {MAX_API_MAPPING_KEY} characters"
        ));
    }
    if let Some(c) = key.chars().find(|c| !is_key_char(*c)) {
        return refuse(format!(
            "api_mapping_key: An ApiMapping key may contain only letters, numbers and one of {API_MAPPING_KEY_PUNCTUATION}, plus / between levels; found {c:?}"
        ));
    }
    if key.starts_with('/') {
        return refuse(
            "api_mapping_key must not start with '/' (write \"v1\", not \"/v1\")".into(),
        );
    }
    if key.ends_with('/') {
        return refuse("api_mapping_key must not end with '/' (write \"v1\", not \"v1/\")".into());
    }
    if key.contains("//") {
        return refuse("api_mapping_key must not contain an empty level (\"//\")".into());
    }
    Ok(())
}

/// Whether `c` may appear in an API mapping key: a letter, a digit, `/` or one of
/// `$-_.+!*'()`.
pub fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '/' || API_MAPPING_KEY_PUNCTUATION.contains(c)
}

/// Whether `key` is a multi-level API mapping key, i.e. contains `/`.
///
/// Meaningful for keys that passed [`api_mapping_key`]; the empty (root) key is single-level.
pub fn is_multi_level(key: &str) -> bool {
    key.contains('/')
}

/// Lower-cases (ASCII) and validates a domain name as an RFC 1123 host name on `field`.
///
/// Guarantees on `Ok`: the returned name is ASCII lower-case, at most 253 characters, and has
/// at least two labels separated by `.`; every label is 1 to 63 characters of `[a-z0-9-]`
/// that neither starts nor ends with `-`, except that the first label may be exactly `*`
/// (a wildcard name such as `*.example.com`). No trailing dot, no empty labels, no
/// underscores, no non-ASCII characters (IDNs must be given in punycode, `xn--…`).
pub fn normalize_domain_name(field: &str, raw: &str) -> Result<String> {
    let refuse = |message: String| Err(Error::invalid(field, message));
    if raw.is_empty() {
        return refuse(format!("{field} is required"));
    }
    if raw.chars().count() > MAX_DOMAIN_NAME {
        return refuse(format!(
            "{field} is longer than {MAX_DOMAIN_NAME} characters"
        ));
    }
    let name = raw.to_ascii_lowercase();
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 2 {
        return refuse(format!(
            "{field} {} must have at least two labels separated by '.', like example.com",
            echo(raw)
        ));
    }
    for (i, label) in labels.iter().enumerate() {
        if label.is_empty() {
            return refuse(format!(
                "{field} {} has an empty label (leading, trailing or double '.')",
                echo(raw)
            ));
        }
        if *label == "*" {
            if i == 0 {
                continue;
            }
            return refuse(format!(
                "{field}: label \"*\" is allowed only as the whole first label, like *.example.com"
            ));
        }
        if label.contains('*') {
            return refuse(format!(
                "{field}: label {} is invalid; '*' is allowed only as the whole first label, like *.example.com",
                echo(label)
            ));
        }
        if label.chars().count() > MAX_DOMAIN_LABEL {
            return refuse(format!(
                "{field}: label {} is longer than {MAX_DOMAIN_LABEL} characters",
                echo(label)
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return refuse(format!(
                "{field}: label {} contains {c:?}; labels may contain only letters, numbers and '-'",
                echo(label)
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return refuse(format!(
                "{field}: label {} must not start or end with '-'",
                echo(label)
            ));
        }
    }
    // An all-digit top-level label makes an IP address (10.0.0.1), which is nobody's domain.
    if labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return refuse(format!(
            "{field} {} looks like an IP address; its last label must not be all digits",
            echo(raw)
        ));
    }
    Ok(name)
}

/// Validates the shape of an identifier that is looked up (`api_id`, `api_mapping_id`) on
/// `field`.
///
/// Guarantees on `Ok`: `id` is 1 to 128 characters. Nothing else is checked: a well-formed
/// but unknown id is answered `NOT_FOUND` by the store, not here.
pub fn resource_id(field: &str, id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::invalid(field, format!("{field} is required")));
    }
    if id.chars().count() > MAX_RESOURCE_ID {
        return Err(Error::invalid(
            field,
            format!("{field} is too long (at most {MAX_RESOURCE_ID} characters)"),
        ));
    }
    Ok(())
}

/// Validates a certificate ARN.
///
/// Guarantees on `Ok`: `arn` is at most 2048 characters. Empty is allowed (the caller decides
/// whether the field is required); the ARN's syntax is not checked.
pub fn certificate_arn(arn: &str) -> Result<()> {
    if arn.chars().count() > MAX_CERTIFICATE_ARN {
        return Err(Error::invalid(
            "certificate_arn",
            format!("certificate_arn is longer than {MAX_CERTIFICATE_ARN} characters"),
        ));
    }
    Ok(())
}

/// Turns a request's `max_results` into a page size.
///
/// Guarantees on `Ok`: the result is in `1..=MAX_PAGE_SIZE`; 0 means [`DEFAULT_PAGE_SIZE`].
/// Negative values and values above [`MAX_PAGE_SIZE`] are refused on field `max_results`.
pub fn page_size(max_results: i32) -> Result<usize> {
    match usize::try_from(max_results) {
        Ok(0) => Ok(DEFAULT_PAGE_SIZE),
        Ok(n) if n <= MAX_PAGE_SIZE => Ok(n),
        _ => Err(Error::invalid(
            "max_results",
            format!(
                "max_results must be between 0 and {MAX_PAGE_SIZE} (0 means {DEFAULT_PAGE_SIZE}); got {max_results}"
            ),
        )),
    }
}

/// Tags from `(key, value)` pairs: the tests' shorthand.
#[cfg(test)]
pub(crate) fn tag_map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_SENTENCE: &str =
        "An ApiMapping key may contain only letters, numbers and one of $-_.+!*'()";

    /// Asserts `r` is an `InvalidArgument` on `field` with reason `INVALID_<FIELD>`, and returns
    /// its message.
    #[track_caller]
    fn invalid_on<T: std::fmt::Debug>(r: Result<T>, want_field: &str) -> String {
        match r {
            Err(Error::InvalidArgument {
                field,
                reason,
                message,
            }) => {
                assert_eq!(field, want_field, "field of {message:?}");
                assert_eq!(
                    reason,
                    format!("INVALID_{}", want_field.to_ascii_uppercase())
                );
                message
            }
            other => panic!("expected InvalidArgument on {want_field}, got {other:?}"),
        }
    }

    // ---- api_name / description / certificate_arn / resource_id ----

    #[test]
    fn api_name_limits() {
        assert!(api_name("a").is_ok());
        assert!(api_name(&"n".repeat(128)).is_ok());
        assert!(api_name(&"é".repeat(128)).is_ok(), "counted in characters");
        let m = invalid_on(api_name(""), "name");
        assert_eq!(m, "name is required (1 to 128 characters)");
        let m = invalid_on(api_name(&"n".repeat(129)), "name");
        assert!(m.starts_with("name"), "{m}");
        invalid_on(api_name(&"é".repeat(129)), "name");
    }

    /// `check` takes "" and `max` characters (of one byte and of three), refuses `max` + 1 on
    /// `field` with a message that starts with the field's name.
    #[track_caller]
    fn optional_up_to(check: impl Fn(&str) -> Result<()>, field: &str, max: usize) {
        for ok in [String::new(), "d".repeat(max), "日".repeat(max)] {
            assert!(check(&ok).is_ok(), "{} characters", ok.chars().count());
        }
        let m = invalid_on(check(&"d".repeat(max + 1)), field);
        assert!(m.starts_with(field), "{m}");
    }

    #[test]
    fn description_limits() {
        optional_up_to(|d| description("description", d), "description", 1024);
    }

    #[test]
    fn certificate_arn_limits() {
        optional_up_to(certificate_arn, "certificate_arn", 2048);
    }

    #[test]
    fn resource_id_limits() {
        assert!(resource_id("api_id", "abc123defg").is_ok());
        assert!(resource_id("api_id", "no-such-but-well-formed").is_ok());
        assert!(resource_id("api_mapping_id", &"x".repeat(128)).is_ok());
        let m = invalid_on(resource_id("api_id", ""), "api_id");
        assert_eq!(m, "api_id is required");
        let m = invalid_on(
            resource_id("api_mapping_id", &"x".repeat(129)),
            "api_mapping_id",
        );
        assert!(m.starts_with("api_mapping_id is too long"), "{m}");
    }

    // ---- tags ----

    #[test]
    fn tags_count() {
        let fifty: HashMap<String, String> = (0..50)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        assert!(tags(&fifty).is_ok());
        assert!(tags(&HashMap::new()).is_ok());
        let fifty_one: HashMap<String, String> = (0..51)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        let m = invalid_on(tags(&fifty_one), "tags");
        assert!(m.contains("50"), "{m}");
    }

    #[test]
    fn tags_keys_and_values() {
        assert!(tags(&tag_map(&[("env", ""), ("team", "payments")])).is_ok());
        assert!(tags(&tag_map(&[(&"k".repeat(128), &"v".repeat(256))])).is_ok());
        assert!(tags(&tag_map(&[("awsx", "v"), ("my:aws:x", "v")])).is_ok());

        invalid_on(tags(&tag_map(&[("", "v")])), "tags");
        let m = invalid_on(tags(&tag_map(&[(&"k".repeat(129), "v")])), "tags");
        assert!(m.contains('…'), "long key is echoed cut: {m}");
        assert!(!m.contains(&"k".repeat(65)), "{m}");
        let m = invalid_on(tags(&tag_map(&[("big", &"v".repeat(257))])), "tags");
        assert!(m.contains("\"big\""), "{m}");
    }

    #[test]
    fn tags_reserved_prefix() {
        let m = invalid_on(tags(&tag_map(&[("aws:x", "v")])), "tags");
        assert!(m.contains("\"aws:x\""), "{m}");
        invalid_on(tags(&tag_map(&[("AWS:x", "v")])), "tags");
        invalid_on(tags(&tag_map(&[("aws:", "v")])), "tags");
    }

    #[test]
    fn tags_multibyte_keys_do_not_panic() {
        // A multi-byte character straddling byte 4 and a long multi-byte key.
        assert!(tags(&tag_map(&[("awé:x", "v"), ("日本語", "値")])).is_ok());
        let long = "日".repeat(200);
        let m = invalid_on(tags(&tag_map(&[(&long, "v")])), "tags");
        assert!(
            m.contains(&"日".repeat(64)) && !m.contains(&"日".repeat(65)),
            "{m}"
        );
    }

    // ---- stage_name ----

    #[test]
    fn stage_names_accepted() {
        for s in ["$default", "prod_1-x", "a", "PROD", &"s".repeat(128)] {
            assert!(stage_name("stage_name", s).is_ok(), "{s}");
        }
    }

    #[test]
    fn stage_names_refused() {
        for s in ["$prod", "a b", "$Default", "prod.1", "é", ""] {
            let m = invalid_on(stage_name("stage_name", s), "stage_name");
            assert!(m.starts_with("stage_name"), "{m}");
        }
        invalid_on(stage_name("stage_name", &"s".repeat(129)), "stage_name");
        let m = invalid_on(stage_name("stage", "a b"), "stage");
        assert!(m.starts_with("stage "), "{m}");
    }

    // ---- api_mapping_key ----

    #[test]
    fn mapping_key_length() {
        assert!(api_mapping_key("").is_ok());
        assert!(api_mapping_key(&"k".repeat(300)).is_ok());
        let m = invalid_on(api_mapping_key(&"k".repeat(301)), "api_mapping_key");
        assert_eq!(m, "api_mapping_key is longer than 300 characters");
    }

    #[test]
    fn mapping_key_accepted() {
        for k in [
            "v1",
            "orders/v1/items",
            "$default",
            "$-_.+!*'()",
            "a$b-c_d.e+f!g*h'i(j)k",
            "v1/$default/x",
            "V1.2",
        ] {
            assert!(api_mapping_key(k).is_ok(), "{k}");
        }
        for c in "$-_.+!*'()".chars() {
            let k = format!("v{c}1/{c}");
            assert!(api_mapping_key(&k).is_ok(), "{k}");
        }
    }

    #[test]
    fn mapping_key_bad_characters() {
        for k in ["v1?x", "v 1", "é", "v1#", "a\\b", "v1%20", "a\0b", "日本"] {
            let m = invalid_on(api_mapping_key(k), "api_mapping_key");
            assert!(m.contains(KEY_SENTENCE), "{k}: {m}");
            assert!(m.starts_with("api_mapping_key"), "{m}");
        }
    }

    #[test]
    fn mapping_key_slashes() {
        let lead = invalid_on(api_mapping_key("/v1"), "api_mapping_key");
        let trail = invalid_on(api_mapping_key("v1/"), "api_mapping_key");
        let double = invalid_on(api_mapping_key("v1//x"), "api_mapping_key");
        assert!(lead.contains("start"), "{lead}");
        assert!(trail.contains("end"), "{trail}");
        assert!(double.contains("empty level"), "{double}");
        invalid_on(api_mapping_key("/"), "api_mapping_key");
        invalid_on(api_mapping_key("//"), "api_mapping_key");
    }

    #[test]
    fn multi_level() {
        assert!(!is_multi_level(""));
        assert!(!is_multi_level("v1"));
        assert!(is_multi_level("orders/v1"));
    }

    // ---- domain names ----

    const D: &str = "domain_name";

    #[test]
    fn domain_names_accepted_and_lowercased() {
        assert_eq!(
            normalize_domain_name(D, "API.Example.COM").ok().as_deref(),
            Some("api.example.com")
        );
        for d in [
            "example.com",
            "*.example.com",
            "*.com",
            "a-b.c0.example",
            "123.example.com",
            "xn--bcher-kva.example",
        ] {
            assert_eq!(normalize_domain_name(D, d).ok().as_deref(), Some(d), "{d}");
        }
    }

    #[test]
    fn domain_names_refused() {
        for d in [
            "a.*.example.com",
            "*a.example.com",
            "*",
            "ex_ample.com",
            "-a.com",
            "a-.com",
            "localhost",
            "example.com.",
            ".example.com",
            "a..com",
            "ex ample.com",
            "bücher.example",
            "*.*.com",
            "10.0.0.1",
            "*.0.0.1",
            "a.b.123",
        ] {
            let m = invalid_on(normalize_domain_name(D, d), D);
            assert!(m.starts_with(D), "{d}: {m}");
        }
        let m = invalid_on(normalize_domain_name(D, ""), D);
        assert_eq!(m, "domain_name is required");
        let m = invalid_on(normalize_domain_name("domain", "ex_ample.com"), "domain");
        assert!(m.contains("\"ex_ample\""), "names the label: {m}");
        let m = invalid_on(normalize_domain_name(D, "10.0.0.1"), D);
        assert!(m.contains("IP address"), "{m}");
        assert!(normalize_domain_name(D, "1.example.com2").is_ok());
    }

    #[test]
    fn domain_name_lengths() {
        let l63 = "a".repeat(63);
        let l64 = "a".repeat(64);
        assert!(normalize_domain_name(D, &format!("{l63}.com")).is_ok());
        let m = invalid_on(normalize_domain_name(D, &format!("{l64}.com")), D);
        assert!(m.contains("63"), "{m}");

        // 3 * 63 + 3 dots + 61 = 253; one more character is 254.
        let n253 = format!("{l63}.{l63}.{l63}.{}", "a".repeat(61));
        assert_eq!(n253.chars().count(), 253);
        assert!(normalize_domain_name(D, &n253).is_ok(), "253 characters");
        let n254 = format!("{n253}a");
        assert_eq!(n254.chars().count(), 254);
        let m = invalid_on(normalize_domain_name(D, &n254), D);
        assert!(m.contains("253"), "{m}");
        invalid_on(normalize_domain_name(D, &"é".repeat(300)), D);
    }

    // ---- page_size ----

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(0).ok(), Some(DEFAULT_PAGE_SIZE));
        assert_eq!(page_size(1).ok(), Some(1));
        assert_eq!(page_size(1000).ok(), Some(MAX_PAGE_SIZE));
        for bad in [1001, -1, i32::MIN, i32::MAX] {
            let m = invalid_on(page_size(bad), "max_results");
            assert!(m.contains("1000"), "{m}");
        }
    }

    #[test]
    fn echo_cuts_at_char_boundaries() {
        assert_eq!(echo("abc"), "\"abc\"");
        let e = echo(&"é".repeat(100));
        assert_eq!(e, format!("{:?}…", "é".repeat(64)));
        assert_eq!(echo("a\nb"), "\"a\\nb\"");
    }
}
