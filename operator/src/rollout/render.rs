//! The world a status implies: which workloads exist with how many replicas, what each
//! Service selects, which consumer role switches come next, and whether to measure.

use auren_contract::ConsumerRole;

use std::time::Duration;

use crate::api::{AurenRuntimeStatus, CanaryConsumers, Phase, RevisionRef};

use super::clock::plus;
use super::world::{
    AnalysisRequest, CanaryPair, Observed, ReleasePlan, RoleSwitch, ServiceTarget, World,
};

/// What the world is rendered from: the observed world, the decided status, and what the
/// decision derived from the spec and the observed workloads.
pub(super) struct RenderInput<'a> {
    pub observed: &'a Observed<'a>,
    pub status: &'a AurenRuntimeStatus,
    /// The canary weight the steps so far ask for (0 without a canary).
    pub requested_weight: i32,
    /// Consumers each release runs (the autoscaler's count when one is configured).
    pub consumer_replicas: i32,
    /// API pods of a blue/green candidate before promotion.
    pub preview_replicas: i32,
    /// What the consumer autoscaler should record as its target, once there is a stable release.
    pub autoscaler_target: Option<String>,
    pub interval: Duration,
    pub initial_delay: Duration,
}

pub(super) fn render(d: &RenderInput) -> World {
    let releases = release_plans(d);
    let delete = d
        .observed
        .releases
        .iter()
        .map(|r| r.revision.clone())
        .filter(|hash| !releases.iter().any(|p| &p.revision.hash == hash))
        .collect();
    let active =
        canary_pair(d).map_or_else(|| ServiceTarget::active_of(d.status), ServiceTarget::Canary);
    let preview = d.status.candidate.as_ref().or(d.status.stable.as_ref());
    let preview = preview.map_or(ServiceTarget::Nothing, |r| {
        ServiceTarget::Revision(r.hash.clone())
    });
    World {
        releases,
        delete,
        active,
        preview,
        role_switches: role_switches(d),
        analyze: analyze(d),
        retarget_autoscaler: retarget_autoscaler(d),
    }
}

/// The stable release, when the consumer autoscaler does not target it yet.
fn retarget_autoscaler(d: &RenderInput) -> Option<String> {
    let target = d.autoscaler_target.clone()?;
    let stable = d.status.stable.as_ref()?;
    (d.observed.status.consumer_autoscaler.as_ref() != Some(&target)).then(|| stable.hash.clone())
}

/// The releases a running canary's active Service selects.
fn canary_pair(d: &RenderInput) -> Option<CanaryPair> {
    let (stable, candidate) = (d.status.stable.as_ref()?, d.status.candidate.as_ref()?);
    canary_running(d).then(|| CanaryPair {
        stable: stable.hash.clone(),
        candidate: candidate.hash.clone(),
    })
}

fn canary_running(d: &RenderInput) -> bool {
    let phase = matches!(
        d.status.phase,
        Some(Phase::Progressing | Phase::Analyzing | Phase::Paused)
    );
    phase && d.status.canary.is_some() && d.status.candidate.is_some() && d.status.stable.is_some()
}

fn share_mode(d: &RenderInput) -> bool {
    let mode = d
        .observed
        .spec
        .strategy
        .canary
        .as_ref()
        .map(|c| c.consumers);
    d.status.canary.is_some() && mode == Some(CanaryConsumers::PartitionShare)
}

/// Both releases' consumers share the production group during the canary's steps.
fn partition_share(d: &RenderInput) -> bool {
    canary_running(d) && share_mode(d)
}

/// A partition-share canary being promoted: the candidate's members keep consuming (no
/// standby round trip, which would make them rejoin the group) while the stable members
/// keep their share until the active Service has switched, then leave.
fn share_handover(d: &RenderInput) -> bool {
    d.status.phase == Some(Phase::Promoting) && d.status.stable.is_some() && share_mode(d)
}

/// API pods of (candidate, stable) for the canary's requested weight.
fn canary_api_split(d: &RenderInput) -> (i32, i32) {
    split(d.observed.spec.api.replicas, d.requested_weight)
}

/// `total` pods split as (candidate, stable) at `weight` %, the candidate rounded up (at
/// least one pod above 0 %).
pub(super) fn split(total: i32, weight: i32) -> (i32, i32) {
    let weight = weight.clamp(0, 100);
    let mut candidate = ((total.max(0) * weight + 99) / 100).min(total.max(0));
    if weight > 0 && candidate == 0 && total > 0 {
        candidate = 1;
    }
    (candidate, (total - candidate).max(0))
}

