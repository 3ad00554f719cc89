//! The active (production) and preview Services.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use crate::api::AurenRuntime;
use crate::rollout::{CanaryPair, ServiceTarget};

use super::{LABEL_REVISION, LABEL_ROLE, ResourceError, child_meta, instance_labels};

/// Prefix of the label that puts an API pod into a canary's active Service:
/// `auren.io/canary-<candidate>: <stable>`, set by the operator on the API pods of the
/// canary's two releases. A Service selects by equality only, so "stable or candidate" needs a
/// label both carry; naming the candidate in the key and the stable release in the value means
/// no pod of a third release carries it (a pod keeps the labels of canaries it was in before,
/// and the previous release's pods were in the canary that made the stable release).
pub const CANARY_LABEL_PREFIX: &str = "auren.io/canary-";

/// Suffix-less: the active Service has the AurenRuntime's name.
pub const ACTIVE: &str = "active";
pub const PREVIEW: &str = "preview";

/// `<name>` for the active Service, `<name>-preview` for the preview one.
pub fn service_name(ar: &AurenRuntime, which: &str) -> String {
    if which == ACTIVE {
        ar.name_any()
    } else {
        format!("{}-{which}", ar.name_any())
    }
}

/// The Service `which` selecting `target`'s API pods; `None` while there is nothing to select.
pub fn service(
    ar: &AurenRuntime,
    which: &str,
    target: &ServiceTarget,
) -> Result<Option<Service>, ResourceError> {
    let Some(selector) = selector(ar, target) else {
        return Ok(None);
    };
    let port = ServicePort {
        name: Some("http".into()),
        port: ar.spec.api.port,
        target_port: Some(IntOrString::String("http".into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    Ok(Some(Service {
        metadata: child_meta(ar, service_name(ar, which), instance_labels(ar))?,
        spec: Some(ServiceSpec {
            selector: Some(selector),
            ports: Some(vec![port]),
            ..Default::default()
        }),
        ..Default::default()
    }))
}

/// The active Service's selector as label selector text (`k=v,k=v`): the `/scale`
/// subresource's `status.selector`, so a HorizontalPodAutoscaler measures the pods that serve.
pub fn scale_selector(ar: &AurenRuntime, active: &ServiceTarget) -> Option<String> {
    let pairs = selector(ar, active)?
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"));
    Some(pairs.collect::<Vec<_>>().join(","))
}

fn selector(ar: &AurenRuntime, target: &ServiceTarget) -> Option<BTreeMap<String, String>> {
    let mut selector = instance_labels(ar);
    selector.insert(LABEL_ROLE.into(), "api".into());
    match target {
        ServiceTarget::Nothing => return None,
        ServiceTarget::Revision(hash) => {
            selector.insert(LABEL_REVISION.into(), hash.clone());
        }
        ServiceTarget::Canary(pair) => {
            let (key, value) = canary_label(pair);
            selector.insert(key, value);
        }
    }
    Some(selector)
}

/// The label (key, value) of the API pods of `pair`'s two releases.
pub fn canary_label(pair: &CanaryPair) -> (String, String) {
    (
        format!("{CANARY_LABEL_PREFIX}{}", pair.candidate),
        pair.stable.clone(),
    )
}

/// Merge patch of a pod's labels (`current`) that puts it into `pair`'s canary and drops the
/// labels of other canaries except those in `keep` (what the live active Service selects:
/// a pod is never taken out of the Service that serves now). `None`: nothing to change.
pub fn canary_label_patch(
    current: Option<&BTreeMap<String, String>>,
    pair: &CanaryPair,
    keep: &BTreeMap<String, String>,
) -> Option<serde_json::Value> {
    let (key, value) = canary_label(pair);
    let mut changes = serde_json::Map::new();
    let current = current.cloned().unwrap_or_default();
    if current.get(&key) != Some(&value) {
        changes.insert(key.clone(), value.into());
    }
    let stale = current
        .keys()
        .filter(|k| k.starts_with(CANARY_LABEL_PREFIX) && **k != key && !keep.contains_key(*k));
    for old in stale {
        changes.insert(old.clone(), serde_json::Value::Null);
    }
    (!changes.is_empty()).then(|| serde_json::json!({"metadata": {"labels": changes}}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fixtures::runtime;

    /// The canary of candidate `def` against stable `abc`.
    fn pair_target() -> ServiceTarget {
        ServiceTarget::Canary(pair("abc", "def"))
    }

    fn pair(stable: &str, candidate: &str) -> CanaryPair {
        CanaryPair {
            stable: stable.into(),
            candidate: candidate.into(),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        let owned = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        owned.collect()
    }

    /// Of the pods of three releases (previous `p`, stable `s`, candidate `c`), each labelled
    /// as the operator does through two canaries, the canary Service selects only `s` and `c`.
    #[test]
    fn a_canary_selects_its_stable_and_candidate_pods_only() {
        let ar = runtime();
        let target = ServiceTarget::Canary(pair("s", "c"));
        let selector = service(&ar, ACTIVE, &target).unwrap().unwrap();
        let selector = selector.spec.unwrap().selector.unwrap();
        let api = |revision: &str, canaries: &[(&str, &str)]| {
            let mut pod = instance_labels(&ar);
            pod.insert(LABEL_ROLE.into(), "api".into());
            pod.insert(LABEL_REVISION.into(), revision.into());
            pod.extend(labels(canaries));
            pod
        };
        // `s` was the candidate of a canary against `p`; `c` was rolled back once against
        // `p` and is tried again against `s`.
        let pods = [
            (
                "p",
                api(
                    "p",
                    &[("auren.io/canary-s", "p"), ("auren.io/canary-c", "p")],
                ),
            ),
            (
                "s",
                api(
                    "s",
                    &[("auren.io/canary-s", "p"), ("auren.io/canary-c", "s")],
                ),
            ),
            ("c", api("c", &[("auren.io/canary-c", "s")])),
            ("unlabelled", api("s", &[])),
        ];
        let selected: Vec<&str> = pods
            .iter()
            .filter(|(_, pod)| selector.iter().all(|(k, v)| pod.get(k) == Some(v)))
            .map(|(name, _)| *name)
            .collect();
        assert_eq!(selected, ["s", "c"]);
    }

    #[test]
    fn pods_are_labelled_once_and_stale_canaries_dropped_unless_served() {
        let target = pair("s", "c2");
        let fresh = canary_label_patch(None, &target, &BTreeMap::new()).unwrap();
        assert_eq!(fresh["metadata"]["labels"]["auren.io/canary-c2"], "s");
        let labelled = labels(&[("auren.io/canary-c2", "s"), (LABEL_REVISION, "s")]);
        assert_eq!(
            canary_label_patch(Some(&labelled), &target, &BTreeMap::new()),
            None,
            "at rest: no request"
        );
        // Superseded c1: the live Service still selects it, so its label stays for now.
        let both = labels(&[("auren.io/canary-c1", "s"), ("auren.io/canary-c2", "s")]);
        let serving = labels(&[("auren.io/canary-c1", "s"), (LABEL_ROLE, "api")]);
        assert_eq!(canary_label_patch(Some(&both), &target, &serving), None);
        let stale = canary_label_patch(Some(&both), &target, &BTreeMap::new()).unwrap();
        assert_eq!(
            stale["metadata"]["labels"],
            serde_json::json!({"auren.io/canary-c1": null})
        );
    }

    #[test]
    fn the_scale_selector_is_the_active_services_selector_as_text() {
        let ar = runtime();
        let one = scale_selector(&ar, &ServiceTarget::Revision("abc".into()));
        assert_eq!(
            one.as_deref(),
            Some(
                "app.kubernetes.io/instance=wearables,app.kubernetes.io/name=auren-runtime,\
                 auren.io/revision=abc,auren.io/role=api"
            )
        );
        let canary = scale_selector(&ar, &pair_target()).unwrap();
        assert!(!canary.contains("auren.io/revision"), "{canary}");
        assert!(canary.contains("auren.io/canary-def=abc"), "{canary}");
        assert_eq!(scale_selector(&ar, &ServiceTarget::Nothing), None);
    }

    /// No Service the operator builds reaches the admin API, by number or by name.
    #[test]
    fn no_service_exposes_the_admin_port() {
        let ar = runtime();
        let admin = i32::from(auren_contract::ports::ADMIN);
        let targets = [ServiceTarget::Revision("abc".into()), pair_target()];
        for which in [ACTIVE, PREVIEW] {
            for target in &targets {
                let svc = service(&ar, which, target).unwrap().unwrap();
                for port in svc.spec.unwrap().ports.unwrap() {
                    assert_ne!(port.port, admin);
                    let target = port.target_port.unwrap();
                    assert_ne!(target, IntOrString::Int(admin));
                    assert_ne!(
                        target,
                        IntOrString::String(crate::resources::ADMIN_PORT_NAME.into())
                    );
                }
            }
        }
    }

    #[test]
    fn services_select_api_pods_of_the_target() {
        let ar = runtime();
        let active = service(&ar, ACTIVE, &ServiceTarget::Revision("abc".into()))
            .unwrap()
            .unwrap();
        assert_eq!(active.metadata.name.as_deref(), Some("wearables"));
        let spec = active.spec.unwrap();
        let selector = spec.selector.unwrap();
        assert_eq!(
            selector.get(LABEL_REVISION).map(String::as_str),
            Some("abc")
        );
        assert_eq!(selector.get(LABEL_ROLE).map(String::as_str), Some("api"));
        let ports = spec.ports.unwrap();
        assert_eq!(ports.len(), 1, "only the public port: {ports:?}");
        let port = &ports[0];
        assert_eq!((port.port, port.protocol.as_deref()), (8000, Some("TCP")));
        assert_eq!(
            port.target_port,
            Some(IntOrString::String("http".into())),
            "never the admin port"
        );

        let canary = service(&ar, ACTIVE, &pair_target()).unwrap().unwrap();
        let selector = canary.spec.unwrap().selector.unwrap();
        assert!(!selector.contains_key(LABEL_REVISION));
        assert_eq!(
            selector.get("auren.io/canary-def").map(String::as_str),
            Some("abc")
        );
        let preview = service(&ar, PREVIEW, &ServiceTarget::Revision("def".into()))
            .unwrap()
            .unwrap();
        assert_eq!(preview.metadata.name.as_deref(), Some("wearables-preview"));
        assert!(
            service(&ar, PREVIEW, &ServiceTarget::Nothing)
                .unwrap()
                .is_none()
        );
    }
}
