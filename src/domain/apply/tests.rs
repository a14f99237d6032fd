//! Rule tests at the `apply` level: a write against a version, no server, no storage.

use super::*;
use crate::error::Error;

const ACC: &str = "111122223333";

fn now() -> Timestamp {
    Timestamp {
        seconds: 1_700_000_000,
        nanos: 0,
    }
}

fn run(s: &mut State, op: WriteOp) -> Result<Applied, Violation> {
    apply(s, &op, &Limits::default(), now())
}

fn ok(s: &mut State, op: WriteOp) -> Applied {
    match run(s, op) {
        Ok(a) => a,
        Err(e) => panic!("refused: {e}"),
    }
}

fn reason(r: Result<Applied, Violation>) -> &'static str {
    match r {
        Ok(a) => panic!("accepted: {:?}", a.result),
        Err(e) => e.reason(),
    }
}

fn api(s: &mut State, protocol: ProtocolType) -> String {
    match ok(
        s,
        WriteOp::CreateApi {
            account: ACC.into(),
            name: "n".into(),
            protocol,
            description: String::new(),
            tags: Default::default(),
            selection: crate::domain::selection::for_create(
                protocol,
                if protocol == ProtocolType::Websocket {
                    "$request.body.action"
                } else {
                    ""
                },
                "",
            )
            .unwrap_or_default(),
        },
    )
    .result
    {
        WriteResult::Api(a) => a.api_id,
        other => panic!("{other:?}"),
    }
}

fn stage(s: &mut State, api_id: &str, name: &str) {
    ok(
        s,
        WriteOp::CreateStage {
            account: ACC.into(),
            api_id: api_id.into(),
            stage_name: name.into(),
            description: String::new(),
            tags: Default::default(),
        },
    );
}

fn domain(s: &mut State, name: &str) {
    ok(
        s,
        WriteOp::CreateDomainName {
            account: ACC.into(),
            domain_name: name.into(),
            configuration: crate::domain::rules::configuration_for_create(vec![])
                .unwrap_or_default(),
            tags: Default::default(),
        },
    );
}

fn create_mapping(s: &mut State, d: &str, key: &str, api_id: &str) -> Result<Applied, Violation> {
    run(
        s,
        WriteOp::CreateApiMapping {
            account: ACC.into(),
            domain_name: d.into(),
            api_mapping_key: key.into(),
            api_id: api_id.into(),
            stage: "test".into(),
        },
    )
}

/// A state with an API of each of `protocols`, each with a stage `test`, and then domain name
/// `domain_name`, written in that order; the APIs' ids.
fn registry<const N: usize>(
    protocols: [ProtocolType; N],
    domain_name: &str,
) -> (State, [String; N]) {
    let mut s = State::default();
    let ids = protocols.map(|p| api(&mut s, p));
    for id in &ids {
        stage(&mut s, id, "test");
    }
    domain(&mut s, domain_name);
    (s, ids)
}

