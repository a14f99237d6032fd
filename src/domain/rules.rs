//! The constraints of SPEC.md section 2, one function per rule, and the errors they produce.
//!
//! Each check takes the facts it needs (records and index values the store read inside its
//! transaction) and answers `Ok(())` or the exact error a client must see. The store calls them
//! inside the same transaction as the write they guard, so a passing check holds at commit.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::pb::{DomainNameConfiguration, EndpointType, ProtocolType, SecurityPolicy};

use super::validate;

/// Protocol families that may not share a domain name (rule 6): WebSocket vs HTTP/REST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// WEBSOCKET APIs.
    WebSocket,
    /// HTTP and REST APIs, which may share a domain.
    HttpRest,
}

impl Family {
    /// The family of a protocol type. UNSPECIFIED never reaches storage; it counts as HTTP/REST.
    pub fn of(protocol: ProtocolType) -> Family {
        match protocol {
            ProtocolType::Websocket => Family::WebSocket,
            _ => Family::HttpRest,
        }
    }

    /// How the family is named in messages.
    pub fn label(self) -> &'static str {
        match self {
            Family::WebSocket => "WEBSOCKET",
            Family::HttpRest => "HTTP/REST",
        }
    }
}

/// Per-domain counts of mappings, kept as an index so every rule is a single read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DomainCounters {
    /// Mappings to WEBSOCKET APIs.
    pub websocket: u64,
    /// Mappings to HTTP APIs.
    pub http: u64,
    /// Mappings to REST APIs.
    pub rest: u64,
    /// Mappings whose key has more than one level (contains `/`).
    pub multi_level: u64,
}

impl DomainCounters {
    /// All mappings on the domain.
    pub fn total(&self) -> u64 {
        self.websocket + self.http + self.rest
    }

    /// Mappings of the given family.
    pub fn family(&self, family: Family) -> u64 {
        match family {
            Family::WebSocket => self.websocket,
            Family::HttpRest => self.http + self.rest,
        }
    }

    /// Counts one more mapping of `protocol` with `key`.
    pub fn add(&mut self, protocol: ProtocolType, key: &str) {
        *self.slot(protocol) += 1;
        if validate::is_multi_level(key) {
            self.multi_level += 1;
        }
    }

    /// Counts one mapping fewer; saturates at zero so a corrupt index cannot wrap around.
    pub fn remove(&mut self, protocol: ProtocolType, key: &str) {
        let slot = self.slot(protocol);
        *slot = slot.saturating_sub(1);
        if validate::is_multi_level(key) {
            self.multi_level = self.multi_level.saturating_sub(1);
        }
    }

    fn slot(&mut self, protocol: ProtocolType) -> &mut u64 {
        match protocol {
            ProtocolType::Websocket => &mut self.websocket,
            ProtocolType::Rest => &mut self.rest,
            _ => &mut self.http,
        }
    }
}

/// How many mappings point at an API (or a stage), per domain name, in name order.
pub type RefCounts = BTreeMap<String, u64>;

/// Adds (`delta` = 1) or removes (`delta` = -1) one reference from `domain`.
pub fn adjust_refs(refs: &mut RefCounts, domain: &str, delta: i64) {
    let n = refs.get(domain).copied().unwrap_or(0);
    let n = if delta >= 0 {
        n + delta as u64
    } else {
        n.saturating_sub(delta.unsigned_abs())
    };
    if n == 0 {
        refs.remove(domain);
    } else {
        refs.insert(domain.to_string(), n);
    }
}

/// The effective endpoint type and security policy of a domain configuration.
pub fn endpoint_of(cfg: &DomainNameConfiguration) -> (EndpointType, SecurityPolicy) {
    let endpoint = match EndpointType::try_from(cfg.endpoint_type) {
        Ok(EndpointType::Edge) => EndpointType::Edge,
        _ => EndpointType::Regional,
    };
    let policy = match SecurityPolicy::try_from(cfg.security_policy) {
        Ok(SecurityPolicy::Tls10) => SecurityPolicy::Tls10,
        _ => SecurityPolicy::Tls12,
    };
    (endpoint, policy)
}

