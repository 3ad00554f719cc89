//! A release noticed in the spec, the first release installed, and a candidate getting ready.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{
    ActiveSelection, CanaryStatus, MAX_HISTORY, Outcome, Phase, ReleaseRecord, RevisionRef,
};
use crate::rollout::clock::plus;
use crate::rollout::pointing;

use super::Decision;

impl Decision<'_> {
    /// Notices a new release in the spec, or a spec that went back to the stable release.
    pub(super) fn track_release(&mut self, retry: bool) {
        let desired = self.observed.desired.clone();
        let is = |r: &Option<RevisionRef>| r.as_ref().is_some_and(|r| r.hash == desired.hash);
        if is(&self.status.candidate) {
            return;
        }
        if self.status.stable.is_none() && self.status.candidate.is_none() {
            return self.start_candidate(desired, "Installing");
        }
        if is(&self.status.stable) {
            return self.abandon_candidate();
        }
        if is(&self.status.rejected) && !retry {
            return;
        }
        self.supersede_candidate();
        self.start_candidate(desired, "NewRelease");
    }

    pub(super) fn start_candidate(&mut self, candidate: RevisionRef, reason: &str) {
        let message = format!("release {} ({}) starts", candidate.hash, candidate.image);
        self.status.rejected = None;
        self.status.analysis = None;
        self.status.canary = (!self.steps.is_empty()).then(CanaryStatus::default);
        self.status.candidate = Some(candidate);
        self.status.phase = None;
        self.enter(Phase::Progressing, reason, message);
    }

    pub(super) fn abandon_candidate(&mut self) {
        if self.status.candidate.is_some() {
            self.supersede_candidate();
            self.status.services.active = self.stable_selection();
            self.enter(
                Phase::Healthy,
                "Reverted",
                "the spec asks for the stable release again".into(),
            );
        }
    }

    pub(super) fn supersede_candidate(&mut self) {
        if let Some(old) = self.status.candidate.take() {
            self.record(&old, Outcome::Superseded, "Superseded");
            self.status.analysis = None;
            self.status.canary = None;
        }
    }

    pub(super) fn record(&mut self, release: &RevisionRef, outcome: Outcome, reason: &str) {
        let record = ReleaseRecord {
            hash: release.hash.clone(),
            image: release.image.clone(),
            outcome,
            reason: reason.to_owned(),
            at: Time(self.now()),
        };
        self.status.history.push(record);
        let excess = self.status.history.len().saturating_sub(MAX_HISTORY);
        self.status.history.drain(..excess);
    }

    pub(super) fn progressing(&mut self) {
        if self.candidate_crashed() {
            return;
        }
        if self.status.stable.is_none() {
            return self.installing();
        }
        if self.status.canary.is_some() {
            return self.canary_step();
        }
        if self.candidate_ready(self.preview_replicas()) {
            return self.start_analysis();
        }
        let since = self.status.phase_since.clone();
        self.past_deadline(
            since.as_ref(),
            self.progress_deadline(),
            "ProgressDeadlineExceeded",
        );
    }

    pub(super) fn preview_replicas(&self) -> i32 {
        let spec = self.observed.spec;
        spec.blue_green()
            .preview_replicas
            .unwrap_or(spec.api.replicas)
            .min(spec.api.replicas.max(1))
    }

    pub(super) fn candidate_ready(&self, api_replicas: i32) -> bool {
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
        let spec = &self.observed.spec.consumer;
        let stable = spec.autoscaler.as_ref().and(self.status.stable.as_ref());
        let observed =
            stable.and_then(|s| self.observed.releases.iter().find(|r| r.revision == s.hash));
        observed.map_or(spec.replicas, |r| r.consumer.desired)
    }

    /// What the consumer autoscaler targets: the stable release, once there is one.
    pub(super) fn autoscaler_target(&self) -> Option<String> {
        pointing::autoscaler_record(self.observed.spec, &self.status.stable.as_ref()?.hash)
    }

    /// The first release: no analysis (nothing to compare with), Healthy once it serves.
    pub(super) fn installing(&mut self) {
        let Some(candidate) = self.candidate() else {
            return;
        };
        self.status.services.active = Some(ActiveSelection::Release(candidate.hash.clone()));
        let release = self.release(&candidate.hash);
        let consumers = self.consumer_replicas();
        let consuming = consumers == 0 || release.roles.confirmed_active(consumers);
        if self.candidate_ready(self.observed.spec.api.replicas) && consuming {
            self.status.candidate = None;
            self.status.stable = Some(candidate.clone());
            self.record(&candidate, Outcome::Promoted, "Installed");
            return self.enter(
                Phase::Healthy,
                "Installed",
                format!("release {} serves", candidate.hash),
            );
        }
        let deadline = self
            .status
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
}
