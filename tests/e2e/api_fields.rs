//! An API's `route_selection_expression` and `api_key_selection_expression` (SPEC.md 8.4, as
//! API Gateway v2 has them), through real gRPC: required / defaulted / refused per protocol on
//! create and update, persisted across a restart, carried by the change feed.

use mapreg::pb::watch_response::Kind;
use mapreg::pb::*;
use tonic::Code;

use crate::common::*;

const HTTP_ROUTE: &str = "${request.method} ${request.path}";
const KEY_HEADER: &str = "$request.header.x-api-key";
const KEY_USAGE: &str = "$context.authorizer.usageIdentifierKey";

fn req(protocol: ProtocolType, route: &str, api_key: &str) -> CreateApiRequest {
    CreateApiRequest {
        name: "api".into(),
        protocol_type: protocol as i32,
        route_selection_expression: route.into(),
        api_key_selection_expression: api_key.into(),
        ..Default::default()
    }
}

/// Asserts an INVALID_ARGUMENT naming `field` (message, reason and BadRequest) and returns the
/// message.
#[track_caller]
fn refused<T: std::fmt::Debug>(
    r: Result<tonic::Response<T>, tonic::Status>,
    field: &str,
) -> String {
    let s = expect_err(
        r,
        Code::InvalidArgument,
        &format!("INVALID_{}", field.to_ascii_uppercase()),
    );
    assert_eq!(violated_fields(&s), vec![field.to_string()]);
    assert!(s.message().contains(field), "{}", s.message());
    s.message().to_string()
}