fn is_regional_tls12(cfg: &DomainNameConfiguration) -> bool {
    endpoint_of(cfg) == (EndpointType::Regional, SecurityPolicy::Tls12)
}

fn describe_endpoint(cfg: &DomainNameConfiguration) -> String {
    let (e, p) = endpoint_of(cfg);
    let e = if e == EndpointType::Edge {
        "EDGE"
    } else {
        "REGIONAL"
    };
    let p = if p == SecurityPolicy::Tls10 {
        "TLS_1_0"
    } else {
        "TLS_1_2"
    };
    format!("{e} endpoint with {p}")
}

/// The protocol of a create request: required, and a known value.
pub fn protocol_type(raw: i32) -> Result<ProtocolType> {
    match ProtocolType::try_from(raw) {
        Ok(ProtocolType::Unspecified) => Err(Error::invalid(
            "protocol_type",
            "protocol_type is required: PROTOCOL_TYPE_WEBSOCKET, PROTOCOL_TYPE_HTTP or PROTOCOL_TYPE_REST",
        )),
        Ok(p) => Ok(p),
        Err(_) => Err(Error::invalid(
            "protocol_type",
            format!("protocol_type {raw} is not a known value"),
        )),
    }
}

/// Checks an incoming configuration list and fills in defaults for a create.
///
/// None -> REGIONAL + TLS_1_2; more than one -> "Expected one domain name configuration";
/// unknown enum values -> INVALID_ARGUMENT. Computed fields are ignored (the store sets them).
pub fn configuration_for_create(
    mut input: Vec<DomainNameConfiguration>,
) -> Result<DomainNameConfiguration> {
    if input.len() > 1 {
        return Err(too_many_configurations());
    }
    let cfg = input.pop().unwrap_or_default();
    check_configuration_enums(&cfg)?;
    validate::certificate_arn(&cfg.certificate_arn)?;
    let (endpoint, policy) = endpoint_of(&cfg);
    Ok(DomainNameConfiguration {
        endpoint_type: endpoint as i32,
        security_policy: policy as i32,
        certificate_arn: cfg.certificate_arn,
        api_gateway_domain_name: String::new(),
        domain_name_status: crate::pb::DomainNameStatus::Available as i32,
    })
}

/// Checks an update's configuration list; `None` when it leaves the configuration unchanged.
pub fn configuration_patch(
    mut input: Vec<DomainNameConfiguration>,
) -> Result<Option<DomainNameConfiguration>> {
    if input.len() > 1 {
        return Err(too_many_configurations());
    }
    let Some(cfg) = input.pop() else {
        return Ok(None);
    };
    check_configuration_enums(&cfg)?;
    validate::certificate_arn(&cfg.certificate_arn)?;
    Ok(Some(cfg))
}

/// Applies a patch: unspecified enum values and an empty certificate ARN keep the current value.
pub fn apply_configuration_patch(
    current: &DomainNameConfiguration,
    patch: &DomainNameConfiguration,
) -> DomainNameConfiguration {
    let mut next = current.clone();
    if patch.endpoint_type != EndpointType::Unspecified as i32 {
        next.endpoint_type = patch.endpoint_type;
    }
    if patch.security_policy != SecurityPolicy::Unspecified as i32 {
        next.security_policy = patch.security_policy;
    }
    if !patch.certificate_arn.is_empty() {
        next.certificate_arn = patch.certificate_arn.clone();
    }
    next
}

fn too_many_configurations() -> Error {
    Error::invalid(
        "domain_name_configurations",
        "Expected one domain name configuration",
    )
}

