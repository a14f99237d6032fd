//! Runs one client command: connects to the server, sends the request(s), prints the result and
//! returns the process exit code (0, or as [`CliError::exit_code`]).
//!
//! `--endpoint-url a,b,c` (or `MAPREG_ENDPOINT=a,b,c`) names several endpoints; they are tried
//! in the order given ([`crate::client::failover`]): an endpoint that cannot be connected to is
//! skipped by every command (nothing was sent), and one that answers `UNAVAILABLE` (or breaks
//! the connection during the call) is skipped by reads only (a write may have been applied;
//! it is never sent twice). A paginated listing is re-run whole on the next endpoint. `watch`
//! moves on only while it has printed nothing. When every endpoint failed, the error names
//! each with its failure.

use std::future::Future;
use std::io::Write;
use std::time::Duration;

use serde_json::Value;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

use super::args::*;
use super::error::CliError;
use super::output::{self, Detail, Shape};
use crate::client::failover::{Failure, RequestKind, may_retry};
use crate::pb;
use crate::pb::change_feed_client::ChangeFeedClient;
use crate::pb::registry_client::RegistryClient;

/// How long to wait for the TCP connection before giving up (exit 255).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest response the client decodes unless `MAPREG_MAX_RESPONSE_BYTES` says otherwise:
/// a page of 1000 records with every field at its limit fits.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 << 20;

/// Adds `authorization: Bearer <token>` to every request when a token is set.
#[derive(Clone)]
pub(crate) struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

type Registry = RegistryClient<InterceptedService<Channel, Bearer>>;
type Feed = ChangeFeedClient<InterceptedService<Channel, Bearer>>;

/// Sends one request with `--debug`'s trace: the request before, the answer (or the error and
/// its details) after, with the time taken, all on stderr.
macro_rules! rpc {
    ($debug:expr, $op:expr, $client:expr, $method:ident, $request:expr) => {{
        let request = $request;
        trace_request($debug, $op, &request);
        let started = std::time::Instant::now();
        let result = $client.$method(request).await;
        trace_result($debug, $op, started, &result);
        result
    }};
}

/// `--debug`: one request.
fn trace_request<T: std::fmt::Debug>(debug: bool, operation: &str, request: &T) {
    if debug {
        let _ = writeln!(std::io::stderr(), "DEBUG {operation} request: {request:?}");
    }
}

/// `--debug`: one answer or error.
fn trace_result<T: std::fmt::Debug>(
    debug: bool,
    operation: &str,
    started: std::time::Instant,
    result: &Result<tonic::Response<T>, Status>,
) {
    if !debug {
        return;
    }
    let ms = started.elapsed().as_millis();
    let line = match result {
        Ok(r) => format!(
            "DEBUG {operation} response ({ms} ms): {:?}\nDEBUG {operation} response metadata: {:?}",
            r.get_ref(),
            r.metadata()
        ),
        Err(s) => format!(
            "DEBUG {operation} error ({ms} ms): code {:?}, message {:?}, metadata {:?}, details {} bytes",
            s.code(),
            s.message(),
            s.metadata(),
            s.details().len()
        ),
    };
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Runs `cmd`, prints its result (or its error, on stderr) and returns the exit code.
pub async fn run_client(cmd: ClientCommand) -> u8 {
    match run(cmd).await {
        Ok(()) => 0,
        Err(e) if e.is_broken_pipe() => 0,
        Err(CliError::Interrupted) => CliError::Interrupted.exit_code(),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "{e}");
            e.exit_code()
        }
    }
}

/// The endpoint URL, with `http://` added when the user gave only `host:port`.
pub fn endpoint_url(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    }
}

/// The client's decode limit: `MAPREG_MAX_RESPONSE_BYTES`, else [`DEFAULT_MAX_RESPONSE_BYTES`].
fn max_response_bytes() -> Result<usize, CliError> {
    match std::env::var("MAPREG_MAX_RESPONSE_BYTES") {
        Err(_) => Ok(DEFAULT_MAX_RESPONSE_BYTES),
        Ok(v) => v.trim().parse().map_err(|_| {
            CliError::Usage(format!(
                "MAPREG_MAX_RESPONSE_BYTES={v:?} is not a number of bytes"
            ))
        }),
    }
}

