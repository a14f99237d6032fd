//! Bounded answers and clean refusals (SPEC.md 8.7), through real gRPC: undecodable request
//! bodies (sent raw with a byte codec), IP-literal domain names, host syntax in ResolveRoute, list pages bounded by bytes,
//! error messages that list at most 10 names.

use std::collections::HashSet;

use mapreg::pb::*;
use prost::Message;
use prost::bytes::{Buf, BufMut};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

use crate::common::*;

/// Sends and receives raw message bytes, so a test can send what no generated client would.
#[derive(Debug, Clone, Copy, Default)]
struct Raw;

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut v = vec![0; src.remaining()];
        src.copy_to_slice(&mut v);
        Ok(Some(v))
    }
}

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

/// Sends the messages `bodies` (raw bytes, framed by gRPC; none: an empty request stream) to
/// `path`; the status the server answered with (OK when it answered a message).
async fn raw_call(s: &TestServer, path: &'static str, bodies: Vec<Vec<u8>>) -> Status {
    let mut grpc = tonic::client::Grpc::new(s.channel().await);
    grpc.ready().await.expect("ready");
    let path = http::uri::PathAndQuery::from_static(path);
    let r = grpc
        .client_streaming(tonic::Request::new(tokio_stream::iter(bodies)), path, Raw)
        .await;
    match r {
        Ok(_) => Status::ok(""),
        Err(st) => st,
    }
}

#[tokio::test]
async fn undecodable_request_bodies_are_invalid_argument_malformed_request() {
    let s = TestServer::start().await;
    let create = "/mapreg.v1.Registry/CreateApi";

    // Invalid UTF-8 in a string field (CreateApiRequest.name = field 1).
    let st = raw_call(&s, create, vec![vec![0x0a, 0x02, 0xff, 0xfe]]).await;
    assert_eq!(st.code(), Code::InvalidArgument, "{st:?}");
    assert_eq!(reason(&st), "MALFORMED_REQUEST");
    assert_eq!(violated_fields(&st), vec!["name".to_string()]);
    assert!(st.message().contains("name"), "{}", st.message());

    // A truncated message: field 1 says 10 bytes, 3 follow.
    let st = raw_call(&s, create, vec![vec![0x0a, 0x0a, b'a', b'b', b'c']]).await;
    assert_eq!(st.code(), Code::InvalidArgument, "{st:?}");
    assert_eq!(reason(&st), "MALFORMED_REQUEST");

    // No message at all, and on a streaming RPC too (WatchRequest.store_id = field 5).
    let st = raw_call(&s, create, Vec::new()).await;
    assert_eq!(
        (st.code(), reason(&st).as_str()),
        (Code::InvalidArgument, "MALFORMED_REQUEST"),
        "{st:?}"
    );
    let st = raw_call(
        &s,
        "/mapreg.v1.ChangeFeed/Watch",
        vec![vec![0x2a, 0x02, 0xc3, 0x28]],
    )
    .await;
    assert_eq!(
        (st.code(), reason(&st).as_str()),
        (Code::InvalidArgument, "MALFORMED_REQUEST"),
        "{st:?}"
    );

    // A well-formed raw request still works, and nothing was written before.
    let ok = CreateApiRequest {
        name: "raw".into(),
        protocol_type: ProtocolType::Http as i32,
        ..Default::default()
    };
    let mut c = s.client().await;
    assert!(visible_state(&mut c).await.apis.is_empty());
    let st = raw_call(&s, create, vec![ok.encode_to_vec()]).await;
    assert_eq!(st.code(), Code::Ok, "{st:?}");
    assert_eq!(visible_state(&mut c).await.apis.len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn ip_literal_domain_names_are_refused() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    for name in ["10.0.0.1", "192.168.1.20", "*.0.0.1"] {
        let st = expect_err(
            c.create_domain_name(CreateDomainNameRequest {
                domain_name: name.into(),
                ..Default::default()
            })
            .await,
            Code::InvalidArgument,
            "INVALID_DOMAIN_NAME",
        );
        assert_eq!(violated_fields(&st), vec!["domain_name".to_string()]);
        assert!(st.message().contains("IP address"), "{}", st.message());
    }
    // Digits elsewhere are fine.
    create_domain(&mut c, "10.example.com").await;
    s.stop().await;
}

#[tokio::test]
async fn resolve_route_checks_the_host_syntax() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    create_domain(&mut c, "*.example.com").await;
    create_mapping(&mut c, "*.example.com", "", &api.api_id, "test").await;
    for host in [
        "a b.example.com",
        "x\0y.example.com",
        "a..example.com",
        ".example.com",
        "*.example.com",
        "tab\t.example.com",
    ] {
        let st = expect_err(
            c.resolve_route(ResolveRouteRequest {
                host: host.into(),
                path: "/".into(),
                ..Default::default()
            })
            .await,
            Code::InvalidArgument,
            "INVALID_HOST",
        );
        assert_eq!(violated_fields(&st), vec!["host".to_string()], "{host:?}");
    }
    // A well-formed host still routes through the wildcard.
    let r = c
        .resolve_route(ResolveRouteRequest {
            host: "Shop.Example.com:443".into(),
            path: "/x".into(),
            ..Default::default()
        })
        .await
        .expect("resolve")
        .into_inner();
    assert_eq!(r.matched_domain_name, "*.example.com");
    s.stop().await;
}