fn check_configuration_enums(cfg: &DomainNameConfiguration) -> Result<()> {
    if EndpointType::try_from(cfg.endpoint_type).is_err() {
        return Err(Error::invalid(
            "domain_name_configurations.endpoint_type",
            format!("endpoint_type {} is not a known value", cfg.endpoint_type),
        ));
    }
    if SecurityPolicy::try_from(cfg.security_policy).is_err() {
        return Err(Error::invalid(
            "domain_name_configurations.security_policy",
            format!(
                "security_policy {} is not a known value",
                cfg.security_policy
            ),
        ));
    }
    Ok(())
}

/// Rules 4, 6 and 7 for one mapping of `api_id` (`protocol`) under `key` on `domain`.
///
/// `others` counts the domain's mappings other than the one being written (for an update, the
/// store removes the mapping's old contribution first). `multi_level_limit` is rule 4's quota.
/// A protocol conflict is reported without the conflicting mapping's id; the store names it.
pub fn check_mapping_placement(
    domain: &str,
    cfg: &DomainNameConfiguration,
    api_id: &str,
    protocol: ProtocolType,
    key: &str,
    others: &DomainCounters,
    multi_level_limit: u64,
) -> Result<()> {
    let multi_level = validate::is_multi_level(key);
    if multi_level && protocol == ProtocolType::Websocket {
        return Err(Error::invalid(
            "api_mapping_key",
            format!(
                "api_mapping_key '{key}' has more than one level; multi-level keys are supported only for HTTP and REST APIs, and API {api_id} is a WEBSOCKET API"
            ),
        ));
    }
    if multi_level && !is_regional_tls12(cfg) {
        return Err(Error::FailedPrecondition {
            reason: "MULTI_LEVEL_KEY_NOT_SUPPORTED",
            message: format!(
                "api_mapping_key '{key}' has more than one level; multi-level keys need a REGIONAL domain name with TLS_1_2, and {domain} is a {}",
                describe_endpoint(cfg)
            ),
        });
    }
    if protocol != ProtocolType::Rest && !is_regional_tls12(cfg) {
        let p = if protocol == ProtocolType::Websocket {
            "WEBSOCKET"
        } else {
            "HTTP"
        };
        return Err(Error::FailedPrecondition {
            reason: "DOMAIN_CONFIGURATION_CONFLICT",
            message: format!(
                "API {api_id} is a {p} API; {p} APIs can be mapped only to REGIONAL domain names with TLS_1_2, and {domain} is a {}",
                describe_endpoint(cfg)
            ),
        });
    }
    let family = Family::of(protocol);
    let opposite = match family {
        Family::WebSocket => Family::HttpRest,
        Family::HttpRest => Family::WebSocket,
    };
    if others.family(opposite) > 0 {
        return Err(protocol_conflict(domain, api_id, family, None));
    }
    if multi_level && others.multi_level >= multi_level_limit {
        return Err(Error::ResourceExhausted {
            reason: "MULTI_LEVEL_MAPPING_LIMIT",
            message: format!(
                "domain name {domain} already has {} multi-level API mappings, the limit",
                others.multi_level
            ),
        });
    }
    Ok(())
}

/// Rule 6's error. `conflicting` is (api_mapping_id, api_mapping_key) of a mapping of the other
/// family, when the store found one.
pub fn protocol_conflict(
    domain: &str,
    api_id: &str,
    family: Family,
    conflicting: Option<(&str, &str)>,
) -> Error {
    let other = match family {
        Family::WebSocket => Family::HttpRest,
        Family::HttpRest => Family::WebSocket,
    };
    let which = match conflicting {
        Some((id, key)) => format!(
            "API mapping {id} (key '{}')",
            if key.is_empty() { "(none)" } else { key }
        ),
        None => "an API mapping".to_string(),
    };
    Error::FailedPrecondition {
        reason: "PROTOCOL_CONFLICT",
        message: format!(
            "API {api_id} is a {} API, but domain name {domain} has {which} to a {} API; WEBSOCKET and HTTP/REST APIs cannot share a domain name",
            family.label(),
            other.label()
        ),
    }
}

