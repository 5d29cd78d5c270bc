//! Conformance of the API-server stand-in, driven through kube's own client and kube-runtime:
//! if these pass, the operator's calls behave here as against a real API server.

use e2e::apiserver::{ApiServer, ApiServerConfig};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, EvictParams, ListParams, Patch, PatchParams,
    PostParams, WatchEvent, WatchParams,
};
use kube::core::GroupVersionKind;
use kube::runtime::watcher;
use serde_json::{Value, json};
use std::time::Duration;

async fn start() -> (ApiServer, kube::Client) {
    let server = ApiServer::start(ApiServerConfig {
        bookmark_interval: Duration::from_millis(200),
        ..ApiServerConfig::default()
    })
    .await
    .expect("bind the stand-in");
    let client = server.client().expect("client");
    (server, client)
}

fn configmap(name: &str, labels: Value, data: Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "data": data}))
        .expect("configmap")
}

fn api_error(result: Result<impl std::fmt::Debug, kube::Error>) -> (u16, String, String) {
    match result {
        Err(kube::Error::Api(status)) => {
            (status.code, status.reason.clone(), status.message.clone())
        }
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Poll until `check` holds (the stand-in's GC runs every 100 ms).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

#[tokio::test]
async fn crud_round_trip_with_not_found_already_exists_and_stale_conflicts() {
    let (_server, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let created = api
        .create(&PostParams::default(), &configmap("c", json!({}), json!({"k": "v"})))
        .await
        .unwrap();
    assert_eq!(created.metadata.namespace.as_deref(), Some("default"));
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    let rv1 = created.metadata.resource_version.clone().unwrap();

    let (code, reason, message) =
        api_error(api.create(&PostParams::default(), &configmap("c", json!({}), json!({}))).await);
    assert_eq!(
        (code, reason.as_str(), message.as_str()),
        (409, "AlreadyExists", "configmaps \"c\" already exists")
    );

    let mut edited = created.clone();
    edited.data = Some([("k".to_string(), "w".to_string())].into());
    let replaced = api.replace("c", &PostParams::default(), &edited).await.unwrap();
    assert_eq!(replaced.data.unwrap()["k"], "w");
    assert_ne!(replaced.metadata.resource_version.unwrap(), rv1);

    // `edited` still carries rv1: a second replace with it is stale.
    let (code, reason, _) = api_error(api.replace("c", &PostParams::default(), &edited).await);
    assert_eq!((code, reason.as_str()), (409, "Conflict"));

    api.delete("c", &DeleteParams::default()).await.unwrap();
    let (code, reason, message) = api_error(api.get("c").await);
    assert_eq!(
        (code, reason.as_str(), message.as_str()),
        (404, "NotFound", "configmaps \"c\" not found")
    );
    assert_eq!(api.get_opt("c").await.unwrap(), None);
}

#[tokio::test]
async fn label_and_field_selectors_filter_lists() {
    let (_server, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    for (name, tier) in [("a", "db"), ("b", "web"), ("c", "db")] {
        api.create(&PostParams::default(), &configmap(name, json!({"tier": tier}), json!({})))
            .await
            .unwrap();
    }
    let names = |list: kube::core::ObjectList<ConfigMap>| {
        list.items.into_iter().map(|c| c.metadata.name.unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(
        names(api.list(&ListParams::default().labels("tier=db")).await.unwrap()),
        vec!["a", "c"]
    );
    assert_eq!(
        names(api.list(&ListParams::default().labels("tier notin (db)")).await.unwrap()),
        vec!["b"]
    );
    assert_eq!(
        names(api.list(&ListParams::default().fields("metadata.name=c")).await.unwrap()),
        vec!["c"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("tier=db").fields("metadata.name!=a"))
                .await
                .unwrap()
        ),
        vec!["c"]
    );
    let (code, _, _) = api_error(api.list(&ListParams::default().labels("tier in db")).await);
    assert_eq!(code, 400);
}

#[tokio::test]
async fn watch_resumes_from_a_resource_version_and_answers_410_after_compaction() {
    let (server, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let first =
        api.create(&PostParams::default(), &configmap("one", json!({}), json!({}))).await.unwrap();
    let rv = first.metadata.resource_version.unwrap();
    api.create(&PostParams::default(), &configmap("two", json!({"keep": "yes"}), json!({})))
        .await
        .unwrap();
    api.delete("one", &DeleteParams::default()).await.unwrap();

    let mut stream = api.watch(&WatchParams::default().timeout(5), &rv).await.unwrap().boxed();
    let mut seen = Vec::new();
    for _ in 0..2 {
        match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Added(cm) => seen.push(format!("ADDED {}", cm.metadata.name.unwrap())),
            WatchEvent::Deleted(cm) => seen.push(format!("DELETED {}", cm.metadata.name.unwrap())),
            other => seen.push(format!("{other:?}")),
        }
    }
    assert_eq!(seen, vec!["ADDED two", "DELETED one"]);

    // A label-filtered watch sees an object that stops matching as DELETED.
    let current = api.get("two").await.unwrap().metadata.resource_version.unwrap();
    let mut filtered = api
        .watch(&WatchParams::default().labels("keep=yes").timeout(5), &current)
        .await
        .unwrap()
        .boxed();
    api.patch(
        "two",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"keep": "no"}}})),
    )
    .await
    .unwrap();
    match filtered.try_next().await.unwrap().unwrap() {
        WatchEvent::Deleted(cm) => assert_eq!(cm.metadata.name.as_deref(), Some("two")),
        other => panic!("expected DELETED, got {other:?}"),
    }

    server.store.compact_history();
    let mut stale = api.watch(&WatchParams::default().timeout(5), &rv).await.unwrap().boxed();
    match stale.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(status) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"))
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
}

#[tokio::test]
async fn watch_sends_bookmarks_when_allowed() {
    let (_server, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let created =
        api.create(&PostParams::default(), &configmap("b", json!({}), json!({}))).await.unwrap();
    let rv = created.metadata.resource_version.unwrap();
    let mut stream = api
        .watch(&WatchParams { bookmarks: true, ..WatchParams::default() }.timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Bookmark(bookmark) => assert_eq!(bookmark.metadata.resource_version, rv),
        other => panic!("expected a BOOKMARK, got {other:?}"),
    }
}

#[tokio::test]
async fn server_side_apply_conflicts_between_managers_unless_forced() {
    let (_server, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": {"size": "1", "owned": "a"}});
    api.patch("s", &PatchParams::apply("alice"), &Patch::Apply(&applied)).await.unwrap();
    let rival = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": {"size": "2"}});
    let (code, reason, message) =
        api_error(api.patch("s", &PatchParams::apply("bob"), &Patch::Apply(&rival)).await);
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert_eq!(message, "Apply failed with 1 conflict: conflict with \"alice\": .data.size");

    let not_an_object =
        api.patch("s", &PatchParams::apply("bob"), &Patch::Apply(&json!([1, 2]))).await;
    let (code, _, message) = api_error(not_an_object);
    assert_eq!((code, message.as_str()), (400, "an apply body must be a single object"));

    let forced =
        api.patch("s", &PatchParams::apply("bob").force(), &Patch::Apply(&rival)).await.unwrap();
    assert_eq!(
        forced.data.clone().unwrap(),
        [("owned".to_string(), "a".to_string()), ("size".to_string(), "2".to_string())].into()
    );
    let managers: Vec<String> =
        forced.metadata.managed_fields.unwrap().into_iter().map(|m| m.manager.unwrap()).collect();
    assert_eq!(managers, vec!["alice", "bob"]);

    // alice drops `owned` from her apply: the field goes, `size` stays bob's.
    let shrunk =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": {}});
    let result =
        api.patch("s", &PatchParams::apply("alice"), &Patch::Apply(&shrunk)).await.unwrap();
    assert_eq!(result.data.unwrap(), [("size".to_string(), "2".to_string())].into());

    // Re-applying the same object is a no-op: same resourceVersion.
    let before = api.get("s").await.unwrap().metadata.resource_version;
    let again =
        api.patch("s", &PatchParams::apply("bob").force(), &Patch::Apply(&rival)).await.unwrap();
    assert_eq!(again.metadata.resource_version, before);
}

fn widget_crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.io"},
        "spec": {
            "group": "example.io",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "size": {"type": "integer", "default": 3, "minimum": 1, "maximum": 9},
                        "mode": {"type": "string", "enum": ["fast", "safe"]},
                        "engine": {"type": "object", "default": {}, "properties": {"shards": {"type": "integer", "default": 16}}}
                    }},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                }}}
            }]
        }
    }))
    .expect("crd")
}

