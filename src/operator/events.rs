//! Events (`events.k8s.io/v1`) on a cache: one per action, naming its pod and its figures.
//!
//! kube-runtime's `Recorder` merges every Event of the same type, reason and action about the
//! same object into one series, whatever its note says (its cache key leaves the note out): the
//! second pod's rebuild showed only as a count on the first pod's Event, with the first pod's
//! figures (issue #22). Here an Event about a pod is `related` to that Pod, and only a repeat of
//! the same [`Event::merge_key`] within [`SERIES_WINDOW`] becomes a series count on the first:
//! for an action that is its whole note (pod and figures), so every action is an Event of its
//! own; for a failure reported on every retry (a checklist item, a blocked rollout), the pod and
//! what fails, so a retry loop is one Event with a count rather than one per retry.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams, PostParams};
pub use kube::runtime::events::{EventType, Reporter};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How long a sent Event stays the one its repeats count on (kube-runtime's Recorder uses the
/// same 6 minutes).
pub const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);

/// One Event to publish on a cache.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub type_: EventType,
    /// `PascalCase`, what happened (`Rebuilt`, `ChecklistFailed`).
    pub reason: String,
    /// `PascalCase`, the step that acted (`Maintain`, `Rollout`).
    pub action: String,
    /// What happened to what, with its figures.
    pub note: String,
    /// The Pod the action was about (the Event's `related` object).
    pub pod: Option<ObjectReference>,
    /// What a repeat must share to count on this Event instead of being one of its own; the
    /// note when unset.
    pub merge: Option<String>,
}

impl Event {
    /// An Event about the cache as a whole.
    pub fn new(type_: EventType, reason: &str, action: &str, note: String) -> Self {
        Self { type_, reason: reason.into(), action: action.into(), note, pod: None, merge: None }
    }

    /// The same Event, about one of the cache's pods.
    pub fn about(mut self, pod: ObjectReference) -> Self {
        self.pod = Some(pod);
        self
    }

    /// The same Event, with repeats counted on it while they share `key` (a failure retried
    /// with fresh evidence each time), not only when their notes are equal.
    pub fn merging_as(mut self, key: String) -> Self {
        self.merge = Some(key);
        self
    }

    /// What identifies a repeat of this Event.
    pub fn merge_key(&self) -> &str {
        self.merge.as_deref().unwrap_or(&self.note)
    }
}

/// A reference to the Pod `name` (with its `uid` when known, so a recreated pod is another
/// object) in `namespace`.
pub fn pod_reference(namespace: Option<String>, name: &str, uid: Option<&str>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(name.into()),
        namespace,
        uid: uid.filter(|uid| !uid.is_empty()).map(str::to_string),
        ..ObjectReference::default()
    }
}

/// What makes two Events the same series.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    type_: &'static str,
    reason: String,
    action: String,
    regarding: (Option<String>, Option<String>, Option<String>),
    pod: Option<(Option<String>, Option<String>)>,
    merge: String,
}

impl Key {
    fn of(event: &Event, regarding: &ObjectReference) -> Self {
        Self {
            type_: type_name(event.type_),
            reason: event.reason.clone(),
            action: event.action.clone(),
            regarding: (regarding.namespace.clone(), regarding.name.clone(), regarding.uid.clone()),
            pod: event.pod.as_ref().map(|pod| (pod.name.clone(), pod.uid.clone())),
            merge: event.merge_key().to_string(),
        }
    }
}

fn type_name(type_: EventType) -> &'static str {
    match type_ {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    }
}

/// An Event already sent: where it is and how many times it happened.
#[derive(Clone, Debug)]
struct Sent {
    name: String,
    count: i32,
    last: Timestamp,
}

/// Publishes [`Event`]s, creating one per new merge key and counting repeats on it.
#[derive(Clone)]
pub struct Recorder {
    client: kube::Client,
    reporter: Reporter,
    sent: Arc<Mutex<HashMap<Key, Sent>>>,
}

impl Recorder {
    pub fn new(client: kube::Client, reporter: Reporter) -> Self {
        Self { client, reporter, sent: Arc::default() }
    }

