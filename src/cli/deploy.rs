//! `mapreg deploy`, `mapreg delete-stack` and `mapreg describe-stack-resources`: CloudFormation
//! stacks of mapreg resources, with the AWS CLI's command names and flags.
//!
//! # Where a stack lives
//! In the registry itself, so every operator sees the same stack:
//! - an API, a stage or a domain name of stack `S` carries the tags
//!   `mapreg:cloudformation:stack-name = S`, `mapreg:cloudformation:logical-id = ID` and
//!   `mapreg:cloudformation:checksum` (a digest of the properties it was deployed with; equal
//!   digests mean nothing to deploy). AWS's own `aws:cloudformation:*` keys are reserved.
//! - an API mapping has no tags: its domain name carries `mapreg:cloudformation:S:ID =
//!   "<api_mapping_id> <checksum>"` (so a domain holds at most 50 tags' worth of them).
//!
//! # A deploy
//! 1. The template is read and checked ([`crate::cfn`]): nothing is written if it is refused.
//! 2. The stack's resources are read from the registry and the change set computed.
//! 3. Every create and update whose inputs are already known runs as a dry run
//!    (`validate_only`) before anything is written.
//! 4. The changes run in dependency order, each dry-run first; then the removed and replaced
//!    resources are deleted (mappings, stages, APIs, domain names).
//! 5. On a failure, what was done is undone in reverse order, and the command exits 255
//!    naming the resource and the rule it broke.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use tonic::Status;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use super::args::{ClientOptions, Cmd};
use super::commands::Bearer;
use super::error::{CliError, EXIT_OTHER, EXIT_USAGE};
use crate::cfn::TemplateError;
use crate::cfn::plan::{Action, Change, Checked, Recorded, change_set};
use crate::cfn::resources::{Configuration, Desired, Kind, Physical};
use crate::client::{self, Page, every_page};
use crate::domain::arn::{self, DEFAULT_REGION};
use crate::pb;
use crate::pb::registry_client::RegistryClient;

/// Tag naming the stack of an API, stage or domain name.
pub const STACK_TAG: &str = "mapreg:cloudformation:stack-name";
/// Tag naming the logical id of an API, stage or domain name.
pub const LOGICAL_TAG: &str = "mapreg:cloudformation:logical-id";
/// Tag holding the checksum of the properties a resource was deployed with.
pub const CHECKSUM_TAG: &str = "mapreg:cloudformation:checksum";
/// Prefix of every tag the stacks write.
const PREFIX: &str = "mapreg:cloudformation:";

/// The stack commands.
#[derive(Debug, Clone, Subcommand)]
pub enum StackCommand {
    /// Deploy a CloudFormation template as a stack: create, update or delete its resources.
    Deploy(Cmd<DeployArgs>),
    /// Delete a stack's resources.
    DeleteStack(Cmd<StackNameArgs>),
    /// List a stack's resources.
    DescribeStackResources(Cmd<StackNameArgs>),
}

/// Flags of `deploy`.
#[derive(Debug, Clone, Args)]
pub struct DeployArgs {
    /// The template (YAML or JSON).
    #[arg(long, value_name = "FILE")]
    pub template_file: PathBuf,
    /// The stack's name.
    #[arg(long)]
    pub stack_name: String,
    /// Parameter values, `Key=Value`.
    #[arg(long, num_args = 1.., value_name = "KEY=VALUE")]
    pub parameter_overrides: Vec<String>,
    /// Only show the change set.
    #[arg(long)]
    pub no_execute_changeset: bool,
}

/// Flags naming a stack.
#[derive(Debug, Clone, Args)]
pub struct StackNameArgs {
    /// The stack's name.
    #[arg(long)]
    pub stack_name: String,
}

type Client = RegistryClient<InterceptedService<Channel, Bearer>>;

/// Why a stack command failed.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Template(#[from] TemplateError),
    #[error("{0}")]
    Other(String),
    #[error(
        "An error occurred when calling the {operation} operation: {}",
        describe(status)
    )]
    Service {
        operation: &'static str,
        status: Status,
    },
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => EXIT_USAGE,
            _ => EXIT_OTHER,
        }
    }
}

/// A status as `message (CODE, REASON)`.
fn describe(s: &Status) -> String {
    let reason = s
        .get_details_error_info()
        .map(|i| format!(", {}", i.reason))
        .unwrap_or_default();
    format!("{} ({:?}{reason})", s.message(), s.code())
}

fn call(operation: &'static str) -> impl Fn(Status) -> Failure {
    move |status| Failure::Service { operation, status }
}

/// Runs a stack command and returns the exit code.
pub async fn run_stack(cmd: StackCommand) -> u8 {
    let result = async {
        let options = match &cmd {
            StackCommand::Deploy(c) => &c.options,
            StackCommand::DeleteStack(c) => &c.options,
            StackCommand::DescribeStackResources(c) => &c.options,
        };
        let mut c = connect(options).await?;
        match &cmd {
            StackCommand::Deploy(d) => deploy(&mut c, &d.args).await,
            StackCommand::DeleteStack(d) => delete_stack(&mut c, &d.args.stack_name).await,
            StackCommand::DescribeStackResources(d) => {
                describe_stack_resources(&mut c, &d.args.stack_name).await
            }
        }
    }
    .await;
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            e.exit_code()
        }
    }
}

