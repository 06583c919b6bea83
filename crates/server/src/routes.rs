//! Every route of the API, declared once: its method, its path, what it asks of the caller and
//! its handler. The router is built from [`ROUTES`] and from nothing else, and it checks each
//! route's [`Access`] before the handler runs, so no route is served without a declared
//! permission. A handler that needs the caller takes a [`Principal`](crate::Principal).
//!
//! Adding a route is one entry here and one handler.

use axum::http::Method;
use axum::routing::{on, MethodFilter, MethodRouter};
use shopfloor_core::access::Permission;

use crate::auth::Access;
use crate::{
    embeddings, experiments, gateway, messages, outcomes, responses, reviews, workflows, AppState,
};

/// One route of the API.
pub struct Route {
    pub method: Method,
    /// As the router writes it, with `{name}` parameters.
    pub path: &'static str,
    /// One line for the OpenAPI document.
    pub summary: &'static str,
    pub access: Access,
    /// The handler, bound to the route's method.
    serve: fn(MethodFilter) -> MethodRouter<AppState>,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ({:?})", self.method, self.path, self.access)
    }
}

/// Every route the server serves.
pub static ROUTES: [Route; 29] = [
    Route {
        method: Method::POST,
        path: "/v1/chat/completions",
        summary: "OpenAI Chat Completions: a model of shopfloor.toml, or workflow:NAME",
        access: Access::Needs(Permission::CallModels),
        serve: |m| on(m, gateway::chat),
    },
    Route {
        method: Method::POST,
        path: "/v1/responses",
        summary: "OpenAI Responses: a model of shopfloor.toml",
        access: Access::Needs(Permission::CallModels),
        serve: |m| on(m, responses::create),
    },
    Route {
        method: Method::GET,
        path: "/v1/responses/{id}",
        summary: "A response, read back from its recorded run",
        access: Access::NeedsOrOwn(Permission::ReadRuns),
        serve: |m| on(m, responses::get),
    },
    Route {
        method: Method::POST,
        path: "/v1/messages",
        summary: "Anthropic Messages: a model of shopfloor.toml",
        access: Access::Needs(Permission::CallModels),
        serve: |m| on(m, messages::create),
    },
    Route {
        method: Method::POST,
        path: "/v1/messages/count_tokens",
        summary: "Anthropic count_tokens, by the model's own tokenizer or endpoint",
        access: Access::Needs(Permission::CallModels),
        serve: |m| on(m, messages::count_tokens),
    },
    Route {
        method: Method::POST,
        path: "/v1/embeddings",
        summary: "OpenAI embeddings: a model with kind = \"embedding\"",
        access: Access::Needs(Permission::CallModels),
        serve: |m| on(m, embeddings::embeddings),
    },
    Route {
        method: Method::GET,
        path: "/v1/models",
        summary: "The models this key may call, and its workflows as workflow:NAME",
        access: Access::Needs(Permission::CallModels),
        serve: |m| on(m, gateway::models),
    },
    Route {
        method: Method::GET,
        path: "/v1/models/{id}",
        summary: "One model this key may call",
        access: Access::Needs(Permission::CallModels),
        serve: |m| on(m, gateway::model),
    },
    Route {
        method: Method::POST,
        path: "/v1/workflows/{name}/runs",
        summary: "Run a workflow on one input",
        access: Access::Needs(Permission::RunWorkflows),
        serve: |m| on(m, workflows::run),
    },
    Route {
        method: Method::POST,
        path: "/v1/workflows/{name}/batches",
        summary: "Queue a workflow's inputs as a batch",
        access: Access::Needs(Permission::RunWorkflows),
        serve: |m| on(m, workflows::submit_batch),
    },
    Route {
        method: Method::GET,
        path: "/v1/batches/{id}",
        summary: "A batch's progress and results, in case order",
        access: Access::NeedsOrOwn(Permission::ReadRuns),
        serve: |m| on(m, workflows::batch),
    },
    Route {
        method: Method::GET,
        path: "/v1/runs/{id}",
        summary: "A run, as this key may see it",
        access: Access::NeedsOrOwn(Permission::ReadRuns),
        serve: |m| on(m, workflows::get_run),
    },
    Route {
        method: Method::GET,
        path: "/v1/reviews",
        summary: "The review queue",
        access: Access::Needs(Permission::Review),
        serve: |m| on(m, reviews::list),
    },
    Route {
        method: Method::GET,
        path: "/v1/reviews/stats",
        summary: "Review figures: pending, overdue, time to decision",
        access: Access::Needs(Permission::Review),
        serve: |m| on(m, reviews::stats),
    },
    Route {
        method: Method::POST,
        path: "/v1/reviews/next",
        summary: "Claim the oldest item this reviewer may decide",
        access: Access::Needs(Permission::Review),
        serve: |m| on(m, reviews::next),
    },
    Route {
        method: Method::GET,
        path: "/v1/reviews/{run_id}",
        summary: "A review item with its run and decisions",
        access: Access::Needs(Permission::Review),
        serve: |m| on(m, reviews::show),
    },
    Route {
        method: Method::POST,
        path: "/v1/reviews/{run_id}/claim",
        summary: "Claim one review item",
        access: Access::Needs(Permission::Review),
        serve: |m| on(m, reviews::claim),
    },
    Route {
        method: Method::POST,
        path: "/v1/reviews/{run_id}/approve",
        summary: "Approve an item: its output is released",
        access: Access::Needs(Permission::Review),
        serve: |m| on(m, reviews::approve),
    },
    Route {
        method: Method::POST,
        path: "/v1/reviews/{run_id}/edit",
        summary: "Correct an item: the correction is released",
        access: Access::Needs(Permission::Review),
        serve: |m| on(m, reviews::edit),
    },
    Route {
        method: Method::POST,
        path: "/v1/reviews/{run_id}/reject",
        summary: "Reject an item with a reason: nothing is released",
        access: Access::Needs(Permission::Review),
        serve: |m| on(m, reviews::reject),
    },
    Route {
        method: Method::GET,
        path: "/metrics",
        summary: "Prometheus metrics",
        access: Access::Needs(Permission::ReadRuns),
        serve: |m| on(m, crate::metrics_text),
    },
    Route {
        method: Method::GET,
        path: "/v1/workflows/{name}/outcomes",
        summary: "A workflow's outcomes per week and its KPI",
        access: Access::Needs(Permission::ReadRuns),
        serve: |m| on(m, outcomes::show),
    },
    Route {
        method: Method::POST,
        path: "/v1/workflows/{name}/outcomes",
        summary: "Record a KPI value",
        access: Access::Needs(Permission::ManageEvals),
        serve: |m| on(m, outcomes::record),
    },
    Route {
        method: Method::GET,
        path: "/v1/workflows/{name}/experiments",
        summary: "A workflow's experiments: each arm's figures and what they recommend",
        access: Access::Needs(Permission::ReadRuns),
        serve: |m| on(m, experiments::list),
    },
    Route {
        method: Method::POST,
        path: "/v1/workflows/{name}/experiments",
        summary: "Start an experiment: a variant takes a share of the workflow's runs",
        access: Access::Needs(Permission::Promote),
        serve: |m| on(m, experiments::start),
    },
    Route {
        method: Method::POST,
        path: "/v1/workflows/{name}/experiments/stop",
        summary: "End the workflow's live experiment with a decision (keep or cut)",
        access: Access::Needs(Permission::Promote),
        serve: |m| on(m, experiments::stop),
    },
    Route {
        method: Method::GET,
        path: "/openapi.json",
        summary: "This document: the API as OpenAPI 3.1, generated from the route table",
        access: Access::Public,
        serve: |m| on(m, crate::openapi::serve),
    },
    Route {
        method: Method::GET,
        path: "/healthz",
        summary: "Liveness: the process answers",
        access: Access::Public,
        serve: |m| on(m, crate::healthz),
    },
    Route {
        method: Method::GET,
        path: "/readyz",
        summary: "Readiness: the store answers",
        access: Access::Public,
        serve: |m| on(m, crate::readyz),
    },
];

