//! A release noticed in the spec, the first release installed, and a candidate getting ready.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{CanaryStatus, MAX_HISTORY, Outcome, Phase, ReleaseRecord, RevisionRef};
use crate::rollout::clock::plus;
use crate::rollout::pointing;

use super::Decision;

impl Decision<'_> {
    /// Notices a new release in the spec, or a spec that went back to the stable release.
    pub(super) fn track_release(&mut self, retry: bool) {
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

    pub(super) fn start_candidate(&mut self, candidate: RevisionRef, reason: &str) {
        let message = format!("release {} ({}) starts", candidate.hash, candidate.image);
        self.st.rejected = None;
        self.st.analysis = None;
        self.st.canary = (!self.steps.is_empty()).then(CanaryStatus::default);
        self.st.candidate = Some(candidate);
        self.st.phase = None;
        self.enter(Phase::Progressing, reason, message);
    }

    pub(super) fn abandon_candidate(&mut self) {
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

    pub(super) fn supersede_candidate(&mut self) {
        if let Some(old) = self.st.candidate.take() {
            self.record(&old, Outcome::Superseded, "Superseded");
            self.st.analysis = None;
            self.st.canary = None;
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
        self.st.history.push(record);
        let excess = self.st.history.len().saturating_sub(MAX_HISTORY);
        self.st.history.drain(..excess);
    }

    pub(super) fn progressing(&mut self) {
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
        let spec = &self.obs.spec.consumer;
        let stable = spec.autoscaler.as_ref().and(self.st.stable.as_ref());
        let observed = stable.and_then(|s| self.obs.releases.iter().find(|r| r.revision == s.hash));
        observed.map_or(spec.replicas, |r| r.consumer.desired)
    }

    /// What the consumer autoscaler targets: the stable release, once there is one.
    pub(super) fn autoscaler_target(&self) -> Option<String> {
        pointing::autoscaler_record(self.obs.spec, &self.st.stable.as_ref()?.hash)
    }

    /// The first release: no analysis (nothing to compare with), Healthy once it serves.
    pub(super) fn installing(&mut self) {
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
}
