//! How a release rolls out: blue/green or canary steps.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{DURATION_PATTERN, defaults};

/// The release strategy: at most one of `blueGreen` and `canary`; blue/green when both are empty.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = super::cel::strategy)]
pub struct StrategySpec {
    /// Blue/green: the candidate runs beside the stable release behind a preview Service, is
    /// analysed, then the active Service switches to it in one step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenSpec>,
    /// Canary: traffic moves to the candidate in steps (by replica counts behind the active
    /// Service), each step optionally paused or analysed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanarySpec>,
}

/// Blue/green settings.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenSpec {
    /// API pods of the candidate while it is previewed; `api.replicas` when unset. It is scaled
    /// to `api.replicas` before the switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub preview_replicas: Option<i32>,
    /// Promote by itself once analysis passes. When false the rollout pauses (reason
    /// AwaitingPromotion) until annotated `auren.io/promote`.
    #[serde(default = "defaults::yes")]
    pub auto_promotion: bool,
    /// Seconds to wait after analysis passed before promoting by itself.
    #[serde(default)]
    #[schemars(range(min = 0, max = 86400))]
    pub auto_promotion_seconds: i32,
    /// Seconds the previous stable release stays scaled up after a promotion, so a rollback
    /// within that window is instant.
    #[serde(default = "defaults::scale_down_delay_seconds")]
    #[schemars(range(min = 0, max = 86400))]
    pub scale_down_delay_seconds: i32,
}

/// Canary settings.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanarySpec {
    /// The steps, run in order. When the last one passes the candidate becomes stable.
    #[schemars(length(min = 1, max = 50))]
    pub steps: Vec<CanaryStep>,
    /// How the consumers follow the canary.
    #[serde(default)]
    pub consumers: CanaryConsumers,
    /// Seconds the previous stable release stays scaled up after the promotion.
    #[serde(default = "defaults::scale_down_delay_seconds")]
    #[schemars(range(min = 0, max = 86400))]
    pub scale_down_delay_seconds: i32,
}

/// How canary consumers take over.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CanaryConsumers {
    /// The candidate's consumers stay on standby until the end, then take over like blue/green.
    #[default]
    Handover,
    /// The candidate's share of consumer group members follows the traffic weight; Kafka's group
    /// protocol gives each partition to one member at a time.
    PartitionShare,
}

/// One canary step: exactly one of `setWeight`, `pause`, `analysis`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = super::cel::canary_step)]
pub struct CanaryStep {
    /// Percent of the active Service's API pods that run the candidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub set_weight: Option<i32>,
    /// Wait: for `duration`, or until promoted when no duration is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<PauseStep>,
    /// Run the analysis checks now, for `count` measurements or for `duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisStep>,
}

/// A pause step.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[schemars(transform = super::cel::pause_step)]
pub struct PauseStep {
    /// How long to wait (`30s`, `5m`); indefinite (until promoted) when unset. At most `8760h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub duration: Option<String>,
}

/// An analysis step.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[schemars(transform = super::cel::analysis_step)]
pub struct AnalysisStep {
    /// Number of passing measurements that complete the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub count: Option<i32>,
    /// How long to measure; the step passes if no limit was reached by then. At most `8760h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub duration: Option<String>,
}

impl Default for BlueGreenSpec {
    fn default() -> Self {
        Self {
            preview_replicas: None,
            auto_promotion: true,
            auto_promotion_seconds: 0,
            scale_down_delay_seconds: defaults::scale_down_delay_seconds(),
        }
    }
}
