//! The object store: generic JSON objects per group/resource, one global resourceVersion
//! counter, a bounded change history for watch resume (older versions answer 410 Gone), and the
//! write semantics of the real API server (generation, status subresource, optimistic
//! concurrency, finalizers, deletionTimestamp, owner-reference garbage collection).

use super::apply::{WriteContext, record_update, server_side_apply};
use super::defaults::apply_defaults;
use super::error::{ApiError, ApiResult};
use super::registry::{Registry, ResourceInfo, ResourceKey};
use super::schema::{prune, validate};
use super::selector::{FieldSelector, LabelSelector};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;

/// What happened to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

/// One committed write, as watchers see it.
#[derive(Clone, Debug)]
pub struct Change {
    pub rv: u64,
    pub kind: ChangeKind,
    pub resource: ResourceKey,
    pub namespace: String,
    /// The object after the write (for `Deleted`: its last state).
    pub object: Value,
    /// The object before the write, so filtered watches can turn a selector change into
    /// ADDED/DELETED as the real server does.
    pub old: Option<Value>,
}

/// `DeleteOptions` fields the stand-in honours.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub propagation_policy: Option<String>,
    pub grace_period_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
}

impl DeleteOptions {
    pub fn from_json(body: &Value) -> Self {
        Self {
            propagation_policy: body
                .get("propagationPolicy")
                .and_then(Value::as_str)
                .map(str::to_string),
            grace_period_seconds: body.get("gracePeriodSeconds").and_then(Value::as_i64),
            precondition_uid: body
                .pointer("/preconditions/uid")
                .and_then(Value::as_str)
                .map(str::to_string),
            precondition_resource_version: body
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string),
        }
    }
}

/// A receiver subscribed before the snapshot, the changes to replay, and their resourceVersion.
pub type WatchStart = (broadcast::Receiver<Arc<Change>>, Vec<Arc<Change>>, u64);

type Objects = BTreeMap<(String, String), Value>;

struct Inner {
    /// The last resourceVersion handed out.
    rv: u64,
    objects: BTreeMap<ResourceKey, Objects>,
    /// Recent changes, oldest first, for watches that resume from a resourceVersion.
    history: VecDeque<Arc<Change>>,
    /// Watches from a resourceVersion below this get 410 Gone (its history was dropped).
    floor: u64,
    registry: Registry,
    uid_seq: u64,
}

/// The API server's state. Cheap to share (`Arc<Store>`); all methods are synchronous and short.
pub struct Store {
    inner: Mutex<Inner>,
    changes: broadcast::Sender<Arc<Change>>,
    /// Pods deleted with a grace period stay (with `deletionTimestamp`) until the kubelet removes
    /// them; without a kubelet they go at once.
    graceful_pod_deletion: AtomicBool,
    history_limit: usize,
}

pub fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second()).unwrap_or(now).to_string()
}

fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object.get("metadata").and_then(|m| m.get(field)).and_then(Value::as_str)
}

fn set_meta(object: &mut Value, field: &str, value: Value) {
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
    object["metadata"][field] = value;
}

