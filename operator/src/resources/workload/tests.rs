use super::*;
use crate::api::{EnvVar as SpecEnv, RevisionRef};
use crate::resources::fixtures::runtime;

fn release() -> ReleasePlan {
    ReleasePlan {
        revision: RevisionRef {
            hash: "abc123".into(),
            image: "registry.local/auren-runtime:1.0.0".into(),
        },
        api_replicas: 3,
        consumer_replicas: 1,
    }
}

fn env_of(deployment: &Deployment) -> BTreeMap<String, EnvVar> {
    let pod = deployment.spec.template.spec.as_ref().unwrap();
    pod.containers[0]
        .env
        .clone()
        .unwrap()
        .into_iter()
        .map(|e| (e.name.clone(), e))
        .collect()
}

#[test]
fn api_deployment_labels_selector_gate_probes() {
    let d = deployment(&runtime(), &release(), Role::Api).unwrap();
    assert_eq!(d.metadata.name.as_deref(), Some("wearables-abc123-api"));
    assert_eq!(d.metadata.namespace.as_deref(), Some("auren"));
    assert_eq!(
        d.metadata.owner_references.as_ref().unwrap()[0].name,
        "wearables"
    );
    let spec = &d.spec;
    assert_eq!(spec.replicas, Some(3));
    let selector = spec.selector.match_labels.clone().unwrap();
    assert_eq!(
        selector.get(LABEL_REVISION).map(String::as_str),
        Some("abc123")
    );
    assert_eq!(selector.get(LABEL_ROLE).map(String::as_str), Some("api"));
    assert!(
        !selector.contains_key(LABEL_VERSION),
        "the selector is immutable: no version in it"
    );
    let template_labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    assert!(
        selector
            .iter()
            .all(|(k, v)| template_labels.get(k) == Some(v)),
        "the selector matches the pods"
    );
    assert_eq!(
        template_labels.get(LABEL_VERSION).map(String::as_str),
        Some("1.0.0")
    );
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(
        pod.readiness_gates.as_ref().unwrap()[0].condition_type,
        READINESS_GATE
    );
    let container = &pod.containers[0];
    let readiness = container
        .readiness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(readiness.path.as_deref(), Some("/readiness"));
    let live = container
        .liveness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(live.path.as_deref(), Some("/live"));
    let port = &container.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.container_port, port.protocol.as_deref()),
        (8000, Some("TCP"))
    );
}

#[test]
fn the_batch_size_reaches_the_pods_only_when_set() {
    let mut ar = runtime();
    let batch = |ar: &AurenRuntime| {
        let d = deployment(ar, &release(), Role::Consumer).unwrap();
        env_of(&d)
            .get(env::MAX_CONCURRENT_EVENTS)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(batch(&ar), None, "unset: the runtime's own default");
    ar.spec.consumer.max_concurrent_events = Some(200);
    assert_eq!(batch(&ar).as_deref(), Some("200"));
}

#[test]
fn placement_reaches_every_pod() {
    let mut ar = runtime();
    let toleration = k8s_openapi::api::core::v1::Toleration {
        key: Some("auren.dev/fake-node".into()),
        operator: Some("Exists".into()),
        effect: Some("NoSchedule".into()),
        ..Default::default()
    };
    let mut placement = crate::api::PlacementSpec::default();
    placement
        .node_selector
        .insert("kubernetes.io/hostname".into(), "auren-scale-1".into());
    placement.tolerations.push(toleration.clone());
    ar.spec.placement = Some(placement);
    for role in [Role::Api, Role::Consumer] {
        let d = deployment(&ar, &release(), role).unwrap();
        let pod = d.spec.template.spec.unwrap();
        assert_eq!(
            pod.node_selector.unwrap()["kubernetes.io/hostname"],
            "auren-scale-1"
        );
        assert_eq!(pod.tolerations.unwrap(), vec![toleration.clone()]);
    }
    let plain = deployment(&runtime(), &release(), Role::Api).unwrap();
    let pod = plain.spec.template.spec.unwrap();
    assert!(pod.node_selector.is_none() && pod.tolerations.is_none());
}

#[test]
fn env_follows_the_contract() {
    let mut ar = runtime();
    ar.spec.connections.database_url = Some(SecretKeyRef {
        name: "db".into(),
        key: "url".into(),
    });
    ar.spec.connections.webhook_secrets = Some("webhooks".into());
    ar.spec.connections.kafka_brokers = Some("kafka:9092".into());
    ar.spec.env.push(SpecEnv {
        name: "LOG_FORMAT".into(),
        value: "text".into(),
    });
    let api = env_of(&deployment(&ar, &release(), Role::Api).unwrap());
    let consumer = env_of(&deployment(&ar, &release(), Role::Consumer).unwrap());
    let value =
        |vars: &BTreeMap<String, EnvVar>, name: &str| vars.get(name).and_then(|e| e.value.clone());
    assert_eq!(value(&api, "RUN_MODE").as_deref(), Some("api"));
    assert_eq!(value(&consumer, "RUN_MODE").as_deref(), Some("consumer"));
    assert_eq!(value(&api, "AUREN_RELEASE").as_deref(), Some("abc123"));
    assert_eq!(
        value(&consumer, "CONSUMER_ROLE").as_deref(),
        Some("standby")
    );
    assert!(!api.contains_key("CONSUMER_ROLE"));
    assert_eq!(value(&api, "KAFKA_BROKERS").as_deref(), Some("kafka:9092"));
    assert_eq!(
        value(&api, "WEBHOOK_SECRETS_DIR").as_deref(),
        Some(WEBHOOK_SECRETS_DIR)
    );
    assert_eq!(value(&api, "LOG_FORMAT").as_deref(), Some("text"));
    let db = api["DATABASE_URL"]
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!((db.name.as_str(), db.key.as_str()), ("db", "url"));
    let token = api["ADMIN_TOKEN"]
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        (token.name.as_str(), token.key.as_str()),
        ("wearables-admin", "token")
    );
    let consumer_deployment = deployment(&ar, &release(), Role::Consumer).unwrap();
    assert_eq!(consumer_deployment.spec.replicas, Some(1));
    let pod = consumer_deployment.spec.template.spec.unwrap();
    assert_eq!(
        pod.volumes.unwrap()[0]
            .secret
            .as_ref()
            .unwrap()
            .secret_name
            .as_deref(),
        Some("webhooks")
    );
}

