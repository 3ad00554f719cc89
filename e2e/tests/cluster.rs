//! End-to-end tests against the local cluster started by `e2e/cluster/up.sh`
//! (control plane + auren-node-agent + auren-service-proxy). They need
//! `KUBECONFIG` pointing at it; `AUREN_CLUSTER_STATE` if the state dir is not
//! the default `e2e/.state`. Images come from `e2e/cluster/images.yaml`
//! (`auren/http-stub`: python3 http.server on $(POD_IP):8080; `auren/shell`: sh -c).

// Test helpers outside #[test] fns: clippy.toml's in-test allowance does not reach them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service};
use kube::Client;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use serde_json::{Value, json};

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{:x}{}",
        nanos % 0xfffff,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn state_dir() -> PathBuf {
    std::env::var_os("AUREN_CLUSTER_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".state"))
}

/// A fresh namespace, deleted by `cleanup`.
struct TestNs {
    client: Client,
    name: String,
}

impl TestNs {
    async fn new(prefix: &str) -> Self {
        let client = Client::try_default()
            .await
            .expect("KUBECONFIG must point at the local cluster");
        let name = unique(prefix);
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
        Self { client, name }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    async fn create<K>(&self, value: Value) -> K
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let obj: K = serde_json::from_value(value).unwrap();
        self.api::<K>()
            .create(&PostParams::default(), &obj)
            .await
            .unwrap()
    }

    async fn pod(&self, name: &str) -> Pod {
        self.api::<Pod>().get(name).await.unwrap()
    }

    async fn cleanup(self) {
        drop(self);
    }
}

/// Deletes the namespace even when the test failed (fresh runtime and client on
/// another thread: the test's runtime may be unwinding).
impl Drop for TestNs {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let client = Client::try_default().await.ok()?;
                Api::<Namespace>::all(client)
                    .delete(&name, &DeleteParams::default())
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// Polls `f` every 250 ms until it returns Some, or panics after `secs`.
async fn wait_for<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn condition(pod: &Pod, type_: &str) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

fn pid_of(pod: &Pod) -> Option<i32> {
    let id = pod
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .container_id
        .clone()?;
    id.strip_prefix("auren://")?.parse().ok()
}

fn http_stub_pod(name: &str, labels: Value, extra: Value) -> Value {
    let mut container = json!({"name": "web", "image": "auren/http-stub:latest",
        "ports": [{"containerPort": 8080, "name": "http"}]});
    if let (Some(c), Some(e)) = (container.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    json!({"metadata": {"name": name, "labels": labels},
           "spec": {"terminationGracePeriodSeconds": 2, "containers": [container]}})
}

async fn proxy_address(ns: &str, svc: &str, port: &str) -> String {
    let key = format!("{ns}/{svc}");
    let path = state_dir().join("services.json");
    wait_for("service in services.json", 30, || {
        let (path, key) = (path.clone(), key.clone());
        async move {
            let text = std::fs::read_to_string(path).ok()?;
            let v: Value = serde_json::from_str(&text).ok()?;
            v.get(&key)?.get(port)?.as_str().map(str::to_owned)
        }
    })
    .await
}

async fn http_status(url: &str) -> Option<u16> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(3))
        .build()
        .ok()?;
    client
        .get(url)
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// A Service `name` on port 8000 (named `http`) selecting `app: name`, forwarding to `target`.
async fn service_on(t: &TestNs, name: &str, target: u16) {
    t.create::<Service>(
        json!({"metadata": {"name": name}, "spec": {"selector": {"app": name},
        "ports": [{"name": "http", "port": 8000, "targetPort": target, "protocol": "TCP"}]}}),
    )
    .await;
}

/// Waits until the Deployment is Available with `replicas` ready pods.
async fn wait_available(t: &TestNs, name: &str, replicas: i32, secs: u64) {
    let deployments = t.api::<Deployment>();
    wait_for(
        &format!("Deployment {name} Available with {replicas} ready"),
        secs,
        || {
            let d = deployments.clone();
            async move {
                let s = d.get(name).await.ok()?.status?;
                let available = s
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Available" && c.status == "True");
                (available && s.ready_replicas == Some(replicas)).then_some(())
            }
        },
    )
    .await;
}

#[tokio::test]
async fn deployment_becomes_available_and_service_answers_through_proxy() {
    let t = TestNs::new("e2e-deploy").await;
    let pod = http_stub_pod(
        "x",
        json!({"app": "web"}),
        json!({
        "readinessProbe": {"httpGet": {"port": "http", "path": "/"}, "periodSeconds": 1}}),
    );
    t.create::<Deployment>(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": pod["metadata"], "spec": pod["spec"]}}
    }))
    .await;
    service_on(&t, "web", 8080).await;
    wait_available(&t, "web", 2, 60).await;
    let pods = t.api::<Pod>().list(&ListParams::default()).await.unwrap();
    let ips: Vec<String> = pods
        .items
        .iter()
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .collect();
    assert_eq!(ips.len(), 2);
    assert!(
        ips.iter().all(|ip| ip.starts_with("127.0.1.")),
        "pod IPs {ips:?}"
    );
    assert_ne!(ips[0], ips[1]);
    let addr = proxy_address(&t.name, "web", "http").await;
    assert!(
        addr.starts_with("127.0.2.") && addr.ends_with(":8000"),
        "proxy address {addr}"
    );
    let url = format!("http://{addr}/");
    let status = wait_for("HTTP 200 through the proxy", 30, || http_status(&url)).await;
    assert_eq!(status, 200);
    t.cleanup().await;
}

