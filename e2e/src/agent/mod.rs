//! The node agent: registers Nodes, watches the Pods scheduled to them and
//! runs each in a [`worker`] task.
//!
//! - Real node (`--node-name`, default `auren-node-1`): containers run as local
//!   processes (see [`images`] for the image → executable mapping), one loopback
//!   IP per pod from 127.0.1.1 upwards, exported as `POD_IP` and `API_HOST`.
//!   Logs: `<state dir>/logs/<namespace>_<pod>_<container>.log`; working dir:
//!   `<state dir>/pods/<namespace>_<pod>/<container>/`.
//! - Fake nodes (`--fake-node NAME`, repeatable): pods are reported Running and
//!   Ready (readiness gates still apply) without any process. While a fake pod holds
//!   its address, an in-agent [`responder`] answers the runtime's HTTP contract
//!   (`/health`, `/metrics`, `/admin/consumer/role`, …) on it.

pub mod backoff;
pub mod conditions;
pub mod envvars;
pub mod images;
pub mod node;
pub mod probe;
pub mod process;
pub mod responder;
pub mod worker;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::ipalloc::{FAKE_POD_POOL, POD_POOL, Pool};
use crate::watch::WatchBackoff;
use crate::{Error, Result};
use backoff::Backoff;
use responder::{FakePod, Responder};
use worker::{AgentCtx, Assignment};

/// Command line of `auren-node-agent`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "auren-node-agent",
    about = "Runs Pods of a local Kubernetes as local processes"
)]
pub struct AgentArgs {
    /// Name of the node whose pods run as processes.
    #[arg(long, env = "AUREN_NODE_NAME", default_value = "auren-node-1")]
    pub node_name: String,
    /// Extra nodes whose pods are reported Running/Ready without a process (repeatable).
    #[arg(long = "fake-node", env = "AUREN_FAKE_NODES", value_delimiter = ',')]
    pub fake_nodes: Vec<String>,
    /// State dir (logs, pod working dirs).
    #[arg(long, env = "AUREN_CLUSTER_STATE")]
    pub state_dir: PathBuf,
    /// YAML image → executable mapping.
    #[arg(long, env = "AUREN_IMAGE_CONFIG")]
    pub image_config: PathBuf,
    /// Address reported as the node's InternalIP and pods' hostIP.
    #[arg(long, env = "AUREN_HOST_IP", default_value = "127.0.0.1")]
    pub host_ip: String,
    /// First crash-loop back-off delay, in milliseconds (doubles per crash).
    #[arg(long, env = "AUREN_RESTART_BACKOFF_MS", default_value_t = 1000)]
    pub restart_backoff_ms: u64,
    /// Largest crash-loop back-off delay, in milliseconds.
    #[arg(long, env = "AUREN_RESTART_BACKOFF_MAX_MS", default_value_t = 30_000)]
    pub restart_backoff_max_ms: u64,
    /// Seconds between node heartbeats.
    #[arg(long, env = "AUREN_HEARTBEAT_SECONDS", default_value_t = 10)]
    pub heartbeat_seconds: u64,
}

struct Handle {
    tx: watch::Sender<Option<Pod>>,
    task: JoinHandle<()>,
    node: String,
    /// Fake pods only: serves the pod's address until the handle is dropped.
    responder: Option<Responder>,
}

struct Supervisor {
    ctx: Arc<AgentCtx>,
    fake_nodes: BTreeSet<String>,
    pods: HashMap<String, Handle>,
    stopping: Vec<JoinHandle<()>>,
    pool: Pool,
    fake_pool: Pool,
    listing: HashMap<String, HashSet<String>>,
    /// Whether the processes of pods deleted while no agent ran were killed (once, at start).
    swept: bool,
}

/// Runs the agent until SIGTERM/SIGINT; then stops every process it started.
pub async fn run(args: AgentArgs) -> Result<()> {
    let client = Client::try_default().await?;
    let images = images::ImageConfig::load(&args.image_config)?;
    std::fs::create_dir_all(&args.state_dir).map_err(|e| Error::io(&args.state_dir, e))?;
    let ctx = Arc::new(AgentCtx {
        client: client.clone(),
        host_ip: args.host_ip.clone(),
        state_dir: args.state_dir.clone(),
        images,
        backoff: Backoff {
            base: Duration::from_millis(args.restart_backoff_ms),
            max: Duration::from_millis(args.restart_backoff_max_ms),
            reset_after: Duration::from_secs(60),
        },
        tick: Duration::from_millis(250),
    });
    let nodes = all_nodes(&args);
    for (name, fake) in &nodes {
        node::register(&client, &args.host_ip, name, *fake).await?;
        tracing::info!(node = %name, fake, "node registered");
    }
    let heartbeats = tokio::spawn(heartbeat_loop(client.clone(), args.clone(), nodes.clone()));
    let mut sup = Supervisor {
        ctx,
        fake_nodes: args.fake_nodes.iter().cloned().collect(),
        pods: HashMap::new(),
        stopping: Vec::new(),
        pool: Pool::new(POD_POOL),
        fake_pool: Pool::new(FAKE_POD_POOL),
        listing: HashMap::new(),
        swept: false,
    };
    let result = sup.watch(&client, &nodes).await;
    heartbeats.abort();
    sup.shutdown().await;
    result
}

fn all_nodes(args: &AgentArgs) -> Vec<(String, bool)> {
    let mut nodes = vec![(args.node_name.clone(), false)];
    nodes.extend(args.fake_nodes.iter().map(|n| (n.clone(), true)));
    nodes
}

