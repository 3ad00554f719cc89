#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test-only code
//! Ingest -> Kafka -> consumer -> PostgreSQL on real services, and the bad-input table.

mod support;

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_accepted_event_is_stored_exactly_once_in_user_order() {
    let s = Stack::shared().await;
    let api = s.ready("api", &[]).await;
    let _consumer = s
        .ready("consumer", &[("MAX_CONCURRENT_EVENTS", "25")])
        .await;
    let db = s.db.clone();

    let client = reqwest::Client::new();
    let users: Vec<String> = (0..8).map(|i| format!("user-{i}")).collect();
    let per_user = 40u32;
    let sends = users.iter().map(|user| {
        let (client, api) = (&client, &api);
        async move {
            let mut accepted = Vec::new();
            for n in 0..per_user {
                let event = oura_event(user, n);
                let (status, id) = post_event(client, api, &event).await;
                assert_eq!(status, 202);
                accepted.push((marker_of(&event), id.unwrap()));
            }
            accepted
        }
    });
    let mut accepted: Accepted = futures::future::join_all(sends)
        .await
        .into_iter()
        .flatten()
        .collect();
    let batch: Vec<_> = (0..60).map(|n| oura_event("batch-user", n)).collect();
    let r = signed(
        &client,
        &api.url("/webhooks/oura/batch"),
        serde_json::to_vec(&batch).unwrap(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 202);
    let body: serde_json::Value = r.json().await.unwrap();
    let ids = body["ids"].as_array().unwrap().iter();
    let ids = ids.map(|id| id.as_str().unwrap().to_owned());
    accepted.extend(batch.iter().map(marker_of).zip(ids));

    let expected = per_user as usize * users.len() + 60;
    assert_eq!(accepted.len(), expected, "one answer, one id per event");
    assert_all_stored_once(&db, &accepted).await;
    assert_eq!(
        stored(&db).await.rows,
        expected as i64,
        "nothing else stored"
    );

    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db)
        .await
        .unwrap();
    for user in users
        .iter()
        .chain(std::iter::once(&"batch-user".to_string()))
    {
        let values: Vec<(f64,)> =
            sqlx::query_as("SELECT value FROM events WHERE user_id = $1 ORDER BY stored_seq")
                .bind(user)
                .fetch_all(&mut conn)
                .await
                .unwrap();
        let values: Vec<f64> = values.into_iter().map(|(v,)| v).collect();
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        assert_eq!(values, sorted, "events of {user} stored out of order");
    }
    let (latest,): (f64,) = sqlx::query_as(
        "SELECT latest_value FROM user_metrics WHERE user_id = 'user-0' AND metric = 'steps'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(latest, f64::from(per_user - 1));
    assert_eq!(
        metric(&client, &api, "auren_runtime_events_accepted_total").await as usize,
        expected
    );
}

#[allow(clippy::unwrap_used)]
fn topic_size(brokers: &str, topic: &str) -> i64 {
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "probe")
        .create()
        .unwrap();
    (0..3)
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(5))
                .map(|(lo, hi)| hi - lo)
                .unwrap_or(0)
        })
        .sum()
}

