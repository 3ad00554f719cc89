//! Sends notifications from a bounded queue on its own task: a reconcile only enqueues (and
//! never waits, never fails because of it); each notification reads its Secret, is signed and
//! POSTed with bounded exponential backoff. A notification that cannot be delivered (Secret or
//! key missing, receiver refusing or down through every attempt) becomes a Warning Event
//! `NotificationFailed` on the AurenRuntime and counts as failed.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::api::Api;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use tokio::sync::{Semaphore, mpsc};

use crate::api::NotificationFormat;
use crate::metrics::Metrics;
use crate::notify::{self, Destination, Subject};
use crate::rollout::Notice;

/// Notifications waiting to be sent; beyond this a new one is dropped (and counted).
const QUEUE: usize = 256;
/// Notifications being sent at once.
const IN_FLIGHT: usize = 8;
/// Attempts per notification, the first included.
pub const ATTEMPTS: u32 = 5;
/// Wait after the first failed attempt; doubled after each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Time one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// A notification could not be delivered. The variant name is the Event's detail and log key.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("Secret {namespace}/{name} not found")]
    SecretMissing { namespace: String, name: String },
    #[error("Secret {namespace}/{name} has no key {key}")]
    KeyMissing {
        namespace: String,
        name: String,
        key: &'static str,
    },
    #[error("reading Secret {name}: {source}")]
    SecretUnreadable { name: String, source: kube::Error },
    #[error("the receiver refused it with HTTP {0} (not retried)")]
    Refused(u16),
    #[error("not delivered after {attempts} attempts: {last}")]
    GaveUp { attempts: u32, last: String },
}

/// One notification to deliver.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub subject: Subject,
    pub object: ObjectReference,
    pub destination: Destination,
    pub notice: Notice,
}

/// The sending end of the queue (cheap to share).
#[derive(Clone)]
pub struct Notifier {
    queue: mpsc::Sender<Delivery>,
    metrics: Arc<Metrics>,
}

/// What the sending task needs.
struct Sender {
    client: kube::Client,
    http: reqwest::Client,
    recorder: Recorder,
    metrics: Arc<Metrics>,
}

impl Notifier {
    /// Starts the sending task; it ends when every `Notifier` is dropped.
    pub fn start(client: kube::Client, recorder: Recorder, metrics: Arc<Metrics>) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE);
        let sender = Arc::new(Sender {
            client,
            http: reqwest::Client::builder()
                .timeout(ATTEMPT_TIMEOUT)
                .build()
                .unwrap_or_default(),
            recorder,
            metrics: metrics.clone(),
        });
        tokio::spawn(drain(receiver, sender));
        Self { queue, metrics }
    }

    /// Queues `delivery` without waiting; a full queue drops it.
    pub fn enqueue(&self, delivery: Delivery) {
        if let Err(e) = self.queue.try_send(delivery) {
            tracing::warn!(error = %e, "notification queue full or closed: notification dropped");
            self.metrics.notification("dropped");
        }
    }
}

async fn drain(mut receiver: mpsc::Receiver<Delivery>, sender: Arc<Sender>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(delivery) = receiver.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let sender = sender.clone();
        tokio::spawn(async move {
            sender.deliver(delivery).await;
            drop(slot);
        });
    }
}

impl Sender {
    async fn deliver(&self, delivery: Delivery) {
        match self.send(&delivery).await {
            Ok(()) => self.metrics.notification("sent"),
            Err(error) => {
                self.metrics.notification("failed");
                tracing::warn!(error = %error, name = %delivery.subject.name, "notification not delivered");
                self.warn(&delivery, &error).await;
            }
        }
    }

