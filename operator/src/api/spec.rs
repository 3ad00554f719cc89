//! The `AurenRuntime` spec: what a platform team writes. Every doc comment here becomes the
//! schema description `kubectl explain aurenruntime.spec` shows.

use std::collections::BTreeMap;

use auren_contract::env;
use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::status::AurenRuntimeStatus;

mod analysis;
mod cel;
mod strategy;

pub use analysis::*;
pub use strategy::*;

pub use auren_contract::UnsafeSetting;

/// An image reference: optional registry/path, a name, and a tag and/or digest.
pub const IMAGE_PATTERN: &str =
    r"^[a-z0-9]+([._/:-]+[a-z0-9]+)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$";
/// A duration: a whole number followed by `ms`, `s`, `m` or `h` (for example `10s`, `5m`);
/// longer than `8760h` (a year) is refused as `InvalidSpec`.
pub const DURATION_PATTERN: &str = r"^[0-9]+(ms|s|m|h)$";
/// An environment variable name.
pub const ENV_NAME_PATTERN: &str = r"^[A-Za-z_][A-Za-z0-9_]*$";
/// Environment names the operator sets itself.
pub const RESERVED_ENV: [&str; 12] = [
    env::RUN_MODE,
    env::ADMIN_PORT,
    env::RELEASE,
    env::CONSUMER_ROLE,
    env::ADMIN_TOKEN,
    env::API_PORT,
    env::DATABASE_URL,
    env::KAFKA_BROKERS,
    env::KAFKA_TOPIC,
    env::KAFKA_GROUP,
    env::MAX_CONCURRENT_EVENTS,
    env::WEBHOOK_SECRETS_DIR,
];

/// AurenRuntime runs the AUREN runtime's API pods and consumer pods and moves them from release
/// to release with blue/green or canary cutovers gated on the runtime's own health metrics.
// Each printcolumn repeats `type_`; clippy takes the repeats for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "auren.io",
    version = "v1alpha1",
    kind = "AurenRuntime",
    namespaced,
    shortname = "ar",
    status = "AurenRuntimeStatus",
    // `kubectl scale` and a HorizontalPodAutoscaler set the API pods of the release serving
    // production; the consumers keep their own `consumer.replicas` (scaled by Kafka lag).
    scale(
        spec_replicas_path = ".spec.api.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    derive = "PartialEq",
    doc = "AurenRuntime runs the AUREN runtime (API and consumer pods) and cuts releases over safely.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Stable", type_ = "string", json_path = ".status.stable.hash"),
    printcolumn(
        name = "Candidate",
        type_ = "string",
        json_path = ".status.candidate.hash"
    ),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.ready"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.reason"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = cel::spec)]
