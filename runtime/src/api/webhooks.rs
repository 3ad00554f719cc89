//! The signed AUREN reading API (uploads such as the Apple Health path, tests, the demo):
//! `POST /webhooks/{device}` and `POST /webhooks/{device}/batch`: authenticate, normalise,
//! write to Kafka, and answer 202 only once the broker holds every event. A signed request is
//! accepted once: its signature is reserved right after it verifies and remembered only when
//! the answer is 202; any other outcome frees it for the sender's retry. Beyond this pod's
//! memory, a signed request's events carry ids derived from it, so the store keeps one copy.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::AppState;
use super::auth::AuthError;
use super::error::ApiError;
use super::replay::Reservation;
use crate::ingest::{self, Device, Event, IngestError, SignedOrigin};
use crate::kafka::producer::ProduceError;

type Accepted = (StatusCode, Json<Value>);

pub async fn single(
    State(s): State<AppState>,
    Path(device): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Accepted, ApiError> {
    let admitted = admit(&s, &device, &headers, body).await?;
    let device = admitted.device;
    let mut event =
        ingest::normalise(device, &admitted.body, chrono::Utc::now()).map_err(refusal)?;
    admitted.name(std::slice::from_mut(&mut event));
    publish(&s, std::slice::from_ref(&event)).await?;
    remember(&s, admitted.reservation);
    tracing::debug!(event_id = %event.id, user_id = %event.user_id, device = device.as_str(), "event accepted");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"status": "accepted", "id": event.id})),
    ))
}

pub async fn batch(
    State(s): State<AppState>,
    Path(device): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Accepted, ApiError> {
    let admitted = admit(&s, &device, &headers, body).await?;
    let max = usize::try_from(s.config.max_batch_events).unwrap_or(usize::MAX);
    let now = chrono::Utc::now();
    let mut events = ingest::normalise_batch(admitted.device, &admitted.body, now, max).map_err(
        |(index, e)| match refusal(e) {
            ApiError::Invalid(detail) => ApiError::Invalid(format!("item {index}: {detail}")),
            other => other,
        },
    )?;
    admitted.name(&mut events);
    publish(&s, &events).await?;
    remember(&s, admitted.reservation);
    let ids: Vec<_> = events.iter().map(|e| e.id).collect();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"status": "accepted", "count": ids.len(), "ids": ids})),
    ))
}

/// A request past authentication, replay check and faults.
struct Admitted {
    device: Device,
    body: Bytes,
    /// Signed requests only: must be confirmed on a 202; dropping it frees the signature.
    reservation: Option<Reservation>,
    /// Signed requests only: names the request's events.
    origin: Option<SignedOrigin>,
}

impl Admitted {
    /// A signed request's events get ids derived from it, so a replay that reaches another pod
    /// (or this one after a restart) is the same event and stored once; unsigned requests
    /// (`WEBHOOK_AUTH=disabled`) keep the fresh UUIDv7s minted at ingest.
    fn name(&self, events: &mut [Event]) {
        if let Some(origin) = &self.origin {
            origin.identify(events);
        }
    }
}

/// Everything before parsing: known device, body within the limit, valid signature, not a
/// replay, faults.
async fn admit(
    s: &AppState,
    device: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Admitted, ApiError> {
    let device =
        Device::from_path(device).ok_or_else(|| ApiError::UnknownDevice(device.to_string()))?;
    let body = received(body, s.config.max_body_bytes)?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signed = s
        .verifier
        .verify_signed(
            device,
            header(auren_contract::headers::TIMESTAMP),
            header(auren_contract::headers::SIGNATURE),
            &body,
            chrono::Utc::now().timestamp(),
        )
        .map_err(|e| unauthorized(device, &e))?;
    let origin = signed.map(|signed| signed.origin);
    let reservation = match (&s.replay, signed) {
        (Some(guard), Some(signed)) => {
            let reserved = guard.reserve(signed.key, signed.timestamp);
            Some(reserved.inspect_err(|why| {
                s.metrics.webhooks_replayed.inc();
                tracing::debug!(device = device.as_str(), reason = %why, "replayed webhook refused");
            })?)
        }
        _ => None,
    };
    inject_faults(s).await?;
    Ok(Admitted {
        device,
        body,
        reservation,
        origin,
    })
}

/// The same answer for a device without a secret as for a wrong signature; the log says which.
fn unauthorized(device: Device, e: &AuthError) -> ApiError {
    tracing::debug!(device = device.as_str(), reason = %e, "webhook refused");
    ApiError::Unauthorized(e.answer())
}

/// The request is answered 202: its signature is remembered, so a replay is refused.
fn remember(s: &AppState, reservation: Option<Reservation>) {
    let Some(reservation) = reservation else {
        return;
    };
    let confirmed = reservation.confirm(chrono::Utc::now().timestamp());
    s.metrics
        .signatures_remembered
        .set(i64::try_from(confirmed.remembered).unwrap_or(i64::MAX));
    if let Some(rotations) = confirmed.early_rotation {
        s.metrics.replay_early_rotations.inc();
        if rotations == 1 {
            tracing::warn!(
                capacity = s.config.webhook_replay_capacity,
                "replay guard full: forgetting the oldest signatures before they expire, so \
                 replays are caught for a shorter time (see auren_runtime_webhook_replay_early_rotations_total; \
                 raise WEBHOOK_REPLAY_CAPACITY); logged once"
            );
        }
    }
}

/// The body, or why it could not be read (over `limit` bytes: 413).
pub(super) fn received(body: Result<Bytes, BytesRejection>, limit: u64) -> Result<Bytes, ApiError> {
    body.map_err(|r| match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(limit),
        _ => ApiError::Malformed(r.body_text()),
    })
}

pub(super) async fn inject_faults(s: &AppState) -> Result<(), ApiError> {
    if !s.faults.latency.is_zero() {
        tokio::time::sleep(s.faults.latency).await;
    }
    if s.faults.should_fail() {
        return Err(ApiError::InjectedFault);
    }
    Ok(())
}

fn refusal(e: IngestError) -> ApiError {
    if e.is_malformed() {
        ApiError::Malformed(e.to_string())
    } else {
        ApiError::Invalid(e.to_string())
    }
}

pub(super) async fn publish(s: &AppState, events: &[Event]) -> Result<(), ApiError> {
    let Some(producer) = &s.producer else {
        return Err(ApiError::NotFound(
            "webhooks are served in api mode only".into(),
        ));
    };
    let budget = super::request_budget(&s.config);
    let outcome = tokio::time::timeout(budget, producer.publish(events)).await;
    match outcome {
        Ok(Ok(())) => {
            s.metrics.events_accepted.inc_by(events.len() as u64);
            Ok(())
        }
        Ok(Err(ProduceError::CircuitOpen { retry_after })) => Err(ApiError::Unavailable {
            detail: "event store temporarily unavailable (Kafka circuit open)".into(),
            retry_after,
        }),
        Ok(Err(e)) => {
            s.metrics.fail("produce");
            Err(ApiError::Unavailable {
                detail: format!("event not accepted: {e}"),
                retry_after: std::time::Duration::from_secs(1),
            })
        }
        Err(_) => {
            s.metrics.fail("produce");
            Err(ApiError::Unavailable {
                detail: "Kafka did not acknowledge in time".into(),
                retry_after: std::time::Duration::from_secs(1),
            })
        }
    }
}
