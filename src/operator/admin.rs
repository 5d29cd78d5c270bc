//! `mapcache admin`: the operator's maintenance and drain steps by hand (docs/rollout.md).
//!
//! ```text
//! mapcache admin stats     --namespace N --cache C [--pod P] [-o json]
//! mapcache admin compact   --namespace N --cache C [--pod P] [--rebuild]
//! mapcache admin drain     --namespace N --cache C --pod P
//! mapcache admin checklist --namespace N --cache C [--pod P] [--quiet-period 5s]
//! mapcache admin drain --local --admin-port=9090 --token-file=/etc/mapcache/admin/token
//! ```
//!
//! Exit codes scripts can rely on: 0 done and every check passed; 1 a check failed or a node
//! refused (409 already running, 503 draining, snapshot not verified); 2 usage error, or a node or
//! the Kubernetes API could not be reached or refused the credentials.

mod commands;
mod table;
mod target;

use crate::operator::node_client::MaintenanceKind;
use commands::{ChecklistSettings, Report, Status};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code of a usage, connection or Kubernetes error.
pub const EXIT_USAGE_OR_CONNECTION: u8 = 2;
/// Exit code of a failed check or a refused operation.
pub const EXIT_CHECK_FAILED: u8 = 1;

#[derive(clap::Args, Debug)]
pub struct AdminArgs {
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum AdminCommand {
    /// Engine figures of each pod: keys, tombstones, ratios, memory, maintenance phase.
    Stats(TargetArgs),
    /// Start an online compaction (or with --rebuild, a shrinking rebuild) on each pod.
    Compact {
        #[command(flatten)]
        target: TargetArgs,
        /// Rebuild into the smallest array for the live keys (returns memory) instead.
        #[arg(long)]
        rebuild: bool,
    },
    /// Drain a pod: refuse writes, stop accepting connections, write and verify a snapshot.
    /// Needs --pod (or --local): draining every pod at once would take the cache offline.
    Drain(TargetArgs),
    /// The safe-deletion checklist of each pod, with evidence; exit 1 if any item fails.
    Checklist {
        #[command(flatten)]
        target: TargetArgs,
        /// No client activity for this long counts as quiet (default: spec.rollout.quietPeriod).
        #[arg(long)]
        quiet_period: Option<String>,
        /// Length of the lock profile (default: spec.rollout.lockProfileSeconds).
        #[arg(long)]
        lock_profile_seconds: Option<u32>,
    },
}

/// Which pods, and how to reach them.
#[derive(clap::Args, Debug, Clone)]
pub struct TargetArgs {
    /// Namespace of the MapCache (default: the kubeconfig context's namespace).
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Name of the MapCache.
    #[arg(long)]
    pub cache: Option<String>,
    /// Only this pod of the cache.
    #[arg(long)]
    pub pod: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Talk to the node on this machine ($POD_IP, else 127.0.0.1) without Kubernetes
    /// (the pod's preStop hook uses `drain --local`).
    #[arg(long)]
    pub local: bool,
    /// With --local: the node's address instead of $POD_IP / 127.0.0.1.
    #[arg(long, requires = "local")]
    pub address: Option<String>,
    /// Admin port (default: the MapCache's spec.engine.adminPort; 9090 with --local).
    #[arg(long)]
    pub admin_port: Option<u16>,
    /// File holding the admin token (default: the Secret `<cache>-admin-token`).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

/// Errors before any node answered; all exit 2.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot read token file {path}: {source}")]
    TokenFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    #[error("no usable Kubernetes configuration (KUBECONFIG, ~/.kube/config or in-cluster): {0}")]
    KubeConfig(#[source] kube::Error),
    #[error("Kubernetes API: {what}: {source}")]
    Kube {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
}

impl AdminError {
    fn kube(what: &'static str) -> impl FnOnce(kube::Error) -> AdminError {
        move |source| AdminError::Kube { what, source }
    }
}

pub fn main(args: AdminArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_USAGE_OR_CONNECTION);
        }
    };
    let output = target_args(&args.command).output;
    match runtime.block_on(run(args)) {
        Ok(report) => {
            for error in &report.errors {
                eprintln!("error: {error}");
            }
            match output {
                Output::Table => print!("{}", report.table.render()),
                Output::Json => match serde_json::to_string_pretty(&report.json) {
                    Ok(json) => println!("{json}"),
                    Err(error) => eprintln!("error: cannot encode JSON: {error}"),
                },
            }
            ExitCode::from(report.status as u8)
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_USAGE_OR_CONNECTION)
        }
    }
}

