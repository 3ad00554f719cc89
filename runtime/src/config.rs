//! Configuration: every setting is an environment variable (with a flag twin). A bad value
//! stops the start with a message naming the variable.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use auren_contract::{ConsumerRole, UnsafeSetting};
use clap::{Parser, ValueEnum};

use crate::ingest::Device;
use crate::vendors::{self, Keys, VendorKeys};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RunMode {
    /// Take webhooks and write them to Kafka.
    Api,
    /// Store events from Kafka in PostgreSQL.
    Consumer,
}

impl RunMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RunMode::Api => "api",
            RunMode::Consumer => "consumer",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WebhookAuth {
    /// Every webhook must carry a valid signature.
    Required,
    /// No signature checks. Only for local experiments; reported in /health.
    Disabled,
}

/// How the producer compresses the message sets it sends (librdkafka's `compression.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
}

impl Compression {
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// Events per consumer transaction unless CONSUMER_BATCH_MAX_EVENTS (or MAX_CONCURRENT_EVENTS)
/// says otherwise: large enough that a backlog waits for one commit (one fsync) per 5,000
/// events, and with the byte cap small enough to keep the consumer's memory flat
/// (docs/benchmarks.md).
pub const DEFAULT_BATCH_MAX_EVENTS: u32 = 5_000;
/// Record bytes per consumer transaction unless CONSUMER_BATCH_MAX_BYTES says otherwise (4 MiB).
pub const DEFAULT_BATCH_MAX_BYTES: u64 = 4 << 20;

/// auren-runtime: webhooks -> Kafka -> PostgreSQL.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Config {
    /// What this process does.
    #[arg(long, env = "RUN_MODE", value_enum, default_value = "api")]
    pub run_mode: RunMode,
    /// Address the HTTP server binds to.
    #[arg(long, env = "API_HOST", default_value = "0.0.0.0")]
    pub api_host: std::net::IpAddr,
    /// Port of the public HTTP server (webhooks in api mode; health, readiness and metrics in
    /// both).
    #[arg(long, env = "API_PORT", default_value_t = 8000)]
    pub api_port: u16,
    /// Port of the admin API (`/admin/*`, both modes), on API_HOST. Keep it out of Services:
    /// only the operator calls it.
    #[arg(long, env = "ADMIN_PORT", default_value_t = auren_contract::ports::ADMIN)]
    pub admin_port: u16,
    /// Kafka bootstrap servers, comma separated.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,
    /// Topic that holds the events.
    #[arg(long, env = "KAFKA_TOPIC", default_value = "biometric-events")]
    pub kafka_topic: String,
    /// Topic for records the consumer cannot parse (default: `<KAFKA_TOPIC>.dlq`).
    #[arg(long, env = "KAFKA_DLQ_TOPIC")]
    pub kafka_dlq_topic: Option<String>,
    /// Consumer group of the production consumers.
    #[arg(long, env = "KAFKA_GROUP", default_value = "auren-consumers")]
    pub kafka_group: String,
    /// Partitions to create the topics with when they do not exist.
    #[arg(long, env = "KAFKA_PARTITIONS", default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=1024))]
    pub kafka_partitions: i32,
    /// How long the producer may try to deliver one event before the request fails (ms).
    #[arg(long, env = "KAFKA_DELIVERY_TIMEOUT_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(100..=300_000))]
    pub kafka_delivery_timeout_ms: u64,
    /// How long the producer waits to fill a batch before sending (ms): latency vs throughput.
    #[arg(long, env = "KAFKA_LINGER_MS", default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub kafka_linger_ms: u64,
    /// How the producer compresses what it sends to Kafka. Snappy by default: librdkafka's lz4
    /// sets up a fresh ~64 KiB context per message set (225k instructions per single-event
    /// webhook against 143k with snappy), and without compression this machine's consumer was
    /// fetch-bound at a third of the speed (docs/benchmarks.md).
    #[arg(long, env = "KAFKA_COMPRESSION", value_enum, default_value = "snappy")]
    pub kafka_compression: Compression,
    /// PostgreSQL URL (consumer mode). Its value is never shown: not by --help, not in logs.
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "postgres://auren@127.0.0.1:5432/auren"
    )]
    pub database_url: DatabaseUrl,
    /// Most events the consumer stores in one transaction [default: 5000]. A backlog is
    /// stored in transactions this large (or CONSUMER_BATCH_MAX_BYTES, whichever is reached
    /// first); events that trickle in are stored as they come. Wins over
    /// MAX_CONCURRENT_EVENTS when both are set.
    #[arg(long, env = "CONSUMER_BATCH_MAX_EVENTS", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub consumer_batch_max_events: Option<u32>,
    /// Most record bytes (Kafka payloads) the consumer gathers for one transaction: with
    /// CONSUMER_BATCH_MAX_EVENTS, it keeps the consumer's memory flat whatever the events'
    /// size. A single larger record is still stored, alone. At most two batches are in
    /// memory: one stored while the next is gathered and stored beside it.
    #[arg(long, env = "CONSUMER_BATCH_MAX_BYTES", default_value_t = DEFAULT_BATCH_MAX_BYTES, value_parser = clap::value_parser!(u64).range(65_536..=268_435_456))]
    pub consumer_batch_max_bytes: u64,
    /// Batches the consumer stores at once: 2 (one executing and committing in PostgreSQL
    /// while the next is stored beside it on a second connection; offsets are still committed
    /// in order), or 1 (one after another: each batch waits for the one before it).
    #[arg(long, env = "CONSUMER_BATCHES_IN_FLIGHT", default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub consumer_batches_in_flight: u8,
    /// Former name of CONSUMER_BATCH_MAX_EVENTS: most events stored in one transaction, used
    /// when CONSUMER_BATCH_MAX_EVENTS is not set (the operator's consumer.maxConcurrentEvents).
    #[arg(long, env = "MAX_CONCURRENT_EVENTS", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_concurrent_events: Option<u32>,
    /// Seconds the process may take to stop after SIGTERM.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub shutdown_timeout: u64,
    /// API mode: seconds between SIGTERM (readiness off at once) and closing the listener, so
    /// Services stop routing to the pod before it refuses connections. Part of SHUTDOWN_TIMEOUT.
    #[arg(long, env = "SHUTDOWN_DRAIN_SECONDS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=60))]
    pub shutdown_drain_seconds: u64,
    /// Seconds between background health checks.
    #[arg(long, env = "HEALTH_CHECK_INTERVAL", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub health_check_interval: u64,
    /// Keep the per-user projection (latest value and count per metric) next to the events.
    #[arg(long, env = "ENABLE_EVENT_SOURCING", default_value_t = true, action = clap::ArgAction::Set)]
    pub enable_event_sourcing: bool,
    /// Whether webhooks must be signed.
    #[arg(long, env = "WEBHOOK_AUTH", value_enum, default_value = "required")]
    pub webhook_auth: WebhookAuth,
    /// Folder with one file per secret (a mounted Secret): one per device of the signed AUREN
    /// reading API (`oura`, ...) and the vendors' (`vendor_whoop`, `vendor_whoop_previous`, ...).
    #[arg(long, env = "WEBHOOK_SECRETS_DIR")]
    pub webhook_secrets_dir: Option<PathBuf>,
    /// How far a webhook's timestamp may be from now, in seconds (replay protection).
    #[arg(long, env = "WEBHOOK_TOLERANCE_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub webhook_tolerance_seconds: u64,
    /// Most signed requests the replay guard remembers (the default needs at most ~20 MB; the
    /// table costs 9-20 bytes a key); at the cap the oldest are forgotten early. 0 turns the
    /// guard off.
    #[arg(long, env = "WEBHOOK_REPLAY_CAPACITY", default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    pub webhook_replay_capacity: u64,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 1_048_576, value_parser = clap::value_parser!(u64).range(1024..=67_108_864))]
    pub max_body_bytes: u64,
    /// Most events in one batch request.
    #[arg(long, env = "MAX_BATCH_EVENTS", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_batch_events: u32,
    /// Bearer token for the admin API; without it the admin API refuses every call.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Role of the consumer at start.
    #[arg(long, env = "CONSUMER_ROLE", default_value = "active")]
    pub consumer_role: ConsumerRole,
    /// Release label reported in metrics, /health and the `x-auren-release` header.
    #[arg(long, env = "AUREN_RELEASE", default_value = env!("CARGO_PKG_VERSION"))]
    pub release: String,
    /// Fault injection: fraction (0..=1) of webhook requests answered with 500. Tests only.
    #[arg(long, env = "FAULT_ERROR_RATE", default_value_t = 0.0, value_parser = parse_fraction)]
    pub fault_error_rate: f64,
    /// Fault injection: latency added to each webhook request, in ms. Tests only.
    #[arg(long, env = "FAULT_LATENCY_MS", default_value_t = 0)]
    pub fault_latency_ms: u64,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,
}

