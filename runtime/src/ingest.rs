//! Per-device normalisation of the signed AUREN reading API's payloads into [`Event`]s. Pure:
//! no Kafka, no HTTP.
//!
//! These are our own shapes, one per device, and this module is the one place that knows them;
//! what the vendors themselves send is read in [`crate::vendors`].

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Digest;
use uuid::Uuid;

/// Where an event came from: the `device` column. The first five are the devices of the
/// signed AUREN reading API (`/webhooks/{device}`, [`Device::ALL`]); Polar, Withings and Google
/// Health only send their own notifications (`/vendors/...`, [`crate::vendors`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    Oura,
    Whoop,
    Garmin,
    AppleHealth,
    Fitbit,
    Polar,
    Withings,
    GoogleHealth,
}

impl Device {
    /// The devices of the signed AUREN reading API.
    pub const ALL: [Device; 5] = [
        Device::Oura,
        Device::Whoop,
        Device::Garmin,
        Device::AppleHealth,
        Device::Fitbit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Device::Oura => "oura",
            Device::Whoop => "whoop",
            Device::Garmin => "garmin",
            Device::AppleHealth => "apple_health",
            Device::Fitbit => "fitbit",
            Device::Polar => "polar",
            Device::Withings => "withings",
            Device::GoogleHealth => "google_health",
        }
    }

    pub fn from_path(s: &str) -> Option<Device> {
        Device::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// A measurement the platform understands, with its unit and plausible range.
#[derive(Debug, Clone, Copy, PartialEq)]
struct MetricSpec {
    name: &'static str,
    unit: &'static str,
    min: f64,
    max: f64,
}

const METRICS: &[MetricSpec] = &[
    MetricSpec {
        name: "heart_rate",
        unit: "bpm",
        min: 20.0,
        max: 250.0,
    },
    MetricSpec {
        name: "hrv",
        unit: "ms",
        min: 0.0,
        max: 500.0,
    },
    MetricSpec {
        name: "resting_heart_rate",
        unit: "bpm",
        min: 20.0,
        max: 200.0,
    },
    MetricSpec {
        name: "steps",
        unit: "count",
        min: 0.0,
        max: 200_000.0,
    },
    MetricSpec {
        name: "sleep_score",
        unit: "score",
        min: 0.0,
        max: 100.0,
    },
    MetricSpec {
        name: "recovery",
        unit: "percent",
        min: 0.0,
        max: 100.0,
    },
    MetricSpec {
        name: "strain",
        unit: "score",
        min: 0.0,
        max: 21.0,
    },
    MetricSpec {
        name: "spo2",
        unit: "percent",
        min: 50.0,
        max: 100.0,
    },
    MetricSpec {
        name: "calories",
        unit: "kcal",
        min: 0.0,
        max: 20_000.0,
    },
    MetricSpec {
        name: "skin_temperature",
        unit: "celsius",
        min: 25.0,
        max: 45.0,
    },
];

/// A normalised biometric event: what goes to Kafka and into PostgreSQL. The consumer reads
/// `raw` as the JSON text it came as ([`StoredEvent`]): PostgreSQL parses it into `jsonb`
/// anyway, and a `Value` tree per event was a fifth of the consumer's instructions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event<Raw = Value> {
    pub id: Uuid,
    pub user_id: String,
    pub device: Device,
    pub metric: String,
    pub value: f64,
    pub unit: String,
    pub recorded_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub raw: Raw,
}

/// An event as the consumer stores it: `raw` unparsed.
pub type StoredEvent = Event<Box<serde_json::value::RawValue>>;

/// The signed request events came from: the same signed request (device, timestamp, MAC)
/// always yields the same event ids, so the store's primary key keeps one copy however often,
/// and on whichever pod, it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedOrigin {
    pub device: Device,
    /// The signed `X-Auren-Timestamp`.
    pub timestamp: i64,
    /// The request's HMAC-SHA256 (what its signature header carries).
    pub mac: [u8; 32],
}

impl SignedOrigin {
    /// Domain tag of the id digest, so no other SHA-256 in the system can produce these ids.
    const ID_TAG: &'static [u8] = b"auren.event-id.v1";

    /// The id of the `index`-th event of the request (0 for a single webhook): a UUIDv8 made
    /// of SHA-256 over the tag, the device, the timestamp, the MAC and the index.
    pub fn event_id(&self, index: usize) -> Uuid {
        let digest = sha2::Sha256::new()
            .chain_update(Self::ID_TAG)
            .chain_update([self.device as u8])
            .chain_update(self.timestamp.to_be_bytes())
            .chain_update(self.mac)
            .chain_update((index as u64).to_be_bytes())
            .finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_custom_bytes(bytes).into_uuid()
    }

