//! SPEC.md section 2, rule by rule, through real gRPC: every constraint with its gRPC code and
//! ErrorInfo reason, plus the revision bookkeeping of writes that pass or fail.

use crate::common::*;
use mapreg::config::Config;
use mapreg::pb::*;
use tonic::Code;

const D: &str = "api.example.com";
const UNKNOWN_API: &str = "zzzzzzzzzz";
const UNKNOWN_MAPPING: &str = "zzzzzz";

// ---- local helpers -------------------------------------------------------------------------

async fn get_mapping(c: &mut Client, domain: &str, id: &str) -> ApiMapping {
    c.get_api_mapping(GetApiMappingRequest {
        domain_name: domain.into(),
        api_mapping_id: id.into(),
        ..Default::default()
    })
    .await
    .expect("get mapping")
    .into_inner()
}

async fn get_domain(c: &mut Client, domain: &str) -> DomainName {
    c.get_domain_name(GetDomainNameRequest {
        domain_name: domain.into(),
        ..Default::default()
    })
    .await
    .expect("get domain")
    .into_inner()
}

fn update_mapping(domain: &str, id: &str) -> UpdateApiMappingRequest {
    UpdateApiMappingRequest {
        domain_name: domain.into(),
        api_mapping_id: id.into(),
        ..Default::default()
    }
}

fn config_of(d: &DomainName) -> (EndpointType, SecurityPolicy, String) {
    assert_eq!(d.domain_name_configurations.len(), 1, "one configuration");
    let cfg = &d.domain_name_configurations[0];
    (
        EndpointType::try_from(cfg.endpoint_type).expect("endpoint"),
        SecurityPolicy::try_from(cfg.security_policy).expect("policy"),
        cfg.certificate_arn.clone(),
    )
}

fn domain_config(endpoint: EndpointType, policy: SecurityPolicy) -> DomainNameConfiguration {
    DomainNameConfiguration {
        endpoint_type: endpoint as i32,
        security_policy: policy as i32,
        ..Default::default()
    }
}

/// Asserts an INVALID_ARGUMENT on `api_mapping_key`, with the field in the BadRequest and message.
#[track_caller]
fn assert_invalid_key<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>) {
    assert_key_refused(r, "INVALID_API_MAPPING_KEY");
}

/// Asserts an INVALID_ARGUMENT with `reason` on `api_mapping_key`, with the field in the
/// BadRequest and message.
#[track_caller]
fn assert_key_refused<T: std::fmt::Debug>(
    r: Result<tonic::Response<T>, tonic::Status>,
    reason_: &str,
) {
    let s = expect_err(r, Code::InvalidArgument, reason_);
    assert_eq!(violated_fields(&s), vec!["api_mapping_key".to_string()]);
    assert!(
        s.message().contains("api_mapping_key"),
        "message names the field: {}",
        s.message()
    );
}

// ---- rule 1: prerequisites -----------------------------------------------------------------

#[tokio::test]
async fn mapping_to_unknown_api_is_not_found() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    create_domain(&mut c, D).await;
    let s = expect_err(
        c.create_api_mapping(mapping_req(D, "v1", UNKNOWN_API, "test"))
            .await,
        Code::NotFound,
        "API_NOT_FOUND",
    );
    assert_eq!(
        s.message(),
        format!("Invalid API identifier specified: {UNKNOWN_API}")
    );
    assert!(all_mappings(&mut c, D).await.is_empty());
}

#[tokio::test]
async fn mapping_to_unknown_stage_is_not_found() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    create_domain(&mut c, D).await;
    let s = expect_err(
        c.create_api_mapping(mapping_req(D, "v1", &api.api_id, "prod"))
            .await,
        Code::NotFound,
        "STAGE_NOT_FOUND",
    );
    assert_eq!(s.message(), "Invalid stage identifier specified: prod");
    assert!(all_mappings(&mut c, D).await.is_empty());
}

#[tokio::test]
async fn mapping_to_stage_of_another_api_is_not_found() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let with_stage = api_with_stage(&mut c, ProtocolType::Http).await;
    let bare = create_api(&mut c, "bare", ProtocolType::Http).await;
    create_domain(&mut c, D).await;
    create_mapping(&mut c, D, "ok", &with_stage.api_id, "test").await;
    expect_err(
        c.create_api_mapping(mapping_req(D, "v1", &bare.api_id, "test"))
            .await,
        Code::NotFound,
        "STAGE_NOT_FOUND",
    );
}

#[tokio::test]
async fn mapping_to_unknown_domain_is_not_found() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    let s = expect_err(
        c.create_api_mapping(mapping_req("nope.example.com", "v1", &api.api_id, "test"))
            .await,
        Code::NotFound,
        "DOMAIN_NAME_NOT_FOUND",
    );
    assert!(
        s.message()
            .starts_with("Invalid domain name identifier specified"),
        "{}",
        s.message()
    );
    assert!(s.message().contains("nope.example.com"), "{}", s.message());
}

#[tokio::test]
async fn stage_of_unknown_api_is_not_found() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let s = expect_err(
        c.create_stage(CreateStageRequest {
            api_id: UNKNOWN_API.into(),
            stage_name: "test".into(),
            ..Default::default()
        })
        .await,
        Code::NotFound,
        "API_NOT_FOUND",
    );
    assert_eq!(
        s.message(),
        format!("Invalid API identifier specified: {UNKNOWN_API}")
    );
}

#[tokio::test]
async fn update_mapping_to_unknown_api_or_stage_is_not_found_and_changes_nothing() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    let bare = create_api(&mut c, "bare", ProtocolType::Http).await;
    create_domain(&mut c, D).await;
    let m = create_mapping(&mut c, D, "v1", &api.api_id, "test").await;

    expect_err(
        c.update_api_mapping(UpdateApiMappingRequest {
            api_id: Some(UNKNOWN_API.into()),
            ..update_mapping(D, &m.api_mapping_id)
        })
        .await,
        Code::NotFound,
        "API_NOT_FOUND",
    );
    expect_err(
        c.update_api_mapping(UpdateApiMappingRequest {
            stage: Some("prod".into()),
            ..update_mapping(D, &m.api_mapping_id)
        })
        .await,
        Code::NotFound,
        "STAGE_NOT_FOUND",
    );
    // Switching only the API keeps the stage name, which the new API lacks.
    expect_err(
        c.update_api_mapping(UpdateApiMappingRequest {
            api_id: Some(bare.api_id.clone()),
            ..update_mapping(D, &m.api_mapping_id)
        })
        .await,
        Code::NotFound,
        "STAGE_NOT_FOUND",
    );
    expect_err(
        c.update_api_mapping(update_mapping(D, UNKNOWN_MAPPING))
            .await,
        Code::NotFound,
        "API_MAPPING_NOT_FOUND",
    );
    assert_eq!(get_mapping(&mut c, D, &m.api_mapping_id).await, m);
}

// ---- rule 2: same account ------------------------------------------------------------------

#[tokio::test]
async fn mapping_across_accounts_is_not_found() {
    let server = TestServer::start_with_tokens().await;
    let mut a = server.client_with("admin-a").await;
    let mut b = server.client_with("admin-b").await;
    let api_a = api_with_stage(&mut a, ProtocolType::Http).await;
    create_domain(&mut a, "a.example.com").await;
    let api_b = api_with_stage(&mut b, ProtocolType::Http).await;
    create_domain(&mut b, "b.example.com").await;

    // B's API onto A's domain: A's domain is invisible to B.
    expect_err(
        b.create_api_mapping(mapping_req("a.example.com", "v1", &api_b.api_id, "test"))
            .await,
        Code::NotFound,
        "DOMAIN_NAME_NOT_FOUND",
    );
    // A's API onto B's domain: A's API is invisible to B.
    expect_err(
        b.create_api_mapping(mapping_req("b.example.com", "v1", &api_a.api_id, "test"))
            .await,
        Code::NotFound,
        "API_NOT_FOUND",
    );
    // A stage on A's API, created by B.
    expect_err(
        b.create_stage(CreateStageRequest {
            api_id: api_a.api_id.clone(),
            stage_name: "prod".into(),
            ..Default::default()
        })
        .await,
        Code::NotFound,
        "API_NOT_FOUND",
    );
    // Re-pointing B's own mapping at A's API.
    let m = create_mapping(&mut b, "b.example.com", "v1", &api_b.api_id, "test").await;
    expect_err(
        b.update_api_mapping(UpdateApiMappingRequest {
            api_id: Some(api_a.api_id.clone()),
            ..update_mapping("b.example.com", &m.api_mapping_id)
        })
        .await,
        Code::NotFound,
        "API_NOT_FOUND",
    );
    assert_eq!(
        get_mapping(&mut b, "b.example.com", &m.api_mapping_id).await,
        m
    );
    assert!(all_mappings(&mut a, "a.example.com").await.is_empty());
}

// ---- rule 3: key syntax --------------------------------------------------------------------

#[tokio::test]
async fn key_of_300_chars_is_accepted_and_301_refused() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    create_domain(&mut c, D).await;
    let k300 = "k".repeat(300);
    let m = create_mapping(&mut c, D, &k300, &api.api_id, "test").await;
    assert_eq!(m.api_mapping_key, k300);
    assert_invalid_key(
        c.create_api_mapping(mapping_req(D, &"k".repeat(301), &api.api_id, "test"))
            .await,
    );
    // Also through an update.
    assert_invalid_key(
        c.update_api_mapping(UpdateApiMappingRequest {
            api_mapping_key: Some("u".repeat(301)),
            ..update_mapping(D, &m.api_mapping_id)
        })
        .await,
    );
    assert_eq!(all_mappings(&mut c, D).await, vec![m]);
}