#[tokio::test]
async fn create_follows_the_protocol_rules() {
    let s = TestServer::start().await;
    let mut c = s.client().await;

    // WEBSOCKET: the route expression is required; the API key expression defaults.
    let m = refused(
        c.create_api(req(ProtocolType::Websocket, "", "")).await,
        "route_selection_expression",
    );
    assert!(m.contains("required for a WEBSOCKET API"), "{m}");
    let ws = c
        .create_api(req(ProtocolType::Websocket, "$request.body.action", ""))
        .await
        .expect("websocket api")
        .into_inner();
    assert_eq!(ws.route_selection_expression, "$request.body.action");
    assert_eq!(ws.api_key_selection_expression, KEY_HEADER);
    let ws2 = c
        .create_api(req(
            ProtocolType::Websocket,
            "${request.body.op}",
            KEY_USAGE,
        ))
        .await
        .expect("websocket api")
        .into_inner();
    assert_eq!(ws2.api_key_selection_expression, KEY_USAGE);
    refused(
        c.create_api(req(
            ProtocolType::Websocket,
            "$request.body.action",
            "$request.header.k",
        ))
        .await,
        "api_key_selection_expression",
    );
    refused(
        c.create_api(req(ProtocolType::Websocket, "action", ""))
            .await,
        "route_selection_expression",
    );

    // HTTP: the default, which may also be given; nothing else; no API key expression.
    let http = create_api(&mut c, "http", ProtocolType::Http).await;
    assert_eq!(http.route_selection_expression, HTTP_ROUTE);
    assert_eq!(http.api_key_selection_expression, "");
    let given = c
        .create_api(req(ProtocolType::Http, HTTP_ROUTE, ""))
        .await
        .expect("http api with its expression")
        .into_inner();
    assert_eq!(given.route_selection_expression, HTTP_ROUTE);
    let m = refused(
        c.create_api(req(ProtocolType::Http, "$request.body.action", ""))
            .await,
        "route_selection_expression",
    );
    assert!(m.contains("of an HTTP API"), "{m}");
    let m = refused(
        c.create_api(req(ProtocolType::Http, "", KEY_HEADER)).await,
        "api_key_selection_expression",
    );
    assert!(
        m.contains("only for WEBSOCKET APIs, not for an HTTP API"),
        "{m}"
    );

    // REST: neither.
    let rest = create_api(&mut c, "rest", ProtocolType::Rest).await;
    assert_eq!(
        (
            rest.route_selection_expression.as_str(),
            rest.api_key_selection_expression.as_str()
        ),
        ("", "")
    );
    let m = refused(
        c.create_api(req(ProtocolType::Rest, HTTP_ROUTE, "")).await,
        "route_selection_expression",
    );
    assert_eq!(
        m,
        "route_selection_expression is not supported for a REST API"
    );
    refused(
        c.create_api(req(ProtocolType::Rest, "", KEY_HEADER)).await,
        "api_key_selection_expression",
    );

    // Reads show what was stored.
    let got = c
        .get_api(GetApiRequest {
            api_id: ws2.api_id.clone(),
            ..Default::default()
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got, ws2);
    s.stop().await;
}

#[tokio::test]
async fn updates_persist_and_reach_the_feed() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let ws = create_api(&mut c, "ws", ProtocolType::Websocket).await;
    let http = create_api(&mut c, "http", ProtocolType::Http).await;
    let rest = create_api(&mut c, "rest", ProtocolType::Rest).await;

    let mut feed = s.feed_client(None).await;
    let mut stream = watch(&mut feed, WatchRequest::default())
        .await
        .expect("watch");
    let mut snapshot = Vec::new();
    loop {
        let msg = next_message(&mut stream, 20)
            .await
            .expect("msg")
            .expect("open");
        match msg.kind {
            Some(Kind::Snapshot(chunk)) => snapshot.extend(chunk.resources),
            Some(Kind::SnapshotComplete(_)) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    let in_snapshot = snapshot
        .iter()
        .find_map(|r| match &r.resource {
            Some(resource::Resource::Api(a)) if a.api_id == ws.api_id => Some(a.clone()),
            _ => None,
        })
        .expect("the websocket API in the snapshot");
    assert_eq!(in_snapshot, ws);

    // An update changes only what it names.
    let updated = c
        .update_api(UpdateApiRequest {
            api_id: ws.api_id.clone(),
            route_selection_expression: Some("$request.body.op".into()),
            api_key_selection_expression: Some(KEY_USAGE.into()),
            ..Default::default()
        })
        .await
        .expect("update websocket")
        .into_inner();
    assert_eq!(updated.route_selection_expression, "$request.body.op");
    assert_eq!(updated.api_key_selection_expression, KEY_USAGE);
    let renamed = c
        .update_api(UpdateApiRequest {
            api_id: ws.api_id.clone(),
            name: Some("chat".into()),
            ..Default::default()
        })
        .await
        .expect("rename")
        .into_inner();
    assert_eq!(renamed.route_selection_expression, "$request.body.op");
    assert_eq!(renamed.api_key_selection_expression, KEY_USAGE);

    // The change feed carries them.
    let msg = loop {
        let msg = next_message(&mut stream, 20)
            .await
            .expect("msg")
            .expect("open");
        if let Some(Kind::ChangeSet(cs)) = msg.kind {
            break cs;
        }
    };
    match &msg.events[0]
        .resource
        .as_ref()
        .and_then(|r| r.resource.clone())
    {
        Some(resource::Resource::Api(a)) => {
            assert_eq!(a.route_selection_expression, "$request.body.op");
            assert_eq!(a.api_key_selection_expression, KEY_USAGE);
        }
        other => panic!("{other:?}"),
    }

    // Updates follow the create rules for the API's protocol.
    let m = refused(
        c.update_api(UpdateApiRequest {
            api_id: ws.api_id.clone(),
            route_selection_expression: Some(String::new()),
            ..Default::default()
        })
        .await,
        "route_selection_expression",
    );
    assert!(m.contains("required for a WEBSOCKET API"), "{m}");
    refused(
        c.update_api(UpdateApiRequest {
            api_id: http.api_id.clone(),
            route_selection_expression: Some("$request.body.x".into()),
            ..Default::default()
        })
        .await,
        "route_selection_expression",
    );
    refused(
        c.update_api(UpdateApiRequest {
            api_id: http.api_id.clone(),
            api_key_selection_expression: Some(KEY_HEADER.into()),
            ..Default::default()
        })
        .await,
        "api_key_selection_expression",
    );
    let m = refused(
        c.update_api(UpdateApiRequest {
            api_id: rest.api_id.clone(),
            route_selection_expression: Some(HTTP_ROUTE.into()),
            ..Default::default()
        })
        .await,
        "route_selection_expression",
    );
    assert!(m.contains("a REST API"), "{m}");
    // "" resets the API key expression to its default.
    let reset = c
        .update_api(UpdateApiRequest {
            api_id: ws.api_id.clone(),
            api_key_selection_expression: Some(String::new()),
            ..Default::default()
        })
        .await
        .expect("reset")
        .into_inner();
    assert_eq!(reset.api_key_selection_expression, KEY_HEADER);

    // Persisted: the same after a restart.
    drop(stream);
    let s = s.restart().await;
    let mut c = s.client().await;
    for (id, route, key) in [
        (&ws.api_id, "$request.body.op", KEY_HEADER),
        (&http.api_id, HTTP_ROUTE, ""),
        (&rest.api_id, "", ""),
    ] {
        let a = c
            .get_api(GetApiRequest {
                api_id: id.clone(),
                ..Default::default()
            })
            .await
            .expect("get after restart")
            .into_inner();
        assert_eq!(
            (
                a.route_selection_expression.as_str(),
                a.api_key_selection_expression.as_str()
            ),
            (route, key)
        );
    }
    s.stop().await;
}
