//! How pages are rendered: one minijinja environment of the dashboard's own (auto-escaping
//! every `.html` template, the templates compiled into the binary), the filters templates use
//! to show times, money and rates, and the error page.

use std::sync::LazyLock;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use minijinja::{Environment, Value};
use shopfloor_engine::EngineError;

use super::Viewer;
use crate::error::ApiError;

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("templates/", $name)))),*]
    };
}

const TEMPLATES: &[(&str, &str)] = templates![
    "base.html",
    "login.html",
    "error.html",
    "portfolio.html",
    "workflow.html",
    "runs.html",
    "run.html",
    "evals.html",
    "eval.html",
    "eval_case.html",
    "compare.html",
    "review.html",
    "audit.html",
    "document.html",
];

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
    for (name, source) in TEMPLATES {
        if let Err(e) = env.add_template(name, source) {
            // A template that does not compile is a bug of this build, caught by the tests.
            panic!("dashboard template {name}: {e}");
        }
    }
    env.add_filter("when", |ms: Option<i64>| {
        ms.map(|ms| shopfloor_core::calendar::utc_datetime(ms)[..16].to_string())
            .unwrap_or_else(|| "–".into())
    });
    env.add_filter("day", |ms: Option<i64>| {
        ms.map(shopfloor_core::calendar::utc_date)
            .unwrap_or_else(|| "–".into())
    });
    env.add_filter("pct", |rate: Option<f64>| {
        rate.map(|r| format!("{:.0}%", r * 100.0))
            .unwrap_or_else(|| "–".into())
    });
    env.add_filter("usd", |usd: Option<f64>| match usd {
        Some(u) if u != 0.0 && u.abs() < 0.01 => format!("${u:.4}"),
        Some(u) => format!("${u:.2}"),
        None => "–".into(),
    });
    env.add_filter("num", |x: Option<f64>, places: Option<usize>| {
        x.map(|x| format!("{x:.*}", places.unwrap_or(0)))
            .unwrap_or_else(|| "–".into())
    });
    // UUID v7 ids share their leading (time) digits; the random tail tells them apart.
    env.add_filter("short", |id: String| {
        let skip = id.chars().count().saturating_sub(8);
        id.chars().skip(skip).collect::<String>()
    });
    env.add_filter("json", |value: Value| {
        serde_json::to_string_pretty(&value).unwrap_or_default()
    });
    env.add_filter("urlencode_part", |text: String| url_encode(&text));
    env
});

/// A page, or the error page when the template fails (a bug, logged).
pub(crate) fn render(name: &str, context: Value) -> Response {
    let rendered = ENV
        .get_template(name)
        .and_then(|template| template.render(context));
    match rendered {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!("dashboard template {name}: {e:#}");
            PageError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "this page could not be drawn; the server log says why",
            )
            .into_response()
        }
    }
}

/// A URL query component, percent-encoded.
pub(crate) fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// An error shown as a page of the dashboard.
#[derive(Debug)]
pub(crate) struct PageError {
    status: StatusCode,
    message: String,
    viewer: Option<Box<Viewer>>,
}

impl PageError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            viewer: None,
        }
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// Draw the page with the viewer's navigation.
    pub(crate) fn with_viewer(mut self, viewer: Viewer) -> Self {
        self.viewer = Some(Box::new(viewer));
        self
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        Self::new(e.status, e.message)
    }
}

impl From<EngineError> for PageError {
    fn from(e: EngineError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let nav = self.viewer.as_deref().map(super::pages::nav);
        let mut response = render(
            "error.html",
            minijinja::context! {
                title => self.status.canonical_reason().unwrap_or("Error"),
                status => self.status.as_u16(),
                message => self.message,
                viewer => self.viewer.as_ref().map(|v| minijinja::context!{
                    name => v.principal.name.clone(),
                    role => v.principal.role.as_str(),
                }),
                csrf => self.viewer.as_ref().map(|v| v.csrf.clone()),
                nav => nav,
            },
        );
        *response.status_mut() = self.status;
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}
