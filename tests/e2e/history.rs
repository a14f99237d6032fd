//! A checker for what ChangeFeed.Watch streams delivered, against a reference log.
//!
//! The guarantees checked are etcd's (SPEC section 3, ChangeFeed):
//!
//! - **ordered**: change_set revisions strictly increase within a watcher's history;
//! - **unique**: no revision is delivered twice (also not across a resume);
//! - **reliable**: for the range a watcher covered, every reference revision that has events
//!   the watcher may see was delivered (no gaps), and no revision that is not in the log was;
//! - **atomic**: a change_set holds exactly the (filtered) events of one reference revision, in
//!   order: never split, never merged;
//! - **resumable**: a new session with `start_revision = last + 1` continues exactly where the
//!   previous one stopped (the concatenation of sessions is gap-free and duplicate-free);
//! - **bookmarkable**: after a progress at `R`, no change_set at or below `R` arrives, and every
//!   visible revision up to `R` was delivered before it;
//! - **filters honoured**: kinds, domain names and the caller's account scope;
//! - every response carries the store's `store_id`; a REVISION_COMPACTED end carries a
//!   `compact_revision` at or above the first revision the watcher still needed.
//!
//! Plus a **snapshot model**: a snapshot (compared with the reference state at its revision),
//! then every change_set applied to a map keyed by resource identity; at the end it must equal
//! the server's final state (read through Get*/list RPCs), filtered like the watcher.
//!
//! The reference log is the full list of `(revision, events)`, usually read with an unfiltered
//! Watch from revision 1 (dev mode or the gateway role) once the writes are done, and
//! cross-checked against the writers' acknowledgements ([`ReferenceLog::check_acks`]) and the
//! final state ([`ReferenceLog::final_state`]).

use std::collections::BTreeMap;

use mapreg::pb::watch_response::Kind;
use mapreg::pb::*;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::common::VisibleState;

/// The identity of a resource (what a gateway keys its local copy by).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceId {
    /// `api_id`.
    Api(String),
    /// (`api_id`, `stage_name`).
    Stage(String, String),
    /// `domain_name`.
    DomainName(String),
    /// (`domain_name`, `api_mapping_id`).
    ApiMapping(String, String),
}

impl ResourceId {
    /// The identity of `r`; panics on an empty `Resource` (the server never sends one).
    pub fn of(r: &Resource) -> ResourceId {
        match r.resource.as_ref().expect("a resource with a value") {
            resource::Resource::Api(a) => ResourceId::Api(a.api_id.clone()),
            resource::Resource::Stage(s) => {
                ResourceId::Stage(s.api_id.clone(), s.stage_name.clone())
            }
            resource::Resource::DomainName(d) => ResourceId::DomainName(d.domain_name.clone()),
            resource::Resource::ApiMapping(m) => {
                ResourceId::ApiMapping(m.domain_name.clone(), m.api_mapping_id.clone())
            }
        }
    }
}

/// Wraps an Api as a Resource.
pub fn api_resource(a: Api) -> Resource {
    Resource {
        resource: Some(resource::Resource::Api(a)),
    }
}

/// Wraps a Stage as a Resource.
pub fn stage_resource(s: Stage) -> Resource {
    Resource {
        resource: Some(resource::Resource::Stage(s)),
    }
}

/// Wraps a DomainName as a Resource.
pub fn domain_resource(d: DomainName) -> Resource {
    Resource {
        resource: Some(resource::Resource::DomainName(d)),
    }
}

/// Wraps an ApiMapping as a Resource.
pub fn mapping_resource(m: ApiMapping) -> Resource {
    Resource {
        resource: Some(resource::Resource::ApiMapping(m)),
    }
}

