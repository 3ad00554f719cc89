#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test-only code
//! Conformance of the vendors' webhooks (`/vendors/...`), one test per vendor, on the real
//! broker and PostgreSQL: the handshake, a good, a bad and an expired signature (or token), a
//! retry re-signed with a new timestamp stored once, unknown fields kept, the status code and
//! an answer-time bound; Garmin's largest documented body (10 MB). Fixtures:
//! `tests/fixtures/vendors/` (written from the vendors' documented schemas).

mod support;

use std::time::{Duration, Instant};

use auren_runtime::vendors::{oura, polar, whoop};
use serde_json::{Value, json};
use support::*;

/// Every answer here must come within this (Oura allows 10 s; the others document less or
/// nothing): well inside what the vendors wait for.
const ANSWER_BOUND: Duration = Duration::from_secs(3);
/// How long an answered event may take to be stored on a busy CI machine.
const STORE_BOUND: Duration = Duration::from_secs(90);

const OURA_SECRET: &str = "oura-client-secret";
const OURA_TOKEN: &str = "oura-verification-token";
const WHOOP_SECRET: &str = "whoop-client-secret";
const WHOOP_PREVIOUS: &str = "whoop-client-secret-before-rotation";
const GARMIN_TOKEN: &str = "garmin-path-token-5f0c";
const POLAR_SECRET: &str = "polar-signature-secret-key";
const WITHINGS_TOKEN: &str = "withings-path-token-91aa";
const GOOGLE_AUTHORIZATION: &str = "Bearer google-health-endpoint-secret";

