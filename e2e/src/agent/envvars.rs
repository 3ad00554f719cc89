//! Container environment resolution (pure; Secrets and ConfigMaps are fetched
//! beforehand into [`EnvSources`]).
//!
//! Order, later wins: `POD_IP`, `POD_NAME`, `POD_NAMESPACE`, `NODE_NAME`,
//! `AUREN_RELEASE` (image tag), the image rule's env, `envFrom`, `env`
//! (with `$(VAR)` expansion). Finally `API_HOST` is forced to the pod IP so a
//! process always binds its own loopback address.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, ObjectFieldSelector, Pod};

use super::images::ResolvedImage;

/// Data of the Secrets and ConfigMaps a container references, by name.
#[derive(Debug, Clone, Default)]
pub struct EnvSources {
    pub secrets: BTreeMap<String, BTreeMap<String, String>>,
    pub config_maps: BTreeMap<String, BTreeMap<String, String>>,
}

/// A reference that cannot be resolved (container waits with CreateContainerConfigError).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EnvError(pub String);

/// Names of the Secrets and ConfigMaps `container` references: (secrets, config maps).
pub fn referenced(container: &Container) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut secrets = BTreeSet::new();
    let mut maps = BTreeSet::new();
    for e in container.env.iter().flatten() {
        let Some(from) = &e.value_from else { continue };
        if let Some(s) = &from.secret_key_ref {
            secrets.insert(s.name.clone());
        }
        if let Some(c) = &from.config_map_key_ref {
            maps.insert(c.name.clone());
        }
    }
    for f in container.env_from.iter().flatten() {
        if let Some(s) = &f.secret_ref {
            secrets.insert(s.name.clone());
        }
        if let Some(c) = &f.config_map_ref {
            maps.insert(c.name.clone());
        }
    }
    (secrets, maps)
}

/// Identity of the pod being started.
#[derive(Debug, Clone, Copy)]
pub struct PodIdentity<'a> {
    pub pod: &'a Pod,
    pub pod_ip: &'a str,
    pub host_ip: &'a str,
    pub node_name: &'a str,
}

/// The full environment of `container`.
pub fn resolve(
    id: PodIdentity<'_>,
    container: &Container,
    image: &ResolvedImage,
    sources: &EnvSources,
) -> Result<BTreeMap<String, String>, EnvError> {
    let mut env = BTreeMap::new();
    env.insert("POD_IP".to_owned(), id.pod_ip.to_owned());
    env.insert(
        "POD_NAME".to_owned(),
        id.pod.metadata.name.clone().unwrap_or_default(),
    );
    env.insert(
        "POD_NAMESPACE".to_owned(),
        id.pod.metadata.namespace.clone().unwrap_or_default(),
    );
    env.insert("NODE_NAME".to_owned(), id.node_name.to_owned());
    if let Some(tag) = &image.tag {
        env.insert("AUREN_RELEASE".to_owned(), tag.clone());
    }
    env.extend(image.env.clone());
    apply_env_from(&mut env, container, sources)?;
    for var in container.env.iter().flatten() {
        let value = match &var.value_from {
            None => Some(expand(var.value.as_deref().unwrap_or(""), &env)),
            Some(from) => value_from(id, from, sources)?,
        };
        if let Some(v) = value {
            env.insert(var.name.clone(), v);
        }
    }
    env.insert("API_HOST".to_owned(), id.pod_ip.to_owned());
    Ok(env)
}

fn apply_env_from(
    env: &mut BTreeMap<String, String>,
    container: &Container,
    sources: &EnvSources,
) -> Result<(), EnvError> {
    for f in container.env_from.iter().flatten() {
        let prefix = f.prefix.clone().unwrap_or_default();
        let (data, name, optional) = if let Some(s) = &f.secret_ref {
            (
                sources.secrets.get(&s.name),
                &s.name,
                s.optional == Some(true),
            )
        } else if let Some(c) = &f.config_map_ref {
            (
                sources.config_maps.get(&c.name),
                &c.name,
                c.optional == Some(true),
            )
        } else {
            continue;
        };
        match data {
            Some(d) => env.extend(d.iter().map(|(k, v)| (format!("{prefix}{k}"), v.clone()))),
            None if optional => {}
            None => return Err(EnvError(format!("envFrom source {name} not found"))),
        }
    }
    Ok(())
}

fn value_from(
    id: PodIdentity<'_>,
    from: &k8s_openapi::api::core::v1::EnvVarSource,
    sources: &EnvSources,
) -> Result<Option<String>, EnvError> {
    if let Some(f) = &from.field_ref {
        return field(id, f).map(Some);
    }
    if let Some(s) = &from.secret_key_ref {
        return lookup(&sources.secrets, &s.name, &s.key, s.optional, "secret");
    }
    if let Some(c) = &from.config_map_key_ref {
        return lookup(
            &sources.config_maps,
            &c.name,
            &c.key,
            c.optional,
            "configmap",
        );
    }
    Ok(None)
}

