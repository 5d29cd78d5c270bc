//! The `roll` step of the reconcile pipeline: drives [`machine::next`] and carries out its
//! actions against the pods, the nodes' admin API and the Eviction API, recording the checklist
//! evidence in `status.pods[].checklist`, the rollout state in `status.rollout`, the
//! `RollingUpdate` condition, Events and metrics.
//!
//! The one write that cannot wait for `update_status` at the end of the pipeline is the eviction
//! intent: `status.rollout` with `evictedUid` is patched *before* the Eviction call, so a restarted
//! operator knows the pod was (maybe) evicted and never evicts it, or its replacement, again.

use super::checklist;
use super::machine::{self, Action, ChecklistFacts, EvictionOutcome, PodView, Settings};
use crate::operator::build::headless_service_name;
use crate::operator::context::Context;
use crate::operator::crd::{ChecklistItem, MapCache, MapCacheStatus};
use crate::operator::events::EventType;
use crate::operator::events::{self, Event};
use crate::operator::maintain::duration::parse_duration;
use crate::operator::node_client::NodeClient;
use crate::operator::observe::{Observed, ObservedPod};
use crate::operator::reconcile::{pod_reference, publish, publish_event};
use crate::operator::status::{condition, set_condition, update_status};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use std::time::Duration;

/// Label put on a pod once it is drained (DESIGN.md section 5, step 1).
pub const DRAINING_LABEL: &str = "mapcache.io/draining";

/// Bound on decisions per reconcile (each gathered fact costs one); the machine needs at most
/// five for a pod (drain, checklist, evict, probe, next pod's drain).
const MAX_DECISIONS: usize = 8;

/// Why the roll step stopped the reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The eviction intent could not be written, so nothing was evicted.
    #[error("recording the eviction intent in status: {0}")]
    PersistIntent(#[source] kube::Error),
}

/// Facts gathered during this reconcile for the current step.
#[derive(Default)]
struct Facts {
    checklist: Option<ChecklistFacts>,
    eviction: Option<EvictionOutcome>,
    drain_error: Option<String>,
    restored_keys: Option<u64>,
}

/// The spec's rollout settings; durations were validated already, defaults guard the rest.
pub fn settings(mc: &MapCache) -> Settings {
    let rollout = &mc.spec.rollout;
    Settings {
        checklist_timeout: parse_duration(
            "spec.rollout.checklistTimeout",
            &rollout.checklist_timeout,
        )
        .unwrap_or(Duration::from_secs(300)),
        on_timeout: rollout.on_timeout,
        allow_data_loss: rollout.allow_data_loss,
        persistence_enabled: mc.spec.persistence.enabled,
        replicas: mc.spec.replicas,
    }
}

/// The machine's view of the observed pods.
pub fn pod_views(observed: &Observed) -> Vec<PodView> {
    observed
        .pods
        .iter()
        .map(|pod| PodView {
            name: pod.name.clone(),
            uid: pod.uid.clone(),
            ordinal: pod.ordinal,
            ready: pod.ready,
            revision: pod.revision.clone(),
            terminating: pod.terminating,
        })
        .collect()
}

/// Replaces the fields the maintain and roll steps own (`rollout`, and per pod `checklist`,
/// `lastCompaction`, `lastRebuild`) with the API server's current values.
///
/// The reconcile's `MapCache` comes from the controller's cache, which can lag behind this
/// operator's own last status write (a reconcile triggered by a pod event); deciding on a stale
/// rollout state would repeat steps, and writing status back from a stale copy would erase the
/// evidence the last reconcile recorded (the e2e hot update lost a finished pod's checklist that
/// way when this read was skipped once the rollout had ended). So it is read on every reconcile:
/// one GET. A read error fails the reconcile (it is retried): going on with the cached values
/// would write them back over newer evidence (the real control plane showed a replaced pod's
/// `disruption-allowed` item lost in a hot update under load).
pub async fn refresh_owned_status(
    ctx: &Context,
    mc: &MapCache,
    status: &mut MapCacheStatus,
) -> Result<(), kube::Error> {
    let api: Api<MapCache> =
        Api::namespaced(ctx.client.clone(), &mc.namespace().unwrap_or_default());
    let fresh = api.get_status(&mc.name_any()).await?.status.unwrap_or_default();
    status.rollout = fresh.rollout;
    for pod in status.pods.iter_mut() {
        if let Some(known) = fresh.pods.iter().find(|p| p.name == pod.name) {
            pod.checklist = known.checklist.clone();
            pod.last_compaction = known.last_compaction.clone();
            pod.last_rebuild = known.last_rebuild.clone();
        }
    }
    Ok(())
}

