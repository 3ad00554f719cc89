//! `auren-service-proxy`: loopback TCP proxy for Services of a local cluster.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    e2e::telemetry::init();
    let args = e2e::proxy::ProxyArgs::parse();
    match e2e::proxy::run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "service proxy failed");
            std::process::ExitCode::FAILURE
        }
    }
}
