//! The `auren-operator` process: configuration, the HTTP server (`/healthz`, `/readyz`,
//! `/metrics`), leader election and the controller, and a graceful stop on SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use kube::Client;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::api::NotificationFormat;
use crate::controller::{self, Context, lease};
use crate::metrics::Metrics;
use crate::notify::Destination;
use crate::notify::receivers::{DEFAULT_REFUSED_NETWORKS, Network, ReceiverPolicy};

/// Command line of `auren-operator`; every flag has an environment twin.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "auren-operator",
    about = "Reconciles AurenRuntime resources",
    version
)]
pub struct Args {
    /// Address of the HTTP server (/healthz, /readyz, /metrics).
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Name of the coordination.k8s.io Lease used for leader election.
    #[arg(long, env = "LEASE_NAME", default_value = "auren-operator")]
    pub lease_name: String,
    /// Namespace of the Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// This replica's identity in the Lease (the pod name; the hostname when unset).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Seconds a lease holds without renewal.
    #[arg(long, env = "LEASE_DURATION_SECONDS", default_value_t = 10)]
    pub lease_duration_seconds: u64,
    /// Only reconcile AurenRuntimes in this namespace (all namespaces when unset).
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Seconds between lease renewals.
    #[arg(long, env = "LEASE_RENEW_SECONDS", default_value_t = 2)]
    pub lease_renew_seconds: u64,
    /// Secret in the operator's namespace (`--namespace`) with the keys `url` and `hmacKey`:
    /// where AurenRuntimes without `spec.notifications` send theirs. None when unset.
    #[arg(long, env = "NOTIFICATIONS_SECRET")]
    pub notifications_secret: Option<String>,
    /// Body format of those default notifications.
    #[arg(long, env = "NOTIFICATIONS_FORMAT", default_value = "cloudevents",
          value_parser = ["cloudevents", "slack"])]
    pub notifications_format: String,
    /// URL schemes a notification receiver may use (comma separated).
    #[arg(
        long,
        env = "NOTIFICATION_ALLOWED_SCHEMES",
        value_delimiter = ',',
        default_value = "https,http"
    )]
    pub notification_allowed_schemes: Vec<String>,
    /// Hosts notifications may go to (comma separated; `*.example.com` for every name under
    /// example.com). Empty: any host whose addresses pass --notification-refused-networks.
    #[arg(long, env = "NOTIFICATION_ALLOWED_HOSTS", value_delimiter = ',')]
    pub notification_allowed_hosts: Vec<String>,
    /// Networks no notification may reach, checked on every address the receiver's host
    /// resolves to (comma separated). The default refuses link-local (cloud metadata),
    /// loopback and the unspecified addresses. The API server is refused whatever this says.
    #[arg(long, env = "NOTIFICATION_REFUSED_NETWORKS", value_delimiter = ',',
          default_value = DEFAULT_REFUSED_NETWORKS)]
    pub notification_refused_networks: Vec<Network>,
}

impl Args {
    /// The receivers notifications may go to, the API server (`api_server`) refused.
    fn receivers(&self, api_server: Vec<SocketAddr>) -> ReceiverPolicy {
        ReceiverPolicy::new(
            &self.notification_allowed_schemes,
            &self.notification_allowed_hosts,
            &self.notification_refused_networks,
        )
        .refusing_api_server(api_server)
    }

    /// Where notifications go for AurenRuntimes that do not say.
    fn default_notifications(&self) -> Option<Destination> {
        let secret = self
            .notifications_secret
            .clone()
            .filter(|s| !s.is_empty())?;
        Some(Destination {
            namespace: self.namespace.clone(),
            secret,
            format: NotificationFormat::parse(&self.notifications_format).unwrap_or_default(),
        })
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
}

/// JSON logs, filtered by `RUST_LOG` (info by default).
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .init();
}

