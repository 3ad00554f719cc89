#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test-only code
//! The pods the operator builds pass Pod Security "restricted" (Kubernetes Pod Security
//! Standards, v1.33 "restricted" level, which includes "baseline"). [`restricted_violations`]
//! checks each control on a pod template; it is itself tested on pods that break each one.

use auren_operator::api::{AurenRuntime, AurenRuntimeSpec, RevisionRef};
use auren_operator::resources::{Role, deployment};
use auren_operator::rollout::ReleasePlan;
use k8s_openapi::api::core::v1::{
    Capabilities, Container, PodSecurityContext, PodSpec, SELinuxOptions, SeccompProfile,
    SecurityContext,
};
use serde_json::json;

/// Sysctls "baseline" (so "restricted") allows.
const SAFE_SYSCTLS: [&str; 9] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
];

/// SELinux types "baseline" allows (besides none).
const SELINUX_TYPES: [&str; 3] = ["container_t", "container_init_t", "container_kvm_t"];

/// Volume types "restricted" allows.
const ALLOWED_VOLUMES: [&str; 8] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// Every rule of the "restricted" profile the pod breaks, one line each (empty: it passes).
fn restricted_violations(pod: &PodSpec) -> Vec<String> {
    let mut out = Vec::new();
    host_namespaces(pod, &mut out);
    volumes(pod, &mut out);
    let pod_ctx = pod.security_context.clone().unwrap_or_default();
    if pod_ctx.run_as_non_root == Some(false) {
        out.push("pod: runAsNonRoot is false".into());
    }
    if pod_ctx.run_as_user == Some(0) {
        out.push("pod: runAsUser is 0".into());
    }
    seccomp("pod", pod_ctx.seccomp_profile.as_ref(), &mut out);
    selinux("pod", pod_ctx.se_linux_options.as_ref(), &mut out);
    for sysctl in pod_ctx.sysctls.iter().flatten() {
        if !SAFE_SYSCTLS.contains(&sysctl.name.as_str()) {
            out.push(format!("pod: unsafe sysctl {}", sysctl.name));
        }
    }
    let host_process = pod_ctx
        .windows_options
        .as_ref()
        .and_then(|w| w.host_process);
    if host_process == Some(true) {
        out.push("pod: windows hostProcess".into());
    }
    let containers = pod.containers.iter();
    let init = pod.init_containers.iter().flatten();
    for c in containers.chain(init) {
        container(c, &pod_ctx, &mut out);
    }
    out
}

fn host_namespaces(pod: &PodSpec, out: &mut Vec<String>) {
    let shared = [
        ("hostNetwork", pod.host_network),
        ("hostPID", pod.host_pid),
        ("hostIPC", pod.host_ipc),
    ];
    for (name, value) in shared {
        if value == Some(true) {
            out.push(format!("pod: {name} is true"));
        }
    }
}

fn volumes(pod: &PodSpec, out: &mut Vec<String>) {
    for volume in pod.volumes.iter().flatten() {
        let value = serde_json::to_value(volume).unwrap();
        let kinds = value.as_object().unwrap().keys().filter(|k| *k != "name");
        for kind in kinds {
            if !ALLOWED_VOLUMES.contains(&kind.as_str()) {
                out.push(format!(
                    "volume {}: type {kind} is not allowed",
                    volume.name
                ));
            }
        }
    }
}

/// Set and RuntimeDefault/Localhost; unset is allowed only when the pod level sets it.
fn seccomp(at: &str, profile: Option<&SeccompProfile>, out: &mut Vec<String>) {
    if let Some(p) = profile
        && !matches!(p.type_.as_str(), "RuntimeDefault" | "Localhost")
    {
        out.push(format!("{at}: seccompProfile {}", p.type_));
    }
}

/// Only the allowed types, and no user or role.
fn selinux(at: &str, options: Option<&SELinuxOptions>, out: &mut Vec<String>) {
    let Some(o) = options else {
        return;
    };
    if o.type_
        .as_deref()
        .is_some_and(|t| !SELINUX_TYPES.contains(&t))
    {
        out.push(format!("{at}: seLinuxOptions type {:?}", o.type_));
    }
    if o.user.is_some() || o.role.is_some() {
        out.push(format!("{at}: seLinuxOptions user or role"));
    }
}

