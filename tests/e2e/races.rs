//! Racing requests (SPEC §2.10, §4): requests that exclude each other never both succeed, and
//! concurrent writers get distinct, gap-free revisions.
//!
//! Every race starts its contenders behind a barrier (or in one `join_all`) on a multi-threaded
//! runtime, with clients that share one channel and clients on channels of their own, so the
//! requests really overlap on the server. No test depends on who wins: each round accepts either
//! outcome and checks that the winner's effects and the loser's error agree with each other and
//! with what the server stores afterwards.

use std::collections::{BTreeSet, HashSet};

use mapreg::pb::*;
use tonic::Code;

use crate::common::*;

/// `n` clients: the even ones are clones sharing one channel, the odd ones have their own channel.
async fn clients(server: &TestServer, n: usize) -> Vec<Client> {
    let shared = server.client().await;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        if i % 2 == 0 {
            out.push(shared.clone());
        } else {
            out.push(server.client().await);
        }
    }
    out
}

/// The revision of a write made right now (creates a throwaway API).
async fn next_write_revision(c: &mut Client) -> u64 {
    create_api(c, "probe", ProtocolType::Http)
        .await
        .create_revision
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_creates_of_one_key_have_exactly_one_winner() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    let domain = "race-key.example.com";
    create_domain(&mut c, domain).await;

    // The root mapping, a single-level key and a multi-level key: each raced by 32 creates.
    for key in ["orders", "", "orders/v1"] {
        let creates = clients(&server, 32).await.into_iter().map(|mut cl| {
            let req = mapping_req(domain, key, &api.api_id, "test");
            async move { cl.create_api_mapping(req).await }
        });
        let winner = &sole_winner(key, all_at_once(creates).await);
        assert_eq!(winner.api_mapping_key, key);
        assert_eq!(winner.create_revision, winner.mod_revision);

        // The 31 failures took no revision: the next write is the winner's revision + 1.
        assert_eq!(
            next_write_revision(&mut c).await,
            winner.create_revision + 1,
            "failed creates of {key:?} must not take revisions"
        );

        let stored: Vec<ApiMapping> = all_mappings(&mut c, domain)
            .await
            .into_iter()
            .filter(|m| m.api_mapping_key == key)
            .collect();
        assert_eq!(stored.len(), 1, "one stored mapping for key {key:?}");
        assert_eq!(stored[0].api_mapping_id, winner.api_mapping_id);
    }

    // Exactly the three winners, nothing else.
    let all = all_mappings(&mut c, domain).await;
    let keys: Vec<&str> = all.iter().map(|m| m.api_mapping_key.as_str()).collect();
    assert_eq!(keys, vec!["", "orders", "orders/v1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_stage_racing_create_mapping_never_leaves_a_dangling_mapping() {
    const ROUNDS: usize = 200;
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let other = server.client().await; // its own channel
    let api = create_api(&mut c, "api", ProtocolType::Http).await;
    let domain = "race-stage.example.com";
    create_domain(&mut c, domain).await;

    let mut mapped = BTreeSet::new();
    let mut stage_deleted = 0usize;
    for round in 0..ROUNDS {
        let stage = format!("s{round}");
        let key = format!("k{round}");
        create_stage(&mut c, &api.api_id, &stage).await;

        // Alternate which channel carries which request.
        let (mut cd, mut cm) = if round % 2 == 0 {
            (c.clone(), other.clone())
        } else {
            (other.clone(), c.clone())
        };
        let del_req = DeleteStageRequest {
            api_id: api.api_id.clone(),
            stage_name: stage.clone(),
            expected_revision: 0,
            ..Default::default()
        };
        let map_req = mapping_req(domain, &key, &api.api_id, &stage);
        let (del, map) = race(async move { cd.delete_stage(del_req).await }, async move {
            cm.create_api_mapping(map_req).await
        })
        .await;

        let get_stage = c
            .get_stage(GetStageRequest {
                api_id: api.api_id.clone(),
                stage_name: stage.clone(),
                ..Default::default()
            })
            .await;
        match (del, map) {
            (Ok(_), Err(s)) => {
                assert_eq!(s.code(), Code::NotFound, "round {round}: {s:?}");
                assert_eq!(reason(&s), "STAGE_NOT_FOUND", "round {round}: {s:?}");
                assert!(
                    s.message()
                        .contains(&format!("Invalid stage identifier specified: {stage}")),
                    "round {round}: message {}",
                    s.message()
                );
                expect_err(get_stage, Code::NotFound, "STAGE_NOT_FOUND");
                stage_deleted += 1;
            }
            (Err(s), Ok(m)) => {
                assert_eq!(s.code(), Code::FailedPrecondition, "round {round}: {s:?}");
                assert_eq!(reason(&s), "STAGE_IN_USE", "round {round}: {s:?}");
                assert!(
                    s.message().contains(domain),
                    "round {round}: STAGE_IN_USE names the domain: {}",
                    s.message()
                );
                let m = m.into_inner();
                assert_eq!(
                    (m.stage.as_str(), m.api_mapping_key.as_str()),
                    (&*stage, &*key)
                );
                get_stage.unwrap_or_else(|e| panic!("round {round}: mapped stage is gone: {e:?}"));
                mapped.insert(m.api_mapping_id);
            }
            (d, m) => panic!(
                "round {round}: DeleteStage and CreateApiMapping must exclude each other; \
                 delete = {d:?}, create = {m:?}"
            ),
        }
    }
    eprintln!(
        "delete_stage race: {stage_deleted} rounds stage deleted, {} rounds mapped",
        mapped.len()
    );

    // Afterwards: the stored mappings are exactly the winners, and each one's stage exists.
    let all = all_mappings(&mut c, domain).await;
    let stored: BTreeSet<String> = all.iter().map(|m| m.api_mapping_id.clone()).collect();
    assert_eq!(
        stored, mapped,
        "stored mappings = mappings that won their round"
    );
    for m in &all {
        c.get_stage(GetStageRequest {
            api_id: m.api_id.clone(),
            stage_name: m.stage.clone(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("mapping {m:?} points at a missing stage: {e:?}"));
    }
    // Every stage that lost its race is gone; every other one still exists.
    let stages = c
        .get_stages(GetStagesRequest {
            api_id: api.api_id.clone(),
            max_results: 1000,
            next_token: String::new(),
            ..Default::default()
        })
        .await
        .expect("stages")
        .into_inner();
    let stage_names: BTreeSet<String> = stages.items.into_iter().map(|s| s.stage_name).collect();
    let mapped_stages: BTreeSet<String> = all.iter().map(|m| m.stage.clone()).collect();
    assert_eq!(stage_names, mapped_stages);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websocket_and_http_racing_onto_an_empty_domain_one_wins() {
    const ROUNDS: usize = 100;
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let other = server.client().await;
    let ws = api_with_stage(&mut c, ProtocolType::Websocket).await;
    let http = api_with_stage(&mut c, ProtocolType::Http).await;

    let mut ws_wins = 0usize;
    for round in 0..ROUNDS {
        let domain = format!("race{round}.example.com");
        create_domain(&mut c, &domain).await;
        let (mut cw, mut ch) = if round % 2 == 0 {
            (c.clone(), other.clone())
        } else {
            (other.clone(), c.clone())
        };
        let ws_req = mapping_req(&domain, "ws", &ws.api_id, "test");
        let http_req = mapping_req(&domain, "http", &http.api_id, "test");
        let (w, h) = race(
            async move { cw.create_api_mapping(ws_req).await },
            async move { ch.create_api_mapping(http_req).await },
        )
        .await;

        let (winner, ws_won) = protocol_race_winner(round, w, h);
        ws_wins += usize::from(ws_won);
        let stored = all_mappings(&mut c, &domain).await;
        assert_eq!(stored.len(), 1, "round {round}: {stored:?}");
        assert_eq!(stored[0].api_mapping_id, winner.api_mapping_id);
    }
    eprintln!("protocol race: websocket won {ws_wins} of {ROUNDS} rounds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_api_racing_create_mapping_never_leaves_a_dangling_mapping() {
    const ROUNDS: usize = 50;
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let other = server.client().await;
    let domain = "race-api.example.com";
    create_domain(&mut c, domain).await;

    let mut mapped = BTreeSet::new();
    let mut deleted_apis = Vec::new();
    for round in 0..ROUNDS {
        let api = api_with_stage(&mut c, ProtocolType::Http).await;
        let key = format!("k{round}");
        let (mut cd, mut cm) = if round % 2 == 0 {
            (c.clone(), other.clone())
        } else {
            (other.clone(), c.clone())
        };
        let del_req = DeleteApiRequest {
            api_id: api.api_id.clone(),
            expected_revision: 0,
            ..Default::default()
        };
        let map_req = mapping_req(domain, &key, &api.api_id, "test");
        let (del, map) = race(async move { cd.delete_api(del_req).await }, async move {
            cm.create_api_mapping(map_req).await
        })
        .await;

        let get_api = c
            .get_api(GetApiRequest {
                api_id: api.api_id.clone(),
                ..Default::default()
            })
            .await;
        match (del, map) {
            (Ok(_), Err(s)) => {
                assert_eq!(s.code(), Code::NotFound, "round {round}: {s:?}");
                assert_eq!(reason(&s), "API_NOT_FOUND", "round {round}: {s:?}");
                assert!(
                    s.message()
                        .contains(&format!("Invalid API identifier specified: {}", api.api_id)),
                    "round {round}: {}",
                    s.message()
                );
                expect_err(get_api, Code::NotFound, "API_NOT_FOUND");
                deleted_apis.push(api.api_id.clone());
            }
            (Err(s), Ok(m)) => {
                assert_eq!(s.code(), Code::FailedPrecondition, "round {round}: {s:?}");
                assert_eq!(reason(&s), "API_IN_USE", "round {round}: {s:?}");
                assert!(
                    s.message()
                        .contains(&format!("Deleting API {} failed", api.api_id))
                        && s.message().contains(domain),
                    "round {round}: {}",
                    s.message()
                );
                get_api.unwrap_or_else(|e| panic!("round {round}: mapped API is gone: {e:?}"));
                mapped.insert(m.into_inner().api_mapping_id);
            }
            (d, m) => panic!(
                "round {round}: DeleteApi and CreateApiMapping must exclude each other; \
                 delete = {d:?}, create = {m:?}"
            ),
        }
    }
    eprintln!(
        "delete_api race: {} rounds API deleted, {} rounds mapped",
        deleted_apis.len(),
        mapped.len()
    );

    let all = all_mappings(&mut c, domain).await;
    let stored: BTreeSet<String> = all.iter().map(|m| m.api_mapping_id.clone()).collect();
    assert_eq!(
        stored, mapped,
        "stored mappings = mappings that won their round"
    );
    for m in &all {
        c.get_api(GetApiRequest {
            api_id: m.api_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("mapping {m:?} points at a missing API: {e:?}"));
        c.get_stage(GetStageRequest {
            api_id: m.api_id.clone(),
            stage_name: m.stage.clone(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("mapping {m:?} points at a missing stage: {e:?}"));
    }
    // A deleted API took its stage with it.
    for id in &deleted_apis {
        let r = c
            .get_stage(GetStageRequest {
                api_id: id.clone(),
                stage_name: "test".into(),
                ..Default::default()
            })
            .await;
        assert_eq!(
            r.expect_err("stage of a deleted API").code(),
            Code::NotFound
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_get_distinct_contiguous_revisions() {
    const TASKS: usize = 8;
    const PER_TASK: usize = 50;
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let before = next_write_revision(&mut c).await;

    let writers = clients(&server, TASKS)
        .await
        .into_iter()
        .enumerate()
        .map(|(t, mut cl)| {
            async move {
                let mut revs = Vec::with_capacity(PER_TASK);
                for i in 0..PER_TASK {
                    // Half the writers create APIs, half create domain names.
                    let (create, modified) = if t % 2 == 0 {
                        let a = cl
                            .create_api(CreateApiRequest {
                                name: format!("t{t}-{i}"),
                                protocol_type: ProtocolType::Http as i32,
                                ..Default::default()
                            })
                            .await
                            .expect("create api")
                            .into_inner();
                        (a.create_revision, a.mod_revision)
                    } else {
                        let d = cl
                            .create_domain_name(CreateDomainNameRequest {
                                domain_name: format!("t{t}-{i}.example.com"),
                                ..Default::default()
                            })
                            .await
                            .expect("create domain")
                            .into_inner();
                        (d.create_revision, d.mod_revision)
                    };
                    assert_eq!(create, modified, "a fresh record's create = mod revision");
                    revs.push(create);
                }
                revs
            }
        });
    let per_task: Vec<Vec<u64>> = all_at_once(writers).await;

    // Within one task the writes are sequential, so each one is answered after the previous
    // committed: its revisions strictly increase.
    for (t, revs) in per_task.iter().enumerate() {
        assert!(
            revs.windows(2).all(|w| w[0] < w[1]),
            "task {t}: revisions not increasing: {revs:?}"
        );
    }
    let all: Vec<u64> = per_task.into_iter().flatten().collect();
    let distinct: HashSet<u64> = all.iter().copied().collect();
    assert_eq!(distinct.len(), TASKS * PER_TASK, "revisions are distinct");
    let mut sorted = all;
    sorted.sort_unstable();
    let expected: Vec<u64> = (before + 1..=before + (TASKS * PER_TASK) as u64).collect();
    assert_eq!(sorted, expected, "revisions are contiguous after {before}");
    assert_eq!(
        next_write_revision(&mut c).await,
        before + (TASKS * PER_TASK) as u64 + 1
    );
}
