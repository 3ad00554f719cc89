//! One task per Pod: runs its containers as processes, probes them, restarts
//! them with back-off, writes `pods/status`, and completes deletion.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, Pod, PodCondition, Secret,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::json;
use tokio::sync::watch;

use super::backoff::{Backoff, should_restart};
use super::conditions::{self, ContainerView};
use super::envvars::{self, EnvSources, PodIdentity};
use super::images::{ImageConfig, build_argv};
use super::probe::{self, ProbeSpec, Tracker};
use super::process::{self, Proc, Record};
use crate::Result;

/// Settings shared by all pod workers.
pub struct AgentCtx {
    pub client: Client,
    pub host_ip: String,
    pub state_dir: PathBuf,
    pub images: ImageConfig,
    pub backoff: Backoff,
    pub tick: Duration,
}

/// Where a pod runs: node, loopback IP, and whether the node is a fake (no processes).
#[derive(Debug, Clone)]
pub struct Assignment {
    pub node: String,
    pub ip: Ipv4Addr,
    pub fake: bool,
}

/// `None` in the channel means: the pod is gone, or the agent stops.
pub type PodRx = watch::Receiver<Option<Pod>>;

fn now() -> Time {
    Time(Timestamp::now())
}

struct Run {
    proc: Proc,
    pid: Option<u32>,
    started: Instant,
    started_at: Time,
}

struct ContainerRt {
    spec: Container,
    run: Option<Run>,
    restart_count: i32,
    crashes: u32,
    ever_started: bool,
    last_terminated: Option<ContainerStateTerminated>,
    finished: Option<i32>,
    waiting: Option<(String, String)>,
    next_start: Instant,
    readiness: Tracker,
    liveness: Tracker,
}

impl ContainerRt {
    fn new(spec: Container) -> Self {
        let mut c = Self {
            spec,
            run: None,
            restart_count: 0,
            crashes: 0,
            ever_started: false,
            last_terminated: None,
            finished: None,
            waiting: Some(("ContainerCreating".to_owned(), String::new())),
            next_start: Instant::now(),
            readiness: Tracker::new(None, false),
            liveness: Tracker::new(None, true),
        };
        c.reset_probes();
        c
    }

    fn reset_probes(&mut self) {
        let ports = self.spec.ports.clone().unwrap_or_default();
        let parse = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
            p.as_ref().and_then(|p| ProbeSpec::from_k8s(p, &ports))
        };
        self.readiness = Tracker::new(parse(&self.spec.readiness_probe), false);
        self.liveness = Tracker::new(parse(&self.spec.liveness_probe), true);
    }

    /// Takes over the process a previous agent started (see [`process`]); its readiness is
    /// the pod status's until the next probe, so a restarted agent does not flap the pod.
    fn adopt(&mut self, record: &Record, ready: bool) {
        let age = Timestamp::now().duration_since(record.started_at.0);
        let age = Duration::try_from(age).unwrap_or_default();
        self.run = Some(Run {
            proc: Proc::Adopted {
                pid: record.pid,
                start: record.start,
            },
            pid: Some(record.pid),
            started: Instant::now().checked_sub(age).unwrap_or_else(Instant::now),
            started_at: record.started_at.clone(),
        });
        self.restart_count = record.restart_count;
        self.ever_started = true;
        self.waiting = None;
        self.reset_probes();
        let spec = self.readiness.spec.take();
        self.readiness = Tracker::new(spec, ready);
    }

    fn ready(&self) -> bool {
        self.run.is_some() && self.readiness.passing()
    }

    fn set_waiting(&mut self, reason: &str, message: String, retry_in: Duration) {
        self.waiting = Some((reason.to_owned(), message));
        self.next_start = Instant::now() + retry_in;
    }
}

struct PodWorker {
    ctx: Arc<AgentCtx>,
    at: Assignment,
    pod: Pod,
    containers: Vec<ContainerRt>,
    start_time: Time,
    last_owned: Vec<PodCondition>,
    last_sent: Option<serde_json::Value>,
}

/// Runs the pod until it is deleted or the channel says it is gone.
pub async fn run(ctx: Arc<AgentCtx>, at: Assignment, mut rx: PodRx) {
    let Some(pod) = rx.borrow_and_update().clone() else {
        return;
    };
    let mut w = PodWorker::new(ctx, at, pod);
    loop {
        let Some(pod) = rx.borrow_and_update().clone() else {
            w.stop_all(Duration::from_secs(5)).await;
            return;
        };
        w.pod = pod;
        if w.pod.metadata.deletion_timestamp.is_some() {
            w.finish_deletion().await;
            return;
        }
        w.step().await;
        if let Err(e) = w.publish().await {
            tracing::warn!(pod = %w.key(), error = %e, "status update failed");
            w.last_sent = None;
        }
        tokio::select! {
            changed = rx.changed() => if changed.is_err() {
                w.stop_all(Duration::from_secs(5)).await;
                return;
            },
            () = tokio::time::sleep(w.tick()) => {}
        }
    }
}

