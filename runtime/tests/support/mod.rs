//! Test harness: real services (a Kafka-protocol broker, PostgreSQL) and the real
//! `auren-runtime` binary as child processes. `make test` starts a shared broker and database
//! and passes them in `AUREN_TEST_KAFKA` / `AUREN_TEST_DATABASE_URL`; tests that stop a
//! service start a private one of their own.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::zombie_processes
)]

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::{Connection, PgConnection};

pub const SECRET: &[u8] = b"test-secret";
pub const ADMIN_TOKEN: &str = "test-admin-token";

pub use auren_testkit::stored::Accepted;
pub use auren_testkit::{Broker, Postgres, free_port, unique};

fn scratch_dir() -> PathBuf {
    auren_testkit::scratch_dir("auren-it")
}

pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

// ---------------------------------------------------------------- runtime processes

pub struct Runtime {
    pub port: u16,
    /// `ADMIN_PORT`: the admin API is served here only.
    pub admin_port: u16,
    pub log: PathBuf,
    child: Option<Child>,
    env: Vec<(String, String)>,
}

impl Runtime {
    pub fn spawn(mode: &str, env: &[(&str, &str)]) -> Runtime {
        let mut all: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        all.push(("RUN_MODE".into(), mode.into()));
        let mut r = Runtime {
            port: free_port(),
            admin_port: free_port(),
            log: scratch_dir().join(format!("{mode}.log")),
            child: None,
            env: all,
        };
        r.start();
        r
    }

    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let err = log.try_clone().expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_auren-runtime"))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("API_HOST", "127.0.0.1")
            .env("API_PORT", self.port.to_string())
            .env("ADMIN_PORT", self.admin_port.to_string())
            .env("LOG_FORMAT", "text")
            .env(
                "WEBHOOK_SECRET_OURA",
                std::str::from_utf8(SECRET).unwrap_or(""),
            )
            .env("ADMIN_TOKEN", ADMIN_TOKEN)
            .env("HEALTH_CHECK_INTERVAL", "1")
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("spawn auren-runtime");
        self.child = Some(child);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A URL on the admin port.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    pub async fn wait_ready(&self, timeout: Duration) {
        let url = self.url("/readiness");
        let client = reqwest::Client::new();
        wait_until("readiness", timeout, || {
            let req = client.get(&url).send();
            async move { req.await.map(|r| r.status() == 200).unwrap_or(false) }
        })
        .await;
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("running")
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit; returns its exit code and how long it took.
    pub fn wait_exit(&mut self, timeout: Duration) -> (Option<i32>, Duration) {
        let start = Instant::now();
        let mut child = self.child.take().expect("running");
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = child.try_wait() {
                return (status.code(), start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        panic!(
            "process did not exit within {timeout:?}; log: {}",
            self.log.display()
        );
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.kill9();
    }
}

// ---------------------------------------------------------------- clients

/// A steps reading of `user`, marked as no other event is (its reading time,
/// [`auren_testkit::stored::marker`]), so the store can be checked per event.
pub fn oura_event(user: &str, steps: u32) -> Value {
    let marker = auren_testkit::stored::marker();
    serde_json::json!({"user_id": user, "data_type": "steps", "value": steps, "timestamp": marker})
}

/// The marker [`oura_event`] gave `event`.
pub fn marker_of(event: &Value) -> String {
    let marker = &event[auren_testkit::stored::MARKER_FIELD];
    marker.as_str().unwrap_or_default().to_owned()
}

pub fn signed(client: &reqwest::Client, url: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
    let ts = chrono::Utc::now().timestamp();
    let sig = auren_runtime::api::auth::sign(SECRET, ts, &body);
    client
        .post(url)
        .header("x-auren-timestamp", ts.to_string())
        .header("x-auren-signature", sig)
        .header("content-type", "application/json")
        .body(body)
}

/// Posts one event; returns the status and, for 202, the event id.
pub async fn post_event(
    client: &reqwest::Client,
    api: &Runtime,
    event: &Value,
) -> (u16, Option<String>) {
    let body = serde_json::to_vec(event).expect("json");
    match signed(client, &api.url("/webhooks/oura"), body)
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            (
                status,
                v.get("id").and_then(Value::as_str).map(str::to_string),
            )
        }
        Err(_) => (0, None),
    }
}

/// The value of a metric: the sum of its series named exactly `name` (with any labels), or of
/// the one series `name{labels}` when `name` carries labels. Panics when no such series is
/// exposed: a missing series is a broken contract, not a zero.
pub async fn metric(client: &reqwest::Client, rt: &Runtime, name: &str) -> f64 {
    let text = metrics_text(client, rt).await;
    metric_in(&text, name).unwrap_or_else(|| panic!("no series {name} in /metrics:\n{text}"))
}

/// The runtime's `/metrics` exposition.
async fn metrics_text(client: &reqwest::Client, rt: &Runtime) -> String {
    client
        .get(rt.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// A labelled counter's sum: 0 while it has no series (each appears with its first increment).
pub async fn counted(client: &reqwest::Client, rt: &Runtime, name: &str) -> f64 {
    let text = metrics_text(client, rt).await;
    metric_in(&text, name).unwrap_or(0.0)
}

/// [`metric`] on exposition text; `None` when no series matches.
pub fn metric_in(text: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            *series == name || (!name.contains('{') && series.starts_with(&format!("{name}{{")))
        })
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

pub async fn admin_role(client: &reqwest::Client, rt: &Runtime, role: &str) -> Value {
    let r = client
        .put(rt.admin_url("/admin/consumer/role"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({ "role": role }))
        .send()
        .await
        .expect("admin call");
    assert_eq!(r.status(), 200, "role switch to {role}");
    r.json().await.expect("role json")
}

// ---------------------------------------------------------------- database checks

pub struct Stored {
    pub rows: i64,
    pub projected: i64,
}

pub async fn stored(db_url: &str) -> Stored {
    let unknown = Stored {
        rows: -1,
        projected: -1,
    };
    let Ok(mut conn) = PgConnection::connect(db_url).await else {
        return unknown;
    };
    let row: Result<(i64, i64), _> = sqlx::query_as(
        "SELECT count(*), COALESCE((SELECT sum(event_count)::bigint FROM user_metrics), 0) FROM events",
    )
    .fetch_one(&mut conn)
    .await;
    match row {
        Ok((rows, projected)) => Stored { rows, projected },
        Err(_) => unknown,
    }
}

/// One test's slice of the services: its own database, topic and consumer group.
pub struct Stack {
    pub broker: Broker,
    pub pg: Postgres,
    pub db: String,
    pub topic: String,
    pub group: String,
}

impl Stack {
    /// On the shared broker and database of `make test`.
    pub async fn shared() -> Stack {
        Stack::on(Broker::shared(), Postgres::shared()).await
    }

    pub async fn on(broker: Broker, pg: Postgres) -> Stack {
        let db = pg.database().await;
        Stack {
            broker,
            pg,
            db,
            topic: unique("events"),
            group: unique("group"),
        }
    }

    pub fn env(&self) -> Vec<(&str, &str)> {
        vec![
            ("KAFKA_BROKERS", self.broker.addr.as_str()),
            ("DATABASE_URL", self.db.as_str()),
            ("KAFKA_TOPIC", self.topic.as_str()),
            ("KAFKA_GROUP", self.group.as_str()),
        ]
    }

    /// Starts a runtime process in `mode` with extra settings and waits until it is ready.
    pub async fn ready(&self, mode: &str, extra: &[(&str, &str)]) -> Runtime {
        let runtime = Runtime::spawn(mode, &[self.env().as_slice(), extra].concat());
        runtime.wait_ready(Duration::from_secs(30)).await;
        runtime
    }
}

/// Clients sending batches of 20 events until stopped, recording the events that got 202.
pub struct Load {
    pub accepted: std::sync::Arc<std::sync::Mutex<Accepted>>,
    stop: tokio_util::sync::CancellationToken,
    clients: Vec<tokio::task::JoinHandle<usize>>,
}

impl Load {
    pub fn start(api: &Runtime, clients: usize, user: &str) -> Load {
        let accepted = std::sync::Arc::default();
        let stop = tokio_util::sync::CancellationToken::new();
        let clients = (0..clients)
            .map(|i| {
                tokio::spawn(send_batches(
                    api.url(""),
                    std::sync::Arc::clone(&accepted),
                    stop.clone(),
                    format!("{user}-{i}"),
                ))
            })
            .collect();
        Load {
            accepted,
            stop,
            clients,
        }
    }

    /// Asserts that the pipeline works before a fault is injected: waits (at most 30 s) for
    /// the first 202 and fails without one. Returns the events accepted so far.
    pub async fn accepted_before_the_fault(&self) -> usize {
        let accepted = || self.accepted.lock().unwrap().len();
        wait_until(
            "events accepted before the fault",
            Duration::from_secs(30),
            || std::future::ready(accepted() > 0),
        )
        .await;
        accepted()
    }

    /// Stops the clients; returns the accepted events and how many requests got 202.
    pub async fn finish(self) -> (Accepted, usize) {
        self.stop.cancel();
        let mut ok = 0;
        for c in self.clients {
            ok += c.await.unwrap();
        }
        let ids = self.accepted.lock().unwrap().clone();
        (ids, ok)
    }
}

async fn send_batches(
    api_url: String,
    accepted: std::sync::Arc<std::sync::Mutex<Accepted>>,
    stop: tokio_util::sync::CancellationToken,
    user: String,
) -> usize {
    let client = reqwest::Client::new();
    let mut ok = 0;
    for n in 0u32.. {
        if stop.is_cancelled() {
            break;
        }
        match post_batch(&client, &api_url, &user, n * 20, 20).await {
            Some(events) => {
                accepted.lock().unwrap().extend(events);
                ok += 1;
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    ok
}

/// Posts one signed batch of `size` events of `user` (steps `first`...); for a 202, the
/// accepted events (marker and id), else None.
pub async fn post_batch(
    client: &reqwest::Client,
    api_url: &str,
    user: &str,
    first: u32,
    size: u32,
) -> Option<Accepted> {
    let batch: Vec<_> = (first..first + size).map(|i| oura_event(user, i)).collect();
    let req = signed(
        client,
        &format!("{api_url}/webhooks/oura/batch"),
        serde_json::to_vec(&batch).unwrap(),
    );
    let r = req.send().await.ok().filter(|r| r.status() == 202)?;
    let v: serde_json::Value = r.json().await.unwrap();
    let ids = v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().to_string());
    Some(batch.iter().map(marker_of).zip(ids).collect())
}

/// A backlog for the consumer: `events` events (batches of 500, spread over 4 users, so over
/// the partitions), every one accepted.
pub async fn backlog(api: &Runtime, user: &str, events: u32) -> Accepted {
    const BATCH: u32 = 500;
    let client = reqwest::Client::new();
    let mut accepted = Accepted::default();
    for first in (0..events).step_by(BATCH as usize) {
        let size = BATCH.min(events - first);
        let user = format!("{user}-{}", first / BATCH % 4);
        let events = post_batch(&client, &api.url(""), &user, first, size).await;
        accepted.extend(events.expect("a backlog batch accepted"));
    }
    accepted
}

/// Waits until every accepted event is stored, exactly once and under the id it was answered
/// with (checked per event by its marker, [`auren_testkit::stored`]), then checks that the
/// projection counted each stored event once. An empty set proves nothing, so it fails.
pub async fn assert_all_stored_once(db: &str, accepted: &Accepted) {
    auren_testkit::stored::assert_stored_once(db, accepted, Duration::from_secs(90)).await;
    let s = stored(db).await;
    assert_eq!(s.projected, s.rows, "the projection applied an event twice");
}
