//! The canary steps: weights, pauses and analysis steps, one after another.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{CheckedStep, Phase};
use crate::rollout::clock::plus;
use crate::rollout::render::split;
use crate::rollout::world::{EventKind, ServiceTarget};

use super::Decision;

impl Decision<'_> {
    pub(super) fn canary_done(&self) -> bool {
        self.status
            .canary
            .as_ref()
            .is_some_and(|c| c.current_step as usize >= self.steps.len())
    }

    /// The weight the steps so far ask for.
    pub(super) fn requested_weight(&self) -> i32 {
        let upto = self
            .status
            .canary
            .as_ref()
            .map_or(0, |c| c.current_step.max(0) as usize);
        let mut set = self.steps.iter().take(upto + 1).filter_map(|s| match s {
            CheckedStep::SetWeight(w) => Some(*w),
            _ => None,
        });
        set.next_back().unwrap_or(0)
    }

    pub(super) fn canary_step(&mut self) {
        if self.canary_done() {
            return self.enter(
                Phase::Promoting,
                "StepsPassed",
                "every canary step passed; promoting".into(),
            );
        }
        let index = self
            .status
            .canary
            .as_ref()
            .map_or(0, |c| c.current_step.max(0) as usize);
        let since = self
            .status
            .canary
            .as_ref()
            .and_then(|c| c.step_since.clone())
            .or(self.status.phase_since.clone());
        match self.steps.get(index).cloned() {
            Some(CheckedStep::SetWeight(weight)) => self.set_weight_step(weight, since),
            Some(CheckedStep::Pause(duration)) => self.pause_step(duration, since),
            Some(CheckedStep::AnalyzeCount(n)) => self.analysis_step(Some(n), None),
            Some(CheckedStep::AnalyzeFor(d)) => self.analysis_step(None, Some(d)),
            None => {}
        }
    }

    pub(super) fn set_weight_step(&mut self, weight: i32, since: Option<Time>) {
        let actual = self.actual_weight();
        if let Some(canary) = self.status.canary.as_mut() {
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

    pub(super) fn weight_reached(&self) -> bool {
        let (Some(candidate), Some(stable)) = (self.candidate(), self.status.stable.clone()) else {
            return false;
        };
        let (want_candidate, want_stable) =
            split(self.observed.spec.api.replicas, self.requested_weight());
        let c = self.release(&candidate.hash);
        let s = self.release(&stable.hash);
        c.api.ready >= want_candidate && s.api.desired <= want_stable
    }

    pub(super) fn actual_weight(&self) -> i32 {
        let (Some(candidate), Some(stable)) = (self.candidate(), self.status.stable.clone()) else {
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

    pub(super) fn pause_step(&mut self, duration: Option<Duration>, since: Option<Time>) {
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

    pub(super) fn analysis_step(&mut self, count: Option<i32>, duration: Option<Duration>) {
        if self.phase() != Some(Phase::Analyzing) {
            return self.start_analysis();
        }
        let Some(progress) = self.status.analysis.clone() else {
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

    pub(super) fn next_canary_step(&mut self, why: &str) {
        let now = Time(self.now());
        let Some(canary) = self.status.canary.as_mut() else {
            return;
        };
        canary.current_step += 1;
        canary.step_since = Some(now);
        let step = canary.current_step;
        self.status.analysis = None;
        self.event(
            EventKind::Normal,
            "StepCompleted",
            format!("canary step {} done: {why}", step - 1),
        );
        self.status.phase = Some(Phase::Progressing);
        self.status.reason = Some("CanaryStep".into());
        self.status.message = Some(format!("canary step {step} of {}", self.steps.len()));
        self.canary_step();
    }

    pub(super) fn active_target(&self) -> ServiceTarget {
        ServiceTarget::active_of(&self.status)
    }
}
