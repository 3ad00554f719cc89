//! `kubectl-auren`, the kubectl plugin: where AurenRuntime rollouts stand, the controls
//! (promote, abort, retry) and a live dashboard. It runs on a user's machine, so it lives in its
//! own crate: the operator's image holds only the controller. It shares the operator's API types
//! (`auren_operator::api`) and control annotations (`auren_operator::rollout::Control`).
//!
//! ```text
//! cli        the command line: status, history, the controls, the dashboard
//! controls   promote/abort/retry as the operator reads them (one annotation, a fresh value)
//! dashboard  the live web page: pure view, thin HTTP/SSE server, embedded page
//! ```

mod cli;
mod controls;
mod dashboard;

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cli::run(cli::Cli::parse()).await
}
