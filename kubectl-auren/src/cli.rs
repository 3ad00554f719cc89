//! The command line: where a rollout stands (`status`, `history`), the controls (`promote`,
//! `abort`, `retry`, through [`crate::controls`]) and the `dashboard`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use auren_operator::api::{AurenRuntime, AurenRuntimeStatus, Outcome};
use auren_operator::rollout::Control;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::controls::request_control;
use crate::dashboard;

/// Command line of `kubectl-auren`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "kubectl-auren",
    about = "Status and controls of AurenRuntime rollouts"
)]
pub struct Cli {
    /// Namespace (the kubeconfig context's by default).
    #[arg(short, long, global = true)]
    pub namespace: Option<String>,
    /// Kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Kubeconfig file (KUBECONFIG or ~/.kube/config by default).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Phase, releases, Services, analysis and the last measurements.
    Status {
        name: String,
        /// Print again whenever the status changes.
        #[arg(long)]
        watch: bool,
    },
    /// Promote the candidate now (or complete the current canary step).
    Promote { name: String },
    /// Roll the candidate back now.
    Abort { name: String },
    /// Restart a paused analysis.
    Retry { name: String },
    /// Past releases and how they ended.
    History { name: String },
    /// A local web page of the rollouts, updated live (read-only unless --allow-actions).
    Dashboard {
        /// Port to listen on (127.0.0.1); 0 picks a free one.
        #[arg(long, default_value_t = 8474, env = "AUREN_DASHBOARD_PORT")]
        port: u16,
        /// Address to listen on. Anything but loopback exposes the page to the network.
        #[arg(long, default_value = "127.0.0.1", env = "AUREN_DASHBOARD_ADDRESS")]
        address: std::net::IpAddr,
        /// Every namespace instead of one.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Offer promote/abort/retry buttons (the same as `kubectl auren promote|abort|retry`).
        #[arg(long)]
        allow_actions: bool,
        /// A host name the page may be opened by, besides localhost and the listening
        /// address (repeatable); any other Host header is refused (DNS-rebinding guard).
        #[arg(long = "allow-host", value_name = "NAME")]
        allow_hosts: Vec<String>,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let (client, namespace) = connect(&cli).await?;
    let api = Api::<AurenRuntime>::namespaced(client, &namespace);
    match cli.command {
        Command::Status { name, watch } => status(&api, &name, watch).await,
        Command::Promote { name } => control(&api, &name, Control::Promote).await,
        Command::Abort { name } => control(&api, &name, Control::Abort).await,
        Command::Retry { name } => control(&api, &name, Control::Retry).await,
        Command::History { name } => {
            let ar = api.get(&name).await?;
            print!("{}", history(&ar.status.unwrap_or_default()));
            Ok(())
        }
        Command::Dashboard {
            port,
            address,
            all_namespaces,
            allow_actions,
            allow_hosts,
        } => {
            let settings = dashboard::Settings {
                addr: std::net::SocketAddr::new(address, port),
                namespace: (!all_namespaces).then_some(namespace),
                allow_actions,
                allowed_hosts: allow_hosts,
            };
            Ok(dashboard::serve(api.into_client(), settings).await?)
        }
    }
}

async fn connect(cli: &Cli) -> anyhow::Result<(Client, String)> {
    let options = KubeConfigOptions {
        context: cli.context.clone(),
        ..Default::default()
    };
    let config = match &cli.kubeconfig {
        Some(path) => {
            Config::from_custom_kubeconfig(Kubeconfig::read_from(path)?, &options).await?
        }
        None => Config::from_kubeconfig(&options).await?,
    };
    let namespace = cli
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    Ok((Client::try_from(config)?, namespace))
}

async fn control(api: &Api<AurenRuntime>, name: &str, control: Control) -> anyhow::Result<()> {
    let value = request_control(api, name, control).await?;
    println!("{name}: {}={value} set", control.annotation());
    Ok(())
}

async fn status(api: &Api<AurenRuntime>, name: &str, watch: bool) -> anyhow::Result<()> {
    let mut last = String::new();
    loop {
        let ar = api.get(name).await?;
        let text = summary(name, &ar.status.unwrap_or_default());
        if text != last {
            print!("{text}");
            last = text;
        }
        if !watch {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        println!("---");
    }
}

fn or_dash(value: Option<&str>) -> &str {
    value.unwrap_or("-")
}

/// The status as `kubectl auren status` prints it.
pub fn summary(name: &str, st: &AurenRuntimeStatus) -> String {
    let mut out = String::new();
    let phase = st.phase.map_or("-", |p| p.as_str());
    let _ = writeln!(out, "Name:       {name}");
    let _ = writeln!(
        out,
        "Phase:      {phase} ({})",
        or_dash(st.reason.as_deref())
    );
    let _ = writeln!(out, "Message:    {}", or_dash(st.message.as_deref()));
    for (label, rev) in [("Stable", &st.stable), ("Candidate", &st.candidate)] {
        let text = rev
            .as_ref()
            .map_or("-".to_owned(), |r| format!("{} ({})", r.hash, r.image));
        let _ = writeln!(out, "{label:<11} {text}");
    }
    let _ = writeln!(
        out,
        "Services:   active → {}, preview → {}",
        or_dash(st.services.active_text()),
        or_dash(st.services.preview.as_deref())
    );
    let _ = writeln!(out, "Ready:      {}", or_dash(st.ready.as_deref()));
    if let Some(a) = &st.analysis {
        let _ = writeln!(
            out,
            "Analysis:   {} passed, {} failed ({} in a row), {} inconclusive, {} not counted \
             (dependency outage)",
            a.successes, a.failures, a.consecutive_failures, a.inconclusive, a.dependency_outages
        );
    }
    for m in st.measurements.iter().rev().take(6) {
        let value = m.value.map_or("no data".to_owned(), |v| format!("{v:.4}"));
        let why = m
            .reason
            .as_ref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {} {:<14} {value:>10}  {:<24} {:?}{why}",
            m.at.0, m.check, m.threshold, m.verdict
        );
    }
    out
}

/// The release history, oldest first.
pub fn history(st: &AurenRuntimeStatus) -> String {
    let mut out = String::from(
        "WHEN                       REVISION    OUTCOME     REASON                IMAGE\n",
    );
    for r in &st.history {
        let outcome = match r.outcome {
            Outcome::Promoted => "Promoted",
            Outcome::RolledBack => "RolledBack",
            Outcome::Superseded => "Superseded",
        };
        let _ = writeln!(
            out,
            "{:<26} {:<11} {outcome:<11} {:<21} {}",
            r.at.0.to_string(),
            r.hash,
            r.reason,
            r.image
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use auren_operator::api::{Phase, ReleaseRecord, RevisionRef};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    #[test]
    fn summary_and_history_tell_where_the_rollout_stands() {
        let st = AurenRuntimeStatus {
            phase: Some(Phase::RolledBack),
            reason: Some("AnalysisFailed".into()),
            stable: Some(RevisionRef {
                hash: "aaa".into(),
                image: "auren/runtime:1".into(),
            }),
            history: vec![ReleaseRecord {
                hash: "bbb".into(),
                image: "auren/runtime:2".into(),
                outcome: Outcome::RolledBack,
                reason: "AnalysisFailed".into(),
                at: Time(Timestamp::from_second(0).unwrap()),
            }],
            ..Default::default()
        };
        let text = summary("wearables", &st);
        assert!(text.contains("Phase:      RolledBack (AnalysisFailed)"));
        assert!(text.contains("Stable      aaa (auren/runtime:1)"));
        assert!(text.contains("Candidate   -"));
        let table = history(&st);
        assert!(table.lines().nth(1).unwrap().contains("bbb"));
        assert!(table.contains("RolledBack"));
    }

    #[test]
    fn summary_says_why_a_measurement_was_not_counted() {
        let st = AurenRuntimeStatus {
            phase: Some(Phase::Analyzing),
            reason: Some("DependencyOutage".into()),
            analysis: Some(auren_operator::api::AnalysisProgress {
                successes: 1,
                dependency_outages: 2,
                ..auren_operator::api::AnalysisProgress::begin(
                    "bbb",
                    Time(Timestamp::from_second(0).unwrap()),
                )
            }),
            measurements: vec![auren_operator::api::Measurement {
                check: "error-ratio".into(),
                revision: "bbb".into(),
                value: Some(0.3),
                threshold: "<= 0.01".into(),
                verdict: auren_operator::api::Verdict::DependencyOutage,
                reason: Some("dependency outage: kafka down for the stable release too".into()),
                at: Time(Timestamp::from_second(10).unwrap()),
            }],
            ..Default::default()
        };
        let text = summary("wearables", &st);
        assert!(
            text.contains("Phase:      Analyzing (DependencyOutage)"),
            "{text}"
        );
        assert!(text.contains("2 not counted (dependency outage)"), "{text}");
        assert!(
            text.contains(
                "DependencyOutage (dependency outage: kafka down for the stable release too)"
            ),
            "{text}"
        );
    }
}
