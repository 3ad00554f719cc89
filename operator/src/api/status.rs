//! The `AurenRuntime` status: where a rollout stands, and why.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Measurements kept in status (the newest).
pub const MAX_MEASUREMENTS: usize = 20;
/// Releases kept in the history (the newest).
pub const MAX_HISTORY: usize = 10;

/// Observed state of an AurenRuntime, written by the operator only.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AurenRuntimeStatus {
    /// Where the rollout stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Machine-readable reason of the phase (also the Reason column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable explanation of the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the current phase began; the anchor of its deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_since: Option<Time>,
    /// The spec generation this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready API pods of the release behind the active Service, as `ready/desired`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// Ready API pods behind the active Service (the `/scale` subresource's status.replicas).
    /// A HorizontalPodAutoscaler counts from the subresource's spec.replicas (`api.replicas`),
    /// not from this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Label selector of the API pods behind the active Service, as text (the `/scale`
    /// subresource's selector: a HorizontalPodAutoscaler reads these pods' metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// The release serving production.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<RevisionRef>,
    /// The release being rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<RevisionRef>,
    /// What `spec.consumer.autoscaler` was last pointed at: `<kind>/<name> -> <release>`
    /// (the release's consumer Deployment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_autoscaler: Option<String>,
    /// The release replaced by the last promotion, kept scaled up until `scaleDownAt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<PreviousRevision>,
    /// A release that was rolled back; it is not tried again unless the spec changes or
    /// `auren.io/retry` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<RevisionRef>,
    /// Which revision each Service selects.
    #[serde(default)]
    pub services: ServiceTargets,
    /// Progress of a canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStatus>,
    /// Counters of the analysis of the current candidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisProgress>,
    /// The last measurements, newest last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurements: Vec<Measurement>,
    /// Promote/abort/retry annotation values already acted on.
    #[serde(default)]
    pub acknowledged: Controls,
    /// Standard conditions: Available, Progressing, InvalidSpec, UnsafeSettings, and with
    /// `spec.consumer.autoscaler` AutoscalerPointed (False while pointing it fails; retried).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The last releases and how they ended, newest last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<ReleaseRecord>,
}

/// Where a rollout stands. `InvalidSpec`: the spec does not validate (the message and the
/// InvalidSpec condition name the field); nothing new starts, and a rollout in flight is rolled
/// back to the stable release (history reason `SpecInvalid`) instead of freezing.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Phase {
    /// The stable release serves everything; nothing is in flight.
    Healthy,
    /// A release is starting (pods becoming ready, canary weights being reached).
    Progressing,
    /// The candidate is being measured.
    Analyzing,
    /// Traffic and consumers are being handed to the candidate.
    Promoting,
    /// Waiting for a human (spec.paused, an indefinite pause, no auto-promotion, inconclusive).
    Paused,
    /// The candidate was rolled back; the stable release is healthy and serves everything.
    RolledBack,
    /// No healthy release serves production.
    Degraded,
    /// The spec is invalid; nothing new starts. A rollout in flight was rolled back to the
    /// stable release (reason `SpecInvalid` in the history).
    InvalidSpec,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Healthy => "Healthy",
            Phase::Progressing => "Progressing",
            Phase::Analyzing => "Analyzing",
            Phase::Promoting => "Promoting",
            Phase::Paused => "Paused",
            Phase::RolledBack => "RolledBack",
            Phase::Degraded => "Degraded",
            Phase::InvalidSpec => "InvalidSpec",
        }
    }
}

/// A release: the hash of its pod template and its image.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct RevisionRef {
    /// Revision hash (label `auren.io/revision`).
    pub hash: String,
    /// Image of the release.
    pub image: String,
}

/// The previous stable release during the scale-down window.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviousRevision {
    /// Revision hash.
    pub hash: String,
    /// Image of the release.
    pub image: String,
    /// When its workloads are scaled down.
    pub scale_down_at: Time,
}

/// Which revision each Service selects.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
pub struct ServiceTargets {
    /// Revision behind the active (production) Service; `*` means a canary's stable and
    /// candidate releases (their API pods, labelled `auren.io/canary-<candidate>: <stable>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub active: Option<ActiveSelection>,
    /// Revision behind the preview Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
}

impl ServiceTargets {
    /// The one release behind the active Service (None during a canary, or before any).
    pub fn active_release(&self) -> Option<&str> {
        self.active.as_ref().and_then(ActiveSelection::release)
    }

    /// `status.services.active` as written: a release's hash, or `*`.
    pub fn active_text(&self) -> Option<&str> {
        self.active.as_ref().map(ActiveSelection::as_str)
    }
}

/// What the active Service selects: one release, or during a canary its stable and candidate
/// releases together. Written in status as the release's hash, or as `*` for the canary's two.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(from = "String", into = "String")]
pub enum ActiveSelection {
    Release(String),
    CanaryReleases,
}

impl ActiveSelection {
    /// How a canary's two releases are written.
    pub const CANARY_RELEASES: &'static str = "*";

