//! Pure builders of the objects the controller applies: per revision an API Deployment and a
//! consumer Deployment, the active and preview Services, and the status patch (only when the
//! status changed). Nothing here talks to the API server.
//!
//! Only the desired revision (`revision::of(spec)`) is built from the spec. Other revisions
//! (stable during a rollout, previous, rejected) keep the template they were created with: the
//! controller only changes their replicas ([`scale_patch`]), so a spec edit never alters a
//! running release.

mod autoscaler;
mod service;
mod workload;

pub use autoscaler::{autoscaler_resource, scale_target_patch};
pub use service::{
    ACTIVE, CANARY_LABEL_PREFIX, PREVIEW, canary_label, canary_label_patch, scale_selector,
    service, service_name,
};
pub use workload::{
    ADMIN_PORT_NAME, ADMIN_TOKEN_KEY, READINESS_GATE, RUNTIME_UID, Role, WEBHOOK_SECRETS_DIR,
    admin_token_ref, admin_token_secret_name, deployment, deployment_name, scale_patch,
};

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::api::{AurenRuntime, AurenRuntimeStatus};

pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const LABEL_VERSION: &str = "app.kubernetes.io/version";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
pub const LABEL_REVISION: &str = "auren.io/revision";
pub const LABEL_ROLE: &str = "auren.io/role";
/// `app.kubernetes.io/name` of runtime pods.
pub const APP_NAME: &str = "auren-runtime";
/// Field manager and `managed-by` value.
pub const MANAGER: &str = "auren-operator";

/// An object cannot be built for this AurenRuntime.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    #[error("the AurenRuntime has no namespace")]
    MissingNamespace,
    #[error("the AurenRuntime has no uid yet (not read from the API server)")]
    MissingOwner,
    #[error("cannot serialise an object: {0}")]
    Serialise(#[from] serde_json::Error),
}

/// Labels every object of this AurenRuntime carries; also the selector base.
pub fn instance_labels(ar: &AurenRuntime) -> BTreeMap<String, String> {
    let pairs = [
        (LABEL_NAME, APP_NAME.to_owned()),
        (LABEL_INSTANCE, ar.name_any()),
    ];
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Metadata of a child object: namespace, labels and the owner reference.
fn child_meta(
    ar: &AurenRuntime,
    name: String,
    labels: BTreeMap<String, String>,
) -> Result<ObjectMeta, ResourceError> {
    let namespace = ar.namespace().ok_or(ResourceError::MissingNamespace)?;
    Ok(ObjectMeta {
        name: Some(name),
        namespace: Some(namespace),
        labels: Some(labels),
        owner_references: Some(vec![owner(ar)?]),
        ..Default::default()
    })
}

fn owner(ar: &AurenRuntime) -> Result<OwnerReference, ResourceError> {
    ar.controller_owner_ref(&())
        .ok_or(ResourceError::MissingOwner)
}

/// Annotation with a digest of the object as the operator last applied it.
pub const APPLIED: &str = "auren.io/applied";

/// Stamps `object` with the digest of its own content ([`APPLIED`]).
pub fn fingerprinted<K: Resource + Serialize>(mut object: K) -> Result<K, ResourceError> {
    let digest = Sha256::digest(serde_json::to_vec(&object)?);
    let value = hex::encode(&digest[..8]);
    object.annotations_mut().insert(APPLIED.to_owned(), value);
    Ok(object)
}

/// The live object carries the digest of `desired`: applying it again would change nothing
/// the operator owns.
pub fn already_applied<K: Resource>(live: Option<&K>, desired: &K) -> bool {
    let digest = |o: &K| o.annotations().get(APPLIED).cloned();
    live.is_some_and(|live| digest(live).is_some() && digest(live) == digest(desired))
}

/// The status to write, or `None` when it equals the current one (no write, no churn).
/// The value is the body of a server-side apply (or merge) patch of the status subresource.
pub fn status_patch(
    current: Option<&AurenRuntimeStatus>,
    next: &AurenRuntimeStatus,
) -> Result<Option<serde_json::Value>, ResourceError> {
    if current == Some(next) || (current.is_none() && next == &AurenRuntimeStatus::default()) {
        return Ok(None);
    }
    let body = serde_json::json!({
        "apiVersion": AurenRuntime::api_version(&()),
        "kind": AurenRuntime::kind(&()),
        "status": serde_json::to_value(next)?,
    });
    Ok(Some(body))
}

#[cfg(test)]
pub(crate) mod fixtures {
    use crate::api::{AurenRuntime, AurenRuntimeSpec};

    pub fn runtime() -> AurenRuntime {
        let mut ar = AurenRuntime::new(
            "wearables",
            AurenRuntimeSpec::with_image("registry.local/auren-runtime:1.0.0"),
        );
        ar.metadata.namespace = Some("auren".into());
        ar.metadata.uid = Some("0f1e2d3c".into());
        ar
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Phase;
    use crate::rollout::ServiceTarget;

    #[test]
    fn a_fingerprint_changes_with_the_content_only() {
        let ar = fixtures::runtime();
        let target = ServiceTarget::Revision("abc".into());
        let build = |t: &ServiceTarget| service(&ar, ACTIVE, t).unwrap().unwrap();
        let one = fingerprinted(build(&target)).unwrap();
        let again = fingerprinted(build(&target)).unwrap();
        assert!(already_applied(Some(&one), &again));
        let other = fingerprinted(build(&ServiceTarget::Revision("def".into()))).unwrap();
        assert!(!already_applied(Some(&one), &other));
        assert!(!already_applied(None, &one));
        assert!(
            !already_applied(Some(&build(&target)), &build(&target)),
            "unstamped"
        );
    }

    #[test]
    fn status_patch_only_when_changed() {
        let healthy = AurenRuntimeStatus {
            phase: Some(Phase::Healthy),
            ..Default::default()
        };
        assert!(status_patch(Some(&healthy), &healthy).unwrap().is_none());
        assert!(
            status_patch(None, &AurenRuntimeStatus::default())
                .unwrap()
                .is_none()
        );
        let patch = status_patch(None, &healthy).unwrap().unwrap();
        assert_eq!(patch["status"]["phase"], "Healthy");
        assert_eq!(patch["apiVersion"], "auren.io/v1alpha1");
        assert_eq!(patch["kind"], "AurenRuntime");
        let degraded = AurenRuntimeStatus {
            phase: Some(Phase::Degraded),
            ..Default::default()
        };
        assert!(status_patch(Some(&healthy), &degraded).unwrap().is_some());
    }

    #[test]
    fn children_need_a_namespace_and_an_owner() {
        let mut ar = fixtures::runtime();
        ar.metadata.uid = None;
        assert!(matches!(
            child_meta(&ar, "x".into(), BTreeMap::new()),
            Err(ResourceError::MissingOwner)
        ));
        ar.metadata.namespace = None;
        assert!(matches!(
            child_meta(&ar, "x".into(), BTreeMap::new()),
            Err(ResourceError::MissingNamespace)
        ));
        let meta = child_meta(&fixtures::runtime(), "x".into(), BTreeMap::new()).unwrap();
        let owner = &meta.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("AurenRuntime", "wearables", Some(true))
        );
    }
}