pub struct AurenRuntimeSpec {
    /// Container image of the runtime, for example `registry.local/auren-runtime:1.4.2`.
    /// Changing it starts a new release.
    #[schemars(regex(pattern = IMAGE_PATTERN), length(min = 1, max = 512))]
    pub image: String,
    /// Extra environment variables of a release. A change starts a new release. Names the
    /// operator sets itself (RUN_MODE, AUREN_RELEASE, CONSUMER_ROLE, connection settings) are
    /// refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = cel::MAX_VARIABLES), transform = cel::keyed_by_name)]
    pub env: Vec<EnvVar>,
    /// Runtime settings of a release (for example `LOG_FORMAT: json`,
    /// `MAX_BATCH_EVENTS: "500"`), passed to the pods as environment variables. A change starts
    /// a new release; keys follow the same rules as `env`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = cel::bounded_config)]
    pub config: BTreeMap<String, String>,
    /// The API pods: they take webhooks and produce them to Kafka.
    #[serde(default)]
    pub api: ApiSpec,
    /// The consumer pods: they read Kafka and store events in PostgreSQL.
    #[serde(default)]
    pub consumer: ConsumerSpec,
    /// Where the runtime finds PostgreSQL, Kafka and its secrets. Secrets are referenced,
    /// never inlined.
    #[serde(default)]
    pub connections: ConnectionsSpec,
    /// How a new release replaces the stable one. Blue/green when empty.
    #[serde(default)]
    pub strategy: StrategySpec,
    /// How a candidate release is measured before (and just after) it becomes stable.
    #[serde(default)]
    pub analysis: AnalysisSpec,
    /// Seconds a release may take to make progress (pods ready, consumers handed over) before
    /// it is rolled back. Every phase ends within a bounded time derived from this.
    #[serde(default = "defaults::progress_deadline_seconds")]
    #[schemars(range(min = 10, max = 86400))]
    pub progress_deadline_seconds: i32,
    /// Freeze the rollout where it stands: no step is taken, no deadline runs, traffic and
    /// consumers stay where they are.
    #[serde(default)]
    pub paused: bool,
    /// Where the runtime's pods may run: node selector and tolerations, applied to the API and
    /// consumer pods of every release (part of the release: a change starts a new rollout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<PlacementSpec>,
    /// Security settings of the runtime container, over the operator's defaults (which pass
    /// Pod Security "restricted": non-root uid/gid 65532, read-only root filesystem, no
    /// privilege escalation, every capability dropped, seccomp RuntimeDefault). Each field set
    /// here replaces the default of that field; objects merge field by field, so
    /// `capabilities.add` alone keeps the default `drop: [ALL]` (set `capabilities.drop` to
    /// drop less). Part of the release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<k8s_openapi::api::core::v1::SecurityContext>,
    /// Pod-level security settings, over the operator's restricted defaults (runAsNonRoot,
    /// runAsUser/runAsGroup/fsGroup 65532, seccomp RuntimeDefault). Each field set here
    /// replaces the default of that field. Part of the release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_security_context: Option<k8s_openapi::api::core::v1::PodSecurityContext>,
    /// Unsafe runtime settings this resource runs on purpose. Without them the operator
    /// refuses `FAULT_*` settings other than 0 (`faults`) and `WEBHOOK_AUTH=disabled`
    /// (`webhookAuthDisabled`) in `env` and `config` (phase InvalidSpec, nothing rolled out);
    /// with them it runs them and says so in the `UnsafeSettings` condition and an Event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_unsafe: Vec<UnsafeSetting>,
    /// Where to send a notification on every phase change and rollback: a webhook (CloudEvents
    /// or Slack format) whose URL and signing key live in a Secret. Unset: the operator's
    /// default (chart value `notifications.secretName`), or none. Not part of the release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<NotificationsSpec>,
}

/// Outbound notifications of rollout transitions, sent by the operator (retried, never
/// blocking a rollout).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationsSpec {
    /// Secret in the AurenRuntime's namespace with the key `url` (where each notification is
    /// POSTed) and optionally `hmacKey`: with it every body is signed, headers
    /// `x-auren-timestamp` (Unix seconds) and `x-auren-signature: sha256=<hex HMAC-SHA256 of
    /// "{timestamp}.{body}">`.
    pub secret_ref: SecretRef,
    /// Body format: `cloudevents` (CloudEvents 1.0 structured mode, content type
    /// `application/cloudevents+json`) or `slack` (an incoming-webhook `{"text": ...}`).
    #[serde(default)]
    pub format: NotificationFormat,
}

/// A Secret in the AurenRuntime's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The body format of a notification.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum NotificationFormat {
    /// CloudEvents 1.0, structured JSON; `id` is the same for every delivery of one transition.
    #[default]
    #[serde(rename = "cloudevents")]
    CloudEvents,
    /// A Slack-compatible incoming webhook: `{"text": ...}`.
    #[serde(rename = "slack")]
    Slack,
}

impl NotificationFormat {
    /// Parses the chart's `notifications.format` (`cloudevents` or `slack`).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "cloudevents" => Some(NotificationFormat::CloudEvents),
            "slack" => Some(NotificationFormat::Slack),
            _ => None,
        }
    }
}

