//! Analysis, promotion and the controls (promote, abort, retry).

use super::*;

#[test]
fn ready_candidate_is_analyzed_against_stable() {
    let f = Fixture::analyzing_v2();
    let plan = f.decide();
    let request = plan.world.as_ref().unwrap().analyze.clone().unwrap();
    assert_eq!(request.candidate, hash(V2));
    assert_eq!(request.baseline, Some(hash(V1)));
    assert_eq!(request.interval, std::time::Duration::from_secs(10));
}

#[test]
fn initial_delay_holds_the_first_measurement() {
    let mut f = Fixture::healthy_v1();
    f.spec.analysis.initial_delay = "1m".into();
    f.spec.image = V2.into();
    f.run(&[
        (hash(V1), ready(2, 1, ConsumerRole::Active)),
        (hash(V2), ready(2, 1, ConsumerRole::Standby)),
    ]);
    let plan = f.decide();
    assert_eq!(plan.world.unwrap().analyze, None);
    assert_eq!(plan.requeue_after, std::time::Duration::from_secs(60));
    f.now += 60;
    assert!(f.decide().world.unwrap().analyze.is_some());
}

/// The whole blue/green promotion, one ordered step at a time.
#[test]
fn passing_analysis_promotes_in_ordered_steps() {
    let mut f = Fixture::analyzing_v2();
    let (v1, v2) = (hash(V1), hash(V2));
    for _ in 0..3 {
        f.measure(&v2, Verdict::Pass, 0.0);
    }
    let plan = f.step();
    assert_eq!(
        (f.phase(), f.reason()),
        (Phase::Promoting, "AnalysisPassed")
    );
    assert_eq!(f.status.analysis.as_ref().unwrap().successes, 3);
    assert_eq!(f.status.measurements.len(), 3);

    // Candidate already at full scale and ready: traffic switches, stable consumers go standby.
    assert_eq!(active(&plan), ServiceTarget::Revision(v2.clone()));
    assert_eq!(switches(&plan), vec![(v1.clone(), ConsumerRole::Standby)]);

    // Stable consumers still report active: the candidate is not activated.
    let plan = f.step();
    assert_eq!(switches(&plan), vec![(v1.clone(), ConsumerRole::Standby)]);

    // One stable pod unknown (unreachable): still no activation.
    let mut unsure = ready(2, 1, ConsumerRole::Standby);
    unsure.roles = RoleCounts {
        standby: 0,
        active: 0,
        unknown: 1,
    };
    f.observe(&[
        (v1.clone(), unsure),
        (v2.clone(), ready(2, 1, ConsumerRole::Standby)),
    ]);
    let plan = f.step();
    assert_eq!(switches(&plan), vec![(v1.clone(), ConsumerRole::Standby)]);

    // Stable confirmed standby: now, and only now, the candidate is activated.
    f.observe(&[
        (v1.clone(), ready(2, 1, ConsumerRole::Standby)),
        (v2.clone(), ready(2, 1, ConsumerRole::Standby)),
    ]);
    let plan = f.step();
    assert_eq!(f.phase(), Phase::Promoting);
    assert_eq!(switches(&plan), vec![(v2.clone(), ConsumerRole::Active)]);

    f.observe(&[
        (v1.clone(), ready(2, 1, ConsumerRole::Standby)),
        (v2.clone(), ready(2, 1, ConsumerRole::Active)),
    ]);
    let plan = f.step();
    assert_eq!((f.phase(), f.reason()), (Phase::Healthy, "Promoted"));
    assert_eq!(f.status.stable.as_ref().unwrap().hash, v2);
    let previous = f.status.previous.clone().unwrap();
    assert_eq!(previous.hash, v1);
    assert_eq!(previous.scale_down_at, Time(ts(f.now + 30)));
    assert_eq!(
        replicas(&plan, V1),
        Some((2, 1)),
        "previous stays up for the scale-down window"
    );
    assert_eq!(f.status.services.active_release(), Some(v2.as_str()));
    assert!(reasons(&plan).contains(&"Promoted"));

    // Scale-down window over: the previous release is deleted.
    f.now += 31;
    let plan = f.step();
    assert_eq!(f.status.previous, None);
    assert_eq!(plan.world.as_ref().unwrap().delete, vec![v1]);
    assert!(reasons(&plan).contains(&"ScaledDown"));
}

