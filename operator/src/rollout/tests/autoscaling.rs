//! Consumer autoscalers pointed at the stable release.

use super::*;

/// With `spec.consumer.autoscaler` the stable release's consumer count is the autoscaler's:
/// the operator keeps it, a candidate starts with as many, and the autoscaler is pointed at
/// the stable release once after the install and once after each promotion.
#[test]
fn an_autoscaler_sets_the_consumers_and_follows_the_stable_release() {
    let autoscaler = crate::api::AutoscalerRef {
        kind: crate::api::AutoscalerKind::HorizontalPodAutoscaler,
        name: "consumers".into(),
    };
    let mut f = Fixture::new(V1);
    f.spec.consumer.autoscaler = Some(autoscaler);
    let (v1, v2) = (hash(V1), hash(V2));
    let plan = f.run(&[(v1.clone(), ready(2, 1, ConsumerRole::Active))]);
    assert_eq!(f.phase(), Phase::Healthy);
    assert_eq!(plan.world.unwrap().retarget_autoscaler, Some(v1.clone()));
    let pointed = format!("HorizontalPodAutoscaler/consumers -> {v1}");
    assert_eq!(
        f.status.consumer_autoscaler.as_deref(),
        Some(pointed.as_str())
    );
    assert_eq!(f.decide().world.unwrap().retarget_autoscaler, None, "once");

    // The autoscaler scaled v1's consumers to 3: the operator keeps 3 (spec says 1).
    let plan = f.run(&[(v1.clone(), ready(2, 3, ConsumerRole::Active))]);
    assert_eq!(replicas(&plan, V1), Some((2, 3)));
    // A candidate starts with the stable release's 3, and is ready only with all 3.
    f.spec.image = V2.into();
    let plan = f.run(&[
        (v1.clone(), ready(2, 3, ConsumerRole::Active)),
        (v2.clone(), ready(2, 1, ConsumerRole::Standby)),
    ]);
    assert_eq!(replicas(&plan, V2).map(|p| p.1), Some(3));
    assert_eq!(f.phase(), Phase::Progressing, "2 of 3 consumers missing");
    f.run(&[
        (v1.clone(), ready(2, 3, ConsumerRole::Active)),
        (v2.clone(), ready(2, 3, ConsumerRole::Standby)),
    ]);
    assert_eq!(f.phase(), Phase::Analyzing);
    for _ in 0..3 {
        f.measure(&v2, Verdict::Pass, 0.0);
    }
    f.step();
    f.observe(&[
        (v1.clone(), ready(2, 3, ConsumerRole::Standby)),
        (v2.clone(), ready(2, 3, ConsumerRole::Active)),
    ]);
    let mut retargets = Vec::new();
    for _ in 0..5 {
        let plan = f.step();
        retargets.extend(plan.world.and_then(|w| w.retarget_autoscaler));
    }
    assert_eq!(f.reason(), "Promoted");
    let pointed = format!("HorizontalPodAutoscaler/consumers -> {v2}");
    assert_eq!(retargets, vec![v2], "pointed at v2 once");
    assert_eq!(
        f.status.consumer_autoscaler.as_deref(),
        Some(pointed.as_str())
    );
}

/// Pointing the consumer autoscaler fails (it does not exist yet, RBAC, a webhook): the
/// release is installed all the same, the failure is a False condition, and the next decision
/// asks again until a pointing succeeds; then never again.
#[test]
fn a_failed_autoscaler_pointing_is_a_condition_and_is_asked_for_again() {
    let mut f = Fixture::new(V1);
    f.spec.consumer.autoscaler = Some(crate::api::AutoscalerRef {
        kind: crate::api::AutoscalerKind::HorizontalPodAutoscaler,
        name: "consumers".into(),
    });
    let v1 = hash(V1);
    f.observe(&[(v1.clone(), ready(2, 1, ConsumerRole::Active))]);
    let pointing = |f: &mut Fixture, outcome: Result<(), String>| {
        let mut plan = f.decide();
        let asked = plan
            .world
            .as_ref()
            .and_then(|w| w.retarget_autoscaler.clone());
        if let Some(revision) = &asked {
            record_pointing(&mut plan.status, &f.spec, revision, outcome, 1, ts(f.now));
        }
        let unchanged = plan.status == f.status;
        f.status = plan.status;
        f.now += 5;
        (asked, unchanged)
    };
    let missing = || Err("horizontalpodautoscalers \"consumers\" not found".to_owned());
    for _ in 0..3 {
        pointing(&mut f, missing());
    }
    assert_eq!((f.phase(), f.reason()), (Phase::Healthy, "Installed"));
    assert_eq!(f.status.consumer_autoscaler, None, "nothing pointed yet");
    let condition = |f: &Fixture| {
        let c = f
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == AUTOSCALER_POINTED);
        c.map(|c| {
            (
                c.status.clone(),
                c.reason.clone(),
                c.last_transition_time.clone(),
            )
        })
    };
    let (status, reason, failed_at) = condition(&f).unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "AutoscalerNotPointed")
    );

    let (asked, unchanged) = pointing(&mut f, missing());
    assert_eq!(asked, Some(v1.clone()), "asked again");
    assert!(unchanged, "the same failure writes no status");
    assert_eq!(
        condition(&f).unwrap().2,
        failed_at,
        "lastTransitionTime kept"
    );

    let (asked, _) = pointing(&mut f, Ok(()));
    assert_eq!(asked, Some(v1.clone()));
    let pointed = format!("HorizontalPodAutoscaler/consumers -> {v1}");
    assert_eq!(
        f.status.consumer_autoscaler.as_deref(),
        Some(pointed.as_str())
    );
    assert_eq!(condition(&f).unwrap().0, "True");
    assert_eq!(
        pointing(&mut f, Ok(())),
        (None, true),
        "pointed once: 0 requests at rest"
    );

    f.spec.consumer.autoscaler = None;
    pointing(&mut f, Ok(()));
    assert_eq!(
        (f.status.consumer_autoscaler.clone(), condition(&f)),
        (None, None)
    );
}
