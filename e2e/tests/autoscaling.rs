//! CPU autoscaling (issue 32, point 4) on the local cluster with metrics-server running
//! (`up.sh` with `AUREN_METRICS_SERVER=1`): a real autoscaling/v2 HorizontalPodAutoscaler on
//! the API pods' CPU scales the AurenRuntime through its `/scale` subresource under real
//! signed load, once on a stable release and once in the middle of a blue/green rollout, and
//! the operator and the HPA never fight over the replica count. The replica history (the
//! HPA's desiredReplicas, the AurenRuntime's spec.api.replicas, each release's API Deployment)
//! is recorded every 500 ms, printed, and checked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use auren_operator::api::{AurenRuntime, Phase};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use support::{Env, Load, NAME, TestNs, accepted_ids, assert_none_failed, kubectl, wait_for};

/// The HorizontalPodAutoscaler's name.
const HPA: &str = "api-cpu";
/// The API container's CPU request; the HPA's target is a share of it.
const CPU_REQUEST: &str = "50m";
const TARGET_UTILIZATION: i32 = 60;
const MAX_REPLICAS: i32 = 3;
/// Clients of the load that makes the API pods busy, each posting then pausing this long.
const LOAD_WORKERS: u32 = 4;
const LOAD_PAUSE: Duration = Duration::from_millis(10);

/// The HPA scales the API pods up under load on the stable release, back down once the load
/// stops, and up again while v2 waits for its promotion; both releases' API Deployments follow
/// each count it asks for, v2 is promoted at the HPA's count, and the HPA then measures v2's
/// pods. No request fails, every accepted event is stored once, and the replica history shows
/// no count the HPA did not ask for and no Deployment going back to a count already left.
#[tokio::test]
async fn an_hpa_on_cpu_scales_the_api_pods_also_during_a_rollout() {
    let env = Env::start("autoscale").await;
    let ns = env.ns.name.clone();
    let v1 = env
        .install_spec(cpu_requesting(&env, "auren/runtime:v1"))
        .await;
    kubectl(&["apply", "-f", "-"], Some(&cpu_hpa(&ns)));
    let history = ReplicaLog::start(&env.ns);

    let idle = measured(&env.ns, "the HPA to measure the idle API pod's CPU").await;
    assert!(
        idle.desired == 1 && idle.utilization < TARGET_UTILIZATION,
        "one idle pod stays under the target: {idle:?}"
    );
    let busy = Load::workers(env.active().await, "u-cpu", LOAD_WORKERS, LOAD_PAUSE);
    let up = scaled_up(&env, &[&v1]).await;
    eprintln!("under load on v1 alone the HPA asked for {up} API pods");
    let mut answers = busy.finish().await;
    scaled_to(
        &env,
        1,
        "the HPA to scale back to 1 once the load stopped",
        &[&v1],
    )
    .await;

    let v2 = env
        .release(awaiting_promotion(&env, "auren/runtime:v2"))
        .await;
    env.ns
        .wait_status(NAME, "v2 analysed, awaiting its promotion", 90, |s| {
            s.phase == Some(Phase::Paused) && s.reason.as_deref() == Some("AwaitingPromotion")
        })
        .await;
    let busy = Load::workers(
        env.active().await,
        "u-cpu-rollout",
        LOAD_WORKERS,
        LOAD_PAUSE,
    );
    let up = scaled_up(&env, &[&v1, &v2]).await;
    eprintln!("under load mid-rollout the HPA asked for {up} API pods");
    promote(&env).await;
    let st = env
        .ns
        .wait_status(NAME, "v2 promoted", 120, |s| {
            s.stable.as_ref().is_some_and(|r| r.hash == v2) || s.phase == Some(Phase::RolledBack)
        })
        .await;
    assert_eq!(st.phase, Some(Phase::Healthy), "{:?}", st.message);
    let agreed = hpa_count_on(&env, &v2).await;
    let on_v2 = measured(&env.ns, "the HPA to measure v2's pods").await;
    assert!(
        on_v2.selector.contains(&v2),
        "the HPA follows the promoted release: {on_v2:?}"
    );
    busy.carries_on(50).await;
    answers.extend(busy.finish().await);

    let history = history.finish().await;
    print_history(&history);
    assert_only_hpa_counts(&history);
    assert_releases_follow_the_scale(&history);
    assert_scale_written_only_by_the_hpa(&env.ns.runtimes().get(NAME).await.unwrap());
    eprintln!("after the rollout v2 runs the HPA's {agreed} API pods");
    let accepted = accepted_ids(&answers);
    eprintln!("{} requests, {} accepted", answers.len(), accepted.len());
    assert_none_failed(&answers);
    env.assert_stored_once(&accepted).await;
}

