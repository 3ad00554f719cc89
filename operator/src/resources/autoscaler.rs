//! The consumer autoscaler the operator keeps pointed at the stable release's consumer
//! Deployment (`spec.consumer.autoscaler`): which API it lives in, and the patch that points it.

use k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler;
use kube::api::ApiResource;
use kube::core::GroupVersionKind;

use crate::api::AutoscalerKind;

/// Where an autoscaler of `kind` is read and patched. A HorizontalPodAutoscaler is patched
/// through `autoscaling/v1`, served by every Kubernetes version (the versions are views of one
/// object, and `spec.scaleTargetRef` is the same in all of them).
pub fn autoscaler_resource(kind: AutoscalerKind) -> ApiResource {
    match kind {
        AutoscalerKind::HorizontalPodAutoscaler => {
            ApiResource::erase::<HorizontalPodAutoscaler>(&())
        }
        AutoscalerKind::ScaledObject => ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("keda.sh", "v1alpha1", "ScaledObject"),
            "scaledobjects",
        ),
    }
}

/// Merge patch pointing an autoscaler's `spec.scaleTargetRef` at the Deployment `name`.
pub fn scale_target_patch(deployment: &str) -> serde_json::Value {
    serde_json::json!({
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment}}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_api() {
        let hpa = autoscaler_resource(AutoscalerKind::HorizontalPodAutoscaler);
        assert_eq!(
            (
                hpa.group.as_str(),
                hpa.version.as_str(),
                hpa.plural.as_str()
            ),
            ("autoscaling", "v1", "horizontalpodautoscalers")
        );
        let keda = autoscaler_resource(AutoscalerKind::ScaledObject);
        assert_eq!(
            (
                keda.group.as_str(),
                keda.version.as_str(),
                keda.plural.as_str()
            ),
            ("keda.sh", "v1alpha1", "scaledobjects")
        );
        let patch = scale_target_patch("wearables-abc-consumer");
        assert_eq!(
            patch["spec"]["scaleTargetRef"]["name"],
            "wearables-abc-consumer"
        );
        assert_eq!(patch["spec"]["scaleTargetRef"]["kind"], "Deployment");
    }
}
