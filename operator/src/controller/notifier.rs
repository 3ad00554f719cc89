//! Sends notifications from a bounded queue on its own task: a reconcile only enqueues (and
//! never waits, never fails because of it); each notification reads its Secret, is signed and
//! POSTed with bounded exponential backoff. A notification that cannot be delivered (Secret or
//! key missing, receiver refusing or down through every attempt) becomes a Warning Event
//! `NotificationFailed` on the AurenRuntime and counts as failed.
//!
//! The receiver's URL is whatever the Secret says, so before anything is sent it passes the
//! operator's [`ReceiverPolicy`] (a refusal is the Warning Event `NotificationRefused`, and no
//! request is made), the request goes to exactly the addresses that passed, through no proxy,
//! and a redirect is never followed (a 3xx is a failed delivery).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::api::Api;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use tokio::sync::{Semaphore, mpsc};

use crate::api::NotificationFormat;
use crate::metrics::Metrics;
use crate::notify::receivers::{ReceiverPolicy, Refusal, Target};
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
    #[error(
        "the receiver answered HTTP {0}, a redirect, which is not followed (not retried): \
         put the final address in the Secret's url"
    )]
    Redirected(u16),
    #[error("receiver not allowed by the operator's notification settings, nothing sent: {0}")]
    ReceiverRefused(#[from] Refusal),
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
    receivers: ReceiverPolicy,
    recorder: Recorder,
    metrics: Arc<Metrics>,
}

/// One notification's request, the same for every attempt.
pub struct Message<'a> {
    pub content_type: &'a str,
    pub body: &'a [u8],
    /// The HMAC key, when the Secret has one: the request is signed.
    pub key: Option<&'a [u8]>,
}

