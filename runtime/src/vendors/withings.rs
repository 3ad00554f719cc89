//! Withings Notify. The callback URL is checked with a HEAD request (answered 200), then each
//! notification is a form-encoded POST of `userid`, `appli` (the data category), `startdate`
//! and `enddate` (unix seconds). Withings signs nothing: the URL carries a secret path token
//! (`/vendors/withings/{token}`).

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{
    Delivery, Envelope, Notification, Vendor, VendorError, VendorFormat, VendorKeys, shape,
};

/// The secret path token of the callback URL given to Withings.
pub const PATH_TOKEN: &str = "vendor_withings";

pub struct Withings;

#[derive(Deserialize)]
struct WithingsNotification {
    userid: String,
    appli: String,
    startdate: Option<String>,
    enddate: Option<String>,
}

impl VendorFormat for Withings {
    const VENDOR: Vendor = Vendor::Withings;

    fn verify(delivery: &Delivery<'_>, keys: &VendorKeys) -> Result<(), VendorError> {
        let token = delivery.path_token.unwrap_or_default();
        keys.get(PATH_TOKEN)
            .check_token(PATH_TOKEN, token.as_bytes())
    }

    fn notifications(body: &[u8]) -> Result<Vec<Notification>, VendorError> {
        let raw = form_fields(body)?;
        let n: WithingsNotification = shape(Self::VENDOR, &raw)?;
        let start = n.startdate.as_deref().unwrap_or("");
        let end = n.enddate.as_deref().unwrap_or("");
        let envelope = Envelope {
            vendor: Self::VENDOR,
            vendor_event_id: format!("{}:{}:{start}:{end}", n.userid, n.appli),
            kind: category(&n.appli),
            time: start
                .parse()
                .ok()
                .and_then(|t| chrono::DateTime::from_timestamp(t, 0)),
            user_id: n.userid,
        };
        Ok(vec![Notification { envelope, raw }])
    }
}

/// The form's fields as a JSON object of strings (what is stored as the raw notification).
fn form_fields(body: &[u8]) -> Result<Value, VendorError> {
    if std::str::from_utf8(body).is_err() {
        return Err(VendorError::Malformed {
            format: "form data",
            reason: "not UTF-8".into(),
        });
    }
    let fields: Map<String, Value> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect();
    Ok(Value::Object(fields))
}

/// Withings' `appli` codes by name; others keep their number.
fn category(appli: &str) -> String {
    let name = match appli {
        "1" => "weight",
        "2" => "temperature",
        "4" => "pressure",
        "16" => "activity",
        "44" => "sleep",
        "50" => "bed_in",
        "51" => "bed_out",
        "54" => "ecg",
        "58" => "glucose",
        other => return format!("appli_{other}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_notification_becomes_one_event() {
        let n = Withings::notifications(
            b"userid=123&appli=44&startdate=1795000000&enddate=1795030000&extra=x",
        )
        .unwrap();
        assert_eq!(n[0].envelope.kind, "sleep");
        assert_eq!(
            n[0].envelope.vendor_event_id,
            "123:44:1795000000:1795030000"
        );
        assert_eq!(n[0].raw["extra"], "x");
        assert!(n[0].envelope.time.is_some());
        assert!(matches!(
            Withings::notifications(b"appli=1"),
            Err(VendorError::WrongShape { .. })
        ));
        assert_eq!(category("99"), "appli_99");
    }
}