/// (kind, account, domain name if any, create_revision, mod_revision) of a resource.
fn facts(r: &Resource) -> (ResourceKind, &str, Option<&str>, u64, u64) {
    match r.resource.as_ref().expect("a resource with a value") {
        resource::Resource::Api(a) => (
            ResourceKind::Api,
            &a.account_id,
            None,
            a.create_revision,
            a.mod_revision,
        ),
        resource::Resource::Stage(s) => (
            ResourceKind::Stage,
            &s.account_id,
            None,
            s.create_revision,
            s.mod_revision,
        ),
        resource::Resource::DomainName(d) => (
            ResourceKind::DomainName,
            &d.account_id,
            Some(&d.domain_name),
            d.create_revision,
            d.mod_revision,
        ),
        resource::Resource::ApiMapping(m) => (
            ResourceKind::ApiMapping,
            &m.account_id,
            Some(&m.domain_name),
            m.create_revision,
            m.mod_revision,
        ),
    }
}

/// A registry state: every resource by identity.
pub type State = BTreeMap<ResourceId, Resource>;

/// The state a client listed through the Registry RPCs.
pub fn state_of(v: &VisibleState) -> State {
    let mut s = State::new();
    let all = v
        .apis
        .iter()
        .cloned()
        .map(api_resource)
        .chain(v.stages.iter().cloned().map(stage_resource))
        .chain(v.domains.iter().cloned().map(domain_resource))
        .chain(v.mappings.iter().cloned().map(mapping_resource));
    for r in all {
        s.insert(ResourceId::of(&r), r);
    }
    s
}

/// A one-line description of an event, for violation messages.
pub fn describe_event(e: &Event) -> String {
    let t = match EventType::try_from(e.r#type) {
        Ok(EventType::Put) => "PUT",
        Ok(EventType::Delete) => "DELETE",
        _ => "?",
    };
    match e.resource.as_ref() {
        Some(r) if r.resource.is_some() => {
            let (_, _, _, _, m) = facts(r);
            format!("{t} {:?}@{m}", ResourceId::of(r))
        }
        _ => format!("{t} <empty>"),
    }
}

/// Describes a list of events (at most 8 of them).
pub fn describe_events(events: &[Event]) -> String {
    let mut s: Vec<String> = events.iter().take(8).map(describe_event).collect();
    if events.len() > 8 {
        s.push(format!("... ({} in all)", events.len()));
    }
    format!("[{}]", s.join(", "))
}

/// What a watcher asked to see, mirrored on the client side, plus the account scope its token
/// gives it (`account: None` = every account: the gateway role, or dev mode's single account).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WatchFilter {
    /// Kinds asked for; empty = all.
    pub kinds: Vec<ResourceKind>,
    /// Domain names asked for (DomainName and ApiMapping events only); empty = all.
    pub domain_names: Vec<String>,
    /// The caller's account, when its role sees only its own.
    pub account: Option<String>,
}

impl WatchFilter {
    /// Everything (an unfiltered gateway or dev-mode watcher).
    pub fn all() -> WatchFilter {
        WatchFilter::default()
    }

    /// Everything of one account (an unfiltered admin/reader watcher).
    pub fn account(account: &str) -> WatchFilter {
        WatchFilter {
            account: Some(account.to_string()),
            ..WatchFilter::default()
        }
    }

    /// Whether the watcher may see `r`.
    pub fn matches(&self, r: &Resource) -> bool {
        let (kind, account, domain, _, _) = facts(r);
        if !self.kinds.is_empty() && !self.kinds.contains(&kind) {
            return false;
        }
        if let Some(d) = domain
            && !self.domain_names.is_empty()
            && !self.domain_names.iter().any(|f| f.eq_ignore_ascii_case(d))
        {
            return false;
        }
        self.account.as_deref().is_none_or(|a| a == account)
    }

    /// The events of `events` the watcher may see, in order.
    pub fn events(&self, events: &[Event]) -> Vec<Event> {
        events
            .iter()
            .filter(|e| e.resource.as_ref().is_some_and(|r| self.matches(r)))
            .cloned()
            .collect()
    }

    /// The part of `state` the watcher may see.
    pub fn state(&self, state: &State) -> State {
        state
            .iter()
            .filter(|(_, r)| self.matches(r))
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect()
    }

