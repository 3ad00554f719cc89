//! Google Health API (the successor of Fitbit's Web API) webhooks. Creating a subscriber sends
//! two `{"type":"verification"}` POSTs: one with the `Authorization` value we chose
//! (`endpointAuthorization.secret`), to be answered 201, one without it, to be answered 401.
//! Notifications are a JSON array of 1 to 99 `{"data": {healthUserId, operation, dataType,
//! intervals, ...}}`, sent with that `Authorization` value.
//!
//! Not verified here: the `X-HEALTHAPI-SIGNATURE` ECDSA P-256 signature (no ECDSA crate in
//! the workspace yet); the `Authorization` value, compared in constant time, is what proves
//! the sender.

use serde::Deserialize;
use serde_json::Value;

use super::{
    Delivery, Envelope, Notification, Vendor, VendorError, VendorFormat, VendorKeys,
    content_digest, json_body, rfc3339, shape,
};

/// The exact `Authorization` value given as `endpointAuthorization.secret`.
pub const AUTHORIZATION: &str = "vendor_google_health";

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
            .check_token(AUTHORIZATION, presented.as_bytes())
    }

    fn notifications(body: &[u8]) -> Result<Vec<Notification>, VendorError> {
        let Value::Array(items) = json_body(body)? else {
            return Err(wrong_shape("the body must be an array of notifications"));
        };
        items.into_iter().map(notification).collect()
    }
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
