//! Errors on the wire in OpenAI's format, `{"error": {"message", "type", "param", "code"}}`,
//! with the status an OpenAI client expects, so that existing SDKs raise the right exception.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use shopfloor_core::review::DecisionError;
use shopfloor_engine::store_types::ErrorKind;
use shopfloor_engine::{EngineError, GatewayError, ReviewError};

/// An error response.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's error `type`: `invalid_request_error`, `authentication_error`, …
    pub kind: &'static str,
    pub param: Option<std::borrow::Cow<'static, str>>,
    pub code: Option<&'static str>,
    /// The run this error belongs to, when one was recorded.
    pub run_id: Option<String>,
    /// Seconds to wait before trying again, sent as `Retry-After`.
    pub retry_after_s: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            run_id: None,
            retry_after_s: None,
        }
    }

    pub fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn param(mut self, param: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// The field this error names, renamed for a client that calls it otherwise (`renames`:
    /// the engine's name, then the client's), in `param` and in the message.
    pub fn renamed(mut self, renames: &[(&str, &'static str)]) -> Self {
        let Some(&(old, new)) = renames
            .iter()
            .find(|(old, _)| self.param.as_deref() == Some(*old))
        else {
            return self;
        };
        self.message = self.message.replace(old, new);
        self.param(new)
    }

    /// Sent with `Retry-After: seconds`.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_s = Some(u32::try_from(seconds).unwrap_or(u32::MAX));
        self
    }

    pub fn run(mut self, run_id: impl Into<String>) -> Self {
        self.run_id = Some(run_id.into());
        self
    }

    /// 400: the request itself is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 401: no key, or a key that is unknown or revoked.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "authentication_error", message).code("invalid_api_key")
    }

    /// 403: the key's role does not allow this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "permission_error", message).code("insufficient_role")
    }

    /// 404: no such thing.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found_error", message).code("not_found")
    }

    /// 413: the body is over the limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("the request body is larger than the server's limit of {limit} bytes"),
        )
        .code("request_too_large")
    }

    /// 500: our fault.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// 503: the store did not answer (in time).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
            .code("store_unavailable")
    }

    /// The body as bytes, built once.
    pub(crate) fn body(&self) -> Vec<u8> {
        let mut body = json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        });
        if let Some(run_id) = &self.run_id {
            body["run_id"] = json!(run_id);
        }
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(id) = self.run_id.as_deref().and_then(|id| id.parse().ok()) {
            response.headers_mut().insert(crate::RUN_ID_HEADER, id);
        }
        if let Some(seconds) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        // Kept for the routes that answer errors in another form (`messages::in_anthropic_form`).
        response.extensions_mut().insert(self);
        response
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        match &error {
            EngineError::UnknownWorkflow { .. } => {
                ApiError::not_found(error.to_string()).code("workflow_not_found")
            }
            EngineError::UnknownModel { .. } => ApiError::bad_request(error.to_string())
                .param("model")
                .code("model_not_found"),
            EngineError::UnknownBatch(_) => ApiError::not_found(error.to_string()),
            EngineError::InvalidField { field, .. } => {
                ApiError::bad_request(error.to_string()).param(*field)
            }
            EngineError::InvalidInput(_) => ApiError::bad_request(error.to_string())
                .param("input")
                .code("invalid_input"),
            EngineError::Store(_) => ApiError::unavailable(error.to_string()),
            EngineError::Review(review) => ApiError::review(review),
            EngineError::UnknownEval(_) => {
                ApiError::not_found(error.to_string()).code("eval_not_found")
            }
            EngineError::NoDataset(_) => {
                ApiError::bad_request(error.to_string()).code("no_dataset")
            }
            EngineError::InvalidDataset(_) => {
                ApiError::bad_request(error.to_string()).code("invalid_dataset")
            }
            EngineError::PromotionRefused { .. } => {
                conflict(error.to_string(), "promotion_refused")
            }
            EngineError::BatchMismatch(_) => conflict(error.to_string(), "batch_mismatch"),
            EngineError::NoExperiment(_) => {
                ApiError::not_found(error.to_string()).code("experiment_not_found")
            }
            EngineError::ExperimentConflict(_) => {
                conflict(error.to_string(), "experiment_conflict")
            }
            // OpenAI's forms: a rate limit names what ran out, a spent budget is a quota.
            EngineError::LimitReached(reached) => {
                let (kind, code) = match reached.limit {
                    "budget" => ("insufficient_quota", "insufficient_quota"),
                    "tokens" => ("tokens", "rate_limit_exceeded"),
                    _ => ("requests", "rate_limit_exceeded"),
                };
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, kind, error.to_string())
                    .code(code)
                    .retry_after(reached.retry_after_s)
            }
            EngineError::Webhook(_) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "server_error", error.to_string())
                    .code("webhook_failed")
            }
            // The server's own files and records: the client learns that, the log learns which.
            EngineError::NoProject { .. }
            | EngineError::InvalidProject(_)
            | EngineError::Io { .. }
            | EngineError::WorkflowEdit { .. }
            | EngineError::Unscored { .. } => {
                tracing::error!("{error}");
                ApiError::internal(
                    "the server could not read or write its own project or records; its log says which",
                )
            }
        }
    }
}

