//! ResolveRoute through gRPC: host normalization, exact before wildcard, longest key, the two
//! match modes, root fallback, remaining path, account scope and errors.

use mapreg::pb::*;
use tonic::Code;

use crate::common::*;

async fn resolve(
    c: &mut Client,
    host: &str,
    path: &str,
) -> Result<tonic::Response<ResolveRouteResponse>, tonic::Status> {
    c.resolve_route(ResolveRouteRequest {
        host: host.into(),
        path: path.into(),
        ..Default::default()
    })
    .await
}

/// (matched key, remaining path) of a successful resolution.
async fn route(c: &mut Client, host: &str, path: &str) -> (String, String) {
    let r = resolve(c, host, path)
        .await
        .unwrap_or_else(|e| panic!("resolve {host}{path}: {e:?}"))
        .into_inner();
    let m = r.api_mapping.expect("mapping");
    (m.api_mapping_key, r.remaining_path)
}

fn kv(k: &str, p: &str) -> (String, String) {
    (k.to_string(), p.to_string())
}

#[tokio::test]
async fn aws_example_with_multi_level_keys() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    create_domain(&mut c, "api.example.com").await;
    for key in [
        "",
        "orders",
        "orders/v1/items",
        "orders/v2/items",
        "orders/v2/items/categories",
    ] {
        create_mapping(&mut c, "api.example.com", key, &api.api_id, "test").await;
    }
    let h = "api.example.com";
    assert_eq!(route(&mut c, h, "/orders").await, kv("orders", "/"));
    assert_eq!(
        route(&mut c, h, "/orders/v1/items/123").await,
        kv("orders/v1/items", "/123")
    );
    assert_eq!(
        route(&mut c, h, "/orders/v2/items/categories/5").await,
        kv("orders/v2/items/categories", "/5")
    );
    assert_eq!(route(&mut c, h, "/customers").await, kv("", "/customers"));
    assert_eq!(
        route(&mut c, h, "/ordersandmore").await,
        kv("orders", "/andmore")
    );
    let r = resolve(&mut c, "API.Example.com:443", "/orders/v1/items/9")
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.matched_domain_name, "api.example.com");
    assert_eq!(r.api.expect("api").api_id, api.api_id);
    assert_eq!(r.remaining_path, "/9");
    assert!(r.revision >= 8, "revision {}", r.revision);
}

#[tokio::test]
async fn single_level_keys_match_whole_segments_only() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    create_domain(&mut c, "api.example.com").await;
    create_mapping(&mut c, "api.example.com", "", &api.api_id, "test").await;
    create_mapping(&mut c, "api.example.com", "orders", &api.api_id, "test").await;
    let h = "api.example.com";
    assert_eq!(
        route(&mut c, h, "/ordersandmore").await,
        kv("", "/ordersandmore")
    );
    assert_eq!(route(&mut c, h, "/orders/1/2").await, kv("orders", "/1/2"));
    assert_eq!(route(&mut c, h, "/").await, kv("", "/"));
    // Adding a multi-level key switches the domain to raw prefix matching.
    create_mapping(
        &mut c,
        "api.example.com",
        "orders/shop/5",
        &api.api_id,
        "test",
    )
    .await;
    assert_eq!(
        route(&mut c, h, "/ordersandmore").await,
        kv("orders", "/andmore")
    );
    assert_eq!(
        route(&mut c, h, "/orders/shop/5/hats").await,
        kv("orders/shop/5", "/hats")
    );
}

#[tokio::test]
async fn exact_domain_wins_over_wildcard() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    create_domain(&mut c, "*.example.com").await;
    create_domain(&mut c, "a.example.com").await;
    create_mapping(&mut c, "*.example.com", "", &api.api_id, "test").await;
    create_mapping(&mut c, "a.example.com", "exact", &api.api_id, "test").await;
    let r = resolve(&mut c, "b.example.com", "/x")
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.matched_domain_name, "*.example.com");
    assert_eq!(r.remaining_path, "/x");
    let r = resolve(&mut c, "a.example.com", "/exact/y")
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.matched_domain_name, "a.example.com");
    assert_eq!(r.remaining_path, "/y");
    // The domain is chosen first: the exact one's miss does not fall through to the wildcard.
    expect_err(
        resolve(&mut c, "a.example.com", "/other").await,
        Code::NotFound,
        "ROUTE_NOT_FOUND",
    );
}

