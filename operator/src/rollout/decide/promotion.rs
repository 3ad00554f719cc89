//! Promotion: the active Service switched to the candidate, then the consumers handed over.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{ActiveSelection, Outcome, Phase, PreviousRevision, RevisionRef};
use crate::rollout::clock::plus;

use super::Decision;

impl Decision<'_> {
    pub(super) fn paused(&mut self) {
        self.candidate_crashed();
    }

    pub(super) fn promoting(&mut self) {
        if self.candidate_crashed() {
            return;
        }
        let Some(candidate) = self.candidate() else {
            return;
        };
        if self.candidate_ready(self.observed.spec.api.replicas) {
            self.status.services.active = Some(ActiveSelection::Release(candidate.hash.clone()));
        }
        if self.handover_done(&candidate) {
            return self.complete_promotion(candidate);
        }
        let since = self.status.phase_since.clone();
        self.past_deadline(
            since.as_ref(),
            self.progress_deadline(),
            "PromotionDeadlineExceeded",
        );
    }

    pub(super) fn handover_done(&self, candidate: &RevisionRef) -> bool {
        let switched = self.status.services.active_release() == Some(candidate.hash.as_str());
        let replicas = self.consumer_replicas();
        let others_standby = self
            .observed
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

    pub(super) fn complete_promotion(&mut self, candidate: RevisionRef) {
        let delay = Duration::from_secs(
            u64::try_from(self.observed.spec.scale_down_delay_seconds()).unwrap_or(0),
        );
        self.status.previous = self.status.stable.take().map(|old| PreviousRevision {
            hash: old.hash,
            image: old.image,
            scale_down_at: Time(plus(self.now(), delay)),
        });
        self.status.stable = Some(candidate.clone());
        self.status.candidate = None;
        self.status.canary = None;
        self.status.analysis = self
            .status
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
}