#[tokio::test]
async fn keys_with_leading_trailing_or_empty_levels_are_refused() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    create_domain(&mut c, D).await;
    for key in ["/v1", "v1/", "v1//x", "/", "//", "a/b/"] {
        assert_invalid_key(
            c.create_api_mapping(mapping_req(D, key, &api.api_id, "test"))
                .await,
        );
    }
    let m = create_mapping(&mut c, D, "v1", &api.api_id, "test").await;
    for key in ["/v1", "v1/", "v1//x"] {
        assert_invalid_key(
            c.update_api_mapping(UpdateApiMappingRequest {
                api_mapping_key: Some(key.into()),
                ..update_mapping(D, &m.api_mapping_id)
            })
            .await,
        );
    }
    assert_eq!(all_mappings(&mut c, D).await, vec![m]);
}

#[tokio::test]
async fn keys_with_characters_outside_the_allowed_set_are_refused() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    create_domain(&mut c, D).await;
    for key in ["v 1", "v1?x", "v1#x", "a%20b", "ü", "a\\b", "v1&x", "v1=x"] {
        let s = expect_err(
            c.create_api_mapping(mapping_req(D, key, &api.api_id, "test"))
                .await,
            Code::InvalidArgument,
            "INVALID_API_MAPPING_KEY",
        );
        assert_eq!(violated_fields(&s), vec!["api_mapping_key".to_string()]);
        assert!(
            s.message()
                .contains("An ApiMapping key may contain only letters, numbers and one of"),
            "{key:?}: {}",
            s.message()
        );
    }
    assert!(all_mappings(&mut c, D).await.is_empty());
}

#[tokio::test]
async fn keys_with_every_allowed_punctuation_and_levels_are_accepted() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    create_domain(&mut c, D).await;
    for key in ["$-_.+!*'()", "Az09", "a/b/c", "v1.2/x-y_z"] {
        let m = create_mapping(&mut c, D, key, &api.api_id, "test").await;
        assert_eq!(m.api_mapping_key, key);
    }
}

#[tokio::test]
async fn keys_are_case_sensitive() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    create_domain(&mut c, D).await;
    let lower = create_mapping(&mut c, D, "v1", &api.api_id, "test").await;
    let upper = create_mapping(&mut c, D, "V1", &api.api_id, "test").await;
    assert_ne!(lower.api_mapping_id, upper.api_mapping_id);
    assert_eq!(upper.api_mapping_key, "V1");
    assert_eq!(all_mappings(&mut c, D).await.len(), 2);
}

#[tokio::test]
async fn empty_key_is_the_root_mapping_and_unique() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    create_domain(&mut c, D).await;
    let root = create_mapping(&mut c, D, "", &api.api_id, "test").await;
    assert_eq!(root.api_mapping_key, "");
    expect_err(
        c.create_api_mapping(mapping_req(D, "", &api.api_id, "test"))
            .await,
        Code::AlreadyExists,
        "MAPPING_KEY_CONFLICT",
    );
}

// ---- rule 4: multi-level keys --------------------------------------------------------------

#[tokio::test]
async fn websocket_api_with_multi_level_key_is_refused() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let ws = api_with_stage(&mut c, ProtocolType::Websocket).await;
    create_domain(&mut c, D).await;
    // Rule 4 is one error (code, reason) whether the API or the domain refuses the key.
    assert_key_refused(
        c.create_api_mapping(mapping_req(D, "v1/chat", &ws.api_id, "test"))
            .await,
        "MULTI_LEVEL_KEY_NOT_SUPPORTED",
    );
    // The single-level key is fine, and an update to a multi-level key is refused the same way.
    let m = create_mapping(&mut c, D, "chat", &ws.api_id, "test").await;
    assert_key_refused(
        c.update_api_mapping(UpdateApiMappingRequest {
            api_mapping_key: Some("v1/chat".into()),
            ..update_mapping(D, &m.api_mapping_id)
        })
        .await,
        "MULTI_LEVEL_KEY_NOT_SUPPORTED",
    );
    assert_eq!(all_mappings(&mut c, D).await, vec![m]);
}

#[tokio::test]
async fn multi_level_key_on_edge_domain_is_refused() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let rest = api_with_stage(&mut c, ProtocolType::Rest).await;
    create_domain_with(&mut c, D, EndpointType::Edge, SecurityPolicy::Tls12).await;
    let st = expect_err(
        c.create_api_mapping(mapping_req(D, "v1/orders", &rest.api_id, "test"))
            .await,
        Code::InvalidArgument,
        "MULTI_LEVEL_KEY_NOT_SUPPORTED",
    );
    assert_eq!(violated_fields(&st), vec!["api_mapping_key".to_string()]);
    assert!(
        st.message().contains("is an EDGE endpoint"),
        "{}",
        st.message()
    );
    // A single-level key for the REST API is fine; moving it to a multi-level key is not.
    let m = create_mapping(&mut c, D, "orders", &rest.api_id, "test").await;
    expect_err(
        c.update_api_mapping(UpdateApiMappingRequest {
            api_mapping_key: Some("v1/orders".into()),
            ..update_mapping(D, &m.api_mapping_id)
        })
        .await,
        Code::InvalidArgument,
        "MULTI_LEVEL_KEY_NOT_SUPPORTED",
    );
    assert_eq!(all_mappings(&mut c, D).await, vec![m]);
}

#[tokio::test]
async fn multi_level_key_on_tls_1_0_domain_is_refused() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let rest = api_with_stage(&mut c, ProtocolType::Rest).await;
    create_domain_with(&mut c, D, EndpointType::Regional, SecurityPolicy::Tls10).await;
    expect_err(
        c.create_api_mapping(mapping_req(D, "v1/orders", &rest.api_id, "test"))
            .await,
        Code::InvalidArgument,
        "MULTI_LEVEL_KEY_NOT_SUPPORTED",
    );
    assert!(all_mappings(&mut c, D).await.is_empty());
}

#[tokio::test]
async fn the_201st_multi_level_mapping_is_refused_by_default() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    create_domain(&mut c, D).await;
    create_domain(&mut c, "other.example.com").await;
    // Single-level keys do not count towards the limit.
    create_mapping(&mut c, D, "single", &api.api_id, "test").await;
    create_mapping(&mut c, D, "", &api.api_id, "test").await;
    for i in 0..200 {
        create_mapping(&mut c, D, &format!("m{i}/x"), &api.api_id, "test").await;
    }
    let s = expect_err(
        c.create_api_mapping(mapping_req(D, "m200/x", &api.api_id, "test"))
            .await,
        Code::ResourceExhausted,
        "MULTI_LEVEL_MAPPING_LIMIT",
    );
    assert!(s.message().contains(D), "names the domain: {}", s.message());
    assert_eq!(all_mappings(&mut c, D).await.len(), 202);
    // Single-level keys still go in; the limit is per domain.
    create_mapping(&mut c, D, "single2", &api.api_id, "test").await;
    create_mapping(&mut c, "other.example.com", "m0/x", &api.api_id, "test").await;
}

#[tokio::test]
async fn multi_level_limit_is_configurable_and_counts_only_multi_level_keys() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(Config {
        data_dir: tmp.path().join("data"),
        max_multi_level_mappings_per_domain: 2,
        ..Config::default()
    })
    .await;
    let mut c = server.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Rest).await;
    create_domain(&mut c, D).await;
    for k in ["a", "b", "c", "d"] {
        create_mapping(&mut c, D, k, &api.api_id, "test").await;
    }
    let first = create_mapping(&mut c, D, "x/1", &api.api_id, "test").await;
    create_mapping(&mut c, D, "x/2", &api.api_id, "test").await;
    expect_err(
        c.create_api_mapping(mapping_req(D, "x/3", &api.api_id, "test"))
            .await,
        Code::ResourceExhausted,
        "MULTI_LEVEL_MAPPING_LIMIT",
    );
    // An update that makes a single-level mapping multi-level counts too.
    let single = all_mappings(&mut c, D)
        .await
        .into_iter()
        .find(|m| m.api_mapping_key == "a")
        .expect("mapping a");
    expect_err(
        c.update_api_mapping(UpdateApiMappingRequest {
            api_mapping_key: Some("a/1".into()),
            ..update_mapping(D, &single.api_mapping_id)
        })
        .await,
        Code::ResourceExhausted,
        "MULTI_LEVEL_MAPPING_LIMIT",
    );
    // Renaming a multi-level mapping to another multi-level key at the limit is fine.
    let renamed = c
        .update_api_mapping(UpdateApiMappingRequest {
            api_mapping_key: Some("y/1".into()),
            ..update_mapping(D, &first.api_mapping_id)
        })
        .await
        .expect("rename within the limit")
        .into_inner();
    assert_eq!(renamed.api_mapping_key, "y/1");
    // Freeing a slot lets one more in.
    c.delete_api_mapping(DeleteApiMappingRequest {
        domain_name: D.into(),
        api_mapping_id: first.api_mapping_id.clone(),
        expected_revision: 0,
        ..Default::default()
    })
    .await
    .expect("delete");
    create_mapping(&mut c, D, "x/3", &api.api_id, "test").await;
    expect_err(
        c.create_api_mapping(mapping_req(D, "x/4", &api.api_id, "test"))
            .await,
        Code::ResourceExhausted,
        "MULTI_LEVEL_MAPPING_LIMIT",
    );
}

