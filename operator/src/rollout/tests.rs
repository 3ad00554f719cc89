//! Every phase transition of the rollout decision, from fixtures. Each test walks a scenario
//! one decision at a time, feeding the status of one decision into the next, as the
//! controller does.

use std::collections::BTreeMap;

use auren_contract::ConsumerRole;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::api::{
    AnalysisStep, AurenRuntimeSpec, AurenRuntimeStatus, CanaryConsumers, CanarySpec, CanaryStep,
    Measurement, Outcome, PauseStep, Phase, RevisionRef, Verdict,
};
use crate::revision;

const V1: &str = "registry.local/auren-runtime:1.0.0";
const V2: &str = "registry.local/auren-runtime:2.0.0";

struct Fixture {
    spec: AurenRuntimeSpec,
    status: AurenRuntimeStatus,
    annotations: BTreeMap<String, String>,
    releases: Vec<ReleaseState>,
    measurements: Vec<Measurement>,
    now: i64,
}

impl Fixture {
    fn new(image: &str) -> Self {
        Self {
            spec: AurenRuntimeSpec::with_image(image),
            status: AurenRuntimeStatus::default(),
            annotations: BTreeMap::new(),
            releases: Vec::new(),
            measurements: Vec::new(),
            now: 1_000,
        }
    }

    /// v1 installed and healthy, its consumers active.
    fn healthy_v1() -> Self {
        let mut f = Self::new(V1);
        f.run(&[(hash(V1), ready(2, 1, ConsumerRole::Active))]);
        assert_eq!(f.phase(), Phase::Healthy);
        f
    }

    /// v1 stable, v2 rolling out and ready at preview scale.
    fn analyzing_v2() -> Self {
        let mut f = Self::healthy_v1();
        f.spec.image = V2.into();
        f.run(&[
            (hash(V1), ready(2, 1, ConsumerRole::Active)),
            (hash(V2), ready(2, 1, ConsumerRole::Standby)),
        ]);
        assert_eq!(f.phase(), Phase::Analyzing);
        f
    }

    /// v2 passes its analysis and takes over traffic and consumers; v1 stays up as previous.
    fn promote_v2(&mut self) {
        let (v1, v2) = (hash(V1), hash(V2));
        for _ in 0..3 {
            self.measure(&v2, Verdict::Pass, 0.0);
        }
        self.step();
        self.run(&[
            (v1, ready(2, 1, ConsumerRole::Standby)),
            (v2, ready(2, 1, ConsumerRole::Active)),
        ]);
        assert_eq!(self.reason(), "Promoted");
    }

    fn decide(&self) -> Plan {
        let desired = revision::of(&self.spec).unwrap();
        let observed = Observed {
            spec: &self.spec,
            generation: 1,
            annotations: &self.annotations,
            status: &self.status,
            desired,
            releases: &self.releases,
            measurements: &self.measurements,
            now: ts(self.now),
        };
        decide(&observed)
    }

    /// One reconcile: observe, decide, keep the status. The controller's side step succeeds:
    /// an autoscaler the plan asks to point is pointed.
    fn step(&mut self) -> Plan {
        let mut plan = self.decide();
        let retarget = plan
            .world
            .as_ref()
            .and_then(|w| w.retarget_autoscaler.clone());
        if let Some(revision) = retarget {
            record_pointing(
                &mut plan.status,
                &self.spec,
                &revision,
                Ok(()),
                1,
                ts(self.now),
            );
        }
        self.status = plan.status.clone();
        self.measurements.clear();
        plan
    }

    /// Sets the observed releases and reconciles until the phase settles.
    fn run(&mut self, releases: &[(String, ReleaseState)]) -> Plan {
        self.observe(releases);
        let mut plan = self.step();
        for _ in 0..5 {
            let next = self.step();
            if next.status == plan.status {
                break;
            }
            plan = next;
        }
        plan
    }

    fn observe(&mut self, releases: &[(String, ReleaseState)]) {
        self.releases = releases
            .iter()
            .map(|(hash, r)| ReleaseState {
                revision: hash.clone(),
                ..r.clone()
            })
            .collect();
    }

    fn phase(&self) -> Phase {
        self.status.phase.unwrap()
    }

    fn reason(&self) -> &str {
        self.status.reason.as_deref().unwrap()
    }

    fn message(&self) -> &str {
        self.status.message.as_deref().unwrap_or_default()
    }

    /// A measurement round of the candidate (or `revision`) `at` seconds.
    fn measure(&mut self, revision: &str, verdict: Verdict, value: f64) {
        self.now += 10;
        self.measurements.push(Measurement {
            check: "error-ratio".into(),
            revision: revision.into(),
            value: Some(value),
            threshold: "<= 0.01".into(),
            verdict,
            reason: (verdict == Verdict::DependencyOutage)
                .then(|| "dependency outage: the stable release fails it too (0.3)".into()),
            at: Time(ts(self.now)),
        });
    }
}

