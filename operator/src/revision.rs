//! The release hash: a short, stable digest of everything that ends up in a release's pod
//! templates. Replica counts, the strategy and the analysis are not part of a release, so
//! changing them never starts a rollout.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodSecurityContext, ResourceRequirements, SecurityContext};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::api::{AurenRuntimeSpec, ConnectionsSpec, EnvVar, PlacementSpec, RevisionRef};

/// Hex characters of the hash (40 bits: collisions between releases of one resource are
/// negligible, and it stays readable in `kubectl get`).
pub const HASH_LEN: usize = 10;

/// The release could not be serialised for hashing.
#[derive(Debug, thiserror::Error)]
#[error("cannot serialise the release template: {0}")]
pub struct RevisionError(#[from] serde_json::Error);

/// The parts of the spec that make a release. Field order is the hash's canonical order;
/// adding a field changes every hash, so new fields must be `Option` and skipped when `None`.
#[derive(Serialize)]
struct ReleaseTemplate<'a> {
    image: &'a str,
    env: &'a [EnvVar],
    config: &'a BTreeMap<String, String>,
    port: i32,
    api_resources: &'a Option<ResourceRequirements>,
    consumer_resources: &'a Option<ResourceRequirements>,
    topic: &'a str,
    group: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_concurrent_events: Option<i32>,
    connections: &'a ConnectionsSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    placement: &'a Option<PlacementSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    security_context: &'a Option<SecurityContext>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pod_security_context: &'a Option<PodSecurityContext>,
}

/// The revision (hash and image) the spec asks for.
pub fn of(spec: &AurenRuntimeSpec) -> Result<RevisionRef, RevisionError> {
    let template = ReleaseTemplate {
        image: &spec.image,
        env: &spec.env,
        config: &spec.config,
        port: spec.api.port,
        api_resources: &spec.api.resources,
        consumer_resources: &spec.consumer.resources,
        topic: &spec.consumer.topic,
        group: &spec.consumer.group,
        max_concurrent_events: spec.consumer.max_concurrent_events,
        connections: &spec.connections,
        placement: &spec.placement,
        security_context: &spec.security_context,
        pod_security_context: &spec.pod_security_context,
    };
    let bytes = serde_json::to_vec(&template)?;
    let digest = Sha256::digest(&bytes);
    let mut hash = hex::encode(digest);
    hash.truncate(HASH_LEN);
    Ok(RevisionRef {
        hash,
        image: spec.image.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SecretKeyRef;

    fn base() -> AurenRuntimeSpec {
        AurenRuntimeSpec::with_image("registry.local/auren-runtime:1.0.0")
    }

    fn hash(spec: &AurenRuntimeSpec) -> String {
        of(spec).unwrap().hash
    }

    #[test]
    fn hash_is_short_hex_and_stable_across_calls() {
        let h = hash(&base());
        assert_eq!(h.len(), HASH_LEN);
        assert!(
            h.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(h, hash(&base()));
    }

    #[test]
    fn pinned_hash_of_the_minimal_spec() {
        // Changing this value means every running AurenRuntime starts a rollout on upgrade.
        // It changed with issue 28: a spec without consumer.maxConcurrentEvents no longer
        // renders MAX_CONCURRENT_EVENTS=50 into its pods, so their template is new.
        assert_eq!(hash(&base()), "e2b1ea2910");
    }

    #[test]
    fn a_spec_that_sets_max_concurrent_events_keeps_its_hash() {
        // The minimal spec's hash from before issue 28, when 50 was the field's default.
        let mut spec = base();
        spec.consumer.max_concurrent_events = Some(50);
        assert_eq!(hash(&spec), "a0a1bac7a6");
    }

    #[test]
    fn release_fields_change_the_hash() {
        type Edit = fn(&mut AurenRuntimeSpec);
        let edits: [(&str, Edit); 10] = [
            ("image", |s| {
                s.image = "registry.local/auren-runtime:1.0.1".into()
            }),
            ("env", |s| {
                s.env.push(EnvVar {
                    name: "LOG_FORMAT".into(),
                    value: "text".into(),
                })
            }),
            ("config", |s| {
                s.config.insert("MAX_BATCH_EVENTS".into(), "10".into());
            }),
            ("port", |s| s.api.port = 9000),
            ("topic", |s| s.consumer.topic = "other".into()),
            ("max concurrent", |s| {
                s.consumer.max_concurrent_events = Some(7)
            }),
            ("placement", |s| {
                let mut placement = crate::api::PlacementSpec::default();
                placement
                    .node_selector
                    .insert("pool".into(), "wearables".into());
                s.placement = Some(placement);
            }),
            ("security context", |s| {
                s.security_context = Some(Default::default());
            }),
            ("pod security context", |s| {
                s.pod_security_context = Some(Default::default());
            }),
            ("database secret", |s| {
                s.connections.database_url = Some(SecretKeyRef {
                    name: "db".into(),
                    key: "url".into(),
                })
            }),
        ];
        let original = hash(&base());
        for (name, edit) in edits {
            let mut spec = base();
            edit(&mut spec);
            assert_ne!(hash(&spec), original, "{name} must change the release");
        }
    }

    #[test]
    fn scaling_and_rollout_settings_keep_the_hash() {
        type Edit = fn(&mut AurenRuntimeSpec);
        let edits: [(&str, Edit); 9] = [
            ("api replicas", |s| s.api.replicas = 9),
            ("consumer autoscaler", |s| {
                s.consumer.autoscaler = Some(crate::api::AutoscalerRef {
                    kind: crate::api::AutoscalerKind::ScaledObject,
                    name: "consumers".into(),
                })
            }),
            ("notifications", |s| {
                s.notifications = Some(crate::api::NotificationsSpec {
                    secret_ref: crate::api::SecretRef {
                        name: "hooks".into(),
                    },
                    format: crate::api::NotificationFormat::Slack,
                })
            }),
            ("allowUnsafe", |s| {
                s.allow_unsafe = vec![crate::api::UnsafeSetting::Faults]
            }),
            ("consumer replicas", |s| s.consumer.replicas = 4),
            ("paused", |s| s.paused = true),
            ("deadline", |s| s.progress_deadline_seconds = 60),
            ("analysis", |s| s.analysis.interval = "1m".into()),
            ("strategy", |s| {
                s.strategy.blue_green = Some(Default::default())
            }),
        ];
        let original = hash(&base());
        for (name, edit) in edits {
            let mut spec = base();
            edit(&mut spec);
            assert_eq!(hash(&spec), original, "{name} must not change the release");
        }
    }
}
