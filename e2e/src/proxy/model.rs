//! Desired proxy listeners from Services and EndpointSlices (pure).
//!
//! Each ClusterIP Service (not headless) gets one loopback address from
//! 127.0.2.0/24 (stable while the Service exists); each TCP Service port listens
//! on `<that address>:<service port>` and forwards to the ready endpoints of the
//! Service's EndpointSlices (label `kubernetes.io/service-name`; an endpoint
//! whose `conditions.ready` is false is skipped, unset counts as ready).
//!
//! Why EndpointSlices and not core/v1 Endpoints: the apiserver rejects loopback
//! addresses in Endpoints ("may not be in the loopback range"), so with pods on
//! 127.0.1.x the endpoints controller can never write them; the v1.20
//! `discovery.k8s.io/v1beta1` EndpointSlices accept them.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Map, Value};

/// One TCP port of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// Port name, or the port number as text when unnamed (key in services.json).
    pub key: String,
    pub name: Option<String>,
    pub port: u16,
}

/// `namespace/name` of an object.
pub fn object_key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// The proxied ports of a Service; empty for headless, ExternalName or non-TCP.
pub fn service_ports(svc: &Service) -> Vec<ServicePort> {
    let Some(spec) = &svc.spec else {
        return Vec::new();
    };
    if spec.type_.as_deref() == Some("ExternalName") || spec.cluster_ip.as_deref() == Some("None") {
        return Vec::new();
    }
    spec.ports
        .iter()
        .flatten()
        .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
        .filter_map(|p| {
            let port = u16::try_from(p.port).ok()?;
            let name = p.name.clone().filter(|n| !n.is_empty());
            Some(ServicePort {
                key: name.clone().unwrap_or_else(|| port.to_string()),
                name,
                port,
            })
        })
        .collect()
}

/// Label linking an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// `namespace/service` an EndpointSlice belongs to, if labelled.
pub fn slice_service_key(slice: &EndpointSlice) -> Option<String> {
    let svc = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some(format!(
        "{}/{svc}",
        slice.metadata.namespace.as_deref().unwrap_or_default()
    ))
}

/// Reads a `discovery.k8s.io/v1beta1` EndpointSlice as the v1 type: the fields
/// used here are the same; v1beta1-only ones (topology) are ignored.
pub fn slice_from_v1beta1(mut value: Value) -> Result<EndpointSlice, serde_json::Error> {
    if let Some(obj) = value.as_object_mut() {
        obj.insert(
            "apiVersion".to_owned(),
            Value::String("discovery.k8s.io/v1".to_owned()),
        );
    }
    serde_json::from_value(value)
}

/// Ready backends of the Service port named `port_name` (None/"" = unnamed).
pub fn ready_backends<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    port_name: Option<&str>,
) -> Vec<SocketAddr> {
    let wanted = port_name.unwrap_or("");
    let mut out = Vec::new();
    for slice in slices {
        let port = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or("") == wanted)
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok());
        let Some(port) = port else { continue };
        let ready = slice
            .endpoints
            .iter()
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false));
        for ip in ready.flat_map(|e| e.addresses.iter()) {
            if let Ok(ip) = ip.parse::<Ipv4Addr>() {
                out.push(SocketAddr::V4(SocketAddrV4::new(ip, port)));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// services.json: `{"namespace/name": {"<port name or number>": "127.0.2.5:8000"}}`.
pub fn services_json(listeners: &BTreeMap<(String, String), SocketAddr>) -> Value {
    let mut root = Map::new();
    for ((svc, port), addr) in listeners {
        let entry = root
            .entry(svc.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = entry {
            m.insert(port.clone(), Value::String(addr.to_string()));
        }
    }
    Value::Object(root)
}

/// Round-robin choice: the backend for the `n`-th connection.
pub fn pick(backends: &[SocketAddr], n: usize) -> Option<SocketAddr> {
    (!backends.is_empty()).then(|| backends[n % backends.len()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn ports_skip_headless_and_udp() {
        let s = svc(
            json!({"metadata": {"name": "a", "namespace": "n"}, "spec": {"ports": [
            {"port": 80, "name": "http"}, {"port": 53, "protocol": "UDP"}, {"port": 9000}]}}),
        );
        let p = service_ports(&s);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].key, "http");
        assert_eq!(p[1].key, "9000");
        assert_eq!(p[1].name, None);
        let h = svc(json!({"spec": {"clusterIP": "None", "ports": [{"port": 80}]}}));
        assert!(service_ports(&h).is_empty());
    }

    fn slice(v: Value) -> EndpointSlice {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn backends_only_ready_endpoints_of_matching_port() {
        let a = slice(json!({
            "metadata": {"namespace": "n", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["127.0.1.2"], "conditions": {"ready": true}},
                {"addresses": ["127.0.1.3"], "conditions": {"ready": false}},
                {"addresses": ["127.0.1.1"]}
            ],
            "ports": [{"name": "http", "port": 8080}, {"name": "admin", "port": 9090}]
        }));
        let b = slice(json!({"addressType": "IPv4",
            "endpoints": [{"addresses": ["127.0.1.9"], "conditions": {"ready": true}}],
            "ports": [{"name": "http", "port": 8081}]}));
        assert_eq!(slice_service_key(&a).as_deref(), Some("n/web"));
        assert_eq!(slice_service_key(&b), None);
        let got = ready_backends([&a, &b], Some("http"));
        let want: Vec<SocketAddr> = ["127.0.1.1:8080", "127.0.1.2:8080", "127.0.1.9:8081"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(got, want);
        assert!(ready_backends([&a], Some("other")).is_empty());
        assert!(ready_backends([], None).is_empty());
    }

    #[test]
    fn reads_v1beta1_slices() {
        let s = slice_from_v1beta1(json!({
            "apiVersion": "discovery.k8s.io/v1beta1", "kind": "EndpointSlice",
            "metadata": {"name": "a"}, "addressType": "IPv4",
            "endpoints": [{"addresses": ["127.0.1.1"], "topology": {"kubernetes.io/hostname": "n"}}],
            "ports": [{"name": "", "port": 80}]
        }))
        .unwrap();
        assert_eq!(
            ready_backends([&s], None),
            vec!["127.0.1.1:80".parse().unwrap()]
        );
    }

    #[test]
    fn json_groups_ports_by_service() {
        let mut l = BTreeMap::new();
        l.insert(
            ("n/a".to_owned(), "http".to_owned()),
            "127.0.2.1:80".parse().unwrap(),
        );
        l.insert(
            ("n/a".to_owned(), "9000".to_owned()),
            "127.0.2.1:9000".parse().unwrap(),
        );
        let v = services_json(&l);
        assert_eq!(v["n/a"]["http"], "127.0.2.1:80");
        assert_eq!(v["n/a"]["9000"], "127.0.2.1:9000");
    }

    #[test]
    fn round_robin() {
        let b: Vec<SocketAddr> = vec![
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        ];
        assert_eq!(pick(&b, 0), Some(b[0]));
        assert_eq!(pick(&b, 3), Some(b[1]));
        assert_eq!(pick(&[], 3), None);
    }
}
