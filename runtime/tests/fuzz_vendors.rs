#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test-only code
//! Property-based fuzzing of the vendors' readers (`vendors::*::notifications`): whatever the
//! body, a reader never panics, refuses only as a body error (400 or 422, never 401 or 5xx),
//! and what it accepts becomes events or a clear 422, never a panic.

use auren_runtime::vendors::garmin::Garmin;
use auren_runtime::vendors::google_health::GoogleHealth;
use auren_runtime::vendors::oura::Oura;
use auren_runtime::vendors::polar::Polar;
use auren_runtime::vendors::whoop::Whoop;
use auren_runtime::vendors::withings::Withings;
use auren_runtime::vendors::{Notification, VendorError, VendorFormat};
use proptest::prelude::*;

fn read<V: VendorFormat>(body: &[u8]) -> Result<(), TestCaseError> {
    match V::notifications(body) {
        Ok(notifications) => events(notifications),
        Err(e) => body_error(&e),
    }
}

fn events(notifications: Vec<Notification>) -> Result<(), TestCaseError> {
    for n in notifications {
        if let Err(e) = n.into_event(chrono::Utc::now()) {
            body_error(&e)?;
        }
    }
    Ok(())
}

fn body_error(e: &VendorError) -> Result<(), TestCaseError> {
    prop_assert!(
        !e.is_unauthorized(),
        "a body error read as a credential error: {e}"
    );
    Ok(())
}

fn read_all(body: &[u8]) -> Result<(), TestCaseError> {
    read::<Oura>(body)?;
    read::<Whoop>(body)?;
    read::<Garmin>(body)?;
    read::<Polar>(body)?;
    read::<Withings>(body)?;
    read::<GoogleHealth>(body)
}

/// JSON biased towards the vendors' field names, so that shapes are hit.
fn vendor_json() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "user_id",
        "userId",
        "userid",
        "id",
        "type",
        "trace_id",
        "event",
        "event_type",
        "data_type",
        "object_id",
        "event_time",
        "entity_id",
        "timestamp",
        "summaryId",
        "dailies",
        "sleeps",
        "data",
        "healthUserId",
        "dataType",
        "operation",
        "intervals",
    ]);
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<bool>().prop_map(serde_json::Value::from),
        ".{0,10}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(key.clone().prop_map(String::from), inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
    .prop_map(|v| v.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_are_read_or_refused_as_body_errors(body in prop::collection::vec(any::<u8>(), 0..256)) {
        read_all(&body)?;
    }

    #[test]
    fn arbitrary_json_in_the_vendors_words_is_read_or_refused_as_body_errors(body in vendor_json()) {
        read_all(body.as_bytes())?;
    }

    #[test]
    fn arbitrary_forms_are_read_or_refused_as_body_errors(
        fields in prop::collection::vec((prop::sample::select(vec!["userid", "appli", "startdate", "enddate", "x"]), ".{0,12}"), 0..6)
    ) {
        let body: String = fields.iter().map(|(k, v)| format!("{k}={v}&")).collect();
        read::<Withings>(body.as_bytes())?;
    }
}
