//! The active (production) and preview Services.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use crate::api::AurenRuntime;
use crate::rollout::ServiceTarget;

use super::{LABEL_REVISION, LABEL_ROLE, ResourceError, child_meta, instance_labels};

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
        ServiceTarget::AllRevisions => {}
    }
    Some(selector)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fixtures::runtime;

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
        let all = scale_selector(&ar, &ServiceTarget::AllRevisions).unwrap();
        assert!(!all.contains("auren.io/revision"), "{all}");
        assert_eq!(scale_selector(&ar, &ServiceTarget::Nothing), None);
    }

    /// No Service the operator builds reaches the admin API, by number or by name.
    #[test]
    fn no_service_exposes_the_admin_port() {
        let ar = runtime();
        let admin = i32::from(auren_contract::ports::ADMIN);
        let targets = [
            ServiceTarget::Revision("abc".into()),
            ServiceTarget::AllRevisions,
        ];
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

        let canary = service(&ar, ACTIVE, &ServiceTarget::AllRevisions)
            .unwrap()
            .unwrap();
        assert!(
            !canary
                .spec
                .unwrap()
                .selector
                .unwrap()
                .contains_key(LABEL_REVISION)
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
