//! Evaluating checks: a measured value against fixed bounds and, optionally, the stable
//! release's value over the same window. The threshold is written out as text so status and
//! Events explain each verdict.
//!
//! A failing check is a dependency outage, not the candidate's failure, when the stable release
//! fails it too over the same window and the candidate is not clearly worse than it (within the
//! check's baseline, or the default outage tolerance without one), or when the stable release
//! reports the same dependency down; with no stable release to compare with, when the
//! candidate's own pods report a dependency down. A candidate that fails while the stable
//! release is fine fails, as before. A check with no
//! data while a shared dependency is down (the pods are out of their Services, say) waits for
//! the outage to end too, whatever the no-data policy: its silence says nothing of the release.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{AnalysisSpec, Baseline, Check, Measurement, MetricKind, NoDataPolicy, Verdict};

use super::window::Window;

/// Quantile of `metric: latency` when the check does not set one.
pub const DEFAULT_QUANTILE: f64 = 0.99;

/// How much worse than a failing stable release a candidate may be and still share its outage,
/// when the check sets no baseline: up to this factor of the stable value, or the stable value
/// plus the check's own `max` (whichever is more lenient; below a failed `min`, down to the
/// stable value divided by it). The check's bound is the user's own unit of "a lot": the sum
/// keeps room for sampling noise near the bound (a canary sees a fraction of the requests),
/// the factor for the spread of two releases in one real outage at high values. Stable at 2 %
/// errors with `max` 1 %: up to 3 % is the same outage, 100 % is the candidate's failure.
pub const OUTAGE_FACTOR: f64 = 1.5;

/// What was observed of one revision over one window.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Evidence {
    /// Scrapes of the revision's pods.
    pub window: Window,
    /// Container restarts of the revision's pods (from pod status).
    pub restarts: Option<f64>,
    /// Results of `metric: prometheus` checks, by check name (queried by the controller).
    pub prometheus: BTreeMap<String, f64>,
    /// Dependencies (`kafka`, `database`) the pods' `/health` reports not healthy at the start
    /// or the end of the window (read by the controller).
    pub unhealthy_dependencies: BTreeSet<String>,
}

impl Evidence {
    /// The value a check measures; `None` when there is no data.
    pub fn value(&self, check: &Check) -> Option<f64> {
        let value = match check.metric {
            MetricKind::ErrorRatio => self.window.error_ratio(),
            MetricKind::Latency => self
                .window
                .latency_quantile(check.quantile.unwrap_or(DEFAULT_QUANTILE)),
            MetricKind::ConsumerLag => self.window.consumer_lag(),
            MetricKind::DeadLettered => self.window.dead_lettered(),
            MetricKind::FailedEvents => self.window.failed_events(),
            MetricKind::CircuitBreakerOpen => self.window.breakers_open(),
            MetricKind::Restarts => self.restarts,
            MetricKind::Prometheus => self.prometheus.get(&check.name).copied(),
        };
        value.filter(|v| v.is_finite())
    }

    /// Dependencies reported down: by `/health`, or by an open circuit breaker.
    pub fn dependencies_down(&self) -> BTreeSet<String> {
        let breakers = self.window.open_breakers();
        self.unhealthy_dependencies
            .union(&breakers)
            .cloned()
            .collect()
    }

    /// Evidence to compare with: at least one pod answered.
    fn measured(&self) -> bool {
        !self.window.pods.is_empty()
    }
}

