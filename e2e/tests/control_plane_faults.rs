//! Fault matrix, control-plane rows (issue "Reliability evidence: fault matrix"). Each case
//! rolls a good release v1 → v2 out under constant load through the active Service
//! ([`Load`]), injects one fault of the local cluster's control plane or node side in the
//! middle of the rollout, and asserts
//! - every event that got a 202 is stored exactly once ([`Env::assert_stored_once`]), and
//! - the rollout still ends Healthy with v2 stable and v2's history entry Promoted.
//!
//! | row | fault | also proves |
//! | --- | --- | --- |
//! | 4 | kube-apiserver SIGKILLed while Analyzing, down 4 s + its start (~9 s in all), started again (`up.sh --control-plane-only`) | no request through the active Service fails, while the API is down (kube-proxy's rules stay) or after; the operator promotes v2 without losing analysis progress and its AurenRuntime watch delivers again (an annotation is acknowledged from its cache); the active Service then routes to v2 (kube-controller-manager's EndpointSlices and kube-proxy caught up) and the kubelet runs a pod created after the restart |
//! | 5 | operator leader SIGKILLed the moment the status says Promoting (consumers handing over), a second replica started | the new leader waits for the lease to expire and completes the handover; no request fails; both releases served |
//! | 6a | kubelet SIGKILLed while Analyzing, down 3 s, started again (`up.sh`) | the containers run on under their containerd shims and the new kubelet takes them over: same pids, container ids, IPs and restart counts, pods stay Ready, no request fails; v1's containers are stopped when v1's pods go |
//! | 6b | containerd SIGKILLed while Analyzing, down 3 s, started again (`up.sh`) | the same: the shims keep the containers, the kubelet reconnects, nothing restarts and no request fails |
//!
//! The cluster is shared: run with `--test-threads=1` under `flock /tmp/auren-cluster.lock`.
//! Every test starts the killed component again before asserting, so a failure leaves the
//! cluster running.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use auren_operator::api::{AurenRuntimeStatus, Outcome, Phase};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use support::{
    Accepted, Answer, Env, Load, NAME, Operator, accepted_ids, assert_none_failed, state_dir,
};

// ---------------------------------------------------------------- cluster components

/// The pid of a running cluster component (pid file of e2e/cluster/lib.sh, checked like its
/// `pid_alive`: the process runs, is not a zombie and is still `name`).
fn component_pid(name: &str) -> Option<u32> {
    let text =
        std::fs::read_to_string(state_dir().join("pids").join(format!("{name}.pid"))).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    (String::from_utf8_lossy(&cmdline).contains(name) && running(pid)).then_some(pid)
}

/// Whether `pid` exists and is not a zombie.
fn running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    !matches!(state, None | Some("Z" | "X"))
}

/// Sends `signal` to a component and waits until it has exited; returns the pid.
async fn kill_component(name: &str, signal: Signal) -> u32 {
    let pid = component_pid(name).unwrap_or_else(|| panic!("{name} is not running"));
    kill(Pid::from_raw(pid as i32), signal).unwrap();
    support::wait_for(&format!("{name} (pid {pid}) to exit"), 30, || async move {
        (!running(pid)).then_some(())
    })
    .await;
    pid
}

/// Starts whatever component is missing (up.sh is idempotent), from the binaries already
/// built (AUREN_NO_BUILD: no cargo build in the middle of a test).
async fn start_missing(args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster/up.sh");
    let out = tokio::process::Command::new("bash")
        .arg(&script)
        .args(args)
        .env("AUREN_NO_BUILD", "1")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "up.sh {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts the missing components when dropped, so a failing test leaves the cluster up.
struct Restore(&'static [&'static str]);

impl Drop for Restore {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster/up.sh");
        let _ = std::process::Command::new("bash")
            .arg(script)
            .args(self.0)
            .env("AUREN_NO_BUILD", "1")
            .output();
    }
}

// ---------------------------------------------------------------- pods and processes

