//! `kubectl-auren`: see `auren_operator::plugin`.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    auren_operator::plugin::run(auren_operator::plugin::Cli::parse()).await
}
