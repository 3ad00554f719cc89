//! The API and consumer Deployments of one revision.

use std::collections::BTreeMap;

use auren_contract::{ConsumerRole, env, paths, run_mode};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, PodReadinessGate,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecretKeySelector,
    SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{AurenRuntime, SecretKeyRef};
use crate::rollout::ReleasePlan;

use super::{
    LABEL_COMPONENT, LABEL_MANAGED_BY, LABEL_PART_OF, LABEL_REVISION, LABEL_ROLE, LABEL_VERSION,
    MANAGER, ResourceError, child_meta, instance_labels,
};

/// Pod condition the operator sets once the pod's `/health` reports every component healthy.
pub const READINESS_GATE: &str = "auren.io/healthy";
/// Where the webhook secrets Secret is mounted.
pub const WEBHOOK_SECRETS_DIR: &str = "/etc/auren/webhook-secrets";
/// Key of the operator-managed admin token Secret.
pub const ADMIN_TOKEN_KEY: &str = "token";
const CONTAINER: &str = "runtime";
const PORT_NAME: &str = "http";
/// The container port of the admin API: declared on the pod, never in a Service.
pub const ADMIN_PORT_NAME: &str = "admin";
/// The non-root user and group the runtime runs as (the image's `nonroot`).
pub const RUNTIME_UID: i64 = 65532;

/// Which workload of a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Api,
    Consumer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Api => "api",
            Role::Consumer => "consumer",
        }
    }

    fn run_mode(self) -> &'static str {
        match self {
            Role::Api => run_mode::API,
            Role::Consumer => run_mode::CONSUMER,
        }
    }
}

/// `<name>-<revision>-<role>`.
pub fn deployment_name(ar: &AurenRuntime, revision: &str, role: Role) -> String {
    format!("{}-{revision}-{}", ar.name_any(), role.as_str())
}

/// Name of the Secret the operator creates when `connections.adminToken` is not set.
pub fn admin_token_secret_name(ar: &AurenRuntime) -> String {
    format!("{}-admin", ar.name_any())
}

/// The admin token in force: the spec's, or the operator-managed Secret.
pub fn admin_token_ref(ar: &AurenRuntime) -> SecretKeyRef {
    let managed = || SecretKeyRef {
        name: admin_token_secret_name(ar),
        key: ADMIN_TOKEN_KEY.into(),
    };
    ar.spec
        .connections
        .admin_token
        .clone()
        .unwrap_or_else(managed)
}

/// Merge patch of `spec.replicas`, for revisions other than the desired one.
pub fn scale_patch(replicas: i32) -> serde_json::Value {
    serde_json::json!({ "spec": { "replicas": replicas } })
}

/// The Deployment of `role` for the desired release (built from the current spec).
pub fn deployment(
    ar: &AurenRuntime,
    release: &ReleasePlan,
    role: Role,
) -> Result<Deployment, ResourceError> {
    let labels = pod_labels(ar, &release.revision.hash, role);
    let mut template_labels = labels.clone();
    template_labels.insert(LABEL_VERSION.into(), version_label(&release.revision.image));
    let replicas = match role {
        Role::Api => release.api_replicas,
        Role::Consumer => release.consumer_replicas,
    };
    let name = deployment_name(ar, &release.revision.hash, role);
    Ok(Deployment {
        metadata: child_meta(ar, name, template_labels.clone())?,
        spec: DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(template_labels),
                    ..Default::default()
                }),
                spec: Some(pod_spec(ar, &release.revision.hash, role)),
            },
            ..Default::default()
        },
        ..Default::default()
    })
}

/// Labels that select one workload of one revision.
fn pod_labels(ar: &AurenRuntime, revision: &str, role: Role) -> BTreeMap<String, String> {
    let mut labels = instance_labels(ar);
    let extra = [
        (LABEL_COMPONENT, role.as_str()),
        (LABEL_MANAGED_BY, MANAGER),
        (LABEL_PART_OF, "auren"),
        (LABEL_REVISION, revision),
        (LABEL_ROLE, role.as_str()),
    ];
    labels.extend(extra.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())));
    labels
}

