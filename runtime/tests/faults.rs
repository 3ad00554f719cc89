#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test-only code
//! Faults on real services: crashes, stops, outages and cutovers lose nothing and apply
//! nothing twice.

mod support;

use std::time::{Duration, Instant};

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumer_killed_with_sigkill_resumes_without_loss_or_duplicates() {
    let s = Stack::shared().await;
    let api = s.ready("api", &[]).await;
    let mut consumer = s
        .ready("consumer", &[("MAX_CONCURRENT_EVENTS", "10")])
        .await;
    let load = Load::start(&api, 1, "kill9");
    wait_until("some events stored", Duration::from_secs(60), || async {
        stored(&s.db).await.rows > 200
    })
    .await;
    load.accepted_before_the_fault().await;
    consumer.kill9();
    tokio::time::sleep(Duration::from_secs(1)).await;
    consumer.start();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (accepted, ok) = load.finish().await;
    assert!(ok > 10, "load generator got too few 202s: {ok}");
    assert_all_stored_once(&s.db, &accepted).await;
}

/// Default settings: a backlog is stored in transactions of thousands of events, and a kill
/// -9 while they are in flight loses none of them and stores none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumer_killed_with_sigkill_amid_large_batches_resumes_without_loss_or_duplicates() {
    const BACKLOG: u32 = 30_000;
    let s = Stack::shared().await;
    let api = s.ready("api", &[]).await;
    let mut accepted = backlog(&api, "kill9-backlog", BACKLOG).await;
    let mut consumer = s.ready("consumer", &[]).await;
    let load = Load::start(&api, 1, "kill9-large");
    wait_until(
        "the first batch stored",
        Duration::from_secs(60),
        || async { stored(&s.db).await.rows > 0 },
    )
    .await;
    consumer.kill9();
    let at_kill = stored(&s.db).await.rows;
    assert!(
        at_kill < i64::from(BACKLOG),
        "killed only after the whole backlog was stored ({at_kill} rows): no batch in flight"
    );
    load.accepted_before_the_fault().await;
    consumer.start();
    consumer.wait_ready(Duration::from_secs(30)).await;
    let (during, ok) = load.finish().await;
    assert!(ok > 0, "the load generator got no 202");
    accepted.extend(during);
    assert_all_stored_once(&s.db, &accepted).await;
    let rest = i64::from(BACKLOG) - at_kill;
    assert!(
        mean_batch(&consumer).await > 1000.0,
        "the restarted consumer stored the {rest} events left in small batches"
    );
}

/// Default settings: a record that is not an event, in the middle of a backlog, goes to the
/// dead-letter topic with its reason while the events around it, in the same large batch,
/// are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_record_in_a_large_batch_is_dead_lettered_and_the_rest_stored() {
    const POISON: &[u8] = b"{\"not\": \"an AUREN event\"}";
    let s = Stack::shared().await;
    let api = s.ready("api", &[]).await;
    let mut accepted = backlog(&api, "poison-before", 3_000).await;
    produce_raw(&s.broker.addr, &s.topic, POISON).await;
    accepted.extend(backlog(&api, "poison-after", 3_000).await);
    let consumer = s.ready("consumer", &[]).await;
    assert_all_stored_once(&s.db, &accepted).await;
    let (payload, reason) = first_dead_letter(&s.broker.addr, &format!("{}.dlq", s.topic)).await;
    assert_eq!(payload, POISON);
    assert!(reason.starts_with("not an AUREN event"), "reason: {reason}");
    let client = reqwest::Client::new();
    let handled = metric(&client, &consumer, "auren_runtime_consumer_batch_size_sum").await;
    assert_eq!(
        handled, 6_001.0,
        "every record handled once, the poison with them"
    );
    assert!(
        mean_batch(&consumer).await > 1000.0,
        "the backlog was not stored in large batches"
    );
}

