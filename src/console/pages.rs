//! The console's HTML, server-rendered with `maud` (escaped by construction).

use maud::{DOCTYPE, Markup, PreEscaped, html};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use super::session::Viewer;
use crate::pb;

/// An error to show next to the form it belongs to.
#[derive(Debug, Clone, Default)]
pub struct FormError {
    /// The form's id.
    pub form: &'static str,
    /// The API's message.
    pub message: String,
    /// For a mapping's edit form: its id.
    pub mapping_id: String,
}

/// What a refused form had in it, to show again.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct Posted {
    /// Domain name.
    pub domain_name: String,
    /// Endpoint type.
    pub endpoint_type: String,
    /// Security policy.
    pub security_policy: String,
    /// Certificate ARN.
    pub certificate_arn: String,
    /// API id.
    pub api_id: String,
    /// Stage.
    pub stage: String,
    /// Mapping key (the AWS console's "Path").
    pub api_mapping_key: String,
    /// API name.
    pub name: String,
    /// Protocol.
    pub protocol_type: String,
    /// Route selection expression.
    pub route_selection_expression: String,
    /// Description.
    pub description: String,
    /// Stage name.
    pub stage_name: String,
    /// The CSRF token.
    pub csrf: String,
}

/// A path segment, percent-encoded.
pub fn seg(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

fn error_for(e: Option<&FormError>, form: &str, mapping_id: &str) -> Markup {
    html! {
        @if let Some(e) = e.filter(|e| e.form == form && e.mapping_id == mapping_id) {
            p.error role="alert" data-form=(form) { (e.message) }
        }
    }
}

fn csrf(v: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(v.csrf); }
}

/// The page frame: navigation, who is signed in, the content.
pub fn layout(title: &str, viewer: Option<&Viewer>, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · mapreg" }
                link rel="stylesheet" href="/console/static/console.css";
                script src="/console/static/console.js" defer {}
            }
            body {
                header {
                    strong.brand { "mapreg" }
                    @if viewer.is_some() {
                        nav {
                            a href="/" { "Custom domain names" }
                            a href="/console/apis" { "APIs" }
                            a href="/console/resolve" { "Route tester" }
                        }
                    }
                    @if let Some(v) = viewer {
                        span.who {
                            "account " (v.caller.account_id) " · " (v.caller.role.as_str())
                        }
                        @if v.session {
                            form.inline method="post" action="/console/logout" {
                                (csrf(v))
                                button type="submit" id="sign-out" { "Sign out" }
                            }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
    .into_string()
}

/// The login form.
pub fn login(csrf_token: &str, error: Option<&str>) -> String {
    layout(
        "Sign in",
        None,
        html! {
            form #login method="post" action="/console/login" {
                input type="hidden" name="csrf" value=(csrf_token);
                label { "Token " input type="password" name="token" autocomplete="off" required; }
                button type="submit" { "Sign in" }
                @if let Some(e) = error { p.error role="alert" { (e) } }
            }
        },
    )
}

fn endpoint(c: Option<&pb::DomainNameConfiguration>) -> (&'static str, &'static str, String) {
    let Some(c) = c else {
        return ("REGIONAL", "TLS_1_2", String::new());
    };
    (
        match pb::EndpointType::try_from(c.endpoint_type) {
            Ok(pb::EndpointType::Edge) => "EDGE",
            _ => "REGIONAL",
        },
        match pb::SecurityPolicy::try_from(c.security_policy) {
            Ok(pb::SecurityPolicy::Tls10) => "TLS_1_0",
            _ => "TLS_1_2",
        },
        c.api_gateway_domain_name.clone(),
    )
}

fn select(name: &str, options: &[&str], chosen: &str) -> Markup {
    html! {
        select name=(name) {
            @for o in options {
                option value=(o) selected[*o == chosen] { (o) }
            }
        }
    }
}

/// Custom domain names: the list, create, delete.
pub fn domains(
    v: &Viewer,
    items: &[pb::DomainName],
    error: Option<&FormError>,
    posted: &Posted,
) -> String {
    layout(
        "Custom domain names",
        Some(v),
        html! {
            table #domains {
                thead { tr { th { "Domain name" } th { "Endpoint type" } th { "Security policy" } th { "API Gateway domain name" } th {} } }
                tbody {
                    @for d in items {
                        @let (et, sp, gw) = endpoint(d.domain_name_configurations.first());
                        tr data-domain=(d.domain_name) {
                            td { a href={ "/console/domains/" (seg(&d.domain_name)) } { (d.domain_name) } }
                            td { (et) } td { (sp) } td { code { (gw) } }
                            td {
                                @if v.writes() {
                                    form.inline method="post" action={ "/console/domains/" (seg(&d.domain_name)) "/delete" }
                                        data-confirm={ "Delete " (d.domain_name) " and all its API mappings?" } {
                                        (csrf(v))
                                        button.danger type="submit" { "Delete" }
                                    }
                                }
                            }
                        }
                    }
                    @if items.is_empty() { tr { td colspan="5" { "No custom domain names yet." } } }
                }
            }
            @if v.writes() {
                h2 { "Create domain name" }
                form #create-domain method="post" action="/console/domains" {
                    (csrf(v))
                    label { "Domain name " input type="text" name="domain_name" value=(posted.domain_name) required placeholder="api.example.com"; }
                    label { "Endpoint type " (select("endpoint_type", &["REGIONAL", "EDGE"], &posted.endpoint_type)) }
                    label { "Security policy " (select("security_policy", &["TLS_1_2", "TLS_1_0"], &posted.security_policy)) }
                    label { "ACM certificate ARN " input type="text" name="certificate_arn" value=(posted.certificate_arn); }
                    button type="submit" { "Create domain name" }
                    (error_for(error, "create-domain", ""))
                }
            }
            (error_for(error, "delete-domain", ""))
        },
    )
}

