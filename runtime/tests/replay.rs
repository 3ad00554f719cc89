#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test-only code
//! The replay guard on real services: a signed request is accepted once; a request that was
//! not answered 202 can be retried with the very same signature.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// One signed request, sent as often as needed with the same timestamp and signature.
struct SignedRequest {
    url: String,
    ts: i64,
    body: Vec<u8>,
}

impl SignedRequest {
    fn new(url: String, body: &Value) -> SignedRequest {
        SignedRequest {
            url,
            ts: chrono::Utc::now().timestamp(),
            body: serde_json::to_vec(body).unwrap(),
        }
    }

    /// Sends it; returns the status and the JSON answer.
    async fn send(&self, client: &reqwest::Client) -> (u16, Value) {
        let r = client
            .post(&self.url)
            .header("x-auren-timestamp", self.ts.to_string())
            .header(
                "x-auren-signature",
                auren_runtime::api::auth::sign(SECRET, self.ts, &self.body),
            )
            .header("content-type", "application/json")
            .body(self.body.clone())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

async fn rows_of(db: &str, user: &str) -> i64 {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(db)
        .await
        .unwrap();
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM events WHERE user_id = $1")
        .bind(user)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    n
}

fn assert_replayed(answer: &(u16, Value), what: &str) {
    assert_eq!(answer.0, 409, "{what}: {}", answer.1);
    assert_eq!(answer.1["error"], "replayed", "{what}: {}", answer.1);
    assert!(
        answer.1["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{what}: {}",
        answer.1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_webhook_is_refused_and_stored_once() {
    let s = Stack::shared().await;
    let api = s.ready("api", &[]).await;
    let _consumer = s.ready("consumer", &[]).await;
    let client = reqwest::Client::new();

    let single = SignedRequest::new(api.url("/webhooks/oura"), &oura_event("replay-single", 7));
    let (status, first) = single.send(&client).await;
    assert_eq!(status, 202, "{first}");
    let replay = single.send(&client).await;
    assert_replayed(&replay, "single");
    assert!(
        replay.1["detail"]
            .as_str()
            .unwrap()
            .contains("already accepted"),
        "{}",
        replay.1
    );

    let events: Vec<_> = (0..3).map(|n| oura_event("replay-batch", n)).collect();
    let batch = SignedRequest::new(
        api.url("/webhooks/oura/batch"),
        &serde_json::to_value(&events).unwrap(),
    );
    assert_eq!(batch.send(&client).await.0, 202);
    assert_replayed(&batch.send(&client).await, "batch");
    // Refused replays are counted and reached nothing.
    assert_eq!(
        metric(&client, &api, "auren_runtime_webhooks_replayed_total").await,
        2.0
    );
    assert_eq!(
        metric(&client, &api, "auren_runtime_events_accepted_total").await,
        4.0
    );
    assert_eq!(
        metric(&client, &api, "auren_runtime_webhook_signatures_remembered").await,
        2.0
    );

    // Then one more event of each user: the same key, so the same partition, after anything
    // the replays could have put there. Once it is stored, a copy of a replay would be too.
    let mut later = Accepted::default();
    for user in ["replay-single", "replay-batch"] {
        let event = oura_event(user, 100);
        let (status, id) = post_event(&client, &api, &event).await;
        assert_eq!(status, 202);
        later.insert(marker_of(&event), id.unwrap());
    }
    assert_all_stored_once(&s.db, &later).await;
    assert_eq!(rows_of(&s.db, "replay-single").await, 1 + 1);
    assert_eq!(rows_of(&s.db, "replay-batch").await, 3 + 1);
    assert_eq!(stored(&s.db).await.rows, 4 + 2);
}

/// Sends rounds of 5 concurrent events until one round is refused fast (breaker open).
async fn until_the_breaker_opens(client: &reqwest::Client, api: &Runtime) {
    for round in 0..10 {
        let events: Vec<_> = (0..5).map(|i| oura_event("down", round * 5 + i)).collect();
        let started = Instant::now();
        let answers =
            futures::future::join_all(events.iter().map(|e| post_event(client, api, e))).await;
        assert!(answers.iter().all(|(s, _)| *s == 503), "while down");
        if started.elapsed() < Duration::from_millis(500) {
            return;
        }
    }
    panic!("the circuit breaker never opened");
}

/// Kafka down: the request is answered 503 and its signature released, so the sender's retry
/// of the very same signed request is accepted once the broker is back (and only once).
/// While the first attempt waits for Kafka, an identical request is refused as in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_refused_while_kafka_is_down_is_accepted_when_retried() {
    let mut broker = Broker::private();
    let topic = unique("events");
    broker.create_topic(&topic);
    let api = Runtime::spawn(
        "api",
        &[
            ("KAFKA_BROKERS", broker.addr.as_str()),
            ("KAFKA_TOPIC", &topic),
            ("KAFKA_DELIVERY_TIMEOUT_MS", "2000"),
        ],
    );
    api.wait_ready(Duration::from_secs(30)).await;
    let client = reqwest::Client::new();
    assert_eq!(post_event(&client, &api, &oura_event("up", 1)).await.0, 202);

    broker.stop();
    let request = SignedRequest::new(api.url("/webhooks/oura"), &oura_event("retried", 1));
    let (first, twin) = tokio::join!(request.send(&client), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        request.send(&client).await
    });
    assert_eq!(first.0, 503, "{}", first.1);
    assert_replayed(&twin, "while the first attempt is in flight");
    assert!(
        twin.1["detail"].as_str().unwrap().contains("being handled"),
        "{}",
        twin.1
    );

    until_the_breaker_opens(&client, &api).await;
    assert_eq!(request.send(&client).await.0, 503, "breaker open");

    broker.start();
    broker.create_topic(&topic); // memory storage: the restarted broker starts empty
    let back = Instant::now();
    let mut accepted = None;
    while back.elapsed() < Duration::from_secs(10) {
        let (status, answer) = request.send(&client).await;
        assert_ne!(
            status, 409,
            "a refused attempt kept its signature: {answer}"
        );
        if status == 202 {
            accepted = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let accepted =
        accepted.expect("the retry was not accepted within 10 s of the broker returning");
    assert!(accepted["id"].is_string(), "{accepted}");
    assert_replayed(&request.send(&client).await, "after the 202");
    assert_eq!(
        metric(&client, &api, "auren_runtime_webhooks_replayed_total").await,
        2.0
    );
}

/// The replay guard lives in one pod's memory; the event ids do not: a signed request's events
/// are named after it, so the same request sent to a second API process, and to the first one
/// after a restart, is accepted there (that pod has not seen it) and still stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_sent_to_another_pod_or_after_a_restart_is_stored_once() {
    let s = Stack::shared().await;
    let mut first = s.ready("api", &[]).await;
    let second = s.ready("api", &[]).await;
    let consumer = s.ready("consumer", &[]).await;
    let client = reqwest::Client::new();
    let event = oura_event("replay-anywhere", 7);
    let batch: Vec<_> = (0..3)
        .map(|n| oura_event("replay-anywhere-batch", n))
        .collect();
    let single = SignedRequest::new(first.url("/webhooks/oura"), &event);
    let batch = SignedRequest::new(
        first.url("/webhooks/oura/batch"),
        &serde_json::to_value(&batch).unwrap(),
    );
    let on = |request: &SignedRequest, api: &Runtime, path: &str| SignedRequest {
        url: api.url(path),
        ts: request.ts,
        body: request.body.clone(),
    };

    let mut answers = vec![
        single.send(&client).await,
        on(&single, &second, "/webhooks/oura").send(&client).await,
    ];
    let mut batches = vec![
        batch.send(&client).await,
        on(&batch, &second, "/webhooks/oura/batch")
            .send(&client)
            .await,
    ];
    first.kill9();
    first.start();
    first.wait_ready(Duration::from_secs(30)).await;
    answers.push(single.send(&client).await);
    batches.push(batch.send(&client).await);

    for (status, answer) in answers.iter().chain(&batches) {
        assert_eq!(*status, 202, "each pod takes it once: {answer}");
    }
    let id = &answers[0].1["id"];
    assert!(
        answers.iter().all(|(_, a)| a["id"] == *id),
        "one request, one id: {answers:?}"
    );
    let ids = &batches[0].1["ids"];
    assert_eq!(ids.as_array().map(Vec::len), Some(3));
    assert!(batches.iter().all(|(_, b)| b["ids"] == *ids), "{batches:?}");
    let distinct: std::collections::HashSet<_> = ids.as_array().unwrap().iter().collect();
    assert_eq!(distinct.len(), 3, "each event of a batch has its own id");

    // Every copy reached Kafka (3 singles + 3 batches of 3): wait until the consumer handled
    // all 12 records, duplicates included.
    let handled = "auren_runtime_consumer_batch_size_sum";
    wait_until("every copy handled", Duration::from_secs(30), || async {
        metric(&client, &consumer, handled).await >= 12.0
    })
    .await;
    assert_eq!(rows_of(&s.db, "replay-anywhere").await, 1);
    assert_eq!(rows_of(&s.db, "replay-anywhere-batch").await, 3);
    let s = stored(&s.db).await;
    assert_eq!(
        (s.rows, s.projected),
        (4, 4),
        "the projection counts each once"
    );
}