// ---- rule 5: unique key --------------------------------------------------------------------

#[tokio::test]
async fn duplicate_key_on_a_domain_is_already_exists() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    let other = api_with_stage(&mut c, ProtocolType::Http).await;
    create_domain(&mut c, D).await;
    create_domain(&mut c, "b.example.com").await;
    let m = create_mapping(&mut c, D, "v1", &api.api_id, "test").await;
    let s = expect_err(
        c.create_api_mapping(mapping_req(D, "v1", &other.api_id, "test"))
            .await,
        Code::AlreadyExists,
        "MAPPING_KEY_CONFLICT",
    );
    assert!(
        s.message()
            .starts_with("ApiMapping key already exists for this domain name"),
        "{}",
        s.message()
    );
    assert_eq!(all_mappings(&mut c, D).await, vec![m]);
    // The same key on another domain is fine.
    create_mapping(&mut c, "b.example.com", "v1", &other.api_id, "test").await;
}

#[tokio::test]
async fn same_api_and_stage_under_two_keys_and_two_domains() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    create_domain(&mut c, D).await;
    create_domain(&mut c, "b.example.com").await;
    let m1 = create_mapping(&mut c, D, "v1", &api.api_id, "test").await;
    let m2 = create_mapping(&mut c, D, "latest", &api.api_id, "test").await;
    let m3 = create_mapping(&mut c, "b.example.com", "v1", &api.api_id, "test").await;
    assert_ne!(m1.api_mapping_id, m2.api_mapping_id);
    let keys: Vec<_> = all_mappings(&mut c, D)
        .await
        .into_iter()
        .map(|m| (m.api_mapping_key, m.api_id, m.stage))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("latest".to_string(), api.api_id.clone(), "test".to_string()),
            ("v1".to_string(), api.api_id.clone(), "test".to_string()),
        ]
    );
    assert_eq!(all_mappings(&mut c, "b.example.com").await, vec![m3]);
}

#[tokio::test]
async fn nested_keys_coexist_on_one_domain() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    create_domain(&mut c, D).await;
    create_mapping(&mut c, D, "orders", &api.api_id, "test").await;
    create_mapping(&mut c, D, "orders/v1/items", &api.api_id, "test").await;
    create_mapping(&mut c, D, "orders/v1", &api.api_id, "test").await;
    let keys: Vec<_> = all_mappings(&mut c, D)
        .await
        .into_iter()
        .map(|m| m.api_mapping_key)
        .collect();
    assert_eq!(keys, vec!["orders", "orders/v1", "orders/v1/items"]);
}

#[tokio::test]
async fn default_stage_name_is_accepted_and_mappable() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = create_api(&mut c, "api", ProtocolType::Http).await;
    let stage = create_stage(&mut c, &api.api_id, "$default").await;
    assert_eq!(stage.stage_name, "$default");
    let got = c
        .get_stage(GetStageRequest {
            api_id: api.api_id.clone(),
            stage_name: "$default".into(),
            ..Default::default()
        })
        .await
        .expect("get $default")
        .into_inner();
    assert_eq!(got, stage);
    create_domain(&mut c, D).await;
    let m = create_mapping(&mut c, D, "", &api.api_id, "$default").await;
    assert_eq!(m.stage, "$default");
    assert_eq!(get_mapping(&mut c, D, &m.api_mapping_id).await, m);
}

#[tokio::test]
async fn update_moving_a_key_onto_an_existing_key_is_already_exists() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    create_domain(&mut c, D).await;
    let a = create_mapping(&mut c, D, "a", &api.api_id, "test").await;
    let b = create_mapping(&mut c, D, "b", &api.api_id, "test").await;
    let s = expect_err(
        c.update_api_mapping(UpdateApiMappingRequest {
            api_mapping_key: Some("a".into()),
            ..update_mapping(D, &b.api_mapping_id)
        })
        .await,
        Code::AlreadyExists,
        "MAPPING_KEY_CONFLICT",
    );
    assert!(
        s.message()
            .starts_with("ApiMapping key already exists for this domain name"),
        "{}",
        s.message()
    );
    assert_eq!(all_mappings(&mut c, D).await, vec![a, b.clone()]);
    // Setting a mapping's key to its own key is no conflict.
    let same = c
        .update_api_mapping(UpdateApiMappingRequest {
            api_mapping_key: Some("b".into()),
            ..update_mapping(D, &b.api_mapping_id)
        })
        .await
        .expect("same key")
        .into_inner();
    assert_eq!(same.api_mapping_key, "b");
}

#[tokio::test]
async fn update_frees_the_old_key() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    create_domain(&mut c, D).await;
    let m = create_mapping(&mut c, D, "old", &api.api_id, "test").await;
    c.update_api_mapping(UpdateApiMappingRequest {
        api_mapping_key: Some("new".into()),
        ..update_mapping(D, &m.api_mapping_id)
    })
    .await
    .expect("rename");
    let again = create_mapping(&mut c, D, "old", &api.api_id, "test").await;
    assert_ne!(again.api_mapping_id, m.api_mapping_id);
    expect_err(
        c.create_api_mapping(mapping_req(D, "new", &api.api_id, "test"))
            .await,
        Code::AlreadyExists,
        "MAPPING_KEY_CONFLICT",
    );
}

// ---- uniqueness of domains and stages ------------------------------------------------------

#[tokio::test]
async fn duplicate_domain_name_is_already_exists_in_any_case() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let d = create_domain(&mut c, D).await;
    for name in [D, "API.Example.COM"] {
        let s = expect_err(
            c.create_domain_name(CreateDomainNameRequest {
                domain_name: name.into(),
                ..Default::default()
            })
            .await,
            Code::AlreadyExists,
            "DOMAIN_NAME_EXISTS",
        );
        assert!(s.message().contains(D), "{}", s.message());
    }
    assert_eq!(get_domain(&mut c, D).await, d);
}

#[tokio::test]
async fn domain_names_are_unique_across_accounts() {
    let server = TestServer::start_with_tokens().await;
    let mut a = server.client_with("admin-a").await;
    let mut b = server.client_with("admin-b").await;
    let d = create_domain(&mut a, D).await;
    expect_err(
        b.create_domain_name(CreateDomainNameRequest {
            domain_name: D.into(),
            ..Default::default()
        })
        .await,
        Code::AlreadyExists,
        "DOMAIN_NAME_EXISTS",
    );
    assert_eq!(get_domain(&mut a, D).await, d);
}

#[tokio::test]
async fn duplicate_stage_is_already_exists() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = create_api(&mut c, "api", ProtocolType::Http).await;
    let other = create_api(&mut c, "other", ProtocolType::Http).await;
    let st = create_stage(&mut c, &api.api_id, "prod").await;
    let s = expect_err(
        c.create_stage(CreateStageRequest {
            api_id: api.api_id.clone(),
            stage_name: "prod".into(),
            description: "again".into(),
            ..Default::default()
        })
        .await,
        Code::AlreadyExists,
        "STAGE_EXISTS",
    );
    assert!(s.message().contains("prod"), "{}", s.message());
    let got = c
        .get_stage(GetStageRequest {
            api_id: api.api_id.clone(),
            stage_name: "prod".into(),
            ..Default::default()
        })
        .await
        .expect("get stage")
        .into_inner();
    assert_eq!(got, st);
    // The same stage name on another API is fine.
    create_stage(&mut c, &other.api_id, "prod").await;
}

// ---- domain names are lower-cased on every request -----------------------------------------

#[tokio::test]
async fn upper_case_domain_lookups_find_the_lower_case_domain() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    let d = create_domain(&mut c, D).await;
    const UP: &str = "API.Example.COM";

    assert_eq!(get_domain(&mut c, UP).await, d);
    let m = create_mapping(&mut c, UP, "v1", &api.api_id, "test").await;
    assert_eq!(m.domain_name, D);
    let listed = c
        .get_api_mappings(GetApiMappingsRequest {
            domain_name: UP.into(),
            ..Default::default()
        })
        .await
        .expect("list with upper case")
        .into_inner();
    assert_eq!(listed.items, vec![m.clone()]);
    assert_eq!(get_mapping(&mut c, UP, &m.api_mapping_id).await, m);
    assert_eq!(all_mappings(&mut c, D).await, vec![m]);
}

#[tokio::test]
async fn upper_case_domain_create_is_stored_lower_case() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let d = create_domain(&mut c, "Shop.EXAMPLE.com").await;
    assert_eq!(d.domain_name, "shop.example.com");
    assert_eq!(get_domain(&mut c, "shop.example.com").await, d);
}

// ---- rule 6: protocol families -------------------------------------------------------------

