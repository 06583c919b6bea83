//! The dashboard: server-rendered pages for business owners, reviewers and governance, served
//! by `shopfloor serve` at `/` from the same binary. Pages are minijinja templates (an
//! environment of their own, separate from prompts, escaping every value), charts are SVG
//! drawn here, and the one stylesheet and script are embedded: no CDN, no build step.
//!
//! Signing in starts a session (see `shopfloor_engine::sessions`): an HttpOnly,
//! SameSite=Strict cookie naming a server-side row. Each page declares the permission it
//! needs in [`PAGES`], checked by [`guard`] with the same role matrix as the API; a
//! state-changing request must also come from our own origin and carry the session's CSRF
//! token ([`Posted`]).

mod charts;
mod evals;
mod pages;
mod review;
mod runs;
mod view;

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use shopfloor_core::access::Permission;

use crate::auth::Principal;
use crate::AppState;

pub(crate) use view::{render, PageError};

/// The session cookie.
const COOKIE: &str = "sf_session";

/// One page or form action of the dashboard.
pub(crate) struct Page {
    pub method: Method,
    pub path: &'static str,
    /// `None`: served to anyone (the sign-in page, the stylesheet).
    pub needs: Option<Permission>,
    serve: fn(MethodFilter) -> MethodRouter<AppState>,
}

impl std::fmt::Debug for Page {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ({:?})", self.method, self.path, self.needs)
    }
}

macro_rules! page {
    ($method:ident $path:literal, $needs:expr, $handler:path) => {
        Page {
            method: Method::$method,
            path: $path,
            needs: $needs,
            serve: |m| on(m, $handler),
        }
    };
}

const READ: Option<Permission> = Some(Permission::ReadRuns);
const REVIEW: Option<Permission> = Some(Permission::Review);

/// Every page and form action.
pub(crate) static PAGES: [Page; 25] = [
    page!(GET "/", READ, pages::portfolio),
    page!(GET "/workflows/{name}", READ, pages::workflow),
    page!(POST "/workflows/{name}/promote", Some(Permission::Promote), pages::promote),
    page!(GET "/runs", READ, runs::runs),
    page!(GET "/runs.csv", READ, runs::runs_csv),
    page!(GET "/runs/{id}", READ, runs::run),
    page!(GET "/evals", READ, evals::evals),
    page!(GET "/evals/{id}", READ, evals::eval),
    page!(GET "/evals/{id}/cases/{case}", READ, evals::case),
    page!(GET "/evals/{a}/compare/{b}", READ, evals::compare),
    page!(GET "/review", REVIEW, review::queue_page),
    page!(POST "/review/next", REVIEW, review::take_next),
    page!(GET "/review/{run_id}", REVIEW, review::item),
    page!(POST "/review/{run_id}/claim", REVIEW, review::claim),
    page!(POST "/review/{run_id}/approve", REVIEW, review::approve),
    page!(POST "/review/{run_id}/edit", REVIEW, review::edit),
    page!(POST "/review/{run_id}/reject", REVIEW, review::reject),
    page!(GET "/audit", READ, pages::audit),
    page!(GET "/policy", READ, pages::policy),
    page!(GET "/reports/weekly", READ, pages::weekly),
    page!(GET "/login", None, sign_in_page),
    page!(POST "/login", None, sign_in_with_key),
    page!(POST "/logout", None, sign_out),
    page!(GET "/assets/dashboard.css", None, stylesheet),
    page!(GET "/assets/dashboard.js", None, script),
];

/// The dashboard's routes, each behind its check.
pub(crate) fn routes(state: &AppState) -> Router<AppState> {
    let mut router = Router::new();
    for page in &PAGES {
        let filter = MethodFilter::try_from(page.method.clone())
            .unwrap_or_else(|_| panic!("{page:?}: the router cannot serve this method"));
        let served = (page.serve)(filter);
        router = router.route(
            page.path,
            served.route_layer(axum::middleware::from_fn_with_state(
                (state.clone(), page),
                guard,
            )),
        );
    }
    router
}

/// The page a matched path belongs to, for the access log and metrics.
pub(crate) fn by_path(path: &str) -> Option<&'static str> {
    PAGES.iter().find(|p| p.path == path).map(|p| p.path)
}

/// Who is looking, as their session says.
#[derive(Debug, Clone)]
pub(crate) struct Viewer {
    pub principal: Principal,
    /// Every form of the session carries it back.
    pub csrf: String,
}

impl Viewer {
    pub(crate) fn may(&self, permission: Permission) -> bool {
        self.principal.role.allows(permission)
    }
}

/// The session's secret, from the `Cookie` header.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// Whether a state-changing request comes from a page of ours: its `Origin` (else its
/// `Referer`) names the host it was sent to.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let from = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    let Some(from) = from else { return false };
    let rest = from
        .strip_prefix("http://")
        .or_else(|| from.strip_prefix("https://"));
    rest.is_some_and(|rest| rest.split('/').next() == Some(host))
}