    async fn send(&self, delivery: &Delivery) -> Result<(), NotifyError> {
        let (url, key) = self.read_secret(&delivery.destination).await?;
        let format = delivery.destination.format;
        let (content_type, body) = notify::body(format, &delivery.subject, &delivery.notice);
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            if attempt > 1 {
                self.metrics.notification_retry();
                tokio::time::sleep(backoff(attempt)).await;
            }
            match self.post(&url, key.as_deref(), content_type, &body).await {
                Ok(()) => return Ok(()),
                Err(Attempt::Permanent(status)) => return Err(NotifyError::Refused(status)),
                Err(Attempt::Transient(why)) => last = why,
            }
        }
        Err(NotifyError::GaveUp {
            attempts: ATTEMPTS,
            last,
        })
    }

    async fn post(
        &self,
        url: &str,
        key: Option<&[u8]>,
        content_type: &str,
        body: &[u8],
    ) -> Result<(), Attempt> {
        let mut request = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body.to_vec());
        if let Some(key) = key {
            let timestamp = k8s_openapi::jiff::Timestamp::now().as_second();
            request = request
                .header(notify::TIMESTAMP, timestamp.to_string())
                .header(notify::SIGNATURE, notify::signature(key, timestamp, body));
        }
        let response = request
            .send()
            .await
            .map_err(|e| Attempt::Transient(e.without_url().to_string()))?;
        classify(response.status())
    }

    /// The receiver's URL and the signing key (when the Secret has one).
    async fn read_secret(
        &self,
        destination: &Destination,
    ) -> Result<(String, Option<Vec<u8>>), NotifyError> {
        let (namespace, name) = (&destination.namespace, &destination.secret);
        let api = Api::<Secret>::namespaced(self.client.clone(), namespace);
        let secret = api
            .get_opt(name)
            .await
            .map_err(|source| NotifyError::SecretUnreadable {
                name: name.clone(),
                source,
            })?
            .ok_or_else(|| NotifyError::SecretMissing {
                namespace: namespace.clone(),
                name: name.clone(),
            })?;
        let data = secret.data.unwrap_or_default();
        let value = |key: &str| data.get(key).map(|v| v.0.clone());
        let url = value(notify::URL_KEY)
            .and_then(|u| String::from_utf8(u).ok())
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
            .ok_or_else(|| NotifyError::KeyMissing {
                namespace: namespace.clone(),
                name: name.clone(),
                key: notify::URL_KEY,
            })?;
        Ok((url, value(notify::HMAC_KEY).filter(|k| !k.is_empty())))
    }

    async fn warn(&self, delivery: &Delivery, error: &NotifyError) {
        let event = KubeEvent {
            type_: EventType::Warning,
            reason: "NotificationFailed".into(),
            note: Some(format!(
                "{} notification ({}) not delivered: {error}",
                delivery.notice.kind.as_str(),
                format_name(delivery.destination.format)
            )),
            action: "Notify".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &delivery.object).await {
            tracing::warn!(error = %e, "event not published");
        }
    }
}

fn format_name(format: NotificationFormat) -> &'static str {
    match format {
        NotificationFormat::CloudEvents => "cloudevents",
        NotificationFormat::Slack => "slack",
    }
}

/// How one attempt ended, when it did not succeed.
enum Attempt {
    /// Worth another try: no answer, a timeout, 408, 429 or a 5xx.
    Transient(String),
    /// The receiver will not take it (another 4xx, or a redirect it was not followed to).
    Permanent(u16),
}

fn classify(status: reqwest::StatusCode) -> Result<(), Attempt> {
    match status.as_u16() {
        200..=299 => Ok(()),
        408 | 429 | 500..=599 => Err(Attempt::Transient(format!("HTTP {status}"))),
        other => Err(Attempt::Permanent(other)),
    }
}

/// The wait before attempt `attempt` (2 and later): 0.5 s, 1 s, 2 s, 4 s.
fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF.saturating_mul(1 << attempt.saturating_sub(2).min(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_half_a_second_and_stays_bounded() {
        let waits: Vec<u128> = (2..=ATTEMPTS).map(|a| backoff(a).as_millis()).collect();
        assert_eq!(waits, vec![500, 1000, 2000, 4000]);
        let total: Duration = (2..=ATTEMPTS).map(backoff).sum();
        assert!(
            total < Duration::from_secs(10),
            "a notification gives up within {total:?}"
        );
    }

    #[test]
    fn server_errors_and_throttling_are_retried_other_refusals_are_not() {
        let retried = |code: u16| {
            matches!(
                classify(reqwest::StatusCode::from_u16(code).unwrap()),
                Err(Attempt::Transient(_))
            )
        };
        assert!(classify(reqwest::StatusCode::NO_CONTENT).is_ok());
        for code in [408, 429, 500, 502, 503] {
            assert!(retried(code), "{code} is retried");
        }
        for code in [301, 400, 401, 403, 404, 410] {
            assert!(!retried(code), "{code} is not retried");
            assert!(classify(reqwest::StatusCode::from_u16(code).unwrap()).is_err());
        }
    }
}
