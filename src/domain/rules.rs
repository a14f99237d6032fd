//! The constraints of SPEC.md section 2, one pure function per rule over a [`State`], and the
//! typed [`Violation`] each produces.
//!
//! | rule | function |
//! |---|---|
//! | 1, 2 prerequisites in the caller's account | [`api_in_account`], [`domain_in_account`], [`stage_of`] |
//! | 3 key syntax | request shape: [`validate::api_mapping_key`] |
//! | 4 multi-level keys | [`multi_level_allowed`] |
//! | 5 unique key per domain | [`key_free`] |
//! | 6 protocol families | [`family_free`] (names the conflicting mapping) |
//! | 7 endpoint and TLS | [`endpoint_suits`], and [`configuration_suits`] on UpdateDomainName |
//! | 8 deletes that would dangle | [`api_deletable`], [`stage_deletable`] |
//! | optimistic concurrency | [`revision_matches`] |
//!
//! Rule 9 (updates re-check 1–7) and rule 10 (atomicity) are how [`apply`](super::apply) uses
//! these: every check of a write runs against the version it will be applied to, before any
//! change, and the writer applies writes one at a time.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::pb::{Api, DomainNameConfiguration, EndpointType, ProtocolType, SecurityPolicy, Stage};

use super::state::{DomainEntry, State};
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

    /// The family that may not share a domain with this one.
    pub fn opposite(self) -> Family {
        match self {
            Family::WebSocket => Family::HttpRest,
            Family::HttpRest => Family::WebSocket,
        }
    }
}

/// Per-domain counts of mappings, kept with the domain so rules 4, 6 and 7 need no scan.
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

/// "a" or "an", as `word` (an upper-case name: EDGE, HTTP, REST, ...) is read aloud.
pub fn article(word: &str) -> &'static str {
    let vowel = word
        .chars()
        .next()
        .is_some_and(|c| "AEIOUaeiou".contains(c));
    // Spelled-out initialisms whose first letter sounds like a vowel ("aitch-tee-tee-pee").
    if vowel || word.starts_with("HTTP") {
        "an"
    } else {
        "a"
    }
}

/// How a protocol is named in messages.
pub fn protocol_name(protocol: ProtocolType) -> &'static str {
    match protocol {
        ProtocolType::Websocket => "WEBSOCKET",
        ProtocolType::Rest => "REST",
        _ => "HTTP",
    }
}

