//! The operator's commands about the fleet and the history (SPEC.md 8.5):
//!
//! - `get-gateways`: the gateways that follow the registry, with what they applied and their
//!   lag;
//! - `wait-for-gateways --revision R [--timeout S]`: exits 0 once every listed gateway
//!   applied R or later, else 254 naming the laggards: "has my change reached every gateway?";
//! - `get-history [--domain-name D] [--start-revision R] [--max-items N]`: the committed
//!   change sets, with who made each (principal, account, RPC, request id, commit time),
//!   read from the change feed up to the current revision.

use std::io::Write;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use super::args::{ClientOptions, Cmd, OutputFormat};
use super::commands::{Bearer, channel};
use super::error::{CliError, EXIT_SERVICE};
use crate::pb;
use crate::pb::change_feed_client::ChangeFeedClient;
use crate::pb::gateways_client::GatewaysClient;

/// How often `wait-for-gateways` asks again.
const POLL: Duration = Duration::from_millis(250);

/// The fleet and history commands.
#[derive(Debug, Clone, Subcommand)]
pub enum FleetCommand {
    /// List the gateways that report to the registry: applied revision, lag, in sync.
    GetGateways(Cmd<GetGatewaysArgs>),
    /// Wait until every listed gateway applied --revision; exit 254 naming the laggards if
    /// --timeout passes first.
    WaitForGateways(Cmd<WaitForGatewaysArgs>),
    /// Print the committed change sets with who made each, up to the current revision.
    GetHistory(Cmd<GetHistoryArgs>),
}

/// Flags of `get-gateways`.
#[derive(Debug, Clone, Args)]
pub struct GetGatewaysArgs {}

/// Flags of `wait-for-gateways`.
#[derive(Debug, Clone, Args)]
pub struct WaitForGatewaysArgs {
    /// The revision every gateway must have applied (e.g. a write's `ModRevision`).
    #[arg(long, value_name = "R")]
    pub revision: u64,
    /// Seconds to wait before giving up.
    #[arg(long, value_name = "S", default_value_t = 60)]
    pub timeout: u64,
}

/// Flags of `get-history`.
#[derive(Debug, Clone, Args)]
pub struct GetHistoryArgs {
    /// Only change sets touching this domain name (its record and its API mappings; their
    /// APIs and stages are left out).
    #[arg(long, value_name = "D")]
    pub domain_name: Option<String>,
    /// The first revision to show (default: the oldest still in the change log).
    #[arg(long, value_name = "R", value_parser = clap::value_parser!(u64).range(1..))]
    pub start_revision: Option<u64>,
    /// Print at most N change sets.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_items: Option<u64>,
}

type Gateways = GatewaysClient<InterceptedService<Channel, Bearer>>;
type Feed = ChangeFeedClient<InterceptedService<Channel, Bearer>>;

/// Runs `cmd`, prints its result (or its error, on stderr) and returns the exit code.
pub async fn run(cmd: FleetCommand) -> u8 {
    let result = match cmd {
        FleetCommand::GetGateways(c) => get_gateways(&c.options).await,
        FleetCommand::WaitForGateways(c) => wait_for_gateways(&c.options, &c.args).await,
        FleetCommand::GetHistory(c) => get_history(&c.options, &c.args).await,
    };
    match result {
        Ok(code) => code,
        Err(e) if e.is_broken_pipe() => 0,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "{e}");
            e.exit_code()
        }
    }
}

async fn gateways_client(options: &ClientOptions) -> Result<Gateways, CliError> {
    let (channel, bearer) = channel(options).await?;
    Ok(GatewaysClient::with_interceptor(channel, bearer))
}

