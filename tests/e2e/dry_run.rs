//! `validate_only` (SPEC.md 8.4, AIP-163) on every write RPC, through real gRPC: a dry run
//! answers what the write would return (revision fields 0) and changes nothing (records,
//! revision, change feed); a dry run the write would refuse fails exactly as the write does
//! (code, reason, message), for every kind of check: auth, shape, rules, expected_revision.

use mapreg::pb::watch_response::Kind;
use mapreg::pb::*;
use tonic::Code;

use crate::common::*;

/// The same call as a dry run.
fn dry(call: RegistryCall) -> RegistryCall {
    use RegistryCall::*;
    match call {
        CreateApi(mut r) => {
            r.validate_only = true;
            CreateApi(r)
        }
        UpdateApi(mut r) => {
            r.validate_only = true;
            UpdateApi(r)
        }
        DeleteApi(mut r) => {
            r.validate_only = true;
            DeleteApi(r)
        }
        CreateStage(mut r) => {
            r.validate_only = true;
            CreateStage(r)
        }
        UpdateStage(mut r) => {
            r.validate_only = true;
            UpdateStage(r)
        }
        DeleteStage(mut r) => {
            r.validate_only = true;
            DeleteStage(r)
        }
        CreateDomainName(mut r) => {
            r.validate_only = true;
            CreateDomainName(r)
        }
        UpdateDomainName(mut r) => {
            r.validate_only = true;
            UpdateDomainName(r)
        }
        DeleteDomainName(mut r) => {
            r.validate_only = true;
            DeleteDomainName(r)
        }
        CreateApiMapping(mut r) => {
            r.validate_only = true;
            CreateApiMapping(r)
        }
        UpdateApiMapping(mut r) => {
            r.validate_only = true;
            UpdateApiMapping(r)
        }
        DeleteApiMapping(mut r) => {
            r.validate_only = true;
            DeleteApiMapping(r)
        }
        read => panic!("not a write: {read:?}"),
    }
}

/// The registry's revision, as a list reports it.
async fn revision(c: &mut Client) -> u64 {
    c.get_domain_names(GetDomainNamesRequest::default())
        .await
        .expect("list domains")
        .into_inner()
        .revision
}

/// The fixture: an HTTP API with stages `test` and `spare`, a REST API with stage `test`, a
/// domain `a.example.com` with mapping `orders` to the HTTP API, an empty domain
/// `b.example.com`. Returns (http api, rest api, mapping).
async fn fixture(c: &mut Client) -> (Api, Api, ApiMapping) {
    let http = api_with_stage(c, ProtocolType::Http).await;
    create_stage(c, &http.api_id, "spare").await;
    let rest = api_with_stage(c, ProtocolType::Rest).await;
    create_domain(c, "a.example.com").await;
    create_domain(c, "b.example.com").await;
    let m = create_mapping(c, "a.example.com", "orders", &http.api_id, "test").await;
    (http, rest, m)
}

