//! What every reconcile shares: the API client, the event recorder, metrics and an HTTP client
//! for the cache nodes' admin API.

use crate::operator::events::{Recorder, Reporter};
use crate::operator::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;

/// Name the operator reports events under (`reportingController`).
pub const CONTROLLER_NAME: &str = "mapcache-operator";

/// Shared state of the controller, handed to every reconcile.
#[derive(Clone)]
pub struct Context {
    /// The Kubernetes API.
    pub client: kube::Client,
    /// Publishes Events on the cache objects (one per action; see [`crate::operator::events`]).
    pub recorder: Recorder,
    /// Reconcile metrics (shared with `/metrics`).
    pub metrics: Arc<Metrics>,
    /// Plain-HTTP client for the cache nodes' admin API (`http://<podIP>:<adminPort>`).
    pub http: reqwest::Client,
    /// How long a healthy cache waits before the next reconcile when nothing triggers one
    /// (the maintenance poll of a cache may ask for sooner).
    pub resync: Duration,
}

impl Context {
    /// A context with a recorder reporting as `mapcache-operator` from `instance` (the pod name).
    pub fn new(client: kube::Client, instance: Option<String>, metrics: Arc<Metrics>) -> Self {
        let reporter = Reporter { controller: CONTROLLER_NAME.into(), instance };
        let recorder = Recorder::new(client.clone(), reporter);
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(30))
            .pool_idle_timeout(crate::operator::node_client::POOL_IDLE_TIMEOUT)
            .build()
            .unwrap_or_default();
        Self { client, recorder, metrics, http, resync: Duration::from_secs(300) }
    }
}