#[tokio::test]
async fn misses_and_bad_input() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    create_domain(&mut c, "api.example.com").await;
    create_mapping(&mut c, "api.example.com", "orders", &api.api_id, "test").await;
    expect_err(
        resolve(&mut c, "nowhere.example.com", "/orders").await,
        Code::NotFound,
        "DOMAIN_NAME_NOT_FOUND",
    );
    expect_err(
        resolve(&mut c, "api.example.com", "/customers").await,
        Code::NotFound,
        "ROUTE_NOT_FOUND",
    );
    let e = expect_err(
        resolve(&mut c, "", "/").await,
        Code::InvalidArgument,
        "INVALID_HOST",
    );
    assert_eq!(violated_fields(&e), vec!["host".to_string()]);
    let e = expect_err(
        resolve(&mut c, "api.example.com", "orders").await,
        Code::InvalidArgument,
        "INVALID_PATH",
    );
    assert_eq!(violated_fields(&e), vec!["path".to_string()]);
}

#[tokio::test]
async fn accounts_see_their_own_domains_and_the_gateway_all() {
    let s = TestServer::start_with_tokens().await;
    let mut a = s.client_with("admin-a").await;
    let api = api_with_stage(&mut a, ProtocolType::Http).await;
    create_domain(&mut a, "a.example.com").await;
    create_mapping(&mut a, "a.example.com", "", &api.api_id, "test").await;
    let mut b = s.client_with("admin-b").await;
    expect_err(
        resolve(&mut b, "a.example.com", "/").await,
        Code::NotFound,
        "DOMAIN_NAME_NOT_FOUND",
    );
    let mut g = s.client_with("gateway").await;
    assert_eq!(route(&mut g, "a.example.com", "/x").await, kv("", "/x"));
    let mut r = s.client_with("reader-a").await;
    assert_eq!(route(&mut r, "a.example.com", "/x").await, kv("", "/x"));
}

/// The answer's mapping, API id and revision.
async fn answer(c: &mut Client, host: &str, path: &str) -> (ApiMapping, String, u64) {
    let r = resolve(c, host, path)
        .await
        .unwrap_or_else(|e| panic!("resolve {host}{path}: {e:?}"))
        .into_inner();
    let api = r.api.expect("api");
    (r.api_mapping.expect("mapping"), api.api_id, r.revision)
}

#[tokio::test]
async fn every_acknowledged_write_is_routed_at_once_and_the_revision_is_exact() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let one = api_with_stage(&mut c, ProtocolType::Http).await;
    let two = api_with_stage(&mut c, ProtocolType::Http).await;
    create_domain(&mut c, "api.example.com").await;
    let m = create_mapping(&mut c, "api.example.com", "orders", &one.api_id, "test").await;
    let (got, api, rev) = answer(&mut c, "api.example.com", "/orders/1").await;
    assert_eq!(
        (got, api, rev),
        (m.clone(), one.api_id.clone(), m.mod_revision)
    );

    // Moving the key and the target: the very next answer has both, at the update's revision.
    let moved = c
        .update_api_mapping(UpdateApiMappingRequest {
            domain_name: "api.example.com".into(),
            api_mapping_id: m.api_mapping_id.clone(),
            api_mapping_key: Some("shop".into()),
            api_id: Some(two.api_id.clone()),
            ..Default::default()
        })
        .await
        .expect("update")
        .into_inner();
    expect_err(
        resolve(&mut c, "api.example.com", "/orders/1").await,
        Code::NotFound,
        "ROUTE_NOT_FOUND",
    );
    let (got, api, rev) = answer(&mut c, "api.example.com", "/shop/1").await;
    assert_eq!(
        (got, api, rev),
        (moved.clone(), two.api_id.clone(), moved.mod_revision)
    );

    // A write elsewhere moves the revision on; the answer says so.
    let other = create_api(&mut c, "other", ProtocolType::Rest).await;
    assert_eq!(
        answer(&mut c, "api.example.com", "/shop").await.2,
        other.mod_revision
    );

    // Deleting the domain takes its mappings with it (one revision).
    c.delete_domain_name(DeleteDomainNameRequest {
        domain_name: "api.example.com".into(),
        expected_revision: 0,
        ..Default::default()
    })
    .await
    .expect("delete domain");
    expect_err(
        resolve(&mut c, "api.example.com", "/shop").await,
        Code::NotFound,
        "DOMAIN_NAME_NOT_FOUND",
    );
    // The domain comes back empty: no stale route of the old one survives.
    create_domain(&mut c, "api.example.com").await;
    expect_err(
        resolve(&mut c, "api.example.com", "/shop").await,
        Code::NotFound,
        "ROUTE_NOT_FOUND",
    );
}

