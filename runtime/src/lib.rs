//! auren-runtime: takes wearable webhooks (api mode) and stores them as a per-user event
//! history (consumer mode).
//!
//! Flow: `api` (auth, size, parse) -> `ingest` (normalise, pure) -> `kafka::producer` -> 202;
//! real vendors' notifications: `api::vendors` -> `vendors` (verify, read) -> `kafka::producer`;
//! Kafka -> `kafka::consumer` batch -> `store` transaction -> offsets committed.

pub mod api;
pub mod app;
pub mod config;
pub mod faults;
pub mod health;
pub mod ingest;
pub mod kafka;
pub mod metrics;
pub mod resilience;
pub mod store;
pub mod vendors;

pub use config::Config;
