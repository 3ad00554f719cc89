//! Canary steps: weights, pauses, analysis steps, consumer handover or partition share.

use super::*;

#[test]
fn canary_moves_weight_by_replicas_and_analyses_each_step() {
    let analysis = CanaryStep {
        analysis: Some(AnalysisStep {
            count: Some(1),
            duration: None,
        }),
        ..Default::default()
    };
    let mut f = canary_fixture(
        vec![weight(25), analysis, weight(50)],
        CanaryConsumers::Handover,
    );
    let (v1, v2) = (hash(V1), hash(V2));
    let plan = f.step();
    assert_eq!(f.phase(), Phase::Progressing);
    assert_eq!(replicas(&plan, V2), Some((1, 2)));
    assert_eq!(replicas(&plan, V1), Some((3, 2)));
    assert_eq!(
        active(&plan),
        ServiceTarget::Canary(CanaryPair {
            stable: v1.clone(),
            candidate: v2.clone()
        })
    );
    assert_eq!(f.status.canary.as_ref().unwrap().requested_weight, 25);

    let mut stable = ready(3, 2, ConsumerRole::Active);
    stable.api.ready = 3;
    f.observe(&[
        (v1.clone(), stable.clone()),
        (v2.clone(), ready(1, 2, ConsumerRole::Standby)),
    ]);
    f.step();
    assert_eq!(f.phase(), Phase::Analyzing, "weight reached, analysis step");
    assert_eq!(f.status.canary.as_ref().unwrap().actual_weight, 25);
    assert_eq!(f.status.canary.as_ref().unwrap().current_step, 1);

    f.measure(&v2, Verdict::Pass, 0.0);
    let plan = f.step();
    assert_eq!(f.status.canary.as_ref().unwrap().current_step, 2);
    assert_eq!(replicas(&plan, V2), Some((2, 2)));
    assert!(
        switches(&plan).is_empty(),
        "handover mode: candidate consumers stay standby"
    );

    let mut stable = ready(2, 2, ConsumerRole::Active);
    stable.api.desired = 2;
    f.observe(&[
        (v1.clone(), stable),
        (v2.clone(), ready(2, 2, ConsumerRole::Standby)),
    ]);
    let plan = f.step();
    assert_eq!((f.phase(), f.reason()), (Phase::Promoting, "StepsPassed"));
    assert_eq!(replicas(&plan, V2), Some((4, 2)));

    f.run(&[
        (v1.clone(), ready(4, 2, ConsumerRole::Standby)),
        (v2.clone(), ready(4, 2, ConsumerRole::Active)),
    ]);
    assert_eq!((f.phase(), f.reason()), (Phase::Healthy, "Promoted"));
    assert_eq!(f.status.services.active_release(), Some(v2.as_str()));
    assert_eq!(f.status.canary, None);
}

#[test]
fn canary_failing_analysis_step_rolls_back() {
    let analysis = CanaryStep {
        analysis: Some(AnalysisStep {
            count: Some(3),
            duration: None,
        }),
        ..Default::default()
    };
    let mut f = canary_fixture(vec![weight(25), analysis], CanaryConsumers::Handover);
    f.step();
    f.observe(&[
        (hash(V1), ready(3, 2, ConsumerRole::Active)),
        (hash(V2), ready(1, 2, ConsumerRole::Standby)),
    ]);
    f.step();
    f.measure(&hash(V2), Verdict::Fail, 0.3);
    f.measure(&hash(V2), Verdict::Fail, 0.3);
    let plan = f.step();
    assert_eq!(
        (f.phase(), f.reason()),
        (Phase::RolledBack, "AnalysisFailed")
    );
    assert_eq!(active(&plan), ServiceTarget::Revision(hash(V1)));
    assert_eq!(replicas(&plan, V1), Some((4, 2)));
    assert_eq!(replicas(&plan, V2), Some((0, 0)));
}

#[test]
fn canary_indefinite_pause_waits_for_promote_and_timed_pause_expires() {
    let indefinite = CanaryStep {
        pause: Some(PauseStep { duration: None }),
        ..Default::default()
    };
    let timed = CanaryStep {
        pause: Some(PauseStep {
            duration: Some("30s".into()),
        }),
        ..Default::default()
    };
    let mut f = canary_fixture(
        vec![indefinite, timed, weight(50)],
        CanaryConsumers::Handover,
    );
    f.step();
    assert_eq!((f.phase(), f.reason()), (Phase::Paused, "PausedAtStep"));
    f.now += 10_000;
    f.step();
    assert_eq!(f.phase(), Phase::Paused);
    f.annotations.insert(controls::PROMOTE.into(), "1".into());
    let plan = f.step();
    assert_eq!(f.status.canary.as_ref().unwrap().current_step, 1);
    assert_eq!(plan.requeue_after, std::time::Duration::from_secs(30));
    f.now += 30;
    f.step();
    assert_eq!(f.status.canary.as_ref().unwrap().current_step, 2);
    assert_eq!(f.status.canary.as_ref().unwrap().requested_weight, 50);
}