/// One runtime pod as the kubelet reports it, with its container's pid on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PodView {
    name: String,
    ip: Option<String>,
    container: Option<String>,
    pid: Option<u32>,
    restarts: i32,
    ready: bool,
}

async fn pods(env: &Env) -> BTreeMap<String, PodView> {
    let list = env
        .ns
        .api::<Pod>()
        .list(&ListParams::default())
        .await
        .unwrap();
    list.items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            let pid = support::container_pid(&p);
            let status = p.status.unwrap_or_default();
            let container = status
                .container_statuses
                .unwrap_or_default()
                .into_iter()
                .next();
            let name = p.metadata.name.unwrap_or_default();
            let view = PodView {
                name: name.clone(),
                ip: status.pod_ip,
                container: container.as_ref().and_then(|c| c.container_id.clone()),
                pid,
                restarts: container.as_ref().map_or(0, |c| c.restart_count),
                ready: container.is_some_and(|c| c.ready),
            };
            (name, view)
        })
        .collect()
}

/// Waits until every container of the namespace has run for `age`: kubelet (1.35+) keeps the
/// readiness of a container started more than 10 s before it restarts (KEP-4781); a younger
/// one starts NotReady again until its next probe.
async fn wait_containers_older_than(env: &Env, age: Duration) {
    support::wait_for(
        &format!("every container running for {age:?}"),
        60,
        || async {
            let list = env
                .ns
                .api::<Pod>()
                .list(&ListParams::default())
                .await
                .unwrap();
            let now = k8s_openapi::jiff::Timestamp::now();
            let started = list.items.iter().flat_map(|p| {
                let statuses = p
                    .status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref());
                statuses.into_iter().flatten().map(|c| {
                    let running = c.state.as_ref().and_then(|s| s.running.as_ref());
                    running.and_then(|r| r.started_at.as_ref()).map(|t| t.0)
                })
            });
            let old = |t: Option<k8s_openapi::jiff::Timestamp>| {
                t.is_some_and(|t| now.duration_since(t).as_secs_f64() >= age.as_secs_f64())
            };
            started
                .collect::<Vec<_>>()
                .into_iter()
                .all(old)
                .then_some(())
        },
    )
    .await;
}

/// `auren_runtime_consumer_active` of each consumer pod, scraped from the pod directly
/// (1 active, 0 standby; `None` when it does not answer).
async fn consumer_roles(env: &Env) -> BTreeMap<String, Option<f64>> {
    let client = support::http_client();
    let mut out = BTreeMap::new();
    for (name, pod) in pods(env).await {
        let Some(ip) = pod.ip.filter(|_| name.contains("-consumer-")) else {
            continue;
        };
        let text = match client.get(format!("http://{ip}:8000/metrics")).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let active = text.lines().find_map(|l| {
            l.strip_prefix("auren_runtime_consumer_active ")?
                .trim()
                .parse()
                .ok()
        });
        out.insert(name, active);
    }
    out
}

// ---------------------------------------------------------------- rollout helpers

/// v1 → v2 with `successes` measurements to promote and a short scale-down delay.
fn v2_spec(env: &Env, successes: u32) -> Value {
    let mut spec = env.spec("auren/runtime:v2", &[]);
    spec["analysis"]["successfulMeasurementsToPromote"] = json!(successes);
    spec["strategy"]["blueGreen"]["scaleDownDelaySeconds"] = json!(5);
    spec
}

/// Waits until v2 (`image` ending in `:v2`) is stable or the rollout was rolled back.
async fn wait_settled(env: &Env, secs: u64) -> AurenRuntimeStatus {
    env.ns
        .wait_status(NAME, "v2 promoted (or rolled back)", secs, |s| {
            (s.phase == Some(Phase::Healthy)
                && s.candidate.is_none()
                && s.stable.as_ref().is_some_and(|r| r.image.ends_with(":v2")))
                || s.phase == Some(Phase::RolledBack)
        })
        .await
}

