#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test-only code
//! `/health` as a long poll (contract `health_watch`), on a real broker: a waiting request is
//! answered by the health change itself (Kafka frozen, Kafka back), by the end of its wait when
//! nothing changes, and at once when the process begins to stop. Bad queries get a clear 400.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

async fn health(client: &reqwest::Client, api: &Runtime, query: &str) -> (u16, Value) {
    let response = client
        .get(api.url(&format!("/health{query}")))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Holds `/health?unless=<change of known>&wait=<wait>`; returns the answer and how long it took.
async fn wait_for_change(
    client: &reqwest::Client,
    api: &Runtime,
    known: &Value,
    wait: u64,
) -> (Value, Duration) {
    let change = known["change"].as_str().unwrap();
    let started = Instant::now();
    let (status, report) = health(client, api, &format!("?unless={change}&wait={wait}")).await;
    assert_eq!(status, 200, "{report}");
    (report, started.elapsed())
}

/// The overall status: `healthy` once start-up is over and Kafka answers.
async fn overall_status(client: &reqwest::Client, api: &Runtime) -> String {
    let (_, report) = health(client, api, "").await;
    report["status"].as_str().unwrap_or("").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_health_request_is_answered_by_the_change() {
    let broker = Broker::private();
    let kafka = [
        ("KAFKA_BROKERS", broker.addr.as_str()),
        ("HEALTH_CHECK_INTERVAL", "1"),
    ];
    let api = Runtime::spawn("api", &kafka);
    api.wait_ready(Duration::from_secs(30)).await;
    let client = reqwest::Client::new();
    wait_until("healthy", Duration::from_secs(15), || async {
        overall_status(&client, &api).await == "healthy"
    })
    .await;

    let (_, healthy) = health(&client, &api, "").await;
    assert!(!healthy["change"].as_str().unwrap().is_empty(), "{healthy}");
    let (same, took) = wait_for_change(&client, &api, &healthy, 2).await;
    assert_eq!(same["change"], healthy["change"], "nothing changed");
    assert!(
        took >= Duration::from_secs(2),
        "held for the whole wait: {took:?}"
    );

    let waiting = {
        let (client, known) = (client.clone(), healthy.clone());
        let url = api.url("");
        tokio::spawn(async move {
            let change = known["change"].as_str().unwrap().to_owned();
            let r = client
                .get(format!("{url}/health?unless={change}&wait=60"))
                .send();
            r.await.unwrap().json::<Value>().await.unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "held while healthy");
    broker.pause();
    let frozen_at = Instant::now();
    let down = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the freeze answered the waiting request before its 60 s")
        .unwrap();
    broker.resume();
    assert_ne!(down["change"], healthy["change"], "{down}");
    assert_ne!(down["components"]["kafka"]["status"], "healthy", "{down}");
    assert!(down["changed_at"].as_str().is_some(), "{down}");
    eprintln!("answered {:?} after the freeze", frozen_at.elapsed());

    let (back, _) = wait_for_change(&client, &api, &down, 30).await;
    let back = if back["components"]["kafka"]["status"] == "healthy" {
        back
    } else {
        wait_for_change(&client, &api, &back, 30).await.0
    };
    assert_eq!(back["components"]["kafka"]["status"], "healthy", "{back}");
    assert_ne!(back["change"], down["change"]);

    let (at_once, took) = wait_for_change(&client, &api, &down, 30).await;
    assert_eq!(
        at_once["change"], back["change"],
        "a stale change answers at once"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_runtime_answers_its_waiting_requests() {
    let broker = Broker::shared();
    let config = [
        ("KAFKA_BROKERS", broker.addr.as_str()),
        ("SHUTDOWN_DRAIN_SECONDS", "0"),
    ];
    let mut api = Runtime::spawn("api", &config);
    api.wait_ready(Duration::from_secs(30)).await;
    let client = reqwest::Client::new();
    let (_, known) = health(&client, &api, "").await;
    let waiting = {
        let change = known["change"].as_str().unwrap().to_owned();
        let r = client
            .get(api.url(&format!("/health?unless={change}&wait=60")))
            .send();
        tokio::spawn(r)
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    api.sigterm();
    let (code, took) = tokio::task::block_in_place(|| api.wait_exit(Duration::from_secs(30)));
    assert_eq!(code, Some(0), "{}", api.log_text());
    assert!(
        took < Duration::from_secs(5),
        "a waiting request held the stop up: {took:?}"
    );
    let answered = tokio::time::timeout(Duration::from_secs(5), waiting).await;
    assert!(
        answered.is_ok(),
        "the waiting request was answered or closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_long_poll_gets_a_clear_error() {
    let broker = Broker::shared();
    let api = Runtime::spawn("api", &[("KAFKA_BROKERS", broker.addr.as_str())]);
    api.wait_ready(Duration::from_secs(30)).await;
    let client = reqwest::Client::new();
    for query in [
        "?wait=5",
        "?unless=x",
        "?unless=x&wait=soon",
        "?unless=x&wait=-1",
    ] {
        let (status, body) = health(&client, &api, query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"], "bad_query", "{query}: {body}");
        assert!(
            !body["detail"].as_str().unwrap().is_empty(),
            "{query}: {body}"
        );
    }
}
