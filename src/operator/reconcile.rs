//! The reconcile pipeline of one `MapCache`:
//!
//! ```text
//! validate (pure) -> build (pure) -> apply -> observe -> [maintain -> roll] -> update_status
//! ```
//!
//! Each step is its own module; only apply, observe and update_status talk to the API server.
//! An invalid spec stops the pipeline before anything is applied or deleted: the cache gets
//! `InvalidSpec=True` with the precise message and a Warning Event.

use crate::operator::build;
use crate::operator::context::Context;
use crate::operator::crd::MapCache;
use crate::operator::events::{self, Event, EventType};
use crate::operator::{apply, maintain, observe, rollout, status, validate};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A failed reconcile. Variant names double as the `error` label of
/// `mapcache_operator_reconcile_errors_total` ([`Error::metric_label`]). An invalid spec is not
/// an `Error`: it is reported in status and counted under [`INVALID_SPEC_LABEL`], and the
/// reconcile succeeds (retrying cannot fix it; a spec change will).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cache has no namespace")]
    MissingNamespace,
    #[error(transparent)]
    Apply(#[from] apply::Error),
    #[error(transparent)]
    Observe(#[from] observe::Error),
    #[error(transparent)]
    Rollout(#[from] rollout::step::Error),
    #[error("updating status: {0}")]
    UpdateStatus(#[source] kube::Error),
    #[error("reading the current status: {0}")]
    ReadStatus(#[source] kube::Error),
}

impl Error {
    /// The variant name, used as a metric label.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::MissingNamespace => "MissingNamespace",
            Self::Apply(_) => "Apply",
            Self::Observe(_) => "Observe",
            Self::Rollout(_) => "Rollout",
            Self::UpdateStatus(_) => "UpdateStatus",
            Self::ReadStatus(_) => "ReadStatus",
        }
    }
}

/// The `error` label an invalid spec is counted under.
pub const INVALID_SPEC_LABEL: &str = "InvalidSpec";

/// Reconciles one cache: the controller's reconciler. Counts and times every run.
pub async fn reconcile(mc: Arc<MapCache>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    ctx.metrics.reconciles.inc();
    let result = run_pipeline(&mc, &ctx).await;
    ctx.metrics.observe_duration(started.elapsed());
    if let Err(error) = &result {
        ctx.metrics.count_error(error.metric_label());
    }
    result
}

/// What the controller does after a failed reconcile: log, and retry with a short delay (the
/// controller's own backoff spaces repeated failures further).
pub fn error_policy(mc: Arc<MapCache>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(cache = %mc.name_any(), namespace = ?mc.namespace(), error = %error, "reconcile failed");
    Action::requeue(Duration::from_secs(15))
}

async fn run_pipeline(mc: &MapCache, ctx: &Context) -> Result<Action, Error> {
    if mc.namespace().is_none() {
        return Err(Error::MissingNamespace);
    }
    let now = Time(Timestamp::now());

    // 1. validate (pure)
    let validated = match validate::validate(mc) {
        Ok(validated) => validated,
        Err(invalid) => return reject(mc, ctx, invalid, &now).await,
    };

    // 2. build (pure); the admin token is read first so an existing one is kept.
    let admin_token = apply::admin_token(&ctx.client, mc).await?;
    let children = build::build(mc, &validated, &admin_token);

    // 3. apply; a refusal (an immutable field, a quota, RBAC) is shown on the cache too.
    if let Err(error) = apply::apply(&ctx.client, mc, &children).await {
        publish(ctx, mc, EventType::Warning, "ApplyFailed", "Apply", error.to_string()).await;
        // On the status as the API server has it now: the cached copy can lag behind this
        // operator's own last write, and writing it back whole would undo that write (a
        // rollout's recorded checklist evidence, say).
        let api: Api<MapCache> =
            Api::namespaced(ctx.client.clone(), &mc.namespace().unwrap_or_default());
        let fresh = api.get_status(&mc.name_any()).await.map_err(Error::ReadStatus)?;
        let failed = status::apply_failed_status(&fresh, error.to_string(), &now);
        if fresh.status.as_ref() != Some(&failed)
            && let Err(status_error) = status::update_status(&ctx.client, mc, &failed).await
        {
            tracing::warn!(cache = %mc.name_any(), error = %status_error, "recording ApplyFailed in status failed");
        }
        return Err(error.into());
    }

    // 4. observe
    let observed =
        observe::observe(&ctx.client, mc, children.update_revision.clone(), admin_token).await?;
    let mut new_status = status::observed_status(mc, &observed, mc.status.as_ref(), &now);

    // 5. maintain and 6. roll: each records its decisions, figures and checklist evidence in
    //    the status written below, and says how soon it wants to look again.
    rollout::step::refresh_owned_status(ctx, mc, &mut new_status)
        .await
        .map_err(Error::ReadStatus)?;
    let maintain_requeue = maintain::run(ctx, mc, &observed, &mut new_status).await;
    let rollout_requeue = rollout::run(ctx, mc, &observed, &mut new_status).await?;

    // 7. update_status
    status::set_phase(&mut new_status, mc.spec.replicas);
    let previous_revision = mc.status.as_ref().and_then(|s| s.update_revision.as_deref());
    if let Some(previous) = previous_revision.filter(|&p| p != observed.update_revision) {
        let outdated = observed.outdated_pods().count();
        let note = format!(
            "pod template changed: revision {previous} -> {}; {outdated} pods to replace one at a time",
            observed.update_revision
        );
        publish(ctx, mc, EventType::Normal, "RevisionChanged", "Apply", note).await;
    }
    if status::worth_writing(mc.status.as_ref(), &new_status) {
        status::update_status(&ctx.client, mc, &new_status).await.map_err(Error::UpdateStatus)?;
    }
    let requeue = [maintain_requeue, rollout_requeue]
        .into_iter()
        .flatten()
        .fold(validated.poll_interval.min(ctx.resync), Duration::min);
    Ok(Action::requeue(requeue))
}

/// An invalid spec: status and a Warning Event, nothing applied, nothing deleted. Counted as an
/// `InvalidSpec` error, but not retried: only a spec change (a new generation) can fix it.
async fn reject(
    mc: &MapCache,
    ctx: &Context,
    invalid: validate::Error,
    now: &Time,
) -> Result<Action, Error> {
    let message = invalid.to_string();
    tracing::warn!(cache = %mc.name_any(), namespace = ?mc.namespace(), %message, "invalid spec");
    ctx.metrics.count_error(INVALID_SPEC_LABEL);
    publish(ctx, mc, EventType::Warning, "InvalidSpec", "Validate", message.clone()).await;
    let new_status = status::invalid_status(mc, message, now);
    if mc.status.as_ref() != Some(&new_status) {
        status::update_status(&ctx.client, mc, &new_status).await.map_err(Error::UpdateStatus)?;
    }
    Ok(Action::await_change())
}

/// Publishes an Event about the cache as a whole; a failure is logged, never fails the reconcile.
pub async fn publish(
    ctx: &Context,
    mc: &MapCache,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    publish_event(ctx, mc, Event::new(type_, reason, action, note)).await;
}

/// Publishes `event` on the cache (about one of its pods when it names one); a failure is
/// logged, never fails the reconcile.
pub async fn publish_event(ctx: &Context, mc: &MapCache, event: Event) {
    if let Err(error) = ctx.recorder.publish(&event, &mc.object_ref(&())).await {
        tracing::warn!(cache = %mc.name_any(), %error, reason = %event.reason, "publishing event failed");
    }
}

/// A reference to the cache's pod `name`, with the uid `observe` saw.
pub fn pod_reference(mc: &MapCache, observed: &observe::Observed, name: &str) -> ObjectReference {
    let uid = observed.pods.iter().find(|p| p.name == name).map(|p| p.uid.as_str());
    events::pod_reference(mc.namespace(), name, uid)
}
