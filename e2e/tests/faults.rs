//! Fault matrix (issue "Reliability evidence: fault matrix"): a good v1 → v2 blue/green
//! release under constant load, with one dependency or process failing in the middle of the
//! cutover. Every case asserts the same two things: **every event answered 202 is stored
//! exactly once** (none lost, none twice), and **the rollout ends where it should** (Healthy
//! with v2 stable, promoted: the history reads v1 Promoted, v2 Promoted).
//!
//! | case | fault | when | proves |
//! | --- | --- | --- | --- |
//! | [`kill_9_of_runtime_pods_during_a_cutover_loses_no_accepted_event`] | `kill -9` of the API and consumer processes of both releases | while Analyzing, and again the moment the active Service switches to v2 (Promoting) | a 202 is only answered once Kafka holds the event; a consumer dying mid-batch or mid-handover replays, never loses, and the store's unique id absorbs the replay; the agent restarts the pods, a restarted consumer comes back standby and the operator re-activates the right release; the rollout still completes |
//! | [`broker_frozen_for_10s_during_the_cutover_answers_503_never_202`] | Kafka broker frozen (SIGSTOP) for 10 s | from the moment the active Service switches to v2 | with Kafka unavailable the API answers 503 (delivery timeout, then the open circuit breaker), never 202; the consumer handover (commit, leave, join) waits for the broker and completes after it returns; the API pods, taken out of the Services by their readiness gate, are back and accepting within 15 s of Kafka's return |
//! | [`broker_killed_and_restarted_after_10s_during_the_cutover_loses_no_accepted_event`] | Kafka broker SIGKILLed, started again 10 s later on its own log (on disk) | from the moment the active Service switches to v2 | the same as the freeze, with refused connections instead of silence and a new broker process: clients reconnect, the group and its committed offsets come back from storage |
//! | [`postgres_restarted_during_the_consumer_handover_loses_no_accepted_event`] | PostgreSQL stopped (immediate) for 3 s, then started | from the moment the active Service switches to v2 (the consumers hand over) | the consumers keep offsets uncommitted while storing fails and retry; the handover completes; the API keeps accepting (Kafka buffers) |
//! | [`a_good_release_through_two_broker_outages_is_promoted_and_kept`] | Kafka broker frozen for 10 s, twice | during v2's analysis, and again right after its promotion | with the default analysis limits an outage both releases see is a dependency outage, not v2's failure: the analysis waits for it (status reason `DependencyOutage`) and goes on afterwards, the post-promotion watch does not roll v2 back |
//! | [`a_bad_release_during_a_broker_outage_is_still_rolled_back`] | Kafka broker frozen for 10 s | from the start of a bad release's analysis (20 % injected errors) | the outage does not hide a bad release: it is rolled back once the broker is back |
//!
//! The first four rows inject their faults from the moment the operator points the active Service at v2
//! ([`wait_active_switch`]), which it does right before the consumer role switches of the
//! same reconcile: so the consumer handover always runs during the fault, deterministically.
//! The releases wait for `kubectl auren promote` after their analysis (`autoPromotion: false`),
//! so the analysis is over before a fault starts and the expected outcome does not depend on
//! how a measurement window happens to overlap the fault.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use auren_operator::api::{AurenRuntimeStatus, Outcome, Phase, Verdict};
use auren_operator::resources::{LABEL_REVISION, LABEL_ROLE};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::ListParams;
use serde_json::{Value, json};
use support::{
    Answer, Env, Killed, Load, NAME, StatusLog, accepted_ids, kill9_pod, kubectl_auren, post_event,
    wait_restarted,
};

/// The Env's small release with the default failure limits (3 in all, 2 in a row), waiting
/// for `kubectl auren promote` once its analysis passed.
fn spec(env: &Env, image: &str, config: &[(&str, &str)]) -> Value {
    let mut spec = env.spec(image, config);
    spec["strategy"]["blueGreen"]["autoPromotion"] = json!(false);
    with_default_limits(&mut spec);
    spec
}

fn with_default_limits(spec: &mut Value) {
    let analysis = spec["analysis"]
        .as_object_mut()
        .expect("the Env's analysis");
    analysis.remove("failureLimit");
    analysis.remove("consecutiveFailureLimit");
}

/// Sets `spec` (the v2 release); returns v2's hash once it is a candidate.
async fn start_release(env: &Env, spec: Value) -> String {
    env.set_spec(spec).await.unwrap();
    let st = env
        .ns
        .wait_status(NAME, "a candidate", 30, |s| s.candidate.is_some())
        .await;
    st.candidate.unwrap().hash
}

