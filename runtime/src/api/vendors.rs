//! The vendors' own webhooks, one route (and handshake) per vendor:
//!
//! | route | vendor | handshake |
//! |---|---|---|
//! | `GET`/`POST /vendors/oura` | Oura v2 | GET `verification_token` + `challenge` → `{"challenge"}` |
//! | `POST /vendors/whoop` | WHOOP v2 | none |
//! | `POST /vendors/garmin/{token}` | Garmin Health push | none (secret path token) |
//! | `POST /vendors/polar` | Polar AccessLink | PING → 200 |
//! | `HEAD`/`POST /vendors/withings/{token}` | Withings Notify | HEAD → 200 (secret path token) |
//! | `POST /vendors/google_health` | Google Health API | `{"type":"verification"}` → 201 with our Authorization, 401 without |
//!
//! A delivery is verified, read into notifications, produced to Kafka, and answered 200 only
//! once the broker holds every event, as the signed API's 202. Event ids come from the
//! vendor's own ids, so a retry is stored once and answered 200 again (never 409).

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::body_limit::limited;
use super::error::ApiError;
use super::webhooks::{inject_faults, publish, received};
use crate::ingest::Event;
use crate::vendors::garmin::{self, Garmin};
use crate::vendors::google_health::{self, GoogleHealth};
use crate::vendors::oura::{self, Oura};
use crate::vendors::polar::{self, Polar};
use crate::vendors::whoop::Whoop;
use crate::vendors::withings::Withings;
use crate::vendors::{Delivery, VendorError, VendorFormat};

type Answer = (StatusCode, Json<Value>);
type Body = Result<Bytes, BytesRejection>;

/// The vendors' routes; `max_body` is `MAX_BODY_BYTES` (Garmin's pushes may be larger).
pub fn routes(max_body: usize) -> Router<AppState> {
    let push_limit = usize::try_from(garmin::MAX_PUSH_BYTES)
        .unwrap_or(usize::MAX)
        .max(max_body);
    let garmin_push = Router::new().route("/vendors/garmin/{token}", post(garmin));
    let notifications = Router::new()
        .route("/vendors/oura", get(oura_verification).post(signed::<Oura>))
        .route("/vendors/whoop", post(signed::<Whoop>))
        .route("/vendors/polar", post(polar))
        .route(
            "/vendors/withings/{token}",
            post(withings).head(withings_check),
        )
        .route("/vendors/google_health", post(google_health));
    limited(notifications, max_body).merge(limited(garmin_push, push_limit))
}

#[derive(Deserialize)]
struct Challenge {
    verification_token: String,
    challenge: String,
}

async fn oura_verification(
    State(s): State<AppState>,
    query: Result<Query<Challenge>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|r| ApiError::BadQuery(r.body_text()))?;
    let answer = oura::answer_challenge(&s.vendor_keys, &q.verification_token, &q.challenge);
    Ok(Json(answer.map_err(|e| refused("oura", e))?))
}

/// A vendor that signs its body and needs nothing else from the request (Oura, WHOOP).
async fn signed<V: VendorFormat>(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Answer, ApiError> {
    let body = received(body, s.config.max_body_bytes)?;
    deliver::<V>(&s, &headers, &body, None).await
}

async fn garmin(
    State(s): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Answer, ApiError> {
    let body = received(body, garmin::MAX_PUSH_BYTES.max(s.config.max_body_bytes))?;
    deliver::<Garmin>(&s, &headers, &body, Some(&token)).await
}

/// The PING of a new webhook is answered before Polar has told us the signing key.
async fn polar(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Answer, ApiError> {
    let body = received(body, s.config.max_body_bytes)?;
    if polar::is_ping(&body) {
        return Ok((StatusCode::OK, Json(json!({"status": "pong"}))));
    }
    deliver::<Polar>(&s, &headers, &body, None).await
}

/// Withings checks the callback URL with a HEAD request before subscribing it.
async fn withings_check(
    State(s): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let delivery = delivery(&s, &headers, &[], Some(&token));
    Withings::verify(&delivery, &s.vendor_keys).map_err(|e| refused("withings", e))?;
    Ok(StatusCode::OK)
}

async fn withings(
    State(s): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Answer, ApiError> {
    let body = received(body, s.config.max_body_bytes)?;
    deliver::<Withings>(&s, &headers, &body, Some(&token)).await
}

/// The subscriber verification must be authorized like a notification (201), and refused
/// without the Authorization value (401).
async fn google_health(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Answer, ApiError> {
    let body = received(body, s.config.max_body_bytes)?;
    if google_health::is_verification(&body) {
        let delivery = delivery(&s, &headers, &body, None);
        GoogleHealth::verify(&delivery, &s.vendor_keys).map_err(|e| refused("google_health", e))?;
        return Ok((StatusCode::CREATED, Json(json!({"status": "verified"}))));
    }
    deliver::<GoogleHealth>(&s, &headers, &body, None).await
}

fn delivery<'a>(
    s: &AppState,
    headers: &'a HeaderMap,
    body: &'a [u8],
    path_token: Option<&'a str>,
) -> Delivery<'a> {
    Delivery {
        headers,
        body,
        path_token,
        now_unix: chrono::Utc::now().timestamp(),
        tolerance_secs: s.config.webhook_tolerance_seconds,
    }
}

/// Verify, read, produce, answer 200 once Kafka holds every event.
async fn deliver<V: VendorFormat>(
    s: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    path_token: Option<&str>,
) -> Result<Answer, ApiError> {
    let vendor = V::VENDOR.as_str();
    let delivery = delivery(s, headers, body, path_token);
    V::verify(&delivery, &s.vendor_keys).map_err(|e| refused(vendor, e))?;
    inject_faults(s).await?;
    let events = events::<V>(body).map_err(|e| refused(vendor, e))?;
    if !events.is_empty() {
        publish(s, &events).await?;
    }
    tracing::debug!(
        vendor,
        count = events.len(),
        "vendor notifications accepted"
    );
    let ids: Vec<_> = events.iter().map(|e| e.id).collect();
    Ok((
        StatusCode::OK,
        Json(json!({"status": "accepted", "count": ids.len(), "ids": ids})),
    ))
}

fn events<V: VendorFormat>(body: &[u8]) -> Result<Vec<Event>, VendorError> {
    let now = chrono::Utc::now();
    V::notifications(body)?
        .into_iter()
        .map(|n| n.into_event(now))
        .collect()
}

/// The log says why; the sender gets [`VendorError::answer`].
fn refused(vendor: &'static str, e: VendorError) -> ApiError {
    tracing::debug!(vendor, reason = %e, "vendor webhook refused");
    ApiError::from(e)
}
