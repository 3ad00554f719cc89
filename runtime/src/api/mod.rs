//! HTTP: webhooks (api mode), health, readiness, liveness, metrics and the admin API (both
//! modes). Handlers stay thin: auth, size and parse here, normalisation in `ingest`, durability
//! in `kafka`.

pub mod admin;
pub mod auth;
pub mod body_limit;
pub mod error;
pub mod observe;
pub mod replay;
pub mod vendors;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, HeaderValue};
use axum::routing::{get, post};
use tokio::sync::mpsc;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::config::Config;
use crate::faults::Faults;
use crate::health::{HealthBoard, Lifecycle};
use crate::kafka::consumer::RoleRequest;
use crate::kafka::producer::EventProducer;
use crate::metrics::Metrics;
use crate::vendors::VendorKeys;
use auth::SignatureVerifier;
use replay::ReplayGuard;

/// Everything a handler may need.
pub struct Services {
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub health: HealthBoard,
    pub lifecycle: Arc<Lifecycle>,
    pub producer: Option<Arc<EventProducer>>,
    pub verifier: Arc<SignatureVerifier>,
    /// Refuses a signed request accepted before (`None` without signatures or when turned off).
    pub replay: Option<Arc<ReplayGuard>>,
    /// The vendors' secrets (signing keys, path tokens, authorization values).
    pub vendor_keys: Arc<VendorKeys>,
    pub faults: Faults,
    pub roles: Option<mpsc::Sender<RoleRequest>>,
}

/// The handlers' state: one reference count per request, not one per field.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl From<Services> for AppState {
    fn from(services: Services) -> Self {
        AppState(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.0
    }
}

impl AppState {
    /// Ready means: dependencies connected, not draining, and (api) Kafka's breaker not open.
    pub fn is_ready(&self) -> bool {
        let lifecycle_ok = self.lifecycle.is_started() && !self.lifecycle.is_draining();
        let kafka_ok = self
            .producer
            .as_ref()
            .is_none_or(|p| p.breaker_state() != crate::resilience::BreakerState::Open);
        lifecycle_ok && kafka_ok
    }
}

/// The public port: the signed AUREN reading API and the vendors' webhooks (api mode), health,
/// readiness, liveness, metrics. No admin route: `/admin/*` is 404 here.
pub fn router(state: AppState) -> Router {
    let max_body = usize::try_from(state.config.max_body_bytes).unwrap_or(usize::MAX);
    let readings = Router::new()
        .route("/webhooks/{device}", post(webhooks::single))
        .route("/webhooks/{device}/batch", post(webhooks::batch));
    let routes = Router::new()
        .merge(body_limit::limited(readings, max_body))
        .merge(vendors::routes(max_body))
        .route(auren_contract::paths::HEALTH, get(observe::health))
        .route(auren_contract::paths::READINESS, get(observe::readiness))
        .route(auren_contract::paths::LIVE, get(observe::live))
        .route(auren_contract::paths::METRICS, get(observe::metrics));
    common_layers(routes, state)
}

/// The admin port (`ADMIN_PORT`): the admin API only, for the operator.
pub fn admin_router(state: AppState) -> Router {
    let routes = Router::new().route(
        auren_contract::paths::ADMIN_CONSUMER_ROLE,
        get(admin::get_role).put(admin::put_role),
    );
    common_layers(routes, state)
}

/// What every response gets: the 404 document, request metrics, the release header and the
/// request id.
fn common_layers(routes: Router<AppState>, state: AppState) -> Router {
    let release =
        HeaderValue::from_str(&state.config.release).unwrap_or(HeaderValue::from_static("unknown"));
    let request_id = HeaderName::from_static(auren_contract::headers::REQUEST_ID);
    routes
        .fallback(observe::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe::track_requests,
        ))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static(auren_contract::headers::RELEASE),
            release,
        ))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

/// Every log line of a request carries its id (the JSON logs include the current span).
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let id = request
        .headers()
        .get(auren_contract::headers::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path())
}

/// How long a webhook may wait for Kafka before the client is told to retry.
pub fn request_budget(config: &Config) -> Duration {
    config.delivery_timeout() + Duration::from_secs(1)
}