/// The endpoints of `--endpoint-url` (`URL[,URL...]`, or `MAPREG_ENDPOINT`), each with its
/// scheme ([`endpoint_url`]), in the order given; never empty.
fn endpoints(options: &ClientOptions) -> Result<Vec<String>, CliError> {
    let list = crate::client::failover::parse_endpoints(&options.endpoint_url);
    if list.is_empty() {
        return Err(CliError::Usage(
            "--endpoint-url (or MAPREG_ENDPOINT) names no endpoint".into(),
        ));
    }
    Ok(list.iter().map(|e| endpoint_url(e)).collect())
}

/// The `--token` as a bearer interceptor.
fn bearer(options: &ClientOptions) -> Result<Bearer, CliError> {
    let token = match options.token.as_deref() {
        None | Some("") => None,
        Some(t) => Some(MetadataValue::try_from(format!("Bearer {t}")).map_err(|_| {
            CliError::Usage("--token (or MAPREG_TOKEN) holds characters a header cannot".into())
        })?),
    };
    if options.debug {
        let _ = writeln!(
            std::io::stderr(),
            "DEBUG token {}",
            if token.is_some() {
                "set (not shown)"
            } else {
                "none"
            }
        );
    }
    Ok(Bearer(token))
}

/// A connection to the one endpoint `url`, with its TLS options. A connection that could not be
/// made is [`CliError::Connect`] naming the endpoint, as the AWS CLI says it; a URL or TLS file
/// that cannot be used is [`CliError::Usage`].
async fn connect_to(url: &str, options: &ClientOptions) -> Result<Channel, CliError> {
    use crate::client::connect::{self, ConnectError};
    if options.debug {
        let _ = writeln!(std::io::stderr(), "DEBUG endpoint {url}");
    }
    connect::connect(url, &options.tls, CONNECT_TIMEOUT)
        .await
        .map_err(|e| match e {
            ConnectError::Endpoint { .. } | ConnectError::Tls(_) => CliError::Usage(e.to_string()),
            ConnectError::Transport { reason } => CliError::Connect {
                endpoint: url.to_string(),
                reason,
            },
        })
}

/// `--debug`: why the next endpoint is tried.
fn trace_failover(debug: bool, url: &str, e: &CliError) {
    if debug {
        let _ = writeln!(
            std::io::stderr(),
            "DEBUG {url} failed, trying the next endpoint: {e}"
        );
    }
}

/// The connection every client command opens: the first endpoint of `--endpoint-url` (in the
/// order given) that accepts a connection, with its TLS options, and the `--token` as a bearer
/// interceptor. Moving on is safe for every command, writes included: nothing was sent
/// ([`crate::client::failover`]). When none connects, the error names each endpoint.
pub(crate) async fn channel(options: &ClientOptions) -> Result<(Channel, Bearer), CliError> {
    let bearer = bearer(options)?;
    let mut failed = Vec::new();
    for url in endpoints(options)? {
        match connect_to(&url, options).await {
            Ok(channel) => return Ok((channel, bearer)),
            Err(e @ CliError::Connect { .. }) => {
                trace_failover(options.debug, &url, &e);
                failed.push((url, e));
            }
            Err(e) => return Err(e),
        }
    }
    Err(CliError::endpoints(failed))
}

/// Whether `cmd` may change the store (a write that is not a `--dry-run`).
fn request_kind(cmd: &ClientCommand) -> RequestKind {
    use ClientCommand as C;
    let dry_run = match cmd {
        C::CreateApi(c) => c.args.dry_run,
        C::UpdateApi(c) => c.args.dry_run,
        C::DeleteApi(c) => c.args.dry_run,
        C::CreateStage(c) => c.args.dry_run,
        C::UpdateStage(c) => c.args.dry_run,
        C::DeleteStage(c) => c.args.dry_run,
        C::CreateDomainName(c) => c.args.dry_run,
        C::UpdateDomainName(c) => c.args.dry_run,
        C::DeleteDomainName(c) => c.args.dry_run,
        C::CreateApiMapping(c) => c.args.dry_run,
        C::UpdateApiMapping(c) => c.args.dry_run,
        C::DeleteApiMapping(c) => c.args.dry_run,
        C::GetApi(_)
        | C::GetApis(_)
        | C::GetStage(_)
        | C::GetStages(_)
        | C::GetDomainName(_)
        | C::GetDomainNames(_)
        | C::GetApiMapping(_)
        | C::GetApiMappings(_)
        | C::ResolveRoute(_)
        | C::Watch(_) => return RequestKind::Read,
    };
    if dry_run.validate_only {
        RequestKind::Read
    } else {
        RequestKind::Write
    }
}

