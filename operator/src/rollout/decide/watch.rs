//! The settled phases (Healthy, Degraded, RolledBack) and the post-promotion watch of a new
//! stable release while the previous one is still up.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{ActiveSelection, AnalysisProgress, Outcome, Phase, RevisionRef};
use crate::rollout::world::EventKind;

use super::{Decision, restarts};

impl Decision<'_> {
    /// Counters for the post-promotion watch of the new stable release.
    pub(super) fn watch_progress(&self, revision: &str) -> AnalysisProgress {
        AnalysisProgress::begin(revision, Time(self.now()))
    }

    /// Healthy, Degraded, RolledBack: watch the stable release (and the fresh promotion).
    pub(super) fn settled(&mut self) {
        if self.post_promotion_failed() {
            return;
        }
        if self.status.stable.is_none() {
            return self.installing();
        }
        let Some(stable) = self.status.stable.clone() else {
            return;
        };
        let release = self.release(&stable.hash);
        let unavailable = release.api.crash_looping
            || (self.observed.spec.api.replicas > 0 && release.api.ready == 0);
        match (unavailable, self.phase()) {
            (true, Some(Phase::Degraded)) => {}
            (true, _) => self.enter(
                Phase::Degraded,
                "StableUnavailable",
                format!("no API pod of release {} is ready", stable.hash),
            ),
            (false, Some(Phase::Degraded)) => {
                let back = if self.status.rejected.is_some() {
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
        self.status.services.active = Some(ActiveSelection::Release(stable.hash));
    }

    /// Inside the scale-down window a failing or crashing new stable release switches back.
    pub(super) fn post_promotion_failed(&mut self) -> bool {
        let (Some(previous), Some(stable)) =
            (self.status.previous.clone(), self.status.stable.clone())
        else {
            return false;
        };
        self.fold(&stable.hash);
        let release = self.release(&stable.hash);
        let limits = &self.observed.spec.analysis;
        let failed = self.status.analysis.as_ref().is_some_and(|p| {
            p.revision == stable.hash
                && (p.failures >= limits.failure_limit
                    || p.consecutive_failures >= limits.consecutive_failure_limit)
        });
        let watched = self
            .status
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
        self.status.rejected = Some(stable.clone());
        self.status.stable = Some(RevisionRef {
            hash: previous.hash.clone(),
            image: previous.image,
        });
        self.status.previous = None;
        self.status.services.active = Some(ActiveSelection::Release(previous.hash.clone()));
        let message = format!(
            "release {} failed after promotion ({why}); back on {}",
            stable.hash, previous.hash
        );
        self.enter(Phase::RolledBack, "PostPromotionFailure", message);
        true
    }

    pub(super) fn expire_previous(&mut self) {
        let Some(previous) = self.status.previous.clone() else {
            return;
        };
        if self.now() < previous.scale_down_at.0 {
            return self.due_at(previous.scale_down_at.0);
        }
        if self.outage_holds_watch() {
            return;
        }
        self.status.previous = None;
        if self
            .status
            .analysis
            .as_ref()
            .is_some_and(|p| Some(&p.revision) == self.status.stable.as_ref().map(|s| &s.hash))
        {
            self.status.analysis = None;
        }
        self.event(
            EventKind::Normal,
            "ScaledDown",
            format!("previous release {} scaled down", previous.hash),
        );
    }

    /// An outage holds the post-promotion watch: the previous release stays up (bounded by
    /// `maxLiveOutageSeconds`, then the watch switches back) so the watch does not end blind.
    pub(super) fn outage_holds_watch(&self) -> bool {
        let stable = self.status.stable.as_ref().map(|s| s.hash.as_str());
        (self.status.analysis.as_ref())
            .is_some_and(|p| Some(p.revision.as_str()) == stable && p.outage_since.is_some())
    }
}
