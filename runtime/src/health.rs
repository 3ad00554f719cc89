//! Health: a background checker measures each dependency every `HEALTH_CHECK_INTERVAL` and
//! keeps the report in memory; `/health` serves that report without touching a dependency.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Healthy,
    Degraded,
    Unhealthy,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Component {
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
}

impl Component {
    pub fn healthy() -> Self {
        Component {
            status: Status::Healthy,
            detail: None,
            latency_ms: None,
        }
    }

    pub fn with(status: Status, detail: impl Into<String>) -> Self {
        Component {
            status,
            detail: Some(detail.into()),
            latency_ms: None,
        }
    }

    /// The outcome of a timed check.
    pub fn from_check<E: std::fmt::Display>(result: Result<(), E>, took: Duration) -> Self {
        let latency_ms = Some(took.as_secs_f64() * 1000.0);
        match result {
            Ok(()) => Component {
                status: Status::Healthy,
                detail: None,
                latency_ms,
            },
            Err(e) => Component {
                status: Status::Unhealthy,
                detail: Some(e.to_string()),
                latency_ms,
            },
        }
    }
}

/// The document `/health` serves.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport {
    pub status: Status,
    pub version: &'static str,
    pub release: String,
    pub mode: &'static str,
    pub checked_at: Option<chrono::DateTime<chrono::Utc>>,
    pub components: BTreeMap<&'static str, Component>,
    pub metrics: BTreeMap<&'static str, f64>,
}

impl HealthReport {
    pub fn starting(release: &str, mode: &'static str) -> Self {
        let mut components = BTreeMap::new();
        components.insert(
            "startup",
            Component::with(Status::Unhealthy, "connecting to dependencies"),
        );
        HealthReport {
            status: Status::Unhealthy,
            version: env!("CARGO_PKG_VERSION"),
            release: release.to_string(),
            mode,
            checked_at: None,
            components,
            metrics: BTreeMap::new(),
        }
    }
}

/// The overall status is the worst of the components'.
pub fn overall(components: &BTreeMap<&'static str, Component>) -> Status {
    components
        .values()
        .map(|c| c.status)
        .max()
        .unwrap_or(Status::Healthy)
}

/// Where the process is in its life: readiness is derived from it.
#[derive(Debug, Default)]
pub struct Lifecycle {
    started: AtomicBool,
    draining: AtomicBool,
}

impl Lifecycle {
    pub fn mark_started(&self) {
        self.started.store(true, Ordering::SeqCst);
    }

    /// Called first thing on SIGTERM: readiness turns false at once.
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_started(&self) -> bool {
        self.started.load(Ordering::SeqCst)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// The latest report, shared between the checker and the HTTP handlers.
#[derive(Debug, Clone)]
pub struct HealthBoard {
    report: Arc<RwLock<HealthReport>>,
    started: Instant,
}

impl HealthBoard {
    pub fn new(initial: HealthReport) -> Self {
        HealthBoard {
            report: Arc::new(RwLock::new(initial)),
            started: Instant::now(),
        }
    }

    pub fn current(&self) -> HealthReport {
        let mut r = self
            .report
            .read()
            .map(|r| r.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        r.metrics
            .insert("uptime_seconds", self.started.elapsed().as_secs_f64());
        r
    }

    pub fn publish(
        &self,
        components: BTreeMap<&'static str, Component>,
        metrics: BTreeMap<&'static str, f64>,
    ) {
        let mut guard = self.report.write().unwrap_or_else(|p| p.into_inner());
        guard.status = overall(&components);
        guard.components = components;
        guard.metrics = metrics;
        guard.checked_at = Some(chrono::Utc::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_component_decides() {
        let mut c = BTreeMap::new();
        c.insert("kafka", Component::healthy());
        assert_eq!(overall(&c), Status::Healthy);
        c.insert(
            "faults",
            Component::with(Status::Degraded, "fault injection on"),
        );
        assert_eq!(overall(&c), Status::Degraded);
        c.insert(
            "database",
            Component::from_check(Err("refused"), Duration::from_millis(3)),
        );
        assert_eq!(overall(&c), Status::Unhealthy);
        assert_eq!(c["database"].detail.as_deref(), Some("refused"));
    }

    #[test]
    fn the_board_serves_what_was_published() {
        let board = HealthBoard::new(HealthReport::starting("v1", "api"));
        assert_eq!(board.current().status, Status::Unhealthy);
        let mut c = BTreeMap::new();
        c.insert("kafka", Component::healthy());
        board.publish(c, BTreeMap::new());
        let r = board.current();
        assert_eq!(r.status, Status::Healthy);
        assert!(r.checked_at.is_some());
        assert!(r.metrics.contains_key("uptime_seconds"));
    }
}
