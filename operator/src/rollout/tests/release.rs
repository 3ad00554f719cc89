//! The first release, a new release beside the stable one, scaling, and notices.

use super::*;

#[test]
fn install_waits_for_ready_pods_and_active_consumers() {
    let mut f = Fixture::new(V1);
    let plan = f.step();
    assert_eq!((f.phase(), f.reason()), (Phase::Progressing, "Installing"));
    assert_eq!(replicas(&plan, V1), Some((2, 1)));
    assert_eq!(active(&plan), ServiceTarget::Revision(hash(V1)));
    assert_eq!(reasons(&plan), vec!["Installing"]);

    f.observe(&[(hash(V1), ready(2, 1, ConsumerRole::Standby))]);
    let plan = f.step();
    assert_eq!(f.phase(), Phase::Progressing, "consumers not yet active");
    assert_eq!(switches(&plan), vec![(hash(V1), ConsumerRole::Active)]);

    f.observe(&[(hash(V1), ready(2, 1, ConsumerRole::Active))]);
    let plan = f.step();
    assert_eq!((f.phase(), f.reason()), (Phase::Healthy, "Installed"));
    assert_eq!(
        f.status.stable.as_ref().map(|s| s.hash.clone()),
        Some(hash(V1))
    );
    assert_eq!(
        f.status.history.last().map(|h| h.outcome),
        Some(Outcome::Promoted)
    );
    assert_eq!(f.status.ready.as_deref(), Some("2/2"));
    assert!(switches(&plan).is_empty());
}

#[test]
fn install_past_its_deadline_is_degraded_and_recovers() {
    let mut f = Fixture::new(V1);
    f.step();
    let mut waiting = ready(0, 0, ConsumerRole::Standby);
    waiting.api.waiting_reason = Some("ImagePullBackOff".into());
    f.now += 601;
    f.observe(&[(hash(V1), waiting)]);
    let plan = f.step();
    assert_eq!(
        (f.phase(), f.reason()),
        (Phase::Degraded, "ProgressDeadlineExceeded")
    );
    assert!(
        f.status
            .message
            .as_deref()
            .unwrap()
            .contains("ImagePullBackOff")
    );
    assert_eq!(plan.events[0].kind, EventKind::Warning);
    f.run(&[(hash(V1), ready(2, 1, ConsumerRole::Active))]);
    assert_eq!(f.phase(), Phase::Healthy);
}

#[test]
fn a_new_release_is_previewed_beside_stable() {
    let mut f = Fixture::healthy_v1();
    f.spec.image = V2.into();
    let plan = f.step();
    assert_eq!((f.phase(), f.reason()), (Phase::Progressing, "NewRelease"));
    assert_eq!(replicas(&plan, V1), Some((2, 1)));
    assert_eq!(replicas(&plan, V2), Some((2, 1)));
    let world = plan.world.as_ref().unwrap();
    assert_eq!(world.active, ServiceTarget::Revision(hash(V1)));
    assert_eq!(world.preview, ServiceTarget::Revision(hash(V2)));
    assert!(
        world.role_switches.is_empty(),
        "the candidate's consumers start on standby"
    );
    assert_eq!(f.status.services.preview, Some(hash(V2)));
}

#[test]
fn preview_replicas_and_replica_changes_do_not_restart_the_rollout() {
    let mut f = Fixture::healthy_v1();
    f.spec.strategy.blue_green = Some(crate::api::BlueGreenSpec {
        preview_replicas: Some(1),
        ..Default::default()
    });
    f.spec.image = V2.into();
    let plan = f.step();
    assert_eq!(replicas(&plan, V2), Some((1, 1)));
    f.spec.api.replicas = 3;
    let plan = f.step();
    assert_eq!(f.reason(), "NewRelease", "scaling is not a new release");
    assert_eq!(replicas(&plan, V1), Some((3, 1)));
}

#[test]
fn scaling_mid_rollout_resizes_stable_and_candidate_and_is_not_a_release() {
    let mut f = Fixture::analyzing_v2();
    let (v1, v2) = (hash(V1), hash(V2));
    let (candidate, analysis) = (f.status.candidate.clone(), f.status.analysis.clone());
    assert_eq!(
        f.status.replicas,
        Some(2),
        "ready API pods behind the active Service"
    );
    f.spec.api.replicas = 4; // kubectl scale / an HPA through the /scale subresource
    let plan = f.step();
    assert_eq!(f.phase(), Phase::Analyzing, "scaling is not a new release");
    assert_eq!(f.status.candidate, candidate);
    assert_eq!(f.status.analysis, analysis, "the analysis goes on");
    assert_eq!(replicas(&plan, V1), Some((4, 1)));
    assert_eq!(
        replicas(&plan, V2),
        Some((4, 1)),
        "the candidate follows the stable"
    );
    assert!(reasons(&plan).is_empty(), "{:?}", reasons(&plan));
    assert_eq!(plan.notice, None, "nothing to tell");
    f.observe(&[
        (v1.clone(), ready(4, 1, ConsumerRole::Active)),
        (v2.clone(), ready(3, 1, ConsumerRole::Standby)),
    ]);
    f.step();
    assert_eq!(f.status.replicas, Some(4));
    assert_eq!(f.status.ready.as_deref(), Some("4/4"));
    f.spec.api.replicas = 1;
    let plan = f.step();
    assert_eq!(replicas(&plan, V1), Some((1, 1)));
    assert_eq!(replicas(&plan, V2), Some((1, 1)));
    for _ in 0..3 {
        f.measure(&v2, Verdict::Pass, 0.0);
    }
    let plan = f.step();
    assert_eq!(f.phase(), Phase::Promoting);
    assert_eq!(
        replicas(&plan, V2),
        Some((1, 1)),
        "promoted at the scaled size"
    );
}