#[tokio::test]
async fn every_write_dry_run_answers_and_changes_nothing() {
    use RegistryCall::*;
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let (http, rest, m) = fixture(&mut c).await;
    let before = visible_state(&mut c).await;
    let rev = revision(&mut c).await;

    // A watcher from the next revision: the first change set it gets must be the real write
    // made after every dry run, at rev + 1.
    let mut feed = s.feed_client(None).await;
    let mut stream = watch(
        &mut feed,
        WatchRequest {
            start_revision: rev + 1,
            progress_interval_seconds: 1,
            ..Default::default()
        },
    )
    .await
    .expect("watch");

    let writes = vec![
        CreateApi(CreateApiRequest {
            name: "dry".into(),
            protocol_type: ProtocolType::Http as i32,
            ..Default::default()
        }),
        UpdateApi(UpdateApiRequest {
            api_id: http.api_id.clone(),
            name: Some("renamed".into()),
            ..Default::default()
        }),
        DeleteApi(DeleteApiRequest {
            api_id: rest.api_id.clone(),
            ..Default::default()
        }),
        CreateStage(CreateStageRequest {
            api_id: http.api_id.clone(),
            stage_name: "prod".into(),
            ..Default::default()
        }),
        UpdateStage(UpdateStageRequest {
            api_id: http.api_id.clone(),
            stage_name: "test".into(),
            description: Some("changed".into()),
            ..Default::default()
        }),
        DeleteStage(DeleteStageRequest {
            api_id: http.api_id.clone(),
            stage_name: "spare".into(),
            ..Default::default()
        }),
        CreateDomainName(CreateDomainNameRequest {
            domain_name: "c.example.com".into(),
            ..Default::default()
        }),
        UpdateDomainName(UpdateDomainNameRequest {
            domain_name: "b.example.com".into(),
            domain_name_configurations: vec![DomainNameConfiguration {
                endpoint_type: EndpointType::Edge as i32,
                ..Default::default()
            }],
            ..Default::default()
        }),
        DeleteDomainName(DeleteDomainNameRequest {
            domain_name: "a.example.com".into(),
            ..Default::default()
        }),
        CreateApiMapping(mapping_req("a.example.com", "v2", &http.api_id, "test")),
        UpdateApiMapping(UpdateApiMappingRequest {
            domain_name: "a.example.com".into(),
            api_mapping_id: m.api_mapping_id.clone(),
            api_mapping_key: Some("shop".into()),
            ..Default::default()
        }),
        DeleteApiMapping(DeleteApiMappingRequest {
            domain_name: "a.example.com".into(),
            api_mapping_id: m.api_mapping_id.clone(),
            ..Default::default()
        }),
    ];
    assert_eq!(writes.len(), 12, "every write RPC with validate_only");
    for w in writes {
        let shown = format!("{w:?}");
        let answer = call(&mut c, dry(w))
            .await
            .unwrap_or_else(|e| panic!("dry run of {shown} failed: {e:?}"));
        // Every revision field of the answer is 0.
        for field in ["create_revision", "mod_revision", "revision"] {
            assert!(
                !answer.contains(&format!("{field}: ")) || answer.contains(&format!("{field}: 0")),
                "{field} is not 0 in the dry run answer {answer}"
            );
        }
        assert_eq!(
            visible_state(&mut c).await,
            before,
            "dry run of {shown} changed the state"
        );
        assert_eq!(
            revision(&mut c).await,
            rev,
            "dry run of {shown} took a revision"
        );
    }

    // What the answers hold: the write's result.
    let created = c
        .create_api(CreateApiRequest {
            name: "dry".into(),
            protocol_type: ProtocolType::Http as i32,
            description: "would be".into(),
            validate_only: true,
            ..Default::default()
        })
        .await
        .expect("dry create")
        .into_inner();
    assert_eq!(created.name, "dry");
    assert_eq!(created.description, "would be");
    assert_eq!(created.api_id.len(), 10);
    assert_eq!(created.account_id, "000000000000");
    expect_err(
        c.get_api(GetApiRequest {
            api_id: created.api_id.clone(),
            ..Default::default()
        })
        .await,
        Code::NotFound,
        "API_NOT_FOUND",
    );
    let updated = c
        .update_api_mapping(UpdateApiMappingRequest {
            domain_name: "a.example.com".into(),
            api_mapping_id: m.api_mapping_id.clone(),
            api_mapping_key: Some("shop".into()),
            validate_only: true,
            ..Default::default()
        })
        .await
        .expect("dry update")
        .into_inner();
    assert_eq!(updated.api_mapping_key, "shop");
    assert_eq!(updated.api_mapping_id, m.api_mapping_id);
    assert_eq!((updated.create_revision, updated.mod_revision), (0, 0));
    let deleted = c
        .delete_domain_name(DeleteDomainNameRequest {
            domain_name: "a.example.com".into(),
            validate_only: true,
            ..Default::default()
        })
        .await
        .expect("dry delete")
        .into_inner();
    assert_eq!(deleted.revision, 0);

    // The real write takes rev + 1, and it is the first thing the watcher sees.
    let real = create_domain(&mut c, "z.example.com").await;
    assert_eq!(real.mod_revision, rev + 1);
    loop {
        let msg = next_message(&mut stream, 20)
            .await
            .expect("watch message")
            .expect("stream open");
        match msg.kind {
            Some(Kind::Progress(_)) => {
                assert!(msg.revision <= rev, "progress past the dry runs: {msg:?}");
            }
            Some(Kind::ChangeSet(cs)) => {
                assert_eq!(msg.revision, rev + 1, "a dry run reached the feed");
                assert_eq!(cs.events.len(), 1);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        visible_state(&mut c).await.domains.len(),
        before.domains.len() + 1
    );
    s.stop().await;
}

/// Runs `call` as a dry run, then for real; both must fail the same way, and nothing changes.
async fn same_failure(c: &mut Client, call_: RegistryCall, code: Code, reason_: &str) {
    let shown = format!("{call_:?}");
    let dry_err = call(c, dry(call_.clone()))
        .await
        .expect_err(&format!("dry run of {shown} succeeded"));
    let real_err = call(c, call_)
        .await
        .expect_err(&format!("{shown} succeeded"));
    assert_eq!(
        dry_err.code(),
        code,
        "code of the dry run of {shown}: {dry_err:?}"
    );
    assert_eq!(
        reason(&dry_err),
        reason_,
        "reason of the dry run of {shown}"
    );
    assert_eq!(
        (dry_err.code(), reason(&dry_err), dry_err.message()),
        (real_err.code(), reason(&real_err), real_err.message()),
        "the dry run of {shown} fails unlike the write"
    );
    assert_eq!(violated_fields(&dry_err), violated_fields(&real_err));
}

#[tokio::test]
async fn dry_runs_fail_exactly_like_the_write() {
    use RegistryCall::*;
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut config = token_config(&tmp.path().join("data"));
    config.max_multi_level_mappings_per_domain = 1;
    let s = TestServer::start_with(config).await;
    let mut c = s.client_with("admin-a").await;
    let (http, rest, m) = fixture(&mut c).await;
    let ws = create_api(&mut c, "ws", ProtocolType::Websocket).await;
    create_stage(&mut c, &ws.api_id, "test").await;
    create_domain_with(
        &mut c,
        "edge.example.com",
        EndpointType::Edge,
        SecurityPolicy::Tls12,
    )
    .await;
    create_mapping(&mut c, "a.example.com", "x/y", &http.api_id, "test").await;
    let before = visible_state(&mut c).await;
    let rev = revision(&mut c).await;

    let cases: Vec<(RegistryCall, Code, &str)> = vec![
        // Shape.
        (
            CreateApi(CreateApiRequest {
                name: String::new(),
                protocol_type: ProtocolType::Http as i32,
                ..Default::default()
            }),
            Code::InvalidArgument,
            "INVALID_NAME",
        ),
        (
            CreateApiMapping(mapping_req("a.example.com", "/v1", &http.api_id, "test")),
            Code::InvalidArgument,
            "INVALID_API_MAPPING_KEY",
        ),
        (
            CreateDomainName(CreateDomainNameRequest {
                domain_name: "bad_name.example.com".into(),
                ..Default::default()
            }),
            Code::InvalidArgument,
            "INVALID_DOMAIN_NAME",
        ),
        // Rule 1: prerequisites.
        (
            CreateApiMapping(mapping_req("a.example.com", "p", "nosuchapi0", "test")),
            Code::NotFound,
            "API_NOT_FOUND",
        ),
        (
            CreateApiMapping(mapping_req("a.example.com", "p", &http.api_id, "nope")),
            Code::NotFound,
            "STAGE_NOT_FOUND",
        ),
        (
            CreateApiMapping(mapping_req("none.example.com", "p", &http.api_id, "test")),
            Code::NotFound,
            "DOMAIN_NAME_NOT_FOUND",
        ),
        (
            DeleteApiMapping(DeleteApiMappingRequest {
                domain_name: "a.example.com".into(),
                api_mapping_id: "zzzzzz".into(),
                ..Default::default()
            }),
            Code::NotFound,
            "API_MAPPING_NOT_FOUND",
        ),
        // Rule 4.
        (
            CreateApiMapping(mapping_req("a.example.com", "a/b", &http.api_id, "test")),
            Code::ResourceExhausted,
            "MULTI_LEVEL_MAPPING_LIMIT",
        ),
        // Rule 5, and identities taken.
        (
            CreateApiMapping(mapping_req("a.example.com", "orders", &rest.api_id, "test")),
            Code::AlreadyExists,
            "MAPPING_KEY_CONFLICT",
        ),
        (
            CreateDomainName(CreateDomainNameRequest {
                domain_name: "A.example.com".into(),
                ..Default::default()
            }),
            Code::AlreadyExists,
            "DOMAIN_NAME_EXISTS",
        ),
        (
            CreateStage(CreateStageRequest {
                api_id: http.api_id.clone(),
                stage_name: "test".into(),
                ..Default::default()
            }),
            Code::AlreadyExists,
            "STAGE_EXISTS",
        ),
        // Rule 6.
        (
            CreateApiMapping(mapping_req("a.example.com", "chat", &ws.api_id, "test")),
            Code::FailedPrecondition,
            "PROTOCOL_CONFLICT",
        ),
        // Rule 7.
        (
            CreateApiMapping(mapping_req("edge.example.com", "", &http.api_id, "test")),
            Code::FailedPrecondition,
            "DOMAIN_CONFIGURATION_CONFLICT",
        ),
        (
            UpdateDomainName(UpdateDomainNameRequest {
                domain_name: "a.example.com".into(),
                domain_name_configurations: vec![DomainNameConfiguration {
                    endpoint_type: EndpointType::Edge as i32,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            Code::FailedPrecondition,
            "DOMAIN_CONFIGURATION_CONFLICT",
        ),
        // Rule 8.
        (
            DeleteApi(DeleteApiRequest {
                api_id: http.api_id.clone(),
                ..Default::default()
            }),
            Code::FailedPrecondition,
            "API_IN_USE",
        ),
        (
            DeleteStage(DeleteStageRequest {
                api_id: http.api_id.clone(),
                stage_name: "test".into(),
                ..Default::default()
            }),
            Code::FailedPrecondition,
            "STAGE_IN_USE",
        ),
        // expected_revision.
        (
            UpdateApiMapping(UpdateApiMappingRequest {
                domain_name: "a.example.com".into(),
                api_mapping_id: m.api_mapping_id.clone(),
                api_mapping_key: Some("shop".into()),
                expected_revision: m.mod_revision + 1000,
                ..Default::default()
            }),
            Code::Aborted,
            "REVISION_MISMATCH",
        ),
        (
            UpdateApi(UpdateApiRequest {
                api_id: http.api_id.clone(),
                name: Some("n".into()),
                expected_revision: 999,
                ..Default::default()
            }),
            Code::Aborted,
            "REVISION_MISMATCH",
        ),
    ];
    for (call_, code, reason_) in cases {
        same_failure(&mut c, call_, code, reason_).await;
    }

    // Auth: a reader may not dry-run a write; no token is refused before anything else.
    let mut reader = s.client_with("reader-a").await;
    same_failure(
        &mut reader,
        CreateDomainName(CreateDomainNameRequest {
            domain_name: "r.example.com".into(),
            ..Default::default()
        }),
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    )
    .await;
    let mut anonymous = s.client().await;
    same_failure(
        &mut anonymous,
        DeleteDomainName(DeleteDomainNameRequest {
            domain_name: "a.example.com".into(),
            ..Default::default()
        }),
        Code::Unauthenticated,
        "TOKEN_MISSING",
    )
    .await;
    // Another account's records are absent for dry runs too.
    let mut other = s.client_with("admin-b").await;
    same_failure(
        &mut other,
        DeleteApi(DeleteApiRequest {
            api_id: rest.api_id.clone(),
            ..Default::default()
        }),
        Code::NotFound,
        "API_NOT_FOUND",
    )
    .await;

    assert_eq!(visible_state(&mut c).await, before);
    assert_eq!(revision(&mut c).await, rev);
    s.stop().await;
}