async fn connect(options: &ClientOptions) -> Result<Client, Failure> {
    let (channel, bearer) = super::commands::channel(options)
        .await
        .map_err(|e| match e {
            CliError::Usage(m) => Failure::Usage(m),
            e => Failure::Other(e.to_string()),
        })?;
    Ok(RegistryClient::with_interceptor(channel, bearer))
}

// ---- the stack as the registry holds it ---------------------------------------------------

/// A resource of the stack, with the record it is.
#[derive(Debug, Clone)]
struct Held {
    recorded: Recorded,
    /// Every tag of the record (of the mapping's domain, for a mapping).
    tags: HashMap<String, String>,
    /// For a mapping: its domain and id.
    mapping: Option<(String, String)>,
}

fn user_tags(tags: &HashMap<String, String>) -> BTreeMap<String, String> {
    tags.iter()
        .filter(|(k, _)| !k.starts_with(PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A registry record as a stack sees it.
trait Live {
    /// Its physical id and the attributes `Fn::GetAtt` reads.
    fn physical(&self) -> Physical;
    /// Its properties, in the template's terms (the user's tags only).
    fn live(&self) -> Desired;
    /// Every tag it carries (none for a mapping: its domain carries the stack's record of it).
    fn into_tags(self) -> HashMap<String, String>;
}

/// [`Live::into_tags`] of a record that carries tags of its own.
macro_rules! own_tags {
    () => {
        fn into_tags(self) -> HashMap<String, String> {
            self.tags
        }
    };
}

/// Sends a write; its answer as a stack sees it, with every tag the record carries.
async fn written<R: Live>(
    call: impl Future<Output = Result<tonic::Response<R>, Status>>,
) -> Result<(Physical, Desired, HashMap<String, String>), Status> {
    let r = call.await?.into_inner();
    Ok((r.physical(), r.live(), r.into_tags()))
}

impl Live for pb::Api {
    fn physical(&self) -> Physical {
        let scheme = if self.protocol_type == pb::ProtocolType::Websocket as i32 {
            "wss"
        } else {
            "https"
        };
        Physical {
            reference: self.api_id.clone(),
            attributes: BTreeMap::from([
                ("ApiId".to_string(), self.api_id.clone()),
                (
                    "ApiEndpoint".to_string(),
                    format!("{scheme}://{}.execute-api.mapreg.internal", self.api_id),
                ),
            ]),
        }
    }

    fn live(&self) -> Desired {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Desired::Api {
            name: self.name.clone(),
            protocol_type: super::output::protocol_type(self.protocol_type)
                .unwrap_or_default()
                .to_string(),
            route_selection_expression: some(&self.route_selection_expression),
            api_key_selection_expression: some(&self.api_key_selection_expression),
            description: self.description.clone(),
            tags: user_tags(&self.tags),
        }
    }
    own_tags!();
}

impl Live for pb::Stage {
    fn physical(&self) -> Physical {
        Physical {
            reference: self.stage_name.clone(),
            attributes: BTreeMap::new(),
        }
    }

    fn live(&self) -> Desired {
        Desired::Stage {
            api_id: self.api_id.clone(),
            stage_name: self.stage_name.clone(),
            description: self.description.clone(),
            tags: user_tags(&self.tags),
        }
    }
    own_tags!();
}

impl Live for pb::DomainName {
    fn physical(&self) -> Physical {
        let regional = self
            .domain_name_configurations
            .first()
            .map(|c| c.api_gateway_domain_name.clone())
            .unwrap_or_default();
        Physical {
            reference: self.domain_name.clone(),
            attributes: BTreeMap::from([
                ("RegionalDomainName".to_string(), regional),
                // mapreg has no Route 53: a fixed zone id stands in.
                ("RegionalHostedZoneId".to_string(), "ZMAPREG".to_string()),
                ("DomainNameArn".to_string(), domain_arn(&self.domain_name)),
            ]),
        }
    }

    fn live(&self) -> Desired {
        let configuration = self
            .domain_name_configurations
            .first()
            .map(|c| Configuration {
                endpoint_type: Some(
                    match pb::EndpointType::try_from(c.endpoint_type) {
                        Ok(pb::EndpointType::Edge) => "EDGE",
                        _ => "REGIONAL",
                    }
                    .to_string(),
                ),
                security_policy: Some(
                    match pb::SecurityPolicy::try_from(c.security_policy) {
                        Ok(pb::SecurityPolicy::Tls10) => "TLS_1_0",
                        _ => "TLS_1_2",
                    }
                    .to_string(),
                ),
                certificate_arn: (!c.certificate_arn.is_empty()).then(|| c.certificate_arn.clone()),
            });
        Desired::DomainName {
            domain_name: self.domain_name.clone(),
            configuration,
            tags: user_tags(&self.tags),
        }
    }
    own_tags!();
}

impl Live for pb::ApiMapping {
    fn physical(&self) -> Physical {
        Physical {
            reference: self.api_mapping_id.clone(),
            attributes: BTreeMap::from([("ApiMappingId".to_string(), self.api_mapping_id.clone())]),
        }
    }

    fn live(&self) -> Desired {
        Desired::ApiMapping {
            domain_name: self.domain_name.clone(),
            api_mapping_key: self.api_mapping_key.clone(),
            api_id: self.api_id.clone(),
            stage: self.stage.clone(),
        }
    }
    fn into_tags(self) -> HashMap<String, String> {
        HashMap::new()
    }
}

/// The tag on a domain recording mapping `logical` of `stack`.
fn mapping_tag(stack: &str, logical: &str) -> String {
    format!("{PREFIX}{stack}:{logical}")
}

/// Whether a record's tags put it in `stack`; its logical id and checksum if so.
fn membership(tags: &HashMap<String, String>, stack: &str) -> Option<(String, String)> {
    if tags.get(STACK_TAG).map(String::as_str) != Some(stack) {
        return None;
    }
    Some((
        tags.get(LOGICAL_TAG).cloned()?,
        tags.get(CHECKSUM_TAG).cloned().unwrap_or_default(),
    ))
}

/// Every item of listing `operation`, read page after page: `ask` sends the request for the
/// page with the given token. Each page is asked on a clone of the client (a call borrows its
/// client for as long as it runs).
async fn all<P: Page, F>(
    c: &Client,
    operation: &'static str,
    ask: impl Fn(Client, String) -> F,
) -> Result<Vec<P::Item>, Failure>
where
    F: Future<Output = Result<tonic::Response<P>, Status>>,
{
    let page = |next_token| {
        let asked = ask(c.clone(), next_token);
        async move { asked.await.map_err(call(operation)) }
    };
    every_page(page, client::page).await
}

/// Every item of listing `$op`, asked of `$method` in pages of 1000 with `$request`'s other
/// `$field`s.
macro_rules! every {
    ($c:expr, $op:literal, $method:ident, $request:ident { $($field:ident: $value:expr),* }) => {
        all($c, $op, |mut c, next_token| {
            let msg = pb::$request {
                $($field: $value,)*
                max_results: 1000,
                next_token,
                ..Default::default()
            };
            async move { c.$method(msg).await }
        })
        .await
    };
}

async fn all_apis(c: &Client) -> Result<Vec<pb::Api>, Failure> {
    every!(c, "GetApis", get_apis, GetApisRequest {})
}

async fn all_stages(c: &Client, api_id: &str) -> Result<Vec<pb::Stage>, Failure> {
    every!(
        c,
        "GetStages",
        get_stages,
        GetStagesRequest {
            api_id: api_id.to_string()
        }
    )
}

async fn all_domains(c: &Client) -> Result<Vec<pb::DomainName>, Failure> {
    every!(
        c,
        "GetDomainNames",
        get_domain_names,
        GetDomainNamesRequest {}
    )
}

/// An API, stage or domain name of the stack, as the registry holds it.
fn tagged(
    kind: Kind,
    physical: Physical,
    live: Desired,
    checksum: String,
    tags: &HashMap<String, String>,
) -> Held {
    Held {
        recorded: Recorded {
            kind,
            physical,
            checksum,
            live,
        },
        tags: tags.clone(),
        mapping: None,
    }
}

/// The stack's resources, by logical id.
async fn load(c: &mut Client, stack: &str) -> Result<BTreeMap<String, Held>, Failure> {
    let mut held = BTreeMap::new();
    let mut add = |id: String, h: Held| -> Result<(), Failure> {
        if held.insert(id.clone(), h).is_some() {
            return Err(Failure::Other(format!(
                "stack {stack}: two resources in the registry are tagged as logical id {id}; \
                 remove the {STACK_TAG} tag from the one that is not the stack's"
            )));
        }
        Ok(())
    };
    for a in all_apis(c).await? {
        if let Some((id, checksum)) = membership(&a.tags, stack) {
            let live = a.live();
            add(id, tagged(Kind::Api, a.physical(), live, checksum, &a.tags))?;
        }
        for s in all_stages(c, &a.api_id).await? {
            if let Some((id, checksum)) = membership(&s.tags, stack) {
                let live = s.live();
                add(
                    id,
                    tagged(Kind::Stage, s.physical(), live, checksum, &s.tags),
                )?;
            }
        }
    }
    let mapping_prefix = format!("{PREFIX}{stack}:");
    for d in all_domains(c).await? {
        if let Some((id, checksum)) = membership(&d.tags, stack) {
            let (physical, live) = (d.physical(), d.live());
            add(
                id,
                tagged(Kind::DomainName, physical, live, checksum, &d.tags),
            )?;
        }
        for (key, value) in &d.tags {
            let Some(id) = key.strip_prefix(&mapping_prefix) else {
                continue;
            };
            let (mapping_id, checksum) = value.split_once(' ').unwrap_or((value, ""));
            let m = match c
                .get_api_mapping(pb::GetApiMappingRequest {
                    domain_name: d.domain_name.clone(),
                    api_mapping_id: mapping_id.to_string(),
                    ..Default::default()
                })
                .await
            {
                Ok(m) => m.into_inner(),
                // Deleted behind the stack's back: the next deploy creates it again.
                Err(s) if s.code() == tonic::Code::NotFound => continue,
                Err(s) => return Err(call("GetApiMapping")(s)),
            };
            let recorded = Recorded {
                kind: Kind::ApiMapping,
                physical: m.physical(),
                checksum: checksum.to_string(),
                live: m.live(),
            };
            add(
                id.to_string(),
                Held {
                    recorded,
                    tags: d.tags.clone(),
                    mapping: Some((d.domain_name.clone(), m.api_mapping_id.clone())),
                },
            )?;
        }
    }
    Ok(held)
}

// ---- writes ---------------------------------------------------------------------------------

fn protocol_value(p: &str) -> i32 {
    match p {
        "WEBSOCKET" => pb::ProtocolType::Websocket as i32,
        "HTTP" => pb::ProtocolType::Http as i32,
        "REST" => pb::ProtocolType::Rest as i32,
        _ => pb::ProtocolType::Unspecified as i32,
    }
}

fn configurations(c: &Option<Configuration>) -> Vec<pb::DomainNameConfiguration> {
    let Some(c) = c else { return Vec::new() };
    let endpoint_type = match c.endpoint_type.as_deref() {
        None => pb::EndpointType::Unspecified as i32,
        Some("REGIONAL") => pb::EndpointType::Regional as i32,
        Some("EDGE") => pb::EndpointType::Edge as i32,
        // An unknown value goes to the server as such, which refuses it by name.
        Some(_) => -1,
    };
    let security_policy = match c.security_policy.as_deref() {
        None => pb::SecurityPolicy::Unspecified as i32,
        Some("TLS_1_2") => pb::SecurityPolicy::Tls12 as i32,
        Some("TLS_1_0") => pb::SecurityPolicy::Tls10 as i32,
        Some(_) => -1,
    };
    vec![pb::DomainNameConfiguration {
        endpoint_type,
        security_policy,
        certificate_arn: c.certificate_arn.clone().unwrap_or_default(),
        ..Default::default()
    }]
}

/// What a step did, for the journal.
#[derive(Debug)]
enum Done {
    Created(String, Held),
    /// The record before, and the tags it carries after.
    Updated(String, Held, HashMap<String, String>),
    Deleted(String, Held),
}

/// Runs the stack's writes; remembers what it did so it can be undone.
struct Writer<'a> {
    c: &'a mut Client,
    stack: String,
    journal: Vec<Done>,
}

/// The tags a stack resource carries: the user's plus the stack's own.
fn stack_tags(
    user: &BTreeMap<String, String>,
    stack: &str,
    id: &str,
    checksum: &str,
) -> HashMap<String, String> {
    let mut t: HashMap<String, String> = user.clone().into_iter().collect();
    t.insert(STACK_TAG.into(), stack.into());
    t.insert(LOGICAL_TAG.into(), id.into());
    t.insert(CHECKSUM_TAG.into(), checksum.into());
    t
}

/// The ARN of domain name `domain`: what its tags (and the stack's mapping tags) are set on.
fn domain_arn(domain: &str) -> String {
    arn::arn(DEFAULT_REGION, &format!("/domainnames/{domain}"))
}

fn resource_arn(kind: Kind, p: &Physical, d: &Desired) -> String {
    let path = match (kind, d) {
        (Kind::Api, _) => format!("/apis/{}", p.reference),
        (Kind::Stage, Desired::Stage { api_id, .. }) => {
            format!("/apis/{api_id}/stages/{}", p.reference)
        }
        (Kind::DomainName, _) => format!("/domainnames/{}", p.reference),
        _ => String::new(),
    };
    arn::arn(DEFAULT_REGION, &path)
}

impl Writer<'_> {
    /// Creates `d` as logical `id` (`tags`: every tag it should carry; None: the stack's).
    async fn create(
        &mut self,
        id: &str,
        d: &Desired,
        dry_run: bool,
        tags: Option<HashMap<String, String>>,
    ) -> Result<Held, Status> {
        let checksum = d.checksum();
        let tags = tags.unwrap_or_else(|| stack_tags(&d.tags(), &self.stack, id, &checksum));
        let c = &mut *self.c;
        let mut mapping = None;
        let (physical, live, tags) = match d {
            Desired::Api {
                name,
                protocol_type,
                route_selection_expression,
                api_key_selection_expression,
                description,
                ..
            } => {
                let request = pb::CreateApiRequest {
                    name: name.clone(),
                    protocol_type: protocol_value(protocol_type),
                    description: description.clone(),
                    tags,
                    route_selection_expression: route_selection_expression
                        .clone()
                        .unwrap_or_default(),
                    api_key_selection_expression: api_key_selection_expression
                        .clone()
                        .unwrap_or_default(),
                    validate_only: dry_run,
                };
                written(c.create_api(request)).await?
            }
            Desired::Stage {
                api_id,
                stage_name,
                description,
                ..
            } => {
                let request = pb::CreateStageRequest {
                    api_id: api_id.clone(),
                    stage_name: stage_name.clone(),
                    description: description.clone(),
                    tags,
                    validate_only: dry_run,
                };
                written(c.create_stage(request)).await?
            }
            Desired::DomainName {
                domain_name,
                configuration,
                ..
            } => {
                let request = pb::CreateDomainNameRequest {
                    domain_name: domain_name.clone(),
                    domain_name_configurations: configurations(configuration),
                    tags,
                    validate_only: dry_run,
                };
                written(c.create_domain_name(request)).await?
            }
            Desired::ApiMapping {
                domain_name,
                api_mapping_key,
                api_id,
                stage,
            } => {
                let request = pb::CreateApiMappingRequest {
                    domain_name: domain_name.clone(),
                    api_mapping_key: api_mapping_key.clone(),
                    api_id: api_id.clone(),
                    stage: stage.clone(),
                    validate_only: dry_run,
                };
                let m = c.create_api_mapping(request).await?.into_inner();
                let mut domain_tags = HashMap::new();
                if !dry_run {
                    let key = mapping_tag(&self.stack, id);
                    let value = format!("{} {checksum}", m.api_mapping_id);
                    domain_tags = c
                        .tag_resource(pb::TagResourceRequest {
                            resource_arn: domain_arn(&m.domain_name),
                            tags: HashMap::from([(key, value)]),
                            expected_revision: 0,
                        })
                        .await?
                        .into_inner()
                        .tags;
                }
                mapping = Some((m.domain_name.clone(), m.api_mapping_id.clone()));
                (m.physical(), m.live(), domain_tags)
            }
        };
        let held = Held {
            recorded: Recorded {
                kind: d.kind(),
                physical,
                checksum,
                live,
            },
            tags,
            mapping,
        };
        if !dry_run {
            self.journal
                .push(Done::Created(id.to_string(), held.clone()));
        }
        Ok(held)
    }

    /// Brings `old` to `d` in place (`tags`: every tag it should carry; None: the stack's).
    async fn update(
        &mut self,
        id: &str,
        old: &Held,
        d: &Desired,
        dry_run: bool,
        tags: Option<HashMap<String, String>>,
    ) -> Result<Held, Status> {
        let checksum = d.checksum();
        let given_tags = tags.is_some();
        let want = tags.unwrap_or_else(|| stack_tags(&d.tags(), &self.stack, id, &checksum));
        let c = &mut *self.c;
        let p = &old.recorded.physical;
        let kind = old.recorded.kind;
        let (physical, live, _) = match d {
            Desired::Api {
                name,
                route_selection_expression,
                api_key_selection_expression,
                description,
                ..
            } => {
                let request = pb::UpdateApiRequest {
                    api_id: p.reference.clone(),
                    name: Some(name.clone()),
                    description: Some(description.clone()),
                    expected_revision: 0,
                    route_selection_expression: route_selection_expression.clone(),
                    api_key_selection_expression: api_key_selection_expression.clone(),
                    validate_only: dry_run,
                };
                written(c.update_api(request)).await?
            }
            Desired::Stage {
                api_id,
                stage_name,
                description,
                ..
            } => {
                let request = pb::UpdateStageRequest {
                    api_id: api_id.clone(),
                    stage_name: stage_name.clone(),
                    description: Some(description.clone()),
                    expected_revision: 0,
                    validate_only: dry_run,
                };
                written(c.update_stage(request)).await?
            }
            Desired::DomainName {
                domain_name,
                configuration,
                ..
            } => {
                let request = pb::UpdateDomainNameRequest {
                    domain_name: domain_name.clone(),
                    domain_name_configurations: configurations(configuration),
                    expected_revision: 0,
                    validate_only: dry_run,
                };
                written(c.update_domain_name(request)).await?
            }
            Desired::ApiMapping {
                domain_name,
                api_mapping_key,
                api_id,
                stage,
            } => {
                let request = pb::UpdateApiMappingRequest {
                    domain_name: domain_name.clone(),
                    api_mapping_id: p.reference.clone(),
                    api_mapping_key: Some(api_mapping_key.clone()),
                    api_id: Some(api_id.clone()),
                    stage: Some(stage.clone()),
                    expected_revision: 0,
                    validate_only: dry_run,
                };
                written(c.update_api_mapping(request)).await?
            }
        };
        let mut tags = old.tags.clone();
        if !dry_run {
            // Record the new checksum (and tags) only after the change itself succeeded.
            let (target, wanted) = match &old.mapping {
                Some((domain, mapping_id)) => {
                    let t = if given_tags {
                        want
                    } else {
                        let mut t = old.tags.clone();
                        t.insert(
                            mapping_tag(&self.stack, id),
                            format!("{mapping_id} {checksum}"),
                        );
                        t
                    };
                    (domain_arn(domain), t)
                }
                None => (resource_arn(kind, p, d), want),
            };
            tags = sync_tags(c, &target, &old.tags, &wanted).await?;
            self.journal
                .push(Done::Updated(id.to_string(), old.clone(), tags.clone()));
        }
        Ok(Held {
            recorded: Recorded {
                kind,
                physical,
                checksum,
                live,
            },
            tags,
            mapping: old.mapping.clone(),
        })
    }

    /// Deletes `old`.
    async fn delete(&mut self, id: &str, old: &Held, dry_run: bool) -> Result<(), Status> {
        let c = &mut *self.c;
        let p = &old.recorded.physical;
        match (&old.recorded.live, &old.mapping) {
            (Desired::ApiMapping { .. }, Some((domain, mapping_id))) => {
                c.delete_api_mapping(pb::DeleteApiMappingRequest {
                    domain_name: domain.clone(),
                    api_mapping_id: mapping_id.clone(),
                    expected_revision: 0,
                    validate_only: dry_run,
                })
                .await?;
                if !dry_run {
                    let untag = c
                        .untag_resource(pb::UntagResourceRequest {
                            resource_arn: domain_arn(domain),
                            tag_keys: vec![mapping_tag(&self.stack, id)],
                            expected_revision: 0,
                        })
                        .await;
                    match untag {
                        Ok(_) => {}
                        Err(s) if s.code() == tonic::Code::NotFound => {}
                        Err(s) => return Err(s),
                    }
                }
            }
            (Desired::Stage { api_id, .. }, _) => {
                c.delete_stage(pb::DeleteStageRequest {
                    api_id: api_id.clone(),
                    stage_name: p.reference.clone(),
                    expected_revision: 0,
                    validate_only: dry_run,
                })
                .await?;
            }
            (Desired::Api { .. }, _) => {
                c.delete_api(pb::DeleteApiRequest {
                    api_id: p.reference.clone(),
                    expected_revision: 0,
                    validate_only: dry_run,
                })
                .await?;
            }
            (Desired::DomainName { .. }, _) => {
                c.delete_domain_name(pb::DeleteDomainNameRequest {
                    domain_name: p.reference.clone(),
                    expected_revision: 0,
                    validate_only: dry_run,
                })
                .await?;
            }
            (Desired::ApiMapping { .. }, None) => {}
        }
        if !dry_run {
            self.journal
                .push(Done::Deleted(id.to_string(), old.clone()));
        }
        Ok(())
    }

    /// Undoes the journal, newest first; prints each step. Returns whether all of it worked.
    async fn roll_back(&mut self) -> bool {
        let mut clean = true;
        let journal = std::mem::take(&mut self.journal);
        for done in journal.into_iter().rev() {
            let (what, result) = match &done {
                Done::Created(id, held) => (
                    format!("delete {id}"),
                    self.delete(id, held, false).await.map(|_| ()),
                ),
                Done::Updated(id, before, after) => {
                    let tags = Some(before.tags.clone());
                    // The record as it is now: its identity, and the tags it carries.
                    let now = Held {
                        tags: after.clone(),
                        ..before.clone()
                    };
                    (
                        format!("restore {id}"),
                        self.update(id, &now, &before.recorded.live, false, tags)
                            .await
                            .map(|_| ()),
                    )
                }
                Done::Deleted(id, held) => {
                    let tags = if held.mapping.is_some() {
                        None
                    } else {
                        Some(held.tags.clone())
                    };
                    (
                        format!("re-create {id}"),
                        self.create(id, &held.recorded.live, false, tags)
                            .await
                            .map(|_| ()),
                    )
                }
            };
            match result {
                Ok(()) => println!("  ROLLBACK {what}: done"),
                Err(s) => {
                    clean = false;
                    println!("  ROLLBACK {what}: FAILED: {}", describe(&s));
                }
            }
        }
        // Undoing wrote journal entries of its own; they are not undone.
        self.journal.clear();
        clean
    }
}

/// Makes `target`'s tags equal `want` (from `have`); returns the tags after.
async fn sync_tags(
    c: &mut Client,
    target: &str,
    have: &HashMap<String, String>,
    want: &HashMap<String, String>,
) -> Result<HashMap<String, String>, Status> {
    let mut tags = have.clone();
    let changed: HashMap<String, String> = want
        .iter()
        .filter(|(k, v)| have.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !changed.is_empty() {
        tags = c
            .tag_resource(pb::TagResourceRequest {
                resource_arn: target.to_string(),
                tags: changed,
                expected_revision: 0,
            })
            .await?
            .into_inner()
            .tags;
    }
    let gone: Vec<String> = have
        .keys()
        .filter(|k| !want.contains_key(*k))
        .cloned()
        .collect();
    if !gone.is_empty() {
        tags = c
            .untag_resource(pb::UntagResourceRequest {
                resource_arn: target.to_string(),
                tag_keys: gone,
                expected_revision: 0,
            })
            .await?
            .into_inner()
            .tags;
    }
    Ok(tags)
}

// ---- the commands -------------------------------------------------------------------------

fn overrides(raw: &[String]) -> Result<BTreeMap<String, String>, Failure> {
    let mut out = BTreeMap::new();
    for o in raw {
        let Some((k, v)) = o.split_once('=') else {
            return Err(Failure::Usage(format!(
                "--parameter-overrides: {o:?} is not Key=Value"
            )));
        };
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

fn action_name(a: Action) -> &'static str {
    match a {
        Action::Add => "Add",
        Action::Modify { replacement: false } => "Modify",
        Action::Modify { replacement: true } => "Modify (Replacement)",
        Action::Remove => "Remove",
        Action::NoChange => "No change",
    }
}

fn print_changes(changes: &[Change]) {
    println!("Changeset:");
    for c in changes {
        println!(
            "  {:<22} {:<24} {}",
            action_name(c.action),
            c.logical_id,
            c.kind.type_name()
        );
    }
}

fn print_outputs(checked: &Checked, env: &BTreeMap<String, Physical>) -> Result<(), Failure> {
    let outputs = checked.outputs(env)?;
    if !outputs.is_empty() {
        println!("Outputs:");
        for (k, v) in outputs {
            println!("  {k} = {v}");
        }
    }
    Ok(())
}

/// Whether a resolved resource still holds a placeholder of a resource to be created.
fn pending(d: &Desired) -> bool {
    format!("{d:?}").contains("{{")
}

fn step_failed(id: &str, kind: Kind, what: &str, s: &Status) -> String {
    format!(
        "Resource {id} ({}) {what}_FAILED: {}",
        kind.type_name(),
        describe(s)
    )
}

async fn deploy(c: &mut Client, args: &DeployArgs) -> Result<(), Failure> {
    let text = std::fs::read_to_string(&args.template_file).map_err(|e| {
        Failure::Usage(format!(
            "cannot read --template-file {}: {e}",
            args.template_file.display()
        ))
    })?;
    let template = crate::cfn::template::parse(&text)?;
    let stack = args.stack_name.as_str();
    let checked = Checked::new(template, stack, &overrides(&args.parameter_overrides)?)?;
    for id in checked.order() {
        if checked.kind(id) == Some(Kind::ApiMapping) && mapping_tag(stack, id).len() > 128 {
            return Err(TemplateError::new(
                format!("Resources.{id}"),
                format!(
                    "the stack name and logical id are too long together: mapreg records the \
                     mapping as the tag {} on its domain, and tag keys are at most 128 characters",
                    mapping_tag(stack, id)
                ),
            )
            .into());
        }
    }
    let held = load(c, stack).await?;
    let recorded: BTreeMap<String, Recorded> = held
        .iter()
        .map(|(k, h)| (k.clone(), h.recorded.clone()))
        .collect();
    let changes = change_set(&checked, &recorded)?;
    println!("Waiting for changeset to be created..");
    let mut env: BTreeMap<String, Physical> = BTreeMap::new();
    if changes.iter().all(|c| c.action == Action::NoChange) {
        println!("\nNo changes to deploy. Stack {stack} is up to date");
        for (k, h) in &held {
            env.insert(k.clone(), h.recorded.physical.clone());
        }
        return print_outputs(&checked, &env);
    }
    print_changes(&changes);
    if args.no_execute_changeset {
        println!(
            "\nChangeset created successfully. Run mapreg deploy without \
             --no-execute-changeset to apply it to stack {stack}"
        );
        return Ok(());
    }

    let mut w = Writer {
        c,
        stack: stack.to_string(),
        journal: Vec::new(),
    };
    // Dry runs of every create and update whose inputs are known before anything is written.
    for ch in &changes {
        let id = ch.logical_id.as_str();
        let keeps =
            |a: Action| matches!(a, Action::NoChange | Action::Modify { replacement: false });
        if keeps(ch.action) {
            if let Some(h) = held.get(id) {
                env.insert(id.to_string(), h.recorded.physical.clone());
            }
        }
        let result = match ch.action {
            Action::Add | Action::Modify { replacement: true } => {
                let d = checked.desired(id, &env)?;
                if pending(&d) {
                    continue;
                }
                w.create(id, &d, true, None).await.map(|_| ())
            }
            Action::Modify { replacement: false } => {
                let (Some(h), d) = (held.get(id), checked.desired(id, &env)?) else {
                    continue;
                };
                if pending(&d) {
                    continue;
                }
                w.update(id, h, &d, true, None).await.map(|_| ())
            }
            _ => Ok(()),
        };
        if let Err(s) = result {
            let what = if ch.action == Action::Add {
                "CREATE"
            } else {
                "UPDATE"
            };
            return Err(Failure::Other(format!(
                "Failed to create/update the stack {stack}, nothing was changed: {}",
                step_failed(id, ch.kind, what, &s)
            )));
        }
    }

    println!("Waiting for stack create/update to complete");
    let mut env: BTreeMap<String, Physical> = BTreeMap::new();
    let mut cleanup: Vec<(String, Held)> = Vec::new();
    let mut failure = None;
    for ch in &changes {
        let id = ch.logical_id.as_str();
        let step = async {
            match ch.action {
                Action::NoChange => {
                    if let Some(h) = held.get(id) {
                        env.insert(id.to_string(), h.recorded.physical.clone());
                    }
                    Ok(())
                }
                Action::Add | Action::Modify { replacement: true } => {
                    let d = checked
                        .desired(id, &env)
                        .map_err(|e| Status::invalid_argument(e.to_string()))?;
                    w.create(id, &d, true, None).await?;
                    let h = w.create(id, &d, false, None).await?;
                    env.insert(id.to_string(), h.recorded.physical.clone());
                    if let Some(old) = held.get(id) {
                        cleanup.push((id.to_string(), old.clone()));
                    }
                    println!("  {:<24} CREATE_COMPLETE", id);
                    Ok(())
                }
                Action::Modify { replacement: false } => {
                    let Some(old) = held.get(id) else {
                        return Ok(());
                    };
                    let d = checked
                        .desired(id, &env)
                        .map_err(|e| Status::invalid_argument(e.to_string()))?;
                    w.update(id, old, &d, true, None).await?;
                    let h = w.update(id, old, &d, false, None).await?;
                    env.insert(id.to_string(), h.recorded.physical.clone());
                    println!("  {:<24} UPDATE_COMPLETE", id);
                    Ok(())
                }
                Action::Remove => {
                    if let Some(old) = held.get(id) {
                        cleanup.push((id.to_string(), old.clone()));
                    }
                    Ok(())
                }
            }
        };
        if let Err(s) = step.await {
            let what = match ch.action {
                Action::Modify { replacement: false } => "UPDATE",
                _ => "CREATE",
            };
            failure = Some(step_failed(id, ch.kind, what, &s));
            break;
        }
    }
    if failure.is_none() {
        cleanup.sort_by_key(|(id, h)| (h.recorded.kind.delete_rank(), id.clone()));
        for (id, old) in &cleanup {
            let done = async {
                w.delete(id, old, true).await?;
                w.delete(id, old, false).await
            }
            .await;
            match done {
                Ok(()) => println!("  {:<24} DELETE_COMPLETE", id),
                Err(s) => {
                    failure = Some(step_failed(id, old.recorded.kind, "DELETE", &s));
                    break;
                }
            }
        }
    }
    if let Some(failure) = failure {
        println!("  {failure}");
        println!("ROLLBACK_IN_PROGRESS");
        let clean = w.roll_back().await;
        println!(
            "{}",
            if clean {
                "ROLLBACK_COMPLETE"
            } else {
                "ROLLBACK_FAILED"
            }
        );
        return Err(Failure::Other(format!(
            "Failed to create/update the stack {stack}: {failure}{}",
            if clean {
                "; every change was rolled back"
            } else {
                "; the rollback did not complete (see above)"
            }
        )));
    }
    println!("\nSuccessfully created/updated stack - {stack}");
    print_outputs(&checked, &env)
}

async fn delete_stack(c: &mut Client, stack: &str) -> Result<(), Failure> {
    let held = load(c, stack).await?;
    let mut order: Vec<(&String, &Held)> = held.iter().collect();
    order.sort_by_key(|(id, h)| (h.recorded.kind.delete_rank(), (*id).clone()));
    let mut w = Writer {
        c,
        stack: stack.to_string(),
        journal: Vec::new(),
    };
    for (id, h) in order {
        // A mapping on a domain the stack deletes anyway goes with it.
        if let Some((domain, _)) = &h.mapping {
            let domain_in_stack = held.values().any(|o| {
                o.recorded.kind == Kind::DomainName && &o.recorded.physical.reference == domain
            });
            if domain_in_stack {
                continue;
            }
        }
        w.delete(id, h, false).await.map_err(|s| {
            Failure::Other(format!(
                "Failed to delete the stack {stack}: {}",
                step_failed(id, h.recorded.kind, "DELETE", &s)
            ))
        })?;
    }
    Ok(())
}

async fn describe_stack_resources(c: &mut Client, stack: &str) -> Result<(), Failure> {
    let held = load(c, stack).await?;
    if held.is_empty() {
        return Err(Failure::Other(format!(
            "An error occurred (ValidationError) when calling the DescribeStackResources \
             operation: Stack with id {stack} does not exist"
        )));
    }
    let items: Vec<serde_json::Value> = held
        .iter()
        .map(|(id, h)| {
            serde_json::json!({
                "StackName": stack,
                "LogicalResourceId": id,
                "PhysicalResourceId": h.recorded.physical.reference,
                "ResourceType": h.recorded.kind.type_name(),
                "ResourceStatus": "CREATE_COMPLETE",
            })
        })
        .collect();
    let out = serde_json::json!({ "StackResources": items });
    let text = serde_json::to_string_pretty(&out)
        .map_err(|e| Failure::Other(format!("cannot print the resources: {e}")))?;
    println!("{text}");
    Ok(())
}