/// The common end of every case: Healthy, v2 stable after v1, both history entries Promoted.
fn assert_promoted(st: &AurenRuntimeStatus, v1: &str, v2: &str) {
    assert_eq!(
        st.phase,
        Some(Phase::Healthy),
        "{:?}: {:?}",
        st.reason,
        st.message
    );
    assert_eq!(st.stable.as_ref().map(|s| s.hash.as_str()), Some(v2));
    assert_eq!(st.previous.as_ref().map(|p| p.hash.as_str()), Some(v1));
    assert_eq!(st.services.active_text(), Some(v2));
    let history: Vec<(&str, Outcome)> = st
        .history
        .iter()
        .map(|h| (h.hash.as_str(), h.outcome))
        .collect();
    assert_eq!(
        history,
        vec![(v1, Outcome::Promoted), (v2, Outcome::Promoted)]
    );
}

fn count_between(answers: &[Answer], from: Instant, to: Instant) -> usize {
    answers
        .iter()
        .filter(|a| a.at >= from && a.at <= to)
        .count()
}

/// Waits until no pod of revision `hash` is left and none of `pids` runs any more.
async fn wait_release_gone(env: &Env, hash: &str, pids: &[u32]) {
    support::wait_for(
        &format!("the pods and processes of {hash} to go"),
        60,
        || async {
            let left = pods(env).await.keys().any(|n| n.contains(hash));
            let running = pids.iter().any(|p| running(*p));
            (!left && !running).then_some(())
        },
    )
    .await;
}

fn operator_log(op: &Operator) -> String {
    std::fs::read_to_string(&op.log).unwrap_or_default()
}

