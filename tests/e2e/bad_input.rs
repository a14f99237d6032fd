//! SPEC.md section 7 (and the field rules of sections 1-3): every bad request gets the right
//! code, a message naming the field, an ErrorInfo reason and a BadRequest field violation; it
//! takes no revision, changes nothing, and the server keeps serving.
//!
//! Each case runs through [`Bench::check`]: snapshot everything, send the bad request, check the
//! error, snapshot again (must be equal), then make one successful write whose revision must be
//! exactly the previous write's + 1. Failures are collected so one run lists every broken case.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mapreg::pb::*;
use tonic::{Code, Status};

use crate::common::*;

/// 1 MiB: the largest request the server accepts.
const MIB: usize = 1024 * 1024;

/// One bad request and what the server must answer.
struct Case {
    what: String,
    req: RegistryCall,
    code: Code,
    reason: String,
    /// The BadRequest field violation that must be present (validation errors only).
    field: Option<String>,
    /// Text the message must contain (the field name, or the record's id).
    says: String,
}

/// An INVALID_ARGUMENT case on `field`, reason `INVALID_<FIELD>`.
fn invalid(what: impl Into<String>, field: &str, req: RegistryCall) -> Case {
    Case {
        what: what.into(),
        req,
        code: Code::InvalidArgument,
        reason: format!("INVALID_{}", field.to_ascii_uppercase()),
        field: Some(field.to_string()),
        says: field.to_string(),
    }
}

/// A NOT_FOUND case whose message must contain `says` (the missing record's id).
fn not_found(what: impl Into<String>, reason: &str, says: &str, req: RegistryCall) -> Case {
    Case {
        what: what.into(),
        req,
        code: Code::NotFound,
        reason: reason.to_string(),
        field: None,
        says: says.to_string(),
    }
}

impl Case {
    /// Overrides the text the message must contain.
    fn saying(mut self, says: &str) -> Case {
        self.says = says.to_string();
        self
    }
}

/// ErrorInfo reasons are UPPER_SNAKE: `[A-Z][A-Z0-9_]*[A-Z0-9]` (google.rpc.ErrorInfo).
fn is_upper_snake(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_uppercase()
        && b[b.len() - 1] != b'_'
        && b.iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_')
}

/// Whether a violation's `field` names `want`: exactly, or as a path ending or starting in it
/// (`domain_name_configurations[0].certificate_arn` names `certificate_arn`).
fn names_field(field: &str, want: &str) -> bool {
    field == want
        || field.ends_with(&format!(".{want}"))
        || field.starts_with(&format!("{want}."))
        || field.starts_with(&format!("{want}["))
}

/// Records created before the cases run, and page tokens of real lists.
struct Fixture {
    /// An HTTP API with stages `test` and `prod`.
    api: String,
    /// A REST API with stage `test`.
    api2: String,
    /// A domain with mappings `v1` and `v2` to `api`/`test`.
    domain: String,
    /// A second domain with mapping `v1`.
    domain2: String,
    /// The id of `v1` on `domain`.
    mapping: String,
    apis_token: String,
    domains_token: String,
    /// GetStages of `api`, page 1 of 2.
    stages_token: String,
    /// GetApiMappings of `domain`, page 1 of 2.
    mappings_token: String,
}

/// A server with [`Fixture`], a probe API for revision checks, and the failures so far.
struct Bench {
    server: TestServer,
    c: Client,
    probe: String,
    /// The revision of the last successful write.
    rev: u64,
    writes: u64,
    fx: Fixture,
    failures: Vec<String>,
}

impl Bench {
    async fn new() -> Bench {
        let server = TestServer::start().await;
        let mut c = server.client().await;
        let probe = create_api(&mut c, "probe", ProtocolType::Http).await;
        let api = api_with_stage(&mut c, ProtocolType::Http).await;
        create_stage(&mut c, &api.api_id, "prod").await;
        let api2 = api_with_stage(&mut c, ProtocolType::Rest).await;
        let domain = create_domain(&mut c, "fx.example.com").await;
        let domain2 = create_domain(&mut c, "fx2.example.com").await;
        let m = create_mapping(&mut c, "fx.example.com", "v1", &api.api_id, "test").await;
        create_mapping(&mut c, "fx.example.com", "v2", &api.api_id, "test").await;
        let last = create_mapping(&mut c, "fx2.example.com", "v1", &api.api_id, "test").await;

        let apis_token = c
            .get_apis(GetApisRequest {
                max_results: 1,
                next_token: String::new(),
                ..Default::default()
            })
            .await
            .expect("page 1 of apis")
            .into_inner()
            .next_token;
        let domains_token = c
            .get_domain_names(GetDomainNamesRequest {
                max_results: 1,
                next_token: String::new(),
                ..Default::default()
            })
            .await
            .expect("page 1 of domains")
            .into_inner()
            .next_token;
        let stages_token = c
            .get_stages(GetStagesRequest {
                api_id: api.api_id.clone(),
                max_results: 1,
                next_token: String::new(),
                ..Default::default()
            })
            .await
            .expect("page 1 of stages")
            .into_inner()
            .next_token;
        let mappings_token = c
            .get_api_mappings(GetApiMappingsRequest {
                domain_name: domain.domain_name.clone(),
                max_results: 1,
                next_token: String::new(),
                ..Default::default()
            })
            .await
            .expect("page 1 of mappings")
            .into_inner()
            .next_token;
        for (list, t) in [
            ("apis", &apis_token),
            ("domains", &domains_token),
            ("stages", &stages_token),
            ("mappings", &mappings_token),
        ] {
            assert!(!t.is_empty(), "{list}: a first page of 1 has a next_token");
        }

        Bench {
            server,
            c,
            probe: probe.api_id,
            rev: last.create_revision,
            writes: 0,
            fx: Fixture {
                api: api.api_id,
                api2: api2.api_id,
                domain: domain.domain_name,
                domain2: domain2.domain_name,
                mapping: m.api_mapping_id,
                apis_token,
                domains_token,
                stages_token,
                mappings_token,
            },
            failures: Vec::new(),
        }
    }