impl Notifier {
    /// Starts the sending task; it ends when every `Notifier` is dropped.
    pub fn start(
        client: kube::Client,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        receivers: ReceiverPolicy,
    ) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE);
        let sender = Arc::new(Sender {
            client,
            receivers,
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
        let message = Message {
            content_type,
            body: &body,
            key: key.as_deref(),
        };
        let retried = || self.metrics.notification_retry();
        post_with_retries(&self.receivers, &url, &message, retried).await
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
        let reason = match error {
            NotifyError::ReceiverRefused(_) => "NotificationRefused",
            _ => "NotificationFailed",
        };
        let event = KubeEvent {
            type_: EventType::Warning,
            reason: reason.into(),
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

/// POSTs `message` to the receiver at `url`, retrying with backoff (`retried` is called before
/// each retry). Every attempt looks the host up afresh and checks each address against
/// `receivers` before it connects, to those addresses only.
pub async fn post_with_retries(
    receivers: &ReceiverPolicy,
    url: &str,
    message: &Message<'_>,
    retried: impl Fn(),
) -> Result<(), NotifyError> {
    let target = receivers.target(url)?;
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        if attempt > 1 {
            retried();
            tokio::time::sleep(backoff(attempt)).await;
        }
        match post_once(receivers, &target, message).await {
            Ok(()) => return Ok(()),
            Err(Attempt::Permanent(error)) => return Err(error),
            Err(Attempt::Transient(why)) => last = why,
        }
    }
    Err(NotifyError::GaveUp {
        attempts: ATTEMPTS,
        last,
    })
}

async fn post_once(
    receivers: &ReceiverPolicy,
    target: &Target,
    message: &Message<'_>,
) -> Result<(), Attempt> {
    let addresses = resolve(target).await?;
    receivers
        .addresses(target, &addresses)
        .map_err(|refusal| Attempt::Permanent(refusal.into()))?;
    let mut request = pinned_client(target, &addresses)?
        .post(target.url.clone())
        .header(reqwest::header::CONTENT_TYPE, message.content_type)
        .body(message.body.to_vec());
    if let Some(key) = message.key {
        let timestamp = k8s_openapi::jiff::Timestamp::now().as_second();
        request = request
            .header(notify::TIMESTAMP, timestamp.to_string())
            .header(
                notify::SIGNATURE,
                notify::signature(key, timestamp, message.body),
            );
    }
    let response = request
        .send()
        .await
        .map_err(|e| Attempt::Transient(e.without_url().to_string()))?;
    classify(response.status())
}

async fn resolve(target: &Target) -> Result<Vec<SocketAddr>, Attempt> {
    let found = tokio::net::lookup_host((target.host.as_str(), target.port)).await;
    let unresolved =
        |e: std::io::Error| Attempt::Transient(format!("looking up {}: {e}", target.host));
    Ok(found.map_err(unresolved)?.collect())
}

/// A client that connects to `addresses` for the target's host and nowhere else: no lookup of
/// its own (a second DNS answer could differ from the checked one), no proxy (the proxy would
/// look the host up itself), no redirects.
fn pinned_client(target: &Target, addresses: &[SocketAddr]) -> Result<reqwest::Client, Attempt> {
    reqwest::Client::builder()
        .timeout(ATTEMPT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .resolve_to_addrs(&target.host, addresses)
        .build()
        .map_err(|e| Attempt::Transient(format!("HTTP client: {e}")))
}

/// How one attempt ended, when it did not succeed.
enum Attempt {
    /// Worth another try: no answer, a timeout, 408, 429 or a 5xx.
    Transient(String),
    /// No use trying again: the receiver will not take it (another 4xx), answered with a
    /// redirect, or is not allowed.
    Permanent(NotifyError),
}

fn classify(status: reqwest::StatusCode) -> Result<(), Attempt> {
    match status.as_u16() {
        200..=299 => Ok(()),
        408 | 429 | 500..=599 => Err(Attempt::Transient(format!("HTTP {status}"))),
        redirect @ 300..=399 => Err(Attempt::Permanent(NotifyError::Redirected(redirect))),
        other => Err(Attempt::Permanent(NotifyError::Refused(other))),
    }
}

/// The wait before attempt `attempt` (2 and later): 0.5 s, 1 s, 2 s, 4 s.
fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF.saturating_mul(1 << attempt.saturating_sub(2).min(10))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::receivers::{DEFAULT_REFUSED_NETWORKS, Network};
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A receiver on a real socket of this host that counts the requests it gets, and answers
    /// 204, or `redirect` to `to`.
    struct Receiver {
        url: String,
        hits: Arc<AtomicUsize>,
    }

    async fn receiver(redirect: Option<(StatusCode, String)>) -> Receiver {
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let app = axum::Router::new().fallback(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let answer = match redirect.clone() {
                Some((status, to)) => (status, [(header::LOCATION, to)]).into_response(),
                None => StatusCode::NO_CONTENT.into_response(),
            };
            async move { answer }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, hits }
    }

    fn policy(hosts: &[&str], refused: &str) -> ReceiverPolicy {
        let networks: Vec<Network> = refused.split(',').map(|n| n.parse().unwrap()).collect();
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        ReceiverPolicy::new(&["https".into(), "http".into()], &hosts, &networks)
    }

    /// The receivers of these tests listen on loopback, which only this policy allows.
    fn loopback_allowed() -> ReceiverPolicy {
        policy(&[], "169.254.0.0/16,fe80::/10")
    }

    const MESSAGE: Message<'static> = Message {
        content_type: "application/json",
        body: b"{}",
        key: Some(b"k"),
    };

    async fn post(receivers: &ReceiverPolicy, url: &str) -> Result<(), NotifyError> {
        post_with_retries(receivers, url, &MESSAGE, || panic!("not retried")).await
    }

    #[tokio::test]
    async fn a_redirect_fails_the_delivery_and_its_target_gets_nothing() {
        let second = receiver(None).await;
        for status in [StatusCode::FOUND, StatusCode::TEMPORARY_REDIRECT] {
            let first = receiver(Some((status, second.url.clone()))).await;
            let result = post(&loopback_allowed(), &first.url).await;
            assert!(
                matches!(result, Err(NotifyError::Redirected(code)) if code == status.as_u16()),
                "{result:?}"
            );
            assert_eq!(first.hits.load(Ordering::SeqCst), 1, "asked once");
            assert_eq!(
                second.hits.load(Ordering::SeqCst),
                0,
                "{status} not followed"
            );
        }
        let error = NotifyError::Redirected(302).to_string();
        assert!(
            error.contains("redirect") && error.contains("not followed"),
            "{error}"
        );
        post(&loopback_allowed(), &second.url).await.unwrap();
        assert_eq!(
            second.hits.load(Ordering::SeqCst),
            1,
            "the second one counts"
        );
    }

    #[tokio::test]
    async fn a_receiver_the_policy_refuses_gets_no_request() {
        let target = receiver(None).await;
        let address: SocketAddr = target.url[7..].trim_end_matches("/hook").parse().unwrap();
        let by_name = target.url.replace("127.0.0.1", "localhost");
        let defaults = policy(&[], DEFAULT_REFUSED_NETWORKS);
        let api_server = loopback_allowed().refusing_api_server([address]);
        let listed = policy(&["hooks.example"], "169.254.0.0/16");
        let cases = [
            (
                &defaults,
                target.url.as_str(),
                "in the refused network 127.0.0.0/8",
            ),
            (&defaults, by_name.as_str(), "resolves to"),
            (
                &api_server,
                target.url.as_str(),
                "the Kubernetes API server",
            ),
            (&listed, target.url.as_str(), "not among the allowed hosts"),
        ];
        for (receivers, url, why) in cases {
            let result = post(receivers, url).await;
            let Err(error @ NotifyError::ReceiverRefused(_)) = result else {
                panic!("{url}: {result:?}");
            };
            let text = error.to_string();
            assert!(
                text.contains(why) && text.contains("nothing sent"),
                "{text}"
            );
            assert_eq!(target.hits.load(Ordering::SeqCst), 0, "{url} got a request");
        }
        let metadata = post(&defaults, "http://169.254.169.254/latest/meta-data/").await;
        assert!(
            matches!(metadata, Err(NotifyError::ReceiverRefused(_))),
            "{metadata:?}"
        );
        post(&loopback_allowed(), &target.url).await.unwrap();
        assert_eq!(
            target.hits.load(Ordering::SeqCst),
            1,
            "allowed, it is reached"
        );
    }

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
        assert!(matches!(
            classify(reqwest::StatusCode::FOUND),
            Err(Attempt::Permanent(NotifyError::Redirected(302)))
        ));
    }
}