/// A ready API process producing to `topic` on `broker`, with `extra` settings.
async fn api_on(broker: &Broker, topic: &str, extra: &[(&str, &str)]) -> Runtime {
    let kafka = [
        ("KAFKA_BROKERS", broker.addr.as_str()),
        ("KAFKA_TOPIC", topic),
    ];
    let api = Runtime::spawn("api", &[kafka.as_slice(), extra].concat());
    api.wait_ready(Duration::from_secs(30)).await;
    api
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_and_writes_nothing() {
    let broker = Broker::shared();
    let topic = unique("events");
    let api = api_on(&broker, &topic, &[("MAX_BODY_BYTES", "2048")]).await;
    let client = reqwest::Client::new();
    let good = serde_json::to_vec(&oura_event("u1", 5)).unwrap();
    let url = api.url("/webhooks/oura");
    let ts = chrono::Utc::now().timestamp();
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        ("unknown device", signed(&client, &api.url("/webhooks/polar"), good.clone()), 404, "unknown_device"),
        ("malformed json", signed(&client, &url, b"{nope".to_vec()), 400, "malformed_json"),
        ("wrong shape", signed(&client, &url, br#"{"user":"u1"}"#.to_vec()), 422, "invalid_payload"),
        ("value out of range", signed(&client, &url, serde_json::to_vec(&json!({"user_id":"u1","data_type":"heart_rate","value":999,"timestamp":"2026-01-01T00:00:00Z"})).unwrap()), 422, "invalid_payload"),
        ("unknown metric", signed(&client, &url, serde_json::to_vec(&json!({"user_id":"u1","data_type":"mood","value":1,"timestamp":"2026-01-01T00:00:00Z"})).unwrap()), 422, "invalid_payload"),
        ("empty batch", signed(&client, &api.url("/webhooks/oura/batch"), b"[]".to_vec()), 422, "invalid_payload"),
        ("bad batch item", signed(&client, &api.url("/webhooks/oura/batch"), serde_json::to_vec(&json!([oura_event("u1", 1), {"x": 1}])).unwrap()), 422, "invalid_payload"),
        ("too large", signed(&client, &url, vec![b' '; 4096]), 413, "payload_too_large"),
        ("unsigned", client.post(&url).body(good.clone()), 401, "unauthorized"),
        ("wrong signature", client.post(&url).header("x-auren-timestamp", ts.to_string()).header("x-auren-signature", auren_runtime::api::auth::sign(b"wrong", ts, &good)).body(good.clone()), 401, "unauthorized"),
        ("stale timestamp", client.post(&url).header("x-auren-timestamp", (ts - 3600).to_string()).header("x-auren-signature", auren_runtime::api::auth::sign(SECRET, ts - 3600, &good)).body(good.clone()), 401, "unauthorized"),
        ("no secret for device", signed(&client, &api.url("/webhooks/whoop"), good.clone()), 401, "unauthorized"),
        ("unknown route", client.get(api.url("/nope")), 404, "not_found"),
        ("admin without token", client.put(api.admin_url("/admin/consumer/role")).json(&json!({"role":"active"})), 401, "unauthorized"),
        ("admin on the public port", client.put(api.url("/admin/consumer/role")).bearer_auth(ADMIN_TOKEN).json(&json!({"role":"active"})), 404, "not_found"),
    ];
    for (name, request, status, code) in cases {
        let r = request.send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{name}");
        let body: serde_json::Value = r
            .json()
            .await
            .unwrap_or_else(|e| panic!("{name}: not JSON: {e}"));
        assert_eq!(body["error"], code, "{name}: {body}");
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{name}: {body}"
        );
    }
    assert_eq!(
        metric(&client, &api, "auren_runtime_events_accepted_total").await,
        0.0
    );
    assert_eq!(
        topic_size(&broker.addr, &topic),
        0,
        "nothing may reach Kafka"
    );
    assert!(
        !api.log_text()
            .contains(std::str::from_utf8(SECRET).unwrap()),
        "secret leaked into logs"
    );
    // A device without a secret is not told apart from a wrong signature.
    let unknown = signed(&client, &api.url("/webhooks/whoop"), good.clone());
    let wrong = client
        .post(&url)
        .header("x-auren-timestamp", ts.to_string())
        .header(
            "x-auren-signature",
            auren_runtime::api::auth::sign(b"wrong", ts, &good),
        )
        .body(good.clone());
    let (unknown, wrong) = (unknown.send().await.unwrap(), wrong.send().await.unwrap());
    assert_eq!(
        (unknown.status().as_u16(), wrong.status().as_u16()),
        (401, 401)
    );
    let (unknown, wrong) = (unknown.bytes().await.unwrap(), wrong.bytes().await.unwrap());
    assert_eq!(unknown, wrong, "no-secret and bad-signature answers differ");
    // No unsafe setting is on, and the metric says so.
    for setting in ["faults", "webhook_auth_disabled"] {
        let series = format!("auren_runtime_unsafe_setting{{setting=\"{setting}\"}}");
        assert_eq!(metric(&client, &api, &series).await, 0.0, "{series}");
    }
    // The process is still healthy after all that.
    assert_eq!(post_event(&client, &api, &oura_event("u1", 1)).await.0, 202);
}

/// A body over the limit gets its 413, not a dropped connection, although the sender is still
/// writing it when the server has decided: the server reads the rest away instead of closing on
/// it. Five bodies per route, each 4 MiB over the limit (a client still writing that much when
/// the connection closes meets the close on its write and never reads the 413).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_still_being_sent_gets_its_413() {
    let broker = Broker::shared();
    let api = api_on(&broker, &unique("events"), &[("MAX_BODY_BYTES", "65536")]).await;
    let client = reqwest::Client::new();
    for (path, limit) in [
        ("/webhooks/oura", 65_536),
        ("/vendors/whoop", 65_536),
        ("/vendors/garmin/some-token", 16 << 20),
    ] {
        for attempt in 0..5 {
            let body = vec![b' '; limit + (4 << 20)];
            let sent = client
                .post(api.url(path))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            let answer = match sent {
                Ok(response) => (
                    response.status().as_u16(),
                    response.text().await.unwrap_or_default(),
                ),
                Err(e) => panic!("{path}, attempt {attempt}: no answer: {e:?}"),
            };
            assert_eq!(answer.0, 413, "{path}: {}", answer.1);
            assert!(
                answer.1.contains("payload_too_large"),
                "{path}: {}",
                answer.1
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_setting_stops_the_start_naming_the_variable() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_auren-runtime"))
        .env("MAX_CONCURRENT_EVENTS", "zero")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("MAX_CONCURRENT_EVENTS"), "{err}");
}

/// The admin API answers on ADMIN_PORT only, with the bearer scheme in any case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_is_served_on_the_admin_port_only() {
    let s = Stack::shared().await;
    let consumer = s.ready("consumer", &[("CONSUMER_ROLE", "standby")]).await;
    let client = reqwest::Client::new();
    let role = auren_contract::paths::ADMIN_CONSUMER_ROLE;
    let get = |url: String, auth: &str| {
        client
            .get(url)
            .header("authorization", auth.to_string())
            .send()
    };
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let public = get(consumer.url(role), &bearer).await.unwrap();
    assert_eq!(public.status(), 404, "the public port has no admin API");
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let answer = get(consumer.admin_url(role), &format!("{scheme} {ADMIN_TOKEN}"))
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{scheme}");
        let body: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(body["role"], "standby");
    }
    let wrong = get(consumer.admin_url(role), "Bearer nope").await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        admin_role(&client, &consumer, "active").await["role"],
        "active"
    );
    let health = client
        .get(consumer.admin_url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        health.status(),
        404,
        "the admin port serves the admin API only"
    );
}