/// Evaluates every check of the analysis for `revision` over one window ending `at`.
pub fn evaluate(
    analysis: &AnalysisSpec,
    revision: &str,
    candidate: &Evidence,
    stable: Option<&Evidence>,
    at: &Time,
) -> Vec<Measurement> {
    analysis
        .checks
        .iter()
        .map(|check| {
            let policy = check.no_data.unwrap_or(analysis.no_data_policy);
            let baseline = stable.and_then(|s| s.value(check));
            let (verdict, threshold) = judge(check, policy, candidate.value(check), baseline);
            let outage = match (verdict, candidate.value(check)) {
                (Verdict::Fail, _) => outage(check, candidate, stable),
                (_, None) => dependency_down(candidate, stable),
                _ => None,
            };
            Measurement {
                check: check.name.clone(),
                revision: revision.to_owned(),
                value: candidate.value(check),
                threshold,
                verdict: outage
                    .as_ref()
                    .map_or(verdict, |_| Verdict::DependencyOutage),
                reason: outage,
                at: at.clone(),
            }
        })
        .collect()
}

/// Why a failing check is an outage of what the release depends on rather than the release's
/// own failure, if it is. The stable release decides when it was measured: the same failure
/// (or the same dependency down) there is an outage, a stable release that is fine makes the
/// failure the candidate's. Without stable evidence, the candidate's own dependency signals.
pub fn outage(check: &Check, candidate: &Evidence, stable: Option<&Evidence>) -> Option<String> {
    (stable.filter(|s| s.measured()))
        .and_then(|stable| stable_fails_too(check, candidate, stable))
        .or_else(|| dependency_down(candidate, stable))
}

/// A dependency the candidate reports down is an outage when the stable release reports it
/// down too, or, with no stable evidence, on the candidate's word alone.
fn dependency_down(candidate: &Evidence, stable: Option<&Evidence>) -> Option<String> {
    match stable.filter(|s| s.measured()) {
        Some(stable) => shared_dependency(candidate, stable),
        None => own_dependency(candidate),
    }
}

/// The stable release breaks the check's fixed bounds too, and the candidate is not clearly
/// worse than it: a candidate clearly worse than the stable release over the same outage fails
/// on its own (an outage of the stable release cannot hide a much worse candidate).
fn stable_fails_too(check: &Check, candidate: &Evidence, stable: &Evidence) -> Option<String> {
    let value = stable.value(check)?;
    let fails =
        check.max.is_some_and(|max| value > max) || check.min.is_some_and(|min| value < min);
    let shares = match candidate.value(check) {
        Some(own) => not_clearly_worse(check, own, value),
        None => true,
    };
    (fails && shares).then(|| {
        format!(
            "dependency outage: the stable release fails it too ({}; the candidate shares it {})",
            fmt(value),
            outage_tolerance(check, value)
        )
    })
}

/// The candidate's value is within what a shared outage explains next to the stable release's
/// failing value: the check's baseline when it has one, otherwise the default tolerance
/// ([`OUTAGE_FACTOR`]).
fn not_clearly_worse(check: &Check, own: f64, stable: f64) -> bool {
    match (&check.baseline, outage_ceiling(check, stable)) {
        (Some(baseline), _) => own <= baseline_limit(baseline, stable),
        (None, Some(ceiling)) => own <= ceiling,
        (None, None) => own >= outage_floor(stable),
    }
}

/// Without a baseline, the highest candidate value one outage explains when the stable
/// release is over the check's `max`; `None` when it is not (it is under `min`).
fn outage_ceiling(check: &Check, stable: f64) -> Option<f64> {
    let max = check.max.filter(|max| stable > *max)?;
    let tolerance = Baseline {
        max_factor: Some(OUTAGE_FACTOR),
        max_increase: Some(max),
    };
    Some(baseline_limit(&tolerance, stable))
}

/// Without a baseline, the lowest candidate value one outage explains when the stable release
/// is under the check's `min` (higher is better there).
fn outage_floor(stable: f64) -> f64 {
    (stable / OUTAGE_FACTOR).min(stable)
}

/// The tolerance as text, for the reason of an outage verdict.
fn outage_tolerance(check: &Check, stable: f64) -> String {
    match (&check.baseline, outage_ceiling(check, stable)) {
        (Some(baseline), _) => format!(
            "up to {} by its baseline",
            fmt(baseline_limit(baseline, stable))
        ),
        (None, Some(ceiling)) => format!("up to {}", fmt(ceiling)),
        (None, None) => format!("down to {}", fmt(outage_floor(stable))),
    }
}

