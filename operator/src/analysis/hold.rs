//! How long dependency-outage rounds hold a release. An outage round is neither a success nor
//! a failure, so on its own it would let the analysis wait until its deadline; a release that
//! carries live traffic meanwhile (a canary at a weight above 0, a fresh promotion in its
//! watch) may be the outage's cause, so the decision bounds that wait with the outage's age.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::api::{AnalysisProgress, Verdict};

/// Folds one round into the outage streak: the first outage round in a row starts it at the
/// start of its window, a passing or failing round ends it, an inconclusive one leaves it.
pub fn track_outage(progress: &mut AnalysisProgress, verdict: Verdict, window_start: &Time) {
    match verdict {
        Verdict::DependencyOutage => {
            progress
                .outage_since
                .get_or_insert_with(|| window_start.clone());
        }
        Verdict::Pass | Verdict::Fail => progress.outage_since = None,
        Verdict::Inconclusive => {}
    }
}

/// When the running outage streak has held the release for `limit`; `None` without one.
pub fn outage_limit_at(progress: &AnalysisProgress, limit: Duration) -> Option<Timestamp> {
    let since = progress.outage_since.as_ref()?;
    let limit = SignedDuration::try_from(limit).unwrap_or(SignedDuration::MAX);
    Some(since.0.checked_add(limit).unwrap_or(Timestamp::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(second).unwrap())
    }

    #[test]
    fn the_streak_starts_with_the_first_outage_window_and_ends_with_a_counted_round() {
        use Verdict::{DependencyOutage, Fail, Inconclusive, Pass};
        let limit = Duration::from_secs(60);
        let mut p = AnalysisProgress::begin("r", at(0));
        assert_eq!(outage_limit_at(&p, limit), None, "no streak, no limit");
        let rounds = [
            (DependencyOutage, 10, Some(10)),
            (DependencyOutage, 20, Some(10)),
            (Inconclusive, 30, Some(10)),
            (DependencyOutage, 40, Some(10)),
            (Pass, 50, None),
            (DependencyOutage, 60, Some(60)),
            (Fail, 70, None),
        ];
        for (verdict, start, since) in rounds {
            track_outage(&mut p, verdict, &at(start));
            assert_eq!(p.outage_since, since.map(at), "{verdict:?} at {start}");
        }
        track_outage(&mut p, DependencyOutage, &at(80));
        assert_eq!(outage_limit_at(&p, limit), Some(at(140).0));
    }
}
