//! The world a status implies: which workloads exist with how many replicas, what each
//! Service selects, which consumer role switches come next, and whether to measure.

use auren_contract::ConsumerRole;

use crate::api::{CanaryConsumers, Phase, RevisionRef, parse_duration};

use super::decide::{Decision, plus};
use super::world::{AnalysisRequest, CanaryPair, ReleasePlan, RoleSwitch, ServiceTarget, World};

pub(super) fn render(d: &Decision) -> World {
    let releases = release_plans(d);
    let delete = d
        .obs
        .releases
        .iter()
        .map(|r| r.revision.clone())
        .filter(|hash| !releases.iter().any(|p| &p.revision.hash == hash))
        .collect();
    let active = canary_pair(d).map_or_else(|| d.active_target(), ServiceTarget::Canary);
    let preview = d.st.candidate.as_ref().or(d.st.stable.as_ref());
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
fn retarget_autoscaler(d: &Decision) -> Option<String> {
    let target = d.autoscaler_target()?;
    let stable = d.st.stable.as_ref()?;
    (d.obs.status.consumer_autoscaler.as_ref() != Some(&target)).then(|| stable.hash.clone())
}

/// The releases a running canary's active Service selects.
fn canary_pair(d: &Decision) -> Option<CanaryPair> {
    let (stable, candidate) = (d.st.stable.as_ref()?, d.st.candidate.as_ref()?);
    canary_running(d).then(|| CanaryPair {
        stable: stable.hash.clone(),
        candidate: candidate.hash.clone(),
    })
}

fn canary_running(d: &Decision) -> bool {
    let phase = matches!(
        d.st.phase,
        Some(Phase::Progressing | Phase::Analyzing | Phase::Paused)
    );
    phase && d.st.canary.is_some() && d.st.candidate.is_some() && d.st.stable.is_some()
}

fn share_mode(d: &Decision) -> bool {
    let mode = d.obs.spec.strategy.canary.as_ref().map(|c| c.consumers);
    d.st.canary.is_some() && mode == Some(CanaryConsumers::PartitionShare)
}

/// Both releases' consumers share the production group during the canary's steps.
fn partition_share(d: &Decision) -> bool {
    canary_running(d) && share_mode(d)
}

/// A partition-share canary being promoted: the candidate's members keep consuming (no
/// standby round trip, which would make them rejoin the group) while the stable members
/// keep their share until the active Service has switched, then leave.
fn share_handover(d: &Decision) -> bool {
    d.st.phase == Some(Phase::Promoting) && d.st.stable.is_some() && share_mode(d)
}

/// API pods of (candidate, stable) for the canary's requested weight.
pub(super) fn canary_api_split(d: &Decision) -> (i32, i32) {
    split(d.obs.spec.api.replicas, d.requested_weight())
}

fn split(total: i32, weight: i32) -> (i32, i32) {
    let weight = weight.clamp(0, 100);
    let mut candidate = ((total.max(0) * weight + 99) / 100).min(total.max(0));
    if weight > 0 && candidate == 0 && total > 0 {
        candidate = 1;
    }
    (candidate, (total - candidate).max(0))
}

fn release_plans(d: &Decision) -> Vec<ReleasePlan> {
    let spec = d.obs.spec;
    let (api, consumers) = (spec.api.replicas, d.consumer_replicas());
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
    let (share_candidate, share_stable) = split(consumers, d.requested_weight());
    if let Some(stable) = &d.st.stable {
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
    if let Some(candidate) = &d.st.candidate {
        let api_replicas = match d.st.phase {
            _ if d.st.stable.is_none() => api,
            Some(Phase::Promoting) => api,
            _ if canary_running(d) => canary_candidate,
            _ => d.preview_replicas(),
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
    if let Some(previous) = &d.st.previous {
        add(
            &RevisionRef {
                hash: previous.hash.clone(),
                image: previous.image.clone(),
            },
            api,
            consumers,
        );
    }
    if let Some(rejected) = &d.st.rejected {
        add(rejected, 0, 0);
    }
    plans
}

/// Revisions whose consumers should be consuming now.
fn consuming(d: &Decision) -> Vec<String> {
    let hash = |r: &Option<RevisionRef>| r.as_ref().map(|r| r.hash.clone());
    let (stable, candidate) = (hash(&d.st.stable), hash(&d.st.candidate));
    let switched = candidate.is_some() && d.st.services.active == candidate;
    let chosen = match d.st.phase {
        _ if stable.is_none() => vec![candidate],
        Some(Phase::Promoting) if switched => vec![candidate],
        _ if partition_share(d) || share_handover(d) => vec![stable, candidate],
        _ => vec![stable],
    };
    chosen.into_iter().flatten().collect()
}

/// Standby switches first; an activation only once every other revision is confirmed standby.
fn role_switches(d: &Decision) -> Vec<RoleSwitch> {
    let consuming = consuming(d);
    let others = d
        .obs
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
            .map(|hash| d.release(hash))
            .filter(|r| r.roles.standby > 0 || r.roles.unknown > 0);
        switches.extend(waiting.map(|r| RoleSwitch {
            revision: r.revision,
            role: ConsumerRole::Active,
        }));
    }
    switches
}

fn analyze(d: &Decision) -> Option<AnalysisRequest> {
    let progress = d.st.analysis.as_ref()?;
    let initial_delay = parse_duration(&d.obs.spec.analysis.initial_delay).unwrap_or_default();
    let interval = parse_duration(&d.obs.spec.analysis.interval).ok()?;
    if d.obs.now < plus(progress.started_at.0, initial_delay) {
        return None;
    }
    let hash = |r: Option<&RevisionRef>| r.map(|r| r.hash.clone());
    let (candidate, baseline) = match d.st.phase {
        Some(Phase::Analyzing) => (hash(d.st.candidate.as_ref())?, hash(d.st.stable.as_ref())),
        // The post-promotion watch goes on while no API pod of the new stable release is
        // ready (Degraded): a dependency outage that takes every pod out of its Services is
        // measured and judged against the previous release like any other window.
        Some(Phase::Healthy | Phase::Degraded) => (
            hash(d.st.stable.as_ref())?,
            Some(d.st.previous.as_ref()?.hash.clone()),
        ),
        _ => return None,
    };
    (candidate == progress.revision).then_some(AnalysisRequest {
        candidate,
        baseline,
        interval,
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
