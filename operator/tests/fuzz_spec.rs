#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test-only code
//! Property-based fuzzing of `AurenRuntime` spec validation: `api::parse_duration`,
//! `api::validate` and `api::canary_steps` (the source of the `InvalidSpec` phase), and of what
//! the rollout decision relies on once a spec is accepted.
//!
//! Two kinds of generated specs: *wild* ones (any strings and numbers, as if the CRD schema
//! were not enforced) must never panic validation; *schema-conforming* ones (ranges and
//! patterns the apiserver enforces from the CRD) that validation accepts must be safe for
//! `rollout::decide`.

use std::collections::BTreeMap;
use std::time::Duration;

use auren_contract::ConsumerRole;
use auren_operator::api::{
    AnalysisStep, AurenRuntimeSpec, AurenRuntimeStatus, Baseline, BlueGreenSpec, CanaryConsumers,
    CanarySpec, CanaryStep, Check, CheckedStep, EnvVar, MAX_DURATION, Measurement, MetricKind,
    NoDataPolicy, PauseStep, Phase, PrometheusQuery, SpecError, Verdict, canary_steps,
    parse_duration, validate,
};
use auren_operator::revision;
use auren_operator::rollout::{Observed, PodSet, ReleaseState, RoleCounts, decide};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use proptest::prelude::*;

/// The shared fuzzing settings (`auren_testkit::fuzz_config`), failures kept in
/// `proptest-regressions/fuzz_spec.txt`.
fn config(cases: u32) -> ProptestConfig {
    let config = auren_testkit::fuzz_config(cases, "proptest-regressions/fuzz_spec.txt");
    ProptestConfig {
        // Conforming specs with an over-long duration are skipped where only accepted specs
        // count; that is a large share by design (the edges are what matter).
        max_global_rejects: config.cases.saturating_mul(2),
        ..config
    }
}

const UNITS: [(&str, u128); 4] = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000)];

/// Reasons an `InvalidSpec` condition may carry.
const REASONS: [&str; 7] = [
    "InvalidImage",
    "TwoStrategies",
    "InvalidCanaryStep",
    "InvalidDuration",
    "InvalidEnv",
    "DuplicateEnv",
    "InvalidCheck",
];

/// `^[0-9]+(ms|s|m|h)$` and its value in milliseconds (exact, in u128).
fn duration_text_millis(text: &str) -> Option<u128> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return None;
    }
    let per = UNITS.iter().find(|(u, _)| *u == unit)?.1;
    digits.parse::<u128>().ok().map(|n| n.saturating_mul(per))
}

/// Duration text matching the CRD's pattern `^[0-9]+(ms|s|m|h)$`, which bounds the form but
/// not the size: mostly zero and everyday values, sometimes the edges of `MAX_DURATION` and of
/// `u64` milliseconds.
fn schema_duration() -> impl Strategy<Value = String> {
    let unit = prop::sample::select(UNITS.to_vec());
    let amount = |per: u128| {
        let max = (MAX_DURATION.as_millis() / per) as u64;
        let edge = (u128::from(u64::MAX) / per) as u64;
        prop_oneof![
            4 => Just(0u64),
            16 => 1u64..=600,
            1 => Just(max),
            1 => Just(max.saturating_add(1)),
            1 => (edge / 2)..=edge,
            1 => Just(edge.saturating_add(1)),
            1 => any::<u64>(),
        ]
    };
    prop_oneof![
        12 => unit.prop_flat_map(move |(u, per)| amount(per).prop_map(move |n| format!("{n}{u}"))),
        1 => "[0-9]{1,30}(ms|s|m|h)",
    ]
}

/// Any text where a duration goes: pattern-conforming, near misses and junk.
fn wild_duration() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => schema_duration(),
        1 => "[+-]?[0-9]{0,6}(\\.[0-9])?(ms|s|m|h|d|us|µs|H|S| s|)",
        1 => ".{0,12}",
    ]
}

// ---- wild specs: any strings and numbers, as if the CRD schema were not enforced ----

fn wild_image() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[a-z0-9]{1,8}(/[a-z0-9]{1,8})?:[0-9]\\.[0-9]\\.[0-9]", 1 => ".{0,20}"]
}

fn wild_env_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[A-Z_][A-Z0-9_]{0,8}",
        1 => prop::sample::select(vec!["RUN_MODE", "AUREN_RELEASE", "LOG_FORMAT", "DATABASE_URL"])
            .prop_map(String::from),
        1 => ".{0,10}",
    ]
}

