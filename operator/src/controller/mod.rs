//! The controller: the only place the operator talks to the API server and to pods. One
//! reconcile reads the world, asks the pure `rollout::decide` what to do and does it:
//!
//! read (AurenRuntime, Deployments, pods, consumer roles) → measure (when the last plan asked)
//! → decide → apply (Deployments, deletions, Services, role switches) → readiness gates →
//! Events → status (only when changed) → requeue.

mod apply;
pub mod lease;
mod measure;
mod observe;
mod pod_api;
pub mod prometheus;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use auren_contract::ConsumerRole;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};

use crate::api::{AurenRuntime, Phase, Verdict};
use crate::metrics::Metrics;
use crate::resources::{
    self, APP_NAME, LABEL_INSTANCE, LABEL_NAME, MANAGER, ResourceError, instance_labels,
};
use crate::revision::{self, RevisionError};
use crate::rollout::{self, EventKind, Observed, Plan};

use measure::Windows;
use observe::Cluster;

/// Requeue after a failed reconcile.
const ERROR_REQUEUE: Duration = Duration::from_secs(5);
/// Requeue after consumer role switches, to observe their outcome.
const SWITCH_REQUEUE: Duration = Duration::from_millis(500);
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
}

impl Context {
    pub fn new(client: Client, metrics: Arc<Metrics>, identity: &str) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: Some(identity.to_owned()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            http: reqwest::Client::new(),
            metrics,
            windows: Windows::default(),
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
    let client = ctx.client.clone();
    let children = watcher::Config::default().labels(&format!("{LABEL_NAME}={APP_NAME}"));
    let ns = namespace.as_deref();
    Controller::new(
        scoped::<AurenRuntime>(&client, ns),
        watcher::Config::default(),
    )
    .owns(scoped::<Deployment>(&client, ns), children.clone())
    .owns(scoped::<Service>(&client, ns), children.clone())
    .watches(scoped::<Pod>(&client, ns), children, owner_of_pod)
    .with_config(controller::Config::default().debounce(Duration::from_millis(300)))
    .graceful_shutdown_on(stop)
    .run(reconcile, error_policy, ctx)
    .for_each(|result| async move {
        if let Err(e) = result {
            tracing::debug!(error = %e, "controller");
        }
    })
    .await;
}

/// Pods belong to ReplicaSets; their instance label names the AurenRuntime.
fn owner_of_pod(pod: Pod) -> Option<ObjectRef<AurenRuntime>> {
    let name = pod.labels().get(LABEL_INSTANCE)?;
    let ns = pod.namespace()?;
    Some(ObjectRef::new(name).within(&ns))
}

async fn reconcile(ar: Arc<AurenRuntime>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_once(&ar, &ctx).await;
    let error = result.as_ref().err().map(Error::reason);
    ctx.metrics.reconciled(started.elapsed(), error);
    result
}

fn error_policy(ar: Arc<AurenRuntime>, error: &Error, ctx: Arc<Context>) -> Action {
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

async fn reconcile_once(ar: &AurenRuntime, ctx: &Context) -> Result<Action, Error> {
    let ns = ar
        .namespace()
        .ok_or(Error::ResourceInvalid(ResourceError::MissingNamespace))?;
    let key = format!("{ns}/{}", ar.name_any());
    let token = admin_token(ctx, ar, &ns).await?;
    let cluster = observe::read(ctx, ar, &ns, &token).await?;
    let now = Timestamp::now();
    let measurements = ctx
        .windows
        .measure(&ctx.http, &key, &ar.spec, &cluster, now)
        .await;
    ctx.metrics.measured(&measurements);
    let deciding = std::time::Instant::now();
    let plan = decide(ar, &cluster, &measurements, now)?;
    ctx.metrics.decided(deciding.elapsed());
    let mut outcome = Ok(());
    if let Some(world) = &plan.world {
        let desired = revision::of(&ar.spec)?;
        apply::workloads(ctx, ar, &ns, &desired, world, &cluster).await?;
        outcome = apply::role_switches(ctx, &cluster, &token, &world.role_switches).await;
    }
    apply::readiness_gates(ctx, &ns, &cluster).await?;
    publish(ctx, ar, &plan).await;
    write_status(ctx, ar, &ns, &plan).await?;
    observe_rollback(ctx, ar, &plan, now);
    let analyze = plan.world.as_ref().and_then(|w| w.analyze.as_ref());
    ctx.windows
        .track(&ctx.http, &key, &ar.spec, analyze, &cluster, now)
        .await;
    ctx.metrics.phase(&key, plan.status.phase);
    outcome?;
    Ok(Action::requeue(requeue_after(ctx, &key, &plan)))
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
    Ok(rollout::decide(&Observed {
        spec: &ar.spec,
        generation: ar.metadata.generation.unwrap_or(0),
        annotations: &annotations,
        status: &status,
        desired: revision::of(&ar.spec)?,
        releases: &releases,
        measurements,
        now,
    }))
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

async fn write_status(
    ctx: &Context,
    ar: &AurenRuntime,
    ns: &str,
    plan: &Plan,
) -> Result<(), Error> {
    let Some(body) = resources::status_patch(ar.status.as_ref(), &plan.status)? else {
        return Ok(());
    };
    Api::<AurenRuntime>::namespaced(ctx.client.clone(), ns)
        .patch_status(
            &ar.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(Error::StatusWriteFailed)?;
    Ok(())
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

/// The admin token the runtime pods use; the operator-managed Secret is created when missing.
async fn admin_token(ctx: &Context, ar: &AurenRuntime, ns: &str) -> Result<String, Error> {
    let reference = resources::admin_token_ref(ar);
    let api = Api::<Secret>::namespaced(ctx.client.clone(), ns);
    let unavailable = |detail: String| Error::AdminTokenUnavailable {
        name: reference.name.clone(),
        detail,
    };
    let found = api
        .get_opt(&reference.name)
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let secret = match found {
        Some(secret) => secret,
        None if ar.spec.connections.admin_token.is_none() => {
            create_token_secret(&api, ar, &reference.name)
                .await
                .map_err(|e| unavailable(e.to_string()))?
        }
        None => return Err(unavailable("not found".into())),
    };
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&reference.key))
        .ok_or_else(|| unavailable(format!("no key {}", reference.key)))?;
    String::from_utf8(value.0.clone()).map_err(|_| unavailable("the token is not UTF-8".into()))
}

async fn create_token_secret(
    api: &Api<Secret>,
    ar: &AurenRuntime,
    name: &str,
) -> Result<Secret, kube::Error> {
    use rand::distr::{Alphanumeric, SampleString};
    let token = Alphanumeric.sample_string(&mut rand::rng(), TOKEN_LEN);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(instance_labels(ar)),
            owner_references: ar.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        string_data: Some(BTreeMap::from([(
            resources::ADMIN_TOKEN_KEY.to_owned(),
            token,
        )])),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &secret).await {
        // Another reconcile (or replica) created it first: use theirs.
        Err(kube::Error::Api(s)) if s.code == 409 => api.get(name).await,
        other => other,
    }
}
