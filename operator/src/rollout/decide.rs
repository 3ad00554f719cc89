//! The rollout state machine: observed world + clock → next status and events. The world to
//! make true is rendered from the resulting status by `render`, so status is the single
//! record of where the rollout stands (and where a restarted operator carries on).

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::analysis::{outage_limit_at, round_verdict, track_outage};
use crate::api::{
    AnalysisProgress, AurenRuntimeStatus, CanaryStatus, CheckedStep, MAX_HISTORY, MAX_MEASUREMENTS,
    Measurement, Outcome, Phase, PreviousRevision, ReleaseRecord, RevisionRef, SpecError, Verdict,
    canary_steps, parse_duration, validate,
};

use super::conditions::{set_conditions, set_unsafe_condition};
use super::controls::{self, Control};
use super::render::render;
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

pub(super) struct Decision<'a> {
    pub(super) obs: &'a Observed<'a>,
    pub(super) st: AurenRuntimeStatus,
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

    pub(super) fn release(&self, hash: &str) -> ReleaseState {
        let found = self.obs.releases.iter().find(|r| r.revision == hash);
        found.cloned().unwrap_or_else(|| ReleaseState {
            revision: hash.to_owned(),
            ..Default::default()
        })
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

    /// Notices a new release in the spec, or a spec that went back to the stable release.
    fn track_release(&mut self, retry: bool) {
        let desired = self.obs.desired.clone();
        let is = |r: &Option<RevisionRef>| r.as_ref().is_some_and(|r| r.hash == desired.hash);
        if is(&self.st.candidate) {
            return;
        }
        if self.st.stable.is_none() && self.st.candidate.is_none() {
            return self.start_candidate(desired, "Installing");
        }
        if is(&self.st.stable) {
            return self.abandon_candidate();
        }
        if is(&self.st.rejected) && !retry {
            return;
        }
        self.supersede_candidate();
        self.start_candidate(desired, "NewRelease");
    }

    fn start_candidate(&mut self, candidate: RevisionRef, reason: &str) {
        let message = format!("release {} ({}) starts", candidate.hash, candidate.image);
        self.st.rejected = None;
        self.st.analysis = None;
        self.st.canary = (!self.steps.is_empty()).then(CanaryStatus::default);
        self.st.candidate = Some(candidate);
        self.st.phase = None;
        self.enter(Phase::Progressing, reason, message);
    }

    fn abandon_candidate(&mut self) {
        if self.st.candidate.is_some() {
            self.supersede_candidate();
            self.st.services.active = self.st.stable.as_ref().map(|s| s.hash.clone());
            self.enter(
                Phase::Healthy,
                "Reverted",
                "the spec asks for the stable release again".into(),
            );
        }
    }

    fn supersede_candidate(&mut self) {
        if let Some(old) = self.st.candidate.take() {
            self.record(&old, Outcome::Superseded, "Superseded");
            self.st.analysis = None;
            self.st.canary = None;
        }
    }

    fn record(&mut self, release: &RevisionRef, outcome: Outcome, reason: &str) {
        let record = ReleaseRecord {
            hash: release.hash.clone(),
            image: release.image.clone(),
            outcome,
            reason: reason.to_owned(),
            at: Time(self.now()),
        };
        self.st.history.push(record);
        let excess = self.st.history.len().saturating_sub(MAX_HISTORY);
        self.st.history.drain(..excess);
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

    fn progressing(&mut self) {
        if self.candidate_crashed() {
            return;
        }
        if self.st.stable.is_none() {
            return self.installing();
        }
        if self.st.canary.is_some() {
            return self.canary_step();
        }
        if self.candidate_ready(self.preview_replicas()) {
            return self.start_analysis();
        }
        let since = self.st.phase_since.clone();
        self.past_deadline(
            since.as_ref(),
            self.progress_deadline(),
            "ProgressDeadlineExceeded",
        );
    }

    pub(super) fn preview_replicas(&self) -> i32 {
        let spec = self.obs.spec;
        spec.blue_green()
            .preview_replicas
            .unwrap_or(spec.api.replicas)
            .min(spec.api.replicas.max(1))
    }

    fn candidate_ready(&self, api_replicas: i32) -> bool {
        let Some(candidate) = self.candidate() else {
            return false;
        };
        let release = self.release(&candidate.hash);
        release.api.ready >= api_replicas && release.consumer.ready >= self.consumer_replicas()
    }

    /// Consumers of each release: `spec.consumer.replicas`, or, with an autoscaler, the
    /// count the stable release's consumer Deployment has now (what the autoscaler last set),
    /// so a candidate starts with as many and the operator never undoes the autoscaler.
    pub(super) fn consumer_replicas(&self) -> i32 {
        let spec = &self.obs.spec.consumer;
        let stable = spec.autoscaler.as_ref().and(self.st.stable.as_ref());
        let observed = stable.and_then(|s| self.obs.releases.iter().find(|r| r.revision == s.hash));
        observed.map_or(spec.replicas, |r| r.consumer.desired)
    }

    /// What the consumer autoscaler targets: the stable release, once there is one.
    pub(super) fn autoscaler_target(&self) -> Option<String> {
        super::pointing::autoscaler_record(self.obs.spec, &self.st.stable.as_ref()?.hash)
    }

    /// The first release: no analysis (nothing to compare with), Healthy once it serves.
    fn installing(&mut self) {
        let Some(candidate) = self.candidate() else {
            return;
        };
        self.st.services.active = Some(candidate.hash.clone());
        let release = self.release(&candidate.hash);
        let consumers = self.consumer_replicas();
        let consuming = consumers == 0 || release.roles.confirmed_active(consumers);
        if self.candidate_ready(self.obs.spec.api.replicas) && consuming {
            self.st.candidate = None;
            self.st.stable = Some(candidate.clone());
            self.record(&candidate, Outcome::Promoted, "Installed");
            return self.enter(
                Phase::Healthy,
                "Installed",
                format!("release {} serves", candidate.hash),
            );
        }
        let deadline = self
            .st
            .phase_since
            .as_ref()
            .map(|t| plus(t.0, self.progress_deadline()));
        match deadline {
            Some(deadline) if self.now() >= deadline => {
                let message = format!(
                    "first release not ready in time{}",
                    self.candidate_waiting_reason()
                );
                self.enter(Phase::Degraded, "ProgressDeadlineExceeded", message);
            }
            Some(deadline) => self.due_at(deadline),
            None => {}
        }
    }

    fn start_analysis(&mut self) {
        let Some(candidate) = self.candidate() else {
            return;
        };
        self.st.analysis = Some(AnalysisProgress::begin(&candidate.hash, Time(self.now())));
        self.enter(
            Phase::Analyzing,
            "Analyzing",
            format!("release {} is ready; measuring it", candidate.hash),
        );
    }

    fn interval(&self) -> Duration {
        parse_duration(&self.obs.spec.analysis.interval).unwrap_or(Duration::from_secs(10))
    }

    fn initial_delay(&self) -> Duration {
        parse_duration(&self.obs.spec.analysis.initial_delay).unwrap_or_default()
    }

    /// Time an analysis of `rounds` passing rounds may take, failures and slack included.
    fn analysis_budget(&self, rounds: i32) -> Duration {
        let spec = &self.obs.spec.analysis;
        let rounds = u32::try_from(rounds.saturating_add(spec.failure_limit).saturating_add(1))
            .unwrap_or(u32::MAX);
        self.initial_delay() + self.interval().saturating_mul(rounds) + self.progress_deadline()
    }

    fn analyzing(&mut self) {
        if self.candidate_crashed() || self.fold_and_judge() {
            return;
        }
        if self.st.canary.is_some() {
            return self.canary_step();
        }
        let needed = self.obs.spec.analysis.successful_measurements_to_promote;
        let Some(progress) = self.st.analysis.clone() else {
            return self.start_analysis();
        };
        if progress.successes >= needed {
            return self.analysis_passed();
        }
        self.schedule_measurement(&progress);
        let budget = self.analysis_budget(needed);
        self.past_deadline(
            Some(&progress.started_at),
            budget,
            "AnalysisDeadlineExceeded",
        );
    }

    fn schedule_measurement(&mut self, progress: &AnalysisProgress) {
        let first = plus(progress.started_at.0, self.initial_delay());
        let next = progress
            .last_measured_at
            .as_ref()
            .map_or(first, |t| plus(t.0, self.interval()));
        self.due_at(next.max(first));
    }

    /// Counts new measurements; true when the rollout ended or paused because of them.
    fn fold_and_judge(&mut self) -> bool {
        let Some(candidate) = self.candidate() else {
            return false;
        };
        let rounds = self.fold(&candidate.hash);
        let Some(progress) = self.st.analysis.clone() else {
            return false;
        };
        let limits = &self.obs.spec.analysis;
        if progress.failures >= limits.failure_limit
            || progress.consecutive_failures >= limits.consecutive_failure_limit
        {
            let message = format!(
                "{} ({} failed measurements)",
                self.failing_summary(),
                progress.failures
            );
            self.roll_back("AnalysisFailed", message);
            return true;
        }
        if self.carries_live_traffic() && self.live_outage_over() {
            let message = self.live_outage_message();
            self.roll_back("DependencyOutageLimit", message);
            return true;
        }
        if rounds.contains(&Verdict::Inconclusive) {
            let message = format!(
                "inconclusive measurement: {}; promote, abort or retry",
                self.failing_summary()
            );
            self.enter(Phase::Paused, "AnalysisInconclusive", message);
            return true;
        }
        match rounds.last() {
            Some(Verdict::DependencyOutage) => self.wait_for_dependency(),
            Some(_) => self.dependency_recovered(),
            None => {}
        }
        false
    }

    /// The newest round was a dependency outage: the analysis waits (within its deadline)
    /// and says why; a Warning Event when the wait begins.
    fn wait_for_dependency(&mut self) {
        let outage = self.newest_outage();
        let bound = if self.carries_live_traffic() {
            format!(
                "lasts {}s with live traffic",
                self.max_live_outage_seconds()
            )
        } else {
            "outlasts the analysis deadline".to_owned()
        };
        let message = format!(
            "waiting for a dependency outage to end ({outage}); the analysis resumes when it \
             does and rolls back if it {bound}"
        );
        if self.st.reason.as_deref() != Some(DEPENDENCY_OUTAGE) {
            self.event(EventKind::Warning, DEPENDENCY_OUTAGE, message.clone());
        }
        self.st.reason = Some(DEPENDENCY_OUTAGE.into());
        self.st.message = Some(message);
    }

    /// A counted round after an outage: the analysis goes on as before.
    fn dependency_recovered(&mut self) {
        if self.st.reason.as_deref() != Some(DEPENDENCY_OUTAGE) {
            return;
        }
        let message = "the dependency outage ended; measuring again".to_owned();
        self.event(EventKind::Normal, "DependencyRecovered", message.clone());
        self.st.reason = Some("Analyzing".into());
        self.st.message = Some(message);
    }

    /// A canary at a weight above 0 serves production; a blue/green preview does not.
    fn carries_live_traffic(&self) -> bool {
        self.st.canary.is_some() && self.requested_weight() > 0
    }

    /// True when outage rounds in a row have held the analysed release for
    /// `maxLiveOutageSeconds` (otherwise that moment becomes due).
    fn live_outage_over(&mut self) -> bool {
        let Some(over_at) = (self.st.analysis.as_ref())
            .and_then(|p| outage_limit_at(p, Duration::from_secs(self.max_live_outage_seconds())))
        else {
            return false;
        };
        if self.now() < over_at {
            self.due_at(over_at);
        }
        self.now() >= over_at
    }

    fn live_outage_message(&self) -> String {
        format!(
            "a dependency outage held it with live traffic for {}s ({}); if it caused the \
             outage, the rollback ends it",
            self.max_live_outage_seconds(),
            self.newest_outage()
        )
    }

    fn max_live_outage_seconds(&self) -> u64 {
        u64::try_from(self.obs.spec.analysis.max_live_outage_seconds).unwrap_or(0)
    }

    fn newest_outage(&self) -> String {
        let newest =
            (self.st.measurements.iter().rev()).find(|m| m.verdict == Verdict::DependencyOutage);
        newest
            .map(|m| {
                format!(
                    "{}: {}",
                    m.check,
                    m.reason.as_deref().unwrap_or("dependency outage")
                )
            })
            .unwrap_or_else(|| "dependency outage".into())
    }

    /// Folds the measurements of `revision` newer than the last counted; returns the verdicts.
    fn fold(&mut self, revision: &str) -> Vec<Verdict> {
        let Some(mut progress) = self.st.analysis.clone().filter(|p| p.revision == revision) else {
            return Vec::new();
        };
        let mut verdicts = Vec::new();
        for round in rounds(
            self.obs.measurements,
            revision,
            progress.last_measured_at.as_ref(),
        ) {
            let verdict = round_verdict(&round);
            let window_start =
                (progress.last_measured_at.clone()).unwrap_or(progress.started_at.clone());
            track_outage(&mut progress, verdict, &window_start);
            count(&mut progress, verdict);
            progress.last_measured_at = round.first().map(|m| m.at.clone());
            verdicts.push(verdict);
            self.keep_measurements(round);
        }
        self.st.analysis = Some(progress);
        verdicts
    }

    fn keep_measurements(&mut self, round: Vec<Measurement>) {
        for m in round.iter().filter(|m| m.verdict != Verdict::Pass) {
            let value = m.value.map_or("no data".into(), |v| format!("{v}"));
            let why = m
                .reason
                .as_ref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            let message = format!(
                "{} of {} = {value}, threshold {}{why}",
                m.check, m.revision, m.threshold
            );
            self.event(
                EventKind::Warning,
                &format!("Measurement{:?}", m.verdict),
                message,
            );
        }
        self.st.measurements.extend(round);
        let excess = self.st.measurements.len().saturating_sub(MAX_MEASUREMENTS);
        self.st.measurements.drain(..excess);
    }

    /// The newest failed or inconclusive measurements (an outage is not the release's own).
    fn failing_summary(&self) -> String {
        let failing = self
            .st
            .measurements
            .iter()
            .rev()
            .filter(|m| matches!(m.verdict, Verdict::Fail | Verdict::Inconclusive))
            .take(3);
        let parts: Vec<String> = failing
            .map(|m| {
                format!(
                    "{} = {} (threshold {})",
                    m.check,
                    m.value.map_or("no data".into(), |v| format!("{v}")),
                    m.threshold
                )
            })
            .collect();
        if parts.is_empty() {
            "no failing check".into()
        } else {
            parts.join(", ")
        }
    }

    fn analysis_passed(&mut self) {
        let bg = self.obs.spec.blue_green();
        let now = Time(self.now());
        let Some(progress) = self.st.analysis.as_mut() else {
            return;
        };
        let passed_at = progress.passed_at.get_or_insert(now).clone();
        if !bg.auto_promotion {
            return self.enter(
                Phase::Paused,
                "AwaitingPromotion",
                "analysis passed; set auren.io/promote to promote".into(),
            );
        }
        let wait = Duration::from_secs(u64::try_from(bg.auto_promotion_seconds).unwrap_or(0));
        let promote_at = plus(passed_at.0, wait);
        if self.now() >= promote_at {
            self.enter(
                Phase::Promoting,
                "AnalysisPassed",
                "analysis passed; promoting".into(),
            );
            self.promoting();
        } else {
            self.due_at(promote_at);
        }
    }

    fn paused(&mut self) {
        self.candidate_crashed();
    }

    fn promoting(&mut self) {
        if self.candidate_crashed() {
            return;
        }
        let Some(candidate) = self.candidate() else {
            return;
        };
        if self.candidate_ready(self.obs.spec.api.replicas) {
            self.st.services.active = Some(candidate.hash.clone());
        }
        if self.handover_done(&candidate) {
            return self.complete_promotion(candidate);
        }
        let since = self.st.phase_since.clone();
        self.past_deadline(
            since.as_ref(),
            self.progress_deadline(),
            "PromotionDeadlineExceeded",
        );
    }

    fn handover_done(&self, candidate: &RevisionRef) -> bool {
        let switched = self.st.services.active.as_deref() == Some(candidate.hash.as_str());
        let replicas = self.consumer_replicas();
        let others_standby = self
            .obs
            .releases
            .iter()
            .filter(|r| r.revision != candidate.hash)
            .all(|r| r.roles.confirmed_standby());
        let consuming = replicas == 0
            || self
                .release(&candidate.hash)
                .roles
                .confirmed_active(replicas);
        switched && others_standby && consuming
    }

    fn complete_promotion(&mut self, candidate: RevisionRef) {
        let delay = Duration::from_secs(
            u64::try_from(self.obs.spec.scale_down_delay_seconds()).unwrap_or(0),
        );
        self.st.previous = self.st.stable.take().map(|old| PreviousRevision {
            hash: old.hash,
            image: old.image,
            scale_down_at: Time(plus(self.now(), delay)),
        });
        self.st.stable = Some(candidate.clone());
        self.st.candidate = None;
        self.st.canary = None;
        self.st.analysis = self
            .st
            .previous
            .as_ref()
            .map(|_| self.watch_progress(&candidate.hash));
        self.record(&candidate, Outcome::Promoted, "Promoted");
        self.enter(
            Phase::Healthy,
            "Promoted",
            format!("release {} is stable", candidate.hash),
        );
    }

    /// Counters for the post-promotion watch of the new stable release.
    fn watch_progress(&self, revision: &str) -> AnalysisProgress {
        AnalysisProgress::begin(revision, Time(self.now()))
    }

    /// Healthy, Degraded, RolledBack: watch the stable release (and the fresh promotion).
    fn settled(&mut self) {
        if self.post_promotion_failed() {
            return;
        }
        if self.st.stable.is_none() {
            return self.installing();
        }
        let Some(stable) = self.st.stable.clone() else {
            return;
        };
        let release = self.release(&stable.hash);
        let unavailable =
            release.api.crash_looping || (self.obs.spec.api.replicas > 0 && release.api.ready == 0);
        match (unavailable, self.phase()) {
            (true, Some(Phase::Degraded)) => {}
            (true, _) => self.enter(
                Phase::Degraded,
                "StableUnavailable",
                format!("no API pod of release {} is ready", stable.hash),
            ),
            (false, Some(Phase::Degraded)) => {
                let back = if self.st.rejected.is_some() {
                    Phase::RolledBack
                } else {
                    Phase::Healthy
                };
                self.enter(
                    back,
                    "Recovered",
                    format!("release {} serves again", stable.hash),
                );
            }
            (false, _) => {}
        }
        self.st.services.active = Some(stable.hash);
    }

    /// Inside the scale-down window a failing or crashing new stable release switches back.
    fn post_promotion_failed(&mut self) -> bool {
        let (Some(previous), Some(stable)) = (self.st.previous.clone(), self.st.stable.clone())
        else {
            return false;
        };
        self.fold(&stable.hash);
        let release = self.release(&stable.hash);
        let limits = &self.obs.spec.analysis;
        let failed = self.st.analysis.as_ref().is_some_and(|p| {
            p.revision == stable.hash
                && (p.failures >= limits.failure_limit
                    || p.consecutive_failures >= limits.consecutive_failure_limit)
        });
        let watched = self
            .st
            .analysis
            .as_ref()
            .is_some_and(|p| p.revision == stable.hash);
        let held = watched && self.live_outage_over();
        if !(failed || held || release.api.crash_looping || release.consumer.crash_looping) {
            return false;
        }
        let why = if failed {
            self.failing_summary()
        } else if held {
            self.live_outage_message()
        } else {
            format!("crash-looping ({} restarts)", restarts(&release))
        };
        self.record(&stable, Outcome::RolledBack, "PostPromotionFailure");
        self.st.rejected = Some(stable.clone());
        self.st.stable = Some(RevisionRef {
            hash: previous.hash.clone(),
            image: previous.image,
        });
        self.st.previous = None;
        self.st.services.active = Some(previous.hash.clone());
        let message = format!(
            "release {} failed after promotion ({why}); back on {}",
            stable.hash, previous.hash
        );
        self.enter(Phase::RolledBack, "PostPromotionFailure", message);
        true
    }

    fn expire_previous(&mut self) {
        let Some(previous) = self.st.previous.clone() else {
            return;
        };
        if self.now() < previous.scale_down_at.0 {
            return self.due_at(previous.scale_down_at.0);
        }
        if self.outage_holds_watch() {
            return;
        }
        self.st.previous = None;
        if self
            .st
            .analysis
            .as_ref()
            .is_some_and(|p| Some(&p.revision) == self.st.stable.as_ref().map(|s| &s.hash))
        {
            self.st.analysis = None;
        }
        self.event(
            EventKind::Normal,
            "ScaledDown",
            format!("previous release {} scaled down", previous.hash),
        );
    }

    /// An outage holds the post-promotion watch: the previous release stays up (bounded by
    /// `maxLiveOutageSeconds`, then the watch switches back) so the watch does not end blind.
    fn outage_holds_watch(&self) -> bool {
        let stable = self.st.stable.as_ref().map(|s| s.hash.as_str());
        (self.st.analysis.as_ref())
            .is_some_and(|p| Some(p.revision.as_str()) == stable && p.outage_since.is_some())
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
        let world = act.then(|| render(&self));
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

    // ----- canary -----

    fn canary_done(&self) -> bool {
        self.st
            .canary
            .as_ref()
            .is_some_and(|c| c.current_step as usize >= self.steps.len())
    }

    /// The weight the steps so far ask for.
    pub(super) fn requested_weight(&self) -> i32 {
        let upto = self
            .st
            .canary
            .as_ref()
            .map_or(0, |c| c.current_step.max(0) as usize);
        let mut set = self.steps.iter().take(upto + 1).filter_map(|s| match s {
            CheckedStep::SetWeight(w) => Some(*w),
            _ => None,
        });
        set.next_back().unwrap_or(0)
    }

    fn canary_step(&mut self) {
        if self.canary_done() {
            return self.enter(
                Phase::Promoting,
                "StepsPassed",
                "every canary step passed; promoting".into(),
            );
        }
        let index = self
            .st
            .canary
            .as_ref()
            .map_or(0, |c| c.current_step.max(0) as usize);
        let since = self
            .st
            .canary
            .as_ref()
            .and_then(|c| c.step_since.clone())
            .or(self.st.phase_since.clone());
        match self.steps.get(index).cloned() {
            Some(CheckedStep::SetWeight(weight)) => self.set_weight_step(weight, since),
            Some(CheckedStep::Pause(duration)) => self.pause_step(duration, since),
            Some(CheckedStep::AnalyzeCount(n)) => self.analysis_step(Some(n), None),
            Some(CheckedStep::AnalyzeFor(d)) => self.analysis_step(None, Some(d)),
            None => {}
        }
    }

    fn set_weight_step(&mut self, weight: i32, since: Option<Time>) {
        let actual = self.actual_weight();
        if let Some(canary) = self.st.canary.as_mut() {
            canary.requested_weight = weight;
            canary.actual_weight = actual;
        }
        if self.weight_reached() {
            return self.next_canary_step(&format!("weight {weight}% reached"));
        }
        self.past_deadline(
            since.as_ref(),
            self.progress_deadline(),
            "ProgressDeadlineExceeded",
        );
    }

    fn weight_reached(&self) -> bool {
        let (Some(candidate), Some(stable)) = (self.candidate(), self.st.stable.clone()) else {
            return false;
        };
        let (want_candidate, want_stable) = super::render::canary_api_split(self);
        let c = self.release(&candidate.hash);
        let s = self.release(&stable.hash);
        c.api.ready >= want_candidate && s.api.desired <= want_stable
    }

    pub(super) fn actual_weight(&self) -> i32 {
        let (Some(candidate), Some(stable)) = (self.candidate(), self.st.stable.clone()) else {
            return 0;
        };
        let c = self.release(&candidate.hash).api.ready;
        let total = c + self.release(&stable.hash).api.ready;
        if total <= 0 {
            0
        } else {
            ((f64::from(c) * 100.0) / f64::from(total)).round() as i32
        }
    }

    fn pause_step(&mut self, duration: Option<Duration>, since: Option<Time>) {
        let Some(duration) = duration else {
            return self.enter(
                Phase::Paused,
                "PausedAtStep",
                "paused until auren.io/promote".into(),
            );
        };
        let until = since.map_or(self.now(), |t| plus(t.0, duration));
        if self.now() >= until {
            return self.next_canary_step("pause over");
        }
        self.due_at(until);
    }

    fn analysis_step(&mut self, count: Option<i32>, duration: Option<Duration>) {
        if self.phase() != Some(Phase::Analyzing) {
            return self.start_analysis();
        }
        let Some(progress) = self.st.analysis.clone() else {
            return self.start_analysis();
        };
        let over = duration.is_some_and(|d| self.now() >= plus(progress.started_at.0, d));
        let counted = count.is_some_and(|n| progress.successes >= n);
        if counted || (over && progress.successes > 0) {
            return self.next_canary_step("analysis step passed");
        }
        self.schedule_measurement(&progress);
        let budget = match duration {
            Some(d) => d + self.analysis_budget(0),
            None => self.analysis_budget(count.unwrap_or(1)),
        };
        self.past_deadline(
            Some(&progress.started_at),
            budget,
            "AnalysisDeadlineExceeded",
        );
    }

    fn next_canary_step(&mut self, why: &str) {
        let now = Time(self.now());
        let Some(canary) = self.st.canary.as_mut() else {
            return;
        };
        canary.current_step += 1;
        canary.step_since = Some(now);
        let step = canary.current_step;
        self.st.analysis = None;
        self.event(
            EventKind::Normal,
            "StepCompleted",
            format!("canary step {} done: {why}", step - 1),
        );
        self.st.phase = Some(Phase::Progressing);
        self.st.reason = Some("CanaryStep".into());
        self.st.message = Some(format!("canary step {step} of {}", self.steps.len()));
        self.canary_step();
    }

    pub(super) fn active_target(&self) -> ServiceTarget {
        ServiceTarget::active_of(&self.st)
    }
}

fn restarts(release: &ReleaseState) -> i32 {
    release
        .api
        .restarts
        .saturating_add(release.consumer.restarts)
}

fn count(progress: &mut AnalysisProgress, verdict: Verdict) {
    match verdict {
        Verdict::Pass => {
            progress.successes += 1;
            progress.consecutive_failures = 0;
        }
        Verdict::Fail => {
            progress.failures += 1;
            progress.consecutive_failures += 1;
        }
        Verdict::Inconclusive => progress.inconclusive += 1,
        // Neither a success nor a failure: the failures in a row stay as they were.
        Verdict::DependencyOutage => progress.dependency_outages += 1,
    }
}

/// Measurements of `revision` newer than `after`, grouped by their window end, oldest first.
fn rounds(
    measurements: &[Measurement],
    revision: &str,
    after: Option<&Time>,
) -> Vec<Vec<Measurement>> {
    let mut fresh: Vec<&Measurement> = measurements
        .iter()
        .filter(|m| m.revision == revision && after.is_none_or(|a| m.at > *a))
        .collect();
    fresh.sort_by(|a, b| a.at.cmp(&b.at));
    let mut grouped: Vec<Vec<Measurement>> = Vec::new();
    for m in fresh {
        match grouped.last_mut() {
            Some(round) if round.first().is_some_and(|f| f.at == m.at) => round.push(m.clone()),
            _ => grouped.push(vec![m.clone()]),
        }
    }
    grouped
}

/// `at + duration`, saturating at the far future.
pub(super) fn plus(at: Timestamp, duration: Duration) -> Timestamp {
    let signed = SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX);
    at.checked_add(signed).unwrap_or(Timestamp::MAX)
}
