//! Push, not poll: the operator follows each running runtime pod's health with one long poll
//! of its `/health` (contract `health_watch`). When a pod's health state changes, the pod
//! answers at once, and its AurenRuntime is reconciled: the readiness gate follows the pod
//! within the reconcile's debounce, however long the pod was out, with no request to the API
//! server and none to the pod while nothing changes (one held request per pod, renewed every
//! [`WAIT`]).
//!
//! Followers start and stop with what the pod watch reports ([`Followers::saw`]); one
//! leadership term owns them, and they stop with it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::task::AbortHandle;

use crate::api::AurenRuntime;
use crate::metrics::Metrics;
use crate::resources::LABEL_INSTANCE;

use super::observe;
use super::pod_api::{self, PodAddr};

/// How long a pod holds one long poll while nothing changes.
const WAIT: Duration = Duration::from_secs(30);
/// Pause after a failed long poll (the pod is starting, stopping or unreachable).
const RETRY: Duration = Duration::from_secs(1);
/// A pod that answers an unchanged state sooner than this did not hold the request: it is
/// asked again only after this long, so a misbehaving pod costs one request a second at most.
const SHORTEST_ROUND: Duration = Duration::from_secs(1);

/// The followers of one leadership term, by pod uid.
pub struct Followers {
    running: Mutex<HashMap<String, Follower>>,
    http: reqwest::Client,
    pods: Store<Pod>,
    metrics: Arc<Metrics>,
    changes: UnboundedSender<ObjectRef<AurenRuntime>>,
}

/// One pod's long poll: where it asks, and the task that asks.
struct Follower {
    ip: String,
    task: AbortHandle,
}

impl Followers {
    /// The followers, and the stream of AurenRuntimes whose pods' health changed.
    pub fn new(
        http: reqwest::Client,
        pods: Store<Pod>,
        metrics: Arc<Metrics>,
    ) -> (Self, UnboundedReceiver<ObjectRef<AurenRuntime>>) {
        let (changes, changed) = unbounded();
        let followers = Followers {
            running: Mutex::default(),
            http,
            pods,
            metrics,
            changes,
        };
        (followers, changed)
    }

    /// The pod watch reported `pod` (added, changed or deleted): follow it while it runs.
    pub fn pod_reported(&self, pod: &Pod) {
        let Some(uid) = pod.uid() else {
            return;
        };
        let Ok(mut running) = self.running.lock() else {
            return;
        };
        let target = followable(pod);
        match (running.get(&uid), target) {
            (Some(f), Some((addr, _))) if f.ip == addr.ip => {}
            (_, Some((addr, owner))) => {
                let ip = addr.ip.clone();
                let task = tokio::spawn(self.follow(uid.clone(), addr, owner));
                let old = running.insert(
                    uid,
                    Follower {
                        ip,
                        task: task.abort_handle(),
                    },
                );
                old.inspect(|f| f.task.abort());
            }
            (Some(_), None) => {
                running.remove(&uid).inspect(|f| f.task.abort());
            }
            (None, None) => {}
        }
    }

    /// Pods followed now.
    #[cfg(test)]
    fn count(&self) -> usize {
        self.running.lock().map(|r| r.len()).unwrap_or(0)
    }

    fn follow(
        &self,
        uid: String,
        addr: PodAddr,
        owner: ObjectRef<AurenRuntime>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let (http, pods) = (self.http.clone(), self.pods.clone());
        let (metrics, changes) = (self.metrics.clone(), self.changes.clone());
        let pod =
            ObjectRef::<Pod>::new(&addr.name).within(owner.namespace.as_deref().unwrap_or(""));
        async move {
            let mut known: Option<String> = None;
            loop {
                let asked = Instant::now();
                match pod_api::next_health_change(&http, &addr, known.as_deref(), WAIT).await {
                    // This runtime names no health state: the reconciles poll it instead.
                    Ok(None) => return,
                    Ok(Some(now)) if known.as_ref() != Some(&now) => {
                        if known.is_some() {
                            metrics.health_pushed();
                            tracing::debug!(pod = %addr.name, change = %now, "pod health changed");
                            if changes.unbounded_send(owner.clone()).is_err() {
                                return;
                            }
                        }
                        known = Some(now);
                    }
                    Ok(Some(_)) => {
                        tokio::time::sleep(SHORTEST_ROUND.saturating_sub(asked.elapsed())).await
                    }
                    Err(_) if !still_there(&pods, &pod, &uid) => return,
                    Err(_) => tokio::time::sleep(RETRY).await,
                }
            }
        }
    }
}

impl Drop for Followers {
    fn drop(&mut self) {
        if let Ok(running) = self.running.lock() {
            running.values().for_each(|f| f.task.abort());
        }
    }
}

