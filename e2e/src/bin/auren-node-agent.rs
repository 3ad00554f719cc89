//! `auren-node-agent`: runs Pods scheduled to a local node as processes.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    e2e::telemetry::init();
    let args = e2e::agent::AgentArgs::parse();
    match e2e::agent::run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "node agent failed");
            std::process::ExitCode::FAILURE
        }
    }
}
