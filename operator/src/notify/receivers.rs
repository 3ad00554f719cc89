//! Where notifications may go. A receiver's URL comes from a Secret that anyone allowed to
//! create an AurenRuntime and a Secret controls, and the operator POSTs from inside the
//! cluster: unchecked, that is a request forger aimed at the cloud's metadata endpoint, a
//! sidecar's admin port on loopback or the API server. So a URL must use an allowed scheme,
//! name an allowed host (when the operator is given a list), and every address its host
//! resolves to must lie outside the refused networks and not be the API server. The caller
//! connects to exactly the addresses checked here (no second lookup a DNS answer could change
//! in between), and never follows a redirect.
//!
//! Pure: the caller resolves the host; this module only judges.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// Networks refused unless the operator is told otherwise: link-local (cloud metadata
/// endpoints such as 169.254.169.254), loopback (the operator pod's own ports and its
/// sidecars'), and the unspecified addresses (which reach loopback).
pub const DEFAULT_REFUSED_NETWORKS: &str =
    "169.254.0.0/16,fe80::/10,127.0.0.0/8,::1/128,0.0.0.0/8,::/128";

/// Names under which a pod reaches the Kubernetes API server (the `kubernetes` Service of
/// the `default` namespace), refused whatever they resolve to.
const API_SERVER_NAMES: [&str; 3] = ["kubernetes", "kubernetes.default", "kubernetes.default.svc"];

/// An IP network, `address/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    base: IpAddr,
    prefix: u8,
}

/// A network that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a network (address/prefix, e.g. 169.254.0.0/16 or fe80::/10)")]
pub struct BadNetwork(String);

impl FromStr for Network {
    type Err = BadNetwork;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadNetwork(s.to_owned());
        let (base, prefix) = s.trim().split_once('/').ok_or_else(bad)?;
        let base: IpAddr = base.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let bits = if base.is_ipv4() { 32 } else { 128 };
        (prefix <= bits)
            .then_some(Network { base, prefix })
            .ok_or_else(bad)
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

impl Network {
    /// Whether `ip` is in this network; an IPv4-mapped IPv6 address counts as its IPv4 one.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.base, ip.to_canonical()) {
            (IpAddr::V4(base), IpAddr::V4(ip)) => {
                same_prefix(base.to_bits().into(), ip.to_bits().into(), self.prefix, 32)
            }
            (IpAddr::V6(base), IpAddr::V6(ip)) => {
                same_prefix(base.to_bits(), ip.to_bits(), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn same_prefix(a: u128, b: u128, prefix: u8, bits: u32) -> bool {
    let host_bits = bits - u32::from(prefix);
    a.checked_shr(host_bits).unwrap_or(0) == b.checked_shr(host_bits).unwrap_or(0)
}

/// Why a receiver is refused. Its text becomes the Warning Event's note: it names the host
/// and address, never the URL's path or query (a receiver's token may live there).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the url is not a URL")]
    NotAUrl,
    #[error("scheme {scheme:?} is not allowed (allowed: {allowed})")]
    Scheme { scheme: String, allowed: String },
    #[error("the url names no host")]
    NoHost,
    #[error("host {host} is not among the allowed hosts ({allowed})")]
    HostNotAllowed { host: String, allowed: String },
    #[error("host {host} is the Kubernetes API server")]
    ApiServerName { host: String },
    #[error("host {host} resolves to no address")]
    Unresolved { host: String },
    #[error("host {host} resolves to {address}, in the refused network {network}")]
    RefusedNetwork {
        host: String,
        address: IpAddr,
        network: Network,
    },
    #[error("host {host} resolves to {address}, the Kubernetes API server")]
    ApiServerAddress { host: String, address: SocketAddr },
}

/// A receiver that passed the checks on its name: the host to resolve and the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url: reqwest::Url,
    pub host: String,
    pub port: u16,
}

/// The operator's rules for receivers (`--notification-allowed-schemes`,
/// `--notification-allowed-hosts`, `--notification-refused-networks`), and the API server as
/// this operator reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverPolicy {
    schemes: Vec<String>,
    hosts: Vec<String>,
    refused: Vec<Network>,
    api_server: Vec<SocketAddr>,
}

impl ReceiverPolicy {
    /// `hosts` empty: any host (its addresses are still checked). A host entry `*.example.com`
    /// allows every name under example.com.
    pub fn new(schemes: &[String], hosts: &[String], refused: &[Network]) -> ReceiverPolicy {
        let listed = |names: &[String]| -> Vec<String> {
            names
                .iter()
                .map(|n| normalised(n))
                .filter(|n| !n.is_empty())
                .collect()
        };
        ReceiverPolicy {
            schemes: listed(schemes),
            hosts: listed(hosts),
            refused: refused.to_vec(),
            api_server: Vec::new(),
        }
    }