fn vendor_secrets() -> Vec<(&'static str, &'static str)> {
    vec![
        ("WEBHOOK_SECRET_VENDOR_OURA", OURA_SECRET),
        ("WEBHOOK_SECRET_VENDOR_OURA_VERIFICATION_TOKEN", OURA_TOKEN),
        ("WEBHOOK_SECRET_VENDOR_WHOOP", WHOOP_SECRET),
        ("WEBHOOK_SECRET_VENDOR_WHOOP_PREVIOUS", WHOOP_PREVIOUS),
        ("WEBHOOK_SECRET_VENDOR_GARMIN", GARMIN_TOKEN),
        ("WEBHOOK_SECRET_VENDOR_POLAR", POLAR_SECRET),
        ("WEBHOOK_SECRET_VENDOR_WITHINGS", WITHINGS_TOKEN),
        ("WEBHOOK_SECRET_VENDOR_GOOGLE_HEALTH", GOOGLE_AUTHORIZATION),
    ]
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/vendors/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// An API and a consumer on one partition, so an event stored proves every earlier one was
/// handled (see [`Receiver::settled`]).
struct Receiver {
    stack: Stack,
    api: Runtime,
    _consumer: Runtime,
    client: reqwest::Client,
}

struct Answer {
    status: u16,
    body: Value,
    took: Duration,
}

impl Answer {
    fn ids(&self) -> Vec<String> {
        let ids = self.body["ids"].as_array().cloned().unwrap_or_default();
        ids.iter().map(|i| i.as_str().unwrap().to_owned()).collect()
    }

    /// The vendor's success code, within the bound, naming `count` events.
    fn assert_accepted(&self, what: &str, status: u16, count: usize) {
        assert_eq!(self.status, status, "{what}: {}", self.body);
        assert_eq!(self.ids().len(), count, "{what}: {}", self.body);
        assert!(self.took < ANSWER_BOUND, "{what} took {:?}", self.took);
    }

    fn assert_refused(&self, what: &str, status: u16) {
        assert_eq!(self.status, status, "{what}: {}", self.body);
        assert!(self.took < ANSWER_BOUND, "{what} took {:?}", self.took);
    }
}

impl Receiver {
    async fn start(extra: &[(&str, &str)]) -> Receiver {
        let stack = Stack::shared().await;
        let mut env = vendor_secrets();
        env.push(("KAFKA_PARTITIONS", "1"));
        env.extend_from_slice(extra);
        let api = stack.ready("api", &env).await;
        let consumer = stack.ready("consumer", &env).await;
        Receiver {
            stack,
            api,
            _consumer: consumer,
            client: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        self.api.url(path)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let start = Instant::now();
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        Answer {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
            took: start.elapsed(),
        }
    }

    /// Waits until a marker event sent after everything else is stored: on one partition,
    /// every earlier record was then stored or found to be a duplicate.
    async fn settled(&self) {
        let (status, id) = post_event(&self.client, &self.api, &oura_event("sentinel", 1)).await;
        assert_eq!(status, 202);
        let id = id.unwrap();
        let db = self.stack.db.clone();
        wait_until("the sentinel stored", Duration::from_secs(90), || {
            let (db, id) = (db.clone(), id.clone());
            async move { rows(&db, "SELECT count(*) FROM events WHERE id::text = $1", &id).await == 1 }
        })
        .await;
    }

    /// How many rows hold the vendor's event `vendor_event_id`.
    async fn stored(&self, vendor_event_id: &str) -> i64 {
        let sql = "SELECT count(*) FROM events WHERE payload->'envelope'->>'vendor_event_id' = $1";
        rows(&self.stack.db, sql, vendor_event_id).await
    }

    async fn stored_of(&self, device: &str) -> i64 {
        rows(
            &self.stack.db,
            "SELECT count(*) FROM events WHERE device = $1",
            device,
        )
        .await
    }

    /// The stored payload of event `id`.
    async fn payload(&self, id: &str) -> Value {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&self.stack.db)
            .await
            .unwrap();
        let (payload,): (Value,) = sqlx::query_as("SELECT payload FROM events WHERE id::text = $1")
            .bind(id)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        payload
    }

    /// Waits until each of `ids` is stored. The sentinel alone cannot prove this: a CI run
    /// once saw it stored while an event answered before it was not yet.
    async fn wait_stored(&self, ids: &[String]) {
        let what = format!("the {} events answered stored", ids.len());
        wait_until(&what, STORE_BOUND, || async {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&self.stack.db)
                .await
                .unwrap();
            let (n,): (i64,) =
                sqlx::query_as("SELECT count(DISTINCT id) FROM events WHERE id::text = ANY($1)")
                    .bind(ids)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
            n == ids.len() as i64
        })
        .await;
    }

    /// Waits until each of `ids` (answered for deliveries of the same notifications) is
    /// stored, settles, then checks each is stored exactly once, under its vendor event id;
    /// returns the stored payloads.
    async fn assert_stored_once(&self, ids: &[String]) -> Vec<Value> {
        self.wait_stored(ids).await;
        self.settled().await;
        let mut payloads = Vec::new();
        for id in ids {
            let payload = self.payload(id).await;
            let vendor_event_id = payload["envelope"]["vendor_event_id"].as_str().unwrap();
            assert_eq!(self.stored(vendor_event_id).await, 1, "{vendor_event_id}");
            payloads.push(payload);
        }
        payloads
    }
}

async fn rows(db: &str, sql: &str, arg: &str) -> i64 {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(db)
        .await
        .unwrap();
    let (n,): (i64,) = sqlx::query_as(sql)
        .bind(arg)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    n
}

// ---------------------------------------------------------------- Oura