/// Runs the step; returns how soon the cache wants the next reconcile.
pub async fn run(
    ctx: &Context,
    mc: &MapCache,
    observed: &Observed,
    status: &mut MapCacheStatus,
) -> Result<Option<Duration>, Error> {
    let settings = settings(mc);
    let pods = pod_views(observed);
    let mut current = status.rollout.clone();
    let mut facts = Facts::default();
    let mut requeue: Option<Duration> = None;
    let mut last_condition = None;

    for _ in 0..MAX_DECISIONS {
        let now = Timestamp::now();
        let transition = machine::next(&machine::Input {
            rollout: current.as_ref(),
            pods: &pods,
            update_revision: &observed.update_revision,
            settings: &settings,
            checklist: facts.checklist.as_ref(),
            eviction: facts.eviction.as_ref(),
            drain_error: facts.drain_error.as_deref(),
            restored_keys: facts.restored_keys,
            now,
        });
        last_condition = Some(transition.condition.clone());
        let mut call_again = false;
        for action in &transition.actions {
            match action {
                Action::Drain { pod } => {
                    let outcome = drain(ctx, mc, observed, pod).await;
                    facts = Facts::default();
                    match outcome {
                        Ok(note) => {
                            current = transition.next.clone();
                            let event = Event::new(EventType::Normal, "Drained", "Rollout", note);
                            publish_event(ctx, mc, event.about(pod_reference(mc, observed, pod)))
                                .await;
                        }
                        Err(error) => facts.drain_error = Some(error),
                    }
                    call_again = true;
                }
                Action::RunChecklist { pod } => {
                    let gathered = run_checklist(ctx, mc, observed, &settings, pod, now).await;
                    record_checklist(status, pod, &gathered.items);
                    facts.checklist = Some(gathered);
                    call_again = true;
                }
                Action::Evict { pod, uid } => {
                    current = transition.next.clone();
                    let mut intent = status.clone();
                    intent.rollout = current.clone();
                    update_status(&ctx.client, mc, &intent).await.map_err(Error::PersistIntent)?;
                    match evict(ctx, mc, pod, uid).await {
                        Ok(outcome) => {
                            let item = checklist::disruption_allowed(&outcome, now);
                            record_item(status, pod, item.clone());
                            if !item.passed {
                                ctx.metrics.rollout.checklist_failure(&item.name);
                            } else {
                                let note = format!("{pod} (uid {uid}) evicted: {}", item.evidence);
                                let event =
                                    Event::new(EventType::Normal, "Evicted", "Rollout", note);
                                let evicted =
                                    events::pod_reference(mc.namespace(), pod, Some(uid.as_str()));
                                publish_event(ctx, mc, event.about(evicted)).await;
                            }
                            facts.eviction = Some(outcome);
                            call_again = true;
                        }
                        Err(error) => {
                            let note = format!("evicting {pod}: {error}; retrying");
                            let event =
                                Event::new(EventType::Warning, "EvictionFailed", "Rollout", note)
                                    .about(events::pod_reference(
                                        mc.namespace(),
                                        pod,
                                        Some(uid.as_str()),
                                    ))
                                    .merging_as(format!("evicting {pod}"));
                            publish_event(ctx, mc, event).await;
                            requeue = min(requeue, machine::REQUEUE_CHECKLIST);
                        }
                    }
                }
                Action::ProbeRestoredKeys { pod } => {
                    match node_client(
                        ctx,
                        mc,
                        observed.pods.iter().find(|p| &p.name == pod),
                        observed,
                    ) {
                        Some(client) => match client.stats().await {
                            Ok(stats) => {
                                facts.restored_keys = Some(stats.keys);
                                call_again = true;
                            }
                            Err(_) => requeue = min(requeue, machine::REQUEUE_WAITING),
                        },
                        None => requeue = min(requeue, machine::REQUEUE_WAITING),
                    }
                }
                Action::ReportFailures { pod, items } => {
                    for item in items {
                        ctx.metrics.rollout.checklist_failure(&item.name);
                        let note = format!("{pod}: {} failing: {}", item.name, item.evidence);
                        // Retried every few seconds with fresh evidence: one Event per pod and
                        // item, counting the retries.
                        let event =
                            Event::new(EventType::Warning, "ChecklistFailed", "Rollout", note)
                                .about(pod_reference(mc, observed, pod))
                                .merging_as(format!("{pod}: {}", item.name));
                        publish_event(ctx, mc, event).await;
                    }
                }
                Action::ProceedDespite { pod, items } => {
                    ctx.metrics.rollout.proceeded.inc();
                    let failing: Vec<String> =
                        items.iter().map(|i| format!("{} ({})", i.name, i.evidence)).collect();
                    let note = format!(
                        "checklistTimeout passed and onTimeout is Proceed: evicting {pod} with failing items: {}",
                        failing.join("; ")
                    );
                    let event =
                        Event::new(EventType::Warning, "ChecklistOverridden", "Rollout", note);
                    publish_event(ctx, mc, event.about(pod_reference(mc, observed, pod))).await;
                }
                Action::Block { pod, item, evidence } => {
                    let already = current.as_ref().and_then(|r| r.blocked_on.as_deref())
                        == Some(item.as_str());
                    if !already {
                        ctx.metrics.rollout.blocked_on(item);
                    }
                    let note = format!(
                        "rollout blocked at {pod} on {item}: {evidence}; nothing was deleted"
                    );
                    let event = Event::new(EventType::Warning, "RolloutBlocked", "Rollout", note)
                        .about(pod_reference(mc, observed, pod))
                        .merging_as(format!("{pod}: {item}"));
                    publish_event(ctx, mc, event).await;
                }
                Action::PodReplaced { pod, restored_keys } => {
                    ctx.metrics.rollout.pods_replaced.inc();
                    let keys = restored_keys
                        .map(|k| format!(" with {k} keys restored"))
                        .unwrap_or_default();
                    let note =
                        format!("{pod} replaced on revision {}{keys}", observed.update_revision);
                    let event = Event::new(EventType::Normal, "PodReplaced", "Rollout", note);
                    publish_event(ctx, mc, event.about(pod_reference(mc, observed, pod))).await;
                    facts = Facts::default();
                }
                Action::Done => {
                    ctx.metrics.rollout.completed.inc();
                    let note = format!("every pod on revision {}", observed.update_revision);
                    publish(ctx, mc, EventType::Normal, "RolloutComplete", "Rollout", note).await;
                }
                Action::Refuse { message } => {
                    let note = message.clone();
                    publish(ctx, mc, EventType::Warning, "RolloutRefused", "Rollout", note).await;
                }
                Action::Requeue(after) => requeue = min(requeue, *after),
            }
        }
        if !call_again {
            current = transition.next;
            break;
        }
    }

    status.rollout = current;
    if let Some(rolling) = last_condition {
        set_condition(
            &mut status.conditions,
            condition::ROLLING_UPDATE,
            rolling.status,
            rolling.reason,
            rolling.message,
            mc.metadata.generation,
            &Time(Timestamp::now()),
        );
    }
    Ok(requeue)
}

