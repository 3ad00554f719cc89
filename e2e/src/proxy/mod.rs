//! The Service proxy: a loopback stand-in for kube-proxy.
//!
//! Watches Services and `discovery.k8s.io/v1beta1` EndpointSlices (see
//! [`model`] for why not Endpoints). For every TCP port of a ClusterIP
//! Service it listens on `127.0.2.x:<service port>` (one address per Service,
//! see [`crate::ipalloc`]) and forwards each new connection to the next ready
//! endpoint (round robin). Established connections keep their backend; new
//! connections follow the current endpoints. The mapping is written to
//! `<state dir>/services.json` as `{"namespace/name": {"<port name|number>": "127.0.2.5:8000"}}`.
//! The cluster IPs in the Services are API data only: nothing listens on them.

pub mod model;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::api::Api;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::ipalloc::{Pool, SERVICE_POOL};
use crate::watch::WatchBackoff;
use crate::{Error, Result};

/// Command line of `auren-service-proxy`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "auren-service-proxy",
    about = "Loopback TCP proxy for Services of a local Kubernetes"
)]
pub struct ProxyArgs {
    /// State dir; services.json is written there.
    #[arg(long, env = "AUREN_CLUSTER_STATE")]
    pub state_dir: PathBuf,
}

type Backends = Arc<RwLock<Vec<SocketAddr>>>;

struct Listener {
    addr: SocketAddr,
    backends: Backends,
    task: JoinHandle<()>,
}

enum Ev {
    Svc(Box<watcher::Event<Service>>),
    Slices(Box<watcher::Event<DynamicObject>>),
}

#[derive(Default)]
struct Proxy {
    services: BTreeMap<String, Service>,
    slices: BTreeMap<String, EndpointSlice>,
    svc_init: Option<BTreeMap<String, Service>>,
    slices_init: Option<BTreeMap<String, EndpointSlice>>,
    listeners: BTreeMap<(String, String), Listener>,
    allocated: BTreeSet<String>,
    pool: Option<Pool>,
    json_path: PathBuf,
    last_json: Option<serde_json::Value>,
}

/// Runs until SIGTERM/SIGINT.
pub async fn run(args: ProxyArgs) -> Result<()> {
    let client = Client::try_default().await?;
    std::fs::create_dir_all(&args.state_dir).map_err(|e| Error::io(&args.state_dir, e))?;
    let mut proxy = Proxy {
        json_path: args.state_dir.join("services.json"),
        pool: Some(Pool::new(SERVICE_POOL)),
        ..Proxy::default()
    };
    proxy.write_json()?;
    let svcs = watcher(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    )
    .backoff(WatchBackoff::default())
    .map(|e| e.map(|ev| Ev::Svc(Box::new(ev))));
    let slices_api: Api<DynamicObject> = Api::all_with(client, &slice_resource());
    let eps = watcher(slices_api, watcher::Config::default())
        .backoff(WatchBackoff::default())
        .map(|e| e.map(|ev| Ev::Slices(Box::new(ev))));
    let mut events = stream::select(svcs.boxed(), eps.boxed());
    let shutdown = tokio::signal::ctrl_c();
    tokio::pin!(shutdown);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::io("SIGTERM handler", e))?;
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = term.recv() => return Ok(()),
            next = events.next() => match next {
                Some(Ok(ev)) => {
                    if proxy.apply(ev) {
                        proxy.reconcile().await;
                    }
                }
                Some(Err(e)) => tracing::warn!(error = %e, "watch error"),
                None => return Err(Error::Invalid("watch ended".to_owned())),
            },
        }
    }
}

/// The v1.20 EndpointSlice API (k8s-openapi only has `discovery.k8s.io/v1`).
fn slice_resource() -> ApiResource {
    ApiResource {
        group: "discovery.k8s.io".to_owned(),
        version: "v1beta1".to_owned(),
        api_version: "discovery.k8s.io/v1beta1".to_owned(),
        kind: "EndpointSlice".to_owned(),
        plural: "endpointslices".to_owned(),
    }
}

/// v1beta1 → v1 shape: the fields used here (addresses, conditions.ready, ports)
/// are identical; v1beta1-only fields (topology) are ignored.
fn to_slice(obj: DynamicObject) -> EndpointSlice {
    let meta = obj.metadata.clone();
    serde_json::to_value(&obj)
        .and_then(model::slice_from_v1beta1)
        .unwrap_or_else(|e| {
            tracing::warn!(slice = ?meta.name, error = %e, "unreadable EndpointSlice");
            EndpointSlice {
                metadata: meta,
                ..EndpointSlice::default()
            }
        })
}

