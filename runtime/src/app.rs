//! The process lifecycle: start (HTTP first, dependencies connected in the background with
//! backoff), serve, and stop (readiness off at once, drain, flush or commit, exit in time).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use auren_contract::{ConsumerRole, components};
use rdkafka::consumer::Consumer;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState, Services, auth::SignatureVerifier, replay::ReplayGuard};
use crate::config::{Config, RunMode, WebhookAuth};
use crate::faults::Faults;
use crate::health::{Component, HealthBoard, HealthReport, Lifecycle, Status};
use crate::kafka::consumer::{BatchLimits, ConsumerSettings, EventConsumer};
use crate::kafka::producer::EventProducer;
use crate::kafka::{self, KafkaSetupError};
use crate::metrics::{Metrics, PoolLabels};
use crate::resilience::{Backoff, BreakerState};
use crate::store::{EventStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("http server: {0}")]
    Serve(std::io::Error),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("stopping took longer than SHUTDOWN_TIMEOUT ({0}s)")]
    ShutdownTimeout(u64),
}

/// The public port and the admin port.
struct Listeners {
    public: TcpListener,
    admin: TcpListener,
}

/// Runs the process until SIGTERM/SIGINT and a clean stop.
pub async fn run(config: Config) -> Result<(), AppError> {
    config.check_ports()?;
    let config = Arc::new(config);
    let services = base_services(&config)?;
    warn_unsafe(&services);
    let listener = Listeners {
        public: bind(&config, config.api_port).await?,
        admin: bind(&config, config.admin_port).await?,
    };
    tracing::info!(
        port = config.api_port,
        admin_port = config.admin_port,
        mode = config.run_mode.as_str(),
        release = %config.release,
        "listening"
    );
    let shutdown = CancellationToken::new();
    match config.run_mode {
        RunMode::Api => run_api(services, listener, shutdown).await,
        RunMode::Consumer => run_consumer(services, listener, shutdown).await,
    }
}

async fn bind(config: &Config, port: u16) -> Result<TcpListener, AppError> {
    let addr = format!("{}:{port}", config.api_host);
    TcpListener::bind(&addr)
        .await
        .map_err(|source| AppError::Bind { addr, source })
}

/// Unsafe settings are loud: a warning each at start, and the `auren_runtime_unsafe_setting`
/// gauge (their `/health` components are degraded, see [`common_components`]).
fn warn_unsafe(services: &Services) {
    let on = services.config.unsafe_settings();
    for setting in &on {
        tracing::warn!(
            setting = setting.label(),
            "unsafe setting on: never run this in production"
        );
    }
    services.metrics.report_unsafe(&on);
}

fn base_services(config: &Arc<Config>) -> Result<Services, AppError> {
    let mode = config.run_mode.as_str();
    let auth_on = config.webhook_auth == WebhookAuth::Required;
    let verifier = SignatureVerifier::new(
        config.webhook_secrets()?,
        config.webhook_tolerance_seconds,
        auth_on,
    );
    // Only signed requests can be told apart; API mode only takes webhooks.
    let replay = (auth_on && config.run_mode == RunMode::Api && config.webhook_replay_capacity > 0)
        .then(|| {
            ReplayGuard::new(
                config.webhook_tolerance_seconds,
                usize::try_from(config.webhook_replay_capacity).unwrap_or(usize::MAX),
            )
        });
    Ok(Services {
        config: config.clone(),
        metrics: Arc::new(Metrics::new(&config.release, mode)),
        health: HealthBoard::new(HealthReport::starting(&config.release, mode)),
        lifecycle: Arc::new(Lifecycle::default()),
        producer: None,
        verifier: Arc::new(verifier),
        replay,
        vendor_keys: Arc::new(config.vendor_keys()?),
        faults: Faults {
            error_rate: config.fault_error_rate,
            latency: Duration::from_millis(config.fault_latency_ms),
        },
        roles: None,
    })
}