#[test]
fn a_canary_reports_every_serving_pod_to_the_scale_subresource() {
    let pause = CanaryStep {
        pause: Some(PauseStep { duration: None }),
        ..Default::default()
    };
    let mut f = canary_fixture(vec![weight(50), pause], CanaryConsumers::Handover);
    f.run(&[
        (hash(V1), ready(2, 1, ConsumerRole::Active)),
        (hash(V2), ready(2, 1, ConsumerRole::Standby)),
    ]);
    assert_eq!(
        f.status.services.active,
        Some(crate::api::ActiveSelection::CanaryReleases)
    );
    assert_eq!(f.status.replicas, Some(4), "both releases serve");
}

/// The previous release, still up for its scale-down delay when a canary starts, neither
/// takes the canary's traffic (the active Service selects the pair only) nor counts in
/// `status.replicas`.
#[test]
fn a_canary_serves_and_counts_only_its_stable_and_candidate_pods() {
    let mut f = Fixture::analyzing_v2();
    f.promote_v2();
    let (v1, v2) = (hash(V1), hash(V2));
    f.spec.strategy.blue_green = None;
    f.spec.strategy.canary = Some(CanarySpec {
        steps: vec![weight(50), pause_step()],
        consumers: CanaryConsumers::Handover,
        scale_down_delay_seconds: 30,
    });
    f.spec.image = "registry.local/auren-runtime:3.0.0".into();
    let v3 = hash("registry.local/auren-runtime:3.0.0");
    let plan = f.run(&[
        (v1.clone(), ready(2, 1, ConsumerRole::Standby)),
        (v2.clone(), ready(1, 1, ConsumerRole::Active)),
        (v3.clone(), ready(1, 1, ConsumerRole::Standby)),
    ]);
    assert_eq!(f.reason(), "PausedAtStep");
    assert!(
        f.status.previous.is_some(),
        "v1 inside its scale-down delay"
    );
    assert_eq!(replicas(&plan, V1), Some((2, 1)), "v1 kept at full size");
    let pair = CanaryPair {
        stable: v2,
        candidate: v3,
    };
    assert_eq!(active(&plan), ServiceTarget::Canary(pair));
    assert_eq!(f.status.replicas, Some(2), "v2 and v3, not v1's two");
}

#[test]
fn notices_follow_phase_changes_promotions_and_rollbacks() {
    let mut f = Fixture::healthy_v1();
    f.spec.image = V2.into();
    let plan = f.step();
    let notice = plan.notice.unwrap();
    assert_eq!(notice.kind, NoticeKind::PhaseChanged);
    assert_eq!(
        (notice.previous_phase, notice.phase),
        (Some(Phase::Healthy), Phase::Progressing)
    );
    assert_eq!(notice.release.map(|r| r.hash), Some(hash(V2)));
    assert_eq!(f.step().notice, None, "told once");
    let mut f = Fixture::analyzing_v2();
    let (v1, v2) = (hash(V1), hash(V2));
    for _ in 0..3 {
        f.measure(&v2, Verdict::Pass, 0.0);
    }
    let mut notices = vec![f.step().notice];
    f.observe(&[
        (v1, ready(2, 1, ConsumerRole::Standby)),
        (v2.clone(), ready(2, 1, ConsumerRole::Active)),
    ]);
    for _ in 0..4 {
        notices.push(f.step().notice);
    }
    let told: Vec<_> = notices
        .into_iter()
        .flatten()
        .map(|n| (n.kind, n.phase))
        .collect();
    assert_eq!(
        told,
        vec![
            (NoticeKind::PhaseChanged, Phase::Promoting),
            (NoticeKind::Promoted, Phase::Healthy)
        ]
    );
    let mut f = Fixture::analyzing_v2();
    f.measure(&v2, Verdict::Fail, 0.5);
    f.measure(&v2, Verdict::Fail, 0.5);
    let plan = f.step();
    assert_eq!(f.phase(), Phase::RolledBack);
    let notice = plan.notice.unwrap();
    assert_eq!(
        (notice.kind, notice.reason.as_str()),
        (NoticeKind::RolledBack, "AnalysisFailed")
    );
    assert_eq!(notice.release.map(|r| r.hash), Some(v2));
}
