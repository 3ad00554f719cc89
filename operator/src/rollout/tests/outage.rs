//! Dependency outages: waiting, their bounds with and without live traffic, and properties.

use super::*;

#[test]
fn a_dependency_outage_waits_says_why_and_resumes_when_it_ends() {
    let mut f = Fixture::analyzing_v2();
    let v2 = hash(V2);
    let mut events = Vec::new();
    for _ in 0..5 {
        f.measure(&v2, Verdict::DependencyOutage, 0.3);
        events.extend(f.step().events);
    }
    assert_eq!(
        (f.phase(), f.reason()),
        (Phase::Analyzing, "DependencyOutage"),
        "more outage rounds than either failure limit: no rollback"
    );
    let progress = f.status.analysis.clone().unwrap();
    assert_eq!(
        (
            progress.successes,
            progress.failures,
            progress.dependency_outages
        ),
        (0, 0, 5)
    );
    let message = f.status.message.clone().unwrap();
    assert!(
        message.contains("the stable release fails it too (0.3)"),
        "{message}"
    );
    let waits: Vec<_> = events
        .iter()
        .filter(|e| e.reason == "DependencyOutage")
        .collect();
    assert_eq!(waits.len(), 1, "one Event when the wait begins: {events:?}");
    assert_eq!(waits[0].kind, EventKind::Warning);
    let progressing = f
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == PROGRESSING)
        .unwrap();
    assert_eq!(progressing.reason, "DependencyOutage");

    f.measure(&v2, Verdict::Pass, 0.0);
    let plan = f.step();
    assert_eq!((f.phase(), f.reason()), (Phase::Analyzing, "Analyzing"));
    assert!(reasons(&plan).contains(&"DependencyRecovered"));
    f.measure(&v2, Verdict::Pass, 0.0);
    f.measure(&v2, Verdict::Pass, 0.0);
    f.step();
    assert_eq!(
        f.phase(),
        Phase::Promoting,
        "counted rounds resume promotion"
    );
}

#[test]
fn a_dependency_outage_is_bounded_by_the_analysis_deadline() {
    let mut f = Fixture::analyzing_v2();
    let v2 = hash(V2);
    while f.phase() == Phase::Analyzing {
        f.measure(&v2, Verdict::DependencyOutage, 0.3);
        f.step();
        assert!(f.now < 3_000, "the deadline ends the wait");
    }
    assert_eq!(
        (f.phase(), f.reason()),
        (Phase::RolledBack, "AnalysisDeadlineExceeded")
    );
    let message = f.status.message.clone().unwrap();
    assert!(
        message.contains("the dependency outage did not end"),
        "{message}"
    );
}

#[test]
fn an_outage_between_failures_neither_resets_nor_adds_to_them() {
    let mut f = Fixture::analyzing_v2();
    let v2 = hash(V2);
    f.measure(&v2, Verdict::Fail, 0.2);
    f.step();
    f.measure(&v2, Verdict::DependencyOutage, 0.3);
    f.step();
    assert_eq!(f.phase(), Phase::Analyzing);
    f.measure(&v2, Verdict::Fail, 0.2);
    f.step();
    assert_eq!(
        (f.phase(), f.reason()),
        (Phase::RolledBack, "AnalysisFailed"),
        "the second failure in a row still rolls back"
    );
    let message = f.status.message.clone().unwrap();
    assert!(
        message.contains("error-ratio = 0.2") && !message.contains("outage"),
        "the rollback names the failures, not the outage: {message}"
    );
}

#[test]
fn an_outage_after_promotion_does_not_switch_back() {
    let mut f = Fixture::analyzing_v2();
    f.spec.strategy.blue_green = Some(crate::api::BlueGreenSpec {
        scale_down_delay_seconds: 120,
        ..Default::default()
    });
    let v2 = hash(V2);
    f.promote_v2();
    for _ in 0..4 {
        f.measure(&v2, Verdict::DependencyOutage, 0.3);
    }
    let plan = f.step();
    assert_eq!((f.phase(), f.reason()), (Phase::Healthy, "Promoted"));
    assert_eq!(f.status.stable.as_ref().unwrap().hash, v2);
    assert_eq!(f.status.analysis.as_ref().unwrap().dependency_outages, 4);
    assert!(reasons(&plan).contains(&"MeasurementDependencyOutage"));
    f.measure(&v2, Verdict::Fail, 0.5);
    f.measure(&v2, Verdict::Fail, 0.6);
    f.step();
    assert_eq!(
        (f.phase(), f.reason()),
        (Phase::RolledBack, "PostPromotionFailure"),
        "real failures still switch back"
    );
}

