//! Validation in the controller. The API server checks the same rules at apply time (CEL and
//! OpenAPI rules in the generated CRD, `spec/cel.rs`); the controller checks them again for objects
//! stored before their CRD carried them. An invalid spec becomes an `InvalidSpec` condition.

use std::collections::BTreeSet;
use std::time::Duration;

use super::duration::{DurationError, parse_duration};
use super::spec::{
    AurenRuntimeSpec, CanaryConsumers, CanaryStep, Check, MetricKind, RESERVED_ENV, UnsafeSetting,
};

/// A rule of the spec that is broken.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("image {0:?} is empty or contains whitespace")]
    Image(String),
    #[error("strategy: set at most one of blueGreen and canary")]
    TwoStrategies,
    #[error("strategy.canary.steps[{index}]: set exactly one of setWeight, pause, analysis")]
    StepShape { index: usize },
    #[error("strategy.canary.steps[{index}].analysis: set exactly one of count, duration")]
    AnalysisStepShape { index: usize },
    #[error("{field}: {source}")]
    Duration {
        field: String,
        source: DurationError,
    },
    #[error("analysis.interval must be longer than zero")]
    ZeroInterval,
    #[error("{field}: {name:?} is not a valid environment variable name")]
    EnvName { field: &'static str, name: String },
    #[error("{field}: {name:?} is set by the operator and cannot be overridden")]
    ReservedEnv { field: &'static str, name: String },
    #[error("env and config: {name:?} is set more than once")]
    DuplicateEnv { name: String },
    #[error("analysis.checks: the name {name:?} is used more than once")]
    DuplicateCheck { name: String },
    #[error("analysis.checks[{name}]: {problem}")]
    Check { name: String, problem: &'static str },
    #[error(
        "{variable} is unsafe ({}): add {} to spec.allowUnsafe to run it on purpose",
        setting.as_str(), setting.as_str()
    )]
    UnsafeSetting {
        setting: UnsafeSetting,
        variable: String,
    },
    #[error("api.port {0} is the admin port: the admin API must not be exposed")]
    AdminPort(i32),
    #[error(
        "consumer.autoscaler cannot be used with strategy.canary.consumers: partitionShare \
         (the canary resizes both releases' consumers itself); use the default standby consumers"
    )]
    AutoscaledPartitionShare,
}

impl SpecError {
    /// CamelCase reason for conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            SpecError::Image(_) => "InvalidImage",
            SpecError::TwoStrategies => "TwoStrategies",
            SpecError::StepShape { .. } | SpecError::AnalysisStepShape { .. } => {
                "InvalidCanaryStep"
            }
            SpecError::Duration { .. } | SpecError::ZeroInterval => "InvalidDuration",
            SpecError::EnvName { .. } | SpecError::ReservedEnv { .. } => "InvalidEnv",
            SpecError::DuplicateEnv { .. } => "DuplicateEnv",
            SpecError::DuplicateCheck { .. } | SpecError::Check { .. } => "InvalidCheck",
            SpecError::UnsafeSetting { .. } => "UnsafeSettingRefused",
            SpecError::AdminPort(_) => "InvalidPort",
            SpecError::AutoscaledPartitionShare => "InvalidAutoscaler",
        }
    }
}

/// A canary step after validation.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckedStep {
    SetWeight(i32),
    /// `None`: wait until promoted.
    Pause(Option<Duration>),
    AnalyzeCount(i32),
    AnalyzeFor(Duration),
}