async fn run_api(
    mut services: Services,
    listener: Listeners,
    shutdown: CancellationToken,
) -> Result<(), AppError> {
    let c = services.config.clone();
    let producer = Arc::new(EventProducer::new(
        &c.kafka_brokers,
        &c.kafka_topic,
        c.delivery_timeout(),
        Duration::from_millis(c.kafka_linger_ms),
        c.kafka_compression,
        services.metrics.clone(),
    )?);
    services.producer = Some(producer.clone());
    let state = AppState::from(services);
    let connect_state = state.clone();
    tokio::spawn(retry_until_ok(
        components::KAFKA,
        shutdown.clone(),
        move || {
            let s = connect_state.clone();
            async move { connect_api(&s).await }
        },
    ));
    let checked = state.clone();
    spawn_health_checker(state.clone(), shutdown.clone(), move || {
        api_dependencies(checked.clone())
    });
    serve_until_signal(&state, listener, &shutdown, c.drain_delay()).await?;
    let budget = c.shutdown_budget();
    tokio::task::spawn_blocking(move || producer.flush(budget / 2))
        .await
        .map_err(|_| AppError::ShutdownTimeout(c.shutdown_timeout))??;
    tracing::info!("producer flushed; stopped");
    Ok(())
}

async fn connect_api(s: &AppState) -> Result<(), KafkaSetupError> {
    let c = &s.config;
    kafka::ensure_topics(&c.kafka_brokers, &[&c.kafka_topic], c.kafka_partitions).await?;
    if let Some(p) = s.producer.clone() {
        tokio::task::spawn_blocking(move || p.check(Duration::from_secs(2)))
            .await
            .map_err(|_| rdkafka::error::KafkaError::Canceled)??;
    }
    s.lifecycle.mark_started();
    Ok(())
}

async fn run_consumer(
    mut services: Services,
    listener: Listeners,
    shutdown: CancellationToken,
) -> Result<(), AppError> {
    let (roles_tx, roles_rx) = mpsc::channel(4);
    services.roles = Some(roles_tx);
    let state = AppState::from(services);
    let store_slot: Arc<tokio::sync::OnceCell<EventStore>> = Arc::new(tokio::sync::OnceCell::new());
    let consumer_task = tokio::spawn(start_consumer(
        state.clone(),
        store_slot.clone(),
        roles_rx,
        shutdown.clone(),
    ));
    // One Kafka client for every check, not a new connection per interval.
    let probe = kafka::base_config(&state.config.kafka_brokers)
        .create::<rdkafka::consumer::BaseConsumer>()
        .map(Arc::new)
        .map_err(|e| e.to_string());
    let checked = state.clone();
    spawn_health_checker(state.clone(), shutdown.clone(), move || {
        consumer_dependencies(checked.clone(), store_slot.get().cloned(), probe.clone())
    });
    serve_until_signal(&state, listener, &shutdown, Duration::ZERO).await?;
    let budget = state.config.shutdown_budget();
    tokio::time::timeout(budget, consumer_task)
        .await
        .map_err(|_| AppError::ShutdownTimeout(state.config.shutdown_timeout))?
        .ok();
    tracing::info!("consumer stopped; offsets committed");
    Ok(())
}

/// Connects the store (migrating it), creates the topics, then runs the consumer loop.
async fn start_consumer(
    s: AppState,
    slot: Arc<tokio::sync::OnceCell<EventStore>>,
    roles: mpsc::Receiver<crate::kafka::consumer::RoleRequest>,
    shutdown: CancellationToken,
) {
    let c = s.config.clone();
    let pool_size = 4;
    // A driver's error may quote the URL it was given: its password is scrubbed before the
    // retry loop logs it.
    let connect = || async {
        connect_store(c.database_url.expose(), pool_size, c.enable_event_sourcing)
            .await
            .map_err(|e| c.database_url.scrub(&e.to_string()))
    };
    let Some(store) = retry_until_ok("postgres", shutdown.clone(), connect).await else {
        return;
    };
    let _ = slot.set(store.clone());
    let topics = || async {
        kafka::ensure_topics(
            &c.kafka_brokers,
            &[&c.kafka_topic, &c.dlq_topic()],
            c.kafka_partitions,
        )
        .await
    };
    if retry_until_ok(components::KAFKA, shutdown.clone(), topics)
        .await
        .is_none()
    {
        return;
    }
    let settings = ConsumerSettings {
        brokers: c.kafka_brokers.clone(),
        topic: c.kafka_topic.clone(),
        dlq_topic: c.dlq_topic(),
        group: c.kafka_group.clone(),
        batch: BatchLimits {
            events: usize::try_from(c.batch_max_events()).unwrap_or(usize::MAX),
            bytes: usize::try_from(c.consumer_batch_max_bytes).unwrap_or(usize::MAX),
        },
        in_flight: usize::from(c.consumer_batches_in_flight),
    };
    let consumer = match EventConsumer::new(settings, store, s.metrics.clone()) {
        Ok(consumer) => consumer,
        Err(e) => {
            tracing::error!(error = %e, "cannot create the kafka consumer");
            return;
        }
    };
    s.lifecycle.mark_started();
    consumer.run(c.consumer_role, roles, shutdown).await;
}

