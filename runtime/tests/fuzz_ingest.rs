#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test-only code
//! Property-based fuzzing of webhook payload parsing (`ingest::normalise`,
//! `ingest::normalise_batch`) for every device, and of the HTTP mapping of its refusals.
//!
//! The oracle below (`METRICS`, `valid_user_id`, the time window) restates the rules of
//! `ingest.rs` independently, so a property fails when the code and the rules drift apart.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use auren_runtime::api::auth::{SignatureVerifier, sign};
use auren_runtime::api::{AppState, Services, router};
use auren_runtime::faults::Faults;
use auren_runtime::health::{HealthBoard, HealthReport, Lifecycle};
use auren_runtime::ingest::{Device, Event, IngestError, normalise, normalise_batch};
use auren_runtime::metrics::Metrics;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, Duration, FixedOffset, SecondsFormat, Utc};
use clap::Parser;
use http_body_util::BodyExt;
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::ServiceExt;

/// The shared fuzzing settings (`auren_testkit::fuzz_config`), failures kept in
/// `proptest-regressions/fuzz_ingest.txt`.
fn config(cases: u32) -> ProptestConfig {
    auren_testkit::fuzz_config(cases, "proptest-regressions/fuzz_ingest.txt")
}

const NOW: &str = "2026-11-26T12:00:00Z";

fn now() -> DateTime<Utc> {
    NOW.parse().unwrap()
}

/// The platform's metrics: (name, unit, min, max), as documented in `ingest.rs`.
const METRICS: [(&str, &str, f64, f64); 10] = [
    ("heart_rate", "bpm", 20.0, 250.0),
    ("hrv", "ms", 0.0, 500.0),
    ("resting_heart_rate", "bpm", 20.0, 200.0),
    ("steps", "count", 0.0, 200_000.0),
    ("sleep_score", "score", 0.0, 100.0),
    ("recovery", "percent", 0.0, 100.0),
    ("strain", "score", 0.0, 21.0),
    ("spo2", "percent", 50.0, 100.0),
    ("calories", "kcal", 0.0, 20_000.0),
    ("skin_temperature", "celsius", 25.0, 45.0),
];

fn metric_spec(name: &str) -> Option<(&'static str, &'static str, f64, f64)> {
    METRICS.iter().copied().find(|m| m.0 == name)
}

fn valid_user_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:@-".contains(&b))
}

/// True when a JSON string or key holds U+0000, which PostgreSQL's `jsonb` cannot store.
fn holds_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

/// Everything an accepted event must satisfy, whatever the input was: a known metric with its
/// unit, a finite in-range value, a valid user id, a plausible time, and a raw payload equal to
/// the body and storable as `jsonb`.
fn assert_sound(device: Device, body: &Value, e: &Event) -> Result<(), TestCaseError> {
    let (_, unit, min, max) = metric_spec(&e.metric)
        .ok_or_else(|| TestCaseError::fail(format!("unknown metric {:?}", e.metric)))?;
    prop_assert_eq!(e.device, device);
    prop_assert_eq!(e.unit.as_str(), unit);
    prop_assert!(
        e.value.is_finite() && (min..=max).contains(&e.value),
        "{e:?}"
    );
    prop_assert!(valid_user_id(&e.user_id), "{e:?}");
    prop_assert!(e.recorded_at <= now() + Duration::minutes(5), "{e:?}");
    prop_assert!(e.recorded_at >= DateTime::UNIX_EPOCH, "{e:?}");
    prop_assert_eq!(e.received_at, now());
    prop_assert_eq!(&e.raw, body);
    prop_assert!(!holds_nul(&e.raw), "raw payload not storable: {e:?}");
    prop_assert_eq!(e.id.get_version_num(), 7);
    Ok(())
}

/// Checks one outcome of `normalise`: refusals are typed (malformed exactly when the body is not
/// JSON), acceptances are sound.
fn check_outcome(
    device: Device,
    body: &[u8],
    outcome: &Result<Event, IngestError>,
) -> Result<(), TestCaseError> {
    let parsed = serde_json::from_slice::<Value>(body);
    match (outcome, parsed) {
        (Ok(event), Ok(value)) => assert_sound(device, &value, event),
        (Ok(event), Err(e)) => Err(TestCaseError::fail(format!(
            "accepted a body that is not JSON ({e}): {event:?}"
        ))),
        (Err(err), parsed) => {
            prop_assert_eq!(err.is_malformed(), parsed.is_err(), "{:?}", err);
            prop_assert!(!err.to_string().is_empty());
            Ok(())
        }
    }
}

