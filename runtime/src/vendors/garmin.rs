//! Garmin Health API push: a body keyed by summary type (`dailies`, `sleeps`, `epochs`,
//! `activities`, `bodyComps`, `stressDetails`, `userMetrics`, `pulseox`, `respiration`,
//! `healthSnapshot`, `hrv`, ...), each an array of summaries with `userId`, `summaryId` and
//! the values themselves. Garmin signs nothing: the URL carries a secret path token
//! (`/vendors/garmin/{token}`). Bodies can be large (at least 10 MB is accepted); the
//! answer is 200.

use serde::Deserialize;
use serde_json::Value;

use super::{
    Delivery, Envelope, Notification, Vendor, VendorError, VendorFormat, VendorKeys,
    content_digest, json_body, shape,
};

/// The secret path token registered in Garmin's endpoint configuration.
pub const PATH_TOKEN: &str = "vendor_garmin";

/// The largest push body accepted, beside `MAX_BODY_BYTES` (Garmin's pushes reach 10 MB).
pub const MAX_PUSH_BYTES: u64 = 16 * 1024 * 1024;

pub struct Garmin;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    #[serde(deserialize_with = "super::deserialize_id")]
    user_id: String,
    summary_id: Option<String>,
    start_time_in_seconds: Option<i64>,
}

impl VendorFormat for Garmin {
    const VENDOR: Vendor = Vendor::Garmin;

    fn verify(delivery: &Delivery<'_>, keys: &VendorKeys) -> Result<(), VendorError> {
        let token = delivery.path_token.unwrap_or_default();
        keys.get(PATH_TOKEN)
            .check_token(PATH_TOKEN, token.as_bytes())
    }

    fn notifications(body: &[u8]) -> Result<Vec<Notification>, VendorError> {
        let Value::Object(push) = json_body(body)? else {
            return Err(wrong_shape(
                "the body must be an object keyed by summary type",
            ));
        };
        let mut notifications = Vec::new();
        for (kind, summaries) in push {
            let Value::Array(summaries) = summaries else {
                return Err(wrong_shape(&format!(
                    "{kind} must be an array of summaries"
                )));
            };
            for raw in summaries {
                notifications.push(summary(&kind, raw)?);
            }
        }
        Ok(notifications)
    }
}

/// One summary, named by its type, `summaryId` and content: Garmin re-sends a summary with
/// updated values under the same `summaryId`, and that update must not be taken for a retry.
fn summary(kind: &str, raw: Value) -> Result<Notification, VendorError> {
    let s: Summary = shape(Vendor::Garmin, &raw)?;
    let vendor_event_id = format!(
        "{kind}:{}:{}",
        s.summary_id.as_deref().unwrap_or("-"),
        content_digest(&raw)
    );
    let envelope = Envelope {
        vendor: Vendor::Garmin,
        user_id: s.user_id,
        kind: kind.to_string(),
        vendor_event_id,
        time: s
            .start_time_in_seconds
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0)),
    };
    Ok(Notification { envelope, raw })
}

fn wrong_shape(reason: &str) -> VendorError {
    VendorError::WrongShape {
        vendor: Vendor::Garmin.as_str(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_notification_per_summary() {
        let body = br#"{"dailies":[{"userId":"g1","summaryId":"s1","startTimeInSeconds":1795000000,"steps":10},{"userId":"g1","summaryId":"s2","steps":5}],"sleeps":[{"userId":"g2","summaryId":"s3"}]}"#;
        let n = Garmin::notifications(body).unwrap();
        let kinds: Vec<_> = n.iter().map(|n| n.envelope.kind.as_str()).collect();
        assert_eq!(kinds, ["dailies", "dailies", "sleeps"]);
        assert_eq!(n[0].raw["steps"], 10);
        assert!(n[0].envelope.time.is_some());
        let updated = br#"{"dailies":[{"userId":"g1","summaryId":"s1","startTimeInSeconds":1795000000,"steps":11}]}"#;
        let u = Garmin::notifications(updated).unwrap();
        assert_ne!(u[0].event_id(), n[0].event_id(), "an update is a new event");
        assert!(Garmin::notifications(br#"{"dailies":{}}"#).is_err());
        assert!(Garmin::notifications(br#"[]"#).is_err());
    }
}