/// Prints `text` to stdout (a closed pipe is reported as [`CliError::Output`]).
fn print(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// What a command printed: nothing (deletes) or a value rendered per `--output`.
enum Outcome {
    Nothing,
    Show(Value, &'static str, Shape),
}

async fn run(cmd: ClientCommand) -> Result<(), CliError> {
    let options = options(&cmd).clone();
    // Everything that can be refused without the server is refused before connecting.
    if let Some(q) = &options.query {
        output::check_query(q)?;
    }
    if matches!(cmd, ClientCommand::Watch(_))
        && matches!(options.output, OutputFormat::Table | OutputFormat::Yaml)
    {
        return Err(CliError::Usage(
            "watch prints a stream, one message at a time: use --output json (JSON lines, the \
             default), text or yaml-stream"
                .into(),
        ));
    }
    let token_set = options.token.as_deref().is_some_and(|t| !t.is_empty());
    let max = max_response_bytes()?;
    if options.debug {
        let _ = writeln!(std::io::stderr(), "DEBUG max response {max} bytes");
    }
    let bearer = bearer(&options)?;
    let kind = request_kind(&cmd);
    let mut failed = Vec::new();
    let mut outcome = None;
    for url in endpoints(&options)? {
        let channel = match connect_to(&url, &options).await {
            Ok(channel) => channel,
            Err(e @ CliError::Connect { .. }) => {
                // Never sent: every command may move on.
                trace_failover(options.debug, &url, &e);
                failed.push((url, e));
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut printed = false;
        let result = if let ClientCommand::Watch(c) = &cmd {
            let feed = ChangeFeedClient::with_interceptor(channel, bearer.clone())
                .max_decoding_message_size(max);
            watch(feed, c.args.clone(), &options, &mut printed)
                .await
                .map(|()| Outcome::Nothing)
        } else {
            let registry = RegistryClient::with_interceptor(channel, bearer.clone())
                .max_decoding_message_size(max);
            execute(registry, cmd.clone(), options.debug).await
        };
        // A TLS server refusing a plaintext client is a connection problem, not the service's.
        let result = match result {
            Err(CliError::Service { ref status, .. }) => {
                match crate::client::connect::explain_failure(&url, status).await {
                    Some(reason) => Err(CliError::Connect {
                        endpoint: url.clone(),
                        reason,
                    }),
                    None => result,
                }
            }
            other => other,
        };
        match result.map_err(|e| super::error::explain(e, token_set)) {
            Ok(o) => {
                outcome = Some(o);
                break;
            }
            Err(e) => {
                // The call was made: its request may have reached the server.
                let code = match &e {
                    CliError::Service { status, .. } => Some(status.code()),
                    CliError::Connect { .. } => Some(tonic::Code::Unavailable),
                    _ => None,
                };
                let moves_on = code.is_some_and(|c| may_retry(kind, Failure::Call(c))) && !printed;
                if !moves_on {
                    if options.debug && code == Some(tonic::Code::Unavailable) {
                        let _ = writeln!(
                            std::io::stderr(),
                            "DEBUG not sending the write to another endpoint: {url} may have \
                             applied it"
                        );
                    }
                    return Err(e);
                }
                trace_failover(options.debug, &url, &e);
                failed.push((url, e));
            }
        }
    }
    let Some(outcome) = outcome else {
        return Err(CliError::endpoints(failed));
    };
    match outcome {
        Outcome::Nothing => Ok(()),
        Outcome::Show(value, operation, shape) => print(&output::render(
            &value,
            operation,
            shape,
            options.output,
            options.query.as_deref(),
        )?),
    }
}

fn options(cmd: &ClientCommand) -> &ClientOptions {
    use ClientCommand as C;
    match cmd {
        C::CreateApi(c) => &c.options,
        C::GetApi(c) => &c.options,
        C::GetApis(c) => &c.options,
        C::UpdateApi(c) => &c.options,
        C::DeleteApi(c) => &c.options,
        C::CreateStage(c) => &c.options,
        C::GetStage(c) => &c.options,
        C::GetStages(c) => &c.options,
        C::UpdateStage(c) => &c.options,
        C::DeleteStage(c) => &c.options,
        C::CreateDomainName(c) => &c.options,
        C::GetDomainName(c) => &c.options,
        C::GetDomainNames(c) => &c.options,
        C::UpdateDomainName(c) => &c.options,
        C::DeleteDomainName(c) => &c.options,
        C::CreateApiMapping(c) => &c.options,
        C::GetApiMapping(c) => &c.options,
        C::GetApiMappings(c) => &c.options,
        C::UpdateApiMapping(c) => &c.options,
        C::DeleteApiMapping(c) => &c.options,
        C::ResolveRoute(c) => &c.options,
        C::Watch(c) => &c.options,
    }
}

/// Maps a failed call of `operation` to a [`CliError::Service`].
fn failed(operation: &'static str) -> impl Fn(Status) -> CliError {
    move |status| CliError::service(operation, status)
}

fn configurations(v: Vec<DomainNameConfigurations>) -> Vec<pb::DomainNameConfiguration> {
    v.into_iter().flat_map(|c| c.0).collect()
}

/// A drawing of one record as the AWS CLI shows it.
fn aws<T>(draw: fn(&T, Detail) -> Value) -> impl Fn(&T) -> Value {
    move |record| draw(record, Detail::Aws)
}

async fn execute(mut c: Registry, cmd: ClientCommand, d: bool) -> Result<Outcome, CliError> {
    use ClientCommand as C;
    use output::{api, api_mapping, domain_name, stage};
    // One request of operation `$op`, its answer drawn by `$draw` as a `$shape`.
    macro_rules! one {
        ($op:literal, $method:ident, $request:expr, $draw:expr, $shape:ident) => {{
            let r = rpc!(d, $op, c, $method, $request)
                .map_err(failed($op))?
                .into_inner();
            Ok(Outcome::Show($draw(&r), $op, Shape::$shape))
        }};
    }
    // One request of operation `$op` whose answer is not shown (a delete).
    macro_rules! none {
        ($op:literal, $method:ident, $request:expr) => {{
            rpc!(d, $op, c, $method, $request).map_err(failed($op))?;
            Ok(Outcome::Nothing)
        }};
    }
    // The pages `$paging` asks for of listing `$op` (each page's request built from its
    // `max_results` and `next_token`), every item drawn by `$draw` as a `$shape`.
    macro_rules! list {
        ($op:literal, $method:ident, $paging:expr, |$max:ident, $next:ident| $request:expr,
         $draw:expr, $shape:ident) => {{
            let (items, next) = paginate($paging, |$max, $next| {
                let mut c = c.clone();
                let request = $request;
                async move {
                    let r = rpc!(d, $op, c, $method, request)?.into_inner();
                    Ok((r.items, r.next_token))
                }
            })
            .await
            .map_err(failed($op))?;
            let items = items.iter().map($draw).collect();
            Ok(Outcome::Show(output::list(items, next), $op, Shape::$shape))
        }};
    }
    match cmd {
        C::CreateApi(Cmd { args: a, .. }) => one!(
            "CreateApi",
            create_api,
            pb::CreateApiRequest {
                name: a.name,
                protocol_type: pb::ProtocolType::from(a.protocol_type) as i32,
                description: a.description.unwrap_or_default(),
                tags: a.tags.unwrap_or_default(),
                route_selection_expression: a.route_selection_expression.unwrap_or_default(),
                api_key_selection_expression: a.api_key_selection_expression.unwrap_or_default(),
                validate_only: a.dry_run.validate_only,
            },
            aws(api),
            Api
        ),
        C::GetApi(Cmd { args: a, .. }) => one!(
            "GetApi",
            get_api,
            pb::GetApiRequest {
                api_id: a.api_id,
                ..Default::default()
            },
            aws(api),
            Api
        ),
        C::GetApis(Cmd { args: paging, .. }) => list!(
            "GetApis",
            get_apis,
            &paging,
            |max_results, next_token| pb::GetApisRequest {
                max_results,
                next_token,
                ..Default::default()
            },
            aws(api),
            Api
        ),
        C::UpdateApi(Cmd { args: a, .. }) => one!(
            "UpdateApi",
            update_api,
            pb::UpdateApiRequest {
                api_id: a.api_id,
                name: a.name,
                description: a.description,
                route_selection_expression: a.route_selection_expression,
                api_key_selection_expression: a.api_key_selection_expression,
                expected_revision: a.expected_revision,
                validate_only: a.dry_run.validate_only,
            },
            aws(api),
            Api
        ),
        C::DeleteApi(Cmd { args: a, .. }) => none!(
            "DeleteApi",
            delete_api,
            pb::DeleteApiRequest {
                api_id: a.api_id,
                expected_revision: a.expected_revision,
                validate_only: a.dry_run.validate_only,
            }
        ),
        C::CreateStage(Cmd { args: a, .. }) => one!(
            "CreateStage",
            create_stage,
            pb::CreateStageRequest {
                api_id: a.api_id,
                stage_name: a.stage_name,
                description: a.description.unwrap_or_default(),
                tags: a.tags.unwrap_or_default(),
                validate_only: a.dry_run.validate_only,
            },
            aws(stage),
            Stage
        ),
        C::GetStage(Cmd { args: a, .. }) => one!(
            "GetStage",
            get_stage,
            pb::GetStageRequest {
                api_id: a.api_id,
                stage_name: a.stage_name,
                ..Default::default()
            },
            aws(stage),
            Stage
        ),
        C::GetStages(Cmd { args: a, .. }) => list!(
            "GetStages",
            get_stages,
            &a.paging,
            |max_results, next_token| pb::GetStagesRequest {
                api_id: a.api_id.clone(),
                max_results,
                next_token,
                ..Default::default()
            },
            aws(stage),
            Stage
        ),
        C::UpdateStage(Cmd { args: a, .. }) => one!(
            "UpdateStage",
            update_stage,
            pb::UpdateStageRequest {
                api_id: a.api_id,
                stage_name: a.stage_name,
                description: a.description,
                expected_revision: a.expected_revision,
                validate_only: a.dry_run.validate_only,
            },
            aws(stage),
            Stage
        ),
        C::DeleteStage(Cmd { args: a, .. }) => none!(
            "DeleteStage",
            delete_stage,
            pb::DeleteStageRequest {
                api_id: a.api_id,
                stage_name: a.stage_name,
                expected_revision: a.expected_revision,
                validate_only: a.dry_run.validate_only,
            }
        ),
        C::CreateDomainName(Cmd { args: a, .. }) => one!(
            "CreateDomainName",
            create_domain_name,
            pb::CreateDomainNameRequest {
                domain_name: a.domain_name,
                domain_name_configurations: configurations(a.domain_name_configurations),
                tags: a.tags.unwrap_or_default(),
                validate_only: a.dry_run.validate_only,
            },
            aws(domain_name),
            DomainName
        ),
        C::GetDomainName(Cmd { args: a, .. }) => one!(
            "GetDomainName",
            get_domain_name,
            pb::GetDomainNameRequest {
                domain_name: a.domain_name,
                ..Default::default()
            },
            aws(domain_name),
            DomainName
        ),
        C::GetDomainNames(Cmd { args: paging, .. }) => list!(
            "GetDomainNames",
            get_domain_names,
            &paging,
            |max_results, next_token| pb::GetDomainNamesRequest {
                max_results,
                next_token,
                ..Default::default()
            },
            aws(domain_name),
            DomainName
        ),
        C::UpdateDomainName(Cmd { args: a, .. }) => one!(
            "UpdateDomainName",
            update_domain_name,
            pb::UpdateDomainNameRequest {
                domain_name: a.domain_name,
                domain_name_configurations: configurations(a.domain_name_configurations),
                expected_revision: a.expected_revision,
                validate_only: a.dry_run.validate_only,
            },
            aws(domain_name),
            DomainName
        ),
        C::DeleteDomainName(Cmd { args: a, .. }) => none!(
            "DeleteDomainName",
            delete_domain_name,
            pb::DeleteDomainNameRequest {
                domain_name: a.domain_name,
                expected_revision: a.expected_revision,
                validate_only: a.dry_run.validate_only,
            }
        ),
        C::CreateApiMapping(Cmd { args: a, .. }) => one!(
            "CreateApiMapping",
            create_api_mapping,
            pb::CreateApiMappingRequest {
                domain_name: a.domain_name,
                api_mapping_key: a.api_mapping_key,
                api_id: a.api_id,
                stage: a.stage,
                validate_only: a.dry_run.validate_only,
            },
            aws(api_mapping),
            ApiMapping
        ),
        C::GetApiMapping(Cmd { args: a, .. }) => one!(
            "GetApiMapping",
            get_api_mapping,
            pb::GetApiMappingRequest {
                domain_name: a.domain_name,
                api_mapping_id: a.api_mapping_id,
                ..Default::default()
            },
            aws(api_mapping),
            ApiMapping
        ),
        C::GetApiMappings(Cmd { args: a, .. }) => list!(
            "GetApiMappings",
            get_api_mappings,
            &a.paging,
            |max_results, next_token| pb::GetApiMappingsRequest {
                domain_name: a.domain_name.clone(),
                max_results,
                next_token,
                ..Default::default()
            },
            aws(api_mapping),
            ApiMapping
        ),
        C::UpdateApiMapping(Cmd { args: a, .. }) => one!(
            "UpdateApiMapping",
            update_api_mapping,
            pb::UpdateApiMappingRequest {
                domain_name: a.domain_name,
                api_mapping_id: a.api_mapping_id,
                api_mapping_key: a.api_mapping_key,
                api_id: a.api_id,
                stage: a.stage,
                expected_revision: a.expected_revision,
                validate_only: a.dry_run.validate_only,
            },
            aws(api_mapping),
            ApiMapping
        ),
        C::DeleteApiMapping(Cmd { args: a, .. }) => none!(
            "DeleteApiMapping",
            delete_api_mapping,
            pb::DeleteApiMappingRequest {
                domain_name: a.domain_name,
                api_mapping_id: a.api_mapping_id,
                expected_revision: a.expected_revision,
                validate_only: a.dry_run.validate_only,
            }
        ),
        C::ResolveRoute(Cmd { args: a, .. }) => one!(
            "ResolveRoute",
            resolve_route,
            pb::ResolveRouteRequest {
                host: a.host,
                path: a.path,
                ..Default::default()
            },
            output::resolve_route,
            ResolveRoute
        ),
        // Streams rather than answers: run() sends it to watch().
        C::Watch(_) => Ok(Outcome::Nothing),
    }
}

/// The `max_results` of the next request: the user's page size, but never more than the items
/// still wanted, so that the server's `next_token` resumes exactly after the last item printed.
fn page_size(max_results: Option<i32>, remaining: Option<u64>) -> i32 {
    let remaining = remaining.map(|r| r.min(1000) as i32);
    match (max_results, remaining) {
        (Some(m), Some(r)) => m.min(r),
        (Some(m), None) => m,
        (None, Some(r)) => r,
        (None, None) => 0,
    }
}

/// Fetches pages as the AWS CLI does: from `--starting-token`, following `next_token` until the
/// last page, `--max-items` items, or one page with `--no-paginate`. Returns the items and, when
/// the listing stopped before the end, the token that continues it.
async fn paginate<T, F, Fut>(
    paging: &PagingArgs,
    mut fetch: F,
) -> Result<(Vec<T>, Option<String>), Status>
where
    F: FnMut(i32, String) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, String), Status>>,
{
    let mut items = Vec::new();
    let mut token = paging.starting_token.clone().unwrap_or_default();
    loop {
        let remaining = paging
            .max_items
            .map(|m| m.saturating_sub(items.len() as u64));
        let (page, next) = fetch(page_size(paging.max_results, remaining), token.clone()).await?;
        items.extend(page);
        if let Some(max) = paging.max_items {
            items.truncate(usize::try_from(max).unwrap_or(usize::MAX));
        }
        if next.is_empty() {
            return Ok((items, None));
        }
        let enough = paging.max_items.is_some_and(|m| items.len() as u64 >= m);
        if paging.no_paginate || enough {
            return Ok((items, Some(next)));
        }
        if next == token {
            return Err(Status::internal(
                "the server returned the same next_token twice",
            ));
        }
        token = next;
    }
}

/// Prints every Watch message as it arrives until the stream ends (exit 0), fails (exit 254)
/// or Ctrl-C (exit 130): one line of JSON per message (`--output json`), the message's text
/// layout (`text`), or one YAML list element per message (`yaml-stream`); `--query` applies to
/// each message.
///
/// `printed` is set once anything was printed (after that the stream cannot move to another
/// endpoint without showing messages twice).
async fn watch(
    mut feed: Feed,
    a: WatchArgs,
    options: &ClientOptions,
    printed: &mut bool,
) -> Result<(), CliError> {
    let op = "Watch";
    let request = pb::WatchRequest {
        start_revision: a.start_revision,
        kinds: a
            .kinds
            .into_iter()
            .map(|k| pb::ResourceKind::from(k) as i32)
            .collect(),
        domain_names: a.domain_names,
        progress_interval_seconds: a.progress_interval_seconds,
        store_id: a.store_id,
        ..Default::default()
    };
    trace_request(options.debug, op, &request);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut stream = tokio::select! {
        r = feed.watch(request) => r.map_err(failed(op))?.into_inner(),
        _ = &mut ctrl_c => return Err(CliError::Interrupted),
    };
    loop {
        let message = tokio::select! {
            m = stream.message() => m.map_err(failed(op))?,
            _ = &mut ctrl_c => return Err(CliError::Interrupted),
        };
        let Some(message) = message else {
            return Ok(());
        };
        let mut value = output::watch_response(&message);
        if let Some(q) = &options.query {
            value = output::apply_query(q, &value)?;
        }
        let text = match options.output {
            OutputFormat::Text => super::text::render(&value),
            OutputFormat::YamlStream => super::yaml::render_stream_item(&value),
            _ => format!("{value}\n"),
        };
        *printed = true;
        print(&text)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_gets_a_scheme() {
        assert_eq!(endpoint_url("127.0.0.1:50051"), "http://127.0.0.1:50051");
        assert_eq!(endpoint_url("http://h:1"), "http://h:1");
        assert_eq!(endpoint_url("https://h:1"), "https://h:1");
    }

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(None, None), 0, "server default");
        assert_eq!(page_size(Some(50), None), 50);
        assert_eq!(page_size(None, Some(10)), 10);
        assert_eq!(page_size(Some(5), Some(10)), 5);
        assert_eq!(page_size(Some(50), Some(10)), 10);
        assert_eq!(page_size(None, Some(5000)), 1000);
    }

    /// A fake list of `n` numbered items served in pages; records the requests.
    async fn walk(
        n: usize,
        paging: PagingArgs,
    ) -> (Vec<usize>, Option<String>, Vec<(i32, String)>) {
        let mut calls = Vec::new();
        let (items, next) = paginate(&paging, |max, token| {
            calls.push((max, token.clone()));
            async move {
                let start: usize = if token.is_empty() {
                    0
                } else {
                    token.parse().unwrap()
                };
                let size = if max == 0 { 100 } else { max as usize };
                let end = (start + size).min(n);
                let next = if end < n {
                    end.to_string()
                } else {
                    String::new()
                };
                Ok(((start..end).collect(), next))
            }
        })
        .await
        .unwrap();
        (items, next, calls)
    }

    #[tokio::test]
    async fn follows_every_page() {
        let (items, next, calls) = walk(250, PagingArgs::default()).await;
        assert_eq!(items, (0..250).collect::<Vec<_>>());
        assert_eq!(next, None);
        assert_eq!(calls.len(), 3);
    }

    #[tokio::test]
    async fn max_items_stops_with_a_token_that_continues() {
        let paging = PagingArgs {
            max_items: Some(10),
            ..Default::default()
        };
        let (items, next, calls) = walk(250, paging).await;
        assert_eq!(items, (0..10).collect::<Vec<_>>());
        assert_eq!(next.as_deref(), Some("10"));
        assert_eq!(calls, vec![(10, String::new())]);
        let paging = PagingArgs {
            starting_token: next,
            max_items: Some(245),
            max_results: Some(100),
            ..Default::default()
        };
        let (items, next, _) = walk(250, paging).await;
        assert_eq!(items, (10..250).collect::<Vec<_>>());
        assert_eq!(next, None);
    }

    #[tokio::test]
    async fn no_paginate_makes_one_request() {
        let paging = PagingArgs {
            no_paginate: true,
            max_results: Some(20),
            ..Default::default()
        };
        let (items, next, calls) = walk(250, paging).await;
        assert_eq!(items.len(), 20);
        assert_eq!(next.as_deref(), Some("20"));
        assert_eq!(calls.len(), 1);
    }
}