/// Issue 26 point 2: outage rounds hold a canary that takes live traffic for at most
/// `maxLiveOutageSeconds` (60 s by default), then it is rolled back, long before the analysis
/// deadline.
#[test]
fn an_outage_holds_a_canary_with_live_traffic_at_most_the_cap() {
    let mut f = canary_analysing_at(25);
    let v2 = hash(V2);
    let started = f.now;
    let mut events = Vec::new();
    while f.phase() == Phase::Analyzing {
        f.measure(&v2, Verdict::DependencyOutage, 0.3);
        let plan = f.step();
        events.extend(plan.events.clone());
        if f.now < started + 60 {
            assert_eq!(f.reason(), "DependencyOutage", "within the cap it waits");
            assert!(
                matches!(active(&plan), ServiceTarget::Canary(_)),
                "the canary keeps serving"
            );
        }
    }
    assert_eq!(
        f.now,
        started + 60,
        "rolled back at the cap, not at the deadline"
    );
    assert_eq!(
        (f.phase(), f.reason()),
        (Phase::RolledBack, "DependencyOutageLimit")
    );
    let message = f.status.message.clone().unwrap();
    assert!(
        message.contains("held it with live traffic for 60s") && message.contains("(0.3)"),
        "{message}"
    );
    let wait = events
        .iter()
        .find(|e| e.reason == "DependencyOutage")
        .unwrap();
    assert!(
        wait.message.contains("lasts 60s with live traffic"),
        "{wait:?}"
    );
    let plan = f.decide();
    assert_eq!(active(&plan), ServiceTarget::Revision(hash(V1)));
    assert_eq!(replicas(&plan, V2), Some((0, 0)));
}

/// A counted round ends the outage streak: the next outage starts the cap again.
#[test]
fn a_counted_round_restarts_the_outage_cap() {
    let mut f = canary_analysing_at(25);
    let v2 = hash(V2);
    for verdict in [Verdict::DependencyOutage; 5] {
        f.measure(&v2, verdict, 0.3);
        f.step();
    }
    f.measure(&v2, Verdict::Pass, 0.0);
    f.step();
    for _ in 0..5 {
        f.measure(&v2, Verdict::DependencyOutage, 0.3);
        f.step();
    }
    assert_eq!(
        (f.phase(), f.reason()),
        (Phase::Analyzing, "DependencyOutage")
    );
    f.spec.analysis.max_live_outage_seconds = 30;
    f.step();
    assert_eq!(
        (f.phase(), f.reason()),
        (Phase::RolledBack, "DependencyOutageLimit"),
        "the cap is the spec's"
    );
}

/// Without live traffic on the candidate (a canary at weight 0, like a blue/green preview) an
/// outage keeps the analysis waiting past the cap, until its deadline.
#[test]
fn an_outage_without_live_traffic_waits_past_the_cap() {
    let mut f = canary_analysing_at(0);
    for _ in 0..20 {
        f.measure(&hash(V2), Verdict::DependencyOutage, 0.3);
        f.step();
    }
    assert_eq!(
        (f.phase(), f.reason()),
        (Phase::Analyzing, "DependencyOutage")
    );
    let message = f.status.message.clone().unwrap();
    assert!(
        message.contains("outlasts the analysis deadline"),
        "{message}"
    );
}

/// After a promotion the new release takes all traffic: an outage keeps the previous release
/// up past the scale-down delay (the watch does not end blind) and, once it has held the watch
/// for the cap, switches back.
#[test]
fn an_outage_holding_the_post_promotion_watch_past_the_cap_switches_back() {
    let mut f = Fixture::analyzing_v2();
    let (v1, v2) = (hash(V1), hash(V2));
    f.promote_v2();
    let promoted = f.now;
    for _ in 0..5 {
        f.measure(&v2, Verdict::DependencyOutage, 0.3);
        f.step();
    }
    assert!(f.now > promoted + 30, "past the 30 s scale-down delay");
    assert_eq!((f.phase(), f.reason()), (Phase::Healthy, "Promoted"));
    assert_eq!(
        f.status.previous.as_ref().map(|p| p.hash.clone()),
        Some(v1.clone()),
        "the outage holds the watch: v1 stays up"
    );
    f.measure(&v2, Verdict::DependencyOutage, 0.3);
    let plan = f.step();
    assert_eq!(
        (f.phase(), f.reason()),
        (Phase::RolledBack, "PostPromotionFailure")
    );
    assert_eq!(f.status.stable.as_ref().unwrap().hash, v1);
    assert_eq!(active(&plan), ServiceTarget::Revision(v1));
    let message = f.status.message.clone().unwrap();
    assert!(message.contains("held it with live traffic"), "{message}");
}

