//! The AWS CLI v2 behaviours of `mapreg` (issue 13), run as the built binary against a live
//! server: `--output json|text|table|yaml|yaml-stream` laid out as the AWS CLI lays them out,
//! `--query`, `--cli-input-json`/`--cli-input-yaml` from `--generate-cli-skeleton`, global
//! options before or after the command, `file://` values, `--validate-only`, `--debug`,
//! completion scripts, and errors that name the flags the user typed.

use mapreg::pb::*;
use serde_json::{Value, json};

use crate::cli::{Run, run, run_env, str_of, unused_endpoint};
use crate::common::*;

/// The AWS CLI's text layout of one object, computed here independently of the client: the
/// scalar values in key order on one tab-separated line (prefixed by `prefix` for a list item),
/// then each nested object as `KEY\tvalues` (values in key order).
fn aws_text_of_object(v: &Value, prefix: Option<&str>) -> String {
    let o = v.as_object().expect("object");
    let scalar = |x: &Value| match x {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut cells: Vec<String> = prefix.map(str::to_string).into_iter().collect();
    let mut nested = String::new();
    for (k, x) in o {
        match x {
            Value::Object(m) => {
                let values: Vec<String> = m.values().map(scalar).collect();
                nested.push_str(&format!("{}\t{}\n", k.to_uppercase(), values.join("\t")));
            }
            Value::Array(_) => panic!("not used with lists: {k}"),
            x => cells.push(scalar(x)),
        }
    }
    format!("{}\n{nested}", cells.join("\t"))
}

#[track_caller]
fn ok(r: &Run) -> &str {
    assert_eq!(r.code, 0, "{r:?}");
    &r.stdout
}

/// Every `--output` on a create, a get and a list: text and YAML laid out as the AWS CLI's.
#[tokio::test]
async fn every_output_format_on_create_get_and_list() {
    let s = TestServer::start().await;
    let create = [
        "create-api",
        "--name",
        "pets",
        "--protocol-type",
        "HTTP",
        "--tags",
        "team=edge",
    ];

    // create: text is one line of the values in key order, then TAGS.
    let mut text_create = create.to_vec();
    text_create.extend(["--output", "text"]);
    let r = run(&s, &text_create).await;
    let first_line = ok(&r).lines().next().unwrap_or("").to_string();
    let api_id = first_line.split('\t').next().unwrap_or("").to_string();
    assert_eq!(api_id.len(), 10, "{r:?}");
    let api = run(&s, &["get-api", "--api-id", &api_id]).await.json();
    let mut expected = aws_text_of_object(&api, None);
    // The create printed CreateRevision = ModRevision of the same record.
    assert_eq!(r.stdout, expected, "create --output text");
    assert!(r.stdout.ends_with("TAGS\tedge\n"), "{}", r.stdout);

    // get: text, YAML, yaml-stream, table, JSON.
    let r = run(&s, &["get-api", "--api-id", &api_id, "--output", "text"]).await;
    assert_eq!(ok(&r), expected, "get --output text");
    let r = run(&s, &["get-api", "--api-id", &api_id, "--output", "yaml"]).await;
    let y = ok(&r);
    assert!(y.starts_with(&format!("ApiId: {api_id}\n")), "{y}");
    let created = str_of(&api, "CreatedDate");
    // A date is quoted (YAML would read it as a timestamp), as the AWS CLI prints it.
    assert!(y.contains(&format!("\nCreatedDate: '{created}'\n")), "{y}");
    assert!(y.contains("\nName: pets\n"), "{y}");
    assert!(y.contains("\nProtocolType: HTTP\n"), "{y}");
    assert!(y.contains("\nTags:\n  team: edge\n"), "{y}");
    let back: Value = serde_yaml_ng::from_str(y).expect("valid YAML");
    assert_eq!(back, api, "the YAML holds the same record");
    let r = run(
        &s,
        &["get-api", "--api-id", &api_id, "--output", "yaml-stream"],
    )
    .await;
    assert_eq!(ok(&r), y, "yaml-stream of a single answer is plain YAML");
    let r = run(&s, &["get-api", "--api-id", &api_id, "--output", "table"]).await;
    let t = ok(&r);
    assert!(t.lines().nth(1).unwrap_or("").contains("GetApi"), "{t}");
    assert!(t.contains(&format!("| {api_id} | pets ")), "{t}");
    let r = run(&s, &["get-api", "--api-id", &api_id, "--output", "json"]).await;
    assert_eq!(r.json(), api);

    // list: ITEMS lines with every item's scalar keys as columns, blank when absent.
    run(
        &s,
        &[
            "create-api",
            "--name",
            "shop",
            "--protocol-type",
            "REST",
            "--description",
            "d",
        ],
    )
    .await
    .json();
    let all = run(&s, &["get-apis"]).await.json();
    let items = all["Items"].as_array().expect("Items").clone();
    assert_eq!(items.len(), 2);
    let mut columns: Vec<String> = items
        .iter()
        .flat_map(|i| {
            i.as_object()
                .expect("object")
                .iter()
                .filter(|(_, v)| !v.is_object())
                .map(|(k, _)| k.clone())
        })
        .collect();
    columns.sort();
    columns.dedup();
    let mut want = String::new();
    for item in &items {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| match &item[c.as_str()] {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        want.push_str(&format!("ITEMS\t{}\n", cells.join("\t")));
        if let Some(tags) = item.get("Tags").and_then(Value::as_object) {
            let values: Vec<&str> = tags.values().filter_map(Value::as_str).collect();
            want.push_str(&format!("TAGS\t{}\n", values.join("\t")));
        }
    }
    let r = run(&s, &["get-apis", "--output", "text"]).await;
    assert_eq!(ok(&r), want, "get-apis --output text");
    // A listing cut short ends with NEXTTOKEN, as the AWS CLI's.
    let r = run(&s, &["get-apis", "--output", "text", "--max-items", "1"]).await;
    let lines: Vec<&str> = ok(&r).lines().collect();
    assert!(lines[0].starts_with("ITEMS\t"), "{r:?}");
    assert!(
        lines.last().is_some_and(|l| l.starts_with("NEXTTOKEN\t")),
        "{r:?}"
    );

    let r = run(&s, &["get-apis", "--output", "yaml"]).await;
    let y = ok(&r);
    assert!(y.starts_with("Items:\n- ApiId: "), "{y}");
    assert!(y.contains("\n  Name: shop\n"), "{y}");
    let back: Value = serde_yaml_ng::from_str(y).expect("valid YAML");
    assert_eq!(back, all);
    let r = run(&s, &["get-apis", "--output", "yaml-stream"]).await;
    let ys = ok(&r);
    assert!(ys.starts_with("- Items:\n  - ApiId: "), "{ys}");
    let back: Value = serde_yaml_ng::from_str(ys).expect("valid YAML");
    assert_eq!(back, json!([all]), "a stream of one page");
    let r = run(&s, &["get-apis", "--output", "table"]).await;
    let t = ok(&r);
    assert!(t.contains("| ApiId "), "{t}");
    assert!(t.contains("| shop "), "{t}");

    // create: YAML and table too.
    let r = run(
        &s,
        &[
            "create-api",
            "--name",
            "y",
            "--protocol-type",
            "REST",
            "--output",
            "yaml",
        ],
    )
    .await;
    assert!(ok(&r).contains("\nName: y\n"), "{r:?}");
    let r = run(
        &s,
        &[
            "create-api",
            "--name",
            "t",
            "--protocol-type",
            "REST",
            "--output",
            "table",
        ],
    )
    .await;
    assert!(ok(&r).contains("CreateApi"), "{r:?}");
    expected.clear();
}

/// `--query` with projections, filters and functions on lists, in every output format.
#[tokio::test]
async fn query_projections_and_filters() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let a = create_api(&mut c, "alpha", ProtocolType::Http).await;
    let b = create_api(&mut c, "beta", ProtocolType::Http).await;
    create_api(&mut c, "gamma", ProtocolType::Rest).await;

    let filter = "Items[?ProtocolType=='HTTP'].Name";
    let v = run(&s, &["get-apis", "--query", filter]).await.json();
    let mut names: Vec<String> = serde_json::from_value(v).expect("names");
    names.sort();
    assert_eq!(names, ["alpha", "beta"]);
    let r = run(&s, &["get-apis", "--query", filter, "--output", "text"]).await;
    let mut cells: Vec<&str> = ok(&r).trim_end().split('\t').collect();
    cells.sort();
    assert_eq!(cells, ["alpha", "beta"], "a list of scalars on one line");

    let v = run(
        &s,
        &[
            "get-apis",
            "--query",
            "sort_by(Items, &Name)[].{Id: ApiId, N: Name}",
        ],
    )
    .await
    .json();
    assert_eq!(v[0], json!({"Id": a.api_id, "N": "alpha"}));
    assert_eq!(v[1], json!({"Id": b.api_id, "N": "beta"}));
    let r = run(
        &s,
        &[
            "get-apis",
            "--query",
            "sort_by(Items, &Name)[].[Name, ProtocolType]",
            "--output",
            "text",
        ],
    )
    .await;
    assert_eq!(ok(&r), "alpha\tHTTP\nbeta\tHTTP\ngamma\tREST\n");
    let r = run(
        &s,
        &["get-apis", "--query", "length(Items)", "--output", "text"],
    )
    .await;
    assert_eq!(ok(&r), "3\n");
    let r = run(
        &s,
        &[
            "get-apis",
            "--query",
            "sort_by(Items, &Name)[].Name",
            "--output",
            "yaml",
        ],
    )
    .await;
    assert_eq!(ok(&r), "- alpha\n- beta\n- gamma\n");
    let r = run(
        &s,
        &[
            "get-apis",
            "--query",
            "Items[?Name=='gamma'].[ApiId, Name]",
            "--output",
            "table",
        ],
    )
    .await;
    let t = ok(&r);
    assert!(t.contains("GetApis"), "{t}");
    assert!(t.contains("| gamma "), "{t}");

    // On a single answer; nothing matched is null / None.
    let r = run(
        &s,
        &[
            "get-api", "--api-id", &a.api_id, "--query", "ApiId", "--output", "text",
        ],
    )
    .await;
    assert_eq!(ok(&r), format!("{}\n", a.api_id));
    let r = run(&s, &["get-api", "--api-id", &a.api_id, "--query", "Nope"]).await;
    assert_eq!(ok(&r), "null\n");
    let r = run(
        &s,
        &[
            "get-api", "--api-id", &a.api_id, "--query", "Nope", "--output", "text",
        ],
    )
    .await;
    assert_eq!(ok(&r), "None\n");

    // A malformed expression is a bad command line, refused before connecting.
    let endpoint = unused_endpoint().await;
    let r = run_env(
        &[
            "get-apis",
            "--query",
            "Items[?",
            "--endpoint-url",
            &endpoint,
        ],
        &[],
    )
    .await;
    assert_eq!(r.code, 252, "{r:?}");
    assert!(r.stderr.contains("--query"), "{r:?}");
}

/// `--generate-cli-skeleton` prints the parameters keyed as AWS keys them; filled in, the
/// skeleton runs the command through `--cli-input-json` (and YAML), flags winning over it.
#[tokio::test]
async fn cli_input_round_trip_from_the_skeleton() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    create_domain(&mut c, "api.example.com").await;

    let r = run_env(&["create-api-mapping", "--generate-cli-skeleton"], &[]).await;
    let mut skeleton: Value = serde_json::from_str(ok(&r)).expect("skeleton JSON");
    assert_eq!(
        skeleton,
        json!({"ApiId": "", "ApiMappingKey": "", "DomainName": "", "Stage": "",
               "ValidateOnly": false})
    );
    skeleton["ApiId"] = json!(api.api_id);
    skeleton["ApiMappingKey"] = json!("v1");
    skeleton["DomainName"] = json!("api.example.com");
    skeleton["Stage"] = json!("test");
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input.json");
    std::fs::write(&input, skeleton.to_string()).expect("write input");
    let file = format!("file://{}", input.display());

    let m = run(&s, &["create-api-mapping", "--cli-input-json", &file])
        .await
        .json();
    assert_eq!(m["ApiMappingKey"], "v1");
    assert_eq!(m["ApiId"], api.api_id.as_str());
    // The command line wins over the document.
    let m2 = run(
        &s,
        &[
            "create-api-mapping",
            "--cli-input-json",
            &file,
            "--api-mapping-key",
            "v2",
        ],
    )
    .await
    .json();
    assert_eq!(m2["ApiMappingKey"], "v2");
    // Inline JSON too.
    let got = run(
        &s,
        &[
            "get-api-mapping",
            "--cli-input-json",
            &json!({"DomainName": "api.example.com", "ApiMappingId": m["ApiMappingId"]})
                .to_string(),
        ],
    )
    .await
    .json();
    assert_eq!(got, m);

    // The YAML skeleton, with its comments, filled in and read back.
    let r = run_env(
        &["create-api", "--generate-cli-skeleton", "yaml-input"],
        &[],
    )
    .await;
    let y = ok(&r);
    assert!(y.contains("Name: '' # [REQUIRED]"), "{y}");
    assert!(
        y.contains("Valid values are: HTTP, WEBSOCKET, REST."),
        "{y}"
    );
    let filled = "Name: from-yaml # the API's name\nProtocolType: REST\nDescription: 'yes: yaml'\n";
    let yaml_file = dir.path().join("input.yaml");
    std::fs::write(&yaml_file, filled).expect("write yaml");
    let a = run(
        &s,
        &[
            "create-api",
            "--cli-input-yaml",
            &format!("file://{}", yaml_file.display()),
        ],
    )
    .await
    .json();
    assert_eq!(a["Name"], "from-yaml");
    assert_eq!(a["ProtocolType"], "REST");
    assert_eq!(a["Description"], "yes: yaml");

    // An unknown key is a bad command line.
    let r = run(&s, &["get-api", "--cli-input-json", r#"{"Api": "x"}"#]).await;
    assert_eq!(r.code, 252, "{r:?}");
    assert!(
        r.stderr.contains("Unknown parameter in input: \"Api\""),
        "{r:?}"
    );
}

/// Global options work before or after the command; `--endpoint-url` (and `--endpoint`),
/// `--no-cli-pager`, `file://` values and `--debug`.
#[tokio::test]
async fn global_options_in_both_positions() {
    let s = TestServer::start().await;
    let endpoint = s.endpoint();
    let mut c = s.client().await;
    let api = create_api(&mut c, "pets", ProtocolType::Http).await;
    let id_line = format!("{}\n", api.api_id);

    let after = run_env(
        &[
            "get-api",
            "--api-id",
            &api.api_id,
            "--endpoint-url",
            &endpoint,
            "--output",
            "text",
            "--query",
            "ApiId",
            "--no-cli-pager",
        ],
        &[],
    )
    .await;
    assert_eq!(ok(&after), id_line);
    let before = run_env(
        &[
            "--endpoint-url",
            &endpoint,
            "--output",
            "text",
            "--query",
            "ApiId",
            "--no-cli-pager",
            "get-api",
            "--api-id",
            &api.api_id,
        ],
        &[],
    )
    .await;
    assert_eq!(ok(&before), id_line);
    let mixed = run_env(
        &[
            "--output=text",
            "--endpoint",
            &endpoint,
            "get-api",
            "--query=ApiId",
            "--api-id",
            &api.api_id,
        ],
        &[],
    )
    .await;
    assert_eq!(ok(&mixed), id_line);
    let table = run_env(
        &["--output", "table", "get-apis", "--endpoint-url", &endpoint],
        &[],
    )
    .await;
    assert!(ok(&table).contains("GetApis"), "{table:?}");

    // file:// for any value.
    let dir = tempfile::tempdir().expect("tempdir");
    let desc = dir.path().join("desc.txt");
    std::fs::write(&desc, "from a file").expect("write");
    let a = run(
        &s,
        &[
            "create-api",
            "--name",
            "f",
            "--protocol-type",
            "REST",
            "--description",
            &format!("file://{}", desc.display()),
        ],
    )
    .await
    .json();
    assert_eq!(a["Description"], "from a file");

    // --debug: the request and the response on stderr, stdout unchanged.
    let r = run(&s, &["--debug", "get-api", "--api-id", &api.api_id]).await;
    assert_eq!(r.json()["ApiId"], api.api_id.as_str());
    assert!(
        r.stderr.contains("DEBUG GetApi request: GetApiRequest"),
        "{r:?}"
    );
    assert!(r.stderr.contains("DEBUG GetApi response"), "{r:?}");
    assert!(r.stderr.contains(&api.api_id), "{r:?}");

    // Not for the server's own commands.
    let r = run_env(&["--output", "text", "hash-token", "x"], &[]).await;
    assert_eq!(r.code, 252, "{r:?}");
}

/// `--validate-only` on every write: the answer of the write, with revisions 0, and the store's
/// revision unchanged. Needs the server's validate_only (SPEC 8.4).
#[tokio::test]
async fn validate_only_leaves_the_revision_unchanged() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    create_domain(&mut c, "api.example.com").await;
    let m = create_mapping(&mut c, "api.example.com", "v1", &api.api_id, "test").await;
    create_stage(&mut c, &api.api_id, "spare").await;
    let revision = |c: &mut Client| {
        let mut c = c.clone();
        async move {
            c.get_apis(GetApisRequest::default())
                .await
                .expect("get apis")
                .into_inner()
                .revision
        }
    };
    let before = revision(&mut c).await;
    assert!(before > 0);

    let dry = run(
        &s,
        &[
            "create-api",
            "--name",
            "dry",
            "--protocol-type",
            "HTTP",
            "--validate-only",
        ],
    )
    .await
    .json();
    assert_eq!(dry["Name"], "dry");
    assert_eq!(dry["CreateRevision"], 0, "{dry}");
    assert_eq!(dry["ModRevision"], 0, "{dry}");
    let dry = run(
        &s,
        &[
            "update-api",
            "--api-id",
            &api.api_id,
            "--name",
            "renamed",
            "--validate-only",
        ],
    )
    .await
    .json();
    assert_eq!(dry["Name"], "renamed");
    let dry = run(
        &s,
        &[
            "create-api-mapping",
            "--domain-name",
            "api.example.com",
            "--api-mapping-key",
            "v2",
            "--api-id",
            &api.api_id,
            "--stage",
            "test",
            "--validate-only",
        ],
    )
    .await
    .json();
    assert_eq!(dry["ApiMappingKey"], "v2");
    for args in [
        vec![
            "create-stage",
            "--api-id",
            &api.api_id,
            "--stage-name",
            "s2",
        ],
        vec![
            "update-stage",
            "--api-id",
            &api.api_id,
            "--stage-name",
            "test",
            "--description",
            "x",
        ],
        vec!["create-domain-name", "--domain-name", "dry.example.com"],
        vec![
            "update-domain-name",
            "--domain-name",
            "api.example.com",
            "--domain-name-configurations",
            "EndpointType=REGIONAL,SecurityPolicy=TLS_1_2",
        ],
        vec![
            "update-api-mapping",
            "--domain-name",
            "api.example.com",
            "--api-mapping-id",
            &m.api_mapping_id,
            "--api-mapping-key",
            "v3",
        ],
        vec![
            "delete-api-mapping",
            "--domain-name",
            "api.example.com",
            "--api-mapping-id",
            &m.api_mapping_id,
        ],
        vec!["delete-domain-name", "--domain-name", "api.example.com"],
        vec![
            "delete-stage",
            "--api-id",
            &api.api_id,
            "--stage-name",
            "spare",
        ],
    ] {
        let mut dry = args.clone();
        dry.push("--validate-only");
        let r = run(&s, &dry).await;
        assert_eq!(r.code, 0, "{args:?}: {r:?}");
    }
    // A dry run fails as the real write would: the API is in use by the mapping.
    run(
        &s,
        &["delete-api", "--api-id", &api.api_id, "--validate-only"],
    )
    .await
    .service_error("ConflictException", "DeleteApi");

    assert_eq!(revision(&mut c).await, before, "nothing was written");
    assert_eq!(all_mappings(&mut c, "api.example.com").await.len(), 1);
    let got = run(&s, &["get-api", "--api-id", &api.api_id]).await.json();
    assert_eq!(got["Name"], api.name.as_str());
}

/// `mapreg completion bash|zsh|fish` prints a script that knows the commands and flags.
#[tokio::test]
async fn completion_scripts() {
    for shell in ["bash", "zsh", "fish"] {
        let r = run_env(&["completion", shell], &[]).await;
        let script = ok(&r);
        assert!(script.contains("create-api-mapping"), "{shell}");
        assert!(script.contains("route-selection-expression"), "{shell}");
        assert!(script.contains("validate-only"), "{shell}");
    }
    // The bash script is valid bash.
    let r = run_env(&["completion", "bash"], &[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mapreg.bash");
    std::fs::write(&path, &r.stdout).expect("write");
    let status = tokio::process::Command::new("bash")
        .arg("-n")
        .arg(&path)
        .status()
        .await
        .expect("run bash -n");
    assert!(status.success());
    let r = run_env(&["completion", "tcsh"], &[]).await;
    assert_eq!(r.code, 252, "{r:?}");
}

/// Errors name the flags the user typed, and a client-side failure is not the service's.
#[tokio::test]
async fn errors_name_the_flags() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    for i in 0..3 {
        create_api(&mut c, &format!("api{i}"), ProtocolType::Http).await;
    }
    let r = run(&s, &["get-apis", "--starting-token", "garbage"]).await;
    r.service_error("BadRequestException", "GetApis");
    assert!(r.stderr.contains("--starting-token"), "{r:?}");
    assert!(!r.stderr.contains("next_token"), "{r:?}");

    let r = run(&s, &["get-apis", "--max-results", "5000"]).await;
    assert_eq!(r.code, 252, "{r:?}");
    assert!(r.stderr.contains("--max-results"), "{r:?}");

    // A response larger than the client decodes: reported as the client's failure (255).
    let r = run_env(
        &["get-apis", "--endpoint-url", &s.endpoint()],
        &[("MAPREG_MAX_RESPONSE_BYTES", "64")],
    )
    .await;
    assert_eq!(r.code, 255, "{r:?}");
    assert!(
        r.stderr
            .contains("Could not read the response of the GetApis operation"),
        "{r:?}"
    );
    assert!(!r.stderr.contains("BadRequestException"), "{r:?}");

    // watch cannot be a table.
    let r = run(&s, &["watch", "--output", "table"]).await;
    assert_eq!(r.code, 252, "{r:?}");
    assert!(r.stderr.contains("watch prints a stream"), "{r:?}");
    assert!(r.stdout.is_empty(), "{r:?}");

    // Tokens: a missing one and a refused one say how the CLI sends one.
    let t = TestServer::start_with_tokens().await;
    let r = run(&t, &["get-apis"]).await;
    r.service_error("UnauthorizedException", "GetApis");
    assert!(
        r.stderr.contains("--token") && r.stderr.contains("MAPREG_TOKEN"),
        "{r:?}"
    );
    let r = run(&t, &["get-apis", "--token", "wrong"]).await;
    r.service_error("UnauthorizedException", "GetApis");
    assert!(r.stderr.contains("--token"), "{r:?}");
}