/// The APIs and their stages, as JSON for the stage pickers (`{api_id: [stage, ...]}`).
fn stages_json(apis: &[(pb::Api, Vec<pb::Stage>)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = apis
        .iter()
        .map(|(a, stages)| {
            (
                a.api_id.clone(),
                serde_json::Value::from(
                    stages
                        .iter()
                        .map(|s| s.stage_name.clone())
                        .collect::<Vec<_>>(),
                ),
            )
        })
        .collect();
    // Safe inside <script>: no `<` can end the element early.
    serde_json::Value::Object(map)
        .to_string()
        .replace('<', "\\u003c")
}

fn api_picker(apis: &[(pb::Api, Vec<pb::Stage>)], api_id: &str, stage: &str) -> Markup {
    let chosen = if api_id.is_empty() {
        apis.first().map(|(a, _)| a.api_id.as_str()).unwrap_or("")
    } else {
        api_id
    };
    let stages: Vec<&str> = apis
        .iter()
        .find(|(a, _)| a.api_id == chosen)
        .map(|(_, s)| s.iter().map(|s| s.stage_name.as_str()).collect())
        .unwrap_or_default();
    html! {
        label { "API " select name="api_id" data-stage-picker {
            @for (a, _) in apis {
                option value=(a.api_id) selected[a.api_id == chosen] {
                    (a.name) " (" (a.api_id) ", " (protocol(a.protocol_type)) ")"
                }
            }
        } }
        label { "Stage " select name="stage" {
            @for s in &stages { option value=(s) selected[*s == stage] { (s) } }
        } }
    }
}

/// The protocol's name.
pub fn protocol(p: i32) -> &'static str {
    match pb::ProtocolType::try_from(p) {
        Ok(pb::ProtocolType::Websocket) => "WEBSOCKET",
        Ok(pb::ProtocolType::Http) => "HTTP",
        Ok(pb::ProtocolType::Rest) => "REST",
        _ => "?",
    }
}