fn target_args(command: &AdminCommand) -> &TargetArgs {
    match command {
        AdminCommand::Stats(target) | AdminCommand::Drain(target) => target,
        AdminCommand::Compact { target, .. } | AdminCommand::Checklist { target, .. } => target,
    }
}

async fn run(args: AdminArgs) -> Result<Report, AdminError> {
    let target = target_args(&args.command);
    if !target.local && target.cache.is_none() {
        return Err(AdminError::Usage("--cache is required (or --local on a cache pod)".into()));
    }
    if matches!(args.command, AdminCommand::Drain(_)) && !target.local && target.pod.is_none() {
        return Err(AdminError::Usage(
            "drain needs --pod (draining every pod at once would take the whole cache offline)"
                .into(),
        ));
    }
    let resolved = target::resolve(target).await?;
    if resolved.targets.is_empty() {
        return Err(AdminError::Usage("the cache has no pods".into()));
    }
    let report = match &args.command {
        AdminCommand::Stats(_) => commands::stats(&resolved.targets).await,
        AdminCommand::Compact { rebuild, .. } => {
            let kind = if *rebuild { MaintenanceKind::Rebuild } else { MaintenanceKind::Compact };
            commands::compact(&resolved.targets, kind).await
        }
        AdminCommand::Drain(_) => commands::drain(&resolved.targets).await,
        AdminCommand::Checklist { quiet_period, lock_profile_seconds, .. } => {
            let settings = ChecklistSettings::resolve(
                resolved.kube.as_ref(),
                quiet_period.as_deref(),
                *lock_profile_seconds,
            )?;
            commands::run_checklist(&resolved.targets, resolved.kube.as_ref(), &settings).await
        }
    };
    debug_assert!(report.status <= Status::ConnectionError);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        admin: AdminArgs,
    }

    fn parse(args: &[&str]) -> Result<AdminArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("admin").chain(args.iter().copied())).map(|c| c.admin)
    }

    #[test]
    fn prestop_command_line_parses() {
        let args = parse(&[
            "drain",
            "--local",
            "--admin-port=9090",
            "--token-file=/etc/mapcache/admin/token",
        ])
        .expect("the preStop hook's command line");
        let AdminCommand::Drain(target) = args.command else {
            panic!("expected drain, got {:?}", args.command);
        };
        assert!(target.local);
        assert_eq!(target.admin_port, Some(9090));
        assert_eq!(target.token_file, Some(PathBuf::from("/etc/mapcache/admin/token")));
    }

    #[test]
    fn json_output_and_targets_parse() {
        let args = parse(&["stats", "-n", "prod", "--cache", "mc", "--pod", "mc-1", "-o", "json"])
            .expect("stats");
        let target = target_args(&args.command);
        assert_eq!(target.namespace.as_deref(), Some("prod"));
        assert_eq!(target.cache.as_deref(), Some("mc"));
        assert_eq!(target.pod.as_deref(), Some("mc-1"));
        assert_eq!(target.output, Output::Json);
    }

    #[test]
    fn bad_usage_is_a_clap_error_with_exit_code_two() {
        let error = parse(&["stats", "-o", "yaml"]).unwrap_err();
        assert_eq!(error.exit_code(), 2);
        let error = parse(&["stats", "--address", "10.0.0.1"]).unwrap_err();
        assert_eq!(error.exit_code(), 2);
    }

    fn run_blocking(args: &[&str]) -> Result<Report, AdminError> {
        let args = parse(args).expect("parses");
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(run(args))
    }

    #[test]
    fn cache_is_required_without_local() {
        let error = run_blocking(&["stats"]).expect_err("usage error");
        assert_eq!(error.to_string(), "--cache is required (or --local on a cache pod)");
    }

    #[test]
    fn drain_without_pod_is_refused() {
        let error = run_blocking(&["drain", "--cache", "mc"]).expect_err("usage error");
        assert_eq!(
            error.to_string(),
            "drain needs --pod (draining every pod at once would take the whole cache offline)"
        );
    }

    #[test]
    fn local_stats_against_a_closed_port_is_a_connection_error() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
            listener.local_addr().expect("addr").port()
        };
        let port = port.to_string();
        let report =
            run_blocking(&["stats", "--local", "--address", "127.0.0.1", "--admin-port", &port])
                .expect("a report");
        assert_eq!(report.status, Status::ConnectionError);
        assert_eq!(report.status as u8, EXIT_USAGE_OR_CONNECTION);
    }
}
