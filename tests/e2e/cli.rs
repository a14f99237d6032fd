//! The `mapreg` client commands, run as the built binary against a live server: AWS-shaped
//! output, pagination, AWS-style errors and exit codes, tokens, resolve-route and watch.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use mapreg::pb::*;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::common::*;

/// Every command finishes (or is killed) within this.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(60);

/// What a finished `mapreg` run left.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    /// The stdout as JSON, asserting a successful run.
    #[track_caller]
    pub(crate) fn json(&self) -> Value {
        assert_eq!(self.code, 0, "exit code of {self:?}");
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("JSON of {self:?}: {e}"))
    }

    /// Asserts a service error: exit 254, the AWS CLI's error line, nothing on stdout.
    #[track_caller]
    pub(crate) fn service_error(&self, exception: &str, operation: &str) {
        assert_eq!(self.code, 254, "exit code of {self:?}");
        let prefix =
            format!("An error occurred ({exception}) when calling the {operation} operation: ");
        assert!(
            self.stderr.starts_with(&prefix),
            "stderr {:?} should start with {prefix:?}",
            self.stderr
        );
        assert!(self.stdout.is_empty(), "stdout of {self:?}");
    }
}

pub(crate) fn command(args: &[&str], envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mapreg"));
    cmd.args(args)
        .env_remove("MAPREG_ENDPOINT")
        .env_remove("MAPREG_TOKEN")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Runs `mapreg args...` with `envs` (MAPREG_* from the caller's environment removed).
pub(crate) async fn run_env(args: &[&str], envs: &[(&str, &str)]) -> Run {
    let out = tokio::time::timeout(TIMEOUT, command(args, envs).output())
        .await
        .unwrap_or_else(|_| panic!("mapreg {args:?} did not finish within {TIMEOUT:?}"))
        .expect("run mapreg");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `mapreg args... --endpoint <server>`.
pub(crate) async fn run(s: &TestServer, args: &[&str]) -> Run {
    let endpoint = s.endpoint();
    let mut all = args.to_vec();
    all.extend(["--endpoint", endpoint.as_str()]);
    run_env(&all, &[]).await
}

pub(crate) fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("object expected: {v}"))
        .keys()
        .cloned()
        .collect()
}

pub(crate) fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

pub(crate) fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} of {v} is not a string"))
}

/// The README walk-through: domain, API, stage, then the seed's create-api-mapping.
#[tokio::test]
async fn seed_walkthrough() {
    let s = TestServer::start().await;
    let d = run(
        &s,
        &["create-domain-name", "--domain-name", "api.example.com"],
    )
    .await
    .json();
    assert_eq!(d["DomainName"], "api.example.com");

    let api = run(
        &s,
        &["create-api", "--name", "pets", "--protocol-type", "HTTP"],
    )
    .await
    .json();
    let api_id = str_of(&api, "ApiId").to_string();
    assert_eq!(api_id.len(), 10, "{api}");
    assert_eq!(api["ProtocolType"], "HTTP");

    let stage = run(
        &s,
        &["create-stage", "--api-id", &api_id, "--stage-name", "test"],
    )
    .await
    .json();
    assert_eq!(stage["StageName"], "test");

    let m = run(
        &s,
        &[
            "create-api-mapping",
            "--domain-name",
            "api.example.com",
            "--api-mapping-key",
            "v1",
            "--api-id",
            &api_id,
            "--stage",
            "test",
        ],
    )
    .await
    .json();
    assert_eq!(
        keys(&m),
        set(&[
            "ApiId",
            "ApiMappingId",
            "ApiMappingKey",
            "Stage",
            "CreateRevision",
            "ModRevision"
        ])
    );
    assert_eq!(m["ApiId"], api_id.as_str());
    assert_eq!(m["ApiMappingKey"], "v1");
    assert_eq!(m["Stage"], "test");
    let mapping_id = str_of(&m, "ApiMappingId").to_string();

    // The server holds exactly that mapping.
    let mut c = s.client().await;
    let all = all_mappings(&mut c, "api.example.com").await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].api_mapping_id, mapping_id);
    assert_eq!(all[0].api_mapping_key, "v1");
    assert_eq!(all[0].api_id, api_id);

    let got = run(
        &s,
        &[
            "get-api-mapping",
            "--domain-name",
            "API.Example.com",
            "--api-mapping-id",
            &mapping_id,
        ],
    )
    .await
    .json();
    assert_eq!(got, m);
    let list = run(
        &s,
        &["get-api-mappings", "--domain-name", "api.example.com"],
    )
    .await
    .json();
    assert_eq!(list, serde_json::json!({ "Items": [m] }), "no NextToken");
}

