//! Making a Plan's world true: traffic first (a canary's pod labels, then the Services), then
//! Deployments (server-side apply for the desired revision, a replicas patch for the others)
//! and deletions, the consumer role switches in order, and the readiness-gate condition of
//! every pod. Pointing the consumer autoscaler is a side step the controller runs last.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};

use crate::api::{AurenRuntime, RevisionRef};
use crate::resources::{self, ACTIVE, MANAGER, PREVIEW, READINESS_GATE, Role};
use crate::rollout::{CanaryPair, RoleSwitch, ServiceTarget, World};

use super::cache::Cache;
use super::observe::{self, Cluster};
use super::pod_api;
use super::{Context, Error};

fn apply_params() -> PatchParams {
    PatchParams::apply(MANAGER).force()
}

fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// What the world's Services select: a canary's pods are labelled for it first, and the
/// active Service moves to the canary only once this replica's cache shows every ready
/// stable pod labelled (the next reconcile, woken by the pods' change), so no serving pod
/// leaves it. Traffic goes first: a rollback is not held up by a Deployment that cannot be
/// patched (new pods take seconds to start anyway; every switch waits for ready pods).
pub async fn traffic(
    ctx: &Context,
    cache: &Cache,
    ar: &AurenRuntime,
    ns: &str,
    world: &World,
    cluster: &Cluster,
) -> Result<(), Error> {
    if let ServiceTarget::Canary(pair) = &world.active {
        let live = cache.service(ns, &resources::service_name(ar, ACTIVE));
        let keep = live
            .as_deref()
            .and_then(|s| s.spec.as_ref()?.selector.clone())
            .unwrap_or_default();
        label_canary_pods(ctx, ns, pair, cluster, &keep).await?;
    }
    services(ctx, cache, ar, ns, world, cluster).await
}

/// Puts the API pods of `pair`'s releases into its canary (labels the live active Service
/// selects, `keep`, stay).
async fn label_canary_pods(
    ctx: &Context,
    ns: &str,
    pair: &CanaryPair,
    cluster: &Cluster,
    keep: &std::collections::BTreeMap<String, String>,
) -> Result<(), Error> {
    let api = Api::<Pod>::namespaced(ctx.client.clone(), ns);
    let pods = cluster
        .pods_of(&pair.stable, Role::Api)
        .chain(cluster.pods_of(&pair.candidate, Role::Api));
    for pod in pods {
        let patch = resources::canary_label_patch(pod.metadata.labels.as_ref(), pair, keep);
        let Some(patch) = patch else {
            continue;
        };
        let name = pod.name_any();
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Err(e) if !not_found(&e) => return Err(Error::ApplyFailed { name, source: e }),
            _ => {}
        }
    }
    Ok(())
}

/// Workloads and deletions of the world. Objects whose live (cached) version already carries
/// the digest of what would be applied are left alone.
pub async fn workloads(
    ctx: &Context,
    ar: &AurenRuntime,
    ns: &str,
    desired: &RevisionRef,
    world: &World,
    cluster: &Cluster,
) -> Result<(), Error> {
    let deployments = Api::<Deployment>::namespaced(ctx.client.clone(), ns);
    for release in &world.releases {
        for role in [Role::Api, Role::Consumer] {
            if release.revision.hash == desired.hash {
                let d = resources::fingerprinted(resources::deployment(ar, release, role)?)?;
                let name = d.name_any();
                if deployment_applied(cluster, &d) {
                    continue;
                }
                deployments
                    .patch(&name, &apply_params(), &Patch::Apply(&d))
                    .await
                    .map_err(|source| Error::ApplyFailed { name, source })?;
            } else {
                let wanted = match role {
                    Role::Api => release.api_replicas,
                    Role::Consumer => release.consumer_replicas,
                };
                let name = resources::deployment_name(ar, &release.revision.hash, role);
                scale(&deployments, cluster, &name, wanted).await?;
            }
        }
    }
    for revision in &world.delete {
        for role in [Role::Api, Role::Consumer] {
            let name = resources::deployment_name(ar, revision, role);
            if cluster.replicas(&name).is_none() {
                continue;
            }
            match deployments.delete(&name, &DeleteParams::background()).await {
                Err(e) if !not_found(&e) => return Err(Error::DeleteFailed { name, source: e }),
                _ => {}
            }
        }
    }
    Ok(())
}

/// The cached Deployment has the digest and the replicas of `desired`.
fn deployment_applied(cluster: &Cluster, desired: &Deployment) -> bool {
    let name = desired.name_any();
    let live = cluster.deployments.iter().find(|d| d.name_any() == name);
    let replicas = desired.spec.replicas;
    resources::already_applied(live, desired) && cluster.replicas(&name) == replicas
}