    /// The WatchRequest for this filter (the account scope comes from the token, not from the
    /// request).
    pub fn request(
        &self,
        start_revision: u64,
        store_id: &str,
        progress_interval_seconds: u32,
    ) -> WatchRequest {
        WatchRequest {
            start_revision,
            kinds: self.kinds.iter().map(|k| *k as i32).collect(),
            domain_names: self.domain_names.clone(),
            progress_interval_seconds,
            store_id: store_id.to_string(),
            ..Default::default()
        }
    }
}

/// Applies one event to a state; returns a complaint if the event does not fit the state
/// (a delete of something absent, a create whose create_revision is not its revision, an
/// update that changed create_revision, a PUT whose mod_revision is not its revision).
pub fn apply_event(state: &mut State, revision: u64, e: &Event) -> Option<String> {
    let Some(r) = e.resource.as_ref().filter(|r| r.resource.is_some()) else {
        return Some(format!("revision {revision}: an event without a resource"));
    };
    let id = ResourceId::of(r);
    let (_, _, _, create, modified) = facts(r);
    match EventType::try_from(e.r#type) {
        Ok(EventType::Put) => {
            let mut complaint = None;
            if modified != revision {
                complaint = Some(format!(
                    "revision {revision}: PUT {id:?} has mod_revision {modified}"
                ));
            }
            match state.get(&id) {
                None if create != revision => {
                    complaint = Some(format!(
                        "revision {revision}: PUT creating {id:?} has create_revision {create}"
                    ));
                }
                Some(old) if facts(old).3 != create => {
                    complaint = Some(format!(
                        "revision {revision}: PUT updating {id:?} changed create_revision {} -> {create}",
                        facts(old).3
                    ));
                }
                _ => {}
            }
            state.insert(id, r.clone());
            complaint
        }
        Ok(EventType::Delete) => match state.remove(&id) {
            None => Some(format!(
                "revision {revision}: DELETE of {id:?}, which is not in the state"
            )),
            Some(old) if old != *r => Some(format!(
                "revision {revision}: DELETE of {id:?} carries {r:?}, but its last state was {old:?}"
            )),
            Some(_) => None,
        },
        _ => Some(format!(
            "revision {revision}: event of unknown type {}",
            e.r#type
        )),
    }
}

/// Differences between two states, described (at most `max` of them).
pub fn state_diff(expected: &State, actual: &State, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    for (id, r) in expected {
        match actual.get(id) {
            None => out.push(format!("missing {id:?} (expected {r:?})")),
            Some(a) if a != r => out.push(format!("differs {id:?}: expected {r:?}, got {a:?}")),
            Some(_) => {}
        }
    }
    for id in actual.keys() {
        if !expected.contains_key(id) {
            out.push(format!("unexpected {id:?}"));
        }
    }
    let n = out.len();
    out.truncate(max);
    if n > max {
        out.push(format!("... {n} differences in all"));
    }
    out
}

/// A write acknowledged by the server, as the writer saw it.
#[derive(Debug, Clone)]
pub enum AckKind {
    /// Create/Update answered with this resource.
    Put(Resource),
    /// A delete of this resource answered with the revision.
    Delete(ResourceId),
}

/// One acknowledged write.
#[derive(Debug, Clone)]
pub struct Ack {
    /// The revision the write took.
    pub revision: u64,
    /// What it did.
    pub kind: AckKind,
}

/// The full change log: every revision `1..=last` with all its events.
#[derive(Debug, Clone, Default)]
pub struct ReferenceLog {
    /// Events by revision.
    pub revisions: BTreeMap<u64, Vec<Event>>,
    /// The last revision of the log.
    pub last: u64,
    /// The store the log was read from.
    pub store_id: String,
}

