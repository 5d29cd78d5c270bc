//! The API-server stand-in: plain HTTP on a loopback port, served to kube-rs clients and the
//! real operator binary unchanged.
//!
//! - `store`: objects, resourceVersions, watch history, write semantics, garbage collection
//! - `routes`: URL parsing and verb dispatch
//! - `watch`: watch streams with bookmarks and 410 Gone
//! - `apply`: server-side apply and managedFields
//! - `patch`: merge, JSON and strategic merge patches
//! - `registry`: built-in kinds and registered CRDs; discovery documents
//! - `selector`: label and field selectors
//! - `defaults`, `schema`: CRD schema defaulting, pruning and validation
//! - `eviction`: the Eviction subresource against PodDisruptionBudgets
//! - `error`: `Status` error bodies

pub mod apply;
pub mod defaults;
pub mod error;
pub mod eviction;
pub mod patch;
pub mod registry;
mod routes;
pub mod schema;
pub mod selector;
pub mod store;
pub mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use store::Store;
use tokio::task::JoinHandle;

/// Shared by every request handler.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<Store>,
    /// How often a watch with `allowWatchBookmarks=true` gets a BOOKMARK.
    pub bookmark_interval: Duration,
}

/// Settings of one stand-in.
#[derive(Clone, Debug)]
pub struct ApiServerConfig {
    /// `127.0.0.1:0` picks a free port.
    pub bind: SocketAddr,
    pub bookmark_interval: Duration,
    /// Changes kept for watch resume; older resourceVersions get 410 Gone.
    pub history_limit: usize,
    /// How often the garbage collector scans owner references.
    pub gc_interval: Duration,
}

impl Default for ApiServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            bookmark_interval: Duration::from_secs(1),
            history_limit: 10_000,
            gc_interval: Duration::from_millis(100),
        }
    }
}

/// A running stand-in; dropping it stops the server and the garbage collector.
pub struct ApiServer {
    pub addr: SocketAddr,
    pub store: Arc<Store>,
    tasks: Vec<JoinHandle<()>>,
}

impl ApiServer {
    pub async fn start(config: ApiServerConfig) -> std::io::Result<Self> {
        let store = Arc::new(Store::new(config.history_limit));
        let state = ApiState { store: store.clone(), bookmark_interval: config.bookmark_interval };
        let app = axum::Router::new().fallback(routes::handle).with_state(state);
        let listener = tokio::net::TcpListener::bind(config.bind).await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "the API-server stand-in stopped");
            }
        });
        let gc_store = store.clone();
        let gc = tokio::spawn(async move {
            let mut tick = tokio::time::interval(config.gc_interval);
            loop {
                tick.tick().await;
                // Several passes settle chains (owner -> child -> grandchild) within one tick.
                while gc_store.collect_garbage() > 0 {}
            }
        });
        Ok(Self { addr, store, tasks: vec![server, gc] })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube client for this stand-in, default namespace `default`.
    pub fn client(&self) -> Result<kube::Client, kube::Error> {
        let url = self
            .url()
            .parse()
            .map_err(|e: http::uri::InvalidUri| kube::Error::Service(Box::new(e)))?;
        kube::Client::try_from(kube::Config::new(url))
    }

    /// The kubeconfig YAML that points at this stand-in (no auth).
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: {}\nusers:\n- name: local\n  user: {{}}\ncontexts:\n- name: local\n  context:\n    cluster: local\n    user: local\n    namespace: default\ncurrent-context: local\n",
            self.url()
        )
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