/// Mostly the schema's range `lo..=hi` and its bounds, sometimes any i32.
fn wild_int(lo: i32, hi: i32) -> impl Strategy<Value = i32> {
    prop_oneof![3 => lo..=hi, 1 => Just(lo), 1 => Just(hi), 1 => any::<i32>()]
}

/// Mostly the schema's range `lo..=hi` and its bounds, sometimes any f64 (NaN and infinities
/// included, though JSON cannot carry those).
fn wild_float(lo: f64, hi: f64) -> impl Strategy<Value = f64> {
    prop_oneof![3 => lo..=hi, 1 => Just(lo), 1 => Just(hi), 1 => any::<f64>()]
}

fn wild_step() -> impl Strategy<Value = CanaryStep> {
    let weight = prop::option::of(wild_int(0, 100));
    let pause = prop::option::of(
        prop::option::of(wild_duration()).prop_map(|duration| PauseStep { duration }),
    );
    let analysis = prop::option::of(
        (
            prop::option::of(wild_int(1, 1000)),
            prop::option::of(wild_duration()),
        )
            .prop_map(|(count, duration)| AnalysisStep { count, duration }),
    );
    (weight, pause, analysis).prop_map(|(set_weight, pause, analysis)| CanaryStep {
        set_weight,
        pause,
        analysis,
    })
}

fn metric_kind() -> impl Strategy<Value = MetricKind> {
    prop::sample::select(vec![
        MetricKind::ErrorRatio,
        MetricKind::Latency,
        MetricKind::ConsumerLag,
        MetricKind::DeadLettered,
        MetricKind::FailedEvents,
        MetricKind::CircuitBreakerOpen,
        MetricKind::Restarts,
        MetricKind::Prometheus,
    ])
}

fn wild_check() -> impl Strategy<Value = Check> {
    let bound = || prop::option::of(wild_float(-1e6, 1e6));
    let baseline = prop::option::of(
        (
            prop::option::of(wild_float(1.0, 1000.0)),
            prop::option::of(wild_float(0.0, 1e6)),
        )
            .prop_map(|(max_factor, max_increase)| Baseline {
                max_factor,
                max_increase,
            }),
    );
    let prometheus = prop::option::of(
        ("https?://[a-z]{1,8}:[0-9]{2,4}", ".{1,20}")
            .prop_map(|(address, query)| PrometheusQuery { address, query }),
    );
    let no_data = prop::option::of(prop::sample::select(vec![
        NoDataPolicy::Fail,
        NoDataPolicy::Inconclusive,
        NoDataPolicy::Ignore,
    ]));
    (
        prop::sample::select(vec!["error-ratio", "latency", "lag", "restarts"]),
        metric_kind(),
        prop::option::of(wild_float(0.0, 1.0)),
        prometheus,
        bound(),
        bound(),
        baseline,
        no_data,
    )
        .prop_map(
            |(name, metric, quantile, prometheus, max, min, baseline, no_data)| Check {
                name: name.into(),
                metric,
                quantile,
                prometheus,
                max,
                min,
                baseline,
                no_data,
            },
        )
}

fn wild_spec() -> impl Strategy<Value = AurenRuntimeSpec> {
    let env = prop::collection::vec(
        (wild_env_name(), ".{0,6}").prop_map(|(name, value)| EnvVar { name, value }),
        0..3,
    );
    let config = prop::collection::btree_map(wild_env_name(), ".{0,6}", 0..3);
    let blue_green = prop::option::of(
        (
            prop::option::of(wild_int(1, 1000)),
            any::<bool>(),
            wild_int(0, 86400),
            wild_int(0, 86400),
        )
            .prop_map(
                |(
                    preview_replicas,
                    auto_promotion,
                    auto_promotion_seconds,
                    scale_down_delay_seconds,
                )| {
                    BlueGreenSpec {
                        preview_replicas,
                        auto_promotion,
                        auto_promotion_seconds,
                        scale_down_delay_seconds,
                    }
                },
            ),
    );
    let canary = prop::option::of(
        (
            prop::collection::vec(wild_step(), 0..8),
            prop::sample::select(vec![
                CanaryConsumers::Handover,
                CanaryConsumers::PartitionShare,
            ]),
            wild_int(0, 86400),
        )
            .prop_map(|(steps, consumers, scale_down_delay_seconds)| CanarySpec {
                steps,
                consumers,
                scale_down_delay_seconds,
            }),
    );
    (
        (
            wild_image(),
            env,
            config,
            wild_int(0, 20),
            wild_int(0, 20),
            wild_int(10, 86400),
            any::<bool>(),
        ),
        (blue_green, canary),
        (
            wild_duration(),
            wild_duration(),
            prop::collection::vec(wild_check(), 0..4),
        ),
        (wild_int(1, 1000), wild_int(1, 1000), wild_int(1, 1000)),
    )
        .prop_map(
            |(
                (image, env, config, api, consumers, deadline, paused),
                (blue_green, canary),
                (interval, initial_delay, checks),
                (to_promote, failure_limit, consecutive),
            )| {
                let mut s = AurenRuntimeSpec::with_image(&image);
                s.env = env;
                s.config = config;
                s.api.replicas = api;
                s.consumer.replicas = consumers;
                s.progress_deadline_seconds = deadline;
                s.paused = paused;
                s.strategy.blue_green = blue_green;
                s.strategy.canary = canary;
                s.analysis.interval = interval;
                s.analysis.initial_delay = initial_delay;
                s.analysis.checks = checks;
                s.analysis.successful_measurements_to_promote = to_promote;
                s.analysis.failure_limit = failure_limit;
                s.analysis.consecutive_failure_limit = consecutive;
                s
            },
        )
}