async fn connect_store(
    url: &str,
    pool: u32,
    event_sourcing: bool,
) -> Result<EventStore, StoreError> {
    let store = EventStore::connect(url, pool, event_sourcing).await?;
    store.migrate().await?;
    Ok(store)
}

/// Retries `attempt` with bounded exponential backoff and jitter until it succeeds (Some) or
/// the process is stopping (None).
async fn retry_until_ok<T, E, F, Fut>(
    what: &'static str,
    shutdown: CancellationToken,
    mut attempt: F,
) -> Option<T>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut n = 0;
    loop {
        match attempt().await {
            Ok(v) => {
                tracing::info!(dependency = what, attempts = n + 1, "connected");
                return Some(v);
            }
            Err(e) => {
                tracing::warn!(dependency = what, attempt = n + 1, error = %e, "not reachable yet; retrying")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(Backoff::STARTUP.delay(n)) => {}
        }
        n += 1;
    }
}

/// Serves both ports until SIGTERM/SIGINT: readiness goes off at once, the public port still
/// accepts connections for `drain` (while Services drop the pod), then in-flight requests
/// finish. The admin port stops accepting at the same moment as the public one.
async fn serve_until_signal(
    state: &AppState,
    listeners: Listeners,
    shutdown: &CancellationToken,
    drain: Duration,
) -> Result<(), AppError> {
    let lifecycle = state.lifecycle.clone();
    let health = state.health.clone();
    let token = shutdown.clone();
    let signal = async move {
        wait_for_signal().await;
        lifecycle.begin_drain();
        health.release_waiters();
        tracing::info!(
            drain_ms = drain.as_millis() as u64,
            "stop requested: readiness off, draining"
        );
        tokio::time::sleep(drain).await;
        token.cancel();
    };
    let admin_token = shutdown.clone();
    let public = axum::serve(listeners.public, api::router(state.clone()))
        .with_graceful_shutdown(signal)
        .into_future();
    let admin = axum::serve(listeners.admin, api::admin_router(state.clone()))
        .with_graceful_shutdown(async move { admin_token.cancelled().await })
        .into_future();
    let mut server = tokio::spawn(async move {
        let (public, admin) = tokio::join!(public, admin);
        public.and(admin)
    });
    tokio::select! {
        result = &mut server => return flatten(result),
        _ = shutdown.cancelled() => {}
    }
    let budget = state.config.shutdown_budget() / 2;
    match tokio::time::timeout(budget, server).await {
        Ok(result) => flatten(result),
        Err(_) => {
            tracing::warn!("in-flight requests did not finish within half the shutdown budget");
            Ok(())
        }
    }
}

fn flatten(
    result: Result<Result<(), std::io::Error>, tokio::task::JoinError>,
) -> Result<(), AppError> {
    match result {
        Ok(inner) => inner.map_err(AppError::Serve),
        Err(e) => Err(AppError::Serve(std::io::Error::other(e))),
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} },
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn common_components(s: &AppState) -> BTreeMap<&'static str, Component> {
    let mut c = BTreeMap::new();
    if !s.lifecycle.is_started() {
        c.insert(
            "startup",
            Component::with(Status::Unhealthy, "connecting to dependencies"),
        );
    }
    if s.faults.is_active() {
        c.insert(
            components::FAULTS,
            // Degraded, never healthy: an unsafe setting is loud. The operator's readiness
            // gate accepts it only when the AurenRuntime allows faults on purpose, so a release
            // with injected faults still reaches analysis (where its errors are caught).
            Component::with(Status::Degraded, s.faults.describe()),
        );
    }
    if !s.verifier.is_enabled() && s.config.run_mode == RunMode::Api {
        c.insert(
            components::WEBHOOK_AUTH,
            Component::with(
                Status::Degraded,
                "webhook signatures disabled by WEBHOOK_AUTH=disabled",
            ),
        );
    }
    c
}

fn counters(s: &AppState) -> BTreeMap<&'static str, f64> {
    let m = &s.metrics;
    let mut out = BTreeMap::new();
    out.insert("events_accepted", m.events_accepted.get() as f64);
    out.insert("events_stored", m.events_stored.get() as f64);
    out.insert("events_dead_lettered", m.events_dead_lettered.get() as f64);
    out
}

