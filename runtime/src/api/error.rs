//! The one error type of the HTTP layer. Every refusal is JSON `{"error", "detail"}` and
//! never leaks internals; only injected faults answer 500.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("unknown device {0:?}")]
    UnknownDevice(String),
    #[error("no route {0}")]
    NotFound(String),
    #[error("{0}")]
    Malformed(String),
    /// A query string the route does not take.
    #[error("{0}")]
    BadQuery(String),
    #[error("{0}")]
    Invalid(String),
    #[error("body larger than {0} bytes")]
    TooLarge(u64),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{detail}")]
    Unavailable {
        detail: String,
        retry_after: Duration,
    },
    #[error("{0}")]
    Conflict(String),
    /// The same signed request was already accepted (or is in flight) on this pod.
    #[error(transparent)]
    Replayed(#[from] super::replay::Replayed),
    #[error("injected fault")]
    InjectedFault,
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::UnknownDevice(_) | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Malformed(_) | ApiError::BadQuery(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Conflict(_) | ApiError::Replayed(_) => StatusCode::CONFLICT,
            ApiError::InjectedFault => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable name, also the log field.
    fn code(&self) -> &'static str {
        match self {
            ApiError::UnknownDevice(_) => "unknown_device",
            ApiError::NotFound(_) => "not_found",
            ApiError::Malformed(_) => "malformed_json",
            ApiError::BadQuery(_) => "bad_query",
            ApiError::Invalid(_) => "invalid_payload",
            ApiError::TooLarge(_) => "payload_too_large",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::Conflict(_) => "conflict",
            ApiError::Replayed(_) => "replayed",
            ApiError::InjectedFault => "injected_fault",
        }
    }
}

/// A vendor's delivery: its credentials 401, a body that is not JSON (or form) 400, one of the
/// wrong shape 422. A missing secret reads as a wrong signature.
impl From<crate::vendors::VendorError> for ApiError {
    fn from(e: crate::vendors::VendorError) -> Self {
        if e.is_unauthorized() {
            ApiError::Unauthorized(e.answer())
        } else if e.is_malformed() {
            ApiError::Malformed(e.to_string())
        } else {
            ApiError::Invalid(e.to_string())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = self.code(), detail = %self, "request failed");
        }
        let body = Json(json!({ "error": self.code(), "detail": self.to_string() }));
        let mut response = (status, body).into_response();
        let retry_after = match self {
            ApiError::Unavailable { retry_after, .. } => Some(retry_after),
            // The first attempt may still be refused, and then this very request is welcome.
            ApiError::Replayed(super::replay::Replayed::InFlight) => Some(Duration::from_secs(1)),
            _ => None,
        };
        if let Some(retry_after) = retry_after {
            let secs = retry_after.as_secs().max(1).to_string();
            if let Ok(v) = HeaderValue::from_str(&secs) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::replay::Replayed;

    #[test]
    fn a_replay_is_a_conflict_and_in_flight_ones_may_be_retried() {
        let accepted = ApiError::from(Replayed::Accepted);
        assert_eq!(
            (accepted.status(), accepted.code()),
            (StatusCode::CONFLICT, "replayed")
        );
        assert!(
            accepted
                .to_string()
                .starts_with("this signed request was already accepted")
        );
        let response = accepted.into_response();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert!(!response.headers().contains_key(header::RETRY_AFTER));

        let in_flight = ApiError::from(Replayed::InFlight).into_response();
        assert_eq!(in_flight.status(), StatusCode::CONFLICT);
        assert_eq!(in_flight.headers()[header::RETRY_AFTER], "1");
    }
}
