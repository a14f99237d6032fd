//! Live updates of a domain's page: `GET /console/domains/{domain}/events?after=R` is a
//! Server-Sent Events stream. It watches the change feed exactly as a `Watch` with
//! `start_revision = R + 1`, `kinds = [API_MAPPING, DOMAIN_NAME]`, `domain_names = [domain]`
//! would, in the viewer's scope (so nobody sees another account's changes), and for every
//! revision that touches the domain sends an event `mappings` whose data is the mappings
//! table re-rendered for the viewer. `R` is the revision the page was rendered at, so no
//! change between rendering and subscribing is missed.
//!
//! The stream ends when the server shuts down (the feed ends its watchers) or when the
//! viewer's session is gone; the browser's `EventSource` then reconnects by itself.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::{Console, all_apis, all_mappings};
use crate::feed::Filter;
use crate::feed::watch::{self, WatchSpec};
use crate::pb::ResourceKind;
use crate::pb::watch_response::Kind;

/// How often an idle stream sends a comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `GET /console/domains/{domain}/events?after=R`.
pub(super) async fn events(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Path(domain): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(v) = c.sessions.viewer(&headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let after: u64 = q
        .get("after")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| c.hub.durable());
    let filter = match Filter::new(
        &[
            ResourceKind::ApiMapping as i32,
            ResourceKind::DomainName as i32,
        ],
        std::slice::from_ref(&domain),
        v.caller.scope(),
    ) {
        Ok(f) => f,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    // Below the retained log, start from now: the page reloads the table on its first event.
    let compact = c.hub.registry().compact_revision().unwrap_or(0);
    let start = (after + 1).max(compact + 1);
    let spec = WatchSpec {
        start_revision: start,
        filter,
        progress_interval: Duration::from_secs(3600),
        resume_history_hash: None,
        buffer_bytes: watch::DEFAULT_BUFFER_BYTES,
    };
    let (tx, rx) = mpsc::channel(watch::CLIENT_QUEUE);
    tokio::spawn(watch::run(c.hub.clone(), spec, tx));
    let (out_tx, out_rx) = mpsc::channel::<Result<Event, Infallible>>(4);
    tokio::spawn(async move {
        let mut feed = ReceiverStream::new(rx);
        let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
        loop {
            let item = tokio::select! {
                item = feed.next() => item,
                _ = keep_alive.tick() => {
                    // A comment line keeps proxies from closing an idle stream.
                    if out_tx.send(Ok(Event::default().comment("keep-alive"))).await.is_err() {
                        break;
                    }
                    continue;
                }
            };
            let Some(item) = item else { break };
            let Ok(resp) = item.into_item() else { break };
            if !matches!(resp.kind, Some(Kind::ChangeSet(_))) {
                continue;
            }
            // The session may have ended since the stream opened.
            if v.session && c.sessions.viewer(&headers).is_none() {
                break;
            }
            let table = match (all_mappings(&c, &v, &domain).await, all_apis(&c, &v).await) {
                (Ok((mappings, _)), Ok(apis)) => {
                    super::pages::mappings_table(&domain, &mappings, &apis).into_string()
                }
                // The domain is gone (deleted): say so in place of the table.
                (Err(s), _) | (_, Err(s)) => {
                    maud::html! { p.error role="alert" { (s.message()) } }.into_string()
                }
            };
            let event = Event::default()
                .event("mappings")
                .id(resp.revision.to_string())
                .data(table);
            if out_tx.send(Ok(event)).await.is_err() {
                break;
            }
        }
    });
    Sse::new(ReceiverStream::new(out_rx)).into_response()
}
