//! The contract between `auren-runtime` and `auren-operator`.
//!
//! Both sides import this crate and nothing else of each other: the operator scrapes the
//! runtime's metrics by these names, drives the consumer role through this admin API and
//! passes the release through these environment variables. No I/O lives here.

use serde::{Deserialize, Serialize};

/// Prometheus metric names the runtime exports and the operator's analysis reads.
pub mod metrics {
    /// Counter of HTTP requests, labelled `route`, `method`, `status`.
    pub const HTTP_REQUESTS: &str = "auren_runtime_http_requests";
    /// Histogram of HTTP request latency in seconds, labelled `route`.
    pub const HTTP_REQUEST_DURATION: &str = "auren_runtime_http_request_duration_seconds";
    /// Counter of events acknowledged by Kafka and answered with 202.
    pub const EVENTS_ACCEPTED: &str = "auren_runtime_events_accepted";
    /// Counter of events stored in PostgreSQL by the consumer (new rows only).
    pub const EVENTS_STORED: &str = "auren_runtime_events_stored";
    /// Counter of records sent to the dead-letter topic.
    pub const EVENTS_DEAD_LETTERED: &str = "auren_runtime_events_dead_lettered";
    /// Counter of events that failed (produce errors, store errors), labelled `stage`.
    pub const EVENTS_FAILED: &str = "auren_runtime_events_failed";
    /// Gauge of consumer lag in records, labelled `partition`.
    pub const CONSUMER_LAG: &str = "auren_runtime_consumer_lag";
    /// Histogram of consumer batch sizes.
    pub const CONSUMER_BATCH_SIZE: &str = "auren_runtime_consumer_batch_size";
    /// Gauge: 1 when the consumer is active (consuming for real), 0 on standby.
    pub const CONSUMER_ACTIVE: &str = "auren_runtime_consumer_active";
    /// Counter of group joins an active consumer started again because the one in flight had
    /// not completed within its patience (no partition assignment, not even an empty one).
    pub const CONSUMER_REJOINS: &str = "auren_runtime_consumer_rejoins";
    /// Gauge of circuit-breaker state, labelled `dependency`: 0 closed, 1 half-open, 2 open.
    pub const CIRCUIT_BREAKER_STATE: &str = "auren_runtime_circuit_breaker_state";
    /// Gauges of the PostgreSQL pool: `state` = idle | in_use.
    pub const DB_POOL_CONNECTIONS: &str = "auren_runtime_db_pool_connections";
    /// Info gauge (always 1), labelled `version`, `release`, `mode`.
    pub const BUILD_INFO: &str = "auren_runtime_build_info";
    /// Gauge: 1 while the runtime reports itself ready.
    pub const READY: &str = "auren_runtime_ready";
    /// Counter of signed webhooks refused (409 `replayed`) because the same signed request was
    /// already accepted or is in flight on this pod.
    pub const WEBHOOKS_REPLAYED: &str = "auren_runtime_webhooks_replayed";
    /// Gauge of signed requests the replay guard remembers on this pod.
    pub const WEBHOOK_SIGNATURES_REMEMBERED: &str = "auren_runtime_webhook_signatures_remembered";
    /// Counter of early rotations of the replay guard (its memory cap was hit, so the oldest
    /// remembered signatures were forgotten before they expired).
    pub const WEBHOOK_REPLAY_EARLY_ROTATIONS: &str = "auren_runtime_webhook_replay_early_rotations";
    /// Gauge labelled `setting` ([`super::UnsafeSetting::label`]): 1 while that unsafe setting
    /// is on, 0 otherwise.
    pub const UNSAFE_SETTING: &str = "auren_runtime_unsafe_setting";
}

/// `/health` component names the operator's readiness gate knows.
pub mod components {
    /// Present (degraded) while fault injection is on.
    pub const FAULTS: &str = "faults";
    /// Present (degraded) while webhook signatures are off (API mode).
    pub const WEBHOOK_AUTH: &str = "webhook_auth";
    /// Kafka, in both modes; also the `dependency` label of the circuit-breaker gauge.
    pub const KAFKA: &str = "kafka";
    /// PostgreSQL, in consumer mode.
    pub const DATABASE: &str = "database";
    /// The dependencies a release shares with every other release of it. When they are not
    /// healthy, a failing check may be an outage rather than the release's fault (the
    /// operator's analysis).
    pub const DEPENDENCIES: [&str; 2] = [KAFKA, DATABASE];
}

/// `/health` as a long poll: the operator follows each pod's health by asking
/// `GET /health?unless=<change>&wait=<seconds>`. The runtime answers at once when its report's
/// `change` differs from `unless`, and otherwise when it changes or `wait` seconds have passed
/// (or the pod begins to stop). `change` names the pod's current health state (the overall
/// status and each component's status); it differs across restarts of the process.
pub mod health_watch {
    /// Query parameter: the `change` the caller already knows.
    pub const UNLESS: &str = "unless";
    /// Query parameter: seconds to hold the request while nothing changes.
    pub const WAIT: &str = "wait";
    /// The longest wait the runtime honours (a longer one is cut to it).
    pub const MAX_WAIT_SECONDS: u64 = 60;
}