// ---- conforming specs: within the CRD schema and following `validate`'s rules ----

/// A check that follows every rule of `validate`, with the given (unique) name.
fn conforming_check(name: String) -> impl Strategy<Value = Check> {
    let bound = || prop::option::of(-1e6f64..1e6);
    (
        metric_kind(),
        0.001f64..0.999,
        any::<bool>(),
        bound(),
        bound(),
        prop::option::of(1.0f64..=1000.0),
        prop::option::of(0.0f64..1e6),
    )
        .prop_map(move |(metric, q, with_q, max, min, factor, increase)| {
            let prometheus = metric == MetricKind::Prometheus;
            let (min, max) = match (min, max) {
                (Some(a), Some(b)) => (Some(a.min(b)), Some(a.max(b))),
                other => other,
            };
            let baseline =
                (!prometheus && (factor.is_some() || increase.is_some())).then_some(Baseline {
                    max_factor: factor,
                    max_increase: increase,
                });
            let max = if min.is_none() && baseline.is_none() {
                max.or(Some(1.0))
            } else {
                max
            };
            Check {
                name: name.clone(),
                metric,
                quantile: (metric == MetricKind::Latency && with_q).then_some(q),
                prometheus: prometheus.then(|| PrometheusQuery {
                    address: "http://prometheus:9090".into(),
                    query: "up".into(),
                }),
                max,
                min,
                baseline,
                no_data: None,
            }
        })
}

/// A canary step with exactly one action (and an analysis with exactly one of its two).
fn conforming_step() -> impl Strategy<Value = CanaryStep> {
    prop_oneof![
        (0..=100i32).prop_map(|w| CanaryStep {
            set_weight: Some(w),
            ..Default::default()
        }),
        prop::option::of(schema_duration()).prop_map(|duration| CanaryStep {
            pause: Some(PauseStep { duration }),
            ..Default::default()
        }),
        prop_oneof![
            (1..=1000i32).prop_map(|n| AnalysisStep {
                count: Some(n),
                duration: None
            }),
            schema_duration().prop_map(|d| AnalysisStep {
                count: None,
                duration: Some(d)
            }),
        ]
        .prop_map(|analysis| CanaryStep {
            analysis: Some(analysis),
            ..Default::default()
        }),
    ]
}

