//! Pod conditions and phase (pure).
//!
//! The agent owns `PodScheduled`, `Initialized`, `ContainersReady` and `Ready`.
//! Any other condition (e.g. a readiness gate written by a controller) is kept
//! untouched. `Ready` is true only when the containers are ready AND every
//! `spec.readinessGates[].conditionType` is a condition with status `True`.

use k8s_openapi::api::core::v1::{PodCondition, PodReadinessGate};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub const OWNED: [&str; 4] = ["PodScheduled", "Initialized", "ContainersReady", "Ready"];

/// True when every readiness gate has a `True` condition in `conditions`.
pub fn gates_satisfied(gates: &[PodReadinessGate], conditions: &[PodCondition]) -> bool {
    gates.iter().all(|g| {
        conditions
            .iter()
            .any(|c| c.type_ == g.condition_type && c.status == "True")
    })
}

/// The four owned conditions; `lastTransitionTime` is kept while a status does not change.
pub fn owned_conditions(
    existing: &[PodCondition],
    containers_ready: bool,
    gates: &[PodReadinessGate],
    now: &Time,
) -> Vec<PodCondition> {
    let gates_ok = gates_satisfied(gates, existing);
    let ready_reason = match (containers_ready, gates_ok) {
        (true, true) => None,
        (false, _) => Some("ContainersNotReady"),
        (true, false) => Some("ReadinessGatesNotReady"),
    };
    vec![
        condition(existing, "PodScheduled", true, None, now),
        condition(existing, "Initialized", true, None, now),
        condition(
            existing,
            "ContainersReady",
            containers_ready,
            (!containers_ready).then_some("ContainersNotReady"),
            now,
        ),
        condition(existing, "Ready", ready_reason.is_none(), ready_reason, now),
    ]
}

fn condition(
    existing: &[PodCondition],
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    now: &Time,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let previous = existing.iter().find(|c| c.type_ == type_);
    let transition = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Some(now.clone()),
    };
    PodCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.map(str::to_owned),
        last_transition_time: transition,
        ..PodCondition::default()
    }
}

/// `existing` with each `owned` condition replacing the one of its type; others are kept in order.
pub fn merge_conditions(existing: &[PodCondition], owned: &[PodCondition]) -> Vec<PodCondition> {
    let mut out: Vec<PodCondition> = existing
        .iter()
        .map(|c| {
            owned
                .iter()
                .find(|o| o.type_ == c.type_)
                .unwrap_or(c)
                .clone()
        })
        .collect();
    for o in owned {
        if !out.iter().any(|c| c.type_ == o.type_) {
            out.push(o.clone());
        }
    }
    out
}

/// What the phase computation needs to know about one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerView {
    pub ever_started: bool,
    pub running: bool,
    /// Terminated for good (no restart will follow), with its exit code.
    pub finished: Option<i32>,
}

/// Pod phase from its containers, like a kubelet.
pub fn phase(containers: &[ContainerView]) -> &'static str {
    if !containers.is_empty() && containers.iter().all(|c| c.finished.is_some()) {
        return if containers.iter().all(|c| c.finished == Some(0)) {
            "Succeeded"
        } else {
            "Failed"
        };
    }
    if containers.iter().all(|c| c.ever_started || c.running) && !containers.is_empty() {
        "Running"
    } else {
        "Pending"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn t(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    fn cond(type_: &str, status: &str, at: i64) -> PodCondition {
        PodCondition {
            type_: type_.into(),
            status: status.into(),
            last_transition_time: Some(t(at)),
            ..Default::default()
        }
    }

    fn gate(name: &str) -> PodReadinessGate {
        PodReadinessGate {
            condition_type: name.into(),
        }
    }

    fn ready(conds: &[PodCondition]) -> &str {
        &conds.iter().find(|c| c.type_ == "Ready").unwrap().status
    }

    #[test]
    fn ready_needs_containers_and_gates() {
        let gates = [gate("example.com/lb")];
        let none: Vec<PodCondition> = vec![];
        assert_eq!(ready(&owned_conditions(&none, true, &[], &t(1))), "True");
        assert_eq!(ready(&owned_conditions(&none, false, &[], &t(1))), "False");
        let c = owned_conditions(&none, true, &gates, &t(1));
        assert_eq!(ready(&c), "False");
        assert_eq!(c[3].reason.as_deref(), Some("ReadinessGatesNotReady"));
        let with_gate = [cond("example.com/lb", "True", 0)];
        assert_eq!(
            ready(&owned_conditions(&with_gate, true, &gates, &t(1))),
            "True"
        );
        let false_gate = [cond("example.com/lb", "False", 0)];
        assert_eq!(
            ready(&owned_conditions(&false_gate, true, &gates, &t(1))),
            "False"
        );
    }

    #[test]
    fn transition_time_kept_while_status_unchanged() {
        let existing = [cond("Ready", "True", 5), cond("ContainersReady", "True", 5)];
        let c = owned_conditions(&existing, true, &[], &t(9));
        assert_eq!(c[3].last_transition_time, Some(t(5)));
        let c = owned_conditions(&existing, false, &[], &t(9));
        assert_eq!(c[3].last_transition_time, Some(t(9)));
        assert_eq!(c[2].last_transition_time, Some(t(9)));
    }

    #[test]
    fn merge_keeps_foreign_conditions() {
        let existing = [cond("example.com/lb", "True", 1), cond("Ready", "False", 1)];
        let owned = owned_conditions(&existing, true, &[gate("example.com/lb")], &t(2));
        let merged = merge_conditions(&existing, &owned);
        assert_eq!(merged.len(), 5);
        assert_eq!(merged[0].type_, "example.com/lb");
        assert_eq!(merged[0].status, "True");
        assert_eq!(ready(&merged), "True");
    }

    #[test]
    fn phases() {
        let running = ContainerView {
            ever_started: true,
            running: true,
            finished: None,
        };
        let waiting = ContainerView {
            ever_started: false,
            running: false,
            finished: None,
        };
        let crashed = ContainerView {
            ever_started: true,
            running: false,
            finished: None,
        };
        let ok = ContainerView {
            ever_started: true,
            running: false,
            finished: Some(0),
        };
        let bad = ContainerView {
            ever_started: true,
            running: false,
            finished: Some(2),
        };
        assert_eq!(phase(&[running, waiting]), "Pending");
        assert_eq!(phase(&[running, crashed]), "Running");
        assert_eq!(phase(&[ok, ok]), "Succeeded");
        assert_eq!(phase(&[ok, bad]), "Failed");
        assert_eq!(phase(&[ok, running]), "Running");
        assert_eq!(phase(&[]), "Pending");
    }
}