/// The README's CLI walk-through (the HTTP seed, then the WebSocket flow of the AWS guide), run
/// verbatim by bash with this `mapreg` first on the PATH and MAPREG_ENDPOINT set. The WebSocket
/// part needs the server's route selection expressions (SPEC 8.4).
#[tokio::test]
async fn readme_walkthrough_runs() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let section = &readme[readme.find("\n## CLI\n").expect("a CLI section")..];
    let start = section.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let end = start + section[start..].find("```").expect("end of the sh block");
    let script = &section[start..end];
    assert!(script.contains("mapreg create-api-mapping"), "{script}");
    assert!(script.contains("--query ApiId --output text"), "{script}");
    assert!(!script.contains("sed "), "no sed: {script}");
    for step in [
        "--protocol-type WEBSOCKET",
        "--route-selection-expression",
        "mapreg update-api-mapping",
        "mapreg get-api-mappings",
        "mapreg delete-api-mapping",
    ] {
        assert!(script.contains(step), "{step} in {script}");
    }

    let s = TestServer::start().await;
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_mapreg"));
    let dir = bin.parent().expect("binary dir");
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cmd.args(["-euo", "pipefail", "-c", script])
        .env("PATH", path)
        .env("MAPREG_ENDPOINT", s.endpoint())
        .env_remove("MAPREG_TOKEN")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(TIMEOUT, cmd.output())
        .await
        .expect("the walk-through finishes")
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut c = s.client().await;
    let mut apis = c
        .get_apis(GetApisRequest::default())
        .await
        .expect("list apis")
        .into_inner()
        .items;
    assert_eq!(apis.len(), 2);
    apis.sort_by_key(|a| a.name != "pets");
    assert!(
        stdout.contains(&format!("API id: {}\n", apis[0].api_id)),
        "{stdout}"
    );
    let ws = &apis[1];
    assert_eq!(ws.name, "chat");
    assert_eq!(ws.protocol_type, ProtocolType::Websocket as i32);
    assert_eq!(ws.route_selection_expression, "$request.body.action");
    assert!(
        stdout.contains(&format!("WebSocket API id: {}\n", ws.api_id)),
        "{stdout}"
    );
    // create-stage --output text: the stage's values on one line.
    assert!(stdout.contains("\tproduction\n"), "{stdout}");
    // create-domain-name --output yaml.
    assert!(stdout.contains("DomainName: ws.example.com\n"), "{stdout}");
    assert!(stdout.contains("- ApiGatewayDomainName: "), "{stdout}");
    // get-api-mappings --output table, then the updated key, then none left.
    assert!(stdout.contains("GetApiMappings"), "{stdout}");
    assert!(stdout.contains("| chat "), "{stdout}");
    assert!(stdout.contains("chat-v2\nchat-v2\n"), "{stdout}");
    assert!(
        stdout.contains("mappings left on ws.example.com: 0\n"),
        "{stdout}"
    );
    assert!(all_mappings(&mut c, "ws.example.com").await.is_empty());
    let mappings = all_mappings(&mut c, "api.example.com").await;
    assert_eq!(mappings.len(), 1);
    assert_eq!(
        (
            mappings[0].api_mapping_key.as_str(),
            mappings[0].api_id.as_str(),
            mappings[0].stage.as_str()
        ),
        ("v1", apis[0].api_id.as_str(), "test")
    );
}