fn min(current: Option<Duration>, candidate: Duration) -> Option<Duration> {
    Some(current.map_or(candidate, |c| c.min(candidate)))
}

fn node_client(
    ctx: &Context,
    mc: &MapCache,
    pod: Option<&ObservedPod>,
    observed: &Observed,
) -> Option<NodeClient> {
    let ip = pod?.pod_ip.as_deref()?;
    let port = u16::try_from(mc.spec.engine.admin_port).ok()?;
    Some(NodeClient::new(ctx.http.clone(), ip, port, observed.admin_token.clone()))
}

/// Labels the pod draining and `POST /v1/drain`s it; the Event note on success.
async fn drain(
    ctx: &Context,
    mc: &MapCache,
    observed: &Observed,
    pod: &str,
) -> Result<String, String> {
    let observed_pod = observed.pods.iter().find(|p| p.name == pod);
    let client = node_client(ctx, mc, observed_pod, observed)
        .ok_or_else(|| format!("{pod} has no IP to reach its admin API"))?;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &mc.namespace().unwrap_or_default());
    let label = serde_json::json!({ "metadata": { "labels": { DRAINING_LABEL: "true" } } });
    pods.patch(pod, &PatchParams::default(), &Patch::Merge(&label))
        .await
        .map_err(|e| format!("labelling {pod} {DRAINING_LABEL}=true: {e}"))?;
    let drained = client.drain().await.map_err(|e| e.to_string())?;
    let snapshot = match &drained.snapshot {
        Some(s) => format!(
            "snapshot {} with {} keys (verified {}, after writes stopped {})",
            s.path, s.keys, s.verified, s.after_writes_stopped
        ),
        None => "no snapshot".to_string(),
    };
    Ok(format!("{pod} drained: {snapshot}"))
}

