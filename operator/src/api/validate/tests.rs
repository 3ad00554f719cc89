use super::*;
use crate::api::spec::{
    AnalysisStep, Baseline, BlueGreenSpec, CanarySpec, EnvVar, PauseStep, PrometheusQuery,
};

fn minimal() -> AurenRuntimeSpec {
    AurenRuntimeSpec::with_image("registry.local/auren-runtime:1.0.0")
}

fn canary(steps: Vec<CanaryStep>) -> AurenRuntimeSpec {
    let mut spec = minimal();
    spec.strategy.canary = Some(CanarySpec {
        steps,
        consumers: Default::default(),
        scale_down_delay_seconds: 30,
    });
    spec
}

fn reasons(spec: &AurenRuntimeSpec) -> Vec<&'static str> {
    validate(spec)
        .err()
        .unwrap_or_default()
        .iter()
        .map(SpecError::reason)
        .collect()
}

fn weight(w: i32) -> CanaryStep {
    CanaryStep {
        set_weight: Some(w),
        ..Default::default()
    }
}

#[test]
fn minimal_spec_is_valid() {
    assert_eq!(validate(&minimal()), Ok(()));
}

fn with_config(pairs: &[(&str, &str)]) -> AurenRuntimeSpec {
    let mut spec = minimal();
    for (k, v) in pairs {
        spec.config.insert((*k).into(), (*v).into());
    }
    spec
}

#[test]
fn unsafe_settings_are_refused_unless_allowed_on_purpose() {
    let faults = with_config(&[("FAULT_ERROR_RATE", "0.2")]);
    assert_eq!(reasons(&faults), ["UnsafeSettingRefused"]);
    let message = validate(&faults).unwrap_err()[0].to_string();
    assert!(message.contains("FAULT_ERROR_RATE=0.2"), "{message}");
    assert!(message.contains("spec.allowUnsafe"), "{message}");

    let mut open = minimal();
    open.env.push(EnvVar {
        name: "WEBHOOK_AUTH".into(),
        value: "Disabled".into(),
    });
    assert_eq!(reasons(&open), ["UnsafeSettingRefused"]);
    let latency = with_config(&[("FAULT_LATENCY_MS", "50")]);
    assert_eq!(reasons(&latency), ["UnsafeSettingRefused"]);
    let unknown_fault = with_config(&[("FAULT_ANYTHING", "yes")]);
    assert_eq!(reasons(&unknown_fault), ["UnsafeSettingRefused"]);

    let mut allowed = with_config(&[("FAULT_ERROR_RATE", "0.2"), ("WEBHOOK_AUTH", "disabled")]);
    allowed.allow_unsafe = vec![UnsafeSetting::Faults];
    assert_eq!(
        reasons(&allowed),
        ["UnsafeSettingRefused"],
        "auth still refused"
    );
    allowed
        .allow_unsafe
        .push(UnsafeSetting::WebhookAuthDisabled);
    assert_eq!(validate(&allowed), Ok(()));

    let off = with_config(&[
        ("FAULT_ERROR_RATE", "0"),
        ("FAULT_LATENCY_MS", "0.0"),
        ("WEBHOOK_AUTH", "required"),
    ]);
    assert_eq!(validate(&off), Ok(()), "settings that are off are safe");
}

#[test]
fn the_admin_port_is_reserved() {
    let mut spec = minimal();
    spec.api.port = 8001;
    assert_eq!(reasons(&spec), ["InvalidPort"]);
    let admin = with_config(&[("ADMIN_PORT", "9000")]);
    assert_eq!(reasons(&admin), ["InvalidEnv"]);
}

