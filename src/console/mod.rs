//! The web console, served by `mapreg serve` at `/` on the same port as gRPC (and behind the
//! same TLS): the AWS console's pages for custom domain names, their API mappings, APIs and
//! stages, and a route tester.
//!
//! Like the REST edge, it is one more edge, not a second registry: every page and form runs
//! through [`RegistryService`]'s own gRPC handlers as the viewer's caller, so the rules, their
//! messages, the revisions, the change feed and the access checks are the API's. A refused
//! form is shown again with the API's message next to it; a write that succeeds redirects
//! (POST/redirect/GET).
//!
//! - [`session`]: dev mode, or login with a token; sessions and CSRF tokens.
//! - [`pages`]: the HTML (`maud`), with a little JavaScript (`assets/console.js`): the stage
//!   picker, the "Configure API mappings" / "Add new mapping" toggles, live updates.
//! - [`live`]: a domain's page follows its mappings by Server-Sent Events, fed by the change
//!   feed exactly as a Watch is (same filter, so a viewer sees only their own account).

pub mod live;
pub mod pages;
pub mod session;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, SET_COOKIE};
use http::{HeaderMap, StatusCode};
use tonic::Status;

use crate::api::registry::RegistryService;
use crate::auth::Authenticator;
use crate::client::{self, every_page};
use crate::feed::Hub;
use crate::pb;
use crate::pb::registry_server::Registry;
use pages::{FormError, Posted};
use session::{Sessions, Viewer};

const JS: &str = include_str!("assets/console.js");
const CSS: &str = include_str!("assets/console.css");

/// What the console serves with.
pub struct Console {
    svc: RegistryService,
    hub: Arc<Hub>,
    sessions: Sessions,
}

type Shared = State<Arc<Console>>;

/// The console's routes (`/` and `/console/...`), to merge into the server's router.
/// `tls`: the server has TLS (session cookies are then `Secure`).
pub fn router(svc: RegistryService, hub: Arc<Hub>, auth: Authenticator, tls: bool) -> axum::Router {
    let console = Arc::new(Console {
        svc,
        hub,
        sessions: Sessions::new(auth, tls),
    });
    axum::Router::new()
        .route("/", get(domains_page))
        .route("/console", get(|| async { Redirect::to("/") }))
        .route(
            "/console/static/console.js",
            get(|| async { asset(JS, "text/javascript") }),
        )
        .route(
            "/console/static/console.css",
            get(|| async { asset(CSS, "text/css") }),
        )
        .route("/console/login", get(login_page).post(login))
        .route("/console/logout", post(logout))
        .route("/console/domains", post(create_domain))
        .route("/console/domains/{domain}", get(domain_page))
        .route("/console/domains/{domain}/delete", post(delete_domain))
        .route("/console/domains/{domain}/mappings", post(create_mapping))
        .route(
            "/console/domains/{domain}/mappings/{id}",
            post(update_mapping),
        )
        .route(
            "/console/domains/{domain}/mappings/{id}/delete",
            post(delete_mapping),
        )
        .route("/console/domains/{domain}/events", get(live::events))
        .route("/console/apis", get(apis_page).post(create_api))
        .route("/console/apis/{api}/delete", post(delete_api))
        .route("/console/apis/{api}/stages", post(create_stage))
        .route(
            "/console/apis/{api}/stages/{stage}/delete",
            post(delete_stage),
        )
        .route("/console/resolve", get(resolve_page))
        .with_state(console)
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")],
        body,
    )
        .into_response()
}

/// A gRPC request carrying `msg` as the viewer's caller (as the auth interceptor would).
fn request<T>(v: &Viewer, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.extensions_mut().insert(v.caller.clone());
    r
}