#[test]
fn canary_partition_share_activates_both_releases_consumers() {
    let mut f = canary_fixture(
        vec![
            weight(50),
            CanaryStep {
                pause: Some(PauseStep::default()),
                ..Default::default()
            },
        ],
        CanaryConsumers::PartitionShare,
    );
    let plan = f.step();
    assert_eq!(replicas(&plan, V2), Some((2, 1)));
    assert_eq!(replicas(&plan, V1), Some((2, 1)));
    f.observe(&[
        (hash(V1), ready(2, 1, ConsumerRole::Active)),
        (hash(V2), ready(2, 1, ConsumerRole::Standby)),
    ]);
    let plan = f.step();
    assert_eq!(switches(&plan), vec![(hash(V2), ConsumerRole::Active)]);
}

/// Regression: promoting a partition-share canary must not send the candidate's consuming
/// members through standby (they would rejoin the group and could be left without partitions).
#[test]
fn promoted_partition_share_canary_keeps_candidate_consumers_active() {
    let mut f = canary_fixture(
        vec![weight(50), weight(100)],
        CanaryConsumers::PartitionShare,
    );
    let (v1, v2) = (hash(V1), hash(V2));
    f.step();
    f.observe(&[
        (v1.clone(), ready(2, 1, ConsumerRole::Active)),
        (v2.clone(), ready(2, 1, ConsumerRole::Active)),
    ]);
    let plan = f.step();
    assert_eq!(replicas(&plan, V2), Some((4, 2)), "100 %: all consumers");
    assert_eq!(replicas(&plan, V1), Some((0, 0)));
    f.observe(&[
        (v1.clone(), ready(0, 0, ConsumerRole::Active)),
        (v2.clone(), ready(4, 2, ConsumerRole::Active)),
    ]);
    let plan = f.step();
    assert_eq!((f.phase(), f.reason()), (Phase::Promoting, "StepsPassed"));
    assert_eq!(replicas(&plan, V2).map(|r| r.1), Some(2));
    assert_eq!(
        replicas(&plan, V1).map(|r| r.1),
        Some(0),
        "no stable comeback"
    );
    assert!(
        !switches(&plan).contains(&(v2.clone(), ConsumerRole::Standby)),
        "{:?}",
        switches(&plan)
    );
    let plan = f.run(&[
        (v1.clone(), ready(4, 0, ConsumerRole::Standby)),
        (v2.clone(), ready(4, 2, ConsumerRole::Active)),
    ]);
    assert_eq!((f.phase(), f.reason()), (Phase::Healthy, "Promoted"));
    assert!(switches(&plan).is_empty(), "{:?}", switches(&plan));
}

/// A partition-share canary promoted at a partial weight: the stable members keep their
/// share until the active Service has switched, and only then go standby.
#[test]
fn partition_share_stable_members_leave_only_after_the_switch() {
    let mut f = canary_fixture(vec![weight(50)], CanaryConsumers::PartitionShare);
    let (v1, v2) = (hash(V1), hash(V2));
    f.step();
    f.observe(&[
        (v1.clone(), ready(2, 1, ConsumerRole::Active)),
        (v2.clone(), ready(2, 1, ConsumerRole::Active)),
    ]);
    let plan = f.step();
    assert_eq!((f.phase(), f.reason()), (Phase::Promoting, "StepsPassed"));
    assert_eq!(replicas(&plan, V2).map(|r| r.1), Some(2));
    assert_eq!(replicas(&plan, V1).map(|r| r.1), Some(1));
    assert!(switches(&plan).is_empty(), "{:?}", switches(&plan));
    f.observe(&[
        (v1.clone(), ready(4, 1, ConsumerRole::Active)),
        (v2.clone(), ready(4, 2, ConsumerRole::Active)),
    ]);
    let plan = f.step();
    assert_eq!(f.status.services.active_release(), Some(v2.as_str()));
    assert_eq!(switches(&plan), vec![(v1.clone(), ConsumerRole::Standby)]);
    assert_eq!(f.phase(), Phase::Promoting, "until v1 has left the group");
}

/// The cutover invariant over every scenario above: an activation is planned only when every
/// other observed revision is confirmed standby (handover mode).
#[test]
fn activation_is_never_planned_beside_a_possibly_consuming_release() {
    let mut f = Fixture::analyzing_v2();
    let (v1, v2) = (hash(V1), hash(V2));
    for _ in 0..3 {
        f.measure(&v2, Verdict::Pass, 0.0);
    }
    f.step();
    let role_states = [
        (ConsumerRole::Active, ConsumerRole::Standby),
        (ConsumerRole::Standby, ConsumerRole::Standby),
        (ConsumerRole::Active, ConsumerRole::Active),
        (ConsumerRole::Standby, ConsumerRole::Active),
    ];
    for (r1, r2) in role_states {
        for unknown in [0, 1] {
            let mut s1 = ready(2, 1, r1);
            s1.roles.unknown = unknown;
            let observed = [(v1.clone(), s1), (v2.clone(), ready(2, 1, r2))];
            f.observe(&observed);
            let plan = f.decide();
            for switch in plan
                .world
                .as_ref()
                .map(|w| w.role_switches.clone())
                .unwrap_or_default()
            {
                if switch.role == ConsumerRole::Active {
                    let others = f.releases.iter().filter(|r| r.revision != switch.revision);
                    assert!(
                        others.clone().all(|r| r.roles.confirmed_standby()),
                        "{r1:?}/{r2:?}/{unknown}"
                    );
                }
            }
        }
    }
    let _ = RevisionRef {
        hash: v1,
        image: V1.into(),
    };
}