/// The AWS CLI's keys and enum spellings; empty optional fields left out; RFC 3339 dates.
#[tokio::test]
async fn output_uses_aws_keys() {
    let s = TestServer::start().await;
    let api = run(
        &s,
        &[
            "create-api",
            "--name",
            "pets",
            "--protocol-type",
            "websocket",
            "--route-selection-expression",
            "$request.body.action",
            "--description",
            "Pet store",
            "--tags",
            "team=edge,env=dev",
        ],
    )
    .await
    .json();
    assert_eq!(
        keys(&api),
        set(&[
            "ApiId",
            "Name",
            "ProtocolType",
            "Description",
            "RouteSelectionExpression",
            "ApiKeySelectionExpression",
            "Tags",
            "CreatedDate",
            "CreateRevision",
            "ModRevision"
        ])
    );
    assert_eq!(api["ProtocolType"], "WEBSOCKET");
    assert_eq!(api["RouteSelectionExpression"], "$request.body.action");
    assert_eq!(
        api["ApiKeySelectionExpression"],
        "$request.header.x-api-key"
    );
    assert_eq!(
        api["Tags"],
        serde_json::json!({"team": "edge", "env": "dev"})
    );
    let created = str_of(&api, "CreatedDate");
    assert!(
        created.len() >= 20 && created.as_bytes()[10] == b'T' && created.ends_with('Z'),
        "RFC 3339: {created}"
    );
    let api_id = str_of(&api, "ApiId").to_string();
    let got = run(&s, &["get-api", "--api-id", &api_id]).await.json();
    assert_eq!(got, api);

    let bare = run(
        &s,
        &["create-api", "--name", "b", "--protocol-type", "REST"],
    )
    .await
    .json();
    assert!(bare.get("Description").is_none(), "{bare}");
    assert!(bare.get("Tags").is_none(), "{bare}");

    let stage = run(
        &s,
        &[
            "create-stage",
            "--api-id",
            &api_id,
            "--stage-name",
            "prod",
            "--description",
            "live",
            "--tags",
            r#"{"owner":"me"}"#,
        ],
    )
    .await
    .json();
    assert_eq!(
        keys(&stage),
        set(&[
            "StageName",
            "Description",
            "Tags",
            "CreatedDate",
            "LastUpdatedDate",
            "CreateRevision",
            "ModRevision"
        ])
    );
    let got = run(
        &s,
        &["get-stage", "--api-id", &api_id, "--stage-name", "prod"],
    )
    .await
    .json();
    assert_eq!(got, stage);

    let d = run(
        &s,
        &[
            "create-domain-name",
            "--domain-name",
            "Edge.Example.com",
            "--domain-name-configurations",
            "EndpointType=EDGE,SecurityPolicy=TLS_1_0,CertificateArn=arn:aws:acm:us-east-1:111122223333:certificate/abc",
        ],
    )
    .await
    .json();
    assert_eq!(
        keys(&d),
        set(&[
            "DomainName",
            "DomainNameConfigurations",
            "ApiMappingSelectionExpression",
            "CreatedDate",
            "CreateRevision",
            "ModRevision"
        ])
    );
    assert_eq!(d["DomainName"], "edge.example.com");
    assert_eq!(d["ApiMappingSelectionExpression"], "$request.basepath");
    let configs = d["DomainNameConfigurations"].as_array().expect("array");
    assert_eq!(configs.len(), 1);
    let c = &configs[0];
    assert_eq!(
        keys(c),
        set(&[
            "ApiGatewayDomainName",
            "CertificateArn",
            "DomainNameStatus",
            "EndpointType",
            "SecurityPolicy"
        ])
    );
    assert_eq!(c["EndpointType"], "EDGE");
    assert_eq!(c["SecurityPolicy"], "TLS_1_0");
    assert_eq!(c["DomainNameStatus"], "AVAILABLE");
    assert_eq!(
        c["CertificateArn"],
        "arn:aws:acm:us-east-1:111122223333:certificate/abc"
    );
    assert!(
        str_of(c, "ApiGatewayDomainName").ends_with(".execute-api.mapreg.internal"),
        "{c}"
    );

    // The JSON form of --domain-name-configurations, and the defaults.
    let j = run(
        &s,
        &[
            "create-domain-name",
            "--domain-name",
            "j.example.com",
            "--domain-name-configurations",
            r#"[{"SecurityPolicy":"TLS_1_0"}]"#,
        ],
    )
    .await
    .json();
    assert_eq!(j["DomainNameConfigurations"][0]["EndpointType"], "REGIONAL");
    assert_eq!(
        j["DomainNameConfigurations"][0]["SecurityPolicy"],
        "TLS_1_0"
    );
    assert!(
        j["DomainNameConfigurations"][0]
            .get("CertificateArn")
            .is_none(),
        "{j}"
    );

    // Four-space indentation, as the AWS CLI prints.
    let raw = run(&s, &["get-domain-name", "--domain-name", "j.example.com"]).await;
    assert!(
        raw.stdout.starts_with("{\n    \""),
        "indentation: {}",
        raw.stdout
    );
}

