//! The analysis: measurements folded into its progress, judged, and the next one scheduled.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::analysis::{outage_limit_at, round_verdict, track_outage};
use crate::api::{AnalysisProgress, MAX_MEASUREMENTS, Measurement, Phase, Verdict, parse_duration};
use crate::rollout::clock::plus;
use crate::rollout::world::EventKind;

use super::{DEPENDENCY_OUTAGE, Decision};

impl Decision<'_> {
    pub(super) fn start_analysis(&mut self) {
        let Some(candidate) = self.candidate() else {
            return;
        };
        self.status.analysis = Some(AnalysisProgress::begin(&candidate.hash, Time(self.now())));
        self.enter(
            Phase::Analyzing,
            "Analyzing",
            format!("release {} is ready; measuring it", candidate.hash),
        );
    }

    pub(super) fn interval(&self) -> Duration {
        parse_duration(&self.observed.spec.analysis.interval).unwrap_or(Duration::from_secs(10))
    }

    pub(super) fn initial_delay(&self) -> Duration {
        parse_duration(&self.observed.spec.analysis.initial_delay).unwrap_or_default()
    }

    /// Time an analysis of `rounds` passing rounds may take, failures and slack included.
    pub(super) fn analysis_budget(&self, rounds: i32) -> Duration {
        let spec = &self.observed.spec.analysis;
        let rounds = u32::try_from(rounds.saturating_add(spec.failure_limit).saturating_add(1))
            .unwrap_or(u32::MAX);
        self.initial_delay() + self.interval().saturating_mul(rounds) + self.progress_deadline()
    }

    pub(super) fn analyzing(&mut self) {
        if self.candidate_crashed() || self.fold_and_judge() {
            return;
        }
        if self.status.canary.is_some() {
            return self.canary_step();
        }
        let needed = self
            .observed
            .spec
            .analysis
            .successful_measurements_to_promote;
        let Some(progress) = self.status.analysis.clone() else {
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

    pub(super) fn schedule_measurement(&mut self, progress: &AnalysisProgress) {
        let first = plus(progress.started_at.0, self.initial_delay());
        let next = progress
            .last_measured_at
            .as_ref()
            .map_or(first, |t| plus(t.0, self.interval()));
        self.due_at(next.max(first));
    }

    /// Counts new measurements; true when the rollout ended or paused because of them.
    pub(super) fn fold_and_judge(&mut self) -> bool {
        let Some(candidate) = self.candidate() else {
            return false;
        };
        let rounds = self.fold(&candidate.hash);
        let Some(progress) = self.status.analysis.clone() else {
            return false;
        };
        let limits = &self.observed.spec.analysis;
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
    pub(super) fn wait_for_dependency(&mut self) {
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
        if self.status.reason.as_deref() != Some(DEPENDENCY_OUTAGE) {
            self.event(EventKind::Warning, DEPENDENCY_OUTAGE, message.clone());
        }
        self.status.reason = Some(DEPENDENCY_OUTAGE.into());
        self.status.message = Some(message);
    }

    /// A counted round after an outage: the analysis goes on as before.
    pub(super) fn dependency_recovered(&mut self) {
        if self.status.reason.as_deref() != Some(DEPENDENCY_OUTAGE) {
            return;
        }
        let message = "the dependency outage ended; measuring again".to_owned();
        self.event(EventKind::Normal, "DependencyRecovered", message.clone());
        self.status.reason = Some("Analyzing".into());
        self.status.message = Some(message);
    }

    /// A canary at a weight above 0 serves production; a blue/green preview does not.
    pub(super) fn carries_live_traffic(&self) -> bool {
        self.status.canary.is_some() && self.requested_weight() > 0
    }

    /// True when outage rounds in a row have held the analysed release for
    /// `maxLiveOutageSeconds` (otherwise that moment becomes due).
    pub(super) fn live_outage_over(&mut self) -> bool {
        let Some(over_at) = (self.status.analysis.as_ref())
            .and_then(|p| outage_limit_at(p, Duration::from_secs(self.max_live_outage_seconds())))
        else {
            return false;
        };
        if self.now() < over_at {
            self.due_at(over_at);
        }
        self.now() >= over_at
    }

    pub(super) fn live_outage_message(&self) -> String {
        format!(
            "a dependency outage held it with live traffic for {}s ({}); if it caused the \
             outage, the rollback ends it",
            self.max_live_outage_seconds(),
            self.newest_outage()
        )
    }

    pub(super) fn max_live_outage_seconds(&self) -> u64 {
        u64::try_from(self.observed.spec.analysis.max_live_outage_seconds).unwrap_or(0)
    }

    pub(super) fn newest_outage(&self) -> String {
        let newest = (self.status.measurements.iter().rev())
            .find(|m| m.verdict == Verdict::DependencyOutage);
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
    pub(super) fn fold(&mut self, revision: &str) -> Vec<Verdict> {
        let Some(mut progress) = self
            .status
            .analysis
            .clone()
            .filter(|p| p.revision == revision)
        else {
            return Vec::new();
        };
        let mut verdicts = Vec::new();
        for round in rounds(
            self.observed.measurements,
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
        self.status.analysis = Some(progress);
        verdicts
    }

    pub(super) fn keep_measurements(&mut self, round: Vec<Measurement>) {
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
        self.status.measurements.extend(round);
        let excess = self
            .status
            .measurements
            .len()
            .saturating_sub(MAX_MEASUREMENTS);
        self.status.measurements.drain(..excess);
    }

    /// The newest failed or inconclusive measurements (an outage is not the release's own).
    pub(super) fn failing_summary(&self) -> String {
        let failing = self
            .status
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

    pub(super) fn analysis_passed(&mut self) {
        let bg = self.observed.spec.blue_green();
        let now = Time(self.now());
        let Some(progress) = self.status.analysis.as_mut() else {
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