    /// One successful write; returns its revision.
    async fn probe_write(&mut self) -> u64 {
        self.writes += 1;
        self.c
            .update_api(UpdateApiRequest {
                api_id: self.probe.clone(),
                description: Some(format!("probe write {}", self.writes)),
                ..Default::default()
            })
            .await
            .expect("the server still takes writes")
            .into_inner()
            .mod_revision
    }

    /// Runs one case; a mismatch is recorded, not panicked, so every case runs.
    async fn check(&mut self, case: Case) {
        let before = visible_state(&mut self.c).await;
        let result = call(&mut self.c, case.req.clone()).await;
        let after = visible_state(&mut self.c).await;
        let mut bad = Vec::new();
        match &result {
            Ok(v) => bad.push(format!("expected {:?}, got OK: {v}", case.code)),
            Err(s) => bad.extend(status_problems(s, &case)),
        }
        if before != after {
            bad.push(format!(
                "data changed:\n  before: {before:?}\n  after:  {after:?}"
            ));
        }
        let rev = self.probe_write().await;
        if rev != self.rev + 1 {
            bad.push(format!(
                "took a revision: the next write got {rev}, expected {}",
                self.rev + 1
            ));
        }
        self.rev = rev;
        // The server keeps serving reads too.
        if let Err(e) = self
            .c
            .get_api(GetApiRequest {
                api_id: self.probe.clone(),
                ..Default::default()
            })
            .await
        {
            bad.push(format!("GetApi after the bad request failed: {e:?}"));
        }
        if !bad.is_empty() {
            self.failures.push(format!(
                "[{}] {:?}\n    {}",
                case.what,
                short(&case.req),
                bad.join("\n    ")
            ));
        }
    }

    async fn check_all(&mut self, cases: Vec<Case>) {
        assert!(!cases.is_empty());
        for case in cases {
            self.check(case).await;
        }
    }