fn shared_dependency(candidate: &Evidence, stable: &Evidence) -> Option<String> {
    let down = stable.dependencies_down();
    let shared: Vec<String> = candidate
        .dependencies_down()
        .intersection(&down)
        .cloned()
        .collect();
    (!shared.is_empty()).then(|| {
        format!(
            "dependency outage: {} down for the stable release too",
            shared.join(", ")
        )
    })
}

fn own_dependency(candidate: &Evidence) -> Option<String> {
    let down: Vec<String> = candidate.dependencies_down().into_iter().collect();
    (!down.is_empty()).then(|| {
        format!(
            "dependency outage: {} down (no stable release to compare with)",
            down.join(", ")
        )
    })
}

/// The verdict of one round: any failure fails it, otherwise a dependency outage makes it one
/// (the rollout waits), otherwise any inconclusive check makes it inconclusive. An empty round
/// is inconclusive: nothing was measured.
pub fn round_verdict(measurements: &[Measurement]) -> Verdict {
    let has = |v| measurements.iter().any(|m| m.verdict == v);
    if has(Verdict::Fail) {
        Verdict::Fail
    } else if has(Verdict::DependencyOutage) {
        Verdict::DependencyOutage
    } else if has(Verdict::Inconclusive) || measurements.is_empty() {
        Verdict::Inconclusive
    } else {
        Verdict::Pass
    }
}

/// The verdict of one check and its threshold as text.
pub fn judge(
    check: &Check,
    policy: NoDataPolicy,
    value: Option<f64>,
    stable: Option<f64>,
) -> (Verdict, String) {
    let mut parts = fixed_bounds(check);
    let Some(value) = value else {
        return (no_data(policy), with_note(parts, "no data"));
    };
    let mut pass =
        check.max.is_none_or(|max| value <= max) && check.min.is_none_or(|min| value >= min);
    if let Some(baseline) = &check.baseline {
        match stable {
            Some(stable) => {
                let limit = baseline_limit(baseline, stable);
                parts.push(format!("<= {} (stable {})", fmt(limit), fmt(stable)));
                pass &= value <= limit;
            }
            None => {
                parts.push("<= stable".into());
                if pass {
                    return (no_data(policy), with_note(parts, "no stable data"));
                }
            }
        }
    }
    (
        if pass { Verdict::Pass } else { Verdict::Fail },
        parts.join(" and "),
    )
}

fn fixed_bounds(check: &Check) -> Vec<String> {
    let max = check.max.map(|max| format!("<= {}", fmt(max)));
    let min = check.min.map(|min| format!(">= {}", fmt(min)));
    max.into_iter().chain(min).collect()
}

/// The most lenient of the limits the baseline sets (with a zero baseline only the additive
/// margin leaves room).
fn baseline_limit(baseline: &Baseline, stable: f64) -> f64 {
    let by_factor = baseline.max_factor.map(|f| stable * f);
    let by_increase = baseline.max_increase.map(|i| stable + i);
    by_factor
        .into_iter()
        .chain(by_increase)
        .fold(stable, f64::max)
}

fn no_data(policy: NoDataPolicy) -> Verdict {
    match policy {
        NoDataPolicy::Fail => Verdict::Fail,
        NoDataPolicy::Inconclusive => Verdict::Inconclusive,
        NoDataPolicy::Ignore => Verdict::Pass,
    }
}

fn with_note(parts: Vec<String>, note: &str) -> String {
    if parts.is_empty() {
        note.to_owned()
    } else {
        format!("{} ({note})", parts.join(" and "))
    }
}

/// Numbers as people read them: up to four decimals, no trailing zeros.
fn fmt(value: f64) -> String {
    let text = format!("{value:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text.is_empty() || text == "-" {
        "0".into()
    } else {
        text.into()
    }
}

#[cfg(test)]
mod tests;
