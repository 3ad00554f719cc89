//! Health, readiness, liveness and metrics endpoints, and the request-metrics middleware.

use std::time::{Duration, Instant};

use auren_contract::health_watch::MAX_WAIT_SECONDS;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{MatchedPath, Query, Request, State};
use axum::http::{StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use crate::health::HealthReport;
use crate::metrics::{RequestLabels, RouteLabels};

/// `?unless=<change>&wait=<seconds>` (both or neither) turns `/health` into a long poll; see
/// [`auren_contract::health_watch`].
#[derive(Debug, Deserialize)]
pub struct HealthWait {
    unless: Option<String>,
    wait: Option<u64>,
}

pub async fn health(
    State(s): State<AppState>,
    query: Result<Query<HealthWait>, QueryRejection>,
) -> Result<Json<HealthReport>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadQuery(e.body_text()))?;
    match (query.unless, query.wait) {
        (Some(unless), Some(wait)) => {
            let wait = Duration::from_secs(wait.min(MAX_WAIT_SECONDS));
            s.health.changed_from(&unless, wait).await;
        }
        (None, None) => {}
        _ => {
            let detail = "a long poll of /health needs both `unless` and `wait`";
            return Err(ApiError::BadQuery(detail.into()));
        }
    }
    Ok(Json(s.health.current()))
}

pub async fn readiness(State(s): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let ready = s.is_ready();
    s.metrics.ready.set(i64::from(ready));
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "ready": ready, "draining": s.lifecycle.is_draining() })),
    )
}

pub async fn live() -> Json<serde_json::Value> {
    Json(json!({ "live": true }))
}

pub async fn metrics(State(s): State<AppState>) -> Response {
    s.metrics.ready.set(i64::from(s.is_ready()));
    if let Some(guard) = &s.replay {
        let remembered = guard.remembered(chrono::Utc::now().timestamp());
        s.metrics
            .signatures_remembered
            .set(i64::try_from(remembered).unwrap_or(i64::MAX));
    }
    match s.metrics.render() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(uri.path().to_string())
}

/// Counts requests by matched route (never the raw path: bounded cardinality) and status.
pub async fn track_requests(State(s): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    s.metrics
        .http_requests
        .get_or_create(&RequestLabels {
            route: route.clone(),
            method,
            status,
        })
        .inc();
    s.metrics
        .http_duration
        .get_or_create(&RouteLabels { route })
        .observe(started.elapsed().as_secs_f64());
    response
}
