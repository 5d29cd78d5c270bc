//! A container's environment as the kubelet builds it: `envFrom` first, then `env` in order,
//! each value `$(VAR)`-expanded against the variables defined before it; `fieldRef` from the pod
//! (shared with downwardAPI volumes), `secretKeyRef` and `configMapKeyRef` read through the API.
//! A missing non-optional Secret, ConfigMap or key is `CreateContainerConfigError`: the
//! container waits and the worker tries again.

use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVarSource, Pod, Secret};
use kube::{Api, Client};
use std::collections::BTreeMap;

/// Where a fieldRef reads the pod's addresses from (the status we are about to write).
#[derive(Clone, Debug)]
pub struct PodAddresses {
    pub pod_ip: String,
    pub host_ip: String,
}

/// The value of a downward-API `fieldPath`.
pub fn field_value(pod: &Pod, addresses: &PodAddresses, path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let keyed = |map: &Option<BTreeMap<String, String>>, prefix: &str| -> Option<String> {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.as_ref().and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    if let Some(value) = keyed(&meta.labels, "metadata.labels['") {
        return Ok(value);
    }
    if let Some(value) = keyed(&meta.annotations, "metadata.annotations['") {
        return Ok(value);
    }
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    Ok(match path {
        "metadata.name" => text(&meta.name),
        "metadata.namespace" => text(&meta.namespace),
        "metadata.uid" => text(&meta.uid),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => {
            spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default()
        }
        "status.podIP" | "status.podIPs" => addresses.pod_ip.clone(),
        "status.hostIP" | "status.hostIPs" => addresses.host_ip.clone(),
        other => return Err(format!("unsupported fieldPath {other:?}")),
    })
}

/// `metadata.labels` / `metadata.annotations` as a downwardAPI file: `key="value"` lines.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter().flatten().map(|(k, v)| format!("{k}={v:?}\n")).collect::<Vec<_>>().concat()
}

/// Kubernetes' `$(VAR)` expansion (third_party/forked/golang/expansion): `$(NAME)` becomes the
/// variable's value when `lookup` knows it and stays as written otherwise; `$$` is a literal `$`
/// (so `$$(NAME)` yields `$(NAME)`); any other `$` stays.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('(') {
            match tail.find(')') {
                Some(close) => {
                    let name = &tail[..close];
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &tail[close + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = tail;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Why a container cannot be created yet (`CreateContainerConfigError`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// All keys of a Secret (decoded) or ConfigMap; Ok(None) when it does not exist.
pub async fn object_data(
    client: &Client,
    namespace: &str,
    kind: ObjectKind,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, ConfigError> {
    let failed =
        |e: kube::Error| ConfigError(format!("get {} {namespace}/{name}: {e}", kind.as_str()));
    match kind {
        ObjectKind::Secret => {
            let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
            Ok(api.get_opt(name).await.map_err(failed)?.map(|secret| {
                secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect()
            }))
        }
        ObjectKind::ConfigMap => {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
            Ok(api.get_opt(name).await.map_err(failed)?.map(|cm| {
                let mut data: BTreeMap<String, Vec<u8>> = cm
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes()))
                    .collect();
                data.extend(cm.binary_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)));
                data
            }))
        }
    }
}

/// All keys of a Secret or ConfigMap the pod refers to; Ok(None) when it is missing and
/// `optional`, an error when it is missing and required.
pub async fn object_data_unless_optional(
    client: &Client,
    namespace: &str,
    kind: ObjectKind,
    name: &str,
    optional: bool,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, ConfigError> {
    match object_data(client, namespace, kind, name).await? {
        Some(data) => Ok(Some(data)),
        None if optional => Ok(None),
        None => Err(ConfigError(format!("{} \"{name}\" not found", kind.as_str()))),
    }
}

/// The two kinds of object env and volumes read keys from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    Secret,
    ConfigMap,
}

impl ObjectKind {
    /// The name the kubelet's messages use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Secret => "secret",
            Self::ConfigMap => "configmap",
        }
    }
}

/// A `secretKeyRef` or `configMapKeyRef`: which object, which key, optional or not.
struct KeyRef<'a> {
    kind: ObjectKind,
    name: &'a str,
    key: &'a str,
    optional: bool,
}

impl<'a> KeyRef<'a> {
    /// The key reference of an env var's `valueFrom`, if it is one.
    fn of(from: &'a EnvVarSource) -> Option<Self> {
        if let Some(s) = &from.secret_key_ref {
            let optional = s.optional.unwrap_or(false);
            return Some(Self { kind: ObjectKind::Secret, name: &s.name, key: &s.key, optional });
        }
        let c = from.config_map_key_ref.as_ref()?;
        let optional = c.optional.unwrap_or(false);
        Some(Self { kind: ObjectKind::ConfigMap, name: &c.name, key: &c.key, optional })
    }
}