fn container(c: &Container, pod: &PodSecurityContext, out: &mut Vec<String>) {
    let at = format!("container {}", c.name);
    let ctx = c.security_context.clone().unwrap_or_default();
    if ctx.privileged == Some(true) {
        out.push(format!("{at}: privileged"));
    }
    if ctx.proc_mount.as_deref().is_some_and(|m| m != "Default") {
        out.push(format!("{at}: procMount {:?}", ctx.proc_mount));
    }
    if ctx.windows_options.as_ref().and_then(|w| w.host_process) == Some(true) {
        out.push(format!("{at}: windows hostProcess"));
    }
    let apparmor = ctx.app_armor_profile.as_ref().map(|p| p.type_.as_str());
    if apparmor.is_some_and(|t| !matches!(t, "RuntimeDefault" | "Localhost")) {
        out.push(format!("{at}: appArmorProfile {apparmor:?}"));
    }
    selinux(&at, ctx.se_linux_options.as_ref(), out);
    if ctx.allow_privilege_escalation != Some(false) {
        out.push(format!("{at}: allowPrivilegeEscalation is not false"));
    }
    let non_root = ctx.run_as_non_root.or(pod.run_as_non_root);
    if non_root != Some(true) {
        out.push(format!("{at}: runAsNonRoot is not true"));
    }
    if ctx.run_as_user == Some(0) {
        out.push(format!("{at}: runAsUser is 0"));
    }
    seccomp(&at, ctx.seccomp_profile.as_ref(), out);
    if ctx.seccomp_profile.is_none() && pod.seccomp_profile.is_none() {
        out.push(format!("{at}: no seccompProfile at pod or container level"));
    }
    capabilities(&at, ctx.capabilities.as_ref(), out);
    let host_ports = c.ports.iter().flatten().filter_map(|p| p.host_port);
    for port in host_ports.filter(|p| *p != 0) {
        out.push(format!("{at}: hostPort {port}"));
    }
}

/// Drop ALL; add nothing but NET_BIND_SERVICE.
fn capabilities(at: &str, caps: Option<&Capabilities>, out: &mut Vec<String>) {
    let drop = caps.and_then(|c| c.drop.as_ref());
    if !drop.is_some_and(|d| d.iter().any(|c| c == "ALL")) {
        out.push(format!("{at}: capabilities do not drop ALL"));
    }
    let added = caps.and_then(|c| c.add.as_ref()).into_iter().flatten();
    for cap in added.filter(|c| *c != "NET_BIND_SERVICE") {
        out.push(format!("{at}: adds capability {cap}"));
    }
}

fn runtime(spec: AurenRuntimeSpec) -> AurenRuntime {
    let mut ar = AurenRuntime::new("wearables", spec);
    ar.metadata.namespace = Some("auren".into());
    ar.metadata.uid = Some("0f1e2d3c".into());
    ar
}

fn pod_of(ar: &AurenRuntime, role: Role) -> PodSpec {
    let release = ReleasePlan {
        revision: RevisionRef {
            hash: "abc123".into(),
            image: ar.spec.image.clone(),
        },
        api_replicas: 2,
        consumer_replicas: 1,
    };
    let d = deployment(ar, &release, role).unwrap();
    d.spec.template.spec.unwrap()
}

fn spec() -> AurenRuntimeSpec {
    let mut spec = AurenRuntimeSpec::with_image("registry.local/auren-runtime:1.0.0");
    spec.connections.webhook_secrets = Some("webhooks".into());
    spec
}

#[test]
fn the_operators_pods_pass_pod_security_restricted() {
    let ar = runtime(spec());
    for role in [Role::Api, Role::Consumer] {
        let pod = pod_of(&ar, role);
        assert_eq!(
            restricted_violations(&pod),
            Vec::<String>::new(),
            "{role:?}"
        );
    }
}

#[test]
fn an_override_that_breaks_the_profile_is_visible() {
    let mut s = spec();
    s.security_context = Some(SecurityContext {
        run_as_user: Some(0),
        allow_privilege_escalation: Some(true),
        ..Default::default()
    });
    let pod = pod_of(&runtime(s), Role::Api);
    let found = restricted_violations(&pod);
    assert!(
        found.iter().any(|v| v.contains("runAsUser is 0")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|v| v.contains("allowPrivilegeEscalation")),
        "{found:?}"
    );
}