/// A spec within the CRD schema that follows every rule of `validate` except, possibly, the
/// size of its durations (the schema cannot bound those).
fn conforming_spec() -> impl Strategy<Value = AurenRuntimeSpec> {
    let checks = (0usize..4).prop_flat_map(|n| {
        (0..n)
            .map(|i| conforming_check(format!("check-{i}")))
            .collect::<Vec<_>>()
    });
    let strategy = prop_oneof![
        Just((None, None)),
        (
            prop::option::of(1..=1000i32),
            any::<bool>(),
            0..=86400i32,
            0..=86400i32
        )
            .prop_map(
                |(
                    preview_replicas,
                    auto_promotion,
                    auto_promotion_seconds,
                    scale_down_delay_seconds,
                )| {
                    (
                        Some(BlueGreenSpec {
                            preview_replicas,
                            auto_promotion,
                            auto_promotion_seconds,
                            scale_down_delay_seconds,
                        }),
                        None,
                    )
                }
            ),
        (
            prop::collection::vec(conforming_step(), 1..8),
            prop::sample::select(vec![
                CanaryConsumers::Handover,
                CanaryConsumers::PartitionShare
            ]),
            0..=86400i32
        )
            .prop_map(|(steps, consumers, scale_down_delay_seconds)| {
                (
                    None,
                    Some(CanarySpec {
                        steps,
                        consumers,
                        scale_down_delay_seconds,
                    }),
                )
            }),
    ];
    (
        (
            0..=20i32,
            0..=20i32,
            prop_oneof![Just(10), Just(600), 10..=86400i32],
        ),
        strategy,
        (
            schema_duration()
                .prop_filter("interval > 0", |d| parse_duration(d) != Ok(Duration::ZERO)),
            schema_duration(),
            checks,
        ),
        (
            prop_oneof![Just(1), Just(1000), 1..=1000i32],
            prop_oneof![Just(1), Just(1000), 1..=1000i32],
            1..=1000i32,
        ),
    )
        .prop_map(
            |(
                (api, consumers, deadline),
                (blue_green, canary),
                (interval, initial_delay, checks),
                (to_promote, failure_limit, consecutive),
            )| {
                let mut s = AurenRuntimeSpec::with_image(V1);
                s.api.replicas = api;
                s.consumer.replicas = consumers;
                s.progress_deadline_seconds = deadline;
                s.strategy.blue_green = blue_green;
                s.strategy.canary = canary;
                s.analysis.interval = interval;
                s.analysis.initial_delay = initial_delay;
                s.analysis.checks = checks;
                s.analysis.successful_measurements_to_promote = to_promote;
                s.analysis.failure_limit = failure_limit;
                s.analysis.consecutive_failure_limit = consecutive;
                s
            },
        )
}

/// The longest deadline the decision computes for `spec`, or `None` if it overflows: initial
/// delay + interval × (rounds + failure limit + 1) + progress deadline + the longest step.
fn deadline_arithmetic_fits(spec: &AurenRuntimeSpec, steps: &[CheckedStep]) -> Option<Duration> {
    let interval = parse_duration(&spec.analysis.interval).ok()?;
    let initial = parse_duration(&spec.analysis.initial_delay).ok()?;
    let rounds = u32::try_from(
        spec.analysis
            .successful_measurements_to_promote
            .max(
                steps
                    .iter()
                    .map(|s| match s {
                        CheckedStep::AnalyzeCount(n) => *n,
                        _ => 0,
                    })
                    .max()
                    .unwrap_or(0),
            )
            .saturating_add(spec.analysis.failure_limit)
            .saturating_add(1),
    )
    .ok()?;
    let deadline = Duration::from_secs(u64::try_from(spec.progress_deadline_seconds).ok()?);
    let longest_step = steps
        .iter()
        .map(|s| match s {
            CheckedStep::Pause(Some(d)) | CheckedStep::AnalyzeFor(d) => *d,
            _ => Duration::ZERO,
        })
        .max()
        .unwrap_or_default();
    interval
        .checked_mul(rounds)?
        .checked_add(initial)?
        .checked_add(deadline)?
        .checked_add(longest_step)
}

// ---- a perfect world for the rollout: every plan comes true before the next decision ----

const V1: &str = "registry.local/auren-runtime:1.0.0";
const V2: &str = "registry.local/auren-runtime:2.0.0";

struct World {
    spec: AurenRuntimeSpec,
    status: AurenRuntimeStatus,
    annotations: BTreeMap<String, String>,
    releases: Vec<ReleaseState>,
    roles: BTreeMap<String, ConsumerRole>,
    measurements: Vec<Measurement>,
    now: i64,
}

impl World {
    fn new(spec: AurenRuntimeSpec) -> Self {
        World {
            spec,
            status: AurenRuntimeStatus::default(),
            annotations: BTreeMap::new(),
            releases: Vec::new(),
            roles: BTreeMap::new(),
            measurements: Vec::new(),
            now: 1_000,
        }
    }

