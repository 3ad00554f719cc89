//! Harness of the operator scenarios: a private Kafka broker (testkit, `AUREN_KAFKA_SERVER`)
//! and PostgreSQL (initdb, as the postgres user when root) per test, a namespace with the
//! AurenRuntime CRD installed, the `auren-operator` binary as a child process against
//! `KUBECONFIG`, and signed webhook clients through the Services' ClusterIPs (kube-proxy). [`Env`] bundles
//! them for one scenario, [`Load`] posts at a steady pace (every answer carries its time and
//! the `x-auren-release` that served it) and [`StatusLog`] records the status over time, so a
//! scenario can tell which release served what during each rollout step.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::zombie_processes
)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use auren_operator::api::{AurenRuntime, AurenRuntimeStatus, Phase};
use hmac::{Hmac, Mac};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

pub const WEBHOOK_SECRET: &str = "e2e-webhook-secret";

pub use auren_testkit::stored::Accepted;
pub use auren_testkit::{Broker, Postgres, free_port};

pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{:x}", nanos % 0xffff_ffff)
}

fn scratch_dir(prefix: &str) -> PathBuf {
    auren_testkit::scratch_dir(prefix)
}

pub fn state_dir() -> PathBuf {
    std::env::var_os("AUREN_CLUSTER_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".state"))
}

/// Polls `f` every 250 ms until it returns Some; panics after `secs` with `what`.
pub async fn wait_for<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Polls `bad` every 250 ms for `secs` and panics the moment it returns Some (`what`, and what
/// `bad` saw): a negative assertion with no later event to wait on fails as soon as it is
/// wrong, where a sleep and one look would miss anything that came and went.
pub async fn never<T, F, Fut>(what: &str, secs: u64, mut bad: F)
where
    T: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        if let Some(seen) = bad().await {
            panic!("{what} after {:?}: {seen:?}", start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

// ---------------------------------------------------------------- cluster

/// The label by which the API server's PodSecurity admission enforces a level in a namespace.
pub const POD_SECURITY_ENFORCE: &str = "pod-security.kubernetes.io/enforce";

/// A pod `name` running the pause image, as Pod Security "restricted" (which every [`TestNs`]
/// enforces) admits it.
pub fn pause_pod(name: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "pause", "image": "auren/pause:3.2",
                            "securityContext": {"allowPrivilegeEscalation": false,
                                                "capabilities": {"drop": ["ALL"]}}}],
        },
    })
}

/// A fresh namespace with the CRD installed, where the API server admits only pods of Pod
/// Security "restricted" (as a platform team's namespaces do); deleted on drop.
pub struct TestNs {
    pub client: Client,
    pub name: String,
}

impl TestNs {
    pub async fn new(prefix: &str) -> TestNs {
        let client = Client::try_default()
            .await
            .expect("KUBECONFIG must point at the local cluster (scripts/e2e.sh)");
        install_crd(&client).await;
        let name = unique(prefix);
        let ns: Namespace = serde_json::from_value(json!({"metadata": {
            "name": name,
            "labels": {POD_SECURITY_ENFORCE: "restricted"},
        }}))
        .unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
        TestNs { client, name }
    }

