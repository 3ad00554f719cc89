//! Time arithmetic the decision and the rendering share.

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// `at + duration`, saturating at the far future.
pub(super) fn plus(at: Timestamp, duration: Duration) -> Timestamp {
    let signed = SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX);
    at.checked_add(signed).unwrap_or(Timestamp::MAX)
}
