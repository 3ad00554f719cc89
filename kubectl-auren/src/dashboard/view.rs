//! The dashboard's view-model: what the page shows of each AurenRuntime, computed purely from
//! the watched objects. [`Board`] follows the watch events and keeps the measurements it has
//! seen (status keeps only the newest [`MAX_MEASUREMENTS`](auren_operator::api::MAX_MEASUREMENTS)), so
//! the chart covers the whole time the dashboard has been running.

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;
use kube::runtime::watcher;
use serde::Serialize;

use auren_operator::api::{AurenRuntime, AurenRuntimeStatus, Measurement, Outcome, Verdict};
use auren_operator::rollout::Control;

/// Points kept per AurenRuntime across all checks (the oldest are dropped first).
pub const MAX_POINTS: usize = 600;

/// Everything the page renders.
#[derive(Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BoardView {
    /// What is watched: a namespace or every namespace.
    pub scope: String,
    /// Whether the promote/abort/retry buttons are offered.
    pub actions: bool,
    /// The watched AurenRuntimes, by namespace then name.
    pub runtimes: Vec<RuntimeView>,
}

/// One AurenRuntime as the page shows it.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeView {
    pub namespace: String,
    pub name: String,
    /// The phase, `-` before the operator wrote a status.
    pub phase: String,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub phase_since: Option<String>,
    /// Ready API pods behind the active Service (`ready/desired`).
    pub ready: Option<String>,
    /// Stable, candidate, previous and rejected, those that exist, in that order.
    pub releases: Vec<ReleaseView>,
    pub traffic: TrafficView,
    pub analysis: Option<AnalysisView>,
    /// The measurements seen, one series per check, each oldest first.
    pub series: Vec<SeriesView>,
    /// Past releases, newest first.
    pub history: Vec<HistoryView>,
}

/// A release in one of the four roles.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseView {
    /// `stable`, `candidate`, `previous` or `rejected`.
    pub role: &'static str,
    pub hash: String,
    pub image: String,
    /// When a previous release is scaled down.
    pub scale_down_at: Option<String>,
}

/// Where traffic goes.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrafficView {
    /// `blueGreen` or `canary`.
    pub strategy: &'static str,
    /// Revision behind the active Service (`*`: every revision, a canary in progress).
    pub active: Option<String>,
    /// Revision behind the preview Service.
    pub preview: Option<String>,
    pub canary: Option<CanaryView>,
}

/// A canary's step and weights.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CanaryView {
    /// The step being run, counted from 1 (`steps + 1` once all passed).
    pub step: i32,
    pub steps: usize,
    pub requested_weight: i32,
    pub actual_weight: i32,
}

/// The analysis counters of the candidate.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisView {
    pub revision: String,
    pub successes: i32,
    pub failures: i32,
    pub consecutive_failures: i32,
    pub inconclusive: i32,
    pub dependency_outages: i32,
    pub passed: bool,
}

/// The measurements of one check.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SeriesView {
    pub check: String,
    pub points: Vec<PointView>,
}

/// One measurement.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PointView {
    /// End of the window, RFC 3339.
    pub at: String,
    /// The same instant in milliseconds since the epoch (the chart's x axis).
    pub t: i64,
    /// No value: the check had no data.
    pub value: Option<f64>,
    pub verdict: &'static str,
    pub revision: String,
    pub threshold: String,
    pub reason: Option<String>,
}

/// A past release.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HistoryView {
    pub at: String,
    pub hash: String,
    pub image: String,
    pub outcome: &'static str,
    pub reason: String,
}

/// The watched AurenRuntimes and the measurements seen of each.
#[derive(Default, Debug)]
pub struct Board {
    runtimes: BTreeMap<(String, String), Tracked>,
    /// Keys listed since the watch (re)started; `None` outside a relist.
    relisting: Option<BTreeSet<(String, String)>>,
}

#[derive(Debug)]
struct Tracked {
    runtime: AurenRuntime,
    points: Vec<Measurement>,
}

fn key_of(ar: &AurenRuntime) -> (String, String) {
    (ar.namespace().unwrap_or_default(), ar.name_any())
}

impl Board {
    /// Follows one watch event; a relist drops the AurenRuntimes that are gone.
    pub fn apply(&mut self, event: watcher::Event<AurenRuntime>) {
        match event {
            watcher::Event::Apply(ar) => self.observe(ar),
            watcher::Event::Delete(ar) => {
                self.runtimes.remove(&key_of(&ar));
            }
            watcher::Event::Init => self.relisting = Some(BTreeSet::new()),
            watcher::Event::InitApply(ar) => {
                if let Some(seen) = self.relisting.as_mut() {
                    seen.insert(key_of(&ar));
                }
                self.observe(ar);
            }
            watcher::Event::InitDone => {
                if let Some(seen) = self.relisting.take() {
                    self.runtimes.retain(|key, _| seen.contains(key));
                }
            }
        }
    }

