//! Property tests (proptest) through the real gRPC interface: arbitrary field values of every
//! create and update request, arbitrary ResolveRoute hosts and paths, and mutated request
//! bodies (cut, changed bytes, invalid UTF-8). The server never fails INTERNAL or UNKNOWN and
//! stays up; every INVALID_ARGUMENT carries its ErrorInfo reason, and for a field value a
//! BadRequest naming the field.
//!
//! Cases per property: `PROPTEST_CASES` (default 256: the normal test run, CI's smoke run).
//! A long run: `PROPTEST_CASES=100000 cargo test --release --test e2e prop_`.

use std::collections::HashMap;

use mapreg::pb::*;
use proptest::collection::{hash_map, vec};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use prost::Message;
use prost::bytes::{Buf, BufMut};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

use crate::common::*;

/// Any text: mostly printable ASCII, sometimes any Unicode (controls and NUL included).
fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[ -~]{0,140}", any::<String>(), "[a-z0-9.*/_\\-]{0,20}",]
}

fn tags() -> impl Strategy<Value = HashMap<String, String>> {
    hash_map(text(), text(), 0..4)
}

fn configurations() -> impl Strategy<Value = Vec<DomainNameConfiguration>> {
    vec(
        (any::<i32>(), any::<i32>(), text(), text()).prop_map(|(e, p, arn, gw)| {
            DomainNameConfiguration {
                endpoint_type: e % 4,
                security_policy: p % 4,
                certificate_arn: arn,
                api_gateway_domain_name: gw,
                ..Default::default()
            }
        }),
        0..3,
    )
}

/// One write request, every field arbitrary.
#[derive(Debug, Clone)]
enum Write {
    CreateApi(CreateApiRequest),
    UpdateApi(UpdateApiRequest),
    CreateStage(CreateStageRequest),
    UpdateStage(UpdateStageRequest),
    CreateDomainName(CreateDomainNameRequest),
    UpdateDomainName(UpdateDomainNameRequest),
    CreateApiMapping(CreateApiMappingRequest),
    UpdateApiMapping(UpdateApiMappingRequest),
}

fn write() -> impl Strategy<Value = Write> {
    let o = || proptest::option::of(text());
    prop_oneof![
        (
            text(),
            any::<i32>(),
            text(),
            tags(),
            text(),
            text(),
            any::<bool>()
        )
            .prop_map(|(name, p, description, tags, rse, akse, validate_only)| {
                Write::CreateApi(CreateApiRequest {
                    name,
                    protocol_type: p % 5,
                    description,
                    tags,
                    route_selection_expression: rse,
                    api_key_selection_expression: akse,
                    validate_only,
                })
            }),
        (text(), o(), o(), o(), o(), any::<u64>()).prop_map(|(api_id, n, d, r, a, e)| {
            Write::UpdateApi(UpdateApiRequest {
                api_id,
                name: n,
                description: d,
                route_selection_expression: r,
                api_key_selection_expression: a,
                expected_revision: e % 4,
                validate_only: true,
            })
        }),
        (text(), text(), text(), tags()).prop_map(|(api_id, stage_name, description, tags)| {
            Write::CreateStage(CreateStageRequest {
                api_id,
                stage_name,
                description,
                tags,
                validate_only: true,
            })
        }),
        (text(), text(), o()).prop_map(|(api_id, stage_name, description)| {
            Write::UpdateStage(UpdateStageRequest {
                api_id,
                stage_name,
                description,
                expected_revision: 0,
                validate_only: true,
            })
        }),
        (text(), configurations(), tags(), any::<bool>()).prop_map(|(d, c, tags, v)| {
            Write::CreateDomainName(CreateDomainNameRequest {
                domain_name: d,
                domain_name_configurations: c,
                tags,
                validate_only: v,
            })
        }),
        (text(), configurations()).prop_map(|(d, c)| {
            Write::UpdateDomainName(UpdateDomainNameRequest {
                domain_name: d,
                domain_name_configurations: c,
                expected_revision: 0,
                validate_only: true,
            })
        }),
        (text(), text(), text(), text()).prop_map(|(d, k, a, s)| {
            Write::CreateApiMapping(CreateApiMappingRequest {
                domain_name: d,
                api_mapping_key: k,
                api_id: a,
                stage: s,
                validate_only: true,
            })
        }),
        (text(), text(), o(), o(), o()).prop_map(|(d, id, k, a, s)| {
            Write::UpdateApiMapping(UpdateApiMappingRequest {
                domain_name: d,
                api_mapping_id: id,
                api_mapping_key: k,
                api_id: a,
                stage: s,
                expected_revision: 0,
                validate_only: true,
            })
        }),
    ]
}