fn mapping_id(a: &Applied) -> String {
    match &a.result {
        WriteResult::ApiMapping(m) => m.api_mapping_id.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn each_write_takes_the_next_revision_and_stamps_it() {
    let (mut s, [a]) = registry([ProtocolType::Http], "a.com");
    let m = create_mapping(&mut s, "a.com", "v1", &a).unwrap();
    assert_eq!((m.revision, s.revision()), (4, 4));
    let stored = s.mapping("a.com", &mapping_id(&m)).unwrap();
    assert_eq!((stored.create_revision, stored.mod_revision), (4, 4));
    assert_eq!(m.events.len(), 1);
}

#[test]
fn a_refused_write_leaves_no_trace() {
    let (mut s, [a, ws]) = registry([ProtocolType::Http, ProtocolType::Websocket], "a.com");
    create_mapping(&mut s, "a.com", "v1", &a).unwrap();
    let trace = |s: &State| {
        (
            s.revision(),
            s.counts(),
            s.domain("a.com").map(|d| d.counters),
        )
    };
    let before = trace(&s);
    assert_eq!(
        reason(create_mapping(&mut s, "a.com", "v1", &a)),
        "MAPPING_KEY_CONFLICT"
    );
    assert_eq!(
        reason(create_mapping(&mut s, "a.com", "v2", &ws)),
        "PROTOCOL_CONFLICT"
    );
    assert_eq!(
        reason(create_mapping(&mut s, "b.com", "v2", &a)),
        "DOMAIN_NAME_NOT_FOUND"
    );
    assert_eq!(
        reason(create_mapping(&mut s, "a.com", "v2", "nope")),
        "API_NOT_FOUND"
    );
    assert_eq!(before, trace(&s));
}

#[test]
fn another_accounts_records_are_absent() {
    let mut s = State::default();
    let a = api(&mut s, ProtocolType::Http);
    stage(&mut s, &a, "test");
    let r = run(
        &mut s,
        WriteOp::CreateStage {
            account: "999999999999".into(),
            api_id: a.clone(),
            stage_name: "x".into(),
            description: String::new(),
            tags: Default::default(),
        },
    );
    assert_eq!(reason(r), "API_NOT_FOUND");
}

#[test]
fn deletes_refuse_to_dangle_and_domain_delete_cascades() {
    let (mut s, [a]) = registry([ProtocolType::Http], "a.com");
    create_mapping(&mut s, "a.com", "", &a).unwrap();
    create_mapping(&mut s, "a.com", "v1", &a).unwrap();
    let del_api = || WriteOp::DeleteApi {
        account: ACC.into(),
        api_id: a.clone(),
        expected_revision: 0,
    };
    let e = run(&mut s, del_api()).unwrap_err();
    assert_eq!(
        Error::from(e).to_string(),
        format!(
            "Deleting API {a} failed. Please remove all API mappings for the API from your custom domain names: a.com"
        )
    );
    let d = ok(
        &mut s,
        WriteOp::DeleteDomainName {
            account: ACC.into(),
            domain_name: "a.com".into(),
            expected_revision: 0,
        },
    );
    // Two mapping deletes, then the domain, in one revision.
    assert_eq!(d.events.len(), 3);
    assert_eq!(s.counts().3, 0);
    let gone = ok(&mut s, del_api());
    // The API's stage goes with it.
    assert_eq!(gone.events.len(), 2);
    assert_eq!(s.counts(), (0, 0, 0, 0));
}

#[test]
fn updates_recheck_and_move_references() {
    let (mut s, [a, b]) = registry([ProtocolType::Http, ProtocolType::Rest], "a.com");
    let m = mapping_id(&create_mapping(&mut s, "a.com", "v1", &a).unwrap());
    create_mapping(&mut s, "a.com", "v2", &a).unwrap();
    let upd = |key: Option<&str>, api_id: Option<&str>, expected: u64| WriteOp::UpdateApiMapping {
        account: ACC.into(),
        domain_name: "a.com".into(),
        api_mapping_id: m.clone(),
        api_mapping_key: key.map(str::to_string),
        api_id: api_id.map(str::to_string),
        stage: None,
        expected_revision: expected,
    };
    assert_eq!(
        reason(run(&mut s, upd(Some("v2"), None, 0))),
        "MAPPING_KEY_CONFLICT"
    );
    assert_eq!(reason(run(&mut s, upd(None, None, 1))), "REVISION_MISMATCH");
    // Re-keying to its own key is no conflict.
    ok(&mut s, upd(Some("v1"), None, 0));
    ok(&mut s, upd(None, Some(&b), 0));
    assert_eq!(s.domains_using_api(&b), vec!["a.com".to_string()]);
    assert_eq!(s.domains_using_api(&a), vec!["a.com".to_string()]); // v2 still points at a
    assert_eq!(s.domain("a.com").unwrap().counters.rest, 1);
}

#[test]
fn websocket_and_http_racing_onto_an_empty_domain_one_wins() {
    let (mut s, [a, ws]) = registry([ProtocolType::Http, ProtocolType::Websocket], "a.com");
    // The writer applies one after the other: the second sees the first.
    assert!(create_mapping(&mut s, "a.com", "x", &ws).is_ok());
    assert_eq!(
        reason(create_mapping(&mut s, "a.com", "y", &a)),
        "PROTOCOL_CONFLICT"
    );
}

#[test]
fn tag_writes_merge_remove_and_refuse_past_the_limit() {
    use crate::domain::arn::Tagged;
    let (mut s, [api_id]) = registry([ProtocolType::Http], "a.example.com");
    let tag = |target: Tagged, set: &[(&str, &str)], remove: &[&str], expected: u64| WriteOp::Tag {
        account: ACC.into(),
        target,
        set: set
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        remove: remove.iter().map(|k| k.to_string()).collect(),
        expected_revision: expected,
    };
    let on_api = || Tagged::Api {
        api_id: api_id.clone(),
    };
    let a = ok(
        &mut s,
        tag(on_api(), &[("team", "a"), ("env", "dev")], &[], 0),
    );
    assert_eq!(a.events.len(), 1, "one PUT event");
    let WriteResult::Api(tagged) = a.result else {
        panic!("{:?}", a.result)
    };
    assert_eq!(tagged.mod_revision, a.revision);
    assert_eq!(tagged.tags.len(), 2);
    let a = ok(
        &mut s,
        tag(on_api(), &[("env", "prod")], &["team"], a.revision),
    );
    let WriteResult::Api(tagged) = a.result else {
        panic!("{:?}", a.result)
    };
    assert_eq!(
        tagged.tags,
        [("env".to_string(), "prod".to_string())].into()
    );
    // A stale expected_revision, another account, a missing stage, too many tags.
    assert_eq!(
        reason(run(&mut s, tag(on_api(), &[], &["env"], 1))),
        "REVISION_MISMATCH"
    );
    let mut other = tag(on_api(), &[("x", "y")], &[], 0);
    if let WriteOp::Tag { account, .. } = &mut other {
        *account = "444455556666".into();
    }
    assert_eq!(reason(run(&mut s, other)), "API_NOT_FOUND");
    let missing = Tagged::Stage {
        api_id: api_id.clone(),
        stage_name: "prod".into(),
    };
    assert_eq!(
        reason(run(&mut s, tag(missing, &[("x", "y")], &[], 0))),
        "STAGE_NOT_FOUND"
    );
    let many: Vec<(String, String)> = (0..50).map(|i| (format!("k{i}"), String::new())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let revision = s.revision();
    assert_eq!(
        reason(run(&mut s, tag(on_api(), &many, &[], 0))),
        "INVALID_TAGS"
    );
    assert_eq!(
        s.revision(),
        revision,
        "a refused tag write leaves no trace"
    );
    // Stages and domain names take tags too.
    let st = Tagged::Stage {
        api_id: api_id.clone(),
        stage_name: "test".into(),
    };
    assert!(
        matches!(ok(&mut s, tag(st, &[("a", "b")], &[], 0)).result, WriteResult::Stage(x) if x.tags.len() == 1)
    );
    let d = Tagged::DomainName {
        domain_name: "a.example.com".into(),
    };
    assert!(
        matches!(ok(&mut s, tag(d, &[("a", "b")], &[], 0)).result, WriteResult::DomainName(x) if x.tags.len() == 1)
    );
}