/// Two batches in flight: PostgreSQL refuses one (a trigger fails its held event) and the
/// consumer keeps retrying it while the batches taken after it, on the same partition, are
/// stored beside it. Their offsets must wait for the refused batch's: after a kill -9, the
/// trigger dropped and a restart, every event is stored once. Had a later batch committed its
/// offsets as soon as it was stored, the held event (before them on their partition) would be
/// skipped for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_stored_before_an_earlier_one_commits_no_offset_past_it() {
    const HELD: u32 = 199_999;
    const AFTER: u32 = 100_000;
    let s = Stack::shared().await;
    let api = s.ready("api", &[]).await;
    let mut consumer = s.ready("consumer", &[]).await;
    refuse_value(&s.db, HELD).await;
    let client = reqwest::Client::new();
    let held = oura_event("held", HELD);
    let (status, id) = post_event(&client, &api, &held).await;
    assert_eq!(status, 202, "the held event accepted");
    let mut accepted = Accepted::default();
    accepted.insert(marker_of(&held), id.unwrap());
    // The same user, so the same partition, after the held event.
    let mut first = AFTER;
    let deadline = Instant::now() + Duration::from_secs(60);
    while count_where(&s.db, &format!("value >= {AFTER} AND value <> {HELD}")).await == 0 {
        assert!(
            Instant::now() < deadline,
            "no batch taken after the refused one was stored within 60 s"
        );
        if let Some(events) = post_batch(&client, &api.url(""), "held", first, 20).await {
            accepted.extend(events);
            first += 20;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(count_where(&s.db, &format!("value = {HELD}")).await, 0);
    // The later batch can be stored before the refused one's insert has come back failed.
    wait_until(
        "the refused batch counted as a failed store",
        Duration::from_secs(10),
        || async { counted(&client, &consumer, "auren_runtime_events_failed_total").await >= 1.0 },
    )
    .await;
    // Time for any (wrong) asynchronous offset commit of the later batches to land.
    tokio::time::sleep(Duration::from_secs(2)).await;
    consumer.kill9();
    execute_sql(&s.db, "DROP TRIGGER refuse_value ON events").await;
    consumer.start();
    consumer.wait_ready(Duration::from_secs(30)).await;
    assert_all_stored_once(&s.db, &accepted).await;
}

/// Makes PostgreSQL refuse every batch holding an event of `value`: a trigger fails its insert.
async fn refuse_value(db: &str, value: u32) {
    execute_sql(
        db,
        "CREATE OR REPLACE FUNCTION refuse_value() RETURNS trigger LANGUAGE plpgsql AS
         $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$",
    )
    .await;
    execute_sql(
        db,
        &format!(
            "CREATE OR REPLACE TRIGGER refuse_value BEFORE INSERT ON events FOR EACH ROW
             WHEN (NEW.value = {value}) EXECUTE FUNCTION refuse_value()"
        ),
    )
    .await;
}

async fn execute_sql(db: &str, sql: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(db).await.expect("connect");
    sqlx::query(sql).execute(&mut conn).await.expect(sql);
}

async fn count_where(db: &str, condition: &str) -> i64 {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(db).await.expect("connect");
    sqlx::query_scalar(&format!("SELECT count(*) FROM events WHERE {condition}"))
        .fetch_one(&mut conn)
        .await
        .expect("count")
}

/// Events per stored batch, on average, of `consumer` since it started.
async fn mean_batch(consumer: &Runtime) -> f64 {
    let client = reqwest::Client::new();
    let name = "auren_runtime_consumer_batch_size";
    let sum = metric(&client, consumer, &format!("{name}_sum")).await;
    let count = metric(&client, consumer, &format!("{name}_count")).await;
    sum / count
}

/// Writes `payload` to `topic` as it is: a record no runtime produced.
async fn produce_raw(brokers: &str, topic: &str, payload: &[u8]) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = auren_runtime::kafka::base_config(brokers)
        .create()
        .expect("producer");
    producer
        .send(
            FutureRecord::<(), _>::to(topic).payload(payload),
            Duration::from_secs(10),
        )
        .await
        .expect("poison record produced");
}