#[tokio::test]
async fn websocket_onto_a_domain_with_http_mapping_is_refused_naming_it() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let http = api_with_stage(&mut c, ProtocolType::Http).await;
    let ws = api_with_stage(&mut c, ProtocolType::Websocket).await;
    create_domain(&mut c, D).await;
    let m = create_mapping(&mut c, D, "v1", &http.api_id, "test").await;
    let s = expect_err(
        c.create_api_mapping(mapping_req(D, "chat", &ws.api_id, "test"))
            .await,
        Code::FailedPrecondition,
        "PROTOCOL_CONFLICT",
    );
    assert!(
        s.message().contains(&m.api_mapping_id),
        "message names the conflicting mapping {}: {}",
        m.api_mapping_id,
        s.message()
    );
    assert_eq!(all_mappings(&mut c, D).await, vec![m]);
}

#[tokio::test]
async fn http_onto_a_domain_with_websocket_mapping_is_refused_naming_it() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let http = api_with_stage(&mut c, ProtocolType::Http).await;
    let ws = api_with_stage(&mut c, ProtocolType::Websocket).await;
    create_domain(&mut c, D).await;
    let m = create_mapping(&mut c, D, "", &ws.api_id, "test").await;
    let s = expect_err(
        c.create_api_mapping(mapping_req(D, "v1", &http.api_id, "test"))
            .await,
        Code::FailedPrecondition,
        "PROTOCOL_CONFLICT",
    );
    assert!(
        s.message().contains(&m.api_mapping_id),
        "message names the conflicting mapping {}: {}",
        m.api_mapping_id,
        s.message()
    );
    assert_eq!(all_mappings(&mut c, D).await, vec![m]);
}

#[tokio::test]
async fn rest_onto_a_domain_with_websocket_mapping_is_refused() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let rest = api_with_stage(&mut c, ProtocolType::Rest).await;
    let ws = api_with_stage(&mut c, ProtocolType::Websocket).await;
    create_domain(&mut c, D).await;
    let m = create_mapping(&mut c, D, "chat", &ws.api_id, "test").await;
    let s = expect_err(
        c.create_api_mapping(mapping_req(D, "v1", &rest.api_id, "test"))
            .await,
        Code::FailedPrecondition,
        "PROTOCOL_CONFLICT",
    );
    assert!(s.message().contains(&m.api_mapping_id), "{}", s.message());
}

#[tokio::test]
async fn http_and_rest_share_a_domain() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let http = api_with_stage(&mut c, ProtocolType::Http).await;
    let rest = api_with_stage(&mut c, ProtocolType::Rest).await;
    create_domain(&mut c, D).await;
    create_mapping(&mut c, D, "http", &http.api_id, "test").await;
    create_mapping(&mut c, D, "rest", &rest.api_id, "test").await;
    create_mapping(&mut c, D, "rest/v2", &rest.api_id, "test").await;
    assert_eq!(all_mappings(&mut c, D).await.len(), 3);
}

#[tokio::test]
async fn websocket_can_map_once_the_http_mappings_are_gone() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let http = api_with_stage(&mut c, ProtocolType::Http).await;
    let ws = api_with_stage(&mut c, ProtocolType::Websocket).await;
    create_domain(&mut c, D).await;
    let m = create_mapping(&mut c, D, "v1", &http.api_id, "test").await;
    c.delete_api_mapping(DeleteApiMappingRequest {
        domain_name: D.into(),
        api_mapping_id: m.api_mapping_id.clone(),
        expected_revision: 0,
        ..Default::default()
    })
    .await
    .expect("delete");
    create_mapping(&mut c, D, "chat", &ws.api_id, "test").await;
}

#[tokio::test]
async fn update_switching_to_websocket_on_a_domain_with_http_mappings_is_refused() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let http = api_with_stage(&mut c, ProtocolType::Http).await;
    let ws = api_with_stage(&mut c, ProtocolType::Websocket).await;
    create_domain(&mut c, D).await;
    // The mapping being switched sorts first, so a scan that forgets to skip it would name it.
    let switched = create_mapping(&mut c, D, "a", &http.api_id, "test").await;
    let other = create_mapping(&mut c, D, "z", &http.api_id, "test").await;
    let s = expect_err(
        c.update_api_mapping(UpdateApiMappingRequest {
            api_id: Some(ws.api_id.clone()),
            ..update_mapping(D, &switched.api_mapping_id)
        })
        .await,
        Code::FailedPrecondition,
        "PROTOCOL_CONFLICT",
    );
    assert!(
        s.message().contains(&other.api_mapping_id),
        "message names the other mapping {}: {}",
        other.api_mapping_id,
        s.message()
    );
    assert!(
        !s.message().contains(&switched.api_mapping_id),
        "message must not name the mapping being updated {}: {}",
        switched.api_mapping_id,
        s.message()
    );
    assert_eq!(all_mappings(&mut c, D).await, vec![switched, other]);
}

#[tokio::test]
async fn update_switching_the_only_mapping_to_websocket_is_allowed() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let http = api_with_stage(&mut c, ProtocolType::Http).await;
    let ws = api_with_stage(&mut c, ProtocolType::Websocket).await;
    create_domain(&mut c, D).await;
    let m = create_mapping(&mut c, D, "v1", &http.api_id, "test").await;
    let updated = c
        .update_api_mapping(UpdateApiMappingRequest {
            api_id: Some(ws.api_id.clone()),
            ..update_mapping(D, &m.api_mapping_id)
        })
        .await
        .expect("its own mapping is no conflict")
        .into_inner();
    assert_eq!(updated.api_id, ws.api_id);
    // Now the domain is WebSocket: HTTP is refused.
    expect_err(
        c.create_api_mapping(mapping_req(D, "v2", &http.api_id, "test"))
            .await,
        Code::FailedPrecondition,
        "PROTOCOL_CONFLICT",
    );
}

// ---- rule 7: endpoint and TLS --------------------------------------------------------------

async fn check_rest_only_domain(endpoint: EndpointType, policy: SecurityPolicy) {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let http = api_with_stage(&mut c, ProtocolType::Http).await;
    let ws = api_with_stage(&mut c, ProtocolType::Websocket).await;
    let rest = api_with_stage(&mut c, ProtocolType::Rest).await;
    create_domain_with(&mut c, D, endpoint, policy).await;
    create_domain_with(&mut c, "ws.example.com", endpoint, policy).await;
    let s = expect_err(
        c.create_api_mapping(mapping_req(D, "v1", &http.api_id, "test"))
            .await,
        Code::FailedPrecondition,
        "DOMAIN_CONFIGURATION_CONFLICT",
    );
    assert!(s.message().contains(&http.api_id), "{}", s.message());
    expect_err(
        c.create_api_mapping(mapping_req("ws.example.com", "chat", &ws.api_id, "test"))
            .await,
        Code::FailedPrecondition,
        "DOMAIN_CONFIGURATION_CONFLICT",
    );
    let m = create_mapping(&mut c, D, "v1", &rest.api_id, "test").await;
    // Re-pointing the REST mapping at the HTTP API is refused the same way.
    expect_err(
        c.update_api_mapping(UpdateApiMappingRequest {
            api_id: Some(http.api_id.clone()),
            ..update_mapping(D, &m.api_mapping_id)
        })
        .await,
        Code::FailedPrecondition,
        "DOMAIN_CONFIGURATION_CONFLICT",
    );
    assert_eq!(all_mappings(&mut c, D).await, vec![m]);
    assert!(all_mappings(&mut c, "ws.example.com").await.is_empty());
}

#[tokio::test]
async fn edge_domain_refuses_http_and_websocket_but_takes_rest() {
    check_rest_only_domain(EndpointType::Edge, SecurityPolicy::Tls12).await;
}

#[tokio::test]
async fn tls_1_0_domain_refuses_http_and_websocket_but_takes_rest() {
    check_rest_only_domain(EndpointType::Regional, SecurityPolicy::Tls10).await;
}

#[tokio::test]
async fn update_domain_to_edge_or_tls_1_0_with_http_mappings_is_refused() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let http = api_with_stage(&mut c, ProtocolType::Http).await;
    let d = create_domain(&mut c, D).await;
    create_mapping(&mut c, D, "v1", &http.api_id, "test").await;
    for cfg in [
        domain_config(EndpointType::Edge, SecurityPolicy::Unspecified),
        domain_config(EndpointType::Unspecified, SecurityPolicy::Tls10),
        domain_config(EndpointType::Edge, SecurityPolicy::Tls10),
    ] {
        expect_err(
            c.update_domain_name(UpdateDomainNameRequest {
                domain_name: D.into(),
                domain_name_configurations: vec![cfg],
                expected_revision: 0,
                ..Default::default()
            })
            .await,
            Code::FailedPrecondition,
            "DOMAIN_CONFIGURATION_CONFLICT",
        );
    }
    assert_eq!(get_domain(&mut c, D).await, d);
}

#[tokio::test]
async fn update_domain_to_edge_with_websocket_mappings_is_refused() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let ws = api_with_stage(&mut c, ProtocolType::Websocket).await;
    let d = create_domain(&mut c, D).await;
    create_mapping(&mut c, D, "", &ws.api_id, "test").await;
    expect_err(
        c.update_domain_name(UpdateDomainNameRequest {
            domain_name: D.into(),
            domain_name_configurations: vec![domain_config(
                EndpointType::Edge,
                SecurityPolicy::Tls12,
            )],
            expected_revision: 0,
            ..Default::default()
        })
        .await,
        Code::FailedPrecondition,
        "DOMAIN_CONFIGURATION_CONFLICT",
    );
    assert_eq!(get_domain(&mut c, D).await, d);
}