/// Every update and delete command, with --expected-revision.
#[tokio::test]
async fn updates_and_deletes() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    create_domain(&mut c, "api.example.com").await;
    let m = create_mapping(&mut c, "api.example.com", "v1", &api.api_id, "test").await;

    let a = run(
        &s,
        &[
            "update-api",
            "--api-id",
            &api.api_id,
            "--name",
            "renamed",
            "--expected-revision",
            &api.mod_revision.to_string(),
        ],
    )
    .await
    .json();
    assert_eq!(a["Name"], "renamed");
    assert!(a["ModRevision"].as_u64() > Some(api.mod_revision), "{a}");
    // A stale revision is a conflict.
    run(
        &s,
        &[
            "update-api",
            "--api-id",
            &api.api_id,
            "--description",
            "x",
            "--expected-revision",
            &api.mod_revision.to_string(),
        ],
    )
    .await
    .service_error("ConflictException", "UpdateApi");

    let st = run(
        &s,
        &[
            "update-stage",
            "--api-id",
            &api.api_id,
            "--stage-name",
            "test",
            "--description",
            "described",
        ],
    )
    .await
    .json();
    assert_eq!(st["Description"], "described");

    let d = run(
        &s,
        &[
            "update-domain-name",
            "--domain-name",
            "api.example.com",
            "--domain-name-configurations",
            "CertificateArn=arn:new",
        ],
    )
    .await
    .json();
    assert_eq!(
        d["DomainNameConfigurations"][0]["CertificateArn"],
        "arn:new"
    );
    assert_eq!(d["DomainNameConfigurations"][0]["EndpointType"], "REGIONAL");
    // An HTTP API is mapped: the domain cannot become EDGE.
    run(
        &s,
        &[
            "update-domain-name",
            "--domain-name",
            "api.example.com",
            "--domain-name-configurations",
            "EndpointType=EDGE",
        ],
    )
    .await
    .service_error("ConflictException", "UpdateDomainName");

    // --api-mapping-key "" makes the mapping the root one.
    let u = run(
        &s,
        &[
            "update-api-mapping",
            "--domain-name",
            "api.example.com",
            "--api-mapping-id",
            &m.api_mapping_id,
            "--api-mapping-key",
            "",
        ],
    )
    .await
    .json();
    assert_eq!(u["ApiMappingKey"], "");
    assert_eq!(u["Stage"], "test", "unchanged");

    // The stage is in use.
    let r = run(
        &s,
        &[
            "delete-stage",
            "--api-id",
            &api.api_id,
            "--stage-name",
            "test",
        ],
    )
    .await;
    r.service_error("ConflictException", "DeleteStage");
    assert!(r.stderr.contains("api.example.com"), "{r:?}");

    let del = run(
        &s,
        &[
            "delete-api-mapping",
            "--domain-name",
            "api.example.com",
            "--api-mapping-id",
            &m.api_mapping_id,
        ],
    )
    .await;
    assert_eq!((del.code, del.stdout.as_str()), (0, ""), "{del:?}");
    for args in [
        vec![
            "delete-stage",
            "--api-id",
            &api.api_id,
            "--stage-name",
            "test",
        ],
        vec!["delete-api", "--api-id", &api.api_id],
        vec!["delete-domain-name", "--domain-name", "api.example.com"],
    ] {
        let r = run(&s, &args).await;
        assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{args:?}: {r:?}");
    }
    run(&s, &["get-api", "--api-id", &api.api_id])
        .await
        .service_error("NotFoundException", "GetApi");
    run(&s, &["get-domain-name", "--domain-name", "api.example.com"])
        .await
        .service_error("NotFoundException", "GetDomainName");
}

/// `--output table`: an AWS-style box, the root mapping key shown as `(none)`.
#[tokio::test]
async fn table_output_shows_root_key_as_none() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    create_domain(&mut c, "api.example.com").await;
    let root = create_mapping(&mut c, "api.example.com", "", &api.api_id, "test").await;
    create_mapping(&mut c, "api.example.com", "v1", &api.api_id, "test").await;

    let r = run(
        &s,
        &[
            "get-api-mappings",
            "--domain-name",
            "api.example.com",
            "--output",
            "table",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines[1].contains("GetApiMappings"), "{}", r.stdout);
    let header: Vec<&str> = lines[3].split('|').map(str::trim).collect();
    assert_eq!(
        header,
        [
            "",
            "ApiMappingKey",
            "ApiId",
            "Stage",
            "ApiMappingId",
            "ModRevision",
            ""
        ]
    );
    let row: Vec<&str> = lines[5].split('|').map(str::trim).collect();
    assert_eq!(
        &row[1..5],
        [
            "(none)",
            api.api_id.as_str(),
            "test",
            root.api_mapping_id.as_str()
        ]
    );
    assert!(lines[6].starts_with("| v1 "), "{}", r.stdout);

    // JSON keeps the root key as "" (what the API returns).
    let j = run(
        &s,
        &["get-api-mappings", "--domain-name", "api.example.com"],
    )
    .await
    .json();
    assert_eq!(j["Items"][0]["ApiMappingKey"], "");
}