    pub fn runtimes(&self) -> Api<AurenRuntime> {
        Api::namespaced(self.client.clone(), &self.name)
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    pub async fn secret(&self, name: &str, data: &[(&str, &str)]) {
        let data: serde_json::Map<String, Value> = data
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
            .collect();
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": name}, "stringData": data,
        }))
        .unwrap();
        self.api::<Secret>()
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
    }

    pub async fn status(&self, name: &str) -> AurenRuntimeStatus {
        let ar = self.runtimes().get(name).await.unwrap();
        ar.status.unwrap_or_default()
    }

    /// Waits until `pred` holds for the status; returns it.
    pub async fn wait_status(
        &self,
        name: &str,
        what: &str,
        secs: u64,
        pred: impl Fn(&AurenRuntimeStatus) -> bool,
    ) -> AurenRuntimeStatus {
        let start = Instant::now();
        let mut last = AurenRuntimeStatus::default();
        while start.elapsed() < Duration::from_secs(secs) {
            if let Ok(ar) = self.runtimes().get(name).await {
                last = ar.status.unwrap_or_default();
                if pred(&last) {
                    return last;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!(
            "timed out after {secs} s waiting for {what}; status: {}",
            serde_json::to_string_pretty(&last).unwrap_or_default()
        );
    }

    /// `clusterIP:port` of a Service: reached through kube-proxy's rules (the real node).
    pub async fn cluster_addr(&self, service: &str) -> String {
        let api = self.api::<k8s_openapi::api::core::v1::Service>();
        wait_for(&format!("service {}/{service}", self.name), 60, || async {
            let spec = api.get(service).await.ok()?.spec?;
            let port = spec.ports?.first()?.port;
            Some(format!("{}:{port}", spec.cluster_ip?))
        })
        .await
    }

    /// `clusterIP:port` of a Service once kube-proxy routes it to a pod.
    pub async fn service_addr(&self, service: &str) -> String {
        let addr = self.cluster_addr(service).await;
        wait_routed(&addr).await;
        addr
    }
}

/// Waits until `addr` (a ClusterIP) reaches a pod: kube-proxy programs a Service's rules only
/// after its endpoints are ready, a moment after the pods are. Any HTTP answer from `/live` will
/// do; no event is posted.
async fn wait_routed(addr: &str) {
    let client = http_client();
    let url = format!("http://{addr}/live");
    wait_for(&format!("{addr} to reach a pod"), 60, || async {
        client.get(&url).send().await.ok().map(|_| ())
    })
    .await;
}

/// Each pod's last log lines in `ns` (which release, which consumer role, what it met): the
/// evidence a failed test leaves, before its namespace goes.
fn print_pod_logs(ns: &str) {
    let pods = Command::new("kubectl")
        .args(["-n", ns, "get", "pods", "-o", "name"])
        .output();
    let Ok(pods) = pods else { return };
    for pod in String::from_utf8_lossy(&pods.stdout).lines() {
        let logs = Command::new("kubectl")
            .args(["-n", ns, "logs", pod, "--all-containers", "--tail", "25"])
            .output();
        if let Ok(logs) = logs {
            eprintln!(
                "---- {pod} (last 25 lines) ----\n{}",
                String::from_utf8_lossy(&logs.stdout)
            );
        }
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_pod_logs(&self.name);
        }
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

async fn install_crd(client: &Client) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/aurenruntime.yaml");
    let crd: CustomResourceDefinition =
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let name = crd.metadata.name.clone().unwrap();
    api.patch(
        &name,
        &PatchParams::apply("auren-e2e").force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();
    wait_for("the CRD to be established", 30, || {
        let api = api.clone();
        let name = name.clone();
        async move {
            let crd = api.get(&name).await.ok()?;
            let conditions = crd.status?.conditions?;
            conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        }
    })
    .await;
}

// ---------------------------------------------------------------- operator

/// The `auren-operator` binary running against `KUBECONFIG`.
pub struct Operator {
    child: Option<Child>,
    pub log: PathBuf,
    pub metrics_port: u16,
}

fn operator_bin() -> PathBuf {
    match std::env::var_os("AUREN_OPERATOR_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => built_bin("auren-operator"),
    }
}

/// A binary of `cargo build --bins -p auren-operator -p kubectl-auren`: target/<profile>/deps/operator-<hash>
/// → target/<profile>/<name>.
pub fn built_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|p| p.parent()).unwrap();
    let bin = profile_dir.join(name);
    assert!(
        bin.exists(),
        "{} missing: build it first (cargo build --bins -p auren-operator -p kubectl-auren)",
        bin.display()
    );
    bin
}

/// Runs `kubectl` with `args` (and `stdin`, if any); panics with its stderr when it fails;
/// returns its stdout.
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("kubectl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    if let Some(text) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `kubectl-auren` against `KUBECONFIG`; panics unless it succeeds; returns stdout.
pub fn kubectl_auren(args: &[&str]) -> String {
    let out = Command::new(built_bin("kubectl-auren"))
        .args(args)
        .output()
        .expect("run kubectl-auren");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kubectl-auren {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

impl Operator {
    /// The operator runs as pods in the cluster (the real node's chart install): nothing to
    /// start or stop from here, and no metrics port on this host.
    pub fn in_cluster() -> Operator {
        Operator {
            child: None,
            log: PathBuf::new(),
            metrics_port: 0,
        }
    }

    /// Starts a replica holding the lease `lease` in `namespace`.
    pub fn start(namespace: &str, lease: &str, identity: &str) -> Operator {
        Operator::start_as(namespace, lease, identity, None)
    }

    /// [`Operator::start`] with the credentials of `kubeconfig` instead of `KUBECONFIG`'s.
    pub fn start_as(
        namespace: &str,
        lease: &str,
        identity: &str,
        kubeconfig: Option<&std::path::Path>,
    ) -> Operator {
        Operator::spawn(namespace, lease, identity, kubeconfig, &[])
    }

    /// [`Operator::start`] with more command-line options (the chart's settings).
    pub fn start_with_args(namespace: &str, identity: &str, args: &[&str]) -> Operator {
        Operator::spawn(namespace, "auren-operator", identity, None, args)
    }

    fn spawn(
        namespace: &str,
        lease: &str,
        identity: &str,
        kubeconfig: Option<&std::path::Path>,
        args: &[&str],
    ) -> Operator {
        let log = scratch_dir("auren-e2e-operator").join(format!("{identity}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let metrics_port = free_port();
        let mut command = Command::new(operator_bin());
        command
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .args(["--lease-name", lease, "--namespace", namespace])
            // Each test's operator minds its own namespace, so tests (and a demo) can share
            // the cluster without two operators reconciling the same resource.
            .args(["--watch-namespace", namespace])
            .args(["--identity", identity])
            // The tests' notification receivers listen on this host's loopback, which the
            // operator refuses by default (issue 26): allow it, keep link-local refused.
            .args([
                "--notification-refused-networks",
                "169.254.0.0/16,fe80::/10",
            ])
            .args(args)
            .env("RUST_LOG", "info,kube=warn")
            .stdout(out)
            .stderr(err);
        if let Some(kubeconfig) = kubeconfig {
            command.env("KUBECONFIG", kubeconfig);
        }
        let child = command.spawn().expect("start auren-operator");
        Operator {
            child: Some(child),
            log,
            metrics_port,
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    pub async fn metrics(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        match reqwest::get(&url).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "operator log ({}):\n{}",
                self.log.display(),
                self.log_tail()
            );
        }
        self.kill9();
    }
}

// ---------------------------------------------------------------- clients

fn sign(body: &[u8], ts: i64) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(ts.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A client that opens a new connection per request, so each request follows the Service's
/// current endpoints (the proxy keeps an established connection on its backend).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// The answer to one webhook.
#[derive(Debug, Clone)]
pub struct Answer {
    /// When the answer arrived.
    pub at: Instant,
    pub status: u16,
    pub id: Option<String>,
    pub release: Option<String>,
    /// The request's own marker ([`auren_testkit::stored::marker`]), whatever id it got.
    pub marker: String,
    /// Why no answer came (status 0): the client's error, with its source chain.
    pub error: Option<String>,
}

impl Answer {
    /// (marker, id) when the request was accepted.
    pub fn accepted(&self) -> Option<(String, String)> {
        let id = self.id.clone().filter(|_| self.status == 202)?;
        Some((self.marker.clone(), id))
    }
}

/// Posts one signed oura event to `addr` (`ip:port`), marked as no other request is.
pub async fn post_event(client: &reqwest::Client, addr: &str, user: &str, steps: u32) -> Answer {
    let marker = auren_testkit::stored::marker();
    let event = json!({"user_id": user, "data_type": "steps", "value": steps,
        auren_testkit::stored::MARKER_FIELD: marker});
    let body = serde_json::to_vec(&event).unwrap();
    let ts = chrono_now();
    let sent = client
        .post(format!("http://{addr}/webhooks/oura"))
        .header("x-auren-timestamp", ts.to_string())
        .header("x-auren-signature", sign(&body, ts))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    match sent {
        Ok(r) => {
            let status = r.status().as_u16();
            let release = r
                .headers()
                .get("x-auren-release")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let v: Value = r.json().await.unwrap_or(Value::Null);
            Answer {
                at: Instant::now(),
                status,
                id: v.get("id").and_then(Value::as_str).map(str::to_owned),
                release,
                marker,
                error: None,
            }
        }
        Err(e) => Answer {
            at: Instant::now(),
            status: 0,
            id: None,
            release: None,
            marker,
            error: Some(error_chain(&e)),
        },
    }
}

/// An error with its sources, e.g. "error sending request: client error (Connect): tcp
/// connect error: Connection refused (os error 111)".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

// ---------------------------------------------------------------- scenarios

pub const NAME: &str = "wearables";

/// Everything one scenario runs on.
pub struct Env {
    pub ns: TestNs,
    pub broker: Broker,
    pub db: Postgres,
    pub operator: Operator,
}

impl Env {
    pub async fn start(prefix: &str) -> Env {
        Env::start_on(prefix, Broker::private()).await
    }

    /// [`Env::start`] on `broker` instead of a private memory-storage one.
    pub async fn start_on(prefix: &str, broker: Broker) -> Env {
        Env::assemble(prefix, broker, async |ns: &TestNs| {
            Operator::start(&ns.name, "auren-operator", &format!("{}-a", ns.name))
        })
        .await
    }

    /// [`Env::start`] with the operator `operator` starts in the namespace.
    pub async fn start_with(prefix: &str, operator: impl AsyncFnOnce(&TestNs) -> Operator) -> Env {
        Env::assemble(prefix, Broker::private(), operator).await
    }

    async fn assemble(
        prefix: &str,
        broker: Broker,
        operator: impl AsyncFnOnce(&TestNs) -> Operator,
    ) -> Env {
        let db = Postgres::private();
        let ns = TestNs::new(prefix).await;
        ns.secret("db", &[("url", &db.admin_url)]).await;
        let operator = operator(&ns).await;
        Env {
            ns,
            broker,
            db,
            operator,
        }
    }

    /// A small release: one API pod, one consumer, fast health checks and analysis.
    pub fn spec(&self, image: &str, config: &[(&str, &str)]) -> Value {
        let mut cfg = json!({
            "HEALTH_CHECK_INTERVAL": "1",
            "SHUTDOWN_TIMEOUT": "6",
            "WEBHOOK_SECRET_OURA": WEBHOOK_SECRET,
        });
        for (k, v) in config {
            cfg[*k] = json!(v);
        }
        json!({
            "image": image,
            "config": cfg,
            "api": {"replicas": 1},
            "connections": {
                "databaseUrl": {"name": "db", "key": "url"},
                "kafkaBrokers": self.broker.addr,
            },
            "strategy": {"blueGreen": {"scaleDownDelaySeconds": 15}},
            "analysis": {
                "interval": "3s",
                "successfulMeasurementsToPromote": 2,
                "failureLimit": 2,
                "consecutiveFailureLimit": 2,
            },
            "progressDeadlineSeconds": 45,
        })
    }

    pub async fn create(&self, spec: Value) -> Result<AurenRuntime, kube::Error> {
        let ar: AurenRuntime = serde_json::from_value(json!({
            "apiVersion": "auren.io/v1alpha1", "kind": "AurenRuntime",
            "metadata": {"name": NAME}, "spec": spec,
        }))
        .unwrap();
        self.ns.runtimes().create(&PostParams::default(), &ar).await
    }

    pub async fn set_spec(&self, spec: Value) -> Result<AurenRuntime, kube::Error> {
        let patch = json!({"spec": spec});
        self.ns
            .runtimes()
            .patch(NAME, &PatchParams::default(), &Patch::Merge(&patch))
            .await
    }

    /// Applies `spec` as a new release and waits for it to be the candidate; returns its hash.
    pub async fn release(&self, spec: Value) -> String {
        self.set_spec(spec).await.unwrap();
        let st = self
            .ns
            .wait_status(NAME, "the new release as the candidate", 30, |s| {
                let stable = s.stable.as_ref().map(|r| r.hash.as_str());
                s.candidate
                    .as_ref()
                    .is_some_and(|c| Some(c.hash.as_str()) != stable)
            })
            .await;
        st.candidate.unwrap().hash
    }

    /// Installs `image` and waits for Healthy; returns the stable revision hash.
    pub async fn install(&self, image: &str) -> String {
        self.install_spec(self.spec(image, &[])).await
    }

    /// Creates the AurenRuntime with `spec` and waits for Healthy; returns the stable hash.
    pub async fn install_spec(&self, spec: Value) -> String {
        self.create(spec).await.unwrap();
        let st = self
            .ns
            .wait_status(NAME, "Healthy after install", 120, |s| {
                s.phase == Some(Phase::Healthy) && s.stable.is_some()
            })
            .await;
        st.stable.unwrap().hash
    }

    pub async fn active(&self) -> String {
        self.ns.service_addr(NAME).await
    }

    /// Waits until every accepted request is stored, exactly once, under the id it was
    /// answered with; fails at once on a request stored twice ([`auren_testkit::stored`]).
    pub async fn assert_stored_once(&self, accepted: &Accepted) {
        let url = &self.db.admin_url;
        // The operator's defaults, which every scenario keeps.
        let witness = auren_testkit::witness::Witness {
            broker: self.broker.addr.clone(),
            topic: "biometric-events".into(),
            group: "auren-consumers".into(),
        };
        let timeout = Duration::from_secs(60);
        auren_testkit::stored::assert_stored_once_or_locate(url, accepted, timeout, Some(&witness))
            .await;
    }

    /// Waits until the operator has finished a reconcile of the AurenRuntime that began after
    /// this call, made to happen by an annotation that means nothing to it: whatever the
    /// operator would do about the state seen so far, it has done. A negative assertion ("the
    /// operator left X alone") waits on this instead of a sleep. Two pokes, each waited for: the
    /// first wait may end with a reconcile that was already running.
    pub async fn settled(&self) {
        for _ in 0..2 {
            let before = self.reconciles().await;
            let poke = json!({"metadata": {"annotations": {"e2e.auren.io/poke": unique("poke")}}});
            self.ns
                .runtimes()
                .patch(NAME, &PatchParams::default(), &Patch::Merge(&poke))
                .await
                .unwrap();
            wait_for("the operator to reconcile after a poke", 30, || async {
                (self.reconciles().await > before).then_some(())
            })
            .await;
        }
    }

    /// Reconciles the operator finished, ok or not.
    async fn reconciles(&self) -> f64 {
        let text = self.operator.metrics().await;
        let family = "auren_operator_reconciles_total";
        ["ok", "error"]
            .iter()
            .map(|r| counter_value(&text, &format!("{family}{{result=\"{r}\"}}")))
            .sum()
    }

    pub async fn deployments(&self) -> Vec<(String, i32, String)> {
        let list = self
            .ns
            .api::<Deployment>()
            .list(&ListParams::default())
            .await
            .unwrap();
        let mut out: Vec<_> = list
            .items
            .into_iter()
            .map(|d| {
                let name = d.metadata.name.clone().unwrap_or_default();
                let replicas = d.spec.replicas.unwrap_or(-1);
                let rv = d.metadata.resource_version.clone().unwrap_or_default();
                (name, replicas, rv)
            })
            .collect();
        out.sort();
        out
    }
}

/// Posts at a steady pace to `addr` until stopped; returns every answer.
///
/// The clients run on a thread and runtime of their own: a test that blocks its own thread (a
/// `helm` or `kubectl` run waited for synchronously) would otherwise stall them mid-request, and
/// their 5 s timeouts would fire on the test's own pause, not on the system under test.
pub struct Load {
    stop: Arc<AtomicBool>,
    clients: Option<std::thread::JoinHandle<Vec<Answer>>>,
    answered: Arc<AtomicUsize>,
}

impl Load {
    /// One client posting every 40 ms.
    pub fn start(addr: String, user: &'static str) -> Load {
        Load::workers(addr, user, 1, Duration::from_millis(40))
    }

    /// `workers` clients, each posting, then sleeping `pause`. Worker `w > 0` posts as user
    /// `{user}-{w}`, so the events spread over Kafka partitions (they are keyed by user).
    pub fn workers(addr: String, user: &'static str, workers: u32, pause: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let (flag, count) = (stop.clone(), answered.clone());
        let clients = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the load's runtime")
                .block_on(post_until_stopped(addr, user, workers, pause, flag, count))
        });
        Load {
            stop,
            clients: Some(clients),
            answered,
        }
    }

    /// Waits (at most 30 s) until `answers` more requests have been answered: the traffic
    /// after an event that an assertion on the answers ("none failed after the switch") needs,
    /// observed rather than assumed from a sleep.
    pub async fn carries_on(&self, answers: usize) {
        let want = self.answered.load(Ordering::SeqCst) + answers;
        let what = format!("{answers} more answers to the load");
        wait_for(&what, 30, || async {
            (self.answered.load(Ordering::SeqCst) >= want).then_some(())
        })
        .await;
    }

    /// Stops the clients; every answer, oldest first.
    pub async fn finish(mut self) -> Vec<Answer> {
        self.stop.store(true, Ordering::SeqCst);
        let clients = self.clients.take().expect("finished once");
        tokio::task::spawn_blocking(move || clients.join())
            .await
            .unwrap()
            .expect("the load's clients panicked")
    }
}

impl Drop for Load {
    /// A load dropped unfinished (a test that panicked) stops posting.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// [`Load`]'s clients: `workers` tasks posting until `stop`; every answer, oldest first.
async fn post_until_stopped(
    addr: String,
    user: &'static str,
    workers: u32,
    pause: Duration,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
) -> Vec<Answer> {
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (flag, addr, count) = (stop.clone(), addr.clone(), answered.clone());
            let user = match w {
                0 => user.to_owned(),
                w => format!("{user}-{w}"),
            };
            tokio::spawn(async move {
                let client = http_client();
                let mut answers = Vec::new();
                let mut n = (w % 9) * 20_000; // steps stay under the runtime's 200 000 limit
                while !flag.load(Ordering::SeqCst) {
                    answers.push(post_event(&client, &addr, &user, n).await);
                    count.fetch_add(1, Ordering::SeqCst);
                    n += 1;
                    tokio::time::sleep(pause).await;
                }
                answers
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort_by_key(|a| a.at);
    all
}

/// The accepted requests among `answers`: marker and id of each 202.
pub fn accepted_ids(answers: &[Answer]) -> Accepted {
    answers.iter().filter_map(Answer::accepted).collect()
}

/// The answers that were not a 202.
pub fn failures(answers: &[Answer]) -> Vec<&Answer> {
    answers.iter().filter(|a| a.status != 202).collect()
}

/// Panics unless every answer was a 202, naming the first and last few failures with their
/// time since the first answer.
pub fn assert_none_failed(answers: &[Answer]) {
    let failed = failures(answers);
    if failed.is_empty() {
        return;
    }
    let since = |a: &Answer| (a.at - answers[0].at).as_secs_f64();
    let show = |a: &&Answer| {
        format!(
            "at {:.2} s: status {} {}",
            since(a),
            a.status,
            a.error.as_deref().unwrap_or("")
        )
    };
    let (first, last) = (
        &failed[..failed.len().min(3)],
        &failed[failed.len().saturating_sub(2)..],
    );
    panic!(
        "{} of {} requests failed (load from 0 to {:.2} s); first: {:?}; last: {:?}",
        failed.len(),
        answers.len(),
        since(answers.last().unwrap()),
        first.iter().map(show).collect::<Vec<_>>(),
        last.iter().map(show).collect::<Vec<_>>()
    );
}

/// The value of exactly `series` (name and labels as exposed). Panics when the series is not
/// exposed: a missing series is a broken contract, not a zero.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(name, _)| *name == series)
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

/// The value of a labelled counter's `series`: a label set appears on its first increment, so
/// a series missing from a counter family the text declares (`# TYPE <family> counter`) is 0.
/// Panics when the family itself is not declared (a broken contract, not a zero).
pub fn counter_value(text: &str, series: &str) -> f64 {
    let family = series.split('{').next().unwrap_or(series);
    let family = family.strip_suffix("_total").unwrap_or(family);
    let declared = text
        .lines()
        .any(|l| l == format!("# TYPE {family} counter"));
    assert!(declared, "no counter family {family} in:\n{text}");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(name, _)| *name == series)
        .map_or(0.0, |(_, value)| value.parse().unwrap())
}

/// The status of one AurenRuntime, polled every 200 ms until finished.
pub struct StatusLog {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<(Instant, AurenRuntimeStatus)>>,
}

impl StatusLog {
    pub fn start(ns: &TestNs, name: &str) -> StatusLog {
        let (api, name) = (ns.runtimes(), name.to_owned());
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut log = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                if let Ok(ar) = api.get(&name).await {
                    log.push((Instant::now(), ar.status.unwrap_or_default()));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            log
        });
        StatusLog { stop, task }
    }

    /// Stops polling; every status seen, oldest first.
    pub async fn finish(self) -> Vec<(Instant, AurenRuntimeStatus)> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap()
    }
}

// ---------------------------------------------------------------- faults

/// The host pid of a pod's (first) container, from runc's own state (`--root` of containerd's
/// runc shim for the CRI namespace): the container id is the pod status's `containerd://<id>`.
pub fn container_pid(pod: &k8s_openapi::api::core::v1::Pod) -> Option<u32> {
    let status = pod.status.as_ref()?.container_statuses.as_ref()?.first()?;
    let id = status
        .container_id
        .as_deref()?
        .strip_prefix("containerd://")?;
    let state =
        std::fs::read_to_string(format!("/run/containerd/runc/k8s.io/{id}/state.json")).ok()?;
    let state: Value = serde_json::from_str(&state).ok()?;
    let pid = state["init_process_pid"].as_u64()? as u32;
    std::path::Path::new(&format!("/proc/{pid}"))
        .exists()
        .then_some(pid)
}

/// The host pid of pod `name`'s container; `None` while it has none (not started yet, or
/// waiting to be restarted).
pub async fn pod_pid(ns: &TestNs, name: &str) -> Option<u32> {
    let pod = ns
        .api::<k8s_openapi::api::core::v1::Pod>()
        .get_opt(name)
        .await
        .ok()??;
    container_pid(&pod)
}

/// Pids of the live processes of pods in `namespace` whose containers carry POD_NAMESPACE and
/// POD_NAME (the chart's operator pods), with their pod's name, by pid. Unreadable processes (gone, or
/// not ours) and zombies (empty environ) do not match.
pub fn pod_processes(namespace: &str) -> Vec<(u32, String)> {
    let ns = format!("POD_NAMESPACE={namespace}");
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
        if !vars.contains(&ns.as_bytes()) {
            continue;
        }
        let pod = vars.iter().find_map(|v| v.strip_prefix(b"POD_NAME="));
        if let Some(pod) = pod {
            out.push((pid, String::from_utf8_lossy(pod).into_owned()));
        }
    }
    out.sort();
    out
}

/// SIGKILL to one process; panics if `kill` fails.
pub fn kill9(pid: u32) {
    let ok = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(ok.success(), "kill -KILL {pid} failed");
}

/// Names of the live (not terminating) pods of `revision` with `role` ("api" or "consumer").
pub async fn pods_of(ns: &TestNs, revision: &str, role: &str) -> Vec<String> {
    use auren_operator::resources::{LABEL_REVISION, LABEL_ROLE};
    let selector = format!("{LABEL_REVISION}={revision},{LABEL_ROLE}={role}");
    let list = ns
        .api::<k8s_openapi::api::core::v1::Pod>()
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap();
    let mut names: Vec<String> = list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.name)
        .collect();
    names.sort();
    names
}

/// A pod's process killed with SIGKILL by [`kill9_pod`].
#[derive(Debug, Clone)]
pub struct Killed {
    pub pod: String,
    pub pid: u32,
    pub at: Instant,
}

/// SIGKILLs the process of the first live pod of `revision`/`role` not named in `spare`
/// (waiting up to 30 s for one to have a process).
pub async fn kill9_pod(ns: &TestNs, revision: &str, role: &str, spare: &[Killed]) -> Killed {
    let (pod, pid) = wait_for(&format!("a {role} process of {revision}"), 30, || async {
        let pods = pods_of(ns, revision, role).await;
        let mut found = None;
        for pod in pods
            .into_iter()
            .filter(|pod| !spare.iter().any(|k| &k.pod == pod))
        {
            if let Some(pid) = pod_pid(ns, &pod).await {
                found = Some((pod, pid));
                break;
            }
        }
        found
    })
    .await;
    kill9(pid);
    eprintln!("kill -9 {pid} ({pod})");
    Killed {
        pod,
        pid,
        at: Instant::now(),
    }
}

/// Waits until the kubelet runs the killed pod's container again (a new process) and the pod's status
/// counts the restart; returns the new pid.
pub async fn wait_restarted(ns: &TestNs, killed: &Killed, secs: u64) -> u32 {
    let what = format!(
        "{} to be restarted after kill -9 {}",
        killed.pod, killed.pid
    );
    wait_for(&what, secs, || async {
        let pid = pod_pid(ns, &killed.pod)
            .await
            .filter(|&pid| pid != killed.pid)?;
        (restart_count(ns, &killed.pod).await? >= 1).then_some(pid)
    })
    .await
}

/// The container restarts the pod's status reports; `None` when the pod is gone.
pub async fn restart_count(ns: &TestNs, pod: &str) -> Option<i32> {
    let pod = ns
        .api::<k8s_openapi::api::core::v1::Pod>()
        .get_opt(pod)
        .await
        .unwrap()?;
    let statuses = pod.status.and_then(|s| s.container_statuses);
    Some(statuses.iter().flatten().map(|c| c.restart_count).sum())
}

#[cfg(test)]
mod none_failed_check {
    use super::*;

    fn answer(status: u16, error: Option<&str>) -> Answer {
        Answer {
            at: Instant::now(),
            status,
            id: None,
            release: None,
            marker: String::new(),
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn passes_when_every_request_was_accepted() {
        assert_none_failed(&[answer(202, None), answer(202, None)]);
    }

    #[test]
    #[should_panic(expected = "1 of 3 requests failed")]
    fn fails_on_a_planted_connection_error() {
        let refused = answer(0, Some("tcp connect error: Connection refused"));
        assert_none_failed(&[answer(202, None), refused, answer(202, None)]);
    }

    #[test]
    #[should_panic(expected = "status 503")]
    fn fails_on_a_planted_error_status() {
        assert_none_failed(&[answer(202, None), answer(503, None)]);
    }
}