async fn timed<E: std::fmt::Display>(check: impl Future<Output = Result<(), E>>) -> Component {
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(3), check).await;
    match result {
        Ok(r) => Component::from_check(r, started.elapsed()),
        Err(_) => Component::with(Status::Unhealthy, "check timed out"),
    }
}

/// Publishes the health report every `HEALTH_CHECK_INTERVAL` (and right after start-up):
/// the common components plus what `dependencies` measured.
fn spawn_health_checker<F, Fut>(s: AppState, shutdown: CancellationToken, mut dependencies: F)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = BTreeMap<&'static str, Component>> + Send,
{
    tokio::spawn(async move {
        let interval = Duration::from_secs(s.config.health_check_interval);
        let mut last_started = false;
        loop {
            let mut components = common_components(&s);
            components.extend(dependencies().await);
            s.health.publish(components, counters(&s));
            last_started |= s.lifecycle.is_started();
            if !tick(&shutdown, interval, &s, last_started).await {
                return;
            }
        }
    });
}

async fn api_dependencies(s: AppState) -> BTreeMap<&'static str, Component> {
    let mut dependencies = BTreeMap::new();
    if let Some(p) = s.producer.clone() {
        let state = p.breaker_state();
        let kafka = timed(async move {
            tokio::task::spawn_blocking(move || {
                p.check(Duration::from_secs(2)).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())?
        })
        .await;
        dependencies.insert(components::KAFKA, kafka);
        dependencies.insert("circuit_breaker", breaker_component(Some(state)));
    }
    dependencies
}

/// Open is degraded; half-open is not. A half-open breaker closes only when a request (its
/// probe) gets through, and the operator's readiness gate takes a pod whose `/health` is not
/// healthy out of its Services: reporting half-open as degraded kept such a pod out of traffic
/// for good after a Kafka outage (e2e `faults.rs`, broker frozen). `/readiness` agrees: it is
/// 503 only while the breaker is open. The `kafka` component still fails while Kafka does.
fn breaker_component(state: Option<BreakerState>) -> Component {
    match state {
        Some(BreakerState::Closed) | None => Component::healthy(),
        Some(BreakerState::HalfOpen) => Component::with(
            Status::Healthy,
            "kafka circuit half_open: the next request probes Kafka",
        ),
        Some(BreakerState::Open) => Component::with(Status::Degraded, "kafka circuit open"),
    }
}

/// Waits for the next check: the interval, or sooner right after start-up completes.
async fn tick(
    shutdown: &CancellationToken,
    interval: Duration,
    s: &AppState,
    was_started: bool,
) -> bool {
    let deadline = Instant::now() + interval;
    while Instant::now() < deadline {
        if !was_started && s.lifecycle.is_started() {
            return true;
        }
        let step = if was_started {
            interval
        } else {
            Duration::from_millis(50)
        };
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(step.min(deadline.saturating_duration_since(Instant::now()))) => {}
        }
    }
    true
}

async fn consumer_dependencies(
    s: AppState,
    store: Option<EventStore>,
    probe: Result<Arc<rdkafka::consumer::BaseConsumer>, String>,
) -> BTreeMap<&'static str, Component> {
    let database = match store {
        Some(store) => {
            let (idle, in_use) = store.pool_usage();
            let pool = |state| s.metrics.db_pool.get_or_create(&PoolLabels { state });
            pool("idle").set(i64::from(idle));
            pool("in_use").set(i64::from(in_use));
            timed(store.ping()).await
        }
        None => Component::with(Status::Unhealthy, "not connected yet"),
    };
    let role = if s.metrics.consumer_active.get() == 1 {
        ConsumerRole::Active
    } else {
        ConsumerRole::Standby
    };
    let consumer = Component::with(Status::Healthy, format!("role {}", role.as_str()));
    BTreeMap::from([
        (components::DATABASE, database),
        (components::KAFKA, timed(kafka_metadata(probe)).await),
        ("consumer", consumer),
    ])
}

async fn kafka_metadata(
    probe: Result<Arc<rdkafka::consumer::BaseConsumer>, String>,
) -> Result<(), String> {
    tokio::task::spawn_blocking(move || {
        probe?
            .fetch_metadata(None, Duration::from_secs(2))
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}