/// The HTTP status of a refused call.
fn http_status(s: &Status) -> StatusCode {
    use tonic::Code::*;
    match s.code() {
        InvalidArgument | OutOfRange => StatusCode::BAD_REQUEST,
        NotFound => StatusCode::NOT_FOUND,
        AlreadyExists | FailedPrecondition | Aborted => StatusCode::CONFLICT,
        PermissionDenied => StatusCode::FORBIDDEN,
        Unauthenticated => StatusCode::UNAUTHORIZED,
        ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn page(status: StatusCode, body: String) -> Response {
    (status, [(CACHE_CONTROL, "no-store")], Html(body)).into_response()
}

fn forbidden(v: Option<&Viewer>, message: &str) -> Response {
    page(
        StatusCode::FORBIDDEN,
        pages::problem(v, "Forbidden", message),
    )
}

/// The viewer of a page: a redirect to the login form when there is none.
// The refusal is the handler's answer as it is: boxing it would buy nothing.
#[allow(clippy::result_large_err)]
fn viewer_or_login(c: &Console, headers: &HeaderMap) -> Result<Viewer, Response> {
    c.sessions
        .viewer(headers)
        .ok_or_else(|| Redirect::to("/console/login").into_response())
}

/// The viewer of a POST: must be signed in, send its CSRF token and be allowed to write.
// The refusal is the handler's answer as it is: boxing it would buy nothing.
#[allow(clippy::result_large_err)]
fn writer(c: &Console, headers: &HeaderMap, csrf: &str) -> Result<Viewer, Response> {
    let Some(v) = c.sessions.viewer(headers) else {
        return Err(forbidden(None, "Sign in first."));
    };
    if !session::csrf_ok(&v, csrf) {
        return Err(forbidden(
            Some(&v),
            "The form's CSRF token is missing or wrong: reload the page and try again.",
        ));
    }
    if !v.writes() {
        return Err(forbidden(
            Some(&v),
            &format!(
                "role {} of account {} is read-only: it may not change anything",
                v.caller.role.as_str(),
                v.caller.account_id
            ),
        ));
    }
    Ok(v)
}

/// A posted form with its viewer, who is signed in, sent the form's CSRF token and may write:
/// a handler taking it runs only for such a viewer; anyone else is answered with [`writer`]'s
/// refusal (and a body that is not a form, as axum's `Form` refuses it).
struct Write(Viewer, Posted);

impl FromRequest<Arc<Console>> for Write {
    type Rejection = Response;

    async fn from_request(req: Request, c: &Arc<Console>) -> Result<Self, Response> {
        let headers = req.headers().clone();
        let Form(f) = Form::<Posted>::from_request(req, c)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Write(writer(c, &headers, &f.csrf)?, f))
    }
}

// ---- reads ----------------------------------------------------------------------------------

/// How many items the console asks for a page of a list (it reads every page).
const PAGE: i32 = 1000;

/// A list request the console sends: [`PAGE`] items from `next_token` on.
trait ListRequest {
    fn page(self, next_token: String) -> Self;
}

macro_rules! list_requests {
    ($($t:ty),*) => {
        $(impl ListRequest for $t {
            fn page(self, next_token: String) -> Self {
                Self { max_results: PAGE, next_token, ..self }
            }
        })*
    };
}

list_requests!(
    pb::GetDomainNamesRequest,
    pb::GetApisRequest,
    pb::GetStagesRequest,
    pb::GetApiMappingsRequest
);

async fn all_domains(c: &Console, v: &Viewer) -> Result<Vec<pb::DomainName>, Status> {
    let call = |next_token| {
        let msg = pb::GetDomainNamesRequest::default().page(next_token);
        c.svc.get_domain_names(request(v, msg))
    };
    every_page(call, client::page).await
}

/// Every API of the viewer with its stages.
async fn all_apis(c: &Console, v: &Viewer) -> Result<Vec<(pb::Api, Vec<pb::Stage>)>, Status> {
    let call = |next_token| {
        let msg = pb::GetApisRequest::default().page(next_token);
        c.svc.get_apis(request(v, msg))
    };
    let mut out = Vec::new();
    for a in every_page(call, client::page).await? {
        let call = |next_token| {
            let msg = pb::GetStagesRequest {
                api_id: a.api_id.clone(),
                ..Default::default()
            }
            .page(next_token);
            c.svc.get_stages(request(v, msg))
        };
        let stages = every_page(call, client::page).await?;
        out.push((a, stages));
    }
    Ok(out)
}

/// A domain's mappings (all pages) and the revision of the first page.
async fn all_mappings(
    c: &Console,
    v: &Viewer,
    domain: &str,
) -> Result<(Vec<pb::ApiMapping>, u64), Status> {
    let call = |next_token| {
        let msg = pb::GetApiMappingsRequest {
            domain_name: domain.to_string(),
            ..Default::default()
        }
        .page(next_token);
        c.svc.get_api_mappings(request(v, msg))
    };
    let mut revision = 0;
    let mappings = every_page(call, |r| {
        let r = r.into_inner();
        if revision == 0 {
            revision = r.revision;
        }
        (r.items, r.next_token)
    })
    .await?;
    Ok((mappings, revision))
}

fn failed(v: Option<&Viewer>, s: &Status) -> Response {
    page(http_status(s), pages::problem(v, "Error", s.message()))
}

// ---- pages ----------------------------------------------------------------------------------

/// Page `screen` for viewer `v`, answered with `status`; after a refused form, with the API's
/// message next to that form (`error`) and what was posted in it.
async fn render(
    c: &Console,
    v: &Viewer,
    screen: Screen<'_>,
    error: Option<FormError>,
    posted: &Posted,
    status: StatusCode,
) -> Response {
    let error = error.as_ref();
    let html = match screen {
        Screen::Domains => all_domains(c, v)
            .await
            .map(|items| pages::domains(v, &items, error, posted)),
        Screen::Domain(domain) => domain_html(c, v, domain, error, posted).await,
        Screen::Apis => all_apis(c, v)
            .await
            .map(|apis| pages::apis(v, &apis, error, posted)),
    };
    match html {
        Ok(html) => page(status, html),
        Err(s) => failed(Some(v), &s),
    }
}

async fn domain_html(
    c: &Console,
    v: &Viewer,
    domain: &str,
    error: Option<&FormError>,
    posted: &Posted,
) -> Result<String, Status> {
    let msg = pb::GetDomainNameRequest {
        domain_name: domain.to_string(),
        ..Default::default()
    };
    let d = c.svc.get_domain_name(request(v, msg)).await?.into_inner();
    let (mappings, revision) = all_mappings(c, v, &d.domain_name).await?;
    let apis = all_apis(c, v).await?;
    Ok(pages::domain(
        v, &d, &mappings, &apis, revision, error, posted,
    ))
}

/// Page `screen` as a GET shows it: to a signed-in viewer (else a redirect to the login form).
async fn show(c: &Console, headers: &HeaderMap, screen: Screen<'_>) -> Response {
    match viewer_or_login(c, headers) {
        Ok(v) => render(c, &v, screen, None, &Posted::default(), StatusCode::OK).await,
        Err(r) => r,
    }
}

async fn domains_page(State(c): Shared, headers: HeaderMap) -> Response {
    show(&c, &headers, Screen::Domains).await
}

async fn domain_page(State(c): Shared, headers: HeaderMap, Path(domain): Path<String>) -> Response {
    show(&c, &headers, Screen::Domain(&domain)).await
}

async fn apis_page(State(c): Shared, headers: HeaderMap) -> Response {
    show(&c, &headers, Screen::Apis).await
}

async fn resolve_page(
    State(c): Shared,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let v = match viewer_or_login(&c, &headers) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let host = q.get("host").cloned().unwrap_or_default();
    let path = q.get("path").cloned().unwrap_or_default();
    let result = if host.is_empty() {
        None
    } else {
        let path = if path.is_empty() {
            "/".to_string()
        } else {
            path.clone()
        };
        Some(
            c.svc
                .resolve_route(request(
                    &v,
                    pb::ResolveRouteRequest {
                        host: host.clone(),
                        path,
                        ..Default::default()
                    },
                ))
                .await
                .map(|r| r.into_inner())
                .map_err(|s| s.message().to_string()),
        )
    };
    page(StatusCode::OK, pages::resolve(&v, &host, &path, result))
}

// ---- login ----------------------------------------------------------------------------------

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct LoginForm {
    token: String,
    csrf: String,
}

async fn login_page(State(c): Shared) -> Response {
    if !c.sessions.needs_login() {
        return Redirect::to("/").into_response();
    }
    let (cookie, token) = c.sessions.login_csrf();
    with_cookie(page(StatusCode::OK, pages::login(&token, None)), &cookie)
}

async fn login(State(c): Shared, headers: HeaderMap, Form(f): Form<LoginForm>) -> Response {
    if !c.sessions.needs_login() {
        return Redirect::to("/").into_response();
    }
    if !c.sessions.login_csrf_ok(&headers, &f.csrf) {
        return forbidden(
            None,
            "The login form's CSRF token is missing or wrong: reload the page.",
        );
    }
    match c.sessions.login(&f.token) {
        Ok(cookie) => with_cookie(Redirect::to("/").into_response(), &cookie),
        Err(message) => {
            let (cookie, token) = c.sessions.login_csrf();
            let r = page(
                StatusCode::UNAUTHORIZED,
                pages::login(&token, Some(&message)),
            );
            with_cookie(r, &cookie)
        }
    }
}

async fn logout(State(c): Shared, headers: HeaderMap, Form(f): Form<Posted>) -> Response {
    let Some(v) = c.sessions.viewer(&headers) else {
        return Redirect::to("/console/login").into_response();
    };
    if !session::csrf_ok(&v, &f.csrf) {
        return forbidden(Some(&v), "The form's CSRF token is missing or wrong.");
    }
    let cookie = c.sessions.logout(&headers);
    with_cookie(Redirect::to("/console/login").into_response(), &cookie)
}

/// `r` setting `cookie` (a `Set-Cookie` value; left out if it is not a valid header value).
fn with_cookie(mut r: Response, cookie: &str) -> Response {
    if let Ok(v) = cookie.parse() {
        r.headers_mut().append(SET_COOKIE, v);
    }
    r
}

// ---- writes ---------------------------------------------------------------------------------

fn configuration(f: &Posted) -> Vec<pb::DomainNameConfiguration> {
    let endpoint_type = match f.endpoint_type.as_str() {
        "EDGE" => pb::EndpointType::Edge,
        "REGIONAL" => pb::EndpointType::Regional,
        _ => pb::EndpointType::Unspecified,
    } as i32;
    let security_policy = match f.security_policy.as_str() {
        "TLS_1_0" => pb::SecurityPolicy::Tls10,
        "TLS_1_2" => pb::SecurityPolicy::Tls12,
        _ => pb::SecurityPolicy::Unspecified,
    } as i32;
    vec![pb::DomainNameConfiguration {
        endpoint_type,
        security_policy,
        certificate_arn: f.certificate_arn.trim().to_string(),
        ..Default::default()
    }]
}

/// A page of the console that shows forms (and is shown again when the API refuses one).
enum Screen<'a> {
    Domains,
    Domain(&'a str),
    Apis,
}

impl Screen<'_> {
    /// The page's URL.
    fn url(&self) -> String {
        match self {
            Screen::Domains => "/".to_string(),
            Screen::Domain(domain) => domain_url(domain),
            Screen::Apis => "/console/apis".to_string(),
        }
    }

    /// The answer to form `form` (of mapping or API `of`) on this page, where a write that
    /// succeeded leads too; refused, the form is shown again emptied.
    async fn emptied<T>(
        self,
        c: &Console,
        v: &Viewer,
        done: Result<T, Status>,
        form: &'static str,
        of: &str,
    ) -> Response {
        let done = done.map(|_| self.url());
        answer(c, v, done, self, form, of, &Posted::default()).await
    }
}

