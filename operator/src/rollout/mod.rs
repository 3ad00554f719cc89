//! The rollout decision, pure: observed world + clock → [`Plan`] (next status, the world to
//! make true, Events, when to look again). The controller fills [`Observed`], calls
//! [`decide`], applies [`Plan::world`] and writes [`Plan::status`] only when it changed.
//!
//! Blue/green: Progressing (candidate scaled to preview replicas, preview Service on it) →
//! Analyzing (a measurement every interval) → Promoting (candidate at full scale, active
//! Service switched, stable consumers to standby, then candidate consumers active) → Healthy
//! (the previous release kept up for `scaleDownDelaySeconds`, watched, switched back to if the
//! new one fails). Canary: the steps move the weight (replica ratio behind the active Service),
//! pause or analyse, then the same Promoting. Any failure → RolledBack; every phase has a
//! deadline; waiting for a human is an explicit Paused with a reason.

mod clock;
mod conditions;
pub mod controls;
mod decide;
mod notice;
mod pointing;
mod render;
mod world;

pub use conditions::{AVAILABLE, INVALID_SPEC, PROGRESSING, UNSAFE_SETTINGS, set_conditions};
pub use controls::Control;
pub use decide::decide;
pub use notice::{Notice, NoticeKind, notice};
pub use pointing::{AUTOSCALER_POINTED, autoscaler_record, record_pointing};
pub use world::{
    AnalysisRequest, CanaryPair, Event, EventKind, Observed, Plan, PodSet, ReleasePlan,
    ReleaseState, RoleCounts, RoleSwitch, ServiceTarget, World,
};

#[cfg(test)]
mod tests;