/// Rule 7 (and 4) for UpdateDomainName: the new configuration must still suit every mapping.
pub fn check_configuration_change(
    domain: &str,
    cfg: &DomainNameConfiguration,
    counters: &DomainCounters,
) -> Result<()> {
    if is_regional_tls12(cfg) {
        return Ok(());
    }
    if counters.websocket + counters.http > 0 {
        return Err(Error::FailedPrecondition {
            reason: "DOMAIN_CONFIGURATION_CONFLICT",
            message: format!(
                "domain name {domain} has API mappings to WEBSOCKET or HTTP APIs, which need a REGIONAL endpoint with TLS_1_2; a {} takes REST APIs only",
                describe_endpoint(cfg)
            ),
        });
    }
    if counters.multi_level > 0 {
        return Err(Error::FailedPrecondition {
            reason: "MULTI_LEVEL_KEY_NOT_SUPPORTED",
            message: format!(
                "domain name {domain} has multi-level API mappings, which need a REGIONAL endpoint with TLS_1_2"
            ),
        });
    }
    Ok(())
}

fn domain_list(refs: &RefCounts) -> String {
    refs.keys().cloned().collect::<Vec<_>>().join(", ")
}

/// Rule 8: an API may be deleted only when no mapping points at it.
pub fn check_api_deletable(api_id: &str, refs: &RefCounts) -> Result<()> {
    if refs.is_empty() {
        return Ok(());
    }
    Err(Error::FailedPrecondition {
        reason: "API_IN_USE",
        message: format!(
            "Deleting API {api_id} failed. Please remove all API mappings for the API from your custom domain names: {}",
            domain_list(refs)
        ),
    })
}

/// Rule 8: a stage may be deleted only when no mapping points at it.
pub fn check_stage_deletable(stage: &str, refs: &RefCounts) -> Result<()> {
    if refs.is_empty() {
        return Ok(());
    }
    Err(Error::FailedPrecondition {
        reason: "STAGE_IN_USE",
        message: format!(
            "Deleting stage {stage} failed. Please remove all API mappings for the stage from your custom domain names: {}",
            domain_list(refs)
        ),
    })
}

/// Optimistic concurrency: `expected` 0 is unconditional, else it must equal `actual`.
pub fn check_expected_revision(what: &str, expected: u64, actual: u64) -> Result<()> {
    if expected == 0 || expected == actual {
        return Ok(());
    }
    Err(Error::Aborted {
        reason: "REVISION_MISMATCH",
        message: format!(
            "expected_revision {expected} does not match the mod_revision {actual} of {what}"
        ),
    })
}

/// Rule 1: the API does not exist in the caller's account.
pub fn api_not_found(api_id: &str) -> Error {
    Error::NotFound {
        reason: "API_NOT_FOUND",
        message: format!("Invalid API identifier specified: {api_id}"),
    }
}

/// Rule 1: the stage does not exist on the API.
pub fn stage_not_found(stage: &str) -> Error {
    Error::NotFound {
        reason: "STAGE_NOT_FOUND",
        message: format!("Invalid stage identifier specified: {stage}"),
    }
}

/// Rule 1: the domain name does not exist in the caller's account.
pub fn domain_not_found(domain: &str) -> Error {
    Error::NotFound {
        reason: "DOMAIN_NAME_NOT_FOUND",
        message: format!("Invalid domain name identifier specified: {domain}"),
    }
}

/// The API mapping does not exist on the domain.
pub fn mapping_not_found(mapping_id: &str) -> Error {
    Error::NotFound {
        reason: "API_MAPPING_NOT_FOUND",
        message: format!("Invalid api mapping identifier specified: {mapping_id}"),
    }
}

