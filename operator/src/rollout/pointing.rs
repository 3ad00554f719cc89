//! The consumer autoscaler's pointing, a side step: the controller patches the autoscaler
//! after the Services and the status are written, then folds the outcome in here. Only a
//! pointing that succeeded is recorded (`status.consumerAutoscaler`), so one that failed is
//! asked for again by the next decision and one that succeeded is never sent twice; the
//! `AutoscalerPointed` condition says how the last attempt went.

use k8s_openapi::jiff::Timestamp;

use crate::api::{AurenRuntimeSpec, AurenRuntimeStatus};

use super::conditions::{remove, upsert};

pub const AUTOSCALER_POINTED: &str = "AutoscalerPointed";

/// What `status.consumerAutoscaler` records once `spec.consumer.autoscaler` points at the
/// consumer Deployment of `revision`: `<kind>/<name> -> <revision>`.
pub fn autoscaler_record(spec: &AurenRuntimeSpec, revision: &str) -> Option<String> {
    let autoscaler = spec.consumer.autoscaler.as_ref()?;
    Some(format!(
        "{:?}/{} -> {revision}",
        autoscaler.kind, autoscaler.name
    ))
}

/// Folds the outcome of pointing the autoscaler at `revision`'s consumers into `st`: on
/// success the record and a True condition; on failure the record stays as it was (so the
/// pointing is asked for again) and the condition is False with the error.
pub fn record_pointing(
    st: &mut AurenRuntimeStatus,
    spec: &AurenRuntimeSpec,
    revision: &str,
    outcome: Result<(), String>,
    generation: i64,
    now: Timestamp,
) {
    let Some(record) = autoscaler_record(spec, revision) else {
        return;
    };
    let (pointed, reason, message) = match outcome {
        Ok(()) => {
            st.consumer_autoscaler = Some(record.clone());
            (
                true,
                "Pointed",
                format!("{record} (its consumer Deployment)"),
            )
        }
        Err(error) => (false, "AutoscalerNotPointed", error),
    };
    let conditions = &mut st.conditions;
    upsert(
        conditions,
        AUTOSCALER_POINTED,
        pointed,
        reason,
        &message,
        generation,
        now,
    );
}

/// Without `spec.consumer.autoscaler` nothing is pointed: no record, no condition.
pub fn forget_unconfigured(st: &mut AurenRuntimeStatus, spec: &AurenRuntimeSpec) {
    if spec.consumer.autoscaler.is_none() {
        st.consumer_autoscaler = None;
        remove(&mut st.conditions, AUTOSCALER_POINTED);
    }
}
