//! The real AWS clients against the REST edge (`src/rest`): the `aws apigatewayv2` CLI runs the
//! guide's flow with `--endpoint-url`, and boto3 (driven through `tests/python/aws_sdk.py`)
//! checks every rule of SPEC section 2 as its AWS error, SigV4 refusals, roles, the change feed
//! and tags. Whatever they create is read back through gRPC and compared field by field.
//!
//! They need `aws` (pip `awscli`) and python3 with `boto3`. When one is missing the test says
//! so and passes, unless `CI` is set (`.ci/run` installs both): then it fails. Clients run with
//! an empty config and credentials file, so the host's AWS profile never leaks in; every child
//! process is bounded by a timeout and killed when dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use mapreg::auth::Role;
use mapreg::config::{AccessKeyConfig, Config};
use mapreg::pb::watch_response::Kind;
use mapreg::pb::*;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tonic::Code;

use crate::common::*;

/// How long one CLI command or one boto3 call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// An access key: (id, secret).
type Key = (&'static str, &'static str);

/// Admin of account A (111122223333, as the `admin-a` token).
const ADMIN_A: Key = ("AKIAMAPREGADMINA0001", "admin-a-secret/with+chars");
/// Reader of account A.
const READER_A: Key = ("AKIAMAPREGREADERA001", "reader-a-secret");
/// Admin of account B (444455556666).
const ADMIN_B: Key = ("AKIAMAPREGADMINB0001", "admin-b-secret");
/// Any credentials: what a dev-mode server accepts.
const ANY: Key = (
    "AKIAIOSFODNN7EXAMPLE",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

// ---- tools ---------------------------------------------------------------------------------

/// Whether `program args` runs and exits 0 (within 60 s).
async fn runs(program: &str, args: &[&str]) -> bool {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(60), cmd.status()).await {
        Ok(Ok(s)) => s.success(),
        _ => false,
    }
}

/// True when the tool is there. Otherwise: under CI a failure (CI installs it), else a skip
/// message and false.
async fn have(tool: &str) -> bool {
    let ok = match tool {
        "aws" => runs("aws", &["--version"]).await,
        "boto3" => runs("python3", &["-c", "import boto3"]).await,
        other => panic!("unknown tool {other}"),
    };
    if ok {
        return true;
    }
    let how = "python3 -m pip install awscli boto3 (.ci/run does)";
    if std::env::var_os("CI").is_some() {
        panic!("{tool} is not installed but CI is set: {how}");
    }
    eprintln!("skipping: {tool} is not installed ({how})");
    false
}

/// An empty file for AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE.
struct Isolated {
    _dir: tempfile::TempDir,
    empty: PathBuf,
}

impl Isolated {
    fn new() -> Isolated {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "").expect("write empty file");
        Isolated { _dir: dir, empty }
    }

    /// The environment of an AWS client signing with `key` (None: no credentials at all).
    fn apply(&self, cmd: &mut Command, key: Option<Key>) {
        for var in [
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_SECURITY_TOKEN",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_APIGATEWAYV2",
            "AWS_REGION",
            "AWS_CA_BUNDLE",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("AWS_CONFIG_FILE", &self.empty)
            .env("AWS_SHARED_CREDENTIALS_FILE", &self.empty)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_PAGER", "")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_RETRY_MODE", "standard")
            .env("AWS_MAX_ATTEMPTS", "1");
        if let Some((id, secret)) = key {
            cmd.env("AWS_ACCESS_KEY_ID", id)
                .env("AWS_SECRET_ACCESS_KEY", secret);
        }
    }
}

// ---- the aws CLI ---------------------------------------------------------------------------

/// A finished `aws` command.
struct Cli {
    what: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Cli {
    fn show(&self) -> String {
        format!(
            "`{}` exited {:?}\n--- stdout\n{}--- stderr\n{}",
            self.what, self.code, self.stdout, self.stderr
        )
    }

    /// stdout as JSON; fails the test unless the command succeeded.
    #[track_caller]
    fn json(&self) -> Value {
        assert_eq!(self.code, Some(0), "{}", self.show());
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.show()))
    }

    /// Asserts the command failed with AWS error `code` (the CLI prints `(Code)` on stderr).
    #[track_caller]
    fn assert_error(&self, code: &str) {
        assert_ne!(self.code, Some(0), "expected {code}: {}", self.show());
        assert!(
            self.stderr.contains(&format!("({code})")),
            "expected {code}: {}",
            self.show()
        );
    }
}

