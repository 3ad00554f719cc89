//! WHOOP API v2 webhooks: `{user_id, id, type, trace_id}` (types such as `recovery.updated`,
//! `sleep.updated`, `workout.deleted`), signed with `X-WHOOP-Signature`: base64
//! HMAC-SHA256, under the app's client secret, of `X-WHOOP-Signature-Timestamp` (unix
//! milliseconds) followed by the raw body. WHOOP may deliver an event twice: `trace_id` names it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use super::{
    Delivery, Envelope, Notification, Vendor, VendorError, VendorFormat, VendorKeys, json_body,
    shape,
};

/// The app's client secret, which signs the deliveries.
pub const SIGNING_SECRET: &str = "vendor_whoop";

const SIGNATURE: &str = "x-whoop-signature";
const TIMESTAMP: &str = "x-whoop-signature-timestamp";

pub struct Whoop;

#[derive(Deserialize)]
struct WhoopEvent {
    #[serde(deserialize_with = "super::deserialize_id")]
    user_id: String,
    #[serde(rename = "type")]
    kind: String,
    trace_id: String,
}

impl VendorFormat for Whoop {
    const VENDOR: Vendor = Vendor::Whoop;

    fn verify(delivery: &Delivery<'_>, keys: &VendorKeys) -> Result<(), VendorError> {
        let timestamp = delivery.header(TIMESTAMP)?;
        let signature = delivery.header(SIGNATURE)?;
        let millis: i64 = timestamp
            .parse()
            .map_err(|_| VendorError::BadTimestamp(TIMESTAMP))?;
        delivery.check_fresh(millis.div_euclid(1000))?;
        let mac = STANDARD
            .decode(signature)
            .map_err(|_| VendorError::Mismatch)?;
        keys.get(SIGNING_SECRET).check_mac(
            SIGNING_SECRET,
            &[timestamp.as_bytes(), delivery.body],
            &mac,
        )
    }

    fn notifications(body: &[u8]) -> Result<Vec<Notification>, VendorError> {
        let raw = json_body(body)?;
        let e: WhoopEvent = shape(Self::VENDOR, &raw)?;
        let envelope = Envelope {
            vendor: Self::VENDOR,
            user_id: e.user_id,
            kind: e.kind,
            vendor_event_id: e.trace_id,
            time: None,
        };
        Ok(vec![Notification { envelope, raw }])
    }
}

/// Signs a body the way WHOOP does (tests and load tools).
pub fn sign(secret: &[u8], timestamp_ms: &str, body: &[u8]) -> String {
    STANDARD.encode(super::hmac_sha256(secret, &[timestamp_ms.as_bytes(), body]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_named_by_its_trace_id() {
        let body = br#"{"user_id":10129,"id":"ecfc6a15-4661-442f-a9a4-f160dd7afae8","type":"sleep.updated","trace_id":"d3709ee7","extra":true}"#;
        let n = Whoop::notifications(body).unwrap();
        assert_eq!(n[0].envelope.user_id, "10129");
        assert_eq!(n[0].envelope.vendor_event_id, "d3709ee7");
        assert_eq!(n[0].envelope.kind, "sleep.updated");
        assert!(Whoop::notifications(b"nope").unwrap_err().is_malformed());
    }
}
