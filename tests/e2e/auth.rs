//! SPEC.md section 6: tokens, roles and accounts, seen through gRPC.
//!
//! Servers use [`TestServer::start_with_tokens`]: `admin-a` / `reader-a` act in account A,
//! `admin-b` in account B, `gateway` reads everything. Every refused request is also checked to
//! take no revision and change nothing.

use mapreg::pb::registry_client::RegistryClient;
use mapreg::pb::*;
use tonic::metadata::AsciiMetadataValue;
use tonic::{Code, Request, Status};

use crate::common::*;

const ACCOUNT_A: &str = "111122223333";
const ACCOUNT_B: &str = "444455556666";
const DEV_ACCOUNT: &str = "000000000000";

/// One account's records: an HTTP API with stage `test`, a domain, and mapping `v1` on it.
#[derive(Debug, Clone)]
struct Owned {
    api: Api,
    stage: Stage,
    domain: DomainName,
    mapping: ApiMapping,
}

async fn populate(c: &mut Client, domain: &str) -> Owned {
    let api = create_api(c, "api", ProtocolType::Http).await;
    let stage = create_stage(c, &api.api_id, "test").await;
    let domain = create_domain(c, domain).await;
    let mapping = create_mapping(c, &domain.domain_name, "v1", &api.api_id, "test").await;
    Owned {
        api,
        stage,
        domain,
        mapping,
    }
}

/// A token server where accounts A and B each own [`Owned`] records.
struct World {
    server: TestServer,
    admin_a: Client,
    admin_b: Client,
    a: Owned,
    b: Owned,
    /// Revision of the last successful write.
    rev: u64,
}

impl World {
    async fn new() -> World {
        let server = TestServer::start_with_tokens().await;
        let mut admin_a = server.client_with("admin-a").await;
        let mut admin_b = server.client_with("admin-b").await;
        let a = populate(&mut admin_a, "a.example.com").await;
        let b = populate(&mut admin_b, "b.example.com").await;
        let rev = b.mapping.create_revision;
        World {
            server,
            admin_a,
            admin_b,
            a,
            b,
            rev,
        }
    }

    /// What both accounts see, as their admins list it.
    async fn state(&mut self) -> (VisibleState, VisibleState) {
        (
            visible_state(&mut self.admin_a).await,
            visible_state(&mut self.admin_b).await,
        )
    }

    /// One successful write by admin-a; asserts it takes exactly the next revision.
    #[track_caller]
    fn next_write_is_next_revision(&mut self) -> impl Future<Output = ()> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            let api = self
                .admin_a
                .update_api(UpdateApiRequest {
                    api_id: self.a.api.api_id.clone(),
                    description: Some(format!("after revision {}", self.rev)),
                    ..Default::default()
                })
                .await
                .expect("admin-a writes")
                .into_inner();
            assert_eq!(
                api.mod_revision,
                self.rev + 1,
                "refused requests took a revision (checked at {caller})"
            );
            self.rev = api.mod_revision;
        }
    }
}