/// The check in front of every page: a live session whose role has the page's permission,
/// and for a form, our own origin. The body is read only after it (see `crate::body`).
async fn guard(
    State((state, page)): State<(AppState, &'static Page)>,
    mut request: Request,
    next: Next,
) -> Response {
    let posted = request.method() == Method::POST;
    if posted && !same_origin(request.headers()) {
        return PageError::forbidden(
            "this form was sent from another site (its Origin is not this server); reload the page and send it again",
        )
        .into_response();
    }
    let viewer = match session_cookie(request.headers()) {
        Some(secret) => match state.engine_call(state.engine.session(secret)).await {
            Ok(found) => found.map(|(session, key)| Viewer {
                principal: Principal {
                    key_id: key.id,
                    name: key.name,
                    role: key.role,
                    team: key.team,
                    own_only: false,
                    limits: key.limits,
                },
                csrf: session.csrf_token,
            }),
            Err(e) => return PageError::from(e).into_response(),
        },
        None => None,
    };
    if let Some(permission) = page.needs {
        let Some(viewer) = &viewer else {
            if posted {
                return PageError::forbidden("you are signed out; sign in and send it again")
                    .into_response();
            }
            let here = request
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string();
            return Redirect::to(&format!("/login?next={}", view::url_encode(&here)))
                .into_response();
        };
        if !viewer.may(permission) {
            return PageError::forbidden(format!(
                "the {} role may not {}",
                viewer.principal.role,
                permission.describe()
            ))
            .with_viewer(viewer.clone())
            .into_response();
        }
    }
    let signed_in = viewer.is_some();
    if let Some(viewer) = viewer {
        request.extensions_mut().insert(viewer);
    }
    let mut response = if posted {
        let read = if signed_in {
            crate::body::buffer(&state, request).await
        } else {
            crate::body::buffer_stranger(&state, request).await
        };
        match read {
            Ok(request) => next.run(request).await,
            Err(error) => return PageError::from(error).into_response(),
        }
    } else {
        next.run(request).await
    };
    secure_headers(response.headers_mut());
    response
}

/// What every page says about itself to the browser: no framing, no sniffing, no caching of
/// what a signed-in person saw (the assets say otherwise for themselves).
fn secure_headers(headers: &mut HeaderMap) {
    let set = |headers: &mut HeaderMap, name: &'static str, value: &'static str| {
        headers
            .entry(name)
            .or_insert_with(|| HeaderValue::from_static(value));
    };
    set(
        headers,
        "content-security-policy",
        "default-src 'none'; style-src 'self' 'unsafe-inline'; script-src 'self'; \
         img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "referrer-policy", "same-origin");
    set(headers, "x-frame-options", "DENY");
    set(headers, "cache-control", "no-store");
}

/// The signed-in viewer (a page that needs a permission always has one).
impl<S: Sync> FromRequestParts<S> for Viewer {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, PageError> {
        parts
            .extensions
            .get::<Viewer>()
            .cloned()
            .ok_or_else(|| PageError::forbidden("sign in first"))
    }
}

/// A form posted by a signed-in viewer, with its CSRF token checked.
pub(crate) struct Posted<T>(pub Viewer, pub T);

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

impl<T: DeserializeOwned> FromRequest<AppState> for Posted<T> {
    type Rejection = PageError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, PageError> {
        let viewer = request
            .extensions()
            .get::<Viewer>()
            .cloned()
            .ok_or_else(|| PageError::forbidden("sign in first"))?;
        let bytes = bytes::Bytes::from_request(request, state)
            .await
            .map_err(|e| PageError::bad_request(e.body_text()))?;
        let field: CsrfField = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| PageError::bad_request(format!("the form cannot be read: {e}")))?;
        if !constant_time_eq(field.csrf.as_bytes(), viewer.csrf.as_bytes()) {
            return Err(PageError::forbidden(
                "this form's security token is missing or out of date; reload the page and send it again",
            ));
        }
        let form = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| PageError::bad_request(format!("the form cannot be read: {e}")))?;
        Ok(Posted(viewer, form))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `Set-Cookie` for a session, or for ending one (`secret` empty).
/// The session cookie; `Secure` when people reach the server over HTTPS (`[server] public_url`).
fn session_set_cookie(secret: &str, max_age_s: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("sf_session=; Path=/; Max-Age=0"))
}

/// Only paths of this server: never an absolute URL an attacker could send a victim to. A
/// path is printable ASCII: browsers drop tabs and newlines from a `Location` (so `/\t/host`
/// is `//host`, another site), and a control character cannot go in a header at all.
fn local_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n.into()
        }
        _ => "/".into(),
    }
}

#[derive(Deserialize)]
pub(crate) struct LoginQuery {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    next: Option<String>,
}

