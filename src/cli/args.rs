//! The client subcommands and their flags, named as in `aws apigatewayv2` so that a command line
//! written for AWS works after swapping `aws apigatewayv2` for `mapreg`.

use std::collections::HashMap;

use clap::{Args, Subcommand, ValueEnum};

// `DomainNameConfigurations` is defined in `shorthand` (which must not depend on `args`) and
// re-exported here, so `args::DomainNameConfigurations` keeps naming it.
use super::shorthand;
pub use super::shorthand::DomainNameConfigurations;
use crate::pb;

/// Connection and output flags, accepted by every client command, before or after its name
/// (`mapreg --output text get-apis` and `mapreg get-apis --output text`), as the AWS CLI's
/// global options.
#[derive(Debug, Clone, Args)]
pub struct ClientOptions {
    /// gRPC endpoint of the mapreg server (`--endpoint` is an alias); several as `a,b,c`, tried
    /// in that order: the next is used when one cannot be connected to, and by reads also when
    /// one answers UNAVAILABLE (a write is never sent twice).
    #[arg(
        long,
        alias = "endpoint",
        env = "MAPREG_ENDPOINT",
        default_value = "http://127.0.0.1:50051",
        value_name = "URL[,URL...]"
    )]
    pub endpoint_url: String,
    /// Bearer token (not needed by a dev-mode server).
    #[arg(long, env = "MAPREG_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Output format, as the AWS CLI's.
    #[arg(long, value_enum, ignore_case = true, default_value_t = OutputFormat::Json)]
    pub output: OutputFormat,
    /// A JMESPath query applied to the output (the AWS-shaped JSON), e.g. `ApiId` or
    /// `Items[?ProtocolType=='HTTP'].Name`.
    #[arg(long, value_name = "JMESPATH")]
    pub query: Option<String>,
    /// Print each request and response (or error) to stderr.
    #[arg(long)]
    pub debug: bool,
    /// Accepted for the AWS CLI's sake: mapreg never pages its output.
    #[arg(long)]
    pub no_cli_pager: bool,
    /// Read the command's parameters from this JSON (or `file://PATH`); flags on the command
    /// line win. See --generate-cli-skeleton.
    #[arg(long, value_name = "JSON")]
    pub cli_input_json: Option<String>,
    /// Read the command's parameters from this YAML (or `file://PATH`); flags on the command
    /// line win.
    #[arg(long, value_name = "YAML")]
    pub cli_input_yaml: Option<String>,
    /// Print a template of --cli-input-json (`input`, the default) or --cli-input-yaml
    /// (`yaml-input`) for this command, and send nothing.
    #[arg(long, value_name = "input|yaml-input", num_args = 0..=1, default_missing_value = "input")]
    pub generate_cli_skeleton: Option<String>,
    /// TLS: --ca-bundle, --no-verify-ssl, --client-cert, --client-key.
    #[command(flatten)]
    pub tls: crate::client::connect::TlsOptions,
}

/// How results are printed (`--output`), as the AWS CLI prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// AWS CLI shaped JSON, indented by four spaces.
    Json,
    /// Tab-separated text: scalars on one line, lists of objects one line per item prefixed
    /// by the list's upper-case name (`ITEMS`).
    Text,
    /// A boxed text table.
    Table,
    /// YAML.
    Yaml,
    /// YAML as a stream of pages: a list result is printed as a one-element list per page.
    YamlStream,
}

/// A client command's own flags plus the [`ClientOptions`].
#[derive(Debug, Clone, Args)]
pub struct Cmd<T: Args> {
    /// The command's own flags.
    #[command(flatten)]
    pub args: T,
    /// Endpoint, token, output format.
    #[command(flatten)]
    pub options: ClientOptions,
}