/// The full checklist of one pod: `deregistered` from the EndpointSlices, the node's items.
async fn run_checklist(
    ctx: &Context,
    mc: &MapCache,
    observed: &Observed,
    settings: &Settings,
    pod: &str,
    now: Timestamp,
) -> ChecklistFacts {
    let observed_pod = observed.pods.iter().find(|p| p.name == pod);
    let quiet_period = parse_duration("spec.rollout.quietPeriod", &mc.spec.rollout.quiet_period)
        .unwrap_or(Duration::from_secs(5));
    let mut facts = match node_client(ctx, mc, observed_pod, observed) {
        Some(client) => {
            match client.checklist(quiet_period, mc.spec.rollout.lock_profile_seconds).await {
                Ok(node) => checklist::from_node(&node, settings.allow_data_loss, now),
                Err(error) => {
                    checklist::node_unreachable(&error.to_string(), settings.allow_data_loss, now)
                }
            }
        }
        None => checklist::node_unreachable("the pod has no IP", settings.allow_data_loss, now),
    };
    let services = vec![mc.name_any(), headless_service_name(mc)];
    let selector = format!("kubernetes.io/service-name in ({})", services.join(","));
    let slices: Api<EndpointSlice> =
        Api::namespaced(ctx.client.clone(), &mc.namespace().unwrap_or_default());
    let deregistered = match slices.list(&ListParams::default().labels(&selector)).await {
        Ok(list) => checklist::deregistered(
            pod,
            observed_pod.and_then(|p| p.pod_ip.as_deref()),
            &services,
            &list.items,
            now,
        ),
        Err(error) => ChecklistItem {
            name: checklist::item::DEREGISTERED.into(),
            passed: false,
            evidence: format!("cannot list EndpointSlices: {error}"),
            checked_at: now.to_string(),
        },
    };
    facts.items.insert(0, deregistered);
    facts
}

/// Evicts the pod with a UID precondition, so a replacement with the same name is never hit.
///
/// The body is written here rather than with `Api::evict`: kube 5 serializes the delete options
/// as `delete_options`, which the API server does not know, so the precondition would be dropped.
async fn evict(
    ctx: &Context,
    mc: &MapCache,
    pod: &str,
    uid: &str,
) -> Result<EvictionOutcome, kube::Error> {
    let namespace = mc.namespace().unwrap_or_default();
    let body = eviction_body(&namespace, pod, uid);
    let request =
        http::Request::post(format!("/api/v1/namespaces/{namespace}/pods/{pod}/eviction"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&body).map_err(kube::Error::SerdeError)?)
            .map_err(kube::Error::HttpError)?;
    match ctx.client.request::<serde_json::Value>(request).await {
        Ok(_) => Ok(EvictionOutcome::Evicted),
        Err(kube::Error::Api(status)) if status.code == 429 => {
            Ok(EvictionOutcome::Refused(status.message.clone()))
        }
        // 404: gone; 409: the UID precondition failed, so the name is already a replacement.
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
            Ok(EvictionOutcome::Gone)
        }
        Err(error) => Err(error),
    }
}

/// A `policy/v1` Eviction of `pod` that only applies to the incarnation with `uid`.
pub fn eviction_body(namespace: &str, pod: &str, uid: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": { "name": pod, "namespace": namespace },
        "deleteOptions": { "preconditions": { "uid": uid } }
    })
}

/// Replaces the pod's checklist in status with `items`.
pub fn record_checklist(status: &mut MapCacheStatus, pod: &str, items: &[ChecklistItem]) {
    if let Some(pod_status) = status.pods.iter_mut().find(|p| p.name == pod) {
        pod_status.checklist = items.to_vec();
    }
}

/// Sets one item of the pod's checklist (replacing one of the same name).
pub fn record_item(status: &mut MapCacheStatus, pod: &str, item: ChecklistItem) {
    if let Some(pod_status) = status.pods.iter_mut().find(|p| p.name == pod) {
        pod_status.checklist.retain(|i| i.name != item.name);
        pod_status.checklist.push(item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::crd::PodStatus;

    fn item(name: &str, passed: bool) -> ChecklistItem {
        ChecklistItem { name: name.into(), passed, evidence: "e".into(), checked_at: "t".into() }
    }

    #[test]
    fn checklist_evidence_lands_on_the_pod_and_disruption_item_replaces_itself() {
        let mut status = MapCacheStatus {
            pods: vec![PodStatus { name: "mc-0".into(), ..Default::default() }],
            ..Default::default()
        };
        record_checklist(
            &mut status,
            "mc-0",
            &[item("deregistered", true), item("no-inflight", false)],
        );
        record_item(&mut status, "mc-0", item("disruption-allowed", false));
        record_item(&mut status, "mc-0", item("disruption-allowed", true));
        let names: Vec<(&str, bool)> =
            status.pods[0].checklist.iter().map(|i| (i.name.as_str(), i.passed)).collect();
        assert_eq!(
            names,
            [("deregistered", true), ("no-inflight", false), ("disruption-allowed", true)]
        );
        record_checklist(&mut status, "mc-9", &[item("x", true)]);
        assert_eq!(status.pods.len(), 1);
    }

    #[test]
    fn settings_come_from_the_spec() {
        let mut mc = MapCache::new("mc", Default::default());
        mc.spec.replicas = 3;
        mc.spec.rollout.checklist_timeout = "90s".into();
        mc.spec.persistence.enabled = false;
        let settings = settings(&mc);
        assert_eq!(settings.checklist_timeout, Duration::from_secs(90));
        assert!(!settings.persistence_enabled);
        assert_eq!(settings.replicas, 3);
        assert_eq!(settings.on_timeout, crate::operator::crd::OnTimeout::Block);
    }
}