fn device() -> impl Strategy<Value = Device> {
    prop::sample::select(Device::ALL.to_vec())
}

/// A metric as the vendor names it, with the platform's name for it.
fn vendor_metric(device: Device) -> BoxedStrategy<(String, &'static str)> {
    let aliases: &[(&str, &str)] = match device {
        Device::Whoop => &[
            ("recovery.score", "recovery"),
            ("cycle.strain", "strain"),
            ("hrv.rmssd", "hrv"),
        ],
        Device::AppleHealth => &[
            ("HKQuantityTypeIdentifierHeartRate", "heart_rate"),
            ("HKQuantityTypeIdentifierStepCount", "steps"),
            ("HKQuantityTypeIdentifierOxygenSaturation", "spo2"),
            ("HKQuantityTypeIdentifierActiveEnergyBurned", "calories"),
            ("HKQuantityTypeIdentifierHeartRateVariabilitySDNN", "hrv"),
        ],
        _ => &[],
    };
    let mut names: Vec<(String, &'static str)> =
        METRICS.iter().map(|m| (m.0.to_string(), m.0)).collect();
    names.extend(aliases.iter().map(|(v, m)| (v.to_string(), *m)));
    prop::sample::select(names).boxed()
}

/// A value inside the metric's range, its bounds included.
fn value_in(min: f64, max: f64) -> BoxedStrategy<f64> {
    prop_oneof![1 => Just(min), 1 => Just(max), 8 => min..=max].boxed()
}

/// A moment between the epoch and five minutes from now, in whole seconds for Garmin.
fn recorded_at(whole_seconds: bool) -> BoxedStrategy<DateTime<Utc>> {
    let latest = now().timestamp() + 300;
    let nanos = if whole_seconds {
        Just(0u32).boxed()
    } else {
        prop_oneof![Just(0u32), 0u32..1_000_000_000].boxed()
    };
    (0..=latest, nanos)
        .prop_map(|(s, n)| DateTime::from_timestamp(s, n).unwrap())
        .prop_filter("not after now + 5 min", |t| {
            *t <= now() + Duration::minutes(5)
        })
        .boxed()
}

/// RFC 3339 with any UTC offset a vendor may use.
fn rfc3339(t: DateTime<Utc>, offset_minutes: i32) -> String {
    let offset = FixedOffset::east_opt(offset_minutes * 60).unwrap();
    t.with_timezone(&offset)
        .to_rfc3339_opts(SecondsFormat::AutoSi, offset_minutes == 0)
}

fn user_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.:@-]{1,128}"
}

/// A valid payload of `device` and the event fields it must produce.
#[derive(Debug, Clone)]
struct Valid {
    device: Device,
    payload: Value,
    user_id: String,
    metric: &'static str,
    value: f64,
    recorded_at: DateTime<Utc>,
}

fn valid_payload(device: Device) -> BoxedStrategy<Valid> {
    // WHOOP also sends numeric user ids.
    let numeric_id = if device == Device::Whoop {
        prop::option::of(any::<u64>()).boxed()
    } else {
        Just(None).boxed()
    };
    (
        user_id(),
        numeric_id,
        vendor_metric(device),
        recorded_at(device == Device::Garmin),
        -1439i32..=1439,
    )
        .prop_flat_map(move |(user, numeric_id, (vendor, metric), at, offset)| {
            let (_, _, min, max) = metric_spec(metric).unwrap();
            value_in(min, max).prop_map(move |value| {
                let time = rfc3339(at, offset);
                let (user_field, user_id) = match numeric_id {
                    Some(n) => (json!(n), n.to_string()),
                    None => (json!(user), user.clone()),
                };
                let payload = match device {
                    Device::Oura => json!({"user_id": user_field, "data_type": vendor,
                                           "value": value, "timestamp": time}),
                    Device::Whoop => json!({"user": {"id": user_field}, "type": vendor,
                                            "score": value, "created_at": time}),
                    Device::Garmin => json!({"userId": user_field, "summaryType": vendor,
                                             "value": value,
                                             "startTimeInSeconds": at.timestamp()}),
                    Device::AppleHealth => json!({"userId": user_field, "quantityType": vendor,
                                                  "quantity": value, "startDate": time}),
                    Device::Fitbit => json!({"ownerId": user_field, "collectionType": vendor,
                                             "value": value, "dateTime": time}),
                    other => panic!("{other:?} is not a device of the reading API"),
                };
                Valid {
                    device,
                    payload,
                    user_id,
                    metric,
                    value,
                    recorded_at: at,
                }
            })
        })
        .boxed()
}

