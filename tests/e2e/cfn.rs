//! CloudFormation stacks: `mapreg deploy`, `delete-stack` and `describe-stack-resources` run
//! as the built binary against a live server, checked through gRPC.
//!
//! Deploys dry-run every step with `validate_only` first: these tests need a server that
//! honours it (SPEC.md 8.4).

use std::process::Stdio;
use std::time::Duration;

use mapreg::pb::*;
use tokio::process::Command;

use crate::common::*;

/// The guide's snippet, verbatim, completed with the WebSocket API, its stage and the domain.
const GUIDE: &str = r#"AWSTemplateFormatVersion: '2010-09-09'
Resources:
  MyApi:
    Type: 'AWS::ApiGatewayV2::Api'
    Properties:
      Name: my-websocket-api
      ProtocolType: WEBSOCKET
      RouteSelectionExpression: $request.body.action
  MyStage:
    Type: 'AWS::ApiGatewayV2::Stage'
    Properties:
      ApiId: !Ref MyApi
      StageName: test
  MyDomainName:
    Type: 'AWS::ApiGatewayV2::DomainName'
    Properties:
      DomainName: api.example.com
  MyApiMapping:
    Type: 'AWS::ApiGatewayV2::ApiMapping'
    Properties:
      DomainName: api.example.com
      ApiMappingKey: 'v1'
      ApiId: !Ref MyApi
      Stage: !Ref MyStage
Outputs:
  ApiEndpoint:
    Value: !GetAtt MyApi.ApiEndpoint
  MappingUrl:
    Value: !Sub 'wss://${MyDomainName}/v1'
"#;

/// Added to [`GUIDE`]: an HTTP API mapped onto the WebSocket domain (rule 6).
const HTTP_ON_WEBSOCKET: &str = r#"  HttpApi:
    Type: 'AWS::ApiGatewayV2::Api'
    Properties:
      Name: my-http-api
      ProtocolType: HTTP
  HttpStage:
    Type: 'AWS::ApiGatewayV2::Stage'
    Properties:
      ApiId: !Ref HttpApi
      StageName: prod
  HttpMapping:
    Type: 'AWS::ApiGatewayV2::ApiMapping'
    Properties:
      DomainName: !Ref MyDomainName
      ApiMappingKey: http
      ApiId: !Ref HttpApi
      Stage: !Ref HttpStage
"#;