/// The read-only mappings table of a domain (also what the live updates send).
pub fn mappings_table(
    domain: &str,
    mappings: &[pb::ApiMapping],
    apis: &[(pb::Api, Vec<pb::Stage>)],
) -> Markup {
    html! {
        table #mappings-table {
            thead { tr { th { "Path" } th { "API" } th { "Stage" } th { "Mapping id" } } }
            tbody {
                @for m in mappings {
                    @let name = apis.iter().find(|(a, _)| a.api_id == m.api_id).map(|(a, _)| a.name.as_str()).unwrap_or("");
                    tr data-mapping=(m.api_mapping_id) data-key=(m.api_mapping_key) {
                        td { @if m.api_mapping_key.is_empty() { "(none)" } @else { (m.api_mapping_key) } }
                        td { (name) " (" (m.api_id) ")" }
                        td { (m.stage) }
                        td { code { (m.api_mapping_id) } }
                    }
                }
                @if mappings.is_empty() { tr { td colspan="4" { "No API mappings on " (domain) "." } } }
            }
        }
    }
}

/// A domain's page: its configuration and its API mappings, with the AWS flow to change them.
#[allow(clippy::too_many_arguments)]
pub fn domain(
    v: &Viewer,
    d: &pb::DomainName,
    mappings: &[pb::ApiMapping],
    apis: &[(pb::Api, Vec<pb::Stage>)],
    revision: u64,
    error: Option<&FormError>,
    posted: &Posted,
) -> String {
    let (et, sp, gw) = endpoint(d.domain_name_configurations.first());
    let base = format!("/console/domains/{}", seg(&d.domain_name));
    let open = error.is_some();
    let new_open = error.is_some_and(|e| e.form == "new-mapping");
    layout(
        &d.domain_name,
        Some(v),
        html! {
            p { "Endpoint " strong { (et) } ", security policy " strong { (sp) } ", API Gateway domain name " code { (gw) } }
            h2 { "API mappings" }
            div #mappings data-live={ (base) "/events?after=" (revision) } {
                (mappings_table(&d.domain_name, mappings, apis))
            }
            @if v.writes() {
                button #configure-mappings type="button" data-toggle="configure" { "Configure API mappings" }
                section #configure hidden[!open] {
                    h3 { "Configure API mappings" }
                    script type="application/json" id="stages" { (PreEscaped(stages_json(apis))) }
                    @for m in mappings {
                        form.mapping method="post" action={ (base) "/mappings/" (seg(&m.api_mapping_id)) } data-mapping=(m.api_mapping_id) {
                            (csrf(v))
                            (api_picker(apis, &m.api_id, &m.stage))
                            label { "Path " input type="text" name="api_mapping_key" value=(m.api_mapping_key) placeholder="(none)"; }
                            button type="submit" { "Save" }
                            button.danger type="submit" formaction={ (base) "/mappings/" (seg(&m.api_mapping_id)) "/delete" } { "Remove" }
                            (error_for(error, "mapping", &m.api_mapping_id))
                        }
                    }
                    button #add-mapping type="button" data-toggle="new-mapping" { "Add new mapping" }
                    form #new-mapping method="post" action={ (base) "/mappings" } hidden[!new_open] {
                        (csrf(v))
                        (api_picker(apis, &posted.api_id, &posted.stage))
                        label { "Path (optional) " input type="text" name="api_mapping_key" value=(posted.api_mapping_key); }
                        button type="submit" id="save-mapping" { "Save" }
                        (error_for(error, "new-mapping", ""))
                    }
                }
            }
        },
    )
}

