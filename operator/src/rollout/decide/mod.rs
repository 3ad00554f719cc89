//! The rollout state machine: observed world + clock → next status and events. The world to
//! make true is rendered from the resulting status by `render`, so status is the single
//! record of where the rollout stands (and where a restarted operator carries on).
//!
//! [`decide`] and the shared moves (enter a phase, record a release, roll back, finish) are
//! here; each stage of a rollout is its own module:
//! - [`release`]: a new release noticed, the first release installed, a candidate becoming ready;
//! - [`analysis`]: measurements folded into the analysis progress and judged;
//! - [`canary`]: the canary steps (weights, pauses, analysis steps);
//! - [`promotion`]: traffic and consumers handed to the candidate;
//! - [`watch`]: the settled phases and the post-promotion watch of the new stable release.

mod analysis;
mod canary;
mod promotion;
mod release;
mod watch;

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::{
    ActiveSelection, AurenRuntimeStatus, CheckedStep, Outcome, Phase, RevisionRef, SpecError,
    canary_steps, validate,
};

use super::clock::plus;
use super::conditions::{set_conditions, set_unsafe_condition};
use super::controls::{self, Control};
use super::render::{RenderInput, render};
use super::world::{Event, EventKind, Observed, Plan, ReleaseState, ServiceTarget};

/// Reason while the analysis waits for a dependency outage to end.
const DEPENDENCY_OUTAGE: &str = "DependencyOutage";

/// Reason of a rollback forced by an invalid spec.
const SPEC_INVALID: &str = "SpecInvalid";

/// Reconcile at least this often while nothing is due.
const IDLE_REQUEUE: Duration = Duration::from_secs(300);

/// Decides the next step of the rollout.
pub fn decide(observed: &Observed) -> Plan {
    let mut d = Decision::new(observed);
    if let Err(errors) = validate(observed.spec) {
        return d.invalid(&errors);
    }
    if observed.spec.paused {
        d.pause_by_spec();
        return d.finish(false);
    }
    d.resume_from_spec_pause();
    let (requested, acked) = controls::pending(observed.annotations, &d.status.acknowledged);
    d.status.acknowledged = acked;
    d.track_release(requested.contains(&Control::Retry));
    for control in requested {
        d.apply(control);
    }
    d.step();
    d.expire_previous();
    d.finish(true)
}

struct Decision<'a> {
    observed: &'a Observed<'a>,
    status: AurenRuntimeStatus,
    events: Vec<Event>,
    steps: Vec<CheckedStep>,
    /// Earliest moment something becomes due (deadline, measurement, scale-down).
    due: Option<Timestamp>,
}

impl<'a> Decision<'a> {
    fn new(observed: &'a Observed<'a>) -> Self {
        let mut status = observed.status.clone();
        status.observed_generation = Some(observed.generation);
        let steps = canary_steps(observed.spec).unwrap_or_default();
        Self {
            observed,
            status,
            events: Vec::new(),
            steps,
            due: None,
        }
    }

    fn now(&self) -> Timestamp {
        self.observed.now
    }

    fn phase(&self) -> Option<Phase> {
        self.status.phase
    }

    fn release(&self, hash: &str) -> ReleaseState {
        self.observed.release(hash)
    }

    fn event(&mut self, kind: EventKind, reason: &str, message: String) {
        self.events.push(Event {
            kind,
            reason: reason.to_owned(),
            message,
        });
    }

    /// Moves to `phase` (the deadline clock restarts only when the phase changes).
    fn enter(&mut self, phase: Phase, reason: &str, message: String) {
        if self.status.phase != Some(phase) {
            let kind = match phase {
                Phase::Degraded | Phase::RolledBack | Phase::InvalidSpec => EventKind::Warning,
                _ => EventKind::Normal,
            };
            self.event(kind, reason, message.clone());
        }
        self.enter_quietly(phase, reason, message);
    }

    fn due_at(&mut self, at: Timestamp) {
        self.due = Some(self.due.map_or(at, |due| due.min(at)));
    }

    /// An invalid spec starts nothing. A rollout in flight cannot be judged, stepped or timed
    /// on settings that do not validate, so it is rolled back (like an abort): traffic and
    /// consumers return to stable, the candidate is scaled down. While the spec stays invalid
    /// that rolled-back world is kept true (a consumer handover cut short completes); with no
    /// rolled-back release, nothing is changed.
    fn invalid(mut self, errors: &[SpecError]) -> Plan {
        let reason = errors.first().map_or("InvalidSpec", SpecError::reason);
        let message = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        if self.status.candidate.is_some() && self.status.stable.is_some() {
            self.roll_back(SPEC_INVALID, format!("the spec is invalid: {message}"));
        }
        self.enter(Phase::InvalidSpec, reason, message);
        let rolled_back = self.status.stable.is_some() && self.status.rejected.is_some();
        self.finish(rolled_back)
    }