#[tokio::test]
async fn list_pages_stop_at_one_mebibyte_of_items() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    // About 21 KB each: 80 of them are well over 1 MiB.
    let tags: std::collections::HashMap<String, String> = (0..50)
        .map(|i| (format!("{i:02}{}", "k".repeat(126)), "v".repeat(256)))
        .collect();
    for i in 0..80 {
        c.create_api(CreateApiRequest {
            name: format!("{i:03}{}", "n".repeat(125)),
            protocol_type: ProtocolType::Http as i32,
            description: "d".repeat(1024),
            tags: tags.clone(),
            ..Default::default()
        })
        .await
        .expect("create a large API");
    }
    let mut token = String::new();
    let mut seen = HashSet::new();
    let mut pages = 0;
    loop {
        let page = c
            .get_apis(GetApisRequest {
                max_results: 1000,
                next_token: token,
                ..Default::default()
            })
            .await
            .expect("page")
            .into_inner();
        pages += 1;
        let bytes: usize = page.items.iter().map(|a| a.encoded_len() + 4).sum();
        assert!(bytes <= 1024 * 1024, "a page of {bytes} bytes of items");
        assert!(!page.items.is_empty());
        for a in &page.items {
            assert!(seen.insert(a.api_id.clone()), "{} twice", a.api_id);
        }
        if page.next_token.is_empty() {
            break;
        }
        assert!(page.items.len() < 80, "a full page despite its size");
        token = page.next_token;
    }
    assert_eq!(seen.len(), 80);
    assert!(pages >= 2, "{pages} page(s)");
    s.stop().await;
}

#[tokio::test]
async fn in_use_messages_list_ten_domains_and_count_the_rest() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    let names: Vec<String> = (0..13).map(|i| format!("d{i:02}.example.com")).collect();
    for d in &names {
        create_domain(&mut c, d).await;
        create_mapping(&mut c, d, "", &api.api_id, "test").await;
    }
    let st = expect_err(
        c.delete_api(DeleteApiRequest {
            api_id: api.api_id.clone(),
            ..Default::default()
        })
        .await,
        Code::FailedPrecondition,
        "API_IN_USE",
    );
    let m = st.message();
    assert!(m.contains(&names[9]), "{m}");
    assert!(!m.contains(&names[10]), "{m}");
    assert!(m.ends_with("and 3 more"), "{m}");
    assert_eq!(error_metadata(&st, "domain_count").as_deref(), Some("13"));
    let st = expect_err(
        c.delete_stage(DeleteStageRequest {
            api_id: api.api_id.clone(),
            stage_name: "test".into(),
            ..Default::default()
        })
        .await,
        Code::FailedPrecondition,
        "STAGE_IN_USE",
    );
    assert!(st.message().ends_with("and 3 more"), "{}", st.message());
    assert_eq!(error_metadata(&st, "domain_count").as_deref(), Some("13"));
    s.stop().await;
}