/// Checks every rule the schema cannot express; all problems at once.
pub fn validate(spec: &AurenRuntimeSpec) -> Result<(), Vec<SpecError>> {
    let mut errors = Vec::new();
    if spec.image.is_empty() || spec.image.contains(char::is_whitespace) {
        errors.push(SpecError::Image(spec.image.clone()));
    }
    if spec.strategy.blue_green.is_some() && spec.strategy.canary.is_some() {
        errors.push(SpecError::TwoStrategies);
    }
    if let Err(step_errors) = canary_steps(spec) {
        errors.extend(step_errors);
    }
    errors.extend(env_errors(spec));
    errors.extend(unsafe_errors(spec));
    if spec.api.port == i32::from(auren_contract::ports::ADMIN) {
        errors.push(SpecError::AdminPort(spec.api.port));
    }
    errors.extend(analysis_errors(spec));
    let share = spec.strategy.canary.as_ref().map(|c| c.consumers);
    if spec.consumer.autoscaler.is_some() && share == Some(CanaryConsumers::PartitionShare) {
        errors.push(SpecError::AutoscaledPartitionShare);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The canary steps, typed; empty for blue/green.
pub fn canary_steps(spec: &AurenRuntimeSpec) -> Result<Vec<CheckedStep>, Vec<SpecError>> {
    let Some(canary) = &spec.strategy.canary else {
        return Ok(Vec::new());
    };
    let (steps, errors): (Vec<_>, Vec<_>) = canary
        .steps
        .iter()
        .enumerate()
        .map(|(index, step)| check_step(index, step))
        .partition(Result::is_ok);
    if errors.is_empty() {
        Ok(steps.into_iter().flatten().collect())
    } else {
        Err(errors.into_iter().filter_map(Result::err).collect())
    }
}

fn check_step(index: usize, step: &CanaryStep) -> Result<CheckedStep, SpecError> {
    let field = |name: &str| format!("strategy.canary.steps[{index}].{name}");
    match (step.set_weight, &step.pause, &step.analysis) {
        (Some(weight), None, None) => Ok(CheckedStep::SetWeight(weight)),
        (None, Some(pause), None) => match &pause.duration {
            None => Ok(CheckedStep::Pause(None)),
            Some(text) => {
                duration(&field("pause.duration"), text).map(|d| CheckedStep::Pause(Some(d)))
            }
        },
        (None, None, Some(analysis)) => match (analysis.count, &analysis.duration) {
            (Some(count), None) => Ok(CheckedStep::AnalyzeCount(count)),
            (None, Some(text)) => {
                duration(&field("analysis.duration"), text).map(CheckedStep::AnalyzeFor)
            }
            _ => Err(SpecError::AnalysisStepShape { index }),
        },
        _ => Err(SpecError::StepShape { index }),
    }
}

fn duration(field: &str, text: &str) -> Result<Duration, SpecError> {
    parse_duration(text).map_err(|source| SpecError::Duration {
        field: field.to_owned(),
        source,
    })
}

fn env_errors(spec: &AurenRuntimeSpec) -> Vec<SpecError> {
    let names = spec.env.iter().map(|e| ("env", e.name.as_str()));
    let names = names.chain(spec.config.keys().map(|k| ("config", k.as_str())));
    let mut seen = BTreeSet::new();
    let mut errors = Vec::new();
    for (field, name) in names {
        if !is_env_name(name) {
            errors.push(SpecError::EnvName {
                field,
                name: name.to_owned(),
            });
        } else if RESERVED_ENV.contains(&name) {
            errors.push(SpecError::ReservedEnv {
                field,
                name: name.to_owned(),
            });
        } else if !seen.insert(name) {
            errors.push(SpecError::DuplicateEnv {
                name: name.to_owned(),
            });
        }
    }
    errors
}

/// Unsafe settings in `env` and `config` that `allowUnsafe` does not name.
fn unsafe_errors(spec: &AurenRuntimeSpec) -> Vec<SpecError> {
    spec.unsafe_settings()
        .into_iter()
        .filter(|(setting, _)| !spec.allow_unsafe.contains(setting))
        .map(|(setting, variable)| SpecError::UnsafeSetting { setting, variable })
        .collect()
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn analysis_errors(spec: &AurenRuntimeSpec) -> Vec<SpecError> {
    let analysis = &spec.analysis;
    let mut errors = Vec::new();
    match duration("analysis.interval", &analysis.interval) {
        Ok(d) if d.is_zero() => errors.push(SpecError::ZeroInterval),
        Ok(_) => {}
        Err(e) => errors.push(e),
    }
    if let Err(e) = duration("analysis.initialDelay", &analysis.initial_delay) {
        errors.push(e);
    }
    let mut names = BTreeSet::new();
    for check in &analysis.checks {
        if !names.insert(check.name.as_str()) {
            errors.push(SpecError::DuplicateCheck {
                name: check.name.clone(),
            });
        }
        errors.extend(check_problem(check).map(|problem| SpecError::Check {
            name: check.name.clone(),
            problem,
        }));
    }
    errors
}

fn check_problem(check: &Check) -> Option<&'static str> {
    let is_prometheus = check.metric == MetricKind::Prometheus;
    if is_prometheus != check.prometheus.is_some() {
        return Some("prometheus is required with metric prometheus and allowed only there");
    }
    if check.quantile.is_some() && check.metric != MetricKind::Latency {
        return Some("quantile is allowed only with metric latency");
    }
    if check.quantile.is_some_and(|q| !(q > 0.0 && q < 1.0)) {
        return Some("quantile must be between 0 and 1 (exclusive)");
    }
    if check.max.is_none() && check.min.is_none() && check.baseline.is_none() {
        return Some("set max, min or baseline");
    }
    if let (Some(min), Some(max)) = (check.min, check.max)
        && min > max
    {
        return Some("min is greater than max");
    }
    baseline_problem(check, is_prometheus)
}

fn baseline_problem(check: &Check, is_prometheus: bool) -> Option<&'static str> {
    let baseline = check.baseline.as_ref()?;
    if is_prometheus {
        return Some("baseline is not available for prometheus checks");
    }
    if baseline.max_factor.is_none() && baseline.max_increase.is_none() {
        return Some("baseline needs maxFactor or maxIncrease");
    }
    None
}

#[cfg(test)]
mod tests;