fn any_valid() -> impl Strategy<Value = Valid> {
    device().prop_flat_map(valid_payload)
}

/// Arbitrary JSON, biased towards the field names the devices use so that shapes are hit.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        (-1e3f64..1e3).prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        prop::sample::select(vec![
            "heart_rate",
            "steps",
            "recovery.score",
            "HKQuantityTypeIdentifierHeartRate",
            "2026-11-26T11:00:00Z",
            "1970-01-01T00:00:00Z",
            "u1",
            "",
            "\u{0}",
            "NaN",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(field_name(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Known fields of every shape: adding one of these is not "unknown".
const KNOWN_FIELDS: [&str; 18] = [
    "user_id",
    "data_type",
    "value",
    "timestamp",
    "user",
    "id",
    "type",
    "score",
    "created_at",
    "userId",
    "summaryType",
    "startTimeInSeconds",
    "quantityType",
    "quantity",
    "startDate",
    "ownerId",
    "collectionType",
    "dateTime",
];

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(KNOWN_FIELDS.to_vec()).prop_map(String::from),
        1 => ".{0,8}",
    ]
}

/// The top-level fields of `payload` and, for WHOOP, those of the nested `user` object.
fn field_paths(payload: &Value) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    if let Value::Object(map) = payload {
        for (k, v) in map {
            paths.push(vec![k.clone()]);
            if let Value::Object(inner) = v {
                paths.extend(inner.keys().map(|ik| vec![k.clone(), ik.clone()]));
            }
        }
    }
    paths
}

fn object_at<'a>(
    root: &'a mut Value,
    path: &[String],
) -> Option<&'a mut serde_json::Map<String, Value>> {
    let mut here = root;
    for key in path {
        here = here.as_object_mut()?.get_mut(key)?;
    }
    here.as_object_mut()
}

fn is_object_at(root: &Value, path: &[String]) -> bool {
    path.iter()
        .try_fold(root, |here, key| here.get(key))
        .is_some_and(Value::is_object)
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Replace a field (picked by index among the payload's fields) with arbitrary JSON.
    Replace(usize, Value),
    /// Drop a field (picked by index).
    Remove(usize),
    /// Add a field, to the top level or to a nested object (picked by index).
    AddUnknown(usize, String, Value),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), json_value()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        any::<usize>().prop_map(Mutation::Remove),
        (any::<usize>(), "[a-z_]{1,10}|.{0,6}", json_value())
            .prop_map(|(i, k, v)| Mutation::AddUnknown(i, k, v)),
    ]
}

