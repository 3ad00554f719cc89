//! Which status changes people are told about outside the cluster: every phase change, and
//! every release promoted or rolled back (a rollback can end in the phase it began in, when a
//! new candidate fails in the decision that started it). Derived from the status alone, so a
//! notice exists exactly when the status that records it is written.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{AurenRuntimeStatus, Outcome, Phase, ReleaseRecord, RevisionRef};

/// What happened, most telling first: a rollback, a promotion, else a phase change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    RolledBack,
    Promoted,
    PhaseChanged,
}

impl NoticeKind {
    /// The CloudEvents `type`.
    pub fn event_type(self) -> &'static str {
        match self {
            NoticeKind::RolledBack => "io.auren.rollout.rolledback",
            NoticeKind::Promoted => "io.auren.rollout.promoted",
            NoticeKind::PhaseChanged => "io.auren.rollout.phasechanged",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::RolledBack => "RolledBack",
            NoticeKind::Promoted => "Promoted",
            NoticeKind::PhaseChanged => "PhaseChanged",
        }
    }
}

/// One notification to send, before it is addressed and rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub kind: NoticeKind,
    pub phase: Phase,
    pub previous_phase: Option<Phase>,
    pub reason: String,
    pub message: String,
    /// The release promoted or rolled back; for a phase change the candidate (else stable).
    pub release: Option<RevisionRef>,
    pub stable: Option<RevisionRef>,
    /// When it happened: the release record's time, else when the phase began.
    pub at: Time,
}

/// The notice for the change from `old` to `new`, if it is one people are told about.
pub fn notice(old: &AurenRuntimeStatus, new: &AurenRuntimeStatus) -> Option<Notice> {
    let phase = new.phase?;
    let decided = decided_release(old, new);
    let kind = match decided.map(|r| r.outcome) {
        Some(Outcome::RolledBack) => NoticeKind::RolledBack,
        Some(Outcome::Promoted) => NoticeKind::Promoted,
        _ if old.phase != new.phase => NoticeKind::PhaseChanged,
        _ => return None,
    };
    let release = match decided {
        Some(r) => Some(RevisionRef {
            hash: r.hash.clone(),
            image: r.image.clone(),
        }),
        None => new.candidate.clone().or_else(|| new.stable.clone()),
    };
    let at = decided
        .map(|r| r.at.clone())
        .or_else(|| new.phase_since.clone())?;
    Some(Notice {
        kind,
        phase,
        previous_phase: old.phase,
        reason: new.reason.clone().unwrap_or_default(),
        message: new.message.clone().unwrap_or_default(),
        release,
        stable: new.stable.clone(),
        at,
    })
}

/// The newest release record this change added that promoted or rolled back a release
/// (a rollback wins over a promotion in the same change).
fn decided_release<'a>(
    old: &AurenRuntimeStatus,
    new: &'a AurenRuntimeStatus,
) -> Option<&'a ReleaseRecord> {
    let fresh = || new.history.iter().filter(|r| !old.history.contains(r));
    let rolled_back = fresh().rfind(|r| r.outcome == Outcome::RolledBack);
    rolled_back.or_else(|| fresh().rfind(|r| r.outcome == Outcome::Promoted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(second).unwrap())
    }

    fn release(hash: &str) -> RevisionRef {
        RevisionRef {
            hash: hash.into(),
            image: format!("auren/runtime:{hash}"),
        }
    }

    fn status(phase: Phase, reason: &str, since: i64) -> AurenRuntimeStatus {
        AurenRuntimeStatus {
            phase: Some(phase),
            reason: Some(reason.into()),
            message: Some(format!("{reason} happened")),
            phase_since: Some(at(since)),
            stable: Some(release("v1")),
            ..Default::default()
        }
    }

    fn record(hash: &str, outcome: Outcome, reason: &str, second: i64) -> ReleaseRecord {
        ReleaseRecord {
            hash: hash.into(),
            image: format!("auren/runtime:{hash}"),
            outcome,
            reason: reason.into(),
            at: at(second),
        }
    }

    #[test]
    fn nothing_to_tell_when_the_phase_and_the_releases_stay() {
        let old = status(Phase::Analyzing, "Analyzing", 10);
        let mut new = old.clone();
        new.message = Some("measuring again".into());
        new.reason = Some("DependencyOutage".into());
        assert_eq!(notice(&old, &new), None);
        assert_eq!(notice(&old, &AurenRuntimeStatus::default()), None);
    }

    #[test]
    fn a_phase_change_names_both_phases_and_the_candidate() {
        let old = status(Phase::Progressing, "NewRelease", 10);
        let mut new = status(Phase::Analyzing, "Analyzing", 20);
        new.candidate = Some(release("v2"));
        let n = notice(&old, &new).unwrap();
        assert_eq!(n.kind, NoticeKind::PhaseChanged);
        assert_eq!(
            (n.previous_phase, n.phase),
            (Some(Phase::Progressing), Phase::Analyzing)
        );
        assert_eq!(n.release, Some(release("v2")));
        assert_eq!(n.at, at(20));
        assert_eq!(n.reason, "Analyzing");
    }

    #[test]
    fn a_promotion_is_told_as_such_with_the_promoted_release() {
        let mut old = status(Phase::Promoting, "AnalysisPassed", 10);
        old.history = vec![record("v1", Outcome::Promoted, "Installed", 1)];
        let mut new = status(Phase::Healthy, "Promoted", 30);
        new.stable = Some(release("v2"));
        new.history = old.history.clone();
        new.history
            .push(record("v2", Outcome::Promoted, "Promoted", 30));
        let n = notice(&old, &new).unwrap();
        assert_eq!(n.kind, NoticeKind::Promoted);
        assert_eq!(n.release, Some(release("v2")));
        assert_eq!(n.kind.event_type(), "io.auren.rollout.promoted");
    }

    #[test]
    fn a_rollback_is_told_even_without_a_phase_change() {
        // v3 rolled back before; v4 starts and crash-loops in the same decision.
        let mut old = status(Phase::RolledBack, "AnalysisFailed", 10);
        old.history = vec![record("v3", Outcome::RolledBack, "AnalysisFailed", 10)];
        let mut new = status(Phase::RolledBack, "CandidateCrashLoop", 50);
        new.history = old.history.clone();
        new.history
            .push(record("v4", Outcome::RolledBack, "CandidateCrashLoop", 50));
        let n = notice(&old, &new).unwrap();
        assert_eq!(n.kind, NoticeKind::RolledBack);
        assert_eq!(n.release, Some(release("v4")));
        assert_eq!(n.reason, "CandidateCrashLoop");
    }

    #[test]
    fn a_superseded_release_is_only_a_phase_change() {
        let old = status(Phase::Analyzing, "Analyzing", 10);
        let mut new = status(Phase::Progressing, "NewRelease", 20);
        new.history = vec![record("v2", Outcome::Superseded, "Superseded", 20)];
        new.candidate = Some(release("v3"));
        let n = notice(&old, &new).unwrap();
        assert_eq!(n.kind, NoticeKind::PhaseChanged);
        assert_eq!(n.release, Some(release("v3")));
    }

    #[test]
    fn a_bounded_history_that_drops_its_oldest_record_adds_nothing() {
        let mut old = status(Phase::Healthy, "Promoted", 10);
        old.history = (0..10)
            .map(|i| record(&format!("r{i}"), Outcome::Promoted, "Promoted", i))
            .collect();
        let mut new = old.clone();
        new.history.remove(0);
        assert_eq!(notice(&old, &new), None);
    }
}
