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
