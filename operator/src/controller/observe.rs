//! Reading the world of one AurenRuntime: its Deployments, its pods and each consumer pod's
//! role, folded into the `ReleaseState`s a decision takes. The folding is pure.

use std::collections::BTreeMap;

use auren_contract::ConsumerRole;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::api::AurenRuntime;
use crate::resources::{ADMIN_PORT_NAME, LABEL_REVISION, LABEL_ROLE, Role, canary_label};
use crate::rollout::{CanaryPair, PodSet, ReleaseState, RoleCounts};

use super::Context;
use super::cache::Cache;
use super::pod_api::{self, PodAddr};

/// Waiting reasons that are a normal part of starting, not a reason to explain a delay.
const ROUTINE_WAITING: [&str; 2] = ["ContainerCreating", "PodInitializing"];

/// What exists of one AurenRuntime.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    pub deployments: Vec<Deployment>,
    pub pods: Vec<Pod>,
    /// Role of each consumer pod (by name); `None` when it could not be read.
    pub roles: BTreeMap<String, Option<ConsumerRole>>,
    /// `/health` of each running pod (by name): `Err` says what is not healthy.
    pub health: BTreeMap<String, Health>,
    /// Shared dependencies (`kafka`, `database`) each running pod's `/health` reports down.
    pub dependencies_down: BTreeMap<String, Vec<String>>,
    /// When each running pod's health state last changed (its `/health` says).
    pub health_changed_at: BTreeMap<String, Timestamp>,
    /// A consumer pod refused the admin token (401/403).
    pub token_refused: bool,
}

/// A pod's `/health` verdict.
pub type Health = Result<(), String>;

impl Cluster {
    pub fn releases(&self) -> Vec<ReleaseState> {
        release_states(&self.deployments, &self.pods, &self.roles, &self.health)
    }

    /// `spec.replicas` of a Deployment, if it exists.
    pub fn replicas(&self, name: &str) -> Option<i32> {
        self.deployments
            .iter()
            .find(|d| d.name_any() == name)
            .and_then(|d| d.spec.replicas)
    }

    /// Pods of one workload of one revision that are not terminating.
    pub fn pods_of<'a>(&'a self, revision: &'a str, role: Role) -> impl Iterator<Item = &'a Pod> {
        self.pods.iter().filter(move |p| {
            label(p, LABEL_REVISION) == Some(revision)
                && label(p, LABEL_ROLE) == Some(role.as_str())
                && p.metadata.deletion_timestamp.is_none()
        })
    }

    /// Every ready API pod of `pair`'s stable release carries the canary's label (as this
    /// replica's pod cache shows it): the active Service may select the canary without losing
    /// a pod that serves now.
    pub fn canary_labelled(&self, pair: &CanaryPair) -> bool {
        let (key, value) = canary_label(pair);
        self.pods_of(&pair.stable, Role::Api)
            .filter(|p| ready(p))
            .all(|p| label(p, &key) == Some(value.as_str()))
    }
}

/// Reads the cached objects of `ar` and asks each running pod for its health and role.
pub async fn read(ctx: &Context, cache: &Cache, ar: &AurenRuntime, token: &str) -> Cluster {
    let deployments = cache.deployments_of(ar);
    let pods = cache.pods_of(ar);
    let mut health = BTreeMap::new();
    let mut dependencies_down = BTreeMap::new();
    let mut health_changed_at = BTreeMap::new();
    let live = pods
        .iter()
        .filter(|p| running(p) && p.metadata.deletion_timestamp.is_none());
    // Unsafe settings the spec allows report degraded components on purpose.
    let allowed: Vec<&str> = ar.spec.allow_unsafe.iter().map(|s| s.component()).collect();
    for pod in live {
        if let Some(addr) = address(pod) {
            let report = pod_api::health(&ctx.http, &addr, &allowed).await;
            health.insert(pod.name_any(), report.verdict);
            dependencies_down.insert(pod.name_any(), report.dependencies_down);
            if let Some(at) = report.changed_at {
                health_changed_at.insert(pod.name_any(), at);
            }
        }
    }
    let mut roles = BTreeMap::new();
    let mut token_refused = false;
    let consumers = pods
        .iter()
        .filter(|p| label(p, LABEL_ROLE) == Some(Role::Consumer.as_str()));
    for pod in consumers {
        let role = match address(pod) {
            Some(addr) => pod_api::role(&ctx.http, &addr, token).await,
            None => Err(pod_api::PodHttpError::NoAddress),
        };
        token_refused |= role
            .as_ref()
            .is_err_and(pod_api::PodHttpError::refused_token);
        roles.insert(pod.name_any(), role.ok());
    }
    Cluster {
        deployments,
        pods,
        roles,
        health,
        dependencies_down,
        health_changed_at,
        token_refused,
    }
}