/// Every write RPC, aimed at `o`'s records (so a write that wrongly succeeded would show).
fn writes_on(o: &Owned) -> Vec<(&'static str, RegistryCall)> {
    use RegistryCall::*;
    let (api, domain, mapping) = (
        o.api.api_id.clone(),
        o.domain.domain_name.clone(),
        o.mapping.api_mapping_id.clone(),
    );
    vec![
        (
            "CreateApi",
            CreateApi(CreateApiRequest {
                name: "new".into(),
                protocol_type: ProtocolType::Http as i32,
                ..Default::default()
            }),
        ),
        (
            "UpdateApi",
            UpdateApi(UpdateApiRequest {
                api_id: api.clone(),
                name: Some("renamed".into()),
                ..Default::default()
            }),
        ),
        (
            "DeleteApi",
            DeleteApi(DeleteApiRequest {
                api_id: api.clone(),
                ..Default::default()
            }),
        ),
        (
            "CreateStage",
            CreateStage(CreateStageRequest {
                api_id: api.clone(),
                stage_name: "new".into(),
                ..Default::default()
            }),
        ),
        (
            "UpdateStage",
            UpdateStage(UpdateStageRequest {
                api_id: api.clone(),
                stage_name: "test".into(),
                description: Some("changed".into()),
                ..Default::default()
            }),
        ),
        (
            "DeleteStage",
            DeleteStage(DeleteStageRequest {
                api_id: api.clone(),
                stage_name: "test".into(),
                ..Default::default()
            }),
        ),
        (
            "CreateDomainName",
            CreateDomainName(CreateDomainNameRequest {
                domain_name: format!("new.{domain}"),
                ..Default::default()
            }),
        ),
        (
            "UpdateDomainName",
            UpdateDomainName(UpdateDomainNameRequest {
                domain_name: domain.clone(),
                domain_name_configurations: vec![DomainNameConfiguration {
                    certificate_arn: "arn:changed".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        ),
        (
            "DeleteDomainName",
            DeleteDomainName(DeleteDomainNameRequest {
                domain_name: domain.clone(),
                ..Default::default()
            }),
        ),
        (
            "CreateApiMapping",
            CreateApiMapping(mapping_req(&domain, "new", &api, "test")),
        ),
        (
            "UpdateApiMapping",
            UpdateApiMapping(UpdateApiMappingRequest {
                domain_name: domain.clone(),
                api_mapping_id: mapping.clone(),
                api_mapping_key: Some("moved".into()),
                ..Default::default()
            }),
        ),
        (
            "DeleteApiMapping",
            DeleteApiMapping(DeleteApiMappingRequest {
                domain_name: domain.clone(),
                api_mapping_id: mapping.clone(),
                ..Default::default()
            }),
        ),
    ]
}

/// Every read RPC aimed at one of `o`'s records (lists of everything are checked separately).
fn reads_on(o: &Owned) -> Vec<(&'static str, RegistryCall)> {
    use RegistryCall::*;
    let (api, domain, mapping) = (
        o.api.api_id.clone(),
        o.domain.domain_name.clone(),
        o.mapping.api_mapping_id.clone(),
    );
    vec![
        (
            "GetApi",
            GetApi(GetApiRequest {
                api_id: api.clone(),
                ..Default::default()
            }),
        ),
        (
            "GetStage",
            GetStage(GetStageRequest {
                api_id: api.clone(),
                stage_name: "test".into(),
                ..Default::default()
            }),
        ),
        (
            "GetStages",
            GetStages(GetStagesRequest {
                api_id: api.clone(),
                ..Default::default()
            }),
        ),
        (
            "GetDomainName",
            GetDomainName(GetDomainNameRequest {
                domain_name: domain.clone(),
                ..Default::default()
            }),
        ),
        (
            "GetApiMapping",
            GetApiMapping(GetApiMappingRequest {
                domain_name: domain.clone(),
                api_mapping_id: mapping.clone(),
                ..Default::default()
            }),
        ),
        (
            "GetApiMappings",
            GetApiMappings(GetApiMappingsRequest {
                domain_name: domain.clone(),
                ..Default::default()
            }),
        ),
    ]
}

fn lists() -> Vec<(&'static str, RegistryCall)> {
    vec![
        ("GetApis", RegistryCall::GetApis(GetApisRequest::default())),
        (
            "GetDomainNames",
            RegistryCall::GetDomainNames(GetDomainNamesRequest::default()),
        ),
    ]
}

/// Asserts that `call` fails with `code` / `reason`.
async fn refused(
    c: &mut Client,
    what: &str,
    req: RegistryCall,
    code: Code,
    reason_: &str,
) -> Status {
    match call(c, req).await {
        Ok(v) => panic!("{what}: expected {code:?}/{reason_}, got OK: {v}"),
        Err(s) => {
            assert_eq!(s.code(), code, "{what}: code of {s:?}");
            assert_eq!(reason(&s), reason_, "{what}: reason of {s:?}");
            s
        }
    }
}

/// The NOT_FOUND reason and message another account's record answers with.
fn not_found_of(what: &str, o: &Owned) -> (&'static str, String) {
    let api = format!("Invalid API identifier specified: {}", o.api.api_id);
    let domain = format!(
        "Invalid domain name identifier specified: {}",
        o.domain.domain_name
    );
    match what {
        "UpdateApi" | "DeleteApi" | "GetApi" | "CreateStage" | "UpdateStage" | "DeleteStage"
        | "GetStage" | "GetStages" => ("API_NOT_FOUND", api),
        _ => ("DOMAIN_NAME_NOT_FOUND", domain),
    }
}

// ---- dev mode ------------------------------------------------------------------------------

#[tokio::test]
async fn dev_mode_needs_no_token_and_acts_in_the_dev_account() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let o = populate(&mut c, "dev.example.com").await;
    assert_eq!(o.api.account_id, DEV_ACCOUNT);
    assert_eq!(o.stage.account_id, DEV_ACCOUNT);
    assert_eq!(o.domain.account_id, DEV_ACCOUNT);
    assert_eq!(o.mapping.account_id, DEV_ACCOUNT);
    for (what, req) in reads_on(&o).into_iter().chain(lists()) {
        call(&mut c, req)
            .await
            .unwrap_or_else(|e| panic!("{what} without a token in dev mode: {e:?}"));
    }
    let s = visible_state(&mut c).await;
    assert_eq!(s.apis, vec![o.api.clone()]);
    assert_eq!(s.domains, vec![o.domain.clone()]);

    // A client that sends some token anyway is the same dev-mode admin.
    let mut with_token = server.client_with("whatever").await;
    let got = with_token
        .get_api(GetApiRequest {
            api_id: o.api.api_id.clone(),
            ..Default::default()
        })
        .await
        .expect("dev mode: a token changes nothing")
        .into_inner();
    assert_eq!(got.account_id, DEV_ACCOUNT);
    let api = create_api(&mut with_token, "second", ProtocolType::Rest).await;
    assert_eq!(api.account_id, DEV_ACCOUNT);
}

// ---- authentication ------------------------------------------------------------------------

#[tokio::test]
async fn a_missing_token_is_unauthenticated() {
    let mut w = World::new().await;
    let before = w.state().await;
    let mut anon = w.server.client().await;
    let calls = reads_on(&w.a)
        .into_iter()
        .chain(writes_on(&w.a))
        .chain(lists())
        // Authentication comes before validation.
        .chain([(
            "CreateApi with an empty name",
            RegistryCall::CreateApi(CreateApiRequest::default()),
        )]);
    for (what, req) in calls {
        let s = refused(&mut anon, what, req, Code::Unauthenticated, "TOKEN_MISSING").await;
        assert!(!s.message().is_empty(), "{what}: a message says why");
    }
    assert_eq!(w.state().await, before, "nothing changed");
    w.next_write_is_next_revision().await;
}

#[tokio::test]
async fn an_unknown_token_is_unauthenticated() {
    let mut w = World::new().await;
    let before = w.state().await;
    for token in [
        "nope".to_string(),
        "ADMIN-A".into(),
        "admin-a2".into(),
        "admin".into(),
        // The configured hash is not itself a token.
        mapreg::auth::token_hash("admin-a"),
    ] {
        let mut c = w.server.client_with(&token).await;
        for (what, req) in reads_on(&w.a)
            .into_iter()
            .chain(writes_on(&w.a))
            .chain(lists())
        {
            refused(
                &mut c,
                &format!("{what} with token {token:?}"),
                req,
                Code::Unauthenticated,
                "TOKEN_UNKNOWN",
            )
            .await;
        }
    }
    assert_eq!(w.state().await, before, "nothing changed");
    w.next_write_is_next_revision().await;
}

/// GetApis with a raw `authorization` value.
async fn get_apis_with_header(
    server: &TestServer,
    value: AsciiMetadataValue,
) -> Result<GetApisResponse, Status> {
    let mut c = RegistryClient::new(server.channel().await);
    let mut req = Request::new(GetApisRequest::default());
    req.metadata_mut().insert("authorization", value);
    c.get_apis(req).await.map(|r| r.into_inner())
}

#[tokio::test]
async fn a_malformed_authorization_header_is_invalid_argument() {
    let mut w = World::new().await;
    let before = w.state().await;
    let mut values: Vec<AsciiMetadataValue> = [
        "",
        "Bearer",
        "Bearer ",
        "Bearer    ",
        "Basic YWRtaW4tYTp4",
        "admin-a",
        "Token admin-a",
        "Bearer admin-a extra",
        "Bearer\tadmin-a",
        "Bearer: admin-a",
    ]
    .into_iter()
    .map(|v| AsciiMetadataValue::try_from(v).expect("valid header value"))
    .collect();
    // Bytes that are not UTF-8 (obs-text) where the token would be.
    values.push(
        AsciiMetadataValue::try_from(&b"Bearer adm\xe9n"[..])
            .expect("obs-text is a valid header value"),
    );
    for value in values {
        let r = get_apis_with_header(&w.server, value.clone()).await;
        let s = match r {
            Ok(v) => panic!("authorization {value:?}: expected INVALID_ARGUMENT, got OK: {v:?}"),
            Err(s) => s,
        };
        assert_eq!(
            s.code(),
            Code::InvalidArgument,
            "authorization {value:?}: {s:?}"
        );
        assert_eq!(reason(&s), "INVALID_AUTHORIZATION", "{value:?}: {s:?}");
        assert!(
            violated_fields(&s).iter().any(|f| f == "authorization"),
            "{value:?}: BadRequest names authorization: {s:?}"
        );
        assert!(
            s.message().contains("authorization"),
            "{value:?}: message names authorization: {s:?}"
        );
    }
    // The scheme is case-insensitive and surrounding blanks do not matter (RFC 7235).
    for ok in ["bearer admin-a", "BEARER admin-a", "Bearer  admin-a"] {
        let value = AsciiMetadataValue::try_from(ok).expect("valid header value");
        let page = get_apis_with_header(&w.server, value)
            .await
            .unwrap_or_else(|e| panic!("authorization {ok:?} is accepted: {e:?}"));
        assert_eq!(page.items, before.0.apis, "{ok:?} acts as admin-a");
    }
    assert_eq!(w.state().await, before, "nothing changed");
    w.next_write_is_next_revision().await;
}

#[tokio::test]
async fn health_is_served_without_a_token() {
    let server = TestServer::start_with_tokens().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    let r = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health check needs no token")
        .into_inner();
    assert_eq!(
        r.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

// ---- roles ---------------------------------------------------------------------------------

#[tokio::test]
async fn a_reader_reads_its_account_but_cannot_write() {
    let mut w = World::new().await;
    let before = w.state().await;
    let mut reader = w.server.client_with("reader-a").await;

    for (what, req) in reads_on(&w.a) {
        call(&mut reader, req)
            .await
            .unwrap_or_else(|e| panic!("reader-a {what} of its own account: {e:?}"));
    }
    assert_eq!(
        visible_state(&mut reader).await,
        before.0,
        "reader-a lists exactly what admin-a lists"
    );
    let got = reader
        .get_api(GetApiRequest {
            api_id: w.a.api.api_id.clone(),
            ..Default::default()
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got, before.0.apis[0]);

    for (what, req) in writes_on(&w.a) {
        let s = refused(
            &mut reader,
            what,
            req,
            Code::PermissionDenied,
            "PERMISSION_DENIED",
        )
        .await;
        assert!(!s.message().is_empty(), "{what}: a message says why");
    }
    // Role checks come before validation: even a bad write is PERMISSION_DENIED.
    refused(
        &mut reader,
        "CreateApi with an empty name",
        RegistryCall::CreateApi(CreateApiRequest::default()),
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    )
    .await;

    // Account B stays invisible to account A's reader.
    for (what, req) in reads_on(&w.b) {
        let (reason_, message) = not_found_of(what, &w.b);
        let s = refused(&mut reader, what, req, Code::NotFound, reason_).await;
        assert_eq!(s.message(), message, "{what}");
    }

    assert_eq!(w.state().await, before, "nothing changed");
    w.next_write_is_next_revision().await;
}

#[tokio::test]
async fn the_gateway_reads_every_account_but_cannot_write() {
    let mut w = World::new().await;
    let before = w.state().await;
    let mut gw = w.server.client_with("gateway").await;

    for o in [&w.a, &w.b] {
        for (what, req) in reads_on(o) {
            call(&mut gw, req)
                .await
                .unwrap_or_else(|e| panic!("gateway {what} of {}: {e:?}", o.api.account_id));
        }
        let api = gw
            .get_api(GetApiRequest {
                api_id: o.api.api_id.clone(),
                ..Default::default()
            })
            .await
            .expect("get api")
            .into_inner();
        assert_eq!(
            api,
            o.api_now(&before),
            "the owner's record, as the owner sees it"
        );
        let m = gw
            .get_api_mapping(GetApiMappingRequest {
                domain_name: o.domain.domain_name.clone(),
                api_mapping_id: o.mapping.api_mapping_id.clone(),
                ..Default::default()
            })
            .await
            .expect("get mapping")
            .into_inner();
        assert_eq!(m, o.mapping);
    }

    // The gateway's lists are the union of both accounts', in list order.
    let seen = visible_state(&mut gw).await;
    let (a, b) = &before;
    let mut apis: Vec<Api> = a.apis.iter().chain(&b.apis).cloned().collect();
    apis.sort_by(|x, y| x.api_id.cmp(&y.api_id));
    let mut domains: Vec<DomainName> = a.domains.iter().chain(&b.domains).cloned().collect();
    domains.sort_by(|x, y| x.domain_name.cmp(&y.domain_name));
    assert_eq!(
        seen.apis, apis,
        "gateway GetApis lists every account's APIs"
    );
    assert_eq!(
        seen.domains, domains,
        "gateway GetDomainNames lists every account's domains"
    );
    assert_eq!(seen.stages.len(), a.stages.len() + b.stages.len());
    assert_eq!(seen.mappings.len(), a.mappings.len() + b.mappings.len());
    for (api, owner) in [(&w.a.api, ACCOUNT_A), (&w.b.api, ACCOUNT_B)] {
        let listed = seen
            .apis
            .iter()
            .find(|x| x.api_id == api.api_id)
            .expect("listed");
        assert_eq!(
            listed.account_id, owner,
            "records keep their owner's account"
        );
    }

    for o in [w.a.clone(), w.b.clone()] {
        for (what, req) in writes_on(&o) {
            refused(
                &mut gw,
                what,
                req,
                Code::PermissionDenied,
                "PERMISSION_DENIED",
            )
            .await;
        }
    }
    assert_eq!(w.state().await, before, "nothing changed");
    w.next_write_is_next_revision().await;
}

impl Owned {
    /// This account's API as it is in `state` (admin-a's or admin-b's listing).
    fn api_now(&self, state: &(VisibleState, VisibleState)) -> Api {
        state
            .0
            .apis
            .iter()
            .chain(&state.1.apis)
            .find(|a| a.api_id == self.api.api_id)
            .cloned()
            .expect("listed by its owner")
    }
}

// ---- accounts ------------------------------------------------------------------------------

#[tokio::test]
async fn another_accounts_records_are_not_found() {
    let mut w = World::new().await;
    let before = w.state().await;
    let (a, b) = (w.a.clone(), w.b.clone());

    for (me, other, client) in [(&b, &a, &mut w.admin_b), (&a, &b, &mut w.admin_a)] {
        // Reads and writes of the other account's records: NOT_FOUND, worded exactly like a
        // record that does not exist (nothing leaks, not even API_IN_USE or STAGE_IN_USE).
        for (what, req) in reads_on(other)
            .into_iter()
            .chain(writes_on(other))
            .filter(|(what, _)| *what != "CreateApi" && *what != "CreateDomainName")
        {
            let (reason_, message) = not_found_of(what, other);
            let s = refused(client, what, req, Code::NotFound, reason_).await;
            assert_eq!(s.message(), message, "{what}");
        }
        // Lists show only the caller's own records.
        let mine = visible_state(client).await;
        assert_eq!(mine.apis.len(), 1);
        assert_eq!(mine.apis[0].api_id, me.api.api_id);
        assert_eq!(mine.domains.len(), 1);
        assert_eq!(mine.domains[0].domain_name, me.domain.domain_name);
        assert_eq!(mine.stages.len(), 1);
        assert_eq!(mine.mappings.len(), 1);
        for api in &mine.apis {
            assert_eq!(api.account_id, me.api.account_id);
        }
    }
    assert_eq!(w.state().await, before, "nothing changed");
    w.next_write_is_next_revision().await;
}

#[tokio::test]
async fn an_account_cannot_map_another_accounts_api_or_domain() {
    let mut w = World::new().await;
    let before = w.state().await;
    let (a, b) = (w.a.clone(), w.b.clone());

    // B maps A's API (stage `test` exists on it) onto B's own domain.
    let s = expect_err(
        w.admin_b
            .create_api_mapping(mapping_req(
                &b.domain.domain_name,
                "stolen",
                &a.api.api_id,
                "test",
            ))
            .await,
        Code::NotFound,
        "API_NOT_FOUND",
    );
    assert_eq!(
        s.message(),
        format!("Invalid API identifier specified: {}", a.api.api_id)
    );
    // B maps its own API onto A's domain.
    expect_err(
        w.admin_b
            .create_api_mapping(mapping_req(
                &a.domain.domain_name,
                "squat",
                &b.api.api_id,
                "test",
            ))
            .await,
        Code::NotFound,
        "DOMAIN_NAME_NOT_FOUND",
    );
    // B points its own mapping at A's API.
    expect_err(
        w.admin_b
            .update_api_mapping(UpdateApiMappingRequest {
                domain_name: b.domain.domain_name.clone(),
                api_mapping_id: b.mapping.api_mapping_id.clone(),
                api_id: Some(a.api.api_id.clone()),
                stage: Some("test".into()),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "API_NOT_FOUND",
    );
    // B adds a stage to A's API.
    expect_err(
        w.admin_b
            .create_stage(CreateStageRequest {
                api_id: a.api.api_id.clone(),
                stage_name: "mine".into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "API_NOT_FOUND",
    );
    assert_eq!(w.state().await, before, "nothing changed");
    w.next_write_is_next_revision().await;
}

#[tokio::test]
async fn domain_names_are_unique_across_accounts() {
    let mut w = World::new().await;
    let shared = create_domain(&mut w.admin_a, "shared.example.com").await;
    w.rev = shared.create_revision;
    let before = w.state().await;

    for name in [
        "shared.example.com",
        "SHARED.Example.COM",
        "a.example.com",
        "A.EXAMPLE.COM",
    ] {
        let s = expect_err(
            w.admin_b
                .create_domain_name(CreateDomainNameRequest {
                    domain_name: name.into(),
                    ..Default::default()
                })
                .await,
            Code::AlreadyExists,
            "DOMAIN_NAME_EXISTS",
        );
        assert!(
            s.message().contains(&name.to_ascii_lowercase()),
            "names the domain: {s:?}"
        );
    }
    // Taken, yet still invisible to B.
    expect_err(
        w.admin_b
            .get_domain_name(GetDomainNameRequest {
                domain_name: "shared.example.com".into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "DOMAIN_NAME_NOT_FOUND",
    );
    assert_eq!(w.state().await, before, "nothing changed");
    w.next_write_is_next_revision().await;

    // Once A deletes it, B may take it, and it is B's.
    w.admin_a
        .delete_domain_name(DeleteDomainNameRequest {
            domain_name: "shared.example.com".into(),
            ..Default::default()
        })
        .await
        .expect("delete");
    let taken = create_domain(&mut w.admin_b, "Shared.Example.com").await;
    assert_eq!(taken.domain_name, "shared.example.com");
    assert_eq!(taken.account_id, ACCOUNT_B);
    expect_err(
        w.admin_a
            .get_domain_name(GetDomainNameRequest {
                domain_name: "shared.example.com".into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "DOMAIN_NAME_NOT_FOUND",
    );
}

#[tokio::test]
async fn records_carry_the_callers_account() {
    let mut w = World::new().await;
    for (o, account) in [(&w.a, ACCOUNT_A), (&w.b, ACCOUNT_B)] {
        assert_eq!(o.api.account_id, account, "api");
        assert_eq!(o.stage.account_id, account, "stage");
        assert_eq!(o.domain.account_id, account, "domain");
        assert_eq!(o.mapping.account_id, account, "mapping");
    }
    // Updates and reads keep the owner's account.
    let api = w
        .admin_b
        .update_api(UpdateApiRequest {
            api_id: w.b.api.api_id.clone(),
            name: Some("renamed".into()),
            ..Default::default()
        })
        .await
        .expect("update")
        .into_inner();
    assert_eq!(api.account_id, ACCOUNT_B);
    let stage = w
        .admin_b
        .update_stage(UpdateStageRequest {
            api_id: w.b.api.api_id.clone(),
            stage_name: "test".into(),
            description: Some("d".into()),
            ..Default::default()
        })
        .await
        .expect("update stage")
        .into_inner();
    assert_eq!(stage.account_id, ACCOUNT_B);
    let domain = w
        .admin_b
        .update_domain_name(UpdateDomainNameRequest {
            domain_name: w.b.domain.domain_name.clone(),
            domain_name_configurations: vec![DomainNameConfiguration {
                certificate_arn: "arn:b".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .expect("update domain")
        .into_inner();
    assert_eq!(domain.account_id, ACCOUNT_B);
    let mapping = w
        .admin_b
        .update_api_mapping(UpdateApiMappingRequest {
            domain_name: w.b.domain.domain_name.clone(),
            api_mapping_id: w.b.mapping.api_mapping_id.clone(),
            api_mapping_key: Some("v2".into()),
            ..Default::default()
        })
        .await
        .expect("update mapping")
        .into_inner();
    assert_eq!(mapping.account_id, ACCOUNT_B);

    for (client, account) in [(&mut w.admin_a, ACCOUNT_A), (&mut w.admin_b, ACCOUNT_B)] {
        let s = visible_state(client).await;
        assert!(s.apis.iter().all(|x| x.account_id == account), "{s:?}");
        assert!(s.stages.iter().all(|x| x.account_id == account), "{s:?}");
        assert!(s.domains.iter().all(|x| x.account_id == account), "{s:?}");
        assert!(s.mappings.iter().all(|x| x.account_id == account), "{s:?}");
    }
    let mut reader = w.server.client_with("reader-a").await;
    let s = visible_state(&mut reader).await;
    assert!(!s.apis.is_empty());
    assert!(s.apis.iter().all(|x| x.account_id == ACCOUNT_A), "{s:?}");
}
