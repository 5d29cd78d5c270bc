//! `local-cluster`: a real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler) and the process kubelet on this machine, until Ctrl-C. With `--example NAME`
//! it also installs the Helm chart (CRD, RBAC), runs the operator under the chart's
//! ServiceAccount and applies `manifests/examples/NAME.yaml`. See docs/e2e.md.

use clap::Parser;
use e2e::binaries;
use e2e::cluster::{ClusterConfig, LocalCluster};
use e2e::scenario::{MANAGER, OPERATOR_NAMESPACE, install_chart_once, operator_kubeconfig};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "local-cluster",
    about = "A real Kubernetes control plane whose pods run as local processes"
)]
struct Args {
    /// State directory: PKI, etcd, kubeconfigs, every log, PV directories, pods. Emptied at
    /// start (an error if it cannot be): every run starts from a fresh cluster.
    #[arg(long, default_value = "target/local-cluster")]
    state_dir: PathBuf,
    /// Start from what the state directory holds instead: the previous run's objects (etcd)
    /// and PV directories, so its caches come back from their snapshots.
    #[arg(long)]
    keep_state: bool,
    /// Also install the chart, run the operator and apply manifests/examples/<EXAMPLE>.yaml
    /// (basic, sidecar or tuned) into the namespace `default`.
    #[arg(long)]
    example: Option<String>,
    /// The mapcache binary pods and the operator run (default: $MAPCACHE_BIN, else the one next
    /// to this binary).
    #[arg(long)]
    mapcache_bin: Option<PathBuf>,
    /// Do not run the kubelet (control plane only; pods stay Pending).
    #[arg(long)]
    no_kubelet: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // kube's client logs every failed request at ERROR, and the readiness polls
                // while the API server starts are expected to fail.
                .unwrap_or_else(|_| "info,kube=warn,kube_client=off".into()),
        )
        .init();
    let args = Args::parse();
    let state_dir = std::path::absolute(&args.state_dir).unwrap_or(args.state_dir.clone());
    let config = ClusterConfig {
        kubelet: !args.no_kubelet,
        state_dir: Some(state_dir),
        keep_state: args.keep_state,
        mapcache_bin: args.mapcache_bin.clone().unwrap_or_else(binaries::mapcache),
    };
    let mapcache_bin = config.mapcache_bin.clone();
    let cluster = match LocalCluster::start(config).await {
        Ok(cluster) => cluster,
        Err(error) => {
            eprintln!("local-cluster: {error}");
            return ExitCode::FAILURE;
        }
    };
    let kubeconfig = cluster.kubeconfig_path().to_path_buf();
    let kubectl = binaries::kubectl().unwrap_or_default();
    let mut operator = None;
    if let Some(example) = &args.example {
        match run_example(&cluster, example, &mapcache_bin).await {
            Ok(child) => operator = Some(child),
            Err(error) => {
                eprintln!("local-cluster: --example {example}: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!("API server:  {}", cluster.control_plane.server);
    println!("kubeconfig:  {}", kubeconfig.display());
    println!("kubectl:     {}", kubectl.display());
    println!("logs:        {}", cluster.control_plane.dir.join("logs").display());
    println!("pod logs:    {}", cluster.logs_dir().display());
    println!("pod network: {} (reachable from this machine)", cluster.pod_cidr());
    if operator.is_some() {
        println!("operator:    {}", cluster.state_dir.join("operator.log").display());
    }
    println!("try:         export KUBECONFIG={}", kubeconfig.display());
    println!("             {} get nodes,pods,mc -A", kubectl.display());
    println!("Ctrl-C (or SIGTERM) stops the operator, every pod and the control plane.");
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                eprintln!("local-cluster: cannot wait for SIGTERM: {error}");
                return ExitCode::FAILURE;
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    if let Some(mut operator) = operator {
        let _ = operator.kill().await;
    }
    drop(cluster);
    ExitCode::SUCCESS
}

/// The chart (with Helm's library), the operator under its ServiceAccount watching `default`,
/// and the example applied with kubectl.
async fn run_example(
    cluster: &LocalCluster,
    example: &str,
    mapcache_bin: &std::path::Path,
) -> Result<tokio::process::Child, String> {
    let manifest = binaries::repo_root().join(format!("manifests/examples/{example}.yaml"));
    if !manifest.exists() {
        return Err(format!("no example {}", manifest.display()));
    }
    let kubeconfig = cluster.kubeconfig_path().to_path_buf();
    let install = kubeconfig.clone();
    tokio::task::spawn_blocking(move || install_chart_once(&install))
        .await
        .map_err(|e| e.to_string())??;
    let client = cluster.client().await.map_err(|e| e.to_string())?;
    let operator_config = cluster.state_dir.join("operator.kubeconfig");
    std::fs::write(&operator_config, operator_kubeconfig(&client, &kubeconfig, "default").await)
        .map_err(|e| e.to_string())?;
    let log =
        std::fs::File::create(cluster.state_dir.join("operator.log")).map_err(|e| e.to_string())?;
    let operator = tokio::process::Command::new(mapcache_bin)
        .args(["operator", "--metrics-addr=127.0.0.1:0", "--leader-election=true"])
        .arg(format!("--leader-election-namespace={OPERATOR_NAMESPACE}"))
        .env("KUBECONFIG", &operator_config)
        .env("POD_NAME", "local-cluster-operator")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("start the operator: {e}"))?;
    let output = std::process::Command::new(binaries::kubectl()?)
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(["apply", "--server-side", &format!("--field-manager={MANAGER}"), "-f"])
        .arg(&manifest)
        .output()
        .map_err(|e| format!("kubectl apply: {e}"))?;
    if !output.status.success() {
        return Err(format!("kubectl apply: {}", String::from_utf8_lossy(&output.stderr)));
    }
    print!("{}", String::from_utf8_lossy(&output.stdout));
    Ok(operator)
}