    /// Gives each event of the request its deterministic id, in request order.
    pub fn identify(&self, events: &mut [Event]) {
        for (index, event) in events.iter_mut().enumerate() {
            event.id = self.event_id(index);
        }
    }
}

/// Why a payload was refused. Each maps to 400 (not JSON) or 422 (wrong shape or values).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IngestError {
    #[error("body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("payload does not have the {device} shape: {reason}")]
    WrongShape {
        device: &'static str,
        reason: String,
    },
    #[error("unknown metric {0:?}")]
    UnknownMetric(String),
    #[error("{metric} value {value} is outside {min}..={max}")]
    OutOfRange {
        metric: String,
        value: f64,
        min: f64,
        max: f64,
    },
    #[error("user id must be 1 to 128 characters of [A-Za-z0-9_.:@-]")]
    BadUserId,
    #[error("recorded_at {0} is more than 5 minutes in the future")]
    FromTheFuture(DateTime<Utc>),
    #[error("recorded_at {0} is before 1970-01-01T00:00:00Z")]
    BeforeEpoch(DateTime<Utc>),
    #[error("a batch must be a non-empty JSON array of at most {max} events")]
    BadBatch { max: usize },
}

impl IngestError {
    /// True when the body was not JSON at all (400), false for JSON of the wrong shape (422).
    pub fn is_malformed(&self) -> bool {
        matches!(self, IngestError::MalformedJson(_))
    }
}

