//! auren-operator: runs the AUREN runtime's API and consumer pods from an `AurenRuntime` and
//! moves them from release to release safely.
//!
//! # Layers (pure, apart from `controller` and `app`)
//!
//! ```text
//! api        the CRD types (spec, status, defaults, schema) and `validate` for what the
//!            schema cannot say. `crdgen` prints the CRD; crds/ holds it; a test checks drift.
//! revision   the release hash of a spec (image, env, config, connections, pod settings —
//!            never replicas or rollout settings).
//! analysis   parse scraped `/metrics` text → values over a window → Measurements judged
//!            against thresholds or the stable baseline.
//! rollout    `decide(Observed) -> Plan`: the state machine. Status is its only memory, so a
//!            restarted operator carries on. The Plan says which workloads exist with how many
//!            replicas, what each Service selects, the next consumer role switches (ordered:
//!            standby before active), whether to measure, the Events, when to look again.
//! resources  builders of the Deployments and Services a Plan implies, and `status_patch`
//!            (None when the status did not change).
//! notify     a Plan's notice as a CloudEvents or Slack body, its id and HMAC signature.
//! ```
//!
//! Around the pure core: `controller` (the only kube and pod I/O: reconcile, leader election),
//! `metrics` (the `auren_operator_*` registry) and `app` (the `auren-operator` process). The
//! kubectl plugin and its dashboard are the `kubectl-auren` crate.
//!
//! # One reconcile, as the controller should wire it
//!
//! 1. Read the AurenRuntime, its Deployments and pods from the watch caches
//!    (`controller::cache`; per revision: ready, restarts, crash-looping, waiting reason) and
//!    each consumer pod's role (`GET` the admin role path).
//! 2. `revision::of(&spec)` → the desired revision.
//! 3. If the previous Plan asked to measure: scrape the pods of the candidate (and baseline),
//!    `analysis::parse` each, build `analysis::Evidence` per revision and `analysis::evaluate`.
//! 4. `rollout::decide(&Observed { .. })` → Plan.
//! 5. If `plan.world` is Some: apply `resources::deployment` for the desired revision (skipped
//!    when the cached one carries the same `resources::fingerprinted` digest),
//!    `resources::scale_patch` for the others, delete `world.delete`, apply both
//!    `resources::service`s, then run `world.role_switches` in order, stopping at the first
//!    failure. Set the `auren.io/healthy` pod condition from each pod's `/health`.
//! 6. Emit `plan.events`; write `resources::status_patch(old, &plan.status)` if Some;
//!    requeue after `plan.requeue_after`.
//!
//! Errors: one enum per layer (`api::SpecError`, `revision::RevisionError`,
//! `analysis::ParseError`, `resources::ResourceError`); `rollout::decide` is total — an
//! invalid spec is a phase (InvalidSpec), not an error.

pub mod analysis;
pub mod api;
pub mod app;
pub mod controller;
pub mod metrics;
pub mod notify;
pub mod resources;
pub mod revision;
pub mod rollout;