    /// Records the newest state of `ar` and adds its new measurements to those seen.
    pub fn observe(&mut self, ar: AurenRuntime) {
        let tracked = self.runtimes.entry(key_of(&ar)).or_insert_with(|| Tracked {
            runtime: ar.clone(),
            points: Vec::new(),
        });
        let status = ar.status.clone().unwrap_or_default();
        merge_measurements(&mut tracked.points, &status.measurements);
        tracked.runtime = ar;
    }

    /// Whether `namespace/name` is watched.
    pub fn contains(&self, namespace: &str, name: &str) -> bool {
        self.runtimes
            .contains_key(&(namespace.to_owned(), name.to_owned()))
    }

    /// The page's data.
    pub fn view(&self, scope: &str, actions: bool) -> BoardView {
        BoardView {
            scope: scope.to_owned(),
            actions,
            runtimes: self
                .runtimes
                .values()
                .map(|t| runtime_view(&t.runtime, &t.points))
                .collect(),
        }
    }
}

/// Adds the measurements not seen yet (same check, revision and time), keeping time order and
/// at most [`MAX_POINTS`].
fn merge_measurements(seen: &mut Vec<Measurement>, newest: &[Measurement]) {
    for m in newest {
        let known = seen
            .iter()
            .any(|s| s.check == m.check && s.revision == m.revision && s.at == m.at);
        if !known {
            seen.push(m.clone());
        }
    }
    seen.sort_by_key(|m| m.at.0);
    let excess = seen.len().saturating_sub(MAX_POINTS);
    seen.drain(..excess);
}

/// One AurenRuntime as the page shows it, with the measurements seen of it.
pub fn runtime_view(ar: &AurenRuntime, points: &[Measurement]) -> RuntimeView {
    let st = ar.status.clone().unwrap_or_default();
    RuntimeView {
        namespace: ar.namespace().unwrap_or_default(),
        name: ar.name_any(),
        phase: st.phase.map_or("-", |p| p.as_str()).to_owned(),
        reason: st.reason.clone(),
        message: st.message.clone(),
        phase_since: st.phase_since.as_ref().map(|t| t.0.to_string()),
        ready: st.ready.clone(),
        releases: releases(&st),
        traffic: traffic(ar, &st),
        analysis: st.analysis.as_ref().map(|a| AnalysisView {
            revision: a.revision.clone(),
            successes: a.successes,
            failures: a.failures,
            consecutive_failures: a.consecutive_failures,
            inconclusive: a.inconclusive,
            dependency_outages: a.dependency_outages,
            passed: a.passed_at.is_some(),
        }),
        series: series(points),
        history: history(&st),
    }
}

fn releases(st: &AurenRuntimeStatus) -> Vec<ReleaseView> {
    let plain = |role, r: &auren_operator::api::RevisionRef| ReleaseView {
        role,
        hash: r.hash.clone(),
        image: r.image.clone(),
        scale_down_at: None,
    };
    let mut out: Vec<ReleaseView> = Vec::new();
    out.extend(st.stable.as_ref().map(|r| plain("stable", r)));
    out.extend(st.candidate.as_ref().map(|r| plain("candidate", r)));
    out.extend(st.previous.as_ref().map(|p| ReleaseView {
        role: "previous",
        hash: p.hash.clone(),
        image: p.image.clone(),
        scale_down_at: Some(p.scale_down_at.0.to_string()),
    }));
    out.extend(st.rejected.as_ref().map(|r| plain("rejected", r)));
    out
}

fn traffic(ar: &AurenRuntime, st: &AurenRuntimeStatus) -> TrafficView {
    let steps = ar.spec.strategy.canary.as_ref().map(|c| c.steps.len());
    TrafficView {
        strategy: if steps.is_some() {
            "canary"
        } else {
            "blueGreen"
        },
        active: st.services.active_text().map(str::to_owned),
        preview: st.services.preview.clone(),
        canary: st.canary.as_ref().map(|c| CanaryView {
            step: c.current_step + 1,
            steps: steps.unwrap_or_default(),
            requested_weight: c.requested_weight,
            actual_weight: c.actual_weight,
        }),
    }
}

fn series(points: &[Measurement]) -> Vec<SeriesView> {
    let mut by_check: BTreeMap<&str, Vec<PointView>> = BTreeMap::new();
    for m in points {
        by_check.entry(&m.check).or_default().push(point(m));
    }
    by_check
        .into_iter()
        .map(|(check, points)| SeriesView {
            check: check.to_owned(),
            points,
        })
        .collect()
}