/// The operator's AurenRuntime watch delivers again: an annotation (`auren.io/retry`, a no-op
/// on a Healthy release but acknowledged in the status) is acknowledged by a reconcile that
/// read it from the watch cache, not from a fresh read (the operator GETs the AurenRuntime
/// only while its cache lags behind its own status write). Tried again until `secs` have
/// passed since `since` (the watch re-lists after its own back-off, up to 30 s in kube-rs);
/// returns how long after `since` the watch was seen working.
async fn assert_runtime_watch_delivers(env: &Env, since: Instant, secs: u64) -> Duration {
    const FRESH_READS: &str =
        r#"auren_operator_kube_api_requests_total{verb="get",resource="aurenruntimes"}"#;
    let mut attempts = Vec::new();
    loop {
        // No fresh read at all (the series not yet exposed) is the expected case: 0.
        let before = support::counter_value(&env.operator.metrics().await, FRESH_READS);
        let value = support::unique("retry");
        let patch = json!({"metadata": {"annotations": {"auren.io/retry": value}}});
        env.ns
            .runtimes()
            .patch(NAME, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        env.ns
            .wait_status(NAME, "the retry annotation acknowledged", 15, |s| {
                s.acknowledged.retry.as_deref() == Some(value.as_str())
            })
            .await;
        let after = support::counter_value(&env.operator.metrics().await, FRESH_READS);
        attempts.push((since.elapsed().as_secs_f64().round(), before, after));
        if after == before {
            eprintln!(
                "operator: AurenRuntime watch delivers; (s after restart, fresh reads before, after): {attempts:?}"
            );
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(secs),
            "the AurenRuntime watch does not deliver {secs} s after the restart: {attempts:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Posts through the active Service until v2 answers (kube-proxy forwards by the Service's
/// EndpointSlices, which kube-controller-manager writes); returns how long after `since` that
/// was, and the ids of the accepted probe events.
async fn routes_to(env: &Env, v2: &str, since: Instant, secs: u64) -> (Duration, Accepted) {
    let (client, addr) = (support::http_client(), env.active().await);
    let mut ids = Accepted::default();
    loop {
        let answer = support::post_event(&client, &addr, "u-probe", 1).await;
        assert_eq!(answer.status, 202, "{answer:?}");
        ids.extend(answer.accepted());
        if answer.release.as_deref() == Some(v2) {
            return (since.elapsed(), ids);
        }
        assert!(
            since.elapsed() < Duration::from_secs(secs),
            "the active Service still routes to {:?} {secs} s after the restart",
            answer.release
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The kubelet sees a pod created now and runs it to Ready; returns how long after `since`.
async fn assert_kubelet_starts_a_new_pod(env: &Env, since: Instant) -> Duration {
    let pod: Pod = serde_json::from_value(support::pause_pod("after-restart")).unwrap();
    let pods = env.ns.api::<Pod>();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    support::wait_for("the new pod Ready", 30, || async {
        let pod = pods.get("after-restart").await.ok()?;
        let conditions = pod.status?.conditions?;
        conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            .then_some(())
    })
    .await;
    let ready = since.elapsed();
    pods.delete("after-restart", &DeleteParams::default())
        .await
        .unwrap();
    ready
}

// ---------------------------------------------------------------- row 4

/// (4) kube-apiserver killed (SIGKILL) while v2 is analysed, down for 4 s, then started again
/// by up.sh. The active Service keeps answering while the API is down (kube-proxy keeps the
/// backends it knows). Once the API is back the operator promotes v2 without losing analysis
/// progress (its watches get 410 Gone and re-list while it decides on fresh reads); then its
/// AurenRuntime watch, the EndpointSlices and kube-proxy, and the kubelet are all shown to work
/// again. v1 is kept up (long scale-down delay), see the comment in the test.
#[tokio::test]
async fn kube_apiserver_restarted_while_analyzing() {
    let env = Env::start("cpf-apiserver").await;
    // Declared after `env`, so dropped first: the namespace is deleted with the API up.
    let _restore = Restore(&["--control-plane-only"]);
    let v1 = env.install("auren/runtime:v1").await;
    let load = Load::workers(env.active().await, "u-load", 2, Duration::from_millis(40));
    tokio::time::sleep(Duration::from_secs(2)).await;

    // v1 stays up for the whole test: after an API server restart kube-controller-manager's
    // informers re-list only after their back-off (up to ~30 s seen), so the active Service's
    // EndpointSlice may still list v1 for a while after the switch; scaling v1 down within
    // that time fails requests (seen with a 5 s delay), see `routes_to`.
    let mut spec = v2_spec(&env, 3);
    spec["strategy"]["blueGreen"]["scaleDownDelaySeconds"] = json!(300);
    env.set_spec(spec).await.unwrap();
    let st = env
        .ns
        .wait_status(NAME, "Analyzing", 90, |s| s.phase == Some(Phase::Analyzing))
        .await;
    let v2 = st.candidate.unwrap().hash;

    let pid = kill_component("kube-apiserver", Signal::SIGKILL).await;
    let down_at = Instant::now();
    assert!(
        env.ns.runtimes().get(NAME).await.is_err(),
        "the API is down"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    start_missing(&["--control-plane-only"]).await;
    let up_at = Instant::now();
    eprintln!(
        "kube-apiserver (pid {pid}) down for {:.1} s, now pid {:?}",
        (up_at - down_at).as_secs_f64(),
        component_pid("kube-apiserver")
    );

    let st = wait_settled(&env, 120).await;
    let promoted = up_at.elapsed();
    assert_promoted(&st, &v1, &v2);
    // The operator's, kube-proxy's (with kube-controller-manager's EndpointSlices) and the
    // kubelet's watches all deliver again.
    let watch = assert_runtime_watch_delivers(&env, up_at, 60).await;
    let (routed, probes) = routes_to(&env, &v2, up_at, 60).await;
    let kubelet = assert_kubelet_starts_a_new_pod(&env, up_at).await;
    eprintln!(
        "after the restart: promoted +{:.0} s, operator watch +{:.0} s, active Service on v2 +{:.0} s, new pod Ready +{:.0} s",
        promoted.as_secs_f64(),
        watch.as_secs_f64(),
        routed.as_secs_f64(),
        kubelet.as_secs_f64()
    );
    let answers = load.finish().await;

    assert_none_failed(&answers);
    let during = count_between(&answers, down_at, up_at);
    assert!(
        during >= 20,
        "only {during} requests while the API was down"
    );
    let mut ids = accepted_ids(&answers);
    ids.extend(probes);
    env.assert_stored_once(&ids).await;
    let log = operator_log(&env.operator);
    eprintln!(
        "operator: {} leadership changes, {} controller starts",
        log.matches("leadership changed").count(),
        log.matches("leading: controller starts").count()
    );
}

// ---------------------------------------------------------------- row 5

/// (5) The operator leader killed (SIGKILL) the moment the status says Promoting, i.e. while
/// the consumers hand over from v1 to v2, under load; a second replica takes the lease over
/// once it expires and finishes the handover. No request fails, every accepted event is stored
/// exactly once.
#[tokio::test]
async fn operator_leader_killed_during_the_consumer_handover() {
    let mut env = Env::start("cpf-leader").await;
    let v1 = env.install("auren/runtime:v1").await;
    let load = Load::workers(env.active().await, "u-load", 3, Duration::from_millis(30));
    tokio::time::sleep(Duration::from_secs(2)).await;

    env.set_spec(v2_spec(&env, 2)).await.unwrap();
    // A watch, not polling: the kill lands within milliseconds of the Promoting status, before
    // the leader's next reconcile (500 ms after a role switch) activates v2's consumers.
    let config = watcher::Config::default().fields(&format!("metadata.name={NAME}"));
    let stream = watcher(env.ns.runtimes(), config)
        .applied_objects()
        .filter_map(|ar| async move { ar.ok()?.status });
    let mut stream = std::pin::pin!(stream);
    let caught = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(st) = stream.next().await {
            if st.phase == Some(Phase::Promoting) {
                return st;
            }
            let promoted = st.stable.as_ref().is_some_and(|r| r.image.ends_with(":v2"));
            assert!(!promoted, "missed Promoting: {:?}", st.reason);
        }
        panic!("the watch ended");
    })
    .await
    .expect("Promoting within 120 s");
    env.operator.kill9();
    let killed_at = Instant::now();
    let v2 = caught.candidate.clone().unwrap().hash;
    // Nobody leads now, so the roles stay as the killed leader left them: it writes Promoting
    // after sending v1's consumers to standby and activates v2's on its next reconcile.
    let roles = consumer_roles(&env).await;
    eprintln!(
        "killed the leader in Promoting ({:?}), active Service on {:?}, consumers active: {roles:?}",
        caught.reason, caught.services.active,
    );
    let v1_roles: Vec<_> = roles.iter().filter(|(n, _)| n.contains(&v1)).collect();
    assert!(
        !v1_roles.is_empty() && v1_roles.iter().all(|(_, r)| **r == Some(0.0)),
        "the handover had begun: v1's consumers on standby: {roles:?}"
    );

    let mut second = Operator::start(
        &env.ns.name,
        "auren-operator",
        &format!("{}-b", env.ns.name),
    );
    let st = wait_settled(&env, 90).await;
    assert!(
        killed_at.elapsed() > Duration::from_secs(5),
        "the lease held until it expired"
    );
    assert_promoted(&st, &v1, &v2);
    assert!(
        operator_log(&second).contains("leading: controller starts"),
        "the second replica led"
    );
    eprintln!("after the handover: {:?}", consumer_roles(&env).await);
    load.carries_on(50).await;
    let answers = load.finish().await;

    assert_none_failed(&answers);
    let releases: HashSet<_> = answers.iter().filter_map(|a| a.release.clone()).collect();
    assert!(
        releases.contains(&v1) && releases.contains(&v2),
        "load saw both releases: {releases:?}"
    );
    env.assert_stored_once(&accepted_ids(&answers)).await;
    assert_eq!(second.stop(), Some(0));
}

// ---------------------------------------------------------------- row 6

/// (6a) The kubelet killed (SIGKILL) while v2 is analysed, down 3 s, started again.
#[tokio::test]
async fn kubelet_killed_while_analyzing_keeps_its_pods_serving() {
    node_daemon_killed_while_analyzing("cpf-kubelet", "kubelet").await;
}

/// (6b) containerd killed (SIGKILL) while v2 is analysed, down 3 s, started again.
#[tokio::test]
async fn containerd_killed_while_analyzing_keeps_its_pods_serving() {
    node_daemon_killed_while_analyzing("cpf-containerd", "containerd").await;
}

/// A node daemon (`kubelet` or `containerd`) SIGKILLed while v2 is analysed under load, down
/// 3 s, then started again by up.sh. The containers run on under their containerd shims
/// meanwhile, and afterwards nothing about any pod has changed (same pid, container id, IP and
/// restart count, still Ready) for the kubelet's next probes; no request fails, v2 is promoted,
/// v1's containers stop when its pods go, and every accepted event is stored exactly once.
async fn node_daemon_killed_while_analyzing(prefix: &str, daemon: &str) {
    let env = Env::start(prefix).await;
    // Declared after `env`, so dropped first: the namespace is deleted with the node up.
    let _restore = Restore(&[]);
    let v1 = env.install("auren/runtime:v1").await;
    let load = Load::workers(env.active().await, "u-load", 2, Duration::from_millis(40));
    let load_start = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 16 measurements 3 s apart: the analysis outlasts the wait for 11 s old containers, the
    // daemon's downtime (up to ~10 s on a busy machine) and the 8 s check after it, so no
    // promotion lands inside that check.
    env.set_spec(v2_spec(&env, 16)).await.unwrap();
    let st = env
        .ns
        .wait_status(NAME, "Analyzing", 90, |s| s.phase == Some(Phase::Analyzing))
        .await;
    let v2 = st.candidate.unwrap().hash;
    wait_containers_older_than(&env, Duration::from_secs(11)).await;
    let before = pods(&env).await;
    assert_eq!(
        before.len(),
        4,
        "v1 and v2: api + consumer each: {before:?}"
    );
    assert!(
        before.values().all(|p| p.ready && p.pid.is_some()),
        "{before:?}"
    );

    let pid = kill_component(daemon, Signal::SIGKILL).await;
    let down_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let containers: Vec<u32> = before.values().filter_map(|p| p.pid).collect();
    assert!(
        containers.iter().all(|p| running(*p)),
        "containers outlive a killed {daemon}"
    );
    start_missing(&[]).await;
    let up_at = Instant::now();
    eprintln!(
        "{daemon} (pid {pid}) down from {:.1} s to {:.1} s of the load, now pid {:?}",
        (down_at - load_start).as_secs_f64(),
        (up_at - load_start).as_secs_f64(),
        component_pid(daemon)
    );
    // Over the kubelet's next readiness probes (the runtime's: every 5 s) no pod may change.
    support::never(
        &format!("a pod changed after {daemon} came back"),
        8,
        || async {
            let after = pods(&env).await;
            let changed = before
                .iter()
                .find(|(name, was)| after.get(*name) != Some(was));
            changed.map(|(name, _)| (name.clone(), after.get(name).cloned()))
        },
    )
    .await;
    let st = env.ns.status(NAME).await;
    assert_eq!(
        st.phase,
        Some(Phase::Analyzing),
        "the analysis ended before the check after {daemon} came back: {:?}",
        st.message
    );

    let st = wait_settled(&env, 120).await;
    eprintln!(
        "settled at {:.1} s of the load",
        load_start.elapsed().as_secs_f64()
    );
    assert_promoted(&st, &v1, &v2);
    let v1_pids: Vec<u32> = before
        .values()
        .filter(|p| p.name.contains(&v1))
        .filter_map(|p| p.pid)
        .collect();
    wait_release_gone(&env, &v1, &v1_pids).await;
    let answers = load.finish().await;

    assert_none_failed(&answers);
    let during = count_between(&answers, down_at, up_at);
    assert!(
        during >= 20,
        "only {during} requests while {daemon} was down"
    );
    env.assert_stored_once(&accepted_ids(&answers)).await;
}
