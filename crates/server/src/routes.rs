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
use crate::{embeddings, gateway, messages, outcomes, responses, reviews, workflows, AppState};

/// One route of the API.
pub struct Route {
    pub method: Method,
    /// As the router writes it, with `{name}` parameters.
    pub path: &'static str,
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
pub static ROUTES: [Route; 25] = [
    Route {
        method: Method::POST,
        path: "/v1/chat/completions",
        access: Access::Needs(Permission::CallModels),
        serve: |m| on(m, gateway::chat),
    },
    Route {
        method: Method::POST,
        path: "/v1/responses",
        access: Access::Needs(Permission::CallModels),
        serve: |m| on(m, responses::create),
    },
    Route {
        method: Method::GET,
        path: "/v1/responses/{id}",
        access: Access::NeedsOrOwn(Permission::ReadRuns),
        serve: |m| on(m, responses::get),
    },
    Route {
        method: Method::POST,
        path: "/v1/messages",
        access: Access::Needs(Permission::CallModels),
        serve: |m| on(m, messages::create),
    },
    Route {
        method: Method::POST,
        path: "/v1/messages/count_tokens",
        access: Access::Needs(Permission::CallModels),
        serve: |m| on(m, messages::count_tokens),
    },
    Route {
        method: Method::POST,
        path: "/v1/embeddings",
        access: Access::Needs(Permission::CallModels),
        serve: |m| on(m, embeddings::embeddings),
    },
    Route {
        method: Method::GET,
        path: "/v1/models",
        access: Access::Needs(Permission::CallModels),
        serve: |m| on(m, gateway::models),
    },
    Route {
        method: Method::GET,
        path: "/v1/models/{id}",
        access: Access::Needs(Permission::CallModels),
        serve: |m| on(m, gateway::model),
    },
    Route {
        method: Method::POST,
        path: "/v1/workflows/{name}/runs",
        access: Access::Needs(Permission::RunWorkflows),
        serve: |m| on(m, workflows::run),
    },
    Route {
        method: Method::POST,
        path: "/v1/workflows/{name}/batches",
        access: Access::Needs(Permission::RunWorkflows),
        serve: |m| on(m, workflows::submit_batch),
    },
    Route {
        method: Method::GET,
        path: "/v1/batches/{id}",
        access: Access::NeedsOrOwn(Permission::ReadRuns),
        serve: |m| on(m, workflows::batch),
    },
    Route {
        method: Method::GET,
        path: "/v1/runs/{id}",
        access: Access::NeedsOrOwn(Permission::ReadRuns),
        serve: |m| on(m, workflows::get_run),
    },
    Route {
        method: Method::GET,
        path: "/v1/reviews",
        access: Access::Needs(Permission::Review),
        serve: |m| on(m, reviews::list),
    },
    Route {
        method: Method::GET,
        path: "/v1/reviews/stats",
        access: Access::Needs(Permission::Review),
        serve: |m| on(m, reviews::stats),
    },
    Route {
        method: Method::POST,
        path: "/v1/reviews/next",
        access: Access::Needs(Permission::Review),
        serve: |m| on(m, reviews::next),
    },
    Route {
        method: Method::GET,
        path: "/v1/reviews/{run_id}",
        access: Access::Needs(Permission::Review),
        serve: |m| on(m, reviews::show),
    },
    Route {
        method: Method::POST,
        path: "/v1/reviews/{run_id}/claim",
        access: Access::Needs(Permission::Review),
        serve: |m| on(m, reviews::claim),
    },
    Route {
        method: Method::POST,
        path: "/v1/reviews/{run_id}/approve",
        access: Access::Needs(Permission::Review),
        serve: |m| on(m, reviews::approve),
    },
    Route {
        method: Method::POST,
        path: "/v1/reviews/{run_id}/edit",
        access: Access::Needs(Permission::Review),
        serve: |m| on(m, reviews::edit),
    },
    Route {
        method: Method::POST,
        path: "/v1/reviews/{run_id}/reject",
        access: Access::Needs(Permission::Review),
        serve: |m| on(m, reviews::reject),
    },
    Route {
        method: Method::GET,
        path: "/metrics",
        access: Access::Needs(Permission::ReadRuns),
        serve: |m| on(m, crate::metrics_text),
    },
    Route {
        method: Method::GET,
        path: "/v1/workflows/{name}/outcomes",
        access: Access::Needs(Permission::ReadRuns),
        serve: |m| on(m, outcomes::show),
    },
    Route {
        method: Method::POST,
        path: "/v1/workflows/{name}/outcomes",
        access: Access::Needs(Permission::ManageEvals),
        serve: |m| on(m, outcomes::record),
    },
    Route {
        method: Method::GET,
        path: "/healthz",
        access: Access::Public,
        serve: |m| on(m, crate::healthz),
    },
    Route {
        method: Method::GET,
        path: "/readyz",
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
