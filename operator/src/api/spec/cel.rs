//! The rules the API server checks when an AurenRuntime is applied: CEL expressions in the
//! generated CRD's `x-kubernetes-validations`, attached to the types they guard with
//! `#[schemars(transform = ...)]` (issue 32). A GitOps sync of a bad spec fails at the API
//! server, which prefixes each message with the field's path (`spec.strategy: Invalid value:
//! "object": set at most one of blueGreen and canary`).
//!
//! `validate` checks the same rules in the controller: the API server checks a stored object
//! only when it is written, so one stored before its CRD carried these rules (an upgrade from
//! an older CRD) meets them there first. docs/crd-reference.md lists which rule lives where.
//! Every rule runs against the real API server in e2e/tests/operator.rs.

use auren_contract::env;
use schemars::Schema;
use serde_json::{Value, json};

use super::{ENV_NAME_PATTERN, RESERVED_ENV, UnsafeSetting};

/// Longest duration a spec may name (the controller's `MAX_DURATION`), in Go's notation.
const LONGEST_DURATION: &str = "8760h";
/// A number Rust's `f64` parser reads as zero, after trimming (`0`, `0.0`, `-0`, `.0`, `0e3`):
/// a `FAULT_*` setting with such a value is off ([`UnsafeSetting::of_env`]). CEL string literals
/// know no `\.` escape, so a dot is written `[.]`.
const ZERO_NUMBER: &str = r"^[+-]?(0+[.]?0*|[.]0+)([eE][+-]?[0-9]+)?$";
/// Most entries of `env` and of `config`, and the longest value of either: bounds that keep the
/// rules' cost, which the API server estimates for the largest object the schema allows, in
/// budget.
pub const MAX_VARIABLES: u64 = 128;
pub const MAX_VALUE_LENGTH: u64 = 4096;

/// Appends `rule` with its `message` to the schema's `x-kubernetes-validations`.
fn require(schema: &mut Schema, rule: &str, message: &str) {
    let entry = json!({"rule": rule, "message": message});
    let rules = schema
        .ensure_object()
        .entry("x-kubernetes-validations")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(rules) = rules {
        rules.push(entry);
    }
}

/// `field`, when set, is a duration of at most a year (the pattern has checked its shape).
fn at_most_a_year(field: &str) -> String {
    format!("!has(self.{field}) || duration(self.{field}) <= duration('{LONGEST_DURATION}')")
}

/// A CEL list literal of strings.
fn list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("'{i}'")).collect();
    format!("[{}]", quoted.join(", "))
}

/// The whole spec: rules across `env`, `config`, `allowUnsafe`, `consumer` and `strategy`.
pub fn spec(schema: &mut Schema) {
    let reserved = list(&RESERVED_ENV);
    require(
        schema,
        &format!("!has(self.config) || self.config.all(k, k.matches('{ENV_NAME_PATTERN}'))"),
        "config: every key must be an environment variable name (letters, digits, _; not starting with a digit)",
    );
    require(
        schema,
        &format!("!has(self.config) || self.config.all(k, !(k in {reserved}))"),
        &format!(
            "config: the operator sets {} itself",
            RESERVED_ENV.join(", ")
        ),
    );
    require(
        schema,
        "!has(self.env) || !has(self.config) || self.env.all(e, !(e.name in self.config))",
        "env and config: a variable is set in both",
    );
    require(
        schema,
        &faults_allowed(),
        &refused(UnsafeSetting::Faults, "a FAULT_* setting other than 0"),
    );
    require(
        schema,
        &webhook_auth_allowed(),
        &refused(UnsafeSetting::WebhookAuthDisabled, "WEBHOOK_AUTH=disabled"),
    );
    require(
        schema,
        "!(has(self.consumer) && has(self.consumer.autoscaler) && has(self.strategy) \
         && has(self.strategy.canary) && has(self.strategy.canary.consumers) \
         && self.strategy.canary.consumers == 'partitionShare')",
        "consumer.autoscaler cannot be used with strategy.canary.consumers: partitionShare \
         (the canary resizes both releases' consumers itself)",
    );
}

fn refused(setting: UnsafeSetting, what: &str) -> String {
    format!(
        "env and config: {what} is unsafe and refused unless allowUnsafe lists {}",
        setting.as_str()
    )
}

fn allowed(setting: UnsafeSetting) -> String {
    format!(
        "(has(self.allowUnsafe) && '{}' in self.allowUnsafe)",
        setting.as_str()
    )
}

/// No `FAULT_*` variable is on, or `allowUnsafe` lists `faults`.
fn faults_allowed() -> String {
    let prefix = env::FAULT_PREFIX;
    let off = |value: &str| format!("{value}.trim().matches('{ZERO_NUMBER}')");
    format!(
        "{} || ((!has(self.env) || self.env.all(e, !e.name.startsWith('{prefix}') || {})) \
         && (!has(self.config) || self.config.all(k, !k.startsWith('{prefix}') || {})))",
        allowed(UnsafeSetting::Faults),
        off("e.value"),
        off("self.config[k]"),
    )
}

