//! The controller (`mapcache operator`): reconciles `MapCache` resources into cache pods.
//!
//! # Layout
//! - [`crd`]: the `MapCache` custom resource (spec, status, schema validation).
//! - [`validate`] -> [`build`] -> [`apply`] -> [`observe`] -> [`status`]: the reconcile pipeline,
//!   one module per step, driven by [`reconcile`].
//! - [`context`]: what every reconcile shares (client, event recorder, metrics, HTTP client);
//!   [`events`]: the recorder, one Event per action naming its pod.
//! - [`controller`]: the kube-runtime Controller, its watches and graceful shutdown;
//!   [`triggers`]: which watch events are worth a reconcile.
//! - [`leader`]: leader election on a Lease. [`metrics`] and [`http`]: `/metrics`, `/healthz`,
//!   `/readyz`.
//! - [`maintain`] and [`rollout`]: tombstone-driven maintenance and hot updates behind the
//!   safe-deletion checklist (steps between observe and status); [`node_client`]: the cache
//!   node's admin API client they use.
//! - [`admin`]: the `mapcache admin` client (issue #6).

pub mod admin;
pub mod apply;
pub mod build;
pub mod context;
pub mod controller;
pub mod crd;
pub mod events;
pub mod http;
pub mod leader;
pub mod maintain;
pub mod metrics;
pub mod node_client;
pub mod observe;
pub mod reconcile;
pub mod rollout;
pub mod status;
pub mod triggers;
pub mod validate;

use std::net::SocketAddr;

/// Flags of `mapcache operator`.
#[derive(clap::Args, Debug, Clone)]
pub struct OperatorArgs {
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub metrics_addr: SocketAddr,
    /// Run the controller only while holding the Lease `mapcache-operator` (`--leader-election=false`
    /// for a single replica without RBAC on leases).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Namespace of the leader Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub leader_election_namespace: String,
    /// Name of the leader Lease; installs that share a Lease namespace but watch different
    /// namespaces (`--namespace`) each need their own.
    #[arg(long, default_value = leader::LEASE_NAME)]
    pub leader_election_lease_name: String,
    /// Watch MapCaches in this namespace only (default: all namespaces).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Log format.
    #[arg(long, env = "MAPCACHE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How logs are written to stderr.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Runs the operator until SIGTERM/SIGINT (success) or a fatal error (failure).
pub fn main(args: OperatorArgs) -> std::process::ExitCode {
    init_logging(args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("mapcache operator: starting the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(controller::run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %error, "operator stopped");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    // try_init: a second call (tests) leaves the first subscriber in place.
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
