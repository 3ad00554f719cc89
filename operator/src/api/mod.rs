//! The `AurenRuntime` custom resource: spec, status, defaults and the validation the schema
//! cannot express.

mod duration;
mod spec;
mod status;
mod validate;

pub use duration::{DurationError, MAX_DURATION, parse_duration};
pub use spec::*;
pub use status::*;
pub use validate::{CheckedStep, SpecError, canary_steps, validate};

use kube::CustomResourceExt;

/// The CRD as YAML, exactly as committed under `crds/`.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(&AurenRuntime::crd())
}
