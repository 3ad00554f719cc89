//! The runtime's one metrics registry. Names come from `auren_contract::metrics`, so the
//! operator's analysis reads exactly what is written here.

use auren_contract::UnsafeSetting;
use auren_contract::metrics as names;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PartitionLabels {
    pub partition: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DependencyLabels {
    pub dependency: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PoolLabels {
    pub state: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SettingLabels {
    pub setting: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
    pub release: String,
    pub mode: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

fn batch_histogram() -> Histogram {
    Histogram::new([
        1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
    ])
}

/// Every metric the runtime exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<RequestLabels, Counter>,
    pub http_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub events_accepted: Counter,
    pub events_stored: Counter,
    pub events_dead_lettered: Counter,
    pub events_failed: Family<StageLabels, Counter>,
    pub consumer_lag: Family<PartitionLabels, Gauge>,
    pub consumer_batch_size: Histogram,
    pub consumer_active: Gauge,
    pub consumer_rejoins: Counter,
    pub breaker_state: Family<DependencyLabels, Gauge>,
    pub db_pool: Family<PoolLabels, Gauge>,
    pub build_info: Family<BuildLabels, Gauge>,
    pub ready: Gauge,
    pub webhooks_replayed: Counter,
    pub signatures_remembered: Gauge,
    pub replay_early_rotations: Counter,
    pub unsafe_settings: Family<SettingLabels, Gauge>,
}

impl Metrics {
    pub fn new(release: &str, mode: &str) -> Self {
        let mut m = Metrics {
            registry: Registry::default(),
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency_histogram),
            events_accepted: Counter::default(),
            events_stored: Counter::default(),
            events_dead_lettered: Counter::default(),
            events_failed: Family::default(),
            consumer_lag: Family::default(),
            consumer_batch_size: batch_histogram(),
            consumer_active: Gauge::default(),
            consumer_rejoins: Counter::default(),
            breaker_state: Family::default(),
            db_pool: Family::default(),
            build_info: Family::default(),
            ready: Gauge::default(),
            webhooks_replayed: Counter::default(),
            signatures_remembered: Gauge::default(),
            replay_early_rotations: Counter::default(),
            unsafe_settings: Family::default(),
        };
        m.register_all();
        let build = BuildLabels {
            version: env!("CARGO_PKG_VERSION").to_string(),
            release: release.to_string(),
            mode: mode.to_string(),
        };
        m.build_info.get_or_create(&build).set(1);
        m
    }

    fn register_all(&mut self) {
        let r = &mut self.registry;
        r.register(
            names::HTTP_REQUESTS,
            "HTTP requests by route, method and status",
            self.http_requests.clone(),
        );
        r.register(
            names::HTTP_REQUEST_DURATION,
            "HTTP request latency",
            self.http_duration.clone(),
        );
        r.register(
            names::EVENTS_ACCEPTED,
            "Events acknowledged by Kafka and answered 202",
            self.events_accepted.clone(),
        );
        r.register(
            names::EVENTS_STORED,
            "Events newly stored in PostgreSQL",
            self.events_stored.clone(),
        );
        r.register(
            names::EVENTS_DEAD_LETTERED,
            "Records sent to the dead-letter topic",
            self.events_dead_lettered.clone(),
        );
        r.register(
            names::EVENTS_FAILED,
            "Events that failed, by stage",
            self.events_failed.clone(),
        );
        r.register(
            names::CONSUMER_LAG,
            "Consumer lag in records per partition",
            self.consumer_lag.clone(),
        );
        r.register(
            names::CONSUMER_BATCH_SIZE,
            "Events per stored batch",
            self.consumer_batch_size.clone(),
        );
        r.register(
            names::CONSUMER_ACTIVE,
            "1 when the consumer is active, 0 on standby",
            self.consumer_active.clone(),
        );
        r.register(
            names::CONSUMER_REJOINS,
            "Group joins started again after the one in flight did not complete in time",
            self.consumer_rejoins.clone(),
        );
        r.register(
            names::CIRCUIT_BREAKER_STATE,
            "Circuit breaker: 0 closed, 1 half-open, 2 open",
            self.breaker_state.clone(),
        );
        r.register(
            names::DB_POOL_CONNECTIONS,
            "PostgreSQL pool connections by state",
            self.db_pool.clone(),
        );
        r.register(
            names::BUILD_INFO,
            "Build and release of this process",
            self.build_info.clone(),
        );
        r.register(
            names::READY,
            "1 while the process reports ready",
            self.ready.clone(),
        );
        r.register(
            names::WEBHOOKS_REPLAYED,
            "Signed webhooks refused as replays (409)",
            self.webhooks_replayed.clone(),
        );
        r.register(
            names::WEBHOOK_SIGNATURES_REMEMBERED,
            "Signed requests the replay guard remembers",
            self.signatures_remembered.clone(),
        );
        r.register(
            names::WEBHOOK_REPLAY_EARLY_ROTATIONS,
            "Replay guard rotations forced by its memory cap",
            self.replay_early_rotations.clone(),
        );
        r.register(
            names::UNSAFE_SETTING,
            "1 while the unsafe setting is on (never in production)",
            self.unsafe_settings.clone(),
        );
    }

    /// Every unsafe setting as a series: 1 for those in `on`, 0 for the others.
    pub fn report_unsafe(&self, on: &[UnsafeSetting]) {
        for setting in UnsafeSetting::ALL {
            let labels = SettingLabels {
                setting: setting.label(),
            };
            let value = i64::from(on.contains(&setting));
            self.unsafe_settings.get_or_create(&labels).set(value);
        }
    }

    pub fn fail(&self, stage: &'static str) {
        self.events_failed
            .get_or_create(&StageLabels { stage })
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(8192);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_uses_the_contract_names() {
        let m = Metrics::new("v1", "api");
        m.http_requests
            .get_or_create(&RequestLabels {
                route: "/webhooks/{device}".into(),
                method: "POST".into(),
                status: 202,
            })
            .inc();
        m.fail("produce");
        m.webhooks_replayed.inc();
        m.report_unsafe(&[UnsafeSetting::Faults]);
        let text = m.render().unwrap();
        assert!(
            text.contains(r#"auren_runtime_unsafe_setting{setting="faults"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"auren_runtime_unsafe_setting{setting="webhook_auth_disabled"} 0"#),
            "{text}"
        );
        assert!(text.contains(r#"auren_runtime_http_requests_total{route="/webhooks/{device}",method="POST",status="202"} 1"#), "{text}");
        assert!(
            text.contains(r#"auren_runtime_events_failed_total{stage="produce"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("auren_runtime_webhooks_replayed_total 1"),
            "{text}"
        );
        assert!(
            text.contains(r#"auren_runtime_build_info{version="0.1.0",release="v1",mode="api"} 1"#),
            "{text}"
        );
    }
}