async fn send(c: &mut Client, w: Write) -> Result<(), Status> {
    match w {
        Write::CreateApi(r) => c.create_api(r).await.map(drop),
        Write::UpdateApi(r) => c.update_api(r).await.map(drop),
        Write::CreateStage(r) => c.create_stage(r).await.map(drop),
        Write::UpdateStage(r) => c.update_stage(r).await.map(drop),
        Write::CreateDomainName(r) => c.create_domain_name(r).await.map(drop),
        Write::UpdateDomainName(r) => c.update_domain_name(r).await.map(drop),
        Write::CreateApiMapping(r) => c.create_api_mapping(r).await.map(drop),
        Write::UpdateApiMapping(r) => c.update_api_mapping(r).await.map(drop),
    }
}

/// A refusal of bad input or of the store's state; never the server's own failure. An
/// INVALID_ARGUMENT has its reason and, when `field_named`, a BadRequest naming a field.
fn clean_refusal(s: &Status, field_named: bool) -> Result<(), TestCaseError> {
    match s.code() {
        Code::InvalidArgument => {
            prop_assert!(!reason(s).is_empty(), "no ErrorInfo reason: {:?}", s);
            if field_named {
                let fields = violated_fields(s);
                prop_assert!(
                    !fields.is_empty() && fields.iter().all(|f| !f.is_empty()),
                    "no field named: {:?}",
                    s
                );
            }
            Ok(())
        }
        Code::NotFound
        | Code::AlreadyExists
        | Code::FailedPrecondition
        | Code::ResourceExhausted
        | Code::Aborted => Ok(()),
        _ => Err(TestCaseError::fail(format!("not a clean refusal: {s:?}"))),
    }
}

/// Runs `test` on the cases of `strategy` against one server; panics with proptest's minimal
/// failing case.
fn run_against_server<S: Strategy>(
    strategy: S,
    test: impl Fn(&tokio::runtime::Runtime, &TestServer, S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let server = rt.block_on(TestServer::start());
    let mut runner = TestRunner::new(Config::default());
    let result = runner.run(&strategy, |v| test(&rt, &server, v));
    if let Err(e) = result {
        panic!("{e}");
    }
    // Still up.
    rt.block_on(async {
        let mut c = server.client().await;
        c.get_apis(GetApisRequest::default())
            .await
            .expect("the server still answers");
        server.stop().await;
    });
}

#[test]
fn prop_arbitrary_write_requests_are_refused_cleanly() {
    run_against_server(write(), |rt, server, w| {
        rt.block_on(async {
            let mut c = server.client().await;
            match send(&mut c, w).await {
                Ok(()) => Ok(()),
                Err(s) => clean_refusal(&s, true),
            }
        })
    });
}

#[test]
fn prop_arbitrary_resolve_route_hosts_and_paths() {
    run_against_server((text(), text()), |rt, server, (host, path)| {
        rt.block_on(async {
            let mut c = server.client().await;
            let r = c
                .resolve_route(ResolveRouteRequest {
                    host,
                    path,
                    ..Default::default()
                })
                .await;
            match r {
                Ok(_) => Err(TestCaseError::fail("routed on an empty registry")),
                Err(s) => {
                    clean_refusal(&s, true)?;
                    if s.code() == Code::InvalidArgument {
                        let fields = violated_fields(&s);
                        prop_assert!(fields.iter().all(|f| f == "host" || f == "path"), "{:?}", s);
                    }
                    Ok(())
                }
            }
        })
    });
}

/// Sends bytes as they are, and reads the answer's bytes.
#[derive(Clone, Copy, Default)]
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
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
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

#[test]
fn prop_mutated_request_bodies_are_refused_cleanly() {
    let valid = CreateApiMappingRequest {
        domain_name: "api.example.com".into(),
        api_mapping_key: "orders/v1".into(),
        api_id: "abc123".into(),
        stage: "prod".into(),
        validate_only: true,
    }
    .encode_to_vec();
    let len = valid.len();
    let strategy = (
        0..4u8,
        0..len,
        vec(any::<u8>(), 1..6),
        prop_oneof![
            Just("/mapreg.v1.Registry/CreateApiMapping"),
            Just("/mapreg.v1.Registry/CreateApi"),
            Just("/mapreg.v1.Registry/ResolveRoute"),
            Just("/mapreg.v1.Registry/GetApiMappings"),
        ],
    );
    run_against_server(strategy, move |rt, server, (how, at, with, method)| {
        let mut body = valid.clone();
        match how {
            0 => body.truncate(at),
            1 => body[at] ^= with[0] | 1,
            2 => {
                body.splice(at..at, with);
            }
            // Invalid UTF-8 in a string field.
            _ => body[at] = 0xff,
        }
        rt.block_on(async {
            let mut grpc = tonic::client::Grpc::new(server.channel().await);
            grpc.ready()
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let path = http::uri::PathAndQuery::from_static(method);
            match grpc.unary(tonic::Request::new(body), path, Raw).await {
                Ok(_) => Ok(()),
                Err(s) => clean_refusal(&s, false),
            }
        })
    });
}
