//! Real vendors' webhook notifications: one module per vendor, each with its verifier (what
//! proves the delivery came from the vendor) and its reading of the vendor's documented body
//! into [`Notification`]s. Pure: no Kafka, no HTTP server (handlers in `api::vendors`).
//!
//! Every notification becomes one [`Event`] whose id is derived from the vendor and the
//! vendor's own event id, so a retry (re-signed with a new timestamp or not) is stored once.
//! Parsing is lenient: fields a vendor adds later are kept in the raw notification.

pub mod garmin;
pub mod google_health;
pub mod oura;
pub mod polar;
pub mod whoop;
pub mod withings;

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::ingest::{Device, Event};

/// A wearable vendor whose own webhook format is accepted on `/vendors/...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Vendor {
    Oura,
    Whoop,
    Garmin,
    Polar,
    Withings,
    GoogleHealth,
}

impl Vendor {
    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::Oura => "oura",
            Vendor::Whoop => "whoop",
            Vendor::Garmin => "garmin",
            Vendor::Polar => "polar",
            Vendor::Withings => "withings",
            Vendor::GoogleHealth => "google_health",
        }
    }

    /// The `device` column of its events.
    pub fn device(self) -> Device {
        match self {
            Vendor::Oura => Device::Oura,
            Vendor::Whoop => Device::Whoop,
            Vendor::Garmin => Device::Garmin,
            Vendor::Polar => Device::Polar,
            Vendor::Withings => Device::Withings,
            Vendor::GoogleHealth => Device::GoogleHealth,
        }
    }
}

/// Names of the secrets the vendors need (keys of the mounted Secret, files in
/// `WEBHOOK_SECRETS_DIR`, or `WEBHOOK_SECRET_<NAME>` variables). Each may also be given as
/// `<name>_previous`, valid beside it during a rotation.
pub const SECRET_NAMES: [&str; 8] = [
    oura::SIGNING_SECRET,
    oura::VERIFICATION_TOKEN,
    whoop::SIGNING_SECRET,
    garmin::PATH_TOKEN,
    polar::SIGNING_SECRET,
    withings::PATH_TOKEN,
    google_health::AUTHORIZATION,
    google_health::PUBLIC_KEY,
];

/// The suffix of a secret still valid during a rotation.
pub const PREVIOUS_SUFFIX: &str = "_previous";

/// Unit of a notification's event: it says that something changed, the values are fetched.
pub const NOTIFICATION_UNIT: &str = "notification";

/// The small normalized envelope stored beside the raw notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub vendor: Vendor,
    pub user_id: String,
    /// What changed, in the vendor's words (`sleep.create`, `recovery.updated`, `dailies`...).
    pub kind: String,
    /// The vendor's id of this notification: what makes a retry the same event.
    pub vendor_event_id: String,
    /// When it happened, if the vendor says.
    pub time: Option<DateTime<Utc>>,
}

/// One vendor notification: its envelope and the notification as the vendor sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub envelope: Envelope,
    pub raw: Value,
}

impl Notification {
    /// Domain tag of the id digest (signed requests use another tag).
    const ID_TAG: &'static [u8] = b"auren.vendor-event-id.v1";

    /// A UUIDv8 of SHA-256 over the tag, the vendor and the vendor's event id: the same
    /// notification has the same id however often, and to whichever pod, it is delivered.
    pub fn event_id(&self) -> Uuid {
        let digest = Sha256::new()
            .chain_update(Self::ID_TAG)
            .chain_update(self.envelope.vendor.as_str())
            .chain_update([0])
            .chain_update(self.envelope.vendor_event_id.as_bytes())
            .finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_custom_bytes(bytes).into_uuid()
    }

    /// The event that goes to Kafka: metric = kind, unit `notification`, value 0, the raw
    /// notification beside the envelope in `raw`.
    pub fn into_event(self, now: DateTime<Utc>) -> Result<Event, VendorError> {
        if !crate::ingest::valid_user_id(&self.envelope.user_id) {
            return Err(VendorError::BadUserId(self.envelope.vendor.as_str()));
        }
        let id = self.event_id();
        let Notification { envelope, raw } = self;
        Ok(Event {
            id,
            user_id: envelope.user_id.clone(),
            device: envelope.vendor.device(),
            metric: envelope.kind.clone(),
            value: 0.0,
            unit: NOTIFICATION_UNIT.to_string(),
            recorded_at: envelope.time.unwrap_or(now),
            received_at: now,
            raw: json!({ "envelope": envelope, "notification": raw }),
        })
    }
}

