#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test-only code
//! Faults on real services: crashes, stops, outages and cutovers lose nothing and apply
//! nothing twice.

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;

/// Sends batches of events for `duration` (or until `stop`), recording the ids that got 202.
async fn load(
    api_url: String,
    accepted: Arc<Mutex<HashSet<String>>>,
    stop: tokio_util::sync::CancellationToken,
    user: String,
) -> (usize, usize) {
    let client = reqwest::Client::new();
    let (mut ok, mut refused) = (0, 0);
    let mut n = 0u32;
    while !stop.is_cancelled() {
        let batch: Vec<_> = (0..20).map(|i| oura_event(&user, n * 20 + i)).collect();
        n += 1;
        let req = signed(
            &client,
            &format!("{api_url}/webhooks/oura/batch"),
            serde_json::to_vec(&batch).unwrap(),
        );
        match req.send().await {
            Ok(r) if r.status() == 202 => {
                let v: serde_json::Value = r.json().await.unwrap();
                let ids = v["ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i.as_str().unwrap().to_string());
                accepted.lock().unwrap().extend(ids);
                ok += 1;
            }
            _ => {
                refused += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    (ok, refused)
}

async fn assert_all_stored_once(db: &str, accepted: &HashSet<String>) {
    let want = accepted.len() as i64;
    wait_until(
        "every accepted event stored",
        Duration::from_secs(90),
        || async { stored(db).await.rows >= want },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = stored(db).await;
    assert_eq!(s.rows, s.distinct_ids, "an event was stored twice");
    assert_eq!(s.projected, s.rows, "the projection applied an event twice");
    let ids = stored_ids(db).await;
    let missing: Vec<_> = accepted.difference(&ids).take(5).collect();
    assert!(missing.is_empty(), "accepted but not stored: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumer_killed_with_sigkill_resumes_without_loss_or_duplicates() {
    let broker = Broker::shared();
    let pg = Postgres::shared();
    let db = pg.database().await;
    let (topic, group) = (unique("events"), unique("group"));
    let env = runtime_env(&broker.addr, &db, &topic, &group);
    let api = Runtime::spawn("api", &env);
    let consumer_env = [env.as_slice(), &[("MAX_CONCURRENT_EVENTS", "10")]].concat();
    let mut consumer = Runtime::spawn("consumer", &consumer_env);
    api.wait_ready(Duration::from_secs(30)).await;
    consumer.wait_ready(Duration::from_secs(30)).await;

    let accepted = Arc::new(Mutex::new(HashSet::new()));
    let stop = tokio_util::sync::CancellationToken::new();
    let loader = tokio::spawn(load(
        api.url(""),
        accepted.clone(),
        stop.clone(),
        "kill9-user".into(),
    ));
    wait_until("some events stored", Duration::from_secs(60), || async {
        stored(&db).await.rows > 200
    })
    .await;
    consumer.kill9();
    tokio::time::sleep(Duration::from_secs(1)).await;
    consumer.start();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.cancel();
    let (ok, _) = loader.await.unwrap();
    assert!(ok > 10, "load generator got too few 202s: {ok}");
    let accepted = accepted.lock().unwrap().clone();
    assert_all_stored_once(&db, &accepted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_stores_every_accepted_event_and_exits_in_time() {
    let broker = Broker::shared();
    let pg = Postgres::shared();
    let db = pg.database().await;
    let (topic, group) = (unique("events"), unique("group"));
    let env = runtime_env(&broker.addr, &db, &topic, &group);
    let mut api = Runtime::spawn(
        "api",
        &[env.as_slice(), &[("SHUTDOWN_TIMEOUT", "10")]].concat(),
    );
    let mut consumer = Runtime::spawn(
        "consumer",
        &[env.as_slice(), &[("SHUTDOWN_TIMEOUT", "10")]].concat(),
    );
    api.wait_ready(Duration::from_secs(30)).await;
    consumer.wait_ready(Duration::from_secs(30)).await;

    let accepted = Arc::new(Mutex::new(HashSet::new()));
    let stop = tokio_util::sync::CancellationToken::new();
    let loaders: Vec<_> = (0..4)
        .map(|i| {
            tokio::spawn(load(
                api.url(""),
                accepted.clone(),
                stop.clone(),
                format!("term-{i}"),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    api.sigterm();
    let (code, took) = api.wait_exit(Duration::from_secs(15));
    assert_eq!(code, Some(0), "api exit code; log:\n{}", api.log_text());
    assert!(took < Duration::from_secs(10), "api took {took:?} to stop");
    stop.cancel();
    for l in loaders {
        l.await.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    assert!(!accepted.is_empty());
    assert_all_stored_once(&db, &accepted).await;

    consumer.sigterm();
    let (code, took) = consumer.wait_exit(Duration::from_secs(15));
    assert_eq!(
        code,
        Some(0),
        "consumer exit code; log:\n{}",
        consumer.log_text()
    );
    assert!(
        took < Duration::from_secs(10),
        "consumer took {took:?} to stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_outage_answers_503_and_recovers_within_5_seconds() {
    let mut broker = Broker::private();
    let topic = unique("events");
    broker.create_topic(&topic);
    let api = Runtime::spawn(
        "api",
        &[
            ("KAFKA_BROKERS", &broker.addr),
            ("KAFKA_TOPIC", &topic),
            ("KAFKA_DELIVERY_TIMEOUT_MS", "2000"),
        ],
    );
    api.wait_ready(Duration::from_secs(30)).await;
    let client = reqwest::Client::new();
    assert_eq!(post_event(&client, &api, &oura_event("u", 1)).await.0, 202);

    broker.stop();
    // Concurrent clients: the first ones time out, then the breaker opens and answers at once.
    let mut saw_fast_503 = false;
    for _ in 0..10 {
        let events: Vec<_> = (0..5).map(|i| oura_event("u", i)).collect();
        let sends = events.iter().map(|e| post_event(&client, &api, e));
        let started = Instant::now();
        let statuses: Vec<_> = futures::future::join_all(sends)
            .await
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert!(
            statuses.iter().all(|s| *s == 503),
            "while down: {statuses:?}"
        );
        if started.elapsed() < Duration::from_millis(500) {
            saw_fast_503 = true;
            break;
        }
    }
    assert!(saw_fast_503, "the circuit breaker never opened");
    let r = signed(
        &client,
        &api.url("/webhooks/oura"),
        serde_json::to_vec(&oura_event("u", 1)).unwrap(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        client
            .get(api.url("/readiness"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );

    broker.start();
    broker.create_topic(&topic); // memory storage: the restarted broker starts empty
    let back = Instant::now();
    let mut recovered = None;
    while back.elapsed() < Duration::from_secs(10) {
        if post_event(&client, &api, &oura_event("u", 2)).await.0 == 202 {
            recovered = Some(back.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = recovered.expect("no 202 within 10 s of the broker returning");
    assert!(took <= Duration::from_secs(5), "recovery took {took:?}");
    assert_eq!(
        client
            .get(api.url("/readiness"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restart_pauses_the_consumer_without_loss() {
    let broker = Broker::shared();
    let mut pg = Postgres::private();
    let db = pg.database().await;
    let (topic, group) = (unique("events"), unique("group"));
    let env = runtime_env(&broker.addr, &db, &topic, &group);
    let api = Runtime::spawn("api", &env);
    let consumer = Runtime::spawn("consumer", &env);
    api.wait_ready(Duration::from_secs(30)).await;
    consumer.wait_ready(Duration::from_secs(30)).await;
    let accepted = Arc::new(Mutex::new(HashSet::new()));
    let stop = tokio_util::sync::CancellationToken::new();
    let loader = tokio::spawn(load(
        api.url(""),
        accepted.clone(),
        stop.clone(),
        "pg-user".into(),
    ));
    wait_until("some events stored", Duration::from_secs(60), || async {
        stored(&db).await.rows > 100
    })
    .await;
    pg.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let client = reqwest::Client::new();
    assert!(
        metric(&client, &consumer, "auren_runtime_events_failed_total").await >= 1.0,
        "store failures are counted"
    );
    pg.start();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    loader.await.unwrap();
    let accepted = accepted.lock().unwrap().clone();
    assert_all_stored_once(&db, &accepted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standby_active_switching_under_load_loses_nothing() {
    let broker = Broker::shared();
    let pg = Postgres::shared();
    let db = pg.database().await;
    let (topic, group) = (unique("events"), unique("group"));
    let env = runtime_env(&broker.addr, &db, &topic, &group);
    let api = Runtime::spawn("api", &env);
    let blue = Runtime::spawn(
        "consumer",
        &[
            env.as_slice(),
            &[("CONSUMER_ROLE", "active"), ("AUREN_RELEASE", "blue")],
        ]
        .concat(),
    );
    let green = Runtime::spawn(
        "consumer",
        &[
            env.as_slice(),
            &[("CONSUMER_ROLE", "standby"), ("AUREN_RELEASE", "green")],
        ]
        .concat(),
    );
    for r in [&api, &blue, &green] {
        r.wait_ready(Duration::from_secs(30)).await;
    }
    let client = reqwest::Client::new();
    let accepted = Arc::new(Mutex::new(HashSet::new()));
    let stop = tokio_util::sync::CancellationToken::new();
    let loader = tokio::spawn(load(
        api.url(""),
        accepted.clone(),
        stop.clone(),
        "switch-user".into(),
    ));
    wait_until("blue stores", Duration::from_secs(60), || async {
        stored(&db).await.rows > 100
    })
    .await;
    assert_eq!(
        metric(&client, &green, "auren_runtime_events_stored_total").await,
        0.0,
        "standby stored events"
    );

    let (mut from, mut to) = (&blue, &green);
    for _ in 0..3 {
        let left = admin_role(&client, from, "standby").await;
        assert_eq!(left["role"], "standby");
        let stored_by_from = metric(&client, from, "auren_runtime_events_stored_total").await;
        assert_eq!(admin_role(&client, to, "active").await["role"], "active");
        let before = stored(&db).await.rows;
        wait_until("the new active stores", Duration::from_secs(60), || async {
            stored(&db).await.rows > before + 50
        })
        .await;
        assert_eq!(
            metric(&client, from, "auren_runtime_events_stored_total").await,
            stored_by_from,
            "standby kept storing"
        );
        assert_eq!(
            metric(&client, from, "auren_runtime_consumer_active").await
                + metric(&client, to, "auren_runtime_consumer_active").await,
            1.0
        );
        std::mem::swap(&mut from, &mut to);
    }
    stop.cancel();
    loader.await.unwrap();
    let accepted = accepted.lock().unwrap().clone();
    assert_all_stored_once(&db, &accepted).await;
}

/// Regression: a consumer switched to standby while still joining the group must not keep
/// partitions hostage (it has to serve the rebalance), so the other release gets them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standby_during_the_group_join_releases_every_partition() {
    let broker = Broker::shared();
    let pg = Postgres::shared();
    let db = pg.database().await;
    let (topic, group) = (unique("events"), unique("group"));
    let env = runtime_env(&broker.addr, &db, &topic, &group);
    let api = Runtime::spawn("api", &env);
    let blue = Runtime::spawn(
        "consumer",
        &[env.as_slice(), &[("CONSUMER_ROLE", "active")]].concat(),
    );
    let green = Runtime::spawn(
        "consumer",
        &[env.as_slice(), &[("CONSUMER_ROLE", "standby")]].concat(),
    );
    for r in [&api, &blue, &green] {
        r.wait_ready(Duration::from_secs(30)).await;
    }
    let client = reqwest::Client::new();
    admin_role(&client, &blue, "standby").await;
    admin_role(&client, &green, "active").await;
    let mut accepted = HashSet::new();
    for n in 0..60 {
        let (status, id) =
            post_event(&client, &api, &oura_event(&format!("join-{}", n % 7), n)).await;
        assert_eq!(status, 202);
        accepted.insert(id.unwrap());
    }
    assert_all_stored_once(&db, &accepted).await;
    assert_eq!(
        metric(&client, &blue, "auren_runtime_events_stored_total").await,
        0.0
    );
}
