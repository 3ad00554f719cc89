//! Health: a background checker measures each dependency every `HEALTH_CHECK_INTERVAL` and
//! keeps the report in memory; `/health` serves that report without touching a dependency.
//! Each change of the health state (overall or a component's status) gets a new `change`
//! name, and callers may wait for the next one ([`HealthBoard::changed_from`]): the operator's
//! readiness gate follows a pod that way instead of polling it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

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
    /// Names the current health state: it changes when the overall status or any component's
    /// status does (not on a detail or a latency), and differs across restarts.
    pub change: String,
    /// When the health state last changed (start-up for the first one).
    pub changed_at: chrono::DateTime<chrono::Utc>,
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
            change: String::new(),
            changed_at: chrono::Utc::now(),
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
    /// Counts health-state changes; its receivers are the waiting `/health` requests.
    changes: Arc<watch::Sender<u64>>,
    /// Set when the process begins to stop: waiting requests answer at once.
    closing: Arc<AtomicBool>,
    /// Tells this process's changes from another's (a restarted container's counter restarts).
    boot: u64,
}

/// What a change is about: the overall status and each component's status.
fn state_of(report: &HealthReport) -> (Status, Vec<(&'static str, Status)>) {
    let components = report.components.iter().map(|(n, c)| (*n, c.status));
    (report.status, components.collect())
}

impl HealthBoard {
    pub fn new(mut initial: HealthReport) -> Self {
        static BOOTS: AtomicU64 = AtomicU64::new(0);
        let clock = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        let boot = (clock as u64) ^ BOOTS.fetch_add(1, Ordering::Relaxed);
        initial.change = change_name(boot, 0);
        HealthBoard {
            report: Arc::new(RwLock::new(initial)),
            started: Instant::now(),
            changes: Arc::new(watch::Sender::new(0)),
            closing: Arc::new(AtomicBool::new(false)),
            boot,
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
        let before = state_of(&guard);
        guard.status = overall(&components);
        guard.components = components;
        guard.metrics = metrics;
        let now = chrono::Utc::now();
        guard.checked_at = Some(now);
        if state_of(&guard) != before {
            self.changes.send_modify(|n| *n += 1);
            guard.change = change_name(self.boot, *self.changes.borrow());
            guard.changed_at = now;
        }
    }

    /// Waits until the health state is no longer `known` (at once if it already is not), for
    /// at most `wait`, or until the process begins to stop.
    pub async fn changed_from(&self, known: &str, wait: Duration) {
        let mut changes = self.changes.subscribe();
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        while self.current_change() == known && !self.closing.load(Ordering::SeqCst) {
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                () = &mut deadline => return,
            }
        }
    }

    /// The process begins to stop: every waiting request answers now, so none holds the
    /// graceful shutdown up.
    pub fn release_waiters(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.changes.send_modify(|_| {});
    }

    fn current_change(&self) -> String {
        let guard = self.report.read().unwrap_or_else(|p| p.into_inner());
        guard.change.clone()
    }
}

fn change_name(boot: u64, n: u64) -> String {
    format!("{boot:x}-{n}")
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

    fn kafka(status: Status) -> BTreeMap<&'static str, Component> {
        let mut c = BTreeMap::new();
        let detail = format!("{status:?}");
        c.insert("kafka", Component::with(status, detail));
        c
    }

    #[test]
    fn only_a_status_change_is_a_change() {
        let board = HealthBoard::new(HealthReport::starting("v1", "api"));
        let first = board.current().change;
        board.publish(kafka(Status::Healthy), BTreeMap::new());
        let healthy = board.current();
        assert_ne!(healthy.change, first, "starting -> healthy");
        let mut same = kafka(Status::Healthy);
        same.insert(
            "kafka",
            Component::from_check(Ok::<(), String>(()), Duration::from_millis(7)),
        );
        board.publish(same, BTreeMap::new());
        assert_eq!(
            board.current().change,
            healthy.change,
            "a latency is not a change"
        );
        assert_eq!(board.current().changed_at, healthy.changed_at);
        board.publish(kafka(Status::Unhealthy), BTreeMap::new());
        assert_ne!(board.current().change, healthy.change, "kafka down");
        let other = HealthBoard::new(HealthReport::starting("v1", "api"));
        assert_ne!(
            other.current().change,
            first,
            "another process, another name"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_answers_when_the_state_changes_or_the_wait_ends() {
        let board = HealthBoard::new(HealthReport::starting("v1", "api"));
        let known = board.current().change;
        let started = tokio::time::Instant::now();
        board.changed_from(&known, Duration::from_secs(20)).await;
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(20),
            "nothing changed: the whole wait"
        );

        let waiter = {
            let board = board.clone();
            tokio::spawn(async move { board.changed_from(&known, Duration::from_secs(20)).await })
        };
        tokio::time::sleep(Duration::from_secs(3)).await;
        board.publish(kafka(Status::Healthy), BTreeMap::new());
        waiter.await.unwrap();
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(23),
            "answered at the change"
        );

        let stale = "another-process";
        board.changed_from(stale, Duration::from_secs(20)).await;
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(23),
            "a stale name answers at once"
        );

        let known = board.current().change;
        let waiter = {
            let board = board.clone();
            tokio::spawn(async move { board.changed_from(&known, Duration::from_secs(20)).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        board.release_waiters();
        waiter.await.unwrap();
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(24),
            "stopping releases the waiter"
        );
    }
}