#[tokio::test]
async fn update_domain_to_edge_with_rest_mappings_only_is_allowed() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let rest = api_with_stage(&mut c, ProtocolType::Rest).await;
    create_domain(&mut c, D).await;
    create_mapping(&mut c, D, "v1", &rest.api_id, "test").await;
    let d = c
        .update_domain_name(UpdateDomainNameRequest {
            domain_name: D.into(),
            domain_name_configurations: vec![domain_config(
                EndpointType::Edge,
                SecurityPolicy::Tls10,
            )],
            expected_revision: 0,
            ..Default::default()
        })
        .await
        .expect("REST-only domain may go EDGE")
        .into_inner();
    let (e, p, _) = config_of(&d);
    assert_eq!((e, p), (EndpointType::Edge, SecurityPolicy::Tls10));
}

#[tokio::test]
async fn update_domain_to_edge_with_multi_level_rest_mapping_is_refused() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let rest = api_with_stage(&mut c, ProtocolType::Rest).await;
    let d = create_domain(&mut c, D).await;
    create_mapping(&mut c, D, "v1/orders", &rest.api_id, "test").await;
    expect_err(
        c.update_domain_name(UpdateDomainNameRequest {
            domain_name: D.into(),
            domain_name_configurations: vec![domain_config(
                EndpointType::Edge,
                SecurityPolicy::Tls12,
            )],
            expected_revision: 0,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "MULTI_LEVEL_KEY_NOT_SUPPORTED",
    );
    assert_eq!(get_domain(&mut c, D).await, d);
}

// ---- rule 8: deletes -----------------------------------------------------------------------

#[tokio::test]
async fn delete_of_a_mapped_api_is_refused_listing_every_domain() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    create_domain(&mut c, "a.example.com").await;
    create_domain(&mut c, "b.example.com").await;
    create_domain(&mut c, "unrelated.example.com").await;
    create_mapping(&mut c, "a.example.com", "v1", &api.api_id, "test").await;
    create_mapping(&mut c, "a.example.com", "v2", &api.api_id, "test").await;
    create_mapping(&mut c, "b.example.com", "", &api.api_id, "test").await;
    let s = expect_err(
        c.delete_api(DeleteApiRequest {
            api_id: api.api_id.clone(),
            expected_revision: 0,
            ..Default::default()
        })
        .await,
        Code::FailedPrecondition,
        "API_IN_USE",
    );
    let prefix = format!(
        "Deleting API {} failed. Please remove all API mappings for the API from your custom domain names: ",
        api.api_id
    );
    assert!(s.message().starts_with(&prefix), "{}", s.message());
    let mut listed: Vec<&str> = s.message()[prefix.len()..].split(", ").collect();
    listed.sort();
    assert_eq!(listed, vec!["a.example.com", "b.example.com"]);
    // Nothing was deleted.
    c.get_api(GetApiRequest {
        api_id: api.api_id.clone(),
        ..Default::default()
    })
    .await
    .expect("api still there");
    c.get_stage(GetStageRequest {
        api_id: api.api_id.clone(),
        stage_name: "test".into(),
        ..Default::default()
    })
    .await
    .expect("stage still there");
}

#[tokio::test]
async fn delete_of_a_mapped_stage_is_refused_listing_every_domain() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    create_stage(&mut c, &api.api_id, "unmapped").await;
    create_domain(&mut c, "a.example.com").await;
    create_domain(&mut c, "b.example.com").await;
    create_mapping(&mut c, "a.example.com", "v1", &api.api_id, "test").await;
    create_mapping(&mut c, "b.example.com", "v1", &api.api_id, "test").await;
    let s = expect_err(
        c.delete_stage(DeleteStageRequest {
            api_id: api.api_id.clone(),
            stage_name: "test".into(),
            expected_revision: 0,
            ..Default::default()
        })
        .await,
        Code::FailedPrecondition,
        "STAGE_IN_USE",
    );
    let msg = s.message();
    assert!(msg.starts_with("Deleting stage test failed."), "{msg}");
    let (_, domains) = msg
        .split_once("custom domain names: ")
        .unwrap_or_else(|| panic!("lists the domains: {msg}"));
    let mut listed: Vec<&str> = domains.split(", ").collect();
    listed.sort();
    assert_eq!(listed, vec!["a.example.com", "b.example.com"]);
    c.get_stage(GetStageRequest {
        api_id: api.api_id.clone(),
        stage_name: "test".into(),
        ..Default::default()
    })
    .await
    .expect("stage still there");
    // An unmapped stage of the same API can go.
    c.delete_stage(DeleteStageRequest {
        api_id: api.api_id.clone(),
        stage_name: "unmapped".into(),
        expected_revision: 0,
        ..Default::default()
    })
    .await
    .expect("unmapped stage deletes");
}

#[tokio::test]
async fn stage_in_use_is_per_api() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let mapped = api_with_stage(&mut c, ProtocolType::Http).await;
    let other = api_with_stage(&mut c, ProtocolType::Http).await;
    create_domain(&mut c, D).await;
    create_mapping(&mut c, D, "v1", &mapped.api_id, "test").await;
    // Another API's stage of the same name is not in use.
    c.delete_stage(DeleteStageRequest {
        api_id: other.api_id.clone(),
        stage_name: "test".into(),
        expected_revision: 0,
        ..Default::default()
    })
    .await
    .expect("other API's stage deletes");
}

#[tokio::test]
async fn deletes_succeed_once_the_mappings_are_removed() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    create_domain(&mut c, D).await;
    let m1 = create_mapping(&mut c, D, "v1", &api.api_id, "test").await;
    let m2 = create_mapping(&mut c, D, "v2", &api.api_id, "test").await;
    for m in [&m1, &m2] {
        c.delete_api_mapping(DeleteApiMappingRequest {
            domain_name: D.into(),
            api_mapping_id: m.api_mapping_id.clone(),
            expected_revision: 0,
            ..Default::default()
        })
        .await
        .expect("delete mapping");
    }
    c.delete_stage(DeleteStageRequest {
        api_id: api.api_id.clone(),
        stage_name: "test".into(),
        expected_revision: 0,
        ..Default::default()
    })
    .await
    .expect("delete stage");
    c.delete_api(DeleteApiRequest {
        api_id: api.api_id.clone(),
        expected_revision: 0,
        ..Default::default()
    })
    .await
    .expect("delete api");
}

#[tokio::test]
async fn delete_api_with_unmapped_stages_removes_the_stages() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    create_stage(&mut c, &api.api_id, "prod").await;
    create_stage(&mut c, &api.api_id, "$default").await;
    let last = create_stage(&mut c, &api.api_id, "dev").await;
    let del = c
        .delete_api(DeleteApiRequest {
            api_id: api.api_id.clone(),
            expected_revision: 0,
            ..Default::default()
        })
        .await
        .expect("delete api")
        .into_inner();
    assert_eq!(del.revision, last.mod_revision + 1, "one revision for all");
    expect_err(
        c.get_api(GetApiRequest {
            api_id: api.api_id.clone(),
            ..Default::default()
        })
        .await,
        Code::NotFound,
        "API_NOT_FOUND",
    );
    for stage in ["test", "prod", "$default", "dev"] {
        let r = c
            .get_stage(GetStageRequest {
                api_id: api.api_id.clone(),
                stage_name: stage.into(),
                ..Default::default()
            })
            .await;
        let s = r.expect_err("stage is gone");
        assert_eq!(s.code(), Code::NotFound, "{stage}: {s:?}");
    }
    // No stale stage on a stage listing either (the API is gone, so the listing is NOT_FOUND
    // or empty, never the old stages).
    match c
        .get_stages(GetStagesRequest {
            api_id: api.api_id.clone(),
            ..Default::default()
        })
        .await
    {
        Ok(r) => assert!(r.into_inner().items.is_empty()),
        Err(s) => assert_eq!(s.code(), Code::NotFound, "{s:?}"),
    }
}