// ---------------------------------------------------------------- the AurenRuntime and its HPA

/// The scenario's release with a CPU request on the API container (what the HPA's
/// utilization is a share of).
fn cpu_requesting(env: &Env, image: &str) -> Value {
    let mut spec = env.spec(image, &[]);
    spec["api"]["resources"] = json!({"requests": {"cpu": CPU_REQUEST}});
    spec
}

/// [`cpu_requesting`] that waits for `auren.io/promote` once its analysis passed, so the
/// rollout lasts as long as the scaling under it. Without `api.replicas`: the count is the
/// HPA's, and a spec applied with one would set it back.
fn awaiting_promotion(env: &Env, image: &str) -> Value {
    let mut spec = cpu_requesting(env, image);
    spec["strategy"]["blueGreen"]["autoPromotion"] = json!(false);
    spec["api"].as_object_mut().unwrap().remove("replicas");
    spec
}

/// An autoscaling/v2 HPA on the AurenRuntime (through its `/scale`), 1 to [`MAX_REPLICAS`]
/// API pods at [`TARGET_UTILIZATION`] % of their CPU request. It scales down after 20 s of
/// lower recommendations instead of the default 300 s, so the test sees it come back down.
fn cpu_hpa(ns: &str) -> String {
    json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": HPA, "namespace": ns},
        "spec": {
            "scaleTargetRef": {"apiVersion": "auren.io/v1alpha1", "kind": "AurenRuntime",
                "name": NAME},
            "minReplicas": 1, "maxReplicas": MAX_REPLICAS,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": TARGET_UTILIZATION}}}],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 20}},
        },
    })
    .to_string()
}

