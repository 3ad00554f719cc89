//! What the controller observed (the input of a decision) and what it should make true (the
//! output). Both are plain data: the controller fills [`Observed`] from its caches and applies
//! [`Plan`] with server-side apply.

use std::collections::BTreeMap;
use std::time::Duration;

use auren_contract::ConsumerRole;
use k8s_openapi::jiff::Timestamp;

use crate::api::{ActiveSelection, AurenRuntimeSpec, AurenRuntimeStatus, Measurement, RevisionRef};

/// Everything a decision depends on.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    pub spec: &'a AurenRuntimeSpec,
    /// `metadata.generation`.
    pub generation: i64,
    /// `metadata.annotations` (for `auren.io/promote|abort|retry`).
    pub annotations: &'a BTreeMap<String, String>,
    /// The status as last written (default when none).
    pub status: &'a AurenRuntimeStatus,
    /// The revision the spec asks for (`revision::of(spec)`).
    pub desired: RevisionRef,
    /// The workloads that exist, one entry per revision.
    pub releases: &'a [ReleaseState],
    /// Measurements evaluated since the last decision (older ones are ignored).
    pub measurements: &'a [Measurement],
    pub now: Timestamp,
}

impl Observed<'_> {
    /// The observed workloads of release `hash` (none observed: empty).
    pub fn release(&self, hash: &str) -> ReleaseState {
        let found = self.releases.iter().find(|r| r.revision == hash);
        found.cloned().unwrap_or_else(|| ReleaseState {
            revision: hash.to_owned(),
            ..Default::default()
        })
    }
}

/// The observed workloads of one revision.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReleaseState {
    pub revision: String,
    pub api: PodSet,
    pub consumer: PodSet,
    /// Roles reported by the revision's consumer pods (`GET /admin/consumer/role`).
    pub roles: RoleCounts,
}

/// The observed pods of one Deployment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodSet {
    /// `spec.replicas` of the Deployment.
    pub desired: i32,
    /// Pods that are ready (their readiness gate included).
    pub ready: i32,
    /// Container restarts summed over the pods.
    pub restarts: i32,
    /// A pod is in CrashLoopBackOff (or exited with an error repeatedly).
    pub crash_looping: bool,
    /// Why pods cannot start (`ImagePullBackOff`, `CreateContainerConfigError`), if they can't.
    pub waiting_reason: Option<String>,
}

/// Roles of a revision's running consumer pods. A pod whose role could not be read (admin API
/// unreachable, terminating) is `unknown`: it is never taken as standby.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoleCounts {
    pub active: i32,
    pub standby: i32,
    pub unknown: i32,
}

impl RoleCounts {
    /// No pod of the revision can be consuming.
    pub fn confirmed_standby(&self) -> bool {
        self.active == 0 && self.unknown == 0
    }

    /// Every pod (at least `replicas`) is consuming.
    pub fn confirmed_active(&self, replicas: i32) -> bool {
        self.standby == 0 && self.unknown == 0 && self.active >= replicas
    }
}

/// The decision: the next status, the world to make true and what to tell people.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Write it only if it differs (see `resources::status_patch`).
    pub status: AurenRuntimeStatus,
    /// `None`: change nothing (invalid spec, `spec.paused`).
    pub world: Option<World>,
    /// Events for the transitions of this decision.
    pub events: Vec<Event>,
    /// Reconcile again after this long even if nothing changes (deadlines, analysis).
    pub requeue_after: Duration,
    /// What to tell the configured notification receiver once `status` is written.
    pub notice: Option<super::Notice>,
}

/// The desired workloads, Services and consumer roles.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct World {
    /// Workloads that must exist, with their replicas.
    pub releases: Vec<ReleasePlan>,
    /// Observed revisions whose workloads are deleted.
    pub delete: Vec<String>,
    /// What the active (production) Service selects.
    pub active: ServiceTarget,
    /// What the preview Service selects.
    pub preview: ServiceTarget,
    /// Consumer role switches, in order. Run them one after the other and stop at the first
    /// that fails; an `Active` switch is only ever planned once every other revision is
    /// confirmed standby.
    pub role_switches: Vec<RoleSwitch>,
    /// Scrape and evaluate this revision now (its window began at the previous scrape).
    pub analyze: Option<AnalysisRequest>,
    /// Point `spec.consumer.autoscaler` at this revision's consumer Deployment (the stable
    /// release changed since it was last pointed).
    pub retarget_autoscaler: Option<String>,
}

/// One revision's workloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleasePlan {
    pub revision: RevisionRef,
    pub api_replicas: i32,
    pub consumer_replicas: i32,
}

/// What a Service selects.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ServiceTarget {
    /// Nothing yet (no release exists).
    #[default]
    Nothing,
    /// The API pods of one revision.
    Revision(String),
    /// A canary: the API pods of its stable release and of its candidate, and no other (the
    /// previous release may still be up for its scale-down delay). A canary's weight is the
    /// ratio of their pods.
    Canary(CanaryPair),
}

/// The two releases of a canary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryPair {
    pub stable: String,
    pub candidate: String,
}

impl ServiceTarget {
    /// What the active Service selects according to `st` (`status.services.active`; `*` is
    /// the canary of `status.stable` and `status.candidate`).
    pub fn active_of(st: &AurenRuntimeStatus) -> Self {
        match &st.services.active {
            Some(ActiveSelection::CanaryReleases) => match (&st.stable, &st.candidate) {
                (Some(stable), Some(candidate)) => ServiceTarget::Canary(CanaryPair {
                    stable: stable.hash.clone(),
                    candidate: candidate.hash.clone(),
                }),
                _ => ServiceTarget::Nothing,
            },
            Some(ActiveSelection::Release(hash)) => ServiceTarget::Revision(hash.to_owned()),
            None => ServiceTarget::Nothing,
        }
    }

    /// As written in status (`*` for a canary's two releases).
    pub fn as_status(&self) -> Option<ActiveSelection> {
        match self {
            ServiceTarget::Nothing => None,
            ServiceTarget::Revision(hash) => Some(ActiveSelection::Release(hash.clone())),
            ServiceTarget::Canary(_) => Some(ActiveSelection::CanaryReleases),
        }
    }

    /// The one revision selected (None for nothing, or a canary's two).
    pub fn revision(&self) -> Option<String> {
        match self {
            ServiceTarget::Revision(hash) => Some(hash.clone()),
            ServiceTarget::Nothing | ServiceTarget::Canary(_) => None,
        }
    }
}

/// Switch the consumer pods of a revision (`PUT /admin/consumer/role`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSwitch {
    pub revision: String,
    pub role: ConsumerRole,
}

/// Measure `candidate` (and `baseline` over the same window, when a check compares).
#[derive(Debug, Clone, PartialEq, Eq)]
///
/// The controller keeps the last scrape of each revision's pods as the start of the next
/// window: with no start scrape it takes one and waits; once the start is `interval` old it
/// scrapes again, evaluates (`analysis::evaluate`) and passes the measurements to the next
/// decision, the end scrape becoming the next start.
pub struct AnalysisRequest {
    pub candidate: String,
    pub baseline: Option<String>,
    pub interval: Duration,
}

/// A Kubernetes Event to emit on the AurenRuntime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// CamelCase reason (`Promoted`, `RolledBack`, `AnalysisFailed`, …).
    pub reason: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Normal,
    Warning,
}