fn point(m: &Measurement) -> PointView {
    PointView {
        at: m.at.0.to_string(),
        t: m.at.0.as_millisecond(),
        value: m.value.filter(|v| v.is_finite()),
        verdict: verdict_name(m.verdict),
        revision: m.revision.clone(),
        threshold: m.threshold.clone(),
        reason: m.reason.clone(),
    }
}

fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "Pass",
        Verdict::Fail => "Fail",
        Verdict::Inconclusive => "Inconclusive",
        Verdict::DependencyOutage => "DependencyOutage",
    }
}

fn history(st: &AurenRuntimeStatus) -> Vec<HistoryView> {
    st.history
        .iter()
        .rev()
        .map(|r| HistoryView {
            at: r.at.0.to_string(),
            hash: r.hash.clone(),
            image: r.image.clone(),
            outcome: match r.outcome {
                Outcome::Promoted => "Promoted",
                Outcome::RolledBack => "RolledBack",
                Outcome::Superseded => "Superseded",
            },
            reason: r.reason.clone(),
        })
        .collect()
}

/// A control named in a request path (`promote`, `abort`, `retry`).
pub fn control_named(name: &str) -> Option<Control> {
    match name {
        "promote" => Some(Control::Promote),
        "abort" => Some(Control::Abort),
        "retry" => Some(Control::Retry),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn runtime(ns: &str, name: &str, status: Value) -> AurenRuntime {
        serde_json::from_value(json!({
            "apiVersion": "auren.io/v1alpha1", "kind": "AurenRuntime",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"image": "auren/runtime:v2"},
            "status": status,
        }))
        .unwrap()
    }

    fn measurement(check: &str, at: &str, value: Option<f64>, verdict: &str) -> Value {
        json!({"check": check, "revision": "bbb", "value": value, "threshold": "<= 0.01",
               "verdict": verdict, "at": at})
    }

    fn analyzing() -> Value {
        json!({
            "phase": "Analyzing", "reason": "Analyzing", "ready": "1/1",
            "stable": {"hash": "aaa", "image": "auren/runtime:v1"},
            "candidate": {"hash": "bbb", "image": "auren/runtime:v2"},
            "rejected": {"hash": "ccc", "image": "auren/runtime:bad"},
            "services": {"active": "aaa", "preview": "bbb"},
            "analysis": {"revision": "bbb", "startedAt": "2026-12-04T10:00:00Z", "successes": 1,
                         "failures": 0, "consecutiveFailures": 0, "inconclusive": 0},
            "measurements": [
                measurement("errorRatio", "2026-12-04T10:00:03Z", Some(0.0), "Pass"),
                measurement("latency", "2026-12-04T10:00:03Z", None, "Inconclusive"),
            ],
            "history": [
                {"hash": "ccc", "image": "auren/runtime:bad", "outcome": "RolledBack",
                 "reason": "AnalysisFailed", "at": "2026-12-04T09:00:00Z"},
                {"hash": "aaa", "image": "auren/runtime:v1", "outcome": "Promoted",
                 "reason": "Installed", "at": "2026-12-04T09:30:00Z"},
            ],
        })
    }

    #[test]
    fn a_blue_green_rollout_shows_releases_services_and_counters() {
        let rt = runtime_view(&runtime("team", "wearables", analyzing()), &[]);
        assert_eq!(
            (rt.phase.as_str(), rt.reason.as_deref()),
            ("Analyzing", Some("Analyzing"))
        );
        let roles: Vec<_> = rt
            .releases
            .iter()
            .map(|r| (r.role, r.hash.as_str()))
            .collect();
        assert_eq!(
            roles,
            [("stable", "aaa"), ("candidate", "bbb"), ("rejected", "ccc")]
        );
        assert_eq!(rt.traffic.strategy, "blueGreen");
        assert_eq!(rt.traffic.active.as_deref(), Some("aaa"));
        assert_eq!(rt.traffic.preview.as_deref(), Some("bbb"));
        assert!(rt.traffic.canary.is_none());
        let analysis = rt.analysis.unwrap();
        assert_eq!((analysis.successes, analysis.passed), (1, false));
        let history: Vec<_> = rt
            .history
            .iter()
            .map(|h| (h.hash.as_str(), h.outcome))
            .collect();
        assert_eq!(
            history,
            [("aaa", "Promoted"), ("ccc", "RolledBack")],
            "newest first"
        );
    }

    #[test]
    fn a_canary_shows_its_step_counted_from_one_and_its_weights() {
        let mut ar = runtime(
            "team",
            "wearables",
            json!({
                "phase": "Progressing", "services": {"active": "*"},
                "canary": {"currentStep": 0, "requestedWeight": 25, "actualWeight": 20},
            }),
        );
        ar.spec.strategy.canary = serde_json::from_value(json!({
            "steps": [{"setWeight": 25}, {"pause": {}}, {"analysis": {"count": 2}}],
        }))
        .unwrap();
        let rt = runtime_view(&ar, &[]);
        assert_eq!(rt.traffic.strategy, "canary");
        let canary = rt.traffic.canary.unwrap();
        assert_eq!(
            (
                canary.step,
                canary.steps,
                canary.requested_weight,
                canary.actual_weight
            ),
            (1, 3, 25, 20)
        );
    }

    #[test]
    fn an_object_without_status_is_listed_with_a_dash() {
        let mut board = Board::default();
        board.apply(watcher::Event::Apply(runtime("team", "new", json!({}))));
        let view = board.view("namespace team", false);
        assert_eq!(view.runtimes[0].phase, "-");
        assert!(view.runtimes[0].releases.is_empty());
        assert!(view.runtimes[0].series.is_empty());
    }

    #[test]
    fn the_board_keeps_measurements_status_no_longer_holds() {
        let mut board = Board::default();
        board.observe(runtime("team", "wearables", analyzing()));
        let mut later = analyzing();
        later["measurements"] = json!([
            measurement("errorRatio", "2026-12-04T10:00:03Z", Some(0.0), "Pass"),
            measurement("errorRatio", "2026-12-04T10:00:06Z", Some(0.5), "Fail"),
        ]);
        board.observe(runtime("team", "wearables", later));
        let view = board.view("namespace team", false);
        let series = &view.runtimes[0].series;
        let checks: Vec<_> = series
            .iter()
            .map(|s| (s.check.as_str(), s.points.len()))
            .collect();
        assert_eq!(
            checks,
            [("errorRatio", 2), ("latency", 1)],
            "seen once each, the latency too"
        );
        let error_ratio = &series[0].points;
        assert!(error_ratio[0].t < error_ratio[1].t, "oldest first");
        assert_eq!(
            (error_ratio[1].value, error_ratio[1].verdict),
            (Some(0.5), "Fail")
        );
        assert_eq!(series[1].points[0].value, None, "no data stays no data");
    }

    #[test]
    fn measurements_beyond_the_limit_drop_the_oldest() {
        let mut seen = Vec::new();
        let batch: Vec<Measurement> = (0..MAX_POINTS + 5)
            .map(|i| {
                let at = format!("2026-12-04T10:{:02}:{:02}Z", i / 60 % 60, i % 60);
                serde_json::from_value(measurement("errorRatio", &at, Some(i as f64), "Pass"))
                    .unwrap()
            })
            .collect();
        merge_measurements(&mut seen, &batch);
        assert_eq!(seen.len(), MAX_POINTS);
        assert_eq!(seen[0].value, Some(5.0));
    }

    #[test]
    fn deletes_and_relists_drop_what_is_gone() {
        let mut board = Board::default();
        for name in ["a", "b", "c"] {
            board.apply(watcher::Event::Apply(runtime("team", name, json!({}))));
        }
        board.apply(watcher::Event::Delete(runtime("team", "a", json!({}))));
        assert!(!board.contains("team", "a"));
        board.apply(watcher::Event::Init);
        board.apply(watcher::Event::InitApply(runtime("team", "c", json!({}))));
        assert!(
            board.contains("team", "b"),
            "kept until the relist is complete"
        );
        board.apply(watcher::Event::InitDone);
        let names: Vec<_> = board
            .view("", false)
            .runtimes
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["c"]);
        assert!(!board.contains("other", "c"), "namespaces are told apart");
    }

    #[test]
    fn the_json_has_the_names_the_page_reads() {
        let mut board = Board::default();
        board.observe(runtime("team", "wearables", analyzing()));
        let json = serde_json::to_value(board.view("namespace team", true)).unwrap();
        assert_eq!(json["actions"], true);
        let rt = &json["runtimes"][0];
        for field in [
            "phase", "reason", "releases", "traffic", "series", "history", "ready",
        ] {
            assert!(!rt[field].is_null(), "{field} missing: {rt}");
        }
        assert_eq!(rt["series"][0]["points"][0]["verdict"], "Pass");
        assert!(rt["series"][0]["points"][0]["t"].is_i64());
        assert_eq!(rt["traffic"]["strategy"], "blueGreen");
    }

    #[test]
    fn only_the_three_controls_are_named() {
        assert_eq!(control_named("promote"), Some(Control::Promote));
        assert_eq!(control_named("abort"), Some(Control::Abort));
        assert_eq!(control_named("retry"), Some(Control::Retry));
        assert_eq!(control_named("delete"), None);
    }
}