fn ts(second: i64) -> Timestamp {
    Timestamp::from_second(second).unwrap()
}

fn hash(image: &str) -> String {
    revision::of(&AurenRuntimeSpec::with_image(image))
        .unwrap()
        .hash
}

fn ready(api: i32, consumers: i32, role: ConsumerRole) -> ReleaseState {
    let roles = match role {
        ConsumerRole::Active => RoleCounts {
            active: consumers,
            ..Default::default()
        },
        ConsumerRole::Standby => RoleCounts {
            standby: consumers,
            ..Default::default()
        },
    };
    ReleaseState {
        revision: String::new(),
        api: PodSet {
            desired: api,
            ready: api,
            ..Default::default()
        },
        consumer: PodSet {
            desired: consumers,
            ready: consumers,
            ..Default::default()
        },
        roles,
    }
}

fn replicas(plan: &Plan, image: &str) -> Option<(i32, i32)> {
    let world = plan.world.as_ref()?;
    let release = world
        .releases
        .iter()
        .find(|r| r.revision.hash == hash(image))?;
    Some((release.api_replicas, release.consumer_replicas))
}

fn switches(plan: &Plan) -> Vec<(String, ConsumerRole)> {
    let world = plan.world.as_ref().unwrap();
    world
        .role_switches
        .iter()
        .map(|s| (s.revision.clone(), s.role))
        .collect()
}

fn active(plan: &Plan) -> ServiceTarget {
    plan.world.as_ref().unwrap().active.clone()
}

fn reasons(plan: &Plan) -> Vec<&str> {
    plan.events.iter().map(|e| e.reason.as_str()).collect()
}

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
    assert_eq!(f.status.services.active.as_deref(), Some("*"));
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

fn pause_step() -> CanaryStep {
    CanaryStep {
        pause: Some(PauseStep { duration: None }),
        ..Default::default()
    }
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
    assert_eq!(f.status.services.active, Some(v2.clone()));
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

/// The Event and the status of a rollback forced by an invalid spec name the invalid field.
fn assert_rolled_back_for_invalid_spec(f: &Fixture, plan: &Plan, field: &str) {
    let v2 = hash(V2);
    assert_eq!(
        (f.phase(), f.reason()),
        (Phase::InvalidSpec, "InvalidDuration")
    );
    assert!(f.message().contains(field), "{}", f.message());
    assert_eq!(f.status.candidate, None);
    assert_eq!(f.status.rejected.as_ref().map(|r| &r.hash), Some(&v2));
    let last = f.status.history.last().unwrap();
    assert_eq!((&last.hash, last.outcome), (&v2, Outcome::RolledBack));
    assert_eq!(active(plan), ServiceTarget::Revision(hash(V1)));
    assert_eq!(
        replicas(plan, V2),
        Some((0, 0)),
        "the candidate scaled down"
    );
    let rollback = plan
        .events
        .iter()
        .find(|e| e.reason == "SpecInvalid")
        .unwrap();
    assert_eq!(rollback.kind, EventKind::Warning);
    assert!(rollback.message.contains(field), "{}", rollback.message);
    assert_eq!(
        plan.notice.as_ref().map(|n| n.kind),
        Some(NoticeKind::RolledBack)
    );
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

fn canary_fixture(steps: Vec<CanaryStep>, consumers: CanaryConsumers) -> Fixture {
    let mut f = Fixture::healthy_v1();
    f.spec.api.replicas = 4;
    f.spec.consumer.replicas = 2;
    f.run(&[(hash(V1), ready(4, 2, ConsumerRole::Active))]);
    f.spec.strategy.canary = Some(CanarySpec {
        steps,
        consumers,
        scale_down_delay_seconds: 30,
    });
    f.spec.image = V2.into();
    f
}

fn analysis_count(count: i32) -> CanaryStep {
    CanaryStep {
        analysis: Some(AnalysisStep {
            count: Some(count),
            duration: None,
        }),
        ..Default::default()
    }
}

fn weight(w: i32) -> CanaryStep {
    CanaryStep {
        set_weight: Some(w),
        ..Default::default()
    }
}

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
    assert_eq!(f.status.services.active, Some(v2));
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
    assert_eq!(f.status.services.active, Some(v2.clone()));
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

/// A canary of 4 API pods at `w` % in its analysis step (3 passes to complete it).
fn canary_analysing_at(w: i32) -> Fixture {
    let analysis = CanaryStep {
        analysis: Some(AnalysisStep {
            count: Some(3),
            duration: None,
        }),
        ..Default::default()
    };
    let mut f = canary_fixture(vec![weight(w), analysis], CanaryConsumers::Handover);
    f.step();
    let candidate = (4 * w + 99) / 100;
    f.observe(&[
        (hash(V1), ready(4 - candidate, 2, ConsumerRole::Active)),
        (hash(V2), ready(candidate, 2, ConsumerRole::Standby)),
    ]);
    f.step();
    assert_eq!(f.phase(), Phase::Analyzing);
    f
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