impl ApiError {
    /// A refused review action: 404 for no item, 403 for a reviewer's own run, 409 when
    /// someone else holds or already took the item, 400 for a bad reason or correction.
    fn review(error: &ReviewError) -> Self {
        let message = error.to_string();
        match error {
            ReviewError::NotFound(_) => ApiError::not_found(message).code("review_not_found"),
            ReviewError::Decision(DecisionError::OwnRun) => {
                ApiError::forbidden(message).code("own_run")
            }
            ReviewError::Claimed { .. } => conflict(message, "claimed_by_other"),
            ReviewError::Conflict(_) => conflict(message, "decided_meanwhile"),
            ReviewError::Decision(DecisionError::NothingToApprove) => {
                conflict(message, "edit_or_reject")
            }
            ReviewError::Decision(DecisionError::AlreadyDecided(_)) => {
                conflict(message, "already_decided")
            }
            ReviewError::Decision(DecisionError::Closed(_)) => conflict(message, "already_closed"),
            ReviewError::Decision(DecisionError::UnknownReason { .. }) => {
                ApiError::bad_request(message)
                    .param("reason")
                    .code("unknown_reason")
            }
            ReviewError::InvalidEdit(_) => ApiError::bad_request(message)
                .param("output")
                .code("invalid_output"),
        }
    }
}

fn conflict(message: String, code: &'static str) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "invalid_request_error", message).code(code)
}

impl From<GatewayError> for ApiError {
    fn from(error: GatewayError) -> Self {
        match error {
            GatewayError::UnknownModel { .. } => ApiError::not_found(error.to_string())
                .param("model")
                .code("model_not_found"),
            GatewayError::Failed(failure) => {
                ApiError::call_failed(failure.kind, None, &failure.message)
            }
            GatewayError::Unsupported { model, unsupported } => ApiError::bad_request(format!(
                "model \"{model}\" cannot take {}: {}",
                unsupported.param, unsupported.reason
            ))
            .param(unsupported.param)
            .code("unsupported_parameter"),
            GatewayError::InvalidOutput { .. } => {
                ApiError::new(StatusCode::BAD_GATEWAY, "server_error", error.to_string())
                    .param("response_format")
                    .code("invalid_output")
            }
        }
    }
}

impl ApiError {
    /// The error of a gateway call whose route ended at `model`.
    pub fn gateway(error: GatewayError, model: Option<&str>) -> Self {
        match error {
            GatewayError::Failed(failure) => {
                ApiError::call_failed(failure.kind, model, &failure.message)
            }
            other => ApiError::from(other),
        }
    }