/// One key of a Secret or ConfigMap; Ok(None) when missing and optional.
async fn key_value(
    client: &Client,
    namespace: &str,
    reference: KeyRef<'_>,
) -> Result<Option<String>, ConfigError> {
    let KeyRef { kind, name, key, optional } = reference;
    let Some(data) = object_data_unless_optional(client, namespace, kind, name, optional).await?
    else {
        return Ok(None);
    };
    match data.get(key) {
        Some(bytes) => Ok(Some(String::from_utf8_lossy(bytes).into_owned())),
        None if optional => Ok(None),
        None => Err(ConfigError(format!(
            "couldn't find key {key} in {} {namespace}/{name}",
            if kind == ObjectKind::Secret { "Secret" } else { "ConfigMap" }
        ))),
    }
}

/// The container's variables in definition order (later definitions of a name win when the
/// process starts, as with the runtime).
pub async fn resolve(
    client: &Client,
    pod: &Pod,
    container: &Container,
    addresses: &PodAddresses,
) -> Result<Vec<(String, String)>, ConfigError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mut vars: Vec<(String, String)> = Vec::new();
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        let (kind, name, optional) = if let Some(cm) = &source.config_map_ref {
            (ObjectKind::ConfigMap, cm.name.clone(), cm.optional.unwrap_or(false))
        } else if let Some(secret) = &source.secret_ref {
            (ObjectKind::Secret, secret.name.clone(), secret.optional.unwrap_or(false))
        } else {
            continue;
        };
        let data = object_data_unless_optional(client, &namespace, kind, &name, optional).await?;
        vars.extend(
            data.into_iter()
                .flatten()
                .map(|(k, v)| (format!("{prefix}{k}"), String::from_utf8_lossy(&v).into_owned())),
        );
    }
    for var in container.env.iter().flatten() {
        let value = if let Some(value) = &var.value {
            let defined = vars.clone();
            expand(value, &|name| {
                defined.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone())
            })
        } else if let Some(from) = &var.value_from {
            if let Some(field) = &from.field_ref {
                field_value(pod, addresses, &field.field_path).map_err(ConfigError)?
            } else if let Some(reference) = KeyRef::of(from) {
                match key_value(client, &namespace, reference).await? {
                    Some(value) => value,
                    None => continue,
                }
            } else if from.resource_field_ref.is_some() {
                tracing::info!(
                    container = container.name,
                    var = var.name,
                    "resourceFieldRef is not supported by the process kubelet; variable skipped"
                );
                continue;
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        vars.push((var.name.clone(), value));
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "POD_IP" => Some("10.77.3.10".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expansion_follows_kubernetes_rules() {
        assert_eq!(expand("$(POD_IP):6379", &lookup), "10.77.3.10:6379");
        assert_eq!(expand("x$(EMPTY)y", &lookup), "xy");
        assert_eq!(expand("$(UNDEFINED)", &lookup), "$(UNDEFINED)", "unknown stays as written");
        assert_eq!(expand("$$(POD_IP)", &lookup), "$(POD_IP)", "$$ escapes");
        assert_eq!(expand("cost: $5 and $$", &lookup), "cost: $5 and $");
        assert_eq!(expand("$(POD_IP", &lookup), "$(POD_IP", "unclosed reference stays");
        assert_eq!(expand("end$", &lookup), "end$");
        assert_eq!(expand("no vars", &lookup), "no vars");
    }

    #[test]
    fn field_refs_read_the_pod_and_its_addresses() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "cache-0", "namespace": "ns", "uid": "u-1",
                "labels": {"app": "cache", "team": "web"}, "annotations": {"a/b": "c"}},
            "spec": {"nodeName": "node-a", "serviceAccountName": "sa", "containers": []}
        }))
        .expect("pod");
        let addresses = PodAddresses { pod_ip: "10.77.3.10".into(), host_ip: "10.77.3.1".into() };
        let value = |path: &str| field_value(&pod, &addresses, path);
        assert_eq!(value("metadata.name").as_deref(), Ok("cache-0"));
        assert_eq!(value("metadata.namespace").as_deref(), Ok("ns"));
        assert_eq!(value("metadata.uid").as_deref(), Ok("u-1"));
        assert_eq!(value("metadata.labels['team']").as_deref(), Ok("web"));
        assert_eq!(value("metadata.annotations['a/b']").as_deref(), Ok("c"));
        assert_eq!(value("metadata.labels['none']").as_deref(), Ok(""));
        assert_eq!(value("metadata.labels").as_deref(), Ok("app=\"cache\"\nteam=\"web\"\n"));
        assert_eq!(value("spec.nodeName").as_deref(), Ok("node-a"));
        assert_eq!(value("spec.serviceAccountName").as_deref(), Ok("sa"));
        assert_eq!(value("status.podIP").as_deref(), Ok("10.77.3.10"));
        assert_eq!(value("status.podIPs").as_deref(), Ok("10.77.3.10"));
        assert_eq!(value("status.hostIP").as_deref(), Ok("10.77.3.1"));
        assert!(value("spec.nope").is_err());
    }
}
