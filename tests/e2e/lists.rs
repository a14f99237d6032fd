//! Keyset pagination of GetApis, GetStages, GetDomainNames and GetApiMappings (SPEC §3 "Lists").
//!
//! Each list is driven through one small adapter ([`Kind`]) so every property is checked on all
//! four lists. Sort keys: Apis by api_id, Stages by name, DomainNames by name, ApiMappings by key.

use std::collections::{BTreeSet, HashSet};

use futures::StreamExt;
use mapreg::pb::*;
use tonic::{Code, Status};

use crate::common::*;

/// One of the four lists, with what it needs to add and remove items.
#[derive(Clone, Debug)]
enum Kind {
    Apis,
    /// The stages of this API.
    Stages(String),
    Domains,
    /// The mappings of `domain`, all to `api_id` + stage `test`.
    Mappings {
        domain: String,
        api_id: String,
    },
}

const ALL_KINDS: [&str; 4] = ["apis", "stages", "domains", "mappings"];

impl Kind {
    /// Prepares a list of `name` that starts empty.
    async fn setup(c: &mut Client, name: &str) -> Kind {
        match name {
            "apis" => Kind::Apis,
            "stages" => {
                let api = create_api(c, "stage-holder", ProtocolType::Http).await;
                Kind::Stages(api.api_id)
            }
            "domains" => Kind::Domains,
            "mappings" => {
                let api = api_with_stage(c, ProtocolType::Http).await;
                let domain = "mapped.example.com".to_string();
                create_domain(c, &domain).await;
                Kind::Mappings {
                    domain,
                    api_id: api.api_id,
                }
            }
            other => panic!("unknown list {other}"),
        }
    }

    /// The item a name gives in this list: APIs take it as their name, domains get
    /// `.example.com` appended, stages and mapping keys use it as is.
    fn domain_of(name: &str) -> String {
        format!("{name}.example.com")
    }

    /// Adds an item; returns its sort key.
    async fn add(&self, c: &mut Client, name: &str) -> String {
        match self {
            Kind::Apis => create_api(c, name, ProtocolType::Http).await.api_id,
            Kind::Stages(api_id) => create_stage(c, api_id, name).await.stage_name,
            Kind::Domains => create_domain(c, &Self::domain_of(name)).await.domain_name,
            Kind::Mappings { domain, api_id } => {
                create_mapping(c, domain, name, api_id, "test")
                    .await
                    .api_mapping_key
            }
        }
    }

    /// Adds many items concurrently (16 in flight); returns their sort keys.
    async fn add_many(&self, c: &Client, names: Vec<String>) -> Vec<String> {
        futures::stream::iter(names)
            .map(|n| {
                let mut c = c.clone();
                let kind = self.clone();
                async move { kind.add(&mut c, &n).await }
            })
            .buffer_unordered(16)
            .collect()
            .await
    }

    /// Removes the item with this sort key.
    async fn remove(&self, c: &mut Client, sort_key: &str) {
        match self {
            Kind::Apis => {
                c.delete_api(DeleteApiRequest {
                    api_id: sort_key.into(),
                    expected_revision: 0,
                    ..Default::default()
                })
                .await
                .expect("delete api");
            }
            Kind::Stages(api_id) => {
                c.delete_stage(DeleteStageRequest {
                    api_id: api_id.clone(),
                    stage_name: sort_key.into(),
                    expected_revision: 0,
                    ..Default::default()
                })
                .await
                .expect("delete stage");
            }
            Kind::Domains => {
                c.delete_domain_name(DeleteDomainNameRequest {
                    domain_name: sort_key.into(),
                    expected_revision: 0,
                    ..Default::default()
                })
                .await
                .expect("delete domain");
            }
            Kind::Mappings { domain, .. } => {
                let m = all_mappings(c, domain)
                    .await
                    .into_iter()
                    .find(|m| m.api_mapping_key == sort_key)
                    .expect("mapping to remove");
                c.delete_api_mapping(DeleteApiMappingRequest {
                    domain_name: domain.clone(),
                    api_mapping_id: m.api_mapping_id,
                    expected_revision: 0,
                    ..Default::default()
                })
                .await
                .expect("delete mapping");
            }
        }
    }