    /// A call to a model that gave no answer, by the kind of failure: the one mapping for
    /// the gateway and the workflow API. A refusal by policy or a model that cannot be
    /// called as configured is explained; for a failure at the provider the client learns
    /// the model and the kind of failure only, since `detail` names internal addresses,
    /// and the server log gets `detail`.
    pub fn call_failed(kind: ErrorKind, model: Option<&str>, detail: &str) -> Self {
        let model_name = model.map_or_else(|| "the model".to_string(), |m| format!("model {m}"));
        let what = match kind {
            ErrorKind::Refused | ErrorKind::Unavailable => None,
            ErrorKind::Timeout => Some("did not answer in time"),
            ErrorKind::RateLimited => Some("is rate limited by its provider; retry later"),
            ErrorKind::Rejected => Some("was called with a request its provider rejected"),
            ErrorKind::Upstream => Some("failed at its provider"),
            ErrorKind::Cancelled => Some("was cancelled before it answered"),
        };
        let message = match what {
            Some(what) => {
                tracing::warn!(model, kind = kind.as_str(), detail, "model call failed");
                format!("{model_name} {what}")
            }
            None => {
                if kind == ErrorKind::Unavailable {
                    tracing::warn!(model, kind = kind.as_str(), detail, "model not called");
                } else {
                    tracing::info!(model, kind = kind.as_str(), detail, "refused by policy");
                }
                detail.to_string()
            }
        };
        match kind {
            ErrorKind::Refused => ApiError::bad_request(message).code("refused_by_policy"),
            ErrorKind::Rejected => ApiError::bad_request(message).code("upstream_rejected"),
            ErrorKind::Timeout => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "server_error", message)
                    .code("upstream_timeout")
            }
            ErrorKind::RateLimited => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", message)
                    .code("rate_limit_exceeded")
            }
            ErrorKind::Unavailable => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
                    .code("model_unavailable")
            }
            ErrorKind::Upstream | ErrorKind::Cancelled => {
                ApiError::new(StatusCode::BAD_GATEWAY, "server_error", message)
                    .code("upstream_error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_openai_shaped() {
        let error = ApiError::bad_request("no").param("model").run("r1");
        let body: serde_json::Value = serde_json::from_slice(&error.body()).unwrap();
        assert_eq!(
            body,
            json!({"error": {"message": "no", "type": "invalid_request_error", "param": "model", "code": null}, "run_id": "r1"})
        );
    }

    #[test]
    fn every_engine_error_has_its_own_status_and_none_leaks_a_path() {
        let status = |error: EngineError| ApiError::from(error).status.as_u16();
        assert_eq!(status(EngineError::UnknownEval("e1".into())), 404);
        assert_eq!(status(EngineError::NoDataset("w".into())), 400);
        assert_eq!(
            status(EngineError::InvalidDataset(vec!["line 2".into()])),
            400
        );
        let refused = EngineError::PromotionRefused {
            workflow: "w".into(),
            to: "production",
            reasons: vec!["no eval".into()],
        };
        assert_eq!(status(refused), 409);
        assert_eq!(status(EngineError::BatchMismatch("other file".into())), 409);
        assert_eq!(status(EngineError::Webhook("down".into())), 502);
        let io = ApiError::from(EngineError::Io {
            path: "/srv/project/datasets/secret.jsonl".into(),
            source: std::io::Error::other("denied"),
        });
        assert_eq!(io.status.as_u16(), 500);
        assert!(!io.message.contains("/srv"), "{}", io.message);
    }

    #[test]
    fn failures_map_to_gateway_statuses_by_kind() {
        let status = |kind| ApiError::call_failed(kind, None, "x").status;
        assert_eq!(status(ErrorKind::Timeout), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            status(ErrorKind::RateLimited),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(status(ErrorKind::Upstream), StatusCode::BAD_GATEWAY);
        assert_eq!(status(ErrorKind::Rejected), StatusCode::BAD_REQUEST);
        assert_eq!(status(ErrorKind::Refused), StatusCode::BAD_REQUEST);
        assert_eq!(
            status(ErrorKind::Unavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn provider_failures_name_the_model_and_the_kind_not_the_detail() {
        let detail = "cannot connect to http://10.1.2.3:18103/v1/chat/completions: refused";
        for kind in [
            ErrorKind::Timeout,
            ErrorKind::RateLimited,
            ErrorKind::Rejected,
            ErrorKind::Upstream,
            ErrorKind::Cancelled,
        ] {
            let error = ApiError::call_failed(kind, Some("fast"), detail);
            assert!(
                error.message.starts_with("model fast "),
                "{}",
                error.message
            );
            assert!(!error.message.contains("10.1.2.3"), "{}", error.message);
        }
        let refused = ApiError::call_failed(ErrorKind::Refused, Some("fast"), "policy says no");
        assert_eq!(refused.message, "policy says no");
    }
}