#[tokio::test]
async fn delete_domain_name_removes_its_mappings_in_one_revision() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    let rest = api_with_stage(&mut c, ProtocolType::Rest).await;
    create_domain(&mut c, D).await;
    create_domain(&mut c, "keep.example.com").await;
    let kept = create_mapping(&mut c, "keep.example.com", "v1", &api.api_id, "test").await;
    let mappings = vec![
        create_mapping(&mut c, D, "", &api.api_id, "test").await,
        create_mapping(&mut c, D, "v1", &rest.api_id, "test").await,
        create_mapping(&mut c, D, "v1/orders", &api.api_id, "test").await,
    ];
    let before = mappings[2].mod_revision;

    let del = c
        .delete_domain_name(DeleteDomainNameRequest {
            domain_name: D.into(),
            expected_revision: 0,
            ..Default::default()
        })
        .await
        .expect("delete domain")
        .into_inner();
    assert_eq!(
        del.revision,
        before + 1,
        "domain and mappings in one revision"
    );

    expect_err(
        c.get_domain_name(GetDomainNameRequest {
            domain_name: D.into(),
            ..Default::default()
        })
        .await,
        Code::NotFound,
        "DOMAIN_NAME_NOT_FOUND",
    );
    for m in &mappings {
        let s = c
            .get_api_mapping(GetApiMappingRequest {
                domain_name: D.into(),
                api_mapping_id: m.api_mapping_id.clone(),
                ..Default::default()
            })
            .await
            .expect_err("mapping is gone");
        assert_eq!(s.code(), Code::NotFound, "{s:?}");
    }
    // The next write takes the next revision.
    let next = create_api(&mut c, "next", ProtocolType::Http).await;
    assert_eq!(next.create_revision, del.revision + 1);

    // Re-creating the domain does not bring the mappings back.
    create_domain(&mut c, D).await;
    assert!(all_mappings(&mut c, D).await.is_empty());
    for m in &mappings {
        expect_err(
            c.get_api_mapping(GetApiMappingRequest {
                domain_name: D.into(),
                api_mapping_id: m.api_mapping_id.clone(),
                ..Default::default()
            })
            .await,
            Code::NotFound,
            "API_MAPPING_NOT_FOUND",
        );
    }
    // The other domain's mapping is untouched.
    assert_eq!(all_mappings(&mut c, "keep.example.com").await, vec![kept]);
    // The mappings no longer hold the REST API: it deletes; the HTTP API is still held by `kept`.
    let s = expect_err(
        c.delete_api(DeleteApiRequest {
            api_id: api.api_id.clone(),
            expected_revision: 0,
            ..Default::default()
        })
        .await,
        Code::FailedPrecondition,
        "API_IN_USE",
    );
    assert!(
        s.message().ends_with(": keep.example.com"),
        "{}",
        s.message()
    );
    c.delete_api(DeleteApiRequest {
        api_id: rest.api_id.clone(),
        expected_revision: 0,
        ..Default::default()
    })
    .await
    .expect("REST API no longer mapped");
}

#[tokio::test]
async fn delete_domain_name_clears_its_protocol_family() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let http = api_with_stage(&mut c, ProtocolType::Http).await;
    let ws = api_with_stage(&mut c, ProtocolType::Websocket).await;
    create_domain(&mut c, D).await;
    create_mapping(&mut c, D, "v1", &http.api_id, "test").await;
    c.delete_domain_name(DeleteDomainNameRequest {
        domain_name: D.into(),
        expected_revision: 0,
        ..Default::default()
    })
    .await
    .expect("delete domain");
    create_domain(&mut c, D).await;
    create_mapping(&mut c, D, "chat", &ws.api_id, "test").await;
}

// ---- rule 9: updates leave omitted fields unchanged ----------------------------------------

#[tokio::test]
async fn update_api_leaves_omitted_fields_unchanged() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = c
        .create_api(CreateApiRequest {
            name: "orders".into(),
            protocol_type: ProtocolType::Rest as i32,
            description: "the orders API".into(),
            tags: [("team".to_string(), "shop".to_string())].into(),
            ..Default::default()
        })
        .await
        .expect("create api")
        .into_inner();

    let renamed = c
        .update_api(UpdateApiRequest {
            api_id: api.api_id.clone(),
            name: Some("orders-v2".into()),
            ..Default::default()
        })
        .await
        .expect("rename")
        .into_inner();
    assert_eq!(renamed.name, "orders-v2");
    assert_eq!(renamed.description, "the orders API");
    assert_eq!(renamed.protocol_type, ProtocolType::Rest as i32);
    assert_eq!(renamed.tags, api.tags);
    assert_eq!(renamed.created_date, api.created_date);
    assert_eq!(renamed.create_revision, api.create_revision);
    assert_eq!(renamed.mod_revision, api.mod_revision + 1);

    let described = c
        .update_api(UpdateApiRequest {
            api_id: api.api_id.clone(),
            description: Some(String::new()),
            ..Default::default()
        })
        .await
        .expect("clear description")
        .into_inner();
    assert_eq!(described.name, "orders-v2");
    assert_eq!(described.description, "");

    let got = c
        .get_api(GetApiRequest {
            api_id: api.api_id.clone(),
            ..Default::default()
        })
        .await
        .expect("get api")
        .into_inner();
    assert_eq!(got, described);
}

#[tokio::test]
async fn update_stage_leaves_omitted_description_unchanged() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = create_api(&mut c, "api", ProtocolType::Http).await;
    let st = c
        .create_stage(CreateStageRequest {
            api_id: api.api_id.clone(),
            stage_name: "prod".into(),
            description: "production".into(),
            ..Default::default()
        })
        .await
        .expect("create stage")
        .into_inner();
    let up = c
        .update_stage(UpdateStageRequest {
            api_id: api.api_id.clone(),
            stage_name: "prod".into(),
            description: None,
            expected_revision: 0,
            ..Default::default()
        })
        .await
        .expect("update stage")
        .into_inner();
    assert_eq!(up.description, "production");
    assert_eq!(up.create_revision, st.create_revision);
}

#[tokio::test]
async fn update_api_mapping_leaves_omitted_fields_unchanged() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    create_stage(&mut c, &api.api_id, "prod").await;
    let other = create_api(&mut c, "other", ProtocolType::Http).await;
    create_stage(&mut c, &other.api_id, "prod").await;
    create_domain(&mut c, D).await;
    let m = create_mapping(&mut c, D, "v1", &api.api_id, "test").await;

    // Only the stage.
    let up = c
        .update_api_mapping(UpdateApiMappingRequest {
            stage: Some("prod".into()),
            ..update_mapping(D, &m.api_mapping_id)
        })
        .await
        .expect("change stage")
        .into_inner();
    assert_eq!(
        (
            up.api_mapping_key.as_str(),
            up.api_id.as_str(),
            up.stage.as_str()
        ),
        ("v1", api.api_id.as_str(), "prod")
    );
    assert_eq!(up.api_mapping_id, m.api_mapping_id);
    assert_eq!(up.create_revision, m.create_revision);

    // Only the API (the stage name carries over).
    let up = c
        .update_api_mapping(UpdateApiMappingRequest {
            api_id: Some(other.api_id.clone()),
            ..update_mapping(D, &m.api_mapping_id)
        })
        .await
        .expect("change api")
        .into_inner();
    assert_eq!(
        (
            up.api_mapping_key.as_str(),
            up.api_id.as_str(),
            up.stage.as_str()
        ),
        ("v1", other.api_id.as_str(), "prod")
    );

    // Only the key.
    let up = c
        .update_api_mapping(UpdateApiMappingRequest {
            api_mapping_key: Some("v2".into()),
            ..update_mapping(D, &m.api_mapping_id)
        })
        .await
        .expect("change key")
        .into_inner();
    assert_eq!(
        (
            up.api_mapping_key.as_str(),
            up.api_id.as_str(),
            up.stage.as_str()
        ),
        ("v2", other.api_id.as_str(), "prod")
    );

    // Nothing at all.
    let same = c
        .update_api_mapping(update_mapping(D, &m.api_mapping_id))
        .await
        .expect("empty update")
        .into_inner();
    assert_eq!(
        (
            same.api_mapping_key.as_str(),
            same.api_id.as_str(),
            same.stage.as_str()
        ),
        ("v2", other.api_id.as_str(), "prod")
    );
    assert_eq!(get_mapping(&mut c, D, &m.api_mapping_id).await, same);
}

#[tokio::test]
async fn update_api_mapping_with_empty_key_sets_the_root() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    create_domain(&mut c, D).await;
    let m = create_mapping(&mut c, D, "v1", &api.api_id, "test").await;
    let root = c
        .update_api_mapping(UpdateApiMappingRequest {
            api_mapping_key: Some(String::new()),
            ..update_mapping(D, &m.api_mapping_id)
        })
        .await
        .expect("make root")
        .into_inner();
    assert_eq!(root.api_mapping_key, "");
    // The root is now taken, and `v1` is free.
    expect_err(
        c.create_api_mapping(mapping_req(D, "", &api.api_id, "test"))
            .await,
        Code::AlreadyExists,
        "MAPPING_KEY_CONFLICT",
    );
    create_mapping(&mut c, D, "v1", &api.api_id, "test").await;
}

#[tokio::test]
async fn update_domain_name_leaves_omitted_fields_unchanged() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let d = c
        .create_domain_name(CreateDomainNameRequest {
            domain_name: D.into(),
            domain_name_configurations: vec![DomainNameConfiguration {
                endpoint_type: EndpointType::Regional as i32,
                security_policy: SecurityPolicy::Tls12 as i32,
                certificate_arn: "arn:aws:acm:eu-west-1:111122223333:certificate/abc".into(),
                ..Default::default()
            }],
            tags: [("env".to_string(), "prod".to_string())].into(),
            ..Default::default()
        })
        .await
        .expect("create domain")
        .into_inner();

    // No configuration at all: nothing changes but the revision.
    let same = c
        .update_domain_name(UpdateDomainNameRequest {
            domain_name: D.into(),
            domain_name_configurations: vec![],
            expected_revision: 0,
            ..Default::default()
        })
        .await
        .expect("empty update")
        .into_inner();
    assert_eq!(
        same.domain_name_configurations,
        d.domain_name_configurations
    );
    assert_eq!(same.tags, d.tags);
    assert_eq!(same.create_revision, d.create_revision);

    // Only the security policy: endpoint, certificate and computed fields stay.
    let up = c
        .update_domain_name(UpdateDomainNameRequest {
            domain_name: D.into(),
            domain_name_configurations: vec![domain_config(
                EndpointType::Unspecified,
                SecurityPolicy::Tls10,
            )],
            expected_revision: 0,
            ..Default::default()
        })
        .await
        .expect("policy only")
        .into_inner();
    let (e, p, arn) = config_of(&up);
    assert_eq!(e, EndpointType::Regional);
    assert_eq!(p, SecurityPolicy::Tls10);
    assert_eq!(arn, "arn:aws:acm:eu-west-1:111122223333:certificate/abc");
    assert_eq!(
        up.domain_name_configurations[0].api_gateway_domain_name,
        d.domain_name_configurations[0].api_gateway_domain_name
    );
    assert_eq!(up.tags, d.tags);
    assert_eq!(up.created_date, d.created_date);
    assert_eq!(
        up.api_mapping_selection_expression,
        d.api_mapping_selection_expression
    );

    // Only the endpoint.
    let up = c
        .update_domain_name(UpdateDomainNameRequest {
            domain_name: D.into(),
            domain_name_configurations: vec![domain_config(
                EndpointType::Edge,
                SecurityPolicy::Unspecified,
            )],
            expected_revision: 0,
            ..Default::default()
        })
        .await
        .expect("endpoint only")
        .into_inner();
    let (e, p, arn) = config_of(&up);
    assert_eq!((e, p), (EndpointType::Edge, SecurityPolicy::Tls10));
    assert_eq!(arn, "arn:aws:acm:eu-west-1:111122223333:certificate/abc");
    assert_eq!(get_domain(&mut c, D).await, up);
}