fn widgets(client: kube::Client) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.io", "v1", "Widget"),
        "widgets",
    );
    Api::namespaced_with(client, "default", &resource)
}

#[tokio::test]
async fn registered_crd_is_served_with_defaults_generation_and_status_subresource() {
    let (_server, client) = start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds.create(&PostParams::default(), &widget_crd()).await.unwrap();
    let established = crd
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .any(|c| c.type_ == "Established" && c.status == "True");
    assert!(established);

    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    let found = discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .any(|(ar, _)| ar.plural == "widgets");
    assert!(found, "discovery lists the CRD's resource");

    let api = widgets(client);
    let object: DynamicObject = serde_json::from_value(json!({"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {}, "status": {"ignored": true}})).unwrap();
    let created = api.create(&PostParams::default(), &object).await.unwrap();
    assert_eq!(created.data["spec"], json!({"size": 3, "engine": {"shards": 16}}));
    assert_eq!(created.data.get("status"), None, "status is dropped on create");
    assert_eq!(created.metadata.generation, Some(1));

    let status = api
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Ready"}, "spec": {"size": 9}})),
        )
        .await
        .unwrap();
    assert_eq!(status.data["status"], json!({"phase": "Ready"}));
    assert_eq!(status.data["spec"]["size"], 3, "the status endpoint ignores spec");
    assert_eq!(status.metadata.generation, Some(1), "a status write does not bump generation");

    let spec = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 5}, "status": {"phase": "Lost"}})),
        )
        .await
        .unwrap();
    assert_eq!(spec.metadata.generation, Some(2));
    assert_eq!(spec.data["status"], json!({"phase": "Ready"}), "the main endpoint ignores status");

    let applied = json!({"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "w"}, "status": {"phase": "Applied"}});
    let via_apply = api
        .patch_status("w", &PatchParams::apply("op").force(), &Patch::Apply(&applied))
        .await
        .unwrap();
    assert_eq!(via_apply.data["status"]["phase"], "Applied");
}

#[tokio::test]
async fn finalizers_hold_deletion_until_the_last_one_is_removed() {
    let (_server, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut cm = configmap("f", json!({}), json!({}));
    cm.metadata.finalizers = Some(vec!["example.io/cleanup".into()]);
    api.create(&PostParams::default(), &cm).await.unwrap();
    api.delete("f", &DeleteParams::default()).await.unwrap();
    let held = api.get("f").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    api.patch(
        "f",
        &PatchParams::default(),
        &Patch::Json::<()>(
            serde_json::from_value(json!([{"op": "remove", "path": "/metadata/finalizers"}]))
                .unwrap(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(api.get_opt("f").await.unwrap(), None);
}

fn owned_by(name: &str, owner: &ConfigMap) -> ConfigMap {
    let mut cm = configmap(name, json!({}), json!({}));
    cm.metadata.owner_references = Some(vec![serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "name": owner.metadata.name, "uid": owner.metadata.uid, "controller": true, "blockOwnerDeletion": true
    })).unwrap()]);
    cm
}

#[tokio::test]
async fn garbage_collector_deletes_dependents_in_background_and_foreground() {
    let (_server, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let owner = api
        .create(&PostParams::default(), &configmap("owner", json!({}), json!({})))
        .await
        .unwrap();
    api.create(&PostParams::default(), &owned_by("child", &owner)).await.unwrap();
    api.delete("owner", &DeleteParams::background()).await.unwrap();
    eventually("background GC removes the child", || async {
        api.get_opt("child").await.unwrap().is_none()
    })
    .await;

    let owner = api
        .create(&PostParams::default(), &configmap("parent", json!({}), json!({})))
        .await
        .unwrap();
    let mut child = owned_by("kid", &owner);
    child.metadata.finalizers = Some(vec!["example.io/hold".into()]);
    api.create(&PostParams::default(), &child).await.unwrap();
    api.delete("parent", &DeleteParams::foreground()).await.unwrap();
    eventually("the child is being deleted", || async {
        api.get("kid").await.unwrap().metadata.deletion_timestamp.is_some()
    })
    .await;
    let parent = api.get("parent").await.unwrap();
    assert_eq!(
        parent.metadata.finalizers,
        Some(vec!["foregroundDeletion".to_string()]),
        "the owner waits for its dependents"
    );
    api.patch(
        "kid",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    eventually("the owner goes once its dependents are gone", || async {
        api.get_opt("parent").await.unwrap().is_none()
    })
    .await;
}

fn ready_pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "cache"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    }))
    .unwrap()
}