/// Where a pod's runtime answers and the AurenRuntime it belongs to, while it runs.
fn followable(pod: &Pod) -> Option<(PodAddr, ObjectRef<AurenRuntime>)> {
    if pod.metadata.deletion_timestamp.is_some() || !observe::running(pod) {
        return None;
    }
    let owner = pod.labels().get(LABEL_INSTANCE)?;
    let owner = ObjectRef::new(owner).within(&pod.namespace()?);
    Some((observe::address(pod)?, owner))
}

/// The pod is still in the watch cache, as the same pod.
fn still_there(pods: &Store<Pod>, pod: &ObjectRef<Pod>, uid: &str) -> bool {
    pods.get(pod)
        .is_some_and(|p| p.uid().as_deref() == Some(uid))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::extract::{Query, State};
    use futures::StreamExt;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use kube::runtime::reflector;
    use serde_json::{Value, json};
    use tokio::sync::watch;

    use super::*;

    /// A runtime's `/health` long poll: the state is a watch channel's value (`None`: a runtime
    /// that names no state); every request is counted.
    #[derive(Clone)]
    struct FakeRuntime {
        state: watch::Sender<Option<String>>,
        requests: Arc<AtomicUsize>,
    }

    async fn health(
        State(rt): State<FakeRuntime>,
        Query(q): Query<std::collections::HashMap<String, String>>,
    ) -> axum::Json<Value> {
        rt.requests.fetch_add(1, Ordering::SeqCst);
        let mut changes = rt.state.subscribe();
        if let (Some(unless), Some(wait)) = (q.get("unless"), q.get("wait")) {
            let wait = Duration::from_secs(wait.parse().unwrap());
            let changed = changes.wait_for(|s| s.as_deref() != Some(unless.as_str()));
            let _ = tokio::time::timeout(wait, changed).await;
        }
        let state = rt.state.borrow().clone();
        axum::Json(json!({"status": "healthy", "components": {}, "change": state}))
    }

    async fn fake_runtime(state: Option<&str>) -> (FakeRuntime, u16) {
        let rt = FakeRuntime {
            state: watch::Sender::new(state.map(str::to_owned)),
            requests: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/health", axum::routing::get(health))
            .with_state(rt.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (rt, port)
    }

    fn running_pod(port: u16) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-api-1", "namespace": "ns", "uid": "u1",
                         "labels": {LABEL_INSTANCE: "web"}},
            "spec": {"containers": [{"name": "runtime",
                                     "ports": [{"name": "http", "containerPort": port}]}]},
            "status": {"podIP": "127.0.0.1",
                       "containerStatuses": [{"name": "runtime", "image": "i", "imageID": "",
                                              "ready": true, "restartCount": 0,
                                              "state": {"running": {}}}]}
        }))
        .unwrap()
    }

    fn followers() -> (Followers, UnboundedReceiver<ObjectRef<AurenRuntime>>) {
        let (pods, _writer) = reflector::store();
        Followers::new(reqwest::Client::new(), pods, Arc::default())
    }

    #[tokio::test]
    async fn a_health_change_reconciles_its_runtime_at_once() {
        let (rt, port) = fake_runtime(Some("a-1")).await;
        let (followers, mut changed) = followers();
        followers.pod_reported(&running_pod(port));
        followers.pod_reported(&running_pod(port));
        assert_eq!(followers.count(), 1, "one follower per pod");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            rt.requests.load(Ordering::SeqCst),
            2,
            "asked once, then held"
        );

        rt.state.send_replace(Some("a-2".into()));
        let next = tokio::time::timeout(Duration::from_millis(500), changed.next()).await;
        let owner = next.expect("pushed at once").unwrap();
        assert_eq!(
            (owner.name.as_str(), owner.namespace.as_deref()),
            ("web", Some("ns"))
        );
        let metrics = followers.metrics.encode().unwrap();
        assert!(
            metrics.contains("auren_operator_health_changes_total 1"),
            "{metrics}"
        );

        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            changed.try_recv().is_err(),
            "nothing more changed: no reconcile"
        );
        assert_eq!(
            rt.requests.load(Ordering::SeqCst),
            3,
            "held again, not polled"
        );

        let mut gone = running_pod(port);
        gone.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
        followers.pod_reported(&gone);
        assert_eq!(followers.count(), 0, "a terminating pod is not followed");
    }

    #[tokio::test]
    async fn a_runtime_that_names_no_state_is_left_to_the_reconciles() {
        let (rt, port) = fake_runtime(None).await;
        let (followers, mut changed) = followers();
        followers.pod_reported(&running_pod(port));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            rt.requests.load(Ordering::SeqCst),
            1,
            "asked once, then left alone"
        );
        assert!(changed.try_recv().is_err());
    }
}
