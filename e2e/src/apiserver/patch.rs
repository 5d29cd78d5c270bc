//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and a strategic merge patch
//! subset for the built-in kinds mapcache uses. Server-side apply lives in `apply.rs`.
//!
//! Strategic merge subset: objects merge key by key and `null` deletes, as in a merge patch;
//! lists named in [`MERGE_KEYS`] merge element by element on their merge key (an element with
//! `"$patch": "delete"` is removed); `finalizers` merges as a set; every other list replaces.
//! Not supported: `$retainKeys`, `$deleteFromPrimitiveList`, `$setElementOrder`.

use super::error::ApiError;
use serde_json::Value;

/// List field name -> merge key, as in the k8s.io/api `patchMergeKey` tags.
const MERGE_KEYS: &[(&str, &str)] = &[
    ("containers", "name"),
    ("initContainers", "name"),
    ("ephemeralContainers", "name"),
    ("env", "name"),
    ("volumes", "name"),
    ("volumeMounts", "mountPath"),
    ("volumeClaimTemplates", "name"),
    ("conditions", "type"),
    ("ownerReferences", "uid"),
    ("imagePullSecrets", "name"),
    ("containerStatuses", "name"),
];

/// Which of the patch content types a request carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl PatchKind {
    pub fn from_content_type(content_type: &str) -> Result<Self, ApiError> {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        match media {
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/json-patch+json" => Ok(Self::Json),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(Self::Apply),
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }
}

/// Apply a merge, JSON or strategic patch to `target`.
pub fn apply_patch(kind: PatchKind, target: &mut Value, body: &[u8]) -> Result<(), ApiError> {
    match kind {
        PatchKind::Json => {
            let patch: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            json_patch::patch(target, &patch)
                .map_err(|e| ApiError::invalid("patch", "", format!("the JSON patch failed: {e}")))
        }
        PatchKind::Merge | PatchKind::Strategic => {
            let patch: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON in patch body: {e}")))?;
            if !patch.is_object() {
                return Err(ApiError::bad_request("a merge patch body must be a JSON object"));
            }
            if kind == PatchKind::Merge {
                json_patch::merge(target, &patch);
            } else {
                strategic_merge(target, &patch, "");
            }
            Ok(())
        }
        PatchKind::Apply => Err(ApiError::internal("apply patches go through server-side apply")),
    }
}

/// Strategic merge of `patch` into `target`; `field` is the key `target` sits under.
pub fn strategic_merge(target: &mut Value, patch: &Value, field: &str) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if key.starts_with('$') {
                    continue;
                }
                if value.is_null() {
                    target.remove(key);
                } else if let Some(existing) = target.get_mut(key) {
                    strategic_merge(existing, value, key);
                } else {
                    let mut fresh = Value::Null;
                    strategic_merge(&mut fresh, value, key);
                    target.insert(key.clone(), fresh);
                }
            }
        }
        (Value::Array(target), Value::Array(patch)) if field == "finalizers" => {
            for item in patch {
                if !target.contains(item) {
                    target.push(item.clone());
                }
            }
        }
        (Value::Array(target), Value::Array(patch)) => {
            let Some((_, merge_key)) = MERGE_KEYS.iter().find(|(name, _)| *name == field) else {
                *target = patch.iter().map(strip_directives).collect();
                return;
            };
            for item in patch {
                let key = item.get(*merge_key);
                let position = target
                    .iter()
                    .position(|existing| key.is_some() && existing.get(*merge_key) == key);
                let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                match (position, delete) {
                    (Some(index), true) => {
                        target.remove(index);
                    }
                    (Some(index), false) => strategic_merge(&mut target[index], item, ""),
                    (None, true) => {}
                    (None, false) => target.push(strip_directives(item)),
                }
            }
        }
        (target, patch) => *target = strip_directives(patch),
    }
}

fn strip_directives(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merge_merges_containers_by_name_and_env_by_name() {
        let mut pod = json!({"spec": {"containers": [
            {"name": "app", "image": "a:1", "env": [{"name": "A", "value": "1"}]},
            {"name": "engine", "image": "mapcache:1"}
        ]}});
        let patch = json!({"spec": {"containers": [
            {"name": "app", "env": [{"name": "B", "value": "2"}]},
            {"name": "engine", "$patch": "delete"}
        ]}});
        strategic_merge(&mut pod, &patch, "");
        assert_eq!(
            pod,
            json!({"spec": {"containers": [
                {"name": "app", "image": "a:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}
            ]}})
        );
    }

    #[test]
    fn strategic_merge_replaces_unknown_lists_and_unions_finalizers() {
        let mut object = json!({"metadata": {"finalizers": ["a"]}, "spec": {"args": ["x", "y"]}});
        strategic_merge(
            &mut object,
            &json!({"metadata": {"finalizers": ["b", "a"]}, "spec": {"args": ["z"]}}),
            "",
        );
        assert_eq!(
            object,
            json!({"metadata": {"finalizers": ["a", "b"]}, "spec": {"args": ["z"]}})
        );
    }

    #[test]
    fn unknown_patch_content_type_is_415() {
        assert_eq!(PatchKind::from_content_type("text/plain").unwrap_err().code, 415);
        assert_eq!(
            PatchKind::from_content_type("application/apply-patch+yaml; charset=utf-8").unwrap(),
            PatchKind::Apply
        );
    }
}
