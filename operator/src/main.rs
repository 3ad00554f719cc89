//! `auren-operator`: see `auren_operator::app`.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = auren_operator::app::Args::parse();
    auren_operator::app::init_logs();
    auren_operator::app::run(args).await
}
