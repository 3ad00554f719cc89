//! auren-operator: reconciles `AurenRuntime` resources.
//!
//! TODO module docs
pub mod api;