fn to_slice_event(ev: watcher::Event<DynamicObject>) -> watcher::Event<EndpointSlice> {
    match ev {
        watcher::Event::Apply(o) => watcher::Event::Apply(to_slice(o)),
        watcher::Event::Delete(o) => watcher::Event::Delete(to_slice(o)),
        watcher::Event::InitApply(o) => watcher::Event::InitApply(to_slice(o)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

/// Applies a watch event; true when the model changed.
fn apply_event<K: kube::Resource + Clone>(
    map: &mut BTreeMap<String, K>,
    init: &mut Option<BTreeMap<String, K>>,
    ev: watcher::Event<K>,
) -> bool {
    let key = |o: &K| model::object_key(o.meta());
    match ev {
        watcher::Event::Init => {
            *init = Some(BTreeMap::new());
            false
        }
        watcher::Event::InitApply(o) => {
            if let Some(buf) = init.as_mut() {
                buf.insert(key(&o), o);
            }
            false
        }
        watcher::Event::InitDone => {
            *map = init.take().unwrap_or_default();
            true
        }
        watcher::Event::Apply(o) => {
            map.insert(key(&o), o);
            true
        }
        watcher::Event::Delete(o) => map.remove(&key(&o)).is_some(),
    }
}

impl Proxy {
    fn apply(&mut self, ev: Ev) -> bool {
        match ev {
            Ev::Svc(e) => apply_event(&mut self.services, &mut self.svc_init, *e),
            Ev::Slices(e) => {
                apply_event(&mut self.slices, &mut self.slices_init, to_slice_event(*e))
            }
        }
    }

    fn desired(&mut self) -> BTreeMap<(String, String), (SocketAddr, Vec<SocketAddr>)> {
        let mut out = BTreeMap::new();
        let Some(pool) = self.pool.as_mut() else {
            return out;
        };
        for key in self
            .allocated
            .iter()
            .filter(|k| !self.services.contains_key(*k))
        {
            pool.release(key);
        }
        self.allocated.retain(|k| self.services.contains_key(k));
        for (key, svc) in &self.services {
            let ports = model::service_ports(svc);
            if ports.is_empty() {
                continue;
            }
            let Some(ip) = pool.allocate(key) else {
                tracing::error!(service = %key, "no proxy address left");
                continue;
            };
            self.allocated.insert(key.clone());
            for p in ports {
                let slices = self
                    .slices
                    .values()
                    .filter(|s| model::slice_service_key(s).as_deref() == Some(key.as_str()));
                let backends = model::ready_backends(slices, p.name.as_deref());
                out.insert(
                    (key.clone(), p.key),
                    (SocketAddr::new(IpAddr::V4(ip), p.port), backends),
                );
            }
        }
        out
    }

    async fn reconcile(&mut self) {
        let desired = self.desired();
        self.listeners.retain(|k, l| {
            let keep = desired.get(k).is_some_and(|(addr, _)| *addr == l.addr);
            if !keep {
                l.task.abort();
                tracing::info!(service = %k.0, port = %k.1, addr = %l.addr, "listener closed");
            }
            keep
        });
        for (k, (addr, backends)) in desired {
            if let Some(l) = self.listeners.get(&k) {
                let mut guard = l
                    .backends
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if *guard != backends {
                    tracing::info!(service = %k.0, port = %k.1, ?backends, "endpoints changed");
                    *guard = backends;
                }
                continue;
            }
            match TcpListener::bind(addr).await {
                Ok(listener) => {
                    tracing::info!(service = %k.0, port = %k.1, %addr, ?backends, "listening");
                    let shared: Backends = Arc::new(RwLock::new(backends));
                    let task = tokio::spawn(serve(listener, shared.clone()));
                    self.listeners.insert(
                        k,
                        Listener {
                            addr,
                            backends: shared,
                            task,
                        },
                    );
                }
                Err(e) => tracing::warn!(service = %k.0, %addr, error = %e, "bind failed"),
            }
        }
        if let Err(e) = self.write_json() {
            tracing::warn!(error = %e, "writing services.json failed");
        }
    }

    fn write_json(&mut self) -> Result<()> {
        let map = self
            .listeners
            .iter()
            .map(|(k, l)| (k.clone(), l.addr))
            .collect();
        let json = model::services_json(&map);
        if self.last_json.as_ref() == Some(&json) {
            return Ok(());
        }
        write_atomic(&self.json_path, &serde_json::to_vec_pretty(&json)?)?;
        self.last_json = Some(json);
        Ok(())
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

async fn serve(listener: TcpListener, backends: Backends) {
    let mut n: usize = 0;
    loop {
        let inbound = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let snapshot = backends.read().map(|b| b.clone()).unwrap_or_default();
        n = n.wrapping_add(1);
        tokio::spawn(forward(inbound, snapshot, n));
    }
}

/// Connects to the round-robin backend (trying the others if it refuses) and
/// copies bytes both ways until either side closes.
async fn forward(mut inbound: TcpStream, backends: Vec<SocketAddr>, n: usize) {
    for attempt in 0..backends.len() {
        let Some(addr) = model::pick(&backends, n.wrapping_add(attempt)) else {
            return;
        };
        match tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr)).await {
            Ok(Ok(mut outbound)) => {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                return;
            }
            _ => tracing::debug!(%addr, "backend refused"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A backend that answers every read with its own tag.
    async fn tagged_backend(tag: u8) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1];
                    while s.read_exact(&mut buf).await.is_ok() {
                        if s.write_all(&[tag]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn ask(s: &mut TcpStream) -> u8 {
        s.write_all(b"?").await.unwrap();
        let mut buf = [0u8; 1];
        s.read_exact(&mut buf).await.unwrap();
        buf[0]
    }

    #[tokio::test]
    async fn old_connections_keep_backend_new_ones_follow_update() {
        let (a, b) = (tagged_backend(b'a').await, tagged_backend(b'b').await);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front = listener.local_addr().unwrap();
        let backends: Backends = Arc::new(RwLock::new(vec![a]));
        tokio::spawn(serve(listener, backends.clone()));
        let mut old = TcpStream::connect(front).await.unwrap();
        assert_eq!(ask(&mut old).await, b'a');
        *backends.write().unwrap() = vec![b];
        let mut new = TcpStream::connect(front).await.unwrap();
        assert_eq!(ask(&mut new).await, b'b');
        assert_eq!(ask(&mut old).await, b'a');
    }

    #[tokio::test]
    async fn no_ready_backend_closes_the_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, Arc::new(RwLock::new(Vec::new()))));
        let mut s = TcpStream::connect(front).await.unwrap();
        let _ = s.write_all(b"?").await;
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap();
        assert!(matches!(n, Ok(0) | Err(_)), "expected close, got {n:?}");
    }
}