/// Rule 5: the key is taken on this domain.
pub fn mapping_key_conflict(domain: &str, key: &str) -> Error {
    Error::AlreadyExists {
        reason: "MAPPING_KEY_CONFLICT",
        message: format!(
            "ApiMapping key already exists for this domain name: key '{}' on {domain}",
            if key.is_empty() { "(none)" } else { key }
        ),
    }
}

/// The stage name is taken on this API.
pub fn stage_exists(api_id: &str, stage: &str) -> Error {
    Error::AlreadyExists {
        reason: "STAGE_EXISTS",
        message: format!("Stage already exists: {stage} on API {api_id}"),
    }
}

/// The domain name is registered already (in any account).
pub fn domain_exists(domain: &str) -> Error {
    Error::AlreadyExists {
        reason: "DOMAIN_NAME_EXISTS",
        message: format!("The domain name resource already exists: {domain}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(e: EndpointType, p: SecurityPolicy) -> DomainNameConfiguration {
        DomainNameConfiguration {
            endpoint_type: e as i32,
            security_policy: p as i32,
            ..Default::default()
        }
    }

    fn regional() -> DomainNameConfiguration {
        cfg(EndpointType::Regional, SecurityPolicy::Tls12)
    }

    fn reason(r: Result<()>) -> String {
        r.expect_err("expected an error").reason().to_string()
    }

    #[test]
    fn websocket_refuses_multi_level_key() {
        let r = check_mapping_placement(
            "a.com",
            &regional(),
            "api",
            ProtocolType::Websocket,
            "v1/x",
            &DomainCounters::default(),
            200,
        );
        assert_eq!(reason(r), "INVALID_API_MAPPING_KEY");
    }

    #[test]
    fn edge_or_tls10_takes_rest_only() {
        for c in [
            cfg(EndpointType::Edge, SecurityPolicy::Tls12),
            cfg(EndpointType::Regional, SecurityPolicy::Tls10),
        ] {
            for p in [ProtocolType::Http, ProtocolType::Websocket] {
                let r =
                    check_mapping_placement("a.com", &c, "api", p, "v1", &Default::default(), 200);
                assert_eq!(reason(r), "DOMAIN_CONFIGURATION_CONFLICT");
            }
            let ok = check_mapping_placement(
                "a.com",
                &c,
                "api",
                ProtocolType::Rest,
                "v1",
                &Default::default(),
                200,
            );
            assert!(ok.is_ok());
            let multi = check_mapping_placement(
                "a.com",
                &c,
                "api",
                ProtocolType::Rest,
                "v1/x",
                &Default::default(),
                200,
            );
            assert_eq!(reason(multi), "MULTI_LEVEL_KEY_NOT_SUPPORTED");
        }
    }

    #[test]
    fn families_do_not_mix_but_http_and_rest_do() {
        let mut c = DomainCounters::default();
        c.add(ProtocolType::Http, "a");
        assert!(
            check_mapping_placement("d.com", &regional(), "x", ProtocolType::Rest, "b", &c, 200)
                .is_ok()
        );
        let r = check_mapping_placement(
            "d.com",
            &regional(),
            "x",
            ProtocolType::Websocket,
            "b",
            &c,
            200,
        );
        assert_eq!(reason(r), "PROTOCOL_CONFLICT");
        let mut w = DomainCounters::default();
        w.add(ProtocolType::Websocket, "");
        let r =
            check_mapping_placement("d.com", &regional(), "x", ProtocolType::Rest, "b", &w, 200);
        assert_eq!(reason(r), "PROTOCOL_CONFLICT");
    }

    #[test]
    fn multi_level_limit() {
        let c = DomainCounters {
            http: 200,
            multi_level: 200,
            ..Default::default()
        };
        let r = check_mapping_placement(
            "d.com",
            &regional(),
            "x",
            ProtocolType::Http,
            "a/b",
            &c,
            200,
        );
        assert_eq!(reason(r), "MULTI_LEVEL_MAPPING_LIMIT");
        assert!(
            check_mapping_placement("d.com", &regional(), "x", ProtocolType::Http, "ab", &c, 200)
                .is_ok()
        );
    }

    #[test]
    fn counters_add_and_remove() {
        let mut c = DomainCounters::default();
        c.add(ProtocolType::Rest, "a/b");
        c.add(ProtocolType::Http, "");
        assert_eq!(
            (c.total(), c.multi_level, c.family(Family::HttpRest)),
            (2, 1, 2)
        );
        c.remove(ProtocolType::Rest, "a/b");
        c.remove(ProtocolType::Rest, "a/b");
        assert_eq!((c.rest, c.multi_level, c.http), (0, 0, 1));
    }

    #[test]
    fn configuration_change_rechecks_mappings() {
        let edge = cfg(EndpointType::Edge, SecurityPolicy::Tls12);
        let rest_only = DomainCounters {
            rest: 3,
            ..Default::default()
        };
        assert!(check_configuration_change("d.com", &edge, &rest_only).is_ok());
        let http = DomainCounters {
            http: 1,
            ..Default::default()
        };
        assert_eq!(
            reason(check_configuration_change("d.com", &edge, &http)),
            "DOMAIN_CONFIGURATION_CONFLICT"
        );
        let multi = DomainCounters {
            rest: 1,
            multi_level: 1,
            ..Default::default()
        };
        assert_eq!(
            reason(check_configuration_change("d.com", &edge, &multi)),
            "MULTI_LEVEL_KEY_NOT_SUPPORTED"
        );
    }

    #[test]
    fn deletes_name_the_domains() {
        let mut refs = RefCounts::new();
        adjust_refs(&mut refs, "b.com", 1);
        adjust_refs(&mut refs, "a.com", 1);
        adjust_refs(&mut refs, "a.com", 1);
        let e = check_api_deletable("abc", &refs).expect_err("in use");
        assert_eq!(
            e.to_string(),
            "Deleting API abc failed. Please remove all API mappings for the API from your custom domain names: a.com, b.com"
        );
        adjust_refs(&mut refs, "a.com", -1);
        adjust_refs(&mut refs, "a.com", -1);
        adjust_refs(&mut refs, "b.com", -1);
        assert!(refs.is_empty());
        assert!(check_stage_deletable("prod", &refs).is_ok());
    }

    #[test]
    fn configuration_defaults_and_limits() {
        let c = configuration_for_create(vec![]).expect("defaults");
        assert_eq!(
            endpoint_of(&c),
            (EndpointType::Regional, SecurityPolicy::Tls12)
        );
        let two = configuration_for_create(vec![Default::default(), Default::default()]);
        assert_eq!(
            two.expect_err("two").to_string(),
            "Expected one domain name configuration"
        );
        let bad = DomainNameConfiguration {
            endpoint_type: 9,
            ..Default::default()
        };
        assert!(configuration_for_create(vec![bad]).is_err());
        let patched = apply_configuration_patch(
            &c,
            &DomainNameConfiguration {
                endpoint_type: EndpointType::Edge as i32,
                ..Default::default()
            },
        );
        assert_eq!(
            endpoint_of(&patched),
            (EndpointType::Edge, SecurityPolicy::Tls12)
        );
    }

    #[test]
    fn expected_revision() {
        assert!(check_expected_revision("API x", 0, 7).is_ok());
        assert!(check_expected_revision("API x", 7, 7).is_ok());
        assert_eq!(
            reason(check_expected_revision("API x", 6, 7)),
            "REVISION_MISMATCH"
        );
    }

    #[test]
    fn protocol_type_must_be_known() {
        assert!(protocol_type(0).is_err());
        assert!(protocol_type(99).is_err());
        assert_eq!(protocol_type(2).ok(), Some(ProtocolType::Http));
    }
}