    /// The API server's addresses (as the operator's own client reaches it), refused too.
    pub fn refusing_api_server(mut self, addresses: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.api_server.extend(addresses);
        self
    }

    /// The checks that need no lookup: scheme, host list, API server names.
    pub fn target(&self, url: &str) -> Result<Target, Refusal> {
        let url = reqwest::Url::parse(url).map_err(|_| Refusal::NotAUrl)?;
        if !self.schemes.iter().any(|s| s == url.scheme()) {
            return Err(Refusal::Scheme {
                scheme: url.scheme().to_owned(),
                allowed: self.schemes.join(", "),
            });
        }
        let host = url.host_str().ok_or(Refusal::NoHost)?;
        // An IPv6 host comes in brackets; the lookup and the host list want it bare.
        let host = normalised(host.trim_start_matches('[').trim_end_matches(']'));
        let port = url.port_or_known_default().ok_or(Refusal::NoHost)?;
        self.host_allowed(&host)?;
        Ok(Target { url, host, port })
    }

    fn host_allowed(&self, host: &str) -> Result<(), Refusal> {
        if is_api_server_name(host) {
            return Err(Refusal::ApiServerName { host: host.into() });
        }
        let listed = |entry: &String| match entry.strip_prefix("*.") {
            Some(domain) => host.strip_suffix(domain).is_some_and(|h| h.ends_with('.')),
            None => entry == host,
        };
        if self.hosts.is_empty() || self.hosts.iter().any(listed) {
            return Ok(());
        }
        Err(Refusal::HostNotAllowed {
            host: host.into(),
            allowed: self.hosts.join(", "),
        })
    }