/// The checker itself: each rule of the profile, broken one at a time, is reported.
#[test]
fn the_checker_catches_each_restricted_rule() {
    let good = pod_of(&runtime(spec()), Role::Api);
    assert!(restricted_violations(&good).is_empty());
    type Break = fn(&mut PodSpec);
    let cases: Vec<(&str, Break)> = vec![
        ("hostNetwork", |p| p.host_network = Some(true)),
        ("hostPID", |p| p.host_pid = Some(true)),
        ("hostIPC", |p| p.host_ipc = Some(true)),
        ("hostPath", |p| {
            p.volumes = Some(vec![
                serde_json::from_value(json!({"name": "h", "hostPath": {"path": "/"}})).unwrap(),
            ]);
        }),
        ("privileged", |p| {
            p.containers[0]
                .security_context
                .as_mut()
                .unwrap()
                .privileged = Some(true)
        }),
        ("allowPrivilegeEscalation", |p| {
            let c = p.containers[0].security_context.as_mut().unwrap();
            c.allow_privilege_escalation = None;
        }),
        ("runAsNonRoot", |p| {
            p.containers[0]
                .security_context
                .as_mut()
                .unwrap()
                .run_as_non_root = Some(false)
        }),
        ("runAsUser is 0", |p| {
            p.security_context.as_mut().unwrap().run_as_user = Some(0)
        }),
        ("seccompProfile Unconfined", |p| {
            let c = p.containers[0].security_context.as_mut().unwrap();
            c.seccomp_profile.as_mut().unwrap().type_ = "Unconfined".into();
        }),
        ("no seccompProfile", |p| {
            p.containers[0]
                .security_context
                .as_mut()
                .unwrap()
                .seccomp_profile = None;
            p.security_context.as_mut().unwrap().seccomp_profile = None;
        }),
        ("do not drop ALL", |p| {
            let c = p.containers[0].security_context.as_mut().unwrap();
            c.capabilities.as_mut().unwrap().drop = Some(vec!["NET_RAW".into()]);
        }),
        ("adds capability SYS_ADMIN", |p| {
            let c = p.containers[0].security_context.as_mut().unwrap();
            c.capabilities.as_mut().unwrap().add = Some(vec!["SYS_ADMIN".into()]);
        }),
        ("procMount", |p| {
            p.containers[0]
                .security_context
                .as_mut()
                .unwrap()
                .proc_mount = Some("Unmasked".into())
        }),
        ("unsafe sysctl", |p| {
            p.security_context.as_mut().unwrap().sysctls = Some(vec![
                serde_json::from_value(json!({"name": "kernel.msgmax", "value": "1"})).unwrap(),
            ]);
        }),
        ("seLinuxOptions", |p| {
            p.containers[0]
                .security_context
                .as_mut()
                .unwrap()
                .se_linux_options = Some(SELinuxOptions {
                type_: Some("spc_t".into()),
                ..Default::default()
            });
        }),
        ("appArmorProfile", |p| {
            p.containers[0]
                .security_context
                .as_mut()
                .unwrap()
                .app_armor_profile =
                Some(serde_json::from_value(json!({"type": "Unconfined"})).unwrap());
        }),
        ("hostProcess", |p| {
            p.security_context.as_mut().unwrap().windows_options =
                Some(serde_json::from_value(json!({"hostProcess": true})).unwrap());
        }),
        ("hostPort", |p| {
            p.containers[0].ports.as_mut().unwrap()[0].host_port = Some(80)
        }),
    ];
    for (rule, break_it) in cases {
        let mut pod = good.clone();
        break_it(&mut pod);
        let found = restricted_violations(&pod);
        assert!(found.iter().any(|v| v.contains(rule)), "{rule}: {found:?}");
    }
    let mut bind = good.clone();
    let c = bind.containers[0].security_context.as_mut().unwrap();
    c.capabilities.as_mut().unwrap().add = Some(vec!["NET_BIND_SERVICE".into()]);
    assert!(
        restricted_violations(&bind).is_empty(),
        "NET_BIND_SERVICE may be added"
    );
}