/// The image tag as a label value (at most 63 characters of `[A-Za-z0-9._-]`).
fn version_label(image: &str) -> String {
    let without_digest = image.split('@').next().unwrap_or(image);
    let tag = without_digest
        .rsplit_once(':')
        .map(|(_, t)| t)
        .filter(|t| !t.contains('/'))
        .unwrap_or("latest");
    let clean: String = tag
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(63)
        .collect();
    clean
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

fn pod_spec(ar: &AurenRuntime, revision: &str, role: Role) -> PodSpec {
    let secrets = ar.spec.connections.webhook_secrets.as_ref();
    let placement = ar.spec.placement.clone().unwrap_or_default();
    PodSpec {
        containers: vec![container(ar, revision, role)],
        security_context: Some(overlay(
            restricted_pod(),
            ar.spec.pod_security_context.as_ref(),
        )),
        node_selector: (!placement.node_selector.is_empty()).then_some(placement.node_selector),
        tolerations: (!placement.tolerations.is_empty()).then_some(placement.tolerations),
        readiness_gates: Some(vec![PodReadinessGate {
            condition_type: READINESS_GATE.into(),
        }]),
        volumes: secrets.map(|name| {
            vec![Volume {
                name: "webhook-secrets".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(name.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            }]
        }),
        ..Default::default()
    }
}

fn container(ar: &AurenRuntime, revision: &str, role: Role) -> Container {
    let spec = &ar.spec;
    let resources = match role {
        Role::Api => spec.api.resources.clone(),
        Role::Consumer => spec.consumer.resources.clone(),
    };
    let mounts = spec.connections.webhook_secrets.as_ref().map(|_| {
        vec![VolumeMount {
            name: "webhook-secrets".into(),
            mount_path: WEBHOOK_SECRETS_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        }]
    });
    Container {
        name: CONTAINER.into(),
        image: Some(spec.image.clone()),
        ports: Some(vec![
            ContainerPort {
                name: Some(PORT_NAME.into()),
                container_port: spec.api.port,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
            ContainerPort {
                name: Some(ADMIN_PORT_NAME.into()),
                container_port: i32::from(auren_contract::ports::ADMIN),
                protocol: Some("TCP".into()),
                ..Default::default()
            },
        ]),
        env: Some(env_vars(ar, revision, role)),
        security_context: Some(overlay(
            restricted_container(),
            spec.security_context.as_ref(),
        )),
        readiness_probe: Some(probe(paths::READINESS, 5, 3)),
        liveness_probe: Some(probe(paths::LIVE, 10, 3)),
        resources,
        volume_mounts: mounts,
        ..Default::default()
    }
}

/// Pod Security "restricted" at pod level: non-root with a numeric uid/gid, seccomp
/// RuntimeDefault.
fn restricted_pod() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUNTIME_UID),
        run_as_group: Some(RUNTIME_UID),
        fs_group: Some(RUNTIME_UID),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..Default::default()
    }
}

/// Pod Security "restricted" at container level. The runtime writes nothing to disk (logs go
/// to stderr, state to Kafka and PostgreSQL), so its root filesystem is read-only.
fn restricted_container() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUNTIME_UID),
        run_as_group: Some(RUNTIME_UID),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..Default::default()
    }
}

fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    }
}

/// `base` with every field that `user` sets replaced by the user's value; nested objects
/// merge the same way, field by field. So `capabilities: {add: [NET_BIND_SERVICE]}` adds one
/// capability and keeps the default `drop: [ALL]`: replacing the whole object would silently
/// give the container every default capability back. Dropping less takes a `drop` of its own.
fn overlay<T: Serialize + DeserializeOwned>(base: T, user: Option<&T>) -> T {
    let Some(user) = user else {
        return base;
    };
    let (Ok(mut merged), Ok(over)) = (serde_json::to_value(&base), serde_json::to_value(user))
    else {
        return base;
    };
    merge_fields(&mut merged, over);
    serde_json::from_value(merged).unwrap_or(base)
}

/// Objects merge key by key (recursively); anything else (lists included) is replaced.
fn merge_fields(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(base), serde_json::Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(existing) => merge_fields(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, over) => *base = over,
    }
}

fn probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(PORT_NAME.into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

/// The contract's variables first, then the release's own `env` and `config`.
fn env_vars(ar: &AurenRuntime, revision: &str, role: Role) -> Vec<EnvVar> {
    let spec = &ar.spec;
    let mut vars = vec![
        literal(env::RUN_MODE, role.run_mode()),
        literal(env::RELEASE, revision),
        literal(env::API_PORT, &spec.api.port.to_string()),
        literal(env::ADMIN_PORT, &auren_contract::ports::ADMIN.to_string()),
        literal(env::KAFKA_TOPIC, &spec.consumer.topic),
        literal(env::KAFKA_GROUP, &spec.consumer.group),
        secret(env::ADMIN_TOKEN, &admin_token_ref(ar)),
    ];
    if let Some(events) = spec.consumer.max_concurrent_events {
        vars.push(literal(env::MAX_CONCURRENT_EVENTS, &events.to_string()));
    }
    if role == Role::Consumer {
        // Always standby at start: a restarted pod never consumes until the operator has
        // confirmed no other release does (see rollout's role switches).
        vars.push(literal(env::CONSUMER_ROLE, ConsumerRole::Standby.as_str()));
    }
    if let Some(brokers) = &spec.connections.kafka_brokers {
        vars.push(literal(env::KAFKA_BROKERS, brokers));
    }
    if let Some(database) = &spec.connections.database_url {
        vars.push(secret(env::DATABASE_URL, database));
    }
    if spec.connections.webhook_secrets.is_some() {
        vars.push(literal(env::WEBHOOK_SECRETS_DIR, WEBHOOK_SECRETS_DIR));
    }
    vars.extend(spec.env.iter().map(|e| literal(&e.name, &e.value)));
    vars.extend(spec.config.iter().map(|(k, v)| literal(k, v)));
    vars
}

fn literal(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn secret(name: &str, reference: &SecretKeyRef) -> EnvVar {
    let selector = SecretKeySelector {
        name: reference.name.clone(),
        key: reference.key.clone(),
        optional: None,
    };
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(selector),
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests;