/// The answer to a posted form (POST/redirect/GET): a redirect to `done`'s page when the write
/// succeeded; refused, the form's page `back` again with the API's message next to form `form`
/// (of mapping or API `of`, "" for none), `posted` filled back in, and the refusal's status.
async fn answer(
    c: &Console,
    v: &Viewer,
    done: Result<String, Status>,
    back: Screen<'_>,
    form: &'static str,
    of: &str,
    posted: &Posted,
) -> Response {
    let s = match done {
        Ok(to) => return Redirect::to(&to).into_response(),
        Err(s) => s,
    };
    let e = FormError {
        form,
        message: s.message().to_string(),
        mapping_id: of.to_string(),
    };
    render(c, v, back, Some(e), posted, http_status(&s)).await
}

fn domain_url(domain: &str) -> String {
    format!("/console/domains/{}", pages::seg(domain))
}

async fn create_domain(State(c): Shared, Write(v, f): Write) -> Response {
    let msg = pb::CreateDomainNameRequest {
        domain_name: f.domain_name.trim().to_string(),
        domain_name_configurations: configuration(&f),
        ..Default::default()
    };
    let done = c.svc.create_domain_name(request(&v, msg)).await;
    let done = done.map(|d| domain_url(&d.into_inner().domain_name));
    answer(&c, &v, done, Screen::Domains, "create-domain", "", &f).await
}