/// An outage that ends within the cap lets the held watch end: the first counted round after
/// it scales the previous release down.
#[test]
fn an_outage_ending_within_the_cap_releases_the_watch() {
    let mut f = Fixture::analyzing_v2();
    let v2 = hash(V2);
    f.promote_v2();
    for _ in 0..4 {
        f.measure(&v2, Verdict::DependencyOutage, 0.3);
        f.step();
    }
    assert!(
        f.status.previous.is_some(),
        "held past the scale-down delay"
    );
    f.measure(&v2, Verdict::Pass, 0.0);
    let plan = f.step();
    assert!(f.status.previous.is_none());
    assert!(reasons(&plan).contains(&"ScaledDown"));
    assert_eq!(
        (f.phase(), f.status.stable.as_ref().unwrap().hash.clone()),
        (Phase::Healthy, v2)
    );
}

mod outage_properties {
    use proptest::prelude::*;

    use super::*;

    fn round() -> impl Strategy<Value = Verdict> {
        prop_oneof![Just(Verdict::Pass), Just(Verdict::Fail)]
    }

    /// Runs `verdicts` one round per reconcile; the phase and counters at the end.
    fn outcome(verdicts: &[Verdict]) -> (Phase, i32, i32, i32) {
        let mut f = Fixture::analyzing_v2();
        let v2 = hash(V2);
        for verdict in verdicts {
            if f.phase() != Phase::Analyzing {
                break;
            }
            f.measure(&v2, *verdict, 0.0);
            f.step();
        }
        let p = f
            .status
            .analysis
            .clone()
            .unwrap_or_else(|| panic!("{:?}", f.status));
        (f.phase(), p.successes, p.failures, p.consecutive_failures)
    }

    proptest! {
        /// Within the deadline, outage rounds alone never roll back and never promote.
        #[test]
        fn outage_rounds_never_roll_back_nor_promote(rounds in 1usize..60) {
            let mut f = Fixture::analyzing_v2();
            let v2 = hash(V2);
            for _ in 0..rounds {
                f.measure(&v2, Verdict::DependencyOutage, 0.3);
                let plan = f.step();
                prop_assert_eq!(f.phase(), Phase::Analyzing);
                prop_assert!(f.status.rejected.is_none());
                prop_assert_eq!(active(&plan), ServiceTarget::Revision(hash(V1)));
            }
            let p = f.status.analysis.clone().unwrap();
            prop_assert_eq!((p.successes, p.failures), (0, 0));
        }

        /// With live traffic on the candidate, outage rounds in a row roll it back exactly when
        /// they have held it for the cap, whatever the cap and the number of rounds.
        #[test]
        fn live_outage_rounds_roll_back_exactly_at_the_cap(
            rounds in 1usize..30,
            cap in 1i32..200,
        ) {
            let mut f = canary_analysing_at(25);
            f.spec.analysis.max_live_outage_seconds = cap;
            let started = f.now;
            for _ in 0..rounds {
                if f.phase() != Phase::Analyzing {
                    break;
                }
                f.measure(&hash(V2), Verdict::DependencyOutage, 0.3);
                f.step();
            }
            let held = f.now - started;
            let over = held >= i64::from(cap);
            prop_assert_eq!(f.phase() == Phase::RolledBack, over);
            if over {
                prop_assert_eq!(f.reason(), "DependencyOutageLimit");
                prop_assert!(held < i64::from(cap) + 10, "at the first round past the cap");
            }
        }

        /// Outage rounds inserted anywhere into a sequence of passes and failures change
        /// neither its counters nor how it ends.
        #[test]
        fn outage_rounds_do_not_change_the_outcome(
            counted in proptest::collection::vec(round(), 1..8),
            outages in proptest::collection::vec(0usize..3, 8),
        ) {
            let mut with_outages = Vec::new();
            for (verdict, n) in counted.iter().zip(&outages) {
                with_outages.extend(std::iter::repeat_n(Verdict::DependencyOutage, *n));
                with_outages.push(*verdict);
            }
            prop_assert_eq!(outcome(&with_outages), outcome(&counted));
        }
    }
}
