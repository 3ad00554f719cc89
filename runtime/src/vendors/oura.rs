//! Oura API v2 webhooks. The subscription's callback URL is verified by a GET carrying
//! `verification_token` (ours) and `challenge`, answered `{"challenge": ...}`. Each delivery
//! is one event `{event_type, data_type, object_id, event_time, user_id}`, signed with
//! `x-oura-signature`: uppercase hex HMAC-SHA256, under the app's client secret, of the
//! `x-oura-timestamp` value followed by the body.

use serde::Deserialize;

use super::{
    Delivery, Envelope, Notification, Vendor, VendorError, VendorFormat, VendorKeys, json_body,
    rfc3339, shape,
};

/// The app's client secret, which signs the deliveries.
pub const SIGNING_SECRET: &str = "vendor_oura";
/// The `verification_token` given when the subscription was created.
pub const VERIFICATION_TOKEN: &str = "vendor_oura_verification_token";

const SIGNATURE: &str = "x-oura-signature";
const TIMESTAMP: &str = "x-oura-timestamp";

pub struct Oura;

#[derive(Deserialize)]
struct OuraEvent {
    event_type: String,
    data_type: String,
    #[serde(deserialize_with = "super::deserialize_id")]
    object_id: String,
    event_time: Option<String>,
    #[serde(deserialize_with = "super::deserialize_id")]
    user_id: String,
}

impl VendorFormat for Oura {
    const VENDOR: Vendor = Vendor::Oura;

    fn verify(delivery: &Delivery<'_>, keys: &VendorKeys) -> Result<(), VendorError> {
        let timestamp = delivery.header(TIMESTAMP)?;
        let signature = delivery.header(SIGNATURE)?;
        delivery.check_fresh(sent_at(timestamp)?)?;
        let mac = hex::decode(signature).map_err(|_| VendorError::Mismatch)?;
        keys.get(SIGNING_SECRET).check_mac(
            SIGNING_SECRET,
            &[timestamp.as_bytes(), delivery.body],
            &mac,
        )
    }

    fn notifications(body: &[u8]) -> Result<Vec<Notification>, VendorError> {
        let raw = json_body(body)?;
        let e: OuraEvent = shape(Self::VENDOR, &raw)?;
        let time = rfc3339(e.event_time.as_deref());
        // The event time is part of the id: a later update of the same object is a new
        // notification, a retry of this one is not.
        let vendor_event_id = format!(
            "{}:{}:{}:{}",
            e.data_type,
            e.object_id,
            e.event_type,
            e.event_time.as_deref().unwrap_or("")
        );
        let envelope = Envelope {
            vendor: Self::VENDOR,
            user_id: e.user_id,
            kind: format!("{}.{}", e.data_type, e.event_type),
            vendor_event_id,
            time,
        };
        Ok(vec![Notification { envelope, raw }])
    }
}

/// `x-oura-timestamp`: unix seconds (or milliseconds), or an RFC 3339 time.
fn sent_at(timestamp: &str) -> Result<i64, VendorError> {
    if let Ok(n) = timestamp.parse::<i64>() {
        return Ok(if n > 100_000_000_000 { n / 1000 } else { n });
    }
    rfc3339(Some(timestamp))
        .map(|t| t.timestamp())
        .ok_or(VendorError::BadTimestamp(TIMESTAMP))
}

/// The URL check: the challenge when the token is the one we registered.
pub fn answer_challenge(
    keys: &VendorKeys,
    verification_token: &str,
    challenge: &str,
) -> Result<serde_json::Value, VendorError> {
    keys.get(VERIFICATION_TOKEN)
        .check_token(VERIFICATION_TOKEN, verification_token.as_bytes())?;
    Ok(serde_json::json!({ "challenge": challenge }))
}

/// Signs a body the way Oura does (tests and load tools).
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    hex::encode_upper(super::hmac_sha256(secret, &[timestamp.as_bytes(), body]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_keeps_unknown_fields_and_names_what_changed() {
        let body = br#"{"event_type":"update","data_type":"sleep","object_id":"o-1","event_time":"2026-12-01T08:00:00+00:00","user_id":"u-9","new_field":[1]}"#;
        let n = Oura::notifications(body).unwrap();
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].envelope.kind, "sleep.update");
        assert_eq!(n[0].envelope.user_id, "u-9");
        assert_eq!(n[0].raw["new_field"], serde_json::json!([1]));
        assert!(matches!(
            Oura::notifications(br#"{"event_type":"update"}"#),
            Err(VendorError::WrongShape { .. })
        ));
    }

    #[test]
    fn timestamps_in_seconds_milliseconds_or_rfc3339() {
        assert_eq!(sent_at("1795000000"), Ok(1_795_000_000));
        assert_eq!(sent_at("1795000000123"), Ok(1_795_000_000));
        assert_eq!(sent_at("2026-11-18T11:06:40Z"), Ok(1_795_000_000));
        assert_eq!(sent_at("soon"), Err(VendorError::BadTimestamp(TIMESTAMP)));
    }
}