fn finalizers(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|f| f.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

fn owner_uids(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Everything but metadata and status: a change here bumps `metadata.generation`.
fn spec_part(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    copy
}

impl Store {
    pub fn new(history_limit: usize) -> Self {
        let (changes, _) = broadcast::channel(16_384);
        let store = Self {
            inner: Mutex::new(Inner {
                rv: 0,
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                floor: 0,
                registry: Registry::default(),
                uid_seq: 0,
            }),
            changes,
            graceful_pod_deletion: AtomicBool::new(false),
            history_limit,
        };
        if let Some(info) = store.resource("", "v1", "namespaces") {
            for namespace in ["default", "kube-system"] {
                let object = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}, "status": {"phase": "Active"}});
                // A fresh store has no objects, so creating the two namespaces cannot collide.
                let _ = store.create(&info, "", object, "apiserver");
            }
        }
        store
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn set_graceful_pod_deletion(&self, on: bool) {
        self.graceful_pod_deletion.store(on, Ordering::SeqCst);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.changes.subscribe()
    }

    pub fn registry(&self) -> Registry {
        self.lock().registry.clone()
    }

    pub fn resource(&self, group: &str, version: &str, plural: &str) -> Option<ResourceInfo> {
        self.lock().registry.lookup(group, version, plural).cloned()
    }

    /// The resource info for internal writers that know only group and plural.
    pub fn resource_by_key(&self, group: &str, plural: &str) -> Option<ResourceInfo> {
        let key = ResourceKey { group: group.into(), plural: plural.into() };
        self.lock().registry.by_key(&key).cloned()
    }

    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// Drop the whole watch history, so any watch from an older resourceVersion gets 410 Gone
    /// (what etcd compaction does to a real cluster).
    pub fn compact_history(&self) {
        let mut inner = self.lock();
        inner.history.clear();
        inner.floor = inner.rv;
    }

    pub fn get(&self, info: &ResourceInfo, namespace: &str, name: &str) -> ApiResult<Value> {
        let inner = self.lock();
        inner
            .objects
            .get(&info.key())
            .and_then(|objects| objects.get(&(namespace.to_string(), name.to_string())))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&info.qualified(), name))
    }

    /// Objects of a resource in a namespace (None: all namespaces) matching both selectors,
    /// and the resourceVersion of the snapshot.
    pub fn list(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> (Vec<Value>, u64) {
        let inner = self.lock();
        let items = inner
            .objects
            .get(&info.key())
            .into_iter()
            .flatten()
            .filter(|((ns, _), object)| {
                namespace.is_none_or(|want| want == ns)
                    && labels.matches(object)
                    && fields.matches(object)
            })
            .map(|(_, object)| object.clone())
            .collect();
        (items, inner.rv)
    }

    pub fn create(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        object: Value,
        manager: &str,
    ) -> ApiResult<Value> {
        let mut inner = self.lock();
        inner.create(info, namespace, object, manager, self)
    }

    /// Read-modify-write under the store lock: `edit` gets the current object and returns the
    /// desired one; a `metadata.resourceVersion` in it that is not current is a 409.
    pub fn update(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
        status_endpoint: bool,
        manager: &str,
        edit: impl FnOnce(&Value) -> ApiResult<Value>,
    ) -> ApiResult<Value> {
        let mut inner = self.lock();
        let current = inner.get(info, namespace, name)?;
        let mut desired = edit(&current)?;
        let ctx = WriteContext {
            manager,
            status_endpoint,
            has_status_subresource: info.status_subresource,
        };
        record_update(Some(&current), &mut desired, ctx);
        inner.commit(info, namespace, name, current, desired, status_endpoint, self)
    }

    /// Server-side apply; creates the object when it does not exist.
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
        status_endpoint: bool,
        manager: &str,
        applied: &Value,
        force: bool,
    ) -> ApiResult<Value> {
        if let Some(body_name) = meta_str(applied, "name")
            && body_name != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if !applied.is_object() {
            return Err(ApiError::bad_request("an apply body must be a single object"));
        }
        let mut inner = self.lock();
        let ctx = WriteContext {
            manager,
            status_endpoint,
            has_status_subresource: info.status_subresource,
        };
        match inner.get(info, namespace, name) {
            Ok(current) => {
                let mut desired = server_side_apply(Some(&current), applied, ctx, force)?;
                set_meta(
                    &mut desired,
                    "resourceVersion",
                    json!(meta_str(&current, "resourceVersion")),
                );
                inner.commit(info, namespace, name, current, desired, status_endpoint, self)
            }
            Err(not_found) if status_endpoint => Err(not_found),
            Err(_) => {
                let mut desired = server_side_apply(None, applied, ctx, force)?;
                set_meta(&mut desired, "name", json!(name));
                inner.create_with_fields(info, namespace, desired, self)
            }
        }
    }

    pub fn delete(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
        options: &DeleteOptions,
    ) -> ApiResult<Value> {
        let mut inner = self.lock();
        let graceful = self.graceful_pod_deletion.load(Ordering::SeqCst);
        inner.delete(info, namespace, name, options, graceful, self)
    }

    /// Remove an object now, whatever its finalizers (the kubelet's final pod removal).
    pub fn remove_now(&self, info: &ResourceInfo, namespace: &str, name: &str) -> ApiResult<Value> {
        let mut inner = self.lock();
        let current = inner.get(info, namespace, name)?;
        inner.remove(info, namespace, name, current, self)
    }

    /// The start of a watch: a receiver subscribed before the snapshot, the changes to replay
    /// first, and the resourceVersion they bring the watcher to.
    pub fn watch_start(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        since: Option<u64>,
    ) -> ApiResult<WatchStart> {
        let inner = self.lock();
        let receiver = self.changes.subscribe();
        let key = info.key();
        let in_scope = |change: &Change| {
            change.resource == key && namespace.is_none_or(|ns| ns == change.namespace)
        };
        let replay = match since {
            None => inner
                .objects
                .get(&key)
                .into_iter()
                .flatten()
                .filter(|((ns, _), _)| namespace.is_none_or(|want| want == ns))
                .map(|((ns, _), object)| {
                    Arc::new(Change {
                        rv: inner.rv,
                        kind: ChangeKind::Added,
                        resource: key.clone(),
                        namespace: ns.clone(),
                        object: object.clone(),
                        old: None,
                    })
                })
                .collect(),
            Some(rv) if rv < inner.floor => {
                return Err(ApiError::gone(format!(
                    "too old resource version: {rv} ({})",
                    inner.floor + 1
                )));
            }
            Some(rv) => inner
                .history
                .iter()
                .filter(|change| change.rv > rv && in_scope(change))
                .cloned()
                .collect(),
        };
        Ok((receiver, replay, inner.rv))
    }

    /// One pass of the garbage collector: delete dependents whose owners are all gone, run
    /// foreground and orphan deletions. Returns how many writes it made.
    pub fn collect_garbage(&self) -> usize {
        let mut inner = self.lock();
        let graceful = self.graceful_pod_deletion.load(Ordering::SeqCst);
        inner.collect_garbage(graceful, self)
    }
}