// ---- optimistic concurrency and revisions --------------------------------------------------

#[tokio::test]
async fn expected_revision_mismatch_is_aborted_on_every_update_and_delete() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = create_api(&mut c, "api", ProtocolType::Http).await;
    let st = create_stage(&mut c, &api.api_id, "test").await;
    let d = create_domain(&mut c, D).await;
    let m = create_mapping(&mut c, D, "v1", &api.api_id, "test").await;
    const RM: &str = "REVISION_MISMATCH";

    expect_err(
        c.update_api(UpdateApiRequest {
            api_id: api.api_id.clone(),
            name: Some("x".into()),
            expected_revision: api.mod_revision + 100,
            ..Default::default()
        })
        .await,
        Code::Aborted,
        RM,
    );
    expect_err(
        c.update_stage(UpdateStageRequest {
            api_id: api.api_id.clone(),
            stage_name: "test".into(),
            description: Some("x".into()),
            expected_revision: st.mod_revision + 100,
            ..Default::default()
        })
        .await,
        Code::Aborted,
        RM,
    );
    expect_err(
        c.update_domain_name(UpdateDomainNameRequest {
            domain_name: D.into(),
            domain_name_configurations: vec![],
            expected_revision: d.mod_revision + 100,
            ..Default::default()
        })
        .await,
        Code::Aborted,
        RM,
    );
    expect_err(
        c.update_api_mapping(UpdateApiMappingRequest {
            api_mapping_key: Some("v2".into()),
            expected_revision: m.mod_revision + 100,
            ..update_mapping(D, &m.api_mapping_id)
        })
        .await,
        Code::Aborted,
        RM,
    );
    expect_err(
        c.delete_api_mapping(DeleteApiMappingRequest {
            domain_name: D.into(),
            api_mapping_id: m.api_mapping_id.clone(),
            expected_revision: m.mod_revision + 100,
            ..Default::default()
        })
        .await,
        Code::Aborted,
        RM,
    );
    expect_err(
        c.delete_domain_name(DeleteDomainNameRequest {
            domain_name: D.into(),
            expected_revision: d.mod_revision + 100,
            ..Default::default()
        })
        .await,
        Code::Aborted,
        RM,
    );
    // An API and stage without mappings, so only the revision can stop the delete.
    let free = create_api(&mut c, "free", ProtocolType::Http).await;
    let free_st = create_stage(&mut c, &free.api_id, "s").await;
    expect_err(
        c.delete_stage(DeleteStageRequest {
            api_id: free.api_id.clone(),
            stage_name: "s".into(),
            expected_revision: free_st.mod_revision + 100,
            ..Default::default()
        })
        .await,
        Code::Aborted,
        RM,
    );
    expect_err(
        c.delete_api(DeleteApiRequest {
            api_id: free.api_id.clone(),
            expected_revision: free.mod_revision + 100,
            ..Default::default()
        })
        .await,
        Code::Aborted,
        RM,
    );

    // Nothing changed.
    assert_eq!(
        c.get_api(GetApiRequest {
            api_id: api.api_id.clone(),
            ..Default::default()
        })
        .await
        .expect("get")
        .into_inner(),
        api
    );
    assert_eq!(get_domain(&mut c, D).await, d);
    assert_eq!(all_mappings(&mut c, D).await, vec![m]);
    c.get_stage(GetStageRequest {
        api_id: free.api_id.clone(),
        stage_name: "s".into(),
        ..Default::default()
    })
    .await
    .expect("free stage still there");
}

#[tokio::test]
async fn expected_revision_equal_to_mod_revision_succeeds() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = create_api(&mut c, "api", ProtocolType::Http).await;
    let st = create_stage(&mut c, &api.api_id, "test").await;
    let d = create_domain(&mut c, D).await;
    let m = create_mapping(&mut c, D, "v1", &api.api_id, "test").await;

    let api2 = c
        .update_api(UpdateApiRequest {
            api_id: api.api_id.clone(),
            name: Some("renamed".into()),
            expected_revision: api.mod_revision,
            ..Default::default()
        })
        .await
        .expect("update api at its revision")
        .into_inner();
    // The old revision is now stale.
    expect_err(
        c.update_api(UpdateApiRequest {
            api_id: api.api_id.clone(),
            name: Some("again".into()),
            expected_revision: api.mod_revision,
            ..Default::default()
        })
        .await,
        Code::Aborted,
        "REVISION_MISMATCH",
    );
    c.update_api(UpdateApiRequest {
        api_id: api.api_id.clone(),
        name: Some("again".into()),
        expected_revision: api2.mod_revision,
        ..Default::default()
    })
    .await
    .expect("update api at its new revision");

    c.update_stage(UpdateStageRequest {
        api_id: api.api_id.clone(),
        stage_name: "test".into(),
        description: Some("d".into()),
        expected_revision: st.mod_revision,
        ..Default::default()
    })
    .await
    .expect("update stage at its revision");
    let d2 = c
        .update_domain_name(UpdateDomainNameRequest {
            domain_name: D.into(),
            domain_name_configurations: vec![],
            expected_revision: d.mod_revision,
            ..Default::default()
        })
        .await
        .expect("update domain at its revision")
        .into_inner();
    let m2 = c
        .update_api_mapping(UpdateApiMappingRequest {
            api_mapping_key: Some("v2".into()),
            expected_revision: m.mod_revision,
            ..update_mapping(D, &m.api_mapping_id)
        })
        .await
        .expect("update mapping at its revision")
        .into_inner();
    c.delete_api_mapping(DeleteApiMappingRequest {
        domain_name: D.into(),
        api_mapping_id: m.api_mapping_id.clone(),
        expected_revision: m2.mod_revision,
        ..Default::default()
    })
    .await
    .expect("delete mapping at its revision");
    c.delete_domain_name(DeleteDomainNameRequest {
        domain_name: D.into(),
        expected_revision: d2.mod_revision,
        ..Default::default()
    })
    .await
    .expect("delete domain at its revision");
    let st_now = c
        .get_stage(GetStageRequest {
            api_id: api.api_id.clone(),
            stage_name: "test".into(),
            ..Default::default()
        })
        .await
        .expect("get stage")
        .into_inner();
    c.delete_stage(DeleteStageRequest {
        api_id: api.api_id.clone(),
        stage_name: "test".into(),
        expected_revision: st_now.mod_revision,
        ..Default::default()
    })
    .await
    .expect("delete stage at its revision");
    let api_now = c
        .get_api(GetApiRequest {
            api_id: api.api_id.clone(),
            ..Default::default()
        })
        .await
        .expect("get api")
        .into_inner();
    c.delete_api(DeleteApiRequest {
        api_id: api.api_id.clone(),
        expected_revision: api_now.mod_revision,
        ..Default::default()
    })
    .await
    .expect("delete api at its revision");
}

#[tokio::test]
async fn every_write_takes_the_next_revision() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = create_api(&mut c, "api", ProtocolType::Http).await;
    assert_eq!((api.create_revision, api.mod_revision), (1, 1));
    let st = create_stage(&mut c, &api.api_id, "test").await;
    assert_eq!((st.create_revision, st.mod_revision), (2, 2));
    let d = create_domain(&mut c, D).await;
    assert_eq!((d.create_revision, d.mod_revision), (3, 3));
    let m = create_mapping(&mut c, D, "v1", &api.api_id, "test").await;
    assert_eq!((m.create_revision, m.mod_revision), (4, 4));
    let up = c
        .update_api_mapping(UpdateApiMappingRequest {
            api_mapping_key: Some("v2".into()),
            ..update_mapping(D, &m.api_mapping_id)
        })
        .await
        .expect("update")
        .into_inner();
    assert_eq!((up.create_revision, up.mod_revision), (4, 5));
    let del = c
        .delete_api_mapping(DeleteApiMappingRequest {
            domain_name: D.into(),
            api_mapping_id: m.api_mapping_id.clone(),
            expected_revision: 0,
            ..Default::default()
        })
        .await
        .expect("delete")
        .into_inner();
    assert_eq!(del.revision, 6);
}