/// The rollout is over without v2 (Degraded is not: it recovers once the stable serves).
fn ended(s: &AurenRuntimeStatus) -> bool {
    matches!(s.phase, Some(Phase::RolledBack | Phase::InvalidSpec))
}

/// Waits until the analysis of `v2` passed and the rollout waits for a human.
async fn wait_awaiting_promotion(env: &Env) {
    let st = env
        .ns
        .wait_status(NAME, "AwaitingPromotion", 90, |s| {
            s.reason.as_deref() == Some("AwaitingPromotion") || ended(s)
        })
        .await;
    assert_eq!(
        st.reason.as_deref(),
        Some("AwaitingPromotion"),
        "{:?}: {:?}",
        st.phase,
        st.message
    );
}

/// `kubectl auren promote`.
fn promote(env: &Env) {
    kubectl_auren(&["-n", &env.ns.name, "promote", NAME]);
}

/// Waits (polling every 50 ms) until the active Service selects `revision`'s pods: the
/// operator applies the Service right before it switches the consumers' roles.
async fn wait_active_switch(env: &Env, revision: &str) -> Instant {
    let services = env.ns.api::<Service>();
    let start = Instant::now();
    loop {
        if let Ok(svc) = services.get(NAME).await {
            let selector = svc.spec.and_then(|s| s.selector).unwrap_or_default();
            if selector.get(LABEL_REVISION).map(String::as_str) == Some(revision) {
                return Instant::now();
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the active Service never selected {revision}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `v2` is stable and the rollout Healthy (through Degraded, which a fault that
/// takes every API pod out of the Service may cause until they serve again); panics with the
/// status and every API pod's `/health` when it does not happen within `secs`.
async fn wait_promoted(env: &Env, v2: &str, secs: u64) -> AurenRuntimeStatus {
    let start = Instant::now();
    let mut last = AurenRuntimeStatus::default();
    while start.elapsed() < Duration::from_secs(secs) {
        if let Ok(ar) = env.ns.runtimes().get(NAME).await {
            last = ar.status.unwrap_or_default();
            let promoted = last.stable.as_ref().is_some_and(|r| r.hash == v2);
            if promoted && last.phase == Some(Phase::Healthy) || ended(&last) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let promoted = last.stable.as_ref().is_some_and(|r| r.hash == v2);
    assert!(
        promoted && last.phase == Some(Phase::Healthy),
        "not Healthy on v2 after {secs} s: {:?} {:?}: {:?}\nAPI pods' /health:\n{}",
        last.phase,
        last.reason,
        last.message,
        api_health(env).await.join("\n")
    );
    let outcome = last.history.last().map(|h| (h.hash.as_str(), h.outcome));
    assert_eq!(outcome, Some((v2, Outcome::Promoted)));
    last
}

/// `<pod>: <ready condition> <its /health>` for every API pod.
async fn api_health(env: &Env) -> Vec<String> {
    let pods = env.ns.api::<Pod>();
    let list = pods
        .list(&ListParams::default().labels(&format!("{LABEL_ROLE}=api")))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let client = support::http_client();
    let mut out = Vec::new();
    for pod in list {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let status = pod.status.unwrap_or_default();
        let ready: Vec<String> = status
            .conditions
            .unwrap_or_default()
            .iter()
            .filter(|c| c.type_ == "Ready" || c.type_ == "auren.io/healthy")
            .map(|c| format!("{}={}", c.type_, c.status))
            .collect();
        let ip = status.pod_ip.unwrap_or_default();
        let health = match client.get(format!("http://{ip}:8000/health")).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => e.to_string(),
        };
        out.push(format!("{name} {ready:?}: {health}"));
    }
    out
}

/// Asserts the fault started while the cutover was in flight: v1 still stable when it
/// started, v2 stable only later. (The operator writes Promoting only after the reconcile's
/// role switches, which the fault may hold up, so the phase itself can still read Paused.)
fn assert_during_cutover(log: &[(Instant, AurenRuntimeStatus)], fault_at: Instant, v2: &str) {
    let before = log.iter().rev().find(|(t, _)| *t <= fault_at);
    let stable = |s: &AurenRuntimeStatus| s.stable.as_ref().map(|r| r.hash.clone());
    let before = before.map(|(_, s)| stable(s));
    assert!(
        before.is_some() && before != Some(Some(v2.to_owned())),
        "v2 was not stable yet when the fault started: {before:?}"
    );
    let promoted = log
        .iter()
        .find(|(_, s)| stable(s).as_deref() == Some(v2))
        .map(|(t, _)| *t);
    assert!(
        promoted.is_some_and(|t| t > fault_at),
        "v2 promoted after the fault started"
    );
    eprintln!(
        "fault started {:?} before v2 was stable",
        promoted.map(|t| t - fault_at)
    );
}

/// The last two releases: v1 installed, then v2 promoted.
fn assert_history(st: &AurenRuntimeStatus, v1: &str, v2: &str) {
    let history: Vec<(&str, Outcome)> = st
        .history
        .iter()
        .map(|h| (h.hash.as_str(), h.outcome))
        .collect();
    assert_eq!(
        history[history.len().saturating_sub(2)..],
        [(v1, Outcome::Promoted), (v2, Outcome::Promoted)]
    );
}

fn summary(answers: &[Answer]) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for a in answers {
        *counts.entry(a.status).or_insert(0) += 1;
    }
    format!("{} answers by status {counts:?}", answers.len())
}

/// A v1 → v2 rollout under load: v1 installed with `workers` clients on the active Service
/// (and the status log running), then v2 started with a client on the preview Service.
struct Rollout {
    v1: String,
    v2: String,
    status_log: StatusLog,
    active: Load,
    preview: Load,
}

impl Rollout {
    async fn start(env: &Env, spec_of: impl Fn(&str) -> Value, workers: u32) -> Rollout {
        let v1 = env.install_spec(spec_of("auren/runtime:v1")).await;
        let status_log = StatusLog::start(&env.ns, NAME);
        let active = Load::workers(
            env.active().await,
            "u-active",
            workers,
            Duration::from_millis(40),
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        let v2 = start_release(env, spec_of("auren/runtime:v2")).await;
        let preview = Load::start(
            env.ns.service_addr(&format!("{NAME}-preview")).await,
            "u-preview",
        );
        Rollout {
            v1,
            v2,
            status_log,
            active,
            preview,
        }
    }

    fn parts(self) -> (String, String, StatusLog, Load, Load) {
        (self.v1, self.v2, self.status_log, self.active, self.preview)
    }
}

/// Waits for the analysis to pass, promotes, and returns once the active Service has
/// switched to `v2` (the consumers hand over from then on): where the faults start.
async fn promote_to_the_switch(env: &Env, v2: &str) {
    wait_awaiting_promotion(env).await;
    promote(env);
    wait_active_switch(env, v2).await;
}

/// Every answer of every load, oldest first.
async fn finish(loads: Vec<Load>) -> Vec<Answer> {
    let mut all = Vec::new();
    for load in loads {
        all.extend(load.finish().await);
    }
    all.sort_by_key(|a| a.at);
    all
}

/// Faults outside the event path answer only these: 202, or 0 (no connection: the pod is gone
/// or out of the Service) and 503 (the runtime refuses what Kafka did not take).
fn assert_no_other_failures(answers: &[Answer]) {
    let odd: Vec<_> = answers
        .iter()
        .filter(|a| ![0, 202, 503].contains(&a.status))
        .collect();
    assert!(
        odd.is_empty(),
        "unexpected answers: {:?}",
        &odd[..odd.len().min(5)]
    );
}

/// The pipeline worked before the fault: some events were accepted before `fault_at`, so the
/// stored-once check covers events that crossed the fault.
fn assert_accepted_before(answers: &[Answer], fault_at: Instant) {
    let before = answers
        .iter()
        .filter(|a| a.status == 202 && a.at < fault_at)
        .count();
    assert!(before > 0, "no event was accepted before the fault");
}

/// Both releases served the active Service, and it accepted events again at the end.
fn assert_both_served(answers: &[Answer], v1: &str, v2: &str) {
    let releases: HashSet<_> = answers
        .iter()
        .filter(|a| a.status == 202)
        .filter_map(|a| a.release.as_deref())
        .collect();
    assert!(
        releases.contains(v1) && releases.contains(v2),
        "accepted by {releases:?}"
    );
    let last = answers.iter().rev().find(|a| a.status == 202);
    assert_eq!(
        last.and_then(|a| a.release.as_deref()),
        Some(v2),
        "v2 accepts at the end"
    );
}

/// Spec of case 1: two API pods per release (so each of v2's can be killed once), and an
/// analysis without the default `restarts` check, because this test restarts pods on purpose.
/// With it the operator rolls the release back (documented default: "error ratio under 1 %
/// and no restarts"), which is right for a release that crashes by itself but says nothing
/// about losing events. (Killing one v2 pod twice would be a crash loop, also rolled back.)
fn restart_tolerant(env: &Env, image: &str) -> Value {
    let mut spec = spec(env, image, &[]);
    spec["api"]["replicas"] = json!(2);
    spec["analysis"]["checks"] = json!([
        {"name": "error-ratio", "metric": "errorRatio", "max": 0.01},
    ]);
    spec
}

/// Kills the process of one pod per (revision, role), sparing the pods killed before.
async fn kill_all(env: &Env, targets: &[(&str, &str)], spare: &mut Vec<Killed>) -> Vec<Killed> {
    let mut killed = Vec::new();
    for (revision, role) in targets {
        let k = kill9_pod(&env.ns, revision, role, spare).await;
        spare.push(k.clone());
        killed.push(k);
    }
    killed
}

/// (1) `kill -9` of runtime pods of both releases during the cutover: first while v2 is
/// analysed (v1's consumer storing, an API pod of v1 serving the active Service, one of v2
/// serving the preview Service), then the moment the active Service switches to v2 (v1's
/// consumer about to be told to stand by, v2's other API pod taking the traffic, v2's
/// consumer about to be activated). Requests failing at a kill (no answer) are allowed; every
/// 202 is stored once, the agent restarts every killed container, and the release still ends
/// Healthy on v2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_runtime_pods_during_a_cutover_loses_no_accepted_event() {
    let started = Instant::now();
    let env = Env::start("fault-kill").await;
    let (v1, v2, status_log, active, preview) =
        Rollout::start(&env, |image| restart_tolerant(&env, image), 2)
            .await
            .parts();

    let before_kills = env
        .ns
        .wait_status(NAME, "Analyzing", 60, |s| {
            s.phase == Some(Phase::Analyzing) || ended(s)
        })
        .await;
    let mut spare = Vec::new();
    let analyzing = kill_all(
        &env,
        &[(&v1, "consumer"), (&v1, "api"), (&v2, "api")],
        &mut spare,
    )
    .await;
    for k in &analyzing {
        wait_restarted(&env.ns, k, 30).await;
    }
    promote_to_the_switch(&env, &v2).await;
    // v1's consumer may die twice: only the candidate's pods must not crash-loop.
    spare.retain(|k| k.pod != analyzing[0].pod);
    let promoting = kill_all(
        &env,
        &[(&v1, "consumer"), (&v2, "api"), (&v2, "consumer")],
        &mut spare,
    )
    .await;
    let st = wait_promoted(&env, &v2, 60).await;
    for k in &promoting {
        wait_restarted(&env.ns, k, 30).await;
    }
    active.carries_on(50).await;
    let active = active.finish().await;
    let mut answers = preview.finish().await;
    answers.extend(active.iter().cloned());
    let log = status_log.finish().await;
    eprintln!("{}; took {:?}", summary(&answers), started.elapsed());

    // The status seen right before the kills (the 200 ms status log may not have sampled it yet).
    assert_eq!(
        before_kills.phase,
        Some(Phase::Analyzing),
        "first kills during the analysis"
    );
    assert_accepted_before(&answers, analyzing[0].at);
    assert_during_cutover(&log, promoting[0].at, &v2);
    assert_history(&st, &v1, &v2);
    assert_no_other_failures(&answers);
    assert_both_served(&active, &v1, &v2);
    let last_kill = promoting[promoting.len() - 1].at;
    assert!(
        active.iter().any(|a| a.status == 202 && a.at > last_kill),
        "nothing accepted after the last kill"
    );
    env.assert_stored_once(&accepted_ids(&answers)).await;
}

/// (2) The Kafka broker stops answering for 10 s from the moment the active Service switches
/// to v2. "Stopped" is SIGSTOP then SIGCONT ([`support::Broker::pause`]); (2b) below is the crash
/// and restart. A frozen broker is what a network partition or a long GC pause looks like to
/// clients: connections stay open, nothing is answered.
///
/// The releases use a 2 s delivery timeout (`KAFKA_DELIVERY_TIMEOUT_MS`), under the clients'
/// 5 s timeout, so the API's refusals (503) reach them. While frozen, no 202 may be answered
/// (Kafka holds nothing new); afterwards the consumer handover completes, v2 is promoted and
/// every 202 is stored once.
///
/// While Kafka is out the API pods report it in `/health`, so the operator's readiness gate
/// takes them out of the Services (once v2 is stable the rollout may read Degraded,
/// StableUnavailable, until they serve again). They must be back within 15 s of the broker's
/// return. The previous release is kept 60 s (`scaleDownDelaySeconds`) so that its
/// scale-down, which makes the operator reconcile, cannot be what brings them back. This case
/// found two bugs: a half-open circuit breaker reported as degraded kept a pod out of traffic
/// for good (runtime `app.rs`), and a recovered pod waited for an unrelated reconcile (up to
/// 300 s) to get its gate back (operator `controller/mod.rs`, `UNHEALTHY_REQUEUE`).
///
/// The analysis runs with the default failure limits: v2 is promoted during the freeze, and
/// its post-promotion watch sees the outage's 503s, which both releases report as Kafka down,
/// so they are a dependency outage and not v2's failure. (Before the operator told the two
/// apart, a rollback right after v2's consumer was activated, before its group join
/// completed, met a bug of the test broker of the time: tansu 0.6 kept a member that left mid-join as
/// the group's leader, and no consumer was assigned a partition again. The consumer now finishes a
/// join in flight before leaving; the runtime test
/// `a_rollback_right_after_a_broker_freeze_leaves_the_group_consuming` covers that path.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_frozen_for_10s_during_the_cutover_answers_503_never_202() {
    let env = Env::start("fault-broker").await;
    broker_out_for_10s_during_the_cutover(env, Outage::Freeze, 4).await;
}

/// (2b) The same with the broker really stopped: SIGKILL, and started again 10 s later on its
/// own log on disk: the clients see refused connections instead of silence, reconnect to a new
/// process, and the consumer group and committed offsets come back from the broker's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_and_restarted_after_10s_during_the_cutover_loses_no_accepted_event() {
    let env = Env::start_on("fault-broker-kill", support::Broker::private()).await;
    broker_out_for_10s_during_the_cutover(env, Outage::Restart, 4).await;
}

/// How the broker is taken out for (2) and (2b).
#[derive(Debug, Clone, Copy)]
enum Outage {
    /// SIGSTOP, then SIGCONT.
    Freeze,
    /// SIGKILL, then a new broker process on the same storage.
    Restart,
}

/// Runs the rollout of (2) with the broker out for 10 s from the active Service's switch, and
/// asserts: no 202 while it is out, 503s instead; accepted again within 15 s of its return;
/// v2 promoted; both releases served; every 202 stored once.
async fn broker_out_for_10s_during_the_cutover(mut env: Env, outage: Outage, workers: u32) {
    let started = Instant::now();
    let config = [("KAFKA_DELIVERY_TIMEOUT_MS", "2000")];
    let broker_spec = |image: &str| {
        let mut spec = spec(&env, image, &config);
        spec["strategy"]["blueGreen"]["scaleDownDelaySeconds"] = json!(60);
        spec
    };
    let (v1, v2, status_log, active, preview) =
        Rollout::start(&env, broker_spec, workers).await.parts();
    promote_to_the_switch(&env, &v2).await;
    let out_at = Instant::now();
    match outage {
        Outage::Freeze => env.broker.pause(),
        Outage::Restart => env.broker.stop(),
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    match outage {
        Outage::Freeze => env.broker.resume(),
        Outage::Restart => tokio::task::block_in_place(|| env.broker.start()),
    }
    let back_at = Instant::now();
    eprintln!("broker out ({outage:?}) for {:?}", back_at - out_at);
    let st = wait_promoted(&env, &v2, 90).await;
    eprintln!(
        "Healthy on v2 {:?} after the broker returned",
        back_at.elapsed()
    );
    let probe = probe_acceptance(&env, back_at, Duration::from_secs(15)).await;
    active.carries_on(50).await;
    let mut answers = finish(vec![active, preview]).await;
    answers.extend(probe);
    answers.sort_by_key(|a| a.at);
    let log = status_log.finish().await;
    eprintln!("{}; took {:?}", summary(&answers), started.elapsed());

    let while_out: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.at > out_at + Duration::from_millis(500) && a.at < back_at)
        .collect();
    let accepted_while_out: Vec<_> = while_out.iter().filter(|a| a.status == 202).collect();
    assert!(
        accepted_while_out.is_empty(),
        "202 while Kafka was out: {:?}",
        &accepted_while_out[..accepted_while_out.len().min(5)]
    );
    assert!(
        while_out.iter().any(|a| a.status == 503),
        "the API refused with 503 while Kafka was out: {}",
        summary(&while_out.iter().map(|a| (*a).clone()).collect::<Vec<_>>())
    );
    assert_no_other_failures(&answers);
    let back = answers.iter().find(|a| a.status == 202 && a.at > back_at);
    let back = back.map(|a| a.at - back_at);
    eprintln!("first 202 {back:?} after the broker returned");
    assert!(
        back.is_some_and(|d| d < Duration::from_secs(15)),
        "events accepted again within 15 s of the broker's return: {back:?}"
    );
    assert_gates_followed_by_push(&env).await;
    assert_accepted_before(&answers, out_at);
    assert_during_cutover(&log, out_at, &v2);
    assert_history(&st, &v1, &v2);
    assert_both_served(&answers, &v1, &v2);
    env.assert_stored_once(&accepted_ids(&answers)).await;
}

/// The pods pushed their health changes (outage, return) to the operator, and it wrote their
/// readiness gates from them: `auren_operator_health_changes_total` > 0 and gates reopened.
/// Prints the reopening times (docs/reliability.md quotes them).
async fn assert_gates_followed_by_push(env: &Env) {
    let metrics = env.operator.metrics().await;
    let lines: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("auren_operator_readiness_gate_follow_seconds"))
        .collect();
    eprintln!("gate follow:\n{}", lines.join("\n"));
    let pushed = support::counter_value(&metrics, "auren_operator_health_changes_total");
    assert!(pushed > 0.0, "no health change pushed: {lines:?}");
    let reopened = "auren_operator_readiness_gate_follow_seconds_count{gate=\"open\"}";
    assert!(support::metric_value(&metrics, reopened) > 0.0, "{lines:?}");
}

/// Posts to the active Service every 100 ms until an event is accepted or `limit` has passed
/// since `since`, so that "accepted again within `limit`" is observed however soon the
/// rollout ended; every answer, for the stored-once check.
async fn probe_acceptance(env: &Env, since: Instant, limit: Duration) -> Vec<Answer> {
    let addr = env.active().await;
    let client = support::http_client();
    let mut answers = Vec::new();
    for n in 0.. {
        let answer = post_event(&client, &addr, "u-probe", n).await;
        let done = answer.status == 202 || since.elapsed() > limit;
        answers.push(answer);
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    answers
}

/// (3) PostgreSQL stopped (`pg_ctl -m immediate`) for 3 s from the moment the active Service
/// switches to v2, so v1's consumer is told to stand by and v2's is activated while nothing
/// can be stored. The API keeps accepting (Kafka holds the events); the consumers retry
/// without committing; the handover completes; every 202 is stored once; Healthy on v2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_during_the_consumer_handover_loses_no_accepted_event() {
    let started = Instant::now();
    let mut env = Env::start("fault-db").await;
    let (v1, v2, status_log, active, preview) =
        Rollout::start(&env, |image| spec(&env, image, &[]), 2)
            .await
            .parts();
    promote_to_the_switch(&env, &v2).await;
    tokio::task::block_in_place(|| env.db.stop());
    let stopped_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::block_in_place(|| env.db.start());
    let restarted_at = Instant::now();
    eprintln!("postgres down for {:?}", restarted_at - stopped_at);
    let st = wait_promoted(&env, &v2, 60).await;
    active.carries_on(50).await;
    let active = active.finish().await;
    let mut answers = preview.finish().await;
    answers.extend(active.iter().cloned());
    let log = status_log.finish().await;
    eprintln!("{}; took {:?}", summary(&answers), started.elapsed());

    assert_accepted_before(&answers, stopped_at);
    assert_during_cutover(&log, stopped_at, &v2);
    // The active Service never loses its endpoints here: the API does not need PostgreSQL.
    // (The preview Service is empty while v2 starts, so its clients may see no answer.)
    let failed: Vec<_> = active.iter().filter(|a| a.status != 202).collect();
    assert!(
        failed.is_empty(),
        "{} of {} active requests failed: {:?}",
        failed.len(),
        active.len(),
        &failed[..failed.len().min(5)]
    );
    assert_no_other_failures(&answers);
    assert_history(&st, &v1, &v2);
    assert_both_served(&active, &v1, &v2);
    env.assert_stored_once(&accepted_ids(&answers)).await;
}

/// The spec of the outage rows (7) and (8) of docs/reliability.md: the analysis with every default limit
/// (`failureLimit` 3, `consecutiveFailureLimit` 2, 3 successful measurements, the default
/// checks) on 3 s windows, automatic promotion, the default 30 s scale-down delay (the
/// post-promotion watch runs as long), and a 2 s delivery timeout so refusals reach clients.
fn outage_spec(env: &Env, image: &str, config: &[(&str, &str)]) -> Value {
    let mut config = config.to_vec();
    config.push(("KAFKA_DELIVERY_TIMEOUT_MS", "2000"));
    let mut spec = env.spec(image, &config);
    spec["analysis"] = json!({"interval": "3s"});
    spec["strategy"] = json!({"blueGreen": {}});
    spec
}

/// Freezes the broker for 10 s; returns when it froze and when it answered again.
async fn freeze_broker_for_10s(env: &Env) -> (Instant, Instant) {
    let frozen_at = Instant::now();
    env.broker.pause();
    tokio::time::sleep(Duration::from_secs(10)).await;
    env.broker.resume();
    (frozen_at, Instant::now())
}

/// Measurements of `revision` with `verdict` seen in the status log, by window end (each once).
fn measured(
    log: &[(Instant, AurenRuntimeStatus)],
    revision: &str,
    verdict: Verdict,
) -> Vec<(String, Option<String>)> {
    let mut seen: Vec<(String, Option<String>)> = log
        .iter()
        .flat_map(|(_, s)| s.measurements.iter())
        .filter(|m| m.revision == revision && m.verdict == verdict)
        .map(|m| (m.at.0.to_string(), m.reason.clone()))
        .collect();
    seen.sort();
    seen.dedup();
    seen
}

/// When the status log first showed `revision` as stable.
fn stable_since(log: &[(Instant, AurenRuntimeStatus)], revision: &str) -> Option<Instant> {
    log.iter()
        .find(|(_, s)| s.stable.as_ref().is_some_and(|r| r.hash == revision))
        .map(|(t, _)| *t)
}

/// No 202 was answered while the broker was frozen (after the first half second, when
/// requests it had already acknowledged may still be answered).
fn assert_none_accepted_while_frozen(answers: &[Answer], frozen: (Instant, Instant)) {
    let accepted: Vec<_> = answers
        .iter()
        .filter(|a| a.status == 202)
        .filter(|a| a.at > frozen.0 + Duration::from_millis(500) && a.at < frozen.1)
        .collect();
    assert!(
        accepted.is_empty(),
        "202 while Kafka was frozen: {:?}",
        &accepted[..accepted.len().min(5)]
    );
}

/// (7) A good release through two broker outages, with the default analysis limits: the
/// broker freezes for 10 s during v2's analysis, and again for 10 s right after v2 is
/// promoted (while v1 is still up for the post-promotion watch). Both releases report Kafka
/// down, so the failing measurements are dependency outages: the analysis waits with the
/// reason in its status, resumes when the broker returns and promotes v2; the watch keeps v2.
/// Nothing is rolled back, and every 202 is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_release_through_two_broker_outages_is_promoted_and_kept() {
    let started = Instant::now();
    let env = Env::start("outage-good").await;
    let (v1, v2, status_log, active, preview) =
        Rollout::start(&env, |image| outage_spec(&env, image, &[]), 2)
            .await
            .parts();
    env.ns
        .wait_status(NAME, "v2's first successful measurement", 60, |s| {
            s.analysis.as_ref().is_some_and(|a| a.successes >= 1) || ended(s)
        })
        .await;
    let during_analysis = freeze_broker_for_10s(&env).await;
    eprintln!("broker frozen during the analysis");
    env.ns
        .wait_status(NAME, "v2 promoted", 90, |s| {
            s.stable.as_ref().is_some_and(|r| r.hash == v2) || ended(s)
        })
        .await;
    let after_promotion = freeze_broker_for_10s(&env).await;
    eprintln!("broker frozen right after the promotion");
    let st = env
        .ns
        .wait_status(NAME, "Healthy, the post-promotion watch over", 90, |s| {
            s.previous.is_none() && s.phase == Some(Phase::Healthy) || ended(s)
        })
        .await;
    let probe = probe_acceptance(&env, after_promotion.1, Duration::from_secs(60)).await;
    let mut answers = finish(vec![active, preview]).await;
    answers.extend(probe);
    let log = status_log.finish().await;
    eprintln!("{}; took {:?}", summary(&answers), started.elapsed());

    assert_eq!(st.phase, Some(Phase::Healthy), "{:?}", st.message);
    assert_history(&st, &v1, &v2);
    let promoted_at = stable_since(&log, &v2).expect("v2 became stable");
    assert!(
        promoted_at > during_analysis.1,
        "v2 was promoted on measurements after the outage, not on its silence"
    );
    let before: Vec<_> = log
        .iter()
        .filter(|(t, _)| *t < promoted_at)
        .cloned()
        .collect();
    let in_analysis = measured(&before, &v2, Verdict::DependencyOutage);
    let outages = measured(&log, &v2, Verdict::DependencyOutage);
    let in_watch: Vec<_> = outages
        .iter()
        .filter(|m| !in_analysis.contains(m))
        .collect();
    eprintln!("v2's dependency-outage measurements: {outages:#?}");
    assert!(
        !in_analysis.is_empty(),
        "the outage during the analysis was one"
    );
    assert!(
        !in_watch.is_empty(),
        "the outage after the promotion was one"
    );
    assert!(
        log.iter().any(|(t, s)| *t < promoted_at
            && s.phase == Some(Phase::Analyzing)
            && s.reason.as_deref() == Some("DependencyOutage")),
        "the analysis said it waited for the outage"
    );
    assert!(
        (log.iter()).all(|(_, s)| s.history.iter().all(|h| h.outcome != Outcome::RolledBack)),
        "nothing was rolled back"
    );
    assert_none_accepted_while_frozen(&answers, during_analysis);
    assert_none_accepted_while_frozen(&answers, after_promotion);
    assert_no_other_failures(&answers);
    assert_accepted_before(&answers, during_analysis.0);
    assert_both_served(&answers, &v1, &v2);
    env.assert_stored_once(&accepted_ids(&answers)).await;
}

/// (8) A bad release (20 % injected errors) whose analysis starts as the broker freezes for
/// 10 s: while both releases see the outage the analysis waits, and once the broker is back
/// the candidate fails while the stable release is fine, and it is rolled back, with the
/// default limits, within a few measurements. v1 serves throughout; every 202 stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_release_during_a_broker_outage_is_still_rolled_back() {
    let started = Instant::now();
    let env = Env::start("outage-bad").await;
    let v1 = env
        .install_spec(outage_spec(&env, "auren/runtime:v1", &[]))
        .await;
    let status_log = StatusLog::start(&env.ns, NAME);
    let active = Load::workers(env.active().await, "u-active", 2, Duration::from_millis(40));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut bad = outage_spec(&env, "auren/runtime:v3", &[("FAULT_ERROR_RATE", "0.2")]);
    bad["allowUnsafe"] = json!(["faults"]); // fault injection on purpose
    let v3 = start_release(&env, bad).await;
    let preview = Load::start(
        env.ns.service_addr(&format!("{NAME}-preview")).await,
        "u-preview",
    );
    env.ns
        .wait_status(NAME, "v3's analysis", 60, |s| {
            s.phase == Some(Phase::Analyzing) || ended(s)
        })
        .await;
    let frozen = freeze_broker_for_10s(&env).await;
    let st = env
        .ns
        .wait_status(NAME, "v3 rolled back", 60, |s| {
            s.phase == Some(Phase::RolledBack)
        })
        .await;
    let rolled_back_after = frozen.1.elapsed();
    eprintln!("rolled back {rolled_back_after:?} after the broker returned");
    active.carries_on(50).await;
    let active = active.finish().await;
    let answers = finish(vec![preview])
        .await
        .into_iter()
        .chain(active.clone());
    let answers: Vec<Answer> = answers.collect();
    let log = status_log.finish().await;
    eprintln!("{}; took {:?}", summary(&answers), started.elapsed());

    assert_eq!(
        st.reason.as_deref(),
        Some("AnalysisFailed"),
        "{:?}",
        st.message
    );
    assert_eq!(
        st.stable.as_ref().map(|r| r.hash.as_str()),
        Some(v1.as_str())
    );
    let last = st.history.last().map(|h| (h.hash.as_str(), h.outcome));
    assert_eq!(last, Some((v3.as_str(), Outcome::RolledBack)));
    let outages = measured(&log, &v3, Verdict::DependencyOutage);
    eprintln!("v3's dependency-outage measurements: {outages:#?}");
    assert!(!outages.is_empty(), "the outage was measured as one");
    let rolled_back_at = log
        .iter()
        .find(|(_, s)| s.phase == Some(Phase::RolledBack))
        .map(|(t, _)| *t);
    assert!(
        rolled_back_at.is_some_and(|t| t > frozen.1),
        "rolled back once the broker was back, not during the outage"
    );
    assert_none_accepted_while_frozen(&answers, frozen);
    // v3's injected errors reach only the preview Service's client.
    assert_no_other_failures(&active);
    assert!(
        (active.iter()).all(|a| a.status != 202 || a.release.as_deref() == Some(v1.as_str())),
        "only v1 answered the active Service"
    );
    assert_accepted_before(&answers, frozen.0);
    let served_by_v3 = answers
        .iter()
        .any(|a| a.status == 202 && a.release.as_deref() == Some(v3.as_str()));
    assert!(served_by_v3, "the preview Service reached v3");
    env.assert_stored_once(&accepted_ids(&answers)).await;
}
