//! Polar AccessLink webhooks. Creating the webhook sends a PING (`{"event":"PING", ...}`),
//! answered 200 before the signing key is known to us. Events are `{event, user_id,
//! entity_id, timestamp, url}` (`EXERCISE`, `SLEEP`, `CONTINUOUS_HEART_RATE`, ...), signed
//! with `Polar-Webhook-Signature`: hex HMAC-SHA256 of the body under the webhook's
//! `signature_secret_key`. Polar sends no signature timestamp, so there is no expiry window.

use serde::Deserialize;

use super::{
    Delivery, Envelope, Notification, Vendor, VendorError, VendorFormat, VendorKeys, json_body,
    rfc3339, shape,
};

/// The `signature_secret_key` Polar returned when the webhook was created.
pub const SIGNING_SECRET: &str = "vendor_polar";

const SIGNATURE: &str = "polar-webhook-signature";

pub struct Polar;

#[derive(Deserialize)]
struct PolarEvent {
    event: String,
    #[serde(deserialize_with = "super::deserialize_id")]
    user_id: String,
    #[serde(deserialize_with = "super::deserialize_id")]
    entity_id: String,
    timestamp: Option<String>,
}

#[derive(Deserialize)]
struct Kind {
    event: Option<String>,
}

impl VendorFormat for Polar {
    const VENDOR: Vendor = Vendor::Polar;

    fn verify(delivery: &Delivery<'_>, keys: &VendorKeys) -> Result<(), VendorError> {
        let signature = delivery.header(SIGNATURE)?;
        let mac = hex::decode(signature).map_err(|_| VendorError::Mismatch)?;
        keys.get(SIGNING_SECRET)
            .check_mac(SIGNING_SECRET, &[delivery.body], &mac)
    }

    fn notifications(body: &[u8]) -> Result<Vec<Notification>, VendorError> {
        let raw = json_body(body)?;
        let e: PolarEvent = shape(Self::VENDOR, &raw)?;
        let timestamp = e.timestamp.as_deref().unwrap_or("");
        let envelope = Envelope {
            vendor: Self::VENDOR,
            user_id: e.user_id,
            vendor_event_id: format!("{}:{}:{timestamp}", e.event, e.entity_id),
            kind: e.event,
            time: rfc3339(e.timestamp.as_deref()),
        };
        Ok(vec![Notification { envelope, raw }])
    }
}

/// The PING Polar sends when the webhook is created: it stores nothing.
pub fn is_ping(body: &[u8]) -> bool {
    serde_json::from_slice::<Kind>(body)
        .is_ok_and(|k| k.event.is_some_and(|e| e.eq_ignore_ascii_case("PING")))
}

/// Signs a body the way Polar does (tests and load tools).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    hex::encode(super::hmac_sha256(secret, &[body]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ping_is_told_from_an_event() {
        assert!(is_ping(
            br#"{"timestamp":"2026-12-01T10:00:00Z","event":"PING"}"#
        ));
        let event = br#"{"event":"EXERCISE","user_id":475,"entity_id":"aQlC83","timestamp":"2026-12-01T10:00:00Z","url":"https://www.polaraccesslink.com/v3/exercises/aQlC83"}"#;
        assert!(!is_ping(event));
        let n = Polar::notifications(event).unwrap();
        assert_eq!(n[0].envelope.user_id, "475");
        assert_eq!(n[0].envelope.kind, "EXERCISE");
        assert!(n[0].envelope.time.is_some());
    }
}