    /// One page: the items' sort keys and the next token.
    async fn page(
        &self,
        c: &mut Client,
        max_results: i32,
        next_token: &str,
    ) -> Result<(Vec<String>, String), Status> {
        let next_token = next_token.to_string();
        Ok(match self {
            Kind::Apis => {
                let r = c
                    .get_apis(GetApisRequest {
                        max_results,
                        next_token,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                (
                    r.items.into_iter().map(|a| a.api_id).collect(),
                    r.next_token,
                )
            }
            Kind::Stages(api_id) => {
                let r = c
                    .get_stages(GetStagesRequest {
                        api_id: api_id.clone(),
                        max_results,
                        next_token,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                (
                    r.items.into_iter().map(|s| s.stage_name).collect(),
                    r.next_token,
                )
            }
            Kind::Domains => {
                let r = c
                    .get_domain_names(GetDomainNamesRequest {
                        max_results,
                        next_token,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                (
                    r.items.into_iter().map(|d| d.domain_name).collect(),
                    r.next_token,
                )
            }
            Kind::Mappings { domain, .. } => {
                let r = c
                    .get_api_mappings(GetApiMappingsRequest {
                        domain_name: domain.clone(),
                        max_results,
                        next_token,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                (
                    r.items.into_iter().map(|m| m.api_mapping_key).collect(),
                    r.next_token,
                )
            }
        })
    }

    /// Walks every page with `max_results`; returns the pages. At most `max_pages` requests.
    async fn walk(&self, c: &mut Client, max_results: i32, max_pages: usize) -> Vec<Vec<String>> {
        let mut pages = Vec::new();
        let mut token = String::new();
        for _ in 0..max_pages {
            let (items, next) = self
                .page(c, max_results, &token)
                .await
                .unwrap_or_else(|e| panic!("{self:?}: page after {token:?}: {e:?}"));
            pages.push(items);
            if next.is_empty() {
                return pages;
            }
            token = next;
        }
        panic!("{self:?}: more than {max_pages} pages of {max_results}");
    }
}

/// `n` names `n0000`, `n0001`, ...
fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("n{i:04}")).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn default_page_is_100_and_max_results_1000_is_accepted() {
    for name in ALL_KINDS {
        let server = TestServer::start().await;
        let mut c = server.client().await;
        let kind = Kind::setup(&mut c, name).await;
        let expected = sorted(kind.add_many(&c, names(150)).await);
        assert_eq!(expected.len(), 150);

        let (first, token) = kind.page(&mut c, 0, "").await.expect("first page");
        assert_eq!(first.len(), 100, "{name}: default page size");
        assert!(!token.is_empty(), "{name}: first page has a next_token");
        let (second, token2) = kind.page(&mut c, 0, &token).await.expect("second page");
        assert_eq!(second.len(), 50, "{name}: second page holds the rest");
        assert!(token2.is_empty(), "{name}: last page has no next_token");
        let walked: Vec<String> = first.into_iter().chain(second).collect();
        assert_eq!(
            walked, expected,
            "{name}: two default pages = every item, in order"
        );

        let (big, token) = kind.page(&mut c, 1000, "").await.expect("max_results 1000");
        assert_eq!(big, expected, "{name}: max_results 1000 returns all 150");
        assert!(token.is_empty(), "{name}");
        server.stop().await;
    }
}

#[tokio::test]
async fn max_results_out_of_range_is_refused() {
    for name in ALL_KINDS {
        let server = TestServer::start().await;
        let mut c = server.client().await;
        let kind = Kind::setup(&mut c, name).await;
        kind.add_many(&c, names(3)).await;
        for bad in [1001, 5000, i32::MAX, -1, i32::MIN] {
            let s = match kind.page(&mut c, bad, "").await {
                Ok(p) => panic!("{name}: max_results {bad} accepted: {p:?}"),
                Err(s) => s,
            };
            assert_eq!(s.code(), Code::InvalidArgument, "{name} {bad}: {s:?}");
            assert_eq!(reason(&s), "INVALID_MAX_RESULTS", "{name} {bad}: {s:?}");
            assert_eq!(violated_fields(&s), vec!["max_results"], "{name} {bad}");
            assert!(s.message().contains("max_results"), "{}", s.message());
        }
        // The bounds themselves are fine.
        for ok in [1, 1000] {
            kind.page(&mut c, ok, "")
                .await
                .unwrap_or_else(|e| panic!("{name}: max_results {ok}: {e:?}"));
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn walking_pages_of_7_yields_every_item_once_in_a_stable_order() {
    for name in ALL_KINDS {
        let server = TestServer::start().await;
        let mut c = server.client().await;
        let kind = Kind::setup(&mut c, name).await;
        // Names whose byte order is not the obvious one, plus plain ones.
        let mut input = names(33);
        match name {
            "stages" => input.extend(
                ["$default", "A", "Z", "a", "_x", "-x", "n0001-", "n0001_"].map(String::from),
            ),
            "mappings" => input.extend(
                [
                    "",
                    "$x",
                    "A",
                    "a.b",
                    "orders",
                    "orders/v1",
                    "orders/v1/x",
                    "orders-x",
                    "Orders",
                    "n0001/z",
                ]
                .map(String::from),
            ),
            "domains" => input.extend(["*.wild", "a-b", "a.b", "z9"].map(String::from)),
            _ => input.extend(names(7).into_iter().map(|n| n + "dup-name")),
        }
        let n_input = input.len();
        let expected = sorted(kind.add_many(&c, input).await);
        assert_eq!(expected.len(), n_input);

        let pages = kind.walk(&mut c, 7, 100).await;
        let n = expected.len();
        assert_eq!(pages.len(), n.div_ceil(7), "{name}: page count");
        for (i, p) in pages.iter().enumerate() {
            let want = if i + 1 < pages.len() { 7 } else { n - 7 * i };
            assert_eq!(p.len(), want, "{name}: page {i} size");
        }
        let walked: Vec<String> = pages.concat();
        assert_eq!(
            walked, expected,
            "{name}: every item once, in sort-key order"
        );

        // Stable: the same walk again, and walks with other page sizes, give the same order.
        assert_eq!(kind.walk(&mut c, 7, 100).await.concat(), expected, "{name}");
        assert_eq!(
            kind.walk(&mut c, 1000, 2).await.concat(),
            expected,
            "{name}"
        );
        assert_eq!(kind.walk(&mut c, 2, 100).await.concat(), expected, "{name}");
        server.stop().await;
    }
}

/// Exactly two full pages: the second one is the last, so its next_token is empty.
#[tokio::test]
async fn a_full_last_page_has_no_next_token() {
    for name in ALL_KINDS {
        let server = TestServer::start().await;
        let mut c = server.client().await;
        let kind = Kind::setup(&mut c, name).await;
        let expected = sorted(kind.add_many(&c, names(14)).await);
        let pages = kind.walk(&mut c, 7, 10).await;
        assert_eq!(pages.len(), 2, "{name}: 14 items = 2 pages of 7");
        assert_eq!(pages.concat(), expected);
        server.stop().await;
    }
}

/// Page size 1 over a domain whose first mapping is the root mapping (key ""): the first page
/// ends on the root, so its next_token must carry an empty "last key" and still be accepted.
#[tokio::test]
async fn mapping_pages_of_1_walk_past_the_root_mapping() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let kind = Kind::setup(&mut c, "mappings").await;
    let input: Vec<String> = ["", "a", "b", "c"].map(String::from).into();
    let expected = sorted(kind.add_many(&c, input).await);

    let (first, token) = kind.page(&mut c, 1, "").await.expect("first page");
    assert_eq!(first, vec![String::new()], "the root mapping sorts first");
    assert!(!token.is_empty(), "more mappings follow the root");
    let second = kind.page(&mut c, 1, &token).await;
    let (second, _) = second.unwrap_or_else(|e| {
        panic!("the next_token returned after the root mapping is refused: {e:?}")
    });
    assert_eq!(second, vec!["a".to_string()]);
    assert_eq!(kind.walk(&mut c, 1, 10).await.concat(), expected);
}

#[tokio::test]
async fn writes_between_pages_neither_duplicate_nor_skip() {
    for name in ALL_KINDS {
        let server = TestServer::start().await;
        let mut c = server.client().await;
        let kind = Kind::setup(&mut c, name).await;
        // Stable items `nNNN0` live throughout; transient ones `nNNN5` sit between them and are
        // deleted during the walk (including, where it lands on one, the page's last item: the
        // cursor of the next page).
        let stable: BTreeSet<String> = kind
            .add_many(&c, (0..30).map(|i| format!("n{i:03}0")).collect())
            .await
            .into_iter()
            .collect();
        let mut transient: BTreeSet<String> = kind
            .add_many(&c, (0..30).map(|i| format!("n{i:03}5")).collect())
            .await
            .into_iter()
            .collect();
        let mut ever: HashSet<String> = stable.iter().chain(&transient).cloned().collect();

        let mut walked: Vec<String> = Vec::new();
        let mut token = String::new();
        let mut extra = 0usize;
        for round in 0..200 {
            let (items, next) = kind
                .page(&mut c, 7, &token)
                .await
                .unwrap_or_else(|e| panic!("{name}: page {round}: {e:?}"));
            walked.extend(items.iter().cloned());
            if next.is_empty() {
                break;
            }
            token = next;

            // Delete the cursor item if it is transient.
            let last = items
                .last()
                .expect("a page with a next_token has items")
                .clone();
            if transient.remove(&last) {
                kind.remove(&mut c, &last).await;
            }
            // Delete one transient item already seen and one not yet seen.
            if let Some(seen) = transient.iter().find(|t| walked.contains(t)).cloned() {
                transient.remove(&seen);
                kind.remove(&mut c, &seen).await;
            }
            if let Some(unseen) = transient.last().cloned() {
                transient.remove(&unseen);
                kind.remove(&mut c, &unseen).await;
            }
            // Create new items, before and after the cursor (for APIs: wherever ids fall).
            for pos in ["n000", "n999", "n0155", &format!("{last}x")] {
                let new_name = format!("{pos}-{extra}");
                extra += 1;
                let key = kind.add(&mut c, &new_name).await;
                ever.insert(key);
            }
            assert!(round < 199, "{name}: walk did not end");
        }

        let unique: HashSet<&String> = walked.iter().collect();
        assert_eq!(
            unique.len(),
            walked.len(),
            "{name}: an item came twice: {walked:?}"
        );
        assert!(
            walked.windows(2).all(|w| w[0] < w[1]),
            "{name}: walk not in sort-key order: {walked:?}"
        );
        for s in &stable {
            assert!(walked.contains(s), "{name}: stable item {s} was skipped");
        }
        for w in &walked {
            assert!(ever.contains(w), "{name}: walk returned unknown item {w}");
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn next_token_is_bound_to_its_list() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    for d in ["one.example.com", "two.example.com"] {
        create_domain(&mut c, d).await;
        for k in names(10) {
            create_mapping(&mut c, d, &k, &api.api_id, "test").await;
        }
    }
    let page = c
        .get_api_mappings(GetApiMappingsRequest {
            domain_name: "one.example.com".into(),
            max_results: 3,
            next_token: String::new(),
            ..Default::default()
        })
        .await
        .expect("page")
        .into_inner();
    assert!(!page.next_token.is_empty());

    // Another domain's GetApiMappings refuses it.
    let s = expect_err(
        c.get_api_mappings(GetApiMappingsRequest {
            domain_name: "two.example.com".into(),
            max_results: 3,
            next_token: page.next_token.clone(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "INVALID_NEXT_TOKEN",
    );
    assert_eq!(violated_fields(&s), vec!["next_token"]);
    assert!(s.message().contains("next_token"), "{}", s.message());

    // The same domain spelled in upper case is the same list (domains are lower-cased).
    let upper = c
        .get_api_mappings(GetApiMappingsRequest {
            domain_name: "ONE.Example.COM".into(),
            max_results: 3,
            next_token: page.next_token.clone(),
            ..Default::default()
        })
        .await
        .expect("same domain, other case")
        .into_inner();
    let keys: Vec<String> = upper.items.into_iter().map(|m| m.api_mapping_key).collect();
    assert_eq!(keys, names(6)[3..].to_vec());

    // Other lists refuse it too.
    expect_err(
        c.get_domain_names(GetDomainNamesRequest {
            max_results: 3,
            next_token: page.next_token.clone(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "INVALID_NEXT_TOKEN",
    );
    expect_err(
        c.get_apis(GetApisRequest {
            max_results: 3,
            next_token: page.next_token.clone(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "INVALID_NEXT_TOKEN",
    );

    // A GetStages token of one API on another API's stages.
    let other_api = api_with_stage(&mut c, ProtocolType::Http).await;
    for s in ["a", "b", "c"] {
        create_stage(&mut c, &api.api_id, s).await;
    }
    let stages = c
        .get_stages(GetStagesRequest {
            api_id: api.api_id.clone(),
            max_results: 1,
            next_token: String::new(),
            ..Default::default()
        })
        .await
        .expect("stages")
        .into_inner();
    assert!(!stages.next_token.is_empty());
    expect_err(
        c.get_stages(GetStagesRequest {
            api_id: other_api.api_id.clone(),
            max_results: 1,
            next_token: stages.next_token.clone(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "INVALID_NEXT_TOKEN",
    );

    // A GetApis token on GetDomainNames.
    let apis = c
        .get_apis(GetApisRequest {
            max_results: 1,
            next_token: String::new(),
            ..Default::default()
        })
        .await
        .expect("apis")
        .into_inner();
    assert!(!apis.next_token.is_empty());
    expect_err(
        c.get_domain_names(GetDomainNamesRequest {
            max_results: 1,
            next_token: apis.next_token.clone(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "INVALID_NEXT_TOKEN",
    );

    // Garbage.
    for garbage in ["!!!", "not a token", "djE", &"A".repeat(5000)] {
        expect_err(
            c.get_apis(GetApisRequest {
                max_results: 0,
                next_token: garbage.to_string(),
                ..Default::default()
            })
            .await,
            Code::InvalidArgument,
            "INVALID_NEXT_TOKEN",
        );
    }
}

#[tokio::test]
async fn empty_lists_have_no_items_and_no_next_token() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    for name in ["apis", "domains"] {
        let kind = Kind::setup(&mut c, name).await;
        for max in [0, 1, 7, 1000] {
            let (items, token) = kind.page(&mut c, max, "").await.expect("empty list");
            assert!(items.is_empty(), "{name}: {items:?}");
            assert!(token.is_empty(), "{name}: {token:?}");
        }
    }
    // An API without stages, a domain without mappings.
    for name in ["stages", "mappings"] {
        let kind = Kind::setup(&mut c, name).await;
        for max in [0, 1, 7, 1000] {
            let (items, token) = kind.page(&mut c, max, "").await.expect("empty list");
            assert!(items.is_empty(), "{name}: {items:?}");
            assert!(token.is_empty(), "{name}: {token:?}");
        }
    }
    // A list that empties again.
    let kind = Kind::setup(&mut c, "domains").await;
    let d = kind.add(&mut c, "gone").await;
    kind.remove(&mut c, &d).await;
    let (items, token) = kind.page(&mut c, 0, "").await.expect("list");
    assert_eq!(items, vec!["mapped.example.com".to_string()]);
    assert!(token.is_empty());

    // Lists under a parent that does not exist are NOT_FOUND, not empty.
    expect_err(
        c.get_api_mappings(GetApiMappingsRequest {
            domain_name: "nowhere.example.com".into(),
            ..Default::default()
        })
        .await,
        Code::NotFound,
        "DOMAIN_NAME_NOT_FOUND",
    );
    expect_err(
        c.get_stages(GetStagesRequest {
            api_id: "abcdefghij".into(),
            ..Default::default()
        })
        .await,
        Code::NotFound,
        "API_NOT_FOUND",
    );
}

#[tokio::test]
async fn lists_show_only_the_callers_account() {
    let server = TestServer::start_with_tokens().await;
    let mut a = server.client_with("admin-a").await;
    let mut b = server.client_with("admin-b").await;
    let mut reader_a = server.client_with("reader-a").await;
    let mut gateway = server.client_with("gateway").await;

    // Interleaved: b's names sort between a's.
    let mut a_apis = BTreeSet::new();
    let mut b_apis = BTreeSet::new();
    let mut a_domains = BTreeSet::new();
    let mut b_domains = BTreeSet::new();
    for i in 0..12 {
        a_apis.insert(create_api(&mut a, "a", ProtocolType::Http).await.api_id);
        b_apis.insert(create_api(&mut b, "b", ProtocolType::Http).await.api_id);
        a_domains.insert(
            create_domain(&mut a, &format!("n{i:02}a.example.com"))
                .await
                .domain_name,
        );
        b_domains.insert(
            create_domain(&mut b, &format!("n{i:02}b.example.com"))
                .await
                .domain_name,
        );
    }
    let a_api = a_apis.first().unwrap().clone();
    let b_api = b_apis.first().unwrap().clone();
    let a_domain = a_domains.first().unwrap().clone();
    let b_domain = b_domains.first().unwrap().clone();
    for s in names(9) {
        create_stage(&mut a, &a_api, &s).await;
        create_stage(&mut b, &b_api, &s).await;
    }
    for k in names(9) {
        create_mapping(&mut a, &a_domain, &k, &a_api, "n0000").await;
        create_mapping(&mut b, &b_domain, &k, &b_api, "n0000").await;
    }

    let set = |pages: Vec<Vec<String>>| -> BTreeSet<String> {
        let all = pages.concat();
        let s: BTreeSet<String> = all.iter().cloned().collect();
        assert_eq!(s.len(), all.len(), "no duplicates: {all:?}");
        s
    };

    // Walking with small pages shows exactly the caller's own records.
    for c in [&mut a, &mut reader_a] {
        assert_eq!(set(Kind::Apis.walk(c, 5, 20).await), a_apis);
        assert_eq!(set(Kind::Domains.walk(c, 5, 20).await), a_domains);
    }
    assert_eq!(set(Kind::Apis.walk(&mut b, 5, 20).await), b_apis);
    assert_eq!(set(Kind::Domains.walk(&mut b, 5, 20).await), b_domains);

    // Every listed record carries the caller's account.
    let apis = a
        .get_apis(GetApisRequest::default())
        .await
        .expect("apis")
        .into_inner();
    assert!(apis.items.iter().all(|x| x.account_id == "111122223333"));
    let domains = b
        .get_domain_names(GetDomainNamesRequest::default())
        .await
        .expect("domains")
        .into_inner();
    assert!(domains.items.iter().all(|x| x.account_id == "444455556666"));

    // Another account's API / domain: its stages / mappings are NOT_FOUND, as if absent.
    expect_err(
        b.get_stages(GetStagesRequest {
            api_id: a_api.clone(),
            ..Default::default()
        })
        .await,
        Code::NotFound,
        "API_NOT_FOUND",
    );
    expect_err(
        a.get_api_mappings(GetApiMappingsRequest {
            domain_name: b_domain.clone(),
            ..Default::default()
        })
        .await,
        Code::NotFound,
        "DOMAIN_NAME_NOT_FOUND",
    );
    let a_stages = Kind::Stages(a_api.clone());
    assert_eq!(a_stages.walk(&mut reader_a, 4, 10).await.concat(), names(9));
    let a_maps = Kind::Mappings {
        domain: a_domain.clone(),
        api_id: a_api.clone(),
    };
    assert_eq!(a_maps.walk(&mut a, 4, 10).await.concat(), names(9));

    // The gateway role reads across accounts.
    let everyone: BTreeSet<String> = a_apis.union(&b_apis).cloned().collect();
    assert_eq!(set(Kind::Apis.walk(&mut gateway, 5, 20).await), everyone);
    let everyone: BTreeSet<String> = a_domains.union(&b_domains).cloned().collect();
    assert_eq!(set(Kind::Domains.walk(&mut gateway, 5, 20).await), everyone);
    assert_eq!(a_maps.walk(&mut gateway, 4, 10).await.concat(), names(9));
    let b_stages = Kind::Stages(b_api.clone());
    assert_eq!(b_stages.walk(&mut gateway, 4, 10).await.concat(), names(9));
}
