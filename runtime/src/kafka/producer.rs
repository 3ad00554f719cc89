//! The event producer: acks=all, idempotent, keyed by user id so each user's events stay in
//! order. A 202 is only ever answered after [`EventProducer::publish`] returned `Ok`.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer, PurgeConfig};
use rdkafka::util::Timeout;

use crate::config::Compression;
use crate::ingest::Event;
use crate::metrics::{DependencyLabels, Metrics};
use crate::resilience::{Admission, BreakerState, CircuitBreaker};

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("Kafka is unavailable (circuit open); retry in {}s", retry_after.as_secs())]
    CircuitOpen { retry_after: Duration },
    #[error("Kafka did not acknowledge the event: {0}")]
    NotAcknowledged(KafkaError),
    #[error("event could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
}

pub struct EventProducer {
    producer: RwLock<FutureProducer>,
    config: ClientConfig,
    topic: String,
    breaker: CircuitBreaker,
    metrics: Arc<Metrics>,
}

impl EventProducer {
    pub fn new(
        brokers: &str,
        topic: &str,
        delivery_timeout: Duration,
        linger: Duration,
        compression: Compression,
        metrics: Arc<Metrics>,
    ) -> Result<Self, KafkaError> {
        let mut config = super::base_config(brokers);
        config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", linger.as_millis().to_string())
            .set("compression.type", compression.as_librdkafka())
            .set(
                "message.timeout.ms",
                delivery_timeout.as_millis().to_string(),
            );
        let producer = RwLock::new(config.create()?);
        let breaker = CircuitBreaker::new(5, Duration::from_secs(1));
        let p = EventProducer {
            producer,
            config,
            topic: topic.to_string(),
            breaker,
            metrics,
        };
        p.export_breaker_state();
        Ok(p)
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    fn export_breaker_state(&self) {
        let gauge = self.metrics.breaker_state.get_or_create(&DependencyLabels {
            dependency: auren_contract::components::KAFKA,
        });
        gauge.set(self.breaker.state().as_gauge());
    }

    /// Writes the events and waits until the broker acknowledged every one of them.
    pub async fn publish(&self, events: &[Event]) -> Result<(), ProduceError> {
        match self.breaker.admit() {
            Admission::Rejected { retry_after } => {
                return Err(ProduceError::CircuitOpen { retry_after });
            }
            Admission::Probe => self.renew_if_broker_answers().await,
            Admission::Allowed => {}
        }
        let outcome = self.send_all(events).await;
        match &outcome {
            Ok(()) => self.breaker.record_success(),
            Err(ProduceError::NotAcknowledged(_)) => self.breaker.record_failure(),
            Err(_) => {}
        }
        self.export_breaker_state();
        outcome
    }

    fn current(&self) -> FutureProducer {
        self.producer
            .read()
            .map(|p| p.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// After an outage, a broker may have forgotten this producer's id and sequence numbers
    /// (a restarted broker without persistent state does), and an idempotent producer then
    /// stalls. So the half-open probe first checks the broker answers and, if it does, starts
    /// from a fresh producer. Requests waiting on the old one were already answered 503.
    async fn renew_if_broker_answers(&self) {
        let old = self.current();
        let probe = old.clone();
        let reachable = tokio::task::spawn_blocking(move || {
            probe
                .client()
                .fetch_metadata(None, Duration::from_millis(800))
                .is_ok()
        })
        .await;
        if !matches!(reachable, Ok(true)) {
            return;
        }
        match self.config.create::<FutureProducer>() {
            Ok(fresh) => {
                if let Ok(mut slot) = self.producer.write() {
                    *slot = fresh;
                }
                tracing::info!("kafka reachable again: producer renewed");
                old.purge(PurgeConfig::default().queue().inflight());
                tokio::task::spawn_blocking(move || drop(old));
            }
            Err(e) => tracing::warn!(error = %e, "could not renew the kafka producer"),
        }
    }

    async fn send_all(&self, events: &[Event]) -> Result<(), ProduceError> {
        let producer = self.current();
        let payloads = events
            .iter()
            .map(serde_json::to_vec)
            .collect::<Result<Vec<_>, _>>()?;
        let deliveries = events.iter().zip(&payloads).map(|(event, payload)| {
            let record = FutureRecord::to(&self.topic)
                .key(event.user_id.as_bytes())
                .payload(payload);
            producer.send(record, Timeout::After(Duration::from_millis(500)))
        });
        for result in futures::future::join_all(deliveries).await {
            result.map_err(|(e, _)| ProduceError::NotAcknowledged(e))?;
        }
        Ok(())
    }

    /// Whether the broker answers a metadata request (background health check).
    pub fn check(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.current()
            .client()
            .fetch_metadata(Some(&self.topic), timeout)
            .map(|_| ())
    }

    /// Sends everything still queued; part of the graceful stop.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.current().flush(timeout)
    }
}