proptest! {
    #![proptest_config(config(512))]

    /// Arbitrary bytes never panic the parser of any device; a refusal is `MalformedJson`
    /// (HTTP 400) exactly when the body is not JSON, and anything accepted is sound.
    #[test]
    fn arbitrary_bytes_parse_or_are_refused(device in device(),
                                            body in prop::collection::vec(any::<u8>(), 0..256)) {
        check_outcome(device, &body, &normalise(device, &body, now()))?;
    }

    /// Bytes drawn from JSON's own alphabet (so the tokenizer gets deep into strings, escapes,
    /// numbers and nesting) behave the same way.
    #[test]
    fn json_like_bytes_parse_or_are_refused(
        device in device(),
        body in prop::collection::vec(prop::sample::select(
            b"{}[]\":,.-+eE0123456789 \\untrfalsx\x00\xff\xc3\xa9".to_vec()), 0..96),
    ) {
        check_outcome(device, &body, &normalise(device, &body, now()))?;
    }

    /// Arbitrary JSON values are never malformed (400): they are refused as the wrong shape
    /// or values (422), or accepted and then sound.
    #[test]
    fn arbitrary_json_is_refused_as_invalid_or_sound(device in device(), value in json_value()) {
        let body = serde_json::to_vec(&value).unwrap();
        let outcome = normalise(device, &body, now());
        check_outcome(device, &body, &outcome)?;
        if let Err(e) = outcome {
            prop_assert!(!e.is_malformed(), "{e:?}");
        }
    }

    /// Every generated valid payload of every device is accepted, and the event carries the
    /// payload's user, platform metric and unit, value, time (any UTC offset) and raw body.
    #[test]
    fn valid_payloads_are_accepted_with_their_fields(v in any_valid()) {
        let body = serde_json::to_vec(&v.payload).unwrap();
        let e = normalise(v.device, &body, now())
            .map_err(|err| TestCaseError::fail(format!("{err}: {}", v.payload)))?;
        assert_sound(v.device, &v.payload, &e)?;
        prop_assert_eq!(&e.user_id, &v.user_id);
        prop_assert_eq!(e.metric.as_str(), v.metric);
        prop_assert_eq!(e.value, v.value);
        prop_assert_eq!(e.recorded_at, v.recorded_at);
    }

    /// A valid payload changed in one place (a field replaced by arbitrary JSON, removed, or an
    /// unknown one added, also inside WHOOP's `user`) is refused as invalid or still sound; a
    /// removed or unknown field is always refused.
    #[test]
    fn mutated_payloads_are_refused_or_sound(v in any_valid(), m in mutation()) {
        let mut payload = v.payload.clone();
        let paths = field_paths(&payload);
        let must_refuse = match &m {
            Mutation::Replace(i, new) => {
                let path = &paths[i % paths.len()];
                let (last, parent) = path.split_last().unwrap();
                object_at(&mut payload, parent).unwrap().insert(last.clone(), new.clone());
                false
            }
            Mutation::Remove(i) => {
                let path = &paths[i % paths.len()];
                let (last, parent) = path.split_last().unwrap();
                object_at(&mut payload, parent).unwrap().remove(last);
                true
            }
            Mutation::AddUnknown(i, key, new) => {
                let objects: Vec<Vec<String>> = std::iter::once(Vec::new())
                    .chain(paths.iter().filter(|p| is_object_at(&payload, p)).cloned())
                    .collect();
                let at = &objects[i % objects.len()];
                let target = object_at(&mut payload, at).unwrap();
                let fresh = !target.contains_key(key) && !KNOWN_FIELDS.contains(&key.as_str());
                target.insert(key.clone(), new.clone());
                fresh
            }
        };
        let body = serde_json::to_vec(&payload).unwrap();
        let outcome = normalise(v.device, &body, now());
        check_outcome(v.device, &body, &outcome)?;
        if must_refuse {
            prop_assert!(outcome.is_err(), "accepted {payload} after {m:?}");
        }
        if let Err(e) = outcome {
            prop_assert!(!e.is_malformed(), "{e:?}");
        }
    }

    /// A batch of valid payloads is accepted whole, in order, each event with its fields; one
    /// bad item anywhere refuses the whole batch and names that item's index.
    #[test]
    fn batches_are_all_or_nothing(
        (device, items) in device().prop_flat_map(|d| {
            (Just(d), prop::collection::vec(valid_payload(d), 1..=8))
        }),
        bad in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let mut payloads: Vec<Value> = items.iter().map(|v| v.payload.clone()).collect();
        let bad_at = bad.map(|i| i.index(payloads.len()));
        if let Some(at) = bad_at {
            payloads[at] = json!({"not": "a reading"});
        }
        let body = serde_json::to_vec(&payloads).unwrap();
        match (normalise_batch(device, &body, now(), 8), bad_at) {
            (Ok(events), None) => {
                prop_assert_eq!(events.len(), items.len());
                for (e, v) in events.iter().zip(&items) {
                    assert_sound(device, &v.payload, e)?;
                    prop_assert_eq!(&e.user_id, &v.user_id);
                    prop_assert_eq!(e.value, v.value);
                    prop_assert_eq!(e.recorded_at, v.recorded_at);
                }
            }
            (Err((index, e)), Some(at)) => {
                prop_assert_eq!(index, at);
                prop_assert!(matches!(e, IngestError::WrongShape { .. }), "{e:?}");
            }
            (outcome, bad_at) => {
                return Err(TestCaseError::fail(format!("bad item {bad_at:?} gave {outcome:?}")));
            }
        }
    }
}

