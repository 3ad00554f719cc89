//! Values over one analysis window: two scrapes per pod (window start and end), summed over
//! the pods of one revision. Counters are differenced per pod; a counter that went down (the
//! pod restarted) counts from zero, as PromQL's `increase` does.

use std::collections::{BTreeMap, BTreeSet};

use auren_contract::metrics;

use super::exposition::{Exposition, Sample};

/// Breaker gauge value meaning open.
const BREAKER_OPEN: f64 = 2.0;

/// The two scrapes of one pod. `start` is `None` for a pod that appeared during the window.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PodWindow {
    pub start: Option<Exposition>,
    pub end: Exposition,
}

/// The scrapes of every pod of one revision over one window.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Window {
    pub pods: Vec<PodWindow>,
}

fn counter(name: &str) -> String {
    format!("{name}_total")
}

impl Window {
    /// 5xx responses / all responses; `None` without requests.
    pub fn error_ratio(&self) -> Option<f64> {
        let name = counter(metrics::HTTP_REQUESTS);
        let all = self.increase(&name, |_| true)?;
        let errors = self
            .increase(&name, |s| s.label("status").starts_with('5'))
            .unwrap_or(0.0);
        (all > 0.0).then(|| errors / all)
    }

    /// A latency quantile in seconds from the request histogram, interpolated within its
    /// bucket as `histogram_quantile` does; `None` without requests.
    pub fn latency_quantile(&self, quantile: f64) -> Option<f64> {
        let name = format!("{}_bucket", metrics::HTTP_REQUEST_DURATION);
        let mut buckets: BTreeMap<Bound, f64> = BTreeMap::new();
        for pod in &self.pods {
            for (le, increase) in bucket_increases(pod, &name) {
                *buckets.entry(le).or_default() += increase;
            }
        }
        quantile_of(quantile, &buckets)
    }

    /// Consumer lag at the end of the window, summed over partitions and pods.
    pub fn consumer_lag(&self) -> Option<f64> {
        self.gauge_sum(metrics::CONSUMER_LAG)
    }

    /// Records dead-lettered during the window.
    pub fn dead_lettered(&self) -> Option<f64> {
        self.increase(&counter(metrics::EVENTS_DEAD_LETTERED), |_| true)
    }

    /// Events failed during the window (every stage).
    pub fn failed_events(&self) -> Option<f64> {
        self.increase(&counter(metrics::EVENTS_FAILED), |_| true)
    }

    /// Circuit breakers open at the end of the window.
    pub fn breakers_open(&self) -> Option<f64> {
        let name = metrics::CIRCUIT_BREAKER_STATE;
        let mut series = self.pods.iter().flat_map(|p| p.end.series(name)).peekable();
        series.peek()?;
        Some(series.filter(|s| s.value >= BREAKER_OPEN).count() as f64)
    }

    /// Dependencies (the `dependency` label) whose circuit breaker is open at the end of the
    /// window on any pod.
    pub fn open_breakers(&self) -> BTreeSet<String> {
        let name = metrics::CIRCUIT_BREAKER_STATE;
        let series = self.pods.iter().flat_map(|p| p.end.series(name));
        series
            .filter(|s| s.value >= BREAKER_OPEN)
            .map(|s| s.label("dependency").to_owned())
            .collect()
    }

    /// Sum over pods of a counter's increase across the series `keep` selects; `None` when no
    /// pod exposes the counter at all.
    fn increase(&self, name: &str, keep: impl Fn(&Sample) -> bool) -> Option<f64> {
        let mut seen = false;
        let mut total = 0.0;
        for pod in &self.pods {
            for sample in pod.end.series(name).filter(|s| keep(s)) {
                seen = true;
                let before = pod
                    .start
                    .as_ref()
                    .and_then(|start| same_series(start, sample));
                total += counter_increase(before, sample.value);
            }
        }
        seen.then_some(total)
    }

    fn gauge_sum(&self, name: &str) -> Option<f64> {
        let mut values = self
            .pods
            .iter()
            .flat_map(|p| p.end.series(name))
            .map(|s| s.value)
            .peekable();
        values.peek()?;
        Some(values.filter(|v| v.is_finite()).sum())
    }
}