    /// Creates the Event about `regarding` (the cache), or counts a repeat on the one sent.
    pub async fn publish(
        &self,
        event: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let key = Key::of(event, regarding);
        let repeat = {
            let mut sent = self.sent.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            sent.retain(|_, s| s.last + SERIES_WINDOW > now);
            sent.get(&key).cloned()
        };
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let events: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        let sent = match repeat {
            Some(sent) => {
                let count = sent.count + 1;
                let series = EventSeries { count, last_observed_time: MicroTime(now) };
                let patch = serde_json::json!({ "series": series });
                events.patch(&sent.name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
                Sent { count, last: now, ..sent }
            }
            None => {
                let created = events
                    .create(&PostParams::default(), &self.build(event, regarding, now))
                    .await?;
                let name = created.metadata.name.unwrap_or_default();
                Sent { name, count: 1, last: now }
            }
        };
        self.sent.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(key, sent);
        Ok(())
    }

    /// The Event object as created.
    fn build(&self, event: &Event, regarding: &ObjectReference, now: Timestamp) -> K8sEvent {
        let object = regarding.name.as_deref().unwrap_or(&self.reporter.controller);
        K8sEvent {
            metadata: ObjectMeta {
                name: Some(format!("{object}.{:x}", now.as_nanosecond())),
                namespace: regarding.namespace.clone(),
                ..ObjectMeta::default()
            },
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: Some(event.note.clone()),
            type_: Some(type_name(event.type_).into()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: event.pod.clone(),
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter.instance.clone().unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            ..K8sEvent::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Method, Request, Response, StatusCode};
    use kube::client::Body;
    use serde_json::Value;

    /// The requests the API server got: method, path, body.
    type Requests = Arc<Mutex<Vec<(Method, String, Value)>>>;

    /// A client whose API server answers every request with its body and records it.
    fn recording_client() -> (kube::Client, Requests) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.expect("body");
                let body: Value = serde_json::from_slice(&bytes).expect("json");
                let mut answer = body.clone();
                answer["metadata"]["name"] =
                    Value::String(format!("event-{}", log.lock().expect("log").len()));
                log.lock().expect("log").push((parts.method, parts.uri.path().to_string(), body));
                let response = Response::builder()
                    .status(StatusCode::CREATED)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&answer).expect("json")))
                    .expect("response");
                send.send_response(response);
            }
        });
        (kube::Client::new(service, "ns"), requests)
    }

    fn cache() -> ObjectReference {
        ObjectReference {
            api_version: Some("mapcache.io/v1alpha1".into()),
            kind: Some("MapCache".into()),
            name: Some("cache".into()),
            namespace: Some("ns".into()),
            uid: Some("uid-cache".into()),
            ..ObjectReference::default()
        }
    }

    fn rebuilt(pod: &str, tombstones: u64) -> Event {
        let note = format!("rebuild {pod} finished: tombstones {tombstones} -> 0");
        Event::new(EventType::Normal, "Rebuilt", "Maintain", note).about(pod_reference(
            Some("ns".into()),
            pod,
            Some(&format!("uid-{pod}")),
        ))
    }

    #[tokio::test]
    async fn each_pods_rebuild_is_an_event_of_its_own_naming_the_pod_and_figures() {
        let (client, requests) = recording_client();
        let recorder = Recorder::new(
            client,
            Reporter { controller: "mapcache-operator".into(), instance: None },
        );
        for event in [rebuilt("cache-0", 120_000), rebuilt("cache-1", 95_000)] {
            recorder.publish(&event, &cache()).await.expect("published");
        }
        let requests = requests.lock().expect("log").clone();
        let created: Vec<(String, String)> = requests
            .iter()
            .filter(|(method, _, _)| method == Method::POST)
            .map(|(_, _, body)| {
                (
                    body["related"]["name"].as_str().unwrap_or_default().to_string(),
                    body["note"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        assert_eq!(
            created,
            [
                ("cache-0".into(), "rebuild cache-0 finished: tombstones 120000 -> 0".into()),
                ("cache-1".into(), "rebuild cache-1 finished: tombstones 95000 -> 0".into()),
            ]
        );
        assert_eq!(requests.len(), 2, "no series patch: {requests:?}");
        assert_eq!(requests[1].2["regarding"]["name"], "cache");
        assert_eq!(requests[1].2["related"]["uid"], "uid-cache-1");
    }

    #[tokio::test]
    async fn a_repeat_counts_on_the_first_event_and_a_retried_failure_merges_by_its_key() {
        let (client, requests) = recording_client();
        let recorder = Recorder::new(
            client,
            Reporter { controller: "mapcache-operator".into(), instance: None },
        );
        let failing = |evidence: &str| {
            Event::new(
                EventType::Warning,
                "ChecklistFailed",
                "Rollout",
                format!("cache-2: no-inflight failing: {evidence}"),
            )
            .about(pod_reference(Some("ns".into()), "cache-2", None))
            .merging_as("no-inflight".into())
        };
        recorder.publish(&failing("3 connections executing"), &cache()).await.expect("first");
        recorder.publish(&failing("1 connection executing"), &cache()).await.expect("retry");
        recorder.publish(&rebuilt("cache-0", 7), &cache()).await.expect("action");
        recorder.publish(&rebuilt("cache-0", 7), &cache()).await.expect("same action again");
        let requests = requests.lock().expect("log").clone();
        let shape: Vec<(Method, String, Value)> = requests
            .iter()
            .map(|(method, path, body)| {
                (method.clone(), path.clone(), body["series"]["count"].clone())
            })
            .collect();
        let events = "/apis/events.k8s.io/v1/namespaces/ns/events";
        assert_eq!(
            shape,
            [
                (Method::POST, events.to_string(), Value::Null),
                (Method::PATCH, format!("{events}/event-0"), Value::from(2)),
                (Method::POST, events.to_string(), Value::Null),
                (Method::PATCH, format!("{events}/event-2"), Value::from(2)),
            ]
        );
    }
}
