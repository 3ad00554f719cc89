//! Analysis: parse the runtime's `/metrics` text, compute values over a window and judge them
//! against each check's threshold or the stable baseline. Pure: the controller scrapes (and
//! runs Prometheus queries), this module only reads what was scraped.
//!
//! Flow: `exposition::parse` per pod and scrape → [`Window`] (start and end scrape of each pod
//! of one revision) → [`Evidence`] (plus restarts and Prometheus results) → [`evaluate`] →
//! [`Measurement`](crate::api::Measurement)s → `rollout`.

mod evaluate;
pub mod exposition;
mod hold;
mod window;

pub use evaluate::{
    DEFAULT_QUANTILE, Evidence, OUTAGE_FACTOR, evaluate, judge, outage, round_verdict,
};
pub use exposition::{Exposition, ParseError, Sample, parse};
pub use hold::{outage_limit_at, track_outage};
pub use window::{PodWindow, Window};