/// A valid payload of `device` with the JSON text `raw` in one of its fields: `user`, `metric`,
/// `value` or `time`.
fn with_field(device: Device, field: &str, raw: &str) -> Vec<u8> {
    let mut v = match device {
        Device::Oura => {
            json!({"user_id":"u1","data_type":"heart_rate","value":60,"timestamp":"2026-11-26T11:00:00Z"})
        }
        Device::Whoop => {
            json!({"user":{"id":"u1"},"type":"hrv.rmssd","score":60,"created_at":"2026-11-26T11:00:00Z"})
        }
        Device::Garmin => {
            json!({"userId":"u1","summaryType":"heart_rate","value":60,"startTimeInSeconds":1795000000})
        }
        Device::AppleHealth => {
            json!({"userId":"u1","quantityType":"HKQuantityTypeIdentifierHeartRate","quantity":60,"startDate":"2026-11-26T11:00:00Z"})
        }
        Device::Fitbit => {
            json!({"ownerId":"u1","collectionType":"heart_rate","value":60,"dateTime":"2026-11-26T11:00:00Z"})
        }
        other => panic!("{other:?} is not a device of the reading API"),
    };
    assert!(normalise(device, v.to_string().as_bytes(), now()).is_ok());
    let slot = Value::from("\u{1}SLOT\u{1}");
    match (device, field) {
        (Device::Whoop, "user") => v["user"]["id"] = slot,
        (_, "user") => v[user_field(device)] = slot,
        (_, "metric") => v[metric_field(device)] = slot,
        (_, "value") => v[value_field(device)] = slot,
        (_, "time") => v[time_field(device)] = slot,
        _ => panic!("no field {field}"),
    }
    v.to_string()
        .replace(r#""\u0001SLOT\u0001""#, raw)
        .into_bytes()
}

fn metric_field(device: Device) -> &'static str {
    match device {
        Device::Oura => "data_type",
        Device::Whoop => "type",
        Device::Garmin => "summaryType",
        Device::AppleHealth => "quantityType",
        Device::Fitbit => "collectionType",
        other => panic!("{other:?} is not a device of the reading API"),
    }
}

fn user_field(device: Device) -> &'static str {
    match device {
        Device::Oura => "user_id",
        Device::Whoop => "user",
        Device::Garmin | Device::AppleHealth => "userId",
        Device::Fitbit => "ownerId",
        other => panic!("{other:?} is not a device of the reading API"),
    }
}

fn value_field(device: Device) -> &'static str {
    match device {
        Device::Whoop => "score",
        Device::AppleHealth => "quantity",
        _ => "value",
    }
}

fn time_field(device: Device) -> &'static str {
    match device {
        Device::Oura => "timestamp",
        Device::Whoop => "created_at",
        Device::Garmin => "startTimeInSeconds",
        Device::AppleHealth => "startDate",
        Device::Fitbit => "dateTime",
        other => panic!("{other:?} is not a device of the reading API"),
    }
}

/// JSON texts of values a value field must never turn into a reading: beyond f64, beyond the
/// ranges, NaN/Infinity spelt as strings or bare words, empty and nested containers.
const BAD_VALUES: [&str; 19] = [
    "1e309",
    "-1e309",
    "1e308",
    "-1e308",
    "18446744073709551615",
    "-9223372036854775808",
    "1000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "\"NaN\"",
    "\"Infinity\"",
    "\"-Infinity\"",
    "\"60\"",
    "NaN",
    "Infinity",
    "-Infinity",
    "nan",
    "null",
    "[]",
    "{}",
    "[60]",
];

/// Times a reading can never be at: far past and future, before the epoch, not RFC 3339.
const BAD_TIMES: [&str; 12] = [
    "\"0000-01-01T00:00:00Z\"",
    "\"1969-12-31T23:59:59Z\"",
    "\"9999-12-31T23:59:59Z\"",
    "\"2026-11-26T12:05:01Z\"",
    "\"+262143-12-31T23:59:59Z\"",
    "\"2026-13-01T00:00:00Z\"",
    "\"2026-11-26\"",
    "\"\"",
    "1795000000",
    "\"NaN\"",
    "[]",
    "null",
];

/// Garmin's integer seconds at and beyond the representable range, negative, fractional.
const BAD_GARMIN_SECONDS: [&str; 10] = [
    "-1",
    "-8000000000000",
    "-9223372036854775808",
    "9223372036854775807",
    "18446744073709551615",
    "253402300800",
    "1795000000.5",
    "1e20",
    "\"1795000000\"",
    "[]",
];