/// The PostgreSQL URL. It usually carries a password, so Debug and Display show it with the
/// password replaced by `***` (`user:***@host`, `password=***`); only [`DatabaseUrl::expose`]
/// gives the real value, to the driver.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

const REDACTED: &str = "***";

impl DatabaseUrl {
    /// The URL itself: for connecting, never for printing.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` (a driver's error, say) with this URL's password replaced wherever it appears.
    pub fn scrub(&self, text: &str) -> String {
        passwords(&self.0)
            .into_iter()
            .filter(|p| !p.is_empty())
            .fold(text.to_owned(), |text, p| text.replace(p, REDACTED))
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(DatabaseUrl(s.to_owned()))
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.scrub(&self.0))
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// The passwords a URL carries: in its user info (`user:password@`) and as a `password=`
/// query parameter (libpq's form).
fn passwords(url: &str) -> Vec<&str> {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = after_scheme
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    let user_info = authority.rsplit_once('@').map(|(info, _)| info);
    let in_user_info = user_info
        .and_then(|info| info.split_once(':'))
        .map(|(_, p)| p);
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let query = query.split('#').next().unwrap_or_default();
    let in_query = query
        .split('&')
        .filter_map(|kv| kv.strip_prefix("password="));
    in_user_info.into_iter().chain(in_query).collect()
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not between 0 and 1"))
    }
}