#[tokio::test]
async fn a_failed_write_takes_no_revision() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let http = api_with_stage(&mut c, ProtocolType::Http).await;
    let ws = api_with_stage(&mut c, ProtocolType::Websocket).await;
    create_domain(&mut c, D).await;
    let edge = create_domain_with(
        &mut c,
        "edge.example.com",
        EndpointType::Edge,
        SecurityPolicy::Tls12,
    )
    .await;
    let m = create_mapping(&mut c, D, "v1", &http.api_id, "test").await;
    let last = m.mod_revision;
    assert!(last > edge.mod_revision);

    // One refused write of every kind.
    expect_err(
        c.create_api_mapping(mapping_req(D, "/bad", &http.api_id, "test"))
            .await,
        Code::InvalidArgument,
        "INVALID_API_MAPPING_KEY",
    );
    expect_err(
        c.create_api_mapping(mapping_req(D, "v2", UNKNOWN_API, "test"))
            .await,
        Code::NotFound,
        "API_NOT_FOUND",
    );
    expect_err(
        c.create_api_mapping(mapping_req(D, "v1", &http.api_id, "test"))
            .await,
        Code::AlreadyExists,
        "MAPPING_KEY_CONFLICT",
    );
    expect_err(
        c.create_api_mapping(mapping_req(D, "chat", &ws.api_id, "test"))
            .await,
        Code::FailedPrecondition,
        "PROTOCOL_CONFLICT",
    );
    expect_err(
        c.create_api_mapping(mapping_req("edge.example.com", "v1", &http.api_id, "test"))
            .await,
        Code::FailedPrecondition,
        "DOMAIN_CONFIGURATION_CONFLICT",
    );
    expect_err(
        c.delete_api(DeleteApiRequest {
            api_id: http.api_id.clone(),
            expected_revision: 0,
            ..Default::default()
        })
        .await,
        Code::FailedPrecondition,
        "API_IN_USE",
    );
    expect_err(
        c.update_api_mapping(UpdateApiMappingRequest {
            stage: Some("nope".into()),
            ..update_mapping(D, &m.api_mapping_id)
        })
        .await,
        Code::NotFound,
        "STAGE_NOT_FOUND",
    );
    expect_err(
        c.update_api_mapping(UpdateApiMappingRequest {
            api_mapping_key: Some("v9".into()),
            expected_revision: last + 50,
            ..update_mapping(D, &m.api_mapping_id)
        })
        .await,
        Code::Aborted,
        "REVISION_MISMATCH",
    );
    expect_err(
        c.create_stage(CreateStageRequest {
            api_id: http.api_id.clone(),
            stage_name: "test".into(),
            ..Default::default()
        })
        .await,
        Code::AlreadyExists,
        "STAGE_EXISTS",
    );
    expect_err(
        c.create_domain_name(CreateDomainNameRequest {
            domain_name: D.into(),
            ..Default::default()
        })
        .await,
        Code::AlreadyExists,
        "DOMAIN_NAME_EXISTS",
    );

    let next = create_api(&mut c, "next", ProtocolType::Rest).await;
    assert_eq!(
        next.create_revision,
        last + 1,
        "failed writes took no revision"
    );
    assert_eq!(all_mappings(&mut c, D).await, vec![m]);
}

// ---- rule 8 at scale: a cascade larger than one etcd transaction ---------------------------

/// The revision a server's reads reflect.
async fn read_revision(c: &mut Client) -> u64 {
    c.get_domain_names(GetDomainNamesRequest::default())
        .await
        .expect("list domains")
        .into_inner()
        .revision
}

/// Every one of `ids` on `domain` answers NOT_FOUND, and so does the domain.
async fn all_gone(c: &mut Client, domain: &str, ids: &[String]) {
    for id in ids {
        let e = c
            .get_api_mapping(GetApiMappingRequest {
                domain_name: domain.into(),
                api_mapping_id: id.clone(),
                ..Default::default()
            })
            .await
            .expect_err("a mapping of the deleted domain");
        assert_eq!(e.code(), Code::NotFound, "{id}: {e:?}");
    }
    let e = c
        .get_domain_name(GetDomainNameRequest {
            domain_name: domain.into(),
            ..Default::default()
        })
        .await
        .expect_err("the deleted domain");
    assert_eq!(e.code(), Code::NotFound);
}

/// Rule 8 at scale (SPEC.md 2.8, 8.2): a domain with 300 mappings, more than the 128
/// operations of one etcd transaction, is deleted with all of them at ONE revision; a watcher
/// gets that revision as one change set of 301 DELETE events (each mapping's last state, then
/// the domain); every mapping then answers NOT_FOUND, also after a restart, while another
/// domain's mapping stays; `mapreg check` finds the store consistent. Runs on sled and, with
/// `MAPREG_TEST_STORE=etcd`, on etcd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_domain_with_300_mappings_is_one_revision() {
    const N: usize = 300;
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    create_domain(&mut c, D).await;
    create_domain(&mut c, "other.example.com").await;
    let kept = create_mapping(&mut c, "other.example.com", "x", &api.api_id, "test").await;
    let mut mappings: Vec<ApiMapping> = Vec::with_capacity(N);
    let keys: Vec<String> = (0..N).map(|i| format!("k{i:03}")).collect();
    for chunk in keys.chunks(50) {
        let calls = chunk.iter().map(|k| {
            let (mut c, api_id) = (c.clone(), api.api_id.clone());
            async move { create_mapping(&mut c, D, k, &api_id, "test").await }
        });
        mappings.extend(futures::future::join_all(calls).await);
    }
    assert_eq!(all_mappings(&mut c, D).await.len(), N);
    let before = read_revision(&mut c).await;

    let mut f = server.feed_client(None).await;
    let mut stream = watch(
        &mut f,
        WatchRequest {
            start_revision: before + 1,
            ..Default::default()
        },
    )
    .await
    .expect("watch");
    let deleted = c
        .delete_domain_name(DeleteDomainNameRequest {
            domain_name: D.into(),
            ..Default::default()
        })
        .await
        .expect("a domain with 300 mappings can be deleted")
        .into_inner();
    assert_eq!(
        deleted.revision,
        before + 1,
        "one revision for the whole cascade"
    );
    let (revision, events) = loop {
        let m = next_message(&mut stream, 20)
            .await
            .expect("watch message")
            .expect("stream open");
        match m.kind {
            Some(watch_response::Kind::ChangeSet(cs)) => break (m.revision, cs.events),
            Some(watch_response::Kind::Progress(_)) => continue,
            other => panic!("expected the cascade's change_set, got {other:?}"),
        }
    };
    assert_eq!(revision, deleted.revision);
    assert_eq!(
        events.len(),
        N + 1,
        "each mapping's DELETE, then the domain's"
    );
    assert!(events.iter().all(|e| e.r#type == EventType::Delete as i32));
    let mut seen: Vec<ApiMapping> = events[..N]
        .iter()
        .map(
            |e| match e.resource.as_ref().and_then(|r| r.resource.clone()) {
                Some(resource::Resource::ApiMapping(m)) => m,
                other => panic!("expected a mapping, got {other:?}"),
            },
        )
        .collect();
    seen.sort_by(|a, b| a.api_mapping_id.cmp(&b.api_mapping_id));
    mappings.sort_by(|a, b| a.api_mapping_id.cmp(&b.api_mapping_id));
    assert_eq!(
        seen, mappings,
        "every DELETE carries the mapping's last state"
    );
    match events[N]
        .resource
        .as_ref()
        .and_then(|r| r.resource.as_ref())
    {
        Some(resource::Resource::DomainName(d)) => assert_eq!(d.domain_name, D),
        other => panic!("expected the domain last, got {other:?}"),
    }
    // The next write is the next revision, a change set of its own.
    let after = create_api(&mut c, "after", ProtocolType::Http).await;
    assert_eq!(after.create_revision, deleted.revision + 1);
    let ids: Vec<String> = mappings.iter().map(|m| m.api_mapping_id.clone()).collect();
    all_gone(&mut c, D, &ids).await;
    assert_eq!(
        all_mappings(&mut c, "other.example.com").await,
        vec![kept.clone()]
    );
    drop((stream, f, c));

    // After a restart the store holds the same: nothing of the domain came back.
    let server = server.restart().await;
    let mut c = server.client().await;
    assert_eq!(read_revision(&mut c).await, after.create_revision);
    all_gone(&mut c, D, &ids).await;
    assert_eq!(all_mappings(&mut c, "other.example.com").await, vec![kept]);
    // The domain can be made again, empty.
    create_domain(&mut c, D).await;
    assert!(all_mappings(&mut c, D).await.is_empty());
    drop(c);
    let store = server.config.store.clone();
    let data_dir = server.data_dir.clone();
    let _tmp = server.stop().await;

    // `mapreg check` on the stopped store: consistent.
    let mut check = std::process::Command::new(env!("CARGO_BIN_EXE_mapreg"));
    check.arg("check").env("RUST_LOG", "warn");
    match &store {
        mapreg::config::Store::Sled => check.arg("--data-dir").arg(&data_dir),
        etcd => check.args(["--store", &etcd.to_string()]),
    };
    let out = check.output().expect("run mapreg check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("consistent"), "{stdout}");
}