/// Lists follow every page; --max-items stops with a NextToken that --starting-token continues;
/// --no-paginate makes one request.
#[tokio::test]
async fn list_pagination() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    create_domain(&mut c, "api.example.com").await;
    for i in 0..150 {
        create_mapping(
            &mut c,
            "api.example.com",
            &format!("k{i:03}"),
            &api.api_id,
            "test",
        )
        .await;
    }
    let ids = |v: &Value| -> Vec<String> {
        v["Items"]
            .as_array()
            .expect("Items")
            .iter()
            .map(|m| str_of(m, "ApiMappingId").to_string())
            .collect()
    };
    let every: Vec<String> = all_mappings(&mut c, "api.example.com")
        .await
        .into_iter()
        .map(|m| m.api_mapping_id)
        .collect();
    assert_eq!(every.len(), 150);

    // Default page size is 100: two requests, all 150.
    let all = run(
        &s,
        &["get-api-mappings", "--domain-name", "api.example.com"],
    )
    .await
    .json();
    assert_eq!(ids(&all), every);
    assert!(all.get("NextToken").is_none(), "{}", all["NextToken"]);
    // Small pages too.
    let all = run(
        &s,
        &[
            "get-api-mappings",
            "--domain-name",
            "api.example.com",
            "--max-results",
            "7",
        ],
    )
    .await
    .json();
    assert_eq!(ids(&all), every);

    let first = run(
        &s,
        &[
            "get-api-mappings",
            "--domain-name",
            "api.example.com",
            "--max-items",
            "10",
        ],
    )
    .await
    .json();
    assert_eq!(ids(&first), every[..10]);
    let token = str_of(&first, "NextToken").to_string();
    let rest = run(
        &s,
        &[
            "get-api-mappings",
            "--domain-name",
            "api.example.com",
            "--starting-token",
            &token,
        ],
    )
    .await
    .json();
    assert_eq!(ids(&rest), every[10..]);
    assert!(rest.get("NextToken").is_none());

    let one = run(
        &s,
        &[
            "get-api-mappings",
            "--domain-name",
            "api.example.com",
            "--max-results",
            "50",
            "--no-paginate",
        ],
    )
    .await
    .json();
    assert_eq!(ids(&one), every[..50]);
    assert!(one.get("NextToken").is_some(), "{one}");

    // The other lists page the same way.
    for i in 0..3 {
        create_domain(&mut c, &format!("d{i}.example.com")).await;
        create_stage(&mut c, &api.api_id, &format!("s{i}")).await;
        create_api(&mut c, &format!("api{i}"), ProtocolType::Rest).await;
    }
    for (args, n) in [
        (vec!["get-domain-names"], 4),
        (vec!["get-stages", "--api-id", &api.api_id], 4),
        (vec!["get-apis"], 4),
    ] {
        let mut paged = args.clone();
        paged.extend(["--max-results", "1"]);
        let v = run(&s, &paged).await.json();
        assert_eq!(
            v["Items"].as_array().map(Vec::len),
            Some(n),
            "{args:?}: {v}"
        );
        let mut limited = args.clone();
        limited.extend(["--max-items", "3"]);
        let v = run(&s, &limited).await.json();
        assert_eq!(
            v["Items"].as_array().map(Vec::len),
            Some(3),
            "{args:?}: {v}"
        );
        assert!(v.get("NextToken").is_some(), "{args:?}: {v}");
    }

    // A page token of another list is the server's BadRequestException, naming the flag.
    let r = run(&s, &["get-apis", "--starting-token", &token]).await;
    r.service_error("BadRequestException", "GetApis");
    assert!(r.stderr.contains("--starting-token"), "{r:?}");
    assert!(!r.stderr.contains("next_token"), "{r:?}");
}