/// "an HTTP API", "a REST API", "a WEBSOCKET API".
pub fn protocol_api(protocol: ProtocolType) -> String {
    let name = protocol_name(protocol);
    format!("{} {name} API", article(name))
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
/// A write refused by a rule of SPEC.md section 2: what a client sees, typed so that code
/// decides on the variant, never on a message or reason string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// Rule 1: the API is not in the caller's account.
    #[error("Invalid API identifier specified: {0}")]
    ApiNotFound(String),
    /// Rule 1: the API has no such stage.
    #[error("Invalid stage identifier specified: {0}")]
    StageNotFound(String),
    /// Rule 1: the domain name is not in the caller's account.
    #[error("Invalid domain name identifier specified: {0}")]
    DomainNotFound(String),
    /// The domain has no such mapping.
    #[error("Invalid api mapping identifier specified: {0}")]
    MappingNotFound(String),
    /// Rule 5: the key is taken on this domain.
    #[error("ApiMapping key already exists for this domain name: key '{}' on {domain}", shown_key(.key))]
    KeyTaken {
        /// The domain.
        domain: String,
        /// The key.
        key: String,
    },
    /// The stage name is taken on this API.
    #[error("Stage already exists: {stage} on API {api_id}")]
    StageExists {
        /// The API.
        api_id: String,
        /// The stage name.
        stage: String,
    },
    /// The domain name is registered already (in any account).
    #[error("The domain name resource already exists: {0}")]
    DomainExists(String),
    /// Rule 4: WEBSOCKET APIs take single-level keys only.
    #[error(
        "api_mapping_key '{key}' has more than one level; multi-level keys are supported only for HTTP and REST APIs, and API {api_id} is a WEBSOCKET API"
    )]
    MultiLevelWebSocket {
        /// The key.
        key: String,
        /// The WEBSOCKET API.
        api_id: String,
    },
    /// Rule 4: multi-level keys need a REGIONAL + TLS_1_2 domain.
    #[error(
        "api_mapping_key '{key}' has more than one level; multi-level keys need a REGIONAL domain name with TLS_1_2, and {domain} is {} {endpoint}",
        article(.endpoint)
    )]
    MultiLevelEndpoint {
        /// The key.
        key: String,
        /// The domain.
        domain: String,
        /// Its endpoint, as "EDGE endpoint with TLS_1_2".
        endpoint: String,
    },
    /// Rule 4: the domain's quota of multi-level mappings is used up.
    #[error("domain name {domain} already has {count} multi-level API mappings, the limit")]
    MultiLevelLimit {
        /// The domain.
        domain: String,
        /// Its multi-level mappings.
        count: u64,
    },
    /// Rule 7: WEBSOCKET and HTTP APIs map only to REGIONAL + TLS_1_2 domains.
    #[error(
        "API {api_id} is {} {protocol} API; {protocol} APIs can be mapped only to REGIONAL domain names with TLS_1_2, and {domain} is {} {endpoint}",
        article(.protocol), article(.endpoint)
    )]
    EndpointMismatch {
        /// The API.
        api_id: String,
        /// `WEBSOCKET` or `HTTP`.
        protocol: &'static str,
        /// The domain.
        domain: String,
        /// Its endpoint, as "EDGE endpoint with TLS_1_2".
        endpoint: String,
    },
    /// Rule 6: WEBSOCKET and HTTP/REST APIs cannot share a domain.
    #[error(
        "API {api_id} is {} {} API, but domain name {domain} has {} to {} {} API; WEBSOCKET and HTTP/REST APIs cannot share a domain name",
        article(.family.label()), .family.label(), conflicting_mapping(.conflicting),
        article(.family.opposite().label()), .family.opposite().label()
    )]
    ProtocolConflict {
        /// The domain.
        domain: String,
        /// The API being mapped.
        api_id: String,
        /// Its family.
        family: Family,
        /// (api_mapping_id, api_mapping_key) of a mapping of the other family.
        conflicting: Option<(String, String)>,
    },
    /// Rule 7 on UpdateDomainName: WEBSOCKET or HTTP mappings need REGIONAL + TLS_1_2.
    #[error(
        "domain name {domain} has API mappings to WEBSOCKET or HTTP APIs, which need a REGIONAL endpoint with TLS_1_2; {} {endpoint} takes REST APIs only",
        article(.endpoint)
    )]
    ConfigurationConflict {
        /// The domain.
        domain: String,
        /// The requested endpoint, as "EDGE endpoint with TLS_1_2".
        endpoint: String,
    },
    /// Rule 4 on UpdateDomainName: multi-level mappings need REGIONAL + TLS_1_2.
    #[error(
        "domain name {domain} has multi-level API mappings, which need a REGIONAL endpoint with TLS_1_2"
    )]
    ConfigurationMultiLevel {
        /// The domain.
        domain: String,
    },
    /// Rule 8: mappings point at the API.
    #[error(
        "Deleting API {api_id} failed. Please remove all API mappings for the API from your custom domain names: {}",
        crate::error::listed(.domains)
    )]
    ApiInUse {
        /// The API.
        api_id: String,
        /// The domains with mappings to it, in name order.
        domains: Vec<String>,
    },
    /// Rule 8: mappings point at the stage.
    #[error(
        "Deleting stage {stage} failed. Please remove all API mappings for the stage from your custom domain names: {}",
        crate::error::listed(.domains)
    )]
    StageInUse {
        /// The stage.
        stage: String,
        /// The domains with mappings to it, in name order.
        domains: Vec<String>,
    },
    /// TagResource would leave a record with more tags than allowed.
    #[error("tags: {what} would have {count} tags; at most {max} are allowed", max = crate::domain::validate::MAX_TAGS)]
    TooManyTags {
        /// The record, as "API abc".
        what: String,
        /// How many tags it would have.
        count: usize,
    },
    /// A request field the state makes invalid (e.g. an API's selection expressions, which
    /// depend on its protocol): INVALID_ARGUMENT naming `field`.
    #[error("{message}")]
    InvalidField {
        /// The request field, as named in the proto.
        field: &'static str,
        /// `INVALID_<FIELD>`.
        reason: &'static str,
        /// What is wrong, naming the field.
        message: String,
    },
    /// `expected_revision` is not the record's `mod_revision`.
    #[error("expected_revision {expected} does not match the mod_revision {actual} of {what}")]
    RevisionMismatch {
        /// The record, as "API abc".
        what: String,
        /// What the caller expected.
        expected: u64,
        /// The record's `mod_revision`.
        actual: u64,
    },
}