impl PodWorker {
    fn new(ctx: Arc<AgentCtx>, at: Assignment, pod: Pod) -> Self {
        let containers = pod
            .spec
            .as_ref()
            .map(|s| s.containers.iter().cloned().map(ContainerRt::new).collect())
            .unwrap_or_default();
        let start_time = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.clone())
            .unwrap_or_else(now);
        let mut w = Self {
            ctx,
            at,
            pod,
            containers,
            start_time,
            last_owned: Vec::new(),
            last_sent: None,
        };
        w.adopt_running();
        w
    }

    /// Adopts the containers' processes left running by a previous agent.
    fn adopt_running(&mut self) {
        let Some(uid) = self.pod.metadata.uid.clone().filter(|_| !self.at.fake) else {
            return;
        };
        let statuses = self
            .pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.clone())
            .unwrap_or_default();
        for i in 0..self.containers.len() {
            let path = self.record_path(i);
            let Some(record) = Record::adoptable(&path, &uid) else {
                continue;
            };
            let key = self.key();
            let c = &mut self.containers[i];
            let ready = statuses.iter().any(|s| s.name == c.spec.name && s.ready);
            c.adopt(&record, ready);
            tracing::info!(pod = %key, container = %c.spec.name, pid = record.pid, ready, "adopted the running process");
        }
    }

    /// `<state dir>/pods/<namespace>_<pod>/<container>.run`: the [`Record`] of container `i`.
    fn record_path(&self, i: usize) -> PathBuf {
        let (ns, pod) = self.names();
        self.ctx
            .state_dir
            .join("pods")
            .join(format!("{ns}_{pod}"))
            .join(format!("{}.run", self.containers[i].spec.name))
    }

    /// Fake pods only react to pod updates; real ones poll processes and probes.
    fn tick(&self) -> Duration {
        if self.at.fake {
            Duration::from_secs(5)
        } else {
            self.ctx.tick
        }
    }

    fn key(&self) -> String {
        format!(
            "{}/{}",
            self.pod.metadata.namespace.as_deref().unwrap_or_default(),
            self.pod.metadata.name.as_deref().unwrap_or_default()
        )
    }

    fn api(&self) -> Api<Pod> {
        let ns = self.pod.metadata.namespace.as_deref().unwrap_or("default");
        Api::namespaced(self.ctx.client.clone(), ns)
    }

    async fn step(&mut self) {
        if self.at.fake {
            return;
        }
        for i in 0..self.containers.len() {
            self.reap(i);
            self.maybe_start(i).await;
            self.probe(i).await;
        }
    }

    /// Notices an exited process and decides on restart.
    fn reap(&mut self, i: usize) {
        let policy = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone());
        let backoff = self.ctx.backoff;
        let record = self.record_path(i);
        let c = &mut self.containers[i];
        let Some(run) = c.run.as_mut() else { return };
        let code = match run.proc.try_exit() {
            Ok(Some(code)) => code,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "wait failed");
                return;
            }
        };
        process::kill_leftovers(run.pid);
        let _ = std::fs::remove_file(record);
        let ran = run.started.elapsed();
        c.last_terminated = Some(ContainerStateTerminated {
            exit_code: code,
            reason: Some(if code == 0 { "Completed" } else { "Error" }.to_owned()),
            started_at: Some(run.started_at.clone()),
            finished_at: Some(now()),
            container_id: run.pid.map(|p| format!("auren://{p}")),
            ..ContainerStateTerminated::default()
        });
        c.run = None;
        c.reset_probes();
        tracing::info!(container = %c.spec.name, code, "container exited");
        if should_restart(policy.as_deref(), code) {
            c.crashes = backoff.next_crash_count(c.crashes, ran);
            // Like the kubelet: a first exit restarts at once (no CrashLoopBackOff).
            if let Some(delay) = backoff.restart_delay(c.crashes) {
                let msg = format!(
                    "back-off {}ms restarting failed container={}",
                    delay.as_millis(),
                    c.spec.name
                );
                c.set_waiting("CrashLoopBackOff", msg, delay);
            } else {
                c.waiting = None;
                c.next_start = Instant::now();
            }
        } else {
            c.finished = Some(code);
            c.waiting = None;
        }
    }

    async fn maybe_start(&mut self, i: usize) {
        let c = &self.containers[i];
        if c.run.is_some() || c.finished.is_some() || Instant::now() < c.next_start {
            return;
        }
        let image = c.spec.image.clone().unwrap_or_default();
        let Some(resolved) = self.ctx.images.resolve(&image) else {
            let msg = format!("image {image} is not mapped in the agent's image config");
            self.containers[i].set_waiting("ErrImagePull", msg, Duration::from_secs(5));
            return;
        };
        let env = match self.container_env(i, &resolved).await {
            Ok(env) => env,
            Err(msg) => {
                self.containers[i].set_waiting(
                    "CreateContainerConfigError",
                    msg,
                    Duration::from_secs(2),
                );
                return;
            }
        };
        let spec = &self.containers[i].spec;
        let argv: Vec<String> = build_argv(
            spec.command.as_deref().unwrap_or_default(),
            spec.args.as_deref(),
            &resolved,
        )
        .iter()
        .map(|a| envvars::expand(a, &env))
        .collect();
        self.launch(i, &argv, &env);
    }

    fn launch(&mut self, i: usize, argv: &[String], env: &BTreeMap<String, String>) {
        let (ns, pod) = self.names();
        let name = self.containers[i].spec.name.clone();
        let cwd = self
            .ctx
            .state_dir
            .join("pods")
            .join(format!("{ns}_{pod}"))
            .join(&name);
        let log = self
            .ctx
            .state_dir
            .join("logs")
            .join(format!("{ns}_{pod}_{name}.log"));
        let backoff = self.ctx.backoff;
        let record = self.record_path(i);
        let uid = self.pod.metadata.uid.clone().unwrap_or_default();
        let c = &mut self.containers[i];
        match process::spawn(argv, env, &cwd, &log) {
            Ok(child) => {
                if c.ever_started {
                    c.restart_count = c.restart_count.saturating_add(1);
                }
                c.ever_started = true;
                c.waiting = None;
                c.reset_probes();
                let pid = child.id();
                tracing::info!(pod = %format!("{ns}/{pod}"), container = %name, ?pid, ?argv, "started");
                let started_at = now();
                // Written at once: an agent killed from here on leaves a process to adopt.
                if let Some(start) = pid.and_then(process::start_time) {
                    let pid = pid.unwrap_or_default();
                    let restart_count = c.restart_count;
                    let started_at = started_at.clone();
                    Record {
                        uid,
                        pid,
                        start,
                        started_at,
                        restart_count,
                    }
                    .write(&record);
                }
                c.run = Some(Run {
                    proc: Proc::Child(child),
                    pid,
                    started: Instant::now(),
                    started_at,
                });
            }
            Err(e) => {
                c.crashes = c.crashes.saturating_add(1);
                let delay = backoff.delay(c.crashes);
                c.set_waiting("RunContainerError", e.to_string(), delay);
            }
        }
    }

    fn names(&self) -> (String, String) {
        (
            self.pod.metadata.namespace.clone().unwrap_or_default(),
            self.pod.metadata.name.clone().unwrap_or_default(),
        )
    }

    async fn container_env(
        &self,
        i: usize,
        resolved: &super::images::ResolvedImage,
    ) -> std::result::Result<BTreeMap<String, String>, String> {
        let spec = &self.containers[i].spec;
        let sources = self.fetch_sources(spec).await.map_err(|e| e.to_string())?;
        let ip = self.at.ip.to_string();
        let id = PodIdentity {
            pod: &self.pod,
            pod_ip: &ip,
            host_ip: &self.ctx.host_ip,
            node_name: &self.at.node,
        };
        envvars::resolve(id, spec, resolved, &sources).map_err(|e| e.0)
    }

    async fn fetch_sources(&self, spec: &Container) -> Result<EnvSources> {
        let (secret_names, map_names) = envvars::referenced(spec);
        let ns = self.pod.metadata.namespace.as_deref().unwrap_or("default");
        let mut sources = EnvSources::default();
        let secrets: Api<Secret> = Api::namespaced(self.ctx.client.clone(), ns);
        for name in secret_names {
            if let Some(s) = secrets.get_opt(&name).await? {
                let data = s.data.unwrap_or_default().into_iter();
                let text = data.map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()));
                let mut all: BTreeMap<String, String> = text.collect();
                all.extend(s.string_data.unwrap_or_default());
                sources.secrets.insert(name, all);
            }
        }
        let maps: Api<ConfigMap> = Api::namespaced(self.ctx.client.clone(), ns);
        for name in map_names {
            if let Some(m) = maps.get_opt(&name).await? {
                sources.config_maps.insert(name, m.data.unwrap_or_default());
            }
        }
        Ok(sources)
    }

    async fn probe(&mut self, i: usize) {
        let ip = IpAddr::V4(self.at.ip);
        let c = &mut self.containers[i];
        let Some(run) = &c.run else { return };
        let started = run.started;
        if let Some(spec) = c
            .readiness
            .spec
            .clone()
            .filter(|_| c.readiness.due(started, Instant::now()))
        {
            let ok = probe::execute(&spec.action, ip, spec.timeout).await;
            c.readiness.record(ok, Instant::now());
        }
        let Some(spec) = c
            .liveness
            .spec
            .clone()
            .filter(|_| c.liveness.due(started, Instant::now()))
        else {
            return;
        };
        let ok = probe::execute(&spec.action, ip, spec.timeout).await;
        if !c.liveness.record(ok, Instant::now()) {
            tracing::info!(container = %c.spec.name, "liveness probe failed; restarting");
            let grace = self.grace();
            if let Some(run) = self.containers[i].run.as_mut() {
                process::terminate(&mut run.proc, grace).await;
            }
            self.reap(i);
        }
    }

    fn grace(&self) -> Duration {
        let secs = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                self.pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30);
        Duration::from_secs(u64::try_from(secs).unwrap_or(0))
    }

    async fn stop_all(&mut self, grace: Duration) {
        let stops = self
            .containers
            .iter_mut()
            .filter_map(|c| c.run.as_mut())
            .map(|run| process::terminate(&mut run.proc, grace));
        futures::future::join_all(stops).await;
        for i in 0..self.containers.len() {
            if self.containers[i].run.take().is_some() {
                let _ = std::fs::remove_file(self.record_path(i));
            }
        }
    }

    async fn finish_deletion(&mut self) {
        let grace = self.grace();
        tracing::info!(pod = %self.key(), ?grace, "terminating");
        self.stop_all(grace).await;
        let (_, name) = self.names();
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: self.pod.metadata.uid.clone().map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.api().delete(&name, &params).await {
            Ok(_) => tracing::info!(pod = %self.key(), "deleted"),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => tracing::warn!(pod = %self.key(), error = %e, "final delete failed"),
        }
    }

    fn container_status(&self, c: &ContainerRt) -> ContainerStatus {
        let fake = self.at.fake;
        let state = if fake {
            ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(self.start_time.clone()),
                }),
                ..ContainerState::default()
            }
        } else {
            state_of(c)
        };
        let running = fake || c.run.is_some();
        ContainerStatus {
            name: c.spec.name.clone(),
            image: c.spec.image.clone().unwrap_or_default(),
            image_id: String::new(),
            container_id: c
                .run
                .as_ref()
                .and_then(|r| r.pid)
                .map(|p| format!("auren://{p}")),
            ready: fake || c.ready(),
            restart_count: c.restart_count,
            started: Some(running),
            state: Some(state),
            last_state: c.last_terminated.clone().map(|t| ContainerState {
                terminated: Some(t),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        }
    }

    fn status_patch(&self) -> (serde_json::Value, Vec<PodCondition>) {
        let statuses: Vec<ContainerStatus> = self
            .containers
            .iter()
            .map(|c| self.container_status(c))
            .collect();
        let containers_ready = statuses.iter().all(|s| s.ready);
        let views: Vec<ContainerView> = if self.at.fake {
            vec![ContainerView {
                ever_started: true,
                running: true,
                finished: None,
            }]
        } else {
            self.containers
                .iter()
                .map(|c| ContainerView {
                    ever_started: c.ever_started,
                    running: c.run.is_some(),
                    finished: c.finished,
                })
                .collect()
        };
        let status = self.pod.status.clone().unwrap_or_default();
        let existing =
            conditions::merge_conditions(&status.conditions.unwrap_or_default(), &self.last_owned);
        let gates = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.readiness_gates.clone())
            .unwrap_or_default();
        let owned = conditions::owned_conditions(&existing, containers_ready, &gates, &now());
        let ip = self.at.ip.to_string();
        let patch = json!({"status": {
            "phase": conditions::phase(&views),
            "hostIP": self.ctx.host_ip,
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": self.start_time,
            "conditions": owned,
            "containerStatuses": statuses,
        }});
        (patch, owned)
    }

    /// Strategic-merge patch of `pods/status`: conditions merge by type, so
    /// conditions owned by others (readiness gates) are never dropped.
    async fn publish(&mut self) -> Result<()> {
        let (patch, owned) = self.status_patch();
        if self.last_sent.as_ref() == Some(&patch) {
            return Ok(());
        }
        let (_, name) = self.names();
        self.api()
            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await?;
        self.last_owned = owned;
        self.last_sent = Some(patch);
        Ok(())
    }
}

fn state_of(c: &ContainerRt) -> ContainerState {
    if let Some(run) = &c.run {
        return ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(run.started_at.clone()),
            }),
            ..ContainerState::default()
        };
    }
    if c.finished.is_some() {
        return ContainerState {
            terminated: c.last_terminated.clone(),
            ..ContainerState::default()
        };
    }
    let (reason, message) = c.waiting.clone().unwrap_or_default();
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason),
            message: (!message.is_empty()).then_some(message),
        }),
        ..ContainerState::default()
    }
}