#[tokio::test]
async fn routes_are_the_same_after_a_restart() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Rest).await;
    create_domain(&mut c, "api.example.com").await;
    create_domain(&mut c, "*.example.com").await;
    create_mapping(&mut c, "api.example.com", "orders/v1", &api.api_id, "test").await;
    create_mapping(&mut c, "*.example.com", "", &api.api_id, "test").await;
    let paths = [
        ("api.example.com", "/orders/v1/items"),
        ("api.example.com", "/orders/v1x"),
        ("shop.example.com", "/x"),
    ];
    let mut before = Vec::new();
    for (h, p) in paths {
        before.push(answer(&mut c, h, p).await);
    }
    expect_err(
        resolve(&mut c, "api.example.com", "/other").await,
        Code::NotFound,
        "ROUTE_NOT_FOUND",
    );
    drop(c);
    let s = s.restart().await;
    let mut c = s.client().await;
    for ((h, p), b) in paths.into_iter().zip(before) {
        assert_eq!(answer(&mut c, h, p).await, b, "{h}{p}");
    }
    expect_err(
        resolve(&mut c, "api.example.com", "/other").await,
        Code::NotFound,
        "ROUTE_NOT_FOUND",
    );
}

/// While a writer keeps re-pointing one mapping between two APIs (and their stages), every
/// answer is the state of one revision: the API returned is the mapping's API, and a reader's
/// revisions never go back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_during_writes_are_each_one_revision() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let one = api_with_stage(&mut c, ProtocolType::Http).await;
    let two = api_with_stage(&mut c, ProtocolType::Http).await;
    create_domain(&mut c, "api.example.com").await;
    let m = create_mapping(&mut c, "api.example.com", "v1", &one.api_id, "test").await;
    let writer = {
        let mut c = s.client().await;
        let ids = [one.api_id.clone(), two.api_id.clone()];
        let id = m.api_mapping_id.clone();
        tokio::spawn(async move {
            let mut last = 0;
            for i in 0..150 {
                let r = c
                    .update_api_mapping(UpdateApiMappingRequest {
                        domain_name: "api.example.com".into(),
                        api_mapping_id: id.clone(),
                        api_id: Some(ids[i % 2].clone()),
                        ..Default::default()
                    })
                    .await
                    .expect("update")
                    .into_inner();
                last = r.mod_revision;
            }
            last
        })
    };
    let mut readers = Vec::new();
    for _ in 0..4 {
        let mut c = s.client().await;
        readers.push(tokio::spawn(async move {
            let mut seen = 0u64;
            let mut answers = 0;
            for _ in 0..300 {
                let (mapping, api, rev) = answer(&mut c, "api.example.com", "/v1/x").await;
                assert_eq!(
                    mapping.api_id, api,
                    "the API of the mapping in the same answer"
                );
                assert!(rev >= seen, "revision went back from {seen} to {rev}");
                assert!(mapping.mod_revision <= rev);
                seen = rev;
                answers += 1;
            }
            answers
        }));
    }
    let last = writer.await.expect("writer");
    for r in readers {
        assert_eq!(r.await.expect("reader"), 300);
    }
    // Once the last update is acknowledged, every answer has it.
    let (mapping, _, rev) = answer(&mut c, "api.example.com", "/v1").await;
    assert_eq!((mapping.mod_revision, rev), (last, last));
}