/// `GET /login`: with `?token=`, use a one-time link and go on; else the form.
async fn sign_in_page(
    State(state): State<AppState>,
    crate::Query(query): crate::Query<LoginQuery>,
) -> Response {
    let next = local_next(query.next.as_deref());
    if let Some(token) = query.token.as_deref() {
        return match state.engine_call(state.engine.sign_in_with_token(token)).await {
            Ok(Some(session)) => started(&session, &next, state.config.secure_cookies),
            Ok(None) => login_form(
                StatusCode::UNAUTHORIZED,
                &next,
                Some("this sign-in link is unknown, used or expired: links work once, for 10 minutes; make another with `shopfloor dashboard link`"),
            ),
            Err(e) => PageError::from(e).into_response(),
        };
    }
    login_form(StatusCode::OK, &next, None)
}

fn login_form(status: StatusCode, next: &str, error: Option<&str>) -> Response {
    let page = render(
        "login.html",
        minijinja::context! { next => next, error => error, title => "Sign in" },
    );
    (status, page).into_response()
}

fn started(session: &shopfloor_engine::NewSession, next: &str, secure: bool) -> Response {
    let max_age = (session.record.expires_at_ms - session.record.created_at_ms) / 1000;
    // `next` went through `local_next`: printable ASCII, so it always fits a header.
    let mut response = Redirect::to(next).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_set_cookie(&session.secret, max_age, secure),
    );
    response
}

#[derive(Deserialize)]
pub(crate) struct KeyForm {
    #[serde(default)]
    key: String,
    #[serde(default)]
    next: Option<String>,
}

/// `POST /login`: sign in with a pasted API key.
async fn sign_in_with_key(State(state): State<AppState>, request: Request) -> Response {
    let bytes = match bytes::Bytes::from_request(request, &state).await {
        Ok(bytes) => bytes,
        Err(e) => return PageError::bad_request(e.body_text()).into_response(),
    };
    let form: KeyForm = match serde_urlencoded::from_bytes(&bytes) {
        Ok(form) => form,
        Err(e) => {
            return PageError::bad_request(format!("the form cannot be read: {e}")).into_response()
        }
    };
    let next = local_next(form.next.as_deref());
    if form.key.trim().is_empty() {
        return login_form(
            StatusCode::BAD_REQUEST,
            &next,
            Some("paste an API key (`shopfloor keys create NAME --role ROLE` makes one)"),
        );
    }
    match state
        .engine_call(state.engine.sign_in_with_key(&form.key))
        .await
    {
        Ok(Some(session)) => started(&session, &next, state.config.secure_cookies),
        Ok(None) => login_form(
            StatusCode::UNAUTHORIZED,
            &next,
            Some("that API key is unknown or revoked"),
        ),
        Err(e) => PageError::from(e).into_response(),
    }
}

/// `POST /logout`.
async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(secret) = session_cookie(&headers) {
        if let Err(e) = state.engine_call(state.engine.sign_out(secret)).await {
            return PageError::from(e).into_response();
        }
    }
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_set_cookie("", 0, state.config.secure_cookies),
    );
    response
}

async fn stylesheet() -> Response {
    asset(
        include_str!("assets/dashboard.css"),
        "text/css; charset=utf-8",
    )
}

async fn script() -> Response {
    asset(
        include_str!("assets/dashboard.js"),
        "text/javascript; charset=utf-8",
    )
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_router_accepts_every_page() {
        let mut router = axum::Router::<AppState>::new();
        for page in &PAGES {
            let filter = MethodFilter::try_from(page.method.clone()).unwrap();
            router = router.route(page.path, (page.serve)(filter));
        }
        drop(router);
    }

    #[test]
    fn next_stays_on_this_server() {
        assert_eq!(local_next(Some("/runs?status=ok")), "/runs?status=ok");
        assert_eq!(local_next(Some("//evil.example/")), "/");
        assert_eq!(local_next(Some("https://evil.example/")), "/");
        assert_eq!(local_next(Some("/\\evil.example")), "/");
        assert_eq!(local_next(None), "/");
        for hostile in [
            "/\t/evil.example",
            "/\r\nSet-Cookie: x=1",
            "/ x",
            "/runs\u{1}",
            "/é",
        ] {
            assert_eq!(local_next(Some(hostile)), "/", "{hostile:?}");
        }
    }

    #[test]
    fn forms_must_come_from_this_origin() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        assert!(!same_origin(&headers), "neither Origin nor Referer");
        headers.insert(header::ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&headers));
        headers.insert(
            header::ORIGIN,
            "http://127.0.0.1:8080.evil.example".parse().unwrap(),
        );
        assert!(!same_origin(&headers));
        headers.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(!same_origin(&headers));
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, "a=1; sf_session=abc ; b=2".parse().unwrap());
        assert_eq!(session_cookie(&headers), Some("abc"));
        assert_eq!(session_cookie(&HeaderMap::new()), None);
    }
}