/// The client commands, one per Registry RPC (as `aws apigatewayv2` names them), plus
/// `resolve-route` and `watch`.
#[derive(Debug, Clone, Subcommand)]
pub enum ClientCommand {
    /// Create an API.
    CreateApi(Cmd<CreateApiArgs>),
    /// Show an API.
    GetApi(Cmd<ApiIdArgs>),
    /// List APIs (every page unless --max-items or --no-paginate say otherwise).
    GetApis(Cmd<PagingArgs>),
    /// Change an API's name or description.
    UpdateApi(Cmd<UpdateApiArgs>),
    /// Delete an API (and its stages); refused while a mapping uses it.
    DeleteApi(Cmd<DeleteApiArgs>),
    /// Create a stage of an API.
    CreateStage(Cmd<CreateStageArgs>),
    /// Show a stage.
    GetStage(Cmd<StageIdArgs>),
    /// List an API's stages.
    GetStages(Cmd<GetStagesArgs>),
    /// Change a stage's description.
    UpdateStage(Cmd<UpdateStageArgs>),
    /// Delete a stage; refused while a mapping uses it.
    DeleteStage(Cmd<DeleteStageArgs>),
    /// Create a custom domain name.
    CreateDomainName(Cmd<CreateDomainNameArgs>),
    /// Show a custom domain name.
    GetDomainName(Cmd<DomainNameArgs>),
    /// List custom domain names.
    GetDomainNames(Cmd<PagingArgs>),
    /// Change a domain name's endpoint configuration.
    UpdateDomainName(Cmd<UpdateDomainNameArgs>),
    /// Delete a custom domain name and all its API mappings.
    DeleteDomainName(Cmd<DeleteDomainNameArgs>),
    /// Map a path key of a custom domain name to an API stage.
    CreateApiMapping(Cmd<CreateApiMappingArgs>),
    /// Show an API mapping.
    GetApiMapping(Cmd<ApiMappingIdArgs>),
    /// List a domain name's API mappings.
    GetApiMappings(Cmd<GetApiMappingsArgs>),
    /// Change an API mapping's key, API or stage.
    UpdateApiMapping(Cmd<UpdateApiMappingArgs>),
    /// Delete an API mapping.
    DeleteApiMapping(Cmd<DeleteApiMappingArgs>),
    /// Which API and stage serve a request for --host and --path.
    ResolveRoute(Cmd<ResolveRouteArgs>),
    /// Print the change feed as JSON lines, one per message, until interrupted.
    Watch(Cmd<WatchArgs>),
}

/// An API's protocol, as the AWS CLI spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum ProtocolTypeArg {
    /// HTTP API.
    Http,
    /// WebSocket API.
    Websocket,
    /// REST API.
    Rest,
}

impl From<ProtocolTypeArg> for pb::ProtocolType {
    fn from(p: ProtocolTypeArg) -> Self {
        match p {
            ProtocolTypeArg::Http => pb::ProtocolType::Http,
            ProtocolTypeArg::Websocket => pb::ProtocolType::Websocket,
            ProtocolTypeArg::Rest => pb::ProtocolType::Rest,
        }
    }
}

/// Pagination flags of the list commands, as the AWS CLI's.
#[derive(Debug, Clone, Default, Args)]
pub struct PagingArgs {
    /// Items per request to the server (default 100, at most 1000).
    #[arg(long, alias = "page-size", value_name = "N",
          value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub max_results: Option<i32>,
    /// Continue a listing from the NextToken a previous command printed.
    #[arg(long, alias = "next-token", value_name = "TOKEN")]
    pub starting_token: Option<String>,
    /// Print at most N items, then a NextToken if more remain.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_items: Option<u64>,
    /// Make one request only, and print its NextToken if more remain.
    #[arg(long)]
    pub no_paginate: bool,
}