/// Points `spec.consumer.autoscaler` at the consumer Deployment of `revision` (the stable
/// release): one merge patch of its `spec.scaleTargetRef`, when the stable release changed.
pub async fn point_autoscaler(
    ctx: &Context,
    ar: &AurenRuntime,
    ns: &str,
    revision: &str,
) -> Result<(), Error> {
    let Some(autoscaler) = &ar.spec.consumer.autoscaler else {
        return Ok(());
    };
    let resource = resources::autoscaler_resource(autoscaler.kind);
    let api = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), ns, &resource);
    let deployment = resources::deployment_name(ar, revision, Role::Consumer);
    let patch = resources::scale_target_patch(&deployment);
    match api
        .patch(
            &autoscaler.name,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(source) => Err(Error::AutoscalerNotPointed {
            autoscaler: format!("{:?}/{}", autoscaler.kind, autoscaler.name),
            deployment,
            source,
        }),
    }
}

async fn scale(
    deployments: &Api<Deployment>,
    cluster: &Cluster,
    name: &str,
    wanted: i32,
) -> Result<(), Error> {
    match cluster.replicas(name) {
        Some(current) if current != wanted => {}
        _ => return Ok(()),
    }
    let patch = resources::scale_patch(wanted);
    match deployments
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Err(e) if !not_found(&e) => Err(Error::ApplyFailed {
            name: name.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

async fn services(
    ctx: &Context,
    cache: &Cache,
    ar: &AurenRuntime,
    ns: &str,
    world: &World,
    cluster: &Cluster,
) -> Result<(), Error> {
    let api = Api::<Service>::namespaced(ctx.client.clone(), ns);
    for (which, target) in [(ACTIVE, &world.active), (PREVIEW, &world.preview)] {
        if let ServiceTarget::Canary(pair) = target
            && !cluster.canary_labelled(pair)
        {
            continue;
        }
        let Some(service) = resources::service(ar, which, target)? else {
            continue;
        };
        let service = resources::fingerprinted(service)?;
        let name = service.name_any();
        let live = cache.service(ns, &name);
        let selector = |s: &Service| s.spec.as_ref().and_then(|s| s.selector.clone());
        let same_selector = live.as_deref().map(selector) == Some(selector(&service));
        if resources::already_applied(live.as_deref(), &service) && same_selector {
            continue;
        }
        api.patch(&name, &apply_params(), &Patch::Apply(&service))
            .await
            .map_err(|source| Error::ApplyFailed { name, source })?;
    }
    Ok(())
}

/// Runs the switches in order and stops at the first that fails. Pods whose process is not
/// running are skipped: they cannot consume, and they start on standby.
pub async fn role_switches(
    ctx: &Context,
    cluster: &Cluster,
    token: &str,
    switches: &[RoleSwitch],
) -> Result<(), Error> {
    for switch in switches {
        let pods = cluster.pods_of(&switch.revision, Role::Consumer);
        let targets: Vec<_> = pods
            .filter(|p| observe::running(p))
            .filter_map(observe::address)
            .collect();
        for pod in targets {
            if cluster.roles.get(&pod.name) == Some(&Some(switch.role)) {
                continue;
            }
            let result = pod_api::switch_role(&ctx.http, &pod, token, switch.role).await;
            let status = result.map_err(|e| Error::RoleSwitchFailed {
                revision: switch.revision.clone(),
                role: switch.role,
                detail: e.to_string(),
            })?;
            tracing::info!(pod = %pod.name, role = switch.role.as_str(), stored = status.stored, "consumer role switched");
        }
    }
    Ok(())
}

/// Sets `auren.io/healthy` on every pod from its own `/health`; writes only on a change.
pub async fn readiness_gates(ctx: &Context, ns: &str, cluster: &Cluster) -> Result<(), Error> {
    let api = Api::<Pod>::namespaced(ctx.client.clone(), ns);
    let live = cluster
        .pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none());
    for pod in live {
        let Some(addr) = observe::address(pod) else {
            continue;
        };
        let healthy = cluster.health.get(&addr.name) == Some(&Ok(()));
        let wanted = if healthy { "True" } else { "False" };
        if gate_status(pod) == Some(wanted) || (gate_status(pod).is_none() && !healthy) {
            continue;
        }
        // Strategic merge keys pod conditions by type: the others are kept as they are.
        let patch = serde_json::json!({"status": {"conditions": [{
            "type": READINESS_GATE,
            "status": wanted,
            "lastTransitionTime": Time(Timestamp::now()),
            "reason": if healthy { "RuntimeHealthy" } else { "RuntimeNotHealthy" },
        }]}});
        api.patch_status(
            &addr.name,
            &PatchParams::default(),
            &Patch::Strategic(patch),
        )
        .await
        .map_err(|source| Error::PodConditionFailed {
            pod: addr.name.clone(),
            source,
        })?;
        if let Some(changed) = cluster.health_changed_at.get(&addr.name) {
            let seconds = Timestamp::now().duration_since(*changed).as_secs_f64();
            ctx.metrics.gate_followed(healthy, seconds);
        }
    }
    Ok(())
}

fn gate_status(pod: &Pod) -> Option<&str> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .find(|c| c.type_ == READINESS_GATE)
        .map(|c| c.status.as_str())
}
