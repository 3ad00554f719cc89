//! Google Health API (the successor of Fitbit's Web API) webhooks. Creating a subscriber sends
//! two `{"type":"verification"}` POSTs: one with the `Authorization` value we chose
//! (`endpointAuthorization.secret`), to be answered 201, one without it, to be answered 401.
//! Notifications are a JSON array of 1 to 99 `{"data": {healthUserId, operation, dataType,
//! intervals, ...}}`, sent with that `Authorization` value.
//!
//! Every request also carries `X-HEALTHAPI-SIGNATURE`, an ECDSA P-256 signature of the JSON
//! payload. Google documents it but publishes no public key that we know of, so the key is
//! configuration: with `vendor_google_health_public_key` (PEM, SPKI) set, the signature is
//! required and checked over the raw body (SHA-256; base64 of the DER or the 64-byte r‖s form),
//! beside the `Authorization` value; without it, the `Authorization` value, compared in
//! constant time, is what proves the sender.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;
use serde::Deserialize;
use serde_json::Value;

use super::{
    Delivery, Envelope, Keys, Notification, Vendor, VendorError, VendorFormat, VendorKeys,
    content_digest, json_body, rfc3339, shape,
};

/// The exact `Authorization` value given as `endpointAuthorization.secret`.
pub const AUTHORIZATION: &str = "vendor_google_health";
/// The public key (PEM) `X-HEALTHAPI-SIGNATURE` is checked against, when configured.
pub const PUBLIC_KEY: &str = "vendor_google_health_public_key";
const SIGNATURE: &str = "x-healthapi-signature";

pub struct GoogleHealth;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Change {
    health_user_id: String,
    data_type: String,
    operation: Option<String>,
    #[serde(default)]
    intervals: Vec<Interval>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Interval {
    physical_time_interval: Option<PhysicalInterval>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PhysicalInterval {
    start_time: Option<String>,
}

#[derive(Deserialize)]
struct Kind {
    #[serde(rename = "type")]
    kind: Option<String>,
}

impl VendorFormat for GoogleHealth {
    const VENDOR: Vendor = Vendor::GoogleHealth;

    fn verify(delivery: &Delivery<'_>, keys: &VendorKeys) -> Result<(), VendorError> {
        let presented = delivery.header("authorization")?;
        keys.get(AUTHORIZATION)
            .check_token(AUTHORIZATION, presented.as_bytes())?;
        check_signature(delivery, keys.get(PUBLIC_KEY))
    }

    fn notifications(body: &[u8]) -> Result<Vec<Notification>, VendorError> {
        let Value::Array(items) = json_body(body)? else {
            return Err(wrong_shape("the body must be an array of notifications"));
        };
        items.into_iter().map(notification).collect()
    }
}

/// With public keys configured, `X-HEALTHAPI-SIGNATURE` must be one of them's signature of the
/// raw body; with none, nothing is checked here.
fn check_signature(delivery: &Delivery<'_>, public_keys: &Keys) -> Result<(), VendorError> {
    if public_keys.is_empty() {
        return Ok(());
    }
    let signature = signature(delivery.header(SIGNATURE)?).ok_or(VendorError::Mismatch)?;
    let signed = public_keys
        .values()
        .filter_map(public_key)
        .any(|key| key.verify(delivery.body, &signature).is_ok());
    signed.then_some(()).ok_or(VendorError::Mismatch)
}

/// A P-256 public key from its PEM (SubjectPublicKeyInfo) form.
pub fn public_key(pem: &[u8]) -> Option<VerifyingKey> {
    VerifyingKey::from_public_key_pem(std::str::from_utf8(pem).ok()?.trim()).ok()
}

/// The header's signature: base64 (standard or URL-safe) of its DER or its 64-byte r‖s form.
fn signature(header: &str) -> Option<Signature> {
    let bytes = STANDARD
        .decode(header)
        .or_else(|_| URL_SAFE_NO_PAD.decode(header.trim_end_matches('=')))
        .ok()?;
    Signature::from_der(&bytes)
        .or_else(|_| Signature::from_slice(&bytes))
        .ok()
}

/// One data change; it carries no id, so it is named by its content (a retry is identical).
fn notification(raw: Value) -> Result<Notification, VendorError> {
    let data = raw
        .get("data")
        .ok_or_else(|| wrong_shape("a notification has a data object"))?;
    let change: Change = shape(Vendor::GoogleHealth, data)?;
    let operation = change.operation.as_deref().unwrap_or("UPSERT");
    let start = change
        .intervals
        .iter()
        .find_map(|i| i.physical_time_interval.as_ref()?.start_time.as_deref());
    let envelope = Envelope {
        vendor: Vendor::GoogleHealth,
        vendor_event_id: format!(
            "{}:{}:{operation}:{}",
            change.health_user_id,
            change.data_type,
            content_digest(data)
        ),
        kind: format!("{}.{}", change.data_type, operation.to_ascii_lowercase()),
        time: rfc3339(start),
        user_id: change.health_user_id,
    };
    Ok(Notification { envelope, raw })
}

/// The subscriber verification POST (answered 201 once authorized); it stores nothing.
pub fn is_verification(body: &[u8]) -> bool {
    serde_json::from_slice::<Kind>(body).is_ok_and(|k| k.kind.as_deref() == Some("verification"))
}

fn wrong_shape(reason: &str) -> VendorError {
    VendorError::WrongShape {
        vendor: Vendor::GoogleHealth.as_str(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_array_of_changes_and_the_verification_post() {
        assert!(is_verification(br#"{"type":"verification"}"#));
        assert!(!is_verification(br#"[{"data":{}}]"#));
        let body = br#"[{"data":{"version":"1","healthUserId":"h1","operation":"UPSERT","dataType":"steps","intervals":[{"physicalTimeInterval":{"startTime":"2026-12-01T01:29:00Z","endTime":"2026-12-01T01:34:00Z"}}]}},{"data":{"healthUserId":"h1","operation":"DELETE","dataType":"sleep"}}]"#;
        let n = GoogleHealth::notifications(body).unwrap();
        assert_eq!(n.len(), 2);
        assert_eq!(n[0].envelope.kind, "steps.upsert");
        assert!(n[0].envelope.time.is_some());
        assert_eq!(n[1].envelope.kind, "sleep.delete");
        assert!(GoogleHealth::notifications(br#"{"data":{}}"#).is_err());
    }
}