#[test]
fn promotion_waits_for_the_candidate_at_full_scale() {
    let mut f = Fixture::healthy_v1();
    f.spec.strategy.blue_green = Some(crate::api::BlueGreenSpec {
        preview_replicas: Some(1),
        ..Default::default()
    });
    f.spec.image = V2.into();
    let (v1, v2) = (hash(V1), hash(V2));
    f.run(&[
        (v1.clone(), ready(2, 1, ConsumerRole::Active)),
        (v2.clone(), ready(1, 1, ConsumerRole::Standby)),
    ]);
    for _ in 0..3 {
        f.measure(&v2, Verdict::Pass, 0.0);
    }
    let plan = f.step();
    assert_eq!(f.phase(), Phase::Promoting);
    assert_eq!(
        replicas(&plan, V2),
        Some((2, 1)),
        "scaled to full before the switch"
    );
    assert_eq!(
        active(&plan),
        ServiceTarget::Revision(v1.clone()),
        "no switch before it is ready"
    );
    assert!(
        switches(&plan).is_empty(),
        "consumers stay as they are until traffic switched"
    );
}

#[test]
fn failing_analysis_rolls_back_with_the_measured_values() {
    let mut f = Fixture::analyzing_v2();
    let v2 = hash(V2);
    f.measure(&v2, Verdict::Fail, 0.2);
    f.step();
    assert_eq!(f.phase(), Phase::Analyzing, "one failure is a blip");
    f.measure(&v2, Verdict::Fail, 0.3);
    let plan = f.step();
    assert_eq!(
        (f.phase(), f.reason()),
        (Phase::RolledBack, "AnalysisFailed")
    );
    assert!(
        f.status
            .message
            .as_deref()
            .unwrap()
            .contains("error-ratio = 0.3"),
        "{:?}",
        f.status.message
    );
    assert_eq!(f.status.candidate, None);
    assert_eq!(f.status.rejected.as_ref().unwrap().hash, v2);
    assert_eq!(active(&plan), ServiceTarget::Revision(hash(V1)));
    assert_eq!(replicas(&plan, V2), Some((0, 0)));
    let rolled_back = plan
        .events
        .iter()
        .find(|e| e.reason == "AnalysisFailed")
        .unwrap();
    assert_eq!(rolled_back.kind, EventKind::Warning);
    assert_eq!(
        f.status
            .history
            .last()
            .map(|h| (h.outcome, h.reason.as_str())),
        Some((Outcome::RolledBack, "AnalysisFailed"))
    );

    // Still the rejected image in the spec: nothing is retried.
    f.now += 1_000;
    f.step();
    assert_eq!(f.phase(), Phase::RolledBack);
}

#[test]
fn failures_reaching_the_total_limit_roll_back() {
    let mut f = Fixture::analyzing_v2();
    let v2 = hash(V2);
    for verdict in [Verdict::Fail, Verdict::Pass, Verdict::Fail, Verdict::Pass] {
        f.measure(&v2, verdict, 0.0);
        f.step();
    }
    assert_eq!(f.phase(), Phase::Analyzing);
    assert_eq!(f.status.analysis.as_ref().unwrap().consecutive_failures, 0);
    f.measure(&v2, Verdict::Fail, 0.0);
    f.step();
    assert_eq!(
        (f.phase(), f.reason()),
        (Phase::RolledBack, "AnalysisFailed")
    );
}