/// Service errors: the AWS CLI's message on stderr, exit 254.
#[tokio::test]
async fn service_errors_exit_254() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    create_domain(&mut c, "api.example.com").await;
    create_mapping(&mut c, "api.example.com", "v1", &api.api_id, "test").await;

    let create = [
        "create-api-mapping",
        "--domain-name",
        "api.example.com",
        "--api-mapping-key",
        "v1",
        "--api-id",
        &api.api_id,
        "--stage",
        "test",
    ];
    let r = run(&s, &create).await;
    r.service_error("ConflictException", "CreateApiMapping");
    assert!(
        r.stderr
            .contains("ApiMapping key already exists for this domain name"),
        "{r:?}"
    );

    let r = run(&s, &["get-api", "--api-id", "zzzzzzzzzz"]).await;
    r.service_error("NotFoundException", "GetApi");
    assert!(
        r.stderr
            .contains("Invalid API identifier specified: zzzzzzzzzz"),
        "{r:?}"
    );

    let r = run(
        &s,
        &[
            "create-api-mapping",
            "--domain-name",
            "api.example.com",
            "--api-mapping-key",
            "/v2",
            "--api-id",
            &api.api_id,
            "--stage",
            "test",
        ],
    )
    .await;
    r.service_error("BadRequestException", "CreateApiMapping");
    assert!(
        r.stderr.contains("--api-mapping-key"),
        "names the flag: {r:?}"
    );

    run(
        &s,
        &["get-api-mappings", "--domain-name", "nowhere.example.com"],
    )
    .await
    .service_error("NotFoundException", "GetApiMappings");

    // Nothing was written by the failures.
    assert_eq!(all_mappings(&mut c, "api.example.com").await.len(), 1);
}

/// A bad command line exits 252 (nothing sent); --help and --version exit 0.
#[tokio::test]
async fn bad_command_line_exits_252() {
    // An endpoint nobody listens on: a usage error must be reported before connecting.
    let endpoint = unused_endpoint().await;
    let e = ["--endpoint", endpoint.as_str()];
    for args in [
        vec!["get-apis", "--no-such-flag"],
        vec!["create-api", "--name", "x"],
        vec!["create-api", "--name", "x", "--protocol-type", "GRPC"],
        vec![
            "create-api",
            "--name",
            "x",
            "--protocol-type",
            "HTTP",
            "--tags",
            "novalue",
        ],
        vec![
            "create-domain-name",
            "--domain-name",
            "a.example.com",
            "--domain-name-configurations",
            "EndpointType=PRIVATE",
        ],
        vec!["get-apis", "--max-items", "0"],
        vec!["get-apis", "--max-results", "ten"],
        vec!["get-apis", "--max-results", "5000"],
        vec!["watch", "--kinds", "routes"],
        vec!["no-such-command"],
        vec![],
    ] {
        let mut all = args.clone();
        if !args.is_empty() {
            all.extend(e);
        }
        let r = run_env(&all, &[]).await;
        assert_eq!(r.code, 252, "{args:?}: {r:?}");
        assert!(r.stdout.is_empty(), "{args:?}: {r:?}");
        assert!(!r.stderr.is_empty(), "{args:?}: {r:?}");
    }
    for args in [
        vec!["--help"],
        vec!["--version"],
        vec!["create-api-mapping", "--help"],
    ] {
        let r = run_env(&args, &[]).await;
        assert_eq!(r.code, 0, "{args:?}: {r:?}");
        assert!(!r.stdout.is_empty(), "{args:?}: {r:?}");
    }
    let help = run_env(&["create-api-mapping", "--help"], &[]).await;
    for flag in [
        "--domain-name",
        "--api-mapping-key",
        "--api-id",
        "--stage",
        "--endpoint",
        "--token",
        "--output",
    ] {
        assert!(help.stdout.contains(flag), "{flag} in {}", help.stdout);
    }
}

/// An endpoint on loopback that refuses connections (a port just freed).
pub(crate) async fn unused_endpoint() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    format!("http://{addr}")
}

/// No server: exit 255 and a message naming the endpoint, from the flag or MAPREG_ENDPOINT.
#[tokio::test]
async fn unreachable_endpoint_exits_255() {
    let endpoint = unused_endpoint().await;
    let r = run_env(&["get-apis", "--endpoint", &endpoint], &[]).await;
    assert_eq!(r.code, 255, "{r:?}");
    assert!(
        r.stderr.contains(&format!(
            "Could not connect to the endpoint URL: \"{endpoint}\""
        )),
        "{r:?}"
    );
    assert!(r.stdout.is_empty());

    // host:port without a scheme, from the environment.
    let bare = endpoint.trim_start_matches("http://").to_string();
    let r = run_env(&["get-domain-names"], &[("MAPREG_ENDPOINT", bare.as_str())]).await;
    assert_eq!(r.code, 255, "{r:?}");
    assert!(r.stderr.contains(&endpoint), "{r:?}");
}

