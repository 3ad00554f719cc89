//! Human controls that never touch Git-owned fields: annotations whose value the operator
//! acknowledges in status. Setting `auren.io/promote` to a new value (a timestamp, a counter)
//! promotes once; the same value again does nothing.

use std::collections::BTreeMap;

use crate::api::Controls;

pub const PROMOTE: &str = "auren.io/promote";
pub const ABORT: &str = "auren.io/abort";
pub const RETRY: &str = "auren.io/retry";

/// A control requested and not yet acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Promote,
    Abort,
    Retry,
}

impl Control {
    pub fn annotation(self) -> &'static str {
        match self {
            Control::Promote => PROMOTE,
            Control::Abort => ABORT,
            Control::Retry => RETRY,
        }
    }
}

/// The controls requested now, in the order they are acted on (abort wins over promote), and
/// the acknowledgements to write.
pub fn pending(
    annotations: &BTreeMap<String, String>,
    acked: &Controls,
) -> (Vec<Control>, Controls) {
    let mut next = acked.clone();
    let mut requested = Vec::new();
    let slots: [(Control, &mut Option<String>); 3] = [
        (Control::Abort, &mut next.abort),
        (Control::Retry, &mut next.retry),
        (Control::Promote, &mut next.promote),
    ];
    for (control, slot) in slots {
        let value = annotations.get(control.annotation());
        if value.is_some() && value != slot.as_ref() {
            requested.push(control);
            *slot = value.cloned();
        }
    }
    (requested, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn new_values_are_pending_once() {
        let acked = Controls {
            promote: Some("1".into()),
            ..Default::default()
        };
        let cases: Vec<(&str, BTreeMap<String, String>, Vec<Control>)> = vec![
            ("nothing", annotations(&[]), vec![]),
            (
                "already acknowledged",
                annotations(&[(PROMOTE, "1")]),
                vec![],
            ),
            (
                "new promote",
                annotations(&[(PROMOTE, "2")]),
                vec![Control::Promote],
            ),
            (
                "abort first",
                annotations(&[(PROMOTE, "2"), (ABORT, "x")]),
                vec![Control::Abort, Control::Promote],
            ),
            (
                "retry",
                annotations(&[(RETRY, "now")]),
                vec![Control::Retry],
            ),
        ];
        for (name, given, expected) in cases {
            let (requested, next) = pending(&given, &acked);
            assert_eq!(requested, expected, "{name}");
            let (again, _) = pending(&given, &next);
            assert!(
                again.is_empty(),
                "{name}: acknowledged values are not pending again"
            );
        }
    }
}
