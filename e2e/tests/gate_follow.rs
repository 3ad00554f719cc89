//! Readiness gates follow the pods' health by push (issue "Analysis that tells a dependency
//! outage from a bad release, and pushes instead of polling", point 2): `PODS` API pods of one
//! release, and the Kafka broker frozen `OUTAGES` times for 4 s. Each outage must close every
//! pod's `auren.io/healthy` gate and the broker's return must reopen every one, each change
//! reaching the operator as a push (an answer of the pod's `/health` long poll).
//!
//! Every gate, closed or reopened, must be written within 2 s of its pod's `/health` change
//! (the operator's histogram below): without the push, only the operator's 5 s requeue of
//! unhealthy runtimes and the pods' readiness probes would move the gates, and the count
//! assertions alone would still pass.
//!
//! It also measures, and prints:
//! - **follow**: from a pod's `/health` changing to its gate written, the operator's own
//!   histogram `auren_operator_readiness_gate_follow_seconds{gate="open"}` (p50/p99 by bucket);
//! - **from the broker's return**: from `SIGCONT` to the gate seen open by this test (pod list
//!   every 50 ms), which adds the runtime's detection (its health check interval, 1 s here, and
//!   its circuit breaker's half-open) to the follow.
//!
//! `make test` runs 3 outages of 3 pods (a functional check); `scripts/bench-gates.sh` runs
//! 10 × 10 (100 reopenings) for the p99 quoted in docs/reliability.md. Sizes come from
//! `AUREN_GATE_OUTAGES` and `AUREN_GATE_PODS`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use auren_operator::resources::{LABEL_ROLE, READINESS_GATE};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use serde_json::json;
use support::Env;

const BUCKET: &str = "auren_operator_readiness_gate_follow_seconds_bucket{";
/// Every gate must follow its pod's `/health` within this many seconds (a bound of the
/// histogram's buckets): the push does it in well under a second, while the fallback without
/// it, the operator's 5 s requeue of unhealthy runtimes (`UNHEALTHY_REQUEUE`) and the pods'
/// readiness probes (5 s period, 3 failures), takes longer.
const FOLLOW_BOUND: f64 = 2.0;

fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Each API pod's gate (`True`/`False`), by pod name.
async fn gates(env: &Env) -> BTreeMap<String, bool> {
    let list = env
        .ns
        .api::<Pod>()
        .list(&ListParams::default().labels(&format!("{LABEL_ROLE}=api")))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    list.into_iter()
        .map(|pod| {
            let open = (pod
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter())
            .any(|c| c.type_ == READINESS_GATE && c.status == "True");
            (pod.metadata.name.unwrap_or_default(), open)
        })
        .collect()
}

/// Waits until all `pods` API pods' gates are `open`; returns when each was first seen so,
/// measured from `since`.
async fn wait_gates(env: &Env, pods: usize, open: bool, since: Instant) -> Vec<Duration> {
    let mut seen: BTreeMap<String, Duration> = BTreeMap::new();
    while seen.len() < pods {
        for (pod, state) in gates(env).await {
            if state == open {
                seen.entry(pod).or_insert_with(|| since.elapsed());
            }
        }
        assert!(
            since.elapsed() < Duration::from_secs(30),
            "gates not {} within 30 s: {:?}",
            if open { "open" } else { "closed" },
            gates(env).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    seen.into_values().collect()
}

/// Cumulative counts of the follow histogram of `gate` ("open" or "closed"), by upper bound.
fn buckets(metrics: &str, gate: &str) -> Vec<(f64, f64)> {
    let label = format!("gate=\"{gate}\"");
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix(BUCKET))
        .filter_map(|rest| {
            let (labels, count) = rest.split_once("} ")?;
            let labels: Vec<&str> = labels.split(',').collect();
            if !labels.contains(&label.as_str()) {
                return None;
            }
            let le = labels.iter().find_map(|l| l.strip_prefix("le="))?;
            let le = match le.trim_matches('"') {
                "+Inf" => f64::INFINITY,
                bound => bound.parse().ok()?,
            };
            Some((le, count.parse().ok()?))
        })
        .collect()
}

/// The smallest bucket bound holding at least `q` of the observations between two readings.
fn quantile_bound(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> (f64, f64) {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, n)| {
            let old = before
                .iter()
                .find(|(b, _)| b == le)
                .map_or(0.0, |(_, c)| *c);
            (*le, n - old)
        })
        .collect();
    let total = delta.last().map_or(0.0, |(_, n)| *n);
    let bound = delta
        .iter()
        .find(|(_, n)| *n >= q * total)
        .map_or(f64::INFINITY, |(le, _)| *le);
    (bound, total)
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_gates_follow_every_outage_and_return_by_push() {
    let outages = size("AUREN_GATE_OUTAGES", 3);
    let pods = size("AUREN_GATE_PODS", 3);
    let env = Env::start("gates").await;
    let mut spec = env.spec("auren/runtime:v1", &[]);
    spec["api"]["replicas"] = json!(pods);
    env.install_spec(spec).await;
    wait_gates(&env, pods, true, Instant::now()).await;
    let before = env.operator.metrics().await;
    let pushed_before = support::counter_value(&before, "auren_operator_health_changes_total");

    let mut from_return = Vec::new();
    for n in 0..outages {
        let frozen_at = Instant::now();
        env.broker.pause();
        let closed = wait_gates(&env, pods, false, frozen_at).await;
        tokio::time::sleep(Duration::from_secs(4).saturating_sub(frozen_at.elapsed())).await;
        env.broker.resume();
        let back_at = Instant::now();
        let reopened = wait_gates(&env, pods, true, back_at).await;
        eprintln!(
            "outage {n}: gates closed after {:?}, reopened {:?} after the broker's return",
            closed.iter().max().unwrap(),
            reopened
        );
        from_return.extend(reopened);
    }

    let after = env.operator.metrics().await;
    let pushed = support::counter_value(&after, "auren_operator_health_changes_total");
    let (open_before, open_after) = (buckets(&before, "open"), buckets(&after, "open"));
    let (p50, count) = quantile_bound(&open_before, &open_after, 0.5);
    let (p99, _) = quantile_bound(&open_before, &open_after, 0.99);
    from_return.sort();
    eprintln!(
        "gate reopenings: {count} followed (operator histogram): p50 <= {p50} s, p99 <= {p99} s"
    );
    eprintln!(
        "from the broker's return ({} seen by the test): p50 {:?}, p99 {:?}, max {:?}",
        from_return.len(),
        percentile(&from_return, 0.5),
        percentile(&from_return, 0.99),
        from_return.last().unwrap()
    );
    let reopenings = (outages * pods) as f64;
    assert!(
        count >= reopenings,
        "every reopening was measured: {count} < {reopenings}"
    );
    assert!(
        pushed - pushed_before >= 2.0 * reopenings,
        "each outage and return was pushed by every pod: {} pushes",
        pushed - pushed_before
    );
    for gate in ["closed", "open"] {
        let (slowest, count) = quantile_bound(&buckets(&before, gate), &buckets(&after, gate), 1.0);
        eprintln!("gates {gate}: {count} followed, the slowest within {slowest} s");
        assert!(
            count >= reopenings && slowest <= FOLLOW_BOUND,
            "every {gate} gate written within {FOLLOW_BOUND} s of its pod's /health change \
             (by push): {count} written, the slowest within {slowest} s"
        );
    }
}