impl ReferenceLog {
    /// Builds the log from the responses of an unfiltered watch that started at revision 1
    /// (progress messages are ignored) and reached `last`. Fails if the log is not exactly
    /// revisions `1..=last`, each with at least one event, if a store_id differs, or if the
    /// events do not replay (see [`apply_event`]).
    pub fn from_responses(responses: &[WatchResponse], last: u64) -> Result<ReferenceLog, String> {
        let mut log = ReferenceLog {
            last,
            ..ReferenceLog::default()
        };
        let mut problems = Vec::new();
        for r in responses {
            if log.store_id.is_empty() {
                log.store_id = r.store_id.clone();
            } else if r.store_id != log.store_id {
                problems.push(format!(
                    "store_id changed from {} to {}",
                    log.store_id, r.store_id
                ));
            }
            match &r.kind {
                Some(Kind::ChangeSet(cs)) => {
                    if cs.events.is_empty() {
                        problems.push(format!("empty change_set at {}", r.revision));
                    }
                    if log
                        .revisions
                        .insert(r.revision, cs.events.clone())
                        .is_some()
                    {
                        problems.push(format!("revision {} delivered twice", r.revision));
                    }
                }
                Some(Kind::Progress(_)) => {}
                other => problems.push(format!(
                    "unexpected response in a watch from revision 1: {other:?}"
                )),
            }
        }
        let expected: Vec<u64> = (1..=last).collect();
        let got: Vec<u64> = log.revisions.keys().copied().collect();
        if got != expected {
            let missing: Vec<u64> = (1..=last)
                .filter(|r| !log.revisions.contains_key(r))
                .take(20)
                .collect();
            let extra: Vec<u64> = got.iter().copied().filter(|r| *r > last).collect();
            problems.push(format!(
                "the log is not exactly 1..={last}: {} revisions, missing (first 20) {missing:?}, beyond the end {extra:?}",
                got.len()
            ));
        }
        let mut state = State::new();
        for (rev, events) in &log.revisions {
            for e in events {
                if let Some(p) = apply_event(&mut state, *rev, e) {
                    problems.push(p);
                }
            }
        }
        if problems.is_empty() {
            Ok(log)
        } else {
            problems.truncate(30);
            Err(problems.join("\n"))
        }
    }

    /// The state after every revision up to and including `revision`.
    pub fn state_at(&self, revision: u64) -> State {
        let mut state = State::new();
        for (rev, events) in self.revisions.range(..=revision) {
            for e in events {
                let _ = apply_event(&mut state, *rev, e);
            }
        }
        state
    }

    /// The state after the whole log.
    pub fn final_state(&self) -> State {
        self.state_at(self.last)
    }