/// Sets `auren.io/promote`.
async fn promote(env: &Env) {
    let patch = json!({"metadata": {"annotations": {"auren.io/promote": "autoscaling"}}});
    env.ns
        .runtimes()
        .patch(NAME, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

/// What the HPA last measured and decided.
#[derive(Debug)]
struct Measured {
    desired: i32,
    /// Average CPU of the measured pods, in % of their request.
    utilization: i32,
    /// The `/scale` selector the pods were chosen by.
    selector: String,
}

/// Waits until the HPA measures the API pods' CPU and says it can scale on it.
async fn measured(ns: &TestNs, what: &str) -> Measured {
    let hpas: Api<HorizontalPodAutoscaler> = ns.api();
    wait_for(what, 120, || async {
        let status = hpas.get(HPA).await.ok()?.status?;
        let active = (status.conditions.iter().flatten())
            .any(|c| c.type_ == "ScalingActive" && c.status == "True");
        let utilization = cpu_utilization(&status.current_metrics.unwrap_or_default())?;
        active.then(|| Measured {
            desired: status.desired_replicas,
            utilization,
            selector: scale_selector(&ns.name),
        })
    })
    .await
}

fn cpu_utilization(metrics: &[k8s_openapi::api::autoscaling::v2::MetricStatus]) -> Option<i32> {
    let resource = metrics.iter().find_map(|m| m.resource.as_ref())?;
    resource.current.average_utilization
}

/// status.selector of the AurenRuntime's `/scale` (the pods the HPA measures).
fn scale_selector(ns: &str) -> String {
    let path = format!("/apis/auren.io/v1alpha1/namespaces/{ns}/aurenruntimes/{NAME}/scale");
    let scale: Value = serde_json::from_str(&kubectl(&["get", "--raw", &path], None)).unwrap();
    scale["status"]["selector"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Waits until the HPA has scaled the AurenRuntime above one API pod and every release in
/// `releases` runs that many ready API pods; returns the count.
async fn scaled_up(env: &Env, releases: &[&str]) -> i32 {
    let count = wait_for(
        "the HPA to scale the API pods up under load",
        240,
        || async {
            let spec = env.ns.runtimes().get(NAME).await.ok()?.spec;
            (spec.api.replicas > 1).then_some(spec.api.replicas)
        },
    )
    .await;
    scaled_to(env, count, "the releases at the HPA's count", releases).await;
    count
}

/// Waits until spec.api.replicas is `count` and each release in `releases` has that many API
/// pods, all ready.
async fn scaled_to(env: &Env, count: i32, what: &str, releases: &[&str]) {
    wait_for(what, 240, || async {
        let spec = env.ns.runtimes().get(NAME).await.ok()?.spec;
        let mut ready = spec.api.replicas == count;
        for release in releases {
            ready &= api_deployment(&env.ns, release).await == Some((count, count));
        }
        ready.then_some(())
    })
    .await;
}

/// (spec.replicas, status.readyReplicas) of `release`'s API Deployment.
async fn api_deployment(ns: &TestNs, release: &str) -> Option<(i32, i32)> {
    let name = format!("{NAME}-{release}-api");
    let d = ns.api::<Deployment>().get(&name).await.ok()?;
    let ready = d.status.and_then(|s| s.ready_replicas).unwrap_or(0);
    Some((d.spec.replicas?, ready))
}

/// Waits until `release`'s API Deployment, spec.api.replicas and the HPA's desiredReplicas
/// agree, with the pods ready; returns the count.
async fn hpa_count_on(env: &Env, release: &str) -> i32 {
    let hpas: Api<HorizontalPodAutoscaler> = env.ns.api();
    wait_for("the promoted release at the HPA's count", 120, || async {
        let desired = hpas.get(HPA).await.ok()?.status?.desired_replicas;
        let spec = env.ns.runtimes().get(NAME).await.ok()?.spec;
        let deployment = api_deployment(&env.ns, release).await?;
        (spec.api.replicas == desired && deployment == (desired, desired)).then_some(desired)
    })
    .await
}

// ---------------------------------------------------------------- the replica history

/// One look at who wants how many API pods.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    at: Duration,
    /// The HPA's status.desiredReplicas and its last CPU measurement (% of the request).
    desired: Option<i32>,
    utilization: Option<i32>,
    /// The AurenRuntime's spec.api.replicas (the `/scale` spec.replicas).
    scale: i32,
    phase: Option<Phase>,
    stable: Option<String>,
    candidate: Option<String>,
    /// spec.replicas of each release's API Deployment, by revision.
    api: BTreeMap<String, i32>,
}

impl Sample {
    /// Whether `revision` is the stable release or the candidate (whose API Deployments the
    /// operator sizes from the scale; a previous release only waits for its scale-down).
    fn serves(&self, revision: &str) -> bool {
        self.stable.as_deref() == Some(revision) || self.candidate.as_deref() == Some(revision)
    }

    /// The same state, whatever the time.
    fn same_as(&self, other: &Sample) -> bool {
        Sample {
            at: other.at,
            ..self.clone()
        } == *other
    }
}

/// The replica history, sampled every 500 ms until finished.
struct ReplicaLog {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Sample>>,
}

impl ReplicaLog {
    fn start(ns: &TestNs) -> ReplicaLog {
        let (runtimes, hpas, deployments) = (ns.runtimes(), ns.api(), ns.api());
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let (start, mut samples) = (Instant::now(), Vec::new());
            while !flag.load(Ordering::SeqCst) {
                let at = start.elapsed();
                if let Some(s) = sample(at, &runtimes, &hpas, &deployments).await {
                    samples.push(s);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            samples
        });
        ReplicaLog { stop, task }
    }

    async fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap()
    }
}

async fn sample(
    at: Duration,
    runtimes: &Api<AurenRuntime>,
    hpas: &Api<HorizontalPodAutoscaler>,
    deployments: &Api<Deployment>,
) -> Option<Sample> {
    let runtime = runtimes.get(NAME).await.ok()?;
    let hpa = hpas.get(HPA).await.ok().and_then(|h| h.status);
    let list = deployments.list(&ListParams::default()).await.ok()?;
    let api = (list.items.into_iter())
        .filter_map(|d| {
            let name = d.metadata.name?;
            let revision = name
                .strip_prefix(&format!("{NAME}-"))?
                .strip_suffix("-api")?;
            Some((revision.to_owned(), d.spec.replicas?))
        })
        .collect();
    let status = runtime.status.unwrap_or_default();
    Some(Sample {
        at,
        desired: hpa.as_ref().map(|h| h.desired_replicas),
        utilization: hpa.and_then(|h| cpu_utilization(&h.current_metrics.unwrap_or_default())),
        scale: runtime.spec.api.replicas,
        phase: status.phase,
        stable: status.stable.map(|r| r.hash),
        candidate: status.candidate.map(|r| r.hash),
        api,
    })
}

/// The samples where something changed, one line each.
fn print_history(history: &[Sample]) {
    eprintln!(
        "replica history (t, HPA desired / CPU % of request, spec.api.replicas, phase, API Deployments):"
    );
    let mut last: Option<&Sample> = None;
    for s in history {
        if last.is_some_and(|l| l.same_as(s)) {
            continue;
        }
        let role = |rev: &str| match (s.stable.as_deref(), s.candidate.as_deref()) {
            (Some(st), _) if st == rev => "stable",
            (_, Some(c)) if c == rev => "candidate",
            _ => "previous",
        };
        let api: Vec<String> = (s.api.iter())
            .map(|(rev, n)| format!("{rev}({})={n}", role(rev)))
            .collect();
        let show = |v: Option<i32>| v.map_or("-".to_owned(), |v| v.to_string());
        eprintln!(
            "  {:>6.1} s  hpa {} / {:>4}%  scale {}  {:<10}  {}",
            s.at.as_secs_f64(),
            show(s.desired),
            show(s.utilization),
            s.scale,
            s.phase.map_or("-".to_owned(), |p| format!("{p:?}")),
            api.join(" ")
        );
        last = Some(s);
    }
}

/// Every count spec.api.replicas took was the count it was installed with or one the HPA
/// asked for (a desiredReplicas it reported): nobody else wrote the scale.
fn assert_only_hpa_counts(history: &[Sample]) {
    let asked: BTreeSet<i32> = history.iter().filter_map(|s| s.desired).collect();
    let installed = history[0].scale;
    for s in history {
        assert!(
            s.scale == installed || asked.contains(&s.scale),
            "spec.api.replicas {} at {:.1} s, which the HPA never asked for (it asked {asked:?})",
            s.scale,
            s.at.as_secs_f64()
        );
    }
    assert!(
        history.iter().any(|s| s.scale > installed),
        "the HPA never scaled up"
    );
}

/// While a release is stable or the candidate, its API Deployment takes the scale's counts in
/// the order the scale took them: never a count of its own, never back to a count the scale
/// had left (an operator undoing the HPA would show as 1 → 3 → 1 → 3 here with the scale at
/// 1 → 3).
fn assert_releases_follow_the_scale(history: &[Sample]) {
    let scales = changes(history.iter().map(|s| s.scale));
    let revisions: BTreeSet<&String> = history.iter().flat_map(|s| s.api.keys()).collect();
    for revision in revisions {
        let serving = history.iter().filter(|s| s.serves(revision));
        let counts = changes(serving.filter_map(|s| s.api.get(revision).copied()));
        assert!(
            in_order_within(&counts, &scales),
            "{revision}'s API Deployment went {counts:?} while the scale went {scales:?}"
        );
    }
}

/// The values of `seq` with consecutive repeats dropped.
fn changes(seq: impl Iterator<Item = i32>) -> Vec<i32> {
    let mut out: Vec<i32> = Vec::new();
    for v in seq {
        if out.last() != Some(&v) {
            out.push(v);
        }
    }
    out
}

/// Whether `part` appears in `whole` in order (a subsequence).
fn in_order_within(part: &[i32], whole: &[i32]) -> bool {
    let mut rest = whole.iter();
    part.iter().all(|p| rest.any(|w| w == p))
}

/// spec.api.replicas was last written through `/scale` (the HPA controller's update), and by
/// no other field manager: the operator never wrote it.
fn assert_scale_written_only_by_the_hpa(runtime: &AurenRuntime) {
    let fields = runtime.metadata.managed_fields.clone().unwrap_or_default();
    let owners: Vec<(String, Option<String>)> = (fields.into_iter())
        .filter(|f| {
            f.fields_v1
                .as_ref()
                .is_some_and(|v| v.0["f:spec"]["f:api"].get("f:replicas").is_some())
        })
        .map(|f| (f.manager.unwrap_or_default(), f.subresource))
        .collect();
    eprintln!("field managers of spec.api.replicas: {owners:?}");
    assert!(
        owners.len() == 1 && owners[0].1.as_deref() == Some("scale"),
        "spec.api.replicas owned by {owners:?}"
    );
}

/// The history checks on made-up histories (no cluster): they do fail on a fight.
mod history_checks {
    use super::*;

    fn at(t: u64, desired: i32, scale: i32, stable: i32) -> Sample {
        Sample {
            at: Duration::from_secs(t),
            desired: Some(desired),
            utilization: None,
            scale,
            phase: Some(Phase::Healthy),
            stable: Some("v1".into()),
            candidate: None,
            api: BTreeMap::from([("v1".to_owned(), stable)]),
        }
    }

    #[test]
    fn a_deployment_following_the_scale_passes() {
        let history = [
            at(0, 1, 1, 1),
            at(1, 3, 3, 1),
            at(2, 3, 3, 3),
            at(3, 1, 1, 1),
        ];
        assert_only_hpa_counts(&history);
        assert_releases_follow_the_scale(&history);
    }

    #[test]
    #[should_panic(expected = "went [1, 3, 1, 3]")]
    fn a_deployment_set_back_while_the_hpa_wants_more_fails() {
        let history = [
            at(0, 1, 1, 1),
            at(1, 3, 3, 3),
            at(2, 3, 3, 1),
            at(3, 3, 3, 3),
        ];
        assert_releases_follow_the_scale(&history);
    }

    #[test]
    #[should_panic(expected = "never asked for")]
    fn a_scale_the_hpa_did_not_ask_for_fails() {
        let history = [at(0, 1, 1, 1), at(1, 3, 3, 3), at(2, 3, 2, 2)];
        assert_only_hpa_counts(&history);
    }
}