#[test]
fn measurements_are_counted_once() {
    let mut f = Fixture::analyzing_v2();
    f.measure(&hash(V2), Verdict::Pass, 0.0);
    let again = f.measurements.clone();
    f.step();
    f.measurements = again;
    f.step();
    assert_eq!(f.status.analysis.as_ref().unwrap().successes, 1);
    assert_eq!(f.status.measurements.len(), 1);
}

#[test]
fn crash_loop_and_deadlines_roll_back() {
    type Setup = fn(&mut Fixture);
    let cases: Vec<(&str, Setup, &str)> = vec![
        (
            "crash loop while progressing",
            |f| {
                let mut broken = ready(0, 0, ConsumerRole::Standby);
                broken.api.crash_looping = true;
                broken.api.restarts = 4;
                f.observe(&[
                    (hash(V1), ready(2, 1, ConsumerRole::Active)),
                    (hash(V2), broken),
                ]);
            },
            "CandidateCrashLoop",
        ),
        (
            "never ready",
            |f| {
                let mut waiting = ready(0, 0, ConsumerRole::Standby);
                waiting.api.waiting_reason = Some("ImagePullBackOff".into());
                f.observe(&[
                    (hash(V1), ready(2, 1, ConsumerRole::Active)),
                    (hash(V2), waiting),
                ]);
                f.now += 601;
            },
            "ProgressDeadlineExceeded",
        ),
    ];
    for (name, setup, reason) in cases {
        let mut f = Fixture::healthy_v1();
        f.spec.image = V2.into();
        f.step();
        setup(&mut f);
        let plan = f.step();
        assert_eq!(
            (f.phase(), f.reason()),
            (Phase::RolledBack, reason),
            "{name}"
        );
        assert_eq!(active(&plan), ServiceTarget::Revision(hash(V1)), "{name}");
    }
}

#[test]
fn never_ready_message_names_the_waiting_reason() {
    let mut f = Fixture::healthy_v1();
    f.spec.image = V2.into();
    f.step();
    let mut waiting = ready(0, 0, ConsumerRole::Standby);
    waiting.api.waiting_reason = Some("ImagePullBackOff".into());
    f.observe(&[
        (hash(V1), ready(2, 1, ConsumerRole::Active)),
        (hash(V2), waiting),
    ]);
    f.now += 599;
    let plan = f.step();
    assert_eq!(f.phase(), Phase::Progressing);
    assert_eq!(plan.requeue_after, std::time::Duration::from_secs(1));
    f.now += 1;
    f.step();
    assert!(
        f.status
            .message
            .as_deref()
            .unwrap()
            .contains("ImagePullBackOff")
    );
}

#[test]
fn analysis_without_measurements_ends_at_its_deadline() {
    let mut f = Fixture::analyzing_v2();
    // initialDelay 0 + 10s × (3 + 3 + 1) + 600s
    f.now += 669;
    f.step();
    assert_eq!(f.phase(), Phase::Analyzing);
    f.now += 1;
    f.step();
    assert_eq!(
        (f.phase(), f.reason()),
        (Phase::RolledBack, "AnalysisDeadlineExceeded")
    );
}

#[test]
fn promotion_that_cannot_hand_over_consumers_rolls_back() {
    let mut f = Fixture::analyzing_v2();
    for _ in 0..3 {
        f.measure(&hash(V2), Verdict::Pass, 0.0);
    }
    f.step();
    assert_eq!(f.phase(), Phase::Promoting);
    f.now += 601;
    let plan = f.step();
    assert_eq!(
        (f.phase(), f.reason()),
        (Phase::RolledBack, "PromotionDeadlineExceeded")
    );
    assert_eq!(
        active(&plan),
        ServiceTarget::Revision(hash(V1)),
        "traffic back on stable"
    );
    // v1 consumers are still active: v2's (standby) are already confirmed, nothing to switch.
    assert!(switches(&plan).is_empty());
}