/// Fault injection and unsigned webhooks are never quiet: a warning at start, a degraded
/// `/health` component each, and the unsafe-setting gauge at 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_settings_are_loud() {
    let broker = Broker::shared();
    let settings = [("FAULT_LATENCY_MS", "1"), ("WEBHOOK_AUTH", "disabled")];
    let api = api_on(&broker, &unique("events"), &settings).await;
    let client = reqwest::Client::new();
    let health = || async {
        let r = client.get(api.url("/health")).send().await.unwrap();
        r.json::<serde_json::Value>().await.unwrap()
    };
    wait_until(
        "a health report after start-up",
        Duration::from_secs(10),
        || async {
            let report = health().await;
            report["components"]["kafka"]["status"] == "healthy"
                && report["components"]["startup"].is_null()
        },
    )
    .await;
    let report = health().await;
    assert_eq!(report["status"], "degraded", "{report}");
    assert_eq!(
        report["components"]["faults"]["status"], "degraded",
        "{report}"
    );
    assert_eq!(
        report["components"]["webhook_auth"]["status"], "degraded",
        "{report}"
    );
    for setting in ["faults", "webhook_auth_disabled"] {
        let series = format!("auren_runtime_unsafe_setting{{setting=\"{setting}\"}}");
        assert_eq!(metric(&client, &api, &series).await, 1.0, "{series}");
    }
    let log = api.log_text();
    for setting in ["faults", "webhook_auth_disabled"] {
        assert!(
            log.lines()
                .any(|l| l.contains("WARN") && l.contains("unsafe setting") && l.contains(setting)),
            "no warning for {setting}:\n{log}"
        );
    }
}
