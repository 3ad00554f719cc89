//! The controller: the only place the operator talks to the API server and to pods. One
//! reconcile reads the world, asks the pure `rollout::decide` what to do and does it:
//!
//! read (AurenRuntime, Deployments, pods from the watch caches; consumer roles) → measure (when the last plan asked)
//! → decide → apply (canary pod labels, Services, Deployments, deletions, role switches) →
//! readiness gates → status (only when changed) → Events → side steps (the consumer
//! autoscaler; a failure is a condition, an Event and a retry, never a blocked rollout) →
//! requeue.
//!
//! The AurenRuntime is read afresh instead when its cache has not caught up with this
//! replica's own last status write (see [`fresh`]).

mod admin_token;
mod apply;
mod cache;
mod follow;
pub mod lease;
mod measure;
mod newest;
pub mod notifier;
mod observe;
mod pod_api;
pub mod prometheus;

use admin_token::admin_token;
use newest::{NewestVersion, newest_runtime};

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use auren_contract::ConsumerRole;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource, ResourceExt};

use crate::api::{AurenRuntime, AurenRuntimeStatus, Phase, Verdict};
use crate::metrics::Metrics;
use crate::notify::receivers::ReceiverPolicy;
use crate::notify::{self, Destination, Subject};
use crate::resources::{self, LABEL_INSTANCE, MANAGER, ResourceError};
use crate::revision::{self, RevisionError};
use crate::rollout::{self, EventKind, Observed, Plan};

use measure::Windows;
use observe::Cluster;

/// Requeue after a failed reconcile.
const ERROR_REQUEUE: Duration = Duration::from_secs(5);
/// Requeue after consumer role switches, to observe their outcome.
const SWITCH_REQUEUE: Duration = Duration::from_millis(500);
/// Requeue while a pod's runtime reports itself unhealthy: the fallback for runtimes that
/// cannot be followed ([`follow`]; their `/health` names no state). A recovery changes nothing
/// the watches see, and before the followers, API pods gated out during a Kafka outage stayed
/// out of their Services until some unrelated reconcile (up to the idle requeue, 300 s) after
/// Kafka was back (e2e `faults.rs`, broker frozen: 55 s without service instead of a few).
const UNHEALTHY_REQUEUE: Duration = Duration::from_secs(5);
/// Reconciles running at once: bounds memory and the burst on the API server at start.
const RECONCILE_CONCURRENCY: u16 = 16;
/// Length of the generated admin token.
const TOKEN_LEN: usize = 40;

/// A reconcile failed. The variant name is the metric label and the Warning Event reason.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {what}: {source}")]
    ReadFailed {
        what: &'static str,
        source: kube::Error,
    },
    #[error("applying {name}: {source}")]
    ApplyFailed { name: String, source: kube::Error },
    #[error("deleting {name}: {source}")]
    DeleteFailed { name: String, source: kube::Error },
    #[error("writing the status: {0}")]
    StatusWriteFailed(#[source] kube::Error),
    #[error("admin token Secret {name}: {detail}")]
    AdminTokenUnavailable { name: String, detail: String },
    #[error("computing the revision: {0}")]
    RevisionFailed(#[from] RevisionError),
    #[error("building objects: {0}")]
    ResourceInvalid(#[from] ResourceError),
    #[error("switching consumers of {revision} to {}: {detail}", role.as_str())]
    RoleSwitchFailed {
        revision: String,
        role: ConsumerRole,
        detail: String,
    },
    #[error("setting the readiness gate of pod {pod}: {source}")]
    PodConditionFailed { pod: String, source: kube::Error },
    #[error(
        "pointing the consumer autoscaler {autoscaler} at {deployment}: {source} \
         (create it, or remove spec.consumer.autoscaler)"
    )]
    AutoscalerNotPointed {
        autoscaler: String,
        deployment: String,
        source: kube::Error,
    },
    #[error("the watch caches stopped (the controller is shutting down)")]
    CacheUnavailable,
}