    /// Checks the writers' acknowledgements against the log: each acknowledged revision is
    /// unique and its change set holds the acknowledged resource (PUT, equal to the answer) or
    /// a DELETE of it. With `complete` (every write was answered, none was ambiguous), the
    /// acknowledged revisions must be exactly `1..=last`: a failed write took no revision.
    pub fn check_acks(&self, acks: &[Ack], complete: bool) -> Vec<String> {
        let mut problems = Vec::new();
        let mut seen = BTreeMap::new();
        for a in acks {
            if let Some(prev) = seen.insert(a.revision, a) {
                problems.push(format!(
                    "two writes acknowledged with revision {}: {:?} and {:?}",
                    a.revision, prev.kind, a.kind
                ));
            }
            let Some(events) = self.revisions.get(&a.revision) else {
                problems.push(format!(
                    "acknowledged revision {} is not in the log: {:?}",
                    a.revision, a.kind
                ));
                continue;
            };
            let found = match &a.kind {
                AckKind::Put(r) => events
                    .iter()
                    .any(|e| e.r#type == EventType::Put as i32 && e.resource.as_ref() == Some(r)),
                AckKind::Delete(id) => events.iter().any(|e| {
                    e.r#type == EventType::Delete as i32
                        && e.resource
                            .as_ref()
                            .is_some_and(|r| ResourceId::of(r) == *id)
                }),
            };
            if !found {
                problems.push(format!(
                    "revision {}: acknowledged {:?}, but the log has {}",
                    a.revision,
                    a.kind,
                    describe_events(events)
                ));
            }
        }
        if complete {
            let acked: Vec<u64> = seen.keys().copied().collect();
            let all: Vec<u64> = (1..=self.last).collect();
            if acked != all {
                let unacked: Vec<u64> = all
                    .iter()
                    .copied()
                    .filter(|r| !seen.contains_key(r))
                    .take(20)
                    .collect();
                problems.push(format!(
                    "{} acknowledged writes but the log has {} revisions; revisions nobody was told about (first 20): {unacked:?}",
                    acked.len(),
                    self.last
                ));
            }
        }
        problems.truncate(30);
        problems
    }
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionEnd {
    /// The status code.
    pub code: Code,
    /// The ErrorInfo reason ("" if none).
    pub reason: String,
    /// The ErrorInfo metadata `compact_revision`, if present.
    pub compact_revision: Option<u64>,
}

impl SessionEnd {
    /// Reads code, reason and `compact_revision` from a status.
    pub fn of(s: &Status) -> SessionEnd {
        let info = s.get_details_error_info();
        SessionEnd {
            code: s.code(),
            reason: info.as_ref().map(|i| i.reason.clone()).unwrap_or_default(),
            compact_revision: info
                .and_then(|i| i.metadata.get("compact_revision").cloned())
                .and_then(|v| v.parse().ok()),
        }
    }
}

/// One Watch call: the request, every response in order, and how it ended (None: the client
/// dropped it, or it ended without a status).
#[derive(Debug, Clone)]
pub struct Session {
    /// What was asked.
    pub request: WatchRequest,
    /// What arrived, in order.
    pub responses: Vec<WatchResponse>,
    /// The error that ended it, if any.
    pub end: Option<SessionEnd>,
}

/// Everything one watcher recorded, across reconnects.
#[derive(Debug, Clone)]
pub struct WatchRecord {
    /// For messages.
    pub name: String,
    /// What it watches (and its account scope).
    pub filter: WatchFilter,
    /// Its Watch calls, in order.
    pub sessions: Vec<Session>,
    position: Option<u64>,
    in_snapshot: bool,
}

impl WatchRecord {
    /// An empty record.
    pub fn new(name: &str, filter: WatchFilter) -> WatchRecord {
        WatchRecord {
            name: name.to_string(),
            filter,
            sessions: Vec::new(),
            position: None,
            in_snapshot: false,
        }
    }

    /// Starts a session with `request`.
    pub fn begin(&mut self, request: WatchRequest) {
        if request.start_revision == 0 {
            self.position = None;
            self.in_snapshot = true;
        } else {
            self.position = Some(request.start_revision - 1);
            self.in_snapshot = false;
        }
        self.sessions.push(Session {
            request,
            responses: Vec::new(),
            end: None,
        });
    }

    /// Records a response of the current session.
    pub fn record(&mut self, resp: WatchResponse) {
        match &resp.kind {
            Some(Kind::SnapshotComplete(_)) => {
                self.in_snapshot = false;
                self.position = Some(resp.revision);
            }
            Some(Kind::ChangeSet(_)) | Some(Kind::Progress(_)) if !self.in_snapshot => {
                self.position = Some(self.position.unwrap_or(0).max(resp.revision));
            }
            _ => {}
        }
        self.sessions
            .last_mut()
            .expect("record() after begin()")
            .responses
            .push(resp);
    }

    /// Records how the current session ended.
    pub fn end(&mut self, status: &Status) {
        if let Some(s) = self.sessions.last_mut() {
            s.end = Some(SessionEnd::of(status));
        }
    }

    /// The last revision dealt with (a resume continues at `position + 1`); None while no
    /// snapshot has completed in a start-at-0 session.
    pub fn position(&self) -> Option<u64> {
        self.position
    }

    /// Whether the current session is still in its snapshot.
    pub fn in_snapshot(&self) -> bool {
        self.in_snapshot
    }

    /// Every response of every session.
    pub fn responses(&self) -> impl Iterator<Item = &WatchResponse> {
        self.sessions.iter().flat_map(|s| s.responses.iter())
    }
}

/// What the checker found besides violations.
#[derive(Debug, Clone, Default)]
pub struct CheckSummary {
    /// Sessions.
    pub sessions: usize,
    /// Completed snapshots.
    pub snapshots: usize,
    /// change_set messages.
    pub change_sets: usize,
    /// Events in them.
    pub events: usize,
    /// progress messages.
    pub progress: usize,
    /// Sessions that ended with REVISION_COMPACTED.
    pub compacted: usize,
    /// The last revision dealt with.
    pub position: Option<u64>,
    /// The watcher's model of the state, when it knows everything it may see (its history
    /// began with a snapshot or at revision 1).
    pub model: Option<State>,
}

/// Checks a watcher's record against the reference; returns a summary and every violation.
pub fn check(record: &WatchRecord, reference: &ReferenceLog) -> (CheckSummary, Vec<String>) {
    let name = &record.name;
    let filter = &record.filter;
    let mut v: Vec<String> = Vec::new();
    let mut sum = CheckSummary {
        sessions: record.sessions.len(),
        ..CheckSummary::default()
    };
    // The last revision dealt with, across sessions.
    let mut pos: Option<u64> = None;
    // The last progress revision announced.
    let mut bookmark: Option<u64> = None;
    let mut model: Option<State> = None;
    // Visible reference revisions in (from, to] that the watcher did not get.
    let gaps = |from: u64, to: u64| -> Vec<u64> {
        if to <= from {
            return Vec::new();
        }
        reference
            .revisions
            .range(from + 1..=to)
            .filter(|(_, evs)| !filter.events(evs).is_empty())
            .map(|(r, _)| *r)
            .collect()
    };
    for (i, s) in record.sessions.iter().enumerate() {
        let start = s.request.start_revision;
        let mut snapshot: Option<State> = None;
        let mut snapshot_revision: Option<u64> = None;
        if start == 0 {
            snapshot = Some(State::new());
        } else {
            match pos {
                Some(p) if start != p + 1 => v.push(format!(
                    "{name} session {i}: resumed at {start}, but the last revision dealt with was {p} (resumable)"
                )),
                None if i > 0 => v.push(format!(
                    "{name} session {i}: resumed at {start} after sessions that never completed a snapshot"
                )),
                _ => {}
            }
            if i == 0 {
                model = (start == 1).then(State::new);
            }
            pos = Some(start - 1);
        }
        for (j, r) in s.responses.iter().enumerate() {
            let at = format!("{name} session {i} response {j} (revision {})", r.revision);
            if r.store_id != reference.store_id {
                v.push(format!(
                    "{at}: store_id {:?}, the store's is {:?}",
                    r.store_id, reference.store_id
                ));
            }
            match &r.kind {
                None => v.push(format!("{at}: a response without a kind")),
                Some(Kind::Snapshot(chunk)) => {
                    let Some(snap) = snapshot.as_mut() else {
                        v.push(format!("{at}: a snapshot chunk outside of a snapshot"));
                        continue;
                    };
                    if *snapshot_revision.get_or_insert(r.revision) != r.revision {
                        v.push(format!(
                            "{at}: snapshot chunks of different revisions ({:?} then {})",
                            snapshot_revision, r.revision
                        ));
                    }
                    for res in &chunk.resources {
                        if res.resource.is_none() {
                            v.push(format!("{at}: an empty resource in a snapshot"));
                            continue;
                        }
                        if !filter.matches(res) {
                            v.push(format!(
                                "{at}: snapshot holds {:?}, which the filter hides",
                                ResourceId::of(res)
                            ));
                        }
                        if let Some(old) = snap.insert(ResourceId::of(res), res.clone()) {
                            v.push(format!(
                                "{at}: snapshot holds {:?} twice",
                                ResourceId::of(&old)
                            ));
                        }
                    }
                }
                Some(Kind::SnapshotComplete(_)) => {
                    let Some(snap) = snapshot.take() else {
                        v.push(format!("{at}: snapshot_complete outside of a snapshot"));
                        continue;
                    };
                    let r0 = r.revision;
                    if snapshot_revision.is_some_and(|s| s != r0) {
                        v.push(format!(
                            "{at}: snapshot chunks at {snapshot_revision:?}, complete at {r0}"
                        ));
                    }
                    if let Some(p) = pos
                        && r0 < p
                    {
                        v.push(format!(
                            "{at}: snapshot at {r0}, older than revision {p} already dealt with"
                        ));
                    }
                    if r0 > reference.last {
                        v.push(format!(
                            "{at}: snapshot at {r0}, beyond the log's end {}",
                            reference.last
                        ));
                    } else {
                        let expected = filter.state(&reference.state_at(r0));
                        let diff = state_diff(&expected, &snap, 10);
                        if !diff.is_empty() {
                            v.push(format!(
                                "{at}: snapshot differs from the state at {r0}: {}",
                                diff.join("; ")
                            ));
                        }
                    }
                    sum.snapshots += 1;
                    model = Some(snap);
                    pos = Some(r0);
                    bookmark = None;
                }
                Some(Kind::ChangeSet(cs)) => {
                    sum.change_sets += 1;
                    sum.events += cs.events.len();
                    let rev = r.revision;
                    if snapshot.is_some() {
                        v.push(format!("{at}: change_set before snapshot_complete"));
                        continue;
                    }
                    let p = pos.unwrap_or(0);
                    if rev <= p {
                        if bookmark.is_some_and(|b| rev <= b) {
                            v.push(format!(
                                "{at}: change_set at {rev} after a progress at {bookmark:?} (bookmarkable)"
                            ));
                        } else {
                            v.push(format!(
                                "{at}: change_set at {rev} after revision {p} was dealt with (ordered/unique)"
                            ));
                        }
                        continue;
                    }
                    let missing = gaps(p, rev - 1);
                    if !missing.is_empty() {
                        v.push(format!(
                            "{at}: revisions {missing:?} with visible events were skipped (reliable)"
                        ));
                    }
                    if cs.events.is_empty() {
                        v.push(format!("{at}: an empty change_set"));
                    }
                    match reference.revisions.get(&rev) {
                        None => v.push(format!(
                            "{at}: revision {rev} is not in the log (last {})",
                            reference.last
                        )),
                        Some(evs) => {
                            let expected = filter.events(evs);
                            if expected != cs.events {
                                v.push(format!(
                                    "{at}: events differ from the log's (atomic/filters): expected {}, got {}",
                                    describe_events(&expected),
                                    describe_events(&cs.events)
                                ));
                            }
                        }
                    }
                    if let Some(m) = model.as_mut() {
                        for e in &cs.events {
                            if let Some(p) = apply_event(m, rev, e) {
                                v.push(format!("{at}: model: {p}"));
                            }
                        }
                    }
                    pos = Some(rev);
                }
                Some(Kind::Progress(_)) => {
                    sum.progress += 1;
                    if snapshot.is_some() {
                        v.push(format!("{at}: progress before snapshot_complete"));
                        continue;
                    }
                    let b = r.revision;
                    if b > reference.last {
                        v.push(format!(
                            "{at}: progress at {b}, beyond the log's end {}",
                            reference.last
                        ));
                    }
                    let p = pos.unwrap_or(0);
                    let missing = gaps(p, b);
                    if !missing.is_empty() {
                        v.push(format!(
                            "{at}: progress at {b} but revisions {missing:?} with visible events were never sent (bookmarkable/reliable)"
                        ));
                    }
                    bookmark = Some(bookmark.unwrap_or(0).max(b));
                    pos = Some(p.max(b));
                }
            }
        }
        if let Some(end) = &s.end {
            if end.code == Code::OutOfRange && end.reason == "REVISION_COMPACTED" {
                sum.compacted += 1;
                match end.compact_revision {
                    None => v.push(format!(
                        "{name} session {i}: REVISION_COMPACTED without compact_revision metadata"
                    )),
                    Some(c) => {
                        let needed = if snapshot.is_some() {
                            None
                        } else {
                            Some(pos.unwrap_or(0) + 1)
                        };
                        if let Some(n) = needed
                            && n > c
                        {
                            v.push(format!(
                                "{name} session {i}: REVISION_COMPACTED at compact_revision {c}, but the watcher needed {n}, which is not compacted"
                            ));
                        }
                    }
                }
            }
        }
    }
    sum.position = pos;
    sum.model = model;
    (sum, v)
}