/// User ids that are too long, empty, non-ASCII or of the wrong type.
fn bad_user_ids() -> Vec<String> {
    vec![
        "\"\"".into(),
        format!("\"{}\"", "a".repeat(129)),
        format!("\"{}\"", "a".repeat(100_000)),
        "\"é\"".into(),
        "\"u\\u0000\"".into(),
        "\"ｕ１\"".into(),
        "\"u 1\"".into(),
        "\"u/1\"".into(),
        "-1".into(),
        "1.5".into(),
        "null".into(),
        "[]".into(),
        "{}".into(),
        "[\"u1\"]".into(),
    ]
}

fn nested(depth: usize, open: &str, close: &str, inner: &str) -> String {
    format!("{}{inner}{}", open.repeat(depth), close.repeat(depth))
}

proptest! {
    #![proptest_config(config(256))]

    /// Boundary values in the value, time and user fields of every device are refused with a
    /// typed error, never accepted as garbage and never a panic.
    #[test]
    fn boundary_values_are_refused(device in device(),
                                   value in prop::sample::select(BAD_VALUES.to_vec()),
                                   time in prop::sample::select(BAD_TIMES.to_vec()),
                                   seconds in prop::sample::select(BAD_GARMIN_SECONDS.to_vec()),
                                   user in prop::sample::select(bad_user_ids())) {
        let bad_time = if device == Device::Garmin { seconds } else { time };
        for (field, raw) in [("value", value), ("time", bad_time), ("user", user.as_str())] {
            let body = with_field(device, field, raw);
            let outcome = normalise(device, &body, now());
            check_outcome(device, &body, &outcome)?;
            prop_assert!(outcome.is_err(), "{device:?} accepted {}",
                         String::from_utf8_lossy(&body));
        }
    }

    /// Deep nesting (as the whole body or inside a field) and very long strings are refused
    /// without exhausting the stack.
    #[test]
    fn deep_and_long_inputs_are_refused(device in device(), depth in 1usize..5000,
                                        long in 129usize..200_000) {
        let arrays = nested(depth, "[", "]", "");
        let objects = nested(depth, "{\"a\":", "}", "1");
        for body in [arrays.as_bytes().to_vec(), objects.as_bytes().to_vec(),
                     with_field(device, "value", &arrays), with_field(device, "user", &objects)] {
            let outcome = normalise(device, &body, now());
            check_outcome(device, &body, &outcome)?;
            prop_assert!(outcome.is_err());
        }
        let long_text = format!("\"{}\"", "x".repeat(long));
        for field in ["user", "metric", "time"] {
            let body = with_field(device, field, &long_text);
            let outcome = normalise(device, &body, now());
            check_outcome(device, &body, &outcome)?;
            prop_assert!(outcome.is_err());
        }
    }

    /// Empty, non-array and oversized batches are refused as a bad batch at index 0.
    #[test]
    fn bad_batches_are_refused(device in device(), max in 0usize..16, extra in 1usize..4,
                               body in prop::sample::select(
                                   vec!["[]", "{}", "null", "1", "\"[]\""])) {
        let too_many = Value::Array(vec![json!({}); max + extra]).to_string();
        for b in [body.as_bytes(), too_many.as_bytes()] {
            let outcome = normalise_batch(device, b, now(), max);
            prop_assert!(matches!(outcome, Err((0, IngestError::BadBatch { .. }))), "{outcome:?}");
        }
    }
}

// ---- the HTTP layer: every refusal of a signed webhook is a 4xx ----

fn secret(device: Device) -> Vec<u8> {
    format!("secret-{}", device.as_str()).into_bytes()
}

/// An api-mode router without Kafka: a payload that passes parsing reaches `publish`, which
/// answers 404 ("api mode only"), so 404 here means "accepted by the parser".
fn router_without_kafka() -> axum::Router {
    let config = auren_runtime::Config::try_parse_from(["auren-runtime"]).unwrap();
    let secrets: BTreeMap<Device, Vec<u8>> = Device::ALL.iter().map(|d| (*d, secret(*d))).collect();
    let state = AppState::from(Services {
        config: Arc::new(config),
        metrics: Arc::new(Metrics::new("fuzz", "api")),
        health: HealthBoard::new(HealthReport::starting("fuzz", "api")),
        lifecycle: Arc::new(Lifecycle::default()),
        producer: None,
        verifier: Arc::new(SignatureVerifier::new(secrets, 300, true)),
        replay: None,
        vendor_keys: Arc::default(),
        faults: Faults {
            error_rate: 0.0,
            latency: StdDuration::ZERO,
        },
        roles: None,
    });
    router(state)
}

