//! An API's selection expressions (SPEC.md 8.4), as API Gateway v2 has them:
//!
//! | protocol | `route_selection_expression` | `api_key_selection_expression` |
//! |---|---|---|
//! | WEBSOCKET | required, e.g. `$request.body.action` | [`API_KEY_HEADER`] (default) or [`API_KEY_USAGE_IDENTIFIER`] |
//! | HTTP | [`HTTP_ROUTE_SELECTION`], the default and only value | not allowed |
//! | REST | not allowed | not allowed |
//!
//! The same two functions decide a create ([`for_create`]) and an update ([`for_update`],
//! against the stored API's protocol), so a field is refused with the same message whatever
//! the RPC or the edge (gRPC, REST) it came through. Pure; unit-tested below.

use crate::pb::{Api, ProtocolType};

use super::rules::{Violation, protocol_api};

/// The route selection expression of every HTTP API (AWS's default and only value).
pub const HTTP_ROUTE_SELECTION: &str = "${request.method} ${request.path}";
/// A WEBSOCKET API's default API key selection expression.
pub const API_KEY_HEADER: &str = "$request.header.x-api-key";
/// The other API key selection expression a WEBSOCKET API may have.
pub const API_KEY_USAGE_IDENTIFIER: &str = "$context.authorizer.usageIdentifierKey";
/// The longest route selection expression accepted.
pub const MAX_ROUTE_SELECTION: usize = 1024;

/// (field, reason) of the route selection expression.
const ROUTE: (&str, &str) = (
    "route_selection_expression",
    "INVALID_ROUTE_SELECTION_EXPRESSION",
);
/// (field, reason) of the API key selection expression.
const API_KEY: (&str, &str) = (
    "api_key_selection_expression",
    "INVALID_API_KEY_SELECTION_EXPRESSION",
);

/// An API's two selection expressions, as stored ("" where the protocol has none).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Selection {
    /// `route_selection_expression`.
    pub route: String,
    /// `api_key_selection_expression`.
    pub api_key: String,
}

impl Selection {
    /// The expressions an API has now.
    pub fn of(api: &Api) -> Selection {
        Selection {
            route: api.route_selection_expression.clone(),
            api_key: api.api_key_selection_expression.clone(),
        }
    }
}

fn invalid((field, reason): (&'static str, &'static str), message: String) -> Violation {
    Violation::InvalidField {
        field,
        reason,
        message,
    }
}

/// The expressions of a new API of `protocol`, from the request's values ("" = not given):
/// the AWS defaults filled in, or the violation naming the field.
pub fn for_create(
    protocol: ProtocolType,
    route: &str,
    api_key: &str,
) -> Result<Selection, Violation> {
    if protocol == ProtocolType::Websocket && route.is_empty() {
        return Err(invalid(
            ROUTE,
            "route_selection_expression is required for a WEBSOCKET API (e.g. $request.body.action)"
                .into(),
        ));
    }
    for_update(protocol, &Selection::default(), Some(route), Some(api_key))
}

/// The expressions of an API of `protocol` that has `current` after an update setting
/// `route` and `api_key` (None: unchanged). Given values follow the create rules, except
/// that "" resets a field to its default (for a WEBSOCKET API's route: refused, as it has
/// none).
pub fn for_update(
    protocol: ProtocolType,
    current: &Selection,
    route: Option<&str>,
    api_key: Option<&str>,
) -> Result<Selection, Violation> {
    let mut next = current.clone();
    if let Some(r) = route {
        next.route = route_for(protocol, r)?;
    }
    if let Some(k) = api_key {
        next.api_key = api_key_for(protocol, k)?;
    }
    // Fill in what the protocol always has (an API stored before these fields existed).
    match protocol {
        ProtocolType::Http if next.route.is_empty() => next.route = HTTP_ROUTE_SELECTION.into(),
        ProtocolType::Websocket if next.api_key.is_empty() => next.api_key = API_KEY_HEADER.into(),
        _ => {}
    }
    Ok(next)
}

fn route_for(protocol: ProtocolType, r: &str) -> Result<String, Violation> {
    match protocol {
        ProtocolType::Websocket => {
            if r.is_empty() {
                return Err(invalid(
                    ROUTE,
                    "route_selection_expression is required for a WEBSOCKET API (e.g. $request.body.action)"
                        .into(),
                ));
            }
            let well_formed = r.starts_with('$')
                && r.chars().count() <= MAX_ROUTE_SELECTION
                && !r.chars().any(char::is_control);
            if !well_formed {
                return Err(invalid(
                    ROUTE,
                    format!(
                        "route_selection_expression must be a selection expression starting with '$' (e.g. $request.body.action), at most {MAX_ROUTE_SELECTION} characters without control characters"
                    ),
                ));
            }
            Ok(r.to_string())
        }
        ProtocolType::Http => {
            if r.is_empty() || r == HTTP_ROUTE_SELECTION {
                return Ok(HTTP_ROUTE_SELECTION.into());
            }
            Err(invalid(
                ROUTE,
                format!(
                    "route_selection_expression of {} must be {HTTP_ROUTE_SELECTION}",
                    protocol_api(protocol)
                ),
            ))
        }
        _ => {
            if r.is_empty() {
                return Ok(String::new());
            }
            Err(invalid(
                ROUTE,
                format!(
                    "route_selection_expression is not supported for {}",
                    protocol_api(protocol)
                ),
            ))
        }
    }
}