fn same_series(scrape: &Exposition, sample: &Sample) -> Option<f64> {
    scrape
        .series(&sample.name)
        .find(|s| s.labels == sample.labels)
        .map(|s| s.value)
}

fn counter_increase(before: Option<f64>, after: f64) -> f64 {
    let after = if after.is_finite() {
        after.max(0.0)
    } else {
        0.0
    };
    match before {
        Some(before) if before.is_finite() && before <= after => after - before,
        _ => after,
    }
}

/// A bucket's upper bound, ordered (`+Inf` last).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bound(f64);

impl Eq for Bound {}

impl PartialOrd for Bound {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Bound {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Per-bucket increases of one pod over the window, summed over other labels (routes).
fn bucket_increases(pod: &PodWindow, name: &str) -> BTreeMap<Bound, f64> {
    let mut buckets = BTreeMap::new();
    for sample in pod.end.series(name) {
        let Some(le) = parse_le(sample.label("le")) else {
            continue;
        };
        let before = pod
            .start
            .as_ref()
            .and_then(|start| same_series(start, sample));
        *buckets.entry(Bound(le)).or_default() += counter_increase(before, sample.value);
    }
    buckets
}

fn parse_le(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        other => other.parse::<f64>().ok().filter(|v| !v.is_nan()),
    }
}

/// `histogram_quantile` over cumulative buckets: linear interpolation inside the bucket that
/// holds the rank; the highest finite bound when the rank is in `+Inf`.
fn quantile_of(quantile: f64, buckets: &BTreeMap<Bound, f64>) -> Option<f64> {
    let total = buckets
        .get(&Bound(f64::INFINITY))
        .copied()
        .or_else(|| buckets.values().last().copied())?;
    if total <= 0.0 || !(0.0..=1.0).contains(&quantile) {
        return None;
    }
    let rank = quantile * total;
    let mut lower = (0.0, 0.0);
    for (&Bound(le), &count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let share = if count > lower.1 {
                (rank - lower.1) / (count - lower.1)
            } else {
                1.0
            };
            return Some(lower.0 + (le - lower.0) * share);
        }
        lower = (le, count);
    }
    Some(lower.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::exposition::parse;

    fn requests(ok: u32, failed: u32) -> String {
        format!(
            "auren_runtime_http_requests_total{{route=\"/w\",method=\"POST\",status=\"202\"}} {ok}\n\
             auren_runtime_http_requests_total{{route=\"/w\",method=\"POST\",status=\"503\"}} {failed}\n\
             auren_runtime_http_requests_total{{route=\"/health\",method=\"GET\",status=\"200\"}} 0\n"
        )
    }

    fn pod(start: Option<&str>, end: &str) -> PodWindow {
        PodWindow {
            start: start.map(|s| parse(s).unwrap()),
            end: parse(end).unwrap(),
        }
    }

    #[test]
    fn error_ratio_is_summed_over_pods_and_counts_resets_from_zero() {
        let cases: Vec<(&str, Window, Option<f64>)> = vec![
            ("no pods", Window::default(), None),
            (
                "no requests in the window",
                Window {
                    pods: vec![pod(Some(&requests(10, 0)), &requests(10, 0))],
                },
                None,
            ),
            (
                "two pods",
                Window {
                    pods: vec![
                        pod(Some(&requests(100, 0)), &requests(190, 10)),
                        pod(Some(&requests(0, 0)), &requests(100, 0)),
                    ],
                },
                Some(10.0 / 200.0),
            ),
            (
                "pod born in the window",
                Window {
                    pods: vec![pod(None, &requests(30, 10))],
                },
                Some(0.25),
            ),
            (
                "counter reset",
                Window {
                    pods: vec![pod(Some(&requests(500, 0)), &requests(5, 5))],
                },
                Some(0.5),
            ),
            (
                "metric absent",
                Window {
                    pods: vec![pod(None, "other_total 1\n")],
                },
                None,
            ),
        ];
        for (name, window, expected) in cases {
            assert_eq!(window.error_ratio(), expected, "{name}");
        }
    }

    fn histogram(b005: u32, b01: u32, b1: u32, inf: u32) -> String {
        let n = "auren_runtime_http_request_duration_seconds_bucket";
        format!(
            "{n}{{le=\"0.05\",route=\"/w\"}} {b005}\n{n}{{le=\"0.1\",route=\"/w\"}} {b01}\n\
             {n}{{le=\"1.0\",route=\"/w\"}} {b1}\n{n}{{le=\"+Inf\",route=\"/w\"}} {inf}\n"
        )
    }

    #[test]
    fn latency_quantile_interpolates_inside_the_bucket() {
        let window = Window {
            pods: vec![pod(
                Some(&histogram(0, 0, 0, 0)),
                &histogram(50, 90, 100, 100),
            )],
        };
        let median = window.latency_quantile(0.5).unwrap();
        assert!((median - 0.05).abs() < 1e-9, "{median}");
        let p95 = window.latency_quantile(0.95).unwrap();
        assert!((p95 - 0.55).abs() < 1e-9, "{p95}");
        let p99 = window.latency_quantile(0.99).unwrap();
        assert!((p99 - 0.91).abs() < 1e-9, "{p99}");
    }

    #[test]
    fn latency_quantile_edge_cases() {
        let slow = Window {
            pods: vec![pod(None, &histogram(0, 0, 0, 10))],
        };
        assert_eq!(
            slow.latency_quantile(0.99),
            Some(1.0),
            "rank in +Inf gives the top finite bound"
        );
        let empty = Window {
            pods: vec![pod(Some(&histogram(5, 5, 5, 5)), &histogram(5, 5, 5, 5))],
        };
        assert_eq!(
            empty.latency_quantile(0.99),
            None,
            "no requests in the window"
        );
        assert_eq!(Window::default().latency_quantile(0.99), None);
        let two = Window {
            pods: vec![
                pod(None, &histogram(10, 10, 10, 10)),
                pod(None, &histogram(0, 0, 10, 10)),
            ],
        };
        let median = two.latency_quantile(0.5).unwrap();
        assert!(
            (median - 0.05).abs() < 1e-9,
            "buckets are summed over pods: {median}"
        );
    }

    #[test]
    fn gauges_and_event_counters() {
        let start = "auren_runtime_events_dead_lettered_total 4\n\
                     auren_runtime_events_failed_total{stage=\"store\"} 1\n\
                     auren_runtime_events_failed_total{stage=\"produce\"} 0\n";
        let end = "auren_runtime_events_dead_lettered_total 7\n\
                   auren_runtime_events_failed_total{stage=\"store\"} 3\n\
                   auren_runtime_events_failed_total{stage=\"produce\"} 1\n\
                   auren_runtime_consumer_lag{partition=\"0\"} 5\n\
                   auren_runtime_consumer_lag{partition=\"1\"} 7\n\
                   auren_runtime_circuit_breaker_state{dependency=\"kafka\"} 2\n\
                   auren_runtime_circuit_breaker_state{dependency=\"postgres\"} 1\n";
        let window = Window {
            pods: vec![
                pod(Some(start), end),
                pod(None, "auren_runtime_consumer_lag{partition=\"2\"} 1\n"),
            ],
        };
        assert_eq!(window.dead_lettered(), Some(3.0));
        assert_eq!(window.failed_events(), Some(3.0));
        assert_eq!(window.consumer_lag(), Some(13.0));
        assert_eq!(window.breakers_open(), Some(1.0));
        assert_eq!(window.open_breakers(), BTreeSet::from(["kafka".to_owned()]));
        let silent = Window {
            pods: vec![pod(None, "x 1\n")],
        };
        assert_eq!(
            (
                silent.dead_lettered(),
                silent.failed_events(),
                silent.consumer_lag(),
                silent.breakers_open()
            ),
            (None, None, None, None)
        );
        assert!(silent.open_breakers().is_empty());
    }
}