impl Inner {
    fn get(&self, info: &ResourceInfo, namespace: &str, name: &str) -> ApiResult<Value> {
        self.objects
            .get(&info.key())
            .and_then(|objects| objects.get(&(namespace.to_string(), name.to_string())))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&info.qualified(), name))
    }

    fn publish(
        &mut self,
        store: &Store,
        kind: ChangeKind,
        info: &ResourceInfo,
        namespace: &str,
        object: Value,
        old: Option<Value>,
    ) {
        let change = Arc::new(Change {
            rv: self.rv,
            kind,
            resource: info.key(),
            namespace: namespace.to_string(),
            object,
            old,
        });
        self.history.push_back(change.clone());
        while self.history.len() > store.history_limit {
            if let Some(dropped) = self.history.pop_front() {
                self.floor = dropped.rv;
            }
        }
        // No receivers is fine: nobody watches yet.
        let _ = store.changes.send(change);
    }

    fn next_uid(&mut self) -> String {
        self.uid_seq += 1;
        let nanos = jiff::Timestamp::now().as_nanosecond() as u64;
        format!(
            "{:08x}-{:04x}-4{:03x}-8000-{:012x}",
            (nanos >> 32) as u32,
            (nanos >> 16) as u16,
            self.uid_seq & 0xfff,
            self.uid_seq
        )
    }

    fn create(
        &mut self,
        info: &ResourceInfo,
        namespace: &str,
        mut object: Value,
        manager: &str,
        store: &Store,
    ) -> ApiResult<Value> {
        if !object.is_object() {
            return Err(ApiError::bad_request("the request body must be a JSON object"));
        }
        let ctx = WriteContext {
            manager,
            status_endpoint: false,
            has_status_subresource: info.status_subresource,
        };
        record_update(None, &mut object, ctx);
        self.create_with_fields(info, namespace, object, store)
    }

    fn create_with_fields(
        &mut self,
        info: &ResourceInfo,
        namespace: &str,
        mut object: Value,
        store: &Store,
    ) -> ApiResult<Value> {
        if !object.get("metadata").is_some_and(Value::is_object) {
            object["metadata"] = json!({});
        }
        let mut name = meta_str(&object, "name").unwrap_or_default().to_string();
        if name.is_empty() {
            let Some(prefix) = meta_str(&object, "generateName").map(str::to_string) else {
                return Err(ApiError::invalid(
                    &info.kind,
                    "",
                    "metadata.name: Required value: name or generateName is required",
                ));
            };
            self.uid_seq += 1;
            name = format!("{prefix}{:05x}", (self.uid_seq * 2_654_435_761) & 0xfffff);
        }
        if let Some(body_ns) = meta_str(&object, "namespace").filter(|ns| !ns.is_empty())
            && info.namespaced
            && body_ns != namespace
        {
            return Err(ApiError::bad_request(format!(
                "the namespace of the provided object ({body_ns}) does not match the namespace sent on the request ({namespace})"
            )));
        }
        let namespace = if info.namespaced { namespace } else { "" };
        if self.get(info, namespace, &name).is_ok() {
            return Err(ApiError::already_exists(&info.qualified(), &name));
        }
        object["apiVersion"] = json!(info.api_version());
        object["kind"] = json!(info.kind);
        set_meta(&mut object, "name", json!(name));
        if info.namespaced {
            set_meta(&mut object, "namespace", json!(namespace));
        }
        let uid = self.next_uid();
        set_meta(&mut object, "uid", json!(uid));
        set_meta(&mut object, "creationTimestamp", json!(now_rfc3339()));
        set_meta(&mut object, "generation", json!(1));
        if let Some(map) = object["metadata"].as_object_mut() {
            map.remove("deletionTimestamp");
            map.remove("deletionGracePeriodSeconds");
        }
        if info.schema.is_some() && info.status_subresource {
            // CRDs with a status subresource drop status on create, as the real server does.
            if let Some(map) = object.as_object_mut() {
                map.remove("status");
            }
        }
        self.prepare(info, &mut object)?;
        self.rv += 1;
        set_meta(&mut object, "resourceVersion", json!(self.rv.to_string()));
        self.objects
            .entry(info.key())
            .or_default()
            .insert((namespace.to_string(), name), object.clone());
        self.publish(store, ChangeKind::Added, info, namespace, object.clone(), None);
        Ok(object)
    }

    /// Kind-specific preparation shared by create and update.
    fn prepare(&mut self, info: &ResourceInfo, object: &mut Value) -> ApiResult<()> {
        if let Some(schema) = &info.schema {
            // The API server's order: prune, default, validate.
            prune(schema, object, true);
            apply_defaults(schema, object);
            let mut errors = Vec::new();
            validate(schema, object, "", &mut errors);
            if !errors.is_empty() {
                let name = meta_str(object, "name").unwrap_or_default();
                let message = if errors.len() == 1 {
                    errors.remove(0)
                } else {
                    format!("[{}]", errors.join(", "))
                };
                return Err(ApiError::invalid(
                    &format!("{}.{}", info.kind, info.group),
                    name,
                    message,
                ));
            }
        }
        match (info.group.as_str(), info.plural.as_str()) {
            ("", "secrets") => fold_string_data(object),
            ("", "pods") if object.pointer("/status/phase").is_none() => {
                if !object.get("status").is_some_and(Value::is_object) {
                    object["status"] = json!({});
                }
                object["status"]["phase"] = json!("Pending");
            }
            ("apiextensions.k8s.io", "customresourcedefinitions") => {
                if self.registry.register_crd(object).is_none() {
                    return Err(ApiError::invalid(
                        "CustomResourceDefinition",
                        meta_str(object, "name").unwrap_or_default(),
                        "spec: group, names.plural, names.kind and versions are required",
                    ));
                }
                let names = object.pointer("/spec/names").cloned().unwrap_or(json!({}));
                let stored: Vec<Value> = object
                    .pointer("/spec/versions")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                    .filter_map(|v| v.get("name").cloned())
                    .collect();
                let since = object
                    .pointer("/status/conditions/0/lastTransitionTime")
                    .cloned()
                    .unwrap_or_else(|| json!(now_rfc3339()));
                object["status"] = json!({
                    "acceptedNames": names,
                    "storedVersions": stored,
                    "conditions": [
                        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": since},
                        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": since},
                    ],
                });
            }
            _ => {}
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn commit(
        &mut self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
        current: Value,
        desired: Value,
        status_endpoint: bool,
        store: &Store,
    ) -> ApiResult<Value> {
        if !desired.is_object() {
            return Err(ApiError::bad_request("the request body must be a JSON object"));
        }
        if let Some(body_name) = meta_str(&desired, "name")
            && body_name != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let current_rv = meta_str(&current, "resourceVersion").unwrap_or_default().to_string();
        if let Some(rv) = meta_str(&desired, "resourceVersion").filter(|rv| !rv.is_empty())
            && rv != current_rv
        {
            return Err(ApiError::stale(&info.qualified(), name));
        }
        let mut next = if info.status_subresource && status_endpoint {
            let mut next = current.clone();
            match desired.get("status") {
                Some(status) => next["status"] = status.clone(),
                None => {
                    if let Some(map) = next.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
            if let Some(fields) = desired.pointer("/metadata/managedFields") {
                set_meta(&mut next, "managedFields", fields.clone());
            }
            next
        } else {
            let mut next = desired;
            if info.status_subresource {
                match current.get("status") {
                    Some(status) => next["status"] = status.clone(),
                    None => {
                        if let Some(map) = next.as_object_mut() {
                            map.remove("status");
                        }
                    }
                }
            }
            next
        };
        next["apiVersion"] = json!(info.api_version());
        next["kind"] = json!(info.kind);
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "namespace",
            "name",
            "resourceVersion",
        ] {
            match current.get("metadata").and_then(|m| m.get(field)) {
                Some(value) => set_meta(&mut next, field, value.clone()),
                None => {
                    if let Some(map) = next["metadata"].as_object_mut() {
                        map.remove(field);
                    }
                }
            }
        }
        self.prepare(info, &mut next)?;
        if spec_part(&next) != spec_part(&current) {
            let generation =
                current.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
            set_meta(&mut next, "generation", json!(generation + 1));
        }
        if next == current {
            return Ok(current);
        }
        if meta_str(&next, "deletionTimestamp").is_some()
            && finalizers(&next).is_empty()
            && !self.awaits_kubelet(info, &next, store)
        {
            return self.remove(info, namespace, name, next, store);
        }
        Ok(self.store_modified(store, info, namespace, name, next, current))
    }

    /// Stores a changed object under a fresh resourceVersion and publishes MODIFIED.
    fn store_modified(
        &mut self,
        store: &Store,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
        mut next: Value,
        current: Value,
    ) -> Value {
        self.rv += 1;
        set_meta(&mut next, "resourceVersion", json!(self.rv.to_string()));
        self.objects
            .entry(info.key())
            .or_default()
            .insert((namespace.to_string(), name.to_string()), next.clone());
        self.publish(store, ChangeKind::Modified, info, namespace, next.clone(), Some(current));
        next
    }

    /// A pod being deleted gracefully stays until the kubelet has stopped it.
    fn awaits_kubelet(&self, info: &ResourceInfo, object: &Value, store: &Store) -> bool {
        info.group.is_empty()
            && info.plural == "pods"
            && store.graceful_pod_deletion.load(Ordering::SeqCst)
            && object
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                > 0
    }

    fn remove(
        &mut self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
        mut last: Value,
        store: &Store,
    ) -> ApiResult<Value> {
        if let Some(objects) = self.objects.get_mut(&info.key()) {
            objects.remove(&(namespace.to_string(), name.to_string()));
        }
        self.rv += 1;
        set_meta(&mut last, "resourceVersion", json!(self.rv.to_string()));
        if info.group == "apiextensions.k8s.io"
            && info.plural == "customresourcedefinitions"
            && let (Some(group), Some(plural)) = (
                last.pointer("/spec/group").and_then(Value::as_str),
                last.pointer("/spec/names/plural").and_then(Value::as_str),
            )
        {
            // Deleting a CRD deletes its objects and stops serving it.
            let key = ResourceKey { group: group.into(), plural: plural.into() };
            self.objects.remove(&key);
            self.registry.unregister(group, plural);
        }
        self.publish(store, ChangeKind::Deleted, info, namespace, last.clone(), None);
        Ok(last)
    }

    fn delete(
        &mut self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
        options: &DeleteOptions,
        graceful_pods: bool,
        store: &Store,
    ) -> ApiResult<Value> {
        let current = self.get(info, namespace, name)?;
        if let Some(uid) = &options.precondition_uid
            && meta_str(&current, "uid") != Some(uid.as_str())
        {
            return Err(ApiError::stale(&info.qualified(), name).with_details(json!({"name": name, "kind": info.plural, "causes": [{"message": format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {}", meta_str(&current, "uid").unwrap_or_default())}]})));
        }
        if let Some(rv) = &options.precondition_resource_version
            && meta_str(&current, "resourceVersion") != Some(rv.as_str())
        {
            return Err(ApiError::stale(&info.qualified(), name));
        }
        let is_pod = info.group.is_empty() && info.plural == "pods";
        let grace = if is_pod && graceful_pods {
            options
                .grace_period_seconds
                .or_else(|| {
                    current.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64)
                })
                .unwrap_or(30)
                .max(0)
        } else {
            0
        };
        if meta_str(&current, "deletionTimestamp").is_some() {
            // Already terminating: only a shorter grace period changes anything.
            let existing = current
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if is_pod && grace < existing {
                let mut next = current.clone();
                set_meta(&mut next, "deletionGracePeriodSeconds", json!(grace));
                return self.commit(info, namespace, name, current, next, false, store);
            }
            return Ok(current);
        }
        let mut pending = finalizers(&current);
        match options.propagation_policy.as_deref() {
            Some("Foreground") => pending.push("foregroundDeletion".into()),
            Some("Orphan") => pending.push("orphan".into()),
            Some("Background") | None => {}
            Some(other) => {
                return Err(ApiError::invalid(
                    &info.kind,
                    name,
                    format!(
                        "propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
                    ),
                ));
            }
        }
        if pending.is_empty() && grace == 0 {
            return self.remove(info, namespace, name, current, store);
        }
        let mut next = current.clone();
        set_meta(&mut next, "deletionTimestamp", json!(now_rfc3339()));
        set_meta(&mut next, "deletionGracePeriodSeconds", json!(grace));
        if !pending.is_empty() {
            let mut unique: Vec<String> = Vec::new();
            for finalizer in pending {
                if !unique.contains(&finalizer) {
                    unique.push(finalizer);
                }
            }
            set_meta(&mut next, "finalizers", json!(unique));
        }
        // Bypass commit's immutable-field protection: deletion sets them.
        Ok(self.store_modified(store, info, namespace, name, next, current))
    }

    fn all_objects(&self) -> Vec<(ResourceKey, String, String, Value)> {
        self.objects
            .iter()
            .flat_map(|(key, objects)| {
                objects.iter().map(move |((ns, name), object)| {
                    (key.clone(), ns.clone(), name.clone(), object.clone())
                })
            })
            .collect()
    }

    fn collect_garbage(&mut self, graceful_pods: bool, store: &Store) -> usize {
        let objects = self.all_objects();
        let uids: BTreeSet<String> = objects
            .iter()
            .filter_map(|(_, _, _, o)| meta_str(o, "uid").map(str::to_string))
            .collect();
        let mut writes = 0;
        let background = DeleteOptions {
            propagation_policy: Some("Background".into()),
            ..DeleteOptions::default()
        };
        for (key, ns, name, object) in &objects {
            let owners = owner_uids(object);
            let Some(info) = self.registry.by_key(key).cloned() else { continue };
            if !owners.is_empty()
                && owners.iter().all(|uid| !uids.contains(uid))
                && meta_str(object, "deletionTimestamp").is_none()
            {
                writes += usize::from(
                    self.delete(&info, ns, name, &background, graceful_pods, store).is_ok(),
                );
            }
            if meta_str(object, "deletionTimestamp").is_none() {
                continue;
            }
            let owner_finalizers = finalizers(object);
            let Some(uid) = meta_str(object, "uid") else { continue };
            let dependents: Vec<&(ResourceKey, String, String, Value)> = objects
                .iter()
                .filter(|(_, _, _, dependent)| {
                    owner_uids(dependent).iter().any(|owner| owner == uid)
                })
                .collect();
            if owner_finalizers.iter().any(|f| f == "foregroundDeletion") {
                for (dep_key, dep_ns, dep_name, dependent) in &dependents {
                    if meta_str(dependent, "deletionTimestamp").is_none()
                        && let Some(dep_info) = self.registry.by_key(dep_key).cloned()
                    {
                        writes += usize::from(
                            self.delete(
                                &dep_info,
                                dep_ns,
                                dep_name,
                                &background,
                                graceful_pods,
                                store,
                            )
                            .is_ok(),
                        );
                    }
                }
                if dependents.is_empty() {
                    writes += usize::from(self.drop_finalizer(
                        &info,
                        ns,
                        name,
                        "foregroundDeletion",
                        store,
                    ));
                }
            } else if owner_finalizers.iter().any(|f| f == "orphan") {
                for (dep_key, dep_ns, dep_name, _) in &dependents {
                    let Some(dep_info) = self.registry.by_key(dep_key).cloned() else { continue };
                    if let Ok(current) = self.get(&dep_info, dep_ns, dep_name) {
                        let mut next = current.clone();
                        if let Some(refs) = next
                            .pointer_mut("/metadata/ownerReferences")
                            .and_then(Value::as_array_mut)
                        {
                            refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
                        }
                        writes += usize::from(
                            self.commit(&dep_info, dep_ns, dep_name, current, next, false, store)
                                .is_ok(),
                        );
                    }
                }
                writes += usize::from(self.drop_finalizer(&info, ns, name, "orphan", store));
            }
        }
        writes
    }

    fn drop_finalizer(
        &mut self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
        finalizer: &str,
        store: &Store,
    ) -> bool {
        let Ok(current) = self.get(info, namespace, name) else { return false };
        let mut next = current.clone();
        if let Some(list) = next.pointer_mut("/metadata/finalizers").and_then(Value::as_array_mut) {
            list.retain(|f| f.as_str() != Some(finalizer));
        }
        self.commit(info, namespace, name, current, next, false, store).is_ok()
    }
}

/// Secrets: `stringData` is folded into base64 `data` on write, as the real server does.
fn fold_string_data(object: &mut Value) {
    let Some(string_data) = object.as_object_mut().and_then(|map| map.remove("stringData")) else {
        return;
    };
    let Some(entries) = string_data.as_object() else { return };
    if !object.get("data").is_some_and(Value::is_object) {
        object["data"] = json!({});
    }
    for (key, value) in entries {
        let text = value.as_str().unwrap_or_default();
        let encoded = serde_json::to_value(k8s_openapi::ByteString(text.as_bytes().to_vec()))
            .unwrap_or(Value::Null);
        object["data"][key] = encoded;
    }
}
