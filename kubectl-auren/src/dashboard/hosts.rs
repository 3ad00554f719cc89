//! Which `Host` a request to the dashboard may name. A page elsewhere can make the browser
//! resolve its own name to 127.0.0.1 (DNS rebinding) and then read the dashboard as if it were
//! its own origin; such a request still carries that page's name in `Host`, and is refused.

use std::net::IpAddr;

/// The host names (without port) the dashboard answers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHosts {
    names: Vec<String>,
}

impl Default for AllowedHosts {
    /// Loopback only.
    fn default() -> Self {
        AllowedHosts {
            names: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
        }
    }
}

impl AllowedHosts {
    /// Loopback, the address the dashboard listens on (unless it is the unspecified one),
    /// and the names the user allowed (`--allow-host`).
    pub fn new(listening: IpAddr, extra: &[String]) -> AllowedHosts {
        let mut hosts = AllowedHosts::default();
        let listening = (!listening.is_unspecified()).then(|| listening.to_string());
        for name in listening.iter().chain(extra) {
            let name = normalise(name);
            if !hosts.names.contains(&name) {
                hosts.names.push(name);
            }
        }
        hosts
    }

    /// Whether a request whose `Host` header is `host` (`name`, `name:port`, `[v6]:port`) is
    /// for this dashboard.
    pub fn allows(&self, host: &str) -> bool {
        let name = normalise(without_port(host));
        !name.is_empty() && self.names.contains(&name)
    }
}

fn without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(v6, _)| v6);
    }
    match host.split_once(':') {
        Some((name, port)) if !port.contains(':') => name,
        _ => host,
    }
}

fn normalise(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_the_listening_address_are_allowed_by_default() {
        let hosts = AllowedHosts::new("127.0.0.1".parse().unwrap(), &[]);
        for host in [
            "localhost:8474",
            "LOCALHOST",
            "127.0.0.1:8474",
            "[::1]:8474",
            "localhost.",
        ] {
            assert!(hosts.allows(host), "{host}");
        }
        for host in [
            "evil.example:8474",
            "evil.example",
            "",
            ":8474",
            "127.0.0.2:8474",
        ] {
            assert!(!hosts.allows(host), "{host}");
        }
    }

    #[test]
    fn a_named_address_and_extra_names_are_allowed() {
        let extra = ["Dash.Team.Internal".to_owned()];
        let hosts = AllowedHosts::new("10.0.0.5".parse().unwrap(), &extra);
        assert!(hosts.allows("10.0.0.5:8474"));
        assert!(hosts.allows("dash.team.internal:8474"));
        assert!(!hosts.allows("10.0.0.6:8474"));
        let any = AllowedHosts::new("0.0.0.0".parse().unwrap(), &[]);
        assert!(
            !any.allows("0.0.0.0:8474"),
            "the unspecified address is not a host"
        );
        assert_eq!(any, AllowedHosts::default());
        let v6 = AllowedHosts::new("fd00::5".parse().unwrap(), &[]);
        assert!(v6.allows("[fd00::5]:8474"));
        assert!(v6.allows("[FD00::5]"));
    }
}