impl Error {
    /// The variant's name: metric label and Event reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::ReadFailed { .. } => "ReadFailed",
            Error::ApplyFailed { .. } => "ApplyFailed",
            Error::DeleteFailed { .. } => "DeleteFailed",
            Error::StatusWriteFailed(_) => "StatusWriteFailed",
            Error::AdminTokenUnavailable { .. } => "AdminTokenUnavailable",
            Error::RevisionFailed(_) => "RevisionFailed",
            Error::ResourceInvalid(_) => "ResourceInvalid",
            Error::RoleSwitchFailed { .. } => "RoleSwitchFailed",
            Error::PodConditionFailed { .. } => "PodConditionFailed",
            Error::AutoscalerNotPointed { .. } => "AutoscalerNotPointed",
            Error::CacheUnavailable => "CacheUnavailable",
        }
    }
}

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub http: reqwest::Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    windows: Windows,
    /// Admin tokens by Secret (`namespace/name/key`), read once; forgotten when a pod refuses one.
    tokens: std::sync::Mutex<BTreeMap<String, String>>,
    /// Per AurenRuntime uid: [`NewestVersion`] (resourceVersion, status digest) of the newest version
    /// this replica got from the API server itself (its own status write, or a fresh read).
    /// See [`newest::newest_runtime`].
    newest: std::sync::Mutex<BTreeMap<String, NewestVersion>>,
    /// Sends notifications on its own task.
    notifier: notifier::Notifier,
    /// Where notifications go for AurenRuntimes without `spec.notifications` (the chart's
    /// `notifications.secretName`).
    default_notifications: Option<Destination>,
}

/// One leadership term: the shared context, the caches the term's watches fill, and the
/// followers of the pods' health (they stop with the term).
struct LeadershipTerm {
    ctx: Arc<Context>,
    cache: cache::Cache,
    followers: follow::Followers,
}

impl Context {
    /// Starts the notification task too (call inside the Tokio runtime).
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        identity: &str,
        default_notifications: Option<Destination>,
        receivers: ReceiverPolicy,
    ) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: Some(identity.to_owned()),
        };
        let recorder = Recorder::new(client.clone(), reporter);
        Self {
            notifier: notifier::Notifier::start(
                client.clone(),
                recorder.clone(),
                metrics.clone(),
                receivers,
            ),
            default_notifications,
            recorder,
            client,
            http: pod_api::client(),
            metrics,
            windows: Windows::default(),
            tokens: Default::default(),
            newest: Default::default(),
        }
    }
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the controller until `stop` resolves (shutdown or lost leadership).
/// `namespace` limits the operator to one namespace (all namespaces when `None`).
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (cache, feeds) = cache::feeds(&ctx.client, namespace.as_deref());
    let (followers, health_changed) =
        follow::Followers::new(ctx.http.clone(), cache.pod_store(), ctx.metrics.clone());
    let term = Arc::new(LeadershipTerm {
        ctx,
        cache,
        followers,
    });
    let config = controller::Config::default()
        .debounce(Duration::from_millis(300))
        .concurrency(RECONCILE_CONCURRENCY);
    let follower = term.clone();
    let pods = feeds.pods.inspect(move |pod| {
        if let Ok(pod) = pod {
            follower.followers.pod_reported(pod);
        }
    });
    Controller::for_stream(feeds.runtimes, feeds.runtime_store)
        .owns_stream(feeds.deployments)
        .owns_stream(feeds.services)
        .watches_stream(pods, owner_of_pod)
        .reconcile_on(health_changed)
        .with_config(config)
        .trigger_backoff(NoTriggerBackoff)
        .graceful_shutdown_on(stop)
        .run(reconcile, error_policy, term)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller");
            }
        })
        .await;
}

/// Every feed already backs off on its own watch's errors (cache.rs). The Controller's default
/// backoff on the merged trigger stream would, on top, pause all four watches after any one's
/// error, doubling up to 30 s across them: after an API server restart (every watch fails while
/// it is down, then gets one 410 Gone) the caches stayed stale for over a minute.
struct NoTriggerBackoff;

impl Iterator for NoTriggerBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

impl kube::runtime::utils::Backoff for NoTriggerBackoff {
    fn reset(&mut self) {}
}

/// Pods belong to ReplicaSets; their instance label names the AurenRuntime.
fn owner_of_pod(pod: Pod) -> Option<ObjectRef<AurenRuntime>> {
    let name = pod.labels().get(LABEL_INSTANCE)?;
    let ns = pod.namespace()?;
    Some(ObjectRef::new(name).within(&ns))
}

async fn reconcile(ar: Arc<AurenRuntime>, term: Arc<LeadershipTerm>) -> Result<Action, Error> {
    term.cache.ready().await?;
    let ctx = &term.ctx;
    let started = Instant::now();
    let result = match newest_runtime(ctx, ar).await {
        Ok(ar) => reconcile_once(&ar, ctx, &term.cache).await,
        Err(e) => Err(e),
    };
    let error = result.as_ref().err().map(Error::reason);
    ctx.metrics.reconciled(started.elapsed(), error);
    result
}