/// Flags of `create-api`.
#[derive(Debug, Clone, Args)]
pub struct CreateApiArgs {
    /// Name of the API (1 to 128 characters).
    #[arg(long)]
    pub name: String,
    /// Protocol of the API; fixed once created.
    #[arg(long, value_enum, ignore_case = true)]
    pub protocol_type: ProtocolTypeArg,
    /// Description (at most 1024 characters).
    #[arg(long)]
    pub description: Option<String>,
    /// Tags: `k1=v1,k2=v2` or JSON `{"k1":"v1"}`.
    #[arg(long, value_parser = shorthand::parse_tags)]
    pub tags: Option<HashMap<String, String>>,
    /// How a WebSocket message picks its route, e.g. `$request.body.action` (required for
    /// WEBSOCKET; HTTP defaults to `${request.method} ${request.path}`; not for REST).
    #[arg(long, value_name = "EXPRESSION")]
    pub route_selection_expression: Option<String>,
    /// WEBSOCKET only: `$request.header.x-api-key` (the default) or
    /// `$context.authorizer.usageIdentifierKey`.
    #[arg(long, value_name = "EXPRESSION")]
    pub api_key_selection_expression: Option<String>,
    /// Check everything and print what would be created, but write nothing.
    #[command(flatten)]
    pub dry_run: DryRun,
}

/// `--validate-only`, accepted by every write command.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct DryRun {
    /// Run every check against the current state and print what the write would return
    /// (revisions 0), but write nothing.
    #[arg(long)]
    pub validate_only: bool,
}

/// Flags naming one API.
#[derive(Debug, Clone, Args)]
pub struct ApiIdArgs {
    /// The API's id.
    #[arg(long)]
    pub api_id: String,
}

/// Flags of `update-api`.
#[derive(Debug, Clone, Args)]
pub struct UpdateApiArgs {
    /// The API's id.
    #[arg(long)]
    pub api_id: String,
    /// New name.
    #[arg(long)]
    pub name: Option<String>,
    /// New description.
    #[arg(long)]
    pub description: Option<String>,
    /// New route selection expression (WEBSOCKET and HTTP APIs).
    #[arg(long, value_name = "EXPRESSION")]
    pub route_selection_expression: Option<String>,
    /// New API key selection expression (WEBSOCKET APIs).
    #[arg(long, value_name = "EXPRESSION")]
    pub api_key_selection_expression: Option<String>,
    /// Only if the API's ModRevision is this (0: unconditionally).
    #[arg(long, default_value_t = 0)]
    pub expected_revision: u64,
    /// --validate-only.
    #[command(flatten)]
    pub dry_run: DryRun,
}

/// Flags of `delete-api`.
#[derive(Debug, Clone, Args)]
pub struct DeleteApiArgs {
    /// The API's id.
    #[arg(long)]
    pub api_id: String,
    /// Only if the API's ModRevision is this (0: unconditionally).
    #[arg(long, default_value_t = 0)]
    pub expected_revision: u64,
    /// --validate-only.
    #[command(flatten)]
    pub dry_run: DryRun,
}

/// Flags of `create-stage`.
#[derive(Debug, Clone, Args)]
pub struct CreateStageArgs {
    /// The API's id.
    #[arg(long)]
    pub api_id: String,
    /// Stage name: 1 to 128 of [A-Za-z0-9_-], or `$default`.
    #[arg(long)]
    pub stage_name: String,
    /// Description.
    #[arg(long)]
    pub description: Option<String>,
    /// Tags: `k1=v1,k2=v2` or JSON `{"k1":"v1"}`.
    #[arg(long, value_parser = shorthand::parse_tags)]
    pub tags: Option<HashMap<String, String>>,
    /// --validate-only.
    #[command(flatten)]
    pub dry_run: DryRun,
}

/// Flags naming one stage.
#[derive(Debug, Clone, Args)]
pub struct StageIdArgs {
    /// The API's id.
    #[arg(long)]
    pub api_id: String,
    /// The stage's name.
    #[arg(long)]
    pub stage_name: String,
}

/// Flags of `get-stages`.
#[derive(Debug, Clone, Args)]
pub struct GetStagesArgs {
    /// The API's id.
    #[arg(long)]
    pub api_id: String,
    /// Pagination.
    #[command(flatten)]
    pub paging: PagingArgs,
}