fn shown_key(key: &str) -> &str {
    if key.is_empty() { "(none)" } else { key }
}

fn conflicting_mapping(c: &Option<(String, String)>) -> String {
    match c {
        Some((id, key)) => format!("API mapping {id} (key '{}')", shown_key(key)),
        None => "an API mapping".to_string(),
    }
}

impl Violation {
    /// The stable `ErrorInfo` reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Violation::ApiNotFound(_) => "API_NOT_FOUND",
            Violation::StageNotFound(_) => "STAGE_NOT_FOUND",
            Violation::DomainNotFound(_) => "DOMAIN_NAME_NOT_FOUND",
            Violation::MappingNotFound(_) => "API_MAPPING_NOT_FOUND",
            Violation::KeyTaken { .. } => "MAPPING_KEY_CONFLICT",
            Violation::StageExists { .. } => "STAGE_EXISTS",
            Violation::DomainExists(_) => "DOMAIN_NAME_EXISTS",
            Violation::MultiLevelWebSocket { .. }
            | Violation::MultiLevelEndpoint { .. }
            | Violation::ConfigurationMultiLevel { .. } => "MULTI_LEVEL_KEY_NOT_SUPPORTED",
            Violation::MultiLevelLimit { .. } => "MULTI_LEVEL_MAPPING_LIMIT",
            Violation::EndpointMismatch { .. } | Violation::ConfigurationConflict { .. } => {
                "DOMAIN_CONFIGURATION_CONFLICT"
            }
            Violation::ProtocolConflict { .. } => "PROTOCOL_CONFLICT",
            Violation::ApiInUse { .. } => "API_IN_USE",
            Violation::StageInUse { .. } => "STAGE_IN_USE",
            Violation::RevisionMismatch { .. } => "REVISION_MISMATCH",
            Violation::TooManyTags { .. } => "INVALID_TAGS",
            Violation::InvalidField { reason, .. } => reason,
        }
    }
}

impl From<Violation> for Error {
    fn from(v: Violation) -> Error {
        let reason = v.reason();
        let message = v.to_string();
        match v {
            Violation::ApiNotFound(_)
            | Violation::StageNotFound(_)
            | Violation::DomainNotFound(_)
            | Violation::MappingNotFound(_) => Error::NotFound { reason, message },
            Violation::KeyTaken { .. }
            | Violation::StageExists { .. }
            | Violation::DomainExists(_) => Error::AlreadyExists { reason, message },
            // Rule 4 is one error whatever refused the key (the API's protocol, the domain's
            // endpoint): INVALID_ARGUMENT, as AWS answers BadRequestException for each.
            Violation::MultiLevelWebSocket { .. } | Violation::MultiLevelEndpoint { .. } => {
                Error::InvalidArgument {
                    field: "api_mapping_key".into(),
                    reason: reason.into(),
                    message,
                }
            }
            Violation::ConfigurationMultiLevel { .. } => Error::InvalidArgument {
                field: "domain_name_configurations".into(),
                reason: reason.into(),
                message,
            },
            Violation::TooManyTags { .. } => Error::invalid("tags", message),
            Violation::InvalidField { field, reason, .. } => Error::InvalidArgument {
                field: field.to_string(),
                reason: reason.to_string(),
                message,
            },
            Violation::MultiLevelLimit { .. } => Error::ResourceExhausted { reason, message },
            Violation::RevisionMismatch { .. } => Error::Aborted { reason, message },
            Violation::EndpointMismatch { .. }
            | Violation::ProtocolConflict { .. }
            | Violation::ConfigurationConflict { .. } => {
                Error::FailedPrecondition { reason, message }
            }
            Violation::ApiInUse { domains, .. } | Violation::StageInUse { domains, .. } => {
                Error::InUse {
                    reason,
                    message,
                    domain_count: domains.len(),
                }
            }
        }
    }
}