/// Ports every runtime pod listens on.
pub mod ports {
    /// Default port of the admin API (`ADMIN_PORT`): never exposed by a Service, only the
    /// operator calls it.
    pub const ADMIN: u16 = 8001;
}

/// HTTP paths every runtime pod serves.
pub mod paths {
    pub const HEALTH: &str = "/health";
    pub const READINESS: &str = "/readiness";
    pub const LIVE: &str = "/live";
    pub const METRICS: &str = "/metrics";
    /// Every admin route starts with it; served on the admin port only ([`super::ports::ADMIN`]).
    pub const ADMIN_PREFIX: &str = "/admin/";
    /// GET: the consumer's current role; PUT with a [`super::RoleChange`] body: switch it.
    /// Admin port only.
    pub const ADMIN_CONSUMER_ROLE: &str = "/admin/consumer/role";
}

/// HTTP header names.
pub mod headers {
    /// Unix seconds at which the webhook was signed.
    pub const TIMESTAMP: &str = "x-auren-timestamp";
    /// `sha256=<hex>` HMAC-SHA256 over `"{timestamp}.{body}"`.
    pub const SIGNATURE: &str = "x-auren-signature";
    /// The release that served a response, so clients can count who answered.
    pub const RELEASE: &str = "x-auren-release";
    /// Request id, echoed back.
    pub const REQUEST_ID: &str = "x-request-id";
}

/// The one signature scheme of AUREN: HMAC-SHA256 over `"{timestamp}.{body}"`, sent as
/// `sha256=<hex>` in [`headers::SIGNATURE`] with the unix seconds in [`headers::TIMESTAMP`].
/// Devices sign webhooks to the runtime with it; the operator signs its notifications with it.
pub mod signature {
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    /// The MAC of one signed message, ready to finalize or verify.
    pub type MessageMac = Hmac<Sha256>;

    /// The MAC over `"{timestamp}.{body}"`; HMAC takes keys of any length, so this is `None`
    /// only in theory.
    pub fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Option<MessageMac> {
        let mut m = MessageMac::new_from_slice(secret).ok()?;
        m.update(timestamp.as_bytes());
        m.update(b".");
        m.update(body);
        Some(m)
    }

    /// The header value a sender puts in [`super::headers::SIGNATURE`]: `sha256=<hex>`.
    pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
        mac(secret, &timestamp.to_string(), body)
            .map(|m| format!("sha256={}", hex::encode(m.finalize().into_bytes())))
            .unwrap_or_default()
    }
}

/// Environment variable names the operator sets on runtime pods.
pub mod env {
    pub const RUN_MODE: &str = "RUN_MODE";
    /// A release label (the operator sets the revision hash; the image tag by default).
    pub const RELEASE: &str = "AUREN_RELEASE";
    /// Initial consumer role: `active` or `standby`.
    pub const CONSUMER_ROLE: &str = "CONSUMER_ROLE";
    /// Bearer token for the admin API.
    pub const ADMIN_TOKEN: &str = "ADMIN_TOKEN";
    /// TCP port of the public HTTP server (webhooks, health, readiness, metrics).
    pub const API_PORT: &str = "API_PORT";
    /// TCP port of the admin API (default [`super::ports::ADMIN`]).
    pub const ADMIN_PORT: &str = "ADMIN_PORT";
    /// `required` (default) or `disabled` (unsafe: no webhook signatures).
    pub const WEBHOOK_AUTH: &str = "WEBHOOK_AUTH";
    /// The value of [`WEBHOOK_AUTH`] that turns signatures off.
    pub const WEBHOOK_AUTH_DISABLED: &str = "disabled";
    /// Prefix of the fault-injection settings (`FAULT_ERROR_RATE`, `FAULT_LATENCY_MS`).
    pub const FAULT_PREFIX: &str = "FAULT_";
    /// PostgreSQL connection URL.
    pub const DATABASE_URL: &str = "DATABASE_URL";
    /// Comma-separated Kafka bootstrap servers.
    pub const KAFKA_BROKERS: &str = "KAFKA_BROKERS";
    /// Topic the API produces to and the consumer reads.
    pub const KAFKA_TOPIC: &str = "KAFKA_TOPIC";
    /// Consumer group of the production consumers.
    pub const KAFKA_GROUP: &str = "KAFKA_GROUP";
    /// Upper bound of events processed concurrently.
    pub const MAX_CONCURRENT_EVENTS: &str = "MAX_CONCURRENT_EVENTS";
    /// Directory holding one webhook secret file per device.
    pub const WEBHOOK_SECRETS_DIR: &str = "WEBHOOK_SECRETS_DIR";
}

