//! `process-kubelet`: a Node of a real Kubernetes control plane whose pods run as local
//! processes, each pod in its own network namespace (see `e2e::kubelet`).
//!
//! Runs until SIGTERM or SIGINT, then stops every container (SIGTERM, 5 s, SIGKILL) and whatever
//! else runs in a pod's netns, removes every pod's netns and veth, and exits 0: the node is shut
//! down. Killed with SIGKILL it leaves
//! its containers running; started again with the same flags it adopts them.

use clap::Parser;
use e2e::kubelet::{self, KubeletConfig, PodCidr};
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

/// A process kubelet for the local e2e cluster.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Admin (system:masters) kubeconfig with the cluster CA.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// The Node's name.
    #[arg(long)]
    node_name: String,
    /// State directory (pods, logs, PV directories); it and its parents must be
    /// world-traversable for containers that run as another user.
    #[arg(long)]
    root: PathBuf,
    /// The node's private pod network, a.b.c.0/24 (the bridge gets .1, pods .10 upward).
    #[arg(long)]
    pod_cidr: PodCidr,
    /// The node's bridge interface (created if absent; at most 15 characters).
    #[arg(long)]
    bridge: String,
    /// Program of containers whose image contains `mapcache`.
    #[arg(long)]
    mapcache_bin: PathBuf,
    /// Program of every other container (the sidecar-app stand-in).
    #[arg(long)]
    app_bin: PathBuf,
    /// First crash-restart delay (after the immediate first restart), in seconds or e.g. 500ms.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    restart_backoff_initial: Duration,
    /// Cap of the crash-restart delay.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    restart_backoff_max: Duration,
    /// Run the local-dir PV provisioner (one per cluster is enough; extra ones are harmless).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    provisioner: bool,
}

/// `10s`, `500ms`, `5m`, or plain seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) =
        text.find(|c: char| !c.is_ascii_digit()).map_or((text, ""), |i| text.split_at(i));
    let n: u64 = number.parse().map_err(|e| format!("{text}: {e}"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        other => Err(format!("{text}: unknown unit {other:?} (use ms, s or m)")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KUBELET_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    if args.bridge.len() > 15 {
        eprintln!("--bridge {}: interface names have at most 15 characters", args.bridge);
        return ExitCode::from(2);
    }
    let kubeconfig = match Kubeconfig::read_from(&args.kubeconfig) {
        Ok(kubeconfig) => kubeconfig,
        Err(error) => {
            eprintln!("kubeconfig {}: {error}", args.kubeconfig.display());
            return ExitCode::FAILURE;
        }
    };
    let client =
        match kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| e.to_string())
            .and_then(|config| kube::Client::try_from(config).map_err(|e| e.to_string()))
        {
            Ok(client) => client,
            Err(error) => {
                eprintln!("client from {}: {error}", args.kubeconfig.display());
                return ExitCode::FAILURE;
            }
        };
    // Absolute: the root's paths go into PV objects and into containers' args and env.
    let root = match std::path::absolute(&args.root) {
        Ok(root) => root,
        Err(error) => {
            eprintln!("--root {}: {error}", args.root.display());
            return ExitCode::from(2);
        }
    };
    let config = KubeletConfig {
        node_name: args.node_name,
        root,
        pod_cidr: args.pod_cidr,
        bridge: args.bridge,
        mapcache_bin: args.mapcache_bin,
        app_bin: args.app_bin,
        restart_backoff_initial: args.restart_backoff_initial,
        restart_backoff_max: args.restart_backoff_max,
        provisioner: args.provisioner,
    };
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let (Ok(mut term), Ok(mut int)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        eprintln!("cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("signal received: shutting the node down");
        stop_tx.send_replace(true);
    });
    tracing::info!(node = config.node_name, cidr = %config.pod_cidr, bridge = config.bridge, "process kubelet starting");
    match kubelet::run(client, config, stop).await {
        Ok(()) => {
            tracing::info!("node shut down");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "process kubelet failed");
            ExitCode::FAILURE
        }
    }
}