/// What a rule answers.
pub type Checked<T = ()> = std::result::Result<T, Violation>;

/// Rules 1 and 2: the API exists in the caller's account (another account's is absent).
pub fn api_in_account<'s>(state: &'s State, account: &str, api_id: &str) -> Checked<&'s Arc<Api>> {
    match state.api(api_id) {
        Some(a) if a.account_id == account => Ok(a),
        _ => Err(Violation::ApiNotFound(api_id.into())),
    }
}

/// Rules 1 and 2: the domain name exists in the caller's account.
pub fn domain_in_account<'s>(
    state: &'s State,
    account: &str,
    domain: &str,
) -> Checked<&'s DomainEntry> {
    match state.domain(domain) {
        Some(d) if d.record.account_id == account => Ok(d),
        _ => Err(Violation::DomainNotFound(domain.into())),
    }
}

/// Rule 1: the API has the stage.
pub fn stage_of<'s>(state: &'s State, api_id: &str, stage: &str) -> Checked<&'s Arc<Stage>> {
    state
        .stage(api_id, stage)
        .ok_or_else(|| Violation::StageNotFound(stage.into()))
}

/// Rule 5: no mapping of `domain` other than `except` (the one being updated) has `key`.
pub fn key_free(state: &State, domain: &str, key: &str, except: Option<&str>) -> Checked {
    match state.mapping_by_key(domain, key) {
        Some(m) if Some(m.api_mapping_id.as_str()) != except => Err(Violation::KeyTaken {
            domain: domain.into(),
            key: key.into(),
        }),
        _ => Ok(()),
    }
}

fn protocol(api: &Api) -> ProtocolType {
    ProtocolType::try_from(api.protocol_type).unwrap_or(ProtocolType::Http)
}

/// The domain's counters without the mapping `except` (the one being updated).
fn others(state: &State, domain: &DomainEntry, except: Option<&str>) -> DomainCounters {
    let mut c = domain.counters;
    if let Some(m) = except.and_then(|id| state.mapping(&domain.record.domain_name, id)) {
        c.remove(state.protocol_of(&m.api_id), &m.api_mapping_key);
    }
    c
}

/// Rule 4: a multi-level `key` only for HTTP and REST APIs, only on a REGIONAL + TLS_1_2
/// domain, and within the domain's quota (`limit`) of multi-level mappings, not counting
/// `except` (the mapping being updated).
pub fn multi_level_allowed(
    state: &State,
    domain: &DomainEntry,
    api: &Api,
    key: &str,
    except: Option<&str>,
    limit: u64,
) -> Checked {
    if !validate::is_multi_level(key) {
        return Ok(());
    }
    if protocol(api) == ProtocolType::Websocket {
        return Err(Violation::MultiLevelWebSocket {
            key: key.into(),
            api_id: api.api_id.clone(),
        });
    }
    let cfg = configuration(domain);
    if !is_regional_tls12(&cfg) {
        return Err(Violation::MultiLevelEndpoint {
            key: key.into(),
            domain: domain.record.domain_name.clone(),
            endpoint: describe_endpoint(&cfg),
        });
    }
    let count = others(state, domain, except).multi_level;
    if count >= limit {
        return Err(Violation::MultiLevelLimit {
            domain: domain.record.domain_name.clone(),
            count,
        });
    }
    Ok(())
}

/// Rule 7: WEBSOCKET and HTTP APIs map only to REGIONAL + TLS_1_2 domains.
pub fn endpoint_suits(domain: &DomainEntry, api: &Api) -> Checked {
    let cfg = configuration(domain);
    let p = protocol(api);
    if p == ProtocolType::Rest || is_regional_tls12(&cfg) {
        return Ok(());
    }
    Err(Violation::EndpointMismatch {
        api_id: api.api_id.clone(),
        protocol: if p == ProtocolType::Websocket {
            "WEBSOCKET"
        } else {
            "HTTP"
        },
        domain: domain.record.domain_name.clone(),
        endpoint: describe_endpoint(&cfg),
    })
}