/// Why a vendor delivery was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VendorError {
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("{0} is not a valid timestamp")]
    BadTimestamp(&'static str),
    #[error("signature expired: its timestamp is more than {0}s from now")]
    Expired(u64),
    #[error("signature does not match")]
    Mismatch,
    /// No secret configured: answered exactly like [`VendorError::Mismatch`].
    #[error("no secret configured ({0})")]
    NotConfigured(&'static str),
    #[error("body is not valid {format}: {reason}")]
    Malformed {
        format: &'static str,
        reason: String,
    },
    #[error("not a {vendor} notification: {reason}")]
    WrongShape {
        vendor: &'static str,
        reason: String,
    },
    #[error("{0} user id must be 1 to 128 characters of [A-Za-z0-9_.:@-]")]
    BadUserId(&'static str),
}

impl VendorError {
    /// A refusal of the sender's credentials (401), as opposed to its body.
    pub fn is_unauthorized(&self) -> bool {
        matches!(
            self,
            VendorError::MissingHeader(_)
                | VendorError::BadTimestamp(_)
                | VendorError::Expired(_)
                | VendorError::Mismatch
                | VendorError::NotConfigured(_)
        )
    }

    /// The body was not JSON (or form) at all (400), rather than the wrong shape (422).
    pub fn is_malformed(&self) -> bool {
        matches!(self, VendorError::Malformed { .. })
    }

    /// What the sender is told: a missing secret reads as a wrong signature.
    pub fn answer(&self) -> String {
        match self {
            VendorError::NotConfigured(_) => VendorError::Mismatch.to_string(),
            other => other.to_string(),
        }
    }
}

/// One secret's values: the current one, and the previous one during a rotation. `Debug`
/// shows how many, never the values.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Keys(Vec<Vec<u8>>);

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys({} configured)", self.0.len())
    }
}

/// The key a MAC is computed with when no secret is configured; the outcome is thrown away.
const NO_SECRET_STAND_IN: &[u8] = b"auren: no vendor secret configured";

impl Keys {
    pub fn new(values: Vec<Vec<u8>>) -> Self {
        Keys(values)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The configured values, current first.
    pub fn values(&self) -> impl Iterator<Item = &[u8]> {
        self.0.iter().map(Vec::as_slice)
    }

    /// Whether `mac` is the HMAC-SHA256 of `parts` under any of the keys. Every key is tried
    /// (no early exit) and each comparison is constant-time.
    pub fn signed(&self, parts: &[&[u8]], mac: &[u8]) -> bool {
        if self.0.is_empty() {
            let _ = hmac_sha256(NO_SECRET_STAND_IN, parts).ct_eq(mac);
            return false;
        }
        self.0
            .iter()
            .fold(subtle::Choice::from(0), |found, key| {
                found | hmac_sha256(key, parts).ct_eq(mac)
            })
            .into()
    }

    /// Whether `presented` equals one of the keys, compared as SHA-256 digests in constant
    /// time, so neither the content nor the length of a key leaks.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let presented = Sha256::digest(presented);
        self.0
            .iter()
            .fold(subtle::Choice::from(0), |found, key| {
                found | Sha256::digest(key).ct_eq(&presented)
            })
            .into()
    }

    /// [`Keys::signed`] as a verdict; `secret` names the missing secret in the log.
    pub fn check_mac(
        &self,
        secret: &'static str,
        parts: &[&[u8]],
        mac: &[u8],
    ) -> Result<(), VendorError> {
        let signed = self.signed(parts, mac);
        self.verdict(secret, signed)
    }

    /// [`Keys::matches`] as a verdict.
    pub fn check_token(&self, secret: &'static str, presented: &[u8]) -> Result<(), VendorError> {
        let matches = self.matches(presented);
        self.verdict(secret, matches)
    }

    fn verdict(&self, secret: &'static str, ok: bool) -> Result<(), VendorError> {
        match (self.is_empty(), ok) {
            (true, _) => Err(VendorError::NotConfigured(secret)),
            (false, false) => Err(VendorError::Mismatch),
            (false, true) => Ok(()),
        }
    }
}

/// Every vendor secret by name (see [`SECRET_NAMES`]).
#[derive(Debug, Clone, Default)]
pub struct VendorKeys(BTreeMap<&'static str, Keys>);

impl VendorKeys {
    pub fn new(keys: BTreeMap<&'static str, Keys>) -> Self {
        VendorKeys(keys)
    }

    /// The values of secret `name`; none configured is an empty [`Keys`].
    pub fn get(&self, name: &str) -> &Keys {
        static NONE: Keys = Keys(Vec::new());
        self.0.get(name).unwrap_or(&NONE)
    }
}

/// What a verifier sees of a delivery.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    /// The secret path segment, for vendors that sign nothing.
    pub path_token: Option<&'a str>,
    pub now_unix: i64,
    /// How far a signed timestamp may be from now (`WEBHOOK_TOLERANCE_SECONDS`).
    pub tolerance_secs: u64,
}

impl<'a> Delivery<'a> {
    /// A header the vendor must send, as text.
    pub fn header(&self, name: &'static str) -> Result<&'a str, VendorError> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .ok_or(VendorError::MissingHeader(name))
    }