/// Errors that stop the start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("WEBHOOK_SECRETS_DIR {path}: {source}")]
    SecretsDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("WEBHOOK_SECRET_{name}: secret is empty")]
    EmptySecret { name: String },
    #[error("WEBHOOK_SECRET_{name}: not a P-256 public key in PEM (SubjectPublicKeyInfo) form")]
    BadPublicKey { name: String },
    #[error("API_PORT and ADMIN_PORT are both {0}: the admin API needs a port of its own")]
    SharedAdminPort(u16),
}

impl Config {
    /// The unsafe settings that are on (empty by default).
    pub fn unsafe_settings(&self) -> Vec<UnsafeSetting> {
        let faults = self.fault_error_rate > 0.0 || self.fault_latency_ms > 0;
        let open = self.webhook_auth == WebhookAuth::Disabled && self.run_mode == RunMode::Api;
        [
            (faults, UnsafeSetting::Faults),
            (open, UnsafeSetting::WebhookAuthDisabled),
        ]
        .into_iter()
        .filter_map(|(on, setting)| on.then_some(setting))
        .collect()
    }

    /// The admin API must not share the public port (that would expose it through Services).
    pub fn check_ports(&self) -> Result<(), ConfigError> {
        if self.admin_port == self.api_port {
            return Err(ConfigError::SharedAdminPort(self.api_port));
        }
        Ok(())
    }

    pub fn dlq_topic(&self) -> String {
        self.kafka_dlq_topic
            .clone()
            .unwrap_or_else(|| format!("{}.dlq", self.kafka_topic))
    }

    /// Most events per consumer transaction: CONSUMER_BATCH_MAX_EVENTS, else the former
    /// MAX_CONCURRENT_EVENTS, else [`DEFAULT_BATCH_MAX_EVENTS`].
    pub fn batch_max_events(&self) -> u32 {
        self.consumer_batch_max_events
            .or(self.max_concurrent_events)
            .unwrap_or(DEFAULT_BATCH_MAX_EVENTS)
    }

    pub fn delivery_timeout(&self) -> Duration {
        Duration::from_millis(self.kafka_delivery_timeout_ms)
    }

