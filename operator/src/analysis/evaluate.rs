//! Evaluating checks: a measured value against fixed bounds and, optionally, the stable
//! release's value over the same window. The threshold is written out as text so status and
//! Events explain each verdict.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{AnalysisSpec, Baseline, Check, Measurement, MetricKind, NoDataPolicy, Verdict};

use super::window::Window;

/// Quantile of `metric: latency` when the check does not set one.
pub const DEFAULT_QUANTILE: f64 = 0.99;

/// What was observed of one revision over one window.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Evidence {
    /// Scrapes of the revision's pods.
    pub window: Window,
    /// Container restarts of the revision's pods (from pod status).
    pub restarts: Option<f64>,
    /// Results of `metric: prometheus` checks, by check name (queried by the controller).
    pub prometheus: BTreeMap<String, f64>,
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
            Measurement {
                check: check.name.clone(),
                revision: revision.to_owned(),
                value: candidate.value(check),
                threshold,
                verdict,
                at: at.clone(),
            }
        })
        .collect()
}

/// The verdict of one round: any failure fails it, otherwise any inconclusive check makes it
/// inconclusive. An empty round is inconclusive: nothing was measured.
pub fn round_verdict(measurements: &[Measurement]) -> Verdict {
    let has = |v| measurements.iter().any(|m| m.verdict == v);
    if has(Verdict::Fail) {
        Verdict::Fail
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
            prometheus: BTreeMap::new(),
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
    }
}