#[test]
fn each_broken_rule_is_reported_with_its_reason() {
    let mut two = minimal();
    two.strategy.blue_green = Some(BlueGreenSpec::default());
    two.strategy.canary = canary(vec![weight(10)]).strategy.canary;

    let mut reserved = minimal();
    reserved.env.push(EnvVar {
        name: "RUN_MODE".into(),
        value: "api".into(),
    });

    let mut bad_name = minimal();
    bad_name.config.insert("1BAD".into(), "x".into());

    let mut duplicate = minimal();
    duplicate.env.push(EnvVar {
        name: "LOG_FORMAT".into(),
        value: "json".into(),
    });
    duplicate.config.insert("LOG_FORMAT".into(), "text".into());

    let mut zero_interval = minimal();
    zero_interval.analysis.interval = "0s".into();

    let mut bad_delay = minimal();
    bad_delay.analysis.initial_delay = "soon".into();

    let mut image = minimal();
    image.image = "auren runtime".into();

    let autoscaler = Some(crate::api::AutoscalerRef {
        kind: crate::api::AutoscalerKind::ScaledObject,
        name: "consumers".into(),
    });
    let mut shared_and_autoscaled = canary(vec![weight(10)]);
    if let Some(c) = shared_and_autoscaled.strategy.canary.as_mut() {
        c.consumers = CanaryConsumers::PartitionShare;
    }
    shared_and_autoscaled.consumer.autoscaler = autoscaler.clone();
    let mut standby_and_autoscaled = canary(vec![weight(10)]);
    standby_and_autoscaled.consumer.autoscaler = autoscaler;
    assert_eq!(validate(&standby_and_autoscaled), Ok(()));

    let cases: Vec<(&str, AurenRuntimeSpec, &str)> = vec![
        ("two strategies", two, "TwoStrategies"),
        ("reserved env", reserved, "InvalidEnv"),
        ("bad env name", bad_name, "InvalidEnv"),
        ("duplicate env", duplicate, "DuplicateEnv"),
        ("zero interval", zero_interval, "InvalidDuration"),
        ("bad initial delay", bad_delay, "InvalidDuration"),
        ("whitespace image", image, "InvalidImage"),
        (
            "autoscaled partition share",
            shared_and_autoscaled,
            "InvalidAutoscaler",
        ),
        (
            "empty step",
            canary(vec![CanaryStep::default()]),
            "InvalidCanaryStep",
        ),
        (
            "step with two actions",
            canary(vec![CanaryStep {
                set_weight: Some(10),
                pause: Some(PauseStep::default()),
                analysis: None,
            }]),
            "InvalidCanaryStep",
        ),
        (
            "analysis step without count or duration",
            canary(vec![CanaryStep {
                analysis: Some(AnalysisStep::default()),
                ..Default::default()
            }]),
            "InvalidCanaryStep",
        ),
        (
            "bad pause duration",
            canary(vec![CanaryStep {
                pause: Some(PauseStep {
                    duration: Some("1y".into()),
                }),
                ..Default::default()
            }]),
            "InvalidDuration",
        ),
    ];
    for (name, spec, reason) in cases {
        assert_eq!(reasons(&spec), vec![reason], "{name}");
    }
}

#[test]
fn check_rules() {
    let base = defaults_check();
    let cases: Vec<(&str, Check, bool)> = vec![
        ("plain max", base.clone(), true),
        (
            "no bound",
            Check {
                max: None,
                ..base.clone()
            },
            false,
        ),
        (
            "min above max",
            Check {
                min: Some(2.0),
                max: Some(1.0),
                ..base.clone()
            },
            false,
        ),
        (
            "quantile on error ratio",
            Check {
                quantile: Some(0.9),
                ..base.clone()
            },
            false,
        ),
        (
            "latency quantile 1.0",
            Check {
                metric: MetricKind::Latency,
                quantile: Some(1.0),
                ..base.clone()
            },
            false,
        ),
        (
            "prometheus without query",
            Check {
                metric: MetricKind::Prometheus,
                ..base.clone()
            },
            false,
        ),
        (
            "prometheus with query",
            Check {
                metric: MetricKind::Prometheus,
                prometheus: Some(PrometheusQuery {
                    address: "http://p:9090".into(),
                    query: "up".into(),
                }),
                ..base.clone()
            },
            true,
        ),
        (
            "empty baseline",
            Check {
                max: None,
                baseline: Some(Baseline {
                    max_factor: None,
                    max_increase: None,
                }),
                ..base.clone()
            },
            false,
        ),
        (
            "baseline only",
            Check {
                max: None,
                baseline: Some(Baseline {
                    max_factor: Some(1.2),
                    max_increase: None,
                }),
                ..base.clone()
            },
            true,
        ),
    ];
    for (name, check, valid) in cases {
        let mut spec = minimal();
        spec.analysis.checks = vec![check];
        assert_eq!(
            validate(&spec).is_ok(),
            valid,
            "{name}: {:?}",
            validate(&spec)
        );
    }
}

#[test]
fn duplicate_check_names_are_refused() {
    let mut spec = minimal();
    spec.analysis.checks = vec![defaults_check(), defaults_check()];
    assert_eq!(reasons(&spec), vec!["InvalidCheck"]);
}

#[test]
fn canary_steps_are_typed_in_order() {
    let spec = canary(vec![
        weight(25),
        CanaryStep {
            pause: Some(PauseStep {
                duration: Some("30s".into()),
            }),
            ..Default::default()
        },
        CanaryStep {
            pause: Some(PauseStep::default()),
            ..Default::default()
        },
        CanaryStep {
            analysis: Some(AnalysisStep {
                count: Some(3),
                duration: None,
            }),
            ..Default::default()
        },
        CanaryStep {
            analysis: Some(AnalysisStep {
                count: None,
                duration: Some("2m".into()),
            }),
            ..Default::default()
        },
    ]);
    assert_eq!(
        canary_steps(&spec),
        Ok(vec![
            CheckedStep::SetWeight(25),
            CheckedStep::Pause(Some(Duration::from_secs(30))),
            CheckedStep::Pause(None),
            CheckedStep::AnalyzeCount(3),
            CheckedStep::AnalyzeFor(Duration::from_secs(120)),
        ])
    );
}

fn defaults_check() -> Check {
    crate::api::spec::defaults::checks().remove(0)
}