/// The fields every vendor's payload boils down to, before range checks.
#[derive(Debug, Clone, PartialEq)]
struct Reading {
    user_id: String,
    metric: String,
    value: f64,
    recorded_at: DateTime<Utc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OuraPayload {
    user_id: String,
    data_type: String,
    value: f64,
    timestamp: DateTime<Utc>,
}

/// Unknown fields are refused here too: whatever is accepted ends up in the stored `raw`
/// payload, and the store must be able to hold all of it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WhoopUser {
    id: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WhoopPayload {
    user: WhoopUser,
    #[serde(rename = "type")]
    kind: String,
    score: f64,
    created_at: DateTime<Utc>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GarminPayload {
    user_id: String,
    summary_type: String,
    value: f64,
    start_time_in_seconds: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AppleHealthPayload {
    user_id: String,
    quantity_type: String,
    quantity: f64,
    start_date: DateTime<Utc>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FitbitPayload {
    owner_id: String,
    collection_type: String,
    value: f64,
    date_time: DateTime<Utc>,
}

/// Parses one JSON body of `device` into an event received at `now`.
pub fn normalise(device: Device, body: &[u8], now: DateTime<Utc>) -> Result<Event, IngestError> {
    let raw: Value =
        serde_json::from_slice(body).map_err(|e| IngestError::MalformedJson(e.to_string()))?;
    normalise_value(device, raw, now)
}

/// Parses a JSON array body of `device` into events; all or nothing.
pub fn normalise_batch(
    device: Device,
    body: &[u8],
    now: DateTime<Utc>,
    max: usize,
) -> Result<Vec<Event>, (usize, IngestError)> {
    let raw: Value =
        serde_json::from_slice(body).map_err(|e| (0, IngestError::MalformedJson(e.to_string())))?;
    let Value::Array(items) = raw else {
        return Err((0, IngestError::BadBatch { max }));
    };
    if items.is_empty() || items.len() > max {
        return Err((0, IngestError::BadBatch { max }));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| normalise_value(device, item, now).map_err(|e| (i, e)))
        .collect()
}

fn normalise_value(device: Device, raw: Value, now: DateTime<Utc>) -> Result<Event, IngestError> {
    let reading = read_vendor_fields(device, &raw)?;
    let spec = metric_spec(&reading.metric)?;
    check_reading(&reading, spec, now)?;
    Ok(Event {
        id: Uuid::now_v7(),
        user_id: reading.user_id,
        device,
        metric: spec.name.to_string(),
        value: reading.value,
        unit: spec.unit.to_string(),
        recorded_at: reading.recorded_at,
        received_at: now,
        raw,
    })
}

fn shape<T: serde::de::DeserializeOwned>(device: Device, raw: &Value) -> Result<T, IngestError> {
    T::deserialize(raw).map_err(|e| IngestError::WrongShape {
        device: device.as_str(),
        reason: e.to_string(),
    })
}

fn read_vendor_fields(device: Device, raw: &Value) -> Result<Reading, IngestError> {
    match device {
        Device::Oura => {
            let p: OuraPayload = shape(device, raw)?;
            Ok(Reading {
                user_id: p.user_id,
                metric: p.data_type,
                value: p.value,
                recorded_at: p.timestamp,
            })
        }
        Device::Whoop => {
            let p: WhoopPayload = shape(device, raw)?;
            let user_id = whoop_user_id(&p.user.id).ok_or(IngestError::BadUserId)?;
            Ok(Reading {
                user_id,
                metric: whoop_metric(&p.kind),
                value: p.score,
                recorded_at: p.created_at,
            })
        }
        Device::Garmin => {
            let p: GarminPayload = shape(device, raw)?;
            let recorded_at =
                DateTime::from_timestamp(p.start_time_in_seconds, 0).ok_or_else(|| {
                    IngestError::WrongShape {
                        device: "garmin",
                        reason: "startTimeInSeconds out of range".into(),
                    }
                })?;
            Ok(Reading {
                user_id: p.user_id,
                metric: p.summary_type,
                value: p.value,
                recorded_at,
            })
        }
        Device::AppleHealth => {
            let p: AppleHealthPayload = shape(device, raw)?;
            Ok(Reading {
                user_id: p.user_id,
                metric: apple_metric(&p.quantity_type),
                value: p.quantity,
                recorded_at: p.start_date,
            })
        }
        Device::Fitbit => {
            let p: FitbitPayload = shape(device, raw)?;
            Ok(Reading {
                user_id: p.owner_id,
                metric: p.collection_type,
                value: p.value,
                recorded_at: p.date_time,
            })
        }
        Device::Polar | Device::Withings | Device::GoogleHealth => Err(IngestError::WrongShape {
            device: device.as_str(),
            reason: "this vendor's notifications are taken on /vendors/, not the reading API"
                .into(),
        }),
    }
}

/// WHOOP sends numeric user ids; we keep them as text.
fn whoop_user_id(id: &Value) -> Option<String> {
    match id {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) if n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

fn whoop_metric(kind: &str) -> String {
    match kind {
        "recovery.score" => "recovery",
        "cycle.strain" => "strain",
        "hrv.rmssd" => "hrv",
        other => other,
    }
    .to_string()
}

fn apple_metric(quantity_type: &str) -> String {
    match quantity_type {
        "HKQuantityTypeIdentifierHeartRate" => "heart_rate",
        "HKQuantityTypeIdentifierStepCount" => "steps",
        "HKQuantityTypeIdentifierOxygenSaturation" => "spo2",
        "HKQuantityTypeIdentifierActiveEnergyBurned" => "calories",
        "HKQuantityTypeIdentifierHeartRateVariabilitySDNN" => "hrv",
        other => other,
    }
    .to_string()
}

fn metric_spec(metric: &str) -> Result<&'static MetricSpec, IngestError> {
    METRICS
        .iter()
        .find(|m| m.name == metric)
        .ok_or_else(|| IngestError::UnknownMetric(metric.to_string()))
}

fn check_reading(r: &Reading, spec: &MetricSpec, now: DateTime<Utc>) -> Result<(), IngestError> {
    if !valid_user_id(&r.user_id) {
        return Err(IngestError::BadUserId);
    }
    if !r.value.is_finite() || r.value < spec.min || r.value > spec.max {
        return Err(IngestError::OutOfRange {
            metric: spec.name.to_string(),
            value: r.value,
            min: spec.min,
            max: spec.max,
        });
    }
    if r.recorded_at > now + Duration::minutes(5) {
        return Err(IngestError::FromTheFuture(r.recorded_at));
    }
    if r.recorded_at < DateTime::UNIX_EPOCH {
        return Err(IngestError::BeforeEpoch(r.recorded_at));
    }
    Ok(())
}

/// The user ids the store takes (also the Kafka key).
pub fn valid_user_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:@-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2026-11-26T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_signed_request_names_its_events_the_same_everywhere() {
        let origin = SignedOrigin {
            device: Device::Oura,
            timestamp: 1_795_000_000,
            mac: [7; 32],
        };
        let id = origin.event_id(0);
        assert_eq!(id.get_version_num(), 8);
        assert_eq!(origin.event_id(0), id, "deterministic");
        assert_ne!(
            origin.event_id(1),
            id,
            "each event of a batch has its own id"
        );
        let other = |o: SignedOrigin| o.event_id(0);
        assert_ne!(
            other(SignedOrigin {
                timestamp: 1_795_000_001,
                ..origin
            }),
            id
        );
        assert_ne!(
            other(SignedOrigin {
                mac: [8; 32],
                ..origin
            }),
            id
        );
        assert_ne!(
            other(SignedOrigin {
                device: Device::Whoop,
                ..origin
            }),
            id
        );

        let body = json!([
            {"user_id":"u1","data_type":"steps","value":1,"timestamp":"2026-11-26T11:00:00Z"},
            {"user_id":"u1","data_type":"steps","value":1,"timestamp":"2026-11-26T11:00:00Z"}
        ]);
        let mut events =
            normalise_batch(Device::Oura, body.to_string().as_bytes(), now(), 10).unwrap();
        origin.identify(&mut events);
        assert_eq!(
            events.iter().map(|e| e.id).collect::<Vec<_>>(),
            [origin.event_id(0), origin.event_id(1)]
        );
    }

    fn ok(device: Device, v: Value) -> Event {
        normalise(device, v.to_string().as_bytes(), now()).unwrap()
    }

    #[test]
    fn every_device_normalises_to_the_same_event_shape() {
        let cases = [
            (
                Device::Oura,
                json!({"user_id":"u1","data_type":"heart_rate","value":61,"timestamp":"2026-11-26T11:00:00Z"}),
                "heart_rate",
                "bpm",
            ),
            (
                Device::Whoop,
                json!({"user":{"id":42},"type":"recovery.score","score":77.5,"created_at":"2026-11-26T11:00:00Z"}),
                "recovery",
                "percent",
            ),
            (
                Device::Garmin,
                json!({"userId":"u1","summaryType":"steps","value":1200,"startTimeInSeconds":1795000000}),
                "steps",
                "count",
            ),
            (
                Device::AppleHealth,
                json!({"userId":"u1","quantityType":"HKQuantityTypeIdentifierOxygenSaturation","quantity":97,"startDate":"2026-11-26T11:00:00Z"}),
                "spo2",
                "percent",
            ),
            (
                Device::Fitbit,
                json!({"ownerId":"u1","collectionType":"sleep_score","value":80,"dateTime":"2026-11-26T11:00:00Z"}),
                "sleep_score",
                "score",
            ),
        ];
        for (device, payload, metric, unit) in cases {
            let e = ok(device, payload.clone());
            assert_eq!(
                (e.metric.as_str(), e.unit.as_str()),
                (metric, unit),
                "{device:?}"
            );
            assert_eq!(e.device, device);
            assert_eq!(e.raw, payload);
            assert_eq!(e.received_at, now());
            assert_eq!(e.id.get_version_num(), 7);
        }
        assert_eq!(ok(Device::Whoop, json!({"user":{"id":42},"type":"cycle.strain","score":3,"created_at":"2026-11-26T11:00:00Z"})).user_id, "42");
    }

    #[test]
    fn bad_payloads_say_what_is_wrong() {
        type Case<'a> = (&'a [u8], fn(&IngestError) -> bool);
        let cases: [Case<'_>; 7] = [
            (b"{not json", |e| e.is_malformed()),
            (br#"{"user_id":"u1"}"#, |e| matches!(e, IngestError::WrongShape { .. })),
            (br#"{"user_id":"u1","data_type":"mood","value":1,"timestamp":"2026-11-26T11:00:00Z"}"#, |e| matches!(e, IngestError::UnknownMetric(_))),
            (br#"{"user_id":"u1","data_type":"heart_rate","value":900,"timestamp":"2026-11-26T11:00:00Z"}"#, |e| matches!(e, IngestError::OutOfRange { .. })),
            (br#"{"user_id":"","data_type":"heart_rate","value":60,"timestamp":"2026-11-26T11:00:00Z"}"#, |e| *e == IngestError::BadUserId),
            (br#"{"user_id":"u1","data_type":"heart_rate","value":60,"timestamp":"2027-01-01T00:00:00Z"}"#, |e| matches!(e, IngestError::FromTheFuture(_))),
            (br#"{"user_id":"u1","data_type":"heart_rate","value":60,"timestamp":"2026-11-26T11:00:00Z","x":1}"#, |e| matches!(e, IngestError::WrongShape { .. })),
        ];
        for (body, expected) in cases {
            let err = normalise(Device::Oura, body, now()).unwrap_err();
            assert!(
                expected(&err),
                "{}: got {err:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_batch_is_all_or_nothing_and_names_the_bad_item() {
        let good = json!({"user_id":"u1","data_type":"steps","value":5,"timestamp":"2026-11-26T11:00:00Z"});
        let bad = json!({"user_id":"u1","data_type":"steps","value":-5,"timestamp":"2026-11-26T11:00:00Z"});
        let body = json!([good, good]).to_string();
        assert_eq!(
            normalise_batch(Device::Oura, body.as_bytes(), now(), 10)
                .unwrap()
                .len(),
            2
        );
        let body = json!([good, bad]).to_string();
        let (index, _) = normalise_batch(Device::Oura, body.as_bytes(), now(), 10).unwrap_err();
        assert_eq!(index, 1);
        assert!(matches!(
            normalise_batch(Device::Oura, b"[]", now(), 10),
            Err((0, IngestError::BadBatch { .. }))
        ));
        assert!(matches!(
            normalise_batch(Device::Oura, b"{}", now(), 10),
            Err((0, IngestError::BadBatch { .. }))
        ));
    }
}