    pub fn release(&self) -> Option<&str> {
        match self {
            ActiveSelection::Release(hash) => Some(hash),
            ActiveSelection::CanaryReleases => None,
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            ActiveSelection::Release(hash) => hash,
            ActiveSelection::CanaryReleases => Self::CANARY_RELEASES,
        }
    }
}

impl From<String> for ActiveSelection {
    fn from(text: String) -> Self {
        if text == Self::CANARY_RELEASES {
            ActiveSelection::CanaryReleases
        } else {
            ActiveSelection::Release(text)
        }
    }
}

impl From<ActiveSelection> for String {
    fn from(selection: ActiveSelection) -> Self {
        selection.as_str().to_owned()
    }
}

/// Progress of a canary.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    /// Index of the step being run (equal to the number of steps once all passed).
    pub current_step: i32,
    /// When the current step began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_since: Option<Time>,
    /// Percent of API pods the current step asks for.
    pub requested_weight: i32,
    /// Percent of ready API pods behind the active Service that run the candidate.
    pub actual_weight: i32,
}

/// Counters of the analysis of the current candidate (or the current analysis step).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisProgress {
    /// Revision under analysis.
    pub revision: String,
    /// When the analysis began (after the candidate was ready).
    pub started_at: Time,
    /// Passing measurements.
    pub successes: i32,
    /// Failed measurements.
    pub failures: i32,
    /// Failed measurements in a row.
    pub consecutive_failures: i32,
    /// Inconclusive measurements.
    pub inconclusive: i32,
    /// Measurements not counted because a dependency was down for the stable release too (or,
    /// with no stable to compare with, for the measured pods themselves).
    #[serde(default)]
    pub dependency_outages: i32,
    /// Start of the window of the first of the newest dependency-outage measurements in a row
    /// (unset once a passing or failing one ends them): how long an outage has held the
    /// release, bounded by `analysis.maxLiveOutageSeconds` while it carries live traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outage_since: Option<Time>,
    /// Time of the newest measurement counted; older ones are never counted twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_measured_at: Option<Time>,
    /// When the analysis passed (blue/green auto-promotion counts from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed_at: Option<Time>,
}

impl AnalysisProgress {
    /// The counters of an analysis of `revision` beginning `at`: nothing measured yet.
    pub fn begin(revision: &str, at: Time) -> Self {
        Self {
            revision: revision.to_owned(),
            started_at: at,
            successes: 0,
            failures: 0,
            consecutive_failures: 0,
            inconclusive: 0,
            dependency_outages: 0,
            outage_since: None,
            last_measured_at: None,
            passed_at: None,
        }
    }
}

/// One check evaluated over one window.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    /// Name of the check.
    pub check: String,
    /// Revision measured.
    pub revision: String,
    /// The measured value (absent when there was no data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The threshold it was compared with, as text (`<= 0.01`, `<= 1.2 × stable (0.004)`).
    pub threshold: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Why the verdict is not the threshold's alone: for `DependencyOutage`, what the outage is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the window ended.
    pub at: Time,
}

/// Verdict of one check.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Verdict {
    Pass,
    Fail,
    Inconclusive,
    /// Inconclusive (dependency outage): the check fails, but the stable release fails it too
    /// over the same window, or the pods report Kafka/PostgreSQL down or their circuit breaker
    /// open. Counted neither as a failure nor as a success: the rollout waits.
    DependencyOutage,
}

/// Annotation values the operator has acted on, so each is acted on once.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
pub struct Controls {
    /// Last `auren.io/promote` value acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote: Option<String>,
    /// Last `auren.io/abort` value acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<String>,
    /// Last `auren.io/retry` value acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<String>,
}

/// A release and how it ended.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ReleaseRecord {
    /// Revision hash.
    pub hash: String,
    /// Image of the release.
    pub image: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Why (the reason of the deciding transition).
    pub reason: String,
    /// When.
    pub at: Time,
}

/// How a release ended.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Outcome {
    Promoted,
    RolledBack,
    Superseded,
}

#[cfg(test)]
mod active_selection_tests {
    use super::*;

    #[test]
    fn the_active_selection_is_written_as_a_hash_or_a_star() {
        let canary: ServiceTargets = serde_json::from_str(r#"{"active":"*"}"#).unwrap();
        assert_eq!(canary.active, Some(ActiveSelection::CanaryReleases));
        assert_eq!(canary.active_release(), None);
        let one: ServiceTargets = serde_json::from_str(r#"{"active":"a1b2c3d4e5"}"#).unwrap();
        assert_eq!(one.active_release(), Some("a1b2c3d4e5"));
        for text in [r#"{"active":"*"}"#, r#"{"active":"a1b2c3d4e5"}"#, "{}"] {
            let read: ServiceTargets = serde_json::from_str(text).unwrap();
            assert_eq!(serde_json::to_string(&read).unwrap(), text);
        }
    }
}