async fn delete_domain(
    State(c): Shared,
    Path(domain): Path<String>,
    Write(v, _): Write,
) -> Response {
    let msg = pb::DeleteDomainNameRequest {
        domain_name: domain,
        ..Default::default()
    };
    let done = c.svc.delete_domain_name(request(&v, msg)).await;
    Screen::Domains
        .emptied(&c, &v, done, "delete-domain", "")
        .await
}

async fn create_mapping(
    State(c): Shared,
    Path(domain): Path<String>,
    Write(v, f): Write,
) -> Response {
    let msg = pb::CreateApiMappingRequest {
        domain_name: domain.clone(),
        api_mapping_key: f.api_mapping_key.trim().to_string(),
        api_id: f.api_id.clone(),
        stage: f.stage.clone(),
        ..Default::default()
    };
    let done = c.svc.create_api_mapping(request(&v, msg)).await;
    let back = Screen::Domain(&domain);
    let done = done.map(|_| back.url());
    answer(&c, &v, done, back, "new-mapping", "", &f).await
}

/// What a form on a mapping's row does.
#[derive(Clone, Copy)]
enum MappingForm {
    Update,
    Delete,
}

/// The mapping row's forms: update mapping `id` of `domain` from the form's fields, or delete
/// it; back to the domain's page either way.
async fn mapping_form(
    c: &Console,
    (domain, id): (String, String),
    Write(v, f): Write,
    form: MappingForm,
) -> Response {
    let done = match form {
        MappingForm::Update => {
            let msg = pb::UpdateApiMappingRequest {
                domain_name: domain.clone(),
                api_mapping_id: id.clone(),
                api_mapping_key: Some(f.api_mapping_key.trim().to_string()),
                api_id: Some(f.api_id.clone()),
                stage: Some(f.stage.clone()),
                ..Default::default()
            };
            c.svc.update_api_mapping(request(&v, msg)).await.map(drop)
        }
        MappingForm::Delete => {
            let msg = pb::DeleteApiMappingRequest {
                domain_name: domain.clone(),
                api_mapping_id: id.clone(),
                ..Default::default()
            };
            c.svc.delete_api_mapping(request(&v, msg)).await.map(drop)
        }
    };
    Screen::Domain(&domain)
        .emptied(c, &v, done, "mapping", &id)
        .await
}