    pub fn shutdown_budget(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout)
    }

    /// The drain delay of API mode, never more than half the shutdown budget.
    pub fn drain_delay(&self) -> Duration {
        Duration::from_secs(self.shutdown_drain_seconds).min(self.shutdown_budget() / 2)
    }

    /// Secrets of the signed AUREN reading API per device: `WEBHOOK_SECRET_<DEVICE>` variables,
    /// then files named after the device in `WEBHOOK_SECRETS_DIR` (a mounted Secret), the
    /// variable winning.
    pub fn webhook_secrets(&self) -> Result<BTreeMap<Device, Vec<u8>>, ConfigError> {
        let mut secrets = BTreeMap::new();
        for device in Device::ALL {
            if let Some(secret) = self.secret(device.as_str())? {
                secrets.insert(device, secret);
            }
        }
        Ok(secrets)
    }

    /// The vendors' secrets ([`vendors::SECRET_NAMES`]), read like the devices' secrets: each
    /// name with its `_previous` twin, both valid during a rotation.
    pub fn vendor_keys(&self) -> Result<VendorKeys, ConfigError> {
        let mut keys = BTreeMap::new();
        for name in vendors::SECRET_NAMES {
            let previous = format!("{name}{}", vendors::PREVIOUS_SUFFIX);
            let values: Vec<Vec<u8>> = [self.secret(name)?, self.secret(&previous)?]
                .into_iter()
                .flatten()
                .collect();
            if name == vendors::google_health::PUBLIC_KEY
                && values
                    .iter()
                    .any(|pem| vendors::google_health::public_key(pem).is_none())
            {
                return Err(ConfigError::BadPublicKey {
                    name: name.to_ascii_uppercase(),
                });
            }
            keys.insert(name, Keys::new(values));
        }
        Ok(VendorKeys::new(keys))
    }

    /// Secret `name`: the `WEBHOOK_SECRET_<NAME>` variable, else the file `name` in
    /// `WEBHOOK_SECRETS_DIR`; an empty one stops the start.
    fn secret(&self, name: &str) -> Result<Option<Vec<u8>>, ConfigError> {
        let var = format!("WEBHOOK_SECRET_{}", name.to_ascii_uppercase());
        let value = match std::env::var(&var) {
            Ok(value) => Some(value.into_bytes()),
            Err(_) => self.secret_file(name)?,
        };
        match value {
            Some(v) if v.is_empty() => Err(ConfigError::EmptySecret {
                name: name.to_ascii_uppercase(),
            }),
            other => Ok(other),
        }
    }

    fn secret_file(&self, name: &str) -> Result<Option<Vec<u8>>, ConfigError> {
        let Some(dir) = &self.webhook_secrets_dir else {
            return Ok(None);
        };
        let path = dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(trim_secret(bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ConfigError::SecretsDir { path, source }),
        }
    }
}