fn print(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Every listed gateway (all pages) and the registry's current revision.
async fn list(c: &mut Gateways) -> Result<(Vec<pb::Gateway>, u64), CliError> {
    let mut items = Vec::new();
    let mut next_token = String::new();
    loop {
        let page = c
            .get_gateways(pb::GetGatewaysRequest {
                max_results: 0,
                next_token,
            })
            .await
            .map_err(|s| CliError::service("GetGateways", s))?
            .into_inner();
        items.extend(page.items);
        if page.next_token.is_empty() {
            return Ok((items, page.revision));
        }
        next_token = page.next_token;
    }
}

fn gateway(g: &pb::Gateway) -> Value {
    json!({
        "GatewayId": g.gateway_id,
        "Principal": g.principal,
        "AppliedRevision": g.applied_revision,
        "Lag": g.lag,
        "InSync": g.in_sync,
        "LastReportTime": g.last_report_time.as_ref().map(|t| t.to_string()),
        "StoreId": g.store_id,
    })
}

/// The gateways as `--output` asks: JSON, or a table.
fn render(items: &[pb::Gateway], revision: u64, format: OutputFormat) -> String {
    if format == OutputFormat::Table {
        let mut rows = vec![[
            "GatewayId".to_string(),
            "Principal".into(),
            "AppliedRevision".into(),
            "Lag".into(),
            "InSync".into(),
            "LastReportTime".into(),
        ]];
        for g in items {
            rows.push([
                g.gateway_id.clone(),
                g.principal.clone(),
                g.applied_revision.to_string(),
                g.lag.to_string(),
                g.in_sync.to_string(),
                g.last_report_time
                    .as_ref()
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
            ]);
        }
        let widths: Vec<usize> = (0..6)
            .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for r in rows {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        return out;
    }
    let v = json!({
        "Items": items.iter().map(gateway).collect::<Vec<_>>(),
        "Revision": revision,
    });
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
}

async fn get_gateways(options: &ClientOptions) -> Result<u8, CliError> {
    let mut c = gateways_client(options).await?;
    let (items, revision) = list(&mut c).await?;
    print(&render(&items, revision, options.output))?;
    Ok(0)
}

async fn wait_for_gateways(
    options: &ClientOptions,
    a: &WaitForGatewaysArgs,
) -> Result<u8, CliError> {
    let mut c = gateways_client(options).await?;
    let deadline = Instant::now() + Duration::from_secs(a.timeout);
    loop {
        let (items, revision) = list(&mut c).await?;
        let laggards: Vec<&pb::Gateway> = items
            .iter()
            .filter(|g| g.applied_revision < a.revision)
            .collect();
        if laggards.is_empty() {
            print(&render(&items, revision, options.output))?;
            return Ok(0);
        }
        if Instant::now() >= deadline {
            let names: Vec<String> = laggards
                .iter()
                .map(|g| {
                    format!(
                        "{} (applied {}, in sync {}, principal {})",
                        g.gateway_id, g.applied_revision, g.in_sync, g.principal
                    )
                })
                .collect();
            let _ = writeln!(
                std::io::stderr(),
                "{} of {} gateways have not applied revision {} after {} s: {}",
                laggards.len(),
                items.len(),
                a.revision,
                a.timeout,
                names.join(", ")
            );
            return Ok(EXIT_SERVICE);
        }
        tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

fn event(e: &pb::Event) -> Value {
    let kind = match pb::EventType::try_from(e.r#type) {
        Ok(pb::EventType::Put) => "PUT",
        Ok(pb::EventType::Delete) => "DELETE",
        _ => "UNSPECIFIED",
    };
    let resource = e
        .resource
        .as_ref()
        .and_then(crate::client::cache::identity)
        .unwrap_or_default();
    json!({ "Type": kind, "Resource": resource })
}

fn change_set(revision: u64, cs: &pb::ChangeSet) -> Value {
    json!({
        "Revision": revision,
        "Principal": cs.principal,
        "AccountId": cs.account_id,
        "Method": cs.method,
        "RequestId": cs.request_id,
        "CommitTime": cs.commit_time.as_ref().map(|t| t.to_string()),
        "Events": cs.events.iter().map(event).collect::<Vec<_>>(),
    })
}

/// The revision a compacted start may resume after, from the error's ErrorInfo.
fn compact_revision(s: &Status) -> Option<u64> {
    let info = s.get_details_error_info()?;
    if info.reason != "REVISION_COMPACTED" {
        return None;
    }
    info.metadata.get("compact_revision")?.parse().ok()
}

async fn get_history(options: &ClientOptions, a: &GetHistoryArgs) -> Result<u8, CliError> {
    let (channel, bearer) = channel(options).await?;
    // The revision to stop at: the registry's current one when the command starts.
    let mut gateways = GatewaysClient::with_interceptor(channel.clone(), bearer.clone());
    let current = gateways
        .get_gateways(pb::GetGatewaysRequest {
            max_results: 1,
            next_token: String::new(),
        })
        .await
        .map_err(|s| CliError::service("GetGateways", s))?
        .into_inner()
        .revision;
    let mut feed: Feed = ChangeFeedClient::with_interceptor(channel, bearer);
    let mut start = a.start_revision.unwrap_or(1);
    let max = a.max_items.unwrap_or(u64::MAX);
    let mut sets = Vec::new();
    if start <= current {
        // A domain filter keeps APIs and stages in a watch; the history of a domain is its
        // record's and its mappings'.
        let kinds = match a.domain_name {
            Some(_) => vec![
                pb::ResourceKind::DomainName as i32,
                pb::ResourceKind::ApiMapping as i32,
            ],
            None => Vec::new(),
        };
        let request = |start| pb::WatchRequest {
            start_revision: start,
            kinds: kinds.clone(),
            domain_names: a.domain_name.iter().cloned().collect(),
            progress_interval_seconds: 1,
            ..Default::default()
        };
        let mut stream = match feed.watch(request(start)).await {
            Ok(s) => s.into_inner(),
            // The oldest revisions are compacted: start at the oldest one kept, unless the
            // user asked for a start explicitly.
            Err(s) if s.code() == Code::OutOfRange && a.start_revision.is_none() => {
                start =
                    compact_revision(&s).ok_or_else(|| CliError::service("Watch", s.clone()))? + 1;
                feed.watch(request(start))
                    .await
                    .map_err(|s| CliError::service("Watch", s))?
                    .into_inner()
            }
            Err(s) => return Err(CliError::service("Watch", s)),
        };
        while (sets.len() as u64) < max {
            let Some(msg) = stream
                .message()
                .await
                .map_err(|s| CliError::service("Watch", s))?
            else {
                break;
            };
            if let Some(pb::watch_response::Kind::ChangeSet(cs)) = &msg.kind {
                sets.push(change_set(msg.revision, cs));
            }
            if msg.revision >= current {
                break;
            }
        }
    }
    let v = json!({ "ChangeSets": sets, "Revision": current });
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    print(&s)?;
    Ok(0)
}