/// Runs until SIGTERM or SIGINT.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let identity = args.identity.clone().unwrap_or_else(hostname);
    let shutdown = CancellationToken::new();
    tokio::spawn(signalled(shutdown.clone()));
    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    let state = AppState {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let server = tokio::spawn(serve(args.metrics_addr, state, shutdown.clone()));
    let config = kube::Config::infer().await?;
    let receivers = args.receivers(api_server_addresses(&config.cluster_url).await);
    let client = counted_client(config, metrics.clone())?;
    ready.store(true, Ordering::SeqCst);
    let (leader_tx, leader_rx) = watch::channel(false);
    let config = lease::LeaseConfig {
        name: args.lease_name.clone(),
        namespace: args.namespace.clone(),
        identity: identity.clone(),
        duration: Duration::from_secs(args.lease_duration_seconds.max(2)),
        renew: Duration::from_secs(args.lease_renew_seconds.max(1)),
    };
    let stop_leading = CancellationToken::new();
    let holder = tokio::spawn(lease::hold(
        client.clone(),
        config,
        leader_tx,
        stop_leading.clone(),
    ));
    let defaults = args.default_notifications();
    let ctx = Arc::new(Context::new(
        client, metrics, &identity, defaults, receivers,
    ));
    lead_while_elected(
        ctx,
        args.watch_namespace.clone(),
        leader_rx,
        shutdown.clone(),
    )
    .await;
    stop_leading.cancel();
    holder.await?;
    server.await??;
    tracing::info!("stopped");
    Ok(())
}

/// The API server client, every request counted in `auren_operator_kube_api_requests_total`
/// and every refusal (401/403) in `auren_operator_kube_api_refused_total`.
fn counted_client(config: kube::Config, metrics: Arc<Metrics>) -> anyhow::Result<Client> {
    let requests = metrics.clone();
    let count = tower::ServiceBuilder::new()
        .map_request(move |request: http::Request<_>| {
            requests.api_request(&request);
            request
        })
        .map_response(move |response: http::Response<_>| {
            metrics.api_response(response.status());
            response
        });
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&count)
        .build())
}

/// The API server as this operator reaches it (in a pod: the `kubernetes` Service's address,
/// from KUBERNETES_SERVICE_HOST), so that no notification is sent there. Empty when its name
/// does not resolve now (the names of the `kubernetes` Service are refused anyway).
async fn api_server_addresses(url: &http::Uri) -> Vec<SocketAddr> {
    let Some(host) = url.host() else {
        return Vec::new();
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url
        .port_u16()
        .unwrap_or(if url.scheme_str() == Some("http") {
            80
        } else {
            443
        });
    match tokio::net::lookup_host((host, port)).await {
        Ok(found) => found.collect(),
        Err(e) => {
            tracing::warn!(error = %e, "the API server's address: not resolved");
            Vec::new()
        }
    }
}

/// Runs the controller whenever this replica holds the lease, until shutdown.
async fn lead_while_elected(
    ctx: Arc<Context>,
    namespace: Option<String>,
    mut leader: watch::Receiver<bool>,
    shutdown: CancellationToken,
) {
    loop {
        // biased: once shutdown is requested it wins over a lease that still says "leader".
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            elected = leader.wait_for(|l| *l) => if elected.is_err() { return },
        }
        tracing::info!("leading: controller starts");
        ctx.metrics.leading(true);
        let stop = CancellationToken::new();
        let watch_leadership = {
            let (stop, shutdown, mut leader) = (stop.clone(), shutdown.clone(), leader.clone());
            tokio::spawn(async move {
                tokio::select! {
                    () = shutdown.cancelled() => {},
                    _ = leader.wait_for(|l| !*l) => {},
                }
                stop.cancel();
            })
        };
        controller::run(ctx.clone(), namespace.clone(), stop.cancelled_owned()).await;
        watch_leadership.abort();
        ctx.metrics.leading(false);
        tracing::info!("controller stopped");
    }
}

async fn signalled(shutdown: CancellationToken) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = term => {},
    }
    tracing::info!("shutdown requested");
    shutdown.cancel();
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("auren-operator-{}", std::process::id()))
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(state)
}

async fn serve(
    addr: SocketAddr,
    state: AppState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    match state.metrics.encode() {
        Ok(text) => (
            StatusCode::OK,
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn state(ready: bool) -> AppState {
        AppState {
            metrics: Arc::new(Metrics::new()),
            ready: Arc::new(AtomicBool::new(ready)),
        }
    }

    async fn get_path(state: AppState, path: &str) -> (StatusCode, String) {
        let request = Request::get(path).body(Body::empty()).unwrap();
        let response = router(state).oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn health_readiness_and_metrics() {
        assert_eq!(get_path(state(false), "/healthz").await.0, StatusCode::OK);
        assert_eq!(
            get_path(state(false), "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(get_path(state(true), "/readyz").await.0, StatusCode::OK);
        let s = state(true);
        s.metrics.reconciled(Duration::from_millis(2), None);
        let (status, body) = get_path(s, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("auren_operator_reconciles_total"));
    }
}