async fn heartbeat_loop(client: Client, args: AgentArgs, nodes: Vec<(String, bool)>) {
    let mut tick = tokio::time::interval(Duration::from_secs(args.heartbeat_seconds.max(1)));
    loop {
        tick.tick().await;
        for (name, fake) in &nodes {
            if let Err(e) = node::heartbeat(&client, &args.host_ip, name, *fake).await {
                tracing::warn!(node = %name, error = %e, "heartbeat failed");
            }
        }
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = term => {},
    }
}

impl Supervisor {
    async fn watch(&mut self, client: &Client, nodes: &[(String, bool)]) -> Result<()> {
        let api: Api<Pod> = Api::all(client.clone());
        let streams = nodes.iter().map(|(name, _)| {
            let config = watcher::Config::default().fields(&format!("spec.nodeName={name}"));
            let node = name.clone();
            watcher(api.clone(), config)
                .backoff(WatchBackoff::default())
                .map(move |ev| (node.clone(), ev))
                .boxed()
        });
        let mut events = stream::select_all(streams);
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                next = events.next() => match next {
                    Some((node, Ok(ev))) => self.handle(&node, ev),
                    Some((node, Err(e))) => tracing::warn!(%node, error = %e, "pod watch error"),
                    None => return Err(Error::Invalid("pod watch ended".to_owned())),
                },
            }
            self.stopping.retain(|t| !t.is_finished());
        }
    }

    fn handle(&mut self, node: &str, ev: watcher::Event<Pod>) {
        match ev {
            watcher::Event::Init => {
                self.listing.insert(node.to_owned(), HashSet::new());
            }
            watcher::Event::InitApply(pod) => {
                if let (Some(seen), Some(uid)) =
                    (self.listing.get_mut(node), pod.metadata.uid.clone())
                {
                    seen.insert(uid);
                }
                self.upsert(node, pod);
            }
            watcher::Event::InitDone => {
                self.drop_unlisted(node);
                self.sweep_once(node);
            }
            watcher::Event::Apply(pod) => self.upsert(node, pod),
            watcher::Event::Delete(pod) => {
                if let Some(uid) = pod.metadata.uid {
                    self.remove(&uid);
                }
            }
        }
    }

    fn drop_unlisted(&mut self, node: &str) {
        let Some(seen) = self.listing.remove(node) else {
            return;
        };
        let gone: Vec<String> = self
            .pods
            .iter()
            .filter(|(uid, h)| h.node == node && !seen.contains(*uid))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in gone {
            self.remove(&uid);
        }
    }

    /// After the first listing of the real node: the processes a killed agent left behind
    /// for pods that are gone now (running ones were adopted by their workers) are killed.
    fn sweep_once(&mut self, node: &str) {
        if self.swept || self.fake_nodes.contains(node) {
            return;
        }
        self.swept = true;
        let uids = self
            .pods
            .iter()
            .filter(|(_, h)| h.node == node)
            .map(|(uid, _)| uid.clone())
            .collect();
        let killed = process::sweep_records(&self.ctx.state_dir.join("pods"), &uids);
        if killed > 0 {
            tracing::info!(
                killed,
                "killed processes of pods deleted while the agent was down"
            );
        }
    }

    fn upsert(&mut self, node: &str, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        if let Some(h) = self.pods.get(&uid) {
            if !h.task.is_finished() {
                h.tx.send_replace(Some(pod));
            }
            return;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed"))
            && pod.metadata.deletion_timestamp.is_none()
        {
            return;
        }
        let fake = self.fake_nodes.contains(node);
        let Some(ip) = self.assign_ip(&uid, &pod, fake) else {
            tracing::error!(pod = ?pod.metadata.name, "no pod IP left");
            return;
        };
        // Started before the worker reports the pod Running with this address.
        let responder = if fake { fake_responder(&pod, ip) } else { None };
        let at = Assignment {
            node: node.to_owned(),
            ip,
            fake,
        };
        let (tx, rx) = watch::channel(Some(pod));
        let task = tokio::spawn(worker::run(self.ctx.clone(), at, rx));
        self.pods.insert(
            uid,
            Handle {
                tx,
                task,
                node: node.to_owned(),
                responder,
            },
        );
    }

    fn assign_ip(&mut self, uid: &str, pod: &Pod, fake: bool) -> Option<Ipv4Addr> {
        let pool = if fake {
            &mut self.fake_pool
        } else {
            &mut self.pool
        };
        let previous = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref());
        if let Some(ip) = previous.and_then(|p| p.parse::<Ipv4Addr>().ok())
            && pool.reserve(uid, ip)
        {
            return Some(ip);
        }
        pool.allocate(uid)
    }

    fn remove(&mut self, uid: &str) {
        if let Some(h) = self.pods.remove(uid) {
            h.tx.send_replace(None);
            // Unbinds the fake pod's address before it goes back to the pool.
            drop(h.responder);
            self.stopping.push(h.task);
        }
        self.pool.release(uid);
        self.fake_pool.release(uid);
    }

    async fn shutdown(&mut self) {
        tracing::info!(pods = self.pods.len(), "stopping all pod processes");
        let uids: Vec<String> = self.pods.keys().cloned().collect();
        for uid in uids {
            self.remove(&uid);
        }
        let all = futures::future::join_all(self.stopping.drain(..));
        if tokio::time::timeout(Duration::from_secs(15), all)
            .await
            .is_err()
        {
            tracing::warn!("some pod processes did not stop in time");
        }
    }
}

/// The HTTP responder of a fake pod on `ip`: its `http` (or first) container port and its
/// admin port; `None` when the pod declares no port.
fn fake_responder(pod: &Pod, ip: Ipv4Addr) -> Option<Responder> {
    let Some((ports, fake)) = FakePod::from_pod(pod) else {
        tracing::debug!(pod = ?pod.metadata.name, "fake pod has no container port: no responder");
        return None;
    };
    Some(Responder::start(ip.into(), ports, fake))
}