/// Rule 6: no mapping of `domain` other than `except` points at an API of the other family.
/// The error names one such mapping (the first in key order).
pub fn family_free(
    state: &State,
    domain: &DomainEntry,
    api: &Api,
    except: Option<&str>,
) -> Checked {
    let family = Family::of(protocol(api));
    if others(state, domain, except).family(family.opposite()) == 0 {
        return Ok(());
    }
    let name = &domain.record.domain_name;
    let conflicting = state
        .mappings_on(name)
        .filter(|m| Some(m.api_mapping_id.as_str()) != except)
        .find(|m| Family::of(state.protocol_of(&m.api_id)) != family)
        .map(|m| (m.api_mapping_id.clone(), m.api_mapping_key.clone()));
    Err(Violation::ProtocolConflict {
        domain: name.clone(),
        api_id: api.api_id.clone(),
        family,
        conflicting,
    })
}

/// Rules 7 and 4 on UpdateDomainName: the new configuration still suits every mapping.
pub fn configuration_suits(domain: &DomainEntry, cfg: &DomainNameConfiguration) -> Checked {
    if is_regional_tls12(cfg) {
        return Ok(());
    }
    let c = &domain.counters;
    let name = &domain.record.domain_name;
    if c.websocket + c.http > 0 {
        return Err(Violation::ConfigurationConflict {
            domain: name.clone(),
            endpoint: describe_endpoint(cfg),
        });
    }
    if c.multi_level > 0 {
        return Err(Violation::ConfigurationMultiLevel {
            domain: name.clone(),
        });
    }
    Ok(())
}

/// Rule 8: no mapping points at the API.
pub fn api_deletable(state: &State, api_id: &str) -> Checked {
    let domains = state.domains_using_api(api_id);
    if domains.is_empty() {
        return Ok(());
    }
    Err(Violation::ApiInUse {
        api_id: api_id.into(),
        domains,
    })
}

/// Rule 8: no mapping points at the stage.
pub fn stage_deletable(state: &State, api_id: &str, stage: &str) -> Checked {
    let domains = state.domains_using_stage(api_id, stage);
    if domains.is_empty() {
        return Ok(());
    }
    Err(Violation::StageInUse {
        stage: stage.into(),
        domains,
    })
}

/// Optimistic concurrency: `expected` 0 is unconditional, else it must equal `actual`.
pub fn revision_matches(what: impl FnOnce() -> String, expected: u64, actual: u64) -> Checked {
    if expected == 0 || expected == actual {
        return Ok(());
    }
    Err(Violation::RevisionMismatch {
        what: what(),
        expected,
        actual,
    })
}

