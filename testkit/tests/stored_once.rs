//! The stored-once check against real PostgreSQL and the runtime's own `events` schema: it
//! passes on a clean store, and fails on a planted duplicate (one request's marker under two
//! ids) and on a planted loss (an accepted marker with no row).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use auren_testkit::Postgres;
use auren_testkit::stored::{self, Accepted, marker};
use sqlx::{Connection, PgConnection};

const SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../runtime/migrations/0001_events.sql"
);

/// A fresh database with the runtime's schema.
async fn store(pg: &Postgres) -> (String, PgConnection) {
    let url = pg.database().await;
    let mut conn = PgConnection::connect(&url).await.unwrap();
    let schema = std::fs::read_to_string(SCHEMA).unwrap();
    sqlx::raw_sql(&schema).execute(&mut conn).await.unwrap();
    (url, conn)
}

/// Stores one event carrying `marker` under `id`, as the consumer would.
async fn put(conn: &mut PgConnection, marker: &str, id: &str) {
    let payload = serde_json_text(marker);
    sqlx::query(
        "INSERT INTO events (id, user_id, device, metric, value, unit, recorded_at, received_at, \
         payload, kafka_partition, kafka_offset) \
         VALUES ($1::uuid, 'u', 'oura', 'steps', 1, 'count', now(), now(), $2::jsonb, 0, 0)",
    )
    .bind(id)
    .bind(payload)
    .execute(conn)
    .await
    .unwrap();
}

fn serde_json_text(marker: &str) -> String {
    format!(r#"{{"user_id":"u","data_type":"steps","value":1,"timestamp":"{marker}"}}"#)
}

fn id(n: u8) -> String {
    format!("00000000-0000-8000-8000-0000000000{n:02x}")
}

/// Two accepted requests, both stored once.
async fn two_stored(conn: &mut PgConnection) -> (Accepted, String) {
    let (a, b) = (marker(), marker());
    put(conn, &a, &id(1)).await;
    put(conn, &b, &id(2)).await;
    let accepted = [(a.clone(), id(1)), (b, id(2))].into_iter().collect();
    (accepted, a)
}

/// Runs the check in a task of its own; the panic it ended with.
async fn checked(url: String, accepted: Accepted, timeout: Duration) -> tokio::task::JoinError {
    let check = async move { stored::assert_stored_once(&url, &accepted, timeout).await };
    tokio::spawn(check).await.unwrap_err()
}

#[tokio::test]
async fn a_clean_store_passes() {
    let pg = Postgres::shared();
    let (url, mut conn) = store(&pg).await;
    let (accepted, _) = two_stored(&mut conn).await;
    assert!(stored::verdict(&url, &accepted).await.unwrap().holds());
    stored::assert_stored_once(&url, &accepted, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_same_request_stored_under_two_ids_is_caught() {
    let pg = Postgres::shared();
    let (url, mut conn) = store(&pg).await;
    let (accepted, first) = two_stored(&mut conn).await;
    put(&mut conn, &first, &id(3)).await;

    let v = stored::verdict(&url, &accepted).await.unwrap();
    assert_eq!(v.duplicated, vec![(first, vec![id(1), id(3)])], "{v}");
    let started = std::time::Instant::now();
    let caught = checked(url, accepted, Duration::from_secs(30)).await;
    assert!(caught.is_panic(), "the duplicate fails the check");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "at once, not at the timeout"
    );
}

#[tokio::test]
async fn an_accepted_request_never_stored_is_caught() {
    let pg = Postgres::shared();
    let (url, mut conn) = store(&pg).await;
    let (mut accepted, _) = two_stored(&mut conn).await;
    let lost = marker();
    accepted.insert(lost.clone(), id(4));

    let v = stored::verdict(&url, &accepted).await.unwrap();
    assert_eq!(v.missing, vec![lost], "{v}");
    let caught = checked(url, accepted, Duration::from_secs(2)).await;
    assert!(caught.is_panic(), "the missing event fails the check");
}