    /// A signed timestamp (unix seconds) must be within the tolerance of now.
    pub fn check_fresh(&self, sent_unix: i64) -> Result<(), VendorError> {
        if self.now_unix.abs_diff(sent_unix) > self.tolerance_secs {
            return Err(VendorError::Expired(self.tolerance_secs));
        }
        Ok(())
    }
}

/// A vendor's webhook format: how a delivery is verified and what it carries.
pub trait VendorFormat {
    const VENDOR: Vendor;
    /// Proves the delivery came from the vendor (signature, token); never looks at the body's
    /// meaning.
    fn verify(delivery: &Delivery<'_>, keys: &VendorKeys) -> Result<(), VendorError>;
    /// The notifications of a verified body, in order.
    fn notifications(body: &[u8]) -> Result<Vec<Notification>, VendorError>;
}

/// HMAC-SHA256 of the concatenated `parts`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return [0; 32];
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// A short, stable digest of a JSON value (serde_json orders object keys), for vendors whose
/// notifications carry no id of their own.
pub fn content_digest(value: &Value) -> String {
    let digest = Sha256::digest(value.to_string().as_bytes());
    hex::encode(&digest[..12])
}

/// Parses a JSON body, keeping unknown fields.
pub fn json_body(body: &[u8]) -> Result<Value, VendorError> {
    serde_json::from_slice(body).map_err(|e| VendorError::Malformed {
        format: "JSON",
        reason: e.to_string(),
    })
}

/// Reads `value` as `T` (lenient: unknown fields are ignored, and kept in the raw value).
pub fn shape<T: serde::de::DeserializeOwned>(
    vendor: Vendor,
    value: &Value,
) -> Result<T, VendorError> {
    T::deserialize(value).map_err(|e| VendorError::WrongShape {
        vendor: vendor.as_str(),
        reason: e.to_string(),
    })
}

/// A user id sent as a JSON string or a non-negative integer, as text.
pub fn id_text(id: &Value) -> Option<String> {
    match id {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) if n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// Deserializes a user or object id given as a string or an integer.
pub fn deserialize_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let value = Value::deserialize(d)?;
    id_text(&value).ok_or_else(|| serde::de::Error::custom("expected a string or integer id"))
}

/// An RFC 3339 time, or `None` when absent or unreadable (the time is informative only).
pub fn rfc3339(text: Option<&str>) -> Option<DateTime<Utc>> {
    text.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(values: &[&[u8]]) -> Keys {
        Keys::new(values.iter().map(|v| v.to_vec()).collect())
    }

    #[test]
    fn the_current_and_the_previous_secret_both_verify_during_a_rotation() {
        let mac = hmac_sha256(b"old", &[b"12", b"body"]);
        assert!(keys(&[b"new", b"old"]).signed(&[b"12", b"body"], &mac));
        assert!(
            keys(&[b"new", b"old"]).signed(&[b"12body"], &mac),
            "parts are concatenated"
        );
        assert!(!keys(&[b"new"]).signed(&[b"12", b"body"], &mac));
        assert_eq!(
            keys(&[]).check_mac("x", &[b"12"], &mac),
            Err(VendorError::NotConfigured("x"))
        );
        assert!(keys(&[b"tok", b"old-tok"]).matches(b"old-tok"));
        assert!(!keys(&[b"tok"]).matches(b"tok2"));
        assert!(!format!("{:?}", keys(&[b"tok"])).contains("tok"));
    }

    #[test]
    fn a_missing_secret_is_answered_like_a_wrong_signature() {
        assert_eq!(
            VendorError::NotConfigured("vendor_whoop").answer(),
            VendorError::Mismatch.answer()
        );
    }

    #[test]
    fn a_notification_is_named_by_its_vendor_and_vendor_event_id() {
        let n = |vendor, id: &str| Notification {
            envelope: Envelope {
                vendor,
                user_id: "u1".into(),
                kind: "k".into(),
                vendor_event_id: id.into(),
                time: None,
            },
            raw: json!({}),
        };
        let id = n(Vendor::Whoop, "t1").event_id();
        assert_eq!(id.get_version_num(), 8);
        assert_eq!(n(Vendor::Whoop, "t1").event_id(), id);
        assert_ne!(n(Vendor::Whoop, "t2").event_id(), id);
        assert_ne!(n(Vendor::Polar, "t1").event_id(), id);
        let now = Utc::now();
        let event = n(Vendor::Whoop, "t1").into_event(now).unwrap();
        assert_eq!((event.id, event.recorded_at), (id, now));
        assert_eq!(event.raw["envelope"]["vendor_event_id"], "t1");
        let mut bad = n(Vendor::Whoop, "t1");
        bad.envelope.user_id = "a b".into();
        assert_eq!(bad.into_event(now), Err(VendorError::BadUserId("whoop")));
    }
}
