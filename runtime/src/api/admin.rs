//! The admin API: the consumer's role (active/standby), switched by the operator during a
//! cutover. Served on `ADMIN_PORT` only, never on the public port. Every call needs
//! `Authorization: Bearer <ADMIN_TOKEN>`; without a configured token every call is refused.

use std::time::Duration;

use auren_contract::{ConsumerRole, RoleChange, RoleStatus};
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, header};
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;

use super::AppState;
use super::error::ApiError;
use crate::kafka::consumer::RoleRequest;

fn authorize(s: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = s.config.admin_token.as_deref().filter(|t| !t.is_empty()) else {
        return Err(ApiError::Unauthorized(
            "admin API disabled: no ADMIN_TOKEN configured".into(),
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized(
            "missing or wrong admin token".into(),
        ))
    }
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is case-insensitive and
/// may be followed by more than one space (RFC 9110 §11.1, RFC 6750 §2.1); header names are
/// case-insensitive already in `HeaderMap`.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim_start_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn current(s: &AppState) -> RoleStatus {
    let role = if s.metrics.consumer_active.get() == 1 {
        ConsumerRole::Active
    } else {
        ConsumerRole::Standby
    };
    RoleStatus {
        role,
        stored: s.metrics.events_stored.get(),
    }
}

pub async fn get_role(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<RoleStatus>, ApiError> {
    authorize(&s, &headers)?;
    if s.roles.is_none() {
        return Err(ApiError::Conflict("no consumer in api mode".into()));
    }
    Ok(Json(current(&s)))
}

/// Answers once the switch is complete (for standby: batch stored, offsets committed, group
/// left), so the caller may activate the other release right after.
pub async fn put_role(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<RoleChange>, JsonRejection>,
) -> Result<Json<RoleStatus>, ApiError> {
    authorize(&s, &headers)?;
    let Json(change) = body.map_err(|e| ApiError::Invalid(e.body_text()))?;
    let Some(roles) = &s.roles else {
        return Err(ApiError::Conflict("no consumer in api mode".into()));
    };
    let (reply, answer) = oneshot::channel();
    let unavailable = |detail: &str| ApiError::Unavailable {
        detail: detail.into(),
        retry_after: Duration::from_secs(1),
    };
    roles
        .send(RoleRequest {
            role: change.role,
            reply,
        })
        .await
        .map_err(|_| unavailable("consumer is stopping"))?;
    let budget = s.config.shutdown_budget();
    match tokio::time::timeout(budget, answer).await {
        Ok(Ok(Ok(_))) => Ok(Json(current(&s))),
        Ok(Ok(Err(e))) => Err(unavailable(&format!("role switch failed: {e}"))),
        Ok(Err(_)) | Err(_) => Err(unavailable("role switch did not complete in time")),
    }
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_matches_in_any_case() {
        for value in [
            "Bearer t0k",
            "bearer t0k",
            "BEARER t0k",
            "Bearer   t0k",
            " Bearer t0k ",
        ] {
            assert_eq!(bearer_token(value), Some("t0k"), "{value:?}");
        }
        for value in ["Basic t0k", "Bearer", "Bearer ", "Bearert0k", "t0k", ""] {
            assert_eq!(bearer_token(value), None, "{value:?}");
        }
    }
}
