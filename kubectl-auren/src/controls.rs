//! The controls: promote, abort and retry set the annotations of the operator's
//! `rollout::controls` to a fresh value; the operator acts on each value once and acknowledges
//! it in status. No Git-owned (spec) field is ever touched. The command line and the
//! dashboard's buttons both come here.

use auren_operator::api::AurenRuntime;
use auren_operator::rollout::Control;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};

/// Asks the operator for `control` on `name`: sets its annotation to a fresh value (acted on
/// once). Returns the value. The CLI's and the dashboard's controls both come here.
pub async fn request_control(
    api: &Api<AurenRuntime>,
    name: &str,
    control: Control,
) -> Result<String, kube::Error> {
    let value = Timestamp::now().to_string();
    let patch = serde_json::json!({"metadata": {"annotations": {control.annotation(): value}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(value)
}