#[test]
fn inconclusive_analysis_pauses_and_promote_continues() {
    let mut f = Fixture::analyzing_v2();
    f.measure(&hash(V2), Verdict::Inconclusive, 0.0);
    f.step();
    assert_eq!(
        (f.phase(), f.reason()),
        (Phase::Paused, "AnalysisInconclusive")
    );
    f.now += 10_000;
    f.step();
    assert_eq!(
        f.phase(),
        Phase::Paused,
        "waiting for a human is not a deadline"
    );
    f.annotations.insert(controls::PROMOTE.into(), "1".into());
    f.step();
    assert_eq!(
        (f.phase(), f.reason()),
        (Phase::Promoting, "PromotedByHand")
    );
    assert_eq!(f.status.acknowledged.promote.as_deref(), Some("1"));
}

#[test]
fn retry_restarts_an_inconclusive_analysis() {
    let mut f = Fixture::analyzing_v2();
    f.measure(&hash(V2), Verdict::Inconclusive, 0.0);
    f.step();
    f.annotations.insert(controls::RETRY.into(), "a".into());
    f.step();
    assert_eq!(f.phase(), Phase::Analyzing);
    assert_eq!(f.status.analysis.as_ref().unwrap().inconclusive, 0);
}

#[test]
fn manual_promotion_when_auto_promotion_is_off() {
    let mut f = Fixture::analyzing_v2();
    f.spec.strategy.blue_green = Some(crate::api::BlueGreenSpec {
        auto_promotion: false,
        ..Default::default()
    });
    for _ in 0..3 {
        f.measure(&hash(V2), Verdict::Pass, 0.0);
    }
    f.step();
    assert_eq!(
        (f.phase(), f.reason()),
        (Phase::Paused, "AwaitingPromotion")
    );
    f.annotations.insert(controls::PROMOTE.into(), "go".into());
    f.step();
    assert_eq!(f.phase(), Phase::Promoting);
}

#[test]
fn auto_promotion_seconds_delay_the_promotion() {
    let mut f = Fixture::analyzing_v2();
    f.spec.strategy.blue_green = Some(crate::api::BlueGreenSpec {
        auto_promotion_seconds: 60,
        ..Default::default()
    });
    for _ in 0..3 {
        f.measure(&hash(V2), Verdict::Pass, 0.0);
    }
    let plan = f.step();
    assert_eq!(f.phase(), Phase::Analyzing);
    assert_eq!(plan.requeue_after, std::time::Duration::from_secs(60));
    f.now += 60;
    f.step();
    assert_eq!(f.phase(), Phase::Promoting);
}

#[test]
fn abort_rolls_back_once_and_retry_tries_again() {
    let mut f = Fixture::analyzing_v2();
    f.annotations.insert(controls::ABORT.into(), "1".into());
    let plan = f.step();
    assert_eq!((f.phase(), f.reason()), (Phase::RolledBack, "Aborted"));
    assert_eq!(f.status.acknowledged.abort.as_deref(), Some("1"));
    assert_eq!(active(&plan), ServiceTarget::Revision(hash(V1)));
    let plan = f.step();
    assert!(
        plan.events.is_empty(),
        "an acknowledged abort does nothing more"
    );

    f.observe(&[
        (hash(V1), ready(2, 1, ConsumerRole::Active)),
        (hash(V2), ready(0, 0, ConsumerRole::Standby)),
    ]);
    f.annotations.insert(controls::RETRY.into(), "1".into());
    let plan = f.step();
    assert_eq!(replicas(&plan, V2), Some((2, 1)), "scaled up again");
    assert_eq!((f.phase(), f.reason()), (Phase::Progressing, "NewRelease"));
    assert_eq!(f.status.rejected, None);
}

#[test]
fn controls_without_a_rollout_are_acknowledged_and_ignored() {
    let mut f = Fixture::healthy_v1();
    f.annotations.insert(controls::PROMOTE.into(), "x".into());
    let plan = f.step();
    assert_eq!(f.phase(), Phase::Healthy);
    assert_eq!(reasons(&plan), vec!["ControlIgnored"]);
    assert_eq!(f.status.acknowledged.promote.as_deref(), Some("x"));
}