/// MAPREG_ENDPOINT and host:port endpoints reach the server too.
#[tokio::test]
async fn endpoint_from_environment() {
    let s = TestServer::start().await;
    let bare = s.addr.to_string();
    let r = run_env(
        &["create-api", "--name", "e", "--protocol-type", "HTTP"],
        &[("MAPREG_ENDPOINT", bare.as_str())],
    )
    .await;
    assert_eq!(r.json()["Name"], "e");
}

/// --token and MAPREG_TOKEN; the auth errors' AWS names.
#[tokio::test]
async fn tokens() {
    let s = TestServer::start_with_tokens().await;
    let endpoint = s.endpoint();
    let create = ["create-api", "--name", "t", "--protocol-type", "HTTP"];

    run(&s, &create)
        .await
        .service_error("UnauthorizedException", "CreateApi");
    let mut with_flag = create.to_vec();
    with_flag.extend(["--token", "nope"]);
    run(&s, &with_flag)
        .await
        .service_error("UnauthorizedException", "CreateApi");

    let mut with_flag = create.to_vec();
    with_flag.extend(["--token", "admin-a"]);
    let api = run(&s, &with_flag).await.json();
    let api_id = str_of(&api, "ApiId").to_string();

    let reader = [
        ("MAPREG_ENDPOINT", endpoint.as_str()),
        ("MAPREG_TOKEN", "reader-a"),
    ];
    run_env(&create, &reader)
        .await
        .service_error("AccessDeniedException", "CreateApi");
    let got = run_env(&["get-api", "--api-id", &api_id], &reader)
        .await
        .json();
    assert_eq!(got["ApiId"], api_id.as_str());

    // Another account does not see it.
    let other = [
        ("MAPREG_ENDPOINT", endpoint.as_str()),
        ("MAPREG_TOKEN", "admin-b"),
    ];
    run_env(&["get-api", "--api-id", &api_id], &other)
        .await
        .service_error("NotFoundException", "GetApi");
    // The flag wins over the environment.
    let r = run_env(
        &["get-api", "--api-id", &api_id, "--token", "admin-a"],
        &other,
    )
    .await;
    assert_eq!(r.json()["ApiId"], api_id.as_str());
}

/// resolve-route prints the mapping, the API, the matched domain and the remaining path.
#[tokio::test]
async fn resolve_route_output() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    create_domain(&mut c, "api.example.com").await;
    create_domain(&mut c, "*.example.com").await;
    let m = create_mapping(&mut c, "api.example.com", "v1", &api.api_id, "test").await;
    let w = create_mapping(&mut c, "*.example.com", "", &api.api_id, "test").await;

    let r = run(
        &s,
        &[
            "resolve-route",
            "--host",
            "API.Example.com:8443",
            "--path",
            "/v1/pets/5",
        ],
    )
    .await
    .json();
    assert_eq!(r["MatchedDomainName"], "api.example.com");
    assert_eq!(r["RemainingPath"], "/pets/5");
    assert_eq!(r["ApiMapping"]["ApiMappingId"], m.api_mapping_id.as_str());
    assert_eq!(r["ApiMapping"]["ApiMappingKey"], "v1");
    assert_eq!(r["ApiMapping"]["Stage"], "test");
    assert_eq!(r["Api"]["ApiId"], api.api_id.as_str());
    assert_eq!(r["Api"]["ProtocolType"], "HTTP");
    assert!(r["Revision"].as_u64().is_some_and(|v| v > 0), "{r}");

    let t = run(
        &s,
        &[
            "resolve-route",
            "--host",
            "shop.example.com",
            "--path",
            "/cart",
            "--output",
            "table",
        ],
    )
    .await;
    assert_eq!(t.code, 0, "{t:?}");
    let row: Vec<&str> = t
        .stdout
        .lines()
        .nth(5)
        .unwrap_or("")
        .split('|')
        .map(str::trim)
        .collect();
    assert_eq!(
        &row[1..7],
        [
            "*.example.com",
            "(none)",
            api.api_id.as_str(),
            "test",
            "/cart",
            w.api_mapping_id.as_str()
        ],
        "{}",
        t.stdout
    );

    run(
        &s,
        &["resolve-route", "--host", "other.test", "--path", "/"],
    )
    .await
    .service_error("NotFoundException", "ResolveRoute");
}

/// Reads the next JSON line of a running `mapreg watch`, waiting at most 30 s.
async fn next_line(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("a watch line within 30 s")
        .expect("read watch output")
        .expect("watch still running");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("JSON line {line:?}: {e}"))
}

/// The next line that is not a Progress message (at most 100 are skipped).
async fn next_change(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) -> Value {
    for _ in 0..100 {
        let v = next_line(lines).await;
        if v["Type"] != "Progress" {
            return v;
        }
    }
    panic!("only Progress lines");
}