fn error_policy(ar: Arc<AurenRuntime>, error: &Error, term: Arc<LeadershipTerm>) -> Action {
    let ctx = term.ctx.clone();
    tracing::warn!(name = %ar.name_any(), namespace = ?ar.namespace(), error = %error, "reconcile failed");
    let event = KubeEvent {
        type_: EventType::Warning,
        reason: error.reason().into(),
        note: Some(truncate(&error.to_string())),
        action: "Reconcile".into(),
        secondary: None,
    };
    tokio::spawn(async move {
        let _ = ctx.recorder.publish(&event, &ar.object_ref(&())).await;
    });
    Action::requeue(ERROR_REQUEUE)
}

async fn reconcile_once(
    ar: &AurenRuntime,
    ctx: &Context,
    cache: &cache::Cache,
) -> Result<Action, Error> {
    let ns = ar
        .namespace()
        .ok_or(Error::ResourceInvalid(ResourceError::MissingNamespace))?;
    let key = format!("{ns}/{}", ar.name_any());
    let token = admin_token(ctx, ar, &ns).await?;
    let cluster = observe::read(ctx, cache, ar, &token).await;
    if cluster.token_refused {
        ctx.forget_token(ar);
    }
    let now = Timestamp::now();
    let measurements = ctx
        .windows
        .measure(&ctx.http, &key, &ar.spec, &cluster, now)
        .await;
    ctx.metrics.measured(&measurements);
    let deciding = std::time::Instant::now();
    let plan = decide(ar, &cluster, &measurements, now)?;
    ctx.metrics.decided(deciding.elapsed());
    // Traffic and the status first; nothing after them can hold them up, and their
    // errors (role switches, readiness gates, side steps) are returned once all ran.
    let mut switched = Ok(());
    if let Some(world) = &plan.world {
        let desired = revision::of(&ar.spec)?;
        apply::traffic(ctx, cache, ar, &ns, world, &cluster).await?;
        apply::workloads(ctx, ar, &ns, &desired, world, &cluster).await?;
        switched = apply::role_switches(ctx, &cluster, &token, &world.role_switches).await;
    }
    let gated = apply::readiness_gates(ctx, &ns, &cluster).await;
    write_status(ctx, ar, &ns, ar.status.as_ref(), &plan.status).await?;
    publish(ctx, ar, &plan).await;
    queue_notice(ctx, ar, &ns, &plan);
    observe_rollback(ctx, ar, &plan, now);
    let analyze = plan.world.as_ref().and_then(|w| w.analyze.as_ref());
    ctx.windows
        .track(&ctx.http, &key, analyze, &cluster, now)
        .await;
    ctx.metrics.phase(&key, plan.status.phase);
    let pointed = side_steps(ctx, ar, &ns, &plan).await;
    switched?;
    gated?;
    pointed?;
    let mut requeue = requeue_after(ctx, &key, &plan);
    if cluster.health.values().any(Result::is_err) {
        requeue = requeue.min(UNHEALTHY_REQUEUE);
    }
    Ok(Action::requeue(requeue))
}

/// What does not carry traffic, after the Services and the status are written: pointing the
/// consumer autoscaler at the stable release (notifications are queued, never awaited). A
/// failure becomes the `AutoscalerPointed` condition (written only when it changes) and, as
/// the returned error, a Warning Event and a retry; it holds up nothing.
async fn side_steps(ctx: &Context, ar: &AurenRuntime, ns: &str, plan: &Plan) -> Result<(), Error> {
    let retarget = plan
        .world
        .as_ref()
        .and_then(|w| w.retarget_autoscaler.as_ref());
    let Some(revision) = retarget else {
        return Ok(());
    };
    let pointed = apply::point_autoscaler(ctx, ar, ns, revision).await;
    let mut next = plan.status.clone();
    let outcome = pointed.as_ref().map(|_| ()).map_err(ToString::to_string);
    let generation = ar.metadata.generation.unwrap_or(0);
    rollout::record_pointing(
        &mut next,
        &ar.spec,
        revision,
        outcome,
        generation,
        Timestamp::now(),
    );
    write_status(ctx, ar, ns, Some(&plan.status), &next).await?;
    pointed
}

