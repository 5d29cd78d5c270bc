//! The kube-runtime Controller: watches MapCaches, the children they own and their pods, runs
//! [`reconcile`](crate::operator::reconcile::reconcile) for each change that matters
//! ([`triggers`](crate::operator::triggers): spec, children, pod readiness; never a status
//! write), and stops gracefully on SIGTERM/SIGINT (in-flight reconciles finish) or when
//! leadership is lost.

use crate::operator::OperatorArgs;
use crate::operator::build::{FIELD_MANAGER, INSTANCE_LABEL, MANAGED_BY_LABEL, NAME_LABEL};
use crate::operator::context::Context;
use crate::operator::crd::MapCache;
use crate::operator::http::{self, Health};
use crate::operator::leader::LeaderElector;
use crate::operator::metrics::Metrics;
use crate::operator::reconcile::{error_policy, reconcile};
use crate::operator::triggers::{cache_fingerprint, changes, child_fingerprint, pod_fingerprint};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::watch;

/// Why the operator stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("building the Kubernetes client from the kubeconfig: {0}")]
    Client(#[source] kube::Error),
    #[error("binding --metrics-addr {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("leader election: {0}")]
    LeaderElection(#[source] kube::Error),
    #[error("lost the leader Lease (could not renew for {0:?}); exiting so another replica leads")]
    LostLeadership(std::time::Duration),
    #[error("installing the signal handler: {0}")]
    Signal(#[source] std::io::Error),
}

/// Runs the operator: client, HTTP endpoints, leader election, controller.
pub async fn run(args: OperatorArgs) -> Result<(), RunError> {
    let client = kube::Client::try_default().await.map_err(RunError::Client)?;
    let metrics = Arc::new(Metrics::default());
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .map_err(|source| RunError::Bind { addr: args.metrics_addr, source })?;
    let health = Health { registry: Arc::new(registry), ready: ready.clone() };
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, http::router(health)).await {
            tracing::error!(%error, "metrics server stopped");
        }
    });

    // One shutdown signal for everything: SIGTERM/SIGINT flips it.
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(RunError::Signal)?;
    tokio::spawn(async move {
        tokio::select! {
            _ = sigterm.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        }
        let _ = shutdown_tx.send(true);
    });

    let identity = std::env::var("POD_NAME")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("mapcache-operator-{}", std::process::id()));
    ready.store(true, Ordering::Relaxed);

    if !args.leader_election {
        run_controller(client, &args, metrics, identity, wait_for(shutdown_rx)).await;
        return Ok(());
    }

    let elector = Arc::new(LeaderElector::new(
        client.clone(),
        &args.leader_election_namespace,
        &args.leader_election_lease_name,
        identity.clone(),
    ));
    tracing::info!(%identity, namespace = %args.leader_election_namespace, lease = %args.leader_election_lease_name, "waiting for the leader Lease");
    let mut waiting = shutdown_rx.clone();
    loop {
        match elector.try_acquire_or_renew().await {
            Ok(true) => break,
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "leader election attempt failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(elector.renew_every) => {}
            _ = waiting.changed() => return Ok(()),
        }
    }
    tracing::info!(%identity, "leading");
    metrics.leader.set(1);

    // Renew in the background; on a lost Lease, stop the controller and exit with an error.
    let (lost_tx, mut lost_rx) = watch::channel(false);
    let renewer = {
        let elector = elector.clone();
        tokio::spawn(async move {
            let mut last_renewal = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(elector.renew_every).await;
                match elector.try_acquire_or_renew().await {
                    Ok(true) => last_renewal = tokio::time::Instant::now(),
                    Ok(false) => {
                        tracing::error!("another replica took the leader Lease");
                        let _ = lost_tx.send(true);
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "renewing the leader Lease failed");
                        if last_renewal.elapsed() >= elector.lease_duration {
                            let _ = lost_tx.send(true);
                            return;
                        }
                    }
                }
            }
        })
    };
    let mut stop = shutdown_rx.clone();
    let stop_signal = async move {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => {}
            _ = lost_rx.wait_for(|lost| *lost) => {}
        }
    };
    run_controller(client, &args, metrics.clone(), identity, stop_signal).await;
    renewer.abort();
    metrics.leader.set(0);
    if *shutdown_rx.borrow() {
        if let Err(error) = elector.release().await {
            tracing::warn!(%error, "releasing the leader Lease failed");
        }
        Ok(())
    } else {
        Err(RunError::LostLeadership(elector.lease_duration))
    }
}

async fn wait_for(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stopped| *stopped).await;
}

/// Builds and drives the Controller until `stop` resolves (in-flight reconciles finish).
async fn run_controller(
    client: kube::Client,
    args: &OperatorArgs,
    metrics: Arc<Metrics>,
    identity: String,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let ctx = Arc::new(Context::new(client.clone(), Some(identity), metrics));
    let (caches, owned_config, pod_config) = watch_configs();
    macro_rules! api {
        ($kind:ty) => {
            match &args.namespace {
                Some(namespace) => Api::<$kind>::namespaced(client.clone(), namespace),
                None => Api::<$kind>::all(client.clone()),
            }
        };
    }
    macro_rules! owned {
        ($kind:ty) => {
            changes(
                watcher(api!($kind), owned_config.clone()).default_backoff(),
                child_fingerprint::<$kind>,
            )
        };
    }
    // The store holds every change (status too): a reconcile reads the cache as it is now. Only
    // the trigger stream is filtered.
    let (store, writer) = reflector::store();
    let caches = changes(
        watcher(api!(MapCache), caches).default_backoff().reflect(writer),
        cache_fingerprint,
    );
    let pods = changes(watcher(api!(Pod), pod_config).default_backoff(), pod_fingerprint);
    Controller::for_stream(caches, store)
        .owns_stream(owned!(StatefulSet))
        .owns_stream(owned!(Service))
        .owns_stream(owned!(ConfigMap))
        .owns_stream(owned!(Secret))
        .owns_stream(owned!(PodDisruptionBudget))
        .owns_stream(owned!(NetworkPolicy))
        .watches_stream(pods, |pod: Pod| {
            let cache = pod.labels().get(INSTANCE_LABEL)?.clone();
            Some(ObjectRef::<MapCache>::new(&cache).within(&pod.namespace()?))
        })
        .graceful_shutdown_on(stop)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((cache, _)) => tracing::debug!(cache = %cache.name, "reconciled"),
                Err(error) => tracing::debug!(%error, "reconcile failed"),
            }
        })
        .await;
    tracing::info!("controller stopped");
}

/// Watcher configs: every MapCache; only children and pods carrying our labels (so the operator
/// never caches the cluster's other Secrets and Pods).
fn watch_configs() -> (watcher::Config, watcher::Config, watcher::Config) {
    let owned = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={FIELD_MANAGER}"));
    let pods = watcher::Config::default()
        .labels(&format!("{NAME_LABEL}=mapcache,{MANAGED_BY_LABEL}={FIELD_MANAGER}"));
    (watcher::Config::default(), owned, pods)
}