#[tokio::test]
async fn eviction_honours_the_pod_disruption_budget() {
    let (server, _) = start().await;
    // kube retries 429 with exponential backoff by default (15 tries, minutes): switch it off
    // to see the refusal itself.
    let mut config = kube::Config::new(server.url().parse().unwrap());
    config.default_retry = false;
    let client = kube::Client::try_from(config).unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for name in ["p0", "p1", "p2"] {
        pods.create(&PostParams::default(), &ready_pod(name)).await.unwrap();
    }
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client, "default");
    let pdb = serde_json::from_value(json!({"metadata": {"name": "budget"}, "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "cache"}}}})).unwrap();
    pdbs.create(&PostParams::default(), &pdb).await.unwrap();

    let status = pods.evict("p2", &EvictParams::default()).await.unwrap();
    assert_eq!(status.code, 201);
    assert_eq!(pods.get_opt("p2").await.unwrap(), None);
    // Two healthy pods left and two required: the budget is spent.
    let (code, reason, message) = api_error(pods.evict("p0", &EvictParams::default()).await);
    assert_eq!((code, reason.as_str()), (429, "TooManyRequests"));
    assert_eq!(message, "Cannot evict pod as it would violate the pod's disruption budget.");
    assert!(pods.get_opt("p0").await.unwrap().is_some(), "a refused eviction deletes nothing");
}

#[tokio::test]
async fn kube_runtime_watcher_follows_changes_and_relists_after_410() {
    let (server, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &configmap("before", json!({}), json!({}))).await.unwrap();
    let stream = watcher(api.clone(), watcher::Config::default().timeout(2));
    let mut objects = std::pin::pin!(kube::runtime::WatchStreamExt::applied_objects(stream));
    let first = tokio::time::timeout(Duration::from_secs(10), objects.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.metadata.name.as_deref(), Some("before"));

    api.create(&PostParams::default(), &configmap("after", json!({}), json!({}))).await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(10), objects.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(second.metadata.name.as_deref(), Some("after"));

    // Compaction while the watch is between requests: the watcher relists and carries on.
    server.store.compact_history();
    api.create(&PostParams::default(), &configmap("late", json!({}), json!({}))).await.unwrap();
    let mut names = Vec::new();
    while !names.contains(&"late".to_string()) {
        let next = tokio::time::timeout(Duration::from_secs(10), objects.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        names.push(next.metadata.name.unwrap());
    }
    assert!(names.contains(&"late".to_string()));
}

#[tokio::test]
async fn custom_resources_are_pruned_and_validated_against_the_schema() {
    let (_server, client) = start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &widget_crd()).await.unwrap();
    let api = widgets(client);
    let object: DynamicObject = serde_json::from_value(json!({"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 4, "typo": "x"}})).unwrap();
    let created = api.create(&PostParams::default(), &object).await.unwrap();
    assert_eq!(
        created.data["spec"],
        json!({"size": 4, "engine": {"shards": 16}}),
        "unknown fields are pruned"
    );

    let bad: DynamicObject = serde_json::from_value(json!({"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "bad"}, "spec": {"size": 10, "mode": "slow"}})).unwrap();
    let (code, reason, message) = api_error(api.create(&PostParams::default(), &bad).await);
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert_eq!(
        message,
        "Widget.example.io \"bad\" is invalid: [spec.mode: Unsupported value: \"slow\": supported values: \"fast\", \"safe\", spec.size: Invalid value: 10: spec.size in body should be less than or equal to 9]"
    );
    let (code, _, _) = api_error(
        api.patch("w", &PatchParams::default(), &Patch::Merge(json!({"spec": {"size": 0}}))).await,
    );
    assert_eq!(code, 422, "updates are validated too");
    assert_eq!(
        api.get("w").await.unwrap().data["spec"]["size"],
        4,
        "a rejected write changes nothing"
    );
}

#[tokio::test]
async fn strategic_merge_patch_merges_containers_by_name_and_generate_name_picks_a_name() {
    let (_server, client) = start().await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"generateName": "web-"},
        "spec": {"containers": [
            {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]},
            {"name": "engine", "image": "mapcache:1"}
        ]}
    }))
    .unwrap();
    let created = pods.create(&PostParams::default(), &pod).await.unwrap();
    let name = created.metadata.name.unwrap();
    assert!(name.starts_with("web-") && name.len() == "web-".len() + 5, "{name}");
    let patch = json!({"spec": {"containers": [{"name": "engine", "image": "mapcache:2"}, {"name": "app", "env": [{"name": "B", "value": "2"}]}]}});
    let patched =
        pods.patch(&name, &PatchParams::default(), &Patch::Strategic(patch)).await.unwrap();
    let containers: Vec<(String, String, usize)> = patched
        .spec
        .unwrap()
        .containers
        .into_iter()
        .map(|c| (c.name, c.image.unwrap(), c.env.map_or(0, |e| e.len())))
        .collect();
    assert_eq!(
        containers,
        vec![
            ("app".to_string(), "app:1".to_string(), 2),
            ("engine".to_string(), "mapcache:2".to_string(), 0)
        ]
    );
}
