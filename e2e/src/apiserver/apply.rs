//! Server-side apply and field ownership (`metadata.managedFields`).
//!
//! A field set is the set of leaf paths of an object; lists are atomic leaves (the real server
//! merges associative lists element by element; mapcache's operator is the only writer of its
//! lists, so atomic lists keep the semantics that matter). Applying:
//! 1. a field owned by another manager (Apply or Update) whose value the apply changes is a
//!    conflict: 409, unless `force=true`, which moves the field to the applier;
//! 2. fields the applier owned before and no longer sends are removed, unless another manager
//!    owns them too;
//! 3. the applied object is merged in (maps merge, everything else replaces).
//!
//! Ordinary writes (PUT, merge/JSON/strategic patch) move the fields they change to an `Update`
//! entry of their `fieldManager`, so a later apply of another value conflicts, as for real.

use super::error::ApiError;
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;

pub type FieldPath = Vec<String>;

/// Top-level metadata fields that belong to a manager's field set.
const OWNED_METADATA: &[&str] = &["labels", "annotations", "finalizers", "ownerReferences"];

/// One `managedFields` entry.
#[derive(Clone, Debug, PartialEq)]
struct Entry {
    manager: String,
    operation: String,
    subresource: Option<String>,
    api_version: String,
    fields: BTreeSet<FieldPath>,
}

fn leaf_paths(value: &Value, prefix: &mut Vec<String>, out: &mut BTreeSet<FieldPath>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                prefix.push(key.clone());
                leaf_paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ if !prefix.is_empty() => {
            out.insert(prefix.clone());
        }
        _ => {}
    }
}

/// The paths of `object` a manager can own, given which endpoint wrote it.
fn owned_paths(
    object: &Value,
    status_endpoint: bool,
    has_status_subresource: bool,
) -> BTreeSet<FieldPath> {
    let mut all = BTreeSet::new();
    leaf_paths(object, &mut Vec::new(), &mut all);
    all.into_iter()
        .filter(|path| match path[0].as_str() {
            "apiVersion" | "kind" => false,
            "metadata" => {
                !status_endpoint && path.len() > 1 && OWNED_METADATA.contains(&path[1].as_str())
            }
            "status" if has_status_subresource => status_endpoint,
            _ => !status_endpoint || !has_status_subresource,
        })
        .collect()
}

fn get_path<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |node, key| node.get(key))
}

fn remove_path(value: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut node = value;
    for key in parents {
        match node.get_mut(key) {
            Some(child) => node = child,
            None => return,
        }
    }
    if let Some(map) = node.as_object_mut() {
        map.remove(last);
    }
}

fn encode(fields: &BTreeSet<FieldPath>) -> Value {
    let mut root = Map::new();
    for path in fields {
        let mut node = &mut root;
        for key in path {
            node = node
                .entry(format!("f:{key}"))
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .expect("fieldsV1 nodes are objects");
        }
    }
    Value::Object(root)
}

fn decode(fields: &Value, prefix: &mut Vec<String>, out: &mut BTreeSet<FieldPath>) {
    let children: Vec<(&String, &Value)> =
        fields.as_object().into_iter().flatten().filter(|(key, _)| key.starts_with("f:")).collect();
    if children.is_empty() {
        if !prefix.is_empty() {
            out.insert(prefix.clone());
        }
        return;
    }
    for (key, child) in children {
        prefix.push(key[2..].to_string());
        decode(child, prefix, out);
        prefix.pop();
    }
}

fn read_entries(object: &Value) -> Vec<Entry> {
    let Some(entries) = object.pointer("/metadata/managedFields").and_then(Value::as_array) else {
        return Vec::new();
    };
    entries
        .iter()
        .map(|entry| {
            let mut fields = BTreeSet::new();
            if let Some(v1) = entry.get("fieldsV1") {
                decode(v1, &mut Vec::new(), &mut fields);
            }
            let text =
                |key: &str| entry.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
            Entry {
                manager: text("manager"),
                operation: text("operation"),
                subresource: entry.get("subresource").and_then(Value::as_str).map(str::to_string),
                api_version: text("apiVersion"),
                fields,
            }
        })
        .collect()
}