/// watch prints one JSON line per message: the snapshot, its completion, then one ChangeSet
/// per write; flags narrow and resume it.
#[tokio::test]
async fn watch_prints_json_lines() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    create_domain(&mut c, "api.example.com").await;
    create_domain(&mut c, "other.example.com").await;

    let endpoint = s.endpoint();
    let mut child = command(&["watch", "--endpoint", &endpoint], &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mapreg watch");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();

    // The snapshot: every resource, then SnapshotComplete.
    let mut snapshot = Vec::new();
    let (complete, store_id) = loop {
        let v = next_line(&mut lines).await;
        match v["Type"].as_str() {
            Some("Snapshot") => {
                snapshot.extend(v["Resources"].as_array().cloned().unwrap_or_default())
            }
            Some("SnapshotComplete") => {
                break (
                    v["Revision"].as_u64().expect("Revision"),
                    v["StoreId"].clone(),
                );
            }
            other => panic!("unexpected {other:?} before SnapshotComplete: {v}"),
        }
        assert!(snapshot.len() <= 4, "{snapshot:?}");
    };
    assert_eq!(snapshot.len(), 4, "API, stage, two domains: {snapshot:?}");
    assert!(
        snapshot
            .iter()
            .any(|r| r["Api"]["ApiId"] == api.api_id.as_str())
    );

    // A write appears as one ChangeSet line.
    let m = create_mapping(&mut c, "api.example.com", "v1", &api.api_id, "test").await;
    let v = next_change(&mut lines).await;
    assert_eq!(v["Type"], "ChangeSet", "{v}");
    assert_eq!(v["Revision"], m.mod_revision);
    assert_eq!(v["StoreId"], store_id);
    let events = v["Events"].as_array().expect("Events");
    assert_eq!(events.len(), 1, "{v}");
    assert_eq!(events[0]["Type"], "PUT");
    let em = &events[0]["ApiMapping"];
    assert_eq!(em["ApiMappingId"], m.api_mapping_id.as_str());
    assert_eq!(em["ApiMappingKey"], "v1");
    assert_eq!(em["DomainName"], "api.example.com");
    assert!(m.mod_revision > complete);

    child.start_kill().expect("kill watch");
    tokio::time::timeout(TIMEOUT, child.wait())
        .await
        .expect("watch exits once killed")
        .expect("wait");

    // Resume after the snapshot, mapping events of one domain only, with progress.
    create_mapping(&mut c, "other.example.com", "v1", &api.api_id, "test").await;
    let d = c
        .delete_api_mapping(DeleteApiMappingRequest {
            domain_name: "api.example.com".into(),
            api_mapping_id: m.api_mapping_id.clone(),
            expected_revision: 0,
            ..Default::default()
        })
        .await
        .expect("delete")
        .into_inner();
    let start = (complete + 1).to_string();
    let store = store_id.as_str().expect("StoreId").to_string();
    let mut child = command(
        &[
            "watch",
            "--endpoint",
            &endpoint,
            "--start-revision",
            &start,
            "--kinds",
            "api-mapping",
            "--domain-names",
            "API.example.com",
            "--progress-interval-seconds",
            "1",
            "--store-id",
            &store,
        ],
        &[],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn mapreg watch");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let put = next_change(&mut lines).await;
    assert_eq!(put["Revision"], m.mod_revision, "{put}");
    assert_eq!(put["Events"][0]["Type"], "PUT");
    let del = next_change(&mut lines).await;
    assert_eq!(
        del["Revision"], d.revision,
        "other.example.com filtered out: {del}"
    );
    assert_eq!(del["Events"][0]["Type"], "DELETE");
    assert_eq!(
        del["Events"][0]["ApiMapping"]["ApiMappingId"],
        m.api_mapping_id.as_str()
    );
    let progress = next_line(&mut lines).await;
    assert_eq!(progress["Type"], "Progress", "{progress}");
    assert!(
        progress["Revision"].as_u64() >= Some(d.revision),
        "{progress}"
    );
    child.start_kill().expect("kill watch");
    tokio::time::timeout(TIMEOUT, child.wait())
        .await
        .expect("watch exits once killed")
        .expect("wait");

    // A store id of another data dir: the server ends the stream, exit 254.
    let r = run(
        &s,
        &[
            "watch",
            "--start-revision",
            "1",
            "--store-id",
            "not-this-store",
        ],
    )
    .await;
    r.service_error("BadRequestException", "Watch");
}
