//! After the promotion: the post-promotion watch, degraded and paused releases, invalid and unsafe specs, superseded releases.

use super::*;

#[test]
fn failure_after_promotion_switches_back_to_the_previous_release() {
    let mut f = Fixture::analyzing_v2();
    let (v1, v2) = (hash(V1), hash(V2));
    f.promote_v2();
    let plan = f.decide();
    let watch = plan.world.as_ref().unwrap().analyze.clone().unwrap();
    assert_eq!(
        (watch.candidate.as_str(), watch.baseline.as_deref()),
        (v2.as_str(), Some(v1.as_str()))
    );

    f.measure(&v2, Verdict::Fail, 0.5);
    f.measure(&v2, Verdict::Fail, 0.6);
    let plan = f.step();
    assert_eq!(
        (f.phase(), f.reason()),
        (Phase::RolledBack, "PostPromotionFailure")
    );
    assert_eq!(f.status.stable.as_ref().unwrap().hash, v1);
    assert_eq!(f.status.rejected.as_ref().unwrap().hash, v2);
    assert_eq!(active(&plan), ServiceTarget::Revision(v1.clone()));
    assert_eq!(replicas(&plan, V1), Some((2, 1)));
    assert_eq!(
        switches(&plan),
        vec![(v2.clone(), ConsumerRole::Standby)],
        "v2 stops before v1 resumes"
    );

    f.observe(&[
        (v1.clone(), ready(2, 1, ConsumerRole::Standby)),
        (v2.clone(), ready(2, 1, ConsumerRole::Standby)),
    ]);
    let plan = f.step();
    assert_eq!(switches(&plan), vec![(v1, ConsumerRole::Active)]);
}

#[test]
fn crash_after_promotion_also_switches_back() {
    let mut f = Fixture::analyzing_v2();
    let (v1, v2) = (hash(V1), hash(V2));
    f.promote_v2();
    let mut crashing = ready(2, 1, ConsumerRole::Active);
    crashing.consumer.crash_looping = true;
    f.observe(&[
        (v1.clone(), ready(2, 1, ConsumerRole::Standby)),
        (v2, crashing),
    ]);
    f.step();
    assert_eq!(
        (f.phase(), f.reason()),
        (Phase::RolledBack, "PostPromotionFailure")
    );
    assert_eq!(f.status.stable.as_ref().unwrap().hash, v1);
}

#[test]
fn stable_without_ready_pods_is_degraded_until_it_recovers() {
    let mut f = Fixture::healthy_v1();
    f.observe(&[(hash(V1), ready(0, 1, ConsumerRole::Active))]);
    f.step();
    assert_eq!(
        (f.phase(), f.reason()),
        (Phase::Degraded, "StableUnavailable")
    );
    let available = f
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == AVAILABLE)
        .unwrap();
    assert_eq!(available.status, "False");
    f.observe(&[(hash(V1), ready(2, 1, ConsumerRole::Active))]);
    f.step();
    assert_eq!((f.phase(), f.reason()), (Phase::Healthy, "Recovered"));
}

#[test]
fn spec_paused_freezes_everything_and_resumes() {
    let mut f = Fixture::analyzing_v2();
    f.spec.paused = true;
    f.annotations.insert(controls::ABORT.into(), "1".into());
    let plan = f.step();
    assert_eq!((f.phase(), f.reason()), (Phase::Paused, "SpecPaused"));
    assert_eq!(plan.world, None);
    assert_eq!(
        f.status.acknowledged.abort, None,
        "controls wait for the pause to end"
    );
    f.annotations.clear();
    f.spec.paused = false;
    f.step();
    assert_eq!(f.phase(), Phase::Analyzing, "resumes and measures again");
}

#[test]
fn invalid_spec_changes_nothing_and_says_why() {
    let mut f = Fixture::healthy_v1();
    f.spec.analysis.interval = "0s".into();
    let plan = f.step();
    assert_eq!(
        (f.phase(), f.reason()),
        (Phase::InvalidSpec, "InvalidDuration")
    );
    assert_eq!(plan.world, None);
    let condition = f
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == INVALID_SPEC)
        .unwrap();
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("True", "InvalidDuration")
    );
    assert_eq!(plan.events[0].kind, EventKind::Warning);
    f.spec.analysis.interval = "10s".into();
    f.step();
    assert_eq!(f.phase(), Phase::Healthy);
}

/// Mid-canary, a spec that stops validating rolls the canary back to stable instead of
/// freezing it at its weight with no analysis, crash-loop watch or deadline. Fixing the spec
/// does not restart the rejected release (`auren.io/retry` does).
#[test]
fn an_invalid_spec_mid_canary_rolls_back_to_stable() {
    let steps = vec![weight(25), analysis_count(2)];
    let mut f = canary_fixture(steps, CanaryConsumers::Handover);
    let (v1, v2) = (hash(V1), hash(V2));
    f.step();
    f.observe(&[
        (v1.clone(), ready(3, 2, ConsumerRole::Active)),
        (v2.clone(), ready(1, 2, ConsumerRole::Standby)),
    ]);
    f.step();
    assert_eq!(f.phase(), Phase::Analyzing, "at 25 %, analysing");

    f.spec.analysis.interval = "0s".into();
    let plan = f.step();
    assert_rolled_back_for_invalid_spec(&f, &plan, "analysis.interval");
    assert_eq!(
        replicas(&plan, V1),
        Some((4, 2)),
        "stable back to full size"
    );
    assert_eq!(f.status.canary, None);

    let again = f.step();
    assert_eq!(again.world, plan.world, "the stable world is kept");
    assert!(again.events.is_empty(), "said once");
    f.spec.analysis.interval = "10s".into();
    let plan = f.step();
    assert_eq!(f.phase(), Phase::RolledBack);
    assert_eq!(f.status.candidate, None, "not retried by itself");
    assert_eq!(active(&plan), ServiceTarget::Revision(v1));
}