fn write_entries(object: &mut Value, entries: &[Entry]) {
    let rendered: Vec<Value> = entries
        .iter()
        .filter(|entry| !entry.fields.is_empty())
        .map(|entry| {
            let mut value = json!({
                "manager": entry.manager,
                "operation": entry.operation,
                "apiVersion": entry.api_version,
                "fieldsType": "FieldsV1",
                "fieldsV1": encode(&entry.fields),
            });
            if let Some(sub) = &entry.subresource {
                value["subresource"] = json!(sub);
            }
            value
        })
        .collect();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if rendered.is_empty() {
            metadata.remove("managedFields");
        } else {
            metadata.insert("managedFields".into(), Value::Array(rendered));
        }
    }
}

fn deep_merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else if let Some(existing) = target.get_mut(key) {
                    deep_merge(existing, value);
                } else {
                    target.insert(key.clone(), value.clone());
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

fn dotted(path: &FieldPath) -> String {
    path.iter().map(|key| format!(".{key}")).collect()
}

/// Where a write lands: which manager, through which endpoint.
#[derive(Clone, Copy, Debug)]
pub struct WriteContext<'a> {
    pub manager: &'a str,
    pub status_endpoint: bool,
    pub has_status_subresource: bool,
}

impl WriteContext<'_> {
    fn subresource(&self) -> Option<String> {
        (self.status_endpoint && self.has_status_subresource).then(|| "status".to_string())
    }
}

