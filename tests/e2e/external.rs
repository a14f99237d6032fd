//! Real tools against a real server: grpcurl (reflection, describe, health, error details and the
//! README session in tests/readme_session.sh) and a Python grpcio client (tests/python/interop.py).
//!
//! Ignored by default because they need grpcurl and python3 with grpcio, grpcio-tools and
//! grpcio-reflection; `.ci/run` installs them and runs the suite with `--include-ignored`.
//! The tools run as child processes on a blocking thread while the server keeps serving on the
//! test's runtime, hence the multi-threaded runtime.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;
use mapreg::pb::*;

/// The repository root: scripts and protos are found relative to it.
fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// What a finished child process left behind.
struct Ran {
    what: String,
    success: bool,
    stdout: String,
    stderr: String,
}

impl Ran {
    /// stdout followed by stderr (grpcurl prints errors on stderr).
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    #[track_caller]
    fn assert_ok(&self) -> &Self {
        assert!(self.success, "{} failed:\n{}", self.what, self.show());
        self
    }

    fn show(&self) -> String {
        format!("--- stdout\n{}--- stderr\n{}", self.stdout, self.stderr)
    }
}

/// Runs `program args` from the repository root, without stdin, on a blocking thread.
async fn run(program: &str, args: &[&str], env: &[(&str, String)]) -> Ran {
    let what = format!("{program} {}", args.join(" "));
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k.to_string(), v.clone())))
        .current_dir(repo())
        .stdin(Stdio::null());
    let what_ = what.clone();
    let task = tokio::task::spawn_blocking(move || {
        cmd.output().unwrap_or_else(|e| {
            panic!("cannot run `{what_}`: {e} (is it installed? .ci/run shows how)")
        })
    });
    let out = tokio::time::timeout(Duration::from_secs(300), task)
        .await
        .unwrap_or_else(|_| panic!("`{what}` still running after 300 s"))
        .expect("blocking task");
    Ran {
        what,
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `grpcurl -plaintext <flags> <server address> <rest>`, each call bounded by `-max-time`.
async fn grpcurl(server: &TestServer, flags: &[&str], rest: &[&str]) -> Ran {
    let addr = server.addr.to_string();
    let mut args = vec!["-plaintext", "-max-time", "30"];
    args.extend_from_slice(flags);
    args.push(&addr);
    args.extend_from_slice(rest);
    run("grpcurl", &args, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs grpcurl and python3 grpcio (CI installs them)"]
async fn grpcurl_list_shows_every_service() {
    let server = TestServer::start().await;
    let out = grpcurl(&server, &[], &["list"]).await;
    out.assert_ok();
    let services: Vec<&str> = out.stdout.lines().map(str::trim).collect();
    for want in [
        "mapreg.v1.Registry",
        "mapreg.v1.ChangeFeed",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(
            services.contains(&want),
            "`grpcurl list` lacks {want}:\n{}",
            out.show()
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs grpcurl and python3 grpcio (CI installs them)"]
async fn grpcurl_describes_services_and_messages() {
    let server = TestServer::start().await;

    let registry = grpcurl(&server, &[], &["describe", "mapreg.v1.Registry"]).await;
    registry.assert_ok();
    for want in [
        "mapreg.v1.Registry is a service",
        "rpc CreateApiMapping ( .mapreg.v1.CreateApiMappingRequest ) returns ( .mapreg.v1.ApiMapping )",
        "rpc GetApiMappings",
    ] {
        assert!(
            registry.stdout.contains(want),
            "describe Registry lacks {want:?}:\n{}",
            registry.show()
        );
    }

    let mapping = grpcurl(&server, &[], &["describe", "mapreg.v1.ApiMapping"]).await;
    mapping.assert_ok();
    for want in [
        "mapreg.v1.ApiMapping is a message",
        "string api_mapping_id = 1;",
        "string api_mapping_key = 3;",
        "uint64 mod_revision = 8;",
    ] {
        assert!(
            mapping.stdout.contains(want),
            "describe ApiMapping lacks {want:?}:\n{}",
            mapping.show()
        );
    }

    // The error detail types are reachable too, so grpcurl can decode them.
    let info = grpcurl(&server, &[], &["describe", "google.rpc.ErrorInfo"]).await;
    info.assert_ok();
    assert!(
        info.stdout.contains("string reason = 1;"),
        "{}",
        info.show()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs grpcurl and python3 grpcio (CI installs them)"]
async fn readme_session_runs_against_a_fresh_server() {
    let server = TestServer::start().await;
    let script = repo().join("tests/readme_session.sh");
    let out = run(
        "bash",
        &[script.to_str().expect("utf-8 path")],
        &[("MAPREG_ADDR", server.addr.to_string())],
    )
    .await;
    out.assert_ok();
    for want in [
        "mapreg.v1.Registry",
        "api.example.com",
        "\"apiMappingKey\": \"v1\"",
        "SERVING",
    ] {
        assert!(
            out.stdout.contains(want),
            "session output lacks {want:?}:\n{}",
            out.show()
        );
    }
    assert!(!out.stdout.contains("NOT_SERVING"), "{}", out.show());

    // What the session created is really there, seen through the Rust client.
    let mut c = server.client().await;
    let mappings = all_mappings(&mut c, "api.example.com").await;
    assert_eq!(mappings.len(), 1, "{mappings:?}");
    let m = &mappings[0];
    assert_eq!(m.api_mapping_key, "v1");
    assert_eq!(m.stage, "test");
    assert_eq!(m.domain_name, "api.example.com");
    assert!(
        out.stdout.contains(&format!("API id: {}", m.api_id)),
        "the session printed the mapped API's id {}:\n{}",
        m.api_id,
        out.show()
    );
    let api = c
        .get_api(GetApiRequest {
            api_id: m.api_id.clone(),
            ..Default::default()
        })
        .await
        .expect("the session's API exists")
        .into_inner();
    assert_eq!(api.protocol_type, ProtocolType::Http as i32);
    c.get_stage(GetStageRequest {
        api_id: m.api_id.clone(),
        stage_name: "test".into(),
        ..Default::default()
    })
    .await
    .expect("the session's stage exists");

    // The script is documented as single-use: a second run stops at the existing domain.
    let again = run(
        "bash",
        &[script.to_str().expect("utf-8 path")],
        &[("MAPREG_ADDR", server.addr.to_string())],
    )
    .await;
    assert!(!again.success, "second run should fail:\n{}", again.show());
    assert!(
        again.stderr.contains("DOMAIN_NAME_EXISTS"),
        "{}",
        again.show()
    );
    drop(c);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs grpcurl and python3 grpcio (CI installs them)"]
async fn grpcurl_prints_error_details() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    create_domain(&mut c, "api.example.com").await;

    let body = format!(
        r#"{{"domain_name": "api.example.com", "api_mapping_key": "/v1", "api_id": "{}", "stage": "test"}}"#,
        api.api_id
    );
    let out = grpcurl(
        &server,
        &["-d", &body],
        &["mapreg.v1.Registry/CreateApiMapping"],
    )
    .await;
    assert!(
        !out.success,
        "a key starting with / must fail:\n{}",
        out.show()
    );
    let text = out.all();
    for want in [
        "Code: InvalidArgument",
        "google.rpc.ErrorInfo",
        "\"domain\":\"mapreg\"",
        "INVALID_API_MAPPING_KEY",
        "google.rpc.BadRequest",
        r#""field":"api_mapping_key""#,
    ] {
        assert!(
            text.contains(want),
            "grpcurl error lacks {want:?}:\n{}",
            out.show()
        );
    }

    // A missing resource: NOT_FOUND with its reason.
    let out = grpcurl(
        &server,
        &["-d", r#"{"domain_name": "nowhere.example.com"}"#],
        &["mapreg.v1.Registry/GetApiMappings"],
    )
    .await;
    assert!(!out.success, "{}", out.show());
    let text = out.all();
    for want in [
        "Code: NotFound",
        "DOMAIN_NAME_NOT_FOUND",
        "nowhere.example.com",
    ] {
        assert!(
            text.contains(want),
            "grpcurl error lacks {want:?}:\n{}",
            out.show()
        );
    }
    assert!(
        all_mappings(&mut c, "api.example.com").await.is_empty(),
        "the failed create left nothing behind"
    );
    drop(c);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs grpcurl and python3 grpcio (CI installs them)"]
async fn grpcurl_health_check_is_serving() {
    let server = TestServer::start().await;
    let out = grpcurl(&server, &[], &["grpc.health.v1.Health/Check"]).await;
    out.assert_ok();
    assert!(
        out.stdout.contains("\"status\": \"SERVING\""),
        "{}",
        out.show()
    );

    let out = grpcurl(
        &server,
        &["-d", r#"{"service": "mapreg.v1.Registry"}"#],
        &["grpc.health.v1.Health/Check"],
    )
    .await;
    out.assert_ok();
    assert!(
        out.stdout.contains("\"status\": \"SERVING\""),
        "{}",
        out.show()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs grpcurl and python3 grpcio (CI installs them)"]
async fn python_grpcio_client_interoperates() {
    let server = TestServer::start().await;
    let out = run(
        "python3",
        &["tests/python/interop.py", &server.addr.to_string()],
        &[],
    )
    .await;
    out.assert_ok();
    assert!(out.stdout.contains("python interop: OK"), "{}", out.show());

    // The Python client's writes are visible to the Rust client.
    let mut c = server.client().await;
    let mappings = all_mappings(&mut c, "py.example.com").await;
    assert_eq!(mappings.len(), 1, "{mappings:?}");
    assert_eq!(mappings[0].api_mapping_key, "py/v1");
    assert_eq!(mappings[0].stage, "prod");
    drop(c);
    server.stop().await;
}