/// The domain's (only) configuration.
pub fn configuration(domain: &DomainEntry) -> DomainNameConfiguration {
    domain
        .record
        .domain_name_configurations
        .first()
        .cloned()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::{ApiMapping, DomainName, resource};

    fn cfg(e: EndpointType, p: SecurityPolicy) -> DomainNameConfiguration {
        DomainNameConfiguration {
            endpoint_type: e as i32,
            security_policy: p as i32,
            ..Default::default()
        }
    }

    fn state_with(domain_cfg: DomainNameConfiguration) -> State {
        let mut s = State::default();
        s.put(resource::Resource::DomainName(DomainName {
            domain_name: "d.com".into(),
            domain_name_configurations: vec![domain_cfg],
            account_id: "1".into(),
            ..Default::default()
        }));
        for (id, p) in [
            ("ws", ProtocolType::Websocket),
            ("http", ProtocolType::Http),
            ("rest", ProtocolType::Rest),
        ] {
            s.put(resource::Resource::Api(Api {
                api_id: id.into(),
                protocol_type: p as i32,
                account_id: "1".into(),
                ..Default::default()
            }));
        }
        s
    }

    fn map(s: &mut State, id: &str, api: &str, key: &str) {
        s.put(resource::Resource::ApiMapping(ApiMapping {
            domain_name: "d.com".into(),
            api_mapping_id: id.into(),
            api_mapping_key: key.into(),
            api_id: api.into(),
            stage: "test".into(),
            account_id: "1".into(),
            ..Default::default()
        }));
    }

    fn regional() -> DomainNameConfiguration {
        cfg(EndpointType::Regional, SecurityPolicy::Tls12)
    }

    #[test]
    fn prerequisites_are_per_account() {
        let s = state_with(regional());
        assert!(api_in_account(&s, "1", "http").is_ok());
        assert_eq!(
            api_in_account(&s, "2", "http").unwrap_err(),
            Violation::ApiNotFound("http".into())
        );
        assert!(domain_in_account(&s, "2", "d.com").is_err());
        assert_eq!(
            stage_of(&s, "http", "test").unwrap_err().reason(),
            "STAGE_NOT_FOUND"
        );
    }

    #[test]
    fn websocket_refuses_multi_level_key() {
        let s = state_with(regional());
        let d = s.domain("d.com").unwrap();
        let ws = s.api("ws").unwrap();
        let e = multi_level_allowed(&s, d, ws, "a/b", None, 200).unwrap_err();
        let e = Error::from(e);
        assert_eq!(e.reason(), "MULTI_LEVEL_KEY_NOT_SUPPORTED");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(multi_level_allowed(&s, d, ws, "ab", None, 200).is_ok());
    }

    #[test]
    fn edge_or_tls10_takes_rest_only() {
        for c in [
            cfg(EndpointType::Edge, SecurityPolicy::Tls12),
            cfg(EndpointType::Regional, SecurityPolicy::Tls10),
        ] {
            let s = state_with(c);
            let d = s.domain("d.com").unwrap();
            for api in ["ws", "http"] {
                let e = endpoint_suits(d, s.api(api).unwrap()).unwrap_err();
                assert_eq!(e.reason(), "DOMAIN_CONFIGURATION_CONFLICT");
            }
            let rest = s.api("rest").unwrap();
            assert!(endpoint_suits(d, rest).is_ok());
            let e = multi_level_allowed(&s, d, rest, "a/b", None, 200).unwrap_err();
            assert!(
                e.to_string().contains(" is an EDGE endpoint")
                    || e.to_string().contains(" is a REGIONAL endpoint"),
                "{e}"
            );
            let e = Error::from(e);
            // One rule, one error: the same as for a WEBSOCKET API's multi-level key.
            assert_eq!(e.reason(), "MULTI_LEVEL_KEY_NOT_SUPPORTED");
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            for api in ["ws", "http"] {
                let e = endpoint_suits(d, s.api(api).unwrap())
                    .unwrap_err()
                    .to_string();
                assert!(
                    e.contains(if api == "ws" {
                        "is a WEBSOCKET API"
                    } else {
                        "is an HTTP API"
                    }),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn families_do_not_mix_but_http_and_rest_do_and_the_conflict_is_named() {
        let mut s = state_with(regional());
        map(&mut s, "m1", "http", "a");
        let d = s.domain("d.com").unwrap().clone();
        assert!(family_free(&s, &d, s.api("rest").unwrap(), None).is_ok());
        let e = family_free(&s, &d, s.api("ws").unwrap(), None).unwrap_err();
        assert_eq!(
            e,
            Violation::ProtocolConflict {
                domain: "d.com".into(),
                api_id: "ws".into(),
                family: Family::WebSocket,
                conflicting: Some(("m1".into(), "a".into())),
            }
        );
        assert!(e.to_string().contains("API mapping m1 (key 'a')"));
        // Re-pointing the only mapping to another family conflicts with nothing.
        assert!(family_free(&s, &d, s.api("ws").unwrap(), Some("m1")).is_ok());
    }

    #[test]
    fn multi_level_limit_excludes_the_updated_mapping() {
        let mut s = state_with(regional());
        map(&mut s, "m1", "http", "a/b");
        map(&mut s, "m2", "http", "a/c");
        let d = s.domain("d.com").unwrap().clone();
        let http = s.api("http").unwrap().clone();
        let e = multi_level_allowed(&s, &d, &http, "x/y", None, 2).unwrap_err();
        assert_eq!(e.reason(), "MULTI_LEVEL_MAPPING_LIMIT");
        assert!(multi_level_allowed(&s, &d, &http, "x/y", Some("m1"), 2).is_ok());
        assert!(multi_level_allowed(&s, &d, &http, "xy", None, 2).is_ok());
    }

    #[test]
    fn keys_are_unique_per_domain() {
        let mut s = state_with(regional());
        map(&mut s, "m1", "http", "a");
        assert_eq!(
            key_free(&s, "d.com", "a", None).unwrap_err().reason(),
            "MAPPING_KEY_CONFLICT"
        );
        assert!(key_free(&s, "d.com", "a", Some("m1")).is_ok());
        assert!(key_free(&s, "d.com", "b", None).is_ok());
        assert!(key_free(&s, "e.com", "a", None).is_ok());
    }

    #[test]
    fn counters_add_and_remove() {
        let mut c = DomainCounters::default();
        c.add(ProtocolType::Rest, "a/b");
        c.add(ProtocolType::Http, "a");
        assert_eq!((c.rest, c.multi_level, c.http), (1, 1, 1));
        c.remove(ProtocolType::Rest, "a/b");
        assert_eq!((c.rest, c.multi_level, c.http), (0, 0, 1));
    }

    #[test]
    fn configuration_change_rechecks_mappings() {
        let edge = cfg(EndpointType::Edge, SecurityPolicy::Tls12);
        let suits = |s: &State, c: &DomainNameConfiguration| {
            configuration_suits(s.domain("d.com").unwrap(), c).map_err(|v| v.reason())
        };
        let mut s = state_with(regional());
        map(&mut s, "m1", "rest", "a");
        assert!(suits(&s, &edge).is_ok());
        map(&mut s, "m2", "rest", "a/b");
        assert_eq!(suits(&s, &edge), Err("MULTI_LEVEL_KEY_NOT_SUPPORTED"));
        map(&mut s, "m3", "http", "c");
        assert_eq!(suits(&s, &edge), Err("DOMAIN_CONFIGURATION_CONFLICT"));
        assert!(suits(&s, &regional()).is_ok());
    }

    #[test]
    fn deletes_name_the_domains() {
        let mut s = state_with(regional());
        map(&mut s, "m1", "http", "a");
        let e = api_deletable(&s, "http").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Deleting API http failed. Please remove all API mappings for the API from your custom domain names: d.com"
        );
        assert_eq!(
            stage_deletable(&s, "http", "test").unwrap_err().reason(),
            "STAGE_IN_USE"
        );
        assert!(stage_deletable(&s, "http", "prod").is_ok());
        assert!(api_deletable(&s, "rest").is_ok());
    }

    #[test]
    fn configuration_defaults_and_limits() {
        let c = configuration_for_create(vec![]).unwrap();
        assert_eq!(
            endpoint_of(&c),
            (EndpointType::Regional, SecurityPolicy::Tls12)
        );
        assert_eq!(
            configuration_for_create(vec![Default::default(), Default::default()])
                .unwrap_err()
                .to_string(),
            "Expected one domain name configuration"
        );
        let bad = DomainNameConfiguration {
            endpoint_type: 42,
            ..Default::default()
        };
        assert!(configuration_for_create(vec![bad]).is_err());
    }

    #[test]
    fn expected_revision() {
        assert!(revision_matches(|| "API x".into(), 0, 7).is_ok());
        assert!(revision_matches(|| "API x".into(), 7, 7).is_ok());
        assert_eq!(
            Error::from(revision_matches(|| "API x".into(), 6, 7).unwrap_err()).reason(),
            "REVISION_MISMATCH"
        );
    }

    #[test]
    fn articles_read_as_the_names_are_spoken() {
        assert_eq!(article("EDGE endpoint with TLS_1_2"), "an");
        assert_eq!(article("HTTP"), "an");
        assert_eq!(article("HTTP/REST"), "an");
        assert_eq!(article("REST"), "a");
        assert_eq!(article("REGIONAL endpoint with TLS_1_0"), "a");
        assert_eq!(article("WEBSOCKET"), "a");
        assert_eq!(protocol_api(ProtocolType::Http), "an HTTP API");
        assert_eq!(protocol_api(ProtocolType::Rest), "a REST API");
        assert_eq!(protocol_api(ProtocolType::Websocket), "a WEBSOCKET API");
    }

    #[test]
    fn protocol_type_must_be_known() {
        assert!(protocol_type(0).is_err());
        assert!(protocol_type(99).is_err());
        assert_eq!(protocol_type(2).ok(), Some(ProtocolType::Http));
    }
}