/// Server-side apply `applied` onto `current` (None: the object does not exist yet).
pub fn server_side_apply(
    current: Option<&Value>,
    applied: &Value,
    ctx: WriteContext<'_>,
    force: bool,
) -> Result<Value, ApiError> {
    let api_version =
        applied.get("apiVersion").and_then(Value::as_str).unwrap_or_default().to_string();
    let base = current.cloned().unwrap_or_else(|| {
        json!({"apiVersion": applied.get("apiVersion"), "kind": applied.get("kind"), "metadata": {}})
    });
    let new_fields = owned_paths(applied, ctx.status_endpoint, ctx.has_status_subresource);
    let mut entries = read_entries(&base);
    let sub = ctx.subresource();
    let is_mine = |entry: &Entry| {
        entry.manager == ctx.manager && entry.operation == "Apply" && entry.subresource == sub
    };

    let mut conflicts = Vec::new();
    for entry in entries.iter().filter(|entry| !is_mine(entry)) {
        for path in entry.fields.intersection(&new_fields) {
            if get_path(&base, path) != get_path(applied, path) {
                conflicts.push((entry.manager.clone(), dotted(path)));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(ApiError::apply_conflicts(&conflicts));
    }
    for entry in entries.iter_mut().filter(|entry| !is_mine(entry)) {
        let changed: Vec<FieldPath> = entry
            .fields
            .intersection(&new_fields)
            .filter(|path| get_path(&base, path) != get_path(applied, path))
            .cloned()
            .collect();
        for path in changed {
            entry.fields.remove(&path);
        }
    }

    let mut result = base.clone();
    let previous: BTreeSet<FieldPath> =
        entries.iter().filter(|e| is_mine(e)).flat_map(|e| e.fields.clone()).collect();
    for path in previous.difference(&new_fields) {
        let shared = entries.iter().any(|entry| !is_mine(entry) && entry.fields.contains(path));
        if !shared {
            remove_path(&mut result, path);
        }
    }
    let mut merged_part = applied.clone();
    if let Some(map) = merged_part.as_object_mut() {
        // Identity fields come from the URL and the stored object, not from the applied body.
        if let Some(metadata) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.retain(|key, _| {
                OWNED_METADATA.contains(&key.as_str()) || key == "name" || key == "namespace"
            });
        }
    }
    deep_merge(&mut result, &merged_part);

    // Keep the entry's position, so re-applying the same object is a no-op write.
    match entries.iter_mut().find(|entry| is_mine(entry)) {
        Some(entry) => entry.fields = new_fields,
        None => entries.push(Entry {
            manager: ctx.manager.to_string(),
            operation: "Apply".into(),
            subresource: sub,
            api_version,
            fields: new_fields,
        }),
    }
    write_entries(&mut result, &entries);
    Ok(result)
}

/// Record an ordinary write: the fields it changed move to the writer's `Update` entry.
pub fn record_update(current: Option<&Value>, new: &mut Value, ctx: WriteContext<'_>) {
    let empty = Value::Null;
    let old = current.unwrap_or(&empty);
    let mut entries = current.map(read_entries).unwrap_or_default();
    let mut candidates = owned_paths(new, ctx.status_endpoint, ctx.has_status_subresource);
    candidates.extend(owned_paths(old, ctx.status_endpoint, ctx.has_status_subresource));
    let changed: BTreeSet<FieldPath> =
        candidates.into_iter().filter(|path| get_path(old, path) != get_path(new, path)).collect();
    if changed.is_empty() {
        write_entries(new, &entries);
        return;
    }
    let sub = ctx.subresource();
    for entry in entries.iter_mut() {
        entry.fields.retain(|path| !changed.contains(path));
    }
    let present: BTreeSet<FieldPath> =
        changed.into_iter().filter(|path| get_path(new, path).is_some()).collect();
    let api_version = new.get("apiVersion").and_then(Value::as_str).unwrap_or_default().to_string();
    match entries
        .iter_mut()
        .find(|e| e.manager == ctx.manager && e.operation == "Update" && e.subresource == sub)
    {
        Some(entry) => entry.fields.extend(present),
        None => entries.push(Entry {
            manager: ctx.manager.to_string(),
            operation: "Update".into(),
            subresource: sub,
            api_version,
            fields: present,
        }),
    }
    write_entries(new, &entries);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: WriteContext<'static> =
        WriteContext { manager: "a", status_endpoint: false, has_status_subresource: true };

    fn with_manager(manager: &'static str) -> WriteContext<'static> {
        WriteContext { manager, ..MAIN }
    }

    #[test]
    fn apply_by_another_manager_of_a_different_value_conflicts_and_force_takes_ownership() {
        let first = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "1"}});
        let stored = server_side_apply(None, &first, MAIN, false).unwrap();
        let second = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "2"}});
        let err = server_side_apply(Some(&stored), &second, with_manager("b"), false).unwrap_err();
        assert_eq!(err.code, 409);
        assert_eq!(err.message, "Apply failed with 1 conflict: conflict with \"a\": .data.k");
        let forced = server_side_apply(Some(&stored), &second, with_manager("b"), true).unwrap();
        assert_eq!(forced["data"]["k"], "2");
        let managers: Vec<&str> = forced["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["manager"].as_str().unwrap())
            .collect();
        assert_eq!(managers, vec!["b"]);
    }

    #[test]
    fn same_value_is_shared_not_a_conflict_and_dropped_fields_are_removed() {
        let first = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "1", "gone": "x"}});
        let stored = server_side_apply(None, &first, MAIN, false).unwrap();
        let shared = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "1"}});
        let stored = server_side_apply(Some(&stored), &shared, with_manager("b"), false).unwrap();
        let again =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}});
        let result = server_side_apply(Some(&stored), &again, MAIN, false).unwrap();
        assert_eq!(result["data"], json!({"k": "1"}), "k is still owned by b; gone was only a's");
    }

    #[test]
    fn update_moves_changed_fields_to_the_writer() {
        let first = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "1"}});
        let stored = server_side_apply(None, &first, MAIN, false).unwrap();
        let mut edited = stored.clone();
        edited["data"]["k"] = json!("9");
        record_update(Some(&stored), &mut edited, with_manager("kubectl"));
        let err = server_side_apply(Some(&edited), &first, MAIN, false).unwrap_err();
        assert_eq!(err.message, "Apply failed with 1 conflict: conflict with \"kubectl\": .data.k");
    }
}