pub fn label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// Where the pod's runtime listens: its IP, the container's `http` port and its `admin` port
/// (the contract's default when the pod does not name one).
pub fn address(pod: &Pod) -> Option<PodAddr> {
    let ip = pod.status.as_ref()?.pod_ip.clone()?;
    let container = pod.spec.as_ref()?.containers.first()?;
    let named = |name: &str| {
        let mut ports = container.ports.iter().flatten();
        ports.find(|p| p.name.as_deref() == Some(name))
    };
    let port = named("http")
        .or_else(|| container.ports.as_ref()?.first())?
        .container_port;
    let admin_port = named(ADMIN_PORT_NAME).map_or(i32::from(auren_contract::ports::ADMIN), |p| {
        p.container_port
    });
    Some(PodAddr {
        name: pod.name_any(),
        ip,
        port,
        admin_port,
    })
}

/// The pod's container runs (a process that is not running cannot consume or answer).
pub fn running(pod: &Pod) -> bool {
    statuses(pod).any(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
}

fn statuses(pod: &Pod) -> impl Iterator<Item = &k8s_openapi::api::core::v1::ContainerStatus> {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
}

fn ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Container restarts of `pod`, summed over its containers.
pub fn restarts(pod: &Pod) -> i32 {
    statuses(pod).map(|c| c.restart_count).sum()
}

fn waiting(pod: &Pod) -> Option<String> {
    statuses(pod)
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
        .find(|r| !ROUTINE_WAITING.contains(&r.as_str()))
}

fn crash_looping(pod: &Pod) -> bool {
    let last_failed = |c: &k8s_openapi::api::core::v1::ContainerStatus| {
        c.last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .is_some_and(|t| t.exit_code != 0)
    };
    waiting(pod).as_deref() == Some("CrashLoopBackOff")
        || statuses(pod).any(|c| c.restart_count >= 3 && last_failed(c) && !c.ready)
}

/// One `ReleaseState` per revision with a Deployment (or pods).
pub fn release_states(
    deployments: &[Deployment],
    pods: &[Pod],
    roles: &BTreeMap<String, Option<ConsumerRole>>,
    health: &BTreeMap<String, Health>,
) -> Vec<ReleaseState> {
    let mut by_revision: BTreeMap<String, ReleaseState> = BTreeMap::new();
    for d in deployments {
        let Some(revision) = d.labels().get(LABEL_REVISION) else {
            continue;
        };
        let state = entry(&mut by_revision, revision);
        let desired = d.spec.replicas.unwrap_or(1);
        match d.labels().get(LABEL_ROLE).map(String::as_str) {
            Some("api") => state.api.desired = desired,
            Some("consumer") => state.consumer.desired = desired,
            _ => {}
        }
    }
    for pod in pods {
        let Some(revision) = label(pod, LABEL_REVISION) else {
            continue;
        };
        let state = entry(&mut by_revision, revision);
        let set = match label(pod, LABEL_ROLE) {
            Some("api") => &mut state.api,
            Some("consumer") => {
                count_role(&mut state.roles, roles.get(&pod.name_any()));
                &mut state.consumer
            }
            _ => continue,
        };
        add_pod(set, pod, health.get(&pod.name_any()));
    }
    by_revision.into_values().collect()
}

fn entry<'a>(map: &'a mut BTreeMap<String, ReleaseState>, revision: &str) -> &'a mut ReleaseState {
    map.entry(revision.to_owned())
        .or_insert_with(|| ReleaseState {
            revision: revision.to_owned(),
            ..Default::default()
        })
}

fn add_pod(set: &mut PodSet, pod: &Pod, health: Option<&Health>) {
    let terminating = pod.metadata.deletion_timestamp.is_some();
    if ready(pod) && !terminating {
        set.ready += 1;
    }
    set.restarts = set.restarts.saturating_add(restarts(pod));
    set.crash_looping |= crash_looping(pod);
    if set.waiting_reason.is_none() {
        // A running pod kept out by its readiness gate says why.
        let unhealthy = health.and_then(|h| h.clone().err()).filter(|_| !ready(pod));
        set.waiting_reason = waiting(pod).or(unhealthy.map(|p| format!("RuntimeNotHealthy: {p}")));
    }
}