    /// Panics with every failure seen.
    fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{} bad-input case(s) failed:\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

/// What is wrong with `s` as the answer to `case` (empty: nothing).
fn status_problems(s: &Status, case: &Case) -> Vec<String> {
    let mut bad = Vec::new();
    if s.code() != case.code {
        bad.push(format!("code {:?}, expected {:?}", s.code(), case.code));
    }
    let r = reason(s);
    if r != case.reason {
        bad.push(format!("reason {r:?}, expected {:?}", case.reason));
    }
    if !is_upper_snake(&r) {
        bad.push(format!("reason {r:?} is not UPPER_SNAKE"));
    }
    let fields = violated_fields(s);
    match &case.field {
        Some(f) if !fields.iter().any(|v| names_field(v, f)) => {
            bad.push(format!("BadRequest fields {fields:?} do not name {f:?}"))
        }
        None if !fields.is_empty() => {
            bad.push(format!("unexpected BadRequest field violations {fields:?}"))
        }
        _ => {}
    }
    if !s.message().contains(&case.says) {
        bad.push(format!(
            "message {:?} does not contain {:?}",
            s.message(),
            case.says
        ));
    }
    bad
}

/// A Debug text of a request, long strings cut.
fn short(req: &RegistryCall) -> String {
    let t = format!("{req:?}");
    if t.chars().count() > 300 {
        format!("{}…", t.chars().take(300).collect::<String>())
    } else {
        t
    }
}

fn tags(n: usize) -> HashMap<String, String> {
    (0..n).map(|i| (format!("k{i}"), "v".to_string())).collect()
}

fn tag(k: &str, v: &str) -> HashMap<String, String> {
    HashMap::from([(k.to_string(), v.to_string())])
}

fn create_api_req(name: &str) -> CreateApiRequest {
    CreateApiRequest {
        name: name.into(),
        protocol_type: ProtocolType::Http as i32,
        ..Default::default()
    }
}

fn create_domain_req(domain: &str) -> CreateDomainNameRequest {
    CreateDomainNameRequest {
        domain_name: domain.into(),
        ..Default::default()
    }
}

fn cfg(endpoint: i32, policy: i32, arn: &str) -> DomainNameConfiguration {
    DomainNameConfiguration {
        endpoint_type: endpoint,
        security_policy: policy,
        certificate_arn: arn.into(),
        ..Default::default()
    }
}

/// A page token of the right encoding with the given parts (the server's format is
/// `v1\0list\0parent\0after`, base64url; tests only use it to build near-miss tokens).
fn forged_token(raw: &str) -> String {
    URL_SAFE_NO_PAD.encode(raw)
}

// ---- APIs ----------------------------------------------------------------------------------

#[tokio::test]
async fn api_fields_are_validated() {
    use RegistryCall::*;
    let mut b = Bench::new().await;
    let api = b.fx.api.clone();
    let mut cases = vec![
        invalid("empty name", "name", CreateApi(create_api_req(""))),
        invalid(
            "name of 129 chars",
            "name",
            CreateApi(create_api_req(&"n".repeat(129))),
        ),
        invalid(
            "name of 129 multi-byte chars",
            "name",
            CreateApi(create_api_req(&"é".repeat(129))),
        ),
        invalid(
            "description of 1025 chars",
            "description",
            CreateApi(CreateApiRequest {
                description: "d".repeat(1025),
                ..create_api_req("ok")
            }),
        ),
        invalid(
            "51 tags",
            "tags",
            CreateApi(CreateApiRequest {
                tags: tags(51),
                ..create_api_req("ok")
            }),
        ),
        invalid(
            "empty tag key",
            "tags",
            CreateApi(CreateApiRequest {
                tags: tag("", "v"),
                ..create_api_req("ok")
            }),
        ),
        invalid(
            "tag key of 129 chars",
            "tags",
            CreateApi(CreateApiRequest {
                tags: tag(&"k".repeat(129), "v"),
                ..create_api_req("ok")
            }),
        ),
        invalid(
            "tag value of 257 chars",
            "tags",
            CreateApi(CreateApiRequest {
                tags: tag("k", &"v".repeat(257)),
                ..create_api_req("ok")
            }),
        ),
        invalid(
            "reserved tag prefix aws:",
            "tags",
            CreateApi(CreateApiRequest {
                tags: tag("aws:owner", "v"),
                ..create_api_req("ok")
            }),
        ),
        invalid(
            "reserved tag prefix AWS:",
            "tags",
            CreateApi(CreateApiRequest {
                tags: tag("AWS:owner", "v"),
                ..create_api_req("ok")
            }),
        ),
        // UpdateApi
        invalid(
            "update: empty api_id",
            "api_id",
            UpdateApi(UpdateApiRequest {
                name: Some("x".into()),
                ..Default::default()
            }),
        ),
        invalid(
            "update: api_id of 129 chars",
            "api_id",
            UpdateApi(UpdateApiRequest {
                api_id: "a".repeat(129),
                name: Some("x".into()),
                ..Default::default()
            }),
        ),
        invalid(
            "update: name set to empty",
            "name",
            UpdateApi(UpdateApiRequest {
                api_id: api.clone(),
                name: Some(String::new()),
                ..Default::default()
            }),
        ),
        invalid(
            "update: name of 129 chars",
            "name",
            UpdateApi(UpdateApiRequest {
                api_id: api.clone(),
                name: Some("n".repeat(129)),
                ..Default::default()
            }),
        ),
        invalid(
            "update: description of 1025 chars",
            "description",
            UpdateApi(UpdateApiRequest {
                api_id: api.clone(),
                description: Some("d".repeat(1025)),
                ..Default::default()
            }),
        ),
        invalid(
            "update: valid name but bad description",
            "description",
            UpdateApi(UpdateApiRequest {
                api_id: api.clone(),
                name: Some("renamed".into()),
                description: Some("d".repeat(1025)),
                ..Default::default()
            }),
        ),
        // Get / Delete
        invalid(
            "get: empty api_id",
            "api_id",
            GetApi(GetApiRequest::default()),
        ),
        invalid(
            "delete: empty api_id",
            "api_id",
            DeleteApi(DeleteApiRequest::default()),
        ),
    ];
    for p in [0, 4, 5, 99, -1, i32::MAX, i32::MIN] {
        cases.push(invalid(
            format!("protocol_type {p}"),
            "protocol_type",
            CreateApi(CreateApiRequest {
                protocol_type: p,
                ..create_api_req("ok")
            }),
        ));
    }
    b.check_all(cases).await;
    b.finish();
}

// ---- stages --------------------------------------------------------------------------------

#[tokio::test]
async fn stage_fields_are_validated() {
    use RegistryCall::*;
    let mut b = Bench::new().await;
    let api = b.fx.api.clone();
    let create = |stage: &str| CreateStageRequest {
        api_id: api.clone(),
        stage_name: stage.into(),
        ..Default::default()
    };
    let mut cases = vec![
        invalid(
            "create: empty api_id",
            "api_id",
            CreateStage(CreateStageRequest {
                api_id: String::new(),
                ..create("ok")
            }),
        ),
        invalid(
            "create: description of 1025 chars",
            "description",
            CreateStage(CreateStageRequest {
                description: "d".repeat(1025),
                ..create("ok")
            }),
        ),
        invalid(
            "create: 51 tags",
            "tags",
            CreateStage(CreateStageRequest {
                tags: tags(51),
                ..create("ok")
            }),
        ),
        invalid(
            "create: tag value of 257 chars",
            "tags",
            CreateStage(CreateStageRequest {
                tags: tag("k", &"v".repeat(257)),
                ..create("ok")
            }),
        ),
        // Get / Update / Delete / list need both parts of the id.
        invalid(
            "get: empty api_id",
            "api_id",
            GetStage(GetStageRequest {
                api_id: String::new(),
                stage_name: "test".into(),
                ..Default::default()
            }),
        ),
        invalid(
            "get: empty stage_name",
            "stage_name",
            GetStage(GetStageRequest {
                api_id: api.clone(),
                stage_name: String::new(),
                ..Default::default()
            }),
        ),
        invalid(
            "update: empty api_id",
            "api_id",
            UpdateStage(UpdateStageRequest {
                stage_name: "test".into(),
                description: Some("x".into()),
                ..Default::default()
            }),
        ),
        invalid(
            "update: empty stage_name",
            "stage_name",
            UpdateStage(UpdateStageRequest {
                api_id: api.clone(),
                description: Some("x".into()),
                ..Default::default()
            }),
        ),
        invalid(
            "update: description of 1025 chars",
            "description",
            UpdateStage(UpdateStageRequest {
                api_id: api.clone(),
                stage_name: "test".into(),
                description: Some("d".repeat(1025)),
                ..Default::default()
            }),
        ),
        invalid(
            "delete: empty api_id",
            "api_id",
            DeleteStage(DeleteStageRequest {
                stage_name: "test".into(),
                ..Default::default()
            }),
        ),
        invalid(
            "delete: empty stage_name",
            "stage_name",
            DeleteStage(DeleteStageRequest {
                api_id: api.clone(),
                ..Default::default()
            }),
        ),
        invalid(
            "list: empty api_id",
            "api_id",
            GetStages(GetStagesRequest::default()),
        ),
    ];
    for s in [
        String::new(),
        "s".repeat(129),
        "bad name".into(),
        "bad.name".into(),
        "a/b".into(),
        "$prod".into(),
        "$Default".into(),
        "$default ".into(),
        " test".into(),
        "stagé".into(),
        "tab\there".into(),
        "semi;colon".into(),
    ] {
        cases.push(invalid(
            format!("stage_name {s:?}"),
            "stage_name",
            CreateStage(create(&s)),
        ));
    }
    b.check_all(cases).await;
    b.finish();
}

// ---- domain names --------------------------------------------------------------------------

#[tokio::test]
async fn domain_name_fields_are_validated() {
    use RegistryCall::*;
    let mut b = Bench::new().await;
    let l63 = "a".repeat(63);
    let n254 = format!("{l63}.{l63}.{l63}.{}", "a".repeat(62));
    assert_eq!(n254.len(), 254);
    let mut cases = Vec::new();
    for d in [
        String::new(),
        n254.clone(),
        format!("{}.com", "a".repeat(64)),
        "localhost".into(),
        "com".into(),
        "example.com.".into(),
        ".example.com".into(),
        "a..example.com".into(),
        "ex_ample.com".into(),
        "_dmarc.example.com".into(),
        "ex ample.com".into(),
        "-a.example.com".into(),
        "a-.example.com".into(),
        "example.-com".into(),
        "a.*.example.com".into(),
        "*a.example.com".into(),
        "*.*.example.com".into(),
        "*".into(),
        "bücher.example".into(),
        "exa!mple.com".into(),
        "example.com:443".into(),
        "https://example.com".into(),
        "example.com/path".into(),
        "user@example.com".into(),
        "[::1].com".into(),
    ] {
        cases.push(invalid(
            format!("create: domain_name {:?}", short_str(&d)),
            "domain_name",
            CreateDomainName(create_domain_req(&d)),
        ));
    }
    let two = vec![
        cfg(EndpointType::Regional as i32, 0, ""),
        cfg(EndpointType::Edge as i32, 0, ""),
    ];
    cases.extend([
        invalid(
            "create: two configurations",
            "domain_name_configurations",
            CreateDomainName(CreateDomainNameRequest {
                domain_name_configurations: two.clone(),
                ..create_domain_req("new.example.com")
            }),
        )
        .saying("Expected one domain name configuration"),
        invalid(
            "create: unknown endpoint_type",
            "endpoint_type",
            CreateDomainName(CreateDomainNameRequest {
                domain_name_configurations: vec![cfg(7, 0, "")],
                ..create_domain_req("new.example.com")
            }),
        ),
        invalid(
            "create: negative endpoint_type",
            "endpoint_type",
            CreateDomainName(CreateDomainNameRequest {
                domain_name_configurations: vec![cfg(-1, 0, "")],
                ..create_domain_req("new.example.com")
            }),
        ),
        invalid(
            "create: unknown security_policy",
            "security_policy",
            CreateDomainName(CreateDomainNameRequest {
                domain_name_configurations: vec![cfg(0, 9, "")],
                ..create_domain_req("new.example.com")
            }),
        ),
        invalid(
            "create: certificate_arn of 2049 chars",
            "certificate_arn",
            CreateDomainName(CreateDomainNameRequest {
                domain_name_configurations: vec![cfg(0, 0, &"c".repeat(2049))],
                ..create_domain_req("new.example.com")
            }),
        ),
        invalid(
            "create: 51 tags",
            "tags",
            CreateDomainName(CreateDomainNameRequest {
                tags: tags(51),
                ..create_domain_req("new.example.com")
            }),
        ),
        invalid(
            "create: tag key of 129 chars",
            "tags",
            CreateDomainName(CreateDomainNameRequest {
                tags: tag(&"k".repeat(129), "v"),
                ..create_domain_req("new.example.com")
            }),
        ),
        // Look-ups: empty and over-long names are invalid.
        invalid(
            "get: empty domain_name",
            "domain_name",
            GetDomainName(GetDomainNameRequest::default()),
        ),
        invalid(
            "get: domain_name of 254 chars",
            "domain_name",
            GetDomainName(GetDomainNameRequest {
                domain_name: n254.clone(),
                ..Default::default()
            }),
        ),
        invalid(
            "update: empty domain_name",
            "domain_name",
            UpdateDomainName(UpdateDomainNameRequest {
                domain_name_configurations: vec![cfg(0, 0, "arn")],
                ..Default::default()
            }),
        ),
        invalid(
            "update: two configurations",
            "domain_name_configurations",
            UpdateDomainName(UpdateDomainNameRequest {
                domain_name: b.fx.domain.clone(),
                domain_name_configurations: two.clone(),
                ..Default::default()
            }),
        )
        .saying("Expected one domain name configuration"),
        invalid(
            "update: unknown endpoint_type",
            "endpoint_type",
            UpdateDomainName(UpdateDomainNameRequest {
                domain_name: b.fx.domain.clone(),
                domain_name_configurations: vec![cfg(3, 0, "")],
                ..Default::default()
            }),
        ),
        invalid(
            "update: unknown security_policy",
            "security_policy",
            UpdateDomainName(UpdateDomainNameRequest {
                domain_name: b.fx.domain.clone(),
                domain_name_configurations: vec![cfg(0, 3, "")],
                ..Default::default()
            }),
        ),
        invalid(
            "update: certificate_arn of 2049 chars",
            "certificate_arn",
            UpdateDomainName(UpdateDomainNameRequest {
                domain_name: b.fx.domain.clone(),
                domain_name_configurations: vec![cfg(0, 0, &"c".repeat(2049))],
                ..Default::default()
            }),
        ),
        invalid(
            "delete: empty domain_name",
            "domain_name",
            DeleteDomainName(DeleteDomainNameRequest::default()),
        ),
        invalid(
            "delete: domain_name of 254 chars",
            "domain_name",
            DeleteDomainName(DeleteDomainNameRequest {
                domain_name: n254.clone(),
                ..Default::default()
            }),
        ),
        invalid(
            "list mappings: empty domain_name",
            "domain_name",
            GetApiMappings(GetApiMappingsRequest::default()),
        ),
    ]);
    b.check_all(cases).await;
    b.finish();
}

fn short_str(s: &str) -> String {
    if s.len() > 40 {
        format!(
            "{}… ({} chars)",
            s.chars().take(20).collect::<String>(),
            s.chars().count()
        )
    } else {
        s.to_string()
    }
}

// ---- API mappings --------------------------------------------------------------------------

#[tokio::test]
async fn api_mapping_fields_are_validated() {
    use RegistryCall::*;
    let mut b = Bench::new().await;
    let (api, domain, mapping) = (b.fx.api.clone(), b.fx.domain.clone(), b.fx.mapping.clone());
    let mut cases = Vec::new();
    for k in [
        "/v1".to_string(),
        "v1/".into(),
        "/".into(),
        "//".into(),
        "v1//x".into(),
        "v 1".into(),
        "v1?x".into(),
        "v1#frag".into(),
        "v1%20".into(),
        "a\\b".into(),
        "a\0b".into(),
        "é".into(),
        "日本".into(),
        "v1:x".into(),
        "v1;x".into(),
        "v1,x".into(),
        "v1@x".into(),
        "v1&x".into(),
        "v1=x".into(),
        "v1~x".into(),
        "a\nb".into(),
        "k".repeat(301),
        format!("{}/x", "k".repeat(299)),
    ] {
        cases.push(invalid(
            format!("create: api_mapping_key {:?}", short_str(&k)),
            "api_mapping_key",
            CreateApiMapping(mapping_req(&domain, &k, &api, "test")),
        ));
        cases.push(invalid(
            format!("update: api_mapping_key {:?}", short_str(&k)),
            "api_mapping_key",
            UpdateApiMapping(UpdateApiMappingRequest {
                domain_name: domain.clone(),
                api_mapping_id: mapping.clone(),
                api_mapping_key: Some(k.clone()),
                ..Default::default()
            }),
        ));
    }
    cases.extend([
        invalid(
            "create: empty domain_name",
            "domain_name",
            CreateApiMapping(mapping_req("", "x", &api, "test")),
        ),
        invalid(
            "create: domain_name of 254 chars",
            "domain_name",
            CreateApiMapping(mapping_req(&"d".repeat(254), "x", &api, "test")),
        ),
        invalid(
            "create: empty api_id",
            "api_id",
            CreateApiMapping(mapping_req(&domain, "x", "", "test")),
        ),
        invalid(
            "create: empty stage",
            "stage",
            CreateApiMapping(mapping_req(&domain, "x", &api, "")),
        ),
        invalid(
            "get: empty domain_name",
            "domain_name",
            GetApiMapping(GetApiMappingRequest {
                domain_name: String::new(),
                api_mapping_id: mapping.clone(),
                ..Default::default()
            }),
        ),
        invalid(
            "get: empty api_mapping_id",
            "api_mapping_id",
            GetApiMapping(GetApiMappingRequest {
                domain_name: domain.clone(),
                api_mapping_id: String::new(),
                ..Default::default()
            }),
        ),
        invalid(
            "update: empty domain_name",
            "domain_name",
            UpdateApiMapping(UpdateApiMappingRequest {
                api_mapping_id: mapping.clone(),
                api_mapping_key: Some("x".into()),
                ..Default::default()
            }),
        ),
        invalid(
            "update: empty api_mapping_id",
            "api_mapping_id",
            UpdateApiMapping(UpdateApiMappingRequest {
                domain_name: domain.clone(),
                api_mapping_key: Some("x".into()),
                ..Default::default()
            }),
        ),
        invalid(
            "update: api_id set to empty",
            "api_id",
            UpdateApiMapping(UpdateApiMappingRequest {
                domain_name: domain.clone(),
                api_mapping_id: mapping.clone(),
                api_id: Some(String::new()),
                ..Default::default()
            }),
        ),
        invalid(
            "update: stage set to empty",
            "stage",
            UpdateApiMapping(UpdateApiMappingRequest {
                domain_name: domain.clone(),
                api_mapping_id: mapping.clone(),
                stage: Some(String::new()),
                ..Default::default()
            }),
        ),
        invalid(
            "update: good key, bad stage",
            "stage",
            UpdateApiMapping(UpdateApiMappingRequest {
                domain_name: domain.clone(),
                api_mapping_id: mapping.clone(),
                api_mapping_key: Some("moved".into()),
                stage: Some(String::new()),
                ..Default::default()
            }),
        ),
        invalid(
            "delete: empty domain_name",
            "domain_name",
            DeleteApiMapping(DeleteApiMappingRequest {
                api_mapping_id: mapping.clone(),
                ..Default::default()
            }),
        ),
        invalid(
            "delete: empty api_mapping_id",
            "api_mapping_id",
            DeleteApiMapping(DeleteApiMappingRequest {
                domain_name: domain.clone(),
                ..Default::default()
            }),
        ),
    ]);
    b.check_all(cases).await;
    b.finish();
}

// ---- unknown ids ---------------------------------------------------------------------------

#[tokio::test]
async fn unknown_ids_are_not_found() {
    use RegistryCall::*;
    let mut b = Bench::new().await;
    let (api, domain, mapping) = (b.fx.api.clone(), b.fx.domain.clone(), b.fx.mapping.clone());
    let no_api = "zzzzzzzzzz";
    let no_domain = "absent.example.com";
    let no_mapping = "zzzzzz";
    const API: &str = "API_NOT_FOUND";
    const STAGE: &str = "STAGE_NOT_FOUND";
    const DOMAIN: &str = "DOMAIN_NAME_NOT_FOUND";
    const MAPPING: &str = "API_MAPPING_NOT_FOUND";
    let cases = vec![
        // APIs
        not_found(
            "get api",
            API,
            no_api,
            GetApi(GetApiRequest {
                api_id: no_api.into(),
                ..Default::default()
            }),
        )
        .saying(&format!("Invalid API identifier specified: {no_api}")),
        not_found(
            "update api",
            API,
            no_api,
            UpdateApi(UpdateApiRequest {
                api_id: no_api.into(),
                name: Some("x".into()),
                ..Default::default()
            }),
        ),
        not_found(
            "delete api",
            API,
            no_api,
            DeleteApi(DeleteApiRequest {
                api_id: no_api.into(),
                ..Default::default()
            }),
        ),
        not_found(
            "get api: an id that differs only in case",
            API,
            &api.to_ascii_uppercase(),
            GetApi(GetApiRequest {
                api_id: api.to_ascii_uppercase(),
                ..Default::default()
            }),
        ),
        // Stages
        not_found(
            "create stage on a missing api",
            API,
            no_api,
            CreateStage(CreateStageRequest {
                api_id: no_api.into(),
                stage_name: "test".into(),
                ..Default::default()
            }),
        ),
        not_found(
            "get stage",
            STAGE,
            "nope",
            GetStage(GetStageRequest {
                api_id: api.clone(),
                stage_name: "nope".into(),
                ..Default::default()
            }),
        )
        .saying("Invalid stage identifier specified: nope"),
        not_found(
            "get stage of a missing api",
            API,
            no_api,
            GetStage(GetStageRequest {
                api_id: no_api.into(),
                stage_name: "test".into(),
                ..Default::default()
            }),
        ),
        not_found(
            "list stages of a missing api",
            API,
            no_api,
            GetStages(GetStagesRequest {
                api_id: no_api.into(),
                ..Default::default()
            }),
        ),
        not_found(
            "update stage",
            STAGE,
            "nope",
            UpdateStage(UpdateStageRequest {
                api_id: api.clone(),
                stage_name: "nope".into(),
                description: Some("x".into()),
                ..Default::default()
            }),
        ),
        not_found(
            "delete stage",
            STAGE,
            "nope",
            DeleteStage(DeleteStageRequest {
                api_id: api.clone(),
                stage_name: "nope".into(),
                ..Default::default()
            }),
        ),
        not_found(
            "delete stage of a missing api",
            API,
            no_api,
            DeleteStage(DeleteStageRequest {
                api_id: no_api.into(),
                stage_name: "test".into(),
                ..Default::default()
            }),
        ),
        // Domain names
        not_found(
            "get domain",
            DOMAIN,
            no_domain,
            GetDomainName(GetDomainNameRequest {
                domain_name: no_domain.into(),
                ..Default::default()
            }),
        )
        .saying(&format!(
            "Invalid domain name identifier specified: {no_domain}"
        )),
        not_found(
            "update domain",
            DOMAIN,
            no_domain,
            UpdateDomainName(UpdateDomainNameRequest {
                domain_name: no_domain.into(),
                domain_name_configurations: vec![cfg(0, 0, "arn")],
                ..Default::default()
            }),
        ),
        not_found(
            "delete domain",
            DOMAIN,
            no_domain,
            DeleteDomainName(DeleteDomainNameRequest {
                domain_name: no_domain.into(),
                ..Default::default()
            }),
        ),
        not_found(
            "list mappings of a missing domain",
            DOMAIN,
            no_domain,
            GetApiMappings(GetApiMappingsRequest {
                domain_name: no_domain.into(),
                ..Default::default()
            }),
        ),
        // API mappings
        not_found(
            "create mapping on a missing domain",
            DOMAIN,
            no_domain,
            CreateApiMapping(mapping_req(no_domain, "x", &api, "test")),
        ),
        not_found(
            "create mapping to a missing api",
            API,
            no_api,
            CreateApiMapping(mapping_req(&domain, "x", no_api, "test")),
        )
        .saying(&format!("Invalid API identifier specified: {no_api}")),
        not_found(
            "create mapping to a missing stage",
            STAGE,
            "nope",
            CreateApiMapping(mapping_req(&domain, "x", &api, "nope")),
        )
        .saying("Invalid stage identifier specified: nope"),
        not_found(
            "create mapping to a stage of another api",
            STAGE,
            "prod",
            CreateApiMapping(mapping_req(&domain, "x", &b.fx.api2, "prod")),
        ),
        not_found(
            "get mapping",
            MAPPING,
            no_mapping,
            GetApiMapping(GetApiMappingRequest {
                domain_name: domain.clone(),
                api_mapping_id: no_mapping.into(),
                ..Default::default()
            }),
        ),
        not_found(
            "get mapping under another domain",
            MAPPING,
            &mapping,
            GetApiMapping(GetApiMappingRequest {
                domain_name: b.fx.domain2.clone(),
                api_mapping_id: mapping.clone(),
                ..Default::default()
            }),
        ),
        not_found(
            "get mapping of a missing domain",
            DOMAIN,
            no_domain,
            GetApiMapping(GetApiMappingRequest {
                domain_name: no_domain.into(),
                api_mapping_id: mapping.clone(),
                ..Default::default()
            }),
        ),
        not_found(
            "update mapping",
            MAPPING,
            no_mapping,
            UpdateApiMapping(UpdateApiMappingRequest {
                domain_name: domain.clone(),
                api_mapping_id: no_mapping.into(),
                api_mapping_key: Some("x".into()),
                ..Default::default()
            }),
        ),
        not_found(
            "update mapping to a missing api",
            API,
            no_api,
            UpdateApiMapping(UpdateApiMappingRequest {
                domain_name: domain.clone(),
                api_mapping_id: mapping.clone(),
                api_id: Some(no_api.into()),
                ..Default::default()
            }),
        ),
        not_found(
            "update mapping to a missing stage",
            STAGE,
            "nope",
            UpdateApiMapping(UpdateApiMappingRequest {
                domain_name: domain.clone(),
                api_mapping_id: mapping.clone(),
                stage: Some("nope".into()),
                ..Default::default()
            }),
        ),
        not_found(
            "delete mapping",
            MAPPING,
            no_mapping,
            DeleteApiMapping(DeleteApiMappingRequest {
                domain_name: domain.clone(),
                api_mapping_id: no_mapping.into(),
                ..Default::default()
            }),
        ),
        not_found(
            "delete mapping of a missing domain",
            DOMAIN,
            no_domain,
            DeleteApiMapping(DeleteApiMappingRequest {
                domain_name: no_domain.into(),
                api_mapping_id: mapping.clone(),
                ..Default::default()
            }),
        ),
    ];
    b.check_all(cases).await;
    b.finish();
}

// ---- paging parameters ---------------------------------------------------------------------

#[tokio::test]
async fn paging_parameters_are_validated() {
    use RegistryCall::*;
    let mut b = Bench::new().await;
    let fx = &b.fx;
    let (api, api2, domain, domain2) = (
        fx.api.clone(),
        fx.api2.clone(),
        fx.domain.clone(),
        fx.domain2.clone(),
    );
    // Each list, with a given max_results and next_token.
    let lists = |max_results: i32, next_token: &str| {
        let t = next_token.to_string();
        vec![
            (
                "apis",
                GetApis(GetApisRequest {
                    max_results,
                    next_token: t.clone(),
                    ..Default::default()
                }),
            ),
            (
                "domains",
                GetDomainNames(GetDomainNamesRequest {
                    max_results,
                    next_token: t.clone(),
                    ..Default::default()
                }),
            ),
            (
                "stages",
                GetStages(GetStagesRequest {
                    api_id: api.clone(),
                    max_results,
                    next_token: t.clone(),
                    ..Default::default()
                }),
            ),
            (
                "mappings",
                GetApiMappings(GetApiMappingsRequest {
                    domain_name: domain.clone(),
                    max_results,
                    next_token: t,
                    ..Default::default()
                }),
            ),
        ]
    };
    let mut cases = Vec::new();
    for m in [-1, 1001, 5000, i32::MAX, i32::MIN] {
        for (list, req) in lists(m, "") {
            cases.push(invalid(
                format!("{list}: max_results {m}"),
                "max_results",
                req,
            ));
        }
    }
    for garbage in [
        "garbage".to_string(),
        "!!!".into(),
        "AAAA".into(),
        " ".into(),
        "%00".into(),
        "x".repeat(5000),
        forged_token("v1\0apis\0\0"),
        forged_token("v2\0apis\0\0zzz"),
        forged_token("v1\0apis"),
        URL_SAFE_NO_PAD.encode([0xff, 0xfe, 0x00, 0x01]),
    ] {
        for (list, req) in lists(0, &garbage) {
            cases.push(invalid(
                format!("{list}: next_token {:?}", short_str(&garbage)),
                "next_token",
                req,
            ));
        }
    }
    // A real token of one list is refused by every other list.
    let tokens = [
        ("apis", fx.apis_token.clone()),
        ("domains", fx.domains_token.clone()),
        ("stages", fx.stages_token.clone()),
        ("mappings", fx.mappings_token.clone()),
    ];
    for (from, token) in &tokens {
        for (list, req) in lists(0, token) {
            if list != *from {
                cases.push(invalid(
                    format!("{list}: next_token of {from}"),
                    "next_token",
                    req,
                ));
            }
        }
    }
    // ... and by the same list of another parent.
    cases.push(invalid(
        "stages of another api: next_token of stages",
        "next_token",
        GetStages(GetStagesRequest {
            api_id: api2,
            max_results: 0,
            next_token: fx.stages_token.clone(),
            ..Default::default()
        }),
    ));
    cases.push(invalid(
        "mappings of another domain: next_token of mappings",
        "next_token",
        GetApiMappings(GetApiMappingsRequest {
            domain_name: domain2,
            max_results: 0,
            next_token: fx.mappings_token.clone(),
            ..Default::default()
        }),
    ));
    // The other checks still come first or second, but never let a bad page through.
    cases.push(invalid(
        "apis: bad max_results and bad next_token",
        "max_results",
        GetApis(GetApisRequest {
            max_results: -5,
            next_token: "garbage".into(),
            ..Default::default()
        }),
    ));
    b.check_all(cases).await;

    // The real tokens do work where they belong, and max_results 0 / 1000 are accepted.
    for (list, token) in tokens {
        let req = lists(0, &token)
            .into_iter()
            .find(|(l, _)| *l == list)
            .map(|(_, r)| r)
            .expect("list");
        call(&mut b.c, req)
            .await
            .unwrap_or_else(|e| panic!("{list}: its own next_token is accepted: {e:?}"));
    }
    for m in [0, 1, 1000] {
        for (list, req) in lists(m, "") {
            call(&mut b.c, req)
                .await
                .unwrap_or_else(|e| panic!("{list}: max_results {m} is accepted: {e:?}"));
        }
    }
    b.finish();
}

#[tokio::test]
async fn max_results_zero_means_the_default_page_of_100() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    for i in 0..101 {
        create_api(&mut c, &format!("api{i}"), ProtocolType::Http).await;
    }
    let page = c
        .get_apis(GetApisRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(page.items.len(), 100, "max_results 0 -> 100");
    assert!(!page.next_token.is_empty(), "a second page follows");
    let rest = c
        .get_apis(GetApisRequest {
            max_results: 1000,
            next_token: page.next_token,
            ..Default::default()
        })
        .await
        .expect("page 2")
        .into_inner();
    assert_eq!(rest.items.len(), 1);
    assert!(rest.next_token.is_empty(), "last page");
}

// ---- limits are inclusive ------------------------------------------------------------------

/// Every limit tested above is exact: the largest allowed value is accepted.
#[tokio::test]
async fn values_at_the_limits_are_accepted() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let max_tags: HashMap<String, String> = (0..50)
        .map(|i| (format!("{i:0>128}"), "v".repeat(256)))
        .collect();
    let api = c
        .create_api(CreateApiRequest {
            name: "é".repeat(128),
            protocol_type: ProtocolType::Rest as i32,
            description: "d".repeat(1024),
            tags: max_tags.clone(),
            ..Default::default()
        })
        .await
        .expect("name 128, description 1024, 50 tags of 128/256")
        .into_inner();
    assert_eq!(api.name, "é".repeat(128));
    assert_eq!(api.tags, max_tags);
    let api_id = api.api_id;
    for stage in ["s".repeat(128), "$default".into(), "A-z_0-9".into()] {
        c.create_stage(CreateStageRequest {
            api_id: api_id.clone(),
            stage_name: stage.clone(),
            description: "d".repeat(1024),
            tags: max_tags.clone(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("stage {stage:?}: {e:?}"));
    }
    let l63 = "a".repeat(63);
    let n253 = format!("{l63}.{l63}.{l63}.{}", "a".repeat(61));
    for d in [
        n253.as_str(),
        "*.example.com",
        "xn--bcher-kva.example",
        "a-b.c0.example",
    ] {
        c.create_domain_name(CreateDomainNameRequest {
            domain_name: d.into(),
            domain_name_configurations: vec![cfg(0, 0, &"c".repeat(2048))],
            tags: max_tags.clone(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("domain {d:?}: {e:?}"));
    }
    create_domain(&mut c, "keys.example.com").await;
    for k in [
        "k".repeat(300),
        format!("{}/x", "k".repeat(298)),
        "$-_.+!*'()".into(),
        "Aa0/b".into(),
    ] {
        c.create_api_mapping(mapping_req("keys.example.com", &k, &api_id, "$default"))
            .await
            .unwrap_or_else(|e| panic!("key {k:?}: {e:?}"));
    }
}

// ---- oversized requests --------------------------------------------------------------------

#[tokio::test]
async fn requests_over_1_mib_are_resource_exhausted_and_the_server_keeps_serving() {
    let mut b = Bench::new().await;
    let big = "x".repeat(MIB + 1);
    let big_tags: HashMap<String, String> = (0..40)
        .map(|i| (format!("k{i}"), "v".repeat(MIB / 32)))
        .collect();
    let cases = vec![
        Case {
            what: "CreateApi with a 1 MiB + 1 description".into(),
            req: RegistryCall::CreateApi(CreateApiRequest {
                description: big.clone(),
                ..create_api_req("big")
            }),
            code: Code::ResourceExhausted,
            reason: "REQUEST_TOO_LARGE".into(),
            field: None,
            says: String::new(),
        },
        Case {
            what: "CreateDomainName with 1.25 MiB of tags".into(),
            req: RegistryCall::CreateDomainName(CreateDomainNameRequest {
                tags: big_tags,
                ..create_domain_req("big.example.com")
            }),
            code: Code::ResourceExhausted,
            reason: "REQUEST_TOO_LARGE".into(),
            field: None,
            says: String::new(),
        },
        Case {
            what: "GetApi with a 2 MiB id".into(),
            req: RegistryCall::GetApi(GetApiRequest {
                api_id: "a".repeat(2 * MIB),
                ..Default::default()
            }),
            code: Code::ResourceExhausted,
            reason: "REQUEST_TOO_LARGE".into(),
            field: None,
            says: String::new(),
        },
        Case {
            what: "UpdateApiMapping with a 1 MiB + 1 key".into(),
            req: RegistryCall::UpdateApiMapping(UpdateApiMappingRequest {
                domain_name: b.fx.domain.clone(),
                api_mapping_id: b.fx.mapping.clone(),
                api_mapping_key: Some(big.clone()),
                ..Default::default()
            }),
            code: Code::ResourceExhausted,
            reason: "REQUEST_TOO_LARGE".into(),
            field: None,
            says: String::new(),
        },
        // Just under the limit, the request is decoded and refused on its field.
        invalid(
            "CreateApi with a 1 MiB - 100 description",
            "description",
            RegistryCall::CreateApi(CreateApiRequest {
                description: "x".repeat(MIB - 100),
                ..create_api_req("big")
            }),
        ),
    ];
    b.check_all(cases).await;

    // A fresh connection is served too, and writes still succeed.
    let mut fresh = b.server.client().await;
    fresh
        .get_api(GetApiRequest {
            api_id: b.fx.api.clone(),
            ..Default::default()
        })
        .await
        .expect("a new connection is served after oversized requests");
    let rev = b.probe_write().await;
    assert_eq!(rev, b.rev + 1);
    b.rev = rev;
    b.finish();
}

/// Several oversized requests in parallel on one connection and on fresh ones: every one is
/// refused, and the server answers normally afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_oversized_requests_do_not_take_the_server_down() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let before = visible_state(&mut c).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let mut c = if i % 2 == 0 {
            c.clone()
        } else {
            server.client().await
        };
        tasks.push(tokio::spawn(async move {
            c.create_api(CreateApiRequest {
                name: format!("big{i}"),
                protocol_type: ProtocolType::Http as i32,
                description: "y".repeat(MIB + 1 + i),
                ..Default::default()
            })
            .await
        }));
    }
    for t in tasks {
        expect_err(
            t.await.expect("task"),
            Code::ResourceExhausted,
            "REQUEST_TOO_LARGE",
        );
    }
    assert_eq!(visible_state(&mut c).await, before, "nothing was written");
    let api = create_api(&mut c, "after", ProtocolType::Http).await;
    assert_eq!(
        api.create_revision, 1,
        "the first successful write is revision 1"
    );
}
