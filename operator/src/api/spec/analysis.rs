//! How a candidate is measured and judged: the checks, their thresholds and baselines.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{DURATION_PATTERN, defaults};

/// The analysis of a candidate.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = super::cel::analysis)]
pub struct AnalysisSpec {
    /// Time between two measurements (the window each measurement covers). At most `8760h`.
    #[serde(default = "defaults::interval")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub interval: String,
    /// Time to wait after the candidate is ready before the first measurement. At most `8760h`.
    #[serde(default = "defaults::zero_duration")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub initial_delay: String,
    /// The checks; each measurement evaluates all of them.
    #[serde(default = "defaults::checks")]
    #[schemars(length(max = 32), transform = super::cel::keyed_by_name)]
    pub checks: Vec<Check>,
    /// Passing measurements needed before the candidate is promoted (blue/green).
    #[serde(default = "defaults::successful_measurements")]
    #[schemars(range(min = 1, max = 1000))]
    pub successful_measurements_to_promote: i32,
    /// Failed measurements (in total) that roll the candidate back.
    #[serde(default = "defaults::failure_limit")]
    #[schemars(range(min = 1, max = 1000))]
    pub failure_limit: i32,
    /// Failed measurements in a row that roll the candidate back.
    #[serde(default = "defaults::consecutive_failure_limit")]
    #[schemars(range(min = 1, max = 1000))]
    pub consecutive_failure_limit: i32,
    /// What a check without data means, unless the check says otherwise.
    #[serde(default)]
    pub no_data_policy: NoDataPolicy,
    /// Seconds dependency-outage measurements in a row may hold a release that carries live
    /// traffic before it is rolled back: a canary at a weight above 0 (reason
    /// `DependencyOutageLimit`), or a new stable release in its post-promotion watch
    /// (`PostPromotionFailure`; while an outage holds the watch the previous release is kept
    /// up past the scale-down delay, so the watch does not end blind). Counted from the start
    /// of the first outage window; a passing or failing measurement ends the count. Without
    /// live traffic (blue/green preview, a canary at weight 0) the analysis keeps waiting,
    /// until its deadline. The operator cannot tell an outage the candidate causes (it floods
    /// the database and the stable release then fails too) from one that begins with it by
    /// chance: with live traffic this bound rolls back either, which ends the first and costs
    /// a retry of the second. A candidate clearly worse than a failing stable release is not an
    /// outage at all (see `checks[].baseline`).
    #[serde(default = "defaults::max_live_outage_seconds")]
    #[schemars(range(min = 1, max = 86400))]
    pub max_live_outage_seconds: i32,
}

/// One check of a measurement.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = super::cel::check)]
pub struct Check {
    /// Name shown in status and Events.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// What is measured.
    pub metric: MetricKind,
    /// Quantile of the latency histogram for `metric: latency` (default 0.99).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub quantile: Option<f64>,
    /// The query for `metric: prometheus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusQuery>,
    /// The measured value must be at most this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// The measured value must be at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Compare with the stable pods measured over the same window (lower is better). It also
    /// says how much worse than a stable release that fails the check's `max`/`min` too the
    /// candidate may be and still share its dependency outage. Unset: the default outage
    /// tolerance, up to 1.5 × the stable value or the stable value + `max` (whichever is more;
    /// under a failed `min`, down to the stable value / 1.5). Stable at 2 % errors with
    /// `max: 0.01`: a candidate up to 3 % waits for the outage, one at 100 % fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
    /// What no data means for this check; the analysis' `noDataPolicy` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_data: Option<NoDataPolicy>,
}

/// The metric a check measures over one interval, summed over the candidate's pods.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum MetricKind {
    /// Share of HTTP responses with status 5xx (0.0 to 1.0).
    ErrorRatio,
    /// A latency quantile in seconds from the request duration histogram (`quantile`).
    Latency,
    /// Consumer lag in records (sum over partitions, at the end of the window).
    ConsumerLag,
    /// Records sent to the dead-letter topic during the window.
    DeadLettered,
    /// Events that failed (produce or store errors) during the window.
    FailedEvents,
    /// Number of circuit breakers open at the end of the window.
    CircuitBreakerOpen,
    /// Container restarts of the candidate's pods since they started.
    Restarts,
    /// The first sample of a PromQL query (`prometheus`).
    Prometheus,
}

/// A PromQL query against a Prometheus server.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct PrometheusQuery {
    /// Base URL of the Prometheus HTTP API, for example `http://prometheus.monitoring:9090`.
    #[schemars(regex(pattern = r"^https?://[^\s]+$"))]
    pub address: String,
    /// An instant query returning one sample; `{{revision}}` is replaced by the candidate's
    /// revision hash.
    #[schemars(length(min = 1, max = 4096))]
    pub query: String,
}

/// Comparison with the stable release over the same window; set one or both.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = super::cel::baseline)]
pub struct Baseline {
    /// Candidate ≤ stable × maxFactor (for example 1.2 for "p99 at most 20 % worse").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1.0, max = 1000.0))]
    pub max_factor: Option<f64>,
    /// Candidate ≤ stable + maxIncrease, in the metric's unit (for errorRatio 0.005 is half a
    /// percentage point).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub max_increase: Option<f64>,
}

/// What a check without data means.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum NoDataPolicy {
    /// No data is a failed measurement.
    Fail,
    /// No data makes the measurement inconclusive: the rollout pauses for a human.
    Inconclusive,
    /// No data is skipped; the other checks decide.
    #[default]
    Ignore,
}

impl Default for AnalysisSpec {
    fn default() -> Self {
        Self {
            interval: defaults::interval(),
            initial_delay: defaults::zero_duration(),
            checks: defaults::checks(),
            successful_measurements_to_promote: defaults::successful_measurements(),
            failure_limit: defaults::failure_limit(),
            consecutive_failure_limit: defaults::consecutive_failure_limit(),
            no_data_policy: NoDataPolicy::default(),
            max_live_outage_seconds: defaults::max_live_outage_seconds(),
        }
    }
}