/// The first record of the dead-letter topic: its payload and its `auren-dlq-reason` header.
async fn first_dead_letter(brokers: &str, topic: &str) -> (Vec<u8>, String) {
    use rdkafka::Message;
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::Headers;
    let consumer: StreamConsumer = auren_runtime::kafka::base_config(brokers)
        .set("group.id", unique("dlq-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let m = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
        .await
        .expect("no dead letter within 60 s")
        .expect("dead-letter record");
    let reason = m
        .headers()
        .and_then(|h| h.iter().find(|h| h.key == "auren-dlq-reason"))
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .expect("an auren-dlq-reason header");
    (m.payload().unwrap_or_default().to_vec(), reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_stores_every_accepted_event_and_exits_in_time() {
    let s = Stack::shared().await;
    let mut api = s.ready("api", &[("SHUTDOWN_TIMEOUT", "10")]).await;
    let mut consumer = s.ready("consumer", &[("SHUTDOWN_TIMEOUT", "10")]).await;
    let load = Load::start(&api, 4, "term");
    tokio::time::sleep(Duration::from_secs(2)).await;
    load.accepted_before_the_fault().await;
    api.sigterm();
    let (code, took) = api.wait_exit(Duration::from_secs(15));
    assert_eq!(code, Some(0), "api exit code; log:\n{}", api.log_text());
    assert!(took < Duration::from_secs(10), "api took {took:?} to stop");
    let (accepted, _) = load.finish().await;
    assert!(!accepted.is_empty());
    assert_all_stored_once(&s.db, &accepted).await;

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

/// SIGTERM in API mode: readiness goes off at once, but requests are still taken for
/// SHUTDOWN_DRAIN_SECONDS, so a Service that has not yet dropped the pod loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_readiness_off_but_keeps_serving_for_the_drain_delay() {
    let s = Stack::shared().await;
    let mut api = s.ready("api", &[("SHUTDOWN_DRAIN_SECONDS", "3")]).await;
    let client = reqwest::Client::new();
    api.sigterm();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status_of(&client, api.url("/readiness")).await, 503);
    let (status, _) = post_event(&client, &api, &oura_event("drain", 1)).await;
    assert_eq!(status, 202, "a request during the drain is taken");
    let (code, took) = api.wait_exit(Duration::from_secs(15));
    assert_eq!(code, Some(0), "log:\n{}", api.log_text());
    assert!(
        took >= Duration::from_millis(2500),
        "exited after {took:?}, before the drain delay ended"
    );
}

async fn status_of(client: &reqwest::Client, url: String) -> u16 {
    client.get(url).send().await.unwrap().status().as_u16()
}

/// Sends rounds of 5 concurrent events until one round is refused fast (breaker open).
async fn until_the_breaker_opens(client: &reqwest::Client, api: &Runtime) -> bool {
    for _ in 0..10 {
        let events: Vec<_> = (0..5).map(|i| oura_event("u", i)).collect();
        let started = Instant::now();
        let answers =
            futures::future::join_all(events.iter().map(|e| post_event(client, api, e))).await;
        let statuses: Vec<_> = answers.into_iter().map(|(s, _)| s).collect();
        assert!(
            statuses.iter().all(|s| *s == 503),
            "while down: {statuses:?}"
        );
        if started.elapsed() < Duration::from_millis(500) {
            return true;
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_outage_answers_503_and_recovers_within_5_seconds() {
    let mut broker = Broker::private();
    let topic = unique("events");
    broker.create_topic(&topic);
    let settings = [
        ("KAFKA_BROKERS", broker.addr.as_str()),
        ("KAFKA_TOPIC", &topic),
        ("KAFKA_DELIVERY_TIMEOUT_MS", "2000"),
    ];
    let api = Runtime::spawn("api", &settings);
    api.wait_ready(Duration::from_secs(30)).await;
    let client = reqwest::Client::new();
    // Not one of the events sent below: the same body signed in the same second would be
    // the same signed request, refused as a replay (409).
    assert_eq!(post_event(&client, &api, &oura_event("up", 1)).await.0, 202);

    broker.stop();
    assert!(
        until_the_breaker_opens(&client, &api).await,
        "the circuit breaker never opened"
    );
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
    assert_eq!(status_of(&client, api.url("/readiness")).await, 503);

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
    assert_eq!(status_of(&client, api.url("/readiness")).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restart_pauses_the_consumer_without_loss() {
    let mut s = Stack::on(Broker::shared(), Postgres::private()).await;
    let api = s.ready("api", &[]).await;
    let consumer = s.ready("consumer", &[]).await;
    let load = Load::start(&api, 1, "pg");
    wait_until("some events stored", Duration::from_secs(60), || async {
        stored(&s.db).await.rows > 100
    })
    .await;
    load.accepted_before_the_fault().await;
    s.pg.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let client = reqwest::Client::new();
    assert!(
        metric(&client, &consumer, "auren_runtime_events_failed_total").await >= 1.0,
        "store failures are counted"
    );
    s.pg.start();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (accepted, _) = load.finish().await;
    assert_all_stored_once(&s.db, &accepted).await;
}

/// [`blue_green`] with one client posting as `user`, once blue has stored 100 events.
async fn blue_storing_under_load(s: &Stack, user: &str) -> (Runtime, Runtime, Runtime, Load) {
    let (api, blue, green) = blue_green(s).await;
    let load = Load::start(&api, 1, user);
    wait_until("blue stores", Duration::from_secs(60), || async {
        stored(&s.db).await.rows > 100
    })
    .await;
    load.accepted_before_the_fault().await;
    (api, blue, green, load)
}

/// A stack with an api and two consumer releases, `blue` active and `green` on standby.
async fn blue_green(s: &Stack) -> (Runtime, Runtime, Runtime) {
    let api = s.ready("api", &[]).await;
    let blue = s
        .ready(
            "consumer",
            &[("CONSUMER_ROLE", "active"), ("AUREN_RELEASE", "blue")],
        )
        .await;
    let green = s
        .ready(
            "consumer",
            &[("CONSUMER_ROLE", "standby"), ("AUREN_RELEASE", "green")],
        )
        .await;
    (api, blue, green)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standby_active_switching_under_load_loses_nothing() {
    let s = Stack::shared().await;
    let (_api, blue, green, load) = blue_storing_under_load(&s, "switch").await;
    let client = reqwest::Client::new();
    assert_eq!(
        metric(&client, &green, "auren_runtime_events_stored_total").await,
        0.0,
        "standby stored events"
    );

    let (mut from, mut to) = (&blue, &green);
    for _ in 0..3 {
        assert_eq!(
            admin_role(&client, from, "standby").await["role"],
            "standby"
        );
        let stored_by_from = metric(&client, from, "auren_runtime_events_stored_total").await;
        assert_eq!(admin_role(&client, to, "active").await["role"], "active");
        let before = stored(&s.db).await.rows;
        wait_until("the new active stores", Duration::from_secs(60), || async {
            stored(&s.db).await.rows > before + 50
        })
        .await;
        let still = metric(&client, from, "auren_runtime_events_stored_total").await;
        assert_eq!(still, stored_by_from, "standby kept storing");
        let active = metric(&client, from, "auren_runtime_consumer_active").await
            + metric(&client, to, "auren_runtime_consumer_active").await;
        assert_eq!(active, 1.0);
        std::mem::swap(&mut from, &mut to);
    }
    let (accepted, _) = load.finish().await;
    assert_all_stored_once(&s.db, &accepted).await;
}

/// Regression: a consumer switched to standby while still joining the group must not keep
/// partitions hostage (it has to serve the rebalance), so the other release gets them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standby_during_the_group_join_releases_every_partition() {
    let s = Stack::shared().await;
    let (api, blue, green) = blue_green(&s).await;
    let client = reqwest::Client::new();
    admin_role(&client, &blue, "standby").await;
    admin_role(&client, &green, "active").await;
    let mut accepted = Accepted::default();
    for n in 0..60 {
        let event = oura_event(&format!("join-{}", n % 7), n);
        let (status, id) = post_event(&client, &api, &event).await;
        assert_eq!(status, 202);
        accepted.insert(marker_of(&event), id.unwrap());
    }
    assert_all_stored_once(&s.db, &accepted).await;
    assert_eq!(
        metric(&client, &blue, "auren_runtime_events_stored_total").await,
        0.0
    );
}

/// Regression: the broker freezes (SIGSTOP, 10 s) right after green's consumer was activated
/// in blue's place, and the moment it is back the operator rolls back: green to standby,
/// blue active again. Green's group join was still in flight, so leaving at once left tansu
/// 0.6 (the test broker until 2026-12-07) with the departed member as the group's leader, and blue was never
/// assigned a partition again (2 of 3 runs before the fix). The consumer now lets a join in
/// flight finish before it leaves; blue resumes and every accepted event is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollback_right_after_a_broker_freeze_leaves_the_group_consuming() {
    let s = Stack::on(Broker::private(), Postgres::shared()).await;
    s.broker.create_topic(&s.topic);
    let (_api, blue, green, load) = blue_storing_under_load(&s, "freeze").await;
    let client = reqwest::Client::new();
    admin_role(&client, &blue, "standby").await;
    admin_role(&client, &green, "active").await;
    s.broker.pause();
    tokio::time::sleep(Duration::from_secs(10)).await;
    s.broker.resume();
    assert_eq!(
        admin_role(&client, &green, "standby").await["role"],
        "standby"
    );
    assert_eq!(admin_role(&client, &blue, "active").await["role"], "active");
    let before = stored(&s.db).await.rows;
    wait_until("blue stores again", Duration::from_secs(60), || async {
        stored(&s.db).await.rows > before + 50
    })
    .await;
    let (accepted, _) = load.finish().await;
    assert_all_stored_once(&s.db, &accepted).await;
}

/// Two consumers of one release leave the group one right after the other, as the operator
/// switches a release of two consumer pods to standby, and two of the next release join. The
/// second one to leave has not yet seen the rebalance the first one's leave began (it learns
/// of it at its next heartbeat), so it must wait for it before it leaves too: leaving in the
/// middle of a join round is what left tansu 0.6 (the test broker until 2026-12-07) with a departed leader
/// and no partition assigned again. The next release's consumers store every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_consumers_leaving_one_after_the_other_leave_the_group_consuming() {
    let s = Stack::on(Broker::private(), Postgres::shared()).await;
    s.broker.create_topic(&s.topic);
    let (api, blue_a, green_a) = blue_green(&s).await;
    let blue_b = s
        .ready(
            "consumer",
            &[("CONSUMER_ROLE", "active"), ("AUREN_RELEASE", "blue")],
        )
        .await;
    let green_b = s
        .ready(
            "consumer",
            &[("CONSUMER_ROLE", "standby"), ("AUREN_RELEASE", "green")],
        )
        .await;
    let load = Load::start(&api, 3, "pair");
    wait_until("blue stores", Duration::from_secs(60), || async {
        stored(&s.db).await.rows > 100
    })
    .await;
    let client = reqwest::Client::new();
    for blue in [&blue_a, &blue_b] {
        assert_eq!(
            admin_role(&client, blue, "standby").await["role"],
            "standby"
        );
    }
    for green in [&green_a, &green_b] {
        assert_eq!(admin_role(&client, green, "active").await["role"], "active");
    }
    let before = stored(&s.db).await.rows;
    wait_until("green stores", Duration::from_secs(60), || async {
        stored(&s.db).await.rows > before + 100
    })
    .await;
    let (accepted, _) = load.finish().await;
    assert_all_stored_once(&s.db, &accepted).await;
}

/// An active consumer whose group join does not complete within its patience (30 s; here the
/// broker is frozen for 40 s right after green is activated) leaves the group and joins again
/// (`auren_runtime_consumer_rejoins_total`), and once the broker is back it is assigned and
/// stores every accepted event once: starting a join again loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_join_that_does_not_complete_in_time_is_started_again_and_loses_nothing() {
    let s = Stack::on(Broker::private(), Postgres::shared()).await;
    s.broker.create_topic(&s.topic);
    let (_api, blue, green, load) = blue_storing_under_load(&s, "rejoin").await;
    let client = reqwest::Client::new();
    admin_role(&client, &blue, "standby").await;
    admin_role(&client, &green, "active").await;
    s.broker.pause();
    tokio::time::sleep(Duration::from_secs(40)).await;
    s.broker.resume();
    let rejoins = metric(&client, &green, "auren_runtime_consumer_rejoins_total").await;
    assert!(rejoins >= 1.0, "green never started its join again");
    let before = stored(&s.db).await.rows;
    wait_until("green stores", Duration::from_secs(60), || async {
        stored(&s.db).await.rows > before + 50
    })
    .await;
    let (accepted, _) = load.finish().await;
    assert_all_stored_once(&s.db, &accepted).await;
}
