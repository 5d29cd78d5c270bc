//! `local-cluster`: the API-server stand-in, the StatefulSet/EndpointSlice/PDB controllers and the
//! process kubelet on this machine, until Ctrl-C. See docs/e2e.md.

use clap::Parser;
use e2e::apiserver::ApiServerConfig;
use e2e::cluster::{ClusterConfig, LocalCluster};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "local-cluster",
    about = "A Kubernetes stand-in that runs mapcache pods as local processes"
)]
struct Args {
    /// Address of the API server (plain HTTP, no auth).
    #[arg(long, default_value = "127.0.0.1:6443")]
    bind: SocketAddr,
    /// State directory: kubeconfig, PVC directories, pod volumes, container logs.
    #[arg(long, default_value = "target/local-cluster")]
    state_dir: PathBuf,
    /// Pods get 127.0.<ip-octet>.N.
    #[arg(long, default_value_t = 1)]
    ip_octet: u8,
    /// The mapcache binary pods run (default: $MAPCACHE_BIN, else target/debug/mapcache).
    #[arg(long)]
    mapcache_bin: Option<PathBuf>,
    /// Do not run pods (API server and controllers only).
    #[arg(long)]
    no_kubelet: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .init();
    let args = Args::parse();
    let mut config = ClusterConfig {
        api: ApiServerConfig { bind: args.bind, ..ApiServerConfig::default() },
        kubelet: !args.no_kubelet,
        ip_octet: args.ip_octet,
        state_dir: Some(args.state_dir.clone()),
        ..ClusterConfig::default()
    };
    if let Some(bin) = args.mapcache_bin {
        config.mapcache_bin = bin;
    }
    let cluster = match LocalCluster::start(config).await {
        Ok(cluster) => cluster,
        Err(error) => {
            eprintln!("local-cluster: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let kubeconfig =
        std::fs::canonicalize(&cluster.kubeconfig_path).unwrap_or(cluster.kubeconfig_path.clone());
    println!("API server:  {}", cluster.api.url());
    println!("kubeconfig:  {}", kubeconfig.display());
    println!("pod logs:    {}", cluster.logs_dir().display());
    println!("try:         export KUBECONFIG={}", kubeconfig.display());
    println!("Ctrl-C stops the cluster and every pod process.");
    if let Err(error) = tokio::signal::ctrl_c().await {
        eprintln!("local-cluster: cannot wait for Ctrl-C: {error}");
    }
    drop(cluster);
    // Let the aborted pod workers drop their processes (kill on drop) before exiting.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    std::process::ExitCode::SUCCESS
}