fn trim_secret(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
        bytes.pop();
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("auren-runtime").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_follow_the_original_design() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.api_port, 8000);
        assert_eq!(c.kafka_topic, "biometric-events");
        assert_eq!(c.batch_max_events(), 5_000);
        assert_eq!(c.consumer_batch_max_bytes, 4 * 1024 * 1024);
        assert_eq!(c.shutdown_timeout, 30);
        assert_eq!(c.health_check_interval, 30);
        assert!(c.enable_event_sourcing);
        assert_eq!(c.dlq_topic(), "biometric-events.dlq");
        assert_eq!(c.webhook_auth, WebhookAuth::Required);
        assert_eq!(c.webhook_replay_capacity, 1_000_000);
        assert_eq!(c.admin_port, 8001);
        assert!(c.check_ports().is_ok());
    }

    #[test]
    fn the_producer_lingers_1_ms_and_compresses_with_snappy_by_default() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.kafka_linger_ms, 1);
        assert_eq!(c.kafka_compression.as_librdkafka(), "snappy");
        let c = parse(&["--kafka-compression", "lz4"]).unwrap();
        assert_eq!(c.kafka_compression.as_librdkafka(), "lz4");
    }

    #[test]
    fn faults_and_open_webhooks_are_off_by_default() {
        let c = parse(&[]).unwrap();
        assert_eq!((c.fault_error_rate, c.fault_latency_ms), (0.0, 0));
        assert!(c.unsafe_settings().is_empty());
    }

    #[test]
    fn every_unsafe_setting_is_named() {
        let on = |args: &[&str]| parse(args).unwrap().unsafe_settings();
        assert_eq!(on(&["--fault-error-rate", "0.2"]), [UnsafeSetting::Faults]);
        assert_eq!(on(&["--fault-latency-ms", "5"]), [UnsafeSetting::Faults]);
        assert_eq!(
            on(&["--webhook-auth", "disabled"]),
            [UnsafeSetting::WebhookAuthDisabled]
        );
        assert_eq!(
            on(&["--webhook-auth", "disabled", "--fault-latency-ms", "1"]),
            [UnsafeSetting::Faults, UnsafeSetting::WebhookAuthDisabled]
        );
        // A consumer takes no webhooks: their auth setting changes nothing there.
        assert!(on(&["--webhook-auth", "disabled", "--run-mode", "consumer"]).is_empty());
        assert!(on(&["--fault-error-rate", "0", "--fault-latency-ms", "0"]).is_empty());
    }

    #[test]
    fn the_database_password_is_redacted_wherever_the_url_is_shown() {
        let c = parse(&[
            "--database-url",
            "postgres://auren:s3cr%40t@db.internal:5432/auren?sslmode=require&password=qu3ry",
        ])
        .unwrap();
        let shown = c.database_url.to_string();
        assert_eq!(
            shown,
            "postgres://auren:***@db.internal:5432/auren?sslmode=require&password=***"
        );
        for text in [shown, format!("{c:?}")] {
            assert!(!text.contains("s3cr") && !text.contains("qu3ry"), "{text}");
        }
        let error = "error connecting to postgres://auren:s3cr%40t@db.internal: refused";
        assert_eq!(
            c.database_url.scrub(error),
            "error connecting to postgres://auren:***@db.internal: refused"
        );
        assert!(
            c.database_url.expose().contains(":s3cr%40t@"),
            "the driver gets it"
        );
        let without = parse(&[]).unwrap().database_url;
        assert_eq!(without.to_string(), "postgres://auren@127.0.0.1:5432/auren");
        let at_in_path = "postgres://u@h/db?options=a:b@c"
            .parse::<DatabaseUrl>()
            .unwrap();
        assert_eq!(at_in_path.to_string(), "postgres://u@h/db?options=a:b@c");
    }

    #[test]
    fn the_admin_api_needs_its_own_port() {
        let c = parse(&["--api-port", "9000", "--admin-port", "9000"]).unwrap();
        assert!(matches!(
            c.check_ports(),
            Err(ConfigError::SharedAdminPort(9000))
        ));
    }

    #[test]
    fn vendor_secrets_come_from_the_mounted_secret_with_their_previous_values() {
        let dir = std::env::temp_dir().join(format!("auren-vendor-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("vendor_polar"), "new-key\n").unwrap();
        std::fs::write(dir.join("vendor_polar_previous"), "old-key").unwrap();
        std::fs::write(dir.join("vendor_garmin"), "path-token").unwrap();
        let c = parse(&["--webhook-secrets-dir", dir.to_str().unwrap()]).unwrap();
        let keys = c.vendor_keys().unwrap();
        let polar = keys.get(vendors::polar::SIGNING_SECRET);
        assert!(
            polar.matches(b"new-key") && polar.matches(b"old-key"),
            "{polar:?}"
        );
        assert!(
            !polar.matches(b"new-key\n"),
            "trailing whitespace is trimmed"
        );
        assert!(keys.get(vendors::garmin::PATH_TOKEN).matches(b"path-token"));
        assert!(keys.get(vendors::whoop::SIGNING_SECRET).is_empty());
        std::fs::write(dir.join("vendor_whoop"), "").unwrap();
        assert!(matches!(
            c.vendor_keys(),
            Err(ConfigError::EmptySecret { name }) if name == "VENDOR_WHOOP"
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_google_health_public_key_that_is_not_pem_stops_the_start() {
        let dir = std::env::temp_dir().join(format!("auren-vendor-pem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("vendor_google_health_public_key"), "not a key").unwrap();
        let c = parse(&["--webhook-secrets-dir", dir.to_str().unwrap()]).unwrap();
        assert!(matches!(
            c.vendor_keys(),
            Err(ConfigError::BadPublicKey { name }) if name == "VENDOR_GOOGLE_HEALTH_PUBLIC_KEY"
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn two_batches_are_stored_at_once_unless_one_is_asked_for() {
        let in_flight = |args: &[&str]| parse(args).unwrap().consumer_batches_in_flight;
        assert_eq!(in_flight(&[]), 2);
        assert_eq!(in_flight(&["--consumer-batches-in-flight", "1"]), 1);
    }

    #[test]
    fn the_batch_size_comes_from_the_new_name_then_the_former_one() {
        let events = |args: &[&str]| parse(args).unwrap().batch_max_events();
        assert_eq!(events(&["--max-concurrent-events", "50"]), 50);
        assert_eq!(events(&["--consumer-batch-max-events", "800"]), 800);
        assert_eq!(
            events(&[
                "--max-concurrent-events",
                "50",
                "--consumer-batch-max-events",
                "800"
            ]),
            800,
            "the new name wins"
        );
        for bad in [
            ["--consumer-batch-max-events", "0"],
            ["--consumer-batch-max-events", "100001"],
            ["--consumer-batch-max-bytes", "1024"],
            ["--max-concurrent-events", "10001"],
            ["--consumer-batches-in-flight", "0"],
            ["--consumer-batches-in-flight", "3"],
        ] {
            let err = parse(&bad).unwrap_err().to_string();
            assert!(err.contains(bad[0]), "{err}");
        }
    }

    #[test]
    fn bad_values_name_the_setting() {
        let err = parse(&["--max-concurrent-events", "0"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("max-concurrent-events"), "{err}");
        let err = parse(&["--fault-error-rate", "1.5"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not between 0 and 1"), "{err}");
        let err = parse(&["--consumer-role", "both"]).unwrap_err().to_string();
        assert!(err.contains("unknown consumer role"), "{err}");
        let err = parse(&["--kafka-compression", "zstd"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("kafka-compression") && err.contains("lz4"),
            "{err}"
        );
    }
}