/// Flags of `update-stage`.
#[derive(Debug, Clone, Args)]
pub struct UpdateStageArgs {
    /// The API's id.
    #[arg(long)]
    pub api_id: String,
    /// The stage's name.
    #[arg(long)]
    pub stage_name: String,
    /// New description.
    #[arg(long)]
    pub description: Option<String>,
    /// Only if the stage's ModRevision is this (0: unconditionally).
    #[arg(long, default_value_t = 0)]
    pub expected_revision: u64,
    /// --validate-only.
    #[command(flatten)]
    pub dry_run: DryRun,
}

/// Flags of `delete-stage`.
#[derive(Debug, Clone, Args)]
pub struct DeleteStageArgs {
    /// The API's id.
    #[arg(long)]
    pub api_id: String,
    /// The stage's name.
    #[arg(long)]
    pub stage_name: String,
    /// Only if the stage's ModRevision is this (0: unconditionally).
    #[arg(long, default_value_t = 0)]
    pub expected_revision: u64,
    /// --validate-only.
    #[command(flatten)]
    pub dry_run: DryRun,
}

/// Flags of `create-domain-name`.
#[derive(Debug, Clone, Args)]
pub struct CreateDomainNameArgs {
    /// The custom domain name, e.g. api.example.com or *.example.com.
    #[arg(long)]
    pub domain_name: String,
    /// `EndpointType=REGIONAL|EDGE,SecurityPolicy=TLS_1_2|TLS_1_0,CertificateArn=...`, or JSON
    /// `[{"EndpointType":"REGIONAL"}]`. Default: REGIONAL, TLS_1_2.
    #[arg(long, num_args = 1.., value_parser = shorthand::parse_domain_name_configurations)]
    pub domain_name_configurations: Vec<DomainNameConfigurations>,
    /// Tags: `k1=v1,k2=v2` or JSON `{"k1":"v1"}`.
    #[arg(long, value_parser = shorthand::parse_tags)]
    pub tags: Option<HashMap<String, String>>,
    /// --validate-only.
    #[command(flatten)]
    pub dry_run: DryRun,
}

/// Flags naming one domain name.
#[derive(Debug, Clone, Args)]
pub struct DomainNameArgs {
    /// The custom domain name.
    #[arg(long)]
    pub domain_name: String,
}

/// Flags of `update-domain-name`.
#[derive(Debug, Clone, Args)]
pub struct UpdateDomainNameArgs {
    /// The custom domain name.
    #[arg(long)]
    pub domain_name: String,
    /// Fields to change, as for create-domain-name; omitted fields keep their value.
    #[arg(long, num_args = 1.., value_parser = shorthand::parse_domain_name_configurations)]
    pub domain_name_configurations: Vec<DomainNameConfigurations>,
    /// Only if the domain's ModRevision is this (0: unconditionally).
    #[arg(long, default_value_t = 0)]
    pub expected_revision: u64,
    /// --validate-only.
    #[command(flatten)]
    pub dry_run: DryRun,
}

/// Flags of `delete-domain-name`.
#[derive(Debug, Clone, Args)]
pub struct DeleteDomainNameArgs {
    /// The custom domain name.
    #[arg(long)]
    pub domain_name: String,
    /// Only if the domain's ModRevision is this (0: unconditionally).
    #[arg(long, default_value_t = 0)]
    pub expected_revision: u64,
    /// --validate-only.
    #[command(flatten)]
    pub dry_run: DryRun,
}

/// Flags of `create-api-mapping`.
#[derive(Debug, Clone, Args)]
pub struct CreateApiMappingArgs {
    /// The custom domain name.
    #[arg(long)]
    pub domain_name: String,
    /// Path key, e.g. `v1` or `orders/v2`; omitted or empty for the root mapping.
    #[arg(long, default_value = "")]
    pub api_mapping_key: String,
    /// The API's id.
    #[arg(long)]
    pub api_id: String,
    /// The API's stage.
    #[arg(long)]
    pub stage: String,
    /// --validate-only.
    #[command(flatten)]
    pub dry_run: DryRun,
}