fn pod_of(deployment: Deployment) -> PodSpec {
    deployment.spec.template.spec.unwrap()
}

#[test]
fn pods_are_restricted_by_default() {
    for role in [Role::Api, Role::Consumer] {
        let pod = pod_of(deployment(&runtime(), &release(), role).unwrap());
        let p = pod.security_context.as_ref().unwrap();
        assert_eq!(p.run_as_non_root, Some(true));
        assert_eq!((p.run_as_user, p.run_as_group), (Some(65532), Some(65532)));
        assert_eq!(p.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        let c = pod.containers[0].security_context.as_ref().unwrap();
        assert_eq!(c.run_as_non_root, Some(true));
        assert_eq!((c.run_as_user, c.run_as_group), (Some(65532), Some(65532)));
        assert_eq!(c.read_only_root_filesystem, Some(true));
        assert_eq!(c.allow_privilege_escalation, Some(false));
        assert_eq!(c.privileged, Some(false));
        let caps = c.capabilities.as_ref().unwrap();
        assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_owned()][..]));
        assert_eq!(caps.add, None);
        assert_eq!(c.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        assert!(pod.host_network.is_none() && pod.host_pid.is_none() && pod.host_ipc.is_none());
    }
}

#[test]
fn the_spec_overrides_security_settings_field_by_field() {
    let mut ar = runtime();
    ar.spec.security_context = Some(SecurityContext {
        run_as_user: Some(1000),
        ..Default::default()
    });
    ar.spec.pod_security_context = Some(PodSecurityContext {
        fs_group: Some(2000),
        ..Default::default()
    });
    let pod = pod_of(deployment(&ar, &release(), Role::Api).unwrap());
    let c = pod.containers[0].security_context.as_ref().unwrap();
    assert_eq!(c.run_as_user, Some(1000), "the spec's field wins");
    assert_eq!(
        c.read_only_root_filesystem,
        Some(true),
        "the other defaults stay"
    );
    assert_eq!(c.allow_privilege_escalation, Some(false));
    let p = pod.security_context.as_ref().unwrap();
    assert_eq!((p.fs_group, p.run_as_user), (Some(2000), Some(65532)));
}

#[test]
fn added_capabilities_keep_drop_all_unless_the_spec_drops_on_purpose() {
    let caps = |user: Capabilities| {
        let mut ar = runtime();
        ar.spec.security_context = Some(SecurityContext {
            capabilities: Some(user),
            ..Default::default()
        });
        let pod = pod_of(deployment(&ar, &release(), Role::Api).unwrap());
        let c = pod.containers[0].security_context.clone().unwrap();
        assert_eq!(
            c.read_only_root_filesystem,
            Some(true),
            "other defaults stay"
        );
        c.capabilities.unwrap()
    };
    let added = caps(Capabilities {
        add: Some(vec!["NET_BIND_SERVICE".into()]),
        drop: None,
    });
    assert_eq!(added.add, Some(vec!["NET_BIND_SERVICE".to_owned()]));
    assert_eq!(added.drop, Some(vec!["ALL".to_owned()]), "drop ALL kept");
    let on_purpose = caps(Capabilities {
        add: Some(vec!["NET_ADMIN".into()]),
        drop: Some(vec![]),
    });
    assert_eq!(on_purpose.drop, Some(vec![]), "the spec's own drop wins");
    let mut ar = runtime();
    ar.spec.security_context = Some(SecurityContext {
        seccomp_profile: Some(SeccompProfile {
            type_: "Localhost".into(),
            localhost_profile: Some("auren.json".into()),
        }),
        ..Default::default()
    });
    let pod = pod_of(deployment(&ar, &release(), Role::Api).unwrap());
    let c = pod.containers[0].security_context.clone().unwrap();
    let profile = c.seccomp_profile.unwrap();
    assert_eq!(
        (profile.type_.as_str(), profile.localhost_profile.as_deref()),
        ("Localhost", Some("auren.json"))
    );
}

#[test]
fn the_admin_api_has_its_own_port() {
    let d = deployment(&runtime(), &release(), Role::Consumer).unwrap();
    let env = env_of(&d);
    assert_eq!(env["ADMIN_PORT"].value.as_deref(), Some("8001"));
    let pod = pod_of(d);
    let ports = pod.containers[0].ports.clone().unwrap();
    let admin = ports
        .iter()
        .find(|p| p.name.as_deref() == Some(ADMIN_PORT_NAME))
        .unwrap();
    assert_eq!(admin.container_port, 8001);
}

#[test]
fn version_label_is_a_valid_label_value() {
    let cases = [
        ("registry.local/auren-runtime:1.0.0", "1.0.0"),
        ("registry.local:5000/auren-runtime", "latest"),
        ("auren@sha256:abcd", "latest"),
        ("auren:-weird-", "weird"),
    ];
    for (image, label) in cases {
        assert_eq!(version_label(image), label, "{image}");
    }
    assert_eq!(scale_patch(0), serde_json::json!({"spec": {"replicas": 0}}));
}
