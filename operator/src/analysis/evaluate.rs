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
mod tests {
    use super::*;
    use crate::analysis::exposition::parse;
    use crate::analysis::window::PodWindow;

    fn check(metric: MetricKind, max: Option<f64>, baseline: Option<Baseline>) -> Check {
        Check {
            name: "c".into(),
            metric,
            quantile: None,
            prometheus: None,
            max,
            min: None,
            baseline,
            no_data: None,
        }
    }

    fn factor(f: f64) -> Option<Baseline> {
        Some(Baseline {
            max_factor: Some(f),
            max_increase: None,
        })
    }

    #[test]
    fn judge_table() {
        use NoDataPolicy::{Fail as NoDataFail, Ignore, Inconclusive as Ask};
        use Verdict::{Fail, Inconclusive, Pass};
        let er = check(MetricKind::ErrorRatio, Some(0.01), None);
        let rel = check(MetricKind::Latency, None, factor(1.2));
        let both = check(
            MetricKind::ErrorRatio,
            Some(0.05),
            Some(Baseline {
                max_factor: Some(2.0),
                max_increase: Some(0.005),
            }),
        );
        let with_min = Check {
            min: Some(10.0),
            ..check(MetricKind::Prometheus, None, None)
        };
        type Case<'a> = (
            &'a str,
            &'a Check,
            NoDataPolicy,
            Option<f64>,
            Option<f64>,
            Verdict,
            &'a str,
        );
        let cases: Vec<Case> = vec![
            ("under max", &er, Ignore, Some(0.005), None, Pass, "<= 0.01"),
            ("at max", &er, Ignore, Some(0.01), None, Pass, "<= 0.01"),
            ("over max", &er, Ignore, Some(0.2), None, Fail, "<= 0.01"),
            (
                "under min",
                &with_min,
                Ignore,
                Some(3.0),
                None,
                Fail,
                ">= 10",
            ),
            (
                "no data ignored",
                &er,
                Ignore,
                None,
                None,
                Pass,
                "<= 0.01 (no data)",
            ),
            (
                "no data fails",
                &er,
                NoDataFail,
                None,
                None,
                Fail,
                "<= 0.01 (no data)",
            ),
            (
                "no data inconclusive",
                &er,
                Ask,
                None,
                None,
                Inconclusive,
                "<= 0.01 (no data)",
            ),
            (
                "within factor",
                &rel,
                NoDataFail,
                Some(0.11),
                Some(0.1),
                Pass,
                "<= 0.12 (stable 0.1)",
            ),
            (
                "beyond factor",
                &rel,
                NoDataFail,
                Some(0.13),
                Some(0.1),
                Fail,
                "<= 0.12 (stable 0.1)",
            ),
            (
                "no stable data",
                &rel,
                Ask,
                Some(0.13),
                None,
                Inconclusive,
                "<= stable (no stable data)",
            ),
            (
                "zero baseline uses the margin",
                &both,
                NoDataFail,
                Some(0.004),
                Some(0.0),
                Pass,
                "<= 0.05 and <= 0.005 (stable 0)",
            ),
            (
                "three times the baseline",
                &both,
                NoDataFail,
                Some(0.03),
                Some(0.01),
                Fail,
                "<= 0.05 and <= 0.02 (stable 0.01)",
            ),
            (
                "fixed bound still applies",
                &both,
                NoDataFail,
                Some(0.06),
                Some(0.05),
                Fail,
                "<= 0.05 and <= 0.1 (stable 0.05)",
            ),
        ];
        for (name, check, policy, value, stable, verdict, threshold) in cases {
            assert_eq!(
                judge(check, policy, value, stable),
                (verdict, threshold.to_owned()),
                "{name}"
            );
        }
    }

    fn evidence(end: &str, restarts: Option<f64>) -> Evidence {
        let pod = PodWindow {
            start: None,
            end: parse(end).unwrap(),
        };
        Evidence {
            window: Window { pods: vec![pod] },
            restarts,
            ..Evidence::default()
        }
    }

    #[test]
    fn evaluate_uses_each_checks_policy_and_the_baseline() {
        let mut analysis = AnalysisSpec::default();
        analysis
            .checks
            .push(check(MetricKind::ErrorRatio, None, factor(2.0)));
        analysis.checks[2].name = "vs-stable".into();
        analysis.checks.push(Check {
            name: "lag".into(),
            no_data: Some(NoDataPolicy::Fail),
            ..check(MetricKind::ConsumerLag, Some(100.0), None)
        });
        let line = |ok: u32, bad: u32| {
            format!(
                "auren_runtime_http_requests_total{{status=\"200\"}} {ok}\n\
                 auren_runtime_http_requests_total{{status=\"500\"}} {bad}\n"
            )
        };
        let candidate = evidence(&line(97, 3), Some(0.0));
        let stable = evidence(&line(99, 1), Some(0.0));
        let at = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let result = evaluate(&analysis, "abc", &candidate, Some(&stable), &at);
        let verdicts: Vec<_> = result
            .iter()
            .map(|m| (m.check.as_str(), m.verdict))
            .collect();
        assert_eq!(
            verdicts,
            vec![
                ("error-ratio", Verdict::Fail),
                ("restarts", Verdict::Pass),
                ("vs-stable", Verdict::Fail),
                ("lag", Verdict::Fail),
            ]
        );
        assert_eq!(result[0].value, Some(0.03));
        assert_eq!(result[0].revision, "abc");
        assert_eq!(result[3].threshold, "<= 100 (no data)");
        assert_eq!(round_verdict(&result), Verdict::Fail);
    }

    #[test]
    fn round_verdict_table() {
        let m = |verdict| Measurement {
            check: "c".into(),
            revision: "r".into(),
            value: None,
            threshold: String::new(),
            verdict,
            reason: None,
            at: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        };
        assert_eq!(
            round_verdict(&[m(Verdict::Pass), m(Verdict::Pass)]),
            Verdict::Pass
        );
        assert_eq!(
            round_verdict(&[m(Verdict::Pass), m(Verdict::Inconclusive)]),
            Verdict::Inconclusive
        );
        assert_eq!(
            round_verdict(&[m(Verdict::Inconclusive), m(Verdict::Fail)]),
            Verdict::Fail
        );
        assert_eq!(round_verdict(&[]), Verdict::Inconclusive);
        use Verdict::{DependencyOutage, Fail, Inconclusive, Pass};
        assert_eq!(
            round_verdict(&[m(DependencyOutage), m(Fail)]),
            Fail,
            "a failure outweighs an outage"
        );
        assert_eq!(
            round_verdict(&[m(Pass), m(DependencyOutage)]),
            DependencyOutage
        );
        assert_eq!(
            round_verdict(&[m(Inconclusive), m(DependencyOutage)]),
            DependencyOutage,
            "no data during an outage waits for it instead of asking a human"
        );
    }

    /// Evidence of one revision whose `metric: prometheus` check `c` measured `value`, from
    /// pods that answered (`answered`) and report `down` unhealthy in `/health`.
    fn measured(value: Option<f64>, answered: bool, down: &[&str]) -> Evidence {
        let pods = if answered {
            vec![PodWindow::default()]
        } else {
            Vec::new()
        };
        Evidence {
            window: Window { pods },
            prometheus: value.into_iter().map(|v| ("c".to_owned(), v)).collect(),
            unhealthy_dependencies: down.iter().map(|d| (*d).to_owned()).collect(),
            ..Evidence::default()
        }
    }

    fn analysis_of(check: Check, policy: NoDataPolicy) -> AnalysisSpec {
        AnalysisSpec {
            checks: vec![check],
            no_data_policy: policy,
            ..AnalysisSpec::default()
        }
    }

    fn verdict_of(
        check: &Check,
        policy: NoDataPolicy,
        candidate: &Evidence,
        stable: Option<&Evidence>,
    ) -> (Verdict, Option<String>) {
        let at = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let analysis = analysis_of(check.clone(), policy);
        let m = evaluate(&analysis, "r", candidate, stable, &at).remove(0);
        (m.verdict, m.reason)
    }

    #[test]
    fn verdict_table_candidate_and_stable() {
        use Verdict::{DependencyOutage, Fail, Pass};
        let er = check(MetricKind::Prometheus, Some(0.01), None);
        let policy = NoDataPolicy::Ignore;
        let good = measured(Some(0.001), true, &[]);
        let bad = measured(Some(0.3), true, &[]);
        let kafka_down = measured(Some(0.001), true, &["kafka"]);
        let bad_kafka_down = measured(Some(0.3), true, &["kafka"]);
        let silent = measured(None, false, &[]);
        let silent_kafka_down = measured(None, true, &["kafka"]);
        let cases: Vec<(&str, &Evidence, Option<&Evidence>, Verdict)> = vec![
            ("neither fails", &good, Some(&good), Pass),
            ("only the stable fails", &good, Some(&bad), Pass),
            ("only the candidate fails", &bad, Some(&good), Fail),
            ("both fail", &bad, Some(&bad), DependencyOutage),
            ("no stable release", &bad, None, Fail),
            ("the stable pods do not answer", &bad, Some(&silent), Fail),
            (
                "kafka down for both",
                &bad_kafka_down,
                Some(&kafka_down),
                DependencyOutage,
            ),
            (
                "kafka down for the candidate only",
                &bad_kafka_down,
                Some(&good),
                Fail,
            ),
            (
                "kafka down, no stable release",
                &bad_kafka_down,
                None,
                DependencyOutage,
            ),
            (
                "kafka down, stable silent",
                &bad_kafka_down,
                Some(&silent),
                DependencyOutage,
            ),
            ("kafka down but passing", &kafka_down, None, Pass),
            ("no candidate data", &silent, Some(&bad), Pass),
            (
                "no candidate data, kafka down for both",
                &silent_kafka_down,
                Some(&kafka_down),
                DependencyOutage,
            ),
            (
                "no candidate data, kafka down for the candidate only",
                &silent_kafka_down,
                Some(&good),
                Pass,
            ),
            (
                "no candidate data, kafka down, no stable release",
                &silent_kafka_down,
                None,
                DependencyOutage,
            ),
        ];
        for (name, candidate, stable, verdict) in cases {
            let (got, reason) = verdict_of(&er, policy, candidate, stable);
            assert_eq!(got, verdict, "{name}");
            assert_eq!(
                reason.is_some(),
                verdict == DependencyOutage,
                "{name}: {reason:?}"
            );
        }
        let (_, reason) = verdict_of(&er, policy, &bad, Some(&bad));
        assert_eq!(
            reason.as_deref(),
            Some(
                "dependency outage: the stable release fails it too (0.3; the candidate shares \
                 it up to 0.45)"
            )
        );
        let (_, reason) = verdict_of(&er, policy, &bad_kafka_down, None);
        assert_eq!(
            reason.as_deref(),
            Some("dependency outage: kafka down (no stable release to compare with)")
        );
    }

    #[test]
    fn an_open_breaker_is_a_dependency_down() {
        let mut candidate = measured(Some(0.3), true, &[]);
        candidate.window.pods[0].end =
            parse("auren_runtime_circuit_breaker_state{dependency=\"kafka\"} 2\n").unwrap();
        let er = check(MetricKind::Prometheus, Some(0.01), None);
        let (verdict, reason) = verdict_of(&er, NoDataPolicy::Ignore, &candidate, None);
        assert_eq!(verdict, Verdict::DependencyOutage);
        assert!(reason.unwrap().contains("kafka down"));
    }

    #[test]
    fn a_candidate_worse_than_the_baseline_allows_fails_in_an_outage_too() {
        let both = check(MetricKind::Prometheus, Some(0.05), factor(2.0));
        let stable = measured(Some(0.2), true, &[]);
        let within = measured(Some(0.3), true, &[]);
        let worse = measured(Some(0.5), true, &[]);
        let policy = NoDataPolicy::Ignore;
        assert_eq!(
            verdict_of(&both, policy, &within, Some(&stable)).0,
            Verdict::DependencyOutage
        );
        assert_eq!(
            verdict_of(&both, policy, &worse, Some(&stable)).0,
            Verdict::Fail
        );
    }

    /// Point 2 of issue 26: an outage of the stable release cannot hide a candidate that is
    /// clearly worse than it. Without a baseline the default tolerance decides (up to
    /// `OUTAGE_FACTOR` × stable or stable + `max`, whichever is more; down to stable /
    /// `OUTAGE_FACTOR` under a `min`); with one, the baseline does, as before.
    #[test]
    fn a_failing_stable_release_excuses_only_a_candidate_that_is_not_clearly_worse() {
        use Verdict::{DependencyOutage, Fail};
        let er = check(MetricKind::Prometheus, Some(0.01), None);
        let lenient = check(MetricKind::Prometheus, Some(0.01), factor(10.0));
        let strict = check(
            MetricKind::Prometheus,
            Some(0.01),
            Some(Baseline {
                max_factor: None,
                max_increase: Some(0.001),
            }),
        );
        let floor = Check {
            min: Some(10.0),
            ..check(MetricKind::Prometheus, None, None)
        };
        let restarts = check(MetricKind::Prometheus, Some(0.0), None);
        type Case<'a> = (&'a str, &'a Check, f64, f64, Verdict);
        let cases: Vec<Case> = vec![
            ("stable 2 %, candidate 100 %", &er, 0.02, 1.0, Fail),
            (
                "stable 2 %, candidate 2.5 %",
                &er,
                0.02,
                0.025,
                DependencyOutage,
            ),
            (
                "stable 2 %, candidate at stable + max",
                &er,
                0.02,
                0.03,
                DependencyOutage,
            ),
            ("stable 2 %, candidate just beyond", &er, 0.02, 0.031, Fail),
            (
                "stable 50 %, candidate at 1.5 ×",
                &er,
                0.5,
                0.75,
                DependencyOutage,
            ),
            ("stable 50 %, candidate beyond 1.5 ×", &er, 0.5, 0.8, Fail),
            (
                "candidate better than the stable",
                &er,
                0.3,
                0.1,
                DependencyOutage,
            ),
            (
                "a lenient baseline rules",
                &lenient,
                0.02,
                0.15,
                DependencyOutage,
            ),
            ("beyond the lenient baseline", &lenient, 0.02, 0.25, Fail),
            ("a strict baseline rules", &strict, 0.02, 0.025, Fail),
            (
                "within the strict baseline",
                &strict,
                0.02,
                0.0205,
                DependencyOutage,
            ),
            (
                "under min, candidate a bit lower",
                &floor,
                6.0,
                4.5,
                DependencyOutage,
            ),
            ("under min, candidate far lower", &floor, 6.0, 1.0, Fail),
            (
                "max 0: stable 2, candidate 3",
                &restarts,
                2.0,
                3.0,
                DependencyOutage,
            ),
            ("max 0: stable 2, candidate 4", &restarts, 2.0, 4.0, Fail),
        ];
        for (name, check, stable, own, verdict) in cases {
            let stable = measured(Some(stable), true, &[]);
            let candidate = measured(Some(own), true, &[]);
            let (got, reason) = verdict_of(check, NoDataPolicy::Ignore, &candidate, Some(&stable));
            assert_eq!(got, verdict, "{name}: {reason:?}");
        }
        // A dependency both releases report down is an outage whatever the values: the cap on
        // outage rounds with live traffic bounds it (rollout::decide).
        let stable = measured(Some(0.02), true, &["database"]);
        let candidate = measured(Some(1.0), true, &["database"]);
        let (got, _) = verdict_of(&er, NoDataPolicy::Ignore, &candidate, Some(&stable));
        assert_eq!(got, DependencyOutage);
        // No candidate data cannot be clearly worse: a failing stable excuses it as before.
        let silent = measured(None, true, &[]);
        let stable = measured(Some(0.02), true, &[]);
        let (got, _) = verdict_of(&er, NoDataPolicy::Fail, &silent, Some(&stable));
        assert_eq!(got, DependencyOutage);
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn value() -> impl Strategy<Value = Option<f64>> {
            prop_oneof![Just(None), (0.0..1.0f64).prop_map(Some)]
        }

        fn policy() -> impl Strategy<Value = NoDataPolicy> {
            prop_oneof![
                Just(NoDataPolicy::Ignore),
                Just(NoDataPolicy::Inconclusive),
                Just(NoDataPolicy::Fail)
            ]
        }

        fn down() -> impl Strategy<Value = Vec<&'static str>> {
            proptest::sample::subsequence(vec!["kafka", "database"], 0..=2)
        }

        fn fails(max: f64, value: Option<f64>) -> bool {
            value.is_some_and(|v| v > max)
        }

        /// The default outage tolerance, written out independently of the code under test.
        fn clearly_worse(max: f64, own: Option<f64>, stable: Option<f64>) -> bool {
            match (own, stable) {
                (Some(own), Some(stable)) => own > (stable * 1.5).max(stable + max),
                _ => false,
            }
        }

        proptest! {
            /// Candidate fails / stable fails / both / neither / no data, with and without
            /// dependencies reported down on either side.
            #[test]
            fn verdict_table(
                max in 0.0..1.0f64,
                own in value(),
                stable_value in value(),
                stable_answers in any::<bool>(),
                has_stable in any::<bool>(),
                own_down in down(),
                stable_down in down(),
                policy in policy(),
            ) {
                let check = check(MetricKind::Prometheus, Some(max), None);
                let candidate = measured(own, true, &own_down);
                let stable = measured(stable_value, stable_answers, &stable_down);
                let stable = has_stable.then_some(&stable);
                let (verdict, reason) = verdict_of(&check, policy, &candidate, stable);
                let judged = judge(&check, policy, own, None).0;
                let compared = stable.filter(|_| stable_answers);
                let shared = own_down.iter().any(|d| stable_down.contains(d));
                let dependency_down = match compared {
                    Some(_) => shared,
                    None => !own_down.is_empty(),
                };
                let expected = match (judged, compared) {
                    // No data while a shared dependency is down waits, whatever the policy.
                    _ if own.is_none() && dependency_down => Verdict::DependencyOutage,
                    // Otherwise only a failure can become an outage.
                    // A failing stable release excuses only a candidate not clearly worse.
                    (Verdict::Fail, Some(_))
                        if fails(max, stable_value) && !clearly_worse(max, own, stable_value)
                            || shared =>
                    {
                        Verdict::DependencyOutage
                    }
                    (Verdict::Fail, None) if !own_down.is_empty() => Verdict::DependencyOutage,
                    (judged, _) => judged,
                };
                prop_assert_eq!(verdict, expected);
                prop_assert_eq!(reason.is_some(), verdict == Verdict::DependencyOutage);
                // A candidate that fails while the stable release is fine fails, as before.
                if fails(max, own) && compared.is_some() && !fails(max, stable_value) && !shared {
                    prop_assert_eq!(verdict, Verdict::Fail);
                }
                // An outage of the stable release alone never hides a clearly worse candidate.
                if compared.is_some() && clearly_worse(max, own, stable_value) && !shared {
                    prop_assert_eq!(verdict, Verdict::Fail);
                }
                // Neither fails: nothing is relabelled.
                if own.is_some() && !fails(max, own) {
                    prop_assert_eq!(verdict, Verdict::Pass);
                }
                // No candidate data follows the no-data policy unless that makes it a failure
                // or a shared dependency is down (then the analysis waits for it).
                if own.is_none() && policy != NoDataPolicy::Fail && !dependency_down {
                    prop_assert_eq!(verdict, no_data(policy));
                }
                if own.is_none() && dependency_down {
                    prop_assert_eq!(verdict, Verdict::DependencyOutage);
                }
            }
        }
    }
}
