//! The operator's view of the cluster: watch-fed caches (reflector stores) of the
//! AurenRuntimes and of everything they own. A reconcile reads them instead of listing, so a
//! reconcile that finds nothing to change calls the API server zero times.
//!
//! Objects are slimmed before they are stored ([`Slim`]): `managedFields`, the last-applied
//! annotation, a Deployment's pod template and a pod's spec beyond its containers' names and
//! ports are dropped. The operator never reads them, and they are most of an object's size.
//! The caches live for one leadership term; a new leader lists afresh.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Service};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::api::AurenRuntime;
use crate::resources::{APP_NAME, LABEL_INSTANCE, LABEL_NAME};

use super::{Error, scoped};

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Read access to the owned objects of every AurenRuntime in scope.
#[derive(Clone)]
pub struct Cache {
    deployments: Store<Deployment>,
    pods: Store<Pod>,
    services: Store<Service>,
}

/// A watch stream that fills a store and yields every object it touched.
pub type Feed<K> = std::pin::Pin<Box<dyn Stream<Item = Result<K, watcher::Error>> + Send>>;

/// The watch streams that feed a [`Cache`] and trigger reconciles; the Controller polls them.
pub struct Feeds {
    pub runtimes: Feed<AurenRuntime>,
    pub runtime_store: Store<AurenRuntime>,
    pub deployments: Feed<Deployment>,
    pub pods: Feed<Pod>,
    pub services: Feed<Service>,
}

/// Starts nothing by itself: the streams run while the Controller polls them.
pub fn feeds(client: &Client, namespace: Option<&str>) -> (Cache, Feeds) {
    let owned = watcher::Config::default()
        .labels(&format!("{LABEL_NAME}={APP_NAME}"))
        .any_semantic();
    let (runtime_store, runtimes) = feed(
        scoped::<AurenRuntime>(client, namespace),
        watcher::Config::default().any_semantic(),
    );
    let (deployments, deployment_feed) =
        feed(scoped::<Deployment>(client, namespace), owned.clone());
    let (pods, pod_feed) = feed(scoped::<Pod>(client, namespace), owned.clone());
    let (services, service_feed) = feed(scoped::<Service>(client, namespace), owned);
    let cache = Cache {
        deployments,
        pods,
        services,
    };
    let feeds = Feeds {
        runtimes,
        runtime_store,
        deployments: deployment_feed,
        pods: pod_feed,
        services: service_feed,
    };
    (cache, feeds)
}

fn feed<K>(api: kube::Api<K>, config: watcher::Config) -> (Store<K>, Feed<K>)
where
    K: Slim
        + Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let stream = watcher(api, config)
        .default_backoff()
        .modify(K::slim)
        .reflect(writer)
        .touched_objects()
        .boxed();
    (store, stream)
}

/// What the operator never reads of a kind, dropped before an object is cached.
pub trait Slim: Resource + Sized {
    /// Drops what the operator never reads: the metadata every kind carries, then the kind's
    /// own unread fields ([`Slim::drop_unread`]).
    fn slim(&mut self) {
        self.managed_fields_mut().clear();
        self.annotations_mut().remove(LAST_APPLIED);
        self.drop_unread();
    }

    /// The kind's own fields the operator never reads (none by default).
    fn drop_unread(&mut self) {}
}

impl Slim for AurenRuntime {}

impl Slim for Service {}

/// Kept: metadata, replicas and status (the template is read from the spec, never from here).
impl Slim for Deployment {
    fn drop_unread(&mut self) {
        self.spec.template = Default::default();
    }
}

/// Kept: metadata, the status, and each container's name and ports (where the runtime listens).
impl Slim for Pod {
    fn drop_unread(&mut self) {
        if let Some(spec) = self.spec.as_mut() {
            let containers = std::mem::take(&mut spec.containers)
                .into_iter()
                .map(|c| Container {
                    name: c.name,
                    ports: c.ports,
                    ..Default::default()
                })
                .collect();
            *spec = PodSpec {
                containers,
                ..Default::default()
            };
        }
    }
}

impl Cache {
    /// Waits until every store holds its first complete list.
    pub async fn ready(&self) -> Result<(), Error> {
        let ready = futures::future::try_join3(
            self.deployments.wait_until_ready(),
            self.pods.wait_until_ready(),
            self.services.wait_until_ready(),
        );
        ready.await.map(|_| ()).map_err(|_| Error::CacheUnavailable)
    }

    pub fn deployments_of(&self, ar: &AurenRuntime) -> Vec<Deployment> {
        owned_by(&self.deployments, ar)
    }

    pub fn pods_of(&self, ar: &AurenRuntime) -> Vec<Pod> {
        owned_by(&self.pods, ar)
    }

    /// Every cached pod (the health followers check that theirs still exists).
    pub fn pod_store(&self) -> Store<Pod> {
        self.pods.clone()
    }

    pub fn service(&self, ns: &str, name: &str) -> Option<Arc<Service>> {
        self.services
            .get(&reflector::ObjectRef::new(name).within(ns))
    }
}

/// Cached objects of one AurenRuntime (same namespace, its instance label), by name.
fn owned_by<K>(store: &Store<K>, ar: &AurenRuntime) -> Vec<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let (ns, name) = (ar.namespace(), ar.name_any());
    let mut found: Vec<K> = store
        .state_filter(|o| {
            o.namespace() == ns && o.labels().get(LABEL_INSTANCE).map(String::as_str) == Some(&name)
        })
        .into_iter()
        .map(|o| (*o).clone())
        .collect();
    found.sort_by_key(|o| o.name_any());
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, PodStatus};
    use kube::api::ObjectMeta;
    use std::collections::BTreeMap;

    #[test]
    fn slimming_keeps_what_the_operator_reads() {
        let mut pod = Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                labels: Some(BTreeMap::from([("a".into(), "b".into())])),
                annotations: Some(BTreeMap::from([
                    (LAST_APPLIED.into(), "{}".into()),
                    ("keep".into(), "1".into()),
                ])),
                managed_fields: Some(vec![Default::default()]),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "runtime".into(),
                    image: Some("auren/runtime:v1".into()),
                    ports: Some(vec![ContainerPort {
                        name: Some("http".into()),
                        container_port: 8000,
                        ..Default::default()
                    }]),
                    env: Some(vec![Default::default()]),
                    ..Default::default()
                }],
                volumes: Some(vec![Default::default()]),
                ..Default::default()
            }),
            status: Some(PodStatus {
                pod_ip: Some("127.0.1.9".into()),
                ..Default::default()
            }),
        };
        pod.slim();
        assert!(pod.managed_fields().is_empty());
        assert_eq!(pod.annotations().len(), 1);
        assert_eq!(pod.labels().get("a").map(String::as_str), Some("b"));
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(
            (spec.volumes.as_ref(), spec.containers[0].env.as_ref()),
            (None, None)
        );
        let address = crate::controller::observe::address(&pod).unwrap();
        assert_eq!((address.ip.as_str(), address.port), ("127.0.1.9", 8000));
    }
}