fn release_plans(d: &RenderInput) -> Vec<ReleasePlan> {
    let spec = d.observed.spec;
    let (api, consumers) = (spec.api.replicas, d.consumer_replicas);
    let mut plans = Vec::new();
    let mut add = |revision: &RevisionRef, api_replicas, consumer_replicas| {
        if !plans
            .iter()
            .any(|p: &ReleasePlan| p.revision.hash == revision.hash)
        {
            plans.push(ReleasePlan {
                revision: revision.clone(),
                api_replicas,
                consumer_replicas,
            });
        }
    };
    let (canary_candidate, canary_stable) = canary_api_split(d);
    let (share_candidate, share_stable) = split(consumers, d.requested_weight);
    if let Some(stable) = &d.status.stable {
        let api_replicas = if canary_running(d) {
            canary_stable
        } else {
            api
        };
        add(
            stable,
            api_replicas,
            if partition_share(d) || share_handover(d) {
                share_stable
            } else {
                consumers
            },
        );
    }
    if let Some(candidate) = &d.status.candidate {
        let api_replicas = match d.status.phase {
            _ if d.status.stable.is_none() => api,
            Some(Phase::Promoting) => api,
            _ if canary_running(d) => canary_candidate,
            _ => d.preview_replicas,
        };
        add(
            candidate,
            api_replicas,
            if partition_share(d) {
                share_candidate
            } else {
                consumers
            },
        );
    }
    if let Some(previous) = &d.status.previous {
        add(
            &RevisionRef {
                hash: previous.hash.clone(),
                image: previous.image.clone(),
            },
            api,
            consumers,
        );
    }
    if let Some(rejected) = &d.status.rejected {
        add(rejected, 0, 0);
    }
    plans
}

/// Revisions whose consumers should be consuming now.
fn consuming(d: &RenderInput) -> Vec<String> {
    let hash = |r: &Option<RevisionRef>| r.as_ref().map(|r| r.hash.clone());
    let (stable, candidate) = (hash(&d.status.stable), hash(&d.status.candidate));
    let switched =
        candidate.is_some() && d.status.services.active_release() == candidate.as_deref();
    let chosen = match d.status.phase {
        _ if stable.is_none() => vec![candidate],
        Some(Phase::Promoting) if switched => vec![candidate],
        _ if partition_share(d) || share_handover(d) => vec![stable, candidate],
        _ => vec![stable],
    };
    chosen.into_iter().flatten().collect()
}

/// Standby switches first; an activation only once every other revision is confirmed standby.
fn role_switches(d: &RenderInput) -> Vec<RoleSwitch> {
    let consuming = consuming(d);
    let others = d
        .observed
        .releases
        .iter()
        .filter(|r| !consuming.contains(&r.revision));
    let mut switches: Vec<RoleSwitch> = others
        .clone()
        .filter(|r| !r.roles.confirmed_standby())
        .map(|r| RoleSwitch {
            revision: r.revision.clone(),
            role: ConsumerRole::Standby,
        })
        .collect();
    if switches.is_empty() && others.clone().all(|r| r.roles.confirmed_standby()) {
        let waiting = consuming
            .iter()
            .map(|hash| d.observed.release(hash))
            .filter(|r| r.roles.standby > 0 || r.roles.unknown > 0);
        switches.extend(waiting.map(|r| RoleSwitch {
            revision: r.revision,
            role: ConsumerRole::Active,
        }));
    }
    switches
}

fn analyze(d: &RenderInput) -> Option<AnalysisRequest> {
    let progress = d.status.analysis.as_ref()?;
    if d.observed.now < plus(progress.started_at.0, d.initial_delay) {
        return None;
    }
    let hash = |r: Option<&RevisionRef>| r.map(|r| r.hash.clone());
    let (candidate, baseline) = match d.status.phase {
        Some(Phase::Analyzing) => (
            hash(d.status.candidate.as_ref())?,
            hash(d.status.stable.as_ref()),
        ),
        // The post-promotion watch goes on while no API pod of the new stable release is
        // ready (Degraded): a dependency outage that takes every pod out of its Services is
        // measured and judged against the previous release like any other window.
        Some(Phase::Healthy | Phase::Degraded) => (
            hash(d.status.stable.as_ref())?,
            Some(d.status.previous.as_ref()?.hash.clone()),
        ),
        _ => return None,
    };
    (candidate == progress.revision).then_some(AnalysisRequest {
        candidate,
        baseline,
        interval: d.interval,
    })
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn canary_split_rounds_the_candidate_up() {
        let cases = [
            (4, 0, (0, 4)),
            (4, 10, (1, 3)),
            (4, 25, (1, 3)),
            (4, 50, (2, 2)),
            (4, 100, (4, 0)),
            (10, 25, (3, 7)),
            (1, 10, (1, 0)),
            (0, 50, (0, 0)),
        ];
        for (total, weight, expected) in cases {
            assert_eq!(split(total, weight), expected, "{total} pods at {weight}%");
        }
    }
}
