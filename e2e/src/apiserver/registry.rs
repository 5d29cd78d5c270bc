//! The resource types the stand-in serves: the built-in kinds mapcache uses, plus every
//! registered CustomResourceDefinition.

use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Storage key of a resource type: objects of every version of a group/resource share storage.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceKey {
    /// API group, `""` for the core group.
    pub group: String,
    /// Plural lower-case resource name (`pods`, `mapcaches`).
    pub plural: String,
}

/// What the stand-in knows about one served resource type.
#[derive(Clone, Debug)]
pub struct ResourceInfo {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    /// Whether `/status` is a subresource: the main endpoint then ignores status changes.
    pub status_subresource: bool,
    pub short_names: Vec<String>,
    /// The structural schema (`openAPIV3Schema`) of a CRD version, for defaulting.
    pub schema: Option<Value>,
    /// Extra subresources listed in discovery (`pods/eviction`).
    pub subresources: Vec<&'static str>,
}

impl ResourceInfo {
    pub fn key(&self) -> ResourceKey {
        ResourceKey { group: self.group.clone(), plural: self.plural.clone() }
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods`, or `statefulsets.apps`: how the real server names a resource in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// (group, version, plural, kind, namespaced, status subresource, short names, extra subresources)
type Builtin = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    bool,
    &'static [&'static str],
    &'static [&'static str],
);

const BUILTINS: &[Builtin] = &[
    ("", "v1", "namespaces", "Namespace", false, true, &["ns"], &[]),
    ("", "v1", "nodes", "Node", false, true, &["no"], &[]),
    ("", "v1", "pods", "Pod", true, true, &["po"], &["eviction"]),
    ("", "v1", "services", "Service", true, true, &["svc"], &[]),
    ("", "v1", "endpoints", "Endpoints", true, false, &["ep"], &[]),
    ("", "v1", "configmaps", "ConfigMap", true, false, &["cm"], &[]),
    ("", "v1", "secrets", "Secret", true, false, &[], &[]),
    ("", "v1", "serviceaccounts", "ServiceAccount", true, false, &["sa"], &[]),
    ("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", true, true, &["pvc"], &[]),
    ("", "v1", "events", "Event", true, false, &["ev"], &[]),
    ("apps", "v1", "statefulsets", "StatefulSet", true, true, &["sts"], &[]),
    ("apps", "v1", "controllerrevisions", "ControllerRevision", true, false, &[], &[]),
    ("apps", "v1", "deployments", "Deployment", true, true, &["deploy"], &[]),
    ("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", true, true, &["pdb"], &[]),
    ("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", true, false, &["netpol"], &[]),
    ("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", true, false, &[], &[]),
    ("coordination.k8s.io", "v1", "leases", "Lease", true, false, &[], &[]),
    ("events.k8s.io", "v1", "events", "Event", true, false, &["ev"], &[]),
    ("rbac.authorization.k8s.io", "v1", "roles", "Role", true, false, &[], &[]),
    ("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", true, false, &[], &[]),
    ("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", false, false, &[], &[]),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
        false,
        &[],
        &[],
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        true,
        &["crd", "crds"],
        &[],
    ),
];

/// Every served (group, version, plural).
#[derive(Clone, Debug)]
pub struct Registry {
    resources: BTreeMap<(String, String, String), ResourceInfo>,
}

impl Default for Registry {
    fn default() -> Self {
        let mut resources = BTreeMap::new();
        for (group, version, plural, kind, namespaced, status, short, subs) in BUILTINS {
            let info = ResourceInfo {
                group: group.to_string(),
                version: version.to_string(),
                plural: plural.to_string(),
                singular: kind.to_lowercase(),
                kind: kind.to_string(),
                namespaced: *namespaced,
                status_subresource: *status,
                short_names: short.iter().map(|s| s.to_string()).collect(),
                schema: None,
                subresources: subs.to_vec(),
            };
            resources.insert((group.to_string(), version.to_string(), plural.to_string()), info);
        }
        Self { resources }
    }
}

impl Registry {
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceInfo> {
        self.resources.get(&(group.to_string(), version.to_string(), plural.to_string()))
    }

    /// The first served version of a group/resource (what internal writers use).
    pub fn by_key(&self, key: &ResourceKey) -> Option<&ResourceInfo> {
        self.resources.values().find(|info| info.group == key.group && info.plural == key.plural)
    }

    pub fn groups(&self) -> BTreeMap<String, Vec<String>> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (group, version, _) in self.resources.keys() {
            let versions = groups.entry(group.clone()).or_default();
            if !versions.contains(version) {
                versions.push(version.clone());
            }
        }
        groups
    }

    pub fn in_group_version<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'a ResourceInfo> + 'a {
        self.resources.values().filter(move |info| info.group == group && info.version == version)
    }

    /// Serve (or re-serve) the versions of a CRD; returns the storage key it occupies.
    pub fn register_crd(&mut self, crd: &Value) -> Option<ResourceKey> {
        let spec = crd.get("spec")?;
        let group = spec.get("group")?.as_str()?.to_string();
        let names = spec.get("names")?;
        let plural = names.get("plural")?.as_str()?.to_string();
        let kind = names.get("kind")?.as_str()?.to_string();
        let singular = names
            .get("singular")
            .and_then(Value::as_str)
            .map_or_else(|| kind.to_lowercase(), str::to_string);
        let short_names: Vec<String> = names
            .get("shortNames")
            .and_then(Value::as_array)
            .map(|names| names.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        let namespaced = spec.get("scope").and_then(Value::as_str) != Some("Cluster");
        self.unregister(&group, &plural);
        for version in spec.get("versions")?.as_array()? {
            if version.get("served").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            let Some(name) = version.get("name").and_then(Value::as_str) else { continue };
            let info = ResourceInfo {
                group: group.clone(),
                version: name.to_string(),
                plural: plural.clone(),
                singular: singular.clone(),
                kind: kind.clone(),
                namespaced,
                status_subresource: version.pointer("/subresources/status").is_some(),
                short_names: short_names.clone(),
                schema: version.pointer("/schema/openAPIV3Schema").cloned(),
                subresources: Vec::new(),
            };
            self.resources.insert((group.clone(), name.to_string(), plural.clone()), info);
        }
        Some(ResourceKey { group, plural })
    }

    pub fn unregister(&mut self, group: &str, plural: &str) {
        self.resources.retain(|(g, _, p), _| !(g == group && p == plural));
    }

    /// `APIResourceList` for `/api/v1` or `/apis/<group>/<version>`.
    pub fn resource_list(&self, group: &str, version: &str) -> Value {
        let mut resources = Vec::new();
        for info in self.in_group_version(group, version) {
            resources.push(json!({
                "name": info.plural,
                "singularName": info.singular,
                "namespaced": info.namespaced,
                "kind": info.kind,
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
                "shortNames": info.short_names,
            }));
            if info.status_subresource {
                resources.push(json!({"name": format!("{}/status", info.plural), "singularName": "", "namespaced": info.namespaced, "kind": info.kind, "verbs": ["get", "patch", "update"]}));
            }
            for sub in &info.subresources {
                resources.push(json!({"name": format!("{}/{sub}", info.plural), "singularName": "", "namespaced": info.namespaced, "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]}));
            }
        }
        let group_version =
            if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources})
    }
}