/// `WEBHOOK_AUTH` is not `disabled` (any case), or `allowUnsafe` lists `webhookAuthDisabled`.
fn webhook_auth_allowed() -> String {
    let (name, disabled) = (env::WEBHOOK_AUTH, env::WEBHOOK_AUTH_DISABLED);
    let open = |value: &str| format!("{value}.trim().lowerAscii() == '{disabled}'");
    format!(
        "{} || ((!has(self.env) || !self.env.exists(e, e.name == '{name}' && {})) \
         && (!has(self.config) || !('{name}' in self.config) || !({})))",
        allowed(UnsafeSetting::WebhookAuthDisabled),
        open("e.value"),
        open(&format!("self.config['{name}']")),
    )
}

/// One `env` entry: not a name the operator sets.
pub fn env_var(schema: &mut Schema) {
    require(
        schema,
        &format!("!(self.name in {})", list(&RESERVED_ENV)),
        &format!("the operator sets {} itself", RESERVED_ENV.join(", ")),
    );
}

/// A list whose entries are told apart by `name`: the API server refuses a name twice, and
/// server-side apply merges entries by name (as it does a pod's `env`).
pub fn keyed_by_name(schema: &mut Schema) {
    let object = schema.ensure_object();
    object.insert("x-kubernetes-list-type".into(), json!("map"));
    object.insert("x-kubernetes-list-map-keys".into(), json!(["name"]));
}

/// `config`: bounded like `env`, so the rules over it stay in the cost budget.
pub fn bounded_config(schema: &mut Schema) {
    let object = schema.ensure_object();
    object.insert("maxProperties".into(), json!(MAX_VARIABLES));
    if let Some(Value::Object(values)) = object.get_mut("additionalProperties") {
        values.insert("maxLength".into(), json!(MAX_VALUE_LENGTH));
    }
}

/// The API pods: never on the admin port.
pub fn api(schema: &mut Schema) {
    let admin = auren_contract::ports::ADMIN;
    require(
        schema,
        &format!("self.port != {admin}"),
        &format!("port {admin} is the admin port: the admin API must not be exposed"),
    );
}

pub fn strategy(schema: &mut Schema) {
    require(
        schema,
        "!has(self.blueGreen) || !has(self.canary)",
        "set at most one of blueGreen and canary",
    );
}

pub fn canary_step(schema: &mut Schema) {
    require(
        schema,
        "[has(self.setWeight), has(self.pause), has(self.analysis)].exists_one(x, x)",
        "a canary step sets exactly one of setWeight, pause and analysis",
    );
}

pub fn pause_step(schema: &mut Schema) {
    require(
        schema,
        &at_most_a_year("duration"),
        "duration: at most 8760h (a year)",
    );
}

pub fn analysis_step(schema: &mut Schema) {
    require(
        schema,
        "has(self.count) != has(self.duration)",
        "an analysis step sets exactly one of count and duration",
    );
    require(
        schema,
        &at_most_a_year("duration"),
        "duration: at most 8760h (a year)",
    );
}

pub fn analysis(schema: &mut Schema) {
    require(
        schema,
        "!has(self.interval) || duration(self.interval) > duration('0s')",
        "interval must be longer than zero",
    );
    require(
        schema,
        &at_most_a_year("interval"),
        "interval: at most 8760h (a year)",
    );
    require(
        schema,
        &at_most_a_year("initialDelay"),
        "initialDelay: at most 8760h (a year)",
    );
}

pub fn check(schema: &mut Schema) {
    let rules = [
        (
            "(self.metric == 'prometheus') == has(self.prometheus)",
            "prometheus is required with metric prometheus and allowed only there",
        ),
        (
            "!has(self.quantile) || self.metric == 'latency'",
            "quantile is allowed only with metric latency",
        ),
        (
            "!has(self.quantile) || (self.quantile > 0.0 && self.quantile < 1.0)",
            "quantile must be between 0 and 1 (exclusive)",
        ),
        (
            "has(self.max) || has(self.min) || has(self.baseline)",
            "set max, min or baseline",
        ),
        (
            "!has(self.min) || !has(self.max) || self.min <= self.max",
            "min is greater than max",
        ),
        (
            "!has(self.baseline) || self.metric != 'prometheus'",
            "baseline is not available for prometheus checks",
        ),
    ];
    for (rule, message) in rules {
        require(schema, rule, message);
    }
}

pub fn baseline(schema: &mut Schema) {
    require(
        schema,
        "has(self.maxFactor) || has(self.maxIncrease)",
        "baseline needs maxFactor or maxIncrease",
    );
}