    fn enter_quietly(&mut self, phase: Phase, reason: &str, message: String) {
        if self.status.phase != Some(phase) {
            self.status.phase_since = Some(Time(self.now()));
        }
        self.status.phase = Some(phase);
        self.status.reason = Some(reason.to_owned());
        self.status.message = Some(message);
    }

    fn pause_by_spec(&mut self) {
        self.enter(
            Phase::Paused,
            "SpecPaused",
            "spec.paused is true: nothing changes until it is false".into(),
        );
    }

    /// After `spec.paused` is lifted, resume where the state says (deadlines restart).
    fn resume_from_spec_pause(&mut self) {
        let paused_by_spec = self.status.reason.as_deref() == Some("SpecPaused");
        if paused_by_spec || self.status.phase == Some(Phase::InvalidSpec) {
            self.status.analysis = None;
            self.status.phase = None;
            let phase = match (&self.status.candidate, &self.status.stable) {
                (Some(_), _) => Phase::Progressing,
                (None, None) => return,
                (None, Some(_)) if self.status.rejected.is_some() => Phase::RolledBack,
                (None, Some(_)) => Phase::Healthy,
            };
            self.enter(phase, "Resumed", "the rollout resumes".into());
        }
    }

    fn apply(&mut self, control: Control) {
        let in_flight = self.status.candidate.is_some() && self.status.stable.is_some();
        match control {
            Control::Abort if in_flight => {
                self.roll_back("Aborted", "aborted by auren.io/abort".into())
            }
            Control::Promote if in_flight => self.promote_by_hand(),
            Control::Retry
                if self.phase() == Some(Phase::Paused) && self.status.analysis.is_some() =>
            {
                self.status.analysis = None;
                self.enter(
                    Phase::Progressing,
                    "Retried",
                    "analysis restarted by auren.io/retry".into(),
                );
            }
            Control::Retry => {}
            ignored => {
                let message = format!("{} ignored: no rollout in flight", ignored.annotation());
                self.event(EventKind::Normal, "ControlIgnored", message);
            }
        }
    }

    fn promote_by_hand(&mut self) {
        if self.status.canary.is_some() && !self.canary_done() {
            return self.next_canary_step("Promoted by auren.io/promote");
        }
        self.enter(
            Phase::Promoting,
            "PromotedByHand",
            "promotion requested by auren.io/promote".into(),
        );
    }

    fn step(&mut self) {
        match self.phase() {
            Some(Phase::Progressing) => self.progressing(),
            Some(Phase::Analyzing) => self.analyzing(),
            Some(Phase::Paused) => self.paused(),
            Some(Phase::Promoting) => self.promoting(),
            Some(Phase::Healthy | Phase::Degraded | Phase::RolledBack) => self.settled(),
            None | Some(Phase::InvalidSpec) => {}
        }
    }

    fn candidate(&self) -> Option<RevisionRef> {
        self.status.candidate.clone()
    }

    /// Rolls back if the candidate crash-loops; true when it did.
    fn candidate_crashed(&mut self) -> bool {
        let Some(candidate) = self.candidate() else {
            return false;
        };
        let release = self.release(&candidate.hash);
        if !(release.api.crash_looping || release.consumer.crash_looping) {
            return false;
        }
        let message = format!(
            "pods of release {} are crash-looping ({} restarts)",
            candidate.hash,
            restarts(&release)
        );
        self.roll_back("CandidateCrashLoop", message);
        true
    }

    /// True (after rolling back) when `since + limit` has passed.
    fn past_deadline(&mut self, since: Option<&Time>, limit: Duration, reason: &str) -> bool {
        let Some(deadline) = since.map(|t| plus(t.0, limit)) else {
            return false;
        };
        if self.now() < deadline {
            self.due_at(deadline);
            return false;
        }
        let waiting = self.candidate_waiting_reason();
        let outage = if self.status.reason.as_deref() == Some(DEPENDENCY_OUTAGE) {
            format!(
                ": the dependency outage did not end ({})",
                self.newest_outage()
            )
        } else {
            String::new()
        };
        let message = format!("no progress within {}s{waiting}{outage}", limit.as_secs());
        self.roll_back(reason, message);
        true
    }