async fn post(app: &axum::Router, device: Device, body: Vec<u8>) -> (StatusCode, Value) {
    let ts = Utc::now().timestamp();
    let request = Request::post(format!("/webhooks/{}", device.as_str()))
        .header(auren_contract::headers::TIMESTAMP, ts.to_string())
        .header(
            auren_contract::headers::SIGNATURE,
            sign(&secret(device), ts, &body),
        )
        .body(Body::from(body))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

proptest! {
    #![proptest_config(config(128))]

    /// Through the real router, a correctly signed body the parser refuses answers 400
    /// `malformed_json` (not JSON) or 422 `invalid_payload` (anything else), never a 5xx; one it
    /// accepts goes on to publishing. The status agrees with `ingest::normalise`.
    #[test]
    fn http_maps_every_refusal_to_4xx(
        device in device(),
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
            any_valid().prop_map(|v| serde_json::to_vec(&v.payload).unwrap()),
        ],
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let app = router_without_kafka();
        let (status, answer) = runtime.block_on(post(&app, device, body.clone()));
        let parsed = normalise(device, &body, Utc::now());
        match parsed {
            Ok(_) => prop_assert_eq!(status, StatusCode::NOT_FOUND, "{}", answer),
            Err(e) if e.is_malformed() => {
                prop_assert_eq!(status, StatusCode::BAD_REQUEST);
                prop_assert_eq!(&answer["error"], "malformed_json");
            }
            Err(_) => {
                prop_assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{}", answer);
                prop_assert_eq!(&answer["error"], "invalid_payload");
            }
        }
    }
}

// ---- regressions found by the properties above ----

/// Found by `mutated_payloads_are_refused_or_sound`: WHOOP's nested `user` object took unknown
/// fields, so any JSON rode along into the stored `raw` payload — including a NUL character,
/// which PostgreSQL's `jsonb` refuses, so the consumer retried that batch forever.
#[test]
fn whoop_user_with_unknown_fields_is_refused() {
    let body = br#"{"user":{"id":42,"note":"\u0000"},"type":"recovery.score","score":50,"created_at":"2026-11-26T11:00:00Z"}"#;
    let err = normalise(Device::Whoop, body, now()).unwrap_err();
    assert!(
        matches!(
            err,
            IngestError::WrongShape {
                device: "whoop",
                ..
            }
        ),
        "{err:?}"
    );
}

/// Found by `boundary_values_are_refused`: Garmin's `startTimeInSeconds` took any i64 chrono
/// can hold, so a reading "recorded" in the year -251,000 was accepted; PostgreSQL's
/// `timestamptz` starts at 4713 BC, so the consumer retried that batch forever. Readings from
/// before the Unix epoch are now refused for every device.
#[test]
fn readings_from_before_the_epoch_are_refused() {
    let garmin =
        br#"{"userId":"u1","summaryType":"steps","value":10,"startTimeInSeconds":-8000000000000}"#;
    assert!(matches!(
        normalise(Device::Garmin, garmin, now()),
        Err(IngestError::BeforeEpoch(_))
    ));
    let oura =
        br#"{"user_id":"u1","data_type":"steps","value":10,"timestamp":"0001-01-01T00:00:00Z"}"#;
    assert!(matches!(
        normalise(Device::Oura, oura, now()),
        Err(IngestError::BeforeEpoch(_))
    ));
    let epoch =
        br#"{"user_id":"u1","data_type":"steps","value":10,"timestamp":"1970-01-01T00:00:00Z"}"#;
    assert!(normalise(Device::Oura, epoch, now()).is_ok());
}

/// Found by `valid_payloads_are_accepted_with_their_fields`: serde_json's default float parser
/// read `113.78586306969319` as `113.7858630696932` (one ulp off), so the event's value and
/// raw payload differed from what the vendor sent. The workspace now enables serde_json's
/// `float_roundtrip`.
#[test]
fn reading_values_are_parsed_exactly() {
    let body = br#"{"user":{"id":2940481},"type":"heart_rate","score":113.78586306969319,"created_at":"2012-02-12T10:05:43+09:28"}"#;
    let e = normalise(Device::Whoop, body, now()).unwrap();
    assert_eq!(e.value, 113.785_863_069_693_19);
    assert_eq!(e.raw["score"].as_f64(), Some(113.785_863_069_693_19));
}
