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