impl Route {
    /// The handler behind the route's access check.
    pub(crate) fn method_router(&'static self, state: &AppState) -> MethodRouter<AppState> {
        let filter = MethodFilter::try_from(self.method.clone())
            .unwrap_or_else(|_| panic!("{self:?}: the router cannot serve this method"));
        let served = (self.serve)(filter);
        let served = match self.access {
            Access::Public => served,
            Access::Needs(_) | Access::NeedsOrOwn(_) => served.route_layer(
                axum::middleware::from_fn_with_state((state.clone(), self), crate::auth::guard),
            ),
        };
        // Anthropic's API, Anthropic's errors: the key check's included, so it wraps the guard.
        if self.path.starts_with("/v1/messages") {
            served.layer(axum::middleware::map_response(messages::in_anthropic_form))
        } else {
            served
        }
    }
}

/// The route a matched path belongs to.
pub(crate) fn by_path(path: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|r| r.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_router_accepts_every_route() {
        // axum panics on a method and path served twice, and `method_router` on a method it
        // cannot route: building the routes is the check. No engine is needed until
        // `with_state`.
        let mut router = axum::Router::<AppState>::new();
        for route in &ROUTES {
            let filter = MethodFilter::try_from(route.method.clone()).unwrap();
            router = router.route(route.path, (route.serve)(filter));
        }
        drop(router);
    }
}