/// `aws apigatewayv2 ARGS --endpoint-url SERVER`, signed with `key`; `--output json` unless
/// ARGS choose an output.
async fn aws(iso: &Isolated, server: &TestServer, key: Key, args: &[&str]) -> Cli {
    let what = format!("aws apigatewayv2 {}", args.join(" "));
    let mut cmd = Command::new("aws");
    cmd.arg("apigatewayv2")
        .args(args)
        .args(["--endpoint-url", &server.endpoint()])
        .current_dir(repo())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if !args.contains(&"--output") {
        cmd.args(["--output", "json"]);
    }
    iso.apply(&mut cmd, Some(key));
    let out = tokio::time::timeout(CALL_TIMEOUT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("`{what}` still running after {CALL_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("cannot run `{what}`: {e}"));
    Cli {
        what,
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

// ---- boto3 ---------------------------------------------------------------------------------

/// `tests/python/aws_sdk.py`, running: one JSON call per line in, one JSON answer per line out.
struct Sdk {
    child: Child,
    stdin: ChildStdin,
    stdout: tokio::io::Lines<BufReader<ChildStdout>>,
    stderr_file: PathBuf,
    _dir: tempfile::TempDir,
    _iso: Isolated,
}

impl Sdk {
    async fn start(server: &TestServer) -> Sdk {
        let iso = Isolated::new();
        let dir = tempfile::tempdir().expect("tempdir");
        let stderr_file = dir.path().join("stderr");
        let stderr = std::fs::File::create(&stderr_file).expect("stderr file");
        let mut cmd = Command::new("python3");
        cmd.arg(repo().join("tests/python/aws_sdk.py"))
            .arg(server.endpoint())
            .current_dir(repo())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true);
        iso.apply(&mut cmd, None);
        let mut child = cmd.spawn().expect("spawn python3 tests/python/aws_sdk.py");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Sdk {
            child,
            stdin,
            stdout,
            stderr_file,
            _dir: dir,
            _iso: iso,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_file).unwrap_or_default()
    }

    async fn send(&mut self, line: Value) -> Value {
        let text = format!("{line}\n");
        if let Err(e) = self.stdin.write_all(text.as_bytes()).await {
            panic!("aws_sdk.py is gone ({e}); its stderr:\n{}", self.stderr());
        }
        let _ = self.stdin.flush().await;
        let next = tokio::time::timeout(CALL_TIMEOUT, self.stdout.next_line()).await;
        match next {
            Ok(Ok(Some(l))) => serde_json::from_str(&l)
                .unwrap_or_else(|e| panic!("aws_sdk.py answered non-JSON ({e}): {l}")),
            Ok(_) => panic!(
                "aws_sdk.py ended without answering {line}; its stderr:\n{}",
                self.stderr()
            ),
            Err(_) => panic!("aws_sdk.py did not answer {line} within {CALL_TIMEOUT:?}"),
        }
    }

    /// `op` with `params`, signed with `key` (None: unsigned).
    async fn call(&mut self, key: Option<Key>, op: &str, params: Value) -> Value {
        self.send(request(key, op, params)).await
    }

    /// `op` that must succeed with `status`; its body.
    #[track_caller]
    fn ok(answer: &Value, status: u64) -> Value {
        assert_eq!(answer["status"], status, "{answer}");
        assert!(answer.get("error").is_none(), "{answer}");
        answer["body"].clone()
    }

    /// Runs every request at once; the answers in request order.
    async fn parallel(&mut self, reqs: Vec<Value>) -> Vec<Value> {
        match self.send(json!({ "parallel": reqs })).await {
            Value::Array(v) => v,
            other => panic!("parallel answered {other}"),
        }
    }

    async fn finish(mut self) {
        drop(self.stdin);
        let status = tokio::time::timeout(CALL_TIMEOUT, self.child.wait()).await;
        let stderr = std::fs::read_to_string(&self.stderr_file).unwrap_or_default();
        match status {
            Ok(Ok(s)) => assert!(s.success(), "aws_sdk.py exited {s}; stderr:\n{stderr}"),
            other => panic!("aws_sdk.py did not exit: {other:?}; stderr:\n{stderr}"),
        }
    }
}

fn request(key: Option<Key>, op: &str, params: Value) -> Value {
    let mut r = json!({ "op": op, "params": params });
    if let Some((id, secret)) = key {
        r["key"] = json!(id);
        r["secret"] = json!(secret);
    }
    r
}

/// Asserts an answer is AWS error `code` with HTTP `status`, its `x-amzn-ErrorType` header
/// and (when given) a message containing `text`; returns the message.
#[track_caller]
fn assert_aws_error(answer: &Value, status: u64, code: &str, text: &str) -> String {
    assert_eq!(
        (&answer["status"], &answer["error"]["code"]),
        (&json!(status), &json!(code)),
        "{answer}"
    );
    assert_eq!(answer["error_type_header"], code, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(text),
        "message of {code} lacks {text:?}: {answer}"
    );
    message.to_string()
}

// ---- servers -------------------------------------------------------------------------------

/// The tokens of `common` plus access keys: [`ADMIN_A`], [`READER_A`], [`ADMIN_B`]; at most 2
/// multi-level mappings per domain, so rule 4's quota is reachable.
async fn key_server() -> (TestServer, tempfile::TempDir) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut config: Config = token_config(&tmp.path().join("data"));
    config.max_multi_level_mappings_per_domain = 2;
    config.access_keys = [
        (ADMIN_A, "111122223333", Role::Admin, Some("deployer")),
        (READER_A, "111122223333", Role::Reader, None),
        (ADMIN_B, "444455556666", Role::Admin, None),
    ]
    .into_iter()
    .map(|((id, secret), account, role, name)| AccessKeyConfig {
        access_key_id: id.into(),
        secret_access_key: secret.into(),
        account_id: account.into(),
        role,
        name: name.map(str::to_string),
    })
    .collect();
    (TestServer::start_with(config).await, tmp)
}

// ---- comparing AWS shapes with gRPC records ------------------------------------------------

/// A timestamp as AWS shows it (seconds, `Z`).
fn iso(t: &Option<prost_types::Timestamp>) -> Value {
    let t = t.as_ref().expect("timestamp set");
    json!(
        prost_types::Timestamp {
            seconds: t.seconds,
            nanos: 0
        }
        .to_string()
    )
}

fn protocol(p: i32) -> &'static str {
    match ProtocolType::try_from(p) {
        Ok(ProtocolType::Http) => "HTTP",
        Ok(ProtocolType::Websocket) => "WEBSOCKET",
        Ok(ProtocolType::Rest) => "REST",
        _ => "?",
    }
}

/// Asserts each `(member, value)` of an AWS shape `j` (PascalCase, as the CLI and boto3 show
/// it); `Value::Null` means the member must be absent.
#[track_caller]
fn assert_members(what: &str, j: &Value, want: &[(&str, Value)]) {
    for (k, v) in want {
        let got = j.get(*k).cloned().unwrap_or(Value::Null);
        assert_eq!(&got, v, "{what}: member {k} of {j}");
    }
}

fn tags(t: &std::collections::HashMap<String, String>) -> Value {
    json!(t)
}

#[track_caller]
fn assert_api(j: &Value, a: &Api) {
    let scheme = if a.protocol_type == ProtocolType::Websocket as i32 {
        "wss"
    } else {
        "https"
    };
    assert_members(
        "Api",
        j,
        &[
            ("ApiId", json!(a.api_id)),
            ("Name", json!(a.name)),
            ("ProtocolType", json!(protocol(a.protocol_type))),
            ("CreatedDate", iso(&a.created_date)),
            ("Tags", tags(&a.tags)),
            (
                "ApiEndpoint",
                json!(format!(
                    "{scheme}://{}.execute-api.mapreg.internal",
                    a.api_id
                )),
            ),
            (
                "Description",
                if a.description.is_empty() {
                    Value::Null
                } else {
                    json!(a.description)
                },
            ),
        ],
    );
}

#[track_caller]
fn assert_stage(j: &Value, s: &Stage) {
    assert_members(
        "Stage",
        j,
        &[
            ("StageName", json!(s.stage_name)),
            ("CreatedDate", iso(&s.created_date)),
            ("LastUpdatedDate", iso(&s.last_updated_date)),
            ("Tags", tags(&s.tags)),
        ],
    );
}

#[track_caller]
fn assert_domain(j: &Value, d: &DomainName, region: &str) {
    let c = &d.domain_name_configurations[0];
    let endpoint = if c.endpoint_type == EndpointType::Edge as i32 {
        "EDGE"
    } else {
        "REGIONAL"
    };
    let policy = if c.security_policy == SecurityPolicy::Tls10 as i32 {
        "TLS_1_0"
    } else {
        "TLS_1_2"
    };
    assert_members(
        "DomainName",
        j,
        &[
            ("DomainName", json!(d.domain_name)),
            (
                "DomainNameArn",
                json!(format!(
                    "arn:aws:apigateway:{region}::/domainnames/{}",
                    d.domain_name
                )),
            ),
            (
                "ApiMappingSelectionExpression",
                json!(d.api_mapping_selection_expression),
            ),
            ("Tags", tags(&d.tags)),
        ],
    );
    let cfgs = j["DomainNameConfigurations"].as_array().expect("configs");
    assert_eq!(cfgs.len(), 1, "{j}");
    assert_members(
        "DomainNameConfiguration",
        &cfgs[0],
        &[
            ("ApiGatewayDomainName", json!(c.api_gateway_domain_name)),
            ("EndpointType", json!(endpoint)),
            ("SecurityPolicy", json!(policy)),
            ("DomainNameStatus", json!("AVAILABLE")),
        ],
    );
}

#[track_caller]
fn assert_mapping(j: &Value, m: &ApiMapping) {
    assert_members(
        "ApiMapping",
        j,
        &[
            ("ApiMappingId", json!(m.api_mapping_id)),
            ("ApiMappingKey", json!(m.api_mapping_key)),
            ("ApiId", json!(m.api_id)),
            ("Stage", json!(m.stage)),
        ],
    );
}

async fn grpc_api(c: &mut Client, id: &str) -> Api {
    c.get_api(GetApiRequest {
        api_id: id.into(),
        ..Default::default()
    })
    .await
    .expect("gRPC GetApi")
    .into_inner()
}

async fn grpc_stage(c: &mut Client, id: &str, stage: &str) -> Stage {
    c.get_stage(GetStageRequest {
        api_id: id.into(),
        stage_name: stage.into(),
        ..Default::default()
    })
    .await
    .expect("gRPC GetStage")
    .into_inner()
}

async fn grpc_domain(c: &mut Client, domain: &str) -> Result<DomainName, tonic::Status> {
    c.get_domain_name(GetDomainNameRequest {
        domain_name: domain.into(),
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner())
}

async fn grpc_mapping(c: &mut Client, domain: &str, id: &str) -> Result<ApiMapping, tonic::Status> {
    c.get_api_mapping(GetApiMappingRequest {
        domain_name: domain.into(),
        api_mapping_id: id.into(),
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner())
}

fn str_of<'a>(j: &'a Value, member: &str) -> &'a str {
    j[member]
        .as_str()
        .unwrap_or_else(|| panic!("{member} is not a string in {j}"))
}

// ---- the CLI -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_runs_the_guide_flow_and_agrees_with_grpc() {
    if !have("aws").await {
        return;
    }
    let server = TestServer::start().await;
    let iso = Isolated::new();
    let mut c = server.client().await;

    // create-api, HTTP and WEBSOCKET.
    let http = aws(
        &iso,
        &server,
        ANY,
        &[
            "create-api",
            "--name",
            "orders",
            "--protocol-type",
            "HTTP",
            "--description",
            "the orders API",
            "--tags",
            "team=payments",
        ],
    )
    .await
    .json();
    let api_id = str_of(&http, "ApiId").to_string();
    assert_api(&http, &grpc_api(&mut c, &api_id).await);
    assert_eq!(http["Tags"], json!({"team": "payments"}));

    let ws = aws(
        &iso,
        &server,
        ANY,
        &[
            "create-api",
            "--name",
            "chat",
            "--protocol-type",
            "WEBSOCKET",
            "--route-selection-expression",
            "$request.body.action",
        ],
    )
    .await
    .json();
    let ws_id = str_of(&ws, "ApiId").to_string();
    let ws_grpc = grpc_api(&mut c, &ws_id).await;
    assert_api(&ws, &ws_grpc);
    assert_eq!(ws_grpc.protocol_type, ProtocolType::Websocket as i32);

    // create-stage.
    let stage = aws(
        &iso,
        &server,
        ANY,
        &["create-stage", "--api-id", &api_id, "--stage-name", "test"],
    )
    .await
    .json();
    assert_stage(&stage, &grpc_stage(&mut c, &api_id, "test").await);

    // create-domain-name (defaults: REGIONAL, TLS_1_2) and one more, for paging.
    let domain = aws(
        &iso,
        &server,
        ANY,
        &["create-domain-name", "--domain-name", "api.example.com"],
    )
    .await
    .json();
    let d = grpc_domain(&mut c, "api.example.com")
        .await
        .expect("domain");
    assert_domain(&domain, &d, "us-east-1");
    let other = aws(
        &iso,
        &server,
        ANY,
        &[
            "create-domain-name",
            "--domain-name",
            "legacy.example.com",
            "--domain-name-configurations",
            "EndpointType=EDGE,SecurityPolicy=TLS_1_0",
        ],
    )
    .await
    .json();
    let legacy = grpc_domain(&mut c, "legacy.example.com")
        .await
        .expect("legacy domain");
    assert_eq!(
        legacy.domain_name_configurations[0].endpoint_type,
        EndpointType::Edge as i32
    );
    assert_domain(&other, &legacy, "us-east-1");

    // The guide's command, verbatim but for the id and the endpoint.
    let m = aws(
        &iso,
        &server,
        ANY,
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
    let mapping_id = str_of(&m, "ApiMappingId").to_string();
    let m_grpc = grpc_mapping(&mut c, "api.example.com", &mapping_id)
        .await
        .expect("the CLI's mapping over gRPC");
    assert_mapping(&m, &m_grpc);
    assert_eq!(
        (m_grpc.api_mapping_key.as_str(), m_grpc.stage.as_str()),
        ("v1", "test")
    );

    // More mappings through gRPC; the CLI lists them all, in key order.
    for key in ["", "a", "b", "orders/v2"] {
        create_mapping(&mut c, "api.example.com", key, &api_id, "test").await;
    }
    let want = all_mappings(&mut c, "api.example.com").await;
    assert_eq!(want.len(), 5);

    let keys = aws(
        &iso,
        &server,
        ANY,
        &[
            "get-api-mappings",
            "--domain-name",
            "api.example.com",
            "--query",
            "Items[].ApiMappingKey",
        ],
    )
    .await
    .json();
    let want_keys: Vec<&str> = want.iter().map(|m| m.api_mapping_key.as_str()).collect();
    assert_eq!(keys, json!(want_keys));

    let text = aws(
        &iso,
        &server,
        ANY,
        &[
            "get-api-mappings",
            "--domain-name",
            "api.example.com",
            "--query",
            "Items[?ApiMappingKey=='v1'].ApiMappingId",
            "--output",
            "text",
        ],
    )
    .await;
    assert_eq!(text.code, Some(0), "{}", text.show());
    assert_eq!(text.stdout.trim(), mapping_id, "{}", text.show());

    // Pages of 2: GetApiMappings has no CLI paginator, so the caller passes the nextToken on.
    let mut walked = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    for _ in 0..10 {
        let mut args = vec![
            "get-api-mappings",
            "--domain-name",
            "api.example.com",
            "--max-results",
            "2",
        ];
        if let Some(t) = &token {
            args.extend(["--next-token", t.as_str()]);
        }
        let page = aws(&iso, &server, ANY, &args).await.json();
        pages += 1;
        let items = page["Items"].as_array().expect("Items").clone();
        assert!(items.len() <= 2, "{page}");
        walked.extend(items);
        match page.get("NextToken").and_then(Value::as_str) {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3, "5 mappings in pages of 2");
    assert_eq!(walked.len(), want.len());
    for (j, m) in walked.iter().zip(&want) {
        assert_mapping(j, m);
    }

    // get-apis and get-domain-names have CLI paginators: --page-size 1 makes the CLI follow
    // nextToken page by page and still print everything.
    let apis = aws(&iso, &server, ANY, &["get-apis", "--page-size", "1"])
        .await
        .json();
    let items = apis["Items"].as_array().expect("Items");
    let mut ids = vec![api_id.clone(), ws_id.clone()];
    ids.sort();
    let got: Vec<&str> = items.iter().map(|a| str_of(a, "ApiId")).collect();
    assert_eq!(got, ids, "{apis}");
    for a in items {
        assert_api(a, &grpc_api(&mut c, str_of(a, "ApiId")).await);
    }
    let first = aws(
        &iso,
        &server,
        ANY,
        &["get-domain-names", "--page-size", "1", "--max-items", "1"],
    )
    .await
    .json();
    assert_eq!(
        first["Items"][0]["DomainName"], "api.example.com",
        "{first}"
    );
    let cli_token = str_of(&first, "NextToken").to_string();
    let rest = aws(
        &iso,
        &server,
        ANY,
        &[
            "get-domain-names",
            "--page-size",
            "1",
            "--starting-token",
            &cli_token,
        ],
    )
    .await
    .json();
    assert_eq!(
        rest["Items"]
            .as_array()
            .expect("Items")
            .iter()
            .map(|d| str_of(d, "DomainName"))
            .collect::<Vec<_>>(),
        ["legacy.example.com"],
        "{rest}"
    );
    assert!(rest.get("NextToken").is_none(), "{rest}");

    // update-api-mapping: a new key; the CLI's answer is the record gRPC now has.
    let updated = aws(
        &iso,
        &server,
        ANY,
        &[
            "update-api-mapping",
            "--domain-name",
            "api.example.com",
            "--api-mapping-id",
            &mapping_id,
            "--api-id",
            &api_id,
            "--api-mapping-key",
            "v2",
        ],
    )
    .await
    .json();
    let now = grpc_mapping(&mut c, "api.example.com", &mapping_id)
        .await
        .expect("updated mapping");
    assert_eq!(now.api_mapping_key, "v2");
    assert_eq!(now.stage, "test", "an omitted stage is unchanged");
    assert!(now.mod_revision > m_grpc.mod_revision);
    assert_mapping(&updated, &now);

    // delete-api-mapping: no output, and gone.
    let del = aws(
        &iso,
        &server,
        ANY,
        &[
            "delete-api-mapping",
            "--domain-name",
            "api.example.com",
            "--api-mapping-id",
            &mapping_id,
        ],
    )
    .await;
    assert_eq!(del.code, Some(0), "{}", del.show());
    assert_eq!(del.stdout.trim(), "", "{}", del.show());
    let gone = grpc_mapping(&mut c, "api.example.com", &mapping_id).await;
    assert_eq!(gone.map_err(|s| s.code()).err(), Some(Code::NotFound));
    aws(
        &iso,
        &server,
        ANY,
        &[
            "get-api-mapping",
            "--domain-name",
            "api.example.com",
            "--api-mapping-id",
            &mapping_id,
        ],
    )
    .await
    .assert_error("NotFoundException");

    // delete-domain-name takes its mappings with it.
    let del = aws(
        &iso,
        &server,
        ANY,
        &["delete-domain-name", "--domain-name", "api.example.com"],
    )
    .await;
    assert_eq!(del.code, Some(0), "{}", del.show());
    let gone = grpc_domain(&mut c, "api.example.com").await;
    assert_eq!(gone.map_err(|s| s.code()).err(), Some(Code::NotFound));
    aws(
        &iso,
        &server,
        ANY,
        &["get-api-mappings", "--domain-name", "api.example.com"],
    )
    .await
    .assert_error("NotFoundException");
    // Nothing points at the API now: it can go.
    let del = aws(&iso, &server, ANY, &["delete-api", "--api-id", &api_id]).await;
    assert_eq!(del.code, Some(0), "{}", del.show());
    drop(c);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_websocket_selection_expressions_round_trip() {
    if !have("aws").await {
        return;
    }
    let server = TestServer::start().await;
    let iso = Isolated::new();
    let mut c = server.client().await;
    let ws = aws(
        &iso,
        &server,
        ANY,
        &[
            "create-api",
            "--name",
            "chat",
            "--protocol-type",
            "WEBSOCKET",
            "--route-selection-expression",
            "$request.body.action",
            "--api-key-selection-expression",
            "$request.header.x-api-key",
        ],
    )
    .await
    .json();
    let id = str_of(&ws, "ApiId").to_string();
    let g = grpc_api(&mut c, &id).await;
    assert_eq!(g.route_selection_expression, "$request.body.action");
    assert_eq!(g.api_key_selection_expression, "$request.header.x-api-key");
    assert_eq!(ws["RouteSelectionExpression"], "$request.body.action");
    assert_eq!(ws["ApiKeySelectionExpression"], "$request.header.x-api-key");

    let up = aws(
        &iso,
        &server,
        ANY,
        &[
            "update-api",
            "--api-id",
            &id,
            "--route-selection-expression",
            "$request.body.type",
        ],
    )
    .await
    .json();
    let g = grpc_api(&mut c, &id).await;
    assert_eq!(g.route_selection_expression, "$request.body.type");
    assert_eq!(up["RouteSelectionExpression"], "$request.body.type");
    let got = aws(&iso, &server, ANY, &["get-api", "--api-id", &id])
        .await
        .json();
    assert_eq!(got["RouteSelectionExpression"], "$request.body.type");
    assert_eq!(
        got["ApiKeySelectionExpression"],
        "$request.header.x-api-key"
    );
    drop(c);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_signs_with_access_keys_and_shows_aws_errors() {
    if !have("aws").await {
        return;
    }
    let (server, _tmp) = key_server().await;
    let iso = Isolated::new();
    let created = aws(
        &iso,
        &server,
        ADMIN_A,
        &["create-api", "--name", "signed", "--protocol-type", "HTTP"],
    )
    .await
    .json();
    let id = str_of(&created, "ApiId").to_string();
    // The token of the same account sees it over gRPC.
    let mut c = server.client_with("admin-a").await;
    assert_api(&created, &grpc_api(&mut c, &id).await);

    let wrong = (ADMIN_A.0, "not-the-secret");
    aws(&iso, &server, wrong, &["get-apis"])
        .await
        .assert_error("InvalidSignatureException");
    aws(&iso, &server, ("AKIAMAPREGUNKNOWN001", "x"), &["get-apis"])
        .await
        .assert_error("UnrecognizedClientException");
    let read = aws(&iso, &server, READER_A, &["get-api", "--api-id", &id])
        .await
        .json();
    assert_eq!(read["ApiId"], json!(id));
    aws(
        &iso,
        &server,
        READER_A,
        &["create-api", "--name", "no", "--protocol-type", "HTTP"],
    )
    .await
    .assert_error("AccessDeniedException");
    // Another account does not see it.
    aws(&iso, &server, ADMIN_B, &["get-api", "--api-id", &id])
        .await
        .assert_error("NotFoundException");
    drop(c);
    server.stop().await;
}

// ---- boto3 ---------------------------------------------------------------------------------

/// An API of `protocol` (WEBSOCKET ones with a route selection expression) and its stage,
/// made through boto3; the API id.
async fn sdk_api(sdk: &mut Sdk, key: Key, name: &str, protocol: &str, stage: &str) -> String {
    let mut params = json!({"Name": name, "ProtocolType": protocol});
    if protocol == "WEBSOCKET" {
        params["RouteSelectionExpression"] = json!("$request.body.action");
    }
    let api = Sdk::ok(&sdk.call(Some(key), "create_api", params).await, 201);
    let id = str_of(&api, "ApiId").to_string();
    let s = sdk
        .call(
            Some(key),
            "create_stage",
            json!({"ApiId": id, "StageName": stage}),
        )
        .await;
    Sdk::ok(&s, 201);
    id
}

async fn sdk_domain(sdk: &mut Sdk, key: Key, domain: &str, cfg: Option<(&str, &str)>) {
    let mut params = json!({ "DomainName": domain });
    if let Some((endpoint, policy)) = cfg {
        params["DomainNameConfigurations"] =
            json!([{"EndpointType": endpoint, "SecurityPolicy": policy}]);
    }
    let d = sdk.call(Some(key), "create_domain_name", params).await;
    Sdk::ok(&d, 201);
}

fn mapping(domain: &str, key: &str, api: &str, stage: &str) -> Value {
    json!({"DomainName": domain, "ApiMappingKey": key, "ApiId": api, "Stage": stage})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_surfaces_every_rule_as_its_aws_error() {
    if !have("boto3").await {
        return;
    }
    let (server, _tmp) = key_server().await;
    let mut sdk = Sdk::start(&server).await;
    let a = Some(ADMIN_A);
    let http = sdk_api(&mut sdk, ADMIN_A, "http", "HTTP", "test").await;
    let rest = sdk_api(&mut sdk, ADMIN_A, "rest", "REST", "prod").await;
    let ws = sdk_api(&mut sdk, ADMIN_A, "ws", "WEBSOCKET", "live").await;
    let b_api = sdk_api(&mut sdk, ADMIN_B, "theirs", "HTTP", "test").await;
    sdk_domain(&mut sdk, ADMIN_A, "api.example.com", None).await;
    sdk_domain(&mut sdk, ADMIN_A, "ws.example.com", None).await;
    sdk_domain(
        &mut sdk,
        ADMIN_A,
        "edge.example.com",
        Some(("EDGE", "TLS_1_2")),
    )
    .await;
    let create = "create_api_mapping";
    let ok = Sdk::ok(
        &sdk.call(a, create, mapping("api.example.com", "v1", &http, "test"))
            .await,
        201,
    );
    let v1_id = str_of(&ok, "ApiMappingId").to_string();
    Sdk::ok(
        &sdk.call(a, create, mapping("ws.example.com", "chat", &ws, "live"))
            .await,
        201,
    );

    // 1. Prerequisites: NotFoundException 404, with the model's resourceType.
    let r = sdk
        .call(
            a,
            create,
            mapping("nowhere.example.com", "x", &http, "test"),
        )
        .await;
    assert_aws_error(
        &r,
        404,
        "NotFoundException",
        "Invalid domain name identifier specified",
    );
    assert_eq!(r["error"]["fields"]["ResourceType"], "DomainName", "{r}");
    let r = sdk
        .call(
            a,
            create,
            mapping("api.example.com", "x", "nope123456", "test"),
        )
        .await;
    assert_aws_error(
        &r,
        404,
        "NotFoundException",
        "Invalid API identifier specified: nope123456",
    );
    assert_eq!(r["error"]["fields"]["ResourceType"], "Api", "{r}");
    let r = sdk
        .call(a, create, mapping("api.example.com", "x", &http, "nostage"))
        .await;
    assert_aws_error(
        &r,
        404,
        "NotFoundException",
        "Invalid stage identifier specified: nostage",
    );
    let r = sdk
        .call(
            a,
            "create_stage",
            json!({"ApiId": "nope123456", "StageName": "s"}),
        )
        .await;
    assert_aws_error(&r, 404, "NotFoundException", "nope123456");

    // 2. Same account: the other account's objects are not there.
    let r = sdk
        .call(
            Some(ADMIN_B),
            create,
            mapping("api.example.com", "b", &b_api, "test"),
        )
        .await;
    assert_aws_error(&r, 404, "NotFoundException", "domain name");
    let r = sdk
        .call(a, create, mapping("api.example.com", "b", &b_api, "test"))
        .await;
    assert_aws_error(&r, 404, "NotFoundException", &b_api);

    // 3. Key syntax: BadRequestException 400.
    for bad in ["bad key", "/v1", "v1/", "a//b", "caf\u{e9}"] {
        let r = sdk
            .call(a, create, mapping("api.example.com", bad, &http, "test"))
            .await;
        assert_aws_error(&r, 400, "BadRequestException", "");
    }

    // 4. Multi-level keys: not for WebSocket, not on EDGE, and at most 2 per domain here.
    let r = sdk
        .call(a, create, mapping("ws.example.com", "chat/v2", &ws, "live"))
        .await;
    assert_aws_error(&r, 400, "BadRequestException", "");
    let r = sdk
        .call(
            a,
            create,
            mapping("edge.example.com", "r/v1", &rest, "prod"),
        )
        .await;
    assert_aws_error(&r, 400, "BadRequestException", "");
    for key in ["m/1", "m/2"] {
        let r = sdk
            .call(a, create, mapping("api.example.com", key, &http, "test"))
            .await;
        Sdk::ok(&r, 201);
    }
    let r = sdk
        .call(a, create, mapping("api.example.com", "m/3", &http, "test"))
        .await;
    assert_aws_error(&r, 400, "BadRequestException", "");

    // 5. Unique key (and unique domain name): ConflictException 409.
    let r = sdk
        .call(a, create, mapping("api.example.com", "v1", &rest, "prod"))
        .await;
    assert_aws_error(
        &r,
        409,
        "ConflictException",
        "ApiMapping key already exists for this domain name",
    );
    let r = sdk
        .call(
            Some(ADMIN_B),
            "create_domain_name",
            json!({"DomainName": "API.example.com"}),
        )
        .await;
    assert_aws_error(&r, 409, "ConflictException", "");

    // 6. Protocol families: a WebSocket API next to HTTP ones, and the reverse. AWS answers
    // BadRequestException.
    let r = sdk
        .call(a, create, mapping("api.example.com", "chat", &ws, "live"))
        .await;
    assert_aws_error(&r, 400, "BadRequestException", "WEBSOCKET");
    let r = sdk
        .call(a, create, mapping("ws.example.com", "h", &http, "test"))
        .await;
    assert_aws_error(&r, 400, "BadRequestException", "");

    // 7. Endpoint and TLS: HTTP not on EDGE; a domain with HTTP mappings cannot become EDGE.
    let r = sdk
        .call(a, create, mapping("edge.example.com", "h", &http, "test"))
        .await;
    assert_aws_error(&r, 400, "BadRequestException", "");
    Sdk::ok(
        &sdk.call(a, create, mapping("edge.example.com", "r", &rest, "prod"))
            .await,
        201,
    );
    let r = sdk
        .call(
            a,
            "update_domain_name",
            json!({"DomainName": "api.example.com",
                   "DomainNameConfigurations": [{"EndpointType": "EDGE"}]}),
        )
        .await;
    assert_aws_error(&r, 400, "BadRequestException", "");

    // 8. Deletes that would leave a mapping dangling: BadRequestException, as AWS.
    let r = sdk.call(a, "delete_api", json!({"ApiId": http})).await;
    assert_aws_error(
        &r,
        400,
        "BadRequestException",
        &format!("Deleting API {http} failed"),
    );
    let r = sdk
        .call(
            a,
            "delete_stage",
            json!({"ApiId": http, "StageName": "test"}),
        )
        .await;
    assert_aws_error(&r, 400, "BadRequestException", "api.example.com");
    // ... and DeleteDomainName cascades.
    let r = sdk
        .call(
            a,
            "delete_domain_name",
            json!({"DomainName": "ws.example.com"}),
        )
        .await;
    assert_eq!(r["status"], 204, "{r}");
    let r = sdk
        .call(
            a,
            "get_api_mappings",
            json!({"DomainName": "ws.example.com"}),
        )
        .await;
    assert_aws_error(&r, 404, "NotFoundException", "");

    // 9. Updates re-check the rules; an omitted member is unchanged; "" is the root.
    let update = |key: Option<&str>, stage: Option<&str>| {
        let mut p = json!({"DomainName": "api.example.com", "ApiMappingId": v1_id, "ApiId": http});
        if let Some(k) = key {
            p["ApiMappingKey"] = json!(k);
        }
        if let Some(s) = stage {
            p["Stage"] = json!(s);
        }
        p
    };
    let r = sdk
        .call(a, "update_api_mapping", update(Some("m/1"), None))
        .await;
    assert_aws_error(&r, 409, "ConflictException", "");
    let r = sdk
        .call(a, "update_api_mapping", update(None, Some("nostage")))
        .await;
    assert_aws_error(&r, 404, "NotFoundException", "nostage");
    let r = sdk
        .call(a, "update_api_mapping", update(Some(""), None))
        .await;
    let root = Sdk::ok(&r, 200);
    assert_eq!(
        (&root["ApiMappingKey"], &root["Stage"]),
        (&json!(""), &json!("test")),
        "{root}"
    );
    let mut c = server.client_with("admin-a").await;
    let m = grpc_mapping(&mut c, "api.example.com", &v1_id)
        .await
        .expect("mapping");
    assert_mapping(&root, &m);
    assert_eq!(r["revision"], json!(m.mod_revision.to_string()), "{r}");

    // 10. Racing creates of one key: exactly one wins, the others are ConflictException.
    let racers: Vec<Value> = (0..8)
        .map(|_| request(a, create, mapping("api.example.com", "race", &http, "test")))
        .collect();
    let answers = sdk.parallel(racers).await;
    let won = answers.iter().filter(|r| r["status"] == 201).count();
    assert_eq!(won, 1, "{answers:?}");
    for r in answers.iter().filter(|r| r["status"] != 201) {
        assert_aws_error(r, 409, "ConflictException", "");
    }
    let keys: Vec<String> = all_mappings(&mut c, "api.example.com")
        .await
        .into_iter()
        .map(|m| m.api_mapping_key)
        .collect();
    assert_eq!(keys, ["", "m/1", "m/2", "race"]);
    sdk.finish().await;
    drop(c);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_signature_and_role_refusals_are_aws_errors() {
    if !have("boto3").await {
        return;
    }
    let (server, _tmp) = key_server().await;
    let mut sdk = Sdk::start(&server).await;
    let id = sdk_api(&mut sdk, ADMIN_A, "mine", "HTTP", "test").await;

    let r = sdk
        .call(Some((ADMIN_A.0, "wrong")), "get_apis", json!({}))
        .await;
    assert_aws_error(
        &r,
        403,
        "InvalidSignatureException",
        "signature we calculated does not match",
    );
    let r = sdk
        .call(Some(("AKIAMAPREGNOBODY0001", "x")), "get_apis", json!({}))
        .await;
    assert_aws_error(&r, 403, "UnrecognizedClientException", "");
    let r = sdk.call(None, "get_apis", json!({})).await;
    assert_aws_error(&r, 403, "MissingAuthenticationTokenException", "");

    // A reader reads its account and may not write.
    let r = sdk
        .call(Some(READER_A), "get_api", json!({"ApiId": id}))
        .await;
    assert_eq!(Sdk::ok(&r, 200)["ApiId"], json!(id));
    for (op, params) in [
        ("create_api", json!({"Name": "x", "ProtocolType": "HTTP"})),
        ("delete_api", json!({"ApiId": id})),
        ("create_stage", json!({"ApiId": id, "StageName": "s2"})),
        (
            "tag_resource",
            json!({"ResourceArn": format!("arn:aws:apigateway:us-east-1::/apis/{id}"), "Tags": {"a": "b"}}),
        ),
    ] {
        let r = sdk.call(Some(READER_A), op, params).await;
        assert_aws_error(&r, 403, "AccessDeniedException", "");
    }
    // Another account: as if absent.
    let r = sdk
        .call(Some(ADMIN_B), "get_api", json!({"ApiId": id}))
        .await;
    assert_aws_error(&r, 404, "NotFoundException", "");
    let r = sdk.call(Some(ADMIN_B), "get_apis", json!({})).await;
    assert_eq!(Sdk::ok(&r, 200)["Items"], json!([]), "{r}");

    // None of the refused calls wrote anything.
    let mut c = server.client_with("admin-a").await;
    let seen = visible_state(&mut c).await;
    assert_eq!(seen.apis.len(), 1, "{seen:?}");
    assert_eq!(seen.stages.len(), 1, "{seen:?}");
    assert!(seen.apis[0].tags.is_empty(), "{seen:?}");
    sdk.finish().await;
    drop(c);
    server.stop().await;
}

/// One REST write and what the feed must show for it: (revision, [(type, kind, id)]).
type Expected = (u64, Vec<(EventType, &'static str, String)>);

fn event_of(e: &Event) -> (EventType, &'static str, String) {
    use mapreg::pb::resource::Resource as R;
    let t = EventType::try_from(e.r#type).unwrap_or(EventType::Unspecified);
    match e.resource.as_ref().and_then(|r| r.resource.as_ref()) {
        Some(R::Api(a)) => (t, "api", a.api_id.clone()),
        Some(R::Stage(s)) => (t, "stage", s.stage_name.clone()),
        Some(R::DomainName(d)) => (t, "domain", d.domain_name.clone()),
        Some(R::ApiMapping(m)) => (t, "mapping", m.api_mapping_id.clone()),
        None => (t, "none", String::new()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_writes_show_up_on_a_grpc_watch_in_revision_order() {
    if !have("boto3").await {
        return;
    }
    let (server, _tmp) = key_server().await;
    let mut feed = server.feed_client(Some("admin-a")).await;
    // A fresh store: revision 1 is the first write; the stream waits for it.
    let mut stream = watch(
        &mut feed,
        WatchRequest {
            start_revision: 1,
            ..Default::default()
        },
    )
    .await
    .expect("watch");
    let mut sdk = Sdk::start(&server).await;
    let a = Some(ADMIN_A);
    let mut expected: Vec<Expected> = Vec::new();
    let rev = |r: &Value| -> u64 {
        r["revision"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no x-mapreg-revision on {r}"))
    };
    use EventType::{Delete, Put};

    let r = sdk
        .call(
            a,
            "create_api",
            json!({"Name": "n", "ProtocolType": "HTTP"}),
        )
        .await;
    let api = str_of(&Sdk::ok(&r, 201), "ApiId").to_string();
    expected.push((rev(&r), vec![(Put, "api", api.clone())]));
    let r = sdk
        .call(
            a,
            "create_stage",
            json!({"ApiId": api, "StageName": "test"}),
        )
        .await;
    Sdk::ok(&r, 201);
    expected.push((rev(&r), vec![(Put, "stage", "test".into())]));
    let r = sdk
        .call(
            a,
            "create_domain_name",
            json!({"DomainName": "feed.example.com"}),
        )
        .await;
    Sdk::ok(&r, 201);
    expected.push((rev(&r), vec![(Put, "domain", "feed.example.com".into())]));
    let mut mapping_ids = Vec::new();
    for key in ["v1", "v2"] {
        let r = sdk
            .call(
                a,
                "create_api_mapping",
                mapping("feed.example.com", key, &api, "test"),
            )
            .await;
        let id = str_of(&Sdk::ok(&r, 201), "ApiMappingId").to_string();
        expected.push((rev(&r), vec![(Put, "mapping", id.clone())]));
        mapping_ids.push(id);
    }
    let r = sdk
        .call(
            a,
            "update_api_mapping",
            json!({"DomainName": "feed.example.com", "ApiMappingId": mapping_ids[0],
                   "ApiId": api, "ApiMappingKey": "v0"}),
        )
        .await;
    Sdk::ok(&r, 200);
    expected.push((rev(&r), vec![(Put, "mapping", mapping_ids[0].clone())]));
    let arn = format!("arn:aws:apigateway:us-east-1::/apis/{api}");
    let r = sdk
        .call(
            a,
            "tag_resource",
            json!({"ResourceArn": arn, "Tags": {"team": "x"}}),
        )
        .await;
    assert_eq!(r["status"], 201, "{r}");
    expected.push((rev(&r), vec![(Put, "api", api.clone())]));
    // DeleteDomainName: one revision, the domain and both mappings deleted in it.
    let r = sdk
        .call(
            a,
            "delete_domain_name",
            json!({"DomainName": "feed.example.com"}),
        )
        .await;
    assert_eq!(r["status"], 204, "{r}");
    let last = rev(&r);
    let mut cascade: Vec<(EventType, &'static str, String)> = mapping_ids
        .iter()
        .map(|id| (Delete, "mapping", id.clone()))
        .collect();
    cascade.push((Delete, "domain", "feed.example.com".into()));
    expected.push((last, cascade));
    sdk.finish().await;

    let revisions: Vec<u64> = expected.iter().map(|e| e.0).collect();
    assert!(
        revisions.windows(2).all(|w| w[0] < w[1]),
        "REST writes took increasing revisions: {revisions:?}"
    );

    // The feed: exactly those revisions, in that order, with those events.
    let mut seen = Vec::new();
    for _ in 0..1000 {
        let m = next_message(&mut stream, 30)
            .await
            .expect("watch message")
            .expect("stream open");
        if let Some(Kind::ChangeSet(cs)) = &m.kind {
            let mut events: Vec<_> = cs.events.iter().map(event_of).collect();
            if m.revision == last {
                // The cascade's order among its events is the feed's; compare as a set.
                events.sort_by(|x, y| (x.1, &x.2).cmp(&(y.1, &y.2)));
            }
            seen.push((m.revision, events));
            if m.revision >= last {
                break;
            }
        }
    }
    if let Some(e) = expected.last_mut() {
        e.1.sort_by(|x, y| (x.1, &x.2).cmp(&(y.1, &y.2)));
    }
    assert_eq!(seen, expected);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_tags_round_trip_and_other_parts_of_api_gateway_are_refused_cleanly() {
    if !have("boto3").await {
        return;
    }
    let server = TestServer::start().await;
    let mut sdk = Sdk::start(&server).await;
    let k = Some(ANY);
    let r = sdk
        .call(
            k,
            "create_api",
            json!({"Name": "t", "ProtocolType": "HTTP", "Tags": {"team": "a"}}),
        )
        .await;
    let api = str_of(&Sdk::ok(&r, 201), "ApiId").to_string();
    let r = sdk
        .call(
            k,
            "create_stage",
            json!({"ApiId": api, "StageName": "$default", "Tags": {"s": "1"}}),
        )
        .await;
    Sdk::ok(&r, 201);
    sdk_domain(&mut sdk, ANY, "*.example.com", None).await;
    let arns = [
        format!("arn:aws:apigateway:us-east-1::/apis/{api}"),
        format!("arn:aws:apigateway:us-east-1::/apis/{api}/stages/$default"),
        "arn:aws:apigateway:us-east-1::/domainnames/*.example.com".to_string(),
    ];
    let initial = [json!({"team": "a"}), json!({"s": "1"}), json!({})];
    for (arn, tags) in arns.iter().zip(&initial) {
        let r = sdk.call(k, "get_tags", json!({"ResourceArn": arn})).await;
        assert_eq!(Sdk::ok(&r, 200)["Tags"], *tags, "{arn}: {r}");
        let r = sdk
            .call(
                k,
                "tag_resource",
                json!({"ResourceArn": arn, "Tags": {"env": "prod", "owner": "x y"}}),
            )
            .await;
        assert_eq!((r["status"].clone(), r.get("error")), (json!(201), None));
        let r = sdk
            .call(
                k,
                "untag_resource",
                json!({"ResourceArn": arn, "TagKeys": ["owner", "team", "s"]}),
            )
            .await;
        assert_eq!(r["status"], 204, "{r}");
        let r = sdk.call(k, "get_tags", json!({"ResourceArn": arn})).await;
        assert_eq!(Sdk::ok(&r, 200)["Tags"], json!({"env": "prod"}), "{arn}");
    }
    // gRPC sees the same tags.
    let mut c = server.client().await;
    let want = std::collections::HashMap::from([("env".to_string(), "prod".to_string())]);
    assert_eq!(grpc_api(&mut c, &api).await.tags, want);
    assert_eq!(grpc_stage(&mut c, &api, "$default").await.tags, want);
    assert_eq!(
        grpc_domain(&mut c, "*.example.com")
            .await
            .expect("domain")
            .tags,
        want
    );
    let r = sdk
        .call(
            k,
            "get_tags",
            json!({"ResourceArn": "arn:aws:apigateway:us-east-1::/apis/nope123456"}),
        )
        .await;
    assert_aws_error(&r, 404, "NotFoundException", "");

    // Routes, integrations, authorizers, VPC links, imports: clean BadRequestExceptions.
    for (op, params) in [
        ("get_routes", json!({"ApiId": api})),
        ("create_route", json!({"ApiId": api, "RouteKey": "GET /x"})),
        (
            "create_integration",
            json!({"ApiId": api, "IntegrationType": "HTTP_PROXY"}),
        ),
        ("get_authorizers", json!({"ApiId": api})),
        ("get_vpc_links", json!({})),
        ("import_api", json!({"Body": "{}"})),
        (
            "delete_access_log_settings",
            json!({"ApiId": api, "StageName": "$default"}),
        ),
    ] {
        let r = sdk.call(k, op, params).await;
        assert_aws_error(&r, 400, "BadRequestException", "not supported by mapreg");
    }
    // The server is fine afterwards.
    let r = sdk.call(k, "get_apis", json!({})).await;
    assert_eq!(Sdk::ok(&r, 200)["Items"].as_array().map(Vec::len), Some(1));
    sdk.finish().await;
    drop(c);
    server.stop().await;
}
