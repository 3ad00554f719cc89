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
    AurenRuntimeStatus, CheckedStep, Outcome, Phase, RevisionRef, SpecError, canary_steps, validate,
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
pub fn decide(obs: &Observed) -> Plan {
    let mut d = Decision::new(obs);
    if let Err(errors) = validate(obs.spec) {
        return d.invalid(&errors);
    }
    if obs.spec.paused {
        d.pause_by_spec();
        return d.finish(false);
    }
    d.resume_from_spec_pause();
    let (requested, acked) = controls::pending(obs.annotations, &d.st.acknowledged);
    d.st.acknowledged = acked;
    d.track_release(requested.contains(&Control::Retry));
    for control in requested {
        d.apply(control);
    }
    d.step();
    d.expire_previous();
    d.finish(true)
}

struct Decision<'a> {
    obs: &'a Observed<'a>,
    st: AurenRuntimeStatus,
    events: Vec<Event>,
    steps: Vec<CheckedStep>,
    /// Earliest moment something becomes due (deadline, measurement, scale-down).
    due: Option<Timestamp>,
}

impl<'a> Decision<'a> {
    fn new(obs: &'a Observed<'a>) -> Self {
        let mut st = obs.status.clone();
        st.observed_generation = Some(obs.generation);
        let steps = canary_steps(obs.spec).unwrap_or_default();
        Self {
            obs,
            st,
            events: Vec::new(),
            steps,
            due: None,
        }
    }

    fn now(&self) -> Timestamp {
        self.obs.now
    }

    fn phase(&self) -> Option<Phase> {
        self.st.phase
    }

    fn release(&self, hash: &str) -> ReleaseState {
        self.obs.release(hash)
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
        if self.st.phase != Some(phase) {
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
        if self.st.candidate.is_some() && self.st.stable.is_some() {
            self.roll_back(SPEC_INVALID, format!("the spec is invalid: {message}"));
        }
        self.enter(Phase::InvalidSpec, reason, message);
        let rolled_back = self.st.stable.is_some() && self.st.rejected.is_some();
        self.finish(rolled_back)
    }

    fn enter_quietly(&mut self, phase: Phase, reason: &str, message: String) {
        if self.st.phase != Some(phase) {
            self.st.phase_since = Some(Time(self.now()));
        }
        self.st.phase = Some(phase);
        self.st.reason = Some(reason.to_owned());
        self.st.message = Some(message);
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
        let paused_by_spec = self.st.reason.as_deref() == Some("SpecPaused");
        if paused_by_spec || self.st.phase == Some(Phase::InvalidSpec) {
            self.st.analysis = None;
            self.st.phase = None;
            let phase = match (&self.st.candidate, &self.st.stable) {
                (Some(_), _) => Phase::Progressing,
                (None, None) => return,
                (None, Some(_)) if self.st.rejected.is_some() => Phase::RolledBack,
                (None, Some(_)) => Phase::Healthy,
            };
            self.enter(phase, "Resumed", "the rollout resumes".into());
        }
    }

    fn apply(&mut self, control: Control) {
        let in_flight = self.st.candidate.is_some() && self.st.stable.is_some();
        match control {
            Control::Abort if in_flight => {
                self.roll_back("Aborted", "aborted by auren.io/abort".into())
            }
            Control::Promote if in_flight => self.promote_by_hand(),
            Control::Retry if self.phase() == Some(Phase::Paused) && self.st.analysis.is_some() => {
                self.st.analysis = None;
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
        if self.st.canary.is_some() && !self.canary_done() {
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
        self.st.candidate.clone()
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
        let outage = if self.st.reason.as_deref() == Some(DEPENDENCY_OUTAGE) {
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
        Duration::from_secs(u64::try_from(self.obs.spec.progress_deadline_seconds).unwrap_or(0))
    }

    /// Ends the rollout: traffic and consumers stay on (or return to) stable.
    pub(super) fn roll_back(&mut self, reason: &str, message: String) {
        let Some(candidate) = self.st.candidate.take() else {
            return;
        };
        self.record(&candidate, Outcome::RolledBack, reason);
        self.st.rejected = Some(candidate.clone());
        self.st.canary = None;
        self.st.services.active = self.st.stable.as_ref().map(|s| s.hash.clone());
        let message = format!("release {} rolled back: {message}", candidate.hash);
        self.st.phase = None;
        self.enter(Phase::RolledBack, reason, message);
    }

    fn finish(mut self, act: bool) -> Plan {
        let world = act.then(|| render(&self.render_input()));
        if let Some(world) = &world {
            self.st.services.active = world.active.as_status();
            self.st.services.preview = world.preview.as_status();
            super::pointing::forget_unconfigured(&mut self.st, self.obs.spec);
        }
        self.st.ready = self.ready_text();
        self.st.replicas = self.serving_replicas();
        set_conditions(&mut self.st, self.obs.generation, self.obs.now);
        self.mark_unsafe_settings();
        let requeue_after = self.requeue_after();
        let notice = super::notice::notice(self.obs.status, &self.st);
        Plan {
            status: self.st,
            world,
            events: self.events,
            requeue_after,
            notice,
        }
    }

    /// Unsafe settings allowed by `spec.allowUnsafe` and in use: a condition, and a Warning
    /// Event whenever that list changes.
    fn mark_unsafe_settings(&mut self) {
        let allowed: Vec<String> = (self.obs.spec.unsafe_settings().into_iter())
            .filter(|(setting, _)| self.obs.spec.allow_unsafe.contains(setting))
            .map(|(setting, variable)| format!("{variable} ({})", setting.as_str()))
            .collect();
        let (generation, now) = (self.obs.generation, self.obs.now);
        if let Some(message) = set_unsafe_condition(&mut self.st, &allowed, generation, now) {
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
        let serving = self.st.stable.as_ref().or(self.st.candidate.as_ref())?;
        let ready = self.release(&serving.hash).api.ready;
        Some(format!("{ready}/{}", self.obs.spec.api.replicas))
    }

    /// What `render` needs from this decision, as plain values.
    fn render_input(&self) -> RenderInput<'_> {
        RenderInput {
            obs: self.obs,
            status: &self.st,
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
