//! Standard conditions derived from the phase. `lastTransitionTime` moves only when a
//! condition's status flips, so an unchanged rollout writes an unchanged status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::api::{AurenRuntimeStatus, Phase};

pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const INVALID_SPEC: &str = "InvalidSpec";
pub const UNSAFE_SETTINGS: &str = "UnsafeSettings";

/// Rewrites the three conditions from the status' phase, reason and releases.
pub fn set_conditions(st: &mut AurenRuntimeStatus, generation: i64, now: Timestamp) {
    let reason = st.reason.clone().unwrap_or_else(|| "Unknown".into());
    let message = st.message.clone().unwrap_or_default();
    let available = st.stable.is_some() && !matches!(st.phase, Some(Phase::Degraded));
    let invalid = st.phase == Some(Phase::InvalidSpec);
    let wanted = [
        (
            AVAILABLE,
            available,
            if available {
                "StableServing".to_owned()
            } else {
                reason.clone()
            },
        ),
        (PROGRESSING, st.candidate.is_some(), reason.clone()),
        (
            INVALID_SPEC,
            invalid,
            if invalid {
                reason.clone()
            } else {
                "Valid".into()
            },
        ),
    ];
    for (kind, status, reason) in wanted {
        // Never empty: Kubernetes 1.20 reads "" as null and refuses the status.
        let text = if kind == AVAILABLE && available {
            "the stable release serves".to_owned()
        } else if message.is_empty() {
            reason.clone()
        } else {
            message.clone()
        };
        upsert(
            &mut st.conditions,
            kind,
            status,
            &reason,
            &text,
            generation,
            now,
        );
    }
}

/// The unsafe settings the release runs on purpose (`spec.allowUnsafe`), e.g.
/// `FAULT_ERROR_RATE=0.2 (faults)`: the `UnsafeSettings` condition is True while there is any.
/// Returns the message when the condition now says something it did not say before (worth a
/// Warning Event), `None` when nothing new is allowed.
pub fn set_unsafe_condition(
    st: &mut AurenRuntimeStatus,
    allowed: &[String],
    generation: i64,
    now: Timestamp,
) -> Option<String> {
    let on = !allowed.is_empty();
    let (reason, message) = if on {
        let list = allowed.join(", ");
        let text = format!("unsafe settings run on purpose (spec.allowUnsafe): {list}");
        ("UnsafeSettingsAllowed", text)
    } else {
        ("NoUnsafeSettings", "no unsafe setting is on".to_owned())
    };
    let before = st.conditions.iter().find(|c| c.type_ == UNSAFE_SETTINGS);
    let news = on && before.is_none_or(|c| c.status != "True" || c.message != message);
    upsert(
        &mut st.conditions,
        UNSAFE_SETTINGS,
        on,
        reason,
        &message,
        generation,
        now,
    );
    news.then_some(message)
}

pub(super) fn upsert(
    conditions: &mut Vec<Condition>,
    kind: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: i64,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" };
    let existing = conditions.iter().position(|c| c.type_ == kind);
    let transition = match existing.and_then(|i| conditions.get(i)) {
        Some(old) if old.status == status => old.last_transition_time.clone(),
        _ => Time(now),
    };
    let condition = Condition {
        type_: kind.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        last_transition_time: transition,
        observed_generation: Some(generation),
    };
    match existing.and_then(|i| conditions.get_mut(i)) {
        Some(slot) => *slot = condition,
        None => conditions.push(condition),
    }
}

pub(super) fn remove(conditions: &mut Vec<Condition>, kind: &str) {
    conditions.retain(|c| c.type_ != kind);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RevisionRef;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    fn condition<'a>(st: &'a AurenRuntimeStatus, kind: &str) -> &'a Condition {
        st.conditions.iter().find(|c| c.type_ == kind).unwrap()
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let mut st = AurenRuntimeStatus {
            phase: Some(Phase::Healthy),
            reason: Some("Installed".into()),
            stable: Some(RevisionRef {
                hash: "a".into(),
                image: "i".into(),
            }),
            ..Default::default()
        };
        set_conditions(&mut st, 1, at(100));
        assert_eq!(condition(&st, AVAILABLE).status, "True");
        assert_eq!(condition(&st, PROGRESSING).status, "False");

        st.reason = Some("Other".into());
        set_conditions(&mut st, 2, at(200));
        assert_eq!(
            condition(&st, AVAILABLE).last_transition_time,
            Time(at(100)),
            "same status keeps the time"
        );
        assert_eq!(condition(&st, PROGRESSING).reason, "Other");
        assert_eq!(condition(&st, AVAILABLE).observed_generation, Some(2));

        st.phase = Some(Phase::Degraded);
        set_conditions(&mut st, 2, at(300));
        assert_eq!(condition(&st, AVAILABLE).status, "False");
        assert_eq!(
            condition(&st, AVAILABLE).last_transition_time,
            Time(at(300)),
            "a flip moves the time"
        );
        assert_eq!(st.conditions.len(), 3);
        assert!(
            st.conditions.iter().all(|c| !c.message.is_empty()),
            "Kubernetes 1.20 refuses an empty message"
        );
    }

    #[test]
    fn allowed_unsafe_settings_are_news_once() {
        let mut st = AurenRuntimeStatus::default();
        assert_eq!(set_unsafe_condition(&mut st, &[], 1, at(100)), None);
        assert_eq!(condition(&st, UNSAFE_SETTINGS).status, "False");
        let faults = ["FAULT_ERROR_RATE=0.2 (faults)".to_owned()];
        let news = set_unsafe_condition(&mut st, &faults, 2, at(200)).unwrap();
        assert!(news.contains("FAULT_ERROR_RATE=0.2"), "{news}");
        let on = condition(&st, UNSAFE_SETTINGS);
        assert_eq!(
            (on.status.as_str(), on.reason.as_str()),
            ("True", "UnsafeSettingsAllowed")
        );
        assert_eq!(
            set_unsafe_condition(&mut st, &faults, 2, at(300)),
            None,
            "said once"
        );
        assert_eq!(
            condition(&st, UNSAFE_SETTINGS).last_transition_time,
            Time(at(200))
        );
        let more = ["FAULT_ERROR_RATE=0.5 (faults)".to_owned()];
        assert!(
            set_unsafe_condition(&mut st, &more, 3, at(400)).is_some(),
            "a new value is news"
        );
        assert_eq!(set_unsafe_condition(&mut st, &[], 4, at(500)), None);
        assert_eq!(condition(&st, UNSAFE_SETTINGS).status, "False");
    }
}