/// An environment variable with a literal value.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[schemars(transform = drop_empty_value_default, transform = cel::env_var)]
pub struct EnvVar {
    /// Variable name.
    #[schemars(regex(pattern = ENV_NAME_PATTERN), length(min = 1, max = 256))]
    pub name: String,
    /// Variable value.
    #[serde(default)]
    #[schemars(length(max = cel::MAX_VALUE_LENGTH))]
    pub value: String,
}

/// Kubernetes 1.20 reads the empty-string default of `value` as null and refuses the whole
/// CRD; an absent value still deserialises to "" through serde's default.
fn drop_empty_value_default(schema: &mut schemars::Schema) {
    let value = schema
        .get_mut("properties")
        .and_then(|p| p.get_mut("value"))
        .and_then(|v| v.as_object_mut());
    if let Some(value) = value {
        value.remove("default");
    }
}

/// Node placement of the runtime's pods.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementSpec {
    /// Labels a node must carry to run the pods (`spec.nodeSelector` of the pods).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pods tolerate (`spec.tolerations` of the pods).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<k8s_openapi::api::core::v1::Toleration>,
}

/// The API workload of each release.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = cel::api)]
pub struct ApiSpec {
    /// Number of API pods of the stable release.
    #[serde(default = "defaults::api_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,
    /// Port the API listens on inside the pod and the Services expose.
    #[serde(default = "defaults::api_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// CPU and memory requests and limits of the API container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// The consumer workload of each release.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerSpec {
    /// Number of consumer pods of the stable release (members of the production group).
    #[serde(default = "defaults::consumer_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,
    /// Kafka topic the API produces to and the consumers read.
    #[serde(default = "defaults::topic")]
    #[schemars(length(min = 1, max = 249))]
    pub topic: String,
    /// Kafka consumer group of the production consumers.
    #[serde(default = "defaults::group")]
    #[schemars(length(min = 1, max = 255))]
    pub group: String,
    /// Most events a consumer pod stores in one transaction (the runtime's
    /// `MAX_CONCURRENT_EVENTS`). Unset: the runtime's own default (5000 events or 4 MiB of
    /// records per transaction, see docs/runtime.md), which stores a backlog fastest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_concurrent_events: Option<i32>,
    /// CPU and memory requests and limits of the consumer container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// An autoscaler that sets the number of consumers instead of `replicas` (a KEDA
    /// ScaledObject scaling on Kafka lag, or a HorizontalPodAutoscaler), in this namespace.
    /// The operator points its `spec.scaleTargetRef` at the stable release's consumer
    /// Deployment (a new one with each release), never overrides the count the autoscaler
    /// sets, and starts a candidate's consumers with the stable release's current count.
    /// `replicas` is then only the count of the first release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaler: Option<AutoscalerRef>,
}

/// An autoscaler object the operator keeps pointed at the stable release's consumers.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalerRef {
    pub kind: AutoscalerKind,
    /// Its name, in the AurenRuntime's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The kinds of autoscaler the operator can point at a Deployment.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AutoscalerKind {
    /// KEDA's `keda.sh/v1alpha1` ScaledObject (for example with a `kafka` trigger on lag).
    ScaledObject,
    /// `autoscaling` HorizontalPodAutoscaler (any version: they are views of one object).
    HorizontalPodAutoscaler,
}

/// Connection settings, by reference to Secrets in the same namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionsSpec {
    /// Secret key holding the PostgreSQL URL (`postgres://user:pass@host:5432/db`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_url: Option<SecretKeyRef>,
    /// Comma-separated Kafka bootstrap servers, for example `kafka-0.kafka:9092`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_brokers: Option<String>,
    /// Name of a Secret with one key per device (its webhook signing secret), mounted read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secrets: Option<String>,
    /// Secret key holding the bearer token of the runtime's admin API (the consumer role
    /// switch). The operator reads it to drive cutovers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<SecretKeyRef>,
}