#[tokio::test]
async fn crashing_container_restarts_and_restart_count_rises() {
    let t = TestNs::new("e2e-crash").await;
    t.create::<Pod>(
        json!({"metadata": {"name": "crash"}, "spec": {"containers": [
        {"name": "c", "image": "auren/shell:latest", "args": ["sleep 0.3; exit 3"]}]}}),
    )
    .await;
    let pods = t.api::<Pod>();
    let status = wait_for("restartCount >= 2", 60, || {
        let pods = pods.clone();
        async move {
            let cs = pods
                .get("crash")
                .await
                .ok()?
                .status?
                .container_statuses?
                .into_iter()
                .next()?;
            (cs.restart_count >= 2).then_some(cs)
        }
    })
    .await;
    let last = status
        .last_state
        .and_then(|s| s.terminated)
        .expect("lastState.terminated");
    assert_eq!(last.exit_code, 3);
    t.cleanup().await;
}

#[tokio::test]
async fn failing_liveness_probe_restarts_the_container() {
    let t = TestNs::new("e2e-live").await;
    let dir = std::env::temp_dir().join(unique("auren-e2e-empty"));
    std::fs::create_dir_all(&dir).unwrap();
    let dir_s = dir.to_string_lossy().into_owned();
    t.create::<Pod>(http_stub_pod(
        "l",
        json!({"app": "l"}),
        json!({
        "args": ["--bind", "$(POD_IP)", "--directory", dir_s, "8080"],
        "livenessProbe": {"httpGet": {"port": 8080, "path": "/alive"}, "initialDelaySeconds": 1,
                          "periodSeconds": 1, "failureThreshold": 2}}),
    ))
    .await;
    let pods = t.api::<Pod>();
    let cs = wait_for("liveness restart", 60, || {
        let pods = pods.clone();
        async move {
            let cs = pods
                .get("l")
                .await
                .ok()?
                .status?
                .container_statuses?
                .into_iter()
                .next()?;
            (cs.restart_count >= 1).then_some(cs)
        }
    })
    .await;
    assert!(cs.last_state.and_then(|s| s.terminated).is_some());
    t.cleanup().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn failing_readiness_probe_removes_pod_from_endpoints() {
    let t = TestNs::new("e2e-ready").await;
    let dir = std::env::temp_dir().join(unique("auren-e2e-www"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ready"), "ok").unwrap();
    let dir_s = dir.to_string_lossy().into_owned();
    t.create::<Pod>(http_stub_pod("p", json!({"app": "p"}), json!({
        "args": ["--bind", "$(POD_IP)", "--directory", dir_s, "8080"],
        "readinessProbe": {"httpGet": {"port": 8080, "path": "/ready"}, "periodSeconds": 1, "failureThreshold": 1}})))
    .await;
    t.create::<Service>(
        json!({"metadata": {"name": "p"}, "spec": {"selector": {"app": "p"},
        "ports": [{"port": 8001, "targetPort": 8080, "protocol": "TCP"}]}}),
    )
    .await;
    let slices: Api<DynamicObject> =
        Api::namespaced_with(t.client.clone(), &t.name, &slice_resource());
    let ready_in_slice = |want: bool| {
        let slices = slices.clone();
        async move {
            let list = slices
                .list(&ListParams::default().labels("kubernetes.io/service-name=p"))
                .await
                .ok()?;
            let eps: Vec<Value> = list
                .items
                .iter()
                .filter_map(|s| s.data.get("endpoints")?.as_array().cloned())
                .flatten()
                .collect();
            let ready = eps.first()?.pointer("/conditions/ready")?.as_bool()?;
            (eps.len() == 1 && ready == want).then_some(())
        }
    };
    wait_for("endpoint ready", 60, || ready_in_slice(true)).await;
    let addr = proxy_address(&t.name, "p", "8001").await;
    let url = format!("http://{addr}/ready");
    assert_eq!(wait_for("proxy 200", 30, || http_status(&url)).await, 200);
    std::fs::remove_file(dir.join("ready")).unwrap();
    wait_for("endpoint not ready", 30, || ready_in_slice(false)).await;
    assert_eq!(
        condition(&t.pod("p").await, "Ready").as_deref(),
        Some("False")
    );
    wait_for("proxy stops forwarding", 30, || {
        let url = url.clone();
        async move { http_status(&url).await.is_none().then_some(()) }
    })
    .await;
    t.cleanup().await;
    let _ = std::fs::remove_dir_all(dir);
}

fn slice_resource() -> ApiResource {
    ApiResource {
        group: "discovery.k8s.io".into(),
        version: "v1beta1".into(),
        api_version: "discovery.k8s.io/v1beta1".into(),
        kind: "EndpointSlice".into(),
        plural: "endpointslices".into(),
    }
}

#[tokio::test]
async fn unsatisfied_readiness_gate_keeps_pod_unready_until_patched() {
    let t = TestNs::new("e2e-gate").await;
    let gate = "auren.dev/traffic-ready";
    let mut spec = http_stub_pod("g", json!({"app": "g"}), json!({}));
    spec["spec"]["readinessGates"] = json!([{"conditionType": gate}]);
    t.create::<Pod>(spec).await;
    let pods = t.api::<Pod>();
    let containers_ready = wait_for("ContainersReady", 60, || {
        let pods = pods.clone();
        async move {
            let p = pods.get("g").await.ok()?;
            (condition(&p, "ContainersReady").as_deref() == Some("True")).then_some(p)
        }
    })
    .await;
    assert_eq!(
        condition(&containers_ready, "Ready").as_deref(),
        Some("False")
    );
    support::never("Ready without the gate", 2, || async {
        let ready = condition(&t.pod("g").await, "Ready");
        (ready.as_deref() != Some("False")).then_some(ready)
    })
    .await;
    let patch = json!({"status": {"conditions": [{"type": gate, "status": "True"}]}});
    pods.patch_status("g", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
    wait_for("Ready after gate", 30, || {
        let pods = pods.clone();
        async move {
            (condition(&pods.get("g").await.ok()?, "Ready").as_deref() == Some("True"))
                .then_some(())
        }
    })
    .await;
    support::never("gate condition dropped, or Ready lost", 2, || async {
        let p = t.pod("g").await;
        let seen = (condition(&p, gate), condition(&p, "Ready"));
        (seen.0.as_deref() != Some("True") || seen.1.as_deref() != Some("True")).then_some(seen)
    })
    .await;
    t.cleanup().await;
}

#[tokio::test]
async fn deleting_a_deployment_stops_its_processes() {
    let t = TestNs::new("e2e-delete").await;
    t.create::<Deployment>(json!({
        "metadata": {"name": "sleeper"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "sleeper"}},
                 "template": {"metadata": {"labels": {"app": "sleeper"}},
                              "spec": {"terminationGracePeriodSeconds": 2, "containers": [
                                  {"name": "s", "image": "auren/shell:latest", "args": ["sleep 3600"]}]}}}
    }))
    .await;
    let pods = t.api::<Pod>();
    let pid = wait_for("running process", 60, || {
        let pods = pods.clone();
        async move {
            pods.list(&ListParams::default())
                .await
                .ok()?
                .items
                .first()
                .and_then(pid_of)
        }
    })
    .await;
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    assert!(proc_dir.exists(), "process {pid} should run");
    let bg = DeleteParams::background();
    t.api::<Deployment>().delete("sleeper", &bg).await.unwrap();
    wait_for("pods gone", 60, || {
        let pods = pods.clone();
        async move {
            pods.list(&ListParams::default())
                .await
                .ok()?
                .items
                .is_empty()
                .then_some(())
        }
    })
    .await;
    wait_for("process gone", 10, || {
        let p = proc_dir.clone();
        async move { (!p.exists()).then_some(()) }
    })
    .await;
    t.cleanup().await;
}

#[tokio::test]
async fn env_is_resolved_and_logs_are_written() {
    let t = TestNs::new("e2e-env").await;
    let data = BTreeMap::from([("token".to_owned(), "s3cret".to_owned())]);
    t.create::<Secret>(json!({"metadata": {"name": "creds"}, "stringData": data}))
        .await;
    t.create::<Pod>(json!({"metadata": {"name": "env"}, "spec": {"containers": [{
        "name": "c", "image": "auren/shell:1.2.3",
        "args": ["echo \"name=$MY_NAME ns=$MY_NS ip=$MY_IP api=$API_HOST token=$TOKEN release=$AUREN_RELEASE\"; sleep 3600"],
        "env": [
            {"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "MY_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}
        ]}]}}))
    .await;
    let log = state_dir()
        .join("logs")
        .join(format!("{}_env_c.log", t.name));
    let line = wait_for("log line", 60, || {
        let log = log.clone();
        async move {
            std::fs::read_to_string(log)
                .ok()
                .filter(|s| s.contains("release="))
        }
    })
    .await;
    let ip = t
        .pod("env")
        .await
        .status
        .and_then(|s| s.pod_ip)
        .expect("podIP");
    let want = format!(
        "name=env ns={} ip={ip} api={ip} token=s3cret release=1.2.3",
        t.name
    );
    assert!(line.contains(&want), "log {line:?} lacks {want:?}");
    t.cleanup().await;
}

#[tokio::test]
async fn unknown_image_waits_with_err_image_pull() {
    let t = TestNs::new("e2e-image").await;
    t.create::<Pod>(
        json!({"metadata": {"name": "nope"}, "spec": {"containers": [
        {"name": "c", "image": "docker.io/library/nginx:1.25"}]}}),
    )
    .await;
    let pods = t.api::<Pod>();
    let reason = wait_for("waiting reason", 60, || {
        let pods = pods.clone();
        async move {
            let cs = pods
                .get("nope")
                .await
                .ok()?
                .status?
                .container_statuses?
                .into_iter()
                .next()?;
            cs.state?
                .waiting?
                .reason
                .filter(|r| r != "ContainerCreating")
        }
    })
    .await;
    assert_eq!(reason, "ErrImagePull");
    assert_eq!(
        t.pod("nope").await.status.and_then(|s| s.phase).as_deref(),
        Some("Pending")
    );
    t.cleanup().await;
}

#[tokio::test]
async fn fake_node_pods_are_running_and_ready_without_processes() {
    let t = TestNs::new("e2e-fake").await;
    t.create::<Pod>(
        json!({"metadata": {"name": "f"}, "spec": {"nodeName": "auren-scale-1", "containers": [
        {"name": "c", "image": "anything/at-all:1"}]}}),
    )
    .await;
    let pods = t.api::<Pod>();
    let pod = wait_for("fake pod Ready", 60, || {
        let pods = pods.clone();
        async move {
            let p = pods.get("f").await.ok()?;
            (condition(&p, "Ready").as_deref() == Some("True")).then_some(p)
        }
    })
    .await;
    let status = pod.status.clone().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert!(status.pod_ip.unwrap_or_default().starts_with("127.0."));
    assert!(pid_of(&pod).is_none(), "no process for a fake node");
    t.cleanup().await;
}

#[tokio::test]
async fn auren_runtime_deployment_becomes_available_and_answers_health_through_proxy() {
    let broker = auren_testkit::Broker::private();
    let t = TestNs::new("e2e-runtime").await;
    let container = json!({"name": "api", "image": "auren/runtime:v7",
        "ports": [{"containerPort": 8000, "name": "http"}],
        "env": [{"name": "RUN_MODE", "value": "api"}, {"name": "KAFKA_BROKERS", "value": broker.addr},
                {"name": "KAFKA_TOPIC", "value": "e2e-events"}, {"name": "HEALTH_CHECK_INTERVAL", "value": "1"}],
        "readinessProbe": {"httpGet": {"port": "http", "path": "/readiness"}, "periodSeconds": 1},
        "livenessProbe": {"httpGet": {"port": "http", "path": "/live"}, "periodSeconds": 2}});
    t.create::<Deployment>(json!({
        "metadata": {"name": "runtime"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "runtime"}},
                 "template": {"metadata": {"labels": {"app": "runtime"}},
                              "spec": {"terminationGracePeriodSeconds": 5, "containers": [container]}}}
    }))
    .await;
    service_on(&t, "runtime", 8000).await;
    wait_available(&t, "runtime", 1, 90).await;
    let addr = proxy_address(&t.name, "runtime", "http").await;
    let url = format!("http://{addr}/health");
    let health: Value = wait_for("/health through the proxy", 30, || {
        let url = url.clone();
        async move {
            reqwest::Client::new()
                .get(&url)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()
        }
    })
    .await;
    assert_eq!(health["mode"], "api");
    assert_eq!(
        health["release"], "v7",
        "the image tag reaches the process: {health}"
    );
    assert_eq!(
        health["components"]["kafka"]["status"], "healthy",
        "{health}"
    );
    t.cleanup().await;
}