/// APIs and their stages.
pub fn apis(
    v: &Viewer,
    apis: &[(pb::Api, Vec<pb::Stage>)],
    error: Option<&FormError>,
    posted: &Posted,
) -> String {
    layout(
        "APIs",
        Some(v),
        html! {
            table #apis {
                thead { tr { th { "Name" } th { "API id" } th { "Protocol" } th { "Stages" } th {} } }
                tbody {
                    @for (a, stages) in apis {
                        tr data-api=(a.api_id) {
                            td { (a.name) }
                            td { code { (a.api_id) } }
                            td { (protocol(a.protocol_type)) }
                            td {
                                @for s in stages {
                                    span.stage data-stage=(s.stage_name) {
                                        (s.stage_name)
                                        @if v.writes() {
                                            form.inline method="post" action={ "/console/apis/" (seg(&a.api_id)) "/stages/" (seg(&s.stage_name)) "/delete" } {
                                                (csrf(v)) button.link.danger type="submit" title="Delete stage" { "×" }
                                            }
                                        }
                                    }
                                    " "
                                }
                                @if v.writes() {
                                    form.inline method="post" action={ "/console/apis/" (seg(&a.api_id)) "/stages" } {
                                        (csrf(v))
                                        input type="text" name="stage_name" placeholder="new stage" size="10" required;
                                        button type="submit" { "Add stage" }
                                    }
                                    (error_for(error, "create-stage", &a.api_id))
                                    (error_for(error, "delete-stage", &a.api_id))
                                }
                            }
                            td {
                                @if v.writes() {
                                    form.inline method="post" action={ "/console/apis/" (seg(&a.api_id)) "/delete" } {
                                        (csrf(v)) button.danger type="submit" { "Delete" }
                                    }
                                    (error_for(error, "delete-api", &a.api_id))
                                }
                            }
                        }
                    }
                    @if apis.is_empty() { tr { td colspan="5" { "No APIs yet." } } }
                }
            }
            @if v.writes() {
                h2 { "Create API" }
                form #create-api method="post" action="/console/apis" {
                    (csrf(v))
                    label { "Name " input type="text" name="name" value=(posted.name) required; }
                    label { "Protocol " (select("protocol_type", &["HTTP", "WEBSOCKET", "REST"], &posted.protocol_type)) }
                    label { "Route selection expression " input type="text" name="route_selection_expression" value=(posted.route_selection_expression) placeholder="$request.body.action"; }
                    label { "Description " input type="text" name="description" value=(posted.description); }
                    button type="submit" { "Create API" }
                    (error_for(error, "create-api", ""))
                }
            }
        },
    )
}

/// The route tester.
pub fn resolve(
    v: &Viewer,
    host: &str,
    path: &str,
    result: Option<Result<pb::ResolveRouteResponse, String>>,
) -> String {
    layout(
        "Route tester",
        Some(v),
        html! {
            form #resolve method="get" action="/console/resolve" {
                label { "Host " input type="text" name="host" value=(host) required placeholder="api.example.com"; }
                label { "Path " input type="text" name="path" value=(path) placeholder="/v1/orders"; }
                button type="submit" { "Resolve" }
            }
            @match result {
                None => {}
                Some(Err(message)) => { p.error role="alert" id="resolve-result" { (message) } }
                Some(Ok(r)) => {
                    dl #resolve-result {
                        dt { "Domain" } dd { (r.matched_domain_name) }
                        @if let Some(m) = &r.api_mapping {
                            dt { "Mapping" } dd { @if m.api_mapping_key.is_empty() { "(none)" } @else { (m.api_mapping_key) } " (" (m.api_mapping_id) ")" }
                            dt { "Stage" } dd data-stage=(m.stage) { (m.stage) }
                        }
                        @if let Some(a) = &r.api {
                            dt { "API" } dd data-api=(a.api_id) { (a.name) " (" (a.api_id) ", " (protocol(a.protocol_type)) ")" }
                        }
                        dt { "Remaining path" } dd { code { (r.remaining_path) } }
                        dt { "Revision" } dd { (r.revision) }
                    }
                }
            }
        },
    )
}

/// A page for an error with no form to go with it (403, 404).
pub fn problem(v: Option<&Viewer>, title: &str, message: &str) -> String {
    layout(
        title,
        v,
        html! { p.error role="alert" { (message) } p { a href="/" { "Back to the custom domain names" } } },
    )
}