/// A key of a Secret in the AurenRuntime's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Defaults, named so the schema carries them and the apiserver fills them in.
pub mod defaults {
    use super::{Check, MetricKind};

    pub fn progress_deadline_seconds() -> i32 {
        600
    }
    pub fn api_replicas() -> i32 {
        2
    }
    pub fn api_port() -> i32 {
        8000
    }
    pub fn consumer_replicas() -> i32 {
        1
    }
    pub fn topic() -> String {
        "biometric-events".into()
    }
    pub fn group() -> String {
        "auren-consumers".into()
    }
    pub fn yes() -> bool {
        true
    }
    pub fn scale_down_delay_seconds() -> i32 {
        30
    }
    pub fn interval() -> String {
        "10s".into()
    }
    pub fn zero_duration() -> String {
        "0s".into()
    }
    pub fn successful_measurements() -> i32 {
        3
    }
    pub fn failure_limit() -> i32 {
        3
    }
    pub fn consecutive_failure_limit() -> i32 {
        2
    }
    /// One minute: six measurements at the default interval.
    pub fn max_live_outage_seconds() -> i32 {
        60
    }
    /// Error ratio under 1 % and no restarts: enough to catch a broken release by default.
    pub fn checks() -> Vec<Check> {
        vec![
            threshold("error-ratio", MetricKind::ErrorRatio, 0.01),
            threshold("restarts", MetricKind::Restarts, 0.0),
        ]
    }

    fn threshold(name: &str, metric: MetricKind, max: f64) -> Check {
        Check {
            name: name.into(),
            metric,
            quantile: None,
            prometheus: None,
            max: Some(max),
            min: None,
            baseline: None,
            no_data: None,
        }
    }
}

impl Default for ApiSpec {
    fn default() -> Self {
        Self {
            replicas: defaults::api_replicas(),
            port: defaults::api_port(),
            resources: None,
        }
    }
}

impl Default for ConsumerSpec {
    fn default() -> Self {
        Self {
            replicas: defaults::consumer_replicas(),
            topic: defaults::topic(),
            group: defaults::group(),
            max_concurrent_events: None,
            resources: None,
            autoscaler: None,
        }
    }
}

impl AurenRuntimeSpec {
    /// A spec with only an image; every other field at its default.
    pub fn with_image(image: &str) -> Self {
        Self {
            image: image.into(),
            env: Vec::new(),
            config: BTreeMap::new(),
            api: ApiSpec::default(),
            consumer: ConsumerSpec::default(),
            connections: ConnectionsSpec::default(),
            strategy: StrategySpec::default(),
            analysis: AnalysisSpec::default(),
            progress_deadline_seconds: defaults::progress_deadline_seconds(),
            paused: false,
            placement: None,
            security_context: None,
            pod_security_context: None,
            allow_unsafe: Vec::new(),
            notifications: None,
        }
    }

    /// The unsafe settings `env` and `config` turn on, with the variable that does it.
    pub fn unsafe_settings(&self) -> Vec<(UnsafeSetting, String)> {
        let vars = self.env.iter().map(|e| (e.name.as_str(), e.value.as_str()));
        let vars = vars.chain(self.config.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        vars.filter_map(|(name, value)| {
            UnsafeSetting::of_env(name, value).map(|s| (s, format!("{name}={value}")))
        })
        .collect()
    }

    /// Seconds the previous stable release stays up after a promotion.
    pub fn scale_down_delay_seconds(&self) -> i32 {
        match (&self.strategy.canary, &self.strategy.blue_green) {
            (Some(canary), _) => canary.scale_down_delay_seconds,
            (None, Some(bg)) => bg.scale_down_delay_seconds,
            (None, None) => defaults::scale_down_delay_seconds(),
        }
    }

    /// The blue/green settings in force (defaults when the strategy is empty).
    pub fn blue_green(&self) -> BlueGreenSpec {
        self.strategy.blue_green.clone().unwrap_or_default()
    }
}