fn oura_delivery(
    r: &Receiver,
    body: &[u8],
    timestamp: i64,
    secret: &str,
) -> reqwest::RequestBuilder {
    let timestamp = timestamp.to_string();
    r.client
        .post(r.url("/vendors/oura"))
        .header("x-oura-timestamp", &timestamp)
        .header(
            "x-oura-signature",
            oura::sign(secret.as_bytes(), &timestamp, body),
        )
        .header("content-type", "application/json")
        .body(body.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oura_answers_the_challenge_and_stores_a_signed_event_once() {
    let r = Receiver::start(&[]).await;
    let check = |token: &str| {
        let url = r.url(&format!(
            "/vendors/oura?verification_token={token}&challenge=ch-4711"
        ));
        r.client.get(url)
    };
    let answer = r.send(check(OURA_TOKEN)).await;
    answer.assert_refused("verification", 200);
    assert_eq!(answer.body, json!({"challenge": "ch-4711"}));
    r.send(check("not-our-token"))
        .await
        .assert_refused("wrong verification token", 401);
    let no_query = r.send(r.client.get(r.url("/vendors/oura"))).await;
    no_query.assert_refused("verification without its query", 400);

    let body = fixture("oura_sleep_create.json");
    let now = now_secs();
    let bad = r
        .send(oura_delivery(&r, &body, now, "not-the-secret"))
        .await;
    bad.assert_refused("bad signature", 401);
    assert_eq!(bad.body["detail"], "signature does not match");
    let expired = r
        .send(oura_delivery(&r, &body, now - 600, OURA_SECRET))
        .await;
    expired.assert_refused("expired signature", 401);
    let unsigned = r.client.post(r.url("/vendors/oura")).body(body.clone());
    r.send(unsigned).await.assert_refused("no signature", 401);

    let first = r.send(oura_delivery(&r, &body, now, OURA_SECRET)).await;
    first.assert_accepted("good signature", 200, 1);
    let retry = r.send(oura_delivery(&r, &body, now + 7, OURA_SECRET)).await;
    retry.assert_accepted("retry re-signed with a new timestamp", 200, 1);
    assert_eq!(retry.ids(), first.ids(), "the retry is the same event");

    let stored = r.assert_stored_once(&first.ids()).await;
    let envelope = &stored[0]["envelope"];
    assert_eq!(envelope["vendor"], "oura");
    assert_eq!(envelope["kind"], "sleep.create");
    assert_eq!(envelope["user_id"], "3b1f-oura-user");
    assert_eq!(
        stored[0]["notification"]["x_auren_unknown_field"],
        json!({"added": "later"}),
        "unknown fields are kept"
    );
}

// ---------------------------------------------------------------- WHOOP

fn whoop_delivery(r: &Receiver, body: &[u8], millis: i64, secret: &str) -> reqwest::RequestBuilder {
    let millis = millis.to_string();
    r.client
        .post(r.url("/vendors/whoop"))
        .header("x-whoop-signature-timestamp", &millis)
        .header(
            "x-whoop-signature",
            whoop::sign(secret.as_bytes(), &millis, body),
        )
        .header("content-type", "application/json")
        .body(body.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoop_stores_a_signed_event_once_by_its_trace_id() {
    let r = Receiver::start(&[]).await;
    let body = fixture("whoop_recovery_updated.json");
    let now_ms = now_secs() * 1000;
    let bad = r
        .send(whoop_delivery(&r, &body, now_ms, "not-the-secret"))
        .await;
    bad.assert_refused("bad signature", 401);
    let expired = r
        .send(whoop_delivery(&r, &body, now_ms - 600_000, WHOOP_SECRET))
        .await;
    expired.assert_refused("expired signature", 401);
    let tampered = whoop_delivery(&r, &body, now_ms, WHOOP_SECRET).body(b"{}".to_vec());
    r.send(tampered)
        .await
        .assert_refused("body changed after signing", 401);

    let first = r
        .send(whoop_delivery(&r, &body, now_ms, WHOOP_SECRET))
        .await;
    first.assert_accepted("good signature", 200, 1);
    let retry = r
        .send(whoop_delivery(&r, &body, now_ms + 30_000, WHOOP_SECRET))
        .await;
    retry.assert_accepted("retry re-signed with a new timestamp", 200, 1);
    assert_eq!(retry.ids(), first.ids());
    let rotated = r
        .send(whoop_delivery(&r, &body, now_ms + 1, WHOOP_PREVIOUS))
        .await;
    rotated.assert_accepted("signed with the previous secret (rotation)", 200, 1);

    let stored = r.assert_stored_once(&first.ids()).await;
    let envelope = &stored[0]["envelope"];
    assert_eq!(
        envelope["vendor_event_id"],
        "e369c784-5100-49e8-8098-75d35c47b31b"
    );
    assert_eq!(
        (&envelope["kind"], &envelope["user_id"]),
        (&json!("recovery.updated"), &json!("10129"))
    );
    assert_eq!(stored[0]["notification"]["x_auren_unknown_field"], true);
}

// ---------------------------------------------------------------- Garmin

/// A push of `summaries` dailies of about 2 KB each (values Garmin documents, plus samples).
fn garmin_push(summaries: usize) -> Vec<u8> {
    let samples: serde_json::Map<String, Value> = (0..200)
        .map(|i| ((i * 15).to_string(), json!(60 + i % 40)))
        .collect();
    let dailies: Vec<Value> = (0..summaries)
        .map(|i| {
            json!({"userId": format!("garmin-user-{}", i % 50), "summaryId": format!("x153a9f3-{i}"),
                   "calendarDate": "2026-12-05", "steps": i, "startTimeInSeconds": 1_796_428_800,
                   "timeOffsetHeartRateSamples": samples})
        })
        .collect();
    serde_json::to_vec(&json!({ "dailies": dailies })).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garmin_takes_pushes_of_10_mb_on_its_secret_path_once_per_summary() {
    let r = Receiver::start(&[("MAX_CONCURRENT_EVENTS", "500")]).await;
    let push = |token: &str, body: Vec<u8>| {
        r.client
            .post(r.url(&format!("/vendors/garmin/{token}")))
            .header("content-type", "application/json")
            .body(body)
    };
    let body = fixture("garmin_push.json");
    r.send(push("wrong-token", body.clone()))
        .await
        .assert_refused("wrong path token", 401);
    r.send(r.client.post(r.url("/vendors/garmin")))
        .await
        .assert_refused("no path token", 404);

    let first = r.send(push(GARMIN_TOKEN, body.clone())).await;
    first.assert_accepted("a push of two summary types", 200, 2);
    let retry = r.send(push(GARMIN_TOKEN, body.clone())).await;
    retry.assert_accepted("the same push again", 200, 2);
    assert_eq!(retry.ids(), first.ids());
    let stored = r.assert_stored_once(&first.ids()).await;
    assert_eq!(stored[0]["envelope"]["kind"], "dailies");
    assert_eq!(stored[1]["envelope"]["kind"], "sleeps");
    assert_eq!(
        stored[0]["notification"]["steps"], 4210,
        "Garmin's values are kept"
    );
    assert_eq!(stored[0]["notification"]["x_auren_unknown_field"], 1);

    let large = garmin_push(5200);
    assert!(large.len() > 10 * 1024 * 1024, "{} bytes", large.len());
    let start = Instant::now();
    let answer = r.send(push(GARMIN_TOKEN, large)).await;
    assert_eq!(answer.status, 200, "10 MB push: {}", answer.body);
    assert_eq!(answer.ids().len(), 5200);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "10 MB push took {:?}",
        start.elapsed()
    );
    r.wait_stored(&answer.ids()).await;
    r.settled().await;
    assert_eq!(r.stored_of("garmin").await, 2 + 5200);
}

// ---------------------------------------------------------------- Polar

fn polar_delivery(r: &Receiver, body: &[u8], secret: &str) -> reqwest::RequestBuilder {
    r.client
        .post(r.url("/vendors/polar"))
        .header("polar-webhook-event", "EXERCISE")
        .header(
            "polar-webhook-signature",
            polar::sign(secret.as_bytes(), body),
        )
        .header("content-type", "application/json")
        .body(body.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polar_answers_the_ping_and_stores_a_signed_event_once() {
    let r = Receiver::start(&[]).await;
    let ping = r
        .client
        .post(r.url("/vendors/polar"))
        .body(fixture("polar_ping.json"));
    let answer = r.send(ping).await;
    answer.assert_refused("PING", 200);
    assert_eq!(answer.body["status"], "pong");

    let body = fixture("polar_exercise.json");
    r.send(polar_delivery(&r, &body, "not-the-secret"))
        .await
        .assert_refused("bad signature", 401);
    let unsigned = r.client.post(r.url("/vendors/polar")).body(body.clone());
    r.send(unsigned).await.assert_refused("no signature", 401);

    let first = r.send(polar_delivery(&r, &body, POLAR_SECRET)).await;
    first.assert_accepted("good signature", 200, 1);
    // Polar signs the body only (no timestamp): its retry is the same signed request.
    let retry = r.send(polar_delivery(&r, &body, POLAR_SECRET)).await;
    retry.assert_accepted("retry", 200, 1);
    assert_eq!(retry.ids(), first.ids());

    let stored = r.assert_stored_once(&first.ids()).await;
    assert_eq!(stored[0]["envelope"]["kind"], "EXERCISE");
    assert_eq!(stored[0]["notification"]["x_auren_unknown_field"], "kept");
    assert_eq!(r.stored_of("polar").await, 1, "the PING stored nothing");
}

// ---------------------------------------------------------------- Withings

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withings_answers_the_head_check_and_stores_a_form_notification_once() {
    let r = Receiver::start(&[]).await;
    let url = |token: &str| r.url(&format!("/vendors/withings/{token}"));
    r.send(r.client.head(url(WITHINGS_TOKEN)))
        .await
        .assert_refused("HEAD check", 200);
    r.send(r.client.head(url("wrong-token")))
        .await
        .assert_refused("HEAD with a wrong token", 401);

    let body = fixture("withings_sleep.form");
    let notify = |token: &str| {
        r.client
            .post(url(token))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone())
    };
    r.send(notify("wrong-token"))
        .await
        .assert_refused("wrong path token", 401);
    let first = r.send(notify(WITHINGS_TOKEN)).await;
    first.assert_accepted("notification", 200, 1);
    let retry = r.send(notify(WITHINGS_TOKEN)).await;
    retry.assert_accepted("retry", 200, 1);
    assert_eq!(retry.ids(), first.ids());
    let missing = r.client.post(url(WITHINGS_TOKEN)).body("appli=44");
    r.send(missing).await.assert_refused("no userid", 422);

    let stored = r.assert_stored_once(&first.ids()).await;
    let envelope = &stored[0]["envelope"];
    assert_eq!(
        envelope["vendor_event_id"],
        "12345678:44:1796425200:1796452020"
    );
    assert_eq!(envelope["kind"], "sleep");
    assert_eq!(stored[0]["notification"]["x_auren_unknown_field"], "kept");
}

// ---------------------------------------------------------------- Google Health

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_health_passes_both_verifications_and_stores_notifications_once() {
    let r = Receiver::start(&[]).await;
    let post = |body: Vec<u8>| {
        r.client
            .post(r.url("/vendors/google_health"))
            .header("content-type", "application/json")
            .body(body)
    };
    let verification = fixture("google_health_verification.json");
    let with = post(verification.clone()).header("authorization", GOOGLE_AUTHORIZATION);
    r.send(with)
        .await
        .assert_refused("verification with our Authorization", 201);
    r.send(post(verification.clone()))
        .await
        .assert_refused("verification without it", 401);
    let wrong = post(verification).header("authorization", "Bearer guess");
    r.send(wrong)
        .await
        .assert_refused("verification with another value", 401);

    let body = fixture("google_health_steps.json");
    r.send(post(body.clone()))
        .await
        .assert_refused("no Authorization", 401);
    let notify = || post(body.clone()).header("authorization", GOOGLE_AUTHORIZATION);
    let first = r.send(notify()).await;
    first.assert_accepted("two notifications", 200, 2);
    let retry = r.send(notify()).await;
    retry.assert_accepted("retry", 200, 2);
    assert_eq!(retry.ids(), first.ids());

    let stored = r.assert_stored_once(&first.ids()).await;
    assert_eq!(stored[0]["envelope"]["kind"], "steps.upsert");
    assert_eq!(stored[1]["envelope"]["kind"], "sleep.delete");
    assert_eq!(
        stored[0]["notification"]["data"]["x_auren_unknown_field"],
        "kept"
    );
}

/// With a public key configured (Google publishes none we know of: it is configuration), the
/// `X-HEALTHAPI-SIGNATURE` ECDSA P-256 signature of the body is required on every request,
/// the verification POSTs included: a missing one, one by another key or of another body is
/// refused; the DER and the r‖s forms are both accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_health_checks_its_signature_with_a_configured_public_key() {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use p256::ecdsa::signature::Signer as _;
    use p256::ecdsa::{Signature, SigningKey};
    use p256::pkcs8::{EncodePublicKey as _, LineEnding};

    let google = SigningKey::from_slice(&[0x11; 32]).unwrap();
    let other = SigningKey::from_slice(&[0x22; 32]).unwrap();
    let pem = google
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let key_var = "WEBHOOK_SECRET_VENDOR_GOOGLE_HEALTH_PUBLIC_KEY";
    let r = Receiver::start(&[(key_var, pem.as_str())]).await;
    let der = |key: &SigningKey, body: &[u8]| {
        let signature: Signature = key.sign(body);
        STANDARD.encode(signature.to_der().as_bytes())
    };
    let post = |body: &[u8], signature: Option<String>| {
        let request = r
            .client
            .post(r.url("/vendors/google_health"))
            .header("content-type", "application/json")
            .header("authorization", GOOGLE_AUTHORIZATION)
            .body(body.to_vec());
        match signature {
            Some(s) => request.header("x-healthapi-signature", s),
            None => request,
        }
    };

    let verification = fixture("google_health_verification.json");
    r.send(post(&verification, None))
        .await
        .assert_refused("a verification without a signature", 401);
    r.send(post(&verification, Some(der(&google, &verification))))
        .await
        .assert_refused("a signed verification", 201);

    let body = fixture("google_health_steps.json");
    let cases = [
        ("no signature", None),
        ("a signature by another key", Some(der(&other, &body))),
        ("a signature of another body", Some(der(&google, b"[]"))),
        (
            "a signature that is not base64",
            Some("not base64!".to_owned()),
        ),
    ];
    for (what, signature) in cases {
        r.send(post(&body, signature))
            .await
            .assert_refused(what, 401);
    }
    let signed: Signature = google.sign(&body);
    let first = r
        .send(post(&body, Some(STANDARD.encode(signed.to_bytes()))))
        .await;
    first.assert_accepted("notifications signed (r‖s form)", 200, 2);
    let retry = r.send(post(&body, Some(der(&google, &body)))).await;
    retry.assert_accepted("the retry signed (DER form)", 200, 2);
    assert_eq!(retry.ids(), first.ids());
    r.assert_stored_once(&first.ids()).await;
}

// ---------------------------------------------------------------- bodies that cannot be read

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_bodies_that_cannot_be_read_get_a_clear_error() {
    let r = Receiver::start(&[]).await;
    let now_ms = now_secs() * 1000;
    let whoop = |body: &[u8]| whoop_delivery(&r, body, now_ms, WHOOP_SECRET);
    let garmin = |body: Vec<u8>| {
        r.client
            .post(r.url(&format!("/vendors/garmin/{GARMIN_TOKEN}")))
            .body(body)
    };
    let bad_user = br#"{"user_id":"a b","id":1,"type":"sleep.updated","trace_id":"t"}"#;
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        ("not JSON", whoop(b"{nope"), 400, "malformed_json"),
        (
            "no trace_id",
            whoop(br#"{"user_id":1,"type":"sleep.updated"}"#),
            422,
            "invalid_payload",
        ),
        (
            "a user id the store cannot key",
            whoop(bad_user),
            422,
            "invalid_payload",
        ),
        (
            "a Garmin array",
            garmin(b"[]".to_vec()),
            422,
            "invalid_payload",
        ),
        (
            "a Garmin summary without userId",
            garmin(br#"{"dailies":[{"summaryId":"s"}]}"#.to_vec()),
            422,
            "invalid_payload",
        ),
        (
            "a Garmin push over 16 MiB",
            garmin(vec![b' '; 17 * 1024 * 1024]),
            413,
            "payload_too_large",
        ),
        (
            "a WHOOP body over MAX_BODY_BYTES",
            whoop(&vec![b' '; 2 * 1024 * 1024]),
            413,
            "payload_too_large",
        ),
    ];
    for (what, request, status, code) in cases {
        let answer = r.send(request).await;
        assert_eq!(answer.status, status, "{what}: {}", answer.body);
        assert_eq!(answer.body["error"], code, "{what}: {}", answer.body);
    }
    r.settled().await;
    for vendor in ["whoop", "garmin"] {
        assert_eq!(
            r.stored_of(vendor).await,
            0,
            "{vendor}: nothing refused is stored"
        );
    }
}