    /// Every address `target`'s host resolved to must be allowed: one refused address refuses
    /// the receiver (the connection could pick any of them).
    pub fn addresses(&self, target: &Target, resolved: &[SocketAddr]) -> Result<(), Refusal> {
        let host = || target.host.clone();
        if resolved.is_empty() {
            return Err(Refusal::Unresolved { host: host() });
        }
        for address in resolved {
            let ip = address.ip().to_canonical();
            if let Some(network) = self.refused.iter().find(|n| n.contains(ip)) {
                return Err(Refusal::RefusedNetwork {
                    host: host(),
                    address: ip,
                    network: *network,
                });
            }
            let same =
                |api: &SocketAddr| api.ip().to_canonical() == ip && api.port() == address.port();
            if self.api_server.iter().any(same) {
                return Err(Refusal::ApiServerAddress {
                    host: host(),
                    address: *address,
                });
            }
        }
        Ok(())
    }
}

fn is_api_server_name(host: &str) -> bool {
    API_SERVER_NAMES.contains(&host) || host.starts_with("kubernetes.default.svc.")
}

fn normalised(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(hosts: &[&str]) -> ReceiverPolicy {
        let networks: Vec<Network> = DEFAULT_REFUSED_NETWORKS
            .split(',')
            .map(|n| n.parse().unwrap())
            .collect();
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        ReceiverPolicy::new(&strings(&["https", "http"]), &strings(hosts), &networks)
            .refusing_api_server(["10.96.0.1:443".parse().unwrap()])
    }

    fn judged(p: &ReceiverPolicy, url: &str, resolved: &[&str]) -> Result<(), Refusal> {
        let target = p.target(url)?;
        let resolved: Vec<SocketAddr> = resolved.iter().map(|a| a.parse().unwrap()).collect();
        p.addresses(&target, &resolved)
    }

    #[test]
    fn networks_parse_and_contain_their_addresses_only() {
        let link_local: Network = "169.254.0.0/16".parse().unwrap();
        assert!(link_local.contains("169.254.169.254".parse().unwrap()));
        assert!(link_local.contains("::ffff:169.254.169.254".parse().unwrap()));
        assert!(!link_local.contains("169.255.0.1".parse().unwrap()));
        assert!(!link_local.contains("fe80::1".parse().unwrap()));
        let v6: Network = "fe80::/10".parse().unwrap();
        assert!(v6.contains("fe80::1".parse().unwrap()) && v6.contains("febf::1".parse().unwrap()));
        assert!(!v6.contains("fec0::1".parse().unwrap()));
        let everything: Network = "0.0.0.0/0".parse().unwrap();
        assert!(everything.contains("8.8.8.8".parse().unwrap()));
        for bad in ["169.254.0.0", "169.254.0.0/33", "fe80::/129", "x/8", ""] {
            assert!(bad.parse::<Network>().is_err(), "{bad}");
        }
    }

    #[test]
    fn metadata_loopback_and_the_api_server_are_refused_by_default() {
        let p = policy(&[]);
        let refused = [
            (
                "http://169.254.169.254/latest/meta-data/",
                "169.254.169.254:80",
            ),
            ("http://[fe80::1]:8080/", "[fe80::1]:8080"),
            ("http://127.0.0.1:15000/quitquitquit", "127.0.0.1:15000"),
            ("http://localhost:8080/", "[::1]:8080"),
            ("http://0.0.0.0:8080/", "0.0.0.0:8080"),
            ("http://[::ffff:127.0.0.1]/", "[::ffff:127.0.0.1]:80"),
            ("https://10.96.0.1/api/v1/namespaces", "10.96.0.1:443"),
            // A public name that resolves (also) to a refused address.
            ("https://hooks.example.com/x", "169.254.169.254:443"),
        ];
        for (url, address) in refused {
            assert!(
                judged(&p, url, &["203.0.113.7:443", address]).is_err(),
                "{url}"
            );
        }
        assert_eq!(
            judged(&p, "https://hooks.example.com/x", &["203.0.113.7:443"]),
            Ok(())
        );
        assert_eq!(
            judged(&p, "http://10.96.0.1:8080/", &["10.96.0.1:8080"]),
            Ok(()),
            "only the API server's own port is the API server"
        );
    }

    #[test]
    fn schemes_the_host_list_and_the_api_server_names_are_enforced() {
        let p = policy(&["hooks.slack.com", "*.receivers.example"]);
        assert_eq!(
            judged(
                &p,
                "https://hooks.slack.com/services/T/B/x",
                &["203.0.113.7:443"]
            ),
            Ok(())
        );
        assert_eq!(
            judged(&p, "https://a.receivers.example/", &["203.0.113.8:443"]),
            Ok(())
        );
        // Refused by name, before any lookup: the API server whatever the list says, names off
        // the list, schemes other than http(s).
        let refused = [
            (
                "https://kubernetes.default.svc/api",
                "is the Kubernetes API server",
            ),
            (
                "https://KUBERNETES.default.svc.cluster.local./api",
                "is the Kubernetes API server",
            ),
            ("http://kubernetes/", "is the Kubernetes API server"),
            ("https://receivers.example/", "not among the allowed hosts"),
            (
                "https://evilreceivers.example/",
                "not among the allowed hosts",
            ),
            (
                "https://hooks.slack.com.evil.example/",
                "not among the allowed hosts",
            ),
            ("file:///etc/passwd", "is not allowed"),
            ("gopher://hooks.slack.com/", "is not allowed"),
        ];
        for (url, why) in refused {
            let refusal = p.target(url).expect_err(url).to_string();
            assert!(refusal.contains(why), "{url}: {refusal}");
        }
        assert_eq!(p.target("not a url"), Err(Refusal::NotAUrl));
        assert!(matches!(
            judged(&p, "https://hooks.slack.com/", &[]),
            Err(Refusal::Unresolved { .. })
        ));
    }

    #[test]
    fn a_refusal_names_the_host_never_the_path() {
        let p = policy(&[]);
        let refusal = judged(
            &p,
            "http://169.254.169.254/secret-path?token=t0k3n",
            &["169.254.169.254:80"],
        )
        .unwrap_err()
        .to_string();
        assert!(
            refusal.contains("169.254.169.254") && refusal.contains("169.254.0.0/16"),
            "{refusal}"
        );
        assert!(
            !refusal.contains("secret-path") && !refusal.contains("t0k3n"),
            "{refusal}"
        );
    }
}