fn count_role(counts: &mut RoleCounts, role: Option<&Option<ConsumerRole>>) {
    match role.copied().flatten() {
        Some(ConsumerRole::Active) => counts.active += 1,
        Some(ConsumerRole::Standby) => counts.standby += 1,
        None => counts.unknown += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, revision: &str, role: &str, status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {LABEL_REVISION: revision, LABEL_ROLE: role}},
            "spec": {"containers": [{"name": "runtime", "ports": [{"name": "http", "containerPort": 8000}]}]},
            "status": status,
        }))
        .unwrap()
    }

    fn deployment(revision: &str, role: &str, replicas: i32) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": format!("x-{revision}-{role}"), "labels": {LABEL_REVISION: revision, LABEL_ROLE: role}},
            "spec": {"replicas": replicas, "selector": {}, "template": {}},
        }))
        .unwrap()
    }

    #[test]
    fn a_canary_waits_for_every_ready_stable_pod_to_carry_its_label() {
        let ready = json!({"conditions": [{"type": "Ready", "status": "True"}]});
        let pair = CanaryPair {
            stable: "aaa".into(),
            candidate: "bbb".into(),
        };
        let mut labelled = pod("a1", "aaa", "api", ready.clone());
        labelled
            .labels_mut()
            .insert("auren.io/canary-bbb".into(), "aaa".into());
        let cluster = |pods: Vec<Pod>| Cluster {
            pods,
            ..Default::default()
        };
        let starting = pod("a3", "aaa", "api", json!({}));
        assert!(cluster(vec![labelled.clone(), starting.clone()]).canary_labelled(&pair));
        let unlabelled = pod("a2", "aaa", "api", ready);
        assert!(
            !cluster(vec![labelled.clone(), unlabelled]).canary_labelled(&pair),
            "a serving pod would leave the Service"
        );
        let mut wrong = labelled.clone();
        wrong
            .labels_mut()
            .insert("auren.io/canary-bbb".into(), "zzz".into());
        assert!(!cluster(vec![wrong]).canary_labelled(&pair));
    }

    #[test]
    fn folds_pods_and_roles_per_revision() {
        let ready = json!({"podIP": "127.0.1.2", "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "runtime", "image": "i", "imageID": "", "ready": true, "restartCount": 1, "state": {"running": {}}}]});
        let crashing = json!({"podIP": "127.0.1.3", "containerStatuses": [{"name": "runtime", "image": "i", "imageID": "", "ready": false, "restartCount": 4,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]});
        let pods = vec![
            pod("a1", "aaa", "api", ready.clone()),
            pod("c1", "aaa", "consumer", ready),
            pod("b1", "bbb", "api", crashing),
            pod("c2", "bbb", "consumer", json!({})),
        ];
        let deployments = vec![
            deployment("aaa", "api", 2),
            deployment("bbb", "consumer", 1),
        ];
        let roles = BTreeMap::from([
            ("c1".to_owned(), Some(ConsumerRole::Active)),
            ("c2".to_owned(), None),
        ]);
        let health = BTreeMap::from([
            ("c1".to_owned(), Ok(())),
            ("c2".to_owned(), Err("kafka unhealthy".to_owned())),
        ]);
        let states = release_states(&deployments, &pods, &roles, &health);
        assert_eq!(states.len(), 2);
        let a = &states[0];
        assert_eq!((a.api.desired, a.api.ready, a.api.restarts), (2, 1, 1));
        assert_eq!((a.roles.active, a.roles.unknown), (1, 0));
        let b = &states[1];
        assert!(b.api.crash_looping);
        assert_eq!(b.api.waiting_reason.as_deref(), Some("CrashLoopBackOff"));
        assert_eq!((b.consumer.desired, b.roles.unknown), (1, 1));
        assert_eq!(
            b.consumer.waiting_reason.as_deref(),
            Some("RuntimeNotHealthy: kafka unhealthy")
        );
        assert_eq!(address(&pods[0]).unwrap().port, 8000);
        assert_eq!(address(&pods[0]).unwrap().admin_port, 8001);
        assert!(running(&pods[0]) && !running(&pods[2]));
    }
}