    fn candidate_waiting_reason(&self) -> String {
        let release = self
            .candidate()
            .map(|c| self.release(&c.hash))
            .unwrap_or_default();
        let reason = release
            .api
            .waiting_reason
            .or(release.consumer.waiting_reason);
        reason
            .map(|r| format!(": pods are waiting ({r})"))
            .unwrap_or_default()
    }

    fn progress_deadline(&self) -> Duration {
        Duration::from_secs(
            u64::try_from(self.observed.spec.progress_deadline_seconds).unwrap_or(0),
        )
    }

    /// Ends the rollout: traffic and consumers stay on (or return to) stable.
    pub(super) fn roll_back(&mut self, reason: &str, message: String) {
        let Some(candidate) = self.status.candidate.take() else {
            return;
        };
        self.record(&candidate, Outcome::RolledBack, reason);
        self.status.rejected = Some(candidate.clone());
        self.status.canary = None;
        self.status.services.active = self.stable_selection();
        let message = format!("release {} rolled back: {message}", candidate.hash);
        self.status.phase = None;
        self.enter(Phase::RolledBack, reason, message);
    }

    fn finish(mut self, act: bool) -> Plan {
        let world = act.then(|| render(&self.render_input()));
        if let Some(world) = &world {
            self.status.services.active = world.active.as_status();
            self.status.services.preview = world.preview.revision();
            super::pointing::forget_unconfigured(&mut self.status, self.observed.spec);
        }
        self.status.ready = self.ready_text();
        self.status.replicas = self.serving_replicas();
        set_conditions(
            &mut self.status,
            self.observed.generation,
            self.observed.now,
        );
        self.mark_unsafe_settings();
        let requeue_after = self.requeue_after();
        let notice = super::notice::notice(self.observed.status, &self.status);
        Plan {
            status: self.status,
            world,
            events: self.events,
            requeue_after,
            notice,
        }
    }

    /// Unsafe settings allowed by `spec.allowUnsafe` and in use: a condition, and a Warning
    /// Event whenever that list changes.
    fn mark_unsafe_settings(&mut self) {
        let allowed: Vec<String> = (self.observed.spec.unsafe_settings().into_iter())
            .filter(|(setting, _)| self.observed.spec.allow_unsafe.contains(setting))
            .map(|(setting, variable)| format!("{variable} ({})", setting.as_str()))
            .collect();
        let (generation, now) = (self.observed.generation, self.observed.now);
        if let Some(message) = set_unsafe_condition(&mut self.status, &allowed, generation, now) {
            self.event(EventKind::Warning, "UnsafeSettingsAllowed", message);
        }
    }

    /// Ready API pods behind the active Service: the `/scale` subresource's current replicas.
    fn serving_replicas(&self) -> Option<i32> {
        match self.active_target() {
            ServiceTarget::Nothing => None,
            ServiceTarget::Revision(hash) => Some(self.release(&hash).api.ready),
            ServiceTarget::Canary(pair) => {
                Some(self.release(&pair.stable).api.ready + self.release(&pair.candidate).api.ready)
            }
        }
    }

    fn ready_text(&self) -> Option<String> {
        let serving = self
            .status
            .stable
            .as_ref()
            .or(self.status.candidate.as_ref())?;
        let ready = self.release(&serving.hash).api.ready;
        Some(format!("{ready}/{}", self.observed.spec.api.replicas))
    }

    /// The active Service on the stable release alone (nothing before the first release).
    fn stable_selection(&self) -> Option<ActiveSelection> {
        let stable = self.status.stable.as_ref()?;
        Some(ActiveSelection::Release(stable.hash.clone()))
    }

    /// What `render` needs from this decision, as plain values.
    fn render_input(&self) -> RenderInput<'_> {
        RenderInput {
            observed: self.observed,
            status: &self.status,
            requested_weight: self.requested_weight(),
            consumer_replicas: self.consumer_replicas(),
            preview_replicas: self.preview_replicas(),
            autoscaler_target: self.autoscaler_target(),
            interval: self.interval(),
            initial_delay: self.initial_delay(),
        }
    }

    fn requeue_after(&self) -> Duration {
        let Some(due) = self.due else {
            return IDLE_REQUEUE;
        };
        let wait = due
            .as_millisecond()
            .saturating_sub(self.now().as_millisecond());
        Duration::from_millis(u64::try_from(wait).unwrap_or(0))
            .clamp(Duration::from_secs(1), IDLE_REQUEUE)
    }
}

fn restarts(release: &ReleaseState) -> i32 {
    release
        .api
        .restarts
        .saturating_add(release.consumer.restarts)
}