fn lookup(
    all: &BTreeMap<String, BTreeMap<String, String>>,
    name: &str,
    key: &str,
    optional: Option<bool>,
    kind: &str,
) -> Result<Option<String>, EnvError> {
    match all.get(name).and_then(|d| d.get(key)) {
        Some(v) => Ok(Some(v.clone())),
        None if optional == Some(true) => Ok(None),
        None => Err(EnvError(format!("{kind} {name} has no key {key}"))),
    }
}

fn field(id: PodIdentity<'_>, f: &ObjectFieldSelector) -> Result<String, EnvError> {
    let meta = &id.pod.metadata;
    let path = f.field_path.as_str();
    let label = |map: &Option<BTreeMap<String, String>>, prefix: &str| {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.as_ref()?.get(key).cloned().unwrap_or_default())
    };
    let value = match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "status.podIP" => Some(id.pod_ip.to_owned()),
        "status.hostIP" => Some(id.host_ip.to_owned()),
        "spec.nodeName" => Some(id.node_name.to_owned()),
        "spec.serviceAccountName" => id
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone()),
        _ => label(&meta.labels, "metadata.labels['")
            .or_else(|| label(&meta.annotations, "metadata.annotations['")),
    };
    value.ok_or_else(|| EnvError(format!("unsupported fieldRef {path}")))
}

/// Kubernetes `$(VAR)` expansion: known vars are replaced, `$$` escapes, unknown stay as is.
pub fn expand(s: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some((name, tail)) = after.strip_prefix('(').and_then(|a| a.split_once(')')) {
            match env.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p1", "namespace": "ns", "labels": {"app": "web"}},
            "spec": {"containers": []}
        }))
        .unwrap()
    }

    fn container(env: serde_json::Value) -> Container {
        serde_json::from_value(json!({"name": "c", "env": env})).unwrap()
    }

    fn image() -> ResolvedImage {
        ResolvedImage {
            entrypoint: vec![],
            args: vec![],
            env: BTreeMap::new(),
            tag: Some("1.2".into()),
        }
    }

    fn id(pod: &Pod) -> PodIdentity<'_> {
        PodIdentity {
            pod,
            pod_ip: "127.0.1.3",
            host_ip: "127.0.0.1",
            node_name: "n1",
        }
    }

    fn sources() -> EnvSources {
        let mut s = EnvSources::default();
        s.secrets.insert(
            "db".into(),
            BTreeMap::from([("pw".into(), "hunter2".into())]),
        );
        s.config_maps.insert(
            "cfg".into(),
            BTreeMap::from([("mode".into(), "fast".into())]),
        );
        s
    }

    #[test]
    fn resolves_field_secret_and_configmap_refs() {
        let p = pod();
        let c = container(json!([
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
            {"name": "URL", "value": "http://$(IP):80/$(NOPE)$$"},
            {"name": "API_HOST", "value": "0.0.0.0"}
        ]));
        let env = resolve(id(&p), &c, &image(), &sources()).unwrap();
        assert_eq!(env["NAME"], "p1");
        assert_eq!(env["NS"], "ns");
        assert_eq!(env["IP"], "127.0.1.3");
        assert_eq!(env["APP"], "web");
        assert_eq!(env["PW"], "hunter2");
        assert_eq!(env["MODE"], "fast");
        assert_eq!(env["URL"], "http://127.0.1.3:80/$(NOPE)$");
        assert_eq!(env["AUREN_RELEASE"], "1.2");
        assert_eq!(env["API_HOST"], "127.0.1.3");
    }

    #[test]
    fn pod_env_overrides_release_tag() {
        let p = pod();
        let c = container(json!([{"name": "AUREN_RELEASE", "value": "custom"}]));
        assert_eq!(
            resolve(id(&p), &c, &image(), &sources()).unwrap()["AUREN_RELEASE"],
            "custom"
        );
    }

    #[test]
    fn missing_refs_fail_unless_optional() {
        let p = pod();
        let c = container(
            json!([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "db", "key": "nope"}}}]),
        );
        assert!(resolve(id(&p), &c, &image(), &sources()).is_err());
        let c = container(
            json!([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "zz", "key": "k", "optional": true}}}]),
        );
        assert!(
            !resolve(id(&p), &c, &image(), &sources())
                .unwrap()
                .contains_key("X")
        );
    }

    #[test]
    fn env_from_with_prefix_and_referenced_names() {
        let p = pod();
        let c: Container = serde_json::from_value(json!({
            "name": "c",
            "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}, {"secretRef": {"name": "db"}}]
        }))
        .unwrap();
        let env = resolve(id(&p), &c, &image(), &sources()).unwrap();
        assert_eq!(env["CFG_mode"], "fast");
        assert_eq!(env["pw"], "hunter2");
        let (s, m) = referenced(&c);
        assert!(s.contains("db") && m.contains("cfg"));
    }
}