    /// One reconcile: decide, then make the plan true (pods ready, roles switched, the
    /// requested measurement passing) and let the requested time pass.
    fn step(&mut self) -> Phase {
        let plan = decide(&Observed {
            spec: &self.spec,
            generation: 1,
            annotations: &self.annotations,
            status: &self.status,
            desired: revision::of(&self.spec).unwrap(),
            releases: &self.releases,
            measurements: &self.measurements,
            now: Timestamp::from_second(self.now).unwrap(),
        });
        self.status = plan.status.clone();
        self.measurements.clear();
        self.now += i64::try_from(plan.requeue_after.as_secs().clamp(1, 600)).unwrap();
        if let Some(world) = &plan.world {
            for switch in &world.role_switches {
                self.roles.insert(switch.revision.clone(), switch.role);
            }
            self.releases = world
                .releases
                .iter()
                .map(|r| {
                    let role = self.roles.get(&r.revision.hash).copied();
                    let n = r.consumer_replicas;
                    ReleaseState {
                        revision: r.revision.hash.clone(),
                        api: PodSet {
                            desired: r.api_replicas,
                            ready: r.api_replicas,
                            ..Default::default()
                        },
                        consumer: PodSet {
                            desired: n,
                            ready: n,
                            ..Default::default()
                        },
                        roles: match role {
                            Some(ConsumerRole::Active) => RoleCounts {
                                active: n,
                                ..Default::default()
                            },
                            _ => RoleCounts {
                                standby: n,
                                ..Default::default()
                            },
                        },
                    }
                })
                .collect();
            if let Some(request) = &world.analyze {
                let at = Time(Timestamp::from_second(self.now).unwrap());
                self.measurements = self
                    .spec
                    .analysis
                    .checks
                    .iter()
                    .map(|c| Measurement {
                        check: c.name.clone(),
                        revision: request.candidate.clone(),
                        value: Some(0.0),
                        threshold: "fuzz".into(),
                        verdict: Verdict::Pass,
                        reason: None,
                        at: at.clone(),
                    })
                    .collect();
            }
        }
        self.status.phase.unwrap()
    }

    /// Installs V1 (until Healthy), then rolls out V2: `decisions` reconciles in all.
    fn roll_out(&mut self, decisions: usize) -> Vec<Phase> {
        let mut phases = Vec::new();
        self.spec.image = V1.into();
        while phases.len() < decisions / 2 && phases.last() != Some(&Phase::Healthy) {
            phases.push(self.step());
        }
        self.spec.image = V2.into();
        while phases.len() < decisions {
            phases.push(self.step());
        }
        phases
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// Any text never panics `parse_duration`; what it accepts is exactly `^[0-9]+(ms|s|m|h)$`
    /// with the value the digits and unit name, and never longer than `MAX_DURATION`.
    #[test]
    fn parse_duration_accepts_only_what_it_means(text in prop_oneof![wild_duration(), ".{0,30}"]) {
        match parse_duration(&text) {
            Ok(d) => {
                let millis = duration_text_millis(&text);
                prop_assert_eq!(millis, Some(d.as_millis()), "{:?}", text);
                prop_assert!(d <= MAX_DURATION, "{text:?} -> {d:?}");
            }
            Err(e) => {
                prop_assert!(e.to_string().contains(&format!("{text:?}")), "{e}");
                prop_assert!(duration_text_millis(&text)
                    .is_none_or(|ms| ms > MAX_DURATION.as_millis()), "refused {text:?}");
            }
        }
    }

    /// Any spec, even one the CRD schema would refuse, never panics validation; a refusal
    /// lists at least one error, each with a message and a known `InvalidSpec` reason; an
    /// accepted spec has typed canary steps, one per step.
    #[test]
    fn validation_of_any_spec_is_total(spec in wild_spec()) {
        match validate(&spec) {
            Ok(()) => {
                let steps = canary_steps(&spec).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
                let written = spec.strategy.canary.as_ref().map_or(0, |c| c.steps.len());
                prop_assert_eq!(steps.len(), written);
            }
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                for e in &errors {
                    prop_assert!(!e.to_string().is_empty());
                    prop_assert!(REASONS.contains(&e.reason()), "{e:?}");
                }
            }
        }
    }

