//! Readiness and liveness probes: spec parsing and the threshold state
//! machine are pure; [`execute`] does the network/process I/O.
//! Supported: `httpGet` (against podIP:port, 200–399 is success), `tcpSocket`,
//! `exec` (run locally). `startupProbe` is not supported.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ContainerPort, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Http { port: u16, path: String },
    Tcp { port: u16 },
    Exec { command: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    pub action: Action,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

fn secs(v: Option<i32>, default: u64) -> Duration {
    Duration::from_secs(v.and_then(|s| u64::try_from(s).ok()).unwrap_or(default))
}

fn threshold(v: Option<i32>, default: u32) -> u32 {
    v.and_then(|s| u32::try_from(s).ok())
        .filter(|s| *s > 0)
        .unwrap_or(default)
}

fn resolve_port(port: &IntOrString, ports: &[ContainerPort]) -> Option<u16> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).ok(),
        IntOrString::String(name) => ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

impl ProbeSpec {
    /// None when the probe has no supported handler.
    pub fn from_k8s(probe: &Probe, ports: &[ContainerPort]) -> Option<Self> {
        let action = if let Some(h) = &probe.http_get {
            Action::Http {
                port: resolve_port(&h.port, ports)?,
                path: h.path.clone().unwrap_or_else(|| "/".to_owned()),
            }
        } else if let Some(t) = &probe.tcp_socket {
            Action::Tcp {
                port: resolve_port(&t.port, ports)?,
            }
        } else {
            Action::Exec {
                command: probe.exec.as_ref()?.command.clone()?,
            }
        };
        Some(Self {
            action,
            initial_delay: secs(probe.initial_delay_seconds, 0),
            period: secs(probe.period_seconds, 10),
            timeout: secs(probe.timeout_seconds, 1),
            success_threshold: threshold(probe.success_threshold, 1),
            failure_threshold: threshold(probe.failure_threshold, 3),
        })
    }
}

/// Consecutive-result tracking of one probe for one container run.
#[derive(Debug, Clone)]
pub struct Tracker {
    pub spec: Option<ProbeSpec>,
    passing: bool,
    successes: u32,
    failures: u32,
    last_run: Option<Instant>,
}

impl Tracker {
    /// `initially` is the result before the first probe (false for readiness, true for liveness).
    pub fn new(spec: Option<ProbeSpec>, initially: bool) -> Self {
        Self {
            passing: spec.is_none() || initially,
            spec,
            successes: 0,
            failures: 0,
            last_run: None,
        }
    }

    pub fn passing(&self) -> bool {
        self.passing
    }

    /// Whether a probe is due now for a container started at `started`.
    pub fn due(&self, started: Instant, now: Instant) -> bool {
        let Some(spec) = &self.spec else { return false };
        if now < started + spec.initial_delay {
            return false;
        }
        self.last_run.is_none_or(|last| now >= last + spec.period)
    }

    /// Records a result; returns the new passing state.
    pub fn record(&mut self, ok: bool, now: Instant) -> bool {
        self.last_run = Some(now);
        let Some(spec) = &self.spec else { return true };
        if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if self.successes >= spec.success_threshold {
                self.passing = true;
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.failures >= spec.failure_threshold {
                self.passing = false;
            }
        }
        self.passing
    }
}

/// Runs one probe against `ip`; true on success.
pub async fn execute(action: &Action, ip: std::net::IpAddr, timeout: Duration) -> bool {
    let run = async {
        match action {
            Action::Http { port, path } => http(SocketAddr::new(ip, *port), path).await,
            Action::Tcp { port } => tokio::net::TcpStream::connect(SocketAddr::new(ip, *port))
                .await
                .is_ok(),
            Action::Exec { command } => exec(command).await,
        }
    };
    tokio::time::timeout(timeout.max(Duration::from_millis(100)), run)
        .await
        .unwrap_or(false)
}

async fn http(addr: SocketAddr, path: &str) -> bool {
    let Ok(client) = reqwest::Client::builder().no_proxy().build() else {
        return false;
    };
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    match client.get(format!("http://{addr}{path}")).send().await {
        Ok(resp) => (200..400).contains(&resp.status().as_u16()),
        Err(_) => false,
    }
}

async fn exec(command: &[String]) -> bool {
    let Some((program, args)) = command.split_first() else {
        return false;
    };
    tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .status()
        .await
        .map(|s| s.success())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> ProbeSpec {
        let probe: Probe = serde_json::from_value(v).unwrap();
        let ports: Vec<ContainerPort> =
            serde_json::from_value(json!([{"name": "http", "containerPort": 8080}])).unwrap();
        ProbeSpec::from_k8s(&probe, &ports).unwrap()
    }

    #[test]
    fn parses_named_ports_and_defaults() {
        let s = spec(json!({"httpGet": {"port": "http", "path": "/ready"}}));
        assert_eq!(
            s.action,
            Action::Http {
                port: 8080,
                path: "/ready".into()
            }
        );
        assert_eq!(s.period, Duration::from_secs(10));
        assert_eq!(s.failure_threshold, 3);
        let s =
            spec(json!({"tcpSocket": {"port": 9}, "periodSeconds": 1, "initialDelaySeconds": 2}));
        assert_eq!(s.action, Action::Tcp { port: 9 });
        assert_eq!(s.initial_delay, Duration::from_secs(2));
    }

    #[test]
    fn thresholds_flip_state() {
        let s =
            spec(json!({"tcpSocket": {"port": 9}, "successThreshold": 2, "failureThreshold": 2}));
        let now = Instant::now();
        let mut t = Tracker::new(Some(s), false);
        assert!(!t.record(true, now));
        assert!(t.record(true, now));
        assert!(t.record(false, now));
        assert!(!t.record(false, now));
        assert!(!t.record(true, now));
    }

    #[test]
    fn due_respects_initial_delay_and_period() {
        let s =
            spec(json!({"tcpSocket": {"port": 9}, "periodSeconds": 5, "initialDelaySeconds": 3}));
        let start = Instant::now();
        let mut t = Tracker::new(Some(s), true);
        assert!(!t.due(start, start + Duration::from_secs(1)));
        assert!(t.due(start, start + Duration::from_secs(3)));
        t.record(true, start + Duration::from_secs(3));
        assert!(!t.due(start, start + Duration::from_secs(7)));
        assert!(t.due(start, start + Duration::from_secs(8)));
    }

    #[test]
    fn no_probe_means_passing_and_never_due() {
        let t = Tracker::new(None, false);
        assert!(t.passing());
        assert!(!t.due(Instant::now(), Instant::now()));
    }
}