fn api_key_for(protocol: ProtocolType, k: &str) -> Result<String, Violation> {
    if protocol != ProtocolType::Websocket {
        if k.is_empty() {
            return Ok(String::new());
        }
        return Err(invalid(
            API_KEY,
            format!(
                "api_key_selection_expression is supported only for WEBSOCKET APIs, not for {}",
                protocol_api(protocol)
            ),
        ));
    }
    match k {
        "" => Ok(API_KEY_HEADER.into()),
        API_KEY_HEADER | API_KEY_USAGE_IDENTIFIER => Ok(k.to_string()),
        _ => Err(invalid(
            API_KEY,
            format!(
                "api_key_selection_expression must be {API_KEY_HEADER} or {API_KEY_USAGE_IDENTIFIER}"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn field_of(v: Violation) -> (String, String, String) {
        match Error::from(v) {
            Error::InvalidArgument {
                field,
                reason,
                message,
            } => (field, reason, message),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn websocket_requires_a_route_expression_and_defaults_the_api_key() {
        let (field, reason, message) =
            field_of(for_create(ProtocolType::Websocket, "", "").unwrap_err());
        assert_eq!(field, "route_selection_expression");
        assert_eq!(reason, "INVALID_ROUTE_SELECTION_EXPRESSION");
        assert!(
            message.contains("required for a WEBSOCKET API"),
            "{message}"
        );
        let s = for_create(ProtocolType::Websocket, "$request.body.action", "").unwrap();
        assert_eq!(s.route, "$request.body.action");
        assert_eq!(s.api_key, API_KEY_HEADER);
        let s = for_create(
            ProtocolType::Websocket,
            "${request.body.action}",
            API_KEY_USAGE_IDENTIFIER,
        )
        .unwrap();
        assert_eq!(s.api_key, API_KEY_USAGE_IDENTIFIER);
        for bad in ["action", "$a\u{0}b", &format!("${}", "x".repeat(1024))] {
            let (field, _, _) = field_of(for_create(ProtocolType::Websocket, bad, "").unwrap_err());
            assert_eq!(field, "route_selection_expression", "{bad:?}");
        }
        let (field, reason, _) = field_of(
            for_create(
                ProtocolType::Websocket,
                "$request.body.a",
                "$request.header.other",
            )
            .unwrap_err(),
        );
        assert_eq!(field, "api_key_selection_expression");
        assert_eq!(reason, "INVALID_API_KEY_SELECTION_EXPRESSION");
    }

    #[test]
    fn http_has_the_default_route_expression_and_no_api_key() {
        let s = for_create(ProtocolType::Http, "", "").unwrap();
        assert_eq!(
            s,
            Selection {
                route: HTTP_ROUTE_SELECTION.into(),
                api_key: String::new()
            }
        );
        assert_eq!(
            for_create(ProtocolType::Http, HTTP_ROUTE_SELECTION, "").unwrap(),
            s
        );
        let (field, _, message) =
            field_of(for_create(ProtocolType::Http, "$request.body.action", "").unwrap_err());
        assert_eq!(field, "route_selection_expression");
        assert!(message.contains("of an HTTP API must be"), "{message}");
        let (field, _, message) =
            field_of(for_create(ProtocolType::Http, "", API_KEY_HEADER).unwrap_err());
        assert_eq!(field, "api_key_selection_expression");
        assert!(message.ends_with("not for an HTTP API"), "{message}");
    }

    #[test]
    fn rest_has_neither() {
        assert_eq!(
            for_create(ProtocolType::Rest, "", "").unwrap(),
            Selection::default()
        );
        let (field, _, message) =
            field_of(for_create(ProtocolType::Rest, HTTP_ROUTE_SELECTION, "").unwrap_err());
        assert_eq!(field, "route_selection_expression");
        assert_eq!(
            message,
            "route_selection_expression is not supported for a REST API"
        );
        assert!(for_create(ProtocolType::Rest, "", API_KEY_HEADER).is_err());
    }

    #[test]
    fn updates_change_only_what_is_given() {
        let ws = for_create(ProtocolType::Websocket, "$request.body.action", "").unwrap();
        let s = for_update(
            ProtocolType::Websocket,
            &ws,
            None,
            Some(API_KEY_USAGE_IDENTIFIER),
        )
        .unwrap();
        assert_eq!(s.route, "$request.body.action");
        assert_eq!(s.api_key, API_KEY_USAGE_IDENTIFIER);
        let s = for_update(
            ProtocolType::Websocket,
            &s,
            Some("$request.body.op"),
            Some(""),
        )
        .unwrap();
        assert_eq!(
            (s.route.as_str(), s.api_key.as_str()),
            ("$request.body.op", API_KEY_HEADER)
        );
        assert!(for_update(ProtocolType::Websocket, &s, Some(""), None).is_err());
        assert_eq!(
            for_update(ProtocolType::Websocket, &s, None, None).unwrap(),
            s
        );
        // An API stored before the fields existed gets its protocol's defaults.
        let old = Selection::default();
        assert_eq!(
            for_update(ProtocolType::Http, &old, None, None)
                .unwrap()
                .route,
            HTTP_ROUTE_SELECTION
        );
        assert_eq!(
            for_update(ProtocolType::Rest, &old, None, None).unwrap(),
            old
        );
        assert!(for_update(ProtocolType::Rest, &old, Some("$x"), None).is_err());
    }
}