    /// An accepted schema-conforming spec has what the rollout decision relies on: weights in
    /// 0..=100, counts of at least one, durations at most `MAX_DURATION` and a non-zero
    /// interval, sane checks, and deadline arithmetic (initial delay + interval × rounds +
    /// progress deadline + the longest step) that cannot overflow.
    #[test]
    fn accepted_specs_are_safe_to_decide_on(spec in conforming_spec()) {
        prop_assume!(validate(&spec).is_ok());
        let steps = canary_steps(&spec).unwrap();
        for step in &steps {
            match step {
                CheckedStep::SetWeight(w) => prop_assert!((0..=100).contains(w)),
                CheckedStep::AnalyzeCount(n) => prop_assert!(*n >= 1),
                CheckedStep::Pause(d) => prop_assert!(d.is_none_or(|d| d <= MAX_DURATION)),
                CheckedStep::AnalyzeFor(d) => prop_assert!(*d <= MAX_DURATION),
            }
        }
        let interval = parse_duration(&spec.analysis.interval).unwrap();
        prop_assert!(!interval.is_zero() && interval <= MAX_DURATION);
        prop_assert!(parse_duration(&spec.analysis.initial_delay).unwrap() <= MAX_DURATION);
        prop_assert!(deadline_arithmetic_fits(&spec, &steps).is_some(), "{spec:?}");
        for c in &spec.analysis.checks {
            prop_assert!(c.quantile.is_none_or(|q| q > 0.0 && q < 1.0));
            prop_assert!(c.max.is_some() || c.min.is_some() || c.baseline.is_some());
            if let (Some(min), Some(max)) = (c.min, c.max) {
                prop_assert!(min <= max);
            }
            prop_assert_eq!(c.metric == MetricKind::Prometheus, c.prometheus.is_some());
        }
    }
}

proptest! {
    #![proptest_config(config(96))]

    /// A rollout of an accepted schema-conforming spec (install V1, then V2, in a world where
    /// every plan comes true and every measurement passes) never panics the decision and
    /// never reports the spec invalid.
    #[test]
    fn accepted_specs_roll_out_without_panics(spec in conforming_spec()) {
        prop_assume!(validate(&spec).is_ok());
        let phases = World::new(spec).roll_out(40);
        prop_assert!(!phases.contains(&Phase::InvalidSpec), "{phases:?}");
    }
}

// ---- regressions found by the properties above ----

/// Found by `accepted_specs_are_safe_to_decide_on` and `accepted_specs_roll_out_without_panics`
/// (same shrunk input): the CRD pattern `^[0-9]+(ms|s|m|h)$` bounds a duration's form, not its
/// size, and validation took any duration that fits `u64` milliseconds. With
/// `interval: 18446744073709551615ms` and 1000 measurements to promote, the analysis deadline
/// (`interval × rounds + progress deadline`) overflowed `Duration` and `rollout::decide`
/// panicked ("overflow when adding durations") on every reconcile once the candidate was
/// ready. Durations are now at most `MAX_DURATION`, so the spec is `InvalidSpec`.
#[test]
fn huge_interval_is_invalid_not_a_panic() {
    let mut spec = AurenRuntimeSpec::with_image(V1);
    spec.analysis.interval = "18446744073709551615ms".into();
    spec.analysis.successful_measurements_to_promote = 1000;
    spec.analysis.failure_limit = 1;
    let errors = validate(&spec).unwrap_err();
    assert!(
        matches!(&errors[..], [SpecError::Duration { field, .. }] if field == "analysis.interval"),
        "{errors:?}"
    );
    assert_eq!(errors[0].reason(), "InvalidDuration");
    let phases = World::new(spec).roll_out(20);
    assert!(
        phases.iter().all(|p| *p == Phase::InvalidSpec),
        "{phases:?}"
    );
}

/// The longest accepted duration, in every unit, still rolls out without overflow.
#[test]
fn the_longest_durations_roll_out() {
    for text in ["8760h", "525600m", "31536000s", "31536000000ms"] {
        assert_eq!(parse_duration(text), Ok(MAX_DURATION), "{text}");
        let mut spec = AurenRuntimeSpec::with_image(V1);
        spec.analysis.interval = text.into();
        spec.analysis.initial_delay = text.into();
        spec.analysis.successful_measurements_to_promote = 1000;
        spec.analysis.failure_limit = 1000;
        spec.strategy.canary = Some(CanarySpec {
            steps: vec![
                CanaryStep {
                    set_weight: Some(50),
                    ..Default::default()
                },
                CanaryStep {
                    analysis: Some(AnalysisStep {
                        count: None,
                        duration: Some(text.into()),
                    }),
                    ..Default::default()
                },
            ],
            consumers: CanaryConsumers::Handover,
            scale_down_delay_seconds: 30,
        });
        assert_eq!(validate(&spec), Ok(()));
        let phases = World::new(spec).roll_out(40);
        assert!(phases.contains(&Phase::Analyzing), "{phases:?}");
    }
    assert!(parse_duration("8761h").is_err());
}