/// Mid-blue/green, in the consumer handover of a promotion: the invalid spec rolls back, and
/// while it stays invalid the handover back to stable completes (standby first, then active).
#[test]
fn an_invalid_spec_mid_blue_green_rolls_back_and_hands_consumers_back() {
    let mut f = Fixture::analyzing_v2();
    let (v1, v2) = (hash(V1), hash(V2));
    for _ in 0..3 {
        f.measure(&v2, Verdict::Pass, 0.0);
    }
    f.step();
    f.observe(&[
        (v1.clone(), ready(2, 1, ConsumerRole::Standby)),
        (v2.clone(), ready(2, 1, ConsumerRole::Active)),
    ]);
    assert_eq!(f.phase(), Phase::Promoting, "mid-handover");

    f.spec.analysis.initial_delay = "soon".into();
    let plan = f.step();
    assert_rolled_back_for_invalid_spec(&f, &plan, "analysis.initialDelay");
    assert_eq!(switches(&plan), vec![(v2.clone(), ConsumerRole::Standby)]);
    f.observe(&[
        (v1.clone(), ready(2, 1, ConsumerRole::Standby)),
        (v2.clone(), ready(2, 1, ConsumerRole::Standby)),
    ]);
    let plan = f.step();
    assert_eq!(f.phase(), Phase::InvalidSpec);
    assert_eq!(switches(&plan), vec![(v1, ConsumerRole::Active)]);
}

#[test]
fn unsafe_settings_roll_out_only_when_allowed_and_say_so() {
    let mut f = Fixture::healthy_v1();
    f.spec.image = V2.into();
    f.spec
        .config
        .insert("FAULT_ERROR_RATE".into(), "0.2".into());
    let plan = f.step();
    assert_eq!(
        (f.phase(), f.reason()),
        (Phase::InvalidSpec, "UnsafeSettingRefused")
    );
    assert_eq!(plan.world, None, "nothing is rolled out");
    assert!(f.status.candidate.is_none());
    assert_eq!(plan.events[0].kind, EventKind::Warning);
    assert!(plan.events[0].message.contains("spec.allowUnsafe"));

    f.spec.allow_unsafe = vec![crate::api::UnsafeSetting::Faults];
    let plan = f.step();
    assert!(plan.world.is_some());
    assert_eq!(f.phase(), Phase::Progressing, "v2 rolls out");
    let unsafe_condition = |f: &Fixture| {
        let c = f
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == UNSAFE_SETTINGS)
            .unwrap();
        (c.status.clone(), c.message.clone())
    };
    let (status, message) = unsafe_condition(&f);
    assert_eq!(status, "True");
    assert!(
        message.contains("FAULT_ERROR_RATE=0.2 (faults)"),
        "{message}"
    );
    let warned = |plan: &Plan| {
        plan.events
            .iter()
            .filter(|e| e.reason == "UnsafeSettingsAllowed" && e.kind == EventKind::Warning)
            .count()
    };
    assert_eq!(warned(&plan), 1);
    assert_eq!(warned(&f.step()), 0, "one Event, not one per reconcile");

    f.spec.config.clear();
    f.step();
    assert_eq!(unsafe_condition(&f).0, "False");
}

#[test]
fn reverting_the_spec_mid_rollout_abandons_the_candidate() {
    let mut f = Fixture::analyzing_v2();
    f.spec.image = V1.into();
    let plan = f.step();
    assert_eq!((f.phase(), f.reason()), (Phase::Healthy, "Reverted"));
    assert_eq!(plan.world.as_ref().unwrap().delete, vec![hash(V2)]);
    assert_eq!(
        f.status.history.last().map(|h| h.outcome),
        Some(Outcome::Superseded)
    );
}

#[test]
fn a_newer_release_supersedes_the_candidate() {
    let mut f = Fixture::analyzing_v2();
    f.spec.image = "registry.local/auren-runtime:3.0.0".into();
    let plan = f.step();
    assert_eq!((f.phase(), f.reason()), (Phase::Progressing, "NewRelease"));
    assert_eq!(plan.world.as_ref().unwrap().delete, vec![hash(V2)]);
    assert_eq!(f.status.analysis, None);
}

#[test]
fn status_is_unchanged_when_nothing_happens() {
    let mut f = Fixture::healthy_v1();
    let before = f.status.clone();
    f.now += 50;
    let plan = f.step();
    assert_eq!(plan.status, before);
    assert!(plan.events.is_empty());
}

#[test]
fn history_is_bounded() {
    let mut f = Fixture::healthy_v1();
    for n in 0..15 {
        f.spec.image = format!("registry.local/auren-runtime:9.{n}.0");
        f.step();
    }
    assert_eq!(f.status.history.len(), crate::api::MAX_HISTORY);
}

/// The post-promotion watch keeps measuring while the new stable release has no ready API
/// pod (an outage took them out of their Services), against the previous release.
#[test]
fn the_post_promotion_watch_measures_while_degraded() {
    let mut f = Fixture::analyzing_v2();
    f.promote_v2();
    let (v1, v2) = (hash(V1), hash(V2));
    let mut unready = ready(2, 1, ConsumerRole::Active);
    unready.api.ready = 0;
    f.run(&[
        (v1.clone(), ready(2, 1, ConsumerRole::Standby)),
        (v2.clone(), unready),
    ]);
    assert_eq!(f.phase(), Phase::Degraded);
    let request = f.decide().world.unwrap().analyze.unwrap();
    assert_eq!((request.candidate, request.baseline), (v2, Some(v1)));
}
