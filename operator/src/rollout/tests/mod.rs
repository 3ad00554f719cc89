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

mod after_promotion;
mod analysis;
mod autoscaling;
mod canary;
mod outage;
mod release;

fn pause_step() -> CanaryStep {
    CanaryStep {
        pause: Some(PauseStep { duration: None }),
        ..Default::default()
    }
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