fn decide(
    ar: &AurenRuntime,
    cluster: &Cluster,
    measurements: &[crate::api::Measurement],
    now: Timestamp,
) -> Result<Plan, Error> {
    let status = ar.status.clone().unwrap_or_default();
    let releases = cluster.releases();
    let annotations: BTreeMap<String, String> = ar.annotations().clone();
    let mut plan = rollout::decide(&Observed {
        spec: &ar.spec,
        generation: ar.metadata.generation.unwrap_or(0),
        annotations: &annotations,
        status: &status,
        desired: revision::of(&ar.spec)?,
        releases: &releases,
        measurements,
        now,
    });
    let active = rollout::ServiceTarget::active_of(&plan.status);
    plan.status.selector = resources::scale_selector(ar, &active);
    Ok(plan)
}

/// The plan's requeue, or sooner when an analysis window closes first.
fn requeue_after(ctx: &Context, key: &str, plan: &Plan) -> Duration {
    // Role switches change nothing the watches see: look again soon to confirm them.
    let switched = plan
        .world
        .as_ref()
        .is_some_and(|w| !w.role_switches.is_empty());
    if switched {
        return plan.requeue_after.min(SWITCH_REQUEUE);
    }
    let window = ctx.windows.until_due(key, Timestamp::now());
    match window {
        // A requeue at the 1 s floor means "a measurement is due": the window says when.
        Some(wait) if plan.requeue_after <= Duration::from_secs(1) => {
            wait.max(Duration::from_millis(200))
        }
        Some(wait) => plan.requeue_after.min(wait.max(Duration::from_millis(200))),
        None => plan.requeue_after,
    }
}

async fn publish(ctx: &Context, ar: &AurenRuntime, plan: &Plan) {
    let reference = ar.object_ref(&());
    for event in &plan.events {
        let kube_event = KubeEvent {
            type_: match event.kind {
                EventKind::Normal => EventType::Normal,
                EventKind::Warning => EventType::Warning,
            },
            reason: event.reason.clone(),
            note: Some(truncate(&event.message)),
            action: "Rollout".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&kube_event, &reference).await {
            tracing::warn!(error = %e, reason = %event.reason, "event not published");
        }
    }
}

/// Writes `next` over `current` (the status as last read or written), only when it differs.
async fn write_status(
    ctx: &Context,
    ar: &AurenRuntime,
    ns: &str,
    current: Option<&AurenRuntimeStatus>,
    next: &AurenRuntimeStatus,
) -> Result<(), Error> {
    let Some(body) = resources::status_patch(current, next)? else {
        return Ok(());
    };
    let written = Api::<AurenRuntime>::namespaced(ctx.client.clone(), ns)
        .patch_status(
            &ar.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(Error::StatusWriteFailed)?;
    ctx.remember_newest(&written);
    Ok(())
}

/// Queues the plan's notice (its status is written now) for the receiver configured by the
/// spec or the operator's default; nothing when neither is.
fn queue_notice(ctx: &Context, ar: &AurenRuntime, ns: &str, plan: &Plan) {
    let Some(notice) = plan.notice.clone() else {
        return;
    };
    let own = ar.spec.notifications.as_ref();
    let Some(destination) = notify::destination(ns, own, ctx.default_notifications.as_ref()) else {
        return;
    };
    ctx.notifier.enqueue(notifier::Delivery {
        subject: Subject {
            namespace: ns.to_owned(),
            name: ar.name_any(),
            uid: ar.uid().unwrap_or_default(),
        },
        object: ar.object_ref(&()),
        destination,
        notice,
    });
}

/// Seconds from the first failing measurement of a rolled-back release to traffic back on
/// stable (the active Service was applied before this is called).
fn observe_rollback(ctx: &Context, ar: &AurenRuntime, plan: &Plan, now: Timestamp) {
    let before = ar.status.as_ref().and_then(|s| s.phase);
    if plan.status.phase != Some(Phase::RolledBack) || before == Some(Phase::RolledBack) {
        return;
    }
    let Some(rejected) = plan.status.rejected.as_ref() else {
        return;
    };
    let first_fail = plan
        .status
        .measurements
        .iter()
        .filter(|m| m.revision == rejected.hash && m.verdict == Verdict::Fail)
        .map(|m| m.at.0)
        .min();
    if let Some(at) = first_fail {
        let seconds = now.duration_since(at).as_secs_f64();
        ctx.metrics.rolled_back(seconds);
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(1000).collect()
}

#[cfg(test)]
mod tests;