async fn update_mapping(State(c): Shared, Path(p): Path<(String, String)>, w: Write) -> Response {
    mapping_form(&c, p, w, MappingForm::Update).await
}

async fn delete_mapping(State(c): Shared, Path(p): Path<(String, String)>, w: Write) -> Response {
    mapping_form(&c, p, w, MappingForm::Delete).await
}

async fn create_api(State(c): Shared, Write(v, f): Write) -> Response {
    let protocol_type = match f.protocol_type.as_str() {
        "HTTP" => pb::ProtocolType::Http,
        "WEBSOCKET" => pb::ProtocolType::Websocket,
        "REST" => pb::ProtocolType::Rest,
        _ => pb::ProtocolType::Unspecified,
    } as i32;
    let msg = pb::CreateApiRequest {
        name: f.name.trim().to_string(),
        protocol_type,
        description: f.description.clone(),
        route_selection_expression: f.route_selection_expression.trim().to_string(),
        ..Default::default()
    };
    let done = c.svc.create_api(request(&v, msg)).await;
    let done = done.map(|_| Screen::Apis.url());
    answer(&c, &v, done, Screen::Apis, "create-api", "", &f).await
}

async fn delete_api(State(c): Shared, Path(api): Path<String>, Write(v, _): Write) -> Response {
    let msg = pb::DeleteApiRequest {
        api_id: api.clone(),
        ..Default::default()
    };
    let done = c.svc.delete_api(request(&v, msg)).await;
    Screen::Apis.emptied(&c, &v, done, "delete-api", &api).await
}

async fn create_stage(State(c): Shared, Path(api): Path<String>, Write(v, f): Write) -> Response {
    let msg = pb::CreateStageRequest {
        api_id: api.clone(),
        stage_name: f.stage_name.trim().to_string(),
        ..Default::default()
    };
    let done = c.svc.create_stage(request(&v, msg)).await;
    Screen::Apis
        .emptied(&c, &v, done, "create-stage", &api)
        .await
}

async fn delete_stage(
    State(c): Shared,
    Path((api, stage)): Path<(String, String)>,
    Write(v, _): Write,
) -> Response {
    let msg = pb::DeleteStageRequest {
        api_id: api.clone(),
        stage_name: stage,
        ..Default::default()
    };
    let done = c.svc.delete_stage(request(&v, msg)).await;
    Screen::Apis
        .emptied(&c, &v, done, "delete-stage", &api)
        .await
}
