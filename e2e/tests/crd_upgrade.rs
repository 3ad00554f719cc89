//! The CRD upgrade path (issue 32, point 5): Helm never upgrades `crds/`, so a cluster can hold
//! AurenRuntimes stored under an older CRD that did not carry today's rules. This file replaces
//! the cluster-wide CRD for a moment, so scripts/e2e.sh runs it alone, after every other file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use auren_operator::api::{AurenRuntime, Phase};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::{NAME, Operator, TestNs, kubectl, wait_for};

const CRD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../charts/auren-operator/crds/aurenruntime.yaml"
);

/// Today's CRD without any `x-kubernetes-validations`: what a cluster installed before the
/// rules existed holds.
fn crd_without_rules() -> Value {
    fn strip(value: &mut Value) {
        match value {
            Value::Object(map) => {
                map.remove("x-kubernetes-validations");
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut crd: Value = serde_yaml::from_str(&std::fs::read_to_string(CRD).unwrap()).unwrap();
    strip(&mut crd);
    crd
}

/// How many schema nodes carry `x-kubernetes-validations`.
fn nodes_with_rules(crd: &impl serde::Serialize) -> usize {
    serde_json::to_string(crd)
        .unwrap()
        .matches("x-kubernetes-validations")
        .count()
}

/// A spec that today's rules refuse (a variable the operator sets itself, in `config`).
fn stale_spec() -> AurenRuntime {
    serde_json::from_value(json!({
        "apiVersion": "auren.io/v1alpha1",
        "kind": "AurenRuntime",
        "metadata": {"name": NAME},
        "spec": {"image": "auren/runtime:v1", "config": {"KAFKA_TOPIC": "elsewhere"}},
    }))
    .unwrap()
}

/// Under an older CRD without the rules a spec they refuse is stored; the operator still
/// refuses it (InvalidSpec naming the field, nothing rolled out). The documented upgrade
/// (`kubectl apply --server-side --force-conflicts -f charts/auren-operator/crds/`) brings
/// the rules back: a new bad spec is refused at the API server, the stored object is kept, and
/// its fix is accepted.
#[tokio::test]
async fn an_object_stored_before_the_rules_meets_them_in_the_operator_and_the_upgrade_restores_them()
 {
    let ns = TestNs::new("crd-upgrade").await;
    let crds = Api::<CustomResourceDefinition>::all(ns.client.clone());
    let name = "aurenruntimes.auren.io";
    let older = PatchParams::apply("auren-e2e-older-crd").force();
    let older_crd = crd_without_rules();
    assert_eq!(nodes_with_rules(&older_crd), 0);
    let applied = crds
        .patch(name, &older, &Patch::Apply(&older_crd))
        .await
        .unwrap();
    assert_eq!(nodes_with_rules(&applied), 0, "the older CRD is in place");
    let stored = wait_for("the older CRD to take effect", 30, || async {
        let created = ns
            .runtimes()
            .create(&PostParams::default(), &stale_spec())
            .await;
        created.ok()
    })
    .await;
    assert!(stored.metadata.uid.is_some());

    let _operator = Operator::start(&ns.name, "auren-operator", "crd-upgrade-op");
    let st = ns
        .wait_status(NAME, "InvalidSpec from the operator", 60, |s| {
            s.phase == Some(Phase::InvalidSpec)
        })
        .await;
    let message = st.message.unwrap_or_default();
    assert!(message.contains("KAFKA_TOPIC"), "{message}");
    assert!(
        st.stable.is_none() && st.candidate.is_none(),
        "nothing rolled out"
    );

    kubectl(
        &["apply", "--server-side", "--force-conflicts", "-f", CRD],
        None,
    );
    let crd = crds.get(name).await.unwrap();
    let today: Value = serde_yaml::from_str(&std::fs::read_to_string(CRD).unwrap()).unwrap();
    assert!(nodes_with_rules(&today) > 0);
    assert_eq!(
        nodes_with_rules(&crd),
        nodes_with_rules(&today),
        "the rules are back in the CRD"
    );
    let mut second = stale_spec();
    second.metadata.name = Some("second".into());
    let refused = wait_for("the rules to take effect again", 30, || async {
        match ns.runtimes().create(&PostParams::default(), &second).await {
            Err(kube::Error::Api(e)) if e.code == 422 => Some(e.message),
            Ok(_) => {
                let _ = ns.runtimes().delete("second", &Default::default()).await;
                None
            }
            Err(_) => None,
        }
    })
    .await;
    assert!(refused.contains("config: the operator sets"), "{refused}");
    let kept = ns.runtimes().get(NAME).await.unwrap();
    assert_eq!(
        kept.metadata.uid, stored.metadata.uid,
        "the stored object is kept"
    );
    let fix = json!({"spec": {"config": null}});
    ns.runtimes()
        .patch(NAME, &PatchParams::default(), &Patch::Merge(&fix))
        .await
        .expect("the fixed spec is accepted");
}