#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn mapreg(s: &TestServer, args: &[&str]) -> Run {
    let endpoint = s.endpoint();
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        Command::new(env!("CARGO_BIN_EXE_mapreg"))
            .args(args)
            .args(["--endpoint", endpoint.as_str()])
            .env_remove("MAPREG_ENDPOINT")
            .env_remove("MAPREG_TOKEN")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("mapreg finishes")
    .expect("run mapreg");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn deploy(s: &TestServer, dir: &std::path::Path, stack: &str, template: &str) -> Run {
    let file = dir.join(format!("{stack}-{}.yaml", rand_suffix()));
    std::fs::write(&file, template).expect("write template");
    let path = file.to_string_lossy().into_owned();
    mapreg(
        s,
        &["deploy", "--template-file", &path, "--stack-name", stack],
    )
    .await
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// The registry's revision, as a list answers it.
async fn revision(c: &mut Client) -> u64 {
    c.get_apis(GetApisRequest::default())
        .await
        .expect("get apis")
        .into_inner()
        .revision
}

async fn apis(c: &mut Client) -> Vec<Api> {
    c.get_apis(GetApisRequest::default())
        .await
        .expect("get apis")
        .into_inner()
        .items
}

async fn domains(c: &mut Client) -> Vec<String> {
    c.get_domain_names(GetDomainNamesRequest::default())
        .await
        .expect("get domains")
        .into_inner()
        .items
        .into_iter()
        .map(|d| d.domain_name)
        .collect()
}

async fn mappings(c: &mut Client, domain: &str) -> Vec<ApiMapping> {
    c.get_api_mappings(GetApiMappingsRequest {
        domain_name: domain.into(),
        ..Default::default()
    })
    .await
    .expect("get mappings")
    .into_inner()
    .items
}

#[track_caller]
fn ok(r: &Run) {
    assert_eq!(r.code, 0, "{r:#?}");
}

#[tokio::test]
async fn guide_snippet_deploys_redeploys_updates_and_deletes_only_its_own() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // Not the stack's: must survive delete-stack.
    let outsider = create_api(&mut c, "outsider", ProtocolType::Http).await;
    create_stage(&mut c, &outsider.api_id, "prod").await;
    create_domain(&mut c, "other.example.com").await;
    c.create_api_mapping(mapping_req(
        "other.example.com",
        "",
        &outsider.api_id,
        "prod",
    ))
    .await
    .expect("outsider mapping");

    let r = deploy(&s, dir.path(), "guide", GUIDE).await;
    ok(&r);
    assert!(
        r.stdout
            .contains("Successfully created/updated stack - guide"),
        "{r:#?}"
    );
    let api = apis(&mut c)
        .await
        .into_iter()
        .find(|a| a.name == "my-websocket-api")
        .expect("the stack's API");
    assert_eq!(api.protocol_type, ProtocolType::Websocket as i32);
    assert_eq!(api.route_selection_expression, "$request.body.action");
    let m = mappings(&mut c, "api.example.com").await;
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(
        (
            m[0].api_mapping_key.as_str(),
            m[0].api_id.as_str(),
            m[0].stage.as_str()
        ),
        ("v1", api.api_id.as_str(), "test")
    );
    assert!(
        r.stdout
            .contains(&format!("ApiEndpoint = wss://{}.execute-api", api.api_id)),
        "outputs printed: {r:#?}"
    );
    assert!(
        r.stdout.contains("MappingUrl = wss://api.example.com/v1"),
        "{r:#?}"
    );

    // The same template again: nothing to deploy, no revision taken.
    let before = revision(&mut c).await;
    let r = deploy(&s, dir.path(), "guide", GUIDE).await;
    ok(&r);
    assert!(
        r.stdout
            .contains("No changes to deploy. Stack guide is up to date"),
        "{r:#?}"
    );
    assert_eq!(
        revision(&mut c).await,
        before,
        "a no-op deploy takes no revision"
    );

    // A new key: the same mapping, updated in place.
    let r = deploy(&s, dir.path(), "guide", &GUIDE.replace("'v1'", "'v2'")).await;
    ok(&r);
    assert!(r.stdout.contains("Modify"), "{r:#?}");
    let after = mappings(&mut c, "api.example.com").await;
    assert_eq!(after.len(), 1);
    assert_eq!(
        after[0].api_mapping_id, m[0].api_mapping_id,
        "updated in place"
    );
    assert_eq!(after[0].api_mapping_key, "v2");
    assert_eq!(apis(&mut c).await.len(), 2, "nothing else created");

    let r = mapreg(&s, &["describe-stack-resources", "--stack-name", "guide"]).await;
    ok(&r);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    let mut listed: Vec<(String, String)> = v["StackResources"]
        .as_array()
        .expect("list")
        .iter()
        .map(|x| {
            (
                x["LogicalResourceId"].as_str().unwrap_or("").to_string(),
                x["PhysicalResourceId"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        vec![
            ("MyApi".to_string(), api.api_id.clone()),
            ("MyApiMapping".to_string(), m[0].api_mapping_id.clone()),
            ("MyDomainName".to_string(), "api.example.com".to_string()),
            ("MyStage".to_string(), "test".to_string()),
        ]
    );

    // Removing a resource from the template deletes it on the next deploy.
    let start = GUIDE.find("  MyApiMapping:").expect("mapping");
    let end = GUIDE.find("Outputs:").expect("outputs");
    let without = format!("{}{}", &GUIDE[..start], &GUIDE[end..]);
    let r = deploy(&s, dir.path(), "guide", &without).await;
    ok(&r);
    assert!(
        mappings(&mut c, "api.example.com").await.is_empty(),
        "{r:#?}"
    );

    let r = mapreg(&s, &["delete-stack", "--stack-name", "guide"]).await;
    ok(&r);
    let left: Vec<String> = apis(&mut c).await.into_iter().map(|a| a.name).collect();
    assert_eq!(left, vec!["outsider".to_string()]);
    assert_eq!(domains(&mut c).await, vec!["other.example.com".to_string()]);
    assert_eq!(mappings(&mut c, "other.example.com").await.len(), 1);
    let r = mapreg(&s, &["describe-stack-resources", "--stack-name", "guide"]).await;
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("does not exist"), "{r:#?}");
    s.stop().await;
}

#[tokio::test]
async fn a_broken_rule_rolls_the_deploy_back() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let dir = tempfile::tempdir().expect("tempdir");
    ok(&deploy(&s, dir.path(), "guide", GUIDE).await);
    let before_apis = apis(&mut c).await;
    let before_mappings = mappings(&mut c, "api.example.com").await;

    // The key changes (in place) and an HTTP API is mapped onto the WebSocket domain.
    let broken = GUIDE
        .replace("'v1'", "'v9'")
        .replace("Outputs:\n", &format!("{HTTP_ON_WEBSOCKET}Outputs:\n"));
    let r = deploy(&s, dir.path(), "guide", &broken).await;
    assert_ne!(r.code, 0, "{r:#?}");
    assert!(
        r.stderr
            .contains("HttpMapping (AWS::ApiGatewayV2::ApiMapping) CREATE_FAILED"),
        "names the failing resource: {r:#?}"
    );
    assert!(
        r.stderr.contains("PROTOCOL_CONFLICT"),
        "names the rule: {r:#?}"
    );
    assert!(r.stdout.contains("ROLLBACK_COMPLETE"), "{r:#?}");
    // Fully rolled back: the HTTP API and stage are gone, the key is v1 again.
    let names: Vec<String> = apis(&mut c).await.into_iter().map(|a| a.name).collect();
    assert_eq!(
        names,
        before_apis
            .iter()
            .map(|a| a.name.clone())
            .collect::<Vec<_>>()
    );
    let m = mappings(&mut c, "api.example.com").await;
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].api_mapping_id, before_mappings[0].api_mapping_id);
    assert_eq!(m[0].api_mapping_key, "v1");
    // And the stack is as it was: deploying the original is a no-op.
    let r = deploy(&s, dir.path(), "guide", GUIDE).await;
    ok(&r);
    assert!(r.stdout.contains("No changes to deploy"), "{r:#?}");
    s.stop().await;
}

#[tokio::test]
async fn refused_templates_write_nothing() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let before = revision(&mut c).await;
    let cases = [
        (
            GUIDE.replace("'AWS::ApiGatewayV2::Stage'", "'AWS::ApiGatewayV2::Route'"),
            "Resources.MyStage.Type",
        ),
        (
            GUIDE.replace(
                "StageName: test",
                "StageName: test\n      AccessLogSettings: {}",
            ),
            "Resources.MyStage.Properties.AccessLogSettings",
        ),
        (
            GUIDE.replace("Stage: !Ref MyStage", "Stage: !Ref NoSuchStage"),
            "Resources.MyApiMapping.Properties.Stage",
        ),
        (
            GUIDE.replace("Name: my-websocket-api", "Name: !Ref MyApiMapping"),
            "Circular dependency",
        ),
    ];
    for (template, location) in cases {
        let r = deploy(&s, dir.path(), "bad", &template).await;
        assert_eq!(r.code, 255, "{r:#?}");
        assert!(r.stderr.contains(location), "{location} in {r:#?}");
    }
    assert_eq!(revision(&mut c).await, before, "nothing written");
    assert!(apis(&mut c).await.is_empty());
    s.stop().await;
}