/// Flags naming one API mapping.
#[derive(Debug, Clone, Args)]
pub struct ApiMappingIdArgs {
    /// The custom domain name.
    #[arg(long)]
    pub domain_name: String,
    /// The mapping's id.
    #[arg(long)]
    pub api_mapping_id: String,
}

/// Flags of `get-api-mappings`.
#[derive(Debug, Clone, Args)]
pub struct GetApiMappingsArgs {
    /// The custom domain name.
    #[arg(long)]
    pub domain_name: String,
    /// Pagination.
    #[command(flatten)]
    pub paging: PagingArgs,
}

/// Flags of `update-api-mapping`.
#[derive(Debug, Clone, Args)]
pub struct UpdateApiMappingArgs {
    /// The custom domain name.
    #[arg(long)]
    pub domain_name: String,
    /// The mapping's id.
    #[arg(long)]
    pub api_mapping_id: String,
    /// New key (`--api-mapping-key ""` makes it the root mapping).
    #[arg(long)]
    pub api_mapping_key: Option<String>,
    /// New API id.
    #[arg(long)]
    pub api_id: Option<String>,
    /// New stage.
    #[arg(long)]
    pub stage: Option<String>,
    /// Only if the mapping's ModRevision is this (0: unconditionally).
    #[arg(long, default_value_t = 0)]
    pub expected_revision: u64,
    /// --validate-only.
    #[command(flatten)]
    pub dry_run: DryRun,
}

/// Flags of `delete-api-mapping`.
#[derive(Debug, Clone, Args)]
pub struct DeleteApiMappingArgs {
    /// The custom domain name.
    #[arg(long)]
    pub domain_name: String,
    /// The mapping's id.
    #[arg(long)]
    pub api_mapping_id: String,
    /// Only if the mapping's ModRevision is this (0: unconditionally).
    #[arg(long, default_value_t = 0)]
    pub expected_revision: u64,
    /// --validate-only.
    #[command(flatten)]
    pub dry_run: DryRun,
}

/// Flags of `resolve-route`.
#[derive(Debug, Clone, Args)]
pub struct ResolveRouteArgs {
    /// The request's Host (a port is ignored).
    #[arg(long)]
    pub host: String,
    /// The request's path.
    #[arg(long, default_value = "/")]
    pub path: String,
}

/// A kind of resource, for `watch --kinds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ResourceKindArg {
    /// APIs.
    Api,
    /// Stages.
    Stage,
    /// Custom domain names.
    #[value(alias = "domain_name", alias = "DomainName")]
    DomainName,
    /// API mappings.
    #[value(alias = "api_mapping", alias = "ApiMapping")]
    ApiMapping,
}

impl From<ResourceKindArg> for pb::ResourceKind {
    fn from(k: ResourceKindArg) -> Self {
        match k {
            ResourceKindArg::Api => pb::ResourceKind::Api,
            ResourceKindArg::Stage => pb::ResourceKind::Stage,
            ResourceKindArg::DomainName => pb::ResourceKind::DomainName,
            ResourceKindArg::ApiMapping => pb::ResourceKind::ApiMapping,
        }
    }
}

/// Flags of `watch`.
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// First revision to send; 0 sends a snapshot of the current state first.
    #[arg(long, default_value_t = 0)]
    pub start_revision: u64,
    /// Only these kinds (comma-separated); default all.
    #[arg(long, value_enum, ignore_case = true, value_delimiter = ',', num_args = 1..)]
    pub kinds: Vec<ResourceKindArg>,
    /// Only domain name and mapping events of these domains (comma-separated); default all.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub domain_names: Vec<String>,
    /// Seconds of silence before a progress message (0: the server's default, 10).
    #[arg(long, default_value_t = 0)]
    pub progress_interval_seconds: u32,
    /// The StoreId a previous watch printed, so a replaced data dir is detected on resume.
    #[arg(long, default_value = "")]
    pub store_id: String,
}