/// Values of [`env::RUN_MODE`].
pub mod run_mode {
    /// Serve webhooks and produce to Kafka.
    pub const API: &str = "api";
    /// Consume from Kafka and store events.
    pub const CONSUMER: &str = "consumer";
}

/// A setting that makes a runtime unsafe for production. The runtime reports each one that is
/// on (a warning at start, a degraded `/health` component, the gauge
/// `auren_runtime_unsafe_setting`); the operator runs it only when the AurenRuntime lists it in
/// `spec.allowUnsafe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum UnsafeSetting {
    /// Fault injection: a `FAULT_*` setting (`FAULT_ERROR_RATE`, `FAULT_LATENCY_MS`) other
    /// than 0.
    Faults,
    /// `WEBHOOK_AUTH=disabled`: webhooks without signatures (API mode).
    WebhookAuthDisabled,
}

impl UnsafeSetting {
    pub const ALL: [UnsafeSetting; 2] = [UnsafeSetting::Faults, UnsafeSetting::WebhookAuthDisabled];

    /// The name in `spec.allowUnsafe` (its JSON form).
    pub fn as_str(self) -> &'static str {
        match self {
            UnsafeSetting::Faults => "faults",
            UnsafeSetting::WebhookAuthDisabled => "webhookAuthDisabled",
        }
    }

    /// The `setting` label of [`metrics::UNSAFE_SETTING`].
    pub fn label(self) -> &'static str {
        match self {
            UnsafeSetting::Faults => "faults",
            UnsafeSetting::WebhookAuthDisabled => "webhook_auth_disabled",
        }
    }

    /// The `/health` component that reports it (degraded while it is on).
    pub fn component(self) -> &'static str {
        match self {
            UnsafeSetting::Faults => components::FAULTS,
            UnsafeSetting::WebhookAuthDisabled => components::WEBHOOK_AUTH,
        }
    }

    /// The setting an environment variable turns on, if any: `FAULT_*` with a value other
    /// than 0 (an unreadable value counts as on), `WEBHOOK_AUTH=disabled` (any case).
    pub fn of_env(name: &str, value: &str) -> Option<UnsafeSetting> {
        let value = value.trim();
        if name.starts_with(env::FAULT_PREFIX) {
            let off = value.parse::<f64>().is_ok_and(|v| v == 0.0);
            return (!off).then_some(UnsafeSetting::Faults);
        }
        let open =
            name == env::WEBHOOK_AUTH && value.eq_ignore_ascii_case(env::WEBHOOK_AUTH_DISABLED);
        open.then_some(UnsafeSetting::WebhookAuthDisabled)
    }
}

/// The role of a consumer pod in a cutover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ConsumerRole {
    /// Consuming the production group for real.
    Active,
    /// Connected and healthy, consuming nothing.
    #[default]
    Standby,
}

impl ConsumerRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsumerRole::Active => "active",
            ConsumerRole::Standby => "standby",
        }
    }
}

impl std::str::FromStr for ConsumerRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(ConsumerRole::Active),
            "standby" => Ok(ConsumerRole::Standby),
            other => Err(format!(
                "unknown consumer role {other:?} (expected active|standby)"
            )),
        }
    }
}

/// Body of `PUT /admin/consumer/role`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleChange {
    pub role: ConsumerRole,
}

/// Answer of `GET|PUT /admin/consumer/role`. A PUT answers only once the switch is complete:
/// for standby that means the batch in flight is stored, its offsets committed and the group
/// left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleStatus {
    pub role: ConsumerRole,
    /// Events this pod has stored since it started.
    pub stored: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_round_trips_through_json_and_text() {
        let body = serde_json::to_string(&RoleChange {
            role: ConsumerRole::Active,
        })
        .unwrap();
        assert_eq!(body, r#"{"role":"active"}"#);
        assert_eq!("standby".parse::<ConsumerRole>(), Ok(ConsumerRole::Standby));
        assert!("both".parse::<ConsumerRole>().is_err());
    }

    #[test]
    fn unsafe_settings_are_named_alike_everywhere() {
        for setting in UnsafeSetting::ALL {
            let json = serde_json::to_string(&setting).unwrap();
            assert_eq!(json, format!("\"{}\"", setting.as_str()));
        }
        assert_eq!(
            UnsafeSetting::of_env("FAULT_ERROR_RATE", "0.2"),
            Some(UnsafeSetting::Faults)
        );
        assert_eq!(UnsafeSetting::of_env("FAULT_LATENCY_MS", " 0 "), None);
        assert_eq!(
            UnsafeSetting::of_env("FAULT_X", "on"),
            Some(UnsafeSetting::Faults)
        );
        assert_eq!(
            UnsafeSetting::of_env("WEBHOOK_AUTH", "Disabled"),
            Some(UnsafeSetting::WebhookAuthDisabled)
        );
        assert_eq!(UnsafeSetting::of_env("WEBHOOK_AUTH", "required"), None);
        assert_eq!(UnsafeSetting::of_env("LOG_FORMAT", "text"), None);
    }
}
